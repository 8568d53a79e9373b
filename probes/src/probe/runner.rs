//! Runs probes one after another so that one cannot spoil the next.
//!
//! A target may stop answering for a while after a heavy probe (an LNS still tearing down 5000
//! tunnels answered no SCCRQ for two minutes), and the probes after it then reported `fail`
//! for what was only silence. So, before each probe after the first, the target must answer a
//! fresh SCCRQ: while it does not, the runner waits with backoff, up to a bound, and says so
//! (a progress report, and a line in the probe's evidence). A target that stays silent past the
//! bound gets the remaining probes `inconclusive`, not run, naming the probe after which it went
//! silent. And a probe that did not pass is checked the same way right after it: if the target
//! no longer answers a fresh SCCRQ, silence decided it, and its verdict is `inconclusive`,
//! naming the probe before it.

use std::path::Path;
use std::time::Duration;

use l2tp::wire::MessageType;

use super::transport::{Network, UdpNetwork};
use super::{run_one_on, script, Log, Probe, ProbeResult, Scope, Target, Verdict, VerdictKind};

/// The pauses between fresh SCCRQs while the target is silent: 1, 2, 4 … 32 s.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
const LONGEST_PAUSE: Duration = Duration::from_secs(32);

/// How the runner waits, and where captures go.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    /// Each probe's exchange to `DIR/NAME.pcap`.
    pub pcap_dir: Option<&'a Path>,
    /// How long a silent target is waited for before a probe; zero: one round of SCCRQs only.
    pub wait_for_target: Duration,
}

/// What the runner is doing, for a progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A probe starts.
    Probing(&'static str),
    /// The target answered no fresh SCCRQ after `after`; waited so far, and the bound.
    Waiting {
        after: &'static str,
        waited: Duration,
        bound: Duration,
    },
    /// It answered again after `waited`.
    Answering {
        after: &'static str,
        waited: Duration,
    },
}

/// Whether the target answered a fresh SCCRQ, and how long that took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// At once (`waited` zero) or after waiting.
    Answered { waited: Duration, rounds: u32 },
    /// Not within the bound.
    Silent { waited: Duration, rounds: u32 },
}

/// One round: a fresh SCCRQ from a fresh socket, retransmitted as every probe does
/// ([`script::TRIES`]); an SCCRP (or a StopCCN refusing it) is an answer. A tunnel it opens is
/// closed at once. Nothing goes into any probe's capture.
pub fn answers(target: &Target, network: &dyn Network) -> bool {
    let log = std::rc::Rc::new(std::cell::RefCell::new(Log::new(
        network.now(),
        Duration::ZERO,
    )));
    let Ok(mut ctl) = script::Ctl::open(target, network, log) else {
        return false;
    };
    ctl.our_tid = ctl.fresh_id();
    let avps = ctl.sccrq_avps();
    match ctl.sccrq_with(avps) {
        Ok(Some(reply)) => {
            if reply.message_type() == Some(MessageType::Sccrp) {
                let _ = ctl.close();
            }
            true
        }
        _ => false,
    }
}

/// Rounds of [`answers`] with pauses of 1, 2, 4 … 32 s between them, until the target answers
/// or `bound` has passed; `waiting` hears how long it has been, after each silent round.
pub fn await_answer(
    target: &Target,
    network: &dyn Network,
    bound: Duration,
    mut waiting: impl FnMut(Duration),
) -> Answer {
    let start = network.now();
    let mut pause = FIRST_PAUSE;
    let mut rounds = 0;
    loop {
        rounds += 1;
        let answered = answers(target, network);
        let waited = network.now().saturating_duration_since(start);
        if answered {
            return Answer::Answered { waited, rounds };
        }
        if waited >= bound {
            return Answer::Silent { waited, rounds };
        }
        waiting(waited);
        let left = bound.saturating_sub(waited);
        network.sleep_until(network.now() + pause.min(left));
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

/// Runs `probes` in the order given on real UDP sockets; see the module's text.
pub fn run_all(
    probes: &[&Probe],
    target: &Target,
    options: &Options<'_>,
    progress: impl FnMut(Progress),
) -> Vec<ProbeResult> {
    run_all_on(probes, target, &UdpNetwork::new(), options, progress)
}

/// As [`run_all`], on the sockets of `network` (the simulator, say).
pub fn run_all_on(
    probes: &[&Probe],
    target: &Target,
    network: &dyn Network,
    options: &Options<'_>,
    mut progress: impl FnMut(Progress),
) -> Vec<ProbeResult> {
    let mut results = Vec::with_capacity(probes.len());
    // The last probe that ran against the target.
    let mut previous: Option<&'static str> = None;
    // The target stayed silent past the bound after this probe: the rest do not run.
    let mut gone: Option<(&'static str, Duration)> = None;
    for &probe in probes {
        let pcap = options
            .pcap_dir
            .map(|dir| dir.join(format!("{}.pcap", probe.name)));
        let talks_to_target = probe.scope == Scope::Any || target.cluster;
        if !talks_to_target {
            // Not applicable: run_one_on says so without sending anything.
            results.push(run_one_on(probe, target, network, pcap));
            continue;
        }
        if let Some((after, waited)) = gone {
            results.push(not_run(probe, after, waited));
            continue;
        }
        let mut waited_note = None;
        if let Some(after) = previous {
            let bound = options.wait_for_target;
            let answer = await_answer(target, network, bound, |waited| {
                progress(Progress::Waiting {
                    after,
                    waited,
                    bound,
                })
            });
            match answer {
                Answer::Answered { waited, rounds } if rounds > 1 => {
                    progress(Progress::Answering { after, waited });
                    waited_note = Some(format!(
                        "before this probe: the target answered no fresh SCCRQ after `{after}`; \
                         waited {:.1} s ({rounds} rounds of SCCRQs) until it did",
                        waited.as_secs_f64()
                    ));
                }
                Answer::Answered { .. } => {}
                Answer::Silent { waited, .. } => {
                    gone = Some((after, waited));
                    results.push(not_run(probe, after, waited));
                    continue;
                }
            }
        }
        progress(Progress::Probing(probe.name));
        let mut result = run_one_on(probe, target, network, pcap);
        if let Some(note) = waited_note {
            result.evidence.insert(0, note);
        }
        let judged = matches!(
            result.verdict,
            VerdictKind::Pass | VerdictKind::NotApplicable
        );
        if !judged && !answers(target, network) {
            let before =
                previous.map_or("none: it was the first".to_string(), |p| format!("`{p}`"));
            result.reason = Some(format!(
                "the target stopped answering SCCRQs during this probe (the probe before it: \
                 {before}), so its rule cannot be judged; what the probe saw: {}",
                result.reason.as_deref().unwrap_or("nothing amiss")
            ));
            result.verdict = VerdictKind::Inconclusive;
        }
        previous = Some(probe.name);
        results.push(result);
    }
    results
}

/// The result of a probe that did not run because the target went silent after `after`.
fn not_run(probe: &Probe, after: &str, waited: Duration) -> ProbeResult {
    let why = format!(
        "not run: the target answered no SCCRQ for {:.0} s after `{after}` (--wait-for-target)",
        waited.as_secs_f64()
    );
    ProbeResult::of(probe, &Verdict::Inconclusive(why))
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
