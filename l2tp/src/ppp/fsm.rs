//! The option-negotiation automaton of RFC 1661 §4, written once for LCP, IPCP and IPv6CP.
//!
//! [`Fsm`] owns the state table (§4.1), the Restart timer and counters (§4.6) and the
//! Identifier rules (§5.1–§5.6); a [`Negotiator`] (one per protocol) owns the options: what we
//! request, how the peer's request is judged, what a Nak or Reject of ours changes, and any
//! codes past 7 (LCP's Protocol-Reject, Echo, Discard).
//!
//! Sans-IO like [`crate::conn`]: the caller gives `now`, feeds control packets already parsed by
//! [`super::frame`], sends what [`Fsm::poll_transmit`] writes (framed with
//! [`Negotiator::PROTOCOL`]), sleeps until [`Fsm::poll_timeout`] and reads [`Fsm::poll_event`].
//! Nothing keeps bytes for retransmission: a Configure-Request is re-emitted from the
//! negotiator's state with the same Identifier (§5.1).
//!
//! Choices the RFC leaves open, made here:
//! - no Restart option (footnote r) and no Passive option (footnote p): Open in Opened does
//!   nothing and TO- while configuring does tlf;
//! - a reply to our Configure-Request is taken once (as pppd does): a second Ack, Nak or Reject
//!   with its Identifier answers a retransmission and is discarded. In Ack-Rcvd and Opened our
//!   request has had its answer, so the crossed-connection cells (footnote x) are written as
//!   the table says but no packet reaches them;
//! - a Configure-Request with the Identifier and options of the one we just naked is its
//!   retransmission (§5.1: our Nak was lost) and does not count towards Max-Failure;
//! - loop detection (§4.5): after Max-Failure Naks *received*, a Nak is handled as a Reject (so
//!   our request shrinks), and after Max-Configure + Max-Failure Naks sent or received without
//!   an Ack the automaton gives up ([`Failure::NotConverging`]) and closes.

use std::collections::VecDeque;
use std::time::Duration;

use super::frame::{Options, PacketRepr, PACKET_HEADER_LEN};
use crate::time::Instant;

mod table;
#[cfg(test)]
pub(crate) mod tests;

/// Codes every negotiating protocol shares (RFC 1661 §5).
pub mod code {
    pub const CONFIGURE_REQUEST: u8 = 1;
    pub const CONFIGURE_ACK: u8 = 2;
    pub const CONFIGURE_NAK: u8 = 3;
    pub const CONFIGURE_REJECT: u8 = 4;
    pub const TERMINATE_REQUEST: u8 = 5;
    pub const TERMINATE_ACK: u8 = 6;
    pub const CODE_REJECT: u8 = 7;
}

/// The MRU every PPP peer must accept before LCP says otherwise (RFC 1661 §6.1).
pub const DEFAULT_MRU: u16 = 1500;

/// Most events kept for a caller that does not poll: a flood of bad packets must not grow the
/// session without bound.
const MAX_EVENTS: usize = 32;

/// The ten states of §4.2, numbered as the table numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Initial = 0,
    Starting = 1,
    Closed = 2,
    Stopped = 3,
    Closing = 4,
    Stopping = 5,
    ReqSent = 6,
    AckRcvd = 7,
    AckSent = 8,
    Opened = 9,
}

impl State {
    /// The states in which the Restart timer runs: those with TO events in §4.1.
    pub fn has_timer(self) -> bool {
        matches!(
            self,
            State::Closing | State::Stopping | State::ReqSent | State::AckRcvd | State::AckSent
        )
    }

    /// Lower layer down: no packet can arrive, none may be sent.
    fn is_down(self) -> bool {
        matches!(self, State::Initial | State::Starting)
    }
}

/// Restart timer and counters (§4.6), defaulting to the RFC's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsmConfig {
    /// Restart timer: 3 s by default.
    pub restart: Duration,
    /// Terminate-Requests sent without a Terminate-Ack before giving up: 2.
    pub max_terminate: u8,
    /// Configure-Requests sent without a valid reply before giving up: 10.
    pub max_configure: u8,
    /// Configure-Naks sent without an Ack before they become Configure-Rejects: 5.
    pub max_failure: u8,
}

impl Default for FsmConfig {
    fn default() -> FsmConfig {
        FsmConfig {
            restart: Duration::from_secs(3),
            max_terminate: 2,
            max_configure: 10,
            max_failure: 5,
        }
    }
}

/// Why negotiation gave up before any timer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Naks and Rejects went back and forth Max-Configure + Max-Failure times without an Ack
    /// (§4.5 loop detection).
    NotConverging,
    /// The peer's Nak or Reject leaves us without something we cannot do without.
    Refused(Refusal),
}

/// A negotiator's "no": the option and why (e.g. the peer rejects the authentication we
/// demand, or a client is refused an IP address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub option: u8,
    pub reason: &'static str,
}

/// What the automaton tells its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsmEvent {
    /// tlu: entering Opened.
    Up,
    /// tld: leaving Opened.
    Down,
    /// tls: the lower layer is needed (entering Starting).
    Started,
    /// tlf: the lower layer is no longer needed (entering Initial, Closed or Stopped).
    Finished,
    /// TO- while configuring: Max-Configure Configure-Requests went unanswered.
    ConfigureTimeout,
    /// Max-Failure Naks sent without an Ack: further Naks are sent as Rejects (§4.6).
    MaxFailure,
    /// Negotiation gave up; the automaton closes (Close event).
    Failed(Failure),
    /// The peer sent a Terminate-Request (RTR); its data, often a reason in text.
    TerminateRequested(Box<[u8]>),
    /// The peer sent a Code-Reject of `code`; catastrophic (RXJ-) for codes 1..=7.
    CodeRejected { code: u8, catastrophic: bool },
    /// LCP: the peer sent a Protocol-Reject of `protocol`; catastrophic (RXJ-) for LCP itself.
    ProtocolRejected { protocol: u16 },
    /// We sent a Code-Reject for a code we do not know (RUC).
    UnknownCode(u8),
    /// LCP: the peer's Magic-Number equals ours (§6.4): the link may be looped back.
    LoopbackSuspected,
    /// LCP: an Echo-Reply arrived.
    EchoReply { identifier: u8, magic: u32 },
    /// A packet was silently discarded (§4.3, §5): wrong Identifier, an Ack that is not our
    /// request, a packet the state does not take.
    Discarded { code: u8, reason: &'static str },
}

/// The event queue a negotiator may add to (loopback, echo replies).
#[derive(Debug, Default)]
pub struct Events {
    queue: VecDeque<FsmEvent>,
}

impl Events {
    pub fn push(&mut self, event: FsmEvent) {
        if self.queue.len() < MAX_EVENTS {
            self.queue.push_back(event);
        }
    }

    fn pop(&mut self) -> Option<FsmEvent> {
        let event = self.queue.pop_front();
        if self.queue.is_empty() && self.queue.capacity() > 0 {
            // Idle sessions keep no allocation.
            self.queue = VecDeque::new();
        }
        event
    }
}

/// How a negotiator answers the peer's Configure-Request, option by option. The automaton
/// turns it into a Configure-Ack (nothing recorded), -Nak or -Reject (§5.2–§5.4), and applies
/// Max-Failure.
#[derive(Debug, Default)]
pub struct Judgement {
    /// Configure-Reject data: options as received.
    reject: Vec<u8>,
    /// Configure-Nak data: the values we suggest, in the order of the request.
    nak: Vec<u8>,
    /// The naked options as received: what a Nak becomes after Max-Failure.
    naked: Vec<u8>,
    /// Options the peer did not request but should (a Nak may carry them, §5.3).
    hints: Vec<u8>,
}

impl Judgement {
    /// Refuse the option outright (unknown, or not negotiable).
    pub fn reject(&mut self, kind: u8, value: &[u8]) {
        super::frame::push_option(&mut self.reject, kind, value);
    }

    /// Refuse the value and suggest `suggested` instead.
    pub fn nak(&mut self, kind: u8, value: &[u8], suggested: &[u8]) {
        super::frame::push_option(&mut self.nak, kind, suggested);
        super::frame::push_option(&mut self.naked, kind, value);
    }

    /// Ask the peer to include an option it left out.
    pub fn hint(&mut self, kind: u8, suggested: &[u8]) {
        super::frame::push_option(&mut self.hints, kind, suggested);
    }
}

/// What the automaton should do with a packet whose code is past 7.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extra {
    /// A code this protocol does not have: Code-Reject (RUC).
    Unknown,
    /// A Protocol-Reject (RXJ+, or RXJ- when catastrophic).
    Reject { catastrophic: bool },
    /// Echo-Request, Echo-Reply, Discard-Request (RXR): with the reply (code, data) to send
    /// in Opened (ser).
    Echo { reply: Option<(u8, Box<[u8]>)> },
    /// Silently discarded (e.g. an Echo outside Opened, §5.8).
    Discard(&'static str),
}

/// One protocol's options on top of the automaton.
///
/// Data handed to [`Negotiator::judge_request`], [`Negotiator::on_nak`] and
/// [`Negotiator::on_reject`] always reads as options ([`options`] walks it); a Reject is
/// checked to list only options of our request, unchanged and in order, before it gets here.
pub trait Negotiator {
    /// The PPP protocol number the packets travel under.
    const PROTOCOL: u16;

    /// A negotiation begins (scr from a state that was not negotiating): go back to what we
    /// want, forgetting Naks and Rejects of the last one.
    fn reset(&mut self);

    /// Appends the options of our Configure-Request, from the current state. Must give the
    /// same bytes until [`Negotiator::on_nak`], [`Negotiator::on_reject`] or
    /// [`Negotiator::reset`] changes the state: an Ack is checked against them.
    fn emit_request(&self, out: &mut Vec<u8>);

    /// Judges the peer's Configure-Request. What the peer asked is remembered here: it is what
    /// holds once Opened (the automaton only opens after acking the last request judged).
    fn judge_request(&mut self, options: &[u8], judgement: &mut Judgement, events: &mut Events);

    /// The peer naked our request. After Max-Failure Naks `treat_as_reject` is set: drop the
    /// naked options instead of taking the suggestion, so the negotiation converges.
    fn on_nak(&mut self, options: &[u8], treat_as_reject: bool) -> Result<(), Refusal>;

    /// The peer rejected these options of our request: never send them again in this
    /// negotiation.
    fn on_reject(&mut self, options: &[u8]) -> Result<(), Refusal>;

    /// A packet with a code past 7. `opened` tells whether the automaton is Opened.
    fn extra(&mut self, packet: PacketRepr<'_>, opened: bool, events: &mut Events) -> Extra {
        let _ = (packet, opened, events);
        Extra::Unknown
    }

    /// The peer Code-Rejected one of our extra codes (RXJ+): stop sending it.
    fn code_rejected(&mut self, code: u8) {
        let _ = code;
    }

    /// Longest control packet the peer takes (its MRU): Code-Reject and Protocol-Reject are
    /// cut to fit (§5.6, §5.7).
    fn peer_mru(&self) -> u16 {
        DEFAULT_MRU
    }
}

/// The options in data already checked: stops at the first that does not read.
pub fn options(data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    Options::new(data).map_while(Result::ok)
}

/// A packet waiting for [`Fsm::poll_transmit`]. The two requests are re-emitted from state.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Output {
    ConfigureRequest,
    TerminateRequest,
    TerminateAck(u8),
    Packet {
        code: u8,
        identifier: u8,
        data: Box<[u8]>,
    },
}

/// The events of §4.1 as the table reads them; a received Configure-Request carries the reply
/// already judged (Ack for RCR+, Nak or Reject for RCR-).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Up,
    Down,
    Open,
    Close,
    TimeoutPlus,
    TimeoutMinus,
    Rcr {
        identifier: u8,
        good: bool,
        reply: Option<Output>,
    },
    Rca {
        identifier: u8,
    },
    Rcn {
        identifier: u8,
    },
    Rtr {
        identifier: u8,
    },
    Rta,
    Ruc {
        rejected: Box<[u8]>,
    },
    RxjPlus,
    RxjMinus,
    Rxr {
        reply: Option<Output>,
    },
}

/// Which count irc loads (§4.4: "the appropriate value").
#[derive(Debug, Clone, Copy)]
enum Restart {
    Configure,
    Terminate,
}

/// The automaton of one protocol on one link.
#[derive(Debug)]
pub struct Fsm<N> {
    negotiator: N,
    config: FsmConfig,
    state: State,
    /// Restart counter (§4.6): transmissions left.
    restart_count: u8,
    /// The last Identifier handed out.
    last_id: u8,
    /// Identifier of our current Configure-Request (kept on retransmission).
    cr_id: u8,
    /// A reply to `cr_id` was taken: later ones are duplicates.
    cr_answered: bool,
    /// Identifier of our current Terminate-Request.
    tr_id: u8,
    /// Naks and Rejects sent since our last Ack sent.
    naks_sent: u8,
    /// Identifier and digest of the request we last naked or rejected: the same again is a
    /// retransmission (our reply was lost), not another round (§5.1).
    refused: Option<(u8, u32)>,
    /// Naks and Rejects received since the peer last acked us.
    naks_received: u8,
    timer: Option<Instant>,
    output: Vec<Output>,
    events: Events,
}

impl<N: Negotiator> Fsm<N> {
    /// An automaton in the Initial state: nothing happens before `open` and `up`.
    pub fn new(negotiator: N, config: FsmConfig) -> Fsm<N> {
        Fsm {
            negotiator,
            config,
            state: State::Initial,
            restart_count: 0,
            last_id: 0,
            cr_id: 0,
            cr_answered: false,
            tr_id: 0,
            naks_sent: 0,
            refused: None,
            naks_received: 0,
            timer: None,
            output: Vec::new(),
            events: Events::default(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn is_opened(&self) -> bool {
        self.state == State::Opened
    }

    pub fn config(&self) -> &FsmConfig {
        &self.config
    }

    /// The Identifier of our current Configure-Request, for tests that answer it.
    #[cfg(test)]
    pub(crate) fn request_id(&self) -> u8 {
        self.cr_id
    }

    pub fn negotiator(&self) -> &N {
        &self.negotiator
    }

    pub fn negotiator_mut(&mut self) -> &mut N {
        &mut self.negotiator
    }

    /// The lower layer is up (for an NCP: LCP reached Opened and authentication passed).
    pub fn up(&mut self, now: Instant) {
        self.event(now, Event::Up);
    }

    /// The lower layer is down (for an NCP: LCP left Opened).
    pub fn down(&mut self, now: Instant) {
        self.event(now, Event::Down);
    }

    /// Administrative Open: negotiate as soon as the lower layer is up.
    pub fn open(&mut self, now: Instant) {
        self.event(now, Event::Open);
    }

    /// Administrative Close: terminate the link (Terminate-Request) and stay closed.
    pub fn close(&mut self, now: Instant) {
        self.event(now, Event::Close);
    }

    /// A control packet of this protocol from the peer.
    pub fn handle(&mut self, now: Instant, packet: PacketRepr<'_>) {
        if self.state.is_down() {
            // §4.1 "-": the lower layer is down, so no packet can be ours.
            return self.discard(packet.code, "lower layer down");
        }
        let event = match packet.code {
            // A request whose options do not read (a Length of 0 or 1, or past the end) is
            // not one: RFC 1661 has no way to answer it (a Reject must echo options as
            // received, which would send malformed bytes back), so it is dropped, as pppd does.
            code::CONFIGURE_REQUEST if Options::new(packet.data).check().is_err() => {
                self.discard(packet.code, "malformed options");
                None
            }
            code::CONFIGURE_REQUEST => Some(self.receive_configure_request(packet)),
            code::CONFIGURE_ACK => self.receive_configure_ack(packet),
            code::CONFIGURE_NAK | code::CONFIGURE_REJECT => self.receive_nak_or_reject(packet),
            code::TERMINATE_REQUEST => {
                let data = packet
                    .data
                    .get(..usize::from(u8::MAX))
                    .unwrap_or(packet.data);
                self.events.push(FsmEvent::TerminateRequested(data.into()));
                Some(Event::Rtr {
                    identifier: packet.identifier,
                })
            }
            // §5.5: a Terminate-Ack may be unsolicited (the peer is Closed or Stopped) and
            // resynchronizes, so its Identifier is not checked.
            code::TERMINATE_ACK => Some(Event::Rta),
            code::CODE_REJECT => self.receive_code_reject(packet.data),
            _ => {
                let opened = self.state == State::Opened;
                match self.negotiator.extra(packet, opened, &mut self.events) {
                    Extra::Unknown => {
                        let mut rejected = Vec::new();
                        let _ = packet.emit_to_vec(&mut rejected);
                        rejected.truncate(self.reply_room());
                        self.events.push(FsmEvent::UnknownCode(packet.code));
                        Some(Event::Ruc {
                            rejected: rejected.into(),
                        })
                    }
                    Extra::Reject { catastrophic } if opened => Some(if catastrophic {
                        Event::RxjMinus
                    } else {
                        Event::RxjPlus
                    }),
                    // §5.7: a Protocol-Reject outside Opened is silently discarded.
                    Extra::Reject { .. } => {
                        self.discard(packet.code, "Protocol-Reject outside Opened");
                        None
                    }
                    Extra::Echo { reply } => Some(Event::Rxr {
                        reply: reply.map(|(code, data)| Output::Packet {
                            code,
                            identifier: packet.identifier,
                            data,
                        }),
                    }),
                    Extra::Discard(reason) => {
                        self.discard(packet.code, reason);
                        None
                    }
                }
            }
        };
        if let Some(event) = event {
            self.event(now, event);
        }
    }

    /// Runs the Restart timer if it is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.timer {
            Some(at) if at <= now => {
                self.timer = None;
                let event = if self.restart_count > 0 {
                    Event::TimeoutPlus
                } else {
                    Event::TimeoutMinus
                };
                self.event(now, event);
            }
            _ => {}
        }
    }

    /// When the Restart timer expires, if it runs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer
    }

    /// Appends one whole control packet (Code, Identifier, Length, Data) to `out`; the caller
    /// frames it with [`Negotiator::PROTOCOL`]. False when nothing is waiting.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        while !self.output.is_empty() {
            let item = self.output.remove(0);
            if self.output.is_empty() {
                // Idle sessions keep no allocation.
                self.output = Vec::new();
            }
            let written = match item {
                Output::ConfigureRequest => {
                    emit_with(out, code::CONFIGURE_REQUEST, self.cr_id, |out| {
                        self.negotiator.emit_request(out)
                    })
                }
                Output::TerminateRequest => {
                    emit_with(out, code::TERMINATE_REQUEST, self.tr_id, |_| {})
                }
                Output::TerminateAck(identifier) => {
                    emit_with(out, code::TERMINATE_ACK, identifier, |_| {})
                }
                Output::Packet {
                    code,
                    identifier,
                    data,
                } => PacketRepr {
                    code,
                    identifier,
                    data: &data,
                }
                .emit_to_vec(out)
                .is_ok(),
            };
            if written {
                return true;
            }
        }
        false
    }

    /// The next thing the caller should know.
    pub fn poll_event(&mut self) -> Option<FsmEvent> {
        self.events.pop()
    }

    /// Sends a packet with an extra code (Echo-Request, Protocol-Reject) under a fresh
    /// Identifier; only in Opened, the only state where LCP may send them (§5.7, §5.8).
    /// Returns the Identifier used.
    pub fn send_extra(&mut self, code: u8, data: &[u8]) -> Option<u8> {
        if self.state != State::Opened {
            return None;
        }
        let identifier = self.next_id();
        let data = data.get(..self.reply_room()).unwrap_or(data);
        self.output.push(Output::Packet {
            code,
            identifier,
            data: data.into(),
        });
        Some(identifier)
    }

    /// Room for the data of a reply we build from the peer's bytes.
    fn reply_room(&self) -> usize {
        usize::from(self.negotiator.peer_mru()).saturating_sub(PACKET_HEADER_LEN)
    }

    pub(super) fn next_id(&mut self) -> u8 {
        self.last_id = self.last_id.wrapping_add(1);
        self.last_id
    }

    fn discard(&mut self, code: u8, reason: &'static str) {
        self.events.push(FsmEvent::Discarded { code, reason });
    }

    /// RCR+ or RCR-, judged only in the states that answer it (Closed and the terminating
    /// states do not look at it, so it leaves no trace in the negotiator).
    fn receive_configure_request(&mut self, packet: PacketRepr<'_>) -> Event {
        let identifier = packet.identifier;
        let answers = matches!(
            self.state,
            State::Stopped | State::ReqSent | State::AckRcvd | State::AckSent | State::Opened
        );
        if !answers {
            return Event::Rcr {
                identifier,
                good: false,
                reply: None,
            };
        }
        // `handle` dropped requests whose options do not all read.
        let mut judgement = Judgement::default();
        self.negotiator
            .judge_request(packet.data, &mut judgement, &mut self.events);
        self.reply_to_request(identifier, packet.data, judgement)
    }

    /// Turns a judgement into Configure-Ack, -Nak or -Reject (§5.2–§5.4), counting Naks for
    /// Max-Failure (§4.6) and loop detection (§4.5).
    fn reply_to_request(&mut self, identifier: u8, data: &[u8], judgement: Judgement) -> Event {
        let Judgement {
            reject,
            mut nak,
            naked,
            hints,
        } = judgement;
        let request = (identifier, digest(data));
        let repeat = self.refused == Some(request);
        let converted = self.naks_sent >= self.config.max_failure;
        let (code, data): (u8, Box<[u8]>) = if !reject.is_empty() {
            (code::CONFIGURE_REJECT, reject.into())
        } else if converted && !naked.is_empty() {
            // §4.6: past Max-Failure a Nak becomes a Reject of the naked options.
            (code::CONFIGURE_REJECT, naked.into())
        } else if !(converted || nak.is_empty() && hints.is_empty()) {
            nak.extend_from_slice(&hints);
            (code::CONFIGURE_NAK, nak.into())
        } else {
            // Nothing refused (hints are no longer sent past Max-Failure): Ack it as it came.
            self.naks_sent = 0;
            self.refused = None;
            return Event::Rcr {
                identifier,
                good: true,
                reply: Some(Output::Packet {
                    code: code::CONFIGURE_ACK,
                    identifier,
                    data: data.into(),
                }),
            };
        };
        self.refused = Some(request);
        if !repeat {
            if converted && self.naks_sent == self.config.max_failure {
                self.events.push(FsmEvent::MaxFailure);
            }
            self.naks_sent = self.naks_sent.saturating_add(1);
            if self.naks_sent > self.loop_bound() {
                self.events.push(FsmEvent::Failed(Failure::NotConverging));
                return Event::Close;
            }
        }
        Event::Rcr {
            identifier,
            good: false,
            reply: Some(Output::Packet {
                code,
                identifier,
                data,
            }),
        }
    }

    fn loop_bound(&self) -> u8 {
        self.config
            .max_configure
            .saturating_add(self.config.max_failure)
    }

    /// Whether the packet answers our outstanding Configure-Request (§5.2–§5.4: the
    /// Identifier must match; a second answer to one request is a duplicate).
    fn answers_our_request(&mut self, packet: &PacketRepr<'_>) -> bool {
        if packet.identifier != self.cr_id {
            self.discard(packet.code, "Identifier is not our Configure-Request's");
            return false;
        }
        if self.cr_answered {
            self.discard(packet.code, "our Configure-Request was already answered");
            return false;
        }
        true
    }

    fn negotiating_or_opened(&self) -> bool {
        matches!(
            self.state,
            State::ReqSent | State::AckRcvd | State::AckSent | State::Opened
        )
    }

    fn our_request(&self) -> Vec<u8> {
        let mut request = Vec::new();
        self.negotiator.emit_request(&mut request);
        request
    }

    fn receive_configure_ack(&mut self, packet: PacketRepr<'_>) -> Option<Event> {
        let identifier = packet.identifier;
        if !self.negotiating_or_opened() {
            return Some(Event::Rca { identifier });
        }
        if !self.answers_our_request(&packet) {
            return None;
        }
        // §5.2: the options of an Ack must be our request's exactly, in order.
        if packet.data != self.our_request().as_slice() {
            self.discard(packet.code, "Configure-Ack does not echo our request");
            return None;
        }
        self.cr_answered = true;
        self.naks_received = 0;
        Some(Event::Rca { identifier })
    }

    fn receive_nak_or_reject(&mut self, packet: PacketRepr<'_>) -> Option<Event> {
        let identifier = packet.identifier;
        if !self.negotiating_or_opened() {
            return Some(Event::Rcn { identifier });
        }
        if !self.answers_our_request(&packet) {
            return None;
        }
        if Options::new(packet.data).check().is_err() {
            self.discard(packet.code, "options do not read");
            return None;
        }
        let rejecting = packet.code == code::CONFIGURE_REJECT;
        // §5.4: a Reject lists options of our request, unchanged and in order.
        if rejecting && !is_sublist(packet.data, &self.our_request()) {
            self.discard(packet.code, "Configure-Reject is not a part of our request");
            return None;
        }
        self.cr_answered = true;
        self.naks_received = self.naks_received.saturating_add(1);
        let result = if rejecting {
            self.negotiator.on_reject(packet.data)
        } else {
            let treat_as_reject = self.naks_received > self.config.max_failure;
            self.negotiator.on_nak(packet.data, treat_as_reject)
        };
        let failure = match result {
            Err(refusal) => Some(Failure::Refused(refusal)),
            Ok(()) if self.naks_received > self.loop_bound() => Some(Failure::NotConverging),
            Ok(()) => None,
        };
        if let Some(failure) = failure {
            self.events.push(FsmEvent::Failed(failure));
            return Some(Event::Close);
        }
        Some(Event::Rcn { identifier })
    }

    fn receive_code_reject(&mut self, data: &[u8]) -> Option<Event> {
        let Some(&rejected) = data.first() else {
            self.discard(code::CODE_REJECT, "Code-Reject without the rejected packet");
            return None;
        };
        // The codes the automaton cannot work without (§4.3: Code-Reject of Configure-Request
        // is catastrophic).
        let catastrophic = (code::CONFIGURE_REQUEST..=code::CODE_REJECT).contains(&rejected);
        self.events.push(FsmEvent::CodeRejected {
            code: rejected,
            catastrophic,
        });
        if catastrophic {
            Some(Event::RxjMinus)
        } else {
            self.negotiator.code_rejected(rejected);
            Some(Event::RxjPlus)
        }
    }
}

/// FNV-1a: enough to tell a retransmitted request from a changed one without keeping it.
fn digest(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5, |hash, &octet| {
        (hash ^ u32::from(octet)).wrapping_mul(0x0100_0193)
    })
}

/// Whether every option of `part` is an option of `whole`, unchanged and in the same order.
fn is_sublist(part: &[u8], whole: &[u8]) -> bool {
    let mut ours = options(whole);
    options(part).all(|theirs| ours.any(|o| o == theirs))
}

/// Writes Code, Identifier, a Length patched once `data` has written the rest.
fn emit_with(out: &mut Vec<u8>, code: u8, identifier: u8, data: impl FnOnce(&mut Vec<u8>)) -> bool {
    let start = out.len();
    out.extend_from_slice(&[code, identifier, 0, 0]);
    data(out);
    let Ok(length) = u16::try_from(out.len() - start) else {
        out.truncate(start);
        return false;
    };
    out[start + 2..start + 4].copy_from_slice(&length.to_be_bytes());
    true
}
