//! `--endpoint-kind xl2tpd`: a FIG 2 lab whose three endpoint namespaces each run an unmodified
//! xl2tpd and an `l2tpkit agent` beside it, and nothing of them left after `down`. Needs root,
//! `ip`, xl2tpd, unshare and /usr/sbin/pppd (the pppd stand-in is mounted over it): under
//! `CI=true` a missing one fails the test, elsewhere the test says why it skips.

use crate::common;

use common::{lab_available, Scratch};
use std::path::Path;
use std::time::Instant;

use l2tpkit::lab::{sys, EndpointKind, Lab, LabSpec, Topology};

const BIN: &str = env!("CARGO_BIN_EXE_l2tpkit");

/// What the lab's xl2tpd needs beyond the lab itself; skips (or fails under `CI=true`) without.
fn xl2tpd_available(test: &str) -> bool {
    if !lab_available(test) {
        return false;
    }
    let mut missing = Vec::new();
    if !sys::have("xl2tpd", "-v") {
        missing.push("xl2tpd");
    }
    if !sys::have("unshare", "--version") {
        missing.push("unshare");
    }
    if !Path::new("/usr/sbin/pppd").exists() {
        missing.push("/usr/sbin/pppd");
    }
    if missing.is_empty() {
        return true;
    }
    let reason = format!(
        "{test}: xl2tpd endpoints need {} (apt-get install -y xl2tpd ppp)",
        missing.join(", ")
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    false
}

/// The command name of a running process.
fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim_end()
        .to_string()
}

#[test]
fn fig2_runs_xl2tpd_with_an_agent_in_every_endpoint_namespace() {
    if !xl2tpd_available("fig2_runs_xl2tpd_with_an_agent_in_every_endpoint_namespace") {
        return;
    }
    let lab = Lab::up(&LabSpec {
        binary: Some(BIN.into()),
        endpoint_kind: EndpointKind::Xl2tpd,
        ..LabSpec::new(Topology::Fig2, 3)
    })
    .unwrap_or_else(|e| panic!("lab up: {e:#}"));
    let scratch = Scratch::new(lab.run_dir());
    let run_dir = lab.run_dir().to_path_buf();
    let namespaces = lab.plan().namespaces();
    let processes = lab.processes();
    let mut daemons = Vec::new();
    for i in 1..=3 {
        let name = format!("te{i}-xl2tpd");
        let unshare = processes
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no process {name} in {processes:?}"));
        assert!(
            sys::is_running(unshare.pid, unshare.start_time),
            "{name} is not running"
        );
        assert_eq!(
            unshare.namespace.as_deref(),
            Some(format!("{}-te{i}", lab.prefix()).as_str())
        );
        // unshare's one child is xl2tpd itself, the init of its PID namespace.
        let children = sys::children(unshare.pid);
        assert_eq!(
            children.iter().map(|&c| comm(c)).collect::<Vec<_>>(),
            ["xl2tpd"],
            "{name}"
        );
        daemons.push((unshare.pid, unshare.start_time));
        daemons.extend(children.iter().filter_map(|&c| {
            let (_, start) = sys::proc_stat(c)?;
            Some((c, start))
        }));
        let agent = processes
            .iter()
            .find(|p| p.name == format!("te{i}"))
            .unwrap_or_else(|| panic!("no agent te{i} in {processes:?}"));
        assert!(sys::is_running(agent.pid, agent.start_time), "te{i} exited");
        let status = run_dir.join(format!("te{i}-status.json"));
        let status: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&status).expect("the agent's status file"))
                .expect("the status is JSON");
        assert_eq!(status["name"], format!("te{i}"), "{status}");
        let conf = std::fs::read_to_string(run_dir.join(format!("te{i}-xl2tpd.conf"))).unwrap();
        assert!(
            conf.contains(&format!("listen-addr = 198.19.0.{}\n", 10 + i)),
            "{conf}"
        );
    }
    let description: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("lab.json")).unwrap()).unwrap();
    assert_eq!(description["endpoint_kind"], "xl2tpd");

    let started = Instant::now();
    lab.down().expect("lab down");
    let took = started.elapsed();
    let left: Vec<String> = sys::netns_list()
        .unwrap()
        .into_iter()
        .filter(|n| namespaces.contains(n))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "namespaces left");
    for (pid, start) in daemons {
        assert!(!sys::is_running(pid, start), "pid {pid} still runs");
    }
    // unshare blocks SIGINT: the supervisor's SIGINT went to xl2tpd, which ended at once
    // instead of being killed after the grace period.
    let supervisor_log = std::fs::read_to_string(run_dir.join("supervisor.log")).unwrap();
    let killed: Vec<&str> = supervisor_log
        .lines()
        .filter(|l| l.contains("-xl2tpd (pid") && l.contains("ignored SIGINT"))
        .collect();
    assert_eq!(killed, Vec::<&str>::new(), "down took {took:?}");
    for i in 1..=3 {
        let log = std::fs::read_to_string(run_dir.join(format!("te{i}-xl2tpd.log"))).unwrap();
        assert!(log.contains("Fatal signal 2 received"), "te{i}: {log}");
    }
    drop(scratch);
}

#[test]
fn xl2tpd_endpoints_refuse_ppp_before_anything_is_made() {
    let error = Lab::up(&LabSpec {
        binary: Some(BIN.into()),
        endpoint_kind: EndpointKind::Xl2tpd,
        ppp: true,
        ..LabSpec::new(Topology::Fig2, 1)
    })
    .err()
    .expect("xl2tpd with PPP is refused")
    .to_string();
    assert!(
        error.contains("--ppp") && error.contains("--endpoint-kind xl2tpd"),
        "{error}"
    );
    let (code, _, stderr) =
        common::l2tpkit(&["lab", "run", "--endpoint-kind", "xl2tpd", "--ppp", "ip"]);
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("--ppp ip") && stderr.contains("--endpoint-kind xl2tpd"),
        "{stderr}"
    );
}
