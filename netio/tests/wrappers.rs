//! The safe wrappers that need no root: interfaces by name, namespace entry errors, poll, and
//! a socket on tokio through `AsyncSocket`.

use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use netio::netns::NetnsError;
use netio::reactor::AsyncSocket;

#[test]
fn loopback_is_found_and_is_no_ethernet() {
    assert!(netio::iface::index("lo").unwrap() > 0);
    assert_eq!(
        netio::iface::interface_with_address(Ipv4Addr::LOCALHOST).unwrap(),
        "lo"
    );
    let err = netio::iface::hardware_address("lo").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
    let err = netio::iface::index("no-such-if0").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    assert!(netio::iface::interface_with_address(Ipv4Addr::new(192, 0, 2, 99)).is_err());
}

#[test]
fn a_missing_namespace_is_an_open_error() {
    match netio::netns::enter("l2tpkit-no-such-namespace") {
        Err(NetnsError::Open { path, .. }) => {
            assert_eq!(
                path,
                std::path::Path::new("/run/netns/l2tpkit-no-such-namespace")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn poll_says_which_descriptor_is_readable() {
    let quiet = UdpSocket::bind("127.0.0.1:0").unwrap();
    let busy = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.send_to(b"x", busy.local_addr().unwrap()).unwrap();
    let mut fds = [quiet.as_raw_fd(), busy.as_raw_fd()].map(|fd| netio::poll::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    let ready = netio::poll::poll_readable(&mut fds, Duration::from_secs(2)).unwrap();
    assert_eq!(ready, 1);
    assert_eq!(fds[0].revents, 0);
    assert_ne!(fds[1].revents, 0);
}

#[tokio::test]
async fn an_async_socket_wakes_on_data_and_gives_its_socket_back() {
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver.set_nonblocking(true).unwrap();
    let to = receiver.local_addr().unwrap();
    let mut registered = AsyncSocket::new(receiver).unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.send_to(b"wake", to).unwrap();
    let mut guard = tokio::time::timeout(Duration::from_secs(2), registered.readable_mut())
        .await
        .expect("readable in time")
        .unwrap();
    let mut buf = [0u8; 16];
    let (len, _) = guard.get_inner_mut().recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..len], b"wake");
    // Read empty: the next wait sleeps until new data.
    assert!(guard.get_inner().recv_from(&mut buf).is_err());
    guard.clear_ready();
    // Replacing the socket leaves the registration (a duplicate) intact and deregistrable.
    *registered.get_mut() = UdpSocket::bind("127.0.0.1:0").unwrap();
    let socket = registered.into_inner();
    assert_ne!(socket.local_addr().unwrap(), to);
}
