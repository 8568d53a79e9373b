//! The fuzz harnesses, one function per target. The cargo-fuzz targets (`fuzz/fuzz_targets/`)
//! and the corpus replay test (`tests/tests/it/fuzz_corpus.rs`) both include this file with
//! `#[path]`, so the bytes a fuzzer found and the bytes CI replays run through the same code,
//! and the main workspace never links libFuzzer.
//!
//! A harness returns quietly on any input the code under test is meant to refuse. It panics only
//! when an invariant of the project breaks: a message that parses but does not re-emit to the
//! same thing, a node that sends bytes its own parser refuses, a timer that never moves on, a
//! forwarder that breaks a checksum it was given intact. Each of those is a bug to fix in the
//! library, never something to hide here.
//!
//! Inputs that carry a sequence (node, forwarders) are records:
//!
//! ```text
//! [op: u8] [length: u16 big-endian] [length bytes, cut short at the end of the input]
//! ```
//!
//! `op` says what the record is (a datagram and from whom, a command, a report) and how far the
//! virtual clock moves before it; the bit layout is per target, below.

use std::io::Cursor;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use l2tp::capture::{decode_frame, CaptureWriter, Linktype, RecordKind};
use l2tp::conn::tunnel::{Event, ResultCode, TunnelConfig};
use l2tp::conn::tunnels::TunnelSet;
use l2tp::ip::{self, Ipv4Udp, L2tpClass};
use l2tp::time::Instant;
use l2tp::wire::message::ParseOptions;
use l2tp::wire::{rules, samples, AvpValue, Error as WireError, PacketRepr};
use netio::runner::TunnelDriver;
use reference::cluster::{self, EndpointState, LoadReport};
use reference::endpoint::{Endpoint, Reporting};
use reference::master::{Master, MasterConfig, Policy, Verdict as MasterVerdict};
use reference::nat::{Nat, NatConfig, Verdict as NatVerdict};

/// The secret of the captures in `captures/` (captures/PROVENANCE.md), so that their hidden
/// AVPs unhide.
pub const CAPTURE_SECRET: &[u8] = b"l2tpkit-tunnel-secret";

/// At most this many records of an input are used: bounds the work of one run.
pub const MAX_RECORDS: usize = 512;

/// Where the node under test listens, and the peers records can come from (the public side of
/// the lab, 198.18.0.0/16). Two peers share an address with different ports, as behind a NAT.
pub const NODE_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 1701);
pub const PEERS: [SocketAddrV4; 4] = [
    SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 10), 1701),
    SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 11), 1701),
    SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 10), 40_000),
    SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 12), 1701),
];

/// How far the virtual clock moves before a record, by the record's 4-bit advance code: from
/// nothing through retransmission timeouts (1 s doubling) to past the 60 s HELLO interval.
const ADVANCE_MS: [u64; 16] = [
    0, 1, 10, 100, 500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 59_000, 61_000, 120_000,
    300_000, 900_000,
];

/// Splits an input into records (see the module documentation).
pub struct Records<'a> {
    rest: &'a [u8],
    taken: usize,
}

impl<'a> Records<'a> {
    pub fn new(bytes: &'a [u8]) -> Records<'a> {
        Records {
            rest: bytes,
            taken: 0,
        }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        if self.taken >= MAX_RECORDS {
            return None;
        }
        let (&op, rest) = self.rest.split_first()?;
        let (len, rest) = match rest {
            [high, low, rest @ ..] => (usize::from(u16::from_be_bytes([*high, *low])), rest),
            _ => (0, &[][..]),
        };
        let (payload, rest) = rest.split_at(len.min(rest.len()));
        self.rest = rest;
        self.taken += 1;
        Some((op, payload))
    }
}

/// The inverse of [`Records`], for seed makers.
pub fn push_record(out: &mut Vec<u8>, op: u8, payload: &[u8]) {
    let len = u16::try_from(payload.len()).expect("a record holds at most 65535 bytes");
    out.push(op);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
}

// ------------------------------------------------------------------------------------------
// codec

/// What [`codec`] saw, for the replay test's checks on the seeds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CodecOutcome {
    /// Parses that succeeded, out of the three (no secret, the captures', the samples').
    pub parsed: u32,
    /// Control messages that also met RFC 2661's mandatory-AVP rules.
    pub rules_ok: u32,
}

/// Parses the bytes as one L2TP message (the UDP payload) without a secret and with each of the
/// two secrets the seeds use, so that hidden AVPs are unhidden too. Whatever parses must emit
/// again and re-parse to an equal `PacketRepr`, and the forwarders' cheap classifier must agree
/// with the full parser on the routing fields.
pub fn codec(bytes: &[u8]) -> CodecOutcome {
    let mut outcome = CodecOutcome::default();
    for secret in [None, Some(CAPTURE_SECRET), Some(samples::SECRET)] {
        let options = ParseOptions { secret };
        let Ok(packet) = PacketRepr::parse(bytes, &options) else {
            continue;
        };
        outcome.parsed += 1;
        if let PacketRepr::Control(message) = &packet {
            if rules::check(message).is_ok() {
                outcome.rules_ok += 1;
            }
            // Formatting is what `l2tpkit decode` prints for any input.
            for avp in &message.avps {
                let _ = avp.to_string();
            }
        }
        roundtrip(&packet, secret);
        if secret.is_none() {
            classify_agrees(bytes, &packet);
        }
    }
    outcome
}

fn roundtrip(packet: &PacketRepr<'_>, secret: Option<&[u8]>) {
    let again = match packet.to_vec(secret) {
        Ok(again) => again,
        Err(err) => panic!("parsed message does not emit again: {err}\n{packet:?}"),
    };
    assert_eq!(
        again.len(),
        packet.buffer_len(),
        "emit wrote another length than buffer_len"
    );
    let options = ParseOptions { secret };
    match PacketRepr::parse(&again, &options) {
        Ok(reparsed) => assert_eq!(
            &reparsed, packet,
            "re-parse of the re-emitted bytes differs\nbytes {again:02x?}"
        ),
        Err(err) => panic!("re-emitted bytes do not parse: {err}\n{packet:?}\n{again:02x?}"),
    }
}

/// `ip::classify` reads only the header, the first AVP and, for SCCRQ / SCCRP, the Assigned
/// Tunnel ID. On anything the full parser accepts (without a secret) it must read the same
/// values, or the master and the NAT would route by other fields than the endpoint sees.
fn classify_agrees(bytes: &[u8], packet: &PacketRepr<'_>) {
    let class = match ip::classify(bytes) {
        Ok(class) => class,
        // The parser keeps a hidden Assigned Tunnel ID as ciphertext; the classifier names it.
        Err(WireError::Hidden { .. }) => return,
        // SCCRQ / SCCRP without an Assigned Tunnel ID parse (the rules are a separate check).
        Err(WireError::MissingAvp { .. }) => return,
        Err(err) => panic!("classify refuses what the parser accepts: {err}\n{packet:?}"),
    };
    assert_eq!(class.tunnel_id(), packet.header().tunnel_id, "Tunnel ID");
    match (class, packet) {
        (L2tpClass::Data { .. }, PacketRepr::Data { .. }) => {}
        (L2tpClass::Zlb { .. }, PacketRepr::Control(message)) => assert!(message.is_zlb()),
        (L2tpClass::Control { message_type, .. }, PacketRepr::Control(message)) => {
            assert_eq!(Some(message_type), message.message_type(), "Message Type");
        }
        (
            L2tpClass::Setup {
                message_type,
                assigned_tunnel_id,
                ..
            },
            PacketRepr::Control(message),
        ) => {
            assert_eq!(Some(message_type), message.message_type(), "Message Type");
            let first = message.avps.iter().find_map(|avp| match avp.value {
                AvpValue::AssignedTunnelId(id) => Some(id),
                _ => None,
            });
            assert_eq!(first, Some(assigned_tunnel_id), "Assigned Tunnel ID");
        }
        (class, packet) => panic!("classify says {class:?}, the parser {packet:?}"),
    }
}

// ------------------------------------------------------------------------------------------
// node

/// What [`node`] saw, for the replay test's checks on the seeds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeOutcome {
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    pub tunnels_up: u64,
    pub sessions_up: u64,
    pub data_frames: u64,
    pub reports: u64,
}

/// The node's settings, from the input's first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeFlags(pub u8);

impl NodeFlags {
    /// Bit 0: the captures' tunnel secret (challenges, hidden AVPs can be read).
    pub const SECRET: u8 = 1;
    /// Bit 1: hide AVPs (with the secret only).
    pub const HIDE: u8 = 2;
    /// Bit 2: ask for sequenced data.
    pub const SEQUENCING: u8 = 4;
    /// Bit 3: data messages with an Offset Pad.
    pub const OFFSET: u8 = 8;
    /// Bit 4: a Tie Breaker in our SCCRQs.
    pub const TIE_BREAKER: u8 = 16;
    /// Bit 5: a cluster endpoint: Tunnel IDs from a leased block of 4, and load reports.
    pub const CLUSTER: u8 = 32;

    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    pub fn config(self) -> TunnelConfig {
        let secret = self.has(NodeFlags::SECRET).then(|| CAPTURE_SECRET.to_vec());
        TunnelConfig {
            host_name: "fuzz-node".to_string(),
            hide_avps: secret.is_some() && self.has(NodeFlags::HIDE),
            secret,
            sequencing_required: self.has(NodeFlags::SEQUENCING),
            data_offset: self.has(NodeFlags::OFFSET).then_some(4),
            tie_breaker: self.has(NodeFlags::TIE_BREAKER).then_some(*b"\x80fuzz-tb"),
            ..TunnelConfig::default()
        }
    }

    /// The Tunnel IDs the node assigns: all, or a cluster's leased block.
    pub fn tunnel_ids(self) -> (u16, u16) {
        if self.has(NodeFlags::CLUSTER) {
            (0x0100, 0x0103)
        } else {
            (1, u16::MAX)
        }
    }
}

/// The fixed seed of the node's randomness (Tunnel IDs, challenges, random vectors), so that a
/// run can be replayed.
pub const NODE_SEED: u64 = 0x5eed_1701;
/// The load report key of the cluster endpoint (flag bit 5) and of the forwarders' master.
pub const CLUSTER_KEY: &[u8] = b"l2tpkit-fuzz-cluster-key";
const MASTER_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 1), 1702);

/// A node as the reference endpoint runs one (`l2tpkit endpoint`): a `TunnelSet` that accepts
/// tunnels, driven by the reference `Endpoint` role that answers LCP Echo-Requests and, in a
/// cluster, sends load reports.
pub struct Node {
    pub set: TunnelSet,
    pub role: Endpoint,
    pub now: Instant,
    secret: Option<Vec<u8>>,
    wake: Option<Instant>,
    buf: Vec<u8>,
    pub outcome: NodeOutcome,
}

/// A datagram the node sent.
pub struct Sent {
    pub to: SocketAddrV4,
    pub bytes: Vec<u8>,
}

impl Node {
    pub fn new(flags: NodeFlags) -> Node {
        let config = flags.config();
        let secret = config.secret.clone();
        let (first, last) = flags.tunnel_ids();
        let set = TunnelSet::with_ids(config, NODE_SEED, true, first..=last);
        let mut role = Endpoint::new(NODE_SEED as u32);
        if flags.has(NodeFlags::CLUSTER) {
            role = role.with_reporting(Reporting {
                name: "fuzz-endpoint".to_string(),
                master: MASTER_ADDR,
                key: CLUSTER_KEY.to_vec(),
                // Long enough that two idle hours cost few wake-ups.
                interval: Duration::from_secs(60),
                lan_addr: Ipv4Addr::new(198, 19, 0, 10),
                global_addr: None,
                capacity: 4,
                tunnel_ids: Some((first, last)),
                first_sequence: 1,
            });
        }
        Node {
            set,
            role,
            now: Instant::ZERO,
            secret,
            wake: None,
            buf: Vec::with_capacity(2048),
            outcome: NodeOutcome::default(),
        }
    }

    /// One turn of the runner's loop (`netio::runner::Runner::run`): events to the role, its
    /// tick, then everything the tunnels and the role want to send. Every datagram the node
    /// sends must parse with its own secret; every load report must open with its key.
    pub fn pump(&mut self, sent: &mut Vec<Sent>) {
        let now = self.now;
        self.dispatch_events();
        self.wake = self.role.on_tick(&mut self.set, now);
        self.dispatch_events();
        // A node answers one datagram with a bounded burst; far more means a send loop.
        for _ in 0..100_000 {
            let Some(to) = self.set.poll_transmit(now, &mut self.buf) else {
                break;
            };
            let options = ParseOptions {
                secret: self.secret.as_deref(),
            };
            if let Err(err) = PacketRepr::parse(&self.buf, &options) {
                panic!(
                    "the node sent bytes it cannot parse itself: {err}\n{:02x?}",
                    self.buf
                );
            }
            self.outcome.datagrams_out += 1;
            sent.push(Sent {
                to,
                bytes: self.buf.clone(),
            });
        }
        while let Some((to, bytes)) = self.role.poll_side_transmit(now) {
            assert_eq!(to, MASTER_ADDR);
            if let Err(err) = cluster::open(&bytes, CLUSTER_KEY) {
                panic!("the endpoint sent a load report its master cannot open: {err}");
            }
            self.outcome.reports += 1;
        }
    }

    fn dispatch_events(&mut self) {
        while let Some((id, event)) = self.set.poll_event() {
            match &event {
                Event::TunnelUp { .. } => self.outcome.tunnels_up += 1,
                Event::SessionUp { .. } => self.outcome.sessions_up += 1,
                Event::Data { .. } => self.outcome.data_frames += 1,
                _ => {}
            }
            self.role.on_event(&mut self.set, self.now, id, event);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [self.set.poll_timeout(), self.wake]
            .into_iter()
            .flatten()
            .min()
    }

    /// Moves the clock to `until`, firing every timer on the way at its own time, as the runner
    /// would. A deadline that stays at or before `now` after its timer ran would make the
    /// runner spin: that is a bug.
    pub fn run_until(&mut self, until: Instant, sent: &mut Vec<Sent>) {
        let mut spins = 0;
        while let Some(at) = self.next_deadline().filter(|&at| at <= until) {
            if at <= self.now {
                spins += 1;
                assert!(
                    spins <= 64,
                    "timer does not move on: deadline {at} at now {} after {spins} wake-ups",
                    self.now
                );
            } else {
                spins = 0;
                self.now = at;
            }
            self.set.handle_timeout(self.now);
            self.pump(sent);
        }
        self.now = self.now.max(until);
        self.pump(sent);
    }

    pub fn receive(&mut self, from: SocketAddrV4, bytes: &[u8], sent: &mut Vec<Sent>) {
        self.outcome.datagrams_in += 1;
        self.set.handle(self.now, from, bytes);
        self.pump(sent);
    }

    /// The `n`th tunnel (wrapping), if any.
    fn nth_tunnel(&self, n: u8) -> Option<u16> {
        let count = self.set.len();
        if count == 0 {
            return None;
        }
        self.set.tunnel_ids().nth(usize::from(n) % count)
    }

    /// A command the node's owner gives (`l2tpkit lac` scripts, the endpoint's shutdown): the
    /// paths where our side starts an exchange, so that replies to it are reachable.
    fn command(&mut self, source: usize, args: &[u8], sent: &mut Vec<Sent>) {
        let now = self.now;
        let arg = |i: usize| args.get(i).copied().unwrap_or(0);
        match arg(0) % 8 {
            0 => {
                let _ = self.set.connect(now, PEERS[source]);
            }
            7 => self.role.shutdown(&mut self.set, now),
            command => {
                let Some(id) = self.nth_tunnel(arg(1)) else {
                    return;
                };
                let Some(tunnel) = self.set.tunnel_mut(id) else {
                    return;
                };
                let sessions: Vec<u16> = tunnel.session_ids().collect();
                let session = match sessions.len() {
                    0 => 0,
                    n => sessions[usize::from(arg(2)) % n],
                };
                match command {
                    1 => {
                        let _ = tunnel.open_incoming_call();
                    }
                    2 => {
                        let _ = tunnel.open_outgoing_call("5551701");
                    }
                    3 => {
                        let _ = tunnel.send_data(session, args.get(3..).unwrap_or_default());
                    }
                    4 => tunnel.close_session(session, ResultCode::new(3)),
                    5 => {
                        tunnel.send_wan_error(session, 1);
                        tunnel.send_link_info(session, u32::MAX, 0);
                    }
                    _ => tunnel.close(now, ResultCode::new(1)),
                }
            }
        }
        self.pump(sent);
    }
}

/// Feeds a node a sequence of datagrams and commands. The first byte is [`NodeFlags`]; then
/// records whose `op` is:
///
/// - bits 0–1: the peer ([`PEERS`]) the datagram comes from, or a command's peer;
/// - bits 2–5: the clock advance before the record ([`ADVANCE_MS`]);
/// - bits 6–7: `0b10` a command (payload: command, tunnel, session, data), else a datagram.
///
/// After the last record no peer says anything more, for two virtual hours: every tunnel must
/// by then have given up and gone, or the node would hold its state for ever.
pub fn node(data: &[u8]) -> NodeOutcome {
    let Some((&flags, records)) = data.split_first() else {
        return NodeOutcome::default();
    };
    let mut node = Node::new(NodeFlags(flags));
    // The datagrams sent are only checked (in `pump`), not fed back: the input plays the peers.
    let mut sent = Vec::new();
    node.pump(&mut sent);
    for (op, payload) in Records::new(records) {
        let advance = Duration::from_millis(ADVANCE_MS[usize::from((op >> 2) & 0x0f)]);
        node.run_until(node.now + advance, &mut sent);
        sent.clear();
        let source = usize::from(op & 3);
        if op >> 6 == 0b10 {
            node.command(source, payload, &mut sent);
        } else {
            node.receive(PEERS[source], payload, &mut sent);
        }
        sent.clear();
    }
    let end = node.now + Duration::from_secs(2 * 3600);
    node.run_until(end, &mut sent);
    assert!(
        node.set.is_empty(),
        "tunnels {:?} still held two hours after the last datagram",
        node.set.tunnel_ids().collect::<Vec<_>>()
    );
    node.outcome
}

// ------------------------------------------------------------------------------------------
// forwarders

/// What [`forwarders`] saw, for the replay test's checks on the seeds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardersOutcome {
    pub master_forwarded: u64,
    pub nat_forwarded: u64,
    pub reports_accepted: u64,
}

/// The cluster address (the master's, and the NAT's one global address in FIG 2).
pub const CLUSTER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The endpoints the master knows from the start, on the LAN side (198.19.0.0/16).
pub const ENDPOINTS: [(&str, Ipv4Addr, (u16, u16)); 2] = [
    ("lns-a", Ipv4Addr::new(198, 19, 0, 10), (0x0001, 0x7fff)),
    ("lns-b", Ipv4Addr::new(198, 19, 0, 11), (0x8000, 0xffff)),
];

fn report(endpoint: usize, fields: &[u8], sequence: u64) -> LoadReport {
    let field = |i: usize| fields.get(i).copied().unwrap_or(0);
    let word = |i: usize| u16::from_be_bytes([field(i), field(i + 1)]);
    let (name, lan_addr, ids) = ENDPOINTS[endpoint % ENDPOINTS.len()];
    // Byte 0 picks a third endpoint, whose blocks come from the input and may clash.
    let third = field(0) & 0x80 != 0;
    let tunnel_ids = if third || field(0) & 0x40 != 0 {
        vec![(word(6), word(8))]
    } else {
        vec![ids]
    };
    LoadReport {
        endpoint: if third {
            "lns-c".to_string()
        } else {
            name.to_string()
        },
        lan_addr: if third {
            Ipv4Addr::new(198, 19, 0, field(10))
        } else {
            lan_addr
        },
        global_addr: (field(0) & 0x20 != 0).then_some(Ipv4Addr::new(198, 18, 1, field(11))),
        tunnels: u32::from(field(1)),
        sessions: u32::from(field(2)),
        capacity: u32::from(word(3)),
        state: match field(5) % 3 {
            0 => EndpointState::InService,
            1 => EndpointState::Draining,
            _ => EndpointState::Unresponsive,
        },
        sccrq_received: u64::from(field(12)),
        tunnel_ids,
        sequence,
    }
}

/// An IPv4 packet's checksums before and after a forwarder rewrote it: one that verified must
/// still verify (RFC 1624 updates), and the view must still be a whole IPv4/UDP packet.
fn checksums(packet: &[u8]) -> Option<(bool, bool)> {
    let view = Ipv4Udp::new_checked(packet).ok()?;
    Some((view.ipv4_checksum_ok(), view.udp_checksum_ok()))
}

fn assert_rewrite_kept(before: Option<(bool, bool)>, packet: &[u8], what: &str) {
    let Some((ip_ok, udp_ok)) = before else {
        panic!("{what} forwarded a packet that is not a whole IPv4/UDP packet");
    };
    let Some((ip_after, udp_after)) = checksums(packet) else {
        panic!("{what}: the rewritten packet is no longer a whole IPv4/UDP packet");
    };
    assert!(!ip_ok || ip_after, "{what} broke the IPv4 header checksum");
    assert!(!udp_ok || udp_after, "{what} broke the UDP checksum");
}

/// Feeds the cluster master (`reference::master`) and the FIG 2 NAT (`reference::nat`) raw
/// IPv4 packets, load reports and admin commands. The first byte picks the master's policy;
/// then records whose `op` is:
///
/// - bits 0–2: 0 a packet to the master, 1 to the NAT from the LAN, 2 to the NAT from the
///   public side, 3 the payload as a load report, 4 a report built from the payload and sealed
///   with the right key, 5 an admin command, 6 an L2TP payload wrapped in a valid IPv4/UDP
///   packet to the cluster address (to the master, or through the NAT when bit 5 is set), 7
///   the status of both;
/// - bits 3–6: the clock advance before the record ([`ADVANCE_MS`]).
pub fn forwarders(data: &[u8]) -> ForwardersOutcome {
    let Some((&flags, records)) = data.split_first() else {
        return ForwardersOutcome::default();
    };
    let mut outcome = ForwardersOutcome::default();
    let mut config = MasterConfig::new(CLUSTER_ADDR, CLUSTER_KEY);
    config.policy = match flags % 3 {
        0 => Policy::LeastLoad,
        1 => Policy::RoundRobin,
        _ => Policy::LeakyBucket {
            rate: f64::from(flags >> 2),
            burst: u32::from(flags >> 4),
        },
    };
    config.report_timeout = Duration::from_secs(5);
    config.dispatch_memory = Duration::from_secs(30);
    let mut master = Master::new(config);
    let mut nat_config = NatConfig::new(CLUSTER_ADDR);
    // Small, so that a short input reaches a full table and every expiry.
    nat_config.max_entries = 8;
    nat_config.entry_timeout = Duration::from_secs(60);
    nat_config.stop_hold = Duration::from_secs(31);
    let mut nat = Nat::new(nat_config);
    let mut now = Instant::ZERO;
    let mut sequence = 1u64;
    let report_from = SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 10), 40_000);
    for (i, (_, _, _)) in ENDPOINTS.iter().enumerate() {
        let sealed = cluster::seal(&report(i, &[0, 0, 0, 0, 100], sequence), CLUSTER_KEY);
        sequence += 1;
        master.handle_report(now, report_from, &sealed);
    }
    let mut ip_id = 0u16;
    for (op, payload) in Records::new(records) {
        now += Duration::from_millis(ADVANCE_MS[usize::from((op >> 3) & 0x0f)]);
        for _ in 0..2 {
            if master.poll_timeout().is_some_and(|at| at <= now) {
                master.handle_timeout(now);
            }
            if nat.poll_timeout().is_some_and(|at| at <= now) {
                nat.handle_timeout(now);
            }
        }
        match op & 7 {
            0 => {
                let mut packet = payload.to_vec();
                to_master(&mut master, now, &mut packet, &mut outcome);
            }
            1 | 2 => {
                let mut packet = payload.to_vec();
                to_nat(&mut nat, now, op & 7 == 1, &mut packet, &mut outcome);
            }
            3 => {
                let _ = master.handle_report(now, report_from, payload);
            }
            4 => {
                let which = usize::from(payload.first().copied().unwrap_or(0));
                // Mostly fresh sequence numbers; sometimes a replay.
                let seq = match payload.get(12) {
                    Some(&back) if back & 0x80 != 0 => sequence.saturating_sub(u64::from(back)),
                    _ => sequence,
                };
                sequence += 1;
                let sealed = cluster::seal(
                    &report(which, payload.get(1..).unwrap_or_default(), seq),
                    CLUSTER_KEY,
                );
                if master.handle_report(now, report_from, &sealed)
                    == reference::master::ReportOutcome::Accepted
                {
                    outcome.reports_accepted += 1;
                }
            }
            5 => {
                let which = usize::from(payload.first().copied().unwrap_or(0));
                let name = ["lns-a", "lns-b", "lns-c"][which % 3];
                match payload.get(1).copied().unwrap_or(0) % 3 {
                    0 => master.drain(name),
                    1 => master.deactivate(name),
                    _ => master.activate(name),
                };
            }
            6 => {
                let source = payload.first().copied().unwrap_or(0);
                let from = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 10 + (source & 3)), 1701);
                let to = SocketAddrV4::new(CLUSTER_ADDR, 1701);
                let l2tp = payload.get(1..).unwrap_or_default();
                let mut packet = Vec::new();
                ip_id = ip_id.wrapping_add(1);
                if ip::IPV4_HEADER_LEN + ip::UDP_HEADER_LEN + l2tp.len() > usize::from(u16::MAX)
                    || l2tp::capture::build_ipv4_udp(from, to, l2tp, ip_id, &mut packet).is_err()
                {
                    continue;
                }
                if op & 0x80 != 0 {
                    to_nat(&mut nat, now, false, &mut packet, &mut outcome);
                } else {
                    to_master(&mut master, now, &mut packet, &mut outcome);
                }
            }
            _ => {
                let _ = master.status();
                let _ = nat.stats();
                let _ = nat.table();
            }
        }
    }
    outcome
}

fn to_master(
    master: &mut Master,
    now: Instant,
    packet: &mut [u8],
    outcome: &mut ForwardersOutcome,
) {
    let before = checksums(packet);
    let copy = packet.to_vec();
    match master.handle_packet(now, packet) {
        MasterVerdict::Forward { to, .. } => {
            assert_rewrite_kept(before, packet, "the master");
            let view = Ipv4Udp::new_checked(&*packet).expect("checked above");
            assert_eq!(
                view.dst(),
                to,
                "the master forwards to another address than it wrote"
            );
            outcome.master_forwarded += 1;
        }
        MasterVerdict::Drop(_) => assert_eq!(packet, &copy[..], "the master changed a drop"),
        MasterVerdict::Parked => assert_eq!(packet, &copy[..], "the master changed a parked one"),
    }
}

fn to_nat(
    nat: &mut Nat,
    now: Instant,
    from_lan: bool,
    packet: &mut [u8],
    outcome: &mut ForwardersOutcome,
) {
    let before = checksums(packet);
    let copy = packet.to_vec();
    let verdict = if from_lan {
        nat.from_lan(now, packet)
    } else {
        nat.from_public(now, packet)
    };
    match verdict {
        NatVerdict::ToPublic => {
            assert_rewrite_kept(before, packet, "the NAT (to public)");
            let view = Ipv4Udp::new_checked(&*packet).expect("checked above");
            assert_eq!(view.src(), CLUSTER_ADDR, "the NAT leaked a LAN source");
            outcome.nat_forwarded += 1;
        }
        NatVerdict::ToLan { endpoint } => {
            assert_rewrite_kept(before, packet, "the NAT (to LAN)");
            let view = Ipv4Udp::new_checked(&*packet).expect("checked above");
            assert_eq!(
                view.dst(),
                endpoint,
                "the NAT sends elsewhere than it wrote"
            );
            outcome.nat_forwarded += 1;
        }
        NatVerdict::Drop(_) => assert_eq!(packet, &copy[..], "the NAT changed a drop"),
    }
}

// ------------------------------------------------------------------------------------------
// capture

/// What [`capture`] saw, for the replay test's checks on the seeds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureOutcome {
    pub records: u64,
    pub udp: u64,
    pub l2tp: u64,
}

/// Reads the bytes as a pcap or pcapng file with the project's reader, to the end or the first
/// error. The UDP datagrams found are written again with the project's writer and must read
/// back the same; each payload also goes through the codec harness. The bytes are also decoded
/// as one frame of every linktype the reader knows.
pub fn capture(data: &[u8]) -> CaptureOutcome {
    let mut outcome = CaptureOutcome::default();
    for linktype in Linktype::SUPPORTED {
        let _ = decode_frame(linktype, data);
    }
    let Ok(mut reader) = l2tp::capture::CaptureReader::new(Cursor::new(data), "fuzz") else {
        return outcome;
    };
    let _ = reader.format();
    let mut written = CaptureWriter::new(Vec::new(), Linktype::RAW).expect("pcap header");
    let mut datagrams = Vec::new();
    while let Some(record) = reader.next_datagram() {
        outcome.records += 1;
        // Every record takes at least a block or record header of the input.
        assert!(
            outcome.records <= data.len() as u64,
            "the reader does not move on"
        );
        let Ok(record) = record else {
            continue;
        };
        if let RecordKind::Udp(udp) = record.kind {
            outcome.udp += 1;
            if codec(udp.payload).parsed > 0 {
                outcome.l2tp += 1;
            }
            if datagrams.len() < 16
                && written
                    .write_udp(record.timestamp, udp.src, udp.dst, udp.payload)
                    .is_ok()
            {
                datagrams.push((udp.src, udp.dst, udp.payload.to_vec()));
            }
        }
    }
    let bytes = written.into_inner().expect("writing to memory");
    let mut again =
        l2tp::capture::CaptureReader::new(Cursor::new(bytes), "again").expect("our own pcap");
    for (src, dst, payload) in datagrams {
        let record = match again.next_datagram() {
            Some(Ok(record)) => record,
            Some(Err(err)) => panic!("our own pcap does not read back: {err}"),
            None => panic!("our own pcap lost a datagram"),
        };
        match record.kind {
            RecordKind::Udp(udp) => {
                assert_eq!((udp.src, udp.dst), (src, dst), "addresses read back");
                assert_eq!(udp.payload, &payload[..], "payload read back");
            }
            other => panic!("our own pcap reads back as {other:?}"),
        }
    }
    outcome
}
