//! A running lab: [`Lab::up`] builds one, [`Lab::down`] (or dropping it, also while a panic
//! unwinds) removes exactly what its state file lists, [`Lab::detach`] leaves it up for a later
//! `lab down`. The rest of `Lab` lives in the rooms beside this one: [`super::processes`]
//! (starting, waiting for and stopping processes), [`super::description`] (`lab.json`),
//! [`super::teardown`].

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;

use super::description::LabProcess;
use super::netem::Netem;
use super::plan::{self, NodeKind, Plan};
use super::processes::RoleStart;
use super::roles::start_roles;
use super::spec::{default_binary, preflight, LabSpec};
use super::state::{self, Record, StateFile, STATE_FILE, STATE_VERSION};
use super::supervisor::Supervisor;
use super::sys;

pub struct Lab {
    pub(super) plan: Plan,
    pub(super) run_dir: PathBuf,
    pub(super) state: StateFile,
    pub(super) binary: PathBuf,
    pub(super) captures: bool,
    /// The endpoints' tunnel secret.
    pub(super) secret: Option<String>,
    pub(super) netem: Option<Netem>,
    pub(super) policy: reference::master::Policy,
    pub(super) max_retransmits: Option<u32>,
    pub(super) inner: Mutex<Inner>,
    /// Dropping an armed lab tears it down.
    pub(super) armed: bool,
}

pub(super) struct Inner {
    pub(super) supervisor: Option<Supervisor>,
    pub(super) processes: Vec<LabProcess>,
    /// Each role's `l2tpkit` arguments and namespace, to start it again (`Lab::restart`).
    pub(super) roles: BTreeMap<String, RoleStart>,
}

impl Lab {
    /// Builds the topology, starts the supervisor and the captures, runs [`start_roles`]. On any
    /// error (and on SIGINT/SIGTERM once [`sys::install_interrupt_handler`] is in place, seen as
    /// [`sys::Interrupted`]) whatever was made is removed before this returns.
    pub fn up(spec: &LabSpec) -> anyhow::Result<Lab> {
        preflight()?;
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

    pub fn prefix(&self) -> &str {
        &self.plan.prefix
    }

    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    pub fn state_file(&self) -> &Path {
        self.state.path()
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The namespace of the first node with `role`.
    pub fn namespace(&self, role: NodeKind) -> Option<&str> {
        self.plan.node(role).map(|n| n.namespace.as_str())
    }

    pub fn processes(&self) -> Vec<LabProcess> {
        self.lock().processes.clone()
    }

    pub fn supervisor_pid(&self) -> Option<u32> {
        self.lock().supervisor.as_ref().map(Supervisor::pid)
    }

    /// One UDP round trip from `from` in `from_ns` to `to` in `to_ns` (see [`super::echo`]).
    pub fn udp_check(
        &self,
        from_ns: &str,
        from: Ipv4Addr,
        to_ns: &str,
        to: SocketAddrV4,
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        super::echo::udp_check(&self.binary, from_ns, from, to_ns, to, timeout)
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not stop the cleanup.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}
