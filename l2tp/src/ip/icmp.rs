//! ICMP Echo and Echo Reply (RFC 792) in one whole IPv4 packet: what a subscriber pings its
//! peer with inside PPP, and what a host answers. Parsed into [`IcmpEchoRepr`] (both
//! checksums verified), emitted with a 20-octet IPv4 header.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |     IPv4 header (Protocol 1), 4 * IHL octets ...              |
//! |     Type      |     Code      |          Checksum             |
//! |           Identifier          |        Sequence Number        |
//! |     Data ...
//! ```

use std::net::Ipv4Addr;

use super::checksum::sum_words;
use super::{check_ipv4, check_unfragmented, field, EmitError, Error, Ipv4Header};
use crate::malformed::{BadValue, Truncated};

/// IPv4 Protocol number of ICMP.
pub const PROTOCOL_ICMP: u8 = 1;
/// Octets of the ICMP echo header: type, code, checksum, identifier, sequence number.
pub const ECHO_HEADER_LEN: usize = 8;
const ECHO_REPLY: u8 = 0;
const ECHO_REQUEST: u8 = 8;

/// Echo Request (type 8) or Echo Reply (type 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoKind {
    Request,
    Reply,
}

/// Why bytes are not one ICMP echo message in IPv4.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IcmpError {
    /// The IPv4 header does not read, a checksum does not verify, or a fragment.
    #[error(transparent)]
    Malformed(Error),
    #[error("IPv4 Protocol {protocol} at byte 9: not ICMP")]
    NotIcmp { protocol: u8 },
    #[error("ICMP type {kind} code {code}: not an echo message")]
    NotEcho { kind: u8, code: u8 },
}

/// One ICMP echo message and the IPv4 fields around it that matter to a pinger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpEchoRepr<'a> {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// The IPv4 Identification.
    pub ip_ident: u16,
    pub ttl: u8,
    pub kind: EchoKind,
    pub identifier: u16,
    pub sequence: u16,
    pub data: &'a [u8],
}

fn bad_checksum(field: &'static str, offset: usize) -> IcmpError {
    IcmpError::Malformed(Error::BadValue(BadValue {
        field,
        offset,
        reason: "does not verify",
    }))
}

impl<'a> IcmpEchoRepr<'a> {
    /// Octets of the IPv4 and echo headers this emits in front of the data.
    pub const HEADER_LEN: usize = field::MIN_HEADER + ECHO_HEADER_LEN;
    /// Linux's default TTL.
    pub const DEFAULT_TTL: u8 = 64;

    /// Reads one whole IPv4 packet (link padding past its Total Length is ignored): header and
    /// ICMP checksums must verify, no fragment, Protocol ICMP, type 0 or 8 with code 0.
    pub fn parse(packet: &'a [u8]) -> Result<IcmpEchoRepr<'a>, IcmpError> {
        let (header_len, total_len) = check_ipv4(packet).map_err(IcmpError::Malformed)?;
        // The check made `packet` at least `total_len` ≥ `header_len` ≥ 20 long.
        let header = &packet[..header_len];
        // Summing a right header (message) with its checksum gives all ones.
        if sum_words(0, header) != 0xffff {
            return Err(bad_checksum("IPv4 header checksum", field::CHECKSUM.start));
        }
        let protocol = header[field::PROTOCOL];
        if protocol != PROTOCOL_ICMP {
            return Err(IcmpError::NotIcmp { protocol });
        }
        check_unfragmented(packet).map_err(IcmpError::Malformed)?;
        let icmp = &packet[header_len..total_len];
        if icmp.len() < ECHO_HEADER_LEN {
            return Err(IcmpError::Malformed(Error::Truncated(Truncated {
                field: "ICMP header",
                offset: header_len,
                need: header_len + ECHO_HEADER_LEN,
                have: total_len,
            })));
        }
        if sum_words(0, icmp) != 0xffff {
            return Err(bad_checksum("ICMP checksum", header_len + 2));
        }
        let kind = match (icmp[0], icmp[1]) {
            (ECHO_REQUEST, 0) => EchoKind::Request,
            (ECHO_REPLY, 0) => EchoKind::Reply,
            (kind, code) => return Err(IcmpError::NotEcho { kind, code }),
        };
        let addr =
            |at: usize| Ipv4Addr::new(header[at], header[at + 1], header[at + 2], header[at + 3]);
        let u16_at = |bytes: &[u8], at: usize| u16::from_be_bytes([bytes[at], bytes[at + 1]]);
        Ok(IcmpEchoRepr {
            src: addr(field::SRC.start),
            dst: addr(field::DST.start),
            ip_ident: u16_at(header, field::IDENT.start),
            ttl: header[field::TTL],
            kind,
            identifier: u16_at(icmp, 4),
            sequence: u16_at(icmp, 6),
            data: &icmp[ECHO_HEADER_LEN..],
        })
    }

    /// An Echo Request from `src` to `dst`: IPv4 Identification 0, TTL 64.
    pub fn request(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        identifier: u16,
        sequence: u16,
        data: &'a [u8],
    ) -> IcmpEchoRepr<'a> {
        IcmpEchoRepr {
            src,
            dst,
            ip_ident: 0,
            ttl: Self::DEFAULT_TTL,
            kind: EchoKind::Request,
            identifier,
            sequence,
            data,
        }
    }

    /// The Echo Reply to this request: addresses swapped, TTL 64, the request's IPv4
    /// Identification, identifier, sequence number and data. The request's IPv4 options (e.g.
    /// Record Route) are not echoed: RFC 1122 §3.2.2.6 lets a host leave them.
    pub fn reply(&self) -> IcmpEchoRepr<'a> {
        IcmpEchoRepr {
            src: self.dst,
            dst: self.src,
            ttl: Self::DEFAULT_TTL,
            kind: EchoKind::Reply,
            ..*self
        }
    }

    /// Octets of the whole packet.
    pub fn buffer_len(&self) -> usize {
        Self::HEADER_LEN.saturating_add(self.data.len())
    }

    /// Appends the packet to `out`, both checksums computed; on error `out` is as it was.
    pub fn emit_to_vec(&self, out: &mut Vec<u8>) -> Result<usize, EmitError> {
        let len = self.buffer_len();
        let Ok(total_len) = u16::try_from(len) else {
            return Err(EmitError::PayloadTooLarge(self.data.len()));
        };
        let start = out.len();
        out.resize(start + Self::HEADER_LEN, 0);
        out.extend_from_slice(self.data);
        let (ip, icmp) = out[start..].split_at_mut(field::MIN_HEADER);
        Ipv4Header {
            src: self.src,
            dst: self.dst,
            ident: self.ip_ident,
            dont_fragment: false,
            ttl: self.ttl,
            protocol: PROTOCOL_ICMP,
        }
        .emit(ip, total_len);
        icmp[0] = match self.kind {
            EchoKind::Request => ECHO_REQUEST,
            EchoKind::Reply => ECHO_REPLY,
        };
        icmp[1] = 0;
        icmp[2..4].fill(0);
        icmp[4..6].copy_from_slice(&self.identifier.to_be_bytes());
        icmp[6..8].copy_from_slice(&self.sequence.to_be_bytes());
        let checksum = !sum_words(0, icmp);
        icmp[2..4].copy_from_slice(&checksum.to_be_bytes());
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip::checksum;
    use proptest::prelude::*;

    const OWN: Ipv4Addr = Ipv4Addr::new(198, 19, 128, 1);
    const PEER: Ipv4Addr = Ipv4Addr::new(198, 19, 128, 2);

    /// An Echo Request 198.19.128.2 → 198.19.128.1, Identification 0, no DF, TTL 64,
    /// identifier 0xbeef, sequence 7, data "aaaa"; both checksums computed apart from this code
    /// (a separate RFC 1071 sum).
    const GOLDEN: [u8; 32] = [
        0x45, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x40, 0x01, 0xee, 0xb2, 0xc6, 0x13, 0x80,
        0x02, 0xc6, 0x13, 0x80, 0x01, 0x08, 0x00, 0x76, 0x46, 0xbe, 0xef, 0x00, 0x07, 0x61, 0x61,
        0x61, 0x61,
    ];

    #[test]
    fn emits_and_parses_the_golden_request() {
        let repr = IcmpEchoRepr::request(PEER, OWN, 0xbeef, 7, b"aaaa");
        let mut out = vec![9];
        assert_eq!(repr.emit_to_vec(&mut out), Ok(32));
        assert_eq!(out[1..], GOLDEN);
        assert_eq!(checksum(&GOLDEN[..20]), 0);
        assert_eq!(checksum(&GOLDEN[20..]), 0);
        assert_eq!(IcmpEchoRepr::parse(&GOLDEN), Ok(repr));
        // RFC 1071 §3's example: the sum of these words is ddf2.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
    }

    #[test]
    fn a_reply_swaps_addresses_and_keeps_the_rest() {
        let request = IcmpEchoRepr::parse(&GOLDEN).unwrap();
        let reply = request.reply();
        let mut out = Vec::new();
        reply.emit_to_vec(&mut out).unwrap();
        let parsed = IcmpEchoRepr::parse(&out).unwrap();
        assert_eq!(parsed, reply);
        assert_eq!((parsed.src, parsed.dst), (OWN, PEER));
        assert_eq!(parsed.kind, EchoKind::Reply);
        assert_eq!((parsed.identifier, parsed.sequence), (0xbeef, 7));
        assert_eq!(parsed.data, b"aaaa");
        assert_eq!(out[20], 0);
    }

    #[test]
    fn refuses_what_is_no_echo() {
        let mut sum = GOLDEN;
        sum[25] ^= 1;
        assert!(matches!(
            IcmpEchoRepr::parse(&sum),
            Err(IcmpError::Malformed(Error::BadValue(BadValue {
                offset: 22,
                ..
            })))
        ));
        let mut header = GOLDEN;
        header[11] ^= 1;
        assert!(matches!(
            IcmpEchoRepr::parse(&header),
            Err(IcmpError::Malformed(Error::BadValue(BadValue {
                offset: 10,
                ..
            })))
        ));
        // Destination Unreachable (type 3), checksums made right.
        let mut unreachable = GOLDEN;
        unreachable[20] = 3;
        unreachable[22..24].fill(0);
        let sum = checksum(&unreachable[20..]);
        unreachable[22..24].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(
            IcmpEchoRepr::parse(&unreachable),
            Err(IcmpError::NotEcho { kind: 3, code: 0 })
        );
        let mut udp = GOLDEN;
        udp[9] = 17;
        udp[10..12].fill(0);
        let sum = checksum(&udp[..20]);
        udp[10..12].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(
            IcmpEchoRepr::parse(&udp),
            Err(IcmpError::NotIcmp { protocol: 17 })
        );
        let mut lying = GOLDEN;
        lying[3] += 40;
        assert!(matches!(
            IcmpEchoRepr::parse(&lying),
            Err(IcmpError::Malformed(Error::Truncated(_)))
        ));
        assert!(IcmpEchoRepr::parse(&GOLDEN[..10]).is_err());
    }

    proptest! {
        /// Any bytes: no panic; whatever parses re-emits to a packet that parses the same.
        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(repr) = IcmpEchoRepr::parse(&bytes) {
                let mut out = Vec::new();
                repr.emit_to_vec(&mut out).unwrap();
                prop_assert_eq!(IcmpEchoRepr::parse(&out), Ok(repr));
            }
        }

        #[test]
        fn parse_inverts_emit(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            identifier: u16,
            sequence: u16,
        ) {
            let repr = IcmpEchoRepr::request(PEER, OWN, identifier, sequence, &data);
            let mut out = Vec::new();
            prop_assert_eq!(repr.emit_to_vec(&mut out), Ok(28 + data.len()));
            prop_assert_eq!(IcmpEchoRepr::parse(&out), Ok(repr));
        }
    }
}
