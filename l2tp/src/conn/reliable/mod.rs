//! Reliable delivery of one control connection's messages (RFC 2661 §5.8, Appendix A).
//!
//! [`Reliable`] numbers outgoing messages (Ns), acknowledges incoming ones (Nr), keeps unacked
//! messages for retransmission with exponential back-off, respects the peer's receive window
//! (and, optionally, the Appendix A congestion window), reorders what arrives inside our own
//! window and hands the upper layer every peer message exactly once, in order.
//!
//! It is sans-IO: inputs take `now`, outputs are polled. The owner loops
//!
//! ```text
//! handle(now, msg) / send(msg)  ->  poll_deliver()*  ->  poll_transmit(now)*
//! sleep until poll_timeout()    ->  handle_timeout(now)  ->  poll_transmit(now)*
//! ```
//!
//! Loss recovery is TCP-like go-back-N: one retransmission timer runs for the oldest unacked
//! message; when it fires every unacked message is due again, re-sent oldest first as the window
//! allows (with slow start, the collapsed CWND lets only the oldest go, and an ack that covers
//! the others spares them). Retransmissions keep the message, not the bytes, so each one carries
//! the current Nr.

use core::time::Duration;
use std::collections::VecDeque;

use serde::Serialize;

use crate::time::Instant;
use crate::wire::header::{HeaderRepr, Sequence};
use crate::wire::message::{ControlMessage, MessageType};

/// The largest window either way. With more than half the sequence space outstanding, §5.8's
/// "ahead / less than or equal" rule could no longer tell a new message from a duplicate.
pub const MAX_WINDOW: u16 = 32768;

/// The peer's receive window when its SCCRQ/SCCRP carries no Receive Window Size AVP (§4.4.3).
pub const DEFAULT_PEER_WINDOW: u16 = 4;

/// How far `a` is ahead of `b`, modulo 2^16.
pub fn seq_diff(a: u16, b: u16) -> u16 {
    a.wrapping_sub(b)
}

/// `a` comes before `b`: `b` is 1..=32767 ahead of `a` (§5.8).
pub fn seq_lt(a: u16, b: u16) -> bool {
    (1..MAX_WINDOW).contains(&seq_diff(b, a))
}

/// Tuning of one control connection's reliable transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReliableConfig {
    /// Our receive window, advertised in the Receive Window Size AVP: messages up to this many
    /// minus one ahead of the expected Ns are buffered. 0 is invalid (§5.8) and is used as 1.
    pub receive_window: u16,
    /// Time before the first retransmission (§5.8 recommends 1 s).
    pub initial_timeout: Duration,
    /// Cap of the exponential back-off; §5.8 requires at least 8 s (not enforced, for tests).
    pub max_timeout: Duration,
    /// Retransmissions of one message before giving up (§5.8 recommends 5).
    pub max_retransmits: u32,
    /// How long an owed ack waits for an outgoing message to ride on before a ZLB carries it.
    pub ack_delay: Duration,
    /// Appendix A slow start and congestion avoidance.
    pub slow_start: bool,
}

impl Default for ReliableConfig {
    fn default() -> Self {
        ReliableConfig {
            // What the RFC says every peer must accept, and what most implementations send.
            receive_window: 4,
            initial_timeout: Duration::from_secs(1),
            max_timeout: Duration::from_secs(8),
            max_retransmits: 5,
            // Well under a quarter of the peer's shortest (1 s) timeout, so a delayed ack never
            // provokes a retransmission; long enough for the layer above to answer in between.
            ack_delay: Duration::from_millis(100),
            slow_start: false,
        }
    }
}

impl ReliableConfig {
    /// Wait after a message's `retransmits`-th retransmission (0 = after the first send):
    /// `initial_timeout * 2^retransmits`, capped at `max_timeout`.
    pub fn retransmit_timeout(&self, retransmits: u32) -> Duration {
        let factor = 1u32.checked_shl(retransmits).unwrap_or(u32::MAX);
        self.initial_timeout
            .checked_mul(factor)
            .unwrap_or(Duration::MAX)
            .min(self.max_timeout)
    }

    /// How long a teardown (CDNs, then the StopCCN) may take to be acknowledged or given up:
    /// the StopCCN's full cycle, plus one capped timeout for the CDNs and any message already
    /// in flight ahead of it in the peer's window (39 s with the defaults). A role that stops
    /// waits this long for its StopCCNs, so that what is not acknowledged ends as the RFC's
    /// give-up rather than as a cut-off.
    pub fn teardown_bound(&self) -> Duration {
        self.full_retransmit_cycle()
            .saturating_add(self.max_timeout)
    }

    /// From the first send of a message until giving up on it: every timeout up to and
    /// including the one after the last retransmission (31 s with the defaults, as in §5.7).
    pub fn full_retransmit_cycle(&self) -> Duration {
        let mut total = Duration::ZERO;
        for n in 0..=self.max_retransmits {
            let timeout = self.retransmit_timeout(n);
            // From here on every timeout is the same: multiply instead of looping up to u32::MAX.
            if timeout >= self.max_timeout || n >= 32 {
                let remaining = (self.max_retransmits - n).saturating_add(1);
                return total.saturating_add(timeout.saturating_mul(remaining));
            }
            total = total.saturating_add(timeout);
        }
        total
    }
}

/// What [`Reliable::handle`] did with a message, for counters and tracing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Received {
    /// It was the next expected message: delivered, together with any queued ones it unblocked.
    Delivered,
    /// Ahead of a gap but inside our receive window: kept until the gap is filled.
    Queued,
    /// Already received (or already queued): dropped, and an ack is sent at once (§5.8).
    Duplicate,
    /// Beyond our receive window: dropped; the peer overran the window it was given.
    OutOfWindow,
    /// A ZLB: only its Nr was used.
    AckOnly,
    /// No Ns/Nr at all. The wire codec rejects such control messages; only a hand-built
    /// message can get here, and it is dropped.
    Unsequenced,
}

/// The peer stopped acknowledging: the tunnel and its sessions must be cleared (§5.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no acknowledgement of {} (Ns {ns}) after {retransmits} retransmissions", self.message_name())]
pub struct GaveUp {
    pub ns: u16,
    pub message_type: Option<MessageType>,
    pub retransmits: u32,
}

impl GaveUp {
    /// The name of the message given up on ("StopCCN"), or "a message" when it had no type.
    pub fn message_name(&self) -> &'static str {
        self.message_type.map_or("a message", MessageType::name)
    }
}

/// Counters of one reliable transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReliableStats {
    /// Messages put on the wire for the first time.
    pub sent: u64,
    pub retransmitted: u64,
    pub zlb_sent: u64,
    /// Everything given to `handle`, ZLBs included.
    pub received: u64,
    pub zlb_received: u64,
    /// Messages handed to the layer above.
    pub delivered: u64,
    pub duplicates: u64,
    /// Messages that arrived ahead of a gap and were queued.
    pub out_of_order: u64,
    pub out_of_window: u64,
    pub unsequenced: u64,
    /// Our messages acknowledged by the peer.
    pub acked: u64,
    /// Nr values that acknowledge messages we never sent (ignored).
    pub invalid_nr: u64,
    /// Retransmission timer expiries (each one a loss event).
    pub timeouts: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// The oldest unacked message is due for retransmission.
    Retransmit = 0,
    /// An owed ack has waited `ack_delay` for a message to ride on.
    Ack = 1,
}

/// Every deadline of the connection in one place (quinn-proto's `TimerTable`).
#[derive(Debug, Clone, Copy, Default)]
struct TimerTable {
    data: [Option<Instant>; 2],
}

impl TimerTable {
    fn set(&mut self, timer: Timer, at: Option<Instant>) {
        self.data[timer as usize] = at;
    }

    fn get(&self, timer: Timer) -> Option<Instant> {
        self.data[timer as usize]
    }

    fn is_expired(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|at| at <= now)
    }

    fn next_timeout(&self) -> Option<Instant> {
        self.data.iter().flatten().min().copied()
    }
}

/// A message we sent and the peer has not acknowledged yet.
#[derive(Debug)]
struct Unacked {
    ns: u16,
    message: ControlMessage<'static>,
    retransmits: u32,
    /// When it is due again; `None` once it is due and waits to be re-sent.
    deadline: Option<Instant>,
}

/// The reliable delivery layer of one control connection (RFC 2661 §5.8).
///
/// Memory: unacked messages are bounded by the send window, buffered out-of-order ones by our
/// receive window. Messages given to [`send`](Self::send) beyond the send window, and delivered
/// ones not yet taken with [`poll_deliver`](Self::poll_deliver), are bounded only by the owner:
/// it should drain `poll_deliver` after every `handle` and not queue without limit.
#[derive(Debug)]
pub struct Reliable {
    config: ReliableConfig,
    /// Effective peer window, 1..=MAX_WINDOW.
    peer_window: u16,
    peer_tunnel_id: u16,
    next_ns: u16,
    next_nr: u16,
    /// Sent and unacknowledged, oldest first; their Ns are consecutive.
    unacked: VecDeque<Unacked>,
    /// Not sent yet: the send window is full.
    waiting: VecDeque<ControlMessage<'static>>,
    /// Slot `i` holds the received message with Ns `next_nr + i`; slot 0 is always empty
    /// between calls (an in-order message is delivered at once).
    reorder: VecDeque<Option<ControlMessage<'static>>>,
    delivered: VecDeque<ControlMessage<'static>>,
    /// An ack must go out now, on a message or in a ZLB.
    ack_due: bool,
    timers: TimerTable,
    cwnd: u16,
    ssthresh: u16,
    /// Acks counted towards the next CWND increment in congestion avoidance.
    cwnd_credit: u16,
    gave_up: Option<GaveUp>,
    stats: ReliableStats,
}

/// An empty queue's buffer goes back to the allocator (a drained queue keeps its capacity).
pub fn release<T>(queue: &mut VecDeque<T>) {
    if queue.is_empty() && queue.capacity() > 0 {
        *queue = VecDeque::new();
    }
}

impl Reliable {
    /// Gives back the buffers of queues that are empty (after a burst they keep their
    /// capacity; an idle tunnel needs none).
    pub(crate) fn release_idle(&mut self) {
        release(&mut self.unacked);
        release(&mut self.waiting);
        release(&mut self.reorder);
        release(&mut self.delivered);
    }

    pub fn new(config: ReliableConfig) -> Self {
        Reliable {
            config,
            peer_window: DEFAULT_PEER_WINDOW,
            peer_tunnel_id: 0,
            next_ns: 0,
            next_nr: 0,
            unacked: VecDeque::new(),
            waiting: VecDeque::new(),
            reorder: VecDeque::new(),
            delivered: VecDeque::new(),
            ack_due: false,
            timers: TimerTable::default(),
            cwnd: 1,
            ssthresh: DEFAULT_PEER_WINDOW,
            cwnd_credit: 0,
            gave_up: None,
            stats: ReliableStats::default(),
        }
    }

    pub fn config(&self) -> &ReliableConfig {
        &self.config
    }

    /// The peer's Receive Window Size (from its SCCRQ/SCCRP; [`DEFAULT_PEER_WINDOW`] until
    /// then). 0 is invalid (§5.8): it is used as 1 here, so a lenient tunnel layer keeps a
    /// working (lock-step) connection; a strict one rejects the tunnel before calling this.
    /// Values above [`MAX_WINDOW`] are capped. Also resets SSTHRESH (Appendix A).
    pub fn set_peer_window(&mut self, window: u16) {
        let window = window.clamp(1, MAX_WINDOW);
        self.peer_window = window;
        self.ssthresh = window;
        self.cwnd = self.cwnd.min(window);
    }

    /// Tunnel ID for our ZLBs: the peer's Assigned Tunnel ID (0 until known).
    pub fn set_peer_tunnel_id(&mut self, id: u16) {
        self.peer_tunnel_id = id;
    }

    /// The peer ended the control connection (its StopCCN): what we still had to deliver can
    /// no longer matter, and a peer that has cleaned up will never acknowledge it. Drops it and
    /// stops retransmitting; receiving and acknowledging go on (§5.7: a retransmitted StopCCN
    /// is still acknowledged). Returns how many messages were dropped.
    pub fn abandon_outgoing(&mut self) -> usize {
        let dropped = self.unacked.len() + self.waiting.len();
        self.unacked.clear();
        self.waiting.clear();
        self.timers.set(Timer::Retransmit, None);
        dropped
    }

    /// Queues a message for reliable delivery. Its header's IDs are the caller's; Ns/Nr are
    /// set when it goes out. Messages beyond the send window wait in order. After giving up
    /// the message is dropped.
    pub fn send(&mut self, message: ControlMessage<'static>) {
        if self.gave_up.is_none() {
            self.waiting.push_back(message);
        }
    }

    /// A control message or ZLB from the peer. Its Nr acknowledges our messages; its Ns puts
    /// it in order (see [`Received`]).
    pub fn handle(&mut self, now: Instant, message: ControlMessage<'static>) -> Received {
        self.stats.received += 1;
        let Some(Sequence { ns, nr }) = message.header.sequence else {
            self.stats.unsequenced += 1;
            return Received::Unsequenced;
        };
        // Nr counts in every case: a duplicate may carry a newer ack than we saw (§B.2).
        self.process_nr(nr);
        if message.is_zlb() {
            // A ZLB takes no slot in the sequence space: its Ns is not ours to consume.
            self.stats.zlb_received += 1;
            return Received::AckOnly;
        }
        let offset = seq_diff(ns, self.next_nr);
        if offset >= MAX_WINDOW {
            // §5.8: within the 32768 values up to the last received one, i.e. old. The peer
            // resends it because our ack got lost: ack again now.
            return self.duplicate();
        }
        if offset >= self.receive_window() {
            self.stats.out_of_window += 1;
            return Received::OutOfWindow;
        }
        let index = usize::from(offset);
        if self.reorder.len() <= index {
            // Bounded by our receive window, not by anything the peer chooses.
            self.reorder.resize_with(index + 1, || None);
        }
        match self.reorder.get_mut(index) {
            Some(slot @ None) => *slot = Some(message),
            _ => return self.duplicate(),
        }
        if index > 0 {
            self.stats.out_of_order += 1;
            return Received::Queued;
        }
        while self.reorder.front().is_some_and(Option::is_some) {
            if let Some(Some(message)) = self.reorder.pop_front() {
                self.delivered.push_back(message);
                self.next_nr = self.next_nr.wrapping_add(1);
                self.stats.delivered += 1;
            }
        }
        self.ack_later(now);
        Received::Delivered
    }

    /// The next in-order message from the peer.
    pub fn poll_deliver(&mut self) -> Option<ControlMessage<'static>> {
        self.delivered.pop_front()
    }

    /// The next message to put on the wire, with `header.sequence` filled in: a due
    /// retransmission, else a new message if the send window allows, else a ZLB if an ack is
    /// due. Every non-ZLB carries the current Nr, so it also settles any owed ack.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<ControlMessage<'static>> {
        if self.gave_up.is_some() {
            return None;
        }
        let window = self.send_window();
        let nr = self.next_nr;
        if let Some(entry) = self
            .unacked
            .iter_mut()
            .take(window)
            .find(|entry| entry.deadline.is_none())
        {
            entry.retransmits = entry.retransmits.saturating_add(1);
            entry.deadline = Some(now + self.config.retransmit_timeout(entry.retransmits));
            let mut message = entry.message.clone();
            message.header.sequence = Some(Sequence { ns: entry.ns, nr });
            self.stats.retransmitted += 1;
            return Some(self.sent(message));
        }
        if self.unacked.len() < window {
            if let Some(mut message) = self.waiting.pop_front() {
                let ns = self.next_ns;
                self.next_ns = ns.wrapping_add(1);
                message.header.sequence = Some(Sequence { ns, nr });
                self.unacked.push_back(Unacked {
                    ns,
                    message: message.clone(),
                    retransmits: 0,
                    deadline: Some(now + self.config.retransmit_timeout(0)),
                });
                self.stats.sent += 1;
                return Some(self.sent(message));
            }
        }
        if self.ack_due {
            let zlb = ControlMessage {
                // Ns of a ZLB is the next one we will use; it does not consume it (§5.8).
                header: HeaderRepr::control(self.peer_tunnel_id, 0, self.next_ns, nr),
                avps: Vec::new(),
            };
            self.stats.zlb_sent += 1;
            return Some(self.sent(zlb));
        }
        None
    }

    /// The earliest time [`handle_timeout`](Self::handle_timeout) must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.gave_up.is_some() {
            return None;
        }
        self.timers.next_timeout()
    }

    /// Fires due timers. A retransmission timeout makes every unacked message due again
    /// (go-back-N; with slow start SSTHRESH = max(CWND/2, 1), CWND = 1); an expired ack delay
    /// makes the ack due. Once the oldest message has been retransmitted `max_retransmits`
    /// times without an ack, returns `Err(GaveUp)`, now and on every later call, and the
    /// connection sends nothing more.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), GaveUp> {
        if let Some(gave_up) = self.gave_up {
            return Err(gave_up);
        }
        if self.timers.is_expired(Timer::Ack, now) {
            self.ack_now();
        }
        if self.timers.is_expired(Timer::Retransmit, now) {
            self.timers.set(Timer::Retransmit, None);
            if let Some(oldest) = self.unacked.front() {
                if oldest.retransmits >= self.config.max_retransmits {
                    return Err(self.give_up());
                }
                self.stats.timeouts += 1;
                if self.config.slow_start {
                    self.ssthresh = (self.cwnd / 2).max(1);
                    self.cwnd = 1;
                    self.cwnd_credit = 0;
                }
                for entry in &mut self.unacked {
                    entry.deadline = None;
                }
            }
        }
        Ok(())
    }

    /// Nothing unacknowledged, nothing waiting to be sent and no ack owed.
    pub fn is_idle(&self) -> bool {
        self.unacked.is_empty()
            && self.waiting.is_empty()
            && !self.ack_due
            && self.timers.get(Timer::Ack).is_none()
    }

    /// One full retransmission cycle with this config (31 s by default), for §5.7's "keep
    /// state after StopCCN".
    pub fn full_retransmit_cycle(&self) -> Duration {
        self.config.full_retransmit_cycle()
    }

    pub fn stats(&self) -> ReliableStats {
        self.stats
    }

    /// The Ns our next new message gets.
    pub fn next_ns(&self) -> u16 {
        self.next_ns
    }

    /// The Ns we expect next from the peer (the Nr we send).
    pub fn next_nr(&self) -> u16 {
        self.next_nr
    }

    /// Messages sent and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.unacked.len()
    }

    /// Messages waiting for the send window to open.
    pub fn queued(&self) -> usize {
        self.waiting.len()
    }

    /// The last message given to [`send`](Self::send) is on the wire once
    /// [`ReliableStats::sent`] reaches this figure (messages go out in the order given).
    pub fn last_queued_ticket(&self) -> u64 {
        self.stats.sent.saturating_add(self.waiting.len() as u64)
    }

    /// How many messages may be unacknowledged now: the peer's window, or with slow start
    /// the smaller of it and CWND.
    pub fn send_window(&self) -> usize {
        if self.config.slow_start {
            usize::from(self.cwnd.min(self.peer_window))
        } else {
            usize::from(self.peer_window)
        }
    }

    /// Our effective receive window: what the Receive Window Size AVP should advertise.
    pub fn receive_window(&self) -> u16 {
        self.config.receive_window.clamp(1, MAX_WINDOW)
    }

    /// Set once the peer stopped acknowledging.
    pub fn gave_up(&self) -> Option<GaveUp> {
        self.gave_up
    }

    /// Drops every message the peer's Nr acknowledges. An Nr behind the oldest unacked
    /// message is an old ack (reordering); one ahead of anything sent is ignored.
    fn process_nr(&mut self, nr: u16) {
        let oldest = self.unacked.front().map_or(self.next_ns, |entry| entry.ns);
        let acked = usize::from(seq_diff(nr, oldest));
        if acked == 0 {
            return;
        }
        if acked > self.unacked.len() {
            if !seq_lt(nr, oldest) {
                self.stats.invalid_nr += 1;
            }
            return;
        }
        self.unacked.drain(..acked);
        self.stats.acked += acked as u64;
        for _ in 0..acked {
            self.grow_cwnd();
        }
        self.arm_retransmit();
    }

    /// Appendix A: +1 per ack below SSTHRESH, +1 per CWND acks above; never beyond the peer's
    /// window. Counted per acknowledged message, so cumulative acks still double CWND per
    /// round trip as the RFC intends.
    fn grow_cwnd(&mut self) {
        if !self.config.slow_start {
            return;
        }
        if self.cwnd < self.ssthresh {
            self.cwnd = self.cwnd.saturating_add(1);
        } else {
            self.cwnd_credit = self.cwnd_credit.saturating_add(1);
            if self.cwnd_credit >= self.cwnd {
                self.cwnd_credit = 0;
                self.cwnd = self.cwnd.saturating_add(1);
            }
        }
        self.cwnd = self.cwnd.min(self.peer_window);
    }

    /// The retransmission timer follows the oldest unacked message; none while it waits to be
    /// re-sent (poll_transmit sends it first) or when nothing is in flight.
    fn arm_retransmit(&mut self) {
        let deadline = self.unacked.front().and_then(|entry| entry.deadline);
        self.timers.set(Timer::Retransmit, deadline);
    }

    /// Book-keeping for anything that leaves: it carries the current Nr, so no ack is owed.
    fn sent(&mut self, message: ControlMessage<'static>) -> ControlMessage<'static> {
        self.ack_due = false;
        self.timers.set(Timer::Ack, None);
        self.arm_retransmit();
        message
    }

    fn duplicate(&mut self) -> Received {
        self.stats.duplicates += 1;
        self.ack_now();
        Received::Duplicate
    }

    fn ack_now(&mut self) {
        // A connection that gave up sends nothing, acks included.
        if self.gave_up.is_some() {
            return;
        }
        self.ack_due = true;
        self.timers.set(Timer::Ack, None);
    }

    /// Starts the ack delay unless an ack is already owed: the first unacked message bounds it.
    fn ack_later(&mut self, now: Instant) {
        if self.gave_up.is_some() || self.ack_due || self.timers.get(Timer::Ack).is_some() {
            return;
        }
        if self.config.ack_delay.is_zero() {
            self.ack_now();
        } else {
            self.timers
                .set(Timer::Ack, Some(now + self.config.ack_delay));
        }
    }

    fn give_up(&mut self) -> GaveUp {
        let gave_up = self.unacked.front().map_or(
            GaveUp {
                ns: self.next_ns,
                message_type: None,
                retransmits: 0,
            },
            |entry| GaveUp {
                ns: entry.ns,
                message_type: entry.message.message_type(),
                retransmits: entry.retransmits,
            },
        );
        self.gave_up = Some(gave_up);
        self.unacked.clear();
        self.waiting.clear();
        self.ack_due = false;
        self.timers = TimerTable::default();
        gave_up
    }
}

#[cfg(test)]
mod tests;
