//! Attribute-Value Pairs (RFC 2661 §4.1, §4.4): the `Avp` view over one AVP's bytes and the
//! typed `AvpRepr`, with hiding (§4.3) applied on parse and emit when a secret is at hand.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |M|H| rsvd  |      Length       |           Vendor ID           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Attribute Type        |        Attribute Value...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use core::fmt;
use std::borrow::Cow;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use super::hidden;
use super::message::MessageType;
use super::{Error, Result};

mod field {
    use core::ops::Range;

    /// M, H, 4 reserved bits and the 10-bit Length share the first two octets.
    pub const FLAGS_LENGTH: Range<usize> = 0..2;
    pub const VENDOR_ID: Range<usize> = 2..4;
    pub const ATTR_TYPE: Range<usize> = 4..6;
    pub const VALUE: usize = 6;

    pub const MANDATORY: u8 = 0x80;
    pub const HIDDEN: u8 = 0x40;
    pub const RESERVED_SHIFT: u8 = 2;
    pub const RESERVED_MASK: u8 = 0x0f;
    pub const LENGTH_MASK: u16 = 0x03ff;
}

/// Octets before the Attribute Value.
pub const HEADER_LEN: usize = field::VALUE;
/// The 10-bit Length field caps a whole AVP at this many octets.
pub const MAX_LEN: usize = field::LENGTH_MASK as usize;
/// The longest Attribute Value that fits (as sent, i.e. after hiding).
pub const MAX_VALUE_LEN: usize = MAX_LEN - HEADER_LEN;

/// Attribute Type of the Random Vector AVP, the one AVP that can never be hidden.
const RANDOM_VECTOR_TYPE: u16 = 36;

/// A read/write view of one AVP. The buffer may run past the AVP (the rest of the message);
/// `length()` says where this AVP ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Avp<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Avp<T> {
    /// Wraps a buffer without checking it; accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Avp<T> {
        Avp { buffer }
    }

    /// Wraps a buffer after `check_len`; no accessor can panic afterwards. `offset` is where
    /// the AVP starts in the message, used only to place errors.
    pub fn new_checked(buffer: T, offset: usize) -> Result<Avp<T>> {
        let avp = Avp::new_unchecked(buffer);
        avp.check_len(offset)?;
        Ok(avp)
    }

    /// Checks that the header is present and that Length is at least 6 and within the buffer.
    pub fn check_len(&self, offset: usize) -> Result<()> {
        let have = self.buffer.as_ref().len();
        if have < HEADER_LEN {
            return Err(Error::Truncated {
                field: "AVP header",
                offset,
                need: HEADER_LEN,
                have,
            });
        }
        let len = usize::from(self.length());
        if len < HEADER_LEN {
            return Err(Error::BadValue {
                field: "AVP Length",
                offset,
                reason: "less than the 6-octet AVP header",
            });
        }
        if len > have {
            return Err(Error::Truncated {
                field: "AVP Length",
                offset,
                need: len,
                have,
            });
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS_LENGTH.start]
    }

    fn read_u16(&self, range: core::ops::Range<usize>) -> u16 {
        let data = self.buffer.as_ref();
        u16::from_be_bytes([data[range.start], data[range.start + 1]])
    }

    pub fn mandatory(&self) -> bool {
        self.flags() & field::MANDATORY != 0
    }

    pub fn hidden(&self) -> bool {
        self.flags() & field::HIDDEN != 0
    }

    /// The four reserved bits (must be 0; §4.1 says treat the AVP as unrecognized otherwise).
    pub fn reserved(&self) -> u8 {
        (self.flags() >> field::RESERVED_SHIFT) & field::RESERVED_MASK
    }

    /// Total AVP length in octets, header included.
    pub fn length(&self) -> u16 {
        self.read_u16(field::FLAGS_LENGTH) & field::LENGTH_MASK
    }

    pub fn vendor_id(&self) -> u16 {
        self.read_u16(field::VENDOR_ID)
    }

    pub fn attr_type(&self) -> u16 {
        self.read_u16(field::ATTR_TYPE)
    }

    /// The Attribute Value as sent (still hidden if H is set).
    pub fn value(&self) -> &[u8] {
        &self.buffer.as_ref()[field::VALUE..usize::from(self.length())]
    }
}

impl<'a> Avp<&'a [u8]> {
    /// The Attribute Value with the lifetime of the underlying message, for zero-copy reprs.
    pub fn value_slice(&self) -> &'a [u8] {
        let data: &'a [u8] = self.buffer;
        &data[field::VALUE..usize::from(self.length())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Avp<T> {
    fn set_flag(&mut self, mask: u8, on: bool) {
        let byte = &mut self.buffer.as_mut()[field::FLAGS_LENGTH.start];
        if on {
            *byte |= mask;
        } else {
            *byte &= !mask;
        }
    }

    fn write_u16(&mut self, range: core::ops::Range<usize>, value: u16) {
        self.buffer.as_mut()[range].copy_from_slice(&value.to_be_bytes());
    }

    pub fn set_mandatory(&mut self, on: bool) {
        self.set_flag(field::MANDATORY, on);
    }

    pub fn set_hidden(&mut self, on: bool) {
        self.set_flag(field::HIDDEN, on);
    }

    /// Sets the four reserved bits; higher bits of `bits` are ignored.
    pub fn set_reserved(&mut self, bits: u8) {
        let mask = field::RESERVED_MASK << field::RESERVED_SHIFT;
        let byte = &mut self.buffer.as_mut()[field::FLAGS_LENGTH.start];
        *byte = (*byte & !mask) | ((bits << field::RESERVED_SHIFT) & mask);
    }

    /// Sets the 10-bit Length, keeping the flag bits; higher bits of `length` are ignored.
    pub fn set_length(&mut self, length: u16) {
        let flags = (u16::from(self.flags()) << 8) & !field::LENGTH_MASK;
        self.write_u16(field::FLAGS_LENGTH, flags | (length & field::LENGTH_MASK));
    }

    pub fn set_vendor_id(&mut self, vendor_id: u16) {
        self.write_u16(field::VENDOR_ID, vendor_id);
    }

    pub fn set_attr_type(&mut self, attr_type: u16) {
        self.write_u16(field::ATTR_TYPE, attr_type);
    }

    /// The Attribute Value as far as the current Length reaches.
    pub fn value_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.length());
        &mut self.buffer.as_mut()[field::VALUE..end]
    }
}

macro_rules! avp_types {
    ($($variant:ident = $code:literal, $name:literal, $short:literal;)*) => {
        /// The IETF (vendor 0) attributes RFC 2661 defines. 20 is unassigned.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum AvpType {
            $($variant,)*
        }

        impl AvpType {
            pub const ALL: [AvpType; 39] = [$(AvpType::$variant,)*];

            pub fn from_u16(value: u16) -> Option<AvpType> {
                match value {
                    $($code => Some(AvpType::$variant),)*
                    _ => None,
                }
            }

            pub fn to_u16(self) -> u16 {
                match self {
                    $(AvpType::$variant => $code,)*
                }
            }

            /// The RFC's name, e.g. "Assigned Tunnel ID".
            pub fn name(self) -> &'static str {
                match self {
                    $(AvpType::$variant => $name,)*
                }
            }

            /// A compact key for one-line output, e.g. "tid".
            pub fn short(self) -> &'static str {
                match self {
                    $(AvpType::$variant => $short,)*
                }
            }
        }
    };
}

avp_types! {
    MessageType = 0, "Message Type", "msg";
    ResultCode = 1, "Result Code", "result";
    ProtocolVersion = 2, "Protocol Version", "ver";
    FramingCapabilities = 3, "Framing Capabilities", "fcap";
    BearerCapabilities = 4, "Bearer Capabilities", "bcap";
    TieBreaker = 5, "Tie Breaker", "tie";
    FirmwareRevision = 6, "Firmware Revision", "fw";
    HostName = 7, "Host Name", "host";
    VendorName = 8, "Vendor Name", "vendor";
    AssignedTunnelId = 9, "Assigned Tunnel ID", "tid";
    ReceiveWindowSize = 10, "Receive Window Size", "rwin";
    Challenge = 11, "Challenge", "chal";
    Q931CauseCode = 12, "Q.931 Cause Code", "q931";
    ChallengeResponse = 13, "Challenge Response", "chresp";
    AssignedSessionId = 14, "Assigned Session ID", "sid";
    CallSerialNumber = 15, "Call Serial Number", "serial";
    MinimumBps = 16, "Minimum BPS", "minbps";
    MaximumBps = 17, "Maximum BPS", "maxbps";
    BearerType = 18, "Bearer Type", "btype";
    FramingType = 19, "Framing Type", "ftype";
    CalledNumber = 21, "Called Number", "called";
    CallingNumber = 22, "Calling Number", "calling";
    SubAddress = 23, "Sub-Address", "subaddr";
    TxConnectSpeed = 24, "(Tx) Connect Speed", "txspeed";
    PhysicalChannelId = 25, "Physical Channel ID", "phys";
    InitialReceivedLcpConfreq = 26, "Initial Received LCP CONFREQ", "ircvd_lcp";
    LastSentLcpConfreq = 27, "Last Sent LCP CONFREQ", "lsent_lcp";
    LastReceivedLcpConfreq = 28, "Last Received LCP CONFREQ", "lrcvd_lcp";
    ProxyAuthenType = 29, "Proxy Authen Type", "pa_type";
    ProxyAuthenName = 30, "Proxy Authen Name", "pa_name";
    ProxyAuthenChallenge = 31, "Proxy Authen Challenge", "pa_chal";
    ProxyAuthenId = 32, "Proxy Authen ID", "pa_id";
    ProxyAuthenResponse = 33, "Proxy Authen Response", "pa_resp";
    CallErrors = 34, "Call Errors", "call_errors";
    Accm = 35, "ACCM", "accm";
    RandomVector = 36, "Random Vector", "rv";
    PrivateGroupId = 37, "Private Group ID", "pgid";
    RxConnectSpeed = 38, "Rx Connect Speed", "rxspeed";
    SequencingRequired = 39, "Sequencing Required", "seqreq";
}

impl fmt::Display for AvpType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name for any AVP, for errors and JSON, where a `&'static str` is all there is room for.
fn avp_name(vendor_id: u16, attr_type: u16) -> &'static str {
    match (vendor_id, AvpType::from_u16(attr_type)) {
        (0, Some(kind)) => kind.name(),
        (0, None) => "unassigned",
        _ => "vendor-specific",
    }
}

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

fn owned(bytes: Cow<'_, [u8]>) -> Cow<'static, [u8]> {
    Cow::Owned(bytes.into_owned())
}

impl<'a> AvpValue<'a> {
    /// The RFC 2661 attribute this value is, if any. A `HiddenRaw` vendor-0 AVP still names
    /// its attribute; `Unknown` and `Vendor` never do.
    pub fn avp_type(&self) -> Option<AvpType> {
        use AvpType as T;
        use AvpValue as V;
        Some(match self {
            V::MessageType(_) => T::MessageType,
            V::ResultCode { .. } => T::ResultCode,
            V::ProtocolVersion { .. } => T::ProtocolVersion,
            V::FramingCapabilities(_) => T::FramingCapabilities,
            V::BearerCapabilities(_) => T::BearerCapabilities,
            V::TieBreaker(_) => T::TieBreaker,
            V::FirmwareRevision(_) => T::FirmwareRevision,
            V::HostName(_) => T::HostName,
            V::VendorName(_) => T::VendorName,
            V::AssignedTunnelId(_) => T::AssignedTunnelId,
            V::ReceiveWindowSize(_) => T::ReceiveWindowSize,
            V::Challenge(_) => T::Challenge,
            V::Q931CauseCode { .. } => T::Q931CauseCode,
            V::ChallengeResponse(_) => T::ChallengeResponse,
            V::AssignedSessionId(_) => T::AssignedSessionId,
            V::CallSerialNumber(_) => T::CallSerialNumber,
            V::MinimumBps(_) => T::MinimumBps,
            V::MaximumBps(_) => T::MaximumBps,
            V::BearerType(_) => T::BearerType,
            V::FramingType(_) => T::FramingType,
            V::CalledNumber(_) => T::CalledNumber,
            V::CallingNumber(_) => T::CallingNumber,
            V::SubAddress(_) => T::SubAddress,
            V::TxConnectSpeed(_) => T::TxConnectSpeed,
            V::PhysicalChannelId(_) => T::PhysicalChannelId,
            V::InitialReceivedLcpConfreq(_) => T::InitialReceivedLcpConfreq,
            V::LastSentLcpConfreq(_) => T::LastSentLcpConfreq,
            V::LastReceivedLcpConfreq(_) => T::LastReceivedLcpConfreq,
            V::ProxyAuthenType(_) => T::ProxyAuthenType,
            V::ProxyAuthenName(_) => T::ProxyAuthenName,
            V::ProxyAuthenChallenge(_) => T::ProxyAuthenChallenge,
            V::ProxyAuthenId { .. } => T::ProxyAuthenId,
            V::ProxyAuthenResponse(_) => T::ProxyAuthenResponse,
            V::CallErrors { .. } => T::CallErrors,
            V::Accm { .. } => T::Accm,
            V::RandomVector(_) => T::RandomVector,
            V::PrivateGroupId(_) => T::PrivateGroupId,
            V::RxConnectSpeed(_) => T::RxConnectSpeed,
            V::SequencingRequired => T::SequencingRequired,
            V::HiddenRaw {
                vendor_id: 0,
                attr_type,
                ..
            } => return AvpType::from_u16(*attr_type),
            V::Vendor { .. } | V::Unknown { .. } | V::HiddenRaw { .. } => return None,
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
        match self {
            V::MessageType(_)
            | V::ProtocolVersion { .. }
            | V::FirmwareRevision(_)
            | V::AssignedTunnelId(_)
            | V::ReceiveWindowSize(_)
            | V::AssignedSessionId(_)
            | V::ProxyAuthenType(_)
            | V::ProxyAuthenId { .. } => 2,
            V::FramingCapabilities(_)
            | V::BearerCapabilities(_)
            | V::CallSerialNumber(_)
            | V::MinimumBps(_)
            | V::MaximumBps(_)
            | V::BearerType(_)
            | V::FramingType(_)
            | V::TxConnectSpeed(_)
            | V::PhysicalChannelId(_)
            | V::RxConnectSpeed(_) => 4,
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
            V::HostName(b)
            | V::VendorName(b)
            | V::Challenge(b)
            | V::CalledNumber(b)
            | V::CallingNumber(b)
            | V::SubAddress(b)
            | V::InitialReceivedLcpConfreq(b)
            | V::LastSentLcpConfreq(b)
            | V::LastReceivedLcpConfreq(b)
            | V::ProxyAuthenName(b)
            | V::ProxyAuthenChallenge(b)
            | V::ProxyAuthenResponse(b)
            | V::RandomVector(b)
            | V::PrivateGroupId(b)
            | V::Vendor { value: b, .. }
            | V::Unknown { value: b, .. }
            | V::HiddenRaw { ciphertext: b, .. } => b.len(),
        }
    }

    pub fn into_owned(self) -> AvpValue<'static> {
        use AvpValue as V;
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
            V::FramingCapabilities(v) => V::FramingCapabilities(v),
            V::BearerCapabilities(v) => V::BearerCapabilities(v),
            V::TieBreaker(v) => V::TieBreaker(v),
            V::FirmwareRevision(v) => V::FirmwareRevision(v),
            V::HostName(v) => V::HostName(owned(v)),
            V::VendorName(v) => V::VendorName(owned(v)),
            V::AssignedTunnelId(v) => V::AssignedTunnelId(v),
            V::ReceiveWindowSize(v) => V::ReceiveWindowSize(v),
            V::Challenge(v) => V::Challenge(owned(v)),
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
            V::AssignedSessionId(v) => V::AssignedSessionId(v),
            V::CallSerialNumber(v) => V::CallSerialNumber(v),
            V::MinimumBps(v) => V::MinimumBps(v),
            V::MaximumBps(v) => V::MaximumBps(v),
            V::BearerType(v) => V::BearerType(v),
            V::FramingType(v) => V::FramingType(v),
            V::CalledNumber(v) => V::CalledNumber(owned(v)),
            V::CallingNumber(v) => V::CallingNumber(owned(v)),
            V::SubAddress(v) => V::SubAddress(owned(v)),
            V::TxConnectSpeed(v) => V::TxConnectSpeed(v),
            V::PhysicalChannelId(v) => V::PhysicalChannelId(v),
            V::InitialReceivedLcpConfreq(v) => V::InitialReceivedLcpConfreq(owned(v)),
            V::LastSentLcpConfreq(v) => V::LastSentLcpConfreq(owned(v)),
            V::LastReceivedLcpConfreq(v) => V::LastReceivedLcpConfreq(owned(v)),
            V::ProxyAuthenType(v) => V::ProxyAuthenType(v),
            V::ProxyAuthenName(v) => V::ProxyAuthenName(owned(v)),
            V::ProxyAuthenChallenge(v) => V::ProxyAuthenChallenge(owned(v)),
            V::ProxyAuthenId { reserved, id } => V::ProxyAuthenId { reserved, id },
            V::ProxyAuthenResponse(v) => V::ProxyAuthenResponse(owned(v)),
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
            V::RandomVector(v) => V::RandomVector(owned(v)),
            V::PrivateGroupId(v) => V::PrivateGroupId(owned(v)),
            V::RxConnectSpeed(v) => V::RxConnectSpeed(v),
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
            V::Unknown { attr_type, value } => V::Unknown {
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
        }
    }

    /// Reads a plain Attribute Value. `at` is the value's offset in the message, for errors.
    fn parse(
        vendor_id: u16,
        attr_type: u16,
        reserved: u8,
        value: &'a [u8],
        at: usize,
    ) -> Result<AvpValue<'a>> {
        use AvpType as T;
        use AvpValue as V;
        if vendor_id != 0 {
            return Ok(V::Vendor {
                vendor_id,
                attr_type,
                value: Cow::Borrowed(value),
            });
        }
        // §4.1: an AVP with a reserved bit set MUST be treated as unrecognized.
        let kind = match AvpType::from_u16(attr_type) {
            Some(kind) if reserved == 0 => kind,
            _ => {
                return Ok(V::Unknown {
                    attr_type,
                    value: Cow::Borrowed(value),
                })
            }
        };
        let bytes = Cow::Borrowed(value);
        let n16 = || fixed(value, kind, at).map(u16::from_be_bytes);
        let n32 = || fixed(value, kind, at).map(u32::from_be_bytes);
        Ok(match kind {
            T::MessageType => V::MessageType(MessageType::from_u16(n16()?)),
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
            T::FramingCapabilities => V::FramingCapabilities(n32()?),
            T::BearerCapabilities => V::BearerCapabilities(n32()?),
            T::TieBreaker => V::TieBreaker(fixed(value, kind, at)?),
            T::FirmwareRevision => V::FirmwareRevision(n16()?),
            T::HostName => V::HostName(bytes),
            T::VendorName => V::VendorName(bytes),
            T::AssignedTunnelId => V::AssignedTunnelId(n16()?),
            T::ReceiveWindowSize => V::ReceiveWindowSize(n16()?),
            T::Challenge => V::Challenge(bytes),
            T::Q931CauseCode => match value {
                [c0, c1, message, advisory @ ..] => V::Q931CauseCode {
                    cause: u16::from_be_bytes([*c0, *c1]),
                    message: *message,
                    advisory: (!advisory.is_empty()).then_some(Cow::Borrowed(advisory)),
                },
                _ => return Err(bad_value(kind, at, "value length must be at least 3")),
            },
            T::ChallengeResponse => V::ChallengeResponse(fixed(value, kind, at)?),
            T::AssignedSessionId => V::AssignedSessionId(n16()?),
            T::CallSerialNumber => V::CallSerialNumber(n32()?),
            T::MinimumBps => V::MinimumBps(n32()?),
            T::MaximumBps => V::MaximumBps(n32()?),
            T::BearerType => V::BearerType(n32()?),
            T::FramingType => V::FramingType(n32()?),
            T::CalledNumber => V::CalledNumber(bytes),
            T::CallingNumber => V::CallingNumber(bytes),
            T::SubAddress => V::SubAddress(bytes),
            T::TxConnectSpeed => V::TxConnectSpeed(n32()?),
            T::PhysicalChannelId => V::PhysicalChannelId(n32()?),
            T::InitialReceivedLcpConfreq => V::InitialReceivedLcpConfreq(bytes),
            T::LastSentLcpConfreq => V::LastSentLcpConfreq(bytes),
            T::LastReceivedLcpConfreq => V::LastReceivedLcpConfreq(bytes),
            T::ProxyAuthenType => V::ProxyAuthenType(n16()?),
            T::ProxyAuthenName => V::ProxyAuthenName(bytes),
            T::ProxyAuthenChallenge => V::ProxyAuthenChallenge(bytes),
            T::ProxyAuthenId => {
                let [reserved, id] = fixed(value, kind, at)?;
                V::ProxyAuthenId { reserved, id }
            }
            T::ProxyAuthenResponse => V::ProxyAuthenResponse(bytes),
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
            T::RandomVector => V::RandomVector(bytes),
            T::PrivateGroupId => V::PrivateGroupId(bytes),
            T::RxConnectSpeed => V::RxConnectSpeed(n32()?),
            T::SequencingRequired => {
                let [] = fixed(value, kind, at)?;
                V::SequencingRequired
            }
        })
    }

    /// Writes the plain Attribute Value; `out` is exactly `value_len()` octets.
    fn write(&self, out: &mut [u8]) {
        use AvpValue as V;
        let mut w = Writer { buf: out, pos: 0 };
        match self {
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
            V::FirmwareRevision(n)
            | V::AssignedTunnelId(n)
            | V::ReceiveWindowSize(n)
            | V::AssignedSessionId(n)
            | V::ProxyAuthenType(n) => w.put(&n.to_be_bytes()),
            V::FramingCapabilities(n)
            | V::BearerCapabilities(n)
            | V::CallSerialNumber(n)
            | V::MinimumBps(n)
            | V::MaximumBps(n)
            | V::BearerType(n)
            | V::FramingType(n)
            | V::TxConnectSpeed(n)
            | V::PhysicalChannelId(n)
            | V::RxConnectSpeed(n) => w.put(&n.to_be_bytes()),
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
            V::CallErrors {
                reserved,
                crc_errors,
                framing_errors,
                hardware_overruns,
                buffer_overruns,
                timeout_errors,
                alignment_errors,
            } => {
                w.put(&reserved.to_be_bytes());
                for count in [
                    crc_errors,
                    framing_errors,
                    hardware_overruns,
                    buffer_overruns,
                    timeout_errors,
                    alignment_errors,
                ] {
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
            V::SequencingRequired => {}
            V::HostName(b)
            | V::VendorName(b)
            | V::Challenge(b)
            | V::CalledNumber(b)
            | V::CallingNumber(b)
            | V::SubAddress(b)
            | V::InitialReceivedLcpConfreq(b)
            | V::LastSentLcpConfreq(b)
            | V::LastReceivedLcpConfreq(b)
            | V::ProxyAuthenName(b)
            | V::ProxyAuthenChallenge(b)
            | V::ProxyAuthenResponse(b)
            | V::RandomVector(b)
            | V::PrivateGroupId(b)
            | V::Vendor { value: b, .. }
            | V::Unknown { value: b, .. }
            | V::HiddenRaw { ciphertext: b, .. } => w.put(b),
        }
        debug_assert_eq!(w.pos, self.value_len());
    }
}

fn bad_value(kind: AvpType, at: usize, reason: &'static str) -> Error {
    Error::BadValue {
        field: kind.name(),
        offset: at,
        reason,
    }
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

/// The shared secret and the Random Vector in force, to unhide on parse or hide on emit.
#[derive(Clone, Copy)]
pub struct Unhide<'s> {
    pub secret: &'s [u8],
    pub random_vector: &'s [u8],
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

/// One AVP: header flags plus the typed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvpRepr<'a> {
    pub mandatory: bool,
    /// Travels hidden (§4.3). Always true for `AvpValue::HiddenRaw`.
    pub hidden: bool,
    /// The four reserved bits; non-zero makes a vendor-0 AVP `Unknown` on parse.
    pub reserved: u8,
    pub value: AvpValue<'a>,
}

impl<'a> AvpRepr<'a> {
    /// Parses one AVP. `offset` is where it starts in the message (for errors). A hidden AVP is
    /// unhidden when `unhide` is given, and kept as `HiddenRaw` otherwise.
    pub fn parse(
        avp: &Avp<&'a [u8]>,
        offset: usize,
        unhide: Option<&Unhide>,
    ) -> Result<AvpRepr<'a>> {
        avp.check_len(offset)?;
        let vendor_id = avp.vendor_id();
        let attr_type = avp.attr_type();
        let reserved = avp.reserved();
        let at = offset.saturating_add(HEADER_LEN);
        let raw = avp.value_slice();
        let value = if !avp.hidden() {
            AvpValue::parse(vendor_id, attr_type, reserved, raw, at)?
        } else if vendor_id == 0 && attr_type == RANDOM_VECTOR_TYPE {
            return Err(Error::Hidden {
                avp: AvpType::RandomVector.name(),
                offset,
                reason: "the Random Vector AVP must not be hidden",
            });
        } else if let Some(unhide) = unhide {
            let plain = hidden::unhide(attr_type, unhide.secret, unhide.random_vector, raw)
                .map_err(|reason| Error::Hidden {
                    avp: avp_name(vendor_id, attr_type),
                    offset: at,
                    reason,
                })?;
            AvpValue::parse(vendor_id, attr_type, reserved, &plain, at)?.into_owned()
        } else {
            AvpValue::HiddenRaw {
                vendor_id,
                attr_type,
                ciphertext: Cow::Borrowed(raw),
            }
        };
        Ok(AvpRepr {
            mandatory: avp.mandatory(),
            hidden: avp.hidden(),
            reserved,
            value,
        })
    }

    /// Whether the emitted value is encrypted here (as opposed to already-hidden `HiddenRaw`).
    fn hides(&self) -> bool {
        self.hidden && !matches!(self.value, AvpValue::HiddenRaw { .. })
    }

    /// Octets `emit` writes: header, plus the value, plus the Original Length when hiding.
    pub fn buffer_len(&self) -> usize {
        let subformat = if self.hides() { hidden::LENGTH_LEN } else { 0 };
        HEADER_LEN + subformat + self.value.value_len()
    }

    /// Writes the AVP at the start of `buf` and returns its length. Hidden values are hidden
    /// with `hide`; `HiddenRaw` goes out as it came in.
    pub fn emit(&self, buf: &mut [u8], hide: Option<&Unhide>) -> Result<usize> {
        let vendor_id = self.value.vendor_id();
        let attr_type = self.value.attr_type();
        if let AvpValue::ResultCode {
            error: None,
            message: Some(_),
            ..
        } = self.value
        {
            return Err(Error::BadValue {
                field: AvpType::ResultCode.name(),
                offset: HEADER_LEN,
                reason: "an Error Message needs an Error Code",
            });
        }
        let on_wire_hidden = self.hidden || matches!(self.value, AvpValue::HiddenRaw { .. });
        if on_wire_hidden && vendor_id == 0 && attr_type == RANDOM_VECTOR_TYPE {
            return Err(Error::Hidden {
                avp: AvpType::RandomVector.name(),
                offset: 0,
                reason: "the Random Vector AVP must not be hidden",
            });
        }
        let len = self.buffer_len();
        if len > MAX_LEN {
            return Err(Error::BadValue {
                field: "AVP Length",
                offset: 0,
                reason: "value longer than 1017 octets (1015 when hidden)",
            });
        }
        let hide = match (self.hides(), hide) {
            (false, _) => None,
            (true, Some(hide)) => Some(hide),
            (true, None) => {
                return Err(Error::Hidden {
                    avp: avp_name(vendor_id, attr_type),
                    offset: 0,
                    reason: "no shared secret",
                })
            }
        };
        let have = buf.len();
        let Some(out) = buf.get_mut(..len) else {
            return Err(Error::BufferTooSmall {
                field: "AVP",
                need: len,
                have,
            });
        };
        let mut avp = Avp::new_unchecked(&mut *out);
        avp.set_length(len as u16); // ≤ MAX_LEN, checked above
        avp.set_mandatory(self.mandatory);
        avp.set_hidden(on_wire_hidden);
        avp.set_reserved(self.reserved);
        avp.set_vendor_id(vendor_id);
        avp.set_attr_type(attr_type);
        let value = avp.value_mut();
        match hide {
            None => self.value.write(value),
            Some(hide) => {
                let (length, plain) = value.split_at_mut(hidden::LENGTH_LEN);
                length.copy_from_slice(&(plain.len() as u16).to_be_bytes()); // < MAX_LEN
                self.value.write(plain);
                hidden::hide_in_place(attr_type, hide.secret, hide.random_vector, value);
            }
        }
        Ok(len)
    }

    pub fn into_owned(self) -> AvpRepr<'static> {
        AvpRepr {
            mandatory: self.mandatory,
            hidden: self.hidden,
            reserved: self.reserved,
            value: self.value.into_owned(),
        }
    }
}

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

impl fmt::Display for AvpRepr<'_> {
    /// One token: `host=lns1`, `tid=5`, `result=2/6"msg"`, `chal=<16B>`, `v9:type12=<4B>`,
    /// `t20=<3B>`; `!H` marks a hidden AVP and `!R<n>` non-zero reserved bits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use AvpValue as V;
        let value = &self.value;
        match (value.avp_type(), value.vendor_id()) {
            (Some(kind), _) => f.write_str(kind.short())?,
            (None, 0) => write!(f, "t{}", value.attr_type())?,
            (None, vendor) => write!(f, "v{vendor}:type{}", value.attr_type())?,
        }
        if !matches!(value, V::SequencingRequired) {
            f.write_str("=")?;
        }
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
            V::FramingCapabilities(n)
            | V::BearerCapabilities(n)
            | V::BearerType(n)
            | V::FramingType(n) => write!(f, "{n:#x}")?,
            V::CallSerialNumber(n)
            | V::MinimumBps(n)
            | V::MaximumBps(n)
            | V::TxConnectSpeed(n)
            | V::PhysicalChannelId(n)
            | V::RxConnectSpeed(n) => f.write_str(itoa::Buffer::new().format(*n))?,
            V::FirmwareRevision(n)
            | V::AssignedTunnelId(n)
            | V::ReceiveWindowSize(n)
            | V::AssignedSessionId(n)
            | V::ProxyAuthenType(n) => f.write_str(itoa::Buffer::new().format(*n))?,
            V::TieBreaker(b) => write!(f, "{}", Hex(b))?,
            V::ChallengeResponse(b) => write!(f, "<{}B>", b.len())?,
            V::HostName(b)
            | V::VendorName(b)
            | V::CalledNumber(b)
            | V::CallingNumber(b)
            | V::SubAddress(b)
            | V::ProxyAuthenName(b) => write!(f, "{}", Escaped(b))?,
            V::Challenge(b)
            | V::InitialReceivedLcpConfreq(b)
            | V::LastSentLcpConfreq(b)
            | V::LastReceivedLcpConfreq(b)
            | V::ProxyAuthenChallenge(b)
            | V::ProxyAuthenResponse(b)
            | V::RandomVector(b)
            | V::PrivateGroupId(b)
            | V::Vendor { value: b, .. }
            | V::Unknown { value: b, .. } => write!(f, "<{}B>", b.len())?,
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
            V::CallErrors {
                reserved,
                crc_errors,
                framing_errors,
                hardware_overruns,
                buffer_overruns,
                timeout_errors,
                alignment_errors,
            } => {
                write!(
                    f,
                    "crc:{crc_errors},framing:{framing_errors},hw:{hardware_overruns},\
                     buf:{buffer_overruns},timeout:{timeout_errors},align:{alignment_errors}"
                )?;
                if *reserved != 0 {
                    write!(f, ",rsvd={reserved}")?;
                }
            }
            V::Accm {
                reserved,
                send_accm,
                receive_accm,
            } => {
                write!(f, "send:{send_accm:#x},recv:{receive_accm:#x}")?;
                if *reserved != 0 {
                    write!(f, ",rsvd={reserved}")?;
                }
            }
            V::SequencingRequired => {}
        }
        if self.hidden || matches!(value, V::HiddenRaw { .. }) {
            f.write_str("!H")?;
        }
        if self.reserved != 0 {
            write!(f, "!R{}", self.reserved)?;
        }
        Ok(())
    }
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
        struct CallErrors {
            reserved: u16,
            crc_errors: u32,
            framing_errors: u32,
            hardware_overruns: u32,
            buffer_overruns: u32,
            timeout_errors: u32,
            alignment_errors: u32,
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
            V::FramingCapabilities(n)
            | V::BearerCapabilities(n)
            | V::CallSerialNumber(n)
            | V::MinimumBps(n)
            | V::MaximumBps(n)
            | V::BearerType(n)
            | V::FramingType(n)
            | V::TxConnectSpeed(n)
            | V::PhysicalChannelId(n)
            | V::RxConnectSpeed(n) => s.serialize_u32(*n),
            V::FirmwareRevision(n)
            | V::AssignedTunnelId(n)
            | V::ReceiveWindowSize(n)
            | V::AssignedSessionId(n)
            | V::ProxyAuthenType(n) => s.serialize_u16(*n),
            V::HostName(b)
            | V::VendorName(b)
            | V::CalledNumber(b)
            | V::CallingNumber(b)
            | V::SubAddress(b)
            | V::ProxyAuthenName(b) => Lossy(b).serialize(s),
            V::TieBreaker(b) => HexString(b).serialize(s),
            V::ChallengeResponse(b) => HexString(b).serialize(s),
            V::Challenge(b)
            | V::InitialReceivedLcpConfreq(b)
            | V::LastSentLcpConfreq(b)
            | V::LastReceivedLcpConfreq(b)
            | V::ProxyAuthenChallenge(b)
            | V::ProxyAuthenResponse(b)
            | V::RandomVector(b)
            | V::PrivateGroupId(b)
            | V::Vendor { value: b, .. }
            | V::Unknown { value: b, .. } => HexString(b).serialize(s),
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
            V::CallErrors {
                reserved,
                crc_errors,
                framing_errors,
                hardware_overruns,
                buffer_overruns,
                timeout_errors,
                alignment_errors,
            } => CallErrors {
                reserved: *reserved,
                crc_errors: *crc_errors,
                framing_errors: *framing_errors,
                hardware_overruns: *hardware_overruns,
                buffer_overruns: *buffer_overruns,
                timeout_errors: *timeout_errors,
                alignment_errors: *alignment_errors,
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
            V::SequencingRequired => s.serialize_unit(),
            V::HiddenRaw { ciphertext, .. } => Ciphertext {
                ciphertext: HexString(ciphertext),
            }
            .serialize(s),
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

/// Generators of encodable AVPs, for this file's and other files' property tests.
#[cfg(test)]
pub(crate) mod strategies {
    use super::*;
    use proptest::collection::vec;
    use proptest::option;
    use proptest::prelude::*;

    /// The secret and Random Vector that `avp_repr()`'s hidden AVPs are meant to travel under.
    pub const SECRET: &[u8] = b"proptest-secret";
    pub const RANDOM_VECTOR: &[u8] = &[0x5a; 16];

    pub fn unhide() -> Unhide<'static> {
        Unhide {
            secret: SECRET,
            random_vector: RANDOM_VECTOR,
        }
    }

    fn octets() -> impl Strategy<Value = Cow<'static, [u8]>> {
        vec(any::<u8>(), 0..=64).prop_map(Cow::Owned)
    }

    /// Optional strings that parse treats as absent when empty.
    fn nonempty_octets() -> impl Strategy<Value = Cow<'static, [u8]>> {
        vec(any::<u8>(), 1..=64).prop_map(Cow::Owned)
    }

    /// Any RFC 2661 attribute with a value that survives emit then parse unchanged.
    pub fn typed_value() -> impl Strategy<Value = AvpValue<'static>> {
        use AvpValue as V;
        prop_oneof![
            any::<u16>().prop_map(|n| V::MessageType(MessageType::from_u16(n))),
            (
                any::<u16>(),
                option::of((any::<u16>(), option::of(nonempty_octets())))
            )
                .prop_map(|(result, rest)| V::ResultCode {
                    result,
                    error: rest.as_ref().map(|(error, _)| *error),
                    message: rest.and_then(|(_, message)| message),
                }),
            any::<(u8, u8)>()
                .prop_map(|(version, revision)| V::ProtocolVersion { version, revision }),
            any::<u32>().prop_map(V::FramingCapabilities),
            any::<u32>().prop_map(V::BearerCapabilities),
            any::<[u8; 8]>().prop_map(V::TieBreaker),
            any::<u16>().prop_map(V::FirmwareRevision),
            octets().prop_map(V::HostName),
            octets().prop_map(V::VendorName),
            any::<u16>().prop_map(V::AssignedTunnelId),
            any::<u16>().prop_map(V::ReceiveWindowSize),
            octets().prop_map(V::Challenge),
            (any::<u16>(), any::<u8>(), option::of(nonempty_octets())).prop_map(
                |(cause, message, advisory)| V::Q931CauseCode {
                    cause,
                    message,
                    advisory,
                }
            ),
            any::<[u8; 16]>().prop_map(V::ChallengeResponse),
            any::<u16>().prop_map(V::AssignedSessionId),
            any::<u32>().prop_map(V::CallSerialNumber),
            any::<u32>().prop_map(V::MinimumBps),
            any::<u32>().prop_map(V::MaximumBps),
            any::<u32>().prop_map(V::BearerType),
            any::<u32>().prop_map(V::FramingType),
            octets().prop_map(V::CalledNumber),
            octets().prop_map(V::CallingNumber),
            octets().prop_map(V::SubAddress),
            any::<u32>().prop_map(V::TxConnectSpeed),
            any::<u32>().prop_map(V::PhysicalChannelId),
            octets().prop_map(V::InitialReceivedLcpConfreq),
            octets().prop_map(V::LastSentLcpConfreq),
            octets().prop_map(V::LastReceivedLcpConfreq),
            any::<u16>().prop_map(V::ProxyAuthenType),
            octets().prop_map(V::ProxyAuthenName),
            octets().prop_map(V::ProxyAuthenChallenge),
            any::<(u8, u8)>().prop_map(|(reserved, id)| V::ProxyAuthenId { reserved, id }),
            octets().prop_map(V::ProxyAuthenResponse),
            (any::<u16>(), any::<[u32; 6]>()).prop_map(|(reserved, c)| V::CallErrors {
                reserved,
                crc_errors: c[0],
                framing_errors: c[1],
                hardware_overruns: c[2],
                buffer_overruns: c[3],
                timeout_errors: c[4],
                alignment_errors: c[5],
            }),
            any::<(u16, u32, u32)>().prop_map(|(reserved, send_accm, receive_accm)| V::Accm {
                reserved,
                send_accm,
                receive_accm,
            }),
            octets().prop_map(V::RandomVector),
            octets().prop_map(V::PrivateGroupId),
            any::<u32>().prop_map(V::RxConnectSpeed),
            Just(V::SequencingRequired),
        ]
    }

    /// Vendor-specific and unassigned AVPs, kept raw.
    pub fn raw_value() -> impl Strategy<Value = AvpValue<'static>> {
        prop_oneof![
            (1..=u16::MAX, any::<u16>(), octets()).prop_map(|(vendor_id, attr_type, value)| {
                AvpValue::Vendor {
                    vendor_id,
                    attr_type,
                    value,
                }
            }),
            (prop_oneof![Just(20u16), 40..=u16::MAX], octets())
                .prop_map(|(attr_type, value)| AvpValue::Unknown { attr_type, value }),
        ]
    }

    fn repr(
        hidden: bool,
        typed: impl Strategy<Value = AvpValue<'static>>,
    ) -> impl Strategy<Value = AvpRepr<'static>> {
        prop_oneof![
            4 => (any::<bool>(), typed).prop_map(move |(mandatory, value)| AvpRepr {
                mandatory,
                hidden,
                reserved: 0,
                value,
            }),
            // Only raw values may carry reserved bits: a typed AVP with them parses as Unknown.
            1 => (any::<bool>(), 0u8..16, raw_value()).prop_map(move |(mandatory, reserved, value)| {
                AvpRepr {
                    mandatory,
                    hidden,
                    reserved,
                    value,
                }
            }),
        ]
    }

    /// AVPs sent in the clear.
    pub fn plain_avp_repr() -> impl Strategy<Value = AvpRepr<'static>> {
        repr(false, typed_value())
    }

    /// AVPs to hide with `unhide()`; never the Random Vector.
    pub fn hidden_avp_repr() -> impl Strategy<Value = AvpRepr<'static>> {
        let typed = typed_value().prop_filter("the Random Vector is never hidden", |value| {
            !matches!(value, AvpValue::RandomVector(_))
        });
        repr(true, typed)
    }

    /// Hidden AVPs kept as ciphertext; parse them without `unhide`.
    pub fn hidden_raw_avp_repr() -> impl Strategy<Value = AvpRepr<'static>> {
        (any::<bool>(), 0u8..16, any::<u16>(), any::<u16>(), octets())
            .prop_filter(
                "the Random Vector is never hidden",
                |(_, _, vendor, kind, _)| (*vendor, *kind) != (0, RANDOM_VECTOR_TYPE),
            )
            .prop_map(
                |(mandatory, reserved, vendor_id, attr_type, ciphertext)| AvpRepr {
                    mandatory,
                    hidden: true,
                    reserved,
                    value: AvpValue::HiddenRaw {
                        vendor_id,
                        attr_type,
                        ciphertext,
                    },
                },
            )
    }

    /// Any encodable AVP: mostly plain, sometimes hidden (under `unhide()`), sometimes
    /// `HiddenRaw` (parse those with no `unhide`).
    pub fn avp_repr() -> impl Strategy<Value = AvpRepr<'static>> {
        prop_oneof![
            6 => plain_avp_repr(),
            3 => hidden_avp_repr(),
            1 => hidden_raw_avp_repr(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::strategies;
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use serde_json::json;

    const SECRET: &[u8] = b"tunnel-secret";
    const RV: [u8; 16] = [
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
        0x0f,
    ];
    const UNHIDE: Unhide<'static> = Unhide {
        secret: SECRET,
        random_vector: &RV,
    };

    fn plain(mandatory: bool, value: AvpValue<'static>) -> AvpRepr<'static> {
        AvpRepr {
            mandatory,
            hidden: false,
            reserved: 0,
            value,
        }
    }

    fn parse(bytes: &[u8], unhide: Option<&Unhide>) -> Result<AvpRepr<'static>> {
        let avp = Avp::new_checked(bytes, 20)?;
        AvpRepr::parse(&avp, 20, unhide).map(AvpRepr::into_owned)
    }

    fn emit(repr: &AvpRepr, hide: Option<&Unhide>) -> Result<Vec<u8>> {
        let mut buf = vec![0; repr.buffer_len()];
        let len = repr.emit(&mut buf, hide)?;
        assert_eq!(len, buf.len());
        Ok(buf)
    }

    /// Parses `bytes`, emits the repr back over a dirty buffer, and checks the one-line form.
    fn golden(bytes: &[u8], repr: AvpRepr<'static>, display: &str) {
        assert_eq!(parse(bytes, None).unwrap(), repr, "parse {display}");
        assert_eq!(repr.buffer_len(), bytes.len(), "buffer_len {display}");
        let mut buf = vec![0xa5; bytes.len() + 3];
        assert_eq!(repr.emit(&mut buf, None).unwrap(), bytes.len());
        assert_eq!(&buf[..bytes.len()], bytes, "emit {display}");
        assert_eq!(buf[bytes.len()..], [0xa5; 3], "emit past the AVP");
        assert_eq!(repr.to_string(), display);
    }

    #[test]
    fn golden_avps() {
        use AvpValue as V;
        golden(
            &[0x80, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01],
            plain(true, V::MessageType(MessageType::Sccrq)),
            "msg=SCCRQ",
        );
        golden(
            &[0x80, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01],
            plain(
                true,
                V::ResultCode {
                    result: 1,
                    error: None,
                    message: None,
                },
            ),
            "result=1",
        );
        golden(
            &[0x80, 0x0a, 0x00, 0x00, 0x00, 0x01, 0x00, 0x02, 0x00, 0x06],
            plain(
                true,
                V::ResultCode {
                    result: 2,
                    error: Some(6),
                    message: None,
                },
            ),
            "result=2/6",
        );
        golden(
            &[
                0x80, 0x0d, 0x00, 0x00, 0x00, 0x01, 0x00, 0x02, 0x00, 0x06, b'm', b's', b'g',
            ],
            plain(
                true,
                V::ResultCode {
                    result: 2,
                    error: Some(6),
                    message: Some(Cow::Borrowed(b"msg")),
                },
            ),
            "result=2/6\"msg\"",
        );
        golden(
            &[0x80, 0x08, 0x00, 0x00, 0x00, 0x02, 0x01, 0x00],
            plain(
                true,
                V::ProtocolVersion {
                    version: 1,
                    revision: 0,
                },
            ),
            "ver=1.0",
        );
        golden(
            &[0x80, 0x0a, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x03],
            plain(true, V::FramingCapabilities(3)),
            "fcap=0x3",
        );
        golden(
            &[
                0x00, 0x0e, 0x00, 0x00, 0x00, 0x05, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
            ],
            plain(
                false,
                V::TieBreaker([0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77]),
            ),
            "tie=0011223344556677",
        );
        golden(
            &[0x00, 0x08, 0x00, 0x00, 0x00, 0x06, 0x06, 0x90],
            plain(false, V::FirmwareRevision(0x0690)),
            "fw=1680",
        );
        golden(
            &[0x80, 0x0a, 0x00, 0x00, 0x00, 0x07, b'l', b'n', b's', b'1'],
            plain(true, V::HostName(Cow::Borrowed(b"lns1"))),
            "host=lns1",
        );
        golden(
            &[
                0x00, 0x0f, 0x00, 0x00, 0x00, 0x08, b'x', b' ', b'"', b'\\', 0xc3, 0xa9, 0x0a,
                b'!', b'~',
            ],
            plain(false, V::VendorName(Cow::Borrowed(b"x \"\\\xc3\xa9\n!~"))),
            "vendor=x\\x20\\\"\\\\\\xc3\\xa9\\x0a!~",
        );
        golden(
            &[0x80, 0x08, 0x00, 0x00, 0x00, 0x09, 0x00, 0x05],
            plain(true, V::AssignedTunnelId(5)),
            "tid=5",
        );
        golden(
            &[0x80, 0x08, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x04],
            plain(true, V::ReceiveWindowSize(4)),
            "rwin=4",
        );
        let mut challenge = vec![0x80, 0x16, 0x00, 0x00, 0x00, 0x0b];
        challenge.extend(0u8..16);
        golden(
            &challenge,
            plain(true, V::Challenge(Cow::Owned((0u8..16).collect()))),
            "chal=<16B>",
        );
        golden(
            &[
                0x80, 0x0c, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x10, 0x45, b'b', b'y', b'e',
            ],
            plain(
                true,
                V::Q931CauseCode {
                    cause: 16,
                    message: 0x45,
                    advisory: Some(Cow::Borrowed(b"bye")),
                },
            ),
            "q931=16/69\"bye\"",
        );
        let mut response = vec![0x80, 0x16, 0x00, 0x00, 0x00, 0x0d];
        response.extend([0xab; 16]);
        golden(
            &response,
            plain(true, V::ChallengeResponse([0xab; 16])),
            "chresp=<16B>",
        );
        golden(
            &[0x80, 0x0a, 0x00, 0x00, 0x00, 0x12, 0x00, 0x00, 0x00, 0x01],
            plain(true, V::BearerType(1)),
            "btype=0x1",
        );
        golden(
            &[0x80, 0x0a, 0x00, 0x00, 0x00, 0x18, 0x05, 0xf5, 0xe1, 0x00],
            plain(true, V::TxConnectSpeed(100_000_000)),
            "txspeed=100000000",
        );
        golden(
            &[0x00, 0x08, 0x00, 0x00, 0x00, 0x20, 0x00, 0x07],
            plain(false, V::ProxyAuthenId { reserved: 0, id: 7 }),
            "pa_id=7",
        );
        golden(
            &[
                0x80, 0x20, 0x00, 0x00, 0x00, 0x22, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
                0x00, 0x02, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x05,
                0x00, 0x00, 0x00, 0x06,
            ],
            plain(
                true,
                V::CallErrors {
                    reserved: 0,
                    crc_errors: 1,
                    framing_errors: 2,
                    hardware_overruns: 3,
                    buffer_overruns: 4,
                    timeout_errors: 5,
                    alignment_errors: 6,
                },
            ),
            "call_errors=crc:1,framing:2,hw:3,buf:4,timeout:5,align:6",
        );
        golden(
            &[
                0x80, 0x10, 0x00, 0x00, 0x00, 0x23, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00,
                0x00, 0x0a,
            ],
            plain(
                true,
                V::Accm {
                    reserved: 0,
                    send_accm: 0xffff_ffff,
                    receive_accm: 0x0a,
                },
            ),
            "accm=send:0xffffffff,recv:0xa",
        );
        golden(
            &[0x80, 0x0a, 0x00, 0x00, 0x00, 0x24, 0xde, 0xad, 0xbe, 0xef],
            plain(
                true,
                V::RandomVector(Cow::Borrowed(&[0xde, 0xad, 0xbe, 0xef])),
            ),
            "rv=<4B>",
        );
        golden(
            &[0x80, 0x06, 0x00, 0x00, 0x00, 0x27],
            plain(true, V::SequencingRequired),
            "seqreq",
        );
        golden(
            &[0x00, 0x0a, 0x00, 0x09, 0x00, 0x0c, 0xde, 0xad, 0xbe, 0xef],
            plain(
                false,
                V::Vendor {
                    vendor_id: 9,
                    attr_type: 12,
                    value: Cow::Borrowed(&[0xde, 0xad, 0xbe, 0xef]),
                },
            ),
            "v9:type12=<4B>",
        );
        golden(
            &[0x80, 0x09, 0x00, 0x00, 0x00, 0x14, 0x01, 0x02, 0x03],
            plain(
                true,
                V::Unknown {
                    attr_type: 20,
                    value: Cow::Borrowed(&[1, 2, 3]),
                },
            ),
            "t20=<3B>",
        );
        // Empty strings are accepted (lenient), even where the RFC asks for one octet.
        golden(
            &[0x80, 0x06, 0x00, 0x00, 0x00, 0x07],
            plain(true, V::HostName(Cow::Borrowed(b""))),
            "host=",
        );
    }

    #[test]
    fn reserved_bits_make_an_avp_unrecognized() {
        // §4.1: a reserved bit set means "unrecognized", whatever the type.
        golden(
            &[0x84, 0x0a, 0x00, 0x00, 0x00, 0x07, b'l', b'n', b's', b'1'],
            AvpRepr {
                mandatory: true,
                hidden: false,
                reserved: 1,
                value: AvpValue::Unknown {
                    attr_type: 7,
                    value: Cow::Borrowed(b"lns1"),
                },
            },
            "t7=<4B>!R1",
        );
        // The wrong length for a Tunnel ID is no error once the AVP is unrecognized.
        let repr = parse(&[0xbc, 0x07, 0x00, 0x00, 0x00, 0x09, 0x01], None).unwrap();
        assert_eq!(repr.reserved, 0x0f);
        assert_eq!(repr.value.avp_type(), None);
        assert_eq!(repr.value.attr_type(), 9);
    }

    /// Proxy Authen Name "bob", hidden under `UNHIDE` (ciphertext from Python's hashlib).
    const HIDDEN_NAME: [u8; 11] = [
        0x40, 0x0b, 0x00, 0x00, 0x00, 0x1e, 0x7c, 0x0d, 0xec, 0x10, 0x1e,
    ];
    /// Assigned Tunnel ID 0x1234, M and H set, hidden under `UNHIDE`.
    const HIDDEN_TUNNEL_ID: [u8; 10] = [0xc0, 0x0a, 0x00, 0x00, 0x00, 0x09, 0xd8, 0xc3, 0x8a, 0xb3];

    #[test]
    fn golden_hidden_avps() {
        let name = AvpRepr {
            mandatory: false,
            hidden: true,
            reserved: 0,
            value: AvpValue::ProxyAuthenName(Cow::Borrowed(b"bob")),
        };
        assert_eq!(parse(&HIDDEN_NAME, Some(&UNHIDE)).unwrap(), name);
        assert_eq!(name.buffer_len(), HIDDEN_NAME.len());
        assert_eq!(emit(&name, Some(&UNHIDE)).unwrap(), HIDDEN_NAME);
        assert_eq!(name.to_string(), "pa_name=bob!H");

        let tid = AvpRepr {
            mandatory: true,
            hidden: true,
            reserved: 0,
            value: AvpValue::AssignedTunnelId(0x1234),
        };
        assert_eq!(parse(&HIDDEN_TUNNEL_ID, Some(&UNHIDE)).unwrap(), tid);
        assert_eq!(emit(&tid, Some(&UNHIDE)).unwrap(), HIDDEN_TUNNEL_ID);
        assert_eq!(tid.to_string(), "tid=4660!H");
    }

    #[test]
    fn hidden_without_secret_stays_raw() {
        let raw = AvpRepr {
            mandatory: false,
            hidden: true,
            reserved: 0,
            value: AvpValue::HiddenRaw {
                vendor_id: 0,
                attr_type: 30,
                ciphertext: Cow::Borrowed(&HIDDEN_NAME[6..]),
            },
        };
        golden(&HIDDEN_NAME, raw.clone(), "pa_name=<enc:5B>!H");
        assert_eq!(raw.value.avp_type(), Some(AvpType::ProxyAuthenName));
        // Re-emitted verbatim: no secret needed, even when one is offered.
        assert_eq!(emit(&raw, Some(&UNHIDE)).unwrap(), HIDDEN_NAME);
    }

    #[test]
    fn hidden_errors() {
        // Wrong secret: the decrypted Original Length points past the value.
        let wrong = Unhide {
            secret: b"not-the-secret",
            random_vector: &RV,
        };
        assert!(matches!(
            parse(&HIDDEN_NAME, Some(&wrong)),
            Err(Error::Hidden {
                avp: "Proxy Authen Name",
                offset: 26,
                ..
            })
        ));
        // A hidden value too short for the Original Length.
        assert!(matches!(
            parse(&[0x40, 0x07, 0x00, 0x00, 0x00, 0x07, 0x00], Some(&UNHIDE)),
            Err(Error::Hidden {
                avp: "Host Name",
                ..
            })
        ));
        // A plaintext of the wrong size is a BadValue, as if it had been sent in the clear.
        let short = AvpRepr {
            mandatory: true,
            hidden: true,
            reserved: 0,
            value: AvpValue::Unknown {
                attr_type: 9,
                value: Cow::Borrowed(&[1, 2, 3]),
            },
        };
        let bytes = emit(&short, Some(&UNHIDE)).unwrap();
        assert_eq!(
            parse(&bytes, Some(&UNHIDE)),
            Err(Error::BadValue {
                field: "Assigned Tunnel ID",
                offset: 26,
                reason: "value length must be 2",
            })
        );
        // The Random Vector is never hidden, either way.
        assert!(matches!(
            parse(&[0xc0, 0x08, 0x00, 0x00, 0x00, 0x24, 0x01, 0x02], None),
            Err(Error::Hidden {
                avp: "Random Vector",
                offset: 20,
                ..
            })
        ));
        let rv = AvpRepr {
            mandatory: true,
            hidden: true,
            reserved: 0,
            value: AvpValue::RandomVector(Cow::Borrowed(&[1, 2])),
        };
        assert!(matches!(
            emit(&rv, Some(&UNHIDE)),
            Err(Error::Hidden {
                avp: "Random Vector",
                ..
            })
        ));
        // Hiding needs a secret.
        let host = AvpRepr {
            mandatory: true,
            hidden: true,
            reserved: 0,
            value: AvpValue::HostName(Cow::Borrowed(b"lac")),
        };
        assert_eq!(
            emit(&host, None),
            Err(Error::Hidden {
                avp: "Host Name",
                offset: 0,
                reason: "no shared secret",
            })
        );
    }

    #[test]
    fn every_fixed_size_value_checks_its_length() {
        use AvpType as T;
        let sizes = [
            (T::MessageType, 2usize),
            (T::ProtocolVersion, 2),
            (T::FramingCapabilities, 4),
            (T::BearerCapabilities, 4),
            (T::TieBreaker, 8),
            (T::FirmwareRevision, 2),
            (T::AssignedTunnelId, 2),
            (T::ReceiveWindowSize, 2),
            (T::ChallengeResponse, 16),
            (T::AssignedSessionId, 2),
            (T::CallSerialNumber, 4),
            (T::MinimumBps, 4),
            (T::MaximumBps, 4),
            (T::BearerType, 4),
            (T::FramingType, 4),
            (T::TxConnectSpeed, 4),
            (T::PhysicalChannelId, 4),
            (T::ProxyAuthenType, 2),
            (T::ProxyAuthenId, 2),
            (T::CallErrors, 26),
            (T::Accm, 10),
            (T::RxConnectSpeed, 4),
            (T::SequencingRequired, 0),
        ];
        for (kind, size) in sizes {
            for len in [size.checked_sub(1), Some(size), Some(size + 1)]
                .into_iter()
                .flatten()
            {
                let mut bytes = vec![0x80, 0x00, 0x00, 0x00];
                bytes[1] = (HEADER_LEN + len) as u8;
                bytes.extend(kind.to_u16().to_be_bytes());
                bytes.extend(vec![0x01; len]);
                let parsed = parse(&bytes, None);
                if len == size {
                    let repr = parsed.unwrap();
                    assert_eq!(repr.value.avp_type(), Some(kind));
                    assert_eq!(emit(&repr, None).unwrap(), bytes, "{kind}");
                } else {
                    match parsed {
                        Err(Error::BadValue {
                            field,
                            offset: 26,
                            reason,
                        }) => {
                            assert_eq!(field, kind.name());
                            assert!(reason.ends_with(&format!("must be {size}")), "{reason}");
                        }
                        other => panic!("{kind} with {len} octets: {other:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn variable_structures_check_their_minimum() {
        for (kind, bad) in [
            (AvpType::ResultCode, &[0usize, 1, 3][..]),
            (AvpType::Q931CauseCode, &[0, 1, 2]),
        ] {
            for &len in bad {
                let mut bytes = vec![0x80, (HEADER_LEN + len) as u8, 0x00, 0x00];
                bytes.extend(kind.to_u16().to_be_bytes());
                bytes.extend(vec![0x01; len]);
                assert!(
                    matches!(
                        parse(&bytes, None),
                        Err(Error::BadValue { field, offset: 26, .. }) if field == kind.name()
                    ),
                    "{kind} with {len} octets"
                );
            }
        }
        // An empty advisory message is absent.
        let repr = parse(
            &[0x80, 0x09, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x10, 0x45],
            None,
        )
        .unwrap();
        assert_eq!(
            repr.value,
            AvpValue::Q931CauseCode {
                cause: 16,
                message: 0x45,
                advisory: None
            }
        );
    }

    #[test]
    fn new_checked_errors_name_field_and_offset() {
        assert_eq!(
            Avp::new_checked(&[0x80, 0x08, 0x00, 0x00, 0x00][..], 12),
            Err(Error::Truncated {
                field: "AVP header",
                offset: 12,
                need: 6,
                have: 5,
            })
        );
        assert_eq!(
            Avp::new_checked(&[0x80, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00][..], 12),
            Err(Error::BadValue {
                field: "AVP Length",
                offset: 12,
                reason: "less than the 6-octet AVP header",
            })
        );
        assert_eq!(
            Avp::new_checked(&[0x80, 0x0a, 0x00, 0x00, 0x00, 0x09, 0x00, 0x05][..], 12),
            Err(Error::Truncated {
                field: "AVP Length",
                offset: 12,
                need: 10,
                have: 8,
            })
        );
        // Length bits above the 10-bit field are flags, not length.
        assert!(Avp::new_checked(&[0xfc, 0x08, 0, 0, 0, 0, 0, 1][..], 0).is_ok());
    }

    #[test]
    fn view_reads_only_its_own_length() {
        let bytes = [0x80, 0x08, 0x00, 0x00, 0x00, 0x09, 0x00, 0x05, 0xff, 0xff];
        let avp = Avp::new_checked(&bytes[..], 0).unwrap();
        assert!(avp.mandatory());
        assert!(!avp.hidden());
        assert_eq!(avp.reserved(), 0);
        assert_eq!(avp.length(), 8);
        assert_eq!(avp.vendor_id(), 0);
        assert_eq!(avp.attr_type(), 9);
        assert_eq!(avp.value(), [0x00, 0x05]);
        assert_eq!(avp.value_slice(), [0x00, 0x05]);
        assert_eq!(
            AvpRepr::parse(&avp, 0, None).unwrap().value,
            AvpValue::AssignedTunnelId(5)
        );
        assert_eq!(avp.into_inner().len(), 10);
    }

    #[test]
    fn setters_write_each_field() {
        let mut buf = [0u8; 9];
        let mut avp = Avp::new_unchecked(&mut buf[..]);
        avp.set_length(0x3ff);
        avp.set_mandatory(true);
        avp.set_hidden(true);
        avp.set_reserved(0x0a);
        avp.set_length(9);
        avp.set_vendor_id(0x1234);
        avp.set_attr_type(0x5678);
        avp.value_mut().copy_from_slice(&[1, 2, 3]);
        assert_eq!(buf, [0xe8, 0x09, 0x12, 0x34, 0x56, 0x78, 1, 2, 3]);
        let mut avp = Avp::new_unchecked(&mut buf[..]);
        avp.set_mandatory(false);
        avp.set_reserved(0);
        avp.set_hidden(false);
        assert_eq!(avp.into_inner()[..2], [0x00, 0x09]);
    }

    #[test]
    fn emit_errors() {
        let orphan_message = plain(
            true,
            AvpValue::ResultCode {
                result: 2,
                error: None,
                message: Some(Cow::Borrowed(b"why")),
            },
        );
        assert!(matches!(
            emit(&orphan_message, None),
            Err(Error::BadValue {
                field: "Result Code",
                ..
            })
        ));

        let host = |len: usize, hidden: bool| AvpRepr {
            mandatory: true,
            hidden,
            reserved: 0,
            value: AvpValue::HostName(Cow::Owned(vec![b'h'; len])),
        };
        assert_eq!(
            emit(&host(MAX_VALUE_LEN, false), None).unwrap().len(),
            MAX_LEN
        );
        assert!(matches!(
            emit(&host(MAX_VALUE_LEN + 1, false), None),
            Err(Error::BadValue {
                field: "AVP Length",
                ..
            })
        ));
        let hidden = emit(&host(MAX_VALUE_LEN - 2, true), Some(&UNHIDE)).unwrap();
        assert_eq!(
            parse(&hidden, Some(&UNHIDE)).unwrap(),
            host(MAX_VALUE_LEN - 2, true)
        );
        assert!(matches!(
            emit(&host(MAX_VALUE_LEN - 1, true), Some(&UNHIDE)),
            Err(Error::BadValue {
                field: "AVP Length",
                ..
            })
        ));

        let mut small = [0u8; 9];
        assert_eq!(
            host(4, false).emit(&mut small, None),
            Err(Error::BufferTooSmall {
                field: "AVP",
                need: 10,
                have: 9,
            })
        );
    }

    #[test]
    fn avp_types_are_consistent() {
        let mut codes: Vec<u16> = AvpType::ALL.iter().map(|kind| kind.to_u16()).collect();
        assert_eq!(codes, (0..=39).filter(|&n| n != 20).collect::<Vec<_>>());
        codes.dedup();
        assert_eq!(codes.len(), 39);
        for kind in AvpType::ALL {
            assert_eq!(AvpType::from_u16(kind.to_u16()), Some(kind));
            assert_eq!(
                AvpType::ALL
                    .iter()
                    .filter(|k| k.short() == kind.short())
                    .count(),
                1
            );
            assert_eq!(
                AvpType::ALL
                    .iter()
                    .filter(|k| k.name() == kind.name())
                    .count(),
                1
            );
        }
        assert_eq!(AvpType::from_u16(20), None);
        assert_eq!(AvpType::from_u16(40), None);
        assert_eq!(AvpType::ChallengeResponse.name(), "Challenge Response");
        assert_eq!(AvpType::ChallengeResponse.to_u16(), 13);
        assert_eq!(AvpType::HostName.to_string(), "Host Name");
    }

    #[test]
    fn json_form() {
        use AvpValue as V;
        let json = |repr: AvpRepr| serde_json::to_value(&repr).unwrap();
        assert_eq!(
            json(plain(true, V::HostName(Cow::Borrowed(b"lns1")))),
            json!({"type": 7, "name": "Host Name", "mandatory": true, "hidden": false,
                   "vendor_id": 0, "value": "lns1"})
        );
        assert_eq!(
            json(plain(true, V::MessageType(MessageType::Sccrp)))["value"],
            "SCCRP"
        );
        assert_eq!(json(plain(true, V::AssignedTunnelId(5)))["value"], 5);
        assert_eq!(json(plain(true, V::FramingCapabilities(3)))["value"], 3);
        assert_eq!(
            json(plain(
                false,
                V::TieBreaker([0, 1, 2, 3, 0xfc, 0xfd, 0xfe, 0xff])
            ))["value"],
            "00010203fcfdfeff"
        );
        assert_eq!(
            json(plain(true, V::Challenge(Cow::Borrowed(&[0xab, 0x01]))))["value"],
            "ab01"
        );
        assert_eq!(
            json(plain(
                true,
                V::ResultCode {
                    result: 2,
                    error: Some(6),
                    message: Some(Cow::Borrowed(b"bad \xff")),
                }
            ))["value"],
            json!({"result": 2, "error": 6, "message": "bad \u{fffd}"})
        );
        assert_eq!(
            json(plain(
                true,
                V::ResultCode {
                    result: 1,
                    error: None,
                    message: None,
                }
            ))["value"],
            json!({"result": 1, "error": null, "message": null})
        );
        assert_eq!(
            json(plain(
                true,
                V::ProtocolVersion {
                    version: 1,
                    revision: 0,
                }
            ))["value"],
            json!({"version": 1, "revision": 0})
        );
        assert_eq!(
            json(plain(
                true,
                V::Q931CauseCode {
                    cause: 16,
                    message: 69,
                    advisory: None,
                }
            ))["value"],
            json!({"cause": 16, "message": 69, "advisory": null})
        );
        assert_eq!(
            json(plain(
                true,
                V::Accm {
                    reserved: 0,
                    send_accm: 1,
                    receive_accm: 2,
                }
            ))["value"],
            json!({"reserved": 0, "send_accm": 1, "receive_accm": 2})
        );
        assert_eq!(
            json(plain(false, V::ProxyAuthenId { reserved: 0, id: 9 }))["value"],
            json!({"reserved": 0, "id": 9})
        );
        assert_eq!(
            json(plain(true, V::SequencingRequired))["value"],
            serde_json::Value::Null
        );
        assert_eq!(
            json(parse(&HIDDEN_NAME, None).unwrap()),
            json!({"type": 30, "name": "Proxy Authen Name", "mandatory": false, "hidden": true,
                   "vendor_id": 0, "value": {"ciphertext": "7c0dec101e"}})
        );
        assert_eq!(
            json(AvpRepr {
                mandatory: false,
                hidden: false,
                reserved: 3,
                value: V::Vendor {
                    vendor_id: 9,
                    attr_type: 1,
                    value: Cow::Borrowed(&[0xff]),
                },
            }),
            json!({"type": 1, "name": "vendor-specific", "mandatory": false, "hidden": false,
                   "vendor_id": 9, "value": "ff", "reserved": 3})
        );
        assert_eq!(
            json(plain(
                false,
                V::Unknown {
                    attr_type: 20,
                    value: Cow::Borrowed(&[]),
                }
            ))["name"],
            "unassigned"
        );
    }

    #[test]
    fn unhide_debug_keeps_the_secret_out() {
        let debug = format!("{UNHIDE:?}");
        assert!(!debug.contains("tunnel-secret"), "{debug}");
        assert!(
            debug.contains("000102030405060708090a0b0c0d0e0f"),
            "{debug}"
        );
    }

    proptest! {
        #[test]
        fn parse_inverts_emit(repr in strategies::avp_repr()) {
            let unhide = strategies::unhide();
            let bytes = emit(&repr, Some(&unhide)).unwrap();
            let unhide = match repr.value {
                AvpValue::HiddenRaw { .. } => None,
                _ => Some(&unhide),
            };
            // The view is bounded by Length, not by the buffer: give it trailing bytes.
            let mut longer = bytes.clone();
            longer.extend([0xee; 5]);
            let avp = Avp::new_checked(&longer[..], 40).unwrap();
            prop_assert_eq!(usize::from(avp.length()), bytes.len());
            prop_assert_eq!(AvpRepr::parse(&avp, 40, unhide).unwrap(), repr);
        }

        #[test]
        fn one_line_form_is_one_token(repr in strategies::avp_repr()) {
            let line = repr.to_string();
            prop_assert!(!line.is_empty());
            prop_assert!(line.chars().all(|c| c.is_ascii_graphic()), "{}", line);
            let json = serde_json::to_value(&repr).unwrap();
            prop_assert_eq!(&json["type"], &json!(repr.value.attr_type()));
        }

        #[test]
        fn reemit_of_a_parsed_avp_is_identical(
            flags in 0u8..64,
            vendor_id in prop_oneof![3 => Just(0u16), 1 => any::<u16>()],
            attr_type in 0u16..45,
            value in vec(any::<u8>(), 0..40),
        ) {
            let len = HEADER_LEN + value.len();
            let mut bytes = vec![(flags << 2) | (len >> 8) as u8, len as u8];
            bytes.extend(vendor_id.to_be_bytes());
            bytes.extend(attr_type.to_be_bytes());
            bytes.extend(&value);
            // In the clear (or kept as ciphertext) the bytes come back exactly.
            if let Ok(repr) = parse(&bytes, None) {
                prop_assert_eq!(emit(&repr, None).unwrap(), bytes.clone());
            }
            // Unhidden, padding is not kept, but the repr survives a second trip.
            if let Ok(repr) = parse(&bytes, Some(&UNHIDE)) {
                let again = emit(&repr, Some(&UNHIDE)).unwrap();
                prop_assert_eq!(parse(&again, Some(&UNHIDE)).unwrap(), repr);
            }
        }

        #[test]
        fn random_bytes_never_panic(
            bytes in vec(any::<u8>(), 0..80),
            offset in any::<usize>(),
            with_secret in any::<bool>(),
        ) {
            let unhide = with_secret.then_some(UNHIDE);
            if let Ok(avp) = Avp::new_checked(&bytes[..], offset) {
                let _ = (avp.mandatory(), avp.hidden(), avp.reserved(), avp.value());
                if let Ok(repr) = AvpRepr::parse(&avp, offset, unhide.as_ref()) {
                    let _ = repr.to_string();
                    let _ = serde_json::to_string(&repr).unwrap();
                }
            }
        }
    }
}
