//! Issue 7 in the lab, as root: an endpoint killed under load, a lossy public segment, and an
//! SCCRQ flood against the leaky bucket. Each test builds its own lab (FIG 2: master, NAT,
//! endpoints behind it), drives a bounded load, and judges from the captures' timestamps and
//! the roles' counters, never from how fast things went. Every lab is removed at the end, also
//! when an assertion fails (dropping a `Lab` tears it down).

use crate::common;

use common::{lab_available, wait_until, Scratch};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use l2tp::capture::{CaptureReader, RecordKind};
use l2tp::ip::{classify, L2tpClass};
use l2tp::wire::MessageType;
use l2tpkit::lab::{sys, Lab, LabSpec, NodeKind, Topology};
use l2tpkit::lac::{LacArgs, PppLevel};
use netio::runner::Ended;
use probes::lac::LacReport;
use probes::sequence::Rule;
use reference::master::{MasterStatus, MemberState, Policy};

const BIN: &str = env!("CARGO_BIN_EXE_l2tpkit");

/// One L2TP packet in a capture.
#[derive(Debug, Clone)]
struct Seen {
    /// Seconds since the Unix epoch (the host's clock; both captures share it).
    time: f64,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    class: Option<L2tpClass>,
}

impl Seen {
    fn is(&self, kind: MessageType) -> bool {
        self.class.and_then(|c| c.message_type()) == Some(kind)
    }

    fn assigned(&self) -> Option<u16> {
        match self.class {
            Some(L2tpClass::Setup {
                assigned_tunnel_id, ..
            }) => Some(assigned_tunnel_id),
            _ => None,
        }
    }
}

/// Every UDP datagram of a capture; `class` is `None` for what is not L2TP (load reports).
fn read_pcap(path: &Path) -> Vec<Seen> {
    let mut reader = CaptureReader::open(path).unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    while let Some(record) = reader.next_datagram() {
        let record = record.unwrap_or_else(|e| panic!("{e}"));
        if let RecordKind::Udp(d) = record.kind {
            let l2tp = d.src.port() == 1701 || d.dst.port() == 1701;
            out.push(Seen {
                time: record.timestamp.as_secs_f64(),
                src: d.src,
                dst: d.dst,
                class: l2tp.then(|| classify(d.payload).ok()).flatten(),
            });
        }
    }
    out
}

fn master_status(lab: &Lab) -> MasterStatus {
    let control = lab.run_dir().join("master.sock");
    let value = reference::control::request(&control, "status").expect("master status");
    serde_json::from_value(value).expect("master status parses")
}

/// The LAC of the test, in a thread of this process moved into the initiator namespace.
fn start_lac(lab: &Lab, args: LacArgs) -> std::thread::JoinHandle<(LacReport, Ended)> {
    let ti = lab.namespace(NodeKind::Initiator).unwrap().to_string();
    std::thread::spawn(move || {
        sys::enter_netns(&ti).expect("entering the initiator namespace");
        l2tpkit::lac::execute(&args).expect("the LAC runs")
    })
}

fn lac_args(tunnels: usize, initiators: usize, rate: f64) -> LacArgs {
    LacArgs {
        target: "198.18.0.1:1701".parse().unwrap(),
        bind: "198.18.1.1:0".parse().unwrap(),
        tunnels,
        sessions_per_tunnel: 0,
        initiators,
        rate,
        any_source: true,
        echo_rate: 0.0,
        ppp: PppLevel::Off,
        ..LacArgs::default()
    }
}

fn lan(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 0, 10 + n)
}

/// Kill 1 of 3 endpoints under load (900 tunnels at 100/s from 10 initiator addresses, te2
/// killed with SIGKILL once it has taken 100): no SCCRQ reaches it after its last load report
/// plus the master's report timeout (3 s: three of an endpoint's default 1 s report intervals;
/// the lab's endpoints report every 0.5 s), with 0.5 s of margin for the master reading that
/// last report from its socket later than the endpoint sent it; te1 and te3 take the rest;
/// every tunnel comes up (the SCCRQs lost with te2 are placed anew when retransmitted), the
/// only failures are tunnels te2 had answered, and the LAC finishes by itself.
fn kill_one_of_three_endpoints_under_load(topology: Topology) {
    let lab = Lab::up(&LabSpec {
        initiators: 10,
        binary: Some(BIN.into()),
        ..LabSpec::new(topology, 3)
    })
    .unwrap();
    let _scratch = Scratch::new(lab.run_dir());
    let lac = start_lac(
        &lab,
        LacArgs {
            hold: Duration::from_secs(2),
            setup_timeout: Some(Duration::from_secs(40)),
            ..lac_args(900, 10, 100.0)
        },
    );
    let te2_took = |status: &MasterStatus| {
        let te2 = status.endpoints.iter().find(|e| e.name == "te2").unwrap();
        te2.dispatched_total
    };
    let status = wait_until(
        "te2 to take 100 SCCRQs (or the LAC to finish first)",
        Duration::from_secs(60),
        || master_status(&lab),
        |s| te2_took(s) >= 100 || lac.is_finished(),
    );
    assert!(
        te2_took(&status) >= 100,
        "te2 never took 100 SCCRQs: {status:?}"
    );
    lab.kill("te2").unwrap();
    let (report, ended) = lac.join().expect("the LAC thread");
    // The master's view once the load is over, and complete captures.
    let status = master_status(&lab);
    lab.stop_captures().unwrap();
    let captured = read_pcap(&lab.run_dir().join("lan.pcap"));
    let public = read_pcap(&lab.run_dir().join("public.pcap"));
    let run_dir = lab.run_dir().to_path_buf();
    lab.down().unwrap();
    let verdict = l2tpkit::lab::verify(&run_dir, topology).unwrap();

    assert_eq!(ended, Ended::Finished, "{report}");
    let reports_from_te2: Vec<f64> = captured
        .iter()
        .filter(|s| s.src.ip() == &lan(2) && s.dst.port() == reference::cluster::REPORT_PORT)
        .map(|s| s.time)
        .collect();
    let last_report = *reports_from_te2
        .iter()
        .max_by(|a, b| a.total_cmp(b))
        .expect("te2 reported before it died");
    let deadline = last_report + 3.0 + 0.5;
    let sccrq = |s: &&Seen| s.is(MessageType::Sccrq) && s.dst.port() == 1701;
    let to_te2: Vec<f64> = captured
        .iter()
        .filter(sccrq)
        .filter(|s| s.dst.ip() == &lan(2))
        .map(|s| s.time)
        .collect();
    let late: Vec<f64> = to_te2.iter().filter(|&&t| t > deadline).copied().collect();
    assert!(
        late.is_empty(),
        "{} SCCRQs reached te2 more than 3.5 s after its last report at {last_report:.3}: \
         {late:?}",
        late.len()
    );
    assert!(to_te2.len() >= 100, "te2 took {}", to_te2.len());
    // The others absorb the load: they were dispatched to after te2 was out.
    let after: BTreeMap<Ipv4Addr, usize> = captured
        .iter()
        .filter(sccrq)
        .filter(|s| s.time > deadline)
        .fold(BTreeMap::new(), |mut m, s| {
            *m.entry(*s.dst.ip()).or_default() += 1;
            m
        });
    assert!(
        after.get(&lan(1)).is_some_and(|&n| n > 0) && after.get(&lan(3)).is_some_and(|&n| n > 0),
        "after te2's end: {after:?}"
    );

    let te2 = status.endpoints.iter().find(|e| e.name == "te2").unwrap();
    assert_eq!(te2.state, MemberState::OutOfService, "{status:?}");
    // SCCRQs te2 had taken in its last seconds, retransmitted after it was out: placed anew.
    assert!(status.totals.sccrq_redispatched > 0, "{status:?}");
    assert_eq!(
        te2.sccrq_redispatched_away,
        status.totals.sccrq_redispatched
    );
    // Every tunnel came up; failures are only tunnels te2 had answered before it died (FIG 2:
    // from its LAN address, through the NAT; FIG 4: from its own global address).
    let te2_global = Ipv4Addr::new(198, 18, 0, 12);
    let answered_by_te2: BTreeSet<(SocketAddrV4, u16)> = captured
        .iter()
        .chain(&public)
        .filter(|s| s.is(MessageType::Sccrp) && [lan(2), te2_global].contains(s.src.ip()))
        .map(|s| (s.dst, s.class.map_or(0, |c| c.tunnel_id())))
        .collect();
    assert_eq!(report.tunnels_established, 900, "{report}");
    assert!(
        report.tunnels_failed <= answered_by_te2.len(),
        "{} failed, te2 answered {}: {report}",
        report.tunnels_failed,
        answered_by_te2.len()
    );
    assert!(!answered_by_te2.is_empty());
    // `verify` takes a move away from the dead te2 as legitimate (no dispatch deviation) and
    // says so in a note on each such tunnel.
    let dispatch_deviations: Vec<String> = verdict
        .tunnels
        .iter()
        .flat_map(|t| &t.deviations)
        .filter(|d| d.rule == Rule::Dispatch)
        .map(|d| d.text.clone())
        .collect();
    assert!(dispatch_deviations.is_empty(), "{dispatch_deviations:#?}");
    let moved = verdict
        .tunnels
        .iter()
        .filter(|t| t.notes.iter().any(|n| n.contains("placed anew")))
        .count();
    // Only tunnels te2 served can deviate (it died under them: their last messages went
    // unacknowledged); every other tunnel, moved or not, conforms to the sequence.
    let deviating: Vec<String> = verdict
        .tunnels
        .iter()
        .filter(|t| !t.conforms && t.endpoint.as_deref() != Some("te2"))
        .map(|t| format!("{} {:?}: {:?}", t.initiator, t.endpoint, t.deviations))
        .collect();
    assert!(deviating.is_empty(), "{deviating:#?}");
    assert!(verdict.inferred.is_empty(), "{:?}", verdict.inferred);
    assert!(
        moved > 0 && moved as u64 <= status.totals.sccrq_redispatched,
        "{moved} tunnels moved, {} SCCRQs redispatched",
        status.totals.sccrq_redispatched
    );
    eprintln!(
        "{topology}: te2 killed: last report {last_report:.3}, last SCCRQ to it {:.3}, {} redispatched, \
         {} tunnels failed of {} te2 had answered; verify: {moved} tunnels moved away from te2",
        to_te2.iter().fold(0.0f64, |a, &b| a.max(b)),
        status.totals.sccrq_redispatched,
        report.tunnels_failed,
        answered_by_te2.len()
    );
}

#[test]
fn killing_one_of_three_fig2_endpoints_under_load() {
    if lab_available("killing_one_of_three_fig2_endpoints_under_load") {
        kill_one_of_three_endpoints_under_load(Topology::Fig2);
    }
}

#[test]
fn killing_one_of_three_fig4_endpoints_under_load() {
    if lab_available("killing_one_of_three_fig4_endpoints_under_load") {
        kill_one_of_three_endpoints_under_load(Topology::Fig4);
    }
}

/// SCCRQ flood at 10× an endpoint's bucket: the master's leaky bucket (20 SCCRQs/s, burst
/// 10) in front of one endpoint, 600 SCCRQs at 200/s. On the LAN, the endpoint gets at most
/// burst + rate × window new SCCRQs in every window, with 0.25 s added to each window: the
/// LAN capture stamps a forwarded SCCRQ a little after the master decided on it, and that
/// jitter can squeeze a window by a fraction of that. Every SCCRQ that reached the cluster
/// address (retransmissions included) is either dispatched, re-sent where its first copy
/// went, or dropped as `no_capacity`, and the endpoint's bucket carries the drops.
#[test]
fn an_sccrq_flood_at_ten_times_the_bucket_is_held_to_the_bucket() {
    if !lab_available("an_sccrq_flood_at_ten_times_the_bucket_is_held_to_the_bucket") {
        return;
    }
    let (rate, burst) = (20.0, 10);
    let lab = Lab::up(&LabSpec {
        initiators: 4,
        binary: Some(BIN.into()),
        policy: Policy::LeakyBucket { rate, burst },
        ..LabSpec::new(Topology::Fig2, 1)
    })
    .unwrap();
    let _scratch = Scratch::new(lab.run_dir());
    let lac = start_lac(
        &lab,
        LacArgs {
            hold: Duration::from_millis(500),
            // Dropped SCCRQs are retransmitted after 1 s and 2 s more, then given up.
            setup_timeout: Some(Duration::from_secs(5)),
            ..lac_args(600, 4, 10.0 * rate)
        },
    );
    let (report, ended) = lac.join().expect("the LAC thread");
    // The captures are complete once stopped; the master's counters are awaited until they
    // account for every SCCRQ captured at the cluster address (the last decisions reached them).
    lab.stop_captures().unwrap();
    let public = read_pcap(&lab.run_dir().join("public.pcap"));
    let lan_side = read_pcap(&lab.run_dir().join("lan.pcap"));
    let sent = public
        .iter()
        .filter(|s| {
            s.is(MessageType::Sccrq)
                && s.dst == SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 1701)
        })
        .count() as u64;
    let decided = |s: &MasterStatus| {
        s.totals.sccrq_dispatched + s.totals.sccrq_retransmitted + s.drops.no_capacity
    };
    let status = wait_until(
        &format!("the master to decide on all {sent} SCCRQs captured at the cluster address"),
        Duration::from_secs(10),
        || master_status(&lab),
        |s| decided(s) >= sent,
    );
    lab.down().unwrap();
    assert_ne!(ended, Ended::Interrupted);

    let totals = status.totals;
    let drops = status.drops;
    assert_eq!(drops.no_endpoint, 0, "{status:?}");
    assert_eq!(
        sent,
        totals.sccrq_dispatched + totals.sccrq_retransmitted + drops.no_capacity,
        "SCCRQs at the cluster address vs the master's counters: {status:?}"
    );
    let te1 = &status.endpoints[0];
    assert_eq!(te1.bucket_drops, drops.no_capacity, "{status:?}");
    assert!(drops.no_capacity > sent / 2, "{sent} sent: {status:?}");

    // New SCCRQs on the LAN: the first copy of each (initiator, Assigned Tunnel ID).
    let forwarded: Vec<&Seen> = lan_side
        .iter()
        .filter(|s| s.is(MessageType::Sccrq) && s.dst.ip() == &lan(1))
        .collect();
    assert_eq!(
        forwarded.len() as u64,
        te1.dispatched_total + te1.sccrq_retransmitted,
        "{status:?}"
    );
    let mut firsts = BTreeSet::new();
    let times: Vec<f64> = forwarded
        .iter()
        .filter(|s| firsts.insert((s.src, s.assigned())))
        .map(|s| s.time)
        .collect();
    assert_eq!(times.len() as u64, te1.dispatched_total);
    let slack = 0.25;
    let mut worst = f64::MIN;
    for (i, start) in times.iter().enumerate() {
        for (j, end) in times.iter().enumerate().skip(i) {
            let taken = (j - i + 1) as f64;
            let allowed = f64::from(burst) + rate * (end - start + slack);
            worst = worst.max(taken - allowed);
            assert!(
                taken <= allowed,
                "{taken} new SCCRQs in {:.3} s: more than the bucket allows ({allowed})",
                end - start
            );
        }
    }
    let span = times.last().unwrap() - times.first().unwrap();
    eprintln!(
        "flood: {sent} SCCRQs at the cluster address, {} dispatched over {span:.2} s \
         ({:.1}/s), {} dropped; closest window {worst:.1} under the bucket; LAC: {} up",
        totals.sccrq_dispatched,
        totals.sccrq_dispatched as f64 / span.max(1e-3),
        drops.no_capacity,
        report.tunnels_established
    );
}

/// The "never acknowledged" findings tolerated in the lossy run: the last message of a tunnel
/// that had no one left to acknowledge it (see the test). Named by the message and its sender.
const TOLERATED_UNACKED: [(&str, &str); 2] = [
    // The LAC gives up on its StopCCN 5 s into its teardown: three copies (at 0, 1 and 3 s).
    ("StopCCN", "the initiator"),
    // An endpoint whose StopCCN never arrived keeps the tunnel, and its HELLO finds no LAC.
    ("HELLO", "the endpoint"),
];

/// At most this many tolerated findings in the 5000-tunnel run, 3% of it. A StopCCN stays
/// unacknowledged only when each of its three copies, or the acknowledgement of each, was lost
/// at 20% each way: (1 - 0.8²)³ ≈ 4.7% at the very worst, about 0.2³ = 0.8% (40 tunnels) when
/// what the capture saw leave the endpoint counts as the acknowledgement; an endpoint HELLO
/// needs that StopCCN lost too. One run saw 64 (51 StopCCN, 13 HELLO): 150 leaves room for
/// chance while still failing on a systematic loss of the teardown.
const UNACKED_AT_END: usize = 150;

/// The message type of a tolerated finding ("StopCCN (Ns 3) from the initiator was never
/// acknowledged [public]"), `None` for any other finding.
fn unacked_at_end(finding: &str) -> Option<&'static str> {
    let (kind, rest) = finding.split_once(" (Ns ")?;
    let (_, rest) = rest.split_once(") from ")?;
    let (sender, _) = rest.split_once(" was never acknowledged")?;
    TOLERATED_UNACKED
        .iter()
        .find(|(k, s)| *k == kind && *s == sender)
        .map(|(k, _)| *k)
}

/// At most this many tunnels of the 5000 whose SCCCN never reached the endpoint (about 0.3 a
/// run are expected; see the test).
const SCCCN_LOST_AT_MOST: usize = 5;

/// The initiators ("198.18.1.24:54349") of the tunnels whose SCCCN verify never saw reach the
/// endpoint.
fn scccn_never_arrived(verify: &str) -> Vec<String> {
    verify
        .lines()
        .filter_map(|l| l.split_once("missing: no SCCCN from the initiator "))
        .filter_map(|(_, rest)| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// A finding that belongs to one of those tunnels: its SCCCN never acknowledged, or a step
/// that names its initiator.
fn about_lost_scccn(finding: &str, lost: &[String]) -> bool {
    (!lost.is_empty()
        && finding.starts_with("SCCCN (Ns 1) from the initiator was never acknowledged"))
        || lost.iter().any(|initiator| {
            finding.contains(&format!("initiator {initiator} "))
                || finding.ends_with(&format!("initiator {initiator}"))
                || finding.contains(&format!("initiator {initiator}:"))
        })
}

/// `lab run --no-tui --json` with the public side losing a fifth and reordering a quarter of
/// every frame, and `args`; its JSON summary, and the run dir (removed when dropped).
fn lossy_lab_run(tag: &str, args: &[&str]) -> (serde_json::Value, Scratch) {
    let run_dir = std::env::temp_dir().join(format!("l2tpkit-lab-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run_dir);
    let scratch = Scratch::new(run_dir.clone());
    let netem = ["--netem", "loss 20% reorder 25% delay 10ms"];
    let args: Vec<&str> = netem.iter().chain(args).copied().collect();
    (common::lab_run_json(&args, &run_dir, &[]), scratch)
}

/// Issue 16's acceptance, as its user types it: a thousand subscribers (two PPP sessions per
/// tunnel, CHAP, IPCP) through FIG 2 while the public side loses a fifth of every frame and
/// reorders a quarter. Every tunnel and session comes up, every tunnel closes cleanly (its
/// StopCCN retransmitted on the RFC's schedule until acknowledged, not cut off after 5 s), and
/// `verify` finds every tunnel conforming; the run exits 0. Before the teardown followed the
/// schedule 946 of 1000 closed cleanly; before PPP waited for the ICCN's ack and its
/// Max-Configure followed `--max-retransmits`, 1 to 4 of 2000 sessions failed in PPP.
#[test]
fn a_thousand_subscribers_over_a_lossy_link_come_up_and_close_cleanly() {
    if !lab_available("a_thousand_subscribers_over_a_lossy_link_come_up_and_close_cleanly") {
        return;
    }
    let (summary, _scratch) =
        lossy_lab_run("subs", &["--max-retransmits", "10", "--tunnels", "1000"]);
    let lac = &summary["lac"];
    assert_eq!(lac["tunnels_established"], 1000, "{lac}");
    assert_eq!(lac["sessions_established"], 2000, "{lac}");
    assert_eq!(lac["sessions_ip_up"], 2000, "{lac}");
    assert_eq!(lac["tunnels_closed_cleanly"], 1000, "{lac}");
    assert!(lac.get("given_up").is_none(), "{lac}");
    assert_eq!(summary["verify_tunnels"], 1000, "{summary}");
    assert_eq!(summary["verify_conforming"], 1000, "{summary}");
    // The impairment did happen.
    let stats = &summary["impair"]["stats"];
    let received = stats["received"].as_u64().unwrap();
    assert!(
        stats["lost"].as_u64().unwrap() * 100 > received * 15,
        "{stats}"
    );
}

/// 20% loss and 25% reordering (behind a 10 ms delay) on the public side, 5000 tunnels from
/// 30 initiator addresses through `lab run`: all 5000 come up at the LAC, none failed, and
/// none twice. The endpoints' own counts of established tunnels sum to 5000; on the LAN each
/// (initiator address, port, Assigned Tunnel ID) got SCCRPs with one endpoint Tunnel ID only,
/// however often its SCCRQ was retransmitted, and `verify` finds exactly 5000 tunnels.
/// Control messages get 10 retransmissions (RFC 2661 §5.8: configurable) and the tunnels are
/// held 20 s, so that each SCCCN has reached its endpoint before the teardown.
#[test]
fn five_thousand_tunnels_over_a_lossy_reordering_public_side_all_come_up_once() {
    if !lab_available("five_thousand_tunnels_over_a_lossy_reordering_public_side_all_come_up_once")
    {
        return;
    }
    let (summary, scratch) = lossy_lab_run(
        "netem",
        &[
            "--tunnels",
            "5000",
            "--sessions-per-tunnel",
            "0",
            "--initiators",
            "30",
            "--rate",
            "250",
            "--hold",
            "20",
            "--max-retransmits",
            "10",
        ],
    );
    let run_dir = scratch.0.clone();
    let stdout = summary.to_string();
    assert_eq!(summary["netem"], "delay 10ms loss 20% reorder 25%");
    assert_eq!(summary["lac"]["tunnels_established"], 5000, "{stdout}");
    assert_eq!(summary["lac"]["tunnels_failed"], 0, "{stdout}");
    // The impairment did happen.
    let stats = &summary["impair"]["stats"];
    let received = stats["received"].as_u64().unwrap();
    let lost = stats["lost"].as_u64().unwrap();
    assert!(
        lost * 100 > received * 15 && stats["reordered"].as_u64().unwrap() > 0,
        "{stats}"
    );
    assert!(summary["lac"]["retransmissions"].as_u64().unwrap() > 1000);
    // The teardown runs on the RFC's schedule (issue 16): every StopCCN is acknowledged, or
    // given up after its 10 retransmissions and reported by name; none is cut off by a fixed
    // drain (which left 54 of 1000 unacknowledged before). A give-up needs 11 lost rounds in
    // a row (0.36^11 × 5000 ≈ 0.07 a run).
    let lac = &summary["lac"];
    let clean = lac["tunnels_closed_cleanly"].as_u64().unwrap();
    let given_up = lac["given_up"]["StopCCN"].as_u64().unwrap_or(0);
    assert_eq!(clean + given_up, 5000, "{lac}");
    assert!(given_up <= 1, "{lac}");
    assert!(lac.get("teardown_cut_off").is_none(), "{lac}");

    // The endpoints' counts (printed when the lab stopped them).
    let mut established = 0;
    for te in ["te1", "te2", "te3"] {
        let log = std::fs::read_to_string(run_dir.join(format!("{te}.log"))).unwrap();
        let n: u64 = log
            .lines()
            .find_map(|l| l.strip_prefix("tunnels "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{te}.log has no final count:\n{log}"));
        established += n;
    }
    // A tunnel whose SCCCN and every retransmission of it were lost (20% each, about six
    // copies before the LAC's hold ends: 0.2^6 × 5000 ≈ 0.3 tunnels a run) is up at the LAC
    // and never at its endpoint; verify names each by its initiator.
    let verify = std::fs::read_to_string(run_dir.join("verify.txt")).unwrap();
    let scccn_lost = scccn_never_arrived(&verify);
    assert!(scccn_lost.len() <= SCCCN_LOST_AT_MOST, "{scccn_lost:?}");
    assert_eq!(
        established + scccn_lost.len() as u64,
        5000,
        "the endpoints' established tunnels (SCCCN never arrived: {scccn_lost:?})"
    );

    // On the LAN (not impaired, so everything an endpoint sent is there): one endpoint tunnel
    // per initiator tunnel, and each SCCRQ's copies all went to one endpoint.
    let captured = read_pcap(&run_dir.join("lan.pcap"));
    let mut answers: BTreeMap<(SocketAddrV4, u16), BTreeSet<(Ipv4Addr, u16)>> = BTreeMap::new();
    let mut sccrps = 0;
    for s in captured.iter().filter(|s| s.is(MessageType::Sccrp)) {
        sccrps += 1;
        let initiator_tid = s.class.map_or(0, |c| c.tunnel_id());
        answers
            .entry((s.dst, initiator_tid))
            .or_default()
            .insert((*s.src.ip(), s.assigned().unwrap_or(0)));
    }
    let mut dispatched: BTreeMap<(SocketAddrV4, Option<u16>), BTreeSet<Ipv4Addr>> = BTreeMap::new();
    let mut sccrqs = 0;
    for s in captured.iter().filter(|s| s.is(MessageType::Sccrq)) {
        sccrqs += 1;
        dispatched
            .entry((s.src, s.assigned()))
            .or_default()
            .insert(*s.dst.ip());
    }
    assert_eq!(answers.len(), 5000);
    let twice: Vec<_> = answers.iter().filter(|(_, a)| a.len() != 1).collect();
    assert!(
        twice.is_empty(),
        "tunnels answered more than once: {twice:?}"
    );
    assert_eq!(dispatched.len(), 5000);
    assert!(dispatched.values().all(|to| to.len() == 1));
    // Retransmissions did reach the endpoints (and were deduplicated there).
    assert!(
        sccrqs > 5000 && sccrps > 5000,
        "{sccrqs} SCCRQs, {sccrps} SCCRPs"
    );
    assert_eq!(summary["verify_tunnels"], 5000, "{stdout}");
    // What `verify` may still find: a message never acknowledged. The captures see each copy
    // before the impairment can drop it, and at the end the peer is gone: the LAC stops
    // retransmitting its StopCCN 5 s into its teardown, and an endpoint whose StopCCN never
    // arrived sends a HELLO after 60 s of quiet to a LAC that has left. Those two, and only
    // those, are tolerated, and only as the rare end of a tunnel: see `UNACKED_AT_END`. Every
    // other rule (dispatch, tunnel IDs, Ns, Nr, the steps and their addresses) holds for all
    // 5000.
    let findings: Vec<&str> = verify
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix('✗'))
        .map(str::trim)
        .collect();
    // The findings about a tunnel whose SCCCN never arrived (counted above) are its own.
    let findings: Vec<&str> = findings
        .into_iter()
        .filter(|f| !about_lost_scccn(f, &scccn_lost))
        .collect();
    let (tolerated, broken): (Vec<&str>, Vec<&str>) =
        findings.iter().partition(|f| unacked_at_end(f).is_some());
    assert!(broken.is_empty(), "verify: {broken:#?}");
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &tolerated {
        *by_kind.entry(unacked_at_end(f).unwrap()).or_default() += 1;
    }
    eprintln!(
        "verify: {} findings tolerated (never acknowledged at the end): {by_kind:?}",
        tolerated.len()
    );
    for f in &tolerated {
        eprintln!("  tolerated: {f}");
    }
    assert!(
        tolerated.len() <= UNACKED_AT_END,
        "{} never-acknowledged findings, at most {UNACKED_AT_END} expected: {by_kind:?}",
        tolerated.len()
    );

    let lab: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("lab.json")).unwrap()).unwrap();
    assert_eq!(lab["netem"], "delay 10ms loss 20% reorder 25%");
    let state = std::fs::read_to_string(run_dir.join("state.jsonl")).unwrap();
    assert!(state.contains(r#""kind":"netem""#), "{state}");
    let prefix = lab["prefix"].as_str().unwrap().to_string();
    assert!(
        !sys::netns_list()
            .unwrap()
            .iter()
            .any(|n| n.starts_with(&prefix)),
        "namespaces of {prefix} left behind"
    );
    eprintln!(
        "netem: {received} frames, {lost} lost; {sccrqs} SCCRQs and {sccrps} SCCRPs on the LAN \
         for 5000 tunnels; {} LAC retransmissions",
        summary["lac"]["retransmissions"]
    );
}
