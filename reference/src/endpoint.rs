//! The reference endpoint (an LNS): accepts tunnels and sessions and answers LCP Echo-Request
//! on every session, so a LAC can check its data path end to end. With [`Endpoint::with_ppp`]
//! it is the PPP server of every session instead ([`ppp`]): LCP, PAP/CHAP against a users file
//! ([`users`]), IPCP with an address from a pool ([`pool`]), IPv6CP, and ICMP echo to its own
//! PPP address ([`icmp`]).

pub mod icmp;
pub mod pool;
pub mod ppp;
pub mod users;

use l2tp::conn::tunnel::{Event, TunnelState};
use l2tp::conn::tunnels::TunnelSet;
use l2tp::ppp::LcpEcho;
use l2tp::time::Instant;
use serde::Serialize;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use crate::cluster::{self, EndpointState, LoadReport};
use crate::takeover::{ClaimOutcome, Order, Watch, WatchStatus};
use netio::runner::TunnelDriver;

/// What the endpoint saw; printed at exit and exported as JSON.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct EndpointStats {
    pub tunnels_established: u64,
    pub tunnels_closed: u64,
    pub sessions_established: u64,
    pub sessions_closed: u64,
    pub echo_requests: u64,
    pub echo_replies_sent: u64,
    pub data_frames: u64,
    /// PPP server counters, when it runs PPP (`--auth`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ppp: Option<ppp::PppStats>,
    /// Its watch over the master, when it may take over (FIG 4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch: Option<WatchStatus>,
    /// Messages given up on after every retransmission (§5.8), by message type.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub given_up: BTreeMap<String, u64>,
}

/// An endpoint's part in master takeover: the sans-IO [`Watch`] and the two channels to the
/// task that carries out its orders (probing for the master's address, taking it, serving).
pub struct TakeoverLink {
    pub watch: Watch,
    pub orders: tokio::sync::mpsc::UnboundedSender<Order>,
    pub outcomes: tokio::sync::mpsc::UnboundedReceiver<ClaimOutcome>,
}

/// Where and how an endpoint of the cluster reports its load to the master (DESIGN.md: reports
/// are authenticated with a shared key; the Tunnel ID blocks let the master route by ID).
#[derive(Debug, Clone)]
pub struct Reporting {
    pub name: String,
    pub master: SocketAddrV4,
    pub key: Vec<u8>,
    pub interval: Duration,
    pub lan_addr: Ipv4Addr,
    /// FIG 4: the endpoint's own global address.
    pub global_addr: Option<Ipv4Addr>,
    pub capacity: u32,
    /// The block the endpoint draws its Tunnel IDs from, reported so that the master routes
    /// by it; `None`: every ID, reported as no block (behind the FIG 2 NAT, which tells the
    /// endpoints apart by initiator and ID; the master then forwards only SCCRQs to it).
    pub tunnel_ids: Option<(u16, u16)>,
    /// First sequence number: wall-clock microseconds, so a restart keeps it increasing.
    pub first_sequence: u64,
}

struct Reporter {
    config: Reporting,
    sequence: u64,
    next_at: Instant,
    pending: Option<Vec<u8>>,
    /// The last report sealed, for a master this endpoint starts by taking over.
    last: Option<Vec<u8>>,
}

pub struct Endpoint {
    /// Our LCP magic number in Echo-Replies.
    magic: u32,
    reporter: Option<Reporter>,
    takeover: Option<TakeoverLink>,
    draining: bool,
    /// Stop after this many tunnels have closed (tests); never when `None`.
    stop_after_closed: Option<u64>,
    stopping: bool,
    /// The PPP server of every session; `None`: LCP Echo answered by hand, nothing more.
    ppp: Option<ppp::PppServer>,
    pub stats: EndpointStats,
    /// Where `--metrics` scrapes read from, and when to hand the next set over.
    metrics: Option<(crate::metrics::Shared, Instant)>,
}

impl Endpoint {
    pub fn new(magic: u32) -> Endpoint {
        Endpoint {
            magic,
            reporter: None,
            takeover: None,
            draining: false,
            stop_after_closed: None,
            stopping: false,
            ppp: None,
            stats: EndpointStats::default(),
            metrics: None,
        }
    }

    /// Hands its counters to `shared` every second (`--metrics`).
    pub fn with_metrics(mut self, shared: crate::metrics::Shared) -> Endpoint {
        self.metrics = Some((shared, Instant::ZERO));
        self
    }

    /// Sends load reports to the master as configured.
    pub fn with_reporting(mut self, reporting: Reporting) -> Endpoint {
        self.reporter = Some(Reporter {
            sequence: reporting.first_sequence,
            next_at: Instant::ZERO,
            pending: None,
            last: None,
            config: reporting,
        });
        self
    }

    /// Watches the master through the acks of its reports, and orders a takeover when this
    /// endpoint's turn comes (`crate::takeover`). Needs reporting.
    pub fn with_takeover(mut self, link: TakeoverLink) -> Endpoint {
        self.takeover = Some(link);
        self
    }

    /// Runs PPP on every session as its server.
    pub fn with_ppp(mut self, server: ppp::PppServer) -> Endpoint {
        self.ppp = Some(server);
        self
    }

    /// The PPP server, when there is one.
    pub fn ppp(&self) -> Option<&ppp::PppServer> {
        self.ppp.as_ref()
    }

    /// Hands the counters to `--metrics` once a second; when next.
    fn publish_metrics(&mut self, now: Instant) -> Option<Instant> {
        let due = self.metrics.as_ref()?.1;
        if now < due {
            return Some(due);
        }
        let set = crate::metrics::Metered::metrics(&self.stats());
        let (shared, next) = self.metrics.as_mut()?;
        crate::metrics::publish(shared, set);
        *next = now + std::time::Duration::from_secs(1);
        Some(*next)
    }

    /// The counters, with the watch's state when there is one.
    pub fn stats(&self) -> EndpointStats {
        EndpointStats {
            ppp: self.ppp.as_ref().map(ppp::PppServer::stats),
            watch: self.takeover.as_ref().map(|t| t.watch.status()),
            ..self.stats.clone()
        }
    }

    /// Reports "draining" from now on: the master sends no new tunnels.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    pub fn stop_after_closed(mut self, tunnels: u64) -> Endpoint {
        self.stop_after_closed = Some(tunnels);
        self
    }
}

impl TunnelDriver for Endpoint {
    fn on_event(&mut self, set: &mut TunnelSet, now: Instant, tunnel: u16, event: Event) {
        match event {
            Event::TunnelUp {
                peer_tunnel_id,
                peer_host_name,
            } => {
                self.stats.tunnels_established += 1;
                tracing::info!(tunnel, peer_tunnel_id, peer = %peer_host_name, "tunnel established");
            }
            Event::TunnelDown { result, by_peer } => {
                tracing::info!(tunnel, %result, by_peer, "tunnel down");
            }
            Event::Closed => self.stats.tunnels_closed += 1,
            Event::GaveUp(gave_up) => {
                tracing::warn!(tunnel, %gave_up, "gave up (§5.8)");
                let name = gave_up.message_name().to_string();
                *self.stats.given_up.entry(name).or_default() += 1;
            }
            Event::SessionUp {
                session_id,
                peer_session_id,
                ..
            } => {
                self.stats.sessions_established += 1;
                tracing::info!(tunnel, session_id, peer_session_id, "session established");
                if let Some(ppp) = self.ppp.as_mut() {
                    ppp.session_up(set, now, tunnel, session_id);
                }
            }
            Event::SessionDown {
                session_id, result, ..
            } => {
                self.stats.sessions_closed += 1;
                tracing::info!(tunnel, session_id, %result, "session down");
                if let Some(ppp) = self.ppp.as_mut() {
                    ppp.session_down(set, now, tunnel, session_id);
                }
            }
            Event::Data { session_id, frame } => {
                self.stats.data_frames += 1;
                if let Some(ppp) = self.ppp.as_mut() {
                    // The session's LCP answers Echo-Requests itself.
                    if LcpEcho::parse(&frame).is_some_and(|e| !e.reply) {
                        self.stats.echo_requests += 1;
                    }
                    if ppp.data(set, now, tunnel, session_id, &frame) {
                        self.stats.echo_replies_sent += 1;
                    }
                } else if let Some(echo) = LcpEcho::parse(&frame).filter(|e| !e.reply) {
                    self.stats.echo_requests += 1;
                    let reply = echo.reply_with(self.magic).to_frame();
                    if let Some(t) = set.tunnel_mut(tunnel) {
                        if t.send_data(session_id, &reply) {
                            self.stats.echo_replies_sent += 1;
                        }
                    }
                }
            }
            Event::WanError { .. } | Event::LinkInfo { .. } => {}
        }
    }

    fn on_tick(&mut self, set: &mut TunnelSet, now: Instant) -> Option<Instant> {
        let ppp_at = self.ppp.as_mut().and_then(|ppp| ppp.tick(set, now));
        let report_at = self.report(set, now);
        let watch_at = self.takeover.as_mut().and_then(|link| {
            while let Ok(outcome) = link.outcomes.try_recv() {
                link.watch.claim_outcome(now, &outcome);
            }
            link.watch.handle_timeout(now);
            if let Some(mut order) = link.watch.poll_order() {
                let Order::Claim { own_report, .. } = &mut order;
                *own_report = self.reporter.as_ref().and_then(|r| r.last.clone());
                if link.orders.send(order).is_err() {
                    tracing::error!("the takeover task is gone: this endpoint cannot take over");
                }
            }
            link.watch.poll_timeout()
        });
        let metrics_at = self.publish_metrics(now);
        [ppp_at, report_at, watch_at, metrics_at]
            .into_iter()
            .flatten()
            .min()
    }

    fn poll_side_transmit(&mut self, _now: Instant) -> Option<(SocketAddrV4, Vec<u8>)> {
        let reporter = self.reporter.as_mut()?;
        let bytes = reporter.pending.take()?;
        Some((reporter.config.master, bytes))
    }

    fn handle_side(&mut self, now: Instant, from: SocketAddrV4, bytes: &[u8]) {
        if let Some(link) = self.takeover.as_mut() {
            let outcome = link.watch.handle_ack(now, bytes);
            if outcome != crate::takeover::AckOutcome::Accepted {
                tracing::debug!(%from, ?outcome, "report ack refused");
            }
        }
    }

    fn finished(&self, set: &TunnelSet, _now: Instant) -> bool {
        let enough = self
            .stop_after_closed
            .is_some_and(|n| self.stats.tunnels_closed >= n);
        // After a shutdown, done once every StopCCN we sent has been acknowledged.
        let drained = self.stopping
            && set.tunnel_ids().all(|id| {
                set.tunnel(id).is_none_or(|t| {
                    t.state() == TunnelState::Closed
                        || (t.state() == TunnelState::Closing && t.reliable().is_idle())
                })
            });
        enough || drained
    }

    fn shutdown(&mut self, set: &mut TunnelSet, now: Instant) {
        self.stopping = true;
        let ids: Vec<u16> = set.tunnel_ids().collect();
        for id in ids {
            if let Some(t) = set.tunnel_mut(id) {
                t.close(
                    now,
                    l2tp::conn::tunnel::ResultCode::error(6, 0, "endpoint shutting down"),
                );
            }
        }
    }
}

impl Endpoint {
    /// Seals a load report when one is due; when the next one is.
    fn report(&mut self, set: &TunnelSet, now: Instant) -> Option<Instant> {
        let draining = self.draining || self.stopping;
        let reporter = self.reporter.as_mut()?;
        if now >= reporter.next_at {
            let sessions: usize = set
                .tunnel_ids()
                .filter_map(|id| set.tunnel(id))
                .map(|t| t.session_ids().count())
                .sum();
            let config = &reporter.config;
            let report = LoadReport {
                endpoint: config.name.clone(),
                lan_addr: config.lan_addr,
                global_addr: config.global_addr,
                tunnels: u32::try_from(set.len()).unwrap_or(u32::MAX),
                sessions: u32::try_from(sessions).unwrap_or(u32::MAX),
                capacity: config.capacity,
                state: if draining {
                    EndpointState::Draining
                } else {
                    EndpointState::InService
                },
                sccrq_received: set.stats().sccrq_received,
                tunnel_ids: config.tunnel_ids.into_iter().collect(),
                sequence: reporter.sequence,
            };
            if let Some(link) = self.takeover.as_mut() {
                link.watch.report_sent(now, reporter.sequence);
            }
            reporter.sequence = reporter.sequence.saturating_add(1);
            let sealed = cluster::seal(&report, &config.key);
            reporter.last = Some(sealed.clone());
            reporter.pending = Some(sealed);
            reporter.next_at = now + config.interval;
        }
        Some(reporter.next_at)
    }
}

impl crate::metrics::Metered for EndpointStats {
    /// Tunnels and sessions (established, closed, up now), LCP echoes, and with PPP its
    /// subscribers: opened, open now, authentication, failures by phase, the pool.
    fn metrics(&self) -> crate::metrics::MetricSet {
        use crate::metrics::MetricSet;
        let mut set = MetricSet::default();
        set.counters(&[
            (
                "endpoint_tunnels_established",
                "Tunnels established.",
                self.tunnels_established,
            ),
            (
                "endpoint_tunnels_closed",
                "Tunnels closed.",
                self.tunnels_closed,
            ),
            (
                "endpoint_sessions_established",
                "Sessions established.",
                self.sessions_established,
            ),
            (
                "endpoint_sessions_closed",
                "Sessions closed.",
                self.sessions_closed,
            ),
            (
                "endpoint_echo_requests",
                "LCP Echo-Requests received.",
                self.echo_requests,
            ),
            (
                "endpoint_echo_replies",
                "LCP Echo-Replies sent.",
                self.echo_replies_sent,
            ),
            (
                "endpoint_data_frames",
                "Data messages received.",
                self.data_frames,
            ),
        ]);
        set.gauge(
            "endpoint_tunnels_up",
            "Tunnels established and not closed.",
            self.tunnels_established.saturating_sub(self.tunnels_closed) as f64,
        );
        set.gauge(
            "endpoint_sessions_up",
            "Sessions established and not closed.",
            self.sessions_established
                .saturating_sub(self.sessions_closed) as f64,
        );
        if let Some(p) = &self.ppp {
            set.counters(&[
                (
                    "endpoint_ppp_sessions_opened",
                    "Subscribers whose NCPs opened.",
                    p.sessions_opened,
                ),
                ("endpoint_ppp_auth_ok", "Logins accepted.", p.auth_ok),
                ("endpoint_ppp_auth_failed", "Logins refused.", p.auth_failed),
                (
                    "endpoint_ppp_failed_lcp",
                    "Subscribers failed in LCP.",
                    p.failed_lcp,
                ),
                (
                    "endpoint_ppp_failed_network",
                    "Subscribers failed in IPCP/IPv6CP.",
                    p.failed_network,
                ),
                (
                    "endpoint_ppp_pool_exhausted",
                    "Calls refused: no address left.",
                    p.pool_exhausted,
                ),
                (
                    "endpoint_ppp_duplicate_addresses",
                    "An address in use handed out again.",
                    p.duplicate_addresses,
                ),
            ]);
            set.gauge(
                "endpoint_ppp_sessions_open",
                "Subscribers open now.",
                p.sessions_open as f64,
            );
            set.gauge(
                "endpoint_ppp_pool_in_use",
                "Pool addresses in use.",
                p.pool_in_use as f64,
            );
            set.gauge(
                "endpoint_ppp_pool_free",
                "Pool addresses free.",
                p.pool_free as f64,
            );
        }
        set
    }
}
