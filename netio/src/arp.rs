//! ARP frames on one interface (AF_PACKET, ETH_P_ARP).

use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvfrom, LinkAddr};
use socket2::Socket;

use crate::packet;

/// The probes and announcements of a master claiming its address, and the answers to them.
pub struct ArpSocket {
    socket: Socket,
    mac: [u8; 6],
}

impl ArpSocket {
    /// Needs CAP_NET_RAW; fails on an interface that is not Ethernet.
    pub fn open(interface: &str) -> io::Result<ArpSocket> {
        let socket = packet::open(interface, libc::ETH_P_ARP as u16, |_| Ok(()))?;
        let mac = crate::iface::hardware_address(interface)?;
        Ok(ArpSocket { socket, mac })
    }

    /// The interface's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Sends one whole Ethernet frame out of the interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        self.socket.send(frame).map(drop)
    }

    /// The next frame that arrived (not one we sent), waiting at most `timeout`: its length
    /// in `buf`, or `None` when none came in time.
    pub fn recv(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>> {
        use std::os::fd::AsRawFd;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = PollTimeout::try_from(left.as_millis()).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, ms) {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(err) => return Err(err.into()),
            }
            match recvfrom::<LinkAddr>(self.socket.as_raw_fd(), buf) {
                Ok((_, Some(from))) if from.pkttype() == libc::PACKET_OUTGOING => continue,
                Ok((got, _)) => return Ok(Some(got)),
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
                Err(err) => return Err(err.into()),
            }
        }
    }
}
