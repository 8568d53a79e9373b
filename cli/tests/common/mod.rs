//! What the lab tests share: whether this machine can run a lab, and small `ip` look-ups.

use l2tpkit::lab::sys;

/// True when the lab can run here (root, `ip`; it captures with its own packet sockets). Otherwise the test skips, saying
/// why, or under `CI=true` fails: a missing prerequisite in CI is never a silent skip.
pub fn lab_available(test: &str) -> bool {
    let mut missing = Vec::new();
    if !sys::is_root() {
        missing.push("root");
    }
    if !sys::have("ip", "-V") {
        missing.push("ip (iproute2)");
    }
    if missing.is_empty() {
        return true;
    }
    let reason = format!("{test}: the lab needs {}", missing.join(", "));
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    false
}

/// The MAC address of `interface` in `namespace`.
#[allow(dead_code)] // not every test file looks one up
pub fn mac_of(namespace: &str, interface: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(
        &sys::ip(&["-n", namespace, "-j", "link", "show", interface]).expect("ip link"),
    )
    .expect("ip -j");
    json[0]["address"].as_str().expect("a MAC").to_string()
}
