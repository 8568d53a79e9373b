//! PPP inside L2TP sessions (RFC 1661), sans-IO like [`crate::conn`].
//!
//! - [`frame`]: the frame as an L2TP data message carries it (address/control, protocol) and
//!   the control packet every negotiating protocol shares (code, identifier, length, options).
//! - [`echo`]: LCP Echo-Request/-Reply, what a session needs to stay alive.
//! - [`pap`], [`chap`]: authentication (RFC 1334 PAP, RFC 1994 CHAP with MD5), each as the
//!   peer and as the authenticator; [`auth`] holds what they share.
//! - [`describe`]: a read-only summary of any PPP frame, for `decode` and logs.
//! - [`fsm`]: the RFC 1661 §4 option-negotiation automaton, written once.
//! - [`lcp`], [`ipcp`], [`ipv6cp`]: LCP, IPCP (with RFC 1877 DNS) and IPv6CP on top of it.

pub mod auth;
pub mod chap;
pub mod describe;
pub mod echo;
pub mod frame;
pub mod fsm;
pub mod ipcp;
pub mod ipv6cp;
pub mod lcp;
pub mod pap;
pub mod session;
pub mod table;

pub use echo::LcpEcho;
pub use frame::{protocol, Frame, FrameRepr, Options, Packet, PacketRepr};
pub use fsm::{Fsm, FsmConfig, FsmEvent, Negotiator, State};
pub use ipcp::Ipcp;
pub use ipv6cp::Ipv6cp;
pub use lcp::Lcp;

/// LCP's PPP protocol number.
pub const PROTOCOL_LCP: u16 = protocol::LCP;
