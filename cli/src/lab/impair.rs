//! The public segment's switch when the lab impairs it (`--netem`): a learning Ethernet switch
//! in userspace, over one packet socket per public veth end in the switch namespace, that
//! applies the impairment to every frame on its way out of a port, as netem on each of those
//! ports would. Every frame crosses exactly one egress port, so both directions to every
//! public host are impaired, once. The kernel here has no `sch_netem` (see [`super::netem`]).
//!
//! [`Switch`] is the sans-IO core (frames in with `handle`, out with `poll_transmit`, timers by
//! `poll_timeout`); [`run`] is `l2tpkit lab impair`, its runner, which also writes the public
//! capture (what each port received, before any impairment: what a capture on the bridge
//! would have shown).
//!
//! Only IPv4 frames are impaired; ARP passes untouched and at once, so that neighbour
//! discovery does not add its own second-long timeouts to the L2TP figures being measured.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use l2tp::capture::{CaptureWriter, Linktype};
use l2tp::time::Instant;
use serde::Serialize;

use super::netem::Netem;
use super::sys;

/// Frames waiting at most, over all ports (netem's default limit is 1000 per qdisc; the
/// lab's public segment has up to ~250 ports): past this a frame is dropped as `overflow`.
const MAX_QUEUED: usize = 100_000;

const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];

/// What the switch did, for its status file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SwitchStats {
    /// Frames received on any port.
    pub received: u64,
    /// Frames too short to carry an Ethernet header.
    pub runts: u64,
    /// Frames sent out of a port (copies of flooded and duplicated frames count each).
    pub sent: u64,
    /// Frames with no known destination port, sent to every other port.
    pub flooded: u64,
    /// Not IPv4 (ARP): sent on unimpaired.
    pub unimpaired: u64,
    /// Egress copies dropped by `loss`.
    pub lost: u64,
    /// Extra copies made by `duplicate`.
    pub duplicated: u64,
    /// Egress copies held back by `delay`.
    pub delayed: u64,
    /// Egress copies that skipped the delay (`reorder`), overtaking delayed ones.
    pub reordered: u64,
    /// Dropped because [`MAX_QUEUED`] frames were already waiting.
    pub overflow: u64,
    /// The kernel refused the send (a full socket buffer).
    pub send_errors: u64,
}

/// A frame that waits for its time; ordered by that time, then by arrival.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Delayed {
    at: Instant,
    sequence: u64,
    port: usize,
    frame: Vec<u8>,
}

/// SplitMix64: a seeded, reproducible source of the impairment's coin flips.
#[derive(Debug, Clone)]
struct Coin(u64);

impl Coin {
    fn next(&mut self) -> u64 {
        l2tp::seed::splitmix64(&mut self.0)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn flip(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
}

/// The impairing learning switch: see the module documentation.
#[derive(Debug)]
pub struct Switch {
    netem: Netem,
    coin: Coin,
    ports: usize,
    /// Source MAC address → the port it was last seen on.
    macs: HashMap<[u8; 6], usize>,
    now_queue: VecDeque<(usize, Vec<u8>)>,
    delayed: BinaryHeap<Reverse<Delayed>>,
    sequence: u64,
    stats: SwitchStats,
}

impl Switch {
    pub fn new(netem: Netem, ports: usize, seed: u64) -> Switch {
        Switch {
            netem,
            coin: Coin(seed),
            ports,
            macs: HashMap::new(),
            now_queue: VecDeque::new(),
            delayed: BinaryHeap::new(),
            sequence: 0,
            stats: SwitchStats::default(),
        }
    }

    pub fn stats(&self) -> SwitchStats {
        self.stats
    }

    /// A frame that arrived on `port` (its checksums already complete).
    pub fn handle(&mut self, now: Instant, port: usize, frame: &[u8]) {
        self.stats.received += 1;
        let (Some(dst), Some(src)) = (frame.get(0..6), frame.get(6..12)) else {
            self.stats.runts += 1;
            return;
        };
        if frame.len() < 14 {
            self.stats.runts += 1;
            return;
        }
        let multicast = |mac: &[u8]| mac[0] & 1 == 1;
        if !multicast(src) && port < self.ports {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(src);
            self.macs.insert(mac, port);
        }
        let known = if multicast(dst) {
            None
        } else {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(dst);
            self.macs.get(&mac).copied()
        };
        match known {
            // Its own segment: nothing to forward.
            Some(out) if out == port => {}
            Some(out) => self.egress(now, out, frame),
            None => {
                self.stats.flooded += 1;
                for out in (0..self.ports).filter(|&p| p != port) {
                    self.egress(now, out, frame);
                }
            }
        }
    }

    /// netem's order: loss, then duplication, then delay or (reorder) none.
    fn egress(&mut self, now: Instant, port: usize, frame: &[u8]) {
        if frame.get(12..14) != Some(&ETHERTYPE_IPV4[..]) {
            self.stats.unimpaired += 1;
            self.enqueue_now(port, frame);
            return;
        }
        if self.coin.flip(self.netem.loss) {
            self.stats.lost += 1;
            return;
        }
        let copies = if self.coin.flip(self.netem.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            if self.netem.delay.is_zero() {
                self.enqueue_now(port, frame);
            } else if self.coin.flip(self.netem.reorder) {
                self.stats.reordered += 1;
                self.enqueue_now(port, frame);
            } else {
                let at = now + self.wait();
                self.enqueue_at(at, port, frame);
            }
        }
    }

    /// The delay, with uniform jitter either side (never below zero).
    fn wait(&mut self) -> Duration {
        let (delay, jitter) = (self.netem.delay, self.netem.jitter);
        if jitter.is_zero() {
            return delay;
        }
        let offset = jitter.mul_f64(self.coin.unit() * 2.0);
        (delay + offset).saturating_sub(jitter)
    }

    fn queued(&self) -> usize {
        self.now_queue.len() + self.delayed.len()
    }

    fn enqueue_now(&mut self, port: usize, frame: &[u8]) {
        if self.queued() >= MAX_QUEUED {
            self.stats.overflow += 1;
            return;
        }
        self.now_queue.push_back((port, frame.to_vec()));
    }

    fn enqueue_at(&mut self, at: Instant, port: usize, frame: &[u8]) {
        if self.queued() >= MAX_QUEUED {
            self.stats.overflow += 1;
            return;
        }
        self.stats.delayed += 1;
        self.sequence += 1;
        self.delayed.push(Reverse(Delayed {
            at,
            sequence: self.sequence,
            port,
            frame: frame.to_vec(),
        }));
    }

    /// The next frame due by `now`, and the port it leaves by.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<(usize, Vec<u8>)> {
        if let Some(next) = self.now_queue.pop_front() {
            self.stats.sent += 1;
            return Some(next);
        }
        if self.delayed.peek().is_some_and(|d| d.0.at <= now) {
            let Reverse(d) = self.delayed.pop()?;
            self.stats.sent += 1;
            return Some((d.port, d.frame));
        }
        None
    }

    /// When the next delayed frame is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.now_queue.is_empty() {
            return Some(Instant::ZERO);
        }
        self.delayed.peek().map(|d| d.0.at)
    }

    /// The runner's count of sends the kernel refused.
    pub fn send_failed(&mut self) {
        self.stats.send_errors += 1;
    }
}

#[derive(Debug, clap::Args)]
pub struct ImpairArgs {
    /// The impairment, in netem's words (see `lab up --netem`).
    #[arg(long)]
    pub netem: String,
    /// Write every frame received, before impairment, to this pcap (Ethernet).
    #[arg(long)]
    pub pcap: Option<PathBuf>,
    /// Rewrite the switch's counters as JSON here every second and at exit.
    #[arg(long)]
    pub status: Option<PathBuf>,
    /// Seed of the impairment's coin flips (reproducible runs); from the OS by default.
    #[arg(long)]
    pub seed: Option<u64>,
    /// The interfaces to switch between (the public veth ends in the switch namespace).
    #[arg(required = true)]
    pub ports: Vec<String>,
}

#[derive(Debug, Serialize)]
struct SwitchStatus<'a> {
    netem: String,
    seed: u64,
    ports: &'a [String],
    stats: SwitchStats,
}

fn write_status(path: &std::path::Path, status: &SwitchStatus<'_>) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(status)?)
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("--status {}", path.display()))
}

/// `l2tpkit lab impair`: switches frames between `ports` until SIGINT or SIGTERM.
pub fn run(args: &ImpairArgs) -> anyhow::Result<ExitCode> {
    let netem: Netem = args
        .netem
        .parse()
        .map_err(|why| anyhow::anyhow!("--netem {:?}: {why}", args.netem))?;
    sys::install_interrupt_handler(true)?;
    let mut ports = Vec::with_capacity(args.ports.len());
    for name in &args.ports {
        ports.push(
            netio::tap::FramePort::open(name)
                .with_context(|| format!("opening a packet socket on {name}"))?,
        );
    }
    let mut pcap = match &args.pcap {
        Some(path) => Some(
            CaptureWriter::create(path, Linktype::ETHERNET)
                .with_context(|| format!("--pcap {}", path.display()))?,
        ),
        None => None,
    };
    let seed = args.seed.unwrap_or_else(crate::net::os_seed);
    let mut switch = Switch::new(netem, ports.len(), seed);
    let status = |switch: &Switch| SwitchStatus {
        netem: netem.to_string(),
        seed,
        ports: &args.ports,
        stats: switch.stats(),
    };
    // The readiness line the lab waits for.
    eprintln!(
        "l2tpkit lab impair: listening on {} ports, {netem}, seed {seed}",
        ports.len()
    );
    let epoch = std::time::Instant::now();
    let clock = || Instant::from_micros(u64::try_from(epoch.elapsed().as_micros()).unwrap_or(0));
    let mut fds: Vec<netio::poll::pollfd> = ports
        .iter()
        .map(|p| netio::poll::pollfd {
            fd: p.raw_fd(),
            events: 0,
            revents: 0,
        })
        .collect();
    let mut next_status = Instant::ZERO;
    while !sys::interrupted() {
        let now = clock();
        // At most 100 ms asleep: the interrupt flag is checked that often.
        let wake = switch
            .poll_timeout()
            .map_or(Duration::from_millis(100), |at| {
                at.saturating_duration_since(now)
                    .min(Duration::from_millis(100))
            });
        // Rounded up: waking a little late is netem's behaviour too, early would spin.
        netio::poll::poll_readable(&mut fds, wake).context("poll")?;
        let now = clock();
        let mut captured = false;
        for (index, port) in ports.iter_mut().enumerate() {
            if fds[index].revents == 0 {
                continue;
            }
            // Bounded per port and wake-up, so that one busy port cannot starve the others.
            for _ in 0..256 {
                let Some((frame, partial)) = port.recv().context("receiving a frame")? else {
                    break;
                };
                super::capture::complete_checksum(frame, partial);
                if let Some(pcap) = pcap.as_mut() {
                    // Stamped as each frame is read, not once per wake-up: a frame another
                    // role forwarded from the LAN must not appear here before the LAN capture
                    // saw it (verify orders the two captures by these times).
                    let wall = super::capture::wall_clock();
                    pcap.write_raw(wall, frame).context("--pcap")?;
                    captured = true;
                }
                switch.handle(now, index, frame);
            }
        }
        if captured {
            if let Some(pcap) = pcap.as_mut() {
                pcap.flush().context("--pcap")?;
            }
        }
        while let Some((port, frame)) = switch.poll_transmit(now) {
            if ports[port].send(&frame).is_err() {
                switch.send_failed();
            }
        }
        if now >= next_status {
            if let Some(path) = &args.status {
                write_status(path, &status(&switch))?;
            }
            next_status = now + Duration::from_secs(1);
        }
    }
    if let Some(pcap) = pcap.as_mut() {
        pcap.flush().context("--pcap")?;
    }
    if let Some(path) = &args.status {
        write_status(path, &status(&switch))?;
    }
    let stats = switch.stats();
    eprintln!(
        "l2tpkit lab impair: {} frames in, {} out, {} lost, {} delayed, {} reordered",
        stats.received, stats.sent, stats.lost, stats.delayed, stats.reordered
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet frame from MAC `from` to MAC `to` (0xff: broadcast) carrying `ethertype`,
    /// tagged by `tag` so frames can be told apart.
    fn frame(to: u8, from: u8, ethertype: [u8; 2], tag: u16) -> Vec<u8> {
        let dst = if to == 0xff {
            [0xff; 6]
        } else {
            [2, 0, 0, 0, 0, to]
        };
        let mut f = dst.to_vec();
        f.extend_from_slice(&[2, 0, 0, 0, 0, from]);
        f.extend_from_slice(&ethertype);
        f.extend_from_slice(&tag.to_be_bytes());
        f
    }

    fn tag(frame: &[u8]) -> u16 {
        u16::from_be_bytes([frame[14], frame[15]])
    }

    fn drain(switch: &mut Switch, now: Instant) -> Vec<(usize, u16)> {
        std::iter::from_fn(|| switch.poll_transmit(now))
            .map(|(port, f)| (port, tag(&f)))
            .collect()
    }

    const ARP: [u8; 2] = [0x08, 0x06];

    #[test]
    fn learns_floods_and_forwards_without_impairment() {
        let mut switch = Switch::new(Netem::default(), 3, 1);
        let t = Instant::ZERO;
        // Host 1 on port 0 asks for everyone: flooded to ports 1 and 2.
        switch.handle(t, 0, &frame(0xff, 1, ARP, 1));
        assert_eq!(drain(&mut switch, t), [(1, 1), (2, 1)]);
        // Host 2 answers from port 2; host 1 is known by now.
        switch.handle(t, 2, &frame(1, 2, ARP, 2));
        assert_eq!(drain(&mut switch, t), [(0, 2)]);
        switch.handle(t, 0, &frame(2, 1, ETHERTYPE_IPV4, 3));
        assert_eq!(drain(&mut switch, t), [(2, 3)]);
        let stats = switch.stats();
        assert_eq!((stats.received, stats.sent, stats.flooded), (3, 4, 1));
        assert_eq!(stats.unimpaired, 3);
        assert_eq!(switch.poll_timeout(), None);
    }

    #[test]
    fn delay_holds_frames_and_reorder_lets_some_overtake() {
        let netem: Netem = "delay 10ms reorder 25%".parse().unwrap();
        let mut switch = Switch::new(netem, 2, 7);
        let t = Instant::ZERO;
        switch.handle(t, 1, &frame(0xff, 2, ARP, 0)); // learn host 2 on port 1
        drain(&mut switch, t);
        let mut at_once = Vec::new();
        for i in 1..=1000u16 {
            switch.handle(t, 0, &frame(2, 1, ETHERTYPE_IPV4, i));
            at_once.extend(drain(&mut switch, t));
        }
        let later = drain(&mut switch, t + Duration::from_millis(10));
        assert_eq!(at_once.len() + later.len(), 1000);
        // About a quarter go at once (binomial: 250 ± 3 sigma of 14).
        assert!((200..=300).contains(&at_once.len()), "{}", at_once.len());
        // The rest keep their order among themselves and all wait the full delay.
        assert!(later.windows(2).all(|w| w[0].1 < w[1].1));
        assert!(drain(&mut switch, t + Duration::from_micros(9_999)).is_empty());
        assert_eq!(switch.stats().reordered as usize, at_once.len());
        assert_eq!(switch.stats().delayed as usize, later.len());
        // Overtaking: some frame sent at once has a higher tag than one still waiting.
        assert!(at_once.iter().any(|(_, tag)| *tag > later[0].1));
    }

    #[test]
    fn loss_and_duplication_are_counted_and_arp_is_spared() {
        let netem: Netem = "loss 20% duplicate 10%".parse().unwrap();
        let mut switch = Switch::new(netem, 2, 42);
        let t = Instant::ZERO;
        switch.handle(t, 1, &frame(0xff, 2, ARP, 0));
        drain(&mut switch, t);
        for i in 1..=2000u16 {
            switch.handle(t, 0, &frame(2, 1, ETHERTYPE_IPV4, i));
        }
        let out = drain(&mut switch, t);
        let stats = switch.stats();
        assert!((320..=480).contains(&stats.lost), "{stats:?}");
        assert_eq!(out.len() as u64, 2000 - stats.lost + stats.duplicated);
        assert!(stats.duplicated > 100, "{stats:?}");
        for i in 0..200u16 {
            switch.handle(t, 0, &frame(2, 1, ARP, i));
        }
        assert_eq!(drain(&mut switch, t).len(), 200);
        // The same seed makes the same choices.
        let mut twin = Switch::new(netem, 2, 42);
        twin.handle(t, 1, &frame(0xff, 2, ARP, 0));
        drain(&mut twin, t);
        for i in 1..=2000u16 {
            twin.handle(t, 0, &frame(2, 1, ETHERTYPE_IPV4, i));
        }
        assert_eq!(drain(&mut twin, t), out);
    }

    #[test]
    fn the_queue_is_bounded() {
        let netem: Netem = "delay 1s".parse().unwrap();
        let mut switch = Switch::new(netem, 2, 3);
        let t = Instant::ZERO;
        switch.handle(t, 1, &frame(0xff, 2, ARP, 0));
        drain(&mut switch, t);
        for i in 0..(MAX_QUEUED + 10) {
            switch.handle(t, 0, &frame(2, 1, ETHERTYPE_IPV4, i as u16));
        }
        assert_eq!(switch.stats().overflow, 10);
        assert_eq!(switch.poll_timeout(), Some(t + Duration::from_secs(1)));
    }
}
