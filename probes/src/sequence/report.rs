//! The verdict: typed (serialisable as JSON) and as text, one block per tunnel plus totals.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddrV4;

use serde::Serialize;

use super::observation::{Kind, Origin, Summary};
use super::ppp::{PppCounts, PppMark};
use super::roles::Roles;

/// The message sequence a tunnel followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// FIG 3: endpoints behind the NAT; SCCCN to the NAT, which forwards it.
    Fig3,
    /// FIG 3 with an initiator (xl2tpd) that keeps sending to the address it dialled: SCCCN to
    /// the cluster address, which the master forwards to the endpoint.
    Fig3ViaMaster,
    /// FIG 5: endpoints with their own global address; SCCCN straight to it.
    Fig5,
    /// FIG 5 with SCCCN to the cluster address, forwarded by the master (step 212, not in the
    /// patent, named by analogy with 112).
    Fig5ViaMaster,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Fig3 => "fig3",
            Variant::Fig3ViaMaster => "fig3-via-master",
            Variant::Fig5 => "fig5",
            Variant::Fig5ViaMaster => "fig5-via-master",
        }
    }
}

/// Which rule a deviation broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// A step of the sequence was not observed although its side was captured.
    Missing,
    /// A source or destination address or port other than the sequence's.
    Address,
    /// A header Tunnel ID or Assigned Tunnel ID inconsistent with the sequence.
    TunnelId,
    /// A translator changed the L2TP message it should only have forwarded.
    Altered,
    /// Steps out of order.
    Order,
    /// A retransmitted SCCRQ forwarded to another endpoint than the first.
    Dispatch,
    /// Ns out of sequence (RFC 2661 §5.8).
    Ns,
    /// Nr going back, or acknowledging what was never sent (§5.8).
    Nr,
    /// A control message never acknowledged by the peer (§5.8).
    Unacknowledged,
    /// A PPP phase out of order in a session (RFC 1661 §3.2): an NCP before authentication
    /// succeeded or before LCP opened, IP before its NCP opened.
    PppOrder,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::Missing => "missing",
            Rule::Address => "address",
            Rule::TunnelId => "tunnel-id",
            Rule::Altered => "altered",
            Rule::Order => "order",
            Rule::Dispatch => "dispatch",
            Rule::Ns => "ns",
            Rule::Nr => "nr",
            Rule::Unacknowledged => "unacknowledged",
            Rule::PppOrder => "ppp-order",
        }
    }
}

/// One way a tunnel departs from its sequence or from RFC 2661.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deviation {
    /// The sequence step (102, 104, ...), for deviations from the figure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<u16>,
    pub rule: Rule,
    pub expected: String,
    pub observed: String,
    /// The whole finding as one sentence.
    pub text: String,
    /// Seconds since the first observation, when one observation is at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// One observation of a tunnel, normalised: roles instead of addresses where known.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    /// Seconds since the first observation of the whole input.
    pub time: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<u16>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub retransmission: bool,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    /// "TI", "CM", "NAT", "te1 lan", ...; the address itself for strangers.
    pub from: String,
    pub to: String,
    /// Its fields inline in the JSON, the kind under `message`.
    #[serde(flatten)]
    pub message: Summary,
    /// For a data message: the PPP phase change it carried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ppp: Option<PppMark>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TunnelReport {
    pub initiator: SocketAddrV4,
    pub initiator_tunnel_id: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_tunnel_id: Option<u16>,
    pub variant: Variant,
    pub conforms: bool,
    /// Sequence steps first (in step order), then RFC rules (in time order).
    pub deviations: Vec<Deviation>,
    pub notes: Vec<String>,
    /// Control messages sent again with an Ns already used, on the same hop.
    pub retransmissions: usize,
    pub data_messages: usize,
    /// What the sessions' PPP added up to (LCP echoes are counted here, not listed).
    #[serde(skip_serializing_if = "PppCounts::is_empty")]
    pub ppp: PppCounts,
    /// Control messages and PPP phase changes, in time order.
    pub timeline: Vec<TimelineEntry>,
}

impl TunnelReport {
    /// The timeline with roles only (no times, no addresses): the form snapshots hold.
    pub fn normalised_timeline(&self) -> String {
        let mut out = String::new();
        for entry in &self.timeline {
            push_entry(&mut out, entry);
            out.push('\n');
        }
        out
    }

    pub(crate) fn title(&self) -> String {
        let mut title = format!("tunnel {} tid {}", self.initiator, self.initiator_tunnel_id);
        match (&self.endpoint, self.endpoint_tunnel_id) {
            (Some(name), Some(tid)) => {
                let _ = write!(title, " ⇄ {name} tid {tid}");
            }
            (Some(name), None) => {
                let _ = write!(title, " ⇄ {name}");
            }
            (None, Some(tid)) => {
                let _ = write!(title, " ⇄ tid {tid}");
            }
            (None, None) => {}
        }
        title
    }
}

fn push_entry(out: &mut String, entry: &TimelineEntry) {
    match entry.step {
        Some(step) => {
            let _ = write!(out, "{step}");
        }
        None => out.push_str("  ·"),
    }
    let m = &entry.message;
    if let Some(mark) = &entry.ppp {
        // An opened NCP is both ends' doing: the packet that completed it names no direction.
        if mark.event.both_ways() {
            let _ = write!(out, " PPP sid {}: {}", mark.session, mark.event);
        } else {
            let _ = write!(
                out,
                " PPP {}→{} sid {}: {}",
                entry.from, entry.to, mark.session, mark.event
            );
        }
        return;
    }
    let _ = write!(
        out,
        " {} {}→{} tid {} ns {} nr {}",
        m.kind, entry.from, entry.to, m.tunnel_id, m.ns, m.nr
    );
    if m.session_id != 0 {
        let _ = write!(out, " sid {}", m.session_id);
    }
    if let Some(assigned) = m.assigned_tunnel_id {
        let _ = write!(out, " assigned {assigned}");
    }
    if entry.retransmission {
        out.push_str(" (retransmission)");
    }
}

/// Whether the captures covered each side of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// Some observation involves a public cluster address (CM, NAT global, TE global).
    pub public: bool,
    /// Some observation involves a LAN address (TE lan, NAT lan, master lan).
    pub lan: bool,
}

impl Coverage {
    /// The side not captured, in words ("LAN-side", "public-side"), if one is missing.
    pub fn missing(&self) -> Option<&'static str> {
        match (self.public, self.lan) {
            (true, true) => None,
            (true, false) => Some("LAN-side"),
            (false, _) => Some("public-side"),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub tunnels: usize,
    pub conforming: usize,
    pub deviating: usize,
    pub variants: BTreeMap<Variant, usize>,
    pub retransmissions: usize,
    /// Control and data observations read.
    pub observations: usize,
    pub unattributed: usize,
}

/// An observation that belongs to no tunnel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stray {
    pub time: f64,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub message: Kind,
    pub tunnel_id: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The roles the check used: the roles file, completed by inference.
    pub roles: Roles,
    /// What was inferred, and from what.
    pub inferred: Vec<String>,
    pub coverage: Coverage,
    pub tunnels: Vec<TunnelReport>,
    /// The first few control messages that fit no tunnel (all are counted in the totals).
    pub unattributed: Vec<Stray>,
    pub totals: Totals,
}

impl Report {
    /// At least one tunnel, and every tunnel conforms.
    pub fn conforms(&self) -> bool {
        self.totals.tunnels > 0 && self.totals.deviating == 0
    }

    /// The text form: roles, one block per tunnel, totals. `captures` names the origins.
    pub fn render_text(&self, captures: &[String]) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "roles: {}", describe_roles(&self.roles));
        for note in &self.inferred {
            let _ = writeln!(out, "  {note}");
        }
        if let Some(side) = self.coverage.missing() {
            let _ = writeln!(out, "  no {side} observation: {side} steps are not checked");
        }
        for tunnel in &self.tunnels {
            out.push('\n');
            let verdict = match tunnel.deviations.first() {
                None => "conforms".to_owned(),
                Some(Deviation {
                    step: Some(step), ..
                }) => format!("DEVIATES at step {step}"),
                Some(first) => format!("DEVIATES ({})", first.rule.name()),
            };
            let _ = writeln!(
                out,
                "{}: {verdict} ({})",
                tunnel.title(),
                tunnel.variant.name()
            );
            for deviation in &tunnel.deviations {
                let _ = write!(out, "  ✗ {}", deviation.text);
                if let Some(origin) = deviation.origin {
                    let _ = write!(out, " [{}]", origin_name(origin, captures));
                }
                out.push('\n');
            }
            for note in &tunnel.notes {
                let _ = writeln!(out, "  note: {note}");
            }
            let full = !tunnel.conforms;
            let mut hidden_control = 0usize;
            for entry in &tunnel.timeline {
                // A conforming tunnel shows its steps and its sessions' phases; one
                // direction's Configure-Ack is only the way to a phase.
                let phase = entry.ppp.as_ref().is_some_and(|m| !m.event.one_way_ack());
                if !full && entry.step.is_none() && !phase {
                    if entry.ppp.is_some() {
                        continue;
                    }
                    hidden_control += 1;
                    continue;
                }
                let _ = write!(out, "  {:>12.6} ", entry.time);
                push_entry(&mut out, entry);
                // Which end's Configure-Ack opened a protocol is a race between the two: the
                // text names no packet for it (the JSON does).
                if entry.ppp.as_ref().is_some_and(|m| m.event.both_ways()) {
                    out.push('\n');
                    continue;
                }
                let _ = write!(out, "  [{} → {}", entry.src, entry.dst);
                if let Some(origin) = entry.origin {
                    let _ = write!(out, ", {}", origin_name(origin, captures));
                }
                out.push_str("]\n");
            }
            if hidden_control > 0 || tunnel.data_messages > 0 {
                let _ = write!(
                    out,
                    "  … {hidden_control} more control messages, {} data messages",
                    tunnel.data_messages
                );
                if !tunnel.ppp.is_empty() {
                    let _ = write!(out, "; {}", tunnel.ppp);
                }
                out.push('\n');
            }
        }
        if !self.unattributed.is_empty() {
            let _ = writeln!(
                out,
                "\n{} control messages fit no tunnel (no SCCRQ seen for them); the first:",
                self.totals.unattributed
            );
            for stray in &self.unattributed {
                let _ = write!(
                    out,
                    "  {:>12.6} {} {} → {} tid {}",
                    stray.time, stray.message, stray.src, stray.dst, stray.tunnel_id
                );
                if let Some(origin) = stray.origin {
                    let _ = write!(out, " [{}]", origin_name(origin, captures));
                }
                out.push('\n');
            }
        }
        let t = &self.totals;
        let variants = t
            .variants
            .iter()
            .map(|(variant, n)| format!("{} {n}", variant.name()))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "\ntotals: {} tunnels: {} conform, {} deviate{}; {} retransmissions; {} observations, {} unattributed",
            t.tunnels,
            t.conforming,
            t.deviating,
            if variants.is_empty() { String::new() } else { format!(" ({variants})") },
            t.retransmissions,
            t.observations,
            t.unattributed
        );
        if let Some(side) = self.coverage.missing() {
            let _ = writeln!(out, "partial: {side} steps not checked (no {side} capture)");
        }
        if t.tunnels == 0 {
            out.push_str("no tunnel found: no SCCRQ in the captures\n");
        }
        out
    }
}

fn origin_name(origin: Origin, captures: &[String]) -> String {
    match captures.get(origin.capture) {
        Some(name) => format!("{name} #{}", origin.record),
        None => format!("capture {} #{}", origin.capture, origin.record),
    }
}

fn describe_roles(roles: &Roles) -> String {
    let mut parts = Vec::new();
    if let Some(ip) = roles.cluster_address {
        parts.push(format!("CM {ip}"));
    }
    if let Some(ip) = roles.master_lan {
        parts.push(format!("master lan {ip}"));
    }
    if let Some(ip) = roles.nat_global {
        parts.push(format!("NAT {ip}"));
    }
    if let Some(ip) = roles.nat_lan {
        parts.push(format!("NAT lan {ip}"));
    }
    for endpoint in &roles.endpoints {
        match endpoint.global {
            Some(global) => parts.push(format!(
                "{} lan {} global {global}",
                endpoint.name, endpoint.lan
            )),
            None => parts.push(format!("{} lan {}", endpoint.name, endpoint.lan)),
        }
    }
    if parts.is_empty() {
        "none known".to_owned()
    } else {
        parts.join(", ")
    }
}
