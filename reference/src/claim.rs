//! Taking the master's addresses: ARP probes first (RFC 5227), the addresses only if nobody
//! answers, then gratuitous ARP so that every neighbour (initiators, routers, endpoints) sends
//! to the new holder at once.
//!
//! Both ways into the master use this: an endpoint taking over (`crate::takeover`), and a
//! master starting in claim mode (`l2tpkit master --claim-public IF --claim-lan IF`), which is
//! how a master that was killed and comes back finds that an endpoint holds its address now
//! and stands by instead of fighting for it.
//!
//! The probe: ARP requests with sender IP 0.0.0.0 for each address, on its interface; anyone
//! that answers for the address, announces it, or probes for it too (someone claiming at the
//! same moment) holds it, as RFC 5227 §2.1.1 says. The window is short (300 ms by default, not
//! RFC 5227's seconds): the neighbours are on one LAN segment and answer within milliseconds,
//! and the whole takeover must fit in the 3 s the cluster allows.
//!
//! Addresses are added and removed with `ip addr` (iproute2): this happens once per takeover.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use pnet_base::MacAddr;
use pnet_packet::arp::{
    ArpHardwareTypes, ArpOperation, ArpOperations, ArpPacket, MutableArpPacket,
};
use pnet_packet::ethernet::{EtherTypes, EthernetPacket, MutableEthernetPacket};
use pnet_packet::{MutablePacket, Packet};

use netio::arp::ArpSocket;

/// Ethernet header + ARP for IPv4: the frame before any padding.
pub const ARP_FRAME_LEN: usize = 14 + 28;

/// One address to claim and the interface it goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimAddress {
    pub interface: String,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl std::fmt::Display for ClaimAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} on {}", self.addr, self.prefix_len, self.interface)
    }
}

#[derive(Debug, Clone)]
pub struct ClaimPlan {
    /// The cluster address (public side) first, then the master's LAN address.
    pub addresses: Vec<ClaimAddress>,
    /// How long to listen for an answer to the probes.
    pub probe_wait: Duration,
    /// Probes per address, spread over the wait.
    pub probes: u32,
    /// Gratuitous ARP announcements per address once claimed, `announce_gap` apart.
    pub announcements: u32,
    pub announce_gap: Duration,
}

impl ClaimPlan {
    pub fn new(addresses: Vec<ClaimAddress>) -> ClaimPlan {
        ClaimPlan {
            addresses,
            probe_wait: Duration::from_millis(300),
            probes: 3,
            announcements: 3,
            announce_gap: Duration::from_millis(20),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("ARP socket on {interface} (needs root / CAP_NET_RAW): {source}")]
    Socket {
        interface: String,
        source: std::io::Error,
    },
    #[error("ARP on {interface}: {source}")]
    Arp {
        interface: String,
        source: std::io::Error,
    },
    #[error("`{command}`: {message}")]
    Ip { command: String, message: String },
}

/// What the probes found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Free,
    /// `mac` answered for (or claims) `address`.
    Held {
        address: ClaimAddress,
        mac: [u8; 6],
    },
}

impl Probe {
    /// "02:…:01 holds 198.18.0.1/16 on IF".
    pub fn describe(&self) -> String {
        match self {
            Probe::Free => "free".to_string(),
            Probe::Held { address, mac } => format!("{} holds {address}", format_mac(*mac)),
        }
    }
}

pub fn format_mac(mac: [u8; 6]) -> String {
    let parts: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(":")
}

/// An ARP frame as the claim needs to see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpSeen {
    pub operation: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_ip: Ipv4Addr,
}

/// Reads an Ethernet frame carrying ARP for IPv4 over Ethernet; `None` for anything else.
pub fn parse_arp(frame: &[u8]) -> Option<ArpSeen> {
    let ethernet = EthernetPacket::new(frame)?;
    if ethernet.get_ethertype() != EtherTypes::Arp {
        return None;
    }
    let arp = ArpPacket::new(ethernet.payload())?;
    if arp.get_hardware_type() != ArpHardwareTypes::Ethernet
        || arp.get_protocol_type() != EtherTypes::Ipv4
        || arp.get_hw_addr_len() != 6
        || arp.get_proto_addr_len() != 4
    {
        return None;
    }
    Some(ArpSeen {
        operation: arp.get_operation().0,
        sender_mac: arp.get_sender_hw_addr().octets(),
        sender_ip: arp.get_sender_proto_addr(),
        target_ip: arp.get_target_proto_addr(),
    })
}

/// A broadcast ARP request from `mac`, asking for `target` in the name of `sender`.
fn arp_request(mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> [u8; ARP_FRAME_LEN] {
    let mut frame = [0u8; ARP_FRAME_LEN];
    let source = MacAddr::from(mac);
    if let Some(mut ethernet) = MutableEthernetPacket::new(&mut frame) {
        ethernet.set_destination(MacAddr::broadcast());
        ethernet.set_source(source);
        ethernet.set_ethertype(EtherTypes::Arp);
        if let Some(mut arp) = MutableArpPacket::new(ethernet.payload_mut()) {
            arp.set_hardware_type(ArpHardwareTypes::Ethernet);
            arp.set_protocol_type(EtherTypes::Ipv4);
            arp.set_hw_addr_len(6);
            arp.set_proto_addr_len(4);
            arp.set_operation(ArpOperations::Request);
            arp.set_sender_hw_addr(source);
            arp.set_sender_proto_addr(sender);
            arp.set_target_hw_addr(MacAddr::zero());
            arp.set_target_proto_addr(target);
        }
    }
    frame
}

/// RFC 5227 ARP Probe: "who has `addr`?" with sender IP 0.0.0.0, so that no neighbour's cache
/// learns anything from it.
pub fn probe_frame(mac: [u8; 6], addr: Ipv4Addr) -> [u8; ARP_FRAME_LEN] {
    arp_request(mac, Ipv4Addr::UNSPECIFIED, addr)
}

/// RFC 5227 ARP Announcement (gratuitous ARP): sender and target IP both `addr`. Linux
/// replaces a cached entry for `addr` on such a frame even within its locktime.
pub fn announcement_frame(mac: [u8; 6], addr: Ipv4Addr) -> [u8; ARP_FRAME_LEN] {
    arp_request(mac, addr, addr)
}

/// Whether `seen`, from another host than `ours`, says that someone holds or claims `addr`:
/// it answers for it, announces it, or probes for it as we do.
pub fn conflicts(seen: &ArpSeen, ours: [u8; 6], addr: Ipv4Addr) -> bool {
    if seen.sender_mac == ours {
        return false;
    }
    let probing = seen.operation == ArpOperation::new(1).0
        && seen.sender_ip.is_unspecified()
        && seen.target_ip == addr;
    seen.sender_ip == addr || probing
}

/// Probes for every address of the plan; the first holder found, or `Free`. Blocking (up to
/// `probe_wait`): call it where a short block is harmless, or on a blocking thread.
pub fn probe(plan: &ClaimPlan) -> Result<Probe, ClaimError> {
    let mut sockets: Vec<(ArpSocket, &ClaimAddress)> = Vec::new();
    for address in &plan.addresses {
        let socket = ArpSocket::open(&address.interface).map_err(|source| ClaimError::Socket {
            interface: address.interface.clone(),
            source,
        })?;
        sockets.push((socket, address));
    }
    let probes = plan.probes.max(1);
    let gap = plan.probe_wait / probes;
    let start = Instant::now();
    let deadline = start + plan.probe_wait;
    let mut sent = 0;
    let mut buf = [0u8; 2048];
    loop {
        let now = Instant::now();
        if sent < probes && now >= start + gap * sent {
            for (socket, address) in &sockets {
                socket
                    .send(&probe_frame(socket.mac(), address.addr))
                    .map_err(|source| ClaimError::Arp {
                        interface: address.interface.clone(),
                        source,
                    })?;
            }
            sent += 1;
        }
        if now >= deadline {
            return Ok(Probe::Free);
        }
        let next_probe = if sent < probes {
            start + gap * sent
        } else {
            deadline
        };
        let wait = next_probe.min(deadline).saturating_duration_since(now);
        // A short slice per socket: the sockets are few (two) and the answers fast.
        let slice = (wait / sockets.len().max(1) as u32).max(Duration::from_millis(1));
        for (socket, address) in &sockets {
            let got = socket
                .recv(&mut buf, slice)
                .map_err(|source| ClaimError::Arp {
                    interface: address.interface.clone(),
                    source,
                })?;
            let Some(len) = got else { continue };
            let Some(seen) = parse_arp(&buf[..len]) else {
                continue;
            };
            if conflicts(&seen, socket.mac(), address.addr) {
                return Ok(Probe::Held {
                    address: (*address).clone(),
                    mac: seen.sender_mac,
                });
            }
        }
    }
}

/// Addresses taken with [`take`]; [`Claimed::release`] (or dropping it) removes them.
#[derive(Debug)]
pub struct Claimed {
    added: Vec<ClaimAddress>,
}

impl Claimed {
    pub fn addresses(&self) -> &[ClaimAddress] {
        &self.added
    }

    /// Removes the addresses again (a master that stops gives its address back at once, so a
    /// successor need not wait for its silence to be noticed by ARP).
    pub fn release(mut self) -> Result<(), ClaimError> {
        let added = std::mem::take(&mut self.added);
        let mut first_error = None;
        for address in added.iter().rev() {
            if let Err(err) = ip_addr("del", address) {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Claimed {
    fn drop(&mut self) {
        for address in self.added.iter().rev() {
            if let Err(err) = ip_addr("del", address) {
                tracing::warn!(%address, %err, "could not give the address back");
            }
        }
    }
}

/// Adds every address of the plan and announces each with gratuitous ARP. Blocking (the
/// announcements are `announce_gap` apart). On an error, what was added is removed again.
pub fn take(plan: &ClaimPlan) -> Result<Claimed, ClaimError> {
    let mut claimed = Claimed { added: Vec::new() };
    let mut sockets = Vec::new();
    for address in &plan.addresses {
        let socket = ArpSocket::open(&address.interface).map_err(|source| ClaimError::Socket {
            interface: address.interface.clone(),
            source,
        })?;
        ip_addr("add", address)?;
        claimed.added.push(address.clone());
        sockets.push((socket, address));
    }
    for round in 0..plan.announcements {
        if round > 0 {
            std::thread::sleep(plan.announce_gap);
        }
        for (socket, address) in &sockets {
            socket
                .send(&announcement_frame(socket.mac(), address.addr))
                .map_err(|source| ClaimError::Arp {
                    interface: address.interface.clone(),
                    source,
                })?;
        }
    }
    Ok(claimed)
}

/// Removes the plan's addresses where they are still configured: left by a master of ours
/// that died without giving them back (SIGKILL), or set up statically before a master in claim
/// mode started. Kept, our own kernel would answer the probes for them and, once another holds
/// the address, answer ARP against it. Returns what it removed.
pub fn remove_leftovers(plan: &ClaimPlan) -> Result<Vec<ClaimAddress>, ClaimError> {
    let mut removed = Vec::new();
    for address in &plan.addresses {
        let here = netio::iface::interface_with_address(address.addr)
            .is_ok_and(|interface| interface == address.interface);
        if here {
            ip_addr("del", address)?;
            removed.push(address.clone());
        }
    }
    Ok(removed)
}

fn ip_addr(verb: &str, address: &ClaimAddress) -> Result<(), ClaimError> {
    let cidr = format!("{}/{}", address.addr, address.prefix_len);
    let args = ["-4", "addr", verb, &cidr, "dev", &address.interface];
    let command = format!("ip {}", args.join(" "));
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|err| ClaimError::Ip {
            command: command.clone(),
            message: err.to_string(),
        })?;
    if !output.status.success() {
        return Err(ClaimError::Ip {
            command,
            message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    const OTHER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
    const CLUSTER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

    #[test]
    fn probe_and_announcement_golden_bytes() {
        let probe = probe_frame(MAC, CLUSTER);
        let expected: [u8; ARP_FRAME_LEN] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // broadcast
            0x02, 0, 0, 0, 0, 0x01, // us
            0x08, 0x06, // ARP
            0, 1, 0x08, 0x00, 6, 4, 0, 1, // Ethernet, IPv4, lengths, request
            0x02, 0, 0, 0, 0, 0x01, 0, 0, 0, 0, // sender: us, 0.0.0.0
            0, 0, 0, 0, 0, 0, 198, 18, 0, 1, // target: ?, the cluster address
        ];
        assert_eq!(probe, expected);
        let announcement = announcement_frame(MAC, CLUSTER);
        assert_eq!(&announcement[..28], &expected[..28]);
        assert_eq!(&announcement[28..32], &[198, 18, 0, 1]);
        assert_eq!(&announcement[32..], &expected[32..]);
        let seen = parse_arp(&announcement).unwrap();
        assert_eq!(
            seen,
            ArpSeen {
                operation: 1,
                sender_mac: MAC,
                sender_ip: CLUSTER,
                target_ip: CLUSTER
            }
        );
    }

    #[test]
    fn what_counts_as_a_holder() {
        let reply = ArpSeen {
            operation: 2,
            sender_mac: OTHER,
            sender_ip: CLUSTER,
            target_ip: Ipv4Addr::UNSPECIFIED,
        };
        assert!(conflicts(&reply, MAC, CLUSTER));
        // Our own frames, and frames about other addresses, are no conflict.
        assert!(!conflicts(&reply, OTHER, CLUSTER));
        assert!(!conflicts(&reply, MAC, Ipv4Addr::new(198, 18, 0, 2)));
        // Someone else probing for the same address at the same time.
        let probing = parse_arp(&probe_frame(OTHER, CLUSTER)).unwrap();
        assert!(conflicts(&probing, MAC, CLUSTER));
        let asking = parse_arp(&arp_request(OTHER, Ipv4Addr::new(198, 18, 1, 1), CLUSTER)).unwrap();
        assert!(!conflicts(&asking, MAC, CLUSTER));
    }

    #[test]
    fn frames_that_are_not_arp_for_ipv4_are_ignored() {
        assert_eq!(parse_arp(&[]), None);
        assert_eq!(parse_arp(&[0u8; 20]), None);
        let mut ip = announcement_frame(MAC, CLUSTER);
        ip[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(parse_arp(&ip), None);
        let mut short_hw = announcement_frame(MAC, CLUSTER);
        short_hw[18] = 8;
        assert_eq!(parse_arp(&short_hw), None);
        assert_eq!(parse_arp(&announcement_frame(MAC, CLUSTER)[..30]), None);
    }

    #[test]
    fn describes_what_it_found() {
        let held = Probe::Held {
            address: ClaimAddress {
                interface: "l2k0001-te1p".into(),
                addr: CLUSTER,
                prefix_len: 16,
            },
            mac: OTHER,
        };
        assert_eq!(
            held.describe(),
            "02:00:00:00:00:02 holds 198.18.0.1/16 on l2k0001-te1p"
        );
    }
}
