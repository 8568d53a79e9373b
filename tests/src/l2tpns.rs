//! A real PPP-speaking LNS for end-to-end tests: l2tpns (Debian's 2.4.1) with FreeRADIUS as its
//! RADIUS server, each in a network namespace of its own, and an initiator namespace from which
//! our LAC and probes dial it. [`L2tpns::start`] builds it all; dropping the [`L2tpns`] (also
//! when the test panics) stops both daemons by PID and removes the namespaces. Every name
//! carries a per-run prefix ([`L2tpns::prefix`]).
//!
//! ```text
//!  PREFIX-ini                PREFIX-lns                         PREFIX-rad
//!  PREFIXpi ──────────────── PREFIXpl          PREFIXrl ──────── PREFIXrr
//!  198.18.0.2(+n)/24         198.18.0.1/24     198.19.0.1/24     198.19.0.2/24
//!  (our LAC, probes)         l2tpns :1701, tun PREFIXt,          FreeRADIUS :1812
//!                            pool e.g. 198.19.200.0/24
//! ```
//!
//! # How l2tpns runs here (see `/work/shared/PEERS.md`, "l2tpns")
//!
//! * It reads `/etc/l2tpns/ip_pool` and `/etc/l2tpns/users` whatever its configuration says: the
//!   run's own files are bind-mounted over them in a private mount namespace
//!   ([`crate::proc::Daemon`]), and it runs as the init of a PID namespace, so its
//!   `kill(0, SIGTERM)` (it signals its whole process group when it leaves a cluster) reaches
//!   nothing of the test.
//! * It answers nothing until it has declared itself the cluster master. By default it waits
//!   15 s for a heartbeat first (`cluster_hb_timeout` 150 tenths); the harness sets the smallest
//!   values l2tpns accepts, a heartbeat every 0.1 s and a timeout of 1.5 s (it raises any
//!   timeout below `4 × interval + 1.1 s`), and it is ready about 1 s after its start. That is
//!   safe because it is alone on its segments: the heartbeats go out on the LAN veth, where only
//!   FreeRADIUS hears them.
//! * It matches an SCCRQ to a tunnel being opened by the sender's address and port only: a second
//!   SCCRQ from the same socket while the first tunnel is still opening is taken for a
//!   retransmission of the first ("Duplicate SCCRQ?") and dropped, so that tunnel waits for our
//!   retransmission (1 s, 2 s, …). Dial with one outstanding SCCRQ per source address
//!   (`--initiators N --max-outstanding N`): [`L2tpnsOptions::initiators`] puts N addresses on
//!   the initiator's interface.
//! * After ICCN it sends an LCP Configure-Request asking for CHAP-MD5 (or PAP, as
//!   [`L2tpnsOptions::auth`] says) and authenticates every session against FreeRADIUS; a wrong
//!   password ends the call with a CDN (result code 3). Useful log needles: "New tunnel from",
//!   "Received ICCN", "LCP: send ConfigReq", "Login by USER at ADDR", "Received StopCCN".
//!
//! The run directory (configurations, logs) is removed after a pass and kept after a failure
//! (a panic while the harness lives, or a failed start), or always with `L2TPKIT_KEEP_RUN=1`.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::netns::{run_prefix, Netns};
use crate::proc::{tail, temp_dir, Daemon, Proc};
use crate::radius::{self, FreeRadius, RadiusConfig, RadiusReply};
use crate::require;

/// Longer than l2tpns's default 15 s election, should the short one be refused.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// l2tpns needs ~1.6 s to shut down on SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);
const READY: &str = "I am declaring myself the master!";

pub const LNS_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The first initiator address; more follow it ([`L2tpnsOptions::initiators`]).
pub const INITIATOR_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const LAN_ADDR: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
pub const RADIUS_ADDR: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);

/// The authentication l2tpns asks for first in its LCP Configure-Request
/// (`radius_authtypes`); the other one is still accepted after a Configure-Nak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PppAuth {
    Chap,
    Pap,
}

impl PppAuth {
    fn authtypes(self) -> &'static str {
        match self {
            PppAuth::Chap => "chap,pap",
            PppAuth::Pap => "pap,chap",
        }
    }
}

/// What [`L2tpns::start`] sets up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2tpnsOptions {
    /// FreeRADIUS's users, `(name, password)`.
    pub users: Vec<(String, String)>,
    pub auth: PppAuth,
    /// l2tpns's address pool, `ADDR/LEN` inside 198.19.128.0/17.
    pub pool: String,
    /// RADIUS shared secret between l2tpns and FreeRADIUS.
    pub radius_secret: String,
    /// `l2tp_secret`: the tunnel secret (Challenge AVPs); none by default.
    pub l2tp_secret: Option<String>,
    /// Addresses on the initiator's interface, from [`INITIATOR_ADDR`] up (1..=200).
    pub initiators: u8,
    /// `primary_dns` and `secondary_dns`, handed out in IPCP (RFC 1877).
    pub dns: (Option<Ipv4Addr>, Option<Ipv4Addr>),
    /// More `set key value` lines for l2tpns's configuration.
    pub extra_config: Vec<String>,
}

impl Default for L2tpnsOptions {
    fn default() -> Self {
        L2tpnsOptions {
            users: Vec::new(),
            auth: PppAuth::Chap,
            pool: "198.19.200.0/24".to_string(),
            radius_secret: "l2tpkit-radius".to_string(),
            l2tp_secret: None,
            initiators: 1,
            dns: (None, None),
            extra_config: Vec::new(),
        }
    }
}

/// Checks what [`L2tpns::start`] needs: root, `l2tpns`, `freeradius`, `ip`, `unshare` and
/// `/dev/net/tun`. Under `CI=true` anything missing fails the test loudly; elsewhere this prints
/// `SKIPPED: ...` and returns false.
pub fn available() -> bool {
    if !["l2tpns", "freeradius", "ip", "unshare"]
        .into_iter()
        .all(require)
    {
        return false;
    }
    if !nix::unistd::geteuid().is_root() {
        return crate::require_that(false, "l2tpns tests need root (namespaces, bind mounts)");
    }
    crate::require_that(
        Path::new("/dev/net/tun").exists(),
        "/dev/net/tun is missing: l2tpns runs PPP over a tun device",
    )
}

/// l2tpns + FreeRADIUS + an initiator namespace (see the module documentation).
#[derive(Debug)]
pub struct L2tpns {
    prefix: String,
    dir: PathBuf,
    options: L2tpnsOptions,
    /// Initiator, LNS, RADIUS, in that order.
    namespaces: Vec<Netns>,
    radius: Option<FreeRadius>,
    l2tpns: Option<Daemon>,
    /// Keep `dir` when dropped: set when the start fails.
    keep: bool,
    started_in: Duration,
}

impl L2tpns {
    /// Creates the namespaces, starts FreeRADIUS, then l2tpns, and returns once l2tpns has
    /// declared itself master (about 1.5 s in all). On failure nothing is left running, the run
    /// directory is kept and the error says where.
    pub fn start(options: &L2tpnsOptions) -> io::Result<L2tpns> {
        check_pool(&options.pool)?;
        if !(1..=200).contains(&options.initiators) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "initiators: 1..=200",
            ));
        }
        let started = Instant::now();
        let mut harness = L2tpns::namespaces(options)?;
        match harness.start_daemons() {
            Ok(()) => {
                harness.started_in = started.elapsed();
                Ok(harness)
            }
            Err(err) => {
                harness.keep = true;
                Err(io::Error::new(
                    err.kind(),
                    format!("{err}\n(run directory kept: {})", harness.dir.display()),
                ))
            }
        }
    }

    /// A fresh prefix (skipping leftovers of killed runs), its run directory and namespaces.
    fn namespaces(options: &L2tpnsOptions) -> io::Result<L2tpns> {
        let mut attempts = 0;
        let (prefix, initiator) = loop {
            let prefix = run_prefix("l2n");
            match Netns::add(&format!("{prefix}-ini")) {
                Ok(ns) => break (prefix, ns),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists && attempts < 20 => {
                    attempts += 1
                }
                Err(err) => return Err(err),
            }
        };
        let mut harness = L2tpns {
            dir: temp_dir(&format!("l2tpns-{prefix}"))?,
            prefix,
            options: options.clone(),
            namespaces: vec![initiator],
            radius: None,
            l2tpns: None,
            keep: false,
            started_in: Duration::ZERO,
        };
        let p = harness.prefix.clone();
        for suffix in ["lns", "rad"] {
            harness
                .namespaces
                .push(Netns::add(&format!("{p}-{suffix}"))?);
        }
        let [ini, lns, rad] = &harness.namespaces[..] else {
            unreachable!("three namespaces were just made");
        };
        lns.veth(&format!("{p}pl"), ini, &format!("{p}pi"))?;
        lns.veth(&format!("{p}rl"), rad, &format!("{p}rr"))?;
        lns.address(&format!("{p}pl"), &[LNS_ADDR], 24)?;
        ini.address(&format!("{p}pi"), &harness.initiator_addrs(), 24)?;
        lns.address(&format!("{p}rl"), &[LAN_ADDR], 24)?;
        rad.address(&format!("{p}rr"), &[RADIUS_ADDR], 24)?;
        Ok(harness)
    }

    fn start_daemons(&mut self) -> io::Result<()> {
        let radius = FreeRadius::start(
            &self.dir,
            self.radius_netns(),
            &RadiusConfig {
                users: self.options.users.clone(),
                secret: self.options.radius_secret.clone(),
                clients: (LAN_ADDR, 24),
            },
        )?;
        self.radius = Some(radius);
        let dir = &self.dir;
        let conf = dir.join("startup-config");
        fs::write(&conf, self.config())?;
        let pool = dir.join("ip_pool");
        fs::write(&pool, format!("{}\n", self.options.pool))?;
        // The CLI users (none): not the PPP users, which are FreeRADIUS's.
        let users = dir.join("users");
        fs::write(&users, "")?;
        let log = dir.join("l2tpns.log");
        let script = "mount --bind \"$1\" /etc/l2tpns/ip_pool && \
                      mount --bind \"$2\" /etc/l2tpns/users && exec l2tpns -c \"$3\"";
        let daemon = Daemon::spawn(
            format!("l2tpns in {}", self.lns_netns()),
            Some(self.lns_netns()),
            script,
            &[&pool, &users, &conf],
            dir,
            &dir.join("l2tpns.out"),
            &log,
        )?;
        let ready = daemon.wait_for(READY, 1, START_TIMEOUT);
        self.l2tpns = Some(daemon);
        ready.map(drop).map_err(|err| {
            let out = fs::read_to_string(self.dir.join("l2tpns.out")).unwrap_or_default();
            io::Error::other(format!("{err}\noutput:\n{out}"))
        })
    }

    fn config(&self) -> String {
        let dir = &self.dir;
        let o = &self.options;
        let mut lines = vec![
            "set debug 3".to_string(),
            format!("set log_file \"{}\"", dir.join("l2tpns.log").display()),
            format!("set pid_file \"{}\"", dir.join("l2tpns.pid").display()),
            format!("set bind_address {LNS_ADDR}"),
            format!("set primary_radius {RADIUS_ADDR}"),
            format!("set radius_secret \"{}\"", o.radius_secret),
            format!("set radius_authtypes \"{}\"", o.auth.authtypes()),
            format!("set cluster_interface {}rl", self.prefix),
            format!("set tundevicename {}t", self.prefix),
            "set send_garp no".to_string(),
            // One login may hold several sessions: the probes and the LAC log in as one user
            // from calls that overlap (a CDN'd session lingers at l2tpns), and l2tpns's default
            // shuts the older one down ("Duplicate session for users").
            "set allow_duplicate_users yes".to_string(),
            "set cli_bind_address 127.0.0.1".to_string(),
            // The fastest election l2tpns allows (module documentation).
            "set cluster_hb_interval 1".to_string(),
            "set cluster_hb_timeout 15".to_string(),
        ];
        if let Some(secret) = &o.l2tp_secret {
            lines.push(format!("set l2tp_secret \"{secret}\""));
        }
        if let Some(dns) = o.dns.0 {
            lines.push(format!("set primary_dns {dns}"));
        }
        if let Some(dns) = o.dns.1 {
            lines.push(format!("set secondary_dns {dns}"));
        }
        lines.extend(o.extra_config.iter().cloned());
        lines.join("\n") + "\n"
    }

    /// Where l2tpns listens: `198.18.0.1:1701`.
    pub fn lns_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(LNS_ADDR, 1701)
    }

    /// The namespace our LAC and probes run in.
    pub fn initiator_netns(&self) -> &str {
        self.namespaces[0].name()
    }

    /// The first initiator address (for `--bind ADDR:0`).
    pub fn initiator_addr(&self) -> Ipv4Addr {
        INITIATOR_ADDR
    }

    /// All of them, consecutive from [`INITIATOR_ADDR`] (for `--initiators N`).
    pub fn initiator_addrs(&self) -> Vec<Ipv4Addr> {
        let first = u32::from(INITIATOR_ADDR);
        (0..u32::from(self.options.initiators))
            .map(|i| Ipv4Addr::from(first + i))
            .collect()
    }

    /// `ip netns exec INITIATOR program`: add the arguments and run it.
    pub fn initiator_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", self.initiator_netns()])
            .arg(program);
        command
    }

    pub fn lns_netns(&self) -> &str {
        self.namespaces[1].name()
    }

    pub fn radius_netns(&self) -> &str {
        self.namespaces[2].name()
    }

    pub fn radius_addr(&self) -> Ipv4Addr {
        RADIUS_ADDR
    }

    pub fn options(&self) -> &L2tpnsOptions {
        &self.options
    }

    /// The per-run prefix of every namespace and interface name (and of the run directory's).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The run directory: configurations, `l2tpns.log`, `radius.log`, FreeRADIUS's `raddb`.
    pub fn run_dir(&self) -> &Path {
        &self.dir
    }

    /// How long [`L2tpns::start`] took, namespaces to l2tpns's readiness.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    fn lns(&self) -> &Daemon {
        self.l2tpns.as_ref().expect("l2tpns runs once started")
    }

    fn freeradius(&self) -> &FreeRadius {
        self.radius.as_ref().expect("FreeRADIUS runs once started")
    }

    /// l2tpns's log so far (`debug 3`: every control message, LCP, RADIUS).
    pub fn log(&self) -> String {
        self.lns().log()
    }

    /// How often `needle` occurs in l2tpns's log.
    pub fn count(&self, needle: &str) -> usize {
        self.lns().count(needle)
    }

    /// Waits until `needle` occurs `count` times in l2tpns's log; the error carries the tail.
    pub fn wait_for(
        &self,
        needle: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<String, String> {
        self.lns().wait_for(needle, count, timeout)
    }

    /// FreeRADIUS's log so far (one "Login OK" / "Login incorrect" line per request).
    pub fn radius_log(&self) -> String {
        self.freeradius().log()
    }

    /// Access-Accepts FreeRADIUS logged for `user`.
    pub fn logins_ok(&self, user: &str) -> usize {
        self.freeradius().logins_ok(user)
    }

    /// Access-Rejects for a wrong password FreeRADIUS logged for `user`.
    pub fn logins_incorrect(&self, user: &str) -> usize {
        self.freeradius().logins_incorrect(user)
    }

    /// `radtest` from l2tpns's namespace with l2tpns's secret (PAP, or CHAP with `chap`).
    pub fn radtest(&self, user: &str, password: &str, chap: bool) -> io::Result<RadiusReply> {
        radius::radtest(
            self.lns_netns(),
            RADIUS_ADDR,
            &self.options.radius_secret,
            user,
            password,
            chap,
        )
    }

    /// Every process of both daemons now (`unshare`, l2tpns, FreeRADIUS).
    pub fn processes(&self) -> Vec<Proc> {
        let mut all = self
            .l2tpns
            .as_ref()
            .map(Daemon::processes)
            .unwrap_or_default();
        all.extend(self.radius.iter().flat_map(FreeRadius::processes));
        all
    }

    /// Stops l2tpns, then FreeRADIUS, by PID; removes the namespaces, and the run directory
    /// unless it is to be kept. Returns (l2tpns's log, FreeRADIUS's log).
    pub fn stop(mut self) -> (String, String) {
        self.shutdown()
    }

    /// Idempotent; never panics (it runs in `Drop`).
    fn shutdown(&mut self) -> (String, String) {
        let lns_log = self
            .l2tpns
            .take()
            .map(|mut d| d.stop(Signal::SIGTERM, STOP_GRACE))
            .unwrap_or_default();
        let radius_log = self.radius.take().map(|mut r| r.stop()).unwrap_or_default();
        // The daemons are gone, so nothing holds the namespaces any more.
        self.namespaces.clear();
        let failed = self.keep || std::thread::panicking();
        let keep_anyway = std::env::var("L2TPKIT_KEEP_RUN").as_deref() == Ok("1");
        if failed && !lns_log.is_empty() {
            eprintln!(
                "l2tpns run {} kept at {}; l2tpns log tail:\n{}\nFreeRADIUS log tail:\n{}",
                self.prefix,
                self.dir.display(),
                tail(&lns_log, 30),
                tail(&radius_log, 10)
            );
        }
        if !(failed || keep_anyway) {
            let _ = fs::remove_dir_all(&self.dir);
        }
        (lns_log, radius_log)
    }
}

impl Drop for L2tpns {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// `ADDR/LEN` inside 198.19.128.0/17 (the PPP pools of the project's address rules).
fn check_pool(pool: &str) -> io::Result<()> {
    let invalid =
        |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("pool {pool:?}: {why}"));
    let (addr, len) = pool
        .split_once('/')
        .ok_or_else(|| invalid("not ADDR/LEN"))?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| invalid("bad address"))?;
    let len: u8 = len.parse().map_err(|_| invalid("bad length"))?;
    if !(17..=30).contains(&len) {
        return Err(invalid("length must be 17..=30"));
    }
    let inside = u32::from(addr) & 0xffff_8000 == u32::from(Ipv4Addr::new(198, 19, 128, 0));
    if !inside {
        return Err(invalid("must lie in 198.19.128.0/17"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_stay_in_the_ppp_range() {
        assert!(check_pool("198.19.200.0/24").is_ok());
        assert!(check_pool("198.19.128.0/17").is_ok());
        for bad in [
            "198.19.0.0/24",
            "10.0.0.0/24",
            "198.19.200.0",
            "198.19.200.0/16",
            "x/24",
        ] {
            assert!(check_pool(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn auth_order() {
        assert_eq!(PppAuth::Chap.authtypes(), "chap,pap");
        assert_eq!(PppAuth::Pap.authtypes(), "pap,chap");
    }
}
