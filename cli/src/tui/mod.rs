//! The live TUI of a load run: one [`events::Event`] enum, an [`app::App`] state that turns
//! events into [`app::Action`]s, and [`draw::draw`] that only paints (DESIGN.md, style 5).
//! [`run`] is the real terminal loop around them.

pub mod app;
pub mod draw;
pub mod events;
pub mod term;

use std::time::{Duration, Instant};

use probes::live::{Live, RunPhase};
use reference::master::MasterStatus;

pub use app::{Action, App};
pub use draw::draw;
pub use events::{Event, Input};

/// How often the master's status is asked for.
pub const MASTER_POLL: Duration = Duration::from_secs(1);
/// How long the final frame stays up once the driver says "done".
pub const DONE_LINGER: Duration = Duration::from_secs(1);

/// What the TUI can do to the cluster beyond the driver's own knobs. Calls are made from the TUI
/// thread between frames: keep each one short (a status query with a timeout well under a
/// second).
pub trait LabHooks {
    /// Drain the endpoint at the master: no new tunnels, the ones it has stay.
    fn drain(&mut self, endpoint: &str) -> Result<(), String>;
    /// Kill the endpoint's process.
    fn kill(&mut self, endpoint: &str) -> Result<(), String>;
    /// Kill the master, for the network too (its links go down).
    fn kill_master(&mut self) -> Result<(), String>;
    /// The master's status now; `None` when there is no master or it did not answer.
    fn master_status(&mut self) -> Option<MasterStatus>;
}

/// Outside the lab: no master to ask, nothing to drain or kill.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLab;

impl LabHooks for NoLab {
    fn drain(&mut self, _endpoint: &str) -> Result<(), String> {
        Err("draining needs the lab".to_string())
    }
    fn kill(&mut self, _endpoint: &str) -> Result<(), String> {
        Err("killing needs the lab".to_string())
    }
    fn kill_master(&mut self) -> Result<(), String> {
        Err("killing the master needs the lab".to_string())
    }
    fn master_status(&mut self) -> Option<MasterStatus> {
        None
    }
}

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TuiExit {
    /// The user quit; the driver was asked to stop (`LiveControl::request_stop`) and is tearing
    /// down, which the caller should wait for.
    Quit,
    /// The driver reported phase "done"; the final frame was shown for [`DONE_LINGER`].
    Finished,
}

/// Runs the TUI on this thread until the user quits or the driver is done. Redraws every
/// `refresh` (about 100 ms is good), asks `hooks` for the master's status about once a second,
/// and applies the user's pause and rate to `live.control`. The terminal is restored however
/// this returns, panics included.
pub fn run(
    live: Live,
    hooks: &mut dyn LabHooks,
    lab: bool,
    refresh: Duration,
) -> anyhow::Result<TuiExit> {
    let refresh = refresh.clamp(Duration::from_millis(10), Duration::from_secs(5));
    let mut guard = term::TerminalGuard::enter()?;
    let mut app = App::new(lab, live.control.rate(), live.control.paused());
    let mut master_due = Instant::now();
    let mut done_since: Option<Instant> = None;
    loop {
        let now = Instant::now();
        app.update(Event::Snapshot(live.latest()));
        if now >= master_due {
            app.update(Event::Master(hooks.master_status()));
            master_due = now + MASTER_POLL;
        }
        app.update(Event::Tick);
        guard.terminal.draw(|frame| draw(frame, &app))?;

        if app.snapshot.phase == RunPhase::Done {
            let since = *done_since.get_or_insert(now);
            if now.duration_since(since) >= DONE_LINGER {
                return Ok(TuiExit::Finished);
            }
        }

        // Take input until the next frame is due; a resize redraws at once.
        let next_frame = now + refresh;
        loop {
            let timeout = next_frame.saturating_duration_since(Instant::now());
            if !crossterm::event::poll(timeout)? {
                break;
            }
            let Some(event) = events::from_terminal(crossterm::event::read()?) else {
                continue;
            };
            let resized = matches!(event, Event::Resize { .. });
            match app.update(event) {
                Action::None => {}
                Action::Quit => {
                    live.control.request_stop();
                    return Ok(TuiExit::Quit);
                }
                Action::SetPaused(paused) => live.control.set_paused(paused),
                Action::SetRate(rate) => live.control.set_rate(rate),
                Action::Drain(endpoint) => {
                    let result = hooks.drain(&endpoint);
                    app.update(Event::Drained { endpoint, result });
                    master_due = Instant::now();
                }
                Action::Kill(endpoint) => {
                    let result = hooks.kill(&endpoint);
                    app.update(Event::Killed { endpoint, result });
                    master_due = Instant::now();
                }
                Action::KillMaster => {
                    let result = hooks.kill_master();
                    app.update(Event::MasterKilled { result });
                    master_due = Instant::now();
                }
            }
            if resized {
                break;
            }
            // Show what a key did without waiting out the frame.
            guard.terminal.draw(|frame| draw(frame, &app))?;
        }
    }
}
