//! Placing sightings on a sequence's hops: transmissions, stages, and what each hop should
//! carry.

use std::net::Ipv4Addr;

use super::Side::Public;
use super::Stage::{Ack, Reply, Request};
use super::{Context, Expect, Hop, Matcher, Party, Side, Stage, FORWARD_WINDOW};
use crate::sequence::observation::Observation;
use crate::sequence::tunnels::Entry;

impl Matcher<'_, '_> {
    /// Labels the copies sent to an endpoint that was left on the request's hops by side,
    /// the first as the first transmission; the copies staged after them are retransmissions.
    pub(super) fn label_abandoned(&mut self, abandoned: &[Entry]) {
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

    pub(super) fn stage_hops(&self, stage: Stage) -> Vec<usize> {
        (0..self.hops.len())
            .filter(|&i| self.hops[i].stage == stage)
            .collect()
    }

    pub(super) fn matched_in(&self, stage: Stage) -> Option<Entry> {
        self.stage_hops(stage)
            .into_iter()
            .find_map(|i| self.matched[i])
    }

    /// Groups a stage's observations into transmissions and places each on its hops.
    pub(super) fn stage(&mut self, stage: Stage, entries: &[Entry]) {
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

    pub(super) fn obs_at(&self, hop_index: usize) -> Option<&Observation> {
        self.matched[hop_index].map(|e| self.ctx.obs(e))
    }

    pub(super) fn step_of(&self, hop_index: usize) -> u16 {
        self.hops[hop_index].step
    }

    /// The hop of a stage that is seen on the given side.
    pub(super) fn hop_on(&self, stage: Stage, side: Side) -> Option<usize> {
        (0..self.hops.len()).find(|&i| self.hops[i].stage == stage && self.hops[i].side == side)
    }

    fn first_hop(&self, stage: Stage) -> Option<usize> {
        (0..self.hops.len()).find(|&i| self.hops[i].stage == stage)
    }

    pub(super) fn expect(&self, hop_index: usize, source: bool) -> Expect {
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
}

/// Groups sightings of one message into transmissions: a sighting joins the latest group of
/// the same type and Ns that is not full, started less than [`FORWARD_WINDOW`] before, and
/// holds no sighting of the same hop from the same capture (that would be a retransmission).
pub(super) fn transmissions(ctx: &Context, entries: &[Entry], hops: usize) -> Vec<Vec<Entry>> {
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
