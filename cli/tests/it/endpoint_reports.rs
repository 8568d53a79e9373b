//! `l2tpkit endpoint --master …` sends authenticated load reports that the master's `open`
//! accepts, with a rising sequence and the configured Tunnel ID block.

use std::net::UdpSocket;
use std::time::Duration;

use l2tpkit::endpoint::{execute, EndpointArgs};
use reference::cluster::{open, EndpointState};

#[test]
fn endpoint_reports_its_load_to_the_master() {
    reports_blocks(Some("7000-7999"), &[(7000, 7999)]);
}

/// `--tunnel-ids any` (FIG 2 behind the translating NAT): every ID, and no block reported.
#[test]
fn an_endpoint_drawing_from_every_tunnel_id_reports_no_block() {
    reports_blocks(Some("any"), &[]);
}

fn reports_blocks(tunnel_ids: Option<&str>, blocks: &[(u16, u16)]) {
    let master = UdpSocket::bind("127.0.0.1:0").unwrap();
    master
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let args = EndpointArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        secret: None,
        hidden: false,
        host_name: "te-test".to_string(),
        duration: Some(Duration::from_millis(500)),
        pcap: None,
        json: false,
        status: None,
        master: Some(master.local_addr().unwrap().to_string().parse().unwrap()),
        report_key: Some("cluster-key".to_string()),
        report_key_file: None,
        secret_file: None,
        report_interval: Duration::from_millis(100),
        name: "te7".to_string(),
        tunnel_ids: tunnel_ids.map(str::to_string),
        lan: None,
        global: Some("198.18.0.17".parse().unwrap()),
        capacity: 123,
        takeover: Default::default(),
        max_retransmits: 5,
        refuse_outgoing: false,
        metrics: None,
    };
    let server = std::thread::spawn(move || execute(&args, |_| {}));
    let mut buf = [0u8; 2048];
    let mut sequences = Vec::new();
    while sequences.len() < 3 {
        let (len, _) = master.recv_from(&mut buf).expect("a load report");
        let report = open(&buf[..len], b"cluster-key").expect("authentic report");
        assert_eq!(report.endpoint, "te7");
        assert_eq!(report.tunnel_ids, blocks);
        assert_eq!(report.capacity, 123);
        assert_eq!(report.global_addr, Some("198.18.0.17".parse().unwrap()));
        assert_eq!(
            report.lan_addr,
            "127.0.0.1".parse::<std::net::Ipv4Addr>().unwrap()
        );
        assert_eq!(report.state, EndpointState::InService);
        assert!(
            open(&buf[..len], b"another key").is_err(),
            "forgery accepted"
        );
        sequences.push(report.sequence);
    }
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
    server.join().unwrap().expect("endpoint run");
}

#[test]
fn reporting_flags_are_checked() {
    let base = EndpointArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        secret: None,
        hidden: false,
        host_name: "te".to_string(),
        duration: Some(Duration::from_millis(100)),
        pcap: None,
        json: false,
        status: None,
        master: Some("127.0.0.1:1702".parse().unwrap()),
        report_key: None,
        report_key_file: None,
        secret_file: None,
        report_interval: Duration::from_secs(1),
        name: "te".to_string(),
        tunnel_ids: Some("1-10".to_string()),
        lan: None,
        global: None,
        capacity: 10,
        takeover: Default::default(),
        max_retransmits: 5,
        refuse_outgoing: false,
        metrics: None,
    };
    let err = execute(&base, |_| {}).unwrap_err().to_string();
    assert!(err.contains("--report-key"), "{err}");
    let bad_ids = EndpointArgs {
        report_key: Some("k".to_string()),
        report_key_file: None,
        secret_file: None,
        tunnel_ids: Some("10-1".to_string()),
        ..base
    };
    let err = execute(&bad_ids, |_| {}).unwrap_err().to_string();
    assert!(err.contains("--tunnel-ids"), "{err}");
    let no_ids = EndpointArgs {
        report_key: Some("k".to_string()),
        report_key_file: None,
        secret_file: None,
        tunnel_ids: None,
        ..bad_ids
    };
    let err = execute(&no_ids, |_| {}).unwrap_err().to_string();
    assert!(
        err.contains("--master needs --tunnel-ids") && err.contains("or any"),
        "{err}"
    );
}
