//! Raw sockets for the forwarding roles (master, NAT): sending whole IPv4 packets whose source
//! is not ours (IP_HDRINCL), and tapping an interface for packets routed through us (AF_PACKET).
//! Both move packets in batches (sendmmsg / recvmmsg), as PEERS.md's measurements advise.
//!
//! These are the only `unsafe` calls of the project: thin, checked wrappers over libc.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

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

    /// Sends a batch of IPv4 packets; returns how many the kernel took. A packet too short to
    /// carry an IPv4 header is skipped (counted as sent: the caller built it, so it is a bug
    /// upstream, not a reason to stall the batch).
    pub fn send_batch(&self, packets: &[&[u8]]) -> io::Result<usize> {
        let mut sent = 0;
        for chunk in packets.chunks(64) {
            let mut addrs: Vec<libc::sockaddr_in> = Vec::with_capacity(chunk.len());
            let mut iovs: Vec<libc::iovec> = Vec::with_capacity(chunk.len());
            for packet in chunk {
                let dst = packet
                    .get(16..20)
                    .map(|b| Ipv4Addr::new(b[0], b[1], b[2], b[3]))
                    .unwrap_or(Ipv4Addr::UNSPECIFIED);
                addrs.push(sockaddr(dst));
                iovs.push(libc::iovec {
                    iov_base: packet.as_ptr() as *mut libc::c_void,
                    iov_len: packet.len(),
                });
            }
            let mut msgs: Vec<libc::mmsghdr> = (0..chunk.len())
                .map(|i| {
                    // SAFETY: an all-zero msghdr is a valid empty header.
                    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
                    hdr.msg_name = &mut addrs[i] as *mut libc::sockaddr_in as *mut libc::c_void;
                    hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                    hdr.msg_iov = &mut iovs[i];
                    hdr.msg_iovlen = 1;
                    libc::mmsghdr {
                        msg_hdr: hdr,
                        msg_len: 0,
                    }
                })
                .collect();
            let mut offset = 0;
            while offset < msgs.len() {
                // SAFETY: msgs, addrs and iovs outlive the call and describe valid buffers.
                let n = unsafe {
                    libc::sendmmsg(
                        self.fd.as_raw_fd(),
                        msgs[offset..].as_mut_ptr(),
                        (msgs.len() - offset) as u32,
                        0,
                    )
                };
                if n < 0 {
                    let err = io::Error::last_os_error();
                    if sent > 0 || offset > 0 {
                        return Ok(sent + offset);
                    }
                    return Err(err);
                }
                offset += n as usize;
            }
            sent += chunk.len();
        }
        Ok(sent)
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
        let batch = batch.clamp(1, 1024);
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
        let mut addrs: Vec<libc::sockaddr_ll> = (0..n)
            // SAFETY: all-zero sockaddr_ll is valid.
            .map(|_| unsafe { std::mem::zeroed() })
            .collect();
        let mut iovs: Vec<libc::iovec> = self
            .buffers
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = (0..n)
            .map(|i| {
                // SAFETY: all-zero msghdr is valid.
                let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
                hdr.msg_name = &mut addrs[i] as *mut libc::sockaddr_ll as *mut libc::c_void;
                hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                hdr.msg_iov = &mut iovs[i];
                hdr.msg_iovlen = 1;
                libc::mmsghdr {
                    msg_hdr: hdr,
                    msg_len: 0,
                }
            })
            .collect();
        // SAFETY: the vectors outlive the call; each iovec points into its own buffer.
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
