//! `--endpoint-kind l2tpns`: in every endpoint namespace an unmodified l2tpns (Debian's 2.4.1)
//! answers as the LNS and runs PPP itself (LCP, CHAP against RADIUS, IPCP from its own slice of
//! 198.19.128.0/17, over a tun device of its namespace), a FreeRADIUS beside it authenticates
//! the lab's user ([`super::radius`]), and `l2tpkit agent` reports its load and claims its
//! tunnels at the master. See `/work/shared/PEERS.md`, "l2tpns".
//!
//! ```text
//! ip netns exec <p>-te<i> freeradius -f -d RUN_DIR/raddb -l stdout         (te<i>-radius)
//! ip netns exec <p>-te<i> unshare --pid --fork --kill-child --mount --propagation private \
//!   sh -c 'mount --bind POOL /etc/l2tpns/ip_pool && mount --bind USERS /etc/l2tpns/users \
//!          && exec l2tpns -c CONF'                                          (te<i>-l2tpns)
//! ```
//!
//! - l2tpns reads `/etc/l2tpns/ip_pool` and `/etc/l2tpns/users` whatever its configuration
//!   says: the run's files (`RUN_DIR/te<i>-l2tpns.*`) are bind-mounted over them in a private
//!   mount namespace. It runs as the init of a PID namespace of its own, because it signals its
//!   whole process group when it stops. The lab's SIGINT (`lab down`) reaches it through
//!   `unshare` ([`super::sys::signal_to_end`]); it stops in about 2 s, without StopCCNs (a
//!   cluster member's failover stop). Its log is its stderr, `RUN_DIR/te<i>-l2tpns.log`.
//! - Its own cluster: l2tpns nodes that hear each other's multicast heartbeats form one
//!   cluster with one master, and all the lab's endpoints share the LAN segment. Each l2tpns
//!   sends its heartbeats on its namespace's loopback (`cluster_interface lo`), so no two ever
//!   meet: each declares itself the master of a cluster of one, within about 1 s with the
//!   smallest heartbeat timers it accepts.
//! - Readiness: l2tpns binds its UDP port at once but drops every SCCRQ until it is master, so
//!   it is ready when it answers an SCCRQ from inside its namespace with an SCCRP
//!   ([`Readiness::LnsAnswers`]; the probe closes the tunnel with a StopCCN). FreeRADIUS is
//!   started first; the agent, the role `te<i>`, once l2tpns answers.
//! - FIG 2: l2tpns binds its LAN address and answers through the NAT. FIG 4: it binds no
//!   address (0.0.0.0:1701), so the kernel sends its replies from the global address, by the
//!   default route, while the master forwards SCCRQs to its LAN address. Either way its own
//!   address in IPCP and on its tun device is its LAN address (`peer_address`,
//!   `iftun_address`), which is in no PPP pool.
//! - Every session is a PPP subscriber: l2tpns asks for CHAP first (`radius_authtypes
//!   "chap,pap"`), and lets the lab's one user hold every session at once
//!   (`allow_duplicate_users`). A LAC without PPP leaves its calls in LCP, and l2tpns clears
//!   each one after ten unanswered Configure-Requests, 3 s apart (~30 s).
//! - The lab's `--secret` becomes l2tpns's `l2tp_secret`: it answers a LAC's Challenge and
//!   unhides hidden AVPs, but never challenges a LAC itself. Its retransmission limit is fixed
//!   (five), so `--max-retransmits` with another value is refused ([`super::LabSpec::check`]).
//! - FIG 2 and the NAT: l2tpns numbers its tunnels from the bottom up (3, 4, …: 1 is kept for
//!   PPPoE, 2 was the readiness probe's), so the endpoints give out the same Tunnel IDs. The
//!   NAT tells an initiator's tunnels on several endpoints apart by (its address and port, the
//!   endpoint's Tunnel ID): should two endpoints give one initiator socket's tunnels the same
//!   ID, the newer SCCRP replaces the older entry (`entries_replaced` in `nat-status.json`)
//!   and that tunnel's later packets reach the other endpoint. One tunnel per initiator address
//!   keeps clear of it; with more it depends on how dispatch interleaves (seen here: nothing
//!   replaced with 30 initiators and 100 or 994 tunnels; with one initiator and four tunnels,
//!   two entries replaced and those two tunnels' StopCCNs delivered to the wrong l2tpns).
//!   `lab --tunnel-ids any` keeps both (the NAT translates: `nat --translate-tunnel-ids`), but
//!   a LAC that sends to the cluster address would then lose the translated tunnel at the
//!   master, which routes l2tpns's tunnels by its agent's claims of the IDs l2tpns gave; so it
//!   is not the default.
//! - Room: one l2tpns holds at most [`MAX_TUNNELS`] tunnels, which its agent reports as its
//!   capacity, so that the master places no more there (`lab run` refuses more tunnels than
//!   the endpoints hold together).
//! - l2tpns never takes the master over. Each endpoint costs about 180 MB (l2tpns ~95 MB,
//!   FreeRADIUS ~90 MB, measured here).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::instance::Lab;
use super::plan::{NodePlan, Segment};
use super::radius;
use super::roles::{address, isolated, pool_slice, start_agents, PoolSlice};
use super::start::{Readiness, READY};
use super::sys;

/// Runs in the new mount and PID namespaces; `$1..$3` are paths, so nothing needs quoting.
const INNER: &str = "mount --bind \"$1\" /etc/l2tpns/ip_pool && \
mount --bind \"$2\" /etc/l2tpns/users && exec l2tpns -c \"$3\"";

/// What l2tpns reads whatever its configuration says: the run's files are mounted over them.
const SYSTEM_FILES: [&str; 2] = ["/etc/l2tpns/ip_pool", "/etc/l2tpns/users"];

const L2TP_PORT: u16 = 1701;

/// The retransmissions after which l2tpns gives a control message up (not configurable).
pub(super) const MAX_RETRANSMITS: u32 = 5;

/// The tunnels one l2tpns holds at once: its table has 500 (`MAXTUNNEL`, compiled in), ID 0
/// is none, 1 is kept for PPPoE and the readiness probe's stays taken for 70 s after its
/// StopCCN. An SCCRQ beyond them is dropped without an answer ("No more tunnels"), so the
/// agent tells the master this capacity.
pub(super) const MAX_TUNNELS: u32 = 497;

/// Its PPP sessions' tun device, one in each endpoint namespace.
const TUN_DEVICE: &str = "l2tpns";

/// What `--endpoint-kind l2tpns` needs on the machine, named with how to get it when missing.
pub(super) fn preflight() -> anyhow::Result<()> {
    let mut missing = Vec::new();
    // Not started to ask: l2tpns has no version flag (any start is a daemon's).
    for program in ["l2tpns", "freeradius"] {
        if !on_path(program) {
            missing.push(program.to_string());
        }
    }
    if !sys::have("unshare", "--version") {
        missing.push("unshare (util-linux)".into());
    }
    for file in SYSTEM_FILES {
        if !Path::new(file).exists() {
            missing.push(format!("{file} (the run's own is mounted over it)"));
        }
    }
    let radiusd = format!("{}/radiusd.conf", radius::SYSTEM_CONFIG);
    if !Path::new(&radiusd).exists() {
        missing.push(format!(
            "{radiusd} (the lab's FreeRADIUS configuration is made from it)"
        ));
    }
    if !Path::new("/dev/net/tun").exists() {
        missing.push("/dev/net/tun (l2tpns runs PPP over a tun device)".into());
    }
    if !missing.is_empty() {
        anyhow::bail!(
            "--endpoint-kind l2tpns needs {}: install with `apt-get install -y l2tpns freeradius`",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Whether an executable file `program` is in a directory of `$PATH`, where the lab's
/// supervisor will look for it.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(program))
        .any(|file| {
            std::fs::metadata(file)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        });
    found
}

/// A string as l2tpns's configuration takes it: in double quotes, which it cannot escape.
fn quoted(what: &str, value: &str) -> anyhow::Result<String> {
    if value.contains(['"', '\\']) || value.chars().any(char::is_control) {
        anyhow::bail!(
            "{what}: l2tpns cannot take a string with quotes, backslashes or control characters"
        );
    }
    Ok(format!("\"{value}\""))
}

/// The startup configuration of one endpoint's l2tpns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LnsConfig {
    /// Its LAN address: where the master forwards SCCRQs, its own address in IPCP and on its
    /// tun device.
    pub(super) lan: Ipv4Addr,
    /// `bind_address`: the LAN address in FIG 2; none in FIG 4 (0.0.0.0), where it must
    /// answer from its global address, which the kernel picks by route.
    pub(super) bind: Option<Ipv4Addr>,
    /// `hostname`: the Host Name AVP of its SCCRPs, the node's name (`te1`), as our endpoints
    /// say theirs.
    pub(super) host_name: String,
    /// Its `ip_pool`: no two endpoints hand out one address.
    pub(super) pool: PoolSlice,
    /// `l2tp_secret`: the lab's `--secret`.
    pub(super) secret: Option<String>,
}

impl LnsConfig {
    /// Endpoint `i` (0-based) of `n`, without a secret.
    pub(super) fn for_endpoint(node: &NodePlan, i: usize, n: usize) -> anyhow::Result<Self> {
        let lan = address(node, Segment::Lan)?;
        Ok(LnsConfig {
            lan,
            bind: node.interface(Segment::Public).is_none().then_some(lan),
            host_name: node.short.clone(),
            pool: pool_slice(i, n),
            secret: None,
        })
    }

    /// Where it answers an SCCRQ from inside its namespace (its readiness).
    pub(super) fn lns(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.lan, L2TP_PORT)
    }

    pub(super) fn text(&self, pid_file: &Path) -> anyhow::Result<String> {
        let mut lines = vec![
            // Every control message, LCP, RADIUS and "Login by USER at ADDR" in its log.
            "set debug 3".to_string(),
            format!(
                "set pid_file {}",
                quoted("pid file", &pid_file.display().to_string())?
            ),
            format!("set hostname {}", quoted("host name", &self.host_name)?),
        ];
        if let Some(bind) = self.bind {
            lines.push(format!("set bind_address {bind}"));
        }
        lines.extend([
            format!("set iftun_address {}", self.lan),
            format!("set peer_address {}", self.lan),
            format!("set tundevicename {TUN_DEVICE}"),
            format!("set primary_radius {}", radius::RADIUS_ADDR.ip()),
            format!("set primary_radius_port {}", radius::RADIUS_ADDR.port()),
            format!(
                "set radius_secret {}",
                quoted("RADIUS secret", radius::RADIUS_SECRET)?
            ),
            "set radius_authtypes \"chap,pap\"".to_string(),
            // Every session logs in as the lab's one user.
            "set allow_duplicate_users yes".to_string(),
            // A cluster of one: its heartbeats never leave its namespace (module documentation).
            "set cluster_interface lo".to_string(),
            // The fastest election l2tpns allows (it raises a timeout below 4 × interval + 1.1 s).
            "set cluster_hb_interval 1".to_string(),
            "set cluster_hb_timeout 15".to_string(),
            "set send_garp no".to_string(),
            "set cli_bind_address 127.0.0.1".to_string(),
        ]);
        if let Some(secret) = &self.secret {
            lines.push(format!("set l2tp_secret {}", quoted("--secret", secret)?));
        }
        Ok(lines.join("\n") + "\n")
    }
}

/// The files one l2tpns is started with, all in the run dir.
struct Files {
    conf: PathBuf,
    pool: PathBuf,
    users: PathBuf,
}

fn write_files(run: &Path, short: &str, config: &LnsConfig) -> anyhow::Result<Files> {
    let file = |ext: &str| run.join(format!("{short}-l2tpns.{ext}"));
    let files = Files {
        conf: file("conf"),
        pool: file("ip_pool"),
        users: file("users"),
    };
    let write = |path: &Path, text: String| {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    };
    write(&files.conf, config.text(&file("pid"))?)?;
    write(&files.pool, format!("{}\n", config.pool))?;
    // Its CLI's users: none (the PPP users are FreeRADIUS's).
    write(&files.users, String::new())?;
    Ok(files)
}

/// Starts FreeRADIUS and l2tpns in every endpoint namespace and waits until each FreeRADIUS
/// has bound its port and each l2tpns answers an SCCRQ, then an `l2tpkit agent` beside each;
/// the agents' metrics targets.
pub(super) fn start_endpoints(
    lab: &Lab,
    key: &str,
    master_lan: Ipv4Addr,
) -> anyhow::Result<Vec<String>> {
    let run = lab.run_dir();
    let raddb = radius::write_config(run)?;
    let endpoints: Vec<&NodePlan> = lab.plan().endpoints().collect();
    let mut daemons = Vec::new();
    for (i, node) in endpoints.iter().enumerate() {
        let name = format!("{}-radius", node.short);
        let log = run.join(format!("{name}.log"));
        let process = lab.spawn_in(
            &name,
            &node.namespace,
            "freeradius",
            radius::args(&raddb),
            &log,
        )?;
        daemons.push((process, radius::readiness(&node.namespace)));
        let config = LnsConfig {
            secret: lab.secret.clone(),
            ..LnsConfig::for_endpoint(node, i, endpoints.len())?
        };
        let files = write_files(run, &node.short, &config)?;
        let name = format!("{}-l2tpns", node.short);
        let log = run.join(format!("{name}.log"));
        let args = isolated(INNER, &[&files.pool, &files.users, &files.conf]);
        let process = lab.spawn_in(&name, &node.namespace, "unshare", args, &log)?;
        let ready = Readiness::LnsAnswers {
            namespace: node.namespace.clone(),
            lns: config.lns(),
        };
        daemons.push((process, ready));
        sys::step()?;
    }
    for (process, ready) in &daemons {
        lab.wait_ready(process, ready, READY)?;
    }
    start_agents(lab, key, master_lan, L2TP_PORT, Some(MAX_TUNNELS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::plan::{Plan, Topology};

    fn config(topology: Topology, i: usize, n: usize) -> String {
        let plan = Plan::new("l2k0abc", topology, n, 1).unwrap();
        let node = plan.endpoints().nth(i).unwrap();
        LnsConfig::for_endpoint(node, i, n)
            .unwrap()
            .text(Path::new("/run/te-l2tpns.pid"))
            .unwrap()
    }

    fn value<'a>(conf: &'a str, key: &str) -> Option<&'a str> {
        conf.lines()
            .find_map(|l| l.strip_prefix("set ")?.strip_prefix(key)?.strip_prefix(' '))
    }

    #[test]
    fn fig2_binds_the_lan_address_and_is_a_cluster_of_its_own() {
        let conf = config(Topology::Fig2, 1, 3);
        for (key, expected) in [
            ("bind_address", "198.19.0.12"),
            ("iftun_address", "198.19.0.12"),
            ("peer_address", "198.19.0.12"),
            ("hostname", "\"te2\""),
            ("pid_file", "\"/run/te-l2tpns.pid\""),
            ("primary_radius", "127.0.0.1"),
            ("primary_radius_port", "1812"),
            ("radius_secret", "\"l2tpkit-lab-radius\""),
            ("radius_authtypes", "\"chap,pap\""),
            ("allow_duplicate_users", "yes"),
            ("cluster_interface", "lo"),
            ("cluster_hb_interval", "1"),
            ("cluster_hb_timeout", "15"),
            ("send_garp", "no"),
            ("tundevicename", "l2tpns"),
        ] {
            assert_eq!(value(&conf, key), Some(expected), "{key} in\n{conf}");
        }
        assert_eq!(value(&conf, "l2tp_secret"), None);
        // Nothing that would write outside the run dir.
        assert_eq!(value(&conf, "log_file"), None);
        assert_eq!(value(&conf, "accounting_dir"), None);
    }

    #[test]
    fn fig4_binds_no_address_so_replies_leave_from_the_global_one() {
        let conf = config(Topology::Fig4, 0, 2);
        assert_eq!(value(&conf, "bind_address"), None, "{conf}");
        assert_eq!(value(&conf, "iftun_address"), Some("198.19.0.11"));
        assert_eq!(value(&conf, "peer_address"), Some("198.19.0.11"));
    }

    #[test]
    fn a_secret_is_quoted_or_refused() {
        let plan = Plan::new("l2k0abc", Topology::Fig2, 1, 1).unwrap();
        let node = plan.endpoints().next().unwrap();
        let with = |secret: &str| {
            LnsConfig {
                secret: Some(secret.into()),
                ..LnsConfig::for_endpoint(node, 0, 1).unwrap()
            }
            .text(Path::new("/p"))
        };
        assert_eq!(
            value(&with("tunnel secret").unwrap(), "l2tp_secret"),
            Some("\"tunnel secret\"")
        );
        for bad in ["a\"b", "a\\b", "a\nset debug 0"] {
            let error = with(bad).unwrap_err().to_string();
            assert!(error.contains("--secret"), "{error}");
        }
    }

    #[test]
    fn pools_are_the_endpoints_slices_of_the_ppp_pool() {
        let plan = Plan::new("l2k0abc", Topology::Fig2, 3, 1).unwrap();
        let node = plan.endpoints().nth(2).unwrap();
        let config = LnsConfig::for_endpoint(node, 2, 3).unwrap();
        assert_eq!(config.pool.to_string(), "198.19.192.0/19");
        assert_eq!(config.lns(), "198.19.0.13:1701".parse().unwrap());
    }
}
