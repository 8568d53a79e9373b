//! The agent beside an LNS we did not write, in virtual time: what it reads of the LNS's
//! datagrams, the reports and claims it sends, the master routing by them, and bytes it must
//! survive.

use std::borrow::Cow;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use l2tp::capture::build_ipv4_udp;
use l2tp::time::Instant;
use l2tp::wire::{AvpRepr, AvpValue, ControlMessage, HeaderRepr, MessageType};
use proptest::prelude::*;
use reference::agent::{Agent, AgentConfig};
use reference::cluster::{
    self, open, open_claims, seal_ack, ClaimOp, EndpointState, MessageKind, ReportAck,
};
use reference::master::{Master, MasterConfig, ReportOutcome, Verdict};

const KEY: &[u8] = b"the cluster's report key";
const LNS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 11), 1701);
const GLOBAL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);
const CLUSTER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

fn lac(n: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, n), 1701)
}

fn message(
    kind: MessageType,
    tunnel: u16,
    session: u16,
    mut avps: Vec<AvpRepr<'static>>,
) -> Vec<u8> {
    avps.insert(0, AvpRepr::mandatory(AvpValue::MessageType(kind)));
    ControlMessage {
        header: HeaderRepr::control(tunnel, session, 0, 0),
        avps,
    }
    .to_vec(None)
    .unwrap()
}

fn ip(from: SocketAddrV4, to: SocketAddrV4, l2tp: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    build_ipv4_udp(from, to, l2tp, 7, &mut out).unwrap();
    out
}

fn sccrq(lac_id: u16) -> Vec<u8> {
    message(
        MessageType::Sccrq,
        0,
        0,
        vec![
            AvpRepr::mandatory(AvpValue::ProtocolVersion {
                version: 1,
                revision: 0,
            }),
            AvpRepr::mandatory(AvpValue::HostName(Cow::Borrowed(b"lac"))),
            AvpRepr::mandatory(AvpValue::FramingCapabilities(3)),
            AvpRepr::mandatory(AvpValue::AssignedTunnelId(lac_id)),
        ],
    )
}

fn sccrp(lac_id: u16, lns_id: u16) -> Vec<u8> {
    message(
        MessageType::Sccrp,
        lac_id,
        0,
        vec![AvpRepr::mandatory(AvpValue::AssignedTunnelId(lns_id))],
    )
}

fn icrp(lac_id: u16, lac_session: u16, lns_session: u16) -> Vec<u8> {
    message(
        MessageType::Icrp,
        lac_id,
        lac_session,
        vec![AvpRepr::mandatory(AvpValue::AssignedSessionId(lns_session))],
    )
}

fn stopccn(tunnel: u16) -> Vec<u8> {
    message(MessageType::StopCcn, tunnel, 0, Vec::new())
}

/// An agent (FIG 4: the LNS answers from its global address) and a virtual clock.
struct Bench {
    agent: Agent,
    now: Instant,
}

impl Bench {
    fn new() -> Bench {
        let mut config = AgentConfig::new("te1", LNS, KEY);
        config.global_addr = Some(GLOBAL);
        config.first_sequence = 100;
        Bench {
            agent: Agent::new(config),
            now: Instant::from_micros(1_000_000),
        }
    }

    fn lac_sends(&mut self, from: SocketAddrV4, l2tp: &[u8]) {
        self.agent.observe(self.now, &ip(from, LNS, l2tp));
    }

    /// The LNS answers from its global address, as in FIG 4.
    fn lns_sends(&mut self, to: SocketAddrV4, l2tp: &[u8]) {
        let from = SocketAddrV4::new(GLOBAL, LNS.port());
        self.agent.observe(self.now, &ip(from, to, l2tp));
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.agent.handle_timeout(self.now);
    }

    /// Everything the agent has to send, as (reports, claims) opened.
    fn sent(&mut self) -> (Vec<cluster::LoadReport>, Vec<cluster::TunnelClaims>) {
        let (mut reports, mut claims) = (Vec::new(), Vec::new());
        while let Some(bytes) = self.agent.poll_transmit(self.now) {
            match cluster::message_kind(&bytes) {
                Some(MessageKind::Report) => reports.push(open(&bytes, KEY).unwrap()),
                Some(MessageKind::Claims) => claims.push(open_claims(&bytes, KEY).unwrap()),
                other => panic!("{other:?}"),
            }
        }
        (reports, claims)
    }

    fn ack(&mut self, master: &str, acked: u64) {
        let ack = seal_ack(
            &ReportAck {
                master: master.into(),
                sequence: 1,
                report_sequence: acked,
                view: Vec::new(),
            },
            KEY,
        );
        self.agent.handle_ack(self.now, &ack);
    }
}

#[test]
fn reports_count_tunnels_sessions_and_sccrqs_and_claims_go_at_once() {
    let mut bench = Bench::new();
    bench.advance(Duration::ZERO);
    let (reports, _) = bench.sent();
    assert_eq!(reports[0].sccrq_received, 0);
    assert!(
        reports[0].tunnel_ids.is_empty(),
        "no blocks: claims instead"
    );

    bench.lac_sends(lac(1), &sccrq(7));
    bench.lac_sends(lac(1), &sccrq(7)); // a retransmission: counted, the same tunnel
    bench.lac_sends(lac(2), &sccrq(9));
    bench.lns_sends(lac(1), &sccrp(7, 0xabcd));
    bench.lns_sends(lac(1), &sccrp(7, 0xabcd)); // retransmitted SCCRP: no second claim
    let (_, claims) = bench.sent();
    let claimed: Vec<_> = claims.iter().flat_map(|c| c.claims.clone()).collect();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        (claimed[0].op, claimed[0].initiator, claimed[0].tunnel_id),
        (ClaimOp::Claim, lac(1), 0xabcd)
    );
    bench.lns_sends(lac(1), &icrp(7, 1, 500));
    bench.lns_sends(lac(1), &icrp(7, 2, 501));
    bench.lac_sends(lac(1), &message(MessageType::Cdn, 0xabcd, 500, Vec::new()));

    bench.advance(Duration::from_secs(1));
    let (reports, _) = bench.sent();
    let report = &reports[0];
    // One tunnel up and one SCCRQ not yet answered; one session left.
    assert_eq!(
        (report.tunnels, report.sessions, report.sccrq_received),
        (2, 1, 3)
    );
    assert_eq!(report.global_addr, Some(GLOBAL));
    assert_eq!(report.state, EndpointState::InService);
    let stats = bench.agent.status().stats;
    assert_eq!((stats.sessions_established, stats.sessions_closed), (2, 1));
}

#[test]
fn a_stopped_tunnel_is_released_after_the_hold_and_a_silent_one_times_out() {
    let mut bench = Bench::new();
    bench.lac_sends(lac(1), &sccrq(7));
    bench.lns_sends(lac(1), &sccrp(7, 100));
    bench.lac_sends(lac(2), &sccrq(8));
    bench.lns_sends(lac(2), &sccrp(8, 200));
    bench.sent();
    // The LNS ends tunnel 100 (StopCCN carries the initiator's ID on the way out).
    bench.lns_sends(lac(1), &stopccn(7));
    assert_eq!(bench.agent.status().tunnels, 1);
    bench.advance(AgentConfig::DEFAULT_STOP_HOLD - Duration::from_secs(1));
    // The master acks each release, so none goes twice.
    let released = |bench: &mut Bench| -> Vec<u16> {
        let claims = bench.sent().1;
        for message in &claims {
            bench.ack("master", message.sequence);
        }
        claims
            .iter()
            .flat_map(|c| c.claims.clone())
            .filter(|c| c.op == ClaimOp::Release)
            .map(|c| c.tunnel_id)
            .collect()
    };
    assert!(
        released(&mut bench).is_empty(),
        "held for the StopCCN's retransmissions"
    );
    bench.advance(Duration::from_secs(2));
    assert_eq!(released(&mut bench), [100]);
    // Tunnel 200 carried nothing since: it times out at the idle timeout.
    bench.advance(AgentConfig::DEFAULT_IDLE_TIMEOUT);
    assert_eq!(released(&mut bench), [200]);
    let stats = bench.agent.status().stats;
    assert_eq!((stats.tunnels_closed, stats.tunnels_timed_out), (1, 1));
}

#[test]
fn an_lns_that_leaves_sccrqs_unanswered_is_reported_and_tried_again_later() {
    let mut bench = Bench::new();
    bench.lac_sends(lac(1), &sccrq(7));
    bench.advance(AgentConfig::DEFAULT_ANSWER_TIMEOUT - Duration::from_millis(100));
    assert_eq!(bench.agent.status().state, EndpointState::InService);
    bench.advance(Duration::from_millis(200));
    assert_eq!(bench.agent.status().state, EndpointState::Unresponsive);
    bench.advance(Duration::from_secs(1));
    let (reports, _) = bench.sent();
    assert!(reports
        .iter()
        .any(|r| r.state == EndpointState::Unresponsive));
    // Forgotten after the half-open timeout: the master may try it again.
    bench.advance(AgentConfig::DEFAULT_HALF_OPEN_TIMEOUT);
    let status = bench.agent.status();
    assert_eq!(
        (status.state, status.stats.sccrq_unanswered),
        (EndpointState::InService, 1)
    );
    // A refusal (StopCCN to the initiator's ID) is an answer too.
    bench.lac_sends(lac(2), &sccrq(9));
    bench.lns_sends(lac(2), &stopccn(9));
    bench.advance(AgentConfig::DEFAULT_ANSWER_TIMEOUT * 2);
    let status = bench.agent.status();
    assert_eq!(
        (status.state, status.stats.sccrq_refused),
        (EndpointState::InService, 1)
    );
}

#[test]
fn unacked_claims_go_again_and_a_new_master_hears_them_all() {
    let mut bench = Bench::new();
    bench.advance(Duration::ZERO);
    let (reports, _) = bench.sent();
    bench.ack("master", reports[0].sequence);
    bench.lac_sends(lac(1), &sccrq(7));
    bench.lns_sends(lac(1), &sccrp(7, 100));
    let (_, claims) = bench.sent();
    let first = claims[0].sequence;
    // Not acked: after the retry time it goes again under a new sequence.
    bench.advance(AgentConfig::DEFAULT_CLAIM_RETRY);
    let (_, again) = bench.sent();
    assert_eq!(again.len(), 1);
    assert!(again[0].sequence > first);
    assert_eq!(again[0].claims, claims[0].claims);
    // The first one's ack, late: still an ack of ours, not a refused one.
    bench.ack("master", first);
    bench.ack("master", again[0].sequence);
    bench.advance(AgentConfig::DEFAULT_CLAIM_RETRY);
    assert!(bench.sent().1.is_empty(), "acked: not sent again");
    assert_eq!(bench.agent.status().claims_unacked, 0);
    // An endpoint took the master over: it knows none of our tunnels.
    bench.advance(Duration::from_secs(1));
    let (reports, _) = bench.sent();
    let last = reports.last().expect("a report a second").sequence;
    bench.ack("te2", last);
    let (_, claims) = bench.sent();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].claims[0].tunnel_id, 100);
    // An ack for nothing we sent, or forged, is refused.
    bench.ack("te2", 5);
    bench.agent.handle_ack(bench.now, b"L2KA garbage");
    assert_eq!(bench.agent.status().stats.acks_refused, 2);
}

#[test]
fn the_master_routes_a_claimed_tunnel_to_the_agents_lns() {
    // The whole path, sans-IO: the master places an SCCRQ on the LNS; the agent sees it arrive
    // and the SCCRP leave, claims the tunnel; the LAC's SCCCN to the cluster address follows.
    let mut master = Master::new(MasterConfig::new(CLUSTER, KEY));
    let mut bench = Bench::new();
    let deliver = |master: &mut Master, bench: &mut Bench| {
        let from = SocketAddrV4::new(*LNS.ip(), 40000);
        while let Some(bytes) = bench.agent.poll_transmit(bench.now) {
            assert_eq!(
                master.handle_report(bench.now, from, &bytes),
                ReportOutcome::Accepted
            );
        }
    };
    bench.advance(Duration::ZERO);
    deliver(&mut master, &mut bench);
    let cluster = SocketAddrV4::new(CLUSTER, 1701);
    let mut packet = ip(lac(1), cluster, &sccrq(7));
    let Verdict::Forward { endpoint, to } = master.handle_packet(bench.now, &mut packet) else {
        panic!("SCCRQ not placed");
    };
    assert_eq!((endpoint.as_str(), to), ("te1", *LNS.ip()));
    bench.agent.observe(bench.now, &packet);
    bench.lns_sends(lac(1), &sccrp(7, 0x4242));
    deliver(&mut master, &mut bench);
    let scccn = message(MessageType::Scccn, 0x4242, 0, Vec::new());
    let mut packet = ip(lac(1), cluster, &scccn);
    assert!(matches!(
        master.handle_packet(bench.now, &mut packet),
        Verdict::Forward { ref endpoint, .. } if endpoint == "te1"
    ));
    // The report that follows counts the SCCRQ the master sent: nothing is in flight.
    bench.advance(Duration::from_secs(1));
    deliver(&mut master, &mut bench);
    let status = master.status();
    let te1 = &status.endpoints[0];
    assert_eq!(
        (te1.in_flight, te1.sccrq_sent, te1.sccrq_received),
        (0, 1, Some(1))
    );
    assert_eq!((te1.tunnels, te1.claimed_tunnels), (1, 1));
}

#[test]
fn traffic_of_other_hosts_and_ports_is_not_the_lns() {
    let mut bench = Bench::new();
    let elsewhere = SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 12), 1701);
    bench
        .agent
        .observe(bench.now, &ip(lac(1), elsewhere, &sccrq(7)));
    let other_port = SocketAddrV4::new(*LNS.ip(), 1702);
    bench
        .agent
        .observe(bench.now, &ip(lac(1), other_port, &sccrq(7)));
    bench.lac_sends(lac(1), b"\x00\x00 not l2tp");
    let stats = bench.agent.status().stats;
    assert_eq!((stats.sccrq_received, stats.malformed), (0, 1));
}

proptest! {
    #[test]
    fn any_bytes_to_or_from_the_lns_never_panic(
        payload in proptest::collection::vec(any::<u8>(), 0..120),
        to_lns in any::<bool>(),
        raw in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let mut bench = Bench::new();
        if to_lns {
            bench.lac_sends(lac(1), &payload);
        } else {
            bench.lns_sends(lac(1), &payload);
        }
        bench.agent.observe(bench.now, &raw);
        bench.agent.handle_ack(bench.now, &raw);
        bench.advance(Duration::from_secs(200));
        bench.sent();
    }
}
