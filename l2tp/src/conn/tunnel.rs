//! One tunnel: the control connection state machine (RFC 2661 §7.2), its sessions (§7.3–§7.5),
//! tunnel authentication (§5.1.1), hidden AVPs (§4.3) and keepalives (§5.5), on top of the
//! reliable delivery of [`super::reliable`].
//!
//! Sans-IO like the rest of `conn`: the owner feeds received packets to [`Tunnel::handle`],
//! sends what [`Tunnel::poll_transmit`] writes, calls [`Tunnel::handle_timeout`] at
//! [`Tunnel::poll_timeout`], and reads [`Event`]s from [`Tunnel::poll_event`].

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use md5::{Digest, Md5};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha12Rng as StdRng;

use super::reliable::{Reliable, ReliableConfig};
use crate::time::Instant;
use crate::wire::avp::{AvpRepr, AvpType, AvpValue};
use crate::wire::header::{HeaderRepr, Sequence};
use crate::wire::message::{ControlMessage, MessageType, PacketRepr};
use crate::wire::rules;

/// What a tunnel says about itself and how it behaves; shared by every tunnel of a node.
#[derive(Debug, Clone)]
pub struct TunnelConfig {
    pub host_name: String,
    pub vendor_name: Option<String>,
    /// Tunnel secret: enables the Challenge / Challenge Response exchange and hidden AVPs.
    pub secret: Option<Vec<u8>>,
    /// Hide the AVPs of [`HIDDEN_AVPS`] (needs `secret`).
    pub hide_avps: bool,
    pub reliable: ReliableConfig,
    /// Send HELLO after this long without hearing from the peer (§5.5, default 60 s).
    pub hello_interval: Duration,
    pub framing_capabilities: u32,
    pub bearer_capabilities: u32,
    /// Sent in SCCRQ when set (§4.4.3).
    pub tie_breaker: Option<[u8; 8]>,
    /// Ask for sequenced data messages (Sequencing Required AVP in ICCN / OCCN).
    pub sequencing_required: bool,
    /// Send data messages with the O bit and this many octets of Offset Pad (§3.1); peers
    /// must skip the pad.
    pub data_offset: Option<u16>,
    /// Keep a log of every control message queued and delivered (tests and tracing only: it
    /// grows with the tunnel's life).
    pub record_messages: bool,
}

impl Default for TunnelConfig {
    fn default() -> Self {
        TunnelConfig {
            host_name: "l2tpkit".to_string(),
            vendor_name: Some("l2tpkit".to_string()),
            secret: None,
            hide_avps: false,
            reliable: ReliableConfig::default(),
            hello_interval: Duration::from_secs(60),
            framing_capabilities: 0x3,
            bearer_capabilities: 0x0,
            tie_breaker: None,
            sequencing_required: false,
            data_offset: None,
            record_messages: false,
        }
    }
}

/// AVPs hidden when `hide_avps` is on: those xl2tpd hides, plus the call's numbers.
pub const HIDDEN_AVPS: &[AvpType] = &[
    AvpType::AssignedSessionId,
    AvpType::CallingNumber,
    AvpType::CalledNumber,
];

/// How long a tunnel may take from its creation to established: two full retransmission
/// cycles, one for our SCCRQ or SCCRP and one for the peer's answer to its last retransmission
/// (62 s with the defaults).
fn setup_time(config: &TunnelConfig) -> Duration {
    config.reliable.full_retransmit_cycle().saturating_mul(2)
}

/// Protocol Version 1, Revision 0 (§4.4.3), also the Error Code of a version mismatch.
const PROTOCOL_VERSION: (u8, u8) = (1, 0);

/// Who sent the SCCRQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Initiator,
    Responder,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelState {
    /// Responder before the SCCRQ has been processed.
    Idle,
    /// Initiator: SCCRQ sent.
    WaitCtlReply,
    /// Responder: SCCRP sent.
    WaitCtlConn,
    Established,
    /// StopCCN sent or received: state kept for one full retransmission cycle (§5.7).
    Closing,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallDirection {
    /// ICRQ / ICRP / ICCN: the LAC saw a call.
    Incoming,
    /// OCRQ / OCRP / OCCN: the LNS asks the LAC to place a call.
    Outgoing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// ICRQ or OCRQ sent, waiting for ICRP / OCRP.
    WaitReply,
    /// ICRP sent (or OCRP received), waiting for ICCN / OCCN.
    WaitConnect,
    Established,
}

/// A Result Code AVP's content (§4.4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultCode {
    pub result: u16,
    pub error: Option<u16>,
    pub message: Option<String>,
}

impl ResultCode {
    pub fn new(result: u16) -> ResultCode {
        ResultCode {
            result,
            error: None,
            message: None,
        }
    }

    pub fn error(result: u16, error: u16, message: impl Into<String>) -> ResultCode {
        ResultCode {
            result,
            error: Some(error),
            message: Some(message.into()),
        }
    }

    /// StopCCN 1 / CDN 3: a clean, administrative teardown.
    pub const CLEAR_TUNNEL: u16 = 1;
    pub const ADMIN_CALL: u16 = 3;
    /// StopCCN and CDN result 2: the Error Code says why.
    pub const GENERAL_ERROR: u16 = 2;
    pub const NOT_AUTHORIZED: u16 = 4;
    pub const BAD_VERSION: u16 = 5;
    pub const FSM_ERROR: u16 = 7;
    /// General error codes (§4.4.2).
    pub const ERROR_BAD_SESSION: u16 = 5;
    pub const ERROR_VENDOR: u16 = 6;
    pub const ERROR_UNKNOWN_MANDATORY_AVP: u16 = 8;

    fn from_avp(value: Option<&AvpValue>) -> ResultCode {
        match value {
            Some(AvpValue::ResultCode {
                result,
                error,
                message,
            }) => ResultCode {
                result: *result,
                error: *error,
                message: message
                    .as_ref()
                    .map(|m| String::from_utf8_lossy(m).into_owned()),
            },
            _ => ResultCode::new(0),
        }
    }

    fn to_avp(&self) -> AvpValue<'static> {
        // A message needs an error code in front of it on the wire.
        let error = self.error.or(self.message.as_ref().map(|_| 0));
        AvpValue::ResultCode {
            result: self.result,
            error,
            message: self
                .message
                .as_ref()
                .map(|m| Cow::Owned(m.clone().into_bytes())),
        }
    }
}

impl core::fmt::Display for ResultCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "result {}", self.result)?;
        if let Some(error) = self.error {
            write!(f, " error {error}")?;
        }
        if let Some(message) = &self.message {
            write!(f, " ({message})")?;
        }
        Ok(())
    }
}

/// What the tunnel tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    TunnelUp {
        peer_tunnel_id: u16,
        peer_host_name: String,
    },
    /// The tunnel is going down; `by_peer` when the peer sent the StopCCN.
    TunnelDown { result: ResultCode, by_peer: bool },
    SessionUp {
        session_id: u16,
        peer_session_id: u16,
        direction: CallDirection,
    },
    SessionDown {
        session_id: u16,
        result: ResultCode,
        by_peer: bool,
    },
    /// A PPP frame arrived on an established session.
    Data { session_id: u16, frame: Vec<u8> },
    /// WEN from the LAC: the counters of the Call Errors AVP.
    WanError { session_id: u16, crc_errors: u32 },
    /// SLI from the LNS.
    LinkInfo {
        session_id: u16,
        send_accm: u32,
        receive_accm: u32,
    },
    /// All state is gone; the owner may drop the tunnel and reuse its ID.
    Closed,
}

/// Counters a runner exports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelStats {
    pub data_sent: u64,
    pub data_received: u64,
    /// Data messages for a session that is not established (dropped).
    pub data_dropped: u64,
    pub control_received: u64,
    /// Control messages that arrived in a state that does not take them.
    pub unexpected: u64,
}

#[derive(Debug, Clone)]
struct Session {
    peer_id: u16,
    state: SessionState,
    direction: CallDirection,
    /// Data message sequence numbers (§5.4), used when sequencing is on.
    sequencing: bool,
    data_ns: u16,
    data_nr: u16,
}

/// One L2TP tunnel and its sessions.
#[derive(Debug)]
pub struct Tunnel {
    config: Arc<TunnelConfig>,
    role: Role,
    state: TunnelState,
    local_id: u16,
    peer_id: u16,
    peer_host_name: String,
    reliable: Reliable,
    rng: StdRng,
    /// The Challenge we sent; the peer's response must match it.
    our_challenge: Option<[u8; 16]>,
    sessions: BTreeMap<u16, Session>,
    next_session_id: u16,
    next_call_serial: u32,
    events: VecDeque<Event>,
    /// Data messages ready to go (unreliable, sent before control traffic).
    data_out: VecDeque<Vec<u8>>,
    last_heard: Instant,
    hello_sent_at: Option<Instant>,
    /// End of the §5.7 hold after a StopCCN.
    close_at: Option<Instant>,
    /// A tunnel not established by then is closed: once the peer has acknowledged our SCCRQ
    /// or SCCRP, no retransmission is left to give up on, and without this a peer that never
    /// sends the SCCRP / SCCCN would hold the tunnel (and its ID) for ever.
    setup_deadline: Instant,
    stats: TunnelStats,
    log: MessageLog,
}

/// With `record_messages`: what this tunnel queued for the peer and what it delivered upward,
/// in order. Lets tests check exactly-once, in-order delivery end to end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageLog {
    pub queued: Vec<MessageType>,
    /// (Ns, type) of each delivered message.
    pub delivered: Vec<(u16, MessageType)>,
}

impl Tunnel {
    fn new(config: Arc<TunnelConfig>, role: Role, local_id: u16, seed: u64, now: Instant) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let next_session_id = (rng.next_u32() as u16).max(1);
        let setup_deadline = now + setup_time(&config);
        Tunnel {
            reliable: Reliable::new(config.reliable.clone()),
            config,
            role,
            state: TunnelState::Idle,
            local_id,
            peer_id: 0,
            peer_host_name: String::new(),
            rng,
            our_challenge: None,
            sessions: BTreeMap::new(),
            next_session_id,
            next_call_serial: 1,
            events: VecDeque::new(),
            data_out: VecDeque::new(),
            last_heard: now,
            hello_sent_at: None,
            close_at: None,
            setup_deadline,
            stats: TunnelStats::default(),
            log: MessageLog::default(),
        }
    }

    /// Opens a tunnel: queues the SCCRQ. `seed` drives challenges and random vectors (the
    /// simulator passes a fixed one; runners pass OS randomness).
    pub fn connect(config: Arc<TunnelConfig>, local_id: u16, seed: u64, now: Instant) -> Tunnel {
        let mut tunnel = Tunnel::new(config, Role::Initiator, local_id, seed, now);
        let mut avps = tunnel.start_avps();
        if let Some(tie) = tunnel.config.tie_breaker {
            avps.push(AvpRepr::optional(AvpValue::TieBreaker(tie)));
        }
        tunnel.send(MessageType::Sccrq, 0, avps);
        tunnel.state = TunnelState::WaitCtlReply;
        tunnel
    }

    /// Answers an SCCRQ: the new tunnel processes it and queues the SCCRP (or a StopCCN).
    pub fn accept(
        config: Arc<TunnelConfig>,
        local_id: u16,
        seed: u64,
        now: Instant,
        sccrq: ControlMessage<'_>,
    ) -> Tunnel {
        let mut tunnel = Tunnel::new(config, Role::Responder, local_id, seed, now);
        tunnel.handle_control(now, sccrq);
        tunnel
    }

    pub fn role(&self) -> Role {
        self.role
    }
    pub fn state(&self) -> TunnelState {
        self.state
    }
    pub fn local_id(&self) -> u16 {
        self.local_id
    }
    /// The peer's Assigned Tunnel ID (0 until known).
    pub fn peer_id(&self) -> u16 {
        self.peer_id
    }
    pub fn stats(&self) -> TunnelStats {
        self.stats
    }
    pub fn message_log(&self) -> &MessageLog {
        &self.log
    }
    pub fn reliable(&self) -> &Reliable {
        &self.reliable
    }
    pub fn session_state(&self, session_id: u16) -> Option<SessionState> {
        self.sessions.get(&session_id).map(|s| s.state)
    }
    pub fn session_ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.sessions.keys().copied()
    }

    /// A packet from the peer, already parsed (with this tunnel's secret, so hidden AVPs are
    /// plain).
    pub fn handle(&mut self, now: Instant, packet: PacketRepr<'_>) {
        match packet {
            PacketRepr::Control(message) => self.handle_control(now, message),
            PacketRepr::Data { header, payload } => self.handle_data(now, header, payload),
        }
    }

    fn handle_data(&mut self, now: Instant, header: HeaderRepr, payload: &[u8]) {
        self.last_heard = now;
        match self.sessions.get_mut(&header.session_id) {
            Some(session) if session.state == SessionState::Established => {
                if let Some(seq) = header.sequence {
                    session.data_nr = seq.ns.wrapping_add(1);
                }
                self.stats.data_received += 1;
                self.events.push_back(Event::Data {
                    session_id: header.session_id,
                    frame: payload.to_vec(),
                });
            }
            _ => self.stats.data_dropped += 1,
        }
    }

    fn handle_control(&mut self, now: Instant, message: ControlMessage<'_>) {
        if self.state == TunnelState::Closed {
            return;
        }
        self.last_heard = now;
        self.stats.control_received += 1;
        self.reliable.handle(now, message.into_owned());
        while let Some(message) = self.reliable.poll_deliver() {
            self.process(now, message);
        }
    }

    /// One in-order control message.
    fn process(&mut self, now: Instant, message: ControlMessage<'static>) {
        let Some(kind) = message.message_type() else {
            return;
        };
        if self.config.record_messages {
            let ns = message.header.sequence.map_or(0, |s| s.ns);
            self.log.delivered.push((ns, kind));
        }
        if self.state == TunnelState::Closing {
            // Only the reliable layer still works: it acknowledges, nothing else happens.
            return;
        }
        if matches!(kind, MessageType::Sccrq | MessageType::Sccrp) && self.peer_id == 0 {
            // A StopCCN refusing this very message must carry the peer's Tunnel ID (§5.3), or
            // the peer cannot tell which tunnel it ends.
            self.learn_peer_tunnel_id(&message);
        }
        let session_id = message.header.session_id;
        let session_scoped = matches!(
            kind,
            MessageType::Icrq
                | MessageType::Icrp
                | MessageType::Iccn
                | MessageType::Ocrq
                | MessageType::Ocrp
                | MessageType::Occn
                | MessageType::Cdn
                | MessageType::Wen
                | MessageType::Sli
        );
        // §4.2: an unrecognized AVP with M set ends the session, or the tunnel it concerns.
        if let Some(avp) = unknown_mandatory(&message) {
            let result = ResultCode::error(
                ResultCode::GENERAL_ERROR,
                ResultCode::ERROR_UNKNOWN_MANDATORY_AVP,
                format!("unknown mandatory AVP {avp}"),
            );
            return self.fail(now, &message, session_scoped, result);
        }
        if let MessageType::Unknown(_) = kind {
            // Message Type AVPs with M set were caught above; without M, ignore (§4.2).
            return;
        }
        if let Some(missing) = rules::missing_avps(&message).next() {
            let result = ResultCode::error(
                ResultCode::GENERAL_ERROR,
                ResultCode::ERROR_VENDOR,
                format!("{} without its mandatory {} AVP", kind, missing.name()),
            );
            return self.fail(now, &message, session_scoped, result);
        }
        match kind {
            MessageType::Sccrq => self.on_sccrq(now, &message),
            MessageType::Sccrp => self.on_sccrp(now, &message),
            MessageType::Scccn => self.on_scccn(now, &message),
            MessageType::StopCcn => self.on_stopccn(now, &message),
            MessageType::Hello => {}
            _ if self.state != TunnelState::Established => {
                self.stats.unexpected += 1;
                let result = ResultCode::error(
                    ResultCode::FSM_ERROR,
                    0,
                    format!("{kind} before the tunnel is established"),
                );
                self.close(now, result);
            }
            MessageType::Icrq => self.on_icrq(&message),
            MessageType::Ocrq => self.on_ocrq(&message),
            MessageType::Icrp | MessageType::Ocrp => self.on_call_reply(kind, &message),
            MessageType::Iccn | MessageType::Occn => self.on_call_connected(kind, &message),
            MessageType::Cdn => self.on_cdn(&message),
            MessageType::Wen | MessageType::Sli if !self.sessions.contains_key(&session_id) => {
                self.stats.unexpected += 1;
            }
            MessageType::Wen => {
                if let Some(AvpValue::CallErrors { crc_errors, .. }) =
                    message.avp(AvpType::CallErrors)
                {
                    self.events.push_back(Event::WanError {
                        session_id,
                        crc_errors: *crc_errors,
                    });
                }
            }
            MessageType::Sli => {
                if let Some(AvpValue::Accm {
                    send_accm,
                    receive_accm,
                    ..
                }) = message.avp(AvpType::Accm)
                {
                    self.events.push_back(Event::LinkInfo {
                        session_id,
                        send_accm: *send_accm,
                        receive_accm: *receive_accm,
                    });
                }
            }
            MessageType::Unknown(_) => {}
        }
    }

    /// Ends the session a bad message concerns, or the whole tunnel.
    fn fail(
        &mut self,
        now: Instant,
        message: &ControlMessage,
        session_scoped: bool,
        result: ResultCode,
    ) {
        let kind = message.message_type();
        let session_id = message.header.session_id;
        if !session_scoped {
            self.close(now, result);
        } else if self.sessions.contains_key(&session_id) {
            self.close_session(session_id, result);
        } else if matches!(kind, Some(MessageType::Icrq | MessageType::Ocrq)) {
            // The call never existed here: refuse it with a CDN to the peer's session ID.
            let peer_session = match message.avp(AvpType::AssignedSessionId) {
                Some(AvpValue::AssignedSessionId(id)) => *id,
                _ => 0,
            };
            self.refuse_call(peer_session, result);
        } else {
            // About a session that is gone (a CDN crossing ours, say): §4.2 ends the session
            // the message concerns, and there is none; the tunnel's other sessions stay.
            self.stats.unexpected += 1;
        }
    }

    fn check_peer_basics(&mut self, message: &ControlMessage) -> Result<(), ResultCode> {
        if let Some(AvpValue::ProtocolVersion { version, revision }) =
            message.avp(AvpType::ProtocolVersion)
        {
            if (*version, *revision) != PROTOCOL_VERSION {
                return Err(ResultCode::error(
                    ResultCode::BAD_VERSION,
                    u16::from_be_bytes([PROTOCOL_VERSION.0, PROTOCOL_VERSION.1]),
                    "only L2TP protocol version 1.0",
                ));
            }
        }
        if let Some(AvpValue::AssignedTunnelId(0)) = message.avp(AvpType::AssignedTunnelId) {
            return Err(ResultCode::error(
                ResultCode::GENERAL_ERROR,
                3,
                "Assigned Tunnel ID 0",
            ));
        }
        self.learn_peer_tunnel_id(message);
        if let Some(AvpValue::ReceiveWindowSize(window)) = message.avp(AvpType::ReceiveWindowSize) {
            self.reliable.set_peer_window(*window);
        }
        if let Some(AvpValue::HostName(name)) = message.avp(AvpType::HostName) {
            self.peer_host_name = String::from_utf8_lossy(name).into_owned();
        }
        Ok(())
    }

    fn learn_peer_tunnel_id(&mut self, message: &ControlMessage) {
        if let Some(AvpValue::AssignedTunnelId(id @ 1..)) = message.avp(AvpType::AssignedTunnelId) {
            self.peer_id = *id;
            self.reliable.set_peer_tunnel_id(*id);
        }
    }

    fn on_sccrq(&mut self, now: Instant, message: &ControlMessage) {
        if self.role != Role::Responder || self.state != TunnelState::Idle {
            // §7.2.1: an SCCRQ inside a tunnel that exists is a state machine error.
            self.stats.unexpected += 1;
            let result = ResultCode::error(ResultCode::FSM_ERROR, 0, "unexpected SCCRQ");
            return self.close(now, result);
        }
        if let Err(result) = self.check_peer_basics(message) {
            return self.close(now, result);
        }
        let mut avps = self.start_avps();
        match self.answer_challenge(MessageType::Sccrp, message) {
            Ok(Some(response)) => avps.push(response),
            Ok(None) => {}
            Err(result) => return self.close(now, result),
        }
        self.state = TunnelState::WaitCtlConn;
        self.send(MessageType::Sccrp, 0, avps);
    }

    fn on_sccrp(&mut self, now: Instant, message: &ControlMessage) {
        if self.state != TunnelState::WaitCtlReply {
            self.stats.unexpected += 1;
            let result = ResultCode::error(ResultCode::FSM_ERROR, 0, "unexpected SCCRP");
            return self.close(now, result);
        }
        if let Err(result) = self.check_peer_basics(message) {
            return self.close(now, result);
        }
        if let Err(result) = self.verify_response(MessageType::Sccrp, message) {
            return self.close(now, result);
        }
        let mut avps = Vec::new();
        match self.answer_challenge(MessageType::Scccn, message) {
            Ok(Some(response)) => avps.push(response),
            Ok(None) => {}
            Err(result) => return self.close(now, result),
        }
        self.send(MessageType::Scccn, 0, avps);
        self.established(now);
    }

    fn on_scccn(&mut self, now: Instant, message: &ControlMessage) {
        if self.state != TunnelState::WaitCtlConn {
            // §7.2.1: SCCCN anywhere but wait-ctl-conn ends the tunnel.
            self.stats.unexpected += 1;
            let result = ResultCode::error(ResultCode::FSM_ERROR, 0, "unexpected SCCCN");
            return self.close(now, result);
        }
        if let Err(result) = self.verify_response(MessageType::Scccn, message) {
            return self.close(now, result);
        }
        self.established(now);
    }

    fn established(&mut self, now: Instant) {
        self.state = TunnelState::Established;
        self.last_heard = now;
        self.events.push_back(Event::TunnelUp {
            peer_tunnel_id: self.peer_id,
            peer_host_name: self.peer_host_name.clone(),
        });
    }

    fn on_stopccn(&mut self, now: Instant, message: &ControlMessage) {
        let result = ResultCode::from_avp(message.avp(AvpType::ResultCode));
        self.drop_sessions(&result, true);
        self.events.push_back(Event::TunnelDown {
            result,
            by_peer: true,
        });
        self.hold(now);
    }

    fn on_icrq(&mut self, message: &ControlMessage) {
        let Some(AvpValue::AssignedSessionId(peer_id)) = message.avp(AvpType::AssignedSessionId)
        else {
            return;
        };
        let Some(local_id) = self.allocate_session_id() else {
            return self.refuse_exhausted(*peer_id);
        };
        self.sessions.insert(
            local_id,
            Session {
                peer_id: *peer_id,
                state: SessionState::WaitConnect,
                direction: CallDirection::Incoming,
                sequencing: false,
                data_ns: 0,
                data_nr: 0,
            },
        );
        let sid = self.hideable(AvpValue::AssignedSessionId(local_id));
        self.send(MessageType::Icrp, *peer_id, vec![sid]);
    }

    fn on_ocrq(&mut self, message: &ControlMessage) {
        let Some(AvpValue::AssignedSessionId(peer_id)) = message.avp(AvpType::AssignedSessionId)
        else {
            return;
        };
        let Some(local_id) = self.allocate_session_id() else {
            return self.refuse_exhausted(*peer_id);
        };
        let sequencing = self.config.sequencing_required;
        self.sessions.insert(
            local_id,
            Session {
                peer_id: *peer_id,
                state: SessionState::Established,
                direction: CallDirection::Outgoing,
                sequencing,
                data_ns: 0,
                data_nr: 0,
            },
        );
        // The simulated LAC places the call at once: OCRP, then OCCN.
        let sid = self.hideable(AvpValue::AssignedSessionId(local_id));
        self.send(MessageType::Ocrp, *peer_id, vec![sid]);
        let avps = self.connected_avps();
        self.send(MessageType::Occn, *peer_id, avps);
        self.events.push_back(Event::SessionUp {
            session_id: local_id,
            peer_session_id: *peer_id,
            direction: CallDirection::Outgoing,
        });
    }

    /// ICRP or OCRP for a call we started.
    fn on_call_reply(&mut self, kind: MessageType, message: &ControlMessage) {
        let session_id = message.header.session_id;
        let Some(AvpValue::AssignedSessionId(peer_id)) = message.avp(AvpType::AssignedSessionId)
        else {
            return;
        };
        let expected = if kind == MessageType::Icrp {
            CallDirection::Incoming
        } else {
            CallDirection::Outgoing
        };
        let Some(session) = self.sessions.get_mut(&session_id) else {
            self.stats.unexpected += 1;
            return self.refuse_unknown_session(*peer_id);
        };
        if session.state != SessionState::WaitReply || session.direction != expected {
            self.stats.unexpected += 1;
            return;
        }
        session.peer_id = *peer_id;
        if kind == MessageType::Icrp {
            session.state = SessionState::Established;
            session.sequencing = self.config.sequencing_required;
            let avps = self.connected_avps();
            self.send(MessageType::Iccn, *peer_id, avps);
            self.events.push_back(Event::SessionUp {
                session_id,
                peer_session_id: *peer_id,
                direction: CallDirection::Incoming,
            });
        } else {
            session.state = SessionState::WaitConnect;
        }
    }

    /// ICCN or OCCN for a call the peer connected.
    fn on_call_connected(&mut self, kind: MessageType, message: &ControlMessage) {
        let session_id = message.header.session_id;
        let sequencing = message.avp(AvpType::SequencingRequired).is_some();
        let Some(session) = self.sessions.get_mut(&session_id) else {
            self.stats.unexpected += 1;
            return;
        };
        let expected = if kind == MessageType::Iccn {
            CallDirection::Incoming
        } else {
            CallDirection::Outgoing
        };
        if session.state != SessionState::WaitConnect || session.direction != expected {
            self.stats.unexpected += 1;
            return;
        }
        session.state = SessionState::Established;
        session.sequencing |= sequencing;
        let peer_session_id = session.peer_id;
        self.events.push_back(Event::SessionUp {
            session_id,
            peer_session_id,
            direction: expected,
        });
    }

    fn on_cdn(&mut self, message: &ControlMessage) {
        let result = ResultCode::from_avp(message.avp(AvpType::ResultCode));
        let mut session_id = message.header.session_id;
        if session_id == 0 {
            // A CDN sent before the peer learnt our ID names the call by its own ID.
            if let Some(AvpValue::AssignedSessionId(peer_id)) =
                message.avp(AvpType::AssignedSessionId)
            {
                session_id = self
                    .sessions
                    .iter()
                    .find(|(_, s)| s.peer_id == *peer_id)
                    .map_or(0, |(id, _)| *id);
            }
        }
        if self.sessions.remove(&session_id).is_some() {
            self.events.push_back(Event::SessionDown {
                session_id,
                result,
                by_peer: true,
            });
        } else {
            self.stats.unexpected += 1;
        }
    }

    fn refuse_unknown_session(&mut self, peer_session_id: u16) {
        let result = ResultCode::error(
            ResultCode::GENERAL_ERROR,
            ResultCode::ERROR_BAD_SESSION,
            "no such session",
        );
        self.refuse_call(peer_session_id, result);
    }

    /// CDN for a call that has no session here. 0 is never an Assigned Session ID (§5.3), so
    /// the CDN names a fresh one that is never used.
    fn refuse_call(&mut self, peer_session_id: u16, result: ResultCode) {
        // With every ID in use there is no fresh one; the next one in turn is the best left.
        let id = self
            .allocate_session_id()
            .unwrap_or(self.next_session_id.max(1));
        let sid = self.hideable(AvpValue::AssignedSessionId(id));
        self.send(
            MessageType::Cdn,
            peer_session_id,
            vec![AvpRepr::mandatory(result.to_avp()), sid],
        );
    }

    /// CDN result 4 (no facilities, temporary) when every Session ID of the tunnel is in use.
    fn refuse_exhausted(&mut self, peer_session_id: u16) {
        let result = ResultCode::error(4, 4, "all 65535 session IDs of this tunnel are in use");
        self.refuse_call(peer_session_id, result);
    }

    // ----- commands -----

    /// Starts an incoming call (LAC side): ICRQ. Returns the local session ID.
    pub fn open_incoming_call(&mut self) -> Option<u16> {
        self.open_call(CallDirection::Incoming, None)
    }

    /// Starts an outgoing call (LNS side): OCRQ for `called_number`.
    pub fn open_outgoing_call(&mut self, called_number: &str) -> Option<u16> {
        self.open_call(CallDirection::Outgoing, Some(called_number))
    }

    fn open_call(&mut self, direction: CallDirection, called: Option<&str>) -> Option<u16> {
        if self.state != TunnelState::Established {
            return None;
        }
        let local_id = self.allocate_session_id()?;
        let serial = self.next_call_serial;
        self.next_call_serial = self.next_call_serial.wrapping_add(1);
        self.sessions.insert(
            local_id,
            Session {
                peer_id: 0,
                state: SessionState::WaitReply,
                direction,
                sequencing: false,
                data_ns: 0,
                data_nr: 0,
            },
        );
        let sid = self.hideable(AvpValue::AssignedSessionId(local_id));
        match direction {
            CallDirection::Incoming => {
                let avps = vec![
                    sid,
                    AvpRepr::mandatory(AvpValue::CallSerialNumber(serial)),
                    AvpRepr::mandatory(AvpValue::BearerType(0)),
                ];
                self.send(MessageType::Icrq, 0, avps);
            }
            CallDirection::Outgoing => {
                let number = called.unwrap_or_default().as_bytes().to_vec();
                let avps = vec![
                    sid,
                    AvpRepr::mandatory(AvpValue::CallSerialNumber(serial)),
                    AvpRepr::mandatory(AvpValue::MinimumBps(0)),
                    AvpRepr::mandatory(AvpValue::MaximumBps(u32::MAX)),
                    AvpRepr::mandatory(AvpValue::BearerType(0x3)),
                    AvpRepr::mandatory(AvpValue::FramingType(0x3)),
                    self.hideable(AvpValue::CalledNumber(Cow::Owned(number))),
                ];
                self.send(MessageType::Ocrq, 0, avps);
            }
        }
        Some(local_id)
    }

    /// Sends a PPP frame on an established session; false if the session is not up.
    pub fn send_data(&mut self, session_id: u16, frame: &[u8]) -> bool {
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return false;
        };
        if session.state != SessionState::Established {
            return false;
        }
        let mut header = HeaderRepr::data(self.peer_id, session.peer_id);
        header.offset_size = self.config.data_offset;
        if session.sequencing {
            header.sequence = Some(Sequence {
                ns: session.data_ns,
                nr: session.data_nr,
            });
            session.data_ns = session.data_ns.wrapping_add(1);
        }
        let packet = PacketRepr::Data {
            header,
            payload: frame,
        };
        let mut bytes = vec![0; packet.buffer_len()];
        match packet.emit(&mut bytes, None) {
            Ok(_) => {
                self.stats.data_sent += 1;
                self.data_out.push_back(bytes);
                true
            }
            // Only a frame too long for the Length field gets here.
            Err(_) => false,
        }
    }

    /// Ends a session with a CDN.
    pub fn close_session(&mut self, session_id: u16, result: ResultCode) {
        let Some(session) = self.sessions.remove(&session_id) else {
            return;
        };
        let sid = self.hideable(AvpValue::AssignedSessionId(session_id));
        self.send(
            MessageType::Cdn,
            session.peer_id,
            vec![AvpRepr::mandatory(result.to_avp()), sid],
        );
        self.events.push_back(Event::SessionDown {
            session_id,
            result,
            by_peer: false,
        });
    }

    /// WEN (LAC → LNS) with the Call Errors counters.
    pub fn send_wan_error(&mut self, session_id: u16, crc_errors: u32) {
        if let Some(session) = self.sessions.get(&session_id) {
            let peer = session.peer_id;
            let errors = AvpValue::CallErrors {
                reserved: 0,
                crc_errors,
                framing_errors: 0,
                hardware_overruns: 0,
                buffer_overruns: 0,
                timeout_errors: 0,
                alignment_errors: 0,
            };
            self.send(MessageType::Wen, peer, vec![AvpRepr::mandatory(errors)]);
        }
    }

    /// SLI (LNS → LAC) with the negotiated ACCM.
    pub fn send_link_info(&mut self, session_id: u16, send_accm: u32, receive_accm: u32) {
        if let Some(session) = self.sessions.get(&session_id) {
            let peer = session.peer_id;
            let accm = AvpValue::Accm {
                reserved: 0,
                send_accm,
                receive_accm,
            };
            self.send(MessageType::Sli, peer, vec![AvpRepr::mandatory(accm)]);
        }
    }

    /// Tears the tunnel down with a StopCCN; sessions end implicitly (§6.4).
    pub fn close(&mut self, now: Instant, result: ResultCode) {
        if matches!(self.state, TunnelState::Closing | TunnelState::Closed) {
            return;
        }
        self.drop_sessions(&result, false);
        if self.peer_id == 0 {
            // No Assigned Tunnel ID from the peer yet: a StopCCN could name no tunnel there,
            // so the tunnel ends here without one.
            self.events.push_back(Event::TunnelDown {
                result,
                by_peer: false,
            });
            return self.finish();
        }
        let avps = vec![
            AvpRepr::mandatory(AvpValue::AssignedTunnelId(self.local_id)),
            AvpRepr::mandatory(result.to_avp()),
        ];
        self.send(MessageType::StopCcn, 0, avps);
        self.events.push_back(Event::TunnelDown {
            result,
            by_peer: false,
        });
        self.hold(now);
    }

    fn drop_sessions(&mut self, result: &ResultCode, by_peer: bool) {
        for (session_id, _) in std::mem::take(&mut self.sessions) {
            self.events.push_back(Event::SessionDown {
                session_id,
                result: result.clone(),
                by_peer,
            });
        }
    }

    /// §5.7: keep the tunnel for one full retransmission cycle so a lost ack is answered.
    fn hold(&mut self, now: Instant) {
        self.state = TunnelState::Closing;
        self.close_at = Some(now + self.reliable.full_retransmit_cycle());
    }

    // ----- polling -----

    /// Writes the next datagram for the peer into `buf`; false when there is none.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> bool {
        buf.clear();
        if let Some(bytes) = self.data_out.pop_front() {
            buf.extend_from_slice(&bytes);
            return true;
        }
        if self.state == TunnelState::Closed {
            return false;
        }
        let Some(message) = self.reliable.poll_transmit(now) else {
            return false;
        };
        buf.resize(message.buffer_len(), 0);
        match message.emit(buf, self.config.secret.as_deref()) {
            Ok(len) => {
                buf.truncate(len);
                true
            }
            // Our own messages always carry a Random Vector before hidden AVPs; an emit error
            // here is a bug, and sending nothing is the safe answer.
            Err(err) => {
                debug_assert!(false, "emitting our own message failed: {err}");
                false
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == TunnelState::Closed {
            return None;
        }
        let hello = self.hello_due();
        [
            self.reliable.poll_timeout(),
            hello,
            self.close_at,
            self.setup_due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn setup_due(&self) -> Option<Instant> {
        matches!(
            self.state,
            TunnelState::Idle | TunnelState::WaitCtlReply | TunnelState::WaitCtlConn
        )
        .then_some(self.setup_deadline)
    }

    fn hello_due(&self) -> Option<Instant> {
        // While a message awaits its ack, its retransmissions probe the peer already, and a
        // deadline that cannot send would fire again at once, forever.
        if self.state != TunnelState::Established || !self.reliable.is_idle() {
            return None;
        }
        let since = match self.hello_sent_at {
            Some(sent) if sent > self.last_heard => sent,
            _ => self.last_heard,
        };
        Some(since + self.config.hello_interval)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == TunnelState::Closed {
            return;
        }
        if self.reliable.handle_timeout(now).is_err() {
            // The peer stopped acknowledging: nothing can be delivered, not even a StopCCN.
            let result =
                ResultCode::error(ResultCode::GENERAL_ERROR, 0, "peer stopped acknowledging");
            if self.state != TunnelState::Closing {
                self.drop_sessions(&result, false);
                self.events.push_back(Event::TunnelDown {
                    result,
                    by_peer: false,
                });
            }
            return self.finish();
        }
        if self.close_at.is_some_and(|at| now >= at) {
            return self.finish();
        }
        if self.setup_due().is_some_and(|at| now >= at) {
            let result = ResultCode::error(
                ResultCode::GENERAL_ERROR,
                0,
                "control connection not established in time",
            );
            return self.close(now, result);
        }
        if self.hello_due().is_some_and(|at| now >= at) {
            self.hello_sent_at = Some(now);
            self.send(MessageType::Hello, 0, Vec::new());
        }
    }

    fn finish(&mut self) {
        self.state = TunnelState::Closed;
        self.close_at = None;
        self.events.push_back(Event::Closed);
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ----- message building -----

    /// The AVPs SCCRQ and SCCRP share.
    fn start_avps(&mut self) -> Vec<AvpRepr<'static>> {
        let config = Arc::clone(&self.config);
        let mut avps = vec![
            AvpRepr::mandatory(AvpValue::ProtocolVersion {
                version: PROTOCOL_VERSION.0,
                revision: PROTOCOL_VERSION.1,
            }),
            AvpRepr::mandatory(AvpValue::HostName(Cow::Owned(
                config.host_name.clone().into_bytes(),
            ))),
            AvpRepr::mandatory(AvpValue::FramingCapabilities(config.framing_capabilities)),
            AvpRepr::mandatory(AvpValue::BearerCapabilities(config.bearer_capabilities)),
            AvpRepr::mandatory(AvpValue::AssignedTunnelId(self.local_id)),
            AvpRepr::mandatory(AvpValue::ReceiveWindowSize(self.reliable.receive_window())),
            AvpRepr::optional(AvpValue::FirmwareRevision(0x0100)),
        ];
        if let Some(vendor) = &config.vendor_name {
            avps.push(AvpRepr::optional(AvpValue::VendorName(Cow::Owned(
                vendor.clone().into_bytes(),
            ))));
        }
        if config.secret.is_some() {
            let mut challenge = [0u8; 16];
            self.rng.fill_bytes(&mut challenge);
            self.our_challenge = Some(challenge);
            avps.push(AvpRepr::mandatory(AvpValue::Challenge(Cow::Owned(
                challenge.to_vec(),
            ))));
        }
        avps
    }

    fn connected_avps(&self) -> Vec<AvpRepr<'static>> {
        let mut avps = vec![
            AvpRepr::mandatory(AvpValue::TxConnectSpeed(100_000_000)),
            AvpRepr::mandatory(AvpValue::FramingType(0x1)),
        ];
        if self.config.sequencing_required {
            avps.push(AvpRepr::mandatory(AvpValue::SequencingRequired));
        }
        avps
    }

    /// An AVP that is hidden when the configuration says so.
    fn hideable(&self, value: AvpValue<'static>) -> AvpRepr<'static> {
        let hide = self.config.hide_avps
            && self.config.secret.is_some()
            && value.avp_type().is_some_and(|t| HIDDEN_AVPS.contains(&t));
        AvpRepr {
            hidden: hide,
            ..AvpRepr::mandatory(value)
        }
    }

    /// Queues a control message; a Random Vector goes in front of any hidden AVP (§4.3).
    fn send(&mut self, kind: MessageType, session_id: u16, avps: Vec<AvpRepr<'static>>) {
        let mut all = Vec::with_capacity(avps.len() + 2);
        all.push(AvpRepr::mandatory(AvpValue::MessageType(kind)));
        if avps.iter().any(|avp| avp.hidden) {
            let mut vector = [0u8; 16];
            self.rng.fill_bytes(&mut vector);
            all.push(AvpRepr::mandatory(AvpValue::RandomVector(Cow::Owned(
                vector.to_vec(),
            ))));
        }
        all.extend(avps);
        if self.config.record_messages {
            self.log.queued.push(kind);
        }
        let header = HeaderRepr::control(self.peer_id, session_id, 0, 0);
        self.reliable.send(ControlMessage { header, avps: all });
    }

    /// A free Session ID: unique in this tunnel and never 0. `None` when all 65535 are taken.
    fn allocate_session_id(&mut self) -> Option<u16> {
        for _ in 0..u16::MAX {
            let id = self.next_session_id;
            self.next_session_id = self.next_session_id.wrapping_add(1).max(1);
            if id != 0 && !self.sessions.contains_key(&id) {
                return Some(id);
            }
        }
        None
    }

    /// MD5(message type ‖ secret ‖ challenge): the CHAP-style response of §4.4.3.
    fn response(&self, in_message: MessageType, challenge: &[u8]) -> [u8; 16] {
        challenge_response(
            in_message,
            self.config.secret.as_deref().unwrap_or_default(),
            challenge,
        )
    }

    /// The Challenge Response AVP that `in_message` must carry when the peer challenged us;
    /// a challenge without a secret of ours is refused (result 4).
    fn answer_challenge(
        &self,
        in_message: MessageType,
        message: &ControlMessage,
    ) -> Result<Option<AvpRepr<'static>>, ResultCode> {
        match (
            message.avp(AvpType::Challenge),
            self.config.secret.is_some(),
        ) {
            (Some(AvpValue::Challenge(challenge)), true) => {
                let response = self.response(in_message, challenge);
                Ok(Some(AvpRepr::mandatory(AvpValue::ChallengeResponse(
                    response,
                ))))
            }
            (Some(_), false) => Err(ResultCode::error(
                ResultCode::NOT_AUTHORIZED,
                0,
                "challenged but no tunnel secret is configured",
            )),
            _ => Ok(None),
        }
    }

    fn verify_response(
        &self,
        in_message: MessageType,
        message: &ControlMessage,
    ) -> Result<(), ResultCode> {
        let Some(challenge) = self.our_challenge else {
            return Ok(());
        };
        let expected = self.response(in_message, &challenge);
        match message.avp(AvpType::ChallengeResponse) {
            Some(AvpValue::ChallengeResponse(got)) if *got == expected => Ok(()),
            Some(_) => Err(ResultCode::error(
                ResultCode::NOT_AUTHORIZED,
                0,
                "wrong Challenge Response: tunnel secrets differ",
            )),
            None => Err(ResultCode::error(
                ResultCode::NOT_AUTHORIZED,
                0,
                "no Challenge Response to our Challenge",
            )),
        }
    }
}

/// The Challenge Response a peer must send in `in_message` (SCCRP or SCCCN) to `challenge`.
pub fn challenge_response(in_message: MessageType, secret: &[u8], challenge: &[u8]) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update([in_message.to_u16() as u8]);
    md5.update(secret);
    md5.update(challenge);
    md5.finalize().into()
}

/// The first AVP with M set that this implementation cannot act on (§4.2), by name.
fn unknown_mandatory(message: &ControlMessage) -> Option<String> {
    message.avps.iter().find_map(|avp| {
        if !avp.mandatory {
            return None;
        }
        match &avp.value {
            AvpValue::Vendor {
                vendor_id,
                attr_type,
                ..
            } => Some(format!("vendor {vendor_id} type {attr_type}")),
            AvpValue::Unknown { attr_type, .. } => Some(format!("type {attr_type}")),
            AvpValue::HiddenRaw { attr_type, .. } => {
                Some(format!("type {attr_type} (hidden, no secret)"))
            }
            AvpValue::MessageType(MessageType::Unknown(n)) => Some(format!("message type {n}")),
            _ => None,
        }
    })
}
