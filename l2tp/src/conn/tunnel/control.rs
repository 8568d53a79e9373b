//! The control connection state machine (§7.2): packets in, the tunnel's own messages and
//! teardown, and the timers (retransmission, HELLO, setup deadline, §5.7 hold) the owner polls.

use super::build::unknown_mandatory;
use super::{Event, ResultCode, SessionState, Tunnel, TunnelEnd, TunnelState, PROTOCOL_VERSION};
use crate::conn::reliable::release;
use crate::time::Instant;
use crate::wire::avp::{AvpRepr, AvpType, AvpValue};
use crate::wire::header::HeaderRepr;
use crate::wire::message::{ControlMessage, MessageType, PacketRepr};
use crate::wire::rules;

impl Tunnel {
    /// A packet from the peer, already parsed (with this tunnel's secret, so hidden AVPs are
    /// plain).
    pub fn handle(&mut self, now: Instant, packet: PacketRepr<'_>) {
        match packet {
            PacketRepr::Control(message) => self.handle_control(now, message),
            PacketRepr::Data { header, payload } => self.handle_data(now, header, payload),
        }
    }

    fn handle_data(&mut self, now: Instant, header: HeaderRepr, payload: &[u8]) {
        self.last_heard = now;
        match self.sessions.get_mut(&header.session_id) {
            Some(session) if session.state == SessionState::Established => {
                if let Some(seq) = header.sequence {
                    // §5.4: Ns detects loss and reordering; the data is not retransmitted. The
                    // first sequenced message sets the count going (a peer may turn sequencing
                    // on mid-session).
                    let first = session.data_seq.sequenced == 0;
                    session.data_seq.sequenced += 1;
                    if first {
                        session.data_nr = seq.ns;
                    }
                    let ahead = crate::conn::reliable::seq_diff(seq.ns, session.data_nr);
                    if ahead >= crate::conn::reliable::MAX_WINDOW {
                        // Older than one already delivered: out of order, dropped.
                        session.data_seq.reordered += 1;
                        self.stats.data_reordered += 1;
                        return;
                    }
                    let skipped = u64::from(ahead);
                    session.data_seq.lost += skipped;
                    self.stats.data_lost += skipped;
                    session.data_nr = seq.ns.wrapping_add(1);
                }
                self.stats.data_received += 1;
                self.events.push_back(Event::Data {
                    session_id: header.session_id,
                    frame: payload.to_vec(),
                });
            }
            _ => self.stats.data_dropped += 1,
        }
    }

    pub(super) fn handle_control(&mut self, now: Instant, message: ControlMessage<'_>) {
        if self.state == TunnelState::Closed {
            return;
        }
        self.last_heard = now;
        self.stats.control_received += 1;
        self.reliable.handle(now, message.into_owned());
        while let Some(message) = self.reliable.poll_deliver() {
            self.process(now, message);
        }
    }

    /// One in-order control message.
    fn process(&mut self, now: Instant, message: ControlMessage<'static>) {
        let Some(kind) = message.message_type() else {
            return;
        };
        if self.config.record_messages {
            let ns = message.header.sequence.map_or(0, |s| s.ns);
            self.log.get_or_insert_default().delivered.push((ns, kind));
        }
        if self.state == TunnelState::Closing {
            // Only the reliable layer still works: it acknowledges, nothing else happens.
            return;
        }
        if matches!(kind, MessageType::Sccrq | MessageType::Sccrp) && self.peer_id == 0 {
            // A StopCCN refusing this very message must carry the peer's Tunnel ID (§5.3), or
            // the peer cannot tell which tunnel it ends.
            self.learn_peer_tunnel_id(&message);
        }
        let session_id = message.header.session_id;
        let session_scoped = matches!(
            kind,
            MessageType::Icrq
                | MessageType::Icrp
                | MessageType::Iccn
                | MessageType::Ocrq
                | MessageType::Ocrp
                | MessageType::Occn
                | MessageType::Cdn
                | MessageType::Wen
                | MessageType::Sli
        );
        // §4.2: an unrecognized AVP with M set ends the session, or the tunnel it concerns.
        if let Some(avp) = unknown_mandatory(&message) {
            let result = ResultCode::error(
                ResultCode::GENERAL_ERROR,
                ResultCode::ERROR_UNKNOWN_MANDATORY_AVP,
                format!("unknown mandatory AVP {avp}"),
            );
            return self.fail(now, &message, session_scoped, result);
        }
        if let MessageType::Unknown(_) = kind {
            // Message Type AVPs with M set were caught above; without M, ignore (§4.2).
            return;
        }
        if let Some(missing) = rules::missing_avps(&message).next() {
            let result = ResultCode::error(
                ResultCode::GENERAL_ERROR,
                ResultCode::ERROR_VENDOR,
                format!("{} without its mandatory {} AVP", kind, missing.name()),
            );
            return self.fail(now, &message, session_scoped, result);
        }
        match kind {
            MessageType::Sccrq => self.on_sccrq(now, &message),
            MessageType::Sccrp => self.on_sccrp(now, &message),
            MessageType::Scccn => self.on_scccn(now, &message),
            MessageType::StopCcn => self.on_stopccn(now, &message),
            MessageType::Hello => {}
            _ if self.state != TunnelState::Established => {
                self.stats.unexpected += 1;
                let result = ResultCode::error(
                    ResultCode::FSM_ERROR,
                    0,
                    format!("{kind} before the tunnel is established"),
                );
                self.close(now, result);
            }
            MessageType::Icrq => self.on_icrq(&message),
            MessageType::Ocrq => self.on_ocrq(&message),
            MessageType::Icrp | MessageType::Ocrp => self.on_call_reply(kind, &message),
            MessageType::Iccn | MessageType::Occn => self.on_call_connected(kind, &message),
            MessageType::Cdn => self.on_cdn(&message),
            MessageType::Wen | MessageType::Sli if !self.sessions.contains_key(&session_id) => {
                self.stats.unexpected += 1;
            }
            MessageType::Wen => {
                if let Some(AvpValue::CallErrors { crc_errors, .. }) =
                    message.avp(AvpType::CallErrors)
                {
                    self.events.push_back(Event::WanError {
                        session_id,
                        crc_errors: *crc_errors,
                    });
                }
            }
            MessageType::Sli => {
                if let Some(AvpValue::Accm {
                    send_accm,
                    receive_accm,
                    ..
                }) = message.avp(AvpType::Accm)
                {
                    self.events.push_back(Event::LinkInfo {
                        session_id,
                        send_accm: *send_accm,
                        receive_accm: *receive_accm,
                    });
                }
            }
            MessageType::Unknown(_) => {}
        }
    }

    /// Ends the session a bad message concerns, or the whole tunnel.
    fn fail(
        &mut self,
        now: Instant,
        message: &ControlMessage,
        session_scoped: bool,
        result: ResultCode,
    ) {
        let kind = message.message_type();
        let session_id = message.header.session_id;
        if !session_scoped {
            self.close(now, result);
        } else if self.sessions.contains_key(&session_id) {
            self.close_session(session_id, result);
        } else if matches!(kind, Some(MessageType::Icrq | MessageType::Ocrq)) {
            // The call never existed here: refuse it with a CDN to the peer's session ID.
            let peer_session = match message.avp(AvpType::AssignedSessionId) {
                Some(AvpValue::AssignedSessionId(id)) => *id,
                _ => 0,
            };
            self.refuse_call(peer_session, result);
        } else {
            // About a session that is gone (a CDN crossing ours, say): §4.2 ends the session
            // the message concerns, and there is none; the tunnel's other sessions stay.
            self.stats.unexpected += 1;
        }
    }

    fn check_peer_basics(&mut self, message: &ControlMessage) -> Result<(), ResultCode> {
        if let Some(AvpValue::ProtocolVersion { version, revision }) =
            message.avp(AvpType::ProtocolVersion)
        {
            if (*version, *revision) != PROTOCOL_VERSION {
                return Err(ResultCode::error(
                    ResultCode::BAD_VERSION,
                    u16::from_be_bytes([PROTOCOL_VERSION.0, PROTOCOL_VERSION.1]),
                    "only L2TP protocol version 1.0",
                ));
            }
        }
        if let Some(AvpValue::AssignedTunnelId(0)) = message.avp(AvpType::AssignedTunnelId) {
            return Err(ResultCode::error(
                ResultCode::GENERAL_ERROR,
                3,
                "Assigned Tunnel ID 0",
            ));
        }
        self.learn_peer_tunnel_id(message);
        if let Some(AvpValue::ReceiveWindowSize(window)) = message.avp(AvpType::ReceiveWindowSize) {
            self.reliable.set_peer_window(*window);
        }
        if let Some(AvpValue::HostName(name)) = message.avp(AvpType::HostName) {
            self.peer_host_name = String::from_utf8_lossy(name).into_owned();
        }
        Ok(())
    }

    fn learn_peer_tunnel_id(&mut self, message: &ControlMessage) {
        if let Some(AvpValue::AssignedTunnelId(id @ 1..)) = message.avp(AvpType::AssignedTunnelId) {
            self.peer_id = *id;
            self.reliable.set_peer_tunnel_id(*id);
        }
    }

    fn on_sccrq(&mut self, now: Instant, message: &ControlMessage) {
        if self.role != TunnelEnd::Responder || self.state != TunnelState::Idle {
            // §7.2.1: an SCCRQ inside a tunnel that exists is a state machine error.
            self.stats.unexpected += 1;
            let result = ResultCode::error(ResultCode::FSM_ERROR, 0, "unexpected SCCRQ");
            return self.close(now, result);
        }
        if let Err(result) = self.check_peer_basics(message) {
            return self.close(now, result);
        }
        let mut avps = self.start_avps();
        match self.answer_challenge(MessageType::Sccrp, message) {
            Ok(Some(response)) => avps.push(response),
            Ok(None) => {}
            Err(result) => return self.close(now, result),
        }
        self.state = TunnelState::WaitCtlConn;
        self.send(MessageType::Sccrp, 0, avps);
    }

    fn on_sccrp(&mut self, now: Instant, message: &ControlMessage) {
        if self.state != TunnelState::WaitCtlReply {
            self.stats.unexpected += 1;
            let result = ResultCode::error(ResultCode::FSM_ERROR, 0, "unexpected SCCRP");
            return self.close(now, result);
        }
        if let Err(result) = self.check_peer_basics(message) {
            return self.close(now, result);
        }
        if let Err(result) = self.verify_response(MessageType::Sccrp, message) {
            return self.close(now, result);
        }
        let mut avps = Vec::new();
        match self.answer_challenge(MessageType::Scccn, message) {
            Ok(Some(response)) => avps.push(response),
            Ok(None) => {}
            Err(result) => return self.close(now, result),
        }
        self.send(MessageType::Scccn, 0, avps);
        self.established(now);
    }

    fn on_scccn(&mut self, now: Instant, message: &ControlMessage) {
        if self.state != TunnelState::WaitCtlConn {
            // §7.2.1: SCCCN anywhere but wait-ctl-conn ends the tunnel.
            self.stats.unexpected += 1;
            let result = ResultCode::error(ResultCode::FSM_ERROR, 0, "unexpected SCCCN");
            return self.close(now, result);
        }
        if let Err(result) = self.verify_response(MessageType::Scccn, message) {
            return self.close(now, result);
        }
        self.established(now);
    }

    fn established(&mut self, now: Instant) {
        self.state = TunnelState::Established;
        self.last_heard = now;
        self.events.push_back(Event::TunnelUp {
            peer_tunnel_id: self.peer_id,
            peer_host_name: self.peer_host_name.clone(),
        });
    }

    fn on_stopccn(&mut self, now: Instant, message: &ControlMessage) {
        // A CDN of ours that crossed the StopCCN would be retransmitted to a peer that has
        // cleaned up (§5.7), for a full cycle, and never acknowledged: it goes unsent.
        self.reliable.abandon_outgoing();
        let result = ResultCode::from_avp(message.avp(AvpType::ResultCode));
        self.drop_sessions(&result, true);
        self.events.push_back(Event::TunnelDown {
            result,
            by_peer: true,
        });
        self.hold(now);
    }

    /// Tears the tunnel down with a StopCCN; sessions end implicitly (§6.4).
    pub fn close(&mut self, now: Instant, result: ResultCode) {
        if matches!(self.state, TunnelState::Closing | TunnelState::Closed) {
            return;
        }
        self.drop_sessions(&result, false);
        if self.peer_id == 0 && self.role == TunnelEnd::Initiator {
            // No SCCRP yet: the peer has no tunnel of ours to clear, so ours ends here without
            // a StopCCN. A responder refusing an SCCRQ that named no tunnel (no or a zero
            // Assigned Tunnel ID) answers to Tunnel ID 0 (§3.1: the ID not yet assigned is
            // sent as 0), so that the initiator hears the refusal instead of silence.
            self.events.push_back(Event::TunnelDown {
                result,
                by_peer: false,
            });
            return self.finish();
        }
        let avps = vec![
            AvpRepr::mandatory(AvpValue::AssignedTunnelId(self.local_id)),
            AvpRepr::mandatory(result.to_avp()),
        ];
        self.send(MessageType::StopCcn, 0, avps);
        self.events.push_back(Event::TunnelDown {
            result,
            by_peer: false,
        });
        self.hold(now);
    }

    fn drop_sessions(&mut self, result: &ResultCode, by_peer: bool) {
        for (session_id, _) in std::mem::take(&mut self.sessions) {
            self.events.push_back(Event::SessionDown {
                session_id,
                result: result.clone(),
                by_peer,
            });
        }
    }

    /// §5.7: keep the tunnel for one full retransmission cycle so a lost ack is answered.
    fn hold(&mut self, now: Instant) {
        self.state = TunnelState::Closing;
        self.close_at = Some(now + self.reliable.full_retransmit_cycle());
    }

    // ----- polling -----

    /// Writes the next datagram for the peer into `buf`; false when there is none. Control
    /// messages go first: a session's first PPP frame is queued when the ICRP arrives, and
    /// must follow the ICCN that establishes the session at the peer, or the peer drops it
    /// (and PPP waits a Restart time for nothing).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> bool {
        buf.clear();
        let message = match self.state {
            TunnelState::Closed => None,
            _ => self.reliable.poll_transmit(now),
        };
        let Some(message) = message else {
            let Some(bytes) = self.next_data() else {
                self.release_idle();
                return false;
            };
            buf.extend_from_slice(&bytes);
            return true;
        };
        buf.resize(message.buffer_len(), 0);
        match message.emit(buf, self.config.secret.as_deref()) {
            Ok(len) => {
                buf.truncate(len);
                true
            }
            // Our own messages always carry a Random Vector before hidden AVPs; an emit error
            // here is a bug, and sending nothing is the safe answer.
            Err(err) => {
                debug_assert!(false, "emitting our own message failed: {err}");
                false
            }
        }
    }

    /// The first queued data message whose session's ICCN is on the wire.
    fn next_data(&mut self) -> Option<Vec<u8>> {
        let sent = self.reliable.stats().sent;
        let sessions = &mut self.sessions;
        let mut ready = |session_id: u16| {
            let Some(session) = sessions.get_mut(&session_id) else {
                return true;
            };
            match session.connect_ticket {
                Some(ticket) if sent < ticket => false,
                _ => {
                    session.connect_ticket = None;
                    true
                }
            }
        };
        let index = self.data_out.iter().position(|(id, _)| ready(*id))?;
        self.data_out.remove(index).map(|(_, bytes)| bytes)
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == TunnelState::Closed {
            return None;
        }
        let hello = self.hello_due();
        [
            self.reliable.poll_timeout(),
            hello,
            self.close_at,
            self.setup_due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn setup_due(&self) -> Option<Instant> {
        matches!(
            self.state,
            TunnelState::Idle | TunnelState::WaitCtlReply | TunnelState::WaitCtlConn
        )
        .then_some(self.setup_deadline)
    }

    fn hello_due(&self) -> Option<Instant> {
        // While a message awaits its ack, its retransmissions probe the peer already, and a
        // deadline that cannot send would fire again at once, forever.
        if self.state != TunnelState::Established || !self.reliable.is_idle() {
            return None;
        }
        let since = match self.hello_sent_at {
            Some(sent) if sent > self.last_heard => sent,
            _ => self.last_heard,
        };
        Some(since + self.config.hello_interval)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == TunnelState::Closed {
            return;
        }
        if let Err(gave_up) = self.reliable.handle_timeout(now) {
            // The peer stopped acknowledging: nothing can be delivered, not even a StopCCN.
            self.events.push_back(Event::GaveUp(gave_up));
            let result = ResultCode::error(
                ResultCode::GENERAL_ERROR,
                0,
                format!("peer stopped acknowledging: {gave_up}"),
            );
            if self.state != TunnelState::Closing {
                self.drop_sessions(&result, false);
                self.events.push_back(Event::TunnelDown {
                    result,
                    by_peer: false,
                });
            }
            return self.finish();
        }
        if self.close_at.is_some_and(|at| now >= at) {
            if self.reliable.in_flight() + self.reliable.queued() == 0 {
                return self.finish();
            }
            // Our StopCCN went out late (behind earlier messages in a small window) and is
            // still being retransmitted: its ack or its give-up (§5.8) ends the tunnel, not
            // this hold. Look again at the next retransmission.
            self.close_at = Some(
                self.reliable
                    .poll_timeout()
                    .filter(|&at| at > now)
                    .unwrap_or(now + self.reliable.config().initial_timeout),
            );
        }
        if self.setup_due().is_some_and(|at| now >= at) {
            let result = ResultCode::error(
                ResultCode::GENERAL_ERROR,
                0,
                "control connection not established in time",
            );
            return self.close(now, result);
        }
        if self.hello_due().is_some_and(|at| now >= at) {
            self.hello_sent_at = Some(now);
            self.send(MessageType::Hello, 0, Vec::new());
        }
    }

    fn finish(&mut self) {
        self.state = TunnelState::Closed;
        self.close_at = None;
        self.events.push_back(Event::Closed);
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front();
        if event.is_none() {
            release(&mut self.events);
        }
        event
    }

    /// Gives back the buffers a burst left empty: an idle tunnel holds none (a queue keeps its
    /// capacity after draining, four entries each, a kilobyte a tunnel in all).
    fn release_idle(&mut self) {
        release(&mut self.data_out);
        self.reliable.release_idle();
    }
}
