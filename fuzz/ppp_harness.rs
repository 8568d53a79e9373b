//! The `ppp` fuzz target: one PPP session (client or server, any authentication, IPv4 or
//! IPv4+IPv6) fed frames from the input. Included with `#[path]` by the cargo-fuzz target
//! (`fuzz/fuzz_targets/ppp.rs`) and by the corpus replay test (`tests/tests/it/fuzz_corpus.rs`), like
//! `harness.rs`, and for the same reasons.
//!
//! Input: one flags byte, then records as in `harness.rs` (`[op] [len: u16 BE] [bytes]`):
//!
//! - flags: bit 0 the side (0 client, 1 server); bits 1-2 the authentication (none, PAP, CHAP,
//!   client: any); bit 3 IPv6CP too.
//! - op: bits 0-3 move the virtual clock by that many quarter seconds before the record, then
//!   the session's due timers run; bit 7 set: no frame, only the clock (the bytes are ignored).
//!
//! It panics only when the session breaks an invariant: a frame it sends that its own parser
//! (or the describer) refuses, a phase that is neither settled nor waiting on a timer, a timer
//! that does not move on once run.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use l2tp::ppp::describe::describe;
use l2tp::ppp::frame::{protocol, FrameRepr, Options, PacketRepr};
use l2tp::ppp::lcp::AuthSet;
use l2tp::ppp::session::{Phase, PppEvent, PppSession, SessionConfig};
use l2tp::time::Instant;

pub const USER: &str = "user1@example.net";
pub const PASSWORD: &str = "wonderland";
pub const POOL_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 19, 128, 9);

/// What [`ppp`] saw, for the replay test's checks on the seeds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PppOutcome {
    pub frames_in: u32,
    pub frames_out: u32,
    /// The furthest phase reached (Open is the deepest).
    pub deepest: Option<Phase>,
}

/// The session the flags byte asks for.
pub fn session(flags: u8, seed: u64) -> PppSession {
    let auth = match (flags >> 1) & 3 {
        0 => AuthSet::NONE,
        1 => AuthSet::PAP,
        2 => AuthSet::CHAP_MD5,
        _ => AuthSet::ANY,
    };
    let ipv6 = flags & 8 != 0;
    if flags & 1 == 0 {
        let mut config = SessionConfig::client(PASSWORD);
        config.lcp.accept = auth;
        config.ipv6 = ipv6;
        PppSession::client(Arc::new(config), USER, seed)
    } else {
        let mut users: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        users.insert(USER.into(), PASSWORD.into());
        // A server demands one protocol; "any" reads as CHAP.
        let demand = if auth == AuthSet::ANY {
            AuthSet::CHAP_MD5
        } else {
            auth
        };
        let mut config = SessionConfig::server(demand, Some(Arc::new(users)));
        config.local_address = Some(Ipv4Addr::new(198, 19, 128, 1));
        config.ipv6 = ipv6;
        PppSession::server(Arc::new(config), POOL_ADDRESS, seed)
    }
}

pub fn ppp(data: &[u8]) -> PppOutcome {
    let mut outcome = PppOutcome::default();
    let Some((&flags, mut rest)) = data.split_first() else {
        return outcome;
    };
    let mut session = session(flags, 1);
    let mut now = Instant::ZERO;
    session.start(now);
    drain(&mut session, &mut outcome);
    while let [op, high, low, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*high, *low])).min(tail.len());
        let (frame, next) = tail.split_at(len);
        rest = next;
        now += Duration::from_millis(250 * u64::from(op & 0x0f));
        run_timers(&mut session, now);
        if op & 0x80 == 0 {
            outcome.frames_in += 1;
            let _ = describe(frame);
            let _ = session.handle(now, frame);
        }
        drain(&mut session, &mut outcome);
        check_waiting(&session);
    }
    outcome
}

/// Runs the timers that are due at `now`; each run must move the deadline on.
fn run_timers(session: &mut PppSession, now: Instant) {
    while let Some(due) = session.poll_timeout().filter(|&due| due <= now) {
        session.handle_timeout(now);
        assert!(
            session.poll_timeout().is_none_or(|next| next > due),
            "the timer due at {due:?} did not move on"
        );
    }
}

/// Takes every frame the session sends (each must read back) and every event.
fn drain(session: &mut PppSession, outcome: &mut PppOutcome) {
    let mut out = Vec::new();
    while session.poll_transmit(&mut out) {
        outcome.frames_out += 1;
        check_sent(&out);
        out.clear();
    }
    while let Some(event) = session.poll_event() {
        if let PppEvent::Phase(phase) = event {
            outcome.deepest = outcome
                .deepest
                .max(Some(phase).filter(|p| *p != Phase::Terminate));
        }
    }
}

fn check_sent(frame: &[u8]) {
    let (repr, info) = FrameRepr::parse(frame).expect("a frame we send reads back");
    let summary = describe(frame);
    assert_eq!(summary.malformed, None, "{frame:02x?}");
    if matches!(repr.protocol, protocol::IPV4 | protocol::IPV6) {
        return;
    }
    let packet = PacketRepr::parse_bytes(info).expect("a control packet we send reads back");
    // Configure-Request/Ack/Nak/Reject of LCP, IPCP, IPv6CP carry options that must read.
    let negotiates = matches!(
        repr.protocol,
        protocol::LCP | protocol::IPCP | protocol::IPV6CP
    );
    if negotiates && (1..=4).contains(&packet.code) {
        Options::new(packet.data)
            .check()
            .expect("options we send read back");
    }
}

/// A session that is neither settled (Dead, Open) nor waiting on a timer would hang.
fn check_waiting(session: &PppSession) {
    let settled = matches!(session.phase(), Phase::Dead | Phase::Open);
    assert!(
        settled || session.poll_timeout().is_some(),
        "stuck in {:?} with no timer",
        session.phase()
    );
}
