//! `l2tpkit agent`: speaks for an LNS we did not write (xl2tpd, l2tpns, a vendor box) in the
//! cluster: watches its L2TP traffic, reports its load and claims its tunnels at the master.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use reference::agent::AgentConfig;
use reference::serve::{serve_agent, AgentSetup, ServeOptions};

use crate::args;

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The LNS's LAN address and L2TP port, ADDR[:PORT] (1701 by default): where the master
    /// forwards SCCRQs, and what the agent watches.
    #[arg(long, value_parser = args::addr_port::<1701>)]
    pub lns: SocketAddrV4,
    /// FIG 4: the LNS's own public address, from which it answers (watched too, reported).
    #[arg(long, value_parser = args::ipv4)]
    pub global: Option<Ipv4Addr>,
    /// The interface the LNS's L2TP traffic crosses [default: every interface of the network
    /// namespace; a datagram that crosses two of them is then seen twice].
    #[arg(long)]
    pub interface: Option<String>,
    /// The master's LAN address: reports and tunnel claims go to its port 1702.
    #[arg(long, value_parser = args::ipv4)]
    pub master: Ipv4Addr,
    /// Shared key that seals the reports and claims (HMAC-SHA256), as the endpoints' is.
    /// Other local users can read a command line: prefer --report-key-file or
    /// L2TPKIT_REPORT_KEY.
    #[arg(long)]
    pub report_key: Option<String>,
    /// The report key from this file (its first line; the file must not be readable by group
    /// or others).
    #[arg(long, value_name = "PATH")]
    pub report_key_file: Option<std::path::PathBuf>,
    /// The LNS's name in the cluster.
    #[arg(long)]
    pub name: String,
    /// Most tunnels the master places on the LNS (reported).
    #[arg(long, default_value_t = AgentConfig::DEFAULT_CAPACITY)]
    pub capacity: u32,
    /// Seconds between load reports.
    #[arg(long, default_value = "1", value_parser = args::seconds_between(0.01, 3600.0))]
    pub report_interval: Duration,
    /// Seconds an SCCRQ may go unanswered before the LNS is reported as not answering (the
    /// master then gives it no new tunnels).
    #[arg(long, default_value = "3", value_parser = args::seconds_between(0.1, 3600.0))]
    pub answer_timeout: Duration,
    /// Seconds a tunnel may carry nothing before it is taken as gone (its StopCCN unseen).
    #[arg(long, default_value = "180", value_parser = args::seconds_between(1.0, 86_400.0))]
    pub idle_timeout: Duration,
    /// Status file (JSON), rewritten every second: written once the agent watches.
    #[arg(long)]
    pub status: Option<PathBuf>,
    /// Unix control socket answering `status` (`l2tpkit ctl PATH status`).
    #[arg(long)]
    pub control: Option<PathBuf>,
    /// Serve Prometheus metrics (OpenMetrics text) on `GET /metrics` at this address.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Write every L2TP datagram the agent saw to this pcap.
    #[arg(long)]
    pub pcap: Option<PathBuf>,
    /// Stop after this many seconds; runs until Ctrl-C otherwise.
    #[arg(long, value_parser = args::seconds)]
    pub duration: Option<Duration>,
    /// Print the final status as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &AgentArgs) -> anyhow::Result<ExitCode> {
    let key = args.report_key.as_deref();
    crate::secret::warn_if_given("--report-key", key, "L2TPKIT_REPORT_KEY");
    if args.name.is_empty() || args.name.len() > reference::cluster::MAX_NAME_LEN {
        anyhow::bail!(
            "--name {:?}: expected 1 to {} bytes",
            args.name,
            reference::cluster::MAX_NAME_LEN
        );
    }
    let key = crate::secret::required_report_key(
        args.report_key.as_deref(),
        args.report_key_file.as_deref(),
    )?;
    if args.lns.ip().is_unspecified() || args.lns.port() == 0 {
        anyhow::bail!(
            "--lns {}: the LNS's own address and port (where the master forwards to)",
            args.lns
        );
    }
    let mut config = AgentConfig::new(&args.name, args.lns, key.as_bytes());
    config.global_addr = args.global;
    config.capacity = args.capacity;
    config.interval = args.report_interval;
    config.answer_timeout = args.answer_timeout;
    config.idle_timeout = args.idle_timeout;
    config.first_sequence = crate::net::wall_clock_sequence();
    let setup = AgentSetup {
        config,
        interface: args.interface.clone(),
        master: args.master,
        options: ServeOptions {
            status_file: args.status.clone(),
            control: args.control.clone(),
            pcap: args.pcap.clone(),
            duration: args.duration,
            metrics: args.metrics,
            ..ServeOptions::default()
        },
    };
    let runtime = crate::net::runtime()?;
    let status = runtime
        .block_on(serve_agent(setup))
        .with_context(|| format!("agent {} for the LNS at {}", args.name, args.lns))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        let s = &status.stats;
        println!(
            "agent {}: {} SCCRQs seen, {} tunnels and {} sessions established, {} claims sent",
            status.name,
            s.sccrq_received,
            s.tunnels_established,
            s.sessions_established,
            s.claims_sent
        );
    }
    Ok(ExitCode::SUCCESS)
}
