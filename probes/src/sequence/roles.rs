//! Who is who: the addresses of the cluster master, the NAT and the endpoints, from a roles
//! file or inferred from the observations. Every other address is a tunnel initiator.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};

use l2tp::wire::MessageType;
use serde::{Deserialize, Serialize};

use super::observation::{Kind, Observation};

/// The roles file (`l2tpkit verify --roles FILE`), as the lab writes it. Every field is
/// optional: what is missing is inferred from the captures.
///
/// ```json
/// {
///   "cluster_address": "198.18.0.1",
///   "master_lan": "198.19.0.1",
///   "nat_global": "198.18.0.2",
///   "nat_lan": "198.19.0.2",
///   "endpoints": [
///     { "name": "te1", "lan": "198.19.0.11", "global": "198.18.0.11" }
///   ]
/// }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    /// The master IP address every initiator dials (CM in the figures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_address: Option<Ipv4Addr>,
    /// The master's own address on the LAN; it must never be the source of a forwarded SCCRQ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_lan: Option<Ipv4Addr>,
    /// The NAT's global address (FIG 2); absent in FIG 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_global: Option<Ipv4Addr>,
    /// The NAT's LAN address; it must never show in a translated packet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_lan: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointRole>,
}

/// One tunnel endpoint (TE): its LAN address, and in FIG 4 its own global address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointRole {
    pub name: String,
    pub lan: Ipv4Addr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global: Option<Ipv4Addr>,
}

/// What an address is, as far as the roles tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressRole {
    Cluster,
    MasterLan,
    NatGlobal,
    NatLan,
    EndpointLan(usize),
    EndpointGlobal(usize),
    /// Not a cluster address: a tunnel initiator, or a stranger.
    Other,
}

impl AddressRole {
    pub fn is_cluster(self) -> bool {
        self != AddressRole::Other
    }

    /// Whether the address lives on the cluster's LAN.
    pub fn is_lan(self) -> bool {
        matches!(
            self,
            AddressRole::MasterLan | AddressRole::NatLan | AddressRole::EndpointLan(_)
        )
    }

    /// Whether the address is one of the cluster's public addresses.
    pub fn is_public(self) -> bool {
        matches!(
            self,
            AddressRole::Cluster | AddressRole::NatGlobal | AddressRole::EndpointGlobal(_)
        )
    }
}

impl Roles {
    pub fn role_of(&self, ip: Ipv4Addr) -> AddressRole {
        if self.cluster_address == Some(ip) {
            return AddressRole::Cluster;
        }
        if self.nat_global == Some(ip) {
            return AddressRole::NatGlobal;
        }
        if self.nat_lan == Some(ip) {
            return AddressRole::NatLan;
        }
        if self.master_lan == Some(ip) {
            return AddressRole::MasterLan;
        }
        for (index, endpoint) in self.endpoints.iter().enumerate() {
            if endpoint.lan == ip {
                return AddressRole::EndpointLan(index);
            }
            if endpoint.global == Some(ip) {
                return AddressRole::EndpointGlobal(index);
            }
        }
        AddressRole::Other
    }

    /// A short name for an address: "CM", "NAT", "te1 lan", ...; `None` for initiators.
    pub fn label(&self, ip: Ipv4Addr) -> Option<String> {
        Some(match self.role_of(ip) {
            AddressRole::Cluster => "CM".to_owned(),
            AddressRole::MasterLan => "master lan".to_owned(),
            AddressRole::NatGlobal => "NAT".to_owned(),
            AddressRole::NatLan => "NAT lan".to_owned(),
            AddressRole::EndpointLan(i) => format!("{} lan", self.endpoints[i].name),
            AddressRole::EndpointGlobal(i) => format!("{} global", self.endpoints[i].name),
            AddressRole::Other => return None,
        })
    }

    /// Checks that no address has two roles; the error names both.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen: HashMap<Ipv4Addr, String> = HashMap::new();
        let mut claim = |ip: Option<Ipv4Addr>, what: String| -> Result<(), String> {
            let Some(ip) = ip else { return Ok(()) };
            match seen.insert(ip, what.clone()) {
                Some(before) => Err(format!("{ip} is both {before} and {what}")),
                None => Ok(()),
            }
        };
        claim(self.cluster_address, "cluster_address".to_owned())?;
        claim(self.master_lan, "master_lan".to_owned())?;
        claim(self.nat_global, "nat_global".to_owned())?;
        claim(self.nat_lan, "nat_lan".to_owned())?;
        let mut names = BTreeSet::new();
        for endpoint in &self.endpoints {
            if !names.insert(endpoint.name.as_str()) {
                return Err(format!("two endpoints are named {:?}", endpoint.name));
            }
            claim(Some(endpoint.lan), format!("{}'s lan", endpoint.name))?;
            claim(endpoint.global, format!("{}'s global", endpoint.name))?;
        }
        Ok(())
    }
}

/// The lab's LAN (RFC 2544 range, second half): never the cluster address; without one, the
/// SCCRQs seen there are the master's copies.
fn in_lab_lan(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    a == 198 && b == 19
}

/// Fills what `given` leaves empty from the observations; returns the roles and one note per
/// inferred fact, saying what it was inferred from.
///
/// - CM: the destination of the first sighting of each SCCRQ (a TI sends to the cluster
///   address; the master's copy is seen later), by majority, never on the lab's LAN
///   (198.19/16).
/// - TE (LAN): the destination of a later sighting of the same SCCRQ (same source and Assigned
///   Tunnel ID, or the same bytes from a source that never dialled the cluster itself, which is
///   then the master's LAN address).
/// - NAT: the source of an SCCRP (header Tunnel ID = the TI's) other than the endpoint that
///   received the SCCRQ, in a tunnel where that endpoint's own SCCRP was seen on the LAN.
/// - TE (global): the same, in a tunnel where the endpoint never sent the SCCRP from its LAN
///   address (FIG 5).
pub fn infer(observations: &[Observation], given: &Roles) -> (Roles, Vec<String>) {
    let mut roles = given.clone();
    let mut notes = Vec::new();
    let sccrqs: Vec<&Observation> = observations
        .iter()
        .filter(|o| o.message.kind == Kind::Control(MessageType::Sccrq))
        .collect();

    // The first sighting of each (source, Assigned Tunnel ID) votes for its destination.
    let mut first_dst: BTreeMap<(SocketAddrV4, Option<u16>), &Observation> = BTreeMap::new();
    for o in &sccrqs {
        let entry = first_dst
            .entry((o.src, o.message.assigned_tunnel_id))
            .or_insert(o);
        if o.time < entry.time {
            *entry = o;
        }
    }
    if roles.cluster_address.is_none() {
        let mut votes: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
        for o in first_dst.values().filter(|o| !in_lab_lan(*o.dst.ip())) {
            *votes.entry(*o.dst.ip()).or_default() += 1;
        }
        let best = votes
            .iter()
            .max_by_key(|(ip, n)| (**n, std::cmp::Reverse(**ip)));
        if let Some((ip, n)) = best {
            roles.cluster_address = Some(*ip);
            notes.push(format!(
                "cluster address {ip} inferred: first destination of {n} of {} SCCRQs",
                first_dst.len()
            ));
        } else if !sccrqs.is_empty() {
            notes.push(
                "cluster address unknown: no SCCRQ to an address outside the LAN (198.19/16)"
                    .to_owned(),
            );
        }
    }
    let cluster = roles.cluster_address;
    let to_cluster = |o: &Observation| Some(*o.dst.ip()) == cluster;
    // Without a cluster address (a LAN-side capture alone), SCCRQs on the LAN were forwarded.
    let forwarded = |o: &Observation| match cluster {
        Some(cluster) => *o.dst.ip() != cluster,
        None => in_lab_lan(*o.dst.ip()),
    };

    // Sources that dialled the cluster are initiators; a forwarded copy from anyone else was
    // re-sourced by the master.
    let dialled: BTreeSet<SocketAddrV4> = sccrqs
        .iter()
        .filter(|o| match cluster {
            Some(_) => to_cluster(o),
            None => !in_lab_lan(*o.src.ip()),
        })
        .map(|o| o.src)
        .collect();
    // The first SCCRQ to the cluster with given bytes, to trace a re-sourced copy back.
    let mut to_cluster_by_digest: HashMap<u64, &Observation> = HashMap::new();
    for o in sccrqs.iter().filter(|o| to_cluster(o)) {
        to_cluster_by_digest.entry(o.message.digest).or_insert(o);
    }
    let mut te_lans: BTreeSet<Ipv4Addr> = BTreeSet::new();
    let mut master_sources: BTreeSet<Ipv4Addr> = BTreeSet::new();
    // (initiator, its tunnel ID) -> the LAN addresses the master forwarded the SCCRQ to (more
    // than one when a retransmission was placed anew, away from a dead endpoint).
    let mut forwarded_to: BTreeMap<(SocketAddrV4, u16), BTreeSet<Ipv4Addr>> = BTreeMap::new();
    for o in &sccrqs {
        if !forwarded(o) {
            continue;
        }
        let Some(assigned) = o.message.assigned_tunnel_id else {
            continue;
        };
        if dialled.contains(&o.src) {
            te_lans.insert(*o.dst.ip());
            forwarded_to
                .entry((o.src, assigned))
                .or_default()
                .insert(*o.dst.ip());
        } else if let Some(original) = to_cluster_by_digest
            .get(&o.message.digest)
            .filter(|p| p.time <= o.time)
        {
            te_lans.insert(*o.dst.ip());
            forwarded_to
                .entry((original.src, assigned))
                .or_default()
                .insert(*o.dst.ip());
            master_sources.insert(*o.src.ip());
        }
    }
    if roles.master_lan.is_none() && master_sources.len() == 1 {
        let ip = *master_sources.first().expect("one element");
        if Some(ip) != cluster {
            roles.master_lan = Some(ip);
            notes.push(format!(
                "master LAN address {ip} inferred: source of SCCRQs forwarded from the cluster address"
            ));
        }
    }

    // SCCRPs to each forwarded tunnel's initiator.
    let mut nat_votes: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
    let mut global_votes: BTreeMap<Ipv4Addr, BTreeMap<Ipv4Addr, usize>> = BTreeMap::new();
    let mut sccrp_sources: HashMap<(SocketAddrV4, u16), BTreeSet<Ipv4Addr>> = HashMap::new();
    for o in observations
        .iter()
        .filter(|o| o.message.kind == Kind::Control(MessageType::Sccrp))
    {
        sccrp_sources
            .entry((o.dst, o.message.tunnel_id))
            .or_default()
            .insert(*o.src.ip());
    }
    let nobody = BTreeSet::new();
    for (key, lans) in &forwarded_to {
        let sources = sccrp_sources.get(key).unwrap_or(&nobody);
        // An endpoint's LAN address is never the NAT's or another endpoint's global address.
        let others = sources.iter().filter(|ip| !te_lans.contains(*ip));
        if sources.iter().any(|ip| lans.contains(ip)) {
            for ip in others {
                *nat_votes.entry(*ip).or_default() += 1;
            }
        } else if let [te_lan] = lans.iter().collect::<Vec<_>>()[..] {
            // Only a tunnel that went to one endpoint says whose global address answered.
            for ip in others {
                *global_votes
                    .entry(*te_lan)
                    .or_default()
                    .entry(*ip)
                    .or_default() += 1;
            }
        }
    }
    if roles.nat_global.is_none() {
        if let Some((ip, n)) = nat_votes.iter().max_by_key(|(_, n)| **n) {
            roles.nat_global = Some(*ip);
            notes.push(format!(
                "NAT global address {ip} inferred: source of {n} SCCRPs that endpoints sent from their LAN addresses"
            ));
        }
    }

    if roles.endpoints.is_empty() && !te_lans.is_empty() {
        roles.endpoints = te_lans
            .iter()
            .enumerate()
            .map(|(i, lan)| EndpointRole {
                name: format!("te{}", i + 1),
                lan: *lan,
                global: None,
            })
            .collect();
        notes.push(format!(
            "endpoints inferred from where the master forwarded SCCRQs: {}",
            roles
                .endpoints
                .iter()
                .map(|e| format!("{} {}", e.name, e.lan))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let taken: BTreeSet<Ipv4Addr> = [roles.cluster_address, roles.nat_global, roles.nat_lan]
        .into_iter()
        .flatten()
        .collect();
    for endpoint in &mut roles.endpoints {
        if endpoint.global.is_some() {
            continue;
        }
        let best = global_votes.get(&endpoint.lan).and_then(|votes| {
            votes
                .iter()
                .filter(|(ip, _)| !taken.contains(ip))
                .max_by_key(|(_, n)| **n)
        });
        if let Some((ip, _)) = best {
            endpoint.global = Some(*ip);
            notes.push(format!(
                "{} global address {ip} inferred: source of its SCCRPs (never sent from its LAN address)",
                endpoint.name
            ));
        }
    }
    (roles, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_file_schema() {
        let text = r#"{
            "cluster_address": "198.18.0.1",
            "nat_global": "198.18.0.2",
            "endpoints": [
                {"name": "te1", "lan": "198.19.0.11", "global": "198.18.0.11"},
                {"name": "te2", "lan": "198.19.0.12"}
            ]
        }"#;
        let roles: Roles = serde_json::from_str(text).unwrap();
        assert_eq!(roles.cluster_address, Some(Ipv4Addr::new(198, 18, 0, 1)));
        assert_eq!(roles.master_lan, None);
        assert_eq!(roles.endpoints[1].global, None);
        assert_eq!(
            roles.role_of(Ipv4Addr::new(198, 18, 0, 11)),
            AddressRole::EndpointGlobal(0)
        );
        assert_eq!(
            roles.role_of(Ipv4Addr::new(198, 19, 0, 12)),
            AddressRole::EndpointLan(1)
        );
        assert_eq!(
            roles.label(Ipv4Addr::new(198, 19, 0, 12)).unwrap(),
            "te2 lan"
        );
        assert_eq!(
            roles.role_of(Ipv4Addr::new(198, 18, 1, 10)),
            AddressRole::Other
        );
        roles.validate().unwrap();
        let err = serde_json::from_str::<Roles>(r#"{"cluster": "198.18.0.1"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `cluster`"), "{err}");
    }

    #[test]
    fn an_address_with_two_roles_is_refused() {
        let roles = Roles {
            cluster_address: Some(Ipv4Addr::new(198, 18, 0, 1)),
            nat_global: Some(Ipv4Addr::new(198, 18, 0, 1)),
            ..Roles::default()
        };
        assert_eq!(
            roles.validate().unwrap_err(),
            "198.18.0.1 is both cluster_address and nat_global"
        );
    }
}
