use std::time::Duration;

use super::*;
use crate::probe::catalog::{by_name, sim_lns};
use crate::probe::VerdictKind::{Fail, Inconclusive, Pass};

fn probes(names: &[&str]) -> Vec<&'static Probe> {
    names
        .iter()
        .map(|n| by_name(n).unwrap_or_else(|| panic!("no probe {n}")))
        .collect()
}

fn options(wait: u64) -> Options<'static> {
    Options {
        pcap_dir: None,
        wait_for_target: Duration::from_secs(wait),
    }
}

fn show(results: &[ProbeResult]) -> String {
    results
        .iter()
        .map(|r| {
            format!(
                "{}: {:?} {:?}\n  {}",
                r.name,
                r.verdict,
                r.reason,
                r.evidence.join("\n  ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The case: after a heavy probe the target answers nothing for 100 s. The next probe
/// waits (said in the progress and in its evidence), then judges: pass. Run back to back as
/// before, the same probe came out inconclusive.
#[test]
fn after_a_heavy_probe_the_next_one_waits_for_the_target_then_judges() {
    let mut target = Target::new(sim_lns::LNS);
    target.live_tunnels = 300;
    // Silent from the first SCCRQ after the heavy probe's 300 tunnels (still held after their
    // StopCCN, §5.7) until 100 s later.
    let outage = sim_lns::Outage {
        trigger: sim_lns::Trigger::LiveTunnels(301),
        length: Duration::from_secs(100),
    };
    let chosen = probes(&["tunnel-id-uniqueness", "establishment", "hello-answered"]);

    let network = sim_lns::network(&target, Some(outage));
    let back_to_back: Vec<ProbeResult> = chosen
        .iter()
        .map(|p| run_one_on(p, &target, &network, None))
        .collect();
    assert_eq!(
        back_to_back[1].verdict,
        Inconclusive,
        "{}",
        show(&back_to_back)
    );

    let network = sim_lns::network(&target, Some(outage));
    let mut seen = Vec::new();
    let results = run_all_on(&chosen, &target, &network, &options(180), |p| seen.push(p));
    let verdicts: Vec<VerdictKind> = results.iter().map(|r| r.verdict).collect();
    assert_eq!(verdicts, [Pass, Pass, Pass], "{}", show(&results));
    let note = &results[1].evidence[0];
    assert!(
        note.contains("after `tunnel-id-uniqueness`") && note.contains("waited"),
        "{note}"
    );
    assert!(
        results[2].evidence.iter().all(|l| !l.contains("waited")),
        "the target answered at once: no wait"
    );
    let waits: Vec<&Progress> = seen
        .iter()
        .filter(|p| matches!(p, Progress::Waiting { .. }))
        .collect();
    assert!(!waits.is_empty());
    assert!(waits.iter().all(|p| matches!(
        p,
        Progress::Waiting {
            after: "tunnel-id-uniqueness",
            ..
        }
    )));
    let Some(Progress::Answering { waited, .. }) = seen
        .iter()
        .find(|p| matches!(p, Progress::Answering { .. }))
    else {
        panic!("no Answering in {seen:?}");
    };
    // The silence lasted 100 s; the backoff (1, 2, 4 … 32 s between rounds of 6 s) overshoots
    // by less than one pause and round.
    assert!(
        *waited >= Duration::from_secs(95) && *waited < Duration::from_secs(140),
        "{waited:?}"
    );
}

/// The target falls silent during a probe (at the HELLO it should acknowledge): alone that is
/// a `fail`, but silence decided it, so the runner calls it inconclusive and names the probe
/// before it. The probe after waits for the target and passes.
#[test]
fn a_probe_that_only_met_silence_is_inconclusive_and_names_the_one_before() {
    let target = Target::new(sim_lns::LNS);
    let outage = sim_lns::Outage {
        trigger: sim_lns::Trigger::Hello,
        length: Duration::from_secs(60),
    };
    let alone = run_one_on(
        by_name("hello-answered").unwrap(),
        &target,
        &sim_lns::network(&target, Some(outage)),
        None,
    );
    assert_eq!(alone.verdict, Fail, "{:?}", alone.reason);

    let chosen = probes(&["establishment", "hello-answered", "stopccn-cleans-up"]);
    let network = sim_lns::network(&target, Some(outage));
    let results = run_all_on(&chosen, &target, &network, &options(180), |_| {});
    let verdicts: Vec<VerdictKind> = results.iter().map(|r| r.verdict).collect();
    assert_eq!(verdicts, [Pass, Inconclusive, Pass], "{}", show(&results));
    let reason = results[1].reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("stopped answering") && reason.contains("`establishment`"),
        "{reason}"
    );
    assert!(
        reason.contains("HELLO"),
        "what the probe saw is kept: {reason}"
    );
    assert!(
        results[2].evidence[0].contains("after `hello-answered`"),
        "{}",
        show(&results)
    );
}

/// A target that does not come back within `--wait-for-target`: the probes after it are not
/// run, each inconclusive naming where it went silent, and only the first of them waited.
#[test]
fn a_target_that_stays_silent_ends_the_run_without_waiting_per_probe() {
    let target = Target::new(sim_lns::LNS);
    let outage = sim_lns::Outage {
        trigger: sim_lns::Trigger::Hello,
        length: Duration::from_secs(100_000),
    };
    let chosen = probes(&[
        "establishment",
        "hello-answered",
        "stopccn-cleans-up",
        "session-lifecycle",
    ]);
    let network = sim_lns::network(&target, Some(outage));
    let start = network.now();
    let results = run_all_on(&chosen, &target, &network, &options(120), |_| {});
    let verdicts: Vec<VerdictKind> = results.iter().map(|r| r.verdict).collect();
    assert_eq!(
        verdicts,
        [Pass, Inconclusive, Inconclusive, Inconclusive],
        "{}",
        show(&results)
    );
    for r in &results[2..] {
        let reason = r.reason.as_deref().unwrap_or_default();
        assert!(
            reason.starts_with("not run") && reason.contains("after `hello-answered`"),
            "{reason}"
        );
    }
    let took = network.now().saturating_duration_since(start);
    assert!(took < Duration::from_secs(200), "waited once: {took:?}");
}

#[test]
fn await_answer_backs_off_and_stops_at_the_bound() {
    let target = Target::new(sim_lns::LNS);
    let outage = sim_lns::Outage {
        trigger: sim_lns::Trigger::LiveTunnels(1),
        length: Duration::from_secs(100_000),
    };
    let network = sim_lns::network(&target, Some(outage));
    let mut reports = Vec::new();
    let answer = await_answer(&target, &network, Duration::from_secs(60), |w| {
        reports.push(w.as_secs())
    });
    let Answer::Silent { waited, rounds } = answer else {
        panic!("{answer:?}");
    };
    // Rounds of 3 SCCRQs 2 s apart (6 s) with pauses of 1, 2, 4, 8, 16 s, the last cut to the
    // bound.
    assert_eq!(reports, [6, 13, 21, 31, 45]);
    assert_eq!(rounds, 6);
    assert!(waited >= Duration::from_secs(60), "{waited:?}");
}
