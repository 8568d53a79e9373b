//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the same harness
//! functions the cargo-fuzz targets run (`fuzz/harness.rs`, included here, not copied), so every
//! input a fuzzer kept, crash regressions included, stays covered by the normal test run.
//!
//! It also makes the seeds: `L2TPKIT_WRITE_FUZZ_SEEDS=1 cargo test -p l2tpkit-tests --test it
//! fuzz_corpus::` writes them into the corpus as `seed-*` files. Seeds are real conversations
//! (our LAC against the node under test, the xl2tpd captures, the codec's samples), and the
//! tests below check that they reach deep states, so the fuzzers start from there.

#[allow(dead_code)]
#[path = "../../../fuzz/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../../../fuzz/ppp_harness.rs"]
mod ppp_harness;

use std::fs;
use std::io::Cursor;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::Duration;

use harness::{push_record, NodeFlags, Sent};
use l2tp::capture::{CaptureReader, CaptureWriter, Linktype, RecordKind};
use l2tp::conn::tunnel::{Event, ResultCode, TunnelConfig};
use l2tp::conn::tunnels::TunnelSet;
use l2tp::ppp::LcpEcho;
use l2tp::time::Instant;
use l2tp::wire::samples;
use l2tpkit_tests::repo_root;

/// Fewer files than this in a target's corpus means the corpus went missing: fail loudly.
const MIN_CORPUS: usize = 5;

fn corpus_dir(target: &str) -> PathBuf {
    repo_root().join("fuzz").join("corpus").join(target)
}

/// Named inputs: a corpus directory's files, or seeds.
type Inputs = Vec<(String, Vec<u8>)>;

fn corpus(target: &str) -> Inputs {
    let dir = corpus_dir(target);
    let entries = fs::read_dir(&dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    let mut files: Inputs = entries
        .map(|entry| entry.expect("corpus directory entry").path())
        .filter(|path| path.is_file())
        .map(|path| {
            let bytes = fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            (name.into_owned(), bytes)
        })
        .collect();
    files.sort();
    files
}

/// Runs every corpus file of `target` through `run`; a panic on any of them fails the test and
/// names every file that panicked.
fn replay<T>(target: &str, run: fn(&[u8]) -> T) {
    let files = corpus(target);
    assert!(
        files.len() >= MIN_CORPUS,
        "fuzz/corpus/{target} holds {} files, expected at least {MIN_CORPUS}",
        files.len()
    );
    let failed: Vec<String> = files
        .iter()
        .filter(|(_, bytes)| panic::catch_unwind(AssertUnwindSafe(|| run(bytes))).is_err())
        .map(|(name, _)| name.clone())
        .collect();
    assert!(
        failed.is_empty(),
        "fuzz/corpus/{target}: {} of {} inputs panicked: {failed:?}",
        failed.len(),
        files.len()
    );
    println!("fuzz/corpus/{target}: {} inputs replayed", files.len());
}

#[test]
fn codec_corpus() {
    replay("codec", harness::codec);
}

#[test]
fn node_corpus() {
    replay("node", harness::node);
}

#[test]
fn forwarders_corpus() {
    replay("forwarders", harness::forwarders);
}

#[test]
fn capture_corpus() {
    replay("capture", harness::capture);
}

#[test]
fn ppp_corpus() {
    replay("ppp", ppp_harness::ppp);
}

// ------------------------------------------------------------------------------------------
// seeds

/// Node settings the seed conversations run with: plain, tunnel authentication with hidden
/// AVPs, sequenced data with an Offset Pad, and a cluster endpoint with a Tie Breaker.
const SEED_FLAGS: [(&str, u8); 4] = [
    ("plain", 0),
    ("secret-hidden", NodeFlags::SECRET | NodeFlags::HIDE),
    (
        "sequencing-offset",
        NodeFlags::SEQUENCING | NodeFlags::OFFSET,
    ),
    (
        "cluster",
        NodeFlags::CLUSTER | NodeFlags::TIE_BREAKER | NodeFlags::SECRET,
    ),
];

/// One datagram of a seed conversation.
struct Exchange {
    lac_to_node: bool,
    bytes: Vec<u8>,
}

/// Our LAC (`TunnelSet`, as `l2tpkit lac` runs it) against the node under test, everything
/// delivered at once: tunnel, an incoming call, an LCP echo both ways, CDN, StopCCN. Returns
/// the node target's input (the LAC's datagrams as records, so that the harness replays the
/// very same conversation) and every datagram in order.
fn conversation(flags: u8) -> (Vec<u8>, Vec<Exchange>) {
    let lac_peer = harness::PEERS[0];
    let mut node = harness::Node::new(NodeFlags(flags));
    let config = NodeFlags(flags).config();
    let mut lac = TunnelSet::new(
        TunnelConfig {
            host_name: "seed-lac".to_string(),
            tie_breaker: None,
            ..config
        },
        7,
        false,
    );
    let now = Instant::ZERO;
    let mut input = vec![flags];
    let mut log = Vec::new();
    let mut sent: Vec<Sent> = Vec::new();
    node.pump(&mut sent);
    sent.clear();
    lac.connect(now, harness::NODE_ADDR);
    let mut buf = Vec::new();
    let (mut echoed, mut hung_up) = (false, false);
    // The echo waits one turn: data sent at SessionUp would leave ahead of the ICCN still
    // queued (`Tunnel::poll_transmit` sends data first) and the node would drop it.
    let mut echo: Option<(u16, u16)> = None;
    for _ in 0..64 {
        if let Some((tunnel, session_id)) = echo.take() {
            if let Some(t) = lac.tunnel_mut(tunnel) {
                t.send_data(session_id, &LcpEcho::request(1, 0x4c32_5451).to_frame());
            }
        }
        while let Some((tunnel, event)) = lac.poll_event() {
            match event {
                Event::TunnelUp { .. } => {
                    if let Some(t) = lac.tunnel_mut(tunnel) {
                        t.open_incoming_call();
                    }
                }
                Event::SessionUp { session_id, .. } => echo = Some((tunnel, session_id)),
                Event::Data { session_id, frame } if !echoed => {
                    echoed = LcpEcho::parse(&frame).is_some_and(|e| e.reply);
                    if let Some(t) = lac.tunnel_mut(tunnel) {
                        t.close_session(session_id, ResultCode::new(3));
                    }
                }
                Event::SessionDown { .. } if !hung_up => {
                    hung_up = true;
                    if let Some(t) = lac.tunnel_mut(tunnel) {
                        t.close(now, ResultCode::new(1));
                    }
                }
                _ => {}
            }
        }
        let mut quiet = true;
        while let Some(to) = lac.poll_transmit(now, &mut buf) {
            assert_eq!(to, harness::NODE_ADDR);
            quiet = false;
            // Advance code 0, peer 0: what `harness::node` replays as `node.receive` below.
            push_record(&mut input, 0, &buf);
            log.push(Exchange {
                lac_to_node: true,
                bytes: buf.clone(),
            });
            node.run_until(node.now, &mut sent);
            node.receive(lac_peer, &buf, &mut sent);
        }
        for datagram in sent.drain(..) {
            quiet = false;
            assert_eq!(datagram.to, lac_peer);
            lac.handle(now, harness::NODE_ADDR, &datagram.bytes);
            log.push(Exchange {
                lac_to_node: false,
                bytes: datagram.bytes,
            });
        }
        if quiet {
            break;
        }
    }
    assert!(echoed, "flags {flags:#x}: the LCP echo got no reply");
    assert!(hung_up, "flags {flags:#x}: the call did not end");
    (input, log)
}

/// The UDP payloads of one capture in `captures/`, with their addresses.
fn capture_datagrams(name: &str) -> Vec<(SocketAddrV4, SocketAddrV4, Vec<u8>)> {
    let path = repo_root().join("captures").join(name);
    let mut reader = CaptureReader::open(&path).unwrap_or_else(|err| panic!("{err}"));
    let mut out = Vec::new();
    while let Some(record) = reader.next_datagram() {
        let record = record.unwrap_or_else(|err| panic!("{err}"));
        if let RecordKind::Udp(udp) = record.kind {
            out.push((udp.src, udp.dst, udp.payload.to_vec()));
        }
    }
    assert!(!out.is_empty(), "{name}: no UDP datagrams");
    out
}

const CAPTURES: [&str; 5] = [
    "xl2tpd-basic.pcap",
    "xl2tpd-hello.pcap",
    "xl2tpd-secret.pcap",
    "xl2tpd-hidden.pcap",
    "xl2tpd-hidden-stock.pcap",
];

fn codec_seeds() -> Inputs {
    let mut seeds = Vec::new();
    for (i, packet) in samples::every_message().iter().enumerate() {
        let bytes = packet.to_vec(Some(samples::SECRET)).expect("samples emit");
        seeds.push((format!("seed-sample-{i:02}"), bytes));
    }
    for name in CAPTURES {
        let stem = name.trim_end_matches(".pcap");
        for (i, (_, _, payload)) in capture_datagrams(name).into_iter().enumerate() {
            seeds.push((format!("seed-{stem}-{i:02}"), payload));
        }
    }
    seeds
}

fn node_seeds() -> Inputs {
    let mut seeds = Vec::new();
    for (name, flags) in SEED_FLAGS {
        seeds.push((format!("seed-lac-{name}"), conversation(flags).0));
    }
    // What xl2tpd's LAC sent in each capture, one record a datagram, paced as captured (the
    // advance code nearest below the gap): its SCCRQs reach our node; the rest meet Tunnel IDs
    // our node did not assign, which is a path too.
    for name in CAPTURES {
        let stem = name.trim_end_matches(".pcap");
        let flags = if stem.contains("secret") || stem.contains("hidden") {
            NodeFlags::SECRET
        } else {
            0
        };
        let mut input = vec![flags];
        let datagrams = capture_datagrams(name);
        let lac_addr = datagrams[0].0;
        for (src, _, payload) in datagrams {
            if src == lac_addr {
                push_record(&mut input, 0, &payload);
            }
        }
        seeds.push((format!("seed-{stem}"), input));
    }
    seeds
}

/// IPv4/UDP packets of a seed conversation through the FIG 2 cluster: the initiator's SCCRQ to
/// the master, the endpoint's answers through the NAT from the LAN, the initiator's later
/// messages through the NAT from the public side (and to the master, which routes them by
/// Tunnel ID); then load reports, admin commands and the status.
fn forwarders_seeds() -> Inputs {
    let initiator = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 10), 1701);
    let cluster = SocketAddrV4::new(harness::CLUSTER_ADDR, 1701);
    let endpoint = SocketAddrV4::new(harness::ENDPOINTS[0].1, 1701);
    let mut seeds = Vec::new();
    for (name, flags) in SEED_FLAGS {
        let (_, log) = conversation(flags);
        let mut input = vec![0u8];
        let mut ip_id = 0u16;
        for (i, exchange) in log.iter().enumerate() {
            let mut packet = Vec::new();
            ip_id += 1;
            let (src, dst) = if exchange.lac_to_node {
                (initiator, cluster)
            } else {
                (endpoint, initiator)
            };
            l2tp::capture::build_ipv4_udp(src, dst, &exchange.bytes, ip_id, &mut packet)
                .expect("small packets");
            let op = match (exchange.lac_to_node, i) {
                (true, 0) => 0,
                (true, _) => 2,
                (false, _) => 1,
            };
            push_record(&mut input, op, &packet);
            if exchange.lac_to_node && i > 0 {
                push_record(&mut input, 0, &packet);
            }
        }
        // A report from each endpoint, one with blocks of its own; drain, activate; status.
        push_record(&mut input, 4, &[0, 0, 3, 1, 0, 100, 0]);
        push_record(
            &mut input,
            4 | 5 << 3,
            &[1, 0x40, 7, 2, 0, 50, 1, 0x80, 0, 0x80, 0x10],
        );
        push_record(&mut input, 5, &[0, 0]);
        push_record(&mut input, 5 | 13 << 3, &[0, 2]);
        push_record(
            &mut input,
            6,
            &[0xc8, 0x02, 0x00, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0],
        );
        push_record(&mut input, 7, &[]);
        seeds.push((format!("seed-cluster-{name}"), input));
    }
    // The xl2tpd captures' L2TP payloads, wrapped for the master.
    for name in CAPTURES {
        let stem = name.trim_end_matches(".pcap");
        let mut input = vec![1u8];
        for (_, _, payload) in capture_datagrams(name) {
            let mut record = vec![0];
            record.extend_from_slice(&payload);
            push_record(&mut input, 6, &record);
        }
        seeds.push((format!("seed-{stem}"), input));
    }
    seeds
}

/// A minimal little-endian pcapng (section, one interface with microsecond resolution, one
/// Enhanced Packet Block per frame): the reader's other container.
fn pcapng(linktype: u16, frames: &[Vec<u8>]) -> Vec<u8> {
    fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
        let padded = body.len().div_ceil(4) * 4;
        let len = u32::try_from(12 + padded).expect("small block");
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(body);
        out.resize(out.len() + padded - body.len(), 0);
        out.extend_from_slice(&len.to_le_bytes());
    }
    let mut out = Vec::new();
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    block(&mut out, 0x0a0d_0d0a, &shb);
    let mut idb = Vec::new();
    idb.extend_from_slice(&linktype.to_le_bytes());
    idb.extend_from_slice(&0u16.to_le_bytes());
    idb.extend_from_slice(&65535u32.to_le_bytes());
    // if_tsresol = 6 (microseconds), then opt_endofopt.
    idb.extend_from_slice(&[9, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0]);
    block(&mut out, 1, &idb);
    for (i, frame) in frames.iter().enumerate() {
        let mut epb = Vec::new();
        let ticks = 1_700_000_000_000_000u64 + i as u64 * 1000;
        let len = u32::try_from(frame.len()).expect("small frame");
        epb.extend_from_slice(&0u32.to_le_bytes());
        epb.extend_from_slice(&((ticks >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ticks as u32).to_le_bytes());
        epb.extend_from_slice(&len.to_le_bytes());
        epb.extend_from_slice(&len.to_le_bytes());
        epb.extend_from_slice(frame);
        block(&mut out, 6, &epb);
    }
    out
}

fn capture_seeds() -> Inputs {
    let mut seeds = Vec::new();
    for name in CAPTURES {
        let bytes = fs::read(repo_root().join("captures").join(name)).expect("capture");
        seeds.push((format!("seed-{}", name.trim_end_matches(".pcap")), bytes));
    }
    // The plain conversation as our writer records it (RAW), and as pcapng (RAW too).
    let (_, log) = conversation(0);
    let lac = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 10), 1701);
    let lns = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 1701);
    let mut writer = CaptureWriter::new(Vec::new(), Linktype::RAW).expect("pcap header");
    let mut frames = Vec::new();
    for (i, exchange) in log.iter().enumerate() {
        let (src, dst) = if exchange.lac_to_node {
            (lac, lns)
        } else {
            (lns, lac)
        };
        let at = Duration::from_secs(1_700_000_000) + Duration::from_millis(i as u64);
        writer
            .write_udp(at, src, dst, &exchange.bytes)
            .expect("write");
        let mut frame = Vec::new();
        l2tp::capture::build_ipv4_udp(src, dst, &exchange.bytes, i as u16, &mut frame)
            .expect("small packets");
        frames.push(frame);
    }
    seeds.push((
        "seed-conversation-raw.pcap".to_string(),
        writer.into_inner().expect("in memory"),
    ));
    seeds.push((
        "seed-conversation-raw.pcapng".to_string(),
        pcapng(101, &frames),
    ));
    seeds
}

/// PPP session settings the seeds run with (the harness's flags byte): client and server,
/// each authentication, IPv6CP once.
const PPP_SEED_FLAGS: [(&str, u8); 6] = [
    ("client-none", 0b0000),
    ("client-pap", 0b0010),
    ("client-chap-ipv6", 0b1100),
    ("server-none", 0b0001),
    ("server-pap", 0b0011),
    ("server-chap", 0b0101),
];

/// The session under test against a peer of the other side with the same authentication,
/// frames delivered at once: the target's input is what the peer sent it, so the harness
/// replays the very same conversation up to Open.
fn ppp_conversation(flags: u8) -> Vec<u8> {
    let mut target = ppp_harness::session(flags, 1);
    let mut peer = ppp_harness::session(flags ^ 1, 2);
    let now = Instant::ZERO;
    let mut input = vec![flags];
    target.start(now);
    peer.start(now);
    let mut frame = Vec::new();
    for _ in 0..100 {
        let mut moved = false;
        while target.poll_transmit(&mut frame) {
            peer.handle(now, &frame);
            frame.clear();
            moved = true;
        }
        while peer.poll_transmit(&mut frame) {
            push_record(&mut input, 0, &frame);
            target.handle(now, &frame);
            frame.clear();
            moved = true;
        }
        if !moved {
            break;
        }
    }
    assert!(target.is_open() && peer.is_open(), "flags {flags:#06b}");
    input
}

fn ppp_seeds() -> Inputs {
    PPP_SEED_FLAGS
        .iter()
        .map(|(name, flags)| (format!("seed-{name}"), ppp_conversation(*flags)))
        .collect()
}

fn all_seeds() -> [(&'static str, Inputs); 5] {
    [
        ("codec", codec_seeds()),
        ("node", node_seeds()),
        ("forwarders", forwarders_seeds()),
        ("capture", capture_seeds()),
        ("ppp", ppp_seeds()),
    ]
}

/// Writes the seeds into the corpus when `L2TPKIT_WRITE_FUZZ_SEEDS=1`; otherwise only checks
/// that they can be made.
#[test]
fn seeds_are_made() {
    let write = std::env::var("L2TPKIT_WRITE_FUZZ_SEEDS").as_deref() == Ok("1");
    for (target, seeds) in all_seeds() {
        assert!(seeds.len() >= 4, "{target}: {} seeds", seeds.len());
        if write {
            let dir = corpus_dir(target);
            fs::create_dir_all(&dir).expect("corpus directory");
            for (name, bytes) in &seeds {
                fs::write(dir.join(name), bytes).expect("write seed");
            }
            println!(
                "{target}: {} seeds written to {}",
                seeds.len(),
                dir.display()
            );
        }
    }
}

#[test]
fn codec_seeds_parse_and_meet_the_rules() {
    for (name, bytes) in codec_seeds() {
        let outcome = harness::codec(&bytes);
        // Every seed parses without a secret (hidden AVPs stay ciphertext), and with its own.
        assert!(outcome.parsed >= 2, "{name}: {outcome:?}");
        assert!(
            outcome.rules_ok >= 1 || bytes[0] & 0x80 == 0,
            "{name}: {outcome:?}"
        );
    }
}

#[test]
fn node_seeds_set_up_tunnel_session_and_data() {
    for (name, flags) in SEED_FLAGS {
        let (input, _) = conversation(flags);
        let outcome = harness::node(&input);
        assert_eq!(outcome.tunnels_up, 1, "{name}: {outcome:?}");
        assert_eq!(outcome.sessions_up, 1, "{name}: {outcome:?}");
        assert_eq!(outcome.data_frames, 1, "{name}: {outcome:?}");
        if flags & NodeFlags::CLUSTER != 0 {
            assert!(outcome.reports > 0, "{name}: {outcome:?}");
        }
    }
    // xl2tpd's SCCRQs are answered.
    for (name, input) in node_seeds() {
        let outcome = harness::node(&input);
        assert!(outcome.datagrams_out > 0, "{name}: {outcome:?}");
    }
}

#[test]
fn forwarders_seeds_route_through_master_and_nat() {
    for (name, input) in forwarders_seeds() {
        let outcome = harness::forwarders(&input);
        assert!(outcome.master_forwarded >= 1, "{name}: {outcome:?}");
        if name.starts_with("seed-cluster") {
            // SCCRP out, then the initiator's messages in: both directions of Table 1.
            assert!(outcome.nat_forwarded >= 4, "{name}: {outcome:?}");
            assert!(outcome.reports_accepted >= 1, "{name}: {outcome:?}");
        }
    }
}

#[test]
fn capture_seeds_read_as_l2tp() {
    for (name, bytes) in capture_seeds() {
        let outcome = harness::capture(&bytes);
        assert!(outcome.udp >= 2, "{name}: {outcome:?}");
        assert_eq!(outcome.l2tp, outcome.udp, "{name}: {outcome:?}");
    }
    // The pcapng seed really is pcapng.
    let (_, bytes) = capture_seeds().pop().expect("seeds");
    let reader = CaptureReader::new(Cursor::new(bytes), "seed").expect("pcapng");
    assert_eq!(reader.format(), l2tp::capture::CaptureFormat::PcapNg);
}

#[test]
fn ppp_seeds_open_the_session() {
    for (name, bytes) in ppp_seeds() {
        let outcome = ppp_harness::ppp(&bytes);
        assert_eq!(
            outcome.deepest,
            Some(l2tp::ppp::session::Phase::Open),
            "{name}: {outcome:?}"
        );
        assert!(outcome.frames_out >= 3, "{name}: {outcome:?}");
    }
}
