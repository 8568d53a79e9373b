use proptest::prelude::*;

use super::super::auth::fixtures::{alice, at, users};
use super::super::auth::Rejection;
use super::*;

fn config() -> Arc<AuthenticatorConfig> {
    Arc::new(AuthenticatorConfig {
        name: b"lns".to_vec(),
        success_message: "Access granted".into(),
        failure_message: "Access denied".into(),
        ..AuthenticatorConfig::default()
    })
}

const CHALLENGE: [u8; 16] = [
    0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10,
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read(out: &[u8]) -> (u8, ChapPacket<'_>) {
    let packet = PacketRepr::parse_bytes(out).unwrap();
    assert_eq!(packet.buffer_len(), out.len(), "one whole packet");
    (packet.identifier, ChapPacket::parse(&packet).unwrap())
}

/// One packet from `out`, fed to the other side's handle.
fn packet(out: &[u8]) -> PacketRepr<'_> {
    PacketRepr::parse_bytes(out).unwrap()
}

/// Runs the peer against the authenticator, losing nothing, until neither has more to send.
fn exchange(peer: &mut ChapPeer, auth: &mut ChapAuthenticator, credentials: &Credentials<'_>) {
    let users = users();
    for _ in 0..4 {
        let mut out = Vec::new();
        if auth.poll_transmit(&mut out) {
            assert_eq!(
                peer.handle(at(1), packet(&out), credentials),
                Ok(Handled::Used)
            );
        }
        let mut out = Vec::new();
        if peer.poll_transmit(credentials, &mut out) {
            assert_eq!(auth.handle(at(1), packet(&out), &users), Ok(Handled::Used));
        }
    }
}

#[test]
fn response_value_is_md5_of_identifier_secret_challenge() {
    // Vectors computed apart from this crate (Python's hashlib over the same octets).
    let zero_to_15: Vec<u8> = (0..16).collect();
    assert_eq!(
        hex(&response_value(1, b"wonderland", &zero_to_15)),
        "d0746cfec3b68995b2f59f07ab80adfd"
    );
    assert_eq!(
        hex(&response_value(0x2a, b"secret", &CHALLENGE)),
        "6bbd13bb2acc255dcfc251cbb7d58b0e"
    );
    // And the formula over one buffer, as RFC 1994 §2 writes it.
    let mut whole = vec![0x2a];
    whole.extend_from_slice(b"secret");
    whole.extend_from_slice(&CHALLENGE);
    let digest: [u8; 16] = Md5::digest(&whole).into();
    assert_eq!(response_value(0x2a, b"secret", &CHALLENGE), digest);
}

#[test]
fn golden_challenge_and_response() {
    let mut auth = ChapAuthenticator::new(config(), 0x2a, CHALLENGE, Instant::ZERO);
    let mut out = Vec::new();
    assert!(auth.poll_transmit(&mut out));
    let mut golden = vec![0x01, 0x2a, 0x00, 0x18, 0x10];
    golden.extend_from_slice(&CHALLENGE);
    golden.extend_from_slice(b"lns");
    assert_eq!(out, golden);

    let credentials = Credentials::new(b"alice", b"secret").unwrap();
    let mut peer = ChapPeer::new(PeerConfig::default(), Instant::ZERO);
    assert_eq!(
        peer.handle(at(1), packet(&out), &credentials),
        Ok(Handled::Used)
    );
    let mut response = Vec::new();
    assert!(peer.poll_transmit(&credentials, &mut response));
    assert_eq!(hex(&response[..5]), "022a001a10");
    assert_eq!(hex(&response[5..21]), "6bbd13bb2acc255dcfc251cbb7d58b0e");
    assert_eq!(&response[21..], b"alice");
    assert!(!peer.poll_transmit(&credentials, &mut response));
}

#[test]
fn golden_success_and_failure() {
    let mut out = Vec::new();
    ChapPacket::Failure { message: b"no" }
        .emit_to_vec(9, &mut out)
        .unwrap();
    assert_eq!(out, [0x04, 0x09, 0x00, 0x06, b'n', b'o']);
    assert_eq!(read(&out), (9, ChapPacket::Failure { message: b"no" }));
    assert_eq!(
        read(&[0x03, 0x01, 0x00, 0x04]),
        (1, ChapPacket::Success { message: b"" })
    );
}

#[test]
fn lengths_that_lie_are_named() {
    let cases: [(&[u8], &str); 3] = [
        (
            &[1, 1, 0, 7, 16, 1, 2],
            "CHAP Value truncated at byte 5: need 21 bytes, have 7",
        ),
        (
            &[2, 1, 0, 4],
            "CHAP Value-Size truncated at byte 4: need 5 bytes, have 4",
        ),
        (
            &[5, 1, 0, 4],
            "CHAP Code at byte 0: not 1, 2, 3 or 4 (RFC 1994 §4)",
        ),
    ];
    for (bytes, error) in cases {
        let packet = PacketRepr::parse_bytes(bytes).unwrap();
        assert_eq!(ChapPacket::parse(&packet).unwrap_err().to_string(), error);
    }
    // The Name is what is left up to Length; padding after Length is not part of it.
    let (_, response) = read(&[2, 1, 0, 8, 1, 0xaa, b'b', b'o'][..]);
    assert_eq!(
        response,
        ChapPacket::Response {
            value: &[0xaa],
            name: b"bo"
        }
    );
    let padded = PacketRepr::parse_bytes(&[2, 1, 0, 7, 1, 0xaa, b'b', b'o']).unwrap();
    assert_eq!(
        ChapPacket::parse(&padded).unwrap(),
        ChapPacket::Response {
            value: &[0xaa],
            name: b"b"
        }
    );
    let mut out = vec![0xaa];
    let long = ChapPacket::Challenge {
        value: &[0; 256],
        name: b"",
    };
    assert!(long.emit_to_vec(1, &mut out).is_err());
    assert_eq!(out, [0xaa], "nothing written");
}

#[test]
fn peer_and_authenticator_agree_on_success() {
    let mut peer = ChapPeer::new(PeerConfig::default(), Instant::ZERO);
    let mut auth = ChapAuthenticator::new(config(), 7, CHALLENGE, Instant::ZERO);
    exchange(&mut peer, &mut auth, &alice());
    let success = PeerOutcome::Success {
        message: "Access granted".into(),
    };
    assert_eq!(peer.poll_event(), Some(success.clone()));
    assert_eq!(peer.poll_event(), None);
    assert_eq!(peer.outcome(), Some(&success));
    assert_eq!(peer.poll_timeout(), None);
    let accepted = AuthenticatorOutcome::Success {
        peer: b"alice"[..].into(),
    };
    assert_eq!(auth.poll_event(), Some(accepted.clone()));
    assert_eq!(auth.poll_event(), None);
    assert_eq!(auth.outcome(), Some(&accepted));
    assert_eq!((auth.poll_timeout(), auth.challenges_sent()), (None, 1));
}

#[test]
fn wrong_secret_and_unknown_name_fail_with_the_message() {
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
        let mut peer = ChapPeer::new(PeerConfig::default(), Instant::ZERO);
        let mut auth = ChapAuthenticator::new(config(), 7, CHALLENGE, Instant::ZERO);
        exchange(&mut peer, &mut auth, &credentials);
        assert_eq!(
            peer.poll_event(),
            Some(PeerOutcome::Failure {
                message: "Access denied".into()
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

/// A Response to the outstanding Challenge's value, with the identifier `id`, from alice.
fn response(id: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ChapPacket::Response {
        value,
        name: b"alice",
    }
    .emit_to_vec(id, &mut out)
    .unwrap();
    out
}

#[test]
fn a_response_with_a_stale_identifier_is_ignored() {
    let mut auth = ChapAuthenticator::new(config(), 5, CHALLENGE, Instant::ZERO);
    let mut out = Vec::new();
    assert!(auth.poll_transmit(&mut out));
    // Right secret, right challenge, but computed for and sent with Identifier 4: the value
    // would even be correct for that Identifier. It must not be judged at all.
    let stale = response(4, &response_value(4, b"wonderland", &CHALLENGE));
    assert_eq!(
        auth.handle(at(1), packet(&stale), &users()),
        Ok(Handled::Ignored(Ignored::StaleIdentifier))
    );
    // A stale Identifier with a wrong value is not a Failure either.
    let stale_wrong = response(6, &[0; 16]);
    assert_eq!(
        auth.handle(at(1), packet(&stale_wrong), &users()),
        Ok(Handled::Ignored(Ignored::StaleIdentifier))
    );
    out.clear();
    assert!(
        !auth.poll_transmit(&mut out),
        "no answer to a stale Response"
    );
    assert_eq!(auth.outcome(), None);
    assert_eq!(auth.poll_timeout(), Some(at(3000)), "still challenging");
    // The right one still succeeds.
    let good = response(5, &response_value(5, b"wonderland", &CHALLENGE));
    assert_eq!(
        auth.handle(at(2), packet(&good), &users()),
        Ok(Handled::Used)
    );
    assert!(auth.poll_transmit(&mut out));
    assert_eq!(read(&out).0, 5);
    assert_eq!(read(&out).1.code(), code::SUCCESS);
    // After the verdict, a stale one is still ignored.
    assert_eq!(
        auth.handle(at(3), packet(&stale), &users()),
        Ok(Handled::Ignored(Ignored::StaleIdentifier))
    );
}

#[test]
fn a_repeated_response_gets_the_same_verdict() {
    let right = response_value(5, b"wonderland", &CHALLENGE);
    for (first, then, verdict) in [
        (right, [0u8; 16], code::SUCCESS),
        ([0u8; 16], right, code::FAILURE),
    ] {
        let mut auth = ChapAuthenticator::new(config(), 5, CHALLENGE, Instant::ZERO);
        let mut out = Vec::new();
        assert!(auth.poll_transmit(&mut out));
        for value in [first, then, first] {
            let again = response(5, &value);
            assert_eq!(
                auth.handle(at(1), packet(&again), &users()),
                Ok(Handled::Used)
            );
            out.clear();
            assert!(auth.poll_transmit(&mut out));
            assert_eq!((read(&out).0, read(&out).1.code()), (5, verdict));
        }
        assert!(auth.poll_event().is_some());
        assert_eq!(auth.poll_event(), None, "one outcome");
    }
}

#[test]
fn challenges_are_resent_the_same_until_max_then_timeout() {
    let mut auth = ChapAuthenticator::new(config(), 200, CHALLENGE, Instant::ZERO);
    let mut sent = Vec::new();
    let mut now = Instant::ZERO;
    let mut first = None;
    loop {
        let mut out = Vec::new();
        while auth.poll_transmit(&mut out) {
            // Same Identifier, same Value, same Name each time.
            assert_eq!(&out, first.get_or_insert_with(|| out.clone()));
            sent.push(now);
            out.clear();
        }
        let Some(deadline) = auth.poll_timeout() else {
            break;
        };
        assert!(deadline > now);
        now = deadline;
        auth.handle_timeout(now);
    }
    let expected: Vec<_> = (0..10).map(|n| at(3000 * n)).collect();
    assert_eq!(sent, expected);
    assert_eq!(now, at(30_000));
    assert_eq!(auth.poll_event(), Some(AuthenticatorOutcome::Timeout));
    assert_eq!(auth.challenges_sent(), 10);
    let late = response(200, &response_value(200, b"wonderland", &CHALLENGE));
    assert_eq!(
        auth.handle(now, packet(&late), &users()),
        Ok(Handled::Ignored(Ignored::Finished))
    );
    assert_eq!(auth.outcome(), Some(&AuthenticatorOutcome::Timeout));
}

fn challenge(id: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ChapPacket::Challenge {
        value,
        name: b"lns",
    }
    .emit_to_vec(id, &mut out)
    .unwrap();
    out
}

#[test]
fn peer_answers_a_repeated_challenge_the_same() {
    let mut peer = ChapPeer::new(PeerConfig::default(), Instant::ZERO);
    let mut responses = Vec::new();
    for (id, value) in [(3, &CHALLENGE[..]), (3, &CHALLENGE), (4, &[9, 9][..])] {
        let handled = peer.handle(at(1), packet(&challenge(id, value)), &alice());
        assert_eq!(handled, Ok(Handled::Used));
        let mut out = Vec::new();
        assert!(peer.poll_transmit(&alice(), &mut out));
        responses.push(out);
    }
    assert_eq!(responses[0], responses[1]);
    assert_eq!(
        read(&responses[2]),
        (
            4,
            ChapPacket::Response {
                value: &response_value(4, b"wonderland", &[9, 9]),
                name: b"alice"
            }
        )
    );
    // A verdict for an Identifier never challenged is stale.
    let never = PacketRepr::parse_bytes(&[3, 7, 0, 4]).unwrap();
    assert_eq!(
        peer.handle(at(2), never, &alice()),
        Ok(Handled::Ignored(Ignored::StaleIdentifier))
    );
    let current = PacketRepr::parse_bytes(&[4, 4, 0, 6, b'n', b'o']).unwrap();
    assert_eq!(peer.handle(at(2), current, &alice()), Ok(Handled::Used));
    assert_eq!(
        peer.poll_event(),
        Some(PeerOutcome::Failure {
            message: "no".into()
        })
    );
    assert_eq!(
        peer.handle(at(3), current, &alice()),
        Ok(Handled::Ignored(Ignored::Finished))
    );
}

/// After an LCP renegotiation the authenticator's Challenge of the earlier round (id 143)
/// overtook by the new one (id 230): both are answered, and the Success to the new one counts.
/// Before, the late Challenge replaced the live one and the Success was dropped as stale.
#[test]
fn a_late_challenge_of_another_round_does_not_hide_the_live_one() {
    let users = users();
    let mut peer = ChapPeer::new(PeerConfig::default(), Instant::ZERO);
    let mut auth = ChapAuthenticator::new(config(), 230, CHALLENGE, Instant::ZERO);
    let mut live = Vec::new();
    assert!(auth.poll_transmit(&mut live));
    assert_eq!(
        peer.handle(at(10), packet(&live), &alice()),
        Ok(Handled::Used)
    );
    let mut out = Vec::new();
    assert!(peer.poll_transmit(&alice(), &mut out));
    assert_eq!(auth.handle(at(20), packet(&out), &users), Ok(Handled::Used));
    let mut success = Vec::new();
    assert!(auth.poll_transmit(&mut success));
    // The late Challenge arrives before the Success; its Response goes out too.
    let late = challenge(143, &[7; 16]);
    assert_eq!(
        peer.handle(at(25), packet(&late), &alice()),
        Ok(Handled::Used)
    );
    out.clear();
    assert!(peer.poll_transmit(&alice(), &mut out));
    assert_eq!(read(&out).0, 143);
    assert_eq!(
        auth.handle(at(30), packet(&out), &users),
        Ok(Handled::Ignored(Ignored::StaleIdentifier))
    );
    assert_eq!(
        peer.handle(at(30), packet(&success), &alice()),
        Ok(Handled::Used)
    );
    assert!(matches!(
        peer.poll_event(),
        Some(PeerOutcome::Success { .. })
    ));
    assert_eq!(peer.poll_timeout(), None);
}

/// The same, with the Success lost: the restart timer resends both Responses, the
/// authenticator repeats its Success to the one it was waiting on.
#[test]
fn with_two_challenges_outstanding_both_responses_are_resent() {
    let users = users();
    let mut peer = ChapPeer::new(PeerConfig::default(), Instant::ZERO);
    let mut auth = ChapAuthenticator::new(config(), 230, CHALLENGE, Instant::ZERO);
    let mut out = Vec::new();
    assert!(auth.poll_transmit(&mut out));
    let _ = peer.handle(at(10), packet(&out), &alice());
    out.clear();
    assert!(peer.poll_transmit(&alice(), &mut out));
    let _ = auth.handle(at(20), packet(&out), &users);
    out.clear();
    assert!(auth.poll_transmit(&mut out), "the Success, lost on the way");
    let _ = peer.handle(at(25), packet(&challenge(143, &[7; 16])), &alice());
    out.clear();
    assert!(peer.poll_transmit(&alice(), &mut out));
    // The restart period of the later Challenge: both Responses, the later first.
    let deadline = peer.poll_timeout().unwrap();
    assert_eq!(deadline, at(3025));
    peer.handle_timeout(deadline);
    let mut resent = Vec::new();
    out.clear();
    while peer.poll_transmit(&alice(), &mut out) {
        resent.push(std::mem::take(&mut out));
    }
    let ids: Vec<u8> = resent.iter().map(|r| read(r).0).collect();
    assert_eq!(ids, [143, 230]);
    assert_eq!(
        auth.handle(at(3030), packet(&resent[0]), &users),
        Ok(Handled::Ignored(Ignored::StaleIdentifier))
    );
    assert_eq!(
        auth.handle(at(3030), packet(&resent[1]), &users),
        Ok(Handled::Used)
    );
    out.clear();
    assert!(auth.poll_transmit(&mut out));
    assert_eq!(read(&out).0, 230);
    assert_eq!(
        peer.handle(at(3040), packet(&out), &alice()),
        Ok(Handled::Used)
    );
    assert!(matches!(peer.outcome(), Some(PeerOutcome::Success { .. })));
}

/// A Challenge that comes after the Success and never gets a verdict (a late one of an earlier
/// round, or a rechallenge the authenticator dropped) is answered, but its timeout does not
/// turn the Success into a failure: the session stays up.
#[test]
fn an_unanswered_challenge_after_success_does_not_undo_it() {
    let mut peer = ChapPeer::new(PeerConfig::default(), Instant::ZERO);
    let mut auth = ChapAuthenticator::new(config(), 230, CHALLENGE, Instant::ZERO);
    exchange(&mut peer, &mut auth, &alice());
    assert!(matches!(
        peer.poll_event(),
        Some(PeerOutcome::Success { .. })
    ));
    let _ = peer.handle(at(100), packet(&challenge(143, &[7; 16])), &alice());
    let mut out = Vec::new();
    assert!(peer.poll_transmit(&alice(), &mut out));
    while let Some(deadline) = peer.poll_timeout() {
        peer.handle_timeout(deadline);
        while peer.poll_transmit(&alice(), &mut out) {}
    }
    assert_eq!(peer.poll_event(), None);
    assert!(matches!(peer.outcome(), Some(PeerOutcome::Success { .. })));
}

#[test]
fn peer_times_out_without_a_challenge() {
    let mut peer = ChapPeer::new(PeerConfig::default(), at(500));
    assert_eq!(peer.poll_timeout(), Some(at(30_500)));
    let early = PacketRepr::parse_bytes(&[3, 0, 0, 4]).unwrap();
    assert_eq!(
        peer.handle(at(600), early, &alice()),
        Ok(Handled::Ignored(Ignored::StaleIdentifier)),
        "a Success before any Challenge"
    );
    peer.handle_timeout(at(30_499));
    assert_eq!(peer.outcome(), None);
    peer.handle_timeout(at(30_500));
    assert_eq!(peer.poll_event(), Some(PeerOutcome::Timeout));
    assert_eq!(peer.poll_timeout(), None);
    let mut out = Vec::new();
    assert!(!peer.poll_transmit(&alice(), &mut out));
}

#[test]
fn peer_resends_its_response_until_max_then_timeout() {
    let mut peer = ChapPeer::new(PeerConfig::default(), Instant::ZERO);
    let handled = peer.handle(at(1000), packet(&challenge(1, &CHALLENGE)), &alice());
    assert_eq!(handled, Ok(Handled::Used));
    let mut sent = Vec::new();
    let mut now = at(1000);
    while let Some(deadline) = {
        let mut out = Vec::new();
        while peer.poll_transmit(&alice(), &mut out) {
            sent.push(now);
            out.clear();
        }
        peer.poll_timeout()
    } {
        now = deadline;
        peer.handle_timeout(now);
    }
    let expected: Vec<_> = (0..10).map(|n| at(1000 + 3000 * n)).collect();
    assert_eq!(sent, expected);
    assert_eq!(now, at(31_000));
    assert_eq!(peer.poll_event(), Some(PeerOutcome::Timeout));
}

#[test]
fn a_lost_success_is_recovered_by_the_peer_resending() {
    let mut peer = ChapPeer::new(PeerConfig::default(), Instant::ZERO);
    let mut auth = ChapAuthenticator::new(config(), 9, CHALLENGE, Instant::ZERO);
    let mut out = Vec::new();
    assert!(auth.poll_transmit(&mut out));
    let _ = peer.handle(at(10), packet(&out), &alice());
    out.clear();
    assert!(peer.poll_transmit(&alice(), &mut out));
    let _ = auth.handle(at(20), packet(&out), &users());
    out.clear();
    assert!(auth.poll_transmit(&mut out), "the Success, lost on the way");
    assert_eq!(auth.poll_timeout(), None, "the authenticator is done");
    // The peer's restart timer resends the Response; the authenticator repeats its Success.
    peer.handle_timeout(peer.poll_timeout().unwrap());
    out.clear();
    assert!(peer.poll_transmit(&alice(), &mut out));
    assert_eq!(
        auth.handle(at(3020), packet(&out), &users()),
        Ok(Handled::Used)
    );
    out.clear();
    assert!(auth.poll_transmit(&mut out));
    assert_eq!(
        peer.handle(at(3030), packet(&out), &alice()),
        Ok(Handled::Used)
    );
    assert!(matches!(peer.outcome(), Some(PeerOutcome::Success { .. })));
}

proptest! {
    #[test]
    fn random_bytes_never_panic_parse(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(packet) = PacketRepr::parse_bytes(&bytes) {
            if let Ok(chap) = ChapPacket::parse(&packet) {
                let mut out = Vec::new();
                chap.emit_to_vec(packet.identifier, &mut out).unwrap();
                prop_assert_eq!(out.len(), chap.buffer_len());
                prop_assert_eq!(read(&out), (packet.identifier, chap));
            }
        }
    }

    #[test]
    fn random_packets_never_panic_handle(
        steps in proptest::collection::vec(
            (1u8..6, 0u8..4, proptest::collection::vec(any::<u8>(), 0..24), 0u64..5000),
            0..24,
        ),
    ) {
        let users = users();
        let mut peer = ChapPeer::new(PeerConfig::default(), Instant::ZERO);
        let mut auth = ChapAuthenticator::new(config(), 1, CHALLENGE, Instant::ZERO);
        let mut now = Instant::ZERO;
        for (code, identifier, data, advance) in steps {
            now += core::time::Duration::from_millis(advance);
            let packet = PacketRepr { code, identifier, data: &data };
            let _ = peer.handle(now, packet, &alice());
            let before = auth.outcome().cloned();
            let handled = auth.handle(now, packet, &users);
            // Only a Response with the outstanding Identifier may decide anything.
            if identifier != 1 {
                prop_assert_eq!(auth.outcome(), before.as_ref());
                prop_assert!(handled.is_err() || handled != Ok(Handled::Used));
            }
            peer.handle_timeout(now);
            auth.handle_timeout(now);
            let mut out = Vec::new();
            while peer.poll_transmit(&alice(), &mut out) || auth.poll_transmit(&mut out) {}
            prop_assert!(auth.challenges_sent() <= 10);
        }
    }
}

proptest! {
    /// Over a link that loses what `lost` says, the handshake ends within its bounds, and the
    /// two sides never disagree: a peer that heard Success was accepted.
    #[test]
    fn lossy_link_ends_within_bounds(lost in proptest::collection::vec(any::<bool>(), 0..40)) {
        let users = users();
        let mut lost = lost.into_iter().chain(core::iter::repeat(false));
        let mut peer = ChapPeer::new(PeerConfig::default(), Instant::ZERO);
        let mut auth = ChapAuthenticator::new(config(), 1, CHALLENGE, Instant::ZERO);
        let mut now = Instant::ZERO;
        while peer.outcome().is_none() {
            let mut out = Vec::new();
            while auth.poll_transmit(&mut out) {
                if !lost.next().unwrap_or_default() {
                    prop_assert!(peer.handle(now, packet(&out), &alice()).is_ok());
                }
                out.clear();
            }
            while peer.poll_transmit(&alice(), &mut out) {
                if !lost.next().unwrap_or_default() {
                    prop_assert!(auth.handle(now, packet(&out), &users).is_ok());
                }
                out.clear();
            }
            let next = [peer.poll_timeout(), auth.poll_timeout()].into_iter().flatten().min();
            let Some(next) = next else { break };
            now = next;
            peer.handle_timeout(now);
            auth.handle_timeout(now);
        }
        // 10 Challenges then 10 Responses at most, 3 s apart.
        prop_assert!(now <= at(60_000), "ended at {now}");
        let accepted = auth.outcome().is_some_and(AuthenticatorOutcome::is_success);
        match peer.outcome() {
            Some(PeerOutcome::Success { .. }) => prop_assert!(accepted),
            Some(PeerOutcome::Timeout) => {}
            other => prop_assert!(false, "peer ended {other:?}"),
        }
    }
}
