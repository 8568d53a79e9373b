//! The cluster's roles in a lab: the command line of each (master, NAT, endpoints), and what
//! killing the acting master does to its links.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::instance::Lab;
use super::plan::{self, NodeKind, NodePlan, Plan, Segment, Topology, PREFIX_LEN};
use super::spec::EndpointKind;
pub use super::start::MASTER;
use super::start::{Readiness, READY};
use super::sys;
use super::{l2tpns, xl2tpd};

/// The one subscriber every session of a PPP lab run logs in as (CHAP), and its password.
pub const LAB_USER: &str = "lab@example.net";
pub const LAB_PASSWORD: &str = "l2tpkit-lab";

/// Endpoint `i`'s share of the PPP pool 198.19.128.0/17 among `n`: equal power-of-two slices,
/// so that no address is handed out by two endpoints.
pub(super) fn pool_slice(i: usize, n: usize) -> PoolSlice {
    let bits = n.max(1).next_power_of_two().trailing_zeros().min(14);
    let size = 1u32 << (15 - bits);
    let base = u32::from(Ipv4Addr::new(198, 19, 128, 0)) + size * i as u32;
    PoolSlice {
        base: Ipv4Addr::from(base),
        prefix_len: 17 + bits as u8,
    }
}

/// One endpoint's slice of the PPP pool: `base/prefix_len` (`--pool` of `l2tpkit endpoint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PoolSlice {
    pub(super) base: Ipv4Addr,
    pub(super) prefix_len: u8,
}

impl PoolSlice {
    /// The `n`th address of the slice (0 is its base).
    pub(super) fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + n)
    }

    pub(super) fn size(&self) -> u32 {
        1 << (32 - u32::from(self.prefix_len))
    }
}

impl std::fmt::Display for PoolSlice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix_len)
    }
}

/// The port every role of a lab serves `--metrics` on (`lab up --metrics`).
pub const METRICS_PORT: u16 = 9464;

/// `RUN_DIR/prometheus.yml`: one job per kind of role, each target an address of the lab.
fn write_scrape_file(run: &std::path::Path, jobs: &[(&str, Vec<String>)]) -> anyhow::Result<()> {
    let mut yml = String::from(
        "# A scrape file for the lab's roles: run Prometheus in the master's namespace\n\
         # (ip netns exec <prefix>-cm prometheus --config.file=prometheus.yml), which reaches\n\
         # both segments.\nglobal:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n\
         scrape_configs:\n",
    );
    for (job, targets) in jobs {
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        yml.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
            list.join(", ")
        ));
    }
    std::fs::write(run.join("prometheus.yml"), yml).context("writing prometheus.yml")
}

/// Starts the cluster's roles, each as its own `l2tpkit` process in its own namespace: the
/// master on the cluster address (reports on its LAN address), in FIG 2 the NAT, and every
/// endpoint (FIG 2: LAN address only, replies through the NAT; FIG 4: listens on all its
/// addresses and answers from its global one): `l2tpkit endpoint`, or xl2tpd
/// ([`xl2tpd::start_endpoints`]) or l2tpns with FreeRADIUS ([`l2tpns::start_endpoints`]), each
/// with `l2tpkit agent` beside it. Endpoints get disjoint Tunnel ID blocks and
/// report every half second with a key made for this lab. Each role is waited on until it says
/// it is ready (its control socket answers, or its status file is written); this returns once
/// the master has had time to hear from every endpoint.
pub fn start_roles(lab: &Lab) -> anyhow::Result<()> {
    let plan = lab.plan();
    // The roles read the key from this file (0600): never on a command line, which every
    // local user can read.
    let key_file = lab.run_dir().join("report.key");
    let key = format!(
        "{:016x}{:016x}",
        crate::net::os_seed(),
        crate::net::os_seed()
    );
    crate::secret::write_key_file(&key_file, &key).context("writing report.key")?;
    let key = key_file.display().to_string();
    let master = plan
        .node(NodeKind::Master)
        .context("the plan has no master")?;
    let cluster = address(master, Segment::Public)?;
    let master_lan = address(master, Segment::Lan)?;
    let run = lab.run_dir();
    let fig4 = plan.topology == Topology::Fig4;
    let mut args = vec![
        "master".to_string(),
        format!("--name={MASTER}"),
        format!("--report-key-file={key}"),
        format!("--status={}", run.join("master-status.json").display()),
        format!("--control={}", run.join("master.sock").display()),
    ];
    if fig4 {
        // FIG 4 has takeover: the master claims its addresses (ARP probe first), so that once
        // it is started again after a takeover it finds them held and stands by.
        let public = master.interface(Segment::Public).context("master public")?;
        let lan = master.interface(Segment::Lan).context("master LAN")?;
        args.extend([
            format!("--cluster={cluster}/{PREFIX_LEN}"),
            format!("--lan={master_lan}/{PREFIX_LEN}"),
            format!("--claim-public={}", public.name),
            format!("--claim-lan={}", lan.name),
        ]);
    } else {
        args.extend([
            format!("--cluster={cluster}"),
            format!("--lan={master_lan}"),
        ]);
    }
    args.extend(policy_args(lab.policy));
    let mut targets: Vec<(&str, Vec<String>)> = Vec::new();
    if lab.metrics {
        args.push(metrics_arg(master_lan));
        targets.push(("master", vec![format!("{master_lan}:{METRICS_PORT}")]));
    }
    lab.start_role(
        MASTER,
        &master.namespace,
        args,
        Readiness::Control(run.join("master.sock")),
    )?;
    if let Some(nat) = plan.node(NodeKind::Nat) {
        let lan_if = nat
            .interface(Segment::Lan)
            .context("the NAT has no LAN interface")?;
        let nat_lan = address(nat, Segment::Lan)?;
        let mut args = vec![
            "nat".to_string(),
            format!("--global={}", address(nat, Segment::Public)?),
            format!("--lan={nat_lan}"),
            format!("--lan-if={}", lan_if.name),
            format!("--status={}", run.join("nat-status.json").display()),
            format!("--control={}", run.join("nat.sock").display()),
        ];
        if lab.shared_tunnel_ids {
            args.push("--translate-tunnel-ids".to_string());
        }
        // Its entries outlive the StopCCNs' retransmissions.
        if let Some(n) = lab.max_retransmits {
            args.push(format!("--max-retransmits={n}"));
        }
        if lab.metrics {
            args.push(metrics_arg(nat_lan));
            targets.push(("nat", vec![format!("{nat_lan}:{METRICS_PORT}")]));
        }
        lab.start_role(
            "nat",
            &nat.namespace,
            args,
            Readiness::Control(run.join("nat.sock")),
        )?;
    }
    let endpoint_targets = match lab.endpoint_kind {
        EndpointKind::L2tpkit => start_endpoints(lab, &key, cluster, master_lan)?,
        EndpointKind::Xl2tpd => xl2tpd::start_endpoints(lab, &key, master_lan)?,
        EndpointKind::L2tpns => l2tpns::start_endpoints(lab, &key, master_lan)?,
    };
    if lab.metrics {
        targets.push(("endpoint", endpoint_targets));
        if let Some(first) = plan
            .node(NodeKind::Initiator)
            .and_then(|ti| ti.interfaces.first())
            .and_then(|i| i.addresses.first())
        {
            // `lab run`'s LAC serves there while it runs.
            targets.push(("lac", vec![format!("{first}:{METRICS_PORT}")]));
        }
        write_scrape_file(run, &targets)?;
    }
    // Two report intervals: every endpoint is in service at the master before anyone dials.
    std::thread::sleep(Duration::from_millis(1100));
    Ok(())
}

/// Starts one `l2tpkit endpoint` per endpoint node (FIG 2: LAN address only, replies through
/// the NAT; FIG 4: listens on all its addresses, answers from its global one, and may take the
/// master over) and waits until each has bound its socket; its metrics targets.
fn start_endpoints(
    lab: &Lab,
    key: &str,
    cluster: Ipv4Addr,
    master_lan: Ipv4Addr,
) -> anyhow::Result<Vec<String>> {
    let plan = lab.plan();
    let run = lab.run_dir();
    let endpoints: Vec<_> = plan.endpoints().collect();
    let users = run.join("ppp-users");
    if lab.ppp {
        std::fs::write(&users, format!("{LAB_USER}:{LAB_PASSWORD}\n"))
            .context("writing the PPP users file")?;
    }
    // Disjoint Tunnel ID blocks, unique cluster-wide: the master routes by them.
    let block = u16::MAX as usize / (endpoints.len() + 1);
    let mut started = Vec::new();
    let mut targets = Vec::new();
    for (i, node) in endpoints.iter().enumerate() {
        let lan = address(node, Segment::Lan)?;
        let first = (i + 1) * block;
        let last = first + block - 1;
        let ids = if lab.shared_tunnel_ids {
            "--tunnel-ids=any".to_string()
        } else {
            format!("--tunnel-ids={first}-{last}")
        };
        let mut args = vec![
            "endpoint".to_string(),
            format!("--host-name={}", node.short),
            ids,
        ];
        args.extend(report_args(&node.short, key, master_lan));
        if let Some(secret) = &lab.secret {
            // In a file of the run dir (0600), not on the command line.
            let file = lab.run_dir().join("tunnel.secret");
            crate::secret::write_key_file(&file, secret).context("writing tunnel.secret")?;
            args.push(format!("--secret-file={}", file.display()));
        }
        if let Some(n) = lab.max_retransmits {
            args.push(format!("--max-retransmits={n}"));
        }
        if lab.metrics {
            args.push(metrics_arg(lan));
            targets.push(format!("{lan}:{METRICS_PORT}"));
        }
        if lab.ppp {
            args.extend([
                format!(
                    "--ppp-max-configure={}",
                    super::spec::ppp_max_configure(lab.max_retransmits)
                ),
                "--auth=chap".to_string(),
                format!("--users={}", users.display()),
                format!("--pool={}", pool_slice(i, endpoints.len())),
            ]);
        }
        match node.interface(Segment::Public) {
            // FIG 4: both addresses; replies leave from the global one (default route). Each
            // may take the master over: its turn comes from the master's view.
            Some(public) => {
                let global = public.addresses.first().context("public address")?;
                let lan_if = node.interface(Segment::Lan).context("endpoint LAN")?;
                let short = &node.short;
                args.extend([
                    "--listen=0.0.0.0:1701".to_string(),
                    format!("--lan={lan}"),
                    format!("--global={global}"),
                    format!("--takeover-cluster={cluster}/{PREFIX_LEN}"),
                    format!("--takeover-lan={master_lan}/{PREFIX_LEN}"),
                    format!("--takeover-public-if={}", public.name),
                    format!("--takeover-lan-if={}", lan_if.name),
                    format!(
                        "--takeover-status={}",
                        run.join(format!("{short}-master-status.json")).display()
                    ),
                    format!(
                        "--takeover-control={}",
                        run.join(format!("{short}-master.sock")).display()
                    ),
                ]);
            }
            None => args.push(format!("--listen={lan}:1701")),
        }
        // The endpoint writes its status file once its socket is bound.
        let ready = Readiness::StatusFile(run.join(format!("{}-status.json", node.short)));
        if let Readiness::StatusFile(status) = &ready {
            args.push(format!("--status={}", status.display()));
        }
        let process = lab.spawn_role(&node.short, &node.namespace, args, Some(ready.clone()))?;
        started.push((process, ready));
    }
    for (process, ready) in &started {
        lab.wait_ready(process, ready, READY)?;
    }
    Ok(targets)
}

/// `unshare` arguments that run `sh -c script sh paths…` as the init of a PID namespace of
/// its own, in a private mount namespace: how the lab runs an LNS that is not ours (xl2tpd,
/// l2tpns). The script may bind-mount run files over system paths, then `exec`s the daemon.
/// Whatever the daemon starts or signals (l2tpns signals its whole process group) stays in
/// there; the lab signals the init through `unshare` ([`sys::signal_to_end`]).
pub(super) fn isolated(script: &str, paths: &[&Path]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--pid",
        "--fork",
        "--kill-child",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
    ]
    .map(String::from)
    .to_vec();
    args.extend(paths.iter().map(|p| p.display().to_string()));
    args
}

/// Starts an `l2tpkit agent` beside the LNS of every endpoint node (the role `te<i>`), which
/// listens on its LAN address at `port` (FIG 4: answers from its global one) and holds at most
/// `capacity` tunnels (the agent's default: no limit to speak of), and waits until each writes
/// its status file; the agents' metrics targets.
pub(super) fn start_agents(
    lab: &Lab,
    key: &str,
    master_lan: Ipv4Addr,
    port: u16,
    capacity: Option<u32>,
) -> anyhow::Result<Vec<String>> {
    let run = lab.run_dir();
    let mut agents = Vec::new();
    let mut targets = Vec::new();
    for node in lab.plan().endpoints() {
        let lan = address(node, Segment::Lan)?;
        let status = run.join(format!("{}-status.json", node.short));
        let mut args = vec!["agent".to_string(), format!("--lns={lan}:{port}")];
        args.extend(report_args(&node.short, key, master_lan));
        if let Some(global) = node.interface(Segment::Public) {
            let global = global.addresses.first().context("public address")?;
            args.push(format!("--global={global}"));
        }
        if let Some(capacity) = capacity {
            args.push(format!("--capacity={capacity}"));
        }
        args.extend([
            format!("--status={}", status.display()),
            format!(
                "--control={}",
                run.join(format!("{}.sock", node.short)).display()
            ),
        ]);
        if lab.metrics {
            args.push(metrics_arg(lan));
            targets.push(format!("{lan}:{METRICS_PORT}"));
        }
        // The agent writes its status file once it watches its interfaces.
        let ready = Readiness::StatusFile(status);
        let process = lab.spawn_role(&node.short, &node.namespace, args, Some(ready.clone()))?;
        agents.push((process, ready));
    }
    for (process, ready) in &agents {
        lab.wait_ready(process, ready, READY)?;
    }
    Ok(targets)
}

/// How a role on an endpoint node reports its load to the master (`endpoint`, `agent`): its
/// name, the master's LAN address, the lab's key file, every half second.
pub(super) fn report_args(name: &str, key_file: &str, master_lan: Ipv4Addr) -> Vec<String> {
    vec![
        format!("--name={name}"),
        format!("--master={master_lan}"),
        format!("--report-key-file={key_file}"),
        "--report-interval=0.5".to_string(),
    ]
}

/// `--metrics` on `ip`, at the lab's metrics port.
pub(super) fn metrics_arg(ip: Ipv4Addr) -> String {
    format!("--metrics={ip}:{METRICS_PORT}")
}

/// A killed master dies for the network too: its links go down, so that the kernel of its
/// namespace stops answering ARP for the cluster address (an endpoint's probe must find it
/// free), and in FIG 4 the addresses it claimed go (a claim-mode master starting again must not
/// find its kernel answering for them).
pub fn kill_master_links(plan: &Plan) -> anyhow::Result<()> {
    let node = plan
        .node(NodeKind::Master)
        .context("the plan has no master")?;
    kill_links(plan, node)
}

/// After killing the process `name`: if it was the acting master (the master itself, or a FIG
/// 4 endpoint that took the cluster address over), its node dies for the network too, as
/// [`kill_master_links`] says, so that the next endpoint's probe finds the address free. Any
/// other role only loses its process: its kernel stays, as a crashed daemon's would.
pub fn kill_links_if_master(plan: &Plan, name: &str) -> anyhow::Result<bool> {
    if name == MASTER {
        kill_master_links(plan)?;
        return Ok(true);
    }
    let Some(node) = plan
        .endpoints()
        .find(|n| n.short == name)
        .filter(|_| plan.topology == Topology::Fig4)
    else {
        return Ok(false);
    };
    let held = sys::ip(&["-n", &node.namespace, "-4", "addr", "show"])?;
    if !held.contains(&format!("{}/", plan::CLUSTER_ADDRESS)) {
        return Ok(false);
    }
    kill_links(plan, node)?;
    Ok(true)
}

fn kill_links(plan: &Plan, node: &NodePlan) -> anyhow::Result<()> {
    let mut lines: Vec<String> = Vec::new();
    for iface in &node.interfaces {
        lines.push(format!("link set {} down", iface.name));
        if plan.topology == Topology::Fig4 {
            lines.push(format!("addr flush dev {}", iface.name));
        }
    }
    sys::ip_batch(&node.namespace, &lines, false)
}

/// `l2tpkit master` flags for `policy` (least-load is its default).
fn policy_args(policy: reference::master::Policy) -> Vec<String> {
    use reference::master::Policy;
    match policy {
        Policy::LeastLoad => Vec::new(),
        Policy::RoundRobin => vec!["--policy=round-robin".to_string()],
        Policy::LeakyBucket { rate, burst } => vec![
            "--policy=leaky-bucket".to_string(),
            format!("--rate={rate}"),
            format!("--burst={burst}"),
        ],
    }
}

pub(super) fn address(node: &NodePlan, segment: Segment) -> anyhow::Result<Ipv4Addr> {
    node.interface(segment)
        .and_then(|i| i.addresses.first().copied())
        .with_context(|| format!("{} has no {segment:?} address", node.short))
}

#[cfg(test)]
mod tests {
    use super::pool_slice;
    use std::net::Ipv4Addr;

    #[test]
    fn endpoints_share_the_ppp_pool_without_overlap() {
        let slice = |i, n| pool_slice(i, n).to_string();
        assert_eq!(slice(0, 1), "198.19.128.0/17");
        assert_eq!(slice(0, 3), "198.19.128.0/19");
        assert_eq!(slice(2, 3), "198.19.192.0/19");
        assert_eq!(slice(3, 4), "198.19.224.0/19");
        // 240 endpoints (the lab's most): 256 slices of /25, the last inside the /17.
        assert_eq!(slice(239, 240), "198.19.247.128/25");
        assert_eq!(pool_slice(239, 240).size(), 128);
        assert_eq!(pool_slice(0, 3).nth(1), Ipv4Addr::new(198, 19, 128, 1));
    }
}
