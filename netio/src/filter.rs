//! Classic BPF programs for packet and UDP sockets, attached through socket2.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;

use socket2::{SockFilter, SockRef};

/// A classic BPF program for [`RxRing::open`](crate::ring::RxRing::open): IPv4 UDP frames
/// (Ethernet header first) to `addr`:`port`, whole (snap length 256 KB); everything else is
/// not copied at all.
pub fn udp_to_filter(addr: Ipv4Addr, port: u16) -> Vec<SockFilter> {
    const LD_H_ABS: u16 = 0x28;
    const LD_B_ABS: u16 = 0x30;
    const LD_W_ABS: u16 = 0x20;
    const LDX_B_MSH: u16 = 0xb1;
    const LD_H_IND: u16 = 0x48;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    let op = SockFilter::new;
    vec![
        op(LD_H_ABS, 0, 0, 12), // EtherType
        op(JEQ_K, 0, 8, 0x0800),
        op(LD_B_ABS, 0, 0, 23), // IPv4 protocol
        op(JEQ_K, 0, 6, 17),
        op(LD_W_ABS, 0, 0, 30), // IPv4 destination
        op(JEQ_K, 0, 4, u32::from(addr)),
        op(LDX_B_MSH, 0, 0, 14), // X = IPv4 header length
        op(LD_H_IND, 0, 0, 16),  // UDP destination port
        op(JEQ_K, 0, 1, u32::from(port)),
        op(RET_K, 0, 0, 1 << 18),
        op(RET_K, 0, 0, 0),
    ]
}

/// A classic BPF program for packet sockets that see packets from their IPv4 header on
/// (AF_PACKET SOCK_DGRAM, as [`Sniffer`](crate::sniff::Sniffer) opens them; offsets are
/// relative to the IPv4 header, no link header): keeps IPv4 (version 4) UDP datagrams whose
/// source port or destination port is `port`, whole (snap length 65535), and whatever the
/// IPv4 header's length (options). A fragment other than the first (non-zero fragment offset)
/// is not kept: it has no UDP header to match. A first fragment is.
pub fn udp_port_filter(port: u16) -> Vec<SockFilter> {
    udp_port_program(port)
        .iter()
        .map(|op| SockFilter::new(op.code, op.jt, op.jf, op.k))
        .collect()
}

/// [`udp_port_filter`] as plain `sock_filter`s, whose fields (unlike `SockFilter`'s) can be
/// read back: the tests run it.
pub(crate) fn udp_port_program(port: u16) -> [libc::sock_filter; 14] {
    const LD_B_ABS: u16 = 0x30;
    const LD_H_ABS: u16 = 0x28;
    const ALU_AND_K: u16 = 0x54;
    const LDX_B_MSH: u16 = 0xb1;
    const LD_H_IND: u16 = 0x48;
    const JEQ_K: u16 = 0x15;
    const JSET_K: u16 = 0x45;
    const RET_K: u16 = 0x06;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    [
        op(LD_B_ABS, 0, 0, 0), // version and header length
        op(ALU_AND_K, 0, 0, 0xf0),
        op(JEQ_K, 0, 10, 0x40),   // version 4, else drop
        op(LD_B_ABS, 0, 0, 9),    // protocol
        op(JEQ_K, 0, 8, 17),      // UDP, else drop
        op(LD_H_ABS, 0, 0, 6),    // flags and fragment offset
        op(JSET_K, 6, 0, 0x1fff), // a later fragment: drop
        op(LDX_B_MSH, 0, 0, 0),   // X = IPv4 header length
        op(LD_H_IND, 0, 0, 0),    // UDP source port
        op(JEQ_K, 2, 0, u32::from(port)),
        op(LD_H_IND, 0, 0, 2), // UDP destination port
        op(JEQ_K, 0, 1, u32::from(port)),
        op(RET_K, 0, 0, 0xffff), // keep, whole
        op(RET_K, 0, 0, 0),      // drop
    ]
}

/// A BPF program that takes nothing: on a UDP socket it keeps the port ours (no ICMP port
/// unreachable) while an [`RxRing`](crate::ring::RxRing) receives what arrives there.
pub fn drop_all_filter() -> Vec<SockFilter> {
    vec![SockFilter::new(0x06, 0, 0, 0)]
}

/// Attaches a classic BPF program to a socket (SO_ATTACH_FILTER).
pub fn attach_filter(socket: &impl AsFd, program: &[SockFilter]) -> io::Result<()> {
    SockRef::from(socket).attach_filter(program)
}
