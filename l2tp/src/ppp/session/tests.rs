use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::*;
use crate::ppp::lcp::AuthSet;

const POOL_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 19, 128, 5);

fn users() -> Arc<dyn Secrets + Send + Sync> {
    let mut users: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    users.insert(b"user1@example.net".to_vec(), b"wonderland".to_vec());
    Arc::new(users)
}

fn pair(auth: AuthSet, password: &str, ipv6: bool) -> (PppSession, PppSession) {
    let mut client = SessionConfig::client(password);
    client.ipv6 = ipv6;
    let mut server = SessionConfig::server(auth, Some(users()));
    server.local_address = Some(Ipv4Addr::new(198, 19, 128, 1));
    server.ipv6 = ipv6;
    (
        PppSession::client(Arc::new(client), "user1@example.net", 1),
        PppSession::server(Arc::new(server), POOL_ADDRESS, 2),
    )
}

/// Both sides' events, in order.
#[derive(Debug, Default)]
struct Seen {
    client: Vec<PppEvent>,
    server: Vec<PppEvent>,
}

/// A link between the two sessions that loses `loss` of the frames and swaps neighbours with
/// the same chance, in virtual time; runs until both are settled or `limit` has passed.
/// Returns the events and the virtual time it took.
fn run(
    client: &mut PppSession,
    server: &mut PppSession,
    seed: u64,
    loss: f64,
    limit: Duration,
) -> (Seen, Duration) {
    let mut rng = seed;
    let mut chance = move || (splitmix64(&mut rng) >> 11) as f64 / (1u64 << 53) as f64;
    let mut now = Instant::ZERO;
    let end = now + limit;
    let mut seen = Seen::default();
    client.start(now);
    server.start(now);
    loop {
        let mut moved = false;
        for to_server in [true, false] {
            let (from, to) = if to_server {
                (&mut *client, &mut *server)
            } else {
                (&mut *server, &mut *client)
            };
            let mut frames = Vec::new();
            let mut out = Vec::new();
            while from.poll_transmit(&mut out) {
                frames.push(std::mem::take(&mut out));
            }
            // Reordering: neighbours swap places.
            for i in 1..frames.len() {
                if chance() < loss {
                    frames.swap(i - 1, i);
                }
            }
            for frame in frames {
                moved = true;
                if chance() >= loss {
                    to.handle(now, &frame);
                }
            }
        }
        while let Some(e) = client.poll_event() {
            seen.client.push(e);
        }
        while let Some(e) = server.poll_event() {
            seen.server.push(e);
        }
        let settled = |s: &PppSession| s.is_open() || s.phase() == Phase::Dead;
        if !moved && settled(client) && settled(server) {
            break;
        }
        if moved {
            continue;
        }
        let next = [client.poll_timeout(), server.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next else {
            panic!(
                "hung at {now:?}: client {:?}, server {:?}, no timer pending",
                client.phase(),
                server.phase()
            );
        };
        if next > end {
            break;
        }
        now = next.max(now);
        client.handle_timeout(now);
        server.handle_timeout(now);
    }
    (seen, now.saturating_duration_since(Instant::ZERO))
}

fn phases(events: &[PppEvent]) -> Vec<Phase> {
    events
        .iter()
        .filter_map(|e| match e {
            PppEvent::Phase(p) => Some(*p),
            _ => None,
        })
        .collect()
}

#[test]
fn chap_subscriber_gets_the_pool_address() {
    let (mut client, mut server) = pair(AuthSet::CHAP_MD5, "wonderland", false);
    let (seen, _) = run(&mut client, &mut server, 7, 0.0, Duration::from_secs(60));
    assert!(client.is_open() && server.is_open(), "{seen:?}");
    assert_eq!(client.ipcp().and_then(|n| n.local), Some(POOL_ADDRESS));
    assert_eq!(server.ipcp().and_then(|n| n.peer), Some(POOL_ADDRESS));
    let order = [
        Phase::Establish,
        Phase::Authenticate,
        Phase::Network,
        Phase::Open,
    ];
    assert_eq!(phases(&seen.client), order);
    assert_eq!(phases(&seen.server), order);
    assert!(seen.server.contains(&PppEvent::Authenticated {
        text: "user1@example.net".into()
    }));
}

#[test]
fn pap_subscriber_opens_too() {
    let (mut client, mut server) = pair(AuthSet::PAP, "wonderland", false);
    run(&mut client, &mut server, 7, 0.0, Duration::from_secs(60));
    assert!(client.is_open() && server.is_open());
    assert_eq!(client.ipcp().and_then(|n| n.local), Some(POOL_ADDRESS));
}

#[test]
fn without_authentication_there_is_no_authenticate_phase() {
    let (mut client, mut server) = pair(AuthSet::NONE, "", false);
    let (seen, _) = run(&mut client, &mut server, 7, 0.0, Duration::from_secs(60));
    assert!(client.is_open() && server.is_open());
    assert_eq!(
        phases(&seen.client),
        [Phase::Establish, Phase::Network, Phase::Open]
    );
}

#[test]
fn ipv6cp_opens_beside_ipcp() {
    let (mut client, mut server) = pair(AuthSet::CHAP_MD5, "wonderland", true);
    let (seen, _) = run(&mut client, &mut server, 7, 0.0, Duration::from_secs(60));
    assert!(client.is_open() && server.is_open());
    let v6 = client.ipv6cp().expect("IPv6CP opened");
    assert!(v6.local.is_some() && v6.peer.is_some() && v6.local != v6.peer);
    assert!(seen
        .client
        .iter()
        .any(|e| matches!(e, PppEvent::Ipv6cpOpened(_))));
}

#[test]
fn a_peer_without_ipv6_rejects_ipv6cp_and_the_session_opens_on_ipv4() {
    let (mut client, _) = pair(AuthSet::CHAP_MD5, "wonderland", true);
    let (_, mut server) = pair(AuthSet::CHAP_MD5, "wonderland", false);
    run(&mut client, &mut server, 7, 0.0, Duration::from_secs(60));
    assert!(client.is_open() && server.is_open());
    assert_eq!(client.ipv6cp(), None);
}

#[test]
fn a_wrong_password_fails_in_authentication_on_both_sides() {
    for auth in [AuthSet::CHAP_MD5, AuthSet::PAP] {
        let (mut client, mut server) = pair(auth, "not the password", false);
        let (seen, _) = run(&mut client, &mut server, 7, 0.0, Duration::from_secs(60));
        let failure = seen
            .client
            .iter()
            .find_map(|e| match e {
                PppEvent::Failed(f) => Some(f.clone()),
                _ => None,
            })
            .expect("the client failed");
        assert_eq!(
            failure,
            PppFailure::AuthRejected {
                message: "Authentication failed".into()
            }
        );
        assert_eq!(failure.phase(), Phase::Authenticate);
        assert!(seen
            .server
            .iter()
            .any(|e| matches!(e, PppEvent::Failed(PppFailure::AuthRejected { .. }))));
        assert_eq!((client.phase(), server.phase()), (Phase::Dead, Phase::Dead));
        assert_eq!(client.ipcp(), None);
    }
}

#[test]
fn closing_an_open_session_is_not_a_failure() {
    let (mut client, mut server) = pair(AuthSet::CHAP_MD5, "wonderland", false);
    run(&mut client, &mut server, 7, 0.0, Duration::from_secs(60));
    client.close(Instant::from_micros(1));
    let (seen, _) = run(&mut client, &mut server, 7, 0.0, Duration::from_secs(60));
    assert_eq!((client.phase(), server.phase()), (Phase::Dead, Phase::Dead));
    assert!(!seen.client.iter().any(|e| matches!(e, PppEvent::Failed(_))));
    // The server heard a Terminate-Request: the peer ended it.
    assert!(seen.server.iter().any(|e| matches!(
        e,
        PppEvent::Failed(PppFailure::TerminatedByPeer {
            phase: Phase::Open,
            ..
        })
    )));
}

#[test]
fn ip_waits_for_ipcp_and_unknown_protocols_are_rejected_once_lcp_is_open() {
    let (mut client, mut server) = pair(AuthSet::CHAP_MD5, "wonderland", false);
    let ipv4 = [0x00, 0x21, 0x45, 0, 0, 20];
    client.start(Instant::ZERO);
    assert_eq!(client.handle(Instant::ZERO, &ipv4), Received::Discarded);
    // Before LCP opens, an unknown protocol is dropped without a word.
    assert_eq!(
        client.handle(Instant::ZERO, &[0xff, 0x03, 0x80, 0x2b, 1, 2]),
        Received::Discarded
    );
    run(&mut client, &mut server, 7, 0.0, Duration::from_secs(60));
    assert_eq!(
        client.handle(Instant::ZERO, &ipv4),
        Received::Ip {
            protocol: protocol::IPV4,
            packet: &ipv4[2..]
        }
    );
    assert_eq!(
        client.handle(Instant::ZERO, &[0xff, 0x03, 0x80, 0x2b, 1, 2]),
        Received::ProtocolRejected(0x802b)
    );
    let mut out = Vec::new();
    assert!(client.poll_transmit(&mut out));
    // LCP Protocol-Reject (code 8) carrying the rejected protocol and its information.
    assert_eq!(&out[..5], &[0xff, 0x03, 0xc0, 0x21, 8]);
    assert_eq!(&out[8..], &[0x80, 0x2b, 1, 2]);
    assert!(matches!(
        client.handle(Instant::ZERO, &[0xff, 0x03, 0xc0, 0x21, 1, 1, 0, 9]),
        Received::Malformed(_)
    ));
}

#[test]
fn a_live_session_is_small() {
    let (client, server) = pair(AuthSet::CHAP_MD5, "wonderland", false);
    let size = core::mem::size_of::<PppSession>();
    println!("PppSession: {size} bytes");
    // The budget is 1 KiB a session on top of its tunnel, heap included.
    assert!(size <= 768, "{size}");
    drop((client, server));
}

/// The acceptance's loss run: 1000 seeds, 20% loss and reordering both ways. Every session
/// opens on both sides or ends by the RFC's counters; none hangs with no timer pending (`run`
/// panics then), and none runs past the bound the counters give.
#[test]
fn a_thousand_lossy_links_open_or_fail_by_the_counters() {
    let mut opened = 0;
    let mut failed = BTreeMap::new();
    let mut slowest = Duration::ZERO;
    for seed in 0..1000 {
        let (mut client, mut server) = pair(AuthSet::CHAP_MD5, "wonderland", false);
        let (seen, took) = run(
            &mut client,
            &mut server,
            seed,
            0.2,
            Duration::from_secs(3600),
        );
        slowest = slowest.max(took);
        if client.is_open() && server.is_open() {
            assert_eq!(client.ipcp().and_then(|n| n.local), Some(POOL_ADDRESS));
            opened += 1;
            continue;
        }
        let failure = seen
            .client
            .iter()
            .chain(&seen.server)
            .find_map(|e| match e {
                PppEvent::Failed(f) => Some(f.to_string()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("seed {seed}: neither open nor failed: {seen:?}"));
        *failed.entry(failure).or_insert(0) += 1;
    }
    println!("opened {opened}/1000, failed {failed:?}, slowest {slowest:?}");
    // Loss alone may only end a session through the counters (Max-Configure, Max-Failure,
    // the authentication retries), never by a verdict or a refusal.
    for failure in failed.keys() {
        assert!(
            failure.ends_with("timeout") || failure.ends_with("NAK loop"),
            "{failure}"
        );
    }
    assert!(opened > 0);
    assert!(slowest < Duration::from_secs(3600), "{slowest:?}");
}

/// Found by the ppp fuzz target: a catastrophic Code-Reject on IPCP stopped it with no timer
/// while the session waited in Network for ever. Now the link ends, and says why.
#[test]
fn an_ipcp_that_stops_ends_the_session_instead_of_hanging() {
    let (mut client, mut server) = pair(AuthSet::NONE, "", false);
    client.start(Instant::ZERO);
    server.start(Instant::ZERO);
    // Up to the Network phase on both sides, lossless.
    let mut out = Vec::new();
    for _ in 0..4 {
        while server.poll_transmit(&mut out) {
            client.handle(Instant::ZERO, &out);
            out.clear();
        }
        while client.poll_transmit(&mut out) {
            if out[2..4] != protocol::IPCP.to_be_bytes() {
                server.handle(Instant::ZERO, &out);
            }
            out.clear();
        }
    }
    assert_eq!(client.phase(), Phase::Network);
    // IPCP Code-Reject of a Configure-Request (code 1): catastrophic (RXJ-).
    client.handle(
        Instant::ZERO,
        &[0xff, 0x03, 0x80, 0x21, 7, 9, 0, 8, 1, 1, 0, 4],
    );
    let mut seen = Vec::new();
    while let Some(e) = client.poll_event() {
        seen.push(e);
    }
    assert!(
        seen.contains(&PppEvent::Failed(PppFailure::Rejected { protocol: "IPCP" })),
        "{seen:?}"
    );
    assert_eq!(client.phase(), Phase::Terminate);
    assert!(client.poll_timeout().is_some());
}

/// A frame's protocol and code, to pick frames out of a flight.
fn kind(frame: &[u8]) -> (u16, u8) {
    let (repr, info) = FrameRepr::parse(frame).expect("a frame");
    let packet = PacketRepr::parse_bytes(info).expect("a control packet");
    (repr.protocol, packet.code)
}

fn flight(from: &mut PppSession) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut out = Vec::new();
    while from.poll_transmit(&mut out) {
        frames.push(std::mem::take(&mut out));
    }
    frames
}

fn take(frames: &mut Vec<Vec<u8>>, protocol: u16, code: u8) -> Vec<u8> {
    let at = frames
        .iter()
        .position(|f| kind(f) == (protocol, code))
        .unwrap_or_else(|| panic!("no 0x{protocol:04x} code {code} in {frames:?}"));
    frames.remove(at)
}

/// Found in the endpoint's lossy simulation: the server renegotiates LCP (a late duplicate of
/// the client's first Configure-Request reached it in Opened) and, Opened again before the
/// client, challenges at once; its Challenge overtakes its Configure-Ack. The client's CHAP
/// peer of the old LCP round answered it, then LCP's Up replaced that peer with a fresh one,
/// which dropped the Success as stale; the server, satisfied, never challenged again and the
/// client gave up after 30 s ("authentication timeout") while the server waited in IPCP.
/// Authentication belongs to LCP's Opened state (RFC 1661 §3.2, §3.5): the Challenge that
/// comes before it is discarded and the server's restart timer sends it again.
#[test]
fn a_challenge_before_a_renegotiated_lcp_opens_is_left_for_the_retransmission() {
    use crate::ppp::chap::code as chap;
    const CONFIGURE_REQUEST: u8 = 1;
    const CONFIGURE_ACK: u8 = 2;
    let (mut client, mut server) = pair(AuthSet::CHAP_MD5, "wonderland", false);
    let now = Instant::ZERO;
    client.start(now);
    server.start(now);
    let first_request = take(&mut flight(&mut client), protocol::LCP, CONFIGURE_REQUEST);
    server.handle(now, &first_request);
    for frame in flight(&mut server) {
        client.handle(now, &frame);
    }
    // Both Opened; the server's first Challenge is lost.
    for frame in flight(&mut client) {
        server.handle(now, &frame);
    }
    assert_eq!(client.phase(), Phase::Authenticate);
    assert_eq!(server.phase(), Phase::Authenticate);
    take(&mut flight(&mut server), protocol::CHAP, chap::CHALLENGE);
    // The duplicate Configure-Request: the server renegotiates, and so does the client.
    server.handle(now, &first_request);
    for frame in flight(&mut server) {
        client.handle(now, &frame);
    }
    assert_eq!(client.phase(), Phase::Terminate);
    for frame in flight(&mut client) {
        server.handle(now, &frame);
    }
    assert_eq!(server.phase(), Phase::Authenticate);
    let mut frames = flight(&mut server);
    let challenge = take(&mut frames, protocol::CHAP, chap::CHALLENGE);
    let ack = take(&mut frames, protocol::LCP, CONFIGURE_ACK);
    assert!(frames.is_empty(), "{frames:?}");
    // The Challenge overtakes the Configure-Ack that opens the client's LCP.
    assert_eq!(client.handle(now, &challenge), Received::Discarded);
    assert!(
        flight(&mut client).is_empty(),
        "no Response before LCP opens"
    );
    client.handle(now, &ack);
    assert_eq!(client.phase(), Phase::Authenticate);
    let (seen, took) = run(&mut client, &mut server, 7, 0.0, Duration::from_secs(60));
    assert!(client.is_open() && server.is_open(), "{seen:?}");
    assert_eq!(client.ipcp().and_then(|n| n.local), Some(POOL_ADDRESS));
    // One restart period: the server's second Challenge.
    assert_eq!(took, Duration::from_secs(3));
}

#[test]
fn max_configure_sets_every_count_and_the_waits_in_restart_periods() {
    let ten = SessionConfig::client("pw").with_max_configure(10);
    let base = SessionConfig::client("pw");
    // 10 is RFC 1661's default: nothing changes.
    assert_eq!(ten.fsm, base.fsm);
    assert_eq!(ten.peer, base.peer);
    assert_eq!(*ten.authenticator, *base.authenticator);
    let twenty =
        SessionConfig::server(crate::ppp::lcp::AuthSet::CHAP_MD5, None).with_max_configure(20);
    assert_eq!(twenty.fsm.max_configure, 20);
    assert_eq!(twenty.peer.max_transmit, 20);
    assert_eq!(twenty.peer.wait, std::time::Duration::from_secs(60));
    assert_eq!(twenty.authenticator.max_transmit, 20);
    assert_eq!(
        twenty.authenticator.wait,
        Some(std::time::Duration::from_secs(60))
    );
    assert_eq!(
        SessionConfig::client("pw")
            .with_max_configure(0)
            .fsm
            .max_configure,
        1
    );
}

/// The lab's impairment in virtual time (`netem loss 20% reorder 25% delay 10ms`): a fifth of
/// the frames lost each way, three quarters of the rest delayed 10 ms and the others sent at
/// once, so that a frame overtakes the ones before it. The server (the LNS) starts at 0, the
/// client (the LAC) when the ICCN's acknowledgement would come, up to 8 s later, or at the
/// server's first frame. Runs until both are settled; the failure, if any.
fn netem_run(seed: u64, max_configure: u8) -> Option<String> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let client = SessionConfig::client("wonderland").with_max_configure(max_configure);
    let mut server =
        SessionConfig::server(AuthSet::CHAP_MD5, Some(users())).with_max_configure(max_configure);
    server.local_address = Some(Ipv4Addr::new(198, 19, 128, 1));
    let mut client = PppSession::client(Arc::new(client), "user1@example.net", 2 * seed + 1);
    let mut server = PppSession::server(Arc::new(server), POOL_ADDRESS, 2 * seed + 2);
    let mut rng = seed ^ 0x5555;
    let mut chance = move || (splitmix64(&mut rng) >> 11) as f64 / (1u64 << 53) as f64;
    let mut now = Instant::ZERO;
    let client_start = now + Duration::from_millis((chance() * 8000.0) as u64);
    let mut client_started = false;
    /// Arrival, order sent, whether to the server, the frame.
    type InFlight = Reverse<(Instant, u64, bool, Vec<u8>)>;
    let mut link: BinaryHeap<InFlight> = BinaryHeap::new();
    let mut sent = 0u64;
    let mut seen = Seen::default();
    server.start(now);
    let end = now + Duration::from_secs(600);
    loop {
        for to_server in [true, false] {
            let from = if to_server { &mut client } else { &mut server };
            let mut out = Vec::new();
            while from.poll_transmit(&mut out) {
                let frame = std::mem::take(&mut out);
                if chance() < 0.2 {
                    continue;
                }
                let delay = if chance() < 0.25 { 0 } else { 10 };
                sent += 1;
                link.push(Reverse((
                    now + Duration::from_millis(delay),
                    sent,
                    to_server,
                    frame,
                )));
            }
        }
        seen.client
            .extend(std::iter::from_fn(|| client.poll_event()));
        seen.server
            .extend(std::iter::from_fn(|| server.poll_event()));
        let settled = |s: &PppSession| s.is_open() || s.phase() == Phase::Dead;
        if link.is_empty() && settled(&client) && settled(&server) {
            break;
        }
        let start_due = (!client_started).then_some(client_start);
        let arrival = link.peek().map(|Reverse(next)| next.0);
        let Some(next) = [
            client.poll_timeout(),
            server.poll_timeout(),
            start_due,
            arrival,
        ]
        .into_iter()
        .flatten()
        .min() else {
            break;
        };
        if next > end {
            break;
        }
        now = next.max(now);
        if arrival == Some(next) {
            let Some(Reverse((_, _, to_server, frame))) = link.pop() else {
                break;
            };
            if to_server {
                server.handle(now, &frame);
            } else {
                if !client_started {
                    client_started = true;
                    client.start(now);
                }
                client.handle(now, &frame);
            }
        } else if start_due == Some(next) {
            client_started = true;
            client.start(now);
        } else {
            client.handle_timeout(now);
            server.handle_timeout(now);
        }
    }
    if client.is_open() && server.is_open() {
        return None;
    }
    let failure = |side: &str, events: &[PppEvent]| {
        events.iter().find_map(|e| match e {
            PppEvent::Failed(f) => Some(format!("{side}: {f}")),
            _ => None,
        })
    };
    Some(
        failure("client", &seen.client)
            .or_else(|| failure("server", &seen.server))
            .unwrap_or_else(|| format!("neither open nor failed: {seen:?}")),
    )
}

/// Issue 16's acceptance run, PPP alone: with Max-Configure 20 (what `--max-retransmits 10`
/// gives) a hundred thousand sessions over the lab's impairment all open. Before, 4 of them
/// timed out in CHAP at the client (1 in 2000 in a CI run of the lab): after an LCP
/// renegotiation the server's Challenge of the earlier round arrived after the new one, the
/// client answered it and dropped the Success to the new one as stale.
#[test]
fn a_hundred_thousand_sessions_over_the_labs_impairment_all_open() {
    let failed: BTreeMap<u64, String> = (0..100_000)
        .filter_map(|seed| netem_run(seed, 20).map(|failure| (seed, failure)))
        .collect();
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
}
