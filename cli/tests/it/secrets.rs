//! Secrets stay secret (issue 19): while a lab runs, no process's command line holds the report
//! key, the tunnel secret or the subscribers' password; the run dir is its owner's alone and
//! the key files in it are 0600. A key file others can read is refused.
//!
//! The lab test needs root and `ip` (CI has them; without CI=true it says why it skips).

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{lab_available, Scratch};
use l2tpkit::lab::{Lab, LabSpec, Topology, LAB_PASSWORD};

const BIN: &str = env!("CARGO_BIN_EXE_l2tpkit");

/// Every process's command line, as any local user reads it.
fn command_lines() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // A process may be gone by now: skip it.
        if let Ok(bytes) = std::fs::read(entry.path().join("cmdline")) {
            let line = String::from_utf8_lossy(&bytes).replace('\0', " ");
            out.push((pid, line));
        }
    }
    out
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn no_command_line_of_a_running_lab_holds_a_secret() {
    if !lab_available("no_command_line_of_a_running_lab_holds_a_secret") {
        return;
    }
    let run_dir = std::env::temp_dir().join(format!("l2tpkit-secrets-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run_dir);
    let scratch = Scratch::new(run_dir.clone());
    let secret = format!("tunnel-secret-{}", std::process::id());
    let lab = Lab::up(&LabSpec {
        binary: Some(BIN.into()),
        run_dir: Some(run_dir.clone()),
        secret: Some(secret.clone()),
        ppp: true,
        ..LabSpec::new(Topology::Fig2, 2)
    })
    .expect("lab up");
    let key_file = run_dir.join("report.key");
    let key = std::fs::read_to_string(&key_file).expect("report.key");
    let key = key.trim();
    assert!(key.len() >= 16, "{key:?}");
    let lines = command_lines();
    assert!(
        lines.iter().any(|(_, l)| l.contains("--report-key-file")),
        "the roles read the key from its file"
    );
    // The key and the secret are this lab's own: no process anywhere may show them. The
    // lab's password is shared by every lab test (another may pass it to its own probe), so
    // that is checked on this lab's processes: those whose command line names its run dir.
    for (what, needle) in [("report key", key), ("tunnel secret", secret.as_str())] {
        let holders: Vec<_> = lines.iter().filter(|(_, l)| l.contains(needle)).collect();
        assert!(
            holders.is_empty(),
            "the {what} is on a command line: {holders:?}"
        );
    }
    let dir = run_dir.display().to_string();
    let ours: Vec<_> = lines.iter().filter(|(_, l)| l.contains(&dir)).collect();
    assert!(
        ours.len() >= 3,
        "the lab's roles name its run dir: {ours:?}"
    );
    let holders: Vec<_> = ours
        .iter()
        .filter(|(_, l)| l.contains(LAB_PASSWORD))
        .collect();
    assert!(
        holders.is_empty(),
        "the password is on a command line: {holders:?}"
    );
    assert_eq!(mode(&run_dir), 0o700, "{}", run_dir.display());
    assert_eq!(mode(&key_file), 0o600);
    assert_eq!(mode(&run_dir.join("tunnel.secret")), 0o600);
    lab.down().expect("lab down");
    drop(scratch);
}

#[test]
fn a_key_file_others_can_read_is_refused_naming_it() {
    let dir = std::env::temp_dir().join(format!("l2tpkit-keyfile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let scratch = Scratch::new(dir.clone());
    let key = dir.join("report.key");
    std::fs::write(&key, "k3y\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(BIN)
        .args([
            "master",
            "--cluster",
            "127.0.0.1",
            "--lan",
            "127.0.0.1",
            "--report-key-file",
        ])
        .arg(&key)
        .output()
        .expect("run master");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&key.display().to_string()), "{stderr}");
    assert!(stderr.contains("0644"), "{stderr}");
    // A secret given on the command line still works, with a warning.
    let out = Command::new(BIN)
        .args([
            "lac",
            "--target",
            "127.0.0.1:9",
            "--secret",
            "s",
            "--hold",
            "0",
        ])
        .output()
        .expect("run lac");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: --secret on the command line"),
        "{stderr}"
    );
    drop(scratch);
}
