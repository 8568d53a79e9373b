//! The reference endpoint (an LNS): accepts tunnels and sessions and answers LCP Echo-Request
//! on every session, so a LAC can check its data path end to end.

use l2tp::conn::tunnel::{Event, TunnelState};
use l2tp::conn::tunnels::TunnelSet;
use l2tp::ppp::LcpEcho;
use l2tp::time::Instant;
use serde::Serialize;

use crate::runner::Role;

/// What the endpoint saw; printed at exit and exported as JSON.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct EndpointStats {
    pub tunnels_established: u64,
    pub tunnels_closed: u64,
    pub sessions_established: u64,
    pub sessions_closed: u64,
    pub echo_requests: u64,
    pub echo_replies_sent: u64,
    pub data_frames: u64,
}

pub struct Endpoint {
    /// Our LCP magic number in Echo-Replies.
    magic: u32,
    /// Stop after this many tunnels have closed (tests); never when `None`.
    stop_after_closed: Option<u64>,
    stopping: bool,
    pub stats: EndpointStats,
}

impl Endpoint {
    pub fn new(magic: u32) -> Endpoint {
        Endpoint {
            magic,
            stop_after_closed: None,
            stopping: false,
            stats: EndpointStats::default(),
        }
    }

    pub fn stop_after_closed(mut self, tunnels: u64) -> Endpoint {
        self.stop_after_closed = Some(tunnels);
        self
    }
}

impl Role for Endpoint {
    fn on_event(&mut self, set: &mut TunnelSet, _now: Instant, tunnel: u16, event: Event) {
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
            Event::SessionUp {
                session_id,
                peer_session_id,
                ..
            } => {
                self.stats.sessions_established += 1;
                tracing::info!(tunnel, session_id, peer_session_id, "session established");
            }
            Event::SessionDown {
                session_id, result, ..
            } => {
                self.stats.sessions_closed += 1;
                tracing::info!(tunnel, session_id, %result, "session down");
            }
            Event::Data { session_id, frame } => {
                self.stats.data_frames += 1;
                if let Some(echo) = LcpEcho::parse(&frame).filter(|e| !e.reply) {
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

    fn on_tick(&mut self, _set: &mut TunnelSet, _now: Instant) -> Option<Instant> {
        None
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
