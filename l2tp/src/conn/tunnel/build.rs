//! Message building: the AVPs our messages carry, hiding (§4.3), Session ID allocation and
//! tunnel authentication (§5.1.1).

use std::borrow::Cow;
use std::sync::Arc;

use super::{ResultCode, Tunnel, HIDDEN_AVPS, PROTOCOL_VERSION};
use crate::wire::avp::{AvpRepr, AvpType, AvpValue};
use crate::wire::header::HeaderRepr;
use crate::wire::message::{ControlMessage, MessageType};

impl Tunnel {
    /// The AVPs SCCRQ and SCCRP share.
    pub(super) fn start_avps(&mut self) -> Vec<AvpRepr<'static>> {
        let config = Arc::clone(&self.config);
        let mut avps = vec![
            AvpRepr::mandatory(AvpValue::ProtocolVersion {
                version: PROTOCOL_VERSION.0,
                revision: PROTOCOL_VERSION.1,
            }),
            AvpRepr::mandatory(AvpValue::HostName(Cow::Owned(
                config.host_name.clone().into_bytes(),
            ))),
            AvpRepr::mandatory(AvpValue::FramingCapabilities(config.framing_capabilities)),
            AvpRepr::mandatory(AvpValue::BearerCapabilities(config.bearer_capabilities)),
            AvpRepr::mandatory(AvpValue::AssignedTunnelId(self.local_id)),
            AvpRepr::mandatory(AvpValue::ReceiveWindowSize(self.reliable.receive_window())),
            AvpRepr::optional(AvpValue::FirmwareRevision(0x0100)),
        ];
        if let Some(vendor) = &config.vendor_name {
            avps.push(AvpRepr::optional(AvpValue::VendorName(Cow::Owned(
                vendor.clone().into_bytes(),
            ))));
        }
        if config.secret.is_some() {
            let challenge = self.random_value();
            self.our_challenge = Some(challenge);
            avps.push(AvpRepr::mandatory(AvpValue::Challenge(Cow::Owned(
                challenge.to_vec(),
            ))));
        }
        avps
    }

    pub(super) fn connected_avps(&self) -> Vec<AvpRepr<'static>> {
        let mut avps = vec![
            AvpRepr::mandatory(AvpValue::TxConnectSpeed(100_000_000)),
            AvpRepr::mandatory(AvpValue::FramingType(0x1)),
        ];
        if self.config.sequencing_required {
            avps.push(AvpRepr::mandatory(AvpValue::SequencingRequired));
        }
        avps
    }

    /// An AVP that is hidden when the configuration says so.
    pub(super) fn hideable(&self, value: AvpValue<'static>) -> AvpRepr<'static> {
        let hide = self.config.hide_avps
            && self.config.secret.is_some()
            && value.avp_type().is_some_and(|t| HIDDEN_AVPS.contains(&t));
        AvpRepr {
            hidden: hide,
            ..AvpRepr::mandatory(value)
        }
    }

    /// Queues a control message; a Random Vector goes in front of any hidden AVP (§4.3).
    pub(super) fn send(&mut self, kind: MessageType, session_id: u16, avps: Vec<AvpRepr<'static>>) {
        let mut all = Vec::with_capacity(avps.len() + 2);
        all.push(AvpRepr::mandatory(AvpValue::MessageType(kind)));
        if avps.iter().any(|avp| avp.hidden) {
            let vector = self.random_value();
            all.push(AvpRepr::mandatory(AvpValue::RandomVector(Cow::Owned(
                vector.to_vec(),
            ))));
        }
        all.extend(avps);
        if self.config.record_messages {
            self.log.get_or_insert_default().queued.push(kind);
        }
        let header = HeaderRepr::control(self.peer_id, session_id, 0, 0);
        self.reliable.send(ControlMessage { header, avps: all });
    }

    /// A free Session ID of the configured range: unique in this tunnel and never 0. `None`
    /// when every one of them is taken.
    pub(super) fn allocate_session_id(&mut self) -> Option<u16> {
        let ids = super::session_id_range(&self.config.session_ids);
        for _ in 0..ids.len() {
            let id = self.next_session_id;
            self.next_session_id = if id >= *ids.end() || id < *ids.start() {
                *ids.start()
            } else {
                id + 1
            };
            if ids.contains(&id) && !self.sessions.contains_key(&id) {
                return Some(id);
            }
        }
        None
    }

    /// MD5(message type ‖ secret ‖ challenge): the CHAP-style response of §4.4.3.
    fn response(&self, in_message: MessageType, challenge: &[u8]) -> [u8; 16] {
        challenge_response(
            in_message,
            self.config.secret.as_deref().unwrap_or_default(),
            challenge,
        )
    }

    /// The Challenge Response AVP that `in_message` must carry when the peer challenged us;
    /// a challenge without a secret of ours is refused (result 4).
    pub(super) fn answer_challenge(
        &self,
        in_message: MessageType,
        message: &ControlMessage,
    ) -> Result<Option<AvpRepr<'static>>, ResultCode> {
        match (
            message.avp(AvpType::Challenge),
            self.config.secret.is_some(),
        ) {
            (Some(AvpValue::Challenge(challenge)), true) => {
                let response = self.response(in_message, challenge);
                Ok(Some(AvpRepr::mandatory(AvpValue::ChallengeResponse(
                    response,
                ))))
            }
            (Some(_), false) => Err(ResultCode::error(
                ResultCode::NOT_AUTHORIZED,
                0,
                "challenged but no tunnel secret is configured",
            )),
            _ => Ok(None),
        }
    }

    pub(super) fn verify_response(
        &self,
        in_message: MessageType,
        message: &ControlMessage,
    ) -> Result<(), ResultCode> {
        let Some(challenge) = self.our_challenge else {
            return Ok(());
        };
        let expected = self.response(in_message, &challenge);
        match message.avp(AvpType::ChallengeResponse) {
            Some(AvpValue::ChallengeResponse(got)) if *got == expected => Ok(()),
            Some(_) => Err(ResultCode::error(
                ResultCode::NOT_AUTHORIZED,
                0,
                "wrong Challenge Response: tunnel secrets differ",
            )),
            None => Err(ResultCode::error(
                ResultCode::NOT_AUTHORIZED,
                0,
                "no Challenge Response to our Challenge",
            )),
        }
    }
}

/// The Challenge Response a peer must send in `in_message` (SCCRP or SCCCN) to `challenge`.
pub fn challenge_response(in_message: MessageType, secret: &[u8], challenge: &[u8]) -> [u8; 16] {
    // RFC 2661 §4.2 reuses CHAP's MD5 with the message type in the Identifier's place.
    crate::ppp::chap::response_value(in_message.to_u16() as u8, secret, challenge)
}

/// The first AVP with M set that this implementation cannot act on (§4.2), by name.
pub(super) fn unknown_mandatory(message: &ControlMessage) -> Option<String> {
    message.avps.iter().find_map(|avp| {
        if !avp.mandatory {
            return None;
        }
        match &avp.value {
            AvpValue::Vendor {
                vendor_id,
                attr_type,
                ..
            } => Some(format!("vendor {vendor_id} type {attr_type}")),
            AvpValue::Unknown { attr_type, .. } => Some(format!("type {attr_type}")),
            AvpValue::HiddenRaw { attr_type, .. } => {
                Some(format!("type {attr_type} (hidden, no secret)"))
            }
            AvpValue::MessageType(MessageType::Unknown(n)) => Some(format!("message type {n}")),
            _ => None,
        }
    })
}
