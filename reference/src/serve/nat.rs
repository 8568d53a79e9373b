//! The NAT's runner (FIG 2): the public side in batches from a receive ring (or the UDP
//! socket), the LAN side from a tap, each packet rewritten in place by the sans-IO
//! [`crate::nat::Nat`] and each batch sent on in one sendmmsg.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use l2tp::time::Instant;

use super::batch::{DatagramBatches, LanSender, Picks, BATCHES_PER_WAKE};
use super::event_loop::{EventLoop, PcapTee, ServeOptions, Turn, Wake};
use super::ipv4::{complete_udp_checksum, total_len, ETHERNET};
use super::neighbours::Neighbours;
use super::ring::{ring_drops, ring_ready, PublicRing};
use super::{bind_udp, ServeError};
use crate::control::{self, Request};
use crate::nat::{Nat, NatConfig, NatStats, Verdict};
use netio::filter::{attach_filter, drop_all_filter, udp_to_filter};
use netio::iface::interface_with_address;
use netio::ring::RxRing;
use netio::tap::{AsyncTap, FrameSender, Tap};
use netio::udp::RawSender;
use netio::BATCH;

/// Where the NAT listens.
#[derive(Debug, Clone)]
pub struct NatSetup {
    pub config: NatConfig,
    pub port: u16,
    /// The LAN interface, tapped for the endpoints' packets routed through us.
    pub lan_interface: String,
    /// The NAT's own LAN address: packets addressed to it are the kernel's, not ours.
    pub lan_addr: Ipv4Addr,
    /// Status file (the stats and the Table 1 dump), control socket (`status`, the same
    /// JSON), capture, duration.
    pub options: ServeOptions,
}

/// The NAT's status file: its counters, how the runner moved packets, and the Table 1 rows.
#[derive(Debug, serde::Serialize)]
pub struct NatStatus {
    pub stats: NatStats,
    pub io: NatIo,
    pub table: String,
}

impl crate::metrics::Metered for NatStatus {
    /// Table 1's size and churn, packets each way, drops by side and reason, ring and tap
    /// losses.
    fn metrics(&self) -> crate::metrics::MetricSet {
        use crate::metrics::{fields, label, MetricSet, Value};
        let (s, io) = (&self.stats, &self.io);
        let mut set = MetricSet::default();
        set.gauge(
            "nat_table_entries",
            "Live Table 1 entries.",
            s.entries as f64,
        );
        set.gauge(
            "nat_table_entries_limit",
            "Most Table 1 entries.",
            s.entries_limit as f64,
        );
        set.counter(
            "nat_table_entries_created",
            "Table 1 entries made from SCCRPs.",
            s.entries_created,
        );
        set.counter(
            "nat_table_entries_translated",
            "Table 1 entries given a public Tunnel ID other than their endpoint's (another \
             endpoint's tunnel from the same initiator socket held it).",
            s.entries_translated,
        );
        set.counter(
            "nat_lan_in",
            "Packets from the LAN handed to the NAT.",
            s.lan_in,
        );
        set.counter(
            "nat_to_public",
            "Packets forwarded to the public side.",
            s.to_public,
        );
        set.counter(
            "nat_public_in",
            "Packets from the public side handed to the NAT.",
            s.public_in,
        );
        set.counter("nat_to_lan", "Packets forwarded to an endpoint.", s.to_lan);
        for (side, drops) in [("lan", &s.lan_drops), ("public", &s.public_drops)] {
            for (reason, n) in fields(drops) {
                set.push(
                    "nat_dropped",
                    "Packets the NAT dropped, by side and reason.",
                    vec![label("side", side), label("reason", reason)],
                    Value::Counter(n),
                );
            }
        }
        set.counter(
            "nat_ring_dropped",
            "Frames the receive ring had no room for.",
            io.ring_drops,
        );
        set.counter(
            "nat_tap_dropped",
            "LAN frames the tap's buffer had no room for.",
            io.tap_drops,
        );
        set
    }
}

/// How the NAT's runner moved packets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct NatIo {
    /// The public side is read through a receive ring (else through the UDP socket).
    pub public_ring: bool,
    /// Frames the ring had no room for: the NAT fell behind.
    pub ring_drops: u64,
    /// Frames longer than the ring's frames, not forwarded.
    pub ring_truncated: u64,
    /// Frames from the LAN the tap's socket buffer had no room for: the NAT fell behind.
    pub tap_drops: u64,
    /// Packets to the LAN sent as Ethernet frames (the endpoint's MAC fresh from the tap).
    pub lan_frames: u64,
    /// Packets to the LAN sent through the raw IP socket (the kernel's routing and ARP).
    pub lan_raw: u64,
}

/// Runs the NAT of FIG 2 until its duration ends or Ctrl-C; returns its final status.
///
/// The hot path, public side to LAN (`l2tpkit bench nat` measures it): a TPACKET_V2 receive
/// ring ([`RxRing`]) on the interface that holds the global address, with a BPF filter that
/// takes only UDP to the global address and port; the UDP socket bound there keeps the port
/// (no ICMP port unreachable) and takes nothing. The sans-IO [`Nat`] rewrites each packet in
/// place in the ring, and a batch of up to 64 leaves in one sendmmsg, read straight out of
/// the ring: as Ethernet frames ([`FrameSender`]) when the endpoint's MAC address is fresh in
/// [`Neighbours`], through the raw IP socket otherwise. Without the ring (no interface holds
/// the global address), the UDP socket is read in recvmmsg batches into buffers with room in
/// front, where the IPv4/UDP header is written, and the rest is the same. LAN side to public:
/// the tap's recvmmsg batch, rewritten in place, one sendmmsg on the raw socket. Nothing is
/// allocated per packet or per batch.
///
/// Since the ring sees the packets as they arrived, they keep their TTL (less one), IP
/// identification and UDP checksum (updated, or completed first when offload left it
/// partial). A fragmented datagram is not forwarded, as on the LAN side: its first fragment
/// reaches the NAT and is dropped and counted (`DropReason::Fragment`), and the reassembled
/// datagram goes to the UDP socket, which takes nothing. (Read from the UDP socket, as before
/// the ring and still without it, the packet is rebuilt with TTL 64 from the reassembled
/// datagram, and one longer than the LAN's MTU fails to go out.)
pub async fn serve_nat(setup: NatSetup) -> Result<NatStatus, ServeError> {
    let global = SocketAddrV4::new(setup.config.global, setup.port);
    let (mut public, ring, public_interface) = open_public_side(&setup, global)?;
    let mut ring = ring.map(PublicRing::new);
    let (lan, mut tap) = open_lan_side(&setup)?;
    let mut lp = EventLoop::open(setup.options.loop_spec(true, None))?;
    let mut fwd = Forwarder {
        nat: Nat::new(setup.config.clone()),
        neighbours: Neighbours::new(),
        io: NatIo {
            public_ring: ring.is_some(),
            ..NatIo::default()
        },
        our_mac: lan.frames.as_ref().map(FrameSender::mac),
        lan_addr: setup.lan_addr,
    };
    tracing::info!(%global, lan = %setup.lan_interface, "NAT up");
    // The readiness line the lab waits for.
    eprintln!(
        "l2tpkit nat: listening on {global}{}, tapping {}",
        public_interface
            .as_deref()
            .map(|i| format!(" (receive ring on {i})"))
            .unwrap_or_default(),
        setup.lan_interface
    );
    loop {
        let now = lp.clock.now();
        fwd.nat.handle_timeout(now);
        let timeout = fwd.nat.poll_timeout();
        let sleep = match lp.turn(now, timeout, || fwd.status(ring.as_ref(), tap.get_ref()))? {
            Turn::Wait(sleep) => sleep,
            Turn::Deadline => break,
        };
        tokio::select! {
            ready = ring_ready(ring.as_mut()) => {
                ready.map_err(ServeError::Socket)?;
                if let Some(ring) = ring.as_mut() {
                    fwd.forward_ring(ring, &lan, &mut lp)?;
                }
            }
            ready = public.readable(), if ring.is_none() => {
                ready?;
                fwd.forward_public_socket(&mut public, &lan, &mut lp)?;
                // Let the runtime poll its driver, so the tap's readiness stays current (see
                // the master's loop).
                tokio::task::yield_now().await;
            }
            ready = tap.readable_mut() => {
                let mut guard = ready.map_err(ServeError::Socket)?;
                let n = guard.get_inner_mut().recv_batch().map_err(ServeError::Socket)?;
                if n == 0 {
                    guard.clear_ready();
                    continue;
                }
                fwd.forward_lan(guard.get_inner_mut(), n, &lan.raw, &mut lp);
            }
            wake = lp.wait(sleep) => match wake {
                Wake::Timer => {}
                Wake::Stop => break,
                Wake::Control(pending) => {
                    let reply = match pending.request {
                        Ok(Request::Status) => control::ok(&fwd.status(ring.as_ref(), tap.get_ref())),
                        Ok(other) => control::refused(&format!(
                            "{other}: the NAT answers status only (endpoints: ask the master)"
                        )),
                        Err(error) => control::refused(&error),
                    };
                    let _ = pending.reply.send(reply);
                }
            },
        }
    }
    let status = fwd.status(ring.as_ref(), tap.get_ref());
    lp.finish(&status)?;
    Ok(status)
}

/// Room for an Ethernet header in front of the IPv4/UDP header written before each datagram
/// read from the public socket, so that the packet's frame for the LAN is built in place.
const FRONT: usize = ETHERNET;

/// The global address's UDP socket, and the fast way in when there is one: a receive ring on
/// the interface that holds the global address (the socket then only keeps the port ours and
/// takes nothing). Without such an interface (or the ring), the socket receives.
fn open_public_side(
    setup: &NatSetup,
    global: SocketAddrV4,
) -> Result<(DatagramBatches, Option<RxRing>, Option<String>), ServeError> {
    let public = DatagramBatches::new(bind_udp(global, false)?, global, FRONT);
    let ring = interface_with_address(setup.config.global).and_then(|interface| {
        let filter = udp_to_filter(setup.config.global, setup.port);
        let ring = RxRing::open(&interface, &filter)?;
        attach_filter(public.socket(), &drop_all_filter())?;
        Ok((interface, ring))
    });
    match ring {
        Ok((interface, ring)) => Ok((public, Some(ring), Some(interface))),
        Err(err) => {
            tracing::warn!(%err, "no receive ring on the public side; reading the UDP socket");
            Ok((public, None, None))
        }
    }
}

/// The raw IP socket, Ethernet frames on the LAN interface when it is Ethernet, and the tap
/// that sees the endpoints' packets routed through us.
fn open_lan_side(setup: &NatSetup) -> Result<(LanSender, AsyncTap), ServeError> {
    let raw = RawSender::new().map_err(ServeError::Raw)?;
    let tap = Tap::open(&setup.lan_interface, BATCH).map_err(ServeError::Raw)?;
    // Without it (an interface that is not Ethernet), everything goes the raw IP way.
    let frames = match FrameSender::open(&setup.lan_interface) {
        Ok(sender) => Some(sender),
        Err(err) => {
            tracing::warn!(%err, "no Ethernet frames on the LAN; sending through the raw socket");
            None
        }
    };
    let tap = AsyncTap::new(tap).map_err(|err| ServeError::Socket(err.into_parts().1))?;
    Ok((LanSender { raw, frames }, tap))
}

/// The NAT and what its runner keeps between batches.
struct Forwarder {
    nat: Nat,
    neighbours: Neighbours,
    io: NatIo,
    /// The LAN interface's MAC address, when frames can be sent there.
    our_mac: Option<[u8; 6]>,
    /// The NAT's own LAN address.
    lan_addr: Ipv4Addr,
}

impl Forwarder {
    /// The status now; the ring's and the tap's drops since the last look are counted first.
    fn status(&mut self, ring: Option<&PublicRing>, tap: &Tap) -> NatStatus {
        self.io.ring_drops += ring_drops(ring);
        self.io.tap_drops += tap.drops().unwrap_or(0);
        NatStatus {
            stats: self.nat.stats(),
            io: self.io,
            table: self.nat.table(),
        }
    }

    /// Up to [`BATCHES_PER_WAKE`] batches from the receive ring, routed in place and sent
    /// straight out of it.
    fn forward_ring(
        &mut self,
        public: &mut PublicRing,
        lan: &LanSender,
        lp: &mut EventLoop,
    ) -> Result<(), ServeError> {
        let mut got = 0;
        for _ in 0..BATCHES_PER_WAKE {
            let ring = public.ring_mut();
            let mut taken = [0usize; BATCH];
            let n = ring.take(&mut taken);
            if n == 0 {
                break;
            }
            got += n;
            let picks = self.route_frames(ring, &taken[..n], lp);
            self.count(lan.send(|i, at, len| ring.bytes(i, at, len), &picks));
            for &i in &taken[..n] {
                ring.release(i);
            }
        }
        public.note(got > 0).map_err(ServeError::Socket)
    }

    /// The batches waiting at the public socket ([`DatagramBatches::forward`]).
    fn forward_public_socket(
        &mut self,
        public: &mut DatagramBatches,
        lan: &LanSender,
        lp: &mut EventLoop,
    ) -> Result<(), ServeError> {
        let sent = public.forward(lan, |public, n| self.route_datagrams(public, n, lp))?;
        self.count(sent);
        Ok(())
    }

    fn count(&mut self, sent: super::batch::Sent) {
        self.io.lan_frames += sent.frames;
        self.io.lan_raw += sent.raw;
    }

    /// Lets the NAT route one IPv4 packet from the public side, `ethernet` being the 14 bytes
    /// in front of it. `Some(true)`: send it as the frame made there; `Some(false)`: as an IPv4
    /// packet; with its length (the IPv4 total length: an Ethernet pad is not sent on).
    fn route(
        &mut self,
        now: Instant,
        wall: Duration,
        pcap: &mut PcapTee,
        ethernet: &mut [u8],
        packet: &mut [u8],
    ) -> Option<(bool, usize)> {
        let Verdict::ToLan { endpoint } = self.nat.from_public(now, packet) else {
            return None;
        };
        let total = total_len(packet);
        pcap.write(wall, &packet[..total]);
        let Some(our_mac) = self.our_mac else {
            return Some((false, total));
        };
        match self.neighbours.fresh(endpoint, now) {
            Some(mac) if ethernet.len() == ETHERNET => {
                ethernet[0..6].copy_from_slice(&mac);
                ethernet[6..12].copy_from_slice(&our_mac);
                ethernet[12..14].copy_from_slice(&[0x08, 0x00]);
                Some((true, total))
            }
            _ => Some((false, total)),
        }
    }

    /// Adds one routed packet to `picks`: buffer `i`, its Ethernet header at the start.
    fn pick(picks: &mut Picks, routed: Option<(bool, usize)>, i: usize) {
        match routed {
            Some((true, total)) => picks.frame((i, 0, ETHERNET + total)),
            Some((false, total)) => picks.packet((i, ETHERNET, total)),
            None => {}
        }
    }

    /// The datagrams of a recvmmsg batch, each one's IPv4/UDP header already written in
    /// front of it.
    fn route_datagrams(&mut self, rx: &mut DatagramBatches, n: usize, lp: &mut EventLoop) -> Picks {
        let now = lp.clock.now();
        let wall = lp.clock.wall(now);
        let mut picks = Picks::new();
        for i in 0..n {
            let Some((ethernet, packet)) = rx.packet(i) else {
                continue;
            };
            let routed = self.route(now, wall, &mut lp.pcap, ethernet, packet);
            Forwarder::pick(&mut picks, routed, i);
        }
        picks
    }

    /// Frames taken from the receive ring: routed in place. A frame the ring cut short is not
    /// forwarded (the NAT would see a truncated packet); a checksum left to offload is filled
    /// in first, as on the LAN tap.
    fn route_frames(&mut self, ring: &mut RxRing, taken: &[usize], lp: &mut EventLoop) -> Picks {
        let now = lp.clock.now();
        let wall = lp.clock.wall(now);
        let mut picks = Picks::new();
        for &i in taken.iter().take(BATCH) {
            let Some(frame) = ring.frame(i) else {
                continue;
            };
            if frame.truncated || frame.network != ETHERNET {
                self.io.ring_truncated += 1;
                continue;
            }
            let (ethernet, packet) = frame.data.split_at_mut(frame.network);
            if frame.checksum_partial {
                complete_udp_checksum(packet);
            }
            let routed = self.route(now, wall, &mut lp.pcap, ethernet, packet);
            Forwarder::pick(&mut picks, routed, i);
        }
        picks
    }

    /// A batch from the LAN tap: the senders' MAC addresses learnt, each packet for the
    /// public side rewritten in place, the batch sent in one sendmmsg on the raw socket.
    fn forward_lan(&mut self, tap: &mut Tap, n: usize, raw: &RawSender, lp: &mut EventLoop) {
        let now = lp.clock.now();
        // (index, length) of the packets to send out, in order.
        let mut out = [(0usize, 0usize); BATCH];
        let mut count = 0;
        for i in 0..n {
            let mac = tap.source_mac(i);
            let Some(frame) = tap.packet(i) else { continue };
            if let (Some(mac), Some(src)) = (mac, frame.get(12..16)) {
                let src = Ipv4Addr::new(src[0], src[1], src[2], src[3]);
                self.neighbours.learn(src, mac, now);
            }
            // Packets for the NAT's own LAN address belong to its kernel.
            if frame.get(16..20) == Some(&self.lan_addr.octets()[..]) {
                continue;
            }
            complete_udp_checksum(frame);
            if self.nat.from_lan(now, frame) == Verdict::ToPublic {
                if let Some(slot) = out.get_mut(count) {
                    *slot = (i, total_len(frame));
                    count += 1;
                }
            }
        }
        let mut refs: [&[u8]; BATCH] = [&[]; BATCH];
        for (slot, &(i, total)) in refs.iter_mut().zip(&out[..count]) {
            *slot = tap.packet_ref(i, total).unwrap_or_default();
        }
        let refs = &refs[..count];
        if refs.is_empty() {
            return;
        }
        let wall = lp.clock.wall(now);
        for packet in refs {
            lp.pcap.write(wall, packet);
        }
        if let Err(err) = raw.send_batch(refs) {
            tracing::warn!(%err, "forwarding to the public side failed");
        }
    }
}
