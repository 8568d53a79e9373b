//! The pieces of a takeover, one at a time, in a throwaway FIG 4 lab: ARP probes find the
//! master's address held while the master has it and free once its links are down; a claim
//! adds the addresses and its gratuitous ARP moves the initiators' neighbour entry; with
//! SO_REUSEADDR a master socket on the cluster address sits beside an endpoint's socket on
//! 0.0.0.0:1701 and each gets its own datagrams; a raw send to the endpoint's own LAN address
//! loops back to its socket with the initiator's source. Then `l2tpkit lab kill master` on a
//! lab that `lab up` left running: an endpoint takes over. Needs root and `ip`.

use crate::common;

use common::{lab_available, mac_of};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use l2tp::capture::build_ipv4_udp;
use l2tpkit::lab::{kill_master_links, sys, Lab, LabSpec, Topology};
use netio::iface::interface_with_address;
use netio::udp::{udp_socket, RawSender};
use reference::claim::{self, ClaimAddress, ClaimPlan, Probe};

const BIN: &str = env!("CARGO_BIN_EXE_l2tpkit");
const CLUSTER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const MASTER_LAN: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);

fn datagram(socket: &UdpSocket) -> Option<(String, SocketAddrV4)> {
    let mut buf = [0u8; 256];
    match socket.recv_from(&mut buf) {
        Ok((len, std::net::SocketAddr::V4(from))) => {
            Some((String::from_utf8_lossy(&buf[..len]).into_owned(), from))
        }
        _ => None,
    }
}

#[test]
fn probe_claim_announce_and_share_the_l2tp_port() {
    if !lab_available("probe_claim_announce_and_share_the_l2tp_port") {
        return;
    }
    let lab = Lab::up(&LabSpec {
        binary: Some(BIN.into()),
        roles: false,
        captures: false,
        ..LabSpec::new(Topology::Fig4, 1)
    })
    .expect("lab up");
    let p = lab.prefix().to_string();
    let (ti, cm, te1) = (format!("{p}-ti"), format!("{p}-cm"), format!("{p}-te1"));
    let (te1p, te1l) = (format!("{p}-te1p"), format!("{p}-te1l"));
    // The initiator talks to the master once, so its neighbour entry holds the master's MAC.
    l2tpkit::lab::udp_check(
        lab.binary(),
        &ti,
        Ipv4Addr::new(198, 18, 1, 1),
        &cm,
        SocketAddrV4::new(CLUSTER, 7),
        Duration::from_secs(5),
    )
    .expect("initiator to master");
    let cm_mac = mac_of(&cm, &format!("{p}-cmp"));
    let te1_mac = mac_of(&te1, &te1p);
    let plan = ClaimPlan::new(vec![
        ClaimAddress {
            interface: te1p.clone(),
            addr: CLUSTER,
            prefix_len: 16,
        },
        ClaimAddress {
            interface: te1l.clone(),
            addr: MASTER_LAN,
            prefix_len: 16,
        },
    ]);

    // Everything below runs on a thread of its own, moved between the lab's namespaces:
    // sockets stay in the namespace they were made in.
    let (held, freed, addresses_after, neighbour, master_got, endpoint_got, looped) = {
        let (plan, te1, ti) = (plan.clone(), te1.clone(), ti.clone());
        let plan_for_kill = lab.plan().clone();
        std::thread::spawn(move || {
            sys::enter_netns(&te1).unwrap();
            let held = claim::probe(&plan).expect("probe");
            kill_master_links(&plan_for_kill).expect("the master's links down");
            let freed = claim::probe(&plan).expect("probe");
            let claimed = claim::take(&plan).expect("claim");
            let addresses_after = (
                interface_with_address(CLUSTER).ok(),
                interface_with_address(MASTER_LAN).ok(),
            );
            let neighbour =
                sys::ip(&["-n", &ti, "neigh", "show", &CLUSTER.to_string()]).expect("ip neigh");
            // The endpoint's socket, then the master's beside it.
            let endpoint = udp_socket(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 1701), true)
                .expect("endpoint socket");
            let master = udp_socket(SocketAddrV4::new(CLUSTER, 1701), true).expect("master socket");
            for s in [&endpoint, &master] {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            }
            // The master forwards to its own endpoint: a raw packet to te1's LAN address with
            // the initiator's source loops back to the endpoint's socket.
            let mut packet = Vec::new();
            build_ipv4_udp(
                SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 1), 40000),
                SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 11), 1701),
                b"forwarded",
                7,
                &mut packet,
            )
            .unwrap();
            RawSender::new().unwrap().send(&packet).expect("raw send");
            let looped = datagram(&endpoint);
            // From an initiator: one datagram to each address.
            sys::enter_netns(&ti).unwrap();
            let initiator =
                UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 1), 0)).unwrap();
            initiator
                .send_to(b"to-cluster", SocketAddrV4::new(CLUSTER, 1701))
                .unwrap();
            initiator
                .send_to(
                    b"to-endpoint",
                    SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 11), 1701),
                )
                .unwrap();
            let master_got = datagram(&master).map(|(text, _)| text);
            let endpoint_got = datagram(&endpoint).map(|(text, _)| text);
            sys::enter_netns(&te1).unwrap();
            claimed.release().expect("release");
            (
                held,
                freed,
                addresses_after,
                neighbour,
                master_got,
                endpoint_got,
                looped,
            )
        })
        .join()
        .expect("the namespace thread")
    };
    match &held {
        Probe::Held { address, mac } => {
            assert_eq!(address.addr, CLUSTER);
            assert_eq!(claim::format_mac(*mac), cm_mac);
        }
        Probe::Free => panic!("the master's address looked free while the master held it"),
    }
    assert_eq!(freed, Probe::Free);
    assert_eq!(
        addresses_after,
        (Some(te1p.clone()), Some(te1l.clone())),
        "claimed on te1"
    );
    // The announcement moved the initiator's entry to te1 without any traffic from it.
    assert!(neighbour.contains(&te1_mac), "{neighbour} (te1 {te1_mac})");
    assert_eq!(master_got.as_deref(), Some("to-cluster"));
    assert_eq!(endpoint_got.as_deref(), Some("to-endpoint"));
    let (text, from) = looped.expect("the raw packet looped back");
    assert_eq!(text, "forwarded");
    assert_eq!(from, SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 1), 40000));
    // Released: the addresses are gone from te1.
    let left = sys::ip(&["-n", &te1, "-4", "addr", "show"]).unwrap();
    assert!(
        !left.contains("198.18.0.1/") && !left.contains("198.19.0.1/"),
        "{left}"
    );
    let run_dir = lab.run_dir().to_path_buf();
    lab.down().expect("lab down");
    let _ = std::fs::remove_dir_all(run_dir);
}

#[test]
fn lab_kill_master_on_a_lab_left_up_hands_it_to_te1() {
    if !lab_available("lab_kill_master_on_a_lab_left_up_hands_it_to_te1") {
        return;
    }
    let run_dir: PathBuf =
        std::env::temp_dir().join(format!("l2tpkit-labkill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run_dir);
    let up = Command::new(BIN)
        .args(["lab", "up", "--topology", "fig4", "--endpoints", "2"])
        .arg("--run-dir")
        .arg(&run_dir)
        .output()
        .expect("lab up");
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let lab_cmd = |args: &[&str]| {
        Command::new(BIN)
            .arg("lab")
            .args(args)
            .arg("--run-dir")
            .arg(&run_dir)
            .output()
            .expect("l2tpkit lab")
    };
    let nobody = lab_cmd(&["kill", "te9"]);
    assert!(!nobody.status.success());
    assert!(
        String::from_utf8_lossy(&nobody.stderr).contains("no process named \"te9\""),
        "{}",
        String::from_utf8_lossy(&nobody.stderr)
    );
    let killed = lab_cmd(&["kill", "master"]);
    assert!(
        killed.status.success(),
        "{}",
        String::from_utf8_lossy(&killed.stderr)
    );
    let status_file = run_dir.join("te1-master-status.json");
    let start = Instant::now();
    let status = loop {
        let status = std::fs::read_to_string(&status_file)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok());
        if let Some(status) = status {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "te1 did not take over; its log: {}",
            std::fs::read_to_string(run_dir.join("te1.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status["holder"]["takeover"]["endpoint"], "te1", "{status}");
    assert_eq!(status["holder"]["takeover"]["rank"], 0, "{status}");
    let log = std::fs::read_to_string(run_dir.join("te1.log")).unwrap_or_default();
    assert!(log.contains("took the master over from master"), "{log}");
    // Killed once is enough: it is not running any more.
    assert!(!lab_cmd(&["kill", "master"]).status.success());
    let down = lab_cmd(&["down"]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    let _ = std::fs::remove_dir_all(&run_dir);
}
