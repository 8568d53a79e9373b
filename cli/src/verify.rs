//! `l2tpkit verify`: captures of a cluster run (the public side and the LAN side) checked
//! against the patent's message sequences (FIG 3, FIG 5) and RFC 2661's Ns/Nr rules.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use l2tp::capture::CaptureReader;
use l2tp::wire::message::ParseOptions;
use probes::sequence::{self, Observation, ReadCounts, Report, Roles, Sequence};
use serde::Serialize;

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// pcap or pcapng files, typically the public side and the LAN side of one run; they are
    /// merged by time, and a packet seen on both sides counts as two steps.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The sequence every tunnel must follow: fig3 (endpoints behind a NAT), fig5 (endpoints
    /// with global addresses), or auto (per tunnel, from where its SCCRP came from).
    #[arg(long, value_enum, default_value_t = SequenceArg::Auto)]
    pub sequence: SequenceArg,
    /// One JSON object: roles, per-tunnel timelines and deviations, totals.
    #[arg(long)]
    pub json: bool,
    /// JSON file naming the cluster's addresses; what it leaves out is inferred.
    ///
    /// {"cluster_address": "198.18.0.1", "master_lan": "198.19.0.1",
    ///  "nat_global": "198.18.0.2", "nat_lan": "198.19.0.2",
    ///  "endpoints": [{"name": "te1", "lan": "198.19.0.11", "global": "198.18.0.11"}]}
    ///
    /// Every field is optional ("global" only in FIG 4, "nat_*" only in FIG 2). Every other
    /// address is a tunnel initiator.
    #[arg(long, value_name = "FILE")]
    pub roles: Option<PathBuf>,
    /// UDP port that carries L2TP (either side of the datagram).
    #[arg(long, default_value_t = 1701)]
    pub port: u16,
    /// Tunnel secret, to unhide hidden AVPs (an Assigned Tunnel ID may travel hidden).
    #[arg(long)]
    pub secret: Option<String>,
    /// Write ladder diagrams (SVG) into this directory: the first tunnels and every deviating
    /// one, a column per role, an arrow per message with its step, deviations in red.
    #[arg(long, value_name = "DIR")]
    pub svg: Option<PathBuf>,
}

/// `--svg` draws the first this many tunnels, and every deviating one besides.
pub const LADDERS_FIRST: usize = 5;

/// Writes the ladders `--svg` asks for into `dir` (made if missing); how many were written.
pub fn write_ladders(report: &Report, dir: &Path) -> anyhow::Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("--svg {}", dir.display()))?;
    let mut written = 0;
    for (i, tunnel) in report.tunnels.iter().enumerate() {
        if i >= LADDERS_FIRST && tunnel.conforms {
            continue;
        }
        let name = format!(
            "tunnel-{:03}-{}-{}-tid{}.svg",
            i + 1,
            tunnel.initiator.ip(),
            tunnel.initiator.port(),
            tunnel.initiator_tunnel_id
        );
        let path = dir.join(name);
        std::fs::write(&path, sequence::ladder::svg(tunnel))
            .with_context(|| format!("--svg: writing {}", path.display()))?;
        written += 1;
    }
    Ok(written)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SequenceArg {
    Fig3,
    Fig5,
    Auto,
}

impl From<SequenceArg> for Sequence {
    fn from(arg: SequenceArg) -> Sequence {
        match arg {
            SequenceArg::Fig3 => Sequence::Fig3,
            SequenceArg::Fig5 => Sequence::Fig5,
            SequenceArg::Auto => Sequence::Auto,
        }
    }
}

/// Exit 0 only when there is a tunnel and every tunnel conforms; 1 otherwise.
pub fn run(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let roles = match &args.roles {
        Some(path) => read_roles(path)?,
        None => Roles::default(),
    };
    let options = ParseOptions {
        secret: args.secret.as_deref().map(str::as_bytes),
    };
    let (observations, counts) = read_captures(&args.files, args.port, &options)?;
    let report = sequence::check(&observations, &roles, args.sequence.into());
    let captures: Vec<String> = args.files.iter().map(|p| p.display().to_string()).collect();
    if let Some(dir) = &args.svg {
        let written = write_ladders(&report, dir)?;
        eprintln!("wrote {written} ladder diagram(s) to {}", dir.display());
    }

    let mut out = io::stdout().lock();
    if args.json {
        let output = JsonReport {
            captures: &captures,
            report: &report,
        };
        serde_json::to_writer_pretty(&mut out, &output).context("writing to stdout")?;
        writeln!(out).context("writing to stdout")?;
    } else {
        out.write_all(report.render_text(&captures).as_bytes())
            .context("writing to stdout")?;
    }
    out.flush().context("writing to stdout")?;
    eprintln!(
        "read {} L2TP messages from {} capture{} ({} malformed, {} other records skipped)",
        counts.l2tp,
        captures.len(),
        if captures.len() == 1 { "" } else { "s" },
        counts.malformed,
        counts.skipped
    );
    Ok(exit_code(&report))
}

pub fn exit_code(report: &Report) -> ExitCode {
    if report.conforms() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[derive(Serialize)]
struct JsonReport<'a> {
    captures: &'a [String],
    #[serde(flatten)]
    report: &'a Report,
}

/// Reads and checks a roles file; errors name the file.
pub fn read_roles(path: &Path) -> anyhow::Result<Roles> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("roles file {}", path.display()))?;
    let roles: Roles =
        serde_json::from_str(&text).with_context(|| format!("roles file {}", path.display()))?;
    roles
        .validate()
        .map_err(|problem| anyhow::anyhow!("roles file {}: {problem}", path.display()))?;
    Ok(roles)
}

/// Every capture's L2TP messages, each capture numbered by its position in `files`.
pub fn read_captures(
    files: &[PathBuf],
    port: u16,
    options: &ParseOptions,
) -> anyhow::Result<(Vec<Observation>, ReadCounts)> {
    let mut observations = Vec::new();
    let mut total = ReadCounts::default();
    for (capture, path) in files.iter().enumerate() {
        let mut reader = CaptureReader::open(path)?;
        let counts =
            sequence::read_capture(&mut reader, capture, port, options, &mut observations)?;
        total.l2tp += counts.l2tp;
        total.malformed += counts.malformed;
        total.skipped += counts.skipped;
    }
    Ok((observations, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use probes::sequence::craft::{self, Fault, Plan, PppScript};
    use probes::sequence::Variant;

    /// A fresh directory under the system's temporary directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir =
                std::env::temp_dir().join(format!("l2tpkit-verify-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn args(files: Vec<PathBuf>, roles: Option<PathBuf>) -> VerifyArgs {
        VerifyArgs {
            files,
            sequence: SequenceArg::Auto,
            json: false,
            roles,
            port: 1701,
            secret: None,
            svg: None,
        }
    }

    fn check_files(args: &VerifyArgs) -> Report {
        let roles = args
            .roles
            .as_deref()
            .map(|path| read_roles(path).unwrap())
            .unwrap_or_default();
        let (observations, counts) =
            read_captures(&args.files, args.port, &ParseOptions::default()).unwrap();
        assert_eq!(counts.malformed, 0);
        sequence::check(&observations, &roles, args.sequence.into())
    }

    fn write_run(dir: &TempDir, plan: Plan) -> (Vec<PathBuf>, PathBuf) {
        let run = craft::craft(plan);
        let public = dir.0.join("public.pcap");
        let lan = dir.0.join("lan.pcap");
        run.write_pcaps(&public, &lan).unwrap();
        let roles = dir.0.join("roles.json");
        std::fs::write(&roles, serde_json::to_string_pretty(&run.roles).unwrap()).unwrap();
        (vec![public, lan], roles)
    }

    #[test]
    fn a_correct_fig3_run_exits_0_with_or_without_roles() {
        let dir = TempDir::new("fig3");
        let (files, roles) = write_run(&dir, Plan::new(Variant::Fig3));
        for roles in [Some(roles), None] {
            let report = check_files(&args(files.clone(), roles));
            assert_eq!(report.totals.tunnels, 6);
            assert!(report.conforms(), "{}", report.render_text(&[]));
            assert_eq!(exit_code(&report), ExitCode::SUCCESS);
        }
    }

    #[test]
    fn a_broken_nat_exits_1_naming_step_108() {
        let dir = TempDir::new("nat");
        let (files, roles) = write_run(
            &dir,
            Plan::new(Variant::Fig3).with_fault(2, Fault::NatKeepsLanSource),
        );
        let report = check_files(&args(files, Some(roles)));
        assert_eq!(exit_code(&report), ExitCode::from(1));
        let text = report.render_text(&["public.pcap".to_owned(), "lan.pcap".to_owned()]);
        assert!(text.contains("DEVIATES at step 108"), "{text}");
        assert!(text.contains("[public.pcap #"), "{text}");
    }

    #[test]
    fn svg_draws_the_first_tunnels_and_every_deviating_one() {
        let dir = TempDir::new("svg");
        let (files, roles) = write_run(
            &dir,
            Plan::new(Variant::Fig3).with_fault(5, Fault::NatKeepsLanSource),
        );
        let report = check_files(&args(files, Some(roles)));
        let ladders = dir.0.join("ladders");
        assert_eq!(write_ladders(&report, &ladders).unwrap(), LADDERS_FIRST + 1);
        let mut names: Vec<String> = std::fs::read_dir(&ladders)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert!(names[0].starts_with("tunnel-001-"), "{names:?}");
        let last = std::fs::read_to_string(ladders.join(&names[LADDERS_FIRST])).unwrap();
        assert!(names[LADDERS_FIRST].starts_with("tunnel-006-"), "{names:?}");
        assert!(last.contains("class=\"deviation\""), "{last}");
        let first = std::fs::read_to_string(ladders.join(&names[0])).unwrap();
        assert!(!first.contains("class=\"deviation\""), "{first}");
        // A path that cannot be a directory is named in the error.
        let blocked = dir.0.join("public.pcap").join("ladders");
        let err = write_ladders(&report, &blocked).unwrap_err();
        assert!(format!("{err:#}").contains("--svg"), "{err:#}");
    }

    #[test]
    fn run_exits_by_the_verdict() {
        let dir = TempDir::new("run");
        let (files, roles) = write_run(&dir, Plan::new(Variant::Fig5ViaMaster));
        let mut good = args(files, Some(roles));
        good.json = true;
        assert_eq!(run(&good).unwrap(), ExitCode::SUCCESS);
        // Held to the other figure, every tunnel deviates.
        good.sequence = SequenceArg::Fig3;
        assert_eq!(run(&good).unwrap(), ExitCode::from(1));
        let missing = args(vec![dir.0.join("missing.pcap")], None);
        assert!(run(&missing).is_err());
    }

    #[test]
    fn a_ppp_phase_out_of_order_exits_1() {
        let dir = TempDir::new("ppp");
        let plan = |ppp| Plan {
            ppp,
            ..Plan::new(Variant::Fig3)
        };
        let (files, roles) = write_run(&dir, plan(PppScript::Subscriber));
        let good = check_files(&args(files, Some(roles)));
        assert_eq!(
            exit_code(&good),
            ExitCode::SUCCESS,
            "{}",
            good.render_text(&[])
        );
        assert!(good.render_text(&[]).contains("PPP sid 256: IPCP opened"));

        let (files, roles) = write_run(&dir, plan(PppScript::Ipv4BeforeIpcp));
        let report = check_files(&args(files, Some(roles)));
        assert_eq!(exit_code(&report), ExitCode::from(1));
        assert_eq!(report.totals.deviating, 6);
        let text = report.render_text(&[]);
        assert!(text.contains("DEVIATES (ppp-order)"), "{text}");
        assert!(text.contains("data before IPCP opened"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["tunnels"][0]["deviations"][0]["rule"], "ppp-order");
    }

    #[test]
    fn no_tunnel_is_not_a_pass() {
        let dir = TempDir::new("empty");
        let path = dir.0.join("empty.pcap");
        let mut writer =
            l2tp::capture::CaptureWriter::create(&path, l2tp::capture::Linktype::RAW).unwrap();
        writer.flush().unwrap();
        let report = check_files(&args(vec![path], None));
        assert_eq!(report.totals.tunnels, 0);
        assert_eq!(exit_code(&report), ExitCode::from(1));
        assert!(report.render_text(&[]).contains("no tunnel found"));
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = TempDir::new("errors");
        let missing = dir.0.join("missing.pcap");
        let err = read_captures(&[missing], 1701, &ParseOptions::default()).unwrap_err();
        assert!(format!("{err:#}").contains("missing.pcap"), "{err:#}");

        let roles = dir.0.join("roles.json");
        std::fs::write(&roles, r#"{"cluster_address": "not an address"}"#).unwrap();
        let err = read_roles(&roles).unwrap_err();
        assert!(format!("{err:#}").contains("roles.json"), "{err:#}");
        std::fs::write(
            &roles,
            r#"{"cluster_address": "198.18.0.1", "nat_global": "198.18.0.1"}"#,
        )
        .unwrap();
        let err = read_roles(&roles).unwrap_err();
        assert!(
            err.to_string()
                .contains("198.18.0.1 is both cluster_address and nat_global"),
            "{err:#}"
        );
    }

    #[test]
    fn json_output_carries_the_captures_and_the_report() {
        let run = craft::craft(Plan::new(Variant::Fig5));
        let report = sequence::check(&run.observations(), &run.roles, Sequence::Auto);
        let captures = vec!["public.pcap".to_owned(), "lan.pcap".to_owned()];
        let json = serde_json::to_value(JsonReport {
            captures: &captures,
            report: &report,
        })
        .unwrap();
        assert_eq!(json["captures"][1], "lan.pcap");
        assert_eq!(json["totals"]["tunnels"], 6);
        assert_eq!(json["tunnels"][0]["variant"], "fig5");
        assert_eq!(json["tunnels"][0]["conforms"], true);
        assert_eq!(json["tunnels"][0]["timeline"][2]["step"], 206);
        assert_eq!(json["roles"]["endpoints"][0]["global"], "198.18.0.11");
    }
}
