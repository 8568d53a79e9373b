//! The cluster master in virtual time: dispatch policies, retransmissions, routing by Tunnel ID,
//! reports that stop, are forged or replayed, and the bytes it forwards.
//!
//! Sans-IO: nothing here opens a socket, so the lab's address ranges appear only as bytes.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use l2tp::capture::build_ipv4_udp;
use l2tp::time::Instant;
use l2tp::wire::{AvpRepr, AvpValue, ControlMessage, HeaderRepr, MessageType, PacketRepr};
use pnet_packet::ipv4::{self, Ipv4Packet};
use pnet_packet::udp::{self, UdpPacket};
use pnet_packet::Packet;
use proptest::prelude::*;
use reference::cluster::{
    seal, seal_claims, ClaimOp, EndpointState, LoadReport, TunnelClaim, TunnelClaims, ViewEntry,
};
use reference::master::{
    AdminState, DropReason, Master, MasterConfig, MemberState, Policy, ReportOutcome,
    ReportRejection, Verdict, L2TP_PORT, SCCRQ_LOST_AFTER,
};

/// A report that comes a little after the SCCRQs it counts.
const REPORT_LAG: Duration = Duration::from_millis(100);

const CLUSTER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const KEY: &[u8] = b"the cluster's report key";
const SECOND: Duration = Duration::from_secs(1);

fn lan(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 0, 10 + n)
}

fn initiator(n: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, n), port)
}

fn name(n: u8) -> String {
    format!("te{n}")
}

/// Endpoint n assigns Tunnel IDs n*1000 ..= n*1000+999 (te0: 9000 ..= 9999, as 0 is no ID).
fn block(n: u8) -> (u16, u16) {
    let first = if n == 0 { 9000 } else { u16::from(n) * 1000 };
    (first, first + 999)
}

fn sccrq_message(assigned: u16, ns: u16) -> ControlMessage<'static> {
    ControlMessage {
        header: HeaderRepr::control(0, 0, ns, 0),
        avps: vec![
            AvpRepr::mandatory(AvpValue::MessageType(MessageType::Sccrq)),
            AvpRepr::mandatory(AvpValue::ProtocolVersion {
                version: 1,
                revision: 0,
            }),
            AvpRepr::mandatory(AvpValue::HostName(Cow::Borrowed(b"lac.example"))),
            AvpRepr::mandatory(AvpValue::FramingCapabilities(3)),
            AvpRepr::mandatory(AvpValue::AssignedTunnelId(assigned)),
        ],
    }
}

fn sccrq(assigned: u16) -> Vec<u8> {
    sccrq_message(assigned, 0).to_vec(None).unwrap()
}

/// A control message (SCCCN, StopCCN, ...) or ZLB to an established tunnel.
fn control(kind: Option<MessageType>, tunnel: u16) -> Vec<u8> {
    ControlMessage {
        header: HeaderRepr::control(tunnel, 0, 1, 1),
        avps: kind
            .map(|kind| vec![AvpRepr::mandatory(AvpValue::MessageType(kind))])
            .unwrap_or_default(),
    }
    .to_vec(None)
    .unwrap()
}

fn data(tunnel: u16, session: u16, frame: &[u8]) -> Vec<u8> {
    let packet = PacketRepr::Data {
        header: HeaderRepr::data(tunnel, session),
        payload: frame,
    };
    let mut out = vec![0; packet.buffer_len()];
    packet.emit(&mut out, None).unwrap();
    out
}

fn ip(from: SocketAddrV4, to: SocketAddrV4, l2tp: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    build_ipv4_udp(from, to, l2tp, 0x1234, &mut out).unwrap();
    out
}

fn to_cluster(from: SocketAddrV4, l2tp: &[u8]) -> Vec<u8> {
    ip(from, SocketAddrV4::new(CLUSTER, L2TP_PORT), l2tp)
}

fn report(n: u8, tunnels: u32, capacity: u32, sequence: u64) -> LoadReport {
    LoadReport {
        endpoint: name(n),
        lan_addr: lan(n),
        global_addr: Some(Ipv4Addr::new(198, 18, 0, 10 + n)),
        tunnels,
        sessions: tunnels * 2,
        capacity,
        state: EndpointState::InService,
        sccrq_received: 0,
        tunnel_ids: vec![block(n)],
        sequence,
    }
}

/// A master, a virtual clock, and per-endpoint report sequences.
struct Cluster {
    master: Master,
    now: Instant,
    sequence: BTreeMap<u8, u64>,
}

impl Cluster {
    fn new(policy: Policy) -> Cluster {
        Cluster {
            master: Master::new(MasterConfig {
                policy,
                ..MasterConfig::new(CLUSTER, KEY)
            }),
            now: Instant::from_micros(1_000_000),
            sequence: BTreeMap::new(),
        }
    }

    fn with_endpoints(policy: Policy, endpoints: u8) -> Cluster {
        let mut cluster = Cluster::new(policy);
        for n in 1..=endpoints {
            cluster.report(n, 0, 1000);
        }
        cluster
    }

    fn next_sequence(&mut self, n: u8) -> u64 {
        let sequence = self.sequence.entry(n).or_insert(0);
        *sequence += 1;
        *sequence
    }

    fn send_report(&mut self, report: &LoadReport) -> ReportOutcome {
        let from = SocketAddrV4::new(report.lan_addr, 40000);
        self.master
            .handle_report(self.now, from, &seal(report, KEY))
    }

    /// A report from endpoint n that has received every SCCRQ the master sent it.
    fn report(&mut self, n: u8, tunnels: u32, capacity: u32) {
        let received = self.sent(n);
        self.report_received(n, tunnels, capacity, received);
    }

    fn report_received(&mut self, n: u8, tunnels: u32, capacity: u32, received: u64) {
        let sequence = self.next_sequence(n);
        let outcome = self.send_report(&LoadReport {
            sccrq_received: received,
            ..report(n, tunnels, capacity, sequence)
        });
        assert_eq!(outcome, ReportOutcome::Accepted);
    }

    /// SCCRQs the master sent endpoint n so far (0 before it is known).
    fn sent(&self, n: u8) -> u64 {
        self.master
            .status()
            .endpoints
            .iter()
            .find(|e| e.name == name(n))
            .map_or(0, |e| e.sccrq_sent)
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.master.handle_timeout(self.now);
    }

    fn packet(&mut self, packet: &mut [u8]) -> Verdict {
        self.master.handle_packet(self.now, packet)
    }

    /// The endpoint an SCCRQ went to, or why it was dropped.
    fn sccrq(&mut self, from: SocketAddrV4, assigned: u16) -> Result<String, DropReason> {
        let mut packet = to_cluster(from, &sccrq(assigned));
        match self.packet(&mut packet) {
            Verdict::Forward { endpoint, .. } => Ok(endpoint),
            Verdict::Drop(reason) => Err(reason),
            Verdict::Parked => panic!("parked: no agent here"),
        }
    }

    fn tunnel_packet(&mut self, l2tp: &[u8]) -> Result<String, DropReason> {
        let mut packet = to_cluster(initiator(200, 1701), l2tp);
        match self.packet(&mut packet) {
            Verdict::Forward { endpoint, .. } => Ok(endpoint),
            Verdict::Drop(reason) => Err(reason),
            Verdict::Parked => panic!("parked: no agent here"),
        }
    }

    fn endpoint(&self, n: u8) -> reference::master::EndpointStatus {
        self.master
            .status()
            .endpoints
            .into_iter()
            .find(|e| e.name == name(n))
            .expect("endpoint known")
    }
}

fn tally(choices: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for choice in choices {
        *counts.entry(choice).or_insert(0) += 1;
    }
    counts
}

#[test]
fn least_load_spreads_a_steady_stream_evenly() {
    // 300 SCCRQs from 30 initiators (10 tunnels each, distinct ports and IDs) over 10 s; each
    // endpoint reports every second the tunnels it has, which lags the master's choices.
    let mut cluster = Cluster::with_endpoints(Policy::LeastLoad, 3);
    let mut held: BTreeMap<String, u32> = BTreeMap::new();
    for i in 0..300u16 {
        if i % 30 == 0 {
            for n in 1..=3 {
                let tunnels = held.get(&name(n)).copied().unwrap_or(0);
                cluster.report(n, tunnels, 1000);
            }
        }
        let address = (i % 30) as u8 + 1;
        let endpoint = cluster
            .sccrq(initiator(address, 1701 + i / 30), 100 + i)
            .unwrap();
        *held.entry(endpoint).or_insert(0) += 1;
        cluster.advance(Duration::from_millis(33));
    }
    for n in 1..=3 {
        let got = held[&name(n)];
        assert!((90..=110).contains(&got), "{}: {got} of 300", name(n));
        assert_eq!(cluster.endpoint(n).dispatched_total, u64::from(got));
    }
    assert_eq!(cluster.master.status().totals.sccrq_dispatched, 300);
}

#[test]
fn least_load_spreads_a_burst_before_any_report_update() {
    let mut cluster = Cluster::with_endpoints(Policy::LeastLoad, 3);
    let choices: Vec<String> = (0..30)
        .map(|i| cluster.sccrq(initiator(1, 1701), i + 1).unwrap())
        .collect();
    let counts = tally(choices.iter().cloned());
    assert_eq!(counts.values().copied().collect::<Vec<_>>(), [10, 10, 10]);
    // Equal loads take turns in name order.
    assert_eq!(choices[..6], ["te1", "te2", "te3", "te1", "te2", "te3"]);
}

#[test]
fn least_load_follows_reported_load() {
    let mut cluster = Cluster::with_endpoints(Policy::LeastLoad, 3);
    cluster.report(1, 500, 1000);
    let counts = tally((0..100).map(|i| cluster.sccrq(initiator(1, 1701), i + 1).unwrap()));
    assert_eq!(counts.get("te1"), None, "the loaded endpoint gets nothing");
    assert_eq!(counts["te2"], 50);
    assert_eq!(counts["te3"], 50);

    // te1 at 40 while the others are empty: the others catch up first, then all share. (The
    // reports come after REPORT_LAG: they count every SCCRQ dispatched so far.)
    cluster.advance(REPORT_LAG);
    cluster.report(1, 40, 1000);
    cluster.report(2, 0, 1000);
    cluster.report(3, 0, 1000);
    let counts = tally((0..101).map(|i| cluster.sccrq(initiator(2, 1701), i + 1).unwrap()));
    assert_eq!(counts["te1"], 7);
    assert_eq!(counts["te2"], 47);
    assert_eq!(counts["te3"], 47);
}

#[test]
fn a_report_does_not_forget_sccrqs_it_has_not_received_yet() {
    let mut cluster = Cluster::with_endpoints(Policy::LeastLoad, 3);
    for i in 0..30 {
        cluster.sccrq(initiator(1, 1701), i + 1).unwrap();
    }
    // te1's report was written when 4 of its 10 SCCRQs had reached it, however late it comes:
    // the 6 others stay in flight, so the next ones do not all go to te1.
    cluster.advance(SCCRQ_LOST_AFTER / 2);
    cluster.report_received(1, 4, 1000, 4);
    let te1 = cluster.endpoint(1);
    assert_eq!((te1.in_flight, te1.dispatched_since_report), (6, 0));
    let counts = tally((0..30).map(|i| cluster.sccrq(initiator(2, 1701), i + 1).unwrap()));
    assert_eq!(counts.values().copied().collect::<Vec<_>>(), [10, 10, 10]);
    // The next report has them all: nothing of the first ten is in flight, the new 10 are.
    cluster.report_received(1, 10, 1000, 10);
    assert_eq!(cluster.endpoint(1).in_flight, 10);
    cluster.report(1, 20, 1000);
    assert_eq!(cluster.endpoint(1).in_flight, 0);
}

#[test]
fn an_sccrq_never_received_stops_counting_once_lost() {
    let mut cluster = Cluster::with_endpoints(Policy::LeastLoad, 1);
    for i in 0..5 {
        cluster.sccrq(initiator(1, 1701), i + 1).unwrap();
    }
    cluster.report_received(1, 3, 1000, 3);
    assert_eq!(cluster.endpoint(1).in_flight, 2);
    // Two were lost on the LAN: past SCCRQ_LOST_AFTER they are no longer in flight.
    cluster.advance(SCCRQ_LOST_AFTER);
    cluster.report_received(1, 3, 1000, 3);
    assert_eq!(cluster.endpoint(1).in_flight, 0);
}

#[test]
fn an_endpoint_that_restarts_counts_from_zero_again() {
    let mut cluster = Cluster::with_endpoints(Policy::LeastLoad, 1);
    for i in 0..50 {
        cluster.sccrq(initiator(1, 1701), i + 1).unwrap();
    }
    cluster.report(1, 50, 1000);
    cluster.advance(2 * SCCRQ_LOST_AFTER);
    for i in 0..3 {
        cluster.sccrq(initiator(2, 1701), i + 1).unwrap();
    }
    // Restarted: it has received 2 since; its count went back from 50. Not 50 - 2 (a wrap),
    // nor the 53 sent in all: at most the 3 of the last second are in flight.
    cluster.report_received(1, 2, 1000, 2);
    assert_eq!(cluster.endpoint(1).in_flight, 3);
    cluster.report_received(1, 3, 1000, 3);
    assert_eq!(cluster.endpoint(1).in_flight, 2);
}

#[test]
fn sccrqs_received_from_elsewhere_never_make_in_flight_negative() {
    let mut cluster = Cluster::with_endpoints(Policy::LeastLoad, 1);
    cluster.sccrq(initiator(1, 1701), 1).unwrap();
    // A probe dialled te1 directly 40 times: it received more than the master sent it.
    cluster.report_received(1, 41, 1000, 41);
    assert_eq!(cluster.endpoint(1).in_flight, 0);
    cluster.sccrq(initiator(1, 1701), 2).unwrap();
    cluster.report_received(1, 42, 1000, 41);
    assert_eq!(cluster.endpoint(1).in_flight, 1);
}

#[test]
fn least_load_is_relative_to_capacity_and_skips_full_endpoints() {
    let mut cluster = Cluster::new(Policy::LeastLoad);
    cluster.report(1, 0, 100);
    cluster.report(2, 0, 300);
    let counts = tally((0..100).map(|i| cluster.sccrq(initiator(1, 1701), i + 1).unwrap()));
    assert_eq!(counts["te1"], 25);
    assert_eq!(counts["te2"], 75);

    // Full by its own report: no SCCRQ goes there; all full: NoCapacity.
    cluster.advance(REPORT_LAG);
    cluster.report(1, 100, 100);
    cluster.report(2, 299, 300);
    assert_eq!(cluster.sccrq(initiator(2, 1701), 1).as_deref(), Ok("te2"));
    assert_eq!(
        cluster.sccrq(initiator(2, 1701), 2),
        Err(DropReason::NoCapacity)
    );
    cluster.report(3, 0, 0);
    assert_eq!(
        cluster.sccrq(initiator(2, 1701), 3),
        Err(DropReason::NoCapacity)
    );
    assert_eq!(cluster.master.status().drops.no_capacity, 2);
}

#[test]
fn round_robin_rotates_exactly() {
    let mut cluster = Cluster::with_endpoints(Policy::RoundRobin, 3);
    // Reported load does not matter to round-robin.
    cluster.report(1, 900, 1000);
    let choices: Vec<String> = (0..9)
        .map(|i| cluster.sccrq(initiator(i as u8 + 1, 1701), 1).unwrap())
        .collect();
    assert_eq!(
        choices,
        ["te1", "te2", "te3", "te1", "te2", "te3", "te1", "te2", "te3"]
    );
    // An endpoint that joins takes its place in name order; the turn stays with te1.
    cluster.report(0, 0, 1000);
    let choices: Vec<String> = (0..8)
        .map(|i| cluster.sccrq(initiator(i as u8 + 20, 1701), 1).unwrap())
        .collect();
    assert_eq!(
        choices,
        ["te1", "te2", "te3", "te0", "te1", "te2", "te3", "te0"]
    );
    // A drained endpoint drops out of the rotation.
    assert!(cluster.master.drain("te2"));
    let choices: Vec<String> = (0..6)
        .map(|i| cluster.sccrq(initiator(i as u8 + 40, 1701), 1).unwrap())
        .collect();
    assert_eq!(choices, ["te1", "te3", "te0", "te1", "te3", "te0"]);
}

#[test]
fn leaky_bucket_respects_rate_and_burst() {
    let (rate, burst) = (2.0, 5);
    let mut cluster = Cluster::with_endpoints(Policy::LeakyBucket { rate, burst }, 2);

    // A burst at one instant: each endpoint takes `burst`, the rest is dropped.
    let first: Vec<_> = (0..20)
        .map(|i| cluster.sccrq(initiator(1, 1701), i + 1))
        .collect();
    let sent = tally(first.iter().filter_map(|r| r.clone().ok()));
    assert_eq!(sent["te1"], 5);
    assert_eq!(sent["te2"], 5);
    assert_eq!(
        first
            .iter()
            .filter(|r| **r == Err(DropReason::NoCapacity))
            .count(),
        10
    );

    // Then 20 SCCRQs a second for 10 s: each endpoint takes `rate` a second, no more.
    let mut times: BTreeMap<String, Vec<Instant>> = BTreeMap::new();
    for i in 0..200u16 {
        cluster.advance(Duration::from_millis(50));
        if i % 20 == 0 {
            cluster.report(1, 0, 1000);
            cluster.report(2, 0, 1000);
        }
        if let Ok(endpoint) = cluster.sccrq(initiator(2, 1701), i + 1) {
            times.entry(endpoint).or_default().push(cluster.now);
        }
    }
    for (endpoint, times) in &times {
        // 10 s at 2 a second, give or take the token in hand at the edges.
        assert!(
            (19..=21).contains(&times.len()),
            "{endpoint}: {}",
            times.len()
        );
        // In any window of w seconds an endpoint takes at most burst + rate * w.
        for (i, start) in times.iter().enumerate() {
            for (j, end) in times.iter().enumerate().skip(i) {
                let window = end.saturating_duration_since(*start).as_secs_f64();
                let taken = (j - i + 1) as f64;
                assert!(taken <= f64::from(burst) + rate * window + 1e-9);
            }
        }
    }
    let status = cluster.master.status();
    assert!(status.endpoints.iter().all(|e| e.tokens.is_some()));
    assert_eq!(
        status.drops.no_capacity,
        10 + 200 - times.values().map(Vec::len).sum::<usize>() as u64
    );

    // Idle long enough and the buckets are full again, but no fuller.
    cluster.advance(Duration::from_secs(30));
    cluster.report(1, 0, 1000);
    cluster.report(2, 0, 1000);
    let again = (0..20)
        .filter(|i| cluster.sccrq(initiator(3, 1701), i + 1).is_ok())
        .count();
    assert_eq!(again, 10);
}

#[test]
fn a_retransmitted_sccrq_goes_where_the_first_went() {
    let mut cluster = Cluster::with_endpoints(Policy::LeastLoad, 3);
    let lac = initiator(7, 1701);
    let first = cluster.sccrq(lac, 42).unwrap();
    let n: u8 = first[2..].parse().unwrap();

    // Loads change: the first choice is now by far the busiest.
    cluster.advance(SECOND);
    for other in 1..=3 {
        cluster.report(other, if other == n { 900 } else { 0 }, 1000);
    }
    // Same address, port and Assigned Tunnel ID: a retransmission (its Nr may differ).
    let mut again = to_cluster(lac, &sccrq_message(42, 0).to_vec(None).unwrap());
    match cluster.packet(&mut again) {
        Verdict::Forward { endpoint, to } => {
            assert_eq!(endpoint, first);
            assert_eq!(to, lan(n));
        }
        other => panic!("{other:?}"),
    }
    let status = cluster.endpoint(n);
    assert_eq!(status.sccrq_retransmitted, 1);
    assert_eq!(status.dispatched_total, 1);
    // The retransmission is on its way to the endpoint, as any SCCRQ sent since the report.
    assert_eq!(status.dispatched_since_report, 1);

    // A new Assigned Tunnel ID from the same address, or the same ID from another port, is a
    // new tunnel: it goes to a less loaded endpoint.
    assert_ne!(cluster.sccrq(lac, 43).unwrap(), first);
    assert_ne!(cluster.sccrq(initiator(7, 1702), 42).unwrap(), first);

    // Drained, the first endpoint still gets the retransmissions: it is alive and has the
    // half-open tunnel (out of service or deactivated it would not: see below).
    cluster.master.drain(&first);
    assert_eq!(cluster.sccrq(lac, 42).unwrap(), first);

    // After the dispatch memory the same key is a new request.
    cluster.advance(Duration::from_secs(61));
    for other in 1..=3 {
        cluster.report(other, if other == n { 900 } else { 0 }, 1000);
    }
    assert_ne!(cluster.sccrq(lac, 42).unwrap(), first);
    assert_eq!(cluster.master.status().totals.sccrq_retransmitted, 2);
}

#[test]
fn hidden_assigned_tunnel_ids_are_told_apart_by_their_ciphertext() {
    let mut cluster = Cluster::with_endpoints(Policy::RoundRobin, 3);
    let hidden_sccrq = |vector: &'static [u8]| {
        let mut message = sccrq_message(42, 0);
        message.avps.insert(
            1,
            AvpRepr::mandatory(AvpValue::RandomVector(Cow::Borrowed(vector))),
        );
        message.avps.last_mut().unwrap().hidden = true;
        message.to_vec(Some(b"tunnel secret")).unwrap()
    };
    let lac = initiator(9, 1701);
    let forward =
        |cluster: &mut Cluster, l2tp: &[u8]| match cluster.packet(&mut to_cluster(lac, l2tp)) {
            Verdict::Forward { endpoint, .. } => endpoint,
            other => panic!("{other:?}"),
        };
    let one = hidden_sccrq(b"vector one");
    let first = forward(&mut cluster, &one);
    assert_eq!(forward(&mut cluster, &one), first);
    assert_ne!(forward(&mut cluster, &hidden_sccrq(b"vector two")), first);
}

#[test]
fn other_packets_follow_the_tunnel_id_blocks() {
    let mut cluster = Cluster::with_endpoints(Policy::LeastLoad, 3);
    let cases: [(Vec<u8>, Result<&str, DropReason>); 9] = [
        (control(Some(MessageType::Scccn), 1000), Ok("te1")),
        (control(Some(MessageType::Icrq), 1999), Ok("te1")),
        (data(2000, 7, b"\xff\x03\xc0\x21"), Ok("te2")),
        (control(None, 2500), Ok("te2")), // ZLB
        (control(Some(MessageType::StopCcn), 3999), Ok("te3")),
        (data(999, 1, b"x"), Err(DropReason::UnknownTunnel)),
        (data(4000, 1, b"x"), Err(DropReason::UnknownTunnel)),
        // Tunnel ID 0 but no SCCRQ: nobody's.
        (
            control(Some(MessageType::StopCcn), 0),
            Err(DropReason::UnknownTunnel),
        ),
        (control(None, 0), Err(DropReason::UnknownTunnel)),
    ];
    for (l2tp, expected) in &cases {
        assert_eq!(
            cluster.tunnel_packet(l2tp),
            expected.map(String::from),
            "{l2tp:02x?}"
        );
    }
    assert_eq!(cluster.endpoint(1).forwarded, 2);
    assert_eq!(cluster.endpoint(2).forwarded, 2);
    assert_eq!(cluster.endpoint(3).forwarded, 1);
    assert_eq!(cluster.endpoint(1).dispatched_total, 0);
    let status = cluster.master.status();
    assert_eq!(status.totals.forwarded, 5);
    assert_eq!(status.drops.unknown_tunnel, 4);

    // te1 moves to other blocks: the old ones are free, the new ones route to it.
    let sequence = cluster.next_sequence(1);
    let moved = LoadReport {
        tunnel_ids: vec![(5000, 5099), (60000, 60000)],
        ..report(1, 0, 1000, sequence)
    };
    assert_eq!(cluster.send_report(&moved), ReportOutcome::Accepted);
    assert_eq!(
        cluster.tunnel_packet(&data(1000, 1, b"x")),
        Err(DropReason::UnknownTunnel)
    );
    assert_eq!(
        cluster.tunnel_packet(&data(5050, 1, b"x")).as_deref(),
        Ok("te1")
    );
    assert_eq!(
        cluster.tunnel_packet(&data(60000, 1, b"x")).as_deref(),
        Ok("te1")
    );

    // A claim on another endpoint's IDs is refused whole and changes nothing.
    let sequence = cluster.next_sequence(3);
    let greedy = LoadReport {
        tunnel_ids: vec![(3000, 3999), (5099, 5200)],
        ..report(3, 0, 1000, sequence)
    };
    assert_eq!(
        cluster.send_report(&greedy),
        ReportOutcome::Rejected(ReportRejection::TunnelIdConflict)
    );
    assert_eq!(
        cluster.tunnel_packet(&data(5099, 1, b"x")).as_deref(),
        Ok("te1")
    );
    assert_eq!(
        cluster.tunnel_packet(&data(5100, 1, b"x")),
        Err(DropReason::UnknownTunnel)
    );
    assert_eq!(cluster.master.status().reports.tunnel_id_conflict, 1);
    assert_eq!(cluster.endpoint(3).sequence, sequence - 1);
}

#[test]
fn an_endpoint_whose_reports_stop_goes_out_of_service() {
    let mut cluster = Cluster::with_endpoints(Policy::LeastLoad, 3);
    let started = cluster.now;
    assert_eq!(
        cluster.master.poll_timeout(),
        Some(started + Duration::from_secs(3))
    );
    // te1 falls silent; te2 and te3 report every second.
    let mut choices = Vec::new();
    for second in 1..=5 {
        cluster.advance(SECOND);
        cluster.report(2, 0, 1000);
        cluster.report(3, 0, 1000);
        for i in 0..10 {
            let endpoint = cluster.sccrq(initiator(second, 1701), i + 1).unwrap();
            choices.push((second, endpoint));
        }
        let expected = if second < 3 {
            MemberState::InService
        } else {
            MemberState::OutOfService
        };
        assert_eq!(cluster.endpoint(1).state, expected, "second {second}");
    }
    assert!(choices
        .iter()
        .filter(|(second, _)| *second >= 3)
        .all(|(_, endpoint)| endpoint != "te1"));
    assert!(choices.iter().any(|(_, endpoint)| endpoint == "te1"));
    // Out of service, its tunnels' packets are dropped and counted.
    assert_eq!(
        cluster.tunnel_packet(&data(1500, 1, b"x")),
        Err(DropReason::EndpointOutOfService)
    );
    assert_eq!(cluster.endpoint(1).last_report_age_ms, 5000);
    // Its deadline has passed, so the timer now follows the others.
    assert_eq!(
        cluster.master.poll_timeout(),
        Some(cluster.now + Duration::from_secs(3))
    );

    // Silent all: no endpoint.
    cluster.advance(Duration::from_secs(3));
    assert_eq!(
        cluster.sccrq(initiator(99, 1701), 1),
        Err(DropReason::NoEndpoint)
    );
    assert_eq!(cluster.master.status().drops.no_endpoint, 1);
    assert_eq!(cluster.master.status().totals.in_service, 0);

    // A report brings it back, and its tunnels' packets with it.
    cluster.report(1, 0, 1000);
    assert_eq!(cluster.endpoint(1).state, MemberState::InService);
    assert_eq!(cluster.sccrq(initiator(99, 1701), 2).as_deref(), Ok("te1"));
    assert_eq!(
        cluster.tunnel_packet(&data(1500, 1, b"x")).as_deref(),
        Ok("te1")
    );
}

/// The endpoint a remembered SCCRQ went to, by its number.
fn number(endpoint: &str) -> u8 {
    endpoint[2..].parse().unwrap()
}

#[test]
fn a_retransmission_whose_endpoint_went_out_of_service_is_placed_anew() {
    let mut cluster = Cluster::with_endpoints(Policy::LeastLoad, 3);
    let lac = initiator(7, 1701);
    let first = cluster.sccrq(lac, 42).unwrap();
    let dead = number(&first);
    let others: Vec<u8> = (1..=3).filter(|&n| n != dead).collect();
    let keep_others_fresh = |cluster: &mut Cluster| {
        for &n in &others {
            cluster.report(n, 0, 1000);
        }
    };

    // Silent for less than the report timeout: still its endpoint's.
    cluster.advance(Duration::from_millis(2900));
    keep_others_fresh(&mut cluster);
    assert_eq!(cluster.sccrq(lac, 42).unwrap(), first);
    assert_eq!(cluster.endpoint(dead).sccrq_retransmitted, 1);

    // Three report intervals without a word: the next retransmission goes elsewhere, and the
    // ones after it follow the new choice.
    cluster.advance(Duration::from_millis(100));
    keep_others_fresh(&mut cluster);
    assert_eq!(cluster.endpoint(dead).state, MemberState::OutOfService);
    let second = cluster.sccrq(lac, 42).unwrap();
    assert_ne!(second, first);
    let status = cluster.master.status();
    assert_eq!(status.totals.sccrq_redispatched, 1);
    assert_eq!(status.totals.sccrq_dispatched, 2);
    assert_eq!(status.totals.sccrq_retransmitted, 1);
    assert_eq!(cluster.endpoint(dead).sccrq_redispatched_away, 1);
    assert_eq!(cluster.endpoint(number(&second)).dispatched_total, 1);
    assert_eq!(cluster.endpoint(number(&second)).dispatched_since_report, 1);
    assert_eq!(status.remembered_dispatches, 1);
    cluster.advance(SECOND);
    keep_others_fresh(&mut cluster);
    assert_eq!(cluster.sccrq(lac, 42).unwrap(), second);
    // The dead endpoint's return does not take it back: it never answered.
    cluster.report(dead, 0, 1000);
    assert_eq!(cluster.sccrq(lac, 42).unwrap(), second);
    assert_eq!(cluster.master.status().totals.sccrq_redispatched, 1);
    assert_eq!(cluster.master.status().totals.sccrq_retransmitted, 3);

    // Deactivated by the operator: its retransmissions are placed anew as well.
    let other_lac = initiator(8, 1701);
    let third = cluster.sccrq(other_lac, 9).unwrap();
    assert!(cluster.master.deactivate(&third));
    let fourth = cluster.sccrq(other_lac, 9).unwrap();
    assert_ne!(fourth, third);
    assert_eq!(cluster.endpoint(number(&third)).sccrq_redispatched_away, 1);
    assert_eq!(cluster.master.status().totals.sccrq_redispatched, 2);
}

#[test]
fn a_retransmission_nobody_can_take_waits_for_its_endpoint() {
    let mut cluster = Cluster::with_endpoints(Policy::RoundRobin, 2);
    let lac = initiator(3, 1701);
    assert_eq!(cluster.sccrq(lac, 5).as_deref(), Ok("te1"));
    // te1 falls silent; te2 is drained, so nobody is in service.
    cluster.master.drain("te2");
    cluster.advance(Duration::from_secs(3));
    cluster.report(2, 0, 1000);
    assert_eq!(cluster.sccrq(lac, 5), Err(DropReason::NoEndpoint));
    assert_eq!(cluster.master.status().totals.sccrq_redispatched, 0);
    // te1 reports again before the next retransmission: the SCCRQ goes back to it.
    cluster.report(1, 0, 1000);
    assert_eq!(cluster.sccrq(lac, 5).as_deref(), Ok("te1"));
    let status = cluster.master.status();
    assert_eq!(status.totals.sccrq_retransmitted, 1);
    assert_eq!(status.totals.sccrq_dispatched, 1);
    assert_eq!(status.drops.no_endpoint, 1);
}

#[test]
fn tunnel_packets_of_an_endpoint_out_of_service_are_dropped_until_it_reports() {
    let mut cluster = Cluster::with_endpoints(Policy::LeastLoad, 2);
    let packets = [
        data(1500, 1, b"\xff\x03\xc0\x21"),
        control(Some(MessageType::Scccn), 1000),
        control(None, 1999),
    ];
    cluster.advance(Duration::from_millis(2999));
    cluster.report(2, 0, 1000);
    for packet in &packets {
        assert_eq!(cluster.tunnel_packet(packet).as_deref(), Ok("te1"));
    }
    cluster.advance(Duration::from_millis(1));
    for packet in &packets {
        assert_eq!(
            cluster.tunnel_packet(packet),
            Err(DropReason::EndpointOutOfService)
        );
    }
    // The other endpoint's tunnels are untouched.
    assert_eq!(
        cluster.tunnel_packet(&data(2500, 1, b"x")).as_deref(),
        Ok("te2")
    );
    let status = cluster.master.status();
    assert_eq!(status.drops.endpoint_out_of_service, 3);
    assert_eq!(status.drops.total(), status.totals.dropped);
    assert_eq!(cluster.endpoint(1).dropped_out_of_service, 3);
    assert_eq!(cluster.endpoint(1).forwarded, 3);

    cluster.report(1, 0, 1000);
    for packet in &packets {
        assert_eq!(cluster.tunnel_packet(packet).as_deref(), Ok("te1"));
    }
    assert_eq!(cluster.endpoint(1).forwarded, 6);

    // Deactivated but reporting: its tunnels still get their packets; silent, they do not.
    cluster.master.deactivate("te1");
    assert_eq!(cluster.tunnel_packet(&packets[0]).as_deref(), Ok("te1"));
    cluster.advance(Duration::from_secs(3));
    cluster.report(2, 0, 1000);
    assert_eq!(cluster.endpoint(1).state, MemberState::Deactivated);
    assert_eq!(
        cluster.tunnel_packet(&packets[0]),
        Err(DropReason::EndpointOutOfService)
    );
}

#[test]
fn a_full_dispatch_memory_is_counted_and_forgets_the_oldest() {
    let mut cluster = Cluster {
        master: Master::new(MasterConfig {
            max_remembered: 2,
            ..MasterConfig::new(CLUSTER, KEY)
        }),
        ..Cluster::new(Policy::RoundRobin)
    };
    cluster.report(1, 0, 1000);
    cluster.report(2, 0, 1000);
    let lac = initiator(4, 1701);
    for id in 1..=3 {
        cluster.sccrq(lac, id).unwrap();
    }
    let status = cluster.master.status();
    assert_eq!(status.remembered_dispatches, 2);
    assert_eq!(status.remembered_limit, 2);
    assert_eq!(status.totals.remembered_evicted, 1);
    // The forgotten one's retransmission is a new request; the others are remembered.
    cluster.sccrq(lac, 3).unwrap();
    assert_eq!(cluster.master.status().totals.sccrq_retransmitted, 1);
    cluster.sccrq(lac, 1).unwrap();
    let status = cluster.master.status();
    assert_eq!(status.totals.sccrq_retransmitted, 1);
    assert_eq!(status.totals.sccrq_dispatched, 4);
    assert_eq!(status.totals.remembered_evicted, 2);
    assert_eq!(status.remembered_dispatches, 2);
}

#[test]
fn leaky_bucket_drops_are_charged_to_the_empty_buckets() {
    let (rate, burst) = (1.0, 3);
    let mut cluster = Cluster::with_endpoints(Policy::LeakyBucket { rate, burst }, 1);
    let outcomes: Vec<_> = (1..=10)
        .map(|id| cluster.sccrq(initiator(5, 1701), id))
        .collect();
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 3);
    let status = cluster.master.status();
    assert_eq!(status.drops.no_capacity, 7);
    assert_eq!(cluster.endpoint(1).bucket_drops, 7);
    assert_eq!(
        status.totals.sccrq_dispatched + status.drops.no_capacity,
        10
    );
    // Half a second later half a token has come back: still nothing; a second, one.
    cluster.advance(Duration::from_millis(500));
    assert_eq!(
        cluster.sccrq(initiator(5, 1701), 11),
        Err(DropReason::NoCapacity)
    );
    cluster.advance(Duration::from_millis(500));
    assert!(cluster.sccrq(initiator(5, 1701), 12).is_ok());
    assert_eq!(cluster.endpoint(1).bucket_drops, 8);
}

#[test]
fn drain_deactivate_activate() {
    let mut cluster = Cluster::with_endpoints(Policy::LeastLoad, 3);
    assert!(cluster.master.drain("te1"));
    assert!(cluster.master.deactivate("te2"));
    assert!(!cluster.master.drain("te9"));
    assert!(!cluster.master.deactivate("te9"));
    assert!(!cluster.master.activate("te9"));
    for i in 0..10 {
        assert_eq!(
            cluster.sccrq(initiator(1, 1701), i + 1).as_deref(),
            Ok("te3")
        );
    }
    // Existing tunnels keep their packets either way.
    assert_eq!(
        cluster.tunnel_packet(&data(1001, 1, b"x")).as_deref(),
        Ok("te1")
    );
    assert_eq!(
        cluster.tunnel_packet(&data(2001, 1, b"x")).as_deref(),
        Ok("te2")
    );

    let status = cluster.master.status();
    let states: Vec<_> = status
        .endpoints
        .iter()
        .map(|e| (e.state, e.admin))
        .collect();
    assert_eq!(
        states,
        [
            (MemberState::Draining, AdminState::Drained),
            (MemberState::Deactivated, AdminState::Deactivated),
            (MemberState::InService, AdminState::Active),
        ]
    );
    assert_eq!(status.totals.in_service, 1);
    assert_eq!(status.totals.capacity, 1000);

    // The operator's word outlives reports; a deactivated endpoint whose reports stop still
    // shows as deactivated.
    cluster.advance(Duration::from_secs(5));
    cluster.report(1, 0, 1000);
    cluster.report(3, 0, 1000);
    assert_eq!(cluster.endpoint(1).state, MemberState::Draining);
    assert_eq!(cluster.endpoint(2).state, MemberState::Deactivated);

    assert!(cluster.master.activate("te1"));
    assert!(cluster.master.activate("te2"));
    cluster.report(2, 0, 1000);
    cluster.report(3, 10, 1000);
    let counts = tally((0..32).map(|i| cluster.sccrq(initiator(2, 1701), i + 1).unwrap()));
    // te1 and te2 catch up with te3's 10, then the three share the last 12.
    assert_eq!(counts["te1"], 14);
    assert_eq!(counts["te2"], 14);
    assert_eq!(counts["te3"], 4);

    // An endpoint that says it is draining gets nothing new, and activate does not override it.
    let sequence = cluster.next_sequence(1);
    let draining = LoadReport {
        state: EndpointState::Draining,
        ..report(1, 0, 1000, sequence)
    };
    cluster.send_report(&draining);
    assert!(cluster.master.activate("te1"));
    assert_eq!(cluster.endpoint(1).state, MemberState::Draining);
    assert!((0..10).all(|i| cluster.sccrq(initiator(3, 1701), i + 1).unwrap() != "te1"));
}

#[test]
fn forged_and_replayed_reports_change_no_dispatch() {
    // Two masters get the same true reports and SCCRQs; one also gets every bad report.
    let mut attacked = Cluster::new(Policy::LeastLoad);
    let mut control = Cluster::new(Policy::LeastLoad);
    let old_te1 = report(1, 0, 1000, 1);
    let truth = [
        old_te1.clone(),
        report(1, 900, 1000, 2),
        report(2, 0, 1000, 1),
        report(3, 0, 1000, 1),
    ];
    for report in &truth {
        assert_eq!(attacked.send_report(report), ReportOutcome::Accepted);
        assert_eq!(control.send_report(report), ReportOutcome::Accepted);
    }

    let from = SocketAddrV4::new(lan(1), 40000);
    let lies = report(1, 0, 1000, 1_000);
    let mut tampered = seal(&report(1, 900, 1000, 3), KEY);
    let at = 5 + 8 + 2 + 3 + 4 + 5; // first byte of the tunnels field
    tampered[at + 3] = 0; // 900 = 0x384 -> 0x300
    let bad: Vec<(Vec<u8>, ReportRejection)> = vec![
        (seal(&lies, b"not the key"), ReportRejection::Forged),
        (tampered, ReportRejection::Forged),
        (
            seal(
                &LoadReport {
                    endpoint: "rogue".into(),
                    lan_addr: Ipv4Addr::new(198, 19, 0, 66),
                    ..lies.clone()
                },
                b"",
            ),
            ReportRejection::Forged,
        ),
        (seal(&old_te1, KEY), ReportRejection::Replayed),
        (seal(&truth[1], KEY), ReportRejection::Replayed),
        (b"\x00garbage".to_vec(), ReportRejection::Malformed),
        (
            seal(
                &LoadReport {
                    lan_addr: CLUSTER,
                    ..report(2, 0, 1000, 50)
                },
                KEY,
            ),
            ReportRejection::Malformed,
        ),
    ];
    for (bytes, why) in &bad {
        assert_eq!(
            attacked.master.handle_report(attacked.now, from, bytes),
            ReportOutcome::Rejected(*why)
        );
    }
    let reports = attacked.master.status().reports;
    assert_eq!(
        (
            reports.accepted,
            reports.forged,
            reports.replayed,
            reports.malformed
        ),
        (4, 3, 2, 2)
    );
    assert_eq!(
        attacked.master.status().endpoints.len(),
        3,
        "no rogue endpoint"
    );
    assert_eq!(attacked.endpoint(1).tunnels, 900);

    for i in 0..60 {
        let a = attacked.sccrq(initiator(1, 1701), i + 1);
        let c = control.sccrq(initiator(1, 1701), i + 1);
        assert_eq!(a, c);
        assert_ne!(a.as_deref(), Ok("te1"));
    }
}

/// Checks both checksums with a full recompute, and returns (src, dst, ports, L2TP payload).
fn verify(packet: &[u8]) -> (Ipv4Addr, Ipv4Addr, u16, u16, Vec<u8>) {
    let ip = Ipv4Packet::new(packet).unwrap();
    assert_eq!(
        ip.get_checksum(),
        ipv4::checksum(&ip),
        "IPv4 header checksum"
    );
    let udp = UdpPacket::new(ip.payload()).unwrap();
    let stored = udp.get_checksum();
    if stored != 0 {
        let computed = udp::ipv4_checksum(&udp, &ip.get_source(), &ip.get_destination());
        // A computed zero travels as all ones (RFC 768).
        assert_eq!(
            stored,
            if computed == 0 { 0xffff } else { computed },
            "UDP checksum"
        );
    }
    (
        ip.get_source(),
        ip.get_destination(),
        udp.get_source(),
        udp.get_destination(),
        udp.payload().to_vec(),
    )
}

/// Everything but the destination address and the two checksums is as it came in.
fn only_destination_changed(before: &[u8], after: &[u8], to: Ipv4Addr) {
    assert_eq!(before.len(), after.len());
    let (src, dst, sport, dport, payload) = verify(after);
    let (src0, _, sport0, dport0, payload0) = verify(before);
    assert_eq!((src, sport, dport), (src0, sport0, dport0));
    assert_eq!(dst, to);
    assert_eq!(payload, payload0);
    let changed: Vec<usize> = (0..before.len())
        .filter(|&i| before[i] != after[i])
        .collect();
    assert!(
        changed
            .iter()
            .all(|i| (10..12).contains(i) || (16..20).contains(i) || (26..28).contains(i)),
        "bytes changed: {changed:?}"
    );
}

#[test]
fn only_the_destination_changes_and_checksums_verify() {
    let mut cluster = Cluster::with_endpoints(Policy::RoundRobin, 3);
    let lac = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 77), 41234);
    let packets = [
        to_cluster(lac, &sccrq(7)),
        to_cluster(lac, &control(Some(MessageType::Scccn), 1001)),
        to_cluster(
            lac,
            &data(2002, 9, b"\xff\x03\x00\x21 an IPv4 datagram inside"),
        ),
    ];
    for before in packets {
        let mut after = before.clone();
        let Verdict::Forward { to, .. } = cluster.packet(&mut after) else {
            panic!("not forwarded");
        };
        only_destination_changed(&before, &after, to);
    }

    // A UDP checksum of zero (none) stays zero; the header checksum still follows.
    let mut before = to_cluster(lac, &data(3003, 1, b"no checksum"));
    before[26..28].copy_from_slice(&[0, 0]);
    let mut after = before.clone();
    let Verdict::Forward { to, .. } = cluster.packet(&mut after) else {
        panic!("not forwarded");
    };
    only_destination_changed(&before, &after, to);
    assert_eq!(after[26..28], [0, 0]);

    // Link padding after the datagram is neither read nor changed.
    let mut before = to_cluster(lac, &data(3003, 1, b"padded"));
    let len = before.len();
    before.extend_from_slice(&[0xee; 6]);
    let mut after = before.clone();
    assert!(matches!(
        cluster.packet(&mut after),
        Verdict::Forward { .. }
    ));
    assert_eq!(after[len..], [0xee; 6]);
    verify(&after[..len]);
}

#[test]
fn packets_that_are_not_for_the_master_are_dropped_and_counted() {
    let mut cluster = Cluster::new(Policy::LeastLoad);
    let lac = initiator(1, 1701);
    let good = to_cluster(lac, &sccrq(1));
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut packet = good.clone();
        f(&mut packet);
        packet
    };
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (good.clone(), DropReason::NoEndpoint),
        (
            ip(lac, SocketAddrV4::new(lan(1), 1701), &sccrq(1)),
            DropReason::NotClusterAddress,
        ),
        (
            ip(lac, SocketAddrV4::new(CLUSTER, 1702), &sccrq(1)),
            DropReason::NotL2tpPort,
        ),
        (with(&|p| p[9] = 6), DropReason::NotUdp),
        (with(&|p| p[6] |= 0x20), DropReason::Fragment), // more fragments
        (with(&|p| p[7] = 1), DropReason::Fragment),     // an offset
        (good[..good.len() - 1].to_vec(), DropReason::Malformed), // Total Length overruns
        (good[..19].to_vec(), DropReason::Malformed),
        (with(&|p| p[0] = 0x65), DropReason::Malformed), // IPv6 version nibble
        (with(&|p| p[0] = 0x44), DropReason::Malformed), // IHL below 5
        (
            with(&|p| p[24..26].copy_from_slice(&[0, 7])),
            DropReason::Malformed,
        ), // UDP length
        (with(&|p| p[29] = 0), DropReason::Malformed),   // L2TP version 0
        (to_cluster(lac, &[0xc8, 0x02, 0x00]), DropReason::Malformed),
    ];
    for (mut packet, reason) in cases {
        let before = packet.clone();
        assert_eq!(
            cluster.packet(&mut packet),
            Verdict::Drop(reason),
            "{reason:?}"
        );
        assert_eq!(packet, before, "a dropped packet is left as it was");
    }
    // An SCCRQ whose first AVP is not Message Type, or without an Assigned Tunnel ID.
    cluster.report(1, 0, 1000);
    let mut no_tid = sccrq_message(1, 0);
    no_tid.avps.pop();
    let mut first_not_type = sccrq_message(1, 0);
    first_not_type.avps.swap(0, 1);
    for message in [no_tid, first_not_type] {
        let mut packet = to_cluster(lac, &message.to_vec(None).unwrap());
        assert_eq!(
            cluster.packet(&mut packet),
            Verdict::Drop(DropReason::Malformed)
        );
    }
    let drops = cluster.master.status().drops;
    assert_eq!(drops.no_endpoint, 1);
    assert_eq!(drops.not_cluster_address, 1);
    assert_eq!(drops.not_l2tp_port, 1);
    assert_eq!(drops.not_udp, 1);
    assert_eq!(drops.fragment, 2);
    assert_eq!(drops.malformed, 9);
    assert_eq!(drops.total(), cluster.master.status().totals.dropped);
}

#[test]
fn dispatch_memory_expires_on_the_timer() {
    let mut cluster = Cluster::with_endpoints(Policy::LeastLoad, 2);
    cluster.sccrq(initiator(1, 1701), 1).unwrap();
    let dispatched = cluster.now;
    assert_eq!(cluster.master.status().remembered_dispatches, 1);
    // Reports keep te1/te2 fresh so that only the memory's deadline is left.
    for _ in 0..59 {
        cluster.advance(SECOND);
        cluster.report(1, 0, 1000);
        cluster.report(2, 0, 1000);
    }
    assert_eq!(cluster.master.status().remembered_dispatches, 1);
    let memory = dispatched + Duration::from_secs(60);
    assert!(cluster.master.poll_timeout().is_some_and(|t| t <= memory));
    cluster.now = memory;
    cluster.master.handle_timeout(memory);
    assert_eq!(cluster.master.status().remembered_dispatches, 0);
}

#[test]
fn status_serializes_for_the_cli() {
    let mut cluster = Cluster::with_endpoints(
        Policy::LeakyBucket {
            rate: 1.5,
            burst: 3,
        },
        2,
    );
    cluster.sccrq(initiator(1, 1701), 1).unwrap();
    cluster.master.deactivate("te2");
    cluster.advance(Duration::from_millis(1500));
    let json = serde_json::to_value(cluster.master.status()).unwrap();
    assert_eq!(
        json["policy"],
        serde_json::json!({"kind": "leaky_bucket", "rate": 1.5, "burst": 3})
    );
    assert_eq!(json["endpoints"][0]["name"], "te1");
    assert_eq!(json["endpoints"][0]["state"], "in_service");
    assert_eq!(json["endpoints"][0]["dispatched_since_report"], 1);
    assert_eq!(json["endpoints"][0]["last_report_age_ms"], 1500);
    assert_eq!(
        json["endpoints"][0]["tunnel_ids"],
        serde_json::json!([[1000, 1999]])
    );
    assert_eq!(json["endpoints"][1]["state"], "deactivated");
    assert_eq!(json["endpoints"][1]["global_addr"], "198.18.0.12");
    assert_eq!(json["drops"]["no_endpoint"], 0);
    assert_eq!(json["reports"]["accepted"], 2);
    assert_eq!(json["totals"]["sccrq_dispatched"], 1);
}

fn arbitrary_policy() -> impl Strategy<Value = Policy> {
    prop_oneof![
        Just(Policy::LeastLoad),
        Just(Policy::RoundRobin),
        (0.0f64..5.0, 0u32..4).prop_map(|(rate, burst)| Policy::LeakyBucket { rate, burst }),
    ]
}

proptest! {
    #[test]
    fn random_bytes_never_panic(
        policy in arbitrary_policy(),
        inputs in proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..120), 0u64..2_000_000),
            1..40,
        ),
    ) {
        let mut cluster = Cluster::with_endpoints(policy, 2);
        for (is_report, mut bytes, step) in inputs {
            cluster.now += Duration::from_micros(step);
            if is_report {
                let from = SocketAddrV4::new(lan(1), 1);
                cluster.master.handle_report(cluster.now, from, &bytes);
            } else {
                cluster.master.handle_packet(cluster.now, &mut bytes);
            }
            cluster.master.handle_timeout(cluster.now);
            let _ = cluster.master.poll_timeout();
        }
        let _ = cluster.master.status();
    }

    #[test]
    fn mutated_packets_never_panic(
        policy in arbitrary_policy(),
        which in 0usize..4,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let mut cluster = Cluster::with_endpoints(policy, 3);
        let lac = initiator(1, 1701);
        let l2tp = [
            sccrq(5),
            control(Some(MessageType::Scccn), 1001),
            data(2001, 1, b"frame"),
            control(None, 0),
        ];
        let mut packet = to_cluster(lac, &l2tp[which]);
        for (at, byte) in edits {
            let at = at % packet.len();
            packet[at] = byte;
        }
        if let Some(cut) = cut {
            packet.truncate(cut % (packet.len() + 1));
        }
        let before = packet.clone();
        match cluster.packet(&mut packet) {
            Verdict::Forward { to, .. } => {
                // Whatever got through has a destination on the LAN and nothing else changed.
                prop_assert!((1..=3).any(|n| lan(n) == to));
                let udp_checksum = usize::from(before[0] & 0x0f) * 4 + 6;
                let changed = (0..before.len()).filter(|&i| before[i] != packet[i]);
                for i in changed {
                    prop_assert!(
                        (10..12).contains(&i)
                            || (16..20).contains(&i)
                            || (udp_checksum..udp_checksum + 2).contains(&i),
                        "byte {} changed", i
                    );
                }
            }
            Verdict::Drop(_) | Verdict::Parked => prop_assert_eq!(&packet, &before),
        }
    }

    #[test]
    fn mutated_reports_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let mut cluster = Cluster::with_endpoints(Policy::LeastLoad, 1);
        let mut bytes = seal(&report(2, 1, 10, 7), KEY);
        for (at, byte) in edits {
            let at = at % bytes.len();
            bytes[at] = byte;
        }
        let from = SocketAddrV4::new(lan(2), 1);
        cluster.master.handle_report(cluster.now, from, &bytes);
    }

    #[test]
    fn incremental_checksums_match_a_full_recompute(
        src in any::<u32>(), sport in any::<u16>(), cluster_addr in any::<u32>(),
        lan_addr in 1u32..0xe000_0000, payload in proptest::collection::vec(any::<u8>(), 0..64),
        ip_id in any::<u16>(), tunnel in 1u16..1000,
    ) {
        let cluster_addr = Ipv4Addr::from(cluster_addr);
        let lan_addr = Ipv4Addr::from(lan_addr);
        prop_assume!(lan_addr != cluster_addr);
        let mut master = Master::new(MasterConfig::new(cluster_addr, KEY));
        let endpoint = LoadReport {
            lan_addr,
            tunnel_ids: vec![(1, 999)],
            ..report(1, 0, 10, 1)
        };
        master.handle_report(Instant::ZERO, SocketAddrV4::new(lan_addr, 1), &seal(&endpoint, KEY));
        let from = SocketAddrV4::new(Ipv4Addr::from(src), sport);
        let mut before = Vec::new();
        build_ipv4_udp(
            from,
            SocketAddrV4::new(cluster_addr, L2TP_PORT),
            &data(tunnel, 1, &payload),
            ip_id,
            &mut before,
        ).unwrap();
        let mut after = before.clone();
        prop_assert_eq!(
            master.handle_packet(Instant::ZERO, &mut after),
            Verdict::Forward { endpoint: "te1".into(), to: lan_addr }
        );
        only_destination_changed(&before, &after, lan_addr);
    }
}

/// An agent's claims message from endpoint n.
fn claims(n: u8, sequence: u64, claims: &[(ClaimOp, SocketAddrV4, u16)]) -> Vec<u8> {
    seal_claims(
        &TunnelClaims {
            endpoint: name(n),
            sequence,
            claims: claims
                .iter()
                .map(|&(op, initiator, tunnel_id)| TunnelClaim {
                    op,
                    initiator,
                    tunnel_id,
                })
                .collect(),
        },
        KEY,
    )
}

/// A report of an agent's LNS: no Tunnel ID blocks.
fn agent_report(cluster: &mut Cluster, n: u8) {
    let sequence = cluster.next_sequence(n);
    let outcome = cluster.send_report(&LoadReport {
        tunnel_ids: Vec::new(),
        ..report(n, 0, 1000, sequence)
    });
    assert_eq!(outcome, ReportOutcome::Accepted);
}

#[test]
fn claimed_tunnels_route_by_initiator_port_and_tunnel_id() {
    let mut cluster = Cluster::new(Policy::LeastLoad);
    cluster.report(1, 0, 1000); // ours: Tunnel IDs 1000..=1999
    agent_report(&mut cluster, 5);
    agent_report(&mut cluster, 6);
    let (lac, other_port) = (initiator(1, 1701), initiator(1, 1702));
    let from = SocketAddrV4::new(lan(5), 40000);
    // te5's LNS picked 1500, inside te1's block, for lac; te6's picked 1500 for another port.
    let sealed = claims(5, 1, &[(ClaimOp::Claim, lac, 1500)]);
    assert_eq!(
        cluster.master.handle_report(cluster.now, from, &sealed),
        ReportOutcome::Accepted
    );
    let sealed = claims(6, 1, &[(ClaimOp::Claim, other_port, 1500)]);
    cluster.master.handle_report(cluster.now, from, &sealed);
    let route = |cluster: &mut Cluster, from: SocketAddrV4, tunnel: u16| {
        let mut packet = to_cluster(from, &control(Some(MessageType::Scccn), tunnel));
        match cluster.packet(&mut packet) {
            Verdict::Forward { endpoint, .. } => Ok(endpoint),
            Verdict::Drop(reason) => Err(reason),
            Verdict::Parked => panic!("parked: no agent here"),
        }
    };
    assert_eq!(route(&mut cluster, lac, 1500).as_deref(), Ok("te5"));
    assert_eq!(route(&mut cluster, other_port, 1500).as_deref(), Ok("te6"));
    // Unclaimed: the blocks decide, as before.
    assert_eq!(
        route(&mut cluster, initiator(2, 1701), 1500).as_deref(),
        Ok("te1")
    );
    assert_eq!(
        route(&mut cluster, initiator(2, 1701), 7),
        Err(DropReason::UnknownTunnel)
    );
    // Each message is acked like a report, to where it came from.
    let acks: Vec<_> = std::iter::from_fn(|| cluster.master.poll_ack()).collect();
    assert_eq!(acks.len(), 3 + 2, "3 reports and 2 claims");
    let status = cluster.master.status();
    assert_eq!((status.claimed_tunnels, status.claims.claimed), (2, 2));
    assert_eq!(cluster.endpoint(5).claimed_tunnels, 1);

    // Released: the packet goes back to the block's owner.
    let sealed = claims(5, 2, &[(ClaimOp::Release, lac, 1500)]);
    cluster.master.handle_report(cluster.now, from, &sealed);
    assert_eq!(route(&mut cluster, lac, 1500).as_deref(), Ok("te1"));
    assert_eq!(cluster.master.status().claims.released, 1);
}

#[test]
fn bad_claims_are_refused_counted_and_misroute_nothing() {
    let mut cluster = Cluster::new(Policy::LeastLoad);
    agent_report(&mut cluster, 5);
    agent_report(&mut cluster, 6);
    let lac = initiator(1, 1701);
    let from = SocketAddrV4::new(lan(6), 40000);
    let send = |cluster: &mut Cluster, bytes: &[u8]| {
        cluster.master.handle_report(cluster.now, from, bytes)
    };
    assert_eq!(
        send(&mut cluster, &claims(5, 10, &[(ClaimOp::Claim, lac, 77)])),
        ReportOutcome::Accepted
    );
    // te6 claims the tunnel te5 holds: refused on its own, its other claim stands.
    let both = claims(
        6,
        1,
        &[(ClaimOp::Claim, lac, 77), (ClaimOp::Claim, lac, 78)],
    );
    assert_eq!(send(&mut cluster, &both), ReportOutcome::Accepted);
    // Forged, replayed, from an endpoint never heard of, and of another version.
    let forged = seal_claims(
        &TunnelClaims {
            endpoint: name(6),
            sequence: 99,
            claims: vec![TunnelClaim {
                op: ClaimOp::Claim,
                initiator: lac,
                tunnel_id: 79,
            }],
        },
        b"not the key",
    );
    assert_eq!(
        send(&mut cluster, &forged),
        ReportOutcome::Rejected(ReportRejection::Forged)
    );
    assert_eq!(
        send(&mut cluster, &both),
        ReportOutcome::Rejected(ReportRejection::Replayed)
    );
    assert_eq!(
        send(&mut cluster, &claims(9, 1, &[(ClaimOp::Claim, lac, 80)])),
        ReportOutcome::Rejected(ReportRejection::UnknownEndpoint)
    );
    let mut old = claims(6, 2, &[(ClaimOp::Claim, lac, 81)]);
    old[4] = 1;
    assert_eq!(
        send(&mut cluster, &old),
        ReportOutcome::Rejected(ReportRejection::BadVersion)
    );
    // te6 cannot release te5's tunnel either.
    send(&mut cluster, &claims(6, 3, &[(ClaimOp::Release, lac, 77)]));

    let status = cluster.master.status();
    let c = status.claims;
    assert_eq!(
        (c.messages, c.claimed, c.conflict, c.forged, c.replayed),
        (3, 2, 1, 1, 1)
    );
    assert_eq!((c.unknown_endpoint, c.bad_version, c.released), (1, 1, 0));
    let route = |cluster: &mut Cluster, tunnel: u16| {
        let mut packet = to_cluster(lac, &control(None, tunnel));
        match cluster.packet(&mut packet) {
            Verdict::Forward { endpoint, .. } => Ok(endpoint),
            Verdict::Drop(reason) => Err(reason),
            Verdict::Parked => panic!("parked: no agent here"),
        }
    };
    assert_eq!(route(&mut cluster, 77).as_deref(), Ok("te5"));
    assert_eq!(route(&mut cluster, 78).as_deref(), Ok("te6"));
    assert_eq!(route(&mut cluster, 79), Err(DropReason::UnknownTunnel));
    assert_eq!(route(&mut cluster, 81), Err(DropReason::UnknownTunnel));
}

#[test]
fn idle_claims_are_forgotten_and_used_ones_kept() {
    let mut cluster = Cluster::new(Policy::LeastLoad);
    agent_report(&mut cluster, 5);
    let from = SocketAddrV4::new(lan(5), 40000);
    let (busy, idle) = (initiator(1, 1701), initiator(2, 1701));
    let sealed = claims(
        5,
        1,
        &[(ClaimOp::Claim, busy, 10), (ClaimOp::Claim, idle, 11)],
    );
    cluster.master.handle_report(cluster.now, from, &sealed);
    let timeout = MasterConfig::new(CLUSTER, KEY).claim_timeout;
    for _ in 0..(timeout.as_secs() / 10 + 2) {
        cluster.advance(Duration::from_secs(10));
        agent_report(&mut cluster, 5);
        let mut packet = to_cluster(busy, &control(None, 10));
        assert!(matches!(
            cluster.packet(&mut packet),
            Verdict::Forward { .. }
        ));
    }
    let status = cluster.master.status();
    assert_eq!((status.claimed_tunnels, status.claims.expired), (1, 1));
}

#[test]
fn a_report_of_another_version_is_refused_and_counted() {
    let mut cluster = Cluster::with_endpoints(Policy::LeastLoad, 1);
    let mut old = seal(&report(1, 0, 1000, 50), KEY);
    old[4] = 1;
    let from = SocketAddrV4::new(lan(1), 40000);
    assert_eq!(
        cluster.master.handle_report(cluster.now, from, &old),
        ReportOutcome::Rejected(ReportRejection::BadVersion)
    );
    assert_eq!(cluster.master.status().reports.bad_version, 1);
    assert_eq!(cluster.endpoint(1).sequence, 1, "nothing of it applied");
}

#[test]
fn an_unresponsive_lns_gets_no_new_tunnels_and_loses_its_retransmissions() {
    let mut cluster = Cluster::with_endpoints(Policy::RoundRobin, 2);
    let lac = initiator(1, 1701);
    let first = cluster.sccrq(lac, 5).unwrap();
    let n: u8 = first[2..].parse().unwrap();
    let sequence = cluster.next_sequence(n);
    cluster.send_report(&LoadReport {
        state: EndpointState::Unresponsive,
        sccrq_received: 1,
        ..report(n, 0, 1000, sequence)
    });
    assert_eq!(cluster.endpoint(n).state, MemberState::Unresponsive);
    // Its LNS never answered: the retransmission goes elsewhere, and so does everything new.
    let again = cluster.sccrq(lac, 5).unwrap();
    assert_ne!(again, first);
    assert!((0..6).all(|i| cluster.sccrq(initiator(2, 1701), i + 1).unwrap() != first));
    assert_eq!(cluster.endpoint(n).sccrq_redispatched_away, 1);
}

#[test]
fn a_master_seeded_from_a_view_holds_placement_until_the_endpoints_report() {
    let view: Vec<ViewEntry> = (1..=3)
        .map(|n| ViewEntry {
            name: name(n),
            lan_addr: lan(n),
            in_service: n != 3,
            tunnel_ids: vec![block(n)],
        })
        .collect();
    let mut cluster = Cluster::new(Policy::LeastLoad);
    cluster.master.seed_view(cluster.now, &view);
    // Tunnels of every endpoint route from the first packet, te3's too (out of service in the
    // view, so dropped as such until it reports).
    assert_eq!(
        cluster.tunnel_packet(&data(1500, 1, b"x")).as_deref(),
        Ok("te1")
    );
    assert_eq!(
        cluster.tunnel_packet(&data(3500, 1, b"x")),
        Err(DropReason::EndpointOutOfService)
    );
    assert!(cluster.master.status().placement_held);
    assert_eq!(
        cluster.sccrq(initiator(1, 1701), 1),
        Err(DropReason::PlacementHeld)
    );
    // te1 reports 500 tunnels; te2 has not reported yet: still held.
    cluster.report(1, 500, 1000);
    assert_eq!(
        cluster.sccrq(initiator(1, 1701), 1),
        Err(DropReason::PlacementHeld)
    );
    cluster.report(2, 0, 1000);
    assert!(!cluster.master.status().placement_held);
    // Now the burst goes by load: all of it to te2, none to the busy te1.
    let counts = tally((0..100).map(|i| cluster.sccrq(initiator(1, 1701), i + 1).unwrap()));
    assert_eq!(counts.get("te2"), Some(&100));
    assert_eq!(cluster.master.status().drops.placement_held, 2);
}

#[test]
fn the_placement_hold_ends_after_its_time_without_reports() {
    let view = vec![ViewEntry {
        name: name(1),
        lan_addr: lan(1),
        in_service: true,
        tunnel_ids: vec![block(1)],
    }];
    let mut cluster = Cluster::new(Policy::LeastLoad);
    cluster.master.seed_view(cluster.now, &view);
    cluster.report(2, 0, 1000);
    assert_eq!(
        cluster.sccrq(initiator(1, 1701), 1),
        Err(DropReason::PlacementHeld)
    );
    cluster.advance(MasterConfig::new(CLUSTER, KEY).placement_hold);
    assert!(!cluster.master.status().placement_held);
    // Placement goes on with what is known: te1's capacity is not, until it reports.
    let counts = tally((0..4).map(|i| cluster.sccrq(initiator(1, 1701), i + 1).unwrap()));
    assert_eq!(counts.get("te2"), Some(&4));
    cluster.report(1, 0, 1000);
    let counts = tally((0..4).map(|i| cluster.sccrq(initiator(2, 1701), i + 1).unwrap()));
    assert_eq!(counts.get("te1"), Some(&4));
}

#[test]
fn a_packet_ahead_of_its_agents_claim_waits_for_it() {
    let mut cluster = Cluster::new(Policy::LeastLoad);
    agent_report(&mut cluster, 5);
    let lac = initiator(1, 1701);
    assert_eq!(cluster.sccrq(lac, 7).as_deref(), Ok("te5"));
    // The LNS's SCCRP reached the LAC, whose SCCCN reaches the master before the claim.
    let mut scccn = to_cluster(lac, &control(Some(MessageType::Scccn), 0x4242));
    let before = scccn.clone();
    assert_eq!(cluster.packet(&mut scccn), Verdict::Parked);
    assert_eq!(scccn, before, "a parked packet's buffer is untouched");
    assert!(cluster.master.poll_released().is_none());
    // Another initiator, never dispatched to an agent: dropped as before.
    let mut stray = to_cluster(initiator(2, 1701), &control(None, 0x4242));
    assert_eq!(
        cluster.packet(&mut stray),
        Verdict::Drop(DropReason::UnknownTunnel)
    );
    let from = SocketAddrV4::new(lan(5), 40000);
    let sealed = claims(5, 1, &[(ClaimOp::Claim, lac, 0x4242)]);
    cluster.master.handle_report(cluster.now, from, &sealed);
    let (packet, to) = cluster
        .master
        .poll_released()
        .expect("released by the claim");
    assert_eq!(to, lan(5));
    let view = Ipv4Packet::new(&packet).unwrap();
    assert_eq!(view.get_destination(), lan(5));
    assert_eq!(
        ipv4::checksum(&view),
        view.get_checksum(),
        "the rewrite keeps the IPv4 checksum right"
    );
    let status = cluster.master.status();
    assert_eq!(
        (status.totals.parked, status.totals.parked_released),
        (1, 1)
    );

    // A packet whose claim never comes is dropped once PARK_FOR has passed.
    assert_eq!(cluster.sccrq(initiator(3, 1701), 8).as_deref(), Ok("te5"));
    let mut early = to_cluster(initiator(3, 1701), &control(None, 99));
    assert_eq!(cluster.packet(&mut early), Verdict::Parked);
    cluster.advance(reference::master::PARK_FOR);
    assert!(cluster.master.poll_released().is_none());
    let status = cluster.master.status();
    assert_eq!(
        status.drops.unknown_tunnel, 2,
        "the stray and the expired one"
    );
}

#[test]
fn a_late_answer_to_a_retransmitted_sccrq_still_waits_for_its_claim() {
    let mut cluster = Cluster::new(Policy::LeastLoad);
    agent_report(&mut cluster, 5);
    let lac = initiator(1, 1701);
    assert_eq!(cluster.sccrq(lac, 7).as_deref(), Ok("te5"));
    // The LNS answers only the retransmission, a second later.
    cluster.advance(SECOND);
    agent_report(&mut cluster, 5);
    assert_eq!(cluster.sccrq(lac, 7).as_deref(), Ok("te5"));
    let mut scccn = to_cluster(lac, &control(Some(MessageType::Scccn), 0x4242));
    assert_eq!(cluster.packet(&mut scccn), Verdict::Parked);
}
