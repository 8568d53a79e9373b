//! Sessions (§7.3–§7.5): the peer's calls, the calls we open, refusals, and what runs on an
//! established session (data, WEN, SLI, CDN).

use std::borrow::Cow;

use super::{CallDirection, Event, ResultCode, Session, SessionState, Tunnel, TunnelState};
use crate::wire::avp::{AvpRepr, AvpType, AvpValue};
use crate::wire::header::{HeaderRepr, Sequence};
use crate::wire::message::{ControlMessage, MessageType, PacketRepr};

impl Tunnel {
    pub(super) fn on_icrq(&mut self, message: &ControlMessage) {
        let Some(AvpValue::AssignedSessionId(peer_id)) = message.avp(AvpType::AssignedSessionId)
        else {
            return;
        };
        let Some(local_id) = self.allocate_session_id() else {
            return self.refuse_exhausted(*peer_id);
        };
        self.sessions.insert(
            local_id,
            Session {
                peer_id: *peer_id,
                state: SessionState::WaitConnect,
                direction: CallDirection::Incoming,
                sequencing: false,
                data_ns: 0,
                data_nr: 0,
                data_seq: Default::default(),
                connect_ticket: None,
                connect_acked_at: 0,
            },
        );
        let sid = self.hideable(AvpValue::AssignedSessionId(local_id));
        self.send(MessageType::Icrp, *peer_id, vec![sid]);
    }

    pub(super) fn on_ocrq(&mut self, message: &ControlMessage) {
        let Some(AvpValue::AssignedSessionId(peer_id)) = message.avp(AvpType::AssignedSessionId)
        else {
            return;
        };
        if self.config.refuse_outgoing {
            // §6.7: the call cannot be placed; result 5, no facilities (permanent).
            let result = ResultCode::error(5, 0, "this LAC places no outgoing calls");
            return self.refuse_call(*peer_id, result);
        }
        let Some(local_id) = self.allocate_session_id() else {
            return self.refuse_exhausted(*peer_id);
        };
        let sequencing = self.config.sequencing_required;
        self.sessions.insert(
            local_id,
            Session {
                peer_id: *peer_id,
                state: SessionState::Established,
                direction: CallDirection::Outgoing,
                sequencing,
                data_ns: 0,
                data_nr: 0,
                data_seq: Default::default(),
                connect_ticket: None,
                connect_acked_at: 0,
            },
        );
        // The simulated LAC places the call at once: OCRP, then OCCN.
        let sid = self.hideable(AvpValue::AssignedSessionId(local_id));
        self.send(MessageType::Ocrp, *peer_id, vec![sid]);
        let avps = self.connected_avps();
        self.send(MessageType::Occn, *peer_id, avps);
        self.hold_data_behind_connect(local_id);
        self.events.push_back(Event::SessionUp {
            session_id: local_id,
            peer_session_id: *peer_id,
            direction: CallDirection::Outgoing,
        });
    }

    /// ICRP or OCRP for a call we started.
    pub(super) fn on_call_reply(&mut self, kind: MessageType, message: &ControlMessage) {
        let session_id = message.header.session_id;
        let Some(AvpValue::AssignedSessionId(peer_id)) = message.avp(AvpType::AssignedSessionId)
        else {
            return;
        };
        let expected = if kind == MessageType::Icrp {
            CallDirection::Incoming
        } else {
            CallDirection::Outgoing
        };
        let Some(session) = self.sessions.get_mut(&session_id) else {
            self.stats.unexpected += 1;
            return self.refuse_unknown_session(*peer_id);
        };
        if session.state != SessionState::WaitReply || session.direction != expected {
            self.stats.unexpected += 1;
            return;
        }
        session.peer_id = *peer_id;
        if kind == MessageType::Icrp {
            session.state = SessionState::Established;
            session.sequencing = self.config.sequencing_required;
            let avps = self.connected_avps();
            self.send(MessageType::Iccn, *peer_id, avps);
            self.hold_data_behind_connect(session_id);
            self.events.push_back(Event::SessionUp {
                session_id,
                peer_session_id: *peer_id,
                direction: CallDirection::Incoming,
            });
        } else {
            session.state = SessionState::WaitConnect;
        }
    }

    /// ICCN or OCCN for a call the peer connected.
    pub(super) fn on_call_connected(&mut self, kind: MessageType, message: &ControlMessage) {
        let session_id = message.header.session_id;
        let sequencing = message.avp(AvpType::SequencingRequired).is_some();
        let Some(session) = self.sessions.get_mut(&session_id) else {
            self.stats.unexpected += 1;
            return;
        };
        let expected = if kind == MessageType::Iccn {
            CallDirection::Incoming
        } else {
            CallDirection::Outgoing
        };
        if session.state != SessionState::WaitConnect || session.direction != expected {
            self.stats.unexpected += 1;
            return;
        }
        session.state = SessionState::Established;
        session.sequencing |= sequencing;
        let peer_session_id = session.peer_id;
        self.events.push_back(Event::SessionUp {
            session_id,
            peer_session_id,
            direction: expected,
        });
    }

    pub(super) fn on_cdn(&mut self, message: &ControlMessage) {
        let result = ResultCode::from_avp(message.avp(AvpType::ResultCode));
        let mut session_id = message.header.session_id;
        if session_id == 0 {
            // A CDN sent before the peer learnt our ID names the call by its own ID.
            if let Some(AvpValue::AssignedSessionId(peer_id)) =
                message.avp(AvpType::AssignedSessionId)
            {
                session_id = self
                    .sessions
                    .iter()
                    .find(|(_, s)| s.peer_id == *peer_id)
                    .map_or(0, |(id, _)| *id);
            }
        }
        if self.sessions.remove(&session_id).is_some() {
            self.events.push_back(Event::SessionDown {
                session_id,
                result,
                by_peer: true,
            });
        } else {
            self.stats.unexpected += 1;
        }
    }

    fn refuse_unknown_session(&mut self, peer_session_id: u16) {
        let result = ResultCode::error(
            ResultCode::GENERAL_ERROR,
            ResultCode::ERROR_BAD_SESSION,
            "no such session",
        );
        self.refuse_call(peer_session_id, result);
    }

    /// CDN for a call that has no session here. 0 is never an Assigned Session ID (§5.3), so
    /// the CDN names a fresh one that is never used.
    pub(super) fn refuse_call(&mut self, peer_session_id: u16, result: ResultCode) {
        // With every ID in use there is no fresh one; the next one in turn is the best left.
        let id = self
            .allocate_session_id()
            .unwrap_or(self.next_session_id.max(1));
        let sid = self.hideable(AvpValue::AssignedSessionId(id));
        self.send(
            MessageType::Cdn,
            peer_session_id,
            vec![AvpRepr::mandatory(result.to_avp()), sid],
        );
    }

    /// CDN result 4 (no facilities, temporary) when every Session ID of the tunnel (of its
    /// configured range) is in use.
    fn refuse_exhausted(&mut self, peer_session_id: u16) {
        let result = ResultCode::error(4, 4, "every session ID of this tunnel is in use");
        self.refuse_call(peer_session_id, result);
    }

    // ----- commands -----

    /// Starts an incoming call (LAC side): ICRQ. Returns the local session ID.
    pub fn open_incoming_call(&mut self) -> Option<u16> {
        self.open_call(CallDirection::Incoming, None)
    }

    /// Starts an outgoing call (LNS side): OCRQ for `called_number`.
    pub fn open_outgoing_call(&mut self, called_number: &str) -> Option<u16> {
        self.open_call(CallDirection::Outgoing, Some(called_number))
    }

    fn open_call(&mut self, direction: CallDirection, called: Option<&str>) -> Option<u16> {
        if self.state != TunnelState::Established {
            return None;
        }
        let local_id = self.allocate_session_id()?;
        let serial = self.next_call_serial;
        self.next_call_serial = self.next_call_serial.wrapping_add(1);
        self.sessions.insert(
            local_id,
            Session {
                peer_id: 0,
                state: SessionState::WaitReply,
                direction,
                sequencing: false,
                data_ns: 0,
                data_nr: 0,
                data_seq: Default::default(),
                connect_ticket: None,
                connect_acked_at: 0,
            },
        );
        let sid = self.hideable(AvpValue::AssignedSessionId(local_id));
        match direction {
            CallDirection::Incoming => {
                let avps = vec![
                    sid,
                    AvpRepr::mandatory(AvpValue::CallSerialNumber(serial)),
                    AvpRepr::mandatory(AvpValue::BearerType(0)),
                ];
                self.send(MessageType::Icrq, 0, avps);
            }
            CallDirection::Outgoing => {
                let number = called.unwrap_or_default().as_bytes().to_vec();
                let avps = vec![
                    sid,
                    AvpRepr::mandatory(AvpValue::CallSerialNumber(serial)),
                    AvpRepr::mandatory(AvpValue::MinimumBps(0)),
                    AvpRepr::mandatory(AvpValue::MaximumBps(u32::MAX)),
                    AvpRepr::mandatory(AvpValue::BearerType(0x3)),
                    AvpRepr::mandatory(AvpValue::FramingType(0x3)),
                    self.hideable(AvpValue::CalledNumber(Cow::Owned(number))),
                ];
                self.send(MessageType::Ocrq, 0, avps);
            }
        }
        Some(local_id)
    }

    /// The ICCN/OCCN just queued for `session_id` waits behind a full send window: its data
    /// waits for it (see `Session::connect_ticket`).
    /// Also notes when the peer will have acknowledged it (`session_connected_at_peer`).
    fn hold_data_behind_connect(&mut self, session_id: u16) {
        let ticket = self.reliable.last_queued_ticket();
        let queued = self.reliable.queued() > 0;
        if let Some(session) = self.sessions.get_mut(&session_id) {
            session.connect_acked_at = ticket;
            if queued {
                session.connect_ticket = Some(ticket);
            }
        }
    }

    /// Sends a PPP frame on an established session; false if the session is not up.
    pub fn send_data(&mut self, session_id: u16, frame: &[u8]) -> bool {
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return false;
        };
        if session.state != SessionState::Established {
            return false;
        }
        let mut header = HeaderRepr::data(self.peer_id, session.peer_id);
        header.offset_size = self.config.data_offset;
        if session.sequencing {
            header.sequence = Some(Sequence {
                ns: session.data_ns,
                nr: session.data_nr,
            });
            session.data_ns = session.data_ns.wrapping_add(1);
        }
        let packet = PacketRepr::Data {
            header,
            payload: frame,
        };
        let mut bytes = vec![0; packet.buffer_len()];
        match packet.emit(&mut bytes, None) {
            Ok(_) => {
                self.stats.data_sent += 1;
                self.data_out.push_back((session_id, bytes));
                true
            }
            // Only a frame too long for the Length field gets here.
            Err(_) => false,
        }
    }

    /// Ends a session with a CDN.
    pub fn close_session(&mut self, session_id: u16, result: ResultCode) {
        let Some(session) = self.sessions.remove(&session_id) else {
            return;
        };
        let sid = self.hideable(AvpValue::AssignedSessionId(session_id));
        self.send(
            MessageType::Cdn,
            session.peer_id,
            vec![AvpRepr::mandatory(result.to_avp()), sid],
        );
        self.events.push_back(Event::SessionDown {
            session_id,
            result,
            by_peer: false,
        });
    }

    /// WEN (LAC → LNS) with the Call Errors counters.
    pub fn send_wan_error(&mut self, session_id: u16, crc_errors: u32) {
        if let Some(session) = self.sessions.get(&session_id) {
            let peer = session.peer_id;
            let errors = AvpValue::CallErrors {
                reserved: 0,
                crc_errors,
                framing_errors: 0,
                hardware_overruns: 0,
                buffer_overruns: 0,
                timeout_errors: 0,
                alignment_errors: 0,
            };
            self.send(MessageType::Wen, peer, vec![AvpRepr::mandatory(errors)]);
        }
    }

    /// SLI (LNS → LAC) with the negotiated ACCM.
    pub fn send_link_info(&mut self, session_id: u16, send_accm: u32, receive_accm: u32) {
        if let Some(session) = self.sessions.get(&session_id) {
            let peer = session.peer_id;
            let accm = AvpValue::Accm {
                reserved: 0,
                send_accm,
                receive_accm,
            };
            self.send(MessageType::Sli, peer, vec![AvpRepr::mandatory(accm)]);
        }
    }
}
