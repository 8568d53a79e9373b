//! What a tunnel and its sessions do, one behaviour a test (RFC 2661 §4.2, §4.4.2–4.4.3, §5.5,
//! §5.7, §6, §7): two `TunnelSet`s in the virtual-time simulator, or one `TunnelSet` facing a
//! hand-played peer that writes raw messages with the wire codec and reads every byte back.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::net::SocketAddrV4;
use std::time::Duration;

use l2tp::conn::reliable::ReliableConfig;
use l2tp::conn::tunnel::{
    CallDirection, Event, ResultCode, SessionState, Tunnel, TunnelConfig, TunnelEnd, TunnelState,
};
use l2tp::conn::tunnels::TunnelSet;
use l2tp::sim::{Datagram, LinkConditions, Node, NodeId, Simulator, Stop};
use l2tp::time::Instant;
use l2tp::wire::header::Header;
use l2tp::wire::message::ParseOptions;
use l2tp::wire::PacketRepr;
use l2tp::wire::{Avp, AvpRepr, AvpType, AvpValue, ControlMessage, HeaderRepr, MessageType};

const LAC: &str = "127.0.0.3:1701";
const LNS: &str = "127.0.0.2:1701";
const SECRET: &[u8] = b"behaviour-secret";

fn addr(s: &str) -> SocketAddrV4 {
    s.parse().expect("address")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn config(host: &str) -> TunnelConfig {
    TunnelConfig {
        host_name: host.to_string(),
        ..TunnelConfig::default()
    }
}

fn with_secret(host: &str, secret: &[u8], hide: bool) -> TunnelConfig {
    TunnelConfig {
        secret: Some(secret.to_vec()),
        hide_avps: hide,
        ..config(host)
    }
}

/// The full retransmission cycle of the default reliable config: 1+2+4+8+8+8 s.
fn cycle() -> Duration {
    let cycle = ReliableConfig::default().full_retransmit_cycle();
    assert_eq!(cycle, secs(31), "RFC 2661 §5.7's recommended cycle");
    cycle
}

// ----- reading what goes on the wire -----

/// One datagram, decoded and owned.
#[derive(Debug, Clone)]
enum Wire {
    Control(ControlMessage<'static>),
    Data {
        header: HeaderRepr,
        payload: Vec<u8>,
    },
}

fn decode(bytes: &[u8], secret: Option<&[u8]>) -> Wire {
    match PacketRepr::parse(bytes, &ParseOptions { secret }).expect("well-formed L2TP") {
        PacketRepr::Control(message) => Wire::Control(message.into_owned()),
        PacketRepr::Data { header, payload } => Wire::Data {
            header,
            payload: payload.to_vec(),
        },
    }
}

impl Wire {
    fn control(&self) -> Option<&ControlMessage<'static>> {
        match self {
            Wire::Control(message) => Some(message),
            Wire::Data { .. } => None,
        }
    }

    fn is(&self, kind: MessageType) -> bool {
        self.control()
            .is_some_and(|m| m.message_type() == Some(kind))
    }

    fn is_zlb(&self) -> bool {
        self.control().is_some_and(|m| m.is_zlb())
    }

    fn tunnel_id(&self) -> u16 {
        match self {
            Wire::Control(m) => m.header.tunnel_id,
            Wire::Data { header, .. } => header.tunnel_id,
        }
    }

    fn session_id(&self) -> u16 {
        match self {
            Wire::Control(m) => m.header.session_id,
            Wire::Data { header, .. } => header.session_id,
        }
    }

    fn ns_nr(&self) -> (u16, u16) {
        let header = match self {
            Wire::Control(m) => &m.header,
            Wire::Data { header, .. } => header,
        };
        let seq = header.sequence.expect("Ns/Nr present");
        (seq.ns, seq.nr)
    }
}

/// The Result Code AVP of a StopCCN or CDN.
fn result_of(message: &ControlMessage) -> ResultCode {
    match message.avp(AvpType::ResultCode) {
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
        other => panic!("no Result Code AVP: {other:?}"),
    }
}

fn assigned_session_id(message: &ControlMessage) -> u16 {
    match message.avp(AvpType::AssignedSessionId) {
        Some(AvpValue::AssignedSessionId(id)) => *id,
        other => panic!("no Assigned Session ID: {other:?}"),
    }
}

fn assigned_tunnel_id(message: &ControlMessage) -> u16 {
    match message.avp(AvpType::AssignedTunnelId) {
        Some(AvpValue::AssignedTunnelId(id)) => *id,
        other => panic!("no Assigned Tunnel ID: {other:?}"),
    }
}

/// (attribute type, M, H) of each AVP as it stands in the bytes, without unhiding anything.
fn raw_avps(bytes: &[u8]) -> Vec<(u16, bool, bool)> {
    let header = Header::new_checked(bytes).expect("header");
    let end = header.packet_len();
    let mut at = header.header_len();
    let mut avps = Vec::new();
    while at < end {
        let avp = Avp::new_checked(&bytes[at..end], at).expect("AVP");
        avps.push((avp.attr_type(), avp.mandatory(), avp.hidden()));
        at += usize::from(avp.length());
    }
    avps
}

/// A Cisco (vendor 9) AVP nobody here knows.
fn vendor_avp(m: bool) -> AvpRepr<'static> {
    let value = AvpValue::Vendor {
        vendor_id: 9,
        attr_type: 1,
        value: Cow::Borrowed(&[0xde, 0xad, 0xbe, 0xef]),
    };
    AvpRepr {
        mandatory: m,
        ..AvpRepr::mandatory(value)
    }
}

/// An IETF attribute type RFC 2661 does not assign.
fn unassigned_avp(m: bool) -> AvpRepr<'static> {
    let value = AvpValue::Unknown {
        attr_type: 250,
        value: Cow::Borrowed(&[0, 1]),
    };
    AvpRepr {
        mandatory: m,
        ..AvpRepr::mandatory(value)
    }
}

// ----- two TunnelSets in the simulator -----

/// Returns true for an outgoing datagram that must be lost.
type Loss = Box<dyn FnMut(&Wire) -> bool>;

/// A TunnelSet on one address that remembers, with virtual times, every event, every datagram
/// it sent or received, and can lose chosen outgoing datagrams on purpose.
struct Peer {
    addr: SocketAddrV4,
    set: TunnelSet,
    secret: Option<Vec<u8>>,
    events: Vec<(Instant, u16, Event)>,
    /// (time, bytes, lost on purpose)
    sent: Vec<(Instant, Vec<u8>, bool)>,
    received: Vec<(Instant, Vec<u8>)>,
    lose: Option<Loss>,
    buf: Vec<u8>,
    /// Sends this frame on each session the moment it comes up (as PPP's first
    /// Configure-Request does).
    greet: Option<&'static [u8]>,
}

impl Peer {
    fn new(addr: SocketAddrV4, config: TunnelConfig, seed: u64, accept: bool) -> Peer {
        Peer {
            addr,
            secret: config.secret.clone(),
            set: TunnelSet::new(config, seed, accept),
            events: Vec::new(),
            sent: Vec::new(),
            received: Vec::new(),
            lose: None,
            buf: Vec::new(),
            greet: None,
        }
    }

    fn react(&mut self, now: Instant) {
        while let Some((id, event)) = self.set.poll_event() {
            if let (Some(frame), Event::SessionUp { session_id, .. }) = (self.greet, &event) {
                if let Some(tunnel) = self.set.tunnel_mut(id) {
                    assert!(tunnel.send_data(*session_id, frame));
                }
            }
            self.events.push((now, id, event));
        }
    }

    fn decode(&self, bytes: &[u8]) -> Wire {
        decode(bytes, self.secret.as_deref())
    }

    /// Datagrams this node put on the wire (lost on purpose or not), decoded.
    fn sent(&self) -> Vec<(Instant, Wire)> {
        self.sent
            .iter()
            .map(|(t, b, _)| (*t, self.decode(b)))
            .collect()
    }

    fn sent_kind(&self, kind: MessageType) -> Vec<(Instant, Wire)> {
        self.sent()
            .into_iter()
            .filter(|(_, w)| w.is(kind))
            .collect()
    }

    fn received(&self) -> Vec<(Instant, Wire)> {
        self.received
            .iter()
            .map(|(t, b)| (*t, self.decode(b)))
            .collect()
    }

    fn events_matching(&self, what: impl Fn(&Event) -> bool) -> Vec<(Instant, u16, Event)> {
        self.events
            .iter()
            .filter(|(_, _, e)| what(e))
            .cloned()
            .collect()
    }
}

impl Node for Peer {
    fn handle(&mut self, now: Instant, from: SocketAddrV4, _to: SocketAddrV4, bytes: &[u8]) {
        self.received.push((now, bytes.to_vec()));
        self.set.handle(now, from, bytes);
        self.react(now);
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Datagram> {
        loop {
            let to = self.set.poll_transmit(now, &mut self.buf)?;
            let bytes = self.buf.clone();
            let wire = self.decode(&bytes);
            let lost = self.lose.as_mut().is_some_and(|lose| lose(&wire));
            self.sent.push((now, bytes.clone(), lost));
            if !lost {
                return Some(Datagram {
                    from: self.addr,
                    to,
                    bytes,
                });
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.set.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.set.handle_timeout(now);
        self.react(now);
    }
}

/// A LAC-ish node and an LNS-ish node on perfect 1 ms links.
struct World {
    sim: Simulator<Peer>,
    lac: NodeId,
    lns: NodeId,
}

impl World {
    fn new(lac: TunnelConfig, lns: TunnelConfig) -> World {
        World::with(lac, false, lns, true)
    }

    fn with(lac: TunnelConfig, lac_accepts: bool, lns: TunnelConfig, lns_accepts: bool) -> World {
        let mut sim = Simulator::new(1);
        // A timer that keeps firing at one instant without progress shows up quickly.
        sim.set_max_steps(500_000);
        let lac = sim.add_node(Peer::new(addr(LAC), lac, 11, lac_accepts), &[addr(LAC)]);
        let lns = sim.add_node(Peer::new(addr(LNS), lns, 22, lns_accepts), &[addr(LNS)]);
        World { sim, lac, lns }
    }

    fn node(&self, id: NodeId) -> &Peer {
        self.sim.node(id)
    }

    fn now(&self) -> Instant {
        self.sim.now()
    }

    /// Runs `d` of virtual time; a run that hits the step limit is a livelock.
    fn run_for(&mut self, d: Duration) {
        let deadline = self.sim.now() + d;
        self.run_to(deadline);
    }

    fn run_to(&mut self, deadline: Instant) {
        let outcome = self.sim.run_until(deadline);
        assert!(
            matches!(outcome.stop, Stop::Idle | Stop::Deadline),
            "simulation stopped with {:?} at {} (a timer firing without progress?)",
            outcome.stop,
            self.sim.now()
        );
    }

    /// LAC connects; returns (LAC tunnel ID, LNS tunnel ID) once both report TunnelUp.
    fn up(&mut self) -> (u16, u16) {
        let now = self.now();
        let lac_t = self
            .sim
            .node_mut(self.lac)
            .set
            .connect(now, addr(LNS))
            .expect("tunnel ID");
        self.run_for(ms(500));
        let lac_up = self
            .node(self.lac)
            .events_matching(|e| matches!(e, Event::TunnelUp { .. }));
        let lns_up = self
            .node(self.lns)
            .events_matching(|e| matches!(e, Event::TunnelUp { .. }));
        assert_eq!(
            lac_up.len(),
            1,
            "LAC events: {:?}",
            self.node(self.lac).events
        );
        assert_eq!(
            lns_up.len(),
            1,
            "LNS events: {:?}",
            self.node(self.lns).events
        );
        let lns_t = lns_up[0].1;
        assert_eq!(lac_up[0].1, lac_t);
        assert_eq!(
            lac_up[0].2,
            Event::TunnelUp {
                peer_tunnel_id: lns_t,
                peer_host_name: self.node(self.lns).set.config().host_name.clone(),
            }
        );
        assert_eq!(
            lns_up[0].2,
            Event::TunnelUp {
                peer_tunnel_id: lac_t,
                peer_host_name: self.node(self.lac).set.config().host_name.clone(),
            }
        );
        (lac_t, lns_t)
    }

    /// Gives a command to a tunnel and collects the events it caused.
    fn command<R>(&mut self, who: NodeId, id: u16, f: impl FnOnce(&mut Tunnel, Instant) -> R) -> R {
        let now = self.now();
        let node = self.sim.node_mut(who);
        let result = f(node.set.tunnel_mut(id).expect("tunnel"), now);
        node.react(now);
        result
    }

    fn tunnel(&self, who: NodeId, id: u16) -> &Tunnel {
        self.node(who).set.tunnel(id).expect("tunnel")
    }

    /// The LAC places an incoming call; returns (LAC session ID, LNS session ID).
    fn incoming_call(&mut self, lac_t: u16) -> (u16, u16) {
        let lac_sid = self
            .command(self.lac, lac_t, |t, _| t.open_incoming_call())
            .expect("tunnel established");
        self.run_for(ms(500));
        let up = |node: &Peer, sid: Option<u16>| {
            node.events_matching(|e| matches!(e, Event::SessionUp { .. }))
                .into_iter()
                .filter_map(|(_, _, e)| match e {
                    Event::SessionUp {
                        session_id,
                        peer_session_id,
                        ..
                    } if sid.is_none_or(|s| s == session_id) => Some((session_id, peer_session_id)),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        let lac_up = up(self.node(self.lac), Some(lac_sid));
        assert_eq!(lac_up.len(), 1, "{:?}", self.node(self.lac).events);
        let lns_sid = lac_up[0].1;
        assert!(up(self.node(self.lns), Some(lns_sid)).contains(&(lns_sid, lac_sid)));
        (lac_sid, lns_sid)
    }

    fn lose_both_ways(&mut self) {
        let gone = LinkConditions {
            loss: 1.0,
            ..LinkConditions::default()
        };
        self.sim.set_conditions(self.lac, self.lns, gone);
        self.sim.set_conditions(self.lns, self.lac, gone);
    }
}

// ----- a hand-played peer facing one TunnelSet -----

/// The peer's own Tunnel ID and address in the hand-played tests.
const RAW_TID: u16 = 0x0707;
const RAW: &str = "127.0.0.9:1701";

/// One TunnelSet under test, and a peer that writes raw messages to it, keeping its own Ns/Nr
/// and acknowledging in order whatever the set sends.
struct Raw {
    set: TunnelSet,
    now: Instant,
    from: SocketAddrV4,
    secret: Option<Vec<u8>>,
    ns: u16,
    nr: u16,
    /// Everything the set sent, in order, not yet taken by the test.
    out: Vec<Wire>,
    events: Vec<(u16, Event)>,
}

impl Raw {
    fn new(config: TunnelConfig, accept: bool) -> Raw {
        Raw {
            secret: config.secret.clone(),
            set: TunnelSet::new(config, 5, accept),
            now: Instant::ZERO + secs(1),
            from: addr(RAW),
            ns: 0,
            nr: 0,
            out: Vec::new(),
            events: Vec::new(),
        }
    }

    /// An LNS set with a tunnel up to the raw peer; returns (raw, the set's tunnel ID).
    fn established(config: TunnelConfig) -> (Raw, u16) {
        let mut raw = Raw::new(config, true);
        raw.send(0, 0, MessageType::Sccrq, sccrq_avps(RAW_TID));
        let sccrp = raw.expect(MessageType::Sccrp);
        let tid = assigned_tunnel_id(&sccrp);
        assert_eq!(sccrp.header.tunnel_id, RAW_TID);
        raw.send(tid, 0, MessageType::Scccn, vec![]);
        raw.advance(ms(300));
        let zlb = raw.take();
        assert!(zlb.iter().all(Wire::is_zlb), "{zlb:?}");
        assert!(raw
            .events
            .iter()
            .any(|(_, e)| matches!(e, Event::TunnelUp { .. })));
        assert_eq!(raw.state(tid), Some(TunnelState::Established));
        raw.events.clear();
        (raw, tid)
    }

    fn state(&self, tid: u16) -> Option<TunnelState> {
        self.set.tunnel(tid).map(Tunnel::state)
    }

    /// Sends a control message with the given AVPs after the Message Type AVP.
    fn send(&mut self, tunnel: u16, session: u16, kind: MessageType, avps: Vec<AvpRepr<'static>>) {
        let mut all = vec![AvpRepr::mandatory(AvpValue::MessageType(kind))];
        all.extend(avps);
        self.send_message(tunnel, session, all);
    }

    /// Sends a control message made of exactly these AVPs.
    fn send_message(&mut self, tunnel: u16, session: u16, avps: Vec<AvpRepr<'static>>) {
        let message = ControlMessage {
            header: HeaderRepr::control(tunnel, session, self.ns, self.nr),
            avps,
        };
        if !message.is_zlb() {
            self.ns = self.ns.wrapping_add(1);
        }
        let bytes = message.to_vec(self.secret.as_deref()).expect("emit");
        self.deliver(&bytes);
    }

    fn deliver(&mut self, bytes: &[u8]) {
        self.set.handle(self.now, self.from, bytes);
        self.pump();
    }

    fn pump(&mut self) {
        let mut buf = Vec::new();
        while let Some(to) = self.set.poll_transmit(self.now, &mut buf) {
            assert_eq!(to, self.from, "the set sends to the raw peer only");
            let wire = decode(&buf, self.secret.as_deref());
            if let Wire::Control(m) = &wire {
                if !m.is_zlb() && m.header.sequence.is_some_and(|s| s.ns == self.nr) {
                    self.nr = self.nr.wrapping_add(1);
                }
            }
            self.out.push(wire);
        }
        while let Some(event) = self.set.poll_event() {
            self.events.push(event);
        }
    }

    /// Moves time on by `d`, firing the set's timers as they fall due.
    fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        let mut fired_at_once = 0;
        loop {
            self.pump();
            match self.set.poll_timeout() {
                Some(at) if at <= target => {
                    if at <= self.now {
                        fired_at_once += 1;
                        assert!(fired_at_once < 1000, "timer spins at {}", self.now);
                    } else {
                        fired_at_once = 0;
                        self.now = at;
                    }
                    self.set.handle_timeout(self.now);
                }
                _ => break,
            }
        }
        self.now = target;
        self.pump();
    }

    fn take(&mut self) -> Vec<Wire> {
        std::mem::take(&mut self.out)
    }

    /// The set's next non-ZLB control message, which must be of `kind`.
    fn expect(&mut self, kind: MessageType) -> ControlMessage<'static> {
        self.advance(ms(1));
        let position = self
            .out
            .iter()
            .position(|w| w.control().is_some_and(|m| !m.is_zlb()));
        let Some(position) = position else {
            panic!("expected {kind}, the set sent {:?}", self.out);
        };
        let wire = self.out.remove(position);
        let message = wire.control().expect("control").clone();
        assert_eq!(message.message_type(), Some(kind), "{message:?}");
        message
    }

    /// Nothing but ZLBs went out.
    fn expect_quiet(&mut self) {
        self.advance(ms(300));
        let out = self.take();
        assert!(out.iter().all(Wire::is_zlb), "expected only acks: {out:?}");
    }

    /// A call from the raw peer (as LAC) up to established; returns the set's session ID.
    fn incoming_call(&mut self, tid: u16, raw_sid: u16) -> u16 {
        self.send(tid, 0, MessageType::Icrq, icrq_avps(raw_sid));
        let icrp = self.expect(MessageType::Icrp);
        assert_eq!(icrp.header.session_id, raw_sid);
        let sid = assigned_session_id(&icrp);
        self.send(tid, sid, MessageType::Iccn, iccn_avps());
        self.expect_quiet();
        assert_eq!(
            self.set.tunnel(tid).and_then(|t| t.session_state(sid)),
            Some(SessionState::Established)
        );
        sid
    }
}

fn sccrq_avps(tid: u16) -> Vec<AvpRepr<'static>> {
    vec![
        AvpRepr::mandatory(AvpValue::ProtocolVersion {
            version: 1,
            revision: 0,
        }),
        AvpRepr::mandatory(AvpValue::HostName(Cow::Borrowed(b"raw-peer"))),
        AvpRepr::mandatory(AvpValue::FramingCapabilities(3)),
        AvpRepr::mandatory(AvpValue::AssignedTunnelId(tid)),
        AvpRepr::mandatory(AvpValue::ReceiveWindowSize(4)),
    ]
}

fn icrq_avps(sid: u16) -> Vec<AvpRepr<'static>> {
    vec![
        AvpRepr::mandatory(AvpValue::AssignedSessionId(sid)),
        AvpRepr::mandatory(AvpValue::CallSerialNumber(77)),
        AvpRepr::mandatory(AvpValue::BearerType(0)),
    ]
}

fn iccn_avps() -> Vec<AvpRepr<'static>> {
    vec![
        AvpRepr::mandatory(AvpValue::TxConnectSpeed(10_000_000)),
        AvpRepr::mandatory(AvpValue::FramingType(1)),
    ]
}

fn data_packet(tunnel: u16, session: u16, offset: Option<u16>, frame: &[u8]) -> Vec<u8> {
    let mut header = HeaderRepr::data(tunnel, session);
    header.offset_size = offset;
    let packet = PacketRepr::Data {
        header,
        payload: frame,
    };
    let mut bytes = vec![0; packet.buffer_len()];
    packet.emit(&mut bytes, None).expect("emit");
    bytes
}

/// An LCP Echo-Request as the LAC would forward it.
const FRAME_UP: &[u8] = &[
    0xff, 0x03, 0xc0, 0x21, 0x09, 0x01, 0x00, 0x08, 0x12, 0x34, 0x56, 0x78,
];
/// An IPv4-in-PPP frame with a zero byte in it.
const FRAME_DOWN: &[u8] = &[
    0x00, 0x21, 0x45, 0x00, 0x00, 0x14, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
];

// ===== 1. calls come up, go down, carry WEN and SLI =====

#[test]
fn incoming_call_comes_up_on_both_sides_with_matching_ids() {
    let mut w = World::new(config("lac"), config("lns"));
    let (lac_t, lns_t) = w.up();
    let (lac_sid, lns_sid) = w.incoming_call(lac_t);
    assert_ne!(lac_sid, 0);
    assert_ne!(lns_sid, 0);
    for (who, t, sid, peer) in [
        (w.lac, lac_t, lac_sid, lns_sid),
        (w.lns, lns_t, lns_sid, lac_sid),
    ] {
        let ups = w
            .node(who)
            .events_matching(|e| matches!(e, Event::SessionUp { .. }));
        assert_eq!(
            ups.iter()
                .map(|(_, id, e)| (*id, e.clone()))
                .collect::<Vec<_>>(),
            [(
                t,
                Event::SessionUp {
                    session_id: sid,
                    peer_session_id: peer,
                    direction: CallDirection::Incoming,
                }
            )]
        );
        assert_eq!(
            w.tunnel(who, t).session_state(sid),
            Some(SessionState::Established)
        );
    }
    // ICRQ and ICCN from the LAC, ICRP from the LNS, each to the right IDs.
    let icrq = &w.node(w.lac).sent_kind(MessageType::Icrq)[0].1;
    assert_eq!((icrq.tunnel_id(), icrq.session_id()), (lns_t, 0));
    assert_eq!(assigned_session_id(icrq.control().unwrap()), lac_sid);
    let icrp = &w.node(w.lns).sent_kind(MessageType::Icrp)[0].1;
    assert_eq!((icrp.tunnel_id(), icrp.session_id()), (lac_t, lac_sid));
    assert_eq!(assigned_session_id(icrp.control().unwrap()), lns_sid);
    let iccn = &w.node(w.lac).sent_kind(MessageType::Iccn)[0].1;
    assert_eq!((iccn.tunnel_id(), iccn.session_id()), (lns_t, lns_sid));
}

#[test]
fn a_lac_that_refuses_outgoing_calls_answers_an_ocrq_with_a_cdn() {
    let lac = TunnelConfig {
        refuse_outgoing: true,
        ..config("lac")
    };
    let mut w = World::new(lac, config("lns"));
    let (lac_t, lns_t) = w.up();
    let lns_sid = w
        .command(w.lns, lns_t, |t, _| t.open_outgoing_call("5551234"))
        .expect("established");
    w.run_for(secs(2));
    let lac = w.node(w.lac);
    assert!(lac.sent_kind(MessageType::Ocrp).is_empty());
    let cdn = &lac.sent_kind(MessageType::Cdn)[0].1;
    // §6.7: to the LNS's session, with the reason.
    assert_eq!((cdn.tunnel_id(), cdn.session_id()), (lns_t, lns_sid));
    let result = result_of(cdn.control().unwrap());
    assert_eq!(result.result, 5, "{result:?}");
    assert_eq!(lac.set.tunnel(lac_t).unwrap().session_ids().count(), 0);
    assert!(lac
        .events_matching(|e| matches!(e, Event::SessionUp { .. }))
        .is_empty());
    // The LNS hears the refusal as the call's end; the tunnel stays up.
    let downs = w
        .node(w.lns)
        .events_matching(|e| matches!(e, Event::SessionDown { by_peer: true, .. }));
    assert_eq!(downs.len(), 1, "{:?}", w.node(w.lns).events);
    assert_eq!(w.tunnel(w.lns, lns_t).state(), TunnelState::Established);
}

#[test]
fn outgoing_call_comes_up_on_both_sides_with_matching_ids() {
    let mut w = World::new(config("lac"), config("lns"));
    let (lac_t, lns_t) = w.up();
    let lns_sid = w
        .command(w.lns, lns_t, |t, _| t.open_outgoing_call("5551234"))
        .expect("established");
    w.run_for(ms(500));
    let ocrq = &w.node(w.lns).sent_kind(MessageType::Ocrq)[0].1;
    assert_eq!((ocrq.tunnel_id(), ocrq.session_id()), (lac_t, 0));
    assert_eq!(
        ocrq.control().unwrap().avp(AvpType::CalledNumber),
        Some(&AvpValue::CalledNumber(Cow::Borrowed(b"5551234")))
    );
    let ocrp = &w.node(w.lac).sent_kind(MessageType::Ocrp)[0].1;
    let lac_sid = assigned_session_id(ocrp.control().unwrap());
    assert_eq!((ocrp.tunnel_id(), ocrp.session_id()), (lns_t, lns_sid));
    let occn = &w.node(w.lac).sent_kind(MessageType::Occn)[0].1;
    assert_eq!((occn.tunnel_id(), occn.session_id()), (lns_t, lns_sid));
    for (who, t, sid, peer) in [
        (w.lac, lac_t, lac_sid, lns_sid),
        (w.lns, lns_t, lns_sid, lac_sid),
    ] {
        let ups = w
            .node(who)
            .events_matching(|e| matches!(e, Event::SessionUp { .. }));
        assert_eq!(
            ups.iter()
                .map(|(_, id, e)| (*id, e.clone()))
                .collect::<Vec<_>>(),
            [(
                t,
                Event::SessionUp {
                    session_id: sid,
                    peer_session_id: peer,
                    direction: CallDirection::Outgoing,
                }
            )]
        );
        assert_eq!(
            w.tunnel(who, t).session_state(sid),
            Some(SessionState::Established)
        );
    }
}

/// One side sends CDN; both end the session, the receiver with the sender's Result Code.
fn cdn_ends_the_session_on_both_sides(from_lac: bool) {
    let mut w = World::new(config("lac"), config("lns"));
    let (lac_t, lns_t) = w.up();
    let (lac_sid, lns_sid) = w.incoming_call(lac_t);
    let (_, keep_lns_sid) = w.incoming_call(lac_t);
    let (closer, closer_t, closer_sid, other, other_t, other_sid) = if from_lac {
        (w.lac, lac_t, lac_sid, w.lns, lns_t, lns_sid)
    } else {
        (w.lns, lns_t, lns_sid, w.lac, lac_t, lac_sid)
    };
    let result = ResultCode::error(ResultCode::ADMIN_CALL, 0, "operator hung up");
    w.command(closer, closer_t, |t, _| {
        t.close_session(closer_sid, result.clone())
    });
    w.run_for(ms(500));
    let cdn = &w.node(closer).sent_kind(MessageType::Cdn)[0].1;
    assert_eq!(cdn.session_id(), other_sid);
    assert_eq!(result_of(cdn.control().unwrap()), result);
    let down = |who: NodeId| {
        w.node(who)
            .events_matching(|e| matches!(e, Event::SessionDown { .. }))
    };
    assert_eq!(
        down(closer)
            .iter()
            .map(|(_, _, e)| e.clone())
            .collect::<Vec<_>>(),
        [Event::SessionDown {
            session_id: closer_sid,
            result: result.clone(),
            by_peer: false
        }]
    );
    assert_eq!(
        down(other)
            .iter()
            .map(|(_, id, e)| (*id, e.clone()))
            .collect::<Vec<_>>(),
        [(
            other_t,
            Event::SessionDown {
                session_id: other_sid,
                result,
                by_peer: true
            }
        )]
    );
    assert_eq!(w.tunnel(closer, closer_t).session_state(closer_sid), None);
    assert_eq!(w.tunnel(other, other_t).session_state(other_sid), None);
    // The other call and the tunnel carry on.
    assert_eq!(
        w.tunnel(w.lns, lns_t).session_state(keep_lns_sid),
        Some(SessionState::Established)
    );
    assert_eq!(w.tunnel(w.lac, lac_t).state(), TunnelState::Established);
    assert_eq!(w.tunnel(w.lns, lns_t).state(), TunnelState::Established);
}

#[test]
fn cdn_from_the_lac_ends_the_session_on_both_sides() {
    cdn_ends_the_session_on_both_sides(true);
}

#[test]
fn cdn_from_the_lns_ends_the_session_on_both_sides() {
    cdn_ends_the_session_on_both_sides(false);
}

#[test]
fn crossing_cdns_end_the_session_once_on_each_side() {
    let mut w = World::new(config("lac"), config("lns"));
    let (lac_t, lns_t) = w.up();
    let (lac_sid, lns_sid) = w.incoming_call(lac_t);
    let (keep, _) = w.incoming_call(lac_t);
    let result = ResultCode::new(ResultCode::ADMIN_CALL);
    w.command(w.lac, lac_t, |t, _| {
        t.close_session(lac_sid, result.clone())
    });
    w.command(w.lns, lns_t, |t, _| {
        t.close_session(lns_sid, result.clone())
    });
    w.run_for(secs(2));
    for (who, t, sid) in [(w.lac, lac_t, lac_sid), (w.lns, lns_t, lns_sid)] {
        let downs = w
            .node(who)
            .events_matching(|e| matches!(e, Event::SessionDown { .. }));
        assert_eq!(downs.len(), 1, "{downs:?}");
        assert!(
            matches!(&downs[0].2, Event::SessionDown { session_id, by_peer: false, .. } if *session_id == sid)
        );
        assert_eq!(w.tunnel(who, t).state(), TunnelState::Established);
        // The peer's CDN found nothing to end; no CDN went back for it.
        assert_eq!(w.node(who).sent_kind(MessageType::Cdn).len(), 1);
    }
    assert_eq!(
        w.tunnel(w.lac, lac_t).session_state(keep),
        Some(SessionState::Established)
    );
}

#[test]
fn wen_and_sli_arrive_as_events_with_their_values() {
    let mut w = World::new(config("lac"), config("lns"));
    let (lac_t, lns_t) = w.up();
    let (lac_sid, lns_sid) = w.incoming_call(lac_t);
    w.command(w.lac, lac_t, |t, _| t.send_wan_error(lac_sid, 4242));
    w.command(w.lns, lns_t, |t, _| {
        t.send_link_info(lns_sid, 0xffff_ffff, 0x000a_0000)
    });
    w.run_for(ms(500));
    let wen = w
        .node(w.lns)
        .events_matching(|e| matches!(e, Event::WanError { .. }));
    assert_eq!(
        wen.iter()
            .map(|(_, id, e)| (*id, e.clone()))
            .collect::<Vec<_>>(),
        [(
            lns_t,
            Event::WanError {
                session_id: lns_sid,
                crc_errors: 4242
            }
        )]
    );
    let sli = w
        .node(w.lac)
        .events_matching(|e| matches!(e, Event::LinkInfo { .. }));
    assert_eq!(
        sli.iter()
            .map(|(_, id, e)| (*id, e.clone()))
            .collect::<Vec<_>>(),
        [(
            lac_t,
            Event::LinkInfo {
                session_id: lac_sid,
                send_accm: 0xffff_ffff,
                receive_accm: 0x000a_0000
            }
        )]
    );
    // On the wire: WEN to the LNS's session ID, SLI to the LAC's.
    assert_eq!(
        w.node(w.lac).sent_kind(MessageType::Wen)[0].1.session_id(),
        lns_sid
    );
    assert_eq!(
        w.node(w.lns).sent_kind(MessageType::Sli)[0].1.session_id(),
        lac_sid
    );
}

#[test]
fn wen_and_sli_for_an_unknown_session_are_not_reported() {
    let (mut raw, tid) = Raw::established(config("lns"));
    let sid = raw.incoming_call(tid, 0x51);
    raw.events.clear();
    let errors = AvpValue::CallErrors {
        reserved: 0,
        crc_errors: 1,
        framing_errors: 0,
        hardware_overruns: 0,
        buffer_overruns: 0,
        timeout_errors: 0,
        alignment_errors: 0,
    };
    let accm = AvpValue::Accm {
        reserved: 0,
        send_accm: 1,
        receive_accm: 2,
    };
    let bogus = sid.wrapping_add(1000);
    raw.send(
        tid,
        bogus,
        MessageType::Wen,
        vec![AvpRepr::mandatory(errors.clone())],
    );
    raw.send(tid, bogus, MessageType::Sli, vec![AvpRepr::mandatory(accm)]);
    raw.expect_quiet();
    assert!(
        raw.events.is_empty(),
        "events for session {bogus} that does not exist: {:?}",
        raw.events
    );
    let unexpected = raw.set.tunnel(tid).unwrap().stats().unexpected;
    assert_eq!(unexpected, 2);
    // The real session still gets its WEN.
    raw.send(tid, sid, MessageType::Wen, vec![AvpRepr::mandatory(errors)]);
    raw.expect_quiet();
    assert_eq!(
        raw.events,
        [(
            tid,
            Event::WanError {
                session_id: sid,
                crc_errors: 1
            }
        )]
    );
}

// ===== 2. session IDs =====

#[test]
fn a_thousand_calls_in_one_tunnel_get_distinct_nonzero_session_ids() {
    let mut w = World::new(config("lac"), config("lns"));
    let (lac_t, lns_t) = w.up();
    let opened: Vec<u16> = w.command(w.lac, lac_t, |t, _| {
        (0..1000)
            .map(|_| t.open_incoming_call().expect("up"))
            .collect()
    });
    let distinct: BTreeSet<u16> = opened.iter().copied().collect();
    assert_eq!(distinct.len(), 1000, "LAC session IDs repeat");
    assert!(!distinct.contains(&0));
    w.run_for(secs(30));
    let pairs = |who: NodeId| -> BTreeSet<(u16, u16)> {
        w.node(who)
            .events
            .iter()
            .filter_map(|(_, _, e)| match e {
                Event::SessionUp {
                    session_id,
                    peer_session_id,
                    ..
                } => Some((*session_id, *peer_session_id)),
                _ => None,
            })
            .collect()
    };
    let lac_pairs = pairs(w.lac);
    let lns_pairs = pairs(w.lns);
    assert_eq!(lac_pairs.len(), 1000);
    assert_eq!(lns_pairs.len(), 1000);
    let lns_ids: BTreeSet<u16> = lns_pairs.iter().map(|(s, _)| *s).collect();
    assert_eq!(lns_ids.len(), 1000, "LNS session IDs repeat");
    assert!(!lns_ids.contains(&0));
    assert_eq!(
        lac_pairs.iter().map(|(s, _)| *s).collect::<BTreeSet<_>>(),
        distinct
    );
    let mirrored: BTreeSet<(u16, u16)> = lns_pairs.iter().map(|(a, b)| (*b, *a)).collect();
    assert_eq!(
        mirrored, lac_pairs,
        "each side's peer IDs are the other's IDs"
    );
    assert_eq!(w.tunnel(w.lac, lac_t).session_ids().count(), 1000);
    assert_eq!(w.tunnel(w.lns, lns_t).session_ids().count(), 1000);
}

// ===== 3. data messages =====

#[test]
fn ppp_frames_flow_both_ways_byte_for_byte() {
    let mut w = World::new(config("lac"), config("lns"));
    let (lac_t, lns_t) = w.up();
    let (lac_sid, lns_sid) = w.incoming_call(lac_t);
    assert!(w.command(w.lac, lac_t, |t, _| t.send_data(lac_sid, FRAME_UP)));
    assert!(w.command(w.lns, lns_t, |t, _| t.send_data(lns_sid, FRAME_DOWN)));
    w.run_for(ms(100));
    let data = |who: NodeId| -> Vec<(u16, Event)> {
        w.node(who)
            .events_matching(|e| matches!(e, Event::Data { .. }))
            .into_iter()
            .map(|(_, id, e)| (id, e))
            .collect()
    };
    assert_eq!(
        data(w.lns),
        [(
            lns_t,
            Event::Data {
                session_id: lns_sid,
                frame: FRAME_UP.to_vec()
            }
        )]
    );
    assert_eq!(
        data(w.lac),
        [(
            lac_t,
            Event::Data {
                session_id: lac_sid,
                frame: FRAME_DOWN.to_vec()
            }
        )]
    );
    let on_wire: Vec<_> = w
        .node(w.lns)
        .received()
        .into_iter()
        .filter_map(|(_, m)| match m {
            Wire::Data { header, payload } => Some((header.session_id, payload)),
            Wire::Control(_) => None,
        })
        .collect();
    assert_eq!(on_wire, [(lns_sid, FRAME_UP.to_vec())]);
    // Without sequencing: L set, S clear, addressed with the peer's IDs.
    let sent: Vec<_> = w
        .node(w.lac)
        .sent
        .iter()
        .map(|(_, b, _)| b.clone())
        .collect();
    let up = sent
        .iter()
        .find(|b| b[0] & 0x80 == 0)
        .expect("a data message");
    assert_eq!(&up[..2], &[0x40, 0x02]);
    assert_eq!(
        &up[4..8],
        &[
            (lns_t >> 8) as u8,
            lns_t as u8,
            (lns_sid >> 8) as u8,
            lns_sid as u8
        ]
    );
    assert_eq!(&up[8..], FRAME_UP);
    let lac_stats = w.tunnel(w.lac, lac_t).stats();
    assert_eq!((lac_stats.data_sent, lac_stats.data_received), (1, 1));
}

/// Ten calls at once through the RFC's default window of 4: ICCNs wait for the window, and
/// each session's first frame waits for its ICCN, or the LNS would drop it.
#[test]
fn a_sessions_first_frame_follows_its_iccn_when_the_window_is_full() {
    let mut w = World::new(config("lac"), config("lns"));
    let (lac_t, lns_t) = w.up();
    w.sim.node_mut(w.lac).greet = Some(FRAME_UP);
    w.command(w.lac, lac_t, |t, _| {
        for _ in 0..10 {
            t.open_incoming_call().expect("up");
        }
    });
    w.run_for(secs(5));
    let lns = w.node(w.lns);
    let delivered = lns.events_matching(|e| matches!(e, Event::Data { .. }));
    assert_eq!(
        delivered.len(),
        10,
        "one frame per session: {:?}",
        lns.events
    );
    let lac = w.node(w.lac);
    let held = lac
        .sent()
        .iter()
        .filter(|(_, wire)| wire.control().is_none())
        .count();
    assert_eq!(held, 10);
    assert_eq!(lac.sent_kind(MessageType::Iccn).len(), 10);
    let dropped = w.tunnel(w.lns, lns_t).stats().data_dropped;
    assert_eq!(dropped, 0, "data came before its ICCN");
}

/// A tunnel and one incoming call whose LAC asked for sequenced data (Sequencing Required):
/// the world, (LAC, LNS) Tunnel IDs, (LAC, LNS) Session IDs.
fn sequenced_call() -> (World, (u16, u16), (u16, u16)) {
    let lac_config = TunnelConfig {
        sequencing_required: true,
        ..config("lac")
    };
    let mut w = World::new(lac_config, config("lns"));
    let tunnels = w.up();
    let sessions = w.incoming_call(tunnels.0);
    (w, tunnels, sessions)
}

/// §5.4: with sequencing, Ns shows what the data channel lost and reordered; nothing is
/// retransmitted, a gap is counted as it is skipped, and a message older than one already
/// delivered is counted and dropped.
#[test]
fn sequenced_data_counts_loss_and_reordering_per_session() {
    let (mut w, (lac_t, lns_t), (lac_sid, lns_sid)) = sequenced_call();
    // The LNS's second and third data messages (Ns 1, 2) are lost on the way.
    let mut data = 0;
    w.sim.node_mut(w.lns).lose = Some(Box::new(move |wire: &Wire| {
        if wire.control().is_some() {
            return false;
        }
        data += 1;
        data == 2 || data == 3
    }));
    for _ in 0..5 {
        assert!(w.command(w.lns, lns_t, |t, _| t.send_data(lns_sid, FRAME_DOWN)));
        w.run_for(ms(10));
    }
    let frames = |w: &World| {
        w.node(w.lac)
            .events_matching(|e| matches!(e, Event::Data { .. }))
            .len()
    };
    assert_eq!(frames(&w), 3);
    let seq = w.tunnel(w.lac, lac_t).data_sequence(lac_sid).unwrap();
    assert_eq!((seq.sequenced, seq.lost, seq.reordered), (3, 2, 0));
    // One of them comes late after all: counted as reordered and dropped.
    let late = w
        .node(w.lns)
        .sent
        .iter()
        .filter(|(_, b, _)| b[0] & 0x80 == 0)
        .nth(1)
        .map(|(_, b, _)| b.clone())
        .unwrap();
    let now = w.now();
    w.sim.node_mut(w.lac).set.handle(now, addr(LNS), &late);
    w.run_for(ms(10));
    assert_eq!(frames(&w), 3, "the late one is not delivered");
    let seq = w.tunnel(w.lac, lac_t).data_sequence(lac_sid).unwrap();
    assert_eq!((seq.sequenced, seq.lost, seq.reordered), (4, 2, 1));
    let stats = w.tunnel(w.lac, lac_t).stats();
    assert_eq!((stats.data_lost, stats.data_reordered), (2, 1));
}

#[test]
fn sequencing_required_puts_ns_nr_in_data_headers() {
    let (mut w, (lac_t, lns_t), (lac_sid, lns_sid)) = sequenced_call();
    let iccn = &w.node(w.lac).sent_kind(MessageType::Iccn)[0].1;
    assert_eq!(
        iccn.control().unwrap().avp(AvpType::SequencingRequired),
        Some(&AvpValue::SequencingRequired)
    );
    for _ in 0..3 {
        assert!(w.command(w.lac, lac_t, |t, _| t.send_data(lac_sid, FRAME_UP)));
        w.run_for(ms(10));
        assert!(w.command(w.lns, lns_t, |t, _| t.send_data(lns_sid, FRAME_DOWN)));
        w.run_for(ms(10));
    }
    let data = |who: NodeId| -> Vec<Vec<u8>> {
        w.node(who)
            .sent
            .iter()
            .filter(|(_, b, _)| b[0] & 0x80 == 0)
            .map(|(_, b, _)| b.clone())
            .collect()
    };
    let be = |v: u16| [(v >> 8) as u8, v as u8];
    // LAC → LNS: Ns 0, 1, 2; Nr one past the LNS's last Ns heard.
    for (i, bytes) in data(w.lac).iter().enumerate() {
        let i = i as u16;
        assert_eq!(&bytes[..2], &[0x48, 0x02], "L and S set, version 2");
        assert_eq!(
            usize::from(u16::from_be_bytes([bytes[2], bytes[3]])),
            bytes.len()
        );
        assert_eq!(&bytes[4..6], &be(lns_t));
        assert_eq!(&bytes[6..8], &be(lns_sid));
        assert_eq!(&bytes[8..10], &be(i), "Ns");
        assert_eq!(&bytes[10..12], &be(i), "Nr");
        assert_eq!(&bytes[12..], FRAME_UP);
    }
    // LNS → LAC: sequenced as well, because the ICCN asked for it.
    for (i, bytes) in data(w.lns).iter().enumerate() {
        let i = i as u16;
        assert_eq!(&bytes[..2], &[0x48, 0x02]);
        assert_eq!(&bytes[4..6], &be(lac_t));
        assert_eq!(&bytes[6..8], &be(lac_sid));
        assert_eq!(&bytes[8..10], &be(i), "Ns");
        assert_eq!(&bytes[10..12], &be(i + 1), "Nr");
        assert_eq!(&bytes[12..], FRAME_DOWN);
    }
    assert_eq!(data(w.lac).len(), 3);
    assert_eq!(data(w.lns).len(), 3);
    // Delivered payloads stop at the frame: the Ns/Nr are header, not data.
    let frames = w
        .node(w.lns)
        .events_matching(|e| matches!(e, Event::Data { .. }));
    assert!(frames.iter().all(|(_, _, e)| *e
        == Event::Data {
            session_id: lns_sid,
            frame: FRAME_UP.to_vec()
        }));
}

#[test]
fn data_for_unknown_or_unestablished_sessions_is_dropped_and_counted() {
    let (mut raw, tid) = Raw::established(config("lns"));
    // A session the set never heard of.
    raw.deliver(&data_packet(tid, 0x4242, None, FRAME_UP));
    assert_eq!(raw.set.tunnel(tid).unwrap().stats().data_dropped, 1);
    // A session answered with ICRP but not yet connected by ICCN.
    raw.send(tid, 0, MessageType::Icrq, icrq_avps(0x77));
    let icrp = raw.expect(MessageType::Icrp);
    let sid = assigned_session_id(&icrp);
    assert_eq!(
        raw.set.tunnel(tid).unwrap().session_state(sid),
        Some(SessionState::WaitConnect)
    );
    raw.deliver(&data_packet(tid, sid, None, FRAME_UP));
    assert_eq!(raw.set.tunnel(tid).unwrap().stats().data_dropped, 2);
    // A tunnel the set never heard of: counted by the set.
    let before = raw.set.stats().no_tunnel;
    raw.deliver(&data_packet(tid.wrapping_add(1), sid, None, FRAME_UP));
    assert_eq!(raw.set.stats().no_tunnel, before + 1);
    assert!(
        !raw.events
            .iter()
            .any(|(_, e)| matches!(e, Event::Data { .. })),
        "{:?}",
        raw.events
    );
    // Once connected, the same frame is delivered.
    raw.send(tid, sid, MessageType::Iccn, iccn_avps());
    raw.expect_quiet();
    raw.deliver(&data_packet(tid, sid, None, FRAME_UP));
    let stats = raw.set.tunnel(tid).unwrap().stats();
    assert_eq!((stats.data_dropped, stats.data_received), (2, 1));
    assert_eq!(
        raw.events.last(),
        Some(&(
            tid,
            Event::Data {
                session_id: sid,
                frame: FRAME_UP.to_vec()
            }
        ))
    );
}

#[test]
fn data_with_an_offset_pad_is_delivered_without_the_pad() {
    let (mut raw, tid) = Raw::established(config("lns"));
    let sid = raw.incoming_call(tid, 0x33);
    let mut bytes = data_packet(tid, sid, Some(5), FRAME_UP);
    // O set; a non-zero pad so that leaking any of it shows.
    assert_eq!(bytes[0], 0x42);
    let pad = 10..15;
    bytes[pad].fill(0xee);
    raw.deliver(&bytes);
    // And with sequence numbers and a pad together.
    let mut header = HeaderRepr::data(tid, sid);
    header.offset_size = Some(2);
    header.sequence = Some(l2tp::wire::header::Sequence { ns: 0, nr: 0 });
    let packet = PacketRepr::Data {
        header,
        payload: FRAME_DOWN,
    };
    let mut bytes = vec![0; packet.buffer_len()];
    packet.emit(&mut bytes, None).unwrap();
    bytes[14..16].fill(0xee);
    raw.deliver(&bytes);
    let frames: Vec<_> = raw
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Data { .. }))
        .cloned()
        .collect();
    assert_eq!(
        frames,
        [
            (
                tid,
                Event::Data {
                    session_id: sid,
                    frame: FRAME_UP.to_vec()
                }
            ),
            (
                tid,
                Event::Data {
                    session_id: sid,
                    frame: FRAME_DOWN.to_vec()
                }
            )
        ]
    );
}

// ===== 4. unknown AVPs with and without the M bit =====

fn assert_error(result: &ResultCode, code: u16, error: u16, names: &[&str]) {
    assert_eq!(result.result, code, "{result}");
    assert_eq!(result.error, Some(error), "{result}");
    let message = result.message.as_deref().unwrap_or_default();
    for name in names {
        assert!(message.contains(name), "{result} does not name {name}");
    }
}

#[test]
fn unknown_mandatory_vendor_avp_in_sccrq_stops_the_tunnel_with_error_8() {
    let mut raw = Raw::new(config("lns"), true);
    let mut avps = sccrq_avps(RAW_TID);
    avps.push(vendor_avp(true));
    raw.send(0, 0, MessageType::Sccrq, avps);
    let stop = raw.expect(MessageType::StopCcn);
    // Addressed to the tunnel the SCCRQ assigned, or the peer cannot match it.
    assert_eq!(stop.header.tunnel_id, RAW_TID);
    assert_error(&result_of(&stop), 2, 8, &["vendor 9", "type 1"]);
    let tid = assigned_tunnel_id(&stop);
    assert_eq!(raw.state(tid), Some(TunnelState::Closing));
    assert!(!raw
        .events
        .iter()
        .any(|(_, e)| matches!(e, Event::TunnelUp { .. })));
}

#[test]
fn unknown_mandatory_ietf_avp_in_hello_stops_the_tunnel_with_error_8() {
    let (mut raw, tid) = Raw::established(config("lns"));
    let sid = raw.incoming_call(tid, 0x10);
    raw.send(tid, 0, MessageType::Hello, vec![unassigned_avp(true)]);
    let stop = raw.expect(MessageType::StopCcn);
    assert_eq!(stop.header.tunnel_id, RAW_TID);
    assert_error(&result_of(&stop), 2, 8, &["type 250"]);
    assert_eq!(raw.state(tid), Some(TunnelState::Closing));
    let downs: Vec<_> = raw
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::TunnelDown { .. } | Event::SessionDown { .. }))
        .map(|(_, e)| e.clone())
        .collect();
    assert!(matches!(
        &downs[..],
        [
            Event::SessionDown { session_id, by_peer: false, .. },
            Event::TunnelDown { result, by_peer: false },
        ] if *session_id == sid && result.error == Some(8)
    ));
}

#[test]
fn unknown_mandatory_message_type_stops_the_tunnel_without_m_it_is_ignored() {
    let (mut raw, tid) = Raw::established(config("lns"));
    // Message type 99 without M: acknowledged and otherwise ignored.
    let ignored = AvpRepr {
        mandatory: false,
        ..AvpRepr::mandatory(AvpValue::MessageType(MessageType::Unknown(99)))
    };
    raw.send_message(tid, 0, vec![ignored]);
    raw.expect_quiet();
    assert_eq!(raw.state(tid), Some(TunnelState::Established));
    // With M: the tunnel is cleared (§4.4.1).
    raw.send(tid, 0, MessageType::Unknown(99), vec![]);
    let stop = raw.expect(MessageType::StopCcn);
    assert_error(&result_of(&stop), 2, 8, &["99"]);
}

#[test]
fn unknown_mandatory_avp_in_icrq_refuses_the_call_and_keeps_the_tunnel() {
    let (mut raw, tid) = Raw::established(config("lns"));
    let mut avps = icrq_avps(0x21);
    avps.push(vendor_avp(true));
    raw.send(tid, 0, MessageType::Icrq, avps);
    let cdn = raw.expect(MessageType::Cdn);
    assert_eq!(cdn.header.tunnel_id, RAW_TID);
    assert_eq!(cdn.header.session_id, 0x21);
    assert_error(&result_of(&cdn), 2, 8, &["vendor 9", "type 1"]);
    // §5.3: 0 is never an Assigned Session ID.
    assert_ne!(assigned_session_id(&cdn), 0);
    raw.expect_quiet();
    assert_eq!(raw.state(tid), Some(TunnelState::Established));
    assert_eq!(raw.set.tunnel(tid).unwrap().session_ids().count(), 0);
    // The next, well-formed call goes through.
    raw.incoming_call(tid, 0x22);
}

#[test]
fn unknown_mandatory_avp_in_iccn_disconnects_the_session_and_keeps_the_tunnel() {
    let (mut raw, tid) = Raw::established(config("lns"));
    let other = raw.incoming_call(tid, 0x31);
    raw.send(tid, 0, MessageType::Icrq, icrq_avps(0x32));
    let sid = assigned_session_id(&raw.expect(MessageType::Icrp));
    let mut avps = iccn_avps();
    avps.push(unassigned_avp(true));
    raw.send(tid, sid, MessageType::Iccn, avps);
    let cdn = raw.expect(MessageType::Cdn);
    assert_eq!(cdn.header.session_id, 0x32);
    assert_eq!(assigned_session_id(&cdn), sid);
    assert_error(&result_of(&cdn), 2, 8, &["type 250"]);
    assert!(raw.events.iter().any(|(_, e)| matches!(
        e,
        Event::SessionDown { session_id, by_peer: false, result }
            if *session_id == sid && result.error == Some(8)
    )));
    assert!(!raw.events.iter().any(|(_, e)| matches!(
        e,
        Event::SessionUp { session_id, .. } if *session_id == sid
    )));
    raw.expect_quiet();
    assert_eq!(raw.state(tid), Some(TunnelState::Established));
    let tunnel = raw.set.tunnel(tid).unwrap();
    assert_eq!(tunnel.session_state(other), Some(SessionState::Established));
    assert_eq!(tunnel.session_state(sid), None);
}

#[test]
fn unknown_avps_without_the_m_bit_are_ignored() {
    let mut raw = Raw::new(config("lns"), true);
    let mut avps = sccrq_avps(RAW_TID);
    avps.push(vendor_avp(false));
    avps.push(unassigned_avp(false));
    raw.send(0, 0, MessageType::Sccrq, avps);
    let tid = assigned_tunnel_id(&raw.expect(MessageType::Sccrp));
    raw.send(tid, 0, MessageType::Scccn, vec![vendor_avp(false)]);
    raw.expect_quiet();
    assert_eq!(raw.state(tid), Some(TunnelState::Established));
    raw.send(
        tid,
        0,
        MessageType::Hello,
        vec![unassigned_avp(false), vendor_avp(false)],
    );
    raw.expect_quiet();
    let mut avps = icrq_avps(0x41);
    avps.insert(1, vendor_avp(false));
    raw.send(tid, 0, MessageType::Icrq, avps);
    let sid = assigned_session_id(&raw.expect(MessageType::Icrp));
    let mut avps = iccn_avps();
    avps.push(unassigned_avp(false));
    raw.send(tid, sid, MessageType::Iccn, avps);
    raw.expect_quiet();
    assert_eq!(
        raw.set.tunnel(tid).unwrap().session_state(sid),
        Some(SessionState::Established)
    );
    assert_eq!(raw.state(tid), Some(TunnelState::Established));
}

#[test]
fn a_bad_cdn_for_a_session_already_cleared_does_not_stop_the_tunnel() {
    let (mut raw, tid) = Raw::established(config("lns"));
    let keep = raw.incoming_call(tid, 0x61);
    let gone = raw.incoming_call(tid, 0x62);
    raw.set
        .tunnel_mut(tid)
        .unwrap()
        .close_session(gone, ResultCode::new(ResultCode::ADMIN_CALL));
    raw.pump();
    let cdn = raw.expect(MessageType::Cdn);
    assert_eq!(cdn.header.session_id, 0x62);
    // The peer's own CDN crosses ours, with a vendor AVP marked mandatory.
    let mut avps = vec![
        AvpRepr::mandatory(AvpValue::ResultCode {
            result: 1,
            error: None,
            message: None,
        }),
        AvpRepr::mandatory(AvpValue::AssignedSessionId(0x62)),
    ];
    avps.push(vendor_avp(true));
    raw.send(tid, gone, MessageType::Cdn, avps);
    raw.expect_quiet();
    assert_eq!(raw.state(tid), Some(TunnelState::Established));
    assert_eq!(
        raw.set.tunnel(tid).unwrap().session_state(keep),
        Some(SessionState::Established),
        "a message about a session that is gone must not take the others with it"
    );
}

// ===== 5. missing mandatory AVPs =====

#[test]
fn sccrq_without_host_name_is_answered_with_stopccn_error_6() {
    let mut raw = Raw::new(config("lns"), true);
    let avps = sccrq_avps(RAW_TID)
        .into_iter()
        .filter(|a| a.value.avp_type() != Some(AvpType::HostName))
        .collect();
    raw.send(0, 0, MessageType::Sccrq, avps);
    let stop = raw.expect(MessageType::StopCcn);
    assert_eq!(stop.header.tunnel_id, RAW_TID);
    assert_error(&result_of(&stop), 2, 6, &["SCCRQ", "Host Name"]);
    assert!(raw.events.iter().any(|(_, e)| matches!(
        e,
        Event::TunnelDown { by_peer: false, result } if result.error == Some(6)
    )));
}

#[test]
fn sccrq_without_assigned_tunnel_id_is_answered_with_stopccn_to_tunnel_0() {
    for assigned in [None, Some(0)] {
        let mut raw = Raw::new(config("lns"), true);
        let avps = sccrq_avps(RAW_TID)
            .into_iter()
            .filter_map(|a| match a.value {
                AvpValue::AssignedTunnelId(_) => {
                    assigned.map(|id| AvpRepr::mandatory(AvpValue::AssignedTunnelId(id)))
                }
                _ => Some(a),
            })
            .collect();
        raw.send(0, 0, MessageType::Sccrq, avps);
        // §3.1: an ID not yet assigned by the peer is sent as 0; silence would leave the
        // initiator retransmitting for a full cycle.
        let stop = raw.expect(MessageType::StopCcn);
        assert_eq!(stop.header.tunnel_id, 0, "{assigned:?}");
        assert_eq!(
            result_of(&stop).result,
            ResultCode::GENERAL_ERROR,
            "{assigned:?}"
        );
        assert!(
            raw.set.stats().refused == 0,
            "refused by the tunnel, not the set"
        );
        raw.advance(cycle() + secs(1));
        assert!(raw.set.is_empty(), "{assigned:?}");
    }
}

#[test]
fn icrq_without_call_serial_number_is_answered_with_cdn_error_6() {
    let (mut raw, tid) = Raw::established(config("lns"));
    let avps = icrq_avps(0x55)
        .into_iter()
        .filter(|a| a.value.avp_type() != Some(AvpType::CallSerialNumber))
        .collect();
    raw.send(tid, 0, MessageType::Icrq, avps);
    let cdn = raw.expect(MessageType::Cdn);
    assert_eq!(cdn.header.session_id, 0x55);
    assert_error(&result_of(&cdn), 2, 6, &["ICRQ", "Call Serial Number"]);
    raw.expect_quiet();
    assert_eq!(raw.state(tid), Some(TunnelState::Established));
    assert_eq!(raw.set.tunnel(tid).unwrap().session_ids().count(), 0);
}

// ===== 6. tunnel authentication and hidden AVPs =====

fn downs(node: &Peer) -> Vec<ResultCode> {
    node.events
        .iter()
        .filter_map(|(_, _, e)| match e {
            Event::TunnelDown { result, .. } => Some(result.clone()),
            _ => None,
        })
        .collect()
}

fn never_up(node: &Peer) -> bool {
    !node
        .events
        .iter()
        .any(|(_, _, e)| matches!(e, Event::TunnelUp { .. }))
}

#[test]
fn same_secret_both_ways_brings_the_tunnel_up_with_challenges_answered() {
    let mut w = World::new(
        with_secret("lac", SECRET, false),
        with_secret("lns", SECRET, false),
    );
    let (lac_t, lns_t) = w.up();
    let sccrq = w.node(w.lac).sent_kind(MessageType::Sccrq)[0].1.clone();
    let sccrp = w.node(w.lns).sent_kind(MessageType::Sccrp)[0].1.clone();
    let scccn = w.node(w.lac).sent_kind(MessageType::Scccn)[0].1.clone();
    let challenge = |w: &Wire| match w.control().unwrap().avp(AvpType::Challenge) {
        Some(AvpValue::Challenge(c)) => c.to_vec(),
        other => panic!("no Challenge: {other:?}"),
    };
    let response = |w: &Wire| match w.control().unwrap().avp(AvpType::ChallengeResponse) {
        Some(AvpValue::ChallengeResponse(r)) => *r,
        other => panic!("no Challenge Response: {other:?}"),
    };
    use l2tp::conn::tunnel::challenge_response;
    assert_eq!(
        response(&sccrp),
        challenge_response(MessageType::Sccrp, SECRET, &challenge(&sccrq))
    );
    assert_eq!(
        response(&scccn),
        challenge_response(MessageType::Scccn, SECRET, &challenge(&sccrp))
    );
    assert_eq!(w.tunnel(w.lac, lac_t).state(), TunnelState::Established);
    assert_eq!(w.tunnel(w.lns, lns_t).state(), TunnelState::Established);
}

/// Runs a tunnel attempt to its end; both sides must go down not authorized, never up.
fn assert_not_authorized(lac: TunnelConfig, lns: TunnelConfig) {
    let mut w = World::new(lac, lns);
    let now = w.now();
    w.sim.node_mut(w.lac).set.connect(now, addr(LNS));
    w.run_for(secs(60));
    for (who, name) in [(w.lac, "LAC"), (w.lns, "LNS")] {
        let node = w.node(who);
        assert!(never_up(node), "{name} came up: {:?}", node.events);
        let downs = downs(node);
        assert_eq!(downs.len(), 1, "{name}: {:?}", node.events);
        assert_eq!(
            downs[0].result,
            ResultCode::NOT_AUTHORIZED,
            "{name}: {}",
            downs[0]
        );
        assert!(node.set.is_empty(), "{name} kept the tunnel");
    }
    let stops: Vec<_> = [w.lac, w.lns]
        .into_iter()
        .flat_map(|who| w.node(who).sent_kind(MessageType::StopCcn))
        .collect();
    assert!(!stops.is_empty());
    assert!(stops
        .iter()
        .all(|(_, s)| result_of(s.control().unwrap()).result == ResultCode::NOT_AUTHORIZED));
}

#[test]
fn wrong_secret_takes_both_sides_down_not_authorized() {
    assert_not_authorized(
        with_secret("lac", b"one secret", false),
        with_secret("lns", b"another secret", false),
    );
}

#[test]
fn secret_on_the_lns_only_is_not_authorized() {
    assert_not_authorized(config("lac"), with_secret("lns", SECRET, false));
}

#[test]
fn secret_on_the_lac_only_is_not_authorized() {
    assert_not_authorized(with_secret("lac", SECRET, false), config("lns"));
}

#[test]
fn hide_avps_hides_assigned_session_id_behind_a_random_vector() {
    let mut w = World::new(
        with_secret("lac", SECRET, true),
        with_secret("lns", SECRET, true),
    );
    let (lac_t, lns_t) = w.up();
    let (lac_sid, lns_sid) = w.incoming_call(lac_t);
    w.command(w.lns, lns_t, |t, _| {
        t.close_session(lns_sid, ResultCode::new(ResultCode::ADMIN_CALL))
    });
    w.run_for(ms(500));
    let raw_of = |who: NodeId, kind: MessageType| -> Vec<u8> {
        let node = w.node(who);
        node.sent
            .iter()
            .find(|(_, b, _)| node.decode(b).is(kind))
            .map(|(_, b, _)| b.clone())
            .expect("sent")
    };
    for (who, kind, sid) in [
        (w.lac, MessageType::Icrq, lac_sid),
        (w.lns, MessageType::Icrp, lns_sid),
        (w.lns, MessageType::Cdn, lns_sid),
    ] {
        let bytes = raw_of(who, kind);
        let avps = raw_avps(&bytes);
        let rv = avps.iter().position(|a| a.0 == 36).expect("Random Vector");
        let id = avps
            .iter()
            .position(|a| a.0 == 14)
            .expect("Assigned Session ID");
        assert!(
            rv < id,
            "{kind}: Random Vector after the hidden AVP: {avps:?}"
        );
        assert!(!avps[rv].2, "{kind}: the Random Vector is never hidden");
        assert_eq!(
            avps[id],
            (14, true, true),
            "{kind}: Assigned Session ID M and H"
        );
        // The first hidden AVP comes after the Random Vector.
        let first_hidden = avps.iter().position(|a| a.2).unwrap();
        assert!(rv < first_hidden);
        // Result Code and Message Type stay clear (§4.4.1, §4.4.2).
        assert!(avps.iter().filter(|a| a.0 <= 1).all(|a| !a.2));
        // Without the secret the value is ciphertext; with it, the session ID.
        let Wire::Control(blind) = decode(&bytes, None) else {
            panic!()
        };
        assert!(matches!(
            blind.avp(AvpType::AssignedSessionId),
            Some(AvpValue::HiddenRaw { attr_type: 14, .. })
        ));
        let Wire::Control(seen) = decode(&bytes, Some(SECRET)) else {
            panic!()
        };
        assert_eq!(assigned_session_id(&seen), sid, "{kind}");
    }
    // Hiding changed nothing about how the call went.
    let lac_down = w
        .node(w.lac)
        .events_matching(|e| matches!(e, Event::SessionDown { .. }));
    assert!(matches!(
        &lac_down[..],
        [(_, _, Event::SessionDown { session_id, by_peer: true, .. })] if *session_id == lac_sid
    ));
}

// ===== 7. Tie Breaker =====

/// Both nodes accept SCCRQs and dial each other at the same instant.
fn collide(a: Option<[u8; 8]>, b: Option<[u8; 8]>) -> (World, u16, u16) {
    let ca = TunnelConfig {
        tie_breaker: a,
        ..config("a")
    };
    let cb = TunnelConfig {
        tie_breaker: b,
        ..config("b")
    };
    let mut w = World::with(ca, true, cb, true);
    let now = w.now();
    let a_t = w.sim.node_mut(w.lac).set.connect(now, addr(LNS)).unwrap();
    let b_t = w.sim.node_mut(w.lns).set.connect(now, addr(LAC)).unwrap();
    w.run_for(secs(5));
    (w, a_t, b_t)
}

fn ups(node: &Peer) -> Vec<u16> {
    node.events
        .iter()
        .filter(|(_, _, e)| matches!(e, Event::TunnelUp { .. }))
        .map(|(_, id, _)| *id)
        .collect()
}

/// `winner` initiated the one tunnel left; `loser` discarded its own silently.
fn assert_single_tunnel(w: &World, winner: NodeId, winner_t: u16, loser: NodeId, loser_t: u16) {
    assert_eq!(
        ups(w.node(winner)),
        [winner_t],
        "{:?}",
        w.node(winner).events
    );
    assert_eq!(
        w.node(winner).set.tunnel_ids().collect::<Vec<_>>(),
        [winner_t]
    );
    let kept = w.node(winner).set.tunnel(winner_t).unwrap();
    assert_eq!(kept.role(), TunnelEnd::Initiator);
    assert_eq!(kept.state(), TunnelState::Established);
    let loser_ups = ups(w.node(loser));
    assert_eq!(loser_ups.len(), 1, "{:?}", w.node(loser).events);
    let answered = w.node(loser).set.tunnel(loser_ups[0]).unwrap();
    assert_eq!(answered.role(), TunnelEnd::Responder);
    assert_eq!(answered.peer_id(), winner_t);
    assert_eq!(kept.peer_id(), answered.local_id());
    assert_eq!(w.node(loser).set.len(), 1);
    assert!(w.node(loser).set.tunnel(loser_t).is_none() || loser_ups[0] == loser_t);
    assert_eq!(w.node(loser).set.stats().tie_breaker_lost, 1);
    // The loser's own tunnel ended without a StopCCN on the wire.
    assert!(w.node(loser).sent_kind(MessageType::StopCcn).is_empty());
    assert!(w.node(winner).sent_kind(MessageType::StopCcn).is_empty());
    let closed: Vec<_> = w
        .node(loser)
        .events
        .iter()
        .filter(|(_, id, e)| *id == loser_t && matches!(e, Event::Closed))
        .collect();
    assert_eq!(closed.len(), 1);
    // Only the winner's SCCRQ was answered.
    assert_eq!(w.node(loser).sent_kind(MessageType::Sccrp).len(), 1);
    assert!(w.node(winner).sent_kind(MessageType::Sccrp).is_empty());
}

#[test]
fn tie_breaker_lower_value_wins_and_one_tunnel_survives() {
    let low = [0, 0, 0, 0, 0, 0, 0, 1];
    let high = [0, 0, 0, 0, 0, 0, 0, 2];
    let (w, a_t, b_t) = collide(Some(low), Some(high));
    assert_single_tunnel(&w, w.lac, a_t, w.lns, b_t);
    // And the other way round, so the result does not depend on which node is which.
    let (w, a_t, b_t) = collide(Some(high), Some(low));
    assert_single_tunnel(&w, w.lns, b_t, w.lac, a_t);
}

/// Under loss the loser's SCCRQ may be retransmitted before it hears ours, and a late copy can
/// reach the winner after the winner's own tunnel is up: with no SCCRQ of its own outstanding
/// any more, the winner used to accept it and open a second tunnel.
#[test]
fn a_late_copy_of_the_losers_sccrq_opens_no_second_tunnel() {
    let low = [0, 0, 0, 0, 0, 0, 0, 1];
    let high = [0, 0, 0, 0, 0, 0, 0, 2];
    let (mut w, a_t, b_t) = collide(Some(low), Some(high));
    assert_single_tunnel(&w, w.lac, a_t, w.lns, b_t);
    let loser = w.node(w.lns);
    let copy = loser
        .sent
        .iter()
        .find(|(_, bytes, _)| loser.decode(bytes).is(MessageType::Sccrq))
        .map(|(_, bytes, _)| bytes.clone())
        .expect("the loser's SCCRQ");
    let now = w.now();
    w.sim.node_mut(w.lac).set.handle(now, addr(LNS), &copy);
    w.run_for(secs(5));
    let winner = w.node(w.lac);
    assert_eq!(winner.set.tunnel_ids().collect::<Vec<_>>(), [a_t]);
    assert!(winner.sent_kind(MessageType::Sccrp).is_empty());
    assert_eq!(
        winner.set.stats().tie_breaker_won,
        2,
        "the first copy and the late one"
    );
    // A cycle later the same IDs are a new request again.
    w.run_for(cycle());
    let now = w.now();
    w.sim.node_mut(w.lac).set.handle(now, addr(LNS), &copy);
    w.run_for(secs(1));
    assert_eq!(w.node(w.lac).set.len(), 2);
}

#[test]
fn equal_tie_breakers_discard_both_tunnels() {
    let same = [7; 8];
    let (w, a_t, b_t) = collide(Some(same), Some(same));
    for (who, t) in [(w.lac, a_t), (w.lns, b_t)] {
        let node = w.node(who);
        assert!(ups(node).is_empty(), "{:?}", node.events);
        assert!(node.set.is_empty());
        assert_eq!(node.set.stats().tie_breaker_lost, 1);
        assert!(node
            .events
            .iter()
            .any(|(_, id, e)| *id == t && *e == Event::Closed));
        assert!(node.sent_kind(MessageType::Sccrp).is_empty());
    }
}

#[test]
fn tie_breaker_on_one_side_only_wins() {
    let (w, a_t, b_t) = collide(Some([9; 8]), None);
    assert_single_tunnel(&w, w.lac, a_t, w.lns, b_t);
    let (w, a_t, b_t) = collide(None, Some([9; 8]));
    assert_single_tunnel(&w, w.lns, b_t, w.lac, a_t);
}

#[test]
fn no_tie_breakers_bring_up_two_tunnels() {
    let (w, a_t, b_t) = collide(None, None);
    for (who, own) in [(w.lac, a_t), (w.lns, b_t)] {
        let node = w.node(who);
        assert_eq!(ups(node).len(), 2, "{:?}", node.events);
        assert_eq!(node.set.len(), 2);
        let roles: BTreeSet<_> = node
            .set
            .tunnel_ids()
            .map(|id| format!("{:?}", node.set.tunnel(id).unwrap().role()))
            .collect();
        assert_eq!(roles.len(), 2, "one initiated, one answered");
        assert_eq!(node.set.tunnel(own).unwrap().role(), TunnelEnd::Initiator);
        assert_eq!(node.set.stats().tie_breaker_lost, 0);
    }
}

// ===== 8. HELLO =====

/// First transmissions (not retransmissions) of HELLO by `node`, with their times.
fn hellos(node: &Peer) -> Vec<(Instant, u16)> {
    let mut seen = BTreeSet::new();
    node.sent_kind(MessageType::Hello)
        .into_iter()
        .filter(|(_, w)| seen.insert(w.ns_nr().0))
        .map(|(t, w)| (t, w.ns_nr().0))
        .collect()
}

/// When `node` last heard anything from its peer before `at`.
fn last_heard_before(node: &Peer, at: Instant) -> Instant {
    node.received
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| *t <= at)
        .max()
        .expect("heard something")
}

#[test]
fn idle_tunnel_sends_hello_after_the_interval_and_the_peer_acks_it() {
    let lns_config = TunnelConfig {
        hello_interval: secs(20),
        ..config("lns")
    };
    let mut w = World::new(config("lac"), lns_config);
    let (_, lns_t) = w.up();
    let established = w
        .node(w.lns)
        .events_matching(|e| matches!(e, Event::TunnelUp { .. }))[0]
        .0;
    w.run_for(secs(100));
    let lns = w.node(w.lns);
    let sent = hellos(lns);
    assert!(sent.len() >= 4, "{sent:?}");
    // The first one exactly an interval after the SCCCN, the last thing the LNS heard.
    assert_eq!(sent[0].0, established + secs(20));
    assert_eq!(last_heard_before(lns, sent[0].0), established);
    // Each later one an interval after the ack of the one before.
    for pair in sent.windows(2) {
        let heard = last_heard_before(lns, pair[1].0);
        assert!(heard > pair[0].0);
        assert_eq!(pair[1].0, heard + secs(20), "{sent:?}");
    }
    // The LAC acknowledged each HELLO (a ZLB whose Nr passes its Ns) and never needed its
    // own: the LNS's HELLOs keep its 60 s timer from running out.
    let acks: Vec<(Instant, u16)> = w
        .node(w.lac)
        .sent()
        .into_iter()
        .filter(|(_, w)| w.is_zlb())
        .map(|(t, w)| (t, w.ns_nr().1))
        .collect();
    let end = w.now();
    for (at, ns) in sent.iter().filter(|(at, _)| *at + secs(1) < end) {
        assert!(
            acks.iter()
                .any(|(t, nr)| t > at && *nr == ns.wrapping_add(1)),
            "HELLO Ns {ns} at {at} not acked: {acks:?}"
        );
    }
    assert!(hellos(w.node(w.lac)).is_empty());
    assert_eq!(
        lns.sent_kind(MessageType::Hello).len(),
        sent.len(),
        "no retransmission"
    );
    // Let the last HELLO's ack come home.
    w.run_for(secs(1));
    let tunnel = w.tunnel(w.lns, lns_t);
    assert_eq!(tunnel.reliable().in_flight(), 0);
    assert_eq!(tunnel.state(), TunnelState::Established);
}

#[test]
fn traffic_resets_the_hello_timer() {
    let lns_config = TunnelConfig {
        hello_interval: secs(20),
        ..config("lns")
    };
    let mut w = World::new(config("lac"), lns_config);
    let (lac_t, _) = w.up();
    let (lac_sid, _) = w.incoming_call(lac_t);
    w.run_for(secs(15));
    assert!(hellos(w.node(w.lns)).is_empty());
    let data_at = w.now();
    assert!(w.command(w.lac, lac_t, |t, _| t.send_data(lac_sid, FRAME_UP)));
    w.run_for(secs(30));
    let lns = w.node(w.lns);
    let arrived = lns
        .received()
        .into_iter()
        .find(|(t, m)| *t >= data_at && matches!(m, Wire::Data { .. }))
        .expect("data arrived")
        .0;
    let sent = hellos(lns);
    assert_eq!(sent[0].0, arrived + secs(20), "{sent:?}");
}

#[test]
fn hello_timer_does_not_spin_while_a_message_is_outstanding() {
    // A call request goes out half a second before the HELLO would, and the peer is gone:
    // the HELLO must wait for the request's fate, not fire at the same instant forever.
    let mut w = World::new(config("lac"), config("lns"));
    let (lac_t, _) = w.up();
    let lac_heard = last_heard_before(w.node(w.lac), w.now());
    w.run_to(lac_heard + ms(59_500));
    w.lose_both_ways();
    let asked = w.now();
    w.command(w.lac, lac_t, |t, _| t.open_incoming_call())
        .expect("up");
    w.run_for(secs(60));
    let lac = w.node(w.lac);
    let closed = lac.events_matching(|e| *e == Event::Closed);
    assert_eq!(closed.len(), 1, "{:?}", lac.events);
    assert_eq!(closed[0].0, asked + cycle());
    assert!(lac.set.is_empty());
}

// ===== 9. StopCCN and the §5.7 hold =====

#[test]
fn stopccn_sender_stays_closing_for_a_full_cycle_then_closes() {
    let mut w = World::new(config("lac"), config("lns"));
    let (lac_t, lns_t) = w.up();
    w.incoming_call(lac_t);
    w.run_for(secs(1));
    // The LNS's first ack of the StopCCN is lost; the LAC resends it.
    let mut zlbs = 0;
    w.sim.node_mut(w.lns).lose = Some(Box::new(move |wire: &Wire| {
        zlbs += usize::from(wire.is_zlb());
        wire.is_zlb() && zlbs == 1
    }));
    let closed_at = w.now();
    let result = ResultCode::new(ResultCode::CLEAR_TUNNEL);
    w.command(w.lac, lac_t, |t, now| t.close(now, result.clone()));
    assert_eq!(w.tunnel(w.lac, lac_t).state(), TunnelState::Closing);
    let lac_events = &w.node(w.lac).events;
    assert!(matches!(
        lac_events.last(),
        Some((_, _, Event::TunnelDown { by_peer: false, .. }))
    ));
    assert!(lac_events
        .iter()
        .any(|(_, _, e)| matches!(e, Event::SessionDown { by_peer: false, .. })));
    // Held until one full cycle has passed...
    w.run_to(closed_at + (cycle() - Duration::from_micros(1)));
    assert_eq!(w.tunnel(w.lac, lac_t).state(), TunnelState::Closing);
    assert!(!w
        .node(w.lac)
        .events
        .iter()
        .any(|(_, _, e)| *e == Event::Closed));
    // ...and gone after it.
    w.run_for(secs(1));
    let lac = w.node(w.lac);
    let closed = lac.events_matching(|e| *e == Event::Closed);
    assert_eq!(closed.len(), 1);
    assert_eq!((closed[0].0, closed[0].1), (closed_at + cycle(), lac_t));
    assert!(lac.set.is_empty());
    let stops = lac.sent_kind(MessageType::StopCcn);
    assert_eq!(stops.len(), 2, "sent once, resent once after the lost ack");
    assert_eq!(stops[1].0, stops[0].0 + secs(1));
    let stop = stops[0].1.control().unwrap();
    assert_eq!(stop.header.tunnel_id, lns_t);
    assert_eq!(assigned_tunnel_id(stop), lac_t);
    assert_eq!(result_of(stop), result);
    assert_eq!(lac.set.tunnel(lac_t).map(Tunnel::state), None);
}

#[test]
fn stopccn_receiver_acks_a_retransmitted_stopccn_then_closes() {
    let mut w = World::new(config("lac"), config("lns"));
    let (lac_t, lns_t) = w.up();
    let (_, lns_sid) = w.incoming_call(lac_t);
    w.run_for(secs(1));
    let mut zlbs = 0;
    w.sim.node_mut(w.lns).lose = Some(Box::new(move |wire: &Wire| {
        zlbs += usize::from(wire.is_zlb());
        wire.is_zlb() && zlbs == 1
    }));
    let result = ResultCode::error(ResultCode::GENERAL_ERROR, 4, "going away");
    w.command(w.lac, lac_t, |t, now| t.close(now, result.clone()));
    w.run_for(secs(40));
    let lns = w.node(w.lns);
    let stop_heard: Vec<Instant> = lns
        .received()
        .into_iter()
        .filter(|(_, m)| m.is(MessageType::StopCcn))
        .map(|(t, _)| t)
        .collect();
    assert_eq!(
        stop_heard.len(),
        2,
        "the first ack was lost, the StopCCN came again"
    );
    // Both copies acknowledged: the tunnel was still there for the second.
    let acks: Vec<(Instant, bool)> = lns
        .sent
        .iter()
        .filter(|(_, b, _)| lns.decode(b).is_zlb())
        .map(|(t, _, lost)| (*t, *lost))
        .collect();
    let stop_ns = w.node(w.lac).sent_kind(MessageType::StopCcn)[0].1.ns_nr().0;
    let acked: Vec<_> = lns
        .sent()
        .into_iter()
        .filter(|(t, m)| m.is_zlb() && *t >= stop_heard[0] && m.ns_nr().1 == stop_ns + 1)
        .collect();
    assert_eq!(acked.len(), 2, "{acks:?}");
    assert!(acked[1].0 >= stop_heard[1]);
    // The receiver reported the peer's reason, then waited out the cycle.
    let events: Vec<_> = lns
        .events
        .iter()
        .filter(|(_, id, _)| *id == lns_t)
        .collect();
    let down = events
        .iter()
        .find(|(_, _, e)| matches!(e, Event::TunnelDown { .. }))
        .unwrap();
    assert_eq!(down.0, stop_heard[0]);
    assert_eq!(
        down.2,
        Event::TunnelDown {
            result: result.clone(),
            by_peer: true
        }
    );
    assert!(events.iter().any(|(_, _, e)| *e
        == Event::SessionDown {
            session_id: lns_sid,
            result: result.clone(),
            by_peer: true
        }));
    let closed = events.iter().find(|(_, _, e)| *e == Event::Closed).unwrap();
    assert_eq!(closed.0, stop_heard[0] + cycle());
    assert!(lns.set.is_empty());
    assert!(w.node(w.lac).set.is_empty());
}

/// Seen in a lab run on a lossy link: the endpoint's CDN crossed the LAC's StopCCN and was
/// retransmitted for a full cycle to a LAC that had cleaned up, never acknowledged.
#[test]
fn stopccn_receiver_stops_retransmitting_what_crossed_it() {
    let mut w = World::new(config("lac"), config("lns"));
    let (lac_t, lns_t) = w.up();
    let (_, lns_sid) = w.incoming_call(lac_t);
    w.run_for(secs(1));
    // The LNS's CDN is lost; the LAC's StopCCN reaches the LNS, whose ack is lost too.
    w.sim.node_mut(w.lns).lose = Some(Box::new(|_: &Wire| true));
    w.command(w.lns, lns_t, |t, _| {
        t.close_session(lns_sid, ResultCode::new(ResultCode::ADMIN_CALL))
    });
    w.run_for(ms(100));
    w.command(w.lac, lac_t, |t, now| {
        t.close(now, ResultCode::new(ResultCode::CLEAR_TUNNEL))
    });
    w.run_for(secs(60));
    let lns = w.node(w.lns);
    let cdns = lns.sent_kind(MessageType::Cdn);
    assert_eq!(cdns.len(), 1, "retransmitted after the StopCCN: {cdns:?}");
    // The StopCCN's own retransmissions are still acknowledged: one ZLB per copy.
    let stops = w.node(w.lac).sent_kind(MessageType::StopCcn).len();
    let zlbs = lns.sent().into_iter().filter(|(_, m)| m.is_zlb()).count();
    assert!(stops > 1 && zlbs >= stops, "{stops} StopCCNs, {zlbs} ZLBs");
    assert!(lns.set.is_empty());
}

/// Seen as tunnels that vanished from a lossy lab run's teardown, neither acknowledged nor
/// given up: a StopCCN that waited behind an unacknowledged message (a window of 1) started
/// its retransmissions late, and the §5.7 hold, counted from `close`, ended the tunnel while
/// the StopCCN was still being retransmitted.
#[test]
fn a_late_stopccn_is_retransmitted_past_the_hold_until_acknowledged() {
    let mut lns_config = config("lns");
    lns_config.reliable.receive_window = 1;
    let mut w = World::new(config("lac"), lns_config);
    let (lac_t, _) = w.up();
    w.run_for(secs(1));
    // The LNS's acks are lost: the ICRQ stays unacknowledged and fills the window of 1.
    w.sim.node_mut(w.lns).lose = Some(Box::new(|_: &Wire| true));
    w.command(w.lac, lac_t, |t, _| t.open_incoming_call());
    w.run_for(ms(100));
    let closed_at = w.now();
    w.command(w.lac, lac_t, |t, now| {
        t.close(now, ResultCode::new(ResultCode::CLEAR_TUNNEL))
    });
    w.run_for(secs(12));
    // Acks flow again, but every copy of the StopCCN is lost until well past the hold.
    w.sim.node_mut(w.lns).lose = None;
    w.sim.node_mut(w.lac).lose = Some(Box::new(|wire: &Wire| wire.is(MessageType::StopCcn)));
    w.run_to(closed_at + cycle() + secs(4));
    assert_eq!(w.tunnel(w.lac, lac_t).state(), TunnelState::Closing);
    w.sim.node_mut(w.lac).lose = None;
    w.run_for(secs(60));
    let lac = w.node(w.lac);
    let stops = lac.sent_kind(MessageType::StopCcn);
    let heard = w
        .node(w.lns)
        .received()
        .into_iter()
        .filter(|(_, m)| m.is(MessageType::StopCcn))
        .count();
    assert!(heard >= 1, "the LNS never got the StopCCN: {stops:?}");
    assert!(!lac
        .events
        .iter()
        .any(|(_, _, e)| matches!(e, Event::GaveUp(_))));
    let closed = lac.events_matching(|e| *e == Event::Closed);
    assert_eq!(closed.len(), 1, "{:?}", lac.events);
    assert!(
        closed[0].0 > closed_at + cycle(),
        "closed while the StopCCN was unacknowledged"
    );
    assert!(lac.set.is_empty());
}

#[test]
fn an_unacknowledged_stopccn_is_given_up_by_name_after_the_cycle() {
    let mut w = World::new(config("lac"), config("lns"));
    let (lac_t, _) = w.up();
    w.run_for(secs(1));
    w.lose_both_ways();
    let closed_at = w.now();
    let result = ResultCode::new(ResultCode::CLEAR_TUNNEL);
    w.command(w.lac, lac_t, |t, now| t.close(now, result.clone()));
    w.run_for(secs(60));
    let lac = w.node(w.lac);
    let retransmits = ReliableConfig::default().max_retransmits;
    let stops = lac.sent_kind(MessageType::StopCcn);
    assert_eq!(stops.len() as u32, 1 + retransmits, "{stops:?}");
    let events: Vec<_> = lac
        .events
        .iter()
        .filter(|(_, id, _)| *id == lac_t)
        .collect();
    let gave_up = events
        .iter()
        .find_map(|(at, _, e)| match e {
            Event::GaveUp(g) => Some((*at, *g)),
            _ => None,
        })
        .expect("a give-up");
    assert_eq!(gave_up.0, closed_at + cycle());
    assert_eq!(gave_up.1.message_type, Some(MessageType::StopCcn));
    assert_eq!(gave_up.1.retransmits, retransmits);
    assert_eq!(
        gave_up.1.to_string(),
        format!(
            "no acknowledgement of StopCCN (Ns {}) after 5 retransmissions",
            gave_up.1.ns
        )
    );
    // Already down when the StopCCN went: one TunnelDown (ours), then Closed.
    let downs = events
        .iter()
        .filter(|(_, _, e)| matches!(e, Event::TunnelDown { .. }))
        .count();
    assert_eq!(downs, 1);
    assert_eq!(events.last().map(|(_, _, e)| e), Some(&Event::Closed));
    assert!(lac.set.is_empty());
}

// ===== 10. giving up on a vanished peer =====

#[test]
fn vanished_peer_gives_up_after_the_full_retransmit_cycle() {
    let mut w = World::new(config("lac"), config("lns"));
    let (lac_t, lns_t) = w.up();
    let (lac_sid, lns_sid) = w.incoming_call(lac_t);
    w.run_for(secs(1));
    w.lose_both_ways();
    w.run_for(secs(200));
    let retransmits = ReliableConfig::default().max_retransmits as usize;
    for (who, t, sid) in [(w.lac, lac_t, lac_sid), (w.lns, lns_t, lns_sid)] {
        let node = w.node(who);
        // The keepalive is what notices: HELLO, five retransmissions on the RFC's back-off.
        let sent = node.sent_kind(MessageType::Hello);
        assert_eq!(sent.len(), 1 + retransmits, "{sent:?}");
        let first = sent[0].0;
        let offsets: Vec<u64> = sent
            .iter()
            .map(|(t, _)| (t.as_micros() - first.as_micros()) / 1_000_000)
            .collect();
        assert_eq!(offsets, [0, 1, 3, 7, 15, 23]);
        assert_eq!(first, last_heard_before(node, first) + secs(60));
        let events: Vec<_> = node.events.iter().filter(|(_, id, _)| *id == t).collect();
        let tail: Vec<_> = events[events.len() - 4..].to_vec();
        let gave_up_at = first + cycle();
        assert!(tail.iter().all(|(at, _, _)| *at == gave_up_at), "{tail:?}");
        // The give-up names the message nobody acknowledged.
        assert!(matches!(
            &tail[0].2,
            Event::GaveUp(g) if g.message_type == Some(MessageType::Hello)
                && g.retransmits as usize == retransmits
        ));
        assert!(matches!(
            &tail[1].2,
            Event::SessionDown { session_id, by_peer: false, .. } if *session_id == sid
        ));
        assert!(matches!(
            &tail[2].2,
            Event::TunnelDown { result, by_peer: false }
                if result.result == ResultCode::GENERAL_ERROR
                    && result.message.as_deref().is_some_and(|m| m.contains(MessageType::Hello.name()))
        ));
        assert_eq!(tail[3].2, Event::Closed);
        assert!(node.set.is_empty());
    }
}

/// Found by the node fuzz target: a peer that acknowledges our SCCRP (a ZLB, or any message
/// whose Nr covers it) and never sends the SCCCN left nothing to retransmit and no timer, so
/// the tunnel and its ID were held for ever. Two full cycles after the SCCRQ it now goes.
#[test]
fn responder_closes_a_tunnel_whose_scccn_never_comes() {
    let mut raw = Raw::new(config("lns"), true);
    let start = raw.now;
    raw.send(0, 0, MessageType::Sccrq, sccrq_avps(RAW_TID));
    let sccrp = raw.expect(MessageType::Sccrp);
    let tid = assigned_tunnel_id(&sccrp);
    // The ack for the SCCRP, and nothing more.
    raw.send_message(tid, 0, vec![]);
    let setup = cycle() * 2;
    raw.advance(setup - raw.now.saturating_duration_since(start) - ms(1));
    assert_eq!(raw.state(tid), Some(TunnelState::WaitCtlConn));
    assert!(raw.take().iter().all(Wire::is_zlb));
    raw.advance(ms(2));
    let stop = raw.expect(MessageType::StopCcn);
    assert_eq!(stop.header.tunnel_id, RAW_TID);
    assert_eq!(result_of(&stop).result, ResultCode::GENERAL_ERROR);
    assert!(raw.events.iter().any(|(_, e)| matches!(
        e,
        Event::TunnelDown { by_peer: false, result } if result.result == ResultCode::GENERAL_ERROR
    )));
    // Unacknowledged, the StopCCN gives up after its own cycle and the tunnel is gone.
    raw.advance(cycle() + secs(1));
    assert!(raw.set.is_empty(), "{:?}", raw.state(tid));
    assert!(raw.events.iter().any(|(_, e)| *e == Event::Closed));
}

/// The initiator's side of the same: its SCCRQ acknowledged by a ZLB, no SCCRP ever. With no
/// Assigned Tunnel ID from the peer there is no one to send a StopCCN to: the tunnel just ends.
#[test]
fn initiator_closes_a_tunnel_whose_sccrp_never_comes() {
    let mut raw = Raw::new(config("lac"), false);
    let start = raw.now;
    let tid = raw.set.connect(raw.now, raw.from).expect("a tunnel ID");
    let sccrq = raw.expect(MessageType::Sccrq);
    assert_eq!(sccrq.header.tunnel_id, 0);
    raw.send_message(tid, 0, vec![]);
    raw.advance(cycle() * 2 - raw.now.saturating_duration_since(start) - ms(1));
    assert_eq!(raw.state(tid), Some(TunnelState::WaitCtlReply));
    raw.advance(ms(2));
    assert!(raw.set.is_empty(), "{:?}", raw.state(tid));
    assert!(
        raw.take().iter().all(Wire::is_zlb),
        "no StopCCN without a peer Tunnel ID"
    );
    assert!(raw.events.iter().any(|(_, e)| *e == Event::Closed));
}

// ===== 11. SCCRQ retransmission and demultiplexing =====

#[test]
fn retransmitted_sccrq_does_not_open_a_second_tunnel() {
    let mut raw = Raw::new(config("lns"), true);
    let sccrq = ControlMessage {
        header: HeaderRepr::control(0, 0, 0, 0),
        avps: [AvpRepr::mandatory(AvpValue::MessageType(
            MessageType::Sccrq,
        ))]
        .into_iter()
        .chain(sccrq_avps(RAW_TID))
        .collect(),
    }
    .to_vec(None)
    .unwrap();
    raw.deliver(&sccrq);
    raw.advance(ms(500));
    raw.deliver(&sccrq);
    raw.advance(ms(300));
    assert_eq!(raw.set.len(), 1);
    assert_eq!(raw.set.stats().duplicate_sccrq, 1);
    // Both count as received: what a cluster master sent is what arrives, retransmissions too.
    assert_eq!(raw.set.stats().sccrq_received, 2);
    let sccrps: Vec<_> = raw
        .take()
        .into_iter()
        .filter(|w| w.is(MessageType::Sccrp))
        .collect();
    assert_eq!(sccrps.len(), 1, "one tunnel, one SCCRP");
    let first = assigned_tunnel_id(sccrps[0].control().unwrap());
    // Another tunnel from the same initiator: a new Assigned Tunnel ID.
    let other = ControlMessage {
        header: HeaderRepr::control(0, 0, 0, 0),
        avps: [AvpRepr::mandatory(AvpValue::MessageType(
            MessageType::Sccrq,
        ))]
        .into_iter()
        .chain(sccrq_avps(RAW_TID + 1))
        .collect(),
    }
    .to_vec(None)
    .unwrap();
    raw.deliver(&other);
    raw.advance(ms(10));
    assert_eq!(raw.set.len(), 2);
    let sccrp = raw
        .take()
        .into_iter()
        .find(|w| w.is(MessageType::Sccrp))
        .expect("second SCCRP");
    assert_eq!(sccrp.tunnel_id(), RAW_TID + 1);
    let second = assigned_tunnel_id(sccrp.control().unwrap());
    assert_ne!(first, second);
    // The same Assigned Tunnel ID from another port is another initiator.
    raw.from = addr("127.0.0.9:1702");
    raw.deliver(&sccrq);
    assert_eq!(raw.set.len(), 3);
    assert_eq!(raw.set.stats().duplicate_sccrq, 1);
}

/// Found by the node fuzz target: an SCCRQ whose Ns is ahead (held back by the reliable layer),
/// then the "retransmission" with Ns 0, refused as it lacks its Assigned Tunnel ID. The
/// duplicate-SCCRQ path did not collect the refused tunnel's events: it stayed in the set for
/// ever. (It now answers with a StopCCN to Tunnel ID 0 and goes after the §5.7 hold.)
#[test]
fn a_tunnel_closed_by_a_retransmitted_sccrq_leaves_the_set() {
    let mut raw = Raw::new(config("lns"), true);
    let avps: Vec<_> = sccrq_avps(RAW_TID)
        .into_iter()
        .filter(|a| a.value.avp_type() != Some(AvpType::AssignedTunnelId))
        .collect();
    raw.ns = 1;
    raw.send(0, 0, MessageType::Sccrq, avps.clone());
    assert_eq!(raw.set.len(), 1, "a tunnel waits for Ns 0");
    raw.ns = 0;
    raw.send(0, 0, MessageType::Sccrq, avps);
    assert_eq!(raw.set.stats().duplicate_sccrq, 1);
    raw.advance(cycle() + secs(1));
    assert!(raw.set.is_empty(), "the closed tunnel is still held");
    assert!(raw.events.iter().any(|(_, e)| matches!(
        e,
        Event::TunnelDown { by_peer: false, result } if result.error == Some(6)
    )));
    assert!(raw.events.iter().any(|(_, e)| *e == Event::Closed));
}

// ===== 12. Protocol Version =====

#[test]
fn protocol_version_other_than_1_0_in_sccrq_is_refused_with_result_5() {
    for (version, revision) in [(1, 1), (2, 0), (0, 0)] {
        let mut raw = Raw::new(config("lns"), true);
        let avps = sccrq_avps(RAW_TID)
            .into_iter()
            .map(|a| match a.value {
                AvpValue::ProtocolVersion { .. } => {
                    AvpRepr::mandatory(AvpValue::ProtocolVersion { version, revision })
                }
                _ => a,
            })
            .collect();
        raw.send(0, 0, MessageType::Sccrq, avps);
        let stop = raw.expect(MessageType::StopCcn);
        assert_eq!(
            stop.header.tunnel_id, RAW_TID,
            "version {version}.{revision}"
        );
        let result = result_of(&stop);
        assert_eq!(result.result, ResultCode::BAD_VERSION);
        // The Error Code carries the highest version we do speak: 1.0.
        assert_eq!(result.error, Some(0x0100));
        assert!(raw.events.iter().any(|(_, e)| matches!(
            e,
            Event::TunnelDown { result, by_peer: false } if result.result == ResultCode::BAD_VERSION
        )));
        assert!(!raw
            .events
            .iter()
            .any(|(_, e)| matches!(e, Event::TunnelUp { .. })));
    }
}

#[test]
fn protocol_version_other_than_1_0_in_sccrp_is_refused_with_result_5() {
    let mut raw = Raw::new(config("lac"), false);
    raw.from = addr(RAW);
    let now = raw.now;
    let tid = raw.set.connect(now, addr(RAW)).unwrap();
    raw.pump();
    let sccrq = raw.expect(MessageType::Sccrq);
    assert_eq!(assigned_tunnel_id(&sccrq), tid);
    let mut avps = sccrq_avps(RAW_TID);
    avps[0] = AvpRepr::mandatory(AvpValue::ProtocolVersion {
        version: 2,
        revision: 0,
    });
    raw.send(tid, 0, MessageType::Sccrp, avps);
    let stop = raw.expect(MessageType::StopCcn);
    assert_eq!(stop.header.tunnel_id, RAW_TID);
    assert_eq!(result_of(&stop).result, ResultCode::BAD_VERSION);
    assert_eq!(raw.state(tid), Some(TunnelState::Closing));
}

// ===== the TunnelSet as a runner drives it =====

#[test]
fn events_caused_by_a_command_survive_poll_transmit() {
    // A runner gives a command, sends what it caused, then reads events: nothing may be
    // stranded inside the tunnel until it next hears from its peer.
    let mut w = World::new(config("lac"), config("lns"));
    let (lac_t, _) = w.up();
    let (lac_sid, _) = w.incoming_call(lac_t);
    let now = w.now();
    let set = &mut w.sim.node_mut(w.lac).set;
    set.tunnel_mut(lac_t)
        .unwrap()
        .close_session(lac_sid, ResultCode::new(ResultCode::ADMIN_CALL));
    let mut buf = Vec::new();
    let mut sent = 0;
    while set.poll_transmit(now, &mut buf).is_some() {
        sent += 1;
    }
    assert_eq!(sent, 1, "the CDN");
    assert!(matches!(
        set.poll_event(),
        Some((t, Event::SessionDown { session_id, by_peer: false, .. })) if t == lac_t && session_id == lac_sid
    ));
    // Same for a tunnel close.
    set.tunnel_mut(lac_t)
        .unwrap()
        .close(now, ResultCode::new(ResultCode::CLEAR_TUNNEL));
    while set.poll_transmit(now, &mut buf).is_some() {}
    assert!(matches!(
        set.poll_event(),
        Some((t, Event::TunnelDown { by_peer: false, .. })) if t == lac_t
    ));
}

// ===== the whole life of a tunnel over lossy links =====

#[test]
fn lossy_links_carry_every_call_message_exactly_once() {
    let lossy = LinkConditions {
        loss: 0.2,
        duplicate: 0.2,
        reorder: 0.2,
        delay: ms(5),
        jitter: ms(5),
    };
    let patient = |host: &str| TunnelConfig {
        reliable: ReliableConfig {
            max_retransmits: 20,
            ..ReliableConfig::default()
        },
        ..config(host)
    };
    for seed in 0..200u64 {
        let mut w = World::new(patient("lac"), patient("lns"));
        w.sim = Simulator::new(seed);
        w.sim.set_max_steps(500_000);
        w.lac = w.sim.add_node(
            Peer::new(addr(LAC), patient("lac"), seed, false),
            &[addr(LAC)],
        );
        w.lns = w.sim.add_node(
            Peer::new(addr(LNS), patient("lns"), !seed, true),
            &[addr(LNS)],
        );
        w.sim.set_default_conditions(lossy);
        let count = |w: &World, who: NodeId, what: &dyn Fn(&Event) -> bool| {
            w.node(who)
                .events
                .iter()
                .filter(|(_, _, e)| what(e))
                .count()
        };
        let run_until = |w: &mut World, done: &dyn Fn(&World) -> bool, what: &str| {
            let limit = w.now() + secs(600);
            while !done(w) {
                assert!(
                    w.now() < limit && w.sim.step(),
                    "seed {seed}: {what} never happened"
                );
            }
        };
        let now = w.now();
        let lac_t = w.sim.node_mut(w.lac).set.connect(now, addr(LNS)).unwrap();
        let is_up = |e: &Event| matches!(e, Event::TunnelUp { .. });
        run_until(
            &mut w,
            &|w| count(w, w.lac, &is_up) == 1 && count(w, w.lns, &is_up) == 1,
            "tunnel up",
        );
        let lns_t = w.node(w.lns).events_matching(is_up)[0].1;
        let a = w
            .command(w.lac, lac_t, |t, _| t.open_incoming_call())
            .unwrap();
        let b = w
            .command(w.lac, lac_t, |t, _| t.open_incoming_call())
            .unwrap();
        let c = w
            .command(w.lns, lns_t, |t, _| t.open_outgoing_call("1"))
            .unwrap();
        let is_session = |e: &Event| matches!(e, Event::SessionUp { .. });
        run_until(
            &mut w,
            &|w| count(w, w.lac, &is_session) == 3 && count(w, w.lns, &is_session) == 3,
            "sessions up",
        );
        let peer_of = |w: &World, who: NodeId, sid: u16| -> u16 {
            w.node(who)
                .events
                .iter()
                .find_map(|(_, _, e)| match e {
                    Event::SessionUp {
                        session_id,
                        peer_session_id,
                        ..
                    } if *session_id == sid => Some(*peer_session_id),
                    _ => None,
                })
                .unwrap()
        };
        let (a_lns, b_lns, c_lac) = (
            peer_of(&w, w.lac, a),
            peer_of(&w, w.lac, b),
            peer_of(&w, w.lns, c),
        );
        w.command(w.lac, lac_t, |t, _| t.send_wan_error(a, 3));
        w.command(w.lns, lns_t, |t, _| t.send_link_info(a_lns, 1, 2));
        w.command(w.lns, lns_t, |t, _| {
            t.close_session(b_lns, ResultCode::new(ResultCode::ADMIN_CALL))
        });
        w.command(w.lac, lac_t, |t, _| {
            t.close_session(c_lac, ResultCode::new(ResultCode::ADMIN_CALL))
        });
        let by_peer = |e: &Event| matches!(e, Event::SessionDown { by_peer: true, .. });
        run_until(
            &mut w,
            &|w| count(w, w.lac, &by_peer) == 1 && count(w, w.lns, &by_peer) == 1,
            "CDNs",
        );
        let now = w.now();
        w.command(w.lns, lns_t, |t, _| {
            t.close(now, ResultCode::new(ResultCode::CLEAR_TUNNEL))
        });
        run_until(
            &mut w,
            &|w| w.node(w.lac).set.is_empty() && w.node(w.lns).set.is_empty(),
            "teardown",
        );
        let lac = &w.node(w.lac).events;
        let lns = &w.node(w.lns).events;
        let only = |events: &[(Instant, u16, Event)], e: Event| {
            let n = events.iter().filter(|(_, _, x)| *x == e).count();
            assert_eq!(n, 1, "seed {seed}: {e:?} x{n} in {events:?}");
        };
        only(
            lns,
            Event::WanError {
                session_id: a_lns,
                crc_errors: 3,
            },
        );
        only(
            lac,
            Event::LinkInfo {
                session_id: a,
                send_accm: 1,
                receive_accm: 2,
            },
        );
        let admin = ResultCode::new(ResultCode::ADMIN_CALL);
        only(
            lac,
            Event::SessionDown {
                session_id: b,
                result: admin.clone(),
                by_peer: true,
            },
        );
        only(
            lns,
            Event::SessionDown {
                session_id: c,
                result: admin,
                by_peer: true,
            },
        );
        let clear = ResultCode::new(ResultCode::CLEAR_TUNNEL);
        only(
            lac,
            Event::SessionDown {
                session_id: a,
                result: clear.clone(),
                by_peer: true,
            },
        );
        only(
            lac,
            Event::TunnelDown {
                result: clear,
                by_peer: true,
            },
        );
        only(lac, Event::Closed);
        only(lns, Event::Closed);
    }
}

#[test]
fn scccn_in_an_established_tunnel_is_a_state_machine_error() {
    // §7.2.1: a second SCCCN ends the tunnel with StopCCN result 7.
    let (mut raw, tid) = Raw::established(config("lns"));
    raw.send(tid, 0, MessageType::Scccn, vec![]);
    let stop = raw.expect(MessageType::StopCcn);
    assert_eq!(stop.header.tunnel_id, RAW_TID);
    assert_eq!(result_of(&stop).result, ResultCode::FSM_ERROR);
    assert_eq!(raw.state(tid), Some(TunnelState::Closing));
}

#[test]
fn session_ids_run_out_without_hanging() {
    // Every ID of one tunnel in use: the next call is refused, not looped on.
    let (mut raw, tid) = Raw::established(config("lns"));
    let tunnel = raw.set.tunnel_mut(tid).expect("tunnel");
    let mut ids = std::collections::BTreeSet::new();
    for _ in 0..u16::MAX {
        let id = tunnel.open_incoming_call().expect("a free session ID");
        assert_ne!(id, 0);
        assert!(ids.insert(id), "session ID {id} handed out twice");
    }
    assert_eq!(tunnel.open_incoming_call(), None);
    // An ICRQ from the peer is refused (its CDN waits behind our 65535 queued ICRQs): no
    // session is added and the tunnel stays up.
    raw.take();
    raw.send(tid, 0, MessageType::Icrq, icrq_avps(77));
    raw.advance(ms(1));
    let tunnel = raw.set.tunnel(tid).expect("tunnel");
    assert_eq!(tunnel.session_ids().count(), usize::from(u16::MAX));
    assert_eq!(raw.state(tid), Some(TunnelState::Established));
}

#[test]
fn closing_before_the_peer_answered_sends_no_stopccn_to_tunnel_zero() {
    let mut raw = Raw::new(config("lac"), false);
    let now = raw.now;
    let tid = raw.set.connect(now, addr(RAW)).expect("tunnel");
    raw.pump();
    let sccrq = raw.take();
    assert!(sccrq.iter().any(|w| w.is(MessageType::Sccrq)));
    raw.set
        .tunnel_mut(tid)
        .expect("tunnel")
        .close(now, ResultCode::new(ResultCode::CLEAR_TUNNEL));
    raw.advance(secs(40));
    let out = raw.take();
    assert!(
        out.iter().all(|w| !w.is(MessageType::StopCcn)),
        "StopCCN to tunnel 0: {out:?}"
    );
    assert!(raw.set.is_empty(), "the tunnel is gone");
    assert!(raw
        .events
        .iter()
        .any(|(id, e)| *id == tid && matches!(e, Event::Closed)));
}

#[test]
fn data_offset_pad_goes_out_with_the_o_bit_and_is_skipped_by_the_peer() {
    let lac = TunnelConfig {
        data_offset: Some(4),
        ..config("lac")
    };
    let mut w = World::new(lac, config("lns"));
    let (lac_t, _) = w.up();
    let (lac_sid, lns_sid) = w.incoming_call(lac_t);
    assert!(w.command(w.lac, lac_t, |t, _| t.send_data(lac_sid, FRAME_UP)));
    w.run_for(ms(100));
    let frames: Vec<_> = w
        .node(w.lns)
        .events_matching(|e| matches!(e, Event::Data { .. }))
        .into_iter()
        .map(|(_, _, e)| e)
        .collect();
    assert_eq!(
        frames,
        [Event::Data {
            session_id: lns_sid,
            frame: FRAME_UP.to_vec()
        }]
    );
    let headers: Vec<_> = w
        .node(w.lns)
        .received()
        .into_iter()
        .filter_map(|(_, m)| match m {
            Wire::Data { header, .. } => Some(header),
            Wire::Control(_) => None,
        })
        .collect();
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0].offset_size, Some(4));
}

#[test]
fn session_ids_come_only_from_the_configured_range_and_a_full_range_refuses_the_call() {
    let lns = TunnelConfig {
        session_ids: 0x4000..=0x4002,
        ..config("lns")
    };
    let (mut raw, tid) = Raw::established(lns);
    let sids: Vec<u16> = (1..=3).map(|n| raw.incoming_call(tid, n)).collect();
    let mut sorted = sids.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![0x4000, 0x4001, 0x4002], "{sids:?}");
    // The fourth call finds the range full: CDN result 4 (no facilities), the tunnel stays.
    raw.send(tid, 0, MessageType::Icrq, icrq_avps(4));
    let cdn = raw.expect(MessageType::Cdn);
    assert_eq!(cdn.header.session_id, 4);
    assert_error(&result_of(&cdn), 4, 4, &["every session ID"]);
    assert_eq!(raw.state(tid), Some(TunnelState::Established));
}
