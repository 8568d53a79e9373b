//! The timeline checker: observations of L2TP messages (from captures on the public side and
//! on the LAN of a cluster) held against the patent's message sequences, FIG 3 (endpoints
//! behind a NAT: 102→104→106→108→110→112→114→116) and FIG 5 (endpoints with global addresses:
//! 102→204→206→210→214), the xl2tpd variants where the SCCCN goes to the cluster address and
//! the master forwards it, and RFC 2661 §5.8 (Ns/Nr, acknowledgement, tunnel IDs).
//!
//! [`check`] is pure: observations and roles in, a [`Report`] out. [`read_capture`] turns a
//! capture into observations; [`craft`] makes runs, correct or broken, to test against.
//!
//! How it reads the captures, and where that stops working:
//! - A tunnel is the initiator's address and port plus its Assigned Tunnel ID (from the
//!   SCCRQ), linked to the endpoint's Assigned Tunnel ID by the SCCRP. A packet whose IDs fit
//!   no tunnel is traced by its bytes to a packet seen just before (a translator must not
//!   change them), or is listed as unattributed: a capture must start before the SCCRQs.
//! - Two sightings of one message (same type and Ns) less than 500 ms apart, on different
//!   hops or in different captures, are one packet seen on both sides of a translator; later,
//!   or on the same hop in the same capture, a retransmission. The captures must share a
//!   clock (the lab's are taken on one host).
//! - A step on a side no capture covers (no observation involves that side's addresses) is
//!   not checked, and the report says the check is partial.
//! - Roles left out of the roles file are inferred (see [`infer`]). The endpoints and the
//!   NAT are only found with the LAN-side capture, and a NAT that never translates cannot
//!   be told from an endpoint: give them in the roles file.

mod capture;
mod context;
pub mod craft;
mod craft_ppp;
pub mod ladder;
mod observation;
mod ppp;
mod report;
mod rfc;
mod roles;
mod steps;
mod tunnels;

use std::time::Duration;

pub use capture::{read_capture, ReadCounts};
pub use context::Sequence;
pub use observation::{Kind, Observation, Origin, Summary};
pub use ppp::{Frame as PppFrame, PppCounts, PppEvent, PppMark};
pub use report::{
    Coverage, Deviation, Report, Rule, Stray, TimelineEntry, Totals, TunnelReport, Variant,
};
pub use roles::{infer, AddressRole, EndpointRole, Roles};

/// Stray observations listed in a report (all are counted).
const STRAYS_LISTED: usize = 10;

/// Checks every tunnel the observations show. `given` are the known roles (possibly none);
/// what they leave out is inferred (see [`infer`]). The observations may come in any order
/// (several captures, concatenated): they are merged by time.
pub fn check(observations: &[Observation], given: &Roles, sequence: Sequence) -> Report {
    let (roles, inferred) = roles::infer(observations, given);
    let mut order: Vec<usize> = (0..observations.len()).collect();
    order.sort_by_key(|&i| observations[i].time);
    let coverage = Coverage {
        public: observations.iter().any(|o| {
            roles.role_of(*o.src.ip()).is_public() || roles.role_of(*o.dst.ip()).is_public()
        }),
        lan: observations
            .iter()
            .any(|o| roles.role_of(*o.src.ip()).is_lan() || roles.role_of(*o.dst.ip()).is_lan()),
    };
    let ctx = steps::Context {
        observations,
        roles: &roles,
        coverage,
        start: order
            .first()
            .map_or(Duration::ZERO, |&i| observations[i].time),
        sequence,
    };
    let attribution = tunnels::attribute(observations, &order, &roles);
    let tunnels: Vec<TunnelReport> = attribution
        .tunnels
        .iter()
        .map(|tunnel| steps::check_tunnel(&ctx, tunnel))
        .collect();

    let mut totals = Totals {
        tunnels: tunnels.len(),
        observations: observations.len(),
        unattributed: attribution.unattributed.len(),
        ..Totals::default()
    };
    for tunnel in &tunnels {
        if tunnel.conforms {
            totals.conforming += 1;
        } else {
            totals.deviating += 1;
        }
        *totals.variants.entry(tunnel.variant).or_default() += 1;
        totals.retransmissions += tunnel.retransmissions;
    }
    let unattributed = attribution
        .unattributed
        .iter()
        .take(STRAYS_LISTED)
        .map(|&i| {
            let o = &observations[i];
            Stray {
                time: ctx.seconds(o.time),
                src: o.src,
                dst: o.dst,
                message: o.message.kind,
                tunnel_id: o.message.tunnel_id,
                origin: o.origin,
            }
        })
        .collect();
    Report {
        inferred,
        coverage,
        tunnels,
        unattributed,
        totals,
        roles,
    }
}

#[cfg(test)]
mod tests {
    use super::craft::{self, Plan};
    use super::*;
    use l2tp::wire::MessageType;
    use std::time::Duration;

    /// One FIG 5 tunnel (eight control messages on the public side, one on the LAN), for
    /// mutating one field at a time.
    fn one_tunnel() -> (Vec<Observation>, Roles) {
        let run = craft::craft(Plan {
            initiators: 1,
            tunnels: 1,
            ..Plan::new(Variant::Fig5)
        });
        let observations = run.observations();
        (observations, run.roles)
    }

    /// The index of the `nth` sighting of a message kind.
    fn find(observations: &[Observation], kind: Kind, nth: usize) -> usize {
        observations
            .iter()
            .enumerate()
            .filter(|(_, o)| o.message.kind == kind)
            .nth(nth)
            .map(|(i, _)| i)
            .expect("crafted")
    }

    fn control(kind: MessageType) -> Kind {
        Kind::Control(kind)
    }

    /// The deviation texts of the only tunnel.
    fn deviations(observations: &[Observation], roles: &Roles) -> Vec<String> {
        let report = check(observations, roles, Sequence::Auto);
        assert_eq!(report.tunnels.len(), 1, "{}", report.render_text(&[]));
        report.tunnels[0]
            .deviations
            .iter()
            .map(|d| d.text.clone())
            .collect()
    }

    #[test]
    fn the_unmutated_tunnel_conforms() {
        let (observations, roles) = one_tunnel();
        assert_eq!(deviations(&observations, &roles), Vec::<String>::new());
    }

    #[test]
    fn ns_skipping_a_message() {
        let (mut observations, roles) = one_tunnel();
        let iccn = find(&observations, control(MessageType::Iccn), 0);
        observations[iccn].message.ns = 4;
        let found = deviations(&observations, &roles);
        assert_eq!(
            found[0],
            "ICCN from the initiator with Ns 4, expected 3: 1 message(s) never seen"
        );
        assert!(found.contains(&"ICCN (Ns 4) from the initiator was never acknowledged".into()));
    }

    /// The endpoint's CDN crossing the initiator's StopCCN: the initiator cleans up once its
    /// StopCCN is acknowledged (§5.7) and never acknowledges the CDN. Seen in lab runs on a
    /// lossy link; no deviation, a note. A message sent after the StopCCN was acknowledged
    /// still owes its acknowledgement.
    #[test]
    fn a_message_that_crossed_the_peers_stopccn_owes_no_acknowledgement() {
        let (observations, roles) = one_tunnel();
        let iccn = find(&observations, control(MessageType::Iccn), 0);
        let zlb = find(&observations, Kind::Zlb, 1);
        let at = |o: &Observation, us: u64| o.time + Duration::from_micros(us);
        let with = |template: &Observation, kind: Kind, (ns, nr): (u16, u16), us: u64| {
            let mut o = template.clone();
            o.message.kind = kind;
            (o.message.ns, o.message.nr) = (ns, nr);
            o.time = at(template, us);
            o
        };
        for crossed in [true, false] {
            let mut edited = observations.clone();
            // The initiator's StopCCN (Ns 3 was its ICCN); the endpoint's CDN (Ns 2), before
            // or after its ZLB acknowledging the StopCCN.
            edited.push(with(
                &observations[iccn],
                control(MessageType::StopCcn),
                (4, 2),
                1000,
            ));
            let (cdn_us, zlb_ns) = if crossed { (1050, 3) } else { (1200, 2) };
            edited.push(with(
                &observations[zlb],
                control(MessageType::Cdn),
                (2, 4),
                cdn_us,
            ));
            edited.push(with(&observations[zlb], Kind::Zlb, (zlb_ns, 5), 1100));
            let report = check(&edited, &roles, Sequence::Auto);
            let tunnel = &report.tunnels[0];
            let texts: Vec<&str> = tunnel.deviations.iter().map(|d| d.text.as_str()).collect();
            if crossed {
                assert!(texts.is_empty(), "{}", report.render_text(&[]));
                let note = "CDN (Ns 2) from the endpoint crossed the initiator's StopCCN: no \
                            acknowledgement was due (§5.7)";
                assert!(tunnel.notes.iter().any(|n| n == note), "{:?}", tunnel.notes);
            } else {
                let unacked = "CDN (Ns 2) from the endpoint was never acknowledged";
                assert!(texts.contains(&unacked), "{}", report.render_text(&[]));
            }
        }
    }

    #[test]
    fn ns_reused_by_another_message() {
        let (mut observations, roles) = one_tunnel();
        let iccn = find(&observations, control(MessageType::Iccn), 0);
        observations[iccn].message.ns = 2;
        let found = deviations(&observations, &roles);
        assert_eq!(found[0], "ICCN from the initiator reuses Ns 2 of its ICRQ");
    }

    #[test]
    fn a_zlb_that_consumes_an_ns() {
        let (mut observations, roles) = one_tunnel();
        let zlb = find(&observations, Kind::Zlb, 1);
        observations[zlb].message.ns = 3;
        assert_eq!(
            deviations(&observations, &roles),
            ["ZLB from the endpoint with Ns 3, expected 2 (a ZLB carries the next Ns)"]
        );
    }

    #[test]
    fn nr_going_back_or_ahead() {
        let (mut observations, roles) = one_tunnel();
        let iccn = find(&observations, control(MessageType::Iccn), 0);
        observations[iccn].message.nr = 0;
        assert_eq!(
            deviations(&observations, &roles),
            [
                // The ICCN was the ICRP's only acknowledgement.
                "ICRP (Ns 1) from the endpoint was never acknowledged",
                "ICCN Nr 0 from the initiator goes back from 1"
            ]
        );

        let (mut observations, roles) = one_tunnel();
        let icrq = find(&observations, control(MessageType::Icrq), 0);
        observations[icrq].message.nr = 5;
        assert_eq!(
            deviations(&observations, &roles)[0],
            "ICRQ Nr 5 from the initiator acknowledges Ns 4 of the endpoint, which was never seen (its next Ns is 1)"
        );
    }

    #[test]
    fn a_tunnel_id_other_than_the_peers_after_setup() {
        let (mut observations, roles) = one_tunnel();
        let icrp = find(&observations, control(MessageType::Icrp), 0);
        observations[icrp].message.tunnel_id = 99;
        assert_eq!(
            deviations(&observations, &roles),
            ["ICRP from the endpoint with header Tunnel ID 99, expected 1 (the initiator's Assigned Tunnel ID)"]
        );
    }

    #[test]
    fn a_capture_that_starts_mid_tunnel_leaves_strays() {
        let (observations, roles) = one_tunnel();
        let late: Vec<Observation> = observations
            .into_iter()
            .filter(|o| o.message.kind != control(MessageType::Sccrq))
            .collect();
        let report = check(&late, &roles, Sequence::Auto);
        assert_eq!(report.totals.tunnels, 0);
        assert!(!report.conforms());
        assert_eq!(report.totals.unattributed, 7);
        assert_eq!(report.unattributed.len(), 7);
    }

    #[test]
    fn the_report_serialises() {
        let (observations, roles) = one_tunnel();
        let report = check(&observations, &roles, Sequence::Auto);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["totals"]["variants"]["fig5"], 1);
        assert_eq!(json["tunnels"][0]["timeline"][0]["message"], "SCCRQ");
        assert_eq!(json["tunnels"][0]["timeline"][0]["from"], "TI");
        assert_eq!(json["tunnels"][0]["timeline"][0]["to"], "CM");
        assert_eq!(json["coverage"]["lan"], true);
    }
}
