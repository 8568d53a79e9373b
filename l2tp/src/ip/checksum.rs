//! One's complement arithmetic (RFC 1071), its incremental update (RFC 1624) and the UDP
//! pseudo-header (RFC 768), shared by the view's rewrites and the repr's emit.

use std::net::Ipv4Addr;

use super::field;

/// One's complement addition with end-around carry.
#[inline]
pub(super) fn add(sum: u16, value: u16) -> u16 {
    let (total, carry) = sum.overflowing_add(value);
    total + u16::from(carry)
}

/// Adds `bytes` as big-endian 16-bit words to a one's complement sum; an odd last byte is
/// padded with zero.
#[inline]
pub(super) fn sum_words(sum: u16, bytes: &[u8]) -> u16 {
    // Four octets at a time: 2^16 ≡ 1 (mod 0xffff), so a 32-bit word adds like its two halves.
    // This runs over every datagram the NAT and the master write.
    let mut wide = u64::from(sum);
    let mut words = bytes.chunks_exact(4);
    for word in &mut words {
        wide += u64::from(u32::from_be_bytes([word[0], word[1], word[2], word[3]]));
    }
    let mut tail = [0u8; 4];
    let rest = words.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    wide += u64::from(u32::from_be_bytes(tail));
    while wide > 0xffff {
        wide = (wide & 0xffff) + (wide >> 16);
    }
    wide as u16
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), for a field `old` (an even number of octets at an
/// even offset) that became `new`. Eqn. 3 rather than eqn. 2, so that a checksum that the full
/// computation makes 0x0000 never comes out as 0xffff.
#[inline]
pub(super) fn update<const N: usize>(checksum: u16, old: [u8; N], new: [u8; N]) -> u16 {
    let mut sum = !checksum;
    for (old, new) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        sum = add(sum, !u16::from_be_bytes([old[0], old[1]]));
        sum = add(sum, u16::from_be_bytes([new[0], new[1]]));
    }
    !sum
}

/// The sum of the UDP pseudo-header: source, destination, protocol and UDP Length.
#[inline]
pub(super) fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, udp_len: u16) -> u16 {
    let sum = sum_words(0, &src.octets());
    let sum = sum_words(sum, &dst.octets());
    add(add(sum, u16::from(field::UDP)), udp_len)
}

/// The UDP checksum to send for `segment` (header with a zero checksum field, and payload)
/// given the pseudo-header's sum. 0 means "no checksum" in UDP over IPv4, so a computed 0 is
/// sent as all ones (RFC 768).
#[inline]
pub(super) fn udp_checksum(pseudo: u16, segment: &[u8]) -> u16 {
    match !sum_words(pseudo, segment) {
        0 => 0xffff,
        checksum => checksum,
    }
}
