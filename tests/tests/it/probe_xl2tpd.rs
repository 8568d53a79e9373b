//! The probe catalog against xl2tpd as LNS (with a tunnel secret and challenges), in process: every probe comes to a judgement (pass,
//! fail or not applicable; none inconclusive), and the table of verdicts is snapshotted, so a
//! change in what we say about a real peer shows up in review.

use std::net::SocketAddrV4;
use std::time::Duration;

use l2tpkit_tests::xl2tpd::{self, loopback_pair, Xl2tpd, Xl2tpdEnd, Xl2tpdOptions};
use probes::probe::report::ProbeReport;
use probes::probe::{catalog, run_one, Target, VerdictKind};

/// xl2tpd's tunnel secret (with `challenge = yes`), given to the probes too, so the Challenge
/// and hidden-AVP probes apply.
const SECRET: &str = "probe-secret";

/// `name  verdict  reason`, one line per probe, with the addresses and the numbers that vary
/// between runs (ports, tunnel and session IDs) replaced.
fn table(report: &ProbeReport, lns: SocketAddrV4, lac: std::net::Ipv4Addr) -> String {
    let width = report
        .probes
        .iter()
        .map(|p| p.name.len())
        .max()
        .unwrap_or(0);
    let mut lines = Vec::new();
    for p in &report.probes {
        let reason = p
            .reason
            .as_deref()
            .map(|r| normalise(r, lns, lac))
            .unwrap_or_default();
        lines.push(
            format!("{:<width$}  {:<14}  {reason}", p.name, p.verdict.as_str())
                .trim_end()
                .to_string(),
        );
    }
    lines.join("\n")
}

/// Addresses become LNS / LAC; every other number (ports, IDs, counts, which of our tunnels
/// collided) becomes `#`, except in section references (§5.8) and in words (L2TPv2).
fn normalise(text: &str, lns: SocketAddrV4, lac: std::net::Ipv4Addr) -> String {
    let text = text
        .replace(&lns.to_string(), "LNS")
        .replace(&lns.ip().to_string(), "LNS")
        .replace(&lac.to_string(), "LAC");
    let mut out = String::with_capacity(text.len());
    // Inside a section reference or a word: digits stay.
    let mut keep = false;
    let mut in_number = false;
    for c in text.chars() {
        if c == '§' || c.is_alphabetic() {
            keep = true;
        } else if !(c.is_ascii_digit() || (keep && c == '.')) {
            keep = false;
        }
        if c.is_ascii_digit() && !keep {
            if !in_number {
                out.push('#');
            }
            in_number = true;
            continue;
        }
        in_number = false;
        out.push(c);
    }
    out
}

#[test]
fn every_probe_judges_xl2tpd_and_the_table_is_snapshotted() {
    if !xl2tpd::available() {
        return;
    }
    let (lns_ip, lac_ip) = loopback_pair("probe_xl2tpd");
    let options = Xl2tpdOptions {
        secret: Some(SECRET.to_string()),
        challenge: true,
        ..Xl2tpdOptions::on(lns_ip)
    };
    let lns = Xl2tpd::start(Xl2tpdEnd::Lns, &options).expect("start xl2tpd LNS");
    let mut target = Target::new(lns.addr());
    target.secret = Some(SECRET.as_bytes().to_vec());
    // Every probe from port 1701, as `probe --bind LAC:1701` (RFC 2661 §8.1).
    target.bind = std::net::SocketAddrV4::new(lac_ip, 1701);
    target.reply_timeout = Duration::from_secs(2);
    let results: Vec<_> = catalog::all()
        .into_iter()
        .map(|probe| run_one(probe, &target, None))
        .collect();
    let report = ProbeReport::new(target.addr.to_string(), false, results);
    let log = lns.stop();
    eprintln!("{}", report.table());
    for p in &report.probes {
        assert_ne!(
            p.verdict,
            VerdictKind::Inconclusive,
            "{} was inconclusive against xl2tpd: {:?}\nevidence:\n{}\nxl2tpd log (tail):\n{}",
            p.name,
            p.reason,
            p.evidence.join("\n"),
            log.lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert_eq!(
        report.probes.len(),
        catalog::all().len(),
        "one result per probe"
    );
    let table = table(&report, target.addr, lac_ip);
    insta::with_settings!({
        snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/../snapshots"),
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!("probe-xl2tpd-table", table);
    });
}

#[test]
fn normalise_replaces_addresses_and_long_numbers() {
    let lns: SocketAddrV4 = "127.66.3.4:1701".parse().unwrap();
    let lac = "127.66.3.5".parse().unwrap();
    assert_eq!(
        normalise(
            "127.66.3.4:1701 sent an L2TPv2 StopCCN 2/6 (T=34567) to 127.66.3.5 (§5.8).",
            lns,
            lac
        ),
        "LNS sent an L2TPv2 StopCCN #/# (T=#) to LAC (§5.8)."
    );
}
