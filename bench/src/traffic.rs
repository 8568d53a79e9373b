//! The two helper processes of `l2tpkit-bench nat`, each run with `ip netns exec` in a lab
//! namespace and driven over its stdin/stdout, one JSON object a line:
//!
//! - `l2tpkit-bench nat-blast` (initiator namespace): opens tunnels and one session each through the
//!   cluster with the project's own `TunnelSet` (SCCRQ to the master, SCCRP from the NAT's
//!   global address, ICRQ/ICRP/ICCN), so that the NAT holds one Table 1 entry per tunnel; then,
//!   on each `blast SECONDS PACKETS` line, sends data messages on those sessions from the same
//!   socket as fast as sendmmsg goes (batches of 64, the sessions in turn), and reports what it
//!   sent. `reopen` opens as many new tunnels (the NAT was replaced and its Table 1 with it)
//!   and sends on those from then on; `quit` (or the end of stdin) ends it. Between commands
//!   it keeps the control connections answered (ZLB acks for HELLOs).
//! - `l2tpkit-bench nat-sink` (endpoint namespace): counts what arrives on the endpoint's LAN
//!   interface. It reads the interface's `rx_packets` from `/proc/self/net/dev` every 5 ms,
//!   so it costs nothing per packet; the orchestrator drops the data messages at that
//!   interface's netdev ingress hook (after the count), so neither the endpoint process nor
//!   the namespace's UDP stack spends CPU on them. The delivered rate is the count between the
//!   first sample that saw the count grow and the one before the last, over the time between
//!   them (both inside the traffic; see `sink`).

use std::io::{BufRead, Write};
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use l2tp::conn::tunnel::Event;
use l2tp::conn::tunnels::TunnelSet;
use l2tp::wire::{HeaderRepr, PacketRepr};
use netio::udp::send_udp_batch;
use netio::BATCH;
use serde::Serialize;

use l2tpkit::args;
use l2tpkit::net::{os_seed, tunnel_config};

#[derive(Debug, clap::Args)]
pub struct BlastArgs {
    /// Local address of the generator's socket: ADDR[:PORT].
    #[arg(long, value_parser = args::addr_port::<0>)]
    pub bind: SocketAddrV4,
    /// The cluster address to open the tunnels through: ADDR[:PORT].
    #[arg(long, value_parser = args::addr_port::<1701>)]
    pub target: SocketAddrV4,
    /// Tunnels (one session each) to open; the data messages go to all of them in turn.
    #[arg(long, default_value_t = 16)]
    pub tunnels: usize,
    /// Bytes of PPP frame in each data message (24: a 60-byte IPv4 packet on the wire).
    #[arg(long, default_value_t = 24)]
    pub frame: usize,
    /// Seconds to wait for every tunnel and session to come up.
    #[arg(long, default_value_t = 15.0)]
    pub setup_timeout: f64,
}

#[derive(Debug, clap::Args)]
pub struct SinkArgs {
    /// The interface whose received packets are counted.
    #[arg(long)]
    pub interface: String,
    /// Give up when no traffic starts within this many seconds.
    #[arg(long, default_value_t = 10.0)]
    pub wait: f64,
    /// Traffic has ended once the count stands still this long (milliseconds).
    #[arg(long, default_value_t = 300)]
    pub idle_ms: u64,
    /// Stop counting after this many seconds in any case.
    #[arg(long, default_value_t = 60.0)]
    pub max: f64,
}

/// The generator's first line: what it set up.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Ready {
    pub local: String,
    pub peer: String,
    pub tunnels: usize,
    /// Bytes of each IPv4 packet on the wire (IPv4 + UDP + L2TP data header + PPP frame).
    pub packet_bytes: usize,
    pub setup_ms: f64,
}

/// The generator's answer to a `blast` line.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
pub struct Blasted {
    pub sent: u64,
    pub seconds: f64,
    /// sendmmsg calls that failed (ENOBUFS, ECONNREFUSED after an ICMP error...).
    pub errors: u64,
}

/// The sink's only line.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
pub struct Counted {
    /// Packets received on the interface between two samples inside the traffic.
    pub packets: u64,
    /// The time between those samples.
    pub seconds: f64,
}

fn say(value: &impl Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

struct Session {
    peer_tunnel_id: u16,
    peer_session_id: u16,
}

/// The generator's clock for the sans-IO tunnels.
struct Clock(Instant);

impl Clock {
    fn now(&self) -> l2tp::time::Instant {
        l2tp::time::Instant::from_micros(
            u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX),
        )
    }
}

pub fn blast(args: &BlastArgs) -> anyhow::Result<ExitCode> {
    let (bind, target) = (args.bind, args.target);
    if !(1..=1000).contains(&args.tunnels) {
        bail!("--tunnels {}: expected 1 to 1000", args.tunnels);
    }
    if !(4..=1400).contains(&args.frame) {
        bail!("--frame {}: expected 4 to 1400 bytes", args.frame);
    }
    let socket = UdpSocket::bind(bind).with_context(|| format!("binding {bind}"))?;
    let local = match socket.local_addr()? {
        SocketAddr::V4(v4) => v4,
        other => bail!("not IPv4: {other}"),
    };
    let clock = Clock(Instant::now());
    let mut set = TunnelSet::new(
        tunnel_config("l2tpkit-bench", None, false)?,
        os_seed(),
        false,
    );
    let mut packets = open_and_build(&socket, &mut set, &clock, target, args, local, true)?;
    let peer = match socket.peer_addr()? {
        SocketAddr::V4(v4) => v4,
        other => bail!("not IPv4: {other}"),
    };
    let (tx, commands) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        match commands.recv_timeout(Duration::from_millis(20)) {
            Ok(line) => {
                let words: Vec<&str> = line.split_whitespace().collect();
                match words.as_slice() {
                    ["blast", seconds, count] => {
                        let seconds: f64 = seconds.parse().context("blast SECONDS")?;
                        let count: u64 = count.parse().context("blast PACKETS")?;
                        let refs: Vec<&[u8]> = (0..BATCH)
                            .map(|i| packets[i % packets.len()].as_slice())
                            .collect();
                        say(&send(&socket, &refs, seconds, count))?;
                    }
                    // The NAT was replaced: new tunnels through it, the old ones left be.
                    ["reopen"] => {
                        packets =
                            open_and_build(&socket, &mut set, &clock, target, args, local, false)?;
                    }
                    ["quit"] => break,
                    _ => bail!("unknown command {line:?}"),
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        service(&socket, &mut set, &clock, peer);
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens `args.tunnels` tunnels with a session each, connects the socket to where they
/// answered from (the first time), says [`Ready`], and returns the data messages to send.
fn open_and_build(
    socket: &UdpSocket,
    set: &mut TunnelSet,
    clock: &Clock,
    target: SocketAddrV4,
    args: &BlastArgs,
    local: SocketAddrV4,
    first: bool,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let started = Instant::now();
    let (sessions, peer) = open(socket, set, clock, target, args)?;
    let setup_ms = started.elapsed().as_secs_f64() * 1000.0;
    if first {
        socket.connect(peer)?;
    } else if SocketAddr::V4(peer) != socket.peer_addr()? {
        bail!("the new tunnels answered from {peer}, the old ones elsewhere");
    }
    socket.set_read_timeout(Some(Duration::from_millis(1)))?;
    let frame = ppp_frame(args.frame);
    let packets: Vec<Vec<u8>> = sessions
        .iter()
        .map(|s| {
            let packet = PacketRepr::Data {
                header: HeaderRepr::data(s.peer_tunnel_id, s.peer_session_id),
                payload: &frame,
            };
            let mut bytes = vec![0; packet.buffer_len()];
            packet.emit(&mut bytes, None).map(|_| bytes)
        })
        .collect::<Result<_, _>>()
        .context("building the data messages")?;
    say(&Ready {
        local: local.to_string(),
        peer: peer.to_string(),
        tunnels: sessions.len(),
        packet_bytes: 20 + 8 + packets[0].len(),
        setup_ms,
    })?;
    Ok(packets)
}

/// Opens the tunnels and their sessions; the peers' IDs for each session.
fn open(
    socket: &UdpSocket,
    set: &mut TunnelSet,
    clock: &Clock,
    target: SocketAddrV4,
    args: &BlastArgs,
) -> anyhow::Result<(Vec<Session>, SocketAddrV4)> {
    let deadline = Instant::now() + Duration::from_secs_f64(args.setup_timeout.clamp(1.0, 120.0));
    let mut ours = std::collections::BTreeSet::new();
    for _ in 0..args.tunnels {
        ours.insert(
            set.connect(clock.now(), target)
                .context("no free tunnel ID")?,
        );
    }
    let mut peer_tunnel = std::collections::BTreeMap::new();
    let mut sessions = Vec::new();
    let mut buf = Vec::with_capacity(2048);
    let mut recv = vec![0u8; 65536];
    socket.set_read_timeout(Some(Duration::from_millis(5)))?;
    loop {
        let now = clock.now();
        while let Some((id, event)) = set.poll_event() {
            if !ours.contains(&id) {
                continue;
            }
            match event {
                Event::TunnelUp { peer_tunnel_id, .. } => {
                    peer_tunnel.insert(id, peer_tunnel_id);
                    if let Some(tunnel) = set.tunnel_mut(id) {
                        tunnel.open_incoming_call();
                    }
                }
                Event::SessionUp {
                    peer_session_id, ..
                } => {
                    if let Some(&peer_tunnel_id) = peer_tunnel.get(&id) {
                        sessions.push(Session {
                            peer_tunnel_id,
                            peer_session_id,
                        });
                    }
                }
                Event::TunnelDown { result, .. } => {
                    bail!("tunnel {id} went down during setup: {result:?}")
                }
                Event::SessionDown { result, .. } => {
                    bail!("a session of tunnel {id} went down during setup: {result:?}")
                }
                _ => {}
            }
        }
        while let Some(to) = set.poll_transmit(now, &mut buf) {
            socket.send_to(&buf, to)?;
        }
        if sessions.len() == args.tunnels {
            let peers: std::collections::BTreeSet<SocketAddrV4> =
                ours.iter().filter_map(|&id| set.peer_of(id)).collect();
            let mut peers = peers.into_iter();
            return match (peers.next(), peers.next()) {
                (Some(peer), None) => Ok((sessions, peer)),
                _ => bail!("the tunnels answered from several addresses"),
            };
        }
        if Instant::now() >= deadline {
            bail!(
                "{} of {} tunnels and {} sessions up after {:.0} s",
                peer_tunnel.len(),
                args.tunnels,
                sessions.len(),
                args.setup_timeout
            );
        }
        match socket.recv_from(&mut recv) {
            Ok((len, SocketAddr::V4(from))) => set.handle(clock.now(), from, &recv[..len]),
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(err) => return Err(err).context("receiving during setup"),
        }
        set.handle_timeout(clock.now());
    }
}

/// Answers what the peers sent since the last time (a HELLO wants its ZLB), quietly.
fn service(socket: &UdpSocket, set: &mut TunnelSet, clock: &Clock, peer: SocketAddrV4) {
    let mut recv = [0u8; 2048];
    while let Ok(len) = socket.recv(&mut recv) {
        set.handle(clock.now(), peer, &recv[..len]);
    }
    let now = clock.now();
    set.handle_timeout(now);
    while set.poll_event().is_some() {}
    let mut buf = Vec::new();
    while set.poll_transmit(now, &mut buf).is_some() {
        let _ = socket.send(&buf);
    }
}

/// Sends `refs` over and over for `seconds` or `count` packets, whichever ends first.
fn send(socket: &UdpSocket, refs: &[&[u8]], seconds: f64, count: u64) -> Blasted {
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(seconds.clamp(0.0, 600.0));
    let mut sent = 0u64;
    let mut errors = 0u64;
    while sent < count {
        let want = refs
            .len()
            .min(usize::try_from(count - sent).unwrap_or(usize::MAX));
        match send_udp_batch(socket, &refs[..want]) {
            Ok(n) => sent += n as u64,
            Err(_) => errors += 1,
        }
        if Instant::now() >= until {
            break;
        }
    }
    Blasted {
        sent,
        seconds: start.elapsed().as_secs_f64(),
        errors,
    }
}

/// A PPP frame of `len` bytes: address/control, protocol 0x0021 (IPv4), then a small IPv4
/// header (protocol 253, for experiments) and zeros. Nobody parses it: the sink counts.
fn ppp_frame(len: usize) -> Vec<u8> {
    let mut frame = vec![0xff, 0x03, 0x00, 0x21];
    let ip_len = (len - 4) as u16;
    let header = [
        0x45,
        0,
        (ip_len >> 8) as u8,
        ip_len as u8,
        0,
        0,
        0x40,
        0,
        64,
        253,
        0,
        0,
        10,
        0,
        0,
        1,
        10,
        0,
        0,
        2,
    ];
    frame.extend(header.iter().take(len - 4));
    frame.resize(len, 0);
    frame
}

/// `rx_packets` of `interface` from `/proc/self/net/dev` (this process's namespace).
fn rx_packets(interface: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/self/net/dev").context("reading /proc/net/dev")?;
    for line in text.lines().skip(2) {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == interface {
            // bytes packets errs drop ...
            return counters
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .context("an rx_packets column that is not a number");
        }
    }
    bail!("no interface {interface:?} in /proc/net/dev")
}

pub fn sink(args: &SinkArgs) -> anyhow::Result<ExitCode> {
    const SAMPLE: Duration = Duration::from_millis(5);
    let start = Instant::now();
    let mut last = (start, rx_packets(&args.interface)?);
    say(&serde_json::json!({ "ready": true }))?;
    let wait = Duration::from_secs_f64(args.wait.clamp(0.1, 600.0));
    let max = Duration::from_secs_f64(args.max.clamp(0.1, 3600.0));
    let idle = Duration::from_millis(args.idle_ms.clamp(10, 60_000));
    // Samples (time, count) that saw the count grow: the first, the one before the latest,
    // and the latest. Each pair is read together, so a sample the scheduler delayed is late
    // but still true; only the sample *before* traffic started would not be (it says nothing
    // about when the first packet came), so the rate is taken from the first growing sample
    // to the one before the last: both inside the traffic.
    let mut first: Option<(Instant, u64)> = None;
    let mut penultimate: Option<(Instant, u64)> = None;
    let mut latest = last;
    let mut growing = 0u32;
    loop {
        std::thread::sleep(SAMPLE);
        let now = Instant::now();
        let count = rx_packets(&args.interface)?;
        if count > last.1 {
            growing += 1;
            if first.is_none() {
                first = Some((now, count));
            } else {
                penultimate = Some(latest);
            }
            latest = (now, count);
        }
        last = (now, count);
        match first {
            None if now - start >= wait => break,
            Some(_) if now - latest.0 >= idle || now - start >= max => break,
            _ => {}
        }
    }
    let counted = match (first, penultimate) {
        (Some((t0, c0)), Some((t1, c1))) if growing >= 3 && t1 > t0 => Counted {
            packets: c1 - c0,
            seconds: (t1 - t0).as_secs_f64(),
        },
        // Too short to have an inside: from the first growing sample to the latest.
        (Some((t0, c0)), _) if latest.0 > t0 => Counted {
            packets: latest.1 - c0,
            seconds: (latest.0 - t0).as_secs_f64(),
        },
        _ => Counted::default(),
    };
    say(&counted)?;
    Ok(ExitCode::SUCCESS)
}
