//! IPv6CP (RFC 5072) on the automaton: the Interface-Identifier each side's link-local
//! address is built from.
//!
//! ```text
//! option                 type  length  value
//! Interface-Identifier     1    10     8 octets, never zero
//! ```
//! Both sides propose a random non-zero identifier (from the caller's seed). An identifier
//! equal to ours, or zero, is naked with another one (§4.1); everything else is rejected.

use super::frame::{protocol, push_option};
use super::fsm::{options, Events, Fsm, Judgement, Negotiator, Refusal};
use crate::seed::splitmix64;

/// IPv6CP option types.
pub mod option_type {
    pub const INTERFACE_IDENTIFIER: u8 = 1;
}

/// What IPv6CP agreed; read it once Opened ([`Fsm::<Ipv6cp>::negotiated`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6cpNegotiated {
    /// Our Interface-Identifier; `None` when the peer rejected the option.
    pub local: Option<u64>,
    /// The peer's, as we acked it; `None` when it sent none.
    pub peer: Option<u64>,
}

/// The IPv6CP negotiator.
#[derive(Debug, Clone)]
pub struct Ipv6cp {
    rng: u64,
    /// Our Interface-Identifier; 0 when not requested.
    local: u64,
    /// The peer's, from its last request; 0 when none.
    peer: u64,
}

impl Ipv6cp {
    pub fn new(seed: u64) -> Ipv6cp {
        let mut ipv6cp = Ipv6cp {
            rng: seed,
            local: 0,
            peer: 0,
        };
        ipv6cp.local = ipv6cp.random_identifier();
        ipv6cp
    }

    pub fn negotiated(&self) -> Ipv6cpNegotiated {
        Ipv6cpNegotiated {
            local: Some(self.local).filter(|&id| id != 0),
            peer: Some(self.peer).filter(|&id| id != 0),
        }
    }

    /// A non-zero identifier different from both sides' current ones.
    fn random_identifier(&mut self) -> u64 {
        loop {
            let id = splitmix64(&mut self.rng);
            if id != 0 && id != self.local && id != self.peer {
                return id;
            }
        }
    }
}

impl Negotiator for Ipv6cp {
    const PROTOCOL: u16 = protocol::IPV6CP;

    fn reset(&mut self) {
        if self.local == 0 {
            self.local = self.random_identifier();
        }
    }

    fn emit_request(&self, out: &mut Vec<u8>) {
        if self.local != 0 {
            push_option(
                out,
                option_type::INTERFACE_IDENTIFIER,
                &self.local.to_be_bytes(),
            );
        }
    }

    fn judge_request(&mut self, data: &[u8], j: &mut Judgement, _events: &mut Events) {
        self.peer = 0;
        for (kind, value) in options(data) {
            let id = <[u8; 8]>::try_from(value).map(u64::from_be_bytes);
            match id {
                Ok(id) if kind == option_type::INTERFACE_IDENTIFIER => {
                    if id == 0 || id == self.local {
                        j.nak(kind, value, &self.random_identifier().to_be_bytes());
                    } else {
                        self.peer = id;
                    }
                }
                _ => j.reject(kind, value),
            }
        }
    }

    fn on_nak(&mut self, data: &[u8], treat_as_reject: bool) -> Result<(), Refusal> {
        for (kind, value) in options(data) {
            if kind != option_type::INTERFACE_IDENTIFIER || self.local == 0 {
                continue;
            }
            self.local = match <[u8; 8]>::try_from(value).map(u64::from_be_bytes) {
                _ if treat_as_reject => 0,
                // §4.1: take the peer's suggestion when it is usable.
                Ok(id) if id != 0 && id != self.peer => id,
                _ => self.random_identifier(),
            };
        }
        Ok(())
    }

    fn on_reject(&mut self, data: &[u8]) -> Result<(), Refusal> {
        if options(data).any(|(kind, _)| kind == option_type::INTERFACE_IDENTIFIER) {
            self.local = 0;
        }
        Ok(())
    }
}

impl Fsm<Ipv6cp> {
    /// What IPv6CP agreed, once Opened.
    pub fn negotiated(&self) -> Option<Ipv6cpNegotiated> {
        self.is_opened().then(|| self.negotiator().negotiated())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ppp::fsm::tests::{drain, packet, run_pair};
    use crate::ppp::fsm::{code, FsmConfig};
    use crate::ppp::PacketRepr;
    use crate::time::Instant;
    use proptest::prelude::*;

    fn sent(fsm: &mut Fsm<Ipv6cp>) -> Vec<(u8, Vec<u8>)> {
        drain(fsm)
            .iter()
            .map(|p| {
                let p = PacketRepr::parse_bytes(p).unwrap();
                (p.code, p.data.to_vec())
            })
            .collect()
    }

    #[test]
    fn two_peers_open_with_distinct_identifiers() {
        let mut a = Fsm::new(Ipv6cp::new(1), FsmConfig::default());
        let mut b = Fsm::new(Ipv6cp::new(2), FsmConfig::default());
        run_pair(&mut a, &mut b, 0, 1);
        let (x, y) = (a.negotiated().unwrap(), b.negotiated().unwrap());
        assert_eq!((x.local, x.peer), (y.peer, y.local));
        assert!(x.local.is_some() && x.local != x.peer);
    }

    #[test]
    fn equal_or_zero_identifiers_are_naked_with_another() {
        let mut a = Fsm::new(Ipv6cp::new(5), FsmConfig::default());
        a.open(Instant::ZERO);
        a.up(Instant::ZERO);
        let request = sent(&mut a).remove(0).1;
        assert_eq!((request[0], request[1]), (1, 10));
        let ours = a.negotiator().local;
        for theirs in [ours, 0] {
            let mut option = vec![1, 10];
            option.extend(theirs.to_be_bytes());
            a.handle(Instant::ZERO, packet(code::CONFIGURE_REQUEST, 3, &option));
            let (code, nak) = sent(&mut a).remove(0);
            assert_eq!(code, code::CONFIGURE_NAK);
            let suggested = u64::from_be_bytes(nak[2..].try_into().unwrap());
            assert!(suggested != 0 && suggested != ours);
        }
        // A wrong length is rejected.
        a.handle(
            Instant::ZERO,
            packet(code::CONFIGURE_REQUEST, 4, &[1, 4, 0, 1]),
        );
        assert_eq!(sent(&mut a), [(code::CONFIGURE_REJECT, vec![1, 4, 0, 1])]);
        // The peer's Nak is taken when usable.
        let id = a.request_id();
        a.handle(
            Instant::ZERO,
            packet(code::CONFIGURE_NAK, id, &[1, 10, 0, 0, 0, 0, 0, 0, 0, 9]),
        );
        assert_eq!(a.negotiator().local, 9);
    }

    proptest! {
        #[test]
        fn ipv6cp_over_a_lossy_link(seed in any::<u64>(), loss in 0u64..30) {
            let mut a = Fsm::new(Ipv6cp::new(seed), FsmConfig::default());
            // Equal identifiers at first, naked apart. (Equal seeds would keep both sides'
            // draws equal forever: no rule can break a perfect symmetry.)
            let mut twin = Ipv6cp::new(!seed);
            twin.local = a.negotiator().local;
            let mut b = Fsm::new(twin, FsmConfig::default());
            run_pair(&mut a, &mut b, loss, seed);
            if loss <= 10 {
                let (x, y) = (a.negotiated().unwrap(), b.negotiated().unwrap());
                prop_assert_eq!(x.peer, y.local);
                prop_assert_ne!(x.local, x.peer);
            }
        }
    }
}
