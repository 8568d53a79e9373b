//! The subscriber side of every session: one [`PppSession::client`] per L2TP session in one
//! [`PppTable`], frames carried in the session's data messages, the session's "up" moment moved
//! to the PPP level asked for, and a teardown that sends LCP Terminate before the CDN.
//!
//! PPP runs on the runner's clock (`now`); the figures are recorded in run time (`t`), as the
//! rest of the LAC's.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::rc::Rc;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use l2tp::conn::tunnel::ResultCode;
use l2tp::conn::tunnels::TunnelSet;
use l2tp::ppp::frame::protocol;
use l2tp::ppp::lcp::AuthSet;
use l2tp::ppp::session::{
    Phase as PppPhase, PppEvent, PppFailure, PppSession, Received, SessionConfig,
};
use l2tp::ppp::table::PppTable;
use l2tp::time::Instant;
use serde::{Deserialize, Serialize};

use super::traffic::{Traffic, TrafficPlan, TRAFFIC_GRACE};
use super::{stats, Lac, SessionTrack, Stage, Swarm, STOPPED_BEFORE_SESSION_UP};

/// How long a closing session waits for the peer's Terminate-Ack before its CDN goes anyway.
pub const TERMINATE_BOUND: Duration = Duration::from_secs(1);

/// Where a session counts as up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PppLevel {
    /// No PPP: the L2TP session is the subscriber (ICRP received), LCP echoes as keepalive.
    #[default]
    Off,
    /// LCP opened.
    Lcp,
    /// Authentication succeeded, or none was asked.
    Auth,
    /// IPCP opened (and IPv6CP with `ipv6`).
    Ip,
}

impl FromStr for PppLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(PppLevel::Off),
            "lcp" => Ok(PppLevel::Lcp),
            "auth" => Ok(PppLevel::Auth),
            "ip" => Ok(PppLevel::Ip),
            other => Err(format!("{other:?}: expected off, lcp, auth or ip")),
        }
    }
}

impl fmt::Display for PppLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PppLevel::Off => "off",
            PppLevel::Lcp => "lcp",
            PppLevel::Auth => "auth",
            PppLevel::Ip => "ip",
        })
    }
}

/// What the subscriber agrees to when the LNS asks it to authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthChoice {
    Pap,
    Chap,
    /// Either, whichever the LNS asks for.
    Auto,
}

impl AuthChoice {
    pub fn set(self) -> AuthSet {
        match self {
            AuthChoice::Pap => AuthSet::PAP,
            AuthChoice::Chap => AuthSet::CHAP_MD5,
            AuthChoice::Auto => AuthSet::ANY,
        }
    }
}

impl FromStr for AuthChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pap" => Ok(AuthChoice::Pap),
            "chap" => Ok(AuthChoice::Chap),
            "auto" => Ok(AuthChoice::Auto),
            other => Err(format!("{other:?}: expected pap, chap or auto")),
        }
    }
}

/// The PPP part of a [`LacPlan`](super::LacPlan).
#[derive(Debug, Clone)]
pub struct PppPlan {
    pub level: PppLevel,
    pub auth: AuthChoice,
    /// `{n}` is replaced by the session's number over the whole run, from `first_number`.
    pub username: String,
    pub password: String,
    pub ipv6: bool,
    /// Ask for DNS servers in IPCP (RFC 1877).
    pub request_dns: bool,
    /// ICMP echo traffic in every IP-up session while the run holds (`--traffic-rate`).
    pub traffic: TrafficPlan,
    /// Max-Configure (RFC 1661 §4.6), also the most PAP/CHAP requests (`--ppp-max-configure`).
    pub max_configure: u8,
    /// The number of the run's first subscriber: 1, or past the sessions of the shards before
    /// this one (`lac --shard`), so that no two agents use one user name.
    pub first_number: u64,
}

impl PppPlan {
    /// No PPP: the LAC of before PPP.
    pub fn off() -> PppPlan {
        PppPlan {
            level: PppLevel::Off,
            ..PppPlan::default()
        }
    }

    /// The user name of this run's subscriber `n` (from 1).
    pub fn username(&self, n: u64) -> String {
        let number = n.saturating_add(self.first_number.saturating_sub(1));
        self.username.replace("{n}", &number.to_string())
    }

    fn session_config(&self) -> SessionConfig {
        let mut config = SessionConfig::client(self.password.as_bytes());
        config.lcp.accept = self.auth.set();
        config.ipv6 = self.ipv6;
        config.request_dns = self.request_dns;
        config.with_max_configure(self.max_configure)
    }
}

impl Default for PppPlan {
    /// The command line's defaults: up at IP, PAP or CHAP.
    fn default() -> Self {
        PppPlan {
            level: PppLevel::Ip,
            auth: AuthChoice::Auto,
            username: "user{n}@example.net".to_string(),
            password: "l2tpkit".to_string(),
            ipv6: false,
            request_dns: false,
            traffic: TrafficPlan::default(),
            max_configure: l2tp::ppp::fsm::FsmConfig::default().max_configure,
            first_number: 1,
        }
    }
}

/// When each PPP milestone of one session came, in run time (a few words per session).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct PppMarks {
    /// The L2TP session came up (ICRP received, ICCN sent): PPP starts.
    pub iccn: Option<Instant>,
    pub lcp: Option<Instant>,
    pub auth: Option<Instant>,
    /// The peer asked us to authenticate.
    pub authenticating: bool,
    /// Every NCP asked for opened.
    pub ip_up: bool,
    /// Our IPCP address while the session lives (counted in the swarm's live addresses).
    pub address: Option<std::net::Ipv4Addr>,
    /// The PPP phase the swarm counts it in (see `Stats::ppp_phase`).
    pub phase: Option<PppPhase>,
}

type Key = (u16, u16);

/// The PPP of one initiator's sessions.
pub(super) struct Subscribers {
    pub plan: PppPlan,
    config: Arc<SessionConfig>,
    pub table: PppTable<Key>,
    seed: u64,
    out: Vec<u8>,
    /// Sessions whose Terminate-Request is out: the CDN goes at Terminate-Ack (PPP Dead) or at
    /// the deadline (runner time), whichever first. Deadlines are in order (a constant bound).
    closing: BTreeSet<Key>,
    deadlines: VecDeque<(Instant, Key)>,
    /// Tunnels whose StopCCN waits for their sessions' CDNs (teardown).
    stop_after: BTreeSet<u16>,
    /// Sessions up at our end whose PPP waits for the peer to have the call too: its ack of
    /// our ICCN, or its first PPP frame. Before that the peer drops our frames, and on a lossy
    /// link a late ICCN would use up LCP's Configure-Requests (RFC 1661 §4.6) for nothing.
    awaiting_peer: Vec<Key>,
    /// ICMP echoes in the IP-up sessions, with `--traffic-rate`.
    pub traffic: Option<Traffic>,
}

impl Subscribers {
    pub fn new(plan: PppPlan, seed: u64, swarm: &Rc<Swarm>) -> Subscribers {
        swarm.stats_mut().request_dns = plan.request_dns;
        Subscribers {
            traffic: (plan.traffic.on()).then(|| Traffic::new(plan.traffic, Rc::clone(swarm))),
            config: Arc::new(plan.session_config()),
            plan,
            table: PppTable::new(),
            seed,
            out: Vec::with_capacity(256),
            closing: BTreeSet::new(),
            deadlines: VecDeque::new(),
            stop_after: BTreeSet::new(),
            awaiting_peer: Vec::new(),
        }
    }

    /// The earliest PPP timer or Terminate bound (runner time).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let bound = self.deadlines.front().map(|&(at, _)| at);
        [self.table.poll_timeout(), bound]
            .into_iter()
            .flatten()
            .min()
    }

    /// Starts LCP Terminate on `key` if its PPP still runs; false when there is nothing to
    /// terminate (the CDN can go at once).
    fn terminate(&mut self, now: Instant, key: Key) -> bool {
        if self.closing.contains(&key) {
            return true;
        }
        let running = self
            .table
            .get(key)
            .is_some_and(|s| s.phase() != PppPhase::Dead);
        if !running {
            return false;
        }
        self.table.with(key, |s| s.close(now));
        self.forget(key);
        self.closing.insert(key);
        self.deadlines.push_back((now + TERMINATE_BOUND, key));
        true
    }

    /// The session's PPP is over (Terminate-Ack, bound, or failure while already Dead): its
    /// CDN, then the tunnel's StopCCN if the teardown waits for it and it was the last.
    fn finish_close(&mut self, set: &mut TunnelSet, now: Instant, key: Key) {
        self.closing.remove(&key);
        self.table.remove(key);
        self.forget(key);
        let (tid, sid) = key;
        if let Some(tunnel) = set.tunnel_mut(tid) {
            tunnel.close_session(sid, ResultCode::new(ResultCode::ADMIN_CALL));
        }
        self.maybe_stop(set, now, tid);
    }

    /// The session's traffic stops.
    fn forget(&mut self, key: Key) {
        self.awaiting_peer.retain(|&k| k != key);
        if let Some(traffic) = self.traffic.as_mut() {
            traffic.forget(key);
        }
    }

    fn maybe_stop(&mut self, set: &mut TunnelSet, now: Instant, tid: u16) {
        if !self.stop_after.contains(&tid) {
            return;
        }
        if self
            .closing
            .range((tid, 0)..=(tid, u16::MAX))
            .next()
            .is_some()
        {
            return;
        }
        self.stop_after.remove(&tid);
        if let Some(tunnel) = set.tunnel_mut(tid) {
            tunnel.close(now, ResultCode::new(ResultCode::CLEAR_TUNNEL));
        }
    }

    /// Sends every frame the sessions have, in their L2TP sessions' data messages.
    fn transmit(&mut self, set: &mut TunnelSet) {
        while let Some((tid, sid)) = self.table.poll_transmit(&mut self.out) {
            if let Some(tunnel) = set.tunnel_mut(tid) {
                tunnel.send_data(sid, &self.out);
            }
            self.out.clear();
        }
    }
}

/// A PPP failure as the report counts it: "PPP authentication: authentication rejected: …".
pub fn failure_reason(failure: &PppFailure) -> String {
    format!("PPP {}: {failure}", failure.phase())
}

impl Lac {
    pub(super) fn ppp_on(&self) -> bool {
        self.ppp.is_some()
    }

    /// The L2TP session `key` came up: its subscriber starts LCP (the tunnel sends the ICCN
    /// before this first Configure-Request: control goes before data).
    pub(super) fn ppp_start(&mut self, now: Instant, key: Key) {
        let waiting = (self.tunnels.get(&key.0))
            .and_then(|tr| tr.sessions.get(&key.1))
            .is_some_and(|s| s.stage == Stage::Waiting);
        if !waiting || self.tearing_down() {
            return;
        }
        let Some(ppp) = self.ppp.as_mut() else {
            return;
        };
        let n = {
            let mut stats = self.swarm.stats_mut();
            stats.subscribers += 1;
            stats.subscribers
        };
        let username = ppp.plan.username(n);
        // Distinct per subscriber over the run: the run's seed mixed with its number.
        let seed = ppp.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let session = PppSession::client(Arc::clone(&ppp.config), &username, seed);
        ppp.table.insert(now, key, session);
    }

    /// The L2TP session `key` is up at our end: PPP starts once the peer has it too (at once
    /// when it already acknowledged our ICCN).
    pub(super) fn ppp_when_connected(&mut self, set: &mut TunnelSet, now: Instant, key: Key) {
        let connected = set
            .tunnel(key.0)
            .is_some_and(|t| t.session_connected_at_peer(key.1));
        if connected {
            self.ppp_start(now, key);
            self.ppp_pump(set, now);
        } else if let Some(ppp) = self.ppp.as_mut() {
            ppp.awaiting_peer.push(key);
        }
    }

    /// Starts the PPP of the sessions the peer now has (its ack of our ICCN came); forgets
    /// those that went.
    fn ppp_start_connected(&mut self, set: &TunnelSet, now: Instant) {
        let Some(ppp) = self.ppp.as_mut() else {
            return;
        };
        if ppp.awaiting_peer.is_empty() {
            return;
        }
        let mut ready = Vec::new();
        ppp.awaiting_peer.retain(|&key| {
            let Some(tunnel) = set.tunnel(key.0) else {
                return false;
            };
            if tunnel.session_state(key.1).is_none() {
                return false;
            }
            let connected = tunnel.session_connected_at_peer(key.1);
            if connected {
                ready.push(key);
            }
            !connected
        });
        for key in ready {
            self.ppp_start(now, key);
        }
    }

    /// A PPP frame on session `key`.
    pub(super) fn ppp_data(&mut self, set: &mut TunnelSet, now: Instant, key: Key, frame: &[u8]) {
        let t = self.run_time(now);
        // The peer's first frame says it has the call, whatever became of its ack.
        let waiting = self.ppp.as_mut().and_then(|ppp| {
            let at = ppp.awaiting_peer.iter().position(|&k| k == key)?;
            Some(ppp.awaiting_peer.swap_remove(at))
        });
        if let Some(key) = waiting {
            self.ppp_start(now, key);
        }
        if let Some(ppp) = self.ppp.as_mut() {
            let received = ppp.table.handle(now, key, frame);
            if let (Some(Received::Ip { protocol, packet }), Some(traffic)) =
                (received, ppp.traffic.as_mut())
            {
                if protocol == protocol::IPV4 {
                    traffic.receive(key, packet, t);
                }
            }
        }
        self.ppp_pump(set, now);
    }

    /// The L2TP session is gone (CDN either way): its PPP stops at once; the phase it was in.
    pub(super) fn ppp_lower_down(
        &mut self,
        set: &mut TunnelSet,
        now: Instant,
        key: Key,
    ) -> Option<PppPhase> {
        let ppp = self.ppp.as_mut()?;
        let phase = ppp.table.get(key).map(|s| s.phase());
        ppp.table.with(key, |s| s.lower_down(now));
        ppp.table.remove(key);
        ppp.forget(key);
        ppp.closing.remove(&key);
        ppp.maybe_stop(set, now, key.0);
        phase
    }

    /// The tunnel is gone: every PPP of it with it.
    pub(super) fn ppp_tunnel_gone(&mut self, tid: u16) {
        if let Some(ppp) = self.ppp.as_mut() {
            let keys: Vec<Key> = ppp.table.keys().filter(|k| k.0 == tid).collect();
            for key in keys {
                ppp.table.remove(key);
                ppp.forget(key);
                ppp.closing.remove(&key);
            }
            ppp.stop_after.remove(&tid);
        }
    }

    /// Teardown of one session: LCP Terminate first when its PPP runs (true), else nothing
    /// (false: the caller sends the CDN now).
    pub(super) fn ppp_terminate(&mut self, now: Instant, key: Key) -> bool {
        self.ppp.as_mut().is_some_and(|p| p.terminate(now, key))
    }

    /// The tunnel's StopCCN waits for the CDNs of its terminating sessions.
    pub(super) fn ppp_stop_after(&mut self, tid: u16) {
        if let Some(ppp) = self.ppp.as_mut() {
            ppp.stop_after.insert(tid);
        }
    }

    /// An LCP Echo-Request on session `key`: its Identifier, `None` when LCP is not opened.
    pub(super) fn ppp_echo(&mut self, key: Key) -> Option<u8> {
        self.ppp.as_mut()?.table.with(key, |s| s.send_echo())?
    }

    /// With PPP the sessions' own LCP sends the echoes (its Magic-Number, its Identifiers).
    pub(super) fn send_ppp_echoes(&mut self, set: &mut TunnelSet, now: Instant, t: Instant) {
        let up: Vec<(u16, u16)> = (self.tunnels.iter())
            .filter(|(_, track)| track.stage == Stage::Up)
            .flat_map(|(&id, track)| {
                (track.sessions.iter())
                    .filter(|(_, s)| s.stage == Stage::Up)
                    .map(move |(&sid, _)| (id, sid))
            })
            .collect();
        let mut sent = 0;
        for key in up {
            if let Some(identifier) = self.ppp_echo(key) {
                if let Some(s) =
                    (self.tunnels.get_mut(&key.0)).and_then(|tr| tr.sessions.get_mut(&key.1))
                {
                    s.echo = Some((identifier, t));
                }
                sent += 1;
            }
        }
        self.swarm.stats_mut().echo_sent += sent;
        self.ppp_pump(set, now);
    }

    /// PPP timers and Terminate bounds due at `now`.
    pub(super) fn ppp_tick(&mut self, set: &mut TunnelSet, now: Instant) {
        self.ppp_start_connected(set, now);
        let Some(ppp) = self.ppp.as_mut() else {
            return;
        };
        ppp.table.handle_timeout(now);
        while let Some(&(at, key)) = ppp.deadlines.front() {
            if at > now {
                break;
            }
            ppp.deadlines.pop_front();
            if ppp.closing.contains(&key) {
                ppp.finish_close(set, now, key);
            }
        }
        self.ppp_pump(set, now);
    }

    pub(super) fn ppp_timeout(&self) -> Option<Instant> {
        self.ppp.as_ref().and_then(|p| p.poll_timeout())
    }

    /// Sends what the sessions have and takes their events, until neither is left.
    pub(super) fn ppp_pump(&mut self, set: &mut TunnelSet, now: Instant) {
        loop {
            let Some(ppp) = self.ppp.as_mut() else {
                return;
            };
            ppp.transmit(set);
            let Some((key, event)) = ppp.table.poll_event() else {
                return;
            };
            self.ppp_event(set, now, key, event);
        }
    }

    fn ppp_event(&mut self, set: &mut TunnelSet, now: Instant, key: Key, event: PppEvent) {
        let t = self.run_time(now);
        let tearing_down = self.tearing_down();
        let level = self.ppp.as_ref().map_or(PppLevel::Off, |p| p.plan.level);
        if event == PppEvent::Phase(PppPhase::Dead) {
            if let Some(ppp) = self.ppp.as_mut().filter(|p| p.closing.contains(&key)) {
                ppp.finish_close(set, now, key);
                return;
            }
        }
        let Some(track) = self.tunnels.get_mut(&key.0) else {
            return;
        };
        let endpoint = track.endpoint;
        let Some(s) = track.sessions.get_mut(&key.1) else {
            return;
        };
        if s.stage == Stage::Gone {
            return;
        }
        let mut stats = self.swarm.stats_mut();
        let marks = &mut s.ppp;
        if let PppEvent::Phase(phase) = event {
            stats.ppp_phase(&mut marks.phase, Some(phase));
        }
        match event {
            PppEvent::Phase(phase @ (PppPhase::Authenticate | PppPhase::Network)) => {
                if marks.lcp.is_none() {
                    marks.lcp = Some(t);
                    marks.authenticating = phase == PppPhase::Authenticate;
                    if let Some(iccn) = marks.iccn {
                        stats::record(&mut stats.ppp_lcp, iccn, t);
                    }
                }
                if phase == PppPhase::Network && marks.auth.is_none() {
                    marks.auth = Some(t);
                    if let (true, Some(lcp)) = (marks.authenticating, marks.lcp) {
                        stats::record(&mut stats.ppp_auth, lcp, t);
                    }
                }
            }
            PppEvent::Phase(PppPhase::Open) if !marks.ip_up => {
                marks.ip_up = true;
                stats::record(&mut stats.icrq_to_ip_up, s.started, t);
                stats.ip_up(t);
            }
            PppEvent::IpcpOpened(negotiated) => {
                if let Some(from) = marks.auth.or(marks.lcp) {
                    stats::record(&mut stats.ppp_ipcp, from, t);
                }
                if let Some(traffic) = self.ppp.as_mut().and_then(|p| p.traffic.as_mut()) {
                    match (negotiated.local, traffic.destination(negotiated.peer)) {
                        (Some(src), Some(dst)) => traffic.add(key, src, dst),
                        _ => stats.fail(
                            "traffic: no IPCP address to ping from or to (--traffic-target)"
                                .to_string(),
                        ),
                    }
                }
                if marks.address.is_none() && negotiated.dns.iter().any(Option::is_some) {
                    stats.sessions_with_dns += 1;
                    for server in negotiated.dns.into_iter().flatten() {
                        if stats.dns_servers.len() < stats::MAX_DNS_KEPT {
                            stats.dns_servers.insert(server);
                        }
                    }
                }
                if let Some(address) = negotiated.local.filter(|_| marks.address.is_none()) {
                    marks.address = Some(address);
                    if !stats.address_up(address) {
                        stats.fail(format!(
                            "PPP IPCP: address {address} given to two live sessions"
                        ));
                    }
                }
            }
            PppEvent::Ipv6cpOpened(_) => {
                if let Some(from) = marks.auth.or(marks.lcp) {
                    stats::record(&mut stats.ppp_ipv6cp, from, t);
                }
            }
            PppEvent::EchoReply { identifier } => {
                stats.echo_replies += 1;
                if let Some((id, sent)) = s.echo {
                    if id == identifier {
                        s.echo = None;
                        stats::record(&mut stats.echo_rtt, sent, t);
                    }
                }
            }
            PppEvent::Failed(failure) => {
                let why = failure_reason(&failure);
                match s.stage {
                    Stage::Waiting => {
                        self.pending_sessions = self.pending_sessions.saturating_sub(1);
                        self.kick = true;
                        stats.sessions_failed += 1;
                        let ours = matches!(failure, PppFailure::Closed { .. });
                        if tearing_down && ours {
                            stats.fail(STOPPED_BEFORE_SESSION_UP.to_string());
                        } else {
                            stats.fail_ppp(why);
                        }
                        release(&mut stats, s);
                        s.stage = Stage::Gone;
                    }
                    Stage::Up if !tearing_down => {
                        stats.session_gone(endpoint);
                        stats.sessions_failed += 1;
                        stats.fail_ppp(format!("session lost: {why}"));
                        release(&mut stats, s);
                        s.stage = Stage::Gone;
                    }
                    _ => {}
                }
                drop(stats);
                // Its LCP is terminating (or dead): the CDN after the Terminate-Ack.
                if let Some(ppp) = self.ppp.as_mut() {
                    if !ppp.terminate(now, key) {
                        ppp.finish_close(set, now, key);
                    }
                }
                return;
            }
            _ => {}
        }
        let reached = s.stage == Stage::Waiting
            && match level {
                PppLevel::Off => false,
                PppLevel::Lcp => marks.lcp.is_some(),
                PppLevel::Auth => marks.auth.is_some(),
                PppLevel::Ip => marks.ip_up,
            };
        if reached {
            s.stage = Stage::Up;
            stats.session_up(t, endpoint);
            drop(stats);
            self.pending_sessions = self.pending_sessions.saturating_sub(1);
            self.kick = true;
        }
    }
}

/// What a session holds in the swarm's figures while it lives (its address, IP up).
pub(super) fn release(stats: &mut stats::Stats, s: &mut SessionTrack) {
    if let Some(address) = s.ppp.address.take() {
        stats.address_gone(address);
    }
    if std::mem::take(&mut s.ppp.ip_up) {
        stats.sessions_ip_up = stats.sessions_ip_up.saturating_sub(1);
    }
    stats.ppp_phase(&mut s.ppp.phase, None);
}

impl Lac {
    /// The run holds from `t`: traffic starts.
    pub(super) fn traffic_start(&mut self, t: Instant) {
        if let Some(traffic) = self.ppp.as_mut().and_then(|p| p.traffic.as_mut()) {
            traffic.start(t);
        }
    }

    pub(super) fn traffic_stop(&mut self) {
        if let Some(traffic) = self.ppp.as_mut().and_then(|p| p.traffic.as_mut()) {
            traffic.stop();
        }
    }

    /// When traffic next sends (run time).
    pub(super) fn traffic_due(&self) -> Option<Instant> {
        self.ppp.as_ref()?.traffic.as_ref()?.due()
    }

    /// Sends what traffic is due at `t`; none within [`TRAFFIC_GRACE`] of the hold's end.
    pub(super) fn traffic_tick(&mut self, set: &mut TunnelSet, t: Instant, until: Instant) {
        let quiet = until.saturating_duration_since(t) < TRAFFIC_GRACE;
        if let Some(ppp) = self.ppp.as_mut() {
            if let Some(traffic) = ppp.traffic.as_mut() {
                traffic.tick(t, quiet, &ppp.table, set);
            }
        }
    }
}
