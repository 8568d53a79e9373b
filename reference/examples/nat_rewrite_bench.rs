//! Rewrites per second of `Nat::from_public` (and `from_lan`) on a 60-byte L2TP data packet,
//! one core, no I/O: the NAT's own cost per packet, next to the socket figures in PEERS.md.
//!
//! `cargo run --release --example nat_rewrite_bench [tunnels]` (default 10 000 live entries).

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant as Clock;

use l2tp::capture::build_ipv4_udp;
use l2tp::time::Instant;
use l2tp::wire::{AvpRepr, AvpValue, ControlMessage, HeaderRepr, MessageType, PacketRepr};
use reference::nat::{Nat, NatConfig, Verdict};

const GLOBAL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const ROUNDS: u32 = 5;
const PACKETS: u32 = 2_000_000;

fn ipv4(src: SocketAddrV4, dst: SocketAddrV4, l2tp: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    build_ipv4_udp(src, dst, l2tp, 1, &mut out).expect("small packet");
    out
}

/// A data message with 24 bytes of PPP: 20 + 8 + 8 + 24 = 60 bytes of IPv4.
fn data(tunnel_id: u16) -> Vec<u8> {
    let payload = [0x5a; 24];
    let packet = PacketRepr::Data {
        header: HeaderRepr::data(tunnel_id, 1),
        payload: &payload,
    };
    let mut buf = vec![0; packet.buffer_len()];
    packet.emit(&mut buf, None).expect("fits");
    buf
}

fn initiator(i: u32) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(0xc612_0000 | (i % 60_000 + 256)), 1701)
}

fn endpoint(i: u32) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, (i % 16) as u8 + 1), 1701)
}

fn rate(packets: u32, seconds: f64) -> String {
    format!(
        "{:.2} M/s ({:.1} ns/packet)",
        f64::from(packets) / seconds / 1e6,
        seconds * 1e9 / f64::from(packets)
    )
}

/// Runs `step` over `packets` copies of `template` (the copy keeps every round's input the
/// same; it is measured alone too) and prints the best round.
fn measure(name: &str, template: &[u8], mut step: impl FnMut(&mut [u8]) -> Verdict) {
    let mut buf = template.to_vec();
    let mut best = f64::MAX;
    for _ in 0..ROUNDS {
        let start = Clock::now();
        for _ in 0..PACKETS {
            buf.copy_from_slice(template);
            black_box(step(black_box(&mut buf)));
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    println!("{name:<40} {}", rate(PACKETS, best));
}

fn main() {
    let tunnels: u32 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000)
        .clamp(1, 60_000);
    let mut nat = Nat::new(NatConfig::new(GLOBAL));
    for i in 0..tunnels {
        let sccrp = ControlMessage {
            header: HeaderRepr::control(1 + (i % 60_000) as u16, 0, 0, 1),
            avps: vec![
                AvpRepr::mandatory(AvpValue::MessageType(MessageType::Sccrp)),
                AvpRepr::mandatory(AvpValue::AssignedTunnelId(1 + i as u16)),
            ],
        }
        .to_vec(None)
        .expect("emits");
        let mut packet = ipv4(endpoint(i), initiator(i), &sccrp);
        assert_eq!(nat.from_lan(Instant::ZERO, &mut packet), Verdict::ToPublic);
    }
    println!("{tunnels} live entries, {PACKETS} packets a round, best of {ROUNDS}");

    let probe = tunnels / 2;
    let inbound = ipv4(
        initiator(probe),
        SocketAddrV4::new(GLOBAL, 1701),
        &data(1 + probe as u16),
    );
    let outbound = ipv4(
        endpoint(probe),
        initiator(probe),
        &data(1 + (probe % 60_000) as u16),
    );
    assert_eq!(inbound.len(), 60);

    let now = Instant::from_micros(1);
    let expected = Verdict::ToLan {
        endpoint: *endpoint(probe).ip(),
    };
    let mut check = inbound.clone();
    assert_eq!(nat.from_public(now, &mut check), expected);

    measure("copy only (baseline)", &inbound, |_| Verdict::ToPublic);
    measure("from_public, 60-byte data", &inbound, |p| {
        nat.from_public(now, p)
    });
    measure("from_lan, 60-byte data", &outbound, |p| {
        nat.from_lan(now, p)
    });
    let stray = ipv4(
        SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 9), 1701),
        SocketAddrV4::new(GLOBAL, 1701),
        &data(7),
    );
    measure("from_public, no entry (dropped)", &stray, |p| {
        nat.from_public(now, p)
    });
    let stats = nat.stats();
    println!(
        "to_lan {} to_public {} public drops {}",
        stats.to_lan,
        stats.to_public,
        stats.public_drops.total()
    );
}
