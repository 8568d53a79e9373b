//! Everything that can happen to the TUI, and how a terminal event becomes one of them.

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use probes::live::LiveSnapshot;
use reference::master::MasterStatus;

/// What the user asked for with one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// `q`, Ctrl-C.
    Quit,
    /// Esc: closes the help when it is open, quits otherwise.
    Back,
    /// `p`, space.
    TogglePause,
    /// `+`, `=`.
    RateUp,
    /// `-`, `_`.
    RateDown,
    /// The Up arrow (not vi's `k`: `k` kills).
    SelectUp,
    /// Down.
    SelectDown,
    /// `d`.
    Drain,
    /// `k`.
    Kill,
    /// `K`: kill the lab's master (FIG 4: an endpoint takes over).
    KillMaster,
    /// `?`, `h`, F1.
    ToggleHelp,
    /// `l`: the latency chart shows the next histogram.
    NextLatency,
}

/// One thing that happened: a key, the terminal, the clock, or news from the driver and the master.
// A snapshot is the big variant (about 1 KiB since the PPP and traffic figures); events go by
// about ten times a second, so boxing it would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Input(Input),
    Resize {
        width: u16,
        height: u16,
    },
    /// One refresh went by.
    Tick,
    /// The driver's latest snapshot.
    Snapshot(LiveSnapshot),
    /// The master's status; `None` when it could not be read this time.
    Master(Option<MasterStatus>),
    /// How a drain the App asked for went.
    Drained {
        endpoint: String,
        result: Result<(), String>,
    },
    /// How a kill the App asked for went.
    Killed {
        endpoint: String,
        result: Result<(), String>,
    },
    /// How killing the master went.
    MasterKilled {
        result: Result<(), String>,
    },
}

/// The key's meaning, if it has one. Releases are ignored (only some terminals report them).
pub fn input_from_key(key: KeyEvent) -> Option<Input> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        // Raw mode turns Ctrl-C into a key instead of a signal.
        return match key.code {
            KeyCode::Char('c') | KeyCode::Char('C') => Some(Input::Quit),
            _ => None,
        };
    }
    match key.code {
        KeyCode::Char('q') | KeyCode::Char('Q') => Some(Input::Quit),
        KeyCode::Esc => Some(Input::Back),
        KeyCode::Char('p') | KeyCode::Char('P') | KeyCode::Char(' ') => Some(Input::TogglePause),
        KeyCode::Char('+') | KeyCode::Char('=') => Some(Input::RateUp),
        KeyCode::Char('-') | KeyCode::Char('_') => Some(Input::RateDown),
        KeyCode::Up => Some(Input::SelectUp),
        KeyCode::Down => Some(Input::SelectDown),
        KeyCode::Char('d') => Some(Input::Drain),
        KeyCode::Char('k') => Some(Input::Kill),
        KeyCode::Char('K') => Some(Input::KillMaster),
        KeyCode::Char('?') | KeyCode::Char('h') | KeyCode::F(1) => Some(Input::ToggleHelp),
        KeyCode::Char('l') | KeyCode::Char('L') => Some(Input::NextLatency),
        _ => None,
    }
}

/// The App's view of a terminal event; `None` for what it does not care about (mouse, focus,
/// paste, unbound keys).
pub fn from_terminal(event: TermEvent) -> Option<Event> {
    match event {
        TermEvent::Key(key) => input_from_key(key).map(Event::Input),
        TermEvent::Resize(width, height) => Some(Event::Resize { width, height }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn keys_map_to_inputs() {
        assert_eq!(input_from_key(key(KeyCode::Char('q'))), Some(Input::Quit));
        assert_eq!(input_from_key(key(KeyCode::Esc)), Some(Input::Back));
        assert_eq!(
            input_from_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Input::Quit)
        );
        assert_eq!(input_from_key(key(KeyCode::Char('c'))), None);
        assert_eq!(
            input_from_key(key(KeyCode::Char('p'))),
            Some(Input::TogglePause)
        );
        assert_eq!(input_from_key(key(KeyCode::Char('+'))), Some(Input::RateUp));
        assert_eq!(input_from_key(key(KeyCode::Char('='))), Some(Input::RateUp));
        assert_eq!(
            input_from_key(key(KeyCode::Char('-'))),
            Some(Input::RateDown)
        );
        assert_eq!(input_from_key(key(KeyCode::Up)), Some(Input::SelectUp));
        assert_eq!(input_from_key(key(KeyCode::Down)), Some(Input::SelectDown));
        assert_eq!(input_from_key(key(KeyCode::Char('d'))), Some(Input::Drain));
        assert_eq!(input_from_key(key(KeyCode::Char('k'))), Some(Input::Kill));
        assert_eq!(
            input_from_key(KeyEvent::new(KeyCode::Char('K'), KeyModifiers::SHIFT)),
            Some(Input::KillMaster)
        );
        assert_eq!(
            input_from_key(key(KeyCode::Char('?'))),
            Some(Input::ToggleHelp)
        );
        assert_eq!(
            input_from_key(key(KeyCode::Char('l'))),
            Some(Input::NextLatency)
        );
        assert_eq!(input_from_key(key(KeyCode::Char('x'))), None);
        // Ctrl-D must not drain.
        assert_eq!(
            input_from_key(KeyEvent::new(KeyCode::Char('d'), KeyModifiers::CONTROL)),
            None
        );
    }

    #[test]
    fn releases_are_ignored() {
        let mut release = key(KeyCode::Char('q'));
        release.kind = KeyEventKind::Release;
        assert_eq!(input_from_key(release), None);
    }

    #[test]
    fn terminal_events_map() {
        assert_eq!(
            from_terminal(TermEvent::Resize(80, 24)),
            Some(Event::Resize {
                width: 80,
                height: 24
            })
        );
        assert_eq!(
            from_terminal(TermEvent::Key(key(KeyCode::Char('?')))),
            Some(Event::Input(Input::ToggleHelp))
        );
        assert_eq!(from_terminal(TermEvent::FocusGained), None);
    }
}
