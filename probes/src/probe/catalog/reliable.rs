//! The reliable delivery of control messages (§5.8): reordering, duplicates, the peer's send
//! window, retransmission with back-off and giving up.

use std::time::Duration;

use l2tp::conn::reliable::seq_lt;
use l2tp::wire::{AvpRepr, AvpType, AvpValue, ControlMessage, HeaderRepr, MessageType};

use crate::probe::script::{result_text, Ctl, Seen, TRIES};
use crate::probe::{Ctx, Probe, Scope, Step, Verdict};

pub const PROBES: &[Probe] = &[
    Probe {
        name: "out-of-order-ns-in-window",
        reference: "RFC 2661 §5.8",
        sends: "on an established tunnel, HELLO Ns=n+1 before HELLO Ns=n; retransmits what stays \
                unacknowledged",
        expects: "no Nr past n while Ns=n is missing; once n arrives Nr=n+1 or n+2, and \
                  Nr=n+2 after our retransmission of n+1 if that one was discarded",
        scope: Scope::Any,
        run: out_of_order_ns_in_window,
    },
    Probe {
        name: "duplicate-ns-reacked",
        reference: "RFC 2661 §5.8",
        sends: "a call (ICRQ, ICRP, ICCN), then the acknowledged ICRQ again with its old Ns \
                (Nr updated, as a retransmission carries it)",
        expects: "an acknowledgement (ZLB, or Nr on another message) and no second processing: no \
                  ICRP or StopCCN in answer to the duplicate",
        scope: Scope::Any,
        run: duplicate_ns_reacked,
    },
    Probe {
        name: "receive-window-respected",
        reference: "RFC 2661 §5.8, §4.4.3 Receive Window Size",
        sends: "SCCRQ with Receive Window Size 1; on the tunnel three ICRQs back to back; \
                each ICRP acknowledged only after a pause",
        expects: "never more than one unacknowledged message from the LNS: ICRP n+1 only \
                  after our ZLB acknowledges ICRP n (retransmitting the outstanding one is fine)",
        scope: Scope::Any,
        run: receive_window_respected,
    },
    Probe {
        name: "retransmission-schedule-and-give-up",
        reference: "RFC 2661 §5.8, §5.7",
        sends: "SCCRQ, then nothing: no SCCCN, no acknowledgement of the SCCRP; watches for 40 s",
        expects: "the SCCRP retransmitted (same Ns) with growing intervals up to a cap of \
                  at least 8 s; whether the tunnel is cleared (StopCCN, or silence and no \
                  acknowledgement of a late SCCCN) within the 40 s is reported",
        scope: Scope::Any,
        run: retransmission_schedule_and_give_up,
    },
];

/// After a partial acknowledgement, how long a queued out-of-order message gets to be
/// acknowledged as well before we retransmit it.
const QUEUED_ACK_WAIT: Duration = Duration::from_millis(500);
/// How long the give-up probe watches (the RFC's recommended full cycle is 31 s).
const GIVE_UP_WATCH: Duration = Duration::from_secs(40);
/// §5.8: "This cap MUST be no less than 8 seconds per retransmission" (less 10% for timers).
const MIN_CAP: f64 = 7.2;
/// An interval below the cap must exceed the one before by this factor to count as backing off
/// (lenient: §5.8 gives doubling only as an example).
const MIN_GROWTH: f64 = 1.1;

fn established(ctx: &Ctx) -> Step<Ctl> {
    let mut ctl = ctx.ctl()?;
    ctl.establish()?;
    Ok(ctl)
}

/// The Nr a message carries, if any.
fn nr_of(message: &ControlMessage) -> Option<u16> {
    message.header.sequence.map(|s| s.nr)
}

fn kind_name(message: &ControlMessage) -> &'static str {
    message.message_type().map_or("ZLB", MessageType::name)
}

fn hello(ctl: &Ctl, ns: u16) -> Step<Vec<u8>> {
    let header = HeaderRepr::control(ctl.peer_tid, 0, ns, ctl.nr);
    ctl.encode(header, MessageType::Hello, Vec::new())
}

fn out_of_order_ns_in_window(ctx: &mut Ctx) -> Step<Verdict> {
    let mut ctl = established(ctx)?;
    let first = ctl.ns;
    let second = first.wrapping_add(1);
    let after_both = first.wrapping_add(2);
    ctl.ns = after_both;
    ctx.note(format!(
        "the gap: HELLO Ns={second} goes first, HELLO Ns={first} after it"
    ));
    let late = hello(&ctl, second)?;
    ctl.send_bytes(&late)?;
    let mut past_gap = None;
    let mut stop = None;
    ctl.wait(Duration::from_secs(1), |msg| {
        if let Some(nr) = nr_of(msg) {
            if seq_lt(first, nr) && past_gap.is_none() {
                past_gap = Some((kind_name(msg), nr));
            }
        }
        if msg.message_type() == Some(MessageType::StopCcn) {
            stop = Some(result_text(msg));
        }
        false
    });
    if let Some((kind, nr)) = past_gap {
        let _ = ctl.close();
        return Ok(Verdict::Fail(format!(
            "while Ns={first} was missing the LNS sent {kind} with Nr={nr}: it acknowledged past \
             the gap (§5.8: Nr is \"the sequence number of the message the peer expects to \
             receive next\")"
        )));
    }
    if let Some(why) = stop {
        return Ok(Verdict::Fail(format!(
            "the LNS tore the tunnel down over an out-of-order message ({why}); §5.8 allows only \
             queueing or discarding it"
        )));
    }
    ctx.note(format!(
        "nothing acknowledged past Ns={first} while the gap was open"
    ));
    let mut best = first;
    let mut send_first = true;
    for attempt in 0..TRIES {
        if send_first {
            let bytes = hello(&ctl, first)?;
            ctl.send_bytes(&bytes)?;
        }
        if attempt > 0 || !send_first {
            // §5.8: a retransmission carries the same Ns and the current Nr.
            ctx.note(format!("retransmitting HELLO Ns={second}"));
            let bytes = hello(&ctl, second)?;
            ctl.send_bytes(&bytes)?;
        }
        let start = best;
        // Any progress ends the first wait; after a partial ack (Nr=n+1) the queued Ns=n+1 gets
        // a moment more to be acknowledged too.
        for (timeout, partial_ok) in [(ctl.reply_timeout, true), (QUEUED_ACK_WAIT, false)] {
            if best == after_both || (!partial_ok && best == start) {
                break;
            }
            let got = ctl.wait(timeout, |msg| {
                if let Some(nr) = nr_of(msg) {
                    if seq_lt(best, nr) && !seq_lt(after_both, nr) {
                        best = nr;
                    }
                }
                best == after_both || (partial_ok && best != start)
            });
            if let Some((_, msg)) = got {
                if !msg.is_zlb() {
                    let _ = ctl.ack();
                }
            }
        }
        if best == after_both {
            ctx.note(format!(
                "both HELLOs acknowledged (Nr={after_both}) after {} of our retransmissions",
                attempt
            ));
            let _ = ctl.close();
            return Ok(Verdict::Pass);
        }
        if best == second {
            if send_first {
                ctx.note(format!(
                    "Nr={second}: Ns={first} taken, the out-of-order Ns={second} was discarded \
                     (§5.8 allows it); we retransmit it"
                ));
            }
            send_first = false;
        }
    }
    let _ = ctl.close();
    Ok(Verdict::Fail(if best == first {
        format!(
            "HELLO Ns={first} (the gap) was never acknowledged, also after {TRIES} sends \
             (§5.8: the receiver acknowledges with Nr)"
        )
    } else {
        format!(
            "Ns={second} was never acknowledged (Nr stayed {best}), also after {} \
             retransmissions (§5.8)",
            TRIES - 1
        )
    }))
}

fn icrq_avps(ctl: &mut Ctl, our_sid: u16) -> Vec<AvpRepr<'static>> {
    vec![
        AvpRepr::mandatory(AvpValue::AssignedSessionId(our_sid)),
        AvpRepr::mandatory(AvpValue::CallSerialNumber(u32::from(ctl.fresh_id()))),
        AvpRepr::mandatory(AvpValue::BearerType(3)),
    ]
}

fn duplicate_ns_reacked(ctx: &mut Ctx) -> Step<Verdict> {
    let mut ctl = established(ctx)?;
    let our_sid = ctl.fresh_id();
    let icrq_ns = ctl.ns;
    let avps = icrq_avps(&mut ctl, our_sid);
    let icrq = ctl.control(MessageType::Icrq, 0, avps.clone())?;
    let got = ctl.request(&icrq, |msg| {
        msg.header.session_id == our_sid
            && matches!(
                msg.message_type(),
                Some(MessageType::Icrp | MessageType::Cdn | MessageType::StopCcn)
            )
    })?;
    let Some((_, reply)) = got else {
        return Err(Verdict::Inconclusive("no answer to our ICRQ".into()));
    };
    let Some(AvpValue::AssignedSessionId(peer_sid)) = reply.avp(AvpType::AssignedSessionId) else {
        return Err(Verdict::Inconclusive(format!(
            "the ICRQ was answered with {} ({}), not an ICRP with a Session ID",
            kind_name(&reply),
            result_text(&reply)
        )));
    };
    let peer_sid = *peer_sid;
    let iccn = ctl.iccn(peer_sid)?;
    ctl.acked(&iccn)?;
    ctx.note(format!(
        "call up; the ICRQ (Ns={icrq_ns}) is acknowledged: resending it as a duplicate"
    ));
    let dup = ctl.encode(
        HeaderRepr::control(ctl.peer_tid, 0, icrq_ns, ctl.nr),
        MessageType::Icrq,
        avps,
    )?;
    let covers = icrq_ns.wrapping_add(1);
    let mut acked = false;
    let mut twice: Option<String> = None;
    let mut judge = |msg: &ControlMessage, acked: &mut bool| {
        if nr_of(msg).is_some_and(|nr| !seq_lt(nr, covers)) {
            *acked = true;
        }
        // A new ICRP (a second call) or a StopCCN answers the duplicate as a new message. A CDN
        // is not judged: the LNS may end the call for its own reasons (its PPP side gone).
        if matches!(
            msg.message_type(),
            Some(MessageType::Icrp | MessageType::StopCcn)
        ) && twice.is_none()
        {
            twice = Some(format!("{} ({})", kind_name(msg), result_text(msg)));
        }
    };
    for attempt in 0..2 {
        if attempt > 0 {
            ctx.note("no acknowledgement: sending the duplicate once more");
        }
        ctl.send_bytes(&dup)?;
        ctl.wait(ctl.reply_timeout, |msg| {
            judge(msg, &mut acked);
            acked
        });
        if acked {
            break;
        }
    }
    // A second processing would answer at once; watch a little longer for it.
    ctl.wait(Duration::from_millis(500), |msg| {
        judge(msg, &mut acked);
        false
    });
    let _ = ctl.close();
    if let Some(what) = twice {
        return Ok(Verdict::Fail(format!(
            "the duplicate ICRQ was processed again: the LNS sent {what} (§5.8: a duplicate is \
             \"ignored from processing\")"
        )));
    }
    if !acked {
        return Ok(Verdict::Fail(
            "the duplicate ICRQ was not acknowledged (§5.8: \"receipt of duplicate messages MUST \
             be acknowledged\")"
                .into(),
        ));
    }
    Ok(Verdict::Pass)
}

fn receive_window_respected(ctx: &mut Ctx) -> Step<Verdict> {
    const WINDOW: u16 = 1;
    const CALLS: usize = 3;
    let mut ctl = ctx.ctl()?;
    ctl.establish_with(|avps| {
        for avp in avps.iter_mut() {
            if let AvpValue::ReceiveWindowSize(w) = &mut avp.value {
                *w = WINDOW;
            }
        }
    })?;
    ctx.note(format!(
        "tunnel up with our Receive Window Size {WINDOW}; {CALLS} ICRQs back to back"
    ));
    for _ in 0..CALLS {
        let sid = ctl.fresh_id();
        let avps = icrq_avps(&mut ctl, sid);
        ctl.control(MessageType::Icrq, 0, avps)?;
    }
    let mut overrun: Option<String> = None;
    let mut answered = 0usize;
    for step in 0..CALLS {
        let expect = ctl.nr;
        let is_next = |msg: &ControlMessage| {
            !msg.is_zlb() && msg.header.sequence.is_some_and(|s| s.ns == expect)
        };
        let mut seen: Vec<Seen> =
            ctl.watch(ctl.reply_timeout.saturating_mul(TRIES as u32), is_next);
        let got = seen.iter().any(|s| is_next(&s.message));
        // Hold our acknowledgement back: an LNS that ignores our window sends the next one now.
        let hold = if step == 0 {
            Duration::from_millis(1500)
        } else {
            Duration::from_millis(700)
        };
        seen.extend(ctl.watch(hold, |_| false));
        for s in &seen {
            let Some(seq) = s.message.header.sequence else {
                continue;
            };
            if s.message.is_zlb() || seq.ns == expect || seq_lt(seq.ns, expect) {
                continue;
            }
            overrun.get_or_insert_with(|| {
                format!(
                    "{} Ns={} arrived {:.0} ms into the wait while Ns={expect} was still \
                     unacknowledged: {} outstanding with our window of {WINDOW}",
                    kind_name(&s.message),
                    seq.ns,
                    s.at.as_secs_f64() * 1000.0,
                    seq.ns.wrapping_sub(expect).wrapping_add(1)
                )
            });
        }
        if overrun.is_some() || !got {
            break;
        }
        answered += 1;
        let what: Vec<&str> = seen
            .iter()
            .filter(|s| is_next(&s.message))
            .map(|s| kind_name(&s.message))
            .collect();
        ctx.note(format!(
            "Ns={expect} ({}) alone outstanding for {} ms (seen {} time(s)); acknowledging it",
            what.first().copied().unwrap_or("?"),
            hold.as_millis(),
            what.len()
        ));
        ctl.nr = expect.wrapping_add(1);
        ctl.ack()?;
    }
    let _ = ctl.close();
    if let Some(why) = overrun {
        return Ok(Verdict::Fail(format!(
            "{why} (§5.8: \"Once N have been sent, it must wait for an acknowledgment that \
             advances the window before sending new control messages\")"
        )));
    }
    match answered {
        0 => Ok(Verdict::Inconclusive(
            "the LNS answered none of the ICRQs".into(),
        )),
        1 => Ok(Verdict::NotApplicable(
            "the LNS answered only one of three ICRQs: it never had more than one message to \
             send, so the window was never tested"
                .into(),
        )),
        n => {
            ctx.note(format!(
                "{n} messages from the LNS, each sent only after we acknowledged the one before"
            ));
            Ok(Verdict::Pass)
        }
    }
}

fn retransmission_schedule_and_give_up(ctx: &mut Ctx) -> Step<Verdict> {
    let mut ctl = ctx.ctl()?;
    ctl.our_tid = ctl.fresh_id();
    let avps = ctl.sccrq_avps();
    let reply = ctl.sccrq_with(avps)?.ok_or_else(|| {
        Verdict::Inconclusive(format!("no SCCRP from {} to our SCCRQs", ctl.target))
    })?;
    if reply.message_type() != Some(MessageType::Sccrp) {
        return Err(Verdict::Inconclusive(format!(
            "the target refused the tunnel: {}",
            result_text(&reply)
        )));
    }
    let sccrp_ns = reply.header.sequence.map_or(0, |s| s.ns);
    ctx.note(format!(
        "SCCRP (Ns={sccrp_ns}) received; now silent for {} s: no SCCCN, no acknowledgement",
        GIVE_UP_WATCH.as_secs()
    ));
    let seen = ctl.watch(GIVE_UP_WATCH, |msg| {
        msg.message_type() == Some(MessageType::StopCcn)
    });
    let mut times = vec![0.0f64];
    let mut stop: Option<(f64, u16, String)> = None;
    for s in &seen {
        // `watch` began right after the SCCRP arrived.
        let at = s.at.as_secs_f64();
        match s.message.message_type() {
            Some(MessageType::Sccrp)
                if s.message.header.sequence.is_some_and(|q| q.ns == sccrp_ns) =>
            {
                times.push(at)
            }
            Some(MessageType::StopCcn) => {
                let ns = s.message.header.sequence.map_or(0, |q| q.ns);
                stop = Some((at, ns, result_text(&s.message)));
            }
            _ => {}
        }
    }
    let intervals: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let list: Vec<String> = times.iter().skip(1).map(|t| format!("+{t:.2} s")).collect();
    ctx.note(format!(
        "SCCRP retransmissions: {} at [{}]; intervals [{}]",
        list.len(),
        list.join(", "),
        intervals
            .iter()
            .map(|i| format!("{i:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if intervals.is_empty() {
        let _ = ctl.close();
        return Ok(Verdict::Fail(format!(
            "the unacknowledged SCCRP was never retransmitted in {} s (§5.8: \"After a period \
             of time ... passes without acknowledgement, the message is retransmitted\")",
            GIVE_UP_WATCH.as_secs()
        )));
    }
    if let Some(first_interval) = intervals.first() {
        if (first_interval - 1.0).abs() > 0.3 {
            ctx.note(format!(
                "first retransmission after {first_interval:.2} s (§5.8 recommends 1 s; not a \
                 requirement)"
            ));
        }
    }
    let mut no_backoff = None;
    for (k, pair) in intervals.windows(2).enumerate() {
        let (before, now) = (pair[0], pair[1]);
        if now < MIN_CAP && now < before * MIN_GROWTH {
            no_backoff.get_or_insert((k + 2, before, now));
        }
    }
    // Cleared? A StopCCN says so; otherwise a late SCCCN must go unacknowledged.
    match &stop {
        Some((at, ns, why)) => {
            ctx.note(format!("gave up: StopCCN at +{at:.2} s ({why})"));
            ctl.nr = ns.wrapping_add(1);
            let _ = ctl.ack();
        }
        None => {
            let scccn = ctl.scccn_for(&reply).unwrap_or_default();
            let ns = ctl.ns.wrapping_add(1);
            ctl.control(MessageType::Scccn, 0, scccn)?;
            let alive = ctl
                .wait(ctl.reply_timeout, |msg| nr_of(msg) == Some(ns))
                .is_some();
            if alive {
                ctx.note(format!(
                    "not cleared after {} s: our late SCCCN was acknowledged (§5.8 asks for \
                     clearing after \"several\" retransmissions, 5 recommended); closing it",
                    GIVE_UP_WATCH.as_secs()
                ));
                let _ = ctl.close();
            } else {
                let last = times.last().copied().unwrap_or(0.0);
                ctx.note(format!(
                    "gave up silently: no retransmission after +{last:.2} s, and our late SCCCN \
                     was not acknowledged"
                ));
            }
        }
    }
    if let Some((n, before, now)) = no_backoff {
        return Ok(Verdict::Fail(format!(
            "no back-off: retransmission {n} came {now:.2} s after the one before, which itself \
             waited {before:.2} s (§5.8: \"Each subsequent retransmission of a message MUST employ \
             an exponential backoff interval\"; a cap \"MUST be no less than 8 seconds\")"
        )));
    }
    Ok(Verdict::Pass)
}

#[cfg(test)]
mod tests {
    use super::PROBES;
    use crate::probe::catalog::sim_lns::expect;
    use crate::probe::VerdictKind::Pass;

    #[test]
    fn a_correct_lns_passes_in_virtual_time() {
        // The give-up probe watches 40 s: virtual seconds here.
        let cases: Vec<_> = PROBES.iter().map(|p| (p.name, Pass)).collect();
        expect(PROBES, false, &cases);
    }
}
