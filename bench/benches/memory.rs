//! Heap bytes per live tunnel in the protocol core, each end apart: `N` tunnels with two
//! sessions each are set up between a LAC-side and an LNS-side `TunnelSet` in memory, left
//! idle (acknowledgements sent, a HELLO exchanged), and the counting allocator says what each
//! side holds. What the roles add on top (the LAC's records, the PPP of each session) and the
//! allocator's own overhead show in the processes' RSS (`l2tpkit-bench setups`).
//!
//! `cargo bench -p l2tpkit-bench --bench memory [-- TUNNELS]` (20,000 by default)

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use l2tp::conn::tunnel::{Event, Tunnel, TunnelConfig};
use l2tp::conn::tunnels::TunnelSet;
use l2tp::time::Instant;
use netio::alloc::{live_bytes, Counting};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const LAC: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 40_000);
const LNS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 1701);
const SESSIONS: usize = 2;

/// Moves every datagram both ways until neither side has more; the LAC's tunnels that came up.
fn exchange(lac: &mut TunnelSet, lns: &mut TunnelSet, now: Instant, buf: &mut Vec<u8>) -> Vec<u16> {
    let mut up = Vec::new();
    loop {
        let mut moved = false;
        while lac.poll_transmit(now, buf).is_some() {
            lns.handle(now, LAC, buf);
            moved = true;
        }
        while lns.poll_transmit(now, buf).is_some() {
            lac.handle(now, LNS, buf);
            moved = true;
        }
        while let Some((id, event)) = lac.poll_event() {
            if matches!(event, Event::TunnelUp { .. }) {
                up.push(id);
            }
        }
        while lns.poll_event().is_some() {}
        if !moved {
            return up;
        }
    }
}

/// Heap bytes per tunnel at the LAC and at the LNS, `tunnels` idle with `sessions` each.
fn measure(tunnels: usize, sessions: usize) -> (f64, f64) {
    let before = live_bytes();
    let mut lns = TunnelSet::new(TunnelConfig::default(), 2, true);
    let lns_empty = live_bytes() - before;
    let mut lac = TunnelSet::new(TunnelConfig::default(), 1, false);
    let mut now = Instant::ZERO;
    let mut buf = Vec::with_capacity(2048);
    for _ in 0..tunnels {
        lac.connect(now, LNS);
    }
    let up = exchange(&mut lac, &mut lns, now, &mut buf);
    assert_eq!(up.len(), tunnels, "every tunnel up");
    for &id in &up {
        if let Some(tunnel) = lac.tunnel_mut(id) {
            for _ in 0..sessions {
                tunnel.open_incoming_call();
            }
        }
    }
    exchange(&mut lac, &mut lns, now, &mut buf);
    // Idle: delayed acknowledgements out, then a HELLO each way (61 s of silence).
    for step in [1, 61, 2] {
        now += Duration::from_secs(step);
        lac.handle_timeout(now);
        lns.handle_timeout(now);
        exchange(&mut lac, &mut lns, now, &mut buf);
    }
    let up_sessions: usize = up
        .iter()
        .filter_map(|&id| lac.tunnel(id))
        .map(|t| t.session_ids().count())
        .sum();
    assert_eq!(up_sessions, tunnels * sessions, "every session up");
    drop(buf);
    let both = live_bytes() - before;
    drop(lac);
    let lns_only = live_bytes() - before - lns_empty;
    drop(lns);
    let per = |bytes: isize| bytes as f64 / tunnels as f64;
    (per(both - lns_only - lns_empty), per(lns_only))
}

fn main() {
    let tunnels: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000)
        .clamp(1, 60_000);
    println!("memory, protocol core: heap bytes per idle tunnel, {tunnels} tunnels");
    println!(
        "  size_of::<Tunnel>() = {} (inside each)",
        size_of::<Tunnel>()
    );
    let (lac0, lns0) = measure(tunnels, 0);
    let (lac2, lns2) = measure(tunnels, SESSIONS);
    println!("  side  no sessions  {SESSIONS} sessions  per session");
    for (side, none, some) in [("LAC", lac0, lac2), ("LNS", lns0, lns2)] {
        println!(
            "  {side}   {none:>8.0} B  {some:>8.0} B  {:>8.0} B",
            (some - none) / SESSIONS as f64
        );
    }
}
