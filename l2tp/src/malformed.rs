//! What was wrong with the bytes, in the terms both byte layers use (the IPv4/UDP one in
//! [`crate::ip`] and the L2TP one in [`crate::wire`]): a field, the byte offset where it stands,
//! and why it could not be read. Each layer's error enum carries these and counts offsets from
//! its own first byte.

/// A field runs past the end of the bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} truncated at byte {offset}: need {need} bytes, have {have}")]
pub struct Truncated {
    pub field: &'static str,
    pub offset: usize,
    pub need: usize,
    pub have: usize,
}

/// A field is present and holds a value the protocol does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} at byte {offset}: {reason}")]
pub struct BadValue {
    pub field: &'static str,
    pub offset: usize,
    pub reason: &'static str,
}
