//! FreeRADIUS for the lab's l2tpns endpoints: one in every endpoint namespace, on that
//! namespace's own loopback, the RADIUS server of the l2tpns beside it (see
//! `/work/shared/PEERS.md`, "FreeRADIUS as the RADIUS server").
//!
//! One per namespace, not one shared: RADIUS then never crosses the lab's segments (nor its
//! captures), every endpoint stands alone (killing one leaves the others' logins alone), and
//! each log (`RUN_DIR/te<i>-radius.log`) holds one LNS's logins. They share one configuration,
//! `RUN_DIR/raddb`: Debian's `/etc/freeradius/3.0`, copied and changed there. FreeRADIUS runs
//! as root (it drops to `freerad` otherwise and cannot read the run dir), logs one "Login OK" /
//! "Login incorrect" line per request (`auth = yes`) to its stdout, keeps its other files in
//! `RUN_DIR/raddb/log` (not `/var/log/freeradius`), knows one client, 127.0.0.1 with
//! [`RADIUS_SECRET`], and one user, the lab's ([`LAB_USER`]).
//!
//! `freeradius -f` does not fork and writes no PID file: the lab records it as it is, stops it
//! with SIGINT (it takes 1 to 3 s) and kills it with SIGKILL. Its UDP port bound is its readiness: a request that
//! comes before it reads its socket waits in the socket, and l2tpns asks again anyway.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::roles::{LAB_PASSWORD, LAB_USER};
use super::start::Readiness;
use super::sys;

/// Shared between each l2tpns and its FreeRADIUS; neither is reachable from outside their
/// namespace.
pub(super) const RADIUS_SECRET: &str = "l2tpkit-lab-radius";
/// Where each FreeRADIUS answers, in its endpoint's namespace.
pub(super) const RADIUS_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1812);
/// The configuration the lab's copy is made from.
pub(super) const SYSTEM_CONFIG: &str = "/etc/freeradius/3.0";

/// Writes `run/raddb` (module documentation); its path.
pub(super) fn write_config(run: &Path) -> anyhow::Result<PathBuf> {
    let raddb = run.join("raddb");
    let shown = raddb.display().to_string();
    for (program, args) in [
        ("cp", vec!["-a", SYSTEM_CONFIG, &shown]),
        ("chmod", vec!["-R", "a+rX", &shown]),
    ] {
        let out = sys::run(program, &args, None, sys::COMMAND_TIMEOUT)?;
        if !out.status.success() {
            anyhow::bail!("`{program} {}`: {}", args.join(" "), out.stderr.trim());
        }
    }
    let logdir = raddb.join("log");
    std::fs::create_dir_all(&logdir).with_context(|| format!("{}", logdir.display()))?;
    let radiusd = raddb.join("radiusd.conf");
    let text = std::fs::read_to_string(&radiusd)
        .with_context(|| format!("reading {}", radiusd.display()))?;
    let write = |path: PathBuf, text: String| {
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write(radiusd, patch_radiusd(&text, &logdir)?)?;
    write(raddb.join("clients.conf"), clients_conf())?;
    let authorize = raddb.join("mods-config/files/authorize");
    let rest = std::fs::read_to_string(&authorize)
        .with_context(|| format!("reading {}", authorize.display()))?;
    write(authorize, users_entry() + &rest)?;
    Ok(raddb)
}

/// `freeradius`'s arguments: in the foreground, the lab's configuration, its log to stdout
/// (which the lab keeps as the process's log).
pub(super) fn args(raddb: &Path) -> Vec<String> {
    vec![
        "-f".to_string(),
        "-d".to_string(),
        raddb.display().to_string(),
        "-l".to_string(),
        "stdout".to_string(),
    ]
}

/// Ready once its authentication port is bound in `namespace`.
pub(super) fn readiness(namespace: &str) -> Readiness {
    Readiness::UdpBound {
        namespace: namespace.to_string(),
        addr: RADIUS_ADDR,
    }
}

/// A FreeRADIUS string: `"…"` with `\` and `"` escaped.
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The only client: the l2tpns beside it (Debian's `localhost` client would clash with it).
fn clients_conf() -> String {
    format!(
        "# l2tpkit lab: the l2tpns of this namespace\nclient l2tpns {{\n\tipaddr = {}\n\tsecret = {}\n}}\n",
        RADIUS_ADDR.ip(),
        quoted(RADIUS_SECRET)
    )
}

/// The lab's one user, ahead of Debian's entries.
fn users_entry() -> String {
    format!(
        "# l2tpkit lab\n{LAB_USER} Cleartext-Password := {}\n\n",
        quoted(LAB_PASSWORD)
    )
}

/// `radiusd.conf` with the changes of the module documentation; each one must apply, so that
/// a changed Debian default fails here instead of later in a confusing way.
fn patch_radiusd(conf: &str, logdir: &Path) -> anyhow::Result<String> {
    let changes = [
        ("user = freerad", "user = root".to_string()),
        ("group = freerad", "group = root".to_string()),
        ("auth = no", "auth = yes".to_string()),
        (
            "logdir = /var/log/freeradius",
            format!("logdir = {}", logdir.display()),
        ),
    ];
    let mut done = [false; 4];
    let mut out = String::with_capacity(conf.len());
    for line in conf.lines() {
        let indent = &line[..line.len() - line.trim_start().len()];
        match changes.iter().position(|(from, _)| *from == line.trim()) {
            Some(i) if !done[i] => {
                done[i] = true;
                out.push_str(indent);
                out.push_str(&changes[i].1);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    match changes.iter().zip(done).find(|(_, done)| !done) {
        Some(((from, _), _)) => {
            anyhow::bail!("{SYSTEM_CONFIG}/radiusd.conf has no line {from:?} for the lab to change")
        }
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radiusd_conf_changes_each_line_once_and_keeps_the_indent() {
        let conf = "logdir = /var/log/freeradius\nlog {\n\tauth = no\n}\nsecurity {\n\t\
                    user = freerad\n\tgroup = freerad\n}\nother {\n\tauth = no\n}\n";
        let out = patch_radiusd(conf, Path::new("/run/raddb/log")).unwrap();
        assert_eq!(
            out,
            "logdir = /run/raddb/log\nlog {\n\tauth = yes\n}\nsecurity {\n\tuser = root\n\t\
             group = root\n}\nother {\n\tauth = no\n}\n"
        );
        let err = patch_radiusd("log {\n}\n", Path::new("/l")).unwrap_err();
        assert!(err.to_string().contains("user = freerad"), "{err}");
    }

    #[test]
    fn one_client_on_loopback_and_the_lab_user() {
        assert_eq!(
            clients_conf(),
            "# l2tpkit lab: the l2tpns of this namespace\nclient l2tpns {\n\t\
             ipaddr = 127.0.0.1\n\tsecret = \"l2tpkit-lab-radius\"\n}\n"
        );
        assert!(users_entry().contains("lab@example.net Cleartext-Password := \"l2tpkit-lab\"\n"));
        assert_eq!(quoted(r#"a"b\"#), r#""a\"b\\""#);
    }
}
