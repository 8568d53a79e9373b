//! An unmodified xl2tpd as the tunnel initiator of the lab: it dials the cluster address from
//! the initiator namespace, tunnel and call come up, and `verify` on the lab's two captures
//! names the variant. xl2tpd keeps sending to the address it dialled (PEERS.md), so SCCCN,
//! ICRQ, ... reach the cluster address and the master forwards them by Tunnel ID: the
//! via-master variants (fig3-via-master behind the NAT, fig5-via-master with global endpoint
//! addresses).
//!
//! Needs root, `ip` and xl2tpd (the lab writes its own captures): under `CI=true` a missing
//! one fails the test, elsewhere the test says why it skips. Needs `target/<profile>/l2tpkit`
//! next to the test binary (`cargo build -p l2tpkit`): the lab runs its roles as that binary.
//! The run dir (captures, role logs, `verify.txt`, `xl2tpd.log`) is removed after a pass and
//! kept after a failure, or always with `L2TPKIT_KEEP_RUN=1`.

use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use l2tp::wire::message::ParseOptions;
use l2tpkit::lab::{sys, Lab, LabSpec, NodeKind, Topology};
use l2tpkit::verify::{read_captures, read_roles, SequenceArg};
use l2tpkit_tests::require;
use l2tpkit_tests::xl2tpd::{self, Proc, Xl2tpd, Xl2tpdEnd, Xl2tpdOptions};
use probes::sequence::{self, Report, TunnelReport, Variant};

/// Both log lines, from xl2tpd's start.
const ESTABLISHED: Duration = Duration::from_secs(15);
/// Lets the endpoint's acknowledgement of the StopCCN reach the captures before they stop.
const SETTLE: Duration = Duration::from_millis(500);

fn available() -> bool {
    // `available` checks root and xl2tpd; the lab also needs `ip`.
    xl2tpd::available() && require("ip")
}

#[test]
fn fig2_xl2tpd_lac_through_the_master() {
    if !available() {
        return;
    }
    xl2tpd_against_the_lab(Topology::Fig2, Variant::Fig3ViaMaster);
}

#[test]
fn fig4_xl2tpd_lac_through_the_master() {
    if !available() {
        return;
    }
    xl2tpd_against_the_lab(Topology::Fig4, Variant::Fig5ViaMaster);
}

fn xl2tpd_against_the_lab(topology: Topology, expected: Variant) {
    let started = Instant::now();
    let lab = Lab::up(&LabSpec {
        initiators: 1,
        ..LabSpec::new(topology, 3)
    })
    .unwrap_or_else(|err| panic!("{topology}: lab up: {err:#}"));
    let up_took = started.elapsed();
    let prefix = lab.prefix().to_string();
    let run_dir = lab.run_dir().to_path_buf();
    // Every lab process (and the supervisor) by PID and start time, to check they are gone.
    let mut lab_pids: Vec<(u32, u64)> = lab
        .processes()
        .iter()
        .map(|p| (p.pid, p.start_time))
        .collect();
    lab_pids.extend(
        lab.supervisor_pid()
            .and_then(|pid| sys::proc_stat(pid).map(|(_, t)| (pid, t))),
    );

    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        drive(&lab, topology, expected, up_took)
    }));

    let down_started = Instant::now();
    let down = lab.down();
    let down_took = down_started.elapsed();
    let lac_procs = match &outcome {
        Ok(procs) => procs.clone(),
        Err(_) => Vec::new(),
    };
    let leftovers = leftovers(&prefix, &lab_pids, &lac_procs);
    let keep = outcome.is_err()
        || down.is_err()
        || !leftovers.is_empty()
        || std::env::var_os("L2TPKIT_KEEP_RUN").is_some();
    if keep {
        eprintln!("{topology}: run dir kept: {}", run_dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&run_dir);
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    down.unwrap_or_else(|err| panic!("{topology}: lab down: {err:#}"));
    assert!(
        leftovers.is_empty(),
        "{topology}: left behind: {leftovers:#?}"
    );
    eprintln!(
        "{topology}: lab down in {down_took:?}; whole test {:?}",
        started.elapsed()
    );
}

/// xl2tpd up, both log lines, StopCCN, captures stopped, verify. Returns xl2tpd's processes
/// as they were while the call was up (all gone by the time this returns).
fn drive(lab: &Lab, topology: Topology, expected: Variant, up_took: Duration) -> Vec<Proc> {
    let d = lab.description();
    let ns = lab
        .namespace(NodeKind::Initiator)
        .expect("the lab has an initiator namespace")
        .to_string();
    assert_eq!(
        d.initiator_addresses.len(),
        1,
        "{:?}",
        d.initiator_addresses
    );
    let initiator = d.initiator_addresses[0];
    let cluster = SocketAddrV4::new(d.cluster_address, 1701);
    eprintln!(
        "{topology}: lab {} up in {up_took:?}; xl2tpd {initiator} in {ns} dials {cluster}",
        lab.prefix()
    );

    let started = Instant::now();
    let lac = Xl2tpd::start(
        Xl2tpdEnd::Lac {
            lns: cluster,
            autodial: true,
        },
        &Xl2tpdOptions {
            debug: true,
            netns: Some(ns),
            ..Xl2tpdOptions::on(initiator)
        },
    )
    .unwrap_or_else(|err| panic!("{topology}: starting xl2tpd: {err}"));
    let deadline = started + ESTABLISHED;
    let mut marks = Vec::new();
    for needle in ["Connection established to", "Call established with"] {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Err(err) = lac.wait_for(needle, 1, left) {
            let log = lac.stop();
            save(lab.run_dir(), "xl2tpd.log", &log);
            panic!(
                "{topology}: {err}\n{}",
                role_log_tails(lab.run_dir(), topology)
            );
        }
        marks.push((needle, started.elapsed()));
    }
    let procs = lac.processes();
    let log = lac.log();
    assert!(
        log.contains(&format!(
            "Connection established to {}, 1701",
            d.cluster_address
        )),
        "{topology}: xl2tpd's tunnel is with the address it dialled:\n{log}"
    );

    let stop_started = Instant::now();
    let log = lac.stop_with_stopccn();
    let stop_took = stop_started.elapsed();
    save(lab.run_dir(), "xl2tpd.log", &log);
    assert!(log.contains("Fatal signal 2"), "{topology}: {log}");
    let gone: Vec<u32> = procs.iter().filter(|p| p.exists()).map(|p| p.pid).collect();
    assert!(
        gone.is_empty(),
        "{topology}: xl2tpd processes left: {gone:?}"
    );
    for (needle, at) in &marks {
        // The log is polled every 20 ms.
        eprintln!("{topology}: {needle:?} in the log within {at:?} of xl2tpd listening");
    }
    eprintln!("{topology}: xl2tpd stopped (StopCCN) in {stop_took:?}");

    std::thread::sleep(SETTLE);
    for capture in ["capture-public", "capture-lan"] {
        lab.stop(capture)
            .unwrap_or_else(|err| panic!("{topology}: stopping {capture}: {err:#}"));
    }
    let report = verify(lab.run_dir());
    let captures = ["public.pcap".to_string(), "lan.pcap".to_string()];
    let text = report.render_text(&captures);
    save(lab.run_dir(), "verify.txt", &text);

    assert_eq!(
        report.totals.tunnels, 1,
        "{topology}: exactly one tunnel\n{text}"
    );
    let tunnel = &report.tunnels[0];
    assert_eq!(tunnel.initiator.ip(), &initiator, "{text}");
    assert!(
        tunnel.conforms && report.conforms(),
        "{topology}: the tunnel deviates\n{text}\n{}",
        role_log_tails(lab.run_dir(), topology)
    );
    assert_eq!(
        tunnel.variant,
        expected,
        "{topology}: variant {} where {} was expected\n{text}",
        tunnel.variant.name(),
        expected.name()
    );
    forwarding_counters(lab.run_dir(), topology, tunnel);
    let at = |kind: &str| {
        tunnel
            .timeline
            .iter()
            .find(|e| e.message.kind.to_string() == kind)
            .map(|e| e.time)
    };
    if let (Some(sccrq), Some(iccn), Some(stop)) = (at("SCCRQ"), at("ICCN"), at("StopCCN")) {
        eprintln!(
            "{topology}: on the wire: SCCRQ to ICCN {:.2} ms; StopCCN {:.1} ms after the SCCRQ",
            (iccn - sccrq) * 1e3,
            (stop - sccrq) * 1e3
        );
    }
    eprintln!(
        "{topology}: verify: {} ({}), {} control steps, {} data messages, {} retransmissions; \
         timeline:\n{}",
        if tunnel.conforms {
            "conforms"
        } else {
            "deviates"
        },
        tunnel.variant.name(),
        tunnel.timeline.len(),
        tunnel.data_messages,
        tunnel.retransmissions,
        tunnel.normalised_timeline()
    );
    procs
}

/// The master's and the NAT's own counters agree with the captures: one SCCRQ dispatched, to
/// the endpoint verify names; every later message xl2tpd sent to the cluster address forwarded
/// by Tunnel ID; in FIG 2 one Table 1 entry and nothing at all sent to the NAT's address. The
/// roles write their status every second (and not when the lab stops them with SIGTERM), so
/// this polls, at most 3 s, while they still run.
fn forwarding_counters(run_dir: &Path, topology: Topology, tunnel: &TunnelReport) {
    let endpoint = tunnel
        .endpoint
        .as_deref()
        .expect("verify names the endpoint");
    let to_cluster = tunnel
        .timeline
        .iter()
        .filter(|e| e.to == "CM" && e.message.kind.to_string() != "SCCRQ")
        .count();
    let from_nat = tunnel.timeline.iter().filter(|e| e.from == "NAT").count();
    let read = |name: &str| -> serde_json::Value {
        std::fs::read_to_string(run_dir.join(name))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let master = read("master-status.json");
        let nat = read("nat-status.json");
        let totals = &master["totals"];
        let forwarded = totals["forwarded"].as_u64().unwrap_or(0) as usize;
        let master_done = totals["sccrq_dispatched"] == 1 && forwarded >= to_cluster;
        let nat_done = topology == Topology::Fig4
            || nat["stats"]["to_public"].as_u64().unwrap_or(0) as usize >= from_nat;
        if !(master_done && nat_done) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let owner = master["endpoints"]
            .as_array()
            .and_then(|list| list.iter().find(|e| e["name"] == endpoint))
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            (
                totals["sccrq_dispatched"].as_u64(),
                owner["dispatched_total"].as_u64()
            ),
            (Some(1), Some(1)),
            "{topology}: one SCCRQ dispatched, to {endpoint}: {master:#}"
        );
        // Data (none expected: the pppd stand-in only echoes) would be forwarded too.
        assert!(
            (to_cluster..=to_cluster + tunnel.data_messages).contains(&forwarded)
                && owner["forwarded"].as_u64() == Some(forwarded as u64),
            "{topology}: {to_cluster} messages to the cluster address after the SCCRQ, \
             forwarded {forwarded} (by {endpoint}: {}): {master:#}",
            owner["forwarded"]
        );
        assert_eq!(totals["dropped"], 0, "{topology}: {master:#}");
        if topology == Topology::Fig2 {
            let stats = &nat["stats"];
            assert_eq!(
                (
                    stats["entries_created"].as_u64(),
                    stats["public_in"].as_u64()
                ),
                (Some(1), Some(0)),
                "{topology}: one Table 1 entry; xl2tpd sends nothing to the NAT: {nat:#}"
            );
            assert!(
                stats["to_public"].as_u64().unwrap_or(0) as usize >= from_nat,
                "{topology}: {from_nat} messages from the NAT in the captures: {nat:#}"
            );
        }
        eprintln!(
            "{topology}: master dispatched 1 SCCRQ to {endpoint} and forwarded {forwarded} by \
             Tunnel ID{}",
            if topology == Topology::Fig2 {
                format!(
                    "; NAT: {} Table 1 entry, {} to the public side, {} from it",
                    nat["stats"]["entries_created"],
                    nat["stats"]["to_public"],
                    nat["stats"]["public_in"]
                )
            } else {
                String::new()
            }
        );
        return;
    }
}

/// `verify --roles roles.json --sequence auto public.pcap lan.pcap`, in process.
fn verify(run_dir: &Path) -> Report {
    let roles = read_roles(&run_dir.join("roles.json")).expect("roles.json");
    let files: Vec<PathBuf> = ["public.pcap", "lan.pcap"]
        .iter()
        .map(|f| run_dir.join(f))
        .collect();
    let (observations, counts) =
        read_captures(&files, 1701, &ParseOptions::default()).expect("reading the captures");
    assert_eq!(counts.malformed, 0, "malformed L2TP in the captures");
    sequence::check(&observations, &roles, SequenceArg::Auto.into())
}

fn save(run_dir: &Path, name: &str, text: &str) {
    let _ = std::fs::write(run_dir.join(name), text);
}

/// The end of the master's, the NAT's and the endpoints' logs, for a failure message.
fn role_log_tails(run_dir: &Path, topology: Topology) -> String {
    let mut names = vec!["master", "te1", "te2", "te3"];
    if topology == Topology::Fig2 {
        names.insert(1, "nat");
    }
    let mut out = String::new();
    for name in names {
        let text = std::fs::read_to_string(run_dir.join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        out.push_str(&format!("--- {name}.log (last 15 lines)\n"));
        for line in &lines[lines.len().saturating_sub(15)..] {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// What is still there after `lab down`: namespaces with the lab's prefix, processes whose
/// command line names it, recorded lab processes, xl2tpd's processes.
fn leftovers(prefix: &str, lab_pids: &[(u32, u64)], lac: &[Proc]) -> Vec<String> {
    let mut left = Vec::new();
    let dash = format!("{prefix}-");
    match sys::netns_list() {
        Ok(list) => left.extend(
            list.into_iter()
                .filter(|n| n.starts_with(&dash))
                .map(|n| format!("netns {n}")),
        ),
        Err(err) => left.push(format!("ip netns list: {err:#}")),
    }
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
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
            left.push(format!("process {pid}: {cmdline}"));
        }
    }
    for &(pid, start) in lab_pids {
        if matches!(sys::proc_stat(pid), Some((_, t)) if t == start) {
            left.push(format!("lab process {pid}"));
        }
    }
    left.extend(
        lac.iter()
            .filter(|p| p.exists())
            .map(|p| format!("xl2tpd process {}", p.pid)),
    );
    left
}
