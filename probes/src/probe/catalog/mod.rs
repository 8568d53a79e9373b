//! The catalog: every probe, in the order they run. Each file holds one family and exports its
//! `PROBES`; names are unique across the catalog (a test checks).

use super::Probe;

pub mod cluster;
pub mod reliable;
pub mod session;
pub mod tunnel;

/// Every probe, in run order.
pub fn all() -> Vec<&'static Probe> {
    tunnel::PROBES
        .iter()
        .chain(reliable::PROBES)
        .chain(session::PROBES)
        .chain(cluster::PROBES)
        .collect()
}

#[cfg(test)]
mod tests {
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
}
