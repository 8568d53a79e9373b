//! `l2tpkit lac`: simulated LACs against an LNS (or a cluster address).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use l2tp::conn::tunnels::TunnelSet;
use probes::lac::{Combined, Lac, LacPlan, LacReport};
use reference::runner::{Ended, Runner};

use crate::net::{os_seed, parse_addr, tunnel_config};

#[derive(Debug, clap::Args)]
pub struct LacArgs {
    /// The LNS (or cluster master) to dial: ADDR[:PORT], port 1701 by default.
    #[arg(long)]
    pub target: String,
    /// Local address to send from: ADDR[:PORT]; any free port by default.
    #[arg(long, default_value = "0.0.0.0:0")]
    pub bind: String,
    #[arg(long, default_value_t = 1)]
    pub tunnels: usize,
    #[arg(long, default_value_t = 1)]
    pub sessions_per_tunnel: usize,
    /// Tunnel secret (Challenge / Challenge Response).
    #[arg(long)]
    pub secret: Option<String>,
    /// Hide AVPs (Assigned Session ID, numbers) with the secret (RFC 2661 §4.3).
    #[arg(long)]
    pub hidden: bool,
    /// Seconds to hold everything up once established.
    #[arg(long, default_value_t = 5.0)]
    pub hold: f64,
    /// LCP Echo-Requests per second on each session while holding.
    #[arg(long, default_value_t = 1.0)]
    pub echo_rate: f64,
    /// Seconds to wait for tunnels and sessions to come up.
    #[arg(long, default_value_t = 40.0)]
    pub setup_timeout: f64,
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
    /// NAT answer from their own address). Without it the socket is connected to the target,
    /// which reports an LNS that is not listening at once.
    #[arg(long)]
    pub any_source: bool,
    /// Simulated initiators: this many consecutive source addresses from --bind's address up,
    /// each with its own socket and its share of --tunnels.
    #[arg(long, default_value_t = 1)]
    pub initiators: usize,
}

fn seconds(flag: &str, value: f64, max: f64) -> anyhow::Result<Duration> {
    if !value.is_finite() || value < 0.0 || value > max {
        anyhow::bail!("{flag} {value}: expected seconds between 0 and {max}");
    }
    Ok(Duration::from_secs_f64(value))
}

pub fn run(args: &LacArgs) -> anyhow::Result<ExitCode> {
    let (report, ended) = execute(args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    if ended == Ended::Interrupted {
        eprintln!("l2tpkit lac: interrupted");
        return Ok(ExitCode::from(130));
    }
    Ok(if report.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Runs the LAC and returns its report (the tests call this in process).
pub fn execute(args: &LacArgs) -> anyhow::Result<(LacReport, Ended)> {
    let target = parse_addr("--target", &args.target, 1701)?;
    let bind = parse_addr("--bind", &args.bind, 0)?;
    if args.tunnels == 0 || args.tunnels > 60_000 {
        anyhow::bail!("--tunnels {}: expected 1 to 60000", args.tunnels);
    }
    if args.sessions_per_tunnel > 60_000 {
        anyhow::bail!(
            "--sessions-per-tunnel {}: expected at most 60000",
            args.sessions_per_tunnel
        );
    }
    if !args.echo_rate.is_finite() || args.echo_rate < 0.0 || args.echo_rate > 1000.0 {
        anyhow::bail!(
            "--echo-rate {}: expected 0 to 1000 per second",
            args.echo_rate
        );
    }
    let hold = seconds("--hold", args.hold, 86_400.0)?;
    let setup_timeout = seconds("--setup-timeout", args.setup_timeout, 3600.0)?;
    let config = tunnel_config(&args.host_name, args.secret.as_deref(), args.hidden)?;
    let seed = os_seed();
    let plan = LacPlan {
        target,
        tunnels: args.tunnels,
        sessions_per_tunnel: args.sessions_per_tunnel,
        hold,
        echo_rate: args.echo_rate,
        setup_timeout,
    };
    if args.initiators == 0 || args.initiators > 4096 {
        anyhow::bail!("--initiators {}: expected 1 to 4096", args.initiators);
    }
    if args.initiators > args.tunnels {
        anyhow::bail!(
            "--initiators {} is more than --tunnels {}: every initiator opens at least one",
            args.initiators,
            args.tunnels
        );
    }
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..args.initiators {
            // Tunnels split as evenly as they go: the first ones take the remainder.
            let share =
                args.tunnels / args.initiators + usize::from(i < args.tunnels % args.initiators);
            let ip = std::net::Ipv4Addr::from(first + i as u32);
            let bind = std::net::SocketAddrV4::new(ip, bind.port());
            let plan = LacPlan {
                tunnels: share,
                ..plan.clone()
            };
            let config = config.clone();
            let pcap = args.pcap.as_ref().map(|p| {
                if args.initiators == 1 {
                    p.clone()
                } else {
                    p.with_file_name(format!(
                        "{}-{ip}.pcap",
                        p.file_stem().and_then(|s| s.to_str()).unwrap_or("lac")
                    ))
                }
            });
            let connect = (!args.any_source).then_some(target);
            let seed = seed.wrapping_add(i as u64);
            tasks.spawn_local(async move {
                let set = TunnelSet::new(config, seed, false);
                let mut runner = Runner::bind(bind, connect, set, pcap.as_deref()).await?;
                tracing::info!(local = %runner.local_addr(), %target, "LAC started");
                let mut lac = Lac::new(plan, (seed >> 32) as u32);
                // Bounded: setup, hold, and the teardown's drain.
                let deadline = setup_timeout + hold + Duration::from_secs(5);
                let run = runner
                    .run(&mut lac, Some(deadline), Duration::from_secs(10))
                    .await;
                runner.finish()?;
                let ended = run?;
                lac.finish(&runner.set);
                Ok::<_, anyhow::Error>((lac, ended))
            });
        }
        let mut combined = Combined::default();
        let mut ended = Ended::Finished;
        while let Some(joined) = tasks.join_next().await {
            let (lac, how) = joined.context("an initiator task failed")??;
            combined.add(&lac);
            if how != Ended::Finished {
                ended = how;
            }
        }
        Ok((combined.report(), ended))
    })
}
