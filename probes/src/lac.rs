//! The simulated LAC: opens tunnels and incoming calls against an LNS, holds them with LCP
//! echoes, tears them down cleanly, and reports what happened.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use l2tp::conn::tunnel::{Event, ResultCode, TunnelState};
use l2tp::conn::tunnels::TunnelSet;
use l2tp::ppp::LcpEcho;
use l2tp::time::Instant;
use reference::runner::Role;
use serde::Serialize;
use std::net::SocketAddrV4;

/// What the LAC is asked to do.
#[derive(Debug, Clone)]
pub struct LacPlan {
    pub target: SocketAddrV4,
    pub tunnels: usize,
    pub sessions_per_tunnel: usize,
    /// How long to keep everything up once it is established.
    pub hold: Duration,
    /// LCP Echo-Requests per second on each session while holding (0: none).
    pub echo_rate: f64,
    /// Give up on tunnels and sessions not up after this long.
    pub setup_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    Connecting,
    Holding { until: Instant },
    TearingDown,
}

/// Setup latency figures, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn from(histogram: &Histogram<u64>) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        if histogram.is_empty() {
            return Latency::default();
        }
        Latency {
            count: histogram.len(),
            min_ms: ms(histogram.min()),
            p50_ms: ms(histogram.value_at_quantile(0.5)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// The LAC's summary, printed as text or JSON.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LacReport {
    pub target: String,
    pub tunnels_requested: usize,
    pub tunnels_established: usize,
    pub tunnels_failed: usize,
    pub sessions_requested: usize,
    pub sessions_established: usize,
    pub sessions_failed: usize,
    /// "StopCCN 4/0 (…)", "CDN 2/6 (…)", "timeout": how many of each.
    pub failures: BTreeMap<String, u64>,
    pub tunnel_setup: Latency,
    pub session_setup: Latency,
    pub echo_requests_sent: u64,
    /// Echo-Replies from the peer's PPP.
    pub echo_replies: u64,
    /// Our own Echo-Requests coming back unchanged (a loopback PPP peer such as the pppd
    /// stand-in in PEERS.md).
    pub echo_looped_back: u64,
    /// Tunnels whose StopCCN the peer acknowledged.
    pub tunnels_closed_cleanly: usize,
    /// From the first SCCRQ to the last session up, in milliseconds: the setup phase.
    pub setup_phase_ms: f64,
    /// Tunnels established per second of the setup phase.
    pub tunnel_setups_per_second: f64,
}

impl LacReport {
    pub fn echo_answered(&self) -> u64 {
        self.echo_replies + self.echo_looped_back
    }

    /// Everything requested came up, every echo was answered, every tunnel closed cleanly.
    pub fn success(&self) -> bool {
        self.tunnels_failed == 0
            && self.sessions_failed == 0
            && self.tunnels_established == self.tunnels_requested
            && self.sessions_established == self.sessions_requested
            && self.echo_answered() >= self.echo_requests_sent
            && self.tunnels_closed_cleanly == self.tunnels_established
    }
}

impl core::fmt::Display for LacReport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        writeln!(f, "target {}", self.target)?;
        writeln!(
            f,
            "setup    {:.0} tunnels/s over {:.1} ms",
            self.tunnel_setups_per_second, self.setup_phase_ms
        )?;
        writeln!(
            f,
            "tunnels  {}/{} established, {} failed; setup p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
            self.tunnels_established,
            self.tunnels_requested,
            self.tunnels_failed,
            self.tunnel_setup.p50_ms,
            self.tunnel_setup.p99_ms,
            self.tunnel_setup.max_ms
        )?;
        writeln!(
            f,
            "sessions {}/{} established, {} failed; setup p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
            self.sessions_established,
            self.sessions_requested,
            self.sessions_failed,
            self.session_setup.p50_ms,
            self.session_setup.p99_ms,
            self.session_setup.max_ms
        )?;
        writeln!(
            f,
            "echoes   {} sent, {} answered ({} replies, {} looped back)",
            self.echo_requests_sent,
            self.echo_answered(),
            self.echo_replies,
            self.echo_looped_back
        )?;
        write!(
            f,
            "teardown {}/{} tunnels closed cleanly",
            self.tunnels_closed_cleanly, self.tunnels_established
        )?;
        for (why, count) in &self.failures {
            write!(f, "\nfailed   {count} × {why}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct TunnelTrack {
    started: Instant,
    up: bool,
    down: bool,
    sessions: BTreeMap<u16, SessionTrack>,
}

#[derive(Debug, Default)]
struct SessionTrack {
    started: Instant,
    up: bool,
    down: bool,
}

pub struct Lac {
    plan: LacPlan,
    phase: Phase,
    started_at: Instant,
    /// When the last tunnel or session came up.
    last_up: Instant,
    tunnels: BTreeMap<u16, TunnelTrack>,
    tunnel_latency: Histogram<u64>,
    session_latency: Histogram<u64>,
    next_echo: Option<Instant>,
    echo_id: u8,
    magic: u32,
    report: LacReport,
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 1 h at 3 significant digits: constant, valid bounds.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds")
}

impl Lac {
    pub fn new(plan: LacPlan, magic: u32) -> Lac {
        let report = LacReport {
            target: plan.target.to_string(),
            tunnels_requested: plan.tunnels,
            sessions_requested: plan.tunnels * plan.sessions_per_tunnel,
            ..LacReport::default()
        };
        Lac {
            plan,
            phase: Phase::Start,
            started_at: Instant::ZERO,
            last_up: Instant::ZERO,
            tunnels: BTreeMap::new(),
            tunnel_latency: histogram(),
            session_latency: histogram(),
            next_echo: None,
            echo_id: 0,
            magic,
            report,
        }
    }

    pub fn report(&self) -> &LacReport {
        &self.report
    }

    fn fail(&mut self, why: String) {
        *self.report.failures.entry(why).or_default() += 1;
    }

    fn all_resolved(&self) -> bool {
        self.tunnels.len() == self.plan.tunnels
            && self.tunnels.values().all(|t| {
                t.down
                    || (t.up
                        && t.sessions.len() == self.plan.sessions_per_tunnel
                        && t.sessions.values().all(|s| s.up || s.down))
            })
    }

    fn start_teardown(&mut self, set: &mut TunnelSet, now: Instant) {
        self.phase = Phase::TearingDown;
        for (&id, track) in &self.tunnels {
            if track.down {
                continue;
            }
            if let Some(tunnel) = set.tunnel_mut(id) {
                for sid in tunnel.session_ids().collect::<Vec<_>>() {
                    tunnel.close_session(sid, ResultCode::new(ResultCode::ADMIN_CALL));
                }
                tunnel.close(now, ResultCode::new(ResultCode::CLEAR_TUNNEL));
            }
        }
    }

    fn send_echoes(&mut self, set: &mut TunnelSet) {
        self.echo_id = self.echo_id.wrapping_add(1);
        let frame = LcpEcho::request(self.echo_id, self.magic).to_frame();
        for (&id, track) in &self.tunnels {
            let Some(tunnel) = set.tunnel_mut(id) else {
                continue;
            };
            for (&sid, session) in &track.sessions {
                if session.up && !session.down && tunnel.send_data(sid, &frame) {
                    self.report.echo_requests_sent += 1;
                }
            }
        }
    }
}

impl Role for Lac {
    fn on_event(&mut self, set: &mut TunnelSet, now: Instant, tunnel: u16, event: Event) {
        let sessions = self.plan.sessions_per_tunnel;
        let Some(track) = self.tunnels.get_mut(&tunnel) else {
            return;
        };
        match event {
            Event::TunnelUp { .. } => {
                self.last_up = self.last_up.max(now);
                track.up = true;
                self.report.tunnels_established += 1;
                let us = now.saturating_duration_since(track.started).as_micros();
                let _ = self
                    .tunnel_latency
                    .record(u64::try_from(us).unwrap_or(u64::MAX).max(1));
                if let Some(t) = set.tunnel_mut(tunnel) {
                    for _ in 0..sessions {
                        if let Some(sid) = t.open_incoming_call() {
                            track.sessions.insert(
                                sid,
                                SessionTrack {
                                    started: now,
                                    ..SessionTrack::default()
                                },
                            );
                        }
                    }
                }
            }
            Event::TunnelDown { result, by_peer } => {
                let was_up = track.up;
                track.down = true;
                let unresolved = track.sessions.values().filter(|s| !s.up && !s.down).count()
                    + sessions.saturating_sub(track.sessions.len()) * usize::from(!was_up);
                if !was_up {
                    self.report.tunnels_failed += 1;
                    self.report.sessions_failed += unresolved;
                    self.fail(format!("StopCCN {}", describe(&result, by_peer)));
                } else if self.phase != Phase::TearingDown {
                    // An established tunnel lost before we asked: a failure too.
                    self.report.tunnels_failed += 1;
                    self.fail(format!(
                        "tunnel lost: StopCCN {}",
                        describe(&result, by_peer)
                    ));
                }
            }
            Event::SessionUp { session_id, .. } => {
                if let Some(s) = track.sessions.get_mut(&session_id) {
                    self.last_up = self.last_up.max(now);
                    s.up = true;
                    self.report.sessions_established += 1;
                    let us = now.saturating_duration_since(s.started).as_micros();
                    let _ = self
                        .session_latency
                        .record(u64::try_from(us).unwrap_or(u64::MAX).max(1));
                }
            }
            Event::SessionDown {
                session_id,
                result,
                by_peer,
            } => {
                let tearing_down = self.phase == Phase::TearingDown;
                if let Some(s) = track.sessions.get_mut(&session_id) {
                    s.down = true;
                    if !s.up {
                        self.report.sessions_failed += 1;
                        let why = format!("CDN {}", describe(&result, by_peer));
                        self.fail(why);
                    } else if !tearing_down && by_peer {
                        self.report.sessions_failed += 1;
                        let why = format!("session lost: CDN {}", describe(&result, by_peer));
                        self.fail(why);
                    }
                }
            }
            Event::Data { frame, .. } => {
                if let Some(echo) = LcpEcho::parse(&frame) {
                    if echo.reply {
                        self.report.echo_replies += 1;
                    } else if echo.magic == self.magic {
                        self.report.echo_looped_back += 1;
                    }
                }
            }
            Event::Closed | Event::WanError { .. } | Event::LinkInfo { .. } => {}
        }
    }

    fn on_tick(&mut self, set: &mut TunnelSet, now: Instant) -> Option<Instant> {
        match self.phase {
            Phase::Start => {
                self.started_at = now;
                for _ in 0..self.plan.tunnels {
                    match set.connect(now, self.plan.target) {
                        Some(id) => {
                            self.tunnels.insert(
                                id,
                                TunnelTrack {
                                    started: now,
                                    ..TunnelTrack::default()
                                },
                            );
                        }
                        None => {
                            self.report.tunnels_failed += 1;
                            self.fail("no free tunnel ID".to_string());
                        }
                    }
                }
                self.phase = Phase::Connecting;
                Some(now + self.plan.setup_timeout)
            }
            Phase::Connecting => {
                let timed_out = now >= self.started_at + self.plan.setup_timeout;
                if self.all_resolved() || timed_out {
                    if timed_out && !self.all_resolved() {
                        let stuck = self
                            .tunnels
                            .values()
                            .map(|t| {
                                let sessions = t.sessions.values().filter(|s| !s.up && !s.down);
                                sessions.count()
                            })
                            .sum::<usize>();
                        self.report.sessions_failed += stuck;
                        self.fail(format!("setup timeout ({stuck} sessions)"));
                    }
                    let until = now + self.plan.hold;
                    self.phase = Phase::Holding { until };
                    if self.plan.echo_rate > 0.0 {
                        self.next_echo = Some(now);
                    }
                    return Some(now);
                }
                Some(self.started_at + self.plan.setup_timeout)
            }
            Phase::Holding { until } => {
                if now >= until {
                    self.start_teardown(set, now);
                    return None;
                }
                // Echoes stop a second before teardown so the last answers can arrive.
                let quiet = until.saturating_duration_since(now) < Duration::from_secs(1);
                match self.next_echo {
                    Some(at) if now >= at && !quiet => {
                        self.send_echoes(set);
                        let period = Duration::from_secs_f64(1.0 / self.plan.echo_rate);
                        self.next_echo = Some(at + period);
                    }
                    _ => {}
                }
                [Some(until), self.next_echo].into_iter().flatten().min()
            }
            Phase::TearingDown => None,
        }
    }

    fn finished(&self, set: &TunnelSet, _now: Instant) -> bool {
        self.phase == Phase::TearingDown
            && set.tunnel_ids().all(|id| {
                set.tunnel(id).is_none_or(|t| {
                    t.state() == TunnelState::Closed
                        || (t.state() == TunnelState::Closing && t.reliable().is_idle())
                })
            })
    }

    fn shutdown(&mut self, set: &mut TunnelSet, now: Instant) {
        if self.phase != Phase::TearingDown {
            self.start_teardown(set, now);
        }
    }
}

impl Lac {
    /// Final figures; call after the runner returns.
    pub fn finish(&mut self, set: &TunnelSet) -> LacReport {
        self.report.tunnel_setup = Latency::from(&self.tunnel_latency);
        self.report.session_setup = Latency::from(&self.session_latency);
        let phase = self.last_up.saturating_duration_since(self.started_at);
        self.report.setup_phase_ms = phase.as_secs_f64() * 1000.0;
        self.report.tunnel_setups_per_second = if phase.is_zero() {
            0.0
        } else {
            self.report.tunnels_established as f64 / phase.as_secs_f64()
        };
        self.report.tunnels_closed_cleanly = self
            .tunnels
            .iter()
            .filter(|(_, t)| t.up)
            .filter(|(id, _)| {
                set.tunnel(**id).is_none_or(|t| {
                    t.state() == TunnelState::Closed
                        || (t.state() == TunnelState::Closing && t.reliable().is_idle())
                })
            })
            .count();
        self.report.clone()
    }
}

/// Several LACs (one per initiator address) as one: counts added, latency histograms merged.
#[derive(Default)]
pub struct Combined {
    report: Option<LacReport>,
    tunnel_latency: Option<Histogram<u64>>,
    session_latency: Option<Histogram<u64>>,
}

impl Combined {
    /// Adds one finished LAC (call `Lac::finish` first).
    pub fn add(&mut self, lac: &Lac) {
        let r = &lac.report;
        let total = self.report.get_or_insert_with(|| LacReport {
            target: r.target.clone(),
            ..LacReport::default()
        });
        total.tunnels_requested += r.tunnels_requested;
        total.tunnels_established += r.tunnels_established;
        total.tunnels_failed += r.tunnels_failed;
        total.sessions_requested += r.sessions_requested;
        total.sessions_established += r.sessions_established;
        total.sessions_failed += r.sessions_failed;
        total.echo_requests_sent += r.echo_requests_sent;
        total.echo_replies += r.echo_replies;
        total.echo_looped_back += r.echo_looped_back;
        total.tunnels_closed_cleanly += r.tunnels_closed_cleanly;
        // The initiators run side by side: the setup phase is the longest of theirs.
        total.setup_phase_ms = total.setup_phase_ms.max(r.setup_phase_ms);
        total.tunnel_setups_per_second = if total.setup_phase_ms > 0.0 {
            total.tunnels_established as f64 / (total.setup_phase_ms / 1000.0)
        } else {
            0.0
        };
        for (why, count) in &r.failures {
            *total.failures.entry(why.clone()).or_default() += count;
        }
        for (mine, theirs) in [
            (&mut self.tunnel_latency, &lac.tunnel_latency),
            (&mut self.session_latency, &lac.session_latency),
        ] {
            let merged = mine.get_or_insert_with(histogram);
            // Same bounds on both sides: adding cannot fail.
            let _ = merged.add(theirs);
        }
    }

    pub fn report(&self) -> LacReport {
        let mut report = self.report.clone().unwrap_or_default();
        if let Some(h) = &self.tunnel_latency {
            report.tunnel_setup = Latency::from(h);
        }
        if let Some(h) = &self.session_latency {
            report.session_setup = Latency::from(h);
        }
        report
    }
}

fn describe(result: &ResultCode, by_peer: bool) -> String {
    let from = if by_peer { "from peer" } else { "ours" };
    format!("{result} [{from}]")
}
