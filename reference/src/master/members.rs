//! The endpoints the master knows: their load reports and acks, their Tunnel ID blocks, and
//! the operator's drain / deactivate / activate.

use std::net::{Ipv4Addr, SocketAddrV4};

use l2tp::time::Instant;

use super::{
    AdminState, Bucket, Master, Member, MemberState, Policy, ReportOutcome, ReportRejection, Seed,
    MAX_PENDING_ACKS,
};
use crate::cluster::{self, EndpointState, MessageKind, ReportAck, ReportError, ViewEntry};
use crate::takeover::Holder;

impl Master {
    /// A datagram on the report port from `from` (kept for the status only: the tag, not the
    /// source address, says who sent it): a load report, or an agent's tunnel claims. Forged,
    /// replayed or malformed ones change nothing but their counter.
    pub fn handle_report(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        bytes: &[u8],
    ) -> ReportOutcome {
        self.observe(now);
        if cluster::message_kind(bytes) == Some(MessageKind::Claims) {
            return self.handle_claims(now, from, bytes);
        }
        let outcome = self.apply_report(now, from, bytes);
        match outcome {
            ReportOutcome::Accepted => {
                self.reports.accepted += 1;
                self.queue_ack(now, from, bytes);
            }
            ReportOutcome::Rejected(why) => {
                let counter = match why {
                    ReportRejection::Forged => &mut self.reports.forged,
                    ReportRejection::Replayed => &mut self.reports.replayed,
                    ReportRejection::Malformed => &mut self.reports.malformed,
                    ReportRejection::TunnelIdConflict => &mut self.reports.tunnel_id_conflict,
                    ReportRejection::BadVersion => &mut self.reports.bad_version,
                    // Only claims name an endpoint the master must know already.
                    ReportRejection::UnknownEndpoint => &mut self.reports.malformed,
                };
                *counter += 1;
            }
        }
        outcome
    }

    fn apply_report(&mut self, now: Instant, from: SocketAddrV4, bytes: &[u8]) -> ReportOutcome {
        use ReportOutcome::Rejected;
        let report = match cluster::open(bytes, &self.config.key) {
            Ok(report) => report,
            Err(ReportError::BadTag) => {
                tracing::debug!(%from, "forged load report");
                return Rejected(ReportRejection::Forged);
            }
            Err(err @ ReportError::BadVersion(_)) => {
                self.warn_version(now, from, "load report", err);
                return Rejected(ReportRejection::BadVersion);
            }
            Err(err) => {
                tracing::debug!(%from, %err, "malformed load report");
                return Rejected(ReportRejection::Malformed);
            }
        };
        if report.lan_addr == self.config.cluster_addr {
            tracing::warn!(endpoint = %report.endpoint, "load report names the cluster address as its LAN address");
            return Rejected(ReportRejection::Malformed);
        }
        let existing = self.by_name.get(&report.endpoint).copied();
        if let Some(index) = existing {
            if report.sequence <= self.members[index].sequence {
                tracing::debug!(endpoint = %report.endpoint, sequence = report.sequence, "replayed load report");
                return Rejected(ReportRejection::Replayed);
            }
        }
        for &(first, last) in &report.tunnel_ids {
            if let Some(owner) = self.block_owner_other_than(first, last, existing) {
                tracing::warn!(
                    endpoint = %report.endpoint, first, last, owner = %self.members[owner].name,
                    "load report claims Tunnel IDs another endpoint holds"
                );
                return Rejected(ReportRejection::TunnelIdConflict);
            }
        }

        let index = match existing {
            Some(index) => index,
            None => {
                tracing::info!(endpoint = %report.endpoint, lan = %report.lan_addr, "endpoint joins the cluster");
                self.add_member(now, from, &report.endpoint)
            }
        };
        if self.members[index].tunnel_ids != report.tunnel_ids {
            for (first, _) in &self.members[index].tunnel_ids {
                self.blocks.remove(first);
            }
            for &(first, last) in &report.tunnel_ids {
                self.blocks.insert(first, (last, index));
            }
        }
        let timeout = self.config.report_timeout;
        let member = &mut self.members[index];
        if !member.fresh {
            tracing::info!(endpoint = %member.name, "endpoint reports again");
        }
        if report.state == EndpointState::Unresponsive
            && member.reported_state != EndpointState::Unresponsive
        {
            tracing::warn!(
                endpoint = %member.name,
                "the endpoint's agent says its LNS leaves SCCRQs unanswered: no new tunnels for it"
            );
        }
        member.lan_addr = report.lan_addr;
        member.global_addr = report.global_addr;
        member.tunnels = report.tunnels;
        member.sessions = report.sessions;
        member.capacity = report.capacity;
        member.reported_state = report.state;
        member.tunnel_ids = report.tunnel_ids;
        member.sequence = report.sequence;
        member.last_report = now;
        member.last_report_from = from;
        // What was sent and not yet received is in flight: counted exactly, so a burst does
        // not land unevenly however late a busy endpoint reports (118/71/111 of 300 when this
        // was guessed from a fixed lag).
        let sent_since = member.sccrq_sent.saturating_sub(member.sent_at_report);
        let recent = member.recent_sends(now);
        let in_flight = match member.sccrq_received {
            Some(before) if report.sccrq_received >= before => (u64::from(member.in_flight)
                + sent_since)
                .saturating_sub(report.sccrq_received - before),
            // Its first report here, or it restarted (its count began again): what it has
            // received of ours is unknown; the SCCRQs not yet lost bound it.
            _ => u64::from(recent),
        };
        member.in_flight = u32::try_from(in_flight).unwrap_or(u32::MAX).min(recent);
        member.sccrq_received = Some(report.sccrq_received);
        member.sent_at_report = member.sccrq_sent;
        member.dispatched_since_report = 0;
        member.fresh = member.is_fresh(now, timeout);
        if member.seed != Seed::Reported {
            member.seed = Seed::Reported;
            self.maybe_end_hold(now);
        }
        ReportOutcome::Accepted
    }

    /// Warns (throttled) of a sealed message of another version: a member of another release.
    pub(super) fn warn_version(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        kind: &str,
        err: ReportError,
    ) {
        if let Some(held) = self.version_warning.allow(now) {
            tracing::warn!(%from, since_last_warning = held + 1, "{kind} refused: {err}");
        }
    }

    /// A master that took over starts from the view of the last ack its endpoint heard: the
    /// names, LAN addresses and Tunnel ID blocks of the cluster, so that the tunnels of every
    /// endpoint route from the first packet. Those in service stay so for one report timeout
    /// (their own reports keep them), the others start out of service; placement holds until
    /// each one in service has reported, or `placement_hold` has passed.
    pub fn seed_view(&mut self, now: Instant, view: &[ViewEntry]) {
        self.observe(now);
        let mut awaited = 0;
        for entry in view {
            if self.by_name.contains_key(&entry.name) || entry.lan_addr == self.config.cluster_addr
            {
                continue;
            }
            let conflict = entry
                .tunnel_ids
                .iter()
                .any(|&(first, last)| self.block_owner_other_than(first, last, None).is_some());
            let from = SocketAddrV4::new(entry.lan_addr, cluster::REPORT_PORT);
            let index = self.add_member(now, from, &entry.name);
            let member = &mut self.members[index];
            member.lan_addr = entry.lan_addr;
            if entry.in_service {
                member.seed = Seed::Awaited;
                awaited += 1;
            } else {
                member.seed = Seed::OutOfService;
                member.fresh = false;
            }
            if !conflict {
                member.tunnel_ids = entry.tunnel_ids.clone();
                for &(first, last) in &entry.tunnel_ids {
                    self.blocks.insert(first, (last, index));
                }
            }
        }
        if awaited > 0 {
            self.hold_until = Some(now + self.config.placement_hold);
            tracing::info!(
                endpoints = awaited, hold = ?self.config.placement_hold,
                "started from the last view: placement waits for the endpoints' first reports"
            );
        }
    }

    fn maybe_end_hold(&mut self, now: Instant) {
        let timeout = self.config.report_timeout;
        let waiting = self
            .members
            .iter()
            .any(|m| m.seed == Seed::Awaited && m.is_fresh(now, timeout));
        if self.hold_until.is_some() && !waiting {
            self.end_hold("every endpoint in service has reported");
        }
    }

    pub(super) fn end_hold(&mut self, why: &str) {
        if self.hold_until.take().is_some() {
            tracing::info!("placement resumes: {why}");
        }
    }

    /// Queues the ack of an accepted report: its sequence and the view as it is now.
    fn queue_ack(&mut self, now: Instant, from: SocketAddrV4, bytes: &[u8]) {
        // Accepted, so it opens.
        if let Ok(report) = cluster::open(bytes, &self.config.key) {
            self.queue_ack_for(now, from, report.sequence);
        }
    }

    /// Queues an ack of the report or claims with `acked` as their sequence.
    pub(super) fn queue_ack_for(&mut self, now: Instant, from: SocketAddrV4, acked: u64) {
        let ack = ReportAck {
            master: self.config.name.clone(),
            sequence: self.ack_sequence,
            report_sequence: acked,
            view: self.view(now),
        };
        self.ack_sequence = self.ack_sequence.saturating_add(1);
        if self.acks.len() >= MAX_PENDING_ACKS {
            self.acks.pop_front();
        }
        self.acks
            .push_back((from, cluster::seal_ack(&ack, &self.config.key)));
    }

    /// The next ack to send, to the address its report came from.
    pub fn poll_ack(&mut self) -> Option<(SocketAddrV4, Vec<u8>)> {
        let ack = self.acks.pop_front()?;
        self.reports.acks_sent += 1;
        Some(ack)
    }

    /// The endpoints as the acks show them: name order, in service or not.
    pub fn view(&self, now: Instant) -> Vec<ViewEntry> {
        let timeout = self.config.report_timeout;
        self.order
            .iter()
            .map(|&index| {
                let m = &self.members[index];
                ViewEntry {
                    name: m.name.clone(),
                    lan_addr: m.lan_addr,
                    in_service: m.state(now, timeout) == MemberState::InService,
                    tunnel_ids: m
                        .tunnel_ids
                        .iter()
                        .take(cluster::MAX_VIEW_BLOCKS)
                        .copied()
                        .collect(),
                }
            })
            .collect()
    }

    /// What the status says of this master's hold on the cluster address.
    pub fn set_holder(&mut self, holder: Holder) {
        self.holder = holder;
    }

    fn add_member(&mut self, now: Instant, from: SocketAddrV4, name: &str) -> usize {
        let burst = match self.config.policy {
            Policy::LeakyBucket { burst, .. } => f64::from(burst),
            _ => 0.0,
        };
        let index = self.members.len();
        self.members.push(Member {
            name: name.to_owned(),
            lan_addr: Ipv4Addr::UNSPECIFIED,
            global_addr: None,
            tunnels: 0,
            sessions: 0,
            capacity: 0,
            reported_state: EndpointState::InService,
            tunnel_ids: Vec::new(),
            sequence: 0,
            last_report: now,
            last_report_from: from,
            admin: AdminState::Active,
            dispatched_since_report: 0,
            recent_sends: std::collections::VecDeque::new(),
            sccrq_sent: 0,
            sent_at_report: 0,
            sccrq_received: None,
            in_flight: 0,
            seed: Seed::Reported,
            claims_sequence: 0,
            dispatched_total: 0,
            sccrq_retransmitted: 0,
            sccrq_redispatched_away: 0,
            forwarded: 0,
            dropped_out_of_service: 0,
            bucket_drops: 0,
            bucket: Bucket {
                tokens: burst,
                at: now,
            },
            fresh: true,
        });
        self.by_name.insert(name.to_owned(), index);
        // The rotation keeps pointing at the endpoint it pointed at before.
        let next = self.order.get(self.cursor).copied();
        self.order = self.by_name.values().copied().collect();
        self.cursor = next
            .and_then(|m| self.order.iter().position(|&o| o == m))
            .unwrap_or(0);
        index
    }

    /// A member other than `except` holding an ID in `first..=last`.
    pub(super) fn block_owner_other_than(
        &self,
        first: u16,
        last: u16,
        except: Option<usize>,
    ) -> Option<usize> {
        // Blocks are disjoint: walking down from `last`, ends fall too, so stop at the first
        // block that ends before `first`.
        self.blocks
            .range(..=last)
            .rev()
            .take_while(|(_, &(end, _))| end >= first)
            .map(|(_, &(_, owner))| owner)
            .find(|&owner| Some(owner) != except)
    }

    pub(super) fn tunnel_owner(&self, tunnel_id: u16) -> Option<usize> {
        let (_, &(last, owner)) = self.blocks.range(..=tunnel_id).next_back()?;
        (tunnel_id <= last).then_some(owner)
    }

    /// One IPv4 packet that reached the cluster address. On `Forward` its destination address
    fn set_admin(&mut self, endpoint: &str, admin: AdminState) -> bool {
        let Some(&index) = self.by_name.get(endpoint) else {
            return false;
        };
        let member = &mut self.members[index];
        if member.admin != admin {
            tracing::info!(endpoint, from = ?member.admin, to = ?admin, "endpoint state set");
            member.admin = admin;
        }
        true
    }

    /// No new SCCRQs for this endpoint; packets of its existing tunnels (and retransmissions
    /// of SCCRQs it already has) still reach it. Holds until `activate`. False when the master
    /// has never heard of it.
    pub fn drain(&mut self, endpoint: &str) -> bool {
        self.set_admin(endpoint, AdminState::Drained)
    }

    /// The patent's "inactivate" (an endpoint not needed at the current level of traffic): no
    /// new SCCRQs, its capacity leaves the cluster's total, and it shows as deactivated even
    /// when its reports stop. Packets of its existing tunnels are still forwarded, as for a
    /// drained endpoint, while it reports: the master never cuts a live tunnel, since dropping
    /// its packets would only leave both ends to time out where the endpoint can close it
    /// cleanly with StopCCN. A retransmitted SCCRQ it was sent goes to another endpoint (the
    /// initiator has no tunnel yet). Holds until `activate`.
    pub fn deactivate(&mut self, endpoint: &str) -> bool {
        self.set_admin(endpoint, AdminState::Deactivated)
    }

    /// Undoes `drain` or `deactivate`. An endpoint that reports Draining itself stays draining.
    pub fn activate(&mut self, endpoint: &str) -> bool {
        self.set_admin(endpoint, AdminState::Active)
    }
}
