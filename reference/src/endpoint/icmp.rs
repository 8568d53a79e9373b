//! ICMP echo to the endpoint's own PPP address, answered in user space: the address lives only
//! inside PPP, so no kernel stack would ever see the request.
//!
//! Only what an echo needs: an IPv4 header of at least 20 octets whose checksum holds, not a
//! fragment, protocol ICMP, an Echo Request (type 8, code 0, RFC 792) whose checksum holds.
//! The reply has a 20-octet header (the request's options, e.g. Record Route, are not
//! echoed: RFC 1122 §3.2.2.6 lets a host leave them), TTL 64, and the request's identifier,
//! sequence number and data.

use std::net::Ipv4Addr;

pub use l2tp::ip::checksum;
use l2tp::ip::icmp::{EchoKind, IcmpEchoRepr, IcmpError};

/// Why a packet got no echo reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAnswered {
    /// Not a whole IPv4 packet, or a checksum does not hold.
    Malformed(IcmpError),
    /// Addressed elsewhere: the endpoint routes nothing.
    NotForUs,
    /// For us, but not an ICMP Echo Request (or a fragment of one).
    NotEcho,
}

/// The reply to an Echo Request sent to `own`, or why there is none.
pub fn echo_reply(packet: &[u8], own: Ipv4Addr) -> Result<Vec<u8>, NotAnswered> {
    let request = IcmpEchoRepr::parse(packet).map_err(|e| match e {
        IcmpError::Malformed(l2tp::ip::Error::Fragment { .. }) => NotAnswered::NotEcho,
        IcmpError::Malformed(_) => NotAnswered::Malformed(e),
        IcmpError::NotIcmp { .. } | IcmpError::NotEcho { .. } => NotAnswered::NotEcho,
    })?;
    if request.dst != own {
        return Err(NotAnswered::NotForUs);
    }
    if request.kind != EchoKind::Request {
        return Err(NotAnswered::NotEcho);
    }
    let reply = request.reply();
    let mut out = Vec::with_capacity(reply.buffer_len());
    // A request that parsed fits in 64 KiB, and so does its reply (no IPv4 options).
    reply
        .emit_to_vec(&mut out)
        .map_err(|_| NotAnswered::NotEcho)?;
    Ok(out)
}

/// An IPv4 packet carrying an ICMP echo message of `kind` (8 request, 0 reply), `rest` being
/// the identifier, sequence number and data. Tests build requests with it.
pub fn build_echo(kind: u8, src: Ipv4Addr, dst: Ipv4Addr, ident: u16, rest: &[u8]) -> Vec<u8> {
    let word = |at: usize| {
        let bytes = rest.get(at..at + 2).unwrap_or(&[0, 0]);
        u16::from_be_bytes([bytes[0], bytes[1]])
    };
    let repr = IcmpEchoRepr {
        ip_ident: ident,
        kind: if kind == 0 {
            EchoKind::Reply
        } else {
            EchoKind::Request
        },
        ..IcmpEchoRepr::request(
            src,
            dst,
            word(0),
            word(2),
            rest.get(4..).unwrap_or_default(),
        )
    };
    let mut out = Vec::new();
    // Test data, far below 64 KiB.
    let _ = repr.emit_to_vec(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ECHO_REQUEST: u8 = 8;
    const ECHO_REPLY: u8 = 0;
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
        assert!(matches!(
            echo_reply(&bad_sum, OWN),
            Err(NotAnswered::Malformed(_))
        ));
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
