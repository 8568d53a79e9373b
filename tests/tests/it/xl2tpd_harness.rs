//! The xl2tpd harness itself, with xl2tpd on both ends: tunnels and calls come up, the control
//! pipe works, and nothing is left running afterwards, also when a test panics.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use l2tpkit_tests::xl2tpd::{self, loopback_pair, Proc, Xl2tpd, Xl2tpdEnd, Xl2tpdOptions};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

const UP: Duration = Duration::from_secs(10);

fn assert_gone(procs: &[Proc], what: &str) {
    let left: Vec<u32> = procs.iter().filter(|p| p.exists()).map(|p| p.pid).collect();
    assert!(left.is_empty(), "{what}: processes left over: {left:?}");
}

/// The processes of `daemon` once there are `n` of them (at most 5 s): "Call established" is
/// logged before xl2tpd forks the pppd stand-in, which runs `stty` before it becomes `cat`.
fn settle(daemon: &Xl2tpd, n: usize) -> Vec<Proc> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let procs = daemon.processes();
        if procs.len() == n {
            return procs;
        }
        assert!(
            Instant::now() < deadline,
            "wanted {n} processes, have {procs:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn up(daemon: &Xl2tpd, name: &str) {
    for needle in ["Connection established to", "Call established with"] {
        if let Err(err) = daemon.wait_for(needle, 1, UP) {
            panic!("{name}: {err}");
        }
    }
}

/// LNS + autodialling LAC; both report tunnel and call up. Returns (lns, lac).
fn lns_and_lac(test: &str, secret: Option<&str>, lns_port: u16) -> (Xl2tpd, Xl2tpd) {
    let (lns_ip, lac_ip) = loopback_pair(test);
    let options = |listen, port| Xl2tpdOptions {
        port,
        secret: secret.map(str::to_string),
        challenge: secret.is_some(),
        debug: true,
        ..Xl2tpdOptions::on(listen)
    };
    let started = Instant::now();
    let lns = Xl2tpd::start(Xl2tpdEnd::Lns, &options(lns_ip, lns_port)).expect("start LNS");
    let lac = Xl2tpd::start(
        Xl2tpdEnd::Lac {
            lns: SocketAddrV4::new(lns_ip, lns_port),
            autodial: true,
        },
        &options(lac_ip, 1701),
    )
    .expect("start LAC");
    up(&lac, "LAC");
    up(&lns, "LNS");
    eprintln!("{test}: tunnel and call up after {:?}", started.elapsed());
    (lns, lac)
}

/// `d cluster` on the LAC: StopCCN, both ends log the tunnel closed; then stop both and check
/// every process of both is gone.
fn disconnect_and_stop(test: &str, lns: Xl2tpd, lac: Xl2tpd) {
    let started = Instant::now();
    let answer = lac.control_reply("d cluster").expect("d cluster");
    assert!(answer.starts_with("00 OK"), "d cluster answered {answer:?}");
    lac.wait_for("Disconnecting from", 1, UP).unwrap();
    lac.wait_for("closed to", 1, UP).unwrap();
    lns.wait_for("Connection closed to", 1, UP).unwrap();
    assert_eq!(lac.count("Call established with"), 1);
    eprintln!("{test}: tunnel closed after {:?}", started.elapsed());

    let procs: Vec<Proc> = [&lns, &lac].iter().flat_map(|d| d.processes()).collect();
    // unshare + xl2tpd each; the LNS's pppd stand-in (the call is gone on the LAC side, the LNS
    // may still be closing it).
    assert!(procs.len() >= 4, "{procs:?}");
    let (lns_pid, lac_pid) = (lns.pid(), lac.pid());
    let (lns_dir, lac_dir) = (lns.dir().to_path_buf(), lac.dir().to_path_buf());
    let started = Instant::now();
    let lac_log = lac.stop();
    let lns_log = lns.stop();
    eprintln!("{test}: both stopped in {:?}", started.elapsed());
    assert!(lac_log.contains("Connection established to"), "{lac_log}");
    assert!(lns_log.contains("Call established with"), "{lns_log}");
    assert_gone(&procs, test);
    for pid in [lns_pid, lac_pid] {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
        // No signal: only checks that the process exists.
        let alive = nix::sys::signal::kill(Pid::from_raw(pid as i32), None).is_ok();
        assert!(!alive, "pid {pid} still exists");
    }
    assert!(!lns_dir.exists() && !lac_dir.exists(), "temp dirs removed");
}

#[test]
fn lac_to_lns() {
    if !xl2tpd::available() {
        return;
    }
    let (lns, lac) = lns_and_lac("lac_to_lns", None, 1701);
    assert_eq!(lac.local_call_ids().len(), 1);
    assert_eq!(lac.local_tunnel_ids().len(), 1);
    // One pppd stand-in on each side while the call is up.
    settle(&lac, 3);
    settle(&lns, 3);
    disconnect_and_stop("lac_to_lns", lns, lac);
}

#[test]
fn lac_to_lns_with_secret_and_challenge_on_another_port() {
    if !xl2tpd::available() {
        return;
    }
    let test = "lac_to_lns_with_secret_and_challenge";
    let (lns, lac) = lns_and_lac(test, Some("harness-secret"), 1702);
    // Debug AVP logging shows each side's Challenge and the other side's Challenge Response.
    for (name, daemon) in [("LNS", &lns), ("LAC", &lac)] {
        let log = daemon.log();
        for needle in ["challenge avp found", "Challenge reply found"] {
            assert!(log.contains(needle), "{name}: no {needle:?} in\n{log}");
        }
    }
    disconnect_and_stop(test, lns, lac);
}

#[test]
fn wrong_secret_is_refused() {
    if !xl2tpd::available() {
        return;
    }
    let (lns_ip, lac_ip) = loopback_pair("wrong_secret_is_refused");
    let options = |listen, secret: &str| Xl2tpdOptions {
        secret: Some(secret.to_string()),
        challenge: true,
        ..Xl2tpdOptions::on(listen)
    };
    let lns = Xl2tpd::start(Xl2tpdEnd::Lns, &options(lns_ip, "right")).expect("start LNS");
    let lac = Xl2tpd::start(
        Xl2tpdEnd::Lac {
            lns: lns.addr(),
            autodial: true,
        },
        &options(lac_ip, "wrong"),
    )
    .expect("start LAC");
    // The LAC checks the Challenge Response in the SCCRP, finds it wrong and sends a StopCCN.
    lac.wait_for("Invalid challenge authentication", 1, UP)
        .unwrap();
    lns.wait_for("Connection closed to", 1, UP).unwrap();
    assert!(lns.log().contains("(Invalid challenge authentication)"));
    assert_eq!(lac.count("Call established"), 0, "{}", lac.log());
    assert_eq!(lns.count("Connection established"), 0, "{}", lns.log());
}

#[test]
fn dial_through_the_control_pipe() {
    if !xl2tpd::available() {
        return;
    }
    let (lns_ip, lac_ip) = loopback_pair("dial_through_the_control_pipe");
    let lns = Xl2tpd::start(Xl2tpdEnd::Lns, &Xl2tpdOptions::on(lns_ip)).expect("start LNS");
    let lac = Xl2tpd::start(
        Xl2tpdEnd::Lac {
            lns: lns.addr(),
            autodial: false,
        },
        &Xl2tpdOptions::on(lac_ip),
    )
    .expect("start LAC");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(lac.count("Connecting to host"), 0, "no autodial");
    lac.control("c cluster").unwrap();
    up(&lac, "LAC");
    up(&lns, "LNS");
    // A second `c cluster` does not add a call while one is up.
    let answer = lac.control_reply("c cluster").unwrap();
    assert!(answer.contains("already active"), "{answer:?}");
    // Hang up by numeric local call ID: CDN, the LNS closes its call.
    let cid = lac.local_call_ids()[0];
    lac.control(&format!("h {cid}")).unwrap();
    lac.wait_for("Hanging up call", 1, UP).unwrap();
    // The LNS logs the CDN as "Connection closed to ADDR, serial 1 (Goodbye!)".
    lns.wait_for("Connection closed to", 1, UP).unwrap();
    assert_eq!(
        lns.count("Connection established to"),
        1,
        "the tunnel stays"
    );
    // Once the call is gone, `c cluster` places a new call in the same tunnel. xl2tpd logs
    // "call_close" before it lets go of the LAC's call (`lac->c`, cleared when the call is
    // destroyed later), and until then answers "already active" and does nothing: ask again
    // until it takes the call, within the same bound.
    lac.wait_for("call_close: Call", 1, UP).unwrap();
    let asked = std::time::Instant::now();
    let answer = loop {
        let answer = lac.control_reply("c cluster").unwrap();
        if !answer.contains("already active") || asked.elapsed() > UP {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(answer.starts_with("00 OK"), "{answer:?}");
    lac.wait_for("Call established with", 2, UP).unwrap();
    lns.wait_for("Call established with", 2, UP).unwrap();
    assert_eq!(lac.count("Connection established to"), 1, "same tunnel");
    // Status goes to the log.
    assert_eq!(lac.control_reply("s cluster").unwrap(), "");
    lac.wait_for("xl2tpd statistics", 1, UP).unwrap();
}

#[test]
fn stop_with_stopccn_tells_the_peer() {
    if !xl2tpd::available() {
        return;
    }
    let (lns, lac) = lns_and_lac("stop_with_stopccn_tells_the_peer", None, 1701);
    let procs = lns.processes();
    let log = lns.stop_with_stopccn();
    assert!(log.contains("Fatal signal 2"), "{log}");
    assert_gone(&procs, "LNS");
    // "Server closing" is the StopCCN's error message.
    lac.wait_for("Server closing", 1, UP).unwrap();
    let procs = lac.processes();
    lac.stop();
    assert_gone(&procs, "LAC");
}

#[test]
fn drop_cleans_up() {
    if !xl2tpd::available() {
        return;
    }
    let (ip, _) = loopback_pair("drop_cleans_up");
    let lns = Xl2tpd::start(Xl2tpdEnd::Lns, &Xl2tpdOptions::on(ip)).expect("start LNS");
    let procs = lns.processes();
    assert_eq!(procs.len(), 2, "unshare and xl2tpd: {procs:?}");
    let (pid, dir) = (lns.pid(), lns.dir().to_path_buf());
    let started = Instant::now();
    drop(lns);
    eprintln!("drop_cleans_up: dropped in {:?}", started.elapsed());
    assert_gone(&procs, "drop");
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(!dir.exists());
}

#[test]
fn a_panicking_test_leaves_nothing_behind() {
    if !xl2tpd::available() {
        return;
    }
    let (lns_ip, lac_ip) = loopback_pair("a_panicking_test_leaves_nothing_behind");
    let mut procs = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lns = Xl2tpd::start(Xl2tpdEnd::Lns, &Xl2tpdOptions::on(lns_ip)).unwrap();
        let lac = Xl2tpd::start(
            Xl2tpdEnd::Lac {
                lns: lns.addr(),
                autodial: true,
            },
            &Xl2tpdOptions::on(lac_ip),
        )
        .unwrap();
        up(&lac, "LAC");
        up(&lns, "LNS");
        // unshare, xl2tpd and the pppd stand-in on each side.
        procs.extend(settle(&lns, 3));
        procs.extend(settle(&lac, 3));
        // resume_unwind: a panic without the panic hook's message and backtrace noise.
        std::panic::resume_unwind(Box::new("deliberate"));
    }));
    assert!(result.is_err());
    assert_eq!(procs.len(), 6);
    assert_gone(&procs, "after the panic");
}

#[test]
fn control_is_bounded_when_xl2tpd_is_gone() {
    if !xl2tpd::available() {
        return;
    }
    let (ip, _) = loopback_pair("control_is_bounded_when_xl2tpd_is_gone");
    let lns = Xl2tpd::start(Xl2tpdEnd::Lns, &Xl2tpdOptions::on(ip)).expect("start LNS");
    let daemon = lns.daemon_pid().expect("xl2tpd pid");
    // xl2tpd, which this test started.
    nix::sys::signal::kill(Pid::from_raw(daemon as i32), Signal::SIGKILL).expect("kill xl2tpd");
    let started = Instant::now();
    let err = lns.control("d cluster").expect_err("xl2tpd is dead");
    assert!(started.elapsed() < Duration::from_secs(6), "{err}");
    let err = lns
        .wait_for("never logged", 1, Duration::from_secs(30))
        .unwrap_err();
    assert!(err.contains("exited"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(6));
}
