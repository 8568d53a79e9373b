use proptest::prelude::*;

use super::super::auth::fixtures::{alice, at, users};
use super::super::auth::Rejection;
use super::*;

fn config() -> Arc<AuthenticatorConfig> {
    Arc::new(AuthenticatorConfig {
        success_message: "Login ok".into(),
        failure_message: "Login incorrect".into(),
        ..AuthenticatorConfig::default()
    })
}

/// Everything `out` holds, read back as one PAP packet.
fn read(out: &[u8]) -> (u8, PapPacket<'_>) {
    let packet = PacketRepr::parse_bytes(out).unwrap();
    assert_eq!(packet.buffer_len(), out.len(), "one whole packet");
    (packet.identifier, PapPacket::parse(&packet).unwrap())
}

/// Runs the peer against the authenticator, losing nothing, until neither has more to send.
fn exchange(peer: &mut PapPeer, auth: &mut PapAuthenticator, credentials: &Credentials<'_>) {
    let users = users();
    for _ in 0..4 {
        let mut out = Vec::new();
        if peer.poll_transmit(credentials, &mut out) {
            let packet = PacketRepr::parse_bytes(&out).unwrap();
            assert_eq!(auth.handle(at(1), packet, &users), Ok(Handled::Used));
        }
        let mut out = Vec::new();
        if auth.poll_transmit(&mut out) {
            let packet = PacketRepr::parse_bytes(&out).unwrap();
            assert_eq!(peer.handle(at(1), packet), Ok(Handled::Used));
        }
    }
}

#[test]
fn golden_request_for_alice() {
    let mut peer = PapPeer::new(PeerConfig::default(), 7, Instant::ZERO);
    let mut out = Vec::new();
    assert!(peer.poll_transmit(&alice(), &mut out));
    let mut golden = vec![0x01, 0x07, 0x00, 0x15, 0x05];
    golden.extend_from_slice(b"alice");
    golden.push(0x0a);
    golden.extend_from_slice(b"wonderland");
    assert_eq!(out, golden);
    assert_eq!(
        read(&out),
        (
            7,
            PapPacket::Request {
                peer_id: b"alice",
                password: b"wonderland"
            }
        )
    );
    // Nothing more until the restart timer says so.
    assert!(!peer.poll_transmit(&alice(), &mut out));
    assert_eq!(peer.poll_timeout(), Some(at(3000)));
}

#[test]
fn golden_ack_and_nak() {
    let mut out = Vec::new();
    PapPacket::Nak {
        message: b"Login incorrect",
    }
    .emit_to_vec(7, &mut out)
    .unwrap();
    let mut golden = vec![0x03, 0x07, 0x00, 0x14, 0x0f];
    golden.extend_from_slice(b"Login incorrect");
    assert_eq!(out, golden);
    let ack = PapPacket::Ack { message: b"" };
    assert_eq!(ack.buffer_len(), 5);
    out.clear();
    ack.emit_to_vec(1, &mut out).unwrap();
    assert_eq!(out, [0x02, 0x01, 0x00, 0x05, 0x00]);
    // A bare Ack, without Msg-Length, reads as an empty message.
    assert_eq!(read(&[0x02, 0x09, 0x00, 0x04]), (9, ack));
}

#[test]
fn lengths_that_lie_are_named() {
    let cases: [(&[u8], &str); 6] = [
        (
            &[1, 1, 0, 8, 9, b'a', b'b', b'c'],
            "PAP Peer-ID truncated at byte 5: need 14 bytes, have 8",
        ),
        (
            &[1, 1, 0, 7, 1, b'a', 3],
            "PAP Password truncated at byte 7: need 10 bytes, have 7",
        ),
        (
            &[1, 1, 0, 6, 1, b'a'],
            "PAP Passwd-Length truncated at byte 6: need 7 bytes, have 6",
        ),
        (
            &[1, 1, 0, 4],
            "PAP Peer-ID Length truncated at byte 4: need 5 bytes, have 4",
        ),
        (
            &[3, 1, 0, 6, 5, b'x'],
            "PAP Message truncated at byte 5: need 10 bytes, have 6",
        ),
        (
            &[4, 1, 0, 4],
            "PAP Code at byte 0: not 1, 2 or 3 (RFC 1334 §2.2)",
        ),
    ];
    for (bytes, error) in cases {
        let packet = PacketRepr::parse_bytes(bytes).unwrap();
        assert_eq!(PapPacket::parse(&packet).unwrap_err().to_string(), error);
    }
    // The Length bounds the fields: the same bytes with padding after Length still lie.
    let padded = PacketRepr::parse_bytes(&[1, 1, 0, 6, 1, b'a', 1, b'b']).unwrap();
    assert!(PapPacket::parse(&padded).is_err());
    // Octets after the Password, within Length, are ignored.
    let extra = [1, 1, 0, 9, 1, b'a', 1, b'b', 0xee];
    let (_, request) = read(&extra);
    assert_eq!(
        request,
        PapPacket::Request {
            peer_id: b"a",
            password: b"b"
        }
    );
}

#[test]
fn over_long_fields_are_not_emitted() {
    let long = [b'x'; 256];
    let mut out = vec![0xaa];
    let request = PapPacket::Request {
        peer_id: &long,
        password: b"",
    };
    assert!(request.emit_to_vec(1, &mut out).is_err());
    let nak = PapPacket::Nak { message: &long };
    assert!(nak.emit_to_vec(1, &mut out).is_err());
    assert_eq!(out, [0xaa], "nothing written");
}

#[test]
fn peer_and_authenticator_agree_on_success() {
    let mut peer = PapPeer::new(PeerConfig::default(), 0xff, Instant::ZERO);
    let mut auth = PapAuthenticator::new(config(), Instant::ZERO);
    exchange(&mut peer, &mut auth, &alice());
    let success = PeerOutcome::Success {
        message: "Login ok".into(),
    };
    assert_eq!(peer.poll_event(), Some(success.clone()));
    assert_eq!(peer.poll_event(), None);
    assert_eq!(peer.outcome(), Some(&success));
    assert_eq!((peer.poll_timeout(), peer.requests_sent()), (None, 1));
    let accepted = AuthenticatorOutcome::Success {
        peer: b"alice"[..].into(),
    };
    assert_eq!(auth.poll_event(), Some(accepted.clone()));
    assert_eq!(auth.poll_event(), None);
    assert_eq!(auth.outcome(), Some(&accepted));
    assert_eq!(auth.poll_timeout(), None);
}

#[test]
fn wrong_password_and_unknown_user_fail_with_the_message() {
    for (credentials, reason) in [
        (
            Credentials::new(b"alice", b"looking-glass").unwrap(),
            Rejection::WrongSecret,
        ),
        (
            Credentials::new(b"mallory", b"wonderland").unwrap(),
            Rejection::UnknownPeer,
        ),
    ] {
        let mut peer = PapPeer::new(PeerConfig::default(), 0, Instant::ZERO);
        let mut auth = PapAuthenticator::new(config(), Instant::ZERO);
        exchange(&mut peer, &mut auth, &credentials);
        assert_eq!(
            peer.poll_event(),
            Some(PeerOutcome::Failure {
                message: "Login incorrect".into()
            })
        );
        assert_eq!(
            auth.poll_event(),
            Some(AuthenticatorOutcome::Failure {
                peer: credentials.name().into(),
                reason
            })
        );
    }
}

#[test]
fn retransmission_changes_identifier_and_stops_at_max() {
    let mut peer = PapPeer::new(PeerConfig::default(), 250, Instant::ZERO);
    let mut sent = Vec::new();
    let mut now = Instant::ZERO;
    loop {
        let mut out = Vec::new();
        while peer.poll_transmit(&alice(), &mut out) {
            sent.push((now, read(&out).0));
            out.clear();
        }
        let Some(deadline) = peer.poll_timeout() else {
            break;
        };
        assert!(deadline > now, "the timer moves on");
        now = deadline;
        peer.handle_timeout(now);
    }
    // Ten requests, 3 s apart, each with the next Identifier (wrapping), then Timeout 3 s
    // after the last.
    let expected: Vec<_> = (0..10u8)
        .map(|n| (at(3000 * u64::from(n)), 250u8.wrapping_add(n)))
        .collect();
    assert_eq!(sent, expected);
    assert_eq!(now, at(30_000));
    assert_eq!(peer.poll_event(), Some(PeerOutcome::Timeout));
    assert_eq!(peer.requests_sent(), 10);
    // A verdict after the timeout changes nothing.
    let late = PacketRepr::parse_bytes(&[2, 250, 0, 5, 0]).unwrap();
    assert_eq!(
        peer.handle(now, late),
        Ok(Handled::Ignored(Ignored::Finished))
    );
    assert_eq!(peer.outcome(), Some(&PeerOutcome::Timeout));
}

#[test]
fn verdicts_count_for_any_request_sent_and_no_other() {
    let mut peer = PapPeer::new(PeerConfig::default(), 10, Instant::ZERO);
    let mut out = Vec::new();
    assert!(peer.poll_transmit(&alice(), &mut out));
    peer.handle_timeout(at(3000));
    assert!(peer.poll_transmit(&alice(), &mut out));
    // Identifiers 10 and 11 went out; 12 did not.
    let ack = |id| [2, id, 0, 5, 0];
    let never_sent_bytes = ack(12);
    let never_sent = PacketRepr::parse_bytes(&never_sent_bytes).unwrap();
    assert_eq!(
        peer.handle(at(3001), never_sent),
        Ok(Handled::Ignored(Ignored::StaleIdentifier))
    );
    let request = PacketRepr::parse_bytes(&out).unwrap();
    assert_eq!(
        peer.handle(at(3001), request),
        Ok(Handled::Ignored(Ignored::WrongRole))
    );
    assert_eq!(peer.outcome(), None);
    // A late Ack to the first request ends it.
    let late_bytes = ack(10);
    let late = PacketRepr::parse_bytes(&late_bytes).unwrap();
    assert_eq!(peer.handle(at(3002), late), Ok(Handled::Used));
    assert!(matches!(peer.outcome(), Some(PeerOutcome::Success { .. })));
    let again_bytes = ack(11);
    let again = PacketRepr::parse_bytes(&again_bytes).unwrap();
    assert_eq!(
        peer.handle(at(3003), again),
        Ok(Handled::Ignored(Ignored::Finished))
    );
    assert_eq!(peer.poll_timeout(), None);
}

#[test]
fn authenticator_repeats_its_verdict_to_repeated_requests() {
    let users = users();
    for (password, ack) in [(&b"wonderland"[..], true), (b"nope", false)] {
        let mut auth = PapAuthenticator::new(config(), Instant::ZERO);
        let mut out = Vec::new();
        let first = PapPacket::Request {
            peer_id: b"alice",
            password,
        };
        first.emit_to_vec(1, &mut out).unwrap();
        let packet = PacketRepr::parse_bytes(&out).unwrap();
        assert_eq!(auth.handle(at(1), packet, &users), Ok(Handled::Used));
        // The verdict is lost; the peer asks again with a new Identifier, and (to show the
        // verdict is not re-judged) other credentials.
        let second = PapPacket::Request {
            peer_id: b"alice",
            password: if ack { b"nope" } else { b"wonderland" },
        };
        out.clear();
        second.emit_to_vec(2, &mut out).unwrap();
        let packet = PacketRepr::parse_bytes(&out).unwrap();
        assert_eq!(auth.handle(at(2), packet, &users), Ok(Handled::Used));
        out.clear();
        assert!(auth.poll_transmit(&mut out));
        let (id, verdict) = read(&out);
        assert_eq!((id, verdict.code() == code::AUTHENTICATE_ACK), (2, ack));
        out.clear();
        assert!(!auth.poll_transmit(&mut out), "one answer per request");
        assert!(auth.poll_event().is_some());
        assert_eq!(auth.poll_event(), None, "one outcome");
    }
}

#[test]
fn authenticator_gives_up_waiting_if_told_to() {
    let mut auth = PapAuthenticator::new(config(), at(1000));
    assert_eq!(auth.poll_timeout(), Some(at(31_000)));
    auth.handle_timeout(at(30_999));
    assert_eq!(auth.outcome(), None);
    auth.handle_timeout(at(31_000));
    assert_eq!(auth.poll_event(), Some(AuthenticatorOutcome::Timeout));
    assert_eq!(auth.poll_timeout(), None);
    let mut out = Vec::new();
    alice_request(&mut out);
    let packet = PacketRepr::parse_bytes(&out).unwrap();
    assert_eq!(
        auth.handle(at(31_001), packet, &users()),
        Ok(Handled::Ignored(Ignored::Finished))
    );
    assert!(!auth.poll_transmit(&mut out));
    let ack = PacketRepr::parse_bytes(&[2, 1, 0, 4]).unwrap();
    assert_eq!(
        auth.handle(at(31_001), ack, &users()),
        Ok(Handled::Ignored(Ignored::WrongRole))
    );

    let forever = Arc::new(AuthenticatorConfig {
        wait: None,
        ..AuthenticatorConfig::default()
    });
    let mut auth = PapAuthenticator::new(forever, Instant::ZERO);
    assert_eq!(auth.poll_timeout(), None);
    auth.handle_timeout(at(u64::MAX / 1000));
    assert_eq!(auth.outcome(), None);
}

fn alice_request(out: &mut Vec<u8>) {
    let mut peer = PapPeer::new(PeerConfig::default(), 1, Instant::ZERO);
    assert!(peer.poll_transmit(&alice(), out));
}

proptest! {
    #[test]
    fn random_bytes_never_panic_parse(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(packet) = PacketRepr::parse_bytes(&bytes) {
            if let Ok(pap) = PapPacket::parse(&packet) {
                // What reads, writes back and reads the same.
                let mut out = Vec::new();
                pap.emit_to_vec(packet.identifier, &mut out).unwrap();
                prop_assert_eq!(out.len(), pap.buffer_len());
                prop_assert_eq!(read(&out), (packet.identifier, pap));
            }
        }
    }

    #[test]
    fn random_packets_never_panic_handle(
        steps in proptest::collection::vec(
            (1u8..5, any::<u8>(), proptest::collection::vec(any::<u8>(), 0..24), 0u64..5000),
            0..24,
        ),
    ) {
        let users = users();
        let mut peer = PapPeer::new(PeerConfig::default(), 0, Instant::ZERO);
        let mut auth = PapAuthenticator::new(config(), Instant::ZERO);
        let mut now = Instant::ZERO;
        let mut decided = None;
        for (code, identifier, data, advance) in steps {
            now += core::time::Duration::from_millis(advance);
            let packet = PacketRepr { code, identifier, data: &data };
            let _ = peer.handle(now, packet);
            let _ = auth.handle(now, packet, &users);
            peer.handle_timeout(now);
            auth.handle_timeout(now);
            let mut out = Vec::new();
            while peer.poll_transmit(&alice(), &mut out) || auth.poll_transmit(&mut out) {}
            prop_assert!(peer.requests_sent() <= 10);
            // The peer's first outcome is its last.
            if let Some(outcome) = peer.outcome() {
                let first = decided.get_or_insert_with(|| outcome.clone());
                prop_assert_eq!(&*first, outcome);
            }
        }
    }
}

proptest! {
    /// Over a link that loses what `lost` says, the exchange ends within its bounds, and the
    /// two sides never disagree: a peer that heard an Ack was accepted.
    #[test]
    fn lossy_link_ends_within_bounds(lost in proptest::collection::vec(any::<bool>(), 0..30)) {
        let users = users();
        let mut lost = lost.into_iter().chain(core::iter::repeat(false));
        let mut peer = PapPeer::new(PeerConfig::default(), 0, Instant::ZERO);
        let mut auth = PapAuthenticator::new(config(), Instant::ZERO);
        let mut now = Instant::ZERO;
        while peer.outcome().is_none() {
            let mut out = Vec::new();
            while peer.poll_transmit(&alice(), &mut out) {
                if !lost.next().unwrap_or_default() {
                    let packet = PacketRepr::parse_bytes(&out).unwrap();
                    prop_assert!(auth.handle(now, packet, &users).is_ok());
                }
                out.clear();
            }
            while auth.poll_transmit(&mut out) {
                if !lost.next().unwrap_or_default() {
                    prop_assert!(peer.handle(now, PacketRepr::parse_bytes(&out).unwrap()).is_ok());
                }
                out.clear();
            }
            let Some(next) = peer.poll_timeout() else { break };
            now = next;
            peer.handle_timeout(now);
            auth.handle_timeout(now);
        }
        prop_assert!(now <= at(30_000), "ended at {now}");
        let accepted = auth.outcome().is_some_and(AuthenticatorOutcome::is_success);
        match peer.outcome() {
            Some(PeerOutcome::Success { .. }) => prop_assert!(accepted),
            Some(PeerOutcome::Timeout) => {}
            other => prop_assert!(false, "peer ended {other:?}"),
        }
    }
}
