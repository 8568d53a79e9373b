//! The patent's message sequences, hop by hop: FIG 3 (endpoints behind the NAT), FIG 5
//! (endpoints with global addresses), and the variants where the initiator sends its SCCCN to
//! the cluster address and the master forwards it.

mod check;
mod figures;
mod matcher;
mod placement;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use l2tp::wire::MessageType;

pub(crate) use super::context::{Context, Sequence, FORWARD_WINDOW};
use super::observation::{acknowledges, Kind, Observation};
use super::report::{TimelineEntry, TunnelReport, Variant};
use super::roles::AddressRole;
use super::tunnels::{Entry, Tunnel};
use super::{ppp, rfc};
use figures::hops;
use Stage::{Ack, Connected, Reply, Request};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Request,
    Reply,
    Connected,
    Ack,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Public,
    Lan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Party {
    Initiator,
    Cluster,
    Nat,
    EndpointLan,
    EndpointGlobal,
}

/// Who made a hop's copy out of the previous hop's packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Translator {
    Master,
    /// LAN to public: rewrites the source.
    NatOut,
    /// Public to LAN: rewrites the destination.
    NatIn,
}

impl Translator {
    fn rule(self) -> &'static str {
        match self {
            Translator::Master => "the master rewrites only the destination",
            Translator::NatOut => "the NAT rewrites only the source",
            Translator::NatIn => "the NAT rewrites only the destination",
        }
    }

    fn rewrites_source(self) -> bool {
        self == Translator::NatOut
    }

    fn name(self) -> &'static str {
        match self {
            Translator::Master => "master",
            Translator::NatOut | Translator::NatIn => "NAT",
        }
    }
}

#[derive(Debug)]
struct Hop {
    step: u16,
    stage: Stage,
    side: Side,
    src: Party,
    dst: Party,
    by: Option<Translator>,
    verb: &'static str,
}

/// An address a hop should carry: the IP (when the roles know it), maybe the port, in words.
struct Expect {
    ip: Option<Ipv4Addr>,
    port: Option<(u16, String)>,
    desc: String,
}

struct Matcher<'c, 'a> {
    ctx: &'c Context<'a>,
    tunnel: &'c Tunnel,
    endpoint: Option<usize>,
    hops: &'static [Hop],
    /// Per hop, its observation in the first transmission.
    matched: Vec<Option<Entry>>,
    /// Observation index -> (step, is a retransmission).
    labels: HashMap<usize, (u16, bool)>,
    /// Steps first seen only in a retransmission (step, which retransmission): the earlier
    /// transmission was lost before that hop, which is loss, not a wrong rewrite.
    late: Vec<(u16, usize)>,
    placement: &'c Placement,
}

/// Where the master sent a tunnel's SCCRQ copies on the LAN, and which endpoints answered.
///
/// The master may place a retransmitted SCCRQ anew only away from an endpoint that has gone
/// out of service, and a dead endpoint never answers. So a move is legitimate when the endpoint
/// it leaves never sent an SCCRP for the tunnel and never gets a copy again; anything else can
/// make two tunnels of one and is a deviation (checked in `check_dispatch`).
#[derive(Debug, Default)]
struct Placement {
    /// LAN endpoints in the order they first got a copy, with the time of that first copy.
    dispatched: Vec<(usize, Duration)>,
    /// Endpoints that sent an SCCRP for the tunnel.
    answered: Vec<usize>,
    /// The endpoint that served the tunnel: the first to answer, else the last one sent to.
    serving: Option<usize>,
    /// Endpoints left legitimately, in order.
    left: Vec<usize>,
}
/// One tunnel against its sequence, then against RFC 2661's sequence-number rules.
pub(crate) fn check_tunnel(ctx: &Context, tunnel: &Tunnel) -> TunnelReport {
    let control: Vec<Entry> = tunnel
        .entries
        .iter()
        .copied()
        .filter(|e| ctx.obs(*e).message.kind.is_control())
        .collect();
    let data_messages = tunnel.entries.len() - control.len();
    let of_kind = |kind: MessageType, from_initiator: bool| -> Vec<Entry> {
        control
            .iter()
            .copied()
            .filter(|e| {
                ctx.obs(*e).message.kind == Kind::Control(kind)
                    && e.from_initiator == from_initiator
            })
            .collect()
    };
    let request = of_kind(MessageType::Sccrq, true);
    let reply = of_kind(MessageType::Sccrp, false);
    let connected = of_kind(MessageType::Scccn, true);

    let placement = Placement::of(ctx, &request, &reply);
    let endpoint = placement
        .serving
        .or_else(|| endpoint_of(ctx, &request, &reply, &connected));
    let mut notes = Vec::new();
    let variant = variant_of(ctx, endpoint, &reply, &connected, &mut notes);
    let hops = hops(variant);
    let mut matcher = Matcher {
        ctx,
        tunnel,
        endpoint,
        hops,
        matched: vec![None; hops.len()],
        labels: HashMap::new(),
        late: Vec::new(),
        placement: &placement,
    };
    // Copies the master sent to an endpoint that never answered, before it placed the SCCRQ
    // anew, are not this tunnel's sequence: it starts again at the endpoint that served it.
    let (abandoned, request) = placement.split(ctx, &request, matcher.stage_hops(Request).len());
    matcher.stage(Request, &request);
    matcher.label_abandoned(&abandoned);
    notes.extend(placement.notes(ctx));
    matcher.stage(Reply, &reply);
    matcher.stage(Connected, &connected);

    // The acknowledgement of the SCCCN: a ZLB, or any message from the endpoint whose Nr
    // covers the SCCCN (the endpoint may piggyback the ack on one).
    let first_scccn = matcher
        .matched_in(Connected)
        .or_else(|| connected.first().copied());
    if let Some(scccn) = first_scccn {
        let scccn = ctx.obs(scccn);
        let candidates: Vec<Entry> = control
            .iter()
            .copied()
            .filter(|e| {
                let o = ctx.obs(*e);
                !e.from_initiator
                    && o.message.kind != Kind::Control(MessageType::Sccrp)
                    && o.time >= scccn.time
                    && acknowledges(o.message.nr, scccn.message.ns)
            })
            .collect();
        if let Some(&first) = candidates.first() {
            let first = ctx.obs(first).message;
            let same: Vec<Entry> = candidates
                .iter()
                .copied()
                .filter(|e| {
                    let m = ctx.obs(*e).message;
                    (m.kind, m.ns, m.nr) == (first.kind, first.ns, first.nr)
                })
                .collect();
            matcher.stage(Ack, &same);
            if first.kind != Kind::Zlb {
                let steps: Vec<String> = hops
                    .iter()
                    .filter(|h| h.stage == Ack)
                    .map(|h| h.step.to_string())
                    .collect();
                notes.push(format!(
                    "step {}: no ZLB; the endpoint acknowledged the SCCCN with {} (Nr {})",
                    steps.join("/"),
                    first.kind,
                    first.nr
                ));
            }
        }
    }

    for (step, retransmission) in &matcher.late {
        notes.push(format!(
            "step {step}: first seen in retransmission {retransmission} (the earlier \
             transmission was lost before this hop)"
        ));
    }
    let mut deviations = matcher.check();
    let outcome = rfc::check(ctx, tunnel, &control, &matcher.labels);
    deviations.extend(outcome.deviations);
    notes.extend(outcome.notes);
    let mut ppp = ppp::check(ctx, tunnel);
    deviations.append(&mut ppp.deviations);

    // Control messages and the data messages that changed a PPP phase, in time order.
    let timeline = tunnel
        .entries
        .iter()
        .filter_map(|e| {
            let mark = ppp.marks.remove(&e.obs);
            let o = ctx.obs(*e);
            (o.message.kind.is_control() || mark.is_some()).then_some((e, o, mark))
        })
        .map(|(e, o, ppp)| {
            let (step, retransmission) = matcher
                .labels
                .get(&e.obs)
                .map_or((None, false), |&(step, retx)| (Some(step), retx));
            TimelineEntry {
                time: ctx.seconds(o.time),
                step,
                retransmission,
                src: o.src,
                dst: o.dst,
                from: party_label(ctx, tunnel, o.src),
                to: party_label(ctx, tunnel, o.dst),
                message: o.message,
                ppp,
                origin: o.origin,
            }
        })
        .collect();

    TunnelReport {
        initiator: tunnel.initiator,
        initiator_tunnel_id: tunnel.initiator_tid,
        endpoint: endpoint.map(|i| ctx.roles.endpoints[i].name.clone()),
        endpoint_tunnel_id: tunnel.endpoint_tid,
        variant,
        conforms: deviations.is_empty(),
        deviations,
        notes,
        retransmissions: outcome.retransmissions,
        data_messages,
        ppp: ppp.counts,
        timeline,
    }
}

/// "TI" for the tunnel's initiator, the role for cluster addresses, else the address.
fn party_label(ctx: &Context, tunnel: &Tunnel, addr: SocketAddrV4) -> String {
    if addr == tunnel.initiator {
        return "TI".to_owned();
    }
    ctx.roles
        .label(*addr.ip())
        .unwrap_or_else(|| addr.to_string())
}

/// The endpoint that served the tunnel: where the master forwarded the SCCRQ, else where the
/// SCCRP came from, else where the SCCCN went.
fn endpoint_of(
    ctx: &Context,
    request: &[Entry],
    reply: &[Entry],
    connected: &[Entry],
) -> Option<usize> {
    let lan = |ip: Ipv4Addr| match ctx.role(ip) {
        AddressRole::EndpointLan(i) => Some(i),
        _ => None,
    };
    let any = |ip: Ipv4Addr| match ctx.role(ip) {
        AddressRole::EndpointLan(i) | AddressRole::EndpointGlobal(i) => Some(i),
        _ => None,
    };
    request
        .iter()
        .find_map(|e| lan(*ctx.obs(*e).dst.ip()))
        .or_else(|| reply.iter().find_map(|e| any(*ctx.obs(*e).src.ip())))
        .or_else(|| connected.iter().find_map(|e| any(*ctx.obs(*e).dst.ip())))
}

fn variant_of(
    ctx: &Context,
    endpoint: Option<usize>,
    reply: &[Entry],
    connected: &[Entry],
    notes: &mut Vec<String>,
) -> Variant {
    let fig5 = match ctx.sequence {
        Sequence::Fig3 => false,
        Sequence::Fig5 => true,
        Sequence::Auto => {
            let told = |entries: &[Entry], source: bool| {
                entries.iter().find_map(|e| {
                    let o = ctx.obs(*e);
                    match ctx.role(if source { *o.src.ip() } else { *o.dst.ip() }) {
                        AddressRole::NatGlobal => Some(false),
                        AddressRole::EndpointGlobal(_) => Some(true),
                        _ => None,
                    }
                })
            };
            match told(reply, true).or_else(|| told(connected, false)) {
                Some(fig5) => fig5,
                None => {
                    let fig5 = ctx.roles.nat_global.is_none()
                        && endpoint.is_some_and(|i| ctx.roles.endpoints[i].global.is_some());
                    notes.push(format!(
                        "FIG {} by default: no SCCRP or SCCCN address told FIG 3 from FIG 5",
                        if fig5 { 5 } else { 3 }
                    ));
                    fig5
                }
            }
        }
    };
    let via_master = connected
        .iter()
        .any(|e| Some(*ctx.obs(*e).dst.ip()) == ctx.roles.cluster_address);
    if via_master {
        notes.push(
            "the initiator sent its SCCCN to the cluster address it dialled, not to where the \
             SCCRP came from (as xl2tpd does); the master must forward it"
                .to_owned(),
        );
    }
    match (fig5, via_master) {
        (false, false) => Variant::Fig3,
        (false, true) => Variant::Fig3ViaMaster,
        (true, false) => Variant::Fig5,
        (true, true) => Variant::Fig5ViaMaster,
    }
}

/// Where on the cluster a sighting was made, as the check needs it.
impl Context<'_> {
    fn role(&self, ip: Ipv4Addr) -> AddressRole {
        self.roles.role_of(ip)
    }

    /// The side of the cluster an observation was made on.
    pub fn side(&self, o: &Observation) -> Side {
        if self.role(*o.src.ip()).is_lan() || self.role(*o.dst.ip()).is_lan() {
            Side::Lan
        } else {
            Side::Public
        }
    }

    fn covered(&self, side: Side) -> bool {
        match side {
            Side::Public => self.coverage.public,
            Side::Lan => self.coverage.lan,
        }
    }
}
