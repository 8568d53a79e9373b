//! Bad flags and unreachable peers give one clear line on stderr naming what was wrong, and a
//! non-zero exit; never a panic.

use crate::common::l2tpkit;

fn assert_one_line_error(args: &[&str], needle: &str) {
    let (code, _, stderr) = l2tpkit(args);
    assert_eq!(code, 2, "{args:?}: exit {code}, stderr: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "{args:?}: not one line: {stderr}"
    );
    assert!(
        stderr.contains(needle),
        "{args:?}: {stderr:?} lacks {needle:?}"
    );
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
}

#[test]
fn bad_flags_name_the_flag() {
    assert_one_line_error(&["lac", "--target", "lns.example"], "--target");
    assert_one_line_error(
        &["lac", "--target", "127.0.0.1", "--tunnels", "0"],
        "--tunnels",
    );
    assert_one_line_error(&["lac", "--target", "127.0.0.1", "--hold=-1"], "--hold");
    assert_one_line_error(
        &["lac", "--target", "127.0.0.1", "--echo-rate", "1e9"],
        "--echo-rate",
    );
    assert_one_line_error(&["lac", "--target", "127.0.0.1", "--hidden"], "--hidden");
    assert_one_line_error(&["lac", "--target", "127.0.0.1", "--bind", "x"], "--bind");
    assert_one_line_error(
        &[
            "lac",
            "--target",
            "127.0.0.1",
            "--hdr-log",
            "/nonexistent-l2tpkit/run.hlog",
        ],
        "--hdr-log /nonexistent-l2tpkit/run.hlog",
    );
    assert_one_line_error(&["endpoint", "--listen", "1.2.3"], "--listen");
    assert_one_line_error(
        &["endpoint", "--listen", "127.0.0.1", "--duration=-3"],
        "--duration",
    );
    let master = ["master", "--cluster", "127.0.0.1", "--lan", "127.0.0.2"];
    // The key from a file of its own (a key in argv would add a warning line).
    let key = std::env::temp_dir().join(format!("l2tpkit-errors-key-{}", std::process::id()));
    l2tpkit::secret::write_key_file(&key, "k").expect("the key file");
    let key_file = key.display().to_string();
    assert_one_line_error(
        &[
            &master[..],
            &["--report-key-file", &key_file, "--max-dispatch-memory", "0"],
        ]
        .concat(),
        "--max-dispatch-memory",
    );
    let _ = std::fs::remove_file(&key);
    let nat = [
        "nat",
        "--global",
        "127.0.0.1",
        "--lan",
        "127.0.0.2",
        "--lan-if",
        "lo",
    ];
    assert_one_line_error(
        &[&nat[..], &["--max-entries", "0"]].concat(),
        "--max-entries",
    );
    assert_one_line_error(
        &["lac", "--target", "127.0.0.1", "--max-retransmits", "99"],
        "--max-retransmits",
    );
    // Checked before anything is made (and before the lab asks for root).
    let up = ["lab", "up", "--topology", "fig2", "--endpoints", "1"];
    for (netem, why) in [
        ("reorder 25%", "reorder needs a delay"),
        ("loss 20", "with %"),
        ("jitter 1ms", "unknown word"),
    ] {
        let args = [&up[..], &["--netem", netem]].concat();
        assert_one_line_error(&args, "--netem");
        assert_one_line_error(&args, why);
    }
    assert_one_line_error(
        &[&up[..], &["--policy", "leaky-bucket", "--bucket-rate", "0"]].concat(),
        "--bucket-rate",
    );
    assert_one_line_error(&["lab", "run", "--netem", "delay 99s"], "--netem");
    // The lab's initiators send from 198.18.1.1 up: another first address is refused.
    assert_one_line_error(
        &["lab", "run", "--bind", "198.18.1.7:1701"],
        "--bind 198.18.1.7:1701",
    );
}

#[test]
fn unreachable_target_is_one_line() {
    // Nothing listens on this loopback port: the kernel answers ICMP port unreachable.
    assert_one_line_error(
        &[
            "lac",
            "--target",
            "127.0.0.1:9",
            "--hold",
            "0",
            "--setup-timeout",
            "5",
        ],
        "refused",
    );
    // The socket is never connected (§8.1): the ICMP error comes back through IP_RECVERR,
    // also when replies from any address are followed.
    assert_one_line_error(
        &[
            "lac",
            "--target",
            "127.0.0.1:9",
            "--any-source",
            "--hold",
            "0",
            "--setup-timeout",
            "5",
        ],
        "127.0.0.1:9 refused",
    );
}

#[test]
fn foreign_and_missing_files_name_the_file() {
    let dir = std::env::temp_dir().join(format!("l2tpkit-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("notes.txt");
    std::fs::write(&text, "not a capture").unwrap();
    assert_one_line_error(&["decode", text.to_str().unwrap()], "notes.txt");
    assert_one_line_error(&["decode", "/nonexistent/x.pcap"], "/nonexistent/x.pcap");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn decode_reads_a_fixture() {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/../captures/xl2tpd-basic.pcap");
    let (code, stdout, stderr) = l2tpkit(&["decode", fixture]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.lines().next().unwrap_or("").contains("SCCRQ"),
        "{stdout}"
    );
    assert!(stdout.contains("StopCCN"), "{stdout}");
    assert!(stderr.contains("0 malformed"), "{stderr}");
}

/// `--metrics` on an address in use: the role fails at start, naming the flag and the address.
#[test]
fn metrics_on_an_address_in_use_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for role in [
        vec!["endpoint", "--listen", "127.0.0.1:0", "--duration", "5"],
        vec![
            "lac",
            "--target",
            "127.0.0.1:9",
            "--hold",
            "0",
            "--setup-timeout",
            "1",
        ],
    ] {
        let args: Vec<&str> = role.iter().copied().chain(["--metrics", &addr]).collect();
        let (code, _, stderr) = l2tpkit(&args);
        assert_ne!(code, 0, "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("--metrics {addr}")),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_bad_bind_fails_at_start_naming_the_flag() {
    // An address of the lab's ranges, configured on no interface outside a lab: not ours.
    for command in ["lac", "probe"] {
        assert_one_line_error(
            &[
                command,
                "--target",
                "127.0.0.1",
                "--bind",
                "198.18.255.254:0",
            ],
            "--bind 198.18.255.254:0",
        );
    }
    // A port in use.
    let held = std::net::UdpSocket::bind("127.0.0.99:0").expect("a socket to hold the port");
    let bind = held.local_addr().unwrap().to_string();
    let lac = [
        "lac",
        "--target",
        "127.0.0.1",
        "--bind",
        &bind,
        "--hold",
        "0",
    ];
    let probe = ["probe", "--target", "127.0.0.1", "--bind", &bind];
    for args in [&lac[..], &probe[..]] {
        assert_one_line_error(args, &format!("--bind {bind}"));
    }
}
