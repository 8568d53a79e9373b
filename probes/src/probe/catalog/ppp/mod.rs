//! PPP on a session (RFC 1661 LCP, RFC 1994 CHAP, RFC 1334 PAP, RFC 1332 IPCP): each probe opens
//! a tunnel and a call, waits for the LNS's LCP Configure-Request (none: the LNS runs no PPP
//! on its sessions, and the probe does not apply), then speaks PPP as a subscriber would:
//! through [`PppSession::client`] where a well-behaved one is wanted, with frames built by hand
//! where the probe must misbehave on purpose.

use std::time::Duration;

use l2tp::ppp::chap::{self, ChapPacket};
use l2tp::ppp::describe::describe;
use l2tp::ppp::frame::{protocol, FrameRepr, PacketRepr};
use l2tp::ppp::fsm::code;
use l2tp::ppp::lcp::{lcp_code, AuthSet, LcpOption};
use l2tp::ppp::session::{Phase, PppEvent, PppFailure};
use l2tp::wire::MessageType;

use super::session::cdn_avps;
use crate::probe::{Ctx, Probe, Scope, Step, Verdict};
use link::{
    code_name, lcp_did_not_open, options, ppp_call, Call, Client, Link, Pkt, Stop, Subscriber,
    PPP_WAIT,
};

pub const PROBES: &[Probe] = &[
    Probe {
        name: "ppp-lcp-negotiation",
        reference: "RFC 1661 §5.4, §5.2",
        sends: "one call; the LNS's LCP Configure-Request acked; our Configure-Request with a \
                Magic-Number and an option of unknown type 99; then the same request without it",
        expects: "a Configure-Reject listing exactly the unknown option (§5.4: \"only the \
                  unacceptable Configuration Options\"), then a Configure-Ack of the clean \
                  request: LCP opens",
        scope: Scope::Any,
        run: lcp_negotiation,
    },
    Probe {
        name: "ppp-magic-loopback",
        reference: "RFC 1661 §6.4",
        sends: "one call; the LNS's Configure-Request acked, and our Configure-Request carrying \
                the LNS's own Magic-Number",
        expects: "a Configure-Nak suggesting another Magic-Number (§6.4: the link may be looped \
                  back); never a Configure-Ack that opens LCP with both ends on one number",
        scope: Scope::Any,
        run: magic_loopback,
    },
    Probe {
        name: "ppp-wrong-password",
        reference: "RFC 1994 §4.2, RFC 1334 §2.2; RFC 2661 §6.12",
        sends: "one call; LCP, then authentication as --username with a wrong password; then a \
                HELLO and a new call on the same tunnel",
        expects: "the password refused (CHAP Failure, PAP Authenticate-Nak, LCP \
                  Terminate-Request or a CDN for the call); the call ends; the tunnel lives \
                  (the HELLO acknowledged, the new call answered with an ICRP)",
        scope: Scope::Any,
        run: wrong_password,
    },
    Probe {
        name: "ppp-chap-stale-identifier",
        reference: "RFC 1994 §4.1, §4.2",
        sends:
            "one call; LCP with CHAP-MD5 only; the LNS's Challenge answered first by a Response \
                with another Identifier (its Value right for that Identifier), then by the right \
                Response (--username, --password)",
        expects: "the stale Response ignored (no Success, no Failure, the call kept), then a \
                  Success for the right one",
        scope: Scope::Any,
        run: chap_stale_identifier,
    },
    Probe {
        name: "ppp-ipcp-unique",
        reference: "RFC 1332 §3.3; RFC 2661 §5.2.1",
        sends: "five calls on one tunnel, each a subscriber (--username, --password) taken to \
                IPCP opened and left up",
        expects: "every subscriber gets an IPv4 address, no two the same",
        scope: Scope::Any,
        run: ipcp_unique,
    },
    Probe {
        name: "ppp-lcp-echo",
        reference: "RFC 1661 §5.8, §6.4",
        sends: "one call; LCP opened; an LCP Echo-Request with our Magic-Number",
        expects: "an Echo-Reply with our Identifier carrying the LNS's Magic-Number as it \
                  negotiated it (§5.8: \"an Echo-Reply MUST be transmitted\" in Opened)",
        scope: Scope::Any,
        run: lcp_echo,
    },
    Probe {
        name: "ppp-state-cleaned-after-cdn",
        reference: "RFC 2661 §6.12; RFC 1661 §5.8",
        sends: "one call with PPP up (IPCP opened); a CDN; an LCP Echo-Request and a Configure-Request on \
                the cleared Session ID; then a new call on the tunnel",
        expects: "no PPP answer on the cleared session (its state is gone, §6.12: \"The peer MUST \
                  clean up any resources\"), and the new call gets an LCP Configure-Request",
        scope: Scope::Any,
        run: state_cleaned_after_cdn,
    },
];

/// How long a stale CHAP Response is given to be (wrongly) answered.
const STALE_WAIT: Duration = Duration::from_secs(3);
/// How long a cleared call is watched for PPP.
const SILENCE_WAIT: Duration = Duration::from_millis(1500);
/// Subscribers in the IPCP uniqueness probe.
const SUBSCRIBERS: usize = 5;
/// The Configuration Option type no LCP knows (unassigned in the IANA registry).
const UNKNOWN_OPTION: u8 = 99;

fn lcp_negotiation(ctx: &mut Ctx) -> Step<Verdict> {
    let (mut link, call, mut theirs) = ppp_call(ctx)?;
    let ack = Pkt::lcp(code::CONFIGURE_ACK, theirs.id, theirs.data.clone());
    link.send_pkt(call, &ack)?;
    let magic = loop {
        let m = u32::from(link.ctl.fresh_id()) << 16 | u32::from(link.ctl.fresh_id());
        if Some(m) != theirs.magic() {
            break m;
        }
    };
    let unknown = LcpOption::Unknown {
        kind: UNKNOWN_OPTION,
        data: &[0x5a, 0xa5],
    };
    let with_unknown = Pkt::lcp(
        code::CONFIGURE_REQUEST,
        1,
        options(&[LcpOption::MagicNumber(magic), unknown]),
    );
    let Some(answer) = link.request(call, &with_unknown, &mut theirs)? else {
        return link.verdict(Verdict::Fail(format!(
            "no answer to our Configure-Request with option {UNKNOWN_OPTION} (§4: every \
             Configure-Request is answered)"
        )));
    };
    let rejected = options(&[unknown]);
    if answer.code != code::CONFIGURE_REJECT {
        return link.verdict(Verdict::Fail(format!(
            "our Configure-Request with unknown option {UNKNOWN_OPTION} was answered {} (§5.4: \
             \"If some Configuration Options received in a Configure-Request are not \
             recognizable ... it MUST transmit a Configure-Reject\")",
            code_name(&answer)
        )));
    }
    if answer.data != rejected {
        return link.verdict(Verdict::Fail(format!(
            "the Configure-Reject does not list exactly our unknown option: {} (§5.4: it \
             \"MUST only contain the unacceptable Configuration Options\", unchanged)",
            code_name(&answer)
        )));
    }
    ctx.note("option 99 rejected alone, as sent");
    let clean = Pkt::lcp(
        code::CONFIGURE_REQUEST,
        2,
        options(&[LcpOption::MagicNumber(magic)]),
    );
    let answer = link.request(call, &clean, &mut theirs)?;
    match answer {
        Some(a) if a.code == code::CONFIGURE_ACK && a.data == clean.data => {
            ctx.note("the clean request acked: LCP opened both ways");
            link.verdict(Verdict::Pass)
        }
        Some(a) => link.verdict(Verdict::Fail(format!(
            "our request without the unknown option was answered {} (§5.2: a request whose \
             every option is acceptable MUST be acked, options unchanged)",
            code_name(&a)
        ))),
        None => link.verdict(Verdict::Fail(
            "no answer to our Configure-Request without the unknown option".into(),
        )),
    }
}

fn magic_loopback(ctx: &mut Ctx) -> Step<Verdict> {
    let (mut link, call, mut theirs) = ppp_call(ctx)?;
    let Some(magic) = theirs.magic() else {
        return link.verdict(Verdict::NotApplicable(
            "the LNS's Configure-Request carries no Magic-Number: it does no loopback \
             detection to probe"
                .into(),
        ));
    };
    ctx.note(format!("the LNS's Magic-Number: {magic:#010x}"));
    let ack = Pkt::lcp(code::CONFIGURE_ACK, theirs.id, theirs.data.clone());
    link.send_pkt(call, &ack)?;
    let looped = Pkt::lcp(
        code::CONFIGURE_REQUEST,
        1,
        options(&[LcpOption::MagicNumber(magic)]),
    );
    let answer = link.request(call, &looped, &mut theirs)?;
    let now_theirs = theirs.magic();
    let verdict = match answer {
        None => Verdict::Fail(
            "no answer to a Configure-Request carrying the LNS's own Magic-Number (§4: every \
             Configure-Request is answered)"
                .into(),
        ),
        Some(a) if a.code == code::CONFIGURE_NAK => match a.magic() {
            Some(suggested) if suggested != magic => {
                ctx.note(format!(
                    "naked, suggesting {suggested:#010x}: loopback detected"
                ));
                Verdict::Pass
            }
            Some(_) => Verdict::Fail(
                "the Configure-Nak suggests the very Magic-Number it refuses (§6.4: a \
                 different one)"
                    .into(),
            ),
            None => Verdict::Fail(format!(
                "the Configure-Nak does not name the Magic-Number: {}",
                code_name(&a)
            )),
        },
        // §6.4 lets either end pick a new number; equal numbers must not stay.
        Some(a) if a.code == code::CONFIGURE_ACK && now_theirs != Some(magic) => {
            ctx.note("acked, after the LNS moved to another Magic-Number itself");
            Verdict::Pass
        }
        Some(a) if a.code == code::CONFIGURE_ACK => Verdict::Fail(format!(
            "the LNS acked our Configure-Request carrying its own Magic-Number {magic:#010x}: \
             LCP opens with both ends on one number, a looped-back link undetected (§6.4: \
             \"a Configure-Nak MUST be sent specifying a different Magic-Number value\")"
        )),
        Some(a) => Verdict::Fail(format!(
            "the LNS answered {} to a Magic-Number equal to its own, which it uses itself \
             (§6.4: Configure-Nak with a different value)",
            code_name(&a)
        )),
    };
    link.verdict(verdict)
}

fn is_auth_verdict(e: &PppEvent) -> bool {
    matches!(
        e,
        PppEvent::Authenticated { .. } | PppEvent::Phase(Phase::Network | Phase::Open)
    )
}

fn wrong_password(ctx: &mut Ctx) -> Step<Verdict> {
    let who = Subscriber::of(ctx);
    let (mut link, call, first) = ppp_call(ctx)?;
    let mut wrong = who.password.clone();
    wrong.extend_from_slice(b"-wrong");
    let mut client = Client::start(&mut link, call, &who, &wrong, AuthSet::ANY, &first)?;
    let stop = client.lcp_opened(&mut link, call)?;
    match stop {
        Stop::Reached(PppEvent::Phase(Phase::Authenticate)) => {}
        Stop::Reached(_) => {
            return link.verdict(Verdict::NotApplicable(
                "the LNS asks for no authentication".into(),
            ))
        }
        other => return link.verdict(lcp_did_not_open(other)),
    }
    let stop = client.drive(&mut link, call, PPP_WAIT, is_auth_verdict, |_| false)?;
    let refusal = match stop {
        Stop::Reached(event) => {
            return link.verdict(Verdict::Fail(format!(
                "a wrong password for {:?} was accepted ({event:?})",
                who.username
            )))
        }
        Stop::Failed(failure @ PppFailure::AuthRejected { .. }) => failure.to_string(),
        Stop::Failed(failure @ PppFailure::TerminatedByPeer { .. }) => failure.to_string(),
        Stop::Failed(failure) => {
            return link.verdict(Verdict::Fail(format!(
                "no verdict on a wrong password: {failure}"
            )))
        }
        Stop::Ended(why) => format!("the LNS ended the call: {why}"),
        Stop::Held(_) | Stop::Timeout => {
            return link.verdict(Verdict::Fail(format!(
                "no verdict on a wrong password within {} s",
                PPP_WAIT.as_secs()
            )))
        }
    };
    ctx.note(format!("refused: {refusal}"));
    if link.stopccn.is_some() {
        let why = link.ended(call).unwrap_or_default();
        return link.verdict(Verdict::Fail(format!(
            "the LNS tore the whole tunnel down over one wrong password ({why})"
        )));
    }
    if link.ended(call).is_none() {
        // Our subscriber sent its Terminate-Request; the LAC ends the call (RFC 2661 §5.4).
        let _ = client.drive(
            &mut link,
            call,
            Duration::from_secs(3),
            |_| false,
            |_| false,
        )?;
        if link.ended(call).is_none() {
            let cdn = link
                .ctl
                .control(MessageType::Cdn, call.theirs, cdn_avps(call.ours))?;
            link.ctl.acked(&cdn)?;
            ctx.note("the call ended by our CDN after the PPP refusal");
        }
    }
    tunnel_lives(ctx, link)
}

/// Judges that the tunnel outlived a call's end: a HELLO acknowledged, a new call answered.
fn tunnel_lives(ctx: &Ctx, mut link: Link) -> Step<Verdict> {
    let hello = link.ctl.control(MessageType::Hello, 0, Vec::new())?;
    if let Err(v) = link.ctl.acked(&hello) {
        return link
            .verdict(v.blamed(|why| format!("the tunnel no longer acknowledges a HELLO: {why}")));
    }
    match link.call() {
        Ok(_) => {
            ctx.note("the tunnel lives: HELLO acknowledged, a new call answered");
            link.verdict(Verdict::Pass)
        }
        Err(v) => link.verdict(v.blamed(|why| format!("a new call on the tunnel: {why}"))),
    }
}

fn chap_stale_identifier(ctx: &mut Ctx) -> Step<Verdict> {
    let who = Subscriber::of(ctx);
    let (mut link, call, first) = ppp_call(ctx)?;
    let mut client = Client::start(
        &mut link,
        call,
        &who,
        &who.password,
        AuthSet::CHAP_MD5,
        &first,
    )?;
    let is_challenge = |p: &Pkt| p.is(protocol::CHAP, chap::code::CHALLENGE);
    let stop = client.drive(&mut link, call, PPP_WAIT, is_auth_verdict, is_challenge)?;
    let mut challenge = match stop {
        Stop::Held(pkt) => pkt,
        Stop::Reached(_) => {
            return link.verdict(Verdict::NotApplicable(
                "the LNS asks for no CHAP authentication".into(),
            ))
        }
        Stop::Failed(failure) if failure.phase() == Phase::Establish => {
            return link.verdict(Verdict::NotApplicable(format!(
                "the LNS would not authenticate with CHAP-MD5: {failure}"
            )))
        }
        other => {
            return link.verdict(Verdict::Fail(format!(
                "no CHAP Challenge after LCP agreed on CHAP-MD5 ({other:?})"
            )))
        }
    };
    let Ok(ChapPacket::Challenge { value, .. }) = ChapPacket::parse(&PacketRepr {
        code: challenge.code,
        identifier: challenge.id,
        data: &challenge.data,
    }) else {
        return link.verdict(Verdict::Fail(format!(
            "a CHAP Challenge that does not read: {}",
            code_name(&challenge)
        )));
    };
    let stale = challenge.id.wrapping_sub(1);
    let value = chap::response_value(stale, &who.password, value);
    let mut data = Vec::new();
    let response = ChapPacket::Response {
        value: &value,
        name: who.username.as_bytes(),
    };
    if response.emit_to_vec(stale, &mut data).is_err() {
        return link.verdict(Verdict::Inconclusive("--username too long for CHAP".into()));
    }
    ctx.note(format!(
        "Challenge Identifier {}: answering with Identifier {stale} first",
        challenge.id
    ));
    link.send(call, &{
        let mut frame = Vec::new();
        FrameRepr::full(protocol::CHAP).emit_to_vec(&data, &mut frame);
        frame
    })?;
    // Watch: CHAP goes to the probe (a resent Challenge is kept), the rest to the subscriber.
    let deadline = link.ctl.now() + STALE_WAIT;
    loop {
        let left = deadline.saturating_duration_since(link.ctl.now());
        if left.is_zero() {
            break;
        }
        let stop = client.drive(
            &mut link,
            call,
            left,
            |_| false,
            |p| p.protocol == protocol::CHAP,
        )?;
        match stop {
            Stop::Held(pkt) if is_challenge(&pkt) => challenge = pkt,
            Stop::Held(pkt) if pkt.code == chap::code::SUCCESS => {
                return link.verdict(Verdict::Fail(format!(
                    "a Response with Identifier {stale}, not the Challenge's {}, got {} (RFC \
                     1994 §4.1: the Identifier matches a Response to its Challenge)",
                    challenge.id,
                    code_name(&pkt)
                )))
            }
            Stop::Held(pkt) => {
                return link.verdict(Verdict::Fail(format!(
                    "the stale Response was answered, not ignored: {}",
                    code_name(&pkt)
                )))
            }
            Stop::Ended(why) => {
                return link.verdict(Verdict::Fail(format!(
                    "the LNS ended the call over a Response with a stale Identifier ({why}) \
                     instead of ignoring it: the subscriber's right Response never had a \
                     chance"
                )))
            }
            Stop::Timeout => break,
            Stop::Reached(_) | Stop::Failed(_) => break,
        }
    }
    ctx.note("the stale Response was ignored; now the right one");
    let now = link.ctl.now();
    client.take(now, &challenge.frame());
    let stop = client.drive(&mut link, call, PPP_WAIT, is_auth_verdict, |_| false)?;
    let verdict = match stop {
        Stop::Reached(_) => Verdict::Pass,
        Stop::Failed(PppFailure::AuthRejected { message }) => {
            if who.given {
                Verdict::Fail(format!(
                    "after the stale Response was ignored, the right one got a Failure \
                     ({message:?}): the stale one was held against it"
                ))
            } else {
                who.refused(&message)
            }
        }
        Stop::Ended(why) if !who.given => who.refused(&why),
        other => Verdict::Fail(format!(
            "no Success for the right Response after the stale one ({other:?})"
        )),
    };
    link.verdict(verdict)
}

fn ipcp_unique(ctx: &mut Ctx) -> Step<Verdict> {
    let who = Subscriber::of(ctx);
    let (mut link, first_call, first) = ppp_call(ctx)?;
    let mut addresses: Vec<(u16, std::net::Ipv4Addr)> = Vec::new();
    let mut clients = Vec::new();
    for index in 0..SUBSCRIBERS {
        let (call, request) = if index == 0 {
            (first_call, first.clone())
        } else {
            let call = link.call()?;
            let Some(request) = link.first_request(call) else {
                let why = link.ended(call).unwrap_or_else(|| "no LCP".into());
                return link.verdict(Verdict::Inconclusive(format!(
                    "subscriber {}: no Configure-Request on the call ({why})",
                    index + 1
                )));
            };
            (call, request)
        };
        let mut client =
            Client::start(&mut link, call, &who, &who.password, AuthSet::ANY, &request)?;
        let opened = |e: &PppEvent| matches!(e, PppEvent::IpcpOpened(_));
        match client.drive(&mut link, call, PPP_WAIT, opened, |_| false)? {
            Stop::Reached(PppEvent::IpcpOpened(n)) => match n.local {
                Some(address) if !address.is_unspecified() => {
                    ctx.note(format!("subscriber {}: {address}", index + 1));
                    addresses.push((call.ours, address));
                }
                other => {
                    return link.verdict(Verdict::Fail(format!(
                        "subscriber {}: IPCP opened without an address for us ({other:?})",
                        index + 1
                    )))
                }
            },
            Stop::Failed(PppFailure::AuthRejected { message }) => {
                return link.verdict(who.refused(&message))
            }
            Stop::Ended(why) if index == 0 && !who.given => return link.verdict(who.refused(&why)),
            other => {
                return link.verdict(Verdict::Inconclusive(format!(
                    "subscriber {} did not reach IPCP opened: {other:?}",
                    index + 1
                )))
            }
        }
        clients.push((call, client));
    }
    let gone: Vec<u16> = clients
        .iter()
        .filter(|(call, _)| link.ended(*call).is_some())
        .map(|(call, _)| call.ours)
        .collect();
    if !gone.is_empty() {
        ctx.note(format!(
            "calls the LNS ended meanwhile: {gone:?} (not judged)"
        ));
    }
    for (i, (call, address)) in addresses.iter().enumerate() {
        if gone.contains(call) {
            continue;
        }
        if let Some((other, _)) = addresses[..i]
            .iter()
            .find(|(c, a)| a == address && !gone.contains(c))
        {
            return link.verdict(Verdict::Fail(format!(
                "{address} given to two live subscribers at once (our calls {other} and {})",
                call
            )));
        }
    }
    link.verdict(Verdict::Pass)
}

/// An LCP Echo-Request on `call` and the LNS's Echo-Reply to it (three tries a second
/// apart; the subscriber keeps running meanwhile).
fn echo(link: &mut Link, call: Call, client: &mut Client, first_id: u8) -> Step<Option<Pkt>> {
    let magic = client.our_magic.unwrap_or(0);
    for id in first_id..first_id.saturating_add(3) {
        let request = Pkt::lcp(lcp_code::ECHO_REQUEST, id, magic.to_be_bytes().to_vec());
        link.send_pkt(call, &request)?;
        let is_reply = |p: &Pkt| p.is(protocol::LCP, lcp_code::ECHO_REPLY);
        match client.drive(link, call, Duration::from_secs(1), |_| false, is_reply)? {
            Stop::Held(reply) => return Ok(Some(reply)),
            Stop::Ended(_) => return Ok(None),
            _ => {}
        }
    }
    Ok(None)
}

fn lcp_echo(ctx: &mut Ctx) -> Step<Verdict> {
    let who = Subscriber::of(ctx);
    let (mut link, call, first) = ppp_call(ctx)?;
    let mut client = Client::start(&mut link, call, &who, &who.password, AuthSet::ANY, &first)?;
    match client.lcp_opened(&mut link, call)? {
        Stop::Reached(_) => {}
        other => return link.verdict(lcp_did_not_open(other)),
    }
    let reply = echo(&mut link, call, &mut client, 0x51)?;
    let verdict = match reply {
        None => match link.ended(call) {
            Some(why) => who.refused(&format!("the call ended before the echo: {why}")),
            None => Verdict::Fail(
                "no Echo-Reply to three Echo-Requests in LCP Opened (§5.8: \"an Echo-Reply \
                 MUST be transmitted\")"
                    .into(),
            ),
        },
        Some(reply) => {
            let got = reply
                .data
                .first_chunk::<4>()
                .map(|m| u32::from_be_bytes(*m));
            let want = client.their_magic.unwrap_or(0);
            if !(0x51..0x54).contains(&reply.id) {
                Verdict::Fail(format!(
                    "the Echo-Reply carries Identifier {}, not the request's (§5.8)",
                    reply.id
                ))
            } else if got != Some(want) {
                Verdict::Fail(format!(
                    "the Echo-Reply carries Magic-Number {got:#x?}, not the LNS's negotiated \
                     {want:#010x} (§5.8: \"the Magic-Number ... of the sender\")"
                ))
            } else {
                ctx.note(format!(
                    "Echo-Reply with the LNS's Magic-Number {want:#010x}"
                ));
                Verdict::Pass
            }
        }
    };
    link.verdict(verdict)
}

fn state_cleaned_after_cdn(ctx: &mut Ctx) -> Step<Verdict> {
    let who = Subscriber::of(ctx);
    let (mut link, call, first) = ppp_call(ctx)?;
    let mut client = Client::start(&mut link, call, &who, &who.password, AuthSet::ANY, &first)?;
    // Up means Open: a CDN while authentication is still with RADIUS tests something else.
    let open = |e: &PppEvent| matches!(e, PppEvent::Phase(Phase::Open));
    match client.drive(&mut link, call, PPP_WAIT, open, |_| false)? {
        Stop::Reached(_) => {}
        Stop::Failed(PppFailure::AuthRejected { message }) => {
            return link.verdict(who.refused(&message))
        }
        Stop::Ended(why) if !who.given => return link.verdict(who.refused(&why)),
        other => {
            return link.verdict(Verdict::Inconclusive(format!(
                "the session did not come up to judge its end: {other:?}"
            )))
        }
    }
    let before = echo(&mut link, call, &mut client, 0x61)?;
    ctx.note(format!(
        "before the CDN the session {} echoes",
        if before.is_some() {
            "answers"
        } else {
            "answers no"
        }
    ));
    if let Some(why) = link.ended(call) {
        return link.verdict(who.refused(&format!("the call ended before our CDN: {why}")));
    }
    let cdn = link
        .ctl
        .control(MessageType::Cdn, call.theirs, cdn_avps(call.ours))?;
    if let Err(v) = link.ctl.acked(&cdn) {
        return link.verdict(v.blamed(|why| format!("CDN: {why} (RFC 2661 §5.8)")));
    }
    let early = link.ctl.discard_early_data();
    if early > 0 {
        ctx.note(format!(
            "{early} data message(s) sent before the CDN's acknowledgement set aside"
        ));
    }
    let now = link.ctl.now();
    client.ppp.lower_down(now);
    let magic = client.our_magic.unwrap_or(0);
    link.send_pkt(
        call,
        &Pkt::lcp(lcp_code::ECHO_REQUEST, 0x71, magic.to_be_bytes().to_vec()),
    )?;
    let request = Pkt::lcp(
        code::CONFIGURE_REQUEST,
        0x72,
        options(&[LcpOption::MagicNumber(magic)]),
    );
    link.send_pkt(call, &request)?;
    let deadline = link.ctl.now() + SILENCE_WAIT;
    // Read the cleared session's data directly: `Link::next` stops at the CDN of the call.
    let mut answers = Vec::new();
    while let Some(frame) = link.ctl.wait_data_until(deadline, call.ours, |_| false) {
        link.ctl.note(format!("  ← PPP {}", describe(&frame)));
        answers.push(describe(&frame).to_string());
    }
    if let Some(first) = answers.first() {
        return link.verdict(Verdict::Fail(format!(
            "the cleared session still speaks PPP after its CDN was acknowledged: {first} \
             (§6.12: \"The peer MUST clean up any resources\")"
        )));
    }
    ctx.note("no PPP on the cleared session");
    let new = link.call()?;
    match link.first_request(new) {
        Some(_) => {
            ctx.note("the new call negotiates LCP afresh");
            link.verdict(Verdict::Pass)
        }
        None => {
            let why = link
                .ended(new)
                .unwrap_or_else(|| "no Configure-Request".into());
            link.verdict(Verdict::Fail(format!(
                "a new call after the CDN gets no PPP ({why}) where the first one did"
            )))
        }
    }
}

mod link;
#[cfg(test)]
mod tests;
