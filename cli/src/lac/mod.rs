//! `l2tpkit lac`: simulated LACs against an LNS (or a cluster address), paced, with live
//! figures, a per-second CSV and a final summary.

use std::cell::RefCell;
use std::io::{IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use l2tp::conn::reliable::ReliableConfig;
use l2tp::conn::tunnels::TunnelSet;
use l2tp::time::Instant;
use netio::runner::{Ended, Runner};
pub use probes::lac::{AuthChoice, PppLevel};
use probes::lac::{
    CsvSeries, HdrLog, Lac, LacPlan, LacReport, Pace, PaceConfig, PppPlan, Shard, ShardInfo, Swarm,
    Termination, TrafficPlan,
};
use probes::live::{Live, LiveControl, LiveSnapshot, RunPhase};
use reference::control::{self, ControlServer, Request};
use reference::metrics::{self, label, MetricSet, MetricsServer, Value};

use crate::args;

mod share;
use crate::net::{os_seed, tunnel_config};
pub use share::by_shard;
use share::{outputs, shard_files, split, whole_run_flags, Outputs};

/// Most tunnels one initiator (one Tunnel ID space) opens.
const TUNNELS_PER_INITIATOR: usize = 60_000;

/// How often the live snapshot is published.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, clap::Args)]
pub struct LacArgs {
    /// The LNS (or cluster master) to dial: ADDR[:PORT], port 1701 by default.
    #[arg(long, value_parser = args::addr_port::<1701>)]
    pub target: SocketAddrV4,
    /// Local address to send from: ADDR[:PORT]; any free port by default.
    #[arg(long, default_value = "0.0.0.0:0", value_parser = args::addr_port::<0>)]
    pub bind: SocketAddrV4,
    /// Tunnels to open, over all initiators (at most 60000 per initiator).
    #[arg(long, default_value_t = 1)]
    pub tunnels: usize,
    #[arg(long, default_value_t = 1)]
    pub sessions_per_tunnel: usize,
    /// Tunnel secret (Challenge / Challenge Response). Other local users can read a command
    /// line: prefer --secret-file or L2TPKIT_SECRET.
    #[arg(long)]
    pub secret: Option<String>,
    /// The tunnel secret from this file (its first line; not readable by group or others).
    #[arg(long, value_name = "PATH")]
    pub secret_file: Option<PathBuf>,
    /// Hide AVPs (Assigned Session ID, numbers) with the secret (RFC 2661 §4.3).
    #[arg(long)]
    pub hidden: bool,
    /// Seconds to hold everything up once established.
    #[arg(long, default_value = "5", value_parser = args::seconds_between(0.0, 86_400.0))]
    pub hold: Duration,
    /// LCP Echo-Requests per second on each session while holding.
    #[arg(long, default_value_t = 1.0, value_parser = args::rate_upto(1000.0, ""))]
    pub echo_rate: f64,
    /// Give up on a tunnel (a session) not up this many seconds after its SCCRQ (its ICRQ).
    /// Default: from the retransmission schedule (--max-retransmits): a request's full cycle
    /// plus one 8 s timeout (39 s with 5), and 30 s more for PPP's negotiation unless --ppp off.
    #[arg(long, value_parser = args::seconds_between(0.0, 3600.0))]
    pub setup_timeout: Option<Duration>,
    /// Host Name AVP.
    #[arg(long, default_value = "l2tpkit-lac")]
    pub host_name: String,
    /// Write every packet sent and received to this pcap.
    #[arg(long)]
    pub pcap: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Accept the SCCRP from any address and follow it (a cluster: FIG 4 endpoints and FIG 2's
    /// NAT answer from their own address). Without it an SCCRP from another port of the
    /// target's address is still followed (RFC 2661 §8.1), one from another address is
    /// dropped, counted and named. Either way an ICMP error about the target (no LNS
    /// listening) ends the run at once.
    #[arg(long)]
    pub any_source: bool,
    /// Simulated initiators: this many consecutive source addresses from --bind's address up,
    /// each with its own socket and its share of --tunnels, --rate and --max-outstanding.
    #[arg(long, default_value_t = 1)]
    pub initiators: usize,
    /// Tunnel setups (SCCRQs) per second over all initiators; 0: as fast as
    /// --max-outstanding allows.
    #[arg(long, default_value_t = 0.0, value_parser = args::rate_upto(1_000_000.0, " (unpaced)"))]
    pub rate: f64,
    /// SCCRQs without an answer at once, over all initiators; more wait.
    #[arg(long, default_value_t = 1000)]
    pub max_outstanding: usize,
    /// Seconds over which the rate grows linearly from 0 to --rate.
    #[arg(long, default_value = "0", value_parser = args::seconds_between(0.0, 86_400.0))]
    pub ramp: Duration,
    /// Hard bound on the run in seconds: at this time everything is torn down, whatever the
    /// phase (the StopCCNs are then retransmitted until acknowledged or given up: a full
    /// cycle of --max-retransmits plus 8 s, 39 s with 5). Default: --ramp, twice
    /// --tunnels / --rate, --setup-timeout and --hold, plus 10 s.
    #[arg(long, value_parser = args::positive_seconds(86_400.0))]
    pub duration: Option<Duration>,
    /// Write one row of figures per second of the run to this CSV file.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Write one row per endpoint per second to this CSV file: tunnels and sessions up with
    /// it, established so far, set up in that second (the dispatch over time).
    #[arg(long, value_name = "FILE")]
    pub endpoint_csv: Option<PathBuf>,
    /// Write the run's latency histograms to this file as an HdrHistogram interval log: one
    /// interval a second, one tag per histogram (the JSON report's names), values in µs; logs
    /// of several LACs merge exactly.
    #[arg(long, value_name = "FILE")]
    pub hdr_log: Option<PathBuf>,
    /// Steer the running LAC over this Unix socket (`l2tpkit ctl SOCK …`): `status`, `report`
    /// (the final JSON's shape, as of now), `rate R`, `pause`, `resume`,
    /// `terminate-tunnel TUNNEL [RESULT]`, `terminate-session TUNNEL SESSION [RESULT]`.
    #[arg(long, value_name = "SOCK")]
    pub control: Option<PathBuf>,
    /// Serve Prometheus metrics (OpenMetrics text) on `GET /metrics` at this address,
    /// refreshed each second of the run: counters, gauges, per-endpoint figures and the setup
    /// latency histograms (label `phase`).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Write the run's HTML report (`l2tpkit report`) to this file at the end: the counts,
    /// the per-second charts (with --csv), the latency percentiles.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Watch the run in the live TUI (p pause, +/- rate, q quit); needs a terminal.
    #[arg(long)]
    pub tui: bool,
    /// Keep sending everything to --target after the SCCRP, as xl2tpd does, instead of
    /// following the address the SCCRP came from (which is still heard): a cluster then has
    /// to route every later packet by Tunnel ID. Implies --any-source.
    #[arg(long)]
    pub stay_on_target: bool,
    /// Seconds without hearing from the peer before a tunnel sends HELLO (RFC 2661 §5.5).
    #[arg(long, default_value = "60", value_parser = args::positive_seconds(3600.0))]
    pub hello_interval: Duration,
    /// Retransmissions of a control message before the tunnel is given up (RFC 2661 §5.8:
    /// "a recommended default is 5, but SHOULD be configurable"); more for lossy links.
    #[arg(long, default_value_t = 5, value_parser = args::max_retransmits)]
    pub max_retransmits: u32,
    /// PPP on every session and where a session counts as up: off (L2TP only, LCP echoes as
    /// keepalive), lcp (LCP opened), auth (authenticated, or none asked), ip (IPCP opened,
    /// and IPv6CP with --ipv6).
    #[arg(long, default_value = "ip", value_parser = args::ppp_level)]
    pub ppp: PppLevel,
    /// What the subscribers agree to when the LNS asks them to authenticate: pap, chap or
    /// auto (either).
    #[arg(long, default_value = "auto", value_parser = args::auth_choice)]
    pub auth: AuthChoice,
    /// PAP peer ID / CHAP name; {n} is the session's number over the whole run, from 1.
    #[arg(long, default_value = "user{n}@example.net", value_parser = args::ppp_credential)]
    pub username: String,
    /// PAP password / CHAP secret of every subscriber.
    #[arg(long, default_value = "l2tpkit", value_parser = args::ppp_credential)]
    pub password: String,
    /// Negotiate IPv6CP too: a session is IP up when both IPCP and IPv6CP are opened.
    #[arg(long)]
    pub ipv6: bool,
    /// PPP's Max-Configure (RFC 1661 §4.6) for LCP and the NCPs, and the most PAP/CHAP
    /// requests: Restart periods (3 s) a negotiation may take before giving up. More helps
    /// on a lossy link, where lost Acks make both ends start over.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(1..))]
    pub ppp_max_configure: u8,
    /// Ask for DNS servers in IPCP (RFC 1877); the report counts the sessions given some and
    /// names the servers.
    #[arg(long)]
    pub dns: bool,
    /// ICMP Echo Requests per second in each IP-up session while the run holds (0: none),
    /// from the session's IPCP address to the peer's (or --traffic-target); replies are
    /// matched for loss and round trip. Traffic stops 1 s before the teardown; a request
    /// unanswered by then is lost. Needs --ppp ip.
    #[arg(long, default_value_t = 0.0, value_name = "PPS", value_parser = args::traffic_rate)]
    pub traffic_rate: f64,
    /// Send the --traffic-rate echoes to this address instead of the peer's IPCP address.
    #[arg(long, value_name = "ADDR")]
    pub traffic_target: Option<Ipv4Addr>,
    /// This agent's share of a run that N agents carry together: shard I (from 0) of N. Give
    /// every agent the same flags, for the whole run: --tunnels, --initiators (from --bind's
    /// address up), --rate and --max-outstanding are split into disjoint blocks, and so are
    /// the Tunnel and Session ID spaces and the subscribers' numbers ({n} in --username).
    /// With --initiators 1 each shard has one socket of its own (a fixed --bind port becomes
    /// PORT+I, so shards can share a host). Output files are named by the shard (lac.csv
    /// becomes lac.shard-I-of-N.csv, and so do --pcap, --report and --control); `l2tpkit
    /// merge` makes one report of them.
    #[arg(long, value_name = "I/N", value_parser = shard)]
    pub shard: Option<Shard>,
    /// The run's ID, the same for every shard of it: `merge` refuses shards of two runs.
    #[arg(long, value_name = "ID", requires = "shard")]
    pub run_id: Option<String>,
    /// Write the JSON report, both per-second CSVs and the interval log into this directory
    /// (lac.json, lac.csv, lac-endpoints.csv, lac.hlog, named by --shard), created if
    /// missing; --csv, --endpoint-csv and --hdr-log still choose their own files.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

fn shard(text: &str) -> Result<Shard, String> {
    text.parse()
}

impl Default for LacArgs {
    /// The command line's defaults, with --target 0.0.0.0 (no LNS).
    fn default() -> Self {
        LacArgs {
            target: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 1701),
            bind: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            tunnels: 1,
            sessions_per_tunnel: 1,
            secret: None,
            secret_file: None,
            hidden: false,
            hold: Duration::from_secs(5),
            echo_rate: 1.0,
            setup_timeout: None,
            host_name: "l2tpkit-lac".to_string(),
            pcap: None,
            json: false,
            any_source: false,
            initiators: 1,
            rate: 0.0,
            max_outstanding: 1000,
            ramp: Duration::ZERO,
            duration: None,
            csv: None,
            endpoint_csv: None,
            hdr_log: None,
            control: None,
            metrics: None,
            report: None,
            tui: false,
            stay_on_target: false,
            hello_interval: Duration::from_secs(60),
            max_retransmits: 5,
            ppp: PppLevel::Ip,
            auth: AuthChoice::Auto,
            username: PppPlan::default().username,
            password: PppPlan::default().password,
            ipv6: false,
            ppp_max_configure: 10,
            dns: false,
            traffic_rate: 0.0,
            traffic_target: None,
            shard: None,
            run_id: None,
            out_dir: None,
        }
    }
}

pub fn run(args: &LacArgs) -> anyhow::Result<ExitCode> {
    crate::secret::warn_if_given("--secret", args.secret.as_deref(), "L2TPKIT_SECRET");
    let (report, ended, quit) = if args.tui {
        with_tui(args)?
    } else {
        let (report, ended) = execute_with(args, Live::new(args.rate), true)?;
        (report, ended, false)
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    let outputs = outputs(args);
    if let Some(path) = &outputs.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("--out-dir {}", path.display()))?;
        eprintln!("report: {}", path.display());
    }
    if let Some(path) = &outputs.report {
        let files: Vec<PathBuf> = (outputs.csv.iter().chain(&outputs.endpoint_csv))
            .cloned()
            .collect();
        let mut inputs = crate::report::gather(&files);
        inputs.lac = Some(serde_json::to_value(&report)?);
        std::fs::write(path, crate::report::render(&inputs))
            .with_context(|| format!("--report {}", path.display()))?;
        eprintln!("report: {}", path.display());
    }
    if ended == Ended::Interrupted {
        eprintln!("l2tpkit lac: interrupted");
        return Ok(ExitCode::from(130));
    }
    // Quit from the TUI: what was set up until then is judged, not what was never asked for.
    let stopped_clean = quit && report.tunnels_failed == 0 && report.sessions_failed == 0;
    Ok(if report.success() || stopped_clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The driver on its own thread, the TUI on this one (outside a lab: no master to ask, no
/// drain or kill).
fn with_tui(args: &LacArgs) -> anyhow::Result<(LacReport, Ended, bool)> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        anyhow::bail!("--tui needs a terminal on stdin and stdout");
    }
    // Checked before the terminal changes, so a bad flag is a plain error line.
    check(args)?;
    let live = Live::new(args.rate);
    let driver = {
        let (args, live) = (args.clone(), live.clone());
        std::thread::Builder::new()
            .name("lac".into())
            .spawn(move || execute_with(&args, live, false))
            .context("starting the LAC thread")?
    };
    let shown = crate::tui::run(
        live.clone(),
        &mut crate::tui::NoLab,
        false,
        Duration::from_millis(100),
    );
    if !matches!(shown, Ok(crate::tui::TuiExit::Finished)) {
        live.control.request_stop();
    }
    let result = driver
        .join()
        .map_err(|_| anyhow::anyhow!("the LAC thread panicked"))?;
    let quit = shown? == crate::tui::TuiExit::Quit;
    let (report, ended) = result?;
    Ok((report, ended, quit))
}

/// Runs the LAC and returns its report (the tests call this in process).
pub fn execute(args: &LacArgs) -> anyhow::Result<(LacReport, Ended)> {
    execute_with(args, Live::new(args.rate), false)
}

/// The checked flags, for this agent's share of the run (all of it without --shard).
struct Setup {
    target: SocketAddrV4,
    /// This share's first initiator address, and how many it has.
    first: u32,
    initiators: usize,
    bind_port: u16,
    plan: LacPlan,
    pace: PaceConfig,
    /// Setups per second for this share at the start.
    rate: f64,
    /// The Tunnel IDs (and Session IDs) this share assigns.
    ids: std::ops::RangeInclusive<u16>,
    /// The runners' own deadline: a backstop past the plan's `stop_at`.
    deadline: Duration,
    outputs: Outputs,
    /// What `merge` compares between shards.
    run_flags: Vec<(&'static str, String)>,
}

fn check(args: &LacArgs) -> anyhow::Result<Setup> {
    let (target, bind) = (args.target, args.bind);
    if args.initiators == 0 || args.initiators > 4096 {
        anyhow::bail!("--initiators {}: expected 1 to 4096", args.initiators);
    }
    let most = TUNNELS_PER_INITIATOR * args.initiators;
    if args.tunnels == 0 || args.tunnels > most {
        anyhow::bail!(
            "--tunnels {}: expected 1 to {most} ({TUNNELS_PER_INITIATOR} per initiator, \
             --initiators {})",
            args.tunnels,
            args.initiators
        );
    }
    if args.initiators > args.tunnels {
        anyhow::bail!(
            "--initiators {} is more than --tunnels {}: every initiator opens at least one",
            args.initiators,
            args.tunnels
        );
    }
    if args.sessions_per_tunnel > 60_000 {
        anyhow::bail!(
            "--sessions-per-tunnel {}: expected at most 60000",
            args.sessions_per_tunnel
        );
    }
    if !(1..=1_000_000).contains(&args.max_outstanding) {
        anyhow::bail!(
            "--max-outstanding {}: expected 1 to 1000000",
            args.max_outstanding
        );
    }
    // The same bounds as the flag's parser, for the callers that build LacArgs in code.
    if let Err(why) = args::traffic_rate(&args.traffic_rate.to_string()) {
        anyhow::bail!("--traffic-rate {}: {why}", args.traffic_rate);
    }
    if args.traffic_rate > 0.0 && args.ppp != PppLevel::Ip {
        anyhow::bail!(
            "--traffic-rate needs --ppp ip: a session has an address to ping from only once \
             IPCP is opened"
        );
    }
    if args.traffic_target.is_some() && args.traffic_rate == 0.0 {
        anyhow::bail!("--traffic-target needs --traffic-rate");
    }
    let reliable = ReliableConfig {
        max_retransmits: args.max_retransmits,
        ..ReliableConfig::default()
    };
    let ppp = PppPlan {
        level: args.ppp,
        auth: args.auth,
        username: args.username.clone(),
        password: args.password.clone(),
        ipv6: args.ipv6,
        request_dns: args.dns,
        traffic: TrafficPlan {
            rate: args.traffic_rate,
            target: args.traffic_target,
        },
        max_configure: args.ppp_max_configure,
        first_number: 1,
    };
    let setup_timeout = args
        .setup_timeout
        .unwrap_or_else(|| probes::lac::setup_bound(&reliable, &ppp));
    let drain = probes::lac::drain_bound(&reliable, args.ppp);
    let (hold, ramp) = (args.hold, args.ramp);
    let stop_at = match args.duration {
        Some(d) => d,
        None => {
            let opening = if args.rate > 0.0 {
                Duration::from_secs_f64(2.0 * args.tunnels as f64 / args.rate)
            } else {
                Duration::ZERO
            };
            ramp + opening + setup_timeout + hold + Duration::from_secs(10)
        }
    };
    if args.initiators > 1 && bind.ip().is_unspecified() {
        anyhow::bail!("--initiators needs --bind with the first initiator address");
    }
    let first = u32::from(*bind.ip());
    if first.checked_add(args.initiators as u32 - 1).is_none() {
        anyhow::bail!(
            "--bind {} + --initiators {} runs past 255.255.255.255",
            bind.ip(),
            args.initiators
        );
    }
    let share = split(args)?;
    let ppp = PppPlan {
        first_number: share.first_number,
        ..ppp
    };
    let run_flags = whole_run_flags(args, setup_timeout, stop_at);
    Ok(Setup {
        target,
        first: first + share.first_initiator,
        initiators: share.initiators,
        bind_port: share.bind_port,
        plan: LacPlan {
            target,
            tunnels: share.tunnels,
            sessions_per_tunnel: args.sessions_per_tunnel,
            hold,
            echo_rate: args.echo_rate,
            setup_timeout,
            stop_at: Some(stop_at),
            drain,
            ppp,
        },
        pace: PaceConfig {
            max_outstanding: share.max_outstanding,
            ramp,
            initiators: share.initiators,
        },
        rate: share.rate,
        ids: share.ids,
        deadline: stop_at + Duration::from_secs(1),
        outputs: outputs(args),
        run_flags,
    })
}

/// Runs the LAC, publishing into `live` about ten times a second and obeying its controls
/// (pause, rate, stop); the rate starts at --rate. With `progress`, a line a second on stderr.
/// The lab and the TUI call this in process.
pub fn execute_with(
    args: &LacArgs,
    live: Live,
    progress: bool,
) -> anyhow::Result<(LacReport, Ended)> {
    let setup = check(args)?;
    let secret = crate::secret::tunnel_secret(args.secret.as_deref(), args.secret_file.as_deref())?;
    let mut config = tunnel_config(&args.host_name, secret.as_deref(), args.hidden)?;
    config.hello_interval = args.hello_interval;
    config.reliable.max_retransmits = args.max_retransmits;
    config.session_ids = setup.ids.clone();
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("--out-dir {}", dir.display()))?;
    }
    let outputs = &setup.outputs;
    let csv = match &outputs.csv {
        Some(path) => {
            Some(CsvSeries::create(path).with_context(|| format!("--csv {}", path.display()))?)
        }
        None => None,
    };
    let endpoint_csv = match &outputs.endpoint_csv {
        Some(path) => Some(
            CsvSeries::create(path)
                .with_context(|| format!("--endpoint-csv {}", path.display()))?,
        ),
        None => None,
    };
    // Second 0 of the run, on the wall clock: shards line up by it (`merge`).
    let started = SystemTime::now();
    let hdr_log = match &outputs.hdr_log {
        Some(path) => Some(
            HdrLog::create(path, started)
                .with_context(|| format!("--hdr-log {}", path.display()))?,
        ),
        None => None,
    };
    live.control.set_rate(setup.rate);
    let live_control = Arc::clone(&live.control);
    let swarm =
        Rc::new(Swarm::new(Pace::new(setup.pace.clone(), live.control.clone())).with_ppp(args.ppp));
    let seed = os_seed();
    let runtime = crate::net::runtime()?;
    let local = tokio::task::LocalSet::new();
    let epoch = std::time::Instant::now();
    let run_time = move || {
        Instant::from_micros(u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
    };
    let publisher = Rc::new(RefCell::new(Publisher {
        swarm: Rc::clone(&swarm),
        live,
        csv,
        endpoint_csv,
        hdr_log,
        metrics: None,
        next_second: 0,
        progress: progress.then(|| std::io::stderr().is_terminal()),
    }));
    let target = args.target.to_string();
    let (ended, failed) = local.block_on(&runtime, async {
        // Bound before anything starts, so an address in use fails the run at once.
        let scraping = match args.metrics {
            Some(addr) => {
                let server = MetricsServer::bind(addr)?;
                let shared = metrics::Shared::default();
                publisher.borrow_mut().metrics = Some(Arc::clone(&shared));
                Some(server.serve(shared))
            }
            None => None,
        };
        let steering = match &setup.outputs.control {
            Some(path) => {
                let server = ControlServer::bind(path).context("--control")?;
                let (swarm, control) = (Rc::clone(&swarm), Arc::clone(&live_control));
                let target = target.clone();
                Some(tokio::task::spawn_local(steer(
                    server, swarm, control, target, run_time,
                )))
            }
            None => None,
        };
        let ticker = {
            let publisher = Rc::clone(&publisher);
            tokio::task::spawn_local(async move {
                let mut every = tokio::time::interval(PUBLISH_EVERY);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let failed: anyhow::Error = loop {
                    every.tick().await;
                    if let Err(err) = publisher.borrow_mut().publish(run_time(), false) {
                        break err;
                    }
                };
                failed
            })
        };
        let mut tasks = tokio::task::JoinSet::new();
        let (tunnels, initiators) = (setup.plan.tunnels, setup.initiators);
        for i in 0..initiators {
            // Tunnels split as evenly as they go: the first ones take the remainder.
            let share = tunnels / initiators + usize::from(i < tunnels % initiators);
            let ip = Ipv4Addr::from(setup.first + i as u32);
            let bind = SocketAddrV4::new(ip, setup.bind_port);
            let plan = LacPlan {
                tunnels: share,
                ..setup.plan.clone()
            };
            let config = config.clone();
            let pcap = setup.outputs.pcap.as_ref().map(|p| {
                if initiators == 1 {
                    p.clone()
                } else {
                    p.with_file_name(format!(
                        "{}-{ip}.pcap",
                        p.file_stem().and_then(|s| s.to_str()).unwrap_or("lac")
                    ))
                }
            });
            let target = setup.target;
            // Another port of the target's address is always followed (§8.1); another
            // address only with --any-source (or --stay-on-target, which hears it).
            let elsewhere = args.any_source || args.stay_on_target;
            let follow_replies = !args.stay_on_target;
            let seed = seed.wrapping_add(i as u64);
            let swarm = Rc::clone(&swarm);
            let deadline = setup.deadline;
            let drain = setup.plan.drain;
            let ids = setup.ids.clone();
            tasks.spawn_local(async move {
                let mut set = TunnelSet::with_ids(config, seed, false, ids);
                set.set_follow_replies(follow_replies);
                set.set_replies_from_other_addresses(elsewhere);
                // ICMP errors about the target end the run at once (IP_RECVERR).
                let mut runner = Runner::bind(bind, Some(target), set, pcap.as_deref())
                    .await
                    .with_context(|| format!("--bind {bind}"))?;
                tracing::info!(local = %runner.local_addr(), %target, "LAC started");
                let offset = epoch
                    .elapsed()
                    .saturating_sub(Duration::from_micros(runner.now().as_micros()));
                let mut lac = Lac::new(plan, (seed >> 32) as u32, swarm, i, offset);
                let run = runner.run(&mut lac, Some(deadline), drain).await;
                lac.finish(&runner.set);
                runner.finish()?;
                Ok::<_, anyhow::Error>(run?)
            });
        }
        let mut ended = Ended::Finished;
        let mut failed = None;
        while let Some(joined) = tasks.join_next().await {
            match joined.context("an initiator task failed") {
                Ok(Ok(how)) => {
                    if how != Ended::Finished {
                        ended = how;
                    }
                }
                Ok(Err(err)) | Err(err) => {
                    // One initiator's error ends the run: the others tear down now.
                    swarm.pace.control().request_stop();
                    failed.get_or_insert(err);
                }
            }
        }
        ticker.abort();
        if let Ok(err) = ticker.await {
            failed.get_or_insert(err);
        }
        // The metrics server stops with the run.
        drop(scraping);
        if let Some(steering) = steering {
            // The socket file goes with the server.
            steering.abort();
            let _ = steering.await;
        }
        Ok::<_, anyhow::Error>((ended, failed))
    })?;
    if let Some(err) = failed {
        return Err(err);
    }
    let end = run_time();
    publisher.borrow_mut().publish(end, true)?;
    let mut report = swarm.report(&target, end);
    if let Some(shard) = args.shard {
        let first_sccrq = swarm.stats().first_sccrq;
        report.shard = Some(ShardInfo {
            index: shard.index,
            count: shard.count,
            run_id: args.run_id.clone(),
            plan: (setup.run_flags.iter())
                .map(|(flag, value)| (flag.to_string(), value.clone()))
                .collect(),
            started_unix_us: started
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            first_sccrq_ms: first_sccrq.map(|at| at.as_micros() as f64 / 1000.0),
            files: shard_files(&setup.outputs),
        });
    }
    Ok((report, ended))
}

/// The run's figures for Prometheus (`--metrics`): what the JSON report counts, what is up
/// now, per endpoint (label `endpoint`, the report's key), and the latency histograms (label
/// `phase`, the JSON's names) in seconds.
fn lac_metrics(s: &probes::lac::Stats, now: &LiveSnapshot) -> MetricSet {
    let mut set = MetricSet::default();
    set.counters(&[
        (
            "tunnels_established",
            "Tunnels established.",
            s.tunnels_established,
        ),
        ("tunnels_failed", "Tunnels that failed.", s.tunnels_failed),
        (
            "sessions_established",
            "Sessions established.",
            s.sessions_established,
        ),
        (
            "sessions_failed",
            "Sessions that failed.",
            s.sessions_failed,
        ),
        (
            "sessions_ip_up",
            "Sessions that reached IP up (PPP).",
            s.ip_up_total,
        ),
        (
            "retransmissions",
            "Control messages sent again.",
            s.retransmissions,
        ),
        ("echo_requests_sent", "LCP Echo-Requests sent.", s.echo_sent),
        (
            "echo_answered",
            "LCP Echo-Requests answered.",
            s.echo_answered(),
        ),
        (
            "tunnels_closed_cleanly",
            "Tunnels whose StopCCN was acknowledged.",
            s.tunnels_closed_cleanly,
        ),
        (
            "tunnels_started",
            "SCCRQs sent (first copies).",
            s.tunnels_started,
        ),
    ]);
    set.gauge("tunnels_up", "Tunnels up now.", now.tunnels_up as f64);
    set.gauge("sessions_up", "Sessions up now.", now.sessions_up as f64);
    set.gauge(
        "outstanding",
        "SCCRQs without an answer now.",
        now.outstanding as f64,
    );
    set.gauge(
        "target_rate",
        "Tunnel setups per second asked for (0: unpaced).",
        now.target_rate,
    );
    set.gauge(
        "paused",
        "1 while new setups are paused.",
        f64::from(u8::from(now.paused)),
    );
    for (why, n) in &s.failures {
        set.push(
            "failures",
            "Failures by reason, as the report words them, with the result code of the \
             StopCCN or CDN that ended them (\"none\" when none did).",
            vec![
                label("reason", why),
                label("result_code", result_code(why).unwrap_or("none")),
            ],
            Value::Counter(*n),
        );
    }
    for e in &s.endpoints {
        set.push(
            "endpoint_tunnels_established",
            "Tunnels established with the endpoint.",
            vec![label("endpoint", &e.key)],
            Value::Counter(e.tunnels_total),
        );
        set.push(
            "endpoint_tunnels_up",
            "Tunnels up with the endpoint now.",
            vec![label("endpoint", &e.key)],
            Value::Gauge(e.tunnels as f64),
        );
    }
    for (phase, h) in s.histograms() {
        let recorded = h
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()));
        set.push(
            "setup_latency_seconds",
            "Latencies of the run's phases (the JSON report's histograms).",
            vec![label("phase", phase)],
            metrics::latency_histogram(recorded),
        );
    }
    set
}

/// The result code a failure's words carry ("StopCCN result 2 error 0 (…)", "PPP
/// authentication: CDN result 3 …"), if any.
fn result_code(why: &str) -> Option<&str> {
    let rest = why.split("result ").nth(1)?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest.get(..end).filter(|code| !code.is_empty())
}

/// Answers the `--control` socket for as long as the run lasts.
async fn steer(
    mut server: ControlServer,
    swarm: Rc<Swarm>,
    control: Arc<LiveControl>,
    target: String,
    run_time: impl Fn() -> Instant,
) {
    loop {
        let pending = server.next().await;
        let reply = answer(&swarm, &control, &target, run_time(), pending.request);
        let _ = pending.reply.send(reply);
    }
}

/// One operator request: the report, or a knob turned and the live figures after it.
fn answer(
    swarm: &Swarm,
    control: &LiveControl,
    target: &str,
    now: Instant,
    request: Result<Request, String>,
) -> String {
    match request {
        Err(error) => return control::refused(&error),
        Ok(Request::Status) => {}
        Ok(Request::Report) => return control::ok(&swarm.report(target, now)),
        Ok(Request::Rate(rate)) => control.set_rate(rate),
        Ok(Request::Pause) => control.set_paused(true),
        Ok(Request::Resume) => control.set_paused(false),
        Ok(Request::TerminateTunnel { tunnel, result }) => {
            swarm.terminate(Termination::Tunnel { tunnel, result })
        }
        Ok(Request::TerminateSession {
            tunnel,
            session,
            result,
        }) => swarm.terminate(Termination::Session {
            tunnel,
            session,
            result,
        }),
        Ok(other) => {
            return control::refused(&format!(
                "{other}: a master's request; a LAC answers status, report, rate, pause, \
                 resume, terminate-tunnel and terminate-session"
            ))
        }
    }
    // The snapshot reads the knobs back from the same control.
    control::ok(&swarm.snapshot(now))
}

/// The watchers' side: the live snapshot, the CSV rows, the progress line.
struct Publisher {
    swarm: Rc<Swarm>,
    live: Live,
    csv: Option<CsvSeries>,
    endpoint_csv: Option<CsvSeries>,
    hdr_log: Option<HdrLog>,
    /// Where `--metrics` scrapes read from.
    metrics: Option<metrics::Shared>,
    /// The next whole second to close with a CSV row and a progress line.
    next_second: u64,
    /// `Some(terminal)` when a progress line goes to stderr.
    progress: Option<bool>,
}

impl Publisher {
    /// Publishes the run at `now`; closes every whole second passed (`last`: and the one in
    /// progress).
    fn publish(&mut self, now: Instant, last: bool) -> anyhow::Result<()> {
        let mut snapshot = self.swarm.snapshot(now);
        if last {
            snapshot.phase = RunPhase::Done;
        }
        let elapsed = now.as_micros() / 1_000_000;
        let end = if last { elapsed + 1 } else { elapsed };
        let closed = self.next_second < end;
        while self.next_second < end {
            let row = self.swarm.second_row(self.next_second, &snapshot);
            if let Some(csv) = self.csv.as_mut() {
                csv.write(&row).context("--csv")?;
            }
            if let Some(csv) = self.endpoint_csv.as_mut() {
                for row in self.swarm.endpoint_rows(self.next_second) {
                    csv.write(&row).context("--endpoint-csv")?;
                }
            }
            if let Some(terminal) = self.progress {
                progress_line(terminal, &snapshot, row.setups_this_second);
            }
            self.next_second += 1;
        }
        if let Some(shared) = self.metrics.as_ref().filter(|_| closed || last) {
            metrics::publish(shared, lac_metrics(&self.swarm.stats(), &snapshot));
        }
        if let Some(log) = self.hdr_log.as_mut().filter(|_| closed || last) {
            let stats = self.swarm.stats();
            log.write(&stats, Duration::from_micros(now.as_micros()))
                .context("--hdr-log")?;
        }
        if last && self.progress == Some(true) {
            eprintln!();
        }
        self.live.publish(snapshot);
        Ok(())
    }
}

fn progress_line(terminal: bool, s: &LiveSnapshot, setups: u64) {
    let line = format!(
        "[{:>5.0}s] {:<12} tunnels {}/{} up ({} failed, {} outstanding), sessions {}/{} up, \
         {setups} setups/s, setup p99 {:.1} ms, {} retransmissions",
        s.elapsed_s,
        s.phase,
        s.tunnels_up,
        s.tunnels_requested,
        s.tunnels_failed,
        s.outstanding,
        s.sessions_up,
        s.sessions_requested,
        s.sccrq_to_sccrp.p99_ms,
        s.retransmissions
    );
    let hint = probes::lac::replies_hint(s.replies_elsewhere, &s.replies_elsewhere_from);
    let line = match hint {
        Some(hint) => format!("{line}; {hint}"),
        None => line,
    };
    let mut err = std::io::stderr().lock();
    // Progress is best effort: a closed stderr must not end the run.
    let _ = if terminal {
        write!(err, "\r{line}\x1b[K")
    } else {
        writeln!(err, "{line}")
    };
    let _ = err.flush();
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_failure_s_result_code_is_read_from_its_words() {
        assert_eq!(
            super::result_code("StopCCN result 2 error 0 (peer stopped acknowledging) [ours]"),
            Some("2")
        );
        assert_eq!(
            super::result_code("PPP authentication: CDN result 3 error 0 [from peer]"),
            Some("3")
        );
        assert_eq!(super::result_code("tunnel setup timeout"), None);
        assert_eq!(super::result_code("result x"), None);
    }
}
