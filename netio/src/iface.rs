//! Interfaces by name: index, hardware address, and which one holds an address.

use std::io;
use std::net::Ipv4Addr;

use nix::ifaddrs::getifaddrs;

/// The index of `name` (if_nametoindex).
pub fn index(name: &str) -> io::Result<i32> {
    if name.as_bytes().contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name with NUL",
        ));
    }
    let index = nix::net::if_::if_nametoindex(name)
        .map_err(|_| io::Error::new(io::ErrorKind::NotFound, format!("no interface {name:?}")))?;
    i32::try_from(index).map_err(|_| io::Error::other("interface index out of range"))
}

/// The MAC address of `interface`; an error for an interface that is not Ethernet.
pub fn hardware_address(interface: &str) -> io::Result<[u8; 6]> {
    // getifaddrs lists one AF_PACKET entry per link, up or down, with its hardware type.
    let link = getifaddrs()?
        .filter(|entry| entry.interface_name == interface)
        .find_map(|entry| entry.address.and_then(|a| a.as_link_addr().copied()))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface {interface:?}"),
            )
        })?;
    if link.hatype() != libc::ARPHRD_ETHER {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "{interface} is no Ethernet interface (ARPHRD {})",
                link.hatype()
            ),
        ));
    }
    link.addr()
        .ok_or_else(|| io::Error::other(format!("{interface} has no hardware address")))
}

/// The name of the interface that holds `addr` (getifaddrs).
pub fn interface_with_address(addr: Ipv4Addr) -> io::Result<String> {
    getifaddrs()?
        .find(|entry| {
            entry
                .address
                .as_ref()
                .and_then(|a| a.as_sockaddr_in())
                .is_some_and(|sin| sin.ip() == addr)
        })
        .map(|entry| entry.interface_name)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface holds {addr}"),
            )
        })
}
