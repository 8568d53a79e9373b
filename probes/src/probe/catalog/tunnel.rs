//! Tunnel establishment and teardown, the control-connection AVP rules, header checks.

use l2tp::wire::{AvpValue, MessageType};

use crate::probe::script::m;

use crate::probe::{Ctx, Probe, Scope, Verdict};

pub const PROBES: &[Probe] = &[
    Probe {
        name: "establishment",
        reference: "RFC 2661 §5.1",
        sends: "SCCRQ, then SCCCN answering the SCCRP",
        expects: "an SCCRP with an Assigned Tunnel ID, then an acknowledgement of the SCCCN",
        scope: Scope::Any,
        run: establishment,
    },
    Probe {
        name: "stopccn-cleans-up",
        reference: "RFC 2661 §5.7, §6.4",
        sends: "StopCCN on an established tunnel, then an ICRQ on the same Tunnel ID",
        expects: "a ZLB ACK of the StopCCN (§5.7: MUST); afterwards the tunnel takes no new call (no ICRP)",
        scope: Scope::Any,
        run: stopccn_cleans_up,
    },
];

fn establishment(ctx: &mut Ctx) -> Verdict {
    let mut ctl = match ctx.ctl() {
        Ok(ctl) => ctl,
        Err(v) => return v,
    };
    if let Err(v) = ctl.establish() {
        return v;
    }
    ctx.note(format!(
        "established: our Tunnel ID {}, theirs {}",
        ctl.our_tid, ctl.peer_tid
    ));
    let _ = ctl.close();
    Verdict::Pass
}

fn stopccn_cleans_up(ctx: &mut Ctx) -> Verdict {
    let mut ctl = match ctx.ctl() {
        Ok(ctl) => ctl,
        Err(v) => return v,
    };
    if let Err(v) = ctl.establish() {
        return v;
    }
    if let Err(v) = ctl.close() {
        return match v {
            Verdict::Inconclusive(why) => Verdict::Fail(format!("StopCCN: {why}")),
            other => other,
        };
    }
    // §5.7: the receiver of a StopCCN acknowledges it and may keep the tunnel a full
    // retransmission cycle, but only to acknowledge retransmissions: it takes no new call.
    let sid = ctl.fresh_id();
    let icrq = vec![
        m(AvpValue::AssignedSessionId(sid)),
        m(AvpValue::CallSerialNumber(1)),
    ];
    if let Err(v) = ctl.control(MessageType::Icrq, 0, icrq) {
        return v;
    }
    match ctl.wait(ctl.reply_timeout, |msg| {
        msg.message_type() == Some(MessageType::Icrp)
    }) {
        Some(_) => Verdict::Fail(
            "an ICRQ on the tunnel after its StopCCN was answered with ICRP: the tunnel still lives".into(),
        ),
        None => Verdict::Pass,
    }
}
