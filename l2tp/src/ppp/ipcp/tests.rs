use super::*;
use crate::ppp::fsm::tests::{drain, events, packet, run_pair, sent_one};
use crate::ppp::fsm::{code, FsmConfig, FsmEvent, State};
use crate::ppp::PacketRepr;
use crate::time::Instant;
use proptest::prelude::*;

const T0: Instant = Instant::ZERO;
const LNS: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
const ASSIGNED: Ipv4Addr = Ipv4Addr::new(198, 19, 128, 7);
const DNS1: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 53);

fn fsm(ipcp: Ipcp) -> Fsm<Ipcp> {
    let mut fsm = Fsm::new(ipcp, FsmConfig::default());
    fsm.open(T0);
    fsm.up(T0);
    fsm
}

fn server() -> Ipcp {
    Ipcp::server(Some(LNS), ASSIGNED, [Some(DNS1), None])
}

#[test]
fn golden_client_request() {
    let mut client = fsm(Ipcp::client(true));
    assert_eq!(
        drain(&mut client),
        [vec![
            0x01, 0x01, 0x00, 0x16, // Configure-Request, id 1, length 22
            0x03, 0x06, 0, 0, 0, 0, // IP-Address 0.0.0.0
            0x81, 0x06, 0, 0, 0, 0, // Primary-DNS 0.0.0.0
            0x83, 0x06, 0, 0, 0, 0, // Secondary-DNS 0.0.0.0
        ]]
    );
    let option = IpcpOption::parse(3, &[198, 19, 0, 1]).unwrap();
    assert_eq!(option, IpcpOption::IpAddress(LNS));
    let mut out = Vec::new();
    option.emit(&mut out);
    assert_eq!(
        (out.as_slice(), option.buffer_len()),
        (&[3, 6, 198, 19, 0, 1][..], 6)
    );
    assert!(IpcpOption::parse(3, &[1, 2, 3]).is_err());
}

#[test]
fn client_and_server_open_with_the_assigned_address() {
    let mut client = Fsm::new(Ipcp::client(true), FsmConfig::default());
    let mut lns = Fsm::new(server(), FsmConfig::default());
    run_pair(&mut client, &mut lns, 0, 3);
    let got = client.negotiated().unwrap();
    assert_eq!(got.local, Some(ASSIGNED));
    assert_eq!(got.peer, Some(LNS));
    // The server has one DNS server: the secondary was rejected, so the client stopped asking.
    assert_eq!(got.dns, [Some(DNS1), None]);
    let given = lns.negotiated().unwrap();
    assert_eq!(
        (given.local, given.peer, given.dns),
        (Some(LNS), Some(ASSIGNED), [Some(DNS1), None])
    );
}

#[test]
fn server_naks_anything_but_the_assigned_address() {
    for asked in [Ipv4Addr::UNSPECIFIED, Ipv4Addr::new(10, 0, 0, 1)] {
        let mut lns = fsm(server());
        drain(&mut lns);
        let mut request = Vec::new();
        IpcpOption::IpAddress(asked).emit(&mut request);
        lns.handle(T0, packet(code::CONFIGURE_REQUEST, 5, &request));
        let mut nak = Vec::new();
        IpcpOption::IpAddress(ASSIGNED).emit(&mut nak);
        assert_eq!(sent_one(&mut lns), (code::CONFIGURE_NAK, 5, nak.clone()));
        lns.handle(T0, packet(code::CONFIGURE_REQUEST, 6, &nak));
        assert_eq!(sent_one(&mut lns), (code::CONFIGURE_ACK, 6, nak));
    }
    // A peer that does not ask for an address is told to (a Nak hint, RFC 1661 §5.3).
    let mut lns = fsm(server());
    drain(&mut lns);
    lns.handle(T0, packet(code::CONFIGURE_REQUEST, 7, &[]));
    assert_eq!(
        sent_one(&mut lns),
        (code::CONFIGURE_NAK, 7, vec![3, 6, 198, 19, 128, 7])
    );
}

#[test]
fn deprecated_and_unknown_options_are_rejected() {
    for ipcp in [server(), Ipcp::client(false)] {
        let mut f = fsm(ipcp);
        drain(&mut f);
        // IP-Addresses (1), IP-Compression-Protocol (2: Van Jacobson), NBNS (130).
        let request = [
            1, 10, 0, 0, 0, 0, 0, 0, 0, 0, 2, 6, 0, 0x2d, 15, 1, 130, 6, 0, 0, 0, 0,
        ];
        f.handle(T0, packet(code::CONFIGURE_REQUEST, 8, &request));
        assert_eq!(
            sent_one(&mut f),
            (code::CONFIGURE_REJECT, 8, request.to_vec())
        );
    }
    // A client has no address to give, nor DNS: rejected too.
    let mut client = fsm(Ipcp::client(false));
    drain(&mut client);
    client.handle(
        T0,
        packet(
            code::CONFIGURE_REQUEST,
            9,
            &[3, 6, 0, 0, 0, 0, 129, 6, 0, 0, 0, 0],
        ),
    );
    assert_eq!(sent_one(&mut client).0, code::CONFIGURE_REJECT);
}

#[test]
fn client_refused_an_address_gives_up() {
    let mut client = fsm(Ipcp::client(false));
    drain(&mut client);
    let id = client.request_id();
    client.handle(T0, packet(code::CONFIGURE_REJECT, id, &[3, 6, 0, 0, 0, 0]));
    assert_eq!(client.state(), State::Closing);
    assert!(events(&mut client)
        .iter()
        .any(|e| matches!(e, FsmEvent::Failed(_))));
}

#[test]
fn client_keeps_the_address_past_max_failure() {
    let mut client = fsm(Ipcp::client(false));
    drain(&mut client);
    for _ in 0..8 {
        let id = client.request_id();
        client.handle(T0, packet(code::CONFIGURE_NAK, id, &[3, 6, 10, 0, 0, 9]));
    }
    let (_, _, request) = sent_one_last(&mut client);
    assert_eq!(request, [3, 6, 10, 0, 0, 9]);
}

/// Found by the lossy property: the server's Naks to retransmissions of one request (its
/// Nak lost) counted towards Max-Failure, so loss alone made it reject the IP-Address.
#[test]
fn lost_naks_do_not_make_the_server_reject_the_address() {
    let mut client = Fsm::new(Ipcp::client(true), FsmConfig::default());
    let mut lns = Fsm::new(server(), FsmConfig::default());
    run_pair(&mut client, &mut lns, 13, 13472220703696685831);
    assert_eq!(client.negotiated().unwrap().local, Some(ASSIGNED));
    assert!(!events(&mut lns).contains(&FsmEvent::MaxFailure));
}

fn sent_one_last(fsm: &mut Fsm<Ipcp>) -> (u8, u8, Vec<u8>) {
    let last = drain(fsm).pop().unwrap();
    let p = PacketRepr::parse_bytes(&last).unwrap();
    (p.code, p.identifier, p.data.to_vec())
}

proptest! {
    #[test]
    fn random_ipcp_packets_never_panic(
        packets in proptest::collection::vec(
            (1u8..9, any::<u8>(), proptest::collection::vec(any::<u8>(), 0..24)), 0..16),
        as_server in any::<bool>(),
    ) {
        let mut f = fsm(if as_server { server() } else { Ipcp::client(true) });
        for (code, identifier, data) in &packets {
            f.handle(T0, packet(*code, *identifier, data));
            prop_assert_eq!(f.poll_timeout().is_some(), f.state().has_timer());
            drain(&mut f);
        }
    }

    #[test]
    fn ipcp_over_a_lossy_link(seed in any::<u64>(), loss in 0u64..50) {
        let mut client = Fsm::new(Ipcp::client(true), FsmConfig::default());
        let mut lns = Fsm::new(server(), FsmConfig::default());
        run_pair(&mut client, &mut lns, loss, seed);
        if loss <= 10 {
            prop_assert_eq!(client.negotiated().unwrap().local, Some(ASSIGNED));
        }
        if let Some(got) = client.negotiated() {
            prop_assert_eq!(got.local, Some(ASSIGNED));
        }
    }
}
