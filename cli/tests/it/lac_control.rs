//! `l2tpkit lac --control SOCK` steered by `l2tpkit ctl SOCK …` while it runs, against our
//! endpoint on 127.0.0.0/8: `report` mid-run has the final JSON's shape, `rate` and `pause`
//! show in the CSV within a second, a master's verb is refused, the socket goes with the run.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{endpoint, wait_until, Scratch};

/// `l2tpkit ctl SOCK WORDS… --json`: exit code, the reply's JSON (when it printed one), stderr.
fn ctl(sock: &Path, words: &[&str]) -> (i32, Option<serde_json::Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_l2tpkit"))
        .arg("ctl")
        .arg(sock)
        .args(words)
        .arg("--json")
        .output()
        .expect("run l2tpkit ctl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(&stdout).ok(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The CSV's rows so far, as (second, target_rate, started_this_second).
fn rows(csv: &Path) -> Vec<(u64, f64, u64)> {
    let Ok(mut reader) = csv::Reader::from_path(csv) else {
        return Vec::new();
    };
    let Ok(headers) = reader.headers().cloned() else {
        return Vec::new();
    };
    // The header row is not written until the first second closes.
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (Some(second), Some(rate), Some(started)) = (
        col("second"),
        col("target_rate"),
        col("started_this_second"),
    ) else {
        return Vec::new();
    };
    reader
        .records()
        .filter_map(Result::ok)
        .filter_map(|r| {
            Some((
                r.get(second)?.parse().ok()?,
                r.get(rate)?.parse().ok()?,
                r.get(started)?.parse().ok()?,
            ))
        })
        .collect()
}

/// The LAC's process, killed and waited for if the test fails before it ends.
struct Lac(Option<Child>);

impl Lac {
    fn wait(mut self) -> std::process::Output {
        let child = self.0.take().expect("a running LAC");
        child.wait_with_output().expect("the LAC ends")
    }
}

impl Drop for Lac {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn ctl_steers_a_running_lac_and_report_has_the_final_shape() {
    let scratch = Scratch::new(
        std::env::temp_dir().join(format!("l2tpkit-lac-control-{}", std::process::id())),
    );
    std::fs::create_dir_all(&scratch.0).unwrap();
    let (sock, csv) = (scratch.0.join("lac.sock"), scratch.0.join("lac.csv"));
    let lns = endpoint("127.0.83.1", "l2tpkit", 120.0);
    // 400 tunnels at 10/s: the run paces for far longer than the test steers it; `rate 100`
    // then finishes it.
    let lac = Lac(Some(
        Command::new(env!("CARGO_BIN_EXE_l2tpkit"))
            .args([
                "lac",
                "--target",
                &lns.to_string(),
                "--bind",
                "127.0.83.2:0",
            ])
            .args([
                "--tunnels",
                "400",
                "--sessions-per-tunnel",
                "0",
                "--rate",
                "10",
            ])
            .args([
                "--hold",
                "0.5",
                "--echo-rate",
                "0",
                "--ppp",
                "off",
                "--json",
            ])
            .arg("--csv")
            .arg(&csv)
            .arg("--control")
            .arg(&sock)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start l2tpkit lac"),
    ));

    let (_, status, _) = wait_until(
        "the LAC's control socket",
        Duration::from_secs(10),
        || ctl(&sock, &["status"]),
        |(code, _, _)| *code == 0,
    );
    assert!(status.unwrap()["tunnels_requested"].is_u64());

    let (code, report, err) = ctl(&sock, &["report"]);
    assert_eq!(code, 0, "{err}");
    let report = report.expect("a JSON report");
    assert!(report["tunnels_requested"] == 400, "{report}");

    // rate: the CSV's target rate follows within a second of the request.
    let (code, after, err) = ctl(&sock, &["rate", "20"]);
    assert_eq!(code, 0, "{err}");
    let at = after.unwrap()["elapsed_s"].as_f64().unwrap() as u64;
    let seen = wait_until(
        "target_rate 20 in the CSV",
        Duration::from_secs(5),
        || rows(&csv),
        |rows| rows.iter().any(|r| r.1 == 20.0),
    );
    let first = seen.iter().find(|r| r.1 == 20.0).unwrap().0;
    assert!(
        first <= at + 1,
        "asked at {at} s, shown from second {first}: {seen:?}"
    );

    // pause: no SCCRQ goes out from the second after the request on.
    let (code, after, err) = ctl(&sock, &["pause"]);
    assert_eq!(code, 0, "{err}");
    let after = after.unwrap();
    assert_eq!(after["paused"], true, "{after}");
    let at = after["elapsed_s"].as_f64().unwrap() as u64;
    let seen = wait_until(
        "two CSV rows after the pause",
        Duration::from_secs(5),
        || rows(&csv),
        |rows| rows.iter().any(|r| r.0 >= at + 2),
    );
    let during: Vec<_> = seen.iter().filter(|r| r.0 > at).collect();
    assert!(
        during.iter().all(|r| r.2 == 0),
        "paused at {at} s, yet: {seen:?}"
    );
    assert!(
        seen.iter().any(|r| r.0 <= at && r.2 > 0),
        "nothing started before the pause: {seen:?}"
    );

    // A master's verb and a bad word are refused, naming themselves.
    let (code, _, err) = ctl(&sock, &["drain", "te1"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("drain te1"), "{err}");
    let (code, _, err) = ctl(&sock, &["rate", "fast"]);
    assert_ne!(code, 0);
    assert!(err.contains("\"fast\""), "{err}");

    let (code, _, err) = ctl(&sock, &["resume"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = ctl(&sock, &["rate", "0"]);
    assert_eq!(code, 0, "{err}");
    let out = lac.wait();
    assert!(out.status.success(), "{out:?}");
    let last: serde_json::Value = serde_json::from_slice(&out.stdout).expect("final JSON");
    let keys = |v: &serde_json::Value| -> BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    };
    assert_eq!(keys(&report), keys(&last), "mid-run report vs final JSON");
    assert_eq!(last["tunnels_established"], 400, "{last}");
    assert!(!sock.exists(), "the control socket outlived the run");
}
