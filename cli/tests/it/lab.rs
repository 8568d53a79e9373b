//! The lab for real: namespaces, veths, bridges, captures, and that nothing is left behind after
//! `down`, a panic, or a Ctrl-C half-way through `lab up`. Needs root and `ip`: under
//! `CI=true` their absence fails the test, otherwise the test says why it skips.

use crate::common;

use common::lab_available;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use l2tp::capture::{CaptureReader, RecordKind};
use l2tpkit::lab::state::{RunState, STATE_FILE};
use l2tpkit::lab::{sys, Lab, LabSpec, NodeKind, Topology};

const BIN: &str = env!("CARGO_BIN_EXE_l2tpkit");
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

fn spec(topology: Topology, endpoints: usize, initiators: usize) -> LabSpec {
    LabSpec {
        initiators,
        binary: Some(BIN.into()),
        // The topology alone: these tests send their own datagrams to the roles' addresses.
        roles: false,
        secret: None,
        ..LabSpec::new(topology, endpoints)
    }
}

/// A fresh directory for one test (its own registry when used as TMPDIR).
fn scratch(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "l2tpkit-labtest-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ip(args: &[&str]) -> String {
    sys::ip(args).unwrap_or_else(|e| panic!("{e}"))
}

/// `iface -> ["a.b.c.d/len", ...]` (IPv4) in `namespace`.
fn addresses(namespace: &str) -> BTreeMap<String, Vec<String>> {
    let json: serde_json::Value =
        serde_json::from_str(&ip(&["-n", namespace, "-j", "addr", "show"])).unwrap();
    let mut out = BTreeMap::new();
    for link in json.as_array().unwrap() {
        let name = link["ifname"].as_str().unwrap().to_string();
        let addrs: Vec<String> = link["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["family"] == "inet")
            .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
            .collect();
        assert_ne!(
            link["operstate"].as_str(),
            Some("DOWN"),
            "{name} in {namespace} is down"
        );
        out.insert(name, addrs);
    }
    out
}

fn netns_with(prefix: &str) -> Vec<String> {
    let dash = format!("{prefix}-");
    sys::netns_list()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(&dash))
        .collect()
}

/// Processes whose command line names the prefix (the supervisor, the captures).
fn processes_with(prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(prefix) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

/// Nothing with `prefix` remains: no namespace, no interface in the host, no process whose
/// command line names it, and none of `pids` runs. A PID in `zombie_ok` may remain as a zombie
/// of PID 1 (a detached lab's supervisor: this machine's init reaps orphans only now and then);
/// every other PID must be gone entirely (reaped).
fn assert_nothing_left(prefix: &str, pids: &[(u32, u64)], zombie_ok: &[u32]) {
    assert_eq!(netns_with(prefix), Vec::<String>::new(), "namespaces left");
    let host_links = ip(&["-o", "link", "show"]);
    assert!(
        !host_links.contains(prefix),
        "interfaces left in the host: {host_links}"
    );
    assert_eq!(
        processes_with(prefix),
        Vec::<String>::new(),
        "processes left"
    );
    for &(pid, start) in pids {
        match sys::proc_stat(pid) {
            None => {}
            Some((_, t)) if t != start => {} // the PID was reused by someone else
            Some((state, _)) if zombie_ok.contains(&pid) => {
                assert_eq!(state, 'Z', "pid {pid} still runs")
            }
            Some((state, _)) => panic!("pid {pid} remains (state {state})"),
        }
    }
}

fn recorded_pids(run_dir: &Path) -> Vec<(u32, u64)> {
    RunState::read(&run_dir.join(STATE_FILE))
        .unwrap()
        .processes()
        .into_iter()
        .filter_map(|p| p.pid)
        .collect()
}

fn udp_ok(lab: &Lab, from_ns: &str, from: Ipv4Addr, to_ns: &str, to: Ipv4Addr) {
    let rtt = l2tpkit::lab::udp_check(
        lab.binary(),
        from_ns,
        from,
        to_ns,
        SocketAddrV4::new(to, 7),
        CHECK_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
    eprintln!("{from} ({from_ns}) -> {to} ({to_ns}): {rtt:?}");
}

/// `(src, dst)` of every UDP datagram in a capture.
fn udp_pairs(pcap: &Path) -> Vec<(Ipv4Addr, Ipv4Addr)> {
    let mut reader = CaptureReader::open(pcap).unwrap();
    let mut pairs = Vec::new();
    while let Some(record) = reader.next_datagram() {
        if let RecordKind::Udp(d) = record.unwrap().kind {
            pairs.push((*d.src.ip(), *d.dst.ip()));
        }
    }
    pairs
}

fn a(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Runs `command` to completion, bounded.
fn run_bounded(command: &mut Command, timeout: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    wait_bounded(&mut child, timeout);
    Output {
        status: child.wait().unwrap(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn wait_bounded(child: &mut Child, timeout: Duration) {
    if sys::wait_timeout(child, timeout).unwrap().is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("pid {} did not finish within {timeout:?}", child.id());
    }
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn fig2_three_endpoints_five_initiators() {
    if !lab_available("fig2_three_endpoints_five_initiators") {
        return;
    }
    let started = Instant::now();
    let lab = Lab::up(&spec(Topology::Fig2, 3, 5)).unwrap();
    eprintln!("fig2 up in {:?}", started.elapsed());
    let p = lab.prefix().to_string();
    let ns = |short: &str| format!("{p}-{short}");

    let mut namespaces = netns_with(&p);
    namespaces.sort();
    let mut expected: Vec<String> = ["cm", "nat", "sw", "te1", "te2", "te3", "ti"]
        .iter()
        .map(|s| ns(s))
        .collect();
    expected.sort();
    assert_eq!(namespaces, expected);

    let ti = addresses(&ns("ti"));
    assert_eq!(
        ti[&format!("{p}-tip")],
        (1..=5)
            .map(|k| format!("198.18.1.{k}/16"))
            .collect::<Vec<_>>()
    );
    assert_eq!(ti["lo"], ["127.0.0.1/8"], "lo is up in every namespace");
    let cm = addresses(&ns("cm"));
    assert_eq!(cm[&format!("{p}-cmp")], ["198.18.0.1/16"]);
    assert_eq!(cm[&format!("{p}-cml")], ["198.19.0.1/16"]);
    let nat = addresses(&ns("nat"));
    assert_eq!(nat[&format!("{p}-natp")], ["198.18.0.2/16"]);
    assert_eq!(nat[&format!("{p}-natl")], ["198.19.0.2/16"]);
    for i in 1..=3 {
        let te = addresses(&ns(&format!("te{i}")));
        assert_eq!(te.len(), 2, "lo and the LAN only: {te:?}");
        assert_eq!(
            te[&format!("{p}-te{i}l")],
            [format!("198.19.0.{}/16", 10 + i)]
        );
    }
    let sw = ip(&[
        "-n",
        &ns("sw"),
        "-o",
        "link",
        "show",
        "master",
        &format!("{p}-lan"),
    ]);
    assert_eq!(
        sw.lines().count(),
        5,
        "cm, nat, 3 endpoints on the LAN bridge: {sw}"
    );
    for n in &expected {
        assert_eq!(
            sys::sysctl_get(n, "net.ipv4.ip_forward").unwrap(),
            "0",
            "{n}"
        );
    }

    // Reachability: initiators (also a secondary address) to the cluster address and the NAT's
    // global address; the master and the NAT to every endpoint on the LAN.
    udp_ok(&lab, &ns("ti"), a("198.18.1.1"), &ns("cm"), a("198.18.0.1"));
    udp_ok(&lab, &ns("ti"), a("198.18.1.5"), &ns("cm"), a("198.18.0.1"));
    udp_ok(
        &lab,
        &ns("ti"),
        a("198.18.1.2"),
        &ns("nat"),
        a("198.18.0.2"),
    );
    for i in 1..=3 {
        let te_ns = ns(&format!("te{i}"));
        let te = Ipv4Addr::new(198, 19, 0, 10 + i);
        udp_ok(&lab, &ns("cm"), a("198.19.0.1"), &te_ns, te);
        udp_ok(&lab, &te_ns, te, &ns("nat"), a("198.19.0.2"));
        // A reply to an initiator goes to the NAT's LAN address.
        let route = ip(&["-n", &te_ns, "route", "get", "198.18.1.1"]);
        assert!(
            route.contains(&format!("via 198.19.0.2 dev {p}-te{i}l")),
            "{te_ns}: {route}"
        );
        // A packet from an initiator forwarded by the master passes rp_filter on the LAN.
        let te_text = te.to_string();
        let lan = format!("{p}-te{i}l");
        ip(&[
            "-n",
            &te_ns,
            "route",
            "get",
            &te_text,
            "from",
            "198.18.1.3",
            "iif",
            &lan,
        ]);
    }
    // The initiators' side has no route to the LAN: only the master and the NAT join them.
    assert!(sys::ip(&["-n", &ns("ti"), "route", "get", "198.19.0.11"]).is_err());

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lab.run_dir().join("lab.json")).unwrap())
            .unwrap();
    assert_eq!(json["topology"], "fig2");
    assert_eq!(json["prefix"], p.as_str());
    assert_eq!(json["cluster_address"], "198.18.0.1");
    assert_eq!(json["nat_global"], "198.18.0.2");
    assert_eq!(json["endpoints"][2]["name"], "te3");
    assert_eq!(json["endpoints"][2]["lan"], "198.19.0.13");
    assert_eq!(json["endpoints"][2]["global"], serde_json::Value::Null);
    assert_eq!(json["initiators"].as_array().unwrap().len(), 5);
    assert_eq!(json["initiator_namespace"], ns("ti").as_str());
    assert_eq!(json["processes"].as_array().unwrap().len(), 2);
    // roles.json is what `verify --roles` reads (it rejects the fuller lab.json's extra fields).
    let roles = l2tpkit::verify::read_roles(&lab.run_dir().join("roles.json")).unwrap();
    assert_eq!(roles.cluster_address, Some(a("198.18.0.1")));
    assert_eq!(roles.nat_global, Some(a("198.18.0.2")));
    assert_eq!(roles.nat_lan, Some(a("198.19.0.2")));
    assert_eq!(roles.endpoints.len(), 3);
    assert_eq!(roles.endpoints[0].global, None);

    let mut pids: Vec<(u32, u64)> = lab
        .processes()
        .iter()
        .map(|p| (p.pid, p.start_time))
        .collect();
    pids.extend(recorded_pids(lab.run_dir()));
    let run_dir = lab.run_dir().to_path_buf();
    let started = Instant::now();
    let report = lab.down().unwrap();
    eprintln!("fig2 down in {:?}", started.elapsed());
    assert!(
        report.removed.contains(&format!("netns {p}-sw")),
        "{report:?}"
    );
    assert!(
        report
            .removed
            .iter()
            .any(|r| r.starts_with("process capture-public")),
        "{report:?}"
    );
    assert_nothing_left(&p, &pids, &[]);

    // The captures saw both segments.
    let public = udp_pairs(&run_dir.join("public.pcap"));
    assert!(
        public.contains(&(a("198.18.1.5"), a("198.18.0.1"))),
        "{public:?}"
    );
    assert!(
        public.contains(&(a("198.18.0.1"), a("198.18.1.5"))),
        "{public:?}"
    );
    let lan = udp_pairs(&run_dir.join("lan.pcap"));
    assert!(
        lan.contains(&(a("198.19.0.1"), a("198.19.0.13"))),
        "{lan:?}"
    );
    let state = RunState::read(&run_dir.join(STATE_FILE)).unwrap();
    assert!(state.is_down());
    // Idempotent: the state file says down, and nothing listed exists.
    let again = l2tpkit::lab::teardown(&state, None);
    assert!(
        again.removed.is_empty() && again.problems.is_empty(),
        "{again:?}"
    );
    let _ = std::fs::remove_dir_all(&run_dir);
}

#[test]
fn fig4_endpoints_reach_initiators_directly() {
    if !lab_available("fig4_endpoints_reach_initiators_directly") {
        return;
    }
    let started = Instant::now();
    let lab = Lab::up(&spec(Topology::Fig4, 2, 2)).unwrap();
    eprintln!("fig4 up in {:?}", started.elapsed());
    let p = lab.prefix().to_string();
    let ns = |short: &str| format!("{p}-{short}");
    assert!(lab.namespace(NodeKind::Nat).is_none());
    assert_eq!(netns_with(&p).len(), 5, "sw, ti, cm, te1, te2");

    for i in 1..=2u8 {
        let te_ns = ns(&format!("te{i}"));
        let public = format!("{p}-te{i}p");
        let lan = format!("{p}-te{i}l");
        let global = Ipv4Addr::new(198, 18, 0, 10 + i);
        let local = Ipv4Addr::new(198, 19, 0, 10 + i);
        let te = addresses(&te_ns);
        assert_eq!(te[&public], [format!("{global}/16")]);
        assert_eq!(te[&lan], [format!("{local}/16")]);
        assert_eq!(
            sys::sysctl_get(&te_ns, &format!("net.ipv4.conf.{lan}.rp_filter")).unwrap(),
            "2"
        );

        // Initiators reach the endpoint's global address; the endpoint answers an initiator
        // straight out of its public interface, from its global address.
        udp_ok(&lab, &ns("ti"), a("198.18.1.2"), &te_ns, global);
        udp_ok(&lab, &te_ns, global, &ns("ti"), a("198.18.1.2"));
        let route = ip(&["-n", &te_ns, "route", "get", "198.18.1.1"]);
        assert!(
            route.contains(&format!("dev {public} src {global}")) && !route.contains("via"),
            "{te_ns}: {route}"
        );
        // The master reaches it on the LAN, and a packet from an initiator that the master
        // forwards there passes rp_filter (loose on the LAN).
        udp_ok(&lab, &ns("cm"), a("198.19.0.1"), &te_ns, local);
        let local_text = local.to_string();
        let global_text = global.to_string();
        ip(&[
            "-n",
            &te_ns,
            "route",
            "get",
            &local_text,
            "from",
            "198.18.1.1",
            "iif",
            &lan,
        ]);
        // Strict on the public side: a LAN source arriving there is dropped.
        assert!(sys::ip(&[
            "-n",
            &te_ns,
            "route",
            "get",
            &global_text,
            "from",
            "198.19.0.1",
            "iif",
            &public
        ])
        .is_err());
    }
    udp_ok(&lab, &ns("ti"), a("198.18.1.1"), &ns("cm"), a("198.18.0.1"));

    let d = lab.description();
    assert_eq!(d.nat_global, None);
    assert_eq!(d.endpoints[1].global, Some(a("198.18.0.12")));
    let roles = l2tpkit::verify::read_roles(&d.roles_file).unwrap();
    assert_eq!(roles.nat_global, None);
    assert_eq!(roles.endpoints[1].global, Some(a("198.18.0.12")));
    let mut pids: Vec<(u32, u64)> = recorded_pids(lab.run_dir());
    pids.extend(lab.processes().iter().map(|p| (p.pid, p.start_time)));
    let run_dir = lab.run_dir().to_path_buf();
    lab.down().unwrap();
    assert_nothing_left(&p, &pids, &[]);
    let public = udp_pairs(&run_dir.join("public.pcap"));
    assert!(
        public.contains(&(a("198.18.0.11"), a("198.18.1.2"))),
        "{public:?}"
    );
    let _ = std::fs::remove_dir_all(&run_dir);
}

#[test]
fn two_labs_at_once_do_not_collide() {
    if !lab_available("two_labs_at_once_do_not_collide") {
        return;
    }
    let labs: Vec<Lab> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| s.spawn(|| Lab::up(&spec(Topology::Fig2, 1, 1)).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_ne!(labs[0].prefix(), labs[1].prefix());
    assert_ne!(labs[0].run_dir(), labs[1].run_dir());
    for lab in &labs {
        let ti = lab.namespace(NodeKind::Initiator).unwrap();
        let cm = lab.namespace(NodeKind::Master).unwrap();
        // The same addresses in both labs: each lab is a world of its own.
        udp_ok(lab, ti, a("198.18.1.1"), cm, a("198.18.0.1"));
        assert_eq!(netns_with(lab.prefix()).len(), 5);
    }
    for lab in labs {
        let p = lab.prefix().to_string();
        let run_dir = lab.run_dir().to_path_buf();
        let pids = recorded_pids(&run_dir);
        lab.down().unwrap();
        assert_nothing_left(&p, &pids, &[]);
        let _ = std::fs::remove_dir_all(&run_dir);
    }
}

#[test]
fn a_panic_while_holding_a_lab_removes_it() {
    if !lab_available("a_panic_while_holding_a_lab_removes_it") {
        return;
    }
    let seen = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = Lab::up(&spec(Topology::Fig4, 2, 1)).unwrap();
        *seen.lock().unwrap() = Some((lab.prefix().to_string(), lab.run_dir().to_path_buf()));
        panic!("on purpose, holding lab {}", lab.prefix());
    }));
    assert!(result.is_err());
    let (p, run_dir) = seen.lock().unwrap().clone().unwrap();
    assert_nothing_left(&p, &recorded_pids(&run_dir), &[]);
    assert!(RunState::read(&run_dir.join(STATE_FILE)).unwrap().is_down());
    let _ = std::fs::remove_dir_all(&run_dir);
}

#[test]
fn cli_up_then_down_without_run_dir() {
    if !lab_available("cli_up_then_down_without_run_dir") {
        return;
    }
    // A registry of its own, so `lab down` without --run-dir finds this lab and no other.
    let tmp = scratch("cli");
    let started = Instant::now();
    let out = run_bounded(
        Command::new(BIN)
            .args(["lab", "up", "--topology", "fig4", "--endpoints", "2"])
            .args(["--json", "--no-roles"])
            .env("TMPDIR", &tmp),
        Duration::from_secs(60),
    );
    eprintln!("cli lab up in {:?}", started.elapsed());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = d["prefix"].as_str().unwrap().to_string();
    let run_dir = PathBuf::from(d["run_dir"].as_str().unwrap());
    assert!(run_dir.starts_with(&tmp), "{}", run_dir.display());
    assert_eq!(netns_with(&p).len(), 5);
    // `lab up` returned; the supervisor and the captures run on.
    let pids = recorded_pids(&run_dir);
    assert_eq!(pids.len(), 3, "supervisor and two captures");
    for &(pid, start) in &pids {
        assert!(sys::is_running(pid, start), "pid {pid}");
    }
    let supervisor = d["supervisor_pid"].as_u64().unwrap() as u32;

    let out = run_bounded(
        Command::new(BIN).args(["lab", "down"]).env("TMPDIR", &tmp),
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("netns {p}-sw")), "{stdout}");
    assert!(stdout.contains("process capture-lan"), "{stdout}");
    assert_nothing_left(&p, &pids, &[supervisor]);

    let out = run_bounded(
        Command::new(BIN)
            .args(["lab", "down", "--run-dir"])
            .arg(&run_dir)
            .env("TMPDIR", &tmp),
        Duration::from_secs(60),
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing left to remove"));
    let out = run_bounded(
        Command::new(BIN).args(["lab", "down"]).env("TMPDIR", &tmp),
        Duration::from_secs(60),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no lab to remove"));
    let _ = std::fs::remove_dir_all(&tmp);
}

/// Starts `lab up` slowed down by the test hook, waits until `ready(state)`, sends SIGINT, and
/// checks that it exits 130 having removed everything.
fn interrupt_lab_up(tag: &str, endpoints: u32, delay_ms: u32, ready: impl Fn(&RunState) -> bool) {
    let tmp = scratch(tag);
    let run_dir = tmp.join("run");
    let mut child = Command::new(BIN)
        .args(["lab", "up", "--topology", "fig2", "--no-roles", "--run-dir"])
        .arg(&run_dir)
        .arg("--endpoints")
        .arg(endpoints.to_string())
        .env("L2TPKIT_LAB_STEP_DELAY_MS", delay_ms.to_string())
        .env("TMPDIR", &tmp)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let state_path = run_dir.join(STATE_FILE);
    let mut prefix = String::new();
    wait_for(
        "lab up to get half-way",
        Duration::from_secs(30),
        || match RunState::read(&state_path) {
            Ok(state) if ready(&state) => {
                prefix = state.prefix().to_string();
                true
            }
            _ => false,
        },
    );
    assert!(!netns_with(&prefix).is_empty(), "some namespaces exist");
    let pids_before = recorded_pids(&run_dir);
    sys::send_signal(child.id(), "INT").unwrap();
    let started = Instant::now();
    wait_bounded(&mut child, Duration::from_secs(30));
    eprintln!(
        "{tag}: lab up cleaned up {:?} after SIGINT",
        started.elapsed()
    );
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(out.stdout.is_empty());
    // `lab up` was the supervisor's parent and reaped it: no zombie either.
    let mut pids = recorded_pids(&run_dir);
    pids.extend(pids_before);
    assert_nothing_left(&prefix, &pids, &[]);
    assert!(RunState::read(&state_path).unwrap().is_down());
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn sigint_while_making_namespaces_leaves_nothing() {
    if !lab_available("sigint_while_making_namespaces_leaves_nothing") {
        return;
    }
    interrupt_lab_up("sigint-ns", 4, 150, |state| state.namespaces().len() >= 3);
}

#[test]
fn sigint_after_the_captures_started_leaves_nothing() {
    if !lab_available("sigint_after_the_captures_started_leaves_nothing") {
        return;
    }
    // Long enough steps that SIGINT lands while the second capture is starting.
    interrupt_lab_up("sigint-capture", 1, 250, |state| {
        state
            .processes()
            .iter()
            .any(|p| p.name == "capture-public" && p.pid.is_some())
    });
}

#[test]
fn down_all_stale_after_the_supervisor_was_killed() {
    if !lab_available("down_all_stale_after_the_supervisor_was_killed") {
        return;
    }
    let tmp = scratch("stale");
    let out = run_bounded(
        Command::new(BIN)
            .args(["lab", "up", "--topology", "fig2", "--endpoints", "1"])
            .args(["--json", "--no-roles"])
            .env("TMPDIR", &tmp),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = d["prefix"].as_str().unwrap().to_string();
    let run_dir = PathBuf::from(d["run_dir"].as_str().unwrap());
    let pids = recorded_pids(&run_dir);
    let state = RunState::read(&run_dir.join(STATE_FILE)).unwrap();
    let (supervisor, start) = state.supervisor().unwrap();
    assert!(!state.is_orphaned());
    // The supervisor dies without stopping anything: the captures are orphans now.
    sys::send_signal(supervisor, "KILL").unwrap();
    wait_for("the supervisor to die", Duration::from_secs(5), || {
        !sys::is_running(supervisor, start)
    });
    assert!(RunState::read(&run_dir.join(STATE_FILE))
        .unwrap()
        .is_orphaned());

    let out = run_bounded(
        Command::new(BIN)
            .args(["lab", "down", "--all-stale"])
            .env("TMPDIR", &tmp),
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("process capture-public"), "{stdout}");
    assert!(stdout.contains(&format!("netns {p}-te1")), "{stdout}");
    // Their parent is gone, so PID 1 inherits them and reaps them when it does.
    let all: Vec<u32> = pids.iter().map(|&(pid, _)| pid).collect();
    assert_nothing_left(&p, &pids, &all);
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn sigkill_half_way_then_down_removes_everything() {
    if !lab_available("sigkill_half_way_then_down_removes_everything") {
        return;
    }
    let tmp = scratch("sigkill");
    let run_dir = tmp.join("run");
    let mut child = Command::new(BIN)
        .args([
            "lab",
            "up",
            "--topology",
            "fig4",
            "--endpoints",
            "1",
            "--no-roles",
        ])
        .arg("--run-dir")
        .arg(&run_dir)
        .env("L2TPKIT_LAB_STEP_DELAY_MS", "250")
        .env("TMPDIR", &tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let state_path = run_dir.join(STATE_FILE);
    wait_for("the first capture", Duration::from_secs(30), || {
        RunState::read(&state_path).is_ok_and(|s| {
            s.processes()
                .iter()
                .any(|p| p.name == "capture-public" && p.pid.is_some())
        })
    });
    // No chance to clean up: the state file is all that is left to go by.
    child.kill().unwrap();
    wait_bounded(&mut child, Duration::from_secs(5));
    let state = RunState::read(&state_path).unwrap();
    let prefix = state.prefix().to_string();
    let (supervisor, _) = state.supervisor().unwrap();
    assert!(!netns_with(&prefix).is_empty());
    // The supervisor sees its owner gone (stdin closed, no detach) and stops the capture.
    wait_for("the orphaned lab", Duration::from_secs(10), || {
        RunState::read(&state_path).is_ok_and(|s| s.is_orphaned())
    });
    let out = run_bounded(
        Command::new(BIN)
            .args(["lab", "down", "--run-dir"])
            .arg(&run_dir)
            .env("TMPDIR", &tmp),
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("netns {prefix}-ti")), "{stdout}");
    assert_nothing_left(&prefix, &recorded_pids(&run_dir), &[supervisor]);
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn lab_down_from_outside_then_the_owner_drops_it() {
    if !lab_available("lab_down_from_outside_then_the_owner_drops_it") {
        return;
    }
    let lab = Lab::up(&spec(Topology::Fig2, 1, 1)).unwrap();
    let p = lab.prefix().to_string();
    let run_dir = lab.run_dir().to_path_buf();
    let pids = recorded_pids(&run_dir);
    let out = run_bounded(
        Command::new(BIN)
            .args(["lab", "down", "--run-dir"])
            .arg(&run_dir),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The owner's own down finds nothing left, and reaps the supervisor it started.
    let report = lab.down().unwrap();
    assert!(report.removed.is_empty(), "{report:?}");
    assert_nothing_left(&p, &pids, &[]);
    let _ = std::fs::remove_dir_all(&run_dir);
}

/// One HTTP GET of `addr` from inside `namespace` (a thread that enters it): the body.
fn get_in(namespace: &str, addr: &str) -> String {
    let (namespace, addr) = (namespace.to_string(), addr.to_string());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        sys::enter_netns(&namespace).expect("enter the namespace");
        let mut stream = std::net::TcpStream::connect(&addr)
            .unwrap_or_else(|e| panic!("{addr} from {namespace}: {e}"));
        write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        reply
    })
    .join()
    .expect("the fetching thread")
}

/// `lab up --metrics`: every role serves its metrics on its LAN address, all reachable from the
/// master's namespace, and the scrape file lists them (and is one promtool accepts).
#[test]
fn lab_up_with_metrics_serves_every_role() {
    if !lab_available("lab_up_with_metrics_serves_every_role") {
        return;
    }
    let lab = Lab::up(&LabSpec {
        roles: true,
        captures: false,
        metrics: true,
        ..spec(Topology::Fig2, 2, 1)
    })
    .unwrap();
    let master_ns = lab.namespace(NodeKind::Master).unwrap().to_string();
    for (addr, needle) in [
        (
            "198.19.0.1:9464",
            "l2tpkit_master_endpoint_in_service{endpoint=\"te2\"} 1",
        ),
        ("198.19.0.2:9464", "l2tpkit_nat_table_entries 0"),
        (
            "198.19.0.11:9464",
            "l2tpkit_endpoint_tunnels_established_total 0",
        ),
        ("198.19.0.12:9464", "l2tpkit_endpoint_tunnels_up 0"),
    ] {
        let reply = get_in(&master_ns, addr);
        assert!(reply.starts_with("HTTP/1.1 200"), "{addr}: {reply}");
        assert!(reply.contains(needle), "{addr} lacks {needle}: {reply}");
    }
    let scrape = lab.run_dir().join("prometheus.yml");
    let yml = std::fs::read_to_string(&scrape).expect("prometheus.yml");
    for target in [
        "198.19.0.1:9464",
        "198.19.0.2:9464",
        "198.19.0.12:9464",
        "198.18.1.1:9464",
    ] {
        assert!(yml.contains(target), "{target} missing from {yml}");
    }
    if sys::have("promtool", "--version") {
        let out = Command::new("promtool")
            .args(["check", "config"])
            .arg(&scrape)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let run = lab.run_dir().to_path_buf();
    lab.down().unwrap();
    let _ = std::fs::remove_dir_all(run);
}
