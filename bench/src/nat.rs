//! `l2tpkit-bench nat`: L2TP data messages per second through our NAT (`l2tpkit nat`, the
//! patent's FIG 2 box) against the kernel's NAT (nftables DNAT + masquerade) in the same lab,
//! in the same run, rounds alternating.
//!
//! One FIG 2 lab (initiator, master, NAT, one endpoint; no captures). The generator
//! (`l2tpkit-bench nat-blast`, see [`crate::traffic`]) opens tunnels and sessions through the cluster
//! from the initiator namespace, so our NAT holds a Table 1 entry for each; the endpoint
//! namespace then drops data messages at its LAN interface's netdev ingress hook, where the
//! sink (`l2tpkit-bench nat-sink`) counts them from the interface counter. Each round the generator
//! blasts the same data messages at the NAT's global address for a bounded time and count:
//!
//! - ours: the NAT namespace as the lab made it (`ip_forward=0`); `l2tpkit nat` (see
//!   `reference::serve::serve_nat`: a receive ring on the public side, Ethernet frames or
//!   IP_HDRINCL packets to the LAN).
//! - kernel: the same namespace with our NAT process stopped, `ip_forward=1` and an nftables
//!   table: DNAT of UDP port 1701 arriving on the public interface to the endpoint's LAN
//!   address, masquerade out of the public interface. For the next round of ours the table
//!   goes, forwarding is switched off, a new `l2tpkit nat` starts and the generator opens new
//!   tunnels through it (the old Table 1 went with the old process).

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::traffic::{Blasted, Counted, Ready};
use l2tpkit::lab::plan::{self, NodeKind, Segment};
use l2tpkit::lab::{sys, Lab};

#[derive(Debug, clap::Args)]
pub struct NatBench {
    /// Rounds of each NAT (ours, kernel, ours, kernel, ...); the median of each is compared.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub rounds: u32,
    /// Seconds of sending per round (at most 20).
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Packets per round at most (at most 20,000,000).
    #[arg(long, default_value_t = 10_000_000)]
    pub packets: u64,
    /// Tunnels (one session each) the generator opens and sends on in turn.
    #[arg(long, default_value_t = 16)]
    pub tunnels: usize,
    /// Bytes of PPP frame per data message; 24 makes 60-byte IPv4 packets.
    #[arg(long, default_value_t = 24)]
    pub frame: usize,
    /// Only our NAT's rounds: for profiling it.
    #[arg(long)]
    pub skip_kernel: bool,
    /// Pin our NAT process (every thread) to this CPU and the generator to the others, so
    /// that the scheduler never puts the two on one CPU while the other idles. The kernel's
    /// NAT still forwards in the generator's softirq, on the generator's CPU.
    #[arg(long)]
    pub nat_cpu: Option<usize>,
    /// With --nat-cpu: also steer what the NAT's public interface receives to that CPU (RPS),
    /// so that the NAT box's kernel work (all of the kernel's NAT; the UDP receive for ours)
    /// runs on the NAT's CPU instead of the generator's.
    #[arg(long, requires = "nat_cpu")]
    pub rps: bool,
    /// Where the lab's logs go [default: a new directory under $TMPDIR/l2tpkit-lab/].
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Which {
    Ours,
    Kernel,
}

#[derive(Debug, Clone, Serialize)]
struct Round {
    nat: Which,
    /// Data messages the generator sent, and at what rate.
    sent: u64,
    offered_per_second: f64,
    /// Data messages that reached the endpoint in the whole round (its ingress rule's count).
    delivered: u64,
    /// The rate: packets received on the endpoint's LAN interface (its rx counter) between two
    /// samples inside the traffic, over the time between them.
    window_packets: u64,
    window_seconds: f64,
    delivered_per_second: f64,
    /// Sent but not delivered: dropped on the way (mostly in the NAT: its socket or ring
    /// overflowing when it cannot keep up).
    lost: u64,
    send_errors: u64,
    /// Ours: how the NAT moved the packets (`io` of its status file, over its whole life).
    nat_io: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
struct Summary {
    /// `--nat-cpu`: the CPU our NAT process was pinned to (the generator to the others).
    nat_cpu: Option<usize>,
    /// `--rps`: the NAT namespace's receive work steered to `nat_cpu` too.
    rps: bool,
    /// Whether the lab's bridges called netfilter (the lab turns it off where the kernel has
    /// br_netfilter; read back from the switch namespace).
    bridge_netfilter: bool,
    packet_bytes: usize,
    tunnels: usize,
    seconds_per_round: f64,
    rounds: Vec<Round>,
    ours_median_per_second: f64,
    kernel_median_per_second: Option<f64>,
    /// ours / kernel.
    ratio: Option<f64>,
    run_dir: String,
}

/// The table names this benchmark adds (inside the lab's namespaces only).
const SINK_TABLE: &str = "l2tpkit_bench_sink";
const NAT_TABLE: &str = "l2tpkit_bench_nat";

pub fn run(args: &NatBench) -> anyhow::Result<ExitCode> {
    sys::install_interrupt_handler(true)?;
    if !args.seconds.is_finite() || !(0.5..=20.0).contains(&args.seconds) {
        bail!("--seconds {}: expected 0.5 to 20", args.seconds);
    }
    if !(1..=20_000_000).contains(&args.packets) {
        bail!("--packets {}: expected 1 to 20000000", args.packets);
    }
    if !(1..=1000).contains(&args.tunnels) {
        bail!("--tunnels {}: expected 1 to 1000", args.tunnels);
    }
    if !(4..=1400).contains(&args.frame) {
        bail!("--frame {}: expected 4 to 1400 bytes", args.frame);
    }
    if !sys::is_root() {
        bail!("bench nat needs root (a lab in network namespaces)");
    }
    if !sys::have("nft", "--version") {
        bail!(
            "`nft` (nftables) is not installed; bench nat needs it for the kernel NAT it \
             compares against and to drop the data messages at the endpoint after counting \
             them. Install it with: DEBIAN_FRONTEND=noninteractive apt-get install -y nftables"
        );
    }
    let Some(lab) = crate::fig2_lab("nat", 1, 1, false, args.run_dir.clone())? else {
        return Ok(ExitCode::from(130));
    };
    let Some(summary) = crate::drive_then_down("nat", lab, |lab| drive(lab, args))? else {
        return Ok(ExitCode::from(130));
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary);
    }
    Ok(ExitCode::SUCCESS)
}

struct Names {
    initiator_ns: String,
    nat_ns: String,
    nat_public_if: String,
    nat_lan_if: String,
    endpoint_ns: String,
    endpoint_if: String,
    endpoint_lan: Ipv4Addr,
}

fn names(lab: &Lab) -> anyhow::Result<Names> {
    let plan = lab.plan();
    let nat = plan.node(NodeKind::Nat).context("no NAT in the plan")?;
    let te = plan.endpoints().next().context("no endpoint in the plan")?;
    let te_if = te.interface(Segment::Lan).context("endpoint without LAN")?;
    Ok(Names {
        initiator_ns: lab
            .namespace(NodeKind::Initiator)
            .context("no initiator namespace")?
            .to_string(),
        nat_ns: nat.namespace.clone(),
        nat_public_if: nat
            .interface(Segment::Public)
            .context("NAT without a public interface")?
            .name
            .clone(),
        nat_lan_if: nat
            .interface(Segment::Lan)
            .context("NAT without a LAN interface")?
            .name
            .clone(),
        endpoint_ns: te.namespace.clone(),
        endpoint_if: te_if.name.clone(),
        endpoint_lan: te_if.addresses[0],
    })
}

fn drive(lab: &Lab, args: &NatBench) -> anyhow::Result<Summary> {
    let n = names(lab)?;
    // The generator and the sink are this binary's hidden subcommands; the roles are `l2tpkit`.
    let binary = std::env::current_exe()
        .context("finding the current executable")?
        .display()
        .to_string();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let generator_cpus = match args.nat_cpu {
        Some(cpu) if cpu >= cpus || cpus < 2 => {
            bail!("--nat-cpu {cpu}: this machine has CPUs 0 to {}", cpus - 1)
        }
        Some(cpu) => {
            let nat = lab
                .processes()
                .into_iter()
                .find(|p| p.name == "nat")
                .context("the lab runs no NAT process")?;
            pin_process(nat.pid, cpu)?;
            if args.rps {
                steer_receive(&n, cpu)?;
            }
            Some(
                (0..cpus)
                    .filter(|c| *c != cpu)
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            )
        }
        None => None,
    };
    let mut generator = Helper::spawn(
        "generator",
        &n.initiator_ns,
        generator_cpus.as_deref(),
        &binary,
        &[
            "nat-blast".into(),
            format!("--bind={}:0", plan::initiator_address(1)),
            format!("--target={}", plan::CLUSTER_ADDRESS),
            format!("--tunnels={}", args.tunnels),
            format!("--frame={}", args.frame),
        ],
        &lab.run_dir().join("bench-generator.log"),
    )?;
    let ready: Ready = generator.read_json(Duration::from_secs(30))?;
    if ready.peer != format!("{}:1701", plan::NAT_GLOBAL) {
        bail!(
            "the tunnels answered from {}, not the NAT's global address",
            ready.peer
        );
    }
    eprintln!(
        "bench nat: {} tunnels with a session each through the cluster in {:.0} ms ({} -> {}); \
         {}-byte packets",
        ready.tunnels, ready.setup_ms, ready.local, ready.peer, ready.packet_bytes
    );
    // Data messages only (T bit clear): control messages still reach the endpoint.
    nft(
        &n.endpoint_ns,
        &format!(
            "table netdev {SINK_TABLE} {{\n\
               counter data {{ }}\n\
               chain ingress {{\n\
                 type filter hook ingress device \"{}\" priority 0; policy accept;\n\
                 udp dport 1701 @th,64,1 0 counter name \"data\" drop\n\
               }}\n\
             }}\n",
            n.endpoint_if
        ),
    )?;
    let mut rounds = Vec::new();
    let order: &[Which] = if args.skip_kernel {
        &[Which::Ours]
    } else {
        &[Which::Ours, Which::Kernel]
    };
    // Our NAT's receive ring sees what arrives for the global address before the kernel's
    // DNAT does: it must not run during the kernel's rounds. It is stopped for them and a new
    // one started for the next round of ours, with new tunnels (the old Table 1 is gone).
    let mut nat_running = Some("nat".to_string());
    let mut started = 1;
    for round in 0..args.rounds {
        for &which in order {
            sys::checkpoint()?;
            if which == Which::Ours && nat_running.is_none() {
                started += 1;
                let name = format!("nat-{started}");
                start_nat(lab, &n, &name, args.nat_cpu)?;
                nat_running = Some(name);
                generator.say("reopen")?;
                let again: Ready = generator.read_json(Duration::from_secs(30))?;
                if again.peer != ready.peer {
                    bail!("the new tunnels answered from {}", again.peer);
                }
            }
            if which == Which::Kernel {
                kernel_nat(&n, true)?;
            }
            let result = one_round(lab, &n, &binary, &mut generator, args, which);
            if which == Which::Kernel {
                kernel_nat(&n, false)?;
            }
            let mut result = result.with_context(|| format!("round {} ({which:?})", round + 1))?;
            if let (Which::Ours, Some(name)) = (which, &nat_running) {
                // Stopped now, its final status file holds the whole round.
                if !args.skip_kernel {
                    lab.stop(name)?;
                }
                result.nat_io = nat_io(lab, name);
                if !args.skip_kernel {
                    nat_running = None;
                }
            }
            eprintln!(
                "bench nat: round {} {:<6} sent {:>9} ({:>7.0}/s), delivered {:>9} ({:>7.0}/s)",
                round + 1,
                format!("{which:?}").to_lowercase(),
                result.sent,
                result.offered_per_second,
                result.delivered,
                result.delivered_per_second
            );
            rounds.push(result);
        }
    }
    generator.say("quit")?;
    generator.finish(Duration::from_secs(5));
    let median = |which: Which| {
        let mut rates: Vec<f64> = rounds
            .iter()
            .filter(|r| r.nat == which)
            .map(|r| r.delivered_per_second)
            .collect();
        rates.sort_by(f64::total_cmp);
        (!rates.is_empty()).then(|| {
            let mid = rates.len() / 2;
            if rates.len() % 2 == 1 {
                rates[mid]
            } else {
                (rates[mid - 1] + rates[mid]) / 2.0
            }
        })
    };
    let ours = median(Which::Ours).unwrap_or(0.0);
    let kernel = median(Which::Kernel);
    Ok(Summary {
        nat_cpu: args.nat_cpu,
        rps: args.rps,
        bridge_netfilter: sys::sysctl_get(
            &lab.plan().switch_namespace,
            "net.bridge.bridge-nf-call-iptables",
        )
        .is_ok_and(|v| v.trim() == "1"),
        packet_bytes: ready.packet_bytes,
        tunnels: ready.tunnels,
        seconds_per_round: args.seconds,
        ours_median_per_second: ours,
        kernel_median_per_second: kernel,
        ratio: kernel.filter(|k| *k > 0.0).map(|k| ours / k),
        rounds,
        run_dir: lab.run_dir().display().to_string(),
    })
}

fn one_round(
    lab: &Lab,
    n: &Names,
    binary: &str,
    generator: &mut Helper,
    args: &NatBench,
    which: Which,
) -> anyhow::Result<Round> {
    // A quiet moment: what the last round left in queues is gone before the count starts.
    std::thread::sleep(Duration::from_millis(300));
    nft(
        &n.endpoint_ns,
        &format!("reset counter netdev {SINK_TABLE} data\n"),
    )?;
    let mut sink = Helper::spawn(
        "sink",
        &n.endpoint_ns,
        None,
        binary,
        &[
            "nat-sink".into(),
            format!("--interface={}", n.endpoint_if),
            "--wait=10".into(),
            format!("--max={}", args.seconds + 10.0),
        ],
        &lab.run_dir().join("bench-sink.log"),
    )?;
    let _: serde_json::Value = sink.read_json(Duration::from_secs(10))?;
    generator.say(&format!("blast {} {}", args.seconds, args.packets))?;
    let blasted: Blasted = generator.read_json(Duration::from_secs_f64(args.seconds + 15.0))?;
    let counted: Counted = sink.read_json(Duration::from_secs_f64(args.seconds + 15.0))?;
    sink.finish(Duration::from_secs(2));
    let counted_by_nft = nft_counter(&n.endpoint_ns).context("reading the endpoint's count")?;
    if counted.packets == 0 {
        bail!(
            "nothing arrived at the endpoint ({} sent); is {} the endpoint's address?",
            blasted.sent,
            n.endpoint_lan
        );
    }
    Ok(Round {
        nat: which,
        sent: blasted.sent,
        offered_per_second: blasted.sent as f64 / blasted.seconds.max(1e-9),
        delivered: counted_by_nft,
        window_packets: counted.packets,
        window_seconds: counted.seconds,
        delivered_per_second: counted.packets as f64 / counted.seconds.max(1e-9),
        lost: blasted.sent.saturating_sub(counted_by_nft),
        nat_io: None,
        send_errors: blasted.errors,
    })
}

/// Switches the NAT namespace to the kernel's NAT (`on`) or back to ours.
fn kernel_nat(n: &Names, on: bool) -> anyhow::Result<()> {
    if on {
        nft(
            &n.nat_ns,
            &format!(
                "table ip {NAT_TABLE} {{\n\
                   chain prerouting {{\n\
                     type nat hook prerouting priority dstnat; policy accept;\n\
                     iifname \"{public}\" udp dport 1701 dnat to {endpoint}\n\
                   }}\n\
                   chain postrouting {{\n\
                     type nat hook postrouting priority srcnat; policy accept;\n\
                     oifname \"{public}\" masquerade\n\
                   }}\n\
                 }}\n",
                public = n.nat_public_if,
                endpoint = n.endpoint_lan
            ),
        )?;
        sys::sysctl(&n.nat_ns, &[("net.ipv4.ip_forward".into(), "1".into())])
    } else {
        sys::sysctl(&n.nat_ns, &[("net.ipv4.ip_forward".into(), "0".into())])?;
        nft(&n.nat_ns, &format!("delete table ip {NAT_TABLE}\n")).map(drop)
    }
}

/// The `io` part of NAT `name`'s status file.
fn nat_io(lab: &Lab, name: &str) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(lab.run_dir().join(format!("{name}-status.json"))).ok()?;
    let status: serde_json::Value = serde_json::from_str(&text).ok()?;
    status.get("io").cloned()
}

/// Starts our NAT in the NAT namespace as the lab's roles do (see `lab::start_roles`).
fn start_nat(lab: &Lab, n: &Names, name: &str, cpu: Option<usize>) -> anyhow::Result<()> {
    let process = lab.spawn_l2tpkit(
        name,
        &n.nat_ns,
        [
            "nat".to_string(),
            format!("--global={}", plan::NAT_GLOBAL),
            format!("--lan={}", plan::NAT_LAN),
            format!("--lan-if={}", n.nat_lan_if),
            format!(
                "--status={}",
                lab.run_dir().join(format!("{name}-status.json")).display()
            ),
        ],
    )?;
    lab.wait_for_log(&process, "listening on", Duration::from_secs(10))?;
    if let Some(cpu) = cpu {
        pin_process(process.pid, cpu)?;
    }
    Ok(())
}

/// `--nat-cpu`: every thread of `pid` on `cpu`.
fn pin_process(pid: u32, cpu: usize) -> anyhow::Result<()> {
    let out = sys::run(
        "taskset",
        &["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()],
        None,
        sys::COMMAND_TIMEOUT,
    )?;
    if !out.status.success() {
        bail!("taskset on pid {pid}: {}", out.stderr.trim());
    }
    Ok(())
}

/// `--rps`: what the NAT's public interface receives is processed on `cpu`.
fn steer_receive(n: &Names, cpu: usize) -> anyhow::Result<()> {
    let mask = format!("{:x}", 1u64 << cpu);
    let path = format!("/sys/class/net/{}/queues/rx-0/rps_cpus", n.nat_public_if);
    let out = sys::run(
        "ip",
        &[
            "netns",
            "exec",
            &n.nat_ns,
            "sh",
            "-c",
            &format!("echo {mask} > {path}"),
        ],
        None,
        sys::COMMAND_TIMEOUT,
    )?;
    if !out.status.success() {
        bail!("setting {path} in {}: {}", n.nat_ns, out.stderr.trim());
    }
    Ok(())
}

/// `nft -f -` inside `namespace`.
fn nft(namespace: &str, script: &str) -> anyhow::Result<String> {
    let out = sys::run(
        "ip",
        &["netns", "exec", namespace, "nft", "-f", "-"],
        Some(script.to_string()),
        sys::COMMAND_TIMEOUT,
    )?;
    if !out.status.success() {
        bail!(
            "nft in {namespace}: {} (script: {})",
            out.stderr.trim(),
            script.trim()
        );
    }
    Ok(out.stdout)
}

fn nft_counter(namespace: &str) -> anyhow::Result<u64> {
    let text = nft(
        namespace,
        &format!("list counter netdev {SINK_TABLE} data\n"),
    )?;
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[0] == "packets")
        .and_then(|w| w[1].parse().ok())
        .context("no packet count in nft's answer")
}

/// A helper process of ours (`ip netns exec NS l2tpkit-bench ...`), talked to over its stdin
/// and stdout, in a process group of its own; killed by PID and reaped when dropped.
struct Helper {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    log: PathBuf,
}

impl Helper {
    /// With `cpus` (a taskset list), pinned to those CPUs.
    fn spawn(
        name: &str,
        namespace: &str,
        cpus: Option<&str>,
        binary: &str,
        args: &[String],
        log: &Path,
    ) -> anyhow::Result<Helper> {
        let stderr =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = match cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpus, "ip"]);
                c
            }
            None => Command::new("ip"),
        };
        let mut child = command
            .args(["netns", "exec", namespace, binary])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting the {name} in {namespace}"))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Helper {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child,
            lines,
            log: log.to_path_buf(),
        })
    }

    fn say(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("stdin closed")?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .with_context(|| format!("talking to the {}", self.name))
    }

    /// The next line as JSON; fails when the process exits first (quoting its log), at the
    /// timeout, or on Ctrl-C.
    fn read_json<T: serde::de::DeserializeOwned>(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            sys::checkpoint()?;
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    return serde_json::from_str(&line)
                        .with_context(|| format!("the {} said {line:?}", self.name))
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("the {} did not answer within {timeout:?}", self.name)
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = sys::wait_timeout(&mut self.child, Duration::from_secs(2));
                    let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(5).collect();
                    bail!("the {} exited: {}", self.name, tail.join(" | "));
                }
            }
        }
    }

    /// Closes its stdin and waits for it up to `grace`; kills it after that.
    fn finish(&mut self, grace: Duration) {
        self.stdin = None;
        if matches!(sys::wait_timeout(&mut self.child, grace), Ok(Some(_))) {
            return;
        }
        let _ = self.child.kill();
        let _ = sys::wait_timeout(&mut self.child, sys::KILL_GRACE);
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = sys::wait_timeout(&mut self.child, sys::KILL_GRACE);
        }
    }
}

fn print_summary(s: &Summary) {
    let pinned = match (s.nat_cpu, s.rps) {
        (Some(cpu), true) => format!(", our NAT and the NAT's receive work on CPU {cpu}"),
        (Some(cpu), false) => format!(", our NAT on CPU {cpu}"),
        (None, _) => String::new(),
    };
    println!(
        "NAT forwarding, {}-byte L2TP data messages on {} tunnels, {} s rounds (FIG 2 lab, \
         bridges {} netfilter{pinned})",
        s.packet_bytes,
        s.tunnels,
        s.seconds_per_round,
        if s.bridge_netfilter {
            "with"
        } else {
            "without"
        }
    );
    println!(
        "{:>5}  {:<6}  {:>10}  {:>10}  {:>10}  {:>10}  {:>12}",
        "round", "NAT", "sent", "offered/s", "delivered", "per second", "lost"
    );
    let mut index = std::collections::BTreeMap::new();
    for r in &s.rounds {
        let i = index.entry(format!("{:?}", r.nat)).or_insert(0);
        *i += 1;
        println!(
            "{:>5}  {:<6}  {:>10}  {:>10.0}  {:>10}  {:>10.0}  {:>12}",
            i,
            format!("{:?}", r.nat).to_lowercase(),
            r.sent,
            r.offered_per_second,
            r.delivered,
            r.delivered_per_second,
            r.lost
        );
    }
    println!(
        "ours (l2tpkit nat):            {:.0} data messages/s (median)",
        s.ours_median_per_second
    );
    match (s.kernel_median_per_second, s.ratio) {
        (Some(k), Some(ratio)) => {
            println!("kernel NAT (nft DNAT + masq.): {k:.0} data messages/s (median)");
            println!("ratio: {ratio:.2}x");
        }
        _ => println!("kernel NAT: not measured"),
    }
}
