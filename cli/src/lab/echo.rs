//! A bounded UDP echo, to check reachability inside a lab without `ping` (not installed here):
//! `l2tpkit lab udp-echo` answers datagrams, `l2tpkit lab udp-ping` sends one until it comes
//! back. [`udp_check`] runs the pair in two namespaces.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::sys;

#[derive(Debug, clap::Args)]
pub struct UdpEchoArgs {
    /// ADDR:PORT to answer on.
    #[arg(long)]
    pub listen: SocketAddrV4,
    /// Exit after echoing this many datagrams.
    #[arg(long, default_value_t = 1)]
    pub count: u64,
    /// Exit (1) after this many seconds without reaching --count.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
}

#[derive(Debug, clap::Args)]
pub struct UdpPingArgs {
    /// Source address to send from.
    #[arg(long)]
    pub from: Ipv4Addr,
    /// ADDR:PORT of a `udp-echo`.
    #[arg(long)]
    pub to: SocketAddrV4,
    /// Give up (exit 1) after this many seconds.
    #[arg(long, default_value_t = 5.0)]
    pub timeout: f64,
}

fn seconds(flag: &str, s: f64) -> anyhow::Result<Duration> {
    if !s.is_finite() || !(0.0..=3600.0).contains(&s) {
        anyhow::bail!("{flag} {s}: expected seconds between 0 and 3600");
    }
    Ok(Duration::from_secs_f64(s))
}

pub fn udp_echo(args: &UdpEchoArgs) -> anyhow::Result<ExitCode> {
    let timeout = seconds("--timeout", args.timeout)?;
    let socket =
        UdpSocket::bind(args.listen).with_context(|| format!("binding {}", args.listen))?;
    println!("listening on {}", socket.local_addr()?);
    std::io::stdout().flush()?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 2048];
    let mut echoed = 0;
    while echoed < args.count {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            eprintln!(
                "udp-echo: {echoed} of {} datagrams within {timeout:?}",
                args.count
            );
            return Ok(ExitCode::from(1));
        }
        socket.set_read_timeout(Some(left))?;
        match socket.recv_from(&mut buf) {
            Ok((len, from)) => {
                socket.send_to(&buf[..len], from)?;
                echoed += 1;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e).context("receiving"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn udp_ping(args: &UdpPingArgs) -> anyhow::Result<ExitCode> {
    let timeout = seconds("--timeout", args.timeout)?;
    let socket =
        UdpSocket::bind((args.from, 0)).with_context(|| format!("binding {}", args.from))?;
    socket.connect(args.to)?;
    let message = format!("l2tpkit lab ping {:016x}", crate::net::os_seed());
    let started = Instant::now();
    let mut buf = [0u8; 2048];
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            eprintln!("udp-ping: no echo from {} within {timeout:?}", args.to);
            return Ok(ExitCode::from(1));
        }
        // Resent every 200 ms: the first one may wait on ARP or find nothing bound yet.
        let _ = socket.send(message.as_bytes());
        socket.set_read_timeout(Some(left.min(Duration::from_millis(200))))?;
        if let Ok(len) = socket.recv(&mut buf) {
            if &buf[..len] == message.as_bytes() {
                println!(
                    "echo from {} in {} us",
                    args.to,
                    started.elapsed().as_micros()
                );
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}

/// Sends one datagram from `from` (in namespace `from_ns`) to a `udp-echo` on `to` (in `to_ns`)
/// and waits for it to come back; the round trip. Both helpers are our children and reaped.
pub fn udp_check(
    binary: &Path,
    from_ns: &str,
    from: Ipv4Addr,
    to_ns: &str,
    to: SocketAddrV4,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let secs = format!("{:.3}", timeout.as_secs_f64());
    let binary = binary.to_str().context("binary path is not UTF-8")?;
    let to_text = to.to_string();
    let mut server = Command::new("ip")
        .args([
            "netns", "exec", to_ns, binary, "lab", "udp-echo", "--listen",
        ])
        .args([&to_text, "--count", "1", "--timeout", &secs])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .context("starting udp-echo")?;
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(out) = server.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let result = (|| {
        let line = rx
            .recv_timeout(Duration::from_secs(5))
            .with_context(|| format!("udp-echo on {to} in {to_ns} did not come up"))?;
        if !line.starts_with("listening on") {
            anyhow::bail!("udp-echo on {to} in {to_ns}: {line}");
        }
        let from_text = from.to_string();
        let out = sys::run(
            "ip",
            &[
                "netns",
                "exec",
                from_ns,
                binary,
                "lab",
                "udp-ping",
                "--from",
                &from_text,
                "--to",
                &to_text,
                "--timeout",
                &secs,
            ],
            None,
            timeout + Duration::from_secs(5),
        )?;
        if !out.status.success() {
            anyhow::bail!(
                "{from} ({from_ns}) -> {to} ({to_ns}): {}",
                out.stderr.trim()
            );
        }
        let micros: u64 = out
            .stdout
            .split_whitespace()
            .rev()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Ok(Duration::from_micros(micros))
    })();
    if !matches!(
        sys::wait_timeout(&mut server, Duration::from_secs(2)),
        Ok(Some(_))
    ) {
        let _ = server.kill();
        let _ = sys::wait_timeout(&mut server, sys::KILL_GRACE);
    }
    result
}
