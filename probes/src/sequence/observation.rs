//! What the checker reads: one L2TP message as seen at one point of the network.

use std::fmt;
use std::net::SocketAddrV4;
use std::time::Duration;

use l2tp::wire::message::ParseOptions;
use l2tp::wire::{AvpType, AvpValue, MessageType, PacketRepr};
use serde::Serialize;

use super::ppp::Frame;

/// One sighting of an L2TP message. The same packet seen before and after a translator (the
/// master, the NAT) is two observations: that is what FIG 3 and FIG 5 number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observation {
    /// Since the Unix epoch, as the capture stamped it.
    pub time: Duration,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub message: Summary,
    /// Where the packet was read, to find it again in Wireshark.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// What the PPP frame of a data message means for the session's phases; `None` for
    /// control messages.
    #[serde(skip)]
    pub ppp: Option<Frame>,
}

/// A capture (by its position in the list the caller read) and the 1-based record in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Origin {
    pub capture: usize,
    pub record: u64,
}

/// The kind of an L2TP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Control(MessageType),
    /// A control message without AVPs: an acknowledgement only (RFC 2661 §5.8).
    Zlb,
    Data,
}

impl Kind {
    pub fn is_control(self) -> bool {
        !matches!(self, Kind::Data)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Control(kind) => write!(f, "{kind}"),
            Kind::Zlb => f.write_str("ZLB"),
            Kind::Data => f.write_str("data"),
        }
    }
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The parts of a message the sequences and RFC rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Summary {
    #[serde(rename = "message")]
    pub kind: Kind,
    pub tunnel_id: u16,
    pub session_id: u16,
    /// Zero for data messages without sequence numbers.
    pub ns: u16,
    pub nr: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_tunnel_id: Option<u16>,
    /// From an ICRQ or ICRP: pairs the two Session IDs of a call, so that both directions of
    /// its PPP are one session. Not in the JSON: the timeline keeps its keys.
    #[serde(skip)]
    pub assigned_session_id: Option<u16>,
    /// A hash of the L2TP bytes: translators must forward them unchanged, so equal digests on
    /// both sides of one mark the same packet even when its addresses were mangled.
    #[serde(skip)]
    pub digest: u64,
}

impl Summary {
    /// Summarises a parsed message; `bytes` is the UDP payload it was parsed from.
    pub fn new(packet: &PacketRepr, bytes: &[u8]) -> Summary {
        let header = packet.header();
        let (ns, nr) = header.sequence.map_or((0, 0), |seq| (seq.ns, seq.nr));
        let (kind, assigned_tunnel_id, assigned_session_id) = match packet {
            PacketRepr::Data { .. } => (Kind::Data, None, None),
            PacketRepr::Control(message) => {
                let kind = message.message_type().map_or(Kind::Zlb, Kind::Control);
                let tunnel = match message.avp(AvpType::AssignedTunnelId) {
                    Some(AvpValue::AssignedTunnelId(id)) => Some(*id),
                    _ => None,
                };
                let session = match message.avp(AvpType::AssignedSessionId) {
                    Some(AvpValue::AssignedSessionId(id)) => Some(*id),
                    _ => None,
                };
                (kind, tunnel, session)
            }
        };
        Summary {
            kind,
            tunnel_id: header.tunnel_id,
            session_id: header.session_id,
            ns,
            nr,
            assigned_tunnel_id,
            assigned_session_id,
            digest: fnv1a(bytes),
        }
    }
}

impl Observation {
    /// Parses one UDP payload; `Err` for bytes that are not an L2TPv2 message.
    pub fn decode(
        time: Duration,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        payload: &[u8],
        options: &ParseOptions,
    ) -> Result<Observation, l2tp::wire::Error> {
        let packet = PacketRepr::parse(payload, options)?;
        let ppp = match &packet {
            PacketRepr::Data { payload, .. } => Some(Frame::read(payload)),
            PacketRepr::Control(_) => None,
        };
        Ok(Observation {
            time,
            src,
            dst,
            message: Summary::new(&packet, payload),
            origin: None,
            ppp,
        })
    }

    pub fn with_origin(mut self, origin: Origin) -> Observation {
        self.origin = Some(origin);
        self
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Whether `nr` acknowledges the message numbered `ns`: Nr is the next Ns expected, compared
/// modulo 2^16 (RFC 2661 §5.8).
pub(crate) fn acknowledges(nr: u16, ns: u16) -> bool {
    seq_ge(nr, ns.wrapping_add(1))
}

/// `a >= b` in sequence-number space: `a` is at most 32767 ahead of `b`.
pub(crate) fn seq_ge(a: u16, b: u16) -> bool {
    a.wrapping_sub(b) < 0x8000
}

#[cfg(test)]
mod tests {
    use super::*;
    use l2tp::wire::samples;

    #[test]
    fn summaries_of_the_sample_conversation() {
        let packets = samples::every_message();
        let summaries: Vec<Summary> = packets
            .iter()
            .map(|packet| {
                let mut buf = vec![0; packet.buffer_len()];
                let len = packet.emit(&mut buf, Some(samples::SECRET)).unwrap();
                let parsed = PacketRepr::parse(
                    &buf[..len],
                    &ParseOptions {
                        secret: Some(samples::SECRET),
                    },
                )
                .unwrap();
                Summary::new(&parsed, &buf[..len])
            })
            .collect();
        assert_eq!(summaries[0].kind, Kind::Control(MessageType::Sccrq));
        assert_eq!(summaries[0].assigned_tunnel_id, Some(0x1111));
        assert_eq!(summaries[1].kind, Kind::Control(MessageType::Sccrp));
        assert_eq!(summaries[1].tunnel_id, 0x1111);
        assert_eq!(summaries[1].assigned_tunnel_id, Some(0x2222));
        assert_eq!((summaries[1].ns, summaries[1].nr), (0, 1));
        assert_eq!(summaries[3].kind, Kind::Zlb);
        assert!(summaries.iter().any(|s| s.kind == Kind::Data));
        assert_ne!(summaries[0].digest, summaries[1].digest);
    }

    #[test]
    fn sequence_numbers_wrap() {
        assert!(acknowledges(1, 0));
        assert!(!acknowledges(0, 0));
        assert!(acknowledges(0, 0xffff));
        assert!(acknowledges(5, 2));
        assert!(!acknowledges(2, 5));
        assert!(seq_ge(3, 0xfffe));
    }
}
