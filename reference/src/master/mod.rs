//! The cluster master (the patent's 154 / 254), sans-IO.
//!
//! The master owns the cluster address. For each SCCRQ that reaches it, it picks an endpoint
//! (least-load from the endpoints' load reports, round-robin or leaky bucket), rewrites only
//! the IP destination to that endpoint's LAN address, and has its runner send the packet on
//! the LAN; the source stays the initiator's, so the endpoint answers the initiator itself.
//! Every other packet to the cluster address (LACs such as xl2tpd keep sending SCCCN, ICRQ and
//! data to the address they dialled) goes to the endpoint whose reported Tunnel ID blocks hold
//! the L2TP header's Tunnel ID, or, for an LNS we did not write (random Tunnel IDs, an agent
//! beside it), to the endpoint whose agent claimed (initiator address, port, Tunnel ID).
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
//!   reassemble;
//! - least-load counts what is in flight exactly: each report says how many SCCRQs the
//!   endpoint has received, so SCCRQs the master sent and the endpoint has not counted yet
//!   stay counted however slow the endpoint is; one it has not counted [`SCCRQ_LOST_AFTER`]
//!   after it was sent is taken as lost (its initiator retransmits it);
//! - a master that starts from a takeover ([`Master::seed_view`]) holds placement until every
//!   endpoint in service in the last view has reported, or `placement_hold` has passed: until
//!   then it knows their names but not their load, and SCCRQs are dropped (`PlacementHeld`);
//!   the initiators' retransmissions are the queue;
//! - a packet for a tunnel nobody holds yet, from an initiator whose SCCRQ went to an agent's
//!   LNS within [`PARK_FOR`], is parked rather than dropped: the LNS's SCCRP may reach the
//!   initiator (whose SCCCN comes straight back) before the agent's claim reaches the master.
//!   The claim releases it (`poll_released`); unclaimed for [`PARK_FOR`] it is dropped as
//!   `UnknownTunnel` (the initiator retransmits). At most [`MAX_PARKED`] wait at once;
//! - a tunnel claim for a tunnel another endpoint's agent claimed is refused, counted and
//!   logged: the first holder keeps it. A claim names the initiator as well as the Tunnel ID,
//!   so it routes before the Tunnel ID blocks and may lie inside one (an LNS with random IDs
//!   beside ours).

mod claims;
mod dispatch;
mod members;
mod status;
#[cfg(test)]
mod tests;

use core::time::Duration;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};

use l2tp::time::Instant;
use serde::{Deserialize, Serialize};

use crate::cluster::EndpointState;
use crate::takeover::Holder;
use crate::throttle::Throttle;

pub use status::{
    AdminState, ClaimCounts, DropCounts, EndpointStatus, MasterStatus, MemberState, ReportCounts,
    StatusTotals,
};

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

/// An SCCRQ the endpoint has not counted this long after the master sent it is taken as lost:
/// it no longer counts as in flight.
pub const SCCRQ_LOST_AFTER: Duration = Duration::from_secs(1);

/// Send times kept per endpoint for [`SCCRQ_LOST_AFTER`]; bounded so a flood cannot grow them.
const MAX_RECENT: usize = 1 << 16;

/// An agent's tunnel claim that carries no packet for this long goes: three of xl2tpd's 60 s
/// HELLO intervals, as for the NAT's entries.
pub const DEFAULT_CLAIM_TIMEOUT: Duration = Duration::from_secs(180);
/// The endpoints' default report interval: how long a new master waits for the first reports.
pub const DEFAULT_PLACEMENT_HOLD: Duration = Duration::from_secs(1);

/// How long a packet waits for an agent's claim (the initiator retransmits after 1 s).
pub const PARK_FOR: Duration = Duration::from_millis(900);
/// Packets parked at most at once; past that they are dropped as `UnknownTunnel`.
pub const MAX_PARKED: usize = 4096;

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
    /// An agent's tunnel claim that carries no packet this long is forgotten.
    pub claim_timeout: Duration,
    /// After [`Master::seed_view`]: the longest placement waits for the endpoints' reports.
    pub placement_hold: Duration,
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
            claim_timeout: DEFAULT_CLAIM_TIMEOUT,
            placement_hold: DEFAULT_PLACEMENT_HOLD,
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
    /// Kept by the master until the agent's claim for its tunnel comes ([`Master::poll_released`])
    /// or [`PARK_FOR`] passes; the buffer is untouched.
    Parked,
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
    /// Not an SCCRQ, and no endpoint's blocks (nor an agent's claim) hold its Tunnel ID.
    UnknownTunnel,
    /// Not an SCCRQ, and the endpoint holding its Tunnel ID is out of service (no report for
    /// `report_timeout`): it is presumed gone, so its packets are not forwarded.
    EndpointOutOfService,
    /// An SCCRQ while a master that just took over waits for the endpoints' first reports.
    PlacementHeld,
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
    /// Sealed in another version of the format (an endpoint or agent of another release).
    BadVersion,
    /// Tunnel claims from an endpoint that has not reported yet.
    UnknownEndpoint,
}

/// What `handle_report` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOutcome {
    Accepted,
    Rejected(ReportRejection),
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
    /// SCCRQs sent to it (new and retransmitted) since its last report.
    dispatched_since_report: u32,
    /// When each SCCRQ of the last [`SCCRQ_LOST_AFTER`] was sent to it.
    recent_sends: std::collections::VecDeque<Instant>,
    /// SCCRQs sent to it in all, and at its last report.
    sccrq_sent: u64,
    sent_at_report: u64,
    /// Its count of SCCRQs received, as last reported (None before its first report here).
    sccrq_received: Option<u64>,
    /// SCCRQs sent to it that its last report did not count yet.
    in_flight: u32,
    /// Known from a takeover's view, not yet from a report of its own.
    seed: Seed,
    /// Sequence of the last tunnel claims accepted from it.
    claims_sequence: u64,
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

/// How a master that took over knows a member before its first report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seed {
    /// From a report: not seeded, or seeded and reported since.
    Reported,
    /// In service in the view: fresh for one report timeout, placement waits for its report.
    Awaited,
    /// Not in service in the view: out of service until it reports.
    OutOfService,
}

impl Member {
    fn is_fresh(&self, now: Instant, timeout: Duration) -> bool {
        self.seed != Seed::OutOfService && now.saturating_duration_since(self.last_report) < timeout
    }

    fn state(&self, now: Instant, timeout: Duration) -> MemberState {
        if self.admin == AdminState::Deactivated {
            MemberState::Deactivated
        } else if !self.is_fresh(now, timeout) {
            MemberState::OutOfService
        } else if self.reported_state == EndpointState::Unresponsive {
            MemberState::Unresponsive
        } else if self.admin == AdminState::Drained
            || self.reported_state == EndpointState::Draining
        {
            MemberState::Draining
        } else {
            MemberState::InService
        }
    }

    /// Its tunnels, and the SCCRQs on their way to it that no report counted yet.
    fn load(&self) -> u64 {
        u64::from(self.tunnels)
            + u64::from(self.in_flight)
            + u64::from(self.dispatched_since_report)
    }

    /// SCCRQs sent to it within [`SCCRQ_LOST_AFTER`] before `now`.
    fn recent_sends(&mut self, now: Instant) -> u32 {
        while self
            .recent_sends
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) >= SCCRQ_LOST_AFTER)
        {
            self.recent_sends.pop_front();
        }
        u32::try_from(self.recent_sends.len()).unwrap_or(u32::MAX)
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

/// A packet waiting for an agent's claim of its tunnel.
#[derive(Debug, Clone)]
struct ParkedPacket {
    at: Instant,
    initiator: SocketAddrV4,
    tunnel_id: u16,
    packet: Vec<u8>,
}

/// One tunnel an agent claimed for its LNS.
#[derive(Debug, Clone, Copy)]
struct TunnelClaimEntry {
    member: usize,
    last_used: Instant,
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
    claim_counts: ClaimCounts,
    /// Agents' tunnels: (initiator, Tunnel ID its LNS assigned) → the claim.
    claims: HashMap<(SocketAddrV4, u16), TunnelClaimEntry>,
    /// When `handle_timeout` next looks for idle claims.
    claim_sweep_at: Option<Instant>,
    /// Placement waits for the seeded endpoints' first reports until then (`seed_view`).
    hold_until: Option<Instant>,
    /// Initiators whose SCCRQ went to an agent's LNS: when (their claims may be on the way).
    awaiting_claims: HashMap<SocketAddrV4, Instant>,
    /// Packets waiting for a claim, oldest first, and those a claim released.
    parked: VecDeque<ParkedPacket>,
    released: VecDeque<(Vec<u8>, Ipv4Addr)>,
    /// Warnings about refused claims and reports of another version, throttled.
    claim_warning: Throttle,
    version_warning: Throttle,
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
            claim_counts: ClaimCounts::default(),
            claims: HashMap::new(),
            claim_sweep_at: None,
            hold_until: None,
            awaiting_claims: HashMap::new(),
            parked: VecDeque::new(),
            released: VecDeque::new(),
            claim_warning: Throttle::default(),
            version_warning: Throttle::default(),
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
        self.sweep_claims(now);
        self.expire_parked(now);
        if self.hold_until.is_some_and(|until| now >= until) {
            self.end_hold("the placement hold passed before every endpoint reported");
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
        stale
            .chain(expiry)
            .chain(self.claim_sweep_at)
            .chain(self.hold_until)
            .chain(self.parked.front().map(|p| p.at + PARK_FOR))
            .min()
    }
}
