//! `--endpoint-kind xl2tpd`: in every endpoint namespace an unmodified xl2tpd answers as the
//! LNS, and `l2tpkit agent` beside it reports its load to the master.
//!
//! There is no kernel PPP here, so xl2tpd runs in a mount namespace of its own with a two-line
//! pppd stand-in bind-mounted over `/usr/sbin/pppd` (it echoes every frame: each session is a
//! data loopback), and in a PID namespace of its own, so that the stand-ins die with it:
//!
//! ```text
//! ip netns exec <p>-te<i> unshare --pid --fork --kill-child --mount --propagation private \
//!   sh -c 'mount --bind STAND_IN /usr/sbin/pppd && exec xl2tpd -D -c CONF -s SECRETS -p PID -C CTL'
//! ```
//!
//! `unshare` is the process the lab records, `te<i>-xl2tpd` (log `RUN_DIR/te<i>-xl2tpd.log`,
//! files `RUN_DIR/te<i>-xl2tpd.*`). It blocks SIGINT and SIGTERM while it waits, so the lab's
//! signals go to xl2tpd, its child ([`sys::signal_to_end`]): on SIGINT (`lab down`) xl2tpd
//! sends a StopCCN on every tunnel and exits, on SIGKILL (`lab kill te1-xl2tpd`) it just dies;
//! the PID namespace takes the stand-ins along, and `unshare` reaps xl2tpd and exits. Should
//! `unshare` itself be killed, `--kill-child` ends xl2tpd.
//! xl2tpd is ready once its UDP port is bound ([`Readiness::UdpBound`]); its agent, the role
//! `te<i>`, starts after that. xl2tpd never takes the master over, and it cannot run PPP.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::instance::Lab;
use super::plan::{NodePlan, Segment};
use super::roles::{address, isolated, pool_slice, start_agents, PoolSlice};
use super::start::{Readiness, READY};
use super::sys;

/// The pppd stand-in: echoes every PPP frame back.
const STAND_IN_PPPD: &str = "#!/bin/sh\n\
# pppd stand-in for the lab's xl2tpd: no kernel PPP here. Echoes every PPP frame back.\n\
stty raw -echo 2>/dev/null\n\
exec cat\n";

/// Runs in the new mount and PID namespaces; `$1..$5` are paths, so nothing needs quoting.
const INNER: &str = "mount --bind \"$1\" /usr/sbin/pppd && \
exec xl2tpd -D -c \"$2\" -s \"$3\" -p \"$4\" -C \"$5\"";

/// What the stand-in is mounted over.
const PPPD: &str = "/usr/sbin/pppd";

const L2TP_PORT: u16 = 1701;

/// What `--endpoint-kind xl2tpd` needs on the machine, named with how to get it when missing.
pub(super) fn preflight() -> anyhow::Result<()> {
    let mut missing = Vec::new();
    if !sys::have("xl2tpd", "-v") {
        missing.push("xl2tpd");
    }
    if !sys::have("unshare", "--version") {
        missing.push("unshare (util-linux)");
    }
    if !Path::new(PPPD).exists() {
        missing.push("/usr/sbin/pppd (the pppd stand-in is mounted over it)");
    }
    if !missing.is_empty() {
        anyhow::bail!(
            "--endpoint-kind xl2tpd needs {}: install with `apt-get install -y xl2tpd ppp`",
            missing.join(", ")
        );
    }
    Ok(())
}

/// The `xl2tpd.conf` of one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LnsConfig {
    /// `listen-addr`: the LAN address in FIG 2; 0.0.0.0 in FIG 4, where xl2tpd must answer
    /// from its global address, which the kernel picks by route.
    pub(super) listen: Ipv4Addr,
    /// `hostname`: the Host Name AVP of its SCCRPs, the node's name (`te1`), as our endpoints
    /// say theirs (xl2tpd would say the machine's, the same for all).
    pub(super) host_name: String,
    /// `local ip` and `ip range` come from here, so no two endpoints hand out one address.
    pub(super) pool: PoolSlice,
    /// `challenge = yes`: the lab's `--secret` is in the secrets file.
    pub(super) challenge: bool,
    /// `max retries` (the lab's `--max-retransmits`); xl2tpd's default is 5 too.
    pub(super) max_retries: Option<u32>,
}

impl LnsConfig {
    /// Endpoint `i` (0-based) of `n`, without a secret or a retransmission limit.
    pub(super) fn for_endpoint(node: &NodePlan, i: usize, n: usize) -> anyhow::Result<Self> {
        let listen = match node.interface(Segment::Public) {
            Some(_) => Ipv4Addr::UNSPECIFIED,
            None => address(node, Segment::Lan)?,
        };
        Ok(LnsConfig {
            listen,
            host_name: node.short.clone(),
            pool: pool_slice(i, n),
            challenge: false,
            max_retries: None,
        })
    }

    /// The first address of the slice after its base is xl2tpd's own end of every session
    /// (`local ip`, outside `ip range`); the range is the rest but the slice's last address.
    pub(super) fn text(&self, secrets: &Path, pppopts: &Path) -> String {
        let yes_no = |on: bool| if on { "yes" } else { "no" };
        let mut conf = format!(
            "[global]\n\
             listen-addr = {}\n\
             port = {L2TP_PORT}\n\
             access control = no\n\
             force userspace = yes\n\
             auth file = {}\n",
            self.listen,
            secrets.display()
        );
        if let Some(n) = self.max_retries {
            conf.push_str(&format!("max retries = {n}\n"));
        }
        conf.push_str(&format!(
            "[lns default]\n\
             hostname = {}\n\
             ip range = {}-{}\n\
             local ip = {}\n\
             require authentication = no\n\
             refuse pap = yes\n\
             refuse chap = yes\n\
             challenge = {}\n\
             length bit = yes\n\
             pppoptfile = {}\n",
            self.host_name,
            self.pool.nth(2),
            self.pool.nth(self.pool.size() - 2),
            self.pool.nth(1),
            yes_no(self.challenge),
            pppopts.display()
        ));
        conf
    }
}

/// The files one xl2tpd is started with, all in the run dir.
struct Files {
    conf: PathBuf,
    secrets: PathBuf,
    pid: PathBuf,
    control: PathBuf,
}

fn write_files(
    run: &Path,
    short: &str,
    config: &LnsConfig,
    secret: Option<&str>,
) -> anyhow::Result<Files> {
    let file = |ext: &str| run.join(format!("{short}-xl2tpd.{ext}"));
    let files = Files {
        conf: file("conf"),
        secrets: file("secrets"),
        pid: file("pid"),
        control: file("ctl"),
    };
    let pppopts = file("pppopts");
    let secret_line = secret.map(|s| format!("*\t*\t{s}\n")).unwrap_or_default();
    let write = |path: &Path, text: String, mode: u32| {
        std::fs::write(path, text)
            .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)))
            .with_context(|| format!("writing {}", path.display()))
    };
    write(&pppopts, String::new(), 0o644)?;
    write(
        &files.secrets,
        format!("# us them secret\n{secret_line}"),
        0o600,
    )?;
    write(&files.conf, config.text(&files.secrets, &pppopts), 0o644)?;
    Ok(files)
}

/// Starts xl2tpd in every endpoint namespace and waits until each has bound its port, then an
/// `l2tpkit agent` beside each (the role `te<i>`), waited on until it writes its status file;
/// the agents' metrics targets.
pub(super) fn start_endpoints(
    lab: &Lab,
    key: &str,
    master_lan: Ipv4Addr,
) -> anyhow::Result<Vec<String>> {
    let run = lab.run_dir();
    let stand_in = run.join("pppd-stand-in");
    std::fs::write(&stand_in, STAND_IN_PPPD)
        .and_then(|()| std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)))
        .with_context(|| format!("writing {}", stand_in.display()))?;
    let endpoints: Vec<&NodePlan> = lab.plan().endpoints().collect();
    let mut daemons = Vec::new();
    for (i, node) in endpoints.iter().enumerate() {
        let config = LnsConfig {
            challenge: lab.secret.is_some(),
            max_retries: lab.max_retransmits,
            ..LnsConfig::for_endpoint(node, i, endpoints.len())?
        };
        let files = write_files(run, &node.short, &config, lab.secret.as_deref())?;
        let args = isolated(
            INNER,
            &[
                &stand_in,
                &files.conf,
                &files.secrets,
                &files.pid,
                &files.control,
            ],
        );
        let name = format!("{}-xl2tpd", node.short);
        let log = run.join(format!("{name}.log"));
        let process = lab.spawn_in(&name, &node.namespace, "unshare", args, &log)?;
        let ready = Readiness::UdpBound {
            namespace: node.namespace.clone(),
            addr: SocketAddrV4::new(config.listen, L2TP_PORT),
        };
        daemons.push((process, ready));
        sys::step()?;
    }
    for (process, ready) in &daemons {
        lab.wait_ready(process, ready, READY)?;
    }
    start_agents(lab, key, master_lan, L2TP_PORT, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::plan::{Plan, Topology};

    fn config(topology: Topology, i: usize, n: usize) -> String {
        let plan = Plan::new("l2k0abc", topology, n, 1).unwrap();
        let node = plan.endpoints().nth(i).unwrap();
        LnsConfig::for_endpoint(node, i, n).unwrap().text(
            Path::new("/run/te-xl2tpd.secrets"),
            Path::new("/run/te.pppopts"),
        )
    }

    fn value<'a>(conf: &'a str, key: &str) -> &'a str {
        conf.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(" = "))
            .unwrap_or_else(|| panic!("no {key} in\n{conf}"))
    }

    fn pool(conf: &str) -> (Ipv4Addr, Ipv4Addr, Ipv4Addr) {
        let (first, last) = value(conf, "ip range").split_once('-').unwrap();
        let local = value(conf, "local ip").parse().unwrap();
        (first.parse().unwrap(), last.parse().unwrap(), local)
    }

    fn in_ppp_pool(a: Ipv4Addr) -> bool {
        u32::from(a) >> 15 == u32::from(Ipv4Addr::new(198, 19, 128, 0)) >> 15
    }

    #[test]
    fn fig2_listens_on_the_lan_address_with_its_own_pool_slice() {
        let conf = config(Topology::Fig2, 1, 3);
        assert_eq!(value(&conf, "listen-addr"), "198.19.0.12");
        assert_eq!(value(&conf, "port"), "1701");
        assert_eq!(value(&conf, "hostname"), "te2");
        // te2 of 3: the second /19 of 198.19.128.0/17.
        let (first, last, local) = pool(&conf);
        assert_eq!(local, Ipv4Addr::new(198, 19, 160, 1));
        assert_eq!(first, Ipv4Addr::new(198, 19, 160, 2));
        assert_eq!(last, Ipv4Addr::new(198, 19, 191, 254));
        for line in [
            "[lns default]",
            "access control = no",
            "force userspace = yes",
            "require authentication = no",
            "refuse pap = yes",
            "refuse chap = yes",
            "challenge = no",
            "length bit = yes",
            "auth file = /run/te-xl2tpd.secrets",
            "pppoptfile = /run/te.pppopts",
        ] {
            assert!(conf.lines().any(|l| l == line), "{line} missing in\n{conf}");
        }
        assert!(!conf.contains("max retries"), "{conf}");
    }

    #[test]
    fn fig4_listens_on_every_address() {
        let conf = config(Topology::Fig4, 0, 2);
        assert_eq!(value(&conf, "listen-addr"), "0.0.0.0");
        assert_eq!(
            pool(&conf),
            (
                Ipv4Addr::new(198, 19, 128, 2),
                Ipv4Addr::new(198, 19, 191, 254),
                Ipv4Addr::new(198, 19, 128, 1)
            )
        );
    }

    #[test]
    fn pools_stay_inside_the_ppp_pool_and_apart() {
        for n in [1, 2, 3, 7, 64, 240] {
            let mut seen: Vec<(u32, u32)> = Vec::new();
            for i in 0..n {
                let (first, last, local) = pool(&config(Topology::Fig2, i, n));
                assert!([first, last, local].into_iter().all(in_ppp_pool), "{n}/{i}");
                let (first, last, local) = (u32::from(first), u32::from(last), u32::from(local));
                assert!(first <= last, "{n}/{i}");
                // xl2tpd's own end is no subscriber's address.
                assert!(!(first..=last).contains(&local), "{n}/{i}");
                for &(a, b) in &seen {
                    assert!(last < a || first > b, "{n}/{i} overlaps");
                }
                seen.push((first.min(local), last.max(local)));
            }
        }
    }

    #[test]
    fn a_secret_challenges_and_a_retransmission_limit_is_kept() {
        let conf = LnsConfig {
            listen: Ipv4Addr::new(198, 19, 0, 11),
            host_name: "te1".into(),
            pool: pool_slice(0, 1),
            challenge: true,
            max_retries: Some(12),
        }
        .text(Path::new("/s"), Path::new("/o"));
        assert_eq!(value(&conf, "challenge"), "yes");
        assert_eq!(value(&conf, "max retries"), "12");
    }
}
