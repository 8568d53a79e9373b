//! The typed Attribute Value (RFC 2661 §4.4): reading it from plain octets and writing it back.

use crate::malformed::BadValue;
use std::borrow::Cow;

use super::{AvpType, Shape};
use crate::wire::message_type::MessageType;
use crate::wire::{Error, Result};

/// The typed Attribute Value of one AVP (the plain value, whether or not it travels hidden).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AvpValue<'a> {
    MessageType(MessageType),
    /// `message` is only present together with `error` (§4.4.2).
    ResultCode {
        result: u16,
        error: Option<u16>,
        message: Option<Cow<'a, [u8]>>,
    },
    ProtocolVersion {
        version: u8,
        revision: u8,
    },
    FramingCapabilities(u32),
    BearerCapabilities(u32),
    TieBreaker([u8; 8]),
    FirmwareRevision(u16),
    HostName(Cow<'a, [u8]>),
    VendorName(Cow<'a, [u8]>),
    AssignedTunnelId(u16),
    ReceiveWindowSize(u16),
    Challenge(Cow<'a, [u8]>),
    /// An empty advisory message is `None`.
    Q931CauseCode {
        cause: u16,
        message: u8,
        advisory: Option<Cow<'a, [u8]>>,
    },
    ChallengeResponse([u8; 16]),
    AssignedSessionId(u16),
    CallSerialNumber(u32),
    MinimumBps(u32),
    MaximumBps(u32),
    BearerType(u32),
    FramingType(u32),
    CalledNumber(Cow<'a, [u8]>),
    CallingNumber(Cow<'a, [u8]>),
    SubAddress(Cow<'a, [u8]>),
    TxConnectSpeed(u32),
    PhysicalChannelId(u32),
    InitialReceivedLcpConfreq(Cow<'a, [u8]>),
    LastSentLcpConfreq(Cow<'a, [u8]>),
    LastReceivedLcpConfreq(Cow<'a, [u8]>),
    ProxyAuthenType(u16),
    ProxyAuthenName(Cow<'a, [u8]>),
    ProxyAuthenChallenge(Cow<'a, [u8]>),
    ProxyAuthenId {
        reserved: u8,
        id: u8,
    },
    ProxyAuthenResponse(Cow<'a, [u8]>),
    CallErrors {
        reserved: u16,
        crc_errors: u32,
        framing_errors: u32,
        hardware_overruns: u32,
        buffer_overruns: u32,
        timeout_errors: u32,
        alignment_errors: u32,
    },
    Accm {
        reserved: u16,
        send_accm: u32,
        receive_accm: u32,
    },
    RandomVector(Cow<'a, [u8]>),
    PrivateGroupId(Cow<'a, [u8]>),
    RxConnectSpeed(u32),
    SequencingRequired,
    /// Any AVP with a non-zero Vendor ID, value kept raw.
    Vendor {
        vendor_id: u16,
        attr_type: u16,
        value: Cow<'a, [u8]>,
    },
    /// A vendor-0 AVP we do not recognize: an unassigned type, or reserved bits set (§4.1).
    Unknown {
        attr_type: u16,
        value: Cow<'a, [u8]>,
    },
    /// A hidden AVP not unhidden (no secret or no Random Vector yet); emitted back verbatim.
    HiddenRaw {
        vendor_id: u16,
        attr_type: u16,
        ciphertext: Cow<'a, [u8]>,
    },
}

/// The value of an attribute whose [`Shape`] is one number or one string of octets: the form
/// most attributes share, so that length, emit, display and JSON handle them once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Field<'a> {
    U16(u16),
    U32(u32),
    Octets(Cow<'a, [u8]>),
}

impl Field<'_> {
    fn into_owned(self) -> Field<'static> {
        match self {
            Field::U16(n) => Field::U16(n),
            Field::U32(n) => Field::U32(n),
            Field::Octets(bytes) => Field::Octets(owned(bytes)),
        }
    }
}

fn owned(bytes: Cow<'_, [u8]>) -> Cow<'static, [u8]> {
    Cow::Owned(bytes.into_owned())
}

impl<'a> AvpValue<'a> {
    /// The variant of a `Field`-shaped attribute; `None` for any other pair. With
    /// [`AvpValue::field`], the one place that names these variants.
    pub(super) fn from_field(kind: AvpType, field: Field<'a>) -> Option<AvpValue<'a>> {
        use AvpType as T;
        use AvpValue as V;
        use Field as F;
        Some(match (kind, field) {
            (T::FramingCapabilities, F::U32(n)) => V::FramingCapabilities(n),
            (T::BearerCapabilities, F::U32(n)) => V::BearerCapabilities(n),
            (T::FirmwareRevision, F::U16(n)) => V::FirmwareRevision(n),
            (T::HostName, F::Octets(b)) => V::HostName(b),
            (T::VendorName, F::Octets(b)) => V::VendorName(b),
            (T::AssignedTunnelId, F::U16(n)) => V::AssignedTunnelId(n),
            (T::ReceiveWindowSize, F::U16(n)) => V::ReceiveWindowSize(n),
            (T::Challenge, F::Octets(b)) => V::Challenge(b),
            (T::AssignedSessionId, F::U16(n)) => V::AssignedSessionId(n),
            (T::CallSerialNumber, F::U32(n)) => V::CallSerialNumber(n),
            (T::MinimumBps, F::U32(n)) => V::MinimumBps(n),
            (T::MaximumBps, F::U32(n)) => V::MaximumBps(n),
            (T::BearerType, F::U32(n)) => V::BearerType(n),
            (T::FramingType, F::U32(n)) => V::FramingType(n),
            (T::CalledNumber, F::Octets(b)) => V::CalledNumber(b),
            (T::CallingNumber, F::Octets(b)) => V::CallingNumber(b),
            (T::SubAddress, F::Octets(b)) => V::SubAddress(b),
            (T::TxConnectSpeed, F::U32(n)) => V::TxConnectSpeed(n),
            (T::PhysicalChannelId, F::U32(n)) => V::PhysicalChannelId(n),
            (T::InitialReceivedLcpConfreq, F::Octets(b)) => V::InitialReceivedLcpConfreq(b),
            (T::LastSentLcpConfreq, F::Octets(b)) => V::LastSentLcpConfreq(b),
            (T::LastReceivedLcpConfreq, F::Octets(b)) => V::LastReceivedLcpConfreq(b),
            (T::ProxyAuthenType, F::U16(n)) => V::ProxyAuthenType(n),
            (T::ProxyAuthenName, F::Octets(b)) => V::ProxyAuthenName(b),
            (T::ProxyAuthenChallenge, F::Octets(b)) => V::ProxyAuthenChallenge(b),
            (T::ProxyAuthenResponse, F::Octets(b)) => V::ProxyAuthenResponse(b),
            (T::RandomVector, F::Octets(b)) => V::RandomVector(b),
            (T::PrivateGroupId, F::Octets(b)) => V::PrivateGroupId(b),
            (T::RxConnectSpeed, F::U32(n)) => V::RxConnectSpeed(n),
            _ => return None,
        })
    }

    /// The attribute and its `Field`, for a `Field`-shaped value (the inverse of
    /// `from_field`); `None` for structured and raw values.
    pub(crate) fn field(&self) -> Option<(AvpType, Field<'_>)> {
        use AvpType as T;
        use AvpValue as V;
        use Field as F;
        fn bytes(b: &[u8]) -> Field<'_> {
            Field::Octets(Cow::Borrowed(b))
        }
        Some(match self {
            V::FramingCapabilities(n) => (T::FramingCapabilities, F::U32(*n)),
            V::BearerCapabilities(n) => (T::BearerCapabilities, F::U32(*n)),
            V::FirmwareRevision(n) => (T::FirmwareRevision, F::U16(*n)),
            V::HostName(b) => (T::HostName, bytes(b)),
            V::VendorName(b) => (T::VendorName, bytes(b)),
            V::AssignedTunnelId(n) => (T::AssignedTunnelId, F::U16(*n)),
            V::ReceiveWindowSize(n) => (T::ReceiveWindowSize, F::U16(*n)),
            V::Challenge(b) => (T::Challenge, bytes(b)),
            V::AssignedSessionId(n) => (T::AssignedSessionId, F::U16(*n)),
            V::CallSerialNumber(n) => (T::CallSerialNumber, F::U32(*n)),
            V::MinimumBps(n) => (T::MinimumBps, F::U32(*n)),
            V::MaximumBps(n) => (T::MaximumBps, F::U32(*n)),
            V::BearerType(n) => (T::BearerType, F::U32(*n)),
            V::FramingType(n) => (T::FramingType, F::U32(*n)),
            V::CalledNumber(b) => (T::CalledNumber, bytes(b)),
            V::CallingNumber(b) => (T::CallingNumber, bytes(b)),
            V::SubAddress(b) => (T::SubAddress, bytes(b)),
            V::TxConnectSpeed(n) => (T::TxConnectSpeed, F::U32(*n)),
            V::PhysicalChannelId(n) => (T::PhysicalChannelId, F::U32(*n)),
            V::InitialReceivedLcpConfreq(b) => (T::InitialReceivedLcpConfreq, bytes(b)),
            V::LastSentLcpConfreq(b) => (T::LastSentLcpConfreq, bytes(b)),
            V::LastReceivedLcpConfreq(b) => (T::LastReceivedLcpConfreq, bytes(b)),
            V::ProxyAuthenType(n) => (T::ProxyAuthenType, F::U16(*n)),
            V::ProxyAuthenName(b) => (T::ProxyAuthenName, bytes(b)),
            V::ProxyAuthenChallenge(b) => (T::ProxyAuthenChallenge, bytes(b)),
            V::ProxyAuthenResponse(b) => (T::ProxyAuthenResponse, bytes(b)),
            V::RandomVector(b) => (T::RandomVector, bytes(b)),
            V::PrivateGroupId(b) => (T::PrivateGroupId, bytes(b)),
            V::RxConnectSpeed(n) => (T::RxConnectSpeed, F::U32(*n)),
            _ => return None,
        })
    }

    /// `from_field`, or, were the table and the variants ever to disagree, the value kept raw
    /// as `Unknown` rather than a panic (a unit test holds them in step).
    fn from_field_or_raw(kind: AvpType, field: Field<'a>) -> AvpValue<'a> {
        let raw = match &field {
            Field::U16(n) => Cow::Owned(n.to_be_bytes().to_vec()),
            Field::U32(n) => Cow::Owned(n.to_be_bytes().to_vec()),
            Field::Octets(bytes) => bytes.clone(),
        };
        AvpValue::from_field(kind, field).unwrap_or(AvpValue::Unknown {
            attr_type: kind.to_u16(),
            value: raw,
        })
    }

    /// The RFC 2661 attribute this value is, if any. A `HiddenRaw` vendor-0 AVP still names
    /// its attribute; `Unknown` and `Vendor` never do.
    pub fn avp_type(&self) -> Option<AvpType> {
        use AvpType as T;
        use AvpValue as V;
        if let Some((kind, _)) = self.field() {
            return Some(kind);
        }
        Some(match self {
            V::MessageType(_) => T::MessageType,
            V::ResultCode { .. } => T::ResultCode,
            V::ProtocolVersion { .. } => T::ProtocolVersion,
            V::TieBreaker(_) => T::TieBreaker,
            V::Q931CauseCode { .. } => T::Q931CauseCode,
            V::ChallengeResponse(_) => T::ChallengeResponse,
            V::ProxyAuthenId { .. } => T::ProxyAuthenId,
            V::CallErrors { .. } => T::CallErrors,
            V::Accm { .. } => T::Accm,
            V::SequencingRequired => T::SequencingRequired,
            V::HiddenRaw {
                vendor_id: 0,
                attr_type,
                ..
            } => return AvpType::from_u16(*attr_type),
            _ => return None,
        })
    }

    pub fn attr_type(&self) -> u16 {
        match self {
            AvpValue::Vendor { attr_type, .. }
            | AvpValue::Unknown { attr_type, .. }
            | AvpValue::HiddenRaw { attr_type, .. } => *attr_type,
            typed => typed.avp_type().map_or(0, AvpType::to_u16),
        }
    }

    pub fn vendor_id(&self) -> u16 {
        match self {
            AvpValue::Vendor { vendor_id, .. } | AvpValue::HiddenRaw { vendor_id, .. } => {
                *vendor_id
            }
            _ => 0,
        }
    }

    /// Octets of the plain Attribute Value (for `HiddenRaw`, of the ciphertext).
    pub fn value_len(&self) -> usize {
        use AvpValue as V;
        match self.field() {
            Some((_, Field::U16(_))) => return 2,
            Some((_, Field::U32(_))) => return 4,
            Some((_, Field::Octets(b))) => return b.len(),
            None => {}
        }
        match self {
            V::MessageType(_) | V::ProtocolVersion { .. } | V::ProxyAuthenId { .. } => 2,
            V::TieBreaker(_) => 8,
            V::ChallengeResponse(_) => 16,
            V::CallErrors { .. } => 26,
            V::Accm { .. } => 10,
            V::SequencingRequired => 0,
            V::ResultCode { error, message, .. } => match error {
                None => 2,
                Some(_) => 4 + message.as_ref().map_or(0, |m| m.len()),
            },
            V::Q931CauseCode { advisory, .. } => 3 + advisory.as_ref().map_or(0, |a| a.len()),
            V::Vendor { value: b, .. }
            | V::Unknown { value: b, .. }
            | V::HiddenRaw { ciphertext: b, .. } => b.len(),
            // Field-shaped, answered above.
            _ => 0,
        }
    }

    pub fn into_owned(self) -> AvpValue<'static> {
        use AvpValue as V;
        if let Some((kind, field)) = self.field() {
            return AvpValue::from_field_or_raw(kind, field.into_owned());
        }
        match self {
            V::MessageType(v) => V::MessageType(v),
            V::ResultCode {
                result,
                error,
                message,
            } => V::ResultCode {
                result,
                error,
                message: message.map(owned),
            },
            V::ProtocolVersion { version, revision } => V::ProtocolVersion { version, revision },
            V::TieBreaker(v) => V::TieBreaker(v),
            V::Q931CauseCode {
                cause,
                message,
                advisory,
            } => V::Q931CauseCode {
                cause,
                message,
                advisory: advisory.map(owned),
            },
            V::ChallengeResponse(v) => V::ChallengeResponse(v),
            V::ProxyAuthenId { reserved, id } => V::ProxyAuthenId { reserved, id },
            V::CallErrors {
                reserved,
                crc_errors,
                framing_errors,
                hardware_overruns,
                buffer_overruns,
                timeout_errors,
                alignment_errors,
            } => V::CallErrors {
                reserved,
                crc_errors,
                framing_errors,
                hardware_overruns,
                buffer_overruns,
                timeout_errors,
                alignment_errors,
            },
            V::Accm {
                reserved,
                send_accm,
                receive_accm,
            } => V::Accm {
                reserved,
                send_accm,
                receive_accm,
            },
            V::SequencingRequired => V::SequencingRequired,
            V::Vendor {
                vendor_id,
                attr_type,
                value,
            } => V::Vendor {
                vendor_id,
                attr_type,
                value: owned(value),
            },
            V::HiddenRaw {
                vendor_id,
                attr_type,
                ciphertext,
            } => V::HiddenRaw {
                vendor_id,
                attr_type,
                ciphertext: owned(ciphertext),
            },
            V::Unknown { attr_type, value } => V::Unknown {
                attr_type,
                value: owned(value),
            },
            // Field-shaped values were answered above.
            other => V::Unknown {
                attr_type: other.attr_type(),
                value: Cow::Owned(other.to_bytes()),
            },
        }
    }

    /// Call Errors' Reserved field and its six counters in wire order, each with its JSON
    /// name; `None` for any other value.
    pub(crate) fn call_error_counts(&self) -> Option<(u16, [(&'static str, u32); 6])> {
        match *self {
            AvpValue::CallErrors {
                reserved,
                crc_errors,
                framing_errors,
                hardware_overruns,
                buffer_overruns,
                timeout_errors,
                alignment_errors,
            } => Some((
                reserved,
                [
                    ("crc_errors", crc_errors),
                    ("framing_errors", framing_errors),
                    ("hardware_overruns", hardware_overruns),
                    ("buffer_overruns", buffer_overruns),
                    ("timeout_errors", timeout_errors),
                    ("alignment_errors", alignment_errors),
                ],
            )),
            _ => None,
        }
    }

    /// The plain Attribute Value's octets.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0; self.value_len()];
        self.write(&mut out);
        out
    }

    /// Reads a plain Attribute Value. `at` is the value's offset in the message, for errors.
    pub(super) fn parse(
        vendor_id: u16,
        attr_type: u16,
        reserved: u8,
        value: &'a [u8],
        at: usize,
    ) -> Result<AvpValue<'a>> {
        if vendor_id != 0 {
            return Ok(AvpValue::Vendor {
                vendor_id,
                attr_type,
                value: Cow::Borrowed(value),
            });
        }
        // §4.1: an AVP with a reserved bit set MUST be treated as unrecognized.
        let kind = match AvpType::from_u16(attr_type) {
            Some(kind) if reserved == 0 => kind,
            _ => {
                return Ok(AvpValue::Unknown {
                    attr_type,
                    value: Cow::Borrowed(value),
                })
            }
        };
        let field = match kind.shape() {
            Shape::U16 => Field::U16(u16::from_be_bytes(fixed(value, kind, at)?)),
            Shape::U32 | Shape::Flags => Field::U32(u32::from_be_bytes(fixed(value, kind, at)?)),
            Shape::Text | Shape::Octets => Field::Octets(Cow::Borrowed(value)),
            Shape::Structured => return AvpValue::parse_structured(kind, value, at),
        };
        Ok(AvpValue::from_field_or_raw(kind, field))
    }

    /// Reads the value of a `Structured` attribute.
    fn parse_structured(kind: AvpType, value: &'a [u8], at: usize) -> Result<AvpValue<'a>> {
        use AvpType as T;
        use AvpValue as V;
        Ok(match kind {
            T::MessageType => V::MessageType(MessageType::from_u16(u16::from_be_bytes(fixed(
                value, kind, at,
            )?))),
            T::ResultCode => match value {
                [r0, r1] => V::ResultCode {
                    result: u16::from_be_bytes([*r0, *r1]),
                    error: None,
                    message: None,
                },
                [r0, r1, e0, e1, message @ ..] => V::ResultCode {
                    result: u16::from_be_bytes([*r0, *r1]),
                    error: Some(u16::from_be_bytes([*e0, *e1])),
                    message: (!message.is_empty()).then_some(Cow::Borrowed(message)),
                },
                _ => {
                    return Err(bad_value(
                        kind,
                        at,
                        "value length must be 2, or 4 and more with an Error Code",
                    ))
                }
            },
            T::ProtocolVersion => {
                let [version, revision] = fixed(value, kind, at)?;
                V::ProtocolVersion { version, revision }
            }
            T::TieBreaker => V::TieBreaker(fixed(value, kind, at)?),
            T::Q931CauseCode => match value {
                [c0, c1, message, advisory @ ..] => V::Q931CauseCode {
                    cause: u16::from_be_bytes([*c0, *c1]),
                    message: *message,
                    advisory: (!advisory.is_empty()).then_some(Cow::Borrowed(advisory)),
                },
                _ => return Err(bad_value(kind, at, "value length must be at least 3")),
            },
            T::ChallengeResponse => V::ChallengeResponse(fixed(value, kind, at)?),
            T::ProxyAuthenId => {
                let [reserved, id] = fixed(value, kind, at)?;
                V::ProxyAuthenId { reserved, id }
            }
            T::CallErrors => {
                let fields: [u8; 26] = fixed(value, kind, at)?;
                let mut r = Reader(&fields);
                V::CallErrors {
                    reserved: r.u16(),
                    crc_errors: r.u32(),
                    framing_errors: r.u32(),
                    hardware_overruns: r.u32(),
                    buffer_overruns: r.u32(),
                    timeout_errors: r.u32(),
                    alignment_errors: r.u32(),
                }
            }
            T::Accm => {
                let fields: [u8; 10] = fixed(value, kind, at)?;
                let mut r = Reader(&fields);
                V::Accm {
                    reserved: r.u16(),
                    send_accm: r.u32(),
                    receive_accm: r.u32(),
                }
            }
            T::SequencingRequired => {
                let [] = fixed(value, kind, at)?;
                V::SequencingRequired
            }
            // Field-shaped: never asked here; kept raw rather than a panic.
            _ => V::Unknown {
                attr_type: kind.to_u16(),
                value: Cow::Borrowed(value),
            },
        })
    }

    /// Writes the plain Attribute Value; `out` is exactly `value_len()` octets.
    pub(super) fn write(&self, out: &mut [u8]) {
        use AvpValue as V;
        let mut w = Writer { buf: out, pos: 0 };
        match self.field() {
            Some((_, Field::U16(n))) => w.put(&n.to_be_bytes()),
            Some((_, Field::U32(n))) => w.put(&n.to_be_bytes()),
            Some((_, Field::Octets(b))) => w.put(&b),
            None => match self {
                V::MessageType(kind) => w.put(&kind.to_u16().to_be_bytes()),
                V::ResultCode {
                    result,
                    error,
                    message,
                } => {
                    w.put(&result.to_be_bytes());
                    if let Some(error) = error {
                        w.put(&error.to_be_bytes());
                        w.put(message.as_deref().unwrap_or_default());
                    }
                }
                V::ProtocolVersion { version, revision } => w.put(&[*version, *revision]),
                V::ProxyAuthenId { reserved, id } => w.put(&[*reserved, *id]),
                V::TieBreaker(b) => w.put(b),
                V::ChallengeResponse(b) => w.put(b),
                V::Q931CauseCode {
                    cause,
                    message,
                    advisory,
                } => {
                    w.put(&cause.to_be_bytes());
                    w.put(&[*message]);
                    w.put(advisory.as_deref().unwrap_or_default());
                }
                V::CallErrors { .. } => {
                    let (reserved, counts) = self.call_error_counts().unwrap_or_default();
                    w.put(&reserved.to_be_bytes());
                    for (_, count) in counts {
                        w.put(&count.to_be_bytes());
                    }
                }
                V::Accm {
                    reserved,
                    send_accm,
                    receive_accm,
                } => {
                    w.put(&reserved.to_be_bytes());
                    w.put(&send_accm.to_be_bytes());
                    w.put(&receive_accm.to_be_bytes());
                }
                V::Vendor { value: b, .. }
                | V::Unknown { value: b, .. }
                | V::HiddenRaw { ciphertext: b, .. } => w.put(b),
                // SequencingRequired has no value; Field-shaped values are written above.
                _ => {}
            },
        }
        debug_assert_eq!(w.pos, self.value_len());
    }
}

fn bad_value(kind: AvpType, at: usize, reason: &'static str) -> Error {
    Error::BadValue(BadValue {
        field: kind.name(),
        offset: at,
        reason,
    })
}

/// A fixed-size value, or the error naming the AVP and the size it must have.
fn fixed<const N: usize>(value: &[u8], kind: AvpType, at: usize) -> Result<[u8; N]> {
    <[u8; N]>::try_from(value).map_err(|_| {
        let reason = match N {
            0 => "value length must be 0",
            2 => "value length must be 2",
            4 => "value length must be 4",
            8 => "value length must be 8",
            10 => "value length must be 10",
            16 => "value length must be 16",
            26 => "value length must be 26",
            _ => "wrong value length",
        };
        bad_value(kind, at, reason)
    })
}

/// Big-endian reads over a value whose size was already checked; yields 0 past the end
/// rather than panicking.
struct Reader<'b>(&'b [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        match self.0.split_first_chunk::<N>() {
            Some((head, rest)) => {
                self.0 = rest;
                *head
            }
            None => [0; N],
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.take())
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take())
    }
}

/// Sequential writes into a buffer sized beforehand; drops what would not fit.
struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.pos.saturating_add(bytes.len());
        if let Some(dst) = self.buf.get_mut(self.pos..end) {
            dst.copy_from_slice(bytes);
        }
        self.pos = end;
    }
}
