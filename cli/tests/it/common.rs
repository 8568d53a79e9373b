//! What the lab tests share: whether this machine can run a lab, and small `ip` look-ups.

use l2tpkit::lab::sys;

/// True when the lab can run here (root, `ip`; it captures with its own packet sockets). Otherwise the test skips, saying
/// why, or under `CI=true` fails: a missing prerequisite in CI is never a silent skip.
pub fn lab_available(test: &str) -> bool {
    let mut missing = Vec::new();
    if !sys::is_root() {
        missing.push("root");
    }
    if !sys::have("ip", "-V") {
        missing.push("ip (iproute2)");
    }
    if missing.is_empty() {
        return true;
    }
    let reason = format!("{test}: the lab needs {}", missing.join(", "));
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    false
}

/// The MAC address of `interface` in `namespace`.
#[allow(dead_code)] // not every test file looks one up
pub fn mac_of(namespace: &str, interface: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(
        &sys::ip(&["-n", namespace, "-j", "link", "show", interface]).expect("ip link"),
    )
    .expect("ip -j");
    json[0]["address"].as_str().expect("a MAC").to_string()
}

/// Polls `probe` every 50 ms until what it returns satisfies `done`, and returns that. After
/// `timeout` it panics, naming `what` was awaited and the last thing seen: a readiness wait
/// with a deadline, never a blind sleep.
#[allow(dead_code)] // not every test file waits
pub fn wait_until<T: std::fmt::Debug>(
    what: &str,
    timeout: std::time::Duration,
    mut probe: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let start = std::time::Instant::now();
    loop {
        let seen = probe();
        if done(&seen) {
            return seen;
        }
        assert!(
            start.elapsed() < timeout,
            "waited {timeout:?} for {what}; last seen: {seen:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// [`wait_until`] for a plain condition.
#[allow(dead_code)]
pub fn wait_for(what: &str, timeout: std::time::Duration, mut done: impl FnMut() -> bool) {
    wait_until(what, timeout, &mut done, |held| *held);
}

/// A test's scratch directory: removed when the test passes, kept (and its path printed) when
/// it fails, for a look at what it holds.
#[allow(dead_code)]
pub struct Scratch(pub std::path::PathBuf);

impl Scratch {
    /// Takes charge of `dir`, which need not exist yet.
    #[allow(dead_code)]
    pub fn new(dir: impl Into<std::path::PathBuf>) -> Scratch {
        Scratch(dir.into())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test failed: scratch kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// `l2tpkit lab run --no-tui --json ARGS --run-dir DIR`, with `env` added to its environment:
/// its JSON summary. A failed run fails the test with its output (stderr's last lines).
#[allow(dead_code)] // not every test file runs a lab
pub fn lab_run_json(
    args: &[&str],
    run_dir: &std::path::Path,
    env: &[(&str, &std::ffi::OsStr)],
) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_l2tpkit"))
        .envs(env.iter().copied())
        .args(["lab", "run", "--no-tui", "--json"])
        .args(args)
        .arg("--run-dir")
        .arg(run_dir)
        .output()
        .expect("run l2tpkit lab run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
    assert!(
        out.status.success(),
        "lab run failed:\n{stdout}\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    serde_json::from_str(&stdout).expect("JSON summary")
}

/// Runs the `l2tpkit` binary: exit code, stdout, stderr.
#[allow(dead_code)] // not every test file runs it
pub fn l2tpkit(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_l2tpkit"))
        .args(args)
        .output()
        .expect("run l2tpkit");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Our endpoint on `ip` (any port), named `host_name`, for `seconds`, on a thread that ends
/// with its --duration; returns its address once it listens.
#[allow(dead_code)] // not every test file starts one
pub fn endpoint(ip: &str, host_name: &str, seconds: f64) -> std::net::SocketAddrV4 {
    use std::time::Duration;
    let args = l2tpkit::endpoint::EndpointArgs {
        listen: format!("{ip}:0").parse().unwrap(),
        host_name: host_name.to_string(),
        duration: Some(Duration::from_secs_f64(seconds)),
        ..l2tpkit::endpoint::EndpointArgs::default()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        l2tpkit::endpoint::execute(&args, |addr| {
            let _ = tx.send(addr);
        })
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the endpoint is listening")
}
