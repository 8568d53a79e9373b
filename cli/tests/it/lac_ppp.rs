//! `l2tpkit lac` with PPP on its sessions, over real UDP on 127.0.0.0/8, against a small LNS
//! written here from the sans-IO pieces (an `l2tp::conn` tunnel set and a table of PPP servers
//! with CHAP): every session IP up with its own address, the phases in the JSON and the CSV, a
//! wrong password failing under authentication, and flags that name themselves when wrong.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use l2tp::conn::tunnel::{Event, TunnelConfig};
use l2tp::conn::tunnels::TunnelSet;
use l2tp::ppp::lcp::AuthSet;
use l2tp::ppp::session::{PppSession, SessionConfig};
use l2tp::ppp::table::PppTable;
use l2tp::time::Instant;
use l2tpkit::lac::{execute, LacArgs, PppLevel};

/// A CHAP LNS on `ip` for `seconds`, knowing user1..=user`users`@example.net with password
/// "l2tpkit"; addresses from 10.64.0.1 up. Returns its address.
fn chap_lns(ip: &str, users: u64, seconds: u64) -> SocketAddrV4 {
    let socket = UdpSocket::bind(format!("{ip}:0")).expect("bind the LNS");
    let SocketAddr::V4(local) = socket.local_addr().unwrap() else {
        unreachable!("bound on IPv4");
    };
    socket
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let secrets: BTreeMap<Vec<u8>, Vec<u8>> = (1..=users)
        .map(|n| {
            (
                format!("user{n}@example.net").into_bytes(),
                b"l2tpkit".to_vec(),
            )
        })
        .collect();
    let mut config = SessionConfig::server(AuthSet::CHAP_MD5, Some(Arc::new(secrets)));
    config.local_address = Some(Ipv4Addr::new(10, 64, 0, 254));
    let config = Arc::new(config);
    std::thread::spawn(move || {
        let start = std::time::Instant::now();
        let now = || Instant::from_micros(start.elapsed().as_micros() as u64);
        let mut set = TunnelSet::new(TunnelConfig::default(), 11, true);
        let mut table = PppTable::new();
        let mut next = u32::from(Ipv4Addr::new(10, 64, 0, 0));
        let (mut buf, mut out) = (vec![0u8; 65536], Vec::new());
        while start.elapsed() < Duration::from_secs(seconds) {
            if let Ok((len, SocketAddr::V4(from))) = socket.recv_from(&mut buf) {
                set.handle(now(), from, &buf[..len]);
            }
            let t = now();
            set.handle_timeout(t);
            table.handle_timeout(t);
            while let Some((tid, event)) = set.poll_event() {
                match event {
                    Event::SessionUp { session_id, .. } => {
                        next += 1;
                        let session =
                            PppSession::server(Arc::clone(&config), next.into(), u64::from(next));
                        table.insert(t, (tid, session_id), session);
                    }
                    Event::SessionDown { session_id, .. } => {
                        table.remove((tid, session_id));
                    }
                    Event::Data { session_id, frame } => {
                        table.handle(t, (tid, session_id), &frame);
                    }
                    _ => {}
                }
            }
            while let Some((tid, sid)) = table.poll_transmit(&mut out) {
                if let Some(tunnel) = set.tunnel_mut(tid) {
                    tunnel.send_data(sid, &out);
                }
                out.clear();
            }
            while table.poll_event().is_some() {}
            while let Some(to) = set.poll_transmit(t, &mut out) {
                let _ = socket.send_to(&out, to);
                out.clear();
            }
        }
    });
    local
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("l2tpkit-lac-ppp-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir.join(name)
}

fn args(target: SocketAddrV4, bind: &str, csv: Option<PathBuf>) -> LacArgs {
    LacArgs {
        target,
        bind: bind.parse().unwrap(),
        tunnels: 4,
        sessions_per_tunnel: 3,
        hold: Duration::from_secs(2),
        // Keepalives from 0.5 s in (one interval), none in the last second of the hold.
        echo_rate: 2.0,
        setup_timeout: Some(Duration::from_secs(20)),
        csv,
        ..LacArgs::default()
    }
}

#[test]
fn every_session_is_a_subscriber_with_its_own_address() {
    let lns = chap_lns("127.0.71.1", 12, 60);
    let csv = scratch("ip-up.csv");
    let hdr_log = csv.with_file_name("ip-up.hlog");
    let lac = LacArgs {
        hdr_log: Some(hdr_log.clone()),
        ..args(lns, "127.0.71.2:0", Some(csv.clone()))
    };
    let (report, _) = execute(&lac).expect("lac run");
    assert!(report.success(), "{report}");
    assert_eq!(report.ppp, PppLevel::Ip);
    assert_eq!(report.sessions_established, 12, "{report}");
    assert_eq!(report.sessions_ip_up, 12, "{report}");
    assert_eq!(report.duplicate_addresses, 0);
    assert_eq!(report.lcp_opened.count, 12);
    assert_eq!(report.authentication.count, 12);
    assert_eq!(report.ipcp_opened.count, 12);
    assert_eq!(report.icrq_to_ip_up.count, 12);
    assert!(report.echo_replies > 0, "{report}");
    assert_eq!(report.tunnels_closed_cleanly, 4, "{report}");
    let json = serde_json::to_value(&report).unwrap();
    for key in [
        "lcp_opened",
        "authentication",
        "ipcp_opened",
        "icrq_to_ip_up",
    ] {
        assert_eq!(json[key]["count"], 12, "{key}: {json:#}");
    }
    assert_eq!(json["ppp"], "ip");

    let mut reader = csv::Reader::from_path(&csv).expect("the CSV");
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
    };
    let (per_second, total) = (column("ip_up_this_second"), column("ip_up_total"));
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    let sum: u64 = rows
        .iter()
        .map(|r| r[per_second].parse::<u64>().unwrap())
        .sum();
    assert_eq!(sum, 12);
    assert_eq!(rows.last().unwrap()[total].parse::<u64>().unwrap(), 12);
    hdr_log_adds_up_to_the_report(&hdr_log, &json, rows.len());
    let _ = std::fs::remove_dir_all(csv.parent().unwrap());
}

/// `--hdr-log`: read back with the hdrhistogram crate's reader, each tag's intervals add up to
/// the histogram the JSON report summarises (count, percentiles and max to the microsecond),
/// about one interval per CSV row.
fn hdr_log_adds_up_to_the_report(path: &std::path::Path, json: &serde_json::Value, rows: usize) {
    use base64::Engine;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::Histogram;

    let text = std::fs::read(path).expect("the interval log");
    let mut merged: BTreeMap<String, (Histogram<u64>, usize)> = BTreeMap::new();
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(&text) {
        let LogEntry::Interval(interval) = entry.expect("a well-formed entry") else {
            continue;
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(interval.encoded_histogram())
            .expect("base64");
        let h: Histogram<u64> = deserializer.deserialize(&mut bytes.as_slice()).unwrap();
        let tag = interval.tag().expect("tagged").as_str().to_string();
        let slot = merged
            .entry(tag)
            .or_insert_with(|| (Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap(), 0));
        slot.0.add(&h).expect("same bounds");
        slot.1 += 1;
    }
    let ms = |us: u64| us as f64 / 1000.0;
    let mut seen = 0;
    for tag in probes::lac::Stats::HISTOGRAM_TAGS {
        let want = &json[tag];
        let count = want["count"].as_u64().unwrap();
        let Some((h, intervals)) = merged.get(tag) else {
            panic!("no {tag} in the log");
        };
        assert_eq!(h.len(), count, "{tag}");
        assert!(
            (rows.saturating_sub(1)..=rows + 1).contains(intervals),
            "{tag}: {intervals} intervals for {rows} CSV rows"
        );
        if count == 0 {
            continue;
        }
        seen += 1;
        assert_eq!(ms(h.value_at_quantile(0.5)), want["p50_ms"], "{tag}");
        assert_eq!(ms(h.value_at_quantile(0.99)), want["p99_ms"], "{tag}");
        assert_eq!(ms(h.max()), want["max_ms"], "{tag}");
    }
    // Everything but IPv6CP and ICMP traffic, which this run does not do.
    assert_eq!(seen, 8);
}

#[test]
fn a_wrong_password_fails_under_authentication_and_exits_1() {
    let lns = chap_lns("127.0.72.1", 12, 60);
    let out = Command::new(env!("CARGO_BIN_EXE_l2tpkit"))
        .args([
            "lac",
            "--target",
            &lns.to_string(),
            "--bind",
            "127.0.72.2:0",
            "--tunnels",
            "2",
            "--sessions-per-tunnel",
            "2",
            "--hold",
            "0",
            "--auth",
            "chap",
            "--password",
            "not-it",
            "--json",
        ])
        .output()
        .expect("run l2tpkit lac");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    let why = "PPP authentication: authentication rejected: \"Authentication failed\"";
    assert_eq!(report["failures"][why], 4, "{report:#}");
    assert_eq!(report["sessions_failed"], 4);
    assert_eq!(report["tunnels_failed"], 0);
    assert_eq!(report["tunnels_closed_cleanly"], 2, "{report:#}");
}

#[test]
fn bad_ppp_flags_name_the_flag() {
    let long = "x".repeat(250) + "{n}";
    for (flag, value) in [
        ("--ppp", "ipx"),
        ("--auth", "mschap"),
        ("--username", long.as_str()),
        ("--password", &"p".repeat(256)),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_l2tpkit"))
            .args(["lac", "--target", "127.0.0.1", flag, value])
            .output()
            .expect("run l2tpkit");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{flag}: {stderr}");
        assert!(stderr.contains(flag), "{flag}: {stderr}");
        assert!(!stderr.contains("panicked"), "{flag}: {stderr}");
    }
}

/// `lac --traffic-rate 5` against the real `l2tpkit endpoint --auth chap` (a process, as a
/// user runs it): every session pings the endpoint's own PPP address (its IPCP address, which
/// it answers in user space) for about 2 s; none is lost, and the endpoint counts them.
#[test]
fn traffic_against_our_endpoint_loses_nothing() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let users = scratch("traffic-users");
    let csv = users.with_file_name("traffic.csv");
    let lines: String = (1..=6).map(|n| format!("user{n}:s3cret\n")).collect();
    std::fs::write(&users, lines).unwrap();
    let bin = env!("CARGO_BIN_EXE_l2tpkit");
    let mut endpoint = Command::new(bin)
        .args(["endpoint", "--listen", "127.0.73.1:0", "--auth", "chap"])
        .arg("--users")
        .arg(&users)
        .args(["--duration", "9"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start l2tpkit endpoint");
    let mut stderr = BufReader::new(endpoint.stderr.take().unwrap());
    let mut line = String::new();
    let lns = loop {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            panic!("the endpoint ended before listening");
        }
        if let Some(addr) = line.trim().strip_prefix("l2tpkit endpoint: listening on ") {
            break addr.to_string();
        }
    };
    let out = Command::new(bin)
        .args(["lac", "--target", &lns, "--bind", "127.0.73.2:0"])
        .args([
            "--tunnels",
            "2",
            "--sessions-per-tunnel",
            "3",
            "--hold",
            "3",
        ])
        .args([
            "--auth",
            "chap",
            "--username",
            "user{n}",
            "--password",
            "s3cret",
        ])
        .args(["--traffic-rate", "5", "--json", "--csv"])
        .arg(&csv)
        .output()
        .expect("run l2tpkit lac");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ended = endpoint.wait_with_output().expect("the endpoint ends");
    let endpoint_out = String::from_utf8_lossy(&ended.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    let sent = report["traffic_sent"].as_u64().unwrap();
    let received = report["traffic_received"].as_u64().unwrap();
    // 6 sessions × 5/s × the 2 s before the quiet second.
    assert!((40..=80).contains(&sent), "{report:#}");
    assert_eq!(received, sent, "{report:#}");
    assert_eq!(report["traffic_lost"], 0);
    assert_eq!(report["traffic_loss_pct"], 0.0);
    assert_eq!(report["traffic_rtt"]["count"], received, "{report:#}");
    assert!(report["traffic_rtt"]["p50_ms"].as_f64().unwrap() > 0.0);
    assert!(
        endpoint_out.contains(&format!("ICMP echoes answered {sent}")),
        "{endpoint_out}"
    );
    // The CSV's last row has the same totals in its new columns.
    let mut reader = csv::Reader::from_path(&csv).expect("the CSV");
    let headers = reader.headers().unwrap().clone();
    let last = reader.records().last().unwrap().unwrap();
    let column = |name: &str| {
        let i = headers.iter().position(|h| h == name);
        last[i.unwrap_or_else(|| panic!("no {name} in {headers:?}"))].to_string()
    };
    assert_eq!(column("traffic_sent"), sent.to_string());
    assert_eq!(column("traffic_received"), sent.to_string());
    assert_eq!(column("traffic_lost"), "0");
    assert!(column("traffic_rtt_p99_ms").parse::<f64>().unwrap() > 0.0);
    assert_eq!(headers.get(0), Some("second"), "existing columns first");
    let _ = std::fs::remove_dir_all(users.parent().unwrap());
}

#[test]
fn bad_traffic_flags_name_the_flag() {
    for args in [
        &["--traffic-rate=-1"][..],
        &["--traffic-rate", "NaN"],
        &["--traffic-rate", "1e9"],
        &["--traffic-rate", "0.001"],
        &["--traffic-rate", "5", "--ppp", "lcp"],
        &["--traffic-target", "192.0.2.1"],
        &["--traffic-target", "not-an-address", "--traffic-rate", "1"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_l2tpkit"))
            .args(["lac", "--target", "127.0.0.1"])
            .args(args)
            .output()
            .expect("run l2tpkit");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains("--traffic-"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
