//! AF_PACKET sockets on one interface: the NAT's LAN tap ([`Tap`]), its frame sender
//! ([`FrameSender`]), and a port of the lab's userspace switch ([`FramePort`]).

use std::io;
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use nix::sys::socket::{getsockopt, recvmsg, setsockopt, ControlMessageOwned, MsgFlags};
use socket2::Socket;

use crate::mmsg::{self, RawName, BATCH};
use crate::packet::{
    self, PacketAuxdata, PacketIgnoreOutgoing, PacketQdiscBypass, PacketStatistics, ETHERNET, FRAME,
};

/// Socket buffers the taps and ports ask for: the default ~200 KB drops a burst of a few
/// hundred SCCRPs.
const BUFFER: usize = 8 << 20;

/// A [`Tap`] registered with tokio.
pub type AsyncTap = crate::reactor::AsyncSocket<Tap>;

/// Receives the IPv4 frames that arrive on one interface (AF_PACKET, ETH_P_IP), in batches:
/// how a userspace NAT sees packets routed *through* it, which no UDP socket would get.
pub struct Tap {
    socket: Socket,
    buffers: Vec<Vec<u8>>,
    lens: Vec<usize>,
}

impl Tap {
    /// Binds to `interface` (by name). Needs CAP_NET_RAW.
    pub fn open(interface: &str, batch: usize) -> io::Result<Tap> {
        let socket = packet::open(interface, libc::ETH_P_IP as u16, |socket| {
            // Forced past rmem_max when we may, which is always true for a tap: it already
            // needs root.
            packet::grow_buffers(socket, BUFFER, true, false);
            // Our own frame sender's frames would come back as copies, each cloned, queued,
            // woken for and read only to be dropped. Best effort (Linux 4.20+): `recv_batch`
            // still drops PACKET_OUTGOING frames where the kernel does not.
            let _ = setsockopt(socket, PacketIgnoreOutgoing, &true);
            Ok(())
        })?;
        let batch = batch.clamp(1, BATCH);
        Ok(Tap {
            socket,
            buffers: vec![vec![0u8; FRAME]; batch],
            lens: vec![0; batch],
        })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Frames the socket's buffer had no room for since the last call (PACKET_STATISTICS,
    /// which resets).
    pub fn drops(&self) -> io::Result<u64> {
        let stats = getsockopt(&self.socket, PacketStatistics)?;
        Ok(u64::from(stats.tp_drops))
    }

    /// Reads what is waiting (non-blocking): up to the batch size of frames. Returns how many;
    /// `packet(i)` then gives the i-th IPv4 packet. Frames we sent ourselves (outgoing) are
    /// not returned: `PACKET_OUTGOING` frames are filtered out.
    pub fn recv_batch(&mut self) -> io::Result<usize> {
        let mut names = [libc::sockaddr_ll::EMPTY; BATCH];
        let mut lens = [0usize; BATCH];
        let got = match mmsg::recv(
            self.socket.as_fd(),
            &mut self.buffers,
            0,
            &mut names,
            &mut lens,
        ) {
            Ok(got) => got,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(err) => return Err(err),
        };
        let mut kept = 0;
        for i in 0..got {
            if names[i].sll_pkttype == libc::PACKET_OUTGOING || lens[i] <= ETHERNET {
                continue;
            }
            if kept != i {
                self.buffers.swap(kept, i);
            }
            self.lens[kept] = lens[i];
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

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// Sends whole Ethernet frames out of one interface (AF_PACKET, sendmmsg): no routing, no
/// neighbour lookup, no netfilter, past the qdisc layer, so the caller must know the next
/// hop's MAC address. A socket of its own that receives nothing (protocol 0) and that nobody
/// polls: the kernel then has no one to wake each time a sent frame is freed (a tap that
/// also sent would wake its epoll once a packet).
pub struct FrameSender {
    socket: Socket,
    mac: [u8; 6],
}

impl FrameSender {
    /// Needs CAP_NET_RAW; fails on an interface that is not Ethernet.
    pub fn open(interface: &str) -> io::Result<FrameSender> {
        let socket = packet::open(interface, 0, |socket| {
            // Optimizations; failing them changes nothing else.
            let _ = setsockopt(socket, PacketQdiscBypass, &true);
            packet::grow_buffers(socket, BUFFER, false, true);
            Ok(())
        })?;
        let mac = crate::iface::hardware_address(interface)?;
        Ok(FrameSender { socket, mac })
    }

    /// The interface's own MAC address: the source address for the frames.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Sends the frames in one sendmmsg per [`BATCH`]. Non-blocking: returns how many were dealt
    /// with, in order (a frame the kernel refuses is skipped), which is fewer than given when
    /// the send buffer filled up (`Ok(0)` then, not `WouldBlock`): the rest are the caller's.
    pub fn send(&self, frames: &[&[u8]]) -> io::Result<usize> {
        match mmsg::send(self.socket.as_fd(), frames, |_| None) {
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
    socket: Socket,
    buf: Vec<u8>,
    /// Room for one PACKET_AUXDATA and one timestamp control message, reused.
    control: Vec<u8>,
    /// When the kernel took the last frame received (ports opened with `open_stamped`).
    arrival: Option<std::time::Duration>,
}

impl FramePort {
    /// Needs CAP_NET_RAW.
    pub fn open(interface: &str) -> io::Result<FramePort> {
        let socket = packet::open(interface, libc::ETH_P_ALL as u16, |socket| {
            setsockopt(socket, PacketIgnoreOutgoing, &true)?;
            setsockopt(socket, PacketAuxdata, &true)?;
            packet::grow_buffers(socket, BUFFER, true, true);
            Ok(())
        })?;
        Ok(FramePort {
            socket,
            buf: vec![0u8; FRAME],
            control: nix::cmsg_space!(libc::tpacket_auxdata, nix::sys::time::TimeSpec),
            arrival: None,
        })
    }

    /// As [`FramePort::open`], and the kernel stamps each frame as it takes it
    /// (SO_TIMESTAMPNS): a capture beside the forwarding path orders frames as they happened,
    /// not as it got to read them. [`FramePort::arrival`] gives the last frame's stamp.
    pub fn open_stamped(interface: &str) -> io::Result<FramePort> {
        let port = FramePort::open(interface)?;
        setsockopt(
            &port.socket,
            nix::sys::socket::sockopt::ReceiveTimestampns,
            &true,
        )?;
        Ok(port)
    }

    /// The wall-clock time the kernel took the last frame [`FramePort::recv`] returned, since
    /// the Unix epoch; `None` unless opened with [`FramePort::open_stamped`].
    pub fn arrival(&self) -> Option<std::time::Duration> {
        self.arrival
    }

    pub fn raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// The next frame waiting (non-blocking), and whether its checksum is partial; `None` when
    /// nothing is. Frames longer than 2 KB come truncated (the lab's MTU is 1500).
    pub fn recv(&mut self) -> io::Result<Option<(&mut [u8], bool)>> {
        let mut iov = [IoSliceMut::new(&mut self.buf)];
        let got = match recvmsg::<()>(
            self.socket.as_raw_fd(),
            &mut iov,
            Some(&mut self.control),
            MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(got) => got,
            Err(nix::errno::Errno::EAGAIN) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let len = got.bytes;
        let mut partial = false;
        self.arrival = None;
        for cmsg in got.cmsgs()? {
            if let ControlMessageOwned::ScmTimestampns(at) = cmsg {
                self.arrival = u64::try_from(at.tv_sec())
                    .ok()
                    .zip(u32::try_from(at.tv_nsec()).ok())
                    .map(|(s, ns)| std::time::Duration::new(s, ns));
            } else if let ControlMessageOwned::Unknown(aux) = cmsg {
                let header = &aux.cmsg_header;
                // tpacket_auxdata starts with its u32 tp_status.
                if header.cmsg_level == libc::SOL_PACKET && header.cmsg_type == libc::PACKET_AUXDATA
                {
                    let status = aux
                        .data_bytes
                        .get(..4)
                        .and_then(|b| b.try_into().ok())
                        .map_or(0, u32::from_ne_bytes);
                    partial = status & libc::TP_STATUS_CSUMNOTREADY != 0;
                }
            }
        }
        let len = len.min(self.buf.len());
        Ok(Some((&mut self.buf[..len], partial)))
    }

    /// Sends one whole frame out of the interface. A full send buffer drops it
    /// (`WouldBlock`), as a full link would.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // Non-blocking socket: a full buffer is WouldBlock. Bound to its interface: no address.
        self.socket.send(frame).map(drop)
    }
}
