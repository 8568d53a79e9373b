//! The per-lab supervisor: `l2tpkit lab supervise`, the parent of every process a lab starts.
//!
//! Why a process of its own: `lab up` returns and leaves the lab up, and PID 1 on these machines
//! does not reap orphans, so a capture or role whose parent had exited would stay a zombie once
//! killed. The supervisor is their parent for the lab's whole life: it starts them on request,
//! reaps every one that exits (and notes it in the state file), and on SIGTERM, SIGINT or a
//! `shutdown` request stops them all by PID (SIGINT, up to `sys::TERM_GRACE` (42 s), SIGKILL) and waits on them.
//! When the owner holds the lab in-process (`Lab::up`), the owner is the supervisor's parent and
//! reaps it in turn: nothing is left, not even a zombie. After `lab up` returns, the supervisor
//! itself is an orphan; when `lab down` stops it, it is a zombie until PID 1 reaps it.
//!
//! Protocol: JSON lines on its stdin (requests) and stdout (responses), each with an `id`.
//! End of stdin means the owner died, and the supervisor stops everything, unless the owner
//! sent `detach` first (that is what `lab up` does before it returns).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::state::{Record, StateFile, STATE_FILE, SUPERVISOR};
use super::sys;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Start `program args…` (inside `namespace` via `ip netns exec`, when given), stdout and
    /// stderr appended to `log`.
    Spawn {
        name: String,
        namespace: Option<String>,
        program: String,
        args: Vec<String>,
        log: PathBuf,
    },
    /// Stop one process by name (SIGINT, up to `sys::TERM_GRACE` (42 s), SIGKILL) and reap it.
    Stop { name: String },
    /// Kill one process by name at once (SIGKILL, no clean shutdown: a role that dies) and
    /// reap it.
    Kill { name: String },
    /// The owner is about to go away on purpose: keep running after stdin closes.
    Detach,
    /// Stop every process, reap them, answer, exit.
    Shutdown,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Envelope {
    id: u64,
    #[serde(flatten)]
    request: Request,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Response {
    pub id: u64,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How long the owner waits for the supervisor to come up or to answer a request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// A shutdown stops processes with the full grace, then kills; this bounds the whole of it.
const SHUTDOWN_TIMEOUT: Duration = sys::TERM_GRACE
    .saturating_add(sys::KILL_GRACE)
    .saturating_add(Duration::from_secs(5));

// ---- the supervisor process ----------------------------------------------------------------

struct Supervised {
    name: String,
    pid: u32,
    child: Child,
}

/// The body of `l2tpkit lab supervise --run-dir DIR`.
pub fn supervise(run_dir: &Path) -> anyhow::Result<ExitCode> {
    // SIGHUP is ignored: a closing terminal must not take a detached lab's processes with it.
    sys::install_interrupt_handler(false)?;
    let state = StateFile::open(&run_dir.join(STATE_FILE));
    let (tx, requests) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut out = std::io::stdout();
    reply(
        &mut out,
        &Response {
            ok: true,
            pid: Some(std::process::id()),
            ..Response::default()
        },
    );
    let mut children: Vec<Supervised> = Vec::new();
    let mut detached = false;
    let mut owner_connected = true;
    loop {
        if sys::interrupted() {
            eprintln!(
                "supervisor: signalled, stopping {} processes",
                children.len()
            );
            stop_all(&mut children, &state);
            return Ok(ExitCode::SUCCESS);
        }
        if owner_connected {
            match requests.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    let envelope: Envelope = match serde_json::from_str(&line) {
                        Ok(e) => e,
                        Err(e) => {
                            eprintln!("supervisor: bad request {line:?}: {e}");
                            continue;
                        }
                    };
                    let id = envelope.id;
                    let mut response = match envelope.request {
                        Request::Spawn {
                            name,
                            namespace,
                            program,
                            args,
                            log,
                        } => spawn(&mut children, &state, name, namespace, program, args, &log),
                        Request::Stop { name } => stop_one(&mut children, &state, &name),
                        Request::Kill { name } => kill_one(&mut children, &state, &name),
                        Request::Detach => {
                            detached = true;
                            Response {
                                ok: true,
                                ..Response::default()
                            }
                        }
                        Request::Shutdown => {
                            stop_all(&mut children, &state);
                            reply(
                                &mut out,
                                &Response {
                                    id,
                                    ok: true,
                                    ..Response::default()
                                },
                            );
                            return Ok(ExitCode::SUCCESS);
                        }
                    };
                    response.id = id;
                    reply(&mut out, &response);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    owner_connected = false;
                    if !detached {
                        eprintln!("supervisor: the owner went away without detaching: stopping");
                        stop_all(&mut children, &state);
                        return Ok(ExitCode::SUCCESS);
                    }
                }
            }
        } else {
            std::thread::sleep(Duration::from_millis(100));
        }
        reap(&mut children, &state);
    }
}

fn reply(out: &mut impl Write, response: &Response) {
    // After `detach` the owner is gone and the pipe is closed: nothing to do about it.
    if let Ok(mut text) = serde_json::to_string(response) {
        text.push('\n');
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

fn failure(error: String) -> Response {
    Response {
        ok: false,
        error: Some(error),
        ..Response::default()
    }
}

fn spawn(
    children: &mut Vec<Supervised>,
    state: &StateFile,
    name: String,
    namespace: Option<String>,
    program: String,
    args: Vec<String>,
    log: &Path,
) -> Response {
    if children.iter().any(|c| c.name == name) {
        return failure(format!("a process named {name:?} already runs"));
    }
    let log_file = match File::options().create(true).append(true).open(log) {
        Ok(f) => f,
        Err(e) => return failure(format!("{}: {e}", log.display())),
    };
    let err_file = match log_file.try_clone() {
        Ok(f) => f,
        Err(e) => return failure(format!("{}: {e}", log.display())),
    };
    let mut command = match &namespace {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, &program]);
            c
        }
        None => Command::new(&program),
    };
    // Its own process group: signals meant for the supervisor (or a terminal's Ctrl-C) never
    // reach it; it is stopped by PID.
    command
        .args(&args)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(err_file)
        .process_group(0);
    let child = match command.spawn() {
        Ok(c) => c,
        Err(e) => return failure(format!("starting {program}: {e}")),
    };
    let pid = child.id();
    // The start time is fixed at fork, so reading it after `exec` or even after exit is fine.
    let start_time = sys::proc_stat(pid).map(|(_, t)| t).unwrap_or(0);
    let _ = state.append(&Record::Pid {
        name: name.clone(),
        pid,
        start_time,
    });
    eprintln!(
        "supervisor: started {name} pid {pid} in {}: {program} {}",
        namespace.as_deref().unwrap_or("the host namespace"),
        args.join(" ")
    );
    children.push(Supervised { name, pid, child });
    Response {
        ok: true,
        pid: Some(pid),
        start_time: Some(start_time),
        ..Response::default()
    }
}

fn reap(children: &mut Vec<Supervised>, state: &StateFile) {
    children.retain_mut(|c| match c.child.try_wait() {
        Ok(Some(status)) => {
            eprintln!("supervisor: {} (pid {}) exited: {status}", c.name, c.pid);
            note_exit(state, c, &status.to_string());
            false
        }
        Ok(None) => true,
        Err(e) => {
            eprintln!("supervisor: waiting on {} (pid {}): {e}", c.name, c.pid);
            true
        }
    });
}

fn note_exit(state: &StateFile, c: &Supervised, status: &str) {
    let _ = state.append(&Record::Exited {
        name: c.name.clone(),
        pid: c.pid,
        status: status.to_string(),
    });
}

fn stop_one(children: &mut Vec<Supervised>, state: &StateFile, name: &str) -> Response {
    let Some(at) = children.iter().position(|c| c.name == name) else {
        return failure(format!("no running process named {name:?}"));
    };
    let mut one = vec![children.remove(at)];
    let statuses = stop(&mut one, state);
    Response {
        ok: true,
        status: statuses.into_iter().next(),
        ..Response::default()
    }
}

fn kill_one(children: &mut Vec<Supervised>, state: &StateFile, name: &str) -> Response {
    let Some(at) = children.iter().position(|c| c.name == name) else {
        return failure(format!("no running process named {name:?}"));
    };
    let mut c = children.remove(at);
    let _ = sys::signal_to_end(c.pid, "KILL");
    let mut status = sys::wait_timeout(&mut c.child, sys::KILL_GRACE);
    if !matches!(status, Ok(Some(_))) {
        let _ = c.child.kill();
        status = sys::wait_timeout(&mut c.child, sys::KILL_GRACE);
    }
    let status = match status {
        Ok(Some(status)) => status.to_string(),
        _ => "still running after SIGKILL".to_string(),
    };
    eprintln!("supervisor: killed {} (pid {}): {status}", c.name, c.pid);
    note_exit(state, &c, &status);
    Response {
        ok: true,
        status: Some(status),
        ..Response::default()
    }
}

fn stop_all(children: &mut Vec<Supervised>, state: &StateFile) {
    let _ = stop(children, state);
    children.clear();
}

/// SIGINT to each by PID (the lab's roles and captures take it as "finish cleanly": final status
/// files, flushed pcaps, StopCCNs), up to [`sys::TERM_GRACE`] for all of them together, SIGKILL
/// to the rest, and a bounded wait on each: every stopped child is reaped here.
fn stop(children: &mut [Supervised], state: &StateFile) -> Vec<String> {
    let mut statuses: Vec<Option<String>> = vec![None; children.len()];
    for c in children.iter_mut() {
        if matches!(c.child.try_wait(), Ok(None)) {
            let _ = sys::signal_to_end(c.pid, "INT");
        }
    }
    let deadline = Instant::now() + sys::TERM_GRACE;
    loop {
        for (c, s) in children.iter_mut().zip(statuses.iter_mut()) {
            if s.is_none() {
                if let Ok(Some(status)) = c.child.try_wait() {
                    *s = Some(status.to_string());
                }
            }
        }
        if statuses.iter().all(Option::is_some) || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for (c, s) in children.iter_mut().zip(statuses.iter_mut()) {
        if s.is_none() {
            eprintln!(
                "supervisor: {} (pid {}) ignored SIGINT: SIGKILL",
                c.name, c.pid
            );
            let _ = c.child.kill();
            *s = Some(match sys::wait_timeout(&mut c.child, sys::KILL_GRACE) {
                Ok(Some(status)) => status.to_string(),
                _ => "still running after SIGKILL".to_string(),
            });
        }
    }
    let statuses: Vec<String> = statuses
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect();
    for (c, s) in children.iter().zip(&statuses) {
        eprintln!("supervisor: stopped {} (pid {}): {s}", c.name, c.pid);
        note_exit(state, c, s);
    }
    statuses
}

// ---- the owner's side ----------------------------------------------------------------------

/// The owner's handle on its supervisor: the supervisor is its child.
pub struct Supervisor {
    child: Child,
    pid: u32,
    stdin: Option<ChildStdin>,
    responses: Receiver<String>,
    next_id: u64,
}

impl Supervisor {
    /// Records, starts and waits for the supervisor of the run in `run_dir`.
    pub fn start(
        binary: &Path,
        run_dir: &Path,
        prefix: &str,
        state: &StateFile,
    ) -> anyhow::Result<Supervisor> {
        let log = run_dir.join("supervisor.log");
        let args: Vec<String> = vec![
            "lab".into(),
            "supervise".into(),
            "--run-dir".into(),
            run_dir.display().to_string(),
            // Only so that `ps` shows whose supervisor it is.
            "--prefix".into(),
            prefix.into(),
        ];
        state.append(&Record::Process {
            name: SUPERVISOR.into(),
            namespace: None,
            program: binary.display().to_string(),
            args: args.clone(),
            log: log.clone(),
        })?;
        let log_file = File::create(&log).with_context(|| format!("{}", log.display()))?;
        let mut child = Command::new(binary)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            // Not in the terminal's foreground group: `lab up`'s own Ctrl-C handling decides.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting the supervisor {}", binary.display()))?;
        let pid = child.id();
        let start_time = sys::proc_stat(pid).map(|(_, t)| t).unwrap_or(0);
        let recorded = state.append(&Record::Pid {
            name: SUPERVISOR.into(),
            pid,
            start_time,
        });
        let stdout = child.stdout.take();
        let stdin = child.stdin.take();
        let (tx, responses) = mpsc::channel();
        if let Some(stdout) = stdout {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        let mut supervisor = Supervisor {
            child,
            pid,
            stdin,
            responses,
            next_id: 1,
        };
        let ready = recorded.and_then(|()| {
            supervisor
                .answer(0, ANSWER_TIMEOUT)
                .with_context(|| format!("the supervisor did not start (see {})", log.display()))
        });
        if let Err(e) = ready {
            // Nothing runs under it yet: killing and reaping it is all there is to undo.
            let _ = supervisor.child.kill();
            let _ = sys::wait_timeout(&mut supervisor.child, sys::KILL_GRACE);
            return Err(e);
        }
        Ok(supervisor)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn request(&mut self, request: Request, timeout: Duration) -> anyhow::Result<Response> {
        let id = self.next_id;
        self.next_id += 1;
        let mut text = serde_json::to_string(&Envelope { id, request })?;
        text.push('\n');
        let stdin = self.stdin.as_mut().context("the supervisor is detached")?;
        stdin
            .write_all(text.as_bytes())
            .and_then(|()| stdin.flush())
            .context("the supervisor is gone")?;
        let response = self.answer(id, timeout)?;
        if !response.ok {
            anyhow::bail!("{}", response.error.unwrap_or_else(|| "failed".to_string()));
        }
        Ok(response)
    }

    /// The response with `id`; answers to earlier requests that timed out are dropped.
    fn answer(&mut self, id: u64, timeout: Duration) -> anyhow::Result<Response> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.responses.recv_timeout(left) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => {
                    anyhow::bail!(
                        "supervisor (pid {}): no answer within {timeout:?}",
                        self.pid
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    anyhow::bail!("supervisor (pid {}) exited", self.pid)
                }
            };
            match serde_json::from_str::<Response>(&line) {
                Ok(r) if r.id == id => return Ok(r),
                _ => {}
            }
        }
    }

    /// Starts a process under the supervisor; `(pid, start_time)`.
    pub fn spawn(
        &mut self,
        name: &str,
        namespace: Option<&str>,
        program: &str,
        args: &[String],
        log: &Path,
    ) -> anyhow::Result<(u32, u64)> {
        let r = self.request(
            Request::Spawn {
                name: name.into(),
                namespace: namespace.map(str::to_string),
                program: program.into(),
                args: args.to_vec(),
                log: log.to_path_buf(),
            },
            ANSWER_TIMEOUT,
        )?;
        Ok((r.pid.unwrap_or(0), r.start_time.unwrap_or(0)))
    }

    /// Stops one process by name; its exit status.
    pub fn stop(&mut self, name: &str) -> anyhow::Result<String> {
        let r = self.request(Request::Stop { name: name.into() }, SHUTDOWN_TIMEOUT)?;
        Ok(r.status.unwrap_or_default())
    }

    /// Kills one process by name (SIGKILL) and reaps it; its exit status.
    pub fn kill(&mut self, name: &str) -> anyhow::Result<String> {
        let r = self.request(Request::Kill { name: name.into() }, SHUTDOWN_TIMEOUT)?;
        Ok(r.status.unwrap_or_default())
    }

    /// Lets the supervisor outlive us; it keeps running its processes until `lab down`.
    /// Dropping the handle afterwards (pipes and `Child`) neither kills nor waits.
    pub fn detach(&mut self) -> anyhow::Result<()> {
        self.request(Request::Detach, ANSWER_TIMEOUT).map(|_| ())
    }

    /// Stops every process and the supervisor, and reaps the supervisor. Bounded.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        let asked = self.request(Request::Shutdown, SHUTDOWN_TIMEOUT);
        self.stdin = None;
        match sys::wait_timeout(&mut self.child, Duration::from_secs(3)) {
            // Gone, one way or another (also when `lab down` stopped it first): it stops its
            // children before it exits, and the caller checks each recorded PID anyway.
            Ok(Some(_)) => Ok(()),
            _ => {
                let _ = self.child.kill();
                let _ = sys::wait_timeout(&mut self.child, sys::KILL_GRACE);
                anyhow::bail!(
                    "supervisor (pid {}) did not stop by itself: killed ({})",
                    self.pid,
                    asked.err().map(|e| e.to_string()).unwrap_or_default()
                )
            }
        }
    }
}
