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

use crate::malformed::{BadValue, Truncated};
use core::fmt;

use super::{Error, Result};

mod repr;
#[cfg(test)]
pub(crate) mod strategies;
#[cfg(test)]
mod tests;
mod value;

pub use repr::{AvpRepr, Unhide};
pub use value::AvpValue;
pub(crate) use value::Field;

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
            return Err(Error::Truncated(Truncated {
                field: "AVP header",
                offset,
                need: HEADER_LEN,
                have,
            }));
        }
        let len = usize::from(self.length());
        if len < HEADER_LEN {
            return Err(Error::BadValue(BadValue {
                field: "AVP Length",
                offset,
                reason: "less than the 6-octet AVP header",
            }));
        }
        if len > have {
            return Err(Error::Truncated(Truncated {
                field: "AVP Length",
                offset,
                need: len,
                have,
            }));
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

/// How an attribute's value sits on the wire, and so how it is shown. Most attributes are one
/// number or one string of octets ([`Field`]); parse, emit, length, display and JSON treat
/// those alike, by shape. The rest are `Structured`, each coded on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A 16-bit number, shown in decimal.
    U16,
    /// A 32-bit number, shown in decimal.
    U32,
    /// 32 bits of flags or a type code, shown in hex.
    Flags,
    /// Octets meant as text (names, numbers): escaped on one line, a string in JSON.
    Text,
    /// Opaque octets: their length on one line, hex in JSON.
    Octets,
    /// A layout of its own (Result Code, Q.931 Cause Code, Call Errors, ...).
    Structured,
}

/// The one table of RFC 2661's attributes: Attribute Type, the RFC's name, the short key of
/// the one-line form, and the value's [`Shape`]. To add an attribute: a row here, a variant of
/// [`AvpValue`], and (for a `Field` shape) a line in each of `AvpValue::from_field` and
/// `AvpValue::field`; a `Structured` one is coded in `value.rs` and shown in `format.rs`.
macro_rules! avp_types {
    ($($variant:ident = $code:literal, $name:literal, $short:literal, $shape:ident;)*) => {
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

            pub(crate) fn shape(self) -> Shape {
                match self {
                    $(AvpType::$variant => Shape::$shape,)*
                }
            }
        }
    };
}

avp_types! {
    MessageType = 0, "Message Type", "msg", Structured;
    ResultCode = 1, "Result Code", "result", Structured;
    ProtocolVersion = 2, "Protocol Version", "ver", Structured;
    FramingCapabilities = 3, "Framing Capabilities", "fcap", Flags;
    BearerCapabilities = 4, "Bearer Capabilities", "bcap", Flags;
    TieBreaker = 5, "Tie Breaker", "tie", Structured;
    FirmwareRevision = 6, "Firmware Revision", "fw", U16;
    HostName = 7, "Host Name", "host", Text;
    VendorName = 8, "Vendor Name", "vendor", Text;
    AssignedTunnelId = 9, "Assigned Tunnel ID", "tid", U16;
    ReceiveWindowSize = 10, "Receive Window Size", "rwin", U16;
    Challenge = 11, "Challenge", "chal", Octets;
    Q931CauseCode = 12, "Q.931 Cause Code", "q931", Structured;
    ChallengeResponse = 13, "Challenge Response", "chresp", Structured;
    AssignedSessionId = 14, "Assigned Session ID", "sid", U16;
    CallSerialNumber = 15, "Call Serial Number", "serial", U32;
    MinimumBps = 16, "Minimum BPS", "minbps", U32;
    MaximumBps = 17, "Maximum BPS", "maxbps", U32;
    BearerType = 18, "Bearer Type", "btype", Flags;
    FramingType = 19, "Framing Type", "ftype", Flags;
    CalledNumber = 21, "Called Number", "called", Text;
    CallingNumber = 22, "Calling Number", "calling", Text;
    SubAddress = 23, "Sub-Address", "subaddr", Text;
    TxConnectSpeed = 24, "(Tx) Connect Speed", "txspeed", U32;
    PhysicalChannelId = 25, "Physical Channel ID", "phys", U32;
    InitialReceivedLcpConfreq = 26, "Initial Received LCP CONFREQ", "ircvd_lcp", Octets;
    LastSentLcpConfreq = 27, "Last Sent LCP CONFREQ", "lsent_lcp", Octets;
    LastReceivedLcpConfreq = 28, "Last Received LCP CONFREQ", "lrcvd_lcp", Octets;
    ProxyAuthenType = 29, "Proxy Authen Type", "pa_type", U16;
    ProxyAuthenName = 30, "Proxy Authen Name", "pa_name", Text;
    ProxyAuthenChallenge = 31, "Proxy Authen Challenge", "pa_chal", Octets;
    ProxyAuthenId = 32, "Proxy Authen ID", "pa_id", Structured;
    ProxyAuthenResponse = 33, "Proxy Authen Response", "pa_resp", Octets;
    CallErrors = 34, "Call Errors", "call_errors", Structured;
    Accm = 35, "ACCM", "accm", Structured;
    RandomVector = 36, "Random Vector", "rv", Octets;
    PrivateGroupId = 37, "Private Group ID", "pgid", Octets;
    RxConnectSpeed = 38, "Rx Connect Speed", "rxspeed", U32;
    SequencingRequired = 39, "Sequencing Required", "seqreq", Structured;
}

impl fmt::Display for AvpType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name for any AVP, for errors and JSON, where a `&'static str` is all there is room for.
pub(crate) fn avp_name(vendor_id: u16, attr_type: u16) -> &'static str {
    match (vendor_id, AvpType::from_u16(attr_type)) {
        (0, Some(kind)) => kind.name(),
        (0, None) => "unassigned",
        _ => "vendor-specific",
    }
}
