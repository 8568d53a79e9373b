//! `l2tpkit-bench`: throughput figures for BENCHMARKS.md (not shipped in `l2tpkit`).

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use l2tpkit_bench::{decode, nat, setups, subscribers, traffic};
use tracing_subscriber::EnvFilter;

/// Measure throughput (not a test): `decode` against tshark, `nat` against kernel NAT,
/// `setups` through the cluster against xl2tpd.
#[derive(Debug, Parser)]
#[command(name = "l2tpkit-bench", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode a synthetic capture of control packets with `l2tpkit decode`'s code path, then
    /// the same file with tshark, and print both rates and their ratio.
    Decode(decode::DecodeBench),
    /// L2TP data messages per second through our NAT (`l2tpkit nat`) against the kernel's NAT
    /// (nftables DNAT + masquerade) in the same FIG 2 lab, rounds alternating; prints both
    /// rates and their ratio. Needs root and nftables.
    Nat(nat::NatBench),
    /// Tunnel setups per second with 0, 10k, 20k live tunnels held: through the FIG 2 cluster
    /// and against one xl2tpd LNS, with the same `l2tpkit lac` driver in the same run; the
    /// ratio per level and RSS per live tunnel. Needs root and xl2tpd.
    Setups(setups::SetupsBench),
    /// IP-up PPP subscribers per second (tunnel, session, LCP, CHAP or PAP, IPCP) against one
    /// endpoint on loopback, through the FIG 2 cluster and against l2tpns + FreeRADIUS, with
    /// the ratio; and the memory a live PPP session costs in the LAC and the endpoint. The
    /// cluster and l2tpns need root.
    Subscribers(subscribers::SubscribersBench),
    /// The load generator of `nat` (runs in the lab's initiator namespace).
    #[command(hide = true)]
    NatBlast(traffic::BlastArgs),
    /// The packet counter of `nat` (runs in the lab's endpoint namespace).
    #[command(hide = true)]
    NatSink(traffic::SinkArgs),
}

fn main() -> ExitCode {
    // As `l2tpkit` does: the helpers' tunnels log through tracing, filtered by L2TPKIT_LOG.
    let filter = EnvFilter::try_from_env("L2TPKIT_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Decode(args) => decode::run(&args),
        Command::Nat(args) => nat::run(&args),
        Command::Setups(args) => setups::run(&args),
        Command::Subscribers(args) => subscribers::run(&args),
        Command::NatBlast(args) => traffic::blast(&args),
        Command::NatSink(args) => traffic::sink(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // `{:#}`: the error and its causes on one line.
            eprintln!("l2tpkit-bench: {err:#}");
            ExitCode::from(2)
        }
    }
}
