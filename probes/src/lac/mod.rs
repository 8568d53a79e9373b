//! The simulated LAC: opens tunnels and incoming calls against an LNS at a pace, holds them
//! with LCP echoes, tears them down cleanly, and reports what happened.
//!
//! One [`Lac`] is one initiator (one source address, one [`TunnelSet`]); the initiators of a
//! run share a [`Swarm`]: the [`Pace`] (rate, ramp, outstanding cap, the live controls) and the
//! [`Stats`] (counters and histograms). Every `Lac` works in run time: its runner's `now` plus
//! the offset between the runner's start and the run's.

mod hdrlog;
mod merge;
mod pace;
mod ppp;
mod report;
mod shard;
mod stats;
#[cfg(test)]
mod tests;
mod traffic;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddrV4;
use std::rc::Rc;
use std::time::Duration;

use l2tp::conn::reliable::{release, ReliableConfig};
use l2tp::conn::tunnel::{Event, ResultCode, TunnelState};
use l2tp::conn::tunnels::TunnelSet;
use l2tp::ppp::session::Phase as PppPhase;
use l2tp::ppp::LcpEcho;
use l2tp::time::Instant;
use l2tp::vec_map::VecMap;
use netio::runner::TunnelDriver;

/// The failure reasons of setups our own teardown cut short (Ctrl-C, the deadline, a user's
/// stop): a run stopped by its user does not count them against the target.
pub const STOPPED_BEFORE_TUNNEL_UP: &str = "stopped before the tunnel came up";
pub const STOPPED_BEFORE_SESSION_UP: &str = "stopped before the session came up";

pub use hdrlog::{read_intervals, HdrLog, HdrLogError, HdrReadError, LoggedInterval};
pub use merge::{merge, MergeError, Merged, ShardInput, ShardLine};
pub use pace::{Bucket, Grant, Pace, PaceConfig, BURST_WINDOW};
pub use ppp::{failure_reason, AuthChoice, PppLevel, PppPlan, TERMINATE_BOUND};
pub use report::{replies_hint, LacReport};
pub use shard::{Shard, ShardFiles, ShardInfo, MAX_SHARDS};
pub use stats::{
    percentiles, CsvSeries, EndpointReport, EndpointSecondRow, SecondRow, Stats, Swarm, Termination,
};
pub use traffic::{TrafficPlan, MAX_TRAFFIC_RATE, MIN_TRAFFIC_RATE, TRAFFIC_GRACE};

use crate::live::RunPhase;

/// How often an initiator looks for SCCCN acks that came on a ZLB (no event tells it).
pub const ACK_CHECK: Duration = Duration::from_millis(2);

/// How often an initiator looks at the controls, the setup timeouts and the retransmission
/// counters.
const HOUSEKEEPING: Duration = Duration::from_millis(50);

/// How often the retransmission counters of the live tunnels are read (a scan of them all).
/// A tunnel we close ourselves is read just before; one the peer ends is held for a full
/// retransmission cycle (§5.7) and read again before it goes.
const RETRANSMISSION_SCAN: Duration = Duration::from_secs(1);

/// How often a tearing-down initiator checks whether its StopCCNs are all acknowledged.
const SETTLE_CHECK: Duration = Duration::from_millis(5);

/// The default setup timeout: a request's full retransmission cycle, one capped timeout more
/// for the reply's own retransmission, and with PPP its Configure-Request cycle on top (RFC 1661
/// §4.6: Max-Configure × Restart, 30 s with 10). 39 s for L2TP alone with the RFC's defaults.
pub fn setup_bound(reliable: &ReliableConfig, ppp: &PppPlan) -> Duration {
    let l2tp = reliable.teardown_bound();
    if ppp.level == PppLevel::Off {
        return l2tp;
    }
    let restart = l2tp::ppp::fsm::FsmConfig::default().restart;
    l2tp.saturating_add(restart.saturating_mul(u32::from(ppp.max_configure)))
}

/// How long a teardown waits for its StopCCNs: LCP Terminate first when PPP runs (at most
/// [`TERMINATE_BOUND`]), then the StopCCN's retransmission schedule until acknowledged or
/// given up (§5.7, §5.8).
pub fn drain_bound(reliable: &ReliableConfig, ppp: PppLevel) -> Duration {
    let terminate = if ppp == PppLevel::Off {
        Duration::ZERO
    } else {
        TERMINATE_BOUND
    };
    terminate.saturating_add(reliable.teardown_bound())
}

/// What one initiator is asked to do.
#[derive(Debug, Clone)]
pub struct LacPlan {
    pub target: SocketAddrV4,
    pub tunnels: usize,
    pub sessions_per_tunnel: usize,
    /// How long to keep everything up once it is established.
    pub hold: Duration,
    /// LCP Echo-Requests per second on each session while holding (0: none).
    pub echo_rate: f64,
    /// Give up on a tunnel (a session) not up this long after its SCCRQ (its ICRQ).
    pub setup_timeout: Duration,
    /// Run time at which everything is torn down, whatever the phase (`--duration`).
    pub stop_at: Option<Duration>,
    /// How long a teardown waits for its StopCCNs to be acknowledged ([`drain_bound`]).
    pub drain: Duration,
    /// What each session does on top of L2TP (`--ppp`, `--auth`, …).
    pub ppp: PppPlan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Holding { until: Instant },
    TearingDown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Stage {
    /// SCCRQ (ICRQ) sent, no answer yet.
    #[default]
    Waiting,
    Up,
    Gone,
}

#[derive(Debug, Default)]
struct TunnelTrack {
    /// Run time of the SCCRQ.
    started: Instant,
    stage: Stage,
    was_up: bool,
    timed_out: bool,
    /// Ended by the operator's `terminate-tunnel`: its going down is no failure.
    terminated: bool,
    /// Index into the swarm's endpoints, once up.
    endpoint: usize,
    /// Retransmissions already counted.
    retransmitted: u64,
    /// A message of it went unacknowledged through every retransmission (§5.8).
    gave_up: bool,
    /// A sorted Vec: a tunnel's one or two sessions in a BTreeMap node took 1.1 KB.
    sessions: VecMap<u16, SessionTrack>,
}

#[derive(Debug, Default)]
struct SessionTrack {
    started: Instant,
    stage: Stage,
    timed_out: bool,
    /// Identifier and run time of the Echo-Request not answered yet.
    echo: Option<(u8, Instant)>,
    ppp: ppp::PppMarks,
}

/// One initiator.
pub struct Lac {
    plan: LacPlan,
    swarm: Rc<Swarm>,
    /// This initiator's index in the swarm.
    index: usize,
    /// Run time = the runner's `now` + this.
    offset: Duration,
    phase: Phase,
    bucket: Bucket,
    to_open: usize,
    done_opening: bool,
    pending_tunnels: usize,
    pending_sessions: usize,
    tunnels: BTreeMap<u16, TunnelTrack>,
    /// (SCCRQ run time, tunnel) in sending order: setup timeouts pop from the front.
    awaiting_reply: VecDeque<(Instant, u16)>,
    /// (ICRQ run time, tunnel, session) in sending order.
    awaiting_session: VecDeque<(Instant, u16, u16)>,
    /// Tunnels up whose SCCCN has not been seen acknowledged yet.
    awaiting_ack: Vec<u16>,
    /// Tunnels whose StopCCN is not acknowledged yet (teardown).
    unsettled: Vec<u16>,
    settled: bool,
    /// Something happened that may let the next SCCRQs go or end the phase: act at once.
    kick: bool,
    /// How many of the swarm's termination requests this initiator has looked at.
    terminations_seen: usize,
    next_open: Option<Instant>,
    /// The set's dropped replies from other addresses, as last counted into the run's.
    replies_elsewhere_seen: u64,
    replies_elsewhere_by_addr: BTreeMap<std::net::Ipv4Addr, u64>,
    next_housekeeping: Instant,
    next_retransmission_scan: Instant,
    /// Run time the teardown began.
    teardown_at: Instant,
    /// Tunnels seen with their StopCCN acknowledged.
    closed_cleanly: u64,
    next_ack_check: Instant,
    next_settle_check: Instant,
    next_echo: Option<Instant>,
    echo_id: u8,
    magic: u32,
    /// The sessions' PPP, unless `--ppp off`.
    ppp: Option<ppp::Subscribers>,
}

fn describe(result: &ResultCode, by_peer: bool) -> String {
    let from = if by_peer { "from peer" } else { "ours" };
    format!("{result} [{from}]")
}

impl Lac {
    /// Initiator `index` of the swarm; `offset` turns its runner's clock into run time.
    pub fn new(plan: LacPlan, magic: u32, swarm: Rc<Swarm>, index: usize, offset: Duration) -> Lac {
        {
            let mut stats = swarm.stats_mut();
            stats.tunnels_requested += plan.tunnels as u64;
            stats.sessions_requested +=
                (plan.tunnels as u64).saturating_mul(plan.sessions_per_tunnel as u64);
        }
        let ppp = (plan.ppp.level != PppLevel::Off).then(|| {
            let seed = (u64::from(magic) << 32) ^ (index as u64).wrapping_mul(0x5851_f42d);
            ppp::Subscribers::new(plan.ppp.clone(), seed, &swarm)
        });
        let bucket = Bucket::staggered(index, swarm.pace.config().initiators);
        Lac {
            to_open: plan.tunnels,
            swarm,
            index,
            offset,
            phase: Phase::Connecting,
            bucket,
            done_opening: false,
            pending_tunnels: 0,
            pending_sessions: 0,
            tunnels: BTreeMap::new(),
            awaiting_reply: VecDeque::new(),
            awaiting_session: VecDeque::new(),
            awaiting_ack: Vec::new(),
            unsettled: Vec::new(),
            settled: false,
            kick: true,
            terminations_seen: 0,
            next_open: None,
            replies_elsewhere_seen: 0,
            replies_elsewhere_by_addr: BTreeMap::new(),
            next_housekeeping: Instant::ZERO,
            next_retransmission_scan: Instant::ZERO,
            teardown_at: Instant::ZERO,
            closed_cleanly: 0,
            next_ack_check: Instant::ZERO,
            next_settle_check: Instant::ZERO,
            next_echo: None,
            echo_id: 0,
            magic,
            ppp,
            plan,
        }
    }

    fn tearing_down(&self) -> bool {
        self.phase == Phase::TearingDown
    }

    fn run_time(&self, now: Instant) -> Instant {
        now + self.offset
    }

    fn runner_time(&self, t: Instant) -> Instant {
        let offset = u64::try_from(self.offset.as_micros()).unwrap_or(u64::MAX);
        Instant::from_micros(t.as_micros().saturating_sub(offset))
    }

    fn stop_opening(&mut self) {
        if !self.done_opening {
            self.done_opening = true;
            self.swarm.pace.done_opening();
        }
    }

    fn set_phase_name(&self, t: Instant) {
        let name = match self.phase {
            Phase::Connecting
                if self.swarm.pace.target_rate(t) < self.swarm.pace.control().rate() =>
            {
                RunPhase::Ramping
            }
            Phase::Connecting => RunPhase::Connecting,
            Phase::Holding { .. } => RunPhase::Holding,
            Phase::TearingDown if self.settled => RunPhase::Done,
            Phase::TearingDown => RunPhase::TearingDown,
        };
        if let Some(slot) = self.swarm.stats_mut().phases.get_mut(self.index) {
            *slot = name;
        }
    }

    fn open_tunnels(&mut self, set: &mut TunnelSet, now: Instant, t: Instant) {
        self.next_open = None;
        if self.to_open == 0 {
            return;
        }
        let grant = self.swarm.pace.grant(&mut self.bucket, t, self.to_open);
        self.next_open = grant.retry_at;
        for _ in 0..grant.count {
            self.to_open -= 1;
            match set.connect(now, self.plan.target) {
                Some(id) => {
                    self.swarm.pace.sent(&mut self.bucket, 1);
                    self.swarm.stats_mut().tunnel_started(t);
                    self.pending_tunnels += 1;
                    self.awaiting_reply.push_back((t, id));
                    self.tunnels.insert(
                        id,
                        TunnelTrack {
                            started: t,
                            ..TunnelTrack::default()
                        },
                    );
                }
                None => {
                    let mut stats = self.swarm.stats_mut();
                    stats.tunnels_failed += 1;
                    stats.sessions_failed += self.plan.sessions_per_tunnel as u64;
                    stats.fail("no free tunnel ID".to_string());
                }
            }
        }
        if self.to_open == 0 {
            self.stop_opening();
        }
    }

    /// Setup timeouts, control-message retransmission counts.
    fn housekeeping(&mut self, set: &mut TunnelSet, now: Instant, t: Instant) {
        let timeout = self.plan.setup_timeout;
        while let Some(&(started, id)) = self.awaiting_reply.front() {
            let waiting = self
                .tunnels
                .get(&id)
                .is_some_and(|tr| tr.started == started && tr.stage == Stage::Waiting);
            if waiting && t.saturating_duration_since(started) < timeout {
                break;
            }
            self.awaiting_reply.pop_front();
            if waiting {
                if let Some(track) = self.tunnels.get_mut(&id) {
                    track.timed_out = true;
                    // It goes at once (no Tunnel ID from the peer, no StopCCN to hold for).
                    if let Some(tunnel) = set.tunnel(id) {
                        let now = tunnel.reliable().stats().retransmitted;
                        let new = now.saturating_sub(track.retransmitted);
                        track.retransmitted = now;
                        self.swarm.stats_mut().retransmissions += new;
                    }
                }
                if let Some(tunnel) = set.tunnel_mut(id) {
                    let result = ResultCode::error(ResultCode::GENERAL_ERROR, 0, "setup timeout");
                    tunnel.close(now, result);
                }
            }
        }
        while let Some(&(started, id, sid)) = self.awaiting_session.front() {
            let waiting = self
                .tunnels
                .get(&id)
                .and_then(|tr| tr.sessions.get(&sid))
                .is_some_and(|s| s.started == started && s.stage == Stage::Waiting);
            if waiting && t.saturating_duration_since(started) < timeout {
                break;
            }
            self.awaiting_session.pop_front();
            if waiting {
                if let Some(s) = self
                    .tunnels
                    .get_mut(&id)
                    .and_then(|tr| tr.sessions.get_mut(&sid))
                {
                    s.timed_out = true;
                }
                if let Some(tunnel) = set.tunnel_mut(id) {
                    let result = ResultCode::error(ResultCode::GENERAL_ERROR, 0, "setup timeout");
                    tunnel.close_session(sid, result);
                }
            }
        }
        // A setup burst leaves big buffers behind (24 octets a tunnel); a holding LAC needs none.
        release(&mut self.awaiting_reply);
        release(&mut self.awaiting_session);
        if t >= self.next_retransmission_scan {
            self.next_retransmission_scan = t + RETRANSMISSION_SCAN;
            self.count_retransmissions(set);
        }
        self.set_phase_name(t);
    }

    /// Adds what the live tunnels retransmitted since the last look.
    /// The replies the set dropped because they came from another address than the target's
    /// (no `--any-source`), into the run's figures.
    fn count_replies_elsewhere(&mut self, set: &TunnelSet) {
        if set.stats().foreign_replies == self.replies_elsewhere_seen {
            return;
        }
        self.replies_elsewhere_seen = set.stats().foreign_replies;
        let mut stats = self.swarm.stats_mut();
        for (addr, n) in set.foreign_sources() {
            let seen = self.replies_elsewhere_by_addr.entry(*addr).or_insert(0);
            let new = n.saturating_sub(*seen);
            *seen = *n;
            let total = stats.replies_elsewhere.entry(*addr).or_insert(0);
            *total = total.saturating_add(new);
        }
    }

    fn count_retransmissions(&mut self, set: &TunnelSet) {
        let mut new = 0;
        for id in set.tunnel_ids() {
            let (Some(tunnel), Some(track)) = (set.tunnel(id), self.tunnels.get_mut(&id)) else {
                continue;
            };
            let now = tunnel.reliable().stats().retransmitted;
            new += now.saturating_sub(track.retransmitted);
            track.retransmitted = now;
        }
        if new > 0 {
            self.swarm.stats_mut().retransmissions += new;
        }
    }

    /// Records the tunnel setups whose SCCCN the peer has acknowledged (SCCRQ and SCCCN are
    /// our first two messages).
    fn check_acks(&mut self, set: &TunnelSet, t: Instant) {
        let tunnels = &self.tunnels;
        let swarm = &self.swarm;
        self.awaiting_ack.retain(|id| {
            let Some(track) = tunnels.get(id).filter(|tr| tr.stage == Stage::Up) else {
                return false;
            };
            match set.tunnel(*id) {
                Some(tunnel) if tunnel.reliable().stats().acked >= 2 => {
                    stats::record(&mut swarm.stats_mut().tunnel_setup, track.started, t);
                    false
                }
                Some(_) => true,
                None => false,
            }
        });
    }

    fn connecting_done(&self) -> bool {
        self.to_open == 0 && self.pending_tunnels == 0 && self.pending_sessions == 0
    }

    /// The operator's `terminate-…` requests since the last look, for the tunnels and
    /// sessions this initiator has up.
    fn apply_terminations(&mut self, set: &mut TunnelSet, now: Instant) {
        let new = self.swarm.terminations_since(self.terminations_seen);
        self.terminations_seen += new.len();
        for what in new {
            match what {
                Termination::Tunnel { tunnel, result } => {
                    let Some(track) = self.tunnels.get_mut(&tunnel) else {
                        continue;
                    };
                    if track.stage != Stage::Up || track.terminated {
                        continue;
                    }
                    let Some(tun) = set.tunnel_mut(tunnel) else {
                        continue;
                    };
                    track.terminated = true;
                    tun.close(now, ResultCode::new(result));
                    self.swarm.stats_mut().tunnels_terminated += 1;
                    tracing::info!(tunnel, result, "tunnel terminated by the operator");
                }
                Termination::Session {
                    tunnel,
                    session,
                    result,
                } => {
                    let up = self
                        .tunnels
                        .get(&tunnel)
                        .and_then(|track| track.sessions.get(&session))
                        .is_some_and(|s| s.stage == Stage::Up);
                    let Some(tun) = set.tunnel_mut(tunnel).filter(|_| up) else {
                        continue;
                    };
                    tun.close_session(session, ResultCode::new(result));
                    self.swarm.stats_mut().sessions_terminated += 1;
                    tracing::info!(
                        tunnel,
                        session,
                        result,
                        "session terminated by the operator"
                    );
                }
            }
        }
        self.ppp_pump(set, now);
    }

    fn start_teardown(&mut self, set: &mut TunnelSet, now: Instant) {
        // Tunnels still waiting for an SCCRP go at once: read their counters first.
        self.count_retransmissions(set);
        self.phase = Phase::TearingDown;
        self.teardown_at = self.run_time(now);
        self.stop_opening();
        self.to_open = 0;
        self.next_echo = None;
        self.traffic_stop();
        let live: Vec<u16> = (self.tunnels.iter())
            .filter(|(_, track)| track.stage != Stage::Gone)
            .map(|(&id, _)| id)
            .collect();
        for id in live {
            let sids: Vec<u16> = set
                .tunnel(id)
                .map(|tunnel| tunnel.session_ids().collect())
                .unwrap_or_default();
            // A subscriber says goodbye (LCP Terminate) before its CDN; the StopCCN waits.
            let mut terminating = false;
            for sid in sids {
                if self.ppp_terminate(now, (id, sid)) {
                    terminating = true;
                } else if let Some(tunnel) = set.tunnel_mut(id) {
                    tunnel.close_session(sid, ResultCode::new(ResultCode::ADMIN_CALL));
                }
            }
            if terminating {
                self.ppp_stop_after(id);
            } else if let Some(tunnel) = set.tunnel_mut(id) {
                tunnel.close(now, ResultCode::new(ResultCode::CLEAR_TUNNEL));
            }
        }
        self.ppp_pump(set, now);
        self.unsettled = set.tunnel_ids().collect();
        self.settled = false;
    }

    /// Drops the tunnels whose StopCCN is acknowledged (counting those that were up) or that
    /// are gone; settled when none is left, or when the teardown has had its `drain` time.
    fn settle(&mut self, set: &TunnelSet, t: Instant) {
        let tunnels = &self.tunnels;
        let mut clean = 0;
        self.unsettled.retain(|&id| match set.tunnel(id) {
            Some(tunnel)
                if tunnel.state() == TunnelState::Closing && tunnel.reliable().is_idle() =>
            {
                clean += u64::from(tunnels.get(&id).is_some_and(|tr| tr.was_up));
                false
            }
            Some(tunnel) => tunnel.state() != TunnelState::Closed,
            // Gone: after its StopCCN was acknowledged (between two looks), unless it was given
            // up on (§5.8), which is counted by message instead.
            None => {
                clean += u64::from(tunnels.get(&id).is_some_and(|tr| tr.was_up && !tr.gave_up));
                false
            }
        });
        self.closed_cleanly += clean;
        self.settled = self.unsettled.is_empty()
            || t.saturating_duration_since(self.teardown_at) >= self.plan.drain;
    }

    fn send_echoes(&mut self, set: &mut TunnelSet, now: Instant, t: Instant) {
        if self.ppp_on() {
            return self.send_ppp_echoes(set, now, t);
        }
        self.echo_id = self.echo_id.wrapping_add(1);
        let frame = LcpEcho::request(self.echo_id, self.magic).to_frame();
        let mut sent = 0;
        for (&id, track) in &mut self.tunnels {
            if track.stage != Stage::Up {
                continue;
            }
            let Some(tunnel) = set.tunnel_mut(id) else {
                continue;
            };
            for (&sid, session) in &mut track.sessions {
                if session.stage == Stage::Up && tunnel.send_data(sid, &frame) {
                    session.echo = Some((self.echo_id, t));
                    sent += 1;
                }
            }
        }
        self.swarm.stats_mut().echo_sent += sent;
    }

    /// Final figures of this initiator (clean closes, last retransmissions) into the swarm;
    /// call after the runner returns.
    pub fn finish(&mut self, set: &TunnelSet) {
        self.count_retransmissions(set);
        self.count_replies_elsewhere(set);
        self.stop_opening();
        if self.phase == Phase::TearingDown {
            let t = self.teardown_at + self.plan.drain;
            self.settle(set, t);
        }
        let mut stats = self.swarm.stats_mut();
        stats.tunnels_closed_cleanly += self.closed_cleanly;
        // What the drain bound cut short: neither acknowledged nor given up.
        stats.teardown_cut_off += self.unsettled.len() as u64;
        drop(stats);
        if let Some(slot) = self.swarm.stats_mut().phases.get_mut(self.index) {
            *slot = RunPhase::Done;
        }
    }
}

impl TunnelDriver for Lac {
    fn on_event(&mut self, set: &mut TunnelSet, now: Instant, tunnel: u16, event: Event) {
        let t = self.run_time(now);
        let sessions = self.plan.sessions_per_tunnel;
        let tearing_down = self.phase == Phase::TearingDown;
        let Some(track) = self.tunnels.get_mut(&tunnel) else {
            return;
        };
        match event {
            Event::TunnelUp { peer_host_name, .. } => {
                if track.stage != Stage::Waiting {
                    return;
                }
                track.stage = Stage::Up;
                track.was_up = true;
                self.pending_tunnels = self.pending_tunnels.saturating_sub(1);
                self.swarm.pace.answered(&mut self.bucket);
                self.kick = true;
                let peer = set.peer_of(tunnel);
                let address = peer.map_or_else(String::new, |p| p.to_string());
                let key = if peer_host_name.is_empty() {
                    address.clone()
                } else {
                    peer_host_name
                };
                {
                    let mut stats = self.swarm.stats_mut();
                    stats::record(&mut stats.sccrq_to_sccrp, track.started, t);
                    track.endpoint = stats.tunnel_up(t, key, address);
                }
                self.awaiting_ack.push(tunnel);
                if tearing_down {
                    return;
                }
                if let Some(tun) = set.tunnel_mut(tunnel) {
                    for _ in 0..sessions {
                        match tun.open_incoming_call() {
                            Some(sid) => {
                                track.sessions.insert(
                                    sid,
                                    SessionTrack {
                                        started: t,
                                        ..SessionTrack::default()
                                    },
                                );
                                self.pending_sessions += 1;
                                self.awaiting_session.push_back((t, tunnel, sid));
                            }
                            None => {
                                let mut stats = self.swarm.stats_mut();
                                stats.sessions_failed += 1;
                                stats.fail("no free session ID".to_string());
                            }
                        }
                    }
                }
            }
            Event::TunnelDown { result, by_peer } => {
                let stage = std::mem::replace(&mut track.stage, Stage::Gone);
                let mut stats = self.swarm.stats_mut();
                for s in track.sessions.values_mut() {
                    ppp::release(&mut stats, s);
                }
                match stage {
                    Stage::Waiting => {
                        self.pending_tunnels = self.pending_tunnels.saturating_sub(1);
                        self.swarm.pace.answered(&mut self.bucket);
                        self.kick = true;
                        stats.tunnels_failed += 1;
                        // Its sessions were never opened.
                        stats.sessions_failed += sessions as u64;
                        let why = if track.timed_out {
                            "tunnel setup timeout".to_string()
                        } else if tearing_down {
                            STOPPED_BEFORE_TUNNEL_UP.to_string()
                        } else {
                            format!("StopCCN {}", describe(&result, by_peer))
                        };
                        stats.fail(why);
                    }
                    Stage::Up => {
                        stats.tunnel_gone(track.endpoint);
                        if !tearing_down && !track.terminated {
                            // An established tunnel lost before we asked: a failure too.
                            stats.tunnels_failed += 1;
                            stats.fail(format!(
                                "tunnel lost: StopCCN {}",
                                describe(&result, by_peer)
                            ));
                        }
                    }
                    Stage::Gone => {}
                }
                drop(stats);
                self.ppp_tunnel_gone(tunnel);
            }
            Event::SessionUp { session_id, .. } => {
                let Some(s) = track.sessions.get_mut(&session_id) else {
                    return;
                };
                if s.stage != Stage::Waiting || s.ppp.iccn.is_some() {
                    return;
                }
                let ppp = self.ppp.is_some();
                let mut stats = self.swarm.stats_mut();
                stats::record(&mut stats.session_setup, s.started, t);
                if ppp {
                    // Up when PPP reaches its level; the ICCN went out with this event.
                    s.ppp.iccn = Some(t);
                } else {
                    s.stage = Stage::Up;
                    self.pending_sessions = self.pending_sessions.saturating_sub(1);
                    self.kick = true;
                    stats.session_up(t, track.endpoint);
                }
                drop(stats);
                // The ICRP usually carries the ack of our SCCCN.
                if set
                    .tunnel(tunnel)
                    .is_some_and(|tun| tun.reliable().stats().acked >= 2)
                {
                    if let Some(i) = self.awaiting_ack.iter().position(|&id| id == tunnel) {
                        self.awaiting_ack.swap_remove(i);
                        stats::record(&mut self.swarm.stats_mut().tunnel_setup, track.started, t);
                    }
                }
                if ppp && !tearing_down {
                    self.ppp_when_connected(set, now, (tunnel, session_id));
                }
            }
            Event::SessionDown {
                session_id,
                result,
                by_peer,
            } => {
                let Some(s) = track.sessions.get_mut(&session_id) else {
                    return;
                };
                let stage = std::mem::replace(&mut s.stage, Stage::Gone);
                let mut stats = self.swarm.stats_mut();
                ppp::release(&mut stats, s);
                let timed_out = s.timed_out;
                let endpoint = track.endpoint;
                drop(stats);
                let ppp_phase = self.ppp_lower_down(set, now, (tunnel, session_id));
                let mut stats = self.swarm.stats_mut();
                match stage {
                    Stage::Waiting => {
                        self.pending_sessions = self.pending_sessions.saturating_sub(1);
                        self.kick = true;
                        stats.sessions_failed += 1;
                        let (why, ppp_reason) = if let (true, Some(phase)) = (timed_out, ppp_phase)
                        {
                            (format!("session setup timeout in PPP {phase}"), true)
                        } else if timed_out {
                            ("session setup timeout".to_string(), false)
                        } else if tearing_down && !by_peer {
                            (STOPPED_BEFORE_SESSION_UP.to_string(), false)
                        } else if let Some(phase) = ppp_phase.filter(|&p| p != PppPhase::Dead) {
                            // An LNS may end a call on a refused login with only a CDN
                            // (l2tpns): the phase says where.
                            (
                                format!("PPP {phase}: CDN {}", describe(&result, by_peer)),
                                true,
                            )
                        } else {
                            (format!("CDN {}", describe(&result, by_peer)), false)
                        };
                        stats.ppp_failures += u64::from(ppp_reason);
                        stats.fail(why);
                    }
                    Stage::Up => {
                        stats.session_gone(endpoint);
                        if !tearing_down && by_peer {
                            stats.sessions_failed += 1;
                            stats.fail(format!("session lost: CDN {}", describe(&result, by_peer)));
                        }
                    }
                    Stage::Gone => {}
                }
            }
            Event::Data { session_id, frame } if self.ppp.is_some() => {
                self.ppp_data(set, now, (tunnel, session_id), &frame);
            }
            Event::Data { session_id, frame } => {
                let Some(echo) = LcpEcho::parse(&frame) else {
                    return;
                };
                let mut stats = self.swarm.stats_mut();
                let answer = if echo.reply {
                    stats.echo_replies += 1;
                    true
                } else if echo.magic == self.magic {
                    stats.echo_looped_back += 1;
                    true
                } else {
                    false
                };
                if let Some(s) = track.sessions.get_mut(&session_id) {
                    if let Some((id, sent)) = s.echo {
                        if answer && id == echo.identifier {
                            s.echo = None;
                            stats::record(&mut stats.echo_rtt, sent, t);
                        }
                    }
                }
            }
            Event::GaveUp(gave_up) => {
                tracing::debug!(tunnel, %gave_up, "gave up (§5.8)");
                track.gave_up = true;
                let name = gave_up.message_name().to_string();
                *self.swarm.stats_mut().given_up.entry(name).or_default() += 1;
            }
            Event::Closed | Event::WanError { .. } | Event::LinkInfo { .. } => {}
        }
    }

    fn on_tick(&mut self, set: &mut TunnelSet, now: Instant) -> Option<Instant> {
        let t = self.run_time(now);
        self.count_replies_elsewhere(set);
        self.ppp_tick(set, now);
        let ppp_due = self.ppp_timeout().map(|at| self.run_time(at));
        let hold_end = match self.phase {
            Phase::Holding { until } => Some(until),
            _ => None,
        };
        let checking_acks = !self.awaiting_ack.is_empty();
        let tearing_down = self.phase == Phase::TearingDown;
        let due = [
            Some(self.next_housekeeping),
            self.next_open,
            checking_acks.then_some(self.next_ack_check),
            self.next_echo,
            hold_end,
            (tearing_down && !self.settled).then_some(self.next_settle_check),
            ppp_due,
            self.traffic_due(),
        ]
        .into_iter()
        .flatten()
        .min();
        if !self.kick && due.is_some_and(|d| t < d) {
            return due.map(|d| self.runner_time(d));
        }
        self.kick = false;

        // The controls and the hard stop come first.
        let stop = self.swarm.pace.control().stop_requested()
            || self.plan.stop_at.is_some_and(|s| t >= Instant::ZERO + s);
        if stop && !tearing_down {
            self.start_teardown(set, now);
        }
        if t >= self.next_housekeeping {
            self.next_housekeeping = t + HOUSEKEEPING;
            self.housekeeping(set, now, t);
            self.apply_terminations(set, now);
        }
        if !self.awaiting_ack.is_empty() && t >= self.next_ack_check {
            self.next_ack_check = t + ACK_CHECK;
            self.check_acks(set, t);
        }
        match self.phase {
            Phase::Connecting => {
                // Also before `next_open`: an answer may have freed room under the cap.
                self.open_tunnels(set, now, t);
                if self.connecting_done() {
                    let mut until = t + self.plan.hold;
                    if let Some(stop) = self.plan.stop_at {
                        until = until.min(Instant::ZERO + stop);
                    }
                    self.phase = Phase::Holding { until };
                    if self.plan.echo_rate > 0.0 {
                        // The first keepalive one interval in, as pppd's lcp-echo-interval:
                        // a peer's PPP that has just been started (xl2tpd's pppd, whose tty is
                        // still in cooked mode for a moment) is not asked at once.
                        let period = Duration::from_secs_f64(1.0 / self.plan.echo_rate);
                        self.next_echo = Some(t + period);
                    }
                    self.traffic_start(t);
                    self.set_phase_name(t);
                }
            }
            Phase::Holding { until } => {
                if t >= until {
                    self.start_teardown(set, now);
                } else {
                    self.traffic_tick(set, t, until);
                    // Echoes stop a second before teardown so the last answers can arrive.
                    let quiet = until.saturating_duration_since(t) < Duration::from_secs(1);
                    match self.next_echo {
                        Some(at) if t >= at && !quiet => {
                            self.send_echoes(set, now, t);
                            let period = Duration::from_secs_f64(1.0 / self.plan.echo_rate);
                            self.next_echo = Some(at + period);
                        }
                        Some(_) if quiet => self.next_echo = None,
                        _ => {}
                    }
                }
            }
            Phase::TearingDown => {}
        }
        if self.phase == Phase::TearingDown && !self.settled && t >= self.next_settle_check {
            self.next_settle_check = t + SETTLE_CHECK;
            self.settle(set, t);
            if self.settled {
                self.set_phase_name(t);
            }
        }
        let hold_end = match self.phase {
            Phase::Holding { until } => Some(until),
            _ => None,
        };
        [
            Some(self.next_housekeeping),
            self.next_open,
            (!self.awaiting_ack.is_empty()).then_some(self.next_ack_check),
            self.next_echo,
            hold_end,
            (self.phase == Phase::TearingDown && !self.settled).then_some(self.next_settle_check),
            self.ppp_timeout().map(|at| self.run_time(at)),
            self.traffic_due(),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|d| self.runner_time(d))
    }

    fn finished(&self, _set: &TunnelSet, _now: Instant) -> bool {
        self.phase == Phase::TearingDown && self.settled
    }

    fn shutdown(&mut self, set: &mut TunnelSet, now: Instant) {
        if self.phase != Phase::TearingDown {
            self.start_teardown(set, now);
        }
    }
}
