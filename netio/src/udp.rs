//! UDP and raw IPv4: a UDP socket made the way the roles need it, whole IPv4 packets sent with
//! a source that is not ours (IP_HDRINCL), and datagrams in sendmmsg / recvmmsg batches (the
//! NAT's public socket, the load generator of `l2tpkit bench nat`). No call here allocates
//! per packet or per batch.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::mmsg::{self, BATCH};

/// A UDP socket bound to `addr`, non-blocking, with SO_REUSEADDR set before the bind when
/// `reuse_addr`. Two sockets that both set it may share a port when their addresses differ
/// (one of them the wildcard): an endpoint on 0.0.0.0:1701 that takes over the master binds
/// the cluster address's 1701 beside it, and the kernel hands each datagram to the socket with
/// the more specific address (the master's, for the cluster address).
pub fn udp_socket(addr: SocketAddrV4, reuse_addr: bool) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM.nonblocking(), None)?;
    if reuse_addr {
        socket.set_reuse_address(true)?;
    }
    socket.bind(&SockAddr::from(addr))?;
    Ok(socket.into())
}

/// Sends complete IPv4 packets as they are (IP_HDRINCL): the kernel routes them by their
/// destination and keeps our source address, checksums and all.
pub struct RawSender {
    socket: Socket,
}

impl RawSender {
    /// Needs CAP_NET_RAW.
    pub fn new() -> io::Result<RawSender> {
        // IPPROTO_RAW implies IP_HDRINCL.
        let socket = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )?;
        Ok(RawSender { socket })
    }

    /// Sends a batch of IPv4 packets, one sendmmsg per [`BATCH`]; nothing is allocated. A packet
    /// the kernel refuses (or one too short to carry an IPv4 header, which goes to 0.0.0.0) is
    /// skipped and the rest still go; returns how many were dealt with (all), or the error
    /// when none went out.
    pub fn send_batch(&self, packets: &[&[u8]]) -> io::Result<usize> {
        mmsg::send(self.socket.as_fd(), packets, |packet| {
            let dst = packet
                .get(16..20)
                .map(|b| Ipv4Addr::new(b[0], b[1], b[2], b[3]))
                .unwrap_or(Ipv4Addr::UNSPECIFIED);
            Some(sockaddr(dst))
        })
    }

    pub fn send(&self, packet: &[u8]) -> io::Result<()> {
        self.send_batch(&[packet]).map(|_| ())
    }
}

fn sockaddr(ip: Ipv4Addr) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip.octets()),
        },
        sin_zero: [0; 8],
    }
}

/// Sends `packets` on a *connected* UDP socket (each one datagram), one sendmmsg per
/// [`BATCH`]; returns how many were dealt with (see [`RawSender::send_batch`]). Nothing is
/// allocated: the load generator of `l2tpkit bench nat` calls this in its hot loop.
pub fn send_udp_batch(socket: &impl AsFd, packets: &[&[u8]]) -> io::Result<usize> {
    mmsg::send(socket.as_fd(), packets, |_| None)
}

/// Receives UDP datagrams in batches (recvmmsg) with their source addresses, each into a
/// buffer of its own that leaves `headroom` bytes free in front: the NAT writes the IPv4 and
/// UDP headers there and rewrites the packet in place, without a copy.
pub struct UdpBatchReceiver {
    buffers: Vec<Vec<u8>>,
    lens: Vec<usize>,
    sources: Vec<SocketAddrV4>,
    headroom: usize,
}

impl UdpBatchReceiver {
    /// `batch` buffers (1 ..= [`BATCH`]) of `headroom + max_payload` bytes.
    pub fn new(batch: usize, headroom: usize, max_payload: usize) -> UdpBatchReceiver {
        let batch = batch.clamp(1, BATCH);
        UdpBatchReceiver {
            buffers: vec![vec![0u8; headroom + max_payload]; batch],
            lens: vec![0; batch],
            sources: vec![SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0); batch],
            headroom,
        }
    }

    /// Reads what is waiting on `socket` without blocking, up to the batch size. Returns how
    /// many datagrams; `Err(WouldBlock)` when there were none (what tokio's `try_io` expects).
    /// A datagram longer than a buffer is truncated (MSG_TRUNC is not asked for).
    pub fn recv(&mut self, socket: &impl AsFd) -> io::Result<usize> {
        let mut names = [<libc::sockaddr_in as mmsg::RawName>::EMPTY; BATCH];
        let got = mmsg::recv(
            socket.as_fd(),
            &mut self.buffers,
            self.headroom,
            &mut names,
            &mut self.lens,
        )?;
        for (source, addr) in self.sources.iter_mut().zip(&names).take(got) {
            *source = if i32::from(addr.sin_family) == libc::AF_INET {
                SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
                    u16::from_be(addr.sin_port),
                )
            } else {
                SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)
            };
        }
        Ok(got)
    }

    /// The i-th datagram of the last batch: its buffer from the start of the headroom to the
    /// end of the payload, and its source (0.0.0.0:0 when it was not IPv4).
    pub fn datagram(&mut self, i: usize) -> Option<(&mut [u8], SocketAddrV4)> {
        let len = *self.lens.get(i)?;
        let source = *self.sources.get(i)?;
        let buffer = self.buffers.get_mut(i)?.get_mut(..self.headroom + len)?;
        Some((buffer, source))
    }

    /// The i-th buffer as it stands (after the caller's rewrite), up to `len` bytes.
    pub fn buffer(&self, i: usize, len: usize) -> Option<&[u8]> {
        self.buffers.get(i)?.get(..len)
    }

    pub fn headroom(&self) -> usize {
        self.headroom
    }
}

/// Asks the kernel to queue the ICMP errors our datagrams cause (IP_RECVERR): without it an
/// unconnected UDP socket never hears that a peer's port is closed. A pending error then fails
/// the next receive (ECONNREFUSED for a port unreachable); [`take_errors`] says whose.
pub fn report_icmp_errors(socket: &impl AsFd) -> io::Result<()> {
    nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::Ipv4RecvErr, &true)
        .map_err(io::Error::from)
}

/// One ICMP error from the socket's error queue: where the datagram that caused it was going,
/// and the error (`ECONNREFUSED` for a port unreachable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpError {
    pub to: SocketAddrV4,
    pub errno: i32,
}

/// Empties the socket's error queue (MSG_ERRQUEUE), returning what it held: every ICMP error
/// our datagrams caused since the last call, oldest first.
pub fn take_errors(socket: &impl AsFd) -> Vec<IcmpError> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrIn};
    let mut errors = Vec::new();
    // A bound: the queue is as long as the receive buffer allows, and another pass comes with
    // the next error.
    for _ in 0..1024 {
        let mut data = [0u8; 64];
        let mut iov = [io::IoSliceMut::new(&mut data)];
        let mut space = nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in);
        let flags = MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT;
        let Ok(msg) = recvmsg::<SockaddrIn>(
            socket.as_fd().as_raw_fd(),
            &mut iov,
            Some(&mut space),
            flags,
        ) else {
            break;
        };
        let to = msg
            .address
            .map(|a| SocketAddrV4::new(a.ip(), a.port()))
            .unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        let Ok(cmsgs) = msg.cmsgs() else {
            continue;
        };
        for cmsg in cmsgs {
            if let ControlMessageOwned::Ipv4RecvErr(err, _) = cmsg {
                errors.push(IcmpError {
                    to,
                    errno: err.ee_errno as i32,
                });
            }
        }
    }
    errors
}
