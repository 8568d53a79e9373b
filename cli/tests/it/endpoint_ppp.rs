//! `l2tpkit endpoint --auth chap --users FILE` on a real UDP socket: a client made here from
//! `l2tp::conn` (a LAC's tunnel and calls) and `l2tp::ppp` (a PPP client per call) logs in,
//! gets its addresses, pings the endpoint's PPP address; the counters and the status file say
//! so, and every address is back in the pool once the endpoint has stopped.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use l2tp::conn::tunnel::{Event, TunnelConfig};
use l2tp::conn::tunnels::TunnelSet;
use l2tp::ppp::protocol;
use l2tp::ppp::session::{Phase, PppEvent, PppSession, Received, SessionConfig};
use l2tp::ppp::table::PppTable;
use l2tp::time::Instant;
use l2tpkit::endpoint::{execute_with, AuthName, EndpointArgs, PppArgs};
use reference::endpoint::icmp;

const CALLS: usize = 4;

/// One test's scratch directory: removed when the test passes, kept after a failure.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("l2tpkit-ep-ppp-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn endpoint_args(status: Option<PathBuf>) -> EndpointArgs {
    EndpointArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        secret: None,
        hidden: false,
        host_name: "ep-ppp".to_string(),
        // The client's first LCP Configure-Request leaves with its ICCN and may arrive first
        // (and be dropped): its restart timer (3 s) sends it again.
        duration: Some(Duration::from_secs(6)),
        pcap: None,
        json: false,
        status,
        ..EndpointArgs::default()
    }
}

/// What the client saw.
#[derive(Debug, Default)]
struct Seen {
    opened: usize,
    addresses: Vec<Ipv4Addr>,
    echo_replies: usize,
}

/// Runs a LAC with CALLS PPP clients against `lns` until `done` says the endpoint stopped.
fn client(lns: SocketAddrV4, done: impl Fn() -> bool) -> Seen {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let started = std::time::Instant::now();
    let clock = || Instant::from_micros(started.elapsed().as_micros() as u64);
    let config = TunnelConfig {
        host_name: "test-lac".into(),
        ..TunnelConfig::default()
    };
    let mut set = TunnelSet::new(config, 9, false);
    let ppp_config = Arc::new(SessionConfig::client("s3cret"));
    let mut ppp: PppTable<(u16, u16)> = PppTable::new();
    let mut seen = Seen::default();
    let (mut buf, mut recv, mut out) = (Vec::new(), vec![0u8; 4096], Vec::new());
    set.connect(clock(), lns);
    let mut calls = 0u64;
    while !done() && started.elapsed() < Duration::from_secs(20) {
        let now = clock();
        if let Ok((len, SocketAddr::V4(from))) = socket.recv_from(&mut recv) {
            set.handle(now, from, &recv[..len]);
        }
        if set.poll_timeout().is_some_and(|t| t <= now) {
            set.handle_timeout(now);
        }
        ppp.handle_timeout(now);
        while let Some((tunnel, event)) = set.poll_event() {
            match event {
                Event::TunnelUp { .. } => {
                    for _ in 0..CALLS {
                        set.tunnel_mut(tunnel).and_then(|t| t.open_incoming_call());
                    }
                }
                Event::SessionUp { session_id, .. } => {
                    let name = format!("user{calls}");
                    calls += 1;
                    let session = PppSession::client(Arc::clone(&ppp_config), &name, calls);
                    ppp.insert(now, (tunnel, session_id), session);
                }
                Event::Data { session_id, frame } => {
                    let reply = ppp.handle(now, (tunnel, session_id), &frame);
                    if let Some(Received::Ip { protocol, packet }) = reply {
                        let ok = icmp::checksum(&packet[20..]) == 0 && packet[20] == 0;
                        if protocol == protocol::IPV4 && ok {
                            seen.echo_replies += 1;
                        }
                    }
                }
                Event::SessionDown { session_id, .. } => {
                    ppp.remove((tunnel, session_id));
                }
                _ => {}
            }
        }
        while let Some((key, event)) = ppp.poll_event() {
            let negotiated = ppp.get(key).and_then(|s| s.ipcp());
            if let (PppEvent::Phase(Phase::Open), Some(n)) = (event, negotiated) {
                seen.opened += 1;
                let (ours, server) = (n.local.unwrap(), n.peer.unwrap());
                seen.addresses.push(ours);
                let request = icmp::build_echo(8, ours, server, 7, &[0, 9, 0, 1]);
                let mut framed = Vec::new();
                if ppp
                    .get(key)
                    .is_some_and(|s| s.send_ipv4(&request, &mut framed))
                {
                    set.tunnel_mut(key.0).map(|t| t.send_data(key.1, &framed));
                }
            }
        }
        while let Some((tunnel, session)) = ppp.poll_transmit(&mut out) {
            set.tunnel_mut(tunnel).map(|t| t.send_data(session, &out));
            out.clear();
        }
        while let Some(to) = set.poll_transmit(now, &mut buf) {
            let _ = socket.send_to(&buf, to);
        }
    }
    seen
}

#[test]
fn chap_clients_log_in_get_addresses_and_are_answered_over_udp() {
    let scratch = Scratch::new("chap");
    let users = scratch.file("users");
    let mut text = "# test users\n\n".to_string();
    for n in 0..CALLS {
        text.push_str(&format!("user{n}:s3cret\n"));
    }
    std::fs::write(&users, text).unwrap();
    let status = scratch.file("status.json");
    let args = endpoint_args(Some(status.clone()));
    let ppp = PppArgs {
        auth: Some(AuthName::Chap),
        users: Some(users.clone()),
        ..PppArgs::default()
    };
    let (tx, rx) = mpsc::channel();
    let server = std::thread::spawn(move || {
        execute_with(&args, &ppp, |addr| {
            let _ = tx.send(addr);
        })
    });
    let lns = rx.recv_timeout(Duration::from_secs(10)).expect("listening");
    let seen = client(lns, || server.is_finished());
    let stats = server.join().unwrap().expect("the endpoint ran");
    assert_eq!(seen.opened, CALLS, "{seen:?} {stats:?}");
    assert_eq!(seen.echo_replies, CALLS, "{seen:?}");
    let mut unique = seen.addresses.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), CALLS);
    // The default pool, never its first address (the endpoint's own).
    assert!(seen.addresses.iter().all(|a| a.octets()[..2] == [198, 19]
        && a.octets()[2] >= 128
        && *a != Ipv4Addr::new(198, 19, 128, 1)));
    let ppp = stats.ppp.expect("PPP counters");
    assert_eq!(
        (ppp.sessions_opened, ppp.auth_ok, ppp.auth_failed),
        (4, 4, 0)
    );
    assert_eq!(ppp.icmp_echo_answered, 4);
    // The endpoint stopped with StopCCN: every address is back.
    assert_eq!((ppp.pool_in_use, ppp.sessions_open), (0, 0));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&status).unwrap()).unwrap();
    assert_eq!(json["stats"]["ppp"]["sessions_opened"], 4);
    assert_eq!(json["stats"]["ppp"]["duplicate_addresses"], 0);
    let _ = std::fs::remove_dir_all(users.parent().unwrap());
    let _ = std::fs::remove_dir_all(status.parent().unwrap());
}

#[test]
fn a_bad_users_line_stops_the_endpoint_before_it_binds() {
    let scratch = Scratch::new("bad-users");
    let users = scratch.file("bad-users");
    std::fs::write(&users, "alice:pw\n# ok\nbob\n").unwrap();
    let ppp = PppArgs {
        auth: Some(AuthName::Pap),
        users: Some(users.clone()),
        ..PppArgs::default()
    };
    let err = execute_with(&endpoint_args(None), &ppp, |_| panic!("bound")).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "--users {}: line 3: expected user:password",
            users.display()
        )
    );
    let missing = PppArgs {
        auth: Some(AuthName::Chap),
        ..PppArgs::default()
    };
    let err = execute_with(&endpoint_args(None), &missing, |_| panic!("bound")).unwrap_err();
    assert!(err.to_string().contains("needs --users"), "{err}");
    let _ = std::fs::remove_dir_all(users.parent().unwrap());
}
