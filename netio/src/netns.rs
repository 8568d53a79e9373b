//! Entering a network namespace.

use std::io;
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("opening network namespace {}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("entering network namespace {name}")]
    Enter { name: String, source: io::Error },
}

/// Moves the calling thread (only it) into a network namespace: `name_or_path` is a name
/// under `/run/netns` (as `ip netns` makes them) or a path to a namespace file. Sockets the
/// thread opens from then on live there.
pub fn enter(name_or_path: &str) -> Result<(), NetnsError> {
    let path = if name_or_path.contains('/') {
        PathBuf::from(name_or_path)
    } else {
        Path::new("/run/netns").join(name_or_path)
    };
    let file = std::fs::File::open(&path).map_err(|source| NetnsError::Open {
        path: path.clone(),
        source,
    })?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|errno| NetnsError::Enter {
        name: name_or_path.to_owned(),
        source: errno.into(),
    })
}
