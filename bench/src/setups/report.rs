//! What `setups` prints and writes: the medians per level, RSS per live tunnel, the summary.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Measurement, Summary, Target, MEASURE_INITIATORS};

#[derive(Debug, Clone, Serialize)]
pub(super) struct LevelRow {
    level: usize,
    cluster_live: Option<u64>,
    cluster_per_second: Option<f64>,
    cluster_p50_ms: Option<f64>,
    cluster_p99_ms: Option<f64>,
    cluster_established: Option<usize>,
    xl2tpd_live: Option<u64>,
    xl2tpd_per_second: Option<f64>,
    xl2tpd_p50_ms: Option<f64>,
    xl2tpd_p99_ms: Option<f64>,
    xl2tpd_established: Option<usize>,
    /// cluster / xl2tpd.
    ratio: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct RssRow {
    process: String,
    baseline_kb: Option<u64>,
    held_kb: u64,
    /// Live tunnels when `held_kb` was read, and the baseline's.
    live: u64,
    baseline_live: u64,
    kb_per_tunnel: Option<f64>,
}

pub(super) fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

pub(super) fn level_rows(levels: &[usize], measurements: &[Measurement]) -> Vec<LevelRow> {
    let mut seen = Vec::new();
    levels
        .iter()
        .filter(|l| {
            let new = !seen.contains(*l);
            seen.push(**l);
            new
        })
        .map(|&level| {
            let of = |target: Target| -> Vec<&Measurement> {
                measurements
                    .iter()
                    .filter(|m| m.target == target && m.level == level)
                    .collect()
            };
            let stat = |list: &[&Measurement], f: &dyn Fn(&Measurement) -> f64| {
                let mut v: Vec<f64> = list.iter().map(|m| f(m)).collect();
                median(&mut v)
            };
            let (cluster, xl2tpd) = (of(Target::Cluster), of(Target::Xl2tpd));
            let cluster_rate = stat(&cluster, &|m| m.setups_per_second);
            let xl2tpd_rate = stat(&xl2tpd, &|m| m.setups_per_second);
            LevelRow {
                level,
                cluster_live: cluster.iter().map(|m| m.live).min(),
                cluster_per_second: cluster_rate,
                cluster_p50_ms: stat(&cluster, &|m| m.setup_p50_ms),
                cluster_p99_ms: stat(&cluster, &|m| m.setup_p99_ms),
                cluster_established: cluster.iter().map(|m| m.established).min(),
                xl2tpd_live: xl2tpd.iter().map(|m| m.live).min(),
                xl2tpd_per_second: xl2tpd_rate,
                xl2tpd_p50_ms: stat(&xl2tpd, &|m| m.setup_p50_ms),
                xl2tpd_p99_ms: stat(&xl2tpd, &|m| m.setup_p99_ms),
                xl2tpd_established: xl2tpd.iter().map(|m| m.established).min(),
                ratio: cluster_rate
                    .zip(xl2tpd_rate)
                    .filter(|(_, x)| *x > 0.0)
                    .map(|(c, x)| c / x),
            }
        })
        .collect()
}

/// KB per live tunnel at the highest level of the last round: roles against their reading
/// before any tunnel, xl2tpd against its fresh start, the holders against the level below.
pub(super) fn rss_rows(
    baseline: &BTreeMap<String, u64>,
    xl2tpd_baselines: &BTreeMap<(u32, usize), u64>,
    measurements: &[Measurement],
) -> Vec<RssRow> {
    let mut rows = Vec::new();
    let top = |target: Target| {
        measurements
            .iter()
            .filter(|m| m.target == target)
            .max_by_key(|m| (m.level, m.round))
    };
    let per = |held: u64, base: u64, live: u64, base_live: u64| {
        (live > base_live).then(|| (held as f64 - base as f64) / (live - base_live) as f64)
    };
    if let Some(m) = top(Target::Cluster) {
        for (name, &held) in &m.rss_kb {
            if name == "holder LACs" {
                continue;
            }
            let base = baseline.get(name).copied();
            rows.push(RssRow {
                process: name.clone(),
                baseline_kb: base,
                held_kb: held,
                live: m.live,
                baseline_live: 0,
                kb_per_tunnel: base.and_then(|b| per(held, b, m.live, 0)),
            });
        }
        // The holders' growth from the next lower level of the same round.
        let lower = measurements
            .iter()
            .filter(|l| {
                l.target == Target::Cluster
                    && l.round == m.round
                    && l.level < m.level
                    && l.rss_kb.contains_key("holder LACs")
            })
            .max_by_key(|l| l.level);
        if let Some(&held) = m.rss_kb.get("holder LACs") {
            let base = lower.and_then(|l| l.rss_kb.get("holder LACs").copied());
            let base_live = lower.map_or(0, |l| l.live);
            rows.push(RssRow {
                process: "holder LACs".to_string(),
                baseline_kb: base,
                held_kb: held,
                live: m.live,
                baseline_live: base_live,
                kb_per_tunnel: base.and_then(|b| per(held, b, m.live, base_live)),
            });
        }
    }
    if let Some(m) = top(Target::Xl2tpd) {
        if let Some(&held) = m.rss_kb.get("xl2tpd") {
            let base = xl2tpd_baselines.get(&(m.round, m.level)).copied();
            rows.push(RssRow {
                process: "xl2tpd".to_string(),
                baseline_kb: base,
                held_kb: held,
                live: m.live,
                baseline_live: 0,
                kb_per_tunnel: base.and_then(|b| per(held, b, m.live, 0)),
            });
        }
    }
    rows
}

pub(super) fn print_summary(s: &Summary) {
    let how = if s.measure_chunk == 0 {
        "in one burst".to_string()
    } else {
        format!("in sequential LACs of {}", s.measure_chunk)
    };
    println!(
        "Tunnel setups/s with live tunnels held: {} new tunnels (sessions 0) {how} from {} \
         initiator addresses; FIG 2 lab (master, NAT, 3 endpoints) against one xl2tpd LNS; \
         {} round(s), medians",
        s.measure, MEASURE_INITIATORS, s.rounds
    );
    let opt =
        |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
    let count = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    let up = |v: Option<usize>| v.map_or("-".to_string(), |v| format!("{v}/{}", s.measure));
    println!(
        "{:>7} | {:>7} {:>10} {:>11} {:>14} | {:>7} {:>10} {:>11} {:>14} | {:>7}",
        "level",
        "live",
        "cluster/s",
        "up",
        "p50/p99 ms",
        "live",
        "xl2tpd/s",
        "up",
        "p50/p99 ms",
        "ratio"
    );
    for r in &s.levels {
        println!(
            "{:>7} | {:>7} {:>10} {:>11} {:>14} | {:>7} {:>10} {:>11} {:>14} | {:>7}",
            r.level,
            count(r.cluster_live),
            opt(r.cluster_per_second, 0),
            up(r.cluster_established),
            format!("{}/{}", opt(r.cluster_p50_ms, 1), opt(r.cluster_p99_ms, 1)),
            count(r.xl2tpd_live),
            opt(r.xl2tpd_per_second, 0),
            up(r.xl2tpd_established),
            format!("{}/{}", opt(r.xl2tpd_p50_ms, 1), opt(r.xl2tpd_p99_ms, 1)),
            r.ratio.map_or("-".to_string(), |r| format!("{r:.1}x")),
        );
    }
    let held: Vec<String> = s
        .measurements
        .iter()
        .filter(|m| m.level > 0)
        .map(|m| {
            let soak = match (m.soak_min_live, m.soak_max_live) {
                (Some(min), Some(max)) => {
                    format!(", held {:.0} s with {min}..={max} live", m.soak_seconds)
                }
                _ => String::new(),
            };
            format!(
                "  {} round {} level {}: {} up, {} failed, {} closed cleanly{soak}",
                m.target,
                m.round,
                m.level,
                m.holders_established,
                m.holders_failed,
                m.holders_closed_cleanly
            )
        })
        .collect();
    if !held.is_empty() {
        println!("Holders (their own reports after their teardown):");
        for line in held {
            println!("{line}");
        }
    }
    println!("RSS per live tunnel (VmRSS while the highest level was held):");
    println!(
        "{:<12} {:>12} {:>12} {:>10} {:>10}",
        "process", "baseline KB", "held KB", "live", "KB/tunnel"
    );
    for r in &s.rss {
        println!(
            "{:<12} {:>12} {:>12} {:>10} {:>10}",
            r.process,
            r.baseline_kb
                .map_or("-".to_string(), |b| format!("{b} @{}", r.baseline_live)),
            r.held_kb,
            r.live,
            opt(r.kb_per_tunnel, 2)
        );
    }
    let failures: Vec<String> = s
        .measurements
        .iter()
        .filter(|m| !m.failures.is_empty() || m.udp_rcvbuf_errors.unwrap_or(0) > 0)
        .map(|m| {
            format!(
                "  {} round {} level {}: {:?}; {} datagrams dropped on full receive buffers",
                m.target,
                m.round,
                m.level,
                m.failures,
                m.udp_rcvbuf_errors.unwrap_or(0)
            )
        })
        .collect();
    if !failures.is_empty() {
        println!("failures and drops:");
        for f in failures {
            println!("{f}");
        }
    }
    println!(
        "run dir (logs, every LAC report, setups.json): {}",
        s.run_dir
    );
}
