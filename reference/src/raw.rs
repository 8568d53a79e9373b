//! Raw sockets for the forwarding roles (master, NAT): sending whole IPv4 packets whose source
//! is not ours (IP_HDRINCL), and tapping an interface for packets routed through us (AF_PACKET).
//! Both move packets in batches (sendmmsg / recvmmsg), as PEERS.md's measurements advise, and
//! so does [`UdpBatchReceiver`] (the NAT's public socket) and [`send_udp_batch`] (the load
//! generator of `l2tpkit bench nat`). No call here allocates per packet or per batch.
//!
//! These are the only `unsafe` calls of the project: thin, checked wrappers over libc.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Sends complete IPv4 packets as they are (IP_HDRINCL): the kernel routes them by their
/// destination and keeps our source address, checksums and all.
pub struct RawSender {
    fd: OwnedFd,
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

impl RawSender {
    /// Needs CAP_NET_RAW.
    pub fn new() -> io::Result<RawSender> {
        // SAFETY: plain socket(2); the result is checked before it is wrapped.
        let fd = check(unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::IPPROTO_RAW,
            )
        })?;
        // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(RawSender { fd })
    }

    /// Sends a batch of IPv4 packets, one sendmmsg per [`BATCH`]; nothing is allocated. A packet
    /// the kernel refuses (or one too short to carry an IPv4 header, which goes to 0.0.0.0) is
    /// skipped and the rest still go; returns how many were dealt with (all), or the error
    /// when none went out.
    pub fn send_batch(&self, packets: &[&[u8]]) -> io::Result<usize> {
        send_batch(self.fd.as_raw_fd(), packets, |packet| {
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

/// Packets per sendmmsg / recvmmsg call.
pub const BATCH: usize = 64;

/// Sends `packets` on a *connected* UDP socket (each one datagram), one sendmmsg per
/// [`BATCH`]; returns how many were dealt with (see `send_batch`). Nothing is allocated: the
/// load generator of `l2tpkit bench nat` calls this in its hot loop.
pub fn send_udp_batch(fd: RawFd, packets: &[&[u8]]) -> io::Result<usize> {
    send_batch(fd, packets, |_| None)
}

/// sendmmsg over `packets`, [`BATCH`] at a time, with the destination `name` gives each one
/// (none: the socket's connected peer). A packet the kernel refuses on its own (too long for
/// the MTU, no route) is skipped, so it does not take the rest of its batch with it. Returns
/// how many packets were dealt with, in order: all of them, unless a non-blocking socket's
/// buffer filled up (then the ones after that are left, and `Err(WouldBlock)` if that was the
/// first). An error is returned when not one packet went out.
fn send_batch(
    fd: RawFd,
    packets: &[&[u8]],
    name: impl Fn(&[u8]) -> Option<libc::sockaddr_in>,
) -> io::Result<usize> {
    let mut done = 0;
    let mut went_out = 0;
    let mut first_error = None;
    for chunk in packets.chunks(BATCH) {
        // SAFETY: all-zero sockaddr_in, iovec and mmsghdr values are valid (null pointers,
        // zero lengths); every one that is passed to the kernel is filled in below.
        let mut addrs: [libc::sockaddr_in; BATCH] = unsafe { std::mem::zeroed() };
        let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (i, packet) in chunk.iter().enumerate() {
            iovs[i] = libc::iovec {
                iov_base: packet.as_ptr() as *mut libc::c_void,
                iov_len: packet.len(),
            };
            let hdr = &mut msgs[i].msg_hdr;
            hdr.msg_iov = &mut iovs[i];
            hdr.msg_iovlen = 1;
            if let Some(addr) = name(packet) {
                addrs[i] = addr;
                hdr.msg_name = &mut addrs[i] as *mut libc::sockaddr_in as *mut libc::c_void;
                hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            }
        }
        let mut offset = 0;
        while offset < chunk.len() {
            // SAFETY: msgs[offset..chunk.len()] describe live buffers (the packets, iovs and
            // addrs outlive the call); the count passed does not exceed that slice.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    msgs[offset..].as_mut_ptr(),
                    (chunk.len() - offset) as u32,
                    0,
                )
            };
            if n >= 0 {
                offset += n as usize;
                went_out += n as usize;
                continue;
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock if done + offset == 0 => return Err(err),
                io::ErrorKind::WouldBlock => return Ok(done + offset),
                // The packet at `offset` failed: skip it, keep the first error.
                _ => {
                    tracing::debug!(%err, "a packet of a batch was refused");
                    first_error.get_or_insert(err);
                    offset += 1;
                }
            }
        }
        done += chunk.len();
    }
    match first_error {
        Some(err) if went_out == 0 => Err(err),
        _ => Ok(done),
    }
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

    /// Reads what is waiting on `fd` without blocking, up to the batch size. Returns how many
    /// datagrams; `Err(WouldBlock)` when there were none (what tokio's `try_io` expects). A
    /// datagram longer than a buffer is truncated (MSG_TRUNC is not asked for).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let n = self.buffers.len();
        // SAFETY: all-zero sockaddr_in, iovec and mmsghdr values are valid; the first `n` are
        // filled in below and each points into its own live buffer.
        let mut addrs: [libc::sockaddr_in; BATCH] = unsafe { std::mem::zeroed() };
        let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let headroom = self.headroom;
        for (i, buffer) in self.buffers.iter_mut().enumerate() {
            let room = &mut buffer[headroom..];
            iovs[i] = libc::iovec {
                iov_base: room.as_mut_ptr() as *mut libc::c_void,
                iov_len: room.len(),
            };
            let hdr = &mut msgs[i].msg_hdr;
            hdr.msg_iov = &mut iovs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_name = &mut addrs[i] as *mut libc::sockaddr_in as *mut libc::c_void;
            hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
        }
        // SAFETY: msgs[..n] describe live buffers that outlive the call.
        let got = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                n as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        let got = got as usize;
        if got == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        for i in 0..got {
            self.lens[i] = (msgs[i].msg_len as usize).min(self.buffers[i].len() - headroom);
            let addr = &addrs[i];
            self.sources[i] = if i32::from(addr.sin_family) == libc::AF_INET {
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

/// Receives the IPv4 frames that arrive on one interface (AF_PACKET, ETH_P_IP), in batches:
/// how a userspace NAT sees packets routed *through* it, which no UDP socket would get.
pub struct Tap {
    fd: OwnedFd,
    buffers: Vec<Vec<u8>>,
    lens: Vec<usize>,
}

/// Largest frame we take; the lab's MTU is 1500.
const FRAME: usize = 2048;
/// Ethernet header length: the tap hands IPv4 packets without it.
const ETHERNET: usize = 14;

impl Tap {
    /// Binds to `interface` (by name). Needs CAP_NET_RAW.
    pub fn open(interface: &str, batch: usize) -> io::Result<Tap> {
        let index = interface_index(interface)?;
        let protocol = (libc::ETH_P_IP as u16).to_be();
        // SAFETY: plain socket(2), result checked.
        let fd = check(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                i32::from(protocol),
            )
        })?;
        // SAFETY: fresh descriptor, owned here only.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: an all-zero sockaddr_ll is valid; the fields we need are set below.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = protocol;
        addr.sll_ifindex = index;
        // SAFETY: addr is a valid sockaddr_ll of the size passed.
        check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        })?;
        // The default ~200 KB queue drops a burst of a few hundred SCCRPs; ask for 8 MB (forced
        // past rmem_max when we may, which is always true for a tap: it already needs root).
        let size: libc::c_int = 8 << 20;
        for option in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            // SAFETY: setsockopt on our socket with a c_int of the size passed.
            let ret = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    option,
                    &size as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if ret == 0 {
                break;
            }
        }
        let batch = batch.clamp(1, BATCH);
        Ok(Tap {
            fd,
            buffers: vec![vec![0u8; FRAME]; batch],
            lens: vec![0; batch],
        })
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Reads what is waiting (non-blocking): up to the batch size of frames. Returns how many;
    /// `packet(i)` then gives the i-th IPv4 packet. Frames we sent ourselves (outgoing) are
    /// not returned: `PACKET_OUTGOING` frames are filtered out.
    pub fn recv_batch(&mut self) -> io::Result<usize> {
        let n = self.buffers.len();
        // SAFETY: all-zero sockaddr_ll, iovec and mmsghdr values are valid; the first `n` are
        // filled in below, each pointing into its own live buffer.
        let mut addrs: [libc::sockaddr_ll; BATCH] = unsafe { std::mem::zeroed() };
        let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (i, buffer) in self.buffers.iter_mut().enumerate() {
            iovs[i] = libc::iovec {
                iov_base: buffer.as_mut_ptr() as *mut libc::c_void,
                iov_len: buffer.len(),
            };
            let hdr = &mut msgs[i].msg_hdr;
            hdr.msg_iov = &mut iovs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_name = &mut addrs[i] as *mut libc::sockaddr_ll as *mut libc::c_void;
            hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        }
        // SAFETY: msgs[..n] describe live buffers that outlive the call.
        let got = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                n as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock {
                return Ok(0);
            }
            return Err(err);
        }
        let mut kept = 0;
        for i in 0..got as usize {
            if addrs[i].sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            let len = (msgs[i].msg_len as usize).min(FRAME);
            if len <= ETHERNET {
                continue;
            }
            if kept != i {
                self.buffers.swap(kept, i);
            }
            self.lens[kept] = len;
            kept += 1;
        }
        Ok(kept)
    }

    /// The i-th IPv4 packet of the last batch, without its Ethernet header.
    pub fn packet(&mut self, i: usize) -> Option<&mut [u8]> {
        let len = *self.lens.get(i)?;
        self.buffers.get_mut(i)?.get_mut(ETHERNET..len)
    }

    /// The i-th frame's Ethernet source address (the sender's MAC, or its router's).
    pub fn source_mac(&self, i: usize) -> Option<[u8; 6]> {
        self.lens.get(i)?;
        self.buffers.get(i)?.get(6..12)?.try_into().ok()
    }

    /// The first `len` bytes of the i-th IPv4 packet as it stands now (after a rewrite).
    pub fn packet_ref(&self, i: usize, len: usize) -> Option<&[u8]> {
        let end = ETHERNET.checked_add(len)?.min(*self.lens.get(i)?);
        self.buffers.get(i)?.get(ETHERNET..end)
    }
}

/// Sends whole Ethernet frames out of one interface (AF_PACKET, sendmmsg): no routing, no
/// neighbour lookup, no netfilter, past the qdisc layer, so the caller must know the next
/// hop's MAC address. A socket of its own that receives nothing (protocol 0) and that nobody
/// polls: the kernel then has no one to wake each time a sent frame is freed (a tap that
/// also sent would wake its epoll once a packet).
pub struct FrameSender {
    fd: OwnedFd,
    mac: [u8; 6],
}

impl FrameSender {
    /// Needs CAP_NET_RAW; fails on an interface that is not Ethernet.
    pub fn open(interface: &str) -> io::Result<FrameSender> {
        let index = interface_index(interface)?;
        // SAFETY: plain socket(2), result checked.
        let fd = check(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        })?;
        // SAFETY: fresh descriptor, owned here only.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: an all-zero sockaddr_ll is valid; protocol 0: nothing is received.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = index;
        // SAFETY: addr is a valid sockaddr_ll of the size passed.
        check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        })?;
        let one: libc::c_int = 1;
        let size: libc::c_int = 8 << 20;
        // Optimizations; failing them changes nothing else.
        // SAFETY: setsockopt on our socket with c_int values of the size passed.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            for option in [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF] {
                let ret = libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    option,
                    &size as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
                if ret == 0 {
                    break;
                }
            }
        }
        let mac = hardware_address(fd.as_raw_fd(), interface)?;
        Ok(FrameSender { fd, mac })
    }

    /// The interface's own MAC address: the source address for the frames.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Sends the frames in one sendmmsg per [`BATCH`]. Non-blocking: returns how many were dealt
    /// with, in order (a frame the kernel refuses is skipped), which is fewer than given when
    /// the send buffer filled up (`Ok(0)` then, not `WouldBlock`): the rest are the caller's.
    pub fn send(&self, frames: &[&[u8]]) -> io::Result<usize> {
        match send_batch(self.fd.as_raw_fd(), frames, |_| None) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(0),
            other => other,
        }
    }
}

/// Every frame on one interface (AF_PACKET, ETH_P_ALL), one at a time: a port of the lab's
/// userspace switch, which needs ARP as well as IPv4 and must not hear its own frames back
/// (PACKET_IGNORE_OUTGOING). Each received frame says whether its UDP/TCP checksum is still
/// to be filled in (checksum offload on the sender's veth), from PACKET_AUXDATA.
pub struct FramePort {
    fd: OwnedFd,
    buf: Vec<u8>,
    /// When the kernel took the last frame received (ports opened with `open_stamped`).
    arrival: Option<std::time::Duration>,
}

impl FramePort {
    /// Needs CAP_NET_RAW.
    pub fn open(interface: &str) -> io::Result<FramePort> {
        let index = interface_index(interface)?;
        let protocol = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2), result checked.
        let fd = check(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                i32::from(protocol),
            )
        })?;
        // SAFETY: fresh descriptor, owned here only.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let one: libc::c_int = 1;
        for option in [libc::PACKET_IGNORE_OUTGOING, libc::PACKET_AUXDATA] {
            // SAFETY: setsockopt on our socket with a c_int of the size passed.
            check(unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_PACKET,
                    option,
                    &one as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            })?;
        }
        let size: libc::c_int = 8 << 20;
        for options in [
            [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF],
            [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF],
        ] {
            for option in options {
                // SAFETY: setsockopt on our socket with a c_int of the size passed.
                let ret = unsafe {
                    libc::setsockopt(
                        fd.as_raw_fd(),
                        libc::SOL_SOCKET,
                        option,
                        &size as *const libc::c_int as *const libc::c_void,
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    )
                };
                if ret == 0 {
                    break;
                }
            }
        }
        // SAFETY: an all-zero sockaddr_ll is valid; the fields we need are set below.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = protocol;
        addr.sll_ifindex = index;
        // SAFETY: addr is a valid sockaddr_ll of the size passed.
        check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        })?;
        Ok(FramePort {
            fd,
            buf: vec![0u8; FRAME],
            arrival: None,
        })
    }

    /// As [`FramePort::open`], and the kernel stamps each frame as it takes it
    /// (SO_TIMESTAMPNS): a capture beside the forwarding path orders frames as they happened,
    /// not as it got to read them. [`FramePort::arrival`] gives the last frame's stamp.
    pub fn open_stamped(interface: &str) -> io::Result<FramePort> {
        let port = FramePort::open(interface)?;
        let one: libc::c_int = 1;
        // SAFETY: setsockopt on our socket with a c_int of the size passed.
        check(unsafe {
            libc::setsockopt(
                port.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })?;
        Ok(port)
    }

    /// The wall-clock time the kernel took the last frame [`FramePort::recv`] returned, since
    /// the Unix epoch; `None` unless opened with [`FramePort::open_stamped`].
    pub fn arrival(&self) -> Option<std::time::Duration> {
        self.arrival
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The next frame waiting (non-blocking), and whether its checksum is partial; `None` when
    /// nothing is. Frames longer than 2 KB come truncated (the lab's MTU is 1500).
    pub fn recv(&mut self) -> io::Result<Option<(&mut [u8], bool)>> {
        // u64s: the control buffer must be aligned for cmsghdr. Room for the auxdata and a
        // timestamp.
        let mut control = [0u64; 16];
        self.arrival = None;
        let mut iov = libc::iovec {
            iov_base: self.buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: self.buf.len(),
        };
        // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: msg describes live buffers of the sizes given.
        let got = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        if got < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock {
                return Ok(None);
            }
            return Err(err);
        }
        let len = (got as usize).min(self.buf.len());
        let mut partial = false;
        // SAFETY: msg was filled in by recvmsg; the CMSG macros walk its control buffer within
        // msg_controllen, and the auxdata is read unaligned.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_PACKET
                    && (*cmsg).cmsg_type == libc::PACKET_AUXDATA
                {
                    let aux = std::ptr::read_unaligned(
                        libc::CMSG_DATA(cmsg) as *const libc::tpacket_auxdata
                    );
                    partial = aux.tp_status & libc::TP_STATUS_CSUMNOTREADY != 0;
                } else if (*cmsg).cmsg_level == libc::SOL_SOCKET
                    && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
                {
                    let at =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::timespec);
                    self.arrival = u64::try_from(at.tv_sec)
                        .ok()
                        .zip(u32::try_from(at.tv_nsec).ok())
                        .map(|(s, ns)| std::time::Duration::new(s, ns));
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        Ok(Some((&mut self.buf[..len], partial)))
    }

    /// Sends one whole frame out of the interface. A full send buffer drops it
    /// (`WouldBlock`), as a full link would.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: frame is a live buffer of the length given; the socket is bound to its
        // interface, so no address is needed.
        let sent = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Waits until one of `fds` is readable, or `timeout` (rounded up to whole milliseconds)
/// has passed: poll(2). Their `revents` say which; returns how many are ready (0: the
/// timeout). A signal ends the wait early with `Ok(0)`.
pub fn poll_readable(fds: &mut [libc::pollfd], timeout: std::time::Duration) -> io::Result<usize> {
    let millis = i32::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
    for fd in fds.iter_mut() {
        fd.events = libc::POLLIN;
        fd.revents = 0;
    }
    // SAFETY: fds is a live, exclusively borrowed array of pollfd of the length passed.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
    if ready < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(err);
    }
    Ok(ready as usize)
}

/// SIOCGIFHWADDR on `fd` for `interface`: its MAC address; an error for an interface that is
/// not Ethernet.
fn hardware_address(fd: RawFd, interface: &str) -> io::Result<[u8; 6]> {
    // SAFETY: an all-zero ifreq is valid.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = interface.as_bytes();
    if name.len() >= request.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {interface:?} too long"),
        ));
    }
    for (to, from) in request.ifr_name.iter_mut().zip(name) {
        *to = *from as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR reads ifr_name and writes ifr_hwaddr inside `request`.
    check(unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut request) })?;
    // SAFETY: after SIOCGIFHWADDR the union holds ifr_hwaddr.
    let hwaddr = unsafe { request.ifr_ifru.ifru_hwaddr };
    if hwaddr.sa_family != libc::ARPHRD_ETHER {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "{interface} is no Ethernet interface (ARPHRD {})",
                hwaddr.sa_family
            ),
        ));
    }
    let data = hwaddr.sa_data;
    let mut mac = [0u8; 6];
    for (to, from) in mac.iter_mut().zip(data.iter()) {
        *to = *from as u8;
    }
    Ok(mac)
}

fn interface_index(name: &str) -> io::Result<i32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name with NUL"))?;
    // SAFETY: c is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {name:?}"),
        ));
    }
    i32::try_from(index).map_err(|_| io::Error::other("interface index out of range"))
}

/// A classic BPF program for [`RxRing::open`]: IPv4 UDP frames (Ethernet header first) to
/// `addr`:`port`, whole (snap length 256 KB); everything else is not copied at all.
pub fn udp_to_filter(addr: Ipv4Addr, port: u16) -> Vec<libc::sock_filter> {
    const LD_H_ABS: u16 = 0x28;
    const LD_B_ABS: u16 = 0x30;
    const LD_W_ABS: u16 = 0x20;
    const LDX_B_MSH: u16 = 0xb1;
    const LD_H_IND: u16 = 0x48;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
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

/// Attaches a classic BPF program to a socket (SO_ATTACH_FILTER).
pub fn attach_filter(fd: RawFd, program: &[libc::sock_filter]) -> io::Result<()> {
    let len = u16::try_from(program.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "BPF program too long"))?;
    let fprog = libc::sock_fprog {
        len,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: fprog points at `program`, which outlives the call; the kernel copies it.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            &fprog as *const libc::sock_fprog as *const libc::c_void,
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// A BPF program that takes nothing: on a UDP socket it keeps the port ours (no ICMP port
/// unreachable) while an [`RxRing`] receives what arrives there.
pub fn drop_all_filter() -> Vec<libc::sock_filter> {
    vec![libc::sock_filter {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: 0,
    }]
}

/// The name of the interface that holds `addr` (getifaddrs).
pub fn interface_with_address(addr: Ipv4Addr) -> io::Result<String> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` on success; it is freed below.
    check(unsafe { libc::getifaddrs(&mut list) })?;
    let mut found = None;
    let mut cursor = list;
    while !cursor.is_null() {
        // SAFETY: cursor walks the list getifaddrs made, which stays valid until freeifaddrs.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        if entry.ifa_addr.is_null() || entry.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and at least a sockaddr.
        let family = i32::from(unsafe { (*entry.ifa_addr).sa_family });
        if family != libc::AF_INET {
            continue;
        }
        // SAFETY: an AF_INET ifa_addr is a sockaddr_in.
        let sin = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in) };
        if Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)) == addr {
            // SAFETY: ifa_name is a NUL-terminated string owned by the list.
            let name = unsafe { std::ffi::CStr::from_ptr(entry.ifa_name) };
            found = Some(name.to_string_lossy().into_owned());
            break;
        }
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    found.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface holds {addr}"),
        )
    })
}

/// A receive ring (AF_PACKET, TPACKET_V2, memory-mapped) on one interface: the kernel copies
/// each frame the filter takes into the ring and the reader takes frames from it without a
/// system call per packet or per batch (PEERS.md: the fastest receive path measured here).
/// Frames are worked on in place, sent on from there (sendmmsg reads them out of the ring) and
/// then handed back with [`RxRing::release`].
pub struct RxRing {
    fd: OwnedFd,
    map: std::ptr::NonNull<u8>,
    map_len: usize,
    frame_size: usize,
    frames: usize,
    /// The next frame the kernel fills, in order.
    next: usize,
}

// SAFETY: the mapping belongs to this value alone (nothing else holds its address), so moving
// the value to another thread moves the only access to it.
unsafe impl Send for RxRing {}

/// One frame in an [`RxRing`].
pub struct RingFrame<'a> {
    /// From the link-layer header on (the Ethernet header for SOCK_RAW on Ethernet).
    pub data: &'a mut [u8],
    /// Where the IPv4 header starts in `data`.
    pub network: usize,
    /// The frame was longer than the ring's frames: `data` holds only its start.
    pub truncated: bool,
    /// The UDP/TCP checksum is not filled in yet (TP_STATUS_CSUMNOTREADY: locally sent, or
    /// checksum offload): recompute it before trusting or updating it.
    pub checksum_partial: bool,
}

impl RxRing {
    /// Frames of this many bytes (header included) hold a 1500-byte-MTU frame whole.
    const FRAME: usize = 2048;
    /// 128 blocks of 64 frames: 8192 frames (~18 ms at 450k packets/s), 16 MB.
    const BLOCK: usize = 64 * RxRing::FRAME;
    const BLOCKS: usize = 128;

    /// Opens a ring on `interface` for IPv4 frames that `filter` takes (attached before the
    /// socket is bound, so nothing else gets in). Frames longer than ~1.9 KB arrive truncated.
    pub fn open(interface: &str, filter: &[libc::sock_filter]) -> io::Result<RxRing> {
        let index = interface_index(interface)?;
        let protocol = (libc::ETH_P_IP as u16).to_be();
        // Protocol 0 until bound: no frame is queued before the filter is in place.
        // SAFETY: plain socket(2), result checked.
        let fd = check(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        })?;
        // SAFETY: fresh descriptor, owned here only.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        attach_filter(fd.as_raw_fd(), filter)?;
        let version: libc::c_int = 1; // TPACKET_V2
                                      // SAFETY: setsockopt with a c_int of the size passed.
        check(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_VERSION,
                &version as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })?;
        let request = libc::tpacket_req {
            tp_block_size: RxRing::BLOCK as u32,
            tp_block_nr: RxRing::BLOCKS as u32,
            tp_frame_size: RxRing::FRAME as u32,
            tp_frame_nr: (RxRing::BLOCK / RxRing::FRAME * RxRing::BLOCKS) as u32,
        };
        // SAFETY: setsockopt with a tpacket_req of the size passed.
        check(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_RX_RING,
                &request as *const libc::tpacket_req as *const libc::c_void,
                std::mem::size_of::<libc::tpacket_req>() as libc::socklen_t,
            )
        })?;
        let map_len = RxRing::BLOCK * RxRing::BLOCKS;
        // SAFETY: maps the ring the kernel just made for this socket; checked below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let map = std::ptr::NonNull::new(map as *mut u8)
            .ok_or_else(|| io::Error::other("mmap returned null"))?;
        let ring = RxRing {
            fd,
            map,
            map_len,
            frame_size: RxRing::FRAME,
            frames: map_len / RxRing::FRAME,
            next: 0,
        };
        // SAFETY: an all-zero sockaddr_ll is valid; the fields we need are set below.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = protocol;
        addr.sll_ifindex = index;
        // SAFETY: addr is a valid sockaddr_ll of the size passed.
        check(unsafe {
            libc::bind(
                ring.fd.as_raw_fd(),
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        })?;
        Ok(ring)
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    fn header(&self, index: usize) -> *mut libc::tpacket2_hdr {
        debug_assert!(index < self.frames);
        // SAFETY: index < frames, so the frame lies inside the mapping.
        unsafe { self.map.as_ptr().add(index * self.frame_size) as *mut libc::tpacket2_hdr }
    }

    fn status(&self, index: usize) -> &std::sync::atomic::AtomicU32 {
        // SAFETY: tp_status is the first field of the frame header, 4-byte aligned (frames
        // are page-aligned multiples of 16), and the kernel and we hand the frame over through
        // it: an atomic view is the way to read and write it.
        unsafe { &*(self.header(index) as *const std::sync::atomic::AtomicU32) }
    }

    /// Takes the frames the kernel has handed over, in order, up to `out.len()`: their indices
    /// go into `out`. Returns how many. Each must be [`release`](RxRing::release)d.
    pub fn take(&mut self, out: &mut [usize]) -> usize {
        let mut count = 0;
        for slot in out.iter_mut() {
            let status = self
                .status(self.next)
                .load(std::sync::atomic::Ordering::Acquire);
            if status & libc::TP_STATUS_USER == 0 {
                break;
            }
            *slot = self.next;
            self.next = (self.next + 1) % self.frames;
            count += 1;
        }
        count
    }

    /// Frame `index` (taken, not yet released).
    pub fn frame(&mut self, index: usize) -> Option<RingFrame<'_>> {
        if index >= self.frames {
            return None;
        }
        // SAFETY: the frame is ours until released (its status says so), and the header lies
        // inside the mapping.
        let header = unsafe { std::ptr::read(self.header(index)) };
        let mac = usize::from(header.tp_mac);
        let snap = header.tp_snaplen as usize;
        if mac + snap > self.frame_size {
            return None;
        }
        let network = usize::from(header.tp_net).checked_sub(mac)?;
        // SAFETY: [mac, mac + snap) lies inside this frame, which only we touch until release;
        // the borrow of `self` keeps another `frame` call from aliasing it.
        let data = unsafe {
            std::slice::from_raw_parts_mut(
                self.map.as_ptr().add(index * self.frame_size + mac),
                snap,
            )
        };
        Some(RingFrame {
            data,
            network,
            truncated: header.tp_len > header.tp_snaplen,
            checksum_partial: header.tp_status & libc::TP_STATUS_CSUMNOTREADY != 0,
        })
    }

    /// `len` bytes of frame `index` from `offset` into its data (as [`RingFrame::data`]).
    pub fn bytes(&self, index: usize, offset: usize, len: usize) -> Option<&[u8]> {
        if index >= self.frames {
            return None;
        }
        // SAFETY: as in `frame`, read-only.
        let header = unsafe { std::ptr::read(self.header(index)) };
        let mac = usize::from(header.tp_mac);
        let snap = header.tp_snaplen as usize;
        if mac + snap > self.frame_size || offset.checked_add(len)? > snap {
            return None;
        }
        // SAFETY: the range lies inside the frame, checked above.
        Some(unsafe {
            std::slice::from_raw_parts(
                self.map
                    .as_ptr()
                    .add(index * self.frame_size + mac + offset),
                len,
            )
        })
    }

    /// Hands frame `index` back to the kernel.
    pub fn release(&mut self, index: usize) {
        if index < self.frames {
            self.status(index)
                .store(libc::TP_STATUS_KERNEL, std::sync::atomic::Ordering::Release);
        }
    }

    /// Frames the ring had no room for since the last call (PACKET_STATISTICS, which resets).
    pub fn drops(&self) -> io::Result<u64> {
        // SAFETY: an all-zero tpacket_stats is valid.
        let mut stats: libc::tpacket_stats = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `stats`.
        check(unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                &mut stats as *mut libc::tpacket_stats as *mut libc::c_void,
                &mut len,
            )
        })?;
        Ok(u64::from(stats.tp_drops))
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`, once; nothing borrows it now.
        unsafe {
            libc::munmap(self.map.as_ptr() as *mut libc::c_void, self.map_len);
        }
    }
}

/// A UDP socket bound to `addr`, non-blocking, with SO_REUSEADDR set before the bind when
/// `reuse_addr`. Two sockets that both set it may share a port when their addresses differ
/// (one of them the wildcard): an endpoint on 0.0.0.0:1701 that takes over the master binds
/// the cluster address's 1701 beside it, and the kernel hands each datagram to the socket with
/// the more specific address (the master's, for the cluster address).
pub fn udp_socket(addr: SocketAddrV4, reuse_addr: bool) -> io::Result<std::net::UdpSocket> {
    // SAFETY: plain socket(2), result checked before it is wrapped.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    })?;
    // SAFETY: fresh descriptor, owned here only.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if reuse_addr {
        let one: libc::c_int = 1;
        // SAFETY: setsockopt on our socket with a c_int of the size passed.
        check(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })?;
    }
    let mut sin = sockaddr(*addr.ip());
    sin.sin_port = addr.port().to_be();
    // SAFETY: sin is a valid sockaddr_in of the size passed.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sin as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    })?;
    Ok(std::net::UdpSocket::from(fd))
}

/// ARP frames on one interface (AF_PACKET, ETH_P_ARP): the probes and announcements of a
/// master claiming its address, and the answers to them.
pub struct ArpSocket {
    fd: OwnedFd,
    mac: [u8; 6],
}

impl ArpSocket {
    /// Needs CAP_NET_RAW; fails on an interface that is not Ethernet.
    pub fn open(interface: &str) -> io::Result<ArpSocket> {
        let index = interface_index(interface)?;
        let protocol = (libc::ETH_P_ARP as u16).to_be();
        // SAFETY: plain socket(2), result checked.
        let fd = check(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                i32::from(protocol),
            )
        })?;
        // SAFETY: fresh descriptor, owned here only.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: an all-zero sockaddr_ll is valid; the fields we need are set below.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = protocol;
        addr.sll_ifindex = index;
        // SAFETY: addr is a valid sockaddr_ll of the size passed.
        check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        })?;
        let mac = hardware_address(fd.as_raw_fd(), interface)?;
        Ok(ArpSocket { fd, mac })
    }

    /// The interface's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Sends one whole Ethernet frame out of the interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: the buffer is live for the call and its length is passed.
        let sent = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The next frame that arrived (not one we sent), waiting at most `timeout`: its length
    /// in `buf`, or `None` when none came in time.
    pub fn recv(&self, buf: &mut [u8], timeout: std::time::Duration) -> io::Result<Option<usize>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let mut pollfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
            // SAFETY: one valid pollfd, count 1.
            let ready = unsafe { libc::poll(&mut pollfd, 1, ms) };
            if ready < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            if ready == 0 {
                return Ok(None);
            }
            // SAFETY: an all-zero sockaddr_ll is valid for recvfrom to fill.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: buf and from are live and their sizes are passed.
            let got = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    &mut from as *mut libc::sockaddr_ll as *mut libc::sockaddr,
                    &mut from_len,
                )
            };
            if got < 0 {
                let err = io::Error::last_os_error();
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) {
                    continue;
                }
                return Err(err);
            }
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            return Ok(Some(got as usize));
        }
    }
}
