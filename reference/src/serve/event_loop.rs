//! The loop every role here runs on: a clock for the sans-IO node, the status file rewritten
//! every interval (and once at the end), the deadline, the control socket, Ctrl-C and the
//! hosting process's stop, and the pcap the role tees its packets into.
//!
//! A role's loop is: [`EventLoop::turn`] (status when due; the sleep, or the deadline's end),
//! then a `select!` over its own sockets and [`EventLoop::wait`], then [`EventLoop::finish`].

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use l2tp::capture::{CaptureWriter, Linktype};
use l2tp::time::Instant;
use serde::Serialize;
use tokio::sync::watch;

use super::ServeError;
use crate::control::{self, ControlServer, Pending};
use crate::metrics::{self, Metered, MetricsServer, Serving, Shared};

/// The sans-IO clock (microseconds since the role started) and the wall clock for the pcap.
pub(super) struct Clock {
    start: std::time::Instant,
    wall: Duration,
}

impl Clock {
    pub(super) fn new() -> Clock {
        Clock {
            start: std::time::Instant::now(),
            wall: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }

    pub(super) fn now(&self) -> Instant {
        Instant::from_micros(u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    pub(super) fn wall(&self, now: Instant) -> Duration {
        self.wall + Duration::from_micros(now.as_micros())
    }
}

/// The pcap a role tees its packets into. A write that fails is warned about once and ends
/// the capture (as the tunnel runner does); forwarding goes on.
pub(super) struct PcapTee {
    writer: Option<CaptureWriter>,
}

impl PcapTee {
    fn create(path: Option<&Path>) -> Result<PcapTee, ServeError> {
        let writer = match path {
            Some(path) => Some(CaptureWriter::create(path, Linktype::RAW)?),
            None => None,
        };
        Ok(PcapTee { writer })
    }

    /// One IPv4 packet, stamped `wall`.
    pub(super) fn write(&mut self, wall: Duration, packet: &[u8]) {
        if let Some(writer) = self.writer.as_mut() {
            if let Err(err) = writer.write_raw(wall, packet) {
                tracing::warn!(%err, "pcap write failed; capture stopped");
                self.writer = None;
            }
        }
    }

    fn flush(&mut self) -> Result<(), ServeError> {
        if let Some(writer) = self.writer.as_mut() {
            writer.flush()?;
        }
        Ok(())
    }
}

/// What every serving loop is told besides its role's own setup: its files, whether it
/// captures, and how long it runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Rewritten every `status_interval` with the role's status JSON, and at the end.
    pub status_file: Option<PathBuf>,
    pub status_interval: Duration,
    /// Unix socket for control requests (see [`crate::control`]).
    pub control: Option<PathBuf>,
    pub pcap: Option<PathBuf>,
    /// Stop after this long (tests, lab runs); until Ctrl-C otherwise.
    pub duration: Option<Duration>,
    /// Serve `GET /metrics` here (see [`crate::metrics`]), refreshed every `status_interval`.
    pub metrics: Option<std::net::SocketAddr>,
}

impl Default for ServeOptions {
    /// No files, a status interval of one second, until Ctrl-C.
    fn default() -> ServeOptions {
        ServeOptions {
            status_file: None,
            status_interval: Duration::from_secs(1),
            control: None,
            pcap: None,
            duration: None,
            metrics: None,
        }
    }
}

impl ServeOptions {
    /// What the loop helper needs; `pcap: false` leaves the capture out (a standing-by master
    /// forwards nothing), `stop` ends the loop from outside.
    pub(super) fn loop_spec(
        &self,
        pcap: bool,
        stop: Option<watch::Receiver<bool>>,
    ) -> LoopSpec<'_> {
        LoopSpec {
            status_file: self.status_file.as_deref(),
            status_interval: self.status_interval,
            control: self.control.as_deref(),
            pcap: self.pcap.as_deref().filter(|_| pcap),
            duration: self.duration,
            stop,
            metrics: self.metrics,
        }
    }
}

/// What a role's loop is given, from its setup.
pub(super) struct LoopSpec<'a> {
    /// Rewritten every `status_interval` with the role's status, and at the end.
    pub status_file: Option<&'a Path>,
    pub status_interval: Duration,
    pub control: Option<&'a Path>,
    pub pcap: Option<&'a Path>,
    /// Stop after this long; until Ctrl-C (or `stop`) otherwise.
    pub duration: Option<Duration>,
    pub stop: Option<watch::Receiver<bool>>,
    pub metrics: Option<std::net::SocketAddr>,
}

/// What woke [`EventLoop::wait`].
pub(super) enum Wake {
    /// A timer: the node's, the status file's or the deadline's.
    Timer,
    /// A control request for the role to answer.
    Control(Pending),
    /// Ctrl-C, or the hosting process says stop: the loop ends.
    Stop,
}

/// What [`EventLoop::turn`] says of this turn.
pub(super) enum Turn {
    /// Wait at most this long (forever: `None`) for the role's sockets or [`EventLoop::wait`].
    Wait(Option<Duration>),
    /// The deadline has passed: the loop ends.
    Deadline,
}

pub(super) struct EventLoop {
    pub(super) clock: Clock,
    pub(super) pcap: PcapTee,
    status_file: Option<PathBuf>,
    status_interval: Duration,
    next_status: Instant,
    deadline: Option<Instant>,
    control: Option<ControlServer>,
    stop: Option<watch::Receiver<bool>>,
    ctrl_c: Pin<Box<dyn Future<Output = io::Result<()>> + Send>>,
    /// The set the metrics server reads, and the server (ended with the loop).
    metrics: Option<(Shared, Serving)>,
}

impl EventLoop {
    /// Creates the pcap, then binds the control socket; the clock starts here.
    pub(super) fn open(spec: LoopSpec<'_>) -> Result<EventLoop, ServeError> {
        let pcap = PcapTee::create(spec.pcap)?;
        let control = spec.control.map(ControlServer::bind).transpose()?;
        let metrics = match spec.metrics {
            Some(addr) => {
                let server = MetricsServer::bind(addr)?;
                let shared = Shared::default();
                let serving = server.serve(std::sync::Arc::clone(&shared));
                Some((shared, serving))
            }
            None => None,
        };
        Ok(EventLoop {
            clock: Clock::new(),
            pcap,
            status_file: spec.status_file.map(Path::to_path_buf),
            status_interval: spec.status_interval,
            next_status: Instant::ZERO,
            deadline: spec.duration.map(|d| Instant::ZERO + d),
            control,
            stop: spec.stop,
            ctrl_c: Box::pin(tokio::signal::ctrl_c()),
            metrics,
        })
    }

    /// The top of a turn, after the node has seen `now`: writes the status file when it is due
    /// (`status` is only called then), and says how long the turn may sleep given when the
    /// node next wants one (`node_timeout`).
    pub(super) fn turn<S: Serialize + Metered>(
        &mut self,
        now: Instant,
        node_timeout: Option<Instant>,
        status: impl FnOnce() -> S,
    ) -> Result<Turn, ServeError> {
        let reporting = self.status_file.is_some() || self.metrics.is_some();
        if reporting && now >= self.next_status {
            let status = status();
            if let Some(path) = &self.status_file {
                write_json(path, &status)?;
            }
            if let Some((shared, _)) = &self.metrics {
                metrics::publish(shared, status.metrics());
            }
            self.next_status = now + self.status_interval;
        }
        if self.deadline.is_some_and(|d| now >= d) {
            return Ok(Turn::Deadline);
        }
        let wake = [
            node_timeout,
            reporting.then_some(self.next_status),
            self.deadline,
        ]
        .into_iter()
        .flatten()
        .min();
        Ok(Turn::Wait(wake.map(|at| at.saturating_duration_since(now))))
    }

    /// Waits for a timer, a control request, Ctrl-C or the stop; the role's own sockets race
    /// this in its `select!`.
    pub(super) async fn wait(&mut self, sleep: Option<Duration>) -> Wake {
        tokio::select! {
            pending = control::next(self.control.as_mut()) => Wake::Control(pending),
            _ = sleep_for(sleep) => Wake::Timer,
            _ = stopped(self.stop.as_mut()) => Wake::Stop,
            _ = &mut self.ctrl_c => Wake::Stop,
        }
    }

    /// The loop is over: the last status file, and the pcap flushed.
    pub(super) fn finish<S: Serialize + Metered>(&mut self, status: &S) -> Result<(), ServeError> {
        if let Some(path) = &self.status_file {
            write_json(path, status)?;
        }
        if let Some((shared, _)) = &self.metrics {
            metrics::publish(shared, status.metrics());
        }
        self.pcap.flush()
    }
}

/// Write then rename, so a reader never sees half a file.
fn write_json<S: Serialize>(path: &Path, status: &S) -> Result<(), ServeError> {
    let json = serde_json::to_vec_pretty(status).unwrap_or_default();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| ServeError::Status {
            path: path.to_path_buf(),
            source,
        })
}

async fn sleep_for(duration: Option<Duration>) {
    match duration {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Resolves once `stop` holds `true`; never without one (or once its sender is gone).
pub(super) async fn stopped(stop: Option<&mut watch::Receiver<bool>>) {
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
