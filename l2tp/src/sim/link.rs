//! What a link does to one datagram: the conditions, and the draw that decides its fate.

use core::time::Duration;

use super::rng::SimRng;

/// How one direction between two nodes treats datagrams.
///
/// Probabilities are per datagram, in `[0, 1]`. A reordered datagram is held back by an extra
/// one to four times `delay`, so with `delay` zero reordering has no effect (jitter still mixes
/// arrivals on its own).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConditions {
    pub loss: f64,
    /// The copy travels independently: its own jitter and its own chance of being reordered.
    pub duplicate: f64,
    pub reorder: f64,
    pub delay: Duration,
    /// Added to `delay`, uniform in `[0, jitter]` at microsecond resolution.
    pub jitter: Duration,
}

impl Default for LinkConditions {
    /// A perfect link with 1 ms of one-way delay.
    fn default() -> LinkConditions {
        LinkConditions {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            delay: Duration::from_millis(1),
            jitter: Duration::ZERO,
        }
    }
}

impl LinkConditions {
    /// # Panics
    /// When a probability is outside `[0, 1]` or NaN: a typo in a test, better caught at once.
    pub(crate) fn validate(&self) {
        for (name, p) in [
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
        ] {
            assert!(
                (0.0..=1.0).contains(&p),
                "LinkConditions::{name} = {p} is not a probability"
            );
        }
    }
}

/// One copy of a datagram on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Arrival {
    pub(crate) delay: Duration,
    pub(crate) reordered: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    Lost,
    Arrives {
        first: Arrival,
        copy: Option<Arrival>,
    },
}

/// Decides a datagram's fate with exactly eight draws, in this order: loss, duplicate, then for
/// the original and for the copy each jitter, reorder, reorder extra.
///
/// The count never depends on the outcome, so the stream stays aligned with the send count:
/// changing one probability changes those decisions only, not every later datagram's.
pub(crate) fn draw(c: &LinkConditions, rng: &mut SimRng) -> Fate {
    let lost = rng.unit() < c.loss;
    let duplicated = rng.unit() < c.duplicate;
    let first = arrival(c, rng);
    let copy = arrival(c, rng);
    if lost {
        Fate::Lost
    } else {
        Fate::Arrives {
            first,
            copy: duplicated.then_some(copy),
        }
    }
}

fn arrival(c: &LinkConditions, rng: &mut SimRng) -> Arrival {
    let delay = micros(c.delay);
    let jitter = rng.up_to(micros(c.jitter));
    let reordered = rng.unit() < c.reorder;
    // Extra hold-back of 1x..4x the delay, in thousandths, so the total lands in 2x..5x.
    let factor_milli = 1000 + rng.up_to(3000);
    let extra = if reordered {
        (u128::from(delay) * u128::from(factor_milli) / 1000) as u64
    } else {
        0
    };
    let total = delay.saturating_add(jitter).saturating_add(extra);
    Arrival {
        delay: Duration::from_micros(total),
        reordered,
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_link_always_arrives_after_the_delay() {
        let mut rng = SimRng::new(3);
        let c = LinkConditions::default();
        for _ in 0..1000 {
            let plain = Arrival {
                delay: Duration::from_millis(1),
                reordered: false,
            };
            assert_eq!(
                draw(&c, &mut rng),
                Fate::Arrives {
                    first: plain,
                    copy: None
                }
            );
        }
    }

    #[test]
    fn certain_loss_and_duplication() {
        let mut rng = SimRng::new(3);
        let lossy = LinkConditions {
            loss: 1.0,
            ..Default::default()
        };
        assert_eq!(draw(&lossy, &mut rng), Fate::Lost);
        let doubling = LinkConditions {
            duplicate: 1.0,
            ..Default::default()
        };
        assert!(matches!(
            draw(&doubling, &mut rng),
            Fate::Arrives { copy: Some(_), .. }
        ));
    }

    #[test]
    fn reordered_delay_is_two_to_five_times() {
        let mut rng = SimRng::new(9);
        let c = LinkConditions {
            reorder: 1.0,
            delay: Duration::from_millis(10),
            ..Default::default()
        };
        for _ in 0..1000 {
            let Fate::Arrives { first, copy: None } = draw(&c, &mut rng) else {
                panic!()
            };
            assert!(first.reordered);
            assert!((Duration::from_millis(20)..=Duration::from_millis(50)).contains(&first.delay));
        }
    }

    #[test]
    fn draw_count_is_fixed() {
        // Same seed, different probabilities: the stream after one draw must be in the same place.
        let (mut a, mut b) = (SimRng::new(5), SimRng::new(5));
        draw(
            &LinkConditions {
                loss: 1.0,
                ..Default::default()
            },
            &mut a,
        );
        draw(
            &LinkConditions {
                duplicate: 1.0,
                reorder: 1.0,
                ..Default::default()
            },
            &mut b,
        );
        assert_eq!(a.next_u64(), b.next_u64());
    }

    #[test]
    #[should_panic(expected = "not a probability")]
    fn nan_probability_is_refused() {
        LinkConditions {
            loss: f64::NAN,
            ..Default::default()
        }
        .validate();
    }
}
