//! Interop with xl2tpd in both directions: our `lac` against xl2tpd as LNS, and xl2tpd as LAC
//! against our `endpoint`; plain, with a tunnel secret, and with hidden AVPs. Every pcap our
//! side writes must decode in tshark with nothing malformed.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use l2tpkit::endpoint::{self, EndpointArgs};
use l2tpkit::lac::{self, LacArgs, PppLevel};
use l2tpkit_tests::xl2tpd::{self, loopback_pair, Xl2tpd, Xl2tpdEnd, Xl2tpdOptions};
use l2tpkit_tests::{require, tshark_l2tp};

const SECRET: &str = "interop-secret";

/// `name` in a scratch directory of its own; the test removes that directory when it passes.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("l2tpkit-interop-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir.join(name)
}

/// tshark finds nothing malformed in what we sent, nor in any control message. xl2tpd's data
/// messages carry what its pppd (here a stand-in that echoes through a pty) gave it: under CI
/// load it once returned an LCP Echo-Request cut to 6 bytes. Up to 1% of those may be
/// malformed, as up to 1% of echoes may be lost; they are listed.
fn assert_pcap_clean(path: &Path, min_packets: usize, ours: Ipv4Addr) {
    if !require("tshark") {
        return;
    }
    let packets = tshark_l2tp(path, 1701);
    assert!(
        packets.len() >= min_packets,
        "{}: {} L2TP packets, expected at least {min_packets}",
        path.display(),
        packets.len()
    );
    let peer_data = packets
        .iter()
        .filter(|p| !p.is_control && p.src != Some(ours))
        .count();
    let mut peer_data_malformed = Vec::new();
    for p in packets.iter().filter(|p| p.malformed) {
        if !p.is_control && p.src != Some(ours) {
            peer_data_malformed.push(format!("frame {}: {}", p.frame, p.expert));
            continue;
        }
        panic!(
            "{}: tshark flags frame {} as malformed: {}",
            path.display(),
            p.frame,
            p.expert
        );
    }
    if !peer_data_malformed.is_empty() {
        eprintln!(
            "{}: xl2tpd's data messages tshark flags: {peer_data_malformed:?}",
            path.display()
        );
    }
    assert!(
        peer_data_malformed.len() * 100 <= peer_data,
        "{}: {} of xl2tpd's {peer_data} data messages malformed: {peer_data_malformed:?}",
        path.display(),
        peer_data_malformed.len()
    );
}

/// Our LAC: 20 tunnels × 2 sessions against xl2tpd as LNS, held 5 s with echoes.
fn lac_against_xl2tpd(name: &str, secret: bool, hidden: bool) {
    if !xl2tpd::available() {
        return;
    }
    let (lns_ip, lac_ip) = loopback_pair(name);
    let options = Xl2tpdOptions {
        secret: secret.then(|| SECRET.to_string()),
        challenge: secret,
        ..Xl2tpdOptions::on(lns_ip)
    };
    let lns = Xl2tpd::start(Xl2tpdEnd::Lns, &options).expect("start xl2tpd LNS");
    let pcap = scratch(&format!("{name}.pcap"));
    let args = LacArgs {
        target: lns.addr(),
        bind: format!("{lac_ip}:0").parse().unwrap(),
        tunnels: 20,
        sessions_per_tunnel: 2,
        secret: secret.then(|| SECRET.to_string()),
        hidden,
        hold: Duration::from_secs(5),
        echo_rate: 2.0,
        setup_timeout: Some(Duration::from_secs(20)),
        host_name: "l2tpkit-interop".to_string(),
        pcap: Some(pcap.clone()),
        json: false,
        any_source: false,
        initiators: 1,
        ppp: PppLevel::Off,
        ..LacArgs::default()
    };
    let (report, _) = lac::execute(&args).expect("lac run");
    eprintln!("{report}");
    assert_eq!(report.tunnels_established, 20, "{report}");
    assert_eq!(report.sessions_established, 40, "{report}");
    // Rounds at 0.5, 1, …, 3.5 s of the hold (the first one interval in, none in the last
    // second): 7 of 40.
    assert!(report.echo_requests_sent >= 40 * 7, "{report}");
    // Data messages are never retransmitted (RFC 2661 §5.8 covers the control channel only),
    // and each echo crosses xl2tpd and its pty to the stand-in pppd twice: once, under CI load,
    // one echo in 320 did not come back. Up to 1% may be lost; more is a finding. (Echoes sent
    // the moment the sessions came up once came back 2 bytes short, eleven in one run: the
    // stand-in's tty was still in cooked mode, xl2tpd clears ICANON from c_cflag instead of
    // c_lflag, and a 0x7f in our magic number erased itself and the byte before. The LAC's
    // first keepalive now waits one interval, as pppd's does.)
    let lost = report
        .echo_requests_sent
        .saturating_sub(report.echo_answered());
    assert!(
        lost * 100 <= report.echo_requests_sent,
        "{lost} echoes lost: {report}"
    );
    assert_eq!(report.tunnels_failed, 0, "{report}");
    assert_eq!(report.sessions_failed, 0, "{report}");
    assert_eq!(
        report.tunnels_closed_cleanly, report.tunnels_established,
        "{report}"
    );
    // xl2tpd's own account: each tunnel and call established, each tunnel closed.
    let log = lns
        .wait_for(
            &format!("Connection closed to {lac_ip}, port"),
            20,
            Duration::from_secs(10),
        )
        .unwrap_or_else(|tail| panic!("xl2tpd did not log 20 closed tunnels:\n{tail}"));
    assert_eq!(lns.count("Connection established to"), 20, "{log}");
    assert_eq!(lns.count("Call established with"), 40, "{log}");
    lns.stop();
    assert_pcap_clean(&pcap, 20 * 6, lac_ip);
    if hidden {
        // The ICRQs on the wire carry a hidden Assigned Session ID.
        let mut reader = l2tp::capture::CaptureReader::open(&pcap).expect("pcap");
        let mut hidden_avps = 0;
        while let Some(record) = reader.next_datagram() {
            if let Ok(l2tp::capture::Record {
                kind: l2tp::capture::RecordKind::Udp(d),
                ..
            }) = record
            {
                let options = l2tp::wire::message::ParseOptions::default();
                if let Ok(l2tp::wire::PacketRepr::Control(m)) =
                    l2tp::wire::PacketRepr::parse(d.payload, &options)
                {
                    hidden_avps += m.avps.iter().filter(|a| a.hidden).count();
                }
            }
        }
        assert!(
            hidden_avps >= 40,
            "only {hidden_avps} hidden AVPs on the wire"
        );
    }
    let _ = std::fs::remove_dir_all(pcap.parent().expect("the scratch directory"));
}

#[test]
fn our_lac_against_xl2tpd_lns() {
    lac_against_xl2tpd("lac-plain", false, false);
}

#[test]
fn our_lac_against_xl2tpd_lns_with_secret() {
    lac_against_xl2tpd("lac-secret", true, false);
}

#[test]
fn our_lac_against_xl2tpd_lns_with_hidden_avps() {
    lac_against_xl2tpd("lac-hidden", true, true);
}

/// xl2tpd as LAC dials our endpoint; its log must say the tunnel and the call are up.
fn xl2tpd_against_endpoint(name: &str, secret: bool, hidden: bool) {
    if !xl2tpd::available() {
        return;
    }
    let (endpoint_ip, lac_ip) = loopback_pair(name);
    let pcap = scratch(&format!("{name}.pcap"));
    let args = EndpointArgs {
        listen: format!("{endpoint_ip}:1701").parse().unwrap(),
        secret: secret.then(|| SECRET.to_string()),
        hidden: false,
        host_name: "l2tpkit-endpoint".to_string(),
        duration: Some(Duration::from_secs(4)),
        pcap: Some(pcap.clone()),
        json: false,
        status: None,
        ..EndpointArgs::default()
    };
    let (ready_tx, ready_rx) = mpsc::channel();
    let server = std::thread::spawn(move || {
        endpoint::execute(&args, move |addr| {
            let _ = ready_tx.send(addr);
        })
    });
    let listening: SocketAddrV4 = ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("endpoint did not start");
    assert_eq!(*listening.ip(), endpoint_ip);
    let options = Xl2tpdOptions {
        secret: secret.then(|| SECRET.to_string()),
        challenge: secret,
        hidden,
        ..Xl2tpdOptions::on(lac_ip)
    };
    let lac = Xl2tpd::start(
        Xl2tpdEnd::Lac {
            lns: listening,
            autodial: true,
        },
        &options,
    )
    .expect("start xl2tpd LAC");
    lac.wait_for("Connection established to", 1, Duration::from_secs(10))
        .unwrap_or_else(|tail| panic!("no tunnel:\n{tail}"));
    lac.wait_for("Call established with", 1, Duration::from_secs(10))
        .unwrap_or_else(|tail| panic!("no call:\n{tail}"));
    let log = lac.stop_with_stopccn();
    let stats = server
        .join()
        .expect("endpoint thread")
        .expect("endpoint run");
    assert_eq!(stats.tunnels_established, 1, "{log}");
    assert_eq!(stats.sessions_established, 1, "{log}");
    assert_pcap_clean(&pcap, 6, endpoint_ip);
    let _ = std::fs::remove_dir_all(pcap.parent().expect("the scratch directory"));
}

#[test]
fn xl2tpd_lac_against_our_endpoint() {
    xl2tpd_against_endpoint("endpoint-plain", false, false);
}

#[test]
fn xl2tpd_lac_against_our_endpoint_with_secret() {
    xl2tpd_against_endpoint("endpoint-secret", true, false);
}

#[test]
fn xl2tpd_lac_against_our_endpoint_with_hidden_bit() {
    xl2tpd_against_endpoint("endpoint-hidden", true, true);
}
