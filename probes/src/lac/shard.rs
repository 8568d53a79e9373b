//! One agent's share of a load run that several agents carry together (`lac --shard I/N`):
//! a deterministic, disjoint split, so that N agents started with the same flags and the
//! shards 0 to N-1 do exactly what one LAC with those flags would do, and their outputs merge
//! (`l2tpkit merge`).
//!
//! Counts (tunnels, initiators, the outstanding cap) split into contiguous blocks, the first
//! shards taking the remainder, as the initiators of one LAC already share its tunnels. Tunnel
//! and Session ID spaces split into equal blocks. The rate splits in proportion to the tunnels,
//! so that every shard finishes its setups at the same time.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Range, RangeInclusive};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Shard `index` of `count` (from 0, as Kubernetes numbers an Indexed Job's completions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// The most agents one run is split among: every shard keeps at least 64 Tunnel IDs.
pub const MAX_SHARDS: u32 = 1024;

impl Shard {
    /// The whole run, unsplit.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// This shard's block of `0..total`: contiguous, the first `total % count` shards one
    /// longer. The blocks of shards 0 to count-1 tile `0..total`.
    pub fn block(self, total: u64) -> Range<u64> {
        let (count, index) = (u64::from(self.count), u64::from(self.index));
        let base = total / count;
        let extra = total % count;
        let start = index * base + index.min(extra);
        let len = base + u64::from(index < extra);
        start..start + len
    }

    /// This shard's part of `total` (the length of its [`block`](Shard::block)).
    pub fn share(self, total: u64) -> u64 {
        let block = self.block(total);
        block.end - block.start
    }

    /// This shard's block of the 16-bit ID space `1..=65535`.
    pub fn id_block(self) -> RangeInclusive<u16> {
        let block = self.block(u64::from(u16::MAX));
        // Inside 0..65535, so both ends fit after adding 1.
        let first = u16::try_from(block.start + 1).unwrap_or(u16::MAX);
        let last = u16::try_from(block.end).unwrap_or(u16::MAX);
        first..=last
    }

    /// `shard-I-of-N`: what file names carry.
    pub fn label(self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let (index, count) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: expected I/N, shard I (from 0) of N"))?;
        let index: u32 = (index.trim().parse())
            .map_err(|_| format!("{s:?}: the shard index {index:?} is not a number"))?;
        let count: u32 = (count.trim().parse())
            .map_err(|_| format!("{s:?}: the shard count {count:?} is not a number"))?;
        if count == 0 || count > MAX_SHARDS {
            return Err(format!("{s:?}: expected 1 to {MAX_SHARDS} shards"));
        }
        if index >= count {
            return Err(format!(
                "{s:?}: shards are numbered from 0, so I must be below N ({count})"
            ));
        }
        Ok(Shard { index, count })
    }
}

/// What a shard's JSON report says of the shard, for `merge` to check and line up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub index: u32,
    pub count: u32,
    /// The run's ID, the same in every shard of it (`--run-id`; the Kubernetes manifests pass
    /// the Job's UID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The flags that define the whole run (before the split), as given: shards of one run
    /// have the same.
    pub plan: BTreeMap<String, String>,
    /// Wall clock at the run's second 0, in microseconds since the Unix epoch: the per-second
    /// series and the interval logs of the shards line up by it.
    pub started_unix_us: u64,
    /// Run time of the shard's first SCCRQ, in milliseconds (the setup phase starts there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_sccrq_ms: Option<f64>,
    /// The shard's other outputs, by file name, in the JSON report's directory when they are
    /// there (else as given).
    #[serde(default)]
    pub files: ShardFiles,
}

/// The files a shard wrote besides its JSON report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardFiles {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_csv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hdr_log: Option<String>,
}

impl ShardInfo {
    pub fn shard(&self) -> Shard {
        Shard {
            index: self.index,
            count: self.count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(count: u32) -> impl Iterator<Item = Shard> {
        (0..count).map(move |index| Shard { index, count })
    }

    #[test]
    fn blocks_tile_the_whole_in_order() {
        for total in [0u64, 1, 3, 4, 5, 1000, 1001, 65_535] {
            for count in [1u32, 2, 3, 4, 7, 1024] {
                let mut next = 0;
                for shard in all(count) {
                    let block = shard.block(total);
                    assert_eq!(block.start, next, "{total} over {count}: {shard}");
                    assert!(block.end >= block.start);
                    // Even: no two shards differ by more than one.
                    assert!(shard.share(total) <= total / u64::from(count) + 1);
                    next = block.end;
                }
                assert_eq!(next, total, "{total} over {count}");
            }
        }
        // The first shards take the remainder, as the initiators of one LAC do.
        let shares: Vec<u64> = all(4).map(|s| s.share(10)).collect();
        assert_eq!(shares, vec![3, 3, 2, 2]);
    }

    #[test]
    fn id_blocks_are_disjoint_cover_the_space_and_never_hold_zero() {
        for count in [1u32, 2, 3, 4, 1024] {
            let mut next = 1u32;
            for shard in all(count) {
                let ids = shard.id_block();
                assert_eq!(u32::from(*ids.start()), next, "{shard}");
                assert!(ids.start() <= ids.end(), "{shard}: {ids:?}");
                assert!(*ids.start() >= 1);
                next = u32::from(*ids.end()) + 1;
            }
            assert_eq!(next, 65_536, "{count}");
        }
        assert_eq!(Shard::WHOLE.id_block(), 1..=65_535);
        assert_eq!(Shard { index: 1, count: 4 }.id_block(), 16_385..=32_768);
    }

    #[test]
    fn shards_parse_with_errors_that_say_what_is_wrong() {
        assert_eq!("2/4".parse(), Ok(Shard { index: 2, count: 4 }));
        assert_eq!("0/1".parse(), Ok(Shard::WHOLE));
        for (bad, says) in [
            ("4/4", "below N"),
            ("1/0", "1 to 1024"),
            ("0/2000", "1 to 1024"),
            ("x/4", "index \"x\""),
            ("1/y", "count \"y\""),
            ("3", "expected I/N"),
            ("-1/4", "index"),
        ] {
            let err = bad.parse::<Shard>().expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert_eq!(Shard { index: 2, count: 4 }.label(), "shard-2-of-4");
    }
}
