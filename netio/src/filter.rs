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

/// A BPF program that takes nothing: on a UDP socket it keeps the port ours (no ICMP port
/// unreachable) while an [`RxRing`](crate::ring::RxRing) receives what arrives there.
pub fn drop_all_filter() -> Vec<SockFilter> {
    vec![SockFilter::new(0x06, 0, 0, 0)]
}

/// Attaches a classic BPF program to a socket (SO_ATTACH_FILTER).
pub fn attach_filter(socket: &impl AsFd, program: &[SockFilter]) -> io::Result<()> {
    SockRef::from(socket).attach_filter(program)
}
