//! Least-load on a busy machine (issue 15): the endpoints' reports say how many SCCRQs they
//! received, so the master knows what is still on its way however late a busy endpoint
//! reports. A 300-tunnel burst lands within ±5% of even with two busy loops beside the
//! cluster (CI once saw 120/89/91 when in-flight SCCRQs were guessed from a fixed lag), on
//! loopback and right after a FIG 4 takeover, where the new master holds placement until the
//! endpoints of its view have reported instead of dropping the burst on itself.
//!
//! Needs root (the master's raw socket; the lab's namespaces) and `ip`; CI has them.

use std::time::Duration;

use l2tpkit::lab::{LabSpec, Topology, MASTER};
use l2tpkit::lac::{execute as run_lac, LacArgs, PppLevel};
use l2tpkit_tests::{on_lab, require, BusyLoops};
use reference::master::MasterStatus;

use crate::cluster_loopback::{one_cluster, root, start_with};

/// ±5% of an even 100 each.
const EVEN: std::ops::RangeInclusive<u64> = 95..=105;

fn burst(target: &str, bind: &str) -> LacArgs {
    LacArgs {
        target: target.parse().unwrap(),
        bind: bind.parse().unwrap(),
        tunnels: 300,
        sessions_per_tunnel: 1,
        hold: Duration::from_secs(1),
        setup_timeout: Some(Duration::from_secs(30)),
        any_source: true,
        initiators: 30,
        ppp: PppLevel::Off,
        json: true,
        ..LacArgs::default()
    }
}

fn assert_even(status: &MasterStatus, what: &str) {
    let spread: Vec<(&str, u64)> = status
        .endpoints
        .iter()
        .map(|e| (e.name.as_str(), e.dispatched_total))
        .collect();
    eprintln!("{what}: {spread:?}");
    for (name, got) in &spread {
        assert!(EVEN.contains(got), "{what}: {name} got {got}: {spread:?}");
    }
}

#[test]
fn a_burst_spreads_within_5_percent_beside_two_busy_loops() {
    if !root() {
        return;
    }
    let _alone = one_cluster();
    let cluster = start_with([127, 77, 9], 10.0, None);
    let busy = BusyLoops::start(2, Duration::from_secs(30));
    let (report, _) = run_lac(&burst("127.77.9.1:1701", "127.77.10.1:0")).expect("lac");
    drop(busy);
    assert!(report.success(), "{report}");
    let master = cluster.master.join().expect("master");
    for endpoint in cluster.endpoints {
        endpoint.join().expect("endpoint");
    }
    assert_eq!(master.totals.sccrq_dispatched, 300, "{:?}", master.totals);
    assert_even(&master, "loopback, two busy loops");
}

#[test]
fn a_burst_right_after_a_takeover_spreads_within_5_percent() {
    if !root() || !require("ip") {
        return;
    }
    let _alone = one_cluster();
    let spec = LabSpec {
        initiators: 30,
        ..LabSpec::new(Topology::Fig4, 3)
    };
    on_lab("takeover burst", &spec, |lab| {
        let d = lab.description();
        let ti = lab
            .namespace(l2tpkit::lab::NodeKind::Initiator)
            .expect("initiator namespace")
            .to_string();
        lab.kill(MASTER).expect("kill the master");
        // The moment the new master answers, the burst: its first SCCRQs come before the
        // endpoints' first reports to it.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let holder = loop {
            if let Some((holder, _)) = d.active_master() {
                break holder;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no endpoint took over"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let busy = BusyLoops::start(2, Duration::from_secs(60));
        let lac = std::thread::spawn(move || {
            l2tpkit::lab::sys::enter_netns(&ti)?;
            run_lac(&burst("198.18.0.1:1701", "198.18.1.1:0"))
        });
        let (report, _) = lac.join().expect("LAC thread").expect("lac");
        drop(busy);
        assert!(report.success(), "{report}");
        let status: MasterStatus = serde_json::from_value(
            reference::control::request(&holder.control, "status").expect("the new master"),
        )
        .expect("its status");
        assert_eq!(status.holder.name, holder.name);
        assert_eq!(status.totals.sccrq_dispatched, 300, "{:?}", status.totals);
        eprintln!(
            "placement held for {} SCCRQs (retransmitted 1 s later)",
            status.drops.placement_held
        );
        assert_even(&status, "right after the takeover, two busy loops");
    });
}
