//! `l2tpkit probe` as a user runs it, against our own endpoint on loopback (with a tunnel
//! secret, given to the probes too): every probe passes (the cluster probes are not applicable
//! without `--cluster`), the JSON report matches a
//! snapshot once what varies from run to run is taken out, the JUnit file is XML with one
//! testcase per probe, and the exit codes: 0 when everything passed, 2 for an unreachable
//! target and for `--only` with a name the catalog does not have.

use std::net::{SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

use l2tpkit::endpoint::{execute_with, AuthName, EndpointArgs, PppArgs};

const BIN: &str = env!("CARGO_BIN_EXE_l2tpkit");

/// The endpoint's tunnel secret: with it the probes that need one (Challenge, hidden AVPs)
/// apply too.
const SECRET: &str = "probe-secret";

fn endpoint_args() -> EndpointArgs {
    EndpointArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        secret: Some(SECRET.to_string()),
        hidden: false,
        host_name: "l2tpkit-endpoint".to_string(),
        duration: Some(Duration::from_secs(1800)),
        pcap: None,
        json: false,
        status: None,
        ..EndpointArgs::default()
    }
}

/// Starts an endpoint with `ppp` on a thread that runs until the process ends; returns its
/// address once it listens.
fn start_endpoint(ppp: PppArgs) -> SocketAddrV4 {
    let (tx, rx) = mpsc::channel();
    let args = endpoint_args();
    std::thread::spawn(move || {
        if let Err(e) = execute_with(&args, &ppp, |addr| {
            let _ = tx.send(addr);
        }) {
            eprintln!("endpoint: {e:#}");
        }
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the endpoint to listen")
}

/// One endpoint for the whole test binary, on 127.0.0.1 and a port of the kernel's choosing,
/// with a tunnel secret and no PPP.
fn endpoint() -> SocketAddrV4 {
    static ADDR: OnceLock<SocketAddrV4> = OnceLock::new();
    *ADDR.get_or_init(|| start_endpoint(PppArgs::default()))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("l2tpkit-probe-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn probe(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("probe")
        .args(args)
        .output()
        .expect("run l2tpkit probe")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What stays the same from run to run: per probe its name, reference, verdict and reason;
/// the totals. Evidence, durations, pcap paths and the target's port go.
fn normalise(report: &serde_json::Value) -> serde_json::Value {
    let probes: Vec<serde_json::Value> = report["probes"]
        .as_array()
        .expect("probes")
        .iter()
        .map(|p| {
            serde_json::json!({
                "name": p["name"],
                "reference": p["reference"],
                "verdict": p["verdict"],
                "reason": p.get("reason").cloned().unwrap_or(serde_json::Value::Null),
            })
        })
        .collect();
    serde_json::json!({
        "cluster": report["cluster"],
        "probes": probes,
        "totals": report["totals"],
    })
}

#[test]
fn every_probe_passes_against_our_endpoint() {
    let target = endpoint().to_string();
    let dir = scratch("all");
    let junit = dir.join("probe.xml");
    let pcaps = dir.join("pcaps");
    let out = probe(&[
        "--target",
        &target,
        "--secret",
        SECRET,
        // Port 1701 on our side (RFC 2661 §8.1's traditional one), every probe from it; the
        // new sccrq-from-any-source-port uses it as its 1701 side.
        "--bind",
        "127.0.0.90:1701",
        "--json",
        "--junit",
        junit.to_str().expect("utf-8 path"),
        "--pcap-dir",
        pcaps.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["target"], target.as_str());
    assert_eq!(report["cluster"], false);
    let probes = report["probes"].as_array().expect("probes");
    let catalog = probes::probe::catalog::all();
    assert_eq!(probes.len(), catalog.len(), "one result per probe");
    for (p, c) in probes.iter().zip(&catalog) {
        assert_eq!(p["name"], c.name, "catalog order");
        // This endpoint runs without `--auth`: no PPP on its sessions for the PPP family.
        let expected = match c.scope {
            probes::probe::Scope::Any if c.name.starts_with("ppp-") => "not-applicable",
            probes::probe::Scope::Any => "pass",
            probes::probe::Scope::Cluster => "not-applicable",
        };
        assert_eq!(
            p["verdict"],
            expected,
            "{}",
            serde_json::to_string_pretty(p).unwrap()
        );
        assert!(p["duration_ms"].as_f64().is_some_and(|d| d >= 0.0));
        if c.scope == probes::probe::Scope::Any {
            assert!(
                !p["evidence"].as_array().expect("evidence").is_empty(),
                "{}: no evidence",
                c.name
            );
            let pcap = PathBuf::from(p["pcap"].as_str().expect("a pcap per probe"));
            assert_eq!(pcap, pcaps.join(format!("{}.pcap", c.name)));
            assert!(pcap.exists(), "{}", pcap.display());
        }
    }
    // A probe may keep bulk traffic out of its capture; the plain exchange is in it.
    let establishment = pcaps.join("establishment.pcap");
    assert!(
        std::fs::metadata(&establishment).is_ok_and(|m| m.len() > 24),
        "{}: an empty capture",
        establishment.display()
    );

    let xml = std::fs::read_to_string(&junit).expect("the JUnit file");
    let doc = roxmltree::Document::parse(&xml).expect("JUnit is XML");
    let suite = doc.root_element();
    assert_eq!(suite.tag_name().name(), "testsuite");
    assert_eq!(
        suite.attribute("tests"),
        Some(probes.len().to_string().as_str())
    );
    assert_eq!(suite.attribute("failures"), Some("0"));
    assert_eq!(suite.attribute("errors"), Some("0"));
    let cases: Vec<roxmltree::Node> = suite
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    let names: Vec<&str> = cases.iter().filter_map(|c| c.attribute("name")).collect();
    let expected: Vec<&str> = catalog.iter().map(|p| p.name).collect();
    assert_eq!(names, expected, "one testcase per probe, in catalog order");
    for (case, c) in cases.iter().zip(&catalog) {
        let skipped = case.children().any(|n| n.has_tag_name("skipped"));
        // Not applicable is skipped: the cluster probes, and the PPP family here (above).
        assert_eq!(
            skipped,
            c.scope == probes::probe::Scope::Cluster || c.name.starts_with("ppp-"),
            "{}",
            c.name
        );
        assert!(!case
            .children()
            .any(|n| n.has_tag_name("failure") || n.has_tag_name("error")));
    }

    insta::with_settings!({
        snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/../snapshots"),
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_json_snapshot!("probe-endpoint-json", normalise(&report));
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn only_runs_the_named_probes_and_the_table_says_so() {
    let target = endpoint().to_string();
    let out = probe(&[
        "--target",
        &target,
        "--secret",
        SECRET,
        "--only",
        "establishment",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("establishment"), "{table}");
    assert!(
        table.contains("1 passed, 0 failed, 0 not applicable, 0 inconclusive"),
        "{table}"
    );
}

/// `--list` marks the probes that load the target, and they come last (they run last).
#[test]
fn list_marks_the_heavy_probes_and_they_come_last() {
    let out = probe(&["--list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = stdout.lines().filter(|l| !l.starts_with(' ')).collect();
    let heavy: Vec<usize> = (names.iter().enumerate())
        .filter(|(_, l)| l.contains("(heavy: "))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(heavy, [names.len() - 2, names.len() - 1], "{stdout}");
    assert!(
        names[names.len() - 1].starts_with("tunnel-id-uniqueness")
            && names[names.len() - 1].contains("--live-tunnels"),
        "{stdout}"
    );
}

#[test]
fn only_with_an_unknown_name_exits_2() {
    let target = endpoint().to_string();
    let out = probe(&[
        "--target",
        &target,
        "--only",
        "establishment",
        "no-such-probe",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such-probe"), "{stderr}");
    assert!(
        stderr.contains("establishment"),
        "the known names: {stderr}"
    );
    assert!(out.stdout.is_empty(), "{}", text(&out));
}

#[test]
fn an_unreachable_target_exits_2() {
    // A bound socket that never answers: nothing else can take the port meanwhile.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("a silent socket");
    let target = silent.local_addr().expect("its address").to_string();
    let out = probe(&["--target", &target, "--reply-timeout", "0.2", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unreachable"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "no report for a target that never answered"
    );
    drop(silent);
}

/// The PPP subscriber the CHAP endpoint knows.
const USER: &str = "prober@example.net";
const PASSWORD: &str = "probe-pw";

#[test]
fn every_ppp_probe_passes_against_our_chap_endpoint() {
    let dir = scratch("ppp");
    let users = dir.join("users");
    std::fs::write(&users, format!("{USER}:{PASSWORD}\n")).expect("users file");
    let target = start_endpoint(PppArgs {
        auth: Some(AuthName::Chap),
        users: Some(users),
        ..PppArgs::default()
    })
    .to_string();
    let ppp: Vec<&str> = probes::probe::catalog::all()
        .iter()
        .map(|p| p.name)
        .filter(|name| name.starts_with("ppp-"))
        .collect();
    assert!(ppp.len() >= 7, "the PPP family: {ppp:?}");
    let mut args = vec![
        "--target",
        &target,
        "--secret",
        SECRET,
        "--bind",
        "127.0.0.1",
        "--username",
        USER,
        "--password",
        PASSWORD,
        "--json",
        "--only",
    ];
    args.extend(&ppp);
    let out = probe(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let results = report["probes"].as_array().expect("probes");
    let names: Vec<&str> = results.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ppp, "one result per PPP probe, in catalog order");
    for p in results {
        assert_eq!(
            p["verdict"],
            "pass",
            "{}",
            serde_json::to_string_pretty(p).unwrap()
        );
    }
    assert_eq!(report["totals"]["pass"], ppp.len(), "{report:#}");
    let _ = std::fs::remove_dir_all(&dir);
}
