//! Where a packet goes: SCCRQs by policy (with the memory of earlier choices for
//! retransmissions), everything else by the Tunnel ID blocks.

use l2tp::ip::{self, Ipv4Udp};
use l2tp::time::Instant;
use l2tp::wire::avp::Avp;
use l2tp::wire::{Header, HeaderRepr};

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};

use super::{
    AdminState, AssignedTunnel, DispatchKey, DropReason, Master, Member, MemberState, ParkedPacket,
    Policy, Remembered, Verdict, L2TP_PORT, MAX_PARKED, MAX_RECENT, PARK_FOR,
};

impl Master {
    /// has been rewritten in place (checksums updated); on `Drop` it is untouched.
    pub fn handle_packet(&mut self, now: Instant, packet: &mut [u8]) -> Verdict {
        self.observe(now);
        match self.route(now, packet) {
            Err(Miss::Park {
                initiator,
                tunnel_id,
            }) => {
                self.park(now, initiator, tunnel_id, packet);
                Verdict::Parked
            }
            Ok(index) => {
                let member = &self.members[index];
                // `route` accepted the packet, so the checked view cannot fail here.
                if let Ok(mut view) = Ipv4Udp::new_checked(&mut *packet) {
                    view.set_dst(member.lan_addr);
                }
                Verdict::Forward {
                    endpoint: member.name.clone(),
                    to: member.lan_addr,
                }
            }
            Err(Miss::Drop(reason)) => {
                *self.drops.slot(reason) += 1;
                self.totals.dropped += 1;
                Verdict::Drop(reason)
            }
        }
    }

    fn route(&mut self, now: Instant, packet: &[u8]) -> Result<usize, Miss> {
        let datagram = Ipv4Udp::new_checked(packet).map_err(|err| {
            Miss::Drop(match err {
                ip::Error::NotUdp { .. } => DropReason::NotUdp,
                ip::Error::Fragment { .. } => DropReason::Fragment,
                _ => DropReason::Malformed,
            })
        })?;
        if datagram.dst() != self.config.cluster_addr {
            return Err(Miss::Drop(DropReason::NotClusterAddress));
        }
        if datagram.dst_port() != L2TP_PORT {
            return Err(Miss::Drop(DropReason::NotL2tpPort));
        }
        let l2tp = datagram.udp_payload();
        let header = Header::new_checked(l2tp).map_err(|_| Miss::Drop(DropReason::Malformed))?;
        if header.is_control() && header.tunnel_id() == 0 {
            if let Some(assigned) = sccrq_assigned_tunnel(&header).map_err(Miss::Drop)? {
                let key = DispatchKey {
                    initiator: datagram.src_addr(),
                    assigned,
                };
                return self.dispatch(now, key).map_err(Miss::Drop);
            }
        }
        let initiator = datagram.src_addr();
        let tunnel_id = header.tunnel_id();
        let Some(index) = self
            .claimed_owner(now, initiator, tunnel_id)
            .or_else(|| self.tunnel_owner(tunnel_id))
        else {
            if tunnel_id != 0 && self.may_be_claimed(now, initiator) {
                return Err(Miss::Park {
                    initiator,
                    tunnel_id,
                });
            }
            return Err(Miss::Drop(DropReason::UnknownTunnel));
        };
        // Freshness, not `state`: a deactivated endpoint whose reports stopped is gone too.
        if !self.members[index].is_fresh(now, self.config.report_timeout) {
            self.members[index].dropped_out_of_service += 1;
            return Err(Miss::Drop(DropReason::EndpointOutOfService));
        }
        self.members[index].forwarded += 1;
        self.totals.forwarded += 1;
        Ok(index)
    }

    fn dispatch(&mut self, now: Instant, key: DispatchKey) -> Result<usize, DropReason> {
        let memory = self.config.dispatch_memory;
        let mut taken_from = None;
        if let Some(earlier) = self.remembered.get(&key) {
            if now.saturating_duration_since(earlier.at) < memory {
                let index = earlier.member;
                let member = &mut self.members[index];
                let gone = !member.is_fresh(now, self.config.report_timeout)
                    || member.admin == AdminState::Deactivated
                    || member.reported_state == crate::cluster::EndpointState::Unresponsive;
                if !gone {
                    member.sccrq_retransmitted += 1;
                    self.totals.sccrq_retransmitted += 1;
                    member.sent(now);
                    self.await_claim(now, key.initiator, index);
                    return Ok(index);
                }
                // The initiator never had an SCCRP (or it would not retransmit): place it anew.
                // Should no endpoint take it now, the choice stays for the next retransmission,
                // which goes back here if this endpoint has reported again by then.
                taken_from = Some(index);
            }
        }
        if self.hold_until.is_some() {
            return Err(DropReason::PlacementHeld);
        }
        let index = self.pick(now)?;
        if let Some(from) = taken_from {
            self.members[from].sccrq_redispatched_away += 1;
            self.totals.sccrq_redispatched += 1;
            tracing::debug!(
                from = %self.members[from].name, to = %self.members[index].name,
                "retransmitted SCCRQ placed anew: its first endpoint is out of service or deactivated"
            );
        }
        let member = &mut self.members[index];
        member.sent(now);
        member.dispatched_total += 1;
        if matches!(self.config.policy, Policy::LeakyBucket { .. }) {
            member.bucket.tokens -= 1.0;
        }
        self.totals.sccrq_dispatched += 1;
        self.await_claim(now, key.initiator, index);
        self.remember(now, key, index);
        Ok(index)
    }

    /// The policy's choice among the endpoints in service that have room.
    fn pick(&mut self, now: Instant) -> Result<usize, DropReason> {
        let timeout = self.config.report_timeout;
        let policy = self.config.policy;
        if let Policy::LeakyBucket { rate, burst } = policy {
            let rate = if rate.is_finite() { rate.max(0.0) } else { 0.0 };
            for member in &mut self.members {
                member.bucket.refill(now, rate, burst);
            }
        }
        let count = self.order.len();
        let mut in_service = false;
        let mut best: Option<(usize, usize)> = None; // (position in order, member)
        for step in 0..count {
            let position = (self.cursor + step) % count;
            let index = self.order[position];
            let member = &self.members[index];
            if member.state(now, timeout) != MemberState::InService {
                continue;
            }
            in_service = true;
            if member.is_full() {
                continue;
            }
            let better = match (policy, best) {
                (Policy::LeakyBucket { .. }, _) if member.bucket.tokens < 1.0 => false,
                (_, None) => true,
                (Policy::RoundRobin, Some(_)) => false,
                (Policy::LeastLoad, Some((_, b))) => member.less_loaded_than(&self.members[b]),
                (Policy::LeakyBucket { .. }, Some((_, b))) => {
                    member.bucket.tokens > self.members[b].bucket.tokens
                }
            };
            if better {
                best = Some((position, index));
            }
        }
        match best {
            Some((position, index)) => {
                self.cursor = (position + 1) % count;
                Ok(index)
            }
            None if in_service => {
                self.count_no_capacity(now);
                Err(DropReason::NoCapacity)
            }
            None => Err(DropReason::NoEndpoint),
        }
    }

    /// Charges a `NoCapacity` drop to every endpoint in service whose empty bucket refused it,
    /// and warns (throttled) that SCCRQs are being dropped.
    fn count_no_capacity(&mut self, now: Instant) {
        let timeout = self.config.report_timeout;
        let leaky = matches!(self.config.policy, Policy::LeakyBucket { .. });
        for member in &mut self.members {
            if leaky
                && member.state(now, timeout) == MemberState::InService
                && !member.is_full()
                && member.bucket.tokens < 1.0
            {
                member.bucket_drops += 1;
            }
        }
        if let Some(held) = self.no_capacity_warning.allow(now) {
            tracing::warn!(
                dropped = self.drops.no_capacity + 1,
                since_last_warning = held + 1,
                "no endpoint in service has room (full, or its leaky bucket empty): SCCRQs dropped"
            );
        }
    }

    pub(super) fn remember(&mut self, now: Instant, key: DispatchKey, member: usize) {
        let memory = self.config.dispatch_memory;
        let limit = self.config.max_remembered.max(1);
        // A redispatch replaces its key's choice: the memory does not grow.
        while !self.remembered.contains_key(&key) && self.remembered.len() >= limit {
            let Some((deadline, oldest)) = self.expiry.pop_front() else {
                break;
            };
            // A queue entry a later choice for the same key left behind evicts nothing.
            let current = self
                .remembered
                .get(&oldest)
                .is_some_and(|r| r.at + memory == deadline);
            if !current {
                continue;
            }
            self.remembered.remove(&oldest);
            self.totals.remembered_evicted += 1;
            if let Some(held) = self.memory_full_warning.allow(now) {
                tracing::warn!(
                    limit,
                    evicted = self.totals.remembered_evicted,
                    since_last_warning = held + 1,
                    "dispatch memory full: forgetting the oldest SCCRQ choices (a retransmission \
                     of one may now go to another endpoint)"
                );
            }
        }
        let deadline = now + memory;
        // A choice that expired unswept is replaced; its old queue entry finds the new `at`
        // when it comes up and leaves the choice alone.
        self.remembered
            .insert(key.clone(), Remembered { member, at: now });
        self.expiry.push_back((deadline, key));
    }
}

/// For a control message to Tunnel ID 0: `Some` with its Assigned Tunnel ID when it is an SCCRQ,
/// `None` when it is some other message (which then routes as Tunnel ID 0: to nobody).
fn sccrq_assigned_tunnel(header: &Header<&[u8]>) -> Result<Option<AssignedTunnel>, DropReason> {
    const MESSAGE_TYPE: u16 = 0;
    const ASSIGNED_TUNNEL_ID: u16 = 9;
    const SCCRQ: [u8; 2] = [0, 1];
    let avps = header.payload();
    if avps.is_empty() {
        return Ok(None); // a ZLB
    }
    let first = Avp::new_checked(avps, 0).map_err(|_| DropReason::Malformed)?;
    if first.vendor_id() != 0 || first.attr_type() != MESSAGE_TYPE || first.hidden() {
        return Err(DropReason::Malformed); // RFC 2661 §4.4.1: Message Type comes first
    }
    if first.value() != SCCRQ {
        return Ok(None);
    }
    // T, L and S set, O and P clear: an SCCRQ an endpoint would accept.
    HeaderRepr::parse(header).map_err(|_| DropReason::Malformed)?;
    let mut offset = 0;
    while let Some(rest) = avps.get(offset..).filter(|rest| !rest.is_empty()) {
        let avp = Avp::new_checked(rest, offset).map_err(|_| DropReason::Malformed)?;
        if avp.vendor_id() == 0 && avp.attr_type() == ASSIGNED_TUNNEL_ID {
            return match (avp.hidden(), avp.value()) {
                (true, ciphertext) => Ok(Some(AssignedTunnel::Hidden(ciphertext.into()))),
                (false, &[high, low]) => {
                    Ok(Some(AssignedTunnel::Plain(u16::from_be_bytes([high, low]))))
                }
                (false, _) => Err(DropReason::Malformed),
            };
        }
        offset += usize::from(avp.length());
    }
    Err(DropReason::Malformed) // mandatory in an SCCRQ (RFC 2661 §6.1)
}

/// Why `route` did not pick an endpoint.
enum Miss {
    Drop(DropReason),
    /// No one holds the tunnel yet, but an agent's claim for it may be on the way.
    Park {
        initiator: SocketAddrV4,
        tunnel_id: u16,
    },
}

impl Master {
    /// Whether `initiator` had an SCCRQ placed on an agent's LNS within [`PARK_FOR`].
    fn may_be_claimed(&mut self, now: Instant, initiator: SocketAddrV4) -> bool {
        match self.awaiting_claims.get(&initiator) {
            Some(&at) if now.saturating_duration_since(at) < PARK_FOR => true,
            Some(_) => {
                self.awaiting_claims.remove(&initiator);
                false
            }
            None => false,
        }
    }

    /// An SCCRQ of `initiator` went to `member`: when that is an agent's LNS (no Tunnel ID
    /// blocks), the claim of its tunnel follows the LNS's answer, which may come from this
    /// SCCRQ or any retransmission of it.
    fn await_claim(&mut self, now: Instant, initiator: SocketAddrV4, member: usize) {
        if self.members[member].tunnel_ids.is_empty() {
            self.awaiting_claims.insert(initiator, now);
        }
    }

    fn park(&mut self, now: Instant, initiator: SocketAddrV4, tunnel_id: u16, packet: &[u8]) {
        if self.parked.len() >= MAX_PARKED {
            *self.drops.slot(DropReason::UnknownTunnel) += 1;
            self.totals.dropped += 1;
            return;
        }
        let len = Ipv4Udp::new_checked(packet).map_or(packet.len(), |d| d.total_len());
        self.totals.parked += 1;
        self.parked.push_back(ParkedPacket {
            at: now,
            initiator,
            tunnel_id,
            packet: packet.get(..len).unwrap_or(packet).to_vec(),
        });
    }

    /// The claim of (initiator, tunnel) by `member` came: its parked packets go on.
    pub(super) fn release_parked(
        &mut self,
        initiator: SocketAddrV4,
        tunnel_id: u16,
        member: usize,
    ) {
        if self.parked.is_empty() {
            return;
        }
        let to = self.members[member].lan_addr;
        let mut kept = VecDeque::with_capacity(self.parked.len());
        for mut p in self.parked.drain(..) {
            if p.initiator != initiator || p.tunnel_id != tunnel_id {
                kept.push_back(p);
                continue;
            }
            if let Ok(mut view) = Ipv4Udp::new_checked(&mut p.packet[..]) {
                view.set_dst(to);
            }
            self.totals.parked_released += 1;
            self.totals.forwarded += 1;
            self.members[member].forwarded += 1;
            self.released.push_back((p.packet, to));
        }
        self.parked = kept;
    }

    /// Parked packets no claim came for are dropped (`UnknownTunnel`).
    pub(super) fn expire_parked(&mut self, now: Instant) {
        while self
            .parked
            .front()
            .is_some_and(|p| now.saturating_duration_since(p.at) >= PARK_FOR)
        {
            self.parked.pop_front();
            *self.drops.slot(DropReason::UnknownTunnel) += 1;
            self.totals.dropped += 1;
        }
        if self.awaiting_claims.len() > MAX_PARKED {
            self.awaiting_claims
                .retain(|_, &mut at| now.saturating_duration_since(at) < PARK_FOR);
        }
    }

    /// A parked packet whose claim came, its destination rewritten: send it on the LAN to the
    /// address given, as a `Forward`.
    pub fn poll_released(&mut self) -> Option<(Vec<u8>, Ipv4Addr)> {
        self.released.pop_front()
    }
}

impl Member {
    /// One more SCCRQ sent to it: in flight until a report counts it.
    fn sent(&mut self, now: Instant) {
        self.sccrq_sent += 1;
        self.dispatched_since_report = self.dispatched_since_report.saturating_add(1);
        if self.recent_sends.len() >= MAX_RECENT {
            self.recent_sends.pop_front();
        }
        self.recent_sends.push_back(now);
    }
}
