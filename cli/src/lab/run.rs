//! `l2tpkit lab run`: the whole thing in one command. Up, the LAC from the initiator namespace
//! against the cluster address, both captures checked with `verify`, a table per endpoint, and
//! the lab removed, also when a step fails.

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use l2tp::wire::message::ParseOptions;
use probes::sequence;

use super::{sys, Lab, LabSpec, Role, Topology};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// fig2: endpoints behind a NAT; fig4: endpoints with global addresses of their own.
    #[arg(long, value_enum, default_value_t = Topology::Fig2)]
    pub topology: Topology,
    #[arg(long, default_value_t = 3,
          value_parser = clap::value_parser!(u16).range(1..=super::plan::MAX_ENDPOINTS as i64))]
    pub endpoints: u16,
    #[arg(long, default_value_t = 30,
          value_parser = clap::value_parser!(u16).range(1..=super::plan::MAX_INITIATORS as i64))]
    pub initiators: u16,
    #[arg(long, default_value_t = 300)]
    pub tunnels: usize,
    #[arg(long, default_value_t = 1)]
    pub sessions_per_tunnel: usize,
    /// Seconds to hold everything up with LCP echoes.
    #[arg(long, default_value_t = 3.0)]
    pub hold: f64,
    #[arg(long, default_value_t = 1.0)]
    pub echo_rate: f64,
    /// Where the logs, captures, status files and summary stay after the run.
    #[arg(long)]
    pub run_dir: Option<std::path::PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, serde::Serialize)]
struct EndpointRow {
    name: String,
    dispatched: u64,
    share_percent: f64,
    conforming_tunnels: usize,
}

#[derive(Debug, serde::Serialize)]
struct RunSummary {
    topology: String,
    run_dir: String,
    lac: serde_json::Value,
    lac_success: bool,
    verify_tunnels: usize,
    verify_conforming: usize,
    verify_variants: Vec<String>,
    endpoints: Vec<EndpointRow>,
}

pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    sys::install_interrupt_handler(true)?;
    if args.tunnels < usize::from(args.initiators) {
        anyhow::bail!(
            "--tunnels {} is fewer than --initiators {}",
            args.tunnels,
            args.initiators
        );
    }
    let spec = LabSpec {
        topology: args.topology,
        endpoints: args.endpoints.into(),
        initiators: args.initiators.into(),
        run_dir: args.run_dir.clone(),
        binary: None,
        captures: true,
        roles: true,
    };
    let lab = Lab::up(&spec)?;
    let outcome = drive(&lab, args);
    let run_dir = lab.run_dir().to_path_buf();
    let down = lab.down();
    let summary = outcome?;
    down.context("removing the lab")?;
    let text = serde_json::to_string_pretty(&summary)?;
    std::fs::write(run_dir.join("summary.json"), &text).context("writing summary.json")?;
    if args.json {
        println!("{text}");
    } else {
        print_table(&summary);
    }
    let ok = summary.lac_success
        && summary.verify_tunnels > 0
        && summary.verify_conforming == summary.verify_tunnels;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn drive(lab: &Lab, args: &RunArgs) -> anyhow::Result<RunSummary> {
    let d = lab.description();
    let ti = lab
        .namespace(Role::Initiator)
        .context("the lab has no initiator namespace")?
        .to_string();
    let first = d
        .initiator_addresses
        .first()
        .context("the lab has no initiator address")?;
    let setup_timeout = 20.0;
    let mut lac = Command::new("ip");
    lac.args(["netns", "exec", &ti])
        .arg(lab.binary())
        .args(["lac", "--any-source", "--json"])
        .arg(format!("--target={}", d.cluster_address))
        .arg(format!("--bind={first}:0"))
        .arg(format!("--initiators={}", args.initiators))
        .arg(format!("--tunnels={}", args.tunnels))
        .arg(format!(
            "--sessions-per-tunnel={}",
            args.sessions_per_tunnel
        ))
        .arg(format!("--hold={}", args.hold))
        .arg(format!("--echo-rate={}", args.echo_rate))
        .arg(format!("--setup-timeout={setup_timeout}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let budget = Duration::from_secs_f64(setup_timeout + args.hold.max(0.0) + 30.0);
    let output = run_bounded(lac, budget).context("running the LAC in the initiator namespace")?;
    std::fs::write(lab.run_dir().join("lac.json"), &output.stdout).context("writing lac.json")?;
    std::fs::write(lab.run_dir().join("lac.log"), &output.stderr).context("writing lac.log")?;
    let lac: serde_json::Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "the LAC printed no summary: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    // Let the last acks reach the captures, then stop them so the files are complete.
    std::thread::sleep(Duration::from_millis(500));
    for capture in ["capture-public", "capture-lan"] {
        lab.stop(capture)?;
    }
    let report = verify(lab.run_dir(), args.topology)?;
    std::fs::write(
        lab.run_dir().join("verify.txt"),
        report.render_text(&["public.pcap".into(), "lan.pcap".into()]),
    )
    .context("writing verify.txt")?;
    let status: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(lab.run_dir().join("master-status.json"))
            .context("reading the master's status")?,
    )
    .context("parsing the master's status")?;
    let total = status["totals"]["sccrq_dispatched"]
        .as_u64()
        .unwrap_or(0)
        .max(1);
    let endpoints = status["endpoints"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|e| {
                    let name = e["name"].as_str().unwrap_or("?").to_string();
                    let dispatched = e["dispatched_total"].as_u64().unwrap_or(0);
                    let conforming_tunnels = report
                        .tunnels
                        .iter()
                        .filter(|t| t.conforms && t.endpoint.as_deref() == Some(&name))
                        .count();
                    EndpointRow {
                        name,
                        dispatched,
                        share_percent: 100.0 * dispatched as f64 / total as f64,
                        conforming_tunnels,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(RunSummary {
        topology: args.topology.to_string(),
        run_dir: lab.run_dir().display().to_string(),
        lac_success: output.status.success(),
        lac,
        verify_tunnels: report.totals.tunnels,
        verify_conforming: report.totals.conforming,
        verify_variants: report
            .totals
            .variants
            .keys()
            .map(|v| format!("{v:?}"))
            .collect(),
        endpoints,
    })
}

fn verify(run_dir: &Path, topology: Topology) -> anyhow::Result<sequence::Report> {
    let roles = crate::verify::read_roles(&run_dir.join("roles.json"))?;
    let files = [run_dir.join("public.pcap"), run_dir.join("lan.pcap")];
    let (observations, _) = crate::verify::read_captures(&files, 1701, &ParseOptions::default())?;
    let expected = match topology {
        Topology::Fig2 => crate::verify::SequenceArg::Fig3,
        Topology::Fig4 => crate::verify::SequenceArg::Fig5,
    };
    Ok(sequence::check(&observations, &roles, expected.into()))
}

/// Waits for the command at most `budget`; kills it (by PID, then waits) when it overruns.
fn run_bounded(mut command: Command, budget: Duration) -> anyhow::Result<std::process::Output> {
    let child = command.spawn().context("starting")?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let started = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(output) => {
                let _ = waiter.join();
                return output.context("waiting for it");
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if started.elapsed() > budget {
                    let _ = Command::new("kill").arg(pid.to_string()).status();
                    let _ = waiter.join();
                    anyhow::bail!("did not finish within {budget:?}; killed");
                }
                sys::checkpoint()?;
            }
            Err(err) => anyhow::bail!("lost track of it: {err}"),
        }
    }
}

fn print_table(s: &RunSummary) {
    println!("lab run: {} — run dir {}", s.topology, s.run_dir);
    println!(
        "LAC: {} / {} tunnels, {} / {} sessions established; echoes {} sent, {} answered",
        s.lac["tunnels_established"],
        s.lac["tunnels_requested"],
        s.lac["sessions_established"],
        s.lac["sessions_requested"],
        s.lac["echo_requests_sent"],
        s.lac["echo_replies"].as_u64().unwrap_or(0)
            + s.lac["echo_looped_back"].as_u64().unwrap_or(0)
    );
    println!(
        "tunnel setup p50 {} ms, p99 {} ms",
        s.lac["tunnel_setup"]["p50_ms"], s.lac["tunnel_setup"]["p99_ms"]
    );
    println!(
        "{:<10} {:>10} {:>8} {:>12}",
        "endpoint", "dispatched", "share", "conforming"
    );
    for e in &s.endpoints {
        println!(
            "{:<10} {:>10} {:>7.1}% {:>12}",
            e.name, e.dispatched, e.share_percent, e.conforming_tunnels
        );
    }
    println!(
        "verify: {} of {} tunnels conform ({})",
        s.verify_conforming,
        s.verify_tunnels,
        s.verify_variants.join(", ")
    );
}
