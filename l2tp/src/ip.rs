//! IPv4 and UDP as a forwarder sees them (sans-IO): a checked view over one whole IPv4 packet
//! carrying one UDP datagram, in-place rewrites of addresses, ports and TTL that keep both
//! checksums right by the incremental update of RFC 1624, and a reader for the few L2TP fields a
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

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::wire::{self, Avp, AvpType, Header, MessageType};

mod field {
    use core::ops::Range;

    pub const VERSION_IHL: usize = 0;
    pub const TOTAL_LEN: Range<usize> = 2..4;
    pub const FLAGS_FRAGMENT: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
    pub const MIN_HEADER: usize = 20;

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
    #[error("{field} truncated at byte {offset}: need {need} bytes, have {have}")]
    Truncated {
        field: &'static str,
        offset: usize,
        need: usize,
        have: usize,
    },
    #[error("{field} at byte {offset}: {reason}")]
    BadValue {
        field: &'static str,
        offset: usize,
        reason: &'static str,
    },
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
        let Some(&version_ihl) = data.first() else {
            return Err(Error::Truncated {
                field: "IPv4 header",
                offset: 0,
                need: field::MIN_HEADER,
                have: 0,
            });
        };
        if version_ihl >> 4 != 4 {
            return Err(Error::NotIpv4 {
                version: version_ihl >> 4,
            });
        }
        if data.len() < field::MIN_HEADER {
            return Err(Error::Truncated {
                field: "IPv4 header",
                offset: 0,
                need: field::MIN_HEADER,
                have: data.len(),
            });
        }
        let header_len = usize::from(version_ihl & 0x0f) * 4;
        if header_len < field::MIN_HEADER {
            return Err(Error::BadValue {
                field: "IHL",
                offset: field::VERSION_IHL,
                reason: "less than 5 (the 20-octet IPv4 header)",
            });
        }
        if data.len() < header_len {
            return Err(Error::Truncated {
                field: "IPv4 options",
                offset: field::MIN_HEADER,
                need: header_len,
                have: data.len(),
            });
        }
        let total_len = usize::from(self.read_u16(field::TOTAL_LEN.start));
        if total_len < header_len {
            return Err(Error::BadValue {
                field: "Total Length",
                offset: field::TOTAL_LEN.start,
                reason: "shorter than the IPv4 header",
            });
        }
        if total_len > data.len() {
            return Err(Error::Truncated {
                field: "Total Length",
                offset: field::TOTAL_LEN.start,
                need: total_len,
                have: data.len(),
            });
        }
        let protocol = data[field::PROTOCOL];
        if protocol != field::UDP {
            return Err(Error::NotUdp { protocol });
        }
        let flags_fragment = self.read_u16(field::FLAGS_FRAGMENT.start);
        let more_fragments = flags_fragment & field::MORE_FRAGMENTS != 0;
        let fragment_units = flags_fragment & field::FRAGMENT_OFFSET;
        if more_fragments || fragment_units != 0 {
            return Err(Error::Fragment {
                fragment_offset: fragment_units * 8,
                more_fragments,
            });
        }
        let segment_len = total_len - header_len;
        if segment_len < field::UDP_HEADER {
            return Err(Error::Truncated {
                field: "UDP header",
                offset: header_len,
                need: header_len + field::UDP_HEADER,
                have: total_len,
            });
        }
        let udp_len = usize::from(self.read_u16(header_len + field::UDP_LEN.start));
        if udp_len < field::UDP_HEADER {
            return Err(Error::BadValue {
                field: "UDP Length",
                offset: header_len + field::UDP_LEN.start,
                reason: "less than the 8-octet UDP header",
            });
        }
        if udp_len > segment_len {
            return Err(Error::Truncated {
                field: "UDP Length",
                offset: header_len + field::UDP_LEN.start,
                need: header_len + udp_len,
                have: total_len,
            });
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
        let mut sum = sum_words(0, &data[field::SRC.start..field::DST.end]);
        sum = add(sum, u16::from(field::UDP));
        // The UDP Length fits in 16 bits: the check bounded it by the 16-bit Total Length.
        sum = add(sum, self.read_u16(start + field::UDP_LEN.start));
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
        let data = self.buffer.as_ref();
        let mut sum = sum_words(0, &data[field::SRC.start..field::DST.end]);
        sum = add(sum, u16::from(field::UDP));
        sum = add(sum, self.read_u16(start + field::UDP_LEN.start));
        let sum = sum_words(sum, &data[start..start + self.udp_len()]);
        let checksum = match !sum {
            0 => 0xffff,
            checksum => checksum,
        };
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

/// One's complement addition with end-around carry.
#[inline]
fn add(sum: u16, value: u16) -> u16 {
    let (total, carry) = sum.overflowing_add(value);
    total + u16::from(carry)
}

/// Adds `bytes` as big-endian 16-bit words to a one's complement sum; an odd last byte is
/// padded with zero.
#[inline]
fn sum_words(sum: u16, bytes: &[u8]) -> u16 {
    let mut wide = u64::from(sum);
    let mut words = bytes.chunks_exact(2);
    for word in &mut words {
        wide += u64::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        wide += u64::from(*last) << 8;
    }
    while wide > 0xffff {
        wide = (wide & 0xffff) + (wide >> 16);
    }
    wide as u16
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), for a field `old` (an even number of octets at an
/// even offset) that became `new`. Eqn. 3 rather than eqn. 2, so that a checksum that the full
/// computation makes 0x0000 never comes out as 0xffff.
#[inline]
fn update<const N: usize>(checksum: u16, old: [u8; N], new: [u8; N]) -> u16 {
    let mut sum = !checksum;
    for (old, new) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        sum = add(sum, !u16::from_be_bytes([old[0], old[1]]));
        sum = add(sum, u16::from_be_bytes([new[0], new[1]]));
    }
    !sum
}

/// What a forwarder needs from an L2TP message: the header's Tunnel ID, whether it is data, an
/// acknowledgement (ZLB) or a control message of some type, and, for SCCRQ and SCCRP only, the
/// Assigned Tunnel ID. Read by [`classify`] without allocating or parsing the other AVPs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L2tpClass {
    Data {
        tunnel_id: u16,
    },
    /// A control message without AVPs: an acknowledgement only (RFC 2661 §5.8).
    Zlb {
        tunnel_id: u16,
    },
    /// A control message other than SCCRQ and SCCRP.
    Control {
        tunnel_id: u16,
        message_type: MessageType,
    },
    /// SCCRQ or SCCRP: the messages that assign a tunnel ID, which forwarders key by.
    Setup {
        tunnel_id: u16,
        message_type: MessageType,
        assigned_tunnel_id: u16,
    },
}

impl L2tpClass {
    /// The header's Tunnel ID: the receiver's ID for the tunnel (0 on an SCCRQ).
    pub fn tunnel_id(&self) -> u16 {
        match *self {
            L2tpClass::Data { tunnel_id }
            | L2tpClass::Zlb { tunnel_id }
            | L2tpClass::Control { tunnel_id, .. }
            | L2tpClass::Setup { tunnel_id, .. } => tunnel_id,
        }
    }

    /// The Message Type of a control message; `None` for data and ZLBs.
    pub fn message_type(&self) -> Option<MessageType> {
        match *self {
            L2tpClass::Control { message_type, .. } | L2tpClass::Setup { message_type, .. } => {
                Some(message_type)
            }
            L2tpClass::Data { .. } | L2tpClass::Zlb { .. } => None,
        }
    }
}

/// The header's Tunnel ID, when the bytes start with a valid L2TPv2 header.
pub fn l2tp_tunnel_id(udp_payload: &[u8]) -> Option<u16> {
    Header::new_checked(udp_payload)
        .ok()
        .map(|header| header.tunnel_id())
}

/// Whether the bytes are an SCCRQ: reads the header and the first AVP only.
pub fn is_sccrq(udp_payload: &[u8]) -> bool {
    let Ok(header) = Header::new_checked(udp_payload) else {
        return false;
    };
    header.is_control()
        && matches!(
            first_message_type(header.payload(), header.header_len()),
            Ok(Some(MessageType::Sccrq))
        )
}

/// Reads what a forwarder routes by (see [`L2tpClass`]). Errors are the codec's and count
/// offsets from the start of the L2TP header; a hidden Assigned Tunnel ID is
/// [`wire::Error::Hidden`], since a forwarder holds no secret to unhide it.
pub fn classify(udp_payload: &[u8]) -> wire::Result<L2tpClass> {
    let header = Header::new_checked(udp_payload)?;
    let tunnel_id = header.tunnel_id();
    if !header.is_control() {
        return Ok(L2tpClass::Data { tunnel_id });
    }
    let body = header.payload();
    let base = header.header_len();
    let Some(message_type) = first_message_type(body, base)? else {
        return Ok(L2tpClass::Zlb { tunnel_id });
    };
    let message = match message_type {
        MessageType::Sccrq => "SCCRQ",
        MessageType::Sccrp => "SCCRP",
        _ => {
            return Ok(L2tpClass::Control {
                tunnel_id,
                message_type,
            })
        }
    };
    Ok(L2tpClass::Setup {
        tunnel_id,
        message_type,
        assigned_tunnel_id: find_assigned_tunnel_id(body, base, message)?,
    })
}

/// The Message Type of a control message body, `None` for a ZLB. `base` is where the body
/// starts in the L2TP message, to place errors.
fn first_message_type(body: &[u8], base: usize) -> wire::Result<Option<MessageType>> {
    if body.is_empty() {
        return Ok(None);
    }
    let avp = Avp::new_checked(body, base)?;
    // §4.1: reserved bits make the AVP unrecognized, so it is no Message Type (the codec agrees).
    if avp.vendor_id() != 0
        || avp.attr_type() != AvpType::MessageType.to_u16()
        || avp.reserved() != 0
    {
        return Err(wire::Error::BadValue {
            field: "Message Type AVP",
            offset: base,
            reason: "the first AVP of a control message must be Message Type",
        });
    }
    if avp.hidden() {
        return Err(wire::Error::BadValue {
            field: "Message Type AVP",
            offset: base,
            reason: "must not be hidden",
        });
    }
    let &[high, low] = avp.value() else {
        return Err(wire::Error::BadValue {
            field: "Message Type AVP",
            offset: base,
            reason: "value must be 2 octets",
        });
    };
    Ok(Some(MessageType::from_u16(u16::from_be_bytes([high, low]))))
}

/// Walks the AVP headers (never their values) to the Assigned Tunnel ID.
fn find_assigned_tunnel_id(body: &[u8], base: usize, message: &'static str) -> wire::Result<u16> {
    let mut at = 0;
    while let Some(rest) = body.get(at..).filter(|rest| !rest.is_empty()) {
        let offset = base + at;
        let avp = Avp::new_checked(rest, offset)?;
        // §4.1: reserved bits make the AVP unrecognized; the endpoints' codec reads it as
        // `Unknown`, so routing by its value would key a tunnel the endpoints never see.
        if avp.vendor_id() == 0
            && avp.attr_type() == AvpType::AssignedTunnelId.to_u16()
            && avp.reserved() == 0
        {
            if avp.hidden() {
                return Err(wire::Error::Hidden {
                    avp: "Assigned Tunnel ID",
                    offset,
                    reason: "a forwarder holds no secret to unhide it",
                });
            }
            let &[high, low] = avp.value() else {
                return Err(wire::Error::BadValue {
                    field: "Assigned Tunnel ID AVP",
                    offset,
                    reason: "value must be 2 octets",
                });
            };
            return Ok(u16::from_be_bytes([high, low]));
        }
        // The check made the length at least the 6-octet AVP header: the walk advances.
        at += usize::from(avp.length());
    }
    Err(wire::Error::MissingAvp {
        message,
        avp: "Assigned Tunnel ID",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::build_ipv4_udp;
    use crate::wire::message::ParseOptions;
    use crate::wire::{samples, AvpRepr, AvpValue, ControlMessage, HeaderRepr, PacketRepr};
    use pnet_packet::ipv4::{self, Ipv4Packet};
    use pnet_packet::udp::{self, UdpPacket};
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// IHL 6 (a Router Alert option), TTL 64, 198.19.0.3:1701 -> 198.18.0.10:1701, a ZLB with
    /// Tunnel ID 1, Ns 1, Nr 1. Checksums computed independently (a Python script).
    const GOLDEN: [u8; 44] = [
        0x46, 0x00, 0x00, 0x2c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x07, 0x56, 0xc6, 0x13, 0x00,
        0x03, 0xc6, 0x12, 0x00, 0x0a, 0x94, 0x04, 0x00, 0x00, 0x06, 0xa5, 0x06, 0xa5, 0x00, 0x14,
        0x9e, 0x37, 0xc8, 0x02, 0x00, 0x0c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01,
    ];
    /// GOLDEN with the source rewritten to 198.18.0.1.
    const GOLDEN_SRC_REWRITTEN: [u8; 44] = [
        0x46, 0x00, 0x00, 0x2c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x07, 0x59, 0xc6, 0x12, 0x00,
        0x01, 0xc6, 0x12, 0x00, 0x0a, 0x94, 0x04, 0x00, 0x00, 0x06, 0xa5, 0x06, 0xa5, 0x00, 0x14,
        0x9e, 0x3a, 0xc8, 0x02, 0x00, 0x0c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01,
    ];
    /// ... and the TTL decremented to 63.
    const GOLDEN_TTL_63: [u8; 44] = [
        0x46, 0x00, 0x00, 0x2c, 0x12, 0x34, 0x40, 0x00, 0x3f, 0x11, 0x08, 0x59, 0xc6, 0x12, 0x00,
        0x01, 0xc6, 0x12, 0x00, 0x0a, 0x94, 0x04, 0x00, 0x00, 0x06, 0xa5, 0x06, 0xa5, 0x00, 0x14,
        0x9e, 0x3a, 0xc8, 0x02, 0x00, 0x0c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01,
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
                Error::Truncated {
                    field: "IPv4 header",
                    offset: 0,
                    need: 20,
                    have: 0,
                },
            ),
            (with(0, 0x66).to_vec(), Error::NotIpv4 { version: 6 }),
            (
                GOLDEN[..19].to_vec(),
                Error::Truncated {
                    field: "IPv4 header",
                    offset: 0,
                    need: 20,
                    have: 19,
                },
            ),
            (
                with(0, 0x44).to_vec(),
                Error::BadValue {
                    field: "IHL",
                    offset: 0,
                    reason: "less than 5 (the 20-octet IPv4 header)",
                },
            ),
            (
                GOLDEN[..22].to_vec(),
                Error::Truncated {
                    field: "IPv4 options",
                    offset: 20,
                    need: 24,
                    have: 22,
                },
            ),
            (
                with(3, 0x17).to_vec(),
                Error::BadValue {
                    field: "Total Length",
                    offset: 2,
                    reason: "shorter than the IPv4 header",
                },
            ),
            (
                GOLDEN[..43].to_vec(),
                Error::Truncated {
                    field: "Total Length",
                    offset: 2,
                    need: 44,
                    have: 43,
                },
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
                Error::Truncated {
                    field: "UDP header",
                    offset: 24,
                    need: 32,
                    have: 27,
                },
            ),
            (
                with(29, 7).to_vec(),
                Error::BadValue {
                    field: "UDP Length",
                    offset: 28,
                    reason: "less than the 8-octet UDP header",
                },
            ),
            (
                with(29, 0x15).to_vec(),
                Error::Truncated {
                    field: "UDP Length",
                    offset: 28,
                    need: 45,
                    have: 44,
                },
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

    fn m(value: AvpValue<'static>) -> AvpRepr<'static> {
        AvpRepr {
            mandatory: true,
            hidden: false,
            reserved: 0,
            value,
        }
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
        let mut all = vec![m(AvpValue::MessageType(MessageType::Sccrp))];
        all.extend(avps);
        emit(&PacketRepr::Control(ControlMessage {
            header: HeaderRepr::control(7, 0, 0, 1),
            avps: all,
        }))
    }

    #[test]
    fn classify_sccrp_cases() {
        let bytes = sccrp(vec![
            m(AvpValue::ProtocolVersion {
                version: 1,
                revision: 0,
            }),
            m(AvpValue::HostName(b"lns".as_slice().into())),
            m(AvpValue::AssignedTunnelId(0x4242)),
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
            classify(&sccrp(vec![m(AvpValue::HostName(
                b"lns".as_slice().into()
            ))])),
            Err(wire::Error::MissingAvp {
                message: "SCCRP",
                avp: "Assigned Tunnel ID"
            })
        );

        let hidden = sccrp(vec![
            m(AvpValue::RandomVector(
                b"0123456789abcdef".as_slice().into(),
            )),
            AvpRepr {
                hidden: true,
                ..m(AvpValue::AssignedTunnelId(5))
            },
        ]);
        // Header 12 + Message Type 8 + Random Vector 22: the hidden AVP starts at byte 42.
        assert!(matches!(
            classify(&hidden),
            Err(wire::Error::Hidden { offset: 42, .. })
        ));

        // An Assigned Tunnel ID AVP whose value is 3 octets long.
        let mut odd = sccrp(vec![m(AvpValue::AssignedTunnelId(5))]);
        odd.push(0);
        odd[3] += 1; // L2TP Length
        odd[21] += 1; // AVP Length
        assert_eq!(
            classify(&odd),
            Err(wire::Error::BadValue {
                field: "Assigned Tunnel ID AVP",
                offset: 20,
                reason: "value must be 2 octets",
            })
        );
    }

    #[test]
    fn classify_first_avp_must_be_message_type() {
        let bytes = [
            0xc8, 0x02, 0x00, 0x14, 0, 1, 0, 0, 0, 0, 0, 0, 0x80, 0x08, 0, 0, 0, 9, 0, 7,
        ];
        assert_eq!(
            classify(&bytes),
            Err(wire::Error::BadValue {
                field: "Message Type AVP",
                offset: 12,
                reason: "the first AVP of a control message must be Message Type",
            })
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
            m(AvpValue::AssignedTunnelId(0x1111)),
            m(AvpValue::AssignedTunnelId(0x2222)),
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
            Err(wire::Error::BadValue { offset: 12, .. })
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
}
