//! L2TPv2 wire format (RFC 2661 §3, §4): zero-copy views plus `Repr` types.
//!
//! Each layer follows the smoltcp pattern: a view `Foo<T: AsRef<[u8]>>` that is checked once by
//! `new_checked` (after which no accessor can panic) and a `FooRepr` with `parse`, `emit` and
//! `buffer_len`. Every error names the field and the byte offset (from the start of the L2TP
//! header) where the input went wrong.

use crate::malformed::{BadValue, Truncated};

pub mod avp;
pub mod format;
pub mod header;
pub mod hidden;
pub mod message;
pub mod message_type;
pub mod rules;
pub mod samples;

pub use avp::{Avp, AvpRepr, AvpType, AvpValue};
pub use header::{Header, HeaderRepr};
pub use message::{ControlMessage, PacketRepr};
pub use message_type::MessageType;

/// A failure to read or write L2TP bytes. Offsets count from the first byte of the L2TP header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Truncated(Truncated),
    #[error(transparent)]
    BadValue(BadValue),
    #[error("L2F (version 1) packet at byte {offset}: not L2TPv2")]
    VersionL2f { offset: usize },
    #[error("L2TPv3 (version 3) packet at byte {offset}: not L2TPv2")]
    VersionL2tpv3 { offset: usize },
    #[error("unknown L2TP version {version} at byte {offset}")]
    VersionUnknown { version: u8, offset: usize },
    #[error("{message} is missing its mandatory {avp} AVP")]
    MissingAvp {
        message: &'static str,
        avp: &'static str,
    },
    #[error("hidden {avp} AVP at byte {offset}: {reason}")]
    Hidden {
        avp: &'static str,
        offset: usize,
        reason: &'static str,
    },
    #[error("buffer too small to emit {field}: need {need} bytes, have {have}")]
    BufferTooSmall {
        field: &'static str,
        need: usize,
        have: usize,
    },
}

pub type Result<T> = core::result::Result<T, Error>;
