//! (being written)

use crate::probe::Probe;

pub const PROBES: &[Probe] = &[];
