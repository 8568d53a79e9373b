//! Load reports, the patent's "load status messages": each endpoint tells the master how loaded
//! it is, and which Tunnel IDs it hands out, once a second or so over UDP on the LAN.
//!
//! A report travels in a versioned envelope sealed with HMAC-SHA256 under a key the cluster
//! shares, so a forged report cannot steer dispatch; its `sequence` lets the master refuse a
//! replayed one.
//!
//! ```text
//! envelope: magic "L2KR" (4) | version 2 (1) | body | HMAC-SHA256 tag (32) over all before it
//! body:     sequence u64 | name length u16 | name (UTF-8) | LAN address (4)
//!           | global flag u8 (0 or 1) [| global address (4)] | tunnels u32 | sessions u32
//!           | capacity u32 | state u8 (0 in service, 1 draining, 2 LNS not answering)
//!           | SCCRQs received u64 | block count u16 | blocks: (first u16, last u16)*
//! ```
//!
//! Version 2 added the SCCRQs received (the master subtracts them from the SCCRQs it sent to
//! know exactly how many are still on their way), state 2, the blocks in the ack's view and the
//! tunnel claims; a message of another version is refused as `BadVersion`, naming it.
//!
//! Every integer is big-endian. The tag is checked (in constant time) before the body is read,
//! so bytes from anyone without the key never reach the body parser.
//!
//! The master answers each report it accepts with a [`ReportAck`], sealed the same way under
//! its own magic, sent back to the address the report came from (the endpoint's report socket:
//! "L2" at the start of a datagram could pass for an L2TP header, so acks never go to port
//! 1701). An ack is the endpoints' proof that the master lives, and it carries the master's
//! view of the cluster, from which every endpoint computes the same takeover order
//! ([`crate::takeover`]).
//!
//! ```text
//! ack envelope: magic "L2KA" (4) | version 2 (1) | body | HMAC-SHA256 tag (32)
//! ack body:     sequence u64 | report sequence u64 | master name length u16 | master name
//!               | view count u16 | view: (name length u16 | name | LAN address (4)
//!               | flags u8 (bit 0: in service; the others 0)
//!               | block count u16 | blocks: (first u16, last u16)*)*
//! ```
//!
//! The report sequence names the report (or tunnel claims) acknowledged: an endpoint takes an
//! ack only for a message it sent recently, so a replayed old ack cannot fake a live master.
//! The view's blocks let an endpoint that takes the master over route the tunnels of the
//! others from its first packet.
//!
//! An agent (beside an LNS we did not write, whose Tunnel IDs are random) tells the master at
//! once which tunnels its LNS just accepted, so that later packets to the cluster address reach
//! it; those go by (initiator address, port, Tunnel ID). The master acks them like reports.
//!
//! ```text
//! claims envelope: magic "L2KT" (4) | version 2 (1) | body | HMAC-SHA256 tag (32)
//! claims body:     sequence u64 | name length u16 | name | count u16
//!                  | claims: (op u8 (0 claim, 1 release) | initiator address (4)
//!                  | initiator port u16 | Tunnel ID u16)*
//! ```

use std::net::Ipv4Addr;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The UDP port endpoints send their reports to, on the master's LAN address.
pub const REPORT_PORT: u16 = 1702;

const MAGIC: [u8; 4] = *b"L2KR";
const ACK_MAGIC: [u8; 4] = *b"L2KA";
const CLAIMS_MAGIC: [u8; 4] = *b"L2KT";
/// The version of every sealed cluster message this build speaks.
pub const VERSION: u8 = 2;
const PREAMBLE_LEN: usize = MAGIC.len() + 1;
const TAG_LEN: usize = 32;

/// The longest endpoint name `open` accepts, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// The most Tunnel ID blocks one report may carry.
pub const MAX_BLOCKS: usize = 1024;
/// The most endpoints one ack's view may list (512 of the longest names still fit a datagram).
pub const MAX_VIEW: usize = 512;
/// The most Tunnel ID blocks one view entry may carry (512 entries of 16 still fit).
pub const MAX_VIEW_BLOCKS: usize = 16;
/// The most tunnel claims one message carries: 1,200 bytes of claims fit a 1,500-byte MTU.
pub const MAX_CLAIMS: usize = 128;

type HmacSha256 = Hmac<Sha256>;

/// What the endpoint says of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointState {
    InService,
    /// Takes no new tunnels, keeps the ones it has (for example before a restart).
    Draining,
    /// An agent's LNS left SCCRQs unanswered: no new tunnels until it answers again.
    Unresponsive,
}

impl EndpointState {
    fn wire(self) -> u8 {
        match self {
            EndpointState::InService => 0,
            EndpointState::Draining => 1,
            EndpointState::Unresponsive => 2,
        }
    }
}

/// One endpoint's load status message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadReport {
    /// The endpoint's name, e.g. "te1": its identity in the cluster.
    pub endpoint: String,
    /// Where the master forwards to on the LAN; must be a unicast address.
    pub lan_addr: Ipv4Addr,
    /// FIG 4: the endpoint's own public address, from which it answers SCCRQs.
    pub global_addr: Option<Ipv4Addr>,
    pub tunnels: u32,
    pub sessions: u32,
    /// The most tunnels the endpoint takes.
    pub capacity: u32,
    pub state: EndpointState,
    /// Every SCCRQ that reached the endpoint since it started, retransmissions included: what
    /// the master sent it less this is what is still on its way.
    pub sccrq_received: u64,
    /// Inclusive blocks of the Tunnel IDs this endpoint assigns: sorted, disjoint, never 0, and
    /// unique cluster-wide, so the master can route by the L2TP header's Tunnel ID. Empty for
    /// an LNS with an agent: its tunnels are claimed one by one.
    pub tunnel_ids: Vec<(u16, u16)>,
    /// Strictly increasing per endpoint: the master refuses a report that does not advance it.
    /// An endpoint that restarts must not start over; seeding it from the wall clock (e.g.
    /// microseconds since the Unix epoch) keeps it increasing across restarts.
    pub sequence: u64,
}

/// Why `open` refused a report (or `open_ack` an ack).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ReportError {
    #[error("sealed cluster message truncated: {have} bytes, need at least {need}")]
    Truncated { need: usize, have: usize },
    #[error("not a sealed cluster message of this kind (bad magic)")]
    BadMagic,
    #[error("sealed cluster message version {0} is not supported (we speak {VERSION})")]
    BadVersion(u8),
    #[error(
        "sealed cluster message tag does not verify: forged, corrupted or sealed with another key"
    )]
    BadTag,
    #[error("sealed cluster message body: {field} at body byte {offset}: {reason}")]
    Malformed {
        field: &'static str,
        offset: usize,
        reason: &'static str,
    },
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length (long keys are hashed), so this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

/// Encodes and seals a report. A report that breaks `open`'s rules (name too long, blocks out
/// of order, ...) is sealed as it is and refused by `open` as `Malformed`.
pub fn seal(report: &LoadReport, key: &[u8]) -> Vec<u8> {
    let name = report.endpoint.as_bytes();
    let mut out = Vec::with_capacity(
        PREAMBLE_LEN
            + 8
            + 2
            + name.len()
            + 4
            + 5
            + 12
            + 1
            + 8
            + 2
            + 4 * report.tunnel_ids.len()
            + TAG_LEN,
    );
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&report.sequence.to_be_bytes());
    // An over-long field keeps its true bytes under a clamped length: `open` then finds
    // trailing bytes and refuses it, rather than accepting a silently cut name.
    out.extend_from_slice(&clamp_u16(name.len()).to_be_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(&report.lan_addr.octets());
    match report.global_addr {
        Some(addr) => {
            out.push(1);
            out.extend_from_slice(&addr.octets());
        }
        None => out.push(0),
    }
    out.extend_from_slice(&report.tunnels.to_be_bytes());
    out.extend_from_slice(&report.sessions.to_be_bytes());
    out.extend_from_slice(&report.capacity.to_be_bytes());
    out.push(report.state.wire());
    out.extend_from_slice(&report.sccrq_received.to_be_bytes());
    put_blocks(&mut out, &report.tunnel_ids);
    seal_tail(out, key)
}

fn put_blocks(out: &mut Vec<u8>, blocks: &[(u16, u16)]) {
    out.extend_from_slice(&clamp_u16(blocks.len()).to_be_bytes());
    for &(first, last) in blocks {
        out.extend_from_slice(&first.to_be_bytes());
        out.extend_from_slice(&last.to_be_bytes());
    }
}

/// Appends the tag over everything before it.
fn seal_tail(mut out: Vec<u8>, key: &[u8]) -> Vec<u8> {
    let mut mac = mac(key);
    mac.update(&out);
    out.extend_from_slice(&mac.finalize().into_bytes());
    out
}

fn clamp_u16(len: usize) -> u16 {
    u16::try_from(len).unwrap_or(u16::MAX)
}

/// Checks the envelope and the tag, then reads the body. Never panics, whatever the bytes.
pub fn open(bytes: &[u8], key: &[u8]) -> Result<LoadReport, ReportError> {
    Body::new(open_envelope(bytes, key, &MAGIC)?).parse()
}

/// The authenticated body of a sealed message with `magic`.
fn open_envelope<'a>(
    bytes: &'a [u8],
    key: &[u8],
    magic: &[u8; 4],
) -> Result<&'a [u8], ReportError> {
    let min = PREAMBLE_LEN + TAG_LEN;
    if bytes.len() < min {
        // A short prefix of something that is not this kind of message says so first.
        if !magic.starts_with(&bytes[..bytes.len().min(magic.len())]) {
            return Err(ReportError::BadMagic);
        }
        return Err(ReportError::Truncated {
            need: min,
            have: bytes.len(),
        });
    }
    if bytes[..magic.len()] != magic[..] {
        return Err(ReportError::BadMagic);
    }
    if bytes[magic.len()] != VERSION {
        return Err(ReportError::BadVersion(bytes[magic.len()]));
    }
    let (signed, tag) = bytes.split_at(bytes.len() - TAG_LEN);
    let mut mac = mac(key);
    mac.update(signed);
    mac.verify_slice(tag).map_err(|_| ReportError::BadTag)?;
    Ok(&signed[PREAMBLE_LEN..])
}

/// One endpoint in a master's view of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewEntry {
    pub name: String,
    pub lan_addr: Ipv4Addr,
    /// Takes new tunnels: reports fresh, not draining, not deactivated. Only these may take
    /// over the master.
    pub in_service: bool,
    /// The Tunnel ID blocks of its last report (at most [`MAX_VIEW_BLOCKS`]).
    pub tunnel_ids: Vec<(u16, u16)>,
}

/// The master's answer to an accepted load report: "I live, and this is the cluster I see".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportAck {
    /// The master's name: "master" for the one the cluster started with, an endpoint's name
    /// for one that took over.
    pub master: String,
    /// Strictly increasing per master (wall-clock seeded, as report sequences are).
    pub sequence: u64,
    /// The sequence of the report acknowledged.
    pub report_sequence: u64,
    /// The endpoints the master knows, in name order (strictly increasing, so unique).
    pub view: Vec<ViewEntry>,
}

/// Encodes and seals an ack; like `seal`, an ack that breaks `open_ack`'s rules is sealed as it
/// is and refused by `open_ack`.
pub fn seal_ack(ack: &ReportAck, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        PREAMBLE_LEN
            + 16
            + 2
            + ack.master.len()
            + 2
            + ack
                .view
                .iter()
                .map(|e| 9 + e.name.len() + 4 * e.tunnel_ids.len())
                .sum::<usize>()
            + TAG_LEN,
    );
    out.extend_from_slice(&ACK_MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&ack.sequence.to_be_bytes());
    out.extend_from_slice(&ack.report_sequence.to_be_bytes());
    out.extend_from_slice(&clamp_u16(ack.master.len()).to_be_bytes());
    out.extend_from_slice(ack.master.as_bytes());
    out.extend_from_slice(&clamp_u16(ack.view.len()).to_be_bytes());
    for entry in &ack.view {
        out.extend_from_slice(&clamp_u16(entry.name.len()).to_be_bytes());
        out.extend_from_slice(entry.name.as_bytes());
        out.extend_from_slice(&entry.lan_addr.octets());
        out.push(u8::from(entry.in_service));
        put_blocks(&mut out, &entry.tunnel_ids);
    }
    seal_tail(out, key)
}

/// Checks an ack's envelope and tag, then reads its body. Never panics, whatever the bytes.
pub fn open_ack(bytes: &[u8], key: &[u8]) -> Result<ReportAck, ReportError> {
    Body::new(open_envelope(bytes, key, &ACK_MAGIC)?).parse_ack()
}

/// Whether a tunnel claim takes the tunnel or gives it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimOp {
    /// The LNS just accepted this tunnel (its SCCRP went out).
    Claim,
    /// The tunnel ended (StopCCN, or silence): the master may forget it.
    Release,
}

/// One tunnel of an agent's LNS, as the initiator addresses it: packets from `initiator`
/// carrying `tunnel_id` (the ID the LNS assigned) belong to the claiming endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct TunnelClaim {
    pub op: ClaimOp,
    pub initiator: std::net::SocketAddrV4,
    pub tunnel_id: u16,
}

/// An agent's claims, sealed like a report; `sequence` rises per endpoint, apart from its
/// reports' sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TunnelClaims {
    pub endpoint: String,
    pub sequence: u64,
    /// At most [`MAX_CLAIMS`].
    pub claims: Vec<TunnelClaim>,
}

/// Encodes and seals tunnel claims; as for `seal`, invalid claims are sealed as they are and
/// refused by `open_claims`.
pub fn seal_claims(claims: &TunnelClaims, key: &[u8]) -> Vec<u8> {
    let name = claims.endpoint.as_bytes();
    let mut out =
        Vec::with_capacity(PREAMBLE_LEN + 12 + name.len() + 9 * claims.claims.len() + TAG_LEN);
    out.extend_from_slice(&CLAIMS_MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&claims.sequence.to_be_bytes());
    out.extend_from_slice(&clamp_u16(name.len()).to_be_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(&clamp_u16(claims.claims.len()).to_be_bytes());
    for claim in &claims.claims {
        out.push(match claim.op {
            ClaimOp::Claim => 0,
            ClaimOp::Release => 1,
        });
        out.extend_from_slice(&claim.initiator.ip().octets());
        out.extend_from_slice(&claim.initiator.port().to_be_bytes());
        out.extend_from_slice(&claim.tunnel_id.to_be_bytes());
    }
    seal_tail(out, key)
}

/// Checks a claims message's envelope and tag, then reads its body. Never panics.
pub fn open_claims(bytes: &[u8], key: &[u8]) -> Result<TunnelClaims, ReportError> {
    Body::new(open_envelope(bytes, key, &CLAIMS_MAGIC)?).parse_claims()
}

/// Which sealed message a datagram on the report port says it is (by its magic alone: nothing
/// is verified yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Report,
    Ack,
    Claims,
}

pub fn message_kind(bytes: &[u8]) -> Option<MessageKind> {
    match bytes.get(..4)? {
        magic if magic == MAGIC => Some(MessageKind::Report),
        magic if magic == ACK_MAGIC => Some(MessageKind::Ack),
        magic if magic == CLAIMS_MAGIC => Some(MessageKind::Claims),
        _ => None,
    }
}

/// A cursor over the authenticated body; every read is bounds-checked.
struct Body<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Body<'a> {
    fn new(bytes: &'a [u8]) -> Body<'a> {
        Body { bytes, at: 0 }
    }

    fn malformed(&self, field: &'static str, reason: &'static str) -> ReportError {
        ReportError::Malformed {
            field,
            offset: self.at,
            reason,
        }
    }

    fn take(&mut self, field: &'static str, len: usize) -> Result<&'a [u8], ReportError> {
        let end = self.at.saturating_add(len);
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or_else(|| self.malformed(field, "body ends inside it"))?;
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], ReportError> {
        let slice = self.take(field, N)?;
        let mut out = [0; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, ReportError> {
        Ok(self.array::<1>(field)?[0])
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, ReportError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, ReportError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, ReportError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }
    fn addr(&mut self, field: &'static str) -> Result<Ipv4Addr, ReportError> {
        Ok(Ipv4Addr::from(self.array::<4>(field)?))
    }

    /// A name: length u16 (1 to [`MAX_NAME_LEN`]) and UTF-8 bytes.
    fn name(&mut self, length: &'static str, field: &'static str) -> Result<String, ReportError> {
        let name_len = usize::from(self.u16(length)?);
        if name_len == 0 || name_len > MAX_NAME_LEN {
            return Err(self.malformed(length, "must be 1 to 64 bytes"));
        }
        let name_at = self.at;
        let name = self.take(field, name_len)?;
        Ok(core::str::from_utf8(name)
            .map_err(|_| ReportError::Malformed {
                field,
                offset: name_at,
                reason: "not UTF-8",
            })?
            .to_owned())
    }

    fn parse_ack(mut self) -> Result<ReportAck, ReportError> {
        let sequence = self.u64("sequence")?;
        let report_sequence = self.u64("report sequence")?;
        let master = self.name("master name length", "master name")?;
        let count = usize::from(self.u16("view count")?);
        if count > MAX_VIEW {
            return Err(self.malformed("view count", "more than 512 endpoints"));
        }
        let mut view: Vec<ViewEntry> = Vec::with_capacity(count);
        for _ in 0..count {
            let at = self.at;
            let name = self.name("view name length", "view name")?;
            if view.last().is_some_and(|prev| prev.name >= name) {
                return Err(ReportError::Malformed {
                    field: "view name",
                    offset: at,
                    reason: "names must be in strictly increasing order",
                });
            }
            let lan_at = self.at;
            let lan_addr = self.addr("view LAN address")?;
            if !is_unicast(lan_addr) {
                return Err(ReportError::Malformed {
                    field: "view LAN address",
                    offset: lan_at,
                    reason: "not a unicast address",
                });
            }
            let in_service = match self.u8("view flags")? {
                0 => false,
                1 => true,
                _ => return Err(self.malformed("view flags", "only bit 0 may be set")),
            };
            let tunnel_ids = self.blocks("view block count", MAX_VIEW_BLOCKS)?;
            view.push(ViewEntry {
                name,
                lan_addr,
                in_service,
                tunnel_ids,
            });
        }
        if self.at != self.bytes.len() {
            return Err(self.malformed("body", "trailing bytes after the view"));
        }
        Ok(ReportAck {
            master,
            sequence,
            report_sequence,
            view,
        })
    }

    fn parse(mut self) -> Result<LoadReport, ReportError> {
        let sequence = self.u64("sequence")?;
        let endpoint = self.name("name length", "name")?;
        let lan_at = self.at;
        let lan_addr = self.addr("LAN address")?;
        if !is_unicast(lan_addr) {
            return Err(ReportError::Malformed {
                field: "LAN address",
                offset: lan_at,
                reason: "not a unicast address",
            });
        }
        let global_addr = match self.u8("global address flag")? {
            0 => None,
            1 => Some(self.addr("global address")?),
            _ => return Err(self.malformed("global address flag", "must be 0 or 1")),
        };
        let tunnels = self.u32("tunnels")?;
        let sessions = self.u32("sessions")?;
        let capacity = self.u32("capacity")?;
        let state = match self.u8("state")? {
            0 => EndpointState::InService,
            1 => EndpointState::Draining,
            2 => EndpointState::Unresponsive,
            _ => {
                return Err(self.malformed(
                    "state",
                    "must be 0 (in service), 1 (draining) or 2 (LNS not answering)",
                ))
            }
        };
        let sccrq_received = self.u64("SCCRQs received")?;
        let tunnel_ids = self.blocks("block count", MAX_BLOCKS)?;
        if self.at != self.bytes.len() {
            return Err(self.malformed("body", "trailing bytes after the last block"));
        }
        Ok(LoadReport {
            endpoint,
            lan_addr,
            global_addr,
            tunnels,
            sessions,
            capacity,
            state,
            sccrq_received,
            tunnel_ids,
            sequence,
        })
    }

    fn parse_claims(mut self) -> Result<TunnelClaims, ReportError> {
        let sequence = self.u64("sequence")?;
        let endpoint = self.name("name length", "name")?;
        let count = usize::from(self.u16("claim count")?);
        if count > MAX_CLAIMS {
            return Err(self.malformed("claim count", "more than 128 claims"));
        }
        let mut claims = Vec::with_capacity(count);
        for _ in 0..count {
            let at = self.at;
            let bad = |field, reason| ReportError::Malformed {
                field,
                offset: at,
                reason,
            };
            let op = match self.u8("claim op")? {
                0 => ClaimOp::Claim,
                1 => ClaimOp::Release,
                _ => return Err(bad("claim op", "must be 0 (claim) or 1 (release)")),
            };
            let addr = self.addr("claim initiator address")?;
            let port = self.u16("claim initiator port")?;
            let tunnel_id = self.u16("claim Tunnel ID")?;
            if !is_unicast(addr) {
                return Err(bad("claim initiator address", "not a unicast address"));
            }
            if port == 0 {
                return Err(bad("claim initiator port", "port 0"));
            }
            if tunnel_id == 0 {
                return Err(bad(
                    "claim Tunnel ID",
                    "Tunnel ID 0 is reserved (RFC 2661 §3.1)",
                ));
            }
            claims.push(TunnelClaim {
                op,
                initiator: std::net::SocketAddrV4::new(addr, port),
                tunnel_id,
            });
        }
        if self.at != self.bytes.len() {
            return Err(self.malformed("body", "trailing bytes after the last claim"));
        }
        Ok(TunnelClaims {
            endpoint,
            sequence,
            claims,
        })
    }

    /// Tunnel ID blocks: a count (at most `max`), then sorted, disjoint, non-zero blocks.
    fn blocks(
        &mut self,
        count_field: &'static str,
        max: usize,
    ) -> Result<Vec<(u16, u16)>, ReportError> {
        let count = usize::from(self.u16(count_field)?);
        if count > max {
            return Err(self.malformed(count_field, "too many blocks"));
        }
        let mut tunnel_ids: Vec<(u16, u16)> = Vec::with_capacity(count);
        for _ in 0..count {
            let at = self.at;
            let first = self.u16("block first ID")?;
            let last = self.u16("block last ID")?;
            let bad = |reason| ReportError::Malformed {
                field: "Tunnel ID block",
                offset: at,
                reason,
            };
            if first == 0 {
                return Err(bad("Tunnel ID 0 is reserved (RFC 2661 §3.1)"));
            }
            if first > last {
                return Err(bad("first ID above last ID"));
            }
            if tunnel_ids.last().is_some_and(|&(_, prev)| first <= prev) {
                return Err(bad("blocks must be sorted and disjoint"));
            }
            tunnel_ids.push((first, last));
        }
        Ok(tunnel_ids)
    }
}

/// An address a packet can be forwarded to: not 0.0.0.0, broadcast or multicast.
fn is_unicast(addr: Ipv4Addr) -> bool {
    !(addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &[u8] = b"cluster-key";

    fn report() -> LoadReport {
        LoadReport {
            endpoint: "te1".into(),
            lan_addr: Ipv4Addr::new(198, 19, 0, 11),
            global_addr: Some(Ipv4Addr::new(198, 18, 0, 11)),
            tunnels: 17,
            sessions: 40,
            capacity: 1000,
            state: EndpointState::InService,
            sccrq_received: 0x1_0000_0001,
            tunnel_ids: vec![(0x1000, 0x1fff), (0x8000, 0x80ff)],
            sequence: 0x0102_0304_0506_0708,
        }
    }

    #[test]
    fn golden_bytes() {
        let report = LoadReport {
            endpoint: "te1".into(),
            lan_addr: Ipv4Addr::new(198, 19, 0, 11),
            global_addr: None,
            tunnels: 2,
            sessions: 3,
            capacity: 100,
            state: EndpointState::Draining,
            sccrq_received: 5,
            tunnel_ids: vec![(1, 0x00ff)],
            sequence: 7,
        };
        let sealed = seal(&report, KEY);
        let body: &[u8] = &[
            b'L', b'2', b'K', b'R', 2, // magic, version
            0, 0, 0, 0, 0, 0, 0, 7, // sequence
            0, 3, b't', b'e', b'1', // name
            198, 19, 0, 11, // LAN address
            0,  // no global address
            0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 100, // tunnels, sessions, capacity
            1,   // draining
            0, 0, 0, 0, 0, 0, 0, 5, // SCCRQs received
            0, 1, 0, 1, 0, 0xff, // one block 1..=255
        ];
        assert_eq!(&sealed[..body.len()], body);
        assert_eq!(sealed.len(), body.len() + TAG_LEN);
        let mut mac = mac(KEY);
        mac.update(body);
        assert_eq!(
            &sealed[body.len()..],
            mac.finalize().into_bytes().as_slice()
        );
        assert_eq!(open(&sealed, KEY), Ok(report));
    }

    #[test]
    fn round_trip() {
        let sealed = seal(&report(), KEY);
        assert_eq!(open(&sealed, KEY), Ok(report()));
    }

    #[test]
    fn wrong_key_and_every_flipped_byte_are_refused() {
        let sealed = seal(&report(), KEY);
        assert_eq!(open(&sealed, b"another key"), Err(ReportError::BadTag));
        for at in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[at] ^= 0x01;
            let expected = match at {
                0..=3 => ReportError::BadMagic,
                4 => ReportError::BadVersion(3),
                _ => ReportError::BadTag,
            };
            assert_eq!(open(&tampered, KEY), Err(expected), "byte {at}");
        }
    }

    #[test]
    fn envelope_errors() {
        let sealed = seal(&report(), KEY);
        assert_eq!(
            open(&sealed[..20], KEY),
            Err(ReportError::Truncated { need: 37, have: 20 })
        );
        assert_eq!(
            open(b"", KEY),
            Err(ReportError::Truncated { need: 37, have: 0 })
        );
        assert_eq!(open(b"HTTP/1.1", KEY), Err(ReportError::BadMagic));
        let mut v1 = sealed.clone();
        v1[4] = 1;
        assert_eq!(open(&v1, KEY), Err(ReportError::BadVersion(1)));
        assert_eq!(
            ReportError::BadVersion(1).to_string(),
            "sealed cluster message version 1 is not supported (we speak 2)"
        );
        // Cutting the tail moves the tag: a cut report never verifies.
        assert_eq!(
            open(&sealed[..sealed.len() - 1], KEY),
            Err(ReportError::BadTag)
        );
    }

    fn refused(report: &LoadReport) -> (&'static str, &'static str) {
        match open(&seal(report, KEY), KEY) {
            Err(ReportError::Malformed { field, reason, .. }) => (field, reason),
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn authentic_but_invalid_bodies_are_malformed() {
        let with = |f: fn(&mut LoadReport)| {
            let mut r = report();
            f(&mut r);
            r
        };
        assert_eq!(refused(&with(|r| r.endpoint.clear())).0, "name length");
        assert_eq!(
            refused(&with(|r| r.endpoint = "x".repeat(65))).0,
            "name length"
        );
        assert_eq!(
            refused(&with(|r| r.endpoint = "x".repeat(70_000))).0,
            "name length"
        );
        assert_eq!(
            refused(&with(|r| r.lan_addr = Ipv4Addr::UNSPECIFIED)).0,
            "LAN address"
        );
        assert_eq!(
            refused(&with(|r| r.lan_addr = Ipv4Addr::new(224, 0, 0, 1))).0,
            "LAN address"
        );
        for blocks in [
            vec![(0, 5)],
            vec![(9, 8)],
            vec![(10, 20), (20, 30)],
            vec![(10, 20), (1, 5)],
        ] {
            let r = LoadReport {
                tunnel_ids: blocks,
                ..report()
            };
            assert_eq!(refused(&r).0, "Tunnel ID block");
        }
        let r = LoadReport {
            tunnel_ids: vec![(1, 1); MAX_BLOCKS + 1],
            ..report()
        };
        assert_eq!(refused(&r).0, "block count");

        // A body cut short, or with bytes after it, sealed with the right key.
        let mut plain = seal(&report(), KEY);
        plain.truncate(plain.len() - TAG_LEN);
        for body in [
            &plain[..plain.len() - 1],
            &[plain.as_slice(), &[0]].concat()[..],
        ] {
            let mut mac = mac(KEY);
            mac.update(body);
            let sealed = [body, mac.finalize().into_bytes().as_slice()].concat();
            assert!(matches!(
                open(&sealed, KEY),
                Err(ReportError::Malformed { .. })
            ));
        }
    }

    fn ack() -> ReportAck {
        ReportAck {
            master: "master".into(),
            sequence: 9,
            report_sequence: 0x0102_0304_0506_0708,
            view: vec![
                ViewEntry {
                    name: "te1".into(),
                    lan_addr: Ipv4Addr::new(198, 19, 0, 11),
                    in_service: true,
                    tunnel_ids: vec![(0x100, 0x1ff)],
                },
                ViewEntry {
                    name: "te2".into(),
                    lan_addr: Ipv4Addr::new(198, 19, 0, 12),
                    in_service: false,
                    tunnel_ids: Vec::new(),
                },
            ],
        }
    }

    #[test]
    fn ack_golden_bytes_and_round_trip() {
        let sealed = seal_ack(&ack(), KEY);
        let body: &[u8] = &[
            b'L', b'2', b'K', b'A', 2, // magic, version
            0, 0, 0, 0, 0, 0, 0, 9, // sequence
            1, 2, 3, 4, 5, 6, 7, 8, // report sequence
            0, 6, b'm', b'a', b's', b't', b'e', b'r', // master name
            0, 2, // two in the view
            0, 3, b't', b'e', b'1', 198, 19, 0, 11, 1, // te1, in service
            0, 1, 1, 0, 1, 0xff, // one block 0x100..=0x1ff
            0, 3, b't', b'e', b'2', 198, 19, 0, 12, 0, // te2, not
            0, 0, // no blocks (an agent's LNS)
        ];
        assert_eq!(&sealed[..body.len()], body);
        assert_eq!(sealed.len(), body.len() + TAG_LEN);
        assert_eq!(open_ack(&sealed, KEY), Ok(ack()));
        let empty = ReportAck {
            view: Vec::new(),
            ..ack()
        };
        assert_eq!(open_ack(&seal_ack(&empty, KEY), KEY), Ok(empty));
    }

    #[test]
    fn forged_acks_and_reports_as_acks_are_refused() {
        let sealed = seal_ack(&ack(), KEY);
        assert_eq!(open_ack(&sealed, b"another key"), Err(ReportError::BadTag));
        for at in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[at] ^= 0x01;
            let expected = match at {
                0..=3 => ReportError::BadMagic,
                4 => ReportError::BadVersion(3),
                _ => ReportError::BadTag,
            };
            assert_eq!(open_ack(&tampered, KEY), Err(expected), "byte {at}");
        }
        // The two kinds never pass for each other, even under the right key.
        assert_eq!(
            open_ack(&seal(&report(), KEY), KEY),
            Err(ReportError::BadMagic)
        );
        assert_eq!(open(&sealed, KEY), Err(ReportError::BadMagic));
    }

    #[test]
    fn authentic_but_invalid_acks_are_malformed() {
        let field = |ack: &ReportAck| match open_ack(&seal_ack(ack, KEY), KEY) {
            Err(ReportError::Malformed { field, .. }) => field,
            other => panic!("expected Malformed, got {other:?}"),
        };
        let mut unordered = ack();
        unordered.view.reverse();
        assert_eq!(field(&unordered), "view name");
        let mut twice = ack();
        twice.view[1].name = "te1".into();
        assert_eq!(field(&twice), "view name");
        let mut nameless = ack();
        nameless.master.clear();
        assert_eq!(field(&nameless), "master name length");
        let mut broadcast = ack();
        broadcast.view[0].lan_addr = Ipv4Addr::BROADCAST;
        assert_eq!(field(&broadcast), "view LAN address");
        let mut crowd = ack();
        crowd.view = (0..=MAX_VIEW)
            .map(|i| ViewEntry {
                name: format!("te{i:04}"),
                lan_addr: Ipv4Addr::new(198, 19, 1, 1),
                in_service: true,
                tunnel_ids: Vec::new(),
            })
            .collect();
        assert_eq!(field(&crowd), "view count");
        let mut blocky = ack();
        blocky.view[0].tunnel_ids = (1..=MAX_VIEW_BLOCKS as u16 + 1).map(|i| (i, i)).collect();
        assert_eq!(field(&blocky), "view block count");
        let mut overlapping = ack();
        overlapping.view[0].tunnel_ids = vec![(5, 9), (9, 12)];
        assert_eq!(field(&overlapping), "Tunnel ID block");
    }

    fn claims() -> TunnelClaims {
        TunnelClaims {
            endpoint: "te3".into(),
            sequence: 11,
            claims: vec![
                TunnelClaim {
                    op: ClaimOp::Claim,
                    initiator: "198.18.1.1:1701".parse().unwrap(),
                    tunnel_id: 0xbeef,
                },
                TunnelClaim {
                    op: ClaimOp::Release,
                    initiator: "198.18.1.2:40000".parse().unwrap(),
                    tunnel_id: 7,
                },
            ],
        }
    }

    #[test]
    fn claims_golden_bytes_and_round_trip() {
        let sealed = seal_claims(&claims(), KEY);
        let body: &[u8] = &[
            b'L', b'2', b'K', b'T', 2, // magic, version
            0, 0, 0, 0, 0, 0, 0, 11, // sequence
            0, 3, b't', b'e', b'3', // name
            0, 2, // two claims
            0, 198, 18, 1, 1, 0x06, 0xa5, 0xbe, 0xef, // claim 198.18.1.1:1701 0xbeef
            1, 198, 18, 1, 2, 0x9c, 0x40, 0, 7, // release 198.18.1.2:40000 7
        ];
        assert_eq!(&sealed[..body.len()], body);
        assert_eq!(sealed.len(), body.len() + TAG_LEN);
        assert_eq!(open_claims(&sealed, KEY), Ok(claims()));
        assert_eq!(message_kind(&sealed), Some(MessageKind::Claims));
        assert_eq!(
            message_kind(&seal(&report(), KEY)),
            Some(MessageKind::Report)
        );
        assert_eq!(message_kind(&seal_ack(&ack(), KEY)), Some(MessageKind::Ack));
        assert_eq!(message_kind(b"L2K"), None);
        // No kind passes for another, even under the right key.
        assert_eq!(open(&sealed, KEY), Err(ReportError::BadMagic));
        assert_eq!(
            open_claims(&seal(&report(), KEY), KEY),
            Err(ReportError::BadMagic)
        );
        assert_eq!(
            open_claims(&sealed, b"another key"),
            Err(ReportError::BadTag)
        );
    }

    #[test]
    fn authentic_but_invalid_claims_are_malformed() {
        let field = |c: &TunnelClaims| match open_claims(&seal_claims(c, KEY), KEY) {
            Err(ReportError::Malformed { field, .. }) => field,
            other => panic!("expected Malformed, got {other:?}"),
        };
        let mut zero = claims();
        zero.claims[0].tunnel_id = 0;
        assert_eq!(field(&zero), "claim Tunnel ID");
        let mut portless = claims();
        portless.claims[1].initiator.set_port(0);
        assert_eq!(field(&portless), "claim initiator port");
        let mut multicast = claims();
        multicast.claims[0]
            .initiator
            .set_ip(Ipv4Addr::new(239, 0, 0, 1));
        assert_eq!(field(&multicast), "claim initiator address");
        let mut crowd = claims();
        crowd.claims = vec![crowd.claims[0]; MAX_CLAIMS + 1];
        assert_eq!(field(&crowd), "claim count");
        let mut nameless = claims();
        nameless.endpoint.clear();
        assert_eq!(field(&nameless), "name length");
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = open(&bytes, KEY);
        }

        #[test]
        fn random_acks_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = open_ack(&bytes, KEY);
            let signed = [&ACK_MAGIC[..], &[VERSION], &bytes].concat();
            let mut mac = mac(KEY);
            mac.update(&signed);
            let sealed = [signed.as_slice(), mac.finalize().into_bytes().as_slice()].concat();
            let _ = open_ack(&sealed, KEY);
        }

        #[test]
        fn authentic_random_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..120)) {
            for magic in [MAGIC, CLAIMS_MAGIC] {
                let signed = [&magic[..], &[VERSION], &body].concat();
                let mut mac = mac(KEY);
                mac.update(&signed);
                let sealed = [signed.as_slice(), mac.finalize().into_bytes().as_slice()].concat();
                let _ = open(&sealed, KEY);
                let _ = open_claims(&sealed, KEY);
            }
        }

        #[test]
        fn every_valid_report_round_trips(
            name in "[a-z0-9-]{1,64}",
            lan in 1u32..0xe000_0000,
            global in proptest::option::of(any::<u32>()),
            tunnels in any::<u32>(), sessions in any::<u32>(), capacity in any::<u32>(),
            state in 0u8..3, sequence in any::<u64>(), sccrq_received in any::<u64>(),
            starts in proptest::collection::btree_set(1u16..u16::MAX, 0..8),
        ) {
            // Disjoint blocks: each runs from one start to just before the next.
            let starts: Vec<u16> = starts.into_iter().collect();
            let tunnel_ids = starts.iter().enumerate().map(|(i, &first)| {
                (first, starts.get(i + 1).map_or(first, |next| next - 1))
            }).collect();
            let report = LoadReport {
                endpoint: name,
                lan_addr: Ipv4Addr::from(lan),
                global_addr: global.map(Ipv4Addr::from),
                tunnels, sessions, capacity,
                state: [EndpointState::InService, EndpointState::Draining, EndpointState::Unresponsive][usize::from(state)],
                sccrq_received,
                tunnel_ids,
                sequence,
            };
            prop_assert_eq!(open(&seal(&report, KEY), KEY), Ok(report));
        }
    }
}
