//! `l2tpkit-bench`: the throughput figures of BENCHMARKS.md, measured on the lab's library
//! API. Benchmarks, not tests: nothing here asserts a speed. Kept out of `l2tpkit` so that the
//! shipped binary carries no root-only measuring rig.

#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context;

pub mod decode;
pub mod nat;
pub mod setups;
pub mod traffic;

/// The `l2tpkit` binary the lab runs its roles with: the one built next to this binary.
pub fn roles_binary() -> anyhow::Result<PathBuf> {
    l2tpkit::lab::default_binary().context(
        "the lab runs its roles with `l2tpkit`: build it next to this binary \
         (cargo build --release -p l2tpkit -p l2tpkit-bench)",
    )
}
