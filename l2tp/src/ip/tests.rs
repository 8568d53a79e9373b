use super::checksum::update;
use super::*;
use crate::capture::build_ipv4_udp;
use crate::malformed::{BadValue, Truncated};
use crate::wire::message::ParseOptions;
use crate::wire::{self, MessageType};
use crate::wire::{samples, AvpRepr, AvpValue, ControlMessage, HeaderRepr, PacketRepr};
use pnet_packet::ipv4::{self, Ipv4Packet};
use pnet_packet::udp::{self, UdpPacket};
use proptest::collection::vec;
use proptest::prelude::*;

/// IHL 6 (a Router Alert option), TTL 64, 198.19.0.3:1701 -> 198.18.0.10:1701, a ZLB with
/// Tunnel ID 1, Ns 1, Nr 1. Checksums computed independently (a Python script).
pub(super) const GOLDEN: [u8; 44] = [
    0x46, 0x00, 0x00, 0x2c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x07, 0x56, 0xc6, 0x13, 0x00, 0x03,
    0xc6, 0x12, 0x00, 0x0a, 0x94, 0x04, 0x00, 0x00, 0x06, 0xa5, 0x06, 0xa5, 0x00, 0x14, 0x9e, 0x37,
    0xc8, 0x02, 0x00, 0x0c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01,
];
/// GOLDEN with the source rewritten to 198.18.0.1.
const GOLDEN_SRC_REWRITTEN: [u8; 44] = [
    0x46, 0x00, 0x00, 0x2c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x07, 0x59, 0xc6, 0x12, 0x00, 0x01,
    0xc6, 0x12, 0x00, 0x0a, 0x94, 0x04, 0x00, 0x00, 0x06, 0xa5, 0x06, 0xa5, 0x00, 0x14, 0x9e, 0x3a,
    0xc8, 0x02, 0x00, 0x0c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01,
];
/// ... and the TTL decremented to 63.
const GOLDEN_TTL_63: [u8; 44] = [
    0x46, 0x00, 0x00, 0x2c, 0x12, 0x34, 0x40, 0x00, 0x3f, 0x11, 0x08, 0x59, 0xc6, 0x12, 0x00, 0x01,
    0xc6, 0x12, 0x00, 0x0a, 0x94, 0x04, 0x00, 0x00, 0x06, 0xa5, 0x06, 0xa5, 0x00, 0x14, 0x9e, 0x3a,
    0xc8, 0x02, 0x00, 0x0c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01,
];

/// Full recomputes by pnet, the independent judge: the IPv4 header checksum, and the UDP
/// checksum as it must be sent (0 stays "none", a computed 0 is all ones).
fn assert_checksums(packet: &[u8]) -> core::result::Result<(), TestCaseError> {
    let view = Ipv4Udp::new_checked(packet).unwrap();
    let ip = Ipv4Packet::new(&packet[..view.total_len()]).unwrap();
    prop_assert_eq!(
        ipv4::checksum(&ip),
        view.ipv4_checksum(),
        "IPv4 header checksum"
    );
    prop_assert!(view.ipv4_checksum_ok());
    if view.udp_checksum() != 0 {
        let start = view.header_len();
        let segment = UdpPacket::new(&packet[start..start + view.udp_len()]).unwrap();
        let expected = match udp::ipv4_checksum(&segment, &view.src(), &view.dst()) {
            0 => 0xffff,
            sum => sum,
        };
        prop_assert_eq!(view.udp_checksum(), expected, "UDP checksum");
    }
    prop_assert!(view.udp_checksum_ok());
    Ok(())
}

fn checksums_agree(packet: &[u8]) {
    assert_checksums(packet).unwrap();
}

#[test]
fn golden_accessors() {
    let view = Ipv4Udp::new_checked(&GOLDEN[..]).unwrap();
    assert_eq!(view.header_len(), 24);
    assert_eq!(view.total_len(), 44);
    assert_eq!(view.ttl(), 64);
    assert_eq!(view.src_addr(), "198.19.0.3:1701".parse().unwrap());
    assert_eq!(view.dst_addr(), "198.18.0.10:1701".parse().unwrap());
    assert_eq!(view.udp_len(), 20);
    assert_eq!(view.udp_checksum(), 0x9e37);
    assert_eq!(view.udp_payload(), &GOLDEN[32..]);
    checksums_agree(&GOLDEN);
}

#[test]
fn golden_rewrites() {
    let mut packet = GOLDEN;
    let mut view = Ipv4Udp::new_checked(&mut packet[..]).unwrap();
    view.set_src(Ipv4Addr::new(198, 18, 0, 1));
    assert_eq!(packet, GOLDEN_SRC_REWRITTEN);
    let mut view = Ipv4Udp::new_checked(&mut packet[..]).unwrap();
    assert!(view.decrement_ttl());
    assert_eq!(packet, GOLDEN_TTL_63);
    checksums_agree(&packet);
}

#[test]
fn a_partial_checksum_is_filled_in() {
    // What checksum offload leaves in the field: anything but the real sum (here the
    // pseudo-header's), which the fill replaces with the golden value.
    let mut packet = GOLDEN;
    packet[30..32].copy_from_slice(&[0x12, 0x34]);
    Ipv4Udp::new_checked(&mut packet[..])
        .unwrap()
        .fill_udp_checksum();
    assert_eq!(packet, GOLDEN);
    // No checksum stays none.
    packet[30..32].copy_from_slice(&[0, 0]);
    Ipv4Udp::new_checked(&mut packet[..])
        .unwrap()
        .fill_udp_checksum();
    assert_eq!(&packet[30..32], &[0, 0]);
    checksums_agree(&packet);
}

#[test]
fn rfc1624_example() {
    // RFC 1624 §4: m = 0x5555 becomes 0x3285 under HC = 0xdd2f; eqn. 3 gives 0x0000 where
    // eqn. 2 would give the wrong 0xffff.
    assert_eq!(update(0xdd2f, [0x55, 0x55], [0x32, 0x85]), 0x0000);
}

#[test]
fn built_packets_verify() {
    for len in [0, 1, 2, 3, 60, 1401] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 13 + 1) as u8).collect();
        let mut packet = Vec::new();
        build_ipv4_udp(
            "198.19.0.3:1701".parse().unwrap(),
            "198.18.0.10:40000".parse().unwrap(),
            &payload,
            7,
            &mut packet,
        )
        .unwrap();
        let view = Ipv4Udp::new_checked(&packet[..]).unwrap();
        assert!(view.ipv4_checksum_ok());
        assert!(view.udp_checksum_ok());
        assert_eq!(view.udp_payload(), &payload[..]);
    }
}

#[test]
fn link_padding_and_udp_trailer_are_ignored() {
    // Ethernet pads short frames; some stacks leave bytes between UDP Length and the end of
    // the IPv4 payload. Neither is part of the UDP payload.
    let mut packet = GOLDEN.to_vec();
    packet.extend_from_slice(&[0xee; 6]);
    let view = Ipv4Udp::new_checked(&packet[..]).unwrap();
    assert_eq!(view.udp_payload(), &GOLDEN[32..]);

    let mut short_udp = GOLDEN;
    short_udp[29] = 0x10; // UDP Length 16: the last 4 payload bytes are a trailer
    let view = Ipv4Udp::new_checked(&short_udp[..]).unwrap();
    assert_eq!(view.udp_payload(), &GOLDEN[32..40]);
}

#[test]
fn zero_udp_checksum_stays_zero() {
    let mut packet = GOLDEN;
    packet[30..32].copy_from_slice(&[0, 0]);
    let mut view = Ipv4Udp::new_checked(&mut packet[..]).unwrap();
    view.set_src(Ipv4Addr::new(1, 2, 3, 4));
    view.set_dst(Ipv4Addr::new(5, 6, 7, 8));
    view.set_src_port(9);
    view.set_dst_port(10);
    assert_eq!(view.udp_checksum(), 0);
    checksums_agree(&packet);
}

#[test]
fn every_port_rewrite_agrees_and_computed_zero_is_sent_as_ones() {
    let mut ones = 0;
    for port in 0..=u16::MAX {
        let mut packet = GOLDEN;
        let mut view = Ipv4Udp::new_checked(&mut packet[..]).unwrap();
        view.set_src_port(port);
        if view.udp_checksum() == 0xffff {
            ones += 1;
        }
        assert_ne!(view.udp_checksum(), 0);
        checksums_agree(&packet);
    }
    // Some source port makes the sum all ones, its checksum a computed zero.
    assert!(ones >= 1);
}

#[test]
fn ttl_one_and_zero_are_not_forwarded() {
    for ttl in [0u8, 1] {
        let mut packet = GOLDEN;
        packet[8] = ttl;
        let before = packet;
        let mut view = Ipv4Udp::new_checked(&mut packet[..]).unwrap();
        assert!(!view.decrement_ttl());
        assert_eq!(packet, before);
    }
}

#[test]
fn errors_name_field_and_offset() {
    let with = |at: usize, value: u8| {
        let mut packet = GOLDEN;
        packet[at] = value;
        packet
    };
    let cases: Vec<(Vec<u8>, Error)> = vec![
        (
            vec![],
            Error::Truncated(Truncated {
                field: "IPv4 header",
                offset: 0,
                need: 20,
                have: 0,
            }),
        ),
        (with(0, 0x66).to_vec(), Error::NotIpv4 { version: 6 }),
        (
            GOLDEN[..19].to_vec(),
            Error::Truncated(Truncated {
                field: "IPv4 header",
                offset: 0,
                need: 20,
                have: 19,
            }),
        ),
        (
            with(0, 0x44).to_vec(),
            Error::BadValue(BadValue {
                field: "IHL",
                offset: 0,
                reason: "less than 5 (the 20-octet IPv4 header)",
            }),
        ),
        (
            GOLDEN[..22].to_vec(),
            Error::Truncated(Truncated {
                field: "IPv4 options",
                offset: 20,
                need: 24,
                have: 22,
            }),
        ),
        (
            with(3, 0x17).to_vec(),
            Error::BadValue(BadValue {
                field: "Total Length",
                offset: 2,
                reason: "shorter than the IPv4 header",
            }),
        ),
        (
            GOLDEN[..43].to_vec(),
            Error::Truncated(Truncated {
                field: "Total Length",
                offset: 2,
                need: 44,
                have: 43,
            }),
        ),
        (with(9, 6).to_vec(), Error::NotUdp { protocol: 6 }),
        (
            with(6, 0x20).to_vec(),
            Error::Fragment {
                fragment_offset: 0,
                more_fragments: true,
            },
        ),
        (
            with(7, 0x03).to_vec(),
            Error::Fragment {
                fragment_offset: 24,
                more_fragments: false,
            },
        ),
        (
            with(3, 0x1b).to_vec(),
            Error::Truncated(Truncated {
                field: "UDP header",
                offset: 24,
                need: 32,
                have: 27,
            }),
        ),
        (
            with(29, 7).to_vec(),
            Error::BadValue(BadValue {
                field: "UDP Length",
                offset: 28,
                reason: "less than the 8-octet UDP header",
            }),
        ),
        (
            with(29, 0x15).to_vec(),
            Error::Truncated(Truncated {
                field: "UDP Length",
                offset: 28,
                need: 45,
                have: 44,
            }),
        ),
    ];
    for (bytes, expected) in cases {
        assert_eq!(Ipv4Udp::new_checked(&bytes[..]), Err(expected));
    }
    assert!(Ipv4Udp::new_checked(&with(6, 0x20)[..])
        .unwrap_err()
        .is_fragment());
    assert_eq!(
        Error::NotUdp { protocol: 6 }.to_string(),
        "IPv4 Protocol 6 at byte 9: not UDP"
    );
}

#[test]
fn bad_ipv4_checksum_is_seen() {
    let mut packet = GOLDEN;
    packet[11] ^= 1;
    assert!(!Ipv4Udp::new_checked(&packet[..])
        .unwrap()
        .ipv4_checksum_ok());
    let mut packet = GOLDEN;
    packet[40] ^= 1;
    let view = Ipv4Udp::new_checked(&packet[..]).unwrap();
    assert!(view.ipv4_checksum_ok());
    assert!(!view.udp_checksum_ok());
}

fn emit(packet: &PacketRepr) -> Vec<u8> {
    let mut buf = vec![0; packet.buffer_len()];
    let len = packet.emit(&mut buf, Some(samples::SECRET)).unwrap();
    buf.truncate(len);
    buf
}

#[test]
fn classify_agrees_with_the_codec_on_every_sample() {
    for packet in samples::every_message() {
        let bytes = emit(&packet);
        let class = classify(&bytes).unwrap();
        assert_eq!(class.tunnel_id(), packet.header().tunnel_id);
        assert_eq!(l2tp_tunnel_id(&bytes), Some(packet.header().tunnel_id));
        match &packet {
            PacketRepr::Data { header, .. } => assert_eq!(
                class,
                L2tpClass::Data {
                    tunnel_id: header.tunnel_id
                }
            ),
            PacketRepr::Control(message) => {
                assert_eq!(class.message_type(), message.message_type());
                assert_eq!(
                    is_sccrq(&bytes),
                    message.message_type() == Some(MessageType::Sccrq)
                );
                let assigned = message.avps.iter().find_map(|avp| match avp.value {
                    AvpValue::AssignedTunnelId(id) => Some(id),
                    _ => None,
                });
                match class {
                    L2tpClass::Setup {
                        assigned_tunnel_id, ..
                    } => assert_eq!(Some(assigned_tunnel_id), assigned),
                    L2tpClass::Zlb { .. } => assert!(message.avps.is_empty()),
                    L2tpClass::Control { message_type, .. } => assert!(!matches!(
                        message_type,
                        MessageType::Sccrq | MessageType::Sccrp
                    )),
                    L2tpClass::Data { .. } => panic!("control classified as data"),
                }
            }
        }
    }
}

fn sccrp(avps: Vec<AvpRepr<'static>>) -> Vec<u8> {
    let mut all = vec![AvpRepr::mandatory(AvpValue::MessageType(
        MessageType::Sccrp,
    ))];
    all.extend(avps);
    emit(&PacketRepr::Control(ControlMessage {
        header: HeaderRepr::control(7, 0, 0, 1),
        avps: all,
    }))
}

#[test]
fn classify_sccrp_cases() {
    let bytes = sccrp(vec![
        AvpRepr::mandatory(AvpValue::ProtocolVersion {
            version: 1,
            revision: 0,
        }),
        AvpRepr::mandatory(AvpValue::HostName(b"lns".as_slice().into())),
        AvpRepr::mandatory(AvpValue::AssignedTunnelId(0x4242)),
    ]);
    assert_eq!(
        classify(&bytes),
        Ok(L2tpClass::Setup {
            tunnel_id: 7,
            message_type: MessageType::Sccrp,
            assigned_tunnel_id: 0x4242,
        })
    );
    assert!(!is_sccrq(&bytes));

    assert_eq!(
        classify(&sccrp(vec![AvpRepr::mandatory(AvpValue::HostName(
            b"lns".as_slice().into()
        ))])),
        Err(wire::Error::MissingAvp {
            message: "SCCRP",
            avp: "Assigned Tunnel ID"
        })
    );

    let hidden = sccrp(vec![
        AvpRepr::mandatory(AvpValue::RandomVector(
            b"0123456789abcdef".as_slice().into(),
        )),
        AvpRepr {
            hidden: true,
            ..AvpRepr::mandatory(AvpValue::AssignedTunnelId(5))
        },
    ]);
    // Header 12 + Message Type 8 + Random Vector 22: the hidden AVP starts at byte 42.
    assert!(matches!(
        classify(&hidden),
        Err(wire::Error::Hidden { offset: 42, .. })
    ));

    // An Assigned Tunnel ID AVP whose value is 3 octets long.
    let mut odd = sccrp(vec![AvpRepr::mandatory(AvpValue::AssignedTunnelId(5))]);
    odd.push(0);
    odd[3] += 1; // L2TP Length
    odd[21] += 1; // AVP Length
    assert_eq!(
        classify(&odd),
        Err(wire::Error::BadValue(BadValue {
            field: "Assigned Tunnel ID AVP",
            offset: 20,
            reason: "value must be 2 octets",
        }))
    );
}

#[test]
fn classify_first_avp_must_be_message_type() {
    let bytes = [
        0xc8, 0x02, 0x00, 0x14, 0, 1, 0, 0, 0, 0, 0, 0, 0x80, 0x08, 0, 0, 0, 9, 0, 7,
    ];
    assert_eq!(
        classify(&bytes),
        Err(wire::Error::BadValue(BadValue {
            field: "Message Type AVP",
            offset: 12,
            reason: "the first AVP of a control message must be Message Type",
        }))
    );
    assert!(!is_sccrq(&bytes));
    assert_eq!(l2tp_tunnel_id(&bytes), Some(1));
    assert_eq!(l2tp_tunnel_id(&[0xc8]), None);
    assert_eq!(l2tp_tunnel_id(b"\x01\x01\x00\x00garbage"), None);
}

#[test]
fn classify_treats_reserved_bits_as_unrecognized() {
    // Found by the codec fuzz target: an Assigned Tunnel ID with reserved bits set (§4.1:
    // unrecognized) was routed by while the codec reads it as `Unknown`.
    let mut bytes = sccrp(vec![
        AvpRepr::mandatory(AvpValue::AssignedTunnelId(0x1111)),
        AvpRepr::mandatory(AvpValue::AssignedTunnelId(0x2222)),
    ]);
    // Header 12 + Message Type 8: the first Assigned Tunnel ID starts at byte 20.
    bytes[20] |= 0x2c;
    let parsed = PacketRepr::parse(&bytes, &ParseOptions::default()).unwrap();
    let PacketRepr::Control(message) = parsed else {
        panic!("SCCRP is control");
    };
    assert!(matches!(
        message.avps[1].value,
        AvpValue::Unknown { attr_type: 9, .. }
    ));
    assert_eq!(
        classify(&bytes),
        Ok(L2tpClass::Setup {
            tunnel_id: 7,
            message_type: MessageType::Sccrp,
            assigned_tunnel_id: 0x2222,
        })
    );
    bytes[20] &= !0x2c;
    bytes[28] |= 0x04;
    assert_eq!(
        classify(&bytes),
        Ok(L2tpClass::Setup {
            tunnel_id: 7,
            message_type: MessageType::Sccrp,
            assigned_tunnel_id: 0x1111,
        })
    );
    // A Message Type with reserved bits is no Message Type, for the codec and here.
    bytes[12] |= 0x04;
    assert!(PacketRepr::parse(&bytes, &ParseOptions::default()).is_err());
    assert!(matches!(
        classify(&bytes),
        Err(wire::Error::BadValue(BadValue { offset: 12, .. }))
    ));
    assert!(!is_sccrq(&bytes));
}

#[test]
fn classify_never_reads_past_the_length_field() {
    // A ZLB with a trailing Message Type AVP beyond its Length is still a ZLB.
    let mut bytes = vec![0xc8, 0x02, 0x00, 0x0c, 0, 3, 0, 0, 0, 1, 0, 1];
    bytes.extend_from_slice(&[0x80, 0x08, 0, 0, 0, 0, 0, 1]);
    assert_eq!(classify(&bytes), Ok(L2tpClass::Zlb { tunnel_id: 3 }));
}

#[derive(Debug, Clone)]
enum Rewrite {
    Src(Ipv4Addr),
    Dst(Ipv4Addr),
    SrcPort(u16),
    DstPort(u16),
    Ttl,
}

fn rewrite() -> impl Strategy<Value = Rewrite> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| Rewrite::Src(a.into())),
        any::<[u8; 4]>().prop_map(|a| Rewrite::Dst(a.into())),
        any::<u16>().prop_map(Rewrite::SrcPort),
        any::<u16>().prop_map(Rewrite::DstPort),
        Just(Rewrite::Ttl),
    ]
}

/// A packet built by pnet: any addresses, ports, payload and options, UDP checksum on or
/// off, TTL and identification random.
fn packet() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<([u8; 4], [u8; 4], u16, u16)>(),
        vec(any::<u8>(), 0..300),
        (0usize..=10).prop_flat_map(|words| vec(any::<u8>(), words * 4)),
        any::<(bool, u8, u16)>(),
    )
        .prop_map(
            |((src, dst, sport, dport), payload, options, (udp_sum, ttl, id))| {
                use pnet_packet::ip::IpNextHeaderProtocols;
                use pnet_packet::ipv4::MutableIpv4Packet;
                use pnet_packet::udp::MutableUdpPacket;
                let header_len = 20 + options.len();
                let total = header_len + 8 + payload.len();
                let mut buf = vec![0; total];
                let (head, segment) = buf.split_at_mut(header_len);
                let mut u = MutableUdpPacket::new(segment).unwrap();
                u.set_source(sport);
                u.set_destination(dport);
                u.set_length((8 + payload.len()) as u16);
                u.set_payload(&payload);
                if udp_sum {
                    let sum = udp::ipv4_checksum(&u.to_immutable(), &src.into(), &dst.into());
                    u.set_checksum(if sum == 0 { 0xffff } else { sum });
                }
                let mut ip = MutableIpv4Packet::new(head).unwrap();
                ip.set_version(4);
                ip.set_header_length((header_len / 4) as u8);
                ip.set_total_length(total as u16);
                ip.set_identification(id);
                ip.set_ttl(ttl);
                ip.set_next_level_protocol(IpNextHeaderProtocols::Udp);
                ip.set_source(src.into());
                ip.set_destination(dst.into());
                head[20..].copy_from_slice(&options);
                let ip = Ipv4Packet::new(&buf[..header_len]).unwrap();
                let sum = ipv4::checksum(&ip);
                buf[10..12].copy_from_slice(&sum.to_be_bytes());
                buf
            },
        )
}

/// Calls every accessor and every rewrite; what matters is that nothing panics.
fn exercise(bytes: &mut [u8]) {
    let Ok(mut view) = Ipv4Udp::new_checked(&mut *bytes) else {
        return;
    };
    let _ = (
        view.src_addr(),
        view.dst_addr(),
        view.ttl(),
        view.total_len(),
    );
    let _ = (view.ipv4_checksum_ok(), view.udp_checksum_ok());
    let _ = classify(view.udp_payload());
    let _ = is_sccrq(view.udp_payload());
    view.set_src(Ipv4Addr::new(198, 18, 0, 1));
    view.set_dst(Ipv4Addr::new(198, 19, 0, 3));
    view.set_src_port(1);
    view.set_dst_port(2);
    view.decrement_ttl();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn incremental_checksums_match_full_recompute(
        mut bytes in packet(),
        rewrites in vec(rewrite(), 1..6),
    ) {
        let (payload, src, dst) = {
            let view = Ipv4Udp::new_checked(&bytes[..]).unwrap();
            (view.udp_payload().to_vec(), view.src(), view.dst())
        };
        assert_checksums(&bytes)?;
        let (mut want_src, mut want_dst) = (src, dst);
        for rewrite in &rewrites {
            let mut view = Ipv4Udp::new_checked(&mut bytes[..]).unwrap();
            match *rewrite {
                Rewrite::Src(a) => { view.set_src(a); want_src = a; }
                Rewrite::Dst(a) => { view.set_dst(a); want_dst = a; }
                Rewrite::SrcPort(p) => { view.set_src_port(p); prop_assert_eq!(view.src_port(), p); }
                Rewrite::DstPort(p) => { view.set_dst_port(p); prop_assert_eq!(view.dst_port(), p); }
                Rewrite::Ttl => {
                    let ttl = view.ttl();
                    prop_assert_eq!(view.decrement_ttl(), ttl > 1);
                    prop_assert_eq!(view.ttl(), if ttl > 1 { ttl - 1 } else { ttl });
                }
            }
            assert_checksums(&bytes)?;
        }
        let view = Ipv4Udp::new_checked(&bytes[..]).unwrap();
        prop_assert_eq!(view.src(), want_src);
        prop_assert_eq!(view.dst(), want_dst);
        prop_assert_eq!(view.udp_payload(), &payload[..]);
    }

    #[test]
    fn garbage_never_panics(mut bytes in vec(any::<u8>(), 0..120), ipv4 in any::<bool>()) {
        if ipv4 && !bytes.is_empty() {
            // Half the inputs look like IPv4 with IHL 5 and UDP, to get past the first checks.
            bytes[0] = 0x45;
            if let Some(protocol) = bytes.get_mut(9) {
                *protocol = 17;
            }
        }
        exercise(&mut bytes);
        let _ = classify(&bytes);
        let _ = l2tp_tunnel_id(&bytes);
    }

    #[test]
    fn damaged_packets_never_panic(
        mut bytes in packet(),
        damage in vec((any::<usize>(), any::<u8>()), 1..4),
        cut in any::<usize>(),
    ) {
        for (at, value) in damage {
            let len = bytes.len();
            bytes[at % len] = value;
        }
        exercise(&mut bytes.clone());
        bytes.truncate(cut % (bytes.len() + 1));
        exercise(&mut bytes);
    }

    #[test]
    fn damaged_l2tp_never_panics(
        which in 0usize..32,
        damage in vec((any::<usize>(), any::<u8>()), 0..4),
        cut in any::<usize>(),
    ) {
        let packets = samples::every_message();
        let mut bytes = emit(&packets[which % packets.len()]);
        for (at, value) in damage {
            let len = bytes.len();
            bytes[at % len] = value;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        let class = classify(&bytes);
        if let Ok(class) = class {
            prop_assert_eq!(Some(class.tunnel_id()), l2tp_tunnel_id(&bytes));
        }
        if is_sccrq(&bytes) {
            // An SCCRQ without a readable Assigned Tunnel ID is an error, never a class.
            let sccrq = classify(&bytes).map(|class| class.message_type());
            prop_assert!(sccrq.is_err() || sccrq == Ok(Some(MessageType::Sccrq)));
        }
        // Where the full codec reads the message too, both read the same routing fields.
        let options = ParseOptions { secret: Some(samples::SECRET) };
        if let (Ok(class), Ok(parsed)) = (class, PacketRepr::parse(&bytes, &options)) {
            prop_assert_eq!(class.tunnel_id(), parsed.header().tunnel_id);
            if let PacketRepr::Control(message) = &parsed {
                prop_assert_eq!(class.message_type(), message.message_type());
            }
        }
    }
}

/// An SCCRP in an IPv4 UDP packet, with a Host Name of `host` octets before the Assigned
/// Tunnel ID (an odd length puts its value at an odd offset).
fn sccrp_packet(host: &[u8]) -> Vec<u8> {
    let mut avps = Vec::new();
    if !host.is_empty() {
        avps.push(AvpRepr::mandatory(AvpValue::HostName(host.to_vec().into())));
    }
    avps.push(AvpRepr::mandatory(AvpValue::AssignedTunnelId(0x4242)));
    let mut packet = Vec::new();
    build_ipv4_udp(
        "198.19.0.3:1701".parse().unwrap(),
        "198.18.0.10:1701".parse().unwrap(),
        &sccrp(avps),
        7,
        &mut packet,
    )
    .unwrap();
    packet
}

#[test]
fn tunnel_ids_rewritten_in_place_keep_the_udp_checksum_right() {
    for host in [&b""[..], b"lns", b"lns1"] {
        let mut packet = sccrp_packet(host);
        let mut view = Ipv4Udp::new_checked(&mut packet[..]).unwrap();
        let (at, value) = assigned_tunnel_id_at(view.udp_payload()).unwrap().unwrap();
        assert_eq!(value, 0x4242);
        assert_eq!(at % 2, host.len() % 2, "host {host:?}");
        let header_at = tunnel_id_at(view.udp_payload()).unwrap();
        assert!(view.set_payload_u16(at, 0x1717));
        assert!(view.set_payload_u16(header_at, 0xfffe));
        checksums_agree(&packet);
        let view = Ipv4Udp::new_checked(&packet[..]).unwrap();
        assert_eq!(
            classify(view.udp_payload()),
            Ok(L2tpClass::Setup {
                tunnel_id: 0xfffe,
                message_type: MessageType::Sccrp,
                assigned_tunnel_id: 0x1717,
            })
        );
    }
}

#[test]
fn a_payload_field_past_the_datagram_is_not_written() {
    let mut packet = sccrp_packet(b"lns");
    let before = packet.clone();
    let mut view = Ipv4Udp::new_checked(&mut packet[..]).unwrap();
    let len = view.udp_payload().len();
    assert!(!view.set_payload_u16(len - 1, 1));
    assert!(!view.set_payload_u16(usize::MAX, 1));
    assert!(view.set_payload_u16(
        len - 2,
        u16::from_be_bytes([before[before.len() - 2], before[before.len() - 1]])
    ));
    assert_eq!(packet, before);
}

#[test]
fn assigned_tunnel_id_is_found_in_any_control_message_and_only_there() {
    let stop = emit(&PacketRepr::Control(ControlMessage {
        header: HeaderRepr::control(7, 0, 0, 1),
        avps: vec![
            AvpRepr::mandatory(AvpValue::MessageType(MessageType::StopCcn)),
            AvpRepr::mandatory(AvpValue::AssignedTunnelId(9)),
        ],
    }));
    // Header 12, Message Type 8, the AVP's own header 6.
    assert_eq!(assigned_tunnel_id_at(&stop), Ok(Some((26, 9))));
    let hello = emit(&PacketRepr::Control(ControlMessage {
        header: HeaderRepr::control(7, 0, 0, 1),
        avps: vec![AvpRepr::mandatory(AvpValue::MessageType(
            MessageType::Hello,
        ))],
    }));
    assert_eq!(assigned_tunnel_id_at(&hello), Ok(None));
    let data = emit(&PacketRepr::Data {
        header: HeaderRepr::data(7, 1),
        payload: &[0xff, 0x03],
    });
    assert_eq!(assigned_tunnel_id_at(&data), Ok(None));
    // The codec sends the Length field: the Tunnel ID follows it.
    assert_eq!(tunnel_id_at(&data), Some(4));
    assert_eq!(tunnel_id_at(&[0xc8]), None);
}
