//! A read-only summary of the PPP frame inside an L2TP data message, for `decode` and logs:
//! the protocol, and for the control protocols the code, identifier and the fields a tester
//! reads (LCP/IPCP/IPv6CP options, PAP peer, CHAP name, messages); for IPv4/IPv6 the addresses
//! and ICMP echo. It negotiates nothing and keeps no state.
//!
//! JSON keys follow tshark's field names where they can (`mru`, `magic_number`, `peer_id`,
//! `ip_address`, ...). Malformed bytes give a summary with `malformed` set to the typed error,
//! holding whatever was read before it.

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use super::frame::{protocol, Error, FrameRepr, Options, PacketRepr, Result, PACKET_HEADER_LEN};
use crate::malformed::{BadValue, Truncated};

/// What one PPP frame says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// `None` when not even the PPP header reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol_name: Option<&'static str>,
    /// Address and control omitted.
    #[serde(skip_serializing_if = "is_false")]
    pub acfc: bool,
    /// Protocol in one octet.
    #[serde(skip_serializing_if = "is_false")]
    pub pfc: bool,
    /// LCP, IPCP, IPv6CP, PAP and CHAP packets.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub control: Option<Control>,
    /// IPv4 and IPv6 packets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub malformed: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !b
}

/// A control packet: code, identifier and what its data means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Control {
    pub code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_name: Option<&'static str>,
    pub identifier: u8,
    #[serde(flatten)]
    pub detail: Detail,
}

/// The data of a control packet, by code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Detail {
    /// Data this summary does not read (Terminate-*, unknown codes).
    None,
    /// Configure-Request, -Ack, -Nak, -Reject.
    Options {
        options: Vec<ConfigOption>,
    },
    /// LCP Echo-Request, Echo-Reply, Discard-Request.
    Magic {
        magic_number: u32,
    },
    ProtocolReject {
        rejected_protocol: u16,
    },
    CodeReject {
        rejected_code: u8,
    },
    /// The password itself is never shown: a capture summary must not leak it.
    PapRequest {
        peer_id: String,
        password_length: usize,
    },
    /// PAP Authenticate-Ack/-Nak, CHAP Success/Failure.
    Message {
        message: String,
    },
    /// CHAP Challenge and Response.
    ChapValue {
        value_size: usize,
        name: String,
    },
}

/// One Configure option, keyed by its tshark name in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigOption {
    Mru(u16),
    /// The algorithm is CHAP's octet after the protocol (5 = MD5).
    AuthProtocol {
        protocol: u16,
        #[serde(skip_serializing_if = "Option::is_none")]
        algorithm: Option<u8>,
    },
    MagicNumber(u32),
    Pfc,
    Acfc,
    IpAddress(Ipv4Addr),
    PriDnsAddress(Ipv4Addr),
    SecDnsAddress(Ipv4Addr),
    InterfaceIdentifier(InterfaceId),
    /// A type this summary does not know for the protocol, or a known one whose value has the
    /// wrong size; `length` is the option's Length field.
    Unknown {
        #[serde(rename = "type")]
        kind: u8,
        length: usize,
    },
}

/// An IPv6CP Interface-Identifier, written as the low half of an IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceId(pub u64);

impl fmt::Display for InterfaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = [48, 32, 16, 0].map(|shift| (self.0 >> shift) as u16);
        write!(f, "{a:04x}:{b:04x}:{c:04x}:{d:04x}")
    }
}

impl Serialize for InterfaceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An IPv4 or IPv6 packet: addresses, the next protocol, and ICMP when it is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IpSummary {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 Protocol or IPv6 Next Header.
    pub proto: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp: Option<Icmp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Icmp {
    #[serde(rename = "type")]
    pub kind: u8,
    pub code: u8,
    /// Echo request and reply only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ident: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u16>,
}

/// Summarises `payload`, the PPP frame of an L2TP data message. Never fails: bytes that do not
/// read give a summary with `malformed` set.
pub fn describe(payload: &[u8]) -> Summary {
    let mut summary = Summary {
        protocol: None,
        protocol_name: None,
        acfc: false,
        pfc: false,
        control: None,
        ip: None,
        malformed: None,
    };
    if let Err(err) = fill(&mut summary, payload) {
        summary.malformed = Some(err.to_string());
    }
    summary
}

fn fill(summary: &mut Summary, payload: &[u8]) -> Result<()> {
    let (repr, info) = FrameRepr::parse(payload)?;
    summary.protocol = Some(repr.protocol);
    summary.protocol_name = protocol::name(repr.protocol);
    summary.acfc = repr.acfc;
    summary.pfc = repr.pfc;
    match repr.protocol {
        protocol::IPV4 => summary.ip = Some(ipv4(info)?),
        protocol::IPV6 => summary.ip = Some(ipv6(info)?),
        p if code_names(p).is_some() => {
            let packet = PacketRepr::parse_bytes(info)?;
            let control = summary.control.insert(Control {
                code: packet.code,
                code_name: code_name(p, packet.code),
                identifier: packet.identifier,
                detail: Detail::None,
            });
            read_detail(p, &packet, &mut control.detail)?;
        }
        _ => {}
    }
    Ok(())
}

/// Names of codes 1, 2, ... (RFC 1661 §5, RFC 1334 §2.2, RFC 1994 §4); `None` for a protocol
/// without control packets.
fn code_names(protocol: u16) -> Option<&'static [&'static str]> {
    const LCP: [&str; 11] = [
        "Configure-Request",
        "Configure-Ack",
        "Configure-Nak",
        "Configure-Reject",
        "Terminate-Request",
        "Terminate-Ack",
        "Code-Reject",
        "Protocol-Reject",
        "Echo-Request",
        "Echo-Reply",
        "Discard-Request",
    ];
    Some(match protocol {
        protocol::LCP => &LCP,
        // The NCPs have LCP's codes 1 to 7 (RFC 1332 §2, RFC 5072 §3).
        protocol::IPCP | protocol::IPV6CP => &LCP[..7],
        protocol::PAP => &[
            "Authenticate-Request",
            "Authenticate-Ack",
            "Authenticate-Nak",
        ],
        protocol::CHAP => &["Challenge", "Response", "Success", "Failure"],
        _ => return None,
    })
}

fn code_name(protocol: u16, code: u8) -> Option<&'static str> {
    let index = usize::from(code).checked_sub(1)?;
    code_names(protocol)?.get(index).copied()
}

/// Reads the data of a control packet into `detail`; on an error `detail` keeps what was read
/// (the options before a bad one).
fn read_detail(protocol: u16, packet: &PacketRepr, detail: &mut Detail) -> Result<()> {
    // Error offsets count from the control packet's Code, like `Options`'.
    let at = PACKET_HEADER_LEN;
    let data = packet.data;
    match (
        protocol,
        code_name(protocol, packet.code).unwrap_or_default(),
    ) {
        (_, "Configure-Request" | "Configure-Ack" | "Configure-Nak" | "Configure-Reject") => {
            let mut options = Vec::new();
            let read: Result<()> = Options::new(data).try_for_each(|option| {
                let (kind, value) = option?;
                options.push(config_option(protocol, kind, value));
                Ok(())
            });
            *detail = Detail::Options { options };
            read?;
        }
        (_, "Echo-Request" | "Echo-Reply" | "Discard-Request") => {
            let (magic, _) = take::<4>(data, "LCP Magic-Number", at)?;
            let magic_number = u32::from_be_bytes(*magic);
            *detail = Detail::Magic { magic_number };
        }
        (_, "Protocol-Reject") => {
            let (rejected, _) = take::<2>(data, "LCP Rejected-Protocol", at)?;
            let rejected_protocol = u16::from_be_bytes(*rejected);
            *detail = Detail::ProtocolReject { rejected_protocol };
        }
        (_, "Code-Reject") => {
            let (&[rejected_code], _) = take::<1>(data, "Rejected-Packet", at)?;
            *detail = Detail::CodeReject { rejected_code };
        }
        (_, "Authenticate-Request") => {
            let (peer_id, rest) = take_prefixed(data, "PAP Peer-ID", at)?;
            let at = at + 1 + peer_id.len();
            let (password, _) = take_prefixed(rest, "PAP Password", at)?;
            *detail = Detail::PapRequest {
                peer_id: text(peer_id),
                password_length: password.len(),
            };
        }
        (_, "Authenticate-Ack" | "Authenticate-Nak") => {
            let (message, _) = take_prefixed(data, "PAP Message", at)?;
            *detail = Detail::Message {
                message: text(message),
            };
        }
        (protocol::CHAP, "Success" | "Failure") => {
            *detail = Detail::Message {
                message: text(data),
            };
        }
        (_, "Challenge" | "Response") => {
            let (value, name) = take_prefixed(data, "CHAP Value", at)?;
            *detail = Detail::ChapValue {
                value_size: value.len(),
                name: text(name),
            };
        }
        _ => {}
    }
    Ok(())
}

/// The option numbers of RFC 1661 §6, RFC 1332 §3, RFC 1877 §1 and RFC 5072 §4.
fn config_option(protocol: u16, kind: u8, value: &[u8]) -> ConfigOption {
    use ConfigOption::*;
    let ipv4 = |v: &[u8]| <[u8; 4]>::try_from(v).ok().map(Ipv4Addr::from);
    let known = match (protocol, kind, value) {
        (protocol::LCP, 1, &[a, b]) => Some(Mru(u16::from_be_bytes([a, b]))),
        (protocol::LCP, 3, &[a, b, ref algorithm @ ..]) => Some(AuthProtocol {
            protocol: u16::from_be_bytes([a, b]),
            algorithm: algorithm.first().copied(),
        }),
        (protocol::LCP, 5, &[a, b, c, d]) => Some(MagicNumber(u32::from_be_bytes([a, b, c, d]))),
        (protocol::LCP, 7, []) => Some(Pfc),
        (protocol::LCP, 8, []) => Some(Acfc),
        (protocol::IPCP, 3, v) => ipv4(v).map(IpAddress),
        (protocol::IPCP, 129, v) => ipv4(v).map(PriDnsAddress),
        (protocol::IPCP, 131, v) => ipv4(v).map(SecDnsAddress),
        (protocol::IPV6CP, 1, v) => <[u8; 8]>::try_from(v)
            .ok()
            .map(|id| InterfaceIdentifier(InterfaceId(u64::from_be_bytes(id)))),
        _ => None,
    };
    known.unwrap_or(Unknown {
        kind,
        length: value.len() + 2,
    })
}

fn ipv4(packet: &[u8]) -> Result<IpSummary> {
    let (header, _) = take::<20>(packet, "IPv4 header", 0)?;
    let [version_ihl, _, _, _, _, _, frag_hi, frag_lo, _, proto, _, _, s0, s1, s2, s3, d0, d1, d2, d3] =
        *header;
    if version_ihl >> 4 != 4 {
        return Err(bad("IPv4 Version", 0, "not 4"));
    }
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    if header_len < header.len() {
        return Err(bad(
            "IPv4 IHL",
            0,
            "less than the 5 words of the fixed header",
        ));
    }
    let Some(payload) = packet.get(header_len..) else {
        return Err(Truncated {
            field: "IPv4 options (IHL)",
            offset: header.len(),
            need: header_len,
            have: packet.len(),
        }
        .into());
    };
    // Only the first fragment starts with the ICMP header.
    let first_fragment = u16::from_be_bytes([frag_hi, frag_lo]) & 0x1fff == 0;
    let icmp = match proto {
        1 if first_fragment => Some(icmp(payload, header_len, [8, 0])?),
        _ => None,
    };
    Ok(IpSummary {
        src: Ipv4Addr::new(s0, s1, s2, s3).into(),
        dst: Ipv4Addr::new(d0, d1, d2, d3).into(),
        proto,
        icmp,
    })
}

fn ipv6(packet: &[u8]) -> Result<IpSummary> {
    let (fixed, rest) = take::<8>(packet, "IPv6 header", 0)?;
    let (src, rest) = take::<16>(rest, "IPv6 Source Address", 8)?;
    let (dst, payload) = take::<16>(rest, "IPv6 Destination Address", 24)?;
    if fixed[0] >> 4 != 6 {
        return Err(bad("IPv6 Version", 0, "not 6"));
    }
    let next_header = fixed[6];
    // ICMPv6 straight after the fixed header; behind extension headers it is not looked for.
    let icmp = match next_header {
        58 => Some(icmp(payload, 40, [128, 129])?),
        _ => None,
    };
    Ok(IpSummary {
        src: Ipv6Addr::from(*src).into(),
        dst: Ipv6Addr::from(*dst).into(),
        proto: next_header,
        icmp,
    })
}

/// Type and code, and for the two echo types (request, reply) the identifier and sequence.
fn icmp(bytes: &[u8], at: usize, echo: [u8; 2]) -> Result<Icmp> {
    let (&[kind, code, _, _], rest) = take::<4>(bytes, "ICMP header", at)?;
    let mut icmp = Icmp {
        kind,
        code,
        ident: None,
        seq: None,
    };
    if echo.contains(&kind) {
        let (&[i0, i1, s0, s1], _) = take::<4>(rest, "ICMP echo", at + 4)?;
        icmp.ident = Some(u16::from_be_bytes([i0, i1]));
        icmp.seq = Some(u16::from_be_bytes([s0, s1]));
    }
    Ok(icmp)
}

/// The first `N` octets of `bytes`, which start at `offset` of the unit errors count in.
fn take<'a, const N: usize>(
    bytes: &'a [u8],
    field: &'static str,
    offset: usize,
) -> Result<(&'a [u8; N], &'a [u8])> {
    bytes.split_first_chunk::<N>().ok_or_else(|| {
        Truncated {
            field,
            offset,
            need: offset + N,
            have: offset + bytes.len(),
        }
        .into()
    })
}

/// A one-octet length, then that many octets (PAP's Peer-ID, Password and Message, CHAP's
/// Value); returns them and what follows.
fn take_prefixed<'a>(
    bytes: &'a [u8],
    field: &'static str,
    offset: usize,
) -> Result<(&'a [u8], &'a [u8])> {
    let (&[len], rest) = take::<1>(bytes, field, offset)?;
    let len = usize::from(len);
    rest.split_at_checked(len).ok_or_else(|| {
        Truncated {
            field,
            offset: offset + 1,
            need: offset + 1 + len,
            have: offset + bytes.len(),
        }
        .into()
    })
}

fn bad(field: &'static str, offset: usize, reason: &'static str) -> Error {
    BadValue {
        field,
        offset,
        reason,
    }
    .into()
}

/// Names and messages are meant as text but arrive as any octets.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One line: `LCP Configure-Request id=1 MRU=1500 Auth=CHAP-MD5 Magic=0x01020304`. Strings
/// from the wire are quoted and escaped, so the line stays one line.
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.protocol, self.protocol_name) {
            (None, _) => f.write_str("PPP")?,
            (Some(_), Some(name)) => f.write_str(name)?,
            (Some(p), None) => write!(f, "PPP protocol=0x{p:04x}")?,
        }
        if let Some(control) = &self.control {
            match control.code_name {
                Some(name) => write!(f, " {name}")?,
                None => write!(f, " code={}", control.code)?,
            }
            write!(f, " id={}", control.identifier)?;
            write!(f, "{}", control.detail)?;
        }
        if let Some(ip) = &self.ip {
            write!(f, " {ip}")?;
        }
        if let Some(err) = &self.malformed {
            write!(f, " malformed: {err}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Detail::None => Ok(()),
            Detail::Options { options } => options.iter().try_for_each(|o| write!(f, " {o}")),
            Detail::Magic { magic_number } => write!(f, " Magic=0x{magic_number:08x}"),
            Detail::ProtocolReject { rejected_protocol } => {
                write!(f, " protocol=0x{rejected_protocol:04x}")
            }
            Detail::CodeReject { rejected_code } => write!(f, " code={rejected_code}"),
            Detail::PapRequest {
                peer_id,
                password_length,
            } => write!(f, " peer={peer_id:?} password-len={password_length}"),
            Detail::Message { message } => write!(f, " message={message:?}"),
            Detail::ChapValue { value_size, name } => {
                write!(f, " value-size={value_size} name={name:?}")
            }
        }
    }
}

impl fmt::Display for ConfigOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ConfigOption::*;
        match *self {
            Mru(mru) => write!(f, "MRU={mru}"),
            AuthProtocol {
                protocol,
                algorithm,
            } => match (protocol, algorithm) {
                (protocol::PAP, _) => f.write_str("Auth=PAP"),
                (protocol::CHAP, Some(5)) => f.write_str("Auth=CHAP-MD5"),
                (protocol::CHAP, Some(0x80)) => f.write_str("Auth=MS-CHAP"),
                (protocol::CHAP, Some(0x81)) => f.write_str("Auth=MS-CHAPv2"),
                (protocol::CHAP, Some(a)) => write!(f, "Auth=CHAP-{a}"),
                (0xc227, _) => f.write_str("Auth=EAP"),
                (p, _) => write!(f, "Auth=0x{p:04x}"),
            },
            MagicNumber(magic) => write!(f, "Magic=0x{magic:08x}"),
            Pfc => f.write_str("PFC"),
            Acfc => f.write_str("ACFC"),
            IpAddress(a) => write!(f, "IP={a}"),
            PriDnsAddress(a) => write!(f, "DNS1={a}"),
            SecDnsAddress(a) => write!(f, "DNS2={a}"),
            InterfaceIdentifier(id) => write!(f, "IfId={id}"),
            Unknown { kind, length } => write!(f, "Unknown(type={kind},len={length})"),
        }
    }
}

impl fmt::Display for IpSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} > {}", self.src, self.dst)?;
        let v6 = self.src.is_ipv6();
        let Some(icmp) = self.icmp else {
            return match self.proto {
                6 => f.write_str(" TCP"),
                17 => f.write_str(" UDP"),
                p => write!(f, " proto={p}"),
            };
        };
        f.write_str(if v6 { " ICMPv6" } else { " ICMP" })?;
        match (icmp.kind, icmp.ident, icmp.seq) {
            (8 | 128, Some(id), Some(seq)) => write!(f, " echo-request id={id} seq={seq}"),
            (0 | 129, Some(id), Some(seq)) => write!(f, " echo-reply id={id} seq={seq}"),
            (kind, _, _) => write!(f, " type={kind} code={}", icmp.code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn json(summary: &Summary) -> String {
        serde_json::to_string(summary).unwrap()
    }

    #[test]
    fn lcp_configure_request_with_mru_chap_md5_and_magic() {
        let frame = [
            0xff, 0x03, 0xc0, 0x21, // address, control, LCP
            0x01, 0x01, 0x00, 0x13, // Configure-Request, id 1, length 19
            0x01, 0x04, 0x05, 0xdc, // MRU 1500
            0x03, 0x05, 0xc2, 0x23, 0x05, // Auth-Protocol CHAP, MD5
            0x05, 0x06, 0x01, 0x02, 0x03, 0x04, // Magic-Number
        ];
        let summary = describe(&frame);
        assert_eq!(
            summary.to_string(),
            "LCP Configure-Request id=1 MRU=1500 Auth=CHAP-MD5 Magic=0x01020304"
        );
        assert_eq!(
            json(&summary),
            r#"{"protocol":49185,"protocol_name":"LCP","code":1,"code_name":"Configure-Request","identifier":1,"options":[{"mru":1500},{"auth_protocol":{"protocol":49699,"algorithm":5}},{"magic_number":16909060}]}"#
        );
    }

    #[test]
    fn lcp_other_options_and_codes() {
        // PAP auth, PFC, ACFC and an option LCP does not know (type 13, Callback).
        let frame = [
            0xff, 0x03, 0xc0, 0x21, 0x04, 0x09, 0x00, 0x0f, 0x03, 0x04, 0xc0, 0x23, 0x07, 0x02,
            0x08, 0x02, 0x0d, 0x03, 0x06,
        ];
        assert_eq!(
            describe(&frame).to_string(),
            "LCP Configure-Reject id=9 Auth=PAP PFC ACFC Unknown(type=13,len=3)"
        );
        // An MRU of the wrong size is not read as an MRU.
        let frame = [
            0xff, 0x03, 0xc0, 0x21, 0x01, 0x01, 0x00, 0x07, 0x01, 0x03, 0x05,
        ];
        assert_eq!(
            describe(&frame).to_string(),
            "LCP Configure-Request id=1 Unknown(type=1,len=3)"
        );
        // Echo-Request with its magic, ACFC applied (LCP keeps two protocol octets).
        let frame = [0xc0, 0x21, 0x09, 0x03, 0x00, 0x08, 0xde, 0xad, 0xbe, 0xef];
        let summary = describe(&frame);
        assert_eq!(
            summary.to_string(),
            "LCP Echo-Request id=3 Magic=0xdeadbeef"
        );
        assert!(json(&summary).contains(r#""acfc":true,"code":9"#));
        assert!(json(&summary).contains(r#""magic_number":3735928559"#));
        let frame = [0xff, 0x03, 0xc0, 0x21, 0x08, 0x02, 0x00, 0x06, 0x80, 0x57];
        assert_eq!(
            describe(&frame).to_string(),
            "LCP Protocol-Reject id=2 protocol=0x8057"
        );
        // Terminate-Request: code and identifier, its data left alone.
        let summary = describe(&[0xff, 0x03, 0xc0, 0x21, 0x05, 0x04, 0x00, 0x06, 0x68, 0x69]);
        assert_eq!(summary.to_string(), "LCP Terminate-Request id=4");
        assert!(json(&summary).ends_with(r#""code_name":"Terminate-Request","identifier":4}"#));
        // A code LCP does not define.
        let summary = describe(&[0xff, 0x03, 0xc0, 0x21, 0x0e, 0x01, 0x00, 0x04]);
        assert_eq!(summary.to_string(), "LCP code=14 id=1");
    }

    #[test]
    fn chap_challenge_with_name_and_success_message() {
        let mut frame = vec![0xff, 0x03, 0xc2, 0x23, 0x01, 0x07, 0x00, 0x1a, 0x10];
        frame.extend_from_slice(&[0xab; 16]);
        frame.extend_from_slice(b"lns01");
        let summary = describe(&frame);
        assert_eq!(
            summary.to_string(),
            r#"CHAP Challenge id=7 value-size=16 name="lns01""#
        );
        assert!(json(&summary).ends_with(r#""identifier":7,"value_size":16,"name":"lns01"}"#));
        let frame = b"\xff\x03\xc2\x23\x04\x07\x00\x0eBad\nsecret";
        assert_eq!(
            describe(frame).to_string(),
            r#"CHAP Failure id=7 message="Bad\nsecret""#
        );
    }

    #[test]
    fn pap_request_shows_the_peer_and_only_the_length_of_the_password() {
        let frame = b"\xff\x03\xc0\x23\x01\x02\x00\x11\x05alice\x06secret";
        let summary = describe(frame);
        assert_eq!(
            summary.to_string(),
            r#"PAP Authenticate-Request id=2 peer="alice" password-len=6"#
        );
        let json = json(&summary);
        assert!(
            json.contains(r#""peer_id":"alice","password_length":6"#),
            "{json}"
        );
        assert!(!json.contains("secret") && !summary.to_string().contains("secret"));
        let frame = b"\xff\x03\xc0\x23\x03\x02\x00\x0b\x06denied";
        assert_eq!(
            describe(frame).to_string(),
            r#"PAP Authenticate-Nak id=2 message="denied""#
        );
    }

    #[test]
    fn ipcp_configure_nak_with_an_address_and_dns() {
        let frame = [
            0xff, 0x03, 0x80, 0x21, 0x03, 0x04, 0x00, 0x10, // Configure-Nak, id 4, length 16
            0x03, 0x06, 198, 19, 128, 5, // IP-Address
            0x81, 0x06, 198, 19, 0, 1, // Primary DNS
        ];
        let summary = describe(&frame);
        assert_eq!(
            summary.to_string(),
            "IPCP Configure-Nak id=4 IP=198.19.128.5 DNS1=198.19.0.1"
        );
        assert!(json(&summary).ends_with(
            r#""options":[{"ip_address":"198.19.128.5"},{"pri_dns_address":"198.19.0.1"}]}"#
        ));
        let frame = [
            0xff, 0x03, 0x80, 0x57, 0x01, 0x01, 0x00, 0x0e, 0x01, 0x0a, 0x02, 0x00, 0x5e, 0xff,
            0xfe, 0x00, 0x53, 0x01,
        ];
        let summary = describe(&frame);
        assert_eq!(
            summary.to_string(),
            "IPv6CP Configure-Request id=1 IfId=0200:5eff:fe00:5301"
        );
        assert!(json(&summary).contains(r#"{"interface_identifier":"0200:5eff:fe00:5301"}"#));
    }

    #[test]
    fn compressed_header_ipv4_icmp_echo() {
        let frame = [
            0x21, // IPv4, with ACFC and PFC
            0x45, 0x00, 0x00, 0x1c, 0x00, 0x01, 0x00, 0x00, 0x40, 0x01, 0x00, 0x00, 198, 19, 128,
            5, 198, 19, 0, 1, // IPv4 header, ICMP
            0x08, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x07, // echo request
        ];
        let summary = describe(&frame);
        assert_eq!((summary.acfc, summary.pfc), (true, true));
        assert_eq!(
            summary.to_string(),
            "IPv4 198.19.128.5 > 198.19.0.1 ICMP echo-request id=4660 seq=7"
        );
        assert_eq!(
            json(&summary),
            r#"{"protocol":33,"protocol_name":"IPv4","acfc":true,"pfc":true,"ip":{"src":"198.19.128.5","dst":"198.19.0.1","proto":1,"icmp":{"type":8,"code":0,"ident":4660,"seq":7}}}"#
        );
    }

    #[test]
    fn ipv6_icmpv6_echo_reply() {
        let mut frame = vec![0xff, 0x03, 0x00, 0x57, 0x60, 0, 0, 0, 0x00, 0x08, 58, 64];
        frame.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        frame.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        frame.extend_from_slice(&[129, 0, 0, 0, 0x00, 0x05, 0x00, 0x01]);
        assert_eq!(
            describe(&frame).to_string(),
            "IPv6 2001:db8::1 > 2001:db8::2 ICMPv6 echo-reply id=5 seq=1"
        );
    }

    #[test]
    fn malformed_frames_are_named_not_panicked_on() {
        let cases: [(&[u8], &str); 7] = [
            (
                &[],
                "PPP malformed: PPP Protocol truncated at byte 0: need 1 bytes, have 0",
            ),
            // The Length says 20, the packet has 8 octets.
            (
                &[
                    0xff, 0x03, 0xc0, 0x21, 0x01, 0x01, 0x00, 0x14, 0x01, 0x04, 0x05, 0xdc,
                ],
                "LCP malformed: PPP control packet (its Length) truncated at byte 4: need 20 \
                 bytes, have 8",
            ),
            // Option length 0 after a good MRU: the MRU is kept.
            (
                &[
                    0xff, 0x03, 0xc0, 0x21, 0x01, 0x01, 0x00, 0x0a, 0x01, 0x04, 0x05, 0xdc, 0x05,
                    0x00,
                ],
                "LCP Configure-Request id=1 MRU=1500 malformed: PPP option Length at byte 9: less \
                 than 2: an option's Length counts its Type and Length octets",
            ),
            // Option length 1.
            (
                &[0xff, 0x03, 0x80, 0x21, 0x01, 0x01, 0x00, 0x06, 0x03, 0x01],
                "IPCP Configure-Request id=1 malformed: PPP option Length at byte 5: less than 2: \
                 an option's Length counts its Type and Length octets",
            ),
            // A PAP Peer-ID longer than the packet.
            (
                b"\xff\x03\xc0\x23\x01\x02\x00\x08\x09abc",
                "PAP Authenticate-Request id=2 malformed: PAP Peer-ID truncated at byte 5: need \
                 14 bytes, have 8",
            ),
            (
                &[0xff, 0x03, 0xc0, 0x21, 0x09, 0x01, 0x00, 0x06, 0x01, 0x02],
                "LCP Echo-Request id=1 malformed: LCP Magic-Number truncated at byte 4: need 8 \
                 bytes, have 6",
            ),
            (
                &[0x21, 0x45, 0x00, 0x00],
                "IPv4 malformed: IPv4 header truncated at byte 0: need 20 bytes, have 3",
            ),
        ];
        for (frame, text) in cases {
            let summary = describe(frame);
            assert_eq!(summary.to_string(), text, "{frame:02x?}");
            assert!(json(&summary).contains(r#""malformed":"#));
        }
        // Unknown protocols are not malformed, just not read.
        let summary = describe(&[0xff, 0x03, 0x80, 0xfd, 1, 2]);
        assert_eq!(summary.to_string(), "PPP protocol=0x80fd");
        assert_eq!(json(&summary), r#"{"protocol":33021}"#);
    }

    proptest! {
        #[test]
        fn random_payloads_never_panic(
            header in prop::sample::select(vec![
                &[][..], &[0xff, 0x03, 0xc0, 0x21], &[0xc0, 0x23], &[0xc2, 0x23], &[0x80, 0x21],
                &[0x80, 0x57], &[0x21], &[0x57], &[0xff, 0x03, 0x00, 0x21],
            ]),
            body in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let mut frame = header.to_vec();
            frame.extend_from_slice(&body);
            let summary = describe(&frame);
            let text = summary.to_string();
            prop_assert!(!text.contains('\n'));
            let value: serde_json::Value = serde_json::from_str(&json(&summary)).unwrap();
            prop_assert!(value.is_object());
        }
    }
}
