//! `l2tpkit endpoint`: the reference LNS, standalone.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use l2tp::conn::tunnels::TunnelSet;
use reference::endpoint::{Endpoint, EndpointStats};
use reference::runner::Runner;

use crate::net::{os_seed, parse_addr, tunnel_config};

#[derive(Debug, clap::Args)]
pub struct EndpointArgs {
    /// Address to listen on: ADDR[:PORT], port 1701 by default.
    #[arg(long)]
    pub listen: String,
    /// Tunnel secret: peers must answer our Challenge.
    #[arg(long)]
    pub secret: Option<String>,
    /// Hide AVPs with the secret.
    #[arg(long)]
    pub hidden: bool,
    /// Host Name AVP.
    #[arg(long, default_value = "l2tpkit-endpoint")]
    pub host_name: String,
    /// Stop after this many seconds (tears tunnels down with StopCCN); runs until Ctrl-C
    /// otherwise.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Write every packet sent and received to this pcap.
    #[arg(long)]
    pub pcap: Option<PathBuf>,
    /// Print the counters at exit as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &EndpointArgs) -> anyhow::Result<ExitCode> {
    let stats = execute(args, |addr| {
        eprintln!("l2tpkit endpoint: listening on {addr}")
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        println!(
            "tunnels {} established, {} closed; sessions {} established, {} closed; \
             echo requests {}, replies sent {}",
            stats.tunnels_established,
            stats.tunnels_closed,
            stats.sessions_established,
            stats.sessions_closed,
            stats.echo_requests,
            stats.echo_replies_sent
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the endpoint until `--duration` or Ctrl-C; `ready` hears the bound address first.
pub fn execute(
    args: &EndpointArgs,
    ready: impl FnOnce(std::net::SocketAddrV4),
) -> anyhow::Result<EndpointStats> {
    let listen = parse_addr("--listen", &args.listen, 1701)?;
    let duration = match args.duration {
        Some(d) if !d.is_finite() || !(0.0..=31_536_000.0).contains(&d) => {
            anyhow::bail!("--duration {d}: expected seconds between 0 and one year")
        }
        Some(d) => Some(Duration::from_secs_f64(d)),
        None => None,
    };
    let config = tunnel_config(&args.host_name, args.secret.as_deref(), args.hidden)?;
    let seed = os_seed();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        let set = TunnelSet::new(config, seed, true);
        let mut runner = Runner::bind(listen, None, set, args.pcap.as_deref()).await?;
        ready(runner.local_addr());
        let mut endpoint = Endpoint::new(seed as u32);
        let run = runner
            .run(&mut endpoint, duration, Duration::from_secs(5))
            .await;
        runner.finish()?;
        run?;
        Ok(endpoint.stats)
    })
}
