//! Runners for the forwarding roles: the master (and, with the NAT, FIG 2's middle box).
//!
//! The master receives on a UDP socket bound to the cluster address (the kernel hands it only
//! what is addressed there), rebuilds the IPv4/UDP packet as the initiator sent it, lets the
//! sans-IO [`Master`] rewrite the destination, and sends the packet onto the LAN through a raw
//! IP_HDRINCL socket, so the initiator's source address survives (PEERS.md: UDP receive + raw
//! send, ~190k packets/s here). Load reports arrive on a second UDP socket on the LAN side.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use l2tp::capture::{build_ipv4_udp, CaptureWriter, Linktype};
use l2tp::time::Instant;
use tokio::net::UdpSocket;

use crate::cluster::REPORT_PORT;
use crate::master::{Master, MasterConfig, Verdict};
use crate::raw::RawSender;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding UDP {addr}: {source}")]
    Bind {
        addr: SocketAddrV4,
        source: io::Error,
    },
    #[error("raw socket (needs root / CAP_NET_RAW): {0}")]
    Raw(io::Error),
    #[error("socket: {0}")]
    Socket(io::Error),
    #[error("pcap: {0}")]
    Pcap(#[from] l2tp::capture::CaptureError),
    #[error("writing status file {path}: {source}")]
    Status { path: PathBuf, source: io::Error },
}

/// Where the master listens and what it writes.
#[derive(Debug, Clone)]
pub struct MasterSetup {
    pub config: MasterConfig,
    /// The master's own LAN address: load reports arrive there.
    pub lan_addr: Ipv4Addr,
    pub port: u16,
    /// Rewritten every `status_interval` with the JSON of `Master::status`.
    pub status_file: Option<PathBuf>,
    pub status_interval: Duration,
    pub pcap: Option<PathBuf>,
    /// Stop after this long (tests, lab runs); until Ctrl-C otherwise.
    pub duration: Option<Duration>,
}

struct Clock {
    start: std::time::Instant,
    wall: Duration,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            start: std::time::Instant::now(),
            wall: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }
    fn now(&self) -> Instant {
        Instant::from_micros(u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX))
    }
    fn wall(&self, now: Instant) -> Duration {
        self.wall + Duration::from_micros(now.as_micros())
    }
}

async fn bind(addr: SocketAddrV4) -> Result<UdpSocket, ServeError> {
    let socket = UdpSocket::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    crate::runner::grow_buffers(&socket);
    Ok(socket)
}

fn write_status(path: &Path, master: &Master) -> Result<(), ServeError> {
    let json = serde_json::to_vec_pretty(&master.status()).unwrap_or_default();
    // Write then rename, so a reader never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| ServeError::Status {
            path: path.to_path_buf(),
            source,
        })
}

/// Runs the master until its duration ends or Ctrl-C; returns its final status.
pub async fn serve_master(setup: MasterSetup) -> Result<crate::master::MasterStatus, ServeError> {
    let cluster = SocketAddrV4::new(setup.config.cluster_addr, setup.port);
    let public = bind(cluster).await?;
    let reports = bind(SocketAddrV4::new(setup.lan_addr, REPORT_PORT)).await?;
    let raw = RawSender::new().map_err(ServeError::Raw)?;
    let mut pcap = match &setup.pcap {
        Some(path) => Some(CaptureWriter::create(path, Linktype::RAW)?),
        None => None,
    };
    let clock = Clock::new();
    let mut master = Master::new(setup.config.clone());
    tracing::info!(%cluster, lan = %setup.lan_addr, "master up");
    // The readiness line the lab waits for.
    eprintln!(
        "l2tpkit master: listening on {cluster}, reports on {}:{REPORT_PORT}",
        setup.lan_addr
    );
    let mut buf = vec![0u8; 65536];
    let mut report_buf = vec![0u8; 4096];
    let mut packet = Vec::with_capacity(2048);
    let mut next_status = Instant::ZERO;
    let deadline = setup.duration.map(|d| Instant::ZERO + d);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let now = clock.now();
        master.handle_timeout(now);
        if let Some(path) = &setup.status_file {
            if now >= next_status {
                write_status(path, &master)?;
                next_status = now + setup.status_interval;
            }
        }
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        let wake = [
            master.poll_timeout(),
            setup.status_file.as_ref().map(|_| next_status),
            deadline,
        ]
        .into_iter()
        .flatten()
        .min();
        let sleep = wake.map(|at| at.saturating_duration_since(now));
        tokio::select! {
            received = public.recv_from(&mut buf) => {
                let (len, from) = received.map_err(ServeError::Socket)?;
                let SocketAddr::V4(from) = from else { continue };
                let now = clock.now();
                packet.clear();
                let payload = buf.get(..len).unwrap_or_default();
                if build_ipv4_udp(from, cluster, payload, 0, &mut packet).is_err() {
                    continue;
                }
                if let Verdict::Forward { endpoint, to } = master.handle_packet(now, &mut packet) {
                    if let Some(pcap) = pcap.as_mut() {
                        let _ = pcap.write_raw(clock.wall(now), &packet);
                    }
                    if let Err(err) = raw.send(&packet) {
                        tracing::warn!(%endpoint, %to, %err, "forwarding failed");
                    }
                }
            }
            received = reports.recv_from(&mut report_buf) => {
                let (len, from) = received.map_err(ServeError::Socket)?;
                if let SocketAddr::V4(from) = from {
                    let now = clock.now();
                    let outcome = master.handle_report(now, from, report_buf.get(..len).unwrap_or_default());
                    tracing::debug!(%from, ?outcome, "load report");
                }
            }
            _ = sleep_for(sleep) => {}
            _ = &mut ctrl_c => break,
        }
    }
    if let Some(path) = &setup.status_file {
        write_status(path, &master)?;
    }
    if let Some(pcap) = pcap.as_mut() {
        pcap.flush()?;
    }
    Ok(master.status())
}

async fn sleep_for(duration: Option<Duration>) {
    match duration {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Where the NAT listens.
#[derive(Debug, Clone)]
pub struct NatSetup {
    pub config: crate::nat::NatConfig,
    pub port: u16,
    /// The LAN interface, tapped for the endpoints' packets routed through us.
    pub lan_interface: String,
    /// The NAT's own LAN address: packets addressed to it are the kernel's, not ours.
    pub lan_addr: Ipv4Addr,
    /// Rewritten every `status_interval`: the stats and the Table 1 dump.
    pub status_file: Option<PathBuf>,
    pub status_interval: Duration,
    pub pcap: Option<PathBuf>,
    pub duration: Option<Duration>,
}

/// The NAT's status file: its counters and the Table 1 rows.
#[derive(Debug, serde::Serialize)]
pub struct NatStatus {
    pub stats: crate::nat::NatStats,
    pub table: String,
}

fn nat_status(nat: &crate::nat::Nat) -> NatStatus {
    NatStatus {
        stats: nat.stats(),
        table: nat.table(),
    }
}

fn write_nat_status(path: &Path, nat: &crate::nat::Nat) -> Result<(), ServeError> {
    let json = serde_json::to_vec_pretty(&nat_status(nat)).unwrap_or_default();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| ServeError::Status {
            path: path.to_path_buf(),
            source,
        })
}

/// veth hands tapped packets over with the UDP checksum only partly computed (checksum
/// offload); the NAT's incremental update needs a complete one, so it is recomputed here.
fn complete_udp_checksum(packet: &mut [u8]) {
    let Ok(view) = l2tp::ip::Ipv4Udp::new_checked(&packet[..]) else {
        return;
    };
    if view.udp_checksum() == 0 {
        return;
    }
    let header = view.header_len();
    let udp_len = view.udp_len();
    let (src, dst) = (view.src(), view.dst());
    let Some(udp) = packet.get_mut(header..header + udp_len) else {
        return;
    };
    udp[6] = 0;
    udp[7] = 0;
    let mut sum: u32 = 0;
    for word in [src.octets(), dst.octets()] {
        sum += u32::from(u16::from_be_bytes([word[0], word[1]]));
        sum += u32::from(u16::from_be_bytes([word[2], word[3]]));
    }
    sum += 17 + udp_len as u32;
    for chunk in udp.chunks(2) {
        let hi = chunk.first().copied().unwrap_or(0);
        let lo = chunk.get(1).copied().unwrap_or(0);
        sum += u32::from(u16::from_be_bytes([hi, lo]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let checksum = match !(sum as u16) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&checksum.to_be_bytes());
}

/// Runs the NAT of FIG 2 until its duration ends or Ctrl-C; returns its final status.
pub async fn serve_nat(setup: NatSetup) -> Result<NatStatus, ServeError> {
    use tokio::io::unix::AsyncFd;

    let global = SocketAddrV4::new(setup.config.global, setup.port);
    let public = bind(global).await?;
    let raw = RawSender::new().map_err(ServeError::Raw)?;
    let tap = crate::raw::Tap::open(&setup.lan_interface, 64).map_err(ServeError::Raw)?;
    // SAFETY: the Tap owns its descriptor (an OwnedFd) for as long as the AsyncFd holds it,
    // and `as_raw_fd` always returns that same descriptor.
    let mut tap =
        unsafe { AsyncFd::register(TapFd(tap)) }.map_err(|err| ServeError::Socket(err.into()))?;
    let mut pcap = match &setup.pcap {
        Some(path) => Some(CaptureWriter::create(path, Linktype::RAW)?),
        None => None,
    };
    let clock = Clock::new();
    let mut nat = crate::nat::Nat::new(setup.config.clone());
    tracing::info!(%global, lan = %setup.lan_interface, "NAT up");
    eprintln!(
        "l2tpkit nat: listening on {global}, tapping {}",
        setup.lan_interface
    );
    let mut buf = vec![0u8; 65536];
    let mut packet = Vec::with_capacity(2048);
    let mut next_status = Instant::ZERO;
    let deadline = setup.duration.map(|d| Instant::ZERO + d);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let now = clock.now();
        nat.handle_timeout(now);
        if let Some(path) = &setup.status_file {
            if now >= next_status {
                write_nat_status(path, &nat)?;
                next_status = now + setup.status_interval;
            }
        }
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        let wake = [
            nat.poll_timeout(),
            setup.status_file.as_ref().map(|_| next_status),
            deadline,
        ]
        .into_iter()
        .flatten()
        .min();
        let sleep = wake.map(|at| at.saturating_duration_since(now));
        tokio::select! {
            received = public.recv_from(&mut buf) => {
                let (len, from) = received.map_err(ServeError::Socket)?;
                let SocketAddr::V4(from) = from else { continue };
                let now = clock.now();
                packet.clear();
                let payload = buf.get(..len).unwrap_or_default();
                if build_ipv4_udp(from, global, payload, 0, &mut packet).is_err() {
                    continue;
                }
                if let crate::nat::Verdict::ToLan { endpoint } = nat.from_public(now, &mut packet) {
                    if let Some(pcap) = pcap.as_mut() {
                        let _ = pcap.write_raw(clock.wall(now), &packet);
                    }
                    if let Err(err) = raw.send(&packet) {
                        tracing::warn!(%endpoint, %err, "forwarding to the LAN failed");
                    }
                }
            }
            ready = tap.readable_mut() => {
                let mut guard = ready.map_err(ServeError::Socket)?;
                let now = clock.now();
                let n = guard.get_inner_mut().0.recv_batch().map_err(ServeError::Socket)?;
                if n == 0 {
                    guard.clear_ready();
                }
                let inner = guard.get_inner_mut();
                let mut out: Vec<Vec<u8>> = Vec::with_capacity(n);
                for i in 0..n {
                    let Some(frame) = inner.0.packet(i) else { continue };
                    // Packets for the NAT's own LAN address belong to its kernel.
                    if frame.get(16..20) == Some(&setup.lan_addr.octets()[..]) {
                        continue;
                    }
                    complete_udp_checksum(frame);
                    if nat.from_lan(now, frame) == crate::nat::Verdict::ToPublic {
                        let total = frame
                            .get(2..4)
                            .map_or(frame.len(), |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
                        out.push(frame.get(..total).unwrap_or(frame).to_vec());
                    }
                }
                drop(guard);
                if !out.is_empty() {
                    if let Some(pcap) = pcap.as_mut() {
                        for p in &out {
                            let _ = pcap.write_raw(clock.wall(now), p);
                        }
                    }
                    let refs: Vec<&[u8]> = out.iter().map(Vec::as_slice).collect();
                    if let Err(err) = raw.send_batch(&refs) {
                        tracing::warn!(%err, "forwarding to the public side failed");
                    }
                }
            }
            _ = sleep_for(sleep) => {}
            _ = &mut ctrl_c => break,
        }
    }
    if let Some(path) = &setup.status_file {
        write_nat_status(path, &nat)?;
    }
    if let Some(pcap) = pcap.as_mut() {
        pcap.flush()?;
    }
    Ok(nat_status(&nat))
}

/// The tap as a file descriptor tokio can wait on.
struct TapFd(crate::raw::Tap);

impl std::os::fd::AsRawFd for TapFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.raw_fd()
    }
}
