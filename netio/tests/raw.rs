//! The raw sockets on loopback: a packet with a forged source arrives with that source; the tap
//! sees datagrams addressed to the host; the receive ring takes what its filter lets through
//! and hands each frame back; batched UDP goes out and comes in whole. Needs root (CI runs as
//! root).

use std::net::{SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use netio::filter::udp_to_filter;
use netio::ring::RxRing;
use netio::tap::{FrameSender, Tap};
use netio::udp::{send_udp_batch, RawSender, UdpBatchReceiver};

fn root() -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but not root: raw socket tests need CAP_NET_RAW");
        }
        eprintln!("SKIPPED: raw socket tests need root");
    }
    root
}

#[test]
fn forged_source_arrives_as_forged() {
    if !root() {
        return;
    }
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let port = receiver.local_addr().unwrap().port();
    let forged: SocketAddrV4 = "127.0.0.77:1701".parse().unwrap();
    let to = SocketAddrV4::new("127.0.0.1".parse().unwrap(), port);
    let mut packet = Vec::new();
    l2tp::capture::build_ipv4_udp(forged, to, b"hello", 1, &mut packet).unwrap();
    let sender = RawSender::new().unwrap();
    assert_eq!(sender.send_batch(&[&packet, &packet]).unwrap(), 2);
    // One the kernel refuses (no room for an IPv4 header) does not stop the rest of its batch.
    let broken = [0x45u8, 0, 0, 5, 0];
    assert_eq!(sender.send_batch(&[&packet, &broken, &packet]).unwrap(), 3);
    assert!(sender.send_batch(&[&broken]).is_err());
    let mut buf = [0u8; 64];
    for _ in 0..4 {
        let (len, from) = receiver.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"hello");
        assert_eq!(from, std::net::SocketAddr::V4(forged));
    }
}

#[test]
fn tap_sees_datagrams_on_the_interface() {
    if !root() {
        return;
    }
    let mut tap = Tap::open("lo", 32).unwrap();
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = receiver.local_addr().unwrap().port();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.send_to(b"tap-me", ("127.0.0.1", port)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut seen = false;
    while Instant::now() < deadline && !seen {
        let n = tap.recv_batch().unwrap();
        for i in 0..n {
            let packet = tap.packet(i).unwrap();
            let view = l2tp::capture::decode_frame(l2tp::capture::Linktype::RAW, packet);
            if let l2tp::capture::RecordKind::Udp(d) = view {
                if d.dst.port() == port && d.payload == b"tap-me" {
                    seen = true;
                }
            }
        }
        if n == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert!(seen, "the tap did not see the datagram");
    assert!(Tap::open("no-such-if0", 4).is_err());
}

#[test]
fn the_ring_takes_only_what_the_filter_lets_through() {
    if !root() {
        return;
    }
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = receiver.local_addr().unwrap().port();
    let other = UdpSocket::bind("127.0.0.1:0").unwrap();
    let other_port = other.local_addr().unwrap().port();
    let mut ring = RxRing::open("lo", &udp_to_filter("127.0.0.1".parse().unwrap(), port)).unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender
        .send_to(b"not-this", ("127.0.0.1", other_port))
        .unwrap();
    sender.send_to(b"ring-me", ("127.0.0.1", port)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut payloads = Vec::new();
    while Instant::now() < deadline && payloads.is_empty() {
        let mut taken = [0usize; 8];
        let n = ring.take(&mut taken);
        for &i in &taken[..n] {
            let frame = ring.frame(i).unwrap();
            assert!(!frame.truncated);
            let packet = &frame.data[frame.network..];
            if let l2tp::capture::RecordKind::Udp(d) =
                l2tp::capture::decode_frame(l2tp::capture::Linktype::RAW, packet)
            {
                payloads.push(d.payload.to_vec());
            }
            ring.release(i);
        }
        if n == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert_eq!(payloads, [b"ring-me".to_vec()]);
    // The frame went back to the kernel: the next one lands and is taken in turn.
    sender.send_to(b"again", ("127.0.0.1", port)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut taken = [0usize; 8];
    let mut n = 0;
    while Instant::now() < deadline && n == 0 {
        n = ring.take(&mut taken);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(n, 1);
    assert_eq!(ring.drops().unwrap(), 0);
}

#[test]
fn udp_batches_go_out_and_come_in_whole() {
    if !root() {
        return;
    }
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver.set_nonblocking(true).unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.connect(receiver.local_addr().unwrap()).unwrap();
    let datagrams: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; usize::from(i) + 1]).collect();
    let refs: Vec<&[u8]> = datagrams.iter().map(Vec::as_slice).collect();
    assert_eq!(send_udp_batch(&sender, &refs).unwrap(), 100);
    let mut rx = UdpBatchReceiver::new(64, 42, 2048);
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while got.len() < 100 && Instant::now() < deadline {
        match rx.recv(&receiver) {
            Ok(n) => {
                assert!(n <= 64);
                for i in 0..n {
                    let (buffer, from) = rx.datagram(i).unwrap();
                    assert_eq!(std::net::SocketAddr::V4(from), sender.local_addr().unwrap());
                    got.push(buffer[42..].to_vec());
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(err) => panic!("{err}"),
        }
    }
    assert_eq!(got, datagrams);
}

#[test]
fn frames_need_an_ethernet_interface() {
    if !root() {
        return;
    }
    // Loopback has no Ethernet addresses: the NAT then sends the raw IP way.
    let err = FrameSender::open("lo").err().expect("lo is not Ethernet");
    assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
    assert!(FrameSender::open("no-such-if0").is_err());
}
