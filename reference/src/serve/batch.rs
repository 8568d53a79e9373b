//! Moving packets in batches, shared by the master and the NAT: a UDP socket read with
//! recvmmsg into buffers with room in front for the headers, and the LAN side that sends a
//! batch's picks in one sendmmsg, as Ethernet frames or as IPv4 packets.

use std::io;
use std::net::SocketAddrV4;

use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::ipv4::{write_ipv4_udp, ETHERNET, IPV4_UDP, MAX_PAYLOAD};
use super::ServeError;
use netio::tap::FrameSender;
use netio::udp::{RawSender, UdpBatchReceiver};
use netio::BATCH;

/// recvmmsg batches read from a public socket per wake-up before the loop's other sources and
/// timers get a turn.
pub(super) const BATCHES_PER_WAKE: usize = 16;

/// A UDP socket bound to `local` (the cluster or global address), read in recvmmsg batches.
/// Each datagram lands `front + 28` bytes into its buffer: the IPv4/UDP header as the
/// initiator sent it is written in the 28, and `front` is left for the caller (the NAT's
/// Ethernet header).
pub(super) struct DatagramBatches {
    socket: UdpSocket,
    rx: UdpBatchReceiver,
    local: SocketAddrV4,
    front: usize,
}

impl DatagramBatches {
    pub(super) fn new(socket: UdpSocket, local: SocketAddrV4, front: usize) -> DatagramBatches {
        DatagramBatches {
            socket,
            rx: UdpBatchReceiver::new(BATCH, front + IPV4_UDP, MAX_PAYLOAD),
            local,
            front,
        }
    }

    pub(super) fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Resolves when the socket may have datagrams.
    pub(super) async fn readable(&self) -> Result<(), ServeError> {
        self.socket.readable().await.map_err(ServeError::Socket)
    }

    /// One recvmmsg batch, without waiting: how many datagrams (0: none was waiting).
    pub(super) fn recv(&mut self) -> Result<usize, ServeError> {
        let (rx, socket) = (&mut self.rx, &self.socket);
        match socket.try_io(Interest::READABLE, || rx.recv(socket)) {
            Ok(n) => Ok(n),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(err) => Err(ServeError::Socket(err)),
        }
    }

    /// The i-th datagram of the last batch as an IPv4 packet, its header written: the room
    /// in front of it and the packet. None when it is too long for IPv4.
    pub(super) fn packet(&mut self, i: usize) -> Option<(&mut [u8], &mut [u8])> {
        let (buffer, from) = self.rx.datagram(i)?;
        let (front, packet) = buffer.split_at_mut(self.front);
        write_ipv4_udp(packet, from, self.local).then_some((front, packet))
    }

    /// `len` bytes of the i-th buffer from `at` (0: the start of the room in front).
    pub(super) fn bytes(&self, i: usize, at: usize, len: usize) -> Option<&[u8]> {
        self.rx.buffer(i, at + len)?.get(at..)
    }

    /// The hot path of the master and the NAT: up to [`BATCHES_PER_WAKE`] recvmmsg batches,
    /// each routed in place by `route` (given the batch and how many datagrams it holds) and
    /// its picks sent on the LAN in one sendmmsg.
    pub(super) fn forward(
        &mut self,
        lan: &LanSender,
        mut route: impl FnMut(&mut DatagramBatches, usize) -> Picks,
    ) -> Result<Sent, ServeError> {
        let mut sent = Sent::default();
        for _ in 0..BATCHES_PER_WAKE {
            let n = self.recv()?;
            if n == 0 {
                break;
            }
            let picks = route(self, n);
            let went = lan.send(|i, at, len| self.bytes(i, at, len), &picks);
            sent.frames += went.frames;
            sent.raw += went.raw;
        }
        Ok(sent)
    }
}

/// A packet of a batch to send: (buffer, offset, length) in the batch's buffers.
pub(super) type Pick = (usize, usize, usize);

/// Where the packets of one batch go: as Ethernet frames on the LAN (each pick from its
/// Ethernet header), or as IPv4 packets through the raw socket (from the IPv4 header).
pub(super) struct Picks {
    frames: [Pick; BATCH],
    frame_count: usize,
    packets: [Pick; BATCH],
    packet_count: usize,
}

impl Picks {
    pub(super) fn new() -> Picks {
        Picks {
            frames: [(0, 0, 0); BATCH],
            frame_count: 0,
            packets: [(0, 0, 0); BATCH],
            packet_count: 0,
        }
    }

    pub(super) fn frame(&mut self, pick: Pick) {
        if let Some(slot) = self.frames.get_mut(self.frame_count) {
            *slot = pick;
            self.frame_count += 1;
        }
    }

    pub(super) fn packet(&mut self, pick: Pick) {
        if let Some(slot) = self.packets.get_mut(self.packet_count) {
            *slot = pick;
            self.packet_count += 1;
        }
    }
}

/// How a batch went out.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Sent {
    pub(super) frames: u64,
    pub(super) raw: u64,
}

/// The way onto the LAN: the raw IP socket (the kernel routes and resolves), and Ethernet
/// frames straight on the interface when the runner knows the next hop's MAC address.
pub(super) struct LanSender {
    pub(super) raw: RawSender,
    pub(super) frames: Option<FrameSender>,
}

impl LanSender {
    /// Sends what a batch picked: frames on the interface (what it does not take goes the raw
    /// way too), packets through the raw socket. `bytes(buffer, offset, length)` reads the
    /// batch's buffers.
    pub(super) fn send<'b>(
        &self,
        bytes: impl Fn(usize, usize, usize) -> Option<&'b [u8]>,
        picks: &Picks,
    ) -> Sent {
        let mut sent = Sent::default();
        let mut refs: [&[u8]; BATCH] = [&[]; BATCH];
        let frames = &picks.frames[..picks.frame_count];
        for (slot, &(i, at, len)) in refs.iter_mut().zip(frames) {
            *slot = bytes(i, at, len).unwrap_or_default();
        }
        let went = match &self.frames {
            Some(sender) if !frames.is_empty() => sender.send(&refs[..frames.len()]),
            _ => Ok(0),
        };
        let taken = match went {
            Ok(taken) => taken,
            Err(err) => {
                tracing::debug!(%err, "sending frames on the LAN failed; using the raw socket");
                0
            }
        };
        sent.frames = taken as u64;
        // Frames the interface did not take, then the packets for neighbours we do not know:
        // as IPv4.
        let mut count = 0;
        let leftovers = frames[taken..]
            .iter()
            .map(|&(i, at, len)| (i, at + ETHERNET, len.saturating_sub(ETHERNET)))
            .chain(picks.packets[..picks.packet_count].iter().copied());
        for (i, at, len) in leftovers {
            if let (Some(slot), Some(packet)) = (refs.get_mut(count), bytes(i, at, len)) {
                *slot = packet;
                count += 1;
            }
        }
        if count > 0 {
            match self.raw.send_batch(&refs[..count]) {
                Ok(n) => sent.raw = n as u64,
                Err(err) => tracing::warn!(%err, packets = count, "forwarding to the LAN failed"),
            }
        }
        sent
    }
}
