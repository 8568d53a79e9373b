use super::*;
use crate::wire::avp::{AvpRepr, AvpValue};
use proptest::prelude::*;

const TUNNEL_A: u16 = 0xa;
const TUNNEL_B: u16 = 0xb;

fn ms(millis: u64) -> Instant {
    Instant::from_micros(millis * 1000)
}

/// A HELLO whose session ID is a tag for telling messages apart.
fn hello(tunnel_id: u16, tag: u16) -> ControlMessage<'static> {
    ControlMessage {
        header: HeaderRepr::control(tunnel_id, tag, 0, 0),
        avps: vec![AvpRepr {
            mandatory: true,
            hidden: false,
            reserved: 0,
            value: AvpValue::MessageType(MessageType::Hello),
        }],
    }
}

/// A message from the peer as it would arrive: with its Ns and Nr.
fn arriving(tag: u16, ns: u16, nr: u16) -> ControlMessage<'static> {
    let mut message = hello(TUNNEL_A, tag);
    message.header.sequence = Some(Sequence { ns, nr });
    message
}

fn zlb(ns: u16, nr: u16) -> ControlMessage<'static> {
    ControlMessage {
        header: HeaderRepr::control(TUNNEL_A, 0, ns, nr),
        avps: Vec::new(),
    }
}

fn seq(message: &ControlMessage) -> (u16, u16) {
    let sequence = message
        .header
        .sequence
        .expect("sent messages are sequenced");
    (sequence.ns, sequence.nr)
}

fn drain(side: &mut Reliable) -> Vec<u16> {
    core::iter::from_fn(|| side.poll_deliver())
        .map(|message| message.header.session_id)
        .collect()
}

fn all_sent(side: &mut Reliable, now: Instant) -> Vec<ControlMessage<'static>> {
    core::iter::from_fn(|| side.poll_transmit(now)).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    A,
    B,
}

/// Two transports back to back over a zero-latency wire and a virtual clock.
struct Pair {
    now: Instant,
    a: Reliable,
    b: Reliable,
    /// Everything put on the wire: when, by whom, and whether it got through.
    log: Vec<(Instant, Side, ControlMessage<'static>, bool)>,
    delivered_a: Vec<u16>,
    delivered_b: Vec<u16>,
    gave_up: Option<(Side, GaveUp)>,
}

impl Pair {
    fn new(config: ReliableConfig) -> Pair {
        let mut a = Reliable::new(config.clone());
        let mut b = Reliable::new(config.clone());
        a.set_peer_tunnel_id(TUNNEL_B);
        b.set_peer_tunnel_id(TUNNEL_A);
        a.set_peer_window(config.receive_window);
        b.set_peer_window(config.receive_window);
        Pair {
            now: Instant::ZERO,
            a,
            b,
            log: Vec::new(),
            delivered_a: Vec::new(),
            delivered_b: Vec::new(),
            gave_up: None,
        }
    }

    /// Moves everything both sides have to send until both are quiet; `keep` decides
    /// (by sender and message) what the wire lets through.
    fn exchange(&mut self, keep: &mut impl FnMut(Side, &ControlMessage) -> bool) {
        loop {
            let mut moved = false;
            for side in [Side::A, Side::B] {
                let (from, to) = match side {
                    Side::A => (&mut self.a, &mut self.b),
                    Side::B => (&mut self.b, &mut self.a),
                };
                while let Some(message) = from.poll_transmit(self.now) {
                    assert!(from.in_flight() <= usize::from(from.peer_window));
                    let kept = keep(side, &message);
                    self.log.push((self.now, side, message.clone(), kept));
                    if kept {
                        to.handle(self.now, message);
                    }
                    moved = true;
                }
            }
            self.delivered_a.extend(drain(&mut self.a));
            self.delivered_b.extend(drain(&mut self.b));
            if !moved {
                return;
            }
        }
    }

    /// Runs to `until`, firing timers on the way.
    fn run_until(&mut self, until: Instant, mut keep: impl FnMut(Side, &ControlMessage) -> bool) {
        loop {
            self.exchange(&mut keep);
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(at) if at <= until => {
                    self.now = self.now.max(at);
                    if let Err(err) = self.a.handle_timeout(self.now) {
                        self.gave_up.get_or_insert((Side::A, err));
                    }
                    if let Err(err) = self.b.handle_timeout(self.now) {
                        self.gave_up.get_or_insert((Side::B, err));
                    }
                }
                _ => {
                    self.now = until;
                    return;
                }
            }
        }
    }

    /// Transmissions of `side` that are not ZLBs, as (time, Ns, Nr, got through).
    fn transmissions(&self, side: Side) -> Vec<(Instant, u16, u16, bool)> {
        self.log
            .iter()
            .filter(|(_, from, message, _)| *from == side && !message.is_zlb())
            .map(|(at, _, message, kept)| {
                let (ns, nr) = seq(message);
                (*at, ns, nr, *kept)
            })
            .collect()
    }

    fn zlbs(&self, side: Side) -> Vec<(Instant, u16, u16)> {
        self.log
            .iter()
            .filter(|(_, from, message, _)| *from == side && message.is_zlb())
            .map(|(at, _, message, _)| {
                let (ns, nr) = seq(message);
                (*at, ns, nr)
            })
            .collect()
    }
}

fn everything(_: Side, _: &ControlMessage) -> bool {
    true
}

#[test]
fn sequence_arithmetic_wraps() {
    assert_eq!(seq_diff(0, 65535), 1);
    assert_eq!(seq_diff(65535, 0), 65535);
    assert_eq!(seq_diff(2, 65534), 4);
    assert!(seq_lt(65535, 0));
    assert!(seq_lt(65534, 2));
    assert!(!seq_lt(0, 65535));
    assert!(!seq_lt(7, 7));
    assert!(seq_lt(0, 32767));
    // Exactly half the space apart: neither is ahead of the other.
    assert!(!seq_lt(0, 32768) && !seq_lt(32768, 0));
}

#[test]
fn defaults_follow_the_rfc() {
    let config = ReliableConfig::default();
    let timeouts: Vec<u64> = (0..7)
        .map(|n| config.retransmit_timeout(n).as_secs())
        .collect();
    assert_eq!(timeouts, [1, 2, 4, 8, 8, 8, 8]);
    // §5.7: "The recommended time for a full retransmission cycle is 31 seconds".
    assert_eq!(config.full_retransmit_cycle(), Duration::from_secs(31));
    let forever = ReliableConfig {
        max_retransmits: u32::MAX,
        ..ReliableConfig::default()
    };
    assert_eq!(
        forever.full_retransmit_cycle(),
        Duration::from_secs(1 + 2 + 4 + 8 * (u64::from(u32::MAX) - 2))
    );
    assert_eq!(forever.retransmit_timeout(u32::MAX), Duration::from_secs(8));
}

#[test]
fn in_order_delivery_both_ways() {
    let mut pair = Pair::new(ReliableConfig::default());
    for tag in 0..3 {
        pair.a.send(hello(TUNNEL_B, tag));
    }
    for tag in 10..12 {
        pair.b.send(hello(TUNNEL_A, tag));
    }
    pair.run_until(ms(10_000), everything);
    assert_eq!(pair.delivered_b, [0, 1, 2]);
    assert_eq!(pair.delivered_a, [10, 11]);
    assert!(pair.a.is_idle() && pair.b.is_idle());
    assert_eq!((pair.a.next_ns(), pair.a.next_nr()), (3, 2));
    assert_eq!((pair.b.next_ns(), pair.b.next_nr()), (2, 3));
    assert_eq!(
        pair.a.stats().retransmitted + pair.b.stats().retransmitted,
        0
    );
    assert_eq!(pair.a.stats().sent, 3);
    assert_eq!(pair.b.stats().delivered, 3);
}

#[test]
fn lost_message_is_retransmitted_with_backoff_and_delivered_once() {
    let mut pair = Pair::new(ReliableConfig::default());
    pair.a.send(hello(TUNNEL_B, 0));
    let mut lost = 0;
    pair.run_until(ms(60_000), |side, message| {
        if side == Side::A && !message.is_zlb() && lost < 5 {
            lost += 1;
            return false;
        }
        true
    });
    let times: Vec<u64> = pair
        .transmissions(Side::A)
        .iter()
        .map(|(at, ns, _, _)| {
            assert_eq!(*ns, 0);
            at.as_micros() / 1_000_000
        })
        .collect();
    // Intervals 1, 2, 4, 8 and then the 8 s cap.
    assert_eq!(times, [0, 1, 3, 7, 15, 23]);
    assert_eq!(pair.delivered_b, [0]);
    assert_eq!(pair.a.stats().retransmitted, 5);
    assert_eq!(pair.a.stats().timeouts, 5);
    assert!(pair.a.is_idle() && pair.gave_up.is_none());
    assert_eq!(pair.a.poll_timeout(), None);
}

#[test]
fn retransmission_carries_the_current_nr() {
    let mut pair = Pair::new(ReliableConfig::default());
    pair.a.send(hello(TUNNEL_B, 0));
    pair.b.send(hello(TUNNEL_A, 10));
    let mut first = true;
    pair.run_until(ms(2_000), |side, message| {
        let drop = side == Side::A && !message.is_zlb() && first;
        first &= !drop;
        !drop
    });
    let sent = pair.transmissions(Side::A);
    assert_eq!(sent[0], (ms(0), 0, 0, false));
    // Meanwhile A received B's message: the same Ns goes out again with Nr 1.
    assert_eq!(sent[1], (ms(1_000), 0, 1, true));
    assert_eq!(pair.delivered_b, [0]);
    assert_eq!(pair.delivered_a, [10]);
}

#[test]
fn duplicate_is_acked_at_once_and_delivered_once() {
    let mut pair = Pair::new(ReliableConfig::default());
    pair.a.send(hello(TUNNEL_B, 0));
    let mut first_zlb = true;
    pair.run_until(ms(5_000), |side, message| {
        let drop = side == Side::B && message.is_zlb() && first_zlb;
        first_zlb &= !drop;
        !drop
    });
    assert_eq!(pair.delivered_b, [0]);
    assert_eq!(pair.b.stats().duplicates, 1);
    // The delayed ack at 0.1 s is lost; the duplicate at 1 s is acked without delay.
    assert_eq!(pair.zlbs(Side::B), [(ms(100), 0, 1), (ms(1_000), 0, 1)]);
    assert!(pair.a.is_idle());
    assert_eq!(pair.a.stats().retransmitted, 1);

    // The same, one message at a time.
    let mut b = Reliable::new(ReliableConfig::default());
    assert_eq!(b.handle(ms(0), arriving(0, 0, 0)), Received::Delivered);
    assert_eq!(b.handle(ms(0), arriving(0, 0, 0)), Received::Duplicate);
    assert_eq!(drain(&mut b), [0]);
    let ack = b
        .poll_transmit(ms(0))
        .expect("a duplicate is acked at once");
    assert!(ack.is_zlb());
    assert_eq!(seq(&ack), (0, 1));
    assert_eq!(b.poll_transmit(ms(0)), None);
}

#[test]
fn out_of_order_messages_are_queued_then_delivered_in_order() {
    let mut b = Reliable::new(ReliableConfig::default());
    assert_eq!(b.handle(ms(0), arriving(2, 2, 0)), Received::Queued);
    assert_eq!(b.handle(ms(0), arriving(1, 1, 0)), Received::Queued);
    assert_eq!(b.handle(ms(0), arriving(1, 1, 0)), Received::Duplicate);
    // Window 4 takes Ns 0..=3 while 0 is expected; 4 is beyond it.
    assert_eq!(b.handle(ms(0), arriving(4, 4, 0)), Received::OutOfWindow);
    assert_eq!(b.poll_deliver(), None);
    assert_eq!(b.next_nr(), 0);
    assert_eq!(b.handle(ms(0), arriving(0, 0, 0)), Received::Delivered);
    assert_eq!(drain(&mut b), [0, 1, 2]);
    assert_eq!(b.next_nr(), 3);
    let stats = b.stats();
    assert_eq!((stats.out_of_order, stats.out_of_window), (2, 1));

    // Over the wire: the first of three is lost, the other two wait for it.
    let mut pair = Pair::new(ReliableConfig::default());
    for tag in 0..3 {
        pair.a.send(hello(TUNNEL_B, tag));
    }
    let mut first = true;
    pair.run_until(ms(10_000), |side, _| {
        let drop = side == Side::A && first;
        first &= !drop;
        !drop
    });
    assert_eq!(pair.delivered_b, [0, 1, 2]);
    assert_eq!(pair.b.stats().out_of_order, 2);
    assert!(pair.a.is_idle());
}

#[test]
fn receive_window_one_takes_only_the_next_message() {
    let config = ReliableConfig {
        receive_window: 0,
        ..ReliableConfig::default()
    };
    let mut b = Reliable::new(config);
    assert_eq!(b.receive_window(), 1);
    assert_eq!(b.handle(ms(0), arriving(1, 1, 0)), Received::OutOfWindow);
    assert_eq!(b.handle(ms(0), arriving(0, 0, 0)), Received::Delivered);
    assert_eq!(drain(&mut b), [0]);
}

#[test]
fn send_window_is_respected() {
    let mut a = Reliable::new(ReliableConfig::default());
    a.set_peer_window(4);
    for tag in 0..10 {
        a.send(hello(TUNNEL_B, tag));
    }
    let sent = all_sent(&mut a, ms(0));
    assert_eq!(
        sent.iter().map(seq).collect::<Vec<_>>(),
        [(0, 0), (1, 0), (2, 0), (3, 0)]
    );
    assert_eq!((a.in_flight(), a.queued()), (4, 6));
    assert!(!a.is_idle());
    // Two acknowledged: two more may go.
    assert_eq!(a.handle(ms(10), zlb(0, 2)), Received::AckOnly);
    assert_eq!(a.in_flight(), 2);
    let sent = all_sent(&mut a, ms(10));
    assert_eq!(sent.iter().map(seq).collect::<Vec<_>>(), [(4, 0), (5, 0)]);
    assert_eq!((a.in_flight(), a.queued()), (4, 4));
    // A zero window is invalid and used as 1.
    a.set_peer_window(0);
    assert_eq!(a.send_window(), 1);

    // Over the wire, with B answering each message: never more than 4 in flight.
    let mut pair = Pair::new(ReliableConfig::default());
    for tag in 0..10 {
        pair.a.send(hello(TUNNEL_B, tag));
    }
    pair.exchange(&mut |_, _| true);
    assert_eq!((pair.a.in_flight(), pair.a.queued()), (4, 6));
    pair.run_until(ms(10_000), everything);
    assert_eq!(pair.delivered_b, (0..10).collect::<Vec<_>>());
    assert!(pair.a.is_idle());
}

#[test]
fn zlb_after_ack_delay_only_when_nothing_piggybacks() {
    let mut b = Reliable::new(ReliableConfig::default());
    b.set_peer_tunnel_id(TUNNEL_A);
    assert_eq!(b.handle(ms(0), arriving(0, 0, 0)), Received::Delivered);
    assert_eq!(b.poll_transmit(ms(0)), None);
    assert_eq!(b.poll_timeout(), Some(ms(100)));
    assert!(!b.is_idle());
    b.handle_timeout(ms(99)).unwrap();
    assert_eq!(b.poll_transmit(ms(99)), None);
    b.handle_timeout(ms(100)).unwrap();
    let ack = b.poll_transmit(ms(100)).expect("the ack is due");
    assert_eq!(
        ack,
        ControlMessage {
            header: HeaderRepr::control(TUNNEL_A, 0, 0, 1),
            avps: Vec::new(),
        }
    );
    assert_eq!(b.poll_transmit(ms(100)), None);
    assert_eq!(b.poll_timeout(), None);
    assert!(b.is_idle());
    assert_eq!(b.stats().zlb_sent, 1);
    // A ZLB takes no Ns: the next message still gets 0.
    b.send(hello(TUNNEL_A, 9));
    assert_eq!(seq(&b.poll_transmit(ms(200)).unwrap()), (0, 1));

    // A reply within the delay carries the ack instead.
    let mut b = Reliable::new(ReliableConfig::default());
    b.handle(ms(0), arriving(0, 0, 0));
    b.send(hello(TUNNEL_A, 7));
    let reply = b.poll_transmit(ms(50)).expect("the reply goes out");
    assert_eq!(seq(&reply), (0, 1));
    // Only the reply's retransmission timer is left.
    assert_eq!(b.poll_timeout(), Some(ms(1_050)));
    b.handle_timeout(ms(100)).unwrap();
    assert_eq!(b.poll_transmit(ms(100)), None);
    assert_eq!(b.stats().zlb_sent, 0);

    // And over the wire: B answers each message right away, so no ZLB from B at all.
    let mut pair = Pair::new(ReliableConfig::default());
    pair.a.send(hello(TUNNEL_B, 0));
    pair.exchange(&mut |_, _| true);
    pair.b.send(hello(TUNNEL_A, 10));
    pair.run_until(ms(5_000), everything);
    assert!(pair.zlbs(Side::B).is_empty());
    assert_eq!(pair.zlbs(Side::A), [(ms(100), 1, 1)]);
}

#[test]
fn an_ack_for_messages_never_sent_is_ignored() {
    let mut a = Reliable::new(ReliableConfig::default());
    a.send(hello(TUNNEL_B, 0));
    a.send(hello(TUNNEL_B, 1));
    assert_eq!(all_sent(&mut a, ms(0)).len(), 2);
    for nr in [3, 100, 32768, 40000] {
        assert_eq!(a.handle(ms(1), zlb(0, nr)), Received::AckOnly);
        assert_eq!(a.in_flight(), 2);
    }
    // 40000 is behind 0 (an old ack); the other three are ahead of anything sent.
    assert_eq!(a.stats().invalid_nr, 3);
    // An old ack (behind the oldest unacked) is reordering, not an error.
    a.handle(ms(1), zlb(0, 1));
    a.handle(ms(1), zlb(0, 0));
    assert_eq!(a.in_flight(), 1);
    assert_eq!(a.stats().invalid_nr, 3);
    // Nothing in flight at all, and a wild Nr: still nothing happens.
    a.handle(ms(1), zlb(0, 2));
    a.handle(ms(1), zlb(0, 65535));
    assert!(a.is_idle());
    assert_eq!(
        a.handle(
            ms(1),
            ControlMessage {
                header: HeaderRepr {
                    sequence: None,
                    ..HeaderRepr::control(1, 0, 0, 0)
                },
                avps: Vec::new(),
            }
        ),
        Received::Unsequenced
    );
}

#[test]
fn gives_up_after_max_retransmits() {
    let mut pair = Pair::new(ReliableConfig::default());
    pair.a.send(hello(TUNNEL_B, 0));
    pair.run_until(ms(30_999), |_, _| false);
    assert!(pair.gave_up.is_none());
    pair.run_until(ms(40_000), |_, _| false);
    let (side, gave_up) = pair.gave_up.expect("A gives up");
    assert_eq!(side, Side::A);
    assert_eq!(
        gave_up,
        GaveUp {
            ns: 0,
            message_type: Some(MessageType::Hello),
            retransmits: 5,
        }
    );
    // The first send plus 5 retransmissions; the sixth timeout (at 31 s) gives up.
    assert_eq!(pair.transmissions(Side::A).len(), 6);
    assert_eq!(pair.a.full_retransmit_cycle(), Duration::from_secs(31));
    let a = &mut pair.a;
    assert_eq!(a.gave_up(), Some(gave_up));
    assert_eq!(a.handle_timeout(ms(50_000)), Err(gave_up));
    a.send(hello(TUNNEL_B, 1));
    assert_eq!(a.poll_transmit(ms(50_000)), None);
    assert_eq!(a.poll_timeout(), None);
    // What still arrives is delivered (a late StopCCN, say) but never acknowledged.
    assert_eq!(a.handle(ms(50_000), arriving(5, 0, 0)), Received::Delivered);
    assert_eq!(a.handle(ms(50_000), arriving(5, 0, 0)), Received::Duplicate);
    assert_eq!(drain(a), [5]);
    assert_eq!(a.poll_transmit(ms(50_000)), None);
    assert!(a.is_idle());
}

#[test]
fn sequence_numbers_wrap_around() {
    let mut pair = Pair::new(ReliableConfig::default());
    pair.a.next_ns = 65533;
    pair.b.next_nr = 65533;
    pair.b.next_ns = 65534;
    pair.a.next_nr = 65534;
    for tag in 0..7 {
        pair.a.send(hello(TUNNEL_B, tag));
        pair.b.send(hello(TUNNEL_A, 100 + tag));
    }
    // Lose A's Ns 65535 once, so a gap is queued across the wrap.
    let mut lost = false;
    pair.run_until(ms(20_000), |side, message| {
        let drop = side == Side::A && !lost && message.header.sequence.unwrap().ns == 65535;
        lost |= drop;
        !drop
    });
    assert!(lost);
    assert_eq!(pair.delivered_b, (0..7).collect::<Vec<_>>());
    assert_eq!(pair.delivered_a, (100..107).collect::<Vec<_>>());
    assert!(pair.a.is_idle() && pair.b.is_idle());
    assert_eq!((pair.a.next_ns(), pair.b.next_nr()), (4, 4));
    assert_eq!((pair.b.next_ns(), pair.a.next_nr()), (5, 5));
    let ns: Vec<u16> = pair
        .transmissions(Side::A)
        .iter()
        .map(|(_, ns, _, _)| *ns)
        .collect();
    assert_eq!(&ns[..4], [65533, 65534, 65535, 0]);
    // Duplicates across the wrap are still duplicates.
    assert_eq!(
        pair.b.handle(pair.now, arriving(0, 65535, 0)),
        Received::Duplicate
    );
    assert_eq!(
        pair.b.handle(pair.now, arriving(0, 2, 0)),
        Received::Duplicate
    );
    assert_eq!(
        pair.b.handle(pair.now, arriving(0, 4, 0)),
        Received::Delivered
    );
}

#[test]
fn slow_start_grows_and_collapses_the_congestion_window() {
    let config = ReliableConfig {
        slow_start: true,
        ..ReliableConfig::default()
    };
    let mut a = Reliable::new(config);
    a.set_peer_window(4);
    for tag in 0..12 {
        a.send(hello(TUNNEL_B, tag));
    }
    let mut windows = Vec::new();
    let mut sent = Vec::new();
    let now = ms(0);
    for nr in 0..=4 {
        if nr > 0 {
            a.handle(now, zlb(0, nr));
        }
        windows.push(a.send_window());
        let burst: Vec<u16> = all_sent(&mut a, now).iter().map(|m| seq(m).0).collect();
        assert!(a.in_flight() <= a.send_window());
        sent.push(burst);
    }
    assert_eq!(windows, [1, 2, 3, 4, 4]);
    assert_eq!(sent, [vec![0], vec![1, 2], vec![3, 4], vec![5, 6], vec![7]]);
    assert_eq!(a.in_flight(), 4);

    // Loss: CWND back to 1, SSTHRESH to 2, only the oldest message goes again.
    a.handle_timeout(ms(1_000)).unwrap();
    assert_eq!((a.send_window(), a.ssthresh), (1, 2));
    let again: Vec<u16> = all_sent(&mut a, ms(1_000))
        .iter()
        .map(|m| seq(m).0)
        .collect();
    assert_eq!(again, [4]);
    // Its ack opens CWND to 2: the next two unacked ones go again, in order.
    a.handle(ms(1_010), zlb(0, 5));
    assert_eq!(a.send_window(), 2);
    let again: Vec<u16> = all_sent(&mut a, ms(1_010))
        .iter()
        .map(|m| seq(m).0)
        .collect();
    assert_eq!(again, [5, 6]);
    // An ack covering everything the peer had queued spares the rest: nothing re-sent
    // twice, and congestion avoidance (CWND ≥ SSTHRESH) grows by one per CWND acks.
    a.handle(ms(1_020), zlb(0, 8));
    assert_eq!(a.send_window(), 3);
    assert_eq!(a.stats().retransmitted, 3);
    let next: Vec<u16> = all_sent(&mut a, ms(1_020))
        .iter()
        .map(|m| seq(m).0)
        .collect();
    assert_eq!(next, [8, 9, 10]);
}

#[test]
fn slow_start_over_a_lossy_pair() {
    let config = ReliableConfig {
        slow_start: true,
        ..ReliableConfig::default()
    };
    let mut pair = Pair::new(config);
    for tag in 0..20 {
        pair.a.send(hello(TUNNEL_B, tag));
    }
    let mut count = 0;
    pair.run_until(ms(120_000), |_, _| {
        count += 1;
        count % 4 != 0
    });
    assert_eq!(pair.delivered_b, (0..20).collect::<Vec<_>>());
    assert!(pair.a.is_idle() && pair.gave_up.is_none());
}

/// splitmix64: the wire's dice, seeded by proptest so that failures replay.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        crate::seed::splitmix64(&mut self.0)
    }

    /// Uniform enough in 0..n for a test.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct InFlight {
    arrival: Instant,
    order: u64,
    to: Side,
    message: ControlMessage<'static>,
}

#[derive(Debug, Clone)]
struct Scenario {
    a_count: u16,
    b_count: u16,
    window_a: u16,
    window_b: u16,
    slow_start: bool,
    /// Percent of packets lost, duplicated.
    loss: u64,
    duplication: u64,
    /// Largest one-way delay; each packet draws its own, which reorders them.
    max_delay_ms: u64,
    /// Time between two messages of the layer above.
    gap_ms: u64,
    seed: u64,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        (0u16..40, 0u16..40, 1u16..6, 1u16..6, any::<bool>()),
        (0u64..40, 0u64..25, 1u64..800, 0u64..400, any::<u64>()),
    )
        .prop_map(
            |(
                (a_count, b_count, window_a, window_b, slow_start),
                (loss, duplication, max_delay_ms, gap_ms, seed),
            )| Scenario {
                a_count,
                b_count,
                window_a,
                window_b,
                slow_start,
                loss,
                duplication,
                max_delay_ms,
                gap_ms,
                seed,
            },
        )
}

/// Runs both sides over a wire that loses, duplicates and reorders (by random delay);
/// returns what each side delivered.
fn simulate(s: &Scenario) -> Result<(Vec<u16>, Vec<u16>), TestCaseError> {
    let config = |window: u16| ReliableConfig {
        receive_window: window,
        initial_timeout: Duration::from_millis(700),
        max_timeout: Duration::from_secs(4),
        // The wire may lose many in a row; here only delivery matters, not giving up.
        max_retransmits: 10_000,
        slow_start: s.slow_start,
        ..ReliableConfig::default()
    };
    let mut a = Reliable::new(config(s.window_a));
    let mut b = Reliable::new(config(s.window_b));
    a.set_peer_window(s.window_b);
    b.set_peer_window(s.window_a);
    let mut wire: Vec<InFlight> = Vec::new();
    let mut packets = 0u64;
    let mut dice = Dice(s.seed);
    let (mut queued_a, mut queued_b) = (0u16, 0u16);
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    let mut now = Instant::ZERO;
    let send_time = |i: u16| ms(u64::from(i) * s.gap_ms);
    for _ in 0..100_000 {
        while queued_a < s.a_count && send_time(queued_a) <= now {
            a.send(hello(TUNNEL_B, queued_a));
            queued_a += 1;
        }
        while queued_b < s.b_count && send_time(queued_b) <= now {
            b.send(hello(TUNNEL_A, 1000 + queued_b));
            queued_b += 1;
        }
        for (from, to, peer_window) in
            [(&mut a, Side::B, s.window_b), (&mut b, Side::A, s.window_a)]
        {
            while let Some(message) = from.poll_transmit(now) {
                prop_assert!(from.in_flight() <= usize::from(peer_window));
                if dice.below(100) < s.loss {
                    continue;
                }
                let copies = if dice.below(100) < s.duplication {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    packets += 1;
                    wire.push(InFlight {
                        arrival: now + Duration::from_millis(dice.below(s.max_delay_ms)),
                        order: packets,
                        to,
                        message: message.clone(),
                    });
                }
            }
        }
        got_a.extend(drain(&mut a));
        got_b.extend(drain(&mut b));
        let everything_sent = queued_a == s.a_count && queued_b == s.b_count;
        if everything_sent && wire.is_empty() && a.is_idle() && b.is_idle() {
            // Both peers keep to the windows they were given and ack only what was sent.
            for stats in [a.stats(), b.stats()] {
                prop_assert_eq!((stats.out_of_window, stats.invalid_nr), (0, 0));
            }
            return Ok((got_a, got_b));
        }
        let next_send = [
            (queued_a < s.a_count).then(|| send_time(queued_a)),
            (queued_b < s.b_count).then(|| send_time(queued_b)),
        ];
        let next = [a.poll_timeout(), b.poll_timeout()]
            .into_iter()
            .chain(next_send)
            .chain(wire.iter().map(|p| Some(p.arrival)))
            .flatten()
            .min();
        let Some(next) = next else {
            return Err(TestCaseError::fail("stuck: nothing to do and not done"));
        };
        now = now.max(next);
        // Arrivals due by now, in arrival order.
        wire.sort_by_key(|p| core::cmp::Reverse((p.arrival, p.order)));
        while wire.last().is_some_and(|p| p.arrival <= now) {
            let Some(packet) = wire.pop() else { break };
            match packet.to {
                Side::A => a.handle(now, packet.message),
                Side::B => b.handle(now, packet.message),
            };
        }
        prop_assert!(a.handle_timeout(now).is_ok());
        prop_assert!(b.handle_timeout(now).is_ok());
    }
    Err(TestCaseError::fail("did not finish"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn lossy_wire_delivers_exactly_once_in_order(s in scenario()) {
        let (got_a, got_b) = simulate(&s)?;
        prop_assert_eq!(got_b, (0..s.a_count).collect::<Vec<_>>());
        prop_assert_eq!(got_a, (1000..1000 + s.b_count).collect::<Vec<_>>());
    }

    /// Whatever Ns/Nr a hostile peer sends: no panic, the windows hold, and what is
    /// delivered is in order and each Ns at most once.
    #[test]
    fn hostile_sequence_numbers_are_harmless(
        window in 0u16..8,
        inputs in proptest::collection::vec((any::<u16>(), any::<u16>(), any::<bool>(), 0u64..3_000), 0..200),
    ) {
        let config = ReliableConfig { receive_window: window, ..ReliableConfig::default() };
        let mut side = Reliable::new(config);
        side.set_peer_window(window);
        let mut now = Instant::ZERO;
        let mut expected = 0u16;
        for (i, (ns, nr, is_zlb, step_ms)) in inputs.into_iter().enumerate() {
            now += Duration::from_millis(step_ms);
            side.send(hello(TUNNEL_B, i as u16));
            let message = if is_zlb { zlb(ns, nr) } else { arriving(ns, ns, nr) };
            side.handle(now, message);
            while let Some(message) = side.poll_deliver() {
                prop_assert_eq!(message.header.session_id, expected);
                expected = expected.wrapping_add(1);
            }
            if side.handle_timeout(now).is_err() {
                prop_assert_eq!(side.poll_transmit(now), None);
                break;
            }
            while side.poll_transmit(now).is_some() {}
            prop_assert!(side.in_flight() <= usize::from(window.max(1)));
            prop_assert!(side.reorder.len() <= usize::from(window.max(1)));
        }
    }
}
