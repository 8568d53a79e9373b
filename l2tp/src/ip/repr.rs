//! `Ipv4UdpRepr`: the IPv4 and UDP headers this toolkit writes, emitted in front of a payload
//! already in the buffer, with both checksums.

use crate::malformed::BadValue;
use std::net::{Ipv4Addr, SocketAddrV4};

use super::checksum::{pseudo_header, sum_words, udp_checksum};
use super::{field, Error, Ipv4Udp, Result, IPV4_HEADER_LEN, UDP_HEADER_LEN};

/// Why [`Ipv4UdpRepr::emit`] wrote nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    #[error("UDP payload of {0} bytes exceeds the IPv4 maximum of 65507")]
    PayloadTooLarge(usize),
    #[error("buffer too small to emit IPv4/UDP: need {need} bytes, have {have}")]
    BufferTooSmall { need: usize, have: usize },
}

/// One unfragmented IPv4 packet carrying one UDP datagram, as this toolkit writes them: a
/// 20-octet IPv4 header (no options, TOS 0) and a UDP header, both checksums computed.
///
/// Runners that receive a datagram into a buffer with [`Ipv4UdpRepr::HEADER_LEN`] octets of
/// headroom write the headers in place with [`emit`](Self::emit), without copying the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4UdpRepr {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    /// The IPv4 Identification.
    pub ident: u16,
    pub dont_fragment: bool,
    pub ttl: u8,
    /// Octets of UDP payload behind the headers.
    pub payload_len: usize,
}

impl Ipv4UdpRepr {
    /// Octets of both headers, in front of the payload.
    pub const HEADER_LEN: usize = IPV4_HEADER_LEN + UDP_HEADER_LEN;
    /// The largest UDP payload the 16-bit Total Length leaves room for.
    pub const MAX_PAYLOAD_LEN: usize = u16::MAX as usize - Self::HEADER_LEN;
    /// Linux's default TTL, which our runners' packets would carry from the kernel.
    pub const DEFAULT_TTL: u8 = 64;

    /// A datagram as the runners and the capture writer send it: Identification 0, Don't
    /// Fragment, TTL 64.
    pub fn new(src: SocketAddrV4, dst: SocketAddrV4, payload_len: usize) -> Ipv4UdpRepr {
        Ipv4UdpRepr {
            src,
            dst,
            ident: 0,
            dont_fragment: true,
            ttl: Self::DEFAULT_TTL,
            payload_len,
        }
    }

    /// Reads the fields of a checked packet, whose checksums must verify (a UDP checksum of 0,
    /// none computed, is accepted). IPv4 options and link padding are not part of the repr.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Udp<T>) -> Result<Ipv4UdpRepr> {
        if !packet.ipv4_checksum_ok() {
            return Err(Error::BadValue(BadValue {
                field: "IPv4 header checksum",
                offset: field::CHECKSUM.start,
                reason: "does not verify",
            }));
        }
        if !packet.udp_checksum_ok() {
            return Err(Error::BadValue(BadValue {
                field: "UDP checksum",
                offset: packet.header_len() + field::UDP_CHECKSUM.start,
                reason: "does not verify",
            }));
        }
        Ok(Ipv4UdpRepr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            ident: packet.ident(),
            dont_fragment: packet.dont_fragment(),
            ttl: packet.ttl(),
            payload_len: packet.udp_payload().len(),
        })
    }

    /// Octets of the whole packet: headers and payload.
    pub fn buffer_len(&self) -> usize {
        Self::HEADER_LEN.saturating_add(self.payload_len)
    }

    /// Writes both headers and checksums into the first [`HEADER_LEN`](Self::HEADER_LEN)
    /// octets of `buffer`, behind which the `payload_len` octets of payload must already be;
    /// anything past them is left alone. Returns the packet's length.
    pub fn emit(&self, buffer: &mut [u8]) -> core::result::Result<usize, EmitError> {
        let len = self.buffer_len();
        let Ok(total_len) = u16::try_from(len) else {
            return Err(EmitError::PayloadTooLarge(self.payload_len));
        };
        let have = buffer.len();
        let Some(packet) = buffer.get_mut(..len) else {
            return Err(EmitError::BufferTooSmall { need: len, have });
        };
        let (ip, segment) = packet.split_at_mut(IPV4_HEADER_LEN);
        Ipv4Header {
            src: *self.src.ip(),
            dst: *self.dst.ip(),
            ident: self.ident,
            dont_fragment: self.dont_fragment,
            ttl: self.ttl,
            protocol: field::UDP,
        }
        .emit(ip, total_len);

        let udp_len = total_len - IPV4_HEADER_LEN as u16;
        segment[field::SRC_PORT].copy_from_slice(&self.src.port().to_be_bytes());
        segment[field::DST_PORT].copy_from_slice(&self.dst.port().to_be_bytes());
        segment[field::UDP_LEN].copy_from_slice(&udp_len.to_be_bytes());
        segment[field::UDP_CHECKSUM].fill(0);
        let pseudo = pseudo_header(*self.src.ip(), *self.dst.ip(), udp_len);
        let checksum = udp_checksum(pseudo, segment);
        segment[field::UDP_CHECKSUM].copy_from_slice(&checksum.to_be_bytes());
        Ok(len)
    }

    /// Appends the packet, headers then `payload`, to `out`; `payload_len` is taken from
    /// `payload`. On error `out` is as it was.
    pub fn emit_to_vec(
        &self,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> core::result::Result<usize, EmitError> {
        let repr = Ipv4UdpRepr {
            payload_len: payload.len(),
            ..*self
        };
        if repr.payload_len > Self::MAX_PAYLOAD_LEN {
            return Err(EmitError::PayloadTooLarge(repr.payload_len));
        }
        let start = out.len();
        out.resize(start + Self::HEADER_LEN, 0);
        out.extend_from_slice(payload);
        repr.emit(&mut out[start..])
    }
}

/// The IPv4 header this toolkit writes in front of whatever it carries: 20 octets, no options,
/// TOS 0, its checksum computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ipv4Header {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ident: u16,
    pub dont_fragment: bool,
    pub ttl: u8,
    pub protocol: u8,
}

impl Ipv4Header {
    /// Writes the header into `ip` (exactly [`IPV4_HEADER_LEN`] octets) for a packet of
    /// `total_len` octets.
    pub(super) fn emit(&self, ip: &mut [u8], total_len: u16) {
        let flags = if self.dont_fragment {
            field::DONT_FRAGMENT
        } else {
            0
        };
        ip[field::VERSION_IHL] = 0x45; // version 4, IHL 5
        ip[field::VERSION_IHL + 1] = 0; // TOS
        ip[field::TOTAL_LEN].copy_from_slice(&total_len.to_be_bytes());
        ip[field::IDENT].copy_from_slice(&self.ident.to_be_bytes());
        ip[field::FLAGS_FRAGMENT].copy_from_slice(&flags.to_be_bytes());
        ip[field::TTL] = self.ttl;
        ip[field::PROTOCOL] = self.protocol;
        ip[field::CHECKSUM].fill(0);
        ip[field::SRC].copy_from_slice(&self.src.octets());
        ip[field::DST].copy_from_slice(&self.dst.octets());
        let checksum = !sum_words(0, ip);
        ip[field::CHECKSUM].copy_from_slice(&checksum.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip::tests::GOLDEN;

    const SRC: &str = "198.19.0.3:1701";
    const DST: &str = "198.18.0.10:1701";

    /// 198.19.0.3:1701 -> 198.18.0.10:1701, Identification 0x1234, DF, TTL 64, carrying a ZLB
    /// (Tunnel ID 1, Ns 1, Nr 1): `GOLDEN` without its 4-octet option. Both checksums were
    /// computed by hand (RFC 1071) and agree with pnet's.
    const GOLDEN_NO_OPTIONS: [u8; 40] = [
        0x45, 0x00, 0x00, 0x28, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x9c, 0x5e, 0xc6, 0x13, 0x00,
        0x03, 0xc6, 0x12, 0x00, 0x0a, 0x06, 0xa5, 0x06, 0xa5, 0x00, 0x14, 0x9e, 0x37, 0xc8, 0x02,
        0x00, 0x0c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01,
    ];

    fn golden_repr() -> Ipv4UdpRepr {
        Ipv4UdpRepr {
            ident: 0x1234,
            ..Ipv4UdpRepr::new(SRC.parse().unwrap(), DST.parse().unwrap(), 12)
        }
    }

    #[test]
    fn emit_writes_the_golden_headers_in_front_of_the_payload() {
        let mut packet = [0u8; 40];
        packet[28..].copy_from_slice(&GOLDEN_NO_OPTIONS[28..]);
        assert_eq!(golden_repr().emit(&mut packet), Ok(40));
        assert_eq!(packet, GOLDEN_NO_OPTIONS);
        // The UDP checksum does not depend on IPv4 options: GOLDEN carries the same one.
        assert_eq!(GOLDEN[30..32], GOLDEN_NO_OPTIONS[26..28]);
    }

    #[test]
    fn parse_reads_the_golden_packet() {
        let view = Ipv4Udp::new_checked(&GOLDEN_NO_OPTIONS[..]).unwrap();
        assert_eq!(Ipv4UdpRepr::parse(&view), Ok(golden_repr()));
        // Options are not part of the repr; the rest is the same.
        let view = Ipv4Udp::new_checked(&GOLDEN[..]).unwrap();
        assert_eq!(Ipv4UdpRepr::parse(&view), Ok(golden_repr()));
    }

    #[test]
    fn parse_rejects_bad_checksums() {
        let mut packet = GOLDEN_NO_OPTIONS;
        packet[11] ^= 1;
        let view = Ipv4Udp::new_checked(&packet[..]).unwrap();
        assert!(matches!(
            Ipv4UdpRepr::parse(&view),
            Err(Error::BadValue(BadValue { offset: 10, .. }))
        ));
        let mut packet = GOLDEN_NO_OPTIONS;
        packet[27] ^= 1;
        let view = Ipv4Udp::new_checked(&packet[..]).unwrap();
        assert!(matches!(
            Ipv4UdpRepr::parse(&view),
            Err(Error::BadValue(BadValue { offset: 26, .. }))
        ));
    }

    #[test]
    fn parse_inverts_emit() {
        for (len, ident, ttl, dont_fragment) in
            [(0, 0, 64, true), (1, 7, 1, false), (1401, 9, 255, true)]
        {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 + 5) as u8).collect();
            let repr = Ipv4UdpRepr {
                ident,
                ttl,
                dont_fragment,
                ..Ipv4UdpRepr::new(SRC.parse().unwrap(), "10.0.0.1:40000".parse().unwrap(), len)
            };
            let mut packet = Vec::new();
            assert_eq!(repr.emit_to_vec(&payload, &mut packet), Ok(28 + len));
            assert_eq!(packet.len(), repr.buffer_len());
            let view = Ipv4Udp::new_checked(&packet[..]).unwrap();
            assert_eq!(view.udp_payload(), &payload[..]);
            assert_eq!(Ipv4UdpRepr::parse(&view), Ok(repr));
        }
    }

    #[test]
    fn completing_a_checksum_in_place_gives_what_emit_gives() {
        let mut packet = GOLDEN_NO_OPTIONS;
        packet[26..28].copy_from_slice(&[0xab, 0xcd]); // what checksum offload leaves
        Ipv4Udp::new_checked(&mut packet[..])
            .unwrap()
            .fill_udp_checksum();
        assert_eq!(packet, GOLDEN_NO_OPTIONS);
    }

    #[test]
    fn emit_errors() {
        let repr = golden_repr();
        let mut short = [0u8; 39];
        assert_eq!(
            repr.emit(&mut short),
            Err(EmitError::BufferTooSmall { need: 40, have: 39 })
        );
        let huge = Ipv4UdpRepr {
            payload_len: Ipv4UdpRepr::MAX_PAYLOAD_LEN + 1,
            ..repr
        };
        assert_eq!(
            huge.emit(&mut [0u8; 64]),
            Err(EmitError::PayloadTooLarge(65_508))
        );
        let mut out = vec![1, 2, 3];
        assert_eq!(
            repr.emit_to_vec(&[0; 65_508], &mut out),
            Err(EmitError::PayloadTooLarge(65_508))
        );
        assert_eq!(out, [1, 2, 3]);
        // The largest payload fits exactly.
        let mut out = Vec::new();
        assert_eq!(repr.emit_to_vec(&[0; 65_507], &mut out), Ok(65_535));
    }
}
