//! A probe run's results as a table, as JSON and as JUnit XML.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::xml::escape;

use super::{ProbeResult, VerdictKind};

/// Every probe's result, in catalog order, and the counts.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub target: String,
    pub cluster: bool,
    pub probes: Vec<ProbeResult>,
    pub totals: BTreeMap<VerdictKind, usize>,
}

impl ProbeReport {
    pub fn new(target: String, cluster: bool, probes: Vec<ProbeResult>) -> ProbeReport {
        let mut totals = BTreeMap::new();
        for kind in [
            VerdictKind::Pass,
            VerdictKind::Fail,
            VerdictKind::NotApplicable,
            VerdictKind::Inconclusive,
        ] {
            totals.insert(kind, 0);
        }
        for p in &probes {
            *totals.entry(p.verdict).or_default() += 1;
        }
        ProbeReport {
            target,
            cluster,
            probes,
            totals,
        }
    }

    pub fn count(&self, kind: VerdictKind) -> usize {
        self.totals.get(&kind).copied().unwrap_or(0)
    }

    /// Nothing failed and nothing was left undecided.
    pub fn all_passed(&self) -> bool {
        self.count(VerdictKind::Fail) == 0 && self.count(VerdictKind::Inconclusive) == 0
    }

    /// One line per probe: name, verdict, reference, and the reason when there is one.
    pub fn table(&self) -> String {
        let width = self
            .probes
            .iter()
            .map(|p| p.name.len())
            .max()
            .unwrap_or(4)
            .max(5);
        let refs = self
            .probes
            .iter()
            .map(|p| p.reference.chars().count())
            .max()
            .unwrap_or(6)
            .max(6);
        let mut out = format!(
            "probes against {}{}\n{:<width$}  {:<14}  {:<refs$}  why\n",
            self.target,
            if self.cluster { " (cluster)" } else { "" },
            "probe",
            "verdict",
            "checks"
        );
        for p in &self.probes {
            // Against a cluster a finding of an RFC probe is some endpoint's own: name it.
            let rfc_probe = p.scope != super::Scope::Cluster;
            let whose = match (
                self.cluster && rfc_probe,
                p.verdict,
                p.answered_by.is_empty(),
            ) {
                (true, VerdictKind::Fail | VerdictKind::Inconclusive, false) => {
                    format!(" [endpoint: {}]", p.answered_by.join(", "))
                }
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "{:<width$}  {:<14}  {:<refs$}  {}{whose}",
                p.name,
                p.verdict.as_str(),
                p.reference,
                p.reason.as_deref().unwrap_or("")
            );
        }
        let _ = write!(
            out,
            "{} passed, {} failed, {} not applicable, {} inconclusive",
            self.count(VerdictKind::Pass),
            self.count(VerdictKind::Fail),
            self.count(VerdictKind::NotApplicable),
            self.count(VerdictKind::Inconclusive)
        );
        out
    }

    /// JUnit XML: one testsuite, one testcase per probe. A fail is a `<failure>`, an
    /// inconclusive probe an `<error>`, a not-applicable one `<skipped>`; the evidence goes to
    /// `<system-out>`.
    pub fn junit(&self) -> String {
        let seconds: f64 = self.probes.iter().map(|p| p.duration_ms / 1000.0).sum();
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<testsuite name=\"l2tpkit probe {}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{seconds:.3}\">",
            escape(&self.target),
            self.probes.len(),
            self.count(VerdictKind::Fail),
            self.count(VerdictKind::Inconclusive),
            self.count(VerdictKind::NotApplicable),
        );
        for p in &self.probes {
            let _ = writeln!(
                out,
                "  <testcase classname=\"l2tpkit.probe\" name=\"{}\" time=\"{:.3}\">",
                escape(p.name),
                p.duration_ms / 1000.0
            );
            let reason = escape(p.reason.as_deref().unwrap_or(""));
            match p.verdict {
                VerdictKind::Pass => {}
                VerdictKind::Fail => {
                    let _ = writeln!(
                        out,
                        "    <failure message=\"{reason}\" type=\"{}\">{}: expects {}</failure>",
                        escape(p.reference),
                        escape(p.reference),
                        escape(p.expects)
                    );
                }
                VerdictKind::Inconclusive => {
                    let _ = writeln!(
                        out,
                        "    <error message=\"{reason}\" type=\"inconclusive\"/>"
                    );
                }
                VerdictKind::NotApplicable => {
                    let _ = writeln!(out, "    <skipped message=\"{reason}\"/>");
                }
            }
            let _ = writeln!(
                out,
                "    <system-out>{}</system-out>",
                escape(&p.evidence.join("\n"))
            );
            out.push_str("  </testcase>\n");
        }
        out.push_str("</testsuite>\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escapes_markup_and_control_characters() {
        assert_eq!(
            escape("a<b>&\"c'\u{1}"),
            "a&lt;b&gt;&amp;&quot;c&apos;\u{fffd}"
        );
    }

    fn result(name: &'static str, scope: super::super::Scope, verdict: VerdictKind) -> ProbeResult {
        ProbeResult {
            name,
            reference: "RFC 2661",
            sends: "",
            expects: "",
            scope,
            verdict,
            reason: Some("why".into()),
            evidence: Vec::new(),
            pcap: None,
            duration_ms: 1.0,
            answered_by: vec!["te2 at 198.18.0.2".into()],
        }
    }

    #[test]
    fn against_a_cluster_an_rfc_finding_names_the_endpoint_that_answered() {
        use super::super::Scope;
        let probes = vec![
            result("wrong-version", Scope::Any, VerdictKind::Fail),
            result("hello-answered", Scope::Any, VerdictKind::Pass),
            result("cluster-spread", Scope::Cluster, VerdictKind::Fail),
        ];
        let line = |table: &str, name: &str| {
            table
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap()
                .to_string()
        };
        let table = ProbeReport::new("198.18.0.1:1701".into(), true, probes.clone()).table();
        assert!(line(&table, "wrong-version").ends_with("why [endpoint: te2 at 198.18.0.2]"));
        assert!(
            line(&table, "hello-answered").ends_with("why"),
            "a pass names nobody"
        );
        assert!(
            line(&table, "cluster-spread").ends_with("why"),
            "the cluster's own finding"
        );
        let table = ProbeReport::new("198.18.0.11:1701".into(), false, probes).table();
        assert!(
            line(&table, "wrong-version").ends_with("why"),
            "one LNS: no name needed"
        );
    }
}
