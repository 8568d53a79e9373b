//! Bringing a lab up: the namespaces and links of its plan, the supervisor, the captures and
//! the roles, each recorded in the state file before it exists so that teardown finds it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;

use super::instance::{Inner, Lab};
use super::plan::{self, Plan};
use super::roles::start_roles;
use super::spec::{default_binary, preflight, LabSpec};
use super::state::{self, Record, StateFile, STATE_FILE, STATE_VERSION};
use super::supervisor::Supervisor;
use super::sys;

impl Lab {
    /// Builds the topology, starts the supervisor and the captures, runs [`start_roles`]. On any
    /// error (and on SIGINT/SIGTERM once [`sys::install_interrupt_handler`] is in place, seen as
    /// [`sys::Interrupted`]) whatever was made is removed before this returns.
    pub fn up(spec: &LabSpec) -> anyhow::Result<Lab> {
        spec.check()?;
        preflight(spec.endpoint_kind)?;
        // Checked before a prefix is reserved, so bad flags leave nothing behind.
        Plan::new("l2k0000", spec.topology, spec.endpoints, spec.initiators)?;
        let binary = match &spec.binary {
            Some(b) => b.clone(),
            None => default_binary()?,
        };
        sys::checkpoint()?;
        let reservation = state::reserve(spec.run_dir.as_deref())?;
        let plan = Plan::new(
            &reservation.prefix,
            spec.topology,
            spec.endpoints,
            spec.initiators,
        )?;
        let run_dir = reservation.run_dir;
        let (owner_pid, owner_start_time) = (
            std::process::id(),
            sys::proc_stat(std::process::id()).map_or(0, |(_, t)| t),
        );
        let state = StateFile::create(
            &run_dir.join(STATE_FILE),
            &Record::Run {
                version: STATE_VERSION,
                prefix: plan.prefix.clone(),
                topology: plan.topology,
                run_dir: run_dir.clone(),
                created_unix_ms: state::unix_ms(),
                owner_pid,
                owner_start_time,
            },
        )?;
        let lab = Lab {
            plan,
            run_dir,
            state,
            binary,
            captures: spec.captures,
            secret: spec.secret.clone(),
            ppp: spec.ppp,
            metrics: spec.metrics,
            endpoint_kind: spec.endpoint_kind,
            shared_tunnel_ids: spec.shared_tunnel_ids,
            netem: spec.netem,
            policy: spec.policy,
            max_retransmits: spec.max_retransmits,
            inner: Mutex::new(Inner {
                supervisor: None,
                processes: Vec::new(),
                roles: BTreeMap::new(),
            }),
            armed: true,
        };
        // From here on, `?` drops `lab`, and Drop removes what the state file lists.
        lab.build()
            .with_context(|| format!("lab {}: building the topology", lab.plan.prefix))?;
        lab.start_supervisor()?;
        if lab.netem.is_some() {
            lab.start_impairer()?;
        }
        if lab.captures {
            lab.start_captures()?;
        }
        if spec.roles {
            start_roles(&lab)?;
        }
        let described = lab.description();
        let description = lab.run_dir.join("lab.json");
        for (path, text) in [
            (&description, serde_json::to_string_pretty(&described)?),
            (
                &described.roles_file,
                serde_json::to_string_pretty(&described.roles())?,
            ),
        ] {
            std::fs::write(path, text + "\n").with_context(|| format!("{}", path.display()))?;
        }
        lab.state.append(&Record::Up { description })?;
        sys::checkpoint()?;
        Ok(lab)
    }

    fn build(&self) -> anyhow::Result<()> {
        let plan = &self.plan;
        let ns_sysctls = plan::namespace_sysctls(Path::new("/proc/sys/net/ipv6").exists());
        for ns in plan.namespaces() {
            self.state.append(&Record::Netns { name: ns.clone() })?;
            sys::ip(&["netns", "add", &ns])?;
            sys::sysctl(&ns, &ns_sysctls)?;
            sys::step()?;
        }
        let sw = &plan.switch_namespace;
        sys::sysctl(sw, &plan::switch_sysctls(plan::has_bridge_netfilter()))?;
        for bridge in [&plan.public_bridge, &plan.lan_bridge] {
            self.state.append(&Record::Link {
                namespace: sw.clone(),
                name: bridge.clone(),
                link_type: "bridge".into(),
                peer_namespace: None,
                peer: None,
            })?;
            sys::ip(&[
                "-n",
                sw,
                "link",
                "add",
                bridge,
                "type",
                "bridge",
                "stp_state",
                "0",
            ])?;
            sys::step()?;
        }
        for node in &plan.nodes {
            for iface in &node.interfaces {
                self.state.append(&Record::Link {
                    namespace: sw.clone(),
                    name: iface.switch_port.clone(),
                    link_type: "veth".into(),
                    peer_namespace: Some(node.namespace.clone()),
                    peer: Some(iface.name.clone()),
                })?;
                // Both ends are made inside lab namespaces: the host never sees them.
                sys::ip(&[
                    "-n",
                    sw,
                    "link",
                    "add",
                    &iface.switch_port,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &iface.name,
                    "netns",
                    &node.namespace,
                ])?;
                sys::step()?;
            }
        }
        sys::ip_batch(sw, &plan.switch_batch(self.netem.is_none()), false)?;
        for node in &plan.nodes {
            sys::ip_batch(&node.namespace, &node.ip_batch(), false)?;
            sys::sysctl(&node.namespace, &node.interface_sysctls())?;
            sys::checkpoint()?;
        }
        Ok(())
    }

    fn start_supervisor(&self) -> anyhow::Result<()> {
        let supervisor =
            Supervisor::start(&self.binary, &self.run_dir, &self.plan.prefix, &self.state)?;
        self.lock().supervisor = Some(supervisor);
        sys::step()
    }
}
