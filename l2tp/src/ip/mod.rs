//! IPv4 and UDP as a forwarder sees them (sans-IO): a checked view over one whole IPv4 packet
//! carrying one UDP datagram, in-place rewrites of addresses, ports and TTL that keep both
//! checksums right by the incremental update of RFC 1624, [`Ipv4UdpRepr`] that writes the
//! headers (and both checksums) in front of a payload, and a reader for the few L2TP fields a
//! forwarder routes by.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |Version|  IHL  |Type of Service|          Total Length         |
//! |         Identification        |Flags|      Fragment Offset    |
//! |  Time to Live |    Protocol   |         Header Checksum       |
//! |                       Source Address                          |
//! |                    Destination Address                        |
//! |                    Options (IHL > 5)...                       |
//! |          Source Port          |       Destination Port        |   at 4 * IHL
//! |            Length             |           Checksum            |
//! |                          payload...                           |
//! ```
//!
//! The view is hand-written rather than built on pnet's `Ipv4Packet`: pnet's `new` checks only
//! the 20-byte minimum, so IHL and both length fields would need checking again before every
//! use, and the rewrite path needs only a dozen offsets. pnet stays the independent judge in the
//! tests (full checksum recomputes).

use crate::malformed::{BadValue, Truncated};
use std::net::{Ipv4Addr, SocketAddrV4};

mod checksum;
mod classify;
pub mod icmp;
mod repr;
#[cfg(test)]
mod tests;

use checksum::{pseudo_header, sum_words, udp_checksum, update};
pub use classify::{
    assigned_tunnel_id_at, classify, is_sccrq, l2tp_tunnel_id, tunnel_id_at, L2tpClass,
};
use repr::Ipv4Header;
pub use repr::{EmitError, Ipv4UdpRepr};

mod field {
    use core::ops::Range;

    pub const VERSION_IHL: usize = 0;
    pub const TOTAL_LEN: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLAGS_FRAGMENT: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
    pub const MIN_HEADER: usize = 20;

    pub const DONT_FRAGMENT: u16 = 0x4000;
    pub const MORE_FRAGMENTS: u16 = 0x2000;
    pub const FRAGMENT_OFFSET: u16 = 0x1fff;
    pub const UDP: u8 = 17;

    // UDP fields count from the end of the IPv4 header (4 * IHL).
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const UDP_LEN: Range<usize> = 4..6;
    pub const UDP_CHECKSUM: Range<usize> = 6..8;
    pub const UDP_HEADER: usize = 8;
}

/// Octets of an IPv4 header without options.
pub const IPV4_HEADER_LEN: usize = field::MIN_HEADER;
/// Octets of a UDP header.
pub const UDP_HEADER_LEN: usize = field::UDP_HEADER;

/// Why bytes are not one whole IPv4 packet carrying UDP. Offsets count from the first byte of
/// the IPv4 header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Truncated(Truncated),
    #[error(transparent)]
    BadValue(BadValue),
    #[error("IP version {version} at byte 0: not IPv4")]
    NotIpv4 { version: u8 },
    #[error("IPv4 Protocol {protocol} at byte 9: not UDP")]
    NotUdp { protocol: u8 },
    /// A fragment holds no whole UDP datagram (a later one holds no UDP header at all), so a
    /// forwarder that routes by UDP and L2TP fields cannot route it; nothing here reassembles.
    #[error(
        "IPv4 fragment at byte 6 (offset {fragment_offset}, more fragments {more_fragments}): \
         not a whole UDP datagram"
    )]
    Fragment {
        /// In bytes (the header field counts 8-byte units).
        fragment_offset: u16,
        more_fragments: bool,
    },
}

impl Error {
    pub fn is_fragment(&self) -> bool {
        matches!(self, Error::Fragment { .. })
    }
}

pub type Result<T> = core::result::Result<T, Error>;

/// Checks what every IPv4 packet this crate reads must hold, whatever it carries: version 4,
/// IHL ≥ 5 with the options present, Total Length within `data` (bytes past it are link
/// padding). Returns the header length and the Total Length; `data` is then at least that
/// long. Fragments are [`check_unfragmented`]'s.
fn check_ipv4(data: &[u8]) -> Result<(usize, usize)> {
    let Some(&version_ihl) = data.first() else {
        return Err(Error::Truncated(Truncated {
            field: "IPv4 header",
            offset: 0,
            need: field::MIN_HEADER,
            have: 0,
        }));
    };
    if version_ihl >> 4 != 4 {
        return Err(Error::NotIpv4 {
            version: version_ihl >> 4,
        });
    }
    if data.len() < field::MIN_HEADER {
        return Err(Error::Truncated(Truncated {
            field: "IPv4 header",
            offset: 0,
            need: field::MIN_HEADER,
            have: data.len(),
        }));
    }
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    if header_len < field::MIN_HEADER {
        return Err(Error::BadValue(BadValue {
            field: "IHL",
            offset: field::VERSION_IHL,
            reason: "less than 5 (the 20-octet IPv4 header)",
        }));
    }
    if data.len() < header_len {
        return Err(Error::Truncated(Truncated {
            field: "IPv4 options",
            offset: field::MIN_HEADER,
            need: header_len,
            have: data.len(),
        }));
    }
    let read_u16 = |at: usize| u16::from_be_bytes([data[at], data[at + 1]]);
    let total_len = usize::from(read_u16(field::TOTAL_LEN.start));
    if total_len < header_len {
        return Err(Error::BadValue(BadValue {
            field: "Total Length",
            offset: field::TOTAL_LEN.start,
            reason: "shorter than the IPv4 header",
        }));
    }
    if total_len > data.len() {
        return Err(Error::Truncated(Truncated {
            field: "Total Length",
            offset: field::TOTAL_LEN.start,
            need: total_len,
            have: data.len(),
        }));
    }
    Ok((header_len, total_len))
}

/// Nothing here reassembles: a fragment is refused. `data` has passed [`check_ipv4`].
fn check_unfragmented(data: &[u8]) -> Result<()> {
    let at = field::FLAGS_FRAGMENT.start;
    let flags_fragment = u16::from_be_bytes([data[at], data[at + 1]]);
    let more_fragments = flags_fragment & field::MORE_FRAGMENTS != 0;
    let fragment_units = flags_fragment & field::FRAGMENT_OFFSET;
    if more_fragments || fragment_units != 0 {
        return Err(Error::Fragment {
            fragment_offset: fragment_units * 8,
            more_fragments,
        });
    }
    Ok(())
}

/// RFC 1071: the one's complement of the one's complement sum of `bytes` as 16-bit words. Over
/// a header (or message) with its checksum field in place, 0 means the checksum holds.
pub fn checksum(bytes: &[u8]) -> u16 {
    !sum_words(0, bytes)
}

/// A view of one whole (unfragmented) IPv4 packet carrying UDP. After `new_checked` every
/// accessor and rewrite stays inside the buffer: the rewrites never touch IHL, Total Length or
/// the UDP Length, the fields the check relied on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Udp<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Udp<T> {
    /// Wraps a buffer without checking it; accessors may panic on bad input.
    pub const fn new_unchecked(buffer: T) -> Ipv4Udp<T> {
        Ipv4Udp { buffer }
    }

    /// Checks version 4, IHL ≥ 5 with the options present, Total Length within the buffer
    /// (bytes past it are link padding), Protocol UDP, no fragment, and a UDP Length between 8
    /// and the IPv4 payload. The IPv4 header checksum is not checked here: see
    /// [`Ipv4Udp::ipv4_checksum_ok`].
    pub fn new_checked(buffer: T) -> Result<Ipv4Udp<T>> {
        let packet = Ipv4Udp::new_unchecked(buffer);
        packet.check()?;
        Ok(packet)
    }

    fn check(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        let (header_len, total_len) = check_ipv4(data)?;
        let protocol = data[field::PROTOCOL];
        if protocol != field::UDP {
            return Err(Error::NotUdp { protocol });
        }
        check_unfragmented(data)?;
        let segment_len = total_len - header_len;
        if segment_len < field::UDP_HEADER {
            return Err(Error::Truncated(Truncated {
                field: "UDP header",
                offset: header_len,
                need: header_len + field::UDP_HEADER,
                have: total_len,
            }));
        }
        let udp_len = usize::from(self.read_u16(header_len + field::UDP_LEN.start));
        if udp_len < field::UDP_HEADER {
            return Err(Error::BadValue(BadValue {
                field: "UDP Length",
                offset: header_len + field::UDP_LEN.start,
                reason: "less than the 8-octet UDP header",
            }));
        }
        if udp_len > segment_len {
            return Err(Error::Truncated(Truncated {
                field: "UDP Length",
                offset: header_len + field::UDP_LEN.start,
                need: header_len + udp_len,
                have: total_len,
            }));
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn read_u16(&self, at: usize) -> u16 {
        let data = self.buffer.as_ref();
        u16::from_be_bytes([data[at], data[at + 1]])
    }

    fn read_addr(&self, at: usize) -> Ipv4Addr {
        let data = self.buffer.as_ref();
        Ipv4Addr::new(data[at], data[at + 1], data[at + 2], data[at + 3])
    }

    /// IPv4 header length in octets, options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VERSION_IHL] & 0x0f) * 4
    }

    /// The Total Length field: the packet without any link padding behind it.
    pub fn total_len(&self) -> usize {
        usize::from(self.read_u16(field::TOTAL_LEN.start))
    }

    /// The Identification field.
    pub fn ident(&self) -> u16 {
        self.read_u16(field::IDENT.start)
    }

    /// The Don't Fragment flag.
    pub fn dont_fragment(&self) -> bool {
        self.read_u16(field::FLAGS_FRAGMENT.start) & field::DONT_FRAGMENT != 0
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    pub fn ipv4_checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM.start)
    }

    pub fn src(&self) -> Ipv4Addr {
        self.read_addr(field::SRC.start)
    }

    pub fn dst(&self) -> Ipv4Addr {
        self.read_addr(field::DST.start)
    }

    pub fn src_port(&self) -> u16 {
        self.read_u16(self.header_len() + field::SRC_PORT.start)
    }

    pub fn dst_port(&self) -> u16 {
        self.read_u16(self.header_len() + field::DST_PORT.start)
    }

    pub fn src_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.src(), self.src_port())
    }

    pub fn dst_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.dst(), self.dst_port())
    }

    /// The UDP Length field: header and payload.
    pub fn udp_len(&self) -> usize {
        usize::from(self.read_u16(self.header_len() + field::UDP_LEN.start))
    }

    /// The UDP checksum as sent; 0 means the sender computed none.
    pub fn udp_checksum(&self) -> u16 {
        self.read_u16(self.header_len() + field::UDP_CHECKSUM.start)
    }

    /// The UDP payload, exactly as long as the UDP Length field says.
    pub fn udp_payload(&self) -> &[u8] {
        let start = self.header_len() + field::UDP_HEADER;
        let end = self.header_len() + self.udp_len();
        &self.buffer.as_ref()[start..end]
    }

    /// Whether the header checksum verifies (RFC 1812 §5.2.2: a router drops it otherwise).
    /// Summing the header with its checksum field gives all ones when it is right.
    pub fn ipv4_checksum_ok(&self) -> bool {
        let header = &self.buffer.as_ref()[..self.header_len()];
        sum_words(0, header) == 0xffff
    }

    /// Whether the UDP checksum verifies, by a full recompute over the pseudo-header and the
    /// datagram; true when the sender computed none. Not for the hot path: a forwarder leaves
    /// end-to-end checks to the end, and the incremental update keeps an error detectable.
    pub fn udp_checksum_ok(&self) -> bool {
        if self.udp_checksum() == 0 {
            return true;
        }
        let data = self.buffer.as_ref();
        let start = self.header_len();
        let segment = &data[start..start + self.udp_len()];
        // The UDP Length fits in 16 bits: the check bounded it by the 16-bit Total Length.
        let sum = pseudo_header(self.src(), self.dst(), self.udp_len() as u16);
        sum_words(sum, segment) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Udp<T> {
    fn write_u16(&mut self, at: usize, value: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }

    fn rewrite_ipv4_checksum<const N: usize>(&mut self, old: [u8; N], new: [u8; N]) {
        let checksum = update(self.ipv4_checksum(), old, new);
        self.write_u16(field::CHECKSUM.start, checksum);
    }

    /// A UDP checksum of 0 means none was computed and stays 0; a computed 0 goes out as all
    /// ones (RFC 768).
    fn rewrite_udp_checksum<const N: usize>(&mut self, old: [u8; N], new: [u8; N]) {
        let checksum = self.udp_checksum();
        if checksum == 0 {
            return;
        }
        let at = self.header_len() + field::UDP_CHECKSUM.start;
        match update(checksum, old, new) {
            0 => self.write_u16(at, 0xffff),
            sum => self.write_u16(at, sum),
        }
    }

    fn rewrite_addr(&mut self, at: usize, addr: Ipv4Addr) {
        let old: [u8; 4] = {
            let data = self.buffer.as_ref();
            [data[at], data[at + 1], data[at + 2], data[at + 3]]
        };
        let new = addr.octets();
        if old == new {
            return;
        }
        self.buffer.as_mut()[at..at + 4].copy_from_slice(&new);
        // Addresses are in the IPv4 header and in the UDP pseudo-header.
        self.rewrite_ipv4_checksum(old, new);
        self.rewrite_udp_checksum(old, new);
    }

    fn rewrite_port(&mut self, at: usize, port: u16) {
        let old = self.read_u16(at).to_be_bytes();
        let new = port.to_be_bytes();
        if old == new {
            return;
        }
        self.write_u16(at, port);
        self.rewrite_udp_checksum(old, new);
    }

    /// Computes the UDP checksum afresh over the pseudo-header and the datagram: for one whose
    /// sender left it to the hardware (checksum offload, as a packet socket sees it on a veth),
    /// before it is sent on as a plain frame. A datagram sent without a checksum (0) keeps none.
    pub fn fill_udp_checksum(&mut self) {
        if self.udp_checksum() == 0 {
            return;
        }
        let start = self.header_len();
        self.write_u16(start + field::UDP_CHECKSUM.start, 0);
        let pseudo = pseudo_header(self.src(), self.dst(), self.udp_len() as u16);
        let segment = &self.buffer.as_ref()[start..start + self.udp_len()];
        let checksum = udp_checksum(pseudo, segment);
        self.write_u16(start + field::UDP_CHECKSUM.start, checksum);
    }

    pub fn set_src(&mut self, addr: Ipv4Addr) {
        self.rewrite_addr(field::SRC.start, addr);
    }

    pub fn set_dst(&mut self, addr: Ipv4Addr) {
        self.rewrite_addr(field::DST.start, addr);
    }

    pub fn set_src_port(&mut self, port: u16) {
        let at = self.header_len() + field::SRC_PORT.start;
        self.rewrite_port(at, port);
    }

    pub fn set_dst_port(&mut self, port: u16) {
        let at = self.header_len() + field::DST_PORT.start;
        self.rewrite_port(at, port);
    }

    /// Writes a 16-bit field of the UDP payload (an L2TP Tunnel ID, say) `offset` octets into
    /// the payload and updates the UDP checksum to match. Returns false, changing nothing,
    /// when the field does not lie wholly inside the payload.
    pub fn set_payload_u16(&mut self, offset: usize, value: u16) -> bool {
        let Some(end) = offset.checked_add(2) else {
            return false;
        };
        if end > self.udp_len().saturating_sub(field::UDP_HEADER) {
            return false;
        }
        let at = self.header_len() + field::UDP_HEADER + offset;
        let old = self.read_u16(at).to_be_bytes();
        let new = value.to_be_bytes();
        if old == new {
            return true;
        }
        self.write_u16(at, value);
        // The checksum sums 16-bit words from the UDP header on: at an odd offset the two
        // octets are the low half of one word and the high half of the next, which sums as
        // the octets swapped (RFC 1071 §2(B)).
        if offset.is_multiple_of(2) {
            self.rewrite_udp_checksum(old, new);
        } else {
            self.rewrite_udp_checksum([old[1], old[0]], [new[1], new[0]]);
        }
        true
    }

    /// Counts one router hop (RFC 1812 §5.3.1). Returns false, changing nothing, when the TTL
    /// is 0 or 1: the packet must then be dropped, not forwarded. A forwarder that rewrites in
    /// userspace and sends on a raw or packet socket bypasses the kernel's own decrement, so
    /// without this a routing loop through it would circulate a packet for ever.
    pub fn decrement_ttl(&mut self) -> bool {
        let ttl = self.ttl();
        if ttl <= 1 {
            return false;
        }
        // TTL shares its checksum word with Protocol.
        let protocol = self.buffer.as_ref()[field::PROTOCOL];
        self.buffer.as_mut()[field::TTL] = ttl - 1;
        self.rewrite_ipv4_checksum([ttl, protocol], [ttl - 1, protocol]);
        true
    }
}
