//! `l2tpkit lab capture`: what crosses one of the lab's bridges, into a pcap (Ethernet), with
//! a packet socket of our own and our own pcap writer; the lab needs no capture tool.
//!
//! A bridge hands frames forwarded between its ports up to its own device only when it is
//! promiscuous, so the capture turns that on (as a capture tool would). Only UDP over IPv4 is
//! kept: the L2TP the lab's checks read, as the lab's captures always held. A frame whose UDP
//! checksum was left to the hardware (veth checksum offload) is written with it filled in, as
//! it would be on a wire; the impairing switch ([`super::impair`]) does the same.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use l2tp::capture::{CaptureWriter, Linktype};
use serde::Serialize;

use super::sys;

#[derive(Debug, clap::Args)]
pub struct CaptureArgs {
    /// Write the captured frames here (pcap, Ethernet).
    #[arg(long)]
    pub pcap: PathBuf,
    /// JSON status, written once the packet socket is open (the lab waits for it), then every
    /// second and at exit.
    #[arg(long)]
    pub status: Option<PathBuf>,
    /// The interface to capture: a lab bridge, in the switch namespace.
    pub interface: String,
}

/// `--status`: what the capture has done so far.
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct Counters {
    /// UDP/IPv4 frames written to the pcap.
    captured: u64,
    /// Frames of any other kind (ARP, ICMP, IPv6), not written.
    skipped: u64,
}

#[derive(Debug, Serialize)]
struct CaptureStatus<'a> {
    interface: &'a str,
    pcap: &'a Path,
    /// `capturing`, then `stopped` once the pcap is flushed and closed.
    state: &'static str,
    #[serde(flatten)]
    counters: Counters,
}

const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const IPPROTO_UDP: u8 = 17;
/// Ethernet header, then the IPv4 header's protocol field.
const PROTOCOL_OFFSET: usize = 14 + 9;

/// True for an Ethernet frame that carries UDP over IPv4.
fn is_udp(frame: &[u8]) -> bool {
    frame.get(12..14) == Some(&ETHERTYPE_IPV4[..])
        && frame.get(PROTOCOL_OFFSET) == Some(&IPPROTO_UDP)
}

/// Fills in the UDP checksum of an IPv4 frame whose sender left it to the hardware (`partial`,
/// from the packet socket): the capture then shows what a wire would carry.
pub(super) fn complete_checksum(frame: &mut [u8], partial: bool) {
    if !partial || frame.get(12..14) != Some(&ETHERTYPE_IPV4[..]) {
        return;
    }
    if let Some(packet) = frame.get_mut(14..) {
        if let Ok(mut view) = l2tp::ip::Ipv4Udp::new_checked(packet) {
            view.fill_udp_checksum();
        }
    }
}

/// The wall clock now, as a pcap record's time (where the kernel gave none).
pub(super) fn wall_clock() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

fn write_status(path: &Path, status: &CaptureStatus<'_>) -> anyhow::Result<()> {
    // Write then rename: a reader (the lab, waiting) never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(status)?)
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("--status {}", path.display()))
}

/// Frames read per wake-up at most, so that the status and the interrupt flag are looked at.
const BURST: usize = 4096;

/// `l2tpkit lab capture`: captures until SIGINT or SIGTERM, then flushes the pcap and exits 0.
pub fn run(args: &CaptureArgs) -> anyhow::Result<ExitCode> {
    sys::install_interrupt_handler(true)?;
    let interface = args.interface.as_str();
    sys::ip(&["link", "set", "dev", interface, "promisc", "on"])?;
    // An 8 MB receive queue (forced past rmem_max): a setup burst of a thousand tunnels fits.
    // Stamped by the kernel: the other bridge's capture is another process, and `verify`
    // orders a forwarded packet's two crossings by these times.
    let mut port = netio::tap::FramePort::open_stamped(interface)
        .with_context(|| format!("opening a packet socket on {interface}"))?;
    let mut pcap = CaptureWriter::create(&args.pcap, Linktype::ETHERNET)
        .with_context(|| format!("--pcap {}", args.pcap.display()))?;
    pcap.flush().context("--pcap")?;
    let mut counters = Counters::default();
    let status = |state, counters| CaptureStatus {
        interface,
        pcap: &args.pcap,
        state,
        counters,
    };
    if let Some(path) = &args.status {
        write_status(path, &status("capturing", counters))?;
    }
    let mut fds = [netio::poll::pollfd {
        fd: port.raw_fd(),
        events: 0,
        revents: 0,
    }];
    let mut next_status = Instant::now() + Duration::from_secs(1);
    let mut copy = Vec::with_capacity(2048);
    loop {
        let stopping = sys::interrupted();
        if !stopping {
            // At most 100 ms asleep: the interrupt flag is looked at that often.
            netio::poll::poll_readable(&mut fds, Duration::from_millis(100)).context("poll")?;
        }
        // Once stopping, one last pass takes what is still queued.
        let mut wrote = false;
        for _ in 0..BURST {
            let Some((frame, partial)) = port.recv().context("receiving a frame")? else {
                break;
            };
            if !is_udp(frame) {
                counters.skipped += 1;
                continue;
            }
            complete_checksum(frame, partial);
            // Copied out so that the port can be asked for the frame's stamp.
            copy.clear();
            copy.extend_from_slice(frame);
            let at = port.arrival().unwrap_or_else(wall_clock);
            pcap.write_raw(at, &copy).context("--pcap")?;
            counters.captured += 1;
            wrote = true;
        }
        if wrote {
            // Readable while the lab runs, and nothing lost to a SIGKILL but the last frames.
            pcap.flush().context("--pcap")?;
        }
        if stopping {
            break;
        }
        if Instant::now() >= next_status {
            if let Some(path) = &args.status {
                write_status(path, &status("capturing", counters))?;
            }
            next_status = Instant::now() + Duration::from_secs(1);
        }
    }
    pcap.flush().context("--pcap")?;
    drop(pcap);
    if let Some(path) = &args.status {
        write_status(path, &status("stopped", counters))?;
    }
    // The bridge goes back to how it was; a failure here loses nothing.
    let _ = sys::ip(&["link", "set", "dev", interface, "promisc", "off"]);
    eprintln!(
        "l2tpkit lab capture: {interface}: {} frames captured, {} not UDP/IPv4",
        counters.captured, counters.skipped
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_udp_over_ipv4_is_kept() {
        let mut frame = vec![0u8; 42];
        frame[12..14].copy_from_slice(&ETHERTYPE_IPV4);
        frame[PROTOCOL_OFFSET] = IPPROTO_UDP;
        assert!(is_udp(&frame));
        frame[PROTOCOL_OFFSET] = 1; // ICMP
        assert!(!is_udp(&frame));
        frame[12..14].copy_from_slice(&[0x08, 0x06]); // ARP
        assert!(!is_udp(&frame));
        assert!(!is_udp(&frame[..20]));
    }
}
