//! `l2tpkit-bench`: the throughput figures of BENCHMARKS.md, measured on the lab's library
//! API. Benchmarks, not tests: nothing here asserts a speed. Kept out of `l2tpkit` so that the
//! shipped binary carries no root-only measuring rig.

#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context;

pub mod decode;
pub mod nat;
pub mod setups;
pub mod subscribers;
pub mod traffic;

/// The `l2tpkit` binary the lab runs its roles with: the one built next to this binary.
pub fn roles_binary() -> anyhow::Result<PathBuf> {
    l2tpkit::lab::default_binary().context(
        "the lab runs its roles with `l2tpkit`: build it next to this binary \
         (cargo build --release -p l2tpkit -p l2tpkit-bench)",
    )
}

/// A FIG 2 lab for a benchmark: roles started, no captures (capturing both bridges would cost
/// as much CPU as what is measured). `None` when Ctrl-C came while it was being made.
pub fn fig2_lab(
    bench: &str,
    endpoints: usize,
    initiators: usize,
    shared_tunnel_ids: bool,
    run_dir: Option<PathBuf>,
) -> anyhow::Result<Option<l2tpkit::lab::Lab>> {
    use l2tpkit::lab::{sys, Lab, LabSpec, Topology};
    let spec = LabSpec {
        topology: Topology::Fig2,
        endpoints,
        initiators,
        run_dir,
        binary: Some(roles_binary()?),
        captures: false,
        roles: true,
        secret: None,
        shared_tunnel_ids,
        ..LabSpec::new(Topology::Fig2, endpoints)
    };
    match Lab::up(&spec) {
        Ok(lab) => Ok(Some(lab)),
        Err(e) if e.is::<sys::Interrupted>() => {
            eprintln!("l2tpkit-bench {bench}: interrupted");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Runs `drive` on the lab, then removes the lab whatever happened. `None` when Ctrl-C ended
/// the run (said on stderr); an error of the run wins over one of the removal.
pub fn drive_then_down<T>(
    bench: &str,
    lab: l2tpkit::lab::Lab,
    drive: impl FnOnce(&l2tpkit::lab::Lab) -> anyhow::Result<T>,
) -> anyhow::Result<Option<T>> {
    let outcome = drive(&lab);
    let down = lab.down();
    match outcome {
        Ok(summary) => {
            down.context("removing the lab")?;
            Ok(Some(summary))
        }
        Err(e) if e.is::<l2tpkit::lab::sys::Interrupted>() => {
            down.context("removing the lab")?;
            eprintln!("l2tpkit-bench {bench}: interrupted; the lab is removed");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// VmRSS of a process in KB, from /proc (None once it is gone).
pub fn vm_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}
