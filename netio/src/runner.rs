//! A small tokio runner: one UDP socket, one [`TunnelSet`], and a [`TunnelDriver`] that reacts
//! to the tunnels' events. It stamps every datagram with `now`, feeds it to the set, sends what the
//! set emits, sleeps until `poll_timeout`, and tees every packet into a pcap when asked.

use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use l2tp::capture::{CaptureError, CaptureWriter, Linktype};
use l2tp::conn::tunnel::Event;
use l2tp::conn::tunnels::TunnelSet;
use l2tp::time::Instant;
use tokio::net::UdpSocket;

/// Datagrams taken from the socket per wake-up, at most.
const RECV_BATCH: usize = 64;

/// What a runner's owner does with the tunnels: the LAC script, the endpoint's echo answers.
pub trait TunnelDriver {
    /// One event from one tunnel.
    fn on_event(&mut self, set: &mut TunnelSet, now: Instant, tunnel: u16, event: Event);
    /// Called after every wake-up; returns when the role next wants to act on its own.
    fn on_tick(&mut self, set: &mut TunnelSet, now: Instant) -> Option<Instant>;
    /// The run is over (the role decides; the runner also stops at its deadline or Ctrl-C).
    fn finished(&self, set: &TunnelSet, now: Instant) -> bool;
    /// Ctrl-C or the deadline: tear down cleanly (StopCCN) and let the runner drain.
    fn shutdown(&mut self, set: &mut TunnelSet, now: Instant);
    /// Datagrams the role sends outside the tunnels (an endpoint's load reports), from a
    /// socket of their own (never the L2TP port).
    fn poll_side_transmit(&mut self, _now: Instant) -> Option<(SocketAddrV4, Vec<u8>)> {
        None
    }
    /// A datagram that came back to that socket (the master's ack of a report).
    fn handle_side(&mut self, _now: Instant, _from: SocketAddrV4, _bytes: &[u8]) {}
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("binding UDP {addr}: {source}")]
    Bind {
        addr: SocketAddrV4,
        source: io::Error,
    },
    #[error("{peer} refused our datagrams (ICMP port unreachable): is an LNS listening there?")]
    Refused { peer: SocketAddrV4 },
    #[error("{peer} cannot be reached ({error}, an ICMP error)")]
    Unreachable {
        peer: SocketAddrV4,
        error: io::Error,
    },
    #[error("UDP socket: {0}")]
    Socket(io::Error),
    #[error("pcap: {0}")]
    Pcap(#[from] CaptureError),
    #[error("only IPv4 is supported, got {0}")]
    NotIpv4(SocketAddr),
}

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Finished,
    /// The deadline passed; the role was asked to shut down and the drain time ran out.
    Deadline,
    Interrupted,
}

pub struct Runner {
    socket: UdpSocket,
    local: SocketAddrV4,
    /// The peer we dialled (the LAC's target): an ICMP error about it ends the run at once.
    /// The socket stays unconnected, so that replies from any address and port reach the
    /// tunnels (RFC 2661 §8.1); IP_RECVERR brings the ICMP errors back all the same.
    target: Option<SocketAddrV4>,
    /// ICMP errors about other peers (a tunnel's port that closed after it followed a reply):
    /// not the run's end, only counted.
    icmp_elsewhere: u64,
    pub set: TunnelSet,
    /// For the role's side datagrams (load reports), made on first use.
    side: Option<UdpSocket>,
    pcap: Option<CaptureWriter>,
    start: std::time::Instant,
    wall_start: Duration,
}

impl Runner {
    /// Binds `local`. With `target`, ICMP errors are asked for (IP_RECVERR), and one about
    /// the target ends the run at once: a peer that is not listening is reported then, not
    /// after the retransmission cycle. The socket is never connected: a reply from another
    /// port, or another address, still arrives, and the tunnels decide whether to follow it.
    pub async fn bind(
        local: SocketAddrV4,
        target: Option<SocketAddrV4>,
        set: TunnelSet,
        pcap: Option<&Path>,
    ) -> Result<Runner, RunError> {
        Runner::bind_with(local, target, set, pcap, false).await
    }

    /// As `bind`; with `reuse_addr` the socket sets SO_REUSEADDR, so that a master started in
    /// this process later (an endpoint taking over, `reference::takeover`) can bind the cluster
    /// address's port beside a socket on 0.0.0.0.
    pub async fn bind_with(
        local: SocketAddrV4,
        target: Option<SocketAddrV4>,
        set: TunnelSet,
        pcap: Option<&Path>,
        reuse_addr: bool,
    ) -> Result<Runner, RunError> {
        let socket = crate::udp::udp_socket(local, reuse_addr)
            .and_then(UdpSocket::from_std)
            .map_err(|source| RunError::Bind {
                addr: local,
                source,
            })?;
        if target.is_some() {
            crate::udp::report_icmp_errors(&socket).map_err(RunError::Socket)?;
        }
        grow_buffers(&socket);
        let local = match socket.local_addr().map_err(RunError::Socket)? {
            SocketAddr::V4(v4) => v4,
            other => return Err(RunError::NotIpv4(other)),
        };
        let pcap = match pcap {
            Some(path) => Some(CaptureWriter::create(path, Linktype::RAW)?),
            None => None,
        };
        Ok(Runner {
            socket,
            local,
            target,
            icmp_elsewhere: 0,
            set,
            side: None,
            pcap,
            start: std::time::Instant::now(),
            wall_start: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        })
    }

    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    /// ICMP errors about peers other than the target, so far.
    pub fn icmp_elsewhere(&self) -> u64 {
        self.icmp_elsewhere
    }

    /// A send or receive failed: with IP_RECVERR that is an ICMP error in the queue. One about
    /// the target ends the run; others are counted. An error the queue does not explain is
    /// the socket's own.
    fn judge_error(&mut self, err: io::Error) -> Result<(), RunError> {
        let Some(target) = self.target else {
            return Err(match err.kind() {
                io::ErrorKind::ConnectionRefused => RunError::Refused { peer: self.local },
                _ => RunError::Socket(err),
            });
        };
        let errors = crate::udp::take_errors(&self.socket);
        if errors.is_empty() {
            return Err(RunError::Socket(err));
        }
        for error in errors {
            if error.to == target {
                return Err(if error.errno == libc::ECONNREFUSED {
                    RunError::Refused { peer: target }
                } else {
                    RunError::Unreachable {
                        peer: target,
                        error: io::Error::from_raw_os_error(error.errno),
                    }
                });
            }
            tracing::debug!(to = %error.to, errno = error.errno, "ICMP error about another peer");
            self.icmp_elsewhere += 1;
        }
        Ok(())
    }

    /// The sans-IO clock: microseconds since the runner started.
    pub fn now(&self) -> Instant {
        Instant::from_micros(u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    fn wall(&self, now: Instant) -> Duration {
        self.wall_start + Duration::from_micros(now.as_micros())
    }

    fn tee(&mut self, now: Instant, src: SocketAddrV4, dst: SocketAddrV4, bytes: &[u8]) {
        let wall = self.wall(now);
        if let Some(pcap) = self.pcap.as_mut() {
            if let Err(err) = pcap.write_udp(wall, src, dst, bytes) {
                tracing::warn!(%err, "pcap write failed; capture stopped");
                self.pcap = None;
            }
        }
    }

    async fn flush_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Result<(), RunError> {
        while let Some(to) = self.set.poll_transmit(now, buf) {
            match self.socket.send_to(buf, to).await {
                Ok(_) => {}
                // A pending ICMP error fails the send; the datagram goes again.
                Err(err) if is_icmp(&err) => {
                    self.judge_error(err)?;
                    if let Err(err) = self.socket.send_to(buf, to).await {
                        self.judge_error(err)?;
                    }
                }
                Err(err) => return Err(RunError::Socket(err)),
            }
            let local = self.local;
            self.tee(now, local, to, buf);
        }
        Ok(())
    }

    /// One datagram read from the socket (or the read's error).
    fn take_datagram(
        &mut self,
        now: Instant,
        received: io::Result<(usize, SocketAddr)>,
        recv: &[u8],
    ) -> Result<(), RunError> {
        match received {
            Ok((len, SocketAddr::V4(from))) => {
                let bytes = recv.get(..len).unwrap_or_default();
                let local = self.local;
                self.tee(now, from, local, bytes);
                self.set.handle(now, from, bytes);
                Ok(())
            }
            Ok((_, from)) => {
                tracing::debug!(%from, "ignored a non-IPv4 datagram");
                Ok(())
            }
            Err(err) if is_icmp(&err) => self.judge_error(err),
            Err(err) => Err(RunError::Socket(err)),
        }
    }

    fn dispatch_events(&mut self, driver: &mut impl TunnelDriver, now: Instant) {
        while let Some((id, event)) = self.set.poll_event() {
            driver.on_event(&mut self.set, now, id, event);
        }
    }

    /// Runs until the role is finished, `deadline` (then `drain` more for a clean teardown),
    /// or Ctrl-C (same teardown).
    pub async fn run(
        &mut self,
        driver: &mut impl TunnelDriver,
        deadline: Option<Duration>,
        drain: Duration,
    ) -> Result<Ended, RunError> {
        let mut buf = Vec::with_capacity(2048);
        let mut recv = vec![0u8; 65536];
        let mut side_recv = vec![0u8; 65536];
        let deadline = deadline.map(|d| Instant::ZERO + d);
        let mut shutting_down: Option<(Instant, Ended)> = None;
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            let now = self.now();
            self.dispatch_events(driver, now);
            let wake = driver.on_tick(&mut self.set, now);
            self.dispatch_events(driver, now);
            self.flush_transmit(now, &mut buf).await?;
            while let Some((to, bytes)) = driver.poll_side_transmit(now) {
                // From a socket of their own, so that nothing but L2TP leaves port 1701.
                if self.side.is_none() {
                    let local = SocketAddrV4::new(*self.local.ip(), 0);
                    self.side = Some(UdpSocket::bind(local).await.map_err(RunError::Socket)?);
                }
                if let Some(side) = &self.side {
                    // Reports are best effort: a lost one is replaced by the next.
                    if let Err(err) = side.send_to(&bytes, to).await {
                        tracing::debug!(%to, %err, "side datagram not sent");
                    }
                }
            }
            if driver.finished(&self.set, now) {
                return Ok(shutting_down.map_or(Ended::Finished, |(_, why)| why));
            }
            if let Some((until, why)) = shutting_down {
                if now >= until {
                    return Ok(why);
                }
            } else if deadline.is_some_and(|d| now >= d) {
                driver.shutdown(&mut self.set, now);
                shutting_down = Some((now + drain, Ended::Deadline));
                continue;
            }
            let next = [
                self.set.poll_timeout(),
                wake,
                deadline.filter(|_| shutting_down.is_none()),
                shutting_down.map(|(until, _)| until),
            ]
            .into_iter()
            .flatten()
            .min();
            let sleep = next.map(|at| at.saturating_duration_since(now));
            tokio::select! {
                received = self.socket.recv_from(&mut recv) => {
                    let now = self.now();
                    self.take_datagram(now, received, &recv)?;
                    // What else is waiting goes in the same wake-up: one pass of the loop
                    // (events, the driver's tick, timers) per batch rather than per datagram.
                    for _ in 1..RECV_BATCH {
                        match self.socket.try_recv_from(&mut recv) {
                            Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                            received => self.take_datagram(now, received, &recv)?,
                        }
                    }
                }
                received = recv_side(self.side.as_ref(), &mut side_recv) => {
                    let now = self.now();
                    match received {
                        Ok((len, SocketAddr::V4(from))) => {
                            driver.handle_side(now, from, side_recv.get(..len).unwrap_or_default());
                        }
                        Ok(_) => {}
                        // An ICMP error for an earlier report (no master listening yet): the
                        // next report tries again.
                        Err(err) => tracing::debug!(%err, "side socket"),
                    }
                }
                _ = sleep_for(sleep) => {
                    let now = self.now();
                    self.set.handle_timeout(now);
                }
                _ = &mut ctrl_c, if shutting_down.is_none() => {
                    let now = self.now();
                    tracing::info!("interrupted: tearing down");
                    driver.shutdown(&mut self.set, now);
                    shutting_down = Some((now + drain, Ended::Interrupted));
                }
            }
        }
    }

    /// Flushes the pcap; call before exiting.
    pub fn finish(&mut self) -> Result<(), RunError> {
        if let Some(pcap) = self.pcap.as_mut() {
            pcap.flush()?;
        }
        Ok(())
    }
}

/// Bursts of thousands of SCCRQs overflow the default 208 KB socket buffers; ask for 8 MB
/// (forced past `rmem_max` when we have CAP_NET_ADMIN, best effort otherwise).
pub fn grow_buffers(socket: &impl std::os::fd::AsFd) {
    crate::packet::grow_buffers(socket, 8 << 20, true, true);
}

/// The errors an ICMP message leaves on a UDP socket (RFC 1122's "soft" and "hard" ones).
fn is_icmp(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(
            libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::EPROTO
                | libc::EMSGSIZE
                | libc::EACCES
        )
    )
}

/// The next datagram on the side socket; never, before it exists.
async fn recv_side(side: Option<&UdpSocket>, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    match side {
        Some(side) => side.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

async fn sleep_for(duration: Option<Duration>) {
    match duration {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
