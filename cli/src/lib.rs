//! The commands of the `l2tpkit` binary, as a library so that the end-to-end tests in `tests/`
//! drive the same code paths in process.

#![forbid(unsafe_code)]

pub mod agent;
pub mod args;
pub mod ctl;
pub mod decode;
pub mod endpoint;
pub mod lab;
pub mod lac;
pub mod master;
pub mod merge;
pub mod nat;
/// Public for `l2tpkit-bench`, whose NAT load generator opens tunnels as `lac` does.
pub mod net;
pub mod probe;
pub mod report;
pub mod secret;
pub mod tui;
pub mod verify;
