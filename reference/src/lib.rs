//! Reference servers for the patent's cluster.
//!
//! The protocol lives in `l2tp` (sans-IO) and the sockets in `netio`; this crate adds the
//! servers' nodes, clocks and policy.

#![forbid(unsafe_code)]

pub mod agent;
pub mod claim;
pub mod cluster;
pub mod control;
pub mod endpoint;
pub mod master;
pub mod metrics;
pub mod nat;
pub mod serve;
pub mod takeover;
mod throttle;
