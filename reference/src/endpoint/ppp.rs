//! The endpoint as the PPP server of its sessions (`l2tpkit endpoint --auth`): each L2TP
//! session that comes up gets an address from the pool and a [`PppSession::server`] in one
//! [`PppTable`]; frames go both ways through the tunnel's data messages; a PPP failure ends the
//! call with a CDN once LCP has terminated; a CDN or StopCCN from the LAC returns the address.
//!
//! CDN result codes (RFC 2661 §4.4.2): a PPP failure sends 3 ("disconnected for
//! administrative reasons") with error 0 and the failure as the message, as l2tpns does for
//! its authentication failures (`CDN_ADMIN_DISC`): result 2 would point at an L2TP error code,
//! and none of those (§4.4.2's General Error Codes) is about PPP. An exhausted pool sends 4
//! ("lack of appropriate facilities, temporary condition"): the next call may find a free
//! address.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use l2tp::conn::tunnel::ResultCode;
use l2tp::conn::tunnels::TunnelSet;
use l2tp::ppp::auth::AuthenticatorConfig;
use l2tp::ppp::lcp::AuthSet;
use l2tp::ppp::protocol;
use l2tp::ppp::session::{Phase, PppEvent, PppFailure, PppSession, Received, SessionConfig};
use l2tp::ppp::table::PppTable;
use l2tp::time::Instant;
use serde::Serialize;

use super::icmp::{self, NotAnswered};
use super::pool::{AddressPool, Ipv4Cidr, PoolError, DEFAULT_POOL};
use super::users::Users;

/// CDN result code for a call whose PPP failed (see the module's note).
pub const CDN_PPP_FAILED: u16 = ResultCode::ADMIN_CALL;
/// CDN result code for a call refused for want of an address.
pub const CDN_POOL_EXHAUSTED: u16 = 4;

/// RFC 1661 §4.6's default Max-Configure.
pub const DEFAULT_MAX_CONFIGURE: u8 = 10;

/// What the endpoint's PPP does, from its flags.
#[derive(Debug, Clone)]
pub struct PppServerConfig {
    /// What it demands: NONE (no authentication phase), PAP or CHAP_MD5.
    pub auth: AuthSet,
    /// The secrets PAP and CHAP check; needed when `auth` is not NONE.
    pub users: Option<Arc<Users>>,
    pub pool: Ipv4Cidr,
    /// Its own IPCP address; the pool's first host address by default (never handed out).
    pub own_address: Option<Ipv4Addr>,
    pub ipv6: bool,
    pub dns: [Option<Ipv4Addr>; 2],
    /// The CHAP Name of its Challenges.
    pub name: String,
    /// Max-Configure (RFC 1661 §4.6), also the most CHAP Challenges: 10.
    pub max_configure: u8,
}

impl Default for PppServerConfig {
    fn default() -> Self {
        PppServerConfig {
            auth: AuthSet::NONE,
            users: None,
            pool: DEFAULT_POOL,
            own_address: None,
            ipv6: false,
            dns: [None; 2],
            name: "l2tpkit-endpoint".into(),
            max_configure: DEFAULT_MAX_CONFIGURE,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PppSetupError {
    #[error("--pool: {0}")]
    Pool(#[from] PoolError),
    #[error("--auth pap/chap needs --users: nobody could log in")]
    NoUsers,
}

/// The PPP counters, in the endpoint's stats when PPP is on.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PppStats {
    /// Sessions whose PPP started (each had an address).
    pub sessions_started: u64,
    /// Sessions open now (every NCP asked for opened), and how many ever opened (a session
    /// whose NCPs renegotiate counts once).
    pub sessions_open: u64,
    pub sessions_opened: u64,
    pub auth_ok: u64,
    pub auth_failed: u64,
    /// Failures by phase (LCP, authentication, IPCP/IPv6CP).
    pub failed_lcp: u64,
    pub failed_auth: u64,
    pub failed_network: u64,
    /// An LCP Terminate-Request from the peer on an open session (a subscriber leaving).
    pub terminated_by_peer: u64,
    /// Calls we ended with a CDN because their PPP failed or terminated.
    pub cdn_sent: u64,
    /// Calls that ended (CDN, StopCCN) before their PPP opened.
    pub ended_before_open: u64,
    /// Calls refused with a CDN because no address was left.
    pub pool_exhausted: u64,
    pub pool_in_use: u64,
    pub pool_free: u64,
    /// The duplicate-address guard: an address in use came up again. Must stay 0.
    pub duplicate_addresses: u64,
    pub lcp_echo_answered: u64,
    pub icmp_echo_answered: u64,
    /// IP packets not answered (not an echo to our address): counted and dropped.
    pub ip_dropped: u64,
    /// Frames that do not read, dropped as RFC 1661 says, or Protocol-Rejected.
    pub malformed: u64,
    pub discarded: u64,
    pub protocol_rejected: u64,
}

type Key = (u16, u16);

/// One session's place in the pool, and how its PPP is going.
#[derive(Debug)]
struct Lease {
    address: Ipv4Addr,
    open: bool,
    /// Counted once in `sessions_opened`, however often its NCPs renegotiate.
    ever_opened: bool,
    /// Why its PPP failed; the CDN's message once LCP is down.
    failure: Option<Box<str>>,
}

/// The PPP side of every session of the endpoint.
#[derive(Debug)]
pub struct PppServer {
    config: Arc<SessionConfig>,
    table: PppTable<Key>,
    leases: HashMap<Key, Lease>,
    pool: AddressPool,
    seed: u64,
    started: u64,
    out: Vec<u8>,
    stats: PppStats,
}

impl PppServer {
    pub fn new(config: &PppServerConfig, seed: u64) -> Result<PppServer, PppSetupError> {
        let pool = AddressPool::new(config.pool, config.own_address)?;
        let secrets: Option<Arc<dyn l2tp::ppp::auth::Secrets + Send + Sync>> =
            match (&config.users, config.auth == AuthSet::NONE) {
                (Some(users), _) => Some(Arc::clone(users) as _),
                (None, true) => None,
                (None, false) => return Err(PppSetupError::NoUsers),
            };
        let mut session = SessionConfig::server(config.auth, secrets);
        session.lcp.magic_seed ^= seed;
        session.local_address = Some(pool.own());
        session.dns = config.dns;
        session.ipv6 = config.ipv6;
        session.authenticator = Arc::new(AuthenticatorConfig {
            name: config.name.as_bytes().to_vec(),
            ..AuthenticatorConfig::default()
        });
        let session = session.with_max_configure(config.max_configure);
        Ok(PppServer {
            config: Arc::new(session),
            table: PppTable::new(),
            leases: HashMap::new(),
            pool,
            seed,
            started: 0,
            out: Vec::with_capacity(2048),
            stats: PppStats::default(),
        })
    }

    /// The endpoint's own PPP address (ICMP echoes to it are answered).
    pub fn own_address(&self) -> Ipv4Addr {
        self.pool.own()
    }

    pub fn stats(&self) -> PppStats {
        PppStats {
            pool_in_use: self.pool.in_use() as u64,
            pool_free: self.pool.free() as u64,
            duplicate_addresses: self.pool.duplicates_refused(),
            ..self.stats.clone()
        }
    }

    /// The PPP session of a live call, if any.
    pub fn session(&self, tunnel: u16, session_id: u16) -> Option<&PppSession> {
        self.table.get((tunnel, session_id))
    }

    /// The address handed to a live call.
    pub fn address_of(&self, tunnel: u16, session_id: u16) -> Option<Ipv4Addr> {
        self.leases.get(&(tunnel, session_id)).map(|l| l.address)
    }

    /// An L2TP session came up: an address, then LCP starts. No address: CDN.
    pub fn session_up(&mut self, set: &mut TunnelSet, now: Instant, tunnel: u16, session_id: u16) {
        let key = (tunnel, session_id);
        let Some(address) = self.pool.allocate() else {
            self.stats.pool_exhausted += 1;
            tracing::warn!(
                tunnel,
                session_id,
                pool = %self.pool.cidr(),
                in_use = self.pool.in_use(),
                "address pool exhausted: call refused with a CDN"
            );
            if let Some(t) = set.tunnel_mut(tunnel) {
                let result =
                    ResultCode::error(CDN_POOL_EXHAUSTED, 0, "no address left in the pool");
                t.close_session(session_id, result);
            }
            return;
        };
        if let Some(stale) = self.leases.remove(&key) {
            // Cannot happen (SessionDown comes first); never leak an address if it does.
            self.pool.release(stale.address);
            self.table.remove(key);
        }
        self.started = self.started.wrapping_add(1);
        let seed = self.seed ^ self.started.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let session = PppSession::server(Arc::clone(&self.config), address, seed);
        self.leases.insert(
            key,
            Lease {
                address,
                open: false,
                ever_opened: false,
                failure: None,
            },
        );
        self.stats.sessions_started += 1;
        tracing::debug!(tunnel, session_id, %address, "PPP started");
        self.table.insert(now, key, session);
        self.after(set, now);
    }

    /// The L2TP session is gone (CDN either way, StopCCN): PPP stops, the address goes back.
    pub fn session_down(
        &mut self,
        set: &mut TunnelSet,
        now: Instant,
        tunnel: u16,
        session_id: u16,
    ) {
        let key = (tunnel, session_id);
        let Some(lease) = self.leases.remove(&key) else {
            return;
        };
        if lease.open {
            self.stats.sessions_open = self.stats.sessions_open.saturating_sub(1);
        } else if !lease.ever_opened && lease.failure.is_none() {
            self.stats.ended_before_open += 1;
        }
        self.table.with(key, |s| s.lower_down(now));
        // Its last events go now, while no other session can take its key.
        self.after(set, now);
        self.table.remove(key);
        self.pool.release(lease.address);
        tracing::debug!(tunnel, session_id, address = %lease.address, "PPP down, address returned");
    }

    /// A PPP frame of a live call. True when it was an LCP Echo-Request the session answered.
    pub fn data(
        &mut self,
        set: &mut TunnelSet,
        now: Instant,
        tunnel: u16,
        session_id: u16,
        frame: &[u8],
    ) -> bool {
        let key = (tunnel, session_id);
        let own = self.pool.own();
        let echo = l2tp::ppp::LcpEcho::parse(frame).is_some_and(|e| !e.reply);
        let outcome = self.table.with(key, |s| {
            let outcome = match s.handle(now, frame) {
                Received::Control => Outcome::Control,
                Received::Ip { protocol, packet } if protocol == protocol::IPV4 => {
                    match icmp::echo_reply(packet, own) {
                        Ok(reply) => {
                            let mut framed = Vec::with_capacity(reply.len() + 4);
                            if s.send_ipv4(&reply, &mut framed) {
                                Outcome::Icmp(framed)
                            } else {
                                Outcome::IpDropped(None)
                            }
                        }
                        Err(why) => Outcome::IpDropped(Some(why)),
                    }
                }
                Received::Ip { .. } => Outcome::IpDropped(None),
                Received::Discarded => Outcome::Discarded,
                Received::ProtocolRejected(_) => Outcome::ProtocolRejected,
                Received::Malformed(_) => Outcome::Malformed,
            };
            // LCP answers an Echo-Request only when opened (RFC 1661 §5.8).
            let answered = echo
                && outcome == Outcome::Control
                && matches!(
                    s.phase(),
                    Phase::Authenticate | Phase::Network | Phase::Open
                );
            (outcome, answered)
        });
        let Some((outcome, answered)) = outcome else {
            self.stats.discarded += 1;
            return false;
        };
        match outcome {
            Outcome::Control => {}
            Outcome::Icmp(framed) => {
                if let Some(t) = set.tunnel_mut(tunnel) {
                    if t.send_data(session_id, &framed) {
                        self.stats.icmp_echo_answered += 1;
                    }
                }
            }
            Outcome::IpDropped(why) => {
                self.stats.ip_dropped += 1;
                tracing::trace!(tunnel, session_id, ?why, "IP packet dropped");
            }
            Outcome::Discarded => self.stats.discarded += 1,
            Outcome::ProtocolRejected => self.stats.protocol_rejected += 1,
            Outcome::Malformed => {
                self.stats.malformed += 1;
                tracing::debug!(tunnel, session_id, "malformed PPP frame dropped");
            }
        }
        if answered {
            self.stats.lcp_echo_answered += 1;
        }
        self.after(set, now);
        answered
    }

    /// Runs the PPP timers that are due; when the next one is.
    pub fn tick(&mut self, set: &mut TunnelSet, now: Instant) -> Option<Instant> {
        self.table.handle_timeout(now);
        self.after(set, now);
        self.table.poll_timeout()
    }

    /// What the sessions said, then what they send.
    fn after(&mut self, set: &mut TunnelSet, now: Instant) {
        while let Some((key, event)) = self.table.poll_event() {
            self.on_event(set, now, key, event);
        }
        while let Some((tunnel, session_id)) = self.table.poll_transmit(&mut self.out) {
            if let Some(t) = set.tunnel_mut(tunnel) {
                // False once the call is gone: its last frames have nowhere to go.
                t.send_data(session_id, &self.out);
            }
            self.out.clear();
        }
    }

    fn on_event(&mut self, set: &mut TunnelSet, _now: Instant, key: Key, event: PppEvent) {
        let (tunnel, session_id) = key;
        let Some(lease) = self.leases.get_mut(&key) else {
            // A call already gone (its lower_down's own events).
            return;
        };
        match event {
            PppEvent::Phase(Phase::Open) => {
                if !lease.open {
                    lease.open = true;
                    self.stats.sessions_open += 1;
                }
                if !lease.ever_opened {
                    lease.ever_opened = true;
                    self.stats.sessions_opened += 1;
                }
                tracing::debug!(tunnel, session_id, address = %lease.address, "PPP open");
            }
            PppEvent::Phase(phase) => {
                if lease.open {
                    lease.open = false;
                    self.stats.sessions_open = self.stats.sessions_open.saturating_sub(1);
                }
                tracing::debug!(tunnel, session_id, %phase, "PPP phase");
                if phase == Phase::Dead {
                    // LCP is down (terminated, or gave up): the call ends with it.
                    let message = lease.failure.as_deref().unwrap_or("PPP ended").to_string();
                    self.stats.cdn_sent += 1;
                    if let Some(t) = set.tunnel_mut(tunnel) {
                        t.close_session(session_id, ResultCode::error(CDN_PPP_FAILED, 0, message));
                    }
                }
            }
            PppEvent::Authenticated { text } => {
                self.stats.auth_ok += 1;
                tracing::debug!(tunnel, session_id, peer = %text, "PPP authenticated");
            }
            PppEvent::IpcpOpened(negotiated) => {
                tracing::debug!(tunnel, session_id, peer = ?negotiated.peer, "IPCP opened");
            }
            PppEvent::Ipv6cpOpened(negotiated) => {
                tracing::debug!(tunnel, session_id, peer = ?negotiated.peer, "IPv6CP opened");
            }
            PppEvent::Ipv6cpFailed(failure) => {
                tracing::debug!(tunnel, session_id, %failure, "IPv6CP gave up; IPv4 only");
            }
            PppEvent::Failed(failure) => {
                match (&failure, failure.phase()) {
                    (PppFailure::TerminatedByPeer { .. }, Phase::Open) => {
                        self.stats.terminated_by_peer += 1
                    }
                    (PppFailure::AuthRejected { .. } | PppFailure::AuthTimeout, _) => {
                        self.stats.auth_failed += 1;
                        self.stats.failed_auth += 1;
                    }
                    (_, Phase::Authenticate) => self.stats.failed_auth += 1,
                    (_, Phase::Network) => self.stats.failed_network += 1,
                    _ => self.stats.failed_lcp += 1,
                }
                tracing::debug!(tunnel, session_id, %failure, "PPP failed");
                lease.failure = Some(format!("PPP: {failure}").into());
            }
            PppEvent::EchoReply { .. } => {}
            PppEvent::LoopbackSuspected => {
                tracing::debug!(tunnel, session_id, "PPP loopback suspected");
            }
        }
    }
}

/// What one frame was, read inside the table's borrow of its session.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Control,
    /// The framed echo reply to send.
    Icmp(Vec<u8>),
    IpDropped(Option<NotAnswered>),
    Discarded,
    ProtocolRejected,
    Malformed,
}
