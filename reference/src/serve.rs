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

use crate::claim::{ClaimError, ClaimPlan, Probe};
use crate::cluster::REPORT_PORT;
use crate::control::{self, ControlServer, Request};
use crate::master::{Master, MasterConfig, Verdict};
use crate::takeover::{Holder, HolderState};
use netio::filter::{attach_filter, drop_all_filter, udp_to_filter};
use netio::iface::interface_with_address;
use netio::ring::{AsyncRing, RxRing};
use netio::tap::{AsyncTap, FrameSender, Tap};
use netio::udp::{udp_socket, RawSender, UdpBatchReceiver};
use netio::BATCH;

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
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
    #[error("claiming the master's addresses: {0}")]
    Claim(#[from] ClaimError),
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
    /// Unix socket for `status`, `drain`, `deactivate`, `activate` (see [`crate::control`]).
    pub control: Option<PathBuf>,
    pub pcap: Option<PathBuf>,
    /// Stop after this long (tests, lab runs); until Ctrl-C otherwise.
    pub duration: Option<Duration>,
    /// SO_REUSEADDR on the cluster address's socket: a master run by an endpoint that took
    /// over binds it beside the endpoint's own 0.0.0.0:1701 (which sets it too).
    pub reuse_addr: bool,
    /// Stops the master once it holds `true` (the process hosting it is stopping).
    pub stop: Option<tokio::sync::watch::Receiver<bool>>,
    /// How this master came to hold the address, for its status; a plain start by default.
    pub holder: Option<Holder>,
    /// Sealed load reports to start from, as if just received (an endpoint taking over hands
    /// in its own last one, so the new master dispatches before the first reports reach it).
    pub seed_reports: Vec<Vec<u8>>,
}

impl MasterSetup {
    /// A master on `config.cluster_addr`:1701 with its reports on `lan_addr`, no files, until
    /// Ctrl-C.
    pub fn new(config: MasterConfig, lan_addr: Ipv4Addr) -> MasterSetup {
        MasterSetup {
            config,
            lan_addr,
            port: 1701,
            status_file: None,
            status_interval: Duration::from_secs(1),
            control: None,
            pcap: None,
            duration: None,
            reuse_addr: false,
            stop: None,
            holder: None,
            seed_reports: Vec::new(),
        }
    }
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
    bind_with(addr, false)
}

fn bind_with(addr: SocketAddrV4, reuse_addr: bool) -> Result<UdpSocket, ServeError> {
    let socket = udp_socket(addr, reuse_addr)
        .and_then(UdpSocket::from_std)
        .map_err(|source| ServeError::Bind { addr, source })?;
    netio::runner::grow_buffers(&socket);
    Ok(socket)
}

/// Resolves once `stop` holds `true`; never without one (or once its sender is gone).
async fn stopped(stop: Option<&mut tokio::sync::watch::Receiver<bool>>) {
    let Some(stop) = stop else {
        return std::future::pending().await;
    };
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// Runs a master that claims its addresses first (`l2tpkit master --claim-public/--claim-lan`):
/// leftovers of an earlier master of ours are removed, the addresses probed with ARP, and
/// then either taken (and served, and given back at the end) or, when someone answers for
/// them, left alone: the master stands by (its status says so) until it is stopped. A master
/// that comes back after a takeover therefore never fights the endpoint that took over.
pub async fn serve_master_claiming(
    mut setup: MasterSetup,
    plan: ClaimPlan,
) -> Result<crate::master::MasterStatus, ServeError> {
    let cleanup = plan.clone();
    let removed = blocking(move || crate::claim::remove_leftovers(&cleanup)).await?;
    for address in &removed {
        // Left by an earlier master that died, or set up statically: either way it must go
        // before the probe, or our own kernel would answer for it.
        tracing::info!(%address, "address present before the claim: removed, then probed");
    }
    let probing = plan.clone();
    let probe = blocking(move || crate::claim::probe(&probing)).await?;
    if let Probe::Held { .. } = &probe {
        let held_by = probe.describe();
        tracing::warn!(%held_by, "the cluster address is held: standing by, not fighting for it");
        return stand_by(setup, held_by).await;
    }
    let taking = plan.clone();
    let claimed = blocking(move || crate::claim::take(&taking)).await?;
    let mut holder = setup.holder.take().unwrap_or_else(|| Holder {
        name: setup.config.name.clone(),
        ..Holder::default()
    });
    holder.claimed = claimed
        .addresses()
        .iter()
        .map(ToString::to_string)
        .collect();
    tracing::info!(claimed = ?holder.claimed, "cluster addresses claimed and announced");
    setup.holder = Some(holder);
    let served = serve_master(setup).await;
    let released = blocking(move || claimed.release()).await;
    let status = served?;
    released?;
    Ok(status)
}

/// Carries out an endpoint's takeover orders (`crate::takeover`) until `stop`: each claim
/// probes the master's addresses; when someone answers the watch hears `Held` and goes on
/// watching; when nobody does, the addresses are taken and announced, the watch hears
/// `Claimed`, and the master runs here (with `setup`, its socket sharing the endpoint's port)
/// until `stop`, then gives the addresses back. Returns the master's final status if it ran.
pub async fn serve_takeover(
    mut orders: tokio::sync::mpsc::UnboundedReceiver<crate::takeover::Order>,
    outcomes: tokio::sync::mpsc::UnboundedSender<crate::takeover::ClaimOutcome>,
    plan: ClaimPlan,
    mut setup: MasterSetup,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Option<crate::master::MasterStatus>, ServeError> {
    use crate::takeover::{ClaimOutcome, Order, TakeoverRecord};
    let order = loop {
        let order = tokio::select! {
            order = orders.recv() => order,
            _ = stopped(Some(&mut stop)) => None,
        };
        let Some(Order::Claim {
            rank,
            silent_for,
            previous_master,
            own_report,
        }) = order
        else {
            return Ok(None);
        };
        setup.seed_reports = own_report.into_iter().collect();
        let ordered = std::time::Instant::now();
        let probing = plan.clone();
        let outcome = match blocking(move || crate::claim::probe(&probing)).await {
            Ok(Probe::Free) => {
                let taking = plan.clone();
                match blocking(move || crate::claim::take(&taking)).await {
                    Ok(claimed) => {
                        let _ = outcomes.send(ClaimOutcome::Claimed);
                        break (claimed, rank, silent_for, previous_master, ordered);
                    }
                    Err(err) => ClaimOutcome::Failed {
                        error: err.to_string(),
                    },
                }
            }
            Ok(held) => ClaimOutcome::Held {
                by: held.describe(),
            },
            Err(err) => ClaimOutcome::Failed {
                error: err.to_string(),
            },
        };
        let _ = outcomes.send(outcome);
    };
    let (claimed, rank, silent_for, previous_master, ordered) = order;
    let claim_ms = u64::try_from(ordered.elapsed().as_millis()).unwrap_or(u64::MAX);
    let record = TakeoverRecord {
        endpoint: setup.config.name.clone(),
        rank,
        previous_master,
        master_silent_ms: u64::try_from(silent_for.as_millis()).unwrap_or(u64::MAX),
        claim_ms,
        at_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    };
    let claimed_text: Vec<String> = claimed
        .addresses()
        .iter()
        .map(ToString::to_string)
        .collect();
    tracing::warn!(
        rank, silent_ms = record.master_silent_ms, claim_ms, claimed = ?claimed_text,
        "took the master over: serving the cluster address"
    );
    eprintln!(
        "l2tpkit endpoint {}: took the master over from {} (rank {rank}, master silent {} ms, \
         claimed in {claim_ms} ms: {})",
        record.endpoint,
        record.previous_master,
        record.master_silent_ms,
        claimed_text.join(", ")
    );
    setup.holder = Some(Holder {
        name: setup.config.name.clone(),
        state: HolderState::Active,
        held_by: None,
        claimed: claimed_text,
        takeover: Some(record),
    });
    setup.stop = Some(stop);
    let served = serve_master(setup).await;
    if let Err(err) = &served {
        tracing::error!(%err, "the master this endpoint took over failed; giving its addresses back");
    }
    let released = blocking(move || claimed.release()).await;
    let status = served?;
    released?;
    Ok(Some(status))
}

/// Runs blocking claim work (ARP, `ip`) off the runtime's thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ClaimError> + Send + 'static,
) -> Result<T, ServeError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| ServeError::Socket(io::Error::other(err)))?
        .map_err(ServeError::from)
}

/// A master that found its address held: writes its status (state `standby`, who holds the
/// address) and answers `status` on its control socket until stopped; nothing else.
async fn stand_by(
    mut setup: MasterSetup,
    held_by: String,
) -> Result<crate::master::MasterStatus, ServeError> {
    let mut master = Master::new(setup.config.clone());
    master.set_holder(Holder {
        name: setup.config.name.clone(),
        state: HolderState::Standby,
        held_by: Some(held_by.clone()),
        ..Holder::default()
    });
    let mut control = setup
        .control
        .as_deref()
        .map(ControlServer::bind)
        .transpose()?;
    // The readiness line the lab waits for after a restart.
    eprintln!("l2tpkit master: standing by: {held_by}");
    let clock = Clock::new();
    let deadline = setup.duration.map(|d| Instant::ZERO + d);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut stop = setup.stop.take();
    loop {
        let now = clock.now();
        master.handle_timeout(now);
        if let Some(path) = &setup.status_file {
            write_status(path, &master)?;
        }
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        let until_deadline = deadline.map(|d| d.saturating_duration_since(now));
        let sleep = [Some(setup.status_interval), until_deadline]
            .into_iter()
            .flatten()
            .min();
        tokio::select! {
            pending = control::next(control.as_mut()) => {
                let reply = match pending.request {
                    Ok(Request::Status) => control::ok(&master.status()),
                    Ok(other) => control::refused(&format!(
                        "{other}: this master stands by ({held_by}); ask the one holding the address"
                    )),
                    Err(error) => control::refused(&error),
                };
                let _ = pending.reply.send(reply);
            }
            _ = sleep_for(sleep) => {}
            _ = stopped(stop.as_mut()) => break,
            _ = &mut ctrl_c => break,
        }
    }
    if let Some(path) = &setup.status_file {
        write_status(path, &master)?;
    }
    Ok(master.status())
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
pub async fn serve_master(
    mut setup: MasterSetup,
) -> Result<crate::master::MasterStatus, ServeError> {
    let cluster = SocketAddrV4::new(setup.config.cluster_addr, setup.port);
    let public = bind_with(cluster, setup.reuse_addr)?;
    let reports = bind(SocketAddrV4::new(setup.lan_addr, REPORT_PORT)).await?;
    let raw = RawSender::new().map_err(ServeError::Raw)?;
    let mut pcap = match &setup.pcap {
        Some(path) => Some(CaptureWriter::create(path, Linktype::RAW)?),
        None => None,
    };
    let mut control = setup
        .control
        .as_deref()
        .map(ControlServer::bind)
        .transpose()?;
    let clock = Clock::new();
    let mut master = Master::new(setup.config.clone());
    if let Some(holder) = setup.holder.take() {
        master.set_holder(holder);
    }
    let mut stop = setup.stop.take();
    for report in std::mem::take(&mut setup.seed_reports) {
        let from = SocketAddrV4::new(setup.lan_addr, REPORT_PORT);
        let outcome = master.handle_report(clock.now(), from, &report);
        tracing::info!(?outcome, "started from a report handed in");
        // Its ack would go to ourselves: the endpoint hears the acks of its next report.
        while master.poll_ack().is_some() {}
    }
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
                    // Acks back to the report's source (the endpoint's report socket, never
                    // its L2TP port); best effort, as the reports are.
                    while let Some((to, ack)) = master.poll_ack() {
                        if let Err(err) = reports.try_send_to(&ack, SocketAddr::V4(to)) {
                            tracing::debug!(%to, %err, "report ack not sent");
                        }
                    }
                }
            }
            pending = control::next(control.as_mut()) => {
                let now = clock.now();
                master.handle_timeout(now);
                let reply = answer_master(&mut master, pending.request);
                let _ = pending.reply.send(reply);
            }
            _ = sleep_for(sleep) => {}
            _ = stopped(stop.as_mut()) => break,
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

/// One control request to the master: the operator's drain / deactivate / activate (the
/// patent's "inactivate"), or just its status.
fn answer_master(master: &mut Master, request: Result<Request, String>) -> String {
    let (verb, done, name) = match request {
        Err(error) => return control::refused(&error),
        Ok(Request::Status) => return control::ok(&master.status()),
        Ok(Request::Drain(name)) => ("drain", master.drain(&name), name),
        Ok(Request::Deactivate(name)) => ("deactivate", master.deactivate(&name), name),
        Ok(Request::Activate(name)) => ("activate", master.activate(&name), name),
    };
    if !done {
        let known: Vec<String> = master
            .status()
            .endpoints
            .into_iter()
            .map(|e| e.name)
            .collect();
        return control::refused(&format!(
            "{verb} {name}: no endpoint of that name (known: {})",
            if known.is_empty() {
                "none yet".to_string()
            } else {
                known.join(", ")
            }
        ));
    }
    control::ok(&master.status())
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
    /// Unix socket answering `status` with the same JSON (see [`crate::control`]).
    pub control: Option<PathBuf>,
    pub pcap: Option<PathBuf>,
    pub duration: Option<Duration>,
}

/// The NAT's status file: its counters, how the runner moved packets, and the Table 1 rows.
#[derive(Debug, serde::Serialize)]
pub struct NatStatus {
    pub stats: crate::nat::NatStats,
    pub io: NatIo,
    pub table: String,
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
    /// Packets to the LAN sent as Ethernet frames (the endpoint's MAC fresh from the tap).
    pub lan_frames: u64,
    /// Packets to the LAN sent through the raw IP socket (the kernel's routing and ARP).
    pub lan_raw: u64,
}

fn nat_status(nat: &crate::nat::Nat, io: NatIo) -> NatStatus {
    NatStatus {
        stats: nat.stats(),
        io,
        table: nat.table(),
    }
}

fn write_nat_status(path: &Path, nat: &crate::nat::Nat, io: NatIo) -> Result<(), ServeError> {
    let json = serde_json::to_vec_pretty(&nat_status(nat, io)).unwrap_or_default();
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
    let pseudo = ones_complement_sum(&src.octets(), 17 + udp_len as u64);
    let sum = ones_complement_sum(&dst.octets(), pseudo);
    let checksum = match !fold(ones_complement_sum(udp, sum)) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&checksum.to_be_bytes());
}

/// Ethernet (14) + IPv4 (20) + UDP (8): the room left in front of each datagram read from the
/// public socket, so that the packet (and, for the LAN, its frame) is built around it in place.
const HEADROOM: usize = ETHERNET + IPV4_UDP;
const ETHERNET: usize = 14;
const IPV4_UDP: usize = 28;
/// Largest UDP payload in an IPv4 packet.
const MAX_PAYLOAD: usize = 65_535 - IPV4_UDP;
/// recvmmsg batches the NAT reads from the public socket per wake-up before the tap and the
/// timers get a turn.
const BATCHES_PER_WAKE: usize = 16;

/// The MAC addresses of the LAN's hosts as the tap sees them (the source of each frame that
/// arrives), so that packets for an endpoint go out as Ethernet frames on the tap's socket:
/// no routing, neighbour lookup or netfilter per packet (PEERS.md: ~1 µs a packet cheaper than
/// IP_HDRINCL). An address not seen for [`Neighbours::FRESH`] is not used: such packets take
/// the raw IP socket, and the kernel's ARP, as before.
struct Neighbours {
    map: std::collections::HashMap<Ipv4Addr, ([u8; 6], Instant)>,
    /// The last lookup, which is what most of a batch asks for again.
    last: Option<(Ipv4Addr, [u8; 6], Instant)>,
}

impl Neighbours {
    /// As long as the kernel's ARP would trust an entry without checking (30 s is Linux's
    /// base_reachable_time).
    const FRESH: Duration = Duration::from_secs(30);
    /// Bounds the memory a LAN full of forged sources can take.
    const MAX: usize = 1 << 16;

    fn new() -> Neighbours {
        Neighbours {
            map: std::collections::HashMap::new(),
            last: None,
        }
    }

    fn learn(&mut self, ip: Ipv4Addr, mac: [u8; 6], now: Instant) {
        if let Some(entry) = self.map.get_mut(&ip) {
            *entry = (mac, now);
        } else {
            if self.map.len() >= Neighbours::MAX {
                self.map.retain(|_, (_, seen)| {
                    now.saturating_duration_since(*seen) < Neighbours::FRESH
                });
                if self.map.len() >= Neighbours::MAX {
                    return;
                }
            }
            self.map.insert(ip, (mac, now));
        }
        if self.last.is_some_and(|(last, _, _)| last == ip) {
            self.last = None;
        }
    }

    fn fresh(&mut self, ip: Ipv4Addr, now: Instant) -> Option<[u8; 6]> {
        let fresh = |seen: Instant| now.saturating_duration_since(seen) < Neighbours::FRESH;
        if let Some((last, mac, seen)) = self.last {
            if last == ip && fresh(seen) {
                return Some(mac);
            }
        }
        let &(mac, seen) = self.map.get(&ip)?;
        self.last = Some((ip, mac, seen));
        fresh(seen).then_some(mac)
    }
}

/// The one's-complement sum of `data` as 16-bit big-endian words (an odd last byte padded with
/// zero), added to `sum`; not folded.
fn ones_complement_sum(data: &[u8], mut sum: u64) -> u64 {
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        sum += u64::from(u32::from_be_bytes([word[0], word[1], word[2], word[3]]));
    }
    let rest = words.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    sum + u64::from(u32::from_be_bytes(tail))
}

fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Writes the IPv4 and UDP headers of a datagram from `src` to `dst` into the first 28 bytes
/// of `packet`, whose rest is the UDP payload: byte for byte what
/// [`l2tp::capture::build_ipv4_udp`] builds (identification 0, don't fragment, TTL 64, both
/// checksums), without its copy of the payload. False when the payload is too long for IPv4.
fn write_ipv4_udp(packet: &mut [u8], src: SocketAddrV4, dst: SocketAddrV4) -> bool {
    let Ok(total) = u16::try_from(packet.len()) else {
        return false;
    };
    if packet.len() < IPV4_UDP {
        return false;
    }
    let udp_len = total - 20;
    let (ip, segment) = packet.split_at_mut(20);
    ip.copy_from_slice(&[
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[12..16].copy_from_slice(&src.ip().octets());
    ip[16..20].copy_from_slice(&dst.ip().octets());
    let checksum = !fold(ones_complement_sum(ip, 0));
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    segment[0..2].copy_from_slice(&src.port().to_be_bytes());
    segment[2..4].copy_from_slice(&dst.port().to_be_bytes());
    segment[4..6].copy_from_slice(&udp_len.to_be_bytes());
    segment[6..8].copy_from_slice(&[0, 0]);
    // Pseudo-header: source, destination, protocol, UDP length.
    let pseudo = ones_complement_sum(&ip[12..20], 17 + u64::from(udp_len));
    let checksum = match !fold(ones_complement_sum(segment, pseudo)) {
        0 => 0xffff,
        c => c,
    };
    segment[6..8].copy_from_slice(&checksum.to_be_bytes());
    true
}

/// Runs the NAT of FIG 2 until its duration ends or Ctrl-C; returns its final status.
///
/// The hot path, public side to LAN (`l2tpkit bench nat` measures it): a TPACKET_V2 receive
/// ring ([`RxRing`]) on the interface that holds the global address, with a BPF filter that
/// takes only UDP to the global address and port; the UDP socket bound there keeps the port
/// (no ICMP port unreachable) and takes nothing. The sans-IO [`crate::nat::Nat`] rewrites each
/// packet in place in the ring, and a batch of up to 64 leaves in one sendmmsg, read straight
/// out of the ring: as Ethernet frames ([`FrameSender`]) when the endpoint's MAC address is
/// fresh in [`Neighbours`], through the raw IP socket otherwise. Without the ring (no
/// interface holds the global address), the UDP socket is read in recvmmsg batches into
/// buffers with room in front, where the IPv4/UDP header is written, and the rest is the same.
/// LAN side to public: the tap's recvmmsg batch, rewritten in place, one sendmmsg on the raw
/// socket. Nothing is allocated per packet or per batch.
///
/// Since the ring sees the packets as they arrived, they keep their TTL (less one), IP
/// identification and UDP checksum (updated, or completed first when offload left it
/// partial). A fragmented datagram is not forwarded, as on the LAN side: its first fragment
/// reaches the NAT and is dropped and counted (`DropReason::Fragment`), and the reassembled
/// datagram goes to the UDP socket, which takes nothing. (Read from the UDP socket, as before
/// the ring and still without it, the packet is rebuilt with TTL 64 from the reassembled
/// datagram, and one longer than the LAN's MTU fails to go out.)
pub async fn serve_nat(setup: NatSetup) -> Result<NatStatus, ServeError> {
    use tokio::io::Interest;

    let global = SocketAddrV4::new(setup.config.global, setup.port);
    let public = bind(global).await?;
    // The fast way in: a receive ring on the interface that holds the global address; the
    // UDP socket then only keeps the port ours and takes nothing. Without such an interface
    // (or the ring), the socket receives, in recvmmsg batches.
    let ring = interface_with_address(setup.config.global).and_then(|interface| {
        let filter = udp_to_filter(setup.config.global, setup.port);
        let ring = RxRing::open(&interface, &filter)?;
        attach_filter(&public, &drop_all_filter())?;
        Ok((interface, ring))
    });
    let (public_interface, ring) = match ring {
        Ok((interface, ring)) => (Some(interface), Some(ring)),
        Err(err) => {
            tracing::warn!(%err, "no receive ring on the public side; reading the UDP socket");
            (None, None)
        }
    };
    let mut ring = ring.map(PublicRing::new);
    let raw = RawSender::new().map_err(ServeError::Raw)?;
    let tap = Tap::open(&setup.lan_interface, BATCH).map_err(ServeError::Raw)?;
    // Without it (an interface that is not Ethernet), everything goes the raw IP way.
    let frames_out = match FrameSender::open(&setup.lan_interface) {
        Ok(sender) => Some(sender),
        Err(err) => {
            tracing::warn!(%err, "no Ethernet frames on the LAN; sending through the raw socket");
            None
        }
    };
    let our_mac = frames_out.as_ref().map(FrameSender::mac);
    let mut tap = AsyncTap::new(tap).map_err(|err| ServeError::Socket(err.into()))?;
    let mut pcap = match &setup.pcap {
        Some(path) => Some(CaptureWriter::create(path, Linktype::RAW)?),
        None => None,
    };
    let mut control = setup
        .control
        .as_deref()
        .map(ControlServer::bind)
        .transpose()?;
    let clock = Clock::new();
    let mut nat = crate::nat::Nat::new(setup.config.clone());
    let mut neighbours = Neighbours::new();
    let mut rx = UdpBatchReceiver::new(BATCH, HEADROOM, MAX_PAYLOAD);
    tracing::info!(%global, lan = %setup.lan_interface, "NAT up");
    eprintln!(
        "l2tpkit nat: listening on {global}{}, tapping {}",
        public_interface
            .as_deref()
            .map(|i| format!(" (receive ring on {i})"))
            .unwrap_or_default(),
        setup.lan_interface
    );
    let mut io = NatIo {
        public_ring: ring.is_some(),
        ..NatIo::default()
    };
    let mut next_status = Instant::ZERO;
    let deadline = setup.duration.map(|d| Instant::ZERO + d);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let now = clock.now();
        nat.handle_timeout(now);
        if let Some(path) = &setup.status_file {
            if now >= next_status {
                io.ring_drops += ring_drops(ring.as_ref());
                write_nat_status(path, &nat, io)?;
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
            ready = ring_ready(ring.as_mut()) => {
                ready.map_err(ServeError::Socket)?;
                let Some(public_ring) = ring.as_mut() else { continue };
                let mut got = 0;
                for _ in 0..BATCHES_PER_WAKE {
                    let ring = public_ring.ring_mut();
                    let mut taken = [0usize; BATCH];
                    let n = ring.take(&mut taken);
                    if n == 0 {
                        break;
                    }
                    got += n;
                    let mut batch = PublicBatch {
                        nat: &mut nat,
                        neighbours: &mut neighbours,
                        pcap: pcap.as_mut(),
                        clock: &clock,
                        global,
                        our_mac,
                    };
                    let picks = batch.route_frames(ring, &taken[..n], &mut io);
                    send_to_lan(|i, at, len| ring.bytes(i, at, len), &picks, frames_out.as_ref(), &raw, &mut io);
                    for &i in &taken[..n] {
                        ring.release(i);
                    }
                }
                public_ring.note(got > 0).map_err(ServeError::Socket)?;
            }
            ready = public.readable(), if ring.is_none() => {
                ready.map_err(ServeError::Socket)?;
                for _ in 0..BATCHES_PER_WAKE {
                    let n = match public.try_io(Interest::READABLE, || rx.recv(&public)) {
                        Ok(n) => n,
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                        Err(err) => return Err(ServeError::Socket(err)),
                    };
                    let mut batch = PublicBatch {
                        nat: &mut nat,
                        neighbours: &mut neighbours,
                        pcap: pcap.as_mut(),
                        clock: &clock,
                        global,
                        our_mac,
                    };
                    let picks = batch.route_datagrams(&mut rx, n);
                    send_to_lan(|i, at, len| rx.buffer(i, at + len)?.get(at..), &picks, frames_out.as_ref(), &raw, &mut io);
                }
            }
            ready = tap.readable_mut() => {
                let mut guard = ready.map_err(ServeError::Socket)?;
                let now = clock.now();
                let n = guard.get_inner_mut().recv_batch().map_err(ServeError::Socket)?;
                if n == 0 {
                    guard.clear_ready();
                }
                let inner = guard.get_inner_mut();
                // (index, length) of the packets to send out, in order.
                let mut out = [(0usize, 0usize); BATCH];
                let mut count = 0;
                for i in 0..n {
                    let mac = inner.source_mac(i);
                    let Some(frame) = inner.packet(i) else { continue };
                    if let (Some(mac), Some(src)) = (mac, frame.get(12..16)) {
                        let src = Ipv4Addr::new(src[0], src[1], src[2], src[3]);
                        neighbours.learn(src, mac, now);
                    }
                    // Packets for the NAT's own LAN address belong to its kernel.
                    if frame.get(16..20) == Some(&setup.lan_addr.octets()[..]) {
                        continue;
                    }
                    complete_udp_checksum(frame);
                    if nat.from_lan(now, frame) == crate::nat::Verdict::ToPublic {
                        let total = frame
                            .get(2..4)
                            .map_or(frame.len(), |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
                        if let Some(slot) = out.get_mut(count) {
                            *slot = (i, total);
                            count += 1;
                        }
                    }
                }
                let inner = guard.get_inner();
                let mut refs: [&[u8]; BATCH] = [&[]; BATCH];
                for (slot, &(i, total)) in refs.iter_mut().zip(&out[..count]) {
                    *slot = inner.packet_ref(i, total).unwrap_or_default();
                }
                let refs = &refs[..count];
                if !refs.is_empty() {
                    if let Some(pcap) = pcap.as_mut() {
                        for p in refs {
                            let _ = pcap.write_raw(clock.wall(now), p);
                        }
                    }
                    if let Err(err) = raw.send_batch(refs) {
                        tracing::warn!(%err, "forwarding to the public side failed");
                    }
                }
            }
            pending = control::next(control.as_mut()) => {
                let reply = match pending.request {
                    Ok(Request::Status) => {
                        io.ring_drops += ring_drops(ring.as_ref());
                        control::ok(&nat_status(&nat, io))
                    }
                    Ok(other) => control::refused(&format!(
                        "{other}: the NAT has no endpoints to drain; ask the master"
                    )),
                    Err(error) => control::refused(&error),
                };
                let _ = pending.reply.send(reply);
            }
            _ = sleep_for(sleep) => {}
            _ = &mut ctrl_c => break,
        }
    }
    io.ring_drops += ring_drops(ring.as_ref());
    if let Some(path) = &setup.status_file {
        write_nat_status(path, &nat, io)?;
    }
    if let Some(pcap) = pcap.as_mut() {
        pcap.flush()?;
    }
    Ok(nat_status(&nat, io))
}

/// What one batch from the public socket needs.
struct PublicBatch<'a> {
    nat: &'a mut crate::nat::Nat,
    neighbours: &'a mut Neighbours,
    pcap: Option<&'a mut CaptureWriter>,
    clock: &'a Clock,
    global: SocketAddrV4,
    /// The LAN interface's MAC address, when frames can be sent there.
    our_mac: Option<[u8; 6]>,
}

/// Where the packets of one batch go: as Ethernet frames on the LAN tap, or as IPv4 packets
/// through the raw socket. Each pick is (buffer, offset, length) in the batch's buffers: a
/// frame from its Ethernet header, a packet from its IPv4 header.
struct Picks {
    frames: [(usize, usize, usize); BATCH],
    frame_count: usize,
    packets: [(usize, usize, usize); BATCH],
    packet_count: usize,
}

impl Picks {
    fn new() -> Picks {
        Picks {
            frames: [(0, 0, 0); BATCH],
            frame_count: 0,
            packets: [(0, 0, 0); BATCH],
            packet_count: 0,
        }
    }
}

impl PublicBatch<'_> {
    /// Lets the NAT route one IPv4 packet from the public side, `ethernet` being the 14 bytes
    /// in front of it. `Some(true)`: send it as the frame made there; `Some(false)`: as an IPv4
    /// packet; with its length (the IPv4 total length: an Ethernet pad is not sent on).
    fn route(
        &mut self,
        now: Instant,
        ethernet: &mut [u8],
        packet: &mut [u8],
    ) -> Option<(bool, usize)> {
        let crate::nat::Verdict::ToLan { endpoint } = self.nat.from_public(now, packet) else {
            return None;
        };
        let total = packet
            .get(2..4)
            .map_or(packet.len(), |b| {
                usize::from(u16::from_be_bytes([b[0], b[1]]))
            })
            .min(packet.len());
        if let Some(pcap) = self.pcap.as_mut() {
            let _ = pcap.write_raw(self.clock.wall(now), &packet[..total]);
        }
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

    /// The datagrams of a recvmmsg batch: each one's IPv4/UDP header as the initiator sent it
    /// is written in the room in front of it, then it is routed.
    fn route_datagrams(&mut self, rx: &mut UdpBatchReceiver, n: usize) -> Picks {
        let now = self.clock.now();
        let mut picks = Picks::new();
        for i in 0..n {
            let Some((buffer, from)) = rx.datagram(i) else {
                continue;
            };
            let (ethernet, packet) = buffer.split_at_mut(ETHERNET);
            if !write_ipv4_udp(packet, from, self.global) {
                continue;
            }
            match self.route(now, ethernet, packet) {
                Some((true, total)) => {
                    picks.frames[picks.frame_count] = (i, 0, ETHERNET + total);
                    picks.frame_count += 1;
                }
                Some((false, total)) => {
                    picks.packets[picks.packet_count] = (i, ETHERNET, total);
                    picks.packet_count += 1;
                }
                None => {}
            }
        }
        picks
    }

    /// Frames taken from the receive ring: routed in place. A frame the ring cut short is not
    /// forwarded (the NAT would see a truncated packet); a checksum left to offload is filled
    /// in first, as on the LAN tap.
    fn route_frames(&mut self, ring: &mut RxRing, taken: &[usize], io: &mut NatIo) -> Picks {
        let now = self.clock.now();
        let mut picks = Picks::new();
        for &i in taken.iter().take(BATCH) {
            let Some(frame) = ring.frame(i) else {
                continue;
            };
            if frame.truncated || frame.network != ETHERNET {
                io.ring_truncated += 1;
                continue;
            }
            let (ethernet, packet) = frame.data.split_at_mut(frame.network);
            if frame.checksum_partial {
                complete_udp_checksum(packet);
            }
            match self.route(now, ethernet, packet) {
                Some((true, total)) => {
                    picks.frames[picks.frame_count] = (i, 0, ETHERNET + total);
                    picks.frame_count += 1;
                }
                Some((false, total)) => {
                    picks.packets[picks.packet_count] = (i, ETHERNET, total);
                    picks.packet_count += 1;
                }
                None => {}
            }
        }
        picks
    }
}

/// Sends what a batch picked: frames on the tap (what it does not take goes the raw way too),
/// packets through the raw socket. `bytes(buffer, offset, length)` reads the batch's buffers.
fn send_to_lan<'b>(
    bytes: impl Fn(usize, usize, usize) -> Option<&'b [u8]>,
    picks: &Picks,
    frames_out: Option<&FrameSender>,
    raw: &RawSender,
    io: &mut NatIo,
) {
    let mut refs: [&[u8]; BATCH] = [&[]; BATCH];
    let frames = &picks.frames[..picks.frame_count];
    for (slot, &(i, at, len)) in refs.iter_mut().zip(frames) {
        *slot = bytes(i, at, len).unwrap_or_default();
    }
    let sent = match frames_out {
        Some(sender) if !frames.is_empty() => sender.send(&refs[..frames.len()]),
        _ => Ok(0),
    };
    let taken = match sent {
        Ok(taken) => taken,
        Err(err) => {
            tracing::debug!(%err, "sending frames on the LAN failed; using the raw socket");
            0
        }
    };
    io.lan_frames += taken as u64;
    // Frames the tap did not take, then the packets for neighbours we do not know: as IPv4.
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
        match raw.send_batch(&refs[..count]) {
            Ok(sent) => io.lan_raw += sent as u64,
            Err(err) => tracing::warn!(%err, "forwarding to the LAN failed"),
        }
    }
}

fn ring_drops(ring: Option<&PublicRing>) -> u64 {
    ring.and_then(|ring| ring.ring().drops().ok()).unwrap_or(0)
}

/// Waits until the ring should be looked at; never, without a ring.
async fn ring_ready(ring: Option<&mut PublicRing>) -> io::Result<()> {
    match ring {
        Some(ring) => ring.ready().await,
        None => std::future::pending().await,
    }
}

/// The public receive ring and how the NAT waits for it. While frames keep coming the ring is
/// not registered with epoll at all and the NAT looks at it between its other work ("busy"):
/// registered, every frame would cost the receiving CPU an epoll callback (a lock and a
/// wake-up: 8% of the generator's CPU in `bench nat`). Once it has stayed empty for
/// [`PublicRing::IDLE_AFTER`], it is registered and the NAT sleeps until a frame comes.
struct PublicRing {
    /// Busy: the ring itself.
    busy: Option<RxRing>,
    /// Idle: the ring, registered.
    idle: Option<AsyncRing>,
    empty_since: Option<std::time::Instant>,
}

impl PublicRing {
    const IDLE_AFTER: Duration = Duration::from_micros(50);

    fn new(ring: RxRing) -> PublicRing {
        PublicRing {
            busy: Some(ring),
            idle: None,
            empty_since: None,
        }
    }

    fn ring(&self) -> &RxRing {
        match (&self.busy, &self.idle) {
            (Some(ring), _) => ring,
            (None, Some(fd)) => fd.get_ref(),
            (None, None) => unreachable!("the ring is always in one of the two places"),
        }
    }

    fn ring_mut(&mut self) -> &mut RxRing {
        match (&mut self.busy, &mut self.idle) {
            (Some(ring), _) => ring,
            (None, Some(fd)) => fd.get_mut(),
            (None, None) => unreachable!("the ring is always in one of the two places"),
        }
    }

    /// Busy: at once (after letting the runtime poll its other sources). Idle: when the ring
    /// has a frame; it is then busy again.
    async fn ready(&mut self) -> io::Result<()> {
        match &mut self.idle {
            Some(fd) => {
                fd.readable_mut().await?.clear_ready();
                if let Some(fd) = self.idle.take() {
                    self.busy = Some(fd.into_inner());
                }
                self.empty_since = None;
                Ok(())
            }
            None => {
                tokio::task::yield_now().await;
                Ok(())
            }
        }
    }

    /// After a look at the ring: whether it had frames.
    fn note(&mut self, got: bool) -> io::Result<()> {
        if got {
            self.empty_since = None;
            return Ok(());
        }
        let now = std::time::Instant::now();
        let since = *self.empty_since.get_or_insert(now);
        if now.duration_since(since) >= PublicRing::IDLE_AFTER {
            if let Some(ring) = self.busy.take() {
                // Registering reports a ring that already holds frames as ready at once, so
                // none that came since the last look is left waiting.
                match AsyncRing::new(ring) {
                    Ok(fd) => self.idle = Some(fd),
                    Err(err) => {
                        let (ring, err) = err.into_parts();
                        self.busy = Some(ring);
                        return Err(err);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_written_in_place_match_build_ipv4_udp() {
        let src: SocketAddrV4 = "198.18.1.1:40000".parse().unwrap();
        let dst: SocketAddrV4 = "198.18.0.2:1701".parse().unwrap();
        for len in (0..70).chain([1399, 1400, 1472]) {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut expected = Vec::new();
            build_ipv4_udp(src, dst, &payload, 0, &mut expected).unwrap();
            let mut packet = vec![0xaa; IPV4_UDP];
            packet.extend_from_slice(&payload);
            assert!(write_ipv4_udp(&mut packet, src, dst));
            assert_eq!(packet, expected, "payload of {len} bytes");
        }
        let mut too_long = vec![0; 65_536];
        assert!(!write_ipv4_udp(&mut too_long, src, dst));
    }

    #[test]
    fn a_partial_udp_checksum_is_completed() {
        let src: SocketAddrV4 = "198.19.0.11:1701".parse().unwrap();
        let dst: SocketAddrV4 = "198.18.1.1:40000".parse().unwrap();
        for len in [0, 1, 2, 3, 31, 32, 33, 1400] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 13 + 1) as u8).collect();
            let mut expected = Vec::new();
            build_ipv4_udp(src, dst, &payload, 0, &mut expected).unwrap();
            let mut packet = expected.clone();
            // What checksum offload leaves: some partial sum, not zero.
            packet[26] = 0x12;
            packet[27] = 0x34;
            complete_udp_checksum(&mut packet);
            assert_eq!(packet, expected, "payload of {len} bytes");
        }
    }

    #[test]
    fn neighbours_go_stale() {
        let mut n = Neighbours::new();
        let ip = Ipv4Addr::new(198, 19, 0, 11);
        let t0 = Instant::ZERO + Duration::from_secs(1);
        assert_eq!(n.fresh(ip, t0), None);
        n.learn(ip, [2, 0, 0, 0, 0, 1], t0);
        assert_eq!(n.fresh(ip, t0), Some([2, 0, 0, 0, 0, 1]));
        // A new address for the same IP replaces the old one, also in the last-lookup cache.
        n.learn(ip, [2, 0, 0, 0, 0, 2], t0);
        assert_eq!(n.fresh(ip, t0), Some([2, 0, 0, 0, 0, 2]));
        let later = t0 + Neighbours::FRESH;
        assert_eq!(n.fresh(ip, later), None);
        n.learn(ip, [2, 0, 0, 0, 0, 2], later);
        assert_eq!(n.fresh(ip, later), Some([2, 0, 0, 0, 0, 2]));
    }
}
