//! Which AVPs each control message must and may carry (RFC 2661 §6), kept as data so that probes,
//! the sequence checker and the state machines share one table.

use super::avp::AvpType::{self, *};
use super::avp::AvpValue;
use super::message::ControlMessage;
use super::message_type::MessageType;
use super::Error;

/// The AVP rules of one message type. Message Type itself is implied and not listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRule {
    pub message: MessageType,
    pub mandatory: &'static [AvpType],
    pub optional: &'static [AvpType],
}

pub const RULES: &[MessageRule] = &[
    MessageRule {
        message: MessageType::Sccrq,
        mandatory: &[
            ProtocolVersion,
            HostName,
            FramingCapabilities,
            AssignedTunnelId,
        ],
        optional: &[
            BearerCapabilities,
            ReceiveWindowSize,
            Challenge,
            TieBreaker,
            FirmwareRevision,
            VendorName,
        ],
    },
    MessageRule {
        message: MessageType::Sccrp,
        mandatory: &[
            ProtocolVersion,
            FramingCapabilities,
            HostName,
            AssignedTunnelId,
        ],
        optional: &[
            BearerCapabilities,
            FirmwareRevision,
            VendorName,
            ReceiveWindowSize,
            Challenge,
            ChallengeResponse,
        ],
    },
    MessageRule {
        message: MessageType::Scccn,
        mandatory: &[],
        optional: &[ChallengeResponse],
    },
    MessageRule {
        message: MessageType::StopCcn,
        mandatory: &[AssignedTunnelId, ResultCode],
        optional: &[],
    },
    MessageRule {
        message: MessageType::Hello,
        mandatory: &[],
        optional: &[],
    },
    MessageRule {
        message: MessageType::Icrq,
        mandatory: &[AssignedSessionId, CallSerialNumber],
        optional: &[
            BearerType,
            PhysicalChannelId,
            CallingNumber,
            CalledNumber,
            SubAddress,
        ],
    },
    MessageRule {
        message: MessageType::Icrp,
        mandatory: &[AssignedSessionId],
        optional: &[],
    },
    MessageRule {
        message: MessageType::Iccn,
        mandatory: &[TxConnectSpeed, FramingType],
        optional: &[
            InitialReceivedLcpConfreq,
            LastSentLcpConfreq,
            LastReceivedLcpConfreq,
            ProxyAuthenType,
            ProxyAuthenName,
            ProxyAuthenChallenge,
            ProxyAuthenId,
            ProxyAuthenResponse,
            PrivateGroupId,
            RxConnectSpeed,
            SequencingRequired,
        ],
    },
    MessageRule {
        message: MessageType::Ocrq,
        mandatory: &[
            AssignedSessionId,
            CallSerialNumber,
            MinimumBps,
            MaximumBps,
            BearerType,
            FramingType,
            CalledNumber,
        ],
        optional: &[SubAddress],
    },
    MessageRule {
        message: MessageType::Ocrp,
        mandatory: &[AssignedSessionId],
        optional: &[PhysicalChannelId],
    },
    MessageRule {
        message: MessageType::Occn,
        mandatory: &[TxConnectSpeed, FramingType],
        optional: &[RxConnectSpeed, SequencingRequired],
    },
    MessageRule {
        message: MessageType::Cdn,
        mandatory: &[ResultCode, AssignedSessionId],
        optional: &[Q931CauseCode],
    },
    MessageRule {
        message: MessageType::Wen,
        mandatory: &[CallErrors],
        optional: &[],
    },
    MessageRule {
        message: MessageType::Sli,
        mandatory: &[Accm],
        optional: &[],
    },
];

/// The rule for a message type; `None` for unknown types.
pub fn rule(message: MessageType) -> Option<&'static MessageRule> {
    RULES.iter().find(|rule| rule.message == message)
}

/// Mandatory AVPs the message lacks, in the RFC's order. A hidden AVP that could not be unhidden
/// still counts as present: its type is in the clear.
pub fn missing_avps<'m>(message: &'m ControlMessage<'_>) -> impl Iterator<Item = AvpType> + 'm {
    let mandatory = message
        .message_type()
        .and_then(rule)
        .map_or(&[][..], |rule| rule.mandatory);
    mandatory.iter().copied().filter(move |kind| {
        !message.avps.iter().any(|avp| {
            // An AVP with reserved bits set is unrecognized (§4.1), so it does not count.
            let recognized = !matches!(avp.value, AvpValue::Unknown { .. });
            recognized && avp.value.vendor_id() == 0 && avp.value.attr_type() == kind.to_u16()
        })
    })
}

/// The first mandatory AVP the message lacks, as an error naming both.
pub fn check(message: &ControlMessage<'_>) -> Result<(), Error> {
    match (message.message_type(), missing_avps(message).next()) {
        (Some(kind), Some(avp)) => Err(Error::MissingAvp {
            message: kind.name(),
            avp: avp.name(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_message_has_a_rule() {
        for kind in MessageType::ALL {
            assert!(rule(kind).is_some(), "{kind}");
        }
        assert!(rule(MessageType::Unknown(99)).is_none());
    }

    #[test]
    fn no_avp_is_both_mandatory_and_optional() {
        for rule in RULES {
            for avp in rule.mandatory {
                assert!(!rule.optional.contains(avp), "{} {:?}", rule.message, avp);
            }
        }
    }
}
