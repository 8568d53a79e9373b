//! Opening an AF_PACKET socket, once for every kind this crate has, and the socket options
//! that neither socket2 nor nix names.

use std::io;
use std::os::fd::AsFd;

use nix::sys::socket::{setsockopt, sockopt};
use nix::{getsockopt_impl, setsockopt_impl, sockopt_impl};
use socket2::{Domain, SockAddr, SockAddrStorage, Socket, Type};

/// Largest frame the taps and ports take; the lab's MTU is 1500.
pub(crate) const FRAME: usize = 2048;
/// Ethernet header length.
pub(crate) const ETHERNET: usize = 14;

/// An AF_PACKET SOCK_RAW socket, non-blocking, bound to `interface` for the frames of
/// `protocol` (an EtherType; 0: it receives nothing). It is opened with protocol 0, so no
/// frame is queued before `setup` (filters, ring, options) has run and the bind is done.
pub(crate) fn open(
    interface: &str,
    protocol: u16,
    setup: impl FnOnce(&Socket) -> io::Result<()>,
) -> io::Result<Socket> {
    open_index(crate::iface::index(interface)?, Type::RAW, protocol, setup)
}

/// As [`open`], by interface index (0: every interface of the namespace) and of socket type
/// `kind`: `Type::RAW` (frames with their link header) or `Type::DGRAM` (the link header
/// stripped, whatever the link type).
pub(crate) fn open_index(
    index: i32,
    kind: Type,
    protocol: u16,
    setup: impl FnOnce(&Socket) -> io::Result<()>,
) -> io::Result<Socket> {
    let socket = Socket::new(Domain::PACKET, kind.nonblocking(), None)?;
    setup(&socket)?;
    socket.bind(&link_address(index, protocol))?;
    Ok(socket)
}

/// The `sockaddr_ll` that binds a packet socket to interface `index` and `protocol`.
fn link_address(index: i32, protocol: u16) -> SockAddr {
    let ll = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as libc::sa_family_t,
        sll_protocol: protocol.to_be(),
        sll_ifindex: index,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    let mut storage = SockAddrStorage::zeroed();
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: sockaddr_storage is larger than a sockaddr_ll and aligned for it; the length
    // given is that of the sockaddr_ll written into it, whose family says AF_PACKET.
    unsafe {
        *storage.view_as::<libc::sockaddr_ll>() = ll;
        SockAddr::new(storage, len)
    }
}

/// Asks for `size`-byte receive and/or send buffers: forced past rmem_max / wmem_max when we
/// have CAP_NET_ADMIN, as far as those limits allow otherwise. Best effort.
pub(crate) fn grow_buffers(fd: &impl AsFd, size: usize, receive: bool, send: bool) {
    if receive && setsockopt(fd, sockopt::RcvBufForce, &size).is_err() {
        let _ = setsockopt(fd, sockopt::RcvBuf, &size);
    }
    if send && setsockopt(fd, sockopt::SndBufForce, &size).is_err() {
        let _ = setsockopt(fd, sockopt::SndBuf, &size);
    }
}

// SOL_PACKET options, through nix's typed setsockopt / getsockopt.
sockopt_impl!(
    /// PACKET_VERSION (an int: TPACKET_V1, V2, V3).
    PacketVersion, SetOnly, libc::SOL_PACKET, libc::PACKET_VERSION, libc::c_int
);
sockopt_impl!(
    /// PACKET_RX_RING: the ring's geometry.
    PacketRxRing, SetOnly, libc::SOL_PACKET, libc::PACKET_RX_RING, libc::tpacket_req
);
sockopt_impl!(
    /// PACKET_STATISTICS: packets seen and dropped since the last read (which resets them).
    PacketStatistics, GetOnly, libc::SOL_PACKET, libc::PACKET_STATISTICS, libc::tpacket_stats
);
sockopt_impl!(
    /// PACKET_QDISC_BYPASS: sent frames skip the qdisc layer.
    PacketQdiscBypass, SetOnly, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, bool
);
sockopt_impl!(
    /// PACKET_IGNORE_OUTGOING: frames this host sends are not received.
    PacketIgnoreOutgoing, SetOnly, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, bool
);
sockopt_impl!(
    /// PACKET_AUXDATA: each frame comes with a tpacket_auxdata control message.
    PacketAuxdata, SetOnly, libc::SOL_PACKET, libc::PACKET_AUXDATA, bool
);
