//! A warning worth logging once is not worth logging for every packet of a flood.

use core::time::Duration;

use l2tp::time::Instant;

/// The most often a full table or a flood is warned about: once per this, per kind.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// Lets one event through per [`WARN_EVERY`] of virtual time, and counts the ones it held back
/// so the next warning can say how many there were.
#[derive(Debug, Clone, Default)]
pub struct Throttle {
    next: Option<Instant>,
    held: u64,
}

impl Throttle {
    /// `Some(events held back since the last one let through)` when this one may be logged.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.next.is_some_and(|next| now < next) {
            self.held = self.held.saturating_add(1);
            return None;
        }
        self.next = Some(now + WARN_EVERY);
        Some(std::mem::take(&mut self.held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_interval_and_a_count_of_the_rest() {
        let mut throttle = Throttle::default();
        let at = |ms: u64| Instant::from_micros(ms * 1000);
        assert_eq!(throttle.allow(at(0)), Some(0));
        assert_eq!(throttle.allow(at(1)), None);
        assert_eq!(throttle.allow(at(9_999)), None);
        assert_eq!(throttle.allow(at(10_000)), Some(2));
        assert_eq!(throttle.allow(at(10_001)), None);
        assert_eq!(throttle.allow(at(30_000)), Some(1));
    }
}
