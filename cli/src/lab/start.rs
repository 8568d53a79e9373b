//! How a role is started and how it says it is ready: what the lab's rooms share, so that
//! none of them needs another for it.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use super::{lns_probe, sys};

/// How a started process says that it is ready: never by a line in its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Its control socket answers `status` (the master, the NAT). A master that found its
    /// address held answers too, as standing by.
    Control(PathBuf),
    /// It has written this JSON status file (the endpoint, the impairing switch, a capture);
    /// a file left by an earlier life is removed before the process starts.
    StatusFile(PathBuf),
    /// A UDP socket in `namespace` is bound to `addr`, or to its port on 0.0.0.0, as the
    /// namespace's `/proc/net/udp` lists it: for a daemon that is not ours and says nothing
    /// else (the lab's xl2tpd).
    UdpBound {
        namespace: String,
        addr: SocketAddrV4,
    },
    /// An LNS in `namespace` answers an SCCRQ to `lns` with an SCCRP (the tunnel is closed at
    /// once): for a daemon that is not ours and binds its port before it answers (the lab's
    /// l2tpns, which answers once it has declared itself its cluster's master).
    LnsAnswers {
        namespace: String,
        lns: SocketAddrV4,
    },
}

/// The name the lab gives its cluster master (its files and its `--name`).
pub const MASTER: &str = "master";

/// How long a role may take to get ready.
pub(super) const READY: Duration = Duration::from_secs(10);

/// How long one [`Readiness::LnsAnswers`] probe waits for the SCCRP.
const PROBE_WAIT: Duration = Duration::from_millis(250);

impl Readiness {
    /// Clears what an earlier life left, so that only the new process can make this true.
    pub(super) fn reset(&self) {
        if let Readiness::StatusFile(path) = self {
            let _ = std::fs::remove_file(path);
        }
    }

    pub(super) fn is_ready(&self) -> bool {
        match self {
            Readiness::Control(socket) => reference::control::request(socket, "status").is_ok(),
            Readiness::StatusFile(path) => std::fs::read(path)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
                .is_some(),
            Readiness::UdpBound { namespace, addr } => {
                let args = ["netns", "exec", namespace, "cat", "/proc/net/udp"];
                sys::run("ip", &args, None, Duration::from_secs(5))
                    .is_ok_and(|out| out.status.success() && udp_table_binds(&out.stdout, *addr))
            }
            Readiness::LnsAnswers { namespace, lns } => {
                lns_probe::answers(namespace, *lns, PROBE_WAIT)
            }
        }
    }
}

/// Whether `table`, the text of `/proc/net/udp`, lists a socket bound to `addr`, or to its port
/// on 0.0.0.0 (which serves `addr` too).
pub(super) fn udp_table_binds(table: &str, addr: SocketAddrV4) -> bool {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let (ip, port) = line.split_whitespace().nth(1)?.split_once(':')?;
            // The kernel prints the address as the host's reading of its network-order bytes.
            let ip = Ipv4Addr::from(u32::from_str_radix(ip, 16).ok()?.to_ne_bytes());
            Some(SocketAddrV4::new(ip, u16::from_str_radix(port, 16).ok()?))
        })
        .any(|bound| {
            bound.port() == addr.port() && (bound.ip() == addr.ip() || bound.ip().is_unspecified())
        })
}

impl std::fmt::Display for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Readiness::Control(socket) => write!(f, "answer on {}", socket.display()),
            Readiness::StatusFile(path) => write!(f, "write {}", path.display()),
            Readiness::UdpBound { namespace, addr } => {
                write!(f, "bind UDP {addr} in {namespace}")
            }
            Readiness::LnsAnswers { namespace, lns } => {
                write!(f, "answer an SCCRQ to {lns} in {namespace}")
            }
        }
    }
}

/// What one role was started with, to start it again ([`Lab::restart`]).
#[derive(Debug, Clone)]
pub(super) struct RoleStart {
    pub(super) namespace: String,
    pub(super) args: Vec<String>,
    pub(super) ready: Option<Readiness>,
}

#[cfg(test)]
mod tests {
    use super::udp_table_binds;

    /// `/proc/net/udp` of an endpoint namespace (x86, little-endian): xl2tpd on 198.19.0.11:1701
    /// and a report socket on 0.0.0.0:40000.
    const TABLE: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  34: 0B0013C6:06A5 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 81234 2 0000000000000000 0\n\
 120: 00000000:9C40 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 81240 2 0000000000000000 0\n";

    #[test]
    fn reads_bound_udp_sockets() {
        let at = |text: &str| text.parse().unwrap();
        if cfg!(target_endian = "little") {
            assert!(udp_table_binds(TABLE, at("198.19.0.11:1701")));
            assert!(!udp_table_binds(TABLE, at("198.19.0.12:1701")));
        }
        assert!(!udp_table_binds(TABLE, at("0.0.0.0:1701")));
        // A socket on 0.0.0.0 serves every address of the namespace.
        assert!(udp_table_binds(TABLE, at("198.19.0.11:40000")));
        assert!(udp_table_binds(TABLE, at("0.0.0.0:40000")));
        assert!(!udp_table_binds("", at("0.0.0.0:1701")));
    }
}
