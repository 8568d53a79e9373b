//! Sharded load agents and their exact merge (issue 17): four `lac --shard I/4` processes
//! against one lab do what one LAC does with the same flags, and `l2tpkit merge` makes one
//! report of them whose percentiles are those of one histogram holding every sample. Bad
//! inputs to `merge` (a missing shard, two runs mixed, a log cut short) are refused with the
//! file named.
//!
//! The lab test needs root and `ip` (CI has them; without CI=true it says why it skips). The
//! refusals run anywhere, against an endpoint on loopback.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{lab_available, wait_for, Scratch};
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use l2tpkit::lab::{Lab, LabSpec, NodeKind, Topology, LAB_PASSWORD, LAB_USER};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_l2tpkit");

/// The whole run's flags, the same for the one LAC and for every shard.
fn run_flags(target: &str, bind: &str, tunnels: usize, initiators: usize) -> Vec<String> {
    let flags = [
        "lac",
        "--target",
        target,
        "--bind",
        bind,
        "--any-source",
        "--tunnels",
        &tunnels.to_string(),
        "--initiators",
        &initiators.to_string(),
        "--sessions-per-tunnel",
        "2",
        "--rate",
        "100",
        "--hold",
        "2",
        "--username",
        LAB_USER,
        "--password",
        LAB_PASSWORD,
        "--json",
    ];
    flags.iter().map(|s| s.to_string()).collect()
}

fn spawn(namespace: Option<&str>, args: &[String], log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    let mut command = match namespace {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, BIN]);
            c
        }
        None => Command::new(BIN),
    };
    command
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start l2tpkit lac")
}

/// Waits for the LAC (it ends by itself: its --duration bound) and says how it ended.
fn finish(mut child: Child, log: &Path) {
    let status = child.wait().expect("wait for the LAC");
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(status.success(), "{status}: {text}");
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn merge(args: &[&Path]) -> Output {
    Command::new(BIN)
        .arg("merge")
        .args(args)
        .output()
        .expect("run l2tpkit merge")
}

/// Every sample of every log, by tag, recorded one by one into one histogram per tag: what
/// one LAC holding every sample would have (at HdrHistogram's precision). Read with the
/// hdrhistogram crate alone, not with the code under test.
fn every_sample(logs: &[PathBuf]) -> BTreeMap<String, Histogram<u64>> {
    use base64::Engine;
    let mut all: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let mut deserializer = Deserializer::new();
    for log in logs {
        let text = std::fs::read(log).unwrap();
        for entry in IntervalLogIterator::new(&text) {
            let LogEntry::Interval(interval) = entry.expect("a log entry") else {
                continue;
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(interval.encoded_histogram())
                .unwrap();
            let h: Histogram<u64> = deserializer.deserialize(&mut bytes.as_slice()).unwrap();
            let tag = interval.tag().expect("tagged").as_str().to_string();
            let one = all.entry(tag).or_insert_with(|| {
                Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("bounds")
            });
            for v in h.iter_recorded() {
                one.record_n(v.value_iterated_to(), v.count_at_value())
                    .unwrap();
            }
        }
    }
    all
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

#[test]
fn four_shards_against_one_lab_do_what_one_lac_does_and_merge_exactly() {
    if !lab_available("four_shards_against_one_lab_do_what_one_lac_does_and_merge_exactly") {
        return;
    }
    let run_dir = std::env::temp_dir().join(format!("l2tpkit-shards-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run_dir);
    let scratch = Scratch::new(run_dir.clone());
    let lab = Lab::up(&LabSpec {
        initiators: 4,
        // Subscribers: CHAP against the lab's user, IPCP from each endpoint's pool slice.
        ppp: true,
        binary: Some(BIN.into()),
        run_dir: Some(run_dir.join("lab")),
        ..LabSpec::new(Topology::Fig2, 3)
    })
    .expect("lab up");
    let ns = lab
        .namespace(NodeKind::Initiator)
        .expect("initiator ns")
        .to_string();
    let flags = run_flags("198.18.0.1", "198.18.1.1", 120, 4);

    // One LAC, the whole run.
    let whole_dir = run_dir.join("whole");
    let mut whole = flags.clone();
    whole.extend(["--out-dir".to_string(), whole_dir.display().to_string()]);
    let log = run_dir.join("whole.log");
    finish(spawn(Some(&ns), &whole, &log), &log);

    // Four agents, each its shard, at once.
    let shard_dir = run_dir.join("shards");
    let agents: Vec<(Child, PathBuf)> = (0..4)
        .map(|i| {
            let mut args = flags.clone();
            args.extend([
                format!("--shard={i}/4"),
                "--run-id=shards-test".to_string(),
                format!("--out-dir={}", shard_dir.display()),
            ]);
            let log = run_dir.join(format!("shard-{i}.log"));
            (spawn(Some(&ns), &args, &log), log)
        })
        .collect();
    for (child, log) in agents {
        finish(child, &log);
    }
    lab.down().expect("lab down");

    let out = merge(&[&shard_dir]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "merge: {stderr}");
    let merged = json(&shard_dir.join("merged/merged.json"));
    let one = json(&whole_dir.join("lac.json"));

    // The same totals as the one LAC.
    for field in [
        "tunnels_requested",
        "tunnels_established",
        "tunnels_failed",
        "sessions_requested",
        "sessions_established",
        "sessions_failed",
        "sessions_ip_up",
        "tunnels_closed_cleanly",
        "duplicate_addresses",
    ] {
        assert_eq!(merged[field], one[field], "{field}");
    }
    assert_eq!(merged["tunnels_established"], 120);
    assert_eq!(merged["sessions_ip_up"], 240);
    let dispatched = |report: &Value| -> u64 {
        (report["endpoints"].as_array().expect("endpoints").iter())
            .map(|e| e["tunnels_established"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(dispatched(&merged), 120);
    assert_eq!(merged["merged"]["shards"], 4);
    assert_eq!(merged["merged"]["run_id"], "shards-test");
    // Each shard carried its block: 30 tunnels, from its own initiator address.
    for i in 0..4 {
        let shard = json(&shard_dir.join(format!("lac.shard-{i}-of-4.json")));
        assert_eq!(shard["tunnels_requested"], 30, "shard {i}");
        assert_eq!(shard["shard"]["index"], i);
    }

    // The merged percentiles are those of one histogram holding every sample.
    let logs: Vec<PathBuf> = (0..4)
        .map(|i| shard_dir.join(format!("lac.shard-{i}-of-4.hlog")))
        .collect();
    let all = every_sample(&logs);
    for tag in [
        "sccrq_to_sccrp",
        "tunnel_setup",
        "session_setup",
        "icrq_to_ip_up",
    ] {
        let h = &all[tag];
        let p = &merged[tag];
        assert_eq!(p["count"], h.len(), "{tag}: count");
        assert_eq!(
            p["count"], one[tag]["count"],
            "{tag}: as many samples as one LAC's"
        );
        for (key, q) in [
            ("p50_ms", 0.5),
            ("p90_ms", 0.9),
            ("p99_ms", 0.99),
            ("p999_ms", 0.999),
        ] {
            assert_eq!(
                p[key].as_f64(),
                Some(ms(h.value_at_quantile(q))),
                "{tag} {key}"
            );
        }
        assert_eq!(p["max_ms"].as_f64(), Some(ms(h.max())), "{tag} max");
    }
    // The merged series: one row a second, ending with every tunnel established.
    let csv = std::fs::read_to_string(shard_dir.join("merged/merged.csv")).unwrap();
    let last = csv.lines().last().expect("rows");
    assert!(last.contains(",120,"), "{last}");
    let html = std::fs::read_to_string(shard_dir.join("merged/report.html")).unwrap();
    assert!(html.contains("<table id=\"shards\">"), "no shards table");
    assert_eq!(html.matches("lac.shard-").count(), 4, "a row per shard");
    drop(scratch);
}

/// A loopback endpoint for the refusals: no root needed.
struct Endpoint {
    child: Child,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        // Our own child, by its handle; waited for.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn merge_refuses_a_missing_shard_two_runs_and_a_cut_log_naming_the_file() {
    let dir = std::env::temp_dir().join(format!("l2tpkit-merge-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let scratch = Scratch::new(dir.clone());
    let status = dir.join("endpoint.json");
    let endpoint = Endpoint {
        child: Command::new(BIN)
            .args(["endpoint", "--listen", "127.0.0.93:0", "--duration", "60"])
            .arg("--status")
            .arg(&status)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the endpoint"),
    };
    wait_for(
        "the endpoint's status file",
        Duration::from_secs(20),
        || std::fs::read_to_string(&status).is_ok_and(|s| s.contains("listening")),
    );
    let listening = json(&status);
    let target = listening["listen"].as_str().expect("listen").to_string();
    // Two runs of two shards each, the second with another --tunnels.
    let run = |name: &str, tunnels: &str| -> PathBuf {
        let out = dir.join(name);
        for i in 0..2 {
            let status = Command::new(BIN)
                .args(["lac", "--target", &target, "--ppp", "off", "--hold", "0"])
                .args(["--tunnels", tunnels, "--shard", &format!("{i}/2")])
                .args(["--run-id", name, "--out-dir"])
                .arg(&out)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("run a shard");
            assert!(status.success(), "{name} shard {i}: {status}");
        }
        out
    };
    let a = run("a", "4");
    let b = run("b", "6");
    drop(endpoint);

    let refused = |inputs: &[&Path], says: &[&str]| {
        let out = merge(inputs);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{inputs:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        for s in says {
            assert!(stderr.contains(s), "{inputs:?}: {s:?} not in {stderr}");
        }
    };
    let a0 = a.join("lac.shard-0-of-2.json");
    let a1 = a.join("lac.shard-1-of-2.json");
    let b1 = b.join("lac.shard-1-of-2.json");
    // Merges whole.
    assert!(merge(&[&a]).status.success());
    // A missing shard.
    refused(
        &[&a0],
        &["1 of 2 shards missing: 1", "lac.shard-0-of-2.json"],
    );
    // Two runs mixed.
    refused(&[&a0, &b1], &["two runs mixed", &b1.display().to_string()]);
    // A shard twice.
    refused(&[&a, &a1], &["twice", &a1.display().to_string()]);
    // A log cut short, in the middle of a line and at a line's end.
    let log = a.join("lac.shard-1-of-2.hlog");
    let text = std::fs::read(&log).unwrap();
    std::fs::write(&log, &text[..text.len() - 30]).unwrap();
    refused(&[&a], &[&log.display().to_string(), "cut short"]);
    let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
    let cut = lines
        .iter()
        .rposition(|l| l.starts_with(b"Tag=sccrq_to_sccrp"))
        .unwrap();
    std::fs::write(&log, lines[..cut].concat()).unwrap();
    refused(&[&a], &[&log.display().to_string(), "cut short"]);
    // A report cut short, and a shard's log gone.
    std::fs::write(&log, &text).unwrap();
    let report = std::fs::read(&a1).unwrap();
    std::fs::write(&a1, &report[..report.len() / 2]).unwrap();
    refused(&[&a], &[&a1.display().to_string()]);
    std::fs::write(&a1, &report).unwrap();
    std::fs::remove_file(&log).unwrap();
    refused(&[&a], &[&log.display().to_string(), "missing"]);
    drop(scratch);
}
