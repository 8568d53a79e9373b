//! The LAN's MAC addresses as the NAT's tap sees them.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use l2tp::time::Instant;

/// The MAC addresses of the LAN's hosts as the tap sees them (the source of each frame that
/// arrives), so that packets for an endpoint go out as Ethernet frames on the tap's socket:
/// no routing, neighbour lookup or netfilter per packet (PEERS.md: ~1 µs a packet cheaper than
/// IP_HDRINCL). An address not seen for [`Neighbours::FRESH`] is not used: such packets take
/// the raw IP socket, and the kernel's ARP, as before.
pub(super) struct Neighbours {
    map: HashMap<Ipv4Addr, ([u8; 6], Instant)>,
    /// The last lookup, which is what most of a batch asks for again.
    last: Option<(Ipv4Addr, [u8; 6], Instant)>,
}

impl Neighbours {
    /// As long as the kernel's ARP would trust an entry without checking (30 s is Linux's
    /// base_reachable_time).
    pub(super) const FRESH: Duration = Duration::from_secs(30);
    /// Bounds the memory a LAN full of forged sources can take.
    const MAX: usize = 1 << 16;

    pub(super) fn new() -> Neighbours {
        Neighbours {
            map: HashMap::new(),
            last: None,
        }
    }

    pub(super) fn learn(&mut self, ip: Ipv4Addr, mac: [u8; 6], now: Instant) {
        if let Some(entry) = self.map.get_mut(&ip) {
            *entry = (mac, now);
        } else {
            if self.map.len() >= Neighbours::MAX {
                self.map.retain(|_, (_, seen)| {
                    now.saturating_duration_since(*seen) < Neighbours::FRESH
                });
                if self.map.len() >= Neighbours::MAX {
                    return;
                }
            }
            self.map.insert(ip, (mac, now));
        }
        if self.last.is_some_and(|(last, _, _)| last == ip) {
            self.last = None;
        }
    }

    pub(super) fn fresh(&mut self, ip: Ipv4Addr, now: Instant) -> Option<[u8; 6]> {
        let fresh = |seen: Instant| now.saturating_duration_since(seen) < Neighbours::FRESH;
        if let Some((last, mac, seen)) = self.last {
            if last == ip && fresh(seen) {
                return Some(mac);
            }
        }
        let &(mac, seen) = self.map.get(&ip)?;
        self.last = Some((ip, mac, seen));
        fresh(seen).then_some(mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_go_stale() {
        let mut n = Neighbours::new();
        let ip = Ipv4Addr::new(198, 19, 0, 11);
        let t0 = Instant::ZERO + Duration::from_secs(1);
        assert_eq!(n.fresh(ip, t0), None);
        n.learn(ip, [2, 0, 0, 0, 0, 1], t0);
        assert_eq!(n.fresh(ip, t0), Some([2, 0, 0, 0, 0, 1]));
        // A new address for the same IP replaces the old one, also in the last-lookup cache.
        n.learn(ip, [2, 0, 0, 0, 0, 2], t0);
        assert_eq!(n.fresh(ip, t0), Some([2, 0, 0, 0, 0, 2]));
        let later = t0 + Neighbours::FRESH;
        assert_eq!(n.fresh(ip, later), None);
        n.learn(ip, [2, 0, 0, 0, 0, 2], later);
        assert_eq!(n.fresh(ip, later), Some([2, 0, 0, 0, 0, 2]));
    }
}
