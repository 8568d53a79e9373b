//! Tunnel authentication (§5.1.1: Challenge and Challenge Response) and hidden AVPs (§4.3),
//! both keyed by the tunnel secret.

use l2tp::conn::tunnel::challenge_response;
use l2tp::wire::{AvpRepr, AvpType, AvpValue, MessageType};

use super::sccrq::{establish_via, judge_not_established, sccrq, Answer};
use crate::probe::script::{result_text, Ctl, TRIES};
use crate::probe::{Ctx, Probe, Scope, Step, Verdict};

pub const PROBES: &[Probe] = &[
    Probe {
        name: "challenge-right-secret",
        reference: "RFC 2661 §5.1.1, §4.4.3 (Challenge, Challenge Response)",
        sends: "SCCRQ with a Challenge, SCCCN answering the target's Challenge with the shared secret (needs --secret)",
        expects: "the SCCRP's Challenge Response is MD5(2 | secret | challenge), and the SCCCN is acknowledged",
        scope: Scope::Any,
        run: challenge_right_secret,
    },
    Probe {
        name: "challenge-wrong-secret",
        reference: "RFC 2661 §5.1.1, §7.2.1",
        sends: "SCCRQ, then an SCCCN whose Challenge Response is wrong",
        expects: "\"establishment of the tunnel MUST be disallowed\": a StopCCN (result 4 fits; any passes), or at least no tunnel that takes a call; not applicable when the SCCRP carries no Challenge",
        scope: Scope::Any,
        run: challenge_wrong_secret,
    },
    Probe {
        name: "hidden-avps-accepted",
        reference: "RFC 2661 §4.3, §4.4.3, §4.4.4",
        sends: "SCCRQ with Random Vector and hidden Assigned Tunnel ID, Framing Capabilities, Challenge; ICRQ with hidden Assigned Session ID and Call Serial Number (needs --secret)",
        expects: "the SCCRP is addressed to our hidden Tunnel ID and the ICRP to our hidden Session ID: the values were unhidden and used",
        scope: Scope::Any,
        run: hidden_avps_accepted,
    },
];

fn challenge_right_secret(ctx: &mut Ctx) -> Step<Verdict> {
    if ctx.target.secret.is_none() {
        return Ok(Verdict::NotApplicable(
            "needs the target's tunnel secret: --secret".into(),
        ));
    }
    let mut ctl = ctx.ctl()?;
    let sccrp = establish_via(&mut ctl, 0, |_, _| {})?;
    ctx.note(format!(
        "the SCCRP's Challenge Response matched; {}; the SCCCN was acknowledged",
        if sccrp.avp(AvpType::Challenge).is_some() {
            "we answered its Challenge"
        } else {
            "it did not challenge us"
        }
    ));
    let _ = ctl.close();
    Ok(Verdict::Pass)
}

fn challenge_wrong_secret(ctx: &mut Ctx) -> Step<Verdict> {
    let mut ctl = ctx.ctl()?;
    ctl.our_tid = ctl.fresh_id();
    let avps = ctl.sccrq_avps();
    let sccrp = match sccrq(&mut ctl, avps)? {
        Answer::Sccrp(sccrp) => sccrp,
        Answer::StopCcn(stop) => {
            return Ok(Verdict::Inconclusive(format!(
                "the target refused the tunnel: {}",
                result_text(&stop)
            )))
        }
        Answer::Silent => {
            return Ok(Verdict::Inconclusive(format!(
                "no answer to {TRIES} SCCRQs"
            )))
        }
    };
    let Some(challenge) = sccrp.avps.iter().find_map(|avp| match &avp.value {
        AvpValue::Challenge(c) => Some(c.to_vec()),
        AvpValue::HiddenRaw { attr_type, .. } if *attr_type == AvpType::Challenge.to_u16() => {
            Some(Vec::new())
        }
        _ => None,
    }) else {
        let _ = ctl.close();
        return Ok(Verdict::NotApplicable(
            "the target does not challenge (no Challenge AVP in its SCCRP): configure it with a secret and challenges"
                .into(),
        ));
    };
    // The right answer with its bits flipped when we know it; anything else otherwise.
    let secret = ctl
        .secret
        .clone()
        .unwrap_or_else(|| b"not the secret".to_vec());
    let mut wrong = challenge_response(MessageType::Scccn, &secret, &challenge);
    for byte in &mut wrong {
        *byte ^= 0xff;
    }
    ctl.control(
        MessageType::Scccn,
        0,
        vec![AvpRepr::mandatory(AvpValue::ChallengeResponse(wrong))],
    )?;
    judge_not_established(ctx, &mut ctl)
}

/// 16 octets from the probe's own generator.
fn random_vector(ctl: &mut Ctl) -> AvpRepr<'static> {
    let mut value = vec![0u8; 16];
    for pair in value.chunks_mut(2) {
        pair.copy_from_slice(&ctl.fresh_id().to_be_bytes());
    }
    AvpRepr::mandatory(AvpValue::RandomVector(value.into()))
}

fn hidden(value: AvpValue<'static>) -> AvpRepr<'static> {
    AvpRepr {
        hidden: true,
        ..AvpRepr::mandatory(value)
    }
}

fn hidden_avps_accepted(ctx: &mut Ctx) -> Step<Verdict> {
    if ctx.target.secret.is_none() {
        return Ok(Verdict::NotApplicable(
            "hiding needs the target's tunnel secret: --secret".into(),
        ));
    }
    let mut ctl = ctx.ctl()?;
    establish_via(&mut ctl, 0, |ctl, avps| {
        // §4.3: the Random Vector precedes the first hidden AVP; these three "may be hidden".
        let rv = random_vector(ctl);
        for avp in avps.iter_mut() {
            if matches!(
                avp.value,
                AvpValue::AssignedTunnelId(_)
                    | AvpValue::FramingCapabilities(_)
                    | AvpValue::Challenge(_)
            ) {
                avp.hidden = true;
            }
        }
        avps.insert(0, rv);
    })?;
    ctx.note(format!(
        "the SCCRP came to our hidden Assigned Tunnel ID {}",
        ctl.our_tid
    ));
    let sid = ctl.fresh_id();
    let rv = random_vector(&mut ctl);
    let icrq = vec![
        rv,
        hidden(AvpValue::AssignedSessionId(sid)),
        hidden(AvpValue::CallSerialNumber(u32::from(sid))),
        AvpRepr::mandatory(AvpValue::BearerType(3)),
    ];
    let bytes = ctl.control(MessageType::Icrq, 0, icrq)?;
    let reply = ctl.request(&bytes, |msg| {
        matches!(
            msg.message_type(),
            Some(MessageType::Icrp | MessageType::Cdn | MessageType::StopCcn)
        )
    })?;
    let verdict = match reply {
        None => Verdict::Fail("no answer to the ICRQ with a hidden Assigned Session ID".into()),
        Some((_, msg)) if msg.message_type() != Some(MessageType::Icrp) => {
            let _ = ctl.ack();
            Verdict::Fail(format!(
                "the ICRQ with a hidden Assigned Session ID was answered with {}: {}",
                msg.message_type().map_or("ZLB", MessageType::name),
                result_text(&msg)
            ))
        }
        Some((_, icrp)) if icrp.header.session_id != sid => {
            let _ = ctl.ack();
            Verdict::Fail(format!(
                "the ICRP is addressed to Session ID {}, not our hidden Assigned Session ID {sid}",
                icrp.header.session_id
            ))
        }
        Some((_, icrp)) => {
            let peer_sid = match icrp.avp(AvpType::AssignedSessionId) {
                Some(AvpValue::AssignedSessionId(id)) => *id,
                _ => 0,
            };
            let iccn = ctl.iccn(peer_sid)?;
            let _ = ctl.acked(&iccn);
            ctx.note(format!(
                "the ICRP came to our hidden Assigned Session ID {sid}"
            ));
            Verdict::Pass
        }
    };
    let _ = ctl.close();
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::PROBES;
    use crate::probe::catalog::sim_lns::expect;
    use crate::probe::VerdictKind::{NotApplicable, Pass};

    #[test]
    fn with_the_secret_every_probe_passes_and_without_it_none_applies() {
        let cases: Vec<_> = PROBES.iter().map(|p| (p.name, Pass)).collect();
        expect(PROBES, true, &cases);
        let cases: Vec<_> = PROBES.iter().map(|p| (p.name, NotApplicable)).collect();
        expect(PROBES, false, &cases);
    }
}
