//! Crafted PPP for a crafted session: a whole subscriber (LCP with CHAP, IPCP with a Nak,
//! IPv6CP, IP both ways, echoes, termination) in the order RFC 1661 §3.2 wants, or with one
//! phase moved out of order.

use std::net::{Ipv4Addr, Ipv6Addr};

use l2tp::ppp::frame::push_option;
use l2tp::ppp::{protocol, FrameRepr, PacketRepr};

/// What the session's data messages carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PppScript {
    /// One LCP Echo-Request each way, no negotiation: what a bare L2TP test sends.
    #[default]
    EchoOnly,
    /// A whole subscriber, in order.
    Subscriber,
    /// The initiator's IPCP Configure-Request goes out before CHAP Success.
    IpcpBeforeAuth,
    /// The initiator sends IPv4 before the endpoint's IPCP Configure-Ack.
    Ipv4BeforeIpcp,
    /// The initiator sends IPv6 before IPv6CP opened.
    Ipv6BeforeIpv6cp,
    /// Payloads that are not PPP at all (even protocol numbers, cut headers).
    Garbage,
}

/// The initiator's and the endpoint's IPCP addresses, and their interface identifiers.
pub const INITIATOR_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 19, 128, 2);
pub const ENDPOINT_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 19, 128, 1);
const INITIATOR_ID: u64 = 0x0200_00ff_fe00_0002;
const ENDPOINT_ID: u64 = 0x0200_00ff_fe00_0001;

/// One frame of the script: `true` when the initiator sends it.
pub(crate) type Line = (bool, Vec<u8>);

fn control(protocol: u16, code: u8, identifier: u8, data: &[u8]) -> Vec<u8> {
    let mut info = Vec::new();
    PacketRepr {
        code,
        identifier,
        data,
    }
    .emit_to_vec(&mut info)
    .expect("crafted packets are short");
    let mut frame = Vec::new();
    FrameRepr::full(protocol).emit_to_vec(&info, &mut frame);
    frame
}

fn options(list: &[(u8, &[u8])]) -> Vec<u8> {
    let mut data = Vec::new();
    for (kind, value) in list {
        push_option(&mut data, *kind, value);
    }
    data
}

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    // An ICMP echo request: 20 octets of header, 8 of ICMP (checksums are not read).
    let mut packet = vec![0x45, 0, 0, 28, 0, 1, 0, 0, 64, 1, 0, 0];
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    packet.extend_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1]);
    let mut frame = Vec::new();
    FrameRepr::full(protocol::IPV4).emit_to_vec(&packet, &mut frame);
    frame
}

fn ipv6(src: u64, dst: u64) -> Vec<u8> {
    let link_local = |id: u64| (0xfe80_u128 << 112 | u128::from(id)).to_be_bytes();
    // ICMPv6 echo request (next header 58), 8 octets of payload.
    let mut packet = vec![0x60, 0, 0, 0, 0, 8, 58, 64];
    packet.extend_from_slice(&link_local(src));
    packet.extend_from_slice(&link_local(dst));
    packet.extend_from_slice(&[128, 0, 0, 0, 0, 1, 0, 1]);
    let mut frame = Vec::new();
    FrameRepr::full(protocol::IPV6).emit_to_vec(&packet, &mut frame);
    frame
}

/// The IPv6 link-local address crafted packets come from.
pub fn link_local(id: u64) -> Ipv6Addr {
    Ipv6Addr::from(0xfe80_u128 << 112 | u128::from(id))
}

/// The frames of one session, in the order they are sent.
pub(crate) fn script(kind: PppScript) -> Vec<Line> {
    use protocol::{CHAP, IPCP, IPV6CP, LCP};
    const TI: bool = true;
    const TE: bool = false;
    let echo = |from: bool, identifier: u8| (from, control(LCP, 9, identifier, &[0; 4]));
    match kind {
        PppScript::EchoOnly => return vec![echo(TI, 1), echo(TE, 1)],
        PppScript::Garbage => {
            return vec![
                (TI, vec![0xff, 0x03, 0xc0, 0x20, 1, 2]),
                (TE, vec![0xff, 0x03]),
                (TI, vec![0xff, 0x03, 0xc0, 0x21, 2, 1, 0, 200]),
            ]
        }
        _ => {}
    }
    let ti_lcp = options(&[(5, &[1, 2, 3, 4])]);
    let te_lcp = options(&[(3, &[0xc2, 0x23, 5]), (5, &[5, 6, 7, 8])]);
    let zero = options(&[(3, &[0; 4])]);
    let ti_ip = options(&[(3, &INITIATOR_ADDRESS.octets())]);
    let te_ip = options(&[(3, &ENDPOINT_ADDRESS.octets())]);
    let ti_id = options(&[(1, &INITIATOR_ID.to_be_bytes())]);
    let te_id = options(&[(1, &ENDPOINT_ID.to_be_bytes())]);
    let mut challenge = vec![4, 1, 2, 3, 4];
    challenge.extend_from_slice(b"te1");
    let mut response = vec![4, 9, 9, 9, 9];
    response.extend_from_slice(b"user1@example.net");
    let ipcp_request = (TI, control(IPCP, 1, 1, &zero));
    let ipv4_data = (TI, ipv4(INITIATOR_ADDRESS, ENDPOINT_ADDRESS));
    let ipv6_data = (TI, ipv6(INITIATOR_ID, ENDPOINT_ID));
    let mut lines = vec![
        (TI, control(LCP, 1, 1, &ti_lcp)),
        (TE, control(LCP, 1, 1, &te_lcp)),
        (TI, control(LCP, 2, 1, &te_lcp)),
        (TE, control(LCP, 2, 1, &ti_lcp)),
        (TE, control(CHAP, 1, 7, &challenge)),
        (TI, control(CHAP, 2, 7, &response)),
        (TE, control(CHAP, 3, 7, b"Welcome")),
        ipcp_request.clone(),
        (TE, control(IPCP, 1, 1, &te_ip)),
        (TI, control(IPCP, 2, 1, &te_ip)),
        (TE, control(IPCP, 3, 1, &ti_ip)),
        (TI, control(IPCP, 1, 2, &ti_ip)),
        (TE, control(IPCP, 2, 2, &ti_ip)),
        (TI, control(IPV6CP, 1, 1, &ti_id)),
        (TE, control(IPV6CP, 1, 1, &te_id)),
        (TI, control(IPV6CP, 2, 1, &te_id)),
        (TE, control(IPV6CP, 2, 1, &ti_id)),
        ipv4_data.clone(),
        (TE, ipv4(ENDPOINT_ADDRESS, INITIATOR_ADDRESS)),
        ipv6_data.clone(),
        echo(TI, 2),
        (TE, control(LCP, 10, 2, &[5, 6, 7, 8])),
        echo(TI, 3),
        (TE, control(LCP, 10, 3, &[5, 6, 7, 8])),
        (TI, control(LCP, 5, 4, &[])),
        (TE, control(LCP, 6, 4, &[])),
    ];
    // Moves `line` to just before the one at `before` (an index in the ordered script).
    let mut move_before = |line: Line, before: usize| {
        let from = lines
            .iter()
            .position(|l| *l == line)
            .expect("in the script");
        let line = lines.remove(from);
        lines.insert(before, line);
    };
    match kind {
        PppScript::IpcpBeforeAuth => move_before(ipcp_request, 6),
        PppScript::Ipv4BeforeIpcp => move_before(ipv4_data, 12),
        PppScript::Ipv6BeforeIpv6cp => move_before(ipv6_data, 14),
        _ => {}
    }
    lines
}
