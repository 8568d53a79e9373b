//! From a link-layer frame to a UDP datagram: link header, VLAN tags, IPv4, UDP.

use std::net::SocketAddrV4;

use pnet_packet::ethernet::EthernetPacket;
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::{Ipv4Flags, Ipv4Packet};
use pnet_packet::sll::SLLPacket;
use pnet_packet::sll2::SLL2Packet;
use pnet_packet::udp::UdpPacket;
use pnet_packet::vlan::VlanPacket;

use super::{Linktype, RecordKind, UdpDatagram};

const ETHERNET_HEADER: usize = 14;
const VLAN_TAG: usize = 4;
const SLL_HEADER: usize = 16;
const SLL2_HEADER: usize = 20;
const LOOPBACK_HEADER: usize = 4;
const IPV4_MIN_HEADER: usize = 20;
const UDP_HEADER: usize = 8;

/// Classifies one captured frame of the given linktype. Never panics, whatever the bytes.
pub fn decode_frame(linktype: Linktype, frame: &[u8]) -> RecordKind<'_> {
    match linktype {
        Linktype::ETHERNET => match EthernetPacket::new(frame) {
            Some(eth) => by_ethertype(eth.get_ethertype().0, &frame[ETHERNET_HEADER..]),
            None => RecordKind::Other("truncated Ethernet header"),
        },
        // RAW may also hold IPv6; `ipv4` tells by the version nibble.
        Linktype::RAW | Linktype::IPV4 => ipv4(frame),
        // pnet's SLL views leave the 8-byte address out of their minimum size, so they
        // would index past a short frame: the length is checked here first.
        Linktype::LINUX_SLL => match SLLPacket::new(frame) {
            Some(sll) if frame.len() >= SLL_HEADER => {
                by_ethertype(sll.get_protocol().0, &frame[SLL_HEADER..])
            }
            _ => RecordKind::Other("truncated Linux SLL header"),
        },
        Linktype::LINUX_SLL2 => match SLL2Packet::new(frame) {
            Some(sll2) if frame.len() >= SLL2_HEADER => {
                by_ethertype(sll2.get_protocol_type().0, &frame[SLL2_HEADER..])
            }
            _ => RecordKind::Other("truncated Linux SLL2 header"),
        },
        Linktype::NULL | Linktype::LOOP => loopback(frame),
        _ => RecordKind::Other("unsupported linktype"),
    }
}

fn by_ethertype(mut ethertype: u16, mut rest: &[u8]) -> RecordKind<'_> {
    // 802.1Q, 802.1ad (QinQ) and the pre-standard 0x9100 outer tag, any number deep.
    while matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) {
        let Some(tag) = VlanPacket::new(rest) else {
            return RecordKind::Other("truncated VLAN tag");
        };
        ethertype = tag.get_ethertype().0;
        rest = &rest[VLAN_TAG..];
    }
    match ethertype {
        0x0800 => ipv4(rest),
        0x86dd => RecordKind::Other("IPv6"),
        0x0806 => RecordKind::Other("ARP"),
        0x8035 => RecordKind::Other("RARP"),
        0x8863 => RecordKind::Other("PPPoE discovery"),
        0x8864 => RecordKind::Other("PPPoE session"),
        0x8847 | 0x8848 => RecordKind::Other("MPLS"),
        0x888e => RecordKind::Other("EAPOL"),
        0x88cc => RecordKind::Other("LLDP"),
        // On Ethernet a value up to 1500 is an 802.3 length, not a type.
        0..=1500 => RecordKind::Other("802.3 LLC"),
        _ => RecordKind::Other("non-IP ethertype"),
    }
}

/// The family word is in the capturing host's byte order for NULL and big-endian for LOOP,
/// and files travel between hosts, so both orders are accepted for both.
fn loopback(frame: &[u8]) -> RecordKind<'_> {
    let Some(family) = frame.get(..LOOPBACK_HEADER) else {
        return RecordKind::Other("truncated loopback header");
    };
    let family = [family[0], family[1], family[2], family[3]];
    let family = u32::from_le_bytes(family).min(u32::from_be_bytes(family));
    match family {
        2 => ipv4(&frame[LOOPBACK_HEADER..]),
        // AF_INET6 on Linux, the BSDs and macOS differ.
        10 | 24 | 28 | 30 => RecordKind::Other("IPv6"),
        _ => RecordKind::Other("non-IP loopback family"),
    }
}

fn ipv4(ip: &[u8]) -> RecordKind<'_> {
    match ip.first().map(|b| b >> 4) {
        Some(4) => {}
        Some(6) => return RecordKind::Other("IPv6"),
        Some(_) => return RecordKind::Other("not IPv4"),
        None => return RecordKind::Other("truncated IPv4 header"),
    }
    let Some(header) = Ipv4Packet::new(ip) else {
        return RecordKind::Other("truncated IPv4 header");
    };
    let header_len = usize::from(header.get_header_length()) * 4;
    if header_len < IPV4_MIN_HEADER {
        return RecordKind::Other("IPv4 header length below 20");
    }
    let total_len = usize::from(header.get_total_length());
    if total_len < header_len {
        return RecordKind::Other("IPv4 total length below header length");
    }
    if total_len > ip.len() {
        // Cut by the snaplen: the datagram is not all there.
        return RecordKind::Other("truncated IPv4");
    }
    let protocol = header.get_next_level_protocol();
    if protocol != IpNextHeaderProtocols::Udp {
        return RecordKind::Other(ip_protocol_name(protocol.0));
    }

    let src = header.get_source();
    let dst = header.get_destination();
    let more_fragments = header.get_flags() & Ipv4Flags::MoreFragments != 0;
    let offset = header.get_fragment_offset();
    if more_fragments || offset != 0 {
        return RecordKind::Fragment {
            src,
            dst,
            id: header.get_identification(),
            offset: offset * 8,
            more_fragments,
        };
    }

    // Bytes past the total length are link padding (Ethernet minimum frame), not UDP.
    let segment = &ip[header_len..total_len];
    let Some(udp) = UdpPacket::new(segment) else {
        return RecordKind::Other("truncated UDP header");
    };
    let udp_len = usize::from(udp.get_length());
    if udp_len < UDP_HEADER {
        return RecordKind::Other("UDP length below 8");
    }
    if udp_len > segment.len() {
        return RecordKind::Other("UDP length beyond IPv4 payload");
    }
    RecordKind::Udp(UdpDatagram {
        src: SocketAddrV4::new(src, udp.get_source()),
        dst: SocketAddrV4::new(dst, udp.get_destination()),
        payload: &segment[UDP_HEADER..udp_len],
    })
}

fn ip_protocol_name(protocol: u8) -> &'static str {
    match protocol {
        1 => "ICMP",
        2 => "IGMP",
        4 => "IP in IP",
        6 => "TCP",
        41 => "IPv6 in IPv4",
        47 => "GRE",
        50 => "ESP",
        51 => "AH",
        89 => "OSPF",
        103 => "PIM",
        112 => "VRRP",
        115 => "L2TPv3 over IP",
        132 => "SCTP",
        _ => "IPv4 protocol other than UDP",
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use proptest::prelude::*;

    use super::super::fixture::udp_frame;
    use super::*;

    const A: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 10), 1701);
    const B: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 40000);

    fn ip(payload: &[u8]) -> Vec<u8> {
        udp_frame(Linktype::RAW, A, B, payload)
    }

    fn ethernet(ethertype: u16, tags: &[u16], network: &[u8]) -> Vec<u8> {
        let mut frame = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        for tpid in tags {
            frame.extend_from_slice(&tpid.to_be_bytes());
            frame.extend_from_slice(&[0x20, 0x0a]); // PCP 1, VLAN 10
        }
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame.extend_from_slice(network);
        frame
    }

    fn udp(payload: &[u8]) -> RecordKind<'_> {
        RecordKind::Udp(UdpDatagram {
            src: A,
            dst: B,
            payload,
        })
    }

    #[test]
    fn udp_on_every_linktype() {
        for linktype in Linktype::SUPPORTED {
            let frame = udp_frame(linktype, A, B, b"payload");
            assert_eq!(
                decode_frame(linktype, &frame),
                udp(b"payload"),
                "{linktype}"
            );
        }
    }

    #[test]
    fn fragments_are_reported_not_read_as_udp() {
        let mut first = ip(&[0x11; 40]);
        first[6] = 0x20; // MF, offset 0
        first[4..6].copy_from_slice(&0xbeefu16.to_be_bytes());
        assert_eq!(
            decode_frame(Linktype::RAW, &first),
            RecordKind::Fragment {
                src: *A.ip(),
                dst: *B.ip(),
                id: 0xbeef,
                offset: 0,
                more_fragments: true,
            }
        );
        let mut later = ip(&[0x11; 40]);
        later[6..8].copy_from_slice(&185u16.to_be_bytes()); // offset 185 * 8, last
        assert_eq!(
            decode_frame(Linktype::RAW, &later),
            RecordKind::Fragment {
                src: *A.ip(),
                dst: *B.ip(),
                id: 7,
                offset: 1480,
                more_fragments: false,
            }
        );
        let mut middle = ip(&[0x11; 40]);
        middle[6..8].copy_from_slice(&(0x2000u16 | 8191).to_be_bytes());
        assert!(matches!(
            decode_frame(Linktype::RAW, &middle),
            RecordKind::Fragment {
                offset: 65528,
                more_fragments: true,
                ..
            }
        ));
    }

    #[test]
    fn other_protocols_are_named() {
        let mut tcp = ip(&[0; 20]);
        tcp[9] = 6;
        assert_eq!(decode_frame(Linktype::RAW, &tcp), RecordKind::Other("TCP"));
        let mut l2tpv3 = ip(&[0; 20]);
        l2tpv3[9] = 115;
        assert_eq!(
            decode_frame(Linktype::IPV4, &l2tpv3),
            RecordKind::Other("L2TPv3 over IP")
        );
        let ipv6 = [0x60, 0, 0, 0, 0, 8, 17, 64];
        assert_eq!(
            decode_frame(Linktype::RAW, &ipv6),
            RecordKind::Other("IPv6")
        );
        assert_eq!(
            decode_frame(Linktype::ETHERNET, &ethernet(0x86dd, &[], &ipv6)),
            RecordKind::Other("IPv6")
        );
        assert_eq!(
            decode_frame(Linktype::ETHERNET, &ethernet(0x0806, &[], &[0; 28])),
            RecordKind::Other("ARP")
        );
        assert_eq!(
            decode_frame(Linktype::ETHERNET, &ethernet(0x0026, &[], &[0; 38])),
            RecordKind::Other("802.3 LLC")
        );
        assert_eq!(
            decode_frame(Linktype::NULL, &[24, 0, 0, 0, 0x60]),
            RecordKind::Other("IPv6")
        );
        assert_eq!(
            decode_frame(Linktype::LOOP, &[0, 0, 0, 7]),
            RecordKind::Other("non-IP loopback family")
        );
        assert_eq!(
            decode_frame(Linktype::IPV4, &ipv6),
            RecordKind::Other("IPv6")
        );
    }

    #[test]
    fn vlan_tags_are_skipped() {
        let packet = ip(b"tagged");
        for tags in [&[0x8100][..], &[0x88a8, 0x8100], &[0x9100, 0x8100, 0x8100]] {
            let frame = ethernet(0x0800, tags, &packet);
            assert_eq!(
                decode_frame(Linktype::ETHERNET, &frame),
                udp(b"tagged"),
                "{tags:x?}"
            );
        }
        let cut = ethernet(0x0800, &[0x8100], &[])[..16].to_vec();
        assert_eq!(
            decode_frame(Linktype::ETHERNET, &cut),
            RecordKind::Other("truncated VLAN tag")
        );
        let mut sll = udp_frame(Linktype::LINUX_SLL, A, B, b"");
        sll.splice(14..16, [0x81, 0x00, 0x00, 0x0a, 0x08, 0x00]);
        assert_eq!(decode_frame(Linktype::LINUX_SLL, &sll), udp(b""));
    }

    #[test]
    fn lengths_come_from_the_headers_not_the_frame() {
        // Ethernet pads short frames to 60 bytes; the padding is not payload.
        let mut padded = udp_frame(Linktype::ETHERNET, A, B, b"hi");
        padded.resize(60, 0xee);
        assert_eq!(decode_frame(Linktype::ETHERNET, &padded), udp(b"hi"));

        // A UDP length shorter than the IPv4 payload wins too.
        let mut short_udp = ip(b"abcdef");
        short_udp[24..26].copy_from_slice(&10u16.to_be_bytes());
        assert_eq!(decode_frame(Linktype::RAW, &short_udp), udp(b"ab"));

        let snapped = ip(&[0; 100]);
        assert_eq!(
            decode_frame(Linktype::RAW, &snapped[..64]),
            RecordKind::Other("truncated IPv4")
        );
        let mut long_udp = ip(b"abcdef");
        long_udp[24..26].copy_from_slice(&15u16.to_be_bytes());
        assert_eq!(
            decode_frame(Linktype::RAW, &long_udp),
            RecordKind::Other("UDP length beyond IPv4 payload")
        );
        let mut tiny_udp = ip(b"abcdef");
        tiny_udp[24..26].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(
            decode_frame(Linktype::RAW, &tiny_udp),
            RecordKind::Other("UDP length below 8")
        );
        let mut no_udp = ip(b"");
        no_udp[2..4].copy_from_slice(&24u16.to_be_bytes());
        assert_eq!(
            decode_frame(Linktype::RAW, &no_udp),
            RecordKind::Other("truncated UDP header")
        );
        let mut ihl = ip(b"");
        ihl[0] = 0x44;
        assert_eq!(
            decode_frame(Linktype::RAW, &ihl),
            RecordKind::Other("IPv4 header length below 20")
        );
        let mut total = ip(b"");
        total[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            decode_frame(Linktype::RAW, &total),
            RecordKind::Other("IPv4 total length below header length")
        );
        // Options: the UDP header starts after them.
        let mut options = ip(b"opt");
        options[0] = 0x46;
        options.splice(20..20, [1, 1, 1, 0]);
        let total_len = options.len() as u16;
        options[2..4].copy_from_slice(&total_len.to_be_bytes());
        assert_eq!(decode_frame(Linktype::RAW, &options), udp(b"opt"));
    }

    #[test]
    fn every_prefix_of_every_linktype_is_safe() {
        for linktype in Linktype::SUPPORTED {
            let frame = udp_frame(linktype, A, B, b"xyz");
            for cut in 0..frame.len() {
                assert!(
                    !matches!(decode_frame(linktype, &frame[..cut]), RecordKind::Udp(_)),
                    "{linktype} cut at {cut}"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn random_frames_never_panic(
            linktype in prop::sample::select(&Linktype::SUPPORTED[..]),
            frame in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            if let RecordKind::Udp(udp) = decode_frame(linktype, &frame) {
                prop_assert!(udp.payload.len() < frame.len());
            }
        }
    }
}
