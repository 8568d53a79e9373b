//! The L2TPv2 protocol core of l2tpkit: wire codec, captures, and (sans-IO) protocol engines.
//! Nothing here opens a socket, reads a clock or spawns a task.

#![forbid(unsafe_code)]

pub mod capture;
pub mod conn;
pub mod ip;
pub mod malformed;
pub mod ppp;
pub mod seed;
pub mod sim;
pub mod time;
pub mod vec_map;
pub mod wire;
