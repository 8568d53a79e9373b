//! Pacing of tunnel setups, shared by every initiator of a run.
//!
//! Two bounds hold at all times: the SCCRQs without an answer never exceed `max_outstanding`,
//! and the SCCRQs sent in any window of W seconds never exceed `rate × W + burst`. The target
//! rate is read from the run's [`LiveControl`] on every grant (a watcher may change it or pause
//! the run); during the ramp it grows linearly from 0 to that rate. Each initiator has its own
//! token bucket refilled at its fair share (the rate divided by the initiators still opening
//! tunnels) and may hold at most its fair share of the outstanding SCCRQs, so one initiator
//! that wakes first cannot starve the others.
//!
//! Sans-IO like the nodes: every call takes `now` (run time, shared by the initiators).

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use l2tp::time::Instant;

use crate::live::LiveControl;

/// A bucket holds at most this much of its rate in tokens (and at least two, so that a wake-up
/// a little late for its token loses nothing): what a late wake-up may catch up on at once.
pub const BURST_WINDOW: Duration = Duration::from_millis(20);

/// While tokens are short or the run is paused, initiators look again at least this often, so
/// a changed rate, a pause or a stop takes effect within it.
pub const RECHECK: Duration = Duration::from_millis(50);

/// When the outstanding cap is what holds an initiator back, it looks again this soon: another
/// initiator's answer may have freed room.
pub const OUTSTANDING_RECHECK: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, PartialEq)]
pub struct PaceConfig {
    /// SCCRQs without an answer, over all initiators.
    pub max_outstanding: usize,
    /// The rate grows linearly from 0 to the target over this long (zero: at once).
    pub ramp: Duration,
    /// Initiators that share the rate and the outstanding cap.
    pub initiators: usize,
}

/// One initiator's share of the pace.
#[derive(Debug, Clone, Default)]
pub struct Bucket {
    tokens: f64,
    last: Option<Instant>,
    /// This initiator's SCCRQs without an answer.
    outstanding: usize,
}

impl Bucket {
    /// The bucket of initiator `index` of `initiators`: it starts `(index + 1) / initiators`
    /// full, so the initiators' first tokens come one after the other over one token's time.
    /// Empty buckets would fill together and fire all at once: at 10 setups/s over 50
    /// initiators, nothing for 5 s and then 50 SCCRQs in one burst.
    pub fn staggered(index: usize, initiators: usize) -> Bucket {
        let of = initiators.max(1);
        Bucket {
            tokens: (index % of + 1) as f64 / of as f64,
            ..Bucket::default()
        }
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding
    }
}

/// What [`Pace::grant`] allows and when to ask again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// SCCRQs that may go now.
    pub count: usize,
    /// Ask again at this time if there is more to send (`None`: nothing holds it back but the
    /// caller's own demand).
    pub retry_at: Option<Instant>,
}

/// The shared side: the cap, the ramp, the control, the outstanding count.
#[derive(Debug)]
pub struct Pace {
    config: PaceConfig,
    control: Arc<LiveControl>,
    /// Initiators that still have tunnels to open.
    opening: Cell<usize>,
    outstanding: Cell<usize>,
    outstanding_max: Cell<usize>,
    /// Highest outstanding since the last [`Pace::take_outstanding_peak`].
    outstanding_peak: Cell<usize>,
}

impl Pace {
    pub fn new(config: PaceConfig, control: Arc<LiveControl>) -> Pace {
        let opening = config.initiators.max(1);
        Pace {
            config: PaceConfig {
                max_outstanding: config.max_outstanding.max(1),
                ..config
            },
            control,
            opening: Cell::new(opening),
            outstanding: Cell::new(0),
            outstanding_max: Cell::new(0),
            outstanding_peak: Cell::new(0),
        }
    }

    pub fn config(&self) -> &PaceConfig {
        &self.config
    }

    pub fn control(&self) -> &LiveControl {
        &self.control
    }

    /// The target rate now (setups/s; 0: unpaced), the ramp applied.
    pub fn target_rate(&self, now: Instant) -> f64 {
        let rate = self.control.rate();
        let ramp = self.config.ramp;
        if ramp.is_zero() || rate <= 0.0 {
            return rate;
        }
        let into = Duration::from_micros(now.as_micros()).as_secs_f64();
        rate * (into / ramp.as_secs_f64()).clamp(0.0, 1.0)
    }

    /// The most tokens one initiator's bucket holds at `share` setups/s.
    pub fn burst(share: f64) -> f64 {
        (share * BURST_WINDOW.as_secs_f64()).max(2.0)
    }

    /// How far above `rate × seconds` the SCCRQs of all initiators in a window can go: each
    /// bucket's capacity, summed.
    pub fn burst_bound(&self, rate: f64) -> f64 {
        let initiators = self.config.initiators.max(1) as f64;
        Self::burst(rate / initiators) * initiators
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.get()
    }

    /// The most SCCRQs ever without an answer at once.
    pub fn outstanding_max(&self) -> usize {
        self.outstanding_max.get()
    }

    /// The highest outstanding since the last call (at least the current one).
    pub fn take_outstanding_peak(&self) -> usize {
        self.outstanding_peak.replace(self.outstanding.get())
    }

    /// An initiator has opened all its tunnels (or stopped): the others share its part.
    pub fn done_opening(&self) {
        self.opening.set(self.opening.get().saturating_sub(1));
    }

    /// Up to `want` SCCRQs may go now; take them with [`Pace::sent`].
    pub fn grant(&self, bucket: &mut Bucket, now: Instant, want: usize) -> Grant {
        let since = bucket
            .last
            .map_or(Duration::ZERO, |last| now.saturating_duration_since(last));
        bucket.last = Some(now);
        if want == 0 {
            return Grant {
                count: 0,
                retry_at: None,
            };
        }
        if self.control.paused() {
            bucket.tokens = 0.0;
            return Grant {
                count: 0,
                retry_at: Some(now + RECHECK),
            };
        }
        let opening = self.opening.get().max(1);
        let cap = self.config.max_outstanding;
        let fair = cap.div_ceil(opening);
        let room = cap
            .saturating_sub(self.outstanding.get())
            .min(fair.saturating_sub(bucket.outstanding));
        let rate = self.target_rate(now);
        let (paced, token_wait) = if self.control.rate() <= 0.0 {
            (want, None)
        } else {
            let share = rate / opening as f64;
            bucket.tokens = (bucket.tokens + share * since.as_secs_f64()).min(Self::burst(share));
            let whole = bucket.tokens.floor().max(0.0);
            // Whole tokens only; a float never exceeds usize::MAX here (capped by the burst).
            let paced = (whole as usize).min(want);
            let wait = if share > 0.0 {
                Duration::from_secs_f64(((1.0 - bucket.tokens.fract()) / share).min(1.0))
            } else {
                RECHECK
            };
            (paced, Some(wait.clamp(OUTSTANDING_RECHECK, RECHECK)))
        };
        let count = paced.min(room);
        if token_wait.is_some() {
            bucket.tokens -= count as f64;
        }
        let retry_at = if count == want {
            None
        } else if count < paced {
            // The outstanding cap holds it back.
            Some(now + OUTSTANDING_RECHECK)
        } else {
            token_wait.map(|wait| now + wait)
        };
        Grant { count, retry_at }
    }

    /// `count` SCCRQs went out.
    pub fn sent(&self, bucket: &mut Bucket, count: usize) {
        bucket.outstanding += count;
        let outstanding = self.outstanding.get() + count;
        self.outstanding.set(outstanding);
        self.outstanding_max
            .set(self.outstanding_max.get().max(outstanding));
        self.outstanding_peak
            .set(self.outstanding_peak.get().max(outstanding));
    }

    /// One SCCRQ was answered (SCCRP), refused or given up on.
    pub fn answered(&self, bucket: &mut Bucket) {
        bucket.outstanding = bucket.outstanding.saturating_sub(1);
        self.outstanding
            .set(self.outstanding.get().saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace(rate: f64, max_outstanding: usize, ramp: Duration, initiators: usize) -> Pace {
        let control = Arc::new(LiveControl::default());
        control.set_rate(rate);
        Pace::new(
            PaceConfig {
                max_outstanding,
                ramp,
                initiators,
            },
            control,
        )
    }

    /// Initiators that wake at their own retry times (and in between, on pseudo-random
    /// "answers"), each always wanting more; the answers come `rtt` after each SCCRQ.
    fn simulate(pace: &Pace, initiators: usize, until: Duration, rtt: Duration) -> Vec<Instant> {
        let mut buckets: Vec<Bucket> = (0..initiators)
            .map(|i| Bucket::staggered(i, initiators))
            .collect();
        let mut wake = vec![Instant::ZERO; initiators];
        let mut answers: Vec<(Instant, usize)> = Vec::new();
        let mut sent = Vec::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let end = Instant::ZERO + until;
        loop {
            let next_wake = wake.iter().copied().min().unwrap_or(end);
            let next_answer = answers.iter().map(|(at, _)| *at).min();
            let now = next_answer.map_or(next_wake, |a| a.min(next_wake));
            if now >= end {
                break;
            }
            let mut i = 0;
            while i < answers.len() {
                if answers[i].0 <= now {
                    let (_, who) = answers.swap_remove(i);
                    pace.answered(&mut buckets[who]);
                    // An answer wakes its initiator.
                    wake[who] = now;
                } else {
                    i += 1;
                }
            }
            for who in 0..initiators {
                if wake[who] > now {
                    continue;
                }
                let grant = pace.grant(&mut buckets[who], now, 1000);
                pace.sent(&mut buckets[who], grant.count);
                for _ in 0..grant.count {
                    sent.push(now);
                    answers.push((now + rtt, who));
                }
                assert!(pace.outstanding() <= pace.config().max_outstanding);
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Late wake-ups, as a busy runtime delivers them.
                let jitter = Duration::from_micros(x % 3000);
                wake[who] = grant.retry_at.unwrap_or(now + RECHECK) + jitter;
            }
        }
        sent
    }

    fn most_in_any_second(sent: &[Instant]) -> usize {
        let mut most = 0;
        let mut start = 0;
        for (end, at) in sent.iter().enumerate() {
            while at.saturating_duration_since(sent[start]) >= Duration::from_secs(1) {
                start += 1;
            }
            most = most.max(end + 1 - start);
        }
        most
    }

    #[test]
    fn no_window_of_a_second_exceeds_rate_plus_burst() {
        for initiators in [1, 3, 20] {
            let pace = pace(200.0, 10_000, Duration::ZERO, initiators);
            let sent = simulate(
                &pace,
                initiators,
                Duration::from_secs(5),
                Duration::from_millis(1),
            );
            let bound = 200.0 + pace.burst_bound(200.0);
            let most = most_in_any_second(&sent);
            assert!(most as f64 <= bound, "{initiators}: {most} > {bound}");
            // And the pace is kept, not just bounded: 5 s at 200/s minus a wake-up's slack.
            assert!(sent.len() >= 900, "{initiators}: only {}", sent.len());
        }
    }

    #[test]
    fn many_initiators_at_a_low_rate_start_evenly_not_in_one_burst() {
        // 50 initiators sharing 10 setups/s: 0.2/s each, a token every 5 s.
        let pace = pace(10.0, 10_000, Duration::ZERO, 50);
        let sent = simulate(&pace, 50, Duration::from_secs(5), Duration::from_millis(1));
        for second in 0..5u64 {
            let from = Instant::ZERO + Duration::from_secs(second);
            let to = from + Duration::from_secs(1);
            let n = sent.iter().filter(|t| **t >= from && **t < to).count();
            assert!((8..=12).contains(&n), "second {second}: {n} SCCRQs");
        }
    }

    #[test]
    fn outstanding_never_exceeds_the_cap() {
        let pace = pace(0.0, 7, Duration::ZERO, 3);
        let sent = simulate(&pace, 3, Duration::from_secs(1), Duration::from_millis(10));
        assert!(pace.outstanding_max() <= 7, "{}", pace.outstanding_max());
        assert_eq!(pace.outstanding_max(), 7);
        assert!(!sent.is_empty());
    }

    #[test]
    fn outstanding_is_shared_fairly() {
        let pace = pace(0.0, 10, Duration::ZERO, 2);
        let mut a = Bucket::default();
        let mut b = Bucket::default();
        let first = pace.grant(&mut a, Instant::ZERO, 100);
        pace.sent(&mut a, first.count);
        assert_eq!(first.count, 5);
        let second = pace.grant(&mut b, Instant::ZERO, 100);
        assert_eq!(second.count, 5);
    }

    #[test]
    fn the_ramp_starts_near_zero_and_reaches_the_rate() {
        let pace = pace(1000.0, 100_000, Duration::from_secs(2), 1);
        assert_eq!(pace.target_rate(Instant::ZERO), 0.0);
        let half = pace.target_rate(Instant::ZERO + Duration::from_secs(1));
        assert!((half - 500.0).abs() < 1e-6, "{half}");
        assert_eq!(
            pace.target_rate(Instant::ZERO + Duration::from_secs(3)),
            1000.0
        );
        let sent = simulate(&pace, 1, Duration::from_secs(2), Duration::from_millis(1));
        // Integral of the ramp over 2 s is 1000 setups; the first second holds a quarter.
        let first_second = sent.iter().filter(|at| at.as_micros() < 1_000_000).count();
        assert!(first_second <= 250 + 20, "{first_second}");
    }

    #[test]
    fn paused_sends_nothing_and_a_new_rate_applies() {
        let pace = pace(100.0, 1000, Duration::ZERO, 1);
        let mut bucket = Bucket::default();
        pace.control().set_paused(true);
        let mut t = Instant::ZERO;
        for _ in 0..100 {
            t += Duration::from_millis(10);
            assert_eq!(pace.grant(&mut bucket, t, 10).count, 0);
        }
        pace.control().set_paused(false);
        pace.control().set_rate(1000.0);
        let mut sent = 0;
        for _ in 0..100 {
            t += Duration::from_millis(10);
            let grant = pace.grant(&mut bucket, t, 1000);
            pace.sent(&mut bucket, grant.count);
            sent += grant.count;
            for _ in 0..grant.count {
                pace.answered(&mut bucket);
            }
        }
        assert!((990..=1021).contains(&sent), "{sent}");
    }
}
