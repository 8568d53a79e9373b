//! The initiator side and the judges: simulated LACs (`lac`); probes and the sequence checker
//! come with later issues.

pub mod lac;
