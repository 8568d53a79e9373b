//! The sockets of l2tpkit, and the only crate of the workspace with `unsafe` code.
//!
//! The protocol core (`l2tp`) never opens a socket; the servers (`reference`) and the probes
//! (`probes`) do it through here:
//!
//! - [`runner`]: the tokio runner that drives an `l2tp::conn::tunnels::TunnelSet` on one UDP
//!   socket;
//! - [`udp`]: UDP sockets, raw IPv4 (IP_HDRINCL) sends, sendmmsg / recvmmsg batches;
//! - [`tap`]: AF_PACKET sockets on one interface (IPv4 tap, frame sender, switch port);
//! - [`ring`]: the memory-mapped TPACKET_V2 receive ring;
//! - [`sniff`]: a read-only sniffer of one UDP port, both ways, on one interface or all;
//! - [`filter`]: classic BPF programs and their attachment;
//! - [`alloc`]: a counting global allocator for the memory benchmarks;
//! - [`arp`], [`iface`], [`poll`], [`netns`], and [`reactor`] (packet sockets on tokio).
//!
//! Sockets are made and configured through `socket2` and `nix`. What is left by hand (the
//! ring's mapping, the mmsg batches, one `sockaddr_ll`, poll over a caller's array, tokio
//! registration) sits in small blocks, each with a `// SAFETY:` line.

pub mod alloc;
pub mod arp;
pub mod filter;
pub mod iface;
mod mmsg;
pub mod netns;
mod packet;
pub mod poll;
pub mod reactor;
pub mod ring;
pub mod runner;
pub mod sniff;
pub mod tap;
pub mod udp;

pub use mmsg::BATCH;
