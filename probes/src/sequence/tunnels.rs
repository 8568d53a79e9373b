//! Which tunnel each observation belongs to: keyed by the initiator's address and port and its
//! Assigned Tunnel ID, linked to the endpoint's Assigned Tunnel ID by the SCCRP.
//!
//! A NAT that translates (`nat --translate-tunnel-ids`) gives the initiator another Tunnel ID
//! than the endpoint assigned, and two endpoints may have given that initiator the same one:
//! what the initiator sends is then found by where it went as well (the NAT with the public
//! ID, the endpoint's LAN address with the endpoint's), as each SCCRP's source registers it.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use l2tp::wire::MessageType;

use super::observation::{Kind, Observation, Summary};
use super::roles::{AddressRole, Roles};

/// How long after a sighting another sighting of the same bytes counts as the same packet,
/// forwarded (used only for packets whose addresses do not name their tunnel).
const SAME_PACKET_WINDOW: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Index into the observations.
    pub obs: usize,
    pub from_initiator: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Tunnel {
    pub initiator: SocketAddrV4,
    pub initiator_tid: u16,
    /// From the first SCCRP's Assigned Tunnel ID.
    pub endpoint_tid: Option<u16>,
    /// The Tunnel ID the NAT gave the initiator instead, when it translated: the Assigned
    /// Tunnel ID of the SCCRP it forwarded, where that differs from the endpoint's.
    pub public_tid: Option<u16>,
    /// In time order.
    pub entries: Vec<Entry>,
    connected: bool,
    stopped: bool,
    last_time: Duration,
}

pub(crate) struct Attribution {
    pub tunnels: Vec<Tunnel>,
    /// Control messages that fit no tunnel (typically: a capture that starts mid-tunnel).
    pub unattributed: Vec<usize>,
}

/// Sorts the tunnels' observations out; `order` lists observation indices in time order.
pub(crate) fn attribute(
    observations: &[Observation],
    order: &[usize],
    roles: &Roles,
) -> Attribution {
    let mut tunnels: Vec<Tunnel> = Vec::new();
    let mut by_key: HashMap<(SocketAddrV4, u16), usize> = HashMap::new();
    let mut by_endpoint_tid: HashMap<(SocketAddrV4, u16), usize> = HashMap::new();
    // (initiator, the SCCRP's source address, its Assigned Tunnel ID): what the initiator
    // sends there with that ID.
    let mut by_sent_to: HashMap<(SocketAddrV4, Ipv4Addr, u16), usize> = HashMap::new();
    let mut by_initiator: HashMap<SocketAddrV4, Vec<usize>> = HashMap::new();
    let mut by_digest: HashMap<u64, (usize, Duration, bool)> = HashMap::new();
    let mut unattributed = Vec::new();

    for &index in order {
        let o = &observations[index];
        let m = &o.message;
        let same_packet = by_digest
            .get(&m.digest)
            .filter(|(_, time, _)| o.time.saturating_sub(*time) <= SAME_PACKET_WINDOW)
            .map(|&(tunnel, _, from)| (tunnel, from));
        let src_is_cluster = roles.role_of(*o.src.ip()).is_cluster();
        let dst_is_cluster = roles.role_of(*o.dst.ip()).is_cluster();

        let found: Option<(usize, bool)> = if m.kind == Kind::Control(MessageType::Sccrq) {
            if src_is_cluster {
                // Re-sourced on the way (a faulty master): only its bytes tell its tunnel.
                same_packet
            } else if let Some(same) = same_packet.filter(|&(t, _)| {
                tunnels[t].initiator == o.src
                    && Some(tunnels[t].initiator_tid) == m.assigned_tunnel_id
            }) {
                // The master's copy of an SCCRQ this initiator sent moments ago: its tunnel's,
                // even when that tunnel connected in between (a retransmission that a slow or
                // lossy link delayed past the SCCCN), not a new tunnel. Another initiator's
                // SCCRQ can have the very same bytes (same Assigned Tunnel ID and Host Name):
                // that one is its own tunnel.
                Some(same)
            } else {
                let key = (o.src, m.assigned_tunnel_id.unwrap_or(0));
                let open = by_key
                    .get(&key)
                    .copied()
                    .filter(|&t| !tunnels[t].connected && !tunnels[t].stopped);
                Some((
                    open.unwrap_or_else(|| {
                        tunnels.push(Tunnel {
                            initiator: o.src,
                            initiator_tid: key.1,
                            endpoint_tid: None,
                            public_tid: None,
                            entries: Vec::new(),
                            connected: false,
                            stopped: false,
                            last_time: o.time,
                        });
                        let t = tunnels.len() - 1;
                        by_key.insert(key, t);
                        by_initiator.entry(o.src).or_default().push(t);
                        t
                    }),
                    true,
                ))
            }
        } else if let Some(&t) = by_sent_to.get(&(o.src, *o.dst.ip(), m.tunnel_id)) {
            Some((t, true))
        } else if let Some(&t) = by_endpoint_tid.get(&(o.src, m.tunnel_id)) {
            Some((t, true))
        } else if let Some(&t) = by_key.get(&(o.dst, m.tunnel_id)) {
            Some((t, false))
        } else if same_packet.is_some() {
            same_packet
        } else if !src_is_cluster && by_initiator.contains_key(&o.src) {
            // From an initiator with a tunnel ID it was never given: its latest open tunnel,
            // preferring one that awaits exactly this message.
            let candidates = &by_initiator[&o.src];
            let awaiting = |t: &&usize| {
                m.kind != Kind::Control(MessageType::Scccn)
                    || (!tunnels[**t].connected && tunnels[**t].endpoint_tid.is_some())
            };
            latest(&tunnels, candidates.iter().filter(awaiting))
                .or_else(|| latest(&tunnels, candidates.iter()))
                .map(|t| (t, true))
        } else if !dst_is_cluster && by_initiator.contains_key(&o.dst) {
            latest(&tunnels, by_initiator[&o.dst].iter()).map(|t| (t, false))
        } else {
            None
        };

        let Some((t, from_initiator)) = found else {
            if m.kind.is_control() {
                unattributed.push(index);
            }
            continue;
        };
        let tunnel = &mut tunnels[t];
        tunnel.entries.push(Entry {
            obs: index,
            from_initiator,
        });
        tunnel.last_time = o.time;
        match m.kind {
            Kind::Control(MessageType::Sccrp) if !from_initiator => {
                if let Some(assigned) = m.assigned_tunnel_id {
                    by_sent_to.insert((tunnel.initiator, *o.src.ip(), assigned), t);
                    match tunnel.endpoint_tid {
                        None => {
                            tunnel.endpoint_tid = Some(assigned);
                            by_endpoint_tid.insert((tunnel.initiator, assigned), t);
                        }
                        Some(ours)
                            if ours != assigned
                                && roles.role_of(*o.src.ip()) == AddressRole::NatGlobal =>
                        {
                            tunnel.public_tid = Some(assigned);
                        }
                        Some(_) => {}
                    }
                }
            }
            Kind::Control(MessageType::Scccn) if from_initiator => tunnel.connected = true,
            Kind::Control(MessageType::StopCcn) => tunnel.stopped = true,
            _ => {}
        }
        by_digest.insert(m.digest, (t, o.time, from_initiator));
    }
    Attribution {
        tunnels,
        unattributed,
    }
}

impl Tunnel {
    /// The Tunnel ID the initiator must put on what it sends to `dst`: the NAT's public one
    /// when the NAT translated and `dst` is the NAT, else the endpoint's.
    pub fn expected_tid(&self, roles: &Roles, dst: Ipv4Addr) -> Option<u16> {
        match self.public_tid {
            Some(public) if roles.role_of(dst) == AddressRole::NatGlobal => Some(public),
            _ => self.endpoint_tid,
        }
    }

    /// Whether `after` is `before` as a translating NAT forwards it and nothing else changed:
    /// the SCCRP's Assigned Tunnel ID the endpoint's → the public one on the way out, the
    /// header's Tunnel ID the public one → the endpoint's on the way in (or, on the endpoint's
    /// StopCCN, its Assigned Tunnel ID on the way out).
    pub fn translated(&self, before: &Summary, after: &Summary) -> bool {
        let (Some(ours), Some(public)) = (self.endpoint_tid, self.public_tid) else {
            return false;
        };
        let same = before.kind == after.kind
            && before.session_id == after.session_id
            && before.ns == after.ns
            && before.nr == after.nr;
        let outward = before.tunnel_id == after.tunnel_id
            && before.assigned_tunnel_id == Some(ours)
            && after.assigned_tunnel_id == Some(public);
        let inward = before.tunnel_id == public
            && after.tunnel_id == ours
            && before.assigned_tunnel_id == after.assigned_tunnel_id;
        same && (outward || inward)
    }
}

/// The open tunnel among `candidates` with the latest activity.
fn latest<'a>(tunnels: &[Tunnel], candidates: impl Iterator<Item = &'a usize>) -> Option<usize> {
    candidates
        .copied()
        .filter(|&t| !tunnels[t].stopped)
        .max_by_key(|&t| (tunnels[t].last_time, t))
}
