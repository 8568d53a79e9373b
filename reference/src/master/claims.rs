//! Agents' tunnel claims: an LNS we did not write picks random Tunnel IDs, so its agent tells
//! the master which (initiator address, port, Tunnel ID) each new tunnel has, and the master
//! routes those packets by that triple.

use std::net::SocketAddrV4;

use l2tp::time::Instant;

use super::{Master, ReportOutcome, ReportRejection, TunnelClaimEntry};
use crate::cluster::{self, ClaimOp, ReportError};

/// How often idle claims are looked for: claims live minutes, so a sweep in ten seconds is
/// timely and cheap.
const CLAIM_SWEEP_EVERY: core::time::Duration = core::time::Duration::from_secs(10);

impl Master {
    /// Sealed tunnel claims from an agent (through `handle_report`). Accepted ones are acked
    /// like reports. A claim for a tunnel another endpoint holds is refused on its own and
    /// counted (`claims.conflict`); the others in the message still apply.
    pub(super) fn handle_claims(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        bytes: &[u8],
    ) -> ReportOutcome {
        use ReportOutcome::Rejected;
        let message = match cluster::open_claims(bytes, &self.config.key) {
            Ok(message) => message,
            Err(ReportError::BadTag) => {
                self.claim_counts.forged += 1;
                tracing::debug!(%from, "forged tunnel claims");
                return Rejected(ReportRejection::Forged);
            }
            Err(err @ ReportError::BadVersion(_)) => {
                self.claim_counts.bad_version += 1;
                self.warn_version(now, from, "tunnel claims", err);
                return Rejected(ReportRejection::BadVersion);
            }
            Err(err) => {
                self.claim_counts.malformed += 1;
                tracing::debug!(%from, %err, "malformed tunnel claims");
                return Rejected(ReportRejection::Malformed);
            }
        };
        let Some(&index) = self.by_name.get(&message.endpoint) else {
            self.claim_counts.unknown_endpoint += 1;
            if let Some(held) = self.claim_warning.allow(now) {
                tracing::warn!(
                    endpoint = %message.endpoint, %from, since_last_warning = held + 1,
                    "tunnel claims from an endpoint that never reported: refused"
                );
            }
            return Rejected(ReportRejection::UnknownEndpoint);
        };
        if message.sequence <= self.members[index].claims_sequence {
            self.claim_counts.replayed += 1;
            tracing::debug!(endpoint = %message.endpoint, sequence = message.sequence, "replayed tunnel claims");
            return Rejected(ReportRejection::Replayed);
        }
        self.members[index].claims_sequence = message.sequence;
        self.claim_counts.messages += 1;
        for claim in &message.claims {
            let key = (claim.initiator, claim.tunnel_id);
            match claim.op {
                ClaimOp::Claim => {
                    // A claim is more specific than a Tunnel ID block (it names the initiator
                    // too), so it may lie inside one: an LNS with random IDs beside ours.
                    let holder = self
                        .claims
                        .get(&key)
                        .map(|entry| entry.member)
                        .filter(|&m| m != index);
                    if let Some(holder) = holder {
                        self.claim_counts.conflict += 1;
                        if let Some(held) = self.claim_warning.allow(now) {
                            tracing::warn!(
                                endpoint = %message.endpoint, initiator = %claim.initiator,
                                tunnel_id = claim.tunnel_id, holder = %self.members[holder].name,
                                since_last_warning = held + 1,
                                "tunnel claim refused: another endpoint holds that tunnel"
                            );
                        }
                        continue;
                    }
                    self.claim_counts.claimed += 1;
                    self.release_parked(claim.initiator, claim.tunnel_id, index);
                    self.claims.insert(
                        key,
                        TunnelClaimEntry {
                            member: index,
                            last_used: now,
                        },
                    );
                    self.claim_sweep_at.get_or_insert(now + CLAIM_SWEEP_EVERY);
                }
                ClaimOp::Release => {
                    if self.claims.get(&key).is_some_and(|e| e.member == index) {
                        self.claims.remove(&key);
                        self.claim_counts.released += 1;
                    }
                }
            }
        }
        self.queue_ack_for(now, from, message.sequence);
        ReportOutcome::Accepted
    }

    /// The endpoint whose agent claimed the tunnel `tunnel_id` of `initiator`; the claim is
    /// used, so it stays.
    pub(super) fn claimed_owner(
        &mut self,
        now: Instant,
        initiator: SocketAddrV4,
        tunnel_id: u16,
    ) -> Option<usize> {
        let entry = self.claims.get_mut(&(initiator, tunnel_id))?;
        entry.last_used = now;
        Some(entry.member)
    }

    /// Forgets claims that carried no packet for `claim_timeout` (their release was lost, or
    /// the LNS died with them).
    pub(super) fn sweep_claims(&mut self, now: Instant) {
        if self.claim_sweep_at.is_none_or(|at| now < at) {
            return;
        }
        let timeout = self.config.claim_timeout;
        let before = self.claims.len();
        self.claims
            .retain(|_, e| now.saturating_duration_since(e.last_used) < timeout);
        let gone = before - self.claims.len();
        if gone > 0 {
            self.claim_counts.expired += gone as u64;
            tracing::info!(
                claims = gone,
                "tunnel claims idle for {timeout:?}: forgotten"
            );
        }
        self.claim_sweep_at = (!self.claims.is_empty()).then(|| now + CLAIM_SWEEP_EVERY);
    }
}
