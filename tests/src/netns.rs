//! Network namespaces and veth pairs for a test run, named with a per-run prefix and removed
//! when dropped (also when the test panics). Every `ip` call has a timeout
//! ([`l2tpkit::lab::sys::ip`]).

use std::io;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use l2tpkit::lab::sys;

/// `ip ARGS` as an `io::Result`.
pub fn ip(args: &[&str]) -> io::Result<String> {
    sys::ip(args).map_err(|err| io::Error::other(format!("{err:#}")))
}

/// One counter of `/proc/net/snmp` inside `netns` (`group` e.g. `Udp`, `name` e.g.
/// `RcvbufErrors`).
pub fn snmp(netns: &str, group: &str, name: &str) -> io::Result<u64> {
    let args = ["netns", "exec", netns, "cat", "/proc/net/snmp"];
    let out = sys::run("ip", &args, None, std::time::Duration::from_secs(10))
        .map_err(|err| io::Error::other(format!("{err:#}")))?;
    let prefix = format!("{group}: ");
    let mut rows = out.stdout.lines().filter(|l| l.starts_with(&prefix));
    let (names, values) = (rows.next().unwrap_or(""), rows.next().unwrap_or(""));
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .and_then(|(_, value)| value.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no {group} {name} in {netns}'s /proc/net/snmp")))
}

/// A short prefix for the names of one run: `TAG<pid in hex>-<n>`, at most `TAG` + 10
/// characters, so `PREFIX` + 3 more still fits an interface name (15 characters). Names made
/// from it are `PREFIX-…` (namespaces) or `PREFIX…` (interfaces): see [`owned_by`].
pub fn run_prefix(tag: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed) % 100;
    format!("{tag}{:x}-{n}", std::process::id())
}

/// True when `name` was made from `prefix` (`l2n1f-1` does not own `l2n1f-10-ini`).
pub fn owned_by(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
}

/// The named network namespaces and the interfaces of this namespace made from `prefix`: what a
/// run leaves behind if its cleanup failed.
pub fn leftovers(prefix: &str) -> Vec<String> {
    let mut left: Vec<String> = sys::netns_list()
        .unwrap_or_default()
        .into_iter()
        .filter(|ns| owned_by(ns, prefix))
        .map(|ns| format!("netns {ns}"))
        .collect();
    left.extend(
        ip(&["-o", "link", "show"])
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
            .filter(|n| owned_by(n, prefix))
            .map(|n| format!("link {n}")),
    );
    left
}

/// A named network namespace (`ip netns add`) with its loopback up; `ip netns del` on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `name`. An existing namespace of that name is an error of kind `AlreadyExists`
    /// (a leftover of a killed run whose PID came back), and is left alone.
    pub fn add(name: &str) -> io::Result<Netns> {
        if let Err(err) = ip(&["netns", "add", name]) {
            let kind = if err.to_string().contains("File exists") {
                io::ErrorKind::AlreadyExists
            } else {
                err.kind()
            };
            return Err(io::Error::new(kind, err));
        }
        let ns = Netns {
            name: name.to_string(),
        };
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME program`: add the arguments and run it.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Puts `addr/len` on `dev` and brings `dev` up.
    pub fn address(&self, dev: &str, addrs: &[Ipv4Addr], len: u8) -> io::Result<()> {
        for addr in addrs {
            ip(&[
                "-n",
                &self.name,
                "addr",
                "add",
                &format!("{addr}/{len}"),
                "dev",
                dev,
            ])?;
        }
        ip(&["-n", &self.name, "link", "set", dev, "up"])?;
        Ok(())
    }

    /// A veth pair with one end (`name`) here and the other (`peer_name`) in `peer`, both
    /// created in place (never in the test's own namespace).
    pub fn veth(&self, name: &str, peer: &Netns, peer_name: &str) -> io::Result<()> {
        ip(&[
            "link", "add", name, "netns", &self.name, "type", "veth", "peer", "name", peer_name,
            "netns", &peer.name,
        ])
        .map(drop)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace takes its veth ends, and so the pairs, with it.
        if let Err(err) = ip(&["netns", "del", &self.name]) {
            eprintln!("removing network namespace {}: {err}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_short_and_own_only_their_names() {
        let a = run_prefix("l2n");
        let b = run_prefix("l2n");
        assert_ne!(a, b);
        assert!(a.len() <= 13, "{a}");
        assert!(owned_by(&format!("{a}-ini"), &a));
        assert!(owned_by(&format!("{a}pl"), &a));
        assert!(!owned_by(&format!("{a}0-ini"), &a));
        assert!(!owned_by("eth0", &a));
    }
}
