//! Sessions (§5.2.1, §5.6, §6.6–6.8, §6.12) and the data plane they carry (§5.3, RFC 1661 §5.8).

use std::collections::HashMap;
use std::time::Duration;

use l2tp::ppp::LcpEcho;
use l2tp::wire::{AvpRepr, AvpType, AvpValue, ControlMessage, MessageType};

use crate::probe::script::{result_text, Ctl};
use crate::probe::{Ctx, Probe, Scope, Step, Verdict};

pub const PROBES: &[Probe] = &[
    Probe {
        name: "session-lifecycle",
        reference: "RFC 2661 §5.2.1, §5.6, §6.12",
        sends: "ICRQ, ICCN answering the ICRP, an LCP Echo-Request on the call; then CDN (Result \
                Code 3, our Assigned Session ID) and another Echo-Request on the cleared call",
        expects: "ICRP, the ICCN and the CDN acknowledged; after the CDN the call carries no more \
                  data (§6.12: \"The peer MUST clean up any resources\"); judged on data only \
                  when the call answered data before",
        scope: Scope::Any,
        run: session_lifecycle,
    },
    Probe {
        name: "cdn-wrong-session-id",
        reference: "RFC 2661 §6.12, §4.4.3 Assigned Session ID, §5.8",
        sends: "two calls; a CDN whose header Session ID and Assigned Session ID AVP name neither \
                call, and a CDN with Session ID 0 and an unknown Assigned Session ID",
        expects: "both CDNs acknowledged (§5.8); neither call ends (no CDN for them, no StopCCN), \
                  the tunnel answers a HELLO and each call still carries data if it did before",
        scope: Scope::Any,
        run: cdn_wrong_session_id,
    },
    Probe {
        name: "session-id-uniqueness",
        reference: "RFC 2661 §4.4.3 Assigned Session ID, §5.3",
        sends: "up to 1500 ICRQs on one tunnel, every call left open (no ICCN, no CDN): enough \
                that an LNS drawing 16-bit IDs at random without a check repeats one with \
                probability 1 - 3e-8",
        expects: "every ICRP's Assigned Session ID non-zero (§5.3: 0 \"MUST NOT be used as an \
                  Assigned Session ID\") and distinct from those of the calls still open \
                  (a call the LNS cleared with a CDN frees its ID)",
        scope: Scope::Any,
        run: session_id_uniqueness,
    },
    Probe {
        name: "data-plane-echo",
        reference: "RFC 2661 §5.3; RFC 1661 §5.8",
        sends: "one call, then a PPP LCP Echo-Request (magic number 0) in a data message",
        expects: "an LCP Echo-Reply with our Identifier on our Session ID, or our own \
                  request back from a loopback PPP peer; not applicable when the LNS's PPP \
                  stays silent (RFC 1661 §5.8 lets it discard echoes before LCP is Opened)",
        scope: Scope::Any,
        run: data_plane_echo,
    },
];

/// Birthday bound: a random 16-bit picker with no check repeats within 1500 draws with
/// probability 1 - exp(-1500·1499 / 2·65536) ≈ 1 - 3·10⁻⁸, so the verdict does not hang on luck.
const CALLS_FOR_UNIQUENESS: usize = 1500;
/// How long a call's PPP side gets to answer an LCP Echo-Request.
const ECHO_WAIT: Duration = Duration::from_secs(3);
/// How long a cleared call is watched for data.
const SILENCE_WAIT: Duration = Duration::from_millis(1500);

fn kind_name(message: &ControlMessage) -> &'static str {
    message.message_type().map_or("ZLB", MessageType::name)
}

/// One call of ours: (our Session ID, the LNS's).
#[derive(Debug, Clone, Copy)]
struct Call {
    ours: u16,
    theirs: u16,
}

/// What came back for one LCP Echo-Request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Echo {
    /// An Echo-Reply with our Identifier.
    Reply,
    /// Our own request, unchanged: a loopback PPP peer.
    Looped,
    /// Echo-Replies with another Identifier only.
    WrongIdentifier(u8),
    /// Other PPP frames only (LCP negotiation, say): how many.
    Other(usize),
    Nothing,
}

impl Echo {
    fn answered(&self) -> bool {
        matches!(self, Echo::Reply | Echo::Looped)
    }
}

/// What the LNS said about our calls and tunnel on the control channel meanwhile.
#[derive(Default)]
struct Control {
    /// (our Session ID, "result …") of each CDN for one of our calls.
    cdns: Vec<(u16, String)>,
    stopccn: Option<String>,
}

impl Control {
    fn take(&mut self, message: &ControlMessage) {
        match message.message_type() {
            Some(MessageType::Cdn) => self
                .cdns
                .push((message.header.session_id, result_text(message))),
            Some(MessageType::StopCcn) => self.stopccn = Some(result_text(message)),
            _ => {}
        }
    }

    fn ended(&self, call: &Call) -> Option<&str> {
        self.cdns
            .iter()
            .find(|(sid, _)| *sid == call.ours)
            .map(|(_, why)| why.as_str())
    }
}

/// Sends an LCP Echo-Request on `call` and waits up to `wait` for what comes back on it.
fn echo(
    ctl: &mut Ctl,
    call: Call,
    identifier: u8,
    wait: Duration,
    control: &mut Control,
) -> Step<Echo> {
    let request = LcpEcho::request(identifier, 0);
    ctl.send_data(call.theirs, &request.to_frame())?;
    let deadline = ctl.now() + wait;
    let mut result = Echo::Nothing;
    loop {
        let left = deadline.saturating_duration_since(ctl.now());
        let Some(frame) = ctl.wait_data(left, call.ours, |msg| control.take(msg)) else {
            return Ok(result);
        };
        match LcpEcho::parse(&frame) {
            Some(e) if e.reply && e.identifier == identifier => return Ok(Echo::Reply),
            Some(e) if e == request => return Ok(Echo::Looped),
            Some(e) if e.reply => result = Echo::WrongIdentifier(e.identifier),
            _ => {
                if let Echo::Other(n) = &mut result {
                    *n += 1;
                } else if result == Echo::Nothing {
                    result = Echo::Other(1);
                }
            }
        }
        if control.ended(&call).is_some() || control.stopccn.is_some() {
            return Ok(result);
        }
    }
}

fn echo_text(echo: &Echo) -> String {
    match echo {
        Echo::Reply => "an LCP Echo-Reply with our Identifier".into(),
        Echo::Looped => "our own Echo-Request back (a loopback PPP peer)".into(),
        Echo::WrongIdentifier(id) => format!("an Echo-Reply with Identifier {id}, not ours"),
        Echo::Other(n) => format!("{n} other PPP frame(s), no answer to the echo"),
        Echo::Nothing => "nothing".into(),
    }
}

/// A CDN's AVPs as a LAC that hangs up sends them (result 3, administrative).
pub(super) fn cdn_avps(our_sid: u16) -> Vec<AvpRepr<'static>> {
    vec![
        AvpRepr::mandatory(AvpValue::ResultCode {
            result: 3,
            error: None,
            message: None,
        }),
        AvpRepr::mandatory(AvpValue::AssignedSessionId(our_sid)),
    ]
}

fn established(ctx: &Ctx) -> Step<Ctl> {
    let mut ctl = ctx.ctl()?;
    ctl.establish()?;
    Ok(ctl)
}

fn open(ctl: &mut Ctl) -> Step<Call> {
    let (ours, theirs) = ctl.open_call()?;
    Ok(Call { ours, theirs })
}

fn session_lifecycle(ctx: &mut Ctx) -> Step<Verdict> {
    let mut ctl = established(ctx)?;
    let call = open(&mut ctl)?;
    ctx.note(format!(
        "call up: our Session ID {}, theirs {}",
        call.ours, call.theirs
    ));
    let mut control = Control::default();
    let before = echo(&mut ctl, call, 1, ECHO_WAIT, &mut control)?;
    ctx.note(format!("data on the live call: {}", echo_text(&before)));
    if let Some(why) = control.ended(&call) {
        let _ = ctl.close();
        return Ok(Verdict::NotApplicable(format!(
            "the LNS ended the call itself before our CDN ({why}): its PPP side does not stay up"
        )));
    }
    let cdn = ctl.control(MessageType::Cdn, call.theirs, cdn_avps(call.ours))?;
    if let Err(v) = ctl.acked(&cdn) {
        let _ = ctl.close();
        return Ok(
            v.blamed(|why| format!("CDN: {why} (§5.8: every control message is acknowledged)"))
        );
    }
    ctx.note("CDN acknowledged");
    let verdict = if before.answered() {
        let after = echo(&mut ctl, call, 2, SILENCE_WAIT, &mut control)?;
        match after {
            Echo::Reply | Echo::Looped => Verdict::Fail(format!(
                "the call still carries data after its CDN was acknowledged: {} (§6.12: \"The \
                 peer MUST clean up any resources\")",
                echo_text(&after)
            )),
            _ => {
                ctx.note(format!(
                    "after the CDN the call answers no data ({})",
                    echo_text(&after)
                ));
                Verdict::Pass
            }
        }
    } else {
        ctx.note(
            "the call answered no data before the CDN either: its end is judged by the \
             acknowledgement alone",
        );
        Verdict::Pass
    };
    let _ = ctl.close();
    Ok(verdict)
}

fn cdn_wrong_session_id(ctx: &mut Ctx) -> Step<Verdict> {
    let mut ctl = established(ctx)?;
    let calls = [open(&mut ctl)?, open(&mut ctl)?];
    ctx.note(format!(
        "two calls up: (ours, theirs) = ({}, {}) and ({}, {})",
        calls[0].ours, calls[0].theirs, calls[1].ours, calls[1].theirs
    ));
    let mut control = Control::default();
    let mut before = Vec::new();
    for (i, call) in calls.iter().enumerate() {
        let e = echo(&mut ctl, *call, 10 + i as u8, ECHO_WAIT, &mut control)?;
        ctx.note(format!("call {}: data {}", i + 1, echo_text(&e)));
        before.push(e.answered());
    }
    if let Some(call) = calls.iter().find(|c| control.ended(c).is_some()) {
        let _ = ctl.close();
        return Ok(Verdict::NotApplicable(format!(
            "the LNS ended call {} itself before our CDNs ({}): its PPP side does not stay up",
            call.ours,
            control.ended(call).unwrap_or_default()
        )));
    }
    let mut pick = |avoid: &[u16]| loop {
        let id = ctl.fresh_id();
        if !avoid.contains(&id) {
            return id;
        }
    };
    let all: Vec<u16> = calls.iter().flat_map(|c| [c.ours, c.theirs]).collect();
    let bogus_theirs = pick(&all);
    let bogus_ours = pick(&all);
    let bogus_ours2 = pick(&all);
    let cdns = [(bogus_theirs, bogus_ours), (0, bogus_ours2)];
    for (header_sid, avp_sid) in cdns {
        ctx.note(format!(
            "CDN with header Session ID {header_sid} and Assigned Session ID {avp_sid}: no such \
             call"
        ));
        let cdn = ctl.control(MessageType::Cdn, header_sid, cdn_avps(avp_sid))?;
        if let Err(v) = ctl.acked(&cdn) {
            let _ = ctl.close();
            return Ok(v.blamed(|why| {
                format!("CDN for no call: {why} (§5.8: every control message is acknowledged)")
            }));
        }
    }
    // The tunnel still lives, and the calls: a HELLO is acknowledged, data still flows.
    let hello = ctl.control(MessageType::Hello, 0, Vec::new())?;
    let hello_acked = ctl.acked(&hello).is_ok();
    let mut after = Vec::new();
    for (i, call) in calls.iter().enumerate() {
        let e = if before[i] {
            echo(&mut ctl, *call, 20 + i as u8, ECHO_WAIT, &mut control)?
        } else {
            Echo::Nothing
        };
        after.push(e);
    }
    // Anything the LNS says about the calls arrives within a moment of the CDNs.
    ctl.wait(Duration::from_millis(300), |msg| {
        control.take(msg);
        false
    });
    let _ = ctl.close();
    if let Some(why) = &control.stopccn {
        return Ok(Verdict::Fail(format!(
            "the LNS tore the tunnel down ({why}) over a CDN for no call of ours (§6.12: a CDN \
             concerns \"a specific call within the tunnel\")"
        )));
    }
    if let Some(call) = calls.iter().find(|c| control.ended(c).is_some()) {
        return Ok(Verdict::Fail(format!(
            "call {} (Session ID {} at the LNS) ended after a CDN that named neither of its IDs: \
             CDN {}",
            call.ours,
            call.theirs,
            control.ended(call).unwrap_or_default()
        )));
    }
    if !hello_acked {
        return Ok(Verdict::Fail(
            "after the CDNs for no call the tunnel no longer acknowledges a HELLO".into(),
        ));
    }
    for (i, call) in calls.iter().enumerate() {
        if before[i] && !after[i].answered() {
            return Ok(Verdict::Fail(format!(
                "call {} carried data before the CDNs for no call and not after ({})",
                call.ours,
                echo_text(&after[i])
            )));
        }
    }
    ctx.note("both calls and the tunnel survived");
    Ok(Verdict::Pass)
}

fn session_id_uniqueness(ctx: &mut Ctx) -> Step<Verdict> {
    let mut ctl = established(ctx)?;
    // Live calls: the LNS's Assigned Session ID → our Session ID of the call holding it.
    let mut live: HashMap<u16, u16> = HashMap::new();
    let mut assigned = 0usize;
    let mut ended = 0usize;
    let mut duplicate = None;
    let mut refused = None;
    let mut first_ids = Vec::new();
    ctl.note(format!(
        "up to {CALLS_FOR_UNIQUENESS} ICRQs, each answered ICRP acknowledged by the next ICRQ; \
         the exchanges are in the pcap, not listed here"
    ));
    ctl.set_quiet(true);
    for index in 0..CALLS_FOR_UNIQUENESS {
        // Our own IDs are sequential, so any repeat is the LNS's.
        let Ok(our_sid) = u16::try_from(index + 1) else {
            break;
        };
        let icrq = ctl.control(
            MessageType::Icrq,
            0,
            vec![
                AvpRepr::mandatory(AvpValue::AssignedSessionId(our_sid)),
                AvpRepr::mandatory(AvpValue::CallSerialNumber(u32::from(our_sid))),
                AvpRepr::mandatory(AvpValue::BearerType(3)),
            ],
        )?;
        let mut cleared = Vec::new();
        let got = ctl.request(&icrq, |msg| {
            if msg.message_type() == Some(MessageType::Cdn) && msg.header.session_id != our_sid {
                // The LNS ended an earlier call: its ID is free again (§6.12).
                cleared.push(msg.header.session_id);
                return false;
            }
            msg.header.session_id == our_sid
                && matches!(
                    msg.message_type(),
                    Some(MessageType::Icrp | MessageType::Cdn | MessageType::StopCcn)
                )
        })?;
        for ours in cleared {
            let before = live.len();
            live.retain(|_, call| *call != ours);
            ended += before - live.len();
        }
        let Some((_, reply)) = got else {
            refused = Some("no answer to an ICRQ".to_string());
            break;
        };
        if reply.message_type() != Some(MessageType::Icrp) {
            refused = Some(format!(
                "an ICRQ answered with {} ({})",
                kind_name(&reply),
                result_text(&reply)
            ));
            break;
        }
        let Some(AvpValue::AssignedSessionId(sid)) = reply.avp(AvpType::AssignedSessionId) else {
            ctl.set_quiet(false);
            let _ = ctl.close();
            return Ok(Verdict::Fail(
                "an ICRP without an Assigned Session ID (§6.7: it MUST be present)".into(),
            ));
        };
        let sid = *sid;
        assigned += 1;
        if first_ids.len() < 8 {
            first_ids.push(sid);
        }
        if sid == 0 {
            ctl.set_quiet(false);
            let _ = ctl.close();
            return Ok(Verdict::Fail(
                "an ICRP assigned Session ID 0 (§5.3: \"The value of 0 for Session ID ... MUST \
                 NOT be used as an Assigned Session ID\")"
                    .into(),
            ));
        }
        if let Some(holder) = live.insert(sid, our_sid) {
            duplicate = Some((sid, holder, our_sid));
            break;
        }
    }
    if let Err(v) = ctl.ack() {
        ctl.set_quiet(false);
        return Err(v);
    }
    ctl.set_quiet(false);
    let _ = ctl.close();
    if let Some(why) = &refused {
        ctx.note(format!(
            "the LNS took {assigned} calls, then stopped: {why}"
        ));
    }
    ctx.note(format!(
        "{assigned} Assigned Session IDs, {ended} of their calls ended by the LNS meanwhile; \
         first ones {first_ids:?}"
    ));
    if let Some((sid, holder, ours)) = duplicate {
        return Ok(Verdict::Fail(format!(
            "Assigned Session ID {sid} given to our call {ours} while our call {holder} still held \
             it, on one tunnel (§4.4.3: the ID is used \"to multiplex and demultiplex data sent \
             over a tunnel\")"
        )));
    }
    if assigned < 2 {
        return Ok(Verdict::NotApplicable(format!(
            "the LNS took fewer than two calls ({})",
            refused.unwrap_or_default()
        )));
    }
    Ok(Verdict::Pass)
}

fn data_plane_echo(ctx: &mut Ctx) -> Step<Verdict> {
    let mut ctl = established(ctx)?;
    let call = open(&mut ctl)?;
    let mut control = Control::default();
    let mut result = Echo::Nothing;
    // Three tries a second apart: a lost datagram is not a silent PPP peer.
    for identifier in [0x42u8, 0x43, 0x44] {
        result = echo(
            &mut ctl,
            call,
            identifier,
            Duration::from_secs(1),
            &mut control,
        )?;
        if result.answered() || control.ended(&call).is_some() || control.stopccn.is_some() {
            break;
        }
    }
    let _ = ctl.close();
    ctx.note(format!("the call answered: {}", echo_text(&result)));
    Ok(match result {
        Echo::Reply | Echo::Looped => Verdict::Pass,
        Echo::WrongIdentifier(id) => Verdict::Fail(format!(
            "the Echo-Reply carries Identifier {id}, not the request's (RFC 1661 §5.8: \"the \
             Identifier field of the Echo-Request is copied into the Identifier field of the \
             Echo-Reply packet\")"
        )),
        _ if control.ended(&call).is_some() || control.stopccn.is_some() => {
            Verdict::NotApplicable(format!(
                "the LNS ended the call itself ({}): its PPP side does not stay up",
                control
                    .ended(&call)
                    .map(str::to_string)
                    .or(control.stopccn.clone())
                    .unwrap_or_default()
            ))
        }
        other => Verdict::NotApplicable(format!(
            "the LNS's PPP did not answer our LCP Echo-Requests ({}); RFC 1661 §5.8: echoes \
             \"received in any state other than the LCP Opened state SHOULD be silently \
             discarded\", and this probe does not negotiate LCP",
            echo_text(&other)
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::PROBES;
    use crate::probe::catalog::sim_lns::expect;
    use crate::probe::VerdictKind::{NotApplicable, Pass};

    #[test]
    fn a_bare_tunnel_set_passes_and_has_no_ppp_to_echo() {
        let cases = [
            ("session-lifecycle", Pass),
            ("cdn-wrong-session-id", Pass),
            ("session-id-uniqueness", Pass),
            ("data-plane-echo", NotApplicable),
        ];
        expect(PROBES, false, &cases);
    }
}
