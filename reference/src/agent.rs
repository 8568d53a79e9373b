//! The agent beside an LNS we did not write (xl2tpd, l2tpns, a vendor box), sans-IO: it watches
//! the LNS's L2TP datagrams (a read-only tap in its network namespace), keeps what the master
//! needs to know of it, and speaks for it in the cluster.
//!
//! - **Load reports**, as our endpoint sends them: its live tunnels (from the SCCRP that went
//!   out to a StopCCN, or to `idle_timeout` of silence) plus the SCCRQs it has not answered
//!   yet, its sessions (ICRP to CDN), and every SCCRQ it received, so that the master counts
//!   what is in flight exactly. No Tunnel ID blocks: the LNS picks its IDs itself.
//! - **Tunnel claims** ([`crate::cluster::TunnelClaims`]): the moment an SCCRP leaves the LNS,
//!   the agent tells the master (initiator address, port, the Tunnel ID the LNS assigned), so
//!   that a LAC that keeps sending to the cluster address (xl2tpd does) reaches this LNS. A
//!   claim the master has not acked within `claim_retry` goes again (claims are idempotent);
//!   every live tunnel is claimed again every `claim_refresh`, and at once when another
//!   master acks (after a takeover or a restart it knows none of them). A tunnel that ends is
//!   released after `stop_hold`, so that the StopCCN's retransmissions and its ack still route.
//! - **An LNS that does not answer**: an SCCRQ that no reply follows within `answer_timeout`
//!   makes the agent report the endpoint [`EndpointState::Unresponsive`]; the master then
//!   sends it nothing new and places the initiator's retransmission elsewhere. Unanswered
//!   SCCRQs are forgotten after `half_open_timeout`; then the LNS is tried again.
//!
//! What the agent cannot see: hidden Assigned Tunnel / Session ID AVPs (the tunnel secret is
//! the LNS's own), counted as `hidden` and not claimed; tunnels that existed before it started.

use core::time::Duration;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};

use l2tp::ip::Ipv4Udp;
use l2tp::time::Instant;
use l2tp::wire::avp::Avp;
use l2tp::wire::Header;
use serde::Serialize;

use crate::cluster::{
    self, ClaimOp, EndpointState, LoadReport, TunnelClaim, TunnelClaims, MAX_CLAIMS,
};

/// What the agent is told.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The endpoint's name in the cluster.
    pub name: String,
    /// Where the master forwards SCCRQs to: the LNS's LAN address and L2TP port.
    pub lns: SocketAddrV4,
    /// FIG 4: the LNS's own public address, from which it answers.
    pub global_addr: Option<Ipv4Addr>,
    /// The most tunnels the master should place on the LNS.
    pub capacity: u32,
    pub key: Vec<u8>,
    /// Load reports this often.
    pub interval: Duration,
    /// An SCCRQ unanswered this long makes the LNS unresponsive.
    pub answer_timeout: Duration,
    /// Unanswered SCCRQs are forgotten this long after they came.
    pub half_open_timeout: Duration,
    /// A tunnel that carries nothing this long is gone (its StopCCN went unseen).
    pub idle_timeout: Duration,
    /// A tunnel's claim is released this long after its first StopCCN.
    pub stop_hold: Duration,
    /// Claims not acked this long go again.
    pub claim_retry: Duration,
    /// Every live tunnel is claimed again this often.
    pub claim_refresh: Duration,
    /// The first report's and the first claims' sequence; wall-clock microseconds keep them
    /// rising across restarts.
    pub first_sequence: u64,
}

impl AgentConfig {
    pub const DEFAULT_CAPACITY: u32 = 100_000;
    pub const DEFAULT_ANSWER_TIMEOUT: Duration = Duration::from_secs(3);
    pub const DEFAULT_HALF_OPEN_TIMEOUT: Duration = Duration::from_secs(10);
    /// Three of xl2tpd's 60 s HELLO intervals, as for the NAT's entries and the master's claims.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(180);
    /// RFC 2661 §5.7's full retransmission cycle, as the NAT holds its entries.
    pub const DEFAULT_STOP_HOLD: Duration = Duration::from_secs(31);
    pub const DEFAULT_CLAIM_RETRY: Duration = Duration::from_millis(250);
    pub const DEFAULT_CLAIM_REFRESH: Duration = Duration::from_secs(10);

    pub fn new(name: impl Into<String>, lns: SocketAddrV4, key: impl Into<Vec<u8>>) -> Self {
        AgentConfig {
            name: name.into(),
            lns,
            global_addr: None,
            capacity: AgentConfig::DEFAULT_CAPACITY,
            key: key.into(),
            interval: Duration::from_secs(1),
            answer_timeout: AgentConfig::DEFAULT_ANSWER_TIMEOUT,
            half_open_timeout: AgentConfig::DEFAULT_HALF_OPEN_TIMEOUT,
            idle_timeout: AgentConfig::DEFAULT_IDLE_TIMEOUT,
            stop_hold: AgentConfig::DEFAULT_STOP_HOLD,
            claim_retry: AgentConfig::DEFAULT_CLAIM_RETRY,
            claim_refresh: AgentConfig::DEFAULT_CLAIM_REFRESH,
            first_sequence: 1,
        }
    }
}

/// What the agent counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AgentStats {
    /// Every SCCRQ that reached the LNS, retransmissions included (reported).
    pub sccrq_received: u64,
    pub tunnels_established: u64,
    /// Ended by a StopCCN (either way).
    pub tunnels_closed: u64,
    /// Silent for `idle_timeout`.
    pub tunnels_timed_out: u64,
    pub sessions_established: u64,
    pub sessions_closed: u64,
    /// SCCRQs forgotten unanswered (after `half_open_timeout`).
    pub sccrq_unanswered: u64,
    /// SCCRQs answered with something else than an SCCRP (a StopCCN: refused).
    pub sccrq_refused: u64,
    /// Datagrams of the LNS's port that are no L2TPv2 the agent can read.
    pub malformed: u64,
    /// Assigned Tunnel or Session IDs the agent could not read (hidden AVPs).
    pub hidden: u64,
    pub reports_sent: u64,
    pub claim_messages_sent: u64,
    pub claims_sent: u64,
    pub releases_sent: u64,
    /// Claims sent again (not acked in time, a refresh, or a new master).
    pub claims_resent: u64,
    pub acks: u64,
    /// Acks that are forged, for nothing we sent recently, or malformed.
    pub acks_refused: u64,
}

/// The agent's status file and `status` answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentStatus {
    pub name: String,
    pub lns: SocketAddrV4,
    pub global_addr: Option<Ipv4Addr>,
    pub state: EndpointState,
    /// Live tunnels (not stopping) and SCCRQs not yet answered: what the reports say.
    pub tunnels: u32,
    pub half_open: u32,
    pub sessions: u32,
    /// Tunnels ended and held for their StopCCN's retransmissions.
    pub stopping: u32,
    pub claims_unacked: u32,
    /// The master that acked last, and how long ago.
    pub master: Option<String>,
    pub last_ack_age_ms: Option<u64>,
    pub stats: AgentStats,
}

#[derive(Debug, Clone)]
struct Tunnel {
    /// The initiator's ID: the Tunnel ID of every packet from the LNS.
    lac_tunnel_id: u16,
    last_seen: Instant,
    stopping: Option<Instant>,
    /// The LNS's Session IDs.
    sessions: HashSet<u16>,
}

/// Claims sent and not yet acked.
#[derive(Debug, Clone)]
struct Unacked {
    sent: Instant,
    claims: Vec<TunnelClaim>,
}

/// The agent: see the module documentation.
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    /// (initiator, the LNS's Tunnel ID) → tunnel.
    tunnels: HashMap<(SocketAddrV4, u16), Tunnel>,
    /// (initiator, the initiator's Tunnel ID) → the LNS's Tunnel ID.
    by_lac_id: HashMap<(SocketAddrV4, u16), u16>,
    /// SCCRQs not answered yet: (initiator, its Assigned Tunnel ID) → when the first came.
    half_open: HashMap<(SocketAddrV4, u16), Instant>,
    /// When the LNS last answered an SCCRQ.
    last_answer: Option<Instant>,
    state: EndpointState,
    report_sequence: u64,
    claims_sequence: u64,
    next_report: Instant,
    next_refresh: Instant,
    /// When tunnels and unanswered SCCRQs are next looked over for their timeouts.
    next_sweep: Instant,
    /// Claims to send at the next `poll_transmit`.
    pending: Vec<TunnelClaim>,
    unacked: BTreeMap<u64, Unacked>,
    /// Report sequences of the last few reports, and those of the last claim messages (sent
    /// again since, or cleared by a refresh, the master may still ack them): an ack must name
    /// one of them.
    recent_reports: VecDeque<u64>,
    recent_claims: VecDeque<u64>,
    master: Option<String>,
    last_ack: Option<Instant>,
    out: VecDeque<Vec<u8>>,
    stats: AgentStats,
    latest: Instant,
}

/// Reports and claim messages an ack may name: a few seconds' worth.
const RECENT: usize = 16;
/// Unacked claim messages kept at most; past that the oldest are left to the next refresh.
const MAX_UNACKED: usize = 1024;
/// How often tunnels and unanswered SCCRQs are looked over (their timeouts are seconds).
const SWEEP_EVERY: Duration = Duration::from_millis(250);

impl Agent {
    pub fn new(config: AgentConfig) -> Agent {
        Agent {
            report_sequence: config.first_sequence,
            claims_sequence: config.first_sequence,
            next_refresh: Instant::ZERO + config.claim_refresh,
            config,
            tunnels: HashMap::new(),
            by_lac_id: HashMap::new(),
            half_open: HashMap::new(),
            last_answer: None,
            state: EndpointState::InService,
            next_report: Instant::ZERO,
            next_sweep: Instant::ZERO,
            pending: Vec::new(),
            unacked: BTreeMap::new(),
            recent_reports: VecDeque::new(),
            recent_claims: VecDeque::new(),
            master: None,
            last_ack: None,
            out: VecDeque::new(),
            stats: AgentStats::default(),
            latest: Instant::ZERO,
        }
    }

    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    fn is_lns(&self, addr: SocketAddrV4) -> bool {
        addr.port() == self.config.lns.port()
            && (*addr.ip() == *self.config.lns.ip() || Some(*addr.ip()) == self.config.global_addr)
    }

    /// One IPv4 packet seen on the LNS's port (either way). Anything that is not the LNS's
    /// L2TP is ignored or counted; nothing here can panic, whatever the bytes.
    pub fn observe(&mut self, now: Instant, packet: &[u8]) {
        self.latest = self.latest.max(now);
        let Ok(datagram) = Ipv4Udp::new_checked(packet) else {
            return;
        };
        let (to_lns, peer) = if self.is_lns(datagram.dst_addr()) {
            (true, datagram.src_addr())
        } else if self.is_lns(datagram.src_addr()) {
            (false, datagram.dst_addr())
        } else {
            return;
        };
        let Ok(header) = Header::new_checked(datagram.udp_payload()) else {
            self.stats.malformed += 1;
            return;
        };
        let tunnel_id = header.tunnel_id();
        // Which tunnel: the LNS's ID is in the packets to it, the initiator's in those from it.
        let key = if to_lns {
            Some((peer, tunnel_id)).filter(|k| self.tunnels.contains_key(k))
        } else {
            self.by_lac_id
                .get(&(peer, tunnel_id))
                .map(|&lns_id| (peer, lns_id))
        };
        if let Some(tunnel) = key.and_then(|k| self.tunnels.get_mut(&k)) {
            tunnel.last_seen = now;
        }
        if !header.is_control() {
            return;
        }
        let Some(message) = read_control(header.payload()) else {
            if !header.payload().is_empty() {
                self.stats.malformed += 1;
            }
            return; // a ZLB
        };
        match (to_lns, message.kind) {
            (true, SCCRQ) if tunnel_id == 0 => {
                self.stats.sccrq_received += 1;
                match message.assigned_tunnel {
                    Assigned::Plain(lac_id) => {
                        if !self.by_lac_id.contains_key(&(peer, lac_id)) {
                            self.half_open.entry((peer, lac_id)).or_insert(now);
                        }
                    }
                    Assigned::Hidden => self.stats.hidden += 1,
                    Assigned::Absent => self.stats.malformed += 1,
                }
            }
            (false, kind) => {
                // Any reply to an SCCRQ answers it; an SCCRP opens the tunnel.
                if self.half_open.remove(&(peer, tunnel_id)).is_some() {
                    self.last_answer = Some(now);
                    if kind != SCCRP {
                        self.stats.sccrq_refused += 1;
                    }
                }
                match kind {
                    SCCRP => self.on_sccrp(now, peer, tunnel_id, message.assigned_tunnel),
                    ICRP => {
                        if let (Some(k), Assigned::Plain(session)) = (key, message.assigned_session)
                        {
                            self.session_up(k, session);
                        } else if message.assigned_session == Assigned::Hidden {
                            self.stats.hidden += 1;
                        }
                    }
                    CDN => {
                        if let (Some(k), Assigned::Plain(session)) = (key, message.assigned_session)
                        {
                            self.session_down(k, session);
                        }
                    }
                    STOPCCN => {
                        if let Some(k) = key {
                            self.stopping(now, k);
                        }
                    }
                    _ => {}
                }
            }
            (true, CDN) => {
                if let Some(k) = key {
                    self.session_down(k, header.session_id());
                }
            }
            (true, STOPCCN) => {
                if let Some(k) = key {
                    self.stopping(now, k);
                }
            }
            _ => {}
        }
    }

    fn on_sccrp(&mut self, now: Instant, initiator: SocketAddrV4, lac_id: u16, assigned: Assigned) {
        let lns_id = match assigned {
            Assigned::Plain(id) if id != 0 => id,
            Assigned::Hidden => {
                self.stats.hidden += 1;
                return;
            }
            _ => {
                self.stats.malformed += 1;
                return;
            }
        };
        if self.tunnels.contains_key(&(initiator, lns_id)) {
            return; // a retransmitted SCCRP
        }
        self.stats.tunnels_established += 1;
        self.tunnels.insert(
            (initiator, lns_id),
            Tunnel {
                lac_tunnel_id: lac_id,
                last_seen: now,
                stopping: None,
                sessions: HashSet::new(),
            },
        );
        self.by_lac_id.insert((initiator, lac_id), lns_id);
        self.pending.push(TunnelClaim {
            op: ClaimOp::Claim,
            initiator,
            tunnel_id: lns_id,
        });
    }

    fn session_up(&mut self, key: (SocketAddrV4, u16), session: u16) {
        if let Some(tunnel) = self.tunnels.get_mut(&key) {
            if tunnel.stopping.is_none() && tunnel.sessions.insert(session) {
                self.stats.sessions_established += 1;
            }
        }
    }

    fn session_down(&mut self, key: (SocketAddrV4, u16), session: u16) {
        if let Some(tunnel) = self.tunnels.get_mut(&key) {
            if tunnel.sessions.remove(&session) {
                self.stats.sessions_closed += 1;
            }
        }
    }

    fn stopping(&mut self, now: Instant, key: (SocketAddrV4, u16)) {
        if let Some(tunnel) = self.tunnels.get_mut(&key) {
            if tunnel.stopping.is_none() {
                tunnel.stopping = Some(now);
                self.stats.tunnels_closed += 1;
                self.stats.sessions_closed += tunnel.sessions.len() as u64;
                tunnel.sessions.clear();
            }
        }
    }

    /// Ends tunnels, unanswered SCCRQs and unacked claims whose time has come; reports and
    /// refreshes when due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.latest = self.latest.max(now);
        if now >= self.next_sweep {
            self.next_sweep = now + SWEEP_EVERY;
            self.sweep(now);
        }
        self.update_state(now);
        // Claims nobody acked go again, under a new sequence.
        let retry = self.config.claim_retry;
        let due: Vec<u64> = self
            .unacked
            .iter()
            .take_while(|(_, u)| now.saturating_duration_since(u.sent) >= retry)
            .map(|(&sequence, _)| sequence)
            .collect();
        for sequence in due {
            if let Some(unacked) = self.unacked.remove(&sequence) {
                self.stats.claims_resent += unacked.claims.len() as u64;
                self.pending.extend(unacked.claims);
            }
        }
        if now >= self.next_refresh {
            self.next_refresh = now + self.config.claim_refresh;
            self.claim_all_again();
        }
        if now >= self.next_report {
            self.next_report = now + self.config.interval;
            self.queue_report();
        }
        self.flush_claims(now);
    }

    /// Tunnels whose stop hold or idle time has passed go (their claims released), and
    /// SCCRQs unanswered for `half_open_timeout` are forgotten.
    fn sweep(&mut self, now: Instant) {
        let config = &self.config;
        let mut released = Vec::new();
        let mut timed_out = 0;
        self.tunnels.retain(|&(initiator, lns_id), tunnel| {
            let gone = match tunnel.stopping {
                Some(at) => now.saturating_duration_since(at) >= config.stop_hold,
                None => {
                    let idle =
                        now.saturating_duration_since(tunnel.last_seen) >= config.idle_timeout;
                    timed_out += u64::from(idle);
                    idle
                }
            };
            if gone {
                released.push((initiator, lns_id, tunnel.lac_tunnel_id));
            }
            !gone
        });
        self.stats.tunnels_timed_out += timed_out;
        for (initiator, lns_id, lac_id) in released {
            self.by_lac_id.remove(&(initiator, lac_id));
            self.pending.push(TunnelClaim {
                op: ClaimOp::Release,
                initiator,
                tunnel_id: lns_id,
            });
        }
        let half_open_timeout = self.config.half_open_timeout;
        let before = self.half_open.len();
        self.half_open
            .retain(|_, &mut at| now.saturating_duration_since(at) < half_open_timeout);
        self.stats.sccrq_unanswered += (before - self.half_open.len()) as u64;
    }

    /// Unresponsive while an SCCRQ older than `answer_timeout` waits and the LNS answered
    /// nothing since it came.
    fn update_state(&mut self, now: Instant) {
        let timeout = self.config.answer_timeout;
        let last_answer = self.last_answer;
        let stuck = self.half_open.values().any(|&at| {
            now.saturating_duration_since(at) >= timeout && last_answer.is_none_or(|a| a < at)
        });
        let state = if stuck {
            EndpointState::Unresponsive
        } else {
            EndpointState::InService
        };
        if state != self.state {
            match state {
                EndpointState::Unresponsive => tracing::warn!(
                    lns = %self.config.lns, unanswered = self.half_open.len(),
                    "the LNS leaves SCCRQs unanswered: reporting it unresponsive"
                ),
                _ => tracing::info!(lns = %self.config.lns, "the LNS is taken as answering again"),
            }
            self.state = state;
        }
    }

    /// Every tunnel the LNS holds, stopping ones too (their StopCCN's retransmissions and its
    /// acknowledgement must still route), claimed anew.
    fn claim_all_again(&mut self) {
        let live: Vec<TunnelClaim> = self
            .tunnels
            .keys()
            .map(|&(initiator, tunnel_id)| TunnelClaim {
                op: ClaimOp::Claim,
                initiator,
                tunnel_id,
            })
            .collect();
        self.stats.claims_resent += live.len() as u64;
        // Unacked claims are in `live` (or released since); unacked releases go again.
        let releases: Vec<TunnelClaim> = std::mem::take(&mut self.unacked)
            .into_values()
            .flat_map(|u| u.claims)
            .filter(|c| c.op == ClaimOp::Release)
            .collect();
        self.pending.retain(|c| c.op == ClaimOp::Release);
        self.pending.extend(releases);
        self.pending.extend(live);
    }

    fn queue_report(&mut self) {
        let live = self.tunnels.values().filter(|t| t.stopping.is_none());
        let (tunnels, sessions) = live.fold((0usize, 0usize), |(t, s), tunnel| {
            (t + 1, s + tunnel.sessions.len())
        });
        let report = LoadReport {
            endpoint: self.config.name.clone(),
            lan_addr: *self.config.lns.ip(),
            global_addr: self.config.global_addr,
            tunnels: u32::try_from(tunnels + self.half_open.len()).unwrap_or(u32::MAX),
            sessions: u32::try_from(sessions).unwrap_or(u32::MAX),
            capacity: self.config.capacity,
            state: self.state,
            sccrq_received: self.stats.sccrq_received,
            tunnel_ids: Vec::new(),
            sequence: self.report_sequence,
        };
        if self.recent_reports.len() >= RECENT {
            self.recent_reports.pop_front();
        }
        self.recent_reports.push_back(self.report_sequence);
        self.report_sequence = self.report_sequence.saturating_add(1);
        self.out.push_back(cluster::seal(&report, &self.config.key));
        self.stats.reports_sent += 1;
    }

    /// Seals what claims are pending, [`MAX_CLAIMS`] a message.
    fn flush_claims(&mut self, now: Instant) {
        while !self.pending.is_empty() {
            let take = self.pending.len().min(MAX_CLAIMS);
            let claims: Vec<TunnelClaim> = self.pending.drain(..take).collect();
            let sequence = self.claims_sequence;
            self.claims_sequence = self.claims_sequence.saturating_add(1);
            for claim in &claims {
                match claim.op {
                    ClaimOp::Claim => self.stats.claims_sent += 1,
                    ClaimOp::Release => self.stats.releases_sent += 1,
                }
            }
            self.stats.claim_messages_sent += 1;
            self.out.push_back(cluster::seal_claims(
                &TunnelClaims {
                    endpoint: self.config.name.clone(),
                    sequence,
                    claims: claims.clone(),
                },
                &self.config.key,
            ));
            if self.unacked.len() >= MAX_UNACKED {
                self.unacked.pop_first();
            }
            if self.recent_claims.len() >= MAX_UNACKED {
                self.recent_claims.pop_front();
            }
            self.recent_claims.push_back(sequence);
            self.unacked.insert(sequence, Unacked { sent: now, claims });
        }
    }

    /// The next sealed datagram for the master (a report or claims). New claims go out here at
    /// once, not at the next timer.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.flush_claims(now);
        self.out.pop_front()
    }

    /// A datagram on the report socket: the master's ack of a report or of claims. A master
    /// of another name than the last one knows none of our tunnels: all are claimed again.
    pub fn handle_ack(&mut self, now: Instant, bytes: &[u8]) {
        self.latest = self.latest.max(now);
        let Ok(ack) = cluster::open_ack(bytes, &self.config.key) else {
            self.stats.acks_refused += 1;
            return;
        };
        self.unacked.remove(&ack.report_sequence);
        let ours = self.recent_reports.contains(&ack.report_sequence)
            || self.recent_claims.contains(&ack.report_sequence);
        if !ours {
            self.stats.acks_refused += 1;
            return;
        }
        self.stats.acks += 1;
        self.last_ack = Some(now);
        if self.master.as_deref() != Some(ack.master.as_str()) {
            if let Some(previous) = &self.master {
                tracing::warn!(
                    previous = %previous, master = %ack.master,
                    "another master acks: claiming every live tunnel again"
                );
                self.claim_all_again();
            } else {
                tracing::info!(master = %ack.master, "the master acks");
            }
            self.master = Some(ack.master);
        }
    }

    /// When `handle_timeout` next has work.
    pub fn poll_timeout(&self) -> Instant {
        let mut next = self.next_report.min(self.next_refresh).min(self.next_sweep);
        if let Some(oldest) = self.unacked.values().map(|u| u.sent).min() {
            next = next.min(oldest + self.config.claim_retry);
        }
        if let Some(oldest) = self.half_open.values().min() {
            next = next.min(*oldest + self.config.answer_timeout);
        }
        next
    }

    pub fn status(&self) -> AgentStatus {
        let live = self.tunnels.values().filter(|t| t.stopping.is_none());
        let (tunnels, sessions) = live.fold((0usize, 0usize), |(t, s), tunnel| {
            (t + 1, s + tunnel.sessions.len())
        });
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        AgentStatus {
            name: self.config.name.clone(),
            lns: self.config.lns,
            global_addr: self.config.global_addr,
            state: self.state,
            tunnels: count(tunnels + self.half_open.len()),
            half_open: count(self.half_open.len()),
            sessions: count(sessions),
            stopping: count(self.tunnels.len() - tunnels),
            claims_unacked: count(self.unacked.values().map(|u| u.claims.len()).sum()),
            master: self.master.clone(),
            last_ack_age_ms: self.last_ack.map(|at| {
                u64::try_from(self.latest.saturating_duration_since(at).as_millis())
                    .unwrap_or(u64::MAX)
            }),
            stats: self.stats,
        }
    }
}

impl crate::metrics::Metered for AgentStatus {
    fn metrics(&self) -> crate::metrics::MetricSet {
        use crate::metrics::{fields, label, MetricSet, Value};
        let mut set = MetricSet::default();
        set.gauge(
            "agent_tunnels",
            "The LNS's live tunnels and unanswered SCCRQs, as reported.",
            f64::from(self.tunnels),
        );
        set.gauge(
            "agent_sessions",
            "The LNS's live sessions.",
            f64::from(self.sessions),
        );
        set.gauge(
            "agent_lns_answering",
            "1 while the LNS answers SCCRQs.",
            if self.state == EndpointState::Unresponsive {
                0.0
            } else {
                1.0
            },
        );
        for (event, n) in fields(&self.stats) {
            set.push(
                "agent_events",
                "What the agent saw of the LNS and sent for it, by event.",
                vec![label("event", event)],
                Value::Counter(n),
            );
        }
        set
    }
}

const SCCRQ: u16 = 1;
const SCCRP: u16 = 2;
const STOPCCN: u16 = 4;
const ICRP: u16 = 11;
const CDN: u16 = 14;

/// An Assigned Tunnel or Session ID as the agent can read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Assigned {
    Plain(u16),
    Hidden,
    Absent,
}

/// What the agent reads of a control message: its type and the IDs it assigns.
struct ControlSummary {
    kind: u16,
    assigned_tunnel: Assigned,
    assigned_session: Assigned,
}

/// Reads the Message Type (the first AVP, RFC 2661 §4.4.1) and the Assigned Tunnel ID (9) and
/// Assigned Session ID (14) AVPs. None for a ZLB or AVPs that do not parse.
fn read_control(avps: &[u8]) -> Option<ControlSummary> {
    const MESSAGE_TYPE: u16 = 0;
    const ASSIGNED_TUNNEL_ID: u16 = 9;
    const ASSIGNED_SESSION_ID: u16 = 14;
    let first = Avp::new_checked(avps, 0).ok()?;
    if first.vendor_id() != 0 || first.attr_type() != MESSAGE_TYPE || first.hidden() {
        return None;
    }
    let &[high, low] = first.value() else {
        return None;
    };
    let mut summary = ControlSummary {
        kind: u16::from_be_bytes([high, low]),
        assigned_tunnel: Assigned::Absent,
        assigned_session: Assigned::Absent,
    };
    let mut offset = 0;
    while let Some(rest) = avps.get(offset..).filter(|rest| !rest.is_empty()) {
        let avp = Avp::new_checked(rest, offset).ok()?;
        let slot = match (avp.vendor_id(), avp.attr_type()) {
            (0, ASSIGNED_TUNNEL_ID) => Some(&mut summary.assigned_tunnel),
            (0, ASSIGNED_SESSION_ID) => Some(&mut summary.assigned_session),
            _ => None,
        };
        if let Some(slot) = slot {
            *slot = match (avp.hidden(), avp.value()) {
                (true, _) => Assigned::Hidden,
                (false, &[high, low]) => Assigned::Plain(u16::from_be_bytes([high, low])),
                (false, _) => Assigned::Absent,
            };
        }
        offset += usize::from(avp.length()).max(1);
    }
    Some(summary)
}
