//! `cargo +nightly fuzz run ppp`: see ppp_harness.rs for what the input means and what is
//! checked.
#![no_main]

#[allow(dead_code)]
#[path = "../ppp_harness.rs"]
mod ppp_harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ppp_harness::ppp(data);
});
