//! The L2TP header (RFC 2661 §3.1).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |T|L|x|x|S|x|O|P|x|x|x|x|  Ver  |          Length (opt)         |
//! |           Tunnel ID           |           Session ID          |
//! |             Ns (opt)          |             Nr (opt)          |
//! |      Offset Size (opt)        |    Offset pad... (opt)
//! ```
//!
//! Every field after the first two octets moves with the flags, so the view computes positions
//! from the flags instead of using fixed ranges.

use super::{Error, Result};
use crate::malformed::{BadValue, Truncated};
use serde::Serialize;

mod field {
    pub const FLAGS: usize = 0;
    pub const VERSION: usize = 1;
    pub const OPTIONAL: usize = 2;

    pub const T: u8 = 0x80;
    pub const L: u8 = 0x40;
    pub const S: u8 = 0x08;
    pub const O: u8 = 0x02;
    pub const P: u8 = 0x01;
    /// The x bits of the first octet; the high nibble of the second octet is reserved too.
    pub const RESERVED_FLAGS: u8 = 0x34;
    pub const VERSION_MASK: u8 = 0x0f;
}

/// The only version this crate speaks; 1 is L2F, 3 is L2TPv3.
pub const VERSION: u8 = 2;

/// A read-only or mutable view of an L2TP header and the message behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    pub const fn new_unchecked(buffer: T) -> Header<T> {
        Header { buffer }
    }

    /// Checks that every field the flags announce fits in the buffer, that the version is 2 and
    /// that the Length field (when present) neither undercuts the header nor overruns the buffer.
    pub fn new_checked(buffer: T) -> Result<Header<T>> {
        let header = Header::new_unchecked(buffer);
        header.check_len()?;
        Ok(header)
    }

    fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < field::OPTIONAL {
            return Err(Error::Truncated(Truncated {
                field: "L2TP flags and version",
                offset: 0,
                need: field::OPTIONAL,
                have: data.len(),
            }));
        }
        match self.version() {
            VERSION => {}
            1 => return Err(Error::VersionL2f { offset: 1 }),
            3 => return Err(Error::VersionL2tpv3 { offset: 1 }),
            version => return Err(Error::VersionUnknown { version, offset: 1 }),
        }
        // The header length without the offset pad; all of it must be present.
        let fixed = self.fixed_len();
        if data.len() < fixed {
            return Err(Error::Truncated(Truncated {
                field: self.field_at(data.len()),
                offset: data.len(),
                need: fixed,
                have: data.len(),
            }));
        }
        let total = self.packet_len();
        if self.has_length() {
            if total < fixed {
                return Err(Error::BadValue(BadValue {
                    field: "Length",
                    offset: field::OPTIONAL,
                    reason: "shorter than the header",
                }));
            }
            if total > data.len() {
                return Err(Error::Truncated(Truncated {
                    field: "Length",
                    offset: field::OPTIONAL,
                    need: total,
                    have: data.len(),
                }));
            }
        }
        if self.header_len() > total {
            return Err(Error::Truncated(Truncated {
                field: "Offset Pad",
                offset: fixed,
                need: self.header_len(),
                have: total,
            }));
        }
        Ok(())
    }

    /// Names the optional field that starts at or covers `offset`, for truncation errors.
    fn field_at(&self, offset: usize) -> &'static str {
        let mut at = field::OPTIONAL;
        let mut fields: [(&'static str, bool); 5] = [
            ("Length", self.has_length()),
            ("Tunnel ID", true),
            ("Session ID", true),
            ("Ns", self.has_sequence()),
            ("Nr", self.has_sequence()),
        ];
        for (name, present) in fields.iter_mut() {
            if *present {
                if offset < at + 2 {
                    return name;
                }
                at += 2;
            }
        }
        "Offset Size"
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    fn u16_at(&self, at: usize) -> u16 {
        let data = self.buffer.as_ref();
        u16::from_be_bytes([data[at], data[at + 1]])
    }

    /// T bit: a control message.
    pub fn is_control(&self) -> bool {
        self.flags() & field::T != 0
    }
    pub fn has_length(&self) -> bool {
        self.flags() & field::L != 0
    }
    pub fn has_sequence(&self) -> bool {
        self.flags() & field::S != 0
    }
    pub fn has_offset(&self) -> bool {
        self.flags() & field::O != 0
    }
    pub fn priority(&self) -> bool {
        self.flags() & field::P != 0
    }
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION] & field::VERSION_MASK
    }
    /// The reserved bits of the first two octets, in place (zero on a conforming packet).
    pub fn reserved(&self) -> u16 {
        let data = self.buffer.as_ref();
        (u16::from(data[field::FLAGS] & field::RESERVED_FLAGS) << 8)
            | u16::from(data[field::VERSION] & !field::VERSION_MASK)
    }

    fn length_at(&self) -> Option<usize> {
        self.has_length().then_some(field::OPTIONAL)
    }
    /// Where the Tunnel ID sits: after the flags and the Length field, when present.
    pub fn tunnel_id_at(&self) -> usize {
        field::OPTIONAL + if self.has_length() { 2 } else { 0 }
    }
    fn ns_at(&self) -> Option<usize> {
        self.has_sequence().then(|| self.tunnel_id_at() + 4)
    }
    fn offset_size_at(&self) -> Option<usize> {
        let after_ids = self.tunnel_id_at() + 4;
        let at = if self.has_sequence() {
            after_ids + 4
        } else {
            after_ids
        };
        self.has_offset().then_some(at)
    }
    fn fixed_len(&self) -> usize {
        let mut len = self.tunnel_id_at() + 4;
        if self.has_sequence() {
            len += 4;
        }
        if self.has_offset() {
            len += 2;
        }
        len
    }

    /// The Length field, when present.
    pub fn length(&self) -> Option<u16> {
        self.length_at().map(|at| self.u16_at(at))
    }
    pub fn tunnel_id(&self) -> u16 {
        self.u16_at(self.tunnel_id_at())
    }
    pub fn session_id(&self) -> u16 {
        self.u16_at(self.tunnel_id_at() + 2)
    }
    pub fn ns(&self) -> Option<u16> {
        self.ns_at().map(|at| self.u16_at(at))
    }
    pub fn nr(&self) -> Option<u16> {
        self.ns_at().map(|at| self.u16_at(at + 2))
    }
    pub fn offset_size(&self) -> Option<u16> {
        self.offset_size_at().map(|at| self.u16_at(at))
    }

    /// Header length including the offset pad.
    pub fn header_len(&self) -> usize {
        self.fixed_len() + self.offset_size().map_or(0, usize::from)
    }

    /// The message length: the Length field when present, else the whole buffer.
    pub fn packet_len(&self) -> usize {
        match self.length() {
            Some(len) => usize::from(len),
            None => self.buffer.as_ref().len(),
        }
    }

    /// The bytes after the header (and offset pad) up to the message length.
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        data.get(self.header_len()..self.packet_len())
            .unwrap_or_default()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    fn set_u16_at(&mut self, at: usize, value: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets Ns and Nr in place; a no-op when the S bit is clear. Retransmission rewrites Nr so.
    pub fn set_sequence(&mut self, ns: u16, nr: u16) {
        if let Some(at) = self.ns_at() {
            self.set_u16_at(at, ns);
            self.set_u16_at(at + 2, nr);
        }
    }

    pub fn set_tunnel_id(&mut self, value: u16) {
        let at = self.tunnel_id_at();
        self.set_u16_at(at, value);
    }

    pub fn set_session_id(&mut self, value: u16) {
        let at = self.tunnel_id_at() + 2;
        self.set_u16_at(at, value);
    }
}

/// Ns and Nr (RFC 2661 §5.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Sequence {
    pub ns: u16,
    pub nr: u16,
}

/// The decoded header. The Length value is not kept: `emit` derives it from the payload length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct HeaderRepr {
    pub is_control: bool,
    /// L bit: whether the Length field is present (always for control messages).
    pub has_length: bool,
    pub tunnel_id: u16,
    pub session_id: u16,
    pub sequence: Option<Sequence>,
    /// Offset Size, when the O bit is set; the pad is emitted as zeros.
    pub offset_size: Option<u16>,
    pub priority: bool,
    /// Reserved bits as they stood on the wire (see `Header::reserved`); kept so that decoding
    /// reports them and re-emitting reproduces them.
    #[serde(skip_serializing_if = "is_zero")]
    pub reserved: u16,
}

fn is_zero(value: &u16) -> bool {
    *value == 0
}

impl HeaderRepr {
    /// A control message header: T, L and S set, as RFC 2661 §3.1 requires.
    pub fn control(tunnel_id: u16, session_id: u16, ns: u16, nr: u16) -> HeaderRepr {
        HeaderRepr {
            is_control: true,
            has_length: true,
            tunnel_id,
            session_id,
            sequence: Some(Sequence { ns, nr }),
            offset_size: None,
            priority: false,
            reserved: 0,
        }
    }

    /// A data message header with only the IDs (the smallest form xl2tpd accepts with L set).
    pub fn data(tunnel_id: u16, session_id: u16) -> HeaderRepr {
        HeaderRepr {
            is_control: false,
            has_length: true,
            tunnel_id,
            session_id,
            sequence: None,
            offset_size: None,
            priority: false,
            reserved: 0,
        }
    }

    /// Reads a checked header. Control messages must carry L and S and must not carry O or P
    /// (RFC 2661 §3.1); those violations are errors that name the bit.
    pub fn parse<T: AsRef<[u8]>>(header: &Header<T>) -> Result<HeaderRepr> {
        if header.is_control() {
            let rule = |ok: bool, field: &'static str, reason: &'static str| {
                if ok {
                    Ok(())
                } else {
                    Err(Error::BadValue(BadValue {
                        field,
                        offset: field::FLAGS,
                        reason,
                    }))
                }
            };
            rule(
                header.has_length(),
                "L bit",
                "must be set in a control message",
            )?;
            rule(
                header.has_sequence(),
                "S bit",
                "must be set in a control message",
            )?;
            rule(
                !header.has_offset(),
                "O bit",
                "must be clear in a control message",
            )?;
            rule(
                !header.priority(),
                "P bit",
                "must be clear in a control message",
            )?;
        }
        Ok(HeaderRepr {
            is_control: header.is_control(),
            has_length: header.has_length(),
            tunnel_id: header.tunnel_id(),
            session_id: header.session_id(),
            sequence: header
                .ns()
                .zip(header.nr())
                .map(|(ns, nr)| Sequence { ns, nr }),
            offset_size: header.offset_size(),
            priority: header.priority(),
            reserved: header.reserved(),
        })
    }

    /// Header length including the offset pad.
    pub fn buffer_len(&self) -> usize {
        let mut len = 6;
        if self.has_length {
            len += 2;
        }
        if self.sequence.is_some() {
            len += 4;
        }
        if let Some(size) = self.offset_size {
            len += 2 + usize::from(size);
        }
        len
    }

    /// Writes the header for a payload of `payload_len` bytes; returns the header length.
    pub fn emit(&self, buf: &mut [u8], payload_len: usize) -> Result<usize> {
        let header_len = self.buffer_len();
        let total = header_len.saturating_add(payload_len);
        if buf.len() < header_len {
            return Err(Error::BufferTooSmall {
                field: "L2TP header",
                need: header_len,
                have: buf.len(),
            });
        }
        let length = if self.has_length {
            Some(u16::try_from(total).map_err(|_| {
                Error::BadValue(BadValue {
                    field: "Length",
                    offset: field::OPTIONAL,
                    reason: "message longer than 65535 bytes",
                })
            })?)
        } else {
            None
        };
        let mut flags = (self.reserved >> 8) as u8 & field::RESERVED_FLAGS;
        for (set, bit) in [
            (self.is_control, field::T),
            (self.has_length, field::L),
            (self.sequence.is_some(), field::S),
            (self.offset_size.is_some(), field::O),
            (self.priority, field::P),
        ] {
            if set {
                flags |= bit;
            }
        }
        buf[field::FLAGS] = flags;
        buf[field::VERSION] = (self.reserved as u8 & !field::VERSION_MASK) | VERSION;
        let mut at = field::OPTIONAL;
        let mut put = |value: u16| {
            buf[at..at + 2].copy_from_slice(&value.to_be_bytes());
            at += 2;
        };
        if let Some(length) = length {
            put(length);
        }
        put(self.tunnel_id);
        put(self.session_id);
        if let Some(Sequence { ns, nr }) = self.sequence {
            put(ns);
            put(nr);
        }
        if let Some(size) = self.offset_size {
            put(size);
            buf[at..header_len].fill(0);
        }
        Ok(header_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An SCCRQ header as xl2tpd sends it: T, L, S, Ver 2, Length 0x0059, tunnel 0, session 0.
    const SCCRQ_HEADER: [u8; 12] = [
        0xc8, 0x02, 0x00, 0x59, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn parses_control_header() {
        let mut packet = SCCRQ_HEADER.to_vec();
        packet.resize(0x59, 0);
        let header = Header::new_checked(&packet[..]).unwrap();
        assert!(header.is_control());
        assert_eq!(header.length(), Some(0x59));
        assert_eq!(header.header_len(), 12);
        assert_eq!(header.payload().len(), 0x59 - 12);
        let repr = HeaderRepr::parse(&header).unwrap();
        assert_eq!(repr, HeaderRepr::control(0, 0, 0, 0));
        let mut out = [0u8; 12];
        assert_eq!(repr.emit(&mut out, 0x59 - 12).unwrap(), 12);
        assert_eq!(out, SCCRQ_HEADER);
    }

    #[test]
    fn parses_data_header_with_offset() {
        // L, O set; tunnel 7, session 9; offset size 2 with pad; payload ff 03.
        let packet = [
            0x42, 0x02, 0x00, 0x0e, 0x00, 0x07, 0x00, 0x09, 0x00, 0x02, 0xaa, 0xbb, 0xff, 0x03,
        ];
        let header = Header::new_checked(&packet[..]).unwrap();
        let repr = HeaderRepr::parse(&header).unwrap();
        assert_eq!(repr.offset_size, Some(2));
        assert_eq!(header.payload(), &[0xff, 0x03]);
        assert_eq!(repr.buffer_len(), 12);
    }

    #[test]
    fn minimal_data_header() {
        let packet = [0x00, 0x02, 0x00, 0x01, 0x00, 0x02, 0xc0, 0x21];
        let header = Header::new_checked(&packet[..]).unwrap();
        assert_eq!(header.tunnel_id(), 1);
        assert_eq!(header.session_id(), 2);
        assert_eq!(header.payload(), &[0xc0, 0x21]);
    }

    #[test]
    fn rejects_other_versions_by_name() {
        assert_eq!(
            Header::new_checked(&[0xc8, 0x01, 0, 12][..]),
            Err(Error::VersionL2f { offset: 1 })
        );
        assert_eq!(
            Header::new_checked(&[0xc8, 0x03, 0, 12][..]),
            Err(Error::VersionL2tpv3 { offset: 1 })
        );
        assert_eq!(
            Header::new_checked(&[0xc8, 0x07][..]),
            Err(Error::VersionUnknown {
                version: 7,
                offset: 1
            })
        );
    }

    #[test]
    fn truncation_names_the_field() {
        let err = Header::new_checked(&SCCRQ_HEADER[..9]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Truncated(Truncated {
                    field: "Ns",
                    offset: 9,
                    ..
                })
            ),
            "{err:?}"
        );
        let err = Header::new_checked(&SCCRQ_HEADER[..]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Truncated(Truncated {
                    field: "Length",
                    need: 0x59,
                    have: 12,
                    ..
                })
            ),
            "{err:?}"
        );
        let mut short = SCCRQ_HEADER;
        short[3] = 4;
        assert!(matches!(
            Header::new_checked(&short[..]),
            Err(Error::BadValue(BadValue {
                field: "Length",
                ..
            }))
        ));
    }

    #[test]
    fn control_rules_name_the_bit() {
        // T set, L clear.
        let packet = [0x88, 0x02, 0, 1, 0, 2, 0, 0, 0, 0];
        let header = Header::new_checked(&packet[..]).unwrap();
        assert!(matches!(
            HeaderRepr::parse(&header),
            Err(Error::BadValue(BadValue { field: "L bit", .. }))
        ));
    }

    #[test]
    fn reserved_bits_are_reported_and_kept() {
        let mut packet = SCCRQ_HEADER;
        packet[0] |= 0x20;
        packet[1] |= 0x10;
        packet[3] = 12;
        let header = Header::new_checked(&packet[..]).unwrap();
        let repr = HeaderRepr::parse(&header).unwrap();
        assert_eq!(repr.reserved, 0x2010);
        let mut out = [0u8; 12];
        repr.emit(&mut out, 0).unwrap();
        assert_eq!(out, packet);
    }

    #[test]
    fn set_sequence_rewrites_in_place() {
        let mut packet = SCCRQ_HEADER;
        packet[3] = 12;
        let mut header = Header::new_checked(&mut packet[..]).unwrap();
        header.set_sequence(5, 9);
        assert_eq!(header.ns(), Some(5));
        assert_eq!(header.nr(), Some(9));
    }

    fn header_repr() -> impl Strategy<Value = HeaderRepr> {
        (
            any::<bool>(),
            any::<bool>(),
            any::<(u16, u16)>(),
            proptest::option::of(any::<(u16, u16)>()),
            proptest::option::of(0u16..16),
            any::<bool>(),
            any::<u16>(),
        )
            .prop_map(|(control, l, ids, seq, offset, p, reserved)| {
                let reserved = reserved & 0x34f0;
                if control {
                    let seq = seq.unwrap_or_default();
                    HeaderRepr {
                        reserved,
                        ..HeaderRepr::control(ids.0, ids.1, seq.0, seq.1)
                    }
                } else {
                    HeaderRepr {
                        is_control: false,
                        has_length: l,
                        tunnel_id: ids.0,
                        session_id: ids.1,
                        sequence: seq.map(|(ns, nr)| Sequence { ns, nr }),
                        offset_size: offset,
                        priority: p,
                        reserved,
                    }
                }
            })
    }

    proptest! {
        #[test]
        fn emit_then_parse_roundtrips(repr in header_repr(), payload in 0usize..32) {
            let mut buf = vec![0u8; repr.buffer_len() + payload];
            let len = repr.emit(&mut buf, payload).unwrap();
            prop_assert_eq!(len, repr.buffer_len());
            let header = Header::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(HeaderRepr::parse(&header).unwrap(), repr);
            prop_assert_eq!(header.payload().len(), payload);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(header) = Header::new_checked(&bytes[..]) {
                let _ = HeaderRepr::parse(&header);
                let _ = header.payload();
                let _ = (header.ns(), header.nr(), header.offset_size(), header.session_id());
            }
        }
    }
}
