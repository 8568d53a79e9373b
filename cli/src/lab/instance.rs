//! A running lab: [`Lab::up`] builds one, [`Lab::down`] (or dropping it, also while a panic
//! unwinds) removes exactly what its state file lists, [`Lab::detach`] leaves it up for a later
//! `lab down`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::netem::Netem;
use super::plan::{self, NodePlan, Plan, Role, Route, Segment, Topology, PREFIX_LEN};
use super::state::{self, Record, RunState, StateFile, STATE_FILE, STATE_VERSION};
use super::supervisor::Supervisor;
use super::sys;

/// What to build.
#[derive(Debug, Clone)]
pub struct LabSpec {
    pub topology: Topology,
    pub endpoints: usize,
    /// Addresses on the initiator namespace's one interface: 198.18.1.1 ..= 198.18.1.M.
    pub initiators: usize,
    /// Where the state file, logs, captures and `lab.json` go; a fresh directory under
    /// `$TMPDIR/l2tpkit-lab/` by default.
    pub run_dir: Option<PathBuf>,
    /// The `l2tpkit` executable the supervisor (and later the roles) run as; found next to the
    /// current executable by default (also from a test binary in `target/*/deps/`).
    pub binary: Option<PathBuf>,
    /// Capture both bridges with tcpdump.
    pub captures: bool,
    /// Start the cluster's roles ([`start_roles`]); off for tests of the topology alone.
    pub roles: bool,
    /// The endpoints' tunnel secret (they challenge every LAC and accept hidden AVPs).
    pub secret: Option<String>,
    /// Impair the public segment: the lab's own switch ([`super::impair`]) then stands in for
    /// its bridge and writes its capture.
    pub netem: Option<Netem>,
    /// The master's dispatch policy.
    pub policy: reference::master::Policy,
    /// The endpoints' `--max-retransmits` (5 when `None`).
    pub max_retransmits: Option<u32>,
}

impl LabSpec {
    pub fn new(topology: Topology, endpoints: usize) -> LabSpec {
        LabSpec {
            topology,
            endpoints,
            initiators: 1,
            run_dir: None,
            binary: None,
            captures: true,
            roles: true,
            secret: None,
            netem: None,
            policy: reference::master::Policy::LeastLoad,
            max_retransmits: None,
        }
    }
}

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
    pub role: Role,
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

pub struct Lab {
    plan: Plan,
    run_dir: PathBuf,
    state: StateFile,
    binary: PathBuf,
    captures: bool,
    /// The endpoints' tunnel secret.
    secret: Option<String>,
    netem: Option<Netem>,
    policy: reference::master::Policy,
    max_retransmits: Option<u32>,
    inner: Mutex<Inner>,
    /// Dropping an armed lab tears it down.
    armed: bool,
}

struct Inner {
    supervisor: Option<Supervisor>,
    processes: Vec<LabProcess>,
    /// Each role's `l2tpkit` arguments and namespace, to start it again (`Lab::restart`).
    roles: BTreeMap<String, (String, Vec<String>)>,
}

impl Lab {
    /// Builds the topology, starts the supervisor and the captures, runs [`start_roles`]. On any
    /// error (and on SIGINT/SIGTERM once [`sys::install_interrupt_handler`] is in place, seen as
    /// [`sys::Interrupted`]) whatever was made is removed before this returns.
    pub fn up(spec: &LabSpec) -> anyhow::Result<Lab> {
        preflight(spec)?;
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

    fn start_captures(&self) -> anyhow::Result<()> {
        let sw = self.plan.switch_namespace.clone();
        let mut started = Vec::new();
        for (segment, file) in [(Segment::Public, "public.pcap"), (Segment::Lan, "lan.pcap")] {
            if segment == Segment::Public && self.netem.is_some() {
                continue; // The impairing switch writes it: no frame crosses the bridge.
            }
            let bridge = self.plan.bridge(segment).to_string();
            let pcap = self.run_dir.join(file);
            let name = format!("capture-{}", segment_name(segment));
            let log = self.run_dir.join(format!("{name}.log"));
            // --immediate-mode: each packet is handed over on arrival (not per ring block,
            // which a SIGTERM would lose); -U: and flushed, so the file is readable while the
            // lab runs.
            // -Z root: no privilege drop, so the run dir need not be writable by `tcpdump`.
            // Promiscuous (the default) on a bridge: frames forwarded between ports are seen.
            let process = self.spawn_in(
                &name,
                &sw,
                "tcpdump",
                [
                    "-i",
                    &bridge,
                    "-w",
                    &pcap.display().to_string(),
                    "--immediate-mode",
                    "-U",
                    "-Z",
                    "root",
                    "-n",
                    // A setup burst of hundreds of tunnels overflows tcpdump's default 2 MB
                    // kernel buffer (a third of the packets dropped at 300 tunnels).
                    "-B",
                    "65536",
                    "-s",
                    "2048",
                    "udp",
                ],
                &log,
            )?;
            started.push(process);
            sys::step()?;
        }
        for process in &started {
            self.wait_for_log(process, "listening on", Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// Starts the public segment's impairing switch over every public veth end in the switch
    /// namespace (none of which is then on the public bridge); it writes `public.pcap` and
    /// `impair-status.json`. Listed in the state file as a `netem` line, then as a process.
    fn start_impairer(&self) -> anyhow::Result<()> {
        let Some(netem) = self.netem else {
            return Ok(());
        };
        let ports: Vec<String> = self
            .plan
            .nodes
            .iter()
            .flat_map(|n| &n.interfaces)
            .filter(|i| i.segment == Segment::Public)
            .map(|i| i.switch_port.clone())
            .collect();
        self.state.append(&Record::Netem {
            spec: netem.to_string(),
            ports: ports.clone(),
        })?;
        let mut args = vec![
            "lab".to_string(),
            "impair".to_string(),
            format!("--netem={netem}"),
            format!(
                "--status={}",
                self.run_dir.join("impair-status.json").display()
            ),
        ];
        if self.captures {
            args.push(format!(
                "--pcap={}",
                self.run_dir.join("public.pcap").display()
            ));
        }
        args.extend(ports);
        let sw = self.plan.switch_namespace.clone();
        let process = self.spawn_l2tpkit(IMPAIRER, &sw, args)?;
        sys::step()?;
        self.wait_for_log(&process, "listening on", Duration::from_secs(10))
    }

    /// Stops what captures the two segments (tcpdump, or the impairing switch on the public
    /// side), so that the capture files are complete. The lab cannot carry traffic afterwards.
    pub fn stop_captures(&self) -> anyhow::Result<()> {
        let running: Vec<String> = self.processes().into_iter().map(|p| p.name).collect();
        for name in ["capture-public", IMPAIRER, "capture-lan"] {
            if running.iter().any(|r| r == name) {
                self.stop(name)?;
            }
        }
        Ok(())
    }

    /// Starts `program args…` inside `namespace` (via `ip netns exec`, in its own process
    /// group) as a child of the lab's supervisor, with stdout and stderr appended to `log`.
    /// Recorded in the state file before it starts (the supervisor adds its PID); stopped by
    /// PID when the lab goes down. `name` is unique within the lab.
    pub fn spawn_in<S: Into<String>>(
        &self,
        name: &str,
        namespace: &str,
        program: &str,
        args: impl IntoIterator<Item = S>,
        log: &Path,
    ) -> anyhow::Result<LabProcess> {
        let args: Vec<String> = args.into_iter().map(Into::into).collect();
        self.state.append(&Record::Process {
            name: name.into(),
            namespace: Some(namespace.into()),
            program: program.into(),
            args: args.clone(),
            log: log.to_path_buf(),
        })?;
        let mut inner = self.lock();
        let supervisor = inner
            .supervisor
            .as_mut()
            .context("the lab has no supervisor (detached or down)")?;
        let (pid, start_time) = supervisor
            .spawn(name, Some(namespace), program, &args, log)
            .with_context(|| format!("starting {name} in {namespace}"))?;
        let process = LabProcess {
            name: name.into(),
            namespace: Some(namespace.into()),
            pid,
            start_time,
            log: log.to_path_buf(),
        };
        inner.processes.push(process.clone());
        Ok(process)
    }

    /// [`Lab::spawn_in`] for `l2tpkit` itself, logging to `<run-dir>/<name>.log`: one call
    /// per role. The arguments are kept for [`Lab::restart`].
    pub fn spawn_l2tpkit<S: Into<String>>(
        &self,
        name: &str,
        namespace: &str,
        args: impl IntoIterator<Item = S>,
    ) -> anyhow::Result<LabProcess> {
        let args: Vec<String> = args.into_iter().map(Into::into).collect();
        self.lock()
            .roles
            .insert(name.to_string(), (namespace.to_string(), args.clone()));
        let program = self.binary.display().to_string();
        let log = self.run_dir.join(format!("{name}.log"));
        self.spawn_in(name, namespace, &program, args, &log)
    }

    /// Waits until `process`'s log holds `needle` (a readiness line); fails at once when the
    /// process exits first, quoting the end of its log.
    pub fn wait_for_log(
        &self,
        process: &LabProcess,
        needle: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.wait_for_log_from(process, &[needle], 0, timeout)
            .map(drop)
    }

    /// As [`Lab::wait_for_log`], for any of `needles`, in the log from byte `from` on (a role
    /// started again appends to the log of its first life); the needle found.
    pub fn wait_for_log_from<'n>(
        &self,
        process: &LabProcess,
        needles: &[&'n str],
        from: usize,
        timeout: Duration,
    ) -> anyhow::Result<&'n str> {
        let needle = needles
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let deadline = Instant::now() + timeout;
        loop {
            let all = std::fs::read(&process.log).unwrap_or_default();
            let text = String::from_utf8_lossy(all.get(from..).unwrap_or_default());
            if let Some(found) = needles.iter().find(|n| text.contains(**n)) {
                return Ok(found);
            }
            let tail = || text.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
            if !sys::is_running(process.pid, process.start_time) {
                anyhow::bail!(
                    "{} (pid {}) exited before logging {needle}: {}",
                    process.name,
                    process.pid,
                    tail()
                );
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "{} (pid {}) did not log {needle} within {timeout:?}: {}",
                    process.name,
                    process.pid,
                    tail()
                );
            }
            sys::checkpoint()?;
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops one process by name (SIGTERM, up to `sys::TERM_GRACE` (8 s), SIGKILL); its exit status.
    pub fn stop(&self, name: &str) -> anyhow::Result<String> {
        let mut inner = self.lock();
        let supervisor = inner
            .supervisor
            .as_mut()
            .context("the lab has no supervisor (detached or down)")?;
        let status = supervisor.stop(name)?;
        inner.processes.retain(|p| p.name != name);
        Ok(status)
    }

    /// Kills one process at once (SIGKILL): the lab's way to make a role die. The acting
    /// master (the master, or an endpoint that took over) dies for the network too: see
    /// [`kill_links_if_master`].
    pub fn kill(&self, name: &str) -> anyhow::Result<String> {
        let status = {
            let mut inner = self.lock();
            let supervisor = inner
                .supervisor
                .as_mut()
                .context("the lab has no supervisor (detached or down)")?;
            let status = supervisor.kill(name)?;
            inner.processes.retain(|p| p.name != name);
            status
        };
        kill_links_if_master(&self.plan, name)?;
        Ok(status)
    }

    /// Starts a role that was killed or stopped again, with the arguments of its first start;
    /// returns once it is ready. Only the master for now: its links come up again (without the
    /// addresses its first life claimed) and, in FIG 4, it probes for its addresses first, so
    /// after a takeover it stands by instead of fighting (the readiness line says which).
    pub fn restart(&self, name: &str) -> anyhow::Result<LabProcess> {
        if name != MASTER {
            anyhow::bail!("restart {name:?}: only the master can be restarted");
        }
        if self.lock().processes.iter().any(|p| p.name == name) {
            anyhow::bail!("restart {name}: it still runs (kill it first)");
        }
        let (namespace, args) = self
            .lock()
            .roles
            .get(name)
            .cloned()
            .with_context(|| format!("restart {name}: it was never started"))?;
        let node = self
            .plan
            .node(Role::Master)
            .context("the plan has no master")?;
        let lines: Vec<String> = node
            .interfaces
            .iter()
            .map(|i| format!("link set {} up", i.name))
            .collect();
        sys::ip_batch(&node.namespace, &lines, false)?;
        let log = self.run_dir.join(format!("{name}.log"));
        let from = std::fs::metadata(&log).map_or(0, |m| m.len() as usize);
        let process = self.spawn_l2tpkit(name, &namespace, args)?;
        self.wait_for_log_from(
            &process,
            &["listening on", "standing by"],
            from,
            Duration::from_secs(10),
        )?;
        Ok(process)
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
    pub fn namespace(&self, role: Role) -> Option<&str> {
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
            .node(Role::Initiator)
            .expect("every plan has initiators");
        let cm = plan.node(Role::Master).expect("every plan has a master");
        let nat = plan.node(Role::Nat);
        let initiators = ti.interfaces[0].addresses.clone();
        let ipv6 = Path::new("/proc/sys/net/ipv6").exists();
        let mut namespaces = vec![NamespaceDescription {
            name: plan.switch_namespace.clone(),
            role: Role::Switch,
            interfaces: Vec::new(),
            routes: Vec::new(),
            sysctls: plan::namespace_sysctls(ipv6).into_iter().collect(),
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
                plan.endpoints()
                    .filter(|_| plan.topology == Topology::Fig4)
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
        }
    }

    /// Removes the lab now; what was removed, or an error naming what could not be.
    pub fn down(mut self) -> anyhow::Result<DownReport> {
        self.armed = false;
        let report = self.teardown_now();
        if !report.problems.is_empty() {
            anyhow::bail!(
                "lab {}: could not remove everything: {}",
                report.prefix,
                report.problems.join("; ")
            );
        }
        Ok(report)
    }

    /// Leaves the lab up after this handle is gone: the supervisor keeps its processes running
    /// until `l2tpkit lab down`. What `lab up` does before it returns.
    pub fn detach(mut self) -> anyhow::Result<LabDescription> {
        let description = self.description();
        {
            let mut inner = self.lock();
            if let Some(supervisor) = inner.supervisor.as_mut() {
                supervisor.detach()?;
            }
            // Dropping the handle neither kills nor waits: the supervisor is on its own now.
            inner.supervisor = None;
        }
        self.state.append(&Record::Detached {})?;
        self.armed = false;
        Ok(description)
    }

    fn teardown_now(&mut self) -> DownReport {
        let supervisor = self.lock().supervisor.take();
        let run = match self.state.read() {
            Ok(run) => run,
            // The state file is gone (someone removed the run dir): fall back on what this
            // process knows, which is everything but a half-started process.
            Err(_) => self.synthetic_state(),
        };
        teardown(&run, supervisor)
    }

    fn synthetic_state(&self) -> RunState {
        let mut records = vec![Record::Run {
            version: STATE_VERSION,
            prefix: self.plan.prefix.clone(),
            topology: self.plan.topology,
            run_dir: self.run_dir.clone(),
            created_unix_ms: 0,
            owner_pid: std::process::id(),
            owner_start_time: 0,
        }];
        records.extend(
            self.plan
                .namespaces()
                .into_iter()
                .map(|name| Record::Netns { name }),
        );
        for p in &self.lock().processes {
            records.push(Record::Process {
                name: p.name.clone(),
                namespace: p.namespace.clone(),
                program: String::new(),
                args: Vec::new(),
                log: p.log.clone(),
            });
            records.push(Record::Pid {
                name: p.name.clone(),
                pid: p.pid,
                start_time: p.start_time,
            });
        }
        RunState {
            path: self.state.path().to_path_buf(),
            records,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not stop the cleanup.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.armed = false;
        let report = self.teardown_now();
        for problem in &report.problems {
            eprintln!("l2tpkit lab {}: cleanup: {problem}", report.prefix);
        }
    }
}

/// Starts the cluster's roles, each as its own `l2tpkit` process in its own namespace: the
/// master on the cluster address (reports on its LAN address), in FIG 2 the NAT, and every
/// endpoint (FIG 2: LAN address only, replies through the NAT; FIG 4: listens on all its
/// addresses and answers from its global one). Endpoints get disjoint Tunnel ID blocks and
/// report every half second with a key made for this lab; it returns once the master has had
/// time to hear from every endpoint.
pub fn start_roles(lab: &Lab) -> anyhow::Result<()> {
    let plan = lab.plan();
    let key = format!("{:016x}", crate::net::os_seed());
    std::fs::write(lab.run_dir().join("report.key"), &key).context("writing report.key")?;
    let ready = Duration::from_secs(10);
    let master = plan.node(Role::Master).context("the plan has no master")?;
    let cluster = address(master, Segment::Public)?;
    let master_lan = address(master, Segment::Lan)?;
    let run = lab.run_dir();
    let fig4 = plan.topology == Topology::Fig4;
    let mut args = vec![
        "master".to_string(),
        format!("--name={MASTER}"),
        format!("--report-key={key}"),
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
    let process = lab.spawn_l2tpkit(MASTER, &master.namespace, args)?;
    lab.wait_for_log(&process, "listening on", ready)?;
    if let Some(nat) = plan.node(Role::Nat) {
        let lan_if = nat
            .interface(Segment::Lan)
            .context("the NAT has no LAN interface")?;
        let process = lab.spawn_l2tpkit(
            "nat",
            &nat.namespace,
            [
                "nat".to_string(),
                format!("--global={}", address(nat, Segment::Public)?),
                format!("--lan={}", address(nat, Segment::Lan)?),
                format!("--lan-if={}", lan_if.name),
                format!("--status={}", run.join("nat-status.json").display()),
                format!("--control={}", run.join("nat.sock").display()),
            ],
        )?;
        lab.wait_for_log(&process, "listening on", ready)?;
    }
    let endpoints: Vec<_> = plan.endpoints().collect();
    // Disjoint Tunnel ID blocks, unique cluster-wide: the master routes by them.
    let block = u16::MAX as usize / (endpoints.len() + 1);
    let mut started = Vec::new();
    for (i, node) in endpoints.iter().enumerate() {
        let lan = address(node, Segment::Lan)?;
        let first = (i + 1) * block;
        let last = first + block - 1;
        let mut args = vec![
            "endpoint".to_string(),
            format!("--name={}", node.short),
            format!("--host-name={}", node.short),
            format!("--master={master_lan}"),
            format!("--report-key={key}"),
            "--report-interval=0.5".to_string(),
            format!("--tunnel-ids={first}-{last}"),
        ];
        if let Some(secret) = &lab.secret {
            args.push(format!("--secret={secret}"));
        }
        if let Some(n) = lab.max_retransmits {
            args.push(format!("--max-retransmits={n}"));
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
        started.push(lab.spawn_l2tpkit(&node.short, &node.namespace, args)?);
    }
    for process in &started {
        lab.wait_for_log(process, "listening on", ready)?;
    }
    // Two report intervals: every endpoint is in service at the master before anyone dials.
    std::thread::sleep(Duration::from_millis(1100));
    Ok(())
}

/// The master's process name in a lab.
pub const MASTER: &str = "master";

/// A killed master dies for the network too: its links go down, so that the kernel of its
/// namespace stops answering ARP for the cluster address (an endpoint's probe must find it
/// free), and in FIG 4 the addresses it claimed go (a claim-mode master starting again must not
/// find its kernel answering for them).
pub fn kill_master_links(plan: &Plan) -> anyhow::Result<()> {
    let node = plan.node(Role::Master).context("the plan has no master")?;
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

/// The process name of the public segment's impairing switch.
const IMPAIRER: &str = "impair-public";

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

fn address(node: &crate::lab::plan::NodePlan, segment: Segment) -> anyhow::Result<Ipv4Addr> {
    node.interface(segment)
        .and_then(|i| i.addresses.first().copied())
        .with_context(|| format!("{} has no {segment:?} address", node.short))
}

fn segment_name(segment: Segment) -> &'static str {
    match segment {
        Segment::Public => "public",
        Segment::Lan => "lan",
    }
}

fn preflight(spec: &LabSpec) -> anyhow::Result<()> {
    if !sys::is_root() {
        anyhow::bail!("the lab needs root (network namespaces, veths, bridges)");
    }
    if !sys::have("ip", "-V") {
        anyhow::bail!("`ip` (iproute2) is not installed");
    }
    if spec.captures && !sys::have("tcpdump", "--version") {
        anyhow::bail!("`tcpdump` is not installed (it captures both bridges)");
    }
    Ok(())
}

/// `l2tpkit` next to the current executable: the binary itself, or a test binary in
/// `target/<profile>/deps/` whose `target/<profile>/l2tpkit` was built alongside.
pub fn default_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the current executable")?;
    if exe.file_name().is_some_and(|n| n == "l2tpkit") {
        return Ok(exe);
    }
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join("l2tpkit");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    anyhow::bail!(
        "no l2tpkit binary next to {}: set LabSpec::binary",
        exe.display()
    )
}

/// Removes what `run` lists: processes (the supervisor first, which stops and reaps its
/// children; then any listed process still running, by PID), links, namespaces. Idempotent:
/// objects that do not exist are skipped. Appends a `down` line once nothing is left.
pub fn teardown(run: &RunState, supervisor: Option<Supervisor>) -> DownReport {
    let mut report = DownReport {
        prefix: run.prefix().to_string(),
        run_dir: run.run_dir(),
        ..DownReport::default()
    };
    let processes = run.processes();
    let running: Vec<_> = processes
        .iter()
        .filter_map(|p| {
            let (pid, start) = p.pid?;
            sys::is_running(pid, start).then_some((p, pid, start))
        })
        .collect();
    let owned = supervisor.is_some();
    if let Some(supervisor) = supervisor {
        if let Err(e) = supervisor.shutdown() {
            report.problems.push(e.to_string());
        }
    } else if let Some((pid, start)) = run.supervisor() {
        if let Err(e) = sys::terminate_foreign(pid, start) {
            report.problems.push(format!("supervisor: {e}"));
        }
    }
    for (p, pid, start) in running.iter().rev() {
        if let Err(e) = sys::terminate_foreign(*pid, *start) {
            report.problems.push(format!("{} (pid {pid}): {e}", p.name));
        }
    }
    for (p, pid, start) in &running {
        if sys::is_running(*pid, *start) {
            report
                .problems
                .push(format!("process {} (pid {pid}) still runs", p.name));
        } else {
            let reaped = if p.name == state::SUPERVISOR && !owned {
                // Not our child: its parent (PID 1 after `lab up` returned) reaps it.
                ", reaped by its parent"
            } else {
                ""
            };
            report
                .removed
                .push(format!("process {} (pid {pid}{reaped})", p.name));
        }
    }

    let listed_ns = run.namespaces();
    let existing: BTreeSet<String> = match sys::netns_list() {
        Ok(list) => list.into_iter().collect(),
        Err(e) => {
            report.problems.push(e.to_string());
            return report;
        }
    };
    let mut by_namespace: BTreeMap<String, Vec<(String, Option<String>)>> = BTreeMap::new();
    for (ns, name, peer) in run.links() {
        by_namespace.entry(ns).or_default().push((name, peer));
    }
    for (ns, links) in &by_namespace {
        if !existing.contains(ns) {
            continue;
        }
        let present: BTreeSet<String> = match sys::link_names(ns) {
            Ok(names) => names.into_iter().collect(),
            Err(e) => {
                report.problems.push(e.to_string());
                continue;
            }
        };
        let doomed: Vec<&(String, Option<String>)> = links
            .iter()
            .rev()
            .filter(|(name, _)| present.contains(name))
            .collect();
        if doomed.is_empty() {
            continue;
        }
        // Deleting one end of a veth deletes the pair, in the same call.
        let lines: Vec<String> = doomed
            .iter()
            .map(|(name, _)| format!("link del {name}"))
            .collect();
        if let Err(e) = sys::ip_batch(ns, &lines, true) {
            report.problems.push(e.to_string());
        }
        let after: BTreeSet<String> = sys::link_names(ns)
            .map(|n| n.into_iter().collect())
            .unwrap_or_default();
        for (name, peer) in doomed {
            if after.contains(name) {
                report.problems.push(format!("link {name} in {ns} remains"));
            } else {
                report.removed.push(match peer {
                    Some(peer) => format!("veth {name} ({ns}) <-> {peer}"),
                    None => format!("link {name} ({ns})"),
                });
            }
        }
    }
    for ns in listed_ns.iter().rev() {
        if !existing.contains(ns) {
            continue;
        }
        match sys::ip(&["netns", "del", ns]) {
            Ok(_) => report.removed.push(format!("netns {ns}")),
            Err(e) => report.problems.push(e.to_string()),
        }
    }
    // `ip netns del` is synchronous for the name; check it, bounded.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<String> = sys::netns_list()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| listed_ns.contains(n))
            .collect();
        if left.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            report
                .problems
                .push(format!("namespaces remain: {}", left.join(", ")));
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if report.problems.is_empty() && !run.is_down() {
        let state = StateFile::open(&run.path);
        if let Err(e) = state.append(&Record::Down {
            removed: report.removed.len(),
        }) {
            report.problems.push(e.to_string());
        }
    }
    if report.problems.is_empty() {
        state::forget_pointer(run.prefix(), &run.run_dir());
    }
    report
}
