//! `l2tpkit-bench setups`: tunnel setups per second while live tunnels are held, through the
//! FIG 2 reference cluster and against one xl2tpd LNS, in the same run and with the same driver.
//!
//! One FIG 2 lab (master, NAT, 3 endpoints; no captures: tcpdump would cost as much CPU as the
//! roles) with 20 initiator addresses. For each level of live tunnels (`--levels`):
//!
//! - Holders: `l2tpkit lac` processes (sessions 0, no echoes, a long hold: HELLO keeps the
//!   tunnels up) from initiator addresses 1..=10 in turn, each opening its share of the level:
//!   10 processes for the cluster, processes of `--xl2tpd-hold-chunk` tunnels for xl2tpd. They
//!   start one after the other, each once the target shows the previous one's tunnels live: a
//!   bigger burst would overflow xl2tpd's socket buffer and leave the level to retransmission
//!   luck.
//! - Measure: one more `l2tpkit lac` from addresses 11..=14 opens `--measure` new tunnels in one
//!   burst (sessions 0, hold 0.5 s) and its `tunnel_setups_per_second` (established / first
//!   SCCRQ to last tunnel up) and setup latency are the figure. With `--measure-chunk N` the
//!   same tunnels go in sequential processes of N each, and the rate is the sum of the
//!   established over the sum of their setup phases.
//! - Then the holders get SIGINT (StopCCN on every tunnel), are waited for, and the next level
//!   starts once the cluster has forgotten them (its endpoints keep a closed tunnel for one
//!   full retransmission cycle, 31 s).
//!
//! Live tunnels are counted by the target: the master's control socket (`totals.tunnels`, the
//! endpoints' load reports, which count tunnels from their SCCRQ on) and xl2tpd's log
//! ("Connection established" minus "Connection closed" lines). xl2tpd runs in the initiator
//! namespace on initiator address 20 (no pppd: no sessions), a fresh process for each level, as
//! a child of the lab's supervisor with its pid file and control pipe in the run dir.
//!
//! RSS: VmRSS of every role, the holders and xl2tpd is read while each level is held; the cluster
//! roles' baseline is read before the first tunnel, xl2tpd's right after it starts. The holders
//! have no zero-tunnel reading: their figure is the growth between the two highest levels.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use l2tpkit::lab::plan::{self, NodeKind};
use l2tpkit::lab::{sys, Lab, LabProcess, TunnelIdSpace};

mod report;

use crate::vm_rss_kb;
use report::{level_rows, median, print_summary, rss_rows, LevelRow, RssRow};

#[derive(Debug, clap::Args)]
pub struct SetupsBench {
    /// Live tunnels held while measuring, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,10000,20000")]
    pub levels: Vec<usize>,
    /// New tunnels the measuring LAC opens at each level.
    #[arg(long, default_value_t = 5000)]
    pub measure: usize,
    /// Open the measured tunnels in sequential LAC processes of this many (0: one burst).
    #[arg(long, default_value_t = 0)]
    pub measure_chunk: usize,
    /// Passes over all levels (cluster and xl2tpd each); medians are reported.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub rounds: u32,
    /// Seconds each holder process and each measuring LAC may take to set its tunnels up.
    #[arg(long, default_value_t = 45.0)]
    pub setup_timeout: f64,
    /// Tunnels per holder process against xl2tpd: one burst each, small enough for its 208 KB
    /// socket buffer (the cluster's holders are always 10 processes).
    #[arg(long, default_value_t = 250)]
    pub xl2tpd_hold_chunk: usize,
    /// Only the cluster.
    #[arg(long)]
    pub skip_xl2tpd: bool,
    /// The cluster's Tunnel IDs: `blocks` (disjoint, the master routes by them: about
    /// 45,000 tunnels in all) or `any` (every endpoint draws from all 65,535 and the NAT
    /// translates: `lab --tunnel-ids any`, up to 150,000).
    #[arg(long, value_enum, default_value_t = TunnelIdSpace::Blocks)]
    pub tunnel_ids: TunnelIdSpace,
    /// Seconds the highest level's tunnels are held (HELLO keeps them up) before its measure,
    /// the target's live count read every 5 s: none may go.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub soak: u64,
    /// Where the lab's logs go [default: a new directory under $TMPDIR/l2tpkit-lab/].
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
enum Target {
    Cluster,
    Xl2tpd,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Target::Cluster => "cluster",
            Target::Xl2tpd => "xl2tpd",
        })
    }
}

/// Initiator addresses 1..=10 hold, 11..=14 measure; xl2tpd listens on 20.
const HOLDER_PROCESSES: usize = 10;
const MEASURE_FIRST: usize = 11;
const MEASURE_INITIATORS: usize = 4;
const XL2TPD_INITIATOR: usize = 20;
/// The endpoints' Tunnel ID blocks (65535 / 4 each with 3 endpoints) with room to spare.
const CLUSTER_MAX_TUNNELS: usize = 45_000;
/// `--tunnel-ids any`: three endpoints of 65,535 IDs each, with room to spare (least-load
/// keeps them within a few tunnels of each other).
const SHARED_MAX_TUNNELS: usize = 150_000;
/// How often the soak reads the target's live count.
const SOAK_POLL: Duration = Duration::from_secs(5);
/// The cluster forgets a closed tunnel after 31 s (RFC 2661 §5.7 hold); this bounds the wait.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// A holder's teardown: its 10 s drain and a margin.
const HOLDER_STOP_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);

/// The part of `l2tpkit lac --json`'s report this bench reads.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
struct LacFigures {
    tunnels_requested: usize,
    tunnels_established: usize,
    tunnels_failed: usize,
    failures: BTreeMap<String, u64>,
    tunnel_setup: SetupLatency,
    tunnels_closed_cleanly: usize,
    setup_phase_ms: f64,
    tunnel_setups_per_second: f64,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(default)]
struct SetupLatency {
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Measurement {
    target: Target,
    round: u32,
    level: usize,
    /// Live tunnels the target counted just before the measuring LAC started.
    live: u64,
    /// From the first holder's start to the level counted live.
    holders_setup_seconds: f64,
    /// From the holders' own reports after their teardown.
    holders_established: usize,
    holders_failed: usize,
    /// Of the holders' tunnels, closed with an acknowledged StopCCN at their teardown: a
    /// tunnel that went during the hold is not among them.
    holders_closed_cleanly: usize,
    /// `--soak`: how long the level was held before the measure, and the least and most live
    /// tunnels the target counted meanwhile.
    soak_seconds: f64,
    soak_min_live: Option<u64>,
    soak_max_live: Option<u64>,
    requested: usize,
    established: usize,
    failed: usize,
    failures: BTreeMap<String, u64>,
    setups_per_second: f64,
    setup_phase_ms: f64,
    /// Burst: the LAC's p50 / p99; chunks: the median p50 and the largest p99 of the chunks.
    setup_p50_ms: f64,
    setup_p99_ms: f64,
    setup_max_ms: f64,
    chunks: usize,
    /// UDP datagrams dropped on a full receive buffer in the initiator namespace (xl2tpd's
    /// socket and the LACs') while measuring.
    udp_rcvbuf_errors: Option<u64>,
    /// VmRSS (KB) of each process while the level was held, before the measure.
    rss_kb: BTreeMap<String, u64>,
    /// Cluster: still live at the start of the level (left from the level before).
    leftover_at_start: u64,
}

#[derive(Debug, Serialize)]
struct Summary {
    measure: usize,
    measure_chunk: usize,
    rounds: u32,
    levels: Vec<LevelRow>,
    rss: Vec<RssRow>,
    measurements: Vec<Measurement>,
    run_dir: String,
}

pub fn run(args: &SetupsBench) -> anyhow::Result<ExitCode> {
    sys::install_interrupt_handler(true)?;
    check_args(args)?;
    if !sys::is_root() {
        bail!("bench setups needs root (a lab in network namespaces)");
    }
    if !args.skip_xl2tpd && !sys::have("xl2tpd", "-v") {
        bail!(
            "xl2tpd is not installed; install it with: apt-get update && \
             DEBIAN_FRONTEND=noninteractive apt-get install -y xl2tpd (or pass --skip-xl2tpd)"
        );
    }
    let shared = args.tunnel_ids == TunnelIdSpace::Any;
    let Some(lab) = crate::fig2_lab("setups", 3, XL2TPD_INITIATOR, shared, args.run_dir.clone())?
    else {
        return Ok(ExitCode::from(130));
    };
    eprintln!(
        "bench setups: lab {} in {}",
        lab.prefix(),
        lab.run_dir().display()
    );
    let Some(summary) = crate::drive_then_down("setups", lab, |lab| drive(lab, args))? else {
        return Ok(ExitCode::from(130));
    };
    let text = serde_json::to_string_pretty(&summary)?;
    let _ = std::fs::write(Path::new(&summary.run_dir).join("setups.json"), &text);
    if args.json {
        println!("{text}");
    } else {
        print_summary(&summary);
    }
    Ok(ExitCode::SUCCESS)
}

fn check_args(args: &SetupsBench) -> anyhow::Result<()> {
    if args.levels.is_empty() {
        bail!("--levels: at least one level");
    }
    if !(1..=40_000).contains(&args.measure) {
        bail!("--measure {}: expected 1 to 40000", args.measure);
    }
    if args.measure_chunk > args.measure {
        bail!(
            "--measure-chunk {} is more than --measure",
            args.measure_chunk
        );
    }
    for &level in &args.levels {
        match args.tunnel_ids {
            TunnelIdSpace::Blocks if level + args.measure > CLUSTER_MAX_TUNNELS => bail!(
                "--levels {level} + --measure {}: the cluster's Tunnel ID blocks hold about \
                 {CLUSTER_MAX_TUNNELS} (--tunnel-ids any holds {SHARED_MAX_TUNNELS})",
                args.measure
            ),
            TunnelIdSpace::Any if level + args.measure > SHARED_MAX_TUNNELS => bail!(
                "--levels {level} + --measure {}: three endpoints hold about \
                 {SHARED_MAX_TUNNELS}",
                args.measure
            ),
            _ => {}
        }
    }
    if args.xl2tpd_hold_chunk == 0 {
        bail!("--xl2tpd-hold-chunk: at least 1");
    }
    if !args.setup_timeout.is_finite() || !(5.0..=600.0).contains(&args.setup_timeout) {
        bail!(
            "--setup-timeout {}: expected 5 to 600 s",
            args.setup_timeout
        );
    }
    Ok(())
}

/// What a level runs against.
struct Dut {
    target: Target,
    address: Ipv4Addr,
    /// The cluster answers from the NAT's address, not the one dialled.
    any_source: bool,
    /// xl2tpd: the process and its log.
    xl2tpd: Option<LabProcess>,
    /// xl2tpd's log read so far: bytes, "established" and "closed" lines.
    log_seen: std::cell::Cell<(u64, u64, u64)>,
}

struct Run<'a> {
    lab: &'a Lab,
    args: &'a SetupsBench,
    initiator_ns: String,
    master_control: PathBuf,
}

fn drive(lab: &Lab, args: &SetupsBench) -> anyhow::Result<Summary> {
    let description = lab.description();
    let cx = Run {
        lab,
        args,
        initiator_ns: lab
            .namespace(NodeKind::Initiator)
            .context("no initiator namespace")?
            .to_string(),
        master_control: description.master_control.clone(),
    };
    let baseline = role_rss(lab);
    let mut measurements = Vec::new();
    let mut xl2tpd_baselines: BTreeMap<(u32, usize), u64> = BTreeMap::new();
    let targets: &[Target] = if args.skip_xl2tpd {
        &[Target::Cluster]
    } else {
        &[Target::Cluster, Target::Xl2tpd]
    };
    for round in 1..=args.rounds {
        for &target in targets {
            for &level in &args.levels {
                sys::checkpoint()?;
                let (m, xl2tpd_baseline) = one_level(&cx, target, round, level)
                    .with_context(|| format!("round {round}, {target} with {level} live"))?;
                if let Some(kb) = xl2tpd_baseline {
                    xl2tpd_baselines.insert((round, level), kb);
                }
                eprintln!(
                    "bench setups: round {round} {target:<7} live {:>6}: {:>5}/{} up, \
                     {:>8.0} setups/s, p50 {:.1} ms p99 {:.1} ms{}",
                    m.live,
                    m.established,
                    m.requested,
                    m.setups_per_second,
                    m.setup_p50_ms,
                    m.setup_p99_ms,
                    m.udp_rcvbuf_errors
                        .filter(|n| *n > 0)
                        .map(|n| format!(", {n} datagrams dropped on full receive buffers"))
                        .unwrap_or_default()
                );
                measurements.push(m);
            }
        }
    }
    let levels = level_rows(&args.levels, &measurements);
    let rss = rss_rows(&baseline, &xl2tpd_baselines, &measurements);
    Ok(Summary {
        measure: args.measure,
        measure_chunk: args.measure_chunk,
        rounds: args.rounds,
        levels,
        rss,
        measurements,
        run_dir: lab.run_dir().display().to_string(),
    })
}

/// One level against one target: hold, read RSS, measure, release. Also xl2tpd's fresh RSS.
fn one_level(
    cx: &Run,
    target: Target,
    round: u32,
    level: usize,
) -> anyhow::Result<(Measurement, Option<u64>)> {
    let tag = format!("{target}-{level}-r{round}");
    let leftover = match target {
        Target::Cluster => wait_cluster_drained(cx)?,
        Target::Xl2tpd => 0,
    };
    let mut dut = match target {
        Target::Cluster => Dut {
            target,
            address: plan::CLUSTER_ADDRESS,
            any_source: true,
            xl2tpd: None,
            log_seen: Default::default(),
        },
        Target::Xl2tpd => Dut {
            target,
            address: plan::initiator_address(XL2TPD_INITIATOR),
            any_source: false,
            xl2tpd: Some(start_xl2tpd(cx, &tag)?),
            log_seen: Default::default(),
        },
    };
    let xl2tpd_baseline = dut.xl2tpd.as_ref().and_then(|p| vm_rss_kb(p.pid));
    let result = hold_and_measure(cx, &dut, &tag, round, level, leftover);
    if let Some(process) = dut.xl2tpd.take() {
        let _ = cx.lab.stop(&process.name);
    }
    result.map(|m| (m, xl2tpd_baseline))
}

fn hold_and_measure(
    cx: &Run,
    dut: &Dut,
    tag: &str,
    round: u32,
    level: usize,
    leftover: u64,
) -> anyhow::Result<Measurement> {
    let started = Instant::now();
    let mut holders = Vec::new();
    let outcome = (|| {
        // Cluster: 10 processes whatever the level (their RSS growth is then per tunnel).
        // xl2tpd: processes of `--xl2tpd-hold-chunk` so each burst fits its receive buffer.
        let processes = match dut.target {
            Target::Cluster => HOLDER_PROCESSES,
            Target::Xl2tpd => HOLDER_PROCESSES.max(level.div_ceil(cx.args.xl2tpd_hold_chunk)),
        }
        .min(level);
        for i in 0..processes {
            let share = level / processes + usize::from(i < level % processes);
            let name = format!("holder-{tag}-{}", i + 1);
            let mut lac_args = vec![
                "lac".to_string(),
                format!("--target={}", dut.address),
                format!(
                    "--bind={}:0",
                    plan::initiator_address(i % HOLDER_PROCESSES + 1)
                ),
                format!("--tunnels={share}"),
                "--sessions-per-tunnel=0".to_string(),
                "--echo-rate=0".to_string(),
                "--ppp=off".to_string(),
                "--hold=3600".to_string(),
                format!("--setup-timeout={}", cx.args.setup_timeout),
                "--json".to_string(),
            ];
            if dut.any_source {
                lac_args.push("--any-source".to_string());
            }
            let before = live(cx, dut)?;
            holders.push(cx.lab.spawn_l2tpkit(&name, &cx.initiator_ns, lac_args)?);
            wait_live(cx, dut, before + share as u64, share as u64, &holders)?;
        }
        let live_now = live(cx, dut)?;
        let holders_setup_seconds = started.elapsed().as_secs_f64();
        let mut rss_kb = role_rss(cx.lab);
        let holder_kb: u64 = holders.iter().filter_map(|p| vm_rss_kb(p.pid)).sum();
        if !holders.is_empty() {
            rss_kb.insert("holder LACs".to_string(), holder_kb);
        }
        if let Some(kb) = dut.xl2tpd.as_ref().and_then(|p| vm_rss_kb(p.pid)) {
            rss_kb.insert("xl2tpd".to_string(), kb);
        }
        let top = cx.args.levels.iter().max() == Some(&level);
        let soak = if top {
            soak(cx, dut, &holders)?
        } else {
            Soak::default()
        };
        let before = udp_rcvbuf_errors(&cx.initiator_ns);
        let figures = measure(cx, dut, tag)?;
        let after = udp_rcvbuf_errors(&cx.initiator_ns);
        // The holders must have outlived the measure, or the level was not held.
        for p in &holders {
            if !sys::is_running(p.pid, p.start_time) {
                bail!("{} exited during the measure: {}", p.name, log_tail(&p.log));
            }
        }
        Ok((
            live_now,
            holders_setup_seconds,
            rss_kb,
            soak,
            figures,
            (before, after),
        ))
    })();
    let held = stop_holders(cx, &holders);
    let (live_now, holders_setup_seconds, rss_kb, soak, figures, (before, after)) = outcome?;
    Ok(Measurement {
        target: dut.target,
        round,
        level,
        live: live_now,
        holders_setup_seconds,
        holders_established: held.established,
        holders_failed: held.failed,
        holders_closed_cleanly: held.closed_cleanly,
        soak_seconds: soak.seconds,
        soak_min_live: soak.min_live,
        soak_max_live: soak.max_live,
        requested: figures.requested,
        established: figures.established,
        failed: figures.failed,
        failures: figures.failures,
        setups_per_second: figures.per_second,
        setup_phase_ms: figures.phase_ms,
        setup_p50_ms: figures.p50_ms,
        setup_p99_ms: figures.p99_ms,
        setup_max_ms: figures.max_ms,
        chunks: figures.chunks,
        udp_rcvbuf_errors: before.zip(after).map(|(b, a)| a.saturating_sub(b)),
        rss_kb,
        leftover_at_start: leftover,
    })
}

struct Measured {
    requested: usize,
    established: usize,
    failed: usize,
    failures: BTreeMap<String, u64>,
    per_second: f64,
    phase_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    chunks: usize,
}

/// The measuring LAC(s): one burst, or sequential chunks.
fn measure(cx: &Run, dut: &Dut, tag: &str) -> anyhow::Result<Measured> {
    let total = cx.args.measure;
    let chunk = if cx.args.measure_chunk == 0 {
        total
    } else {
        cx.args.measure_chunk
    };
    let mut reports = Vec::new();
    let mut left = total;
    while left > 0 {
        sys::checkpoint()?;
        let count = chunk.min(left);
        left -= count;
        let initiators = MEASURE_INITIATORS.min(count);
        let mut lac_args = vec![
            "lac".to_string(),
            format!("--target={}", dut.address),
            format!("--bind={}:0", plan::initiator_address(MEASURE_FIRST)),
            format!("--initiators={initiators}"),
            format!("--tunnels={count}"),
            "--sessions-per-tunnel=0".to_string(),
            "--echo-rate=0".to_string(),
            "--ppp=off".to_string(),
            "--hold=0.5".to_string(),
            format!("--setup-timeout={}", cx.args.setup_timeout),
            "--json".to_string(),
        ];
        if dut.any_source {
            lac_args.push("--any-source".to_string());
        }
        let name = format!("measure-{tag}-{}", reports.len() + 1);
        reports.push(run_lac(cx, &name, &lac_args)?);
    }
    let established: usize = reports.iter().map(|r| r.tunnels_established).sum();
    let phase_ms: f64 = reports.iter().map(|r| r.setup_phase_ms).sum();
    let mut failures = BTreeMap::new();
    for r in &reports {
        for (why, n) in &r.failures {
            *failures.entry(why.clone()).or_default() += n;
        }
    }
    let mut p50s: Vec<f64> = reports.iter().map(|r| r.tunnel_setup.p50_ms).collect();
    Ok(Measured {
        requested: reports.iter().map(|r| r.tunnels_requested).sum(),
        established,
        failed: reports.iter().map(|r| r.tunnels_failed).sum(),
        failures,
        per_second: if phase_ms > 0.0 {
            established as f64 / (phase_ms / 1000.0)
        } else {
            0.0
        },
        phase_ms,
        p50_ms: median(&mut p50s).unwrap_or(0.0),
        p99_ms: reports
            .iter()
            .map(|r| r.tunnel_setup.p99_ms)
            .fold(0.0, f64::max),
        max_ms: reports
            .iter()
            .map(|r| r.tunnel_setup.max_ms)
            .fold(0.0, f64::max),
        chunks: reports.len(),
    })
}

/// `ip netns exec <initiator ns> l2tpkit lac ARGS`, our child in its own process group, its
/// stdout and stderr in the run dir; bounded: SIGINT by PID at the deadline or on Ctrl-C, then
/// SIGKILL, always waited for.
fn run_lac(cx: &Run, name: &str, lac_args: &[String]) -> anyhow::Result<LacFigures> {
    let run_dir = cx.lab.run_dir();
    let out_path = run_dir.join(format!("{name}.json"));
    let err_path = run_dir.join(format!("{name}.log"));
    let stdout = std::fs::File::create(&out_path)
        .with_context(|| format!("creating {}", out_path.display()))?;
    let stderr = std::fs::File::create(&err_path)
        .with_context(|| format!("creating {}", err_path.display()))?;
    let mut child = Command::new("ip")
        .args(["netns", "exec", &cx.initiator_ns])
        .arg(cx.lab.binary())
        .args(lac_args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    // Setup, the 0.5 s hold, the teardown's 10 s drain, and a margin.
    let budget = Duration::from_secs_f64(cx.args.setup_timeout + 0.5 + 10.0 + 15.0);
    let deadline = Instant::now() + budget;
    let mut stop_reason = None;
    loop {
        match sys::wait_timeout(&mut child, Duration::from_millis(100)) {
            Ok(Some(_)) => break,
            Ok(None) => {}
            Err(e) => {
                stop_reason = Some(format!("waiting for it: {e}"));
            }
        }
        if sys::interrupted() {
            stop_reason = Some("interrupted".to_string());
        } else if Instant::now() >= deadline {
            stop_reason = Some(format!("did not finish within {budget:?}"));
        }
        if let Some(reason) = &stop_reason {
            let _ = sys::send_signal(child.id(), "INT");
            if !matches!(
                sys::wait_timeout(&mut child, Duration::from_secs(12)),
                Ok(Some(_))
            ) {
                let _ = child.kill();
                let _ = sys::wait_timeout(&mut child, sys::KILL_GRACE);
            }
            sys::checkpoint()?;
            bail!("{name}: {reason}; killed");
        }
    }
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    serde_json::from_str(&text)
        .with_context(|| format!("{name} printed no report: {}", log_tail(&err_path)))
}

#[derive(Debug, Default)]
struct Soak {
    seconds: f64,
    min_live: Option<u64>,
    max_live: Option<u64>,
}

/// `--soak`: holds the level, reading the target's live count every [`SOAK_POLL`]; fails when
/// a holder exits.
fn soak(cx: &Run, dut: &Dut, holders: &[LabProcess]) -> anyhow::Result<Soak> {
    let length = Duration::from_secs(cx.args.soak);
    if length.is_zero() || holders.is_empty() {
        return Ok(Soak::default());
    }
    let started = Instant::now();
    let mut result = Soak::default();
    eprintln!(
        "bench setups: {} holds {} live tunnels for {} s",
        dut.target,
        live(cx, dut)?,
        length.as_secs()
    );
    loop {
        sys::checkpoint()?;
        for p in holders {
            if !sys::is_running(p.pid, p.start_time) {
                bail!("{} exited during the soak: {}", p.name, log_tail(&p.log));
            }
        }
        let now = live(cx, dut)?;
        result.min_live = Some(result.min_live.map_or(now, |m| m.min(now)));
        result.max_live = Some(result.max_live.map_or(now, |m| m.max(now)));
        let elapsed = started.elapsed();
        if elapsed >= length {
            result.seconds = elapsed.as_secs_f64();
            return Ok(result);
        }
        std::thread::sleep(SOAK_POLL.min(length - elapsed));
    }
}

/// What the holders' own reports said after their teardown.
#[derive(Default)]
struct Held {
    established: usize,
    failed: usize,
    closed_cleanly: usize,
}

/// SIGINT to every holder by PID (each sends StopCCN on its tunnels), a bounded wait, then the
/// supervisor reaps them (SIGKILL for one that is still there). Their established, failed and
/// cleanly closed tunnels, from their reports.
fn stop_holders(cx: &Run, holders: &[LabProcess]) -> Held {
    for p in holders {
        if sys::is_running(p.pid, p.start_time) {
            let _ = sys::send_signal(p.pid, "INT");
        }
    }
    let deadline = Instant::now() + HOLDER_STOP_TIMEOUT;
    while holders.iter().any(|p| sys::is_running(p.pid, p.start_time)) && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut held = Held::default();
    for p in holders {
        let _ = cx.lab.stop(&p.name);
        if let Some(report) = report_in_log(&p.log) {
            held.established += report.tunnels_established;
            held.failed += report.tunnels_failed;
            held.closed_cleanly += report.tunnels_closed_cleanly;
        }
    }
    held
}

/// A holder's log holds its stderr and then its JSON report (stdout).
fn report_in_log(log: &Path) -> Option<LacFigures> {
    let text = std::fs::read_to_string(log).ok()?;
    let start = text
        .find("\n{\n")
        .map(|i| i + 1)
        .or_else(|| text.starts_with("{\n").then_some(0))?;
    let end = text[start..].find("\n}").map(|i| start + i + 2)?;
    serde_json::from_str(&text[start..end]).ok()
}

/// Waits until the target counts `expected` live tunnels (the cluster: for a second, as its
/// count includes tunnels still waiting for their SCCN), or all but 1% of the last `share` for
/// 3 s (xl2tpd now and then never completes one), at most the holders' setup timeout and a
/// margin; fails when a holder exits or on Ctrl-C.
fn wait_live(
    cx: &Run,
    dut: &Dut,
    expected: u64,
    share: u64,
    holders: &[LabProcess],
) -> anyhow::Result<u64> {
    let bound = Duration::from_secs_f64(cx.args.setup_timeout + 5.0);
    let deadline = Instant::now() + bound;
    let stable_for = match dut.target {
        Target::Cluster => Duration::from_secs(1),
        Target::Xl2tpd => Duration::ZERO,
    };
    let nearly = expected.saturating_sub((share / 100).max(1));
    let mut last = (u64::MAX, Instant::now());
    loop {
        sys::checkpoint()?;
        for p in holders {
            if !sys::is_running(p.pid, p.start_time) {
                bail!("{} exited while holding: {}", p.name, log_tail(&p.log));
            }
        }
        if let Some(p) = &dut.xl2tpd {
            if !sys::is_running(p.pid, p.start_time) {
                bail!("xl2tpd exited: {}", log_tail(&p.log));
            }
        }
        let now = live(cx, dut)?;
        if now != last.0 {
            last = (now, Instant::now());
        }
        let unchanged = last.1.elapsed();
        if (now >= expected && unchanged >= stable_for)
            || (now >= nearly && unchanged >= Duration::from_secs(3))
        {
            return Ok(now);
        }
        if Instant::now() >= deadline {
            eprintln!(
                "bench setups: {} counts {now} live tunnels after {bound:?}, not {expected}: \
                 going on with what it holds",
                dut.target
            );
            return Ok(now);
        }
        std::thread::sleep(POLL);
    }
}

/// Live tunnels as the target counts them.
fn live(cx: &Run, dut: &Dut) -> anyhow::Result<u64> {
    match &dut.xl2tpd {
        None => cluster_tunnels(cx),
        Some(p) => {
            use std::io::{Read, Seek, SeekFrom};
            // Only what was appended since the last look: the log grows by a line per tunnel.
            let (mut offset, mut up, mut closed) = dut.log_seen.get();
            let mut file = std::fs::File::open(&p.log)
                .with_context(|| format!("reading {}", p.log.display()))?;
            file.seek(SeekFrom::Start(offset))?;
            let mut text = Vec::new();
            file.read_to_end(&mut text)?;
            let complete = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            let text = String::from_utf8_lossy(&text[..complete]);
            up += text.matches("Connection established to").count() as u64;
            closed += text.matches("Connection closed to").count() as u64;
            offset += complete as u64;
            dut.log_seen.set((offset, up, closed));
            Ok(up.saturating_sub(closed))
        }
    }
}

fn cluster_tunnels(cx: &Run) -> anyhow::Result<u64> {
    let status = reference::control::request(&cx.master_control, "status")
        .context("asking the master for its status")?;
    status["totals"]["tunnels"]
        .as_u64()
        .context("no totals.tunnels in the master's status")
}

/// Waits until the cluster counts no tunnel (the previous level's closed tunnels are kept for
/// 31 s); what is left when the bound runs out.
fn wait_cluster_drained(cx: &Run) -> anyhow::Result<u64> {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let mut said = false;
    loop {
        sys::checkpoint()?;
        let n = cluster_tunnels(cx)?;
        if n == 0 {
            return Ok(0);
        }
        if Instant::now() >= deadline {
            eprintln!("bench setups: the cluster still counts {n} tunnels; going on");
            return Ok(n);
        }
        if !said {
            eprintln!("bench setups: waiting for the cluster to forget {n} closed tunnels");
            said = true;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A fresh xl2tpd LNS on initiator address 20, in the initiator namespace, under the lab's
/// supervisor (stopped by PID with the lab at the latest).
fn start_xl2tpd(cx: &Run, tag: &str) -> anyhow::Result<LabProcess> {
    let dir = cx.lab.run_dir();
    let conf = dir.join(format!("xl2tpd-{tag}.conf"));
    let secrets = dir.join("xl2tpd.secrets");
    let ppp_options = dir.join("xl2tpd-ppp.options");
    std::fs::write(&secrets, "").context("writing xl2tpd.secrets")?;
    std::fs::write(&ppp_options, "").context("writing xl2tpd-ppp.options")?;
    std::fs::write(
        &conf,
        format!(
            "[global]\n\
             listen-addr = {}\n\
             port = 1701\n\
             access control = no\n\
             force userspace = yes\n\
             [lns default]\n\
             ip range = 127.201.0.10-127.201.7.250\n\
             local ip = 127.201.0.1\n\
             require authentication = no\n\
             refuse pap = yes\n\
             refuse chap = yes\n\
             hidden bit = no\n\
             length bit = yes\n\
             pppoptfile = {}\n",
            plan::initiator_address(XL2TPD_INITIATOR),
            ppp_options.display()
        ),
    )
    .context("writing the xl2tpd configuration")?;
    let name = format!("xl2tpd-{tag}");
    let log = dir.join(format!("{name}.log"));
    let path = |p: PathBuf| p.display().to_string();
    let process = cx.lab.spawn_in(
        &name,
        &cx.initiator_ns,
        "xl2tpd",
        [
            "-D".to_string(),
            "-c".to_string(),
            path(conf),
            "-s".to_string(),
            path(secrets),
            "-p".to_string(),
            path(dir.join(format!("{name}.pid"))),
            "-C".to_string(),
            path(dir.join(format!("{name}.control"))),
        ],
        &log,
    )?;
    cx.lab
        .wait_for_log(&process, "Listening on IP address", Duration::from_secs(10))?;
    Ok(process)
}

/// VmRSS of the cluster's roles (master, NAT, endpoints), by name.
fn role_rss(lab: &Lab) -> BTreeMap<String, u64> {
    lab.processes()
        .iter()
        .filter(|p| p.name == "master" || p.name == "nat" || p.name.starts_with("te"))
        .filter_map(|p| vm_rss_kb(p.pid).map(|kb| (p.name.clone(), kb)))
        .collect()
}

/// `RcvbufErrors` of `Udp:` in the namespace's /proc/net/snmp.
fn udp_rcvbuf_errors(namespace: &str) -> Option<u64> {
    let out = sys::run(
        "ip",
        &["netns", "exec", namespace, "cat", "/proc/net/snmp"],
        None,
        sys::COMMAND_TIMEOUT,
    )
    .ok()?;
    let mut udp = out.stdout.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = udp.next()?.split_whitespace().collect();
    let values: Vec<&str> = udp.next()?.split_whitespace().collect();
    let at = names.iter().position(|n| *n == "RcvbufErrors")?;
    values.get(at)?.parse().ok()
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut tail: Vec<&str> = text.lines().rev().take(5).collect();
    tail.reverse();
    tail.join(" | ")
}
