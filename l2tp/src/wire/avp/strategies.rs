//! Generators of encodable AVPs, for the codec's and other files' property tests.

use std::borrow::Cow;

use super::{AvpRepr, AvpValue, Unhide, RANDOM_VECTOR_TYPE};
use crate::wire::message_type::MessageType;
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
        any::<(u8, u8)>().prop_map(|(version, revision)| V::ProtocolVersion { version, revision }),
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
