//! Reference servers for the patent's cluster, and the tokio runner every role shares.
//!
//! The protocol lives in `l2tp` (sans-IO); this crate only adds sockets, clocks and policy.

pub mod claim;
pub mod cluster;
pub mod control;
pub mod endpoint;
pub mod master;
pub mod nat;
pub mod raw;
pub mod runner;
pub mod serve;
pub mod takeover;
mod throttle;
