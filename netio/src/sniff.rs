//! A read-only sniffer of one UDP port ([`Sniffer`]): how an agent beside an unmodified LNS,
//! in its network namespace, sees the L2TP datagrams the LNS receives and sends, without a
//! socket of the LNS's own or any change to it.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use nix::sys::socket::getsockopt;
use socket2::{Socket, Type};

use crate::filter;
use crate::mmsg::{self, RawName, BATCH};
use crate::packet::{self, PacketStatistics, FRAME};

/// The receive buffer the sniffer asks for, as the taps do: the default ~200 KB drops a
/// burst of a few hundred control messages.
const BUFFER: usize = 8 << 20;

/// A [`Sniffer`] registered with tokio.
pub type AsyncSniffer = crate::reactor::AsyncSocket<Sniffer>;

/// Watches UDP datagrams to or from `port` on one interface or on all of them (AF_PACKET,
/// SOCK_DGRAM so the link header is stripped whatever the link type, ETH_P_ALL so outgoing
/// packets are seen too), in batches. Read-only: it never sends.
///
/// A classic BPF program ([`filter::udp_port_filter`]) keeps only unfragmented IPv4 UDP
/// datagrams (and first fragments) from or to the port, so nothing else is copied; in
/// userspace the sniffer then keeps IPv4 frames (`sll_protocol` ETH_P_IP) that fit its
/// buffers.
///
/// What it reports:
/// - on a loopback interface every packet passes twice, once going out and once coming in:
///   only the incoming copy is kept, reported as *not* outgoing (on loopback both ends are
///   this host, so the direction is in the packet's addresses and ports, not in the flag);
/// - frames for another host (PACKET_OTHERHOST: an interface in promiscuous mode, such as a
///   bridge port) are not kept: the LNS never gets them;
/// - an outgoing packet's UDP checksum may still be unset (checksum offload);
/// - a datagram longer than the buffers (about 2 KB; the lab's MTU is 1500) is not kept
///   but counted ([`Sniffer::truncated`]);
/// - a first fragment is kept as it is: its UDP length says more than it holds;
/// - with every interface watched (`open(None, ..)`), a packet that crosses several of them
///   (a bridge and its port, a VLAN and its parent, a packet routed through) is seen once on
///   each: name the interface the LNS's traffic uses to see each datagram once.
pub struct Sniffer {
    socket: Socket,
    buffers: Vec<Vec<u8>>,
    /// Each kept packet's IPv4 length (from its header: link padding is not part of it).
    lens: Vec<usize>,
    outgoing: Vec<bool>,
    /// How many packets the last batch kept.
    kept: usize,
    truncated: u64,
}

impl Sniffer {
    /// Binds to `interface` (by name), or `None`: every interface of the network namespace
    /// (ifindex 0). `batch` is clamped to 1..=[`BATCH`]. Needs CAP_NET_RAW.
    pub fn open(interface: Option<&str>, port: u16, batch: usize) -> io::Result<Sniffer> {
        let index = match interface {
            Some(name) => crate::iface::index(name)?,
            None => 0,
        };
        // The filter goes on before the bind: no frame of another port is ever queued.
        let socket = packet::open_index(index, Type::DGRAM, libc::ETH_P_ALL as u16, |socket| {
            filter::attach_filter(socket, &filter::udp_port_filter(port))?;
            // Forced past rmem_max when we may, which is always true here: it needs root.
            packet::grow_buffers(socket, BUFFER, true, false);
            Ok(())
        })?;
        let batch = batch.clamp(1, BATCH);
        Ok(Sniffer {
            socket,
            buffers: vec![vec![0u8; FRAME]; batch],
            lens: vec![0; batch],
            outgoing: vec![false; batch],
            kept: 0,
            truncated: 0,
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

    /// Datagrams received since the sniffer was opened that were longer than its buffers,
    /// and so not kept.
    pub fn truncated(&self) -> u64 {
        self.truncated
    }

    /// Reads what is waiting (non-blocking): up to the batch size of frames. Returns how many
    /// were kept (see [`Sniffer`] for which); [`Sniffer::packet`] then gives each one.
    pub fn recv_batch(&mut self) -> io::Result<usize> {
        self.kept = 0;
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
            let name = &names[i];
            let outgoing = name.sll_pkttype == libc::PACKET_OUTGOING;
            if name.sll_protocol != (libc::ETH_P_IP as u16).to_be()
                || (outgoing && name.sll_hatype == libc::ARPHRD_LOOPBACK)
                || name.sll_pkttype == libc::PACKET_OTHERHOST
            {
                continue;
            }
            let len = match datagram(&self.buffers[i][..lens[i]]) {
                Datagram::Whole(len) => len,
                Datagram::Truncated => {
                    self.truncated += 1;
                    continue;
                }
                Datagram::Malformed => continue,
            };
            if kept != i {
                self.buffers.swap(kept, i);
            }
            self.lens[kept] = len;
            self.outgoing[kept] = outgoing;
            kept += 1;
        }
        self.kept = kept;
        Ok(kept)
    }

    /// The i-th packet the last batch kept, from its IPv4 header to the end of its UDP
    /// payload, and whether it was outgoing (PACKET_OUTGOING: sent by this host; always
    /// false on loopback).
    pub fn packet(&self, i: usize) -> Option<(&[u8], bool)> {
        if i >= self.kept {
            return None;
        }
        let packet = self.buffers.get(i)?.get(..*self.lens.get(i)?)?;
        Some((packet, *self.outgoing.get(i)?))
    }
}

impl AsFd for Sniffer {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// What a received frame holds, from its IPv4 header's lengths.
#[derive(Debug, PartialEq, Eq)]
enum Datagram {
    /// A whole IPv4 UDP packet of this length (anything after it is link padding).
    Whole(usize),
    /// Its header says more than was received: longer than the buffer.
    Truncated,
    /// Not even the IPv4 and UDP headers it claims.
    Malformed,
}

fn datagram(received: &[u8]) -> Datagram {
    let Some(&[first, _, high, low]) = received.get(..4) else {
        return Datagram::Malformed;
    };
    let header = usize::from(first & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([high, low]));
    if header < 20 || total < header + 8 {
        Datagram::Malformed
    } else if total > received.len() {
        Datagram::Truncated
    } else {
        Datagram::Whole(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::{SocketAddrV4, UdpSocket};
    use std::process::Command;
    use std::time::{Duration, Instant};

    /// Runs a classic BPF program over `packet` as the kernel would (only the instructions
    /// [`filter::udp_port_program`] uses): the snap length, 0 to drop.
    fn run(program: &[libc::sock_filter], packet: &[u8]) -> u32 {
        let load = |at: u32, size: usize| {
            let at = at as usize;
            let bytes = packet.get(at..at + size)?;
            Some(bytes.iter().fold(0u32, |v, &b| v << 8 | u32::from(b)))
        };
        let (mut a, mut x) = (0u32, 0u32);
        let mut pc = 0;
        loop {
            let op = program[pc];
            pc += 1;
            let value = match op.code {
                0x30 => load(op.k, 1),
                0x28 => load(op.k, 2),
                0x48 => load(x + op.k, 2),
                0xb1 => {
                    // A packet too short aborts the program: dropped.
                    let Some(v) = load(op.k, 1) else { return 0 };
                    x = (v & 0x0f) * 4;
                    continue;
                }
                0x54 => Some(a & op.k),
                0x15 => {
                    pc += usize::from(if a == op.k { op.jt } else { op.jf });
                    continue;
                }
                0x45 => {
                    pc += usize::from(if a & op.k != 0 { op.jt } else { op.jf });
                    continue;
                }
                0x06 => return op.k,
                code => panic!("opcode {code:#x} not interpreted"),
            };
            match value {
                Some(v) => a = v,
                None => return 0,
            }
        }
    }

    fn udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        l2tp::capture::build_ipv4_udp(
            SocketAddrV4::new([10, 0, 0, 1].into(), src_port),
            SocketAddrV4::new([10, 0, 0, 2].into(), dst_port),
            payload,
            7,
            &mut out,
        )
        .unwrap();
        out
    }

    fn set_total(packet: &mut [u8]) {
        let total = u16::try_from(packet.len()).unwrap();
        packet[2..4].copy_from_slice(&total.to_be_bytes());
    }

    #[test]
    fn the_filter_keeps_the_port_either_way_and_nothing_else() {
        let program = filter::udp_port_program(1701);
        assert_eq!(filter::udp_port_filter(1701).len(), program.len());
        let keep = |packet: &[u8]| run(&program, packet) == 0xffff;

        assert!(keep(&udp(40000, 1701, b"to")));
        assert!(keep(&udp(1701, 40000, b"from")));
        assert!(keep(&udp(1701, 1701, b"both")));
        assert!(!keep(&udp(40000, 1702, b"other")));
        assert!(!keep(&udp(1702, 40000, b"other")));

        // Not UDP: the same bytes as TCP (protocol 6), or as IPv6 (version 6).
        let mut tcp = udp(40000, 1701, b"tcp");
        tcp[9] = 6;
        assert!(!keep(&tcp));
        let mut v6 = udp(40000, 1701, b"v6");
        v6[0] = 0x65;
        assert!(!keep(&v6));

        // Fragments: a later one (offset 8 bytes, here where its payload would hold the
        // port) is dropped, the first one (more fragments) and "don't fragment" are kept.
        let mut later = udp(40000, 1701, b"later");
        later[6..8].copy_from_slice(&0x0001u16.to_be_bytes());
        assert!(!keep(&later));
        let mut last = udp(40000, 1701, b"last");
        last[6..8].copy_from_slice(&0x1000u16.to_be_bytes());
        assert!(!keep(&last));
        let mut first = udp(40000, 1701, b"first");
        first[6..8].copy_from_slice(&0x2000u16.to_be_bytes());
        assert!(keep(&first));
        let mut df = udp(40000, 1701, b"df");
        df[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
        assert!(keep(&df));

        // IPv4 options: the ports are found after them, not at offset 20.
        let mut options = udp(40000, 1701, b"options");
        options.splice(20..20, [1, 1, 1, 1]);
        options[0] = 0x46;
        set_total(&mut options);
        assert!(keep(&options));
        let mut decoy = udp(40000, 1702, b"decoy");
        decoy.splice(20..20, 1701u16.to_be_bytes().repeat(2));
        decoy[0] = 0x46;
        set_total(&mut decoy);
        assert!(!keep(&decoy));

        // Too short to hold the ports: the program stops, dropping it.
        let mut short = udp(40000, 1701, b"");
        short.truncate(21);
        assert!(!keep(&short));
    }

    #[test]
    fn lengths_come_from_the_ipv4_header() {
        let packet = udp(40000, 1701, b"hello");
        assert_eq!(datagram(&packet), Datagram::Whole(33));
        // Ethernet pads short frames to 60 bytes: the padding is not part of the packet.
        let mut padded = packet.clone();
        padded.resize(46, 0);
        assert_eq!(datagram(&padded), Datagram::Whole(33));
        assert_eq!(datagram(&packet[..32]), Datagram::Truncated);
        let mut lying = packet.clone();
        lying[2..4].copy_from_slice(&27u16.to_be_bytes());
        assert_eq!(datagram(&lying), Datagram::Malformed);
        let mut short_header = packet.clone();
        short_header[0] = 0x44;
        assert_eq!(datagram(&short_header), Datagram::Malformed);
        assert_eq!(datagram(&packet[..3]), Datagram::Malformed);
    }

    fn root() -> bool {
        let root = nix::unistd::geteuid().is_root();
        if !root {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("CI=true but not root: the sniffer tests need CAP_NET_RAW");
            }
            eprintln!("SKIPPED: the sniffer tests need root (CAP_NET_RAW)");
        }
        root
    }

    /// What a sniffer reads within 2 s: each kept packet's UDP payload and direction. It
    /// stops at the first empty read once `done` holds of what it has.
    fn sniff(
        sniffer: &mut Sniffer,
        done: impl Fn(&[(Vec<u8>, bool)]) -> bool,
    ) -> Vec<(Vec<u8>, bool)> {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut seen = Vec::new();
        loop {
            let n = sniffer.recv_batch().unwrap();
            for i in 0..n {
                let (packet, outgoing) = sniffer.packet(i).unwrap();
                assert_eq!(packet[0] >> 4, 4);
                assert_eq!(packet[9], 17);
                let header = usize::from(packet[0] & 0x0f) * 4;
                seen.push((packet[header + 8..].to_vec(), outgoing));
            }
            assert!(sniffer.packet(n).is_none());
            if n == 0 {
                if done(&seen) || Instant::now() >= deadline {
                    return seen;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    #[test]
    fn loopback_datagrams_are_seen_once_and_only_on_the_port() {
        if !root() {
            return;
        }
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let port = receiver.local_addr().unwrap().port();
        let other = UdpSocket::bind("127.0.0.1:0").unwrap();
        other
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let other_port = other.local_addr().unwrap().port();
        let mut on_lo = Sniffer::open(Some("lo"), port, 16).unwrap();
        let mut everywhere = Sniffer::open(None, port, 16).unwrap();

        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        sender
            .send_to(b"not-this", ("127.0.0.1", other_port))
            .unwrap();
        sender.send_to(b"sniff-me", ("127.0.0.1", port)).unwrap();
        // Longer than the sniffer's buffers: counted, not kept.
        let big = vec![0x5a; 3000];
        sender.send_to(&big, ("127.0.0.1", port)).unwrap();
        // The reply, from the port: seen by its source port.
        let from = sender.local_addr().unwrap();
        receiver.send_to(b"reply", from).unwrap();
        // Every datagram got to its socket, so each copy the taps saw on its way (they see it
        // before IP does) is already queued on the sniffers.
        let mut buf = [0u8; 4096];
        assert_eq!(other.recv(&mut buf).unwrap(), 8);
        assert_eq!(receiver.recv(&mut buf).unwrap(), 8);
        assert_eq!(receiver.recv(&mut buf).unwrap(), 3000);
        sender
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        assert_eq!(sender.recv(&mut buf).unwrap(), 5);

        let expected = [(b"reply".to_vec(), false), (b"sniff-me".to_vec(), false)];
        for sniffer in [&mut on_lo, &mut everywhere] {
            let mut seen = sniff(sniffer, |seen| seen.len() >= expected.len());
            seen.sort();
            assert_eq!(seen, expected);
            assert_eq!(sniffer.truncated(), 1);
            assert_eq!(sniffer.drops().unwrap(), 0);
        }
        assert!(Sniffer::open(Some("no-such-if0"), port, 4).is_err());
    }

    /// Runs `ip` in the calling thread's network namespace.
    fn ip(args: &str) -> Result<(), String> {
        let out = Command::new("ip")
            .args(args.split(' '))
            .output()
            .map_err(|err| format!("ip {args}: {err}"))?;
        if !out.status.success() {
            return Err(format!(
                "ip {args}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }

    /// In a network namespace of its own: a veth pair, v0 (10.9.0.1/24) and v1, and a
    /// neighbour entry so that 10.9.0.2 is v1 without ARP. Waits until v0 transmits.
    fn veth_namespace() -> Result<(), String> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|err| format!("unshare: {err}"))?;
        ip("link add v0 type veth peer name v1")?;
        ip("link set v1 address 02:00:00:00:00:02")?;
        ip("link set v0 up")?;
        ip("link set v1 up")?;
        ip("addr add 10.9.0.1/24 dev v0")?;
        ip("neigh add 10.9.0.2 lladdr 02:00:00:00:00:02 dev v0 nud permanent")?;
        // Until its carrier is up, v0's qdisc is noop: it drops what it is given.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let out = Command::new("ip")
                .args(["link", "show", "dev", "v0"])
                .output()
                .map_err(|err| format!("ip link show: {err}"))?;
            let out = String::from_utf8_lossy(&out.stdout);
            if out.contains("state UP") && !out.contains("qdisc noop") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("v0 is not up: {out}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn sent_datagrams_are_outgoing_on_the_interface_that_sends_them() {
        if !root() {
            return;
        }
        // A thread of its own: unshare moves only the calling thread.
        std::thread::spawn(|| {
            if let Err(err) = veth_namespace() {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("CI=true but no veth pair in a namespace of our own: {err}");
                }
                eprintln!("SKIPPED: no veth pair in a namespace of our own: {err}");
                return;
            }
            let lns = UdpSocket::bind("10.9.0.1:0").unwrap();
            let port = lns.local_addr().unwrap().port();
            let mut on_v0 = Sniffer::open(Some("v0"), port, 8).unwrap();
            let mut everywhere = Sniffer::open(None, port, 8).unwrap();
            let other = UdpSocket::bind("10.9.0.1:0").unwrap();
            other.send_to(b"not-this", "10.9.0.2:1701").unwrap();
            lns.send_to(b"from-the-lns", "10.9.0.2:1701").unwrap();

            // Out of v0, then into v1 (addressed to its MAC) where IP drops it.
            let mut seen = sniff(&mut everywhere, |seen| seen.len() >= 2);
            seen.sort();
            assert_eq!(
                seen,
                [
                    (b"from-the-lns".to_vec(), false),
                    (b"from-the-lns".to_vec(), true)
                ]
            );
            // v1's copy came after v0's: v0's sniffer has all it will get.
            let seen = sniff(&mut on_v0, |_| true);
            assert_eq!(seen, [(b"from-the-lns".to_vec(), true)]);
            assert_eq!(on_v0.truncated(), 0);
        })
        .join()
        .unwrap();
    }
}
