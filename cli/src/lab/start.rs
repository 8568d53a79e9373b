//! How a role is started and how it says it is ready: what the lab's rooms share, so that
//! none of them needs another for it.

use std::path::PathBuf;
use std::time::Duration;

/// How a started process says that it is ready: never by a line in its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Its control socket answers `status` (the master, the NAT). A master that found its
    /// address held answers too, as standing by.
    Control(PathBuf),
    /// It has written this JSON status file (the endpoint, the impairing switch, a capture);
    /// a file left by an earlier life is removed before the process starts.
    StatusFile(PathBuf),
}

/// The name the lab gives its cluster master (its files and its `--name`).
pub const MASTER: &str = "master";

/// How long a role may take to get ready.
pub(super) const READY: Duration = Duration::from_secs(10);

impl Readiness {
    /// Clears what an earlier life left, so that only the new process can make this true.
    pub(super) fn reset(&self) {
        if let Readiness::StatusFile(path) = self {
            let _ = std::fs::remove_file(path);
        }
    }

    pub(super) fn is_ready(&self) -> bool {
        match self {
            Readiness::Control(socket) => reference::control::request(socket, "status").is_ok(),
            Readiness::StatusFile(path) => std::fs::read(path)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
                .is_some(),
        }
    }
}

impl std::fmt::Display for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Readiness::Control(socket) => write!(f, "answer on {}", socket.display()),
            Readiness::StatusFile(path) => write!(f, "write {}", path.display()),
        }
    }
}

/// What one role was started with, to start it again ([`Lab::restart`]).
#[derive(Debug, Clone)]
pub(super) struct RoleStart {
    pub(super) namespace: String,
    pub(super) args: Vec<String>,
    pub(super) ready: Option<Readiness>,
}
