//! RFC 2661 §8.1, both ways (issue 18): "The recipient picks a free port on its own system
//! (which may or may not be 1701), and sends its reply to the initiator's UDP port and
//! address". The LAC follows an SCCRP from another port of the target's address without any
//! flag; one from another address (a FIG 4 endpoint) it drops, counts and names, and follows
//! with `--any-source`.
//!
//! The FIG 4 test needs root and `ip` (CI has them; without CI=true it says why it skips).

use crate::common;

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{lab_available, Scratch};
use l2tp::conn::tunnel::TunnelConfig;
use l2tp::conn::tunnels::TunnelSet;
use l2tp::time::Instant;
use l2tpkit::lab::{Lab, LabSpec, NodeKind, Topology};

const BIN: &str = env!("CARGO_BIN_EXE_l2tpkit");

/// A small LNS that hears SCCRQs on one port and answers, and speaks from then on, from
/// another port of the same address: what §8.1 allows and a connected LAC socket would drop.
struct OtherPortResponder {
    listen: SocketAddrV4,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl OtherPortResponder {
    fn start(ip: &str) -> OtherPortResponder {
        let first = UdpSocket::bind(format!("{ip}:0")).expect("bind the listening port");
        let other = UdpSocket::bind(format!("{ip}:0")).expect("bind the answering port");
        for s in [&first, &other] {
            s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        }
        let listen = match first.local_addr().unwrap() {
            SocketAddr::V4(v4) => v4,
            other => panic!("{other}"),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let config = TunnelConfig {
                    host_name: "other-port-lns".into(),
                    ..TunnelConfig::default()
                };
                let mut set = TunnelSet::new(config, 7, true);
                let epoch = std::time::Instant::now();
                let now = || Instant::from_micros(epoch.elapsed().as_micros() as u64);
                let (mut buf, mut out) = (vec![0u8; 4096], Vec::new());
                let mut sccrqs_on_first = 0;
                while !stop.load(Ordering::Relaxed) {
                    for (socket, first) in [(&first, true), (&other, false)] {
                        while let Ok((n, SocketAddr::V4(from))) = socket.recv_from(&mut buf) {
                            sccrqs_on_first += u64::from(first);
                            set.handle(now(), from, &buf[..n]);
                        }
                    }
                    set.handle_timeout(now());
                    while set.poll_event().is_some() {}
                    // Every answer from the other port.
                    while let Some(to) = set.poll_transmit(now(), &mut out) {
                        let _ = other.send_to(&out, to);
                    }
                }
                sccrqs_on_first
            })
        };
        OtherPortResponder {
            listen,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for OtherPortResponder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lac(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("lac")
        .args(args)
        .output()
        .expect("run lac");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_lns_answering_from_another_port_of_the_target_needs_no_flag() {
    let lns = OtherPortResponder::start("127.0.0.95");
    let target = lns.listen.to_string();
    let (code, stdout, stderr) = lac(&[
        "--target",
        &target,
        "--tunnels",
        "5",
        "--sessions-per-tunnel",
        "1",
        "--ppp",
        "off",
        "--echo-rate",
        "0",
        "--hold",
        "1",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("tunnels  5/5 established"), "{stdout}");
    assert!(stdout.contains("5/5 tunnels closed cleanly"), "{stdout}");
    assert!(!stdout.contains("SCCRPs came from"), "{stdout}");
    drop(lns);
}

#[test]
fn fig4_replies_from_the_endpoints_are_named_and_followed_with_any_source() {
    if !lab_available("fig4_replies_from_the_endpoints_are_named_and_followed_with_any_source") {
        return;
    }
    let run_dir = std::env::temp_dir().join(format!("l2tpkit-anysrc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run_dir);
    let scratch = Scratch::new(run_dir.clone());
    let lab = Lab::up(&LabSpec {
        binary: Some(BIN.into()),
        run_dir: Some(run_dir.join("lab")),
        ..LabSpec::new(Topology::Fig4, 2)
    })
    .expect("lab up");
    let ns = lab
        .namespace(NodeKind::Initiator)
        .expect("initiator ns")
        .to_string();
    let run = |extra: &[&str]| {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns, BIN, "lac", "--target", "198.18.0.1"])
            .args(["--tunnels", "6", "--ppp", "off", "--hold", "1"])
            .args(["--setup-timeout", "4", "--max-retransmits", "2"])
            .args(extra)
            .output()
            .expect("run lac");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    // Without --any-source: fails, but says where the SCCRPs came from and what to do.
    let (code, stdout) = run(&[]);
    assert_eq!(code, 1, "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.contains("SCCRPs came from"))
        .unwrap_or_else(|| panic!("no line naming the SCCRPs' sources:\n{stdout}"));
    assert!(line.contains("198.18.0."), "{line}");
    assert!(
        !line.contains("198.18.0.1,") && !line.ends_with("198.18.0.1"),
        "{line}"
    );
    assert!(line.contains("--any-source"), "{line}");
    // With it: every tunnel up and closed.
    let (code, stdout) = run(&["--any-source"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("tunnels  6/6 established"), "{stdout}");
    lab.down().expect("lab down");
    drop(scratch);
}
