//! Taking a lab down: exactly what its state file lists, also from another process
//! (`l2tpkit lab down`) and while a panic unwinds.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::description::{DownReport, LabDescription};
use super::instance::Lab;
use super::state::{self, Record, RunState, StateFile, STATE_VERSION};
use super::supervisor::Supervisor;
use super::sys;

impl Lab {
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
