//! The catalog: every probe, in the order they run. Each file holds one family and exports its
//! `PROBES`; [`RUN_ORDER`] says when each runs; names are unique across the catalog (a test
//! checks).

use super::Probe;

pub mod auth;
pub mod avps;
pub mod cluster;
pub mod header;
pub mod lifecycle;
pub mod ports;
pub mod ppp;
pub mod reliable;
pub mod session;
pub mod tunnel_ids;

mod sccrq;
#[cfg(test)]
pub(crate) mod sim_lns;

/// The families, each a slice of probes.
const FAMILIES: &[&[Probe]] = &[
    lifecycle::PROBES,
    ports::PROBES,
    avps::PROBES,
    header::PROBES,
    auth::PROBES,
    tunnel_ids::PROBES,
    reliable::PROBES,
    session::PROBES,
    ppp::PROBES,
    cluster::PROBES,
];

/// The run order users' reports show (and snapshots keep). Tunnel-level probes interleave
/// across families as they always ran; a probe that is not named here does not run (a test
/// checks every probe is named exactly once). The [`HEAVY`] probes run last: an LNS still
/// tearing their tunnels down answered the probes after them late or not at all (xl2tpd lost
/// an SCCRP and ignored its retransmissions).
pub const RUN_ORDER: &[&str] = &[
    "establishment",
    "stopccn-cleans-up",
    "sccrq-from-any-source-port",
    "sccrq-missing-protocol-version",
    "sccrq-missing-host-name",
    "sccrq-missing-framing-capabilities",
    "sccrq-missing-assigned-tunnel-id",
    "unknown-mandatory-avp-vendor0",
    "unknown-mandatory-avp-vendor",
    "unknown-optional-avp-ignored",
    "reserved-bits-set",
    "avp-reserved-bits-set",
    "wrong-version",
    "wrong-length",
    "hello-answered",
    "tie-breaker",
    "challenge-right-secret",
    "challenge-wrong-secret",
    "hidden-avps-accepted",
    "bad-udp-checksum-discarded",
    "out-of-order-ns-in-window",
    "duplicate-ns-reacked",
    "receive-window-respected",
    "retransmission-schedule-and-give-up",
    "session-lifecycle",
    "cdn-wrong-session-id",
    "data-plane-echo",
    "ppp-lcp-negotiation",
    "ppp-magic-loopback",
    "ppp-wrong-password",
    "ppp-chap-stale-identifier",
    "ppp-ipcp-unique",
    "ppp-lcp-echo",
    "ppp-state-cleaned-after-cdn",
    "cluster-spread",
    "cluster-retransmitted-sccrq",
    "cluster-sccrp-address-reported",
    "cluster-every-endpoint-reachable",
    "cluster-nat-no-open-relay",
    "session-id-uniqueness",
    "tunnel-id-uniqueness",
];

/// The probes that load the target: what each holds open at once. They run last, and close
/// everything they opened; `--list` marks them.
pub const HEAVY: &[(&str, &str)] = &[
    ("session-id-uniqueness", "1500 calls on one tunnel"),
    ("tunnel-id-uniqueness", "--live-tunnels tunnels (5000)"),
];

/// What a heavy probe holds open at once; `None` for the others.
pub fn heavy(name: &str) -> Option<&'static str> {
    HEAVY
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, what)| *what)
}

/// The probe of that name.
pub fn by_name(name: &str) -> Option<&'static Probe> {
    FAMILIES
        .iter()
        .flat_map(|family| family.iter())
        .find(|p| p.name == name)
}

/// Every probe, in run order.
pub fn all() -> Vec<&'static Probe> {
    RUN_ORDER.iter().filter_map(|name| by_name(name)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_kebab_case_and_every_probe_says_what_it_checks() {
        let all = super::all();
        let mut names: Vec<&str> = all.iter().map(|p| p.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "duplicate probe names");
        for p in &all {
            assert!(
                p.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{}",
                p.name
            );
            assert!(!p.reference.is_empty() && !p.sends.is_empty() && !p.expects.is_empty());
        }
    }

    #[test]
    fn the_heavy_probes_exist_and_run_last() {
        let n = HEAVY.len();
        let last: Vec<&str> = RUN_ORDER[RUN_ORDER.len() - n..].to_vec();
        let heavy: Vec<&str> = HEAVY.iter().map(|(name, _)| *name).collect();
        assert_eq!(last, heavy);
        assert!(heavy.iter().all(|name| by_name(name).is_some()));
        assert!(super::heavy("tunnel-id-uniqueness").is_some());
        assert!(super::heavy("establishment").is_none());
    }

    #[test]
    fn every_probe_of_every_family_runs_once() {
        let defined: usize = FAMILIES.iter().map(|f| f.len()).sum();
        assert_eq!(
            all().len(),
            RUN_ORDER.len(),
            "a name in RUN_ORDER has no probe"
        );
        assert_eq!(
            defined,
            RUN_ORDER.len(),
            "a probe is missing from RUN_ORDER"
        );
        for family in FAMILIES {
            for p in family.iter() {
                assert_eq!(
                    RUN_ORDER.iter().filter(|n| **n == p.name).count(),
                    1,
                    "{}",
                    p.name
                );
            }
        }
    }
}
