//! Shared helpers for the end-to-end tests in `tests/tests/`: finding the peers, running tshark
//! as the independent decoder, and locating the repository's fixtures.

use std::path::{Path, PathBuf};
use std::process::Command;

pub mod l2tpns;
pub mod netns;
pub mod proc;
pub mod radius;
pub mod xl2tpd;

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// True when `tool` is on PATH. Under `CI=true` a missing tool fails the test loudly; elsewhere
/// the test prints why it does nothing and returns.
pub fn require(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false);
    require_that(
        found,
        &format!("`{tool}` is not installed (scripts/test installs it as root)"),
    )
}

/// `ok`, or the test cannot run because of `why`: under `CI=true` that fails the test loudly;
/// elsewhere the test prints `SKIPPED: why` and returns.
pub fn require_that(ok: bool, why: &str) -> bool {
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but {why}");
        }
        eprintln!("SKIPPED: {why}");
    }
    ok
}

/// One L2TP packet as tshark decodes it (the field list of PEERS.md plus the frame number).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TsharkPacket {
    pub frame: u64,
    pub is_control: bool,
    pub length: Option<u16>,
    pub tunnel: u16,
    pub session: u16,
    pub ns: Option<u16>,
    pub nr: Option<u16>,
    pub message_type: Option<u16>,
    /// `l2tp.avp.type`: tshark lists only IETF AVPs it did not have to unhide.
    pub avp_types: Vec<u16>,
    /// `l2tp.avp.mandatory` and `l2tp.avp.hidden`: one entry per AVP, vendor and hidden ones too.
    pub mandatory: Vec<bool>,
    pub hidden: Vec<bool>,
    pub malformed: bool,
    pub expert: String,
    /// The IPv4 source: which side sent it.
    pub src: Option<std::net::Ipv4Addr>,
}

const FIELDS: &[&str] = &[
    "frame.number",
    "l2tp.type",
    "l2tp.length",
    "l2tp.tunnel",
    "l2tp.session",
    "l2tp.Ns",
    "l2tp.Nr",
    "l2tp.avp.message_type",
    "l2tp.avp.type",
    "l2tp.avp.mandatory",
    "l2tp.avp.hidden",
    "_ws.malformed",
    "_ws.expert.message",
    "ip.src",
];

/// Runs tshark on `path` (L2TP on UDP `port`) with a display filter and the fields given; one
/// row of columns per frame, several occurrences of a field joined by commas.
pub fn tshark_fields(path: &Path, port: u16, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut command = Command::new("tshark");
    command
        .arg("-n")
        .arg("-r")
        .arg(path)
        .args(["-d", &format!("udp.port=={port},l2tp")])
        .args(["-Y", filter, "-T", "fields", "-E", "separator=/t"])
        .args(["-E", "aggregator=,", "-E", "occurrence=a"]);
    for field in fields {
        command.arg("-e").arg(field);
    }
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("running tshark on {}: {err}", path.display()));
    assert!(
        output.status.success(),
        "tshark failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| line.split('\t').map(str::to_string).collect())
        .collect()
}

/// Runs tshark over a capture and returns every L2TP packet it sees, on `port`.
pub fn tshark_l2tp(path: &Path, port: u16) -> Vec<TsharkPacket> {
    tshark_fields(path, port, "l2tp", FIELDS)
        .iter()
        .map(|cols| parse_cols(cols))
        .collect()
}

#[cfg(test)]
fn parse_line(line: &str) -> TsharkPacket {
    let cols: Vec<String> = line.split('|').map(str::to_string).collect();
    parse_cols(&cols)
}

fn parse_cols(cols: &[String]) -> TsharkPacket {
    let col = |i: usize| cols.get(i).map_or("", String::as_str);
    let num = |s: &str| -> Option<u16> { s.split(',').next().and_then(|v| v.parse().ok()) };
    let list = |s: &str| -> Vec<u16> { s.split(',').filter_map(|v| v.parse().ok()).collect() };
    let bools = |s: &str| -> Vec<bool> {
        s.split(',')
            .filter(|v| !v.is_empty())
            .map(|v| v == "1" || v.eq_ignore_ascii_case("true"))
            .collect()
    };
    TsharkPacket {
        frame: col(0).parse().unwrap_or(0),
        is_control: col(1) == "1",
        length: num(col(2)),
        tunnel: num(col(3)).unwrap_or(0),
        session: num(col(4)).unwrap_or(0),
        ns: num(col(5)),
        nr: num(col(6)),
        message_type: num(col(7)),
        avp_types: list(col(8)),
        mandatory: bools(col(9)),
        hidden: bools(col(10)),
        malformed: !col(11).is_empty(),
        expert: col(12).to_string(),
        src: col(13).split(',').next().and_then(|v| v.parse().ok()),
    }
}

/// Brings a lab up as `spec` says, runs `drive` on it, and takes it down whatever happened:
/// the run dir goes after a clean pass and stays (its path printed) after a failure or with
/// `L2TPKIT_KEEP_RUN=1`; a panic in `drive` goes on after the lab is down, and a lab that does
/// not come down cleanly fails the test. `what` names the run in the messages.
pub fn on_lab<T>(
    what: &str,
    spec: &l2tpkit::lab::LabSpec,
    drive: impl FnOnce(&l2tpkit::lab::Lab) -> T,
) -> T {
    let lab = l2tpkit::lab::Lab::up(spec).unwrap_or_else(|err| panic!("{what}: lab up: {err:#}"));
    let run_dir = lab.run_dir().to_path_buf();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drive(&lab)));
    let down = lab.down();
    let keep = outcome.is_err() || down.is_err() || std::env::var_os("L2TPKIT_KEEP_RUN").is_some();
    if keep {
        eprintln!("{what}: run dir kept: {}", run_dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&run_dir);
    }
    let value = outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    let down = down.unwrap_or_else(|err| panic!("{what}: lab down: {err:#}"));
    assert!(down.problems.is_empty(), "{what}: {:?}", down.problems);
    value
}

/// Threads that spin until dropped (or `limit` has passed): the busy machine a test's cluster
/// must work on. Bounded in time, so a test that never drops them still ends them.
pub struct BusyLoops {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl BusyLoops {
    pub fn start(count: usize, limit: std::time::Duration) -> BusyLoops {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let threads = (0..count)
            .map(|i| {
                let stop = std::sync::Arc::clone(&stop);
                std::thread::Builder::new()
                    .name(format!("busy-{i}"))
                    .spawn(move || {
                        let started = std::time::Instant::now();
                        let mut x = 0u64;
                        while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
                            x = std::hint::black_box(x.wrapping_mul(6364136223846793005) + 1);
                        }
                    })
                    .expect("a busy thread")
            })
            .collect();
        BusyLoops { stop, threads }
    }
}

impl Drop for BusyLoops {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_tshark_line() {
        let packet = parse_line("1|1|105|0|0|0|0|1|0,2,3|1,1,0|0,0,1|||127.0.0.1");
        assert_eq!(packet.frame, 1);
        assert!(packet.is_control);
        assert_eq!(packet.length, Some(105));
        assert_eq!(packet.message_type, Some(1));
        assert_eq!(packet.avp_types, vec![0, 2, 3]);
        assert_eq!(packet.mandatory, vec![true, true, false]);
        assert_eq!(packet.hidden, vec![false, false, true]);
        assert!(!packet.malformed);
        assert_eq!(packet.src, Some(std::net::Ipv4Addr::LOCALHOST));
    }
}
