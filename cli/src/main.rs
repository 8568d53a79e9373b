//! `l2tpkit`: L2TP conformance and load-testing toolkit with reference servers.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use l2tpkit::{decode, endpoint, lac};

#[derive(Debug, Parser)]
#[command(name = "l2tpkit", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode the L2TP packets of pcap/pcapng captures, one line (or JSON object) per packet.
    Decode(decode::DecodeArgs),
    /// Simulated LACs: open tunnels and sessions against an LNS, hold them with LCP echoes,
    /// tear them down, and report.
    Lac(lac::LacArgs),
    /// The reference LNS: accepts tunnels and sessions, answers LCP Echo-Request; with
    /// --auth, the PPP server of every session (PAP/CHAP, IPCP from a pool, IPv6CP).
    Endpoint(endpoint::EndpointCommand),
    /// The cluster master: owns the cluster address, dispatches each SCCRQ to an endpoint,
    /// forwards later packets by Tunnel ID (needs root for its raw socket).
    Master(l2tpkit::master::MasterArgs),
    /// Speak for an LNS we did not write (xl2tpd, l2tpns, a vendor box) in the cluster: watch
    /// its L2TP traffic, report its load and claim its tunnels at the master (needs root).
    Agent(l2tpkit::agent::AgentArgs),
    /// The NAT of FIG 2: Table 1 built from SCCRPs, source rewritten on the way out,
    /// destination on the way in (needs root for its raw sockets).
    Nat(l2tpkit::nat::NatArgs),
    /// Ask a running master or NAT over its control socket: status, or drain / deactivate /
    /// activate an endpoint.
    Ctl(l2tpkit::ctl::CtlArgs),
    /// Conformance probes against any LNS or cluster: a verdict per RFC 2661 rule (and the
    /// patent's, with --cluster), the exchange as evidence, a pcap per probe.
    Probe(l2tpkit::probe::ProbeArgs),
    /// Check captures of a cluster run against the patent's sequences (FIG 3, FIG 5) and
    /// RFC 2661's Ns/Nr rules; exit 0 only if every tunnel conforms.
    Verify(l2tpkit::verify::VerifyArgs),
    /// One self-contained HTML report of a run (summary, charts, latency percentiles,
    /// dispatch, probe verdicts, ladder diagrams), readable offline.
    Report(l2tpkit::report::ReportArgs),
    /// One report from the shards of a run (`lac --shard I/N`): histograms added exactly from
    /// the interval logs, counters summed, per-second series lined up by wall clock.
    Merge(l2tpkit::merge::MergeArgs),
    /// The patent's FIG 2 / FIG 4 topologies in network namespaces: `lab up`, `lab down`.
    #[command(subcommand)]
    Lab(l2tpkit::lab::LabCommand),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("L2TPKIT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colour for a terminal only: a role's log file (the lab's, a test's) stays plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A refused value, on one line as the commands' own checks say it.
        Err(err) => match l2tpkit::args::one_line(&err) {
            Some(line) => {
                eprintln!("l2tpkit: {line}");
                return ExitCode::from(2);
            }
            None => err.exit(),
        },
    };
    let result = match cli.command {
        Command::Decode(args) => decode::run(&args),
        Command::Verify(args) => l2tpkit::verify::run(&args),
        Command::Lac(args) => lac::run(&args),
        Command::Endpoint(args) => endpoint::run(&args),
        Command::Master(args) => l2tpkit::master::run(&args),
        Command::Nat(args) => l2tpkit::nat::run(&args),
        Command::Agent(args) => l2tpkit::agent::run(&args),
        Command::Lab(command) => l2tpkit::lab::run(&command),
        Command::Ctl(args) => l2tpkit::ctl::run(&args),
        Command::Probe(args) => l2tpkit::probe::run(&args),
        Command::Report(args) => l2tpkit::report::run(&args),
        Command::Merge(args) => l2tpkit::merge::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("l2tpkit: {}", one_line(&err));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes on one line, skipping a cause that the message before it already
/// quotes (library errors often include their source's text).
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}
