//! Probes inside `l2tp::sim` against the reference endpoint (`reference::endpoint`, the LNS of
//! `l2tpkit endpoint`) driven sans-IO on a `TunnelSet`, as its runner drives it: virtual time,
//! no root, no socket. Our endpoint passes every probe on real sockets (`cli/tests/it/probe.rs`);
//! here it must pass them too, in a fraction of the time the waits take on a wire.

use std::net::{Ipv4Addr, SocketAddrV4};

use l2tp::conn::tunnel::TunnelConfig;
use l2tp::conn::tunnels::TunnelSet;
use l2tp::sim::{Datagram, LinkConditions, Node, Simulator};
use l2tp::time::Instant;
use netio::runner::TunnelDriver;
use probes::probe::transport::{SimNetwork, SimNode};
use probes::probe::{catalog, run_one_on, Target, VerdictKind};
use reference::endpoint::Endpoint;

const LNS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 1701);
const LAC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const SECRET: &str = "probe-secret";

/// The reference endpoint as `l2tpkit endpoint --secret` runs it: one turn of the runner's loop
/// (events to the role, its tick, then what the tunnels send) after each input.
struct EndpointNode {
    set: TunnelSet,
    role: Endpoint,
    wake: Option<Instant>,
    buf: Vec<u8>,
}

impl EndpointNode {
    fn new() -> EndpointNode {
        let config = TunnelConfig {
            host_name: "l2tpkit-endpoint".to_string(),
            secret: Some(SECRET.as_bytes().to_vec()),
            ..TunnelConfig::default()
        };
        EndpointNode {
            set: TunnelSet::new(config, 11, true),
            role: Endpoint::new(11),
            wake: None,
            buf: Vec::with_capacity(2048),
        }
    }

    fn turn(&mut self, now: Instant) {
        while let Some((id, event)) = self.set.poll_event() {
            self.role.on_event(&mut self.set, now, id, event);
        }
        self.wake = self.role.on_tick(&mut self.set, now);
        while let Some((id, event)) = self.set.poll_event() {
            self.role.on_event(&mut self.set, now, id, event);
        }
    }
}

impl Node for EndpointNode {
    fn handle(&mut self, now: Instant, from: SocketAddrV4, _to: SocketAddrV4, bytes: &[u8]) {
        self.set.handle(now, from, bytes);
        self.turn(now);
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
        [self.set.poll_timeout(), self.wake]
            .into_iter()
            .flatten()
            .min()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.set.handle_timeout(now);
        self.turn(now);
    }
}

/// A simulated network holding one reference endpoint, over links with `conditions`.
fn network(seed: u64, conditions: LinkConditions) -> SimNetwork {
    let mut sim: Simulator<SimNode> = Simulator::new(seed);
    sim.set_default_conditions(conditions);
    sim.add_node(Box::new(EndpointNode::new()), &[LNS]);
    SimNetwork::new(sim, LAC, seed)
}

fn target() -> Target {
    let mut target = Target::new(LNS);
    target.secret = Some(SECRET.as_bytes().to_vec());
    target.bind = SocketAddrV4::new(LAC, 0);
    target.live_tunnels = 1000;
    target
}

/// Runs the named probes one after another on one network (as `l2tpkit probe` runs them on
/// one LNS) and asserts each passes.
fn every_one_passes(network: &SimNetwork, names: &[&str]) {
    let target = target();
    for name in names {
        let probe = catalog::by_name(name).unwrap_or_else(|| panic!("no probe {name}"));
        let result = run_one_on(probe, &target, network, None);
        assert_eq!(
            result.verdict,
            VerdictKind::Pass,
            "{name}: {:?}\nevidence:\n{}",
            result.reason,
            result.evidence.join("\n")
        );
        assert!(!result.evidence.is_empty(), "{name}: no evidence");
    }
}

/// The probes that judge the endpoint's PPP side (data-plane-echo), its reliable transport
/// (a 40 s give-up watch, virtual here), authentication, and the two uniqueness probes.
const PROBES: &[&str] = &[
    "establishment",
    "stopccn-cleans-up",
    "unknown-mandatory-avp-vendor0",
    "wrong-version",
    "challenge-right-secret",
    "challenge-wrong-secret",
    "hidden-avps-accepted",
    "tunnel-id-uniqueness",
    "out-of-order-ns-in-window",
    "retransmission-schedule-and-give-up",
    "session-lifecycle",
    "session-id-uniqueness",
    "data-plane-echo",
];

#[test]
fn the_reference_endpoint_passes_the_probes_in_virtual_time() {
    let network = network(1, LinkConditions::default());
    every_one_passes(&network, PROBES);
    // Virtual time went by (the give-up probe alone watches 40 s), and nothing was lost.
    let now = network.with_sim(|sim| sim.now());
    assert!(
        now > Instant::ZERO + std::time::Duration::from_secs(40),
        "{now}"
    );
    assert_eq!(network.with_sim(|sim| sim.stats().lost), 0);
}

#[test]
fn every_tunnel_level_probe_passes_in_catalog_order() {
    let network = network(2, LinkConditions::default());
    let names: Vec<&str> = catalog::all()
        .iter()
        .filter(|p| p.scope == probes::probe::Scope::Any)
        .map(|p| p.name)
        // Crafting below UDP needs a raw socket: the simulator carries payloads only.
        .filter(|name| *name != "bad-udp-checksum-discarded")
        // The PPP family needs the endpoint's PPP server (`--auth`); this endpoint runs none.
        .filter(|name| !name.starts_with("ppp-"))
        .collect();
    every_one_passes(&network, &names);
}

#[test]
fn a_seed_replays_the_same_evidence() {
    let run = || {
        let network = network(3, LinkConditions::default());
        let probe = catalog::by_name("session-lifecycle").expect("the probe");
        run_one_on(probe, &target(), &network, None).evidence
    };
    assert_eq!(run(), run());
}
