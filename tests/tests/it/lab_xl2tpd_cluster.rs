//! Unmodified xl2tpd LNSs behind our master (issue 15): `lab --endpoint-kind xl2tpd` runs three
//! of them, each with `l2tpkit agent` beside it, in FIG 2 (behind our NAT) and FIG 4 (answering
//! from their own addresses). Our LAC opens 1000 tunnels × 2 sessions, half of them keeping to
//! the cluster address (`--stay-on-target`, as xl2tpd does), beside an unmodified xl2tpd LAC.
//!
//! - every tunnel and call is up, by our LAC's count and by the LNSs' own logs, except those
//!   xl2tpd broke itself (below);
//! - the master placed them evenly by the agents' exact counts, and forwarded every later packet
//!   of a stay-on-target tunnel by its agent's claim: none dropped as an unknown tunnel, no
//!   claim refused;
//! - `verify` on both captures: every tunnel conforms, in the variant its initiator calls for
//!   (via-master for those that keep to the cluster address), except those that xl2tpd itself
//!   broke by handing one Tunnel ID to two live tunnels (its own finding, `probe`'s
//!   tunnel-id-uniqueness), and those where two xl2tpds picked the same random ID for one
//!   initiator socket (no key the master or the NAT can see tells those two apart: the first
//!   holder keeps it, the master refuses the second claim): each such deviation is checked
//!   against the LNSs' logs; and but for Ns/Nr bookkeeping once a tunnel is up (xl2tpd acks
//!   some of 2000 CDNs after our LAC's fixed 5 s drain; a busy capture may miss a message);
//! - `verify` names one endpoint for every tunnel: nothing went to the wrong LNS.
//!
//! Needs root, `ip` and xl2tpd (CI installs it); under `CI=true` a missing one fails the test.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddrV4;
use std::path::Path;
use std::time::Duration;

use l2tp::wire::message::ParseOptions;
use l2tp::wire::MessageType;
use l2tpkit::lab::{sys, EndpointKind, Lab, LabSpec, NodeKind, Topology};
use l2tpkit::lac::{execute as run_lac, LacArgs, PppLevel};
use l2tpkit::verify::{read_captures, read_roles, SequenceArg};
use l2tpkit_tests::xl2tpd::{self, Xl2tpd, Xl2tpdEnd, Xl2tpdOptions};
use probes::lac::LacReport;
use probes::sequence::{self, Kind, Observation, Variant};
use reference::master::MasterStatus;

use crate::cluster_loopback::one_cluster;
use l2tpkit_tests::on_lab;

/// Per group: 500 tunnels × 2 sessions from 10 initiator addresses.
const TUNNELS: usize = 500;
const INITIATORS: usize = 10;

#[test]
fn fig2_three_xl2tpd_lnss_with_agents_behind_the_master_and_the_nat() {
    if !(xl2tpd::available() && l2tpkit_tests::require("ip")) {
        return;
    }
    xl2tpd_cluster(Topology::Fig2, [Variant::Fig3, Variant::Fig3ViaMaster]);
}

#[test]
fn fig4_three_xl2tpd_lnss_with_agents_answering_from_their_own_addresses() {
    if !(xl2tpd::available() && l2tpkit_tests::require("ip")) {
        return;
    }
    xl2tpd_cluster(Topology::Fig4, [Variant::Fig5, Variant::Fig5ViaMaster]);
}

fn group(first: usize, stay_on_target: bool) -> LacArgs {
    LacArgs {
        target: "198.18.0.1:1701".parse().unwrap(),
        bind: format!("198.18.1.{first}:0").parse().unwrap(),
        initiators: INITIATORS,
        tunnels: TUNNELS,
        sessions_per_tunnel: 2,
        any_source: true,
        stay_on_target,
        // xl2tpd forks a pppd for every call: past ~150 setups a second in all its socket
        // overflows and SCCRQs wait for their fourth retransmission.
        rate: 60.0,
        // No echoes: xl2tpd loops each through a pty and a `cat` per call in one select loop,
        // and with an echo a second on 2000 sessions it acks the teardown late (the LAC waits
        // for it on the RFC's schedule, but the run gets long).
        hold: Duration::from_secs(2),
        echo_rate: 0.0,
        setup_timeout: Some(Duration::from_secs(30)),
        ppp: PppLevel::Off,
        json: true,
        ..LacArgs::default()
    }
}

fn xl2tpd_cluster(topology: Topology, [direct, via_master]: [Variant; 2]) {
    let _alone = one_cluster();
    let spec = LabSpec {
        initiators: 2 * INITIATORS + 1,
        endpoint_kind: EndpointKind::Xl2tpd,
        ..LabSpec::new(topology, 3)
    };
    on_lab(&topology.to_string(), &spec, |lab| {
        drive(lab, topology, direct, via_master)
    });
}

fn drive(lab: &Lab, topology: Topology, direct: Variant, via_master: Variant) {
    let d = lab.description();
    let ti = lab
        .namespace(NodeKind::Initiator)
        .expect("an initiator namespace")
        .to_string();
    // The xl2tpd LAC on the last initiator address, one tunnel and one call.
    let xl2tpd_addr = d.initiator_addresses[2 * INITIATORS];
    let cluster = SocketAddrV4::new(d.cluster_address, 1701);
    let lac = Xl2tpd::start(
        Xl2tpdEnd::Lac {
            lns: cluster,
            autodial: true,
        },
        &Xl2tpdOptions {
            netns: Some(ti.clone()),
            ..Xl2tpdOptions::on(xl2tpd_addr)
        },
    )
    .unwrap_or_else(|err| panic!("{topology}: starting the xl2tpd LAC: {err}"));
    let run = |first: usize, stay: bool| {
        let ti = ti.clone();
        std::thread::spawn(move || -> Result<LacReport, String> {
            sys::enter_netns(&ti).map_err(|e| format!("{e:#}"))?;
            run_lac(&group(first, stay))
                .map(|(report, _)| report)
                .map_err(|e| format!("{e:#}"))
        })
    };
    let following = run(1, false);
    let staying = run(1 + INITIATORS, true);
    let following = following.join().expect("LAC thread").expect("LAC");
    let staying = staying.join().expect("LAC thread").expect("LAC");
    for (name, report) in [("following", &following), ("staying", &staying)] {
        eprintln!("{topology} {name}:\n{report}");
    }
    lac.wait_for("Call established with", 1, Duration::from_secs(10))
        .unwrap_or_else(|err| panic!("{topology}: the xl2tpd LAC: {err}"));
    let master: MasterStatus = serde_json::from_value(
        reference::control::request(&d.master_control, "status").expect("the master answers"),
    )
    .expect("the master's status");
    let _ = lac.stop_with_stopccn();
    std::thread::sleep(Duration::from_millis(500));
    for capture in ["capture-public", "capture-lan"] {
        lab.stop(capture)
            .unwrap_or_else(|err| panic!("{topology}: stopping {capture}: {err:#}"));
    }

    let logs: BTreeMap<String, String> = (1..=3)
        .map(|i| {
            let name = format!("te{i}");
            let log = std::fs::read_to_string(lab.run_dir().join(format!("{name}-xl2tpd.log")))
                .unwrap_or_default();
            (name, log)
        })
        .collect();

    // Placed evenly by exact counts; every packet of a claimed tunnel routed.
    let spread: Vec<u64> = master
        .endpoints
        .iter()
        .map(|e| e.dispatched_total)
        .collect();
    eprintln!(
        "{topology}: dispatched {spread:?}; claims {:?}",
        master.claims
    );
    let even = (2 * TUNNELS + 1) as u64 / 3;
    assert!(
        spread.iter().all(|&n| n.abs_diff(even) <= even / 20),
        "{topology}: {spread:?}"
    );
    assert_eq!(master.drops.total(), 0, "{:?}", master.drops);
    // Two LNSs that gave one initiator socket the same Tunnel ID: the second claim is refused
    // (the first holder keeps the key), as every refresh of it; nothing else conflicts.
    let established = established(&logs);
    let (report, observations) = verify(lab.run_dir());
    let shared = shared_across_lnss(&observations, d.nat_global);
    assert_eq!(
        master.claims.conflict > 0,
        !shared.is_empty(),
        "{topology}: {:?}, {shared:?}",
        master.claims
    );
    assert!(
        master.claims.claimed >= (2 * TUNNELS + 1) as u64,
        "{:?}",
        master.claims
    );

    let text = report.render_text(&["public.pcap".into(), "lan.pcap".into()]);
    let _ = std::fs::write(lab.run_dir().join("verify.txt"), &text);
    assert_eq!(report.totals.tunnels, 2 * TUNNELS + 1, "{topology}");
    let reused = reused_within_an_lns(&established);
    let (mut excused, mut unanswered, mut zero_ids) = (0, 0, 0);
    for tunnel in &report.tunnels {
        let endpoint = tunnel
            .endpoint
            .as_deref()
            .unwrap_or_else(|| panic!("{topology}: a tunnel with no one endpoint: {tunnel:?}"));
        let ours = tunnel.initiator.ip().octets()[3] as usize;
        let expected = if ours > INITIATORS {
            via_master
        } else {
            direct
        };
        assert_eq!(tunnel.variant, expected, "{topology}: {}", tunnel.initiator);
        let id = tunnel.endpoint_tunnel_id.unwrap_or(0);
        // Two LNSs gave this initiator socket this ID: its packets carry nothing else to tell
        // the two tunnels apart, so the master sends both to the first claim's LNS (a CI run
        // had 5 such claims refused among 500 tunnels from one socket, and failed below).
        let shared_id = shared.contains(&(tunnel.initiator, id));
        // Nothing else forwarded to the wrong LNS: every packet of the initiator's that the
        // LAN carried went to the tunnel's own endpoint.
        let own = format!("{endpoint} lan");
        let stray: Vec<_> = tunnel
            .timeline
            .iter()
            .filter(|e| e.from == "TI" && e.to.ends_with(" lan") && e.to != own)
            .collect();
        assert!(
            stray.is_empty() || shared_id,
            "{topology}: {} ⇄ {endpoint}: forwarded elsewhere: {stray:?}",
            tunnel.initiator
        );
        if tunnel.conforms {
            continue;
        }
        if reused.contains(&(endpoint.to_string(), id)) || shared_id {
            excused += 1;
            continue;
        }
        // xl2tpd draws a Tunnel ID from 16 random bits, 0 among them (one in 65,536 tunnels;
        // seen in CI): our LAC refuses an SCCRP that assigns 0 (RFC 2661 §4.4.3 reserves it)
        // and xl2tpd retransmits it until it gives up.
        if tunnel.endpoint_tunnel_id == Some(0) {
            excused += 1;
            zero_ids += 1;
            continue;
        }
        // Every other tunnel conforms: the teardown waits for xl2tpd's late acks on the RFC's
        // schedule (it used to leave after a fixed 5 s and left 90 to 210 of 1000 tunnels
        // with unacknowledged CDNs and StopCCNs).
        unanswered += 1;
        eprintln!(
            "{topology}: {} ⇄ {endpoint} tid {id} deviates: {:?}",
            tunnel.initiator, tunnel.deviations
        );
    }
    assert_eq!(
        unanswered, 0,
        "{topology}: tunnels deviate where no xl2tpd handed their ID out twice, nor two of them \
         to that initiator"
    );
    eprintln!(
        "{topology}: verify: {} of {} conform; {excused} deviate where an xl2tpd gave one Tunnel \
         ID to two live tunnels ({} such IDs) or two gave one initiator socket the same ID ({}) \
         or an xl2tpd assigned Tunnel ID 0 ({zero_ids})",
        report.totals.conforming,
        report.totals.tunnels,
        reused.len(),
        shared.len()
    );
    // A reused ID breaks at most the two tunnels that share it.
    assert!(
        excused <= 2 * (reused.len() + shared.len()) + zero_ids,
        "{topology}: {excused} broken, {reused:?} {shared:?}, {zero_ids} assigned 0"
    );

    // Every tunnel and call up, by our LAC and by the LNSs' own logs (ours and xl2tpd's LAC's),
    // but those xl2tpd broke itself.
    let lac_tunnels = following.tunnels_established + staying.tunnels_established;
    let lac_sessions = following.sessions_established + staying.sessions_established;
    let lac_failed = following.tunnels_failed + staying.tunnels_failed;
    let count = |needle: &str| -> usize { logs.values().map(|l| l.matches(needle).count()).sum() };
    let (lns_tunnels, lns_calls) = (
        count("Connection established to"),
        count("Call established with"),
    );
    eprintln!(
        "{topology}: our LAC: {lac_tunnels} tunnels, {lac_sessions} sessions, {lac_failed} \
         failed; the LNSs' logs: {lns_tunnels} tunnels, {lns_calls} calls"
    );
    assert!(lac_tunnels + excused >= 2 * TUNNELS, "{topology}");
    assert!(lac_sessions + 2 * excused >= 4 * TUNNELS, "{topology}");
    assert!(lac_failed <= excused + unanswered, "{topology}");
    assert!(lns_tunnels + excused > 2 * TUNNELS, "{topology}");
    assert!(lns_calls + 2 * excused > 4 * TUNNELS, "{topology}");
}

/// Every "Connection established" line of the LNSs' logs: (endpoint, initiator, Tunnel ID).
fn established(logs: &BTreeMap<String, String>) -> Vec<(String, SocketAddrV4, u16)> {
    let mut out = Vec::new();
    for (endpoint, log) in logs {
        for line in log.lines() {
            // "Connection established to 198.18.1.30, 44022.  Local: 17914, Remote: 50820 …"
            let Some(rest) = line.split("Connection established to ").nth(1) else {
                continue;
            };
            let number = |text: &str| -> Option<u16> {
                let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            };
            let parsed = (|| {
                let (addr, rest) = rest.split_once(", ")?;
                let port = number(rest)?;
                let id = number(rest.split("Local: ").nth(1)?)?;
                Some((SocketAddrV4::new(addr.parse().ok()?, port), id))
            })();
            if let Some((initiator, id)) = parsed {
                out.push((endpoint.clone(), initiator, id));
            }
        }
    }
    out
}

/// (endpoint, Tunnel ID) that one xl2tpd gave two tunnels in this run (all of the run's
/// tunnels are up at once, so both were live): xl2tpd's own bug, it routes by ID alone.
fn reused_within_an_lns(established: &[(String, SocketAddrV4, u16)]) -> BTreeSet<(String, u16)> {
    let mut seen = BTreeSet::new();
    established
        .iter()
        .filter(|(endpoint, _, id)| !seen.insert((endpoint.clone(), *id)))
        .map(|(endpoint, _, id)| (endpoint.clone(), *id))
        .collect()
}

/// (initiator, Tunnel ID) that two xl2tpds gave the same initiator socket, by the SCCRPs they
/// sent (the captures, before any translation: the NAT's global address is not an LNS's):
/// LNSs that pick IDs themselves cannot be told apart by the packets of that socket (not by
/// the master's claims, not by the NAT's Table 1), so the second of those tunnels cannot be
/// served, whether or not it came up at its LNS.
fn shared_across_lnss(
    observations: &[Observation],
    nat: Option<std::net::Ipv4Addr>,
) -> BTreeSet<(SocketAddrV4, u16)> {
    let mut by_key: BTreeMap<(SocketAddrV4, u16), BTreeSet<std::net::Ipv4Addr>> = BTreeMap::new();
    for o in observations {
        if o.message.kind != Kind::Control(MessageType::Sccrp) || Some(*o.src.ip()) == nat {
            continue;
        }
        if let Some(id) = o.message.assigned_tunnel_id {
            by_key.entry((o.dst, id)).or_default().insert(*o.src.ip());
        }
    }
    by_key
        .into_iter()
        .filter(|(_, lnss)| lnss.len() > 1)
        .map(|(key, _)| key)
        .collect()
}

fn verify(run_dir: &Path) -> (sequence::Report, Vec<Observation>) {
    let roles = read_roles(&run_dir.join("roles.json")).expect("roles.json");
    let files = [run_dir.join("public.pcap"), run_dir.join("lan.pcap")];
    let (observations, counts) =
        read_captures(&files, 1701, &ParseOptions::default()).expect("reading the captures");
    assert_eq!(counts.malformed, 0, "malformed L2TP in the captures");
    let report = sequence::check(&observations, &roles, SequenceArg::Auto.into());
    (report, observations)
}
