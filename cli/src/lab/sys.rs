//! The system tools the lab is made with (`ip`, `sysctl`, `kill`), always with a timeout; `/proc`
//! to tell whether a recorded PID is still the process we started; and the interrupt flag.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;

/// No `ip` or `sysctl` call here takes more than milliseconds; this only bounds a wedged one.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// SIGTERM (or SIGINT), then this long, then SIGKILL. Longer than a role's own teardown with
/// the RFC's retransmission defaults (`ReliableConfig::teardown_bound`, 39 s): an endpoint
/// whose StopCCNs go unacknowledged uses all of it, and a SIGKILL at the same moment would
/// lose its final counts. A process that is done exits at once; only a stuck one waits this.
pub const TERM_GRACE: Duration = Duration::from_secs(42);
/// After SIGKILL a process is gone at once unless it is stuck in the kernel.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `program args…` to completion or `timeout` (then SIGKILL and reap). Its own process
/// group: a Ctrl-C meant for `lab up` must not kill the `ip` calls that clean up after it.
pub fn run(
    program: &str,
    args: &[&str],
    stdin: Option<String>,
    timeout: Duration,
) -> anyhow::Result<Output> {
    let shown = || format!("`{program} {}`", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", shown()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        std::thread::spawn(move || {
            let _ = pipe.write_all(text.as_bytes());
        });
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    match wait_timeout(&mut child, timeout).with_context(shown)? {
        Some(status) => Ok(Output {
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        }),
        None => {
            let _ = child.kill();
            let _ = wait_timeout(&mut child, KILL_GRACE);
            anyhow::bail!("{} did not finish within {timeout:?}", shown())
        }
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

/// `Child::wait` with a bound: `None` if it is still running at the deadline.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(25));
    }
}

/// `ip ARGS`, failing with its stderr.
pub fn ip(args: &[&str]) -> anyhow::Result<String> {
    let out = run("ip", args, None, COMMAND_TIMEOUT)?;
    if !out.status.success() {
        anyhow::bail!("`ip {}`: {}", args.join(" "), out.stderr.trim());
    }
    Ok(out.stdout)
}

/// `ip -n NS -batch -` with `lines`; with `force`, goes on past failing lines (for teardown).
pub fn ip_batch(namespace: &str, lines: &[String], force: bool) -> anyhow::Result<()> {
    let mut args = vec!["-n", namespace];
    if force {
        args.push("-force");
    }
    args.extend(["-batch", "-"]);
    let mut text = lines.join("\n");
    text.push('\n');
    let out = run("ip", &args, Some(text), COMMAND_TIMEOUT)?;
    if !out.status.success() {
        anyhow::bail!(
            "`ip -n {namespace} -batch -`: {} (batch: {})",
            out.stderr.trim(),
            lines.join("; ")
        );
    }
    Ok(())
}

/// Sets sysctls inside `namespace` (the net.* tree is per namespace).
pub fn sysctl(namespace: &str, settings: &[(String, String)]) -> anyhow::Result<()> {
    if settings.is_empty() {
        return Ok(());
    }
    let pairs: Vec<String> = settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut args = vec!["netns", "exec", namespace, "sysctl", "-q", "-w"];
    args.extend(pairs.iter().map(String::as_str));
    let out = run("ip", &args, None, COMMAND_TIMEOUT)?;
    if !out.status.success() || !out.stderr.trim().is_empty() {
        anyhow::bail!("sysctl in {namespace}: {}", out.stderr.trim());
    }
    Ok(())
}

/// Reads one sysctl inside `namespace`.
pub fn sysctl_get(namespace: &str, key: &str) -> anyhow::Result<String> {
    let out = run(
        "ip",
        &["netns", "exec", namespace, "sysctl", "-n", key],
        None,
        COMMAND_TIMEOUT,
    )?;
    if !out.status.success() {
        anyhow::bail!("sysctl {key} in {namespace}: {}", out.stderr.trim());
    }
    Ok(out.stdout.trim().to_string())
}

/// The named network namespaces (`ip netns list`).
pub fn netns_list() -> anyhow::Result<Vec<String>> {
    Ok(ip(&["netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// The interface names of a namespace.
pub fn link_names(namespace: &str) -> anyhow::Result<Vec<String>> {
    Ok(ip(&["-n", namespace, "-o", "link", "show"])?
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .collect())
}

/// A process as `/proc/PID/stat` shows it: state letter and start time (clock ticks since boot),
/// which together with the PID name one process even after the PID is reused.
pub fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start_time = fields.get(19)?.parse().ok()?;
    Some((state, start_time))
}

/// Still running, and still the process we recorded (not a zombie, not a reused PID).
pub fn is_running(pid: u32, start_time: u64) -> bool {
    matches!(proc_stat(pid), Some((state, t)) if t == start_time && state != 'Z' && state != 'X')
}

/// Sends `signal` (a name: TERM, KILL, INT) to exactly `pid`.
pub fn send_signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let pid = pid.to_string();
    let out = run("kill", &["-s", signal, &pid], None, COMMAND_TIMEOUT)?;
    if !out.status.success() {
        anyhow::bail!("kill -s {signal} {pid}: {}", out.stderr.trim());
    }
    Ok(())
}

/// Sends `signal` (INT, TERM, KILL) to end the process `pid`. A process running `unshare
/// --fork` blocks SIGINT and SIGTERM while it waits for its child: the signal goes to that
/// child, the init of its PID namespace (the lab's xl2tpd), whose end ends `unshare`, which
/// reaps it (SIGKILL to `unshare` itself would orphan it, a zombie until PID 1 reaps it).
pub fn signal_to_end(pid: u32, signal: &str) -> anyhow::Result<()> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim_end() == "unshare" {
        let children = children(pid);
        if !children.is_empty() {
            for child in children {
                send_signal(child, signal)?;
            }
            return Ok(());
        }
    }
    send_signal(pid, signal)
}

/// The children of `pid` now, as its threads' `/proc/PID/task/TID/children` list them.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Stops a recorded process that is not our child: SIGTERM ([`signal_to_end`]), up to
/// [`TERM_GRACE`], SIGKILL, up to [`KILL_GRACE`]. Its parent reaps it. `Ok(false)` if it was
/// not running.
pub fn terminate_foreign(pid: u32, start_time: u64) -> anyhow::Result<bool> {
    if !is_running(pid, start_time) {
        return Ok(false);
    }
    let _ = signal_to_end(pid, "TERM");
    if wait_gone(pid, start_time, TERM_GRACE) {
        return Ok(true);
    }
    if is_running(pid, start_time) {
        let _ = signal_to_end(pid, "KILL");
    }
    if wait_gone(pid, start_time, KILL_GRACE) {
        return Ok(true);
    }
    anyhow::bail!("pid {pid} still runs after SIGKILL")
}

fn wait_gone(pid: u32, start_time: u64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while is_running(pid, start_time) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Moves the calling thread (only it) into the named network namespace: sockets it opens from
/// then on live there. The lab runs its in-process LAC this way, so the TUI in the main thread
/// reads the LAC's live figures without a pipe in between.
pub fn enter_netns(name: &str) -> anyhow::Result<()> {
    Ok(netio::netns::enter(name)?)
}

/// Whether we run as root (effective UID 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Whether `program` can be started (it answers `--version` or `-V`).
pub fn have(program: &str, version_flag: &str) -> bool {
    run(program, &[version_flag], None, Duration::from_secs(5)).is_ok()
}

// ---- interrupts ----------------------------------------------------------------------------

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The error a step returns after SIGINT/SIGTERM: the caller cleans up and exits 130.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Fails with [`Interrupted`] once a signal came.
pub fn checkpoint() -> anyhow::Result<()> {
    if interrupted() {
        return Err(Interrupted.into());
    }
    Ok(())
}

/// Catches SIGINT and SIGTERM (and SIGHUP: an interrupt when `hangup_interrupts`, else
/// ignored) for the rest of the process's life: they set the flag that [`checkpoint`] reads,
/// instead of killing the process half-way through making or removing a lab.
pub fn install_interrupt_handler(hangup_interrupts: bool) -> anyhow::Result<()> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    std::thread::Builder::new()
        .name("lab-signals".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            runtime.block_on(async move {
                use tokio::signal::unix::{signal, SignalKind};
                let streams = (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                    signal(SignalKind::hangup()),
                );
                let (mut int, mut term, mut hup) = match streams {
                    (Ok(a), Ok(b), Ok(c)) => (a, b, c),
                    _ => {
                        let _ = ready_tx.send(Err("cannot catch signals".into()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                loop {
                    tokio::select! {
                        _ = int.recv() => INTERRUPTED.store(true, Ordering::SeqCst),
                        _ = term.recv() => INTERRUPTED.store(true, Ordering::SeqCst),
                        _ = hup.recv() => if hangup_interrupts {
                            INTERRUPTED.store(true, Ordering::SeqCst)
                        },
                    }
                }
            });
        })
        .context("starting the signal thread")?;
    match ready_rx.recv_timeout(Duration::from_secs(5)) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => anyhow::bail!("installing signal handlers: {e}"),
        Err(_) => anyhow::bail!("installing signal handlers: no answer within 5 s"),
    }
}

/// Test hook: `L2TPKIT_LAB_STEP_DELAY_MS` slows `lab up` down after every object it makes, so a
/// test can interrupt it half-way. Interruptible, like every other wait.
pub fn step() -> anyhow::Result<()> {
    checkpoint()?;
    let delay = std::env::var("L2TPKIT_LAB_STEP_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        .min(10_000);
    let deadline = Instant::now() + Duration::from_millis(delay);
    while Instant::now() < deadline {
        checkpoint()?;
        std::thread::sleep(Duration::from_millis(10));
    }
    checkpoint()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grace_outlasts_a_default_teardown() {
        let bound = l2tp::conn::reliable::ReliableConfig::default().teardown_bound();
        assert!(TERM_GRACE > bound, "{TERM_GRACE:?} vs {bound:?}");
    }

    #[test]
    fn our_own_stat_reads() {
        let (state, start) = proc_stat(std::process::id()).unwrap();
        assert!(matches!(state, 'R' | 'S'));
        assert!(is_running(std::process::id(), start));
        assert!(!is_running(std::process::id(), start + 1));
    }

    #[test]
    fn a_wedged_command_is_bounded() {
        let started = Instant::now();
        let err = run("sleep", &["10"], None, Duration::from_millis(200)).err();
        assert!(err.unwrap().to_string().contains("did not finish"));
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
