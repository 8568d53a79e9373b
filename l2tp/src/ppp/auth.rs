//! What PAP ([`super::pap`]) and CHAP ([`super::chap`]) share: credentials, the secrets lookup,
//! timers, outcomes, and how a handled packet was taken.
//!
//! Both protocols come in two roles: the *peer* proves who it is (our LAC's subscriber), the
//! *authenticator* checks it (our reference LNS). Every state machine here is sans-IO like
//! [`crate::conn`]: `handle(now, packet, ..)`, `poll_transmit(.., out)` appending one whole
//! control packet (Code, Identifier, Length, data; the caller frames it with
//! [`super::protocol::PAP`] or [`super::protocol::CHAP`]), `poll_timeout()`,
//! `handle_timeout(now)`, `outcome()` and `poll_event()`.
//!
//! # Why names and secrets are passed in, not stored
//!
//! A LAC runs thousands of sessions whose user names differ (`user{n}@example.net`), and an
//! LNS checks them against one users table. So a peer borrows its [`Credentials`] at each call
//! that needs them (the caller renders or keeps them where it likes), and an authenticator
//! asks a [`Secrets`] lookup passed to `handle`. The per-session state stays a few dozen octets
//! (the CHAP challenge value, identifiers, a timer); nothing here keeps packet bytes.
//!
//! The lookup is a synchronous trait rather than an outcome the caller answers later because
//! every authenticator in this project reads an in-memory table (the endpoint's users file): a
//! trait call costs one hash probe and no extra state per session. An authenticator backed by
//! RADIUS would need the asynchronous shape; none is built here.

use core::hash::{BuildHasher, Hash};
use core::time::Duration;
use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};

use super::frame::{Error, Result, PACKET_HEADER_LEN};
use crate::malformed::{BadValue, Truncated};
use crate::time::Instant;

/// The longest name, password or message either protocol carries here: PAP counts its fields
/// in one octet, and a CHAP name or message of more than 255 octets is no name anyone uses.
pub const MAX_FIELD_LEN: usize = 255;

/// Who a peer says it is and what proves it: the PAP Peer-ID and Password, or the CHAP Name
/// and secret. Both are at most [`MAX_FIELD_LEN`] octets, checked once by [`Credentials::new`]
/// so that emitting never fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials<'a> {
    name: &'a [u8],
    secret: &'a [u8],
}

impl<'a> Credentials<'a> {
    pub fn new(name: &'a [u8], secret: &'a [u8]) -> Result<Credentials<'a>> {
        for (field, value) in [("PPP auth name", name), ("PPP auth secret", secret)] {
            if value.len() > MAX_FIELD_LEN {
                return Err(BadValue {
                    field,
                    offset: 0,
                    reason: "longer than the 255 octets a PAP length field can say",
                }
                .into());
            }
        }
        Ok(Credentials { name, secret })
    }

    pub fn name(&self) -> &'a [u8] {
        self.name
    }

    pub fn secret(&self) -> &'a [u8] {
        self.secret
    }
}

/// Where an authenticator finds the secret (PAP password, CHAP secret) of a peer by the name
/// it gave. `None`: no such peer, which is rejected like a wrong secret.
pub trait Secrets {
    fn lookup(&self, name: &[u8]) -> Option<&[u8]>;
}

impl<S: Secrets + ?Sized> Secrets for &S {
    fn lookup(&self, name: &[u8]) -> Option<&[u8]> {
        (**self).lookup(name)
    }
}

impl<K, V, H> Secrets for HashMap<K, V, H>
where
    K: Borrow<[u8]> + Hash + Eq,
    V: AsRef<[u8]>,
    H: BuildHasher,
{
    fn lookup(&self, name: &[u8]) -> Option<&[u8]> {
        self.get(name).map(AsRef::as_ref)
    }
}

impl<K: Borrow<[u8]> + Ord, V: AsRef<[u8]>> Secrets for BTreeMap<K, V> {
    fn lookup(&self, name: &[u8]) -> Option<&[u8]> {
        self.get(name).map(AsRef::as_ref)
    }
}

/// One known peer.
impl Secrets for Credentials<'_> {
    fn lookup(&self, name: &[u8]) -> Option<&[u8]> {
        (name == self.name).then_some(self.secret)
    }
}

/// Timers of the authenticating peer. `Copy` and small: it lives in each session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerConfig {
    /// How long to wait for the authenticator's verdict before sending again (PAP
    /// Authenticate-Request, CHAP Response): RFC 1661 §4.6's Restart timer, 3 s by default.
    pub restart: Duration,
    /// Transmissions of one request before giving up (like Max-Configure, 10 by default). The
    /// outcome is [`PeerOutcome::Timeout`] one restart period after the last.
    pub max_transmit: u8,
    /// How long a CHAP peer waits for the first Challenge (30 s by default).
    pub wait: Duration,
}

impl Default for PeerConfig {
    fn default() -> PeerConfig {
        PeerConfig {
            restart: Duration::from_secs(3),
            max_transmit: 10,
            wait: Duration::from_secs(30),
        }
    }
}

/// What an authenticator says and how long it waits, shared by its sessions through an `Arc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatorConfig {
    /// The CHAP Name in our Challenges (the LNS's host name). Cut to [`MAX_FIELD_LEN`].
    pub name: Vec<u8>,
    /// The message of a PAP Authenticate-Ack or CHAP Success. Cut to [`MAX_FIELD_LEN`].
    pub success_message: String,
    /// The message of a PAP Authenticate-Nak or CHAP Failure. Cut to [`MAX_FIELD_LEN`].
    pub failure_message: String,
    /// CHAP: how long to wait for a Response before sending the Challenge again (3 s).
    pub restart: Duration,
    /// CHAP: Challenges sent at most (10); [`AuthenticatorOutcome::Timeout`] one restart
    /// period after the last.
    pub max_transmit: u8,
    /// PAP: how long to wait for the peer's first Authenticate-Request, `None` for ever (30 s,
    /// like pppd's `pap-timeout`).
    pub wait: Option<Duration>,
}

impl Default for AuthenticatorConfig {
    fn default() -> AuthenticatorConfig {
        AuthenticatorConfig {
            name: b"l2tpkit".to_vec(),
            success_message: "Authentication succeeded".into(),
            failure_message: "Authentication failed".into(),
            restart: Duration::from_secs(3),
            max_transmit: 10,
            wait: Some(Duration::from_secs(30)),
        }
    }
}

impl AuthenticatorConfig {
    pub(crate) fn message(&self, success: bool) -> &[u8] {
        let message = if success {
            &self.success_message
        } else {
            &self.failure_message
        };
        cut(message.as_bytes())
    }
}

/// The first [`MAX_FIELD_LEN`] octets.
pub(crate) fn cut(field: &[u8]) -> &[u8] {
    field.get(..MAX_FIELD_LEN).unwrap_or(field)
}

/// How authentication ended for the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerOutcome {
    /// PAP Authenticate-Ack or CHAP Success, with the authenticator's message (lossy UTF-8).
    Success { message: Box<str> },
    /// PAP Authenticate-Nak or CHAP Failure, with the authenticator's message (lossy UTF-8):
    /// what the LAC reports as the LNS's reason.
    Failure { message: Box<str> },
    /// No verdict (or, for CHAP, no Challenge) within the bounds of [`PeerConfig`].
    Timeout,
}

impl PeerOutcome {
    /// The outcome a verdict from the wire says: success or not, with its message.
    pub(crate) fn verdict(success: bool, message: &[u8]) -> PeerOutcome {
        let message = message_text(message);
        if success {
            PeerOutcome::Success { message }
        } else {
            PeerOutcome::Failure { message }
        }
    }
}

/// Why an authenticator rejected a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The lookup knows no such name.
    UnknownPeer,
    /// The password, or the CHAP Response value, is not the one the secret gives.
    WrongSecret,
}

/// How authentication ended for the authenticator, with the name the peer gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthenticatorOutcome {
    Success {
        peer: Box<[u8]>,
    },
    Failure {
        peer: Box<[u8]>,
        reason: Rejection,
    },
    /// PAP: no request within [`AuthenticatorConfig::wait`]; CHAP: no valid Response to
    /// [`AuthenticatorConfig::max_transmit`] Challenges.
    Timeout,
}

impl AuthenticatorOutcome {
    /// The verdict on `peer`: `proof` tells whether what it sent matches `secret`, the one
    /// the lookup found for its name (if any).
    pub(crate) fn judge(
        peer: &[u8],
        secret: Option<&[u8]>,
        proof: impl FnOnce(&[u8]) -> bool,
    ) -> AuthenticatorOutcome {
        let peer = cut(peer).into();
        match secret.map(proof) {
            Some(true) => AuthenticatorOutcome::Success { peer },
            Some(false) => AuthenticatorOutcome::Failure {
                peer,
                reason: Rejection::WrongSecret,
            },
            None => AuthenticatorOutcome::Failure {
                peer,
                reason: Rejection::UnknownPeer,
            },
        }
    }

    pub fn is_success(&self) -> bool {
        matches!(self, AuthenticatorOutcome::Success { .. })
    }
}

/// What `handle` did with a packet that read well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// It moved the state machine or queued an answer.
    Used,
    /// It was silently discarded, for this reason (to be counted by the caller).
    Ignored(Ignored),
}

/// Why a well-formed packet was silently discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Its Identifier matches nothing outstanding: a CHAP Response to another Challenge, a
    /// verdict for a request never sent.
    StaleIdentifier,
    /// A code only the other role sends (a Challenge to the authenticator, a Request to the
    /// peer).
    WrongRole,
    /// Authentication is over (timed out, or a duplicate verdict): nothing left to answer.
    Finished,
}

/// The outcome slot with the "not yet reported" flag behind `poll_event`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reported<T> {
    value: Option<T>,
    fresh: bool,
}

impl<T: Clone + PartialEq> Reported<T> {
    pub(crate) const fn new() -> Reported<T> {
        Reported {
            value: None,
            fresh: false,
        }
    }

    pub(crate) fn get(&self) -> Option<&T> {
        self.value.as_ref()
    }

    /// Records `value`; it is an event only if it differs from the last one.
    pub(crate) fn set(&mut self, value: T) {
        if self.value.as_ref() != Some(&value) {
            self.value = Some(value);
            self.fresh = true;
        }
    }

    pub(crate) fn poll(&mut self) -> Option<T> {
        if !core::mem::take(&mut self.fresh) {
            return None;
        }
        self.value.clone()
    }
}

/// A restart timer and the count of transmissions it has paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Retry {
    pub(crate) deadline: Option<Instant>,
    pub(crate) sent: u8,
}

impl Retry {
    /// A fresh count, the first transmission due now and answered by `now + restart`.
    pub(crate) fn start(now: Instant, restart: Duration) -> Retry {
        Retry {
            deadline: Some(now + restart),
            sent: 0,
        }
    }

    pub(crate) fn stop(&mut self) {
        self.deadline = None;
    }

    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|deadline| deadline <= now)
    }

    /// Counts one transmission; returns how many came before it.
    pub(crate) fn count(&mut self) -> u8 {
        let before = self.sent;
        self.sent = self.sent.saturating_add(1);
        before
    }

    /// After expiry: `true` and the timer re-armed when another transmission is allowed,
    /// `false` and the timer stopped when `max` have gone out.
    pub(crate) fn again(&mut self, now: Instant, restart: Duration, max: u8) -> bool {
        if self.sent >= max.max(1) {
            self.deadline = None;
            return false;
        }
        self.deadline = Some(now + restart);
        true
    }
}

/// Compares secrets without stopping at the first difference, so that the time taken does not
/// tell how much of a guess was right.
pub(crate) fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Lossy UTF-8 of a message from the wire, cut to [`MAX_FIELD_LEN`].
pub(crate) fn message_text(message: &[u8]) -> Box<str> {
    String::from_utf8_lossy(cut(message)).into()
}

/// Reads the data of a control packet field by field; offsets in errors count from the Code
/// octet, like [`super::frame::Packet`]'s.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Reader<'a> {
        Reader {
            data,
            at: PACKET_HEADER_LEN,
        }
    }

    fn truncated(&self, field: &'static str, len: usize) -> Error {
        Truncated {
            field,
            offset: self.at,
            need: self.at.saturating_add(len),
            have: self.at.saturating_add(self.data.len()),
        }
        .into()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8> {
        let (&value, rest) = self
            .data
            .split_first()
            .ok_or_else(|| self.truncated(field, 1))?;
        self.data = rest;
        self.at += 1;
        Ok(value)
    }

    /// `len` octets, the length having been read from the packet.
    pub(crate) fn bytes(&mut self, field: &'static str, len: u8) -> Result<&'a [u8]> {
        let len = usize::from(len);
        if len > self.data.len() {
            return Err(self.truncated(field, len));
        }
        let (value, rest) = self.data.split_at(len);
        self.data = rest;
        self.at += len;
        Ok(value)
    }

    /// The octets left, up to the packet's Length.
    pub(crate) fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// Appends a control packet made of `fields` in order. Fails, writing nothing, when they do
/// not fit the 16-bit Length.
pub(crate) fn push_packet(
    out: &mut Vec<u8>,
    code: u8,
    identifier: u8,
    fields: &[&[u8]],
) -> Result<()> {
    let data: usize = fields.iter().map(|field| field.len()).sum();
    let length = u16::try_from(PACKET_HEADER_LEN.saturating_add(data)).map_err(|_| BadValue {
        field: "PPP Length",
        offset: 2,
        reason: "the data is longer than a 16-bit Length can say",
    })?;
    out.reserve(usize::from(length));
    out.extend_from_slice(&[code, identifier]);
    out.extend_from_slice(&length.to_be_bytes());
    for field in fields {
        out.extend_from_slice(field);
    }
    Ok(())
}

/// The one-octet length of a field that must fit one.
pub(crate) fn field_len(field: &'static str, value: &[u8], offset: usize) -> Result<u8> {
    u8::try_from(value.len()).map_err(|_| {
        BadValue {
            field,
            offset,
            reason: "longer than the 255 octets its one-octet length can say",
        }
        .into()
    })
}

/// What the PAP and CHAP tests share.
#[cfg(test)]
pub(super) mod fixtures {
    use std::collections::HashMap;

    use super::Credentials;
    use crate::time::Instant;

    pub fn at(millis: u64) -> Instant {
        Instant::from_micros(millis * 1000)
    }

    pub fn alice() -> Credentials<'static> {
        Credentials::new(b"alice", b"wonderland").unwrap()
    }

    /// The authenticator's users: alice only.
    pub fn users() -> HashMap<Vec<u8>, Vec<u8>> {
        HashMap::from([(b"alice".to_vec(), b"wonderland".to_vec())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_bounded() {
        assert!(Credentials::new(&[b'a'; 255], b"pw").is_ok());
        assert!(Credentials::new(&[b'a'; 256], b"pw").is_err());
        assert!(Credentials::new(b"alice", &[0; 256]).is_err());
    }

    #[test]
    fn lookups() {
        let mut users = HashMap::new();
        users.insert(b"alice".to_vec(), b"wonderland".to_vec());
        assert_eq!(users.lookup(b"alice"), Some(&b"wonderland"[..]));
        assert_eq!(users.lookup(b"bob"), None);
        let tree: BTreeMap<Vec<u8>, Vec<u8>> = users.into_iter().collect();
        // A borrowed table is a table too (what `handle` gets when the caller shares one).
        fn knows_alice<S: Secrets>(secrets: S) -> bool {
            secrets.lookup(b"alice") == Some(&b"wonderland"[..])
        }
        assert!(knows_alice(&tree));
        let one = Credentials::new(b"bob", b"builder").unwrap();
        assert_eq!(one.lookup(b"bob"), Some(&b"builder"[..]));
        assert_eq!(one.lookup(b"bo"), None);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
        assert!(same_secret(b"", b""));
    }

    #[test]
    fn retry_counts_and_stops() {
        let restart = Duration::from_secs(3);
        let mut retry = Retry::start(Instant::ZERO, restart);
        assert_eq!(retry.count(), 0);
        assert!(!retry.expired(Instant::from_micros(2_999_999)));
        assert!(retry.expired(Instant::from_micros(3_000_000)));
        assert!(retry.again(Instant::from_micros(3_000_000), restart, 2));
        assert_eq!(retry.deadline, Some(Instant::from_micros(6_000_000)));
        assert_eq!(retry.count(), 1);
        assert!(!retry.again(Instant::from_micros(6_000_000), restart, 2));
        assert_eq!(retry.deadline, None);
        assert!(!retry.expired(Instant::from_micros(u64::MAX)));
    }

    #[test]
    fn reported_once_per_change() {
        let mut slot = Reported::new();
        assert_eq!(slot.poll(), None);
        slot.set(1);
        slot.set(1);
        assert_eq!(slot.poll(), Some(1));
        assert_eq!(slot.poll(), None);
        slot.set(1);
        assert_eq!(slot.poll(), None);
        slot.set(2);
        assert_eq!((slot.poll(), slot.get()), (Some(2), Some(&2)));
    }

    #[test]
    fn reader_names_what_is_missing() {
        let mut reader = Reader::new(&[3, b'a', b'b']);
        let len = reader.u8("X Length").unwrap();
        assert_eq!(
            reader.bytes("X", len).unwrap_err().to_string(),
            "X truncated at byte 5: need 8 bytes, have 7"
        );
        let mut empty = Reader::new(&[]);
        assert_eq!(
            empty.u8("Y Length").unwrap_err().to_string(),
            "Y Length truncated at byte 4: need 5 bytes, have 4"
        );
    }

    #[test]
    fn per_session_state_is_small() {
        use super::super::{chap, pap};
        use core::mem::size_of;
        let sizes = [
            ("PapPeer", size_of::<pap::PapPeer>()),
            ("PapAuthenticator", size_of::<pap::PapAuthenticator>()),
            ("ChapPeer", size_of::<chap::ChapPeer>()),
            ("ChapAuthenticator", size_of::<chap::ChapAuthenticator>()),
        ];
        for (name, size) in sizes {
            println!("size_of::<{name}>() = {size}");
            assert!(size <= 128, "{name} is {size} octets");
        }
    }
}
