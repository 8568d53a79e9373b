//! The patent's message sequences, hop by hop: FIG 3 (endpoints behind the NAT), FIG 5
//! (endpoints with global addresses), and the variants where the initiator sends its SCCCN to
//! the cluster address and the master forwards it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use l2tp::wire::MessageType;

use super::observation::{acknowledges, Kind, Observation};
use super::report::{Coverage, Deviation, Rule, TimelineEntry, TunnelReport, Variant};
use super::rfc;
use super::roles::{Role, Roles};
use super::tunnels::{Entry, Tunnel};

/// Which sequence to hold tunnels to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sequence {
    /// FIG 3 or FIG 5, per tunnel, from the addresses its SCCRP came from.
    #[default]
    Auto,
    Fig3,
    Fig5,
}

/// How long after one sighting of a message another sighting of it (same type and Ns) counts
/// as the same packet seen past a translator rather than a retransmission. RFC 2661 suggests a
/// first retransmission timeout of one second.
pub(crate) const FORWARD_WINDOW: Duration = Duration::from_millis(500);

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

const fn hop(
    step: u16,
    stage: Stage,
    side: Side,
    (src, dst): (Party, Party),
    by: Option<Translator>,
    verb: &'static str,
) -> Hop {
    Hop {
        step,
        stage,
        side,
        src,
        dst,
        by,
        verb,
    }
}

use Party::{Cluster, EndpointGlobal, EndpointLan, Initiator, Nat};
use Side::{Lan, Public};
use Stage::{Ack, Connected, Reply, Request};

const SENT_TO_CLUSTER: &str = "was sent to the cluster";
const FORWARDED_BY_MASTER: &str = "was forwarded by the master";
const SENT_BY_ENDPOINT: &str = "was sent by the endpoint";
const SENT_BY_INITIATOR: &str = "was sent by the initiator";
const LEFT_NAT: &str = "left the NAT";
const FORWARDED_BY_NAT: &str = "was forwarded by the NAT";

// One hop per line: step, stage, side, (source, destination), who made the copy, in words.
#[rustfmt::skip]
static FIG3: [Hop; 8] = [
    hop(102, Request, Public, (Initiator, Cluster), None, SENT_TO_CLUSTER),
    hop(104, Request, Lan, (Initiator, EndpointLan), Some(Translator::Master), FORWARDED_BY_MASTER),
    hop(106, Reply, Lan, (EndpointLan, Initiator), None, SENT_BY_ENDPOINT),
    hop(108, Reply, Public, (Nat, Initiator), Some(Translator::NatOut), LEFT_NAT),
    hop(110, Connected, Public, (Initiator, Nat), None, SENT_BY_INITIATOR),
    hop(112, Connected, Lan, (Initiator, EndpointLan), Some(Translator::NatIn), FORWARDED_BY_NAT),
    hop(114, Ack, Lan, (EndpointLan, Initiator), None, SENT_BY_ENDPOINT),
    hop(116, Ack, Public, (Nat, Initiator), Some(Translator::NatOut), LEFT_NAT),
];

#[rustfmt::skip]
static FIG3_VIA_MASTER: [Hop; 8] = [
    hop(102, Request, Public, (Initiator, Cluster), None, SENT_TO_CLUSTER),
    hop(104, Request, Lan, (Initiator, EndpointLan), Some(Translator::Master), FORWARDED_BY_MASTER),
    hop(106, Reply, Lan, (EndpointLan, Initiator), None, SENT_BY_ENDPOINT),
    hop(108, Reply, Public, (Nat, Initiator), Some(Translator::NatOut), LEFT_NAT),
    hop(110, Connected, Public, (Initiator, Cluster), None, SENT_BY_INITIATOR),
    hop(112, Connected, Lan, (Initiator, EndpointLan), Some(Translator::Master), FORWARDED_BY_MASTER),
    hop(114, Ack, Lan, (EndpointLan, Initiator), None, SENT_BY_ENDPOINT),
    hop(116, Ack, Public, (Nat, Initiator), Some(Translator::NatOut), LEFT_NAT),
];

#[rustfmt::skip]
static FIG5: [Hop; 5] = [
    hop(102, Request, Public, (Initiator, Cluster), None, SENT_TO_CLUSTER),
    hop(204, Request, Lan, (Initiator, EndpointLan), Some(Translator::Master), FORWARDED_BY_MASTER),
    hop(206, Reply, Public, (EndpointGlobal, Initiator), None, SENT_BY_ENDPOINT),
    hop(210, Connected, Public, (Initiator, EndpointGlobal), None, SENT_BY_INITIATOR),
    hop(214, Ack, Public, (EndpointGlobal, Initiator), None, SENT_BY_ENDPOINT),
];

/// Step 212 is not in the patent: named by analogy with 112, the forwarded SCCCN.
#[rustfmt::skip]
static FIG5_VIA_MASTER: [Hop; 6] = [
    hop(102, Request, Public, (Initiator, Cluster), None, SENT_TO_CLUSTER),
    hop(204, Request, Lan, (Initiator, EndpointLan), Some(Translator::Master), FORWARDED_BY_MASTER),
    hop(206, Reply, Public, (EndpointGlobal, Initiator), None, SENT_BY_ENDPOINT),
    hop(210, Connected, Public, (Initiator, Cluster), None, SENT_BY_INITIATOR),
    hop(212, Connected, Lan, (Initiator, EndpointLan), Some(Translator::Master), FORWARDED_BY_MASTER),
    hop(214, Ack, Public, (EndpointGlobal, Initiator), None, SENT_BY_ENDPOINT),
];

fn hops(variant: Variant) -> &'static [Hop] {
    match variant {
        Variant::Fig3 => &FIG3,
        Variant::Fig3ViaMaster => &FIG3_VIA_MASTER,
        Variant::Fig5 => &FIG5,
        Variant::Fig5ViaMaster => &FIG5_VIA_MASTER,
    }
}

/// What the whole check shares.
pub(crate) struct Context<'a> {
    pub observations: &'a [Observation],
    pub roles: &'a Roles,
    pub coverage: Coverage,
    /// The first observation's time: report times count from it.
    pub start: Duration,
    pub sequence: Sequence,
}

impl Context<'_> {
    pub fn obs(&self, entry: Entry) -> &Observation {
        &self.observations[entry.obs]
    }

    pub fn seconds(&self, time: Duration) -> f64 {
        time.saturating_sub(self.start).as_secs_f64()
    }

    fn role(&self, ip: Ipv4Addr) -> Role {
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

    /// A deviation about one observation.
    pub fn deviation(
        &self,
        step: Option<u16>,
        rule: Rule,
        at: Option<&Observation>,
        text: String,
        expected: String,
        observed: String,
    ) -> Deviation {
        Deviation {
            step,
            rule,
            expected,
            observed,
            text,
            time: at.map(|o| self.seconds(o.time)),
            origin: at.and_then(|o| o.origin),
        }
    }
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

    let timeline = control
        .iter()
        .map(|e| {
            let o = ctx.obs(*e);
            let (step, retransmission) = matcher
                .labels
                .get(&e.obs)
                .map_or((None, false), |&(step, retx)| (Some(step), retx));
            TimelineEntry {
                time: ctx.seconds(o.time),
                step,
                retransmission,
                message: o.message.kind,
                src: o.src,
                dst: o.dst,
                from: party_label(ctx, tunnel, o.src),
                to: party_label(ctx, tunnel, o.dst),
                tunnel_id: o.message.tunnel_id,
                session_id: o.message.session_id,
                ns: o.message.ns,
                nr: o.message.nr,
                assigned_tunnel_id: o.message.assigned_tunnel_id,
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
        Role::EndpointLan(i) => Some(i),
        _ => None,
    };
    let any = |ip: Ipv4Addr| match ctx.role(ip) {
        Role::EndpointLan(i) | Role::EndpointGlobal(i) => Some(i),
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
                        Role::NatGlobal => Some(false),
                        Role::EndpointGlobal(_) => Some(true),
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

impl Placement {
    fn of(ctx: &Context, request: &[Entry], reply: &[Entry]) -> Placement {
        let mut p = Placement::default();
        for e in request {
            let o = ctx.obs(*e);
            if let Role::EndpointLan(i) = ctx.role(*o.dst.ip()) {
                if !p.dispatched.iter().any(|(j, _)| *j == i) {
                    p.dispatched.push((i, o.time));
                }
            }
        }
        for e in reply {
            if let Role::EndpointLan(i) | Role::EndpointGlobal(i) = ctx.role(*ctx.obs(*e).src.ip())
            {
                if !p.answered.contains(&i) {
                    p.answered.push(i);
                }
            }
        }
        if p.dispatched.len() < 2 {
            return p;
        }
        p.serving = p
            .dispatched
            .iter()
            .map(|(i, _)| *i)
            .find(|i| p.answered.contains(i))
            .or_else(|| p.dispatched.last().map(|(i, _)| *i));
        // Left legitimately: got its copies before the serving endpoint got its first,
        // never answered, and got none after.
        if let Some(serving) = p.serving {
            let since = p
                .dispatched
                .iter()
                .find(|(i, _)| *i == serving)
                .map(|(_, t)| *t);
            let last_copy = |i: usize| {
                request
                    .iter()
                    .map(|e| ctx.obs(*e))
                    .filter(|o| ctx.role(*o.dst.ip()) == Role::EndpointLan(i))
                    .map(|o| o.time)
                    .max()
            };
            p.left = p
                .dispatched
                .iter()
                .map(|(i, _)| *i)
                .filter(|&i| {
                    i != serving
                        && !p.answered.contains(&i)
                        && matches!((last_copy(i), since), (Some(a), Some(b)) if a < b)
                })
                .collect();
        }
        p
    }

    fn left_legitimately(&self, i: usize) -> bool {
        self.left.contains(&i)
    }

    /// The request's transmissions, split into those whose LAN copy went to an endpoint left
    /// legitimately, and the rest (in time order).
    fn split(&self, ctx: &Context, request: &[Entry], hops: usize) -> (Vec<Entry>, Vec<Entry>) {
        if self.left.is_empty() {
            return (Vec::new(), request.to_vec());
        }
        let (mut abandoned, mut kept) = (Vec::new(), Vec::new());
        for group in transmissions(ctx, request, hops) {
            let to_left = group.iter().any(|e| {
                matches!(ctx.role(*ctx.obs(*e).dst.ip()),
                    Role::EndpointLan(i) if self.left_legitimately(i))
            });
            if to_left {
                abandoned.extend(group);
            } else {
                kept.extend(group);
            }
        }
        kept.sort_by_key(|e| (ctx.obs(*e).time, e.obs));
        (abandoned, kept)
    }

    fn notes(&self, ctx: &Context) -> Vec<String> {
        let Some(serving) = self.serving else {
            return Vec::new();
        };
        let to = &ctx.roles.endpoints[serving];
        self.left
            .iter()
            .map(|&i| {
                let from = &ctx.roles.endpoints[i];
                format!(
                    "the SCCRQ went to {} ({}) first, which never answered; a retransmission \
                     was placed anew on {} ({}) (an endpoint out of service)",
                    from.name, from.lan, to.name, to.lan
                )
            })
            .collect()
    }
}

impl Matcher<'_, '_> {
    /// Labels the copies sent to an endpoint that was left on the request's hops by side,
    /// the first as the first transmission; the copies staged after them are retransmissions.
    fn label_abandoned(&mut self, abandoned: &[Entry]) {
        if abandoned.is_empty() {
            return;
        }
        let request = self.stage_hops(Request);
        for (_, (step, retransmission)) in self.labels.iter_mut() {
            if request.iter().any(|&i| self.hops[i].step == *step) {
                *retransmission = true;
            }
        }
        let mut seen = Vec::new();
        for e in abandoned {
            let side = self.ctx.side(self.ctx.obs(*e));
            if let Some(hop) = self.hop_on(Request, side) {
                let again = seen.contains(&hop);
                seen.push(hop);
                self.labels.insert(e.obs, (self.hops[hop].step, again));
            }
        }
    }

    fn stage_hops(&self, stage: Stage) -> Vec<usize> {
        (0..self.hops.len())
            .filter(|&i| self.hops[i].stage == stage)
            .collect()
    }

    fn matched_in(&self, stage: Stage) -> Option<Entry> {
        self.stage_hops(stage)
            .into_iter()
            .find_map(|i| self.matched[i])
    }

    /// Groups a stage's observations into transmissions and places each on its hops.
    fn stage(&mut self, stage: Stage, entries: &[Entry]) {
        let hop_indices = self.stage_hops(stage);
        let groups = transmissions(self.ctx, entries, hop_indices.len());
        for (g, group) in groups.iter().enumerate() {
            // Only the first acknowledgement counts, unless it was lost before a hop (below).
            if stage == Ack && g > 0 && hop_indices.iter().all(|&i| self.matched[i].is_some()) {
                break;
            }
            let placed = self.assign(group, &hop_indices);
            for (slot, &hop_index) in placed.iter().zip(&hop_indices) {
                if let Some(entry) = slot {
                    self.labels
                        .insert(entry.obs, (self.hops[hop_index].step, g > 0));
                    if g == 0 {
                        self.matched[hop_index] = Some(*entry);
                    } else if self.matched[hop_index].is_none() {
                        // The first transmission never got this far; a later one did.
                        self.matched[hop_index] = Some(*entry);
                        self.late.push((self.hops[hop_index].step, g));
                    }
                }
            }
        }
    }

    fn party_ip(&self, party: Party) -> Option<Ipv4Addr> {
        let roles = self.ctx.roles;
        let endpoint = self.endpoint.map(|i| &roles.endpoints[i]);
        match party {
            Party::Initiator => Some(*self.tunnel.initiator.ip()),
            Party::Cluster => roles.cluster_address,
            Party::Nat => roles.nat_global,
            Party::EndpointLan => endpoint.map(|e| e.lan),
            Party::EndpointGlobal => endpoint.and_then(|e| e.global),
        }
    }

    /// How well an observation fits a hop: 2 per matching address, 1 for the side.
    fn score(&self, entry: Entry, hop: &Hop) -> u32 {
        let o = self.ctx.obs(entry);
        let mut score = 0;
        if self.party_ip(hop.src) == Some(*o.src.ip()) {
            score += 2;
        }
        if self.party_ip(hop.dst) == Some(*o.dst.ip()) {
            score += 2;
        }
        if self.ctx.side(o) == hop.side {
            score += 1;
        }
        score
    }

    /// Places one transmission's sightings on the stage's hops: in time order when every hop
    /// was seen, else by which hop's addresses each fits best.
    fn assign(&self, group: &[Entry], hop_indices: &[usize]) -> Vec<Option<Entry>> {
        let hops: Vec<&Hop> = hop_indices.iter().map(|&i| &self.hops[i]).collect();
        match (group, hops.as_slice()) {
            ([a, b], [h0, h1]) => {
                let tied = self.ctx.obs(*a).time == self.ctx.obs(*b).time;
                if tied
                    && self.score(*b, h0) + self.score(*a, h1)
                        > self.score(*a, h0) + self.score(*b, h1)
                {
                    vec![Some(*b), Some(*a)]
                } else {
                    vec![Some(*a), Some(*b)]
                }
            }
            ([a], [h0, h1]) => {
                if self.score(*a, h1) > self.score(*a, h0) {
                    vec![None, Some(*a)]
                } else {
                    vec![Some(*a), None]
                }
            }
            _ => {
                let mut placed: Vec<Option<Entry>> = group.iter().copied().map(Some).collect();
                placed.resize(hops.len(), None);
                placed
            }
        }
    }

    fn obs_at(&self, hop_index: usize) -> Option<&Observation> {
        self.matched[hop_index].map(|e| self.ctx.obs(e))
    }

    fn step_of(&self, hop_index: usize) -> u16 {
        self.hops[hop_index].step
    }

    /// The hop of a stage that is seen on the given side.
    fn hop_on(&self, stage: Stage, side: Side) -> Option<usize> {
        (0..self.hops.len()).find(|&i| self.hops[i].stage == stage && self.hops[i].side == side)
    }

    fn first_hop(&self, stage: Stage) -> Option<usize> {
        (0..self.hops.len()).find(|&i| self.hops[i].stage == stage)
    }

    fn expect(&self, hop_index: usize, source: bool) -> Expect {
        let hop = &self.hops[hop_index];
        let party = if source { hop.src } else { hop.dst };
        let roles = self.ctx.roles;
        let endpoint = self.endpoint.map(|i| &roles.endpoints[i]);
        let ip = self.party_ip(party);
        let desc = match (party, ip) {
            (Party::Initiator, _) => format!("the initiator {}", self.tunnel.initiator),
            (Party::Cluster, Some(ip)) => format!("the cluster address {ip}"),
            (Party::Cluster, None) => "the cluster address (unknown)".to_owned(),
            (Party::Nat, Some(ip)) => format!("the NAT's global address {ip}"),
            (Party::Nat, None) => {
                "the NAT's global address (unknown: give nat_global in --roles)".to_owned()
            }
            (Party::EndpointLan, Some(ip)) => {
                format!("{}'s LAN address {ip}", endpoint.map_or("", |e| &e.name))
            }
            (Party::EndpointLan, None) => "an endpoint's LAN address (none seen)".to_owned(),
            (Party::EndpointGlobal, Some(ip)) => {
                format!("{}'s global address {ip}", endpoint.map_or("", |e| &e.name))
            }
            (Party::EndpointGlobal, None) => format!(
                "{}'s global address (unknown: give it in --roles)",
                endpoint.map_or("the endpoint", |e| &e.name)
            ),
        };
        let mut port = None;
        if party == Party::Initiator {
            port = Some((self.tunnel.initiator.port(), "(the initiator's)".to_owned()));
        }
        // A translator keeps the port of the address it rewrites.
        if let Some(by) = hop.by {
            if by.rewrites_source() == source && hop_index > 0 {
                if let Some(prev) = self.obs_at(hop_index - 1) {
                    let prev_port = if source {
                        prev.src.port()
                    } else {
                        prev.dst.port()
                    };
                    port = Some((
                        prev_port,
                        format!(
                            "as in step {} ({} address)",
                            self.step_of(hop_index - 1),
                            by.rule()
                        ),
                    ));
                }
            }
        }
        // The initiator answers where the SCCRP came from, or (via the master) where it dialled.
        if hop.stage == Stage::Connected && hop.by.is_none() && !source {
            let learnt = if hop.dst == Party::Cluster {
                self.first_hop(Request).and_then(|i| {
                    self.obs_at(i).map(|o| {
                        (
                            o.dst.port(),
                            format!("the port dialled in step {}", self.step_of(i)),
                        )
                    })
                })
            } else {
                self.hop_on(Reply, Public).and_then(|i| {
                    self.obs_at(i).map(|o| {
                        (
                            o.src.port(),
                            format!("where the SCCRP came from (step {})", self.step_of(i)),
                        )
                    })
                })
            };
            if learnt.is_some() {
                port = learnt;
            }
        }
        // The endpoint acknowledges from the port it answered from.
        if hop.stage == Stage::Ack && hop.by.is_none() && source {
            if let Some(i) = self.first_hop(Reply) {
                if let Some(o) = self.obs_at(i) {
                    port = Some((
                        o.src.port(),
                        format!("the endpoint's port in step {}", self.step_of(i)),
                    ));
                }
            }
        }
        Expect { ip, port, desc }
    }

    /// The sequence's deviations, in step order.
    fn check(&self) -> Vec<Deviation> {
        let ctx = self.ctx;
        let mut found: Vec<(usize, Deviation)> = Vec::new();
        let mut previous: Option<(u16, Duration)> = None;
        for (i, hop) in self.hops.iter().enumerate() {
            let Some(entry) = self.matched[i] else {
                let src = self.expect(i, true).desc;
                let dst = self.expect(i, false).desc;
                let what = match hop.stage {
                    Stage::Request => "SCCRQ",
                    Stage::Reply => "SCCRP",
                    Stage::Connected => "SCCCN",
                    Stage::Ack => "ZLB (or other message acknowledging the SCCCN)",
                };
                if ctx.covered(hop.side) {
                    let expected = format!("{what} from {src} to {dst}");
                    found.push((
                        i,
                        ctx.deviation(
                            Some(hop.step),
                            Rule::Missing,
                            None,
                            format!("step {}: missing: no {expected} was observed", hop.step),
                            expected,
                            "nothing".to_owned(),
                        ),
                    ));
                }
                // Else the report says once that this side was not captured.
                continue;
            };
            let o = ctx.obs(entry);
            let mut push = |deviation: Deviation| found.push((i, deviation));
            for source in [true, false] {
                if let Some(deviation) = self.check_address(i, o, source) {
                    push(deviation);
                }
            }
            for deviation in self.check_ids(i, o) {
                push(deviation);
            }
            if let (Some(by), true) = (hop.by, i > 0) {
                if let Some(prev) = self.obs_at(i - 1) {
                    if prev.message.digest != o.message.digest {
                        let changes = changes(prev, o);
                        push(ctx.deviation(
                            Some(hop.step),
                            Rule::Altered,
                            Some(o),
                            format!(
                                "step {}: the {} changed the L2TP message it forwarded ({changes}); it must forward it unchanged",
                                hop.step,
                                by.name()
                            ),
                            format!("the message of step {}", self.step_of(i - 1)),
                            changes.clone(),
                        ));
                    }
                }
            }
            if let Some((step, time)) = previous {
                if o.time < time {
                    push(ctx.deviation(
                        Some(hop.step),
                        Rule::Order,
                        Some(o),
                        format!(
                            "step {}: {} seen at {:.6} s, before step {step} at {:.6} s",
                            hop.step,
                            o.message.kind,
                            ctx.seconds(o.time),
                            ctx.seconds(time)
                        ),
                        format!("after step {step}"),
                        format!("{:.6} s before it", (time - o.time).as_secs_f64()),
                    ));
                }
            }
            previous = Some((hop.step, o.time));
        }
        found.extend(self.check_dispatch());
        // Stable: within a step, the order the checks ran in.
        found.sort_by_key(|(i, _)| *i);
        found.into_iter().map(|(_, deviation)| deviation).collect()
    }

    fn check_address(&self, i: usize, o: &Observation, source: bool) -> Option<Deviation> {
        let hop = &self.hops[i];
        let expect = self.expect(i, source);
        let observed = if source { o.src } else { o.dst };
        let field = if source { "source" } else { "destination" };
        let label = match self.ctx.roles.label(*observed.ip()) {
            Some(label) => format!("{observed} ({label})"),
            None if observed == self.tunnel.initiator => format!("{observed} (the initiator)"),
            None => observed.to_string(),
        };
        // The field a translator must leave alone.
        let untouched = hop
            .by
            .filter(|by| by.rewrites_source() != source)
            .map(|by| format!(" ({})", by.rule()))
            .unwrap_or_default();
        let kind = o.message.kind;
        match expect.ip {
            Some(ip) if ip == *observed.ip() => {
                let (port, why) = expect.port?;
                (observed.port() != port).then(|| {
                    self.ctx.deviation(
                        Some(hop.step),
                        Rule::Address,
                        Some(o),
                        format!(
                            "step {}: {kind} {} with {field} port {}, expected {port} {why}",
                            hop.step,
                            hop.verb,
                            observed.port()
                        ),
                        format!("{field} port {port}"),
                        format!("{field} port {}", observed.port()),
                    )
                })
            }
            _ => Some(self.ctx.deviation(
                Some(hop.step),
                Rule::Address,
                Some(o),
                format!(
                    "step {}: {kind} {} with {field} {label}, expected {}{untouched}",
                    hop.step, hop.verb, expect.desc
                ),
                expect.desc,
                label,
            )),
        }
    }

    fn check_ids(&self, i: usize, o: &Observation) -> Vec<Deviation> {
        let hop = &self.hops[i];
        let m = &o.message;
        let tunnel = self.tunnel;
        let mut out = Vec::new();
        let mut flag = |rule: Rule, what: String, expected: String, observed: String| {
            out.push(self.ctx.deviation(
                Some(hop.step),
                rule,
                Some(o),
                format!(
                    "step {}: {} {} with {what} {observed}, expected {expected}",
                    hop.step, m.kind, hop.verb
                ),
                expected,
                observed,
            ));
        };
        let endpoint = self.endpoint.map_or("the endpoint", |e| {
            self.ctx.roles.endpoints[e].name.as_str()
        });
        let header = "header Tunnel ID".to_owned();
        match hop.stage {
            Stage::Request => {
                if m.tunnel_id != 0 {
                    flag(
                        Rule::TunnelId,
                        header,
                        "0 (an SCCRQ opens the tunnel)".to_owned(),
                        m.tunnel_id.to_string(),
                    );
                }
                if m.assigned_tunnel_id != Some(tunnel.initiator_tid) {
                    flag(
                        Rule::TunnelId,
                        "Assigned Tunnel ID".to_owned(),
                        tunnel.initiator_tid.to_string(),
                        describe_assigned(m.assigned_tunnel_id),
                    );
                }
            }
            Stage::Reply => {
                if m.tunnel_id != tunnel.initiator_tid {
                    flag(
                        Rule::TunnelId,
                        header,
                        format!(
                            "the initiator's Assigned Tunnel ID {}",
                            tunnel.initiator_tid
                        ),
                        m.tunnel_id.to_string(),
                    );
                }
                if m.assigned_tunnel_id.is_none() {
                    flag(
                        Rule::TunnelId,
                        "Assigned Tunnel ID".to_owned(),
                        format!("{endpoint}'s tunnel ID"),
                        "none".to_owned(),
                    );
                }
            }
            Stage::Connected => {
                if let Some(b) = tunnel.endpoint_tid {
                    if m.tunnel_id != b {
                        flag(
                            Rule::TunnelId,
                            header,
                            format!("{endpoint}'s Assigned Tunnel ID {b} (from the SCCRP)"),
                            m.tunnel_id.to_string(),
                        );
                    }
                }
            }
            Stage::Ack => {
                if m.tunnel_id != tunnel.initiator_tid {
                    flag(
                        Rule::TunnelId,
                        header,
                        format!(
                            "the initiator's Assigned Tunnel ID {}",
                            tunnel.initiator_tid
                        ),
                        m.tunnel_id.to_string(),
                    );
                }
            }
        }
        out
    }

    /// Deterministic dispatch: every SCCRQ of the tunnel goes to the same endpoint, except
    /// that the master may move it away from an endpoint that never answered (see
    /// `Placement`).
    fn check_dispatch(&self) -> Option<(usize, Deviation)> {
        let forward = self.hop_on(Request, Lan)?;
        let first = self.endpoint?;
        let roles = self.ctx.roles;
        self.tunnel.entries.iter().find_map(|e| {
            let o = self.ctx.obs(*e);
            if o.message.kind != Kind::Control(MessageType::Sccrq) {
                return None;
            }
            match roles.role_of(*o.dst.ip()) {
                Role::EndpointLan(other)
                    if other != first && !self.placement.left_legitimately(other) =>
                {
                    let (a, b) = (&roles.endpoints[first], &roles.endpoints[other]);
                    let step = self.step_of(forward);
                    Some((
                        forward,
                        self.ctx.deviation(
                            Some(step),
                            Rule::Dispatch,
                            Some(o),
                            format!(
                                "step {step}: a retransmitted SCCRQ was forwarded to {} ({}), \
                                 but {} ({}) {} the tunnel; dispatch must be deterministic",
                                b.name,
                                b.lan,
                                a.name,
                                a.lan,
                                if self.placement.answered.contains(&first) {
                                    "answered"
                                } else {
                                    "got the first copy of"
                                }
                            ),
                            format!("{} {}", a.name, a.lan),
                            format!("{} {}", b.name, b.lan),
                        ),
                    ))
                }
                _ => None,
            }
        })
    }
}

fn describe_assigned(assigned: Option<u16>) -> String {
    assigned.map_or_else(|| "none".to_owned(), |id| id.to_string())
}

/// What differs between two sightings of one message, in words.
fn changes(before: &Observation, after: &Observation) -> String {
    let (a, b) = (&before.message, &after.message);
    let mut out = String::new();
    let mut field = |name: &str, x: String, y: String| {
        if x != y {
            if !out.is_empty() {
                out.push_str(", ");
            }
            let _ = write!(out, "{name} {x} → {y}");
        }
    };
    field("type", a.kind.to_string(), b.kind.to_string());
    field(
        "Tunnel ID",
        a.tunnel_id.to_string(),
        b.tunnel_id.to_string(),
    );
    field(
        "Session ID",
        a.session_id.to_string(),
        b.session_id.to_string(),
    );
    field("Ns", a.ns.to_string(), b.ns.to_string());
    field("Nr", a.nr.to_string(), b.nr.to_string());
    field(
        "Assigned Tunnel ID",
        describe_assigned(a.assigned_tunnel_id),
        describe_assigned(b.assigned_tunnel_id),
    );
    if out.is_empty() {
        out.push_str("AVPs differ");
    }
    out
}

/// Groups sightings of one message into transmissions: a sighting joins the latest group of
/// the same type and Ns that is not full, started less than [`FORWARD_WINDOW`] before, and
/// holds no sighting of the same hop from the same capture (that would be a retransmission).
fn transmissions(ctx: &Context, entries: &[Entry], hops: usize) -> Vec<Vec<Entry>> {
    let mut groups: Vec<Vec<Entry>> = Vec::new();
    for &entry in entries {
        let o = ctx.obs(entry);
        let joined = groups.iter_mut().rev().find(|group| {
            let first = ctx.obs(group[0]);
            group.len() < hops
                && (first.message.kind, first.message.ns) == (o.message.kind, o.message.ns)
                && o.time.saturating_sub(first.time) <= FORWARD_WINDOW
                && !group.iter().any(|m| {
                    let m = ctx.obs(*m);
                    m.src == o.src
                        && m.dst == o.dst
                        && m.origin.map(|x| x.capture) == o.origin.map(|x| x.capture)
                        && o.origin.is_some()
                })
        });
        match joined {
            Some(group) => group.push(entry),
            None => groups.push(vec![entry]),
        }
    }
    groups
}
