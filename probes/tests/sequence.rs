//! The timeline checker against crafted cluster runs, written as pcaps (public side and LAN
//! side) with the capture writer and read back: correct FIG 3 and FIG 5 runs, the xl2tpd
//! variants, and runs broken the ways a master, a NAT or an initiator can break them.

use std::path::{Path, PathBuf};

use l2tp::capture::CaptureReader;
use l2tp::wire::message::ParseOptions;
use l2tp::wire::MessageType;
use probes::sequence::craft::{self, Fault, Plan, Run};
use probes::sequence::{
    check, read_capture, Deviation, Kind, Observation, Report, Roles, Rule, Sequence, TunnelReport,
    Variant,
};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("probes/ sits in the workspace")
        .to_path_buf()
}

/// Writes the run as two pcaps and reads them back: what `l2tpkit verify` would see.
fn through_pcaps(name: &str, run: &Run) -> Vec<Observation> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("sequence-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let (public, lan) = (dir.join("public.pcap"), dir.join("lan.pcap"));
    run.write_pcaps(&public, &lan).unwrap();
    let mut observations = Vec::new();
    // LAN first: the checker must not depend on the order of the files.
    for (capture, path) in [(1, &lan), (0, &public)] {
        let mut reader = CaptureReader::open(path).unwrap();
        let counts = read_capture(
            &mut reader,
            capture,
            1701,
            &ParseOptions::default(),
            &mut observations,
        )
        .unwrap();
        assert_eq!(counts.malformed, 0);
        assert_eq!(counts.skipped, 0);
    }
    assert_eq!(observations.len(), run.public.len() + run.lan.len());
    // Read back whole: the pcaps are no longer needed.
    let _ = std::fs::remove_dir_all(&dir);
    observations
}

fn verify(name: &str, plan: Plan) -> (Run, Report) {
    let run = craft::craft(plan);
    let report = check(&through_pcaps(name, &run), &run.roles, Sequence::Auto);
    (run, report)
}

fn text(report: &Report) -> String {
    report.render_text(&["public.pcap".to_owned(), "lan.pcap".to_owned()])
}

fn steps(tunnel: &TunnelReport) -> Vec<u16> {
    tunnel
        .timeline
        .iter()
        .filter(|entry| !entry.retransmission)
        .filter_map(|entry| entry.step)
        .collect()
}

/// The one deviating tunnel of a run broken in one tunnel, and its first deviation.
fn only_deviation(report: &Report) -> (&TunnelReport, &Deviation) {
    assert_eq!(report.totals.deviating, 1, "{}", text(report));
    assert_eq!(report.totals.conforming, report.totals.tunnels - 1);
    assert!(!report.conforms());
    let tunnel = report
        .tunnels
        .iter()
        .find(|t| !t.conforms)
        .expect("a deviating tunnel");
    (tunnel, &tunnel.deviations[0])
}

#[test]
fn a_correct_fig3_run_conforms() {
    let (_, report) = verify("fig3", Plan::new(Variant::Fig3));
    assert!(report.conforms(), "{}", text(&report));
    assert_eq!(report.totals.tunnels, 6);
    assert_eq!(report.totals.variants.get(&Variant::Fig3), Some(&6));
    assert!(report.coverage.public && report.coverage.lan);
    assert_eq!(report.totals.unattributed, 0);
    for tunnel in &report.tunnels {
        assert_eq!(steps(tunnel), [102, 104, 106, 108, 110, 112, 114, 116]);
        assert!(tunnel.endpoint_tunnel_id.is_some());
        assert_eq!(tunnel.data_messages, 4);
    }
    // Three endpoints, and one initiator holding tunnels on two of them.
    let mut endpoints: Vec<_> = report
        .tunnels
        .iter()
        .filter_map(|t| t.endpoint.clone())
        .collect();
    endpoints.sort();
    endpoints.dedup();
    assert_eq!(endpoints, ["te1", "te2", "te3"]);
    let first = craft::initiator(0);
    let held: Vec<_> = report
        .tunnels
        .iter()
        .filter(|t| t.initiator == first)
        .map(|t| t.endpoint.clone().unwrap())
        .collect();
    assert_eq!(held, ["te1", "te2"]);
    assert!(text(&report).contains("totals: 6 tunnels: 6 conform, 0 deviate (fig3 6)"));
}

#[test]
fn a_correct_fig3_run_conforms_with_inferred_roles() {
    let run = craft::craft(Plan::new(Variant::Fig3));
    let observations = through_pcaps("fig3-inferred", &run);
    let report = check(&observations, &Roles::default(), Sequence::Auto);
    assert!(report.conforms(), "{}", text(&report));
    assert_eq!(report.roles.cluster_address, run.roles.cluster_address);
    assert_eq!(report.roles.nat_global, run.roles.nat_global);
    assert_eq!(report.roles.endpoints, run.roles.endpoints);
    // Neither shows in a correct run.
    assert_eq!(report.roles.master_lan, None);
    assert_eq!(report.roles.nat_lan, None);
    assert_eq!(report.inferred.len(), 3, "{:?}", report.inferred);
}

#[test]
fn a_correct_fig5_run_conforms() {
    let (run, report) = verify("fig5", Plan::new(Variant::Fig5));
    assert!(report.conforms(), "{}", text(&report));
    assert_eq!(report.totals.variants.get(&Variant::Fig5), Some(&6));
    for tunnel in &report.tunnels {
        assert_eq!(steps(tunnel), [102, 204, 206, 210, 214]);
    }
    let inferred = check(&run.observations(), &Roles::default(), Sequence::Auto);
    assert!(inferred.conforms(), "{}", text(&inferred));
    assert_eq!(inferred.roles.endpoints, run.roles.endpoints);
    assert_eq!(inferred.roles.nat_global, None);
}

#[test]
fn xl2tpd_variants_conform_and_are_named() {
    let (_, report) = verify("fig3-via-master", Plan::new(Variant::Fig3ViaMaster));
    assert!(report.conforms(), "{}", text(&report));
    assert_eq!(
        report.totals.variants.get(&Variant::Fig3ViaMaster),
        Some(&6)
    );
    let tunnel = &report.tunnels[0];
    assert_eq!(steps(tunnel), [102, 104, 106, 108, 110, 112, 114, 116]);
    let scccn = tunnel
        .timeline
        .iter()
        .find(|e| e.step == Some(110))
        .unwrap();
    assert_eq!(scccn.to, "CM");
    assert!(tunnel.notes.iter().any(|n| n.contains("as xl2tpd does")));

    let (_, report) = verify("fig5-via-master", Plan::new(Variant::Fig5ViaMaster));
    assert!(report.conforms(), "{}", text(&report));
    assert_eq!(
        report.totals.variants.get(&Variant::Fig5ViaMaster),
        Some(&6)
    );
    assert_eq!(steps(&report.tunnels[0]), [102, 204, 206, 210, 212, 214]);
    assert!(text(&report).contains("conforms (fig5-via-master)"));
}

#[test]
fn an_ack_piggybacked_on_icrp_stands_in_for_the_zlb() {
    for (variant, step) in [(Variant::Fig3, 114), (Variant::Fig5, 214)] {
        let plan = Plan {
            piggyback_ack: true,
            ..Plan::new(variant)
        };
        let (_, report) = verify(&format!("piggyback-{}", variant.name()), plan);
        assert!(report.conforms(), "{}", text(&report));
        let tunnel = &report.tunnels[0];
        let ack = tunnel
            .timeline
            .iter()
            .find(|e| e.step == Some(step))
            .unwrap();
        assert_eq!(ack.message.kind.to_string(), "ICRP");
        assert!(
            tunnel.notes.iter().any(
                |n| n.ends_with("no ZLB; the endpoint acknowledged the SCCCN with ICRP (Nr 3)")
            ),
            "{:?}",
            tunnel.notes
        );
    }
}

#[test]
fn a_retransmitted_sccrq_is_reported_not_failed() {
    let plan = Plan {
        retransmit_sccrq: true,
        ..Plan::new(Variant::Fig3)
    };
    let (_, report) = verify("retransmission", plan);
    assert!(report.conforms(), "{}", text(&report));
    assert_eq!(report.totals.retransmissions, 1);
    let tunnel = &report.tunnels[0];
    assert_eq!(tunnel.retransmissions, 1);
    let again: Vec<_> = tunnel
        .timeline
        .iter()
        .filter(|e| e.retransmission)
        .map(|e| e.step)
        .collect();
    assert_eq!(again, [Some(102), Some(104)]);
    assert!(tunnel
        .notes
        .iter()
        .any(|n| n == "SCCRQ (Ns 0) from the initiator retransmitted 1 time"));
}

#[test]
fn the_wrong_figure_is_named() {
    let run = craft::craft(Plan::new(Variant::Fig3));
    let report = check(&run.observations(), &run.roles, Sequence::Fig5);
    assert_eq!(report.totals.deviating, 6);
    let first = &report.tunnels[0].deviations[0];
    assert_eq!(first.step, Some(206));
    assert!(
        first.text.contains("te1's global address (unknown"),
        "{}",
        first.text
    );

    let run = craft::craft(Plan::new(Variant::Fig5));
    let report = check(&run.observations(), &run.roles, Sequence::Fig3);
    assert_eq!(report.totals.deviating, 6);
    // The SCCRP from te1's global address is not the endpoint's on the LAN (106)...
    let deviations = &report.tunnels[0].deviations;
    assert_eq!(
        (deviations[0].step, deviations[0].rule),
        (Some(106), Rule::Missing)
    );
    // ...nor the NAT's (108).
    assert_eq!(
        (deviations[1].step, deviations[1].rule),
        (Some(108), Rule::Address)
    );
}

#[test]
fn sccrp_leaving_the_nat_with_the_lan_source_fails_at_108() {
    for roles in ["given", "inferred"] {
        let run = craft::craft(Plan::new(Variant::Fig3).with_fault(1, Fault::NatKeepsLanSource));
        let given = if roles == "given" {
            run.roles.clone()
        } else {
            Roles::default()
        };
        let observations = through_pcaps(&format!("nat-{roles}"), &run);
        let report = check(&observations, &given, Sequence::Auto);
        let (tunnel, first) = only_deviation(&report);
        assert_eq!(tunnel.initiator, craft::initiator(1));
        assert_eq!(first.step, Some(108));
        assert_eq!(first.rule, Rule::Address);
        assert_eq!(
            first.text,
            "step 108: SCCRP left the NAT with source 198.19.0.12:1701 (te2 lan), \
             expected the NAT's global address 198.18.0.2"
        );
        assert_eq!(first.expected, "the NAT's global address 198.18.0.2");
        assert_eq!(first.observed, "198.19.0.12:1701 (te2 lan)");
        assert_eq!(first.origin.map(|o| o.capture), Some(0));
        assert!(text(&report).contains("DEVIATES at step 108 (fig3)"));
    }
}

#[test]
fn a_master_that_rewrites_the_source_fails_at_104() {
    for variant in [Variant::Fig3, Variant::Fig5] {
        let run = craft::craft(Plan::new(variant).with_fault(4, Fault::MasterRewritesSource));
        for given in [run.roles.clone(), Roles::default()] {
            let report = check(&run.observations(), &given, Sequence::Auto);
            let (tunnel, first) = only_deviation(&report);
            let step = if variant == Variant::Fig3 { 104 } else { 204 };
            assert_eq!(first.step, Some(step), "{}", text(&report));
            assert_eq!(first.rule, Rule::Address);
            assert_eq!(
                first.text,
                format!(
                    "step {step}: SCCRQ was forwarded by the master with source 198.19.0.1:1701 \
                     (master lan), expected the initiator {} (the master rewrites only the \
                     destination)",
                    tunnel.initiator
                )
            );
        }
    }
}

#[test]
fn a_missing_step_is_named() {
    for (variant, step) in [
        (Variant::Fig3, 112),
        (Variant::Fig3, 106),
        (Variant::Fig3, 116),
        (Variant::Fig5, 204),
        (Variant::Fig5, 206),
    ] {
        let run = craft::craft(Plan::new(variant).with_fault(3, Fault::Drop(step)));
        let report = check(&run.observations(), &run.roles, Sequence::Auto);
        let (_, first) = only_deviation(&report);
        assert_eq!(first.step, Some(step), "{}", text(&report));
        assert_eq!(first.rule, Rule::Missing);
        assert!(
            first
                .text
                .starts_with(&format!("step {step}: missing: no ")),
            "{}",
            first.text
        );
    }
}

#[test]
fn without_a_lan_capture_lan_steps_are_not_checked() {
    let run = craft::craft(Plan::new(Variant::Fig3));
    let public: Vec<Observation> = run
        .observations()
        .into_iter()
        .filter(|o| o.origin.unwrap().capture == 0)
        .collect();
    let report = check(&public, &run.roles, Sequence::Auto);
    assert!(report.conforms(), "{}", text(&report));
    assert!(!report.coverage.lan);
    assert_eq!(steps(&report.tunnels[0]), [102, 108, 110, 116]);
    assert!(text(&report).contains("partial: LAN-side steps not checked"));
}

#[test]
fn a_wrong_tunnel_id_in_scccn_fails_at_110() {
    let plan = Plan::new(Variant::Fig3).with_fault(2, Fault::WrongScccnTunnelId);
    let (_, report) = verify("wrong-tid", plan);
    let (tunnel, first) = only_deviation(&report);
    assert_eq!(first.step, Some(110));
    assert_eq!(first.rule, Rule::TunnelId);
    assert_eq!(
        first.text,
        format!(
            "step 110: SCCCN was sent by the initiator with header Tunnel ID 1, expected te3's \
             Assigned Tunnel ID {} (from the SCCRP)",
            tunnel.endpoint_tunnel_id.unwrap()
        )
    );
    // The NAT forwarded it as it was.
    assert_eq!(tunnel.deviations[1].step, Some(112));
}

#[test]
fn an_unacknowledged_message_fails() {
    let plan = Plan::new(Variant::Fig5).with_fault(5, Fault::UnacknowledgedHello);
    let (_, report) = verify("unacked", plan);
    let (tunnel, first) = only_deviation(&report);
    assert_eq!(tunnel.deviations.len(), 1);
    assert_eq!(first.step, None);
    assert_eq!(first.rule, Rule::Unacknowledged);
    assert_eq!(
        first.text,
        "HELLO (Ns 4) from the initiator was never acknowledged"
    );
    assert!(text(&report).contains("DEVIATES (unacknowledged) (fig5)"));
}

#[test]
fn a_retransmission_dispatched_elsewhere_fails_at_104() {
    let plan = Plan::new(Variant::Fig3).with_fault(0, Fault::Redispatch);
    let (_, report) = verify("redispatch", plan);
    let (_, first) = only_deviation(&report);
    assert_eq!(first.step, Some(104));
    assert_eq!(first.rule, Rule::Dispatch);
    assert!(
        first.text.contains("dispatch must be deterministic"),
        "{}",
        first.text
    );
}

#[test]
fn a_retransmission_moved_away_from_a_silent_endpoint_conforms() {
    let plan = Plan::new(Variant::Fig3).with_fault(0, Fault::FirstToSilentEndpoint);
    let (run, report) = verify("moved", plan);
    assert!(report.conforms(), "{}", text(&report));
    // The serving endpoint's SCCRP does not make its LAN address the silent one's global.
    assert!(report.inferred.is_empty(), "{:?}", report.inferred);
    let inferred = check(&run.observations(), &Roles::default(), Sequence::Auto);
    assert!(inferred.conforms(), "{}", text(&inferred));
    assert_eq!(inferred.roles.endpoints, run.roles.endpoints);
    let tunnel = &report.tunnels[0];
    let serving = &run.roles.endpoints[0];
    assert_eq!(tunnel.endpoint.as_deref(), Some(serving.name.as_str()));
    assert!(
        tunnel
            .notes
            .iter()
            .any(|n| n.contains("never answered") && n.contains(&serving.name)),
        "{:#?}",
        tunnel.notes
    );
    // Both copies are labelled on the request's hops, the second as a retransmission.
    let sccrqs: Vec<_> = tunnel
        .timeline
        .iter()
        .filter(|e| e.message.kind == Kind::Control(MessageType::Sccrq))
        .map(|e| (e.step, e.retransmission))
        .collect();
    assert_eq!(sccrqs.len(), 4, "{sccrqs:?}");
    assert!(sccrqs.iter().all(|(step, _)| step.is_some()), "{sccrqs:?}");
    assert_eq!(
        sccrqs
            .iter()
            .filter(|(_, retransmission)| *retransmission)
            .count(),
        2,
        "{sccrqs:?}"
    );
}

#[test]
fn steps_out_of_order_fail() {
    let mut run = craft::craft(Plan::new(Variant::Fig3));
    // The first tunnel's SCCCN, seen on the public side before the SCCRP that prompted it.
    let sccrp_time = run.lan[1].time;
    let scccn = run
        .public
        .iter_mut()
        .find(|d| d.payload.len() == 20 && d.src == craft::initiator(0))
        .expect("the first tunnel's SCCCN");
    scccn.time = sccrp_time - std::time::Duration::from_micros(5);
    let report = check(&run.observations(), &run.roles, Sequence::Auto);
    let (_, first) = only_deviation(&report);
    assert_eq!(first.step, Some(110), "{}", text(&report));
    assert_eq!(first.rule, Rule::Order);
}

fn snapshot(name: &str, timeline: String) {
    insta::with_settings!({
        snapshot_path => repo_root().join("snapshots"),
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!(name, timeline);
    });
}

#[test]
fn fig3_timeline_snapshot() {
    let (_, report) = verify("fig3-snapshot", Plan::new(Variant::Fig3));
    snapshot(
        "sequence-fig3-timeline",
        report.tunnels[0].normalised_timeline(),
    );
}

#[test]
fn fig5_timeline_snapshot() {
    let (_, report) = verify("fig5-snapshot", Plan::new(Variant::Fig5));
    snapshot(
        "sequence-fig5-timeline",
        report.tunnels[0].normalised_timeline(),
    );
}

/// A real capture with PPP (`captures/l2tpkit-chap-ipv6.pcap`: our LAC against our endpoint,
/// CHAP, IPCP and IPv6CP, two tunnels of two sessions): every session's phases in the timeline,
/// in order, and no PPP finding. The capture is one LNS, not a cluster, so the sequence steps
/// that want a NAT deviate: that is not what this snapshot is about, but it is what verify says.
#[test]
fn ppp_phases_of_a_real_capture_snapshot() {
    let name = "l2tpkit-chap-ipv6.pcap";
    let mut reader = CaptureReader::open(repo_root().join("captures").join(name)).unwrap();
    let mut observations = Vec::new();
    let counts = read_capture(
        &mut reader,
        0,
        1701,
        &ParseOptions::default(),
        &mut observations,
    )
    .unwrap();
    assert_eq!((counts.l2tp, counts.malformed), (112, 0));
    let report = check(&observations, &Roles::default(), Sequence::Auto);
    assert_eq!(report.tunnels.len(), 2);
    for tunnel in &report.tunnels {
        assert!(tunnel.deviations.iter().all(|d| d.rule != Rule::PppOrder));
        assert_eq!(tunnel.ppp.sessions, 2);
        assert_eq!(tunnel.ppp.ipcp_opened, 2);
        assert_eq!(tunnel.ppp.ipv6cp_opened, 2);
        assert_eq!(tunnel.ppp.authenticated, 2);
        assert_eq!(tunnel.ppp.malformed, 0);
        // Per session: LCP, then CHAP, then both NCPs, then the termination.
        let mut sessions: std::collections::BTreeMap<u16, Vec<String>> = Default::default();
        for mark in tunnel.timeline.iter().filter_map(|e| e.ppp.as_ref()) {
            let event = serde_json::to_value(mark).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned();
            sessions.entry(mark.session).or_default().push(event);
        }
        assert_eq!(sessions.len(), 2);
        for events in sessions.values() {
            let at = |e: &str| events.iter().position(|x| x == e).expect(e);
            assert!(at("lcp-configure-ack") < at("lcp-opened"), "{events:?}");
            assert!(at("lcp-opened") < at("auth-success"), "{events:?}");
            assert!(at("auth-success") < at("ipcp-opened"), "{events:?}");
            assert!(at("auth-success") < at("ipv6cp-opened"), "{events:?}");
            assert!(
                at("ipcp-opened") < at("lcp-terminate-request"),
                "{events:?}"
            );
            assert!(
                at("lcp-terminate-request") < at("lcp-terminate-ack"),
                "{events:?}"
            );
        }
    }
    snapshot(
        "sequence-ppp-chap-ipv6",
        report.render_text(&[name.to_owned()]),
    );
}

/// The message that acknowledges tunnel 0's SCCCN, lost between the endpoint and the NAT's
/// public side the first time, gets through when retransmitted a second later: loss, not a
/// wrong rewrite. The tunnel conforms, with a note naming the late step.
#[test]
fn a_step_first_seen_in_a_retransmission_conforms_with_a_note() {
    use l2tp::wire::{MessageType, PacketRepr};
    let mut run = craft::craft(Plan::new(Variant::Fig3));
    let initiator = craft::initiator(0);
    let is_ack_to = |d: &craft::Datagram| {
        d.dst == initiator
            && match PacketRepr::parse(&d.payload, &ParseOptions::default()) {
                Ok(PacketRepr::Control(m)) => {
                    m.message_type().is_none() || m.message_type() == Some(MessageType::Icrp)
                }
                _ => false,
            }
    };
    let lan_ack = run.lan.iter().find(|d| is_ack_to(d)).cloned().expect("114");
    let position = run.public.iter().position(is_ack_to).expect("116");
    let public_ack = run.public.remove(position);
    // Tunnel 0 ends here, so that the retransmission a second later is the last word.
    let of_tunnel_0 = |d: &craft::Datagram| d.src == initiator || d.dst == initiator;
    run.lan
        .retain(|d| !(of_tunnel_0(d) && d.time > lan_ack.time));
    run.public
        .retain(|d| !(of_tunnel_0(d) && d.time > public_ack.time));
    let later = std::time::Duration::from_secs(1);
    run.lan.push(craft::Datagram {
        time: lan_ack.time + later,
        ..lan_ack
    });
    run.public.push(craft::Datagram {
        time: public_ack.time + later,
        ..public_ack
    });
    let report = check(&run.observations(), &run.roles, Sequence::Fig3);
    let tunnel = report
        .tunnels
        .iter()
        .find(|t| t.initiator == initiator)
        .expect("tunnel 0");
    assert!(tunnel.conforms, "{}", text(&report));
    assert!(
        tunnel
            .notes
            .iter()
            .any(|n| n.starts_with("step 116: first seen in retransmission 1")),
        "{:?}",
        tunnel.notes
    );
}

/// A retransmitted SCCRQ that a slow or lossy link delays until after the tunnel's SCCCN: the
/// master's copy of it on the LAN is still the same tunnel's (the endpoint has seen that SCCRQ
/// and dedupes it), not the first sighting of a new tunnel missing its steps; and its Nr 0,
/// behind the SCCCN's Nr 1 on the LAN, does not "go back": the master and the NAT are two
/// paths, and the initiator sent it first. Seen in the lab with `--netem "delay 10ms ..."`.
#[test]
fn a_retransmitted_sccrq_forwarded_after_the_scccn_stays_with_its_tunnel() {
    use l2tp::wire::{MessageType, PacketRepr};
    let plan = Plan {
        retransmit_sccrq: true,
        ..Plan::new(Variant::Fig3)
    };
    let tunnels = plan.tunnels;
    let crafted = craft::craft(plan);
    let initiator = craft::initiator(0);
    let kind = |d: &craft::Datagram| match PacketRepr::parse(&d.payload, &ParseOptions::default()) {
        Ok(PacketRepr::Control(m)) => m.message_type(),
        _ => None,
    };
    let forwarded: Vec<usize> = crafted
        .lan
        .iter()
        .enumerate()
        .filter(|(_, d)| d.src == initiator && kind(d) == Some(MessageType::Sccrq))
        .map(|(i, _)| i)
        .collect();
    // The master's copies of tunnel 0's SCCRQ and of its retransmission (the same bytes; the
    // initiator's other tunnels have other Assigned Tunnel IDs).
    let first = &crafted.lan[forwarded[0]].payload;
    let again = *forwarded[1..]
        .iter()
        .find(|&&i| crafted.lan[i].payload == *first)
        .expect("the retransmission on the LAN");
    // Tunnel 0's SCCCN: the initiator's first after the retransmission (its slow endpoint
    // answers only then), on the public side and on the LAN a hop later.
    let after = |side: &[craft::Datagram], t| {
        side.iter()
            .filter(|d| d.src == initiator && kind(d) == Some(MessageType::Scccn))
            .map(|d| d.time)
            .find(|&s| s > t)
            .expect("110 and 112")
    };
    let scccn = after(&crafted.public, crafted.lan[again].time);
    let lan_scccn = after(&crafted.lan, scccn);
    // Between the SCCCN's two sightings, and past both (behind the messages after it too).
    for delayed_to in [
        scccn + (lan_scccn - scccn) / 2,
        lan_scccn + std::time::Duration::from_micros(100),
    ] {
        let mut run = crafted.clone();
        run.lan[again].time = delayed_to;
        let report = check(&run.observations(), &run.roles, Sequence::Fig3);
        assert_eq!(report.totals.tunnels, tunnels, "{}", text(&report));
        assert!(report.conforms(), "{}", text(&report));
    }
}

/// Two initiators whose SCCRQs carry the same bytes (the same Assigned Tunnel ID and Host Name,
/// no Challenge) within a second of each other: two tunnels, each with its own steps. Seen in
/// the lab with 30 initiator addresses, whose Tunnel ID ranges overlap.
#[test]
fn identical_sccrqs_from_two_initiators_are_two_tunnels() {
    use l2tp::wire::{MessageType, PacketRepr};
    let mut run = craft::craft(Plan::new(Variant::Fig3));
    let tunnels = run_tunnels(&run);
    let initiator = craft::initiator(0);
    let other = std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(198, 18, 1, 200), 1701);
    let is_sccrq = |d: &craft::Datagram| {
        matches!(
            PacketRepr::parse(&d.payload, &ParseOptions::default()),
            Ok(PacketRepr::Control(m)) if m.message_type() == Some(MessageType::Sccrq)
        )
    };
    let later = std::time::Duration::from_millis(500);
    for side in [&mut run.public, &mut run.lan] {
        let copy = side
            .iter()
            .find(|d| d.src == initiator && is_sccrq(d))
            .cloned()
            .expect("tunnel 0's SCCRQ");
        side.push(craft::Datagram {
            time: copy.time + later,
            src: other,
            ..copy
        });
    }
    let report = check(&run.observations(), &run.roles, Sequence::Fig3);
    assert_eq!(report.totals.tunnels, tunnels + 1, "{}", text(&report));
    let first = report
        .tunnels
        .iter()
        .find(|t| t.initiator == initiator)
        .expect("tunnel 0");
    assert!(first.conforms, "{}", text(&report));
    assert!(report.tunnels.iter().any(|t| t.initiator == other));
}

fn run_tunnels(run: &Run) -> usize {
    check(&run.observations(), &run.roles, Sequence::Fig3)
        .totals
        .tunnels
}

/// The ladder of a tunnel, parsed as XML: its arrows' labels, and those drawn in red.
fn ladder(tunnel: &TunnelReport) -> (String, Vec<String>, Vec<String>) {
    let svg = probes::sequence::ladder::svg(tunnel);
    let doc = roxmltree::Document::parse(&svg).expect("the ladder is well-formed XML");
    let texts = |class: &str| -> Vec<String> {
        doc.descendants()
            .filter(|n| n.has_tag_name("text") && n.attribute("class") == Some(class))
            .filter_map(|n| n.text().map(str::to_string))
            .collect()
    };
    let (all, red) = (texts("message"), texts("deviation"));
    (svg, all, red)
}

#[test]
fn fig3_ladder_snapshot() {
    let (_, report) = verify("fig3-ladder", Plan::new(Variant::Fig3));
    let (svg, arrows, red) = ladder(&report.tunnels[0]);
    assert!(red.is_empty(), "{red:?}");
    // Every step of FIG 3 has its arrow, in order.
    let steps: Vec<&str> = arrows
        .iter()
        .filter_map(|a| a.split(' ').next())
        .filter(|s| s.parse::<u16>().is_ok())
        .collect();
    assert_eq!(steps.first(), Some(&"102"), "{arrows:?}");
    for column in [">TI<", ">CM<", ">NAT<", ">TE1<"] {
        assert!(svg.contains(column), "{column} missing");
    }
    snapshot("ladder-fig3", svg);
}

#[test]
fn fig5_ladder_snapshot() {
    let (_, report) = verify("fig5-ladder", Plan::new(Variant::Fig5));
    let (svg, arrows, red) = ladder(&report.tunnels[0]);
    assert!(red.is_empty(), "{red:?}");
    assert!(
        arrows.iter().any(|a| a.starts_with("204 SCCRQ")),
        "{arrows:?}"
    );
    assert!(!svg.contains(">NAT<"), "FIG 5 has no NAT column");
    snapshot("ladder-fig5", svg);
}

/// A NAT that forwards the SCCRP without rewriting its source: step 108's arrow is red, and
/// the finding is written under the ladder.
#[test]
fn a_wrong_rewrite_is_red_on_the_ladder() {
    let run = craft::craft(Plan::new(Variant::Fig3).with_fault(1, Fault::NatKeepsLanSource));
    let observations = through_pcaps("ladder-nat", &run);
    let report = check(&observations, &run.roles, Sequence::Auto);
    let (tunnel, first) = only_deviation(&report);
    let (_, _, red) = ladder(tunnel);
    assert!(
        red.iter().any(|t| t.starts_with("108 SCCRP")),
        "step 108 not red: {red:?}"
    );
    assert!(red.contains(&first.text), "{red:?}");
    // The conforming tunnels have no red at all.
    for t in report.tunnels.iter().filter(|t| t.conforms) {
        assert!(ladder(t).2.is_empty());
    }
}
