//! `l2tpkit probe`: conformance probes against any LNS or LNS cluster, a verdict per rule.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use probes::probe::report::ProbeReport;
use probes::probe::runner::{self, Progress};
use probes::probe::{catalog, select, Target};

use crate::args;

#[derive(Debug, Clone, clap::Args)]
pub struct ProbeArgs {
    /// The LNS (or the cluster address) to probe, ADDR[:PORT].
    #[arg(long, required_unless_present = "list", value_parser = args::addr_port::<1701>)]
    pub target: Option<SocketAddrV4>,
    /// The target is a cluster (the patent's master in front of endpoints): run the cluster
    /// probes too, and expect SCCRPs from other addresses.
    #[arg(long)]
    pub cluster: bool,
    /// The tunnel secret the target was configured with.
    #[arg(long)]
    pub secret: Option<String>,
    /// The PPP probes' subscriber name (the target's RADIUS or users file must know it).
    #[arg(long)]
    pub username: Option<String>,
    /// The PPP probes' subscriber password.
    #[arg(long)]
    pub password: Option<String>,
    /// Run only these probes (names as `--list` prints them).
    #[arg(long, num_args = 1..)]
    pub only: Vec<String>,
    /// Print the catalog (name, reference, what it sends and expects) and exit.
    #[arg(long)]
    pub list: bool,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the results as JUnit XML to this file.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Also write the results as one self-contained HTML report (`l2tpkit report`).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write each probe's exchange to DIR/NAME.pcap.
    #[arg(long)]
    pub pcap_dir: Option<PathBuf>,
    /// Our source ADDR[:PORT] (any free port by default), the same for every probe: the
    /// LAC side of RFC 2661 §8.1, which "picks an available source UDP port (which may or
    /// may not be 1701)". With a fixed PORT the probes still run one after another on fresh
    /// sockets; the cluster probes that hold several tunnels at once (cluster-spread,
    /// cluster-nat-no-open-relay) take the further sockets from the next addresses up with
    /// the same port (ADDR+1, ADDR+2, ...: any of 127.0.0.0/8 on loopback; elsewhere they must
    /// be on this host), and sccrq-from-any-source-port uses PORT as its 1701 side.
    #[arg(long, default_value = "0.0.0.0:0", value_parser = args::addr_port::<0>)]
    pub bind: SocketAddrV4,
    /// Seconds to wait for an answer that should come at once.
    #[arg(long, default_value = "2", value_parser = args::seconds_between(0.05, 60.0))]
    pub reply_timeout: Duration,
    /// Live tunnels for the Tunnel ID uniqueness probe.
    #[arg(long, default_value_t = 5000)]
    pub live_tunnels: usize,
    /// Seconds to wait, before each probe, for a target that answers no fresh SCCRQ (one still
    /// busy after the probe before, say), retrying with backoff; past it the remaining probes
    /// are not run (inconclusive). 0: one round of SCCRQs only.
    #[arg(long, default_value = "180", value_name = "SECS", value_parser = args::seconds_between(0.0, 3600.0))]
    pub wait_for_target: Duration,
}

pub fn run(args: &ProbeArgs) -> anyhow::Result<ExitCode> {
    let all = catalog::all();
    if args.list {
        for p in &all {
            println!(
                "{}  [{}]{}{}",
                p.name,
                p.reference,
                match p.scope {
                    probes::probe::Scope::Cluster => "  (--cluster)",
                    probes::probe::Scope::Any => "",
                },
                catalog::heavy(p.name)
                    .map(|what| format!("  (heavy: holds {what} at once; runs last)"))
                    .unwrap_or_default()
            );
            println!("    sends:   {}", p.sends);
            println!("    expects: {}", p.expects);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let target = target(args)?;
    let chosen = select(&all, &args.only).map_err(|unknown| {
        let known: Vec<&str> = all.iter().map(|p| p.name).collect();
        anyhow::anyhow!(
            "--only {}: no such probe (known: {})",
            unknown.join(", "),
            known.join(", ")
        )
    })?;
    if let Some(dir) = &args.pcap_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--pcap-dir {}: creating it", dir.display()))?;
    }
    if !probes::probe::reachable(&target) {
        anyhow::bail!(
            "target {} unreachable: no answer to {} SCCRQs",
            target.addr,
            probes::probe::script::TRIES
        );
    }
    use std::io::IsTerminal;
    let show = !args.json && std::io::stderr().is_terminal();
    let options = runner::Options {
        pcap_dir: args.pcap_dir.as_deref(),
        wait_for_target: args.wait_for_target,
    };
    let results = runner::run_all(&chosen, &target, &options, |progress| {
        match progress {
        Progress::Probing(name) if show => {
            eprint!("\r{:<60}", format!("probing: {name}"));
        }
        Progress::Probing(_) => {}
        // Waiting is said whatever the output: it explains a run that takes longer.
        Progress::Waiting {
            after,
            waited,
            bound,
        } => eprintln!(
            "{}target {} answers no fresh SCCRQ after `{after}`: waiting ({:.0} s of at most {:.0} s, --wait-for-target)",
            if show { "\r" } else { "" },
            target.addr,
            waited.as_secs_f64(),
            bound.as_secs_f64()
        ),
        Progress::Answering { after, waited } => eprintln!(
            "target {} answers again, {:.0} s after `{after}`",
            target.addr,
            waited.as_secs_f64()
        ),
    }
    });
    if show {
        eprint!("\r{:<60}\r", "");
    }
    let report = ProbeReport::new(target.addr.to_string(), target.cluster, results);
    if let Some(path) = &args.junit {
        std::fs::write(path, report.junit())
            .with_context(|| format!("--junit {}: writing it", path.display()))?;
    }
    if let Some(path) = &args.html {
        let inputs = crate::report::Inputs {
            probes: Some(serde_json::to_value(&report)?),
            ..Default::default()
        };
        std::fs::write(path, crate::report::render(&inputs))
            .with_context(|| format!("--html {}: writing it", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", report.table());
    }
    Ok(if report.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn target(args: &ProbeArgs) -> anyhow::Result<Target> {
    let addr = args.target.context("--target is required")?;
    if args.live_tunnels == 0 || args.live_tunnels > 60_000 {
        anyhow::bail!("--live-tunnels {}: expected 1 to 60000", args.live_tunnels);
    }
    let mut target = Target::new(addr);
    target.cluster = args.cluster;
    target.secret = args.secret.as_ref().map(|s| s.as_bytes().to_vec());
    target.username = args.username.clone();
    target.password = args.password.as_ref().map(|p| p.as_bytes().to_vec());
    // Bound once now, so that an address not on this host or a port in use fails here,
    // naming the flag, and not as every probe's inconclusive verdict.
    if args.bind != SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0) {
        std::net::UdpSocket::bind(args.bind).with_context(|| format!("--bind {}", args.bind))?;
    }
    target.bind = args.bind;
    target.reply_timeout = args.reply_timeout;
    target.live_tunnels = args.live_tunnels;
    Ok(target)
}
