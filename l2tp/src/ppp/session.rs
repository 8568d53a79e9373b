//! One subscriber's PPP over an L2TP session: the phases of RFC 1661 §3.2 (Establish with
//! LCP, Authenticate with PAP or CHAP, Network with IPCP and IPv6CP) composed from the pieces
//! of this module, sans-IO like the rest.
//!
//! The same type plays both sides: [`Side::Client`] is the subscriber our LAC simulates (it
//! authenticates and takes an address), [`Side::Server`] the LNS's PPP (it demands
//! authentication and hands out the address its caller took from a pool).
//!
//! The caller feeds every PPP frame of the session to [`PppSession::handle`], sends what
//! [`PppSession::poll_transmit`] gives inside L2TP data messages, calls
//! [`PppSession::handle_timeout`] at [`PppSession::poll_timeout`], and reads
//! [`PppSession::poll_event`] for phases, addresses and failures.

use std::collections::VecDeque;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

use super::auth::{
    AuthenticatorConfig, AuthenticatorOutcome, Credentials, PeerConfig, PeerOutcome, Secrets,
};
use super::chap::{ChapAuthenticator, ChapPeer, VALUE_LEN};
use super::frame::{self, protocol, FrameRepr, PacketRepr};
use super::fsm::{Failure, Fsm, FsmConfig, FsmEvent, State};
use super::ipcp::{Ipcp, IpcpNegotiated};
use super::ipv6cp::{Ipv6cp, Ipv6cpNegotiated};
use super::lcp::{AuthProtocol, AuthSet, Lcp, LcpConfig};
use super::pap::{PapAuthenticator, PapPeer};
use crate::seed::splitmix64;
use crate::time::Instant;

/// Which end of the PPP link a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The subscriber: authenticates when asked, takes the address the server gives.
    Client,
    /// The network side (the LNS): demands authentication, assigns the address.
    Server,
}

/// The phases of RFC 1661 §3.2, as a session goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Phase {
    /// Not started, or over.
    Dead,
    /// LCP negotiating.
    Establish,
    /// LCP opened; PAP or CHAP running.
    Authenticate,
    /// Authenticated (or none asked); IPCP (and IPv6CP) negotiating.
    Network,
    /// Every network protocol asked for is opened: the subscriber has its address.
    Open,
    /// LCP Terminate-Request sent or received.
    Terminate,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Dead => "dead",
            Phase::Establish => "LCP",
            Phase::Authenticate => "authentication",
            Phase::Network => "IPCP",
            Phase::Open => "open",
            Phase::Terminate => "terminate",
        })
    }
}

/// What every session of one role shares, behind an `Arc`.
#[derive(Clone)]
pub struct SessionConfig {
    pub side: Side,
    /// LCP's wants; `authenticate` is what a server demands, `accept` what a client can do.
    /// The magic seed is mixed with each session's own seed.
    pub lcp: LcpConfig,
    /// Restart timer and counters of LCP, IPCP and IPv6CP.
    pub fsm: FsmConfig,
    /// Client: timers of PAP/CHAP as the authenticating peer.
    pub peer: PeerConfig,
    /// Client: the password (the user name is per session).
    pub password: Vec<u8>,
    /// Server: name, messages and timers of the authenticator.
    pub authenticator: Arc<AuthenticatorConfig>,
    /// Server: the users' secrets. Without it every peer is refused.
    pub secrets: Option<Arc<dyn Secrets + Send + Sync>>,
    /// Server: its own IPCP address (asked of the client), if any.
    pub local_address: Option<Ipv4Addr>,
    /// Client: ask for DNS servers; server: the ones handed out when asked.
    pub request_dns: bool,
    pub dns: [Option<Ipv4Addr>; 2],
    /// Negotiate IPv6CP too; the session is open only when both NCPs are.
    pub ipv6: bool,
}

impl fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionConfig")
            .field("side", &self.side)
            .field("lcp", &self.lcp)
            .field("ipv6", &self.ipv6)
            .finish_non_exhaustive()
    }
}

impl SessionConfig {
    /// A subscriber that does PAP or CHAP, whichever the server asks for.
    pub fn client(password: impl Into<Vec<u8>>) -> SessionConfig {
        SessionConfig {
            side: Side::Client,
            lcp: LcpConfig {
                authenticate: AuthSet::NONE,
                accept: AuthSet::ANY,
                ..LcpConfig::default()
            },
            password: password.into(),
            ..SessionConfig::base(Side::Client)
        }
    }

    /// An LNS that demands `authenticate` (NONE: no authentication phase) and checks it
    /// against `secrets`.
    pub fn server(
        authenticate: AuthSet,
        secrets: Option<Arc<dyn Secrets + Send + Sync>>,
    ) -> SessionConfig {
        SessionConfig {
            lcp: LcpConfig {
                authenticate,
                accept: AuthSet::NONE,
                ..LcpConfig::default()
            },
            secrets,
            ..SessionConfig::base(Side::Server)
        }
    }

    /// Max-Configure (RFC 1661 §4.6) for LCP and the NCPs, and the same count for PAP
    /// Authenticate-Requests and CHAP Challenges (and Responses): how many Restart periods a
    /// negotiation may take on a lossy link before it gives up. The waits for the other side
    /// to begin authenticating (the first Challenge, the first Authenticate-Request) last as
    /// many Restart periods (30 s with the default 10). At least 1.
    pub fn with_max_configure(mut self, n: u8) -> SessionConfig {
        let n = n.max(1);
        self.fsm.max_configure = n;
        self.peer.max_transmit = n;
        self.peer.wait = self.peer.restart.saturating_mul(u32::from(n));
        let authenticator = Arc::make_mut(&mut self.authenticator);
        authenticator.max_transmit = n;
        if authenticator.wait.is_some() {
            authenticator.wait = Some(authenticator.restart.saturating_mul(u32::from(n)));
        }
        self
    }

    fn base(side: Side) -> SessionConfig {
        SessionConfig {
            side,
            lcp: LcpConfig::default(),
            fsm: FsmConfig::default(),
            peer: PeerConfig::default(),
            password: Vec::new(),
            authenticator: Arc::new(AuthenticatorConfig::default()),
            secrets: None,
            local_address: None,
            request_dns: false,
            dns: [None; 2],
            ipv6: false,
        }
    }
}

/// Why a session's PPP ended before (or after) it opened, by phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PppFailure {
    /// Max-Configure Configure-Requests unanswered in `phase`'s protocol (LCP, IPCP, IPv6CP).
    Timeout {
        phase: Phase,
        protocol: &'static str,
    },
    /// Naks and Rejects without an agreement (§4.5 loop), or the peer refused an option we
    /// need.
    NotConverging { protocol: &'static str },
    Refused {
        protocol: &'static str,
        reason: &'static str,
    },
    /// The authenticator said no, with its message (client), or the peer's secret was wrong
    /// (server).
    AuthRejected { message: String },
    /// No verdict (client) or no valid answer (server) in time.
    AuthTimeout,
    /// The peer sent an LCP Terminate-Request, with its data as text.
    TerminatedByPeer { phase: Phase, reason: String },
    /// The peer Protocol-Rejected LCP, or Code-Rejected a code LCP cannot do without.
    Rejected { protocol: &'static str },
    /// We closed it ([`PppSession::close`]) before it opened.
    Closed { phase: Phase },
}

impl PppFailure {
    /// The phase the failure is counted under.
    pub fn phase(&self) -> Phase {
        match self {
            PppFailure::Timeout { phase, .. }
            | PppFailure::TerminatedByPeer { phase, .. }
            | PppFailure::Closed { phase } => *phase,
            PppFailure::NotConverging { protocol }
            | PppFailure::Refused { protocol, .. }
            | PppFailure::Rejected { protocol } => phase_of(protocol),
            PppFailure::AuthRejected { .. } | PppFailure::AuthTimeout => Phase::Authenticate,
        }
    }
}

fn phase_of(protocol: &str) -> Phase {
    match protocol {
        "LCP" => Phase::Establish,
        _ => Phase::Network,
    }
}

impl fmt::Display for PppFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PppFailure::Timeout { protocol, .. } => write!(f, "{protocol} timeout"),
            PppFailure::NotConverging { protocol } => write!(f, "{protocol} NAK loop"),
            PppFailure::Refused { protocol, reason } => write!(f, "{protocol} refused: {reason}"),
            PppFailure::AuthRejected { message } if message.is_empty() => {
                f.write_str("authentication rejected")
            }
            PppFailure::AuthRejected { message } => {
                write!(f, "authentication rejected: {message:?}")
            }
            PppFailure::AuthTimeout => f.write_str("authentication timeout"),
            PppFailure::TerminatedByPeer { phase, reason } if reason.is_empty() => {
                write!(f, "Terminate-Request from the peer in {phase}")
            }
            PppFailure::TerminatedByPeer { phase, reason } => {
                write!(f, "Terminate-Request from the peer in {phase}: {reason:?}")
            }
            PppFailure::Rejected { protocol } => write!(f, "the peer rejected {protocol}"),
            PppFailure::Closed { phase } => write!(f, "closed by us in {phase}"),
        }
    }
}

/// What a session tells its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PppEvent {
    /// The session entered a phase.
    Phase(Phase),
    /// Authentication succeeded: the authenticator's message (client) or the peer's name
    /// (server).
    Authenticated {
        text: String,
    },
    IpcpOpened(IpcpNegotiated),
    Ipv6cpOpened(Ipv6cpNegotiated),
    /// IPv6CP gave up (the session goes on with IPv4 alone).
    Ipv6cpFailed(PppFailure),
    /// The session failed or ended; it is Dead now (or Terminate, draining).
    Failed(PppFailure),
    /// LCP Echo-Reply to one of ours.
    EchoReply {
        identifier: u8,
    },
    /// The peer's Magic-Number equals ours (RFC 1661 §6.4).
    LoopbackSuspected,
}

/// What a frame handed to [`PppSession::handle`] was, for the caller's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received<'a> {
    /// A control packet, taken by its protocol.
    Control,
    /// An IPv4 or IPv6 packet on an opened NCP: the packet.
    Ip { protocol: u16, packet: &'a [u8] },
    /// Dropped as RFC 1661 says (an NCP before the Network phase, IP before its NCP opened).
    Discarded,
    /// A protocol we do not speak: Protocol-Rejected when LCP is opened.
    ProtocolRejected(u16),
    /// The frame, or its control packet, does not read.
    Malformed(frame::Error),
}

/// The authentication machine of the phase, whichever side and protocol.
#[derive(Debug)]
enum Auth {
    None,
    PapPeer(PapPeer),
    ChapPeer(ChapPeer),
    PapAuthenticator(PapAuthenticator),
    ChapAuthenticator(Box<ChapAuthenticator>),
}

/// One subscriber's PPP.
#[derive(Debug)]
pub struct PppSession {
    config: Arc<SessionConfig>,
    /// Client: the user name (a template filled per session).
    username: Box<str>,
    phase: Phase,
    lcp: Fsm<Lcp>,
    auth: Auth,
    ipcp: Fsm<Ipcp>,
    /// Boxed: most sessions run IPv4 only.
    ipv6cp: Option<Box<Fsm<Ipv6cp>>>,
    rng: u64,
    /// Set once: a session fails only once.
    failed: bool,
    /// The authenticator's Failure is still to be sent before LCP's Terminate-Request.
    verdict_first: bool,
    events: VecDeque<PppEvent>,
}

impl PppSession {
    /// A subscriber named `username`; `seed` makes its magic numbers, identifiers and
    /// interface identifier differ from its neighbours'.
    pub fn client(config: Arc<SessionConfig>, username: &str, seed: u64) -> PppSession {
        let ipcp = Ipcp::client(config.request_dns);
        PppSession::new(config, username.into(), ipcp, seed)
    }

    /// The LNS side of one session, handing out `assigned` (from the caller's pool).
    pub fn server(config: Arc<SessionConfig>, assigned: Ipv4Addr, seed: u64) -> PppSession {
        let ipcp = Ipcp::server(config.local_address, assigned, config.dns);
        PppSession::new(config, "".into(), ipcp, seed)
    }

    fn new(config: Arc<SessionConfig>, username: Box<str>, ipcp: Ipcp, seed: u64) -> PppSession {
        let mut rng = seed;
        let lcp = LcpConfig {
            magic_seed: config.lcp.magic_seed ^ splitmix64(&mut rng),
            ..config.lcp
        };
        let ipv6cp = config
            .ipv6
            .then(|| Box::new(Fsm::new(Ipv6cp::new(splitmix64(&mut rng)), config.fsm)));
        PppSession {
            lcp: Fsm::new(Lcp::new(lcp), config.fsm),
            ipcp: Fsm::new(ipcp, config.fsm),
            ipv6cp,
            config,
            username,
            phase: Phase::Dead,
            auth: Auth::None,
            rng,
            failed: false,
            verdict_first: false,
            events: VecDeque::new(),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether every NCP asked for is opened.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// What IPCP agreed, once opened.
    pub fn ipcp(&self) -> Option<IpcpNegotiated> {
        self.ipcp.negotiated()
    }

    pub fn ipv6cp(&self) -> Option<Ipv6cpNegotiated> {
        self.ipv6cp.as_ref().and_then(|fsm| fsm.negotiated())
    }

    /// The L2TP session is up: LCP starts (RFC 1661 §3.2, Establish).
    pub fn start(&mut self, now: Instant) {
        if self.phase != Phase::Dead || self.failed {
            return;
        }
        self.enter(Phase::Establish);
        self.lcp.open(now);
        self.lcp.up(now);
        self.advance(now);
    }

    /// Ends the link as a user would: LCP Terminate-Request (then the caller sends the CDN
    /// once [`PppSession::phase`] is Dead or the drain time is over).
    pub fn close(&mut self, now: Instant) {
        if self.phase != Phase::Open && self.phase != Phase::Dead {
            self.fail(PppFailure::Closed { phase: self.phase });
        }
        self.lcp.close(now);
        if self.phase != Phase::Dead {
            self.enter(Phase::Terminate);
        }
        self.advance(now);
    }

    /// The L2TP session is gone (CDN): everything stops at once, nothing more is sent.
    pub fn lower_down(&mut self, now: Instant) {
        if self.phase != Phase::Open && self.phase != Phase::Dead {
            self.fail(PppFailure::Closed { phase: self.phase });
        }
        self.lcp.down(now);
        self.network_down(now);
        self.enter(Phase::Dead);
        self.advance(now);
    }

    /// Queues an LCP Echo-Request; its Identifier, or `None` when LCP is not opened.
    pub fn send_echo(&mut self) -> Option<u8> {
        self.lcp.send_echo_request(&[])
    }

    /// Takes one PPP frame (the payload of an L2TP data message).
    pub fn handle<'a>(&mut self, now: Instant, bytes: &'a [u8]) -> Received<'a> {
        let (repr, info) = match FrameRepr::parse(bytes) {
            Ok(parsed) => parsed,
            Err(err) => return Received::Malformed(err),
        };
        let received = match repr.protocol {
            protocol::IPV4 | protocol::IPV6 => self.ip(repr.protocol, info),
            protocol::LCP | protocol::PAP | protocol::CHAP | protocol::IPCP | protocol::IPV6CP => {
                match PacketRepr::parse_bytes(info) {
                    Ok(packet) => self.control(now, repr.protocol, packet),
                    Err(err) => Received::Malformed(err),
                }
            }
            other if self.lcp.is_opened() => {
                self.lcp.send_protocol_reject(other, info);
                Received::ProtocolRejected(other)
            }
            // §5.7: Protocol-Reject only in Opened; before, the frame is dropped.
            _ => Received::Discarded,
        };
        self.advance(now);
        received
    }

    fn ip<'a>(&self, protocol: u16, packet: &'a [u8]) -> Received<'a> {
        let open = match protocol {
            protocol::IPV4 => self.ipcp.is_opened(),
            _ => self.ipv6cp.as_ref().is_some_and(|fsm| fsm.is_opened()),
        };
        if open {
            Received::Ip { protocol, packet }
        } else {
            Received::Discarded
        }
    }

    fn control(&mut self, now: Instant, proto: u16, packet: PacketRepr<'_>) -> Received<'static> {
        let network = matches!(self.phase, Phase::Network | Phase::Open);
        match proto {
            protocol::LCP => self.lcp.handle(now, packet),
            protocol::PAP | protocol::CHAP => return self.auth_packet(now, proto, packet),
            // §3.2: NCP packets before the Network phase are silently discarded.
            protocol::IPCP if network => self.ipcp.handle(now, packet),
            protocol::IPV6CP if network => match self.ipv6cp.as_mut() {
                Some(fsm) => fsm.handle(now, packet),
                None if self.lcp.is_opened() => {
                    // IPv6CP not wanted here: the peer learns so by a Protocol-Reject.
                    let mut info = Vec::with_capacity(packet.buffer_len());
                    let _ = packet.emit_to_vec(&mut info);
                    self.lcp.send_protocol_reject(proto, &info);
                    return Received::ProtocolRejected(proto);
                }
                None => return Received::Discarded,
            },
            _ => return Received::Discarded,
        }
        Received::Control
    }

    fn auth_packet(
        &mut self,
        now: Instant,
        proto: u16,
        packet: PacketRepr<'_>,
    ) -> Received<'static> {
        let config = Arc::clone(&self.config);
        let handled = match (&mut self.auth, proto) {
            (Auth::PapPeer(peer), protocol::PAP) => peer.handle(now, packet),
            (Auth::ChapPeer(peer), protocol::CHAP) => {
                let Ok(credentials) = Credentials::new(self.username.as_bytes(), &config.password)
                else {
                    return Received::Discarded;
                };
                peer.handle(now, packet, &credentials)
            }
            (Auth::PapAuthenticator(auth), protocol::PAP) => match &config.secrets {
                Some(secrets) => auth.handle(now, packet, secrets.as_ref()),
                None => auth.handle(now, packet, &NoSecrets),
            },
            (Auth::ChapAuthenticator(auth), protocol::CHAP) => match &config.secrets {
                Some(secrets) => auth.handle(now, packet, secrets.as_ref()),
                None => auth.handle(now, packet, &NoSecrets),
            },
            _ => return Received::Discarded,
        };
        match handled {
            Ok(_) => Received::Control,
            Err(err) => Received::Malformed(err),
        }
    }

    /// The next frame to send, appended to `out` (address/control and protocol included).
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        let mut packet = Vec::new();
        // A failed authentication's verdict goes before the Terminate-Request that follows it.
        let verdict = if self.verdict_first {
            self.verdict_first = false;
            self.poll_auth(&mut packet)
        } else {
            None
        };
        let proto = if let Some(proto) = verdict {
            self.verdict_first = true;
            proto
        } else if self.lcp.poll_transmit(&mut packet) {
            protocol::LCP
        } else if let Some(proto) = self.poll_auth(&mut packet) {
            proto
        } else if self.ipcp.poll_transmit(&mut packet) {
            protocol::IPCP
        } else if self
            .ipv6cp
            .as_mut()
            .is_some_and(|fsm| fsm.poll_transmit(&mut packet))
        {
            protocol::IPV6CP
        } else {
            return false;
        };
        // Full headers always: compression is a permission (§6.5, §6.6), and LCP may not use
        // it at all.
        FrameRepr::full(proto).emit_to_vec(&packet, out);
        true
    }

    fn poll_auth(&mut self, packet: &mut Vec<u8>) -> Option<u16> {
        let sent = match &mut self.auth {
            Auth::None => false,
            Auth::PapPeer(peer) => {
                let credentials =
                    Credentials::new(self.username.as_bytes(), &self.config.password).ok()?;
                return peer
                    .poll_transmit(&credentials, packet)
                    .then_some(protocol::PAP);
            }
            Auth::ChapPeer(peer) => {
                let credentials =
                    Credentials::new(self.username.as_bytes(), &self.config.password).ok()?;
                return peer
                    .poll_transmit(&credentials, packet)
                    .then_some(protocol::CHAP);
            }
            Auth::PapAuthenticator(auth) => {
                return auth.poll_transmit(packet).then_some(protocol::PAP);
            }
            Auth::ChapAuthenticator(auth) => auth.poll_transmit(packet),
        };
        sent.then_some(protocol::CHAP)
    }

    /// An IPv4 packet to send to the peer, framed; false when IPCP is not opened.
    pub fn send_ipv4(&self, packet: &[u8], out: &mut Vec<u8>) -> bool {
        if !self.ipcp.is_opened() {
            return false;
        }
        FrameRepr::full(protocol::IPV4).emit_to_vec(packet, out);
        true
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let auth = match &self.auth {
            Auth::None => None,
            Auth::PapPeer(peer) => peer.poll_timeout(),
            Auth::ChapPeer(peer) => peer.poll_timeout(),
            Auth::PapAuthenticator(auth) => auth.poll_timeout(),
            Auth::ChapAuthenticator(auth) => auth.poll_timeout(),
        };
        [
            self.lcp.poll_timeout(),
            auth,
            self.ipcp.poll_timeout(),
            self.ipv6cp.as_ref().and_then(|fsm| fsm.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.lcp.poll_timeout().is_some_and(|t| t <= now) {
            self.lcp.handle_timeout(now);
        }
        match &mut self.auth {
            Auth::None => {}
            Auth::PapPeer(peer) if peer.poll_timeout().is_some_and(|t| t <= now) => {
                peer.handle_timeout(now)
            }
            Auth::ChapPeer(peer) if peer.poll_timeout().is_some_and(|t| t <= now) => {
                peer.handle_timeout(now)
            }
            Auth::PapAuthenticator(auth) if auth.poll_timeout().is_some_and(|t| t <= now) => {
                auth.handle_timeout(now)
            }
            Auth::ChapAuthenticator(auth) if auth.poll_timeout().is_some_and(|t| t <= now) => {
                auth.handle_timeout(now)
            }
            _ => {}
        }
        if self.ipcp.poll_timeout().is_some_and(|t| t <= now) {
            self.ipcp.handle_timeout(now);
        }
        if let Some(fsm) = self.ipv6cp.as_mut() {
            if fsm.poll_timeout().is_some_and(|t| t <= now) {
                fsm.handle_timeout(now);
            }
        }
        self.advance(now);
    }

    pub fn poll_event(&mut self) -> Option<PppEvent> {
        let event = self.events.pop_front();
        if self.events.is_empty() && self.events.capacity() > 0 {
            // Idle sessions keep no allocation.
            self.events = VecDeque::new();
        }
        event
    }

    fn enter(&mut self, phase: Phase) {
        if self.phase != phase {
            self.phase = phase;
            self.events.push_back(PppEvent::Phase(phase));
        }
    }

    fn fail(&mut self, failure: PppFailure) {
        if !self.failed {
            self.failed = true;
            self.events.push_back(PppEvent::Failed(failure));
        }
    }

    /// Moves the phases on from what the parts reported.
    fn advance(&mut self, now: Instant) {
        while let Some(event) = self.lcp.poll_event() {
            self.on_lcp(now, event);
        }
        self.poll_auth_outcome(now);
        while let Some(event) = self.ipcp.poll_event() {
            self.on_ncp(now, "IPCP", event);
        }
        while let Some(event) = self.ipv6cp.as_mut().and_then(|fsm| fsm.poll_event()) {
            self.on_ncp(now, "IPv6CP", event);
        }
    }

    fn on_lcp(&mut self, now: Instant, event: FsmEvent) {
        match event {
            FsmEvent::Up => self.lcp_opened(now),
            FsmEvent::Down => {
                // Authentication belongs to one Opened period of LCP (RFC 1661 §3.5): a
                // renegotiation starts it afresh at the next Up. Until then PAP/CHAP packets
                // are discarded and no old timer runs: a stale peer that answered a Challenge
                // early would be replaced at Up and drop the Success to it. A failed
                // authentication keeps its machine until the verdict is out.
                if !self.verdict_first {
                    self.auth = Auth::None;
                }
                self.network_down(now);
                if self.phase != Phase::Dead {
                    self.enter(Phase::Terminate);
                }
            }
            FsmEvent::Finished => {
                // Every way to here before Open has said why already (timeout, NAK loop, the
                // peer's Terminate-Request, an authentication verdict); this is the rest.
                if matches!(
                    self.phase,
                    Phase::Establish | Phase::Authenticate | Phase::Network
                ) {
                    let phase = self.phase;
                    self.fail(PppFailure::Closed { phase });
                }
                self.network_down(now);
                self.enter(Phase::Dead);
            }
            FsmEvent::ConfigureTimeout => self.fail(PppFailure::Timeout {
                phase: Phase::Establish,
                protocol: "LCP",
            }),
            FsmEvent::Failed(failure) => self.fail(negotiation_failure("LCP", failure)),
            FsmEvent::TerminateRequested(data) => {
                let phase = self.phase;
                let reason = String::from_utf8_lossy(&data).into_owned();
                self.fail(PppFailure::TerminatedByPeer { phase, reason });
            }
            FsmEvent::ProtocolRejected { protocol } => {
                if protocol == protocol::IPV6CP {
                    // The peer does no IPv6: the session opens on IPv4 alone.
                    self.ipv6cp = None;
                    self.check_open();
                } else if protocol == protocol::LCP || protocol == protocol::IPCP {
                    let name = if protocol == protocol::LCP {
                        "LCP"
                    } else {
                        "IPCP"
                    };
                    self.fail(PppFailure::Rejected { protocol: name });
                    self.lcp.close(now);
                }
            }
            FsmEvent::CodeRejected {
                catastrophic: true, ..
            } => self.fail(PppFailure::Rejected { protocol: "LCP" }),
            FsmEvent::LoopbackSuspected => self.events.push_back(PppEvent::LoopbackSuspected),
            FsmEvent::EchoReply { identifier, .. } => {
                self.events.push_back(PppEvent::EchoReply { identifier })
            }
            _ => {}
        }
    }

    fn lcp_opened(&mut self, now: Instant) {
        let Some(negotiated) = self.lcp.negotiated() else {
            return;
        };
        let auth = match self.config.side {
            Side::Client => negotiated.peer_auth,
            Side::Server => negotiated.our_auth,
        };
        self.auth = match (self.config.side, auth) {
            (_, None) => Auth::None,
            (Side::Client, Some(AuthProtocol::Pap)) => {
                let first = splitmix64(&mut self.rng) as u8;
                Auth::PapPeer(PapPeer::new(self.config.peer, first, now))
            }
            (Side::Client, Some(AuthProtocol::Chap { .. })) => {
                Auth::ChapPeer(ChapPeer::new(self.config.peer, now))
            }
            (Side::Server, Some(AuthProtocol::Pap)) => Auth::PapAuthenticator(
                PapAuthenticator::new(Arc::clone(&self.config.authenticator), now),
            ),
            (Side::Server, Some(AuthProtocol::Chap { .. })) => {
                let mut challenge = [0u8; VALUE_LEN];
                for chunk in challenge.chunks_mut(8) {
                    let word = splitmix64(&mut self.rng).to_be_bytes();
                    chunk.copy_from_slice(word.get(..chunk.len()).unwrap_or(&word));
                }
                let identifier = splitmix64(&mut self.rng) as u8;
                Auth::ChapAuthenticator(Box::new(ChapAuthenticator::new(
                    Arc::clone(&self.config.authenticator),
                    identifier,
                    challenge,
                    now,
                )))
            }
            (_, Some(AuthProtocol::Other(_))) => {
                self.fail(PppFailure::Refused {
                    protocol: "LCP",
                    reason: "an authentication protocol we cannot do",
                });
                self.lcp.close(now);
                return;
            }
        };
        if matches!(self.auth, Auth::None) {
            self.network_up(now);
        } else {
            self.enter(Phase::Authenticate);
        }
    }

    fn poll_auth_outcome(&mut self, now: Instant) {
        let verdict = match &mut self.auth {
            Auth::None => None,
            Auth::PapPeer(peer) => peer.poll_event().map(peer_verdict),
            Auth::ChapPeer(peer) => peer.poll_event().map(peer_verdict),
            Auth::PapAuthenticator(auth) => auth.poll_event().map(authenticator_verdict),
            Auth::ChapAuthenticator(auth) => auth.poll_event().map(authenticator_verdict),
        };
        match verdict {
            Some(Ok(text)) if self.phase == Phase::Authenticate => {
                self.events.push_back(PppEvent::Authenticated { text });
                self.network_up(now);
            }
            Some(Err(failure)) => {
                self.verdict_first = true;
                self.fail(failure);
                self.lcp.close(now);
                self.enter(Phase::Terminate);
            }
            _ => {}
        }
    }

    fn network_up(&mut self, now: Instant) {
        self.enter(Phase::Network);
        self.ipcp.open(now);
        self.ipcp.up(now);
        if let Some(fsm) = self.ipv6cp.as_mut() {
            fsm.open(now);
            fsm.up(now);
        }
        // Their first Configure-Requests are queued; events come with the answers.
        self.advance_ncps(now);
    }

    fn advance_ncps(&mut self, now: Instant) {
        while let Some(event) = self.ipcp.poll_event() {
            self.on_ncp(now, "IPCP", event);
        }
        while let Some(event) = self.ipv6cp.as_mut().and_then(|fsm| fsm.poll_event()) {
            self.on_ncp(now, "IPv6CP", event);
        }
    }

    fn network_down(&mut self, now: Instant) {
        if self.ipcp.state() != State::Initial {
            self.ipcp.down(now);
            self.ipcp.close(now);
        }
        if let Some(fsm) = self.ipv6cp.as_mut() {
            if fsm.state() != State::Initial {
                fsm.down(now);
                fsm.close(now);
            }
        }
        // The NCPs' Down/Finished events say nothing the LCP's did not.
        while self.ipcp.poll_event().is_some() {}
        while self
            .ipv6cp
            .as_mut()
            .and_then(|fsm| fsm.poll_event())
            .is_some()
        {}
    }

    fn on_ncp(&mut self, now: Instant, protocol: &'static str, event: FsmEvent) {
        match event {
            FsmEvent::Up => {
                if protocol == "IPCP" {
                    if let Some(negotiated) = self.ipcp.negotiated() {
                        self.events.push_back(PppEvent::IpcpOpened(negotiated));
                    }
                } else if let Some(negotiated) = self.ipv6cp() {
                    self.events.push_back(PppEvent::Ipv6cpOpened(negotiated));
                }
                self.check_open();
            }
            FsmEvent::Down if self.phase == Phase::Open => self.enter(Phase::Network),
            FsmEvent::ConfigureTimeout => self.ncp_failed(
                protocol,
                PppFailure::Timeout {
                    phase: Phase::Network,
                    protocol,
                },
            ),
            FsmEvent::Failed(failure) => {
                self.ncp_failed(protocol, negotiation_failure(protocol, failure))
            }
            FsmEvent::CodeRejected {
                catastrophic: true, ..
            } => self.ncp_failed(protocol, PppFailure::Rejected { protocol }),
            FsmEvent::TerminateRequested(data) => {
                let reason = format!("{protocol}: {}", String::from_utf8_lossy(&data));
                let phase = self.phase;
                self.ncp_failed(protocol, PppFailure::TerminatedByPeer { phase, reason });
            }
            // tlf: the NCP stopped for good (after any of the above, or a way they do not
            // name). Without IPv6CP the session can still open on IPv4; without IPCP it
            // cannot, and waiting would hang: the link ends.
            FsmEvent::Finished if matches!(self.phase, Phase::Network | Phase::Open) => {
                if protocol == "IPv6CP" {
                    self.ipv6cp = None;
                    self.check_open();
                } else {
                    let phase = self.phase;
                    self.fail(PppFailure::Closed { phase });
                    self.end_network(now);
                }
            }
            _ => {}
        }
    }

    /// IPCP failing fails the session; IPv6CP failing only says so (the session opens on
    /// IPv4 once the automaton has finished).
    fn ncp_failed(&mut self, protocol: &'static str, failure: PppFailure) {
        if protocol == "IPv6CP" {
            self.events.push_back(PppEvent::Ipv6cpFailed(failure));
        } else {
            self.fail(failure);
        }
    }

    /// IPCP cannot go on: LCP terminates the link.
    fn end_network(&mut self, now: Instant) {
        self.lcp.close(now);
        self.enter(Phase::Terminate);
    }

    fn check_open(&mut self) {
        let ipv6 = self.ipv6cp.as_ref().is_none_or(|fsm| fsm.is_opened());
        if self.phase == Phase::Network && self.ipcp.is_opened() && ipv6 {
            self.enter(Phase::Open);
        }
    }
}

fn negotiation_failure(protocol: &'static str, failure: Failure) -> PppFailure {
    match failure {
        Failure::NotConverging => PppFailure::NotConverging { protocol },
        Failure::Refused(refusal) => PppFailure::Refused {
            protocol,
            reason: refusal.reason,
        },
    }
}

fn peer_verdict(outcome: PeerOutcome) -> Result<String, PppFailure> {
    match outcome {
        PeerOutcome::Success { message } => Ok(message.into()),
        PeerOutcome::Failure { message } => Err(PppFailure::AuthRejected {
            message: message.into(),
        }),
        PeerOutcome::Timeout => Err(PppFailure::AuthTimeout),
    }
}

fn authenticator_verdict(outcome: AuthenticatorOutcome) -> Result<String, PppFailure> {
    match outcome {
        AuthenticatorOutcome::Success { peer } => Ok(String::from_utf8_lossy(&peer).into_owned()),
        AuthenticatorOutcome::Failure { peer, reason } => Err(PppFailure::AuthRejected {
            message: format!("{} ({reason:?})", String::from_utf8_lossy(&peer)),
        }),
        AuthenticatorOutcome::Timeout => Err(PppFailure::AuthTimeout),
    }
}

/// The authenticator's table when the server was given none: nobody is known.
struct NoSecrets;

impl Secrets for NoSecrets {
    fn lookup(&self, _name: &[u8]) -> Option<&[u8]> {
        None
    }
}

#[cfg(test)]
mod tests;
