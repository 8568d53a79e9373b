//! The few L2TP fields a forwarder routes by, read without parsing the whole message.

use crate::malformed::BadValue;
use crate::wire::{self, Avp, AvpType, Header, MessageType};

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

/// Where the header's Tunnel ID sits in the L2TP message, when the bytes start with a valid
/// L2TPv2 header: for a forwarder that rewrites it in place.
pub fn tunnel_id_at(udp_payload: &[u8]) -> Option<usize> {
    Header::new_checked(udp_payload)
        .ok()
        .map(|header| header.tunnel_id_at())
}

/// Where the value of a control message's Assigned Tunnel ID AVP sits in the L2TP message, and
/// the value: for a forwarder that rewrites it in place (SCCRP, StopCCN). `None` for data,
/// ZLBs and control messages without one; a hidden one is [`wire::Error::Hidden`].
pub fn assigned_tunnel_id_at(udp_payload: &[u8]) -> wire::Result<Option<(usize, u16)>> {
    let header = Header::new_checked(udp_payload)?;
    if !header.is_control() {
        return Ok(None);
    }
    let body = header.payload();
    let base = header.header_len();
    if first_message_type(body, base)?.is_none() {
        return Ok(None);
    }
    match find_assigned_tunnel_id(body, base, "control message") {
        Ok(found) => Ok(Some(found)),
        Err(wire::Error::MissingAvp { .. }) => Ok(None),
        Err(err) => Err(err),
    }
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
        assigned_tunnel_id: find_assigned_tunnel_id(body, base, message)?.1,
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
        return Err(wire::Error::BadValue(BadValue {
            field: "Message Type AVP",
            offset: base,
            reason: "the first AVP of a control message must be Message Type",
        }));
    }
    if avp.hidden() {
        return Err(wire::Error::BadValue(BadValue {
            field: "Message Type AVP",
            offset: base,
            reason: "must not be hidden",
        }));
    }
    let &[high, low] = avp.value() else {
        return Err(wire::Error::BadValue(BadValue {
            field: "Message Type AVP",
            offset: base,
            reason: "value must be 2 octets",
        }));
    };
    Ok(Some(MessageType::from_u16(u16::from_be_bytes([high, low]))))
}

/// Walks the AVP headers (never their values) to the Assigned Tunnel ID: where its value sits
/// in the L2TP message, and the value.
fn find_assigned_tunnel_id(
    body: &[u8],
    base: usize,
    message: &'static str,
) -> wire::Result<(usize, u16)> {
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
                return Err(wire::Error::BadValue(BadValue {
                    field: "Assigned Tunnel ID AVP",
                    offset,
                    reason: "value must be 2 octets",
                }));
            };
            // The value follows the 6-octet AVP header.
            return Ok((offset + 6, u16::from_be_bytes([high, low])));
        }
        // The check made the length at least the 6-octet AVP header: the walk advances.
        at += usize::from(avp.length());
    }
    Err(wire::Error::MissingAvp {
        message,
        avp: "Assigned Tunnel ID",
    })
}
