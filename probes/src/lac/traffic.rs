//! IP traffic inside the subscribers' sessions (`--traffic-rate`): while the run holds, every
//! IP-up session sends ICMP Echo Requests from its IPCP address to the peer's (or to
//! `--traffic-target`), and the Echo Replies that come back in the session are matched to them
//! for loss and round trip.
//!
//! No task or timer per session: one schedule per initiator, woken by the LAC's tick. A round
//! (one request to every session) lasts 1 / rate; it is cut into slices of at least
//! [`SLICE`], each sending to the next share of the sessions in key order, so that 10k
//! sessions at 1/s send about 100 requests every 10 ms rather than 10k at once.
//!
//! A session keeps 16 octets for it: its addresses, its next sequence number and a 64-bit
//! window of the requests still unanswered. The send time rides in the request's data (as
//! `ping` does), so nothing per request is stored. A request unanswered after
//! [`TRAFFIC_GRACE`] (counted in requests sent after it) leaves the window: it is lost, and a
//! reply that comes later counts as unexpected, not received.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::ops::Bound;
use std::rc::Rc;
use std::time::Duration;

use l2tp::conn::tunnels::TunnelSet;
use l2tp::ip::icmp::{EchoKind, IcmpEchoRepr};
use l2tp::ppp::table::PppTable;
use l2tp::time::Instant;

use super::stats::{self, Swarm};

/// Traffic stops this long before the teardown, so the last replies can come; a request not
/// answered within about this long counts as lost.
pub const TRAFFIC_GRACE: Duration = Duration::from_secs(1);

/// The shortest slice of a round.
const SLICE: Duration = Duration::from_millis(10);

/// Most slices in a round.
const MAX_SLICES: u32 = 100;

/// The highest per-session rate `--traffic-rate` takes.
pub const MAX_TRAFFIC_RATE: f64 = 1000.0;
/// The lowest non-zero one (a request every 100 s).
pub const MIN_TRAFFIC_RATE: f64 = 0.01;

type Key = (u16, u16);

/// The traffic part of a [`PppPlan`](super::PppPlan).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TrafficPlan {
    /// Echo Requests per second on each IP-up session (0: no traffic).
    pub rate: f64,
    /// Where to send them instead of the peer's IPCP address.
    pub target: Option<Ipv4Addr>,
}

impl TrafficPlan {
    pub fn on(&self) -> bool {
        self.rate > 0.0
    }
}

/// One session's pinger.
#[derive(Debug, Clone, Copy)]
struct Pinger {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    next_seq: u16,
    /// Bit i set: the request with sequence `next_seq - 1 - i` is unanswered.
    outstanding: u64,
}

impl Pinger {
    /// A request went out with `next_seq`; how many older ones left the window unanswered.
    fn sent(&mut self, horizon: u32) -> u32 {
        self.next_seq = self.next_seq.wrapping_add(1);
        self.outstanding = (self.outstanding << 1) | 1;
        let expired = (self.outstanding >> horizon).count_ones();
        self.outstanding &= (1u64 << horizon) - 1;
        expired
    }

    /// A reply with `sequence`: true when it answers an unanswered request.
    fn answered(&mut self, sequence: u16) -> bool {
        let age = self.next_seq.wrapping_sub(1).wrapping_sub(sequence);
        let bit = 1u64.checked_shl(u32::from(age)).unwrap_or(0);
        let matched = self.outstanding & bit != 0;
        self.outstanding &= !bit;
        matched
    }
}

/// The traffic of one initiator's sessions.
pub(super) struct Traffic {
    plan: TrafficPlan,
    swarm: Rc<Swarm>,
    pingers: BTreeMap<Key, Pinger>,
    period: Duration,
    slices: u32,
    /// Requests kept in a window: about [`TRAFFIC_GRACE`] of them, 2 to 63.
    horizon: u32,
    /// Where the round is: its slice, the last session served, the share of a slice.
    slice: u32,
    cursor: Option<Key>,
    quota: usize,
    /// The next slice (run time); `None` when not holding.
    next: Option<Instant>,
    packet: Vec<u8>,
    frame: Vec<u8>,
}

impl Traffic {
    /// `plan.rate` must be within [`MIN_TRAFFIC_RATE`] ..= [`MAX_TRAFFIC_RATE`].
    pub fn new(plan: TrafficPlan, swarm: Rc<Swarm>) -> Traffic {
        let rate = plan.rate.clamp(MIN_TRAFFIC_RATE, MAX_TRAFFIC_RATE);
        let period = Duration::from_secs_f64(1.0 / rate);
        let slices = (period.as_micros() / SLICE.as_micros()).clamp(1, u128::from(MAX_SLICES));
        let horizon = (rate * TRAFFIC_GRACE.as_secs_f64()).ceil() + 1.0;
        swarm.stats_mut().traffic_rate = plan.rate;
        Traffic {
            plan,
            swarm,
            pingers: BTreeMap::new(),
            period,
            slices: slices as u32,
            horizon: horizon.clamp(2.0, 63.0) as u32,
            slice: 0,
            cursor: None,
            quota: 0,
            next: None,
            packet: Vec::with_capacity(IcmpEchoRepr::HEADER_LEN + 8),
            frame: Vec::with_capacity(IcmpEchoRepr::HEADER_LEN + 12),
        }
    }

    /// Where the requests go: `--traffic-target`, else the peer's IPCP address.
    pub fn destination(&self, peer: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        self.plan.target.or(peer)
    }

    /// Session `key` is IP up with our address `src`: it pings `dst` while the run holds.
    pub fn add(&mut self, key: Key, src: Ipv4Addr, dst: Ipv4Addr) {
        self.pingers.insert(
            key,
            Pinger {
                src,
                dst,
                next_seq: 0,
                outstanding: 0,
            },
        );
    }

    /// Session `key` stops (closing, or gone): what it has unanswered stays lost.
    pub fn forget(&mut self, key: Key) {
        if let Some(pinger) = self.pingers.remove(&key) {
            let mut stats = self.swarm.stats_mut();
            let unanswered = u64::from(pinger.outstanding.count_ones());
            stats.traffic_in_flight = stats.traffic_in_flight.saturating_sub(unanswered);
        }
    }

    /// The run holds from `t`: the first round starts.
    pub fn start(&mut self, t: Instant) {
        self.next = Some(t);
        self.slice = 0;
    }

    pub fn stop(&mut self) {
        self.next = None;
    }

    /// When the next slice is due (run time).
    pub fn due(&self) -> Option<Instant> {
        self.next
    }

    /// Sends the slice due at `t`, unless the run's end is within [`TRAFFIC_GRACE`] (`quiet`:
    /// then traffic is over).
    pub fn tick(&mut self, t: Instant, quiet: bool, table: &PppTable<Key>, set: &mut TunnelSet) {
        let Some(at) = self.next else {
            return;
        };
        if quiet {
            self.next = None;
            return;
        }
        if t < at {
            return;
        }
        if self.slice == 0 {
            self.cursor = None;
            self.quota = self.pingers.len().div_ceil(self.slices as usize);
        }
        // The last slice takes whoever is left, so every session gets its request a round.
        let take = if self.slice + 1 >= self.slices {
            usize::MAX
        } else {
            self.quota
        };
        let Traffic {
            pingers,
            cursor,
            packet,
            frame,
            horizon,
            ..
        } = self;
        let range = match *cursor {
            Some(key) => pingers.range_mut((Bound::Excluded(key), Bound::Unbounded)),
            None => pingers.range_mut(..),
        };
        let stamp = t.as_micros().to_be_bytes();
        let (mut sent, mut expired) = (0u64, 0u64);
        for (&key, pinger) in range.take(take) {
            *cursor = Some(key);
            let Some(session) = table.get(key) else {
                continue;
            };
            // The session's key doubles as the Identifier: unique within its tunnel.
            let request =
                IcmpEchoRepr::request(pinger.src, pinger.dst, key.1, pinger.next_seq, &stamp);
            packet.clear();
            frame.clear();
            let framed = request.emit_to_vec(packet).is_ok() && session.send_ipv4(packet, frame);
            if framed
                && set
                    .tunnel_mut(key.0)
                    .is_some_and(|t| t.send_data(key.1, frame))
            {
                expired += u64::from(pinger.sent(*horizon));
                sent += 1;
            }
        }
        {
            let mut stats = self.swarm.stats_mut();
            stats.traffic_sent += sent;
            stats.traffic_in_flight = (stats.traffic_in_flight + sent).saturating_sub(expired);
        }
        self.slice = (self.slice + 1) % self.slices;
        let step = self.period / self.slices;
        let mut next = at + step;
        // A runner that fell a round behind skips the backlog rather than bursting it.
        if next + self.period < t {
            next = t;
        }
        self.next = Some(next);
    }

    /// An IPv4 packet from session `key` at `t`: an Echo Reply to one of its requests counts
    /// as received with its round trip; any other reply as unexpected. Not ICMP: ignored.
    pub fn receive(&mut self, key: Key, packet: &[u8], t: Instant) {
        let Ok(echo) = IcmpEchoRepr::parse(packet) else {
            return;
        };
        if echo.kind != EchoKind::Reply {
            return;
        }
        let ours = self.pingers.get_mut(&key).is_some_and(|p| {
            echo.identifier == key.1
                && echo.src == p.dst
                && echo.dst == p.src
                && p.answered(echo.sequence)
        });
        let mut stats = self.swarm.stats_mut();
        if !ours {
            stats.traffic_unexpected += 1;
            return;
        }
        stats.traffic_received += 1;
        stats.traffic_in_flight = stats.traffic_in_flight.saturating_sub(1);
        if let Some(stamp) = echo.data.get(..8).and_then(|d| <[u8; 8]>::try_from(d).ok()) {
            let sent = Instant::from_micros(u64::from_be_bytes(stamp));
            stats::record(&mut stats.traffic_rtt, sent, t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_matches_each_reply_once_and_expires_old_requests() {
        let mut p = Pinger {
            src: Ipv4Addr::LOCALHOST,
            dst: Ipv4Addr::LOCALHOST,
            next_seq: u16::MAX - 1,
            outstanding: 0,
        };
        // Sequences 65534, 65535, 0, 1 out (across the wrap).
        let expired: Vec<u32> = (0..4).map(|_| p.sent(3)).collect();
        // With a horizon of 3 the oldest (65534) left the window at the fourth.
        assert_eq!(expired, [0, 0, 0, 1]);
        assert_eq!(p.outstanding.count_ones(), 3);
        assert!(!p.answered(65534), "expired");
        assert!(p.answered(0));
        assert!(!p.answered(0), "a duplicate");
        assert!(p.answered(65535));
        assert!(!p.answered(2), "never sent");
        assert!(!p.answered(40_000), "far outside the window");
        assert_eq!(p.outstanding.count_ones(), 1);
        // Two more: 1 is pushed out unanswered.
        assert_eq!(p.sent(3), 0);
        assert_eq!(p.sent(3), 0);
        assert_eq!(p.sent(3), 1);
    }
}
