//! `l2tpkit merge`: the shards of one run (`lac --shard I/N`) made into one report, exactly.
//!
//! Percentiles do not add: the p99 of four agents is not any mix of their four p99s. The
//! interval logs do add: the merged histogram of a tag is the sum of every shard's intervals,
//! which is the histogram one LAC would have recorded with every sample (to HdrHistogram's
//! precision, which both share). Counters are summed; what is a maximum over time (the peak of
//! tunnels up, of setups in one second) is taken from the shards' per-second series lined up
//! by wall clock, since a sum of per-shard peaks would overstate it.
//!
//! Sans I/O: the CLI reads the files and hands over [`ShardInput`]s; every refusal names them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hdrhistogram::Histogram;

use super::hdrlog::LoggedInterval;
use super::report::LacReport;
use super::shard::{Shard, ShardInfo};
use super::stats::{histogram, loss_pct, percentiles, EndpointSecondRow, SecondRow, Stats};
use super::EndpointReport;
use crate::live::{Percentiles, RunPhase};

/// `into.f = into.f + from.f` for each named counter, saturating: the figures come from files.
macro_rules! add_fields {
    ($into:ident, $from:ident: $($field:ident),+ $(,)?) => {
        $($into.$field = $into.$field.saturating_add($from.$field);)+
    };
}

/// At most this many DNS servers are kept, as in one LAC's report.
const DNS_SERVERS_KEPT: usize = 16;
/// Shards of one run start together: ones that started further apart are of two runs.
const MAX_START_SPREAD: Duration = Duration::from_secs(24 * 3600);
/// No run is longer (`lac --duration` is at most a day, its teardown minutes).
const MAX_SECONDS: u64 = 2 * 24 * 3600;

/// One shard's outputs, read by the caller. `name` is how errors refer to the shard (its JSON
/// file), the other names those of the files they came from.
#[derive(Debug, Clone)]
pub struct ShardInput {
    pub name: String,
    pub report: LacReport,
    /// The interval log: its file name and its intervals.
    pub hdr_log: Option<(String, Vec<LoggedInterval>)>,
    pub csv: Option<(String, Vec<SecondRow>)>,
    pub endpoint_csv: Option<(String, Vec<EndpointSecondRow>)>,
}

/// Why shards could not be merged.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MergeError {
    #[error("no shard's report was given")]
    NoShards,
    #[error("{file}: not a shard's report (no \"shard\"): was the LAC run with --shard I/N?")]
    NotAShard { file: String },
    #[error("{file} is shard {index} of {count}, {other} of {other_count}: shards of two runs")]
    Counts {
        file: String,
        index: u32,
        count: u32,
        other: String,
        other_count: u32,
    },
    #[error("shard {shard} twice: {first} and {second} overlap")]
    Twice {
        shard: Shard,
        first: String,
        second: String,
    },
    #[error("{} of {count} shards missing: {} (given: {})", missing.len(),
        missing.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", "), given.join(", "))]
    Missing {
        count: u32,
        missing: Vec<u32>,
        given: Vec<String>,
    },
    #[error("{file} is of run {id}, {other} of run {other_id}: two runs mixed",
        id = run_id.as_deref().unwrap_or("(none)"),
        other_id = other_run_id.as_deref().unwrap_or("(none)"))]
    RunIds {
        file: String,
        run_id: Option<String>,
        other: String,
        other_run_id: Option<String>,
    },
    #[error("{file} ran with {flag} {value}, {other} with {flag} {other_value}: two runs mixed")]
    Plans {
        file: String,
        flag: String,
        value: String,
        other: String,
        other_value: String,
    },
    #[error(
        "{file}: no interval log (--hdr-log or --out-dir), so its percentiles cannot be \
             merged"
    )]
    NoHdrLog { file: String },
    #[error(
        "{log}: {logged} {tag} samples, but its report {file} counts {counted}: the log \
             was cut short or belongs to another run"
    )]
    LogDisagrees {
        log: String,
        file: String,
        tag: String,
        logged: u64,
        counted: u64,
    },
    #[error("{log}: an interval of unknown tag {tag}")]
    UnknownTag { log: String, tag: String },
    #[error("{file} started {hours:.1} h after {first}: shards of one run start together")]
    StartsApart {
        file: String,
        first: String,
        hours: f64,
    },
    #[error("{file}: a row of second {second}, past any run's length")]
    SecondOutOfRange { file: String, second: u64 },
    #[error("{with} has a per-second {what}, {without} has none: give every shard's or none")]
    SomeSeries {
        what: &'static str,
        with: String,
        without: String,
    },
}

/// Where each shard stands in the merged run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ShardLine {
    pub index: u32,
    pub file: String,
    /// Seconds after the first shard's start that this one started.
    pub started_after_s: f64,
    pub elapsed_s: f64,
    pub tunnels_requested: usize,
    pub tunnels_established: usize,
    pub sessions_established: usize,
    pub tunnel_setup_p99_ms: f64,
}

/// One report from the shards, and the series lined up.
#[derive(Debug, Clone)]
pub struct Merged {
    /// In the shape of one LAC's report (no `shard`).
    pub report: LacReport,
    pub count: u32,
    pub run_id: Option<String>,
    pub plan: BTreeMap<String, String>,
    /// The first shard's start: second 0 of the merged series.
    pub started_unix_us: u64,
    pub shards: Vec<ShardLine>,
    /// Per tag ([`Stats::HISTOGRAM_TAGS`]), every shard's samples.
    pub histograms: Vec<(&'static str, Histogram<u64>)>,
    /// Per second of wall clock from `started_unix_us`, every shard's row added up; empty
    /// when the shards wrote no CSV.
    pub rows: Vec<SecondRow>,
    pub endpoint_rows: Vec<EndpointSecondRow>,
}

/// Checks that `inputs` are every shard of one run, once, and merges them.
pub fn merge(inputs: Vec<ShardInput>) -> Result<Merged, MergeError> {
    let shards = check(inputs)?;
    let first = &shards[0];
    let start = shards.iter().map(|s| s.info.started_unix_us).min();
    let start = start.unwrap_or(first.info.started_unix_us);
    let mut histograms: Vec<(&'static str, Histogram<u64>)> = Stats::HISTOGRAM_TAGS
        .iter()
        .map(|&tag| (tag, histogram()))
        .collect();
    for shard in &shards {
        for (tag, sum) in &mut histograms {
            // Bounds were checked when the log was read: both are the run's histogram.
            let _ = sum.add(&shard.histograms[*tag]);
        }
    }
    let series = Series::line_up(&shards);
    let report = sum_reports(&shards, &histograms, &series);
    let lines = shards
        .iter()
        .map(|s| ShardLine {
            index: s.info.index,
            file: s.input.name.clone(),
            started_after_s: s.offset.as_secs_f64(),
            elapsed_s: s.input.report.elapsed_s,
            tunnels_requested: s.input.report.tunnels_requested,
            tunnels_established: s.input.report.tunnels_established,
            sessions_established: s.input.report.sessions_established,
            tunnel_setup_p99_ms: s.input.report.tunnel_setup.p99_ms,
        })
        .collect();
    Ok(Merged {
        report,
        count: first.info.count,
        run_id: first.info.run_id.clone(),
        plan: first.info.plan.clone(),
        started_unix_us: start,
        shards: lines,
        histograms,
        rows: series.rows,
        endpoint_rows: series.endpoint_rows,
    })
}

/// A shard that passed the checks.
struct Checked {
    input: ShardInput,
    info: ShardInfo,
    /// Its start after the first shard's.
    offset: Duration,
    /// Its intervals summed per tag.
    histograms: BTreeMap<&'static str, Histogram<u64>>,
}

fn check(inputs: Vec<ShardInput>) -> Result<Vec<Checked>, MergeError> {
    let mut by_index: BTreeMap<u32, (ShardInput, ShardInfo)> = BTreeMap::new();
    let mut reference: Option<(String, ShardInfo)> = None;
    for input in inputs {
        let Some(info) = input.report.shard.clone() else {
            return Err(MergeError::NotAShard { file: input.name });
        };
        if let Some((other, first)) = &reference {
            compare(&input.name, &info, other, first)?;
        } else {
            reference = Some((input.name.clone(), info.clone()));
        }
        if let Some((earlier, _)) = by_index.get(&info.index) {
            return Err(MergeError::Twice {
                shard: info.shard(),
                first: earlier.name.clone(),
                second: input.name,
            });
        }
        by_index.insert(info.index, (input, info));
    }
    let Some((_, first)) = reference else {
        return Err(MergeError::NoShards);
    };
    let missing: Vec<u32> = (0..first.count)
        .filter(|i| !by_index.contains_key(i))
        .collect();
    if !missing.is_empty() {
        return Err(MergeError::Missing {
            count: first.count,
            missing,
            given: by_index.values().map(|(i, _)| i.name.clone()).collect(),
        });
    }
    for (what, has) in [
        (
            "CSV (--csv)",
            (|i: &ShardInput| i.csv.is_some()) as fn(&ShardInput) -> bool,
        ),
        ("endpoint CSV (--endpoint-csv)", |i| {
            i.endpoint_csv.is_some()
        }),
    ] {
        let with = by_index.values().find(|(i, _)| has(i));
        let without = by_index.values().find(|(i, _)| !has(i));
        if let (Some((with, _)), Some((without, _))) = (with, without) {
            return Err(MergeError::SomeSeries {
                what,
                with: with.name.clone(),
                without: without.name.clone(),
            });
        }
    }
    let start = by_index
        .values()
        .map(|(_, info)| info.started_unix_us)
        .min()
        .unwrap_or(first.started_unix_us);
    let earliest = by_index
        .values()
        .min_by_key(|(_, info)| info.started_unix_us)
        .map(|(input, _)| input.name.clone())
        .unwrap_or_default();
    for (input, info) in by_index.values() {
        let after = Duration::from_micros(info.started_unix_us.saturating_sub(start));
        if after > MAX_START_SPREAD {
            return Err(MergeError::StartsApart {
                file: input.name.clone(),
                first: earliest,
                hours: after.as_secs_f64() / 3600.0,
            });
        }
        let seconds = (input.csv.iter())
            .flat_map(|(file, rows)| rows.iter().map(move |r| (file, r.second)))
            .chain(
                (input.endpoint_csv.iter())
                    .flat_map(|(file, rows)| rows.iter().map(move |r| (file, r.second))),
            );
        for (file, second) in seconds {
            if second > MAX_SECONDS {
                return Err(MergeError::SecondOutOfRange {
                    file: file.clone(),
                    second,
                });
            }
        }
    }
    by_index
        .into_values()
        .map(|(input, info)| {
            let histograms = summed_log(&input)?;
            let offset = Duration::from_micros(info.started_unix_us.saturating_sub(start));
            Ok(Checked {
                input,
                info,
                offset,
                histograms,
            })
        })
        .collect()
}

/// Refuses a shard whose run is not the reference shard's.
fn compare(file: &str, info: &ShardInfo, other: &str, first: &ShardInfo) -> Result<(), MergeError> {
    if info.count != first.count {
        return Err(MergeError::Counts {
            file: file.to_string(),
            index: info.index,
            count: info.count,
            other: other.to_string(),
            other_count: first.count,
        });
    }
    if info.run_id != first.run_id {
        return Err(MergeError::RunIds {
            file: file.to_string(),
            run_id: info.run_id.clone(),
            other: other.to_string(),
            other_run_id: first.run_id.clone(),
        });
    }
    let flags: BTreeSet<&String> = info.plan.keys().chain(first.plan.keys()).collect();
    for flag in flags {
        let (value, other_value) = (info.plan.get(flag), first.plan.get(flag));
        if value != other_value {
            let shown = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(unset)".into());
            return Err(MergeError::Plans {
                file: file.to_string(),
                flag: flag.clone(),
                value: shown(value),
                other: other.to_string(),
                other_value: shown(other_value),
            });
        }
    }
    Ok(())
}

/// The shard's interval log summed per tag, checked against its report's counts.
fn summed_log(input: &ShardInput) -> Result<BTreeMap<&'static str, Histogram<u64>>, MergeError> {
    let Some((log, intervals)) = &input.hdr_log else {
        return Err(MergeError::NoHdrLog {
            file: input.name.clone(),
        });
    };
    let mut sums: BTreeMap<&'static str, Histogram<u64>> = Stats::HISTOGRAM_TAGS
        .iter()
        .map(|&tag| (tag, histogram()))
        .collect();
    for interval in intervals {
        let Some((_, sum)) = sums.iter_mut().find(|(tag, _)| **tag == interval.tag) else {
            return Err(MergeError::UnknownTag {
                log: log.clone(),
                tag: interval.tag.clone(),
            });
        };
        // Both have the run's bounds (checked when read).
        let _ = sum.add(&interval.histogram);
    }
    for (tag, sum) in &sums {
        let counted = report_percentiles(&input.report, tag).count;
        if sum.len() != counted {
            return Err(MergeError::LogDisagrees {
                log: log.clone(),
                file: input.name.clone(),
                tag: tag.to_string(),
                logged: sum.len(),
                counted,
            });
        }
    }
    Ok(sums)
}

/// The report's summary of the histogram `tag`.
fn report_percentiles<'a>(report: &'a LacReport, tag: &str) -> &'a Percentiles {
    match tag {
        "sccrq_to_sccrp" => &report.sccrq_to_sccrp,
        "tunnel_setup" => &report.tunnel_setup,
        "session_setup" => &report.session_setup,
        "echo_rtt" => &report.echo_rtt,
        "lcp_opened" => &report.lcp_opened,
        "authentication" => &report.authentication,
        "ipcp_opened" => &report.ipcp_opened,
        "ipv6cp_opened" => &report.ipv6cp_opened,
        "icrq_to_ip_up" => &report.icrq_to_ip_up,
        _ => &report.traffic_rtt,
    }
}

fn merged_percentiles(histograms: &[(&'static str, Histogram<u64>)], tag: &str) -> Percentiles {
    histograms
        .iter()
        .find(|(t, _)| *t == tag)
        .map(|(_, h)| percentiles(h))
        .unwrap_or_default()
}

/// The shards' per-second series on one wall clock.
struct Series {
    rows: Vec<SecondRow>,
    endpoint_rows: Vec<EndpointSecondRow>,
}

impl Series {
    fn line_up(shards: &[Checked]) -> Series {
        // A shard's second s is merged second s + its start rounded to whole seconds.
        let shift = |s: &Checked| (s.offset.as_micros() + 500_000) as u64 / 1_000_000;
        let mut rows = Vec::new();
        // Per shard: its shift and its rows by second.
        let tables: Vec<(u64, BTreeMap<u64, &SecondRow>)> = shards
            .iter()
            .filter_map(|s| {
                let (_, rows) = s.input.csv.as_ref()?;
                Some((shift(s), rows.iter().map(|r| (r.second, r)).collect()))
            })
            .collect();
        let seconds = tables
            .iter()
            .map(|(shift, rows)| shift + rows.keys().next_back().map_or(0, |s| s + 1))
            .max()
            .unwrap_or(0);
        let mut cumulative = Cumulative::new(shards, shift);
        for second in 0..seconds {
            let mut row = SecondRow {
                second,
                phase: RunPhase::Done,
                ..SecondRow::default()
            };
            for (shift, table) in &tables {
                let at = second.checked_sub(*shift);
                let own = at.and_then(|s| table.get(&s).copied());
                let last = at.and_then(|s| table.range(..=s).next_back().map(|(_, r)| *r));
                add_row(&mut row, own, last, at.is_none());
            }
            row.traffic_loss_pct = loss_pct(row.traffic_lost, row.traffic_sent);
            cumulative.advance_to(second);
            cumulative.fill(&mut row);
            rows.push(row);
        }
        let endpoint_rows = endpoint_rows(shards, shift);
        Series {
            rows,
            endpoint_rows,
        }
    }
}

/// Adds one shard's row for a merged second: `own` its row of that second, `last` its latest
/// row up to then (a shard that ended keeps its totals), `before` when it had not started.
fn add_row(row: &mut SecondRow, own: Option<&SecondRow>, last: Option<&SecondRow>, before: bool) {
    let phase = match (own, before) {
        (Some(own), _) => own.phase,
        (None, true) => RunPhase::Starting,
        (None, false) => RunPhase::Done,
    };
    row.phase = row.phase.min(phase);
    if let Some(own) = own {
        row.target_rate += own.target_rate;
        add_fields!(row, own: tunnels_up, sessions_up, outstanding, sessions_ip_up,
            started_this_second, setups_this_second, outstanding_peak, ip_up_this_second);
    }
    if let Some(last) = last {
        add_fields!(row, last: tunnels_started, tunnels_established, tunnels_failed,
            sessions_established, sessions_failed, retransmissions, echo_sent, echo_answered,
            ip_up_total, traffic_sent, traffic_received, traffic_lost);
    }
}

/// The histograms as the rows of the shards had them: a row's percentiles are those of every
/// sample logged with it or before.
struct Cumulative {
    /// (merged second of the row it was logged with, tag index, interval), in that order.
    pending: Vec<(u64, usize, Histogram<u64>)>,
    next: usize,
    sums: Vec<Histogram<u64>>,
}

impl Cumulative {
    /// A LAC logs an interval each time it closes whole seconds with CSV rows, ending at that
    /// moment: an interval ending at run time t (in [s + 1, s + 2)) went with row s; the last
    /// one, written at the end of the run, with the last row (that of second ⌊t⌋).
    fn new(shards: &[Checked], shift: impl Fn(&Checked) -> u64) -> Cumulative {
        let mut pending = Vec::new();
        for shard in shards {
            let intervals = shard.input.hdr_log.iter().flat_map(|(_, i)| i);
            let last_end = intervals.clone().map(LoggedInterval::end).max();
            for interval in intervals {
                let Some(tag) = Stats::HISTOGRAM_TAGS
                    .iter()
                    .position(|t| *t == interval.tag)
                else {
                    continue;
                };
                let end = interval.end().as_secs();
                let row = if Some(interval.end()) == last_end {
                    end
                } else {
                    end.saturating_sub(1)
                };
                pending.push((row + shift(shard), tag, interval.histogram.clone()));
            }
        }
        pending.sort_by_key(|(row, tag, _)| (*row, *tag));
        Cumulative {
            pending,
            next: 0,
            sums: Stats::HISTOGRAM_TAGS.iter().map(|_| histogram()).collect(),
        }
    }

    /// Takes in every interval logged with the rows up to merged second `row`.
    fn advance_to(&mut self, row: u64) {
        while let Some((at, tag, h)) = self.pending.get(self.next) {
            if *at > row {
                break;
            }
            if let Some(sum) = self.sums.get_mut(*tag) {
                let _ = sum.add(h);
            }
            self.next = self.next.saturating_add(1);
        }
    }

    fn of(&self, tag: &str) -> Percentiles {
        Stats::HISTOGRAM_TAGS
            .iter()
            .position(|t| *t == tag)
            .and_then(|i| self.sums.get(i))
            .map(percentiles)
            .unwrap_or_default()
    }

    fn fill(&self, row: &mut SecondRow) {
        let p = self.of("sccrq_to_sccrp");
        (row.sccrq_to_sccrp_p50_ms, row.sccrq_to_sccrp_p99_ms) = (p.p50_ms, p.p99_ms);
        let p = self.of("tunnel_setup");
        (row.tunnel_setup_p50_ms, row.tunnel_setup_p99_ms) = (p.p50_ms, p.p99_ms);
        let p = self.of("session_setup");
        (row.session_setup_p50_ms, row.session_setup_p99_ms) = (p.p50_ms, p.p99_ms);
        let p = self.of("echo_rtt");
        (row.echo_rtt_p50_ms, row.echo_rtt_p99_ms) = (p.p50_ms, p.p99_ms);
        let p = self.of("icrq_to_ip_up");
        (row.icrq_to_ip_up_p50_ms, row.icrq_to_ip_up_p99_ms) = (p.p50_ms, p.p99_ms);
        let p = self.of("traffic_rtt");
        row.traffic_rtt_p50_ms = p.p50_ms;
        row.traffic_rtt_p90_ms = p.p90_ms;
        row.traffic_rtt_p99_ms = p.p99_ms;
    }
}

/// A shard's endpoint rows by (endpoint, second).
type EndpointTable<'a> = BTreeMap<(&'a str, u64), &'a EndpointSecondRow>;

/// Per merged second and endpoint: what every shard saw of it, added up.
fn endpoint_rows(shards: &[Checked], shift: impl Fn(&Checked) -> u64) -> Vec<EndpointSecondRow> {
    // Per shard: its shift and its rows by (endpoint, second).
    let tables: Vec<(u64, EndpointTable)> = shards
        .iter()
        .filter_map(|s| {
            let (_, rows) = s.input.endpoint_csv.as_ref()?;
            let rows = rows.iter().map(|r| ((r.endpoint.as_str(), r.second), r));
            Some((shift(s), rows.collect()))
        })
        .collect();
    let keys: BTreeSet<&str> = (tables.iter())
        .flat_map(|(_, rows)| rows.keys().map(|(key, _)| *key))
        .collect();
    let seconds = tables
        .iter()
        .map(|(shift, rows)| shift + rows.keys().map(|(_, s)| s + 1).max().unwrap_or(0))
        .max()
        .unwrap_or(0);
    let mut out = Vec::new();
    for second in 0..seconds {
        for key in &keys {
            let mut row = EndpointSecondRow {
                second,
                endpoint: key.to_string(),
                ..EndpointSecondRow::default()
            };
            let mut seen = false;
            for (shift, table) in &tables {
                let Some(at) = second.checked_sub(*shift) else {
                    continue;
                };
                if let Some(own) = table.get(&(*key, at)) {
                    row.tunnels_up = row.tunnels_up.saturating_add(own.tunnels_up);
                    row.sessions_up = row.sessions_up.saturating_add(own.sessions_up);
                    row.setups_this_second = row
                        .setups_this_second
                        .saturating_add(own.setups_this_second);
                }
                if let Some((_, last)) = table.range((*key, 0)..=(*key, at)).next_back() {
                    row.tunnels_established = row
                        .tunnels_established
                        .saturating_add(last.tunnels_established);
                    seen = true;
                }
            }
            // An endpoint appears from the second some shard first saw it, as in one LAC's.
            if seen {
                out.push(row);
            }
        }
    }
    out
}

/// The shards' reports as one.
fn sum_reports(
    shards: &[Checked],
    histograms: &[(&'static str, Histogram<u64>)],
    series: &Series,
) -> LacReport {
    let first = &shards[0].input.report;
    let mut m = LacReport {
        target: first.target.clone(),
        ppp: first.ppp,
        traffic_rate: first.traffic_rate,
        request_dns: first.request_dns,
        ..LacReport::default()
    };
    let mut endpoints: BTreeMap<String, EndpointReport> = BTreeMap::new();
    let mut dns = Vec::new();
    // In merged time: the first SCCRQ of any shard, the last setup of any, the last end.
    let mut first_sccrq: Option<f64> = None;
    let mut last_up: f64 = 0.0;
    for shard in shards {
        let r = &shard.input.report;
        let offset_ms = shard.offset.as_secs_f64() * 1000.0;
        add_fields!(m, r: tunnels_requested, tunnels_established, tunnels_failed,
            sessions_requested, sessions_established, sessions_failed, sessions_ip_up,
            duplicate_addresses, echo_requests_sent, echo_replies, echo_looped_back,
            tunnels_closed_cleanly, retransmissions, traffic_sent, traffic_received,
            traffic_unexpected, ppp_failures, sessions_with_dns, tunnels_terminated,
            sessions_terminated, teardown_cut_off);
        add_counts(&mut m.failures, &r.failures);
        add_counts(&mut m.given_up, &r.given_up);
        add_counts(
            &mut m.replies_from_other_addresses,
            &r.replies_from_other_addresses,
        );
        m.elapsed_s = m.elapsed_s.max(offset_ms / 1000.0 + r.elapsed_s);
        for server in &r.dns_servers {
            if !dns.contains(server) && dns.len() < DNS_SERVERS_KEPT {
                dns.push(*server);
            }
        }
        for e in &r.endpoints {
            let merged = endpoints
                .entry(e.key.clone())
                .or_insert_with(|| EndpointReport {
                    key: e.key.clone(),
                    address: e.address.clone(),
                    ..EndpointReport::default()
                });
            merged.tunnels_established = merged
                .tunnels_established
                .saturating_add(e.tunnels_established);
            merged.sessions_established = merged
                .sessions_established
                .saturating_add(e.sessions_established);
            merged.tunnels_peak = merged.tunnels_peak.saturating_add(e.tunnels_peak);
        }
        if let Some(first_ms) = shard.info.first_sccrq_ms {
            let at = offset_ms + first_ms;
            first_sccrq = Some(first_sccrq.map_or(at, |f: f64| f.min(at)));
            last_up = last_up.max(at + r.setup_phase_ms);
        }
        // Without the series, the peaks are bounded by the shards' own.
        m.peak_setups_per_second = m.peak_setups_per_second.max(r.peak_setups_per_second);
        m.peak_tunnels_up = m.peak_tunnels_up.saturating_add(r.peak_tunnels_up);
        m.outstanding_max = m.outstanding_max.saturating_add(r.outstanding_max);
    }
    m.endpoints = endpoints.into_values().collect();
    m.dns_servers = dns;
    m.traffic_lost = m.traffic_sent.saturating_sub(m.traffic_received);
    m.traffic_loss_pct = loss_pct(m.traffic_lost, m.traffic_sent);
    m.setup_phase_ms = first_sccrq.map_or(0.0, |first| (last_up - first).max(0.0));
    m.tunnel_setups_per_second = if m.setup_phase_ms > 0.0 {
        m.tunnels_established as f64 / (m.setup_phase_ms / 1000.0)
    } else {
        0.0
    };
    if !series.rows.is_empty() {
        // Lined up by wall clock: at most what the shards did together in one second.
        let rows = &series.rows;
        m.peak_setups_per_second = rows.iter().map(|r| r.setups_this_second).max().unwrap_or(0);
        m.peak_tunnels_up = rows.iter().map(|r| r.tunnels_up).max().unwrap_or(0);
        m.outstanding_max = rows.iter().map(|r| r.outstanding_peak).max().unwrap_or(0);
    }
    if !series.endpoint_rows.is_empty() {
        for e in &mut m.endpoints {
            let rows = series.endpoint_rows.iter().filter(|r| r.endpoint == e.key);
            e.tunnels_peak = rows.map(|r| r.tunnels_up).max().unwrap_or(0);
        }
    }
    m.sccrq_to_sccrp = merged_percentiles(histograms, "sccrq_to_sccrp");
    m.tunnel_setup = merged_percentiles(histograms, "tunnel_setup");
    m.session_setup = merged_percentiles(histograms, "session_setup");
    m.echo_rtt = merged_percentiles(histograms, "echo_rtt");
    m.lcp_opened = merged_percentiles(histograms, "lcp_opened");
    m.authentication = merged_percentiles(histograms, "authentication");
    m.ipcp_opened = merged_percentiles(histograms, "ipcp_opened");
    m.ipv6cp_opened = merged_percentiles(histograms, "ipv6cp_opened");
    m.icrq_to_ip_up = merged_percentiles(histograms, "icrq_to_ip_up");
    m.traffic_rtt = merged_percentiles(histograms, "traffic_rtt");
    m
}

fn add_counts(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (key, n) in from {
        let slot = into.entry(key.clone()).or_insert(0);
        *slot = slot.saturating_add(*n);
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::lac::hdrlog::{read_intervals, HdrLog, HdrReadError};
    use crate::lac::shard::ShardFiles;

    /// A scratch dir of this test's own.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("l2tpkit-merge-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Deterministic latencies, shard by shard unlike: a body and a long tail.
    fn samples(shard: u32, n: u64) -> Vec<u64> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(shard);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let body = 2_000 + (x % 3_000) * (u64::from(shard) + 1);
                if x.is_multiple_of(50) {
                    body * 40
                } else {
                    body
                }
            })
            .collect()
    }

    fn plan() -> BTreeMap<String, String> {
        [("--tunnels", "400"), ("--target", "127.0.0.1:1701")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Shard `index` of `count`: its samples logged over three seconds to a real interval log,
    /// read back; its report counts as a LAC's would.
    fn shard(dir: &Scratch, index: u32, count: u32, values: &[u64]) -> ShardInput {
        let mut stats = Stats::for_tests();
        let path = dir.0.join(format!("lac.shard-{index}-of-{count}.hlog"));
        let mut log = HdrLog::create(&path, SystemTime::now()).unwrap();
        for (second, chunk) in values.chunks(values.len().div_ceil(3).max(1)).enumerate() {
            for v in chunk {
                stats.tunnel_setup.record(*v).unwrap();
                stats.sccrq_to_sccrp.record(*v / 2).unwrap();
            }
            log.write(&stats, Duration::from_secs(second as u64 + 1))
                .unwrap();
        }
        drop(log);
        let intervals = read_intervals(&std::fs::read(&path).unwrap()).unwrap();
        let n = values.len();
        let report = LacReport {
            target: "127.0.0.1:1701".into(),
            tunnels_requested: n,
            tunnels_established: n,
            tunnels_closed_cleanly: n,
            tunnel_setup: percentiles(&stats.tunnel_setup),
            sccrq_to_sccrp: percentiles(&stats.sccrq_to_sccrp),
            elapsed_s: 3.2,
            failures: [("tunnel setup timeout".to_string(), u64::from(index))].into(),
            endpoints: vec![EndpointReport {
                key: format!("te{}", index % 2),
                address: "127.0.0.1".into(),
                tunnels_established: n as u64,
                sessions_established: 0,
                tunnels_peak: n as u64,
            }],
            shard: Some(ShardInfo {
                index,
                count,
                run_id: Some("run-a".into()),
                plan: plan(),
                started_unix_us: 1_800_000_000_000_000 + u64::from(index) * 250_000,
                first_sccrq_ms: Some(1.0),
                files: ShardFiles::default(),
            }),
            ..LacReport::default()
        };
        ShardInput {
            name: format!("lac.shard-{index}-of-{count}.json"),
            report,
            hdr_log: Some((path.display().to_string(), intervals)),
            csv: None,
            endpoint_csv: None,
        }
    }

    #[test]
    fn merged_percentiles_are_those_of_one_histogram_holding_every_sample() {
        let dir = Scratch::new("exact");
        let per_shard: Vec<Vec<u64>> = (0..4)
            .map(|i| samples(i, 500 + 37 * u64::from(i)))
            .collect();
        let inputs = (0..4u32)
            .map(|i| shard(&dir, i, 4, &per_shard[i as usize]))
            .collect();
        let merged = merge(inputs).expect("four shards of one run");
        let mut one = histogram();
        for v in per_shard.iter().flatten() {
            one.record(*v).unwrap();
        }
        let (_, tunnel_setup) = (merged.histograms.iter())
            .find(|(tag, _)| *tag == "tunnel_setup")
            .unwrap();
        assert_eq!(
            tunnel_setup, &one,
            "the merged histogram is the one of every sample"
        );
        assert_eq!(merged.report.tunnel_setup, percentiles(&one));
        assert_eq!(merged.report.tunnel_setup.count, 4 * 500 + 37 * 6);
        // What a merge of summaries would give is not it: the shards' p99s do not add up.
        let mean_p99 = per_shard
            .iter()
            .map(|v| {
                let mut h = histogram();
                v.iter().for_each(|x| h.record(*x).unwrap());
                percentiles(&h).p99_ms
            })
            .sum::<f64>()
            / 4.0;
        assert_ne!(mean_p99, merged.report.tunnel_setup.p99_ms);
        // Counters add; the endpoints seen by several shards are one.
        assert_eq!(merged.report.tunnels_established, 2222);
        assert_eq!(merged.report.failures["tunnel setup timeout"], 6);
        let keys: Vec<&str> = merged
            .report
            .endpoints
            .iter()
            .map(|e| e.key.as_str())
            .collect();
        assert_eq!(keys, ["te0", "te1"]);
        assert_eq!(merged.report.endpoints[0].tunnels_established, 500 + 574);
        assert_eq!(merged.report.shard, None);
        // The last shard started 0.75 s after the first and ran 3.2 s.
        assert!(
            (merged.report.elapsed_s - 3.95).abs() < 1e-9,
            "{}",
            merged.report.elapsed_s
        );
        assert_eq!(merged.shards.len(), 4);
        assert_eq!(merged.run_id.as_deref(), Some("run-a"));
    }

    fn refused(inputs: Vec<ShardInput>) -> MergeError {
        merge(inputs).expect_err("refused")
    }

    #[test]
    fn a_missing_shard_overlapping_shards_and_two_runs_are_refused_by_name() {
        let dir = Scratch::new("refusals");
        let v = samples(0, 30);
        let four = || (0..4u32).map(|i| shard(&dir, i, 4, &v)).collect::<Vec<_>>();
        let mut three = four();
        three.remove(2);
        let err = refused(three);
        assert!(
            matches!(&err, MergeError::Missing { missing, .. } if missing == &[2]),
            "{err}"
        );
        assert!(err.to_string().contains("lac.shard-3-of-4.json"), "{err}");

        let mut twice = four();
        let mut again = shard(&dir, 1, 4, &v);
        again.name = "other/lac.shard-1-of-4.json".into();
        twice.push(again);
        let err = refused(twice);
        assert!(
            err.to_string().contains("other/lac.shard-1-of-4.json"),
            "{err}"
        );
        assert!(err.to_string().contains("shard 1/4 twice"), "{err}");

        let mut mixed = four();
        if let Some(info) = mixed[3].report.shard.as_mut() {
            info.run_id = Some("run-b".into());
        }
        let err = refused(mixed);
        assert!(err.to_string().contains("run-b"), "{err}");
        assert!(err.to_string().contains("lac.shard-3-of-4.json"), "{err}");

        let mut other_plan = four();
        if let Some(info) = other_plan[2].report.shard.as_mut() {
            info.plan.insert("--tunnels".into(), "800".into());
        }
        let err = refused(other_plan);
        assert!(err.to_string().contains("--tunnels 800"), "{err}");

        let mut other_count = four();
        other_count[1] = shard(&dir, 1, 3, &v);
        let err = refused(other_count);
        assert!(err.to_string().contains("1 of 3"), "{err}");

        let mut plain = four();
        plain[0].report.shard = None;
        plain[0].name = "lac.json".into();
        let err = refused(plain);
        assert_eq!(
            err,
            MergeError::NotAShard {
                file: "lac.json".into()
            }
        );
        assert_eq!(refused(Vec::new()), MergeError::NoShards);

        let mut late = four();
        if let Some(info) = late[3].report.shard.as_mut() {
            info.started_unix_us += 3 * 24 * 3600 * 1_000_000;
        }
        let err = refused(late);
        assert!(err.to_string().contains("72.0 h after"), "{err}");

        let mut far = four();
        far[1].csv = Some((
            "far.csv".into(),
            vec![row(u64::MAX, 0, 0, 0, RunPhase::Done)],
        ));
        for other in [0, 2, 3] {
            far[other].csv = Some(("near.csv".into(), vec![]));
        }
        let err = refused(far);
        assert!(err.to_string().contains("far.csv"), "{err}");

        let mut no_log = four();
        no_log[0].hdr_log = None;
        assert!(matches!(refused(no_log), MergeError::NoHdrLog { .. }));
    }

    #[test]
    fn a_truncated_interval_log_is_refused_naming_it() {
        let dir = Scratch::new("truncated");
        let v = samples(1, 300);
        let whole = shard(&dir, 0, 2, &v);
        let path = dir.0.join("lac.shard-0-of-2.hlog");
        let text = std::fs::read(&path).unwrap();
        // Cut inside the last histogram: the log does not read.
        let cut = &text[..text.len() - 40];
        let err = read_intervals(cut).expect_err("a cut log");
        assert!(
            matches!(
                err,
                HdrReadError::Base64 { .. }
                    | HdrReadError::Decode { .. }
                    | HdrReadError::Parse { .. }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("line"), "{err}");
        // Cut at a line's end (the last second's ten tags gone): it reads, but holds fewer
        // samples than the report counts.
        let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
        let short: Vec<u8> = lines[..lines.len() - 10].concat();
        let mut input = whole.clone();
        let name = path.display().to_string();
        input.hdr_log = Some((name.clone(), read_intervals(&short).unwrap()));
        let err = refused(vec![input, shard(&dir, 1, 2, &v)]);
        assert!(matches!(err, MergeError::LogDisagrees { .. }), "{err}");
        assert!(err.to_string().contains(&name), "{err}");
        assert!(err.to_string().contains("cut short"), "{err}");
    }

    fn row(second: u64, up: u64, established: u64, setups: u64, phase: RunPhase) -> SecondRow {
        SecondRow {
            second,
            phase,
            tunnels_up: up,
            tunnels_established: established,
            setups_this_second: setups,
            ..SecondRow::default()
        }
    }

    #[test]
    fn per_second_series_line_up_by_wall_clock() {
        let dir = Scratch::new("series");
        let v = samples(2, 30);
        let mut a = shard(&dir, 0, 2, &v);
        let mut b = shard(&dir, 1, 2, &v);
        // b starts 2 s after a.
        if let Some(info) = b.report.shard.as_mut() {
            info.started_unix_us = a.report.shard.as_ref().unwrap().started_unix_us + 2_000_000;
        }
        use RunPhase::{Connecting as C, Done as D, Holding as H};
        a.csv = Some((
            "a.csv".into(),
            vec![
                row(0, 10, 10, 10, C),
                row(1, 20, 20, 10, H),
                row(2, 0, 20, 0, D),
            ],
        ));
        b.csv = Some((
            "b.csv".into(),
            vec![row(0, 5, 5, 5, C), row(1, 9, 9, 4, H), row(2, 0, 9, 0, D)],
        ));
        let endpoint = |second, up, established| EndpointSecondRow {
            second,
            endpoint: "te1".into(),
            tunnels_up: up,
            tunnels_established: established,
            ..EndpointSecondRow::default()
        };
        a.endpoint_csv = Some((
            "a-e.csv".into(),
            vec![endpoint(0, 10, 10), endpoint(1, 20, 20)],
        ));
        b.endpoint_csv = Some(("b-e.csv".into(), vec![endpoint(0, 5, 5), endpoint(1, 9, 9)]));
        let merged = merge(vec![a, b]).unwrap();
        let up: Vec<u64> = merged.rows.iter().map(|r| r.tunnels_up).collect();
        let established: Vec<u64> = merged.rows.iter().map(|r| r.tunnels_established).collect();
        let phases: Vec<RunPhase> = merged.rows.iter().map(|r| r.phase).collect();
        // b's second 0 is a's second 2: a is done by then but keeps its totals.
        assert_eq!(up, [10, 20, 5, 9, 0]);
        assert_eq!(established, [10, 20, 25, 29, 29]);
        assert_eq!(phases, [RunPhase::Starting, RunPhase::Starting, C, H, D]);
        // The peak is that of the shards together at one time, not the sum of their peaks.
        assert_eq!(merged.report.peak_tunnels_up, 20);
        let te1: Vec<(u64, u64, u64)> = (merged.endpoint_rows.iter())
            .map(|r| (r.second, r.tunnels_up, r.tunnels_established))
            .collect();
        assert_eq!(te1, [(0, 10, 10), (1, 20, 20), (2, 5, 25), (3, 9, 29)]);
        let peak = merged
            .report
            .endpoints
            .iter()
            .find(|e| e.key == "te1")
            .unwrap();
        assert_eq!(peak.tunnels_peak, 20);
        // The percentiles of each second are those of everything logged by its end.
        assert!(merged.rows[0].tunnel_setup_p99_ms > 0.0);
        let last = merged.rows.last().unwrap();
        assert_eq!(last.tunnel_setup_p99_ms, merged.report.tunnel_setup.p99_ms);

        // One shard with a series and one without cannot be lined up.
        let mut c = shard(&dir, 0, 2, &v);
        c.csv = Some(("c.csv".into(), vec![row(0, 1, 1, 1, C)]));
        let err = refused(vec![c, shard(&dir, 1, 2, &v)]);
        assert!(
            err.to_string().contains("c.csv") || err.to_string().contains("shard-0-of-2"),
            "{err}"
        );
    }
}
