//! The initiator side and the judges: simulated LACs (`lac`) and the timeline checker
//! (`sequence`); probes come with later issues.

#![forbid(unsafe_code)]

pub mod lac;
pub mod live;
pub mod probe;
pub mod sequence;
pub mod xml;
