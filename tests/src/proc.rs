//! Running a real daemon for a test and ending it by PID: [`Daemon`] is what the xl2tpd, l2tpns
//! and FreeRADIUS harnesses share.
//!
//! Every daemon runs as
//!
//! ```text
//! [ip netns exec NS] unshare --pid --fork --kill-child --mount --propagation private \
//!   sh -c SCRIPT sh ARGS…
//! ```
//!
//! where `SCRIPT` may bind-mount files of the test over system paths (private mount namespace)
//! and then `exec`s the daemon, which becomes the init of a new PID namespace. That makes the
//! cleanup airtight: daemons put themselves in new sessions, signal their own process group
//! (l2tpns), or leave children behind, and the init process of these machines does not
//! reliably reap orphans. When the init of a PID namespace exits, the kernel kills and reaps
//! every process left inside, and `unshare` (our direct child, leader of its own process group,
//! so nothing the daemon signals reaches the test runner) reaps that init and exits: stopping is
//! "signal the daemon, `wait()` for `unshare`". `unshare` blocks SIGTERM and SIGINT while it
//! waits, so it always outlives the daemon; `--kill-child` takes the daemon with it should
//! `unshare` be SIGKILLed. `ip netns exec` enters the namespace and execs `unshare` in place
//! (it forks only in batch mode), so `unshare` keeps our child's PID.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// How often log files and exits are polled.
pub const POLL: Duration = Duration::from_millis(20);

/// A process by PID and start time (so a reused PID is not mistaken for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    start_time: u64,
}

impl Proc {
    /// The process as it is now, if it exists.
    pub fn of(pid: u32) -> Option<Proc> {
        start_time(pid).map(|start_time| Proc { pid, start_time })
    }

    /// True while the process exists, zombies included (a zombie is still "left over").
    pub fn exists(&self) -> bool {
        start_time(self.pid) == Some(self.start_time)
    }
}

/// Field 22 of `/proc/PID/stat` (start time in clock ticks).
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The direct children of `pid` (from `/proc/PID/task/*/children`).
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut children = Vec::new();
    for task in tasks.flatten() {
        if let Ok(list) = fs::read_to_string(task.path().join("children")) {
            children.extend(
                list.split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    children
}

/// `pid` and its descendants as they are now.
pub fn tree(pid: u32) -> Vec<Proc> {
    let mut all = Vec::new();
    let mut queue = vec![pid];
    while let Some(pid) = queue.pop() {
        if let Some(proc) = Proc::of(pid) {
            all.push(proc);
            queue.extend(children_of(pid));
        }
    }
    all
}

/// Every process whose command line contains `needle` (a per-run directory or prefix), so a
/// test can check that nothing of its run is left.
pub fn with_cmdline_containing(needle: &str) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|raw| String::from_utf8_lossy(&raw).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

pub fn signal(pid: u32, sig: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
    }
}

pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The last `lines` lines of `log`.
pub fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A new directory `l2tpkit-KIND-PID-SEQ-NANOS` under the system temporary directory, mode 0700.
pub fn temp_dir(kind: &str) -> io::Result<PathBuf> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir();
    loop {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = base.join(format!(
            "l2tpkit-{kind}-{}-{}-{nanos:x}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        match fs::create_dir(&dir) {
            Ok(()) => {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
                return Ok(dir);
            }
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err),
        }
    }
}

/// A daemon in a PID (and mount) namespace of its own (see the module documentation), with the
/// log file it writes. Dropping it stops it (SIGTERM); [`Daemon::stop`] picks the signal.
pub struct Daemon {
    /// What it is, for messages ("xl2tpd on 127.66.1.2:1701").
    name: String,
    /// `unshare`, our direct child and the leader of its own process group. `None` once reaped.
    child: Mutex<Option<Child>>,
    pid: u32,
    /// The log the readiness and the tests' needles are read from.
    log_path: PathBuf,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .finish()
    }
}

impl Daemon {
    /// Starts `sh -c script sh args…` as described in the module documentation, inside the
    /// network namespace `netns` if given, in `dir`, with stdout and stderr appended to
    /// `output`. `log_path` is where the daemon logs (it may be `output`).
    pub fn spawn(
        name: impl Into<String>,
        netns: Option<&str>,
        script: &str,
        args: &[&Path],
        dir: &Path,
        output: &Path,
        log_path: &Path,
    ) -> io::Result<Daemon> {
        let out = File::options().create(true).append(true).open(output)?;
        let mut command = match netns {
            Some(ns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", ns, "unshare"]);
                command
            }
            None => Command::new("unshare"),
        };
        command
            .args([
                "--pid",
                "--fork",
                "--kill-child",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "sh",
            ])
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0);
        let child = command.spawn()?;
        Ok(Daemon {
            name: name.into(),
            pid: child.id(),
            child: Mutex::new(Some(child)),
            log_path: log_path.to_path_buf(),
        })
    }

    /// PID of `unshare`, our direct child (the leader of its own process group).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The host PID of the daemon itself (the init of the PID namespace), once it runs.
    pub fn daemon_pid(&self) -> Option<u32> {
        children_of(self.pid).first().copied()
    }

    /// Every process of this daemon now: `unshare`, the daemon and whatever it started.
    pub fn processes(&self) -> Vec<Proc> {
        tree(self.pid)
    }

    /// The exit status of `unshare` if it has exited (reaping it).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        let mut child = lock(&self.child);
        child.as_mut()?.try_wait().ok().flatten()
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// How often `needle` occurs in the log so far.
    pub fn count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    /// Polls the log until `needle` occurs at least `count` times and returns the log. The error
    /// (after `timeout`, or as soon as the daemon has exited without it) says what was missing
    /// and carries the end of the log, ready for an assertion message.
    pub fn wait_for(
        &self,
        needle: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            let found = log.matches(needle).count();
            if found >= count {
                return Ok(log);
            }
            let exited = self.exit_status();
            if exited.is_some() || Instant::now() >= deadline {
                let why = match exited {
                    Some(status) => format!("exited ({status})"),
                    None => format!("timed out after {timeout:?}"),
                };
                return Err(format!(
                    "{}: wanted {count}x {needle:?}, found {found}x; {why}; log tail:\n{}",
                    self.name,
                    tail(&log, 40)
                ));
            }
            sleep(POLL);
        }
    }

    /// Signals the daemon with `sig`, SIGKILL after `grace`, reaps `unshare`. Returns the log.
    /// Idempotent; never panics (it runs in `Drop`).
    pub fn stop(&mut self, sig: Signal, grace: Duration) -> String {
        let child = self
            .child
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(mut child) = child {
            let pid = self.pid;
            let exited = |child: &mut Child| !matches!(child.try_wait(), Ok(None));
            let wait_until = |child: &mut Child, limit: Duration| {
                let deadline = Instant::now() + limit;
                while !exited(child) && Instant::now() < deadline {
                    sleep(POLL);
                }
                exited(child)
            };
            // Only signal while `unshare` is unreaped: then its PID and its children's are ours.
            if !exited(&mut child) {
                // Before the daemon has exec'd, `sh` is the namespace init and ignores SIGTERM
                // from outside; the SIGKILL below covers that short window.
                for init in children_of(pid) {
                    signal(init, sig);
                }
                if !wait_until(&mut child, grace) {
                    for init in children_of(pid) {
                        signal(init, Signal::SIGKILL);
                    }
                    if !wait_until(&mut child, Duration::from_secs(2)) {
                        // The whole group (`--kill-child` ends the namespace with it).
                        if let Ok(pgid) = i32::try_from(pid) {
                            let _ = nix::sys::signal::killpg(Pid::from_raw(pgid), Signal::SIGKILL);
                        }
                    }
                }
            }
            let _ = child.wait();
        }
        self.log()
    }

    /// True until [`Daemon::stop`] has reaped it.
    pub fn is_started(&self) -> bool {
        lock(&self.child).is_some()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop(Signal::SIGTERM, Duration::from_secs(5));
    }
}
