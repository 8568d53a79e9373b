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

/// Every packet of the public segment's capture between an initiator (198.18.1.x) and the
/// cluster: (source, destination) as `decode --json` names them.
fn initiator_packets(pcap: &std::path::Path) -> Vec<(String, String)> {
    let out = Command::new(BIN)
        .args(["decode", "--json"])
        .arg(pcap)
        .output()
        .expect("decode");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|p| {
            let at = |k: &str| p[k].as_str().unwrap_or_default().to_string();
            (at("src"), at("dst"))
        })
        .filter(|(src, dst)| src.starts_with("198.18.1.") || dst.starts_with("198.18.1."))
        .collect()
}

/// Our endpoints answer an initiator sending from port 1701 and one sending from an ephemeral
/// port, each at the port it sent from: through FIG 2's NAT and on FIG 4's direct path.
#[test]
fn our_endpoints_answer_port_1701_and_an_ephemeral_one_through_fig2_and_fig4() {
    if !lab_available("our_endpoints_answer_port_1701_and_an_ephemeral_one_through_fig2_and_fig4") {
        return;
    }
    for topology in ["fig2", "fig4"] {
        for port in ["1701", "0"] {
            let run_dir = std::env::temp_dir().join(format!(
                "l2tpkit-port{port}-{topology}-{}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&run_dir);
            let scratch = Scratch::new(run_dir.clone());
            let bind = format!("0.0.0.0:{port}");
            let args = [
                "--topology",
                topology,
                "--endpoints",
                "2",
                "--initiators",
                "2",
                "--tunnels",
                "20",
                "--sessions-per-tunnel",
                "1",
                "--rate",
                "50",
                "--hold",
                "1",
                "--bind",
                &bind,
            ];
            let summary = common::lab_run_json(&args, &run_dir, &[]);
            let text = summary.to_string();
            assert_eq!(
                summary["lac"]["tunnels_established"], 20,
                "{topology} {port}: {text}"
            );
            assert_eq!(
                summary["lac"]["sessions_ip_up"], 20,
                "{topology} {port}: {text}"
            );
            assert_eq!(
                summary["lac"]["tunnels_closed_cleanly"], 20,
                "{topology} {port}: {text}"
            );
            assert_eq!(
                summary["verify_conforming"], 20,
                "{topology} {port}: {text}"
            );
            let packets = initiator_packets(&run_dir.join("public.pcap"));
            assert!(packets.len() >= 20 * 4, "{topology} {port}: {packets:?}");
            let ours = |a: &str| a.starts_with("198.18.1.");
            for (src, dst) in &packets {
                let initiator = if ours(src) { src } else { dst };
                let initiator_port = initiator.rsplit(':').next().unwrap_or_default();
                if port == "1701" {
                    assert_eq!(initiator_port, "1701", "{topology}: {src} → {dst}");
                } else {
                    assert_ne!(initiator_port, "1701", "{topology}: {src} → {dst}");
                }
            }
            drop(scratch);
        }
    }
}
