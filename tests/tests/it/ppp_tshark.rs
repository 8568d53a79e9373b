//! PPP in our captures against tshark: `l2tpkit endpoint` (CHAP, PAP, CHAP with IPv6CP) and
//! `l2tpkit lac` run on loopback, each writing a pcap. tshark must decode every L2TP data
//! message of both captures as PPP with nothing malformed, and its `lcp`, `chap`, `pap`,
//! `ipcp` and `ipv6cp` fields must say, frame by frame, what our `ppp::describe` says; the
//! values must also be the ones the test configured (user names, the pool, the auth protocol).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use l2tp::capture::{CaptureReader, CaptureWriter, Linktype, RecordKind};
use l2tp::ppp::describe::{describe, ConfigOption, Detail};
use l2tp::ppp::frame::{protocol, push_option, FrameRepr, PacketRepr as FramePacket};
use l2tp::wire::message::ParseOptions;
use l2tp::wire::{HeaderRepr, PacketRepr};
use l2tpkit::endpoint::{execute_with, AuthName, EndpointArgs, PppArgs};
use l2tpkit::lac::{execute as run_lac, AuthChoice, LacArgs, PppLevel};
use l2tpkit_tests::{require, tshark_fields};
use reference::endpoint::icmp;

const TUNNELS: usize = 3;
const SESSIONS_PER_TUNNEL: usize = 4;
const PASSWORD: &str = "tshark-pw";
const POOL: &str = "198.19.131.0/24";
const ENDPOINT_NAME: &str = "ep-tshark";

/// One PPP frame's fields, as either decoder reads them. Lists keep tshark's order (the
/// option order in the packet).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct PppFields {
    protocol: u16,
    code: Option<u8>,
    identifier: Option<u8>,
    /// `lcp.opt.type`, `ipcp.opt.type`, `ipv6cp.opt.type`.
    option_types: Vec<u8>,
    mru: Vec<u16>,
    auth_protocol: Vec<u16>,
    algorithm: Vec<u8>,
    /// Magic-Number options, and the magic number of Echo and Discard packets.
    magic: Vec<u32>,
    rejected_protocol: Option<u16>,
    ip_address: Vec<Ipv4Addr>,
    dns: Vec<Ipv4Addr>,
    /// Hex, 16 digits.
    interface_id: Vec<String>,
    chap_name: Option<String>,
    chap_value_size: Option<usize>,
    peer_id: Option<String>,
    message: Option<String>,
    /// The source and destination of an IPv4 packet inside PPP, and its ICMP type.
    ip: Option<(Ipv4Addr, Ipv4Addr)>,
    icmp_type: Option<u8>,
}

/// One frame of ours: who sent it and what it says.
#[derive(Debug)]
struct Frame {
    src: SocketAddrV4,
    fields: PppFields,
}

fn option_type(proto: u16, option: &ConfigOption) -> u8 {
    match (proto, option) {
        (_, ConfigOption::Mru(_)) => 1,
        (_, ConfigOption::AuthProtocol { .. }) => 3,
        (_, ConfigOption::MagicNumber(_)) => 5,
        (_, ConfigOption::Pfc) => 7,
        (_, ConfigOption::Acfc) => 8,
        (_, ConfigOption::IpAddress(_)) => 3,
        (_, ConfigOption::PriDnsAddress(_)) => 129,
        (_, ConfigOption::SecDnsAddress(_)) => 131,
        (_, ConfigOption::InterfaceIdentifier(_)) => 1,
        (_, ConfigOption::Unknown { kind, .. }) => *kind,
    }
}

/// Every PPP frame of the L2TP data messages in `path`, by frame number, read by our decoder.
fn ours(path: &Path) -> BTreeMap<u64, Frame> {
    let mut reader = CaptureReader::open(path).expect("open capture");
    let mut frames = BTreeMap::new();
    while let Some(record) = reader.next_datagram() {
        let record = record.unwrap_or_else(|err| panic!("{err}"));
        let RecordKind::Udp(datagram) = record.kind else {
            continue;
        };
        let parsed = PacketRepr::parse(datagram.payload, &ParseOptions { secret: None })
            .unwrap_or_else(|err| panic!("{}: frame {}: {err}", path.display(), record.index));
        let PacketRepr::Data { payload, .. } = parsed else {
            continue;
        };
        let summary = describe(payload);
        assert_eq!(
            summary.malformed,
            None,
            "{}: frame {}: our decoder: {summary:?}",
            path.display(),
            record.index
        );
        let proto = summary.protocol.expect("a PPP protocol");
        let mut fields = PppFields {
            protocol: proto,
            ..PppFields::default()
        };
        if let Some(ip) = &summary.ip {
            if let (IpAddr::V4(src), IpAddr::V4(dst)) = (ip.src, ip.dst) {
                fields.ip = Some((src, dst));
            }
            fields.icmp_type = ip.icmp.map(|icmp| icmp.kind);
        }
        if let Some(control) = &summary.control {
            fields.code = Some(control.code);
            fields.identifier = Some(control.identifier);
            match &control.detail {
                Detail::None | Detail::CodeReject { .. } => {}
                Detail::Options { options } => {
                    for option in options {
                        fields.option_types.push(option_type(proto, option));
                        match option {
                            ConfigOption::Mru(mru) => fields.mru.push(*mru),
                            ConfigOption::AuthProtocol {
                                protocol,
                                algorithm,
                            } => {
                                fields.auth_protocol.push(*protocol);
                                fields.algorithm.extend(algorithm);
                            }
                            ConfigOption::MagicNumber(m) => fields.magic.push(*m),
                            ConfigOption::IpAddress(a) => fields.ip_address.push(*a),
                            ConfigOption::PriDnsAddress(a) | ConfigOption::SecDnsAddress(a) => {
                                fields.dns.push(*a)
                            }
                            ConfigOption::InterfaceIdentifier(id) => {
                                fields.interface_id.push(format!("{:016x}", id.0))
                            }
                            ConfigOption::Pfc | ConfigOption::Acfc => {}
                            ConfigOption::Unknown { .. } => {}
                        }
                    }
                }
                Detail::Magic { magic_number } => fields.magic.push(*magic_number),
                Detail::ProtocolReject { rejected_protocol } => {
                    fields.rejected_protocol = Some(*rejected_protocol)
                }
                Detail::PapRequest { peer_id, .. } => fields.peer_id = Some(peer_id.clone()),
                Detail::Message { message } => fields.message = text(message),
                Detail::ChapValue { value_size, name } => {
                    fields.chap_value_size = Some(*value_size);
                    fields.chap_name = Some(name.clone());
                }
            }
        }
        frames.insert(
            record.index,
            Frame {
                src: datagram.src,
                fields,
            },
        );
    }
    frames
}

/// tshark's fields, in this order (`-e`).
const FIELDS: &[&str] = &[
    "frame.number",
    "ppp.protocol",
    "ppp.code",
    "ppp.identifier",
    "chap.code",
    "chap.identifier",
    "pap.code",
    "pap.identifier",
    "lcp.opt.type",
    "ipcp.opt.type",
    "ipv6cp.opt.type",
    "lcp.opt.mru",
    "lcp.opt.auth_protocol",
    "lcp.opt.algorithm",
    "lcp.opt.magic_number",
    "lcp.magic_number",
    "lcp.rej_proto",
    "ipcp.opt.ip_address",
    "ipcp.opt.pri_dns_address",
    "ipcp.opt.sec_dns_address",
    "ipv6cp.interface_identifier",
    "chap.name",
    "chap.value_size",
    "pap.peer_id",
    "chap.message",
    "pap.message",
    "ip.src",
    "ip.dst",
    "icmp.type",
];

/// A number as tshark prints it: decimal, or hex with 0x.
fn number(s: &str) -> u64 {
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.unwrap_or_else(|err| panic!("tshark number {s:?}: {err}"))
}

fn list<T>(s: &str, f: impl Fn(&str) -> T) -> Vec<T> {
    s.split(',').filter(|v| !v.is_empty()).map(f).collect()
}

fn ipv4(s: &str) -> Ipv4Addr {
    s.parse()
        .unwrap_or_else(|err| panic!("tshark address {s:?}: {err}"))
}

fn text(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// tshark's view of each PPP frame, by frame number.
fn theirs(path: &Path, port: u16) -> BTreeMap<u64, PppFields> {
    tshark_fields(path, port, "ppp", FIELDS)
        .into_iter()
        .map(|row| {
            let col = |name: &str| {
                let i = FIELDS.iter().position(|f| *f == name).expect("a field");
                row.get(i).map_or("", String::as_str)
            };
            let first = |names: &[&str]| {
                names
                    .iter()
                    .map(|n| col(n))
                    .find(|v| !v.is_empty())
                    .map(|v| number(v.split(',').next().unwrap_or(v)) as u8)
            };
            let mut option_types = list(col("lcp.opt.type"), |v| number(v) as u8);
            option_types.extend(list(col("ipcp.opt.type"), |v| number(v) as u8));
            option_types.extend(list(col("ipv6cp.opt.type"), |v| number(v) as u8));
            let mut magic = list(col("lcp.opt.magic_number"), |v| number(v) as u32);
            magic.extend(list(col("lcp.magic_number"), |v| number(v) as u32));
            let mut dns = list(col("ipcp.opt.pri_dns_address"), ipv4);
            dns.extend(list(col("ipcp.opt.sec_dns_address"), ipv4));
            let message = text(col("chap.message")).or_else(|| text(col("pap.message")));
            // The outer IPv4 header (UDP) first, then the one inside PPP.
            let inner = |name: &str| col(name).split(',').nth(1).map(ipv4);
            let ip = inner("ip.src").zip(inner("ip.dst"));
            let fields = PppFields {
                protocol: number(col("ppp.protocol")) as u16,
                code: first(&["ppp.code", "chap.code", "pap.code"]),
                identifier: first(&["ppp.identifier", "chap.identifier", "pap.identifier"]),
                option_types,
                mru: list(col("lcp.opt.mru"), |v| number(v) as u16),
                auth_protocol: list(col("lcp.opt.auth_protocol"), |v| number(v) as u16),
                algorithm: list(col("lcp.opt.algorithm"), |v| number(v) as u8),
                magic,
                rejected_protocol: text(col("lcp.rej_proto")).map(|v| number(&v) as u16),
                ip_address: list(col("ipcp.opt.ip_address"), ipv4),
                dns,
                interface_id: list(col("ipv6cp.interface_identifier"), |v| {
                    v.replace(':', "").to_lowercase()
                }),
                chap_name: text(col("chap.name")),
                chap_value_size: text(col("chap.value_size")).map(|v| number(&v) as usize),
                peer_id: text(col("pap.peer_id")),
                message,
                ip,
                icmp_type: text(col("icmp.type")).map(|v| number(&v) as u8),
            };
            (number(col("frame.number")), fields)
        })
        .collect()
}

/// tshark flags nothing in `path`: no malformed packet, no expert info of error severity, no
/// L2TP data message left undecoded as PPP. Returns how many data messages it decoded.
fn nothing_malformed(path: &Path, port: u16) -> usize {
    let flagged = tshark_fields(
        path,
        port,
        "_ws.malformed || _ws.expert.severity == error",
        &["frame.number", "_ws.expert.message"],
    );
    assert!(
        flagged.is_empty(),
        "{}: tshark flags {flagged:?}",
        path.display()
    );
    let not_ppp = tshark_fields(path, port, "l2tp.type == 0 && !ppp", &["frame.number"]);
    assert!(
        not_ppp.is_empty(),
        "{}: data messages not decoded as PPP: {not_ppp:?}",
        path.display()
    );
    tshark_fields(path, port, "l2tp.type == 0 && ppp", &["frame.number"]).len()
}

/// Both decoders agree on every PPP frame of `path`; returns our frames.
fn agree(path: &Path, port: u16) -> BTreeMap<u64, Frame> {
    let data_messages = nothing_malformed(path, port);
    let ours = ours(path);
    let theirs = theirs(path, port);
    assert!(!ours.is_empty(), "{}: no PPP frames", path.display());
    assert_eq!(data_messages, ours.len(), "{}", path.display());
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>(),
        "{}: the frames with PPP differ",
        path.display()
    );
    for (number, frame) in &ours {
        assert_eq!(
            frame.fields,
            theirs[number],
            "{}: frame {number} (left: ours, right: tshark)",
            path.display()
        );
    }
    ours
}

struct Scenario {
    name: &'static str,
    auth: AuthName,
    choice: AuthChoice,
    ipv6: bool,
    /// The third octet of 127.0.X.1 (endpoint) and 127.0.X.2 (LAC).
    net: u8,
}

/// What one scenario left: its two captures, the endpoint's port, the LAC's address.
struct Run {
    endpoint_pcap: PathBuf,
    lac_pcap: PathBuf,
    port: u16,
    lac_ip: Ipv4Addr,
}

fn usernames() -> BTreeSet<String> {
    (1..=TUNNELS * SESSIONS_PER_TUNNEL)
        .map(|n| format!("sub{n}@tshark.test"))
        .collect()
}

fn run(scenario: &Scenario, dir: &Path) -> Run {
    let users = dir.join(format!("{}-users", scenario.name));
    let text: String = usernames()
        .iter()
        .map(|u| format!("{u}:{PASSWORD}\n"))
        .collect();
    std::fs::write(&users, text).expect("users file");
    let endpoint_pcap = dir.join(format!("{}-endpoint.pcap", scenario.name));
    let lac_pcap = dir.join(format!("{}-lac.pcap", scenario.name));
    let endpoint_ip = Ipv4Addr::new(127, 0, scenario.net, 1);
    let lac_ip = Ipv4Addr::new(127, 0, scenario.net, 2);
    let args = EndpointArgs {
        listen: SocketAddrV4::new(endpoint_ip, 0),
        secret: None,
        hidden: false,
        host_name: ENDPOINT_NAME.to_string(),
        // Long enough for the LAC's run (setup, a second's hold, teardown).
        duration: Some(Duration::from_secs(10)),
        pcap: Some(endpoint_pcap.clone()),
        json: false,
        status: None,
        ..EndpointArgs::default()
    };
    let ppp = PppArgs {
        auth: Some(scenario.auth),
        users: Some(users),
        pool: POOL.parse().unwrap(),
        ipv6: scenario.ipv6,
        ..PppArgs::default()
    };
    let (tx, rx) = mpsc::channel();
    let endpoint = std::thread::spawn(move || {
        execute_with(&args, &ppp, |addr| {
            let _ = tx.send(addr);
        })
    });
    let target = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the endpoint to listen");
    let lac = LacArgs {
        target,
        bind: SocketAddrV4::new(lac_ip, 0),
        tunnels: TUNNELS,
        sessions_per_tunnel: SESSIONS_PER_TUNNEL,
        hold: Duration::from_secs(1),
        echo_rate: 2.0,
        setup_timeout: Some(Duration::from_secs(5)),
        pcap: Some(lac_pcap.clone()),
        ppp: PppLevel::Ip,
        auth: scenario.choice,
        username: "sub{n}@tshark.test".to_string(),
        password: PASSWORD.to_string(),
        ipv6: scenario.ipv6,
        ..LacArgs::default()
    };
    let (report, _) = run_lac(&lac).expect("the LAC ran");
    assert!(report.success(), "{}: {report}", scenario.name);
    assert_eq!(
        report.sessions_ip_up,
        TUNNELS * SESSIONS_PER_TUNNEL,
        "{}: {report}",
        scenario.name
    );
    let stats = endpoint.join().unwrap().expect("the endpoint ran");
    let opened = stats.ppp.expect("PPP counters").sessions_opened;
    assert_eq!(opened as usize, TUNNELS * SESSIONS_PER_TUNNEL);
    Run {
        endpoint_pcap,
        lac_pcap,
        port: target.port(),
        lac_ip,
    }
}

/// What the test configured, in what tshark (and we) read from one capture.
fn configured(scenario: &Scenario, run: &Run, frames: &BTreeMap<u64, Frame>, path: &Path) {
    let from_lac = |f: &&Frame| *f.src.ip() == run.lac_ip;
    let pool: reference::endpoint::pool::Ipv4Cidr = POOL.parse().unwrap();
    // The endpoint keeps the pool's first address for itself.
    let own = Ipv4Addr::new(198, 19, 131, 1);
    let with = |proto: u16, code: u8| {
        let frames = frames.values();
        frames.filter(move |f| f.fields.protocol == proto && f.fields.code == Some(code))
    };
    let where_ = path.display();
    // The endpoint asks for the protocol it was told to (CHAP with MD5: algorithm 5).
    let (auth_protocol, algorithm) = match scenario.auth {
        AuthName::Chap => (protocol::CHAP, vec![5]),
        AuthName::Pap => (protocol::PAP, vec![]),
        AuthName::None => unreachable!("every scenario authenticates"),
    };
    let requests: Vec<&Frame> = with(protocol::LCP, 1).filter(|f| !from_lac(f)).collect();
    assert!(!requests.is_empty(), "{where_}");
    for f in &requests {
        assert_eq!(
            f.fields.auth_protocol,
            vec![auth_protocol],
            "{where_}: {f:?}"
        );
        assert_eq!(f.fields.algorithm, algorithm, "{where_}: {f:?}");
        assert!(f.fields.magic.iter().all(|m| *m != 0), "{where_}: {f:?}");
    }
    // Every subscriber named itself with its own name, once per session.
    let names: BTreeSet<String> = match scenario.auth {
        AuthName::Chap => {
            let challenges = with(protocol::CHAP, 1).filter(|f| !from_lac(f));
            for f in challenges {
                assert_eq!(
                    f.fields.chap_name.as_deref(),
                    Some(ENDPOINT_NAME),
                    "{where_}"
                );
            }
            let responses = with(protocol::CHAP, 2).filter(from_lac);
            responses
                .filter_map(|f| f.fields.chap_name.clone())
                .collect()
        }
        _ => with(protocol::PAP, 1)
            .filter(from_lac)
            .filter_map(|f| f.fields.peer_id.clone())
            .collect(),
    };
    assert_eq!(names, usernames(), "{where_}");
    // IPCP: the endpoint acks one address from the pool per subscriber, never twice, never
    // its own, which it asks for itself.
    let acked: Vec<Ipv4Addr> = with(protocol::IPCP, 2)
        .filter(|f| !from_lac(f))
        .flat_map(|f| f.fields.ip_address.clone())
        .collect();
    let unique: BTreeSet<Ipv4Addr> = acked.iter().copied().collect();
    assert_eq!(
        acked.len(),
        TUNNELS * SESSIONS_PER_TUNNEL,
        "{where_}: {acked:?}"
    );
    assert_eq!(unique.len(), acked.len(), "{where_}: {acked:?}");
    assert!(
        unique.iter().all(|a| pool.contains(*a) && *a != own),
        "{where_}: {acked:?}"
    );
    let endpoint_asks: BTreeSet<Ipv4Addr> = with(protocol::IPCP, 1)
        .filter(|f| !from_lac(f))
        .flat_map(|f| f.fields.ip_address.clone())
        .collect();
    assert_eq!(endpoint_asks, BTreeSet::from([own]), "{where_}");
    // IPv6CP ran exactly when asked for, with non-zero interface identifiers.
    let ipv6cp: Vec<&Frame> = with(protocol::IPV6CP, 2).collect();
    if scenario.ipv6 {
        assert_eq!(ipv6cp.len(), 2 * TUNNELS * SESSIONS_PER_TUNNEL, "{where_}");
        for f in ipv6cp {
            assert_eq!(f.fields.interface_id.len(), 1, "{where_}: {f:?}");
            assert_ne!(f.fields.interface_id[0], "0000000000000000", "{where_}");
        }
    } else {
        assert!(ipv6cp.is_empty(), "{where_}");
    }
}

#[test]
fn tshark_reads_every_ppp_frame_of_both_sides_as_we_do() {
    if !require("tshark") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("l2tpkit-ppp-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let scenarios = [
        Scenario {
            name: "chap",
            auth: AuthName::Chap,
            choice: AuthChoice::Chap,
            ipv6: false,
            net: 113,
        },
        Scenario {
            name: "pap",
            auth: AuthName::Pap,
            choice: AuthChoice::Pap,
            ipv6: false,
            net: 114,
        },
        Scenario {
            name: "chap-ipv6",
            auth: AuthName::Chap,
            choice: AuthChoice::Auto,
            ipv6: true,
            net: 115,
        },
    ];
    // The scenarios at once: each endpoint runs for its whole --duration.
    let runs: Vec<Run> = std::thread::scope(|s| {
        let handles: Vec<_> = scenarios
            .iter()
            .map(|scenario| s.spawn(|| run(scenario, &dir)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (scenario, run) in scenarios.iter().zip(&runs) {
        for path in [&run.endpoint_pcap, &run.lac_pcap] {
            let frames = agree(path, run.port);
            configured(scenario, run, &frames, path);
            eprintln!("{}: {} PPP frames agree", path.display(), frames.len());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A PPP control packet in a frame: `header` (ACFC, PFC), protocol, code, identifier, data.
fn control(header: FrameRepr, code: u8, identifier: u8, data: &[u8]) -> Vec<u8> {
    let mut info = Vec::new();
    let packet = FramePacket {
        code,
        identifier,
        data,
    };
    packet.emit_to_vec(&mut info).expect("a short packet");
    let mut frame = Vec::new();
    header.emit_to_vec(&info, &mut frame);
    frame
}

fn options(list: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (kind, value) in list {
        push_option(&mut out, *kind, value);
    }
    out
}

/// `value`, length-prefixed (PAP's Peer-ID, Password, Message; CHAP's Value).
fn prefixed(value: &[u8]) -> Vec<u8> {
    let mut out = vec![value.len() as u8];
    out.extend_from_slice(value);
    out
}

/// Frames written here with every LCP option our tools read (MRU too, which neither side
/// asks for by default), the codes besides Configure, PAP and CHAP both ways, IPCP with
/// RFC 1877 DNS, and IPv4 with ACFC and PFC; each with the fields it must read as.
fn hand_made() -> Vec<(Vec<u8>, PppFields)> {
    let full = FrameRepr::full;
    let (lcp, pap, chap, ipcp, ipv6cp) = (
        protocol::LCP,
        protocol::PAP,
        protocol::CHAP,
        protocol::IPCP,
        protocol::IPV6CP,
    );
    let want = |protocol: u16, code: u8, identifier: u8| PppFields {
        protocol,
        code: Some(code),
        identifier: Some(identifier),
        ..PppFields::default()
    };
    let magic = 0x0102_0304u32.to_be_bytes();
    let mut out = Vec::new();
    let lcp_request = options(&[
        (1, &1400u16.to_be_bytes()),
        (3, &[0xc0, 0x23]),
        (5, &magic),
        (7, &[]),
        (8, &[]),
    ]);
    out.push((
        control(full(lcp), 1, 1, &lcp_request),
        PppFields {
            option_types: vec![1, 3, 5, 7, 8],
            mru: vec![1400],
            auth_protocol: vec![pap],
            magic: vec![0x0102_0304],
            ..want(lcp, 1, 1)
        },
    ));
    let chap_request = options(&[(3, &[0xc2, 0x23, 5]), (1, &1492u16.to_be_bytes())]);
    out.push((
        control(full(lcp), 2, 7, &chap_request),
        PppFields {
            option_types: vec![3, 1],
            mru: vec![1492],
            auth_protocol: vec![chap],
            algorithm: vec![5],
            ..want(lcp, 2, 7)
        },
    ));
    out.push((
        control(full(lcp), 3, 2, &options(&[(1, &1500u16.to_be_bytes())])),
        PppFields {
            option_types: vec![1],
            mru: vec![1500],
            ..want(lcp, 3, 2)
        },
    ));
    out.push((
        control(full(lcp), 4, 3, &options(&[(7, &[]), (8, &[])])),
        PppFields {
            option_types: vec![7, 8],
            ..want(lcp, 4, 3)
        },
    ));
    for (code, id) in [(9u8, 4u8), (10, 4), (11, 5)] {
        let mut data = 0xdead_beefu32.to_be_bytes().to_vec();
        data.extend_from_slice(b"ping");
        out.push((
            control(full(lcp), code, id, &data),
            PppFields {
                magic: vec![0xdead_beef],
                ..want(lcp, code, id)
            },
        ));
    }
    out.push((
        control(full(lcp), 8, 6, &[0x82, 0x81, 0, 0]),
        PppFields {
            rejected_protocol: Some(0x8281),
            ..want(lcp, 8, 6)
        },
    ));
    out.push((control(full(lcp), 5, 8, b""), want(lcp, 5, 8)));
    let mut pap_request = prefixed(b"alice@example.net");
    pap_request.extend(prefixed(b"secret"));
    out.push((
        control(full(pap), 1, 9, &pap_request),
        PppFields {
            peer_id: Some("alice@example.net".into()),
            ..want(pap, 1, 9)
        },
    ));
    for (code, message) in [(2u8, "welcome"), (3, "bad password")] {
        out.push((
            control(full(pap), code, 9, &prefixed(message.as_bytes())),
            PppFields {
                message: Some(message.into()),
                ..want(pap, code, 9)
            },
        ));
    }
    for (code, name) in [(1u8, "lns"), (2, "bob@example.net")] {
        let mut data = prefixed(&[0x5a; 16]);
        data.extend_from_slice(name.as_bytes());
        out.push((
            control(full(chap), code, 42, &data),
            PppFields {
                chap_name: Some(name.into()),
                chap_value_size: Some(16),
                ..want(chap, code, 42)
            },
        ));
    }
    for (code, message) in [(3u8, "ok"), (4, "nope")] {
        out.push((
            control(full(chap), code, 42, message.as_bytes()),
            PppFields {
                message: Some(message.into()),
                ..want(chap, code, 42)
            },
        ));
    }
    let (me, dns1, dns2) = (
        Ipv4Addr::new(10, 9, 0, 2),
        Ipv4Addr::new(10, 9, 0, 53),
        Ipv4Addr::new(10, 9, 0, 54),
    );
    let ipcp_options = options(&[
        (3, &me.octets()),
        (129, &dns1.octets()),
        (131, &dns2.octets()),
    ]);
    for code in [1u8, 3] {
        out.push((
            control(full(ipcp), code, 11, &ipcp_options),
            PppFields {
                option_types: vec![3, 129, 131],
                ip_address: vec![me],
                dns: vec![dns1, dns2],
                ..want(ipcp, code, 11)
            },
        ));
    }
    let id = 0x0011_2233_4455_6677u64;
    out.push((
        control(full(ipv6cp), 1, 12, &options(&[(1, &id.to_be_bytes())])),
        PppFields {
            option_types: vec![1],
            interface_id: vec![format!("{id:016x}")],
            ..want(ipv6cp, 1, 12)
        },
    ));
    let peer = Ipv4Addr::new(10, 9, 0, 1);
    for (acfc, pfc) in [(false, false), (true, false), (false, true), (true, true)] {
        let echo = icmp::build_echo(8, me, peer, 7, &[0, 1, 0xab, 0xcd]);
        let mut frame = Vec::new();
        let header = FrameRepr {
            protocol: protocol::IPV4,
            acfc,
            pfc,
        };
        header.emit_to_vec(&echo, &mut frame);
        out.push((
            frame,
            PppFields {
                protocol: protocol::IPV4,
                ip: Some((me, peer)),
                icmp_type: Some(8),
                ..PppFields::default()
            },
        ));
    }
    out
}

#[test]
fn tshark_reads_hand_made_ppp_frames_as_we_do_and_as_they_were_made() {
    if !require("tshark") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("l2tpkit-ppp-hand-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join("hand-made.pcap");
    let mut writer = CaptureWriter::create(&path, Linktype::RAW).expect("create pcap");
    let lac: SocketAddrV4 = "127.0.116.2:1701".parse().unwrap();
    let lns: SocketAddrV4 = "127.0.116.1:1701".parse().unwrap();
    let frames = hand_made();
    for (i, (frame, _)) in frames.iter().enumerate() {
        let message = PacketRepr::Data {
            header: HeaderRepr {
                is_control: false,
                has_length: i % 2 == 0,
                tunnel_id: 5,
                session_id: 6,
                sequence: None,
                offset_size: None,
                priority: false,
                reserved: 0,
            },
            payload: frame,
        };
        let mut buf = vec![0; message.buffer_len()];
        let len = message.emit(&mut buf, None).expect("emit");
        let at = Duration::from_millis(i as u64);
        writer.write_udp(at, lac, lns, &buf[..len]).expect("write");
    }
    writer.flush().expect("flush");
    drop(writer);
    let ours = agree(&path, 1701);
    assert_eq!(ours.len(), frames.len());
    for ((number, frame), (_, made)) in ours.iter().zip(&frames) {
        assert_eq!(&frame.fields, made, "frame {number}: ours, as made");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
