use super::*;
use l2tp::capture::build_ipv4_udp;
use l2tp::wire::{AvpRepr, AvpValue, ControlMessage, HeaderRepr, PacketRepr};
use pnet_packet::ipv4::{self, Ipv4Packet};
use pnet_packet::udp::{self, UdpPacket};
use std::borrow::Cow;

const GLOBAL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Tunnel initiator 40 of FIG 2.
const TI: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 40), 1701);
/// Tunnel endpoint devices 170A and 170C on LAN 156.
const TE_A: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 170), 1701);
const TE_C: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 172), 1701);
const NAT_PUBLIC: SocketAddrV4 = SocketAddrV4::new(GLOBAL, 1701);

fn at(secs: f64) -> Instant {
    Instant::from_micros((secs * 1e6) as u64)
}

fn nat() -> Nat {
    Nat::new(NatConfig::new(GLOBAL))
}

fn translating_nat() -> Nat {
    Nat::new(NatConfig {
        translate_tunnel_ids: true,
        ..NatConfig::new(GLOBAL)
    })
}

fn datagram(src: SocketAddrV4, dst: SocketAddrV4, l2tp: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    build_ipv4_udp(src, dst, l2tp, 0x4242, &mut out).unwrap();
    out
}

fn control(
    kind: MessageType,
    tunnel_id: u16,
    ns: u16,
    nr: u16,
    avps: Vec<AvpRepr<'static>>,
) -> Vec<u8> {
    let mut all = vec![AvpRepr::mandatory(AvpValue::MessageType(kind))];
    all.extend(avps);
    ControlMessage {
        header: HeaderRepr::control(tunnel_id, 0, ns, nr),
        avps: all,
    }
    .to_vec(Some(b"tunnel secret"))
    .unwrap()
}

/// SCCRP 106: to the initiator's tunnel ID, assigning the endpoint's.
fn sccrp(initiator_tunnel_id: u16, endpoint_tunnel_id: u16) -> Vec<u8> {
    control(
        MessageType::Sccrp,
        initiator_tunnel_id,
        0,
        1,
        vec![
            AvpRepr::mandatory(AvpValue::ProtocolVersion {
                version: 1,
                revision: 0,
            }),
            AvpRepr::mandatory(AvpValue::FramingCapabilities(3)),
            AvpRepr::mandatory(AvpValue::HostName(Cow::Borrowed(b"te-170c"))),
            AvpRepr::mandatory(AvpValue::AssignedTunnelId(endpoint_tunnel_id)),
        ],
    )
}

fn sccn(endpoint_tunnel_id: u16) -> Vec<u8> {
    control(MessageType::Scccn, endpoint_tunnel_id, 1, 1, vec![])
}

fn zlb(tunnel_id: u16) -> Vec<u8> {
    ControlMessage {
        header: HeaderRepr::control(tunnel_id, 0, 1, 2),
        avps: vec![],
    }
    .to_vec(None)
    .unwrap()
}

fn stop_ccn(tunnel_id: u16, assigned: u16) -> Vec<u8> {
    control(
        MessageType::StopCcn,
        tunnel_id,
        2,
        2,
        vec![
            AvpRepr::mandatory(AvpValue::AssignedTunnelId(assigned)),
            AvpRepr::mandatory(AvpValue::ResultCode {
                result: 1,
                error: None,
                message: None,
            }),
        ],
    )
}

/// A data message padded so that the whole IPv4 packet is 60 bytes.
fn data(tunnel_id: u16) -> Vec<u8> {
    let payload = [0xff, 0x03, 0xc0, 0x21, 0x09, 0x01, 0x00, 0x08, 1, 2, 3, 4]
        .into_iter()
        .cycle()
        .take(24)
        .collect::<Vec<u8>>();
    let packet = PacketRepr::Data {
        header: HeaderRepr::data(tunnel_id, 9),
        payload: &payload,
    };
    let mut buf = vec![0; packet.buffer_len()];
    packet.emit(&mut buf, None).unwrap();
    buf
}

/// A full recompute of both checksums by pnet, independent of the incremental update.
fn assert_checksums(packet: &[u8]) {
    let ip = Ipv4Packet::new(packet).unwrap();
    assert_eq!(
        ipv4::checksum(&ip),
        ip.get_checksum(),
        "IPv4 header checksum"
    );
    let header_len = usize::from(ip.get_header_length()) * 4;
    let segment = UdpPacket::new(&packet[header_len..]).unwrap();
    let expected = match udp::ipv4_checksum(&segment, &ip.get_source(), &ip.get_destination()) {
        0 => 0xffff,
        sum => sum,
    };
    assert_eq!(segment.get_checksum(), expected, "UDP checksum");
}

fn addresses(packet: &[u8]) -> (SocketAddrV4, SocketAddrV4, u8) {
    let view = Ipv4Udp::new_checked(packet).unwrap();
    (view.src_addr(), view.dst_addr(), view.ttl())
}

/// Sends `l2tp` from the LAN and checks the forwarded packet: source = global, port and
/// payload kept, TTL one less, checksums right.
fn lan_to_public(nat: &mut Nat, now: Instant, src: SocketAddrV4, dst: SocketAddrV4, l2tp: &[u8]) {
    let mut packet = datagram(src, dst, l2tp);
    assert_eq!(nat.from_lan(now, &mut packet), Verdict::ToPublic);
    assert_eq!(
        addresses(&packet),
        (SocketAddrV4::new(GLOBAL, src.port()), dst, 63)
    );
    assert_eq!(&packet[28..], l2tp);
    assert_checksums(&packet);
}

/// Sends `l2tp` from the public side to the NAT and checks it reaches `endpoint`.
fn public_to_lan(
    nat: &mut Nat,
    now: Instant,
    src: SocketAddrV4,
    l2tp: &[u8],
    endpoint: SocketAddrV4,
) {
    let mut packet = datagram(src, NAT_PUBLIC, l2tp);
    assert_eq!(
        nat.from_public(now, &mut packet),
        Verdict::ToLan {
            endpoint: *endpoint.ip()
        }
    );
    assert_eq!(addresses(&packet), (src, endpoint, 63));
    assert_eq!(&packet[28..], l2tp);
    assert_checksums(&packet);
}

fn drop_from_lan(nat: &mut Nat, now: Instant, mut packet: Vec<u8>, reason: DropReason) {
    let before = packet.clone();
    assert_eq!(nat.from_lan(now, &mut packet), Verdict::Drop(reason));
    assert_eq!(packet, before, "a dropped packet is not rewritten");
}

fn drop_from_public(nat: &mut Nat, now: Instant, mut packet: Vec<u8>, reason: DropReason) {
    let before = packet.clone();
    assert_eq!(nat.from_public(now, &mut packet), Verdict::Drop(reason));
    assert_eq!(packet, before, "a dropped packet is not rewritten");
}

/// FIG 3 after the master's part: SCCRP 106 → 108, SCCN 110 → 112, ZLB 114 → 116.
fn fig3(nat: &mut Nat, now: Instant) {
    lan_to_public(nat, now, TE_C, TI, &sccrp(1, 2));
    public_to_lan(nat, now, TI, &sccn(2), TE_C);
    lan_to_public(nat, now, TE_C, TI, &zlb(1));
}

#[test]
fn fig3_flow_builds_table1_and_routes_both_ways() {
    let mut nat = nat();
    fig3(&mut nat, at(0.0));
    let entries: Vec<_> = nat.entries().cloned().collect();
    assert_eq!(
        entries,
        [NatEntry {
            far_end: TI,
            local: TE_C,
            initiator_tunnel_id: 1,
            endpoint_tunnel_id: 2,
            public_tunnel_id: 2,
            created: at(0.0),
            last_seen: at(0.0),
            stopping_since: None,
        }]
    );
    // The call's data, both ways.
    public_to_lan(&mut nat, at(1.0), TI, &data(2), TE_C);
    lan_to_public(&mut nat, at(1.0), TE_C, TI, &data(1));
    let stats = nat.stats();
    assert_eq!(
        (stats.lan_in, stats.to_public, stats.public_in, stats.to_lan),
        (3, 3, 2, 2)
    );
    assert_eq!((stats.entries, stats.entries_created), (1, 1));
    assert_eq!(stats.lan_drops.total() + stats.public_drops.total(), 0);
}

#[test]
fn destination_port_becomes_the_endpoints() {
    let mut nat = nat();
    let te = SocketAddrV4::new(*TE_C.ip(), 40000);
    lan_to_public(&mut nat, at(0.0), te, TI, &sccrp(1, 2));
    // The initiator sends to global:1701, the address it first dialled: the entry's port
    // goes in with the endpoint's address.
    let mut packet = datagram(TI, NAT_PUBLIC, &sccn(2));
    assert!(matches!(
        nat.from_public(at(0.0), &mut packet),
        Verdict::ToLan { .. }
    ));
    assert_eq!(addresses(&packet).1, te);
    assert_checksums(&packet);
}

#[test]
fn one_initiator_with_tunnels_on_two_endpoints() {
    let mut nat = nat();
    // Same initiator address and port, its tunnels 1 and 5; endpoint IDs 2 and 7 (unique
    // cluster-wide).
    lan_to_public(&mut nat, at(0.0), TE_C, TI, &sccrp(1, 2));
    lan_to_public(&mut nat, at(0.0), TE_A, TI, &sccrp(5, 7));
    assert_eq!(nat.entries().count(), 2);
    for _ in 0..2 {
        public_to_lan(&mut nat, at(1.0), TI, &sccn(2), TE_C);
        public_to_lan(&mut nat, at(1.0), TI, &sccn(7), TE_A);
        public_to_lan(&mut nat, at(1.0), TI, &data(7), TE_A);
        public_to_lan(&mut nat, at(1.0), TI, &data(2), TE_C);
        lan_to_public(&mut nat, at(1.0), TE_C, TI, &data(1));
        lan_to_public(&mut nat, at(1.0), TE_A, TI, &data(5));
    }
    // Each endpoint only speaks for its own tunnel.
    drop_from_lan(
        &mut nat,
        at(1.0),
        datagram(TE_A, TI, &data(1)),
        DropReason::NoEntry,
    );
    drop_from_lan(
        &mut nat,
        at(1.0),
        datagram(TE_C, TI, &data(5)),
        DropReason::NoEntry,
    );
}

#[test]
fn same_initiator_tunnel_id_on_two_endpoints() {
    // Two initiators behind one address and port cannot happen, but one initiator reusing
    // its ID towards two endpoints must still route: the LAN key has the local end.
    let mut nat = nat();
    lan_to_public(&mut nat, at(0.0), TE_C, TI, &sccrp(1, 2));
    lan_to_public(&mut nat, at(0.0), TE_A, TI, &sccrp(1, 7));
    assert_eq!(nat.entries().count(), 2);
    lan_to_public(&mut nat, at(0.0), TE_A, TI, &data(1));
    lan_to_public(&mut nat, at(0.0), TE_C, TI, &data(1));
    public_to_lan(&mut nat, at(0.0), TI, &data(7), TE_A);
    public_to_lan(&mut nat, at(0.0), TI, &data(2), TE_C);
}

#[test]
fn retransmitted_sccrp_makes_no_second_entry() {
    let mut nat = nat();
    lan_to_public(&mut nat, at(0.0), TE_C, TI, &sccrp(1, 2));
    lan_to_public(&mut nat, at(1.0), TE_C, TI, &sccrp(1, 2));
    lan_to_public(&mut nat, at(3.0), TE_C, TI, &sccrp(1, 2));
    assert_eq!(nat.entries().count(), 1);
    let stats = nat.stats();
    assert_eq!((stats.entries_created, stats.sccrp_retransmits), (1, 2));
    assert_eq!(nat.entries().next().unwrap().last_seen, at(3.0));
    public_to_lan(&mut nat, at(3.0), TI, &sccn(2), TE_C);
}

#[test]
fn without_translation_another_endpoints_sccrp_replaces_the_entry() {
    let mut nat = nat();
    lan_to_public(&mut nat, at(0.0), TE_C, TI, &sccrp(1, 2));
    // Endpoint A now holds ID 2 towards the same far end (C's tunnel is long gone).
    lan_to_public(&mut nat, at(5.0), TE_A, TI, &sccrp(3, 2));
    assert_eq!(nat.entries().count(), 1);
    assert_eq!(nat.stats().entries_replaced, 1);
    assert_eq!(nat.stats().entries_translated, 0);
    public_to_lan(&mut nat, at(5.0), TI, &data(2), TE_A);
    drop_from_lan(
        &mut nat,
        at(5.0),
        datagram(TE_C, TI, &data(1)),
        DropReason::NoEntry,
    );
}

#[test]
fn a_newer_sccrp_replaces_a_stale_entry() {
    let mut nat = nat();
    lan_to_public(&mut nat, at(0.0), TE_C, TI, &sccrp(1, 2));
    // Endpoint C gives ID 2 to the same far end again (its first tunnel there is gone).
    lan_to_public(&mut nat, at(5.0), TE_C, TI, &sccrp(3, 2));
    assert_eq!(nat.entries().count(), 1);
    assert_eq!(nat.stats().entries_replaced, 1);
    lan_to_public(&mut nat, at(5.0), TE_C, TI, &data(3));
    drop_from_lan(
        &mut nat,
        at(5.0),
        datagram(TE_C, TI, &data(1)),
        DropReason::NoEntry,
    );
    // The initiator's ID answered anew by the same endpoint replaces its entry too.
    lan_to_public(&mut nat, at(6.0), TE_C, TI, &sccrp(3, 4));
    assert_eq!(nat.entries().count(), 1);
    assert_eq!(nat.stats().entries_replaced, 2);
    public_to_lan(&mut nat, at(6.0), TI, &data(4), TE_C);
    // The old entries' timers find the new entry and leave it alone.
    nat.handle_timeout(at(180.0));
    assert_eq!(nat.entries().count(), 1);
    nat.handle_timeout(at(186.0));
    assert_eq!(nat.entries().count(), 0);
}

/// Forwards `l2tp` from the LAN and returns the L2TP message as it left, checksums checked.
fn lan_out(nat: &mut Nat, now: Instant, src: SocketAddrV4, l2tp: &[u8]) -> Vec<u8> {
    let mut packet = datagram(src, TI, l2tp);
    assert_eq!(nat.from_lan(now, &mut packet), Verdict::ToPublic);
    assert_checksums(&packet);
    packet[28..].to_vec()
}

/// Forwards `l2tp` from the initiator and returns where it went and the message as it left.
fn public_in(nat: &mut Nat, now: Instant, l2tp: &[u8]) -> (SocketAddrV4, Vec<u8>) {
    let mut packet = datagram(TI, NAT_PUBLIC, l2tp);
    assert!(matches!(
        nat.from_public(now, &mut packet),
        Verdict::ToLan { .. }
    ));
    assert_checksums(&packet);
    (addresses(&packet).1, packet[28..].to_vec())
}

fn assigned(l2tp: &[u8]) -> Option<u16> {
    ip::assigned_tunnel_id_at(l2tp).unwrap().map(|(_, id)| id)
}

#[test]
fn an_id_two_endpoints_give_one_far_end_is_translated() {
    let mut nat = translating_nat();
    lan_to_public(&mut nat, at(0.0), TE_C, TI, &sccrp(1, 2));
    // Endpoint A draws ID 2 as well, for another tunnel of the same initiator socket, while
    // C's tunnel is up: the initiator could not tell the two apart.
    let sent = sccrp(3, 2);
    let out = lan_out(&mut nat, at(1.0), TE_A, &sent);
    let public = assigned(&out).unwrap();
    assert_ne!(public, 2);
    assert_eq!(nat.stats().entries_translated, 1);
    assert_eq!(nat.stats().entries_replaced, 0);
    // Only the Assigned Tunnel ID changed.
    let differing: Vec<usize> = (0..sent.len()).filter(|&i| sent[i] != out[i]).collect();
    assert!(differing.len() <= 2, "{differing:?}");
    // A retransmission of it gets the same public ID; no second entry.
    let again = lan_out(&mut nat, at(2.0), TE_A, &sent);
    assert_eq!(assigned(&again), Some(public));
    assert_eq!(nat.entries().count(), 2);
    // The initiator's packets: ID 2 is C's tunnel, the public one A's, which sees its own ID.
    assert_eq!(public_in(&mut nat, at(2.0), &sccn(2)), (TE_C, sccn(2)));
    assert_eq!(public_in(&mut nat, at(2.0), &data(public)), (TE_A, data(2)));
    assert_eq!(public_in(&mut nat, at(2.0), &sccn(public)), (TE_A, sccn(2)));
    // The endpoints' packets go out with the initiator's IDs, untouched; A's StopCCN names
    // the public ID, C's its own.
    assert_eq!(lan_out(&mut nat, at(3.0), TE_A, &data(3)), data(3));
    assert_eq!(lan_out(&mut nat, at(3.0), TE_C, &data(1)), data(1));
    let stop = lan_out(&mut nat, at(3.0), TE_A, &stop_ccn(3, 2));
    assert_eq!(assigned(&stop), Some(public));
    let stop = lan_out(&mut nat, at(3.0), TE_C, &stop_ccn(1, 2));
    assert_eq!(assigned(&stop), Some(2));
    assert!(
        nat.table().contains(&format!("2>{public}")),
        "{}",
        nat.table()
    );
}

#[test]
fn three_endpoints_drawing_the_same_ids_for_one_far_end_all_route() {
    let endpoints = [
        TE_A,
        TE_C,
        SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 171), 1701),
    ];
    let mut nat = translating_nat();
    let mut public = HashMap::new();
    let mut initiator_id = 0u16;
    for id in 1..=300u16 {
        for te in endpoints {
            initiator_id += 1;
            let out = lan_out(&mut nat, at(0.0), te, &sccrp(initiator_id, id));
            public.insert(assigned(&out).unwrap(), (te, id, initiator_id));
        }
    }
    assert_eq!(public.len(), 900, "every tunnel has a public ID of its own");
    // Two of each three at least; more where a public ID the NAT chose was one an endpoint
    // drew later.
    assert!(nat.stats().entries_translated >= 600);
    for (&outside, &(te, inside, initiator_id)) in &public {
        assert_eq!(
            public_in(&mut nat, at(1.0), &data(outside)),
            (te, data(inside))
        );
        assert_eq!(
            lan_out(&mut nat, at(1.0), te, &data(initiator_id)),
            data(initiator_id)
        );
    }
}

#[test]
fn never_an_open_relay() {
    let mut nat = nat();
    fig3(&mut nat, at(0.0));
    let elsewhere = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 5), 1701);
    // From the LAN: to an address with no entry, L2TP or not.
    drop_from_lan(
        &mut nat,
        at(1.0),
        datagram(TE_C, elsewhere, &data(1)),
        DropReason::NoEntry,
    );
    drop_from_lan(
        &mut nat,
        at(1.0),
        datagram(TE_C, elsewhere, &zlb(1)),
        DropReason::NoEntry,
    );
    let sccrq = control(
        MessageType::Sccrq,
        0,
        0,
        0,
        vec![AvpRepr::mandatory(AvpValue::AssignedTunnelId(9))],
    );
    drop_from_lan(
        &mut nat,
        at(1.0),
        datagram(TE_C, elsewhere, &sccrq),
        DropReason::NoEntry,
    );
    drop_from_lan(
        &mut nat,
        at(1.0),
        datagram(TE_C, elsewhere, b"\x12\x34\x01\x00 dns?"),
        DropReason::NotL2tp,
    );
    // The right far end but another port, or the wrong tunnel ID.
    let other_port = SocketAddrV4::new(*TI.ip(), 1702);
    drop_from_lan(
        &mut nat,
        at(1.0),
        datagram(TE_C, other_port, &data(1)),
        DropReason::NoEntry,
    );
    drop_from_lan(
        &mut nat,
        at(1.0),
        datagram(TE_C, TI, &data(4)),
        DropReason::NoEntry,
    );
    // Another LAN host borrowing the entry's far end.
    drop_from_lan(
        &mut nat,
        at(1.0),
        datagram(TE_A, TI, &data(1)),
        DropReason::NoEntry,
    );
    // To the NAT itself.
    drop_from_lan(
        &mut nat,
        at(1.0),
        datagram(TE_C, NAT_PUBLIC, &sccrp(1, 3)),
        DropReason::NotForUs,
    );

    // From the public side: unknown tunnel, unknown source, not for us, an SCCRQ.
    drop_from_public(
        &mut nat,
        at(1.0),
        datagram(TI, NAT_PUBLIC, &data(3)),
        DropReason::NoEntry,
    );
    drop_from_public(
        &mut nat,
        at(1.0),
        datagram(elsewhere, NAT_PUBLIC, &data(2)),
        DropReason::NoEntry,
    );
    drop_from_public(
        &mut nat,
        at(1.0),
        datagram(other_port, NAT_PUBLIC, &data(2)),
        DropReason::NoEntry,
    );
    drop_from_public(
        &mut nat,
        at(1.0),
        datagram(TI, TE_C, &data(2)),
        DropReason::NotForUs,
    );
    drop_from_public(
        &mut nat,
        at(1.0),
        datagram(TI, NAT_PUBLIC, &sccrq),
        DropReason::NoEntry,
    );

    let stats = nat.stats();
    assert_eq!(stats.lan_drops.no_entry, 6);
    assert_eq!(stats.lan_drops.not_l2tp, 1);
    assert_eq!(stats.lan_drops.not_for_us, 1);
    assert_eq!(stats.lan_drops.total(), 8);
    assert_eq!(stats.public_drops.get(DropReason::NoEntry), 4);
    assert_eq!(stats.public_drops.get(DropReason::NotForUs), 1);
    assert_eq!(stats.public_drops.total(), 5);
    assert_eq!((stats.to_public, stats.to_lan), (2, 1));
    assert_eq!(nat.entries().count(), 1);
}

#[test]
fn damaged_and_unroutable_packets_are_dropped_by_reason() {
    let mut nat = nat();
    fig3(&mut nat, at(0.0));
    let good = datagram(TI, NAT_PUBLIC, &data(2));
    let with = |at: usize, value: u8| {
        let mut packet = good.clone();
        packet[at] = value;
        packet
    };
    let cases = [
        (with(9, 6), DropReason::NotIpv4Udp),
        (with(0, 0x65), DropReason::NotIpv4Udp),
        (with(6, 0x20), DropReason::Fragment),
        (with(3, 0xff), DropReason::Malformed),
        (good[..27].to_vec(), DropReason::Malformed),
        (with(11, good[11] ^ 1), DropReason::BadIpChecksum),
        (
            datagram(TI, NAT_PUBLIC, &[0xc8, 0x03, 0, 0]),
            DropReason::NotL2tp,
        ),
        (datagram(TI, NAT_PUBLIC, &[]), DropReason::NotL2tp),
    ];
    for (packet, reason) in cases {
        drop_from_public(&mut nat, at(1.0), packet.clone(), reason);
        drop_from_lan(&mut nat, at(1.0), packet, reason);
    }
    // TTL: 1 ends here; the checksum is fixed up so that only the TTL is wrong.
    let mut ttl_one = good.clone();
    {
        let mut view = Ipv4Udp::new_checked(&mut ttl_one[..]).unwrap();
        for _ in 0..62 {
            assert!(view.decrement_ttl());
        }
        assert_eq!(view.ttl(), 2);
    }
    let mut two = ttl_one.clone();
    assert!(matches!(
        nat.from_public(at(1.0), &mut two),
        Verdict::ToLan { .. }
    ));
    Ipv4Udp::new_checked(&mut ttl_one[..])
        .unwrap()
        .decrement_ttl();
    drop_from_public(&mut nat, at(1.0), ttl_one, DropReason::TtlExpired);

    // SCCRPs the NAT cannot key.
    let hidden = control(
        MessageType::Sccrp,
        1,
        0,
        1,
        vec![
            AvpRepr::mandatory(AvpValue::RandomVector(Cow::Borrowed(b"0123456789abcdef"))),
            AvpRepr {
                hidden: true,
                ..AvpRepr::mandatory(AvpValue::AssignedTunnelId(5))
            },
        ],
    );
    drop_from_lan(
        &mut nat,
        at(1.0),
        datagram(TE_A, TI, &hidden),
        DropReason::HiddenTunnelId,
    );
    drop_from_lan(
        &mut nat,
        at(1.0),
        datagram(TE_A, TI, &sccrp(1, 0)),
        DropReason::Malformed,
    );
    drop_from_lan(
        &mut nat,
        at(1.0),
        datagram(TE_A, TI, &sccrp(0, 5)),
        DropReason::Malformed,
    );
    let no_id = control(MessageType::Sccrp, 1, 0, 1, vec![]);
    drop_from_lan(
        &mut nat,
        at(1.0),
        datagram(TE_A, TI, &no_id),
        DropReason::NotL2tp,
    );
    assert_eq!(nat.entries().count(), 1);
    let stats = nat.stats();
    assert_eq!(stats.public_drops.total(), 9);
    assert_eq!(stats.lan_drops.total(), 12);
    assert_eq!(stats.public_drops.fragment, 1);
    assert_eq!(stats.public_drops.ttl_expired, 1);
    assert_eq!(stats.lan_drops.hidden_tunnel_id, 1);
}

#[test]
fn stop_ccn_from_the_initiator_removes_the_entry_after_the_hold() {
    let mut nat = nat();
    fig3(&mut nat, at(0.0));
    public_to_lan(&mut nat, at(10.0), TI, &stop_ccn(2, 1), TE_C);
    assert_eq!(nat.entries().next().unwrap().stopping_since, Some(at(10.0)));
    // The hold carries the StopCCN's acknowledgement and retransmissions.
    lan_to_public(&mut nat, at(10.1), TE_C, TI, &zlb(1));
    public_to_lan(&mut nat, at(11.0), TI, &stop_ccn(2, 1), TE_C);
    assert_eq!(nat.poll_timeout(), Some(at(41.0)));
    nat.handle_timeout(at(40.999_999));
    assert_eq!(nat.entries().count(), 1);
    nat.handle_timeout(at(41.0));
    assert_eq!(nat.entries().count(), 0);
    let stats = nat.stats();
    assert_eq!((stats.entries_removed, stats.entries_expired), (1, 0));
    drop_from_public(
        &mut nat,
        at(42.0),
        datagram(TI, NAT_PUBLIC, &data(2)),
        DropReason::NoEntry,
    );
    drop_from_lan(
        &mut nat,
        at(42.0),
        datagram(TE_C, TI, &zlb(1)),
        DropReason::NoEntry,
    );
    // The idle timer armed at the SCCRP fires later and finds nothing.
    assert_eq!(nat.poll_timeout(), Some(at(180.0)));
    nat.handle_timeout(at(180.0));
    assert_eq!(nat.poll_timeout(), None);
}

#[test]
fn stop_ccn_from_the_endpoint_removes_the_entry_after_a_configured_hold() {
    let mut nat = Nat::new(NatConfig {
        stop_hold: Duration::from_secs(2),
        ..NatConfig::new(GLOBAL)
    });
    fig3(&mut nat, at(0.0));
    lan_to_public(&mut nat, at(5.0), TE_C, TI, &stop_ccn(1, 2));
    public_to_lan(&mut nat, at(5.5), TI, &zlb(2), TE_C);
    nat.handle_timeout(at(6.9));
    assert_eq!(nat.entries().count(), 1);
    nat.handle_timeout(at(7.0));
    assert_eq!(nat.entries().count(), 0);
    assert_eq!(nat.stats().entries_removed, 1);
}

#[test]
fn idle_entries_expire_and_traffic_keeps_them() {
    let mut nat = Nat::new(NatConfig {
        entry_timeout: Duration::from_secs(60),
        ..NatConfig::new(GLOBAL)
    });
    fig3(&mut nat, at(0.0));
    // HELLOs every 50 s keep the entry.
    let hello = control(MessageType::Hello, 2, 5, 5, vec![]);
    for t in [50.0, 100.0, 150.0] {
        nat.handle_timeout(at(t - 0.5));
        public_to_lan(&mut nat, at(t), TI, &hello, TE_C);
    }
    // Then silence: driven only by poll_timeout, it goes exactly 60 s after the last one.
    let mut wakeups = 0;
    while let Some(next) = nat.poll_timeout() {
        assert!(next <= at(210.0), "woken at {next}");
        assert_eq!(nat.entries().count(), 1);
        nat.handle_timeout(next);
        wakeups += 1;
    }
    assert!(wakeups <= 4, "{wakeups} wake-ups");
    assert_eq!(nat.entries().count(), 0);
    let stats = nat.stats();
    assert_eq!((stats.entries_expired, stats.entries_removed), (1, 0));
    assert_eq!(stats.entries, 0);
}

#[test]
fn churn_leaves_no_pile_of_stale_timers() {
    // 20 000 tunnels, each set up and stopped within a second: their idle timers (180 s
    // out) would otherwise all stay queued.
    let mut nat = Nat::new(NatConfig {
        stop_hold: Duration::from_millis(500),
        ..NatConfig::new(GLOBAL)
    });
    for i in 0..20_000u32 {
        let now = Instant::from_micros(u64::from(i) * 1000);
        let far = SocketAddrV4::new(Ipv4Addr::from(0xc612_0100 + i), 1701);
        let id = (i % 60_000) as u16 + 1;
        let mut packet = datagram(TE_C, far, &sccrp(1, id));
        assert_eq!(nat.from_lan(now, &mut packet), Verdict::ToPublic);
        let mut packet = datagram(far, NAT_PUBLIC, &stop_ccn(id, 1));
        assert!(matches!(
            nat.from_public(now, &mut packet),
            Verdict::ToLan { .. }
        ));
        nat.handle_timeout(now);
        assert!(nat.timers.len() <= 2 * nat.entries.len() + TIMER_SLACK + 2);
    }
    nat.handle_timeout(at(20.5));
    assert_eq!(nat.entries().count(), 0);
    assert_eq!(nat.stats().entries_removed, 20_000);
    while let Some(next) = nat.poll_timeout() {
        nat.handle_timeout(next);
    }
    assert!(nat.timers.is_empty());
}

#[test]
fn table_full_bounds_the_entries() {
    let mut nat = Nat::new(NatConfig {
        max_entries: 1,
        ..NatConfig::new(GLOBAL)
    });
    lan_to_public(&mut nat, at(0.0), TE_C, TI, &sccrp(1, 2));
    drop_from_lan(
        &mut nat,
        at(0.0),
        datagram(TE_A, TI, &sccrp(5, 7)),
        DropReason::TableFull,
    );
    // A retransmission of the entry that exists still passes.
    lan_to_public(&mut nat, at(0.0), TE_C, TI, &sccrp(1, 2));
    let stats = nat.stats();
    assert_eq!(stats.lan_drops.table_full, 1);
    assert_eq!((stats.entries, stats.entries_limit), (1, 1));
    // Every refusal is counted, the warnings are throttled (one per ten seconds).
    for i in 0..5 {
        drop_from_lan(
            &mut nat,
            at(1.0),
            datagram(TE_A, TI, &sccrp(10 + i, 20 + i)),
            DropReason::TableFull,
        );
    }
    assert_eq!(nat.stats().lan_drops.table_full, 6);
    assert_eq!(nat.full_warning.allow(at(1.0)), None);
    assert_eq!(nat.full_warning.allow(at(10.0)), Some(6));
}

#[test]
fn table_shows_table1_columns() {
    let mut nat = nat();
    fig3(&mut nat, at(0.0));
    let far = SocketAddrV4::new(Ipv4Addr::new(198, 18, 3, 200), 50123);
    lan_to_public(&mut nat, at(2.5), TE_A, far, &sccrp(40000, 65535));
    public_to_lan(&mut nat, at(12.5), far, &stop_ccn(65535, 40000), TE_A);
    assert_eq!(
        nat.table(),
        "\
Local address/port     Far end address/port   Endpoint tunnel  Initiator tunnel        Age  State
198.19.0.170:1701      198.18.3.200:50123               65535             40000      10.0s  stopping
198.19.0.172:1701      198.18.0.40:1701                     2                 1      12.5s  open
"
    );
}

#[test]
fn stats_serialize() {
    let mut nat = nat();
    fig3(&mut nat, at(0.0));
    let json = serde_json::to_value(nat.stats()).unwrap();
    assert_eq!(json["to_public"], 2);
    assert_eq!(json["entries"], 1);
    assert_eq!(json["public_drops"]["no_entry"], 0);
    assert_eq!(
        serde_json::to_value(DropReason::NoEntry).unwrap(),
        "no_entry"
    );
}

#[test]
fn many_tunnels_route_by_key() {
    // 2000 tunnels from 200 initiators over 10 endpoints: every packet finds its own.
    let mut nat = nat();
    let initiator = |i: u16| SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, (i % 200) as u8), 1701);
    let endpoint = |i: u16| SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, (i % 10) as u8 + 1), 1701);
    for i in 0..2000u16 {
        let mut packet = datagram(endpoint(i), initiator(i), &sccrp(i + 1, 10_000 + i));
        assert_eq!(nat.from_lan(at(0.0), &mut packet), Verdict::ToPublic);
    }
    assert_eq!(nat.entries().count(), 2000);
    for i in (0..2000u16).rev() {
        let mut packet = datagram(initiator(i), NAT_PUBLIC, &data(10_000 + i));
        assert_eq!(
            nat.from_public(at(1.0), &mut packet),
            Verdict::ToLan {
                endpoint: *endpoint(i).ip()
            }
        );
        assert_eq!(addresses(&packet).1, endpoint(i));
        let mut packet = datagram(endpoint(i), initiator(i), &data(i + 1));
        assert_eq!(nat.from_lan(at(1.0), &mut packet), Verdict::ToPublic);
    }
}
