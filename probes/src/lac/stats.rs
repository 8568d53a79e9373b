//! The run's figures, shared by every initiator of one run (they all live on one thread).
//!
//! The initiators only count and record into histograms here, O(1) per event; percentiles,
//! snapshots and CSV rows are computed by the watcher side ([`Swarm::snapshot`], about ten
//! times a second), off the packet path.
//!
//! What the histograms measure, in run time on the initiator:
//! - `sccrq_to_sccrp`: SCCRQ sent → SCCRP received (the tunnel comes up on our side).
//! - `tunnel_setup`: SCCRQ sent → our SCCCN acknowledged by the peer (its Nr covers the SCCCN,
//!   on a ZLB or on its next message): the peer has the tunnel established too. A peer that
//!   acknowledges with a delayed ZLB (ours waits 100 ms for a message to ride on) adds that
//!   delay. An ack that rides on a message is seen at once; one on a ZLB within
//!   [`ACK_CHECK`](super::ACK_CHECK).
//! - `session_setup`: ICRQ sent → ICRP received (the session comes up on our side and the ICCN
//!   goes out at once).
//! - `echo_rtt`: LCP Echo-Request sent → the Echo-Reply with its identifier on that session, or
//!   our own request looped back by the peer.
//! - With PPP (`--ppp` not off), per phase of each subscriber: `ppp_lcp` ICCN sent → LCP
//!   opened; `ppp_auth` LCP opened → authentication succeeded (only when the LNS asked for
//!   it); `ppp_ipcp` and `ppp_ipv6cp` authentication done → IPCP (IPv6CP) opened;
//!   `icrq_to_ip_up` ICRQ sent → every NCP asked for opened.
//! - `traffic_rtt` (`--traffic-rate`): ICMP Echo Request sent in a session → its Echo Reply
//!   back in that session (the send time rides in the request's data).

use std::cell::{Ref, RefCell, RefMut};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::Path;

use hdrhistogram::Histogram;
use l2tp::time::Instant;
use serde::{Deserialize, Serialize};

use super::pace::Pace;
use super::ppp::PppLevel;
use super::LacReport;
use crate::live::{EndpointLive, LiveSnapshot, Percentiles, PppLive, RunPhase, TrafficLive};
use l2tp::ppp::session::Phase as PppPhase;

/// Per-endpoint setups per second kept for the live view.
const ENDPOINT_SECONDS: usize = 120;

pub(crate) fn histogram() -> Histogram<u64> {
    // 1 µs .. 1 h at 3 significant digits: constant, valid bounds.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds")
}

/// Records a latency in microseconds (clamped into the histogram's range).
pub(crate) fn record(histogram: &mut Histogram<u64>, from: Instant, to: Instant) {
    let us = u64::try_from(to.saturating_duration_since(from).as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(us.clamp(1, 3_600_000_000));
}

pub fn percentiles(histogram: &Histogram<u64>) -> Percentiles {
    if histogram.is_empty() {
        return Percentiles::default();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    Percentiles {
        count: histogram.len(),
        p50_ms: ms(histogram.value_at_quantile(0.5)),
        p90_ms: ms(histogram.value_at_quantile(0.9)),
        p99_ms: ms(histogram.value_at_quantile(0.99)),
        p999_ms: ms(histogram.value_at_quantile(0.999)),
        max_ms: ms(histogram.max()),
    }
}

/// `lost` of `sent` in percent (0 when nothing was sent).
pub fn loss_pct(lost: u64, sent: u64) -> f64 {
    if sent == 0 {
        0.0
    } else {
        lost as f64 * 100.0 / sent as f64
    }
}

fn second_of(t: Instant) -> usize {
    usize::try_from(t.as_micros() / 1_000_000).unwrap_or(usize::MAX)
}

fn bump(per_second: &mut Vec<u64>, second: usize) {
    // Bounded by the run's duration (at most a day of seconds, checked by the caller's flags).
    if per_second.len() <= second {
        per_second.resize(second + 1, 0);
    }
    if let Some(slot) = per_second.get_mut(second) {
        *slot += 1;
    }
}

/// One LNS as the initiators see it (see [`EndpointLive`]).
#[derive(Debug, Clone, Default)]
pub struct EndpointTrack {
    pub key: String,
    pub address: String,
    pub tunnels: u64,
    pub sessions: u64,
    pub tunnels_total: u64,
    pub sessions_total: u64,
    pub tunnels_peak: u64,
    first_second: usize,
    per_second: VecDeque<u64>,
}

impl EndpointTrack {
    fn setup(&mut self, second: usize) {
        if self.per_second.is_empty() {
            self.first_second = second;
        }
        let last = self.first_second + self.per_second.len();
        if second >= last {
            for _ in last..=second {
                self.per_second.push_back(0);
            }
        }
        while self.per_second.len() > ENDPOINT_SECONDS {
            self.per_second.pop_front();
            self.first_second += 1;
        }
        if let Some(slot) = second
            .checked_sub(self.first_second)
            .and_then(|i| self.per_second.get_mut(i))
        {
            *slot += 1;
        }
    }

    /// Tunnels that came up with it in `second` (0 once the second is older than the window).
    pub fn setups_in(&self, second: usize) -> u64 {
        second
            .checked_sub(self.first_second)
            .and_then(|i| self.per_second.get(i))
            .copied()
            .unwrap_or(0)
    }

    fn live(&self, now_second: usize) -> EndpointLive {
        // Seconds with no setup up to now count as zeros.
        let mut setups: Vec<u64> = self.per_second.iter().copied().collect();
        let end = self.first_second + setups.len();
        if now_second > end && !setups.is_empty() {
            setups.extend(std::iter::repeat_n(0, now_second - end));
        }
        let skip = setups.len().saturating_sub(ENDPOINT_SECONDS);
        EndpointLive {
            key: self.key.clone(),
            address: self.address.clone(),
            tunnels: self.tunnels,
            sessions: self.sessions,
            tunnels_total: self.tunnels_total,
            setups_per_second: setups.split_off(skip),
        }
    }
}

/// One endpoint in the final report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EndpointReport {
    pub key: String,
    pub address: String,
    pub tunnels_established: u64,
    pub sessions_established: u64,
    /// Most tunnels up with it at once.
    pub tunnels_peak: u64,
}

/// An operator's request to end one of our tunnels or sessions (`lac --control`). IDs are our
/// own (the Assigned Tunnel / Session ID we sent); only an established one is ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// A StopCCN with this result code.
    Tunnel { tunnel: u16, result: u16 },
    /// A CDN with this result code.
    Session {
        tunnel: u16,
        session: u16,
        result: u16,
    },
}

/// The counters and histograms of the whole run.
#[derive(Debug)]
pub struct Stats {
    pub tunnels_requested: u64,
    pub sessions_requested: u64,
    pub tunnels_started: u64,
    pub tunnels_up: u64,
    pub tunnels_up_peak: u64,
    pub tunnels_established: u64,
    pub tunnels_failed: u64,
    pub sessions_up: u64,
    pub sessions_established: u64,
    pub sessions_failed: u64,
    pub retransmissions: u64,
    /// Replies to our SCCRQs from addresses other than the target's, dropped (no
    /// `--any-source`): how many came from each.
    pub replies_elsewhere: BTreeMap<Ipv4Addr, u64>,
    pub echo_sent: u64,
    pub echo_replies: u64,
    pub echo_looped_back: u64,
    pub tunnels_closed_cleanly: u64,
    /// Ended by the operator (see [`Termination`]).
    pub tunnels_terminated: u64,
    pub sessions_terminated: u64,
    /// §5.8 give-ups, by the message that went unacknowledged ("StopCCN", "CDN", …).
    pub given_up: BTreeMap<String, u64>,
    /// Tunnels whose StopCCN was neither acknowledged nor given up when the drain ran out.
    pub teardown_cut_off: u64,
    pub failures: BTreeMap<String, u64>,
    pub sccrq_to_sccrp: Histogram<u64>,
    pub tunnel_setup: Histogram<u64>,
    pub session_setup: Histogram<u64>,
    pub echo_rtt: Histogram<u64>,
    /// Subscribers started over the run: the `{n}` of the next user name.
    pub subscribers: u64,
    pub ppp_lcp: Histogram<u64>,
    pub ppp_auth: Histogram<u64>,
    pub ppp_ipcp: Histogram<u64>,
    pub ppp_ipv6cp: Histogram<u64>,
    pub icrq_to_ip_up: Histogram<u64>,
    /// Sessions with every NCP opened, now and over the run.
    pub sessions_ip_up: u64,
    pub ip_up_total: u64,
    /// Sessions IP up per whole second of the run.
    pub ip_up_per_second: Vec<u64>,
    /// IPCP addresses of the live sessions, with how many hold each (more than one: an error).
    live_addresses: HashMap<Ipv4Addr, u32>,
    pub duplicate_addresses: u64,
    pub endpoints: Vec<EndpointTrack>,
    /// Endpoint key → index in `endpoints`.
    endpoint_index: BTreeMap<String, usize>,
    /// SCCRQs sent per whole second of the run.
    pub started_per_second: Vec<u64>,
    /// Tunnels up (SCCRP received) per whole second of the run.
    pub setups_per_second: Vec<u64>,
    pub first_sccrq: Option<Instant>,
    /// When the last tunnel or session came up.
    pub last_up: Instant,
    /// Each initiator's phase (see [`LiveSnapshot::phase`]).
    pub phases: Vec<RunPhase>,
    /// Live subscribers in LCP, authentication, IPCP (network) and IP up, now.
    pub ppp_phases: [u64; 4],
    /// Failures whose reason is PPP's (also counted in `failures`).
    pub ppp_failures: u64,
    /// Sessions whose IPCP gave DNS servers, and those servers (at most [`MAX_DNS_KEPT`]).
    pub sessions_with_dns: u64,
    pub dns_servers: std::collections::BTreeSet<Ipv4Addr>,
    /// The subscribers ask for DNS servers (`--dns`).
    pub request_dns: bool,
    /// Echo Requests per second per session (`--traffic-rate`; 0: none).
    pub traffic_rate: f64,
    pub traffic_sent: u64,
    /// Echo Replies matched to an unanswered request of their session.
    pub traffic_received: u64,
    /// Requests sent and neither answered nor given up yet.
    pub traffic_in_flight: u64,
    /// Echo Replies that answer no unanswered request (late, duplicated or foreign).
    pub traffic_unexpected: u64,
    pub traffic_rtt: Histogram<u64>,
}

impl Stats {
    fn new(initiators: usize) -> Stats {
        Stats {
            tunnels_requested: 0,
            sessions_requested: 0,
            tunnels_started: 0,
            tunnels_up: 0,
            tunnels_up_peak: 0,
            tunnels_established: 0,
            tunnels_failed: 0,
            sessions_up: 0,
            sessions_established: 0,
            sessions_failed: 0,
            retransmissions: 0,
            replies_elsewhere: BTreeMap::new(),
            echo_sent: 0,
            echo_replies: 0,
            echo_looped_back: 0,
            tunnels_closed_cleanly: 0,
            tunnels_terminated: 0,
            given_up: BTreeMap::new(),
            teardown_cut_off: 0,
            sessions_terminated: 0,
            failures: BTreeMap::new(),
            sccrq_to_sccrp: histogram(),
            tunnel_setup: histogram(),
            session_setup: histogram(),
            echo_rtt: histogram(),
            subscribers: 0,
            ppp_lcp: histogram(),
            ppp_auth: histogram(),
            ppp_ipcp: histogram(),
            ppp_ipv6cp: histogram(),
            icrq_to_ip_up: histogram(),
            sessions_ip_up: 0,
            ip_up_total: 0,
            ip_up_per_second: Vec::new(),
            live_addresses: HashMap::new(),
            duplicate_addresses: 0,
            endpoints: Vec::new(),
            endpoint_index: BTreeMap::new(),
            started_per_second: Vec::new(),
            setups_per_second: Vec::new(),
            first_sccrq: None,
            last_up: Instant::ZERO,
            phases: vec![RunPhase::Connecting; initiators.max(1)],
            ppp_phases: [0; 4],
            ppp_failures: 0,
            sessions_with_dns: 0,
            dns_servers: std::collections::BTreeSet::new(),
            request_dns: false,
            traffic_rate: 0.0,
            traffic_sent: 0,
            traffic_received: 0,
            traffic_in_flight: 0,
            traffic_unexpected: 0,
            traffic_rtt: histogram(),
        }
    }

    /// The names of the run's histograms, as in the JSON report and the interval log's tags.
    pub const HISTOGRAM_TAGS: [&'static str; 10] = [
        "sccrq_to_sccrp",
        "tunnel_setup",
        "session_setup",
        "echo_rtt",
        "lcp_opened",
        "authentication",
        "ipcp_opened",
        "ipv6cp_opened",
        "icrq_to_ip_up",
        "traffic_rtt",
    ];

    /// Every histogram of the run with its name ([`Stats::HISTOGRAM_TAGS`], in that order).
    pub fn histograms(&self) -> [(&'static str, &Histogram<u64>); 10] {
        let [a, b, c, d, e, f, g, h, i, j] = Stats::HISTOGRAM_TAGS;
        [
            (a, &self.sccrq_to_sccrp),
            (b, &self.tunnel_setup),
            (c, &self.session_setup),
            (d, &self.echo_rtt),
            (e, &self.ppp_lcp),
            (f, &self.ppp_auth),
            (g, &self.ppp_ipcp),
            (h, &self.ppp_ipv6cp),
            (i, &self.icrq_to_ip_up),
            (j, &self.traffic_rtt),
        ]
    }

    #[cfg(test)]
    pub(crate) fn for_tests() -> Stats {
        Stats::new(1)
    }

    /// A failure whose reason is PPP's.
    pub fn fail_ppp(&mut self, why: String) {
        self.ppp_failures += 1;
        self.fail(why);
    }

    /// A subscriber moved from the phase in `slot` to `to` (`None`: gone, or terminating).
    pub(crate) fn ppp_phase(&mut self, slot: &mut Option<PppPhase>, to: Option<PppPhase>) {
        let index = |phase: Option<PppPhase>| match phase? {
            PppPhase::Establish => Some(0),
            PppPhase::Authenticate => Some(1),
            PppPhase::Network => Some(2),
            PppPhase::Open => Some(3),
            PppPhase::Dead | PppPhase::Terminate => None,
        };
        let to = to.filter(|_| index(to).is_some());
        if let Some(count) = index(*slot).and_then(|i| self.ppp_phases.get_mut(i)) {
            *count = count.saturating_sub(1);
        }
        if let Some(count) = index(to).and_then(|i| self.ppp_phases.get_mut(i)) {
            *count += 1;
        }
        *slot = to;
    }

    /// Requests lost so far: those given up, not those still within their grace.
    pub fn traffic_lost_live(&self) -> u64 {
        (self.traffic_sent)
            .saturating_sub(self.traffic_received)
            .saturating_sub(self.traffic_in_flight)
    }

    fn ppp_live(&self) -> PppLive {
        let [establish, authenticate, network, ip_up] = self.ppp_phases;
        PppLive {
            establish,
            authenticate,
            network,
            ip_up,
            ip_up_total: self.ip_up_total,
            failures: self.ppp_failures,
            lcp_opened: percentiles(&self.ppp_lcp),
            authentication: percentiles(&self.ppp_auth),
            ipcp_opened: percentiles(&self.ppp_ipcp),
            icrq_to_ip_up: percentiles(&self.icrq_to_ip_up),
        }
    }

    fn traffic_live(&self) -> TrafficLive {
        let lost = self.traffic_lost_live();
        TrafficLive {
            rate: self.traffic_rate,
            sent: self.traffic_sent,
            received: self.traffic_received,
            lost,
            loss_pct: loss_pct(lost, self.traffic_sent),
            rtt: percentiles(&self.traffic_rtt),
        }
    }

    pub fn fail(&mut self, why: String) {
        *self.failures.entry(why).or_default() += 1;
    }

    pub(crate) fn tunnel_started(&mut self, now: Instant) {
        self.tunnels_started += 1;
        self.first_sccrq.get_or_insert(now);
        bump(&mut self.started_per_second, second_of(now));
    }

    /// A tunnel came up with the endpoint `key` (at `address`); returns its index.
    pub(crate) fn tunnel_up(&mut self, now: Instant, key: String, address: String) -> usize {
        self.tunnels_up += 1;
        self.tunnels_up_peak = self.tunnels_up_peak.max(self.tunnels_up);
        self.tunnels_established += 1;
        self.last_up = self.last_up.max(now);
        let second = second_of(now);
        bump(&mut self.setups_per_second, second);
        let index = match self.endpoint_index.get(&key) {
            Some(&index) => index,
            None => {
                let index = self.endpoints.len();
                self.endpoints.push(EndpointTrack {
                    key: key.clone(),
                    address: address.clone(),
                    ..EndpointTrack::default()
                });
                self.endpoint_index.insert(key, index);
                index
            }
        };
        if let Some(endpoint) = self.endpoints.get_mut(index) {
            endpoint.tunnels += 1;
            endpoint.tunnels_total += 1;
            endpoint.tunnels_peak = endpoint.tunnels_peak.max(endpoint.tunnels);
            endpoint.address = address;
            endpoint.setup(second);
        }
        index
    }

    pub(crate) fn tunnel_gone(&mut self, endpoint: usize) {
        self.tunnels_up = self.tunnels_up.saturating_sub(1);
        if let Some(e) = self.endpoints.get_mut(endpoint) {
            e.tunnels = e.tunnels.saturating_sub(1);
        }
    }

    pub(crate) fn session_up(&mut self, now: Instant, endpoint: usize) {
        self.sessions_up += 1;
        self.sessions_established += 1;
        self.last_up = self.last_up.max(now);
        if let Some(e) = self.endpoints.get_mut(endpoint) {
            e.sessions += 1;
            e.sessions_total += 1;
        }
    }

    pub(crate) fn session_gone(&mut self, endpoint: usize) {
        self.sessions_up = self.sessions_up.saturating_sub(1);
        if let Some(e) = self.endpoints.get_mut(endpoint) {
            e.sessions = e.sessions.saturating_sub(1);
        }
    }

    pub fn echo_answered(&self) -> u64 {
        self.echo_replies + self.echo_looped_back
    }

    /// A session has every NCP opened.
    pub(crate) fn ip_up(&mut self, now: Instant) {
        self.sessions_ip_up += 1;
        self.ip_up_total += 1;
        self.last_up = self.last_up.max(now);
        bump(&mut self.ip_up_per_second, second_of(now));
    }

    /// A live session got `address`; false (and counted) when another live session has it.
    pub(crate) fn address_up(&mut self, address: Ipv4Addr) -> bool {
        let holders = self.live_addresses.entry(address).or_default();
        *holders += 1;
        if *holders > 1 {
            self.duplicate_addresses += 1;
            return false;
        }
        true
    }

    pub(crate) fn address_gone(&mut self, address: Ipv4Addr) {
        if let Some(holders) = self.live_addresses.get_mut(&address) {
            *holders = holders.saturating_sub(1);
            if *holders == 0 {
                self.live_addresses.remove(&address);
            }
        }
    }

    /// The run's phase: the least advanced of the initiators'.
    fn phase(&self) -> RunPhase {
        self.phases.iter().copied().min().unwrap_or(RunPhase::Done)
    }
}

/// DNS servers the report keeps: a handful is what an LNS hands out; more is a bug to see,
/// not to store.
pub const MAX_DNS_KEPT: usize = 16;

/// Everything the initiators of one run share: the pace and the figures.
#[derive(Debug)]
pub struct Swarm {
    pub pace: Pace,
    stats: RefCell<Stats>,
    /// The operator's `terminate-…` requests, in order; each initiator keeps how far it read.
    terminations: RefCell<Vec<Termination>>,
    /// What the report says of PPP (every initiator of a run has the same plan).
    ppp_level: PppLevel,
}

impl Swarm {
    pub fn new(pace: Pace) -> Swarm {
        let stats = Stats::new(pace.config().initiators);
        Swarm {
            pace,
            stats: RefCell::new(stats),
            terminations: RefCell::new(Vec::new()),
            ppp_level: PppLevel::Off,
        }
    }

    /// A run whose sessions do PPP up to `level`.
    pub fn with_ppp(mut self, level: PppLevel) -> Swarm {
        self.ppp_level = level;
        self
    }

    /// Asks every initiator to end `what` if it holds it (at its next housekeeping, within
    /// 50 ms).
    pub fn terminate(&self, what: Termination) {
        self.terminations.borrow_mut().push(what);
    }

    /// The termination requests from index `from` on.
    pub(crate) fn terminations_since(&self, from: usize) -> Vec<Termination> {
        self.terminations
            .borrow()
            .get(from..)
            .map(<[Termination]>::to_vec)
            .unwrap_or_default()
    }

    /// The figures; never hold the borrow across an await or a call into an initiator.
    pub fn stats(&self) -> Ref<'_, Stats> {
        self.stats.borrow()
    }

    pub(crate) fn stats_mut(&self) -> RefMut<'_, Stats> {
        self.stats.borrow_mut()
    }

    /// The run at `now` (run time) for the watchers.
    pub fn snapshot(&self, now: Instant) -> LiveSnapshot {
        let s = self.stats.borrow();
        let control = self.pace.control();
        let second = second_of(now);
        let mut endpoints: Vec<(&String, &usize)> = s.endpoint_index.iter().collect();
        endpoints.sort_by(|a, b| a.0.cmp(b.0));
        LiveSnapshot {
            elapsed_s: now.as_micros() as f64 / 1e6,
            phase: s.phase(),
            paused: control.paused(),
            target_rate: self.pace.target_rate(now),
            tunnels_requested: s.tunnels_requested,
            tunnels_started: s.tunnels_started,
            outstanding: self.pace.outstanding() as u64,
            tunnels_up: s.tunnels_up,
            tunnels_established: s.tunnels_established,
            tunnels_failed: s.tunnels_failed,
            sessions_requested: s.sessions_requested,
            sessions_up: s.sessions_up,
            sessions_established: s.sessions_established,
            sessions_failed: s.sessions_failed,
            retransmissions: s.retransmissions,
            replies_elsewhere: s.replies_elsewhere.values().sum(),
            replies_elsewhere_from: (s.replies_elsewhere.keys())
                .map(|a| a.to_string())
                .collect(),
            echo_sent: s.echo_sent,
            echo_answered: s.echo_answered(),
            endpoints: endpoints
                .into_iter()
                .filter_map(|(_, &i)| s.endpoints.get(i))
                .map(|e| e.live(second))
                .collect(),
            sccrq_to_sccrp: percentiles(&s.sccrq_to_sccrp),
            tunnel_setup: percentiles(&s.tunnel_setup),
            session_setup: percentiles(&s.session_setup),
            echo_rtt: percentiles(&s.echo_rtt),
            failures: s.failures.clone(),
            ppp: s.ppp_live(),
            traffic: s.traffic_live(),
        }
    }

    /// The final summary.
    pub fn report(&self, target: &str, elapsed: Instant) -> LacReport {
        let s = self.stats.borrow();
        let phase = s.first_sccrq.map_or(std::time::Duration::ZERO, |first| {
            s.last_up.saturating_duration_since(first)
        });
        let mut endpoints: Vec<EndpointReport> = s
            .endpoints
            .iter()
            .map(|e| EndpointReport {
                key: e.key.clone(),
                address: e.address.clone(),
                tunnels_established: e.tunnels_total,
                sessions_established: e.sessions_total,
                tunnels_peak: e.tunnels_peak,
            })
            .collect();
        endpoints.sort_by(|a, b| a.key.cmp(&b.key));
        let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        LacReport {
            target: target.to_string(),
            tunnels_requested: to_usize(s.tunnels_requested),
            tunnels_established: to_usize(s.tunnels_established),
            tunnels_failed: to_usize(s.tunnels_failed),
            sessions_requested: to_usize(s.sessions_requested),
            sessions_established: to_usize(s.sessions_established),
            sessions_failed: to_usize(s.sessions_failed),
            failures: s.failures.clone(),
            sccrq_to_sccrp: percentiles(&s.sccrq_to_sccrp),
            tunnel_setup: percentiles(&s.tunnel_setup),
            session_setup: percentiles(&s.session_setup),
            echo_rtt: percentiles(&s.echo_rtt),
            ppp: self.ppp_level,
            sessions_ip_up: to_usize(s.ip_up_total),
            duplicate_addresses: to_usize(s.duplicate_addresses),
            lcp_opened: percentiles(&s.ppp_lcp),
            authentication: percentiles(&s.ppp_auth),
            ipcp_opened: percentiles(&s.ppp_ipcp),
            ipv6cp_opened: percentiles(&s.ppp_ipv6cp),
            icrq_to_ip_up: percentiles(&s.icrq_to_ip_up),
            echo_requests_sent: s.echo_sent,
            echo_replies: s.echo_replies,
            echo_looped_back: s.echo_looped_back,
            tunnels_closed_cleanly: to_usize(s.tunnels_closed_cleanly),
            tunnels_terminated: s.tunnels_terminated,
            given_up: s.given_up.clone(),
            teardown_cut_off: s.teardown_cut_off,
            sessions_terminated: s.sessions_terminated,
            setup_phase_ms: phase.as_secs_f64() * 1000.0,
            tunnel_setups_per_second: if phase.is_zero() {
                0.0
            } else {
                s.tunnels_established as f64 / phase.as_secs_f64()
            },
            peak_setups_per_second: s.setups_per_second.iter().copied().max().unwrap_or(0),
            peak_tunnels_up: s.tunnels_up_peak,
            outstanding_max: self.pace.outstanding_max() as u64,
            retransmissions: s.retransmissions,
            elapsed_s: elapsed.as_micros() as f64 / 1e6,
            endpoints,
            traffic_rate: s.traffic_rate,
            traffic_sent: s.traffic_sent,
            // After the grace at the end, whatever is unanswered is lost.
            traffic_received: s.traffic_received,
            traffic_lost: s.traffic_sent.saturating_sub(s.traffic_received),
            traffic_loss_pct: loss_pct(
                s.traffic_sent.saturating_sub(s.traffic_received),
                s.traffic_sent,
            ),
            traffic_unexpected: s.traffic_unexpected,
            traffic_rtt: percentiles(&s.traffic_rtt),
            ppp_failures: s.ppp_failures,
            request_dns: s.request_dns,
            sessions_with_dns: s.sessions_with_dns,
            dns_servers: s.dns_servers.iter().copied().collect(),
            replies_from_other_addresses: (s.replies_elsewhere.iter())
                .map(|(addr, n)| (addr.to_string(), *n))
                .collect(),
            shard: None,
        }
    }
}

/// One CSV row: the run at the end of one whole second.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SecondRow {
    /// The second of the run this row closes (0: the first).
    pub second: u64,
    pub phase: RunPhase,
    pub target_rate: f64,
    pub tunnels_started: u64,
    pub tunnels_up: u64,
    pub tunnels_established: u64,
    pub tunnels_failed: u64,
    pub sessions_up: u64,
    pub sessions_established: u64,
    pub sessions_failed: u64,
    /// SCCRQs first sent in this second.
    pub started_this_second: u64,
    /// Tunnels up (SCCRP received) in this second.
    pub setups_this_second: u64,
    /// SCCRQs without an answer when the row was taken.
    pub outstanding: u64,
    /// The most SCCRQs without an answer at once since the previous row.
    pub outstanding_peak: u64,
    pub retransmissions: u64,
    pub echo_sent: u64,
    pub echo_answered: u64,
    pub sccrq_to_sccrp_p50_ms: f64,
    pub sccrq_to_sccrp_p99_ms: f64,
    pub tunnel_setup_p50_ms: f64,
    pub tunnel_setup_p99_ms: f64,
    pub session_setup_p50_ms: f64,
    pub session_setup_p99_ms: f64,
    pub echo_rtt_p50_ms: f64,
    pub echo_rtt_p99_ms: f64,
    /// Sessions that reached IP up (every NCP opened) in this second.
    pub ip_up_this_second: u64,
    /// Sessions IP up when the row was taken.
    pub sessions_ip_up: u64,
    pub ip_up_total: u64,
    pub icrq_to_ip_up_p50_ms: f64,
    pub icrq_to_ip_up_p99_ms: f64,
    /// ICMP Echo Requests sent in the sessions so far (`--traffic-rate`).
    pub traffic_sent: u64,
    pub traffic_received: u64,
    /// Requests given up so far (unanswered past their grace).
    pub traffic_lost: u64,
    pub traffic_loss_pct: f64,
    pub traffic_rtt_p50_ms: f64,
    pub traffic_rtt_p90_ms: f64,
    pub traffic_rtt_p99_ms: f64,
}

impl Swarm {
    /// The row closing `second`, from a snapshot taken just after it.
    pub fn second_row(&self, second: u64, snapshot: &LiveSnapshot) -> SecondRow {
        let s = self.stats.borrow();
        let at = |v: &Vec<u64>| {
            usize::try_from(second)
                .ok()
                .and_then(|i| v.get(i))
                .copied()
                .unwrap_or(0)
        };
        let ip_up = percentiles(&s.icrq_to_ip_up);
        SecondRow {
            second,
            phase: snapshot.phase,
            target_rate: snapshot.target_rate,
            tunnels_started: snapshot.tunnels_started,
            tunnels_up: snapshot.tunnels_up,
            tunnels_established: snapshot.tunnels_established,
            tunnels_failed: snapshot.tunnels_failed,
            sessions_up: snapshot.sessions_up,
            sessions_established: snapshot.sessions_established,
            sessions_failed: snapshot.sessions_failed,
            started_this_second: at(&s.started_per_second),
            setups_this_second: at(&s.setups_per_second),
            outstanding: snapshot.outstanding,
            outstanding_peak: self.pace.take_outstanding_peak() as u64,
            retransmissions: snapshot.retransmissions,
            echo_sent: snapshot.echo_sent,
            echo_answered: snapshot.echo_answered,
            sccrq_to_sccrp_p50_ms: snapshot.sccrq_to_sccrp.p50_ms,
            sccrq_to_sccrp_p99_ms: snapshot.sccrq_to_sccrp.p99_ms,
            tunnel_setup_p50_ms: snapshot.tunnel_setup.p50_ms,
            tunnel_setup_p99_ms: snapshot.tunnel_setup.p99_ms,
            session_setup_p50_ms: snapshot.session_setup.p50_ms,
            session_setup_p99_ms: snapshot.session_setup.p99_ms,
            echo_rtt_p50_ms: snapshot.echo_rtt.p50_ms,
            echo_rtt_p99_ms: snapshot.echo_rtt.p99_ms,
            ip_up_this_second: at(&s.ip_up_per_second),
            sessions_ip_up: s.sessions_ip_up,
            ip_up_total: s.ip_up_total,
            icrq_to_ip_up_p50_ms: ip_up.p50_ms,
            icrq_to_ip_up_p99_ms: ip_up.p99_ms,
            traffic_sent: snapshot.traffic.sent,
            traffic_received: snapshot.traffic.received,
            traffic_lost: snapshot.traffic.lost,
            traffic_loss_pct: snapshot.traffic.loss_pct,
            traffic_rtt_p50_ms: snapshot.traffic.rtt.p50_ms,
            traffic_rtt_p90_ms: snapshot.traffic.rtt.p90_ms,
            traffic_rtt_p99_ms: snapshot.traffic.rtt.p99_ms,
        }
    }
}

/// One endpoint in one second of the run (`lac --endpoint-csv`): the dispatch as the
/// initiators saw it, second by second.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EndpointSecondRow {
    pub second: u64,
    /// The report's key: the SCCRP's Host Name, or its source address.
    pub endpoint: String,
    pub tunnels_up: u64,
    pub sessions_up: u64,
    pub tunnels_established: u64,
    pub setups_this_second: u64,
}

impl Swarm {
    /// Every endpoint seen so far, as of the end of `second`.
    pub fn endpoint_rows(&self, second: u64) -> Vec<EndpointSecondRow> {
        let s = self.stats.borrow();
        let at = usize::try_from(second).unwrap_or(usize::MAX);
        let mut rows: Vec<EndpointSecondRow> = s
            .endpoints
            .iter()
            .map(|e| EndpointSecondRow {
                second,
                endpoint: e.key.clone(),
                tunnels_up: e.tunnels,
                sessions_up: e.sessions,
                tunnels_established: e.tunnels_total,
                setups_this_second: e.setups_in(at),
            })
            .collect();
        rows.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
        rows
    }
}

/// A CSV of rows written as the run goes: a header row, then one row per call (the
/// per-second [`SecondRow`]s, or [`EndpointSecondRow`]s).
pub struct CsvSeries {
    writer: csv::Writer<File>,
}

impl CsvSeries {
    pub fn create(path: &Path) -> Result<CsvSeries, csv::Error> {
        Ok(CsvSeries {
            writer: csv::Writer::from_path(path)?,
        })
    }

    pub fn write<T: Serialize>(&mut self, row: &T) -> Result<(), csv::Error> {
        self.writer.serialize(row)?;
        // A row a second: flushing each keeps the file readable while the run goes on.
        self.writer.flush()?;
        Ok(())
    }
}
