//! Bad input to a cluster with an agent (issue 15), on loopback with real processes: `l2tpkit
//! master`, our endpoint te1, and te2, an agent whose LNS does not answer (nothing listens on
//! its address). Each of these is refused, counted and named in the master's log, and nothing
//! is sent where it does not belong:
//!
//! - the agent reports its silent LNS unresponsive; the master gives it no new tunnels and
//!   places the LAC's retransmissions on te1, where every tunnel comes up;
//! - a load report sealed in version 1 of the format;
//! - a tunnel claim, validly sealed, for a tunnel another agent holds: the packets of that
//!   tunnel keep going to the first holder.
//!
//! Needs root (the master's raw socket and the agent's packet socket); under `CI=true` a
//! missing one fails the test.

use std::net::{SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use l2tpkit::lab::sys;
use l2tpkit::lac::{execute as run_lac, LacArgs, PppLevel};
use reference::cluster::{
    seal, seal_claims, ClaimOp, EndpointState, LoadReport, TunnelClaim, TunnelClaims,
};
use reference::master::{MasterStatus, MemberState};

use crate::common::{wait_until, Scratch};

const BIN: &str = env!("CARGO_BIN_EXE_l2tpkit");
const KEY: &str = "agent-bad-input-key";
const MASTER: &str = "127.79.1.1";
const TE1: &str = "127.79.1.11";
/// The agent's LNS: nothing listens there.
const SILENT_LNS: &str = "127.79.1.12";

/// A process of this test: killed by PID and waited for when dropped.
struct Role(Child);

impl Drop for Role {
    fn drop(&mut self) {
        let _ = sys::send_signal(self.0.id(), "INT");
        for _ in 0..50 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path, name: &str, args: &[String]) -> Role {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("a log file");
    Role(
        Command::new(BIN)
            .args(args)
            .env("L2TPKIT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}")),
    )
}

fn status(control: &Path) -> Option<MasterStatus> {
    let reply = reference::control::request(control, "status").ok()?;
    serde_json::from_value(reply).ok()
}

fn log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
}

#[test]
fn an_unanswering_lns_an_old_report_and_a_stolen_claim_are_refused_and_named() {
    if !sys::is_root() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI=true but not root: the master and the agent need raw and packet sockets"
        );
        eprintln!("SKIPPED: agent_bad_input needs root");
        return;
    }
    let scratch = Scratch::new(
        std::env::temp_dir().join(format!("l2tpkit-agent-bad-input-{}", std::process::id())),
    );
    let dir: PathBuf = scratch.0.clone();
    std::fs::create_dir_all(&dir).expect("the scratch directory");
    let control = dir.join("master.sock");
    let s = |v: &str| v.to_string();
    let _master = start(
        &dir,
        "master",
        &[
            s("master"),
            format!("--cluster={MASTER}"),
            format!("--lan={MASTER}"),
            format!("--report-key={KEY}"),
            format!("--control={}", control.display()),
            s("--duration=60"),
        ],
    );
    let _te1 = start(
        &dir,
        "te1",
        &[
            s("endpoint"),
            format!("--listen={TE1}:1701"),
            format!("--master={MASTER}"),
            format!("--report-key={KEY}"),
            s("--name=te1"),
            s("--tunnel-ids=1000-1999"),
            s("--report-interval=0.2"),
            s("--duration=60"),
        ],
    );
    let _te2 = start(
        &dir,
        "te2",
        &[
            s("agent"),
            format!("--lns={SILENT_LNS}"),
            s("--interface=lo"),
            format!("--master={MASTER}"),
            format!("--report-key={KEY}"),
            s("--name=te2"),
            s("--report-interval=0.2"),
            s("--duration=60"),
        ],
    );
    wait_until(
        "te1 and te2 in service at the master",
        Duration::from_secs(10),
        || status(&control),
        |s| {
            s.as_ref().is_some_and(|s| {
                s.endpoints.len() == 2
                    && s.endpoints
                        .iter()
                        .all(|e| e.state == MemberState::InService)
            })
        },
    );

    // Four tunnels: least-load puts two on te2, whose LNS never answers. While the LAC
    // retransmits, te2's agent says so (after 3 s) and the master takes te2 out of placement.
    let lac = std::thread::spawn(|| {
        run_lac(&LacArgs {
            target: format!("{MASTER}:1701").parse().unwrap(),
            bind: "127.79.2.1:0".parse().unwrap(),
            tunnels: 4,
            sessions_per_tunnel: 1,
            hold: Duration::from_millis(500),
            setup_timeout: Some(Duration::from_secs(30)),
            // The SCCRP comes from te1's own address, not the one dialled.
            any_source: true,
            ppp: PppLevel::Off,
            json: true,
            ..LacArgs::default()
        })
    });
    wait_until(
        "te2 reported unresponsive",
        Duration::from_secs(10),
        || status(&control),
        |s| {
            s.as_ref().is_some_and(|s| {
                s.endpoints
                    .iter()
                    .any(|e| e.name == "te2" && e.state == MemberState::Unresponsive)
            })
        },
    );
    let (report, _) = lac.join().expect("the LAC thread").expect("lac");
    assert!(report.success(), "{report}");
    let now = status(&control).expect("the master answers");
    let te2 = now.endpoints.iter().find(|e| e.name == "te2").unwrap();
    let te1 = now.endpoints.iter().find(|e| e.name == "te1").unwrap();
    eprintln!("te1 {te1:?}\nte2 {te2:?}");
    assert_eq!(te2.sccrq_redispatched_away, 2, "{te2:?}");
    assert_eq!(
        te1.dispatched_total, 4,
        "every tunnel ended on te1: {te1:?}"
    );
    assert!(log(&dir, "master").contains("te2"));
    assert!(
        log(&dir, "master").contains("leaves SCCRQs unanswered"),
        "{}",
        log(&dir, "master")
    );

    // A report of another release: version 1.
    let reports = UdpSocket::bind("127.79.2.2:0").unwrap();
    let to: SocketAddrV4 = format!("{MASTER}:1702").parse().unwrap();
    let report_of = |name: &str, lan: &str| LoadReport {
        endpoint: name.into(),
        lan_addr: lan.parse().unwrap(),
        global_addr: None,
        tunnels: 0,
        sessions: 0,
        capacity: 1000,
        state: EndpointState::InService,
        sccrq_received: 0,
        tunnel_ids: Vec::new(),
        sequence: u64::MAX / 2,
    };
    let mut old = seal(&report_of("te9", "127.79.1.19"), KEY.as_bytes());
    old[4] = 1;
    reports.send_to(&old, to).unwrap();

    // te3 joins (a valid report) and claims a tunnel; then te4 claims the same one.
    reports
        .send_to(&seal(&report_of("te3", "127.79.1.13"), KEY.as_bytes()), to)
        .unwrap();
    reports
        .send_to(&seal(&report_of("te4", "127.79.1.14"), KEY.as_bytes()), to)
        .unwrap();
    let lac: SocketAddrV4 = "127.79.2.3:1701".parse().unwrap();
    let claim = |name: &str| {
        seal_claims(
            &TunnelClaims {
                endpoint: name.into(),
                sequence: u64::MAX / 2,
                claims: vec![TunnelClaim {
                    op: ClaimOp::Claim,
                    initiator: lac,
                    tunnel_id: 4242,
                }],
            },
            KEY.as_bytes(),
        )
    };
    wait_until(
        "te3 and te4 known to the master",
        Duration::from_secs(5),
        || status(&control),
        |s| s.as_ref().is_some_and(|s| s.endpoints.len() == 4),
    );
    reports.send_to(&claim("te3"), to).unwrap();
    wait_until(
        "te3's claim taken",
        Duration::from_secs(5),
        || status(&control),
        |s| s.as_ref().is_some_and(|s| s.claims.claimed == 1),
    );
    reports.send_to(&claim("te4"), to).unwrap();
    let after = wait_until(
        "te4's claim refused, the old report counted",
        Duration::from_secs(5),
        || status(&control),
        |s| {
            s.as_ref()
                .is_some_and(|s| s.claims.conflict == 1 && s.reports.bad_version == 1)
        },
    )
    .expect("status");
    // Nothing misrouted: the claimed tunnel's packets go to te3, the first holder.
    let hello = l2tp::wire::ControlMessage {
        header: l2tp::wire::HeaderRepr::control(4242, 0, 1, 1),
        avps: vec![l2tp::wire::AvpRepr::mandatory(
            l2tp::wire::AvpValue::MessageType(l2tp::wire::MessageType::Hello),
        )],
    }
    .to_vec(None)
    .unwrap();
    // te3's report again: still fresh, so its tunnel's packets flow.
    reports
        .send_to(
            &seal(
                &LoadReport {
                    sequence: u64::MAX / 2 + 1,
                    ..report_of("te3", "127.79.1.13")
                },
                KEY.as_bytes(),
            ),
            to,
        )
        .unwrap();
    let socket = UdpSocket::bind(lac).unwrap();
    socket.send_to(&hello, format!("{MASTER}:1701")).unwrap();
    let forwarded = wait_until(
        "the HELLO forwarded to te3",
        Duration::from_secs(5),
        || status(&control),
        |s| {
            s.as_ref().is_some_and(|s| {
                s.endpoints
                    .iter()
                    .any(|e| e.name == "te3" && e.forwarded == 1)
            })
        },
    )
    .expect("status");
    let te4 = forwarded
        .endpoints
        .iter()
        .find(|e| e.name == "te4")
        .unwrap();
    assert_eq!(te4.forwarded, 0, "{te4:?}");
    assert_eq!(after.claimed_tunnels, 1);
    let master_log = log(&dir, "master");
    assert!(
        master_log.contains("version 1 is not supported"),
        "{master_log}"
    );
    assert!(
        master_log.contains("another endpoint holds that tunnel")
            && master_log.contains("te4")
            && master_log.contains("te3"),
        "{master_log}"
    );
}
