//! Where the master placed a tunnel's SCCRQ: which copies belong to an endpoint it left.

use super::matcher::transmissions;
use super::{Context, Placement};
use crate::sequence::roles::AddressRole;
use crate::sequence::tunnels::Entry;

impl Placement {
    pub(super) fn of(ctx: &Context, request: &[Entry], reply: &[Entry]) -> Placement {
        let mut p = Placement::default();
        for e in request {
            let o = ctx.obs(*e);
            if let AddressRole::EndpointLan(i) = ctx.role(*o.dst.ip()) {
                if !p.dispatched.iter().any(|(j, _)| *j == i) {
                    p.dispatched.push((i, o.time));
                }
            }
        }
        for e in reply {
            if let AddressRole::EndpointLan(i) | AddressRole::EndpointGlobal(i) =
                ctx.role(*ctx.obs(*e).src.ip())
            {
                if !p.answered.contains(&i) {
                    p.answered.push(i);
                }
            }
        }
        if p.dispatched.len() < 2 {
            return p;
        }
        p.serving = p
            .dispatched
            .iter()
            .map(|(i, _)| *i)
            .find(|i| p.answered.contains(i))
            .or_else(|| p.dispatched.last().map(|(i, _)| *i));
        // Left legitimately: got its copies before the serving endpoint got its first,
        // never answered, and got none after.
        if let Some(serving) = p.serving {
            let since = p
                .dispatched
                .iter()
                .find(|(i, _)| *i == serving)
                .map(|(_, t)| *t);
            let last_copy = |i: usize| {
                request
                    .iter()
                    .map(|e| ctx.obs(*e))
                    .filter(|o| ctx.role(*o.dst.ip()) == AddressRole::EndpointLan(i))
                    .map(|o| o.time)
                    .max()
            };
            p.left = p
                .dispatched
                .iter()
                .map(|(i, _)| *i)
                .filter(|&i| {
                    i != serving
                        && !p.answered.contains(&i)
                        && matches!((last_copy(i), since), (Some(a), Some(b)) if a < b)
                })
                .collect();
        }
        p
    }

    pub(super) fn left_legitimately(&self, i: usize) -> bool {
        self.left.contains(&i)
    }

    /// The request's transmissions, split into those whose LAN copy went to an endpoint left
    /// legitimately, and the rest (in time order).
    pub(super) fn split(
        &self,
        ctx: &Context,
        request: &[Entry],
        hops: usize,
    ) -> (Vec<Entry>, Vec<Entry>) {
        if self.left.is_empty() {
            return (Vec::new(), request.to_vec());
        }
        let (mut abandoned, mut kept) = (Vec::new(), Vec::new());
        for group in transmissions(ctx, request, hops) {
            let to_left = group.iter().any(|e| {
                matches!(ctx.role(*ctx.obs(*e).dst.ip()),
                    AddressRole::EndpointLan(i) if self.left_legitimately(i))
            });
            if to_left {
                abandoned.extend(group);
            } else {
                kept.extend(group);
            }
        }
        kept.sort_by_key(|e| (ctx.obs(*e).time, e.obs));
        (abandoned, kept)
    }

    pub(super) fn notes(&self, ctx: &Context) -> Vec<String> {
        let Some(serving) = self.serving else {
            return Vec::new();
        };
        let to = &ctx.roles.endpoints[serving];
        self.left
            .iter()
            .map(|&i| {
                let from = &ctx.roles.endpoints[i];
                format!(
                    "the SCCRQ went to {} ({}) first, which never answered; a retransmission \
                     was placed anew on {} ({}) (an endpoint out of service)",
                    from.name, from.lan, to.name, to.lan
                )
            })
            .collect()
    }
}
