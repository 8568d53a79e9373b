//! A tunnel's life as a correct LAC lives it: establishment (§5.1), keepalive (§6.5) and
//! teardown (§5.7).

use l2tp::wire::{AvpRepr, AvpValue, MessageType};

use crate::probe::{Ctx, Probe, Scope, Step, Verdict};

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
    Probe {
        name: "hello-answered",
        reference: "RFC 2661 §6.5, §5.8",
        sends: "HELLO on an established tunnel",
        expects: "an acknowledgement: a ZLB ACK or a message whose Nr covers the HELLO (§6.5)",
        scope: Scope::Any,
        run: hello_answered,
    },
];

fn establishment(ctx: &mut Ctx) -> Step<Verdict> {
    let mut ctl = ctx.ctl()?;
    ctl.establish()?;
    ctx.note(format!(
        "established: our Tunnel ID {}, theirs {}",
        ctl.our_tid, ctl.peer_tid
    ));
    let _ = ctl.close();
    Ok(Verdict::Pass)
}

fn stopccn_cleans_up(ctx: &mut Ctx) -> Step<Verdict> {
    let mut ctl = ctx.ctl()?;
    ctl.establish()?;
    ctl.close()
        .map_err(|v| v.blamed(|why| format!("StopCCN: {why}")))?;
    // §5.7: the receiver of a StopCCN acknowledges it and may keep the tunnel a full
    // retransmission cycle, but only to acknowledge retransmissions: it takes no new call.
    let sid = ctl.fresh_id();
    let icrq = vec![
        AvpRepr::mandatory(AvpValue::AssignedSessionId(sid)),
        AvpRepr::mandatory(AvpValue::CallSerialNumber(1)),
    ];
    ctl.control(MessageType::Icrq, 0, icrq)?;
    Ok(
        match ctl.wait(ctl.reply_timeout, |msg| {
            msg.message_type() == Some(MessageType::Icrp)
        }) {
            Some(_) => Verdict::Fail(
                "an ICRQ on the tunnel after its StopCCN was answered with ICRP: the tunnel still lives".into(),
            ),
            None => Verdict::Pass,
        },
    )
}

fn hello_answered(ctx: &mut Ctx) -> Step<Verdict> {
    let mut ctl = ctx.ctl()?;
    ctl.establish()?;
    let hello = ctl.control(MessageType::Hello, 0, Vec::new())?;
    let verdict = match ctl.acked(&hello) {
        Ok(()) => Verdict::Pass,
        Err(v) => v.blamed(|why| format!("HELLO: {why}")),
    };
    let _ = ctl.close();
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::PROBES;
    use crate::probe::catalog::sim_lns::expect;
    use crate::probe::VerdictKind::Pass;

    #[test]
    fn a_correct_lns_passes_in_the_simulator() {
        let cases = [
            ("establishment", Pass),
            ("stopccn-cleans-up", Pass),
            ("hello-answered", Pass),
        ];
        expect(PROBES, false, &cases);
    }
}
