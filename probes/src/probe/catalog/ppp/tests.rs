//! The PPP family inside `l2tp::sim` against an LNS whose sessions run `PppSession::server`
//! from a `PppTable` (all pass), against one with no PPP (none applies), and against ones
//! broken on purpose, one rule each (that probe fails).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use l2tp::conn::tunnel::{Event, ResultCode, TunnelConfig};
use l2tp::conn::tunnels::TunnelSet;
use l2tp::ppp::chap::{self, ChapPacket};
use l2tp::ppp::frame::{protocol, Options, PacketRepr};
use l2tp::ppp::fsm::code;
use l2tp::ppp::lcp::{lcp_code, AuthSet};
use l2tp::ppp::session::{PppSession, SessionConfig};
use l2tp::ppp::table::PppTable;
use l2tp::sim::{Datagram, Node, Simulator};
use l2tp::time::Instant;

use super::{Pkt, PROBES, UNKNOWN_OPTION};
use crate::probe::catalog::sim_lns::{self, LNS};
use crate::probe::transport::SimNetwork;
use crate::probe::{run_one_on, ProbeResult, Target, VerdictKind};

const USER: &str = "alice";
const PASSWORD: &str = "wonderland";

/// Ways the simulated LNS breaks one rule (all off: a correct LNS).
#[derive(Debug, Clone, Copy, Default)]
struct Quirks {
    /// A CHAP Response with a stale Identifier but a Value right for it is taken.
    stale_chap_accepted: bool,
    /// LCP options of unknown type are dropped from requests before judging (so acked).
    unknown_option_acked: bool,
    /// A Magic-Number equal to the LNS's own is dropped from requests before judging.
    own_magic_acked: bool,
    echo_ignored: bool,
    /// Every subscriber gets the same address.
    one_address: bool,
    /// A refused password gets no CHAP Failure: the call ends with a CDN at once (as
    /// l2tpns does).
    cdn_on_failure: bool,
}

type Key = (u16, u16);

struct PppLns {
    set: TunnelSet,
    ppp: PppTable<Key>,
    config: Arc<SessionConfig>,
    users: HashMap<Vec<u8>, Vec<u8>>,
    quirks: Quirks,
    handed_out: u32,
    /// The last CHAP Challenge (Identifier, Value) and LCP Magic-Number each session sent.
    challenges: HashMap<Key, (u8, Vec<u8>)>,
    magics: HashMap<Key, u32>,
    out: Vec<u8>,
}

impl PppLns {
    fn new(auth: AuthSet, quirks: Quirks) -> PppLns {
        let users: HashMap<Vec<u8>, Vec<u8>> =
            HashMap::from([(USER.as_bytes().to_vec(), PASSWORD.as_bytes().to_vec())]);
        let config = SessionConfig::server(auth, Some(Arc::new(users.clone())));
        PppLns {
            set: TunnelSet::new(TunnelConfig::default(), 3, true),
            ppp: PppTable::new(),
            config: Arc::new(config),
            users,
            quirks,
            handed_out: 0,
            challenges: HashMap::new(),
            magics: HashMap::new(),
            out: Vec::new(),
        }
    }

    fn turn(&mut self, now: Instant) {
        while let Some((tid, event)) = self.set.poll_event() {
            match event {
                Event::SessionUp { session_id, .. } => {
                    if !self.quirks.one_address {
                        self.handed_out += 1;
                    }
                    let address =
                        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 64, 0, 1)) + self.handed_out);
                    let seed = u64::from(tid) << 16 | u64::from(session_id);
                    let session = PppSession::server(Arc::clone(&self.config), address, seed);
                    self.ppp.insert(now, (tid, session_id), session);
                }
                Event::Data { session_id, frame } => {
                    let key = (tid, session_id);
                    if let Some(frame) = self.quirk_in(key, frame) {
                        self.ppp.handle(now, key, &frame);
                    }
                }
                Event::SessionDown { session_id, .. } => {
                    self.ppp.remove((tid, session_id));
                }
                Event::TunnelDown { .. } | Event::Closed => {
                    let keys: Vec<Key> = self.ppp.keys().filter(|k| k.0 == tid).collect();
                    for key in keys {
                        self.ppp.remove(key);
                    }
                }
                _ => {}
            }
        }
        self.flush();
        while self.ppp.poll_event().is_some() {}
    }

    fn flush(&mut self) {
        self.out.clear();
        while let Some(key) = self.ppp.poll_transmit(&mut self.out) {
            if let Some(pkt) = Pkt::parse(&self.out) {
                if pkt.is(protocol::LCP, code::CONFIGURE_REQUEST) {
                    if let Some(magic) = pkt.magic() {
                        self.magics.insert(key, magic);
                    }
                }
                if self.quirks.cdn_on_failure && pkt.is(protocol::CHAP, chap::code::FAILURE) {
                    // l2tpns: no CHAP Failure, the call ends at once.
                    if let Some(tunnel) = self.set.tunnel_mut(key.0) {
                        tunnel.close_session(key.1, ResultCode::new(3));
                    }
                    self.ppp.remove(key);
                    self.out.clear();
                    continue;
                }
                if pkt.is(protocol::CHAP, chap::code::CHALLENGE) {
                    let value = pkt.data.get(1..17).unwrap_or_default().to_vec();
                    self.challenges.insert(key, (pkt.id, value));
                }
            }
            if let Some(tunnel) = self.set.tunnel_mut(key.0) {
                tunnel.send_data(key.1, &self.out);
            }
            self.out.clear();
        }
    }

    /// The frame as the LNS's PPP gets it, after the quirks; `None` when dropped.
    fn quirk_in(&self, key: Key, frame: Vec<u8>) -> Option<Vec<u8>> {
        let Some(mut pkt) = Pkt::parse(&frame) else {
            return Some(frame);
        };
        let q = self.quirks;
        if q.echo_ignored && pkt.is(protocol::LCP, lcp_code::ECHO_REQUEST) {
            return None;
        }
        if pkt.is(protocol::LCP, code::CONFIGURE_REQUEST) {
            let own = self.magics.get(&key).copied();
            let mut data = Vec::new();
            for (kind, value) in Options::new(&pkt.data).map_while(Result::ok) {
                let unknown = q.unknown_option_acked && kind == UNKNOWN_OPTION;
                let looped =
                    q.own_magic_acked && kind == 5 && own.is_some_and(|m| value == m.to_be_bytes());
                if !unknown && !looped {
                    l2tp::ppp::frame::push_option(&mut data, kind, value);
                }
            }
            pkt.data = data;
            return Some(pkt.frame());
        }
        if q.stale_chap_accepted && pkt.is(protocol::CHAP, chap::code::RESPONSE) {
            let (id, challenge) = self.challenges.get(&key)?;
            let repr = PacketRepr {
                code: pkt.code,
                identifier: pkt.id,
                data: &pkt.data,
            };
            if let Ok(ChapPacket::Response { value, name }) = ChapPacket::parse(&repr) {
                let secret = self.users.get(name)?;
                if pkt.id != *id && value == chap::response_value(pkt.id, secret, challenge) {
                    // Taken as if it answered the Challenge: what a lax authenticator does.
                    let right = chap::response_value(*id, secret, challenge);
                    let mut data = Vec::new();
                    let response = ChapPacket::Response {
                        value: &right,
                        name,
                    };
                    response.emit_to_vec(*id, &mut data).ok()?;
                    pkt.id = *id;
                    pkt.data = data.get(4..)?.to_vec();
                }
            }
            return Some(pkt.frame());
        }
        Some(frame)
    }
}

impl Node for PppLns {
    fn handle(
        &mut self,
        now: Instant,
        from: std::net::SocketAddrV4,
        _to: std::net::SocketAddrV4,
        bytes: &[u8],
    ) {
        self.set.handle(now, from, bytes);
        self.turn(now);
    }
    fn poll_transmit(&mut self, now: Instant) -> Option<Datagram> {
        let mut buf = Vec::new();
        let to = self.set.poll_transmit(now, &mut buf)?;
        Some(Datagram {
            from: LNS,
            to,
            bytes: buf,
        })
    }
    fn poll_timeout(&self) -> Option<Instant> {
        [self.set.poll_timeout(), self.ppp.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.set.handle_timeout(now);
        self.ppp.handle_timeout(now);
        self.turn(now);
    }
}

fn run(name: &str, auth: AuthSet, quirks: Quirks, credentials: bool) -> ProbeResult {
    let probe = PROBES
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no probe {name}"));
    let mut sim: Simulator<Box<dyn Node>> = Simulator::new(23);
    sim.add_node(Box::new(PppLns::new(auth, quirks)), &[LNS]);
    let network = SimNetwork::new(sim, Ipv4Addr::new(198, 18, 0, 2), 7);
    let mut target = Target::new(LNS);
    if credentials {
        target.username = Some(USER.into());
        target.password = Some(PASSWORD.into());
    }
    run_one_on(probe, &target, &network, None)
}

fn assert_verdict(result: &ProbeResult, want: VerdictKind) {
    assert_eq!(
        result.verdict,
        want,
        "{}: {:?}\n{}",
        result.name,
        result.reason,
        result.evidence.join("\n")
    );
}

#[test]
fn a_correct_ppp_lns_passes_every_ppp_probe_with_chap_and_with_pap() {
    for auth in [AuthSet::CHAP_MD5, AuthSet::PAP] {
        for probe in PROBES {
            let result = run(probe.name, auth, Quirks::default(), true);
            let want = if auth == AuthSet::PAP && probe.name == "ppp-chap-stale-identifier" {
                VerdictKind::NotApplicable
            } else {
                VerdictKind::Pass
            };
            assert_verdict(&result, want);
        }
    }
}

#[test]
fn an_lns_ending_the_call_on_a_wrong_password_passes_too() {
    let quirks = Quirks {
        cdn_on_failure: true,
        ..Quirks::default()
    };
    let result = run("ppp-wrong-password", AuthSet::CHAP_MD5, quirks, true);
    assert_verdict(&result, VerdictKind::Pass);
    assert!(
        result
            .evidence
            .iter()
            .any(|l| l.contains("refused: the LNS ended the call")),
        "{}",
        result.evidence.join("\n")
    );
}

#[test]
fn an_lns_without_ppp_makes_every_ppp_probe_not_applicable_with_the_reason() {
    for probe in PROBES {
        let result = sim_lns::run(probe, false, |_| {});
        assert_verdict(&result, VerdictKind::NotApplicable);
        let reason = result.reason.unwrap_or_default();
        assert!(reason.contains("runs no PPP"), "{reason}");
    }
}

#[test]
fn a_target_seen_without_ppp_is_not_waited_for_again_in_the_same_run() {
    let target = Target::new(sim_lns::LNS);
    let first = sim_lns::run_on(&PROBES[0], &target);
    assert_verdict(&first, VerdictKind::NotApplicable);
    assert!(first.evidence.iter().any(|l| l.contains("SCCRQ")));
    let learnt = target
        .learnt
        .no_ppp
        .get()
        .expect("the silence is remembered");
    assert!(learnt.contains("no LCP Configure-Request"), "{learnt}");
    for probe in &PROBES[1..] {
        let result = sim_lns::run_on(probe, &target);
        assert_verdict(&result, VerdictKind::NotApplicable);
        let reason = result.reason.unwrap_or_default();
        assert!(
            reason.contains("earlier probe") && reason.contains("runs no PPP"),
            "{reason}"
        );
        assert!(
            result.evidence.iter().any(|l| l.contains("no call placed")),
            "{}",
            result.evidence.join("\n")
        );
        // Decided before any tunnel: nothing was sent.
        assert!(
            !result.evidence.iter().any(|l| l.contains("SCCRQ")),
            "{}",
            result.evidence.join("\n")
        );
    }
}

#[test]
fn the_default_subscriber_refused_is_not_applicable_not_a_failure() {
    for name in ["ppp-ipcp-unique", "ppp-chap-stale-identifier"] {
        let result = run(name, AuthSet::CHAP_MD5, Quirks::default(), false);
        assert_verdict(&result, VerdictKind::NotApplicable);
        assert!(result.reason.unwrap_or_default().contains("--username"));
    }
}

#[test]
fn each_broken_lns_fails_the_probe_of_its_rule() {
    let cases: [(&str, Quirks); 5] = [
        (
            "ppp-chap-stale-identifier",
            Quirks {
                stale_chap_accepted: true,
                ..Quirks::default()
            },
        ),
        (
            "ppp-lcp-negotiation",
            Quirks {
                unknown_option_acked: true,
                ..Quirks::default()
            },
        ),
        (
            "ppp-magic-loopback",
            Quirks {
                own_magic_acked: true,
                ..Quirks::default()
            },
        ),
        (
            "ppp-lcp-echo",
            Quirks {
                echo_ignored: true,
                ..Quirks::default()
            },
        ),
        (
            "ppp-ipcp-unique",
            Quirks {
                one_address: true,
                ..Quirks::default()
            },
        ),
    ];
    for (name, quirks) in cases {
        let result = run(name, AuthSet::CHAP_MD5, quirks, true);
        assert_verdict(&result, VerdictKind::Fail);
        // The same LNS passes the family's other probes: the quirk breaks one rule.
        let other = if name == "ppp-lcp-echo" {
            "ppp-wrong-password"
        } else {
            "ppp-lcp-echo"
        };
        assert_verdict(
            &run(other, AuthSet::CHAP_MD5, quirks, true),
            VerdictKind::Pass,
        );
    }
}

#[test]
fn pkt_frames_round_trip_and_read_the_magic_number() {
    let data = super::options(&[l2tp::ppp::lcp::LcpOption::MagicNumber(0x1234_5678)]);
    let pkt = Pkt::lcp(code::CONFIGURE_REQUEST, 7, data);
    let frame = pkt.frame();
    assert_eq!(&frame[..4], &[0xff, 0x03, 0xc0, 0x21]);
    assert_eq!(Pkt::parse(&frame), Some(pkt.clone()));
    assert_eq!(pkt.magic(), Some(0x1234_5678));
    // IP and unreadable bytes are no control packet.
    assert_eq!(Pkt::parse(&[0xff, 0x03, 0x00, 0x21, 0x45]), None);
    assert_eq!(Pkt::parse(&[0xff, 0x03, 0xc0, 0x21, 1, 1, 0, 200]), None);
}
