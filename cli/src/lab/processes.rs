//! The processes of a lab: started under its supervisor in a namespace, waited on until they
//! say they are ready, stopped, killed, started again.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::description::LabProcess;
use super::instance::Lab;
use super::plan::{NodeKind, Segment};
use super::roles::kill_links_if_master;
use super::start::MASTER;
use super::start::{Readiness, RoleStart, READY};
use super::state::Record;
use super::sys;

impl Lab {
    /// Captures both bridges (the public one only when no impairing switch stands in for it,
    /// which writes `public.pcap` itself) with `l2tpkit lab capture` in the switch namespace.
    pub(super) fn start_captures(&self) -> anyhow::Result<()> {
        let sw = self.plan.switch_namespace.clone();
        let mut started = Vec::new();
        for (segment, file) in [(Segment::Public, "public.pcap"), (Segment::Lan, "lan.pcap")] {
            if segment == Segment::Public && self.netem.is_some() {
                continue; // The impairing switch writes it: no frame crosses the bridge.
            }
            let name = format!("capture-{}", segment_name(segment));
            let ready = Readiness::StatusFile(self.run_dir.join(format!("{name}-status.json")));
            let Readiness::StatusFile(status) = &ready else {
                unreachable!("made just above");
            };
            let args = vec![
                "lab".to_string(),
                "capture".to_string(),
                format!("--pcap={}", self.run_dir.join(file).display()),
                format!("--status={}", status.display()),
                self.plan.bridge(segment).to_string(),
            ];
            ready.reset();
            started.push((self.spawn_l2tpkit(&name, &sw, args)?, ready));
            sys::step()?;
        }
        for (process, ready) in &started {
            self.wait_ready(process, ready, READY)?;
        }
        Ok(())
    }

    /// Starts the public segment's impairing switch over every public veth end in the switch
    /// namespace (none of which is then on the public bridge); it writes `public.pcap` and
    /// `impair-status.json`. Listed in the state file as a `netem` line, then as a process.
    pub(super) fn start_impairer(&self) -> anyhow::Result<()> {
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
        let status = self.run_dir.join("impair-status.json");
        let mut args = vec![
            "lab".to_string(),
            "impair".to_string(),
            format!("--netem={netem}"),
            format!("--status={}", status.display()),
        ];
        if self.captures {
            args.push(format!(
                "--pcap={}",
                self.run_dir.join("public.pcap").display()
            ));
        }
        args.extend(ports);
        let sw = self.plan.switch_namespace.clone();
        self.start_role(IMPAIRER, &sw, args, Readiness::StatusFile(status))?;
        sys::step()
    }

    /// Stops what captures the two segments (`lab capture`, or the impairing switch on the
    /// public side), so that the capture files are complete. The lab cannot carry traffic afterwards.
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

    /// [`Lab::spawn_in`] for `l2tpkit` itself, logging to `<run-dir>/<name>.log`. The
    /// arguments are kept for [`Lab::restart`].
    pub fn spawn_l2tpkit<S: Into<String>>(
        &self,
        name: &str,
        namespace: &str,
        args: impl IntoIterator<Item = S>,
    ) -> anyhow::Result<LabProcess> {
        self.spawn_role(
            name,
            namespace,
            args.into_iter().map(Into::into).collect(),
            None,
        )
    }

    /// One role of the lab: [`Lab::spawn_l2tpkit`], then [`Lab::wait_ready`] on `ready`.
    pub fn start_role<S: Into<String>>(
        &self,
        name: &str,
        namespace: &str,
        args: impl IntoIterator<Item = S>,
        ready: Readiness,
    ) -> anyhow::Result<LabProcess> {
        let args = args.into_iter().map(Into::into).collect();
        let process = self.spawn_role(name, namespace, args, Some(ready.clone()))?;
        self.wait_ready(&process, &ready, READY)?;
        Ok(process)
    }

    /// Spawns a role without waiting; several then get ready side by side.
    pub(super) fn spawn_role(
        &self,
        name: &str,
        namespace: &str,
        args: Vec<String>,
        ready: Option<Readiness>,
    ) -> anyhow::Result<LabProcess> {
        if let Some(ready) = &ready {
            ready.reset();
        }
        self.lock().roles.insert(
            name.to_string(),
            RoleStart {
                namespace: namespace.to_string(),
                args: args.clone(),
                ready,
            },
        );
        let program = self.binary.display().to_string();
        let log = self.run_dir.join(format!("{name}.log"));
        self.spawn_in(name, namespace, &program, args, &log)
    }

    /// Waits until `process` is ready as `ready` says; fails at once when the process exits
    /// first, or after `timeout`, quoting the end of its log.
    pub fn wait_ready(
        &self,
        process: &LabProcess,
        ready: &Readiness,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if ready.is_ready() {
                return Ok(());
            }
            if !sys::is_running(process.pid, process.start_time) {
                // It may have got ready and ended in between: then it is no failure to wait.
                if ready.is_ready() {
                    return Ok(());
                }
                anyhow::bail!(
                    "{} (pid {}) exited before it would {ready}: {}",
                    process.name,
                    process.pid,
                    log_tail(&process.log)
                );
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "{} (pid {}) did not {ready} within {timeout:?}: {}",
                    process.name,
                    process.pid,
                    log_tail(&process.log)
                );
            }
            sys::checkpoint()?;
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `process`'s log holds `needle`: for programs that are not ours and say
    /// nothing else (the lab's own roles use [`Lab::wait_ready`]).
    pub fn wait_for_log(
        &self,
        process: &LabProcess,
        needle: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = std::fs::read(&process.log).unwrap_or_default();
            if String::from_utf8_lossy(&text).contains(needle) {
                return Ok(());
            }
            let tail = || log_tail(&process.log);
            if !sys::is_running(process.pid, process.start_time) {
                anyhow::bail!(
                    "{} (pid {}) exited before logging {needle:?}: {}",
                    process.name,
                    process.pid,
                    tail()
                );
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "{} (pid {}) did not log {needle:?} within {timeout:?}: {}",
                    process.name,
                    process.pid,
                    tail()
                );
            }
            sys::checkpoint()?;
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops one process by name (SIGTERM, up to `sys::TERM_GRACE` (42 s), SIGKILL); its exit status.
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
    /// after a takeover it stands by instead of fighting (its status says which).
    pub fn restart(&self, name: &str) -> anyhow::Result<LabProcess> {
        if name != MASTER {
            anyhow::bail!("restart {name:?}: only the master can be restarted");
        }
        if self.lock().processes.iter().any(|p| p.name == name) {
            anyhow::bail!("restart {name}: it still runs (kill it first)");
        }
        let start = self
            .lock()
            .roles
            .get(name)
            .cloned()
            .with_context(|| format!("restart {name}: it was never started"))?;
        let node = self
            .plan
            .node(NodeKind::Master)
            .context("the plan has no master")?;
        let lines: Vec<String> = node
            .interfaces
            .iter()
            .map(|i| format!("link set {} up", i.name))
            .collect();
        sys::ip_batch(&node.namespace, &lines, false)?;
        let process = self.spawn_role(name, &start.namespace, start.args, start.ready.clone())?;
        if let Some(ready) = &start.ready {
            self.wait_ready(&process, ready, READY)?;
        }
        Ok(process)
    }
}

/// The process name of the public segment's impairing switch.
const IMPAIRER: &str = "impair-public";

fn segment_name(segment: Segment) -> &'static str {
    match segment {
        Segment::Public => "public",
        Segment::Lan => "lan",
    }
}

/// The last lines of a log, on one line: what a process said before it failed to get ready.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let mut lines: Vec<&str> = text.lines().rev().take(5).collect();
    lines.reverse();
    lines.join(" | ")
}
