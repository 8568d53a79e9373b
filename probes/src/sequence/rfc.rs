//! RFC 2661 §5.8 on one tunnel's control messages: Ns and Nr per direction, every message
//! acknowledged, header Tunnel IDs the peer's Assigned Tunnel ID.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddrV4;
use std::time::Duration;

use l2tp::wire::MessageType;

use super::context::{Context, FORWARD_WINDOW};
use super::observation::{acknowledges, seq_ge, Kind, Observation};
use super::report::{Deviation, Rule};
use super::tunnels::{Entry, Tunnel};

pub(crate) struct Outcome {
    pub deviations: Vec<Deviation>,
    pub retransmissions: usize,
    /// One line per retransmitted message.
    pub notes: Vec<String>,
}

/// One message a direction sent (by Ns), with its sightings per hop and capture.
struct Sent {
    kind: Kind,
    first: Duration,
    /// The observation index of the first sighting.
    first_obs: usize,
    per_hop: HashMap<(SocketAddrV4, SocketAddrV4, Option<usize>), usize>,
}

#[derive(Default)]
struct Direction {
    next_ns: u16,
    sent: HashMap<u16, Sent>,
    /// Ns in the order first sent.
    order: Vec<u16>,
    zlbs: HashSet<(u16, u16)>,
    last_nr: HashMap<(SocketAddrV4, SocketAddrV4), u16>,
    wrong_tids: HashSet<u16>,
}

fn name(from_initiator: bool) -> &'static str {
    if from_initiator {
        "the initiator"
    } else {
        "the endpoint"
    }
}

/// `control` is the tunnel's control messages in time order; `checked` holds the observations
/// the sequence already judged (their IDs are not judged twice).
pub(crate) fn check(
    ctx: &Context,
    tunnel: &Tunnel,
    control: &[Entry],
    checked: &HashMap<usize, (u16, bool)>,
) -> Outcome {
    let mut sides = [Direction::default(), Direction::default()];
    // Where and when each packet (by its bytes) was last seen: a copy on another hop soon
    // after is that packet forwarded, not something its sender sent again.
    let mut sightings: HashMap<u64, ((SocketAddrV4, SocketAddrV4), Duration)> = HashMap::new();
    let mut found: Vec<(Duration, Deviation)> = Vec::new();
    let mut flag =
        |o: &Observation, rule: Rule, text: String, expected: String, observed: String| {
            found.push((
                o.time,
                ctx.deviation(None, rule, Some(o), text, expected, observed),
            ));
        };

    for entry in control {
        let o = ctx.obs(*entry);
        let m = &o.message;
        let who = name(entry.from_initiator);
        let (mine, peer) = if entry.from_initiator {
            let [a, b] = &mut sides;
            (a, b)
        } else {
            let [a, b] = &mut sides;
            (b, a)
        };

        // Nr: never back on a hop, never past what the peer sent. A forwarded copy was judged
        // where it was first seen: two middleboxes (the master for an SCCRQ, the NAT for the
        // rest) may deliver to one endpoint out of the order the initiator sent in.
        let hop = (o.src, o.dst);
        let forwarded_copy = sightings
            .get(&m.digest)
            .is_some_and(|&(at, when)| at != hop && o.time.saturating_sub(when) <= FORWARD_WINDOW);
        sightings.insert(m.digest, (hop, o.time));
        if let Some(&last) = mine.last_nr.get(&hop).filter(|_| !forwarded_copy) {
            if !seq_ge(m.nr, last) {
                flag(
                    o,
                    Rule::Nr,
                    format!("{} Nr {} from {who} goes back from {last}", m.kind, m.nr),
                    format!("Nr ≥ {last}"),
                    format!("Nr {}", m.nr),
                );
            }
        }
        if !forwarded_copy {
            mine.last_nr.insert(hop, m.nr);
        }
        if !seq_ge(peer.next_ns, m.nr) {
            flag(
                o,
                Rule::Nr,
                format!(
                    "{} Nr {} from {who} acknowledges Ns {} of {}, which was never seen (its next Ns is {})",
                    m.kind,
                    m.nr,
                    m.nr.wrapping_sub(1),
                    name(!entry.from_initiator),
                    peer.next_ns
                ),
                format!("Nr ≤ {}", peer.next_ns),
                format!("Nr {}", m.nr),
            );
        }

        // Ns: a ZLB carries the next Ns without consuming it; a message takes the next one;
        // a retransmission repeats one already used by the same message.
        if m.kind == Kind::Zlb {
            if mine.zlbs.insert((m.ns, m.nr)) && m.ns != mine.next_ns {
                flag(
                    o,
                    Rule::Ns,
                    format!(
                        "ZLB from {who} with Ns {}, expected {} (a ZLB carries the next Ns)",
                        m.ns, mine.next_ns
                    ),
                    format!("Ns {}", mine.next_ns),
                    format!("Ns {}", m.ns),
                );
            }
        } else {
            let capture = o.origin.map(|x| x.capture);
            match mine.sent.get_mut(&m.ns) {
                Some(sent) => {
                    if sent.kind != m.kind {
                        flag(
                            o,
                            Rule::Ns,
                            format!(
                                "{} from {who} reuses Ns {} of its {}",
                                m.kind, m.ns, sent.kind
                            ),
                            format!("Ns {}", mine.next_ns),
                            format!("Ns {}", m.ns),
                        );
                    }
                    *sent.per_hop.entry((o.src, o.dst, capture)).or_default() += 1;
                }
                None => {
                    if m.ns != mine.next_ns {
                        let text = if seq_ge(m.ns, mine.next_ns) {
                            format!(
                                "{} from {who} with Ns {}, expected {}: {} message(s) never seen",
                                m.kind,
                                m.ns,
                                mine.next_ns,
                                m.ns.wrapping_sub(mine.next_ns)
                            )
                        } else {
                            format!(
                                "{} from {who} with Ns {}, expected {}: Ns went back",
                                m.kind, m.ns, mine.next_ns
                            )
                        };
                        flag(
                            o,
                            Rule::Ns,
                            text,
                            format!("Ns {}", mine.next_ns),
                            format!("Ns {}", m.ns),
                        );
                    }
                    mine.next_ns = m.ns.wrapping_add(1);
                    mine.order.push(m.ns);
                    mine.sent.insert(
                        m.ns,
                        Sent {
                            kind: m.kind,
                            first: o.time,
                            first_obs: entry.obs,
                            per_hop: HashMap::from([((o.src, o.dst, capture), 1)]),
                        },
                    );
                }
            }
        }

        // Tunnel IDs after the SCCRQ: each side addresses the peer's Assigned Tunnel ID.
        if !checked.contains_key(&entry.obs) && m.kind != Kind::Control(MessageType::Sccrq) {
            let expected = if entry.from_initiator {
                tunnel.expected_tid(ctx.roles, *o.dst.ip())
            } else {
                Some(tunnel.initiator_tid)
            };
            if let Some(expected) = expected {
                if m.tunnel_id != expected && mine.wrong_tids.insert(m.tunnel_id) {
                    flag(
                        o,
                        Rule::TunnelId,
                        format!(
                            "{} from {who} with header Tunnel ID {}, expected {expected} ({}'s Assigned Tunnel ID)",
                            m.kind,
                            m.tunnel_id,
                            name(!entry.from_initiator)
                        ),
                        expected.to_string(),
                        m.tunnel_id.to_string(),
                    );
                }
            }
        }
    }

    // When each side acknowledged the other's StopCCN: the control connection is over for it
    // then (§5.7), and what it had sent that crossed the StopCCN is owed no acknowledgement
    // (the peer may have cleaned up as soon as its StopCCN was acknowledged).
    let stop_acked_at = |from_initiator: bool| -> Option<Duration> {
        let peer = sides.get(usize::from(from_initiator))?;
        let stop_ns = peer.order.iter().find(|ns| {
            peer.sent.get(ns).map(|s| s.kind) == Some(Kind::Control(MessageType::StopCcn))
        })?;
        control
            .iter()
            .filter(|e| e.from_initiator == from_initiator)
            .map(|e| ctx.obs(*e))
            .filter(|o| acknowledges(o.message.nr, *stop_ns))
            .map(|o| o.time)
            .min()
    };

    // Every message acknowledged by a later Nr from the peer.
    let mut retransmissions = 0;
    let mut notes = Vec::new();
    for (index, direction) in sides.iter().enumerate() {
        let from_initiator = index == 0;
        let stop_acked = stop_acked_at(from_initiator);
        for ns in &direction.order {
            let sent = &direction.sent[ns];
            let again = sent.per_hop.values().max().map_or(0, |n| n - 1);
            if again > 0 {
                notes.push(format!(
                    "{} (Ns {ns}) from {} retransmitted {again} time{}",
                    sent.kind,
                    name(from_initiator),
                    if again == 1 { "" } else { "s" }
                ));
            }
            retransmissions += again;
            let acked = control.iter().any(|e| {
                let o = ctx.obs(*e);
                e.from_initiator != from_initiator
                    && o.time >= sent.first
                    && acknowledges(o.message.nr, *ns)
            });
            if !acked && stop_acked.is_some_and(|at| sent.first <= at) {
                notes.push(format!(
                    "{} (Ns {ns}) from {} crossed {}'s StopCCN: no acknowledgement was due (§5.7)",
                    sent.kind,
                    name(from_initiator),
                    name(!from_initiator)
                ));
            } else if !acked {
                let o = &ctx.observations[sent.first_obs];
                flag(
                    o,
                    Rule::Unacknowledged,
                    format!(
                        "{} (Ns {ns}) from {} was never acknowledged",
                        sent.kind,
                        name(from_initiator)
                    ),
                    format!("a message from {} with Nr > {ns}", name(!from_initiator)),
                    "none".to_owned(),
                );
            }
        }
    }
    found.sort_by_key(|(time, _)| *time);
    Outcome {
        deviations: found.into_iter().map(|(_, deviation)| deviation).collect(),
        retransmissions,
        notes,
    }
}
