//! `l2tpkit report`: one self-contained HTML page of a run, from a run dir made here (a
//! summary, the LAC's JSON and CSV, crafted FIG 3 captures with one wrong rewrite): every
//! section there, nothing fetched from anywhere, the deviating tunnel's ladder in red; and a
//! run dir with missing and cut files gives a report that says so.

use std::path::{Path, PathBuf};

use probes::sequence::craft::{self, Fault, Plan};
use probes::sequence::Variant;

use crate::common::{l2tpkit, Scratch};

fn lac_json() -> serde_json::Value {
    let p = |n: u64, base: f64| {
        serde_json::json!({"count": n, "p50_ms": base, "p90_ms": base * 2.0,
            "p99_ms": base * 4.0, "p999_ms": base * 8.0, "max_ms": base * 9.0})
    };
    serde_json::json!({
        "target": "198.18.0.1:1701", "tunnels_requested": 6, "tunnels_established": 6,
        "tunnels_failed": 0, "sessions_requested": 6, "sessions_established": 6,
        "sessions_failed": 0, "sessions_ip_up": 6, "retransmissions": 1,
        "sccrq_to_sccrp": p(6, 1.5), "tunnel_setup": p(6, 2.5), "session_setup": p(6, 1.0),
        "echo_rtt": p(0, 0.0), "icrq_to_ip_up": p(6, 7.0), "failures": {}
    })
}

/// A run dir as `lab run` leaves it (the parts `report` reads).
fn run_dir(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let run = craft::craft(Plan::new(Variant::Fig3).with_fault(4, Fault::NatKeepsLanSource));
    run.write_pcaps(&dir.join("public.pcap"), &dir.join("lan.pcap"))
        .unwrap();
    let summary = serde_json::json!({
        "topology": "fig2", "run_dir": dir.display().to_string(), "lac": lac_json(),
        "lac_success": true, "stopped_by_user": false, "netem": null, "impair": null,
        "verify_tunnels": 6, "verify_conforming": 5, "verify_variants": ["fig3"],
        "endpoints": [
            {"name": "te1", "dispatched": 2, "share_percent": 33.3, "conforming_tunnels": 2},
            {"name": "te2", "dispatched": 2, "share_percent": 33.3, "conforming_tunnels": 1},
            {"name": "te3", "dispatched": 2, "share_percent": 33.3, "conforming_tunnels": 2}
        ]
    });
    std::fs::write(dir.join("summary.json"), summary.to_string()).unwrap();
    std::fs::write(dir.join("lac.json"), lac_json().to_string()).unwrap();
    let mut csv = String::from(
        "second,phase,target_rate,tunnels_started,tunnels_up,tunnels_established,\
         tunnels_failed,sessions_up,sessions_established,sessions_failed,started_this_second,\
         setups_this_second,retransmissions,ip_up_this_second\n",
    );
    for s in 0..4u64 {
        let up = (s * 2).min(6);
        csv.push_str(&format!(
            "{s},holding,0,{up},{up},{up},0,{up},{up},0,2,2,{},2\n",
            s.min(1)
        ));
    }
    std::fs::write(dir.join("lac.csv"), csv).unwrap();
    let mut per_endpoint = String::from(
        "second,endpoint,tunnels_up,sessions_up,tunnels_established,setups_this_second\n",
    );
    for s in 0..4u64 {
        for e in ["te1", "te2", "te3"] {
            let up = s.min(2);
            per_endpoint.push_str(&format!("{s},{e},{up},{up},{up},1\n"));
        }
    }
    std::fs::write(dir.join("lac-endpoints.csv"), per_endpoint).unwrap();
}

fn svgs(doc: &roxmltree::Document<'_>) -> Vec<String> {
    doc.descendants()
        .filter(|n| n.tag_name().name() == "svg")
        .map(|n| {
            n.descendants()
                .filter_map(|t| t.text())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[test]
fn a_run_dir_becomes_one_self_contained_page() {
    let scratch =
        Scratch::new(std::env::temp_dir().join(format!("l2tpkit-report-{}", std::process::id())));
    let dir = scratch.0.join("run");
    run_dir(&dir);
    let (code, stdout, stderr) = l2tpkit(&["report", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let path = PathBuf::from(stdout.trim());
    assert_eq!(path, dir.join("report.html"));
    let html = std::fs::read_to_string(&path).unwrap();
    // Self-contained: no script, no stylesheet or font from elsewhere, no address but the
    // namespaces'.
    for needle in ["<script", "<link", "@import", "<img", "<iframe"] {
        assert!(!html.contains(needle), "{needle} in the report");
    }
    // url() only for the ladders' own arrowheads.
    assert!(html.matches("url(").count() == html.matches("url(#").count());
    let stripped = html
        .replace("http://www.w3.org/2000/svg", "")
        .replace("http://www.w3.org/1999/xhtml", "")
        .replace("http://www.w3.org/1999/xlink", "");
    assert!(!stripped.contains("http://") && !stripped.contains("https://"));

    let doc = roxmltree::Document::parse_with_options(
        &html,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        },
    )
    .expect("the report is well-formed XHTML");
    let text_of = |id: &str| -> String {
        doc.descendants()
            .find(|n| n.attribute("id") == Some(id))
            .map(|n| n.descendants().filter_map(|t| t.text()).collect::<String>())
            .unwrap_or_else(|| panic!("no #{id}"))
    };
    assert!(
        text_of("verdict").contains("fail"),
        "5 of 6 tunnels conform"
    );
    let summary = text_of("summary");
    for (key, value) in [
        ("verify_tunnels", "6"),
        ("verify_conforming", "5"),
        ("lac.retransmissions", "1"),
    ] {
        assert!(
            summary.contains(&format!("{key}{value}")),
            "{key} in {summary}"
        );
    }
    assert!(text_of("latency").contains("SCCRQ → SCCRP"));
    assert!(text_of("dispatch").contains("te2"));
    assert!(text_of("sequences").contains("6 tunnels, 5 conforming"));
    let charts = svgs(&doc);
    // Three series, four percentile plots (echo has no sample), the dispatch bars, and the
    // ladders of the first three tunnels and the deviating fifth.
    let ladders: Vec<&String> = charts
        .iter()
        .filter(|t| t.contains("tunnel 198.18"))
        .collect();
    assert_eq!(ladders.len(), 4, "{:?}", ladders);
    assert!(ladders[3].contains("deviates"), "{}", ladders[3]);
    assert!(charts
        .iter()
        .any(|t| t.contains("live tunnels and sessions")));
    assert!(charts.iter().any(|t| t.contains("ICRQ → IP up (6 seen)")));
    assert!(!charts.iter().any(|t| t.contains("LCP echo round trip")));
    assert!(charts
        .iter()
        .any(|t| t.contains("share of the SCCRQs dispatched")));
    let over_time = text_of("dispatch-time");
    for name in ["share of the tunnels up, per endpoint", "te1", "te3"] {
        assert!(over_time.contains(name), "{name} missing: {over_time}");
    }
}

#[test]
fn missing_and_cut_files_are_said_not_fatal() {
    let scratch = Scratch::new(
        std::env::temp_dir().join(format!("l2tpkit-report-bad-{}", std::process::id())),
    );
    let dir = scratch.0.join("run");
    std::fs::create_dir_all(&dir).unwrap();
    let whole = lac_json().to_string();
    std::fs::write(dir.join("lac.json"), &whole[..whole.len() / 2]).unwrap();
    let out = scratch.0.join("out.html");
    let (code, _, stderr) =
        l2tpkit(&["report", dir.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("lac.json: not JSON"), "{html}");
    assert!(html.contains("lac.csv: missing"), "{html}");
    assert!(html.contains("nothing readable"), "{html}");
    // An output that cannot be written names the flag.
    let (code, _, stderr) = l2tpkit(&[
        "report",
        dir.to_str().unwrap(),
        "-o",
        "/nonexistent-dir/r.html",
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("-o /nonexistent-dir/r.html"), "{stderr}");
}
