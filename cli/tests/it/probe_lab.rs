//! `l2tpkit probe --cluster` against the lab's FIG 2 and FIG 4 clusters (three endpoints),
//! from the initiator namespace, as root: every probe passes, the cluster ones and the rest;
//! only the NAT probe is not applicable in FIG 4, which has no NAT. The lab's endpoints get a
//! tunnel secret, so the Challenge and hidden-AVP probes run too. The evidence shows the
//! tunnels spread over all three endpoints and the SCCRP coming from the NAT's global address
//! (FIG 2) or from the endpoints' own (FIG 4). The lab goes down at the end, also on failure.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_l2tpkit");
const SECRET: &str = "probe-lab-secret";

use crate::common;

fn root_and_tools() -> bool {
    common::lab_available("probe_lab")
}

/// `lab down` for its run dir when dropped: after the test's last assertion or during the
/// panic of a failed one.
struct LabGuard {
    run_dir: PathBuf,
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        let out = Command::new(BIN)
            .args(["lab", "down", "--run-dir"])
            .arg(&self.run_dir)
            .output();
        match out {
            Ok(out) if out.status.success() => {
                let _ = std::fs::remove_dir_all(&self.run_dir);
            }
            Ok(out) => eprintln!(
                "lab down {} failed: {}",
                self.run_dir.display(),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("lab down {}: {e}", self.run_dir.display()),
        }
    }
}

fn lab_up(topology: &str, run_dir: &Path) -> (LabGuard, serde_json::Value) {
    let _ = std::fs::remove_dir_all(run_dir);
    // The guard first: a `lab up` that fails half-way has cleaned up after itself, and `lab
    // down` on what is left is harmless.
    let guard = LabGuard {
        run_dir: run_dir.to_path_buf(),
    };
    let out = Command::new(BIN)
        .args([
            "lab",
            "up",
            "--json",
            "--endpoints",
            "3",
            "--topology",
            topology,
            "--secret",
            SECRET,
            // PPP on every session, so that the PPP family has something to judge.
            "--ppp",
        ])
        .arg("--run-dir")
        .arg(run_dir)
        .output()
        .expect("run l2tpkit lab up");
    assert!(
        out.status.success(),
        "lab up failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lab: serde_json::Value = serde_json::from_slice(&out.stdout).expect("lab description");
    (guard, lab)
}

fn probe_lab(topology: &str) {
    if !root_and_tools() {
        return;
    }
    let run_dir = std::env::temp_dir().join(format!(
        "l2tpkit-probelab-{topology}-{}",
        std::process::id()
    ));
    let (_guard, lab) = lab_up(topology, &run_dir);
    let namespace = lab["initiator_namespace"]
        .as_str()
        .expect("initiator_namespace");
    let cluster = lab["cluster_address"].as_str().expect("cluster_address");
    let bind = lab["initiator_addresses"][0]
        .as_str()
        .expect("an initiator address");
    let junit = run_dir.join("probe.xml");
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            namespace,
            BIN,
            "probe",
            "--cluster",
            "--json",
        ])
        .args(["--target", cluster, "--bind", bind, "--secret", SECRET])
        .args(["--username", "lab@example.net", "--password", "l2tpkit-lab"])
        .arg("--junit")
        .arg(&junit)
        .arg("--pcap-dir")
        .arg(run_dir.join("probe-pcaps"))
        .output()
        .expect("run l2tpkit probe in the initiator namespace");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("probe JSON ({e}):\n{stdout}\n{stderr}"));
    let probes = report["probes"].as_array().expect("probes");
    assert_eq!(probes.len(), probes::probe::catalog::all().len());
    let evidence = |name: &str| -> String {
        probes
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["evidence"].as_array())
            .map(|lines| {
                lines
                    .iter()
                    .filter_map(|l| l.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };
    for p in probes {
        eprintln!(
            "{topology}  {:<36} {:<15} {:>6.0} ms {}",
            p["name"].as_str().unwrap_or("?"),
            p["verdict"].as_str().unwrap_or("?"),
            p["duration_ms"].as_f64().unwrap_or(f64::NAN),
            p["reason"].as_str().unwrap_or("")
        );
    }
    let mut wrong = Vec::new();
    for p in probes {
        let name = p["name"].as_str().unwrap_or("?");
        let reason = p["reason"].as_str().unwrap_or("");
        // FIG 4 has no NAT.
        // The endpoints run PPP here: an LCP echo without LCP opened is discarded, as RFC 1661
        // §5.8 says, and the probe says so (the PPP family's ppp-lcp-echo checks echoes).
        let may_not_apply = (topology == "fig4" && name == "cluster-nat-no-open-relay")
            || name == "data-plane-echo";
        let ok = p["verdict"] == "pass" || (may_not_apply && p["verdict"] == "not-applicable");
        if !ok {
            wrong.push(format!(
                "{name}: {} ({reason})\n{}",
                p["verdict"],
                evidence(name)
            ));
        }
    }
    if topology == "fig2" {
        let nat = probes
            .iter()
            .find(|p| p["name"] == "cluster-nat-no-open-relay");
        assert_eq!(
            nat.map(|p| &p["verdict"]),
            Some(&"pass".into()),
            "FIG 2 has a NAT"
        );
    }
    assert!(wrong.is_empty(), "{topology}:\n{}", wrong.join("\n\n"));
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    // Three endpoints, each by its Host Name (te1..te3), all got tunnels.
    let spread = evidence("cluster-spread");
    assert!(spread.contains("3 endpoints seen"), "{spread}");
    let reachable = evidence("cluster-every-endpoint-reachable");
    assert!(reachable.contains("3 endpoint(s) answered"), "{reachable}");
    // Where the SCCRP came from: the NAT's global address, or an endpoint's own.
    let reported = evidence("cluster-sccrp-address-reported");
    let sources: Vec<String> = match topology {
        "fig2" => vec![lab["nat_global"].as_str().expect("nat_global").to_string()],
        _ => lab["endpoints"]
            .as_array()
            .expect("endpoints")
            .iter()
            .map(|e| e["global"].as_str().expect("a global address").to_string())
            .collect(),
    };
    assert!(
        sources
            .iter()
            .any(|s| reported.contains(&format!("the SCCRP came from {s}:1701"))),
        "expected an SCCRP from one of {sources:?}:\n{reported}"
    );
    if topology == "fig2" {
        let relay = evidence("cluster-nat-no-open-relay");
        assert!(relay.contains("silence on port"), "{relay}");
        assert!(
            relay.contains("never saw the HELLO from the port with no entry"),
            "{relay}"
        );
    }

    let xml = std::fs::read_to_string(&junit).expect("the JUnit file");
    let doc = roxmltree::Document::parse(&xml).expect("JUnit is XML");
    let cases = doc
        .root_element()
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .count();
    assert_eq!(cases, probes.len());
}

#[test]
fn fig2_cluster_passes_every_probe() {
    probe_lab("fig2");
}

#[test]
fn fig4_cluster_passes_every_probe() {
    probe_lab("fig4");
}
