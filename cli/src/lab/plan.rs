//! The address plan of a lab: which namespaces, interfaces, addresses, routes and sysctls a
//! topology has. Pure data, so it is unit-tested without root.
//!
//! ```text
//!                         public segment 198.18.0.0/16 (bridge <p>-pub in <p>-sw)
//!   +-----------+         |               |                 |                    |
//!   | <p>-ti    |-tip-----+               |                 |                    |
//!   | 198.18.1.1..M       |               |                 |                    |
//!   +-----------+     cmp 198.18.0.1  natp 198.18.0.2   tep 198.18.0.(10+i)  (FIG 4 only)
//!                     +--------+      +---------+       +-----------+
//!                     | <p>-cm |      | <p>-nat |       | <p>-te<i> |
//!                     +--------+      +---------+       +-----------+
//!                     cml 198.19.0.1  natl 198.19.0.2   tel 198.19.0.(10+i)
//!                         |               | (FIG 2 only)    |
//!                         LAN segment 198.19.0.0/16 (bridge <p>-lan in <p>-sw)
//! ```

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// The patent's two architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Topology {
    /// FIG 2: endpoints have LAN addresses only; a NAT gives them one global address.
    Fig2,
    /// FIG 4: every endpoint has a global address of its own as well as its LAN address.
    Fig4,
}

impl std::fmt::Display for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Topology::Fig2 => "fig2",
            Topology::Fig4 => "fig4",
        })
    }
}

/// Endpoint `i` (1-based) has LAN address 198.19.0.(10+i): at most 198.19.0.250.
pub const MAX_ENDPOINTS: usize = 240;
/// Initiator addresses are 198.18.1.1 ..= 198.18.1.M.
pub const MAX_INITIATORS: usize = 250;
/// Both segments are one /16 each: everything on a segment is on-link.
pub const PREFIX_LEN: u8 = 16;

pub const CLUSTER_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const MASTER_LAN: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
pub const NAT_GLOBAL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const NAT_LAN: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);

/// Interface names are limited to 15 bytes by the kernel (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

pub fn endpoint_lan(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 0, (10 + i) as u8)
}

pub fn endpoint_global(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, (10 + i) as u8)
}

pub fn initiator_address(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, k as u8)
}

/// Which of the two bridges an interface is plugged into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Segment {
    Public,
    Lan,
}

impl Segment {
    fn letter(self) -> char {
        match self {
            Segment::Public => 'p',
            Segment::Lan => 'l',
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
/// What a lab node is (serialized as its `role` in lab.json).
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// Holds the two bridges; no addresses, so it cannot route between the segments.
    Switch,
    Initiator,
    Master,
    Nat,
    Endpoint,
}

/// A route as `ip route add` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<Ipv4Addr>,
    pub dev: String,
}

impl Route {
    pub fn ip_args(&self) -> String {
        match self.via {
            Some(via) => format!("route add {} via {} dev {}", self.to, via, self.dev),
            None => format!("route add {} dev {}", self.to, self.dev),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfacePlan {
    pub name: String,
    pub segment: Segment,
    /// The other end of the veth, in the switch namespace, enslaved to the segment's bridge.
    pub switch_port: String,
    /// All with [`PREFIX_LEN`]; the first one is the primary.
    pub addresses: Vec<Ipv4Addr>,
    /// 1 strict, 2 loose (see [`Plan::new`] for why).
    pub rp_filter: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlan {
    pub role: NodeKind,
    /// `ti`, `cm`, `nat`, `te1` ...: the name without the run prefix.
    pub short: String,
    pub namespace: String,
    pub interfaces: Vec<InterfacePlan>,
    pub routes: Vec<Route>,
}

impl NodePlan {
    pub fn interface(&self, segment: Segment) -> Option<&InterfacePlan> {
        self.interfaces.iter().find(|i| i.segment == segment)
    }

    /// `ip -batch` lines that address the node once its veth ends exist.
    pub fn ip_batch(&self) -> Vec<String> {
        let mut lines = vec!["link set lo up".to_string()];
        for iface in &self.interfaces {
            for addr in &iface.addresses {
                lines.push(format!("addr add {addr}/{PREFIX_LEN} dev {}", iface.name));
            }
            lines.push(format!("link set {} up", iface.name));
        }
        lines.extend(self.routes.iter().map(Route::ip_args));
        lines
    }

    /// Per-interface sysctls, set after the interfaces exist.
    pub fn interface_sysctls(&self) -> Vec<(String, String)> {
        self.interfaces
            .iter()
            .map(|i| {
                (
                    format!("net.ipv4.conf.{}.rp_filter", i.name),
                    i.rp_filter.to_string(),
                )
            })
            .collect()
    }
}

/// Set in every namespace right after it is made, before any interface exists (so `default`
/// applies to them).
pub fn namespace_sysctls(ipv6: bool) -> Vec<(String, String)> {
    let mut s: Vec<(&str, &str)> = vec![
        // The master and the NAT forward in userspace; the kernel must not forward behind them.
        ("net.ipv4.ip_forward", "0"),
        // The kernel uses max(all, interface): with all=0 each interface's own value decides.
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.default.rp_filter", "1"),
        // Each interface answers ARP only for its own addresses and announces its own source:
        // FIG 4 endpoints sit on both segments.
        ("net.ipv4.conf.all.arp_ignore", "1"),
        ("net.ipv4.conf.all.arp_announce", "2"),
    ];
    if ipv6 {
        // The captures then hold the lab's IPv4 and ARP only (no DAD, RS, MLD noise).
        s.push(("net.ipv6.conf.all.disable_ipv6", "1"));
        s.push(("net.ipv6.conf.default.disable_ipv6", "1"));
    }
    s.into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Set in the switch namespace after [`namespace_sysctls`], when the kernel has
/// br_netfilter (its `net.bridge` keys exist): bridged frames then skip iptables, ip6tables
/// and arptables, which the lab never uses and which cost every frame on every bridge
/// crossing (~6% of all CPU in a FIG 2 subscriber storm, BENCHMARKS.md).
pub fn switch_sysctls(bridge_netfilter: bool) -> Vec<(String, String)> {
    if !bridge_netfilter {
        return Vec::new();
    }
    ["iptables", "ip6tables", "arptables"]
        .iter()
        .map(|t| (format!("net.bridge.bridge-nf-call-{t}"), "0".to_string()))
        .collect()
}

/// Whether the kernel has br_netfilter loaded (built in, or the module).
pub fn has_bridge_netfilter() -> bool {
    std::path::Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub prefix: String,
    pub topology: Topology,
    pub switch_namespace: String,
    pub public_bridge: String,
    pub lan_bridge: String,
    /// In creation order: initiators, master, NAT (FIG 2), endpoints.
    pub nodes: Vec<NodePlan>,
}

impl Plan {
    /// Routes and rp_filter:
    /// - TI, CM, NAT: connected routes only (both segments are one /16 each); strict rp_filter.
    /// - TE, FIG 2: default via the NAT's LAN address, so replies to an initiator go to the NAT;
    ///   strict rp_filter on the LAN passes packets from 198.18.1.x forwarded by the master,
    ///   since the reverse route (the default) leaves by that same interface.
    /// - TE, FIG 4: default out of its public interface (on-link, no gateway: the public segment
    ///   is flat); its LAN interface is loose (2), because packets from 198.18.1.x forwarded by
    ///   the master arrive there while the reverse route leaves by the public interface. The
    ///   public interface stays strict.
    pub fn new(
        prefix: &str,
        topology: Topology,
        endpoints: usize,
        initiators: usize,
    ) -> anyhow::Result<Plan> {
        if !(1..=MAX_ENDPOINTS).contains(&endpoints) {
            anyhow::bail!("--endpoints {endpoints}: expected 1 ..= {MAX_ENDPOINTS}");
        }
        if !(1..=MAX_INITIATORS).contains(&initiators) {
            anyhow::bail!("--initiators {initiators}: expected 1 ..= {MAX_INITIATORS}");
        }
        let node = |role: NodeKind, short: String, ifaces: &[(Segment, Vec<Ipv4Addr>, u8)]| {
            let interfaces = ifaces
                .iter()
                .map(|(segment, addresses, rp_filter)| InterfacePlan {
                    name: format!("{prefix}-{short}{}", segment.letter()),
                    segment: *segment,
                    switch_port: format!("{prefix}-s{short}{}", segment.letter()),
                    addresses: addresses.clone(),
                    rp_filter: *rp_filter,
                })
                .collect();
            NodePlan {
                role,
                namespace: format!("{prefix}-{short}"),
                short,
                interfaces,
                routes: Vec::new(),
            }
        };
        let mut nodes = vec![
            node(
                NodeKind::Initiator,
                "ti".into(),
                &[(
                    Segment::Public,
                    (1..=initiators).map(initiator_address).collect(),
                    1,
                )],
            ),
            node(
                NodeKind::Master,
                "cm".into(),
                &[
                    (Segment::Public, vec![CLUSTER_ADDRESS], 1),
                    (Segment::Lan, vec![MASTER_LAN], 1),
                ],
            ),
        ];
        if topology == Topology::Fig2 {
            nodes.push(node(
                NodeKind::Nat,
                "nat".into(),
                &[
                    (Segment::Public, vec![NAT_GLOBAL], 1),
                    (Segment::Lan, vec![NAT_LAN], 1),
                ],
            ));
        }
        for i in 1..=endpoints {
            let short = format!("te{i}");
            let mut te = match topology {
                Topology::Fig2 => node(
                    NodeKind::Endpoint,
                    short,
                    &[(Segment::Lan, vec![endpoint_lan(i)], 1)],
                ),
                Topology::Fig4 => node(
                    NodeKind::Endpoint,
                    short,
                    &[
                        (Segment::Public, vec![endpoint_global(i)], 1),
                        (Segment::Lan, vec![endpoint_lan(i)], 2),
                    ],
                ),
            };
            let route = match topology {
                Topology::Fig2 => Route {
                    to: "default".into(),
                    via: Some(NAT_LAN),
                    dev: te.interfaces[0].name.clone(),
                },
                Topology::Fig4 => Route {
                    to: "default".into(),
                    via: None,
                    dev: te.interfaces[0].name.clone(),
                },
            };
            te.routes.push(route);
            nodes.push(te);
        }
        let plan = Plan {
            prefix: prefix.to_string(),
            topology,
            switch_namespace: format!("{prefix}-sw"),
            public_bridge: format!("{prefix}-pub"),
            lan_bridge: format!("{prefix}-lan"),
            nodes,
        };
        for name in plan.interface_names() {
            if name.len() > IFNAME_MAX {
                anyhow::bail!("interface name {name:?} is longer than {IFNAME_MAX} bytes");
            }
        }
        Ok(plan)
    }

    pub fn bridge(&self, segment: Segment) -> &str {
        match segment {
            Segment::Public => &self.public_bridge,
            Segment::Lan => &self.lan_bridge,
        }
    }

    pub fn node(&self, role: NodeKind) -> Option<&NodePlan> {
        self.nodes.iter().find(|n| n.role == role)
    }

    pub fn endpoints(&self) -> impl Iterator<Item = &NodePlan> {
        self.nodes.iter().filter(|n| n.role == NodeKind::Endpoint)
    }

    /// The switch namespace first, then the nodes: the order they are made in.
    pub fn namespaces(&self) -> Vec<String> {
        std::iter::once(self.switch_namespace.clone())
            .chain(self.nodes.iter().map(|n| n.namespace.clone()))
            .collect()
    }

    pub fn interface_names(&self) -> Vec<String> {
        let mut names = vec![self.public_bridge.clone(), self.lan_bridge.clone()];
        for n in &self.nodes {
            for i in &n.interfaces {
                names.push(i.name.clone());
                names.push(i.switch_port.clone());
            }
        }
        names
    }

    /// `ip -batch` lines for the switch namespace once every veth exists. Without
    /// `public_bridged` the public veth ends stay off the public bridge: the lab's impairing
    /// switch moves their frames instead.
    pub fn switch_batch(&self, public_bridged: bool) -> Vec<String> {
        let mut lines = vec!["link set lo up".to_string()];
        for n in &self.nodes {
            for i in &n.interfaces {
                if i.segment == Segment::Public && !public_bridged {
                    lines.push(format!("link set {} up", i.switch_port));
                    continue;
                }
                lines.push(format!(
                    "link set {} master {} up",
                    i.switch_port,
                    self.bridge(i.segment)
                ));
            }
        }
        lines.push(format!("link set {} up", self.public_bridge));
        lines.push(format!("link set {} up", self.lan_bridge));
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fig2_addresses_and_routes() {
        let plan = Plan::new("l2k0abc", Topology::Fig2, 3, 5).unwrap();
        let names: Vec<_> = plan.nodes.iter().map(|n| n.short.as_str()).collect();
        assert_eq!(names, ["ti", "cm", "nat", "te1", "te2", "te3"]);
        let ti = plan.node(NodeKind::Initiator).unwrap();
        assert_eq!(ti.interfaces[0].addresses.len(), 5);
        assert_eq!(ti.interfaces[0].addresses[4], Ipv4Addr::new(198, 18, 1, 5));
        let te3 = plan.endpoints().nth(2).unwrap();
        assert_eq!(te3.interfaces.len(), 1);
        assert_eq!(te3.interfaces[0].addresses, [Ipv4Addr::new(198, 19, 0, 13)]);
        assert_eq!(te3.interfaces[0].name, "l2k0abc-te3l");
        assert_eq!(te3.interfaces[0].switch_port, "l2k0abc-ste3l");
        assert_eq!(
            te3.ip_batch().last().unwrap(),
            "route add default via 198.19.0.2 dev l2k0abc-te3l"
        );
        assert_eq!(te3.interfaces[0].rp_filter, 1);
    }

    #[test]
    fn fig4_endpoints_have_globals_and_a_loose_lan() {
        let plan = Plan::new("l2k0abc", Topology::Fig4, 2, 1).unwrap();
        assert!(plan.node(NodeKind::Nat).is_none());
        let te2 = plan.endpoints().nth(1).unwrap();
        let public = te2.interface(Segment::Public).unwrap();
        let lan = te2.interface(Segment::Lan).unwrap();
        assert_eq!(public.addresses, [Ipv4Addr::new(198, 18, 0, 12)]);
        assert_eq!(lan.addresses, [Ipv4Addr::new(198, 19, 0, 12)]);
        assert_eq!((public.rp_filter, lan.rp_filter), (1, 2));
        assert_eq!(
            te2.routes,
            [Route {
                to: "default".into(),
                via: None,
                dev: "l2k0abc-te2p".into()
            }]
        );
    }

    #[test]
    fn names_fit_at_the_limits() {
        let plan = Plan::new("l2kffff", Topology::Fig4, MAX_ENDPOINTS, MAX_INITIATORS).unwrap();
        let longest = plan.interface_names().into_iter().map(|n| n.len()).max();
        assert_eq!(longest, Some(IFNAME_MAX));
        let last = plan.endpoints().last().unwrap();
        assert_eq!(
            last.interface(Segment::Lan).unwrap().addresses,
            [Ipv4Addr::new(198, 19, 0, 250)]
        );
        assert!(Plan::new("l2kffff", Topology::Fig2, MAX_ENDPOINTS + 1, 1).is_err());
        assert!(Plan::new("l2kffff", Topology::Fig2, 1, 0).is_err());
    }
}
