//! The Challenge-Handshake Authentication Protocol with MD5 (RFC 1994), as the peer that
//! authenticates ([`ChapPeer`]) and as the authenticator ([`ChapAuthenticator`]).
//!
//! ```text
//! Challenge (1), Response (2): | Value-Size | Value ... | Name ... |   Name up to Length
//! Success (3), Failure (4):    | Message ... |                        Message up to Length
//! ```
//!
//! The authenticator sends a Challenge (a random Value and its Name) until a Response to it
//! comes; the peer answers with Value = MD5(Identifier || secret || challenge Value) and its
//! Name; the authenticator answers Success or Failure with the Response's Identifier.
//!
//! Retransmissions: the authenticator resends the *same* Challenge (Identifier and Value) on
//! its restart timer, as pppd does; RFC 1994 §4.1's "the Identifier MUST be changed" is read
//! as applying to a new challenge, not to a resend of one that got no answer. A Response whose
//! Identifier is not the outstanding Challenge's is silently discarded (§4.1): that is what
//! the stale-Identifier probe checks. Because a Success may be lost, the authenticator answers
//! a repeated Response with the same verdict (§4.1, Implementation Note), and so the peer may
//! resend its Response on its own restart timer while no verdict has come: this keeps a lossy
//! link from stalling after the authenticator has stopped challenging.

use core::time::Duration;
use std::sync::Arc;

use md5::{Digest, Md5};

use super::auth::{
    cut, push_packet, same_secret, AuthenticatorConfig, AuthenticatorOutcome, Credentials, Handled,
    Ignored, PeerConfig, PeerOutcome, Reader, Reported, Retry, Secrets,
};
use super::frame::{PacketRepr, Result, PACKET_HEADER_LEN};
use crate::malformed::BadValue;
use crate::time::Instant;

/// CHAP codes (RFC 1994 §4).
pub mod code {
    pub const CHALLENGE: u8 = 1;
    pub const RESPONSE: u8 = 2;
    pub const SUCCESS: u8 = 3;
    pub const FAILURE: u8 = 4;
}

/// The CHAP algorithm number of MD5 in LCP's Authentication-Protocol option (RFC 1994 §3).
pub const ALGORITHM_MD5: u8 = 5;

/// Octets of the challenge Value our authenticator sends, and of every MD5 Response Value.
pub const VALUE_LEN: usize = 16;

/// The Response Value to a Challenge (RFC 1994 §2 with MD5): MD5 over the Identifier, the
/// secret and the challenge Value, in that order.
pub fn response_value(identifier: u8, secret: &[u8], challenge: &[u8]) -> [u8; VALUE_LEN] {
    let mut md5 = Md5::new();
    md5.update([identifier]);
    md5.update(secret);
    md5.update(challenge);
    md5.finalize().into()
}

/// A CHAP packet's data, typed by its code. The Identifier stays in the [`PacketRepr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChapPacket<'a> {
    Challenge { value: &'a [u8], name: &'a [u8] },
    Response { value: &'a [u8], name: &'a [u8] },
    Success { message: &'a [u8] },
    Failure { message: &'a [u8] },
}

impl<'a> ChapPacket<'a> {
    /// Reads the data of a CHAP control packet. A Value-Size past the packet's Length is an
    /// error; the Name or Message is the rest, up to Length.
    pub fn parse(packet: &PacketRepr<'a>) -> Result<ChapPacket<'a>> {
        let mut reader = Reader::new(packet.data);
        match packet.code {
            code::CHALLENGE | code::RESPONSE => {
                let size = reader.u8("CHAP Value-Size")?;
                let value = reader.bytes("CHAP Value", size)?;
                let name = reader.rest();
                Ok(if packet.code == code::CHALLENGE {
                    ChapPacket::Challenge { value, name }
                } else {
                    ChapPacket::Response { value, name }
                })
            }
            code::SUCCESS => Ok(ChapPacket::Success {
                message: reader.rest(),
            }),
            code::FAILURE => Ok(ChapPacket::Failure {
                message: reader.rest(),
            }),
            _ => Err(BadValue {
                field: "CHAP Code",
                offset: 0,
                reason: "not 1, 2, 3 or 4 (RFC 1994 §4)",
            }
            .into()),
        }
    }

    pub fn code(&self) -> u8 {
        match self {
            ChapPacket::Challenge { .. } => code::CHALLENGE,
            ChapPacket::Response { .. } => code::RESPONSE,
            ChapPacket::Success { .. } => code::SUCCESS,
            ChapPacket::Failure { .. } => code::FAILURE,
        }
    }

    /// Octets of the whole control packet.
    pub fn buffer_len(&self) -> usize {
        PACKET_HEADER_LEN
            + match self {
                ChapPacket::Challenge { value, name } | ChapPacket::Response { value, name } => {
                    1 + value.len() + name.len()
                }
                ChapPacket::Success { message } | ChapPacket::Failure { message } => message.len(),
            }
    }

    /// Appends the whole control packet with `identifier`. Fails, writing nothing, when the
    /// Value is longer than 255 octets or the packet longer than its Length can say.
    pub fn emit_to_vec(&self, identifier: u8, out: &mut Vec<u8>) -> Result<()> {
        let code = self.code();
        match *self {
            ChapPacket::Challenge { value, name } | ChapPacket::Response { value, name } => {
                let size = super::auth::field_len("CHAP Value", value, PACKET_HEADER_LEN)?;
                push_packet(out, code, identifier, &[&[size], value, name])
            }
            ChapPacket::Success { message } | ChapPacket::Failure { message } => {
                push_packet(out, code, identifier, &[message])
            }
        }
    }
}

/// The authenticator: challenges, checks the Response through a [`Secrets`] lookup, and
/// answers Success or Failure.
#[derive(Debug, Clone)]
pub struct ChapAuthenticator {
    config: Arc<AuthenticatorConfig>,
    identifier: u8,
    challenge: [u8; VALUE_LEN],
    retry: Retry,
    send_challenge: bool,
    send_verdict: bool,
    outcome: Reported<AuthenticatorOutcome>,
}

impl ChapAuthenticator {
    /// Starts at `now` (when LCP opens): the Challenge with `identifier` and the `challenge`
    /// Value (random from the caller's seeded generator) is due at once.
    pub fn new(
        config: Arc<AuthenticatorConfig>,
        identifier: u8,
        challenge: [u8; VALUE_LEN],
        now: Instant,
    ) -> ChapAuthenticator {
        ChapAuthenticator {
            retry: Retry::start(now, config.restart),
            config,
            identifier,
            challenge,
            send_challenge: true,
            send_verdict: false,
            outcome: Reported::new(),
        }
    }

    /// Takes a CHAP packet from the peer. A Response to the outstanding Challenge is judged
    /// with `secrets` (the secret of the Name it carries); a repeat of it after the verdict
    /// gets the same verdict; one with another Identifier is ignored.
    pub fn handle<S: Secrets + ?Sized>(
        &mut self,
        _now: Instant,
        packet: PacketRepr<'_>,
        secrets: &S,
    ) -> Result<Handled> {
        let ChapPacket::Response { value, name } = ChapPacket::parse(&packet)? else {
            return Ok(Handled::Ignored(Ignored::WrongRole));
        };
        if packet.identifier != self.identifier {
            return Ok(Handled::Ignored(Ignored::StaleIdentifier));
        }
        match self.outcome.get() {
            Some(AuthenticatorOutcome::Timeout) => return Ok(Handled::Ignored(Ignored::Finished)),
            Some(_) => {}
            None => {
                let secret = secrets.lookup(name);
                let challenge = &self.challenge;
                let outcome = AuthenticatorOutcome::judge(name, secret, |secret| {
                    same_secret(&response_value(packet.identifier, secret, challenge), value)
                });
                self.outcome.set(outcome);
                self.retry.stop();
                self.send_challenge = false;
            }
        }
        self.send_verdict = true;
        Ok(Handled::Used)
    }

    /// Appends the packet that is due, if any: the verdict, or the Challenge.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        let packet = if core::mem::take(&mut self.send_verdict) {
            let success = self
                .outcome
                .get()
                .is_some_and(AuthenticatorOutcome::is_success);
            let message = self.config.message(success);
            if success {
                ChapPacket::Success { message }
            } else {
                ChapPacket::Failure { message }
            }
        } else if core::mem::take(&mut self.send_challenge) {
            self.retry.count();
            ChapPacket::Challenge {
                value: &self.challenge,
                name: cut(&self.config.name),
            }
        } else {
            return false;
        };
        packet.emit_to_vec(self.identifier, out).is_ok()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.retry.deadline
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.retry.expired(now) {
            return;
        }
        let config = &self.config;
        if self.retry.again(now, config.restart, config.max_transmit) {
            self.send_challenge = true;
        } else {
            self.outcome.set(AuthenticatorOutcome::Timeout);
        }
    }

    pub fn outcome(&self) -> Option<&AuthenticatorOutcome> {
        self.outcome.get()
    }

    /// The outcome, once, when it is decided.
    pub fn poll_event(&mut self) -> Option<AuthenticatorOutcome> {
        self.outcome.poll()
    }

    /// The Identifier of the outstanding Challenge.
    pub fn identifier(&self) -> u8 {
        self.identifier
    }

    /// Challenges sent so far.
    pub fn challenges_sent(&self) -> u8 {
        self.retry.sent
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerState {
    /// No Challenge yet.
    Waiting,
    /// Responded; no verdict yet.
    Answered,
    /// A verdict, or a timeout.
    Done,
}

/// The peer: answers every Challenge with a Response and waits for the verdict.
///
/// Two Challenges may be outstanding at once. After an LCP renegotiation the authenticator's
/// Challenge of its earlier round (a new Identifier) can reach us after the Challenge of its new
/// round, and only the authenticator knows which one it is waiting on: both are answered, both
/// Responses resent on the restart timer, and a verdict for either counts. Found under 20% loss
/// and reordering: the stale Challenge replaced the live one, the Success to the live one was
/// then dropped as stale, and the session timed out while the LNS waited in IPCP.
#[derive(Debug, Clone)]
pub struct ChapPeer {
    /// [`PeerConfig`] without the first wait, which only `new` needs: the state stays small.
    restart: Duration,
    max_transmit: u8,
    state: PeerState,
    /// The Identifier of the last Challenge, and our Response Value to it.
    identifier: u8,
    response: [u8; VALUE_LEN],
    /// The Challenge answered before the last one, still without a verdict.
    earlier: Option<(u8, [u8; VALUE_LEN])>,
    retry: Retry,
    send: bool,
    send_earlier: bool,
    /// A Success came in this LCP round: a later Challenge that gets no verdict (a stale one,
    /// or a rechallenge the authenticator gave up on) does not undo it.
    authenticated: bool,
    outcome: Reported<PeerOutcome>,
}

impl ChapPeer {
    /// Starts waiting at `now` (when LCP opens) for the first Challenge, for
    /// [`PeerConfig::wait`].
    pub fn new(config: PeerConfig, now: Instant) -> ChapPeer {
        ChapPeer {
            restart: config.restart,
            max_transmit: config.max_transmit,
            state: PeerState::Waiting,
            identifier: 0,
            response: [0; VALUE_LEN],
            earlier: None,
            retry: Retry::start(now, config.wait),
            send: false,
            send_earlier: false,
            authenticated: false,
            outcome: Reported::new(),
        }
    }

    /// Takes a CHAP packet from the authenticator. A Challenge is answered with a Response
    /// computed from `credentials`' secret (a repeated one, same Identifier, with the same
    /// Response); a verdict counts for either Challenge still outstanding.
    pub fn handle(
        &mut self,
        now: Instant,
        packet: PacketRepr<'_>,
        credentials: &Credentials<'_>,
    ) -> Result<Handled> {
        let id = packet.identifier;
        let (success, message) = match ChapPacket::parse(&packet)? {
            ChapPacket::Challenge { value, .. } => {
                let answered = self.state == PeerState::Answered;
                if answered && self.earlier.is_some_and(|(earlier, _)| earlier == id) {
                    self.send_earlier = true;
                    return Ok(Handled::Used);
                }
                let repeat = self.state != PeerState::Waiting && id == self.identifier;
                if !repeat {
                    // A new Challenge (the first, a rechallenge after a verdict, or one of
                    // another round) waits for its own verdict; one still unanswered stays.
                    self.earlier = answered.then_some((self.identifier, self.response));
                    self.state = PeerState::Answered;
                    self.retry = Retry::start(now, self.restart);
                }
                self.identifier = id;
                self.response = response_value(id, credentials.secret(), value);
                self.send = true;
                return Ok(Handled::Used);
            }
            ChapPacket::Response { .. } => return Ok(Handled::Ignored(Ignored::WrongRole)),
            ChapPacket::Success { message } => (true, message),
            ChapPacket::Failure { message } => (false, message),
        };
        let outstanding = id == self.identifier || self.earlier.is_some_and(|(e, _)| e == id);
        if self.state == PeerState::Waiting || !outstanding {
            return Ok(Handled::Ignored(Ignored::StaleIdentifier));
        }
        if self.state == PeerState::Done {
            return Ok(Handled::Ignored(Ignored::Finished));
        }
        self.state = PeerState::Done;
        self.retry.stop();
        self.send = false;
        self.send_earlier = false;
        self.earlier = None;
        self.authenticated |= success;
        self.outcome.set(PeerOutcome::verdict(success, message));
        Ok(Handled::Used)
    }

    /// Appends the Response that is due, if any, with `credentials`' name (the same
    /// credentials as given to [`ChapPeer::handle`]): the last Challenge's first, then the
    /// earlier one's.
    pub fn poll_transmit(&mut self, credentials: &Credentials<'_>, out: &mut Vec<u8>) -> bool {
        let (identifier, value) = if core::mem::take(&mut self.send) {
            self.retry.count();
            (self.identifier, &self.response)
        } else if core::mem::take(&mut self.send_earlier) {
            match &self.earlier {
                Some((identifier, value)) => (*identifier, value),
                None => return false,
            }
        } else {
            return false;
        };
        let response = ChapPacket::Response {
            value,
            name: credentials.name(),
        };
        response.emit_to_vec(identifier, out).is_ok()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.retry.deadline
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.retry.expired(now) {
            return;
        }
        let (restart, max_transmit) = (self.restart, self.max_transmit);
        if self.state == PeerState::Answered && self.retry.again(now, restart, max_transmit) {
            self.send = true;
            self.send_earlier = self.earlier.is_some();
            return;
        }
        self.retry.stop();
        self.state = PeerState::Done;
        self.earlier = None;
        if !self.authenticated {
            self.outcome.set(PeerOutcome::Timeout);
        }
    }

    pub fn outcome(&self) -> Option<&PeerOutcome> {
        self.outcome.get()
    }

    /// The outcome, once, when it is decided (and again if a rechallenge changes it).
    pub fn poll_event(&mut self) -> Option<PeerOutcome> {
        self.outcome.poll()
    }

    /// Responses sent to the current Challenge so far.
    pub fn responses_sent(&self) -> u8 {
        self.retry.sent
    }
}

#[cfg(test)]
#[path = "chap_tests.rs"]
mod tests;
