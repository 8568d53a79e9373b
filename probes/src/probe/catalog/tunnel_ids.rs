//! Tunnel ID uniqueness (§4.4.3): thousands of tunnels held open at once from one socket. The
//! tunnels are `l2tp::conn::tunnels::TunnelSet`'s, the LAC of `l2tpkit lac`; the probe only
//! reads each SCCRP on its way in, to note the Assigned Tunnel ID it carries.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddrV4;
use std::time::Duration;

use l2tp::conn::reliable::ReliableConfig;
use l2tp::conn::tunnel::{Event, ResultCode, TunnelConfig, TunnelState};
use l2tp::conn::tunnels::TunnelSet;
use l2tp::time::Instant;
use l2tp::wire::message::ParseOptions;
use l2tp::wire::{AvpType, AvpValue, ControlMessage, MessageType, PacketRepr};

use crate::probe::script::TRIES;
use crate::probe::transport::{Received, Transport};
use crate::probe::{Ctx, Probe, Scope, Step, Target, Verdict};

pub const PROBES: &[Probe] = &[Probe {
    name: "tunnel-id-uniqueness",
    reference: "RFC 2661 §4.4.3 (Assigned Tunnel ID), §3.1",
    sends: "--live-tunnels tunnels opened from one socket and held open together, then closed with StopCCN",
    expects: "every Assigned Tunnel ID non-zero and distinct among the tunnels live at once (it demultiplexes them)",
    scope: Scope::Any,
    run: tunnel_id_uniqueness,
}];

/// Tunnels with a message unacknowledged at once (SCCRQ, SCCCN or StopCCN): what a loopback
/// socket buffer holds in answers.
const WINDOW: usize = 512;
/// How long the tunnels get to come up, and to close.
const OPEN_TIME: Duration = Duration::from_secs(40);
const CLOSE_TIME: Duration = Duration::from_secs(15);
/// The longest the driver sleeps without looking at its timers.
const TICK: Duration = Duration::from_millis(50);
/// How many collisions the verdict spells out.
const EXAMPLES: usize = 5;

/// Which of the target's Tunnel IDs our live tunnels hold: the judgement's books.
#[derive(Default)]
struct Ledger {
    /// The target's Tunnel ID → ours, for the tunnels live now.
    live: HashMap<u16, u16>,
    /// Ours → the target's, to free the entry when our tunnel goes down.
    peer_of: HashMap<u16, u16>,
    duplicates: Vec<String>,
    duplicate_count: usize,
    zero_ids: usize,
    challenged_without_secret: bool,
}

impl Ledger {
    /// The first SCCRP for our tunnel `ours`.
    fn sccrp(&mut self, ours: u16, sccrp: &ControlMessage, have_secret: bool) {
        let peer = match sccrp.avp(AvpType::AssignedTunnelId) {
            Some(AvpValue::AssignedTunnelId(id)) => *id,
            _ => 0,
        };
        let challenged = sccrp.avps.iter().any(|avp| {
            avp.value.vendor_id() == 0 && avp.value.attr_type() == AvpType::Challenge.to_u16()
        });
        self.challenged_without_secret |= challenged && !have_secret;
        if peer == 0 {
            self.zero_ids += 1;
            return;
        }
        self.peer_of.insert(ours, peer);
        if let Some(other) = self.live.insert(peer, ours) {
            if other != ours {
                self.duplicate_count += 1;
                if self.duplicates.len() < EXAMPLES {
                    self.duplicates.push(format!(
                        "Tunnel ID {peer} assigned to our tunnels {other} and {ours}"
                    ));
                }
            }
        }
    }

    /// Our tunnel `ours` is going down: the target's ID it held is free again.
    fn down(&mut self, ours: u16) {
        if let Some(peer) = self.peer_of.remove(&ours) {
            if self.live.get(&peer) == Some(&ours) {
                self.live.remove(&peer);
            }
        }
    }

    fn verdict(&self) -> Option<Verdict> {
        if !self.duplicates.is_empty() {
            return Some(Verdict::Fail(format!(
                "{} SCCRPs assigned a Tunnel ID already held by another of our live tunnels, e.g. {}",
                self.duplicate_count,
                self.duplicates.join("; ")
            )));
        }
        if self.zero_ids > 0 {
            return Some(Verdict::Fail(format!(
                "{} SCCRPs without a non-zero Assigned Tunnel ID (§4.4.3: non-zero)",
                self.zero_ids
            )));
        }
        if self.challenged_without_secret {
            return Some(Verdict::Inconclusive(
                "the target challenges us: give its tunnel secret with --secret".into(),
            ));
        }
        None
    }
}

/// Where one of our tunnels stands, as the counts show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// SCCRQ sent, no SCCRP yet.
    Requested,
    /// SCCCN sent, not acknowledged yet.
    Connecting,
    Up,
    /// The target sent a StopCCN.
    Refused,
    /// Gone on our side: no acknowledgement in time, or an SCCRP we could not accept.
    Lost,
    /// Our StopCCN is out, not acknowledged yet.
    Closing,
    /// Our StopCCN was acknowledged.
    Closed,
}

/// Many tunnels on one transport: a `TunnelSet` and the bookkeeping the probe needs of it.
struct Swarm {
    transport: Box<dyn Transport>,
    target: SocketAddrV4,
    set: TunnelSet,
    options_secret: Option<Vec<u8>>,
    ledger: Ledger,
    /// Every tunnel we opened, by our Tunnel ID.
    standing: HashMap<u16, Standing>,
    /// Tunnels in a standing that waits for the target (Requested, Connecting, Closing).
    waiting: BTreeSet<u16>,
    /// Why tunnels ended: "by the target: …" or "by us: …", with counts.
    endings: HashMap<String, usize>,
    send_errors: usize,
    buf: Vec<u8>,
    /// Who sent the SCCRPs (address, Host Name): the endpoints of a cluster the finding is on.
    answered_by: BTreeSet<(SocketAddrV4, Option<Vec<u8>>)>,
}

impl Swarm {
    fn new(transport: Box<dyn Transport>, target: &Target, seed: u64, n: usize) -> Swarm {
        let timeout = target.reply_timeout;
        let config = TunnelConfig {
            host_name: target.host_name.clone(),
            secret: target.secret.clone(),
            // Our tries as the scripted probes make them: a send and two retransmissions, a
            // reply timeout apart.
            reliable: ReliableConfig {
                initial_timeout: timeout,
                max_timeout: timeout,
                max_retransmits: (TRIES - 1) as u32,
                ..ReliableConfig::default()
            },
            ..TunnelConfig::default()
        };
        let last = u16::try_from(n).unwrap_or(u16::MAX).max(1);
        Swarm {
            transport,
            target: target.addr,
            set: TunnelSet::with_ids(config, seed, false, 1..=last),
            options_secret: target.secret.clone(),
            ledger: Ledger::default(),
            standing: HashMap::new(),
            waiting: BTreeSet::new(),
            endings: HashMap::new(),
            send_errors: 0,
            answered_by: BTreeSet::new(),
            buf: Vec::with_capacity(2048),
        }
    }

    fn now(&self) -> Instant {
        self.transport.now()
    }

    fn set_standing(&mut self, id: u16, standing: Standing) {
        self.standing.insert(id, standing);
        if matches!(
            standing,
            Standing::Requested | Standing::Connecting | Standing::Closing
        ) {
            self.waiting.insert(id);
        } else {
            self.waiting.remove(&id);
        }
    }

    /// Re-reads a live tunnel's standing after it heard from the target.
    fn refresh(&mut self, id: u16) {
        let Some(tunnel) = self.set.tunnel(id) else {
            return;
        };
        let unacked = tunnel.reliable().in_flight() + tunnel.reliable().queued() > 0;
        let standing = match (self.standing.get(&id), tunnel.state()) {
            (_, TunnelState::WaitCtlReply) => Standing::Requested,
            (_, TunnelState::Established) if unacked => Standing::Connecting,
            (_, TunnelState::Established) => Standing::Up,
            (Some(Standing::Closing), TunnelState::Closing) if !unacked => Standing::Closed,
            (Some(&now), _) => now,
            (None, _) => return,
        };
        self.set_standing(id, standing);
    }

    fn events(&mut self) {
        while let Some((id, event)) = self.set.poll_event() {
            let closing = self.standing.get(&id) == Some(&Standing::Closing);
            match event {
                Event::TunnelDown { result, by_peer } if !closing => {
                    self.ledger.down(id);
                    let (standing, who) = if by_peer {
                        (Standing::Refused, "by the target")
                    } else {
                        (Standing::Lost, "by us")
                    };
                    *self.endings.entry(format!("{who}: {result}")).or_default() += 1;
                    self.set_standing(id, standing);
                }
                // Gone while our StopCCN was unacknowledged: it counts as not closed.
                Event::Closed if closing => self.set_standing(id, Standing::Lost),
                _ => {}
            }
        }
    }

    fn flush(&mut self) {
        let now = self.now();
        while let Some(to) = self.set.poll_transmit(now, &mut self.buf) {
            if self.transport.send_to(&self.buf, to).is_err() {
                self.send_errors += 1;
            }
        }
    }

    /// A datagram from the target: an SCCRP is booked before its tunnel takes it.
    fn receive(&mut self, received: Received) {
        let now = self.now();
        let options = ParseOptions {
            secret: self.options_secret.as_deref(),
        };
        let Ok(packet) = PacketRepr::parse(&received.bytes, &options) else {
            return;
        };
        let id = packet.header().tunnel_id;
        if let PacketRepr::Control(message) = &packet {
            let first_sccrp = message.message_type() == Some(MessageType::Sccrp)
                && self.standing.get(&id) == Some(&Standing::Requested);
            if first_sccrp {
                let have_secret = self.options_secret.is_some();
                self.ledger.sccrp(id, message, have_secret);
                let host_name = match message.avp(AvpType::HostName) {
                    Some(AvpValue::HostName(name)) => Some(name.to_vec()),
                    _ => None,
                };
                self.answered_by.insert((received.from, host_name));
            }
        }
        self.set.handle(now, received.from, &received.bytes);
        self.events();
        self.refresh(id);
    }

    /// Runs until nothing waits for the target and `start` has nothing more to start, or
    /// `deadline`; `start` is called while fewer than [`WINDOW`] tunnels wait.
    fn drive(&mut self, deadline: Instant, mut start: impl FnMut(&mut Swarm) -> bool) {
        let mut more = true;
        loop {
            while more && self.waiting.len() < WINDOW {
                more = start(self);
            }
            self.flush();
            let now = self.now();
            if (!more && self.waiting.is_empty()) || now >= deadline {
                return;
            }
            let wake = [self.set.poll_timeout(), Some(now + TICK), Some(deadline)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(deadline);
            if let Some(received) = self.transport.recv_until(wake) {
                self.receive(received);
            }
            let now = self.now();
            self.set.handle_timeout(now);
            self.events();
        }
    }

    fn count(&self, standing: Standing) -> usize {
        self.standing.values().filter(|s| **s == standing).count()
    }
}

fn tunnel_id_uniqueness(ctx: &mut Ctx) -> Step<Verdict> {
    let target = ctx.target;
    let n = target.live_tunnels.clamp(1, 60_000);
    let transport = ctx
        .network()
        .open(target.bind)
        .map_err(|e| Verdict::Inconclusive(format!("opening a UDP socket: {e}")))?;
    let seed = ctx.network().entropy();
    let mut swarm = Swarm::new(transport, target, seed, n);
    ctx.note(format!(
        "opening {n} tunnels from one socket, {WINDOW} at a time (packets not logged one by one)"
    ));
    let started = swarm.now();
    let mut opened = 0;
    swarm.drive(started + OPEN_TIME, |swarm| {
        if opened >= n {
            return false;
        }
        opened += 1;
        let now = swarm.now();
        match swarm.set.connect(now, swarm.target) {
            Some(id) => {
                swarm.set_standing(id, Standing::Requested);
                true
            }
            None => false,
        }
    });
    for (from, host_name) in &swarm.answered_by {
        ctx.answered_by(*from, host_name.as_deref());
    }
    let up = swarm.count(Standing::Up);
    let connecting = swarm.count(Standing::Connecting);
    let lost = swarm.count(Standing::Lost);
    let refused = swarm.count(Standing::Refused);
    ctx.note(format!(
        "after {:.1} s: {up} up, {connecting} with the SCCCN unacknowledged, {refused} refused, {lost} unanswered, {} distinct Tunnel IDs live",
        swarm.now().saturating_duration_since(started).as_secs_f64(),
        swarm.ledger.live.len()
    ));
    let mut endings: Vec<_> = swarm.endings.iter().collect();
    endings.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (why, count) in endings.iter().take(3) {
        ctx.note(format!("ended {count}×: {why}"));
    }
    let verdict = swarm.ledger.verdict().unwrap_or_else(|| {
        if up == 0 {
            Verdict::Inconclusive("no tunnel came up".into())
        } else {
            if up < n {
                ctx.note(format!(
                    "only {up} of {n} tunnels were up at once: uniqueness judged among those"
                ));
            }
            Verdict::Pass
        }
    });

    let mut closing: Vec<u16> = swarm
        .standing
        .iter()
        .filter(|(_, s)| matches!(s, Standing::Up | Standing::Connecting))
        .map(|(id, _)| *id)
        .collect();
    closing.sort_unstable();
    let to_close = closing.len();
    let closing_started = swarm.now();
    let mut next = closing.into_iter();
    swarm.drive(closing_started + CLOSE_TIME, |swarm| {
        let Some(id) = next.next() else {
            return false;
        };
        let now = swarm.now();
        if let Some(tunnel) = swarm.set.tunnel_mut(id) {
            tunnel.close(now, ResultCode::new(ResultCode::CLEAR_TUNNEL));
            swarm.set_standing(id, Standing::Closing);
        }
        true
    });
    ctx.note(format!(
        "closed {to_close} tunnels with StopCCN in {:.1} s ({} acknowledged){}",
        swarm
            .now()
            .saturating_duration_since(closing_started)
            .as_secs_f64(),
        swarm.count(Standing::Closed),
        if swarm.send_errors > 0 {
            format!("; {} send errors", swarm.send_errors)
        } else {
            String::new()
        }
    ));
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use l2tp::wire::{AvpValue, ControlMessage, HeaderRepr, MessageType};

    use super::{Ledger, PROBES};
    use crate::probe::catalog::sim_lns::run;
    use crate::probe::{Verdict, VerdictKind};
    use l2tp::wire::AvpRepr;

    fn sccrp(peer: u16) -> ControlMessage<'static> {
        ControlMessage {
            header: HeaderRepr::control(1, 0, 0, 1),
            avps: vec![
                AvpRepr::mandatory(AvpValue::MessageType(MessageType::Sccrp)),
                AvpRepr::mandatory(AvpValue::AssignedTunnelId(peer)),
            ],
        }
    }

    #[test]
    fn hundreds_of_tunnels_on_a_tunnel_set_lns_get_distinct_ids() {
        for secret in [false, true] {
            let result = run(&PROBES[0], secret, |t| t.live_tunnels = 700);
            assert_eq!(
                result.verdict,
                VerdictKind::Pass,
                "{:?}\n{}",
                result.reason,
                result.evidence.join("\n")
            );
            let evidence = result.evidence.join("\n");
            assert!(
                evidence.contains("700 up, 0 with the SCCCN unacknowledged"),
                "{evidence}"
            );
            assert!(
                evidence.contains("closed 700 tunnels with StopCCN"),
                "{evidence}"
            );
            assert!(evidence.contains("(700 acknowledged)"), "{evidence}");
        }
    }

    #[test]
    fn the_ledger_fails_an_id_held_twice_and_frees_an_id_when_its_tunnel_goes() {
        let mut ledger = Ledger::default();
        ledger.sccrp(1, &sccrp(40), false);
        ledger.sccrp(2, &sccrp(41), false);
        assert_eq!(ledger.verdict(), None);
        ledger.down(1);
        ledger.sccrp(3, &sccrp(40), false);
        assert_eq!(ledger.verdict(), None, "40 was free again");
        ledger.sccrp(4, &sccrp(41), false);
        assert_eq!(
            ledger.verdict(),
            Some(Verdict::Fail(
                "1 SCCRPs assigned a Tunnel ID already held by another of our live tunnels, \
                 e.g. Tunnel ID 41 assigned to our tunnels 2 and 4"
                    .into()
            ))
        );
        let mut zero = Ledger::default();
        zero.sccrp(1, &sccrp(0), false);
        assert!(
            matches!(zero.verdict(), Some(Verdict::Fail(why)) if why.starts_with("1 SCCRPs without"))
        );
    }
}
