//! FreeRADIUS (Debian's 3.2) as the RADIUS server of a test, in a network namespace, and
//! `radtest` to ask it. See `/work/shared/PEERS.md`, "FreeRADIUS as the RADIUS server".
//!
//! The system configuration `/etc/freeradius/3.0` is copied to `DIR/raddb` and changed there:
//! FreeRADIUS runs as root (it drops to `freerad` otherwise and cannot read the root-owned
//! scratch directory), logs one "Login OK" / "Login incorrect" line per request (`auth = yes`),
//! knows one client (the NAS's address range and the shared secret), and has the test's users at
//! the top of its users file (`mods-config/files/authorize`).

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use l2tpkit::lab::sys;
use nix::sys::signal::Signal;

use crate::proc::{Daemon, Proc};

/// How long [`FreeRadius::start`] waits for "Ready to process requests" (about 0.5 s here).
const START_TIMEOUT: Duration = Duration::from_secs(20);
const SYSTEM_CONFIG: &str = "/etc/freeradius/3.0";
/// `$1` the configuration directory, `$2` the log file.
const INNER: &str = "exec freeradius -f -d \"$1\" -l \"$2\"";

/// What FreeRADIUS is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RadiusConfig {
    /// `(name, password)`, each as `name Cleartext-Password := "password"`.
    pub users: Vec<(String, String)>,
    /// The shared secret of the one client.
    pub secret: String,
    /// The client's (the NAS's) address range, `ADDR/LEN`.
    pub clients: (Ipv4Addr, u8),
}

/// What `radtest` got back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RadiusReply {
    Accept,
    Reject,
}

/// A running FreeRADIUS; dropping it stops it (SIGTERM, by PID).
#[derive(Debug)]
pub struct FreeRadius {
    daemon: Daemon,
}

impl FreeRadius {
    /// Writes the configuration into `dir/raddb` and starts `freeradius -f` in `netns`; returns
    /// once its log says it is ready. The log is `dir/radius.log`, its output `dir/radius.out`.
    pub fn start(dir: &Path, netns: &str, config: &RadiusConfig) -> io::Result<FreeRadius> {
        let raddb = write_config(dir, config)?;
        let log = dir.join("radius.log");
        let daemon = Daemon::spawn(
            format!("FreeRADIUS in {netns}"),
            Some(netns),
            INNER,
            &[&raddb, &log],
            dir,
            &dir.join("radius.out"),
            &log,
        )?;
        daemon
            .wait_for("Ready to process requests", 1, START_TIMEOUT)
            .map_err(|err| {
                let out = fs::read_to_string(dir.join("radius.out")).unwrap_or_default();
                io::Error::other(format!("{err}\noutput:\n{out}"))
            })?;
        Ok(FreeRadius { daemon })
    }

    /// The log so far (`auth = yes`: one line per Access-Request).
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// "Login OK: [user]" lines: the Access-Accepts sent for `user`.
    pub fn logins_ok(&self, user: &str) -> usize {
        count_logins(&self.log(), "Login OK", user)
    }

    /// "Login incorrect (…): [user]" lines: the Access-Rejects for a wrong password.
    pub fn logins_incorrect(&self, user: &str) -> usize {
        count_logins(&self.log(), "Login incorrect", user)
    }

    pub fn processes(&self) -> Vec<Proc> {
        self.daemon.processes()
    }

    /// Stops FreeRADIUS (SIGTERM, SIGKILL after 5 s) and returns its log.
    pub fn stop(&mut self) -> String {
        self.daemon.stop(Signal::SIGTERM, Duration::from_secs(5))
    }
}

fn count_logins(log: &str, what: &str, user: &str) -> usize {
    let needle = format!("[{user}]");
    log.lines()
        .filter(|l| l.contains(what) && l.contains(&needle))
        .count()
}

/// `radtest` from `netns` against `server` (port 1812), PAP or (`chap`) CHAP.
pub fn radtest(
    netns: &str,
    server: Ipv4Addr,
    secret: &str,
    user: &str,
    password: &str,
    chap: bool,
) -> io::Result<RadiusReply> {
    let server = server.to_string();
    let mut args = vec!["netns", "exec", netns, "radtest"];
    if chap {
        args.extend(["-t", "chap"]);
    }
    args.extend([user, password, &server, "0", secret]);
    let out = sys::run("ip", &args, None, Duration::from_secs(30))
        .map_err(|err| io::Error::other(format!("{err:#}")))?;
    let text = format!("{}{}", out.stdout, out.stderr);
    if text.contains("Received Access-Accept") {
        Ok(RadiusReply::Accept)
    } else if text.contains("Received Access-Reject") {
        Ok(RadiusReply::Reject)
    } else {
        Err(io::Error::other(format!(
            "radtest {user} got no answer ({}):\n{text}",
            out.status
        )))
    }
}

/// A FreeRADIUS string: `"…"` with `\` and `"` escaped. Line breaks and other control
/// characters cannot be written in the users file.
fn quoted(value: &str) -> io::Result<String> {
    if value.chars().any(char::is_control) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{value:?}: control characters cannot go in FreeRADIUS's users file"),
        ));
    }
    Ok(format!(
        "\"{}\"",
        value.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// The users file entries, one line each.
fn users_entries(users: &[(String, String)]) -> io::Result<String> {
    let mut text = String::from("# l2tpkit test users\n");
    for (name, password) in users {
        let plain = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '#' | ','));
        if !plain {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("user name {name:?}: printable ASCII without quotes, commas or #"),
            ));
        }
        text.push_str(&format!(
            "{name} Cleartext-Password := {}\n",
            quoted(password)?
        ));
    }
    Ok(text + "\n")
}

/// `radiusd.conf` with the changes of the module documentation; each one must apply, so a
/// changed Debian default fails here instead of later in a confusing way.
fn patch_radiusd(conf: &str) -> io::Result<String> {
    let changes = [
        ("user = freerad", "user = root"),
        ("group = freerad", "group = root"),
        ("auth = no", "auth = yes"),
    ];
    let mut done = [false; 3];
    let mut out = String::with_capacity(conf.len());
    for line in conf.lines() {
        let trimmed = line.trim();
        let indent = &line[..line.len() - line.trim_start().len()];
        match changes.iter().position(|(from, _)| *from == trimmed) {
            Some(i) if !done[i] => {
                done[i] = true;
                out.push_str(indent);
                out.push_str(changes[i].1);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    match changes.iter().zip(done).find(|(_, done)| !done) {
        Some(((from, _), _)) => Err(io::Error::other(format!(
            "radiusd.conf has no line {from:?} to change"
        ))),
        None => Ok(out),
    }
}

fn write_config(dir: &Path, config: &RadiusConfig) -> io::Result<PathBuf> {
    let raddb = dir.join("raddb");
    let shown = raddb.to_string_lossy();
    let copy = sys::run(
        "cp",
        &["-a", SYSTEM_CONFIG, &shown],
        None,
        Duration::from_secs(30),
    )
    .map_err(|err| io::Error::other(format!("{err:#}")))?;
    if !copy.status.success() {
        return Err(io::Error::other(format!(
            "cp -a {SYSTEM_CONFIG} {shown}: {}",
            copy.stderr.trim()
        )));
    }
    let chmod = sys::run(
        "chmod",
        &["-R", "a+rX", &shown],
        None,
        Duration::from_secs(30),
    )
    .map_err(|err| io::Error::other(format!("{err:#}")))?;
    if !chmod.status.success() {
        return Err(io::Error::other(format!("chmod: {}", chmod.stderr.trim())));
    }
    let radiusd = raddb.join("radiusd.conf");
    fs::write(&radiusd, patch_radiusd(&fs::read_to_string(&radiusd)?)?)?;
    let clients = raddb.join("clients.conf");
    let (net, len) = config.clients;
    let mut text = fs::read_to_string(&clients)?;
    text.push_str(&format!(
        "\nclient l2tpkit {{\n\tipaddr = {net}/{len}\n\tsecret = {}\n}}\n",
        quoted(&config.secret)?
    ));
    fs::write(&clients, text)?;
    let authorize = raddb.join("mods-config/files/authorize");
    let rest = fs::read_to_string(&authorize)?;
    fs::write(&authorize, users_entries(&config.users)? + &rest)?;
    Ok(raddb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radiusd_conf_changes_each_line_once_and_keeps_the_indent() {
        let conf = "log {\n\tauth = no\n}\nsecurity {\n\tuser = freerad\n\tgroup = freerad\n}\n\
                    other {\n\tauth = no\n}\n";
        let out = patch_radiusd(conf).unwrap();
        assert_eq!(
            out,
            "log {\n\tauth = yes\n}\nsecurity {\n\tuser = root\n\tgroup = root\n}\n\
             other {\n\tauth = no\n}\n"
        );
        let err = patch_radiusd("log {\n}\n").unwrap_err();
        assert!(err.to_string().contains("user = freerad"), "{err}");
    }

    #[test]
    fn users_are_quoted_or_refused() {
        let users = vec![
            ("alice".to_string(), "wonder\"land\\".to_string()),
            ("bob@example.net".to_string(), "x".to_string()),
        ];
        let text = users_entries(&users).unwrap();
        assert!(text.contains("alice Cleartext-Password := \"wonder\\\"land\\\\\"\n"));
        assert!(text.contains("bob@example.net Cleartext-Password := \"x\"\n"));
        for bad in ["", "a b", "a\"b", "a,b"] {
            assert!(users_entries(&[(bad.to_string(), "p".to_string())]).is_err());
        }
        assert!(users_entries(&[("a".to_string(), "p\nq".to_string())]).is_err());
    }

    #[test]
    fn counts_login_lines_per_user() {
        let log = "Auth: (0) Login OK: [alice] (from client l2tpkit port 0)\n\
                   Auth: (1) Login OK: [alice2] (from client l2tpkit port 0)\n\
                   Auth: (2) Login incorrect (pap: Cleartext password does not match \"known good\" password): [alice] (from client l2tpkit port 0)\n";
        assert_eq!(count_logins(log, "Login OK", "alice"), 1);
        assert_eq!(count_logins(log, "Login OK", "alice2"), 1);
        assert_eq!(count_logins(log, "Login incorrect", "alice"), 1);
        assert_eq!(count_logins(log, "Login incorrect", "bob"), 0);
    }
}
