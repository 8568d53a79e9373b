//! The NAT server of the patent's FIG 2 (160), sans-IO: it stands between the cluster LAN and
//! the public network with one global address, learns a Table 1 entry from each SCCRP an
//! endpoint sends, and rewrites whole IPv4 packets in place; a runner moves them.
//!
//! Table 1 pairs the far end (the tunnel initiator's address and UDP port) with the local end
//! (the endpoint's LAN address and port). Ports are never translated, so several endpoints can
//! sit behind the one global address on the same port; the two tunnel IDs tell them apart:
//!
//! - LAN → public: (local, far end, header Tunnel ID = the initiator's ID) finds the entry; the
//!   source becomes the global address.
//! - public → LAN: (far end, header Tunnel ID = the endpoint's ID) finds it, which also keeps
//!   apart one initiator's tunnels on several endpoints from the same address and port; the
//!   destination becomes the endpoint's LAN address and port.
//!
//! Anything that matches no entry is dropped and counted: the NAT is never an open relay. Only
//! an SCCRP from the LAN creates an entry. Both lookups are one hash probe on a packed key.
//!
//! Endpoints whose Tunnel IDs are not disjoint (each draws from all 65,535, so that three of
//! them hold 100,000 tunnels) may give one initiator's address and port the same ID. With
//! `translate_tunnel_ids` the NAT then translates: the later SCCRP's Assigned Tunnel ID
//! becomes one that no entry of that far end holds (the *public* Tunnel ID), the initiator's
//! packets carry it and leave the NAT with the endpoint's own in their header, and the
//! endpoint's StopCCN names the public one too.
//! Only the IDs the endpoint chose are rewritten; the Challenge Response covers no AVP, so a
//! tunnel secret survives it. An ID the endpoint reuses for the same far end replaces its old
//! entry. Without it (the default) the later SCCRP replaces the earlier entry: a LAC that
//! sends to the cluster address instead of the NAT's (xl2tpd does) keeps the endpoint's ID,
//! which the master routes by, and would lose a translated tunnel there.

use l2tp::malformed::{BadValue, Truncated};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use l2tp::ip::{self, Ipv4Udp, L2tpClass};
use l2tp::time::Instant;
use l2tp::wire::{self, MessageType};
use serde::Serialize;

use crate::throttle::Throttle;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatConfig {
    /// The one public address; every endpoint's packets leave with it as their source.
    pub global: Ipv4Addr,
    /// An entry that carries no packet for this long goes.
    pub entry_timeout: Duration,
    /// How long an entry stays after its first StopCCN, for the StopCCN's retransmissions and
    /// its acknowledgement (RFC 2661 §5.7 suggests a full retransmission cycle: 31 s).
    pub stop_hold: Duration,
    /// SCCRPs beyond this many live entries are dropped (`TableFull`), bounding the memory a
    /// flood of tunnel setups can take.
    pub max_entries: usize,
    /// Give an SCCRP another public Tunnel ID when another endpoint's tunnel from the same far
    /// end holds the endpoint's (see the module's notes); off: the newer entry replaces it.
    pub translate_tunnel_ids: bool,
}

impl NatConfig {
    /// Three times xl2tpd's 60 s HELLO interval: a quiet tunnel that is still up refreshes its
    /// entry twice before it could expire.
    pub const DEFAULT_ENTRY_TIMEOUT: Duration = Duration::from_secs(180);
    pub const DEFAULT_STOP_HOLD: Duration = Duration::from_secs(31);
    pub const DEFAULT_MAX_ENTRIES: usize = 1 << 20;

    pub fn new(global: Ipv4Addr) -> NatConfig {
        NatConfig {
            global,
            entry_timeout: NatConfig::DEFAULT_ENTRY_TIMEOUT,
            stop_hold: NatConfig::DEFAULT_STOP_HOLD,
            max_entries: NatConfig::DEFAULT_MAX_ENTRIES,
            translate_tunnel_ids: false,
        }
    }
}

/// One row of the patent's Table 1, plus the tunnel IDs that key it and its timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatEntry {
    /// The tunnel initiator's address and port (the SCCRP's destination).
    pub far_end: SocketAddrV4,
    /// The endpoint's LAN address and port (the SCCRP's source).
    pub local: SocketAddrV4,
    /// The initiator's ID for the tunnel: the Tunnel ID of every packet from the endpoint.
    pub initiator_tunnel_id: u16,
    /// The endpoint's ID (the SCCRP's Assigned Tunnel ID as the endpoint sent it).
    pub endpoint_tunnel_id: u16,
    /// The ID the initiator knows the tunnel by, and the Tunnel ID of every packet from it:
    /// the endpoint's, unless another endpoint's entry for the same far end held that one
    /// when the SCCRP came (then the NAT gave the SCCRP this one instead).
    pub public_tunnel_id: u16,
    pub created: Instant,
    pub last_seen: Instant,
    /// When the tunnel's first StopCCN passed; the entry goes `stop_hold` later.
    pub stopping_since: Option<Instant>,
}

/// What to do with a packet after `from_lan` or `from_public`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Rewritten in place (source = the global address); send it out on the public side.
    ToPublic,
    /// Rewritten in place (destination = the endpoint); send it on the LAN to `endpoint`.
    ToLan { endpoint: Ipv4Addr },
    /// Not forwarded; the packet may be partly examined but was not changed.
    Drop(DropReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Not IPv4, or IPv4 carrying another protocol than UDP.
    NotIpv4Udp,
    /// An IPv4 fragment: no whole UDP datagram to route by, and nothing here reassembles.
    Fragment,
    /// IPv4 or UDP lengths that contradict each other or the buffer; an SCCRP that assigns or
    /// addresses Tunnel ID 0.
    Malformed,
    /// The IPv4 header checksum does not verify (RFC 1812 §5.2.2).
    BadIpChecksum,
    /// The UDP payload is no L2TPv2 message whose routing fields can be read.
    NotL2tp,
    /// An SCCRP whose Assigned Tunnel ID is hidden: the NAT holds no tunnel secret.
    HiddenTunnelId,
    /// From the public side: not addressed to the global address. From the LAN: addressed to
    /// it (the NAT does not hairpin).
    NotForUs,
    /// No Table 1 entry matches.
    NoEntry,
    /// TTL 0 or 1: the hop would end it (RFC 1812 §5.3.1).
    TtlExpired,
    /// A new entry would pass `max_entries`, or every Tunnel ID of the SCCRP's far end is in
    /// use (65,535 tunnels from one address and port).
    TableFull,
}

/// Dropped packets, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DropCounts {
    pub not_ipv4_udp: u64,
    pub fragment: u64,
    pub malformed: u64,
    pub bad_ip_checksum: u64,
    pub not_l2tp: u64,
    pub hidden_tunnel_id: u64,
    pub not_for_us: u64,
    pub no_entry: u64,
    pub ttl_expired: u64,
    pub table_full: u64,
}

impl DropCounts {
    fn slot(&mut self, reason: DropReason) -> &mut u64 {
        match reason {
            DropReason::NotIpv4Udp => &mut self.not_ipv4_udp,
            DropReason::Fragment => &mut self.fragment,
            DropReason::Malformed => &mut self.malformed,
            DropReason::BadIpChecksum => &mut self.bad_ip_checksum,
            DropReason::NotL2tp => &mut self.not_l2tp,
            DropReason::HiddenTunnelId => &mut self.hidden_tunnel_id,
            DropReason::NotForUs => &mut self.not_for_us,
            DropReason::NoEntry => &mut self.no_entry,
            DropReason::TtlExpired => &mut self.ttl_expired,
            DropReason::TableFull => &mut self.table_full,
        }
    }

    fn count(&mut self, reason: DropReason) {
        *self.slot(reason) += 1;
    }

    pub fn get(&self, reason: DropReason) -> u64 {
        let mut counts = *self;
        *counts.slot(reason)
    }

    pub fn total(&self) -> u64 {
        let DropCounts {
            not_ipv4_udp,
            fragment,
            malformed,
            bad_ip_checksum,
            not_l2tp,
            hidden_tunnel_id,
            not_for_us,
            no_entry,
            ttl_expired,
            table_full,
        } = *self;
        not_ipv4_udp
            + fragment
            + malformed
            + bad_ip_checksum
            + not_l2tp
            + hidden_tunnel_id
            + not_for_us
            + no_entry
            + ttl_expired
            + table_full
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NatStats {
    /// Packets handed to `from_lan`.
    pub lan_in: u64,
    /// Of those, forwarded to the public side.
    pub to_public: u64,
    /// Packets handed to `from_public`.
    pub public_in: u64,
    /// Of those, forwarded to an endpoint.
    pub to_lan: u64,
    /// Live entries now.
    pub entries: u64,
    /// Most live entries (`NatConfig::max_entries`); at this, new SCCRPs drop as `table_full`.
    pub entries_limit: u64,
    pub entries_created: u64,
    /// Gone after `entry_timeout` without a packet.
    pub entries_expired: u64,
    /// Gone `stop_hold` after a StopCCN.
    pub entries_removed: u64,
    /// Gone because a newer SCCRP claimed one of its keys (an endpoint restarted, an ID reused).
    pub entries_replaced: u64,
    /// Made with a public Tunnel ID other than the endpoint's: another endpoint's tunnel from
    /// the same far end held the endpoint's.
    pub entries_translated: u64,
    /// SCCRPs that matched their entry exactly: retransmissions, forwarded, no new entry.
    pub sccrp_retransmits: u64,
    pub lan_drops: DropCounts,
    pub public_drops: DropCounts,
}

/// The far end and the public tunnel ID, packed into one word so a lookup hashes once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct PublicKey(u64);

impl PublicKey {
    fn new(far_end: SocketAddrV4, public_tunnel_id: u16) -> PublicKey {
        PublicKey(
            u64::from(u32::from(*far_end.ip())) << 32
                | u64::from(far_end.port()) << 16
                | u64::from(public_tunnel_id),
        )
    }
}

/// The local end, the far end and the initiator's tunnel ID, packed likewise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct LanKey(u128);

impl LanKey {
    fn new(local: SocketAddrV4, far_end: SocketAddrV4, initiator_tunnel_id: u16) -> LanKey {
        let addr = |a: SocketAddrV4| u128::from(u32::from(*a.ip())) << 16 | u128::from(a.port());
        LanKey(addr(local) << 64 | addr(far_end) << 16 | u128::from(initiator_tunnel_id))
    }
}

/// Stale timers tolerated before `remove` rebuilds the heap.
const TIMER_SLACK: usize = 1024;

struct Slot {
    /// Tells a timer armed for this entry from one armed for an earlier entry under the key.
    id: u64,
    entry: NatEntry,
}

pub struct Nat {
    config: NatConfig,
    /// Table 1, keyed as packets from the public side find it.
    entries: HashMap<PublicKey, Slot>,
    /// The same entries as packets from the LAN find them.
    by_lan: HashMap<LanKey, PublicKey>,
    /// Wake-ups, armed lazily: a packet only moves `last_seen`, and a timer that fires early
    /// re-arms itself at the entry's real deadline. At most two per entry (idle, StopCCN hold).
    timers: BinaryHeap<Reverse<(Instant, PublicKey, u64)>>,
    next_id: u64,
    /// The latest `now` seen, for the ages in `table()`.
    now: Instant,
    stats: NatStats,
    /// A full table is warned about at most every ten seconds.
    full_warning: Throttle,
}

impl Nat {
    pub fn new(config: NatConfig) -> Nat {
        Nat {
            entries: HashMap::new(),
            by_lan: HashMap::new(),
            timers: BinaryHeap::new(),
            next_id: 0,
            now: Instant::ZERO,
            stats: NatStats {
                entries_limit: u64::try_from(config.max_entries).unwrap_or(u64::MAX),
                ..NatStats::default()
            },
            full_warning: Throttle::default(),
            config,
        }
    }

    pub fn config(&self) -> &NatConfig {
        &self.config
    }

    /// A packet from the LAN: an endpoint's. An SCCRP creates (or, retransmitted, refreshes)
    /// the entry; a packet that matches an entry leaves with the global address as its source;
    /// anything else is dropped.
    pub fn from_lan(&mut self, now: Instant, packet: &mut [u8]) -> Verdict {
        self.now = self.now.max(now);
        self.stats.lan_in += 1;
        let verdict = self.route_from_lan(now, packet);
        match verdict {
            Verdict::ToPublic => self.stats.to_public += 1,
            Verdict::Drop(reason) => self.stats.lan_drops.count(reason),
            Verdict::ToLan { .. } => {}
        }
        verdict
    }

    /// A packet from the public side: an initiator's. One that matches an entry goes to that
    /// entry's endpoint; anything else is dropped.
    pub fn from_public(&mut self, now: Instant, packet: &mut [u8]) -> Verdict {
        self.now = self.now.max(now);
        self.stats.public_in += 1;
        let verdict = self.route_from_public(now, packet);
        match verdict {
            Verdict::ToLan { .. } => self.stats.to_lan += 1,
            Verdict::Drop(reason) => self.stats.public_drops.count(reason),
            Verdict::ToPublic => {}
        }
        verdict
    }

    fn route_from_lan(&mut self, now: Instant, packet: &mut [u8]) -> Verdict {
        let (mut view, class) = match check(packet) {
            Ok(checked) => checked,
            Err(reason) => return Verdict::Drop(reason),
        };
        let local = view.src_addr();
        let far_end = view.dst_addr();
        if *far_end.ip() == self.config.global {
            return Verdict::Drop(DropReason::NotForUs);
        }
        let key = match class {
            L2tpClass::Setup {
                message_type: MessageType::Sccrp,
                tunnel_id,
                assigned_tunnel_id,
            } => match self.learn(now, local, far_end, tunnel_id, assigned_tunnel_id) {
                Ok(key) => key,
                Err(reason) => return Verdict::Drop(reason),
            },
            _ => match self
                .by_lan
                .get(&LanKey::new(local, far_end, class.tunnel_id()))
            {
                Some(&key) => key,
                None => return Verdict::Drop(DropReason::NoEntry),
            },
        };
        if let Some(slot) = self.entries.get_mut(&key) {
            touch(slot, key, now, class, &self.config, &mut self.timers);
            let (ours, public) = (slot.entry.endpoint_tunnel_id, slot.entry.public_tunnel_id);
            // Only the SCCRP and the StopCCN carry the endpoint's Assigned Tunnel ID.
            let names_it = matches!(
                class.message_type(),
                Some(MessageType::Sccrp | MessageType::StopCcn)
            );
            if ours != public && names_it {
                name_public_tunnel_id(&mut view, ours, public);
            }
        }
        view.set_src(self.config.global);
        view.decrement_ttl();
        Verdict::ToPublic
    }

    fn route_from_public(&mut self, now: Instant, packet: &mut [u8]) -> Verdict {
        let (mut view, class) = match check(packet) {
            Ok(checked) => checked,
            Err(reason) => return Verdict::Drop(reason),
        };
        if view.dst() != self.config.global {
            return Verdict::Drop(DropReason::NotForUs);
        }
        let key = PublicKey::new(view.src_addr(), class.tunnel_id());
        let Some(slot) = self.entries.get_mut(&key) else {
            return Verdict::Drop(DropReason::NoEntry);
        };
        let local = slot.entry.local;
        touch(slot, key, now, class, &self.config, &mut self.timers);
        let (ours, public) = (slot.entry.endpoint_tunnel_id, slot.entry.public_tunnel_id);
        if ours != public {
            if let Some(at) = ip::tunnel_id_at(view.udp_payload()) {
                view.set_payload_u16(at, ours);
            }
        }
        view.set_dst(*local.ip());
        view.set_dst_port(local.port());
        view.decrement_ttl();
        Verdict::ToLan {
            endpoint: *local.ip(),
        }
    }

    /// Makes the Table 1 entry for an SCCRP, or finds it when the SCCRP is a retransmission.
    fn learn(
        &mut self,
        now: Instant,
        local: SocketAddrV4,
        far_end: SocketAddrV4,
        initiator_tunnel_id: u16,
        endpoint_tunnel_id: u16,
    ) -> Result<PublicKey, DropReason> {
        // An SCCRP answers a nonzero Assigned Tunnel ID and assigns one (RFC 2661 §4.4.3).
        if initiator_tunnel_id == 0 || endpoint_tunnel_id == 0 {
            return Err(DropReason::Malformed);
        }
        let lan_key = LanKey::new(local, far_end, initiator_tunnel_id);
        if let Some(&key) = self.by_lan.get(&lan_key) {
            let same = self
                .entries
                .get(&key)
                .is_some_and(|slot| slot.entry.endpoint_tunnel_id == endpoint_tunnel_id);
            if same {
                self.stats.sccrp_retransmits += 1;
                return Ok(key);
            }
            // The initiator's ID answered anew by the same endpoint: the old tunnel is gone.
            if self.remove(key).is_some() {
                self.stats.entries_replaced += 1;
            }
        }
        let mut public_tunnel_id = endpoint_tunnel_id;
        let held_by = self
            .entries
            .get(&PublicKey::new(far_end, endpoint_tunnel_id))
            .map(|slot| (slot.entry.local, slot.entry.endpoint_tunnel_id));
        match held_by {
            // The endpoint gave its ID out again: its earlier tunnel with that far end is gone.
            // Without translation, whoever held the ID is taken as gone too.
            Some(holder)
                if holder == (local, endpoint_tunnel_id) || !self.config.translate_tunnel_ids =>
            {
                let gone = self.remove(PublicKey::new(far_end, endpoint_tunnel_id));
                self.stats.entries_replaced += u64::from(gone.is_some());
            }
            // Another tunnel with that far end has it as its public ID (another endpoint's, or
            // one of this endpoint's the NAT translated): the initiator could not tell the two
            // apart, so this one gets an ID of the NAT's choosing.
            Some(_) => {
                public_tunnel_id = self
                    .free_public_id(far_end, endpoint_tunnel_id)
                    .ok_or(DropReason::TableFull)?;
            }
            None => {}
        }
        let key = PublicKey::new(far_end, public_tunnel_id);
        if self.entries.len() >= self.config.max_entries {
            if let Some(held) = self.full_warning.allow(now) {
                tracing::warn!(
                    limit = self.config.max_entries,
                    refused = self.stats.lan_drops.table_full + 1,
                    since_last_warning = held + 1,
                    "NAT table full: SCCRPs that would make a new entry are dropped"
                );
            }
            return Err(DropReason::TableFull);
        }
        let id = self.next_id;
        self.next_id += 1;
        let entry = NatEntry {
            far_end,
            local,
            initiator_tunnel_id,
            endpoint_tunnel_id,
            public_tunnel_id,
            created: now,
            last_seen: now,
            stopping_since: None,
        };
        if public_tunnel_id != endpoint_tunnel_id {
            self.stats.entries_translated += 1;
        }
        tracing::debug!(%local, %far_end, initiator_tunnel_id, endpoint_tunnel_id,
            public_tunnel_id, "NAT entry created");
        self.timers
            .push(Reverse((now + self.config.entry_timeout, key, id)));
        self.entries.insert(key, Slot { id, entry });
        self.by_lan.insert(lan_key, key);
        self.stats.entries_created += 1;
        Ok(key)
    }

    /// A public Tunnel ID no entry of `far_end` holds, looked for from `after` on.
    fn free_public_id(&self, far_end: SocketAddrV4, after: u16) -> Option<u16> {
        let mut id = after;
        for _ in 0..u16::MAX {
            id = id.checked_add(1).unwrap_or(1);
            if !self.entries.contains_key(&PublicKey::new(far_end, id)) {
                return Some(id);
            }
        }
        None
    }

    fn remove(&mut self, key: PublicKey) -> Option<NatEntry> {
        let slot = self.entries.remove(&key)?;
        let entry = slot.entry;
        self.by_lan.remove(&LanKey::new(
            entry.local,
            entry.far_end,
            entry.initiator_tunnel_id,
        ));
        // A removed entry leaves its timers behind until they come due; under heavy churn
        // (short tunnels, long `entry_timeout`) they would pile up, so rebuild from the live
        // entries once they outnumber them. Amortized O(1) per removal.
        if self.timers.len() > 2 * self.entries.len() + TIMER_SLACK {
            let timers = self
                .entries
                .iter()
                .map(|(&key, slot)| Reverse((self.deadline(&slot.entry), key, slot.id)))
                .collect();
            self.timers = timers;
        }
        Some(entry)
    }

    fn deadline(&self, entry: &NatEntry) -> Instant {
        let idle = entry.last_seen + self.config.entry_timeout;
        match entry.stopping_since {
            Some(since) => idle.min(since + self.config.stop_hold),
            None => idle,
        }
    }

    /// Removes the entries whose time is up: idle for `entry_timeout`, or `stop_hold` past
    /// their first StopCCN.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        while let Some(&Reverse((at, key, id))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(slot) = self.entries.get(&key).filter(|slot| slot.id == id) else {
                continue;
            };
            let due = self.deadline(&slot.entry);
            if due > now {
                self.timers.push(Reverse((due, key, id)));
                continue;
            }
            if let Some(entry) = self.remove(key) {
                let reason = if entry.stopping_since.is_some() {
                    self.stats.entries_removed += 1;
                    "StopCCN"
                } else {
                    self.stats.entries_expired += 1;
                    "idle"
                };
                tracing::debug!(local = %entry.local, far_end = %entry.far_end,
                    endpoint_tunnel_id = entry.endpoint_tunnel_id, reason, "NAT entry gone");
            }
        }
    }

    /// When `handle_timeout` should next run. It may be earlier than any entry's deadline
    /// (traffic moved it on); `handle_timeout` then re-arms, and this answers later.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|&Reverse((at, _, _))| at)
    }

    /// The live entries, in no particular order (`table()` sorts them).
    pub fn entries(&self) -> impl Iterator<Item = &NatEntry> {
        self.entries.values().map(|slot| &slot.entry)
    }

    pub fn stats(&self) -> NatStats {
        NatStats {
            entries: self.entries.len() as u64,
            ..self.stats
        }
    }

    /// Table 1 as fixed-width text, one entry a line in address order, ages as of the latest
    /// `now` the NAT was given.
    pub fn table(&self) -> String {
        let mut rows: Vec<&NatEntry> = self.entries().collect();
        rows.sort_by_key(|e| (e.local, e.far_end, e.endpoint_tunnel_id));
        // An entry the NAT translated shows both IDs: the endpoint's, then the public one.
        let endpoint_id = |e: &NatEntry| {
            if e.public_tunnel_id == e.endpoint_tunnel_id {
                e.endpoint_tunnel_id.to_string()
            } else {
                format!("{}>{}", e.endpoint_tunnel_id, e.public_tunnel_id)
            }
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<21}  {:<21}  {:>15}  {:>16}  {:>9}  State",
            "Local address/port",
            "Far end address/port",
            "Endpoint tunnel",
            "Initiator tunnel",
            "Age",
        );
        for entry in rows {
            let age = self.now.saturating_duration_since(entry.created);
            let _ = writeln!(
                out,
                "{:<21}  {:<21}  {:>15}  {:>16}  {:>8.1}s  {}",
                entry.local.to_string(),
                entry.far_end.to_string(),
                endpoint_id(entry),
                entry.initiator_tunnel_id,
                age.as_secs_f64(),
                if entry.stopping_since.is_some() {
                    "stopping"
                } else {
                    "open"
                },
            );
        }
        out
    }
}

/// An endpoint's SCCRP or StopCCN of a translated tunnel: its Assigned Tunnel ID becomes the
/// public one. A hidden one stays (the NAT holds no secret); the initiator still finds the
/// tunnel by the header's Tunnel ID, its own.
fn name_public_tunnel_id(view: &mut Ipv4Udp<&mut [u8]>, ours: u16, public: u16) {
    if let Ok(Some((at, value))) = ip::assigned_tunnel_id_at(view.udp_payload()) {
        if value == ours {
            view.set_payload_u16(at, public);
        }
    }
}

/// A packet matched the entry: it is alive; a StopCCN starts its hold.
fn touch(
    slot: &mut Slot,
    key: PublicKey,
    now: Instant,
    class: L2tpClass,
    config: &NatConfig,
    timers: &mut BinaryHeap<Reverse<(Instant, PublicKey, u64)>>,
) {
    slot.entry.last_seen = slot.entry.last_seen.max(now);
    if class.message_type() == Some(MessageType::StopCcn) && slot.entry.stopping_since.is_none() {
        slot.entry.stopping_since = Some(now);
        timers.push(Reverse((now + config.stop_hold, key, slot.id)));
    }
}

/// The checks both directions share: a whole IPv4 UDP packet with a good header checksum, a
/// TTL that allows one more hop, and L2TP routing fields that can be read.
fn check(packet: &mut [u8]) -> Result<(Ipv4Udp<&mut [u8]>, L2tpClass), DropReason> {
    let view = Ipv4Udp::new_checked(packet).map_err(|err| match err {
        ip::Error::NotIpv4 { .. } | ip::Error::NotUdp { .. } => DropReason::NotIpv4Udp,
        ip::Error::Fragment { .. } => DropReason::Fragment,
        ip::Error::Truncated(Truncated { .. }) | ip::Error::BadValue(BadValue { .. }) => {
            DropReason::Malformed
        }
    })?;
    if !view.ipv4_checksum_ok() {
        return Err(DropReason::BadIpChecksum);
    }
    let class = ip::classify(view.udp_payload()).map_err(|err| match err {
        wire::Error::Hidden { .. } => DropReason::HiddenTunnelId,
        _ => DropReason::NotL2tp,
    })?;
    if view.ttl() <= 1 {
        return Err(DropReason::TtlExpired);
    }
    Ok((view, class))
}

#[cfg(test)]
mod tests;
