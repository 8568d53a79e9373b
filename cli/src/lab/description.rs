//! `<run-dir>/lab.json` and `roles.json`: the lab as it was built, for people, for tests and
//! for `l2tpkit verify --roles`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::plan::{NodeKind, Route, Segment, Topology};

/// `<run-dir>/lab.json`: the lab for people and for `l2tpkit verify --roles` (which reads
/// `cluster_address`, `nat_global`, `endpoints[].{name,lan,global}` and `initiators`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabDescription {
    pub topology: Topology,
    pub prefix: String,
    pub run_dir: PathBuf,
    pub state_file: PathBuf,
    pub cluster_address: Ipv4Addr,
    /// FIG 2 only: the one global address of the endpoints.
    pub nat_global: Option<Ipv4Addr>,
    pub endpoints: Vec<EndpointDescription>,
    pub initiator_namespace: String,
    pub initiator_addresses: Vec<Ipv4Addr>,
    /// The same as `initiator_addresses`, under the name the roles file uses.
    pub initiators: Vec<Ipv4Addr>,
    pub master_namespace: String,
    pub master_lan: Ipv4Addr,
    /// The master's control socket (`l2tpkit ctl PATH drain te2`).
    pub master_control: PathBuf,
    /// Every process that may act as the master, in the order to ask them: the master, then
    /// (FIG 4) each endpoint, which writes these files only once it has taken the master over.
    #[serde(default)]
    pub masters: Vec<MasterCandidate>,
    /// FIG 2: the NAT's control socket (`l2tpkit ctl PATH status`, `l2tpkit nat --dump`).
    pub nat_control: Option<PathBuf>,
    pub nat_namespace: Option<String>,
    pub nat_lan: Option<Ipv4Addr>,
    pub switch_namespace: String,
    pub bridges: Bridges,
    pub namespaces: Vec<NamespaceDescription>,
    pub pcaps: Pcaps,
    pub supervisor_pid: Option<u32>,
    pub processes: Vec<LabProcess>,
    /// `<run-dir>/roles.json`: only the fields `l2tpkit verify --roles` takes.
    pub roles_file: PathBuf,
    /// The public segment's impairment (`--netem`), normalised; `None`: a plain bridge.
    #[serde(default)]
    pub netem: Option<String>,
    /// The master's dispatch policy.
    #[serde(default)]
    pub policy: reference::master::Policy,
    /// The endpoints' retransmission limit, when not the default 5.
    #[serde(default)]
    pub max_retransmits: Option<u32>,
    /// What answers as the LNS in the endpoint namespaces: `l2tpkit`, `xl2tpd` (its process
    /// `te<i>-xl2tpd`, the role `te<i>` its agent) or `l2tpns` (its processes `te<i>-l2tpns`
    /// and `te<i>-radius`, the role `te<i>` its agent).
    #[serde(default)]
    pub endpoint_kind: super::spec::EndpointKind,
}

/// `<run-dir>/roles.json`, exactly the schema of `verify --roles` (which rejects unknown
/// fields, so the fuller `lab.json` cannot be handed to it as is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolesFile {
    pub cluster_address: Ipv4Addr,
    pub master_lan: Ipv4Addr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_global: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_lan: Option<Ipv4Addr>,
    pub endpoints: Vec<RolesEndpoint>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolesEndpoint {
    pub name: String,
    pub lan: Ipv4Addr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global: Option<Ipv4Addr>,
}

impl LabDescription {
    pub fn roles(&self) -> RolesFile {
        RolesFile {
            cluster_address: self.cluster_address,
            master_lan: self.master_lan,
            nat_global: self.nat_global,
            nat_lan: self.nat_lan,
            endpoints: self
                .endpoints
                .iter()
                .map(|e| RolesEndpoint {
                    name: e.name.clone(),
                    lan: e.lan,
                    global: e.global,
                })
                .collect(),
        }
    }
}

/// Where one process acting as the master can be asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterCandidate {
    /// `master`, or the endpoint (`te1`) hosting a master after a takeover.
    pub name: String,
    pub control: PathBuf,
    pub status: PathBuf,
}

impl LabDescription {
    /// The status of the master that holds the cluster address now: the first candidate whose
    /// control socket answers as active (a master that came back stands by); `None` when none
    /// does.
    pub fn active_master(&self) -> Option<(MasterCandidate, reference::master::MasterStatus)> {
        self.masters.iter().find_map(|candidate| {
            let reply = reference::control::request(&candidate.control, "status").ok()?;
            let status: reference::master::MasterStatus = serde_json::from_value(reply).ok()?;
            (status.holder.state == reference::takeover::HolderState::Active)
                .then(|| (candidate.clone(), status))
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointDescription {
    /// `te1` ..
    pub name: String,
    pub namespace: String,
    pub lan: Ipv4Addr,
    /// FIG 4 only: FIG 2 endpoints have no global address of their own (see `nat_global`).
    pub global: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bridges {
    pub public: String,
    pub lan: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pcaps {
    pub public: Option<PathBuf>,
    pub lan: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceDescription {
    pub name: String,
    pub role: NodeKind,
    pub interfaces: Vec<InterfaceDescription>,
    pub routes: Vec<Route>,
    pub sysctls: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceDescription {
    pub name: String,
    pub segment: Segment,
    pub bridge: String,
    /// The veth's other end, in the switch namespace.
    pub switch_port: String,
    /// `ADDR/16`, primary first.
    pub addresses: Vec<String>,
}

/// A process the lab started under its supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabProcess {
    pub name: String,
    pub namespace: Option<String>,
    pub pid: u32,
    /// From `/proc/PID/stat`: with the PID, names this process even after the PID is reused.
    pub start_time: u64,
    pub log: PathBuf,
}

/// What `down` removed, and what it could not.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DownReport {
    pub prefix: String,
    pub run_dir: PathBuf,
    pub removed: Vec<String>,
    pub problems: Vec<String>,
}
