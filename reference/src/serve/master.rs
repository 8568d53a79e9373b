//! The master's runner: the cluster address's UDP socket read in recvmmsg batches, each
//! datagram rebuilt in place as the initiator sent it, handed to the sans-IO [`Master`], and
//! the batch's forwards sent onto the LAN in one sendmmsg on a raw IP_HDRINCL socket (the
//! initiator's source address survives). Load reports arrive on a second UDP socket on the
//! LAN side.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use l2tp::time::Instant;
use tokio::net::UdpSocket;

use super::batch::{DatagramBatches, LanSender, Picks};
use super::event_loop::{EventLoop, LoopSpec, PcapTee, ServeOptions, Turn, Wake};
use super::ipv4::total_len;
use super::{bind_udp, ServeError};
use crate::cluster::REPORT_PORT;
use crate::control::{self, Request};
use crate::master::{Master, MasterConfig, MasterStatus, Verdict};
use crate::takeover::Holder;
use netio::udp::RawSender;

/// Where the master listens and what it writes.
#[derive(Debug, Clone)]
pub struct MasterSetup {
    pub config: MasterConfig,
    /// The master's own LAN address: load reports arrive there.
    pub lan_addr: Ipv4Addr,
    pub port: u16,
    /// Status file (`Master::status`), control socket (`status`, `drain`, `deactivate`,
    /// `activate`), capture, duration.
    pub options: ServeOptions,
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
    /// The cluster as the last ack showed it (an endpoint taking over hands in its watch's
    /// view): names, LAN addresses, Tunnel ID blocks; placement waits for their reports.
    pub seed_view: Vec<crate::cluster::ViewEntry>,
}

impl MasterSetup {
    /// A master on `config.cluster_addr`:1701 with its reports on `lan_addr`, no files, until
    /// Ctrl-C.
    pub fn new(config: MasterConfig, lan_addr: Ipv4Addr) -> MasterSetup {
        MasterSetup {
            config,
            lan_addr,
            port: 1701,
            options: ServeOptions::default(),
            reuse_addr: false,
            stop: None,
            holder: None,
            seed_reports: Vec::new(),
            seed_view: Vec::new(),
        }
    }

    /// What the loop helper needs; the stop watch is taken out of the setup.
    pub(super) fn loop_spec(&mut self, pcap: bool) -> LoopSpec<'_> {
        let stop = self.stop.take();
        self.options.loop_spec(pcap, stop)
    }
}

/// Runs the master until its duration ends, Ctrl-C or its stop; returns its final status.
pub async fn serve_master(mut setup: MasterSetup) -> Result<MasterStatus, ServeError> {
    let cluster = SocketAddrV4::new(setup.config.cluster_addr, setup.port);
    let mut public = DatagramBatches::new(bind_udp(cluster, setup.reuse_addr)?, cluster, 0);
    let reports = bind_udp(SocketAddrV4::new(setup.lan_addr, REPORT_PORT), false)?;
    let lan = LanSender {
        raw: RawSender::new().map_err(ServeError::Raw)?,
        frames: None,
    };
    let mut master = Master::new(setup.config.clone());
    if let Some(holder) = setup.holder.take() {
        master.set_holder(holder);
    }
    let seed_reports = std::mem::take(&mut setup.seed_reports);
    let lan_addr = setup.lan_addr;
    let seed_view = std::mem::take(&mut setup.seed_view);
    let mut lp = EventLoop::open(setup.loop_spec(true))?;
    // The view first: the handed-in report is then this endpoint's first report, which ends
    // its own wait.
    master.seed_view(lp.clock.now(), &seed_view);
    for report in seed_reports {
        let from = SocketAddrV4::new(lan_addr, REPORT_PORT);
        let outcome = master.handle_report(lp.clock.now(), from, &report);
        tracing::info!(?outcome, "started from a report handed in");
        // Its ack would go to ourselves: the endpoint hears the acks of its next report.
        while master.poll_ack().is_some() {}
    }
    tracing::info!(%cluster, lan = %lan_addr, "master up");
    // The readiness line the lab waits for.
    eprintln!("l2tpkit master: listening on {cluster}, reports on {lan_addr}:{REPORT_PORT}");
    let mut report_buf = vec![0u8; 4096];
    while let Turn::Wait(sleep) = master_turn(&mut lp, &mut master)? {
        tokio::select! {
            ready = public.readable() => {
                ready?;
                forward_batches(&mut master, &mut public, &lan, &mut lp)?;
                // The socket keeps its readiness while datagrams wait, so without this the
                // loop would not return to the runtime until tokio's budget ran out (128 wakes,
                // 130k packets) and the report socket's readiness would lag by seconds.
                tokio::task::yield_now().await;
            }
            received = reports.recv_from(&mut report_buf) => {
                let (len, from) = received.map_err(ServeError::Socket)?;
                if let SocketAddr::V4(from) = from {
                    let report = report_buf.get(..len).unwrap_or_default();
                    take_report(&mut master, &reports, lp.clock.now(), from, report);
                    send_released(&mut master, &lan, &mut lp);
                }
            }
            wake = lp.wait(sleep) => match wake {
                Wake::Timer => {}
                Wake::Stop => break,
                Wake::Control(pending) => {
                    master.handle_timeout(lp.clock.now());
                    let _ = pending.reply.send(answer_master(&mut master, pending.request));
                }
            },
        }
    }
    let status = master.status();
    lp.finish(&status)?;
    Ok(status)
}

/// The top of a master's turn (the serving one's and the standby's): its timers run, the
/// status file is written when due; how long the turn may sleep, or the deadline.
pub(super) fn master_turn(lp: &mut EventLoop, master: &mut Master) -> Result<Turn, ServeError> {
    let now = lp.clock.now();
    master.handle_timeout(now);
    lp.turn(now, master.poll_timeout(), || master.status())
}

/// The hot path: the batches waiting at the cluster address ([`DatagramBatches::forward`]),
/// each rewritten in place by the master.
fn forward_batches(
    master: &mut Master,
    public: &mut DatagramBatches,
    lan: &LanSender,
    lp: &mut EventLoop,
) -> Result<(), ServeError> {
    public.forward(lan, |public, n| {
        let now = lp.clock.now();
        route_batch(master, public, n, now, lp.clock.wall(now), &mut lp.pcap)
    })?;
    Ok(())
}

/// The master's verdict on each datagram of a batch; the forwards, teed into the pcap.
fn route_batch(
    master: &mut Master,
    public: &mut DatagramBatches,
    n: usize,
    now: Instant,
    wall: Duration,
    pcap: &mut PcapTee,
) -> Picks {
    let mut picks = Picks::new();
    for i in 0..n {
        let Some((_, packet)) = public.packet(i) else {
            continue;
        };
        if let Verdict::Forward { .. } = master.handle_packet(now, packet) {
            let total = total_len(packet);
            pcap.write(wall, &packet[..total]);
            picks.packet((i, 0, total));
        }
    }
    picks
}

/// A load report from `from`; the acks go back to the report's source (the endpoint's report
/// socket, never its L2TP port), best effort, as the reports are.
fn take_report(
    master: &mut Master,
    reports: &UdpSocket,
    now: Instant,
    from: SocketAddrV4,
    report: &[u8],
) {
    let outcome = master.handle_report(now, from, report);
    tracing::debug!(%from, ?outcome, "load report");
    while let Some((to, ack)) = master.poll_ack() {
        if let Err(err) = reports.try_send_to(&ack, SocketAddr::V4(to)) {
            tracing::debug!(%to, %err, "report ack not sent");
        }
    }
}

/// Packets that waited for an agent's claim and got it: onto the LAN, one by one (a claim
/// releases a handful at most), teed into the pcap.
fn send_released(master: &mut Master, lan: &LanSender, lp: &mut EventLoop) {
    let now = lp.clock.now();
    let wall = lp.clock.wall(now);
    while let Some((packet, to)) = master.poll_released() {
        lp.pcap.write(wall, &packet);
        if let Err(err) = lan.raw.send(&packet) {
            tracing::debug!(%to, %err, "a released packet was not sent");
        }
    }
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
        Ok(other) => {
            return control::refused(&format!(
                "{other}: a LAC's request; the master answers status, drain, deactivate and \
                 activate"
            ))
        }
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
