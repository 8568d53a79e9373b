//! `l2tpkit-bench decode`: `l2tpkit decode`'s code path over a synthetic capture of control
//! packets, against tshark on the same file.

use std::io;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use l2tp::capture::{CaptureWriter, Linktype};
use l2tp::wire::message::ParseOptions;
use l2tp::wire::{samples, PacketRepr};

#[derive(Debug, clap::Args)]
pub struct DecodeBench {
    /// Control packets in the synthetic capture.
    #[arg(long, default_value_t = 1_000_000)]
    pub packets: u64,
    /// Where to write the capture (kept afterwards); a temporary file when absent.
    #[arg(long)]
    pub capture: Option<PathBuf>,
    /// Skip the tshark run.
    #[arg(long)]
    pub no_tshark: bool,
    /// Decode passes over the file; the best one is reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
}

pub fn run(args: &DecodeBench) -> anyhow::Result<ExitCode> {
    if args.packets == 0 || args.rounds == 0 {
        bail!("--packets and --rounds must be at least 1");
    }
    let path = args.capture.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("l2tpkit-bench-{}.pcap", std::process::id()))
    });
    let keep = args.capture.is_some();
    let written = write_synthetic(&path, args.packets)
        .with_context(|| format!("writing {}", path.display()))?;
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "synthetic capture: {} control packets, {:.1} MB, {}",
        written,
        size as f64 / 1e6,
        path.display()
    );

    let result = measure(&path, args);
    if !keep {
        let _ = std::fs::remove_file(&path);
    }
    result
}

fn measure(path: &std::path::Path, args: &DecodeBench) -> anyhow::Result<ExitCode> {
    let options = ParseOptions {
        secret: Some(samples::SECRET),
    };
    let mut best = Duration::MAX;
    let mut counts = None;
    for _ in 0..args.rounds {
        let start = Instant::now();
        let mut sink = io::BufWriter::with_capacity(1 << 16, io::sink());
        let seen = l2tpkit::decode::decode_file(path, 1701, false, &options, &mut sink)?;
        best = best.min(start.elapsed());
        counts = Some(seen);
    }
    let counts = counts.unwrap_or_default();
    let ours = counts.l2tp() as f64 / best.as_secs_f64();
    println!(
        "l2tpkit decode (read + parse + format one line each, 1 thread): {} packets in {:.3} s = {:.0} packets/s",
        counts.l2tp(),
        best.as_secs_f64(),
        ours
    );
    if counts.malformed > 0 {
        bail!("{} synthetic packets did not decode", counts.malformed);
    }
    if args.no_tshark {
        return Ok(ExitCode::SUCCESS);
    }
    let start = Instant::now();
    let status = Command::new("tshark")
        .arg("-n")
        .arg("-r")
        .arg(path)
        .args(["-T", "fields", "-E", "separator=|", "-E", "aggregator=,"])
        .args(["-e", "l2tp.type", "-e", "l2tp.length", "-e", "l2tp.tunnel"])
        .args(["-e", "l2tp.session", "-e", "l2tp.Ns", "-e", "l2tp.Nr"])
        .args(["-e", "l2tp.avp.message_type", "-e", "l2tp.avp.type"])
        .args(["-e", "l2tp.avp.mandatory"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running tshark (install it with apt-get install tshark, or pass --no-tshark)")?;
    let elapsed = start.elapsed();
    if !status.success() {
        bail!("tshark exited with {status}");
    }
    let theirs = counts.l2tp() as f64 / elapsed.as_secs_f64();
    println!(
        "tshark -T fields (same file): {:.3} s = {:.0} packets/s",
        elapsed.as_secs_f64(),
        theirs
    );
    println!("ratio: {:.1}x", ours / theirs);
    Ok(ExitCode::SUCCESS)
}

/// Writes `packets` control packets to `path` (raw IPv4 pcap): the sample conversation's
/// control messages in turn, with tunnel IDs and Ns varied.
pub fn write_synthetic(path: &std::path::Path, packets: u64) -> anyhow::Result<u64> {
    let messages: Vec<_> = samples::every_message()
        .into_iter()
        .filter_map(|packet| match packet {
            PacketRepr::Control(message) => Some(message),
            PacketRepr::Data { .. } => None,
        })
        .collect();
    let mut writer = CaptureWriter::create(path, Linktype::RAW)?;
    let lac: SocketAddrV4 = "127.0.0.3:1701".parse()?;
    let lns: SocketAddrV4 = "127.0.0.2:1701".parse()?;
    let mut buf = Vec::new();
    for (index, i) in (0..packets).zip((0..messages.len()).cycle()) {
        let mut message = messages[i].clone();
        message.header.tunnel_id = (index % 60_000) as u16 + 1;
        if let Some(seq) = message.header.sequence.as_mut() {
            seq.ns = index as u16;
        }
        buf.clear();
        buf.extend(message.to_vec(Some(samples::SECRET))?);
        let (src, dst) = if index % 2 == 0 {
            (lac, lns)
        } else {
            (lns, lac)
        };
        let timestamp = Duration::from_micros(1_700_000_000_000_000 + index * 10);
        writer.write_udp(timestamp, src, dst, &buf)?;
    }
    writer.flush()?;
    Ok(packets)
}
