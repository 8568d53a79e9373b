//! The PPP probe family against l2tpns + FreeRADIUS (a real LNS running PPP in user space):
//! every probe comes to a definite verdict, pass or fail, none inconclusive or not applicable,
//! and the verdicts are the ones l2tpns's source explains (`ppp.c` of l2tpns 2.4.1):
//!
//! - `ppp-magic-loopback` fails: `processlcp` takes a Magic-Number option (type 5) in a
//!   Configure-Request without looking at it (`case 5: break;`), so a request carrying
//!   l2tpns's own number is acked and LCP opens with both ends on one number.
//! - `ppp-chap-stale-identifier` fails: `processchap` answers a Response whose Identifier is
//!   not the Challenge's with `sessionshutdown(.., "Unexpected CHAP response ID.")`, a CDN,
//!   instead of ignoring it; no Success is ever given to the stale Response.
//!
//! The probes run in-process from the harness's initiator namespace (a thread that joined it).
//! Needs root, l2tpns and FreeRADIUS: under `CI=true` a missing one fails the test, elsewhere
//! the test says why it skips.

use std::fs::File;

use l2tpkit_tests::l2tpns::{self, L2tpns, L2tpnsOptions, PppAuth};
use nix::sched::{setns, CloneFlags};
use probes::probe::catalog::ppp;
use probes::probe::{run_one, ProbeResult, Target, VerdictKind};

const USER: &str = "alice";
const PASSWORD: &str = "wonderland";

/// Runs `f` on a thread inside the network namespace `name` (its sockets live there).
fn in_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let ns = File::open(format!("/var/run/netns/{name}"))
                    .unwrap_or_else(|e| panic!("netns {name}: {e}"));
                setns(&ns, CloneFlags::CLONE_NEWNET).expect("setns into the initiator netns");
                f()
            })
            .join()
            .expect("the probe thread")
    })
}

fn run_family(auth: PppAuth) -> (Vec<ProbeResult>, String) {
    let options = L2tpnsOptions {
        users: vec![(USER.to_string(), PASSWORD.to_string())],
        auth,
        ..L2tpnsOptions::default()
    };
    let harness = L2tpns::start(&options).expect("start l2tpns and FreeRADIUS");
    let mut target = Target::new(harness.lns_addr());
    target.bind = std::net::SocketAddrV4::new(harness.initiator_addr(), 0);
    target.username = Some(USER.to_string());
    target.password = Some(PASSWORD.as_bytes().to_vec());
    let results = in_netns(harness.initiator_netns(), || {
        ppp::PROBES
            .iter()
            .map(|probe| run_one(probe, &target, None))
            .collect::<Vec<_>>()
    });
    let log = harness.log();
    (results, log)
}

fn table(results: &[ProbeResult]) -> String {
    results
        .iter()
        .map(|r| {
            format!(
                "{:<28} {:<14} {}",
                r.name,
                r.verdict.as_str(),
                r.reason.as_deref().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_ppp_probe_judges_l2tpns_and_the_failures_are_l2tpns_own() {
    if !l2tpns::available() {
        return;
    }
    let (results, log) = run_family(PppAuth::Chap);
    eprintln!("{}", table(&results));
    for r in &results {
        let want = match r.name {
            "ppp-magic-loopback" | "ppp-chap-stale-identifier" => VerdictKind::Fail,
            _ => VerdictKind::Pass,
        };
        assert_eq!(
            r.verdict,
            want,
            "{}: {:?}\nevidence:\n{}\nl2tpns log (tail):\n{}",
            r.name,
            r.reason,
            r.evidence.join("\n"),
            log.lines().rev().take(60).collect::<Vec<_>>().join("\n")
        );
    }
    let reason = |name: &str| {
        results
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| r.reason.clone())
            .unwrap_or_default()
    };
    assert!(reason("ppp-magic-loopback").contains("acked"));
    assert!(reason("ppp-chap-stale-identifier").contains("ended the call"));
    // What l2tpns logged for those two: the CHAP one in its own words.
    assert!(log.contains("Wrong CHAP response ID"), "{log}");
}
