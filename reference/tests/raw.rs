//! The raw sockets on loopback: a packet with a forged source arrives with that source; the tap
//! sees datagrams addressed to the host. Needs root (CI runs as root).

use std::net::{SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use reference::raw::{RawSender, Tap};

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
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
    let mut buf = [0u8; 64];
    for _ in 0..2 {
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
