//! What the master shows of itself: member states, counters and the status snapshot.

use std::net::{Ipv4Addr, SocketAddrV4};

use serde::{Deserialize, Serialize};

use super::{DropReason, Master, Policy};
use crate::cluster::EndpointState;
use crate::takeover::Holder;

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
    /// Its agent says the LNS leaves SCCRQs unanswered: no new tunnels until it answers.
    Unresponsive,
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
    /// Agents' tunnel claims: messages and single claims, by outcome.
    #[serde(default)]
    pub claims: ClaimCounts,
    /// Tunnels held by an agent's claim now.
    #[serde(default)]
    pub claimed_tunnels: usize,
    /// A master that took over waits for the endpoints' first reports before it places SCCRQs.
    #[serde(default)]
    pub placement_held: bool,
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
    /// SCCRQs sent since its last report (the report does not count them yet).
    pub dispatched_since_report: u32,
    /// SCCRQs sent before its last report that the report did not count yet.
    #[serde(default)]
    pub in_flight: u32,
    /// SCCRQs this master sent it (new and retransmitted), and its own count of those
    /// received (from anyone, since it started).
    #[serde(default)]
    pub sccrq_sent: u64,
    #[serde(default)]
    pub sccrq_received: Option<u64>,
    /// Tunnels its agent claimed (an LNS we did not write).
    #[serde(default)]
    pub claimed_tunnels: usize,
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
    /// Packets parked to wait for an agent's claim, and those a claim then released (the
    /// others are counted as `unknown_tunnel` drops).
    #[serde(default)]
    pub parked: u64,
    #[serde(default)]
    pub parked_released: u64,
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
    #[serde(default)]
    pub placement_held: u64,
}

impl DropCounts {
    pub(super) fn slot(&mut self, reason: DropReason) -> &mut u64 {
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
            DropReason::PlacementHeld => &mut self.placement_held,
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
            DropReason::PlacementHeld => self.placement_held,
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
            + self.placement_held
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReportCounts {
    pub accepted: u64,
    pub forged: u64,
    pub replayed: u64,
    pub malformed: u64,
    pub tunnel_id_conflict: u64,
    /// Sealed in another version of the format (named in the master's log).
    #[serde(default)]
    pub bad_version: u64,
    /// Acks sent for accepted reports.
    #[serde(default)]
    pub acks_sent: u64,
}
/// Agents' tunnel claims. `messages` counts the accepted messages, `claimed` and `released`
/// the single claims in them; the rest count refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClaimCounts {
    pub messages: u64,
    pub claimed: u64,
    pub released: u64,
    /// Idle for the claim timeout and forgotten.
    pub expired: u64,
    pub forged: u64,
    pub replayed: u64,
    pub bad_version: u64,
    pub malformed: u64,
    /// From an endpoint that never reported.
    pub unknown_endpoint: u64,
    /// Single claims for a tunnel another endpoint's agent holds.
    pub conflict: u64,
}

impl Master {
    pub fn status(&self) -> MasterStatus {
        let now = self.latest;
        let timeout = self.config.report_timeout;
        let leaky = matches!(self.config.policy, Policy::LeakyBucket { .. });
        let mut totals = self.totals;
        totals.endpoints = self.members.len();
        let mut claimed = vec![0usize; self.members.len()];
        for entry in self.claims.values() {
            if let Some(n) = claimed.get_mut(entry.member) {
                *n += 1;
            }
        }
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
                    in_flight: m.in_flight,
                    sccrq_sent: m.sccrq_sent,
                    sccrq_received: m.sccrq_received,
                    claimed_tunnels: claimed.get(index).copied().unwrap_or(0),
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
            claims: self.claim_counts,
            claimed_tunnels: self.claims.len(),
            placement_held: self.hold_until.is_some(),
            remembered_limit: self.config.max_remembered.max(1),
        }
    }
}

impl crate::metrics::Metered for MasterStatus {
    /// The cluster as the master sees it: per endpoint (label `endpoint`) the SCCRQs
    /// dispatched, the load it reports, its capacity and whether it is in service; the totals;
    /// drops by reason.
    fn metrics(&self) -> crate::metrics::MetricSet {
        use crate::metrics::{fields, label, MetricSet, Value};
        let mut set = MetricSet::default();
        let t = &self.totals;
        set.counter(
            "master_sccrq_dispatched",
            "New SCCRQs sent to an endpoint.",
            t.sccrq_dispatched,
        );
        set.counter(
            "master_sccrq_retransmitted",
            "Retransmitted SCCRQs sent where the first went.",
            t.sccrq_retransmitted,
        );
        set.counter(
            "master_forwarded",
            "Non-SCCRQ packets routed by Tunnel ID.",
            t.forwarded,
        );
        set.gauge(
            "master_endpoints_in_service",
            "Endpoints in service.",
            t.in_service as f64,
        );
        for e in &self.endpoints {
            let endpoint = || vec![label("endpoint", &e.name)];
            set.push(
                "master_dispatched",
                "New SCCRQs dispatched to the endpoint.",
                endpoint(),
                Value::Counter(e.dispatched_total),
            );
            set.push(
                "master_endpoint_tunnels",
                "Tunnels the endpoint last reported.",
                endpoint(),
                Value::Gauge(f64::from(e.tunnels)),
            );
            set.push(
                "master_endpoint_sessions",
                "Sessions the endpoint last reported.",
                endpoint(),
                Value::Gauge(f64::from(e.sessions)),
            );
            set.push(
                "master_endpoint_capacity",
                "Tunnels the endpoint takes at most.",
                endpoint(),
                Value::Gauge(f64::from(e.capacity)),
            );
            set.push(
                "master_endpoint_in_service",
                "1 while the master dispatches to the endpoint.",
                endpoint(),
                Value::Gauge(if e.state == MemberState::InService {
                    1.0
                } else {
                    0.0
                }),
            );
        }
        set.gauge(
            "master_claimed_tunnels",
            "Tunnels held by an agent's claim.",
            self.claimed_tunnels as f64,
        );
        for (outcome, n) in fields(&self.claims) {
            set.push(
                "master_tunnel_claims",
                "Agents' tunnel claims (messages, single claims, refusals), by outcome.",
                vec![label("outcome", outcome)],
                Value::Counter(n),
            );
        }
        for (outcome, n) in fields(&self.reports) {
            set.push(
                "master_reports",
                "Load reports received, by outcome (acks sent too).",
                vec![label("outcome", outcome)],
                Value::Counter(n),
            );
        }
        for (reason, n) in fields(&self.drops) {
            set.push(
                "master_dropped",
                "Packets the master dropped, by reason.",
                vec![label("reason", reason)],
                Value::Counter(n),
            );
        }
        set
    }
}
