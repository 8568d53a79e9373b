//! ICMP echo to the endpoint's own PPP address, answered in user space: the address lives only
//! inside PPP, so no kernel stack would ever see the request.
//!
//! Only what an echo needs: an IPv4 header of at least 20 octets whose checksum holds, not a
//! fragment, protocol ICMP, an Echo Request (type 8, code 0, RFC 792) whose checksum holds.
//! The reply has a 20-octet header (the request's options, e.g. Record Route, are not
//! echoed: RFC 1122 §3.2.2.6 lets a host leave them), TTL 64, and the request's identifier,
//! sequence number and data.

use std::net::Ipv4Addr;

const IPV4_HEADER: usize = 20;
const ICMP_HEADER: usize = 8;
const PROTOCOL_ICMP: u8 = 1;
const ECHO_REQUEST: u8 = 8;
const ECHO_REPLY: u8 = 0;
const TTL: u8 = 64;

/// Why a packet got no echo reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAnswered {
    /// Not a whole IPv4 packet, or a checksum does not hold.
    Malformed(&'static str),
    /// Addressed elsewhere: the endpoint routes nothing.
    NotForUs,
    /// For us, but not an ICMP Echo Request (or a fragment of one).
    NotEcho,
}

/// RFC 1071: the one's complement of the one's complement sum of 16-bit words.
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut words = bytes.chunks_exact(2);
    for word in &mut words {
        sum += u32::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(u16::from_be_bytes([*last, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The reply to an Echo Request sent to `own`, or why there is none.
pub fn echo_reply(packet: &[u8], own: Ipv4Addr) -> Result<Vec<u8>, NotAnswered> {
    let header = packet
        .get(..IPV4_HEADER)
        .ok_or(NotAnswered::Malformed("shorter than an IPv4 header"))?;
    if header[0] >> 4 != 4 {
        return Err(NotAnswered::Malformed("not IPv4"));
    }
    let header_len = usize::from(header[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if header_len < IPV4_HEADER || total_len < header_len || total_len > packet.len() {
        return Err(NotAnswered::Malformed("IPv4 lengths do not fit the packet"));
    }
    let full_header = packet
        .get(..header_len)
        .ok_or(NotAnswered::Malformed("IPv4 header longer than the packet"))?;
    if checksum(full_header) != 0 {
        return Err(NotAnswered::Malformed("IPv4 header checksum"));
    }
    let dst = Ipv4Addr::new(header[16], header[17], header[18], header[19]);
    if dst != own {
        return Err(NotAnswered::NotForUs);
    }
    let fragment = u16::from_be_bytes([header[6], header[7]]) & 0x3fff;
    if header[9] != PROTOCOL_ICMP || fragment != 0 {
        return Err(NotAnswered::NotEcho);
    }
    let icmp = packet
        .get(header_len..total_len)
        .filter(|icmp| icmp.len() >= ICMP_HEADER)
        .ok_or(NotAnswered::Malformed("ICMP shorter than its header"))?;
    if checksum(icmp) != 0 {
        return Err(NotAnswered::Malformed("ICMP checksum"));
    }
    if icmp[0] != ECHO_REQUEST || icmp[1] != 0 {
        return Err(NotAnswered::NotEcho);
    }
    let src = Ipv4Addr::new(header[12], header[13], header[14], header[15]);
    let ident = u16::from_be_bytes([header[4], header[5]]);
    Ok(build_echo(
        ECHO_REPLY,
        own,
        src,
        ident,
        icmp.get(4..).unwrap_or_default(),
    ))
}

/// An IPv4 packet carrying an ICMP echo message of `kind` (8 request, 0 reply), `rest` being
/// the identifier, sequence number and data. Tests build requests with it.
pub fn build_echo(kind: u8, src: Ipv4Addr, dst: Ipv4Addr, ident: u16, rest: &[u8]) -> Vec<u8> {
    let total = IPV4_HEADER + 4 + rest.len();
    // An echo comes from a PPP frame, far below 64 KiB; cap rather than wrap regardless.
    let total_field = u16::try_from(total).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&[0x45, 0]);
    out.extend_from_slice(&total_field.to_be_bytes());
    out.extend_from_slice(&ident.to_be_bytes());
    out.extend_from_slice(&[0, 0, TTL, PROTOCOL_ICMP, 0, 0]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    let header_sum = checksum(&out);
    out[10..12].copy_from_slice(&header_sum.to_be_bytes());
    out.extend_from_slice(&[kind, 0, 0, 0]);
    out.extend_from_slice(rest);
    let icmp_sum = checksum(&out[IPV4_HEADER..]);
    out[IPV4_HEADER + 2..IPV4_HEADER + 4].copy_from_slice(&icmp_sum.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OWN: Ipv4Addr = Ipv4Addr::new(198, 19, 128, 1);
    const PEER: Ipv4Addr = Ipv4Addr::new(198, 19, 128, 2);

    fn request(data: &[u8]) -> Vec<u8> {
        let mut rest = vec![0x12, 0x34, 0x00, 0x07];
        rest.extend_from_slice(data);
        build_echo(ECHO_REQUEST, PEER, OWN, 0xbeef, &rest)
    }

    /// A request as `ping` sends it, checked octet by octet where it matters, and its reply.
    #[test]
    fn answers_an_echo_request_with_a_correct_reply() {
        let req = request(b"abcdefgh");
        // RFC 1071 §3's example: the sum of these words is ddf2, its complement 220d.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
        assert_eq!(checksum(&req[..20]), 0);
        let reply = echo_reply(&req, OWN).unwrap();
        assert_eq!(reply.len(), req.len());
        assert_eq!(&reply[12..16], &OWN.octets());
        assert_eq!(&reply[16..20], &PEER.octets());
        assert_eq!((reply[8], reply[9]), (64, 1));
        assert_eq!(checksum(&reply[..20]), 0, "IPv4 header checksum");
        assert_eq!((reply[20], reply[21]), (ECHO_REPLY, 0));
        assert_eq!(checksum(&reply[20..]), 0, "ICMP checksum");
        assert_eq!(&reply[24..], &req[24..], "identifier, sequence and data");
    }

    #[test]
    fn refuses_what_is_not_an_echo_for_us() {
        let req = request(b"x");
        assert_eq!(
            echo_reply(&req, Ipv4Addr::new(192, 0, 2, 1)),
            Err(NotAnswered::NotForUs)
        );
        let mut bad_sum = req.clone();
        bad_sum[25] ^= 1;
        assert_eq!(
            echo_reply(&bad_sum, OWN),
            Err(NotAnswered::Malformed("ICMP checksum"))
        );
        let reply = echo_reply(&req, OWN).unwrap();
        // A reply sent back to us is no request.
        let mut swapped = reply.clone();
        swapped[12..16].copy_from_slice(&PEER.octets());
        swapped[16..20].copy_from_slice(&OWN.octets());
        swapped[10..12].copy_from_slice(&[0, 0]);
        let sum = checksum(&swapped[..20]);
        swapped[10..12].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(echo_reply(&swapped, OWN), Err(NotAnswered::NotEcho));
        let mut lying = req.clone();
        lying[3] = lying[3].wrapping_add(40);
        assert!(matches!(
            echo_reply(&lying, OWN),
            Err(NotAnswered::Malformed(_))
        ));
        assert!(matches!(
            echo_reply(&req[..10], OWN),
            Err(NotAnswered::Malformed(_))
        ));
    }

    proptest! {
        /// Any bytes: no panic; whatever is answered is a well-formed reply to us.
        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(reply) = echo_reply(&bytes, OWN) {
                prop_assert_eq!(checksum(&reply[..20]), 0);
                prop_assert_eq!(checksum(&reply[20..]), 0);
            }
        }

        #[test]
        fn every_request_is_answered(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let reply = echo_reply(&request(&data), OWN).unwrap();
            prop_assert_eq!(&reply[28..], &data[..]);
        }
    }
}
