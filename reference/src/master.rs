//! The cluster master (the patent's 154 / 254), sans-IO.
//!
//! The master owns the cluster address. For each SCCRQ that reaches it, it picks an endpoint
//! (least-load from the endpoints' load reports, round-robin or leaky bucket), rewrites only
//! the IP destination to that endpoint's LAN address, and has its runner send the packet on
//! the LAN; the source stays the initiator's, so the endpoint answers the initiator itself.
//! Every other packet to the cluster address (LACs such as xl2tpd keep sending SCCCN, ICRQ and
//! data to the address they dialled) goes to the endpoint whose reported Tunnel ID blocks hold
//! the L2TP header's Tunnel ID.
//!
//! Choices this module makes (see `Policy` and `Master::deactivate` for the details):
//! - least-load compares load relative to capacity, and no policy sends an SCCRQ to an endpoint
//!   that is full by its own report;
//! - the leaky bucket drops (as `NoCapacity`) when no endpoint has a token, and lets the
//!   initiator's retransmission be the queue;
//! - a retransmitted SCCRQ goes where the first went for `dispatch_memory` after the first,
//!   unless that endpoint has since gone out of service (its reports stopped) or been
//!   deactivated: the initiator retransmits because it never had an SCCRP, so no tunnel of
//!   its exists anywhere yet and the SCCRQ is placed anew (`sccrq_redispatched`). A drained
//!   endpoint keeps its retransmissions: it is alive and holds the half-open tunnel, and a
//!   second endpoint would only open another one that the initiator could answer too;
//! - packets for the Tunnel IDs of an endpoint out of service are dropped
//!   (`EndpointOutOfService`), not sent into the void; they flow again with its next report.
//!   A deactivated endpoint that still reports keeps its tunnels' packets (see `deactivate`);
//! - the dispatch memory holds at most `max_remembered` choices; past that the oldest go first,
//!   counted (`remembered_evicted`) and warned about at most every ten seconds;
//! - fragments are dropped: only the first carries the Tunnel ID, and the master does not
//!   reassemble.

use core::time::Duration;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};

use l2tp::ip::{self, Ipv4Udp};
use l2tp::time::Instant;
use l2tp::wire::avp::Avp;
use l2tp::wire::{Header, HeaderRepr};
use serde::{Deserialize, Serialize};

use crate::cluster::{self, EndpointState, ReportAck, ReportError, ViewEntry};
use crate::takeover::Holder;
use crate::throttle::Throttle;

/// The L2TP port the cluster address listens on (RFC 2661 §8.1).
pub const L2TP_PORT: u16 = 1701;
/// Endpoints report once a second; three missed reports take one out of service.
pub const DEFAULT_REPORT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longer than an initiator's whole SCCRQ retransmission cycle (RFC 2661 §5.8 suggests five
/// retries with the interval capped at 8 s: about 30 s).
pub const DEFAULT_DISPATCH_MEMORY: Duration = Duration::from_secs(60);
/// Acks waiting for the runner; it takes each right after the report, so this only bounds a
/// runner that does not.
const MAX_PENDING_ACKS: usize = 1024;
/// A flood of SCCRQs from forged sources must not grow the dispatch memory without bound; past
/// this many the oldest choices are forgotten first.
pub const MAX_REMEMBERED_DISPATCHES: usize = 1 << 20;

/// How the master picks an endpoint for a new SCCRQ. Every policy skips endpoints that are not
/// in service and endpoints that are full (reported tunnels plus SCCRQs sent since that report
/// reach the reported capacity).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Policy {
    /// The patent's preferred policy. Load is (reported tunnels + SCCRQs dispatched since that
    /// report) / capacity: relative, so that endpoints of unequal size fill to the same share
    /// (with equal capacities it is plain tunnel count). Counting the dispatches since the last
    /// report keeps a burst between two reports from piling onto one endpoint. Ties go to the
    /// next endpoint in rotation (name order), so equal endpoints take turns.
    #[default]
    LeastLoad,
    /// Each SCCRQ to the next endpoint in name order.
    RoundRobin,
    /// A token bucket per endpoint: `burst` tokens at most, refilled at `rate` per second, one
    /// per SCCRQ. The endpoint with the most tokens gets the SCCRQ (ties in rotation); with no
    /// token anywhere the SCCRQ is dropped as `NoCapacity` and the initiator's retransmission
    /// (1 s later, then backing off) tries again. Queueing here would only add a second,
    /// unbounded buffer in front of the one the initiator already keeps.
    LeakyBucket { rate: f64, burst: u32 },
}

/// How long an SCCRQ may take from the master to the endpoint's report of it (LAN transit and
/// the endpoint's queue): dispatches this recent stay counted past a report.
pub const REPORT_LAG: Duration = Duration::from_millis(100);

/// Dispatch times kept per endpoint for [`REPORT_LAG`]; bounded so a flood cannot grow them.
const MAX_RECENT: usize = 1 << 16;

#[derive(Debug, Clone)]
pub struct MasterConfig {
    pub cluster_addr: Ipv4Addr,
    pub policy: Policy,
    /// No report for this long: the endpoint is out of service and gets no new SCCRQs.
    pub report_timeout: Duration,
    /// The key load reports are sealed with (`cluster::seal`).
    pub key: Vec<u8>,
    /// How long an SCCRQ's choice is remembered, from its first dispatch, for retransmissions.
    pub dispatch_memory: Duration,
    /// The master's name in its report acks (`crate::takeover`).
    pub name: String,
    /// The sequence of the first ack; wall-clock microseconds keep it rising across restarts.
    pub first_ack_sequence: u64,
    /// Most SCCRQ choices remembered at once (at least 1); the oldest are forgotten first.
    pub max_remembered: usize,
}

impl MasterConfig {
    /// Least-load, the default timeouts.
    pub fn new(cluster_addr: Ipv4Addr, key: impl Into<Vec<u8>>) -> MasterConfig {
        MasterConfig {
            cluster_addr,
            policy: Policy::default(),
            report_timeout: DEFAULT_REPORT_TIMEOUT,
            key: key.into(),
            dispatch_memory: DEFAULT_DISPATCH_MEMORY,
            name: "master".to_string(),
            first_ack_sequence: 1,
            max_remembered: MAX_REMEMBERED_DISPATCHES,
        }
    }
}

/// What to do with one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send the packet (its destination already rewritten in place) to `to` on the LAN. The
    /// datagram is the first IPv4 Total Length bytes of the buffer; anything after is link
    /// padding the runner leaves behind.
    Forward {
        endpoint: String,
        to: Ipv4Addr,
    },
    Drop(DropReason),
}

/// Why a packet was not forwarded. Each is counted in `MasterStatus::drops`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Not a whole IPv4 packet, a UDP header that does not fit, an L2TP header that does not
    /// parse, or an SCCRQ without a readable Assigned Tunnel ID.
    Malformed,
    NotUdp,
    /// Only the first fragment carries the Tunnel ID, and the master does not reassemble.
    Fragment,
    NotClusterAddress,
    NotL2tpPort,
    /// An SCCRQ, and no endpoint is in service.
    NoEndpoint,
    /// An SCCRQ, and every endpoint in service is full or (leaky bucket) out of tokens.
    NoCapacity,
    /// Not an SCCRQ, and no endpoint's blocks hold its Tunnel ID.
    UnknownTunnel,
    /// Not an SCCRQ, and the endpoint holding its Tunnel ID is out of service (no report for
    /// `report_timeout`): it is presumed gone, so its packets are not forwarded.
    EndpointOutOfService,
}

/// Why a load report changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportRejection {
    /// The tag does not verify: another key, or altered bytes.
    Forged,
    /// The sequence does not advance past the last one accepted from that endpoint.
    Replayed,
    /// Truncated, not a report, another version, an authentic but invalid body, or a LAN
    /// address that is the cluster address itself (the master would forward to itself).
    Malformed,
    /// Its Tunnel ID blocks overlap another endpoint's: routing by Tunnel ID would be
    /// ambiguous, so the first claim stands.
    TunnelIdConflict,
}

/// What `handle_report` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOutcome {
    Accepted,
    Rejected(ReportRejection),
}

/// An endpoint's state as the master sees it, most binding first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    InService,
    /// Drained by the operator, or says so in its reports: no new tunnels.
    Draining,
    /// Deactivated by the operator: no new tunnels until `activate`.
    Deactivated,
    /// No report for `report_timeout`.
    OutOfService,
}

/// The operator's word on an endpoint; outlives its reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminState {
    Active,
    Drained,
    Deactivated,
}

/// A snapshot for the CLI, the TUI and JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MasterStatus {
    pub cluster_addr: Ipv4Addr,
    pub policy: Policy,
    /// In name order.
    pub endpoints: Vec<EndpointStatus>,
    pub totals: StatusTotals,
    pub drops: DropCounts,
    pub reports: ReportCounts,
    /// SCCRQ choices held for retransmissions.
    pub remembered_dispatches: usize,
    /// Who this master is, and how it came to hold the cluster address (or why it stands by).
    #[serde(default)]
    pub holder: Holder,
    /// Most choices held at once (`MasterConfig::max_remembered`).
    pub remembered_limit: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointStatus {
    pub name: String,
    pub lan_addr: Ipv4Addr,
    pub global_addr: Option<Ipv4Addr>,
    pub state: MemberState,
    pub admin: AdminState,
    pub reported_state: EndpointState,
    pub tunnels: u32,
    pub sessions: u32,
    pub capacity: u32,
    pub tunnel_ids: Vec<(u16, u16)>,
    /// New SCCRQs sent since its last report (the report does not count them yet).
    pub dispatched_since_report: u32,
    pub dispatched_total: u64,
    /// Retransmitted SCCRQs sent after the first.
    pub sccrq_retransmitted: u64,
    /// Retransmitted SCCRQs first sent here, placed on another endpoint because this one had
    /// gone out of service or been deactivated since.
    pub sccrq_redispatched_away: u64,
    /// Non-SCCRQ packets routed by Tunnel ID.
    pub forwarded: u64,
    /// Packets for its Tunnel IDs dropped while it was out of service.
    pub dropped_out_of_service: u64,
    /// Leaky bucket only: SCCRQs dropped (`NoCapacity`) while its bucket was empty.
    pub bucket_drops: u64,
    /// Age of its last report at the latest time the master was given.
    pub last_report_age_ms: u64,
    pub last_report_from: SocketAddrV4,
    pub sequence: u64,
    /// Leaky bucket only: tokens as of the last dispatch decision.
    pub tokens: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StatusTotals {
    pub endpoints: usize,
    pub in_service: usize,
    pub tunnels: u64,
    pub sessions: u64,
    /// Capacity of the endpoints in service.
    pub capacity: u64,
    /// New SCCRQs sent to an endpoint (placements, redispatches included).
    pub sccrq_dispatched: u64,
    /// Retransmitted SCCRQs sent where the first went.
    pub sccrq_retransmitted: u64,
    /// Of `sccrq_dispatched`: retransmissions placed anew, their first endpoint out of service
    /// or deactivated.
    pub sccrq_redispatched: u64,
    pub forwarded: u64,
    pub dropped: u64,
    /// Dispatch choices forgotten early because the memory was full.
    pub remembered_evicted: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DropCounts {
    pub malformed: u64,
    pub not_udp: u64,
    pub fragment: u64,
    pub not_cluster_address: u64,
    pub not_l2tp_port: u64,
    pub no_endpoint: u64,
    pub no_capacity: u64,
    pub unknown_tunnel: u64,
    pub endpoint_out_of_service: u64,
}

impl DropCounts {
    fn slot(&mut self, reason: DropReason) -> &mut u64 {
        match reason {
            DropReason::Malformed => &mut self.malformed,
            DropReason::NotUdp => &mut self.not_udp,
            DropReason::Fragment => &mut self.fragment,
            DropReason::NotClusterAddress => &mut self.not_cluster_address,
            DropReason::NotL2tpPort => &mut self.not_l2tp_port,
            DropReason::NoEndpoint => &mut self.no_endpoint,
            DropReason::NoCapacity => &mut self.no_capacity,
            DropReason::UnknownTunnel => &mut self.unknown_tunnel,
            DropReason::EndpointOutOfService => &mut self.endpoint_out_of_service,
        }
    }

    pub fn get(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::Malformed => self.malformed,
            DropReason::NotUdp => self.not_udp,
            DropReason::Fragment => self.fragment,
            DropReason::NotClusterAddress => self.not_cluster_address,
            DropReason::NotL2tpPort => self.not_l2tp_port,
            DropReason::NoEndpoint => self.no_endpoint,
            DropReason::NoCapacity => self.no_capacity,
            DropReason::UnknownTunnel => self.unknown_tunnel,
            DropReason::EndpointOutOfService => self.endpoint_out_of_service,
        }
    }

    pub fn total(&self) -> u64 {
        self.malformed
            + self.not_udp
            + self.fragment
            + self.not_cluster_address
            + self.not_l2tp_port
            + self.no_endpoint
            + self.no_capacity
            + self.unknown_tunnel
            + self.endpoint_out_of_service
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReportCounts {
    pub accepted: u64,
    pub forged: u64,
    pub replayed: u64,
    pub malformed: u64,
    pub tunnel_id_conflict: u64,
    /// Acks sent for accepted reports.
    #[serde(default)]
    pub acks_sent: u64,
}

/// The Assigned Tunnel ID of an SCCRQ as the master can know it: in clear, or (hidden with a
/// secret the master does not hold) as the ciphertext, which a retransmission repeats.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum AssignedTunnel {
    Plain(u16),
    Hidden(Box<[u8]>),
}

/// What makes two SCCRQs the same tunnel request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DispatchKey {
    initiator: SocketAddrV4,
    assigned: AssignedTunnel,
}

#[derive(Debug, Clone, Copy)]
struct Remembered {
    member: usize,
    at: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant, rate: f64, burst: u32) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + rate * elapsed).min(f64::from(burst));
        self.at = self.at.max(now);
    }
}

/// One endpoint the master has heard from.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    lan_addr: Ipv4Addr,
    global_addr: Option<Ipv4Addr>,
    tunnels: u32,
    sessions: u32,
    capacity: u32,
    reported_state: EndpointState,
    tunnel_ids: Vec<(u16, u16)>,
    sequence: u64,
    last_report: Instant,
    last_report_from: SocketAddrV4,
    admin: AdminState,
    dispatched_since_report: u32,
    /// When each SCCRQ counted in `dispatched_since_report` was sent on.
    recent_dispatches: std::collections::VecDeque<Instant>,
    dispatched_total: u64,
    sccrq_retransmitted: u64,
    sccrq_redispatched_away: u64,
    forwarded: u64,
    dropped_out_of_service: u64,
    bucket_drops: u64,
    bucket: Bucket,
    /// Whether its reports were fresh when last looked at: only for the timer and for logging
    /// transitions; dispatch always judges freshness from `now`.
    fresh: bool,
}

impl Member {
    fn is_fresh(&self, now: Instant, timeout: Duration) -> bool {
        now.saturating_duration_since(self.last_report) < timeout
    }

    fn state(&self, now: Instant, timeout: Duration) -> MemberState {
        if self.admin == AdminState::Deactivated {
            MemberState::Deactivated
        } else if !self.is_fresh(now, timeout) {
            MemberState::OutOfService
        } else if self.admin == AdminState::Drained
            || self.reported_state == EndpointState::Draining
        {
            MemberState::Draining
        } else {
            MemberState::InService
        }
    }

    fn load(&self) -> u64 {
        u64::from(self.tunnels) + u64::from(self.dispatched_since_report)
    }

    fn is_full(&self) -> bool {
        self.load() >= u64::from(self.capacity)
    }

    /// load / capacity below the other's, compared exactly by cross-multiplying.
    fn less_loaded_than(&self, other: &Member) -> bool {
        u128::from(self.load()) * u128::from(other.capacity)
            < u128::from(other.load()) * u128::from(self.capacity)
    }
}

/// The cluster master: see the module documentation.
#[derive(Debug)]
pub struct Master {
    config: MasterConfig,
    members: Vec<Member>,
    by_name: BTreeMap<String, usize>,
    /// Member indices in name order: the rotation.
    order: Vec<usize>,
    /// Where in `order` the next scan starts.
    cursor: usize,
    /// Tunnel ID blocks: first ID → (last ID, member). Disjoint, so the block holding an ID is
    /// the one with the greatest first ID at or below it.
    blocks: BTreeMap<u16, (u16, usize)>,
    remembered: HashMap<DispatchKey, Remembered>,
    /// Remembered keys in dispatch order; `now` never runs backwards, so neither do these.
    expiry: VecDeque<(Instant, DispatchKey)>,
    /// Warnings about a full dispatch memory or a flood the leaky bucket drops, at most one
    /// each per [`WARN_EVERY`].
    memory_full_warning: Throttle,
    no_capacity_warning: Throttle,
    /// The latest `now` given, for `status`.
    latest: Instant,
    totals: StatusTotals,
    drops: DropCounts,
    reports: ReportCounts,
    /// Sealed acks for accepted reports, with where they go (the report's source).
    acks: VecDeque<(SocketAddrV4, Vec<u8>)>,
    ack_sequence: u64,
    holder: Holder,
}

impl Master {
    pub fn new(config: MasterConfig) -> Master {
        if config.key.is_empty() {
            tracing::warn!("load report key is empty: anyone on the LAN can steer dispatch");
        }
        Master {
            members: Vec::new(),
            by_name: BTreeMap::new(),
            order: Vec::new(),
            cursor: 0,
            blocks: BTreeMap::new(),
            remembered: HashMap::new(),
            expiry: VecDeque::new(),
            memory_full_warning: Throttle::default(),
            no_capacity_warning: Throttle::default(),
            latest: Instant::ZERO,
            totals: StatusTotals::default(),
            drops: DropCounts::default(),
            reports: ReportCounts::default(),
            acks: VecDeque::new(),
            ack_sequence: config.first_ack_sequence,
            holder: Holder {
                name: config.name.clone(),
                ..Holder::default()
            },
            config,
        }
    }

    pub fn config(&self) -> &MasterConfig {
        &self.config
    }

    fn observe(&mut self, now: Instant) {
        self.latest = self.latest.max(now);
    }

    /// A load report datagram from `from` (kept for the status only: the tag, not the source
    /// address, says who sent it). Forged, replayed or malformed reports change nothing but
    /// their counter.
    pub fn handle_report(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        bytes: &[u8],
    ) -> ReportOutcome {
        self.observe(now);
        let outcome = self.apply_report(now, from, bytes);
        match outcome {
            ReportOutcome::Accepted => {
                self.reports.accepted += 1;
                self.queue_ack(now, from, bytes);
            }
            ReportOutcome::Rejected(why) => {
                let counter = match why {
                    ReportRejection::Forged => &mut self.reports.forged,
                    ReportRejection::Replayed => &mut self.reports.replayed,
                    ReportRejection::Malformed => &mut self.reports.malformed,
                    ReportRejection::TunnelIdConflict => &mut self.reports.tunnel_id_conflict,
                };
                *counter += 1;
            }
        }
        outcome
    }

    fn apply_report(&mut self, now: Instant, from: SocketAddrV4, bytes: &[u8]) -> ReportOutcome {
        use ReportOutcome::Rejected;
        let report = match cluster::open(bytes, &self.config.key) {
            Ok(report) => report,
            Err(ReportError::BadTag) => {
                tracing::debug!(%from, "forged load report");
                return Rejected(ReportRejection::Forged);
            }
            Err(err) => {
                tracing::debug!(%from, %err, "malformed load report");
                return Rejected(ReportRejection::Malformed);
            }
        };
        if report.lan_addr == self.config.cluster_addr {
            tracing::warn!(endpoint = %report.endpoint, "load report names the cluster address as its LAN address");
            return Rejected(ReportRejection::Malformed);
        }
        let existing = self.by_name.get(&report.endpoint).copied();
        if let Some(index) = existing {
            if report.sequence <= self.members[index].sequence {
                tracing::debug!(endpoint = %report.endpoint, sequence = report.sequence, "replayed load report");
                return Rejected(ReportRejection::Replayed);
            }
        }
        for &(first, last) in &report.tunnel_ids {
            if let Some(owner) = self.block_owner_other_than(first, last, existing) {
                tracing::warn!(
                    endpoint = %report.endpoint, first, last, owner = %self.members[owner].name,
                    "load report claims Tunnel IDs another endpoint holds"
                );
                return Rejected(ReportRejection::TunnelIdConflict);
            }
        }

        let index = match existing {
            Some(index) => index,
            None => {
                tracing::info!(endpoint = %report.endpoint, lan = %report.lan_addr, "endpoint joins the cluster");
                self.add_member(now, from, &report.endpoint)
            }
        };
        if self.members[index].tunnel_ids != report.tunnel_ids {
            for (first, _) in &self.members[index].tunnel_ids {
                self.blocks.remove(first);
            }
            for &(first, last) in &report.tunnel_ids {
                self.blocks.insert(first, (last, index));
            }
        }
        let timeout = self.config.report_timeout;
        let member = &mut self.members[index];
        if !member.fresh {
            tracing::info!(endpoint = %member.name, "endpoint reports again");
        }
        member.lan_addr = report.lan_addr;
        member.global_addr = report.global_addr;
        member.tunnels = report.tunnels;
        member.sessions = report.sessions;
        member.capacity = report.capacity;
        member.reported_state = report.state;
        member.tunnel_ids = report.tunnel_ids;
        member.sequence = report.sequence;
        member.last_report = now;
        member.last_report_from = from;
        // A report cannot count the SCCRQs still on their way to the endpoint (or queued in
        // it) when it was written: those sent within REPORT_LAG before it arrived stay counted.
        // Forgetting them made a burst land unevenly on a busy machine (118/71/111 of 300).
        member
            .recent_dispatches
            .retain(|&at| now.saturating_duration_since(at) < REPORT_LAG);
        member.dispatched_since_report =
            u32::try_from(member.recent_dispatches.len()).unwrap_or(u32::MAX);
        member.fresh = member.is_fresh(now, timeout);
        ReportOutcome::Accepted
    }

    /// Queues the ack of an accepted report: its sequence and the view as it is now.
    fn queue_ack(&mut self, now: Instant, from: SocketAddrV4, bytes: &[u8]) {
        // Accepted, so it opens.
        let Ok(report) = cluster::open(bytes, &self.config.key) else {
            return;
        };
        let ack = ReportAck {
            master: self.config.name.clone(),
            sequence: self.ack_sequence,
            report_sequence: report.sequence,
            view: self.view(now),
        };
        self.ack_sequence = self.ack_sequence.saturating_add(1);
        if self.acks.len() >= MAX_PENDING_ACKS {
            self.acks.pop_front();
        }
        self.acks
            .push_back((from, cluster::seal_ack(&ack, &self.config.key)));
    }

    /// The next ack to send, to the address its report came from.
    pub fn poll_ack(&mut self) -> Option<(SocketAddrV4, Vec<u8>)> {
        let ack = self.acks.pop_front()?;
        self.reports.acks_sent += 1;
        Some(ack)
    }

    /// The endpoints as the acks show them: name order, in service or not.
    pub fn view(&self, now: Instant) -> Vec<ViewEntry> {
        let timeout = self.config.report_timeout;
        self.order
            .iter()
            .map(|&index| {
                let m = &self.members[index];
                ViewEntry {
                    name: m.name.clone(),
                    lan_addr: m.lan_addr,
                    in_service: m.state(now, timeout) == MemberState::InService,
                }
            })
            .collect()
    }

    /// What the status says of this master's hold on the cluster address.
    pub fn set_holder(&mut self, holder: Holder) {
        self.holder = holder;
    }

    fn add_member(&mut self, now: Instant, from: SocketAddrV4, name: &str) -> usize {
        let burst = match self.config.policy {
            Policy::LeakyBucket { burst, .. } => f64::from(burst),
            _ => 0.0,
        };
        let index = self.members.len();
        self.members.push(Member {
            name: name.to_owned(),
            lan_addr: Ipv4Addr::UNSPECIFIED,
            global_addr: None,
            tunnels: 0,
            sessions: 0,
            capacity: 0,
            reported_state: EndpointState::InService,
            tunnel_ids: Vec::new(),
            sequence: 0,
            last_report: now,
            last_report_from: from,
            admin: AdminState::Active,
            dispatched_since_report: 0,
            recent_dispatches: std::collections::VecDeque::new(),
            dispatched_total: 0,
            sccrq_retransmitted: 0,
            sccrq_redispatched_away: 0,
            forwarded: 0,
            dropped_out_of_service: 0,
            bucket_drops: 0,
            bucket: Bucket {
                tokens: burst,
                at: now,
            },
            fresh: true,
        });
        self.by_name.insert(name.to_owned(), index);
        // The rotation keeps pointing at the endpoint it pointed at before.
        let next = self.order.get(self.cursor).copied();
        self.order = self.by_name.values().copied().collect();
        self.cursor = next
            .and_then(|m| self.order.iter().position(|&o| o == m))
            .unwrap_or(0);
        index
    }

    /// A member other than `except` holding an ID in `first..=last`.
    fn block_owner_other_than(
        &self,
        first: u16,
        last: u16,
        except: Option<usize>,
    ) -> Option<usize> {
        // Blocks are disjoint: walking down from `last`, ends fall too, so stop at the first
        // block that ends before `first`.
        self.blocks
            .range(..=last)
            .rev()
            .take_while(|(_, &(end, _))| end >= first)
            .map(|(_, &(_, owner))| owner)
            .find(|&owner| Some(owner) != except)
    }

    fn tunnel_owner(&self, tunnel_id: u16) -> Option<usize> {
        let (_, &(last, owner)) = self.blocks.range(..=tunnel_id).next_back()?;
        (tunnel_id <= last).then_some(owner)
    }

    /// One IPv4 packet that reached the cluster address. On `Forward` its destination address
    /// has been rewritten in place (checksums updated); on `Drop` it is untouched.
    pub fn handle_packet(&mut self, now: Instant, packet: &mut [u8]) -> Verdict {
        self.observe(now);
        match self.route(now, packet) {
            Ok(index) => {
                let member = &self.members[index];
                // `route` accepted the packet, so the checked view cannot fail here.
                if let Ok(mut view) = Ipv4Udp::new_checked(&mut *packet) {
                    view.set_dst(member.lan_addr);
                }
                Verdict::Forward {
                    endpoint: member.name.clone(),
                    to: member.lan_addr,
                }
            }
            Err(reason) => {
                *self.drops.slot(reason) += 1;
                self.totals.dropped += 1;
                Verdict::Drop(reason)
            }
        }
    }

    fn route(&mut self, now: Instant, packet: &[u8]) -> Result<usize, DropReason> {
        let datagram = Ipv4Udp::new_checked(packet).map_err(|err| match err {
            ip::Error::NotUdp { .. } => DropReason::NotUdp,
            ip::Error::Fragment { .. } => DropReason::Fragment,
            _ => DropReason::Malformed,
        })?;
        if datagram.dst() != self.config.cluster_addr {
            return Err(DropReason::NotClusterAddress);
        }
        if datagram.dst_port() != L2TP_PORT {
            return Err(DropReason::NotL2tpPort);
        }
        let l2tp = datagram.udp_payload();
        let header = Header::new_checked(l2tp).map_err(|_| DropReason::Malformed)?;
        if header.is_control() && header.tunnel_id() == 0 {
            if let Some(assigned) = sccrq_assigned_tunnel(&header)? {
                let key = DispatchKey {
                    initiator: datagram.src_addr(),
                    assigned,
                };
                return self.dispatch(now, key);
            }
        }
        let index = self
            .tunnel_owner(header.tunnel_id())
            .ok_or(DropReason::UnknownTunnel)?;
        // Freshness, not `state`: a deactivated endpoint whose reports stopped is gone too.
        if !self.members[index].is_fresh(now, self.config.report_timeout) {
            self.members[index].dropped_out_of_service += 1;
            return Err(DropReason::EndpointOutOfService);
        }
        self.members[index].forwarded += 1;
        self.totals.forwarded += 1;
        Ok(index)
    }

    fn dispatch(&mut self, now: Instant, key: DispatchKey) -> Result<usize, DropReason> {
        let memory = self.config.dispatch_memory;
        let mut taken_from = None;
        if let Some(earlier) = self.remembered.get(&key) {
            if now.saturating_duration_since(earlier.at) < memory {
                let index = earlier.member;
                let member = &mut self.members[index];
                let gone = !member.is_fresh(now, self.config.report_timeout)
                    || member.admin == AdminState::Deactivated;
                if !gone {
                    member.sccrq_retransmitted += 1;
                    self.totals.sccrq_retransmitted += 1;
                    return Ok(index);
                }
                // The initiator never had an SCCRP (or it would not retransmit): place it anew.
                // Should no endpoint take it now, the choice stays for the next retransmission,
                // which goes back here if this endpoint has reported again by then.
                taken_from = Some(index);
            }
        }
        let index = self.pick(now)?;
        if let Some(from) = taken_from {
            self.members[from].sccrq_redispatched_away += 1;
            self.totals.sccrq_redispatched += 1;
            tracing::debug!(
                from = %self.members[from].name, to = %self.members[index].name,
                "retransmitted SCCRQ placed anew: its first endpoint is out of service or deactivated"
            );
        }
        let member = &mut self.members[index];
        member.dispatched_since_report = member.dispatched_since_report.saturating_add(1);
        if member.recent_dispatches.len() >= MAX_RECENT {
            member.recent_dispatches.pop_front();
        }
        member.recent_dispatches.push_back(now);
        member.dispatched_total += 1;
        if matches!(self.config.policy, Policy::LeakyBucket { .. }) {
            member.bucket.tokens -= 1.0;
        }
        self.totals.sccrq_dispatched += 1;
        self.remember(now, key, index);
        Ok(index)
    }

    /// The policy's choice among the endpoints in service that have room.
    fn pick(&mut self, now: Instant) -> Result<usize, DropReason> {
        let timeout = self.config.report_timeout;
        let policy = self.config.policy;
        if let Policy::LeakyBucket { rate, burst } = policy {
            let rate = if rate.is_finite() { rate.max(0.0) } else { 0.0 };
            for member in &mut self.members {
                member.bucket.refill(now, rate, burst);
            }
        }
        let count = self.order.len();
        let mut in_service = false;
        let mut best: Option<(usize, usize)> = None; // (position in order, member)
        for step in 0..count {
            let position = (self.cursor + step) % count;
            let index = self.order[position];
            let member = &self.members[index];
            if member.state(now, timeout) != MemberState::InService {
                continue;
            }
            in_service = true;
            if member.is_full() {
                continue;
            }
            let better = match (policy, best) {
                (Policy::LeakyBucket { .. }, _) if member.bucket.tokens < 1.0 => false,
                (_, None) => true,
                (Policy::RoundRobin, Some(_)) => false,
                (Policy::LeastLoad, Some((_, b))) => member.less_loaded_than(&self.members[b]),
                (Policy::LeakyBucket { .. }, Some((_, b))) => {
                    member.bucket.tokens > self.members[b].bucket.tokens
                }
            };
            if better {
                best = Some((position, index));
            }
        }
        match best {
            Some((position, index)) => {
                self.cursor = (position + 1) % count;
                Ok(index)
            }
            None if in_service => {
                self.count_no_capacity(now);
                Err(DropReason::NoCapacity)
            }
            None => Err(DropReason::NoEndpoint),
        }
    }

    /// Charges a `NoCapacity` drop to every endpoint in service whose empty bucket refused it,
    /// and warns (throttled) that SCCRQs are being dropped.
    fn count_no_capacity(&mut self, now: Instant) {
        let timeout = self.config.report_timeout;
        let leaky = matches!(self.config.policy, Policy::LeakyBucket { .. });
        for member in &mut self.members {
            if leaky
                && member.state(now, timeout) == MemberState::InService
                && !member.is_full()
                && member.bucket.tokens < 1.0
            {
                member.bucket_drops += 1;
            }
        }
        if let Some(held) = self.no_capacity_warning.allow(now) {
            tracing::warn!(
                dropped = self.drops.no_capacity + 1,
                since_last_warning = held + 1,
                "no endpoint in service has room (full, or its leaky bucket empty): SCCRQs dropped"
            );
        }
    }

    fn remember(&mut self, now: Instant, key: DispatchKey, member: usize) {
        let memory = self.config.dispatch_memory;
        let limit = self.config.max_remembered.max(1);
        // A redispatch replaces its key's choice: the memory does not grow.
        while !self.remembered.contains_key(&key) && self.remembered.len() >= limit {
            let Some((deadline, oldest)) = self.expiry.pop_front() else {
                break;
            };
            // A queue entry a later choice for the same key left behind evicts nothing.
            let current = self
                .remembered
                .get(&oldest)
                .is_some_and(|r| r.at + memory == deadline);
            if !current {
                continue;
            }
            self.remembered.remove(&oldest);
            self.totals.remembered_evicted += 1;
            if let Some(held) = self.memory_full_warning.allow(now) {
                tracing::warn!(
                    limit,
                    evicted = self.totals.remembered_evicted,
                    since_last_warning = held + 1,
                    "dispatch memory full: forgetting the oldest SCCRQ choices (a retransmission \
                     of one may now go to another endpoint)"
                );
            }
        }
        let deadline = now + memory;
        // A choice that expired unswept is replaced; its old queue entry finds the new `at`
        // when it comes up and leaves the choice alone.
        self.remembered
            .insert(key.clone(), Remembered { member, at: now });
        self.expiry.push_back((deadline, key));
    }

    fn set_admin(&mut self, endpoint: &str, admin: AdminState) -> bool {
        let Some(&index) = self.by_name.get(endpoint) else {
            return false;
        };
        let member = &mut self.members[index];
        if member.admin != admin {
            tracing::info!(endpoint, from = ?member.admin, to = ?admin, "endpoint state set");
            member.admin = admin;
        }
        true
    }

    /// No new SCCRQs for this endpoint; packets of its existing tunnels (and retransmissions
    /// of SCCRQs it already has) still reach it. Holds until `activate`. False when the master
    /// has never heard of it.
    pub fn drain(&mut self, endpoint: &str) -> bool {
        self.set_admin(endpoint, AdminState::Drained)
    }

    /// The patent's "inactivate" (an endpoint not needed at the current level of traffic): no
    /// new SCCRQs, its capacity leaves the cluster's total, and it shows as deactivated even
    /// when its reports stop. Packets of its existing tunnels are still forwarded, as for a
    /// drained endpoint, while it reports: the master never cuts a live tunnel, since dropping
    /// its packets would only leave both ends to time out where the endpoint can close it
    /// cleanly with StopCCN. A retransmitted SCCRQ it was sent goes to another endpoint (the
    /// initiator has no tunnel yet). Holds until `activate`.
    pub fn deactivate(&mut self, endpoint: &str) -> bool {
        self.set_admin(endpoint, AdminState::Deactivated)
    }

    /// Undoes `drain` or `deactivate`. An endpoint that reports Draining itself stays draining.
    pub fn activate(&mut self, endpoint: &str) -> bool {
        self.set_admin(endpoint, AdminState::Active)
    }

    /// Forgets expired SCCRQ choices and notes endpoints whose reports stopped.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.observe(now);
        let memory = self.config.dispatch_memory;
        while let Some((deadline, _)) = self.expiry.front() {
            if *deadline > now {
                break;
            }
            if let Some((_, key)) = self.expiry.pop_front() {
                let expired = self
                    .remembered
                    .get(&key)
                    .is_some_and(|r| now.saturating_duration_since(r.at) >= memory);
                if expired {
                    self.remembered.remove(&key);
                }
            }
        }
        let timeout = self.config.report_timeout;
        for member in &mut self.members {
            if member.fresh && !member.is_fresh(now, timeout) {
                member.fresh = false;
                tracing::warn!(endpoint = %member.name, "no load report for {timeout:?}: out of service");
            }
        }
    }

    /// The next time `handle_timeout` has work: an endpoint's report going stale, or an SCCRQ
    /// choice expiring.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timeout = self.config.report_timeout;
        let stale = self
            .members
            .iter()
            .filter(|m| m.fresh)
            .map(|m| m.last_report + timeout);
        let expiry = self.expiry.front().map(|(deadline, _)| *deadline);
        stale.chain(expiry).min()
    }

    pub fn status(&self) -> MasterStatus {
        let now = self.latest;
        let timeout = self.config.report_timeout;
        let leaky = matches!(self.config.policy, Policy::LeakyBucket { .. });
        let mut totals = self.totals;
        totals.endpoints = self.members.len();
        let endpoints = self
            .order
            .iter()
            .map(|&index| {
                let m = &self.members[index];
                let state = m.state(now, timeout);
                totals.tunnels += u64::from(m.tunnels);
                totals.sessions += u64::from(m.sessions);
                if state == MemberState::InService {
                    totals.in_service += 1;
                    totals.capacity += u64::from(m.capacity);
                }
                EndpointStatus {
                    name: m.name.clone(),
                    lan_addr: m.lan_addr,
                    global_addr: m.global_addr,
                    state,
                    admin: m.admin,
                    reported_state: m.reported_state,
                    tunnels: m.tunnels,
                    sessions: m.sessions,
                    capacity: m.capacity,
                    tunnel_ids: m.tunnel_ids.clone(),
                    dispatched_since_report: m.dispatched_since_report,
                    dispatched_total: m.dispatched_total,
                    sccrq_retransmitted: m.sccrq_retransmitted,
                    sccrq_redispatched_away: m.sccrq_redispatched_away,
                    forwarded: m.forwarded,
                    dropped_out_of_service: m.dropped_out_of_service,
                    bucket_drops: m.bucket_drops,
                    last_report_age_ms: u64::try_from(
                        now.saturating_duration_since(m.last_report).as_millis(),
                    )
                    .unwrap_or(u64::MAX),
                    last_report_from: m.last_report_from,
                    sequence: m.sequence,
                    tokens: leaky.then_some(m.bucket.tokens),
                }
            })
            .collect();
        MasterStatus {
            cluster_addr: self.config.cluster_addr,
            policy: self.config.policy,
            endpoints,
            totals,
            drops: self.drops,
            reports: self.reports,
            remembered_dispatches: self.remembered.len(),
            holder: self.holder.clone(),
            remembered_limit: self.config.max_remembered.max(1),
        }
    }
}

/// For a control message to Tunnel ID 0: `Some` with its Assigned Tunnel ID when it is an SCCRQ,
/// `None` when it is some other message (which then routes as Tunnel ID 0: to nobody).
fn sccrq_assigned_tunnel(header: &Header<&[u8]>) -> Result<Option<AssignedTunnel>, DropReason> {
    const MESSAGE_TYPE: u16 = 0;
    const ASSIGNED_TUNNEL_ID: u16 = 9;
    const SCCRQ: [u8; 2] = [0, 1];
    let avps = header.payload();
    if avps.is_empty() {
        return Ok(None); // a ZLB
    }
    let first = Avp::new_checked(avps, 0).map_err(|_| DropReason::Malformed)?;
    if first.vendor_id() != 0 || first.attr_type() != MESSAGE_TYPE || first.hidden() {
        return Err(DropReason::Malformed); // RFC 2661 §4.4.1: Message Type comes first
    }
    if first.value() != SCCRQ {
        return Ok(None);
    }
    // T, L and S set, O and P clear: an SCCRQ an endpoint would accept.
    HeaderRepr::parse(header).map_err(|_| DropReason::Malformed)?;
    let mut offset = 0;
    while let Some(rest) = avps.get(offset..).filter(|rest| !rest.is_empty()) {
        let avp = Avp::new_checked(rest, offset).map_err(|_| DropReason::Malformed)?;
        if avp.vendor_id() == 0 && avp.attr_type() == ASSIGNED_TUNNEL_ID {
            return match (avp.hidden(), avp.value()) {
                (true, ciphertext) => Ok(Some(AssignedTunnel::Hidden(ciphertext.into()))),
                (false, &[high, low]) => {
                    Ok(Some(AssignedTunnel::Plain(u16::from_be_bytes([high, low]))))
                }
                (false, _) => Err(DropReason::Malformed),
            };
        }
        offset += usize::from(avp.length());
    }
    Err(DropReason::Malformed) // mandatory in an SCCRQ (RFC 2661 §6.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_dispatch_memory_forgets_the_oldest_choice_first() {
        let mut master = Master::new(MasterConfig {
            max_remembered: 3,
            ..MasterConfig::new(Ipv4Addr::new(198, 18, 0, 1), "k")
        });
        let key = |id| DispatchKey {
            initiator: SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 1), 1701),
            assigned: AssignedTunnel::Plain(id),
        };
        for id in 1..=5 {
            master.remember(Instant::from_micros(u64::from(id)), key(id), 0);
        }
        assert_eq!(master.remembered.len(), 3);
        assert!(!master.remembered.contains_key(&key(1)));
        assert!(!master.remembered.contains_key(&key(2)));
        assert!(master.remembered.contains_key(&key(3)));
        assert_eq!(master.status().totals.remembered_evicted, 2);
    }

    #[test]
    fn tunnel_owner_is_an_interval_lookup() {
        let mut master = Master::new(MasterConfig::new(Ipv4Addr::new(198, 18, 0, 1), "k"));
        master.blocks.insert(10, (19, 0));
        master.blocks.insert(20, (20, 1));
        master.blocks.insert(100, (199, 2));
        let owners: Vec<_> = [9, 10, 19, 20, 21, 99, 100, 150, 199, 200]
            .into_iter()
            .map(|id| master.tunnel_owner(id))
            .collect();
        assert_eq!(
            owners,
            [
                None,
                Some(0),
                Some(0),
                Some(1),
                None,
                None,
                Some(2),
                Some(2),
                Some(2),
                None
            ]
        );
        assert_eq!(master.block_owner_other_than(1, 9, None), None);
        assert_eq!(master.block_owner_other_than(1, 10, None), Some(0));
        assert_eq!(master.block_owner_other_than(1, 300, Some(2)), Some(1));
        assert_eq!(master.block_owner_other_than(150, 300, Some(2)), None);
        assert_eq!(master.block_owner_other_than(21, 99, None), None);
    }
}
