//! Where a probe's datagrams go: real UDP sockets ([`UdpNetwork`]) or the seeded virtual-time
//! network of `l2tp::sim` ([`SimNetwork`]). Probes see only [`Network`] and [`Transport`], so one
//! probe runs unchanged against a live LNS or against sans-IO nodes in a test, with no root and
//! no socket.
//!
//! Time is `l2tp::time::Instant` on both: microseconds since the network was made (sockets) or
//! virtual time (the simulator). Deadlines computed on one transport hold on another of the
//! same network.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use l2tp::sim::{Datagram, Node, NodeId, Simulator};
use l2tp::time::Instant;

/// One datagram from the peer.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: SocketAddrV4,
    pub bytes: Vec<u8>,
}

/// One UDP endpoint of ours: what a probe's scripted initiator talks through.
pub trait Transport {
    /// Our address as the target sees it.
    fn local_addr(&self) -> SocketAddrV4;
    fn send_to(&mut self, bytes: &[u8], to: SocketAddrV4) -> io::Result<()>;
    /// The next datagram that arrives by `deadline`; `None` when none did (or the socket
    /// failed: a probe judges silence, not socket errors, on the way in).
    fn recv_until(&mut self, deadline: Instant) -> Option<Received>;
    fn now(&self) -> Instant;
}

/// A whole IPv4 packet sent as crafted, checksums and all.
pub trait RawIp {
    fn send(&mut self, packet: &[u8]) -> io::Result<()>;
}

/// Where transports come from, and the clock they share.
pub trait Network {
    /// A fresh transport on `bind` (unspecified: any address) and a port of the network's
    /// choosing.
    /// A fresh socket bound to `bind` (port 0: any free one). With a fixed port already held
    /// by a socket of ours, the next addresses up (same port, up to [`FIXED_PORT_ADDRESSES`])
    /// are tried: a probe that holds several tunnels at once gets one address each.
    fn open(&self, bind: SocketAddrV4) -> io::Result<Box<dyn Transport>>;
    fn now(&self) -> Instant;
    /// Wall-clock time at `now`, since the UNIX epoch: pcap timestamps.
    fn wall(&self, now: Instant) -> Duration;
    /// A seed for a new initiator's IDs: different on every call.
    fn entropy(&self) -> u64;
    /// A sender of packets crafted below UDP (a raw socket: root or CAP_NET_RAW).
    fn raw(&self) -> io::Result<Box<dyn RawIp>>;
    /// The source address our packets to `to` carry (what the target answers).
    fn source_towards(&self, to: SocketAddrV4) -> io::Result<Ipv4Addr>;
    /// Waits until `deadline` (a pause between tries; the simulator just moves on).
    fn sleep_until(&self, deadline: Instant);
}

/// How many addresses from the bind address up a fixed port is tried on.
pub const FIXED_PORT_ADDRESSES: u32 = 64;

/// Binds `bind`; with a fixed port in use, the same port on the next addresses up (to
/// [`FIXED_PORT_ADDRESSES`]). The first error other than "in use" is returned as it is, and
/// an unspecified address is never stepped.
fn bind_fixed_port_or_next<T>(
    bind: SocketAddrV4,
    mut try_bind: impl FnMut(SocketAddrV4) -> io::Result<T>,
) -> io::Result<T> {
    let steps = if bind.port() == 0 || bind.ip().is_unspecified() {
        1
    } else {
        FIXED_PORT_ADDRESSES
    };
    let mut last = io::Error::from(io::ErrorKind::AddrInUse);
    for k in 0..steps {
        let Some(ip) = u32::from(*bind.ip()).checked_add(k) else {
            break;
        };
        match try_bind(SocketAddrV4::new(Ipv4Addr::from(ip), bind.port())) {
            Err(err) if err.kind() == io::ErrorKind::AddrInUse => last = err,
            other => return other,
        }
    }
    Err(last)
}

/// Real UDP sockets; the clock is the monotonic one.
pub struct UdpNetwork {
    epoch: std::time::Instant,
    wall_epoch: Duration,
}

impl UdpNetwork {
    pub fn new() -> UdpNetwork {
        UdpNetwork {
            epoch: std::time::Instant::now(),
            wall_epoch: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }
}

impl Default for UdpNetwork {
    fn default() -> Self {
        UdpNetwork::new()
    }
}

fn since(epoch: std::time::Instant) -> Instant {
    Instant::from_micros(u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
}

impl Network for UdpNetwork {
    fn open(&self, bind: SocketAddrV4) -> io::Result<Box<dyn Transport>> {
        let socket = bind_fixed_port_or_next(bind, UdpSocket::bind)?;
        let local = match socket.local_addr()? {
            SocketAddr::V4(v4) => v4,
            SocketAddr::V6(_) => return Err(io::Error::other("bound an IPv6 address")),
        };
        // The local address as the target sees it (unspecified when bound to 0.0.0.0): good
        // enough for the capture, which only needs the two ends to differ.
        let local = if local.ip().is_unspecified() {
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, local.port())
        } else {
            local
        };
        Ok(Box::new(UdpTransport {
            socket,
            local,
            epoch: self.epoch,
        }))
    }

    fn now(&self) -> Instant {
        since(self.epoch)
    }

    fn wall(&self, now: Instant) -> Duration {
        self.wall_epoch + Duration::from_micros(now.as_micros())
    }

    fn entropy(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    }

    fn raw(&self) -> io::Result<Box<dyn RawIp>> {
        Ok(Box::new(netio::udp::RawSender::new()?))
    }

    fn source_towards(&self, to: SocketAddrV4) -> io::Result<Ipv4Addr> {
        // A connected UDP socket learns the route's source without sending anything.
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        socket.connect(to)?;
        match socket.local_addr()? {
            SocketAddr::V4(v4) => Ok(*v4.ip()),
            SocketAddr::V6(_) => Err(io::Error::other("no IPv4 route")),
        }
    }

    fn sleep_until(&self, deadline: Instant) {
        std::thread::sleep(deadline.saturating_duration_since(self.now()));
    }
}

impl RawIp for netio::udp::RawSender {
    fn send(&mut self, packet: &[u8]) -> io::Result<()> {
        netio::udp::RawSender::send(self, packet)
    }
}

struct UdpTransport {
    socket: UdpSocket,
    local: SocketAddrV4,
    epoch: std::time::Instant,
}

impl Transport for UdpTransport {
    fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    fn send_to(&mut self, bytes: &[u8], to: SocketAddrV4) -> io::Result<()> {
        self.socket.send_to(bytes, to).map(|_| ())
    }

    fn recv_until(&mut self, deadline: Instant) -> Option<Received> {
        // A zero timeout means "block for ever" to the socket: wait at least a millisecond.
        let left = deadline
            .saturating_duration_since(self.now())
            .max(Duration::from_millis(1));
        self.socket.set_read_timeout(Some(left)).ok()?;
        let mut buf = [0u8; 4096];
        let (len, from) = self.socket.recv_from(&mut buf).ok()?;
        let SocketAddr::V4(from) = from else {
            return None;
        };
        let bytes = buf.get(..len).unwrap_or_default().to_vec();
        Some(Received { from, bytes })
    }

    fn now(&self) -> Instant {
        since(self.epoch)
    }
}

/// The nodes a [`SimNetwork`] holds: the targets a test adds, and one mailbox per transport.
pub type SimNode = Box<dyn Node>;

/// Probes inside `l2tp::sim`: each transport is a node of its own on `host` (or the address
/// it binds), and waiting for a datagram steps the simulator, event by event, up to the
/// deadline. Virtual time moves only then: a probe that waits 40 s takes microseconds.
#[derive(Clone)]
pub struct SimNetwork {
    state: Rc<RefCell<SimState>>,
}

struct SimState {
    sim: Simulator<SimNode>,
    host: Ipv4Addr,
    next_port: u16,
    seed: u64,
}

impl SimNetwork {
    /// Transports get `host` and ports from 40000 up; `seed` drives the initiators' IDs.
    pub fn new(sim: Simulator<SimNode>, host: Ipv4Addr, seed: u64) -> SimNetwork {
        SimNetwork {
            state: Rc::new(RefCell::new(SimState {
                sim,
                host,
                next_port: 40_000,
                seed,
            })),
        }
    }

    /// The simulator, to add targets, set link conditions or read counters.
    pub fn with_sim<R>(&self, f: impl FnOnce(&mut Simulator<SimNode>) -> R) -> R {
        f(&mut self.state.borrow_mut().sim)
    }
}

impl Network for SimNetwork {
    fn open(&self, bind: SocketAddrV4) -> io::Result<Box<dyn Transport>> {
        let mut state = self.state.borrow_mut();
        let ip = if bind.ip().is_unspecified() {
            state.host
        } else {
            *bind.ip()
        };
        // A fixed port: that one, or the next address up with it, as on real sockets.
        let fixed = (bind.port() != 0).then(|| {
            (0..FIXED_PORT_ADDRESSES)
                .map(|k| {
                    SocketAddrV4::new(Ipv4Addr::from(u32::from(ip).wrapping_add(k)), bind.port())
                })
                .find(|at| state.sim.owner(*at).is_none())
        });
        // Skip ports whose owner is still alive (a wrap after 25k transports).
        let local = if let Some(fixed) = fixed {
            fixed.ok_or_else(|| io::Error::from(io::ErrorKind::AddrInUse))?
        } else {
            loop {
                let port = state.next_port;
                state.next_port = state.next_port.checked_add(1).unwrap_or(40_000);
                let addr = SocketAddrV4::new(ip, port);
                if state.sim.owner(addr).is_none() {
                    break addr;
                }
            }
        };
        let mailbox = Rc::new(RefCell::new(Mailbox::default()));
        let id = state
            .sim
            .add_node(Box::new(MailboxNode(Rc::clone(&mailbox))), &[local]);
        Ok(Box::new(SimTransport {
            state: Rc::clone(&self.state),
            id,
            local,
            mailbox,
        }))
    }

    fn now(&self) -> Instant {
        self.state.borrow().sim.now()
    }

    fn wall(&self, now: Instant) -> Duration {
        Duration::from_micros(now.as_micros())
    }

    fn entropy(&self) -> u64 {
        // splitmix64: a fresh, reproducible value per call.
        let mut state = self.state.borrow_mut();
        state.seed = state.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state.seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn raw(&self) -> io::Result<Box<dyn RawIp>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the simulator carries UDP payloads only",
        ))
    }

    fn source_towards(&self, _to: SocketAddrV4) -> io::Result<Ipv4Addr> {
        Ok(self.state.borrow().host)
    }

    fn sleep_until(&self, deadline: Instant) {
        let _ = self.state.borrow_mut().sim.run_until(deadline);
    }
}

#[derive(Default)]
struct Mailbox {
    outbox: VecDeque<Datagram>,
    inbox: VecDeque<Received>,
}

/// A transport's side inside the simulator.
struct MailboxNode(Rc<RefCell<Mailbox>>);

impl Node for MailboxNode {
    fn handle(&mut self, _now: Instant, from: SocketAddrV4, _to: SocketAddrV4, bytes: &[u8]) {
        self.0.borrow_mut().inbox.push_back(Received {
            from,
            bytes: bytes.to_vec(),
        });
    }

    fn poll_transmit(&mut self, _now: Instant) -> Option<Datagram> {
        self.0.borrow_mut().outbox.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    fn handle_timeout(&mut self, _now: Instant) {}
}

struct SimTransport {
    state: Rc<RefCell<SimState>>,
    id: NodeId,
    local: SocketAddrV4,
    mailbox: Rc<RefCell<Mailbox>>,
}

impl Transport for SimTransport {
    fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    fn send_to(&mut self, bytes: &[u8], to: SocketAddrV4) -> io::Result<()> {
        self.mailbox.borrow_mut().outbox.push_back(Datagram {
            from: self.local,
            to,
            bytes: bytes.to_vec(),
        });
        // Marks the node for draining at the current virtual time.
        let _ = self.state.borrow_mut().sim.node_mut(self.id);
        Ok(())
    }

    fn recv_until(&mut self, deadline: Instant) -> Option<Received> {
        loop {
            if let Some(received) = self.mailbox.borrow_mut().inbox.pop_front() {
                return Some(received);
            }
            let mut state = self.state.borrow_mut();
            match state.sim.next_event_at() {
                Some(at) if at <= deadline => {
                    state.sim.step();
                }
                _ => {
                    let _ = state.sim.run_until(deadline);
                    return None;
                }
            }
        }
    }

    fn now(&self) -> Instant {
        self.state.borrow().sim.now()
    }
}

impl Drop for SimTransport {
    /// A closed socket: what still comes for it is undeliverable, as on a real host.
    fn drop(&mut self) {
        if let Ok(mut state) = self.state.try_borrow_mut() {
            state.sim.release_addr(self.local);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any() -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)
    }

    fn net() -> SimNetwork {
        SimNetwork::new(Simulator::new(7), Ipv4Addr::new(198, 18, 0, 2), 1)
    }

    #[test]
    fn sim_transports_talk_in_virtual_time_and_waiting_moves_the_clock_to_the_deadline() {
        let net = net();
        let mut a = net.open(any()).unwrap();
        let mut b = net.open(any()).unwrap();
        assert_ne!(a.local_addr(), b.local_addr());
        a.send_to(b"hello", b.local_addr()).unwrap();
        let deadline = Instant::ZERO + Duration::from_secs(1);
        let got = b.recv_until(deadline).expect("delivered");
        assert_eq!(
            (got.from, got.bytes.as_slice()),
            (a.local_addr(), &b"hello"[..])
        );
        // The default link: 1 ms one way.
        assert_eq!(b.now(), Instant::from_micros(1_000));
        assert!(a.recv_until(deadline).is_none());
        assert_eq!(net.now(), deadline);
    }

    #[test]
    fn a_dropped_transport_no_longer_receives_and_entropy_differs_per_call() {
        let net = net();
        let mut a = net.open(any()).unwrap();
        let b = net
            .open(SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 9), 0))
            .unwrap();
        let gone = b.local_addr();
        assert_eq!(*gone.ip(), Ipv4Addr::new(198, 18, 0, 9));
        drop(b);
        a.send_to(b"lost", gone).unwrap();
        assert!(a
            .recv_until(Instant::ZERO + Duration::from_secs(1))
            .is_none());
        assert_eq!(net.with_sim(|sim| sim.stats().undeliverable), 1);
        assert_ne!(net.entropy(), net.entropy());
        assert!(net.raw().is_err());
    }

    #[test]
    fn a_fixed_port_in_use_steps_to_the_next_address_and_keeps_the_port() {
        let net = net();
        let at = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 1701);
        let a = net.open(at).unwrap();
        let b = net.open(at).unwrap();
        assert_eq!(a.local_addr(), at);
        assert_eq!(
            b.local_addr(),
            SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 3), 1701)
        );
        drop(a);
        assert_eq!(net.open(at).unwrap().local_addr(), at, "free again");
        // Real sockets, on loopback: the same.
        let real = UdpNetwork::new();
        let first = real
            .open(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 96), 0))
            .unwrap();
        let port = first.local_addr().port();
        let fixed = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 96), port);
        let second = real.open(fixed).unwrap();
        assert_eq!(
            second.local_addr(),
            SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 97), port)
        );
        // The unspecified address is never stepped: in use is in use.
        let wild = real
            .open(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
            .unwrap();
        let taken = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, wild.local_addr().port());
        let err = real.open(taken).err().expect("in use");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
