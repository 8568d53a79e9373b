//! `lac --hdr-log FILE`: the run's histograms as a standard HdrHistogram interval log, one
//! interval per second and one tag per histogram (the names of the JSON report), so that the
//! logs of several agents can be merged exactly afterwards (HistogramLogProcessor, or the
//! `hdrhistogram` crate's `IntervalLogIterator`).
//!
//! The run keeps cumulative histograms; an interval is what was recorded since the previous
//! one (the cumulative histogram minus the one logged last time), so the intervals of a tag add
//! up to the run's histogram. Values are microseconds; `Interval_Max` is shown in
//! milliseconds (MaxValueDivisor 1000).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, IntervalLogWriterError, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializeError, V2DeflateSerializer};
use hdrhistogram::Histogram;

use super::stats::{histogram, Stats};

/// Why the interval log could not be written.
#[derive(Debug, thiserror::Error)]
pub enum HdrLogError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the {tag} histogram shrank between two intervals")]
    Shrunk { tag: &'static str },
    #[error("encoding the {tag} histogram: {error:?}")]
    Encode {
        tag: &'static str,
        error: V2DeflateSerializeError,
    },
}

/// Why an interval log could not be read back (`merge`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HdrReadError {
    #[error("line {line}: not an interval log line (cut short?)")]
    Parse { line: usize },
    #[error("line {line}: an interval without a tag")]
    Untagged { line: usize },
    #[error("line {line}: the {tag} histogram is not valid base64 (cut short?)")]
    Base64 { line: usize, tag: String },
    #[error("line {line}: the {tag} histogram does not decode ({why}; cut short?)")]
    Decode {
        line: usize,
        tag: String,
        why: String,
    },
    #[error("line {line}: the {tag} histogram holds values outside 1 µs to 1 h")]
    Range { line: usize, tag: String },
}

/// One interval of one tag, read back from a log.
#[derive(Debug, Clone)]
pub struct LoggedInterval {
    pub tag: String,
    /// From the log's BaseTime (the run's start).
    pub start: Duration,
    pub length: Duration,
    pub histogram: Histogram<u64>,
}

impl LoggedInterval {
    pub fn end(&self) -> Duration {
        self.start.saturating_add(self.length)
    }
}

/// Reads every interval of a log written by [`HdrLog`] (or any log of microsecond histograms
/// with tags). Each histogram is checked to fit the run's bounds, so adding it to one of
/// [`Stats`]' histograms cannot fail.
pub fn read_intervals(text: &[u8]) -> Result<Vec<LoggedInterval>, HdrReadError> {
    let mut intervals = Vec::new();
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(text) {
        let entry = entry.map_err(|err| {
            let hdrhistogram::serialization::interval_log::LogIteratorError::ParseError { offset } =
                err;
            HdrReadError::Parse {
                line: line_at(text, offset),
            }
        })?;
        let LogEntry::Interval(interval) = entry else {
            continue;
        };
        let encoded = interval.encoded_histogram();
        let offset = (encoded.as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
        let line = line_at(text, offset);
        let tag = (interval.tag())
            .ok_or(HdrReadError::Untagged { line })?
            .as_str()
            .to_string();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| HdrReadError::Base64 {
                line,
                tag: tag.clone(),
            })?;
        let decoded: Histogram<u64> =
            deserializer
                .deserialize(&mut bytes.as_slice())
                .map_err(|err| HdrReadError::Decode {
                    line,
                    tag: tag.clone(),
                    why: format!("{err:?}"),
                })?;
        let mut fitted = histogram();
        fitted.add(&decoded).map_err(|_| HdrReadError::Range {
            line,
            tag: tag.clone(),
        })?;
        intervals.push(LoggedInterval {
            tag,
            start: interval.start_timestamp(),
            length: interval.duration(),
            histogram: fitted,
        });
    }
    Ok(intervals)
}

/// The line (from 1) that byte `offset` of `text` is on.
fn line_at(text: &[u8], offset: usize) -> usize {
    let before = text.get(..offset).unwrap_or(text);
    before.iter().filter(|&&b| b == b'\n').count() + 1
}

/// An open interval log and the histograms logged so far, per tag.
pub struct HdrLog {
    out: BufWriter<File>,
    serializer: V2DeflateSerializer,
    /// The cumulative histogram of each tag as of the last interval.
    logged: Vec<Histogram<u64>>,
    /// Seconds since the run's start when the last interval ended.
    last_end: Duration,
}

impl HdrLog {
    /// Creates `path` and writes the log's header: comments, StartTime and BaseTime (the run's
    /// start, `started`), the legend.
    pub fn create(path: &Path, started: SystemTime) -> Result<HdrLog, HdrLogError> {
        let mut out = BufWriter::new(File::create(path)?);
        let mut serializer = V2DeflateSerializer::new();
        IntervalLogWriterBuilder::new()
            .add_comment("l2tpkit lac: latencies in microseconds, one tag per histogram")
            .add_comment(&format!("tags: {}", Stats::HISTOGRAM_TAGS.join(" ")))
            .with_start_time(started)
            .with_base_time(started)
            .with_max_value_divisor(1000.0)
            .begin_log_with(&mut out, &mut serializer)?;
        writeln!(
            out,
            "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
        )?;
        out.flush()?;
        Ok(HdrLog {
            out,
            serializer,
            logged: Stats::HISTOGRAM_TAGS.iter().map(|_| histogram()).collect(),
            last_end: Duration::ZERO,
        })
    }

    /// Logs one interval per tag, from the end of the last one to `now` (time since the run's
    /// start): what each histogram of `stats` gained since then.
    pub fn write(&mut self, stats: &Stats, now: Duration) -> Result<(), HdrLogError> {
        let start = self.last_end;
        let length = now.saturating_sub(start);
        let mut writer = IntervalLogWriterBuilder::new()
            .with_max_value_divisor(1000.0)
            .begin_log_with(&mut self.out, &mut self.serializer)?;
        for ((tag, current), logged) in stats.histograms().into_iter().zip(&mut self.logged) {
            let mut interval = current.clone();
            // The run's histograms only grow, and both share one configuration.
            interval
                .subtract(&*logged)
                .map_err(|_| HdrLogError::Shrunk { tag })?;
            let name = Tag::new(tag).ok_or_else(|| io::Error::other(format!("tag {tag}")))?;
            writer
                .write_histogram(&interval, start, length, Some(name))
                .map_err(|err| match err {
                    IntervalLogWriterError::SerializeError(error) => {
                        HdrLogError::Encode { tag, error }
                    }
                    IntervalLogWriterError::IoError(err) => HdrLogError::Io(err),
                })?;
            logged.clone_from(current);
        }
        self.out.flush()?;
        self.last_end = now.max(start);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;
    use std::collections::BTreeMap;

    /// Reads a log back: per tag, the intervals summed, and how many there were.
    fn read_back(text: &[u8]) -> BTreeMap<String, (Histogram<u64>, usize)> {
        let mut merged: BTreeMap<String, (Histogram<u64>, usize)> = BTreeMap::new();
        let mut deserializer = Deserializer::new();
        for entry in IntervalLogIterator::new(text) {
            let LogEntry::Interval(interval) = entry.expect("a well-formed log entry") else {
                continue;
            };
            let bytes = base64_decode(interval.encoded_histogram());
            let h: Histogram<u64> = deserializer
                .deserialize(&mut bytes.as_slice())
                .expect("a histogram");
            let tag = interval.tag().expect("every interval is tagged").as_str();
            let slot = merged
                .entry(tag.to_string())
                .or_insert_with(|| (histogram(), 0));
            slot.0.add(&h).expect("same bounds");
            slot.1 += 1;
        }
        merged
    }

    fn base64_decode(text: &str) -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .expect("base64")
    }

    #[test]
    fn intervals_add_up_to_the_run_histograms() {
        let dir = std::env::temp_dir().join(format!("l2tpkit-hdrlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.hlog");
        let mut stats = Stats::for_tests();
        let mut log = HdrLog::create(&path, SystemTime::now()).unwrap();
        for second in 1..=3u64 {
            for v in 0..(100 * second) {
                stats.sccrq_to_sccrp.record(1000 + v * 37).unwrap();
                stats.icrq_to_ip_up.record(50_000 + v * second).unwrap();
            }
            log.write(&stats, Duration::from_secs(second)).unwrap();
        }
        // A last partial interval, as at the end of a run.
        stats.sccrq_to_sccrp.record(7).unwrap();
        log.write(&stats, Duration::from_millis(3400)).unwrap();
        drop(log);
        let text = std::fs::read(&path).unwrap();
        let merged = read_back(&text);
        assert_eq!(merged.len(), Stats::HISTOGRAM_TAGS.len());
        for (tag, run) in stats.histograms() {
            let (sum, intervals) = &merged[tag];
            assert_eq!(*intervals, 4, "{tag}");
            assert_eq!(
                sum, run,
                "{tag}: the intervals add up to the run's histogram"
            );
        }
        assert_eq!(merged["sccrq_to_sccrp"].0.len(), 601);
        assert!(merged["echo_rtt"].0.is_empty());
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("#[BaseTime: "), "{text}");
        assert!(text.contains("\"StartTimestamp\""), "{text}");
        assert!(text.contains("Tag=icrq_to_ip_up,3.000,0.400,"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unwritable_path_is_an_error() {
        let path = Path::new("/nonexistent-l2tpkit-dir/run.hlog");
        let err = HdrLog::create(path, SystemTime::now())
            .err()
            .expect("an error");
        assert!(matches!(err, HdrLogError::Io(_)), "{err}");
    }
}
