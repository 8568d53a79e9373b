//! `l2tpkit endpoint`: the reference LNS, standalone.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use l2tp::conn::tunnels::TunnelSet;
use reference::endpoint::{Endpoint, EndpointStats, Reporting};
use reference::runner::Runner;
use std::net::SocketAddrV4;

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
    /// Cluster member: send load reports to the master at this LAN address (ADDR[:PORT],
    /// port 1702 by default).
    #[arg(long)]
    pub master: Option<String>,
    /// Shared key that authenticates the load reports (HMAC-SHA256).
    #[arg(long)]
    pub report_key: Option<String>,
    /// Seconds between load reports.
    #[arg(long, default_value_t = 1.0)]
    pub report_interval: f64,
    /// This endpoint's name in the cluster.
    #[arg(long, default_value = "te")]
    pub name: String,
    /// The Tunnel IDs this endpoint assigns, FIRST-LAST (unique cluster-wide).
    #[arg(long)]
    pub tunnel_ids: Option<String>,
    /// LAN address to report (default: the --listen address).
    #[arg(long)]
    pub lan: Option<String>,
    /// FIG 4: the endpoint's own global address, reported to the master.
    #[arg(long)]
    pub global: Option<String>,
    /// Most tunnels this endpoint takes (reported to the master).
    #[arg(long, default_value_t = 60_000)]
    pub capacity: u32,
    /// Retransmissions of a control message before the tunnel is cleared (RFC 2661 §5.8:
    /// "a recommended default is 5, but SHOULD be configurable"); more for lossy links.
    #[arg(long, default_value_t = 5)]
    pub max_retransmits: u32,
}

/// `FIRST-LAST`, both in 1..=65535, FIRST <= LAST.
fn parse_ids(value: &str) -> anyhow::Result<(u16, u16)> {
    let bad = || anyhow::anyhow!("--tunnel-ids {value:?}: expected FIRST-LAST within 1-65535");
    let (first, last) = value.split_once('-').ok_or_else(bad)?;
    let first: u16 = first.trim().parse().map_err(|_| bad())?;
    let last: u16 = last.trim().parse().map_err(|_| bad())?;
    if first == 0 || first > last {
        return Err(bad());
    }
    Ok((first, last))
}

fn parse_ip(flag: &str, value: &str) -> anyhow::Result<std::net::Ipv4Addr> {
    value
        .parse()
        .map_err(|_| anyhow::anyhow!("{flag} {value:?}: expected an IPv4 address"))
}

fn reporting(args: &EndpointArgs, listen: SocketAddrV4) -> anyhow::Result<Option<Reporting>> {
    let Some(master) = &args.master else {
        if args.report_key.is_some() || args.global.is_some() {
            anyhow::bail!("--report-key and --global need --master");
        }
        return Ok(None);
    };
    let master = parse_addr("--master", master, reference::cluster::REPORT_PORT)?;
    let key = match &args.report_key {
        Some(key) if !key.is_empty() => key.as_bytes().to_vec(),
        _ => anyhow::bail!("--master needs --report-key: load reports are authenticated"),
    };
    let Some(ids) = &args.tunnel_ids else {
        anyhow::bail!("--master needs --tunnel-ids: the master routes by Tunnel ID blocks");
    };
    let tunnel_ids = parse_ids(ids)?;
    let lan_addr = match &args.lan {
        Some(lan) => parse_ip("--lan", lan)?,
        None if !listen.ip().is_unspecified() => *listen.ip(),
        None => {
            anyhow::bail!("--listen is 0.0.0.0: give --lan, the address the master forwards to")
        }
    };
    let global_addr = args
        .global
        .as_deref()
        .map(|g| parse_ip("--global", g))
        .transpose()?;
    let interval = args.report_interval;
    if !interval.is_finite() || !(0.01..=3600.0).contains(&interval) {
        anyhow::bail!("--report-interval {interval}: expected 0.01 to 3600 seconds");
    }
    let first_sequence = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    Ok(Some(Reporting {
        name: args.name.clone(),
        master,
        key,
        interval: Duration::from_secs_f64(interval),
        lan_addr,
        global_addr,
        capacity: args.capacity,
        tunnel_ids,
        first_sequence,
    }))
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
    let mut config = tunnel_config(&args.host_name, args.secret.as_deref(), args.hidden)?;
    config.reliable.max_retransmits = crate::net::max_retransmits(args.max_retransmits)?;
    let reporting = reporting(args, listen)?;
    let ids = match &args.tunnel_ids {
        Some(ids) => parse_ids(ids)?,
        None => (1, u16::MAX),
    };
    let seed = os_seed();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        let set = TunnelSet::with_ids(config, seed, true, ids.0..=ids.1);
        let mut runner = Runner::bind(listen, None, set, args.pcap.as_deref()).await?;
        ready(runner.local_addr());
        let mut endpoint = Endpoint::new(seed as u32);
        if let Some(reporting) = reporting {
            endpoint = endpoint.with_reporting(reporting);
        }
        let run = runner
            .run(&mut endpoint, duration, Duration::from_secs(5))
            .await;
        runner.finish()?;
        run?;
        Ok(endpoint.stats)
    })
}
