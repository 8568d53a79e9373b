//! The l2tpns + FreeRADIUS harness itself: FreeRADIUS answers l2tpns's secret with the test's
//! users, our LAC brings tunnels and sessions up against l2tpns at the L2TP layer, and nothing
//! of the run (process, namespace, interface, directory) is left afterwards, also when the test
//! panics.
//!
//! Needs root, l2tpns, FreeRADIUS with `radtest`, and `target/<profile>/l2tpkit` next to the
//! test binary (`cargo build -p l2tpkit`; `scripts/test` builds it): under `CI=true` a missing
//! one fails the test, elsewhere the test says why it skips.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use l2tpkit::lab::{default_binary, sys};
use l2tpkit_tests::l2tpns::{self, L2tpns, L2tpnsOptions, PppAuth};
use l2tpkit_tests::netns::leftovers;
use l2tpkit_tests::proc::{with_cmdline_containing, Proc};
use l2tpkit_tests::radius::RadiusReply;
use l2tpkit_tests::{require, require_that};

const UP: Duration = Duration::from_secs(10);

fn users() -> Vec<(String, String)> {
    vec![
        ("alice".to_string(), "wonderland".to_string()),
        (
            "bob@example.net".to_string(),
            "can we fix it? yes!".to_string(),
        ),
    ]
}

/// The `l2tpkit` binary the LAC runs as, if the prerequisites are there.
fn prerequisites() -> Option<PathBuf> {
    if !l2tpns::available() || !require("radtest") {
        return None;
    }
    let binary = default_binary().ok();
    let why = "no target/<profile>/l2tpkit next to the test binary (cargo build -p l2tpkit)";
    require_that(binary.is_some(), why);
    binary
}

/// The processes of the harness once they are `unshare` and the daemon, twice: on becoming
/// master l2tpns forks a child that tells its plugins and exits at once.
fn settle(harness: &L2tpns) -> Vec<Proc> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let procs = harness.processes();
        if procs.len() == 4 {
            return procs;
        }
        assert!(Instant::now() < deadline, "wanted 4 processes: {procs:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Nothing of the run is left: its processes, namespaces, interfaces and processes naming its
/// run directory.
fn assert_all_gone(procs: &[Proc], prefix: &str, run_dir: &str) {
    let left: Vec<u32> = procs.iter().filter(|p| p.exists()).map(|p| p.pid).collect();
    assert!(left.is_empty(), "processes left over: {left:?}");
    assert_eq!(leftovers(prefix), Vec::<String>::new(), "prefix {prefix}");
    assert_eq!(with_cmdline_containing(run_dir), Vec::<u32>::new());
}

#[test]
fn radius_answers_and_our_lac_reaches_lcp_at_l2tpns() {
    let Some(binary) = prerequisites() else {
        return;
    };
    let options = L2tpnsOptions {
        users: users(),
        auth: PppAuth::Chap,
        initiators: 3,
        ..L2tpnsOptions::default()
    };
    let harness = L2tpns::start(&options).expect("start l2tpns and FreeRADIUS");
    eprintln!(
        "l2tpns + FreeRADIUS ready in {:?} (run {})",
        harness.started_in(),
        harness.prefix()
    );
    let procs = settle(&harness);
    let prefix = harness.prefix().to_string();
    let run_dir = harness.run_dir().to_path_buf();

    // (a) FreeRADIUS, asked from l2tpns's namespace with l2tpns's secret.
    let (bob, bob_password) = &options.users[1];
    assert_eq!(
        harness.radtest("alice", "wonderland", false).unwrap(),
        RadiusReply::Accept
    );
    assert_eq!(
        harness.radtest("alice", "wonderland", true).unwrap(),
        RadiusReply::Accept
    );
    assert_eq!(
        harness.radtest(bob, bob_password, true).unwrap(),
        RadiusReply::Accept
    );
    assert_eq!(
        harness.radtest("alice", "looking-glass", false).unwrap(),
        RadiusReply::Reject
    );
    assert_eq!(harness.logins_ok("alice"), 2, "{}", harness.radius_log());
    assert_eq!(harness.logins_ok(bob), 1, "{}", harness.radius_log());
    assert_eq!(harness.logins_incorrect("alice"), 1);
    assert_eq!(harness.logins_incorrect(bob), 0);

    // (b) Our LAC at the L2TP layer: one outstanding SCCRQ per source address, since l2tpns
    // takes a second SCCRQ from a socket whose first tunnel is still opening for a duplicate.
    // With `--ppp off` the LAC answers no PPP: l2tpns sends its LCP Configure-Requests (asking
    // for CHAP) and the sessions sit in LCP until the LAC tears them down (PPP with l2tpns:
    // `lac_l2tpns.rs`).
    let ns = harness.initiator_netns().to_string();
    let target = harness.lns_addr().to_string();
    let bind = format!("{}:0", harness.initiator_addr());
    let binary = binary.to_string_lossy().into_owned();
    let args = [
        "netns",
        "exec",
        &ns,
        &binary,
        "lac",
        "--target",
        &target,
        "--bind",
        &bind,
        "--initiators",
        "3",
        "--max-outstanding",
        "3",
        "--tunnels",
        "3",
        "--sessions-per-tunnel",
        "1",
        "--hold",
        "2",
        "--setup-timeout",
        "20",
        "--ppp",
        "off",
        "--json",
    ];
    let started = Instant::now();
    let out = sys::run("ip", &args, None, Duration::from_secs(90)).expect("run the LAC");
    eprintln!("LAC ran {:?}; stderr:\n{}", started.elapsed(), out.stderr);
    assert!(out.status.success(), "LAC: {}\n{}", out.status, out.stdout);
    let report: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|err| panic!("LAC JSON: {err}\n{}", out.stdout));
    for (key, want) in [
        ("tunnels_established", 3),
        ("sessions_established", 3),
        ("tunnels_failed", 0),
        ("sessions_failed", 0),
        ("tunnels_closed_cleanly", 3),
        // Each SCCRQ answered at once (none taken for a duplicate and dropped).
        ("retransmissions", 0),
    ] {
        assert_eq!(report[key], want, "{key}: {report:#}");
    }
    let log = harness
        .wait_for("Received StopCCN", 3, UP)
        .unwrap_or_else(|err| panic!("{err}"));
    let count = |needle: &str| log.matches(needle).count();
    assert_eq!(count("New tunnel from 198.18.0."), 3, "{log}");
    assert_eq!(count("Received ICCN"), 3, "{log}");
    assert_eq!(count("Duplicate SCCRQ?"), 0, "{log}");
    // At least one LCP Configure-Request per session, asking for CHAP first.
    assert!(count("LCP: send ConfigReq (CHAP)") >= 3, "{log}");
    assert_eq!(count("LCP: send ConfigReq (PAP)"), 0, "{log}");
    // No PPP authentication reached FreeRADIUS: only radtest's four requests.
    assert_eq!(harness.logins_ok("alice"), 2);

    // (c) Everything goes with the harness.
    let started = Instant::now();
    drop(harness);
    eprintln!("stopped and removed in {:?}", started.elapsed());
    assert_all_gone(&procs, &prefix, &run_dir.to_string_lossy());
    assert!(!run_dir.exists(), "run directory removed after a pass");
}

#[test]
fn a_panic_leaves_no_process_or_namespace_and_keeps_the_run_dir() {
    if prerequisites().is_none() {
        return;
    }
    let mut seen = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let harness = L2tpns::start(&L2tpnsOptions {
            users: users(),
            auth: PppAuth::Pap,
            ..L2tpnsOptions::default()
        })
        .expect("start l2tpns and FreeRADIUS");
        assert!(harness.run_dir().join("startup-config").exists());
        let config = std::fs::read_to_string(harness.run_dir().join("startup-config")).unwrap();
        assert!(
            config.contains("set radius_authtypes \"pap,chap\""),
            "{config}"
        );
        seen = Some((
            settle(&harness),
            harness.prefix().to_string(),
            harness.run_dir().to_path_buf(),
        ));
        // resume_unwind: a panic without the panic hook's message and backtrace noise.
        std::panic::resume_unwind(Box::new("deliberate"));
    }));
    assert!(result.is_err());
    let (procs, prefix, run_dir) = seen.expect("the harness started");
    assert_all_gone(&procs, &prefix, &run_dir.to_string_lossy());
    assert!(
        run_dir.join("l2tpns.log").exists(),
        "run directory kept after a failure"
    );
    let _ = std::fs::remove_dir_all(&run_dir);
}
