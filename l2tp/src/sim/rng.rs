//! The simulator's random source: xoshiro256** seeded through SplitMix64.
//!
//! Written out here rather than taken from `rand` because `StdRng` promises no stability across
//! releases, and simulator traces are snapshotted: a seed must replay the same run forever.

use crate::seed::splitmix64;

pub(crate) struct SimRng {
    s: [u64; 4],
}

impl SimRng {
    pub(crate) fn new(seed: u64) -> SimRng {
        // SplitMix64 spreads any seed (0 included) over the state, which must not be all zero.
        let mut sm = seed;
        let mut s = [0; 4];
        for word in &mut s {
            *word = splitmix64(&mut sm);
        }
        SimRng { s }
    }

    #[cfg(test)]
    fn from_state(s: [u64; 4]) -> SimRng {
        SimRng { s }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)`, from the top 53 bits (all an f64 mantissa holds).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[0, n]`, by widening multiply (no modulo bias worth the name, no loop).
    pub(crate) fn up_to(&mut self, n: u64) -> u64 {
        let span = u128::from(n) + 1;
        ((u128::from(self.next_u64()) * span) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_reference() {
        let mut state = 0;
        assert_eq!(splitmix64(&mut state), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(&mut state), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn xoshiro256starstar_matches_reference() {
        let mut rng = SimRng::from_state([1, 2, 3, 4]);
        let got: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
        assert_eq!(got, [11520, 0, 1509978240, 1215971899390074240]);
    }

    #[test]
    fn draws_stay_in_range() {
        let mut rng = SimRng::new(1);
        for _ in 0..10_000 {
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
            assert!(rng.up_to(3) <= 3);
            assert_eq!(rng.up_to(0), 0);
        }
        assert!((0..1000).any(|_| rng.up_to(u64::MAX) > u64::MAX / 2));
    }
}
