//! A running lab: what it holds and what it tells. The rest of `Lab` lives in the rooms beside
//! this one: [`super::up`] (`Lab::up` builds one), [`super::processes`] (starting, waiting for
//! and stopping processes), [`super::describe`] (`lab.json`), [`super::teardown`]
//! (`Lab::down`, or dropping it, also while a panic unwinds, removes exactly what its state file
//! lists; `Lab::detach` leaves it up for a later `lab down`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::description::LabProcess;
use super::netem::Netem;
use super::plan::{NodeKind, Plan};
use super::start::RoleStart;
use super::state::StateFile;
use super::supervisor::Supervisor;

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
    pub(super) ppp: bool,
    pub(super) metrics: bool,
    pub(super) endpoint_kind: super::spec::EndpointKind,
    pub(super) shared_tunnel_ids: bool,
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

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not stop the cleanup.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}
