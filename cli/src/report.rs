//! `l2tpkit report RUN_DIR|FILE… [-o report.html]`: one self-contained HTML file of a run
//! (inline SVG and CSS, no script, nothing fetched), readable offline: what ran and whether it
//! passed, every count of its summary, the per-second series as charts, a percentile plot per
//! latency histogram, the dispatch share per endpoint, probe verdicts with their evidence, and
//! ladder diagrams of the first tunnels and every deviating one. Charts are drawn with
//! plotters' SVG backend; the ladders are ours (`probes::sequence::ladder`).
//!
//! A run dir of `lab run` holds `summary.json`, `lac.json`, `lac.csv` and both captures; files
//! given one by one are told apart by their contents. What is missing or unreadable is said in
//! the report, never a reason to fail.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use l2tp::wire::message::ParseOptions;
use plotters::coord::Shift;
use plotters::prelude::*;
use probes::sequence::{self, Report, Roles, Sequence};
use probes::xml::escape;
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// A run dir (`lab run`'s), or files: the LAC's JSON report or a run's summary.json, its
    /// per-second CSV, `probe --json` output, pcap captures (for the ladders).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Where the HTML goes [default: RUN_DIR/report.html for one run dir, ./report.html
    /// otherwise].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Ladders drawn: the first tunnels, and the deviating ones up to a bound.
const LADDERS_FIRST: usize = 3;
const LADDERS_MAX: usize = 12;
/// The latency histograms of the LAC's report, in its order, with the words people read.
const HISTOGRAMS: [(&str, &str); 10] = [
    ("sccrq_to_sccrp", "SCCRQ → SCCRP"),
    ("tunnel_setup", "tunnel setup"),
    ("session_setup", "session setup"),
    ("echo_rtt", "LCP echo round trip"),
    ("lcp_opened", "ICCN → LCP opened"),
    ("authentication", "authentication"),
    ("ipcp_opened", "IPCP opened"),
    ("ipv6cp_opened", "IPv6CP opened"),
    ("icrq_to_ip_up", "ICRQ → IP up"),
    ("traffic_rtt", "ICMP round trip"),
];

/// Everything the report is made from; each part may be missing.
#[derive(Debug, Default)]
pub struct Inputs {
    pub summary: Option<Value>,
    pub lac: Option<Value>,
    pub csv: Option<Vec<serde_json::Map<String, Value>>>,
    /// `lac --endpoint-csv`: one row per endpoint per second.
    pub endpoint_csv: Option<Vec<serde_json::Map<String, Value>>>,
    pub probes: Option<Value>,
    pub captures: Vec<PathBuf>,
    /// The captures already checked (`lab run` did, with its roles): not read again.
    pub sequences: Option<Report>,
    /// What could not be read, in words.
    pub problems: Vec<String>,
}

pub fn run(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let inputs = gather(&args.inputs);
    let html = render(&inputs);
    let output = match (&args.output, args.inputs.as_slice()) {
        (Some(path), _) => path.clone(),
        (None, [dir]) if dir.is_dir() => dir.join("report.html"),
        (None, _) => PathBuf::from("report.html"),
    };
    std::fs::write(&output, html).with_context(|| format!("-o {}", output.display()))?;
    println!("{}", output.display());
    Ok(ExitCode::SUCCESS)
}

/// Reads what the inputs hold; a run dir stands for its usual files.
pub fn gather(paths: &[PathBuf]) -> Inputs {
    let mut inputs = Inputs::default();
    for path in paths {
        if path.is_dir() {
            for (name, required) in [
                ("summary.json", false),
                ("lac.json", true),
                ("lac.csv", true),
                ("lac-endpoints.csv", false),
                ("probe.json", false),
            ] {
                let file = path.join(name);
                if file.exists() {
                    read_file(&file, &mut inputs);
                } else if required {
                    inputs.problems.push(format!("{}: missing", file.display()));
                }
            }
            for name in ["public.pcap", "lan.pcap"] {
                let file = path.join(name);
                if file.exists() {
                    inputs.captures.push(file);
                }
            }
        } else {
            read_file(path, &mut inputs);
        }
    }
    // A lab run's summary carries the LAC's report.
    if inputs.lac.is_none() {
        inputs.lac = inputs.summary.as_ref().map(|s| s["lac"].clone());
    }
    inputs
}

fn read_file(path: &Path, inputs: &mut Inputs) {
    let name = path.display().to_string();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    match ext {
        "pcap" | "pcapng" => inputs.captures.push(path.to_path_buf()),
        "csv" => match read_csv(path) {
            Ok(rows) if rows.is_empty() => inputs.problems.push(format!("{name}: no rows")),
            // The per-endpoint rows name their endpoint; the run's own do not.
            Ok(rows) if rows.first().is_some_and(|r| r.contains_key("endpoint")) => {
                inputs.endpoint_csv = Some(rows)
            }
            Ok(rows) => inputs.csv = Some(rows),
            Err(e) => inputs.problems.push(format!("{name}: {e}")),
        },
        _ => {
            let text = match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) => return inputs.problems.push(format!("{name}: {e}")),
            };
            let value: Value = match serde_json::from_str(&text) {
                Ok(value) => value,
                Err(e) => return inputs.problems.push(format!("{name}: not JSON ({e})")),
            };
            if value.get("verify_tunnels").is_some() {
                inputs.summary = Some(value);
            } else if value.get("tunnels_requested").is_some() {
                inputs.lac = Some(value);
            } else if value.get("probes").is_some() {
                inputs.probes = Some(value);
            } else {
                inputs.problems.push(format!(
                    "{name}: neither a summary, a LAC report nor probe results"
                ));
            }
        }
    }
}

fn read_csv(path: &Path) -> Result<Vec<serde_json::Map<String, Value>>, csv::Error> {
    let mut reader = csv::Reader::from_path(path)?;
    let headers = reader.headers()?.clone();
    let mut rows = Vec::new();
    for record in reader.records() {
        // A cut last line (the run still writing, or killed) ends the series there.
        let Ok(record) = record else { break };
        let mut row = serde_json::Map::new();
        for (key, field) in headers.iter().zip(record.iter()) {
            let value = field
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or_else(|| Value::String(field.to_string()), Value::Number);
            row.insert(key.to_string(), value);
        }
        rows.push(row);
    }
    Ok(rows)
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}\
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:2px 8px;\
text-align:left;vertical-align:top}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.pass{color:#1e7d32;font-weight:bold}.fail{color:#c0392b;font-weight:bold}\
.other{color:#8a6d00;font-weight:bold}.problem{color:#c0392b}pre{margin:0;font-size:.85em}\
.charts{display:flex;flex-wrap:wrap;gap:1em}";

/// The whole page.
pub fn render(inputs: &Inputs) -> String {
    let mut body = String::new();
    let verdict = verdict(inputs);
    let _ = write!(
        body,
        "<h1>l2tpkit report</h1>\n<p id=\"verdict\">{}</p>\n",
        verdict
    );
    if !inputs.problems.is_empty() {
        body.push_str("<h2>What is missing</h2>\n<ul id=\"problems\">\n");
        for p in &inputs.problems {
            let _ = writeln!(body, "<li class=\"problem\">{}</li>", escape(p));
        }
        body.push_str("</ul>\n");
    }
    summary_section(inputs, &mut body);
    series_section(inputs, &mut body);
    latency_section(inputs, &mut body);
    dispatch_section(inputs, &mut body);
    shards_section(inputs, &mut body);
    probes_section(inputs, &mut body);
    ladders_section(inputs, &mut body);
    format!(
        "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n\
         <meta charset=\"utf-8\"/>\n<title>l2tpkit report</title>\n<style>{STYLE}</style>\n\
         </head>\n<body>\n{body}</body>\n</html>\n"
    )
}

fn verdict(inputs: &Inputs) -> String {
    let what = match (&inputs.summary, &inputs.lac) {
        (Some(s), _) => format!(
            "lab run, {} topology, LAC against {}",
            s["topology"].as_str().unwrap_or("?"),
            s["lac"]["target"].as_str().unwrap_or("?")
        ),
        (None, Some(l)) => format!("LAC run against {}", l["target"].as_str().unwrap_or("?")),
        (None, None) => match &inputs.probes {
            Some(p) => format!("probes against {}", p["target"].as_str().unwrap_or("?")),
            None => "nothing readable".to_string(),
        },
    };
    let passed = if let Some(s) = &inputs.summary {
        Some(
            s["lac_success"].as_bool() == Some(true)
                && s["verify_tunnels"].as_u64().unwrap_or(0) > 0
                && s["verify_tunnels"] == s["verify_conforming"],
        )
    } else if let Some(l) = &inputs.lac {
        let n = |k: &str| l[k].as_u64().unwrap_or(0);
        Some(
            n("tunnels_failed") == 0
                && n("sessions_failed") == 0
                && n("tunnels_established") == n("tunnels_requested"),
        )
    } else {
        inputs.probes.as_ref().map(|p| {
            p["probes"]
                .as_array()
                .is_some_and(|list| list.iter().all(|r| r["verdict"] != "fail"))
        })
    };
    match passed {
        Some(true) => format!("{}: <span class=\"pass\">pass</span>", escape(&what)),
        Some(false) => format!("{}: <span class=\"fail\">fail</span>", escape(&what)),
        None => escape(&what),
    }
}

/// Every count: the summary's own, and the LAC report's.
fn summary_section(inputs: &Inputs, out: &mut String) {
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut add = |prefix: &str, value: &Value| {
        if let Value::Object(map) = value {
            for (k, v) in map {
                let shown = match v {
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    Value::String(s) => s.clone(),
                    _ => continue,
                };
                rows.push((format!("{prefix}{k}"), shown));
            }
        }
    };
    if let Some(s) = &inputs.summary {
        add("", s);
    }
    if let Some(l) = &inputs.lac {
        add("lac.", l);
    }
    if rows.is_empty() {
        return;
    }
    out.push_str("<h2>Summary</h2>\n<table id=\"summary\">\n");
    for (k, v) in rows {
        let class = if v.parse::<f64>().is_ok() {
            " class=\"n\""
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "<tr><th>{}</th><td{class}>{}</td></tr>",
            escape(&k),
            escape(&v)
        );
    }
    out.push_str("</table>\n");
}

/// One chart drawn by `draw` on an SVG canvas of `size`, as SVG; what went wrong, in words.
fn chart(
    title: &str,
    size: (u32, u32),
    draw: impl FnOnce(DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), Box<dyn std::error::Error>>,
) -> String {
    let mut svg = String::new();
    let drawn = draw(SVGBackend::with_string(&mut svg, size).into_drawing_area());
    match drawn {
        Ok(()) => svg,
        Err(e) => format!(
            "<p class=\"problem\">{}: {}</p>",
            escape(title),
            escape(&e.to_string())
        ),
    }
}

/// A line chart of `series` over the run's seconds, as SVG; an error in words.
fn line_chart(title: &str, y_desc: &str, series: &[(&str, Vec<(f64, f64)>)]) -> String {
    chart(title, (540, 300), |root| {
        root.fill(&WHITE)?;
        let points = series.iter().flat_map(|(_, p)| p.iter());
        let (x0, x1, top) = points.fold((f64::MAX, f64::MIN, 0f64), |(a, b, c), &(x, y)| {
            (a.min(x), b.max(x), c.max(y))
        });
        let (x0, x1) = if x0 <= x1 {
            (x0, x1.max(x0 + 1.0))
        } else {
            (0.0, 1.0)
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, 0f64..(top.max(1.0) * 1.05))?;
        chart
            .configure_mesh()
            .x_desc("second of the run")
            .y_desc(y_desc)
            .draw()?;
        for (i, (name, points)) in series.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    colour.stroke_width(2),
                ))?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    })
}

fn series_section(inputs: &Inputs, out: &mut String) {
    let Some(rows) = &inputs.csv else { return };
    let num =
        |row: &serde_json::Map<String, Value>, key: &str| row.get(key).and_then(Value::as_f64);
    let column = |key: &str| -> Vec<(f64, f64)> {
        rows.iter()
            .filter_map(|r| Some((num(r, "second")?, num(r, key)?)))
            .collect()
    };
    // Running totals as per-second counts.
    let per_second = |keys: &[&str]| -> Vec<(f64, f64)> {
        let mut before = 0.0;
        rows.iter()
            .filter_map(|r| {
                let total: f64 = keys.iter().map(|k| num(r, k).unwrap_or(0.0)).sum();
                let count = (total - before).max(0.0);
                before = total;
                Some((num(r, "second")?, count))
            })
            .collect()
    };
    out.push_str("<h2>Over time</h2>\n<div class=\"charts\" id=\"series\">\n");
    out.push_str(&line_chart(
        "setups per second",
        "per second",
        &[
            ("SCCRQs sent", column("started_this_second")),
            ("tunnels up", column("setups_this_second")),
            ("sessions IP up", column("ip_up_this_second")),
        ],
    ));
    out.push_str(&line_chart(
        "live tunnels and sessions",
        "up",
        &[
            ("tunnels", column("tunnels_up")),
            ("sessions", column("sessions_up")),
        ],
    ));
    out.push_str(&line_chart(
        "failures and retransmissions",
        "per second",
        &[
            (
                "failures",
                per_second(&["tunnels_failed", "sessions_failed"]),
            ),
            ("retransmissions", per_second(&["retransmissions"])),
        ],
    ));
    out.push_str("</div>\n");
}

/// A percentile plot as HdrHistogram draws it: x = log10(1 / (1 − q)), so 90%, 99% and
/// 99.9% are evenly spaced, the maximum at 4; latency in ms up.
fn percentile_chart(title: &str, p: &Value) -> String {
    let ms = |k: &str| p[k].as_f64().unwrap_or(0.0);
    let points = [
        (2f64.log10(), ms("p50_ms")),
        (1.0, ms("p90_ms")),
        (2.0, ms("p99_ms")),
        (3.0, ms("p999_ms")),
        (4.0, ms("max_ms")),
    ];
    chart(title, (360, 240), |root| {
        root.fill(&WHITE)?;
        let top = points.iter().map(|p| p.1).fold(0f64, f64::max).max(0.001) * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 14))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(52)
            .build_cartesian_2d(0f64..4.2, 0f64..top)?;
        chart
            .configure_mesh()
            .x_labels(5)
            .x_label_formatter(&|x| match x.round() as i64 {
                0 => "0%".into(),
                1 => "90%".into(),
                2 => "99%".into(),
                3 => "99.9%".into(),
                _ => "max".into(),
            })
            .y_desc("ms")
            .draw()?;
        let colour = RGBColor(0x8e, 0x24, 0xaa);
        chart.draw_series(LineSeries::new(points, colour.stroke_width(2)))?;
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
        root.present()?;
        Ok(())
    })
}

fn latency_section(inputs: &Inputs, out: &mut String) {
    let Some(lac) = &inputs.lac else { return };
    let seen: Vec<(&str, &Value)> = HISTOGRAMS
        .iter()
        .filter(|(key, _)| lac[*key]["count"].as_u64().unwrap_or(0) > 0)
        .map(|(key, words)| (*words, &lac[*key]))
        .collect();
    if seen.is_empty() {
        return;
    }
    out.push_str(
        "<h2>Latency by percentile</h2>\n<table id=\"latency\">\n<tr><th>histogram</th>\
                  <th>count</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th>\
                  <th>max ms</th></tr>\n",
    );
    for (words, p) in &seen {
        let _ = write!(out, "<tr><th>{}</th>", escape(words));
        for k in ["count", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"] {
            let _ = write!(out, "<td class=\"n\">{}</td>", p[k]);
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n<div class=\"charts\">\n");
    for (words, p) in &seen {
        out.push_str(&percentile_chart(
            &format!("{words} ({} seen)", p["count"]),
            p,
        ));
    }
    out.push_str("</div>\n");
}

/// Each endpoint's share of the tunnels up, second by second (`lac --endpoint-csv`).
fn share_over_time(rows: &[serde_json::Map<String, Value>]) -> String {
    let num = |r: &serde_json::Map<String, Value>, k: &str| r.get(k).and_then(Value::as_f64);
    let mut totals: std::collections::BTreeMap<i64, f64> = std::collections::BTreeMap::new();
    for r in rows {
        if let (Some(s), Some(up)) = (num(r, "second"), num(r, "tunnels_up")) {
            *totals.entry(s as i64).or_default() += up;
        }
    }
    let mut lines: std::collections::BTreeMap<String, Vec<(f64, f64)>> = Default::default();
    for r in rows {
        let name = match r.get("endpoint") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => continue,
        };
        if let (Some(s), Some(up)) = (num(r, "second"), num(r, "tunnels_up")) {
            let total = totals.get(&(s as i64)).copied().unwrap_or(0.0);
            let share = if total > 0.0 { up * 100.0 / total } else { 0.0 };
            lines.entry(name).or_default().push((s, share));
        }
    }
    let series: Vec<(&str, Vec<(f64, f64)>)> =
        lines.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    line_chart("share of the tunnels up, per endpoint", "%", &series)
}

/// `l2tpkit merge`'s report: which agents carried the run, and how each did.
fn shards_section(inputs: &Inputs, out: &mut String) {
    let Some(merged) = inputs
        .lac
        .as_ref()
        .map(|l| &l["merged"])
        .filter(|m| m.is_object())
    else {
        return;
    };
    let run = merged["run_id"]
        .as_str()
        .map(|id| format!(" of run {}", escape(id)))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "<h2>Shards</h2>\n<p>{} agents{run}, merged: histograms added from their interval \
         logs, counters summed, series lined up by wall clock.</p>\n<table id=\"shards\">\n\
         <tr><th>shard</th><th>started after</th><th>elapsed</th><th>tunnels</th>\
         <th>sessions</th><th>tunnel setup p99</th><th>report</th></tr>",
        merged["shards"]
    );
    for s in merged["by_shard"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "<tr><th>{}</th><td class=\"n\">{:.3} s</td><td class=\"n\">{:.1} s</td>\
             <td class=\"n\">{}/{}</td><td class=\"n\">{}</td><td class=\"n\">{:.1} ms</td>\
             <td>{}</td></tr>",
            s["index"],
            s["started_after_s"].as_f64().unwrap_or(0.0),
            s["elapsed_s"].as_f64().unwrap_or(0.0),
            s["tunnels_established"],
            s["tunnels_requested"],
            s["sessions_established"],
            s["tunnel_setup_p99_ms"].as_f64().unwrap_or(0.0),
            escape(s["file"].as_str().unwrap_or("?"))
        );
    }
    out.push_str("</table>\n");
}

fn dispatch_section(inputs: &Inputs, out: &mut String) {
    if let Some(rows) = inputs.endpoint_csv.as_ref().filter(|r| !r.is_empty()) {
        out.push_str("<h2>Dispatch over time</h2>\n<div id=\"dispatch-time\">\n");
        out.push_str(&share_over_time(rows));
        out.push_str("</div>\n");
    }
    let Some(endpoints) = inputs
        .summary
        .as_ref()
        .and_then(|s| s["endpoints"].as_array())
        .filter(|e| !e.is_empty())
    else {
        return;
    };
    out.push_str(
        "<h2>Dispatch per endpoint</h2>\n<table id=\"dispatch\">\n<tr><th>endpoint</th>\
                  <th>dispatched</th><th>share</th><th>conforming tunnels</th></tr>\n",
    );
    for e in endpoints {
        let _ = writeln!(
            out,
            "<tr><th>{}</th><td class=\"n\">{}</td><td class=\"n\">{:.1} %</td>\
             <td class=\"n\">{}</td></tr>",
            escape(e["name"].as_str().unwrap_or("?")),
            e["dispatched"],
            e["share_percent"].as_f64().unwrap_or(0.0),
            e["conforming_tunnels"]
        );
    }
    out.push_str("</table>\n");
    let bars: Vec<(String, f64)> = endpoints
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or("?").to_string(),
                e["share_percent"].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    let height = 40 + 28 * bars.len() as u32;
    let svg = chart("dispatch chart", (540, height), |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("share of the SCCRQs dispatched, %", ("sans-serif", 14))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..100f64, 0f64..bars.len() as f64)?;
        let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(bars.len())
            .y_label_formatter(&|y| names.get(y.floor() as usize).cloned().unwrap_or_default())
            .draw()?;
        chart.draw_series(bars.iter().enumerate().map(|(i, (_, share))| {
            let y = i as f64;
            Rectangle::new(
                [(0.0, y + 0.15), (*share, y + 0.85)],
                BLUE.mix(0.6).filled(),
            )
        }))?;
        root.present()?;
        Ok(())
    });
    out.push_str(&svg);
    out.push('\n');
}

fn probes_section(inputs: &Inputs, out: &mut String) {
    let Some(list) = inputs.probes.as_ref().and_then(|p| p["probes"].as_array()) else {
        return;
    };
    out.push_str(
        "<h2>Probes</h2>\n<table id=\"probes\">\n<tr><th>probe</th><th>verdict</th>\
                  <th>reason</th><th>evidence</th></tr>\n",
    );
    for r in list {
        let verdict = r["verdict"].as_str().unwrap_or("?");
        let class = match verdict {
            "pass" => "pass",
            "fail" => "fail",
            _ => "other",
        };
        let evidence: Vec<String> = r["evidence"]
            .as_array()
            .map(|e| e.iter().filter_map(|l| l.as_str().map(escape)).collect())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "<tr><th>{}</th><td class=\"{class}\">{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
            escape(r["name"].as_str().unwrap_or("?")),
            escape(verdict),
            escape(r["reason"].as_str().unwrap_or("")),
            evidence.join("\n")
        );
    }
    out.push_str("</table>\n");
}

/// The captures checked as `verify` would; the first tunnels' and the deviating ones' ladders.
fn ladders_section(inputs: &Inputs, out: &mut String) {
    let checked;
    let report = match (&inputs.sequences, inputs.captures.is_empty()) {
        (Some(report), _) => report,
        (None, true) => return,
        (None, false) => match check(&inputs.captures) {
            Ok(report) => {
                checked = report;
                &checked
            }
            Err(e) => {
                let _ = write!(
                    out,
                    "<h2>Message sequences</h2>\n<p class=\"problem\">{}</p>\n",
                    escape(&format!("{e:#}"))
                );
                return;
            }
        },
    };
    let _ = write!(
        out,
        "<h2>Message sequences</h2>\n<p id=\"sequences\">{} tunnels, {} conforming to FIG 3 / \
         FIG 5 and RFC 2661</p>\n",
        report.totals.tunnels, report.totals.conforming
    );
    let chosen = report
        .tunnels
        .iter()
        .enumerate()
        .filter(|(i, t)| *i < LADDERS_FIRST || !t.conforms)
        .take(LADDERS_MAX);
    for (_, tunnel) in chosen {
        out.push_str(&sequence::ladder::svg(tunnel));
    }
}

fn check(captures: &[PathBuf]) -> anyhow::Result<Report> {
    let (observations, _) = crate::verify::read_captures(captures, 1701, &ParseOptions::default())?;
    Ok(sequence::check(
        &observations,
        &Roles::default(),
        Sequence::Auto,
    ))
}
