//! Runners for the forwarding roles: the master (and, with the NAT, FIG 2's middle box), the
//! master that claims its addresses or stands by, the endpoint with its reports, and its
//! takeover of the master.
//!
//! One file per role, on one loop helper ([`event_loop`]: status file, deadline, control
//! socket, Ctrl-C and stop, pcap). Both forwarding roles read their public socket in recvmmsg
//! batches into buffers with room in front, write the IPv4/UDP header there as the initiator
//! sent it, let the sans-IO node ([`crate::master::Master`], [`crate::nat::Nat`]) rewrite the
//! packet in place, and send each batch onto the LAN in one sendmmsg through a raw IP_HDRINCL
//! socket, so the initiator's source address survives ([`batch`]).

use std::io;
use std::net::SocketAddrV4;
use std::path::PathBuf;

use tokio::net::UdpSocket;

use crate::claim::ClaimError;

mod agent;
mod batch;
mod endpoint;
mod event_loop;
mod ipv4;
mod master;
mod nat;
mod neighbours;
mod ring;
mod takeover;

pub use agent::{serve_agent, AgentSetup};
pub use endpoint::{serve_endpoint, EndpointError, EndpointOutcome, EndpointSetup, TakeoverSetup};
pub use event_loop::ServeOptions;
pub use master::{serve_master, MasterSetup};
pub use nat::{serve_nat, NatIo, NatSetup, NatStatus};
pub use takeover::{serve_master_claiming, serve_takeover};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding UDP {addr}: {source}")]
    Bind {
        addr: SocketAddrV4,
        source: io::Error,
    },
    #[error("raw socket (needs root / CAP_NET_RAW): {0}")]
    Raw(io::Error),
    #[error("socket: {0}")]
    Socket(io::Error),
    #[error("pcap: {0}")]
    Pcap(#[from] l2tp::capture::CaptureError),
    #[error("writing status file {path}: {source}")]
    Status { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("claiming the master's addresses: {0}")]
    Claim(#[from] ClaimError),
}

/// A UDP socket on `addr` with 8 MB buffers; `reuse_addr` lets it sit beside a socket on
/// 0.0.0.0 of the same port (an endpoint's, when it takes the master over).
fn bind_udp(addr: SocketAddrV4, reuse_addr: bool) -> Result<UdpSocket, ServeError> {
    let socket = netio::udp::udp_socket(addr, reuse_addr)
        .and_then(UdpSocket::from_std)
        .map_err(|source| ServeError::Bind { addr, source })?;
    netio::runner::grow_buffers(&socket);
    Ok(socket)
}
