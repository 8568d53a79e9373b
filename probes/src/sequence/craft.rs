//! Crafted cluster runs: what a FIG 2 or FIG 4 cluster puts on the wire on its public side and
//! on its LAN, tunnel by tunnel, built with the wire codec (real AVPs) and lab addresses
//! (public 198.18.0.0/16, LAN 198.19.0.0/16). Correct by default; a [`Fault`] breaks one tunnel
//! the way a faulty master, NAT or initiator would. Nothing is sent: these are bytes for pcaps
//! and for the checker's tests.

use std::borrow::Cow;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use l2tp::capture::{CaptureError, CaptureWriter, Linktype};
use l2tp::wire::message::ParseOptions;
use l2tp::wire::{AvpRepr, AvpValue, ControlMessage, HeaderRepr, MessageType, PacketRepr};

pub use super::craft_ppp::{link_local, PppScript, ENDPOINT_ADDRESS, INITIATOR_ADDRESS};
use super::observation::{Observation, Origin};
use super::report::Variant;
use super::roles::{EndpointRole, Roles};

/// What goes wrong, in one tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The NAT forwards the SCCRP without rewriting its source (step 108).
    NatKeepsLanSource,
    /// The master forwards the SCCRQ with its own LAN address as source (step 104).
    MasterRewritesSource,
    /// The packet of this step (first transmission) is never seen.
    Drop(u16),
    /// The initiator's SCCCN carries its own tunnel ID in the header (step 110/210).
    WrongScccnTunnelId,
    /// A HELLO from the initiator after setup that the endpoint never acknowledges.
    UnacknowledgedHello,
    /// The initiator retransmits its SCCRQ and the master sends the copy to another endpoint.
    Redispatch,
    /// The master sends the first SCCRQ to an endpoint that never answers (it died), and the
    /// retransmission to the tunnel's endpoint: a legitimate move, not a fault.
    FirstToSilentEndpoint,
}

/// What to craft.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub variant: Variant,
    pub initiators: usize,
    pub tunnels: usize,
    /// The endpoint acknowledges the SCCCN with its ICRP instead of a ZLB.
    pub piggyback_ack: bool,
    /// The first tunnel's endpoint is slow: its initiator retransmits the SCCRQ after 1 s.
    pub retransmit_sccrq: bool,
    /// A fault and the index of the tunnel it hits.
    pub fault: Option<(usize, Fault)>,
    /// The PPP in every tunnel's session.
    pub ppp: PppScript,
}

impl Plan {
    /// Three initiators, six tunnels over three endpoints, nothing wrong.
    pub fn new(variant: Variant) -> Plan {
        Plan {
            variant,
            initiators: 3,
            tunnels: 6,
            piggyback_ack: false,
            retransmit_sccrq: false,
            fault: None,
            ppp: PppScript::EchoOnly,
        }
    }

    pub fn with_fault(mut self, tunnel: usize, fault: Fault) -> Plan {
        self.fault = Some((tunnel, fault));
        self
    }
}

/// A UDP datagram as a capture holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub time: Duration,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub payload: Vec<u8>,
}

/// A crafted run: the roles of the lab and what a capture on each side would hold.
#[derive(Debug, Clone)]
pub struct Run {
    pub roles: Roles,
    pub public: Vec<Datagram>,
    pub lan: Vec<Datagram>,
}

const L2TP: u16 = 1701;
/// 2023-11-14, so the pcaps carry plausible dates.
const EPOCH: Duration = Duration::from_secs(1_700_000_000);

fn ip(c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18 + c, 0, d)
}

/// The lab's roles for a variant: cluster 198.18.0.1 (master LAN 198.19.0.1), NAT 198.18.0.2
/// (LAN 198.19.0.2) in FIG 2, endpoints te1..te3 at 198.19.0.11.. with, in FIG 4, global
/// addresses 198.18.0.11..
pub fn lab_roles(variant: Variant) -> Roles {
    let fig5 = matches!(variant, Variant::Fig5 | Variant::Fig5ViaMaster);
    Roles {
        cluster_address: Some(ip(0, 1)),
        master_lan: Some(ip(1, 1)),
        nat_global: (!fig5).then(|| ip(0, 2)),
        nat_lan: (!fig5).then(|| ip(1, 2)),
        endpoints: (0..3)
            .map(|i| EndpointRole {
                name: format!("te{}", i + 1),
                lan: ip(1, 11 + i),
                global: fig5.then(|| ip(0, 11 + i)),
            })
            .collect(),
    }
}

/// Initiator `i` of the lab: 198.18.1.(10 + i), port 1701.
pub fn initiator(i: usize) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 10 + i as u8), L2TP)
}

fn control(
    kind: Option<MessageType>,
    tunnel_id: u16,
    session_id: u16,
    (ns, nr): (u16, u16),
    avps: Vec<AvpValue<'static>>,
) -> Vec<u8> {
    let mut all: Vec<AvpRepr<'static>> = kind
        .map(|kind| AvpRepr::mandatory(AvpValue::MessageType(kind)))
        .into_iter()
        .collect();
    all.extend(avps.into_iter().map(AvpRepr::mandatory));
    ControlMessage {
        header: HeaderRepr::control(tunnel_id, session_id, ns, nr),
        avps: all,
    }
    .to_vec(None)
    .expect("crafted messages fit")
}

fn data(tunnel_id: u16, session_id: u16, payload: &[u8]) -> Vec<u8> {
    let packet = PacketRepr::Data {
        header: HeaderRepr::data(tunnel_id, session_id),
        payload,
    };
    let mut buf = vec![0; packet.buffer_len()];
    let len = packet.emit(&mut buf, None).expect("crafted data fits");
    buf.truncate(len);
    buf
}

fn text(value: String) -> Cow<'static, [u8]> {
    Cow::Owned(value.into_bytes())
}

struct Crafter {
    plan: Plan,
    roles: Roles,
    public: Vec<Datagram>,
    lan: Vec<Datagram>,
}

/// One tunnel's parties.
struct Parties {
    index: usize,
    ti: SocketAddrV4,
    te: usize,
    ti_tid: u16,
    te_tid: u16,
    ti_sid: u16,
    te_sid: u16,
}

const HOP: Duration = Duration::from_micros(10);

impl Crafter {
    fn fault(&self, tunnel: &Parties) -> Option<Fault> {
        self.plan
            .fault
            .and_then(|(index, fault)| (index == tunnel.index).then_some(fault))
    }

    fn fig5(&self) -> bool {
        matches!(self.plan.variant, Variant::Fig5 | Variant::Fig5ViaMaster)
    }

    fn via_master(&self) -> bool {
        matches!(
            self.plan.variant,
            Variant::Fig3ViaMaster | Variant::Fig5ViaMaster
        )
    }

    fn cluster(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.roles.cluster_address.expect("lab roles"), L2TP)
    }

    fn te_lan(&self, te: usize) -> SocketAddrV4 {
        SocketAddrV4::new(self.roles.endpoints[te].lan, L2TP)
    }

    /// Where the initiator sees the endpoint: the NAT (FIG 2) or the endpoint's global address.
    fn te_public(&self, te: usize) -> SocketAddrV4 {
        let ip = if self.fig5() {
            self.roles.endpoints[te].global
        } else {
            self.roles.nat_global
        };
        SocketAddrV4::new(ip.expect("lab roles"), L2TP)
    }

    fn record(
        &mut self,
        lan: bool,
        time: Duration,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        payload: &[u8],
        dropped: bool,
    ) {
        if dropped {
            return;
        }
        let datagram = Datagram {
            time: EPOCH + time,
            src,
            dst,
            payload: payload.to_vec(),
        };
        if lan {
            self.lan.push(datagram);
        } else {
            self.public.push(datagram);
        }
    }

    fn dropped(&self, tunnel: &Parties, step: u16) -> bool {
        self.fault(tunnel) == Some(Fault::Drop(step))
    }

    /// An SCCRQ to the cluster and the master's copy to the endpoint.
    fn request(&mut self, tunnel: &Parties, at: Duration, te: usize, first: bool) {
        let bytes = control(
            Some(MessageType::Sccrq),
            0,
            0,
            (0, 0),
            vec![
                AvpValue::ProtocolVersion {
                    version: 1,
                    revision: 0,
                },
                AvpValue::HostName(text(format!("lac{}", tunnel.ti.ip().octets()[3]))),
                AvpValue::FramingCapabilities(3),
                AvpValue::AssignedTunnelId(tunnel.ti_tid),
                AvpValue::ReceiveWindowSize(4),
            ],
        );
        let forward = if self.fig5() { 204 } else { 104 };
        let drop_first = |step| first && self.dropped(tunnel, step);
        let (d102, d_fwd) = (drop_first(102), drop_first(forward));
        let source = if self.fault(tunnel) == Some(Fault::MasterRewritesSource) {
            SocketAddrV4::new(self.roles.master_lan.expect("lab roles"), L2TP)
        } else {
            tunnel.ti
        };
        let cluster = self.cluster();
        let te_lan = self.te_lan(te);
        self.record(false, at, tunnel.ti, cluster, &bytes, d102);
        self.record(true, at + HOP, source, te_lan, &bytes, d_fwd);
    }

    /// A message from the endpoint to the initiator: via the NAT (FIG 2) or straight from the
    /// endpoint's global address (FIG 4). `steps` are the step numbers, when it is one.
    fn endpoint_sends(
        &mut self,
        tunnel: &Parties,
        at: Duration,
        bytes: &[u8],
        steps: Option<(u16, u16)>,
    ) {
        let dropped = |step: Option<u16>| step.is_some_and(|s| self.dropped(tunnel, s));
        if self.fig5() {
            let from = self.te_public(tunnel.te);
            let d = dropped(steps.map(|s| s.0));
            self.record(false, at, from, tunnel.ti, bytes, d);
        } else {
            let lan = self.te_lan(tunnel.te);
            let nat = if steps.is_some_and(|s| s.1 == 108)
                && self.fault(tunnel) == Some(Fault::NatKeepsLanSource)
            {
                lan
            } else {
                self.te_public(tunnel.te)
            };
            let (d0, d1) = (dropped(steps.map(|s| s.0)), dropped(steps.map(|s| s.1)));
            self.record(true, at, lan, tunnel.ti, bytes, d0);
            self.record(false, at + HOP, nat, tunnel.ti, bytes, d1);
        }
    }

    /// A message from the initiator after the SCCRP: to the NAT or the endpoint's global
    /// address, or (xl2tpd) to the cluster address, and on to the endpoint's LAN address.
    fn initiator_sends(
        &mut self,
        tunnel: &Parties,
        at: Duration,
        bytes: &[u8],
        steps: Option<(u16, u16)>,
    ) {
        let dropped = |step: Option<u16>| step.is_some_and(|s| self.dropped(tunnel, s));
        let to = if self.via_master() {
            self.cluster()
        } else {
            self.te_public(tunnel.te)
        };
        let (d0, d1) = (dropped(steps.map(|s| s.0)), dropped(steps.map(|s| s.1)));
        self.record(false, at, tunnel.ti, to, bytes, d0);
        if self.fig5() && !self.via_master() {
            return;
        }
        let lan = self.te_lan(tunnel.te);
        self.record(true, at + HOP, tunnel.ti, lan, bytes, d1);
    }

    fn tunnel(&mut self, tunnel: &Parties) {
        let us = Duration::from_micros;
        let t0 = us(150 * tunnel.index as u64);
        let fig5 = self.fig5();
        let fault = self.fault(tunnel);
        let moved = fault == Some(Fault::FirstToSilentEndpoint);
        let first_te = if moved {
            (tunnel.te + 2) % 3
        } else {
            tunnel.te
        };
        self.request(tunnel, t0, first_te, true);
        let slow = self.plan.retransmit_sccrq && tunnel.index == 0;
        let redispatch = fault == Some(Fault::Redispatch);
        if slow || redispatch || moved {
            let te = if redispatch {
                (tunnel.te + 1) % 3
            } else {
                tunnel.te
            };
            self.request(tunnel, t0 + Duration::from_secs(1), te, false);
        }
        let r = if slow || redispatch || moved {
            t0 + Duration::from_millis(1200)
        } else {
            t0 + us(50)
        };
        let (a, b) = (tunnel.ti_tid, tunnel.te_tid);
        let te_name = self.roles.endpoints[tunnel.te].name.clone();
        let sccrp = control(
            Some(MessageType::Sccrp),
            a,
            0,
            (0, 1),
            vec![
                AvpValue::ProtocolVersion {
                    version: 1,
                    revision: 0,
                },
                AvpValue::FramingCapabilities(3),
                AvpValue::HostName(text(te_name)),
                AvpValue::AssignedTunnelId(b),
                AvpValue::ReceiveWindowSize(4),
            ],
        );
        let reply_steps = if fig5 { (206, 206) } else { (106, 108) };
        self.endpoint_sends(tunnel, r, &sccrp, Some(reply_steps));

        let scccn_tid = if fault == Some(Fault::WrongScccnTunnelId) {
            a
        } else {
            b
        };
        let scccn = control(Some(MessageType::Scccn), scccn_tid, 0, (1, 1), Vec::new());
        let connected_steps = if fig5 { (210, 212) } else { (110, 112) };
        self.initiator_sends(tunnel, r + us(50), &scccn, Some(connected_steps));
        let ack_steps = if fig5 { (214, 214) } else { (114, 116) };
        if !self.plan.piggyback_ack {
            let zlb = control(None, a, 0, (1, 2), Vec::new());
            self.endpoint_sends(tunnel, r + us(75), &zlb, Some(ack_steps));
        }
        let icrq = control(
            Some(MessageType::Icrq),
            b,
            0,
            (2, 1),
            vec![
                AvpValue::AssignedSessionId(tunnel.ti_sid),
                AvpValue::CallSerialNumber(tunnel.index as u32 + 1),
            ],
        );
        self.initiator_sends(tunnel, r + us(90), &icrq, None);
        let icrp = control(
            Some(MessageType::Icrp),
            a,
            tunnel.ti_sid,
            (1, 3),
            vec![AvpValue::AssignedSessionId(tunnel.te_sid)],
        );
        let icrp_steps = self.plan.piggyback_ack.then_some(ack_steps);
        self.endpoint_sends(tunnel, r + us(120), &icrp, icrp_steps);
        let iccn = control(
            Some(MessageType::Iccn),
            b,
            tunnel.te_sid,
            (3, 2),
            vec![AvpValue::TxConnectSpeed(64_000), AvpValue::FramingType(1)],
        );
        self.initiator_sends(tunnel, r + us(150), &iccn, None);
        let zlb = control(None, a, 0, (2, 4), Vec::new());
        self.endpoint_sends(tunnel, r + us(180), &zlb, None);
        // The session's PPP, 20 µs apart (each copy past a translator 10 µs later).
        for (i, (from_initiator, frame)) in
            super::craft_ppp::script(self.plan.ppp).iter().enumerate()
        {
            let at = r + us(200 + 20 * i as u64);
            if *from_initiator {
                self.initiator_sends(tunnel, at, &data(b, tunnel.te_sid, frame), None);
            } else {
                self.endpoint_sends(tunnel, at, &data(a, tunnel.ti_sid, frame), None);
            }
        }
        if fault == Some(Fault::UnacknowledgedHello) {
            let hello = control(Some(MessageType::Hello), b, 0, (4, 2), Vec::new());
            self.initiator_sends(tunnel, r + us(250), &hello, None);
        }
    }
}

/// Crafts a run: tunnel `k` goes from initiator `k % initiators` (its tunnel ID
/// `1 + k / initiators`) to endpoint `(k + k / initiators) % 3` (tunnel IDs in blocks of 4096
/// per endpoint); tunnels start 150 µs apart and overlap; each hop takes 10 µs.
pub fn craft(plan: Plan) -> Run {
    let mut crafter = Crafter {
        plan,
        roles: lab_roles(plan.variant),
        public: Vec::new(),
        lan: Vec::new(),
    };
    let initiators = plan.initiators.max(1);
    for k in 0..plan.tunnels {
        let te = (k + k / initiators) % 3;
        let tunnel = Parties {
            index: k,
            ti: initiator(k % initiators),
            te,
            ti_tid: 1 + (k / initiators) as u16,
            te_tid: 0x1000 * (te as u16 + 1) + k as u16,
            ti_sid: 0x100 + k as u16,
            te_sid: 0x200 + k as u16,
        };
        crafter.tunnel(&tunnel);
    }
    crafter.public.sort_by_key(|d| d.time);
    crafter.lan.sort_by_key(|d| d.time);
    Run {
        roles: crafter.roles,
        public: crafter.public,
        lan: crafter.lan,
    }
}

impl Run {
    /// The observations of both captures (public = capture 0, LAN = capture 1), unsorted.
    pub fn observations(&self) -> Vec<Observation> {
        let options = ParseOptions::default();
        [&self.public, &self.lan]
            .into_iter()
            .enumerate()
            .flat_map(|(capture, datagrams)| {
                datagrams.iter().enumerate().map(move |(i, d)| {
                    Observation::decode(d.time, d.src, d.dst, &d.payload, &options)
                        .expect("crafted packets parse")
                        .with_origin(Origin {
                            capture,
                            record: i as u64 + 1,
                        })
                })
            })
            .collect()
    }

    /// Writes the two sides as RAW-IP pcaps.
    pub fn write_pcaps(&self, public: &Path, lan: &Path) -> Result<(), CaptureError> {
        for (path, datagrams) in [(public, &self.public), (lan, &self.lan)] {
            let mut writer = CaptureWriter::create(path, Linktype::RAW)?;
            for d in datagrams {
                writer.write_udp(d.time, d.src, d.dst, &d.payload)?;
            }
            writer.flush()?;
        }
        Ok(())
    }
}
