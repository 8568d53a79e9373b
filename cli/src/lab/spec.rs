//! What a lab is to be ([`LabSpec`]) and what must be on the machine before one is built.

use std::path::PathBuf;

use anyhow::Context;

use super::netem::Netem;
use super::plan::Topology;
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
    /// Capture both bridges (`l2tpkit lab capture`: our own packet socket and pcap writer).
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
    /// Every endpoint is a PPP server: CHAP against the lab's one user ([`super::roles::
    /// LAB_USER`]), IPCP addresses from its own slice of 198.19.128.0/17. Off for runs whose
    /// LAC does no PPP (the endpoint would end their calls when LCP times out).
    pub ppp: bool,
    /// Every role serves `--metrics` on its LAN address (the NAT's and the master's too),
    /// port [`super::roles::METRICS_PORT`], and `RUN_DIR/prometheus.yml` lists them.
    pub metrics: bool,
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
            ppp: false,
            metrics: false,
        }
    }
}

pub(super) fn preflight() -> anyhow::Result<()> {
    if !sys::is_root() {
        anyhow::bail!("the lab needs root (network namespaces, veths, bridges)");
    }
    if !sys::have("ip", "-V") {
        anyhow::bail!("`ip` (iproute2) is not installed");
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
