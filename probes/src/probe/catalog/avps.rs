//! The AVP rules of control connection setup: the SCCRQ's mandatory AVPs (§6.1), unknown AVPs
//! with and without the M bit (§4.1, §4.2), an AVP's reserved bits, the Tie Breaker (§4.4.3).

use l2tp::wire::{AvpRepr, AvpType, AvpValue};

use super::sccrq::{judge_refusal, must_establish, SOME_VENDOR, UNASSIGNED_TYPE};
use crate::probe::script::Ctl;
use crate::probe::{Ctx, Probe, Scope, Step, Verdict};

pub const PROBES: &[Probe] = &[
    Probe {
        name: "sccrq-missing-protocol-version",
        reference: "RFC 2661 §6.1, §7.1, §7.2.1",
        sends: "an SCCRQ without the Protocol Version AVP (§6.1: MUST be present)",
        expects: "no tunnel: a StopCCN (any Result Code; §7.2.1 \"Receive SCCRQ, not acceptable: Send StopCCN\") or no SCCRP; §7.1 calls a message missing a required AVP malformed and says the control connection should be cleared. Fails only if the SCCRP is followed by a tunnel that takes a call",
        scope: Scope::Any,
        run: sccrq_missing_protocol_version,
    },
    Probe {
        name: "sccrq-missing-host-name",
        reference: "RFC 2661 §6.1, §7.1, §7.2.1",
        sends: "an SCCRQ without the Host Name AVP (§6.1: MUST be present)",
        expects: "no tunnel: a StopCCN (any Result Code) or no SCCRP (§7.1: malformed, the control connection should be cleared); fails only if a tunnel comes up that takes a call",
        scope: Scope::Any,
        run: sccrq_missing_host_name,
    },
    Probe {
        name: "sccrq-missing-framing-capabilities",
        reference: "RFC 2661 §6.1, §7.1, §7.2.1",
        sends: "an SCCRQ without the Framing Capabilities AVP (§6.1: MUST be present)",
        expects: "no tunnel: a StopCCN (any Result Code) or no SCCRP (§7.1: malformed, the control connection should be cleared); fails only if a tunnel comes up that takes a call",
        scope: Scope::Any,
        run: sccrq_missing_framing_capabilities,
    },
    Probe {
        name: "sccrq-missing-assigned-tunnel-id",
        reference: "RFC 2661 §6.1, §4.4.3, §7.1, §7.2.1",
        sends: "an SCCRQ without the Assigned Tunnel ID AVP (§6.1: MUST be present)",
        expects: "no tunnel: a StopCCN (to Tunnel ID 0, §4.4.3) or no SCCRP (§7.1: malformed, the control connection should be cleared); fails only if a tunnel comes up that takes a call",
        scope: Scope::Any,
        run: sccrq_missing_assigned_tunnel_id,
    },
    Probe {
        name: "unknown-mandatory-avp-vendor0",
        reference: "RFC 2661 §4.1, §4.2, §4.4.2",
        sends: "a well-formed SCCRQ plus an AVP of vendor 0, unassigned Attribute Type 32767, M bit set",
        expects: "the tunnel MUST be terminated (§4.1): a StopCCN (Result Code 2 with Error Code 8 is the RFC's code for it; any Result Code passes) or no SCCRP; an SCCRP then a StopCCN after our SCCCN also passes",
        scope: Scope::Any,
        run: unknown_mandatory_avp_vendor0,
    },
    Probe {
        name: "unknown-mandatory-avp-vendor",
        reference: "RFC 2661 §4.1, §4.2, §4.4.2",
        sends: "a well-formed SCCRQ plus a vendor-specific AVP (Vendor ID 9999, type 1) with the M bit set",
        expects: "the tunnel MUST be terminated (§4.1): a StopCCN (2/8 expected, any Result Code passes) or no SCCRP; an SCCRP then a StopCCN after our SCCCN also passes",
        scope: Scope::Any,
        run: unknown_mandatory_avp_vendor,
    },
    Probe {
        name: "unknown-optional-avp-ignored",
        reference: "RFC 2661 §4.1",
        sends: "a well-formed SCCRQ plus two unknown AVPs without the M bit (vendor 0 type 32767, vendor 9999 type 1), then SCCCN",
        expects: "\"If the M bit is not set, an unrecognized AVP MUST be ignored\": SCCRP and an acknowledged SCCCN, as without them",
        scope: Scope::Any,
        run: unknown_optional_avp_ignored,
    },
    Probe {
        name: "avp-reserved-bits-set",
        reference: "RFC 2661 §4.1",
        sends: "a well-formed SCCRQ plus a Bearer Capabilities AVP (M bit set) with a reserved bit set",
        expects: "\"An AVP received with a reserved bit set to 1 MUST be treated as an unrecognized AVP\": with M set, the tunnel MUST be terminated (StopCCN, 2/8 expected, or no SCCRP)",
        scope: Scope::Any,
        run: avp_reserved_bits_set,
    },
    Probe {
        name: "tie-breaker",
        reference: "RFC 2661 §4.4.3 (Tie Breaker)",
        sends: "an SCCRQ with a Tie Breaker AVP (M bit 0, 8 octets), then SCCCN",
        expects: "a normal establishment: the target has no SCCRQ of its own outstanding to us, so there is no tie to break (the collision itself cannot be provoked from the initiator side)",
        scope: Scope::Any,
        run: tie_breaker,
    },
];

/// A well-formed SCCRQ's AVPs for a fresh tunnel of `ctl`'s, minus one type.
fn sccrq_without(ctl: &mut Ctl, missing: AvpType) -> Vec<AvpRepr<'static>> {
    ctl.our_tid = ctl.fresh_id();
    let mut avps = ctl.sccrq_avps();
    avps.retain(|avp| avp.value.avp_type() != Some(missing));
    avps
}

fn missing(ctx: &mut Ctx, avp: AvpType) -> Step<Verdict> {
    let mut ctl = ctx.ctl()?;
    let avps = sccrq_without(&mut ctl, avp);
    judge_refusal(ctx, &mut ctl, avps, None)
}

fn sccrq_missing_protocol_version(ctx: &mut Ctx) -> Step<Verdict> {
    missing(ctx, AvpType::ProtocolVersion)
}

fn sccrq_missing_host_name(ctx: &mut Ctx) -> Step<Verdict> {
    missing(ctx, AvpType::HostName)
}

fn sccrq_missing_framing_capabilities(ctx: &mut Ctx) -> Step<Verdict> {
    missing(ctx, AvpType::FramingCapabilities)
}

fn sccrq_missing_assigned_tunnel_id(ctx: &mut Ctx) -> Step<Verdict> {
    missing(ctx, AvpType::AssignedTunnelId)
}

/// A well-formed SCCRQ plus `extra`, which the target must treat as an unknown M-bit AVP.
fn unknown_mandatory(ctx: &mut Ctx, extra: AvpRepr<'static>) -> Step<Verdict> {
    let mut ctl = ctx.ctl()?;
    ctl.our_tid = ctl.fresh_id();
    let mut avps = ctl.sccrq_avps();
    avps.push(extra);
    judge_refusal(ctx, &mut ctl, avps, Some(8))
}

fn unknown_mandatory_avp_vendor0(ctx: &mut Ctx) -> Step<Verdict> {
    unknown_mandatory(
        ctx,
        AvpRepr::mandatory(AvpValue::Unknown {
            attr_type: UNASSIGNED_TYPE,
            value: vec![0, 1, 2, 3].into(),
        }),
    )
}

fn unknown_mandatory_avp_vendor(ctx: &mut Ctx) -> Step<Verdict> {
    unknown_mandatory(
        ctx,
        AvpRepr::mandatory(AvpValue::Vendor {
            vendor_id: SOME_VENDOR,
            attr_type: 1,
            value: vec![0, 1, 2, 3].into(),
        }),
    )
}

fn avp_reserved_bits_set(ctx: &mut Ctx) -> Step<Verdict> {
    unknown_mandatory(
        ctx,
        AvpRepr {
            reserved: 0b0001,
            ..AvpRepr::mandatory(AvpValue::BearerCapabilities(0))
        },
    )
}

fn unknown_optional_avp_ignored(ctx: &mut Ctx) -> Step<Verdict> {
    must_establish(ctx, 0, |_, avps| {
        avps.push(AvpRepr::optional(AvpValue::Unknown {
            attr_type: UNASSIGNED_TYPE,
            value: vec![0, 1, 2, 3].into(),
        }));
        avps.push(AvpRepr::optional(AvpValue::Vendor {
            vendor_id: SOME_VENDOR,
            attr_type: 1,
            value: vec![0, 1, 2, 3].into(),
        }));
    })
}

fn tie_breaker(ctx: &mut Ctx) -> Step<Verdict> {
    must_establish(ctx, 0, |ctl, avps| {
        let mut value = [0u8; 8];
        for pair in value.chunks_mut(2) {
            pair.copy_from_slice(&ctl.fresh_id().to_be_bytes());
        }
        avps.push(AvpRepr::optional(AvpValue::TieBreaker(value)));
    })
}

#[cfg(test)]
mod tests {
    use super::PROBES;
    use crate::probe::catalog::sim_lns::expect;
    use crate::probe::VerdictKind::Pass;

    #[test]
    fn a_correct_lns_passes_in_the_simulator() {
        let cases: Vec<_> = PROBES.iter().map(|p| (p.name, Pass)).collect();
        expect(PROBES, false, &cases);
    }
}
