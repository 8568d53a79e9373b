//! The real `l2tpkit lab run` with its TUI, in a tmux pane: `p` pauses, `+` raises the rate,
//! `d` drains the selected endpoint at the master, `q` quits; the screen says so each time, the
//! terminal comes back, the run ends cleanly and the lab is gone. Needs root and tmux (CI has
//! both).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn prerequisites() -> bool {
    let root = l2tpkit::lab::sys::is_root();
    let tmux = have("tmux");
    if !(root && tmux) {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but this test needs root ({root}) and tmux ({tmux})");
        }
        eprintln!("SKIPPED: needs root and tmux");
        return false;
    }
    true
}

/// A tmux server of our own (`-L`), so nothing of anyone else's is touched; killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "run"]).stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        let out = self.cmd(&["send-keys", "-t", "run", keys]);
        assert!(out.status.success(), "send-keys {keys}: {out:?}");
    }

    /// Waits until the screen satisfies `check`; the last screen on timeout.
    fn wait_for(&self, what: &str, timeout: Duration, check: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if check(&screen) {
                return screen;
            }
            if start.elapsed() > timeout {
                panic!("waited {timeout:?} for {what}; the screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

/// N of the header's "tunnels N up of T".
fn tunnels_up(screen: &str) -> u64 {
    screen
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("tunnels "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn wait_for_file(path: &Path, timeout: Duration) -> Option<String> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.ends_with('\n') {
                return Some(text);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

#[test]
fn lab_run_tui_pause_rate_drain_quit_in_tmux() {
    if !prerequisites() {
        return;
    }
    let run_dir: PathBuf = std::env::temp_dir().join(format!("l2tpkit-tui-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir).unwrap();
    let exit_file = run_dir.join("exit-code");
    // Slow enough that the run is still going when the keys arrive; --hold bounds it anyway.
    let command = format!(
        "{bin} lab run --tui --run-dir {dir}/lab --tunnels 600 --sessions-per-tunnel 1 \
         --initiators 3 --rate 20 --hold 20 2> {dir}/stderr; echo $? > {exit}; sleep 120",
        bin = env!("CARGO_BIN_EXE_l2tpkit"),
        dir = run_dir.display(),
        exit = exit_file.display(),
    );
    let tmux = Tmux {
        socket: format!("l2tpkit-test-{}", std::process::id()),
    };
    let out = tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "run",
        "-x",
        "110",
        "-y",
        "36",
        &command,
    ]);
    assert!(out.status.success(), "tmux new-session: {out:?}");
    // The TUI is up once the lab is: a row per endpoint, the master's view in it.
    tmux.wait_for(
        "the TUI with three endpoints",
        Duration::from_secs(60),
        |s| s.contains("te1") && s.contains("te3") && s.contains("in service"),
    );
    // Some tunnels up first, so that the run has something to verify when it is cut short.
    tmux.wait_for("30 tunnels up", Duration::from_secs(30), |s| {
        tunnels_up(s) >= 30
    });

    tmux.keys("p");
    tmux.wait_for("PAUSED in the header", Duration::from_secs(5), |s| {
        s.contains("PAUSED")
    });
    tmux.keys("p");
    tmux.wait_for("the pause lifted", Duration::from_secs(5), |s| {
        !s.contains("PAUSED")
    });

    tmux.keys("+");
    // 20 × 1.25
    tmux.wait_for("target 25.0/s", Duration::from_secs(5), |s| {
        s.contains("25.0/s")
    });

    tmux.keys("d");
    // The first row is selected; the master says it is draining within a poll or two.
    let drained = tmux.wait_for("te1 draining", Duration::from_secs(10), |s| {
        s.lines()
            .any(|l| l.contains("te1") && l.contains("draining"))
    });
    assert!(
        drained
            .lines()
            .filter(|l| l.contains("te2") || l.contains("te3"))
            .all(|l| !l.contains("draining")),
        "only te1 was drained:\n{drained}"
    );

    tmux.keys("q");
    let code = wait_for_file(&exit_file, Duration::from_secs(90)).unwrap_or_else(|| {
        panic!(
            "lab run did not exit after q; the screen:\n{}",
            tmux.screen()
        )
    });
    let stderr = std::fs::read_to_string(run_dir.join("stderr")).unwrap_or_default();
    let screen = tmux.screen();
    assert_eq!(code.trim(), "0", "exit code after q\n{screen}\n{stderr}");
    // The terminal is back: the alternate screen is gone and the final table is on the normal
    // one.
    assert!(screen.contains("lab run:"), "{screen}");
    assert!(
        !screen.contains("q quit"),
        "the TUI is still on the screen:\n{screen}"
    );
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("lab/summary.json")).expect("summary.json"),
    )
    .expect("summary is JSON");
    assert_eq!(summary["stopped_by_user"], true, "{summary}");
    assert_eq!(
        summary["verify_conforming"], summary["verify_tunnels"],
        "{summary}"
    );
    // The drain reached the master and stayed: its final status says so.
    let master: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("lab/master-status.json")).expect("master status"),
    )
    .expect("master status is JSON");
    assert_eq!(master["endpoints"][0]["name"], "te1");
    assert_eq!(master["endpoints"][0]["admin"], "drained", "{master}");
    let lab: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("lab/lab.json")).unwrap())
            .unwrap();
    let prefix = lab["prefix"].as_str().expect("prefix").to_string();
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&netns.stdout).contains(&prefix),
        "namespaces of {prefix} left behind"
    );
    let _ = std::fs::remove_dir_all(&run_dir);
}
