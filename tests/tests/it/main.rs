//! End-to-end tests against real peers and captures, one binary: the modules' tests run side by
//! side (they wait on xl2tpd, l2tpns and timers more than on the CPU), and one binary is linked
//! instead of one per file. Run one area with a filter: `cargo test -p l2tpkit-tests --test it
//! lac_l2tpns::`.

mod cluster_loopback;
mod decode_snapshots;
mod deploy;
mod fuzz_corpus;
mod interop_xl2tpd;
mod l2tpns_harness;
mod lab_l2tpns_cluster;
mod lab_xl2tpd;
mod lab_xl2tpd_cluster;
mod lac_l2tpns;
mod least_load;
mod ppp_tshark;
mod probe_l2tpns;
mod probe_sim;
mod probe_xl2tpd;
mod probe_xl2tpd_cluster;
mod prometheus;
mod tshark_agreement;
mod xl2tpd_harness;
