//! The real terminal: raw mode and the alternate screen in, and always back out, on return, on
//! error and on panic.

use std::io::{self, Stdout, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};

use crossterm::cursor::{Hide, Show};
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

/// The terminal is in raw mode on the alternate screen; restoring twice does nothing.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The thread drawing: its panics restore the terminal before the message is printed.
static OWNER: Mutex<Option<ThreadId>> = Mutex::new(None);

/// Puts the terminal back: raw mode off, main screen, cursor shown. Safe to call at any time.
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = disable_raw_mode();
        let _ = execute!(io::stdout(), LeaveAlternateScreen, Show);
        let _ = io::stdout().flush();
    }
}

/// Owns the terminal while the TUI runs; dropping it restores the terminal.
pub struct TerminalGuard {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    pub fn enter() -> io::Result<TerminalGuard> {
        install_panic_hook();
        if let Ok(mut owner) = OWNER.lock() {
            *owner = Some(thread::current().id());
        }
        enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        // From here on, any error return drops nothing that restores: do it by hand.
        let entered = execute!(io::stdout(), EnterAlternateScreen, Hide)
            .and_then(|()| Terminal::new(CrosstermBackend::new(io::stdout())));
        match entered {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
        if let Ok(mut owner) = OWNER.lock() {
            *owner = None;
        }
    }
}

/// Once per process: a hook that restores the terminal, when the drawing thread panics, before
/// the previous hook prints the message (which raw mode and the alternate screen would eat).
/// Panics on other threads (the driver's) leave the TUI alone.
fn install_panic_hook() {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::SeqCst) || thread::panicking() {
        return;
    }
    let previous = Arc::new(std::panic::take_hook());
    std::panic::set_hook(Box::new(move |info| {
        let ours = OWNER
            .try_lock()
            .ok()
            .and_then(|owner| *owner)
            .is_some_and(|id| id == thread::current().id());
        if ours {
            restore();
        }
        previous(info);
    }));
}
