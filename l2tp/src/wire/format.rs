//! How wire values are shown: the one-line token of an AVP (as `l2tpkit decode` prints it)
//! and its JSON form. Kept apart from the codec, which only reads and writes bytes.

use core::fmt;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use super::avp::{avp_name, AvpRepr, AvpValue, Field, Shape, Unhide};

/// Lowercase hex.
struct Hex<'b>(&'b [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Text as one whitespace-free token: graphic ASCII as is, everything else (space included)
/// as `\xNN`, and `\` and `"` escaped so quotes can delimit it.
struct Escaped<'b>(&'b [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Runs of plain printable ASCII go out in one write; this sits on decode's hot path.
        let plain = |b: u8| matches!(b, 0x21..=0x7e) && b != b'\\' && b != b'"';
        let mut rest = self.0;
        while !rest.is_empty() {
            let run = rest.iter().position(|&b| !plain(b)).unwrap_or(rest.len());
            let (head, tail) = rest.split_at(run);
            // `head` is printable ASCII, hence valid UTF-8.
            f.write_str(core::str::from_utf8(head).unwrap_or_default())?;
            if let Some((&b, after)) = tail.split_first() {
                match b {
                    b'\\' => f.write_str("\\\\")?,
                    b'"' => f.write_str("\\\"")?,
                    _ => write!(f, "\\x{b:02x}")?,
                }
                rest = after;
            } else {
                rest = tail;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Unhide<'_> {
    // The secret stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unhide")
            .field("secret", &format_args!("<{} octets>", self.secret.len()))
            .field("random_vector", &Hex(self.random_vector))
            .finish()
    }
}

impl fmt::Display for AvpRepr<'_> {
    /// One token: `host=lns1`, `tid=5`, `result=2/6"msg"`, `chal=<16B>`, `v9:type12=<4B>`,
    /// `t20=<3B>`; `!H` marks a hidden AVP and `!R<n>` non-zero reserved bits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = &self.value;
        match (value.avp_type(), value.vendor_id()) {
            (Some(kind), _) => f.write_str(kind.short())?,
            (None, 0) => write!(f, "t{}", value.attr_type())?,
            (None, vendor) => write!(f, "v{vendor}:type{}", value.attr_type())?,
        }
        if !matches!(value, AvpValue::SequencingRequired) {
            f.write_str("=")?;
        }
        match value.field() {
            Some((kind, field)) => write_field(f, kind.shape(), &field)?,
            None => write_structured(f, value)?,
        }
        if self.hidden || matches!(value, AvpValue::HiddenRaw { .. }) {
            f.write_str("!H")?;
        }
        if self.reserved != 0 {
            write!(f, "!R{}", self.reserved)?;
        }
        Ok(())
    }
}

fn write_field(f: &mut fmt::Formatter<'_>, shape: Shape, field: &Field<'_>) -> fmt::Result {
    match (shape, field) {
        (Shape::Flags, Field::U32(n)) => write!(f, "{n:#x}"),
        (_, Field::U32(n)) => f.write_str(itoa::Buffer::new().format(*n)),
        (_, Field::U16(n)) => f.write_str(itoa::Buffer::new().format(*n)),
        (Shape::Text, Field::Octets(b)) => write!(f, "{}", Escaped(b)),
        (_, Field::Octets(b)) => write!(f, "<{}B>", b.len()),
    }
}

fn write_structured(f: &mut fmt::Formatter<'_>, value: &AvpValue<'_>) -> fmt::Result {
    use AvpValue as V;
    match value {
        V::MessageType(kind) => write!(f, "{kind}")?,
        V::ResultCode {
            result,
            error,
            message,
        } => {
            write!(f, "{result}")?;
            if let Some(error) = error {
                write!(f, "/{error}")?;
            }
            if let Some(message) = message {
                write!(f, "\"{}\"", Escaped(message))?;
            }
        }
        V::ProtocolVersion { version, revision } => write!(f, "{version}.{revision}")?,
        V::TieBreaker(b) => write!(f, "{}", Hex(b))?,
        V::ChallengeResponse(b) => write!(f, "<{}B>", b.len())?,
        V::Vendor { value: b, .. } | V::Unknown { value: b, .. } => write!(f, "<{}B>", b.len())?,
        V::HiddenRaw { ciphertext, .. } => write!(f, "<enc:{}B>", ciphertext.len())?,
        V::Q931CauseCode {
            cause,
            message,
            advisory,
        } => {
            write!(f, "{cause}/{message}")?;
            if let Some(advisory) = advisory {
                write!(f, "\"{}\"", Escaped(advisory))?;
            }
        }
        V::ProxyAuthenId { reserved, id } => {
            write!(f, "{id}")?;
            if *reserved != 0 {
                write!(f, ",rsvd={reserved}")?;
            }
        }
        V::CallErrors { .. } => {
            let (reserved, counts) = value.call_error_counts().unwrap_or_default();
            let [crc, framing, hw, buf, timeout, align] = counts.map(|(_, count)| count);
            write!(
                f,
                "crc:{crc},framing:{framing},hw:{hw},buf:{buf},timeout:{timeout},align:{align}"
            )?;
            if reserved != 0 {
                write!(f, ",rsvd={reserved}")?;
            }
        }
        V::Accm {
            send_accm,
            receive_accm,
            reserved,
        } => {
            write!(f, "send:{send_accm:#x},recv:{receive_accm:#x}")?;
            if *reserved != 0 {
                write!(f, ",rsvd={reserved}")?;
            }
        }
        // SequencingRequired shows no value; Field-shaped values are written by write_field.
        _ => {}
    }
    Ok(())
}

/// Serializes as a lowercase hex string.
struct HexString<'b>(&'b [u8]);

impl Serialize for HexString<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        s.collect_str(&Hex(self.0))
    }
}

/// Serializes as a string, invalid UTF-8 replaced.
struct Lossy<'b>(&'b [u8]);

impl Serialize for Lossy<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(self.0))
    }
}

/// The `"value"` member of an AVP's JSON form.
struct JsonValue<'r, 'a>(&'r AvpValue<'a>);

impl Serialize for JsonValue<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        use AvpValue as V;

        #[derive(Serialize)]
        struct ResultCode<'b> {
            result: u16,
            error: Option<u16>,
            message: Option<Lossy<'b>>,
        }
        #[derive(Serialize)]
        struct ProtocolVersion {
            version: u8,
            revision: u8,
        }
        #[derive(Serialize)]
        struct Q931<'b> {
            cause: u16,
            message: u8,
            advisory: Option<Lossy<'b>>,
        }
        #[derive(Serialize)]
        struct ProxyAuthenId {
            reserved: u8,
            id: u8,
        }
        #[derive(Serialize)]
        struct Accm {
            reserved: u16,
            send_accm: u32,
            receive_accm: u32,
        }
        #[derive(Serialize)]
        struct Ciphertext<'b> {
            ciphertext: HexString<'b>,
        }

        if let Some((kind, field)) = self.0.field() {
            return match (kind.shape(), field) {
                (_, Field::U16(n)) => s.serialize_u16(n),
                (_, Field::U32(n)) => s.serialize_u32(n),
                (Shape::Text, Field::Octets(b)) => Lossy(&b).serialize(s),
                (_, Field::Octets(b)) => HexString(&b).serialize(s),
            };
        }
        if let Some((reserved, counts)) = self.0.call_error_counts() {
            let mut map = s.serialize_map(Some(1 + counts.len()))?;
            map.serialize_entry("reserved", &reserved)?;
            for (name, count) in counts {
                map.serialize_entry(name, &count)?;
            }
            return map.end();
        }
        match self.0 {
            V::MessageType(kind) => kind.serialize(s),
            V::ResultCode {
                result,
                error,
                message,
            } => ResultCode {
                result: *result,
                error: *error,
                message: message.as_deref().map(Lossy),
            }
            .serialize(s),
            V::ProtocolVersion { version, revision } => ProtocolVersion {
                version: *version,
                revision: *revision,
            }
            .serialize(s),
            V::TieBreaker(b) => HexString(b).serialize(s),
            V::ChallengeResponse(b) => HexString(b).serialize(s),
            V::Vendor { value: b, .. } | V::Unknown { value: b, .. } => HexString(b).serialize(s),
            V::Q931CauseCode {
                cause,
                message,
                advisory,
            } => Q931 {
                cause: *cause,
                message: *message,
                advisory: advisory.as_deref().map(Lossy),
            }
            .serialize(s),
            V::ProxyAuthenId { reserved, id } => ProxyAuthenId {
                reserved: *reserved,
                id: *id,
            }
            .serialize(s),
            V::Accm {
                reserved,
                send_accm,
                receive_accm,
            } => Accm {
                reserved: *reserved,
                send_accm: *send_accm,
                receive_accm: *receive_accm,
            }
            .serialize(s),
            V::HiddenRaw { ciphertext, .. } => Ciphertext {
                ciphertext: HexString(ciphertext),
            }
            .serialize(s),
            // SequencingRequired; Field-shaped values were serialized above.
            _ => s.serialize_unit(),
        }
    }
}

impl Serialize for AvpRepr<'_> {
    /// `{"type", "name", "mandatory", "hidden", "vendor_id", "value"}`, plus `"reserved"` when
    /// non-zero.
    fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        let vendor_id = self.value.vendor_id();
        let attr_type = self.value.attr_type();
        let hidden = self.hidden || matches!(self.value, AvpValue::HiddenRaw { .. });
        let mut map = s.serialize_map(Some(if self.reserved != 0 { 7 } else { 6 }))?;
        map.serialize_entry("type", &attr_type)?;
        map.serialize_entry("name", avp_name(vendor_id, attr_type))?;
        map.serialize_entry("mandatory", &self.mandatory)?;
        map.serialize_entry("hidden", &hidden)?;
        map.serialize_entry("vendor_id", &vendor_id)?;
        map.serialize_entry("value", &JsonValue(&self.value))?;
        if self.reserved != 0 {
            map.serialize_entry("reserved", &self.reserved)?;
        }
        map.end()
    }
}
