//! `l2tpkit lab run` end to end, as root: FIG 2 and FIG 4, 3 endpoints, 300 tunnels from 30
//! initiator addresses. Everything comes up, least-load spreads the tunnels within ±10% of
//! even, and `verify` finds every tunnel conforming to FIG 3 (FIG 2) or FIG 5 (FIG 4).

use std::process::Command;

fn root_and_tools() -> bool {
    let root = l2tpkit::lab::sys::is_root();
    let tcpdump = Command::new("sh")
        .args(["-c", "command -v tcpdump"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !(root && tcpdump) {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but the lab needs root and tcpdump (root: {root}, tcpdump: {tcpdump})");
        }
        eprintln!("SKIPPED: the lab needs root and tcpdump");
        return false;
    }
    true
}

fn lab_run(topology: &str, sequence: &str) {
    if !root_and_tools() {
        return;
    }
    let run_dir =
        std::env::temp_dir().join(format!("l2tpkit-labrun-{topology}-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_l2tpkit"))
        .args(["lab", "run", "--json", "--topology", topology])
        .arg("--run-dir")
        .arg(&run_dir)
        .output()
        .expect("run l2tpkit lab run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "lab run failed:\n{stdout}\n{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("JSON summary");
    assert_eq!(summary["lac"]["tunnels_established"], 300, "{stdout}");
    assert_eq!(summary["lac"]["sessions_established"], 300, "{stdout}");
    assert_eq!(summary["verify_tunnels"], 300, "{stdout}");
    assert_eq!(summary["verify_conforming"], 300, "{stdout}");
    assert_eq!(summary["verify_variants"][0], sequence, "{stdout}");
    let endpoints = summary["endpoints"].as_array().expect("endpoints");
    assert_eq!(endpoints.len(), 3);
    for e in endpoints {
        let dispatched = e["dispatched"].as_u64().unwrap_or(0);
        assert!((90..=110).contains(&dispatched), "uneven spread: {stdout}");
    }
    // The lab is gone: no namespace with its prefix remains.
    let lab: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("lab.json")).expect("lab.json"))
            .expect("lab.json is JSON");
    let prefix = lab["prefix"].as_str().expect("prefix").to_string();
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&netns.stdout).contains(&prefix),
        "namespaces of {prefix} left behind"
    );
    let _ = std::fs::remove_dir_all(&run_dir);
}

#[test]
fn fig2_lab_run_conforms_to_fig3() {
    lab_run("fig2", "Fig3");
}

#[test]
fn fig4_lab_run_conforms_to_fig5() {
    lab_run("fig4", "Fig5");
}
