//! Unmodified l2tpns LNSs behind our master: `lab --endpoint-kind l2tpns` with two of them, each
//! with FreeRADIUS and `l2tpkit agent` beside it, in FIG 2 (behind our NAT) and FIG 4 (answering
//! from their own global addresses). Our LAC opens 100 tunnels × 2 sessions, every session a PPP
//! subscriber (CHAP as the lab's user, IPCP):
//!
//! - every session is IP up by our LAC's count, none failed, and each was authenticated: l2tpns
//!   logged "Login by" and its FreeRADIUS "Login OK" for each, and no login was refused;
//! - each l2tpns is a cluster of its own: its log says once that it declared itself the
//!   master, and never that it heard of a peer or another master;
//! - the master saw both agents in service, placed the tunnels evenly (within ±5%), dropped no
//!   packet for an unknown tunnel, and took a claim from an agent for every tunnel;
//! - `verify` on both captures: every tunnel conforms to FIG 3 (FIG 5) and names one endpoint.
//!
//! One tunnel per initiator address: l2tpns takes a second SCCRQ from a source that is still
//! opening a tunnel for a retransmission, and it numbers its tunnels from the bottom up, so two
//! endpoints give out the same Tunnel IDs; two tunnels from one initiator address on the two
//! endpoints would then share one key of the NAT's table (far end, endpoint Tunnel ID).
//!
//! With `--tunnel-ids any` all tunnels come from one initiator socket instead: both l2tpns give
//! it IDs 3, 4, 5 …, and the NAT translates the later of each pair (`entries_translated`), so
//! every tunnel still works and `verify` finds each conforming (the NAT's rewrite of those IDs
//! is the only change it accepts in a forwarded message). The master refuses the agents'
//! second claims of each ID (our LAC follows the SCCRP to the NAT, so nothing needs them).
//!
//! Needs root, `ip`, l2tpns and FreeRADIUS (CI installs them); under `CI=true` a missing one
//! fails the test.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use l2tp::wire::message::ParseOptions;
use l2tpkit::lab::{sys, EndpointKind, Lab, LabSpec, NodeKind, Topology, LAB_PASSWORD, LAB_USER};
use l2tpkit::lac::{execute as run_lac, AuthChoice, LacArgs, PppLevel};
use l2tpkit::verify::{read_captures, read_roles, SequenceArg};
use l2tpkit_tests::l2tpns;
use probes::lac::LacReport;
use probes::sequence::{self, Variant};
use reference::master::{MasterStatus, MemberState};

use crate::cluster_loopback::one_cluster;
use l2tpkit_tests::on_lab;

const ENDPOINTS: usize = 2;
const SESSIONS_PER_TUNNEL: usize = 2;

/// How the tunnels come: one per initiator address, or all from one socket through a
/// translating NAT.
#[derive(Debug, Clone, Copy)]
struct Shape {
    initiators: usize,
    tunnels: usize,
    shared_tunnel_ids: bool,
}

const ONE_PER_ADDRESS: Shape = Shape {
    initiators: 100,
    tunnels: 100,
    shared_tunnel_ids: false,
};

#[test]
fn fig2_two_l2tpns_lnss_with_freeradius_and_agents_behind_the_master_and_the_nat() {
    if !(l2tpns::available() && l2tpkit_tests::require("ip")) {
        return;
    }
    l2tpns_cluster(Topology::Fig2, Variant::Fig3, ONE_PER_ADDRESS);
}

#[test]
fn fig2_two_l2tpns_lnss_numbering_one_initiator_sockets_tunnels_alike_behind_a_translating_nat() {
    if !(l2tpns::available() && l2tpkit_tests::require("ip")) {
        return;
    }
    let shape = Shape {
        initiators: 1,
        tunnels: 20,
        shared_tunnel_ids: true,
    };
    l2tpns_cluster(Topology::Fig2, Variant::Fig3, shape);
}

#[test]
fn fig4_two_l2tpns_lnss_with_freeradius_and_agents_answering_from_their_own_addresses() {
    if !(l2tpns::available() && l2tpkit_tests::require("ip")) {
        return;
    }
    l2tpns_cluster(Topology::Fig4, Variant::Fig5, ONE_PER_ADDRESS);
}

fn l2tpns_cluster(topology: Topology, variant: Variant, shape: Shape) {
    let _alone = one_cluster();
    let spec = LabSpec {
        initiators: shape.initiators,
        endpoint_kind: EndpointKind::L2tpns,
        shared_tunnel_ids: shape.shared_tunnel_ids,
        ..LabSpec::new(topology, ENDPOINTS)
    };
    on_lab(&topology.to_string(), &spec, |lab| {
        drive(lab, topology, variant, shape)
    });
}

fn lac_args(target: std::net::SocketAddrV4, shape: Shape) -> LacArgs {
    LacArgs {
        target,
        bind: "198.18.1.1:0".parse().unwrap(),
        initiators: shape.initiators,
        // One SCCRQ outstanding per initiator address (module documentation).
        max_outstanding: shape.initiators,
        tunnels: shape.tunnels,
        sessions_per_tunnel: SESSIONS_PER_TUNNEL,
        any_source: true,
        // l2tpns reads one socket with the default receive buffer: a burst of calls' PPP would
        // overflow it.
        rate: 50.0,
        hold: Duration::from_secs(3),
        echo_rate: 1.0,
        setup_timeout: Some(Duration::from_secs(30)),
        ppp: PppLevel::Ip,
        auth: AuthChoice::Chap,
        username: LAB_USER.to_string(),
        password: LAB_PASSWORD.to_string(),
        json: true,
        ..LacArgs::default()
    }
}

fn drive(lab: &Lab, topology: Topology, variant: Variant, shape: Shape) {
    let tunnels = shape.tunnels;
    let d = lab.description();
    let ti = lab
        .namespace(NodeKind::Initiator)
        .expect("an initiator namespace")
        .to_string();
    let args = lac_args(std::net::SocketAddrV4::new(d.cluster_address, 1701), shape);
    let report: LacReport = std::thread::spawn(move || -> Result<LacReport, String> {
        sys::enter_netns(&ti).map_err(|e| format!("{e:#}"))?;
        run_lac(&args)
            .map(|(report, _)| report)
            .map_err(|e| format!("{e:#}"))
    })
    .join()
    .expect("LAC thread")
    .expect("LAC");
    eprintln!("{topology}: our LAC:\n{report}");
    let master: MasterStatus = serde_json::from_value(
        reference::control::request(&d.master_control, "status").expect("the master answers"),
    )
    .expect("the master's status");
    std::thread::sleep(Duration::from_millis(500));
    for capture in ["capture-public", "capture-lan"] {
        lab.stop(capture)
            .unwrap_or_else(|err| panic!("stopping {capture}: {err:#}"));
    }
    let read = |name: &str| {
        std::fs::read_to_string(lab.run_dir().join(name))
            .unwrap_or_else(|err| panic!("{name}: {err}"))
    };
    let names: Vec<String> = (1..=ENDPOINTS).map(|i| format!("te{i}")).collect();
    let lns_logs: BTreeMap<&str, String> = names
        .iter()
        .map(|n| (n.as_str(), read(&format!("{n}-l2tpns.log"))))
        .collect();
    let radius_logs: BTreeMap<&str, String> = names
        .iter()
        .map(|n| (n.as_str(), read(&format!("{n}-radius.log"))))
        .collect();

    // Every session a subscriber with an address, by our LAC.
    let t = topology;
    let sessions = tunnels * SESSIONS_PER_TUNNEL;
    assert_eq!(report.tunnels_established, tunnels, "{t}: {report}");
    assert_eq!(report.sessions_ip_up, sessions, "{t}: {report}");
    assert_eq!(
        (report.tunnels_failed, report.sessions_failed),
        (0, 0),
        "{t}: {:?}",
        report.failures
    );
    assert_eq!(report.duplicate_addresses, 0, "{t}: {report}");
    assert_eq!(report.tunnels_closed_cleanly, tunnels, "{t}: {report}");

    // Each one authenticated, by l2tpns and by FreeRADIUS; every l2tpns a cluster of its own.
    let login_by = format!("Login by {LAB_USER} at ");
    let login_ok = format!("Login OK: [{LAB_USER}]");
    let mut logins = BTreeMap::new();
    for name in &names {
        let lns = &lns_logs[name.as_str()];
        let radius = &radius_logs[name.as_str()];
        let figures = (
            lns.matches(&login_by).count(),
            radius.matches(&login_ok).count(),
            radius.matches("Login incorrect").count(),
        );
        logins.insert(name.as_str(), figures);
        assert_eq!(figures.2, 0, "{t}: {name}: FreeRADIUS refused a login");
        assert_eq!(
            lns.matches("I am declaring myself the master!").count(),
            1,
            "{t}: {name}: l2tpns did not declare itself master exactly once"
        );
        for other in [
            "as a new peer",
            "Expecting",
            "set the master to",
            "heartbeat from master",
            "uptodate with master",
        ] {
            assert!(
                !lns.contains(other),
                "{t}: {name}: l2tpns met another cluster member ({other:?})"
            );
        }
    }
    eprintln!(
        "{t}: logins per endpoint (l2tpns \"Login by\", FreeRADIUS \"Login OK\", refused): \
         {logins:?}"
    );
    let total =
        |pick: fn(&(usize, usize, usize)) -> usize| logins.values().map(pick).sum::<usize>();
    assert_eq!(total(|f| f.0), sessions, "{t}: l2tpns logins: {logins:?}");
    // l2tpns asks again when an answer is slow; FreeRADIUS answers each request.
    assert!(
        total(|f| f.1) >= sessions,
        "{t}: FreeRADIUS logins: {logins:?}"
    );

    // Both agents in service, the tunnels placed evenly, every one claimed.
    let spread: Vec<(String, MemberState, u64, usize)> = master
        .endpoints
        .iter()
        .map(|e| {
            (
                e.name.clone(),
                e.state,
                e.dispatched_total,
                e.claimed_tunnels,
            )
        })
        .collect();
    let agent_claims: Vec<u64> = names
        .iter()
        .map(|n| {
            let status: serde_json::Value =
                serde_json::from_str(&read(&format!("{n}-status.json"))).expect("agent status");
            status["stats"]["claims_sent"].as_u64().unwrap_or(0)
        })
        .collect();
    eprintln!(
        "{t}: master: endpoints (name, state, dispatched, claimed now) {spread:?}; claims {:?}; \
         drops {:?}; the agents' claims sent {agent_claims:?}",
        master.claims, master.drops
    );
    assert_eq!(master.endpoints.len(), ENDPOINTS, "{t}: {spread:?}");
    let even = (tunnels / ENDPOINTS) as u64;
    for (name, state, dispatched, _) in &spread {
        assert_eq!(*state, MemberState::InService, "{t}: {name}");
        assert!(
            dispatched.abs_diff(even) <= (even / 20).max(1),
            "{t}: {name}: {dispatched} of {tunnels}, {spread:?}"
        );
    }
    assert_eq!(master.drops.unknown_tunnel, 0, "{t}: {:?}", master.drops);
    assert_eq!(
        master.drops.endpoint_out_of_service, 0,
        "{t}: {:?}",
        master.drops
    );
    if shape.shared_tunnel_ids {
        // Both l2tpns gave the one socket the same IDs: the second claim of each is refused,
        // and the NAT translated the later SCCRP of each pair.
        assert!(master.claims.conflict > 0, "{t}: {:?}", master.claims);
        let nat: serde_json::Value =
            serde_json::from_str(&read("nat-status.json")).expect("nat-status.json");
        let translated = nat["stats"]["entries_translated"].as_u64().unwrap_or(0);
        eprintln!("{t}: the NAT translated {translated} Tunnel IDs");
        assert!(
            translated >= (tunnels / ENDPOINTS - 1) as u64,
            "{t}: {}",
            nat["table"]
        );
    } else {
        assert_eq!(master.claims.conflict, 0, "{t}: {:?}", master.claims);
        assert!(
            master.claims.claimed >= tunnels as u64,
            "{t}: {:?}",
            master.claims
        );
    }
    assert!(
        agent_claims.iter().sum::<u64>() >= tunnels as u64,
        "{t}: {agent_claims:?}"
    );

    // The captures: every tunnel in the topology's sequence, on one endpoint.
    let verify = verify(lab.run_dir());
    let text = verify.render_text(&["public.pcap".into(), "lan.pcap".into()]);
    let _ = std::fs::write(lab.run_dir().join("verify.txt"), &text);
    eprintln!(
        "{t}: verify: {} of {} tunnels conform",
        verify.totals.conforming, verify.totals.tunnels
    );
    assert_eq!(verify.totals.tunnels, tunnels, "{t}: {text}");
    assert_eq!(verify.totals.conforming, tunnels, "{t}: {text}");
    for tunnel in &verify.tunnels {
        assert_eq!(tunnel.variant, variant, "{t}: {}", tunnel.initiator);
        assert!(
            tunnel
                .endpoint
                .as_deref()
                .is_some_and(|e| names.iter().any(|n| n == e)),
            "{t}: {}: {:?}",
            tunnel.initiator,
            tunnel.endpoint
        );
    }
}

fn verify(run_dir: &Path) -> sequence::Report {
    let roles = read_roles(&run_dir.join("roles.json")).expect("roles.json");
    let files = [run_dir.join("public.pcap"), run_dir.join("lan.pcap")];
    let (observations, counts) =
        read_captures(&files, 1701, &ParseOptions::default()).expect("reading the captures");
    assert_eq!(counts.malformed, 0, "malformed L2TP in the captures");
    sequence::check(&observations, &roles, SequenceArg::Auto.into())
}
