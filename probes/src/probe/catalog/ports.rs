//! RFC 2661 §8.1, the initiator's side: "The initiator of an L2TP tunnel picks an available
//! source UDP port (which may or may not be 1701) … The recipient picks a free port on its own
//! system (which may or may not be 1701), and sends its reply to the initiator's UDP port and
//! address". An LNS that answers only SCCRQs from port 1701 cannot serve two LACs behind one
//! NAT, nor a LAC whose 1701 is taken.

use std::net::SocketAddrV4;

use crate::probe::script::Ctl;
use crate::probe::{Ctx, Probe, Scope, Step, Verdict};

pub const PROBES: &[Probe] = &[Probe {
    name: "sccrq-from-any-source-port",
    reference: "RFC 2661 §8.1",
    sends: "the same SCCRQ from source port 1701 (or --bind's fixed port) and from an ephemeral \
            port, each tunnel established and closed",
    expects: "both answered, each SCCRP sent back to the port its SCCRQ came from",
    scope: Scope::Any,
    run: sccrq_from_any_source_port,
}];

/// The port an LAC traditionally sends from.
const L2TP_PORT: u16 = 1701;

fn sccrq_from_any_source_port(ctx: &mut Ctx) -> Step<Verdict> {
    let bind = ctx.target.bind;
    let ip = if bind.ip().is_unspecified() {
        ctx.network()
            .source_towards(ctx.target.addr)
            .map_err(|e| Verdict::Inconclusive(format!("no route to {}: {e}", ctx.target.addr)))?
    } else {
        *bind.ip()
    };
    let fixed = if bind.port() == 0 {
        L2TP_PORT
    } else {
        bind.port()
    };
    let mut from_fixed = ctx.target.clone();
    from_fixed.bind = SocketAddrV4::new(ip, fixed);
    let mut from_any = ctx.target.clone();
    from_any.bind = SocketAddrV4::new(ip, 0);
    let mut fixed_ctl = ctx.ctl_for(&from_fixed).map_err(|v| {
        v.blamed(|why| {
            format!("port {fixed} on {ip}: {why} (give --bind ADDR:{fixed} with a free address)")
        })
    })?;
    let fixed_at = fixed_ctl.local;
    let mut any_ctl = ctx.ctl_for(&from_any)?;
    let any_at = any_ctl.local;
    ctx.note(format!("the same SCCRQ from {fixed_at} and from {any_at}"));
    let fixed_answer = exchange(ctx, &mut fixed_ctl);
    let any_answer = exchange(ctx, &mut any_ctl);
    Ok(match (fixed_answer, any_answer) {
        (Ok(()), Ok(())) => Verdict::Pass,
        (Ok(()), Err(why)) => Verdict::Fail(format!(
            "answered the SCCRQ from port {} but not the same SCCRQ from port {} ({why}): \
             §8.1 lets the initiator pick any source port",
            fixed_at.port(),
            any_at.port()
        )),
        (Err(why), Ok(())) => Verdict::Fail(format!(
            "answered the SCCRQ from port {} but not the same SCCRQ from port {} ({why})",
            any_at.port(),
            fixed_at.port()
        )),
        (Err(a), Err(b)) => Verdict::Inconclusive(format!(
            "neither SCCRQ was answered (port {}: {a}; port {}: {b})",
            fixed_at.port(),
            any_at.port()
        )),
    })
}

/// One tunnel up and down on `ctl`'s socket; what stood in the way, in words. The SCCRP is
/// read on this socket, so it came back to the port the SCCRQ left from.
fn exchange(ctx: &Ctx, ctl: &mut Ctl) -> Result<(), String> {
    match ctl.establish() {
        Ok(()) => {
            ctx.note(format!(
                "from {}: established (SCCRP from {}), our Tunnel ID {}, theirs {}",
                ctl.local, ctl.peer, ctl.our_tid, ctl.peer_tid
            ));
            let _ = ctl.close();
            Ok(())
        }
        Err(Verdict::Fail(why) | Verdict::Inconclusive(why)) => {
            ctx.note(format!("from {}: {why}", ctl.local));
            Err(why)
        }
        Err(other) => Err(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::catalog::sim_lns;
    use crate::probe::{run_one_on, Target, VerdictKind};

    #[test]
    fn an_lns_answering_any_source_port_passes() {
        let result = sim_lns::run(&PROBES[0], false, |_| {});
        assert_eq!(result.verdict, VerdictKind::Pass, "{:?}", result.reason);
        let evidence = result.evidence.join("\n");
        assert!(evidence.contains(":1701"), "{evidence}");
        assert!(evidence.contains("established"), "{evidence}");
    }

    #[test]
    fn an_lns_answering_only_port_1701_fails_with_both_exchanges() {
        let target = Target::new(sim_lns::LNS);
        let network = sim_lns::network_only_from_port(&target, 1701);
        let result = run_one_on(&PROBES[0], &target, &network, None);
        assert_eq!(result.verdict, VerdictKind::Fail, "{:?}", result.reason);
        let reason = result.reason.unwrap_or_default();
        assert!(reason.contains("port 1701 but not"), "{reason}");
        let evidence = result.evidence.join("\n");
        assert!(evidence.contains("SCCRP"), "{evidence}");
        assert!(evidence.contains("no SCCRP"), "{evidence}");
    }

    #[test]
    fn a_fixed_bind_port_is_the_fixed_side() {
        let result = sim_lns::run(&PROBES[0], false, |t| {
            t.bind = "198.18.0.2:4500".parse().unwrap();
        });
        assert_eq!(result.verdict, VerdictKind::Pass, "{:?}", result.reason);
        assert!(result.evidence.join("\n").contains("198.18.0.2:4500"));
    }
}
