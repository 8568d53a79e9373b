//! The sequence's deviations once sightings sit on their hops: addresses, IDs, order and
//! dispatch.

use std::fmt::Write as _;
use std::time::Duration;

use l2tp::wire::MessageType;

use super::Side::Lan;
use super::Stage::Request;
use super::{Matcher, Stage};
use crate::sequence::observation::{Kind, Observation};
use crate::sequence::report::{Deviation, Rule};
use crate::sequence::roles::AddressRole;

impl Matcher<'_, '_> {
    /// The sequence's deviations, in step order.
    pub(super) fn check(&self) -> Vec<Deviation> {
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
                    if prev.message.digest != o.message.digest
                        && !self.tunnel.translated(&prev.message, &o.message)
                    {
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
        // The header Tunnel ID each stage must carry: the initiator's ID on what goes to it,
        // the endpoint's (from the SCCRP) on what the initiator sends after.
        let initiator = tunnel.initiator_tid;
        let header_tid = match hop.stage {
            Stage::Request => Some((0, "0 (an SCCRQ opens the tunnel)".to_owned())),
            Stage::Reply | Stage::Ack => Some((
                initiator,
                format!("the initiator's Assigned Tunnel ID {initiator}"),
            )),
            Stage::Connected => match tunnel.expected_tid(self.ctx.roles, *o.dst.ip()) {
                Some(public) if Some(public) != tunnel.endpoint_tid => Some((
                    public,
                    format!("the NAT's public Tunnel ID {public} for {endpoint}'s tunnel"),
                )),
                other => other.map(|b| {
                    (
                        b,
                        format!("{endpoint}'s Assigned Tunnel ID {b} (from the SCCRP)"),
                    )
                }),
            },
        };
        if let Some((tid, expected)) = header_tid {
            if m.tunnel_id != tid {
                let header = "header Tunnel ID".to_owned();
                flag(Rule::TunnelId, header, expected, m.tunnel_id.to_string());
            }
        }
        match hop.stage {
            Stage::Request if m.assigned_tunnel_id != Some(initiator) => {
                flag(
                    Rule::TunnelId,
                    "Assigned Tunnel ID".to_owned(),
                    initiator.to_string(),
                    describe_assigned(m.assigned_tunnel_id),
                );
            }
            Stage::Reply if m.assigned_tunnel_id.is_none() => {
                flag(
                    Rule::TunnelId,
                    "Assigned Tunnel ID".to_owned(),
                    format!("{endpoint}'s tunnel ID"),
                    "none".to_owned(),
                );
            }
            _ => {}
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
                AddressRole::EndpointLan(other)
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
