//! The IPv4/UDP header work the forwarding runners do in place: writing the header in front
//! of a datagram read from a UDP socket, and completing a UDP checksum left to offload.
//! Both are `l2tp::ip`'s one emitter and checksum code.

use std::net::SocketAddrV4;

use l2tp::ip::{Ipv4Udp, Ipv4UdpRepr};

pub(super) const ETHERNET: usize = 14;
/// IPv4 (20, no options) + UDP (8).
pub(super) const IPV4_UDP: usize = Ipv4UdpRepr::HEADER_LEN;
/// Largest UDP payload in an IPv4 packet.
pub(super) const MAX_PAYLOAD: usize = 65_535 - IPV4_UDP;

/// The IPv4 Total Length of `packet`, at most its length (an Ethernet pad is not sent on).
pub(super) fn total_len(packet: &[u8]) -> usize {
    packet
        .get(2..4)
        .map_or(packet.len(), |b| {
            usize::from(u16::from_be_bytes([b[0], b[1]]))
        })
        .min(packet.len())
}

/// veth hands tapped packets over with the UDP checksum only partly computed (checksum
/// offload); the NAT's incremental update needs a complete one, so it is recomputed here.
pub(super) fn complete_udp_checksum(packet: &mut [u8]) {
    if let Ok(mut view) = Ipv4Udp::new_checked(&mut packet[..]) {
        view.fill_udp_checksum();
    }
}

/// Writes the IPv4 and UDP headers of a datagram from `src` to `dst` into the first 28 bytes
/// of `packet`, whose rest is the UDP payload (no copy of it). False when the packet is
/// shorter than the headers or the payload too long for IPv4.
pub(super) fn write_ipv4_udp(packet: &mut [u8], src: SocketAddrV4, dst: SocketAddrV4) -> bool {
    let Some(payload_len) = packet.len().checked_sub(IPV4_UDP) else {
        return false;
    };
    Ipv4UdpRepr::new(src, dst, payload_len).emit(packet).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use l2tp::capture::build_ipv4_udp;

    #[test]
    fn headers_written_in_place_match_build_ipv4_udp() {
        let src: SocketAddrV4 = "198.18.1.1:40000".parse().unwrap();
        let dst: SocketAddrV4 = "198.18.0.2:1701".parse().unwrap();
        for len in (0..70).chain([1399, 1400, 1472]) {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut expected = Vec::new();
            build_ipv4_udp(src, dst, &payload, 0, &mut expected).unwrap();
            let mut packet = vec![0xaa; IPV4_UDP];
            packet.extend_from_slice(&payload);
            assert!(write_ipv4_udp(&mut packet, src, dst));
            assert_eq!(packet, expected, "payload of {len} bytes");
        }
        let mut too_long = vec![0; 65_536];
        assert!(!write_ipv4_udp(&mut too_long, src, dst));
    }

    #[test]
    fn a_partial_udp_checksum_is_completed() {
        let src: SocketAddrV4 = "198.19.0.11:1701".parse().unwrap();
        let dst: SocketAddrV4 = "198.18.1.1:40000".parse().unwrap();
        for len in [0, 1, 2, 3, 31, 32, 33, 1400] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 13 + 1) as u8).collect();
            let mut expected = Vec::new();
            build_ipv4_udp(src, dst, &payload, 0, &mut expected).unwrap();
            let mut packet = expected.clone();
            // What checksum offload leaves: some partial sum, not zero.
            packet[26] = 0x12;
            packet[27] = 0x34;
            complete_udp_checksum(&mut packet);
            assert_eq!(packet, expected, "payload of {len} bytes");
        }
    }

    #[test]
    fn total_len_is_bounded_by_the_buffer() {
        let mut packet = vec![0u8; 40];
        packet[2..4].copy_from_slice(&30u16.to_be_bytes());
        assert_eq!(total_len(&packet), 30);
        packet[2..4].copy_from_slice(&60u16.to_be_bytes());
        assert_eq!(total_len(&packet), 40);
        assert_eq!(total_len(&[0x45]), 1);
    }
}
