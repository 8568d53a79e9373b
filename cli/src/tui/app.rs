//! The TUI's state: what the driver and the master said last and what the user asked for.
//! Pure: [`App::update`] takes an [`Event`] and answers with the [`Action`] the outside world
//! should take; nothing here touches a terminal, a socket or a clock.

use std::collections::{BTreeSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};

use probes::live::{EndpointLive, LiveSnapshot};
use reference::master::{EndpointStatus, MasterStatus, MemberState};

use super::events::{Event, Input};

/// `+` multiplies the target rate by this, `-` divides by it.
pub const RATE_STEP: f64 = 1.25;
/// The slowest pace `-` goes down to, in tunnel setups per second.
pub const MIN_RATE: f64 = 1.0;
/// The fastest pace `+` goes up to.
pub const MAX_RATE: f64 = 1_000_000.0;
/// How many ticks a status message stays up (about 5 s at 10 ticks a second).
pub const MESSAGE_TICKS: u32 = 50;
/// Whole seconds averaged for the measured setup rate.
const MEASURE_SECONDS: usize = 3;
/// Whole seconds of the run the charts keep (the oldest go first).
pub const HISTORY_SECONDS: usize = 600;
/// The histograms the latency chart can show, in the order `l` steps through them.
pub const LATENCY_PHASES: [&str; 9] = [
    "SCCRQ→SCCRP",
    "tunnel setup",
    "session setup",
    "echo RTT",
    "LCP opened",
    "authentication",
    "IPCP opened",
    "ICRQ→IP up",
    "traffic RTT",
];

/// One whole second of the run as the charts plot it: the levels and the running totals as
/// the last snapshot within it saw them (a second's count is its total minus the one before).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Second {
    pub second: u64,
    pub tunnels_up: u64,
    pub sessions_up: u64,
    pub established: u64,
    pub failed: u64,
    pub retransmissions: u64,
}

/// What the App wants done outside it.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    None,
    /// Stop the driver (cleanly) and leave.
    Quit,
    SetPaused(bool),
    /// Tunnel setups per second; never below [`MIN_RATE`].
    SetRate(f64),
    /// Drain this endpoint at the master; answer with [`Event::Drained`].
    Drain(String),
    /// Kill this endpoint's process; answer with [`Event::Killed`].
    Kill(String),
    /// Kill the lab's master; answer with [`Event::MasterKilled`].
    KillMaster,
}

/// An endpoint's state as the table shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowState {
    InService,
    Draining,
    Deactivated,
    OutOfService,
    /// Its agent says the LNS does not answer.
    Unresponsive,
    /// Killed from this TUI: whatever the master says, its process is gone.
    Killed,
    /// The master has not said (no master, or it does not know this endpoint).
    Unknown,
}

impl RowState {
    pub fn label(self) -> &'static str {
        match self {
            RowState::InService => "in service",
            RowState::Draining => "draining",
            RowState::Deactivated => "deactivated",
            RowState::OutOfService => "out of service",
            RowState::Unresponsive => "not answering",
            RowState::Killed => "killed",
            RowState::Unknown => "-",
        }
    }
}

/// One endpoint as both sides see it: the driver (tunnels the initiators hold with it) and the
/// master (the load it reports, its state). Either side may be missing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row<'a> {
    pub name: &'a str,
    pub live: Option<&'a EndpointLive>,
    pub master: Option<&'a EndpointStatus>,
    pub killed: bool,
}

impl Row<'_> {
    pub fn state(&self) -> RowState {
        if self.killed {
            return RowState::Killed;
        }
        match self.master.map(|m| m.state) {
            Some(MemberState::InService) => RowState::InService,
            Some(MemberState::Draining) => RowState::Draining,
            Some(MemberState::Deactivated) => RowState::Deactivated,
            Some(MemberState::OutOfService) => RowState::OutOfService,
            Some(MemberState::Unresponsive) => RowState::Unresponsive,
            None => RowState::Unknown,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct App {
    /// Drain and kill need the lab's master and processes.
    pub lab: bool,
    pub snapshot: LiveSnapshot,
    pub master: Option<MasterStatus>,
    /// The last attempt to read the master failed; `master` is older than it looks.
    pub master_stale: bool,
    /// Index into [`App::rows`]; clamped when rows go away.
    pub selected: usize,
    /// What the App last told the driver.
    pub paused: bool,
    /// What the App last told the driver; 0 is unpaced.
    pub rate: f64,
    pub help: bool,
    pub message: Option<String>,
    message_ticks: u32,
    /// Endpoints killed from here, by name.
    pub killed: BTreeSet<String>,
    /// The lab's master was killed from here.
    pub master_killed: bool,
    /// The run second by second, for the charts; at most [`HISTORY_SECONDS`].
    pub history: VecDeque<Second>,
    /// Index into [`LATENCY_PHASES`]: the latency chart's histogram.
    pub latency_phase: usize,
}

impl App {
    /// `rate` and `paused` are the control's values when the TUI starts.
    pub fn new(lab: bool, rate: f64, paused: bool) -> App {
        App {
            lab,
            snapshot: LiveSnapshot::default(),
            master: None,
            master_stale: false,
            selected: 0,
            paused,
            rate: if rate.is_finite() && rate > 0.0 {
                rate
            } else {
                0.0
            },
            help: false,
            message: None,
            message_ticks: 0,
            killed: BTreeSet::new(),
            master_killed: false,
            history: VecDeque::new(),
            latency_phase: 0,
        }
    }

    /// Files the snapshot under its whole second: a new second, or the last one updated.
    fn record(&mut self, s: &LiveSnapshot) {
        let second = if s.elapsed_s.is_finite() && s.elapsed_s > 0.0 {
            s.elapsed_s as u64
        } else {
            0
        };
        let entry = Second {
            second,
            tunnels_up: s.tunnels_up,
            sessions_up: s.sessions_up,
            established: s.tunnels_established,
            failed: s.tunnels_failed.saturating_add(s.sessions_failed),
            retransmissions: s.retransmissions,
        };
        match self.history.back_mut() {
            Some(last) if last.second == second => *last = entry,
            // A snapshot from before the last one (a new run) starts the history again.
            Some(last) if last.second > second => {
                self.history.clear();
                self.history.push_back(entry);
            }
            _ => {
                self.history.push_back(entry);
                while self.history.len() > HISTORY_SECONDS {
                    self.history.pop_front();
                }
            }
        }
    }

    pub fn update(&mut self, event: Event) -> Action {
        match event {
            Event::Input(input) => self.input(input),
            Event::Resize { .. } => Action::None,
            Event::Tick => {
                if self.message.is_some() {
                    self.message_ticks = self.message_ticks.saturating_sub(1);
                    if self.message_ticks == 0 {
                        self.message = None;
                    }
                }
                Action::None
            }
            Event::Snapshot(snapshot) => {
                self.record(&snapshot);
                self.snapshot = snapshot;
                self.clamp_selection();
                Action::None
            }
            Event::Master(Some(status)) => {
                self.master = Some(status);
                self.master_stale = false;
                self.clamp_selection();
                Action::None
            }
            Event::Master(None) => {
                self.master_stale = self.master.is_some();
                Action::None
            }
            Event::Drained { endpoint, result } => {
                match result {
                    Ok(()) => self.say(format!("drained {endpoint}")),
                    Err(e) => self.say(format!("drain {endpoint} failed: {e}")),
                }
                Action::None
            }
            Event::Killed { endpoint, result } => {
                match result {
                    Ok(()) => {
                        self.say(format!("{endpoint} killed"));
                        self.killed.insert(endpoint);
                    }
                    Err(e) => self.say(format!("kill {endpoint} failed: {e}")),
                }
                Action::None
            }
            Event::MasterKilled { result } => {
                match result {
                    Ok(()) => {
                        self.master_killed = true;
                        self.say("master killed: an endpoint takes over (FIG 4)".to_string());
                    }
                    Err(e) => self.say(format!("kill master failed: {e}")),
                }
                Action::None
            }
        }
    }

    fn input(&mut self, input: Input) -> Action {
        match input {
            Input::Quit => Action::Quit,
            Input::Back if self.help => {
                self.help = false;
                Action::None
            }
            Input::Back => Action::Quit,
            Input::ToggleHelp => {
                self.help = !self.help;
                Action::None
            }
            Input::TogglePause => {
                self.paused = !self.paused;
                self.say(if self.paused {
                    "paused: no new setups".to_string()
                } else {
                    "resumed".to_string()
                });
                Action::SetPaused(self.paused)
            }
            Input::RateUp => {
                if self.rate <= 0.0 {
                    self.say("unpaced: already as fast as the window allows".to_string());
                    return Action::None;
                }
                self.set_rate(self.rate * RATE_STEP)
            }
            Input::RateDown => {
                // From unpaced, pin the pace just under what it reaches now.
                let from = if self.rate > 0.0 {
                    self.rate
                } else {
                    self.measured_rate()
                };
                self.set_rate(from / RATE_STEP)
            }
            Input::NextLatency => {
                self.latency_phase = (self.latency_phase + 1) % LATENCY_PHASES.len();
                let name = LATENCY_PHASES
                    .get(self.latency_phase)
                    .copied()
                    .unwrap_or("");
                self.say(format!("latency chart: {name}"));
                Action::None
            }
            Input::SelectUp => {
                let n = self.rows().len();
                if n > 0 {
                    self.selected = (self.selected.min(n - 1) + n - 1) % n;
                }
                Action::None
            }
            Input::SelectDown => {
                let n = self.rows().len();
                if n > 0 {
                    self.selected = (self.selected.min(n - 1) + 1) % n;
                }
                Action::None
            }
            Input::Drain => self.operate("d drains", Action::Drain, "draining"),
            Input::Kill => self.operate("k kills", Action::Kill, "killing"),
            Input::KillMaster => {
                if !self.lab {
                    self.say("K kills the lab's master: only under `l2tpkit lab run`".to_string());
                    return Action::None;
                }
                if self.master_killed {
                    self.say("the master is killed already".to_string());
                    return Action::None;
                }
                self.say("killing the master…".to_string());
                Action::KillMaster
            }
        }
    }

    fn operate(&mut self, what: &str, action: fn(String) -> Action, doing: &str) -> Action {
        if !self.lab {
            self.say(format!(
                "{what} an endpoint of the lab: only under `l2tpkit lab run`"
            ));
            return Action::None;
        }
        let Some(row) = self.selected_row() else {
            self.say("no endpoint selected".to_string());
            return Action::None;
        };
        let name = row.name.to_string();
        if row.killed {
            self.say(format!("{name} is killed already"));
            return Action::None;
        }
        self.say(format!("{doing} {name}…"));
        action(name)
    }

    fn set_rate(&mut self, rate: f64) -> Action {
        let rate = if rate.is_finite() {
            rate.clamp(MIN_RATE, MAX_RATE)
        } else {
            MIN_RATE
        };
        self.rate = rate;
        self.say(format!("target rate {rate:.1}/s"));
        Action::SetRate(rate)
    }

    fn say(&mut self, message: String) {
        self.message = Some(message);
        self.message_ticks = MESSAGE_TICKS;
    }

    fn clamp_selection(&mut self) {
        let n = self.rows().len();
        self.selected = self.selected.min(n.saturating_sub(1));
    }

    /// Tunnel setups per second over the last few whole seconds, all endpoints together; the
    /// run's average when no per-second figures are in yet.
    pub fn measured_rate(&self) -> f64 {
        let totals = per_second_totals(&self.snapshot.endpoints);
        let recent: Vec<u64> = totals.iter().rev().take(MEASURE_SECONDS).copied().collect();
        if !recent.is_empty() {
            return recent.iter().sum::<u64>() as f64 / recent.len() as f64;
        }
        if self.snapshot.elapsed_s > 0.0 {
            self.snapshot.tunnels_established as f64 / self.snapshot.elapsed_s
        } else {
            0.0
        }
    }

    pub fn selected_row(&self) -> Option<Row<'_>> {
        let rows = self.rows();
        let index = self.selected.min(rows.len().checked_sub(1)?);
        rows.get(index).copied()
    }

    /// One row per endpoint: the master's in its (name) order, each with the driver's row that
    /// names it or has its address; then the driver's rows the master does not know.
    pub fn rows(&self) -> Vec<Row<'_>> {
        let live = &self.snapshot.endpoints;
        let mut taken = vec![false; live.len()];
        let mut rows = Vec::with_capacity(live.len());
        for status in self.master.iter().flat_map(|m| m.endpoints.iter()) {
            let by_key = live
                .iter()
                .enumerate()
                .position(|(i, l)| !taken[i] && l.key == status.name);
            let by_address = || {
                live.iter().enumerate().position(|(i, l)| {
                    !taken[i]
                        && address_ip(&l.address).is_some_and(|ip| {
                            ip == status.lan_addr || Some(ip) == status.global_addr
                        })
                })
            };
            let matched = by_key.or_else(by_address);
            if let Some(i) = matched {
                taken[i] = true;
            }
            rows.push(Row {
                name: &status.name,
                live: matched.map(|i| &live[i]),
                master: Some(status),
                killed: self.killed.contains(&status.name),
            });
        }
        for (i, l) in live.iter().enumerate() {
            if !taken[i] {
                rows.push(Row {
                    name: &l.key,
                    live: Some(l),
                    master: None,
                    killed: self.killed.contains(&l.key),
                });
            }
        }
        rows
    }
}

/// "198.18.0.11" or "198.18.0.11:1701".
fn address_ip(address: &str) -> Option<Ipv4Addr> {
    address
        .parse::<Ipv4Addr>()
        .ok()
        .or_else(|| address.parse::<SocketAddrV4>().ok().map(|a| *a.ip()))
}

/// Setups per second of all endpoints together, oldest first, aligned on the latest second.
pub fn per_second_totals(endpoints: &[EndpointLive]) -> Vec<u64> {
    let len = endpoints
        .iter()
        .map(|e| e.setups_per_second.len())
        .max()
        .unwrap_or(0);
    let mut totals = vec![0u64; len];
    for e in endpoints {
        let offset = len - e.setups_per_second.len();
        for (slot, v) in totals[offset..].iter_mut().zip(&e.setups_per_second) {
            *slot = slot.saturating_add(*v);
        }
    }
    totals
}
