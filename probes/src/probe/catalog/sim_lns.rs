//! For the catalog's unit tests: probes run inside `l2tp::sim` against an LNS that is a bare
//! `TunnelSet` (the reference endpoint adds PPP echo on top; `tests/tests/it/probe_sim.rs` runs
//! that one).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use l2tp::conn::tunnel::TunnelConfig;
use l2tp::conn::tunnels::TunnelSet;
use l2tp::sim::{Datagram, Node, Simulator};
use l2tp::time::Instant;
use l2tp::wire::message::ParseOptions;
use l2tp::wire::{MessageType, PacketRepr};

use crate::probe::transport::SimNetwork;
use crate::probe::{run_one_on, Probe, ProbeResult, Target, VerdictKind};

pub const LNS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 1701);
pub const SECRET: &[u8] = b"sim-secret";

/// What makes the simulated LNS stop answering for a while (as a real one busy tearing down
/// thousands of tunnels does): the probe runner's tests.
#[derive(Debug, Clone, Copy)]
pub enum Trigger {
    /// Once it holds this many tunnels.
    LiveTunnels(usize),
    /// At the first HELLO it receives (which it drops).
    Hello,
}

/// Deaf and mute for `length` from the trigger on: everything in and out is dropped.
#[derive(Debug, Clone, Copy)]
pub struct Outage {
    pub trigger: Trigger,
    pub length: Duration,
}

struct Lns {
    set: TunnelSet,
    buf: Vec<u8>,
    outage: Option<Outage>,
    silent_until: Option<Instant>,
    /// Answers only datagrams from this source port (an LNS that breaks RFC 2661 §8.1).
    only_from_port: Option<u16>,
}

impl Lns {
    fn silent(&self, now: Instant) -> bool {
        self.silent_until.is_some_and(|until| now < until)
    }

    fn fall_silent(&mut self, now: Instant) {
        if let Some(outage) = self.outage.take() {
            self.silent_until = Some(now + outage.length);
        }
    }
}

fn is_hello(bytes: &[u8]) -> bool {
    matches!(
        PacketRepr::parse(bytes, &ParseOptions::default()),
        Ok(PacketRepr::Control(m)) if m.message_type() == Some(MessageType::Hello)
    )
}

impl Node for Lns {
    fn handle(&mut self, now: Instant, from: SocketAddrV4, _to: SocketAddrV4, bytes: &[u8]) {
        if matches!(self.outage, Some(o) if matches!(o.trigger, Trigger::Hello)) && is_hello(bytes)
        {
            self.fall_silent(now);
        }
        if self.silent(now) || self.only_from_port.is_some_and(|p| p != from.port()) {
            return;
        }
        self.set.handle(now, from, bytes);
        while self.set.poll_event().is_some() {}
        if let Some(Outage {
            trigger: Trigger::LiveTunnels(n),
            ..
        }) = self.outage
        {
            if self.set.len() >= n {
                self.fall_silent(now);
            }
        }
    }
    fn poll_transmit(&mut self, now: Instant) -> Option<Datagram> {
        loop {
            let to = self.set.poll_transmit(now, &mut self.buf)?;
            if !self.silent(now) {
                return Some(Datagram {
                    from: LNS,
                    to,
                    bytes: self.buf.clone(),
                });
            }
        }
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
    run_one_on(probe, target, &network(target, None), None)
}

/// A simulated network holding one fresh LNS at [`LNS`] for `target` (its secret), with an
/// outage when given.
pub fn network(target: &Target, outage: Option<Outage>) -> SimNetwork {
    network_with(target, outage, None)
}

/// As [`network`], with an LNS that ignores every datagram not from source port `port`.
pub fn network_only_from_port(target: &Target, port: u16) -> SimNetwork {
    network_with(target, None, Some(port))
}

fn network_with(
    target: &Target,
    outage: Option<Outage>,
    only_from_port: Option<u16>,
) -> SimNetwork {
    let config = TunnelConfig {
        secret: target.secret.clone(),
        ..TunnelConfig::default()
    };
    let mut sim: Simulator<Box<dyn Node>> = Simulator::new(17);
    let lns = Lns {
        set: TunnelSet::new(config, 3, true),
        buf: Vec::new(),
        outage,
        silent_until: None,
        only_from_port,
    };
    sim.add_node(Box::new(lns), &[LNS]);
    SimNetwork::new(sim, Ipv4Addr::new(198, 18, 0, 2), 5)
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
