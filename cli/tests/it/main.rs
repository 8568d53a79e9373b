//! The CLI's end-to-end tests, one binary: the tests of every module run side by side (most of
//! them wait on timers and peers, not on the CPU), and the workspace links one test binary here
//! instead of one per file. Each module is one area; `common` is what the lab tests share.
//! Run one area with a filter: `cargo test -p l2tpkit --test it probe_lab::`.

mod agent_bad_input;
mod any_source;
mod common;
mod endpoint_ppp;
mod endpoint_reports;
mod errors;
mod lab;
mod lab_claim;
mod lab_resilience;
mod lab_run;
mod lab_takeover;
mod lab_tui;
mod lab_xl2tpd_endpoints;
mod lac_control;
mod lac_endpoint_ppp;
mod lac_pacing;
mod lac_ppp;
mod probe;
mod probe_lab;
mod report;
mod secrets;
mod shards;
mod tui;
