//! `l2tpkit lab`: the patent's FIG 2 and FIG 4 in network namespaces on one machine.
//!
//! Everything a run makes (namespaces, veths, bridges, processes) carries the run's prefix
//! (`l2k` + 4 hex digits), is written to `<run-dir>/state.jsonl` before it is made, and is
//! removed when the run ends: by [`Lab::down`], by `Drop` (also during a panic), by `lab up`
//! itself when it fails or is interrupted (SIGINT/SIGTERM are caught and checked between
//! steps), or later by `l2tpkit lab down`. Addresses: 198.18.0.0/16 on the public side,
//! 198.19.0.0/16 on the LAN side, only inside the lab's namespaces; the switch namespace has no
//! link to the host, so nothing can be routed out of the lab.

mod capture;
mod describe;
mod description;
mod echo;
pub mod impair;
mod instance;
mod l2tpns;
mod lns_probe;
pub mod netem;
pub mod plan;
mod processes;
mod radius;
mod roles;
mod run;
mod spec;
mod start;
pub mod state;
mod supervisor;
pub mod sys;
mod teardown;
mod up;
mod xl2tpd;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::args::{self, PolicyName};

pub use description::{
    Bridges, DownReport, EndpointDescription, InterfaceDescription, LabDescription, LabProcess,
    MasterCandidate, NamespaceDescription, Pcaps, RolesEndpoint, RolesFile,
};
pub use echo::udp_check;
pub use instance::Lab;
pub use plan::{NodeKind, Segment, Topology};
pub use roles::{
    kill_links_if_master, kill_master_links, start_roles, LAB_PASSWORD, LAB_USER, MASTER,
};
pub use run::verify;
pub use spec::{default_binary, EndpointKind, LabSpec};
pub use start::Readiness;
pub use teardown::teardown;

#[derive(Debug, clap::Subcommand)]
pub enum LabCommand {
    /// Build a FIG 2 or FIG 4 cluster topology in network namespaces, start its captures, and
    /// leave it up (prints its description; `lab down` removes it).
    Up(UpArgs),
    /// Remove a lab: exactly what its state file lists (idempotent).
    Down(DownArgs),
    /// Up, the LAC from the initiator namespace, verify both captures, a table per endpoint,
    /// down. The run dir keeps the captures, logs, status files and summary.json.
    Run(run::RunArgs),
    /// Kill one role of a lab that `lab up` left running, at once (SIGKILL). The acting master
    /// (the master, or a FIG 4 endpoint that took its address over) dies for the network too
    /// (its links go down): in FIG 4 the next endpoint takes over within 3 s.
    Kill(KillArgs),
    /// The per-lab process that owns and reaps the lab's processes (started by `lab up`).
    #[command(hide = true)]
    Supervise(SuperviseArgs),
    /// Answer UDP datagrams (reachability checks inside a lab).
    #[command(hide = true)]
    UdpEcho(echo::UdpEchoArgs),
    /// Send a UDP datagram to a `udp-echo` and wait for it to come back.
    #[command(hide = true)]
    UdpPing(echo::UdpPingArgs),
    /// The public segment's impairing switch (started by `lab up --netem`).
    #[command(hide = true)]
    Impair(impair::ImpairArgs),
    /// Capture one bridge into a pcap (started by `lab up`, one per segment).
    #[command(hide = true)]
    Capture(capture::CaptureArgs),
}

/// How the cluster in a lab is set up and what its links do: the flags `lab up` and `lab run`
/// share.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterFlags {
    /// Impair the public segment, in tc-netem's words: e.g. "loss 20% reorder 25% delay 10ms"
    /// (delay TIME [JITTER], loss P%, duplicate P%, reorder P%, which needs a delay). Every
    /// frame to a public host is impaired once, in both directions; ARP is spared.
    #[arg(long)]
    pub netem: Option<String>,
    /// Control-message retransmissions before an endpoint (and `lab run`'s LAC) gives a
    /// tunnel up [default: 5, RFC 2661 §5.8]; raise it for lossy links. The StopCCNs are
    /// retransmitted on the same schedule (the NAT keeps their entries that long), and PPP's
    /// Max-Configure on the lab's own roles becomes twice this, at least RFC 1661's 10.
    #[arg(long, value_parser = args::max_retransmits)]
    pub max_retransmits: Option<u32>,
    /// The master's dispatch policy.
    #[arg(long, value_enum, default_value_t = PolicyName::LeastLoad)]
    pub policy: PolicyName,
    /// leaky-bucket: SCCRQs per second each endpoint's bucket refills with.
    #[arg(long, default_value_t = args::DEFAULT_BUCKET_RATE, value_parser = args::rate)]
    pub bucket_rate: f64,
    /// leaky-bucket: tokens each endpoint's bucket holds at most.
    #[arg(long, default_value_t = args::DEFAULT_BUCKET_BURST, value_parser = args::burst)]
    pub bucket_burst: u32,
    /// Every role (and `lab run`'s LAC) serves Prometheus metrics on port 9464 of its own
    /// address (LAN side; the LAC its initiator address); RUN_DIR/prometheus.yml is a scrape
    /// file for a Prometheus in the master's namespace, which reaches them all.
    #[arg(long)]
    pub metrics: bool,
    /// What answers as the LNS in every endpoint namespace: `l2tpkit` (`l2tpkit endpoint`),
    /// `xl2tpd` or `l2tpns`: an unmodified xl2tpd or l2tpns with `l2tpkit agent` beside it,
    /// which reports its load to the master. xl2tpd's pppd is a stand-in that echoes every
    /// frame (no kernel PPP here): no PPP with it (`lab run` runs its LAC with `--ppp off`).
    /// l2tpns runs PPP itself, CHAP against a FreeRADIUS in its namespace that knows the lab's
    /// user (`lab run`: `--ppp ip`, and one outstanding SCCRQ per initiator address). Neither
    /// takes the master over (FIG 4 takeover needs l2tpkit endpoints; `lab kill master` still
    /// works). xl2tpd needs xl2tpd, ppp (its /usr/sbin/pppd) and unshare; l2tpns needs
    /// l2tpns, freeradius, unshare and /dev/net/tun.
    #[arg(long, value_enum, default_value_t = EndpointKind::L2tpkit)]
    pub endpoint_kind: EndpointKind,
    /// `blocks`: each l2tpkit endpoint assigns Tunnel IDs from its own disjoint block, which the
    /// master routes by (65,535 / (endpoints + 1) each). `any` (FIG 2 only): every l2tpkit
    /// endpoint draws from all 65,535 (more than ~49,000 tunnels with three endpoints), and
    /// the NAT translates where two endpoints give one initiator socket the same ID (xl2tpd
    /// and l2tpns pick their IDs themselves; l2tpns numbers from 3 up on every endpoint).
    /// With `any` a LAC must follow the SCCRP to the NAT's address, as l2tpkit's does.
    #[arg(long, value_enum, default_value_t = TunnelIdSpace::Blocks)]
    pub tunnel_ids: TunnelIdSpace,
}

/// How the endpoints share the 16-bit Tunnel ID space (`--tunnel-ids`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TunnelIdSpace {
    Blocks,
    Any,
}

impl ClusterFlags {
    /// The checked flags into `spec`; errors name the flag.
    pub fn apply(&self, spec: &mut LabSpec) -> anyhow::Result<()> {
        spec.netem = self
            .netem
            .as_deref()
            .map(|text| {
                text.parse::<netem::Netem>()
                    .map_err(|why| anyhow::anyhow!("--netem {text:?}: {why}"))
            })
            .transpose()?;
        spec.max_retransmits = self.max_retransmits;
        spec.metrics = self.metrics;
        spec.endpoint_kind = self.endpoint_kind;
        spec.shared_tunnel_ids = self.tunnel_ids == TunnelIdSpace::Any;
        spec.policy = self.policy.with_bucket(self.bucket_rate, self.bucket_burst);
        Ok(())
    }
}

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// fig2: endpoints behind a NAT; fig4: endpoints with global addresses of their own.
    #[arg(long, value_enum)]
    pub topology: Topology,
    /// Number of tunnel endpoints (LAN 198.19.0.11 onwards; FIG 4 also 198.18.0.11 onwards).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=plan::MAX_ENDPOINTS as i64))]
    pub endpoints: u16,
    /// Number of initiator addresses, 198.18.1.1 onwards, on the initiator namespace.
    #[arg(long, default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=plan::MAX_INITIATORS as i64))]
    pub initiators: u16,
    /// Directory for the state file, logs, captures and lab.json [default: a new directory
    /// $TMPDIR/l2tpkit-lab/<prefix>, /tmp/l2tpkit-lab/<prefix> without TMPDIR].
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Print the description as JSON (it is always written to <run-dir>/lab.json).
    #[arg(long)]
    pub json: bool,
    /// The topology and its captures only: start none of the cluster's roles.
    #[arg(long)]
    pub no_roles: bool,
    /// Give every endpoint this tunnel secret (Challenge, hidden AVPs).
    #[arg(long)]
    pub secret: Option<String>,
    /// Every endpoint runs PPP on its sessions: CHAP for the lab's one user
    /// (lab@example.net / l2tpkit-lab), IPCP from its own slice of 198.19.128.0/17 (l2tpns
    /// endpoints always do).
    #[arg(long)]
    pub ppp: bool,
    #[command(flatten)]
    pub cluster: ClusterFlags,
}

#[derive(Debug, clap::Args)]
pub struct DownArgs {
    /// The run to remove [default: the most recent run that is still up].
    #[arg(long, conflicts_with = "all_stale")]
    pub run_dir: Option<PathBuf>,
    /// Remove every run whose creator and supervisor are both gone.
    #[arg(long)]
    pub all_stale: bool,
    /// Print what was removed as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct KillArgs {
    /// The role: `master`, `te1`, … (as in lab.json's processes).
    pub role: String,
    /// The run [default: the most recent run that is still up].
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct SuperviseArgs {
    #[arg(long)]
    pub run_dir: PathBuf,
    /// Unused: shows in `ps` whose supervisor this is.
    #[arg(long)]
    pub prefix: Option<String>,
}

pub fn run(command: &LabCommand) -> anyhow::Result<ExitCode> {
    match command {
        LabCommand::Up(args) => up(args),
        LabCommand::Down(args) => down(args),
        LabCommand::Kill(args) => kill(args),
        LabCommand::Run(args) => run::run(args),
        LabCommand::Supervise(args) => supervisor::supervise(&args.run_dir),
        LabCommand::UdpEcho(args) => echo::udp_echo(args),
        LabCommand::UdpPing(args) => echo::udp_ping(args),
        LabCommand::Impair(args) => impair::run(args),
        LabCommand::Capture(args) => capture::run(args),
    }
}

/// `println!` that does not panic when stdout is gone (`lab up | head`): the lab is made or
/// removed by then, and that is what the exit status reports.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// 128 + SIGINT, as a shell reports a process that Ctrl-C ended.
const EXIT_INTERRUPTED: u8 = 130;

fn up(args: &UpArgs) -> anyhow::Result<ExitCode> {
    sys::install_interrupt_handler(true)?;
    let mut spec = LabSpec {
        initiators: args.initiators.into(),
        run_dir: args.run_dir.clone(),
        roles: !args.no_roles,
        secret: args.secret.clone(),
        ppp: args.ppp,
        ..LabSpec::new(args.topology, args.endpoints.into())
    };
    args.cluster.apply(&mut spec)?;
    let up = Lab::up(&spec).and_then(|lab| {
        sys::checkpoint()?;
        lab.detach()
    });
    let description = match up {
        Ok(d) => d,
        Err(e) if e.is::<sys::Interrupted>() => {
            eprintln!("l2tpkit lab up: interrupted; removed everything it had made");
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
        Err(e) => return Err(e),
    };
    if args.json {
        say!("{}", serde_json::to_string_pretty(&description)?);
    } else {
        print_summary(&description);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(d: &LabDescription) {
    say!(
        "lab {} up: {}, {} endpoints ({}), {} initiator addresses",
        d.prefix,
        d.topology,
        d.endpoints.len(),
        d.endpoint_kind,
        d.initiators.len()
    );
    for ns in &d.namespaces {
        let ifaces: Vec<String> = ns
            .interfaces
            .iter()
            .map(|i| {
                let addrs = if i.addresses.len() > 3 {
                    format!(
                        "{} .. {} ({})",
                        i.addresses[0],
                        i.addresses[i.addresses.len() - 1],
                        i.addresses.len()
                    )
                } else {
                    i.addresses.join(" ")
                };
                format!("{} {addrs}", i.name)
            })
            .collect();
        let routes: Vec<String> = ns
            .routes
            .iter()
            .map(|r| match r.via {
                Some(via) => format!("{} via {via}", r.to),
                None => format!("{} dev {}", r.to, r.dev),
            })
            .collect();
        let role = serde_json::to_value(ns.role)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        say!(
            "  {:<14} {:<9} {}{}",
            ns.name,
            role,
            if ifaces.is_empty() {
                format!("bridges {} {}", d.bridges.public, d.bridges.lan)
            } else {
                ifaces.join(", ")
            },
            if routes.is_empty() {
                String::new()
            } else {
                format!("; {}", routes.join(", "))
            }
        );
    }
    if let Some(netem) = &d.netem {
        say!("  public segment impaired: {netem} (counters in impair-status.json)");
    }
    for pcap in [&d.pcaps.public, &d.pcaps.lan].into_iter().flatten() {
        say!("  capture {}", pcap.display());
    }
    say!("  description {}", d.run_dir.join("lab.json").display());
    say!("  roles (for verify --roles) {}", d.roles_file.display());
    say!(
        "  remove with: l2tpkit lab down --run-dir {}",
        d.run_dir.display()
    );
}

/// The run in `run_dir`, or the most recent one whose namespaces still exist.
fn run_up(run_dir: Option<&std::path::Path>) -> anyhow::Result<Option<state::RunState>> {
    if let Some(dir) = run_dir {
        return Ok(Some(state::RunState::read(&dir.join(state::STATE_FILE))?));
    }
    let namespaces = sys::netns_list()?;
    Ok(state::list_runs()
        .into_iter()
        .rfind(|r| !r.is_down() && r.namespaces().iter().any(|n| namespaces.contains(n))))
}

fn kill(args: &KillArgs) -> anyhow::Result<ExitCode> {
    if !sys::is_root() {
        anyhow::bail!("the lab needs root (network namespaces, veths, bridges)");
    }
    let run = run_up(args.run_dir.as_deref())?.context("no lab is up")?;
    if run.is_down() {
        anyhow::bail!("lab {} is down already", run.prefix());
    }
    let process = run
        .processes()
        .into_iter()
        .rev()
        .find(|p| p.name == args.role)
        .with_context(|| {
            format!(
                "lab {}: no process named {:?} (see {}/lab.json)",
                run.prefix(),
                args.role,
                run.run_dir().display()
            )
        })?;
    let (pid, start) = process
        .pid
        .filter(|&(pid, start)| sys::is_running(pid, start))
        .with_context(|| format!("{} is not running", args.role))?;
    sys::signal_to_end(pid, "KILL")?;
    // Its parent, the supervisor, reaps it; it is gone for us once it no longer runs.
    let deadline = std::time::Instant::now() + sys::KILL_GRACE;
    while sys::is_running(pid, start) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    if sys::is_running(pid, start) {
        sys::send_signal(pid, "KILL")?;
    }
    // Interface names do not depend on the lab's size: a plan with as many endpoints as the
    // role's number names its node.
    let endpoints = args
        .role
        .strip_prefix("te")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, plan::MAX_ENDPOINTS);
    let plan = plan::Plan::new(run.prefix(), run.topology(), endpoints, 1)?;
    kill_links_if_master(&plan, &args.role)?;
    say!("lab {}: killed {} (pid {pid})", run.prefix(), args.role);
    Ok(ExitCode::SUCCESS)
}

fn down(args: &DownArgs) -> anyhow::Result<ExitCode> {
    // Ctrl-C must not stop a cleanup half-way; it is bounded anyway.
    sys::install_interrupt_handler(true)?;
    if !sys::is_root() {
        anyhow::bail!("the lab needs root (network namespaces, veths, bridges)");
    }
    let runs: Vec<state::RunState> = if let Some(dir) = &args.run_dir {
        vec![state::RunState::read(&dir.join(state::STATE_FILE))?]
    } else if args.all_stale {
        state::list_runs()
            .into_iter()
            .filter(|r| !r.is_down() && r.is_orphaned())
            .collect()
    } else {
        let namespaces = sys::netns_list()?;
        state::list_runs()
            .into_iter()
            .rfind(|r| !r.is_down() && r.namespaces().iter().any(|n| namespaces.contains(n)))
            .into_iter()
            .collect()
    };
    if args.all_stale {
        let known: Vec<String> = state::list_runs()
            .iter()
            .map(|r| r.prefix().to_string())
            .collect();
        for ns in sys::netns_list()? {
            if state::is_lab_prefix(&ns) && !known.iter().any(|p| ns.starts_with(p.as_str())) {
                eprintln!(
                    "l2tpkit lab down: {ns} looks like a lab's but no run in {} lists it: left alone",
                    state::registry_root().display()
                );
            }
        }
    }
    if runs.is_empty() && !args.json {
        say!("no lab to remove");
    }
    let reports: Vec<DownReport> = runs.iter().map(|r| teardown(r, None)).collect();
    if args.json {
        say!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for r in &reports {
            if r.removed.is_empty() && r.problems.is_empty() {
                say!(
                    "lab {} ({}): nothing left to remove",
                    r.prefix,
                    r.run_dir.display()
                );
                continue;
            }
            say!(
                "lab {} ({}): removed {} objects",
                r.prefix,
                r.run_dir.display(),
                r.removed.len()
            );
            for item in &r.removed {
                say!("  {item}");
            }
        }
    }
    let problems: Vec<String> = reports
        .iter()
        .flat_map(|r| r.problems.iter().map(move |p| format!("{}: {p}", r.prefix)))
        .collect();
    if !problems.is_empty() {
        anyhow::bail!("could not remove everything: {}", problems.join("; "));
    }
    Ok(ExitCode::SUCCESS)
}
