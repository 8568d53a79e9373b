//! Control and data messages: a header plus, for control messages, the AVP list (RFC 2661 §3, §6).

use crate::malformed::BadValue;
use serde::Serialize;

use super::avp::{Avp, AvpRepr, AvpType, AvpValue, Unhide};
// Re-exported: `wire::message::MessageType` was its home.
use super::header::{Header, HeaderRepr};
pub use super::message_type::MessageType;
use super::{Error, Result};

/// What a parse needs beyond the bytes: the tunnel secret, to unhide hidden AVPs (§4.3).
#[derive(Debug, Clone, Copy, Default)]
pub struct ParseOptions<'s> {
    pub secret: Option<&'s [u8]>,
}

/// A control message: the header and its AVPs in wire order. No AVPs at all is a ZLB (§5.8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControlMessage<'a> {
    pub header: HeaderRepr,
    pub avps: Vec<AvpRepr<'a>>,
}

impl<'a> ControlMessage<'a> {
    /// The message type from the first AVP; `None` for a ZLB.
    pub fn message_type(&self) -> Option<MessageType> {
        match self.avps.first().map(|avp| &avp.value) {
            Some(AvpValue::MessageType(kind)) => Some(*kind),
            _ => None,
        }
    }

    pub fn is_zlb(&self) -> bool {
        self.avps.is_empty()
    }

    /// The first AVP of a type, hidden ones included once unhidden.
    pub fn avp(&self, kind: AvpType) -> Option<&AvpValue<'a>> {
        self.avps
            .iter()
            .map(|avp| &avp.value)
            .find(|value| value.avp_type() == Some(kind))
    }

    /// Parses the AVPs of a checked control header. The first AVP must be Message Type (§4.4.1);
    /// hidden AVPs are unhidden with the secret and the latest preceding Random Vector.
    pub fn parse(header: &Header<&'a [u8]>, options: &ParseOptions) -> Result<ControlMessage<'a>> {
        let repr = HeaderRepr::parse(header)?;
        let bytes: &'a [u8] = header.into_inner();
        let end = header.packet_len();
        let mut offset = header.header_len();
        // Typical control messages carry up to a dozen AVPs; one allocation covers them.
        let mut avps = Vec::with_capacity(12);
        let mut random_vector: Option<&'a [u8]> = None;
        while offset < end {
            let rest = bytes.get(offset..end).unwrap_or_default();
            let avp = Avp::new_checked(rest, offset)?;
            let unhide = match (options.secret, random_vector) {
                (Some(secret), Some(random_vector)) => Some(Unhide {
                    secret,
                    random_vector,
                }),
                _ => None,
            };
            let parsed = AvpRepr::parse(&avp, offset, unhide.as_ref())?;
            if avps.is_empty() && !matches!(parsed.value, AvpValue::MessageType(_)) {
                return Err(Error::BadValue(BadValue {
                    field: "Message Type AVP",
                    offset,
                    reason: "the first AVP of a control message must be Message Type",
                }));
            }
            if matches!(parsed.value, AvpValue::RandomVector(_)) {
                // Borrow from the message itself so the vector outlives this AVP's view.
                random_vector = rest.get(6..usize::from(avp.length()));
            }
            avps.push(parsed);
            offset += usize::from(avp.length());
        }
        Ok(ControlMessage { header: repr, avps })
    }

    pub fn buffer_len(&self) -> usize {
        self.header.buffer_len() + self.avps.iter().map(AvpRepr::buffer_len).sum::<usize>()
    }

    /// Writes the message; hidden AVPs are hidden with `secret` and the latest Random Vector
    /// before them, so the AVP list must carry one ahead of any hidden AVP.
    pub fn emit(&self, buf: &mut [u8], secret: Option<&[u8]>) -> Result<usize> {
        let total = self.buffer_len();
        if buf.len() < total {
            return Err(Error::BufferTooSmall {
                field: "control message",
                need: total,
                have: buf.len(),
            });
        }
        let header_len = self.header.emit(buf, total - self.header.buffer_len())?;
        let mut offset = header_len;
        let mut random_vector: Option<&[u8]> = None;
        for avp in &self.avps {
            let hide = match (secret, random_vector) {
                (Some(secret), Some(random_vector)) if avp.hidden => Some(Unhide {
                    secret,
                    random_vector,
                }),
                _ => None,
            };
            offset += avp.emit(&mut buf[offset..], hide.as_ref())?;
            if let AvpValue::RandomVector(value) = &avp.value {
                random_vector = Some(value.as_ref());
            }
        }
        Ok(offset)
    }

    /// Emits into a new vector.
    pub fn to_vec(&self, secret: Option<&[u8]>) -> Result<Vec<u8>> {
        let mut buf = vec![0; self.buffer_len()];
        let len = self.emit(&mut buf, secret)?;
        buf.truncate(len);
        Ok(buf)
    }

    pub fn into_owned(self) -> ControlMessage<'static> {
        ControlMessage {
            header: self.header,
            avps: self
                .avps
                .into_iter()
                .map(|avp| AvpRepr {
                    mandatory: avp.mandatory,
                    hidden: avp.hidden,
                    reserved: avp.reserved,
                    value: avp.value.into_owned(),
                })
                .collect(),
        }
    }
}

/// Any L2TP message: control (with its AVPs) or data (with its PPP frame).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PacketRepr<'a> {
    Control(ControlMessage<'a>),
    Data {
        header: HeaderRepr,
        #[serde(serialize_with = "serialize_len")]
        payload: &'a [u8],
    },
}

fn serialize_len<S: serde::Serializer>(
    payload: &&[u8],
    s: S,
) -> core::result::Result<S::Ok, S::Error> {
    s.serialize_u64(payload.len() as u64)
}

impl<'a> PacketRepr<'a> {
    /// Parses one L2TP message from the UDP payload.
    pub fn parse(bytes: &'a [u8], options: &ParseOptions) -> Result<PacketRepr<'a>> {
        let header = Header::new_checked(bytes)?;
        if header.is_control() {
            ControlMessage::parse(&header, options).map(PacketRepr::Control)
        } else {
            let repr = HeaderRepr::parse(&header)?;
            let payload = bytes
                .get(header.header_len()..header.packet_len())
                .unwrap_or_default();
            Ok(PacketRepr::Data {
                header: repr,
                payload,
            })
        }
    }

    pub fn header(&self) -> &HeaderRepr {
        match self {
            PacketRepr::Control(message) => &message.header,
            PacketRepr::Data { header, .. } => header,
        }
    }

    pub fn buffer_len(&self) -> usize {
        match self {
            PacketRepr::Control(message) => message.buffer_len(),
            PacketRepr::Data { header, payload } => header.buffer_len() + payload.len(),
        }
    }

    pub fn emit(&self, buf: &mut [u8], secret: Option<&[u8]>) -> Result<usize> {
        match self {
            PacketRepr::Control(message) => message.emit(buf, secret),
            PacketRepr::Data { header, payload } => {
                let total = header.buffer_len() + payload.len();
                if buf.len() < total {
                    return Err(Error::BufferTooSmall {
                        field: "data message",
                        need: total,
                        have: buf.len(),
                    });
                }
                let at = header.emit(buf, payload.len())?;
                buf[at..total].copy_from_slice(payload);
                Ok(total)
            }
        }
    }

    /// `emit` into a buffer of its own.
    pub fn to_vec(&self, secret: Option<&[u8]>) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; self.buffer_len()];
        let len = self.emit(&mut buf, secret)?;
        buf.truncate(len);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::avp::strategies;
    use crate::wire::samples;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use std::borrow::Cow;

    fn emit_all(packets: &[PacketRepr], secret: Option<&[u8]>) -> Vec<Vec<u8>> {
        packets
            .iter()
            .map(|packet| {
                let mut buf = vec![0; packet.buffer_len()];
                let len = packet.emit(&mut buf, secret).unwrap();
                assert_eq!(len, buf.len());
                buf
            })
            .collect()
    }

    #[test]
    fn samples_roundtrip_with_the_secret() {
        let packets = samples::every_message();
        for (packet, bytes) in packets
            .iter()
            .zip(emit_all(&packets, Some(samples::SECRET)))
        {
            let options = ParseOptions {
                secret: Some(samples::SECRET),
            };
            assert_eq!(&PacketRepr::parse(&bytes, &options).unwrap(), packet);
        }
    }

    #[test]
    fn hidden_avps_stay_ciphertext_without_the_secret() {
        let packets = samples::every_message();
        let bytes = &emit_all(&packets, Some(samples::SECRET))[4];
        let PacketRepr::Control(message) =
            PacketRepr::parse(bytes, &ParseOptions::default()).unwrap()
        else {
            panic!("ICRQ is a control message");
        };
        assert_eq!(message.message_type(), Some(MessageType::Icrq));
        assert!(matches!(
            message.avps[2].value,
            AvpValue::HiddenRaw { attr_type: 14, .. }
        ));
        // The mandatory-AVP rules still see the hidden Assigned Session ID.
        assert!(crate::wire::rules::check(&message).is_ok());
        // Re-emitting the ciphertext reproduces the original bytes.
        assert_eq!(&message.to_vec(None).unwrap(), bytes);
    }

    #[test]
    fn hiding_needs_a_random_vector_first() {
        let message = ControlMessage {
            header: HeaderRepr::control(1, 0, 0, 0),
            avps: vec![
                AvpRepr {
                    mandatory: true,
                    hidden: false,
                    reserved: 0,
                    value: AvpValue::MessageType(MessageType::Icrq),
                },
                AvpRepr {
                    mandatory: true,
                    hidden: true,
                    reserved: 0,
                    value: AvpValue::AssignedSessionId(5),
                },
            ],
        };
        assert!(matches!(
            message.to_vec(Some(b"secret")),
            Err(Error::Hidden { .. })
        ));
    }

    #[test]
    fn first_avp_must_be_message_type() {
        // A control header followed by an Assigned Tunnel ID AVP.
        let bytes = [
            0xc8, 0x02, 0x00, 0x14, 0, 1, 0, 0, 0, 0, 0, 0, 0x80, 0x08, 0, 0, 0, 9, 0, 7,
        ];
        assert_eq!(
            PacketRepr::parse(&bytes, &ParseOptions::default()),
            Err(Error::BadValue(BadValue {
                field: "Message Type AVP",
                offset: 12,
                reason: "the first AVP of a control message must be Message Type",
            }))
        );
    }

    #[test]
    fn missing_mandatory_avp_is_named() {
        let mut packets = samples::every_message();
        let PacketRepr::Control(sccrq) = &mut packets[0] else {
            panic!("SCCRQ first");
        };
        sccrq
            .avps
            .retain(|avp| !matches!(avp.value, AvpValue::HostName(_)));
        assert_eq!(
            crate::wire::rules::check(sccrq),
            Err(Error::MissingAvp {
                message: "SCCRQ",
                avp: "Host Name"
            })
        );
    }

    fn control_message() -> impl Strategy<Value = ControlMessage<'static>> {
        let avp = prop_oneof![
            3 => strategies::plain_avp_repr(),
            1 => strategies::hidden_avp_repr(),
        ];
        (
            any::<(u16, u16, u16, u16, u16)>(),
            any::<bool>(),
            vec(avp, 0..10),
        )
            .prop_map(|((tid, sid, ns, nr, kind), zlb, rest)| {
                let mut avps = Vec::new();
                if !zlb {
                    avps.push(AvpRepr {
                        mandatory: true,
                        hidden: false,
                        reserved: 0,
                        value: AvpValue::MessageType(MessageType::from_u16(kind)),
                    });
                    avps.push(AvpRepr {
                        mandatory: true,
                        hidden: false,
                        reserved: 0,
                        value: AvpValue::RandomVector(Cow::Borrowed(strategies::RANDOM_VECTOR)),
                    });
                    avps.extend(rest);
                }
                ControlMessage {
                    header: HeaderRepr::control(tid, sid, ns, nr),
                    avps,
                }
            })
    }

    /// Byte-level damage to a valid message: flips, truncation, insertion, overwrite.
    #[derive(Debug, Clone)]
    enum Mutation {
        Flip(usize, u8),
        Truncate(usize),
        Insert(usize, u8),
        Set(usize, u8),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<usize>(), 1u8..=255).prop_map(|(at, bits)| Mutation::Flip(at, bits)),
            any::<usize>().prop_map(Mutation::Truncate),
            (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Insert(at, b)),
            (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Set(at, b)),
        ]
    }

    fn mutate(bytes: &mut Vec<u8>, mutation: &Mutation) {
        let len = bytes.len().max(1);
        match *mutation {
            Mutation::Flip(at, bits) => {
                if let Some(b) = bytes.get_mut(at % len) {
                    *b ^= bits;
                }
            }
            Mutation::Truncate(at) => bytes.truncate(at % len),
            Mutation::Insert(at, b) => bytes.insert(at % (bytes.len() + 1), b),
            Mutation::Set(at, b) => {
                if let Some(slot) = bytes.get_mut(at % len) {
                    *slot = b;
                }
            }
        }
    }

    /// Whatever parses re-emits to bytes that parse to the same thing.
    fn check_fixpoint(
        bytes: &[u8],
        secret: Option<&[u8]>,
    ) -> core::result::Result<(), TestCaseError> {
        let options = ParseOptions { secret };
        if let Ok(parsed) = PacketRepr::parse(bytes, &options) {
            let mut again = vec![0; parsed.buffer_len()];
            match parsed.emit(&mut again, secret) {
                Ok(len) => {
                    let reparsed = PacketRepr::parse(&again[..len], &options);
                    prop_assert_eq!(reparsed.as_ref(), Ok(&parsed));
                }
                // Only values the parser accepts but may not send again: a hidden AVP before
                // any Random Vector (kept as ciphertext on input).
                Err(Error::Hidden { .. }) => {}
                Err(err) => return Err(TestCaseError::fail(format!("re-emit failed: {err}"))),
            }
        }
        Ok(())
    }

    proptest! {
        // ≥ 100k inputs in every run: these are the codec's robustness guarantee.
        #![proptest_config(ProptestConfig::with_cases(50_000))]

        #[test]
        fn emit_then_parse_roundtrips(message in control_message()) {
            let bytes = message.to_vec(Some(strategies::SECRET)).unwrap();
            let header = Header::new_checked(&bytes[..]).unwrap();
            let options = ParseOptions { secret: Some(strategies::SECRET) };
            let parsed = ControlMessage::parse(&header, &options).unwrap();
            prop_assert_eq!(parsed, message);
        }

        #[test]
        fn random_bytes_never_panic(
            control in any::<bool>(),
            bytes in vec(any::<u8>(), 0..160),
        ) {
            // Half of the inputs get a plausible control header so that the AVP parser runs.
            let mut bytes = bytes;
            if control && bytes.len() >= 12 {
                bytes[0] = 0xc8;
                bytes[1] = 0x02;
                let len = bytes.len() as u16;
                bytes[2..4].copy_from_slice(&len.to_be_bytes());
            }
            check_fixpoint(&bytes, Some(b"secret"))?;
            check_fixpoint(&bytes, None)?;
        }

        #[test]
        fn mutated_messages_never_panic(
            which in 0usize..16,
            mutations in vec(mutation(), 1..4),
        ) {
            let packets = samples::every_message();
            let mut bytes = emit_all(&packets[which % packets.len()..][..1], Some(samples::SECRET))
                .remove(0);
            for m in &mutations {
                mutate(&mut bytes, m);
            }
            check_fixpoint(&bytes, Some(samples::SECRET))?;
            check_fixpoint(&bytes, None)?;
        }
    }
}
