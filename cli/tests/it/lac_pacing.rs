//! `l2tpkit lac` as a load driver: the pace (rate, burst, outstanding cap) holds per second of
//! the recorded CSV, the live controls (pause, stop) are obeyed, and the figures (histograms,
//! endpoints, retransmissions, failures) come out right. Against our own endpoint on
//! 127.0.0.0/8; no assertion depends on how fast the machine is.

use std::net::{SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use crate::common::endpoint;
use l2tpkit::lac::{execute, execute_with, LacArgs, PppLevel};
use probes::lac::{Pace, PaceConfig};
use probes::live::{Live, LiveControl, RunPhase};

/// `name` in a scratch directory of its own; the test removes that directory when it passes.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("l2tpkit-lac-tests-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir.join(name)
}

#[derive(Debug, serde::Deserialize)]
struct Row {
    second: u64,
    tunnels_started: u64,
    started_this_second: u64,
    setups_this_second: u64,
    outstanding_peak: u64,
    tunnel_setup_p50_ms: f64,
}

fn rows(path: &PathBuf) -> Vec<Row> {
    let mut reader = csv::Reader::from_path(path).expect("the CSV");
    let headers = reader.headers().expect("a header row").clone();
    for column in [
        "second",
        "tunnels_started",
        "tunnels_up",
        "tunnels_established",
        "tunnels_failed",
        "sessions_up",
        "sessions_established",
        "sessions_failed",
        "setups_this_second",
        "outstanding",
        "retransmissions",
        "echo_sent",
        "echo_answered",
        "tunnel_setup_p50_ms",
        "tunnel_setup_p99_ms",
    ] {
        assert!(
            headers.iter().any(|h| h == column),
            "no {column} in {headers:?}"
        );
    }
    reader
        .deserialize()
        .collect::<Result<Vec<Row>, _>>()
        .expect("rows")
}

#[test]
fn rate_200_keeps_every_second_within_rate_and_burst() {
    let lns = endpoint("127.0.61.1", "te-pace", 60.0);
    let csv = scratch("pace.csv");
    let args = LacArgs {
        target: lns,
        bind: "127.0.61.2:0".parse().unwrap(),
        initiators: 4,
        tunnels: 400,
        sessions_per_tunnel: 0,
        rate: 200.0,
        max_outstanding: 20,
        hold: Duration::from_millis(500),
        echo_rate: 0.0,
        csv: Some(csv.clone()),
        ppp: PppLevel::Off,
        ..LacArgs::default()
    };
    let (report, _) = execute(&args).expect("lac run");
    assert!(report.success(), "{report}");
    assert!(report.outstanding_max <= 20, "{report}");
    let pace = Pace::new(
        PaceConfig {
            max_outstanding: 20,
            ramp: Duration::ZERO,
            initiators: 4,
        },
        std::sync::Arc::new(LiveControl::default()),
    );
    let burst = pace.burst_bound(200.0);
    let rows = rows(&csv);
    assert!(!rows.is_empty());
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.second, i as u64);
        assert!(
            row.started_this_second as f64 <= 200.0 + burst,
            "second {}: {} SCCRQs > 200 + {burst}",
            row.second,
            row.started_this_second
        );
        // What comes up in a second was sent in it, or was outstanding when it began.
        assert!(
            row.setups_this_second as f64 <= 200.0 + burst + 20.0,
            "second {}: {} setups",
            row.second,
            row.setups_this_second
        );
        assert!(row.outstanding_peak <= 20, "{row:?}");
    }
    let started: u64 = rows.iter().map(|r| r.started_this_second).sum();
    assert_eq!(started, 400);
    assert_eq!(rows.last().map(|r| r.tunnels_started), Some(400));
    // 400 at most 200 + burst a second cannot fit in fewer than two seconds.
    assert!(rows.iter().filter(|r| r.started_this_second > 0).count() >= 2);
    assert!(rows.iter().any(|r| r.tunnel_setup_p50_ms > 0.0));
    // The per-endpoint table keys by the SCCRP's Host Name.
    assert_eq!(report.endpoints.len(), 1, "{report}");
    assert_eq!(report.endpoints[0].key, "te-pace");
    assert_eq!(report.endpoints[0].tunnels_established, 400);
    assert_eq!(report.tunnel_setup.count, 400, "{report}");
    assert_eq!(report.sccrq_to_sccrp.count, 400, "{report}");
    let _ = std::fs::remove_dir_all(csv.parent().expect("the scratch directory"));
}

/// A peer that takes every datagram and never answers; counts what it got.
fn silent_lns(ip: &str) -> (SocketAddrV4, mpsc::Receiver<usize>) {
    let socket = UdpSocket::bind(format!("{ip}:0")).expect("bind the silent LNS");
    let addr = match socket.local_addr().expect("address") {
        std::net::SocketAddr::V4(v4) => v4,
        other => panic!("not IPv4: {other}"),
    };
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("read timeout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut count = 0;
        while socket.recv_from(&mut buf).is_ok() {
            count += 1;
        }
        let _ = tx.send(count);
    });
    (addr, rx)
}

#[test]
fn max_outstanding_caps_unanswered_sccrqs_and_retransmissions_are_counted() {
    let (lns, received) = silent_lns("127.0.62.1");
    let args = LacArgs {
        target: lns,
        bind: "127.0.62.2:0".parse().unwrap(),
        tunnels: 10,
        sessions_per_tunnel: 0,
        max_outstanding: 5,
        // Past the first retransmission (1 s), before the second (3 s).
        setup_timeout: Some(Duration::from_millis(1500)),
        hold: Duration::from_secs(0),
        echo_rate: 0.0,
        ppp: PppLevel::Off,
        ..LacArgs::default()
    };
    let (report, _) = execute(&args).expect("lac run");
    assert_eq!(report.outstanding_max, 5, "{report}");
    assert_eq!(report.tunnels_failed, 10, "{report}");
    assert_eq!(report.tunnels_established, 0, "{report}");
    assert_eq!(
        report.failures.get("tunnel setup timeout"),
        Some(&10),
        "{report}"
    );
    assert_eq!(report.retransmissions, 10, "{report}");
    assert!(!report.success());
    // Every SCCRQ once and once again; nothing else (no StopCCN: the peer never gave an ID).
    assert_eq!(received.recv().expect("the count"), 20);
}

#[test]
fn pause_holds_back_sccrqs_and_stop_tears_down() {
    let lns = endpoint("127.0.63.1", "te-control", 120.0);
    let live = Live::new(0.0);
    live.control.set_paused(true);
    let args = LacArgs {
        target: lns,
        bind: "127.0.63.2:0".parse().unwrap(),
        initiators: 2,
        tunnels: 100,
        sessions_per_tunnel: 1,
        rate: 1000.0,
        hold: Duration::from_secs(3600),
        echo_rate: 0.0,
        duration: Some(Duration::from_secs(100)),
        ppp: PppLevel::Off,
        ..LacArgs::default()
    };
    let driver = {
        let live = live.clone();
        std::thread::spawn(move || execute_with(&args, live, false))
    };
    // Wait (bounded) for half a second of the run to pass, paused.
    let mut waited = 0;
    while live.latest().elapsed_s < 0.5 && waited < 200 {
        std::thread::sleep(Duration::from_millis(50));
        waited += 1;
    }
    let paused = live.latest();
    assert!(paused.paused, "{paused:?}");
    assert_eq!(paused.tunnels_started, 0, "{paused:?}");
    assert_eq!(paused.target_rate, 1000.0);
    live.control.set_paused(false);
    let mut waited = 0;
    while live.latest().sessions_up < 100 && waited < 400 {
        std::thread::sleep(Duration::from_millis(50));
        waited += 1;
    }
    let holding = live.latest();
    assert_eq!(holding.tunnels_up, 100, "{holding:?}");
    assert_eq!(holding.phase, RunPhase::Holding, "{holding:?}");
    assert_eq!(holding.endpoints.len(), 1, "{holding:?}");
    assert_eq!(holding.endpoints[0].tunnels, 100, "{holding:?}");
    assert_eq!(holding.endpoints[0].sessions, 100, "{holding:?}");
    live.control.request_stop();
    let (report, _) = driver.join().expect("no panic").expect("lac run");
    assert!(report.success(), "{report}");
    assert_eq!(report.tunnels_closed_cleanly, 100, "{report}");
    // Stopped by the control, long before --duration.
    assert!(report.elapsed_s < 50.0, "{report}");
    assert_eq!(live.latest().phase, RunPhase::Done);
    assert_eq!(live.latest().tunnels_up, 0);
}

#[test]
fn echo_round_trips_match_each_request() {
    let lns = endpoint("127.0.64.1", "", 60.0);
    let args = LacArgs {
        target: lns,
        bind: "127.0.64.2:0".parse().unwrap(),
        tunnels: 5,
        sessions_per_tunnel: 2,
        hold: Duration::from_millis(2500),
        echo_rate: 4.0,
        ppp: PppLevel::Off,
        ..LacArgs::default()
    };
    let (report, _) = execute(&args).expect("lac run");
    assert!(report.success(), "{report}");
    assert!(report.echo_requests_sent >= 10, "{report}");
    assert_eq!(report.echo_rtt.count, report.echo_requests_sent, "{report}");
    assert_eq!(report.session_setup.count, 10, "{report}");
    // An empty Host Name: the endpoint is known by the SCCRP's source address.
    assert_eq!(report.endpoints.len(), 1, "{report}");
    assert_eq!(report.endpoints[0].key, lns.to_string(), "{report}");
    assert_eq!(report.endpoints[0].sessions_established, 10, "{report}");
}

fn l2tpkit(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_l2tpkit"))
        .args(args)
        .output()
        .expect("run l2tpkit");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_pacing_flags_name_the_flag() {
    for (flag, needle) in [
        ("--rate=-3", "--rate -3"),
        ("--rate=NaN", "--rate"),
        ("--max-outstanding=0", "--max-outstanding 0"),
        ("--ramp=-1", "--ramp"),
        ("--duration=0", "--duration"),
        ("--duration=inf", "--duration"),
        ("--csv=/nonexistent-l2tpkit-dir/x.csv", "--csv"),
        ("--tunnels=70000", "--tunnels"),
    ] {
        let (code, stderr) = l2tpkit(&["lac", "--target", "127.0.65.1", flag]);
        assert_eq!(code, 2, "{flag}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{flag}: {stderr}");
        assert!(stderr.contains(needle), "{flag}: {stderr}");
        assert!(!stderr.contains("panicked"), "{flag}: {stderr}");
    }
}
