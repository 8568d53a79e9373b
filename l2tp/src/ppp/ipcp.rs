//! IPCP (RFC 1332) with the DNS options of RFC 1877, on the automaton.
//!
//! ```text
//! option            type  length  value
//! IP-Address          3     6     IPv4 address (0.0.0.0: "give me one")
//! Primary-DNS       129     6     IPv4 address
//! Secondary-DNS     131     6     IPv4 address
//! ```
//! IP-Addresses (1) and IP-Compression-Protocol (2) are deprecated or not done here: rejected
//! like every other option.
//!
//! Two roles. A client asks for 0.0.0.0 and takes the address the server naks with. A server
//! has its own address and one the caller assigned to this peer (the pool lives in the
//! caller): it naks any other request with it, and acks exactly that one.

use std::net::Ipv4Addr;

use super::frame::{self, protocol, push_option};
use super::fsm::{options, Events, Fsm, Judgement, Negotiator, Refusal};
use crate::malformed::BadValue;

#[cfg(test)]
mod tests;

/// IPCP option types.
pub mod option_type {
    pub const IP_ADDRESSES: u8 = 1;
    pub const IP_COMPRESSION_PROTOCOL: u8 = 2;
    pub const IP_ADDRESS: u8 = 3;
    pub const PRIMARY_DNS: u8 = 129;
    pub const SECONDARY_DNS: u8 = 131;
}

/// One IPCP option, typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpcpOption<'a> {
    IpAddress(Ipv4Addr),
    PrimaryDns(Ipv4Addr),
    SecondaryDns(Ipv4Addr),
    Unknown { kind: u8, data: &'a [u8] },
}

impl<'a> IpcpOption<'a> {
    /// Reads an option from its type and value; an address option that is not 4 octets is an
    /// error (offset counted from the option's Type).
    pub fn parse(kind: u8, value: &'a [u8]) -> frame::Result<IpcpOption<'a>> {
        use option_type::*;
        let address = || {
            <[u8; 4]>::try_from(value).map(Ipv4Addr::from).map_err(|_| {
                frame::Error::BadValue(BadValue {
                    field: "IPCP address option",
                    offset: 1,
                    reason: "Length is not 6",
                })
            })
        };
        Ok(match kind {
            IP_ADDRESS => IpcpOption::IpAddress(address()?),
            PRIMARY_DNS => IpcpOption::PrimaryDns(address()?),
            SECONDARY_DNS => IpcpOption::SecondaryDns(address()?),
            kind => IpcpOption::Unknown { kind, data: value },
        })
    }

    pub fn kind(&self) -> u8 {
        match self {
            IpcpOption::IpAddress(_) => option_type::IP_ADDRESS,
            IpcpOption::PrimaryDns(_) => option_type::PRIMARY_DNS,
            IpcpOption::SecondaryDns(_) => option_type::SECONDARY_DNS,
            IpcpOption::Unknown { kind, .. } => *kind,
        }
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        match self {
            IpcpOption::IpAddress(a) | IpcpOption::PrimaryDns(a) | IpcpOption::SecondaryDns(a) => {
                push_option(out, self.kind(), &a.octets())
            }
            IpcpOption::Unknown { kind, data } => push_option(out, *kind, data),
        }
    }

    pub fn buffer_len(&self) -> usize {
        match self {
            IpcpOption::Unknown { data, .. } => 2 + data.len(),
            _ => 6,
        }
    }
}

/// Which side of the address assignment we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpcpRole {
    /// The subscriber: asks 0.0.0.0 (and 0.0.0.0 DNS servers when `request_dns`) and takes
    /// what the server naks with.
    Client { request_dns: bool },
    /// The network side: its own address (requested when given), the address assigned to this
    /// peer, and the DNS servers it hands out when asked.
    Server {
        local: Option<Ipv4Addr>,
        assigned: Ipv4Addr,
        dns: [Option<Ipv4Addr>; 2],
    },
}

/// What IPCP agreed; read it once Opened ([`Fsm::<Ipcp>::negotiated`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpcpNegotiated {
    /// Our address, as the peer acked it.
    pub local: Option<Ipv4Addr>,
    /// The peer's address, as we acked it.
    pub peer: Option<Ipv4Addr>,
    /// DNS servers: those the server gave us (client), or those we gave the peer (server).
    pub dns: [Option<Ipv4Addr>; 2],
}

/// The IPCP negotiator.
#[derive(Debug, Clone)]
pub struct Ipcp {
    role: IpcpRole,
    /// Our request: our address (0.0.0.0 asks for one) and DNS servers.
    address: Option<Ipv4Addr>,
    dns: [Option<Ipv4Addr>; 2],
    /// The peer's last request, as judged.
    peer_address: Option<Ipv4Addr>,
    peer_dns: [Option<Ipv4Addr>; 2],
}

const DNS_TYPES: [u8; 2] = [option_type::PRIMARY_DNS, option_type::SECONDARY_DNS];

impl Ipcp {
    pub fn new(role: IpcpRole) -> Ipcp {
        let mut ipcp = Ipcp {
            role,
            address: None,
            dns: [None; 2],
            peer_address: None,
            peer_dns: [None; 2],
        };
        ipcp.reset();
        ipcp
    }

    pub fn client(request_dns: bool) -> Ipcp {
        Ipcp::new(IpcpRole::Client { request_dns })
    }

    pub fn server(local: Option<Ipv4Addr>, assigned: Ipv4Addr, dns: [Option<Ipv4Addr>; 2]) -> Ipcp {
        Ipcp::new(IpcpRole::Server {
            local,
            assigned,
            dns,
        })
    }

    pub fn role(&self) -> &IpcpRole {
        &self.role
    }

    /// What both requests hold; meaningful once the automaton is Opened.
    pub fn negotiated(&self) -> IpcpNegotiated {
        let dns = match self.role {
            IpcpRole::Client { .. } => self.dns.map(|d| d.filter(|a| !a.is_unspecified())),
            IpcpRole::Server { .. } => self.peer_dns,
        };
        IpcpNegotiated {
            local: self.address.filter(|a| !a.is_unspecified()),
            peer: self.peer_address,
            dns,
        }
    }

    fn dns_slot(kind: u8) -> Option<usize> {
        DNS_TYPES.iter().position(|&t| t == kind)
    }
}

impl Negotiator for Ipcp {
    const PROTOCOL: u16 = protocol::IPCP;

    fn reset(&mut self) {
        let unspecified = Some(Ipv4Addr::UNSPECIFIED);
        (self.address, self.dns) = match self.role {
            IpcpRole::Client { request_dns } => {
                (unspecified, [unspecified.filter(|_| request_dns); 2])
            }
            IpcpRole::Server { local, .. } => (local, [None; 2]),
        };
    }

    fn emit_request(&self, out: &mut Vec<u8>) {
        if let Some(address) = self.address {
            IpcpOption::IpAddress(address).emit(out);
        }
        for (kind, dns) in DNS_TYPES.into_iter().zip(self.dns) {
            if let Some(dns) = dns {
                push_option(out, kind, &dns.octets());
            }
        }
    }

    fn judge_request(&mut self, data: &[u8], j: &mut Judgement, _events: &mut Events) {
        self.peer_address = None;
        self.peer_dns = [None; 2];
        for (kind, value) in options(data) {
            let option = IpcpOption::parse(kind, value);
            match (self.role, option) {
                // The server's own address: any real one will do.
                (IpcpRole::Client { .. }, Ok(IpcpOption::IpAddress(a))) if !a.is_unspecified() => {
                    self.peer_address = Some(a)
                }
                (IpcpRole::Server { assigned, .. }, Ok(IpcpOption::IpAddress(a))) => {
                    if a == assigned {
                        self.peer_address = Some(a);
                    } else {
                        j.nak(kind, value, &assigned.octets());
                    }
                }
                (
                    IpcpRole::Server { dns, .. },
                    Ok(IpcpOption::PrimaryDns(a) | IpcpOption::SecondaryDns(a)),
                ) => {
                    let slot = Ipcp::dns_slot(kind).unwrap_or(0);
                    match dns.get(slot).copied().flatten() {
                        Some(ours) if ours == a => self.peer_dns[slot] = Some(a),
                        Some(ours) => j.nak(kind, value, &ours.octets()),
                        None => j.reject(kind, value),
                    }
                }
                // A client has no address to give, nor DNS servers; the rest is unknown,
                // deprecated or malformed.
                _ => j.reject(kind, value),
            }
        }
        // A server must hand its address out: it asks a peer that did not ask (RFC 1661
        // §5.3 lets a Nak carry options the request did not).
        if let IpcpRole::Server { assigned, .. } = self.role {
            let asked = options(data).any(|(kind, _)| kind == option_type::IP_ADDRESS);
            if !asked {
                j.hint(option_type::IP_ADDRESS, &assigned.octets());
            }
        }
    }

    fn on_nak(&mut self, data: &[u8], treat_as_reject: bool) -> Result<(), Refusal> {
        let client = matches!(self.role, IpcpRole::Client { .. });
        for (kind, value) in options(data) {
            let Ok(option) = IpcpOption::parse(kind, value) else {
                continue;
            };
            match option {
                // Taking the address the server gives is what converges, so a client takes it
                // even past Max-Failure.
                IpcpOption::IpAddress(a) if client && !a.is_unspecified() => self.address = Some(a),
                // A server keeps its own address; past Max-Failure it stops sending it.
                IpcpOption::IpAddress(_) if treat_as_reject && !client => self.address = None,
                IpcpOption::PrimaryDns(a) | IpcpOption::SecondaryDns(a) => {
                    let slot = Ipcp::dns_slot(kind).unwrap_or(0);
                    if let Some(ours) = self.dns.get_mut(slot).filter(|d| d.is_some()) {
                        *ours = (!treat_as_reject && !a.is_unspecified()).then_some(a);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn on_reject(&mut self, data: &[u8]) -> Result<(), Refusal> {
        for (kind, _) in options(data) {
            match kind {
                option_type::IP_ADDRESS if matches!(self.role, IpcpRole::Client { .. }) => {
                    return Err(Refusal {
                        option: kind,
                        reason: "the peer will not give us an IP address",
                    })
                }
                option_type::IP_ADDRESS => self.address = None,
                kind => {
                    if let Some(slot) = Ipcp::dns_slot(kind) {
                        self.dns[slot] = None;
                    }
                }
            }
        }
        Ok(())
    }
}

impl Fsm<Ipcp> {
    /// What IPCP agreed, once Opened.
    pub fn negotiated(&self) -> Option<IpcpNegotiated> {
        self.is_opened().then(|| self.negotiator().negotiated())
    }
}
