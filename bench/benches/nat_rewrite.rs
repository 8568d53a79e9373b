//! `Nat::from_public` and `Nat::from_lan` on a 60-byte L2TP data packet with 10 000 live Table 1
//! entries: the NAT's own cost per packet, one core, no I/O (beside `l2tpkit-bench nat`, which
//! measures it through sockets against the kernel's NAT).
//!
//! `cargo bench -p l2tpkit-bench --bench nat_rewrite`

use std::net::{Ipv4Addr, SocketAddrV4};

use divan::counter::ItemsCount;
use divan::Bencher;
use l2tp::capture::build_ipv4_udp;
use l2tp::time::Instant;
use l2tp::wire::{AvpRepr, AvpValue, ControlMessage, HeaderRepr, MessageType, PacketRepr};
use reference::nat::{Nat, NatConfig, Verdict};

const GLOBAL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const TUNNELS: u32 = 10_000;
/// The entry the measured packets belong to: one in the middle of the table.
const PROBE: u32 = TUNNELS / 2;

fn main() {
    divan::main();
}

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

/// A NAT holding `TUNNELS` entries, each made by an SCCRP from an endpoint, as in a cluster.
fn nat() -> Nat {
    let mut nat = Nat::new(NatConfig::new(GLOBAL));
    for i in 0..TUNNELS {
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
    nat
}

/// Rewrites a fresh copy of `packet` with `step` per iteration; the copy is not timed.
fn rewrite(bencher: Bencher, packet: Vec<u8>, mut step: impl FnMut(&mut [u8]) -> Verdict) {
    bencher
        .counter(ItemsCount::new(1u32))
        .with_inputs(|| packet.clone())
        .bench_local_refs(|p| step(p));
}

const NOW: Instant = Instant::from_micros(1);

/// Initiator to the global address: the destination becomes the endpoint's LAN address.
#[divan::bench]
fn from_public(bencher: Bencher) {
    let mut nat = nat();
    let inbound = ipv4(
        initiator(PROBE),
        SocketAddrV4::new(GLOBAL, 1701),
        &data(1 + PROBE as u16),
    );
    assert_eq!(inbound.len(), 60);
    let expected = Verdict::ToLan {
        endpoint: *endpoint(PROBE).ip(),
    };
    assert_eq!(nat.from_public(NOW, &mut inbound.clone()), expected);
    rewrite(bencher, inbound, |p| nat.from_public(NOW, p));
}

/// Endpoint to the initiator: the source becomes the global address.
#[divan::bench]
fn from_lan(bencher: Bencher) {
    let mut nat = nat();
    let outbound = ipv4(
        endpoint(PROBE),
        initiator(PROBE),
        &data(1 + (PROBE % 60_000) as u16),
    );
    assert_eq!(nat.from_lan(NOW, &mut outbound.clone()), Verdict::ToPublic);
    rewrite(bencher, outbound, |p| nat.from_lan(NOW, p));
}

/// A packet from an address with no entry: looked up and dropped (the NAT is no open relay).
#[divan::bench]
fn from_public_no_entry(bencher: Bencher) {
    let mut nat = nat();
    let stray = ipv4(
        SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 9), 1701),
        SocketAddrV4::new(GLOBAL, 1701),
        &data(7),
    );
    rewrite(bencher, stray, |p| nat.from_public(NOW, p));
}
