//! The state file of a run, `<run-dir>/state.jsonl`, and the registry of runs.
//!
//! The state file is append-only JSON lines. A line is appended (one `write`, so a crash of the
//! writer cannot tear it) BEFORE the object it names is made, so whatever a run made is listed
//! even when it died half-way; `lab down` removes what the lines list and ignores what does not
//! exist. A process has two lines: `process` before it starts (name, namespace, command) and
//! `pid` right after (PID and its start time from `/proc`, so a reused PID is never killed).
//!
//! ```text
//! {"kind":"run","version":1,"prefix":"l2k3fa1","topology":"fig2","run_dir":"/tmp/l2tpkit-lab/l2k3fa1","created_unix_ms":…,"owner_pid":…,"owner_start_time":…}
//! {"kind":"netns","name":"l2k3fa1-sw"}
//! {"kind":"link","namespace":"l2k3fa1-sw","name":"l2k3fa1-pub","link_type":"bridge"}
//! {"kind":"link","namespace":"l2k3fa1-sw","name":"l2k3fa1-scmp","link_type":"veth","peer_namespace":"l2k3fa1-cm","peer":"l2k3fa1-cmp"}
//! {"kind":"process","name":"supervisor","program":"…/l2tpkit","args":["lab","supervise",…],"log":"…/supervisor.log"}
//! {"kind":"pid","name":"supervisor","pid":4242,"start_time":123456}
//! {"kind":"process","name":"capture-public","namespace":"l2k3fa1-sw","program":"…/l2tpkit",…}
//! {"kind":"pid","name":"capture-public","pid":4250,"start_time":123460}      (written by the supervisor)
//! {"kind":"up","description":"…/lab.json"}
//! {"kind":"detached"}                                                      (`lab up` returned)
//! {"kind":"exited","name":"capture-public","pid":4250,"status":"exit status: 0"}  (supervisor)
//! {"kind":"down","removed":12}
//! ```
//!
//! The registry is `$TMPDIR/l2tpkit-lab/` (`/tmp/l2tpkit-lab/` by default): one directory per
//! prefix, made with `mkdir` (atomic, so two runs never get the same prefix). It is the run dir
//! itself unless `--run-dir` named another one; then it holds a file `run-dir` with that path.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::plan::Topology;
use super::sys;

pub const STATE_FILE: &str = "state.jsonl";
pub const STATE_VERSION: u32 = 1;
/// Prefixes are `l2k` and four hex digits: short, since interface names have 15 bytes.
pub const PREFIX_TAG: &str = "l2k";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Run {
        version: u32,
        prefix: String,
        topology: Topology,
        run_dir: PathBuf,
        created_unix_ms: u64,
        owner_pid: u32,
        owner_start_time: u64,
    },
    Netns {
        name: String,
    },
    Link {
        namespace: String,
        name: String,
        link_type: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer_namespace: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer: Option<String>,
    },
    Process {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
        program: String,
        args: Vec<String>,
        log: PathBuf,
    },
    Pid {
        name: String,
        pid: u32,
        start_time: u64,
    },
    Exited {
        name: String,
        pid: u32,
        status: String,
    },
    /// The public segment is impaired (`--netem`) by the lab's own switch between these veth
    /// ends; they leave with the veths, the switch with the processes.
    Netem {
        spec: String,
        ports: Vec<String>,
    },
    Up {
        description: PathBuf,
    },
    Detached {},
    Down {
        removed: usize,
    },
}

/// An append-only state file; several processes (the owner, the supervisor) append to it.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// Starts a new state file with its `run` line (replacing one whose run is down).
    pub fn create(path: &Path, header: &Record) -> anyhow::Result<StateFile> {
        std::fs::write(path, line(header)?).with_context(|| format!("{}", path.display()))?;
        Ok(StateFile {
            path: path.to_path_buf(),
        })
    }

    pub fn open(path: &Path) -> StateFile {
        StateFile {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record with a single `write` (O_APPEND: lines of several writers never mix).
    pub fn append(&self, record: &Record) -> anyhow::Result<()> {
        let text = line(record)?;
        let mut file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .with_context(|| format!("{}", self.path.display()))?;
        file.write_all(text.as_bytes())
            .with_context(|| format!("{}", self.path.display()))
    }

    pub fn read(&self) -> anyhow::Result<RunState> {
        RunState::read(&self.path)
    }
}

fn line(record: &Record) -> anyhow::Result<String> {
    let mut text = serde_json::to_string(record)?;
    text.push('\n');
    Ok(text)
}

/// What a state file says about a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunState {
    pub path: PathBuf,
    pub records: Vec<Record>,
}

/// A process the state file lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessEntry {
    pub name: String,
    pub namespace: Option<String>,
    /// `None` when the `pid` line never came (it died before or while starting).
    pub pid: Option<(u32, u64)>,
    pub exited: bool,
}

impl RunState {
    pub fn read(path: &Path) -> anyhow::Result<RunState> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
        let mut records = Vec::new();
        for (n, l) in text.lines().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(l) {
                Ok(r) => records.push(r),
                // Only the last line can be torn (a writer killed mid-write); skip it.
                Err(_) if n + 1 == text.lines().count() => {}
                Err(e) => anyhow::bail!("{}: line {}: {e}", path.display(), n + 1),
            }
        }
        if !matches!(records.first(), Some(Record::Run { .. })) {
            anyhow::bail!("{}: does not start with a run record", path.display());
        }
        Ok(RunState {
            path: path.to_path_buf(),
            records,
        })
    }

    pub fn prefix(&self) -> &str {
        match &self.records[0] {
            Record::Run { prefix, .. } => prefix,
            _ => unreachable!("checked in read"),
        }
    }

    pub fn run_dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    pub fn topology(&self) -> Topology {
        match &self.records[0] {
            Record::Run { topology, .. } => *topology,
            _ => unreachable!("checked in read"),
        }
    }

    pub fn created_unix_ms(&self) -> u64 {
        match &self.records[0] {
            Record::Run {
                created_unix_ms, ..
            } => *created_unix_ms,
            _ => 0,
        }
    }

    pub fn owner(&self) -> (u32, u64) {
        match &self.records[0] {
            Record::Run {
                owner_pid,
                owner_start_time,
                ..
            } => (*owner_pid, *owner_start_time),
            _ => (0, 0),
        }
    }

    /// A `down` line after the last `run` line.
    pub fn is_down(&self) -> bool {
        matches!(self.records.last(), Some(Record::Down { .. }))
    }

    pub fn namespaces(&self) -> Vec<String> {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::Netns { name } => Some(name.clone()),
                _ => None,
            })
            .collect()
    }

    /// `(namespace, name, peer)` of every link, in creation order.
    pub fn links(&self) -> Vec<(String, String, Option<String>)> {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::Link {
                    namespace,
                    name,
                    peer,
                    ..
                } => Some((namespace.clone(), name.clone(), peer.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn processes(&self) -> Vec<ProcessEntry> {
        let mut out: Vec<ProcessEntry> = Vec::new();
        for r in &self.records {
            match r {
                Record::Process {
                    name, namespace, ..
                } => out.push(ProcessEntry {
                    name: name.clone(),
                    namespace: namespace.clone(),
                    pid: None,
                    exited: false,
                }),
                Record::Pid {
                    name,
                    pid,
                    start_time,
                } => {
                    if let Some(p) = out.iter_mut().rev().find(|p| &p.name == name) {
                        p.pid = Some((*pid, *start_time));
                    }
                }
                Record::Exited { name, pid, .. } => {
                    if let Some(p) = out
                        .iter_mut()
                        .rev()
                        .find(|p| &p.name == name && p.pid.map(|(q, _)| q) == Some(*pid))
                    {
                        p.exited = true;
                    }
                }
                _ => {}
            }
        }
        out
    }

    pub fn supervisor(&self) -> Option<(u32, u64)> {
        self.processes()
            .into_iter()
            .find(|p| p.name == SUPERVISOR)
            .and_then(|p| p.pid)
    }

    /// Neither the process that made the lab nor its supervisor runs any more: nobody will
    /// take it down but `lab down`.
    pub fn is_orphaned(&self) -> bool {
        let (pid, start) = self.owner();
        let owner = sys::is_running(pid, start);
        let supervisor = self
            .supervisor()
            .is_some_and(|(pid, start)| sys::is_running(pid, start));
        !owner && !supervisor
    }
}

pub const SUPERVISOR: &str = "supervisor";

/// `$TMPDIR/l2tpkit-lab`.
pub fn registry_root() -> PathBuf {
    std::env::temp_dir().join("l2tpkit-lab")
}

/// Whether `name` looks like one of ours: `l2k` + 4 hex digits (+ `-…`).
pub fn is_lab_prefix(name: &str) -> bool {
    name.len() >= 7
        && name.starts_with(PREFIX_TAG)
        && name[3..7].bytes().all(|b| b.is_ascii_hexdigit())
        && (name.len() == 7 || name.as_bytes()[7] == b'-')
}

pub struct Reservation {
    pub prefix: String,
    pub run_dir: PathBuf,
}

/// Picks a fresh prefix (no namespace and no registry entry has it) and the run dir.
pub fn reserve(run_dir: Option<&Path>) -> anyhow::Result<Reservation> {
    let root = registry_root();
    std::fs::create_dir_all(&root).with_context(|| format!("{}", root.display()))?;
    let namespaces = sys::netns_list()?;
    for _ in 0..256 {
        let prefix = format!("{PREFIX_TAG}{:04x}", crate::net::os_seed() as u16);
        let dash = format!("{prefix}-");
        if namespaces.iter().any(|n| n.starts_with(&dash)) {
            continue;
        }
        let entry = root.join(&prefix);
        // The run dir holds the report key, captures (PAP passwords in clear) and control
        // sockets: its owner's alone.
        match std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .create(&entry)
        {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("{}", entry.display())),
        }
        let Some(dir) = run_dir else {
            return Ok(Reservation {
                prefix,
                run_dir: entry,
            });
        };
        let prepared = prepare_run_dir(dir).and_then(|dir| {
            std::fs::write(
                entry.join("run-dir"),
                std::os::unix::ffi::OsStrExt::as_bytes(dir.as_os_str()),
            )
            .with_context(|| format!("{}", entry.display()))?;
            Ok(dir)
        });
        return match prepared {
            Ok(dir) => Ok(Reservation {
                prefix,
                run_dir: dir,
            }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&entry);
                Err(e)
            }
        };
    }
    anyhow::bail!("no free lab prefix after 256 tries")
}

fn prepare_run_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Ok(meta) = std::fs::metadata(dir) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            // Given on purpose: said, not refused.
            eprintln!(
                "l2tpkit: warning: --run-dir {}: mode {mode:04o} lets other local users read \
                 the lab's key file, captures and logs",
                dir.display()
            );
        }
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("--run-dir {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("--run-dir {}", dir.display()))?;
    let state = dir.join(STATE_FILE);
    if state.exists() {
        if let Ok(run) = RunState::read(&state) {
            if !run.is_down() {
                anyhow::bail!(
                    "--run-dir {}: lab {} there is not down yet (`l2tpkit lab down --run-dir {}`)",
                    dir.display(),
                    run.prefix(),
                    dir.display()
                );
            }
        }
    }
    Ok(dir)
}

/// Removes the registry entry of a run that is down, when the entry only points at a run dir
/// elsewhere (`--run-dir`); a default run dir is the entry itself and stays, with its captures.
pub fn forget_pointer(prefix: &str, run_dir: &Path) {
    let entry = registry_root().join(prefix);
    let pointer = entry.join("run-dir");
    if let Ok(bytes) = std::fs::read(&pointer) {
        let target =
            PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(bytes));
        if target == run_dir {
            let _ = std::fs::remove_file(&pointer);
            let _ = std::fs::remove_dir(&entry);
        }
    }
}

/// Every run the registry knows, with its state (entries without a readable state are skipped:
/// a run that is being reserved right now, or one that never started).
pub fn list_runs() -> Vec<RunState> {
    let Ok(entries) = std::fs::read_dir(registry_root()) else {
        return Vec::new();
    };
    let mut runs = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let dir = match std::fs::read(path.join("run-dir")) {
            Ok(bytes) => PathBuf::from(
                <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(bytes),
            ),
            Err(_) => path,
        };
        if let Ok(run) = RunState::read(&dir.join(STATE_FILE)) {
            runs.push(run);
        }
    }
    runs.sort_by_key(RunState::created_unix_ms);
    runs
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_torn_last_line_is_skipped() {
        let dir = std::env::temp_dir().join(format!("l2tpkit-state-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(STATE_FILE);
        let state = StateFile::create(
            &path,
            &Record::Run {
                version: STATE_VERSION,
                prefix: "l2k0001".into(),
                topology: Topology::Fig2,
                run_dir: dir.clone(),
                created_unix_ms: 1,
                owner_pid: 1,
                owner_start_time: 2,
            },
        )
        .unwrap();
        state
            .append(&Record::Netns {
                name: "l2k0001-sw".into(),
            })
            .unwrap();
        state
            .append(&Record::Process {
                name: SUPERVISOR.into(),
                namespace: None,
                program: "l2tpkit".into(),
                args: vec![],
                log: dir.join("supervisor.log"),
            })
            .unwrap();
        state
            .append(&Record::Pid {
                name: SUPERVISOR.into(),
                pid: 7,
                start_time: 8,
            })
            .unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"kind\":\"ne").unwrap();
        let run = state.read().unwrap();
        assert_eq!(run.prefix(), "l2k0001");
        assert_eq!(run.namespaces(), ["l2k0001-sw"]);
        assert_eq!(run.supervisor(), Some((7, 8)));
        assert!(!run.is_down());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn lab_prefixes() {
        assert!(is_lab_prefix("l2k3fa1-cm"));
        assert!(is_lab_prefix("l2k3fa1"));
        assert!(!is_lab_prefix("l2kx3fa-cm"));
        assert!(!is_lab_prefix("l2k3fa12"));
        assert!(!is_lab_prefix("eth0"));
    }
}
