//! The reference endpoint as a PPP server, driven in `l2tp::sim` by an in-process LAC: a
//! `TunnelSet` that opens tunnels and calls, and a `PppTable` of `PppSession::client`s riding on
//! its data messages. The endpoint node runs as its runner does (events, tick, send).
//! PAP, CHAP and no authentication; IPv4 and IPv4+IPv6; a wrong password; an exhausted pool;
//! ICMP echo to the endpoint's own PPP address.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use l2tp::conn::reliable::ReliableConfig;
use l2tp::conn::tunnel::{Event, ResultCode, TunnelConfig, TunnelState};
use l2tp::conn::tunnels::TunnelSet;
use l2tp::ppp::lcp::AuthSet;
use l2tp::ppp::protocol;
use l2tp::ppp::session::{Phase, PppEvent, PppSession, Received, SessionConfig};
use l2tp::ppp::table::PppTable;
use l2tp::sim::{Datagram, LinkConditions, Node, Simulator, Stop};
use l2tp::time::Instant;
use netio::runner::TunnelDriver;
use reference::endpoint::icmp;
use reference::endpoint::pool::{Ipv4Cidr, DEFAULT_POOL};
use reference::endpoint::ppp::{PppServer, PppServerConfig, PppStats};
use reference::endpoint::users::Users;
use reference::endpoint::Endpoint;

const LNS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 1701);
const LAC: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 1701);
const PASSWORD: &str = "pw";

/// The endpoint as `l2tpkit endpoint --auth ..` runs it.
struct LnsNode {
    set: TunnelSet,
    role: Endpoint,
    wake: Option<Instant>,
    buf: Vec<u8>,
}

impl LnsNode {
    fn turn(&mut self, now: Instant) {
        while let Some((id, event)) = self.set.poll_event() {
            self.role.on_event(&mut self.set, now, id, event);
        }
        self.wake = self.role.on_tick(&mut self.set, now);
        while let Some((id, event)) = self.set.poll_event() {
            self.role.on_event(&mut self.set, now, id, event);
        }
    }
}

/// One call as the LAC saw it.
#[derive(Debug, Default, Clone)]
struct Call {
    opened: bool,
    address: Option<Ipv4Addr>,
    server: Option<Ipv4Addr>,
    ipv6: bool,
    failure: Option<String>,
    /// The CDN that ended it, when the endpoint sent one.
    cdn: Option<ResultCode>,
    echo_replies: u32,
}

/// The LAC: tunnels, calls on them once they are up, and each call's PPP client.
struct LacNode {
    set: TunnelSet,
    ppp: PppTable<(u16, u16)>,
    config: Arc<SessionConfig>,
    calls_per_tunnel: usize,
    /// Username per call number; the Nth call opened is "user{N}".
    opened: u64,
    calls: BTreeMap<(u16, u16), Call>,
    ping: bool,
    /// False: a LAC that runs no PPP (calls only).
    runs_ppp: bool,
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl LacNode {
    fn turn(&mut self, now: Instant) {
        while let Some((tunnel, event)) = self.set.poll_event() {
            match event {
                Event::TunnelUp { .. } => {
                    for _ in 0..self.calls_per_tunnel {
                        self.set
                            .tunnel_mut(tunnel)
                            .and_then(|t| t.open_incoming_call());
                    }
                }
                Event::SessionUp { session_id, .. } => {
                    let name = format!("user{}", self.opened);
                    let client =
                        PppSession::client(Arc::clone(&self.config), &name, 7 + self.opened);
                    self.opened += 1;
                    if self.runs_ppp {
                        self.ppp.insert(now, (tunnel, session_id), client);
                    }
                    self.calls.insert((tunnel, session_id), Call::default());
                }
                Event::Data { session_id, frame } => {
                    let key = (tunnel, session_id);
                    let reply = self.ppp.handle(now, key, &frame).and_then(|r| match r {
                        Received::Ip { protocol, packet } if protocol == protocol::IPV4 => {
                            Some(packet.to_vec())
                        }
                        _ => None,
                    });
                    if let (Some(packet), Some(call)) = (reply, self.calls.get_mut(&key)) {
                        // An echo reply (type 0) from the endpoint's address to ours.
                        let from = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
                        if packet[20] == 0
                            && Some(from) == call.server
                            && icmp::checksum(&packet[20..]) == 0
                        {
                            call.echo_replies += 1;
                        }
                    }
                }
                Event::SessionDown {
                    session_id,
                    result,
                    by_peer,
                } => {
                    let key = (tunnel, session_id);
                    self.ppp.with(key, |s| s.lower_down(now));
                    self.ppp.remove(key);
                    if let (true, Some(call)) = (by_peer, self.calls.get_mut(&key)) {
                        call.cdn = Some(result);
                    }
                }
                _ => {}
            }
        }
        self.ppp.handle_timeout(now);
        while let Some((key, event)) = self.ppp.poll_event() {
            let Some(call) = self.calls.get_mut(&key) else {
                continue;
            };
            match event {
                PppEvent::IpcpOpened(n) => {
                    call.address = n.local;
                    call.server = n.peer;
                }
                PppEvent::Ipv6cpOpened(_) => call.ipv6 = true,
                PppEvent::Phase(Phase::Open) => {
                    call.opened = true;
                    if let (true, Some(ours), Some(server)) = (self.ping, call.address, call.server)
                    {
                        let request = icmp::build_echo(8, ours, server, 1, &[0, 1, 0, 1, 42]);
                        let mut framed = Vec::new();
                        let sent = self
                            .ppp
                            .get(key)
                            .is_some_and(|s| s.send_ipv4(&request, &mut framed));
                        if sent {
                            self.set
                                .tunnel_mut(key.0)
                                .map(|t| t.send_data(key.1, &framed));
                        }
                    }
                }
                PppEvent::Failed(failure) => call.failure = Some(failure.to_string()),
                _ => {}
            }
        }
        while let Some((tunnel, session)) = self.ppp.poll_transmit(&mut self.out) {
            if let Some(t) = self.set.tunnel_mut(tunnel) {
                t.send_data(session, &self.out);
            }
            self.out.clear();
        }
    }
}

enum Peer {
    Lns(Box<LnsNode>),
    Lac(Box<LacNode>),
}

impl Node for Peer {
    fn handle(&mut self, now: Instant, from: SocketAddrV4, _to: SocketAddrV4, bytes: &[u8]) {
        match self {
            Peer::Lns(n) => {
                n.set.handle(now, from, bytes);
                n.turn(now);
            }
            Peer::Lac(n) => {
                n.set.handle(now, from, bytes);
                n.turn(now);
            }
        }
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Datagram> {
        let (set, buf, from) = match self {
            Peer::Lns(n) => (&mut n.set, &mut n.buf, LNS),
            Peer::Lac(n) => (&mut n.set, &mut n.buf, LAC),
        };
        let to = set.poll_transmit(now, buf)?;
        Some(Datagram {
            from,
            to,
            bytes: buf.clone(),
        })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let (set, other) = match self {
            Peer::Lns(n) => (&n.set, n.wake),
            Peer::Lac(n) => (&n.set, n.ppp.poll_timeout()),
        };
        [set.poll_timeout(), other].into_iter().flatten().min()
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Peer::Lns(n) => {
                n.set.handle_timeout(now);
                n.turn(now);
            }
            Peer::Lac(n) => {
                n.set.handle_timeout(now);
                n.turn(now);
            }
        }
    }
}

struct Setup {
    server: PppServerConfig,
    client_auth: AuthSet,
    ipv6: bool,
    tunnels: usize,
    calls_per_tunnel: usize,
    ping: bool,
    runs_ppp: bool,
    conditions: LinkConditions,
}

impl Setup {
    fn new(auth: AuthSet, tunnels: usize, calls_per_tunnel: usize) -> Setup {
        let users = (0..tunnels * calls_per_tunnel)
            .map(|n| format!("user{n}:{PASSWORD}\n"))
            .collect::<String>();
        Setup {
            server: PppServerConfig {
                auth,
                users: Some(Arc::new(Users::parse(&users, Path::new("test")).unwrap())),
                pool: DEFAULT_POOL,
                ..PppServerConfig::default()
            },
            client_auth: AuthSet::ANY,
            ipv6: false,
            tunnels,
            calls_per_tunnel,
            ping: false,
            runs_ppp: true,
            conditions: LinkConditions::default(),
        }
    }
}

struct Run {
    sim: Simulator<Peer>,
}

impl Run {
    fn lns(&self) -> &LnsNode {
        match self.sim.nodes().next().map(|(_, n)| n) {
            Some(Peer::Lns(n)) => n,
            _ => unreachable!(),
        }
    }

    fn lac(&self) -> &LacNode {
        match self.sim.nodes().nth(1).map(|(_, n)| n) {
            Some(Peer::Lac(n)) => n,
            _ => unreachable!(),
        }
    }

    fn lac_mut(&mut self) -> &mut LacNode {
        let id = self.sim.nodes().nth(1).map(|(id, _)| id).unwrap();
        match self.sim.node_mut(id) {
            Peer::Lac(n) => n,
            _ => unreachable!(),
        }
    }

    fn ppp_stats(&self) -> PppStats {
        self.lns().role.stats().ppp.expect("PPP stats")
    }

    fn run_for(&mut self, seconds: u64) {
        let until = self.sim.now() + Duration::from_secs(seconds);
        let outcome = self.sim.run_until(until);
        assert!(
            matches!(outcome.stop, Stop::Deadline | Stop::Idle),
            "no livelock: {outcome:?}"
        );
    }
}

/// Many retransmissions: the lossy test's control messages must get through.
fn tunnel_config(host_name: &str) -> TunnelConfig {
    TunnelConfig {
        host_name: host_name.into(),
        reliable: ReliableConfig {
            max_retransmits: 20,
            ..ReliableConfig::default()
        },
        ..TunnelConfig::default()
    }
}

fn start(setup: Setup, seed: u64) -> Run {
    let lns = LnsNode {
        set: TunnelSet::new(tunnel_config("l2tpkit-endpoint"), seed, true),
        role: Endpoint::new(seed as u32)
            .with_ppp(PppServer::new(&setup.server, seed).expect("PPP server")),
        wake: None,
        buf: Vec::new(),
    };
    let mut client = SessionConfig::client(PASSWORD);
    client.lcp.accept = setup.client_auth;
    client.ipv6 = setup.ipv6;
    let mut lac = LacNode {
        set: TunnelSet::new(tunnel_config("test-lac"), seed + 1, false),
        ppp: PppTable::new(),
        config: Arc::new(client),
        calls_per_tunnel: setup.calls_per_tunnel,
        opened: 0,
        calls: BTreeMap::new(),
        ping: setup.ping,
        runs_ppp: setup.runs_ppp,
        buf: Vec::new(),
        out: Vec::new(),
    };
    for _ in 0..setup.tunnels {
        lac.set.connect(Instant::ZERO, LNS).expect("a tunnel ID");
    }
    let mut sim = Simulator::new(seed);
    sim.set_default_conditions(setup.conditions);
    sim.add_node(Peer::Lns(Box::new(lns)), &[LNS]);
    sim.add_node(Peer::Lac(Box::new(lac)), &[LAC]);
    Run { sim }
}

/// Every call open, each with its own address from the pool (never the endpoint's own).
fn assert_all_open_with_distinct_addresses(run: &Run, calls: usize, ipv6: bool) {
    let lac = run.lac();
    assert_eq!(lac.calls.len(), calls, "calls up at the L2TP layer");
    let own = run.lns().role.ppp().unwrap().own_address();
    let mut addresses = BTreeSet::new();
    for (key, call) in &lac.calls {
        assert!(call.opened, "{key:?} not open: {call:?}");
        assert_eq!(call.ipv6, ipv6, "{key:?}");
        assert_eq!(call.server, Some(own), "{key:?}");
        let address = call.address.expect("an address");
        assert!(
            DEFAULT_POOL.contains(address) && address != own,
            "{address}"
        );
        addresses.insert(address);
    }
    assert_eq!(addresses.len(), calls, "an address given twice");
    let stats = run.ppp_stats();
    assert_eq!(stats.sessions_open, calls as u64);
    assert_eq!(stats.sessions_opened, calls as u64);
    assert_eq!(stats.pool_in_use, calls as u64);
    assert_eq!(stats.duplicate_addresses, 0);
    assert_eq!(stats.malformed, 0);
}

#[test]
fn chap_1000_sessions_open_with_distinct_addresses_answer_icmp_and_return_them() {
    let mut setup = Setup::new(AuthSet::CHAP_MD5, 50, 20);
    setup.ping = true;
    let mut run = start(setup, 1);
    run.run_for(20);
    assert_all_open_with_distinct_addresses(&run, 1000, false);
    let stats = run.ppp_stats();
    assert_eq!(stats.auth_ok, 1000);
    assert_eq!(stats.icmp_echo_answered, 1000);
    assert!(run.lac().calls.values().all(|c| c.echo_replies == 1));
    // The LAC hangs up every call: every address goes back.
    let now = run.sim.now();
    let lac = run.lac_mut();
    let keys: Vec<_> = lac.calls.keys().copied().collect();
    for (tunnel, session) in keys {
        if let Some(t) = lac.set.tunnel_mut(tunnel) {
            t.close_session(session, ResultCode::new(ResultCode::ADMIN_CALL));
        }
    }
    lac.turn(now);
    run.run_for(5);
    let stats = run.ppp_stats();
    assert_eq!((stats.pool_in_use, stats.sessions_open), (0, 0));
    assert_eq!(stats.pool_free, 32765);
    assert_eq!(run.lns().role.stats.sessions_closed, 1000);
}

#[test]
fn pap_with_ipv6_opens_both_ncps() {
    let mut setup = Setup::new(AuthSet::PAP, 4, 5);
    setup.server.ipv6 = true;
    setup.ipv6 = true;
    let mut run = start(setup, 2);
    run.run_for(20);
    assert_all_open_with_distinct_addresses(&run, 20, true);
    assert_eq!(run.ppp_stats().auth_ok, 20);
}

#[test]
fn no_authentication_opens_ipcp_directly() {
    let mut setup = Setup::new(AuthSet::NONE, 2, 5);
    setup.server.users = None;
    setup.client_auth = AuthSet::NONE;
    let mut run = start(setup, 3);
    run.run_for(20);
    assert_all_open_with_distinct_addresses(&run, 10, false);
    assert_eq!(run.ppp_stats().auth_ok, 0);
}

/// 20% loss and reordering on every link: the PPP and L2TP retransmissions still open every
/// session.
#[test]
fn chap_sessions_open_through_a_lossy_link() {
    let mut setup = Setup::new(AuthSet::CHAP_MD5, 3, 5);
    setup.conditions = LinkConditions {
        loss: 0.2,
        reorder: 0.2,
        delay: Duration::from_millis(5),
        ..LinkConditions::default()
    };
    let mut run = start(setup, 4);
    run.run_for(120);
    assert_all_open_with_distinct_addresses(&run, 15, false);
}

/// user3's secret differs: its call ends with the endpoint's CDN (result 3, the failure as the
/// message) after the CHAP Failure and LCP Terminate, its address goes back, the tunnel and
/// every other call live on.
#[test]
fn a_wrong_password_ends_the_call_with_a_cdn_while_the_tunnel_lives() {
    for auth in [AuthSet::CHAP_MD5, AuthSet::PAP] {
        let mut setup = Setup::new(auth, 1, 6);
        let users = (0..6)
            .map(|n| format!("user{n}:{}\n", if n == 3 { "other" } else { PASSWORD }))
            .collect::<String>();
        setup.server.users = Some(Arc::new(Users::parse(&users, Path::new("t")).unwrap()));
        let mut run = start(setup, 5);
        run.run_for(30);
        let lac = run.lac();
        let failed: Vec<_> = lac.calls.values().filter(|c| !c.opened).collect();
        assert_eq!(failed.len(), 1, "{auth:?}: {:?}", lac.calls);
        let call = failed[0];
        let cdn = call.cdn.as_ref().expect("a CDN from the endpoint");
        assert_eq!(cdn.result, 3, "{cdn}");
        let message = cdn.message.as_deref().unwrap_or_default();
        assert!(message.contains("authentication rejected"), "{message}");
        assert!(
            call.failure
                .as_deref()
                .is_some_and(|f| f.contains("rejected")),
            "{call:?}"
        );
        let tunnel = lac.set.tunnel_ids().next().unwrap();
        assert_eq!(
            lac.set.tunnel(tunnel).unwrap().state(),
            TunnelState::Established
        );
        assert_eq!(lac.calls.values().filter(|c| c.opened).count(), 5);
        let stats = run.ppp_stats();
        assert_eq!((stats.auth_ok, stats.auth_failed), (5, 1), "{auth:?}");
        assert_eq!((stats.failed_auth, stats.cdn_sent), (1, 1));
        assert_eq!((stats.pool_in_use, stats.sessions_open), (5, 5));
    }
}

/// A pool of 5 addresses (a /29 less the endpoint's own) for 8 calls: 5 open, 3 get a CDN
/// with result 4; none is given an address twice.
#[test]
fn an_exhausted_pool_refuses_calls_with_a_cdn() {
    let mut setup = Setup::new(AuthSet::CHAP_MD5, 1, 8);
    setup.server.pool = "198.19.200.0/29".parse::<Ipv4Cidr>().unwrap();
    let mut run = start(setup, 6);
    run.run_for(20);
    let lac = run.lac();
    let opened = lac.calls.values().filter(|c| c.opened).count();
    let refused: Vec<_> = lac.calls.values().filter_map(|c| c.cdn.as_ref()).collect();
    assert_eq!((opened, refused.len()), (5, 3), "{:?}", lac.calls);
    assert!(refused.iter().all(|cdn| cdn.result == 4));
    let stats = run.ppp_stats();
    assert_eq!(
        (stats.pool_exhausted, stats.pool_in_use, stats.pool_free),
        (3, 5, 0)
    );
    assert_eq!(stats.duplicate_addresses, 0);
}

/// A LAC that runs no PPP (today's load tests): the endpoint's LCP gives up after
/// Max-Configure and ends the call with a CDN; the address goes back.
#[test]
fn a_silent_peer_times_out_in_lcp_and_gets_a_cdn() {
    let mut setup = Setup::new(AuthSet::CHAP_MD5, 1, 2);
    setup.runs_ppp = false;
    let mut run = start(setup, 8);
    run.run_for(60);
    let stats = run.ppp_stats();
    assert_eq!(
        (stats.failed_lcp, stats.cdn_sent, stats.pool_in_use),
        (2, 2, 0)
    );
    let lac = run.lac();
    assert!(lac
        .calls
        .values()
        .all(|c| c.cdn.as_ref().is_some_and(|cdn| cdn.result == 3
            && cdn
                .message
                .as_deref()
                .is_some_and(|m| m.contains("LCP timeout")))));
}
