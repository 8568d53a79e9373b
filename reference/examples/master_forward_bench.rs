//! The master's forwarding rate through its real sockets, on loopback: a `serve_master` on
//! 127.77.210.1 with one endpoint (a sealed load report, renewed twice a second) whose LAN
//! address 127.77.210.11 has a UDP socket bound that is never read (the kernel drops what
//! overflows it, so the sink costs nothing). A generator floods the cluster address with
//! sendmmsg from 127.77.211.1; the master's counters, read over its control socket before and
//! after, give the packets it forwarded per second while it was saturated.
//!
//! `sudo cargo run --release -p reference --example master_forward_bench [packets] [rounds]`
//! (root: the master's raw socket). Default 1 000 000 packets a round, 3 rounds of each kind:
//! data messages for a tunnel of the endpoint (the non-SCCRQ path), then SCCRQs with a new
//! (initiator port, Assigned Tunnel ID) each (new dispatches).

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use l2tp::wire::{AvpRepr, AvpValue, ControlMessage, HeaderRepr, MessageType, PacketRepr};
use reference::cluster::{seal, EndpointState, LoadReport};
use reference::master::MasterConfig;
use reference::serve::{serve_master, MasterSetup};

const CLUSTER: Ipv4Addr = Ipv4Addr::new(127, 77, 210, 1);
const ENDPOINT: Ipv4Addr = Ipv4Addr::new(127, 77, 210, 11);
const INITIATOR: Ipv4Addr = Ipv4Addr::new(127, 77, 211, 1);
const KEY: &[u8] = b"master-bench-key";
/// Tunnel IDs the endpoint reports as its own; data messages go to the first 1024.
const BLOCK: (u16, u16) = (1, 65_535);

fn sccrq(assigned: u16) -> Vec<u8> {
    let avps = [
        AvpValue::MessageType(MessageType::Sccrq),
        AvpValue::AssignedTunnelId(assigned),
    ]
    .map(|value| AvpRepr {
        mandatory: true,
        hidden: false,
        reserved: 0,
        value,
    });
    ControlMessage {
        header: HeaderRepr::control(0, 0, 0, 0),
        avps: avps.into(),
    }
    .to_vec(None)
    .expect("emits")
}

/// A data message for `tunnel_id` with 24 bytes of PPP.
fn data(tunnel_id: u16) -> Vec<u8> {
    PacketRepr::Data {
        header: HeaderRepr::data(tunnel_id, 1),
        payload: &[0x5a; 24],
    }
    .to_vec(None)
    .expect("emits")
}

/// Keeps the one endpoint in service until `stop`.
fn report_loop(stop: Arc<AtomicBool>) {
    let socket = UdpSocket::bind(SocketAddrV4::new(ENDPOINT, 0)).expect("report socket");
    let mut sequence = 1;
    while !stop.load(Ordering::Relaxed) {
        let report = LoadReport {
            endpoint: "be1".to_string(),
            lan_addr: ENDPOINT,
            global_addr: None,
            tunnels: 0,
            sessions: 0,
            capacity: u32::MAX,
            state: EndpointState::InService,
            sccrq_received: 0,
            tunnel_ids: vec![BLOCK],
            sequence,
        };
        let _ = socket.send_to(&seal(&report, KEY), SocketAddrV4::new(CLUSTER, 1702));
        sequence += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// SCCRQs dispatched plus non-SCCRQs forwarded, from the master's status.
fn forwarded(control: &Path) -> u64 {
    let status = reference::control::request(control, "status").expect("master status");
    let totals = &status["totals"];
    ["sccrq_dispatched", "sccrq_retransmitted", "forwarded"]
        .iter()
        .map(|k| totals[k].as_u64().unwrap_or(0))
        .sum()
}

/// Sends `packets` datagrams, cycling through `payloads`; after each full pass the next
/// socket (a new source port) is used, so every SCCRQ is a new dispatch key.
fn flood(sockets: &[UdpSocket], payloads: &[Vec<u8>], packets: usize) -> usize {
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let mut sent = 0;
    let mut at = 0;
    let mut pass = 0;
    while sent < packets {
        let end = (at + netio::BATCH).min(refs.len()).min(at + packets - sent);
        let socket = &sockets[pass % sockets.len()];
        match netio::udp::send_udp_batch(socket, &refs[at..end]) {
            Ok(n) => {
                sent += n;
                at += n;
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(err) => panic!("generator: {err}"),
        }
        if at >= refs.len() {
            at = 0;
            pass += 1;
        }
    }
    sent
}

fn connected_sockets(count: usize) -> Vec<UdpSocket> {
    (0..count)
        .map(|_| {
            let socket = UdpSocket::bind(SocketAddrV4::new(INITIATOR, 0)).expect("generator");
            socket
                .connect(SocketAddrV4::new(CLUSTER, 1701))
                .expect("connect");
            socket
        })
        .collect()
}

fn round(name: &str, control: &Path, sockets: &[UdpSocket], payloads: &[Vec<u8>], n: usize) {
    let before = forwarded(control);
    let start = Instant::now();
    let sent = flood(sockets, payloads, n);
    let sending = start.elapsed().as_secs_f64();
    let after = forwarded(control);
    let elapsed = start.elapsed().as_secs_f64();
    let done = after - before;
    println!(
        "{name:<6} sent {sent} in {sending:.2} s ({:.0}/s); master forwarded {done} in {elapsed:.2} s: \
         {:.0} packets/s",
        sent as f64 / sending,
        done as f64 / elapsed
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let packets: usize = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(3);
    let dir = std::env::temp_dir().join(format!("l2tpkit-master-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let control = dir.join("master.sock");

    // The endpoint's L2TP socket: never read; it only keeps the port from answering ICMP.
    let _sink = UdpSocket::bind(SocketAddrV4::new(ENDPOINT, 1701)).expect("sink");
    let (stop_master, stop) = tokio::sync::watch::channel(false);
    let mut config = MasterConfig::new(CLUSTER, KEY.to_vec());
    config.max_remembered = 1 << 24;
    let setup = MasterSetup {
        options: reference::serve::ServeOptions {
            control: Some(control.clone()),
            ..Default::default()
        },
        stop: Some(stop),
        ..MasterSetup::new(config, CLUSTER)
    };
    let master = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(serve_master(setup))
    });
    let stop_reports = Arc::new(AtomicBool::new(false));
    let reporter = {
        let stop = stop_reports.clone();
        std::thread::spawn(move || report_loop(stop))
    };
    let ready = Instant::now();
    loop {
        let in_service = reference::control::request(&control, "status")
            .ok()
            .and_then(|s| s["totals"]["in_service"].as_u64());
        if in_service == Some(1) {
            break;
        }
        assert!(
            ready.elapsed() < Duration::from_secs(10),
            "master not ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let datas: Vec<Vec<u8>> = (BLOCK.0..BLOCK.0 + 1024).map(data).collect();
    let sccrqs: Vec<Vec<u8>> = (1..=u16::MAX).map(sccrq).collect();
    let data_sockets = connected_sockets(1);
    println!("{packets} packets a round, {rounds} rounds each");
    for _ in 0..rounds {
        round("data", &control, &data_sockets, &datas, packets);
    }
    for _ in 0..rounds {
        // Fresh source ports each round: every SCCRQ a new dispatch.
        let sockets = connected_sockets(packets.div_ceil(sccrqs.len()));
        round("sccrq", &control, &sockets, &sccrqs, packets);
    }

    stop_reports.store(true, Ordering::Relaxed);
    let _ = stop_master.send(true);
    let status = master.join().expect("master thread").expect("master");
    let _ = reporter.join();
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "master totals: forwarded {} sccrq_dispatched {} dropped {} ({}), reports accepted {}",
        status.totals.forwarded,
        status.totals.sccrq_dispatched,
        status.totals.dropped,
        serde_json::to_string(&status.drops).unwrap_or_default(),
        status.reports.accepted
    );
}
