//! A PPP frame as an L2TP data message carries it (RFC 2661 §5.4, RFC 1662 §3.1, RFC 1661 §2),
//! and the control packet that LCP, PAP, CHAP, IPCP and IPv6CP share (RFC 1661 §5).
//!
//! ```text
//! +----------+----------+----------+-------------+
//! | Address  | Control  | Protocol | Information |
//! | 0xff     | 0x03     | 1 or 2   | ...         |
//! +----------+----------+----------+-------------+
//!   omitted with ACFC      1 octet with PFC
//!
//! control packet (the Information of LCP, PAP, CHAP, IPCP, IPv6CP):
//! | Code | Identifier | Length (2) | Data ... |      Length counts from Code; octets past
//!                                                   it are padding (§5)
//! option (the Data of Configure-*):
//! | Type | Length | Value ... |                     Length counts Type and itself: ≥ 2
//! ```
//!
//! Offsets in errors count from the first octet of the PPP frame (the address octet when it is
//! there), or of the control packet for [`Packet`] and [`Options`].

use crate::malformed::{BadValue, Truncated};

/// PPP protocol numbers (RFC 1661 §2, the IANA PPP DLL protocol registry).
pub mod protocol {
    pub const IPV4: u16 = 0x0021;
    pub const IPV6: u16 = 0x0057;
    pub const IPCP: u16 = 0x8021;
    pub const IPV6CP: u16 = 0x8057;
    pub const LCP: u16 = 0xc021;
    pub const PAP: u16 = 0xc023;
    pub const CHAP: u16 = 0xc223;

    /// A short name for logs and decode output; `None` for one this crate does not speak.
    pub fn name(protocol: u16) -> Option<&'static str> {
        Some(match protocol {
            IPV4 => "IPv4",
            IPV6 => "IPv6",
            IPCP => "IPCP",
            IPV6CP => "IPv6CP",
            LCP => "LCP",
            PAP => "PAP",
            CHAP => "CHAP",
            _ => return None,
        })
    }
}

/// The HDLC-like address and control octets (RFC 1662 §3.1) that L2TP keeps in front of the
/// protocol unless LCP negotiated them away (ACFC).
pub const ADDRESS_CONTROL: [u8; 2] = [0xff, 0x03];

/// Why bytes are not a PPP frame or control packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Truncated(#[from] Truncated),
    #[error(transparent)]
    BadValue(#[from] BadValue),
}

pub type Result<T> = core::result::Result<T, Error>;

/// How a frame's header was written: with or without address/control, with a one- or
/// two-octet protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameRepr {
    pub protocol: u16,
    /// Address and control omitted (Address-and-Control-Field-Compression, RFC 1661 §6.6).
    pub acfc: bool,
    /// Protocol in one octet (Protocol-Field-Compression, §6.5); only possible for protocols
    /// below 0x100.
    pub pfc: bool,
}

impl FrameRepr {
    /// A frame header with address/control and a two-octet protocol: what every frame before
    /// LCP opens must use (RFC 1661 §6.5, §6.6), and what LCP must always use.
    pub const fn full(protocol: u16) -> FrameRepr {
        FrameRepr {
            protocol,
            acfc: false,
            pfc: false,
        }
    }

    /// Octets before the information field.
    pub fn header_len(&self) -> usize {
        let address_control = if self.acfc { 0 } else { 2 };
        let protocol = if self.compresses_protocol() { 1 } else { 2 };
        address_control + protocol
    }

    fn compresses_protocol(&self) -> bool {
        self.pfc && self.protocol < 0x100
    }

    /// Reads the header of `frame`; the rest is the information field.
    pub fn parse(frame: &[u8]) -> Result<(FrameRepr, &[u8])> {
        let (acfc, rest) = match frame.strip_prefix(&ADDRESS_CONTROL[..]) {
            Some(rest) => (false, rest),
            None => (true, frame),
        };
        let at = frame.len() - rest.len();
        let Some(&first) = rest.first() else {
            return Err(Truncated {
                field: "PPP Protocol",
                offset: at,
                need: at + 1,
                have: frame.len(),
            }
            .into());
        };
        // §2: the least significant octet of a protocol is odd, every other one even; an odd
        // first octet is therefore a whole (compressed) protocol.
        if first & 1 == 1 {
            let info = rest.get(1..).unwrap_or_default();
            let repr = FrameRepr {
                protocol: u16::from(first),
                acfc,
                pfc: true,
            };
            return Ok((repr, info));
        }
        let Some((protocol, info)) = rest.split_first_chunk::<2>() else {
            return Err(Truncated {
                field: "PPP Protocol",
                offset: at,
                need: at + 2,
                have: frame.len(),
            }
            .into());
        };
        let protocol = u16::from_be_bytes(*protocol);
        if protocol & 1 == 0 {
            return Err(BadValue {
                field: "PPP Protocol",
                offset: at,
                reason: "even: the last octet of a protocol number is odd (RFC 1661 §2)",
            }
            .into());
        }
        let repr = FrameRepr {
            protocol,
            acfc,
            pfc: false,
        };
        Ok((repr, info))
    }

    /// Writes the header at the start of `buffer`; returns its length.
    pub fn emit(&self, buffer: &mut [u8]) -> Result<usize> {
        let len = self.header_len();
        let Some(out) = buffer.get_mut(..len) else {
            return Err(too_small("PPP header", len, buffer.len()));
        };
        let protocol = if self.acfc {
            out
        } else {
            out[..2].copy_from_slice(&ADDRESS_CONTROL);
            &mut out[2..]
        };
        match protocol {
            [one] => *one = self.protocol as u8,
            two => two.copy_from_slice(&self.protocol.to_be_bytes()),
        }
        Ok(len)
    }

    /// Appends the header and `info` to `out`: the whole frame.
    pub fn emit_to_vec(&self, info: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + self.header_len(), 0);
        // The slice was sized by header_len just above, so emit cannot run short.
        let _ = self.emit(&mut out[start..]);
        out.extend_from_slice(info);
    }
}

fn too_small(field: &'static str, need: usize, have: usize) -> Error {
    Error::Truncated(Truncated {
        field,
        offset: 0,
        need,
        have,
    })
}

/// A whole PPP frame, checked once: its header reads and it has an information field (which
/// may be empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
    repr: FrameRepr,
}

impl<T: AsRef<[u8]>> Frame<T> {
    pub fn new_checked(buffer: T) -> Result<Frame<T>> {
        let (repr, _) = FrameRepr::parse(buffer.as_ref())?;
        Ok(Frame { buffer, repr })
    }

    pub fn repr(&self) -> FrameRepr {
        self.repr
    }

    pub fn protocol(&self) -> u16 {
        self.repr.protocol
    }

    pub fn info(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(self.repr.header_len()..)
            .unwrap_or_default()
    }
}

mod field {
    pub const CODE: usize = 0;
    pub const IDENTIFIER: usize = 1;
    pub const LENGTH: core::ops::Range<usize> = 2..4;
    pub const DATA: usize = 4;
}

/// Octets of a control packet's Code, Identifier and Length.
pub const PACKET_HEADER_LEN: usize = field::DATA;

/// A control packet (LCP, PAP, CHAP, IPCP, IPv6CP). After `new_checked` the Length is at
/// least 4 and within the buffer; octets past it are padding and not part of [`Packet::data`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let data = buffer.as_ref();
        if data.len() < PACKET_HEADER_LEN {
            return Err(Truncated {
                field: "PPP control packet header",
                offset: 0,
                need: PACKET_HEADER_LEN,
                have: data.len(),
            }
            .into());
        }
        let packet = Packet::new_unchecked(buffer);
        let length = usize::from(packet.length());
        if length < PACKET_HEADER_LEN {
            return Err(BadValue {
                field: "PPP Length",
                offset: field::LENGTH.start,
                reason: "less than the 4 octets of Code, Identifier and Length",
            }
            .into());
        }
        let have = packet.buffer.as_ref().len();
        if length > have {
            return Err(Truncated {
                field: "PPP control packet (its Length)",
                offset: field::DATA,
                need: length,
                have,
            }
            .into());
        }
        Ok(packet)
    }

    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn identifier(&self) -> u8 {
        self.buffer.as_ref()[field::IDENTIFIER]
    }

    pub fn length(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::LENGTH.start], b[field::LENGTH.start + 1]])
    }

    /// The octets after Length, up to Length.
    pub fn data(&self) -> &[u8] {
        let end = usize::from(self.length());
        &self.buffer.as_ref()[field::DATA..end]
    }
}

/// A control packet, typed only as far as every protocol agrees: what the data means depends on
/// the protocol and the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketRepr<'a> {
    pub code: u8,
    pub identifier: u8,
    pub data: &'a [u8],
}

impl<'a> PacketRepr<'a> {
    pub fn parse(packet: &Packet<&'a [u8]>) -> PacketRepr<'a> {
        let end = usize::from(packet.length());
        PacketRepr {
            code: packet.code(),
            identifier: packet.identifier(),
            data: packet.buffer.get(field::DATA..end).unwrap_or_default(),
        }
    }

    /// Checks and reads a control packet from the information field of a frame.
    pub fn parse_bytes(info: &'a [u8]) -> Result<PacketRepr<'a>> {
        Ok(PacketRepr::parse(&Packet::new_checked(info)?))
    }

    pub fn buffer_len(&self) -> usize {
        PACKET_HEADER_LEN + self.data.len()
    }

    /// Appends the packet to `out`. Fails (writing nothing) when the data does not fit the
    /// 16-bit Length.
    pub fn emit_to_vec(&self, out: &mut Vec<u8>) -> Result<()> {
        let length = u16::try_from(self.buffer_len()).map_err(|_| {
            Error::BadValue(BadValue {
                field: "PPP Length",
                offset: field::LENGTH.start,
                reason: "the data is longer than a 16-bit Length can say",
            })
        })?;
        out.push(self.code);
        out.push(self.identifier);
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(self.data);
        Ok(())
    }
}

/// The options of a Configure-Request, -Ack, -Nak or -Reject, in order: `(type, value)` with
/// the value's octets (Length minus 2). A Length below 2 or past the end is an error, after
/// which the iterator stops (RFC 1661 §6 leaves no way to skip such an option).
#[derive(Debug, Clone)]
pub struct Options<'a> {
    data: &'a [u8],
    /// Where `data` starts inside the control packet, for error offsets.
    offset: usize,
}

impl<'a> Options<'a> {
    /// The options in the data of a control packet.
    pub fn new(data: &'a [u8]) -> Options<'a> {
        Options {
            data,
            offset: PACKET_HEADER_LEN,
        }
    }

    /// Whether every option reads: what a Configure-Request needs before it is judged at all.
    pub fn check(&self) -> Result<()> {
        self.clone().try_for_each(|option| option.map(|_| ()))
    }
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<(u8, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, rest) = self.data.split_first()?;
        let at = self.offset;
        let Some(&length) = rest.first() else {
            self.data = &[];
            return Some(Err(Truncated {
                field: "PPP option Length",
                offset: at + 1,
                need: 2,
                have: 1,
            }
            .into()));
        };
        let length = usize::from(length);
        if length < 2 {
            self.data = &[];
            return Some(Err(BadValue {
                field: "PPP option Length",
                offset: at + 1,
                reason: "less than 2: an option's Length counts its Type and Length octets",
            }
            .into()));
        }
        let Some(value) = self.data.get(2..length) else {
            let have = self.data.len();
            self.data = &[];
            return Some(Err(Truncated {
                field: "PPP option",
                offset: at,
                need: length,
                have,
            }
            .into()));
        };
        self.data = self.data.get(length..).unwrap_or_default();
        self.offset += length;
        Some(Ok((kind, value)))
    }
}

/// Appends one option (type, length, value) to a Configure packet's data. The value must be at
/// most 253 octets: every option this crate writes is a few octets.
pub fn push_option(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    let length = u8::try_from(value.len() + 2).unwrap_or(u8::MAX);
    out.push(kind);
    out.push(length);
    out.extend_from_slice(value.get(..usize::from(length) - 2).unwrap_or(value));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn full_header_with_address_control_and_two_octet_protocol() {
        let frame = [0xff, 0x03, 0xc0, 0x21, 0x01, 0x07, 0x00, 0x04];
        let (repr, info) = FrameRepr::parse(&frame).unwrap();
        assert_eq!(repr, FrameRepr::full(protocol::LCP));
        assert_eq!(info, &frame[4..]);
        let mut out = Vec::new();
        repr.emit_to_vec(info, &mut out);
        assert_eq!(out, frame);
    }

    #[test]
    fn acfc_and_pfc_compressed_headers() {
        // IPv4 with both compressions: one octet 0x21, then the packet.
        let (repr, info) = FrameRepr::parse(&[0x21, 0x45, 0x00]).unwrap();
        assert_eq!(
            repr,
            FrameRepr {
                protocol: protocol::IPV4,
                acfc: true,
                pfc: true
            }
        );
        assert_eq!(info, &[0x45, 0x00]);
        // Address/control kept, protocol compressed.
        let (repr, _) = FrameRepr::parse(&[0xff, 0x03, 0x21, 0x45]).unwrap();
        assert_eq!((repr.acfc, repr.pfc, repr.protocol), (false, true, 0x21));
        // ACFC alone, two-octet protocol.
        let (repr, info) = FrameRepr::parse(&[0xc2, 0x23, 0x01]).unwrap();
        assert_eq!((repr.acfc, repr.pfc, repr.protocol), (true, false, 0xc223));
        assert_eq!(info, &[0x01]);
        let mut out = Vec::new();
        repr.emit_to_vec(info, &mut out);
        assert_eq!(out, [0xc2, 0x23, 0x01]);
    }

    #[test]
    fn pfc_is_not_applied_to_protocols_above_0xff() {
        let repr = FrameRepr {
            protocol: protocol::LCP,
            acfc: true,
            pfc: true,
        };
        assert_eq!(repr.header_len(), 2);
        let mut out = Vec::new();
        repr.emit_to_vec(&[], &mut out);
        assert_eq!(out, [0xc0, 0x21]);
    }

    #[test]
    fn bad_frames_are_named() {
        assert_eq!(
            FrameRepr::parse(&[0xff, 0x03]).unwrap_err().to_string(),
            "PPP Protocol truncated at byte 2: need 3 bytes, have 2"
        );
        assert_eq!(
            FrameRepr::parse(&[0xc0]).unwrap_err().to_string(),
            "PPP Protocol truncated at byte 0: need 2 bytes, have 1"
        );
        assert!(FrameRepr::parse(&[0xc0, 0x20])
            .unwrap_err()
            .to_string()
            .contains("even"));
    }

    #[test]
    fn packet_length_rules() {
        // Length 4: no data; the padding after it is not data.
        let p = PacketRepr::parse_bytes(&[5, 9, 0, 4, 0xaa, 0xbb]).unwrap();
        assert_eq!((p.code, p.identifier, p.data), (5, 9, &[][..]));
        assert!(PacketRepr::parse_bytes(&[5, 9, 0, 3])
            .unwrap_err()
            .to_string()
            .contains("less than the 4 octets"));
        assert_eq!(
            PacketRepr::parse_bytes(&[1, 1, 0, 9, 1, 2])
                .unwrap_err()
                .to_string(),
            "PPP control packet (its Length) truncated at byte 4: need 9 bytes, have 6"
        );
        assert!(PacketRepr::parse_bytes(&[1, 1, 0]).is_err());
        let mut out = Vec::new();
        PacketRepr {
            code: 1,
            identifier: 2,
            data: &[3, 4],
        }
        .emit_to_vec(&mut out)
        .unwrap();
        assert_eq!(out, [1, 2, 0, 6, 3, 4]);
    }

    #[test]
    fn options_read_in_order_and_bad_lengths_stop_them() {
        let data = [1, 4, 0x05, 0xdc, 5, 6, 1, 2, 3, 4, 7, 2];
        let got: Vec<_> = Options::new(&data).collect::<Result<_>>().unwrap();
        assert_eq!(
            got,
            vec![(1, &[0x05, 0xdc][..]), (5, &[1, 2, 3, 4][..]), (7, &[][..])]
        );
        for bad in [&[1u8, 0][..], &[1, 1, 9], &[1, 5, 0], &[1]] {
            let mut options = Options::new(bad);
            assert!(options.next().unwrap().is_err(), "{bad:?}");
            assert!(options.next().is_none());
            assert!(Options::new(bad).check().is_err());
        }
        // The offset of a bad option counts from the control packet's Code.
        let err = Options::new(&[7, 2, 1, 0]).nth(1).unwrap().unwrap_err();
        assert_eq!(
            err.to_string(),
            "PPP option Length at byte 7: less than 2: an option's Length counts its Type and \
             Length octets"
        );
    }

    #[test]
    fn push_option_writes_type_length_value() {
        let mut out = Vec::new();
        push_option(&mut out, 1, &1500u16.to_be_bytes());
        push_option(&mut out, 7, &[]);
        assert_eq!(out, [1, 4, 0x05, 0xdc, 7, 2]);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok((repr, info)) = FrameRepr::parse(&bytes) {
                let mut out = Vec::new();
                repr.emit_to_vec(info, &mut out);
                prop_assert_eq!(FrameRepr::parse(&out).unwrap(), (repr, info));
                if let Ok(packet) = PacketRepr::parse_bytes(info) {
                    prop_assert!(packet.buffer_len() <= info.len());
                    let _ = Options::new(packet.data).count();
                }
            }
        }
    }
}
