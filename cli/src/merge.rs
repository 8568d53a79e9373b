//! `l2tpkit merge DIR|FILE… [-o DIR]`: the shards of one run (`lac --shard I/N`, on one host
//! or as a Kubernetes Indexed Job) made into one report: the histograms added exactly from
//! the interval logs, the counters summed, the per-second series lined up by wall clock
//! (`probes::lac::merge`). Writes `merged.json` (one LAC report's shape, plus `merged`: the
//! run and its shards), `merged.csv`, `merged-endpoints.csv` and `report.html`.
//!
//! Shards of two runs, a shard twice, a missing shard or a file cut short are refused with
//! the files named: a report made of the wrong parts would look right and be wrong.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use probes::lac::{
    merge, read_intervals, CsvSeries, EndpointSecondRow, LacReport, Merged, SecondRow, ShardInput,
    ShardLine,
};
use serde::Serialize;

#[derive(Debug, Clone, clap::Args)]
pub struct MergeArgs {
    /// Directories holding the shards' outputs (every `*.shard-I-of-N.json` in them is taken,
    /// with the files it names), or shard reports one by one.
    #[arg(required = true, value_name = "DIR|FILE")]
    pub inputs: Vec<PathBuf>,
    /// Where the merged files go [default: DIR/merged for one DIR, ./merged otherwise].
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Print the merged report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `merged.json`: the run as one LAC's report, and what it was made of.
#[derive(Debug, Serialize)]
struct MergedReport<'a> {
    #[serde(flatten)]
    report: &'a LacReport,
    merged: MergeInfo<'a>,
}

#[derive(Debug, Serialize)]
struct MergeInfo<'a> {
    shards: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_id: Option<&'a str>,
    started_unix_us: u64,
    plan: &'a std::collections::BTreeMap<String, String>,
    by_shard: &'a [ShardLine],
}

pub fn run(args: &MergeArgs) -> anyhow::Result<ExitCode> {
    let merged = merge_files(&args.inputs)?;
    let output = match (&args.output, args.inputs.as_slice()) {
        (Some(dir), _) => dir.clone(),
        (None, [dir]) if dir.is_dir() => dir.join("merged"),
        (None, _) => PathBuf::from("merged"),
    };
    let written = write(&merged, &output)?;
    let json = serde_json::to_string_pretty(&merged_report(&merged))?;
    if args.json {
        println!("{json}");
    } else {
        println!("{}", merged.report);
        print!("{}", shard_table(&merged));
    }
    for path in written {
        eprintln!("wrote {}", path.display());
    }
    Ok(if merged.report.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn merged_report(merged: &Merged) -> MergedReport<'_> {
    MergedReport {
        report: &merged.report,
        merged: MergeInfo {
            shards: merged.count,
            run_id: merged.run_id.as_deref(),
            started_unix_us: merged.started_unix_us,
            plan: &merged.plan,
            by_shard: &merged.shards,
        },
    }
}

/// Reads every shard the inputs name and merges them.
pub fn merge_files(inputs: &[PathBuf]) -> anyhow::Result<Merged> {
    let mut reports = Vec::new();
    for path in inputs {
        if path.is_dir() {
            let found = shard_reports(path)?;
            if found.is_empty() {
                anyhow::bail!(
                    "{}: no shard reports in it (lac.shard-I-of-N.json, from lac --shard I/N \
                     --out-dir)",
                    path.display()
                );
            }
            reports.extend(found);
        } else {
            reports.push(path.clone());
        }
    }
    let shards = reports
        .iter()
        .map(|path| read_shard(path))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(merge(shards)?)
}

/// The shards' JSON reports in `dir`, by name.
fn shard_reports(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).with_context(|| dir.display().to_string())?;
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.with_context(|| dir.display().to_string())?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|n| n.ends_with(".json") && n.contains(".shard-")) {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// One shard: its report and the files it names beside it.
fn read_shard(path: &Path) -> anyhow::Result<ShardInput> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| name.clone())?;
    let report: LacReport = serde_json::from_str(&text)
        .with_context(|| format!("{name}: not a LAC's JSON report (cut short?)"))?;
    let Some(info) = report.shard.clone() else {
        // merge() names it.
        return Ok(ShardInput {
            name,
            report,
            hdr_log: None,
            csv: None,
            endpoint_csv: None,
        });
    };
    let beside = |file: &str| {
        let file = Path::new(file);
        match path.parent() {
            Some(dir) if file.is_relative() => dir.join(file),
            _ => file.to_path_buf(),
        }
    };
    let named = |file: &Option<String>| -> anyhow::Result<Option<PathBuf>> {
        let Some(file) = file else { return Ok(None) };
        let full = beside(file);
        if !full.exists() {
            anyhow::bail!("{name} names {}, which is missing", full.display());
        }
        Ok(Some(full))
    };
    let hdr_log = match named(&info.files.hdr_log)? {
        Some(log) => {
            let shown = log.display().to_string();
            let bytes = std::fs::read(&log).with_context(|| shown.clone())?;
            let intervals = read_intervals(&bytes).with_context(|| shown.clone())?;
            Some((shown, intervals))
        }
        None => None,
    };
    let csv = match named(&info.files.csv)? {
        Some(file) => Some((file.display().to_string(), read_rows::<SecondRow>(&file)?)),
        None => None,
    };
    let endpoint_csv = match named(&info.files.endpoint_csv)? {
        Some(file) => Some((
            file.display().to_string(),
            read_rows::<EndpointSecondRow>(&file)?,
        )),
        None => None,
    };
    Ok(ShardInput {
        name,
        report,
        hdr_log,
        csv,
        endpoint_csv,
    })
}

/// Every row of a per-second CSV; a row that does not read (a file cut short) is an error.
fn read_rows<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<T>> {
    let shown = path.display().to_string();
    let mut reader = csv::Reader::from_path(path).with_context(|| shown.clone())?;
    let mut rows = Vec::new();
    for (i, row) in reader.deserialize().enumerate() {
        // Row 1 is the header's line.
        rows.push(row.with_context(|| format!("{shown}: line {} (cut short?)", i + 2))?);
    }
    Ok(rows)
}

/// Writes the merged files into `dir`; returns their paths.
fn write(merged: &Merged, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("-o {}", dir.display()))?;
    let json = dir.join("merged.json");
    let text = serde_json::to_string_pretty(&merged_report(merged))?;
    std::fs::write(&json, text + "\n").with_context(|| json.display().to_string())?;
    let mut written = vec![json.clone()];
    let mut files = vec![json];
    for (name, empty) in [
        ("merged.csv", merged.rows.is_empty()),
        ("merged-endpoints.csv", merged.endpoint_rows.is_empty()),
    ] {
        if empty {
            continue;
        }
        let path = dir.join(name);
        let mut csv = CsvSeries::create(&path).with_context(|| path.display().to_string())?;
        if name == "merged.csv" {
            for row in &merged.rows {
                csv.write(row).with_context(|| path.display().to_string())?;
            }
        } else {
            for row in &merged.endpoint_rows {
                csv.write(row).with_context(|| path.display().to_string())?;
            }
        }
        written.push(path.clone());
        files.push(path);
    }
    let html = dir.join("report.html");
    let inputs = crate::report::gather(&files);
    std::fs::write(&html, crate::report::render(&inputs))
        .with_context(|| html.display().to_string())?;
    written.push(html);
    Ok(written)
}

/// A line per shard: where it stood in the run.
fn shard_table(merged: &Merged) -> String {
    let mut out = format!(
        "{} shards{}\n{:>5}  {:>9}  {:>9}  {:>8}  {:>9}  {:>9}  file\n",
        merged.count,
        merged
            .run_id
            .as_deref()
            .map(|id| format!(" of run {id}"))
            .unwrap_or_default(),
        "shard",
        "start +s",
        "elapsed s",
        "tunnels",
        "sessions",
        "setup p99",
    );
    for line in &merged.shards {
        out.push_str(&format!(
            "{:>5}  {:>9.3}  {:>9.1}  {:>8}  {:>9}  {:>6.1} ms  {}\n",
            line.index,
            line.started_after_s,
            line.elapsed_s,
            format!("{}/{}", line.tunnels_established, line.tunnels_requested),
            line.sessions_established,
            line.tunnel_setup_p99_ms,
            line.file
        ));
    }
    out
}
