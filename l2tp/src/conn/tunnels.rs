//! All the tunnels of one node behind one UDP address: demultiplexing by Tunnel ID, accepting
//! SCCRQs (once per initiator tunnel, however often it is retransmitted), the Tie Breaker
//! (§4.4.3), and one place to poll them all.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddrV4;
use std::ops::RangeInclusive;
use std::sync::Arc;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha12Rng as StdRng;

use super::tunnel::{Event, Tunnel, TunnelConfig, TunnelEnd, TunnelState};
use crate::time::Instant;
use crate::wire::avp::{AvpType, AvpValue};
use crate::wire::message::{MessageType, ParseOptions};
use crate::wire::PacketRepr;

/// Counters for what never reached a tunnel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelSetStats {
    /// Every SCCRQ that arrived, retransmissions and refused ones included (what a cluster
    /// master subtracts from what it sent to know what is still on its way).
    pub sccrq_received: u64,
    pub malformed: u64,
    /// Packets for a Tunnel ID we do not have (or from another address than its peer).
    pub no_tunnel: u64,
    /// Retransmitted SCCRQs for a tunnel we already accepted.
    pub duplicate_sccrq: u64,
    /// SCCRQs refused: not accepting, or no free Tunnel ID.
    pub refused: u64,
    pub tie_breaker_lost: u64,
    /// Their SCCRQs dropped because ours won the tie (§4.4.3), retransmissions of a beaten
    /// one included.
    pub tie_breaker_won: u64,
    /// Replies to our SCCRQs from another address than the one dialled, dropped because the
    /// set was told not to follow them ([`TunnelSet::set_replies_from_other_addresses`]).
    pub foreign_replies: u64,
}

/// Addresses kept by name in [`TunnelSet::foreign_sources`]; more are only counted.
const FOREIGN_SOURCES_KEPT: usize = 16;

struct Entry {
    peer: SocketAddrV4,
    /// A tunnel we opened that keeps sending to the address it dialled
    /// ([`TunnelSet::set_follow_replies`]): the address the reply came from, heard too.
    answered_from: Option<std::net::Ipv4Addr>,
    tunnel: Tunnel,
    /// Its key in `by_initiator` (tunnels the peer opened), so removal needs no scan.
    initiator: Option<(SocketAddrV4, u16)>,
}

/// The tunnels of one node, keyed by our (local) Tunnel ID.
pub struct TunnelSet {
    config: Arc<TunnelConfig>,
    accept_incoming: bool,
    follow_replies: bool,
    /// Whether a reply to our SCCRQ is taken from another address than the one dialled.
    replies_from_elsewhere: bool,
    /// Where the replies dropped for that came from (a few addresses, counted).
    foreign_sources: BTreeMap<std::net::Ipv4Addr, u64>,
    ids: RangeInclusive<u16>,
    next_id: u16,
    /// Boxed: a tree node holds eleven values, and most of a node of whole tunnels (~700
    /// octets each) would be empty room.
    tunnels: BTreeMap<u16, Box<Entry>>,
    /// (initiator address, its Assigned Tunnel ID) → our tunnel: a retransmitted SCCRQ must
    /// not open a second tunnel.
    by_initiator: BTreeMap<(SocketAddrV4, u16), u16>,
    /// (initiator address, its Assigned Tunnel ID) of SCCRQs that lost the tie to ours, until
    /// when their retransmissions may still come: once our tunnel is past its SCCRQ there is
    /// nothing left to compare with, and a late copy must not open a second tunnel.
    beaten: BTreeMap<(SocketAddrV4, u16), Instant>,
    /// Tunnels that may have something to send.
    ready: BTreeSet<u16>,
    /// Tunnels given commands through `tunnel_mut`: they may hold events not collected yet.
    touched: BTreeSet<u16>,
    /// Timer index: each tunnel's next deadline, so that a wake-up costs O(log n), not a scan
    /// of every tunnel.
    timers: BTreeSet<(Instant, u16)>,
    deadlines: BTreeMap<u16, Instant>,
    /// Tunnels whose deadline may have moved since it was indexed.
    stale: BTreeSet<u16>,
    events: VecDeque<(u16, Event)>,
    rng: StdRng,
    stats: TunnelSetStats,
}

impl TunnelSet {
    /// `accept_incoming`: answer SCCRQs (an LNS, or a LAC that also takes tunnels).
    pub fn new(config: TunnelConfig, seed: u64, accept_incoming: bool) -> TunnelSet {
        TunnelSet::with_ids(config, seed, accept_incoming, 1..=u16::MAX)
    }

    /// As `new`, with local Tunnel IDs drawn only from `ids` (a cluster leases blocks).
    pub fn with_ids(
        config: TunnelConfig,
        seed: u64,
        accept_incoming: bool,
        ids: RangeInclusive<u16>,
    ) -> TunnelSet {
        let ids = (*ids.start()).max(1)..=(*ids.end()).max(1);
        let mut rng = StdRng::seed_from_u64(seed);
        let span = u32::from(*ids.end()) - u32::from(*ids.start()) + 1;
        let next_id = *ids.start() + (rng.next_u32() % span) as u16;
        TunnelSet {
            config: Arc::new(config),
            accept_incoming,
            follow_replies: true,
            replies_from_elsewhere: true,
            foreign_sources: BTreeMap::new(),
            ids,
            next_id,
            tunnels: BTreeMap::new(),
            by_initiator: BTreeMap::new(),
            beaten: BTreeMap::new(),
            ready: BTreeSet::new(),
            touched: BTreeSet::new(),
            timers: BTreeSet::new(),
            deadlines: BTreeMap::new(),
            stale: BTreeSet::new(),
            events: VecDeque::new(),
            rng,
            stats: TunnelSetStats::default(),
        }
    }

    /// Whether a reply to our SCCRQ from another address than the one dialled is taken (the
    /// default: a cluster's FIG 4 endpoints and FIG 2's NAT answer from their own address),
    /// or dropped and counted per address ([`TunnelSet::foreign_sources`]), for a LAC that
    /// expects its target alone to answer. A reply from another port of the dialled address
    /// is always taken (RFC 2661 §8.1: the recipient picks its own port).
    pub fn set_replies_from_other_addresses(&mut self, accept: bool) {
        self.replies_from_elsewhere = accept;
    }

    /// The addresses whose replies were dropped ([`TunnelSet::set_replies_from_other_addresses`]),
    /// with how many came from each (the first 16 addresses; `stats().foreign_replies` counts
    /// them all).
    pub fn foreign_sources(&self) -> &BTreeMap<std::net::Ipv4Addr, u64> {
        &self.foreign_sources
    }

    /// Whether a tunnel we open follows the reply to our SCCRQ when it comes from another
    /// address (the default: FIG 4 endpoints and FIG 2's NAT answer from their own address),
    /// or keeps sending everything to the address it dialled and only also hears the one that
    /// answered, as xl2tpd does (PEERS.md): then a cluster must route the rest by Tunnel ID.
    pub fn set_follow_replies(&mut self, follow: bool) {
        self.follow_replies = follow;
    }

    pub fn stats(&self) -> TunnelSetStats {
        self.stats
    }

    pub fn config(&self) -> &TunnelConfig {
        &self.config
    }

    pub fn len(&self) -> usize {
        self.tunnels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tunnels.is_empty()
    }

    pub fn tunnel(&self, id: u16) -> Option<&Tunnel> {
        self.tunnels.get(&id).map(|e| &e.tunnel)
    }

    /// A tunnel to give commands to; it is polled for output afterwards.
    pub fn tunnel_mut(&mut self, id: u16) -> Option<&mut Tunnel> {
        self.ready.insert(id);
        self.touched.insert(id);
        self.stale.insert(id);
        self.tunnels.get_mut(&id).map(|e| &mut e.tunnel)
    }

    pub fn tunnel_ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.tunnels.keys().copied()
    }

    pub fn peer_of(&self, id: u16) -> Option<SocketAddrV4> {
        self.tunnels.get(&id).map(|e| e.peer)
    }

    fn allocate_id(&mut self) -> Option<u16> {
        let span = u32::from(*self.ids.end()) - u32::from(*self.ids.start()) + 1;
        for _ in 0..span {
            let id = self.next_id;
            self.next_id = if id >= *self.ids.end() {
                *self.ids.start()
            } else {
                id + 1
            };
            if !self.tunnels.contains_key(&id) {
                return Some(id);
            }
        }
        None
    }

    /// Opens a tunnel to `peer`; `None` when every Tunnel ID of the range is taken.
    pub fn connect(&mut self, now: Instant, peer: SocketAddrV4) -> Option<u16> {
        let id = self.allocate_id()?;
        let seed = self.rng.next_u64();
        let tunnel = Tunnel::connect(Arc::clone(&self.config), id, seed, now);
        let initiator = None;
        self.tunnels.insert(
            id,
            Box::new(Entry {
                peer,
                answered_from: None,
                tunnel,
                initiator,
            }),
        );
        self.ready.insert(id);
        self.stale.insert(id);
        Some(id)
    }

    /// A datagram from `from`.
    pub fn handle(&mut self, now: Instant, from: SocketAddrV4, bytes: &[u8]) {
        let options = ParseOptions {
            secret: self.config.secret.as_deref(),
        };
        let packet = match PacketRepr::parse(bytes, &options) {
            Ok(packet) => packet,
            Err(err) => {
                tracing::debug!(%from, %err, "malformed L2TP packet");
                self.stats.malformed += 1;
                return;
            }
        };
        let tunnel_id = packet.header().tunnel_id;
        if tunnel_id == 0 {
            if let PacketRepr::Control(message) = packet {
                if message.message_type() == Some(MessageType::Sccrq) {
                    return self.on_sccrq(now, from, message);
                }
            }
            self.stats.no_tunnel += 1;
            return;
        }
        match self.tunnels.get_mut(&tunnel_id) {
            // Only the peer may speak for a tunnel, but its port may change under NAT (§8.1).
            // The reply to our SCCRQ may come from another address (a cluster's endpoint or its
            // NAT, the patent's FIG 2 and FIG 4): the tunnel then follows that address.
            Some(entry)
                if entry.peer.ip() == from.ip()
                    || entry.answered_from == Some(*from.ip())
                    || (self.replies_from_elsewhere
                        && entry.tunnel.role() == TunnelEnd::Initiator
                        && entry.tunnel.state() == TunnelState::WaitCtlReply) =>
            {
                if self.follow_replies || entry.tunnel.role() != TunnelEnd::Initiator {
                    entry.peer = from;
                } else if entry.peer.ip() != from.ip() {
                    entry.answered_from = Some(*from.ip());
                }
                entry.tunnel.handle(now, packet);
                self.ready.insert(tunnel_id);
                self.stale.insert(tunnel_id);
                self.collect_events(tunnel_id);
            }
            Some(entry)
                if entry.tunnel.role() == TunnelEnd::Initiator
                    && entry.tunnel.state() == TunnelState::WaitCtlReply =>
            {
                self.stats.foreign_replies += 1;
                let known = self.foreign_sources.contains_key(from.ip());
                if known || self.foreign_sources.len() < FOREIGN_SOURCES_KEPT {
                    *self.foreign_sources.entry(*from.ip()).or_insert(0) += 1;
                }
            }
            _ => self.stats.no_tunnel += 1,
        }
    }

    fn on_sccrq(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        message: crate::wire::ControlMessage<'_>,
    ) {
        self.stats.sccrq_received += 1;
        let their_id = match message.avp(AvpType::AssignedTunnelId) {
            Some(AvpValue::AssignedTunnelId(id)) => *id,
            _ => 0,
        };
        if let Some(&local) = self.by_initiator.get(&(from, their_id)) {
            // A retransmission: the existing tunnel re-acknowledges it through its window.
            self.stats.duplicate_sccrq += 1;
            if let Some(entry) = self.tunnels.get_mut(&local) {
                entry.tunnel.handle(now, PacketRepr::Control(message));
                self.ready.insert(local);
                self.stale.insert(local);
            }
            // It may have closed the tunnel (the first SCCRQ was out of order, this one is
            // refused): a Closed tunnel has no timer left to collect it later.
            self.collect_events(local);
            return;
        }
        if !self.accept_incoming {
            self.stats.refused += 1;
            return;
        }
        if let Some(&until) = self.beaten.get(&(from, their_id)) {
            if now < until {
                self.stats.tie_breaker_won += 1;
                return;
            }
            self.beaten.remove(&(from, their_id));
        }
        if !self.tie_breaker_allows(from, &message) {
            self.stats.tie_breaker_won += 1;
            // Entries are made only while an SCCRQ of ours is outstanding to that peer, and
            // live one retransmission cycle.
            self.beaten.retain(|_, until| *until > now);
            let cycle = self.config.reliable.full_retransmit_cycle();
            self.beaten.insert((from, their_id), now + cycle);
            return;
        }
        let Some(id) = self.allocate_id() else {
            self.stats.refused += 1;
            return;
        };
        let seed = self.rng.next_u64();
        let tunnel = Tunnel::accept(Arc::clone(&self.config), id, seed, now, message);
        self.tunnels.insert(
            id,
            Box::new(Entry {
                peer: from,
                answered_from: None,
                tunnel,
                initiator: Some((from, their_id)),
            }),
        );
        self.by_initiator.insert((from, their_id), id);
        self.ready.insert(id);
        self.stale.insert(id);
        self.collect_events(id);
    }

    /// §4.4.3: with an SCCRQ of ours outstanding to the same peer, the lower Tie Breaker wins;
    /// a Tie Breaker beats none; equal ones lose both. Returns whether to accept theirs.
    fn tie_breaker_allows(
        &mut self,
        from: SocketAddrV4,
        message: &crate::wire::ControlMessage<'_>,
    ) -> bool {
        let theirs = match message.avp(AvpType::TieBreaker) {
            Some(AvpValue::TieBreaker(value)) => Some(*value),
            _ => None,
        };
        let ours = self.config.tie_breaker;
        if theirs.is_none() && ours.is_none() {
            return true;
        }
        let pending: Vec<u16> = self
            .tunnels
            .iter()
            .filter(|(_, e)| {
                e.peer.ip() == from.ip()
                    && e.tunnel.role() == TunnelEnd::Initiator
                    && e.tunnel.state() == TunnelState::WaitCtlReply
            })
            .map(|(id, _)| *id)
            .collect();
        if pending.is_empty() {
            return true;
        }
        let (we_keep, they_keep) = match (ours, theirs) {
            (Some(ours), Some(theirs)) => (ours < theirs, theirs < ours),
            (Some(_), None) => (true, false),
            (None, _) => (false, true),
        };
        if !we_keep {
            for id in pending {
                // The loser discards its tunnel silently: no StopCCN.
                self.remove(id);
                self.stats.tie_breaker_lost += 1;
                self.events.push_back((
                    id,
                    Event::TunnelDown {
                        result: super::tunnel::ResultCode::error(
                            super::tunnel::ResultCode::GENERAL_ERROR,
                            0,
                            "lost the tie breaker",
                        ),
                        by_peer: true,
                    },
                ));
                self.events.push_back((id, Event::Closed));
            }
        }
        they_keep
    }

    fn collect_events(&mut self, id: u16) {
        let Some(entry) = self.tunnels.get_mut(&id) else {
            return;
        };
        let mut closed = false;
        while let Some(event) = entry.tunnel.poll_event() {
            closed |= event == Event::Closed;
            self.events.push_back((id, event));
        }
        if closed {
            self.remove(id);
        }
    }

    fn remove(&mut self, id: u16) {
        if let Some(key) = self.tunnels.remove(&id).and_then(|e| e.initiator) {
            if self.by_initiator.get(&key) == Some(&id) {
                self.by_initiator.remove(&key);
            }
        }
        self.ready.remove(&id);
        self.touched.remove(&id);
        self.stale.remove(&id);
        if let Some(at) = self.deadlines.remove(&id) {
            self.timers.remove(&(at, id));
        }
    }

    /// Writes the next datagram into `buf` and returns where it goes.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddrV4> {
        while let Some(&id) = self.ready.first() {
            if let Some(entry) = self.tunnels.get_mut(&id) {
                if entry.tunnel.poll_transmit(now, buf) {
                    // Sending arms the retransmission timer.
                    self.stale.insert(id);
                    return Some(entry.peer);
                }
            }
            self.ready.remove(&id);
        }
        // Everything is sent: index the deadlines that sending moved, so that `poll_timeout`
        // stays O(log n) however many tunnels were busy (it scans only the stale ones).
        self.reindex();
        None
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        // Indexed deadlines of tunnels not touched since, plus the few touched ones directly.
        let indexed = self
            .timers
            .iter()
            .find(|(_, id)| !self.stale.contains(id))
            .map(|(at, _)| *at);
        let fresh = self
            .stale
            .iter()
            .filter_map(|id| self.tunnels.get(id))
            .filter_map(|e| e.tunnel.poll_timeout())
            .min();
        indexed.into_iter().chain(fresh).min()
    }

    /// Re-indexes the deadlines of the tunnels touched since the last call.
    fn reindex(&mut self) {
        while let Some(id) = self.stale.pop_first() {
            if let Some(at) = self.deadlines.remove(&id) {
                self.timers.remove(&(at, id));
            }
            if let Some(at) = self.tunnels.get(&id).and_then(|e| e.tunnel.poll_timeout()) {
                self.deadlines.insert(id, at);
                self.timers.insert((at, id));
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.reindex();
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, id));
            self.deadlines.remove(&id);
            if let Some(entry) = self.tunnels.get_mut(&id) {
                entry.tunnel.handle_timeout(now);
                self.ready.insert(id);
                self.stale.insert(id);
            }
            self.collect_events(id);
        }
        self.reindex();
    }

    /// Collects events after commands given through `tunnel_mut`, whether or not
    /// `poll_transmit` has run since.
    pub fn poll_event(&mut self) -> Option<(u16, Event)> {
        while let Some(id) = self.touched.pop_first() {
            self.collect_events(id);
        }
        let event = self.events.pop_front();
        if event.is_none() {
            // A burst of thousands of setups leaves a big buffer behind.
            crate::conn::reliable::release(&mut self.events);
        }
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    /// A LAC dials the cluster address; the endpoint answers from its own. Returns where the
    /// LAC sends its SCCCN, and whether it still hears the endpoint afterwards.
    fn dial(follow: bool) -> (SocketAddrV4, usize) {
        let cluster = addr("127.0.0.10:1701");
        let endpoint = addr("127.0.0.11:1701");
        let lac_addr = addr("127.0.0.3:1701");
        let mut lac = TunnelSet::new(TunnelConfig::default(), 1, false);
        lac.set_follow_replies(follow);
        let mut lns = TunnelSet::new(TunnelConfig::default(), 2, true);
        let now = Instant::ZERO;
        let mut buf = Vec::new();
        let id = lac.connect(now, cluster).unwrap();
        assert_eq!(lac.poll_transmit(now, &mut buf), Some(cluster));
        // The cluster hands the SCCRQ on with the LAC's source; the endpoint answers.
        lns.handle(now, lac_addr, &buf);
        assert_eq!(lns.poll_transmit(now, &mut buf), Some(lac_addr));
        lac.handle(now, endpoint, &buf);
        let scccn_to = lac.poll_transmit(now, &mut buf).unwrap();
        lns.handle(now, lac_addr, &buf);
        // The endpoint's ZLB for the SCCCN (delayed a little) comes from its own address too.
        let later = now + core::time::Duration::from_secs(1);
        lns.handle_timeout(later);
        while let Some(to) = lns.poll_transmit(later, &mut buf) {
            assert_eq!(to, lac_addr);
            lac.handle(later, endpoint, &buf);
        }
        let heard = lac
            .tunnel(id)
            .map_or(0, |t| t.reliable().stats().acked as usize);
        (scccn_to, heard)
    }

    #[test]
    fn a_lac_follows_the_reply_or_keeps_to_the_address_it_dialled() {
        let (to, acked) = dial(true);
        assert_eq!(to, addr("127.0.0.11:1701"));
        assert_eq!(acked, 2);
        // xl2tpd's way: everything to the cluster address, the endpoint still heard.
        let (to, acked) = dial(false);
        assert_eq!(to, addr("127.0.0.10:1701"));
        assert_eq!(acked, 2);
    }
}
