//! `l2tpkit master`: the cluster master (patent FIG 2 / FIG 4) on real sockets.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use reference::claim::ClaimPlan;
use reference::master::MasterConfig;
use reference::serve::{serve_master, serve_master_claiming, MasterSetup, ServeOptions};

use crate::args::{self, AddrPrefix, PolicyName};

#[derive(Debug, clap::Args)]
pub struct MasterArgs {
    /// The cluster address initiators dial (owned by this master): ADDR, or ADDR/LEN with
    /// --claim-public.
    #[arg(long, value_parser = args::addr_prefix)]
    pub cluster: AddrPrefix,
    /// The master's LAN address: endpoints send their load reports there (UDP 1702). ADDR, or
    /// ADDR/LEN with --claim-lan.
    #[arg(long, value_parser = args::addr_prefix)]
    pub lan: AddrPrefix,
    /// Claim the cluster address on this interface at start: ARP-probe it, and add it (and
    /// announce it) only if nobody answers; if someone does (an endpoint that took over), stand
    /// by without touching it. The address is removed again at exit.
    #[arg(long, requires = "claim_lan")]
    pub claim_public: Option<String>,
    /// With --claim-public: claim the LAN address on this interface the same way.
    #[arg(long, requires = "claim_public")]
    pub claim_lan: Option<String>,
    /// This master's name in its report acks and status.
    #[arg(long, default_value = "master")]
    pub name: String,
    /// Shared key of the load reports (HMAC-SHA256). Other local users can read a command
    /// line: prefer --report-key-file or L2TPKIT_REPORT_KEY.
    #[arg(long)]
    pub report_key: Option<String>,
    /// The report key from this file (its first line; the file must not be readable by group
    /// or others).
    #[arg(long, value_name = "PATH")]
    pub report_key_file: Option<std::path::PathBuf>,
    #[arg(long, value_enum, default_value_t = PolicyName::LeastLoad)]
    pub policy: PolicyName,
    /// leaky-bucket: setups per second per endpoint.
    #[arg(long, default_value_t = args::DEFAULT_BUCKET_RATE, value_parser = args::rate)]
    pub rate: f64,
    /// leaky-bucket: burst per endpoint.
    #[arg(long, default_value_t = args::DEFAULT_BUCKET_BURST, value_parser = args::burst)]
    pub burst: u32,
    /// Seconds without a report before an endpoint is out of service.
    #[arg(long, default_value = "3", value_parser = args::seconds)]
    pub report_timeout: Duration,
    /// Most SCCRQ choices remembered for retransmissions; past this the oldest are forgotten,
    /// counted (`remembered_evicted`) and warned about (at most every 10 s).
    #[arg(long, default_value_t = reference::master::MAX_REMEMBERED_DISPATCHES)]
    pub max_dispatch_memory: usize,
    /// Write the per-endpoint status as JSON to this file every second.
    #[arg(long)]
    pub status: Option<PathBuf>,
    /// Unix control socket: `l2tpkit ctl PATH status|drain NAME|deactivate NAME|activate NAME`.
    #[arg(long)]
    pub control: Option<PathBuf>,
    /// Serve Prometheus metrics (OpenMetrics text) on `GET /metrics` at this address.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub run: args::ForwarderRun,
}

pub fn run(args: &MasterArgs) -> anyhow::Result<ExitCode> {
    let key = args.report_key.as_deref();
    crate::secret::warn_if_given("--report-key", key, "L2TPKIT_REPORT_KEY");
    let (cluster, lan) = (args.cluster.addr, args.lan.addr);
    let claim = match (&args.claim_public, &args.claim_lan) {
        (Some(public), Some(lan_if)) => Some(ClaimPlan::new(vec![
            args.cluster.claim("--cluster", public)?,
            args.lan.claim("--lan", lan_if)?,
        ])),
        _ => None,
    };
    if args.name.is_empty() || args.name.len() > reference::cluster::MAX_NAME_LEN {
        anyhow::bail!("--name {:?}: expected 1 to 64 bytes", args.name);
    }
    let key = crate::secret::required_report_key(
        args.report_key.as_deref(),
        args.report_key_file.as_deref(),
    )?;
    let mut config = MasterConfig::new(cluster, key.into_bytes());
    config.policy = args.policy.with_bucket(args.rate, args.burst);
    config.report_timeout = args.report_timeout;
    config.name = args.name.clone();
    config.first_ack_sequence = crate::net::wall_clock_sequence();
    if !(1..=1 << 24).contains(&args.max_dispatch_memory) {
        anyhow::bail!(
            "--max-dispatch-memory {}: expected 1 to {}",
            args.max_dispatch_memory,
            1 << 24
        );
    }
    config.max_remembered = args.max_dispatch_memory;
    let setup = MasterSetup {
        options: ServeOptions {
            status_file: args.status.clone(),
            control: args.control.clone(),
            pcap: args.run.pcap.clone(),
            duration: args.run.duration,
            metrics: args.metrics,
            ..ServeOptions::default()
        },
        ..MasterSetup::new(config, lan)
    };
    let runtime = crate::net::runtime()?;
    let status = match claim {
        Some(plan) => runtime.block_on(serve_master_claiming(setup, plan))?,
        None => runtime.block_on(serve_master(setup))?,
    };
    if args.run.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        for e in &status.endpoints {
            println!(
                "{:<8} dispatched {:>6}  forwarded {:>8}  reported tunnels {:>6}",
                e.name, e.dispatched_total, e.forwarded, e.tunnels
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
