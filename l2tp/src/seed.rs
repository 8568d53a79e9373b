//! Seeded randomness for the sans-IO core: it has no entropy source of its own, so every magic
//! number, identifier and simulated loss comes from a seed the caller gives.

/// One splitmix64 step (Steele, Lea and Flood 2014): advances `state` and returns the next
/// well-mixed 64 bits.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
