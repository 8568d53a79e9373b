//! Tunnel establishment and teardown, the control-connection AVP rules, header checks.

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use l2tp::conn::tunnel::challenge_response;
use l2tp::wire::message::ParseOptions;
use l2tp::wire::{AvpRepr, AvpType, AvpValue, ControlMessage, HeaderRepr, MessageType, PacketRepr};

use crate::probe::script::{result_of, result_text, Ctl, TRIES};

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
        name: "reserved-bits-set",
        reference: "RFC 2661 §3.1",
        sends: "an SCCRQ with every reserved (x) bit of the header set, then SCCCN",
        expects: "\"All reserved bits MUST be ... ignored on incoming messages\": SCCRP and an acknowledged SCCCN",
        scope: Scope::Any,
        run: reserved_bits_set,
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
        name: "hello-answered",
        reference: "RFC 2661 §6.5, §5.8",
        sends: "HELLO on an established tunnel",
        expects: "an acknowledgement: a ZLB ACK or a message whose Nr covers the HELLO (§6.5)",
        scope: Scope::Any,
        run: hello_answered,
    },
    Probe {
        name: "tie-breaker",
        reference: "RFC 2661 §4.4.3 (Tie Breaker)",
        sends: "an SCCRQ with a Tie Breaker AVP (M bit 0, 8 octets), then SCCCN",
        expects: "a normal establishment: the target has no SCCRQ of its own outstanding to us, so there is no tie to break (the collision itself cannot be provoked from the initiator side)",
        scope: Scope::Any,
        run: tie_breaker,
    },
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
    Probe {
        name: "tunnel-id-uniqueness",
        reference: "RFC 2661 §4.4.3 (Assigned Tunnel ID), §3.1",
        sends: "--live-tunnels tunnels opened from one socket and held open together, then closed with StopCCN",
        expects: "every Assigned Tunnel ID non-zero and distinct among the tunnels live at once (it demultiplexes them)",
        scope: Scope::Any,
        run: tunnel_id_uniqueness,
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
        AvpRepr::mandatory(AvpValue::AssignedSessionId(sid)),
        AvpRepr::mandatory(AvpValue::CallSerialNumber(1)),
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

/// A probe written with `?`: both arms are the verdict.
fn settle(result: Result<Verdict, Verdict>) -> Verdict {
    match result {
        Ok(v) | Err(v) => v,
    }
}

/// How the target answered an SCCRQ of ours.
enum Answer {
    Sccrp(ControlMessage<'static>),
    StopCcn(ControlMessage<'static>),
    Silent,
}

/// An unassigned vendor-0 Attribute Type (RFC 2661 defines 0–39, later RFCs stay far below).
const UNASSIGNED_TYPE: u16 = 32767;
const SOME_VENDOR: u16 = 9999;

/// Waiting for an answer that we expect not to come: the target answers at once on a LAN.
fn grace(ctl: &Ctl) -> Duration {
    (ctl.reply_timeout / 4).clamp(Duration::from_millis(100), Duration::from_millis(500))
}

/// The bytes of our SCCRQ (Tunnel ID 0, Ns 0, Nr 0) with these AVPs; the header's reserved
/// bits as given.
fn sccrq_bytes(ctl: &Ctl, avps: Vec<AvpRepr<'static>>, reserved: u16) -> Result<Vec<u8>, Verdict> {
    let header = HeaderRepr {
        reserved,
        ..HeaderRepr::control(0, 0, 0, 0)
    };
    ctl.encode(header, MessageType::Sccrq, avps)
}

/// Whether `message` answers an SCCRQ: an SCCRP or StopCCN to any Tunnel ID, since each SCCRQ
/// goes from a fresh socket (a target that failed to read our Assigned Tunnel ID addresses its
/// StopCCN to 0 or to whatever it made of it).
fn answers_sccrq(_our_tid: u16, message: &ControlMessage) -> bool {
    matches!(
        message.message_type(),
        Some(MessageType::Sccrp | MessageType::StopCcn)
    )
}

/// Takes the peer's address, Tunnel ID and window from its SCCRP or StopCCN.
fn adopt(ctl: &mut Ctl, from: SocketAddrV4, message: &ControlMessage) {
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
fn sccrq_raw(ctl: &mut Ctl, bytes: &[u8]) -> Result<Answer, Verdict> {
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

fn sccrq(ctl: &mut Ctl, avps: Vec<AvpRepr<'static>>) -> Result<Answer, Verdict> {
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
fn scccn_avps(ctl: &Ctl, sccrp: &ControlMessage) -> Result<Vec<AvpRepr<'static>>, Verdict> {
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
fn establish_via(
    ctl: &mut Ctl,
    reserved: u16,
    edit: impl FnOnce(&mut Ctl, &mut Vec<AvpRepr<'static>>),
) -> Result<ControlMessage<'static>, Verdict> {
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
    ctl.acked(&scccn).map_err(|v| match v {
        Verdict::Inconclusive(why) => Verdict::Fail(format!("SCCCN: {why} (§5.8)")),
        other => other,
    })?;
    Ok(sccrp)
}

/// After our SCCCN (right or wrong): passes when the target tears the tunnel down or at least
/// takes no call on it; fails when the tunnel carries a call (ICRQ answered with ICRP).
fn judge_not_established(ctx: &Ctx, ctl: &mut Ctl) -> Verdict {
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
        return Verdict::Pass;
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
    if let Err(v) = ctl.control(MessageType::Icrq, 0, icrq) {
        return v;
    }
    let reply = ctl.wait(ctl.reply_timeout, |msg| {
        matches!(
            msg.message_type(),
            Some(MessageType::Icrp | MessageType::Cdn | MessageType::StopCcn)
        )
    });
    match reply {
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
    }
}

/// An SCCRQ the target must not turn into a tunnel. `fitting_error` is the Error Code the RFC
/// defines for the case (noted when another comes; any StopCCN passes).
fn judge_refusal(
    ctx: &Ctx,
    ctl: &mut Ctl,
    avps: Vec<AvpRepr<'static>>,
    fitting_error: Option<u16>,
) -> Verdict {
    let answer = match sccrq(ctl, avps) {
        Ok(answer) => answer,
        Err(v) => return v,
    };
    match answer {
        Answer::Silent => {
            ctx.note(format!("no answer to {TRIES} SCCRQs: discarded, no tunnel"));
            Verdict::Pass
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
            Verdict::Pass
        }
        Answer::Sccrp(sccrp) => {
            ctx.note("answered with SCCRP: sending SCCCN to see whether a tunnel comes up");
            let avps = match scccn_avps(ctl, &sccrp) {
                Ok(avps) => avps,
                Err(v) => {
                    let _ = ctl.close();
                    return v;
                }
            };
            if let Err(v) = ctl.control(MessageType::Scccn, 0, avps) {
                return v;
            }
            judge_not_established(ctx, ctl)
        }
    }
}

/// A well-formed SCCRQ's AVPs for a fresh tunnel of `ctl`'s, minus one type.
fn sccrq_without(ctl: &mut Ctl, missing: AvpType) -> Vec<AvpRepr<'static>> {
    ctl.our_tid = ctl.fresh_id();
    let mut avps = ctl.sccrq_avps();
    avps.retain(|avp| avp.value.avp_type() != Some(missing));
    avps
}

fn missing(ctx: &mut Ctx, avp: AvpType) -> Verdict {
    let mut ctl = match ctx.ctl() {
        Ok(ctl) => ctl,
        Err(v) => return v,
    };
    let avps = sccrq_without(&mut ctl, avp);
    judge_refusal(ctx, &mut ctl, avps, None)
}

fn sccrq_missing_protocol_version(ctx: &mut Ctx) -> Verdict {
    missing(ctx, AvpType::ProtocolVersion)
}

fn sccrq_missing_host_name(ctx: &mut Ctx) -> Verdict {
    missing(ctx, AvpType::HostName)
}

fn sccrq_missing_framing_capabilities(ctx: &mut Ctx) -> Verdict {
    missing(ctx, AvpType::FramingCapabilities)
}

fn sccrq_missing_assigned_tunnel_id(ctx: &mut Ctx) -> Verdict {
    missing(ctx, AvpType::AssignedTunnelId)
}

/// A well-formed SCCRQ plus `extra`, which the target must treat as an unknown M-bit AVP.
fn unknown_mandatory(ctx: &mut Ctx, extra: AvpRepr<'static>) -> Verdict {
    let mut ctl = match ctx.ctl() {
        Ok(ctl) => ctl,
        Err(v) => return v,
    };
    ctl.our_tid = ctl.fresh_id();
    let mut avps = ctl.sccrq_avps();
    avps.push(extra);
    judge_refusal(ctx, &mut ctl, avps, Some(8))
}

fn unknown_mandatory_avp_vendor0(ctx: &mut Ctx) -> Verdict {
    unknown_mandatory(
        ctx,
        AvpRepr::mandatory(AvpValue::Unknown {
            attr_type: UNASSIGNED_TYPE,
            value: vec![0, 1, 2, 3].into(),
        }),
    )
}

fn unknown_mandatory_avp_vendor(ctx: &mut Ctx) -> Verdict {
    unknown_mandatory(
        ctx,
        AvpRepr::mandatory(AvpValue::Vendor {
            vendor_id: SOME_VENDOR,
            attr_type: 1,
            value: vec![0, 1, 2, 3].into(),
        }),
    )
}

fn avp_reserved_bits_set(ctx: &mut Ctx) -> Verdict {
    unknown_mandatory(
        ctx,
        AvpRepr {
            reserved: 0b0001,
            ..AvpRepr::mandatory(AvpValue::BearerCapabilities(0))
        },
    )
}

/// A tunnel the RFC says must come up as usual; closed again.
fn must_establish(
    ctx: &mut Ctx,
    reserved: u16,
    edit: impl FnOnce(&mut Ctl, &mut Vec<AvpRepr<'static>>),
) -> Verdict {
    let mut ctl = match ctx.ctl() {
        Ok(ctl) => ctl,
        Err(v) => return v,
    };
    if let Err(v) = establish_via(&mut ctl, reserved, edit) {
        return v;
    }
    ctx.note(format!(
        "established: our Tunnel ID {}, theirs {}",
        ctl.our_tid, ctl.peer_tid
    ));
    let _ = ctl.close();
    Verdict::Pass
}

fn unknown_optional_avp_ignored(ctx: &mut Ctx) -> Verdict {
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

fn reserved_bits_set(ctx: &mut Ctx) -> Verdict {
    // The x bits of the first octet and the high nibble of the second (§3.1).
    must_establish(ctx, 0x34f0, |_, _| {})
}

fn tie_breaker(ctx: &mut Ctx) -> Verdict {
    must_establish(ctx, 0, |ctl, avps| {
        let mut value = [0u8; 8];
        for pair in value.chunks_mut(2) {
            pair.copy_from_slice(&ctl.fresh_id().to_be_bytes());
        }
        avps.push(AvpRepr::optional(AvpValue::TieBreaker(value)));
    })
}

fn challenge_right_secret(ctx: &mut Ctx) -> Verdict {
    if ctx.target.secret.is_none() {
        return Verdict::NotApplicable("needs the target's tunnel secret: --secret".into());
    }
    let mut ctl = match ctx.ctl() {
        Ok(ctl) => ctl,
        Err(v) => return v,
    };
    let sccrp = match establish_via(&mut ctl, 0, |_, _| {}) {
        Ok(sccrp) => sccrp,
        Err(v) => return v,
    };
    ctx.note(format!(
        "the SCCRP's Challenge Response matched; {}; the SCCCN was acknowledged",
        if sccrp.avp(AvpType::Challenge).is_some() {
            "we answered its Challenge"
        } else {
            "it did not challenge us"
        }
    ));
    let _ = ctl.close();
    Verdict::Pass
}

fn challenge_wrong_secret(ctx: &mut Ctx) -> Verdict {
    settle(challenge_wrong_secret_inner(ctx))
}

fn challenge_wrong_secret_inner(ctx: &mut Ctx) -> Result<Verdict, Verdict> {
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
    let verdict = judge_not_established(ctx, &mut ctl);
    Ok(verdict)
}

fn hello_answered(ctx: &mut Ctx) -> Verdict {
    settle(hello_answered_inner(ctx))
}

fn hello_answered_inner(ctx: &mut Ctx) -> Result<Verdict, Verdict> {
    let mut ctl = ctx.ctl()?;
    ctl.establish()?;
    let hello = ctl.control(MessageType::Hello, 0, Vec::new())?;
    let verdict = match ctl.acked(&hello) {
        Ok(()) => Verdict::Pass,
        Err(Verdict::Inconclusive(why)) => Verdict::Fail(format!("HELLO: {why}")),
        Err(other) => other,
    };
    let _ = ctl.close();
    Ok(verdict)
}

fn hidden_avps_accepted(ctx: &mut Ctx) -> Verdict {
    settle(hidden_avps_accepted_inner(ctx))
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

fn hidden_avps_accepted_inner(ctx: &mut Ctx) -> Result<Verdict, Verdict> {
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
            let iccn = ctl.control(
                MessageType::Iccn,
                peer_sid,
                vec![
                    AvpRepr::mandatory(AvpValue::TxConnectSpeed(100_000_000)),
                    AvpRepr::mandatory(AvpValue::FramingType(3)),
                ],
            )?;
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

/// A malformed SCCRQ, sent once from a socket of its own.
struct Malformed {
    label: String,
    ctl: Ctl,
}

fn send_malformed(
    ctx: &Ctx,
    label: String,
    mangle: impl FnOnce(&mut Vec<u8>),
) -> Result<Malformed, Verdict> {
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
fn marker(ctx: &Ctx) -> Result<Ctl, Verdict> {
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
    let left = until.saturating_duration_since(Instant::now());
    let (from, message) = bad.ctl.wait(left, |m| any || answers_sccrq(our_tid, m))?;
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

fn wrong_version(ctx: &mut Ctx) -> Verdict {
    settle(wrong_version_inner(ctx))
}

fn wrong_version_inner(ctx: &mut Ctx) -> Result<Verdict, Verdict> {
    let mut bad = Vec::new();
    for version in [1u8, 3] {
        bad.push(send_malformed(ctx, format!("Ver {version}"), |b| {
            set_version(b, version)
        })?);
    }
    let mut good = marker(ctx)?;
    let until = Instant::now() + grace(&good);
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

fn wrong_length(ctx: &mut Ctx) -> Verdict {
    settle(wrong_length_inner(ctx))
}

fn wrong_length_inner(ctx: &mut Ctx) -> Result<Verdict, Verdict> {
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
    let until = Instant::now() + grace(&good);
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

/// Where one of the uniqueness probe's tunnels stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    /// SCCRQ sent.
    Requested,
    /// SCCCN sent, not yet acknowledged.
    Connecting,
    Up,
    /// The target sent a StopCCN.
    Refused,
    /// No answer after every retransmission.
    Lost,
    /// Our StopCCN sent.
    Closing,
    Closed,
}

impl Phase {
    fn in_flight(self) -> bool {
        matches!(self, Phase::Requested | Phase::Connecting | Phase::Closing)
    }

    /// The Ns of our next message in this phase.
    fn ns(self) -> u16 {
        match self {
            Phase::Idle => 0,
            Phase::Requested => 1,
            Phase::Connecting | Phase::Up | Phase::Refused | Phase::Lost => 2,
            Phase::Closing | Phase::Closed => 3,
        }
    }
}

struct Slot {
    phase: Phase,
    peer: SocketAddrV4,
    peer_tid: u16,
    /// Our Nr on this tunnel.
    nr: u16,
    sent: Instant,
    tries: usize,
    /// What a retransmission resends.
    last: Vec<u8>,
}

/// Many tunnels from one socket, each with Ns/Nr kept by hand: a `Ctl` per tunnel would log
/// and capture every packet of thousands of tunnels.
struct Swarm<'t> {
    socket: UdpSocket,
    target: &'t crate::probe::Target,
    slots: Vec<Slot>,
    in_flight: usize,
    /// The target's Tunnel ID → ours, for the tunnels live now.
    live: HashMap<u16, u16>,
    duplicates: Vec<String>,
    duplicate_count: usize,
    zero_ids: usize,
    refusals: HashMap<String, usize>,
    challenged_without_secret: bool,
    send_errors: usize,
}

/// SCCRQs (or StopCCNs) outstanding at once: what a loopback socket buffer holds in answers.
const WINDOW: usize = 512;

impl Swarm<'_> {
    fn our_tid(i: usize) -> u16 {
        (i + 1) as u16 // i < live_tunnels ≤ 60000
    }

    fn set_phase(&mut self, i: usize, phase: Phase) {
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        if slot.phase.in_flight() {
            self.in_flight -= 1;
        }
        if phase.in_flight() {
            self.in_flight += 1;
        }
        if matches!(phase, Phase::Refused | Phase::Closing | Phase::Closed)
            && self.live.get(&slot.peer_tid) == Some(&Self::our_tid(i))
        {
            self.live.remove(&slot.peer_tid);
        }
        slot.phase = phase;
    }

    fn encode(
        &self,
        header: HeaderRepr,
        kind: Option<MessageType>,
        avps: Vec<AvpRepr<'static>>,
    ) -> Vec<u8> {
        let mut all = Vec::new();
        if let Some(kind) = kind {
            all.push(AvpRepr::mandatory(AvpValue::MessageType(kind)));
        }
        all.extend(avps);
        PacketRepr::Control(ControlMessage { header, avps: all })
            .to_vec(None)
            .unwrap_or_default()
    }

    /// Sends a control message (remembered for retransmission) or a ZLB (not remembered).
    fn send(&mut self, i: usize, kind: Option<MessageType>, avps: Vec<AvpRepr<'static>>) {
        let Some(slot) = self.slots.get(i) else {
            return;
        };
        let ns = slot.phase.ns();
        let ns = if kind.is_some() {
            ns.wrapping_sub(1)
        } else {
            ns
        };
        let header = HeaderRepr::control(slot.peer_tid, 0, ns, slot.nr);
        let to = slot.peer;
        let bytes = self.encode(header, kind, avps);
        if self.socket.send_to(&bytes, to).is_err() {
            self.send_errors += 1;
        }
        if kind.is_some() {
            if let Some(slot) = self.slots.get_mut(i) {
                slot.last = bytes;
                slot.sent = Instant::now();
                slot.tries = 1;
            }
        }
    }

    fn request(&mut self, i: usize) {
        let our_tid = Self::our_tid(i);
        self.set_phase(i, Phase::Requested);
        let avps = vec![
            AvpRepr::mandatory(AvpValue::ProtocolVersion {
                version: 1,
                revision: 0,
            }),
            AvpRepr::mandatory(AvpValue::HostName(
                self.target.host_name.clone().into_bytes().into(),
            )),
            AvpRepr::mandatory(AvpValue::FramingCapabilities(3)),
            AvpRepr::mandatory(AvpValue::AssignedTunnelId(our_tid)),
            AvpRepr::mandatory(AvpValue::ReceiveWindowSize(4)),
        ];
        self.send(i, Some(MessageType::Sccrq), avps);
    }

    fn stop(&mut self, i: usize) {
        let our_tid = Self::our_tid(i);
        self.set_phase(i, Phase::Closing);
        let avps = vec![
            AvpRepr::mandatory(AvpValue::AssignedTunnelId(our_tid)),
            AvpRepr::mandatory(AvpValue::ResultCode {
                result: 1,
                error: None,
                message: None,
            }),
        ];
        self.send(i, Some(MessageType::StopCcn), avps);
    }

    fn receive(&mut self, wait: Duration) {
        let _ = self.socket.set_read_timeout(Some(wait));
        let mut buf = [0u8; 4096];
        while let Ok((len, from)) = self.socket.recv_from(&mut buf) {
            let SocketAddr::V4(from) = from else {
                continue;
            };
            let bytes = buf.get(..len).unwrap_or_default().to_vec();
            self.handle(from, &bytes);
            let _ = self
                .socket
                .set_read_timeout(Some(Duration::from_micros(200)));
        }
    }

    fn handle(&mut self, from: SocketAddrV4, bytes: &[u8]) {
        let options = ParseOptions {
            secret: self.target.secret.as_deref(),
        };
        let Ok(PacketRepr::Control(message)) = PacketRepr::parse(bytes, &options) else {
            return;
        };
        let tid = usize::from(message.header.tunnel_id);
        if tid == 0 || tid > self.slots.len() {
            return;
        }
        let i = tid - 1;
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        let kind = message.message_type();
        let seq = message.header.sequence;
        if kind.is_some() {
            if let Some(seq) = seq {
                if seq.ns == slot.nr {
                    slot.nr = slot.nr.wrapping_add(1);
                }
            }
        }
        let acks = |n: u16| seq.is_some_and(|s| s.nr == n);
        match (slot.phase, kind) {
            (Phase::Requested, Some(MessageType::Sccrp)) => self.on_sccrp(i, from, &message),
            (Phase::Connecting, Some(MessageType::Sccrp)) => {
                // Our SCCCN was lost: the SCCRP came again.
                let last = slot.last.clone();
                let to = slot.peer;
                let _ = self.socket.send_to(&last, to);
            }
            (_, Some(MessageType::StopCcn)) => {
                if let Some(AvpValue::AssignedTunnelId(id)) = message.avp(AvpType::AssignedTunnelId)
                {
                    slot.peer_tid = *id;
                }
                let phase = slot.phase;
                self.send(i, None, Vec::new());
                if phase == Phase::Closing {
                    self.set_phase(i, Phase::Closed);
                } else if phase != Phase::Closed {
                    *self.refusals.entry(result_text(&message)).or_default() += 1;
                    self.set_phase(i, Phase::Refused);
                }
            }
            (phase, kind) => {
                if phase == Phase::Connecting && acks(2) {
                    self.set_phase(i, Phase::Up);
                } else if phase == Phase::Closing && acks(3) {
                    self.set_phase(i, Phase::Closed);
                }
                if kind.is_some() && phase != Phase::Idle {
                    // HELLO, a retransmission: acknowledge.
                    self.send(i, None, Vec::new());
                }
            }
        }
    }

    fn on_sccrp(&mut self, i: usize, from: SocketAddrV4, sccrp: &ControlMessage) {
        let peer_tid = match sccrp.avp(AvpType::AssignedTunnelId) {
            Some(AvpValue::AssignedTunnelId(id)) => *id,
            _ => 0,
        };
        let our_tid = Self::our_tid(i);
        if let Some(slot) = self.slots.get_mut(i) {
            slot.peer = from;
            slot.peer_tid = peer_tid;
        }
        if peer_tid == 0 {
            self.zero_ids += 1;
        } else if let Some(other) = self.live.insert(peer_tid, our_tid) {
            if other != our_tid {
                self.duplicate_count += 1;
            }
            if other != our_tid && self.duplicates.len() < 5 {
                self.duplicates.push(format!(
                    "Tunnel ID {peer_tid} assigned to our tunnels {other} and {our_tid}"
                ));
            }
        }
        let mut avps = Vec::new();
        if let Some(AvpValue::Challenge(challenge)) = sccrp.avp(AvpType::Challenge) {
            match &self.target.secret {
                Some(secret) => avps.push(AvpRepr::mandatory(AvpValue::ChallengeResponse(
                    challenge_response(MessageType::Scccn, secret, challenge),
                ))),
                None => self.challenged_without_secret = true,
            }
        }
        self.set_phase(i, Phase::Connecting);
        self.send(i, Some(MessageType::Scccn), avps);
    }

    /// Resends what is overdue; gives up after [`TRIES`] sends.
    fn retransmit(&mut self, now: Instant, timeout: Duration) {
        for i in 0..self.slots.len() {
            let Some(slot) = self.slots.get_mut(i) else {
                continue;
            };
            if !slot.phase.in_flight() || now.duration_since(slot.sent) < timeout {
                continue;
            }
            if slot.tries >= TRIES {
                // A StopCCN never acknowledged ends Lost too: it counts as not closed.
                self.set_phase(i, Phase::Lost);
                continue;
            }
            slot.tries += 1;
            slot.sent = now;
            let (last, to) = (slot.last.clone(), slot.peer);
            let _ = self.socket.send_to(&last, to);
        }
    }

    fn count(&self, phase: Phase) -> usize {
        self.slots.iter().filter(|s| s.phase == phase).count()
    }

    /// Runs `start` on each slot in `todo`, at most [`WINDOW`] outstanding, until nothing is in
    /// flight or `deadline`.
    fn drive(&mut self, todo: Vec<usize>, deadline: Instant, start: fn(&mut Self, usize)) {
        let timeout = self.target.reply_timeout;
        let mut next = 0;
        let mut scanned = Instant::now();
        loop {
            while self.in_flight < WINDOW {
                let Some(&i) = todo.get(next) else {
                    break;
                };
                start(self, i);
                next += 1;
            }
            self.receive(Duration::from_millis(2));
            let now = Instant::now();
            if now.duration_since(scanned) >= Duration::from_millis(50) {
                scanned = now;
                self.retransmit(now, timeout);
            }
            if (next >= todo.len() && self.in_flight == 0) || now >= deadline {
                return;
            }
        }
    }
}

fn tunnel_id_uniqueness(ctx: &mut Ctx) -> Verdict {
    let target = ctx.target;
    let n = target.live_tunnels.clamp(1, 60_000);
    let socket = match UdpSocket::bind(SocketAddrV4::new(target.bind, 0)) {
        Ok(socket) => socket,
        Err(e) => return Verdict::Inconclusive(format!("opening a UDP socket: {e}")),
    };
    let now = Instant::now();
    let slots = (0..n)
        .map(|_| Slot {
            phase: Phase::Idle,
            peer: target.addr,
            peer_tid: 0,
            nr: 0,
            sent: now,
            tries: 0,
            last: Vec::new(),
        })
        .collect();
    let mut swarm = Swarm {
        socket,
        target,
        slots,
        in_flight: 0,
        live: HashMap::new(),
        duplicates: Vec::new(),
        duplicate_count: 0,
        zero_ids: 0,
        refusals: HashMap::new(),
        challenged_without_secret: false,
        send_errors: 0,
    };
    ctx.note(format!(
        "opening {n} tunnels from one socket, {WINDOW} at a time (packets not logged one by one)"
    ));
    let started = Instant::now();
    swarm.drive(
        (0..n).collect(),
        started + Duration::from_secs(40),
        Swarm::request,
    );
    let up = swarm.count(Phase::Up);
    let connecting = swarm.count(Phase::Connecting);
    let lost = swarm.count(Phase::Lost);
    let refused = swarm.count(Phase::Refused);
    ctx.note(format!(
        "after {:.1} s: {up} up, {connecting} with the SCCCN unacknowledged, {refused} refused, {lost} unanswered, {} distinct Tunnel IDs live",
        started.elapsed().as_secs_f64(),
        swarm.live.len()
    ));
    let mut refusals: Vec<_> = swarm.refusals.iter().collect();
    refusals.sort_by(|a, b| b.1.cmp(a.1));
    for (why, count) in refusals.iter().take(3) {
        ctx.note(format!("refused {count}×: {why}"));
    }
    let verdict = if !swarm.duplicates.is_empty() {
        Verdict::Fail(format!(
            "{} SCCRPs assigned a Tunnel ID already held by another of our live tunnels, e.g. {}",
            swarm.duplicate_count,
            swarm.duplicates.join("; ")
        ))
    } else if swarm.zero_ids > 0 {
        Verdict::Fail(format!(
            "{} SCCRPs without a non-zero Assigned Tunnel ID (§4.4.3: non-zero)",
            swarm.zero_ids
        ))
    } else if swarm.challenged_without_secret {
        Verdict::Inconclusive(
            "the target challenges us: give its tunnel secret with --secret".into(),
        )
    } else if up == 0 {
        Verdict::Inconclusive("no tunnel came up".into())
    } else {
        if up < n {
            ctx.note(format!(
                "only {up} of {n} tunnels were up at once: uniqueness judged among those"
            ));
        }
        Verdict::Pass
    };
    let closing: Vec<usize> = (0..n)
        .filter(|&i| {
            swarm.slots.get(i).is_some_and(|s| {
                s.peer_tid != 0 && matches!(s.phase, Phase::Up | Phase::Connecting | Phase::Lost)
            })
        })
        .collect();
    let to_close = closing.len();
    let closing_started = Instant::now();
    swarm.drive(
        closing,
        closing_started + Duration::from_secs(15),
        Swarm::stop,
    );
    ctx.note(format!(
        "closed {to_close} tunnels with StopCCN in {:.1} s ({} acknowledged){}",
        closing_started.elapsed().as_secs_f64(),
        swarm.count(Phase::Closed),
        if swarm.send_errors > 0 {
            format!("; {} send errors", swarm.send_errors)
        } else {
            String::new()
        }
    ));
    verdict
}

fn bad_udp_checksum_discarded(ctx: &mut Ctx) -> Verdict {
    settle(bad_udp_checksum_inner(ctx))
}

/// The source address the kernel picks towards `to` (what the target will answer).
fn local_ip_towards(to: SocketAddrV4) -> std::io::Result<std::net::Ipv4Addr> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.connect(to)?;
    match socket.local_addr()? {
        SocketAddr::V4(v4) => Ok(*v4.ip()),
        SocketAddr::V6(_) => Err(std::io::Error::other("no IPv4 route")),
    }
}

fn bad_udp_checksum_inner(ctx: &mut Ctx) -> Result<Verdict, Verdict> {
    use pnet_packet::udp::MutableUdpPacket;
    let raw = match reference::raw::RawSender::new() {
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
    if target.bind.is_unspecified() {
        target.bind = local_ip_towards(target.addr)
            .map_err(|e| Verdict::Inconclusive(format!("no route to {}: {e}", target.addr)))?;
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
