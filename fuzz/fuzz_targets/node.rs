//! `cargo +nightly fuzz run node`: see harness.rs for what the input means and what is checked.
#![no_main]

#[allow(dead_code)]
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::node(data);
});
