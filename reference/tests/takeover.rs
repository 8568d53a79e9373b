//! Master takeover in virtual time, sans-IO: the master acks every report it accepts (and only
//! those) with its view, the endpoints' watches rank themselves from it, and a master that
//! starts from nothing (an endpoint that took over) routes every live tunnel again from one
//! round of reports.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use l2tp::capture::build_ipv4_udp;
use l2tp::time::Instant;
use l2tp::wire::{ControlMessage, HeaderRepr};
use reference::cluster::{open_ack, seal, EndpointState, LoadReport};
use reference::master::{DropReason, Master, MasterConfig, ReportOutcome, Verdict, L2TP_PORT};
use reference::takeover::{AckOutcome, Order, Watch, WatchConfig, WatchState};

const CLUSTER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const KEY: &[u8] = b"the cluster's report key";
const INTERVAL: Duration = Duration::from_millis(500);

fn lan(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 0, 10 + n)
}

fn report(n: u8, sequence: u64, state: EndpointState) -> LoadReport {
    LoadReport {
        endpoint: format!("te{n}"),
        lan_addr: lan(n),
        global_addr: Some(Ipv4Addr::new(198, 18, 0, 10 + n)),
        tunnels: 10,
        sessions: 10,
        capacity: 1000,
        state,
        sccrq_received: 0,
        tunnel_ids: vec![(u16::from(n) * 1000, u16::from(n) * 1000 + 999)],
        sequence,
    }
}

fn master(name: &str) -> Master {
    Master::new(MasterConfig {
        name: name.into(),
        first_ack_sequence: 500,
        ..MasterConfig::new(CLUSTER, KEY)
    })
}

fn at(ms: u64) -> Instant {
    Instant::ZERO + Duration::from_millis(ms)
}

fn from(n: u8) -> SocketAddrV4 {
    SocketAddrV4::new(lan(n), 40_000 + u16::from(n))
}

#[test]
fn every_accepted_report_is_acked_with_the_view_and_nothing_else_is() {
    let mut m = master("master");
    for n in [3, 1, 2] {
        let state = if n == 2 {
            EndpointState::Draining
        } else {
            EndpointState::InService
        };
        let outcome = m.handle_report(at(0), from(n), &seal(&report(n, 7, state), KEY));
        assert_eq!(outcome, ReportOutcome::Accepted);
    }
    let mut acks = Vec::new();
    while let Some(ack) = m.poll_ack() {
        acks.push(ack);
    }
    assert_eq!(acks.len(), 3);
    // Each goes back where its report came from; the last one sees all three, in name order,
    // te2 (draining) not in service.
    assert_eq!(
        acks.iter().map(|(to, _)| *to).collect::<Vec<_>>(),
        [from(3), from(1), from(2)]
    );
    let last = open_ack(&acks[2].1, KEY).expect("authentic ack");
    assert_eq!(last.master, "master");
    assert_eq!(last.report_sequence, 7);
    assert_eq!(last.sequence, 502);
    let view: Vec<(String, bool)> = last
        .view
        .iter()
        .map(|e| (e.name.clone(), e.in_service))
        .collect();
    assert_eq!(
        view,
        [
            ("te1".to_string(), true),
            ("te2".to_string(), false),
            ("te3".to_string(), true)
        ]
    );
    assert_eq!(last.view[0].lan_addr, lan(1));

    // Forged, replayed and malformed reports get no ack.
    let forged = seal(&report(1, 8, EndpointState::InService), b"not the key");
    let replayed = seal(&report(1, 7, EndpointState::InService), KEY);
    for bytes in [&forged[..], &replayed[..], b"L2KR"] {
        assert!(matches!(
            m.handle_report(at(10), from(1), bytes),
            ReportOutcome::Rejected(_)
        ));
    }
    assert_eq!(m.poll_ack(), None);
    let status = m.status();
    assert_eq!(status.reports.acks_sent, 3);
    assert_eq!(status.holder.name, "master");
}

#[test]
fn watches_rank_from_the_masters_view_and_rank_zero_claims_first() {
    let mut m = master("master");
    let mut watches: Vec<Watch> = (1..=3)
        .map(|n| Watch::new(WatchConfig::new(format!("te{n}"), KEY, INTERVAL)))
        .collect();
    let mut sequence = 100;
    // Two rounds of reports, each answered.
    for round in 0..2u64 {
        let now = at(round * 500);
        for (i, w) in watches.iter_mut().enumerate() {
            sequence += 1;
            let n = i as u8 + 1;
            m.handle_report(
                now,
                from(n),
                &seal(&report(n, sequence, EndpointState::InService), KEY),
            );
            w.report_sent(now, sequence);
            let (to, ack) = m.poll_ack().expect("an ack");
            assert_eq!(to, from(n));
            assert_eq!(w.handle_ack(now, &ack), AckOutcome::Accepted);
        }
    }
    let ranks: Vec<Option<usize>> = watches.iter().map(Watch::rank).collect();
    assert_eq!(ranks, [Some(0), Some(1), Some(2)]);
    // The master dies after its acks at 500 ms: te1 claims 1.5 s later, before anyone else's
    // patience runs out.
    let mut claims = Vec::new();
    for t in (510..=2000).step_by(10) {
        for (i, w) in watches.iter_mut().enumerate() {
            w.handle_timeout(at(t));
            if let Some(Order::Claim {
                rank,
                previous_master,
                silent_for,
                ..
            }) = w.poll_order()
            {
                claims.push((t, i, rank, previous_master, silent_for));
                // Its claim stands: from here on it is the master.
                w.claim_outcome(at(t), &reference::takeover::ClaimOutcome::Claimed);
            }
        }
    }
    assert_eq!(
        claims,
        [(
            2000,
            0,
            0,
            "master".to_string(),
            Duration::from_millis(1500)
        )]
    );
    assert_eq!(watches[0].state(), WatchState::Master);
}

#[test]
fn a_master_started_from_nothing_routes_every_tunnel_after_one_round_of_reports() {
    // The old master knew te1..te3; the new one (te1, after taking over) starts empty.
    let mut m = master("te1");
    let tunnel_packet = |tunnel: u16| {
        let l2tp = ControlMessage {
            header: HeaderRepr::control(tunnel, 0, 1, 1),
            avps: Vec::new(),
        }
        .to_vec(None)
        .unwrap();
        let mut packet = Vec::new();
        build_ipv4_udp(
            SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 7), 1701),
            SocketAddrV4::new(CLUSTER, L2TP_PORT),
            &l2tp,
            1,
            &mut packet,
        )
        .unwrap();
        packet
    };
    // Before any report: the packet of a live tunnel has no owner yet.
    assert_eq!(
        m.handle_packet(at(0), &mut tunnel_packet(2345)),
        Verdict::Drop(DropReason::UnknownTunnel)
    );
    for n in 1..=3 {
        let outcome = m.handle_report(
            at(100),
            from(n),
            &seal(&report(n, 9_000, EndpointState::InService), KEY),
        );
        assert_eq!(outcome, ReportOutcome::Accepted);
    }
    for (tunnel, owner) in [(1000, 1), (1999, 1), (2345, 2), (3999, 3)] {
        assert_eq!(
            m.handle_packet(at(200), &mut tunnel_packet(tunnel)),
            Verdict::Forward {
                endpoint: format!("te{owner}"),
                to: lan(owner)
            },
            "tunnel {tunnel}"
        );
    }
    assert_eq!(m.status().totals.in_service, 3);
}
