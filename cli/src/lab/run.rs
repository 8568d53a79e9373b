//! `l2tpkit lab run`: the whole thing in one command. Up, the LAC from the initiator namespace
//! against the cluster address, both captures checked with `verify`, a table per endpoint, and
//! the lab removed, also when a step fails.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use l2tp::wire::message::ParseOptions;
use probes::live::Live;
use probes::sequence;
use reference::master::MasterStatus;

use crate::args;
use crate::lac::{LacArgs, PppLevel};
use crate::tui::LabHooks;

use super::{sys, EndpointKind, Lab, LabDescription, LabSpec, NodeKind, Topology};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// fig2: endpoints behind a NAT; fig4: endpoints with global addresses of their own.
    #[arg(long, value_enum, default_value_t = Topology::Fig2)]
    pub topology: Topology,
    #[arg(long, default_value_t = 3,
          value_parser = clap::value_parser!(u16).range(1..=super::plan::MAX_ENDPOINTS as i64))]
    pub endpoints: u16,
    #[arg(long, default_value_t = 30,
          value_parser = clap::value_parser!(u16).range(1..=super::plan::MAX_INITIATORS as i64))]
    pub initiators: u16,
    #[arg(long, default_value_t = 1000)]
    pub tunnels: usize,
    #[arg(long, default_value_t = 2)]
    pub sessions_per_tunnel: usize,
    /// Tunnel setups per second (0: as fast as the window allows).
    #[arg(long, default_value_t = 100.0, value_parser = args::rate_upto(1_000_000.0, " (unpaced)"))]
    pub rate: f64,
    /// SCCRQs without an answer at most, over all initiators (each holds its fair share).
    /// [default: 1000; with --endpoint-kind l2tpns, --initiators: one per initiator address]
    #[arg(long)]
    pub max_outstanding: Option<usize>,
    /// PPP on every session: `ip` (LCP, CHAP, IPCP: up once IPCP opens), `auth`, `lcp`, or
    /// `off` (L2TP only). With PPP the endpoints are CHAP servers with an address pool each.
    /// [default: ip; off with --endpoint-kind xl2tpd, which cannot run PPP]. With l2tpns,
    /// whose sessions always do PPP, `off` leaves every call in LCP until l2tpns clears it
    /// (~30 s after its ICCN).
    #[arg(long, value_parser = args::ppp_level)]
    pub ppp: Option<PppLevel>,
    /// Seconds to hold everything up with LCP echoes once all are up.
    #[arg(long, default_value = "8", value_parser = args::seconds_between(0.0, 86_400.0))]
    pub hold: Duration,
    /// LCP Echo-Requests per second on each session while holding.
    #[arg(long, default_value_t = 1.0, value_parser = args::rate_upto(1000.0, ""))]
    pub echo_rate: f64,
    /// Show the live TUI (the default when stdin and stdout are a terminal).
    #[arg(long, conflicts_with = "no_tui")]
    pub tui: bool,
    /// No TUI: a progress line on stderr and the final table.
    #[arg(long)]
    pub no_tui: bool,
    /// Where the logs, captures, status files and summary stay after the run.
    #[arg(long)]
    pub run_dir: Option<std::path::PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// The initiators' source ADDR[:PORT], as `lac --bind`: ADDR is the lab's first initiator
    /// address (198.18.1.1, also what 0.0.0.0 means), the others follow it; PORT is every
    /// initiator's source port (any free one by default; 1701 as many LACs send from).
    #[arg(long, default_value = "0.0.0.0:0", value_parser = args::addr_port::<0>)]
    pub bind: SocketAddrV4,
    #[command(flatten)]
    pub cluster: super::ClusterFlags,
}

impl RunArgs {
    fn wants_tui(&self) -> bool {
        use std::io::IsTerminal;
        self.tui
            || (!self.no_tui && std::io::stdin().is_terminal() && std::io::stdout().is_terminal())
    }
}

/// The TUI's way to the cluster: drain at the control socket of the master holding the
/// cluster address (after a takeover, the endpoint's), kill through the lab's supervisor.
struct Hooks<'a> {
    lab: &'a Lab,
    description: LabDescription,
}

impl Hooks<'_> {
    /// The control socket of the master that answers as active; the lab's master by default.
    fn control(&self) -> PathBuf {
        self.description.active_master().map_or_else(
            || self.description.master_control.clone(),
            |(c, _)| c.control,
        )
    }
}

impl LabHooks for Hooks<'_> {
    fn drain(&mut self, endpoint: &str) -> Result<(), String> {
        reference::control::request(&self.control(), &format!("drain {endpoint}"))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    fn kill(&mut self, endpoint: &str) -> Result<(), String> {
        self.lab
            .kill(endpoint)
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    }
    fn kill_master(&mut self) -> Result<(), String> {
        self.lab
            .kill(super::MASTER)
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    }
    fn master_status(&mut self) -> Option<MasterStatus> {
        self.description.active_master().map(|(_, status)| status)
    }
}

/// The in-process LAC of the run: every initiator address of the lab, the cluster address as
/// target, its CSV in the run directory.
fn lac_args(
    args: &RunArgs,
    ppp: PppLevel,
    max_outstanding: usize,
    cluster: Ipv4Addr,
    first: Ipv4Addr,
    run_dir: &Path,
) -> LacArgs {
    let max_retransmits = args.cluster.max_retransmits.unwrap_or(5);
    // A setup is not given up while its requests may still be retransmitted (on a lossy
    // link, with more retransmissions, that takes longer than the pacing alone would say).
    let reliable = l2tp::conn::reliable::ReliableConfig {
        max_retransmits,
        ..Default::default()
    };
    let ppp_max_configure = super::spec::ppp_max_configure(args.cluster.max_retransmits);
    let plan = probes::lac::PppPlan {
        level: ppp,
        max_configure: ppp_max_configure,
        ..probes::lac::PppPlan::default()
    };
    let schedule = probes::lac::setup_bound(&reliable, &plan).as_secs_f64();
    LacArgs {
        target: SocketAddrV4::new(cluster, 1701),
        bind: SocketAddrV4::new(first, args.bind.port()),
        tunnels: args.tunnels,
        sessions_per_tunnel: args.sessions_per_tunnel,
        hold: args.hold,
        echo_rate: args.echo_rate,
        setup_timeout: Some(Duration::from_secs_f64(
            (20.0 + args.tunnels as f64 / args.rate.max(1.0)).max(schedule),
        )),
        json: true,
        any_source: true,
        max_retransmits,
        initiators: usize::from(args.initiators),
        rate: args.rate,
        max_outstanding,
        csv: Some(run_dir.join("lac.csv")),
        endpoint_csv: Some(run_dir.join("lac-endpoints.csv")),
        hdr_log: Some(run_dir.join("lac.hlog")),
        control: Some(run_dir.join("lac.sock")),
        metrics: args
            .cluster
            .metrics
            .then(|| std::net::SocketAddr::new(first.into(), super::roles::METRICS_PORT)),
        ppp,
        ppp_max_configure,
        username: super::roles::LAB_USER.to_string(),
        password: super::roles::LAB_PASSWORD.to_string(),
        ..LacArgs::default()
    }
}

#[derive(Debug, serde::Serialize)]
struct EndpointRow {
    name: String,
    dispatched: u64,
    share_percent: f64,
    conforming_tunnels: usize,
}

#[derive(Debug, serde::Serialize)]
struct RunSummary {
    topology: String,
    /// What answered as the LNS: `l2tpkit`, `xl2tpd` or `l2tpns`.
    endpoint_kind: EndpointKind,
    run_dir: String,
    lac: serde_json::Value,
    lac_success: bool,
    /// `q` in the TUI ended the run early; what was set up until then is judged.
    stopped_by_user: bool,
    /// The public segment's impairment: the run is judged on its tunnels coming up (none
    /// failed); echoes and StopCCN acknowledgements lost to it are reported, not failures, and
    /// so are `verify`'s deviations (its captures see frames before the impairment drops them).
    netem: Option<String>,
    /// The impairing switch's counters (`impair-status.json`).
    impair: Option<serde_json::Value>,
    /// The LAC's own text report (percentile tables), for the final table.
    #[serde(skip)]
    lac_text: String,
    /// `verify`'s report of the run, for the HTML report's ladders (checked once, with the
    /// lab's own roles).
    #[serde(skip)]
    sequences: Option<probes::sequence::Report>,
    verify_tunnels: usize,
    verify_conforming: usize,
    verify_variants: Vec<String>,
    endpoints: Vec<EndpointRow>,
}

pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    sys::install_interrupt_handler(true)?;
    if args.tunnels < usize::from(args.initiators) {
        anyhow::bail!(
            "--tunnels {} is fewer than --initiators {}",
            args.tunnels,
            args.initiators
        );
    }
    let first = super::plan::initiator_address(1);
    if !args.bind.ip().is_unspecified() && *args.bind.ip() != first {
        anyhow::bail!(
            "--bind {}: the lab's initiators send from {first} up (--initiators {}); give \
             {first}:PORT or 0.0.0.0:PORT",
            args.bind,
            args.initiators
        );
    }
    let ppp = ppp_level(args.ppp, args.cluster.endpoint_kind)?;
    let max_outstanding = max_outstanding(args)?;
    check_room(args)?;
    let mut spec = LabSpec {
        initiators: args.initiators.into(),
        run_dir: args.run_dir.clone(),
        ppp: ppp != PppLevel::Off,
        ..LabSpec::new(args.topology, args.endpoints.into())
    };
    args.cluster.apply(&mut spec)?;
    let lab = Lab::up(&spec)?;
    let outcome = drive(&lab, args, ppp, max_outstanding);
    let run_dir = lab.run_dir().to_path_buf();
    let down = lab.down();
    let mut summary = outcome?;
    down.context("removing the lab")?;
    let text = serde_json::to_string_pretty(&summary)?;
    std::fs::write(run_dir.join("summary.json"), &text).context("writing summary.json")?;
    let report = run_dir.join("report.html");
    let mut inputs = crate::report::gather(std::slice::from_ref(&run_dir));
    inputs.sequences = summary.sequences.take();
    let html = crate::report::render(&inputs);
    std::fs::write(&report, html).context("writing report.html")?;
    if args.json {
        println!("{text}");
        eprintln!("report: {}", report.display());
    } else {
        print_table(&summary);
        println!("report: {}", report.display());
    }
    let conforming = summary.verify_conforming == summary.verify_tunnels;
    let ok = summary.lac_success
        && summary.verify_tunnels > 0
        && (conforming || summary.netem.is_some());
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The LAC's `--ppp`: as asked, else `ip`, or `off` for xl2tpd endpoints, whose sessions are a
/// data loopback (their pppd is a stand-in that echoes every frame). l2tpns takes every level:
/// without PPP its calls wait in LCP until it clears them.
fn ppp_level(asked: Option<PppLevel>, kind: EndpointKind) -> anyhow::Result<PppLevel> {
    match (kind, asked) {
        (EndpointKind::L2tpkit | EndpointKind::L2tpns, asked) => Ok(asked.unwrap_or(PppLevel::Ip)),
        (EndpointKind::Xl2tpd, None | Some(PppLevel::Off)) => Ok(PppLevel::Off),
        (EndpointKind::Xl2tpd, Some(level)) => anyhow::bail!(
            "--ppp {level} cannot go with --endpoint-kind xl2tpd: xl2tpd's pppd is a stand-in \
             that echoes every frame (no kernel PPP here), so PPP never comes up; leave --ppp \
             out (the LAC then runs with --ppp off)"
        ),
    }
}

/// The LAC's `--max-outstanding`: as asked, else 1000; with l2tpns one per initiator address
/// at most, as it must be: l2tpns takes a second SCCRQ from an address and port whose first
/// tunnel is still opening for a retransmission of the first ("Duplicate SCCRQ?"), and the
/// second tunnel waits for its own retransmission.
fn max_outstanding(args: &RunArgs) -> anyhow::Result<usize> {
    let initiators = usize::from(args.initiators);
    match (args.cluster.endpoint_kind, args.max_outstanding) {
        (EndpointKind::L2tpns, None) => Ok(initiators),
        (EndpointKind::L2tpns, Some(n)) if n > initiators => anyhow::bail!(
            "--max-outstanding {n} cannot go with --endpoint-kind l2tpns and --initiators \
             {initiators}: l2tpns takes a second SCCRQ from an initiator address whose first \
             tunnel is still opening for a retransmission of the first, so at most one may be \
             outstanding per address; leave --max-outstanding out (it is then --initiators)"
        ),
        (_, asked) => Ok(asked.unwrap_or(1000)),
    }
}

/// All the run's tunnels are up at once: with l2tpns, the endpoints must hold them
/// ([`super::l2tpns::MAX_TUNNELS`] each).
fn check_room(args: &RunArgs) -> anyhow::Result<()> {
    let each = super::l2tpns::MAX_TUNNELS as usize;
    let room = usize::from(args.endpoints) * each;
    if args.cluster.endpoint_kind == EndpointKind::L2tpns && args.tunnels > room {
        anyhow::bail!(
            "--tunnels {} cannot go with --endpoint-kind l2tpns and --endpoints {}: one l2tpns \
             holds at most {each} tunnels (its table of 500 is compiled in), {room} in all; \
             ask for fewer tunnels or more endpoints",
            args.tunnels,
            args.endpoints
        );
    }
    Ok(())
}

fn drive(
    lab: &Lab,
    args: &RunArgs,
    ppp: PppLevel,
    max_outstanding: usize,
) -> anyhow::Result<RunSummary> {
    let d = lab.description();
    let ti = lab
        .namespace(NodeKind::Initiator)
        .context("the lab has no initiator namespace")?
        .to_string();
    let first = *d
        .initiator_addresses
        .first()
        .context("the lab has no initiator address")?;
    let lac_args = lac_args(
        args,
        ppp,
        max_outstanding,
        d.cluster_address,
        first,
        lab.run_dir(),
    );
    let live = Live::new(args.rate);
    let tui = args.wants_tui();
    // The LAC runs in this process, on a thread moved into the initiator namespace: the TUI
    // (or the progress line) reads its live figures directly.
    let driver = {
        let live = live.clone();
        let lac_args = lac_args.clone();
        std::thread::Builder::new()
            .name("lac".into())
            .spawn(move || {
                sys::enter_netns(&ti)?;
                crate::lac::execute_with(&lac_args, live, !tui)
            })
            .context("starting the LAC thread")?
    };
    let stopped_by_user = if tui {
        let mut hooks = Hooks {
            lab,
            description: d.clone(),
        };
        let exit = crate::tui::run(live.clone(), &mut hooks, true, Duration::from_millis(100));
        // Whatever the TUI did, the driver is told to finish; then we wait for it.
        if !matches!(exit, Ok(crate::tui::TuiExit::Finished)) {
            live.control.request_stop();
        }
        matches!(exit?, crate::tui::TuiExit::Quit)
    } else {
        false
    };
    let budget = lac_args.setup_timeout.unwrap_or_default() + args.hold + Duration::from_secs(30);
    let started = Instant::now();
    let mut interrupted = false;
    while !driver.is_finished() {
        if sys::interrupted() && !interrupted {
            interrupted = true;
            live.control.request_stop();
        }
        if started.elapsed() > budget {
            live.control.request_stop();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (lac_report, _ended) = driver
        .join()
        .map_err(|_| anyhow::anyhow!("the LAC thread panicked"))??;
    sys::checkpoint()?;
    let lac = serde_json::to_value(&lac_report)?;
    std::fs::write(
        lab.run_dir().join("lac.json"),
        serde_json::to_vec_pretty(&lac)?,
    )
    .context("writing lac.json")?;
    let none_failed = lac_report.tunnels_failed == 0 && lac_report.sessions_failed == 0;
    let lac_success = if stopped_by_user {
        // What was still being set up when the user quit is cut short by that quit, not
        // failed by the target.
        lac_report.failures.keys().all(|why| {
            why == probes::lac::STOPPED_BEFORE_TUNNEL_UP
                || why == probes::lac::STOPPED_BEFORE_SESSION_UP
        })
    } else if d.netem.is_some() {
        none_failed
            && lac_report.tunnels_established == lac_report.tunnels_requested
            && lac_report.sessions_established == lac_report.sessions_requested
    } else {
        lac_report.success()
    };
    // Let the last acks reach the captures, then stop them so the files are complete.
    std::thread::sleep(Duration::from_millis(500));
    lab.stop_captures()?;
    let report = verify(lab.run_dir(), args.topology)?;
    std::fs::write(
        lab.run_dir().join("verify.txt"),
        report.render_text(&["public.pcap".into(), "lan.pcap".into()]),
    )
    .context("writing verify.txt")?;
    // The master holding the cluster address now (after a takeover: the endpoint's), or the
    // last status the lab's master wrote.
    let status: serde_json::Value = match d.active_master() {
        Some((_, status)) => serde_json::to_value(status)?,
        None => serde_json::from_str(
            &std::fs::read_to_string(lab.run_dir().join("master-status.json"))
                .context("reading the master's status")?,
        )
        .context("parsing the master's status")?,
    };
    let total = status["totals"]["sccrq_dispatched"]
        .as_u64()
        .unwrap_or(0)
        .max(1);
    let endpoints = status["endpoints"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|e| {
                    let name = e["name"].as_str().unwrap_or("?").to_string();
                    let dispatched = e["dispatched_total"].as_u64().unwrap_or(0);
                    let conforming_tunnels = report
                        .tunnels
                        .iter()
                        .filter(|t| t.conforms && t.endpoint.as_deref() == Some(&name))
                        .count();
                    EndpointRow {
                        name,
                        dispatched,
                        share_percent: 100.0 * dispatched as f64 / total as f64,
                        conforming_tunnels,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let impair = std::fs::read_to_string(lab.run_dir().join("impair-status.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    Ok(RunSummary {
        topology: args.topology.to_string(),
        endpoint_kind: args.cluster.endpoint_kind,
        run_dir: lab.run_dir().display().to_string(),
        lac_success,
        stopped_by_user,
        netem: d.netem.clone(),
        impair,
        lac_text: lac_report.to_string(),
        lac,
        verify_tunnels: report.totals.tunnels,
        verify_conforming: report.totals.conforming,
        verify_variants: report
            .totals
            .variants
            .keys()
            .map(|v| format!("{v:?}"))
            .collect(),
        endpoints,
        sequences: Some(report),
    })
}

/// `verify` on a lab run's two captures, with the lab's roles and its topology's sequence.
pub fn verify(run_dir: &Path, topology: Topology) -> anyhow::Result<sequence::Report> {
    let roles = crate::verify::read_roles(&run_dir.join("roles.json"))?;
    let files = [run_dir.join("public.pcap"), run_dir.join("lan.pcap")];
    let (observations, _) = crate::verify::read_captures(&files, 1701, &ParseOptions::default())?;
    let expected = match topology {
        Topology::Fig2 => crate::verify::SequenceArg::Fig3,
        Topology::Fig4 => crate::verify::SequenceArg::Fig5,
    };
    Ok(sequence::check(&observations, &roles, expected.into()))
}

fn print_table(s: &RunSummary) {
    println!(
        "lab run: {}, {} endpoints — run dir {}",
        s.topology, s.endpoint_kind, s.run_dir
    );
    if s.stopped_by_user {
        println!("stopped early from the TUI");
    }
    if let Some(netem) = &s.netem {
        let stats = s.impair.as_ref().map(|i| &i["stats"]);
        let count = |key: &str| stats.and_then(|st| st[key].as_u64()).unwrap_or(0);
        println!(
            "public segment impaired: {netem} ({} frames lost, {} delayed, {} reordered)",
            count("lost"),
            count("delayed"),
            count("reordered")
        );
    }
    println!("{}", s.lac_text);
    println!(
        "{:<10} {:>10} {:>8} {:>12}",
        "endpoint", "dispatched", "share", "conforming"
    );
    for e in &s.endpoints {
        println!(
            "{:<10} {:>10} {:>7.1}% {:>12}",
            e.name, e.dispatched, e.share_percent, e.conforming_tunnels
        );
    }
    println!(
        "verify: {} of {} tunnels conform ({})",
        s.verify_conforming,
        s.verify_tunnels,
        s.verify_variants.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        lab: super::super::LabCommand,
    }

    fn run_args(flags: &[&str]) -> RunArgs {
        let argv = ["lab", "run"].iter().chain(flags);
        match Cli::try_parse_from(argv).unwrap().lab {
            super::super::LabCommand::Run(args) => args,
            other => panic!("{other:?}"),
        }
    }

    fn level(flags: &[&str]) -> anyhow::Result<PppLevel> {
        let args = run_args(flags);
        ppp_level(args.ppp, args.cluster.endpoint_kind)
    }

    #[test]
    fn xl2tpd_endpoints_run_the_lac_without_ppp() {
        assert_eq!(level(&[]).unwrap(), PppLevel::Ip);
        assert_eq!(level(&["--ppp", "lcp"]).unwrap(), PppLevel::Lcp);
        let xl2tpd = ["--endpoint-kind", "xl2tpd"];
        assert_eq!(level(&xl2tpd).unwrap(), PppLevel::Off);
        assert_eq!(
            level(&[&xl2tpd[..], &["--ppp", "off"]].concat()).unwrap(),
            PppLevel::Off
        );
        for asked in ["ip", "auth", "lcp"] {
            let error = level(&[&xl2tpd[..], &["--ppp", asked]].concat())
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(&format!("--ppp {asked}"))
                    && error.contains("--endpoint-kind xl2tpd"),
                "{error}"
            );
        }
    }

    #[test]
    fn l2tpns_endpoints_run_ppp_and_one_sccrq_per_initiator_address() {
        let l2tpns = ["--endpoint-kind", "l2tpns"];
        assert_eq!(level(&l2tpns).unwrap(), PppLevel::Ip);
        assert_eq!(
            level(&[&l2tpns[..], &["--ppp", "off"]].concat()).unwrap(),
            PppLevel::Off
        );
        let outstanding = |flags: &[&str]| max_outstanding(&run_args(flags));
        assert_eq!(outstanding(&[]).unwrap(), 1000);
        assert_eq!(outstanding(&["--max-outstanding", "7"]).unwrap(), 7);
        assert_eq!(outstanding(&l2tpns).unwrap(), 30);
        let with = |more: &[&str]| outstanding(&[&l2tpns[..], more].concat());
        assert_eq!(with(&["--initiators", "100"]).unwrap(), 100);
        assert_eq!(with(&["--max-outstanding", "10"]).unwrap(), 10);
        let room = |flags: &[&str]| check_room(&run_args(&[&l2tpns[..], flags].concat()));
        assert!(room(&["--endpoints", "2", "--tunnels", "994"]).is_ok());
        let error = room(&["--endpoints", "2", "--tunnels", "995"])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--tunnels 995") && error.contains("--endpoints 2"),
            "{error}"
        );
        // The default: 1000 tunnels over 3 endpoints.
        assert!(room(&[]).is_ok());
        assert!(check_room(&run_args(&["--endpoints", "1"])).is_ok());
        let error = with(&["--max-outstanding", "31"]).unwrap_err().to_string();
        assert!(
            error.contains("--max-outstanding 31")
                && error.contains("--endpoint-kind l2tpns")
                && error.contains("--initiators 30"),
            "{error}"
        );
    }

    #[test]
    fn the_kind_defaults_to_l2tpkit_and_names_are_lowercase() {
        assert_eq!(run_args(&[]).cluster.endpoint_kind, EndpointKind::L2tpkit);
        assert_eq!(
            run_args(&["--endpoint-kind", "xl2tpd"])
                .cluster
                .endpoint_kind,
            EndpointKind::Xl2tpd
        );
        assert_eq!(
            run_args(&["--endpoint-kind", "l2tpns"])
                .cluster
                .endpoint_kind,
            EndpointKind::L2tpns
        );
        assert!(Cli::try_parse_from(["lab", "run", "--endpoint-kind", "accel-ppp"]).is_err());
        assert_eq!(EndpointKind::L2tpns.to_string(), "l2tpns");
        assert_eq!(
            serde_json::to_value(EndpointKind::Xl2tpd).unwrap(),
            serde_json::json!("xl2tpd")
        );
        assert_eq!(EndpointKind::L2tpkit.to_string(), "l2tpkit");
    }
}
