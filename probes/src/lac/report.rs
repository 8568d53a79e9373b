//! The LAC's summary: the figures of a whole run, printed as a table or as JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{EndpointReport, PppLevel, ShardInfo};
use crate::live::Percentiles;

/// The LAC's summary, printed as text or JSON (and read back by `merge`: what a report of
/// before lacks is left at its default).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LacReport {
    pub target: String,
    pub tunnels_requested: usize,
    pub tunnels_established: usize,
    pub tunnels_failed: usize,
    pub sessions_requested: usize,
    pub sessions_established: usize,
    pub sessions_failed: usize,
    /// "StopCCN result 2 error 0 (…) [from peer]", "tunnel setup timeout": how many of each.
    pub failures: BTreeMap<String, u64>,
    /// SCCRQ sent → SCCRP received.
    pub sccrq_to_sccrp: Percentiles,
    /// SCCRQ sent → our SCCCN acknowledged (see `stats`).
    pub tunnel_setup: Percentiles,
    /// ICRQ sent → ICRP received.
    pub session_setup: Percentiles,
    /// LCP Echo-Request → its Echo-Reply (or itself looped back), per session.
    pub echo_rtt: Percentiles,
    /// Where a session counts as up (`--ppp`).
    pub ppp: PppLevel,
    /// Sessions that had every NCP opened (IPCP, and IPv6CP when asked).
    pub sessions_ip_up: usize,
    /// IPCP addresses given to a session while another live session had it.
    pub duplicate_addresses: usize,
    /// ICCN sent → LCP opened.
    pub lcp_opened: Percentiles,
    /// LCP opened → authentication succeeded (sessions the LNS asked to authenticate).
    pub authentication: Percentiles,
    /// Authentication done → IPCP opened.
    pub ipcp_opened: Percentiles,
    /// Authentication done → IPv6CP opened.
    pub ipv6cp_opened: Percentiles,
    /// ICRQ sent → every NCP opened.
    pub icrq_to_ip_up: Percentiles,
    pub echo_requests_sent: u64,
    /// Echo-Replies from the peer's PPP.
    pub echo_replies: u64,
    /// Our own Echo-Requests coming back unchanged (a loopback PPP peer such as the pppd
    /// stand-in in PEERS.md).
    pub echo_looped_back: u64,
    /// Tunnels whose StopCCN the peer acknowledged.
    pub tunnels_closed_cleanly: usize,
    /// From the first SCCRQ to the last tunnel or session up, in milliseconds.
    pub setup_phase_ms: f64,
    /// Tunnels established per second of the setup phase.
    pub tunnel_setups_per_second: f64,
    /// The most tunnels that came up within one whole second of the run.
    pub peak_setups_per_second: u64,
    /// The most tunnels up at once.
    pub peak_tunnels_up: u64,
    /// The most SCCRQs without an answer at once.
    pub outstanding_max: u64,
    /// Control messages we sent again (§5.8), over every tunnel, closed ones included.
    pub retransmissions: u64,
    /// Length of the whole run, teardown included, in seconds.
    pub elapsed_s: f64,
    /// Per LNS, keyed by the SCCRP's Host Name AVP (or its source address), in key order.
    pub endpoints: Vec<EndpointReport>,
    /// ICMP Echo Requests per second per session (`--traffic-rate`; 0: no traffic).
    pub traffic_rate: f64,
    pub traffic_sent: u64,
    /// Echo Replies matched to their request.
    pub traffic_received: u64,
    /// `traffic_sent - traffic_received`: traffic stops a grace before the teardown, so what
    /// is unanswered then is lost.
    pub traffic_lost: u64,
    pub traffic_loss_pct: f64,
    /// Echo Replies that matched no unanswered request (late past the grace, duplicated).
    pub traffic_unexpected: u64,
    /// Echo Request → its Echo Reply.
    pub traffic_rtt: Percentiles,
    /// Sessions failed for a PPP reason (also in `failures`).
    pub ppp_failures: u64,
    /// DNS servers were asked for in IPCP (`--dns`, RFC 1877).
    pub request_dns: bool,
    /// Sessions whose IPCP gave them at least one DNS server.
    pub sessions_with_dns: u64,
    /// The DNS servers handed out, each once (at most 16 kept).
    pub dns_servers: Vec<std::net::Ipv4Addr>,
    /// Tunnels and sessions ended by an operator's `terminate-…` (`lac --control`); not
    /// failures. Absent from the JSON when none was.
    #[serde(skip_serializing_if = "is_zero")]
    pub tunnels_terminated: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub sessions_terminated: u64,
    /// Messages given up on after every retransmission (RFC 2661 §5.8), by message type
    /// ("StopCCN", "CDN", "ICRQ", …). Absent from the JSON when none was.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub given_up: BTreeMap<String, u64>,
    /// Tunnels whose StopCCN was neither acknowledged nor given up when the teardown's bound
    /// ran out (only a peer whose window holds our StopCCN back gets there).
    #[serde(skip_serializing_if = "is_zero")]
    pub teardown_cut_off: u64,
    /// Replies to our SCCRQs that came from another address than the target's and were
    /// dropped (no `--any-source`), by address: a cluster whose endpoints or NAT answer from
    /// their own. Absent from the JSON when none was.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub replies_from_other_addresses: BTreeMap<String, u64>,
    /// The agent's share of a run several carry (`lac --shard`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardInfo>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The words for replies from other addresses than the target's (the report, the progress
/// line): `None` when there were none.
pub fn replies_hint<S: AsRef<str>>(
    count: u64,
    from: impl IntoIterator<Item = S>,
) -> Option<String> {
    if count == 0 {
        return None;
    }
    let from: Vec<String> = from.into_iter().map(|a| a.as_ref().to_string()).collect();
    Some(format!(
        "{count} SCCRPs came from {}, not the target's address: a cluster? try --any-source",
        from.join(", ")
    ))
}

impl LacReport {
    pub fn echo_answered(&self) -> u64 {
        self.echo_replies + self.echo_looped_back
    }

    /// Everything requested came up, every echo was answered, every tunnel closed cleanly.
    pub fn success(&self) -> bool {
        self.tunnels_failed == 0
            && self.sessions_failed == 0
            && self.tunnels_established == self.tunnels_requested
            && self.sessions_established == self.sessions_requested
            && self.echo_answered() >= self.echo_requests_sent
            && self.tunnels_closed_cleanly == self.tunnels_established
            && self.duplicate_addresses == 0
            && self.traffic_lost == 0
    }

    /// "198 SCCRPs came from 198.18.0.12, 198.18.0.13: a cluster? try --any-source", when
    /// replies from other addresses were dropped.
    pub fn replies_elsewhere_hint(&self) -> Option<String> {
        replies_hint(
            self.replies_from_other_addresses.values().sum(),
            self.replies_from_other_addresses.keys(),
        )
    }

    /// "StopCCN 2, CDN 1": the §5.8 give-ups, by message.
    pub fn given_up_text(&self) -> String {
        let parts: Vec<String> = (self.given_up.iter())
            .map(|(message, n)| format!("{message} {n}"))
            .collect();
        parts.join(", ")
    }
}

impl core::fmt::Display for LacReport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        writeln!(f, "target {} ({:.1} s)", self.target, self.elapsed_s)?;
        writeln!(
            f,
            "setup    {:.0} tunnels/s over {:.1} ms (peak {}/s in one second); \
             at most {} SCCRQs outstanding; {} retransmissions",
            self.tunnel_setups_per_second,
            self.setup_phase_ms,
            self.peak_setups_per_second,
            self.outstanding_max,
            self.retransmissions
        )?;
        writeln!(
            f,
            "tunnels  {}/{} established, {} failed, at most {} up at once",
            self.tunnels_established,
            self.tunnels_requested,
            self.tunnels_failed,
            self.peak_tunnels_up
        )?;
        writeln!(
            f,
            "sessions {}/{} established, {} failed",
            self.sessions_established, self.sessions_requested, self.sessions_failed
        )?;
        if self.ppp != PppLevel::Off {
            writeln!(
                f,
                "ppp      up at {}: {} sessions IP up, {} duplicate addresses",
                self.ppp, self.sessions_ip_up, self.duplicate_addresses
            )?;
            if self.request_dns {
                let servers: Vec<String> = self.dns_servers.iter().map(|a| a.to_string()).collect();
                writeln!(
                    f,
                    "dns      {} sessions given DNS servers: {}",
                    self.sessions_with_dns,
                    if servers.is_empty() {
                        "none".to_string()
                    } else {
                        servers.join(", ")
                    }
                )?;
            }
        }
        writeln!(
            f,
            "echoes   {} sent, {} answered ({} replies, {} looped back)",
            self.echo_requests_sent,
            self.echo_answered(),
            self.echo_replies,
            self.echo_looped_back
        )?;
        if self.traffic_rate > 0.0 {
            writeln!(
                f,
                "traffic  {} ICMP echoes sent ({}/s per session), {} received, {} lost \
                 ({:.2} %), {} unexpected",
                self.traffic_sent,
                self.traffic_rate,
                self.traffic_received,
                self.traffic_lost,
                self.traffic_loss_pct,
                self.traffic_unexpected
            )?;
        }
        write!(
            f,
            "teardown {}/{} tunnels closed cleanly",
            self.tunnels_closed_cleanly, self.tunnels_established
        )?;
        if !self.given_up.is_empty() {
            write!(
                f,
                "; given up unacknowledged (§5.8): {}",
                self.given_up_text()
            )?;
        }
        if self.teardown_cut_off > 0 {
            write!(
                f,
                "; {} StopCCNs still unacknowledged when the teardown bound ran out",
                self.teardown_cut_off
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "\n{:<16} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"
        )?;
        let ppp = [
            ("ICCN→LCP opened", &self.lcp_opened),
            ("authentication", &self.authentication),
            ("IPCP opened", &self.ipcp_opened),
            ("IPv6CP opened", &self.ipv6cp_opened),
            ("ICRQ→IP up", &self.icrq_to_ip_up),
        ];
        // IPv6CP only when asked for (`--ipv6`): an empty row would read as a failure.
        let ppp = ppp
            .iter()
            .filter(|(name, p)| {
                self.ppp != PppLevel::Off && (p.count > 0 || !name.starts_with("IPv6CP"))
            })
            .copied();
        let traffic = (self.traffic_rate > 0.0).then_some(("ICMP RTT", &self.traffic_rtt));
        for (name, p) in [
            ("SCCRQ→SCCRP", &self.sccrq_to_sccrp),
            ("tunnel setup", &self.tunnel_setup),
            ("session setup", &self.session_setup),
            ("echo RTT", &self.echo_rtt),
        ]
        .into_iter()
        .chain(ppp)
        .chain(traffic)
        {
            writeln!(
                f,
                "{:<16} {:>8} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                name, p.count, p.p50_ms, p.p90_ms, p.p99_ms, p.p999_ms, p.max_ms
            )?;
        }
        write!(
            f,
            "\n{:<24} {:<21} {:>9} {:>9} {:>9}",
            "endpoint", "address", "tunnels", "sessions", "peak"
        )?;
        for e in &self.endpoints {
            write!(
                f,
                "\n{:<24} {:<21} {:>9} {:>9} {:>9}",
                e.key, e.address, e.tunnels_established, e.sessions_established, e.tunnels_peak
            )?;
        }
        for (why, count) in &self.failures {
            write!(f, "\nfailed   {count} × {why}")?;
        }
        if let Some(hint) = self.replies_elsewhere_hint() {
            write!(f, "\nignored  {hint}")?;
        }
        Ok(())
    }
}
