//! One tunnel: the control connection state machine (RFC 2661 §7.2), its sessions (§7.3–§7.5),
//! tunnel authentication (§5.1.1), hidden AVPs (§4.3) and keepalives (§5.5), on top of the
//! reliable delivery of [`super::reliable`].
//!
//! Sans-IO like the rest of `conn`: the owner feeds received packets to [`Tunnel::handle`],
//! sends what [`Tunnel::poll_transmit`] writes, calls [`Tunnel::handle_timeout`] at
//! [`Tunnel::poll_timeout`], and reads [`Event`]s from [`Tunnel::poll_event`].

mod build;
mod calls;
mod control;

pub use build::challenge_response;

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::reliable::{GaveUp, Reliable, ReliableConfig};
use crate::seed::splitmix64;
use crate::time::Instant;
use crate::vec_map::VecMap;
use crate::wire::avp::{AvpRepr, AvpType, AvpValue};
use crate::wire::message::{ControlMessage, MessageType};

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
    /// Refuse every OCRQ with a CDN (§6.7: the LAC cannot place the call) instead of placing
    /// the call at once as the simulated LAC does.
    pub refuse_outgoing: bool,
    /// The Session IDs this end assigns (never 0): all of them by default; a share of them
    /// for one agent of several (`lac --shard`), so that their sessions are told apart.
    pub session_ids: core::ops::RangeInclusive<u16>,
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
            refuse_outgoing: false,
            session_ids: 1..=u16::MAX,
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
pub enum TunnelEnd {
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
    /// §5.8: a message went unacknowledged through every retransmission; the tunnel is
    /// cleared (a `TunnelDown` follows unless the tunnel was already closing, then `Closed`).
    GaveUp(GaveUp),
    /// All state is gone; the owner may drop the tunnel and reuse its ID.
    Closed,
}

/// What the Ns of one session's sequenced data messages showed (§5.4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataSequence {
    /// Data messages with an Ns.
    pub sequenced: u64,
    /// Ns values skipped over: lost, or coming late.
    pub lost: u64,
    /// Messages older than one already received: dropped.
    pub reordered: u64,
}

/// Counters a runner exports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelStats {
    pub data_sent: u64,
    pub data_received: u64,
    /// Data messages for a session that is not established (dropped).
    pub data_dropped: u64,
    /// Sequenced data (§5.4), over every session: Ns values skipped over (lost, or yet to
    /// come late), and messages that came after a later one (dropped, as a PPP with
    /// stateful compression needs its frames in order).
    pub data_lost: u64,
    pub data_reordered: u64,
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
    /// The same two counts as [`TunnelStats`], for this session.
    data_seq: DataSequence,
    /// Our ICCN still waits behind a full send window: the session's data waits too, until
    /// the reliable layer's first-send count reaches this ticket. The peer drops data of a
    /// session it has no ICCN for, and PPP would wait a Restart time for nothing.
    connect_ticket: Option<u64>,
    /// Our ICCN/OCCN is acknowledged once the reliable layer's ack count reaches this (0: the
    /// peer connected the call, or we have not sent it yet).
    connect_acked_at: u64,
}

/// One L2TP tunnel and its sessions.
#[derive(Debug)]
pub struct Tunnel {
    config: Arc<TunnelConfig>,
    role: TunnelEnd,
    state: TunnelState,
    local_id: u16,
    peer_id: u16,
    peer_host_name: String,
    reliable: Reliable,
    /// A splitmix64 state (8 octets, not a 300-octet ChaCha per tunnel): Session IDs come from
    /// it, and it seeds a ChaCha for the rare random values ([`Tunnel::random_value`]).
    rng: u64,
    /// The Challenge we sent; the peer's response must match it.
    our_challenge: Option<[u8; 16]>,
    /// A sorted Vec, not a BTreeMap: see [`VecMap`].
    sessions: VecMap<u16, Session>,
    next_session_id: u16,
    next_call_serial: u32,
    events: VecDeque<Event>,
    /// Data messages ready to go (unreliable, sent before control traffic).
    /// Data messages to send, with their (our) Session ID.
    data_out: VecDeque<(u16, Vec<u8>)>,
    last_heard: Instant,
    hello_sent_at: Option<Instant>,
    /// End of the §5.7 hold after a StopCCN.
    close_at: Option<Instant>,
    /// A tunnel not established by then is closed: once the peer has acknowledged our SCCRQ
    /// or SCCRP, no retransmission is left to give up on, and without this a peer that never
    /// sends the SCCRP / SCCCN would hold the tunnel (and its ID) for ever.
    setup_deadline: Instant,
    stats: TunnelStats,
    /// Only with `record_messages`.
    log: Option<Box<MessageLog>>,
}

/// With `record_messages`: what this tunnel queued for the peer and what it delivered upward,
/// in order. Lets tests check exactly-once, in-order delivery end to end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageLog {
    pub queued: Vec<MessageType>,
    /// (Ns, type) of each delivered message.
    pub delivered: Vec<(u16, MessageType)>,
}

/// The configured Session ID range with 0 left out (and an empty one read as all of them).
pub(super) fn session_id_range(
    ids: &core::ops::RangeInclusive<u16>,
) -> core::ops::RangeInclusive<u16> {
    let first = (*ids.start()).max(1);
    if *ids.end() < first {
        1..=u16::MAX
    } else {
        first..=*ids.end()
    }
}

/// Where a tunnel starts drawing Session IDs: a random one of the range (for the whole space,
/// the low 16 bits of `random`, 0 read as 1, as it always was: seeded runs replay alike).
fn first_session_id(ids: &core::ops::RangeInclusive<u16>, random: u64) -> u16 {
    let ids = session_id_range(ids);
    let span = *ids.end() - *ids.start() + 1;
    // Below `span`, so `start` plus it stays within the range.
    let step = ((random as u16).max(1) - 1) % span;
    *ids.start() + step
}

impl Tunnel {
    fn new(
        config: Arc<TunnelConfig>,
        role: TunnelEnd,
        local_id: u16,
        seed: u64,
        now: Instant,
    ) -> Self {
        let mut rng = seed;
        let next_session_id = first_session_id(&config.session_ids, splitmix64(&mut rng));
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
            sessions: VecMap::new(),
            next_session_id,
            next_call_serial: 1,
            events: VecDeque::new(),
            data_out: VecDeque::new(),
            last_heard: now,
            hello_sent_at: None,
            close_at: None,
            setup_deadline,
            stats: TunnelStats::default(),
            log: None,
        }
    }

    /// Opens a tunnel: queues the SCCRQ. `seed` drives challenges and random vectors (the
    /// simulator passes a fixed one; runners pass OS randomness).
    pub fn connect(config: Arc<TunnelConfig>, local_id: u16, seed: u64, now: Instant) -> Tunnel {
        let mut tunnel = Tunnel::new(config, TunnelEnd::Initiator, local_id, seed, now);
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
        let mut tunnel = Tunnel::new(config, TunnelEnd::Responder, local_id, seed, now);
        tunnel.handle_control(now, sccrq);
        tunnel
    }

    /// 16 random octets (a Challenge, a Random Vector): from a ChaCha seeded by the tunnel's
    /// own generator, made when needed.
    fn random_value(&mut self) -> [u8; 16] {
        let mut value = [0u8; 16];
        ChaCha12Rng::seed_from_u64(splitmix64(&mut self.rng)).fill_bytes(&mut value);
        value
    }

    pub fn role(&self) -> TunnelEnd {
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
        static EMPTY: MessageLog = MessageLog {
            queued: Vec::new(),
            delivered: Vec::new(),
        };
        self.log.as_deref().unwrap_or(&EMPTY)
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

    /// The Ns bookkeeping of one session's incoming data (§5.4).
    pub fn data_sequence(&self, session_id: u16) -> Option<DataSequence> {
        self.sessions.get(&session_id).map(|s| s.data_seq)
    }

    /// The session exists at the peer too: the peer acknowledged the ICCN (OCCN) that we sent
    /// for it, or it was the peer that connected the call. Until then the peer drops the
    /// session's data (§5.2 has no data before the call is connected), so PPP's restart
    /// counters would run down for nothing.
    pub fn session_connected_at_peer(&self, session_id: u16) -> bool {
        self.sessions.get(&session_id).is_some_and(|s| {
            s.state == SessionState::Established
                && self.reliable.stats().acked >= s.connect_acked_at
        })
    }
}
