//! PPP inside a tunnel's sessions (RFC 1661 §3.2): the frames that mark a phase (LCP opened,
//! authentication, IPCP/IPv6CP opened, termination, the first IP packet) become timeline
//! entries, and a phase out of order (an NCP before authentication succeeded, IP before its
//! NCP opened) a deviation. LCP echoes are only counted: a long capture holds thousands.
//!
//! Both directions of a call are one session, named by the initiator's Session ID (its
//! Assigned Session ID in the ICRQ); the ICRP pairs it with the endpoint's. A packet seen on
//! two hops (before and after the NAT) changes nothing the second time: each mark is a change
//! of the session's state, made once.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use l2tp::ppp::describe::{self, ConfigOption, Detail, InterfaceId};
use l2tp::ppp::protocol;
use l2tp::wire::MessageType;
use serde::Serialize;

use super::context::Context;
use super::observation::{Kind, Observation};
use super::report::{Deviation, Rule};
use super::tunnels::{Entry, Tunnel};

/// LCP, IPCP and IPv6CP codes (RFC 1661 §5).
const CONFIGURE_REQUEST: u8 = 1;
const CONFIGURE_ACK: u8 = 2;
const TERMINATE_REQUEST: u8 = 5;
const TERMINATE_ACK: u8 = 6;
const ECHO_REQUEST: u8 = 9;
const ECHO_REPLY: u8 = 10;

/// What the checker keeps of one PPP frame: only what bears on the phases, so that an
/// observation of every data message stays small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// An LCP, IPCP or IPv6CP packet, with the options the phases need (from any Configure-*).
    Negotiation {
        protocol: u16,
        code: u8,
        identifier: u8,
        /// LCP Auth-Protocol.
        auth: Option<u16>,
        /// IPCP IP-Address.
        address: Option<Ipv4Addr>,
        /// IPv6CP Interface-Identifier.
        interface_id: Option<u64>,
    },
    /// PAP Authenticate-Ack/-Nak, CHAP Success/Failure.
    AuthResult {
        protocol: u16,
        success: bool,
        message: Box<str>,
    },
    Ipv4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
    },
    Ipv6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
    },
    /// PAP requests, CHAP challenges and responses, other protocols: no phase changes.
    Other,
    /// Bytes that do not read as PPP; a peer discards them (RFC 1661 §5).
    Malformed,
}

impl Frame {
    /// Recognises the PPP frame carried by an L2TP data message. Never fails.
    pub fn read(payload: &[u8]) -> Frame {
        let summary = describe::describe(payload);
        if summary.malformed.is_some() {
            return Frame::Malformed;
        }
        let Some(protocol) = summary.protocol else {
            return Frame::Malformed;
        };
        if let Some(ip) = summary.ip {
            return match (ip.src, ip.dst) {
                (IpAddr::V4(src), IpAddr::V4(dst)) => Frame::Ipv4 { src, dst },
                (IpAddr::V6(src), IpAddr::V6(dst)) => Frame::Ipv6 { src, dst },
                _ => Frame::Other,
            };
        }
        let Some(control) = summary.control else {
            return Frame::Other;
        };
        match protocol {
            protocol::LCP | protocol::IPCP | protocol::IPV6CP => {
                let (mut auth, mut address, mut interface_id) = (None, None, None);
                if let Detail::Options { options } = &control.detail {
                    for option in options {
                        match *option {
                            ConfigOption::AuthProtocol { protocol, .. } => auth = Some(protocol),
                            ConfigOption::IpAddress(ip) => address = Some(ip),
                            ConfigOption::InterfaceIdentifier(InterfaceId(id)) => {
                                interface_id = Some(id)
                            }
                            _ => {}
                        }
                    }
                }
                Frame::Negotiation {
                    protocol,
                    code: control.code,
                    identifier: control.identifier,
                    auth,
                    address,
                    interface_id,
                }
            }
            // PAP Authenticate-Ack/-Nak (RFC 1334 §2.2), CHAP Success/Failure (RFC 1994 §4).
            protocol::PAP | protocol::CHAP => {
                let success = match (protocol, control.code) {
                    (protocol::PAP, 2) | (protocol::CHAP, 3) => true,
                    (protocol::PAP, 3) | (protocol::CHAP, 4) => false,
                    _ => return Frame::Other,
                };
                let message = match control.detail {
                    Detail::Message { message } => message.into_boxed_str(),
                    _ => Box::default(),
                };
                Frame::AuthResult {
                    protocol,
                    success,
                    message,
                }
            }
            _ => Frame::Other,
        }
    }
}

/// One phase change of a session, as the timeline shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PppMark {
    /// The call: the initiator's Session ID (its Assigned Session ID in the ICRQ), or the
    /// Session ID in the header when no ICRQ/ICRP named the call.
    pub session: u16,
    #[serde(flatten)]
    pub event: PppEvent,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum PppEvent {
    /// The first LCP Configure-Ack of one direction.
    LcpConfigureAck {
        #[serde(skip_serializing_if = "Option::is_none")]
        auth_protocol: Option<&'static str>,
    },
    /// The Configure-Ack of the other direction: LCP is opened at both ends.
    LcpOpened {
        #[serde(skip_serializing_if = "Option::is_none")]
        auth_protocol: Option<&'static str>,
    },
    /// An LCP Configure-Request on an opened link: back to link establishment (RFC 1661 §3.4).
    LcpRenegotiation,
    AuthSuccess {
        protocol: &'static str,
        message: String,
    },
    AuthFailure {
        protocol: &'static str,
        message: String,
    },
    IpcpConfigureAck {
        #[serde(skip_serializing_if = "Option::is_none")]
        address: Option<Ipv4Addr>,
    },
    /// Addresses from the two Configure-Acks: each acknowledges the other side's address.
    IpcpOpened {
        initiator_address: Option<Ipv4Addr>,
        endpoint_address: Option<Ipv4Addr>,
    },
    Ipv6cpConfigureAck {
        #[serde(skip_serializing_if = "Option::is_none")]
        interface_id: Option<InterfaceId>,
    },
    Ipv6cpOpened {
        initiator_interface_id: Option<InterfaceId>,
        endpoint_interface_id: Option<InterfaceId>,
    },
    LcpTerminateRequest,
    LcpTerminateAck,
    FirstIpv4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
    },
    FirstIpv6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
    },
}

impl PppEvent {
    /// Whether the event is one direction's Configure-Ack, on the way to an opened protocol.
    pub fn one_way_ack(&self) -> bool {
        matches!(
            self,
            PppEvent::LcpConfigureAck { .. }
                | PppEvent::IpcpConfigureAck { .. }
                | PppEvent::Ipv6cpConfigureAck { .. }
        )
    }

    /// Whether the event belongs to both directions (an opened NCP), so the direction of the
    /// packet that completed it says nothing.
    pub fn both_ways(&self) -> bool {
        matches!(
            self,
            PppEvent::LcpOpened { .. }
                | PppEvent::IpcpOpened { .. }
                | PppEvent::Ipv6cpOpened { .. }
        )
    }
}

fn or_none<T: fmt::Display>(value: &Option<T>) -> String {
    value
        .as_ref()
        .map_or_else(|| "none".to_owned(), ToString::to_string)
}

impl fmt::Display for PppEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = |f: &mut fmt::Formatter<'_>, auth: &Option<&str>| match auth {
            Some(name) => write!(f, " (Auth-Protocol {name})"),
            None => Ok(()),
        };
        match self {
            PppEvent::LcpConfigureAck { auth_protocol } => {
                f.write_str("LCP Configure-Ack")?;
                auth(f, auth_protocol)
            }
            PppEvent::LcpOpened { auth_protocol } => {
                f.write_str("LCP opened")?;
                auth(f, auth_protocol)
            }
            PppEvent::LcpRenegotiation => f.write_str("LCP Configure-Request on the opened link"),
            PppEvent::AuthSuccess { protocol, message }
            | PppEvent::AuthFailure { protocol, message } => {
                let success = matches!(self, PppEvent::AuthSuccess { .. });
                let code = match (*protocol, success) {
                    ("PAP", true) => "Authenticate-Ack",
                    ("PAP", false) => "Authenticate-Nak",
                    (_, true) => "Success",
                    (_, false) => "Failure",
                };
                write!(f, "{protocol} {code} {message:?}")
            }
            PppEvent::IpcpConfigureAck { address } => {
                write!(f, "IPCP Configure-Ack {}", or_none(address))
            }
            PppEvent::IpcpOpened {
                initiator_address,
                endpoint_address,
            } => write!(
                f,
                "IPCP opened: initiator {}, endpoint {}",
                or_none(initiator_address),
                or_none(endpoint_address)
            ),
            PppEvent::Ipv6cpConfigureAck { interface_id } => {
                write!(f, "IPv6CP Configure-Ack {}", or_none(interface_id))
            }
            PppEvent::Ipv6cpOpened {
                initiator_interface_id,
                endpoint_interface_id,
            } => write!(
                f,
                "IPv6CP opened: initiator {}, endpoint {}",
                or_none(initiator_interface_id),
                or_none(endpoint_interface_id)
            ),
            PppEvent::LcpTerminateRequest => f.write_str("LCP Terminate-Request"),
            PppEvent::LcpTerminateAck => f.write_str("LCP Terminate-Ack"),
            PppEvent::FirstIpv4 { src, dst } => write!(f, "first IPv4 packet {src} → {dst}"),
            PppEvent::FirstIpv6 { src, dst } => write!(f, "first IPv6 packet {src} → {dst}"),
        }
    }
}

/// What a tunnel's PPP adds up to, beside the marks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PppCounts {
    /// Sessions that carried a PPP frame.
    pub sessions: usize,
    pub lcp_opened: usize,
    pub authenticated: usize,
    pub ipcp_opened: usize,
    pub ipv6cp_opened: usize,
    /// Each counted once, however many hops it was seen on.
    pub echo_requests: usize,
    pub echo_replies: usize,
    /// Data messages whose payload does not read as PPP (each sighting).
    pub malformed: usize,
}

impl PppCounts {
    pub fn is_empty(&self) -> bool {
        *self == PppCounts::default()
    }
}

impl fmt::Display for PppCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PPP in {} session{}: {} LCP opened, {} authenticated, {} IPCP opened",
            self.sessions,
            if self.sessions == 1 { "" } else { "s" },
            self.lcp_opened,
            self.authenticated,
            self.ipcp_opened
        )?;
        if self.ipv6cp_opened > 0 {
            write!(f, ", {} IPv6CP opened", self.ipv6cp_opened)?;
        }
        write!(
            f,
            "; {} LCP Echo-Requests, {} Echo-Replies",
            self.echo_requests, self.echo_replies
        )?;
        if self.malformed > 0 {
            write!(f, "; {} malformed", self.malformed)?;
        }
        Ok(())
    }
}

/// One NCP's (or LCP's) progress as the capture shows it: a Configure-Ack seen each way.
#[derive(Debug, Default)]
struct Negotiation {
    /// Index 0: from the initiator, 1: from the endpoint.
    acked: [bool; 2],
    opened: bool,
    /// Opened before a lost Ack took it back: opening again is not counted again.
    counted: bool,
    /// The Identifier of the last Configure-Request each way.
    last_request: [Option<u8>; 2],
}

/// What a Configure-Request on an opened negotiation means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnOpened {
    /// Not opened: an ordinary request.
    Negotiating,
    /// The same Identifier as the sender's last request: a retransmission (RFC 1661 §5.1: the
    /// Identifier changes once a valid reply was received), so the Ack of it, which a capture
    /// before the lossy hop saw, never reached the sender.
    AckLost,
    /// A new request: the link starts over (§3.4).
    Renegotiation,
}

impl Negotiation {
    /// Records a Configure-Ack; whether it was the first of its direction, and whether the
    /// negotiation opened with it.
    fn ack(&mut self, dir: usize) -> Option<bool> {
        if self.acked[dir] {
            return None;
        }
        self.acked[dir] = true;
        self.opened = self.acked == [true, true];
        Some(self.opened)
    }

    /// Whether this opening is the first (counted once per negotiation).
    fn count_opening(&mut self) -> bool {
        !std::mem::replace(&mut self.counted, true)
    }

    /// Records a Configure-Request from `dir`; a lost Ack takes the opening back here.
    fn request(&mut self, dir: usize, identifier: u8) -> OnOpened {
        let repeated = self.last_request[dir] == Some(identifier);
        self.last_request[dir] = Some(identifier);
        if !self.opened {
            return OnOpened::Negotiating;
        }
        if !repeated {
            return OnOpened::Renegotiation;
        }
        // The other side's Ack of this request did not arrive; the sender's own Ack of the
        // other side's request stands.
        if let Some(acked) = self.acked.get_mut(1 - dir.min(1)) {
            *acked = false;
        }
        self.opened = false;
        OnOpened::AckLost
    }
}

/// Which out-of-order findings a session already raised (each is raised once).
const FLAG_IPCP_AUTH: u8 = 1;
const FLAG_IPV6CP_AUTH: u8 = 2;
const FLAG_IPCP_LCP: u8 = 4;
const FLAG_IPV6CP_LCP: u8 = 8;
const FLAG_IPV4: u8 = 16;
const FLAG_IPV6: u8 = 32;

#[derive(Debug, Default)]
struct Session {
    lcp: Negotiation,
    /// The Auth-Protocol of an acknowledged LCP Configure-Request.
    auth: Option<u16>,
    authenticated: bool,
    auth_failed: bool,
    ipcp: Negotiation,
    /// IPCP addresses by the direction of the Configure-Ack that carried them.
    addresses: [Option<Ipv4Addr>; 2],
    ipv6cp: Negotiation,
    interface_ids: [Option<u64>; 2],
    seen_ipv4: bool,
    seen_ipv6: bool,
    terminate_request: [bool; 2],
    terminate_ack: [bool; 2],
    /// The identifier of the last Echo-Request/-Reply per direction: a copy of one on another
    /// hop is not another echo.
    last_echo: [[Option<u8>; 2]; 2],
    flags: u8,
    counted: bool,
}

pub(crate) struct Outcome {
    /// Observation index -> its mark.
    pub marks: HashMap<usize, PppMark>,
    pub deviations: Vec<Deviation>,
    pub counts: PppCounts,
}

fn who(dir: usize) -> &'static str {
    if dir == 0 {
        "the initiator"
    } else {
        "the endpoint"
    }
}

fn name(protocol: u16) -> &'static str {
    protocol::name(protocol).unwrap_or("PPP")
}

/// Reads the PPP of every session of `tunnel`, its entries in time order.
pub(crate) fn check(ctx: &Context, tunnel: &Tunnel) -> Outcome {
    let mut sessions: HashMap<(u16, bool), Session> = HashMap::new();
    // The endpoint's Session ID -> the initiator's, from the ICRPs.
    let mut calls: HashMap<u16, u16> = HashMap::new();
    // The initiator's Session ID -> the Ns of the ICRQ that opened the call: a retransmission
    // of that ICRQ, or its copy on the other hop, is not a new call.
    let mut icrqs: HashMap<u16, u16> = HashMap::new();
    let mut outcome = Outcome {
        marks: HashMap::new(),
        deviations: Vec::new(),
        counts: PppCounts::default(),
    };
    for entry in &tunnel.entries {
        let o = ctx.obs(*entry);
        let m = &o.message;
        match (m.kind, entry.from_initiator, m.assigned_session_id) {
            // A new call: fresh state, also when a Session ID comes back after a CDN (in a new
            // ICRQ, with another Ns).
            (Kind::Control(MessageType::Icrq), true, Some(sid)) => {
                let new_call = icrqs.insert(sid, m.ns) != Some(m.ns);
                if new_call {
                    sessions.insert((sid, true), Session::default());
                }
            }
            (Kind::Control(MessageType::Icrp), false, Some(theirs)) => {
                calls.insert(theirs, m.session_id);
            }
            _ => {}
        }
        let Some(frame) = &o.ppp else { continue };
        // The header names the receiver's Session ID: the initiator's on what the endpoint
        // sends, the endpoint's (mapped back through the ICRP) on what the initiator sends.
        let key = if entry.from_initiator {
            calls
                .get(&m.session_id)
                .map_or((m.session_id, false), |&sid| (sid, true))
        } else {
            (m.session_id, true)
        };
        let session = sessions.entry(key).or_default();
        let dir = usize::from(!entry.from_initiator);
        let mut step = Step {
            ctx,
            o,
            entry: *entry,
            id: key.0,
            dir,
            outcome: &mut outcome,
        };
        step.frame(session, frame);
    }
    outcome
}

/// One frame of one session.
struct Step<'c, 'a, 'o> {
    ctx: &'c Context<'a>,
    o: &'c Observation,
    entry: Entry,
    id: u16,
    dir: usize,
    outcome: &'o mut Outcome,
}

impl Step<'_, '_, '_> {
    fn mark(&mut self, event: PppEvent) {
        self.outcome.marks.insert(
            self.entry.obs,
            PppMark {
                session: self.id,
                event,
            },
        );
    }

    fn flag(&mut self, session: &mut Session, flag: u8, what: &str, text: String, expected: &str) {
        if session.flags & flag != 0 {
            return;
        }
        session.flags |= flag;
        let deviation = self.ctx.deviation(
            None,
            Rule::PppOrder,
            Some(self.o),
            format!("session {}: {what}: {text}", self.id),
            expected.to_owned(),
            text,
        );
        self.outcome.deviations.push(deviation);
    }

    fn frame(&mut self, session: &mut Session, frame: &Frame) {
        let counts = &mut self.outcome.counts;
        if !session.counted && *frame != Frame::Malformed {
            session.counted = true;
            counts.sessions += 1;
        }
        let dir = self.dir;
        match frame {
            Frame::Malformed => counts.malformed += 1,
            Frame::Other => {}
            Frame::Negotiation {
                protocol: protocol::LCP,
                code,
                identifier,
                auth,
                ..
            } => self.lcp(session, *code, *identifier, *auth),
            Frame::Negotiation {
                protocol,
                code,
                address,
                interface_id,
                identifier,
                ..
            } => self.ncp(
                session,
                *protocol,
                (*code, *identifier),
                *address,
                *interface_id,
            ),
            Frame::AuthResult {
                protocol,
                success,
                message,
            } => {
                let protocol = name(*protocol);
                let message = message.to_string();
                if *success && !session.authenticated {
                    session.authenticated = true;
                    counts.authenticated += 1;
                    self.mark(PppEvent::AuthSuccess { protocol, message });
                } else if !*success && !session.auth_failed {
                    session.auth_failed = true;
                    self.mark(PppEvent::AuthFailure { protocol, message });
                }
            }
            Frame::Ipv4 { src, dst } => {
                if !session.seen_ipv4 {
                    session.seen_ipv4 = true;
                    self.mark(PppEvent::FirstIpv4 {
                        src: *src,
                        dst: *dst,
                    });
                }
                if !session.ipcp.opened {
                    let text = format!("IPv4 {src} → {dst} from {}", who(dir));
                    self.flag(
                        session,
                        FLAG_IPV4,
                        "data before IPCP opened",
                        text,
                        "IPCP opened before IPv4",
                    );
                }
            }
            Frame::Ipv6 { src, dst } => {
                if !session.seen_ipv6 {
                    session.seen_ipv6 = true;
                    self.mark(PppEvent::FirstIpv6 {
                        src: *src,
                        dst: *dst,
                    });
                }
                if !session.ipv6cp.opened {
                    let text = format!("IPv6 {src} → {dst} from {}", who(dir));
                    self.flag(
                        session,
                        FLAG_IPV6,
                        "IPv6 data before IPv6CP opened",
                        text,
                        "IPv6CP opened before IPv6",
                    );
                }
            }
        }
    }

    fn lcp(&mut self, session: &mut Session, code: u8, identifier: u8, auth: Option<u16>) {
        let dir = self.dir;
        let renegotiation = code == CONFIGURE_REQUEST
            && session.lcp.request(dir, identifier) == OnOpened::Renegotiation;
        match code {
            CONFIGURE_REQUEST if renegotiation => {
                // Renegotiation takes the link back to establishment; the NCPs and the
                // authentication start over (RFC 1661 §3.4).
                *session = Session {
                    flags: session.flags,
                    counted: session.counted,
                    last_echo: session.last_echo,
                    ..Session::default()
                };
                session.lcp.last_request[dir] = Some(identifier);
                self.mark(PppEvent::LcpRenegotiation);
            }
            CONFIGURE_ACK => {
                let Some(opened) = session.lcp.ack(dir) else {
                    return;
                };
                // The Ack repeats the authenticator's Request: its Auth-Protocol is agreed.
                session.auth = session.auth.or(auth);
                let auth_protocol = session.auth.map(name);
                if opened {
                    if session.lcp.count_opening() {
                        self.outcome.counts.lcp_opened += 1;
                    }
                    self.mark(PppEvent::LcpOpened { auth_protocol });
                } else {
                    self.mark(PppEvent::LcpConfigureAck { auth_protocol });
                }
            }
            TERMINATE_REQUEST if !session.terminate_request[dir] => {
                session.terminate_request[dir] = true;
                self.mark(PppEvent::LcpTerminateRequest);
            }
            TERMINATE_ACK if !session.terminate_ack[dir] => {
                session.terminate_ack[dir] = true;
                self.mark(PppEvent::LcpTerminateAck);
            }
            ECHO_REQUEST | ECHO_REPLY => {
                let reply = usize::from(code == ECHO_REPLY);
                let last = &mut session.last_echo[reply][dir];
                if *last != Some(identifier) {
                    *last = Some(identifier);
                    let counts = &mut self.outcome.counts;
                    if reply == 1 {
                        counts.echo_replies += 1;
                    } else {
                        counts.echo_requests += 1;
                    }
                }
            }
            _ => {}
        }
    }

    fn ncp(
        &mut self,
        session: &mut Session,
        protocol: u16,
        (code, identifier): (u8, u8),
        address: Option<Ipv4Addr>,
        interface_id: Option<u64>,
    ) {
        let dir = self.dir;
        let ipv6 = protocol == protocol::IPV6CP;
        if matches!(code, CONFIGURE_REQUEST | CONFIGURE_ACK) {
            // NCP packets belong to the network phase: after LCP opened and, when LCP agreed
            // on an Auth-Protocol, after it succeeded (RFC 1661 §3.5).
            let ncp = name(protocol);
            let packet = if code == CONFIGURE_ACK {
                "Configure-Ack"
            } else {
                "Configure-Request"
            };
            if let (Some(auth), false) = (session.auth, session.authenticated) {
                let text = format!(
                    "{ncp} {packet} from {} while {} was agreed and has not succeeded",
                    who(dir),
                    name(auth)
                );
                let flag = if ipv6 {
                    FLAG_IPV6CP_AUTH
                } else {
                    FLAG_IPCP_AUTH
                };
                let what = format!("{ncp} before authentication succeeded");
                let expected = format!("{} success before {ncp}", name(auth));
                self.flag(session, flag, &what, text, &expected);
            } else if !session.lcp.opened {
                let text = format!("{ncp} {packet} from {} before LCP opened", who(dir));
                let flag = if ipv6 { FLAG_IPV6CP_LCP } else { FLAG_IPCP_LCP };
                let what = format!("{ncp} before LCP opened");
                let expected = format!("LCP opened before {ncp}");
                self.flag(session, flag, &what, text, &expected);
            }
        }
        let negotiation = if ipv6 {
            &mut session.ipv6cp
        } else {
            &mut session.ipcp
        };
        let renegotiation = code == CONFIGURE_REQUEST
            && negotiation.request(dir, identifier) == OnOpened::Renegotiation;
        match code {
            CONFIGURE_REQUEST if renegotiation => {
                *negotiation = Negotiation::default();
                negotiation.last_request[dir] = Some(identifier);
            }
            CONFIGURE_ACK => {
                let Some(opened) = negotiation.ack(dir) else {
                    return;
                };
                // Each Ack names the other side's address: the endpoint's acknowledges the
                // initiator's.
                let event = if ipv6 {
                    session.interface_ids[dir] = interface_id;
                    let [from_initiator, from_endpoint] =
                        session.interface_ids.map(|id| id.map(InterfaceId));
                    if opened && negotiation.count_opening() {
                        self.outcome.counts.ipv6cp_opened += 1;
                    }
                    if opened {
                        PppEvent::Ipv6cpOpened {
                            initiator_interface_id: from_endpoint,
                            endpoint_interface_id: from_initiator,
                        }
                    } else {
                        PppEvent::Ipv6cpConfigureAck {
                            interface_id: interface_id.map(InterfaceId),
                        }
                    }
                } else {
                    session.addresses[dir] = address;
                    let [from_initiator, from_endpoint] = session.addresses;
                    if opened && negotiation.count_opening() {
                        self.outcome.counts.ipcp_opened += 1;
                    }
                    if opened {
                        PppEvent::IpcpOpened {
                            initiator_address: from_endpoint,
                            endpoint_address: from_initiator,
                        }
                    } else {
                        PppEvent::IpcpConfigureAck { address }
                    }
                };
                self.mark(event);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
#[path = "ppp_tests.rs"]
mod tests;
