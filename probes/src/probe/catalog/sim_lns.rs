//! For the catalog's unit tests: probes run inside `l2tp::sim` against an LNS that is a bare
//! `TunnelSet` (the reference endpoint adds PPP echo on top; `tests/tests/it/probe_sim.rs` runs
//! that one).

use std::net::{Ipv4Addr, SocketAddrV4};

use l2tp::conn::tunnel::TunnelConfig;
use l2tp::conn::tunnels::TunnelSet;
use l2tp::sim::{Datagram, Node, Simulator};
use l2tp::time::Instant;

use crate::probe::transport::SimNetwork;
use crate::probe::{run_one_on, Probe, ProbeResult, Target, VerdictKind};

pub const LNS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 1701);
pub const SECRET: &[u8] = b"sim-secret";

struct Lns {
    set: TunnelSet,
    buf: Vec<u8>,
}

impl Node for Lns {
    fn handle(&mut self, now: Instant, from: SocketAddrV4, _to: SocketAddrV4, bytes: &[u8]) {
        self.set.handle(now, from, bytes);
        while self.set.poll_event().is_some() {}
    }
    fn poll_transmit(&mut self, now: Instant) -> Option<Datagram> {
        let to = self.set.poll_transmit(now, &mut self.buf)?;
        Some(Datagram {
            from: LNS,
            to,
            bytes: self.buf.clone(),
        })
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.set.poll_timeout()
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.set.handle_timeout(now);
        while self.set.poll_event().is_some() {}
    }
}

/// Runs `probe` against a fresh simulated LNS (with the tunnel secret when `secret`).
pub fn run(probe: &Probe, secret: bool, edit: impl FnOnce(&mut Target)) -> ProbeResult {
    let mut target = Target::new(LNS);
    target.secret = secret.then(|| SECRET.to_vec());
    edit(&mut target);
    run_on(probe, &target)
}

/// As [`run`], with a target made by the caller (one shared by several probes, say).
pub fn run_on(probe: &Probe, target: &Target) -> ProbeResult {
    let config = TunnelConfig {
        secret: target.secret.clone(),
        ..TunnelConfig::default()
    };
    let mut sim: Simulator<Box<dyn Node>> = Simulator::new(17);
    let lns = Lns {
        set: TunnelSet::new(config, 3, true),
        buf: Vec::new(),
    };
    sim.add_node(Box::new(lns), &[LNS]);
    let network = SimNetwork::new(sim, Ipv4Addr::new(198, 18, 0, 2), 5);
    run_one_on(probe, target, &network, None)
}

/// Each named probe of `family`, run as [`run`] does, comes to `want`.
pub fn expect(family: &[Probe], secret: bool, cases: &[(&str, VerdictKind)]) {
    for (name, want) in cases {
        let probe = family
            .iter()
            .find(|p| p.name == *name)
            .unwrap_or_else(|| panic!("no probe {name}"));
        let result = run(probe, secret, |_| {});
        assert_eq!(
            result.verdict,
            *want,
            "{name}: {:?}\n{}",
            result.reason,
            result.evidence.join("\n")
        );
    }
}
