//! `l2tpkit decode --json` of every fixture in `captures/`, snapshotted in `snapshots/`.

use l2tp::wire::message::ParseOptions;
use l2tpkit::decode::decode_file;
use l2tpkit_tests::repo_root;

/// The tunnel secret `captures/record.sh` uses (see captures/PROVENANCE.md).
const FIXTURE_SECRET: &[u8] = b"l2tpkit-tunnel-secret";

fn decode_json(name: &str, secret: Option<&[u8]>) -> String {
    let path = repo_root().join("captures").join(name);
    let mut out = Vec::new();
    let counts = decode_file(&path, 1701, true, &ParseOptions { secret }, &mut out)
        .unwrap_or_else(|err| panic!("{name}: {err:#}"));
    assert_eq!(counts.malformed, 0, "{name}: malformed packets");
    assert_eq!(
        counts.missing_avps, 0,
        "{name}: messages missing mandatory AVPs"
    );
    let text = String::from_utf8(out).expect("JSON is UTF-8");
    // Each line must be one JSON object.
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|err| panic!("{name}: not JSON ({err}): {line}"));
    }
    text
}

/// Snapshots the JSON lines pretty-printed, so that a change reads as a small diff.
fn snapshot(name: &str, secret: Option<&[u8]>) {
    let text = decode_json(name, secret)
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("JSON");
            serde_json::to_string_pretty(&value).expect("pretty JSON")
        })
        .collect::<Vec<_>>()
        .join("\n");
    insta::with_settings!({
        snapshot_path => repo_root().join("snapshots"),
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!(format!("decode-{}", name.trim_end_matches(".pcap")), text);
    });
}

#[test]
fn basic() {
    snapshot("xl2tpd-basic.pcap", None);
}

#[test]
fn hello() {
    let text = decode_json("xl2tpd-hello.pcap", None);
    assert!(
        text.contains(r#""message_type":"HELLO""#),
        "no HELLO decoded"
    );
    snapshot("xl2tpd-hello.pcap", None);
}

#[test]
fn secret() {
    snapshot("xl2tpd-secret.pcap", Some(FIXTURE_SECRET));
}

#[test]
fn hidden_unhidden_with_the_tunnel_secret() {
    let text = decode_json("xl2tpd-hidden.pcap", Some(FIXTURE_SECRET));
    // xl2tpd hides Assigned Session ID; unhidden it must equal the session ID the peer then uses.
    assert!(
        text.contains(r#""hidden":true"#),
        "no hidden AVP in the fixture"
    );
    assert!(!text.contains("ciphertext"), "a hidden AVP stayed hidden");
    snapshot("xl2tpd-hidden.pcap", Some(FIXTURE_SECRET));
}

#[test]
fn hidden_without_the_secret_stays_ciphertext() {
    let text = decode_json("xl2tpd-hidden.pcap", None);
    assert!(text.contains("ciphertext"));
}
