//! The L2TP header and what carries it (§3.1, §8.1): reserved bits, an unknown Ver, a Length
//! that disagrees with the datagram, a UDP checksum that is wrong.

use l2tp::time::Instant;
use l2tp::wire::{ControlMessage, HeaderRepr, MessageType};

use super::sccrq::{adopt, answers_sccrq, grace, must_establish, sccrq, sccrq_bytes, Answer};
use crate::probe::script::{result_of, result_text, Ctl};
use crate::probe::{Ctx, Probe, Scope, Step, Verdict};

pub const PROBES: &[Probe] = &[
    Probe {
        name: "reserved-bits-set",
        reference: "RFC 2661 §3.1",
        sends: "an SCCRQ with every reserved (x) bit of the header set, then SCCCN",
        expects: "\"All reserved bits MUST be ... ignored on incoming messages\": SCCRP and an acknowledged SCCCN",
        scope: Scope::Any,
        run: reserved_bits_set,
    },
    Probe {
        name: "wrong-version",
        reference: "RFC 2661 §3.1",
        sends: "SCCRQs with header Ver 1 (L2F) and Ver 3, then a well-formed SCCRQ from another socket",
        expects: "\"Packets received with an unknown Ver field MUST be discarded\": no L2TPv2 answer to either (an L2TPv3 answer to Ver 3 is allowed: Ver 3 is then known); the well-formed SCCRQ answered",
        scope: Scope::Any,
        run: wrong_version,
    },
    Probe {
        name: "wrong-length",
        reference: "RFC 2661 §3.1, §7.1",
        sends: "an SCCRQ whose Length exceeds the datagram by 8; an SCCRQ followed by 6 octets beyond its Length (an unknown M-bit AVP header); then a well-formed SCCRQ",
        expects: "the first is not answered with an SCCRP (a message not received whole; §7.1: a malformed header should be discarded); the octets after Length are not read as an AVP (no StopCCN 2/8; an SCCRP, a discard or another refusal all pass)",
        scope: Scope::Any,
        run: wrong_length,
    },
    Probe {
        name: "bad-udp-checksum-discarded",
        reference: "RFC 2661 §8.1, RFC 768",
        sends: "an SCCRQ crafted at the IP layer (pnet) whose UDP checksum is wrong, then the same SCCRQ with a good one",
        expects: "no answer to the corrupt datagram (UDP checksums are on in L2TP, so a bad one is dropped), an SCCRP to the good one",
        scope: Scope::Any,
        run: bad_udp_checksum_discarded,
    },
];

fn reserved_bits_set(ctx: &mut Ctx) -> Step<Verdict> {
    // The x bits of the first octet and the high nibble of the second (§3.1).
    must_establish(ctx, 0x34f0, |_, _| {})
}

/// A malformed SCCRQ, sent once from a socket of its own.
struct Malformed {
    label: String,
    ctl: Ctl,
}

fn send_malformed(ctx: &Ctx, label: String, mangle: impl FnOnce(&mut Vec<u8>)) -> Step<Malformed> {
    let mut ctl = ctx.ctl()?;
    ctl.our_tid = ctl.fresh_id();
    let avps = ctl.sccrq_avps();
    let mut bytes = sccrq_bytes(&ctl, avps, 0)?;
    mangle(&mut bytes);
    ctl.peer = ctl.target;
    ctl.ns = 1;
    ctl.note(format!("sending the {label} SCCRQ"));
    ctl.send_bytes(&bytes)?;
    Ok(Malformed { label, ctl })
}

/// A well-formed SCCRQ from another socket, answered with an SCCRP: by then the target has
/// handled what was sent before it (plus a grace for a target that works in parallel).
fn marker(ctx: &Ctx) -> Step<Ctl> {
    let mut ctl = ctx.ctl()?;
    ctl.our_tid = ctl.fresh_id();
    let avps = ctl.sccrq_avps();
    match sccrq(&mut ctl, avps)? {
        Answer::Sccrp(_) => {
            // Acknowledged, so that it is not retransmitted into the judgement.
            ctl.ack()?;
            Ok(ctl)
        }
        Answer::StopCcn(stop) => Err(Verdict::Inconclusive(format!(
            "the well-formed SCCRQ sent after them was refused: {}",
            result_text(&stop)
        ))),
        Answer::Silent => Err(Verdict::Inconclusive(
            "the well-formed SCCRQ sent after them was not answered".into(),
        )),
    }
}

/// The SCCRP or StopCCN that came back to a malformed SCCRQ by `until`, if any (a StopCCN
/// acknowledged).
/// With `any`, whatever L2TPv2 message comes back (a ZLB too).
fn answer_to(bad: &mut Malformed, until: Instant, any: bool) -> Option<ControlMessage<'static>> {
    let our_tid = bad.ctl.our_tid;
    let (from, message) = bad
        .ctl
        .wait_until(until, |m| any || answers_sccrq(our_tid, m))?;
    adopt(&mut bad.ctl, from, &message);
    if message.message_type() == Some(MessageType::StopCcn) {
        let _ = bad.ctl.ack();
    }
    Some(message)
}

fn set_version(bytes: &mut [u8], version: u8) {
    if let Some(octet) = bytes.get_mut(1) {
        *octet = (*octet & 0xf0) | (version & 0x0f);
    }
}

fn wrong_version(ctx: &mut Ctx) -> Step<Verdict> {
    let mut bad = Vec::new();
    for version in [1u8, 3] {
        bad.push(send_malformed(ctx, format!("Ver {version}"), |b| {
            set_version(b, version)
        })?);
    }
    let mut good = marker(ctx)?;
    let until = good.now() + grace(&good);
    let mut failures = Vec::new();
    for b in &mut bad {
        match answer_to(b, until, true) {
            None => ctx.note(format!("the {} SCCRQ was discarded", b.label)),
            Some(reply) => {
                let kind = reply.message_type().map_or("ZLB", MessageType::name);
                failures.push(format!(
                    "the {} SCCRQ was answered with an L2TPv2 {kind} (T={} Nr={})",
                    b.label,
                    reply.header.tunnel_id,
                    reply.header.sequence.map_or(0, |s| s.nr)
                ));
                if reply.message_type() == Some(MessageType::Sccrp) {
                    let _ = b.ctl.close();
                }
            }
        }
    }
    let _ = good.close();
    Ok(if failures.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail(format!(
            "{} (§3.1: an unknown Ver MUST be discarded)",
            failures.join("; ")
        ))
    })
}

fn wrong_length(ctx: &mut Ctx) -> Step<Verdict> {
    let mut longer = send_malformed(ctx, "Length + 8".into(), |b| {
        let claimed = (b.len() + 8).min(usize::from(u16::MAX)) as u16;
        if let Some(field) = b.get_mut(2..4) {
            field.copy_from_slice(&claimed.to_be_bytes());
        }
    })?;
    // After the message: the header of an AVP with M set that no one knows.
    let mut trailer = send_malformed(ctx, "6 octets past Length".into(), |b| {
        b.extend_from_slice(&[0x80, 0x06, 0x00, 0x00, 0x7f, 0xff]);
    })?;
    let mut good = marker(ctx)?;
    let until = good.now() + grace(&good);
    let mut failures = Vec::new();
    match answer_to(&mut longer, until, false) {
        None => ctx.note("the SCCRQ with Length past the datagram was discarded"),
        Some(reply) if reply.message_type() == Some(MessageType::Sccrp) => {
            failures.push(
                "the SCCRQ whose Length exceeds the datagram was answered with SCCRP: a message not received whole was taken (§3.1 Length; §7.1: a malformed header should be discarded)"
                    .to_string(),
            );
            let _ = longer.ctl.close();
        }
        Some(reply) => ctx.note(format!(
            "the SCCRQ with Length past the datagram was refused: {}",
            result_text(&reply)
        )),
    }
    match answer_to(&mut trailer, until, false) {
        None => ctx.note("the SCCRQ with octets past its Length was discarded (allowed)"),
        Some(reply) if reply.message_type() == Some(MessageType::Sccrp) => {
            ctx.note("the SCCRQ with octets past its Length was taken as Length says");
            let _ = trailer.ctl.close();
        }
        Some(reply) if result_of(&reply) == Some((2, Some(8))) => failures.push(format!(
            "the octets after the SCCRQ's Length were read as an AVP: {} (§3.1: Length is the total length of the message)",
            result_text(&reply)
        )),
        Some(reply) => ctx.note(format!(
            "the SCCRQ with octets past its Length was refused: {} (allowed)",
            result_text(&reply)
        )),
    }
    let _ = good.close();
    Ok(if failures.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail(failures.join("; "))
    })
}

fn bad_udp_checksum_discarded(ctx: &mut Ctx) -> Step<Verdict> {
    use pnet_packet::udp::MutableUdpPacket;
    let mut raw = match ctx.network().raw() {
        Ok(raw) => raw,
        Err(e) => {
            return Ok(Verdict::NotApplicable(format!(
                "crafting below UDP needs a raw socket (root or CAP_NET_RAW): {e}"
            )))
        }
    };
    // The probe's socket is bound to the very address the crafted packet claims as its
    // source, so an answer (there should be none) lands there.
    let mut target = ctx.target.clone();
    if target.bind.ip().is_unspecified() {
        let ip = ctx
            .network()
            .source_towards(target.addr)
            .map_err(|e| Verdict::Inconclusive(format!("no route to {}: {e}", target.addr)))?;
        target.bind = std::net::SocketAddrV4::new(ip, target.bind.port());
    }
    let mut ctl = ctx.ctl_for(&target)?;
    ctl.our_tid = ctl.fresh_id();
    let our_tid = ctl.our_tid;
    let avps = ctl.sccrq_avps();
    let payload = ctl.encode(HeaderRepr::control(0, 0, 0, 0), MessageType::Sccrq, avps)?;
    let mut packet = Vec::new();
    l2tp::capture::build_ipv4_udp(ctl.local, ctl.target, &payload, 0x4c32, &mut packet)
        .map_err(|e| Verdict::Inconclusive(format!("building the datagram: {e:?}")))?;
    let (good, bad) = {
        let Some(mut udp) = packet.get_mut(20..).and_then(MutableUdpPacket::new) else {
            return Err(Verdict::Inconclusive("building the datagram".into()));
        };
        let good = udp.get_checksum();
        // Any other non-zero value: zero would mean "no checksum" (RFC 768).
        let bad = match good ^ 0x5a5a {
            0 => 0x1234,
            other => other,
        };
        udp.set_checksum(bad);
        (good, bad)
    };
    ctl.note(format!(
        "→ {} SCCRQ T=0 Ns=0 for our Tunnel ID {our_tid}, UDP checksum {bad:#06x} (correct: {good:#06x}), on a raw socket",
        ctl.target
    ));
    ctl.capture_ip(&packet);
    raw.send(&packet)
        .map_err(|e| Verdict::Inconclusive(format!("sending on the raw socket: {e}")))?;
    if let Some((from, reply)) = ctl.wait(ctl.reply_timeout, |msg| msg.header.tunnel_id == our_tid)
    {
        let _ = ctl.ack();
        return Ok(Verdict::Fail(format!(
            "the datagram with a bad UDP checksum was answered from {from} ({}): the checksum was not checked",
            reply.message_type().map_or("ZLB", MessageType::name)
        )));
    }
    ctx.note("no answer to the corrupt datagram; now the same SCCRQ with a good checksum");
    let avps = ctl.sccrq_avps();
    match ctl.sccrq_with(avps)? {
        Some(reply) if reply.message_type() == Some(MessageType::Sccrp) => {
            let _ = ctl.close();
            Ok(Verdict::Pass)
        }
        Some(reply) => Ok(Verdict::Inconclusive(format!(
            "the good SCCRQ was refused too ({}), so the silence proves nothing",
            result_text(&reply)
        ))),
        None => Ok(Verdict::Inconclusive(
            "the good SCCRQ got no answer either, so the silence proves nothing".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::PROBES;
    use crate::probe::catalog::sim_lns::expect;
    use crate::probe::VerdictKind::{NotApplicable, Pass};

    #[test]
    fn a_correct_lns_passes_and_the_simulator_crafts_nothing_below_udp() {
        let cases = [
            ("reserved-bits-set", Pass),
            ("wrong-version", Pass),
            ("wrong-length", Pass),
            ("bad-udp-checksum-discarded", NotApplicable),
        ];
        expect(PROBES, false, &cases);
    }
}
