//! Whether an LNS that is not ours answers yet: one SCCRQ from inside its network namespace,
//! answered with an SCCRP, and the tunnel closed at once with a StopCCN.
//!
//! A bound UDP port is no readiness for every LNS: l2tpns binds its port at once but drops
//! every SCCRQ until it has declared itself its cluster's master. An SCCRP is the one sign
//! that holds for any LNS. The probe's tunnel never reaches the lab's captures or agents: it
//! runs over the namespace's loopback, before the agent beside the LNS starts.

use std::borrow::Cow;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use l2tp::wire::message::ParseOptions;
use l2tp::wire::{AvpRepr, AvpType, AvpValue, ControlMessage, HeaderRepr, MessageType, PacketRepr};

use super::sys;

/// The probe's own Tunnel ID (any nonzero one: the probe has one tunnel).
const PROBE_TUNNEL_ID: u16 = 1;
/// The Host Name of the probe's SCCRQ, as the LNS's log shows it.
pub(super) const PROBE_HOST_NAME: &str = "l2tpkit-lab-readiness";

/// Sends one SCCRQ to `lns` from inside `namespace` and waits up to `wait` for its SCCRP;
/// closes the tunnel with a StopCCN when it comes. False on silence or on any error (the
/// caller asks again until its own deadline).
pub(super) fn answers(namespace: &str, lns: SocketAddrV4, wait: Duration) -> bool {
    let namespace = namespace.to_string();
    // Only this thread enters the namespace: the lab's other threads stay where they are.
    std::thread::Builder::new()
        .name("lns-probe".into())
        .spawn(move || sys::enter_netns(&namespace).is_ok() && exchange(lns, wait).unwrap_or(false))
        .is_ok_and(|probe| probe.join().unwrap_or(false))
}

fn exchange(lns: SocketAddrV4, wait: Duration) -> std::io::Result<bool> {
    let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
    socket.send_to(&sccrq(), lns)?;
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 2048];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        socket.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(e),
        };
        if from != lns.into() {
            continue;
        }
        if let Some(peer_tunnel_id) = sccrp_tunnel_id(&buf[..len]) {
            // Ns 1 after our SCCRQ's 0; Nr 1 after the SCCRP's 0. The LNS acks it with a ZLB,
            // which nothing waits for: the tunnel is the LNS's to clear.
            socket.send_to(&stopccn(peer_tunnel_id), lns)?;
            return Ok(true);
        }
    }
    Ok(false)
}

fn sccrq() -> Vec<u8> {
    control(
        0,
        0,
        vec![
            AvpRepr::mandatory(AvpValue::MessageType(MessageType::Sccrq)),
            AvpRepr::mandatory(AvpValue::ProtocolVersion {
                version: 1,
                revision: 0,
            }),
            AvpRepr::mandatory(AvpValue::HostName(Cow::Borrowed(
                PROBE_HOST_NAME.as_bytes(),
            ))),
            AvpRepr::mandatory(AvpValue::FramingCapabilities(3)),
            AvpRepr::mandatory(AvpValue::AssignedTunnelId(PROBE_TUNNEL_ID)),
        ],
    )
}

fn stopccn(peer_tunnel_id: u16) -> Vec<u8> {
    control(
        peer_tunnel_id,
        1,
        vec![
            AvpRepr::mandatory(AvpValue::MessageType(MessageType::StopCcn)),
            AvpRepr::mandatory(AvpValue::AssignedTunnelId(PROBE_TUNNEL_ID)),
            AvpRepr::mandatory(AvpValue::ResultCode {
                result: 1,
                error: None,
                message: None,
            }),
        ],
    )
}

/// A control message to `tunnel_id` with Ns `ns` (and Nr the same: one message came each way
/// before it).
fn control(tunnel_id: u16, ns: u16, avps: Vec<AvpRepr<'static>>) -> Vec<u8> {
    ControlMessage {
        header: HeaderRepr::control(tunnel_id, 0, ns, ns),
        avps,
    }
    .to_vec(None)
    .expect("a control message of fixed AVPs emits")
}

/// The Assigned Tunnel ID of an SCCRP to the probe's tunnel.
fn sccrp_tunnel_id(bytes: &[u8]) -> Option<u16> {
    let Ok(PacketRepr::Control(message)) = PacketRepr::parse(bytes, &ParseOptions::default())
    else {
        return None;
    };
    if message.message_type() != Some(MessageType::Sccrp)
        || message.header.tunnel_id != PROBE_TUNNEL_ID
    {
        return None;
    }
    match message.avp(AvpType::AssignedTunnelId) {
        Some(AvpValue::AssignedTunnelId(id)) if *id != 0 => Some(*id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_opens_and_closes_one_tunnel() {
        let sccrq = sccrq();
        let Ok(PacketRepr::Control(message)) = PacketRepr::parse(&sccrq, &Default::default())
        else {
            panic!("the SCCRQ parses");
        };
        assert_eq!(message.message_type(), Some(MessageType::Sccrq));
        assert_eq!(
            message.avp(AvpType::AssignedTunnelId),
            Some(&AvpValue::AssignedTunnelId(PROBE_TUNNEL_ID))
        );
        let sccrp = control(
            PROBE_TUNNEL_ID,
            0,
            vec![
                AvpRepr::mandatory(AvpValue::MessageType(MessageType::Sccrp)),
                AvpRepr::mandatory(AvpValue::AssignedTunnelId(7)),
            ],
        );
        assert_eq!(sccrp_tunnel_id(&sccrp), Some(7));
        // Not to our tunnel, not an SCCRP, or no ID: no answer.
        let elsewhere = control(
            2,
            0,
            vec![
                AvpRepr::mandatory(AvpValue::MessageType(MessageType::Sccrp)),
                AvpRepr::mandatory(AvpValue::AssignedTunnelId(7)),
            ],
        );
        assert_eq!(sccrp_tunnel_id(&elsewhere), None);
        assert_eq!(sccrp_tunnel_id(&stopccn(7)), None);
        assert_eq!(sccrp_tunnel_id(&[0xc8, 0x02]), None);
        let stop = stopccn(7);
        let Ok(PacketRepr::Control(stop)) = PacketRepr::parse(&stop, &Default::default()) else {
            panic!("the StopCCN parses");
        };
        assert_eq!(stop.header.tunnel_id, 7);
        assert_eq!(stop.message_type(), Some(MessageType::StopCcn));
    }
}
