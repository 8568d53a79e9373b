//! The scripted initiator probes talk through: one UDP socket, one tunnel's Ns/Nr kept by hand,
//! and nothing sent that the probe did not ask for, except ZLB acknowledgements of what the
//! peer sends while the probe waits for something else (HELLO, retransmissions).
//!
//! Unlike `l2tp::conn` it never corrects the probe: a probe may send a wrong Ns, a missing AVP
//! or bytes no correct sender makes. Everything sent and received is logged as evidence and
//! captured. The socket is a [`Transport`]: a real one, or a node of the simulator.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddrV4;
use std::rc::Rc;
use std::time::Duration;

use l2tp::conn::reliable::seq_lt;
use l2tp::conn::tunnel::challenge_response;
use l2tp::wire::{
    message::ParseOptions, AvpRepr, AvpType, AvpValue, ControlMessage, HeaderRepr, MessageType,
    PacketRepr,
};

use l2tp::time::Instant;

pub use super::transport::Received;
use super::transport::{Network, Transport};
use super::{Log, Step, Target, Verdict};

/// How many times a request is sent before the probe calls the peer silent (the first send
/// and two retransmissions, a reply timeout apart).
pub const TRIES: usize = 3;

/// One line for the evidence: "SCCRP T=0 S=0 Ns=0 Nr=1 [Assigned Tunnel ID=5, …]".
pub fn describe(bytes: &[u8], secret: Option<&[u8]>) -> String {
    match PacketRepr::parse(bytes, &ParseOptions { secret }) {
        Ok(PacketRepr::Control(message)) => {
            let h = &message.header;
            let seq = h
                .sequence
                .map(|s| format!(" Ns={} Nr={}", s.ns, s.nr))
                .unwrap_or_default();
            let name = message.message_type().map_or("ZLB", MessageType::name);
            let avps: Vec<String> = message.avps.iter().skip(1).map(avp_text).collect();
            let list = if avps.is_empty() {
                String::new()
            } else {
                format!(" [{}]", avps.join(", "))
            };
            format!("{name} T={} S={}{seq}{list}", h.tunnel_id, h.session_id)
        }
        Ok(PacketRepr::Data { header, payload }) => format!(
            "data T={} S={} {} bytes",
            header.tunnel_id,
            header.session_id,
            payload.len()
        ),
        Err(e) => format!("unparseable ({} bytes): {e}", bytes.len()),
    }
}

fn avp_text(avp: &AvpRepr) -> String {
    use AvpValue as V;
    let name = avp.value.avp_type().map_or("vendor/unknown", AvpType::name);
    let value = match &avp.value {
        V::AssignedTunnelId(v) | V::AssignedSessionId(v) | V::ReceiveWindowSize(v) => {
            format!("={v}")
        }
        V::ResultCode { result, error, .. } => match error {
            Some(e) => format!("={result}/{e}"),
            None => format!("={result}"),
        },
        V::HostName(n) => format!("={}", String::from_utf8_lossy(n)),
        V::Vendor {
            vendor_id,
            attr_type,
            ..
        } => format!(" vendor {vendor_id} type {attr_type}"),
        V::Unknown { attr_type, .. } => format!(" type {attr_type}"),
        _ => String::new(),
    };
    let flags = match (avp.mandatory, avp.hidden) {
        (true, true) => " (M,H)",
        (true, false) => "",
        (false, true) => " (H)",
        (false, false) => " (opt)",
    };
    format!("{name}{value}{flags}")
}

/// A scripted tunnel from the initiator's side.
pub struct Ctl {
    transport: Box<dyn Transport>,
    pub local: SocketAddrV4,
    /// The address dialled (the cluster address for a cluster).
    pub target: SocketAddrV4,
    /// Where control messages go: the target, then wherever the SCCRP came from.
    pub peer: SocketAddrV4,
    pub our_tid: u16,
    /// 0 until the SCCRP names it.
    pub peer_tid: u16,
    /// The Ns of our next control message.
    pub ns: u16,
    /// Our Nr: the Ns we expect next from the peer.
    pub nr: u16,
    /// The peer's Receive Window Size (§5.8: 4 when it sends none).
    pub peer_window: u16,
    pub secret: Option<Vec<u8>>,
    pub host_name: String,
    pub reply_timeout: Duration,
    log: Rc<RefCell<Log>>,
    /// The Challenge our SCCRQ carried, to check the SCCRP's Challenge Response.
    our_challenge: Option<Vec<u8>>,
    seed: u64,
    /// When set, packets go to the pcap but not line by line into the evidence (a probe
    /// exchanging hundreds of messages notes a summary instead).
    quiet: bool,
    /// Data messages that came while a control exchange was awaited (an LNS's first LCP
    /// Configure-Request races the acknowledgement of the ICCN): [`Ctl::wait_data_until`]
    /// hands them out first. At most [`EARLY_DATA`].
    early_data: VecDeque<Received>,
}

/// Data messages kept while waiting for control messages.
const EARLY_DATA: usize = 16;

impl Ctl {
    pub fn open(target: &Target, network: &dyn Network, log: Rc<RefCell<Log>>) -> io::Result<Ctl> {
        let transport = network.open(target.bind)?;
        let local = transport.local_addr();
        let seed = seed_from(network.entropy(), local);
        Ok(Ctl {
            transport,
            local,
            target: target.addr,
            peer: target.addr,
            our_tid: 0,
            peer_tid: 0,
            ns: 0,
            nr: 0,
            peer_window: 4,
            secret: target.secret.clone(),
            host_name: target.host_name.clone(),
            reply_timeout: target.reply_timeout,
            log,
            our_challenge: None,
            seed,
            quiet: false,
            early_data: VecDeque::new(),
        })
    }

    /// A fresh non-zero ID (tunnel, session) from this socket's own generator.
    pub fn fresh_id(&mut self) -> u16 {
        loop {
            // xorshift64: IDs that differ between probes and runs without a dependency.
            self.seed ^= self.seed << 13;
            self.seed ^= self.seed >> 7;
            self.seed ^= self.seed << 17;
            let id = (self.seed >> 24) as u16;
            if id != 0 {
                return id;
            }
        }
    }

    fn random_bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.fresh_id() & 0xff) as u8).collect()
    }

    pub fn note(&self, line: impl AsRef<str>) {
        self.log.borrow_mut().note(self.now(), line);
    }

    /// The network's clock (virtual in the simulator).
    pub fn now(&self) -> Instant {
        self.transport.now()
    }

    /// Packets stop (or start again) being noted line by line; the pcap keeps them all.
    pub fn set_quiet(&mut self, quiet: bool) {
        self.quiet = quiet;
    }

    /// Puts a packet crafted below UDP (sent on a raw socket) into the probe's capture.
    pub fn capture_ip(&self, packet: &[u8]) {
        self.log.borrow_mut().capture_ip(self.now(), packet);
    }

    /// Sends bytes as they are to `to`.
    pub fn send_bytes_to(&mut self, to: SocketAddrV4, bytes: &[u8]) -> Step<()> {
        {
            let now = self.now();
            let mut log = self.log.borrow_mut();
            if !self.quiet {
                let line = describe(bytes, self.secret.as_deref());
                log.note(now, format!("→ {to} {line}"));
            }
            log.capture(now, self.local, to, bytes);
        }
        self.transport
            .send_to(bytes, to)
            .map_err(|e| Verdict::Inconclusive(format!("sending to {to}: {e}")))
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) -> Step<()> {
        self.send_bytes_to(self.peer, bytes)
    }

    /// Encodes (hiding AVPs marked hidden with the secret) and sends to the peer.
    pub fn send(&mut self, packet: &PacketRepr) -> Step<()> {
        let bytes = packet
            .to_vec(self.secret.as_deref())
            .map_err(|e| Verdict::Inconclusive(format!("encoding our own message: {e}")))?;
        self.send_bytes(&bytes)
    }

    /// The bytes of a control message of ours with explicit header values (no state changes).
    pub fn encode(
        &self,
        header: HeaderRepr,
        kind: MessageType,
        avps: Vec<AvpRepr<'static>>,
    ) -> Step<Vec<u8>> {
        let mut all = vec![AvpRepr::mandatory(AvpValue::MessageType(kind))];
        all.extend(avps);
        PacketRepr::Control(ControlMessage { header, avps: all })
            .to_vec(self.secret.as_deref())
            .map_err(|e| Verdict::Inconclusive(format!("encoding our own {}: {e}", kind.name())))
    }

    /// Sends the next control message of the tunnel (Ns advances) and returns its bytes, for a
    /// probe that resends them.
    pub fn control(
        &mut self,
        kind: MessageType,
        session: u16,
        avps: Vec<AvpRepr<'static>>,
    ) -> Step<Vec<u8>> {
        let header = HeaderRepr::control(self.peer_tid, session, self.ns, self.nr);
        let bytes = self.encode(header, kind, avps)?;
        self.ns = self.ns.wrapping_add(1);
        self.send_bytes(&bytes)?;
        Ok(bytes)
    }

    /// A ZLB acknowledging everything received so far.
    pub fn ack(&mut self) -> Step<()> {
        let header = HeaderRepr::control(self.peer_tid, 0, self.ns, self.nr);
        let bytes = PacketRepr::Control(ControlMessage {
            header,
            avps: Vec::new(),
        })
        .to_vec(None)
        .map_err(|e| Verdict::Inconclusive(format!("encoding a ZLB: {e}")))?;
        self.send_bytes(&bytes)
    }

    /// The next datagram from anyone, within `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Option<Received> {
        let deadline = self.now() + timeout;
        self.recv_until(deadline)
    }

    /// The next datagram from anyone, by `deadline`.
    pub fn recv_until(&mut self, deadline: Instant) -> Option<Received> {
        let received = self.transport.recv_until(deadline)?;
        let now = self.now();
        // Whoever sends an SCCRP is an endpoint the probe's finding may be about.
        let sccrp = self
            .parse(&received.bytes)
            .filter(|m| m.message_type() == Some(MessageType::Sccrp));
        let mut log = self.log.borrow_mut();
        if let Some(sccrp) = sccrp {
            let host_name = match sccrp.avp(AvpType::HostName) {
                Some(AvpValue::HostName(name)) => Some(&name[..]),
                _ => None,
            };
            log.answered_by(received.from, host_name);
        }
        if !self.quiet {
            let line = describe(&received.bytes, self.secret.as_deref());
            log.note(now, format!("← {} {line}", received.from));
        }
        log.capture(now, received.from, self.local, &received.bytes);
        Some(received)
    }

    /// Parses a datagram as a control message of ours (unhiding with the secret).
    pub fn parse(&self, bytes: &[u8]) -> Option<ControlMessage<'static>> {
        let options = ParseOptions {
            secret: self.secret.as_deref(),
        };
        match PacketRepr::parse(bytes, &options) {
            Ok(PacketRepr::Control(message)) => Some(message.into_owned()),
            _ => None,
        }
    }

    /// Waits up to `timeout` for a control message that `want` accepts and returns it (with
    /// where it came from). On the way: in-order messages advance our Nr; what `want` does not
    /// take is acknowledged with a ZLB (HELLO, a duplicate), so the peer does not retransmit
    /// into the judgement. The accepted message is not acknowledged: the probe answers it.
    pub fn wait(
        &mut self,
        timeout: Duration,
        want: impl FnMut(&ControlMessage) -> bool,
    ) -> Option<(SocketAddrV4, ControlMessage<'static>)> {
        let deadline = self.now() + timeout;
        self.wait_until(deadline, want)
    }

    /// As [`Ctl::wait`], up to a deadline shared with other sockets of the probe.
    pub fn wait_until(
        &mut self,
        deadline: Instant,
        mut want: impl FnMut(&ControlMessage) -> bool,
    ) -> Option<(SocketAddrV4, ControlMessage<'static>)> {
        loop {
            if self.now() >= deadline {
                return None;
            }
            let received = self.recv_until(deadline)?;
            let Some(message) = self.parse(&received.bytes) else {
                if self.early_data.len() < EARLY_DATA {
                    self.early_data.push_back(received);
                }
                continue;
            };
            if !message.is_zlb() {
                if let Some(seq) = message.header.sequence {
                    if seq.ns == self.nr {
                        self.nr = self.nr.wrapping_add(1);
                    } else if seq_lt(seq.ns, self.nr) {
                        // A retransmission of something we have: acknowledge again.
                        let _ = self.ack();
                        continue;
                    }
                }
            }
            if want(&message) {
                return Some((received.from, message));
            }
            if !message.is_zlb() {
                let _ = self.ack();
            }
        }
    }

    /// Sends `bytes` and waits for a message `want` accepts, resending the same bytes (a
    /// retransmission, §5.8) after each reply timeout, [`TRIES`] times in all.
    pub fn request(
        &mut self,
        bytes: &[u8],
        mut want: impl FnMut(&ControlMessage) -> bool,
    ) -> Step<Option<(SocketAddrV4, ControlMessage<'static>)>> {
        for attempt in 0..TRIES {
            if attempt > 0 {
                self.note("no answer: retransmitting");
                self.send_bytes_to(self.peer, bytes)?;
            }
            if let Some(got) = self.wait(self.reply_timeout, &mut want) {
                return Ok(Some(got));
            }
        }
        Ok(None)
    }

    /// The AVPs of a well-formed SCCRQ for `our_tid` (with a Challenge when we have a secret).
    pub fn sccrq_avps(&mut self) -> Vec<AvpRepr<'static>> {
        let mut avps = vec![
            AvpRepr::mandatory(AvpValue::ProtocolVersion {
                version: 1,
                revision: 0,
            }),
            AvpRepr::mandatory(AvpValue::HostName(
                self.host_name.clone().into_bytes().into(),
            )),
            AvpRepr::mandatory(AvpValue::FramingCapabilities(3)),
            AvpRepr::mandatory(AvpValue::AssignedTunnelId(self.our_tid)),
            AvpRepr::mandatory(AvpValue::ReceiveWindowSize(4)),
        ];
        if self.secret.is_some() {
            let challenge = self.random_bytes(16);
            self.our_challenge = Some(challenge.clone());
            avps.push(AvpRepr::mandatory(AvpValue::Challenge(challenge.into())));
        } else {
            self.our_challenge = None;
        }
        avps
    }

    /// Sends an SCCRQ with these AVPs (tunnel 0, Ns 0) and waits for the SCCRP, retransmitting.
    /// On an SCCRP: the peer's address, Tunnel ID and window are taken from it.
    pub fn sccrq_with(
        &mut self,
        avps: Vec<AvpRepr<'static>>,
    ) -> Step<Option<ControlMessage<'static>>> {
        self.peer = self.target;
        self.peer_tid = 0;
        self.ns = 0;
        self.nr = 0;
        let bytes = self.control(MessageType::Sccrq, 0, avps)?;
        let our_tid = self.our_tid;
        let got = self.request(&bytes, |m| {
            m.header.tunnel_id == our_tid
                && matches!(
                    m.message_type(),
                    Some(MessageType::Sccrp | MessageType::StopCcn)
                )
        })?;
        let Some((from, reply)) = got else {
            return Ok(None);
        };
        if reply.message_type() == Some(MessageType::Sccrp) {
            self.peer = from;
            if let Some(AvpValue::AssignedTunnelId(id)) = reply.avp(AvpType::AssignedTunnelId) {
                self.peer_tid = *id;
            }
            if let Some(AvpValue::ReceiveWindowSize(w)) = reply.avp(AvpType::ReceiveWindowSize) {
                self.peer_window = *w;
            }
        }
        Ok(Some(reply))
    }

    /// Opens a tunnel the way a correct LAC does: SCCRQ, SCCRP (its Challenge Response checked
    /// when we challenged), SCCCN (answering its Challenge), and the acknowledgement.
    pub fn establish(&mut self) -> Step<()> {
        self.our_tid = self.fresh_id();
        let avps = self.sccrq_avps();
        let reply = self.sccrq_with(avps)?.ok_or_else(|| {
            Verdict::Inconclusive(format!(
                "no SCCRP from {} after {TRIES} SCCRQs",
                self.target
            ))
        })?;
        let avps = self.scccn_for(&reply)?;
        let scccn = self.control(MessageType::Scccn, 0, avps)?;
        self.acked(&scccn)
    }

    /// Waits until the peer acknowledges everything we sent (a ZLB or any message whose Nr
    /// covers our Ns), resending `last` if nothing comes.
    pub fn acked(&mut self, last: &[u8]) -> Step<()> {
        let ns = self.ns;
        let got = self.request(last, |m| m.header.sequence.is_some_and(|s| s.nr == ns))?;
        match got {
            Some((_, message)) => {
                if !message.is_zlb() {
                    // A message that carried the ack (it advanced our Nr): acknowledge it.
                    self.ack()?;
                }
                Ok(())
            }
            None => Err(Verdict::Inconclusive(format!(
                "our Ns {} was never acknowledged",
                ns.wrapping_sub(1)
            ))),
        }
    }

    /// An incoming call on the established tunnel: ICRQ, ICRP, ICCN, acknowledged. Returns
    /// (our Session ID, the peer's).
    pub fn open_call(&mut self) -> Step<(u16, u16)> {
        let our_sid = self.fresh_id();
        let serial = u32::from(self.fresh_id());
        let icrq = self.control(
            MessageType::Icrq,
            0,
            vec![
                AvpRepr::mandatory(AvpValue::AssignedSessionId(our_sid)),
                AvpRepr::mandatory(AvpValue::CallSerialNumber(serial)),
                AvpRepr::mandatory(AvpValue::BearerType(3)),
            ],
        )?;
        let got = self.request(&icrq, |m| {
            m.header.session_id == our_sid
                && matches!(
                    m.message_type(),
                    Some(MessageType::Icrp | MessageType::Cdn | MessageType::StopCcn)
                )
        })?;
        let Some((_, reply)) = got else {
            return Err(Verdict::Inconclusive("no answer to our ICRQ".into()));
        };
        if reply.message_type() != Some(MessageType::Icrp) {
            return Err(Verdict::Fail(format!(
                "the ICRQ was answered with {}: {}",
                reply.message_type().map_or("ZLB", MessageType::name),
                result_text(&reply)
            )));
        }
        let Some(AvpValue::AssignedSessionId(peer_sid)) = reply.avp(AvpType::AssignedSessionId)
        else {
            return Err(Verdict::Fail(
                "ICRP without an Assigned Session ID (§6.7: mandatory)".into(),
            ));
        };
        let peer_sid = *peer_sid;
        let iccn = self.iccn(peer_sid)?;
        self.acked(&iccn)?;
        Ok((our_sid, peer_sid))
    }

    /// The ICCN that connects the incoming call the peer answered with `peer_sid` (§6.8:
    /// speed and framing are mandatory); returns its bytes, for `acked`.
    pub fn iccn(&mut self, peer_sid: u16) -> Step<Vec<u8>> {
        self.control(
            MessageType::Iccn,
            peer_sid,
            vec![
                AvpRepr::mandatory(AvpValue::TxConnectSpeed(100_000_000)),
                AvpRepr::mandatory(AvpValue::FramingType(3)),
            ],
        )
    }

    /// StopCCN (result 1, general request to clear) and its acknowledgement.
    pub fn close(&mut self) -> Step<()> {
        let stop = self.control(
            MessageType::StopCcn,
            0,
            vec![
                AvpRepr::mandatory(AvpValue::AssignedTunnelId(self.our_tid)),
                AvpRepr::mandatory(AvpValue::ResultCode {
                    result: 1,
                    error: None,
                    message: None,
                }),
            ],
        )?;
        self.acked(&stop)
    }
}

/// "2/6 (message)" of a message's Result Code AVP, or "no Result Code".
pub fn result_text(message: &ControlMessage) -> String {
    match message.avp(AvpType::ResultCode) {
        Some(AvpValue::ResultCode {
            result,
            error,
            message,
        }) => {
            let text = message
                .as_ref()
                .map(|m| format!(" ({})", String::from_utf8_lossy(m)))
                .unwrap_or_default();
            match error {
                Some(e) => format!("result {result}, error {e}{text}"),
                None => format!("result {result}{text}"),
            }
        }
        _ => "no Result Code".to_string(),
    }
}

/// The (result, error) of a message's Result Code AVP.
pub fn result_of(message: &ControlMessage) -> Option<(u16, Option<u16>)> {
    match message.avp(AvpType::ResultCode) {
        Some(AvpValue::ResultCode { result, error, .. }) => Some((*result, *error)),
        _ => None,
    }
}

fn seed_from(entropy: u64, local: SocketAddrV4) -> u64 {
    (entropy ^ (u64::from(u32::from(*local.ip())) << 16) ^ u64::from(local.port())) | 1
}

/// A control message as [`Ctl::watch`] saw it: when (since the watch began) and from where.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Duration,
    pub from: SocketAddrV4,
    pub message: ControlMessage<'static>,
}

/// Helpers for the reliable-transport and session probes.
impl Ctl {
    /// Opens a tunnel like [`Ctl::establish`], with the SCCRQ's AVPs changed by `edit` first
    /// (a smaller Receive Window Size, say).
    pub fn establish_with(&mut self, edit: impl FnOnce(&mut Vec<AvpRepr<'static>>)) -> Step<()> {
        self.our_tid = self.fresh_id();
        let mut avps = self.sccrq_avps();
        edit(&mut avps);
        let reply = self.sccrq_with(avps)?.ok_or_else(|| {
            Verdict::Inconclusive(format!(
                "no SCCRP from {} after {TRIES} SCCRQs",
                self.target
            ))
        })?;
        let scccn = self.scccn_for(&reply)?;
        let scccn = self.control(MessageType::Scccn, 0, scccn)?;
        self.acked(&scccn)
    }

    /// Checks an answer to our SCCRQ as a correct LAC does and returns the SCCCN's AVPs
    /// (the Challenge Response when the SCCRP challenges us).
    pub fn scccn_for(&mut self, reply: &ControlMessage<'static>) -> Step<Vec<AvpRepr<'static>>> {
        if reply.message_type() != Some(MessageType::Sccrp) {
            return Err(Verdict::Inconclusive(format!(
                "the target refused the tunnel: {}",
                result_text(reply)
            )));
        }
        if self.peer_tid == 0 {
            return Err(Verdict::Fail(
                "SCCRP without an Assigned Tunnel ID (§6.2: mandatory)".into(),
            ));
        }
        if let Some(challenge) = self.our_challenge.clone() {
            let secret = self.secret.clone().unwrap_or_default();
            let expected = challenge_response(MessageType::Sccrp, &secret, &challenge);
            match reply.avp(AvpType::ChallengeResponse) {
                Some(AvpValue::ChallengeResponse(got)) if *got == expected => {}
                Some(_) => {
                    return Err(Verdict::Fail(
                        "the SCCRP's Challenge Response does not match our secret".into(),
                    ))
                }
                None => {
                    return Err(Verdict::Fail(
                        "we sent a Challenge; the SCCRP has no Challenge Response (§4.4.3)".into(),
                    ))
                }
            }
        }
        let mut avps = Vec::new();
        if let Some(AvpValue::Challenge(challenge)) = reply.avp(AvpType::Challenge) {
            let Some(secret) = self.secret.clone() else {
                return Err(Verdict::Inconclusive(
                    "the target challenges us: give its tunnel secret with --secret".into(),
                ));
            };
            let response = challenge_response(MessageType::Scccn, &secret, challenge);
            avps.push(AvpRepr::mandatory(AvpValue::ChallengeResponse(response)));
        }
        Ok(avps)
    }

    /// Receives the peer's control messages for this tunnel for up to `timeout`, without
    /// acknowledging anything or moving our Nr: for probes that judge the peer's own
    /// retransmissions and window. Stops early, after recording it, at the first message
    /// `stop` accepts.
    pub fn watch(
        &mut self,
        timeout: Duration,
        mut stop: impl FnMut(&ControlMessage) -> bool,
    ) -> Vec<Seen> {
        let start = self.now();
        let deadline = start + timeout;
        let mut seen = Vec::new();
        loop {
            if self.now() >= deadline {
                return seen;
            }
            let Some(received) = self.recv_until(deadline) else {
                return seen;
            };
            let Some(message) = self.parse(&received.bytes) else {
                continue;
            };
            if message.header.tunnel_id != self.our_tid {
                continue;
            }
            let done = stop(&message);
            seen.push(Seen {
                at: self.now().saturating_duration_since(start),
                from: received.from,
                message,
            });
            if done {
                return seen;
            }
        }
    }

    /// Sends a PPP frame in a data message on the peer's session `peer_session`.
    pub fn send_data(&mut self, peer_session: u16, frame: &[u8]) -> Step<()> {
        let header = HeaderRepr::data(self.peer_tid, peer_session);
        self.send(&PacketRepr::Data {
            header,
            payload: frame,
        })
    }

    /// Waits up to `timeout` for a data message on our session `our_session` and returns its
    /// PPP frame. Control messages on the way are handled as [`Ctl::wait`] does (in-order ones
    /// advance Nr and are acknowledged) and handed to `control`, for the probe to judge (a CDN,
    /// a StopCCN).
    pub fn wait_data(
        &mut self,
        timeout: Duration,
        our_session: u16,
        mut control: impl FnMut(&ControlMessage<'static>),
    ) -> Option<Vec<u8>> {
        let deadline = self.now() + timeout;
        self.wait_data_until(deadline, our_session, |message| {
            control(message);
            false
        })
    }

    /// Forgets the data messages kept while control messages were awaited: what a session
    /// sent before the acknowledgement of its CDN, say, is no evidence about after it.
    pub fn discard_early_data(&mut self) -> usize {
        let n = self.early_data.len();
        self.early_data.clear();
        n
    }

    /// As [`Ctl::wait_data`], up to `deadline`; `control` returning true stops the wait at
    /// once with `None` (a CDN for the call: no more data will come, so waiting is useless).
    pub fn wait_data_until(
        &mut self,
        deadline: Instant,
        our_session: u16,
        mut control: impl FnMut(&ControlMessage<'static>) -> bool,
    ) -> Option<Vec<u8>> {
        loop {
            let early = self.early_data.pop_front();
            if early.is_none() && self.now() >= deadline {
                return None;
            }
            let received = match early {
                Some(received) => received,
                None => self.recv_until(deadline)?,
            };
            let options = ParseOptions {
                secret: self.secret.as_deref(),
            };
            match PacketRepr::parse(&received.bytes, &options) {
                Ok(PacketRepr::Data { header, payload }) => {
                    if header.tunnel_id == self.our_tid && header.session_id == our_session {
                        return Some(payload.to_vec());
                    }
                }
                Ok(PacketRepr::Control(message)) => {
                    if message.header.tunnel_id != self.our_tid {
                        continue;
                    }
                    let message = message.into_owned();
                    if !message.is_zlb() {
                        if let Some(seq) = message.header.sequence {
                            if seq.ns == self.nr {
                                self.nr = self.nr.wrapping_add(1);
                            }
                        }
                        let _ = self.ack();
                    }
                    if control(&message) {
                        return None;
                    }
                }
                Err(_) => {}
            }
        }
    }
}
