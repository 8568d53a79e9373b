//! Captures into observations: the one place the checker's input meets files.

use std::io::Read;

use l2tp::capture::{CaptureError, CaptureReader, RecordKind};
use l2tp::wire::message::ParseOptions;

use super::observation::{Observation, Origin};

/// What reading one capture skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadCounts {
    /// L2TP messages read into observations.
    pub l2tp: u64,
    /// Datagrams on the L2TP port that did not parse as L2TPv2.
    pub malformed: u64,
    /// UDP on other ports, IP fragments, other protocols.
    pub skipped: u64,
}

/// Appends the L2TP messages of one capture (UDP with `port` on either side) to `out`, each
/// marked with `capture` as its origin.
pub fn read_capture<R: Read>(
    reader: &mut CaptureReader<R>,
    capture: usize,
    port: u16,
    options: &ParseOptions,
    out: &mut Vec<Observation>,
) -> Result<ReadCounts, CaptureError> {
    let mut counts = ReadCounts::default();
    while let Some(record) = reader.next_datagram() {
        let record = record?;
        let RecordKind::Udp(datagram) = record.kind else {
            counts.skipped += 1;
            continue;
        };
        if datagram.src.port() != port && datagram.dst.port() != port {
            counts.skipped += 1;
            continue;
        }
        match Observation::decode(
            record.timestamp,
            datagram.src,
            datagram.dst,
            datagram.payload,
            options,
        ) {
            Ok(observation) => {
                counts.l2tp += 1;
                out.push(observation.with_origin(Origin {
                    capture,
                    record: record.index,
                }));
            }
            Err(_) => counts.malformed += 1,
        }
    }
    Ok(counts)
}
