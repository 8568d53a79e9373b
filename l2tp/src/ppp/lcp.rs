//! LCP (RFC 1661 §5, §6) on the automaton: MRU, Authentication-Protocol, Magic-Number with
//! loopback detection, PFC and ACFC; Protocol-Reject, Echo and Discard.
//!
//! ```text
//! option          type  length  value
//! MRU               1     4     u16
//! Auth-Protocol     3     ≥4    u16 protocol (c023 PAP, c223 CHAP + 1 octet algorithm, 5 = MD5)
//! Magic-Number      5     6     u32, never 0
//! PFC               7     2
//! ACFC              8     2
//! ```

use super::frame::{self, protocol, push_option};
use super::fsm::{
    options, Events, Extra, Fsm, FsmEvent, Judgement, Negotiator, Refusal, DEFAULT_MRU,
};
use super::PacketRepr;
use crate::malformed::BadValue;
use crate::seed::splitmix64;

#[cfg(test)]
mod tests;

/// LCP option types (RFC 1661 §6, IANA PPP LCP configuration option types).
pub mod option_type {
    pub const MRU: u8 = 1;
    pub const AUTHENTICATION_PROTOCOL: u8 = 3;
    pub const MAGIC_NUMBER: u8 = 5;
    pub const PFC: u8 = 7;
    pub const ACFC: u8 = 8;
}

/// LCP codes past the seven the automaton knows (RFC 1661 §5.7, §5.8, §5.9).
pub mod lcp_code {
    pub const PROTOCOL_REJECT: u8 = 8;
    pub const ECHO_REQUEST: u8 = 9;
    pub const ECHO_REPLY: u8 = 10;
    pub const DISCARD_REQUEST: u8 = 11;
}

/// The smallest MRU we take from a peer (as pppd): below it an IPCP exchange hardly fits.
pub const MIN_MRU: u16 = 128;

/// CHAP's algorithm number for MD5 (RFC 1994 §3).
pub const CHAP_MD5: u8 = 5;

/// The protocol of an Authentication-Protocol option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthProtocol {
    /// PAP (RFC 1334), c023.
    Pap,
    /// CHAP (RFC 1994), c223, with its algorithm (5 = MD5).
    Chap { algorithm: u8 },
    /// Any other protocol; its data is not kept.
    Other(u16),
}

impl AuthProtocol {
    pub const CHAP_MD5: AuthProtocol = AuthProtocol::Chap {
        algorithm: CHAP_MD5,
    };

    /// The option value: the protocol, then CHAP's algorithm.
    fn value(&self) -> ([u8; 3], usize) {
        let (p, algorithm) = match *self {
            AuthProtocol::Pap => (protocol::PAP, None),
            AuthProtocol::Chap { algorithm } => (protocol::CHAP, Some(algorithm)),
            AuthProtocol::Other(p) => (p, None),
        };
        let [hi, lo] = p.to_be_bytes();
        match algorithm {
            Some(a) => ([hi, lo, a], 3),
            None => ([hi, lo, 0], 2),
        }
    }
}

/// Which authentication protocols we demand (as authenticator) or can do (as the peer).
/// Preference when there is a choice: CHAP-MD5, then PAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuthSet {
    pub pap: bool,
    pub chap_md5: bool,
}

impl AuthSet {
    pub const NONE: AuthSet = AuthSet {
        pap: false,
        chap_md5: false,
    };
    pub const PAP: AuthSet = AuthSet {
        pap: true,
        chap_md5: false,
    };
    pub const CHAP_MD5: AuthSet = AuthSet {
        pap: false,
        chap_md5: true,
    };
    pub const ANY: AuthSet = AuthSet {
        pap: true,
        chap_md5: true,
    };

    pub fn contains(&self, auth: AuthProtocol) -> bool {
        match auth {
            AuthProtocol::Pap => self.pap,
            AuthProtocol::Chap { algorithm } => self.chap_md5 && algorithm == CHAP_MD5,
            AuthProtocol::Other(_) => false,
        }
    }

    pub fn preferred(&self) -> Option<AuthProtocol> {
        if self.chap_md5 {
            Some(AuthProtocol::CHAP_MD5)
        } else if self.pap {
            Some(AuthProtocol::Pap)
        } else {
            None
        }
    }

    fn without(mut self, auth: AuthProtocol) -> AuthSet {
        match auth {
            AuthProtocol::Pap => self.pap = false,
            AuthProtocol::Chap { .. } => self.chap_md5 = false,
            AuthProtocol::Other(_) => {}
        }
        self
    }
}

/// One LCP Configuration Option, typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LcpOption<'a> {
    Mru(u16),
    AuthenticationProtocol(AuthProtocol),
    MagicNumber(u32),
    Pfc,
    Acfc,
    Unknown { kind: u8, data: &'a [u8] },
}

fn bad_length(field: &'static str) -> frame::Error {
    frame::Error::BadValue(BadValue {
        field,
        offset: 1,
        reason: "wrong option Length for its Type",
    })
}

impl<'a> LcpOption<'a> {
    /// Reads an option from its type and value (the octets after Length). A known type with
    /// the wrong length is an error naming the option; offsets count from the option's Type.
    pub fn parse(kind: u8, value: &'a [u8]) -> frame::Result<LcpOption<'a>> {
        use option_type::*;
        Ok(match kind {
            MRU => LcpOption::Mru(u16::from_be_bytes(
                value.try_into().map_err(|_| bad_length("LCP MRU"))?,
            )),
            AUTHENTICATION_PROTOCOL => {
                let err = || bad_length("LCP Authentication-Protocol");
                let (p, data) = value.split_first_chunk::<2>().ok_or_else(err)?;
                LcpOption::AuthenticationProtocol(match (u16::from_be_bytes(*p), data) {
                    (protocol::PAP, []) => AuthProtocol::Pap,
                    (protocol::CHAP, &[algorithm]) => AuthProtocol::Chap { algorithm },
                    (protocol::PAP | protocol::CHAP, _) => return Err(err()),
                    (other, _) => AuthProtocol::Other(other),
                })
            }
            MAGIC_NUMBER => LcpOption::MagicNumber(u32::from_be_bytes(
                value
                    .try_into()
                    .map_err(|_| bad_length("LCP Magic-Number"))?,
            )),
            PFC | ACFC if !value.is_empty() => return Err(bad_length("LCP PFC/ACFC")),
            PFC => LcpOption::Pfc,
            ACFC => LcpOption::Acfc,
            kind => LcpOption::Unknown { kind, data: value },
        })
    }

    pub fn kind(&self) -> u8 {
        use option_type::*;
        match self {
            LcpOption::Mru(_) => MRU,
            LcpOption::AuthenticationProtocol(_) => AUTHENTICATION_PROTOCOL,
            LcpOption::MagicNumber(_) => MAGIC_NUMBER,
            LcpOption::Pfc => PFC,
            LcpOption::Acfc => ACFC,
            LcpOption::Unknown { kind, .. } => *kind,
        }
    }

    /// Appends the option (type, length, value).
    pub fn emit(&self, out: &mut Vec<u8>) {
        let (value, len) = self.fixed_value();
        let value = match self {
            LcpOption::Unknown { data, .. } => data,
            _ => &value[..len],
        };
        push_option(out, self.kind(), value);
    }

    pub fn buffer_len(&self) -> usize {
        match self {
            LcpOption::Unknown { data, .. } => 2 + data.len(),
            _ => 2 + self.fixed_value().1,
        }
    }

    /// The value of a known option (empty for Unknown).
    fn fixed_value(&self) -> ([u8; 4], usize) {
        let mut value = [0u8; 4];
        let len = match self {
            LcpOption::Mru(mru) => {
                value[..2].copy_from_slice(&mru.to_be_bytes());
                2
            }
            LcpOption::AuthenticationProtocol(auth) => {
                let (v, len) = auth.value();
                value[..3].copy_from_slice(&v);
                len
            }
            LcpOption::MagicNumber(magic) => {
                value.copy_from_slice(&magic.to_be_bytes());
                4
            }
            LcpOption::Pfc | LcpOption::Acfc | LcpOption::Unknown { .. } => 0,
        };
        (value, len)
    }
}

/// What LCP asks for and accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LcpConfig {
    /// Our MRU: requested only when it is not the default 1500.
    pub mru: u16,
    /// Authentication we demand of the peer (we are the authenticator); none by default.
    pub authenticate: AuthSet,
    /// Authentication we can do when the peer demands it.
    pub accept: AuthSet,
    /// Seed of our Magic-Numbers (the core has no entropy of its own).
    pub magic_seed: u64,
    /// Ask for and accept Protocol-Field-Compression.
    pub pfc: bool,
    /// Ask for and accept Address-and-Control-Field-Compression.
    pub acfc: bool,
}

impl Default for LcpConfig {
    fn default() -> LcpConfig {
        LcpConfig {
            mru: DEFAULT_MRU,
            authenticate: AuthSet::NONE,
            accept: AuthSet::ANY,
            magic_seed: 0,
            pfc: false,
            acfc: false,
        }
    }
}

/// What LCP agreed, both ways; read it once Opened ([`Fsm::<Lcp>::negotiated`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LcpNegotiated {
    /// What the peer receives: the largest frame we may send it.
    pub peer_mru: u16,
    /// What we receive, as the peer acked it.
    pub our_mru: u16,
    /// Authentication the peer demands of us.
    pub peer_auth: Option<AuthProtocol>,
    /// Authentication we demand of the peer.
    pub our_auth: Option<AuthProtocol>,
    /// Our Magic-Number; 0 when the peer rejected it.
    pub our_magic: u32,
    /// The peer's Magic-Number; 0 when it sent none.
    pub peer_magic: u32,
    /// The peer asked for PFC / ACFC and we acked: we may compress what we send.
    pub peer_pfc: bool,
    pub peer_acfc: bool,
    /// We asked for PFC / ACFC and the peer acked: it may compress what it sends us.
    pub our_pfc: bool,
    pub our_acfc: bool,
}

/// The LCP negotiator: our request's state, and what the peer's last request said.
#[derive(Debug, Clone)]
pub struct Lcp {
    config: LcpConfig,
    rng: u64,
    // Our Configure-Request: 0 / None / false is "not sent".
    mru: u16,
    auth: Option<AuthProtocol>,
    /// Authentication protocols not yet refused by the peer in this negotiation.
    auth_left: AuthSet,
    magic: u32,
    pfc: bool,
    acfc: bool,
    /// The Magic-Number we last suggested in a Nak (§6.4 loopback test).
    nak_magic: u32,
    loopbacks: u16,
    echo_rejected: bool,
    peer: PeerRequest,
}

/// The peer's last Configure-Request, as we judged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PeerRequest {
    mru: u16,
    auth: Option<AuthProtocol>,
    magic: u32,
    pfc: bool,
    acfc: bool,
}

impl Default for PeerRequest {
    fn default() -> PeerRequest {
        PeerRequest {
            mru: DEFAULT_MRU,
            auth: None,
            magic: 0,
            pfc: false,
            acfc: false,
        }
    }
}

impl Lcp {
    pub fn new(config: LcpConfig) -> Lcp {
        let mut lcp = Lcp {
            config,
            rng: config.magic_seed,
            mru: 0,
            auth: None,
            auth_left: config.authenticate,
            magic: 0,
            pfc: false,
            acfc: false,
            nak_magic: 0,
            loopbacks: 0,
            echo_rejected: false,
            peer: PeerRequest::default(),
        };
        lcp.magic = lcp.random_magic();
        lcp.reset();
        lcp
    }

    pub fn config(&self) -> &LcpConfig {
        &self.config
    }

    /// Our current Magic-Number (0 when the peer rejected it).
    pub fn magic(&self) -> u32 {
        self.magic
    }

    /// How often the peer's Magic-Number was ours (§6.4): a looped-back link.
    pub fn loopbacks(&self) -> u16 {
        self.loopbacks
    }

    /// What both requests hold; meaningful once the automaton is Opened.
    pub fn negotiated(&self) -> LcpNegotiated {
        LcpNegotiated {
            peer_mru: self.peer.mru,
            our_mru: if self.mru == 0 { DEFAULT_MRU } else { self.mru },
            peer_auth: self.peer.auth,
            our_auth: self.auth,
            our_magic: self.magic,
            peer_magic: self.peer.magic,
            peer_pfc: self.peer.pfc,
            peer_acfc: self.peer.acfc,
            our_pfc: self.pfc,
            our_acfc: self.acfc,
        }
    }

    fn random_magic(&mut self) -> u32 {
        loop {
            let magic = splitmix64(&mut self.rng) as u32;
            if magic != 0 && magic != self.magic {
                return magic;
            }
        }
    }

    fn judge_option(&mut self, kind: u8, value: &[u8], j: &mut Judgement, events: &mut Events) {
        let Ok(option) = LcpOption::parse(kind, value) else {
            return j.reject(kind, value);
        };
        match option {
            LcpOption::Mru(mru) if mru < MIN_MRU => j.nak(kind, value, &MIN_MRU.to_be_bytes()),
            LcpOption::Mru(mru) => self.peer.mru = mru,
            LcpOption::AuthenticationProtocol(auth) if self.config.accept.contains(auth) => {
                self.peer.auth = Some(auth)
            }
            // §6.2: Nak with a protocol we can do; Reject when we can do none.
            LcpOption::AuthenticationProtocol(_) => match self.config.accept.preferred() {
                Some(ours) => {
                    let (suggested, len) = ours.value();
                    j.nak(kind, value, &suggested[..len]);
                }
                None => j.reject(kind, value),
            },
            LcpOption::MagicNumber(magic) if magic == 0 || magic == self.magic => {
                if magic != 0 {
                    // §6.4: maybe our own request looped back; a Nak with another number tells.
                    self.loopbacks = self.loopbacks.saturating_add(1);
                    events.push(FsmEvent::LoopbackSuspected);
                }
                self.nak_magic = self.random_magic();
                j.nak(kind, value, &self.nak_magic.to_be_bytes());
            }
            LcpOption::MagicNumber(magic) => self.peer.magic = magic,
            LcpOption::Pfc if self.config.pfc => self.peer.pfc = true,
            LcpOption::Acfc if self.config.acfc => self.peer.acfc = true,
            LcpOption::Pfc | LcpOption::Acfc | LcpOption::Unknown { .. } => j.reject(kind, value),
        }
    }

    /// The peer naked our Authentication-Protocol, suggesting `suggested`.
    fn auth_naked(&mut self, suggested: Option<AuthProtocol>) -> Result<(), Refusal> {
        let Some(current) = self.auth else {
            // A hint to authenticate it: we are not its authenticator, so nothing changes.
            return Ok(());
        };
        self.auth_left = self.auth_left.without(current);
        self.auth = match suggested {
            Some(s) if self.auth_left.contains(s) => Some(s),
            _ => self.auth_left.preferred(),
        };
        match self.auth {
            Some(_) => Ok(()),
            None => Err(Refusal {
                option: option_type::AUTHENTICATION_PROTOCOL,
                reason: "the peer will not authenticate with a protocol we allow",
            }),
        }
    }
}

impl Negotiator for Lcp {
    const PROTOCOL: u16 = protocol::LCP;

    fn reset(&mut self) {
        self.mru = if self.config.mru == DEFAULT_MRU {
            0
        } else {
            self.config.mru
        };
        self.auth_left = self.config.authenticate;
        self.auth = self.auth_left.preferred();
        if self.magic == 0 {
            self.magic = self.random_magic();
        }
        self.pfc = self.config.pfc;
        self.acfc = self.config.acfc;
    }

    fn emit_request(&self, out: &mut Vec<u8>) {
        if self.mru != 0 {
            LcpOption::Mru(self.mru).emit(out);
        }
        if let Some(auth) = self.auth {
            LcpOption::AuthenticationProtocol(auth).emit(out);
        }
        if self.magic != 0 {
            LcpOption::MagicNumber(self.magic).emit(out);
        }
        if self.pfc {
            LcpOption::Pfc.emit(out);
        }
        if self.acfc {
            LcpOption::Acfc.emit(out);
        }
    }

    fn judge_request(&mut self, data: &[u8], judgement: &mut Judgement, events: &mut Events) {
        self.peer = PeerRequest::default();
        for (kind, value) in options(data) {
            self.judge_option(kind, value, judgement, events);
        }
    }

    fn on_nak(&mut self, data: &[u8], treat_as_reject: bool) -> Result<(), Refusal> {
        if treat_as_reject {
            return self.on_reject(data);
        }
        for (kind, value) in options(data) {
            match LcpOption::parse(kind, value) {
                Ok(LcpOption::Mru(mru)) if (MIN_MRU..=self.config.mru).contains(&mru) => {
                    self.mru = mru
                }
                Ok(LcpOption::AuthenticationProtocol(auth)) => self.auth_naked(Some(auth))?,
                // §6.4: whether or not the Nak proves a loop, a new number is chosen.
                Ok(LcpOption::MagicNumber(magic)) if self.magic != 0 => {
                    if magic == self.nak_magic && magic != 0 {
                        self.loopbacks = self.loopbacks.saturating_add(1);
                    }
                    self.magic = self.random_magic();
                }
                // PFC and ACFC have no value to suggest: a Nak of them is a refusal.
                Ok(LcpOption::Pfc) => self.pfc = false,
                Ok(LcpOption::Acfc) => self.acfc = false,
                Err(_) if kind == option_type::AUTHENTICATION_PROTOCOL => self.auth_naked(None)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn on_reject(&mut self, data: &[u8]) -> Result<(), Refusal> {
        for (kind, _) in options(data) {
            match kind {
                option_type::MRU => self.mru = 0,
                option_type::AUTHENTICATION_PROTOCOL if self.auth.is_some() => {
                    return Err(Refusal {
                        option: kind,
                        reason: "the peer refuses to authenticate",
                    })
                }
                // §6.4: as if it had been acked; the peer uses no Magic-Number.
                option_type::MAGIC_NUMBER => self.magic = 0,
                option_type::PFC => self.pfc = false,
                option_type::ACFC => self.acfc = false,
                _ => {}
            }
        }
        Ok(())
    }

    fn extra(&mut self, packet: PacketRepr<'_>, opened: bool, events: &mut Events) -> Extra {
        use lcp_code::*;
        if !matches!(
            packet.code,
            PROTOCOL_REJECT | ECHO_REQUEST | ECHO_REPLY | DISCARD_REQUEST
        ) {
            return Extra::Unknown;
        }
        if !opened {
            // §5.7, §5.8: these only mean something in Opened.
            return Extra::Discard("LCP Protocol-Reject, Echo or Discard outside Opened");
        }
        if packet.code == PROTOCOL_REJECT {
            let Some(rejected) = packet.data.first_chunk::<2>() else {
                return Extra::Discard("Protocol-Reject without a protocol");
            };
            let rejected = u16::from_be_bytes(*rejected);
            events.push(FsmEvent::ProtocolRejected { protocol: rejected });
            // §4.3: rejecting LCP itself is catastrophic.
            return Extra::Reject {
                catastrophic: rejected == protocol::LCP,
            };
        }
        let Some((magic, rest)) = packet.data.split_first_chunk::<4>() else {
            return Extra::Discard("LCP Echo or Discard without a Magic-Number");
        };
        let magic = u32::from_be_bytes(*magic);
        if magic != 0 && magic == self.magic {
            self.loopbacks = self.loopbacks.saturating_add(1);
            events.push(FsmEvent::LoopbackSuspected);
        }
        let reply = match packet.code {
            ECHO_REQUEST => {
                // §5.8: the reply carries our Magic-Number; the data comes back as sent.
                let mut data = Vec::with_capacity(4 + rest.len());
                data.extend_from_slice(&self.magic.to_be_bytes());
                data.extend_from_slice(rest);
                data.truncate(usize::from(self.peer.mru).saturating_sub(4));
                Some((ECHO_REPLY, data.into()))
            }
            ECHO_REPLY => {
                events.push(FsmEvent::EchoReply {
                    identifier: packet.identifier,
                    magic,
                });
                None
            }
            _ => None,
        };
        Extra::Echo { reply }
    }

    fn code_rejected(&mut self, code: u8) {
        if code == lcp_code::ECHO_REQUEST {
            self.echo_rejected = true;
        }
    }

    fn peer_mru(&self) -> u16 {
        self.peer.mru
    }
}

/// The data of a Protocol-Reject (§5.7) for a frame of a protocol we do not speak: the
/// protocol, then its information, cut so the LCP packet fits the peer's MRU.
pub fn protocol_reject_data(rejected: u16, info: &[u8], peer_mru: u16) -> Vec<u8> {
    let room = usize::from(peer_mru).saturating_sub(frame::PACKET_HEADER_LEN + 2);
    let mut data = Vec::with_capacity(2 + info.len().min(room));
    data.extend_from_slice(&rejected.to_be_bytes());
    data.extend_from_slice(info.get(..room).unwrap_or(info));
    data
}

impl Fsm<Lcp> {
    /// What LCP agreed, once Opened.
    pub fn negotiated(&self) -> Option<LcpNegotiated> {
        self.is_opened().then(|| self.negotiator().negotiated())
    }

    /// Queues an Echo-Request with our Magic-Number and `data`; its Identifier, or `None`
    /// when not Opened or the peer Code-Rejected echoes.
    pub fn send_echo_request(&mut self, data: &[u8]) -> Option<u8> {
        if self.negotiator().echo_rejected {
            return None;
        }
        let mut packet = self.negotiator().magic.to_be_bytes().to_vec();
        packet.extend_from_slice(data);
        self.send_extra(lcp_code::ECHO_REQUEST, &packet)
    }

    /// Queues a Protocol-Reject of a frame whose protocol we do not speak (§5.7: only in
    /// Opened); its Identifier.
    pub fn send_protocol_reject(&mut self, rejected: u16, info: &[u8]) -> Option<u8> {
        let data = protocol_reject_data(rejected, info, self.negotiator().peer.mru);
        self.send_extra(lcp_code::PROTOCOL_REJECT, &data)
    }
}
