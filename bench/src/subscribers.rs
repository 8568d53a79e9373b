//! `l2tpkit-bench subscribers`: IP-up subscribers per second (tunnel, session, LCP,
//! authentication, IPCP) with the same `l2tpkit lac` driver, in one run, against:
//!
//! - one reference endpoint on loopback (`l2tpkit endpoint --auth chap|pap --users --pool`);
//! - the FIG 2 reference cluster (master, NAT, 3 endpoints, `lab up --ppp`), from the lab's
//!   initiator namespace;
//! - l2tpns with FreeRADIUS (the harness of `tests/src/l2tpns.rs`), one initiator address per
//!   tunnel since l2tpns takes one SCCRQ per source at a time.
//!
//! The rate of a run is `sessions_ip_up / setup_phase_ms` of the LAC's JSON report: every
//! session IP up over the time from the first SCCRQ to the last IP up. Medians over `--rounds`.
//!
//! Memory: against the loopback endpoint, one more run holds the sessions while VmRSS of the
//! LAC and the endpoint is read (on the LAC's "holding" progress line), once with PPP and once
//! with `--ppp off` against an endpoint without `--auth`, each endpoint fresh. The difference
//! over the sessions is what a live PPP session costs on top of its L2TP session.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use l2tpkit::lab::{plan, sys, Lab, LabSpec, Topology};
use l2tpkit_tests::l2tpns::{self, L2tpns, L2tpnsOptions, PppAuth};
use l2tpkit_tests::netns::snmp;

use crate::vm_rss_kb;

/// Our endpoint's loopback address in this bench.
const ENDPOINT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 78), 17_902);
/// Handed out in PPP only (never configured on an interface).
const POOL: &str = "198.19.128.0/17";
const PASSWORD: &str = "bench-subscriber";
/// A lab's endpoints know one user (see `cli/src/lab/roles.rs`).
const LAB_USER: &str = "lab@example.net";
const LAB_PASSWORD: &str = "l2tpkit-lab";
/// l2tpns's pool: room for the default 500 subscribers with margin.
const L2TPNS_POOL: &str = "198.19.192.0/21";
/// The l2tpns series' target names start so.
const L2TPNS: &str = "l2tpns";
const LAC_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Auth {
    Chap,
    Pap,
}

#[derive(Debug, clap::Args)]
pub struct SubscribersBench {
    /// Tunnels of each run against our endpoint and the cluster.
    #[arg(long, default_value_t = 1000)]
    pub tunnels: usize,
    /// Sessions per tunnel against our endpoint and the cluster.
    #[arg(long, default_value_t = 10)]
    pub sessions_per_tunnel: usize,
    /// Tunnels against l2tpns: one initiator address each (at most 200).
    #[arg(long, default_value_t = 50)]
    pub l2tpns_tunnels: usize,
    /// Sessions per tunnel against l2tpns.
    #[arg(long, default_value_t = 10)]
    pub l2tpns_sessions_per_tunnel: usize,
    /// Tunnel setups per second against l2tpns, one series of rounds per rate (0: unpaced).
    /// It reads one socket with the default receive buffer: an unpaced burst of calls
    /// overflows it and the figure becomes one of retransmissions. The ratios are to its best
    /// median.
    #[arg(long, value_delimiter = ',', default_value = "0,160")]
    pub l2tpns_rate: Vec<f64>,
    /// Runs against each target; medians are reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub rounds: u32,
    /// How the subscribers authenticate.
    #[arg(long, value_enum, default_value_t = Auth::Chap)]
    pub auth: Auth,
    /// Leave out the FIG 2 cluster.
    #[arg(long)]
    pub skip_cluster: bool,
    /// Leave out l2tpns.
    #[arg(long)]
    pub skip_l2tpns: bool,
    /// Where the logs and the summary go [default: a new directory under $TMPDIR].
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The part of `l2tpkit lac --json`'s report this bench reads.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
struct LacFigures {
    sessions_requested: usize,
    sessions_ip_up: usize,
    sessions_failed: usize,
    duplicate_addresses: usize,
    setup_phase_ms: f64,
    icrq_to_ip_up: Latency,
    retransmissions: u64,
    failures: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(default)]
struct Latency {
    p50_ms: f64,
    p99_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Run {
    /// `endpoint`, `fig2-cluster`, or `l2tpns` with its offered rate (`l2tpns@160/s`,
    /// `l2tpns unpaced`).
    target: String,
    round: u32,
    requested: usize,
    ip_up: usize,
    failed: usize,
    duplicate_addresses: usize,
    ip_up_per_second: f64,
    icrq_to_ip_up_p50_ms: f64,
    icrq_to_ip_up_p99_ms: f64,
    retransmissions: u64,
    /// l2tpns only: UDP datagrams its namespace dropped on a full receive buffer during the
    /// round (`Udp RcvbufErrors`).
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_udp_drops: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
struct Row {
    target: String,
    sessions: usize,
    median_ip_up_per_second: f64,
    all_ip_up: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
struct Memory {
    sessions: usize,
    lac_ppp_kb: u64,
    lac_off_kb: u64,
    endpoint_ppp_kb: u64,
    endpoint_ppp_baseline_kb: u64,
    endpoint_off_kb: u64,
    endpoint_off_baseline_kb: u64,
    /// What a live PPP session adds, in bytes.
    lac_bytes_per_session: f64,
    endpoint_bytes_per_session: f64,
}

#[derive(Debug, Serialize)]
struct Summary {
    auth: Auth,
    rows: Vec<Row>,
    /// Each of our targets' median rate over l2tpns's best median (of its offered rates).
    ratios_to_l2tpns: Vec<(String, f64)>,
    /// The l2tpns series the ratios are to.
    l2tpns_best: Option<String>,
    memory: Memory,
    runs: Vec<Run>,
    run_dir: String,
}

pub fn run(args: &SubscribersBench) -> anyhow::Result<ExitCode> {
    sys::install_interrupt_handler(true)?;
    check_args(args)?;
    match measure(args) {
        Err(e) if e.is::<sys::Interrupted>() => {
            eprintln!("l2tpkit-bench subscribers: interrupted; everything it started is stopped");
            Ok(ExitCode::from(130))
        }
        other => other,
    }
}

fn measure(args: &SubscribersBench) -> anyhow::Result<ExitCode> {
    let binary = crate::roles_binary()?;
    let run_dir = match &args.run_dir {
        Some(dir) => dir.clone(),
        None => {
            std::env::temp_dir().join(format!("l2tpkit-bench-subscribers-{}", std::process::id()))
        }
    };
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let cx = Cx {
        args,
        binary,
        run_dir: run_dir.clone(),
    };
    let mut runs = Vec::new();
    let memory = against_endpoint(&cx, &mut runs)?;
    if !args.skip_cluster {
        against_cluster(&cx, &mut runs)?;
    }
    if !args.skip_l2tpns {
        against_l2tpns(&cx, &mut runs)?;
    }
    let rows = rows(&runs);
    let l2tpns_best = rows
        .iter()
        .filter(|r| r.target.starts_with(L2TPNS))
        .max_by(|a, b| {
            a.median_ip_up_per_second
                .total_cmp(&b.median_ip_up_per_second)
        });
    let ratios_to_l2tpns = match l2tpns_best {
        Some(best) if best.median_ip_up_per_second > 0.0 => rows
            .iter()
            .filter(|r| !r.target.starts_with(L2TPNS))
            .map(|r| {
                let ratio = r.median_ip_up_per_second / best.median_ip_up_per_second;
                (r.target.clone(), ratio)
            })
            .collect(),
        _ => Vec::new(),
    };
    let l2tpns_best = l2tpns_best.map(|r| r.target.clone());
    let summary = Summary {
        auth: args.auth,
        rows,
        ratios_to_l2tpns,
        l2tpns_best,
        memory,
        runs,
        run_dir: run_dir.display().to_string(),
    };
    let text = serde_json::to_string_pretty(&summary)?;
    let _ = std::fs::write(run_dir.join("subscribers.json"), &text);
    if args.json {
        println!("{text}");
    } else {
        print_summary(&summary);
    }
    Ok(ExitCode::SUCCESS)
}

fn check_args(args: &SubscribersBench) -> anyhow::Result<()> {
    let sessions = args.tunnels.saturating_mul(args.sessions_per_tunnel);
    if !(1..=30_000).contains(&sessions) {
        bail!(
            "--tunnels {} × --sessions-per-tunnel {}: expected 1 to 30000 sessions (the pool \
             {POOL} and the cluster's slices of it)",
            args.tunnels,
            args.sessions_per_tunnel
        );
    }
    if !args.skip_l2tpns {
        if !(1..=200).contains(&args.l2tpns_tunnels) {
            bail!(
                "--l2tpns-tunnels {}: expected 1 to 200 (one initiator address each)",
                args.l2tpns_tunnels
            );
        }
        let sessions = args.l2tpns_tunnels * args.l2tpns_sessions_per_tunnel;
        if !(1..=2000).contains(&sessions) {
            bail!(
                "--l2tpns-sessions-per-tunnel: expected 1 to 2000 sessions against l2tpns in all"
            );
        }
    }
    if args.l2tpns_rate.is_empty() {
        bail!("--l2tpns-rate: expected at least one rate (0: unpaced)");
    }
    if let Some(bad) = args
        .l2tpns_rate
        .iter()
        .find(|r| !r.is_finite() || !(0.0..=10_000.0).contains(*r))
    {
        bail!("--l2tpns-rate {bad}: expected 0 (unpaced) to 10000");
    }
    if (!args.skip_cluster || !args.skip_l2tpns) && !sys::is_root() {
        bail!("the cluster and l2tpns need root (namespaces): run as root or pass --skip-cluster --skip-l2tpns");
    }
    if !args.skip_l2tpns && !l2tpns::available() {
        bail!("l2tpns and FreeRADIUS are needed (apt-get install -y l2tpns freeradius), or pass --skip-l2tpns");
    }
    Ok(())
}

struct Cx<'a> {
    args: &'a SubscribersBench,
    binary: PathBuf,
    run_dir: PathBuf,
}

impl Cx<'_> {
    fn auth(&self) -> &'static str {
        match self.args.auth {
            Auth::Chap => "chap",
            Auth::Pap => "pap",
        }
    }

    fn total(&self) -> usize {
        self.args.tunnels * self.args.sessions_per_tunnel
    }
}

/// Runs against one endpoint on loopback, then the memory runs.
fn against_endpoint(cx: &Cx, runs: &mut Vec<Run>) -> anyhow::Result<Memory> {
    let users = cx.run_dir.join("users");
    // `{n}` counts subscribers from 1.
    let lines: String = (1..=cx.total())
        .map(|n| format!("user{n}@example.net:{PASSWORD}\n"))
        .collect();
    std::fs::write(&users, lines).with_context(|| format!("writing {}", users.display()))?;
    let ppp_endpoint = || -> Vec<String> {
        vec![
            "--auth".into(),
            cx.auth().into(),
            "--users".into(),
            users.display().to_string(),
            "--pool".into(),
            POOL.into(),
        ]
    };
    let lac_ppp = |hold: &str| -> Vec<String> {
        let mut args = lac_args(
            cx.auth(),
            ENDPOINT,
            cx.args.tunnels,
            cx.args.sessions_per_tunnel,
        );
        args.extend([
            "--username".into(),
            "user{n}@example.net".into(),
            "--password".into(),
            PASSWORD.into(),
            "--hold".into(),
            hold.into(),
        ]);
        args
    };
    {
        let endpoint = Endpoint::start(cx, "endpoint", &ppp_endpoint())?;
        for round in 1..=cx.args.rounds {
            sys::checkpoint()?;
            let (figures, _) = lac(
                cx,
                None,
                &lac_ppp("0.5"),
                None,
                &format!("endpoint-r{round}"),
            )?;
            runs.push(run_of("endpoint", round, &figures));
            say(runs.last());
        }
        drop(endpoint);
    }
    // Memory: a fresh endpoint each way, read while the LAC holds every session.
    sys::checkpoint()?;
    let endpoint = Endpoint::start(cx, "endpoint-mem-ppp", &ppp_endpoint())?;
    let endpoint_ppp_baseline_kb = endpoint.rss_kb();
    let (figures, held) = lac(cx, None, &lac_ppp("3"), Some(endpoint.pid()), "mem-ppp")?;
    drop(endpoint);
    let ppp_up = figures.sessions_ip_up;
    let endpoint = Endpoint::start(cx, "endpoint-mem-off", &[])?;
    let endpoint_off_baseline_kb = endpoint.rss_kb();
    let mut off = lac_args(
        cx.auth(),
        ENDPOINT,
        cx.args.tunnels,
        cx.args.sessions_per_tunnel,
    );
    off.extend(["--ppp".into(), "off".into(), "--hold".into(), "3".into()]);
    let (_, held_off) = lac(cx, None, &off, Some(endpoint.pid()), "mem-off")?;
    drop(endpoint);
    let (Some(ppp), Some(bare)) = (held, held_off) else {
        bail!(
            "the memory runs never reached holding (see the LAC logs in {})",
            cx.run_dir.display()
        );
    };
    if ppp_up != cx.total() {
        bail!(
            "the memory run with PPP had {ppp_up}/{} sessions IP up",
            cx.total()
        );
    }
    let per = |with: u64, without: u64| (with as f64 - without as f64) * 1024.0 / cx.total() as f64;
    Ok(Memory {
        sessions: cx.total(),
        lac_ppp_kb: ppp.lac_kb,
        lac_off_kb: bare.lac_kb,
        endpoint_ppp_kb: ppp.peer_kb,
        endpoint_ppp_baseline_kb,
        endpoint_off_kb: bare.peer_kb,
        endpoint_off_baseline_kb,
        lac_bytes_per_session: per(ppp.lac_kb, bare.lac_kb),
        endpoint_bytes_per_session: per(
            ppp.peer_kb.saturating_sub(endpoint_ppp_baseline_kb),
            bare.peer_kb.saturating_sub(endpoint_off_baseline_kb),
        ),
    })
}

fn against_cluster(cx: &Cx, runs: &mut Vec<Run>) -> anyhow::Result<()> {
    let spec = LabSpec {
        run_dir: Some(cx.run_dir.join("lab")),
        binary: Some(cx.binary.clone()),
        captures: false,
        roles: true,
        secret: None,
        ppp: true,
        ..LabSpec::new(Topology::Fig2, 3)
    };
    let lab = match Lab::up(&spec) {
        Ok(lab) => lab,
        Err(e) if e.is::<sys::Interrupted>() => return Err(e),
        Err(e) => return Err(e.context("bringing up the FIG 2 lab")),
    };
    crate::drive_then_down("subscribers", lab, |lab| {
        let ns = lab
            .namespace(plan::NodeKind::Initiator)
            .context("no initiator namespace")?
            .to_string();
        let target = SocketAddrV4::new(plan::CLUSTER_ADDRESS, 1701);
        for round in 1..=cx.args.rounds {
            sys::checkpoint()?;
            // The lab's endpoints are CHAP servers whatever --auth says.
            let mut args = lac_args("chap", target, cx.args.tunnels, cx.args.sessions_per_tunnel);
            args.extend([
                format!("--bind={}:0", plan::initiator_address(1)),
                "--any-source".into(),
                "--username".into(),
                LAB_USER.into(),
                "--password".into(),
                LAB_PASSWORD.into(),
                "--hold".into(),
                "0.5".into(),
            ]);
            let (figures, _) = lac(cx, Some(&ns), &args, None, &format!("cluster-r{round}"))?;
            runs.push(run_of("fig2-cluster", round, &figures));
            say(runs.last());
            // The endpoints keep a closed tunnel's IDs for a retransmission cycle; fresh
            // Tunnel IDs are plenty, and the pool slices are returned at CDN.
        }
        Ok(())
    })?
    .map(|_| ())
    .ok_or_else(|| anyhow::Error::new(sys::Interrupted))
}

fn against_l2tpns(cx: &Cx, runs: &mut Vec<Run>) -> anyhow::Result<()> {
    let (tunnels, per) = (cx.args.l2tpns_tunnels, cx.args.l2tpns_sessions_per_tunnel);
    let users = (1..=tunnels * per)
        .map(|n| (format!("user{n}@example.net"), PASSWORD.to_string()))
        .collect();
    let options = L2tpnsOptions {
        users,
        auth: match cx.args.auth {
            Auth::Chap => PppAuth::Chap,
            Auth::Pap => PppAuth::Pap,
        },
        pool: L2TPNS_POOL.to_string(),
        initiators: u8::try_from(tunnels).context("--l2tpns-tunnels")?,
        ..L2tpnsOptions::default()
    };
    let harness = L2tpns::start(&options).context("starting l2tpns and FreeRADIUS")?;
    let ns = harness.initiator_netns().to_string();
    for &rate in &cx.args.l2tpns_rate {
        let target = if rate > 0.0 {
            format!("{L2TPNS}@{rate}/s")
        } else {
            format!("{L2TPNS} unpaced")
        };
        for round in 1..=cx.args.rounds {
            sys::checkpoint()?;
            let mut args = lac_args(cx.auth(), harness.lns_addr(), tunnels, per);
            args.extend([
                format!("--bind={}:0", harness.initiator_addr()),
                format!("--initiators={tunnels}"),
                format!("--max-outstanding={tunnels}"),
                format!("--rate={rate}"),
                "--username".into(),
                "user{n}@example.net".into(),
                "--password".into(),
                PASSWORD.into(),
                "--hold".into(),
                "0.5".into(),
            ]);
            let tag = format!("l2tpns-{rate}-r{round}");
            let drops = || snmp(harness.lns_netns(), "Udp", "RcvbufErrors");
            let before = drops().context("reading l2tpns's namespace's UDP counters")?;
            let (figures, _) = lac(cx, Some(&ns), &args, None, &tag)?;
            let after = drops().context("reading l2tpns's namespace's UDP counters")?;
            runs.push(Run {
                peer_udp_drops: Some(after.saturating_sub(before)),
                ..run_of(&target, round, &figures)
            });
            say(runs.last());
        }
    }
    Ok(())
}

fn lac_args(auth: &str, target: SocketAddrV4, tunnels: usize, sessions: usize) -> Vec<String> {
    vec![
        "lac".into(),
        format!("--target={target}"),
        format!("--tunnels={tunnels}"),
        format!("--sessions-per-tunnel={sessions}"),
        format!("--auth={auth}"),
        "--echo-rate=0".into(),
        "--setup-timeout=120".into(),
        "--json".into(),
    ]
}

/// VmRSS while the LAC held every session: its own and its peer's (when given).
#[derive(Debug, Clone, Copy)]
struct Held {
    lac_kb: u64,
    peer_kb: u64,
}

/// Runs `l2tpkit ARGS` (in `netns` when given) to its end; its JSON report, and the VmRSS read
/// on its first "holding" progress line.
fn lac(
    cx: &Cx,
    netns: Option<&str>,
    args: &[String],
    peer: Option<u32>,
    tag: &str,
) -> anyhow::Result<(LacFigures, Option<Held>)> {
    let mut command = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(&cx.binary);
            c
        }
        None => Command::new(&cx.binary),
    };
    let stdout = cx.run_dir.join(format!("lac-{tag}.json"));
    let stderr_log = cx.run_dir.join(format!("lac-{tag}.log"));
    let mut child = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout)?)
        .stderr(Stdio::piped())
        .spawn()
        .context("starting l2tpkit lac")?;
    let pid = child.id();
    let held = watch_until_exit(&mut child, &stderr_log, |line| {
        line.contains("] holding").then(|| Held {
            lac_kb: vm_rss_kb(pid).unwrap_or(0),
            peer_kb: peer.and_then(vm_rss_kb).unwrap_or(0),
        })
    })?;
    let text = std::fs::read_to_string(&stdout)?;
    let figures: LacFigures = serde_json::from_str(&text).with_context(|| {
        format!(
            "the LAC's JSON report ({}): see {}",
            stdout.display(),
            stderr_log.display()
        )
    })?;
    Ok((figures, held))
}

/// Copies the child's stderr to `log`, calling `on_line` until it returns something; waits for
/// the child (killed after `LAC_TIMEOUT`).
fn watch_until_exit<T>(
    child: &mut Child,
    log: &Path,
    mut on_line: impl FnMut(&str) -> Option<T>,
) -> anyhow::Result<Option<T>> {
    let stderr = child.stderr.take().context("the LAC's stderr")?;
    let mut out = std::fs::File::create(log)?;
    let mut found = None;
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if found.is_none() {
            found = on_line(&line);
        }
        use std::io::Write;
        let _ = writeln!(out, "{line}");
    }
    match sys::wait_timeout(child, LAC_TIMEOUT)? {
        Some(_) => Ok(found),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the LAC did not end within {LAC_TIMEOUT:?} (see {})",
                log.display()
            )
        }
    }
}

/// `l2tpkit endpoint` on [`ENDPOINT`], stopped and waited for when dropped.
struct Endpoint {
    child: Child,
}

impl Endpoint {
    fn start(cx: &Cx, tag: &str, extra: &[String]) -> anyhow::Result<Endpoint> {
        let log = cx.run_dir.join(format!("{tag}.log"));
        let mut child = Command::new(&cx.binary)
            .args([
                "endpoint",
                "--listen",
                &ENDPOINT.to_string(),
                "--duration",
                "3600",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting l2tpkit endpoint")?;
        let stderr = child.stderr.take().context("the endpoint's stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = String::new();
        let ready = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    seen.push_str(&line);
                    seen.push('\n');
                    if line.contains("listening on") {
                        break true;
                    }
                }
                _ => break false,
            }
        };
        let _ = std::fs::write(&log, &seen);
        let endpoint = Endpoint { child };
        if !ready {
            bail!("l2tpkit endpoint did not start:\n{seen}");
        }
        // Keep draining its stderr so that it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(endpoint)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn rss_kb(&self) -> u64 {
        vm_rss_kb(self.pid()).unwrap_or(0)
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = sys::send_signal(self.child.id(), "INT");
        if !matches!(
            sys::wait_timeout(&mut self.child, Duration::from_secs(10)),
            Ok(Some(_))
        ) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn run_of(target: &str, round: u32, f: &LacFigures) -> Run {
    let seconds = f.setup_phase_ms / 1000.0;
    Run {
        target: target.to_string(),
        round,
        requested: f.sessions_requested,
        ip_up: f.sessions_ip_up,
        failed: f.sessions_failed,
        duplicate_addresses: f.duplicate_addresses,
        ip_up_per_second: if seconds > 0.0 {
            f.sessions_ip_up as f64 / seconds
        } else {
            0.0
        },
        icrq_to_ip_up_p50_ms: f.icrq_to_ip_up.p50_ms,
        icrq_to_ip_up_p99_ms: f.icrq_to_ip_up.p99_ms,
        retransmissions: f.retransmissions,
        peer_udp_drops: None,
    }
}

fn say(run: Option<&Run>) {
    if let Some(r) = run {
        eprintln!(
            "bench subscribers: {:<18} round {}: {:>6}/{} IP up, {:>8.0} IP-up/s, ICRQ→IP up \
             p50 {:.1} ms p99 {:.1} ms, {} retransmissions{}",
            r.target,
            r.round,
            r.ip_up,
            r.requested,
            r.ip_up_per_second,
            r.icrq_to_ip_up_p50_ms,
            r.icrq_to_ip_up_p99_ms,
            r.retransmissions,
            r.peer_udp_drops
                .map(|d| format!(", {d} datagrams dropped by l2tpns's full socket"))
                .unwrap_or_default()
        );
    }
}

fn rows(runs: &[Run]) -> Vec<Row> {
    let mut targets: Vec<&str> = runs.iter().map(|r| r.target.as_str()).collect();
    targets.dedup();
    targets
        .into_iter()
        .map(|target| {
            let mine: Vec<&Run> = runs.iter().filter(|r| r.target == target).collect();
            let mut rates: Vec<f64> = mine.iter().map(|r| r.ip_up_per_second).collect();
            rates.sort_by(f64::total_cmp);
            Row {
                target: target.to_string(),
                sessions: mine.first().map_or(0, |r| r.requested),
                median_ip_up_per_second: rates.get(rates.len() / 2).copied().unwrap_or(0.0),
                all_ip_up: mine
                    .iter()
                    .all(|r| r.ip_up == r.requested && r.duplicate_addresses == 0),
            }
        })
        .collect()
}

fn print_summary(s: &Summary) {
    println!(
        "IP-up subscribers per second ({:?}), median of each target's rounds:",
        s.auth
    );
    println!(
        "{:<18} {:>9} {:>12} {:>10}",
        "target", "sessions", "IP-up/s", "all IP up"
    );
    for r in &s.rows {
        println!(
            "{:<18} {:>9} {:>12.0} {:>10}",
            r.target,
            r.sessions,
            r.median_ip_up_per_second,
            if r.all_ip_up { "yes" } else { "NO" }
        );
    }
    if let Some(best) = &s.l2tpns_best {
        for (target, ratio) in &s.ratios_to_l2tpns {
            println!("{target} / {best} (l2tpns's best): {ratio:.1}×");
        }
    }
    let m = &s.memory;
    println!(
        "memory per live PPP session ({} sessions held): LAC {:.0} B ({} KB with PPP, {} KB \
         without), endpoint {:.0} B ({} → {} KB with PPP, {} → {} KB without)",
        m.sessions,
        m.lac_bytes_per_session,
        m.lac_ppp_kb,
        m.lac_off_kb,
        m.endpoint_bytes_per_session,
        m.endpoint_ppp_baseline_kb,
        m.endpoint_ppp_kb,
        m.endpoint_off_baseline_kb,
        m.endpoint_off_kb
    );
    println!("runs and logs: {}", s.run_dir);
}
