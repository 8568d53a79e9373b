//! The simulator against toy nodes: an echo, a paced sender of numbered datagrams, a counter.

use core::time::Duration;
use std::net::SocketAddrV4;

use super::*;

fn addr(last: u8) -> SocketAddrV4 {
    SocketAddrV4::new([127, 0, 0, last].into(), 1701)
}

fn at_ms(ms: u64) -> Instant {
    Instant::from_micros(ms * 1000)
}

fn seq_label(bytes: &[u8]) -> String {
    match <[u8; 4]>::try_from(bytes) {
        Ok(b) => format!("seq {}", u32::from_be_bytes(b)),
        Err(_) => format!("{} bytes", bytes.len()),
    }
}

/// One type for every role, since a simulator holds one node type.
enum Toy {
    /// Sends back whatever arrives, from the address it arrived at.
    Echo { outbox: Vec<Datagram>, heard: u64 },
    /// Sends `total` numbered datagrams, one every `interval` from time zero, on its timer.
    Sender {
        from: SocketAddrV4,
        to: SocketAddrV4,
        total: u32,
        interval: Duration,
        next_at: Instant,
        sent: u32,
        fired: Vec<Instant>,
        outbox: Vec<Datagram>,
        echoes: Vec<(Instant, u32)>,
    },
    /// Records every numbered datagram with its arrival time.
    Counter { got: Vec<(Instant, u32)> },
    /// An alarm the test sets by hand; remembers when it rang.
    Alarm {
        at: Option<Instant>,
        rang: Vec<Instant>,
    },
    /// Asks to fire at time zero for ever and never makes progress.
    Spinner,
    /// Always has one more datagram to send.
    Flooder { to: SocketAddrV4 },
}

fn sender(from: SocketAddrV4, to: SocketAddrV4, total: u32, interval: Duration) -> Toy {
    Toy::Sender {
        from,
        to,
        total,
        interval,
        next_at: Instant::ZERO,
        sent: 0,
        fired: Vec::new(),
        outbox: Vec::new(),
        echoes: Vec::new(),
    }
}

fn number(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(bytes.try_into().expect("a numbered datagram"))
}

impl Node for Toy {
    fn handle(&mut self, now: Instant, from: SocketAddrV4, to: SocketAddrV4, bytes: &[u8]) {
        match self {
            Toy::Echo { outbox, heard } => {
                *heard += 1;
                outbox.push(Datagram {
                    from: to,
                    to: from,
                    bytes: bytes.to_vec(),
                });
            }
            Toy::Counter { got } => got.push((now, number(bytes))),
            Toy::Sender { echoes, .. } => echoes.push((now, number(bytes))),
            _ => {}
        }
    }

    fn poll_transmit(&mut self, _now: Instant) -> Option<Datagram> {
        match self {
            Toy::Echo { outbox, .. } | Toy::Sender { outbox, .. } => {
                // FIFO, so a burst leaves in the order it was queued.
                (!outbox.is_empty()).then(|| outbox.remove(0))
            }
            Toy::Flooder { to } => Some(Datagram {
                from: addr(99),
                to: *to,
                bytes: vec![0; 4],
            }),
            _ => None,
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Toy::Sender {
                total,
                next_at,
                sent,
                ..
            } => (sent < total).then_some(*next_at),
            Toy::Alarm { at, .. } => *at,
            Toy::Spinner => Some(Instant::ZERO),
            _ => None,
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Toy::Sender {
                from,
                to,
                total,
                interval,
                next_at,
                sent,
                fired,
                outbox,
                ..
            } if now >= *next_at && *sent < *total => {
                fired.push(now);
                let bytes = sent.to_be_bytes().to_vec();
                outbox.push(Datagram {
                    from: *from,
                    to: *to,
                    bytes,
                });
                *sent += 1;
                *next_at += *interval;
            }
            Toy::Alarm { at, rang } if at.is_some_and(|at| now >= at) => {
                *at = None;
                rang.push(now);
            }
            _ => {}
        }
    }
}

fn received(sim: &Simulator<Toy>, id: NodeId) -> &[(Instant, u32)] {
    match sim.node(id) {
        Toy::Counter { got } => got,
        Toy::Sender { echoes, .. } => echoes,
        _ => panic!("{id} records nothing"),
    }
}

/// A sender at .1 and a counter at .2 on the given link.
fn pair(seed: u64, total: u32, interval: Duration, c: LinkConditions) -> (Simulator<Toy>, NodeId) {
    let mut sim = Simulator::new(seed);
    sim.set_default_conditions(c);
    sim.add_node(sender(addr(1), addr(2), total, interval), &[addr(1)]);
    let counter = sim.add_node(Toy::Counter { got: Vec::new() }, &[addr(2)]);
    (sim, counter)
}

#[test]
fn perfect_link_delivers_all_in_order_after_the_delay() {
    let delay = Duration::from_millis(3);
    let c = LinkConditions {
        delay,
        ..Default::default()
    };
    let (mut sim, counter) = pair(1, 100, Duration::from_millis(10), c);
    let outcome = sim.run_until_idle(at_ms(10_000));

    assert_eq!(outcome.stop, Stop::Idle);
    let expected: Vec<_> = (0..100)
        .map(|k| (at_ms(10 * u64::from(k)) + delay, k))
        .collect();
    assert_eq!(received(&sim, counter), expected);
    assert_eq!(sim.now(), at_ms(990 + 3));
    let stats = sim.stats();
    assert_eq!(
        (stats.sent, stats.delivered, stats.timeouts),
        (100, 100, 100)
    );
    assert_eq!(
        (
            stats.lost,
            stats.duplicated,
            stats.reordered,
            stats.undeliverable
        ),
        (0, 0, 0, 0)
    );
}

#[test]
fn echo_round_trip_takes_both_delays() {
    let mut sim = Simulator::new(1);
    let a = sim.add_node(
        sender(addr(1), addr(2), 3, Duration::from_millis(100)),
        &[addr(1)],
    );
    let echo = sim.add_node(
        Toy::Echo {
            outbox: Vec::new(),
            heard: 0,
        },
        &[addr(2)],
    );
    sim.set_conditions(
        a,
        echo,
        LinkConditions {
            delay: Duration::from_millis(5),
            ..Default::default()
        },
    );
    sim.set_conditions(
        echo,
        a,
        LinkConditions {
            delay: Duration::from_millis(7),
            ..Default::default()
        },
    );
    let _ = sim.run_until_idle(at_ms(1000));
    assert_eq!(
        received(&sim, a),
        [(at_ms(12), 0), (at_ms(112), 1), (at_ms(212), 2)]
    );
}

#[test]
fn loss_drops_about_the_configured_share() {
    let c = LinkConditions {
        loss: 0.2,
        ..Default::default()
    };
    let (mut sim, counter) = pair(7, 10_000, Duration::from_millis(1), c);
    let outcome = sim.run_until_idle(at_ms(20_000));
    assert_eq!(outcome.stop, Stop::Idle);

    let stats = sim.stats();
    assert_eq!(stats.sent, 10_000);
    // Binomial(10k, 0.2) has sd 40: ±300 is over seven of them.
    assert!((1700..=2300).contains(&stats.lost), "lost {}", stats.lost);
    assert_eq!(stats.delivered + stats.lost, stats.sent);
    assert_eq!(received(&sim, counter).len() as u64, stats.delivered);
}

#[test]
fn duplicates_and_reorders_are_observed() {
    let c = LinkConditions {
        duplicate: 0.1,
        reorder: 0.1,
        delay: Duration::from_millis(5),
        ..Default::default()
    };
    let (mut sim, counter) = pair(11, 1000, Duration::from_millis(1), c);
    let _ = sim.run_until_idle(at_ms(10_000));

    let stats = sim.stats();
    assert!(
        (50..=150).contains(&stats.duplicated),
        "duplicated {}",
        stats.duplicated
    );
    assert!(
        (60..=180).contains(&stats.reordered),
        "reordered {}",
        stats.reordered
    );
    assert_eq!(stats.delivered, stats.sent + stats.duplicated);

    let got = received(&sim, counter);
    let mut seen = std::collections::BTreeSet::new();
    let twice = got.iter().filter(|&&(_, n)| !seen.insert(n)).count();
    assert_eq!(twice as u64, stats.duplicated);
    let overtaken = got.windows(2).filter(|w| w[1].1 < w[0].1).count();
    assert!(overtaken > 0, "nothing arrived out of order");
}

fn lossy_run(seed: u64) -> Simulator<Toy> {
    let c = LinkConditions {
        loss: 0.1,
        duplicate: 0.05,
        reorder: 0.05,
        delay: Duration::from_millis(4),
        jitter: Duration::from_millis(2),
    };
    let mut sim = Simulator::new(seed);
    sim.set_default_conditions(c);
    sim.enable_trace(seq_label);
    let a = sim.add_node(
        sender(addr(1), addr(2), 200, Duration::from_millis(1)),
        &[addr(1)],
    );
    let b = sim.add_node(
        Toy::Echo {
            outbox: Vec::new(),
            heard: 0,
        },
        &[addr(2)],
    );
    sim.set_conditions(b, a, LinkConditions { loss: 0.3, ..c });
    let _ = sim.run_until_idle(at_ms(10_000));
    sim
}

#[test]
fn same_seed_replays_the_same_trace() {
    let (first, second) = (lossy_run(5), lossy_run(5));
    assert!(first.trace().len() > 400);
    assert_eq!(first.trace(), second.trace());
    assert_eq!(first.trace_text(), second.trace_text());
    assert_eq!(first.stats(), second.stats());
}

#[test]
fn different_seeds_differ() {
    assert_ne!(lossy_run(5).trace(), lossy_run(6).trace());
}

#[test]
fn trace_lines_read_well() {
    let sim = lossy_run(5);
    let text = sim.trace_text();
    assert!(
        text.starts_with("0.000000 send #0 127.0.0.1:1701 -> 127.0.0.2:1701 4B seq 0\n"),
        "{text}"
    );
    for kind in ["lost", "duplicate", "reorder", "deliver"] {
        assert!(
            text.lines().any(|l| l.split(' ').nth(1) == Some(kind)),
            "no {kind} in trace"
        );
    }
}

#[test]
fn datagrams_to_unowned_addresses_are_counted() {
    let mut sim = Simulator::new(1);
    sim.enable_trace(seq_label);
    sim.add_node(
        sender(addr(1), addr(9), 5, Duration::from_millis(1)),
        &[addr(1)],
    );
    let _ = sim.run_until_idle(at_ms(1000));
    let stats = sim.stats();
    assert_eq!(
        (stats.sent, stats.delivered, stats.undeliverable),
        (5, 0, 5)
    );
    let kinds = sim
        .trace()
        .iter()
        .filter(|e| e.kind == TraceKind::Undeliverable)
        .count();
    assert_eq!(kinds, 5);
}

#[test]
fn run_until_stops_at_the_deadline() {
    let (mut sim, counter) = pair(1, 100, Duration::from_millis(10), LinkConditions::default());
    let outcome = sim.run_until(at_ms(55));
    assert_eq!(outcome.stop, Stop::Deadline);
    // Sent at 0, 10, .., 50 and each delivered 1 ms later; the one sent at 60 is not yet due.
    assert_eq!(received(&sim, counter).len(), 6);
    assert_eq!(sim.now(), at_ms(55));
    // 6 timeouts and 6 deliveries.
    assert_eq!(outcome.steps, 12);

    // An earlier deadline does nothing and never moves time back.
    let outcome = sim.run_until(at_ms(20));
    assert_eq!((outcome.steps, outcome.stop), (0, Stop::Deadline));
    assert_eq!(sim.now(), at_ms(55));

    let _ = sim.run_until_idle(at_ms(10_000));
    assert_eq!(received(&sim, counter).len(), 100);
}

#[test]
fn run_until_advances_an_idle_clock() {
    let mut sim: Simulator<Toy> = Simulator::new(1);
    let outcome = sim.run_until(at_ms(500));
    assert_eq!((outcome.steps, outcome.stop), (0, Stop::Idle));
    assert_eq!(sim.now(), at_ms(500));
    assert!(!sim.step());
}

#[test]
fn timers_fire_at_their_virtual_time() {
    let (mut sim, _) = pair(1, 5, Duration::from_millis(250), LinkConditions::default());
    let _ = sim.run_until_idle(at_ms(10_000));
    let Toy::Sender { fired, .. } = sim.node(NodeId(0)) else {
        unreachable!()
    };
    assert_eq!(
        fired,
        &[at_ms(0), at_ms(250), at_ms(500), at_ms(750), at_ms(1000)]
    );
}

#[test]
fn a_timeout_in_the_past_fires_now() {
    let mut sim = Simulator::new(1);
    let alarm = sim.add_node(
        Toy::Alarm {
            at: None,
            rang: Vec::new(),
        },
        &[addr(1)],
    );
    let _ = sim.run_until(at_ms(100));
    let Toy::Alarm { at, .. } = sim.node_mut(alarm) else {
        unreachable!()
    };
    *at = Some(at_ms(10));
    assert!(sim.step());
    let Toy::Alarm { rang, .. } = sim.node(alarm) else {
        unreachable!()
    };
    assert_eq!(rang, &[at_ms(100)]);
    assert_eq!(sim.now(), at_ms(100));
}

#[test]
fn equal_times_run_deliveries_first_then_in_order() {
    // Two senders fire at the same instants; the counter must see them in node order, and the
    // trace must not depend on anything but the seed.
    let mut sim = Simulator::new(1);
    sim.add_node(
        sender(addr(1), addr(3), 3, Duration::from_millis(1)),
        &[addr(1)],
    );
    sim.add_node(
        sender(addr(2), addr(3), 3, Duration::from_millis(1)),
        &[addr(2)],
    );
    let counter = sim.add_node(Toy::Counter { got: Vec::new() }, &[addr(3)]);
    let _ = sim.run_until_idle(at_ms(100));
    let got: Vec<u32> = received(&sim, counter).iter().map(|&(_, n)| n).collect();
    assert_eq!(got, [0, 0, 1, 1, 2, 2]);

    // An alarm due exactly when a datagram lands rings after the delivery.
    let mut sim = Simulator::new(1);
    sim.enable_trace(seq_label);
    let alarm = sim.add_node(
        Toy::Alarm {
            at: Some(at_ms(1)),
            rang: Vec::new(),
        },
        &[addr(2)],
    );
    sim.add_node(
        sender(addr(1), addr(2), 1, Duration::from_millis(1)),
        &[addr(1)],
    );
    assert!(sim.step()); // the sender's timer at 0
    assert!(sim.step()); // the delivery at 1 ms
    assert_eq!(sim.trace().last().map(|e| e.kind), Some(TraceKind::Deliver));
    let Toy::Alarm { rang, .. } = sim.node(alarm) else {
        unreachable!()
    };
    assert!(rang.is_empty());
    assert!(sim.step());
    let Toy::Alarm { rang, .. } = sim.node(alarm) else {
        unreachable!()
    };
    assert_eq!(rang, &[at_ms(1)]);
}

#[test]
fn jitter_stays_within_its_bound() {
    let c = LinkConditions {
        delay: Duration::from_millis(10),
        jitter: Duration::from_millis(5),
        ..Default::default()
    };
    let (mut sim, counter) = pair(3, 1000, Duration::from_millis(20), c);
    let _ = sim.run_until_idle(at_ms(100_000));
    let delays: Vec<u64> = received(&sim, counter)
        .iter()
        .map(|&(t, n)| t.as_micros() - 20_000 * u64::from(n))
        .collect();
    assert_eq!(delays.len(), 1000);
    assert!(delays.iter().all(|d| (10_000..=15_000).contains(d)));
    assert!(delays.iter().any(|&d| d < 11_000) && delays.iter().any(|&d| d > 14_000));
}

#[test]
fn conditions_apply_per_direction() {
    let mut sim = Simulator::new(1);
    let a = sim.add_node(
        sender(addr(1), addr(2), 10, Duration::from_millis(1)),
        &[addr(1)],
    );
    let b = sim.add_node(
        Toy::Echo {
            outbox: Vec::new(),
            heard: 0,
        },
        &[addr(2)],
    );
    sim.set_conditions(
        b,
        a,
        LinkConditions {
            loss: 1.0,
            ..Default::default()
        },
    );
    let _ = sim.run_until_idle(at_ms(1000));
    let Toy::Echo { heard, .. } = sim.node(b) else {
        unreachable!()
    };
    assert_eq!(*heard, 10);
    assert!(received(&sim, a).is_empty());
    assert_eq!(sim.stats().lost, 10);
}

#[test]
fn an_address_taken_over_in_flight_reaches_its_new_owner() {
    let mut sim = Simulator::new(1);
    sim.set_default_conditions(LinkConditions {
        delay: Duration::from_millis(10),
        ..Default::default()
    });
    sim.add_node(
        sender(addr(1), addr(2), 1, Duration::from_millis(1)),
        &[addr(1)],
    );
    let old = sim.add_node(Toy::Counter { got: Vec::new() }, &[addr(2)]);
    let new = sim.add_node(Toy::Counter { got: Vec::new() }, &[addr(3)]);
    let _ = sim.run_until(at_ms(5));
    assert_eq!(sim.assign_addr(new, addr(2)), Some(old));
    let _ = sim.run_until_idle(at_ms(100));
    assert!(received(&sim, old).is_empty());
    assert_eq!(received(&sim, new), [(at_ms(10), 0)]);

    assert_eq!(sim.release_addr(addr(2)), Some(new));
    assert_eq!(sim.owner(addr(2)), None);
}

#[test]
fn step_limit_ends_a_livelock() {
    let mut sim = Simulator::new(1);
    sim.add_node(Toy::Spinner, &[addr(1)]);
    sim.set_max_steps(1000);
    let outcome = sim.run_until(at_ms(1000));
    assert_eq!(
        outcome,
        RunOutcome {
            steps: 1000,
            stop: Stop::StepLimit
        }
    );
    // The spinner never let time move, and a stopped run leaves the clock alone.
    assert_eq!(sim.now(), Instant::ZERO);
    assert_eq!(sim.stats().timeouts, 1000);
}

#[test]
fn burst_limit_ends_a_flood() {
    let mut sim = Simulator::new(1);
    let flooder = sim.add_node(Toy::Flooder { to: addr(9) }, &[addr(1)]);
    sim.set_max_burst(50);
    let outcome = sim.run_until_idle(at_ms(1000));
    assert_eq!(
        outcome,
        RunOutcome {
            steps: 0,
            stop: Stop::BurstLimit(flooder)
        }
    );
    assert_eq!(sim.stats().sent, 50);
}

#[test]
#[should_panic(expected = "already belongs to node0")]
fn an_address_has_one_owner() {
    let mut sim = Simulator::new(1);
    sim.add_node(Toy::Spinner, &[addr(1)]);
    sim.add_node(Toy::Spinner, &[addr(1)]);
}

#[test]
fn boxed_nodes_of_different_types_share_a_simulator() {
    struct Silent;
    impl Node for Silent {
        fn handle(&mut self, _: Instant, _: SocketAddrV4, _: SocketAddrV4, _: &[u8]) {}
        fn poll_transmit(&mut self, _: Instant) -> Option<Datagram> {
            None
        }
        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
        fn handle_timeout(&mut self, _: Instant) {}
    }
    let mut sim: Simulator<Box<dyn Node>> = Simulator::new(1);
    sim.add_node(
        Box::new(sender(addr(1), addr(2), 4, Duration::from_millis(1))),
        &[addr(1)],
    );
    sim.add_node(Box::new(Silent), &[addr(2)]);
    let _ = sim.run_until_idle(at_ms(100));
    assert_eq!(sim.stats().delivered, 4);
}
