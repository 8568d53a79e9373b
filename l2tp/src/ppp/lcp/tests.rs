use super::*;
use crate::ppp::fsm::tests::{at, drain, events, packet, run_pair, sent_one};
use crate::ppp::fsm::{code, FsmConfig, State};
use crate::time::Instant;
use proptest::prelude::*;

const T0: Instant = Instant::ZERO;

fn lcp(config: LcpConfig) -> Fsm<Lcp> {
    Fsm::new(Lcp::new(config), FsmConfig::default())
}

/// An automaton in Req-Sent with its first Configure-Request taken off.
fn req_sent(config: LcpConfig) -> Fsm<Lcp> {
    let mut fsm = lcp(config);
    fsm.open(T0);
    fsm.up(T0);
    drain(&mut fsm);
    events(&mut fsm);
    fsm
}

fn opened(config: LcpConfig) -> Fsm<Lcp> {
    let mut fsm = req_sent(config);
    fsm.handle(
        T0,
        packet(code::CONFIGURE_REQUEST, 1, &[5, 6, 0xaa, 0xbb, 0xcc, 0xdd]),
    );
    let mut request = Vec::new();
    fsm.negotiator().emit_request(&mut request);
    let id = fsm.request_id();
    fsm.handle(T0, packet(code::CONFIGURE_ACK, id, &request));
    assert_eq!(fsm.state(), State::Opened);
    drain(&mut fsm);
    events(&mut fsm);
    fsm
}

#[test]
fn golden_configure_request_options() {
    let mut out = Vec::new();
    for option in [
        LcpOption::Mru(1500),
        LcpOption::AuthenticationProtocol(AuthProtocol::CHAP_MD5),
        LcpOption::MagicNumber(0x0102_0304),
        LcpOption::Pfc,
        LcpOption::Acfc,
    ] {
        let start = out.len();
        option.emit(&mut out);
        assert_eq!(out.len() - start, option.buffer_len());
    }
    let golden = [
        0x01, 0x04, 0x05, 0xdc, // MRU 1500
        0x03, 0x05, 0xc2, 0x23, 0x05, // CHAP with MD5
        0x05, 0x06, 0x01, 0x02, 0x03, 0x04, // Magic-Number
        0x07, 0x02, 0x08, 0x02, // PFC, ACFC
    ];
    assert_eq!(out, golden);
    let parsed: Vec<_> = options(&golden)
        .map(|(k, v)| LcpOption::parse(k, v).unwrap())
        .collect();
    assert_eq!(
        parsed[1],
        LcpOption::AuthenticationProtocol(AuthProtocol::CHAP_MD5)
    );
    assert_eq!(parsed[2], LcpOption::MagicNumber(0x0102_0304));
    let mut pap = Vec::new();
    LcpOption::AuthenticationProtocol(AuthProtocol::Pap).emit(&mut pap);
    assert_eq!(pap, [0x03, 0x04, 0xc0, 0x23]);
}

#[test]
fn golden_configure_request_from_the_automaton() {
    let mut fsm = lcp(LcpConfig {
        mru: 1400,
        authenticate: AuthSet::CHAP_MD5,
        ..LcpConfig::default()
    });
    fsm.negotiator_mut().magic = 0x0102_0304;
    fsm.open(T0);
    fsm.up(T0);
    assert_eq!(
        drain(&mut fsm),
        [vec![
            0x01, 0x01, 0x00, 0x13, // Configure-Request, id 1, length 19
            0x01, 0x04, 0x05, 0x78, // MRU 1400
            0x03, 0x05, 0xc2, 0x23, 0x05, // CHAP-MD5
            0x05, 0x06, 0x01, 0x02, 0x03, 0x04, // magic
        ]]
    );
}

#[test]
fn options_of_the_wrong_length_do_not_parse() {
    for (kind, value) in [
        (1u8, &[5u8][..]),
        (3, &[0xc2, 0x23]),
        (3, &[0xc0, 0x23, 1]),
        (3, &[0xc0]),
        (5, &[1, 2, 3]),
        (7, &[0]),
    ] {
        assert!(LcpOption::parse(kind, value).is_err(), "{kind} {value:?}");
    }
    assert_eq!(
        LcpOption::parse(3, &[0xc2, 0x27, 9]).unwrap(),
        LcpOption::AuthenticationProtocol(AuthProtocol::Other(0xc227))
    );
}

#[test]
fn two_peers_open_with_chap_and_compression() {
    let mut lns = lcp(LcpConfig {
        authenticate: AuthSet::CHAP_MD5,
        magic_seed: 1,
        pfc: true,
        acfc: true,
        ..LcpConfig::default()
    });
    let mut lac = lcp(LcpConfig {
        mru: 1460,
        magic_seed: 2,
        pfc: true,
        acfc: true,
        ..LcpConfig::default()
    });
    run_pair(&mut lns, &mut lac, 0, 7);
    let (lns_view, lac_view) = (lns.negotiated().unwrap(), lac.negotiated().unwrap());
    assert_eq!(lns_view.our_auth, Some(AuthProtocol::CHAP_MD5));
    assert_eq!(lac_view.peer_auth, Some(AuthProtocol::CHAP_MD5));
    assert_eq!(lac_view.our_auth, None);
    assert_eq!(
        (lns_view.peer_mru, lac_view.our_mru, lac_view.peer_mru),
        (1460, 1460, 1500)
    );
    assert_eq!(lns_view.peer_magic, lac_view.our_magic);
    assert_eq!(lac_view.peer_magic, lns_view.our_magic);
    assert_ne!(lns_view.our_magic, lac_view.our_magic);
    assert!(lns_view.peer_pfc && lns_view.peer_acfc && lns_view.our_pfc && lac_view.peer_acfc);
}

#[test]
fn peer_naks_our_auth_and_we_take_the_other() {
    let mut lns = lcp(LcpConfig {
        authenticate: AuthSet::ANY,
        magic_seed: 1,
        ..LcpConfig::default()
    });
    let mut lac = lcp(LcpConfig {
        accept: AuthSet::PAP,
        magic_seed: 2,
        ..LcpConfig::default()
    });
    run_pair(&mut lns, &mut lac, 0, 7);
    assert_eq!(lac.negotiated().unwrap().peer_auth, Some(AuthProtocol::Pap));
    assert_eq!(lns.negotiated().unwrap().our_auth, Some(AuthProtocol::Pap));
}

#[test]
fn we_nak_an_auth_protocol_we_cannot_do_with_one_we_can() {
    let mut fsm = req_sent(LcpConfig {
        accept: AuthSet::PAP,
        ..LcpConfig::default()
    });
    fsm.handle(
        T0,
        packet(code::CONFIGURE_REQUEST, 4, &[3, 5, 0xc2, 0x23, 0x81]),
    );
    assert_eq!(
        sent_one(&mut fsm),
        (code::CONFIGURE_NAK, 4, vec![3, 4, 0xc0, 0x23])
    );
    // Doing none, we reject it.
    let mut fsm = req_sent(LcpConfig {
        accept: AuthSet::NONE,
        ..LcpConfig::default()
    });
    fsm.handle(T0, packet(code::CONFIGURE_REQUEST, 4, &[3, 4, 0xc0, 0x23]));
    assert_eq!(
        sent_one(&mut fsm),
        (code::CONFIGURE_REJECT, 4, vec![3, 4, 0xc0, 0x23])
    );
}

#[test]
fn authenticator_refused_closes() {
    // CHAP only, and the peer does PAP only: nothing left to ask.
    let mut lns = lcp(LcpConfig {
        authenticate: AuthSet::CHAP_MD5,
        magic_seed: 1,
        ..LcpConfig::default()
    });
    let mut lac = lcp(LcpConfig {
        accept: AuthSet::PAP,
        magic_seed: 2,
        ..LcpConfig::default()
    });
    run_pair(&mut lns, &mut lac, 0, 7);
    assert_eq!(lns.state(), State::Closed);
    let seen = events(&mut lns);
    assert!(
        seen.iter().any(|e| matches!(
            e,
            FsmEvent::Failed(crate::ppp::fsm::Failure::Refused(Refusal { option: 3, .. }))
        )),
        "{seen:?}"
    );
    // A peer that rejects authentication outright is refused the same way.
    let mut fsm = req_sent(LcpConfig {
        authenticate: AuthSet::PAP,
        ..LcpConfig::default()
    });
    let id = fsm.request_id();
    fsm.handle(T0, packet(code::CONFIGURE_REJECT, id, &[3, 4, 0xc0, 0x23]));
    assert_eq!(fsm.state(), State::Closing);
    assert_eq!(sent_one(&mut fsm).0, code::TERMINATE_REQUEST);
}

#[test]
fn unknown_and_refused_options_are_rejected_as_they_came() {
    let mut fsm = req_sent(LcpConfig::default());
    // Quality-Protocol (4), a bad MRU length, PFC we do not allow, and a good magic.
    let request = [4, 6, 0xc0, 0x25, 0, 0, 1, 3, 5, 7, 2, 5, 6, 9, 9, 9, 9];
    fsm.handle(T0, packet(code::CONFIGURE_REQUEST, 9, &request));
    assert_eq!(
        sent_one(&mut fsm),
        (
            code::CONFIGURE_REJECT,
            9,
            vec![4, 6, 0xc0, 0x25, 0, 0, 1, 3, 5, 7, 2]
        )
    );
}

#[test]
fn mru_below_the_minimum_is_naked() {
    let mut fsm = req_sent(LcpConfig::default());
    fsm.handle(T0, packet(code::CONFIGURE_REQUEST, 2, &[1, 4, 0, 64]));
    assert_eq!(
        sent_one(&mut fsm),
        (code::CONFIGURE_NAK, 2, vec![1, 4, 0, 128])
    );
}

#[test]
fn our_magic_looped_back_is_naked_and_counted() {
    let mut fsm = req_sent(LcpConfig::default());
    let magic = fsm.negotiator().magic();
    let mut request = Vec::new();
    fsm.negotiator().emit_request(&mut request);
    // Our own request comes back.
    fsm.handle(
        T0,
        packet(code::CONFIGURE_REQUEST, fsm.request_id(), &request),
    );
    let (code, _, data) = sent_one(&mut fsm);
    assert_eq!(code, code::CONFIGURE_NAK);
    let suggested = u32::from_be_bytes(data[2..6].try_into().unwrap());
    assert!(suggested != magic && suggested != 0);
    assert_eq!(events(&mut fsm), [FsmEvent::LoopbackSuspected]);
    assert_eq!(fsm.negotiator().loopbacks(), 1);
    // ...and so does our Nak, as a Nak of our request: a new magic, and a second count.
    let id = fsm.request_id();
    fsm.handle(T0, packet(code::CONFIGURE_NAK, id, &data));
    let (code, _, next) = sent_one(&mut fsm);
    assert_eq!(code, code::CONFIGURE_REQUEST);
    let now = fsm.negotiator().magic();
    assert!(now != magic && now != suggested);
    assert_eq!(
        next,
        [5, 6]
            .into_iter()
            .chain(now.to_be_bytes())
            .collect::<Vec<_>>()
    );
    assert_eq!(fsm.negotiator().loopbacks(), 2);
    // A zero magic is naked too, and is no loop.
    fsm.handle(T0, packet(code::CONFIGURE_REQUEST, 3, &[5, 6, 0, 0, 0, 0]));
    assert_eq!(sent_one(&mut fsm).0, code::CONFIGURE_NAK);
    assert_eq!(fsm.negotiator().loopbacks(), 2);
}

#[test]
fn magic_rejected_means_none() {
    let mut fsm = req_sent(LcpConfig::default());
    let id = fsm.request_id();
    let mut request = Vec::new();
    fsm.negotiator().emit_request(&mut request);
    fsm.handle(T0, packet(code::CONFIGURE_REJECT, id, &request));
    assert_eq!(sent_one(&mut fsm).2, Vec::<u8>::new());
    assert_eq!(fsm.negotiator().magic(), 0);
}

#[test]
fn echo_request_answered_only_in_opened() {
    let mut fsm = req_sent(LcpConfig::default());
    fsm.handle(T0, packet(lcp_code::ECHO_REQUEST, 7, &[0, 0, 0, 1]));
    assert!(drain(&mut fsm).is_empty());
    assert!(matches!(
        events(&mut fsm)[..],
        [FsmEvent::Discarded { code: 9, .. }]
    ));

    let mut fsm = opened(LcpConfig::default());
    let magic = fsm.negotiator().magic();
    fsm.handle(
        T0,
        packet(lcp_code::ECHO_REQUEST, 7, &[0xaa, 0xbb, 0xcc, 0xdd, 1, 2]),
    );
    let mut reply = magic.to_be_bytes().to_vec();
    reply.extend([1, 2]);
    assert_eq!(sent_one(&mut fsm), (lcp_code::ECHO_REPLY, 7, reply));
    // Discard-Request: nothing. Echo-Reply: an event.
    fsm.handle(
        T0,
        packet(lcp_code::DISCARD_REQUEST, 8, &[0xaa, 0xbb, 0xcc, 0xdd]),
    );
    fsm.handle(
        T0,
        packet(lcp_code::ECHO_REPLY, 9, &[0xaa, 0xbb, 0xcc, 0xdd]),
    );
    assert!(drain(&mut fsm).is_empty());
    assert_eq!(
        events(&mut fsm),
        [FsmEvent::EchoReply {
            identifier: 9,
            magic: 0xaabb_ccdd
        }]
    );
    // Our own echo request.
    let id = fsm.send_echo_request(b"x").unwrap();
    let mut request = magic.to_be_bytes().to_vec();
    request.push(b'x');
    assert_eq!(sent_one(&mut fsm), (lcp_code::ECHO_REQUEST, id, request));
    assert_eq!(fsm.state(), State::Opened);
}

#[test]
fn protocol_reject_of_an_ncp_is_an_event_and_of_lcp_is_the_end() {
    let mut fsm = opened(LcpConfig::default());
    fsm.handle(
        T0,
        packet(lcp_code::PROTOCOL_REJECT, 1, &[0x80, 0x57, 1, 1, 0, 4]),
    );
    assert_eq!(fsm.state(), State::Opened);
    assert_eq!(
        events(&mut fsm),
        [FsmEvent::ProtocolRejected { protocol: 0x8057 }]
    );
    assert!(drain(&mut fsm).is_empty());

    fsm.handle(
        T0,
        packet(lcp_code::PROTOCOL_REJECT, 2, &[0xc0, 0x21, 1, 1, 0, 4]),
    );
    assert_eq!(fsm.state(), State::Stopping);
    assert_eq!(
        events(&mut fsm),
        [
            FsmEvent::ProtocolRejected { protocol: 0xc021 },
            FsmEvent::Down
        ]
    );
    assert_eq!(sent_one(&mut fsm).0, code::TERMINATE_REQUEST);
}

#[test]
fn protocol_reject_we_send_fits_the_peers_mru() {
    let info = vec![0x45; 2000];
    let data = protocol_reject_data(0x0057, &info, 1500);
    assert_eq!(data.len() + 4, 1500);
    assert_eq!(&data[..3], &[0x00, 0x57, 0x45]);
    assert_eq!(protocol_reject_data(0x0057, &[1, 2], 1500), [0, 0x57, 1, 2]);

    let mut fsm = req_sent(LcpConfig::default());
    assert_eq!(fsm.send_protocol_reject(0x0057, &info), None);
    let mut fsm = opened(LcpConfig::default());
    let id = fsm.send_protocol_reject(0x0057, &info).unwrap();
    let (code, identifier, data) = sent_one(&mut fsm);
    assert_eq!(
        (code, identifier, data.len()),
        (lcp_code::PROTOCOL_REJECT, id, 1496)
    );
}

#[test]
fn unknown_code_gets_a_code_reject_and_echo_code_reject_stops_echoes() {
    let mut fsm = opened(LcpConfig::default());
    fsm.handle(T0, packet(12, 5, &[1]));
    let (code, _, data) = sent_one(&mut fsm);
    assert_eq!((code, data), (code::CODE_REJECT, vec![12, 5, 0, 5, 1]));
    fsm.handle(
        T0,
        packet(code::CODE_REJECT, 6, &[lcp_code::ECHO_REQUEST, 1, 0, 8]),
    );
    assert_eq!(fsm.state(), State::Opened);
    assert_eq!(fsm.send_echo_request(&[]), None);
}

#[test]
fn renegotiation_from_opened_goes_back_to_our_wants() {
    let config = LcpConfig {
        pfc: true,
        ..LcpConfig::default()
    };
    let mut fsm = opened(config);
    // The peer asks again (§4.3: be ready to renegotiate): tld, scr, sca.
    fsm.handle(at(1), packet(code::CONFIGURE_REQUEST, 40, &[7, 2]));
    assert_eq!(fsm.state(), State::AckSent);
    let sent = drain(&mut fsm);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0][0], code::CONFIGURE_REQUEST);
    assert!(sent[0].ends_with(&[7, 2]));
    assert_eq!(sent[1], [code::CONFIGURE_ACK, 40, 0, 6, 7, 2]);
    assert_eq!(events(&mut fsm), [FsmEvent::Down]);
}

proptest! {
    #[test]
    fn random_lcp_packets_never_panic(
        packets in proptest::collection::vec(
            (1u8..14, any::<u8>(), proptest::collection::vec(any::<u8>(), 0..32)), 0..24),
        open in any::<bool>(),
    ) {
        let config = LcpConfig { authenticate: AuthSet::ANY, pfc: true, ..LcpConfig::default() };
        let mut fsm = if open { opened(config) } else { req_sent(config) };
        for (i, (code, identifier, data)) in packets.iter().enumerate() {
            fsm.handle(at(i as u64), packet(*code, *identifier, data));
            prop_assert_eq!(fsm.poll_timeout().is_some(), fsm.state().has_timer());
            drain(&mut fsm);
        }
        for (kind, value) in packets.iter().flat_map(|p| options(&p.2)) {
            if let Ok(option) = LcpOption::parse(kind, value) {
                let mut out = Vec::new();
                option.emit(&mut out);
                prop_assert_eq!(out.len(), option.buffer_len());
                // Only another protocol's authentication data is not kept.
                if !matches!(option, LcpOption::AuthenticationProtocol(AuthProtocol::Other(_))) {
                    prop_assert_eq!(&out[2..], value);
                }
            }
        }
    }

    #[test]
    fn lcp_over_a_lossy_link_opens_or_gives_up(seed in any::<u64>(), loss in 0u64..50) {
        let mut a = lcp(LcpConfig { authenticate: AuthSet::ANY, magic_seed: seed, ..LcpConfig::default() });
        let mut b = lcp(LcpConfig { magic_seed: !seed, pfc: true, acfc: true, ..LcpConfig::default() });
        run_pair(&mut a, &mut b, loss, seed);
        for state in [a.state(), b.state()] {
            prop_assert!(matches!(state, State::Opened | State::Stopped | State::Closed), "{:?}", state);
        }
        if loss <= 10 {
            prop_assert!(a.is_opened() && b.is_opened());
            prop_assert_eq!(b.negotiated().unwrap().peer_auth, Some(AuthProtocol::CHAP_MD5));
        }
    }
}
