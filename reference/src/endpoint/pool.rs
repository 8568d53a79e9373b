//! The IPv4 addresses the endpoint hands out to its subscribers over IPCP, one per PPP
//! session, back when the session ends. The addresses exist only inside PPP: none is ever
//! configured on an interface, so any block will do; the tests and the defaults use
//! 198.19.128.0/17 (the upper half of the RFC 2544 benchmarking block, which the lab's own
//! networks leave free).

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// `ADDR/LEN`: a block of IPv4 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub network: Ipv4Addr,
    pub prefix_len: u8,
}

/// The default pool (see the module's note).
pub const DEFAULT_POOL: Ipv4Cidr = Ipv4Cidr {
    network: Ipv4Addr::new(198, 19, 128, 0),
    prefix_len: 17,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// (The flag's parser names the value.)
    #[error("expected ADDR/LEN, an IPv4 network such as 198.19.128.0/17")]
    Syntax,
    #[error("host bits are set; the network is {network}/{prefix_len}")]
    HostBits { network: Ipv4Addr, prefix_len: u8 },
    #[error("{0}: a pool this large is not useful here (at most a /8)")]
    TooLarge(Ipv4Cidr),
    #[error("{address} (the endpoint's own PPP address) is not in the pool {pool}")]
    OwnOutside { address: Ipv4Addr, pool: Ipv4Cidr },
    #[error("the pool {0} has no address left for subscribers beside the endpoint's own")]
    Empty(Ipv4Cidr),
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = PoolError;

    fn from_str(s: &str) -> Result<Ipv4Cidr, PoolError> {
        let syntax = || PoolError::Syntax;
        let (addr, len) = s.trim().split_once('/').ok_or_else(syntax)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| syntax())?;
        let prefix_len: u8 = len.parse().map_err(|_| syntax())?;
        if prefix_len > 32 {
            return Err(syntax());
        }
        let cidr = Ipv4Cidr {
            network: Ipv4Addr::from(u32::from(addr) & mask(prefix_len)),
            prefix_len,
        };
        if cidr.network != addr {
            return Err(PoolError::HostBits {
                network: cidr.network,
                prefix_len,
            });
        }
        Ok(cidr)
    }
}

fn mask(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len.min(32)))
        .unwrap_or(0)
}

impl Ipv4Cidr {
    /// The addresses a host may hold: all but the network and broadcast addresses, except in
    /// a /31 (RFC 3021) and a /32, which have none.
    pub fn hosts(&self) -> (u32, u32) {
        let first = u32::from(self.network);
        let last = first | !mask(self.prefix_len);
        if self.prefix_len >= 31 {
            (first, last)
        } else {
            (first + 1, last - 1)
        }
    }

    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & mask(self.prefix_len) == u32::from(self.network)
    }
}

/// Addresses to hand out: never-used ones in order, then returned ones oldest first (so that
/// an address just freed is not given to the next subscriber at once, while stale packets to
/// it may still be about).
#[derive(Debug)]
pub struct AddressPool {
    cidr: Ipv4Cidr,
    /// The endpoint's own address, never handed out.
    own: Ipv4Addr,
    /// The next never-used address (none left: `None`), and the last host address.
    next: Option<u32>,
    last: u32,
    returned: VecDeque<Ipv4Addr>,
    in_use: HashSet<Ipv4Addr>,
    capacity: usize,
    /// Times an address already in use came up for allocation (and was skipped): a bug guard
    /// that must stay at 0.
    duplicates_refused: u64,
}

impl AddressPool {
    /// The host addresses of `cidr` but `own` (default: the first of them).
    pub fn new(cidr: Ipv4Cidr, own: Option<Ipv4Addr>) -> Result<AddressPool, PoolError> {
        if cidr.prefix_len < 8 {
            return Err(PoolError::TooLarge(cidr));
        }
        let (first, last) = cidr.hosts();
        let own = own.unwrap_or(Ipv4Addr::from(first));
        if !cidr.contains(own) {
            return Err(PoolError::OwnOutside {
                address: own,
                pool: cidr,
            });
        }
        let hosts = (last - first) as usize + 1;
        let own_is_host = (first..=last).contains(&u32::from(own));
        let capacity = hosts - usize::from(own_is_host);
        if capacity == 0 {
            return Err(PoolError::Empty(cidr));
        }
        Ok(AddressPool {
            cidr,
            own,
            next: Some(first),
            last,
            returned: VecDeque::new(),
            in_use: HashSet::new(),
            capacity,
            duplicates_refused: 0,
        })
    }

    pub fn cidr(&self) -> Ipv4Cidr {
        self.cidr
    }

    /// The endpoint's own PPP address.
    pub fn own(&self) -> Ipv4Addr {
        self.own
    }

    /// An address for a new session; `None` when every one is in use.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        loop {
            let candidate = if let Some(address) = self.returned.pop_front() {
                address
            } else if let Some(next) = self.next {
                let address = Ipv4Addr::from(next);
                self.next = next.checked_add(1).filter(|&n| n <= self.last);
                if address == self.own {
                    continue;
                }
                address
            } else {
                return None;
            };
            if self.in_use.insert(candidate) {
                return Some(candidate);
            }
            self.duplicates_refused += 1;
            tracing::error!(%candidate, "pool: an address in use came up again; skipped");
        }
    }

    /// Gives `address` back; false when it was not handed out by this pool.
    pub fn release(&mut self, address: Ipv4Addr) -> bool {
        if !self.in_use.remove(&address) {
            return false;
        }
        self.returned.push_back(address);
        if self.in_use.is_empty() && self.in_use.capacity() > 1024 {
            self.in_use.shrink_to(1024);
        }
        true
    }

    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }

    pub fn free(&self) -> usize {
        self.capacity - self.in_use.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn duplicates_refused(&self) -> u64 {
        self.duplicates_refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_refuses_cidrs() {
        assert_eq!(cidr("198.19.128.0/17"), DEFAULT_POOL);
        assert!(matches!(
            "198.19.128.5/17".parse::<Ipv4Cidr>(),
            Err(PoolError::HostBits { network, .. }) if network == Ipv4Addr::new(198, 19, 128, 0)
        ));
        for bad in ["198.19.128.0", "198.19.128.0/33", "x/24", "198.19.128.0/"] {
            assert!(
                matches!(bad.parse::<Ipv4Cidr>(), Err(PoolError::Syntax)),
                "{bad}"
            );
        }
        assert_eq!(
            AddressPool::new(cidr("10.0.0.0/7"), None).unwrap_err(),
            PoolError::TooLarge(cidr("10.0.0.0/7"))
        );
        assert!(matches!(
            AddressPool::new(DEFAULT_POOL, Some(Ipv4Addr::new(198, 19, 0, 1))),
            Err(PoolError::OwnOutside { .. })
        ));
        assert!(matches!(
            AddressPool::new(cidr("198.19.128.1/32"), None),
            Err(PoolError::Empty(_))
        ));
    }

    /// Every host address but the own one, each once; then exhausted; returned ones come back
    /// oldest first; never the network, broadcast or own address.
    #[test]
    fn hands_out_every_host_once_then_reuses_returned_ones() {
        let mut pool = AddressPool::new(cidr("198.19.130.0/24"), None).unwrap();
        assert_eq!(pool.own(), Ipv4Addr::new(198, 19, 130, 1));
        assert_eq!(pool.capacity(), 253);
        let mut given = Vec::new();
        while let Some(address) = pool.allocate() {
            given.push(address);
        }
        assert_eq!(given.len(), 253);
        assert_eq!(pool.free(), 0);
        assert_eq!(given.first(), Some(&Ipv4Addr::new(198, 19, 130, 2)));
        assert_eq!(given.last(), Some(&Ipv4Addr::new(198, 19, 130, 254)));
        let mut unique = given.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 253);
        for never in [[198, 19, 130, 0], [198, 19, 130, 255], [198, 19, 130, 1]] {
            assert!(!given.contains(&Ipv4Addr::from(never)));
        }
        assert_eq!(pool.allocate(), None);
        assert!(pool.release(given[10]));
        assert!(pool.release(given[3]));
        assert!(!pool.release(given[3]), "a second release is refused");
        assert!(!pool.release(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!((pool.in_use(), pool.free()), (251, 2));
        assert_eq!(pool.allocate(), Some(given[10]));
        assert_eq!(pool.allocate(), Some(given[3]));
        assert_eq!(pool.allocate(), None);
        assert_eq!(pool.duplicates_refused(), 0);
    }

    #[test]
    fn own_address_inside_is_skipped_and_small_blocks_work() {
        let own = Ipv4Addr::new(198, 19, 128, 3);
        let mut pool = AddressPool::new(cidr("198.19.128.0/29"), Some(own)).unwrap();
        let given: Vec<_> = std::iter::from_fn(|| pool.allocate()).collect();
        assert_eq!(given.len(), 5);
        assert!(!given.contains(&own));
        // A /31 has two hosts (RFC 3021): one is ours, one the subscriber's.
        let mut pool = AddressPool::new(cidr("198.19.128.0/31"), None).unwrap();
        assert_eq!(pool.allocate(), Some(Ipv4Addr::new(198, 19, 128, 1)));
        assert_eq!(pool.allocate(), None);
        // The default pool: 32766 hosts, one ours.
        let pool = AddressPool::new(DEFAULT_POOL, None).unwrap();
        assert_eq!(pool.capacity(), 32765);
        assert_eq!(pool.own(), Ipv4Addr::new(198, 19, 128, 1));
    }
}
