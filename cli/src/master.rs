//! `l2tpkit master`: the cluster master (patent FIG 2 / FIG 4) on real sockets.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use reference::claim::{ClaimAddress, ClaimPlan};
use reference::master::{MasterConfig, Policy};
use reference::serve::{serve_master, serve_master_claiming, MasterSetup};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyName {
    LeastLoad,
    RoundRobin,
    LeakyBucket,
}

#[derive(Debug, clap::Args)]
pub struct MasterArgs {
    /// The cluster address initiators dial (owned by this master): ADDR, or ADDR/LEN with
    /// --claim-public.
    #[arg(long)]
    pub cluster: String,
    /// The master's LAN address: endpoints send their load reports there (UDP 1702). ADDR, or
    /// ADDR/LEN with --claim-lan.
    #[arg(long)]
    pub lan: String,
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

/// `ADDR` or `ADDR/LEN`.
pub(crate) fn ip_prefix(
    flag: &str,
    value: &str,
) -> anyhow::Result<(std::net::Ipv4Addr, Option<u8>)> {
    match value.split_once('/') {
        None => Ok((ip(flag, value)?, None)),
        Some((addr, len)) => {
            let len: u8 = len
                .parse()
                .ok()
                .filter(|l| (1..=32).contains(l))
                .ok_or_else(|| anyhow::anyhow!("{flag} {value:?}: prefix length must be 1-32"))?;
            Ok((ip(flag, addr)?, Some(len)))
        }
    }
}

/// The claim of `addr/len` on `interface`; the prefix length is needed to claim.
pub(crate) fn claim_address(
    flag: &str,
    value: &str,
    interface: &str,
) -> anyhow::Result<ClaimAddress> {
    let (addr, len) = ip_prefix(flag, value)?;
    let prefix_len =
        len.ok_or_else(|| anyhow::anyhow!("{flag} {value:?}: claiming it needs ADDR/LEN"))?;
    Ok(ClaimAddress {
        interface: interface.to_string(),
        addr,
        prefix_len,
    })
}

fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    if !value.is_finite() || !(0.0..=31_536_000.0).contains(&value) {
        anyhow::bail!("{flag} {value}: expected seconds between 0 and one year");
    }
    Ok(Duration::from_secs_f64(value))
}

pub fn run(args: &MasterArgs) -> anyhow::Result<ExitCode> {
    let (cluster, _) = ip_prefix("--cluster", &args.cluster)?;
    let (lan, _) = ip_prefix("--lan", &args.lan)?;
    let claim = match (&args.claim_public, &args.claim_lan) {
        (Some(public), Some(lan_if)) => Some(ClaimPlan::new(vec![
            claim_address("--cluster", &args.cluster, public)?,
            claim_address("--lan", &args.lan, lan_if)?,
        ])),
        _ => None,
    };
    if args.name.is_empty() || args.name.len() > reference::cluster::MAX_NAME_LEN {
        anyhow::bail!("--name {:?}: expected 1 to 64 bytes", args.name);
    }
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
    config.name = args.name.clone();
    config.first_ack_sequence = crate::endpoint::wall_clock_sequence();
    if !(1..=1 << 24).contains(&args.max_dispatch_memory) {
        anyhow::bail!(
            "--max-dispatch-memory {}: expected 1 to {}",
            args.max_dispatch_memory,
            1 << 24
        );
    }
    config.max_remembered = args.max_dispatch_memory;
    let setup = MasterSetup {
        status_file: args.status.clone(),
        control: args.control.clone(),
        pcap: args.pcap.clone(),
        duration: args
            .duration
            .map(|d| seconds("--duration", d))
            .transpose()?,
        ..MasterSetup::new(config, lan)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let status = match claim {
        Some(plan) => runtime.block_on(serve_master_claiming(setup, plan))?,
        None => runtime.block_on(serve_master(setup))?,
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claimed_addresses_need_a_prefix_length_and_name_their_flag() {
        assert_eq!(
            ip_prefix("--cluster", "198.18.0.1").unwrap(),
            ("198.18.0.1".parse().unwrap(), None)
        );
        assert_eq!(
            ip_prefix("--cluster", "198.18.0.1/16").unwrap(),
            ("198.18.0.1".parse().unwrap(), Some(16))
        );
        for bad in [
            "198.18.0.1/0",
            "198.18.0.1/33",
            "198.18.0.1/x",
            "cluster/16",
        ] {
            let err = ip_prefix("--cluster", bad).unwrap_err().to_string();
            assert!(err.contains("--cluster"), "{bad}: {err}");
        }
        let claim = claim_address("--takeover-lan", "198.19.0.1/16", "te1l").unwrap();
        assert_eq!(claim.to_string(), "198.19.0.1/16 on te1l");
        let err = claim_address("--takeover-lan", "198.19.0.1", "te1l")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--takeover-lan") && err.contains("ADDR/LEN"),
            "{err}"
        );
    }
}
