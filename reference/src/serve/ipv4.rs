//! The IPv4/UDP header work the forwarding runners do in place: writing the header in front
//! of a datagram read from a UDP socket, and completing a UDP checksum left to offload.
//! (To be replaced by `l2tp::ip`'s one emitter.)

use std::net::SocketAddrV4;

pub(super) const ETHERNET: usize = 14;
/// IPv4 (20, no options) + UDP (8).
pub(super) const IPV4_UDP: usize = 28;
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
    let Ok(view) = l2tp::ip::Ipv4Udp::new_checked(&packet[..]) else {
        return;
    };
    if view.udp_checksum() == 0 {
        return;
    }
    let header = view.header_len();
    let udp_len = view.udp_len();
    let (src, dst) = (view.src(), view.dst());
    let Some(udp) = packet.get_mut(header..header + udp_len) else {
        return;
    };
    udp[6] = 0;
    udp[7] = 0;
    let pseudo = ones_complement_sum(&src.octets(), 17 + udp_len as u64);
    let sum = ones_complement_sum(&dst.octets(), pseudo);
    let checksum = match !fold(ones_complement_sum(udp, sum)) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&checksum.to_be_bytes());
}

/// The one's-complement sum of `data` as 16-bit big-endian words (an odd last byte padded with
/// zero), added to `sum`; not folded.
fn ones_complement_sum(data: &[u8], mut sum: u64) -> u64 {
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        sum += u64::from(u32::from_be_bytes([word[0], word[1], word[2], word[3]]));
    }
    let rest = words.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    sum + u64::from(u32::from_be_bytes(tail))
}

fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Writes the IPv4 and UDP headers of a datagram from `src` to `dst` into the first 28 bytes
/// of `packet`, whose rest is the UDP payload: byte for byte what
/// [`l2tp::capture::build_ipv4_udp`] builds (identification 0, don't fragment, TTL 64, both
/// checksums), without its copy of the payload. False when the payload is too long for IPv4.
pub(super) fn write_ipv4_udp(packet: &mut [u8], src: SocketAddrV4, dst: SocketAddrV4) -> bool {
    let Ok(total) = u16::try_from(packet.len()) else {
        return false;
    };
    if packet.len() < IPV4_UDP {
        return false;
    }
    let udp_len = total - 20;
    let (ip, segment) = packet.split_at_mut(20);
    ip.copy_from_slice(&[
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[12..16].copy_from_slice(&src.ip().octets());
    ip[16..20].copy_from_slice(&dst.ip().octets());
    let checksum = !fold(ones_complement_sum(ip, 0));
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    segment[0..2].copy_from_slice(&src.port().to_be_bytes());
    segment[2..4].copy_from_slice(&dst.port().to_be_bytes());
    segment[4..6].copy_from_slice(&udp_len.to_be_bytes());
    segment[6..8].copy_from_slice(&[0, 0]);
    // Pseudo-header: source, destination, protocol, UDP length.
    let pseudo = ones_complement_sum(&ip[12..20], 17 + u64::from(udp_len));
    let checksum = match !fold(ones_complement_sum(segment, pseudo)) {
        0 => 0xffff,
        c => c,
    };
    segment[6..8].copy_from_slice(&checksum.to_be_bytes());
    true
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
