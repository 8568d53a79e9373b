//! `l2tpkit endpoint`: the reference LNS, standalone.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use l2tp::conn::tunnels::TunnelSet;
use netio::runner::Runner;
use reference::claim::{ClaimAddress, ClaimPlan};
use reference::endpoint::pool::{Ipv4Cidr, DEFAULT_POOL};
use reference::endpoint::ppp::{PppServer, PppServerConfig};
use reference::endpoint::users::Users;
use reference::endpoint::{EndpointStats, Reporting};
use reference::master::MasterConfig;
use reference::serve::{serve_endpoint, EndpointSetup, MasterSetup, ServeOptions, TakeoverSetup};
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::args::{self, AddrPrefix, DnsServers, PolicyName};
use crate::net::{os_seed, tunnel_config, wall_clock_sequence};
use crate::secret::report_key;

/// `l2tpkit endpoint`'s command line: the L2TP flags and the PPP ones (apart so that code
/// building an [`EndpointArgs`] for a bare LNS needs no PPP field).
#[derive(Debug, clap::Args)]
pub struct EndpointCommand {
    #[command(flatten)]
    pub args: EndpointArgs,
    #[command(flatten)]
    pub ppp: PppArgs,
}

/// The endpoint as the PPP server of its sessions.
#[derive(Debug, Clone, clap::Args)]
pub struct PppArgs {
    /// Run PPP on every session as its server and demand this authentication (none: no
    /// authentication phase). Without the flag no PPP runs: only LCP Echo-Requests are
    /// answered, as a bare LNS for LACs that send no PPP.
    #[arg(long, value_enum)]
    pub auth: Option<AuthName>,
    /// Users for PAP/CHAP: one `user:password` per line; blank lines and `#` comments
    /// allowed. Required with --auth pap or chap.
    #[arg(long)]
    pub users: Option<PathBuf>,
    /// IPv4 addresses handed out over IPCP, ADDR/LEN (never configured on an interface);
    /// all host addresses but the endpoint's own.
    #[arg(long, default_value_t = DEFAULT_POOL)]
    pub pool: Ipv4Cidr,
    /// The endpoint's own IPCP address, inside --pool and never handed out [default: the
    /// pool's first host address]. ICMP echoes to it are answered.
    #[arg(long, value_parser = args::ipv4)]
    pub ppp_address: Option<Ipv4Addr>,
    /// Negotiate IPv6CP too: a session is open once IPCP and IPv6CP both are.
    #[arg(long)]
    pub ipv6: bool,
    /// DNS servers handed out in IPCP when asked (RFC 1877), A[,B].
    #[arg(long, value_parser = args::dns_servers)]
    pub dns: Option<DnsServers>,
    /// PPP's Max-Configure (RFC 1661 §4.6) for LCP and the NCPs, and the most CHAP
    /// Challenges: Restart periods (3 s) a negotiation may take before giving up.
    #[arg(long, default_value_t = reference::endpoint::ppp::DEFAULT_MAX_CONFIGURE,
          value_parser = clap::value_parser!(u8).range(1..))]
    pub ppp_max_configure: u8,
}

impl Default for PppArgs {
    /// No PPP.
    fn default() -> Self {
        PppArgs {
            auth: None,
            users: None,
            pool: DEFAULT_POOL,
            ppp_address: None,
            ipv6: false,
            dns: None,
            ppp_max_configure: reference::endpoint::ppp::DEFAULT_MAX_CONFIGURE,
        }
    }
}

/// `--auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthName {
    None,
    Pap,
    Chap,
}

impl PppArgs {
    /// The PPP server's configuration, `None` without --auth; the users file is read and the
    /// pool checked here, before anything binds.
    pub fn config(&self, host_name: &str) -> anyhow::Result<Option<PppServerConfig>> {
        let Some(auth) = self.auth else {
            if self.users.is_some() || self.ppp_address.is_some() || self.ipv6 || self.dns.is_some()
            {
                anyhow::bail!("--users, --ppp-address, --ipv6 and --dns need --auth (PPP is off)");
            }
            return Ok(None);
        };
        let auth = match auth {
            AuthName::None => l2tp::ppp::lcp::AuthSet::NONE,
            AuthName::Pap => l2tp::ppp::lcp::AuthSet::PAP,
            AuthName::Chap => l2tp::ppp::lcp::AuthSet::CHAP_MD5,
        };
        let users = match &self.users {
            Some(path) => Some(std::sync::Arc::new(Users::load(path)?)),
            None => None,
        };
        let config = PppServerConfig {
            auth,
            users,
            pool: self.pool,
            own_address: self.ppp_address,
            ipv6: self.ipv6,
            dns: self.dns.map_or([None; 2], |d| d.0),
            name: host_name.to_string(),
            max_configure: self.ppp_max_configure,
        };
        // Pool and users checked now, with the flags' names in the error.
        PppServer::new(&config, 0)?;
        Ok(Some(config))
    }
}

#[derive(Debug, clap::Args)]
pub struct EndpointArgs {
    /// Address to listen on: ADDR[:PORT], port 1701 by default.
    #[arg(long, value_parser = args::addr_port::<1701>)]
    pub listen: SocketAddrV4,
    /// Tunnel secret: peers must answer our Challenge. Other local users can read a command
    /// line: prefer --secret-file or L2TPKIT_SECRET.
    #[arg(long)]
    pub secret: Option<String>,
    /// The tunnel secret from this file (its first line; not readable by group or others).
    #[arg(long, value_name = "PATH")]
    pub secret_file: Option<PathBuf>,
    /// Hide AVPs with the secret.
    #[arg(long)]
    pub hidden: bool,
    /// Host Name AVP.
    #[arg(long, default_value = "l2tpkit-endpoint")]
    pub host_name: String,
    /// Stop after this many seconds (tears tunnels down with StopCCN); runs until Ctrl-C
    /// otherwise.
    #[arg(long, value_parser = args::seconds)]
    pub duration: Option<Duration>,
    /// Write every packet sent and received to this pcap.
    #[arg(long)]
    pub pcap: Option<PathBuf>,
    /// Print the counters at exit as JSON.
    #[arg(long)]
    pub json: bool,
    /// Status file (JSON): written once the socket is bound (`"state": "listening"`, what a
    /// supervisor such as the lab waits for), and again at exit with the counters
    /// (`"state": "stopped"`).
    #[arg(long)]
    pub status: Option<PathBuf>,
    /// Cluster member: send load reports to the master at this LAN address (ADDR[:PORT],
    /// port 1702 by default).
    #[arg(long, value_parser = args::addr_port::<{ reference::cluster::REPORT_PORT }>)]
    pub master: Option<SocketAddrV4>,
    /// Shared key that authenticates the load reports (HMAC-SHA256). Other local users can
    /// read a command line: prefer --report-key-file or L2TPKIT_REPORT_KEY.
    #[arg(long)]
    pub report_key: Option<String>,
    /// The report key from this file (its first line; the file must not be readable by group
    /// or others).
    #[arg(long, value_name = "PATH")]
    pub report_key_file: Option<PathBuf>,
    /// Seconds between load reports.
    #[arg(long, default_value = "1", value_parser = args::seconds_between(0.01, 3600.0))]
    pub report_interval: Duration,
    /// This endpoint's name in the cluster.
    #[arg(long, default_value = "te")]
    pub name: String,
    /// The Tunnel IDs this endpoint assigns, unique cluster-wide: FIRST-LAST; or I/N, block I
    /// (from 0) of N equal, disjoint blocks of 1-65535 (65535/N IDs each, the few past the
    /// last block unused), so that endpoints 0 to N-1 given the same N never overlap (a
    /// StatefulSet's pod index); or `any`: all of them, reported as no block (FIG 2 only: the
    /// NAT tells the endpoints apart, and packets sent to the cluster address cannot reach the
    /// endpoint's tunnels).
    #[arg(long, value_name = "FIRST-LAST|I/N|any")]
    pub tunnel_ids: Option<String>,
    /// LAN address to report (default: the --listen address).
    #[arg(long, value_parser = args::ipv4)]
    pub lan: Option<Ipv4Addr>,
    /// FIG 4: the endpoint's own global address, reported to the master.
    #[arg(long, value_parser = args::ipv4)]
    pub global: Option<Ipv4Addr>,
    /// Most tunnels this endpoint takes (reported to the master).
    #[arg(long, default_value_t = 60_000)]
    pub capacity: u32,
    /// Retransmissions of a control message before the tunnel is cleared (RFC 2661 §5.8:
    /// "a recommended default is 5, but SHOULD be configurable"); more for lossy links.
    #[arg(long, default_value_t = 5, value_parser = args::max_retransmits)]
    pub max_retransmits: u32,
    /// Refuse every OCRQ with a CDN (result 5: no facilities, RFC 2661 §6.7) instead of
    /// placing the call at once.
    #[arg(long)]
    pub refuse_outgoing: bool,
    /// Serve Prometheus metrics (OpenMetrics text) on `GET /metrics` at this address,
    /// refreshed every second: tunnels, sessions, echoes, and with PPP its subscribers.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
    /// FIG 4 takeover: when the master goes silent and this endpoint's turn comes, claim the
    /// cluster address ADDR/LEN (on the interface holding --global) and serve as the master.
    #[command(flatten)]
    pub takeover: TakeoverArgs,
}

/// The command line's defaults, listening on 0.0.0.0:1701 (for callers that build the
/// arguments in code, as `LacArgs::default` serves the LAC's).
impl Default for EndpointArgs {
    fn default() -> EndpointArgs {
        EndpointArgs {
            listen: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 1701),
            secret: None,
            hidden: false,
            host_name: "l2tpkit-endpoint".to_string(),
            duration: None,
            pcap: None,
            json: false,
            status: None,
            master: None,
            report_key: None,
            report_key_file: None,
            secret_file: None,
            report_interval: Duration::from_secs(1),
            name: "te".to_string(),
            tunnel_ids: None,
            lan: None,
            global: None,
            capacity: 60_000,
            takeover: TakeoverArgs::default(),
            max_retransmits: 5,
            refuse_outgoing: false,
            metrics: None,
        }
    }
}

/// What an endpoint needs to take the master over (all but --takeover-cluster optional).
#[derive(Debug, Clone, clap::Args)]
pub struct TakeoverArgs {
    /// The cluster address to claim, ADDR/LEN; enables takeover (needs --master and --global).
    #[arg(long, requires_all = ["master", "global", "takeover_lan"], value_parser = args::addr_prefix)]
    pub takeover_cluster: Option<AddrPrefix>,
    /// The master's LAN address to claim (where the endpoints report), ADDR/LEN.
    #[arg(long, requires = "takeover_cluster", value_parser = args::addr_prefix)]
    pub takeover_lan: Option<AddrPrefix>,
    /// Interface for the cluster address [default: the one holding --global].
    #[arg(long, requires = "takeover_cluster")]
    pub takeover_public_if: Option<String>,
    /// Interface for the master's LAN address [default: the one holding --lan].
    #[arg(long, requires = "takeover_cluster")]
    pub takeover_lan_if: Option<String>,
    /// The taken-over master's status file (as `l2tpkit master --status`).
    #[arg(long, requires = "takeover_cluster")]
    pub takeover_status: Option<PathBuf>,
    /// The taken-over master's control socket (as `l2tpkit master --control`).
    #[arg(long, requires = "takeover_cluster")]
    pub takeover_control: Option<PathBuf>,
    /// The taken-over master's pcap of forwarded packets.
    #[arg(long, requires = "takeover_cluster")]
    pub takeover_pcap: Option<PathBuf>,
    /// The taken-over master's dispatch policy (least-load; round-robin).
    #[arg(long, value_enum, requires = "takeover_cluster")]
    pub takeover_policy: Option<PolicyName>,
    /// The taken-over master's --report-timeout, in seconds.
    #[arg(long, default_value = "3", value_parser = args::seconds_between(0.0, 3600.0))]
    pub takeover_report_timeout: Duration,
}

impl Default for TakeoverArgs {
    /// No takeover; the command line's defaults otherwise.
    fn default() -> Self {
        TakeoverArgs {
            takeover_cluster: None,
            takeover_lan: None,
            takeover_public_if: None,
            takeover_lan_if: None,
            takeover_status: None,
            takeover_control: None,
            takeover_pcap: None,
            takeover_policy: None,
            takeover_report_timeout: Duration::from_secs(3),
        }
    }
}

/// `--tunnel-ids`: `FIRST-LAST`, both in 1..=65535, FIRST <= LAST; `I/N`, block I of N
/// (`id_block`); `any` is `None`. Public for the deploy tests, which check the blocks a
/// StatefulSet's endpoints get.
pub fn parse_ids(value: &str) -> anyhow::Result<Option<(u16, u16)>> {
    if value.trim() == "any" {
        return Ok(None);
    }
    if let Some((index, count)) = value.split_once('/') {
        return id_block(value, index, count).map(Some);
    }
    let bad = || {
        anyhow::anyhow!("--tunnel-ids {value:?}: expected FIRST-LAST within 1-65535, I/N, or any")
    };
    let (first, last) = value.split_once('-').ok_or_else(bad)?;
    let first: u16 = first.trim().parse().map_err(|_| bad())?;
    let last: u16 = last.trim().parse().map_err(|_| bad())?;
    if first == 0 || first > last {
        return Err(bad());
    }
    Ok(Some((first, last)))
}

/// `I/N`: block I (from 0) of N equal blocks of 1..=65535, each 65535/N IDs long; the fewer
/// than N IDs past block N-1 are left unused, so every endpoint holds as many.
fn id_block(value: &str, index: &str, count: &str) -> anyhow::Result<(u16, u16)> {
    let number = |what: &str, text: &str| -> anyhow::Result<u32> {
        text.trim().parse().map_err(|_| {
            anyhow::anyhow!(
                "--tunnel-ids {value:?}: the {what} {text:?} is not a number (I/N: block I, \
                 from 0, of N)"
            )
        })
    };
    let index = number("block index", index)?;
    let count = number("block count", count)?;
    let ids = u32::from(u16::MAX);
    if count == 0 || count > ids {
        anyhow::bail!(
            "--tunnel-ids {value:?}: N = {count} blocks; expected 1 to {ids}, so that every \
             block holds an ID"
        );
    }
    if index >= count {
        anyhow::bail!(
            "--tunnel-ids {value:?}: block {index} of {count}; blocks are numbered 0 to {}",
            count - 1
        );
    }
    let len = ids / count;
    let first = index * len + 1;
    let last = first + len - 1;
    // last <= count * len <= 65535.
    match (u16::try_from(first), u16::try_from(last)) {
        (Ok(first), Ok(last)) => Ok((first, last)),
        _ => anyhow::bail!("--tunnel-ids {value:?}: block {first}-{last} outside 1-65535"),
    }
}

fn reporting(args: &EndpointArgs, listen: SocketAddrV4) -> anyhow::Result<Option<Reporting>> {
    let Some(master) = args.master else {
        if args.report_key.is_some() || args.report_key_file.is_some() || args.global.is_some() {
            anyhow::bail!("--report-key and --global need --master");
        }
        return Ok(None);
    };
    let key = match report_key(args.report_key.as_deref(), args.report_key_file.as_deref())? {
        Some(key) => key.into_bytes(),
        None => anyhow::bail!(
            "--master needs --report-key-file (or L2TPKIT_REPORT_KEY, or --report-key): load \
             reports are authenticated"
        ),
    };
    let Some(ids) = &args.tunnel_ids else {
        anyhow::bail!(
            "--master needs --tunnel-ids: a block FIRST-LAST the master routes by, or any \
             (behind the FIG 2 NAT only)"
        );
    };
    let tunnel_ids = parse_ids(ids)?;
    let lan_addr = match args.lan {
        Some(lan) => lan,
        None if !listen.ip().is_unspecified() => *listen.ip(),
        None => {
            anyhow::bail!("--listen is 0.0.0.0: give --lan, the address the master forwards to")
        }
    };
    let global_addr = args.global;
    let first_sequence = wall_clock_sequence();
    Ok(Some(Reporting {
        name: args.name.clone(),
        master,
        key,
        interval: args.report_interval,
        lan_addr,
        global_addr,
        capacity: args.capacity,
        tunnel_ids,
        first_sequence,
    }))
}

fn takeover(
    args: &EndpointArgs,
    reporting: Option<&Reporting>,
) -> anyhow::Result<Option<TakeoverSetup>> {
    let t = &args.takeover;
    let Some(cluster) = t.takeover_cluster else {
        return Ok(None);
    };
    let reporting = reporting.context("--takeover-cluster needs --master (and reporting)")?;
    let global = reporting
        .global_addr
        .context("--takeover-cluster needs --global: only FIG 4 endpoints take over")?;
    let lan = t
        .takeover_lan
        .context("--takeover-cluster needs --takeover-lan")?;
    let interface = |flag: &str, given: &Option<String>, holding: Ipv4Addr| match given {
        Some(name) => Ok(name.clone()),
        None => netio::iface::interface_with_address(holding)
            .with_context(|| format!("{flag}: no interface given and none holds {holding}")),
    };
    let public_if = interface("--takeover-public-if", &t.takeover_public_if, global)?;
    let lan_if = interface("--takeover-lan-if", &t.takeover_lan_if, reporting.lan_addr)?;
    let cluster = cluster.claim("--takeover-cluster", &public_if)?;
    let lan = lan.claim("--takeover-lan", &lan_if)?;
    if *reporting.master.ip() != lan.addr {
        anyhow::bail!(
            "--takeover-lan {}: must be the address this endpoint reports to (--master {})",
            lan.addr,
            reporting.master.ip()
        );
    }
    let mut config = MasterConfig::new(cluster.addr, reporting.key.clone());
    config.name = reporting.name.clone();
    config.first_ack_sequence = wall_clock_sequence();
    config.report_timeout = t.takeover_report_timeout;
    config.policy = match t.takeover_policy.unwrap_or_default() {
        PolicyName::LeakyBucket => {
            anyhow::bail!("--takeover-policy leaky-bucket: not for a taken-over master (its rate and burst are not flags here)")
        }
        name => name.into(),
    };
    let lan_addr = lan.addr;
    let setup = MasterSetup {
        options: ServeOptions {
            status_file: t.takeover_status.clone(),
            control: t.takeover_control.clone(),
            pcap: t.takeover_pcap.clone(),
            ..ServeOptions::default()
        },
        reuse_addr: true,
        ..MasterSetup::new(config, lan_addr)
    };
    let addresses: Vec<ClaimAddress> = vec![cluster, lan];
    Ok(Some(TakeoverSetup {
        plan: ClaimPlan::new(addresses),
        master: setup,
    }))
}

pub fn run(command: &EndpointCommand) -> anyhow::Result<ExitCode> {
    let args = &command.args;
    crate::secret::warn_if_given("--secret", args.secret.as_deref(), "L2TPKIT_SECRET");
    let key = args.report_key.as_deref();
    crate::secret::warn_if_given("--report-key", key, "L2TPKIT_REPORT_KEY");
    let stats = execute_with(args, &command.ppp, |addr| {
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
        if let Some(ppp) = &stats.ppp {
            println!(
                "PPP: {} started, {} opened, {} open now; auth {} ok, {} failed; \
                 failed in LCP {}, auth {}, IPCP {}; pool {} in use, {} free, {} refused; \
                 ICMP echoes answered {}",
                ppp.sessions_started,
                ppp.sessions_opened,
                ppp.sessions_open,
                ppp.auth_ok,
                ppp.auth_failed,
                ppp.failed_lcp,
                ppp.failed_auth,
                ppp.failed_network,
                ppp.pool_in_use,
                ppp.pool_free,
                ppp.pool_exhausted,
                ppp.icmp_echo_answered
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the endpoint (no PPP) until `--duration` or Ctrl-C; `ready` hears the bound address
/// first.
pub fn execute(
    args: &EndpointArgs,
    ready: impl FnOnce(std::net::SocketAddrV4),
) -> anyhow::Result<EndpointStats> {
    execute_with(args, &PppArgs::default(), ready)
}

/// As [`execute`], with the PPP flags.
pub fn execute_with(
    args: &EndpointArgs,
    ppp: &PppArgs,
    ready: impl FnOnce(std::net::SocketAddrV4),
) -> anyhow::Result<EndpointStats> {
    let ppp = ppp.config(&args.host_name)?;
    let (listen, duration) = (args.listen, args.duration);
    let secret = crate::secret::tunnel_secret(args.secret.as_deref(), args.secret_file.as_deref())?;
    let mut config = tunnel_config(&args.host_name, secret.as_deref(), args.hidden)?;
    config.reliable.max_retransmits = args.max_retransmits;
    config.refuse_outgoing = args.refuse_outgoing;
    let reporting = reporting(args, listen)?;
    let takeover = takeover(args, reporting.as_ref())?;
    let ids = match &args.tunnel_ids {
        Some(ids) => parse_ids(ids)?,
        None => None,
    }
    .unwrap_or((1, u16::MAX));
    let seed = os_seed();
    let runtime = crate::net::runtime()?;
    runtime.block_on(async {
        let set = TunnelSet::with_ids(config, seed, true, ids.0..=ids.1);
        let reuse = takeover.is_some();
        let mut runner = Runner::bind_with(listen, None, set, args.pcap.as_deref(), reuse).await?;
        let bound = runner.local_addr();
        ready(bound);
        if let Some(path) = &args.status {
            write_status(path, &EndpointStatus::listening(bound))?;
        }
        let setup = EndpointSetup {
            seed: seed as u32,
            reporting,
            takeover,
            duration,
            ppp,
            metrics: args.metrics,
        };
        let stats = serve_endpoint(&mut runner, setup).await?.stats;
        if let Some(path) = &args.status {
            write_status(path, &EndpointStatus::stopped(bound, stats.clone()))?;
        }
        Ok(stats)
    })
}

/// `--status`: whether the endpoint listens yet, and its counters once it has stopped.
#[derive(Debug, serde::Serialize)]
struct EndpointStatus {
    state: &'static str,
    listen: SocketAddrV4,
    #[serde(skip_serializing_if = "Option::is_none")]
    stats: Option<EndpointStats>,
}

impl EndpointStatus {
    fn listening(listen: SocketAddrV4) -> EndpointStatus {
        EndpointStatus {
            state: "listening",
            listen,
            stats: None,
        }
    }

    fn stopped(listen: SocketAddrV4, stats: EndpointStats) -> EndpointStatus {
        EndpointStatus {
            state: "stopped",
            listen,
            stats: Some(stats),
        }
    }
}

fn write_status(path: &std::path::Path, status: &EndpointStatus) -> anyhow::Result<()> {
    // Write then rename: a reader never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(status)?)
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("--status {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::parse_ids;

    fn error(value: &str) -> String {
        parse_ids(value).unwrap_err().to_string()
    }

    #[test]
    fn first_last_and_any() {
        assert_eq!(parse_ids("100-199").unwrap(), Some((100, 199)));
        assert_eq!(parse_ids(" 1 - 65535 ").unwrap(), Some((1, 65535)));
        assert_eq!(parse_ids("any").unwrap(), None);
        for bad in ["0-5", "9-8", "1-65536", "5", "", "a-b"] {
            let message = error(bad);
            assert!(message.starts_with("--tunnel-ids "), "{bad:?}: {message}");
            assert!(message.contains("I/N"), "{bad:?}: {message}");
        }
    }

    #[test]
    fn block_of_n() {
        assert_eq!(parse_ids("0/1").unwrap(), Some((1, 65535)));
        assert_eq!(parse_ids("0/3").unwrap(), Some((1, 21845)));
        assert_eq!(parse_ids("1/3").unwrap(), Some((21846, 43690)));
        assert_eq!(parse_ids("2/3").unwrap(), Some((43691, 65535)));
        assert_eq!(parse_ids(" 1 / 2 ").unwrap(), Some((32768, 65534)));
        assert_eq!(parse_ids("65534/65535").unwrap(), Some((65535, 65535)));
        assert_eq!(parse_ids("0/65535").unwrap(), Some((1, 1)));
    }

    #[test]
    fn blocks_are_equal_disjoint_and_in_order() {
        for count in [1u32, 2, 7, 10, 100, 1000, 4096, 65535] {
            let blocks: Vec<(u16, u16)> = (0..count)
                .map(|i| parse_ids(&format!("{i}/{count}")).unwrap().unwrap())
                .collect();
            let len = 65535 / count;
            assert_eq!(blocks[0].0, 1, "N = {count}");
            for (first, last) in &blocks {
                assert_eq!(u32::from(*last) - u32::from(*first) + 1, len, "N = {count}");
            }
            for pair in blocks.windows(2) {
                assert_eq!(pair[1].0, pair[0].1 + 1, "N = {count}: {pair:?}");
            }
            // Fewer than N IDs are left over past the last block.
            assert!(65535 - u32::from(blocks[blocks.len() - 1].1) < count);
        }
    }

    #[test]
    fn bad_blocks_are_named() {
        let cases = [
            ("3/3", "block 3 of 3; blocks are numbered 0 to 2"),
            ("7/1", "numbered 0 to 0"),
            ("0/0", "N = 0 blocks; expected 1 to 65535"),
            ("0/65536", "N = 65536 blocks"),
            ("x/4", "the block index \"x\" is not a number"),
            ("-1/4", "the block index \"-1\" is not a number"),
            ("1/", "the block count \"\" is not a number"),
            ("1/2/3", "the block count \"2/3\" is not a number"),
        ];
        for (value, expected) in cases {
            let message = error(value);
            assert!(
                message.starts_with(&format!("--tunnel-ids {value:?}: ")),
                "{value:?}: {message}"
            );
            assert!(message.contains(expected), "{value:?}: {message}");
        }
    }
}
