//! `l2tpkit master`: the cluster master (patent FIG 2 / FIG 4) on real sockets.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use reference::master::{MasterConfig, Policy};
use reference::serve::{serve_master, MasterSetup};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyName {
    LeastLoad,
    RoundRobin,
    LeakyBucket,
}

#[derive(Debug, clap::Args)]
pub struct MasterArgs {
    /// The cluster address initiators dial (owned by this master).
    #[arg(long)]
    pub cluster: String,
    /// The master's LAN address: endpoints send their load reports there (UDP 1702).
    #[arg(long)]
    pub lan: String,
    /// Shared key of the load reports (HMAC-SHA256).
    #[arg(long)]
    pub report_key: String,
    #[arg(long, value_enum, default_value_t = PolicyName::LeastLoad)]
    pub policy: PolicyName,
    /// leaky-bucket: setups per second per endpoint.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// leaky-bucket: burst per endpoint.
    #[arg(long, default_value_t = 20)]
    pub burst: u32,
    /// Seconds without a report before an endpoint is out of service.
    #[arg(long, default_value_t = 3.0)]
    pub report_timeout: f64,
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
    /// Write every forwarded packet (after the rewrite) to this pcap.
    #[arg(long)]
    pub pcap: Option<PathBuf>,
    /// Stop after this many seconds; runs until Ctrl-C otherwise.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Print the final status as JSON.
    #[arg(long)]
    pub json: bool,
}

fn ip(flag: &str, value: &str) -> anyhow::Result<std::net::Ipv4Addr> {
    value
        .parse()
        .map_err(|_| anyhow::anyhow!("{flag} {value:?}: expected an IPv4 address"))
}

fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    if !value.is_finite() || !(0.0..=31_536_000.0).contains(&value) {
        anyhow::bail!("{flag} {value}: expected seconds between 0 and one year");
    }
    Ok(Duration::from_secs_f64(value))
}

pub fn run(args: &MasterArgs) -> anyhow::Result<ExitCode> {
    let cluster = ip("--cluster", &args.cluster)?;
    let lan = ip("--lan", &args.lan)?;
    if args.report_key.is_empty() {
        anyhow::bail!("--report-key must not be empty");
    }
    let policy = match args.policy {
        PolicyName::LeastLoad => Policy::LeastLoad,
        PolicyName::RoundRobin => Policy::RoundRobin,
        PolicyName::LeakyBucket => {
            if !args.rate.is_finite() || args.rate <= 0.0 {
                anyhow::bail!(
                    "--rate {}: expected a positive number of setups/s",
                    args.rate
                );
            }
            if args.burst == 0 {
                anyhow::bail!("--burst 0: a bucket must hold at least one setup");
            }
            Policy::LeakyBucket {
                rate: args.rate,
                burst: args.burst,
            }
        }
    };
    let mut config = MasterConfig::new(cluster, args.report_key.as_bytes().to_vec());
    config.policy = policy;
    config.report_timeout = seconds("--report-timeout", args.report_timeout)?;
    if !(1..=1 << 24).contains(&args.max_dispatch_memory) {
        anyhow::bail!(
            "--max-dispatch-memory {}: expected 1 to {}",
            args.max_dispatch_memory,
            1 << 24
        );
    }
    config.max_remembered = args.max_dispatch_memory;
    let setup = MasterSetup {
        config,
        lan_addr: lan,
        port: 1701,
        status_file: args.status.clone(),
        status_interval: Duration::from_secs(1),
        control: args.control.clone(),
        pcap: args.pcap.clone(),
        duration: args
            .duration
            .map(|d| seconds("--duration", d))
            .transpose()?,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let status = runtime.block_on(serve_master(setup))?;
    if args.json {
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
