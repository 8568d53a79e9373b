//! The endpoints the master knows: their load reports and acks, their Tunnel ID blocks, and
//! the operator's drain / deactivate / activate.

use std::net::{Ipv4Addr, SocketAddrV4};

use l2tp::time::Instant;

use super::{
    AdminState, Bucket, Master, Member, MemberState, Policy, ReportOutcome, ReportRejection,
    MAX_PENDING_ACKS, REPORT_LAG,
};
use crate::cluster::{self, EndpointState, ReportAck, ReportError, ViewEntry};
use crate::takeover::Holder;

impl Master {
    /// A load report datagram from `from` (kept for the status only: the tag, not the source
    /// address, says who sent it). Forged, replayed or malformed reports change nothing but
    /// their counter.
    pub fn handle_report(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        bytes: &[u8],
    ) -> ReportOutcome {
        self.observe(now);
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
        // A report cannot count the SCCRQs still on their way to the endpoint (or queued in
        // it) when it was written: those sent within REPORT_LAG before it arrived stay counted.
        // Forgetting them made a burst land unevenly on a busy machine (118/71/111 of 300).
        member
            .recent_dispatches
            .retain(|&at| now.saturating_duration_since(at) < REPORT_LAG);
        member.dispatched_since_report =
            u32::try_from(member.recent_dispatches.len()).unwrap_or(u32::MAX);
        member.fresh = member.is_fresh(now, timeout);
        ReportOutcome::Accepted
    }

    /// Queues the ack of an accepted report: its sequence and the view as it is now.
    fn queue_ack(&mut self, now: Instant, from: SocketAddrV4, bytes: &[u8]) {
        // Accepted, so it opens.
        let Ok(report) = cluster::open(bytes, &self.config.key) else {
            return;
        };
        let ack = ReportAck {
            master: self.config.name.clone(),
            sequence: self.ack_sequence,
            report_sequence: report.sequence,
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
            recent_dispatches: std::collections::VecDeque::new(),
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
