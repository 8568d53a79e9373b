//! PPP phases against crafted sessions: in order, each phase out of order, no PPP, garbage.

use std::time::Duration;

use proptest::prelude::*;

use super::super::craft::{self, Plan, PppScript, ENDPOINT_ADDRESS, INITIATOR_ADDRESS};
use super::super::{check, Observation, Report, Rule, Sequence, Variant};
use super::*;

fn run(variant: Variant, ppp: PppScript) -> (Vec<Observation>, super::super::Roles) {
    let run = craft::craft(Plan {
        initiators: 1,
        tunnels: 1,
        ppp,
        ..Plan::new(variant)
    });
    (run.observations(), run.roles)
}

fn report(variant: Variant, ppp: PppScript) -> Report {
    let (observations, roles) = run(variant, ppp);
    let report = check(&observations, &roles, Sequence::Auto);
    assert_eq!(report.tunnels.len(), 1, "{}", report.render_text(&[]));
    report
}

fn marks(report: &Report) -> Vec<&PppMark> {
    report.tunnels[0]
        .timeline
        .iter()
        .filter_map(|e| e.ppp.as_ref())
        .collect()
}

fn ppp_deviations(report: &Report) -> Vec<String> {
    report.tunnels[0]
        .deviations
        .iter()
        .filter(|d| d.rule == Rule::PppOrder)
        .map(|d| d.text.clone())
        .collect()
}

#[test]
fn a_good_subscriber_shows_its_phases_in_order_on_one_or_two_hops() {
    for variant in [Variant::Fig5, Variant::Fig3] {
        let report = report(variant, PppScript::Subscriber);
        let tunnel = &report.tunnels[0];
        assert!(tunnel.conforms, "{}", report.render_text(&[]));
        let marks = marks(&report);
        // The initiator's Session ID names the call, whichever way the packet went.
        assert!(marks.iter().all(|m| m.session == 0x100), "{marks:?}");
        let events: Vec<PppEvent> = marks.into_iter().map(|m| m.event.clone()).collect();
        let chap = Some("CHAP");
        assert_eq!(
            events,
            [
                PppEvent::LcpConfigureAck {
                    auth_protocol: chap
                },
                PppEvent::LcpOpened {
                    auth_protocol: chap
                },
                PppEvent::AuthSuccess {
                    protocol: "CHAP",
                    message: "Welcome".into()
                },
                PppEvent::IpcpConfigureAck {
                    address: Some(ENDPOINT_ADDRESS)
                },
                PppEvent::IpcpOpened {
                    initiator_address: Some(INITIATOR_ADDRESS),
                    endpoint_address: Some(ENDPOINT_ADDRESS)
                },
                PppEvent::Ipv6cpConfigureAck {
                    interface_id: Some(InterfaceId(0x0200_00ff_fe00_0001))
                },
                PppEvent::Ipv6cpOpened {
                    initiator_interface_id: Some(InterfaceId(0x0200_00ff_fe00_0002)),
                    endpoint_interface_id: Some(InterfaceId(0x0200_00ff_fe00_0001))
                },
                PppEvent::FirstIpv4 {
                    src: INITIATOR_ADDRESS,
                    dst: ENDPOINT_ADDRESS
                },
                PppEvent::FirstIpv6 {
                    src: craft::link_local(0x0200_00ff_fe00_0002),
                    dst: craft::link_local(0x0200_00ff_fe00_0001)
                },
                PppEvent::LcpTerminateRequest,
                PppEvent::LcpTerminateAck,
            ],
            "{variant:?}"
        );
        // Echoes are counted once however many hops saw them, and not listed.
        assert_eq!(
            tunnel.ppp,
            PppCounts {
                sessions: 1,
                lcp_opened: 1,
                authenticated: 1,
                ipcp_opened: 1,
                ipv6cp_opened: 1,
                echo_requests: 2,
                echo_replies: 2,
                malformed: 0,
            }
        );
        let text = report.render_text(&[]);
        assert!(
            text.contains(
                " PPP sid 256: IPCP opened: initiator 198.19.128.2, endpoint 198.19.128.1"
            ),
            "{text}"
        );
        assert!(
            text.contains("2 LCP Echo-Requests, 2 Echo-Replies"),
            "{text}"
        );
    }
}

#[test]
fn ppp_entries_add_a_key_and_control_entries_keep_theirs() {
    let report = report(Variant::Fig5, PppScript::Subscriber);
    let json = serde_json::to_value(&report).unwrap();
    let timeline = json["tunnels"][0]["timeline"].as_array().unwrap();
    // Control entries keep their keys, in their order: no `ppp` key.
    let first = serde_json::to_string(&report.tunnels[0].timeline[0]).unwrap();
    let keys = [
        "time",
        "step",
        "src",
        "dst",
        "from",
        "to",
        "message",
        "tunnel_id",
        "session_id",
        "ns",
        "nr",
        "assigned_tunnel_id",
        "origin",
    ];
    let at: Vec<usize> = keys
        .iter()
        .map(|k| first.find(&format!("\"{k}\":")).expect(k))
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{first}");
    assert_eq!(
        timeline[0].as_object().unwrap().len(),
        keys.len(),
        "{first}"
    );
    let opened = timeline
        .iter()
        .find(|e| e["ppp"]["event"] == "ipcp-opened")
        .expect("an ipcp-opened entry");
    assert_eq!(opened["message"], "data");
    assert_eq!(opened["ppp"]["session"], 256);
    assert_eq!(opened["ppp"]["initiator_address"], "198.19.128.2");
    let success = timeline
        .iter()
        .find(|e| e["ppp"]["event"] == "auth-success")
        .unwrap();
    assert_eq!(success["ppp"]["message"], "Welcome");
    assert_eq!(success["from"], "te1 global");
    assert!(timeline
        .iter()
        .filter(|e| e["message"] != "data")
        .all(|e| e.get("ppp").is_none()));
    assert_eq!(json["tunnels"][0]["ppp"]["echo_requests"], 2);
}

#[test]
fn each_phase_out_of_order_is_a_deviation() {
    for (script, expected) in [
        (
            PppScript::IpcpBeforeAuth,
            "session 256: IPCP before authentication succeeded: IPCP Configure-Request from the initiator while CHAP was agreed and has not succeeded",
        ),
        (
            PppScript::Ipv4BeforeIpcp,
            "session 256: data before IPCP opened: IPv4 198.19.128.2 → 198.19.128.1 from the initiator",
        ),
        (
            PppScript::Ipv6BeforeIpv6cp,
            "session 256: IPv6 data before IPv6CP opened: IPv6 fe80::200:ff:fe00:2 → fe80::200:ff:fe00:1 from the initiator",
        ),
    ] {
        for variant in [Variant::Fig5, Variant::Fig3] {
            let report = report(variant, script);
            assert_eq!(ppp_deviations(&report), [expected], "{script:?} {variant:?}");
            // Only the PPP finding: the L2TP sequence is intact.
            assert_eq!(report.tunnels[0].deviations.len(), 1);
            assert!(!report.conforms());
            let text = report.render_text(&[]);
            assert!(text.contains("DEVIATES (ppp-order)"), "{text}");
            assert!(text.contains(&format!("✗ {expected} [capture 0 #")), "{text}");
        }
    }
}

#[test]
fn ipcp_before_lcp_opened_is_a_deviation() {
    let (observations, roles) = run(Variant::Fig5, PppScript::Subscriber);
    // Without the LCP Configure-Acks LCP never opened (and no Auth-Protocol was agreed).
    let observations: Vec<Observation> = observations
        .into_iter()
        .filter(|o| {
            !matches!(
                o.ppp,
                Some(Frame::Negotiation {
                    protocol: protocol::LCP,
                    code: CONFIGURE_ACK,
                    ..
                })
            )
        })
        .collect();
    let report = check(&observations, &roles, Sequence::Auto);
    assert_eq!(
        ppp_deviations(&report),
        [
            "session 256: IPCP before LCP opened: IPCP Configure-Request from the initiator before LCP opened",
            "session 256: IPv6CP before LCP opened: IPv6CP Configure-Request from the initiator before LCP opened",
        ]
    );
}

/// Seen in a lab run behind a lossy link: the initiator's LCP Configure-Ack was captured before
/// the link lost it, so LCP looked opened; the endpoint then retransmitted its Configure-Request
/// with the same Identifier and was acknowledged again. That is no renegotiation, and the NCPs
/// after it are in order.
#[test]
fn a_retransmitted_request_after_a_lost_ack_is_no_renegotiation() {
    let (observations, roles) = run(Variant::Fig5, PppScript::Subscriber);
    let is_lcp = |o: &Observation, code: u8| matches!(o.ppp, Some(Frame::Negotiation { protocol: protocol::LCP, code: c, .. }) if c == code);
    let initiator = roles_initiator(&observations);
    let from_endpoint = |o: &Observation| *o.src.ip() != initiator;
    let request = observations
        .iter()
        .find(|o| is_lcp(o, CONFIGURE_REQUEST) && from_endpoint(o))
        .cloned()
        .expect("the endpoint's Configure-Request");
    let ack = observations
        .iter()
        .find(|o| is_lcp(o, CONFIGURE_ACK) && !from_endpoint(o))
        .cloned()
        .expect("the initiator's Configure-Ack");
    let opened_at = observations
        .iter()
        .enumerate()
        .filter(|(_, o)| is_lcp(o, CONFIGURE_ACK))
        .nth(1)
        .map(|(i, _)| i)
        .expect("two Configure-Acks");
    let mut edited = observations.clone();
    let at = edited[opened_at].time;
    for (n, mut o) in [request, ack].into_iter().enumerate() {
        o.time = at + Duration::from_micros(1 + n as u64);
        edited.insert(opened_at + 1 + n, o);
    }
    let report = check(&edited, &roles, Sequence::Auto);
    assert!(report.conforms(), "{}", report.render_text(&[]));
    let events: Vec<PppEvent> = marks(&report)
        .into_iter()
        .map(|m| m.event.clone())
        .collect();
    assert!(!events.contains(&PppEvent::LcpRenegotiation), "{events:?}");
    assert_eq!(report.tunnels[0].ppp.lcp_opened, 1);

    // A request with a new Identifier is a renegotiation, as before.
    let mut renegotiated = observations;
    let mut request = renegotiated
        .iter()
        .find(|o| is_lcp(o, CONFIGURE_REQUEST) && from_endpoint(o))
        .cloned()
        .unwrap();
    if let Some(Frame::Negotiation { identifier, .. }) = request.ppp.as_mut() {
        *identifier = identifier.wrapping_add(1);
    }
    request.time = renegotiated[opened_at].time + Duration::from_micros(1);
    renegotiated.insert(opened_at + 1, request);
    let report = check(&renegotiated, &roles, Sequence::Auto);
    let events: Vec<PppEvent> = marks(&report)
        .into_iter()
        .map(|m| m.event.clone())
        .collect();
    assert!(events.contains(&PppEvent::LcpRenegotiation), "{events:?}");
}

/// Seen in a lossy lab run: a retransmitted ICRQ's copy reached the LAN capture after LCP had
/// opened (the LAC's Ack was seen on the public side); it reset the session as a new call, and
/// the endpoint's IPCP was flagged "before LCP opened".
#[test]
fn a_late_copy_of_the_icrq_is_not_a_new_call() {
    let (observations, roles) = run(Variant::Fig5, PppScript::Subscriber);
    let icrq = observations
        .iter()
        .find(|o| {
            o.message.kind
                == crate::sequence::observation::Kind::Control(l2tp::wire::MessageType::Icrq)
        })
        .cloned()
        .expect("the ICRQ");
    let opened_at = observations
        .iter()
        .enumerate()
        .filter(|(_, o)| {
            matches!(
                o.ppp,
                Some(Frame::Negotiation {
                    protocol: protocol::LCP,
                    code: CONFIGURE_ACK,
                    ..
                })
            )
        })
        .nth(1)
        .map(|(i, _)| i)
        .expect("two Configure-Acks");
    let mut edited = observations.clone();
    let mut copy = icrq;
    copy.time = edited[opened_at].time + Duration::from_micros(1);
    edited.insert(opened_at + 1, copy);
    let report = check(&edited, &roles, Sequence::Auto);
    assert!(
        ppp_deviations(&report).is_empty(),
        "{}",
        report.render_text(&[])
    );
}

/// The initiator's address: the source of the first observation (its SCCRQ).
fn roles_initiator(observations: &[Observation]) -> std::net::Ipv4Addr {
    *observations[0].src.ip()
}

#[test]
fn a_session_without_ppp_negotiation_has_no_ppp_lines_and_no_finding() {
    for script in [PppScript::EchoOnly, PppScript::Garbage] {
        for variant in [Variant::Fig5, Variant::Fig3] {
            let report = report(variant, script);
            assert!(report.conforms(), "{}", report.render_text(&[]));
            assert!(marks(&report).is_empty());
            assert!(!report.render_text(&[]).contains("· PPP"));
        }
    }
    let garbage = report(Variant::Fig5, PppScript::Garbage);
    assert_eq!(garbage.tunnels[0].ppp.malformed, 3);
    assert_eq!(garbage.tunnels[0].ppp.sessions, 0);
    let echo = report(Variant::Fig5, PppScript::EchoOnly);
    assert_eq!(echo.tunnels[0].ppp.echo_requests, 2);
    assert_eq!(echo.tunnels[0].ppp.lcp_opened, 0);
}

#[test]
fn frames_are_recognised() {
    let lcp_ack = [0xff, 0x03, 0xc0, 0x21, 2, 1, 0, 9, 3, 5, 0xc2, 0x23, 5];
    assert_eq!(
        Frame::read(&lcp_ack),
        Frame::Negotiation {
            protocol: protocol::LCP,
            code: 2,
            identifier: 1,
            auth: Some(protocol::CHAP),
            address: None,
            interface_id: None,
        }
    );
    // PAP Authenticate-Nak with its message, address/control compressed away.
    let nak = [0xc0, 0x23, 3, 1, 0, 8, 3, b'b', b'a', b'd'];
    assert_eq!(
        Frame::read(&nak),
        Frame::AuthResult {
            protocol: protocol::PAP,
            success: false,
            message: "bad".into()
        }
    );
    // A CHAP Challenge changes no phase; an option of length 1 is malformed.
    assert_eq!(Frame::read(&[0xc2, 0x23, 1, 1, 0, 6, 1, 0]), Frame::Other);
    assert_eq!(
        Frame::read(&[0xc0, 0x21, 2, 1, 0, 6, 3, 1]),
        Frame::Malformed
    );
    assert_eq!(Frame::read(&[]), Frame::Malformed);
}

proptest! {
    #[test]
    fn any_payload_is_recognised_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        let _ = Frame::read(&bytes);
        // With an LCP-shaped start the options are read too.
        let mut lcp = vec![0xff, 0x03, 0xc0, 0x21];
        lcp.extend_from_slice(&bytes);
        let _ = Frame::read(&lcp);
    }

    /// The session's frames replaced by random bytes (some of them plausible PPP headers):
    /// the check reads them without panic and flags nothing it cannot justify.
    #[test]
    fn random_payloads_in_a_session_do_not_panic(
        payloads in proptest::collection::vec(
            (prop::sample::select(vec![0xc021_u16, 0x8021, 0x8057, 0xc023, 0xc223, 0x0021, 0x0057, 0x0001]),
             proptest::collection::vec(any::<u8>(), 0..40)),
            1..40,
        ),
    ) {
        let (mut observations, roles) = run(Variant::Fig3, PppScript::Subscriber);
        let mut data = observations.iter_mut().filter(|o| o.ppp.is_some());
        for (protocol, tail) in &payloads {
            let Some(o) = data.next() else { break };
            let mut frame = vec![0xff, 0x03];
            frame.extend_from_slice(&protocol.to_be_bytes());
            frame.extend_from_slice(tail);
            o.ppp = Some(Frame::read(&frame));
        }
        let report = check(&observations, &roles, Sequence::Auto);
        prop_assert_eq!(report.tunnels.len(), 1);
        let _ = report.render_text(&[]);
        for deviation in &report.tunnels[0].deviations {
            prop_assert_eq!(deviation.rule, Rule::PppOrder);
        }
    }
}
