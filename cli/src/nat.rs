//! `l2tpkit nat`: the NAT server of the patent's FIG 2, in front of endpoints that have LAN
//! addresses only.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use reference::nat::NatConfig;
use reference::serve::{serve_nat, NatSetup, ServeOptions};

use crate::args;

#[derive(Debug, clap::Args)]
pub struct NatArgs {
    /// The NAT's global address (public side).
    #[arg(long, required_unless_present = "dump", value_parser = args::ipv4)]
    pub global: Option<Ipv4Addr>,
    /// The NAT's LAN address (the endpoints' default gateway).
    #[arg(long, required_unless_present = "dump", value_parser = args::ipv4)]
    pub lan: Option<Ipv4Addr>,
    /// The LAN interface to tap for the endpoints' replies.
    #[arg(long, required_unless_present = "dump")]
    pub lan_if: Option<String>,
    /// Status file (stats + Table 1), rewritten every second; read back by `--dump`.
    #[arg(long)]
    pub status: Option<PathBuf>,
    /// Print the Table 1 of a running NAT and exit: asked over `--control` when given, read
    /// from its `--status` file otherwise.
    #[arg(long)]
    pub dump: bool,
    /// Unix control socket answering `status` (`l2tpkit ctl PATH status`).
    #[arg(long)]
    pub control: Option<PathBuf>,
    /// Serve Prometheus metrics (OpenMetrics text) on `GET /metrics` at this address.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Seconds an idle entry lives.
    #[arg(long, default_value = "180", value_parser = args::seconds_between(1.0, 86_400.0))]
    pub entry_timeout: Duration,
    /// Most Table 1 entries; past this, SCCRPs that would make a new one are dropped and
    /// counted (`table_full`), and a warning says so (at most every 10 s).
    #[arg(long, default_value_t = NatConfig::DEFAULT_MAX_ENTRIES)]
    pub max_entries: usize,
    /// The tunnels' retransmission limit (their StopCCNs are retransmitted on this schedule):
    /// an entry stays that long after its first StopCCN, a full cycle plus one 8 s timeout
    /// (79 s for 10). Without it the entry stays 31 s, the RFC's cycle for 5.
    #[arg(long, value_parser = args::max_retransmits)]
    pub max_retransmits: Option<u32>,
    /// Endpoints that share the Tunnel ID space (`endpoint --tunnel-ids any`): when two give
    /// one initiator socket the same ID, the later SCCRP gets another of the NAT's choosing,
    /// rewritten in it, in its tunnel's packets and StopCCNs (`entries_translated`). Without
    /// it the later entry replaces the earlier. A LAC that sends to the cluster address rather
    /// than the NAT's (xl2tpd does) cannot reach a translated tunnel.
    #[arg(long)]
    pub translate_tunnel_ids: bool,
    #[command(flatten)]
    pub run: args::ForwarderRun,
}

fn required<T: Clone>(flag: &str, value: &Option<T>) -> anyhow::Result<T> {
    value
        .clone()
        .ok_or_else(|| anyhow::anyhow!("{flag} is required"))
}

pub fn run(args: &NatArgs) -> anyhow::Result<ExitCode> {
    if args.dump {
        if let Some(socket) = &args.control {
            let status = reference::control::request(socket, "status")?;
            let table = status
                .get("table")
                .and_then(|t| t.as_str())
                .ok_or_else(|| {
                    anyhow::anyhow!("{}: the reply holds no Table 1", socket.display())
                })?;
            print!("{table}");
            return Ok(ExitCode::SUCCESS);
        }
        let Some(path) = &args.status else {
            anyhow::bail!(
                "--dump asks the running NAT: give its --control socket or its --status file"
            );
        };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let status: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a NAT status file", path.display()))?;
        let table = status
            .get("table")
            .and_then(|t| t.as_str())
            .ok_or_else(|| anyhow::anyhow!("{}: no Table 1 in it", path.display()))?;
        print!("{table}");
        return Ok(ExitCode::SUCCESS);
    }
    let global = required("--global", &args.global)?;
    let lan = required("--lan", &args.lan)?;
    let lan_if = required("--lan-if", &args.lan_if)?;
    if !(1..=1 << 24).contains(&args.max_entries) {
        anyhow::bail!(
            "--max-entries {}: expected 1 to {}",
            args.max_entries,
            1 << 24
        );
    }
    let mut config = NatConfig::new(global);
    config.entry_timeout = args.entry_timeout;
    if let Some(max_retransmits) = args.max_retransmits {
        config.stop_hold = l2tp::conn::reliable::ReliableConfig {
            max_retransmits,
            ..Default::default()
        }
        .teardown_bound();
    }
    config.max_entries = args.max_entries;
    config.translate_tunnel_ids = args.translate_tunnel_ids;
    let duration = args.run.duration;
    let setup = NatSetup {
        config,
        port: 1701,
        lan_interface: lan_if,
        lan_addr: lan,
        options: ServeOptions {
            status_file: args.status.clone(),
            control: args.control.clone(),
            pcap: args.run.pcap.clone(),
            duration,
            metrics: args.metrics,
            ..ServeOptions::default()
        },
    };
    let runtime = crate::net::runtime()?;
    let status = runtime.block_on(serve_nat(setup))?;
    if args.run.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", status.table);
    }
    Ok(ExitCode::SUCCESS)
}
