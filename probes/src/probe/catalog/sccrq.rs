//! What the SCCRQ probes share: sending an SCCRQ as crafted (AVPs, header bits) and judging
//! what the target makes of it: a tunnel that must come up, or one that must not.

use std::net::SocketAddrV4;
use std::time::Duration;

use l2tp::conn::tunnel::challenge_response;
use l2tp::wire::{AvpRepr, AvpType, AvpValue, ControlMessage, HeaderRepr, MessageType};

use crate::probe::script::{result_of, result_text, Ctl, TRIES};
use crate::probe::{Ctx, Step, Verdict};

/// How the target answered an SCCRQ of ours.
pub(super) enum Answer {
    Sccrp(ControlMessage<'static>),
    StopCcn(ControlMessage<'static>),
    Silent,
}

/// An unassigned vendor-0 Attribute Type (RFC 2661 defines 0–39, later RFCs stay far below).
pub(super) const UNASSIGNED_TYPE: u16 = 32767;
pub(super) const SOME_VENDOR: u16 = 9999;

/// Waiting for an answer that we expect not to come: the target answers at once on a LAN.
pub(super) fn grace(ctl: &Ctl) -> Duration {
    (ctl.reply_timeout / 4).clamp(Duration::from_millis(100), Duration::from_millis(500))
}

/// The bytes of our SCCRQ (Tunnel ID 0, Ns 0, Nr 0) with these AVPs; the header's reserved
/// bits as given.
pub(super) fn sccrq_bytes(ctl: &Ctl, avps: Vec<AvpRepr<'static>>, reserved: u16) -> Step<Vec<u8>> {
    let header = HeaderRepr {
        reserved,
        ..HeaderRepr::control(0, 0, 0, 0)
    };
    ctl.encode(header, MessageType::Sccrq, avps)
}

/// Whether `message` answers an SCCRQ: an SCCRP or StopCCN to any Tunnel ID, since each SCCRQ
/// goes from a fresh socket (a target that failed to read our Assigned Tunnel ID addresses its
/// StopCCN to 0 or to whatever it made of it).
pub(super) fn answers_sccrq(_our_tid: u16, message: &ControlMessage) -> bool {
    matches!(
        message.message_type(),
        Some(MessageType::Sccrp | MessageType::StopCcn)
    )
}

/// Takes the peer's address, Tunnel ID and window from its SCCRP or StopCCN.
pub(super) fn adopt(ctl: &mut Ctl, from: SocketAddrV4, message: &ControlMessage) {
    ctl.peer = from;
    if let Some(AvpValue::AssignedTunnelId(id)) = message.avp(AvpType::AssignedTunnelId) {
        ctl.peer_tid = *id;
    }
    if let Some(AvpValue::ReceiveWindowSize(w)) = message.avp(AvpType::ReceiveWindowSize) {
        ctl.peer_window = *w;
    }
}

/// Sends SCCRQ bytes (a new tunnel of `ctl`'s) and waits for the answer, retransmitting. A
/// StopCCN is acknowledged.
fn sccrq_raw(ctl: &mut Ctl, bytes: &[u8]) -> Step<Answer> {
    ctl.peer = ctl.target;
    ctl.peer_tid = 0;
    ctl.ns = 1;
    ctl.nr = 0;
    ctl.send_bytes(bytes)?;
    let our_tid = ctl.our_tid;
    let got = ctl.request(bytes, |m| answers_sccrq(our_tid, m))?;
    Ok(match got {
        None => Answer::Silent,
        Some((from, message)) => {
            adopt(ctl, from, &message);
            if message.message_type() == Some(MessageType::StopCcn) {
                let _ = ctl.ack();
                Answer::StopCcn(message)
            } else {
                Answer::Sccrp(message)
            }
        }
    })
}

pub(super) fn sccrq(ctl: &mut Ctl, avps: Vec<AvpRepr<'static>>) -> Step<Answer> {
    let bytes = sccrq_bytes(ctl, avps, 0)?;
    sccrq_raw(ctl, &bytes)
}

/// The Challenge in a list of our AVPs.
fn challenge_in(avps: &[AvpRepr]) -> Option<Vec<u8>> {
    avps.iter().find_map(|avp| match &avp.value {
        AvpValue::Challenge(c) => Some(c.to_vec()),
        _ => None,
    })
}

/// The SCCCN's AVPs: the Challenge Response to the SCCRP's Challenge, if any.
fn scccn_avps(ctl: &Ctl, sccrp: &ControlMessage) -> Step<Vec<AvpRepr<'static>>> {
    let challenged = sccrp.avps.iter().any(|avp| {
        avp.value.vendor_id() == 0 && avp.value.attr_type() == AvpType::Challenge.to_u16()
    });
    match (sccrp.avp(AvpType::Challenge), &ctl.secret) {
        (Some(AvpValue::Challenge(challenge)), Some(secret)) => Ok(vec![AvpRepr::mandatory(
            AvpValue::ChallengeResponse(challenge_response(MessageType::Scccn, secret, challenge)),
        )]),
        _ if challenged => Err(Verdict::Inconclusive(
            "the target challenges us: give its tunnel secret with --secret".into(),
        )),
        _ => Ok(Vec::new()),
    }
}

/// Opens a tunnel like `Ctl::establish`, with the SCCRQ's AVPs edited and its header's reserved
/// bits set as given. Whatever keeps the tunnel from coming up is the target's failure: these
/// probes send what the RFC says must be accepted. Returns the SCCRP.
pub(super) fn establish_via(
    ctl: &mut Ctl,
    reserved: u16,
    edit: impl FnOnce(&mut Ctl, &mut Vec<AvpRepr<'static>>),
) -> Step<ControlMessage<'static>> {
    ctl.our_tid = ctl.fresh_id();
    let mut avps = ctl.sccrq_avps();
    let challenge = challenge_in(&avps);
    edit(ctl, &mut avps);
    let bytes = sccrq_bytes(ctl, avps, reserved)?;
    let sccrp = match sccrq_raw(ctl, &bytes)? {
        Answer::Silent => {
            return Err(Verdict::Fail(format!(
            "no answer to {TRIES} SCCRQs (a well-formed SCCRQ was answered before the probes ran)"
        )))
        }
        Answer::StopCcn(stop) => {
            return Err(Verdict::Fail(format!(
                "the SCCRQ was refused with a StopCCN: {}",
                result_text(&stop)
            )))
        }
        Answer::Sccrp(sccrp) => sccrp,
    };
    if sccrp.header.tunnel_id != ctl.our_tid {
        return Err(Verdict::Fail(format!(
            "the SCCRP is addressed to Tunnel ID {}, not to our Assigned Tunnel ID {} (§4.4.3)",
            sccrp.header.tunnel_id, ctl.our_tid
        )));
    }
    if ctl.peer_tid == 0 {
        return Err(Verdict::Fail(
            "SCCRP without an Assigned Tunnel ID (§6.2: mandatory)".into(),
        ));
    }
    if let (Some(challenge), Some(secret)) = (challenge, ctl.secret.clone()) {
        let expected = challenge_response(MessageType::Sccrp, &secret, &challenge);
        match sccrp.avp(AvpType::ChallengeResponse) {
            Some(AvpValue::ChallengeResponse(got)) if *got == expected => {}
            Some(_) => {
                return Err(Verdict::Fail(
                    "the SCCRP's Challenge Response does not match our secret (is --secret right?)"
                        .into(),
                ))
            }
            None => {
                return Err(Verdict::Fail(
                    "we sent a Challenge; the SCCRP has no Challenge Response (§4.4.3: MUST)"
                        .into(),
                ))
            }
        }
    }
    let avps = scccn_avps(ctl, &sccrp)?;
    let scccn = ctl.control(MessageType::Scccn, 0, avps)?;
    ctl.acked(&scccn)
        .map_err(|v| v.blamed(|why| format!("SCCCN: {why} (§5.8)")))?;
    Ok(sccrp)
}

/// After our SCCCN (right or wrong): passes when the target tears the tunnel down or at least
/// takes no call on it; fails when the tunnel carries a call (ICRQ answered with ICRP).
pub(super) fn judge_not_established(ctx: &Ctx, ctl: &mut Ctl) -> Step<Verdict> {
    let ns = ctl.ns;
    let mut acked = false;
    let stop = ctl.wait(ctl.reply_timeout, |msg| {
        if msg.header.sequence.is_some_and(|s| s.nr == ns) {
            acked = true;
        }
        msg.message_type() == Some(MessageType::StopCcn)
    });
    if let Some((from, stop)) = stop {
        adopt(ctl, from, &stop);
        let _ = ctl.ack();
        ctx.note(format!("torn down: {}", result_text(&stop)));
        return Ok(Verdict::Pass);
    }
    ctx.note(format!(
        "no StopCCN within {:?}; the SCCCN was {}acknowledged: does the tunnel take a call?",
        ctl.reply_timeout,
        if acked { "" } else { "not " }
    ));
    let sid = ctl.fresh_id();
    let icrq = vec![
        AvpRepr::mandatory(AvpValue::AssignedSessionId(sid)),
        AvpRepr::mandatory(AvpValue::CallSerialNumber(u32::from(sid))),
        AvpRepr::mandatory(AvpValue::BearerType(3)),
    ];
    ctl.control(MessageType::Icrq, 0, icrq)?;
    let reply = ctl.wait(ctl.reply_timeout, |msg| {
        matches!(
            msg.message_type(),
            Some(MessageType::Icrp | MessageType::Cdn | MessageType::StopCcn)
        )
    });
    Ok(match reply {
        Some((_, msg)) if msg.message_type() == Some(MessageType::Icrp) => {
            let _ = ctl.close();
            Verdict::Fail(
                "the tunnel was established: the SCCCN was acknowledged and an ICRQ on it was answered with ICRP".into(),
            )
        }
        Some((from, msg)) => {
            if msg.message_type() == Some(MessageType::StopCcn) {
                adopt(ctl, from, &msg);
            }
            let _ = ctl.ack();
            ctx.note(format!(
                "the ICRQ was refused with {} ({}): no usable tunnel",
                msg.message_type().map_or("ZLB", MessageType::name),
                result_text(&msg)
            ));
            if msg.message_type() == Some(MessageType::Cdn) {
                let _ = ctl.close();
            }
            Verdict::Pass
        }
        None => {
            ctx.note("the ICRQ was not answered: no usable tunnel");
            Verdict::Pass
        }
    })
}

/// An SCCRQ the target must not turn into a tunnel. `fitting_error` is the Error Code the RFC
/// defines for the case (noted when another comes; any StopCCN passes).
pub(super) fn judge_refusal(
    ctx: &Ctx,
    ctl: &mut Ctl,
    avps: Vec<AvpRepr<'static>>,
    fitting_error: Option<u16>,
) -> Step<Verdict> {
    match sccrq(ctl, avps)? {
        Answer::Silent => {
            ctx.note(format!("no answer to {TRIES} SCCRQs: discarded, no tunnel"));
            Ok(Verdict::Pass)
        }
        Answer::StopCcn(stop) => {
            ctx.note(format!("refused: {}", result_text(&stop)));
            if let Some(want) = fitting_error {
                if result_of(&stop) != Some((2, Some(want))) {
                    ctx.note(format!(
                        "(the RFC's code for this is result 2, error {want}; the RFC does not require it)"
                    ));
                }
            }
            Ok(Verdict::Pass)
        }
        Answer::Sccrp(sccrp) => {
            ctx.note("answered with SCCRP: sending SCCCN to see whether a tunnel comes up");
            let avps = scccn_avps(ctl, &sccrp).inspect_err(|_| {
                let _ = ctl.close();
            })?;
            ctl.control(MessageType::Scccn, 0, avps)?;
            judge_not_established(ctx, ctl)
        }
    }
}

/// A tunnel the RFC says must come up as usual; closed again.
pub(super) fn must_establish(
    ctx: &mut Ctx,
    reserved: u16,
    edit: impl FnOnce(&mut Ctl, &mut Vec<AvpRepr<'static>>),
) -> Step<Verdict> {
    let mut ctl = ctx.ctl()?;
    establish_via(&mut ctl, reserved, edit)?;
    ctx.note(format!(
        "established: our Tunnel ID {}, theirs {}",
        ctl.our_tid, ctl.peer_tid
    ));
    let _ = ctl.close();
    Ok(Verdict::Pass)
}
