//! The Password Authentication Protocol (RFC 1334 §2), as the peer that authenticates
//! ([`PapPeer`]) and as the authenticator ([`PapAuthenticator`]).
//!
//! ```text
//! Authenticate-Request (1): | Peer-ID Length | Peer-ID ... | Passwd-Length | Password ... |
//! Authenticate-Ack (2),
//! Authenticate-Nak (3):     | Msg-Length | Message ... |
//! ```
//!
//! The peer sends its Peer-ID and Password until a verdict comes, with a new Identifier each
//! time (§2.2.1); the verdict copies the Identifier of the request it answers. The
//! authenticator judges the first request and answers every later one with the same verdict,
//! since its Ack or Nak may have been lost.

use std::sync::Arc;

use super::auth::{
    field_len, push_packet, same_secret, AuthenticatorConfig, AuthenticatorOutcome, Credentials,
    Handled, Ignored, PeerConfig, PeerOutcome, Reader, Reported, Retry, Secrets,
};
use super::frame::{PacketRepr, Result, PACKET_HEADER_LEN};
use crate::malformed::BadValue;
use crate::time::Instant;

/// PAP codes (RFC 1334 §2.2).
pub mod code {
    pub const AUTHENTICATE_REQUEST: u8 = 1;
    pub const AUTHENTICATE_ACK: u8 = 2;
    pub const AUTHENTICATE_NAK: u8 = 3;
}

/// A PAP packet's data, typed by its code. The Identifier stays in the
/// [`PacketRepr`] it came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PapPacket<'a> {
    Request {
        peer_id: &'a [u8],
        password: &'a [u8],
    },
    Ack {
        message: &'a [u8],
    },
    Nak {
        message: &'a [u8],
    },
}

impl<'a> PapPacket<'a> {
    /// Reads the data of a PAP control packet. A length field that runs past the packet's
    /// Length is an error; octets after the last field are padding and ignored.
    pub fn parse(packet: &PacketRepr<'a>) -> Result<PapPacket<'a>> {
        let mut reader = Reader::new(packet.data);
        match packet.code {
            code::AUTHENTICATE_REQUEST => {
                let len = reader.u8("PAP Peer-ID Length")?;
                let peer_id = reader.bytes("PAP Peer-ID", len)?;
                let len = reader.u8("PAP Passwd-Length")?;
                let password = reader.bytes("PAP Password", len)?;
                Ok(PapPacket::Request { peer_id, password })
            }
            code::AUTHENTICATE_ACK | code::AUTHENTICATE_NAK => {
                // Some authenticators send a bare Ack (Length 4, no Msg-Length): read it as
                // an empty message, as pppd does.
                let message = if reader.is_empty() {
                    &[][..]
                } else {
                    let len = reader.u8("PAP Msg-Length")?;
                    reader.bytes("PAP Message", len)?
                };
                Ok(if packet.code == code::AUTHENTICATE_ACK {
                    PapPacket::Ack { message }
                } else {
                    PapPacket::Nak { message }
                })
            }
            _ => Err(BadValue {
                field: "PAP Code",
                offset: 0,
                reason: "not 1, 2 or 3 (RFC 1334 §2.2)",
            }
            .into()),
        }
    }

    pub fn code(&self) -> u8 {
        match self {
            PapPacket::Request { .. } => code::AUTHENTICATE_REQUEST,
            PapPacket::Ack { .. } => code::AUTHENTICATE_ACK,
            PapPacket::Nak { .. } => code::AUTHENTICATE_NAK,
        }
    }

    /// Octets of the whole control packet, Code to the last field.
    pub fn buffer_len(&self) -> usize {
        PACKET_HEADER_LEN
            + match self {
                PapPacket::Request { peer_id, password } => 2 + peer_id.len() + password.len(),
                PapPacket::Ack { message } | PapPacket::Nak { message } => 1 + message.len(),
            }
    }

    /// Appends the whole control packet with `identifier`. Fails, writing nothing, when a
    /// field is longer than its one-octet length can say.
    pub fn emit_to_vec(&self, identifier: u8, out: &mut Vec<u8>) -> Result<()> {
        match *self {
            PapPacket::Request { peer_id, password } => {
                let id_len = field_len("PAP Peer-ID", peer_id, PACKET_HEADER_LEN)?;
                let at = PACKET_HEADER_LEN + 1 + peer_id.len();
                let pw_len = field_len("PAP Password", password, at)?;
                let fields: [&[u8]; 4] = [&[id_len], peer_id, &[pw_len], password];
                push_packet(out, self.code(), identifier, &fields)
            }
            PapPacket::Ack { message } | PapPacket::Nak { message } => {
                let len = field_len("PAP Message", message, PACKET_HEADER_LEN)?;
                push_packet(out, self.code(), identifier, &[&[len], message])
            }
        }
    }
}

/// The peer: sends Authenticate-Requests until the authenticator answers or
/// [`PeerConfig::max_transmit`] went unanswered.
#[derive(Debug, Clone)]
pub struct PapPeer {
    config: PeerConfig,
    /// The Identifier of the first request; the n-th has `first_identifier + n`.
    first_identifier: u8,
    retry: Retry,
    send: bool,
    outcome: Reported<PeerOutcome>,
}

impl PapPeer {
    /// Starts authenticating at `now` (when LCP opens): the first request is due at once.
    /// `first_identifier` is the caller's (seeded) choice.
    pub fn new(config: PeerConfig, first_identifier: u8, now: Instant) -> PapPeer {
        PapPeer {
            config,
            first_identifier,
            retry: Retry::start(now, config.restart),
            send: true,
            outcome: Reported::new(),
        }
    }

    /// Takes a PAP packet from the authenticator.
    pub fn handle(&mut self, _now: Instant, packet: PacketRepr<'_>) -> Result<Handled> {
        let (success, message) = match PapPacket::parse(&packet)? {
            PapPacket::Request { .. } => return Ok(Handled::Ignored(Ignored::WrongRole)),
            PapPacket::Ack { message } => (true, message),
            PapPacket::Nak { message } => (false, message),
        };
        if self.outcome.get().is_some() {
            return Ok(Handled::Ignored(Ignored::Finished));
        }
        // The verdict may answer any request we sent: a late Ack to the previous one is as
        // good as one to the last, since every request carries the same credentials.
        let nth = packet.identifier.wrapping_sub(self.first_identifier);
        if nth >= self.retry.sent {
            return Ok(Handled::Ignored(Ignored::StaleIdentifier));
        }
        self.retry.stop();
        self.send = false;
        self.outcome.set(PeerOutcome::verdict(success, message));
        Ok(Handled::Used)
    }

    /// Appends the Authenticate-Request that is due, if any, with `credentials` as Peer-ID
    /// and Password and a new Identifier.
    pub fn poll_transmit(&mut self, credentials: &Credentials<'_>, out: &mut Vec<u8>) -> bool {
        if !core::mem::take(&mut self.send) {
            return false;
        }
        let identifier = self.first_identifier.wrapping_add(self.retry.count());
        let request = PapPacket::Request {
            peer_id: credentials.name(),
            password: credentials.secret(),
        };
        // Credentials are at most 255 octets each, so this fits.
        request.emit_to_vec(identifier, out).is_ok()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.retry.deadline
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.retry.expired(now) {
            return;
        }
        let PeerConfig {
            restart,
            max_transmit,
            ..
        } = self.config;
        if self.retry.again(now, restart, max_transmit) {
            self.send = true;
        } else {
            self.outcome.set(PeerOutcome::Timeout);
        }
    }

    /// How it ended, once it has.
    pub fn outcome(&self) -> Option<&PeerOutcome> {
        self.outcome.get()
    }

    /// The outcome, once, when it is decided.
    pub fn poll_event(&mut self) -> Option<PeerOutcome> {
        self.outcome.poll()
    }

    /// Authenticate-Requests sent so far.
    pub fn requests_sent(&self) -> u8 {
        self.retry.sent
    }
}

/// The authenticator: waits for an Authenticate-Request, judges it through a [`Secrets`]
/// lookup, and answers Ack or Nak with the configured message.
#[derive(Debug, Clone)]
pub struct PapAuthenticator {
    config: Arc<AuthenticatorConfig>,
    /// When to give up waiting for the first request.
    deadline: Option<Instant>,
    /// The Identifier of a request to answer.
    reply: Option<u8>,
    outcome: Reported<AuthenticatorOutcome>,
}

impl PapAuthenticator {
    /// Starts waiting at `now` (when LCP opens) for the peer's first request.
    pub fn new(config: Arc<AuthenticatorConfig>, now: Instant) -> PapAuthenticator {
        PapAuthenticator {
            deadline: config.wait.map(|wait| now + wait),
            config,
            reply: None,
            outcome: Reported::new(),
        }
    }

    /// Takes a PAP packet from the peer, judging its first Authenticate-Request with
    /// `secrets`; any later request gets the same verdict (RFC 1334 §2.2.1 lets the peer
    /// repeat its request until it hears one).
    pub fn handle<S: Secrets + ?Sized>(
        &mut self,
        _now: Instant,
        packet: PacketRepr<'_>,
        secrets: &S,
    ) -> Result<Handled> {
        let PapPacket::Request { peer_id, password } = PapPacket::parse(&packet)? else {
            return Ok(Handled::Ignored(Ignored::WrongRole));
        };
        match self.outcome.get() {
            Some(AuthenticatorOutcome::Timeout) => return Ok(Handled::Ignored(Ignored::Finished)),
            Some(_) => {}
            None => {
                let secret = secrets.lookup(peer_id);
                let outcome = AuthenticatorOutcome::judge(peer_id, secret, |secret| {
                    same_secret(secret, password)
                });
                self.outcome.set(outcome);
                self.deadline = None;
            }
        }
        self.reply = Some(packet.identifier);
        Ok(Handled::Used)
    }

    /// Appends the Ack or Nak that is due, if any.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        let Some(identifier) = self.reply.take() else {
            return false;
        };
        let success = self
            .outcome
            .get()
            .is_some_and(AuthenticatorOutcome::is_success);
        let message = self.config.message(success);
        let verdict = if success {
            PapPacket::Ack { message }
        } else {
            PapPacket::Nak { message }
        };
        verdict.emit_to_vec(identifier, out).is_ok()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_some_and(|deadline| deadline <= now) {
            self.deadline = None;
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
}

#[cfg(test)]
#[path = "pap_tests.rs"]
mod tests;
