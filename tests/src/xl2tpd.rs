//! Real xl2tpd peers for end-to-end tests: [`Xl2tpd::start`] writes a configuration, starts
//! xl2tpd as an LNS or a LAC on a 127.0.0.0/8 address (or inside a network namespace), and
//! [`Xl2tpd::stop`] (or `Drop`, also when the test panics) ends it and everything it started, and
//! removes its temporary directory.
//!
//! # How xl2tpd runs here
//!
//! There is no kernel PPP on the test machines, so a two-line pppd stand-in is bind-mounted over
//! `/usr/sbin/pppd` inside a private mount namespace (see `/work/shared/PEERS.md`):
//!
//! ```text
//! unshare --pid --fork --kill-child --mount --propagation private \
//!   sh -c 'mount --bind FAKE_PPPD /usr/sbin/pppd && exec xl2tpd -D -c CONF -s SECRETS -p PIDFILE -C CONTROL'
//! ```
//!
//! The command also gets its own PID namespace (`--pid --fork`), with xl2tpd as its init, as
//! every daemon of [`crate::proc::Daemon`]: xl2tpd puts itself in a new session and does not kill
//! its pppd stand-ins on SIGTERM, and the PID namespace ends them all with it, so
//! [`Xl2tpd::stop`] only has to signal xl2tpd and `wait()` for `unshare`.
//!
//! With [`Xl2tpdOptions::netns`] set (a lab's initiator namespace, say) the command is prefixed
//! with `ip netns exec NS`; the cleanup is unchanged. The temporary directory stays reachable:
//! `ip netns exec` only remounts `/sys` and makes `/` a slave.
//!
//! # The pppd stand-in: a data loopback
//!
//! Both roles run `stty raw -echo; exec cat` as pppd: every PPP frame that reaches xl2tpd over
//! the session is written back unchanged. Against an xl2tpd LNS, an l2tpkit LAC's LCP
//! Echo-Requests therefore come back as the *same Echo-Requests* (same code 9, identifier and
//! magic number), not as Echo-Replies: the LAC tests count echoed frames, they do not expect
//! replies. The stand-in never originates a frame, so xl2tpd on both ends is quiet; never inject a
//! data frame into an xl2tpd-to-xl2tpd session, it would bounce between the two echoes forever.
//!
//! # What xl2tpd does (1.3.18, Debian 12)
//!
//! * Logs go to stderr with `-D`; the harness sends stdout and stderr to `xl2tpd.log` in the
//!   temporary directory. Useful needles: `"Listening on IP address"`,
//!   `"Connection established to"`, `"Call established with"`; after `d cluster` the LAC logs
//!   `"Disconnecting from"` and `"Connection N closed to ADDR, port P (Goodbye!)"` (N is the
//!   *peer's* tunnel ID); the end that receives a StopCCN or a CDN logs
//!   `"control_finish: Connection closed to ADDR, port P (reason), Local: .."` or
//!   `"... Connection closed to ADDR, serial S (reason)"`. With `challenge = yes` and a wrong
//!   secret the LAC rejects the SCCRP: `"(Invalid challenge authentication)"`. The pppd
//!   stand-ins share the log (`cat: -: Input/output error` when their call closes).
//! * SIGTERM (what [`Xl2tpd::stop`] sends) makes an xl2tpd in userspace mode exit at once without
//!   a StopCCN; SIGINT ([`Xl2tpd::stop_with_stopccn`]) sends a StopCCN on every tunnel first (it
//!   does not wait for the acknowledgement).
//! * Control pipe (`xl2tpd -C`): `c cluster` dials (when `autodial = no`), `d cluster` tears the
//!   tunnel down (StopCCN), `h <local call id>` hangs up one call (CDN; the *numeric* local call
//!   ID, `h cluster` does nothing). xl2tpd reads the pipe, then closes and reopens it, so two
//!   lines written back to back can merge into one garbled command: [`Xl2tpd::control`] waits
//!   until xl2tpd has handled each command (it uses the `@result-file` prefix of the protocol).
//! * One tunnel and one call per `[lac]` section. `c cluster` again answers "Session 'cluster'
//!   already active!"; after the call is hung up, `c cluster` places a new call in the same
//!   tunnel. `c <local tunnel id>` places a second concurrent call but **crashes the LAC**
//!   (segfault, the call has no `lac` entry when pppd options are built), so the harness offers
//!   one call per LAC.
//! * `hidden bit = yes` in the stock build never sets the H bit: it only adds a Random Vector AVP
//!   (see `captures/record.sh`).

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

pub use crate::proc::Proc;
use crate::proc::{lock, tail, temp_dir, Daemon, POLL};
use crate::require;

/// How long [`Xl2tpd::start`] waits for xl2tpd to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Xl2tpd::control`] waits for xl2tpd to take a command.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// SIGTERM (or SIGINT) grace period before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The pppd stand-in: echoes every PPP frame (see the module documentation).
const FAKE_PPPD: &str = "#!/bin/sh\n\
# pppd stand-in for l2tpkit tests: no kernel PPP here. Echoes every PPP frame back.\n\
stty raw -echo 2>/dev/null\n\
exec cat\n";

/// Runs in the new mount + PID namespace; `$1..$5` are the paths, so nothing needs quoting.
const INNER: &str = "mount --bind \"$1\" /usr/sbin/pppd && \
exec xl2tpd -D -c \"$2\" -s \"$3\" -p \"$4\" -C \"$5\"";

/// Settings shared by both roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xl2tpdOptions {
    /// `listen-addr`: the address xl2tpd binds (and, for a LAC, sends from).
    pub listen: Ipv4Addr,
    /// `port`: the UDP port xl2tpd binds (1701).
    pub port: u16,
    /// Tunnel secret; written to the secrets file as `* * secret` (any host names).
    pub secret: Option<String>,
    /// `hidden bit = yes` (the stock xl2tpd then only adds a Random Vector AVP).
    pub hidden: bool,
    /// `challenge = yes` (needs `secret`).
    pub challenge: bool,
    /// `debug avp/network/state/tunnel = yes`: every message in the log.
    pub debug: bool,
    /// The network namespace to run in (`ip netns exec NS unshare …`, e.g. a lab's initiator
    /// namespace); `None` runs in the test's own namespace.
    pub netns: Option<String>,
}

impl Default for Xl2tpdOptions {
    fn default() -> Self {
        Xl2tpdOptions {
            listen: Ipv4Addr::new(127, 0, 0, 2),
            port: 1701,
            secret: None,
            hidden: false,
            challenge: false,
            debug: false,
            netns: None,
        }
    }
}

impl Xl2tpdOptions {
    /// Defaults (port 1701, no secret, no debug) listening on `listen`.
    pub fn on(listen: Ipv4Addr) -> Self {
        Xl2tpdOptions {
            listen,
            ..Xl2tpdOptions::default()
        }
    }
}

/// Which end xl2tpd plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Xl2tpdEnd {
    /// `[lns default]`: answers anyone (`access control = no`, no PPP authentication).
    Lns,
    /// `[lac cluster]` with `lns = ADDR:PORT`, `redial = no`. With `autodial` xl2tpd dials one
    /// tunnel and one call at start; without it, send `c cluster` through [`Xl2tpd::control`].
    Lac {
        /// The LNS (or cluster) address to dial.
        lns: SocketAddrV4,
        autodial: bool,
    },
}

/// Checks what [`Xl2tpd::start`] needs: `xl2tpd` and `unshare` on PATH, root, and a
/// `/usr/sbin/pppd` to bind-mount over. Under `CI=true` anything missing fails the test loudly
/// (panics); elsewhere this prints `SKIPPED: ...` and returns false.
pub fn available() -> bool {
    if !require("xl2tpd") || !require("unshare") {
        return false;
    }
    if !nix::unistd::geteuid().is_root() {
        return crate::require_that(
            false,
            "xl2tpd tests need root (mount namespace, bind mount over /usr/sbin/pppd)",
        );
    }
    crate::require_that(
        Path::new("/usr/sbin/pppd").exists(),
        "/usr/sbin/pppd is missing (install ppp): the pppd stand-in is mounted over it",
    )
}

/// Two addresses for one test, in 127.66.0.0/16, so tests can run in parallel without sharing
/// `ADDR:1701`: `127.66.x.y` and `127.66.x.y+1`, where `x` (1..=254) and the even `y`
/// (2..=252) come from an FNV-1a hash of `test_name`, so a test normally gets the same pair on
/// every run (handy when reading captures and logs). Neither address ends in .0 or .255.
///
/// A pair is reserved for the rest of the process by binding the abstract Unix socket
/// `@l2tpkit-loopback-127.66.x.y` (released by the kernel when the process ends, however it
/// ends; nothing on disk). A pair that is already reserved (by this or another test process,
/// e.g. two `cargo test` runs at once) or where UDP port 1701 is already bound on either address
/// (e.g. an xl2tpd started by hand) is skipped and the next one is tried.
pub fn loopback_pair(test_name: &str) -> (Ipv4Addr, Ipv4Addr) {
    static RESERVED: Mutex<Vec<UnixDatagram>> = Mutex::new(Vec::new());
    let mut reserved = lock(&RESERVED);
    let mut hash: u32 = 0x811c_9dc5;
    for byte in test_name.bytes() {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    const SLOTS: u32 = 254 * 126;
    for step in 0..SLOTS {
        let slot = hash.wrapping_add(step) % SLOTS;
        let x = (slot / 126 + 1) as u8; // 1..=254
        let y = ((slot % 126 + 1) * 2) as u8; // 2..=252
        let pair = (
            Ipv4Addr::new(127, 66, x, y),
            Ipv4Addr::new(127, 66, x, y + 1),
        );
        let Ok(name) = SocketAddr::from_abstract_name(format!("l2tpkit-loopback-{}", pair.0))
        else {
            continue;
        };
        let Ok(reservation) = UnixDatagram::bind_addr(&name) else {
            continue; // reserved by this or another process
        };
        let free = |addr: Ipv4Addr| UdpSocket::bind(SocketAddrV4::new(addr, 1701)).is_ok();
        if free(pair.0) && free(pair.1) {
            reserved.push(reservation);
            return pair;
        }
    }
    panic!("no free address pair left in 127.66.0.0/16");
}

/// A running xl2tpd (see the module documentation). Stop it with [`Xl2tpd::stop`]; dropping it
/// does the same cleanup.
pub struct Xl2tpd {
    /// `unshare` and xl2tpd under it; its log is `xl2tpd.log` in `dir`.
    daemon: Daemon,
    listen: SocketAddrV4,
    dir: PathBuf,
    control_path: PathBuf,
    /// Serialises control commands; counts them to name the reply files.
    control_seq: Mutex<u64>,
}

impl std::fmt::Debug for Xl2tpd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Xl2tpd")
            .field("pid", &self.daemon.pid())
            .field("listen", &self.listen)
            .field("dir", &self.dir)
            .finish()
    }
}

/// The files xl2tpd is started with: pppd stand-in, configuration, secrets.
fn write_files(dir: &Path, role: Xl2tpdEnd, options: &Xl2tpdOptions) -> io::Result<[PathBuf; 3]> {
    let fake = dir.join("fake-pppd");
    fs::write(&fake, FAKE_PPPD)?;
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755))?;
    let pppopts = dir.join("options.empty");
    fs::write(&pppopts, "")?;
    let secrets = dir.join("l2tp-secrets");
    let secret_line = match &options.secret {
        Some(secret) => format!("*\t*\t{secret}\n"),
        None => String::new(),
    };
    fs::write(&secrets, format!("# us them secret\n{secret_line}"))?;
    fs::set_permissions(&secrets, fs::Permissions::from_mode(0o600))?;
    let conf = dir.join("xl2tpd.conf");
    fs::write(&conf, config(role, options, &secrets, &pppopts))?;
    Ok([fake, conf, secrets])
}

impl Xl2tpd {
    /// Writes the configuration, the secrets file, an empty pppd options file and the pppd
    /// stand-in into a new temporary directory, starts xl2tpd, and returns once its log says it
    /// listens (at most 10 s). On failure the error carries the log and nothing is left running.
    pub fn start(role: Xl2tpdEnd, options: &Xl2tpdOptions) -> io::Result<Xl2tpd> {
        let listen = SocketAddrV4::new(options.listen, options.port);
        let dir = temp_dir("xl2tpd")?;
        let control_path = dir.join("xl2tpd.ctl");
        let log_path = dir.join("xl2tpd.log");
        let spawned = write_files(&dir, role, options).and_then(|[fake, conf, secrets]| {
            let pid_file = dir.join("xl2tpd.pid");
            let args = [&*fake, &*conf, &*secrets, &*pid_file, &*control_path];
            Daemon::spawn(
                format!("xl2tpd on {listen}"),
                options.netns.as_deref(),
                INNER,
                &args,
                &dir,
                &log_path,
                &log_path,
            )
        });
        let daemon = match spawned {
            Ok(daemon) => daemon,
            Err(err) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(err);
            }
        };
        // From here on, an early return drops `daemon`, which cleans up.
        let daemon = Xl2tpd {
            daemon,
            listen,
            control_path,
            control_seq: Mutex::new(0),
            dir,
        };

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if daemon.log().contains("Listening on IP address") && daemon.control_path.exists() {
                return Ok(daemon);
            }
            if let Some(status) = daemon.daemon.exit_status() {
                return Err(io::Error::other(format!(
                    "xl2tpd exited during start ({status}); log:\n{}",
                    daemon.log()
                )));
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "xl2tpd not listening after {START_TIMEOUT:?}; log:\n{}",
                        daemon.log()
                    ),
                ));
            }
            sleep(POLL);
        }
    }

    /// The whole log so far (xl2tpd's stdout and stderr).
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// How often `needle` occurs in the log so far.
    pub fn count(&self, needle: &str) -> usize {
        self.daemon.count(needle)
    }

    /// Polls the log until `needle` occurs at least `count` times and returns the log. The error
    /// (after `timeout`, or as soon as xl2tpd has exited without it) says what was missing and
    /// carries the end of the log, ready for an assertion message.
    pub fn wait_for(
        &self,
        needle: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<String, String> {
        self.daemon.wait_for(needle, count, timeout)
    }

    /// Sends one command line to the control pipe (`c cluster`, `d cluster`, `h 1234`, ...) and
    /// returns once xl2tpd has handled it. Bounded: the pipe is opened non-blocking (retrying while
    /// xl2tpd reopens it) and the whole exchange gives up after 5 s, so a dead daemon cannot hang
    /// the test.
    pub fn control(&self, command: &str) -> io::Result<()> {
        self.control_reply(command).map(drop)
    }

    /// Like [`Xl2tpd::control`], and returns xl2tpd's answer (`"00 OK\n"`, `"01 No such tunnel
    /// ..."`; empty for commands that only log, like `s`).
    pub fn control_reply(&self, command: &str) -> io::Result<String> {
        let command = command.trim();
        if command.is_empty() || command.contains('\n') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "one non-empty command line",
            ));
        }
        let mut seq = lock(&self.control_seq);
        *seq += 1;
        // xl2tpd opens `@FILE` for writing, writes the answer, closes and unlinks it. We keep the
        // file open, so we can read it after it is gone from the directory: the unlink tells us
        // xl2tpd is done with the command.
        let reply_path = self.dir.join(format!("control-reply-{}", *seq));
        let mut reply = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&reply_path)?;
        let result = self.send_and_wait(&reply_path, command);
        if result.is_err() {
            let _ = fs::remove_file(&reply_path);
        }
        result?;
        let mut answer = String::new();
        reply.read_to_string(&mut answer)?;
        Ok(answer)
    }

    fn send_and_wait(&self, reply_path: &Path, command: &str) -> io::Result<()> {
        let deadline = Instant::now() + CONTROL_TIMEOUT;
        let line = format!("@{} {command}\n", reply_path.display());
        let mut pipe = loop {
            match OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&self.control_path)
            {
                Ok(pipe) => break pipe,
                // ENXIO: no reader (xl2tpd between closing and reopening the pipe, or dead);
                // ENOENT: not created yet, or removed by an exiting xl2tpd.
                Err(err)
                    if (err.raw_os_error() == Some(libc::ENXIO)
                        || err.kind() == io::ErrorKind::NotFound)
                        && Instant::now() < deadline
                        && self.daemon.exit_status().is_none() =>
                {
                    sleep(Duration::from_millis(10))
                }
                Err(err) => {
                    return Err(io::Error::new(
                        err.kind(),
                        format!("opening xl2tpd's control pipe for {command:?}: {err}"),
                    ))
                }
            }
        };
        // One write of less than PIPE_BUF bytes: atomic.
        pipe.write_all(line.as_bytes())?;
        drop(pipe);
        while reply_path.exists() {
            if self.daemon.exit_status().is_some() {
                return Err(io::Error::other(format!(
                    "xl2tpd exited before handling {command:?}"
                )));
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("xl2tpd did not handle {command:?} within {CONTROL_TIMEOUT:?}"),
                ));
            }
            sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// SIGTERM to xl2tpd (it exits at once, without a StopCCN), up to 5 s for it to go, then
    /// SIGKILL; reaps everything and removes the temporary directory. Returns the final log.
    pub fn stop(mut self) -> String {
        self.shutdown(Signal::SIGTERM)
    }

    /// Like [`Xl2tpd::stop`] but with SIGINT, on which xl2tpd sends a StopCCN ("Server closing")
    /// on every tunnel before it exits.
    pub fn stop_with_stopccn(mut self) -> String {
        self.shutdown(Signal::SIGINT)
    }

    /// PID of `unshare`, our direct child (the leader of its own process group).
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// The host PID of xl2tpd itself (the init of the PID namespace), once it runs.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.daemon_pid()
    }

    /// Every process of this instance now: `unshare`, xl2tpd and its pppd stand-ins.
    pub fn processes(&self) -> Vec<Proc> {
        self.daemon.processes()
    }

    /// The address xl2tpd listens on.
    pub fn addr(&self) -> SocketAddrV4 {
        self.listen
    }

    /// The temporary directory (configuration, secrets, log); removed by stop/drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Local tunnel IDs from the "Connection established ... Local: N" lines, in log order.
    pub fn local_tunnel_ids(&self) -> Vec<u16> {
        local_ids(&self.log(), "Connection established to ")
    }

    /// Local call IDs from the "Call established with ... Local: N" lines, in log order (what
    /// `h <id>` takes).
    pub fn local_call_ids(&self) -> Vec<u16> {
        local_ids(&self.log(), "Call established with ")
    }

    /// Signals xl2tpd, escalates to SIGKILL, reaps `unshare`, removes the directory. Idempotent;
    /// never panics (it runs in `Drop`).
    fn shutdown(&mut self, sig: Signal) -> String {
        let log = self.daemon.stop(sig, STOP_GRACE);
        if !self.dir.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
        }
        log
    }
}

impl Drop for Xl2tpd {
    fn drop(&mut self) {
        let had_child = self.daemon.is_started();
        let log = self.shutdown(Signal::SIGTERM);
        if had_child && std::thread::panicking() {
            eprintln!(
                "xl2tpd on {} (dropped while panicking), log tail:\n{}",
                self.listen,
                tail(&log, 40)
            );
        }
    }
}

fn config(role: Xl2tpdEnd, options: &Xl2tpdOptions, secrets: &Path, pppopts: &Path) -> String {
    let yes_no = |on: bool| if on { "yes" } else { "no" };
    let mut conf = format!(
        "[global]\n\
         listen-addr = {}\n\
         port = {}\n\
         access control = no\n\
         force userspace = yes\n\
         auth file = {}\n",
        options.listen,
        options.port,
        secrets.display()
    );
    if options.debug {
        conf.push_str(
            "debug avp = yes\ndebug network = yes\ndebug state = yes\ndebug tunnel = yes\n",
        );
    }
    match role {
        // xl2tpd takes an address from the pool at each ICRQ; the stand-in pppd never puts one
        // on an interface. 127/8 keeps to the loopback rule, and ~2000 addresses let the
        // session-ID probe hold 1500 calls on one tunnel.
        Xl2tpdEnd::Lns => conf.push_str(
            "[lns default]\n\
             ip range = 127.201.0.10-127.201.7.250\n\
             local ip = 127.201.0.1\n",
        ),
        Xl2tpdEnd::Lac { lns, autodial } => conf.push_str(&format!(
            "[lac cluster]\n\
             lns = {}:{}\n\
             autodial = {}\n\
             redial = no\n",
            lns.ip(),
            lns.port(),
            yes_no(autodial)
        )),
    }
    conf.push_str(&format!(
        "require authentication = no\n\
         refuse pap = yes\n\
         refuse chap = yes\n\
         challenge = {}\n\
         hidden bit = {}\n\
         length bit = yes\n\
         pppoptfile = {}\n",
        yes_no(options.challenge),
        yes_no(options.hidden),
        pppopts.display()
    ));
    conf
}

fn local_ids(log: &str, prefix: &str) -> Vec<u16> {
    log.lines()
        .filter_map(|line| {
            let rest = &line[line.find(prefix)? + prefix.len()..];
            let digits = &rest[rest.find("Local: ")? + "Local: ".len()..];
            let end = digits
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(digits.len());
            digits[..end].parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_pairs_are_stable_distinct_and_avoid_0_and_255() {
        let (a, b) = loopback_pair("some_test");
        let (oa, ob) = (a.octets(), b.octets());
        assert_eq!(oa[..3], ob[..3]);
        assert_eq!(oa[..2], [127, 66]);
        assert_eq!(ob[3], oa[3] + 1);
        for o in [oa, ob] {
            assert!(
                (1..=254).contains(&o[2]) && (2..=253).contains(&o[3]),
                "{o:?}"
            );
        }
        let (c, _) = loopback_pair("some_test");
        assert_ne!(a, c, "a pair is handed out once");
        // Reserved machine-wide: another process cannot take it either.
        let name = SocketAddr::from_abstract_name(format!("l2tpkit-loopback-{a}")).unwrap();
        assert!(UnixDatagram::bind_addr(&name).is_err());
    }

    #[test]
    fn an_unknown_namespace_fails_the_start_at_once() {
        if !available() {
            return;
        }
        let options = Xl2tpdOptions {
            netns: Some("l2tpkit-test-no-such-netns".into()),
            ..Xl2tpdOptions::on(Ipv4Addr::new(198, 18, 1, 1))
        };
        let started = Instant::now();
        let err = Xl2tpd::start(Xl2tpdEnd::Lns, &options).unwrap_err();
        assert!(started.elapsed() < START_TIMEOUT, "{err}");
        let text = err.to_string();
        assert!(
            text.contains("exited during start") && text.contains("l2tpkit-test-no-such-netns"),
            "{text}"
        );
    }

    #[test]
    fn parses_ids_from_the_log() {
        let log = "xl2tpd[1]: Connection established to 127.66.1.2, 1701.  Local: 11608, Remote: 61721 (ref=0/0).\n\
                   xl2tpd[1]: Call established with 127.66.1.2, Local: 21982, Remote: 49000, Serial: 1 (ref=0/0)\n\
                   xl2tpd[1]: Call established with 127.66.1.3, PID: 3, Local: 49000, Remote: 21982, Serial: 1\n";
        assert_eq!(local_ids(log, "Connection established to "), vec![11608]);
        assert_eq!(local_ids(log, "Call established with "), vec![21982, 49000]);
    }

    #[test]
    fn config_for_a_lac() {
        let options = Xl2tpdOptions {
            secret: Some("s".into()),
            challenge: true,
            debug: true,
            ..Xl2tpdOptions::on(Ipv4Addr::new(127, 66, 1, 3))
        };
        let lns = SocketAddrV4::new(Ipv4Addr::new(127, 66, 1, 2), 1702);
        let conf = config(
            Xl2tpdEnd::Lac {
                lns,
                autodial: true,
            },
            &options,
            Path::new("/s"),
            Path::new("/o"),
        );
        for line in [
            "listen-addr = 127.66.1.3",
            "lns = 127.66.1.2:1702",
            "autodial = yes",
            "challenge = yes",
            "debug avp = yes",
            "auth file = /s",
            "pppoptfile = /o",
        ] {
            assert!(conf.lines().any(|l| l == line), "{line} missing in\n{conf}");
        }
    }
}
