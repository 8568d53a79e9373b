//! `lab.json`: what a running lab is made of, read off its plan and its processes.

use super::description::{
    Bridges, EndpointDescription, InterfaceDescription, LabDescription, MasterCandidate,
    NamespaceDescription, Pcaps,
};
use super::instance::Lab;
use super::plan::{self, NodeKind, Segment, Topology, PREFIX_LEN};
use super::spec::EndpointKind;
use super::start::MASTER;
use super::supervisor::Supervisor;
use std::path::Path;

impl Lab {
    pub fn description(&self) -> LabDescription {
        let plan = &self.plan;
        let (processes, supervisor_pid) = {
            let inner = self.lock();
            (
                inner.processes.clone(),
                inner.supervisor.as_ref().map(Supervisor::pid),
            )
        };
        let ti = plan
            .node(NodeKind::Initiator)
            .expect("every plan has initiators");
        let cm = plan
            .node(NodeKind::Master)
            .expect("every plan has a master");
        let nat = plan.node(NodeKind::Nat);
        let initiators = ti.interfaces[0].addresses.clone();
        let ipv6 = Path::new("/proc/sys/net/ipv6").exists();
        let mut namespaces = vec![NamespaceDescription {
            name: plan.switch_namespace.clone(),
            role: NodeKind::Switch,
            interfaces: Vec::new(),
            routes: Vec::new(),
            sysctls: plan::namespace_sysctls(ipv6)
                .into_iter()
                .chain(plan::switch_sysctls(plan::has_bridge_netfilter()))
                .collect(),
        }];
        namespaces.extend(plan.nodes.iter().map(|n| {
            NamespaceDescription {
                name: n.namespace.clone(),
                role: n.role,
                interfaces: n
                    .interfaces
                    .iter()
                    .map(|i| InterfaceDescription {
                        name: i.name.clone(),
                        segment: i.segment,
                        bridge: plan.bridge(i.segment).to_string(),
                        switch_port: i.switch_port.clone(),
                        addresses: i
                            .addresses
                            .iter()
                            .map(|a| format!("{a}/{PREFIX_LEN}"))
                            .collect(),
                    })
                    .collect(),
                routes: n.routes.clone(),
                sysctls: plan::namespace_sysctls(ipv6)
                    .into_iter()
                    .chain(n.interface_sysctls())
                    .collect(),
            }
        }));
        let pcap = |file: &str| self.captures.then(|| self.run_dir.join(file));
        LabDescription {
            topology: plan.topology,
            prefix: plan.prefix.clone(),
            run_dir: self.run_dir.clone(),
            state_file: self.state.path().to_path_buf(),
            cluster_address: plan::CLUSTER_ADDRESS,
            nat_global: nat.map(|_| plan::NAT_GLOBAL),
            endpoints: plan
                .endpoints()
                .map(|n| EndpointDescription {
                    name: n.short.clone(),
                    namespace: n.namespace.clone(),
                    lan: n
                        .interface(Segment::Lan)
                        .expect("endpoints are on the LAN")
                        .addresses[0],
                    global: n.interface(Segment::Public).map(|i| i.addresses[0]),
                })
                .collect(),
            initiator_namespace: ti.namespace.clone(),
            initiator_addresses: initiators.clone(),
            initiators,
            master_namespace: cm.namespace.clone(),
            master_lan: plan::MASTER_LAN,
            master_control: self.run_dir.join("master.sock"),
            masters: std::iter::once(MasterCandidate {
                name: MASTER.to_string(),
                control: self.run_dir.join("master.sock"),
                status: self.run_dir.join("master-status.json"),
            })
            .chain(
                // Only l2tpkit endpoints take the master over.
                plan.endpoints()
                    .filter(|_| {
                        plan.topology == Topology::Fig4
                            && self.endpoint_kind == EndpointKind::L2tpkit
                    })
                    .map(|n| MasterCandidate {
                        name: n.short.clone(),
                        control: self.run_dir.join(format!("{}-master.sock", n.short)),
                        status: self.run_dir.join(format!("{}-master-status.json", n.short)),
                    }),
            )
            .collect(),
            nat_control: nat.map(|_| self.run_dir.join("nat.sock")),
            nat_namespace: nat.map(|n| n.namespace.clone()),
            nat_lan: nat.map(|_| plan::NAT_LAN),
            switch_namespace: plan.switch_namespace.clone(),
            bridges: Bridges {
                public: plan.public_bridge.clone(),
                lan: plan.lan_bridge.clone(),
            },
            namespaces,
            pcaps: Pcaps {
                public: pcap("public.pcap"),
                lan: pcap("lan.pcap"),
            },
            supervisor_pid,
            processes,
            roles_file: self.run_dir.join("roles.json"),
            netem: self.netem.map(|n| n.to_string()),
            policy: self.policy,
            max_retransmits: self.max_retransmits,
            endpoint_kind: self.endpoint_kind,
        }
    }
}
