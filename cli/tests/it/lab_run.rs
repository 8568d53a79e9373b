//! `l2tpkit lab run` end to end, as root. FIG 2 with the defaults (the README's main job: 1000
//! tunnels × 2 sessions from 30 initiator addresses, paced, with echoes) and FIG 4 with 300
//! tunnels: everything comes up, least-load spreads the tunnels within ±10% of even, the CSV has
//! a row per second, and `verify` finds every tunnel conforming to FIG 3 (FIG 2) or FIG 5 (FIG 4).

use std::process::Command;

use crate::common;

fn root_and_tools() -> bool {
    common::lab_available("lab_run")
}

/// `extra` empty: the defaults, the README's main job (1000 tunnels × 2 sessions, paced at
/// 100/s, echoes). Otherwise 300 tunnels × 1 session.
fn lab_run(topology: &str, sequence: &str, extra: &[&str]) {
    if !root_and_tools() {
        return;
    }
    let (tunnels, sessions) = if extra.is_empty() {
        (1000, 2000)
    } else {
        (300, 300)
    };
    let run_dir =
        std::env::temp_dir().join(format!("l2tpkit-labrun-{topology}-{}", std::process::id()));
    let args: Vec<&str> = ["--topology", topology]
        .iter()
        .chain(extra)
        .copied()
        .collect();
    let summary = common::lab_run_json(&args, &run_dir, &[]);
    let stdout = summary.to_string();
    assert_eq!(summary["lac"]["tunnels_established"], tunnels, "{stdout}");
    assert_eq!(summary["lac"]["sessions_established"], sessions, "{stdout}");
    assert_eq!(summary["lac"]["tunnels_failed"], 0, "{stdout}");
    assert_eq!(summary["verify_tunnels"], tunnels, "{stdout}");
    assert_eq!(summary["verify_conforming"], tunnels, "{stdout}");
    // The CSV has a row per second of the run, numbered without gaps.
    let csv = std::fs::read_to_string(run_dir.join("lac.csv")).expect("lac.csv");
    let seconds: Vec<u64> = csv
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .next()
                .and_then(|s| s.parse().ok())
                .expect("second")
        })
        .collect();
    assert!(!seconds.is_empty(), "{csv}");
    assert!(
        seconds.iter().enumerate().all(|(i, s)| *s == i as u64),
        "{seconds:?}"
    );
    // The dispatch over time: a row per endpoint per second; at the end they hold every tunnel.
    let per_endpoint =
        std::fs::read_to_string(run_dir.join("lac-endpoints.csv")).expect("lac-endpoints.csv");
    let last_second = seconds.last().copied().unwrap_or(0).to_string();
    let established: u64 = per_endpoint
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.first() == Some(&last_second.as_str()))
        .filter_map(|f| f.get(4).and_then(|n| n.parse::<u64>().ok()))
        .sum();
    assert_eq!(established, tunnels, "{per_endpoint}");
    // And the interval log beside it: tagged intervals, the setups among them.
    let hlog = std::fs::read_to_string(run_dir.join("lac.hlog")).expect("lac.hlog");
    let tagged = hlog
        .lines()
        .filter(|l| l.starts_with("Tag=sccrq_to_sccrp,"))
        .count();
    assert!(
        tagged + 1 >= seconds.len(),
        "{tagged} intervals, {} CSV rows",
        seconds.len()
    );
    if extra.is_empty() {
        // 1000 setups paced at 100/s and an 8 s hold: the run spans well over 15 seconds.
        assert!(seconds.len() >= 15, "{} rows:\n{csv}", seconds.len());
        assert!(summary["lac"]["echo_requests_sent"].as_u64().unwrap_or(0) > 0);
        report_in_a_browser(&run_dir, &summary);
    }
    assert_eq!(summary["verify_variants"][0], sequence, "{stdout}");
    let endpoints = summary["endpoints"].as_array().expect("endpoints");
    assert_eq!(endpoints.len(), 3);
    for e in endpoints {
        let dispatched = e["dispatched"].as_u64().unwrap_or(0);
        let even = tunnels / 3;
        assert!(
            dispatched * 10 >= even * 9 && dispatched * 10 <= even * 11,
            "uneven spread: {stdout}"
        );
    }
    // The lab is gone: no namespace with its prefix remains.
    let lab: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("lab.json")).expect("lab.json"))
            .expect("lab.json is JSON");
    let prefix = lab["prefix"].as_str().expect("prefix").to_string();
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&netns.stdout).contains(&prefix),
        "namespaces of {prefix} left behind"
    );
    let _ = std::fs::remove_dir_all(&run_dir);
}

/// The run's `report.html` in a real browser, headless Chromium (Debian `chromium`) in a network
/// namespace of its own, so with no network at all: it loads with no console message and no
/// failed request, the text of its DOM holds the summary's counts, and its screenshot is kept
/// in `target/tmp/ci-artifacts/` (CI's artifact).
fn report_in_a_browser(run_dir: &std::path::Path, summary: &serde_json::Value) {
    let report = run_dir.join("report.html");
    assert!(report.exists(), "lab run wrote no report.html");
    if !l2tpkit_tests_chromium_available() {
        return;
    }
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ci-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let profile = run_dir.join("chromium-profile");
    let chromium = |mode: &[String]| {
        let out = Command::new("unshare")
            .args([
                "--net",
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
            ])
            .args([
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
            ])
            .args([
                "--disable-component-update",
                "--disable-sync",
                "--enable-logging=stderr",
            ])
            .args(["--v=0", "--window-size=1200,4000"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(mode)
            .arg(format!("file://{}", report.display()))
            .output()
            .expect("run chromium");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (dom, log) = chromium(&["--dump-dom".to_string()]);
    for line in log.lines() {
        assert!(
            !line.contains("CONSOLE") && !line.contains("Failed to load resource"),
            "the report made the browser say: {line}"
        );
    }
    // The DOM's text: tags and blanks dropped.
    let mut text = String::new();
    let mut in_tag = false;
    for c in dom.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag && !c.is_whitespace() => text.push(c),
            _ => {}
        }
    }
    for key in [
        "tunnels_established",
        "sessions_established",
        "retransmissions",
    ] {
        let value = &summary["lac"][key];
        assert!(
            text.contains(&format!("lac.{key}{value}")),
            "the DOM lacks lac.{key} = {value}"
        );
    }
    for key in ["verify_tunnels", "verify_conforming"] {
        assert!(
            text.contains(&format!("{key}{}", summary[key])),
            "the DOM lacks {key}"
        );
    }
    let shot = artifacts.join("lab-run-report.png");
    let (_, log) = chromium(&[format!("--screenshot={}", shot.display())]);
    assert!(shot.exists(), "no screenshot: {log}");
    let _ = std::fs::copy(&report, artifacts.join("lab-run-report.html"));
}

/// Chromium is installed; under `CI=true` its absence fails the test (scripts/test installs it).
fn l2tpkit_tests_chromium_available() -> bool {
    let found = Command::new("sh")
        .args(["-c", "command -v chromium"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but chromium is not installed (scripts/test installs it)");
        }
        eprintln!("SKIPPED: the browser check needs chromium");
    }
    found
}

#[test]
fn fig2_lab_run_with_the_defaults_conforms_to_fig3() {
    lab_run("fig2", "Fig3", &[]);
}

#[test]
fn fig4_lab_run_conforms_to_fig5() {
    lab_run(
        "fig4",
        "Fig5",
        &[
            "--tunnels",
            "300",
            "--sessions-per-tunnel",
            "1",
            "--rate",
            "0",
            "--hold",
            "3",
        ],
    );
}

/// One tunnel through the lab, its setup steps as `verify` prints them, normalised (times,
/// ports, tunnel and session IDs and record numbers vary from run to run) and snapshotted.
fn single_tunnel_timeline(topology: &str) -> String {
    let run_dir = std::env::temp_dir().join(format!(
        "l2tpkit-labrun-one-{topology}-{}",
        std::process::id()
    ));
    let out = Command::new(env!("CARGO_BIN_EXE_l2tpkit"))
        .args(["lab", "run", "--topology", topology])
        .args(["--endpoints", "1", "--tunnels", "1", "--initiators", "1"])
        .args([
            "--hold",
            "0.5",
            "--echo-rate",
            "0",
            "--sessions-per-tunnel",
            "1",
        ])
        .arg("--no-tui")
        .arg("--run-dir")
        .arg(&run_dir)
        .output()
        .expect("run l2tpkit lab run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(run_dir.join("verify.txt")).expect("verify.txt");
    let _ = std::fs::remove_dir_all(&run_dir);
    normalise(
        &text
            .lines()
            .skip_while(|l| !l.starts_with("tunnel "))
            .take_while(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// Replaces what changes between runs: each distinct number after `tid`, `sid` and `assigned`
/// by a stable name in order of appearance, initiator ports by PORT; times and record numbers
/// dropped. The "… more messages" line goes too: how many ZLBs close a tunnel depends on timing.
fn normalise(block: &str) -> String {
    let mut names: std::collections::BTreeMap<String, String> = Default::default();
    let mut out = Vec::new();
    for line in block.lines().filter(|l| !l.trim_start().starts_with('…')) {
        let mut words = Vec::new();
        let mut previous = String::new();
        for (i, word) in line.split(' ').enumerate() {
            let core = word.trim_end_matches([',', ':', ']']);
            let tail = &word[core.len()..];
            let core = if i < 8 && core.contains('.') && core.parse::<f64>().is_ok() {
                "T".to_string()
            } else if core.starts_with('#') {
                "#N".to_string()
            } else if matches!(previous.as_str(), "tid" | "sid" | "assigned") && core != "0" {
                let n = names.len();
                names
                    .entry(core.to_string())
                    .or_insert_with(|| format!("ID{n}"))
                    .clone()
            } else if let Some((addr, port)) = core.split_once(':') {
                if port != "1701" && port.chars().all(|c| c.is_ascii_digit()) {
                    format!("{addr}:PORT")
                } else {
                    core.to_string()
                }
            } else {
                core.to_string()
            };
            previous = core.clone();
            words.push(format!("{core}{tail}"));
        }
        out.push(words.join(" "));
    }
    out.join("\n")
}

#[test]
fn fig2_and_fig4_single_tunnel_timelines_are_snapshotted() {
    if !root_and_tools() {
        return;
    }
    let snapshots = concat!(env!("CARGO_MANIFEST_DIR"), "/../snapshots");
    for (topology, name) in [
        ("fig2", "lab-fig2-fig3-timeline"),
        ("fig4", "lab-fig4-fig5-timeline"),
    ] {
        let timeline = single_tunnel_timeline(topology);
        insta::with_settings!({
            snapshot_path => snapshots,
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_snapshot!(name, timeline);
        });
    }
}

/// The README's command on a machine without tcpdump: `lab run` with a `PATH` that holds only
/// what the lab runs (`ip`, `sysctl`, `kill`) succeeds, and its two captures, written by the
/// lab's own packet sockets, read back with every tunnel in them; tshark (when installed) opens
/// them and finds nothing malformed.
#[test]
fn lab_run_needs_no_tcpdump() {
    if !root_and_tools() {
        return;
    }
    let scratch = std::env::temp_dir().join(format!("l2tpkit-notcpdump-{}", std::process::id()));
    let bin = scratch.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = std::env::var_os("PATH").unwrap_or_default();
    for program in ["ip", "sysctl", "kill"] {
        // The executable itself (`command -v kill` would name the shell's builtin).
        let found = std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{program} is not installed"));
        std::os::unix::fs::symlink(&found, bin.join(program)).unwrap();
    }
    let run_dir = scratch.join("run");
    let tunnels = 60;
    let count = tunnels.to_string();
    let args = [
        "--topology",
        "fig2",
        "--tunnels",
        &count,
        "--sessions-per-tunnel",
        "1",
        "--rate",
        "0",
        "--hold",
        "1",
    ];
    let summary = common::lab_run_json(&args, &run_dir, &[("PATH", bin.as_os_str())]);
    let stdout = summary.to_string();
    assert_eq!(summary["lac"]["tunnels_established"], tunnels, "{stdout}");
    assert_eq!(summary["verify_conforming"], tunnels, "{stdout}");
    for file in ["public.pcap", "lan.pcap"] {
        let pcap = run_dir.join(file);
        let mut reader = l2tp::capture::CaptureReader::open(&pcap).expect(file);
        let mut datagrams = 0;
        while let Some(record) = reader.next_datagram() {
            let record = record.unwrap_or_else(|e| panic!("{file}: {e}"));
            if let l2tp::capture::RecordKind::Udp(_) = record.kind {
                datagrams += 1;
            }
        }
        // At least an SCCRQ, SCCRP, SCCN and a StopCCN per tunnel crossed each segment.
        assert!(datagrams >= 4 * tunnels, "{file}: {datagrams} datagrams");
        let tshark = Command::new("tshark")
            .arg("-r")
            .arg(&pcap)
            .args(["-Y", "_ws.malformed"])
            .output();
        match tshark {
            Ok(out) => {
                assert!(out.status.success(), "tshark on {file}: {out:?}");
                assert!(
                    out.stdout.is_empty(),
                    "{file}: malformed frames:\n{}",
                    String::from_utf8_lossy(&out.stdout)
                );
            }
            Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("CI=true but tshark is not installed")
            }
            Err(_) => eprintln!("tshark not installed: {file} not checked with it"),
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
}
