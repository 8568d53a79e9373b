//! A deterministic, virtual-time network of sans-IO nodes exchanging datagrams.
//!
//! No sockets, no clock, no threads: the [`Simulator`] holds the nodes, a queue of datagrams in
//! flight and each node's next timeout, and advances virtual time from one event to the next.
//! Links lose, duplicate, reorder and delay datagrams by draws from one seeded generator, so a
//! seed replays a run bit for bit, trace included. It knows nothing of L2TP.
//!
//! A test drives two nodes like this:
//!
//! ```
//! use core::time::Duration;
//! use std::net::SocketAddrV4;
//! use l2tp::sim::{Datagram, LinkConditions, Node, Simulator, Stop};
//! use l2tp::time::Instant;
//!
//! /// Answers "ping" with "pong" and remembers what it heard, and when.
//! struct Peer {
//!     addr: SocketAddrV4,
//!     outbox: Vec<Datagram>,
//!     heard: Vec<(Instant, Vec<u8>)>,
//! }
//!
//! impl Node for Peer {
//!     fn handle(&mut self, now: Instant, from: SocketAddrV4, _to: SocketAddrV4, bytes: &[u8]) {
//!         self.heard.push((now, bytes.to_vec()));
//!         if bytes == b"ping" {
//!             let pong = Datagram { from: self.addr, to: from, bytes: b"pong".to_vec() };
//!             self.outbox.push(pong);
//!         }
//!     }
//!     fn poll_transmit(&mut self, _now: Instant) -> Option<Datagram> {
//!         self.outbox.pop()
//!     }
//!     fn poll_timeout(&self) -> Option<Instant> {
//!         None
//!     }
//!     fn handle_timeout(&mut self, _now: Instant) {}
//! }
//!
//! let (a_addr, b_addr) = ("127.0.0.1:1701".parse().unwrap(), "127.0.0.2:1701".parse().unwrap());
//! let peer = |addr| Peer { addr, outbox: Vec::new(), heard: Vec::new() };
//!
//! let mut sim = Simulator::new(42);
//! let a = sim.add_node(peer(a_addr), &[a_addr]);
//! let b = sim.add_node(peer(b_addr), &[b_addr]);
//! sim.set_default_conditions(LinkConditions {
//!     delay: Duration::from_millis(10),
//!     ..Default::default()
//! });
//! sim.enable_trace(|bytes| String::from_utf8_lossy(bytes).into_owned());
//!
//! // Poke a node from outside; the simulator drains it at the next step.
//! sim.node_mut(a).outbox.push(Datagram { from: a_addr, to: b_addr, bytes: b"ping".to_vec() });
//! let outcome = sim.run_until_idle(Instant::ZERO + Duration::from_secs(1));
//!
//! assert_eq!(outcome.stop, Stop::Idle);
//! assert_eq!(sim.node(b).heard, [(Instant::from_micros(10_000), b"ping".to_vec())]);
//! assert_eq!(sim.node(a).heard, [(Instant::from_micros(20_000), b"pong".to_vec())]);
//! assert_eq!(sim.stats().delivered, 2);
//! assert_eq!(
//!     sim.trace()[1].to_string(),
//!     "0.010000 deliver #0 127.0.0.1:1701 -> 127.0.0.2:1701 4B ping"
//! );
//! ```
//!
//! Events run in `(time, sequence)` order. At one instant, datagrams due then are delivered
//! before timers fire, and timers fire in node order. Virtual time never goes back: a timeout
//! already past fires at the current time. Nodes may send from any source address (the master
//! forwards with the initiator's); delivery goes to whoever owns the destination address when
//! the datagram arrives, so an address taken over mid-flight reaches its new owner.

mod link;
mod rng;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddrV4;

use crate::time::Instant;

pub use link::LinkConditions;

use link::Fate;
use rng::SimRng;

/// A sans-IO state machine that the simulator can drive.
pub trait Node {
    /// A datagram arrived at this node.
    fn handle(&mut self, now: Instant, from: SocketAddrV4, to: SocketAddrV4, bytes: &[u8]);
    /// Next datagram the node wants to send. Called until `None` after every `handle` and
    /// `handle_timeout`, and after the test touched the node through [`Simulator::node_mut`].
    fn poll_transmit(&mut self, now: Instant) -> Option<Datagram>;
    /// When the node next wants `handle_timeout`; re-read after every call into the node.
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_timeout(&mut self, now: Instant);
}

/// Lets one simulator hold nodes of different types.
impl<T: Node + ?Sized> Node for Box<T> {
    fn handle(&mut self, now: Instant, from: SocketAddrV4, to: SocketAddrV4, bytes: &[u8]) {
        (**self).handle(now, from, to, bytes)
    }
    fn poll_transmit(&mut self, now: Instant) -> Option<Datagram> {
        (**self).poll_transmit(now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        (**self).poll_timeout()
    }
    fn handle_timeout(&mut self, now: Instant) {
        (**self).handle_timeout(now)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub from: SocketAddrV4,
    pub to: SocketAddrV4,
    pub bytes: Vec<u8>,
}

/// A node's handle, in the order nodes were added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(usize);

impl NodeId {
    pub fn index(self) -> usize {
        self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node{}", self.0)
    }
}

/// Why a run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// No datagram in flight and no timer set.
    Idle,
    /// The next event lies after the deadline (or the limit, for `run_until_idle`).
    Deadline,
    /// `max_steps` events in this run: most likely a livelock, such as a timer that keeps
    /// asking to fire now without the node making progress.
    StepLimit,
    /// The node kept returning datagrams from `poll_transmit` past `max_burst`; the rest stay
    /// in the node.
    BurstLimit(NodeId),
}

#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOutcome {
    /// Events processed in this run.
    pub steps: u64,
    pub stop: Stop,
}

/// Counters over the whole simulation. Each datagram a node emits counts once in `sent`, and
/// each copy ends once in `lost`, `delivered` or `undeliverable` (or is still in flight).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SimStats {
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Copies held back to be overtaken.
    pub reordered: u64,
    /// Arrived at an address no node owns.
    pub undeliverable: u64,
    pub timeouts: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraceKind {
    Send,
    Lost,
    Duplicate,
    Reorder,
    Deliver,
    Undeliverable,
}

impl TraceKind {
    fn name(self) -> &'static str {
        match self {
            TraceKind::Send => "send",
            TraceKind::Lost => "lost",
            TraceKind::Duplicate => "duplicate",
            TraceKind::Reorder => "reorder",
            TraceKind::Deliver => "deliver",
            TraceKind::Undeliverable => "undeliverable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEntry {
    pub time: Instant,
    pub kind: TraceKind,
    /// Numbers datagrams in send order; a duplicate keeps its original's number.
    pub id: u64,
    pub from: SocketAddrV4,
    pub to: SocketAddrV4,
    pub len: usize,
    /// The caller's one-line summary of the bytes (see [`Simulator::enable_trace`]).
    pub label: String,
}

/// One line, stable, for snapshots: `time kind #id from -> to lenB label`.
impl fmt::Display for TraceEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} #{} {} -> {} {}B {}",
            self.time,
            self.kind.name(),
            self.id,
            self.from,
            self.to,
            self.len,
            self.label
        )
    }
}

struct InFlight {
    id: u64,
    datagram: Datagram,
    label: String,
}

enum Event {
    Deliver((Instant, u64)),
    Timeout(NodeId),
}

pub struct Simulator<N: Node> {
    now: Instant,
    rng: SimRng,
    nodes: Vec<N>,
    owners: BTreeMap<SocketAddrV4, NodeId>,
    default_conditions: LinkConditions,
    conditions: BTreeMap<(NodeId, NodeId), LinkConditions>,
    /// Keyed by (arrival time, sequence number): the sequence makes equal times deterministic.
    in_flight: BTreeMap<(Instant, u64), InFlight>,
    next_seq: u64,
    next_datagram_id: u64,
    /// Each node's last answer to `poll_timeout`, mirrored in `timers` for the earliest one.
    node_timer: Vec<Option<Instant>>,
    timers: BTreeSet<(Instant, NodeId)>,
    /// Nodes handed out by `node_mut` (or just added): they may have something to send.
    dirty: BTreeSet<NodeId>,
    burst_exceeded: Option<NodeId>,
    max_steps: u64,
    max_burst: usize,
    stats: SimStats,
    label: Option<fn(&[u8]) -> String>,
    trace: Vec<TraceEntry>,
}

impl<N: Node> Simulator<N> {
    /// Generous enough for long load runs, small enough that a livelock ends in seconds.
    pub const DEFAULT_MAX_STEPS: u64 = 10_000_000;
    pub const DEFAULT_MAX_BURST: usize = 100_000;

    pub fn new(seed: u64) -> Self {
        Simulator {
            now: Instant::ZERO,
            rng: SimRng::new(seed),
            nodes: Vec::new(),
            owners: BTreeMap::new(),
            default_conditions: LinkConditions::default(),
            conditions: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            next_seq: 0,
            next_datagram_id: 0,
            node_timer: Vec::new(),
            timers: BTreeSet::new(),
            dirty: BTreeSet::new(),
            burst_exceeded: None,
            max_steps: Self::DEFAULT_MAX_STEPS,
            max_burst: Self::DEFAULT_MAX_BURST,
            stats: SimStats::default(),
            label: None,
            trace: Vec::new(),
        }
    }

    /// # Panics
    /// When an address already belongs to another node; use [`Simulator::assign_addr`] to move one.
    pub fn add_node(&mut self, node: N, addrs: &[SocketAddrV4]) -> NodeId {
        let id = NodeId(self.nodes.len());
        for &addr in addrs {
            if let Some(owner) = self.owners.insert(addr, id) {
                panic!("{addr} already belongs to {owner}");
            }
        }
        self.nodes.push(node);
        self.node_timer.push(None);
        // A node may want to speak first (a LAC's SCCRQ): drain it at the next step.
        self.dirty.insert(id);
        id
    }

    /// Gives `addr` to `id`, as a takeover does; returns the previous owner.
    pub fn assign_addr(&mut self, id: NodeId, addr: SocketAddrV4) -> Option<NodeId> {
        assert!(id.0 < self.nodes.len(), "no {id}");
        self.owners.insert(addr, id)
    }

    /// Takes `addr` away from its owner: datagrams arriving for it are then undeliverable.
    pub fn release_addr(&mut self, addr: SocketAddrV4) -> Option<NodeId> {
        self.owners.remove(&addr)
    }

    pub fn owner(&self, addr: SocketAddrV4) -> Option<NodeId> {
        self.owners.get(&addr).copied()
    }

    /// # Panics
    /// When a probability is outside `[0, 1]`.
    pub fn set_default_conditions(&mut self, c: LinkConditions) {
        c.validate();
        self.default_conditions = c;
    }

    /// Conditions for datagrams that node `from` emits towards an address `to` owns.
    ///
    /// # Panics
    /// When a probability is outside `[0, 1]`.
    pub fn set_conditions(&mut self, from: NodeId, to: NodeId, c: LinkConditions) {
        c.validate();
        self.conditions.insert((from, to), c);
    }

    /// Events one `run_until` / `run_until_idle` call may process before it gives up.
    pub fn set_max_steps(&mut self, max_steps: u64) {
        self.max_steps = max_steps;
    }

    /// Datagrams one drain of `poll_transmit` may yield before it gives up.
    pub fn set_max_burst(&mut self, max_burst: usize) {
        self.max_burst = max_burst;
    }

    pub fn node(&self, id: NodeId) -> &N {
        &self.nodes[id.0]
    }

    /// The node, for a test to poke; it is polled for datagrams and its timeout at the next step.
    pub fn node_mut(&mut self, id: NodeId) -> &mut N {
        self.dirty.insert(id);
        &mut self.nodes[id.0]
    }

    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &N)> {
        self.nodes.iter().enumerate().map(|(i, n)| (NodeId(i), n))
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    pub fn stats(&self) -> SimStats {
        self.stats
    }

    /// Records every datagram's send, loss, duplication, hold-back and arrival from now on,
    /// each with `label(bytes)`.
    pub fn enable_trace(&mut self, label: fn(&[u8]) -> String) {
        self.label = Some(label);
    }

    pub fn trace(&self) -> &[TraceEntry] {
        &self.trace
    }

    /// The trace, one entry a line: ready for a snapshot.
    pub fn trace_text(&self) -> String {
        self.trace.iter().map(|e| format!("{e}\n")).collect()
    }

    /// When the next event falls, after draining what poked nodes have queued (as `step` does
    /// first): lets a driver outside the simulator (a blocking probe script) step only up to
    /// its own deadline.
    pub fn next_event_at(&mut self) -> Option<Instant> {
        self.flush_dirty();
        self.next_event().map(|(time, _)| time)
    }

    /// Processes the next event (a delivery or the earliest node timeout), advancing virtual
    /// time to it; `false` when nothing is left to do.
    pub fn step(&mut self) -> bool {
        self.flush_dirty();
        let Some((time, event)) = self.next_event() else {
            return false;
        };
        self.now = time;
        match event {
            Event::Deliver(key) => {
                let flight = self
                    .in_flight
                    .remove(&key)
                    .expect("key came from the queue");
                self.deliver(flight);
            }
            Event::Timeout(id) => {
                self.stats.timeouts += 1;
                self.nodes[id.0].handle_timeout(time);
                self.drain(id);
            }
        }
        true
    }

    /// Steps through every event due by `deadline`, then moves the clock to `deadline` (unless
    /// a limit stopped the run early).
    pub fn run_until(&mut self, deadline: Instant) -> RunOutcome {
        let outcome = self.run(deadline);
        if matches!(outcome.stop, Stop::Idle | Stop::Deadline) {
            self.now = self.now.max(deadline);
        }
        outcome
    }

    /// Steps until nothing is left to do, but not past `limit`; the clock stays at the last
    /// event. A node with a periodic timer (HELLO) is never idle: expect `Stop::Deadline`.
    pub fn run_until_idle(&mut self, limit: Instant) -> RunOutcome {
        self.run(limit)
    }

    fn run(&mut self, deadline: Instant) -> RunOutcome {
        let mut steps = 0;
        loop {
            self.flush_dirty();
            if let Some(id) = self.burst_exceeded.take() {
                return RunOutcome {
                    steps,
                    stop: Stop::BurstLimit(id),
                };
            }
            let stop = match self.next_event() {
                None => Some(Stop::Idle),
                Some((time, _)) if time > deadline => Some(Stop::Deadline),
                Some(_) if steps >= self.max_steps => Some(Stop::StepLimit),
                Some(_) => None,
            };
            if let Some(stop) = stop {
                return RunOutcome { steps, stop };
            }
            self.step();
            steps += 1;
        }
    }

    /// The earliest event; deliveries win ties with timers so a reply already on the wire is
    /// seen before the timer that would retransmit.
    fn next_event(&self) -> Option<(Instant, Event)> {
        let delivery = self
            .in_flight
            .keys()
            .next()
            .map(|&key| (key.0, Event::Deliver(key)));
        // A timeout already past fires now: time never goes back.
        let timer = self
            .timers
            .first()
            .map(|&(t, id)| (t.max(self.now), Event::Timeout(id)));
        match (delivery, timer) {
            (Some(d), Some(t)) => Some(if d.0 <= t.0 { d } else { t }),
            (d, t) => d.or(t),
        }
    }

    fn flush_dirty(&mut self) {
        while let Some(id) = self.dirty.pop_first() {
            self.drain(id);
        }
    }

    /// Sends everything the node has queued, then re-reads its timeout.
    fn drain(&mut self, id: NodeId) {
        let mut sent = 0;
        while let Some(datagram) = self.nodes[id.0].poll_transmit(self.now) {
            self.send(id, datagram);
            sent += 1;
            if sent >= self.max_burst {
                self.burst_exceeded.get_or_insert(id);
                break;
            }
        }
        let timeout = self.nodes[id.0].poll_timeout();
        let old = std::mem::replace(&mut self.node_timer[id.0], timeout);
        if old != timeout {
            if let Some(t) = old {
                self.timers.remove(&(t, id));
            }
            if let Some(t) = timeout {
                self.timers.insert((t, id));
            }
        }
    }

    fn send(&mut self, src: NodeId, datagram: Datagram) {
        self.stats.sent += 1;
        let id = self.next_datagram_id;
        self.next_datagram_id += 1;
        // Conditions follow the receiver at send time; delivery follows the owner at arrival.
        let c = self
            .owners
            .get(&datagram.to)
            .and_then(|&dst| self.conditions.get(&(src, dst)))
            .unwrap_or(&self.default_conditions);
        let fate = link::draw(c, &mut self.rng);
        let label = self
            .label
            .map(|label| label(&datagram.bytes))
            .unwrap_or_default();
        self.record(TraceKind::Send, id, &datagram, &label);
        let (first, copy) = match fate {
            Fate::Lost => {
                self.stats.lost += 1;
                self.record(TraceKind::Lost, id, &datagram, &label);
                return;
            }
            Fate::Arrives { first, copy } => (first, copy),
        };
        if copy.is_some() {
            self.stats.duplicated += 1;
            self.record(TraceKind::Duplicate, id, &datagram, &label);
        }
        let copy = copy.map(|arrival| (arrival, datagram.clone(), label.clone()));
        for (arrival, datagram, label) in std::iter::once((first, datagram, label)).chain(copy) {
            if arrival.reordered {
                self.stats.reordered += 1;
                self.record(TraceKind::Reorder, id, &datagram, &label);
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            self.in_flight.insert(
                (self.now + arrival.delay, seq),
                InFlight {
                    id,
                    datagram,
                    label,
                },
            );
        }
    }

    fn deliver(&mut self, flight: InFlight) {
        let InFlight {
            id,
            datagram,
            label,
        } = flight;
        let Some(&dst) = self.owners.get(&datagram.to) else {
            self.stats.undeliverable += 1;
            self.record(TraceKind::Undeliverable, id, &datagram, &label);
            return;
        };
        self.stats.delivered += 1;
        self.record(TraceKind::Deliver, id, &datagram, &label);
        self.nodes[dst.0].handle(self.now, datagram.from, datagram.to, &datagram.bytes);
        self.drain(dst);
    }

    fn record(&mut self, kind: TraceKind, id: u64, datagram: &Datagram, label: &str) {
        if self.label.is_none() {
            return;
        }
        self.trace.push(TraceEntry {
            time: self.now,
            kind,
            id,
            from: datagram.from,
            to: datagram.to,
            len: datagram.bytes.len(),
            label: label.to_owned(),
        });
    }
}
