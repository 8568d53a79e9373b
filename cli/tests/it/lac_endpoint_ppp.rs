//! `l2tpkit lac` against `l2tpkit endpoint`, both as the library runs them for the command
//! line, over UDP on loopback: PAP, CHAP and no authentication, each with IPv4 alone and with
//! IPv6CP too. Every session is IP up with its own address, on both sides' counters.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use l2tpkit::endpoint::{execute_with, AuthName, EndpointArgs, PppArgs};
use l2tpkit::lac::{execute, AuthChoice, LacArgs, PppLevel};

const TUNNELS: usize = 10;
const SESSIONS_PER_TUNNEL: usize = 10;
const SESSIONS: usize = TUNNELS * SESSIONS_PER_TUNNEL;
const PASSWORD: &str = "matrix-pw";

fn endpoint_args(listen: SocketAddrV4) -> EndpointArgs {
    EndpointArgs {
        listen,
        secret: None,
        hidden: false,
        host_name: "ep-matrix".to_string(),
        // Outlasts the LAC's run: setup, a second's hold, teardown.
        duration: Some(Duration::from_secs(10)),
        pcap: None,
        json: false,
        status: None,
        ..EndpointArgs::default()
    }
}

/// The DNS server the endpoint hands out when asked (never configured anywhere).
const DNS: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 53);

/// One combination on 127.0.`net`.1 (endpoint) and .2 (LAC).
fn combination(auth: AuthName, ipv6: bool, net: u8, users: Option<PathBuf>) {
    let what = format!("--auth {auth:?}, ipv6 {ipv6}");
    let ppp = PppArgs {
        auth: Some(auth),
        users,
        pool: "198.19.130.0/23".parse().unwrap(),
        ipv6,
        dns: Some(l2tpkit::args::DnsServers([Some(DNS), None])),
        ..PppArgs::default()
    };
    let args = endpoint_args(SocketAddrV4::new(Ipv4Addr::new(127, 0, net, 1), 0));
    let (tx, rx) = mpsc::channel();
    let endpoint = std::thread::spawn(move || {
        execute_with(&args, &ppp, |addr| {
            let _ = tx.send(addr);
        })
    });
    let target = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the endpoint to listen");
    let choice = match auth {
        AuthName::Pap => AuthChoice::Pap,
        AuthName::Chap => AuthChoice::Chap,
        AuthName::None => AuthChoice::Auto,
    };
    let lac = LacArgs {
        target,
        bind: SocketAddrV4::new(Ipv4Addr::new(127, 0, net, 2), 0),
        tunnels: TUNNELS,
        sessions_per_tunnel: SESSIONS_PER_TUNNEL,
        hold: Duration::from_secs(1),
        echo_rate: 1.0,
        setup_timeout: Some(Duration::from_secs(8)),
        ppp: PppLevel::Ip,
        auth: choice,
        username: "m{n}@example.net".to_string(),
        password: PASSWORD.to_string(),
        ipv6,
        // The IPv6 runs ask for DNS too (RFC 1877), the others do not.
        dns: ipv6,
        ..LacArgs::default()
    };
    let (report, _) = execute(&lac).expect("the LAC ran");
    assert!(report.success(), "{what}: {report}");
    assert_eq!(report.sessions_ip_up, SESSIONS, "{what}: {report}");
    assert_eq!(report.duplicate_addresses, 0, "{what}: {report}");
    assert_eq!(report.ipcp_opened.count as usize, SESSIONS, "{what}");
    let (with_dns, servers) = if ipv6 {
        (SESSIONS, vec![DNS])
    } else {
        (0, vec![])
    };
    assert_eq!(
        report.sessions_with_dns as usize, with_dns,
        "{what}: {report}"
    );
    assert_eq!(report.dns_servers, servers, "{what}: {report}");
    let ipv6cp = if ipv6 { SESSIONS } else { 0 };
    assert_eq!(report.ipv6cp_opened.count as usize, ipv6cp, "{what}");
    let authenticated = if auth == AuthName::None { 0 } else { SESSIONS };
    assert_eq!(
        report.authentication.count as usize, authenticated,
        "{what}"
    );
    let stats = endpoint.join().unwrap().expect("the endpoint ran");
    let ppp = stats.ppp.expect("PPP counters");
    assert_eq!(ppp.sessions_opened as usize, SESSIONS, "{what}: {ppp:?}");
    assert_eq!(ppp.auth_ok as usize, authenticated, "{what}: {ppp:?}");
    assert_eq!(
        (ppp.duplicate_addresses, ppp.pool_exhausted, ppp.pool_in_use),
        (0, 0, 0),
        "{what}: {ppp:?}"
    );
}

#[test]
fn pap_chap_and_none_with_ipv4_and_ipv6_put_every_session_ip_up() {
    let dir = std::env::temp_dir().join(format!("l2tpkit-lac-ep-ppp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let users = dir.join("users");
    let text: String = (1..=SESSIONS)
        .map(|n| format!("m{n}@example.net:{PASSWORD}\n"))
        .collect();
    std::fs::write(&users, text).expect("users file");
    let combinations = [
        (AuthName::Pap, false),
        (AuthName::Pap, true),
        (AuthName::Chap, false),
        (AuthName::Chap, true),
        (AuthName::None, false),
        (AuthName::None, true),
    ];
    // Three at a time: each endpoint runs for its whole --duration.
    for (group, chunk) in combinations.chunks(3).enumerate() {
        std::thread::scope(|s| {
            for (i, &(auth, ipv6)) in chunk.iter().enumerate() {
                let users = (auth != AuthName::None).then(|| users.clone());
                let net = 121 + (group * 3 + i) as u8;
                s.spawn(move || combination(auth, ipv6, net, users));
            }
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
}
