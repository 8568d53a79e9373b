//! Our LAC's sessions as real subscribers of l2tpns with FreeRADIUS, 50 tunnels × 10 sessions,
//! with CHAP and with PAP: LCP, authentication against RADIUS,
//! IPCP with an address from l2tpns's pool, every session IP up, no address twice, ICMP echoes
//! to l2tpns's IPCP address answered with 0% loss (by its namespace's kernel); and a wrong
//! password counted under authentication, exit 1, the tunnels still closed cleanly.
//!
//! Needs root, l2tpns, FreeRADIUS and `target/<profile>/l2tpkit` (`cargo build -p l2tpkit`):
//! under `CI=true` a missing one fails the test, elsewhere the test says why it skips.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use l2tpkit::lab::{default_binary, sys};
use l2tpkit_tests::l2tpns::{self, L2tpns, L2tpnsOptions, PppAuth};
use l2tpkit_tests::netns::snmp;
use l2tpkit_tests::require_that;

/// The acceptance: 50 tunnels × 10 sessions.
const TUNNELS: usize = 50;
const SESSIONS: usize = 10;
const PASSWORD: &str = "subscriber secret";
/// Room for the 500 subscribers (l2tpns keeps none for itself: it answers from its bind
/// address).
const POOL: &str = "198.19.200.0/23";

fn prerequisites() -> Option<PathBuf> {
    if !l2tpns::available() {
        return None;
    }
    let binary = default_binary().ok();
    let why = "no target/<profile>/l2tpkit next to the test binary (cargo build -p l2tpkit)";
    require_that(binary.is_some(), why);
    binary
}

/// `l2tpkit lac` in the initiator namespace, one outstanding SCCRQ per source address (l2tpns
/// takes a second one from a socket still opening a tunnel for a duplicate); exit code and JSON.
fn run_lac(
    harness: &L2tpns,
    binary: &str,
    auth: &str,
    password: &str,
    traffic: &[&str],
) -> (i32, serde_json::Value) {
    let ns = harness.initiator_netns().to_string();
    let target = harness.lns_addr().to_string();
    let bind = format!("{}:0", harness.initiator_addr());
    let (tunnels, sessions) = (TUNNELS.to_string(), SESSIONS.to_string());
    let args = [
        &[
            "netns",
            "exec",
            &ns,
            binary,
            "lac",
            "--target",
            &target,
            "--bind",
            &bind,
            "--initiators",
            &tunnels,
            "--max-outstanding",
            &tunnels,
            // Paced: l2tpns reads one socket with the default receive buffer, and a burst of
            // 500 calls' PPP overflows it (datagrams dropped, PPP restarts, echoes lost).
            "--rate",
            "10",
            "--tunnels",
            &tunnels,
            "--sessions-per-tunnel",
            &sessions,
            "--auth",
            auth,
            "--username",
            "user{n}@example.net",
            "--password",
            password,
            "--hold",
            "3",
            "--setup-timeout",
            "30",
            "--json",
        ][..],
        traffic,
    ]
    .concat();
    let out = sys::run("ip", &args, None, Duration::from_secs(120)).expect("run the LAC");
    eprintln!("LAC stderr:\n{}", out.stderr);
    let report = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|err| panic!("LAC JSON: {err}\n{}", out.stdout));
    (out.status.code().unwrap_or(-1), report)
}

/// Echo Replies the kernel of l2tpns's namespace has sent (`OutEchoReps` of /proc/net/snmp).
fn kernel_echo_replies(harness: &L2tpns) -> u64 {
    snmp(harness.lns_netns(), "Icmp", "OutEchoReps").expect("read /proc/net/snmp")
}

/// One counter of a namespace's /proc/net/snmp (`group` as "Udp", "Icmp").
#[test]
fn chap_every_session_is_ip_up_at_l2tpns_and_a_wrong_password_fails_in_authentication() {
    let Some(binary) = prerequisites() else {
        return;
    };
    let binary = binary.to_string_lossy().into_owned();
    let harness = start(PppAuth::Chap);
    subscribers_are_ip_up(&harness, &binary, "chap");
    wrong_password_fails_in_authentication(&harness, &binary);
}

#[test]
fn pap_every_session_is_ip_up_at_l2tpns() {
    let Some(binary) = prerequisites() else {
        return;
    };
    let binary = binary.to_string_lossy().into_owned();
    let harness = start(PppAuth::Pap);
    subscribers_are_ip_up(&harness, &binary, "pap");
}

fn start(auth: PppAuth) -> L2tpns {
    let users: Vec<(String, String)> = (1..=TUNNELS * SESSIONS)
        .map(|n| (format!("user{n}@example.net"), PASSWORD.to_string()))
        .collect();
    let options = L2tpnsOptions {
        users,
        auth,
        pool: POOL.to_string(),
        initiators: TUNNELS as u8,
        ..L2tpnsOptions::default()
    };
    L2tpns::start(&options).expect("start l2tpns and FreeRADIUS")
}

/// Every subscriber IP up with its own address from the pool, FreeRADIUS accepted each user
/// once, and ICMP echoes through every session answered.
fn subscribers_are_ip_up(harness: &L2tpns, binary: &str, auth: &str) {
    let total = TUNNELS * SESSIONS;
    let replies_before = kernel_echo_replies(harness);
    let drops = |h: &L2tpns| {
        [h.lns_netns(), h.initiator_netns()]
            .map(|ns| snmp(ns, "Udp", "RcvbufErrors").expect("read /proc/net/snmp"))
    };
    let drops_before = drops(harness);
    let (code, report) = run_lac(harness, binary, auth, PASSWORD, &["--traffic-rate", "2"]);
    let drops_after = drops(harness);
    eprintln!(
        "UDP datagrams dropped on a full receive buffer: l2tpns's namespace {}, the LAC's {}",
        drops_after[0] - drops_before[0],
        drops_after[1] - drops_before[1]
    );
    assert_eq!(code, 0, "{report:#}");
    for (key, want) in [
        ("tunnels_established", TUNNELS),
        ("sessions_established", total),
        ("sessions_ip_up", total),
        ("sessions_failed", 0),
        ("duplicate_addresses", 0),
        ("tunnels_closed_cleanly", TUNNELS),
    ] {
        assert_eq!(report[key], want, "{key}: {report:#}");
    }
    for phase in [
        "lcp_opened",
        "authentication",
        "ipcp_opened",
        "icrq_to_ip_up",
    ] {
        eprintln!("{phase}: {}", report[phase]);
        assert_eq!(report[phase]["count"], total, "{phase}: {report:#}");
    }
    // ICMP echoes to l2tpns's own IPCP address, which is its bind address (198.18.0.1, on its
    // namespace's veth): l2tpns passes them to its tun, the kernel of its namespace answers,
    // and the replies come back through the tun into the sessions. About 2 s at 2/s each.
    eprintln!(
        "traffic: {} sent, {} received, {} lost, RTT {}",
        report["traffic_sent"],
        report["traffic_received"],
        report["traffic_lost"],
        report["traffic_rtt"]
    );
    let sent = report["traffic_sent"].as_u64().unwrap_or(0);
    // 2/s for the 2 s between IP up and the teardown's grace: every session had its turns.
    assert!(sent >= total as u64, "{report:#}");
    assert_eq!(report["traffic_received"], sent, "{report:#}");
    assert_eq!(report["traffic_lost"], 0, "{report:#}");
    assert_eq!(report["traffic_loss_pct"], 0.0, "{report:#}");
    assert_eq!(report["traffic_rtt"]["count"], sent, "{report:#}");
    assert_eq!(
        kernel_echo_replies(harness) - replies_before,
        sent,
        "the replies came from the kernel of l2tpns's namespace"
    );
    // l2tpns: "Login by USER at ADDR from …", each address from its pool, none twice.
    let log = harness
        .wait_for("Received StopCCN", TUNNELS, Duration::from_secs(10))
        .unwrap_or_else(|err| panic!("{err}"));
    let mut addresses = BTreeSet::new();
    for n in 1..=total {
        let needle = format!("Login by user{n}@example.net at ");
        let line = log
            .lines()
            .find(|l| l.contains(&needle))
            .unwrap_or_else(|| panic!("no {needle:?} in\n{log}"));
        let rest = line.split(&needle).nth(1).unwrap_or_default();
        let address: Ipv4Addr = rest
            .split_whitespace()
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        let [a, b, c, _] = address.octets();
        assert!(
            [a, b] == [198, 19] && (200..=201).contains(&c),
            "{address} outside the pool {POOL}"
        );
        assert!(addresses.insert(address), "{address} twice:\n{log}");
        assert_eq!(
            harness.logins_ok(&format!("user{n}@example.net")),
            1,
            "{}",
            harness.radius_log()
        );
    }
}

/// A wrong password: l2tpns ends each call with a CDN (no CHAP Failure); the failures are
/// counted under authentication, the run exits 1, the tunnels close cleanly.
fn wrong_password_fails_in_authentication(harness: &L2tpns, binary: &str) {
    let total = TUNNELS * SESSIONS;
    let (code, report) = run_lac(harness, binary, "chap", "not the secret", &[]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["sessions_failed"], total, "{report:#}");
    assert_eq!(report["sessions_established"], 0, "{report:#}");
    assert_eq!(report["tunnels_failed"], 0, "{report:#}");
    assert_eq!(report["tunnels_closed_cleanly"], TUNNELS, "{report:#}");
    let failures = report["failures"].as_object().expect("failures");
    assert!(
        failures
            .keys()
            .all(|why| why.starts_with("PPP authentication: ")),
        "{report:#}"
    );
    let counted: u64 = failures.values().filter_map(|v| v.as_u64()).sum();
    assert_eq!(counted, total as u64, "{report:#}");
    // The second run's users are numbered from 1 again (a new process).
    assert!(harness.logins_incorrect("user1@example.net") >= 1);
}
