//! A tunnel's timeline as a ladder diagram in SVG: one column per role (TI, CM, NAT,
//! TE1…TEn, and any stranger), one arrow per message in time order, labelled with its FIG 3 /
//! FIG 5 step number; retransmissions dashed; what a deviation names drawn in red, and every
//! deviation's sentence under the ladder. Self-contained (no script, no font from elsewhere)
//! and deterministic (no times, no random ids), so the same run gives the same file.

use std::fmt::Write as _;

use super::report::{TimelineEntry, TunnelReport};
use crate::xml::escape;

const COLUMN: i64 = 170;
const LEFT: i64 = 95;
const TOP: i64 = 70;
const ROW: i64 = 26;
const RED: &str = "#c0392b";
const INK: &str = "#222";
const ACK_GREY: &str = "#777";

/// The column a role label belongs to: "CM" and "master lan" are the master, "NAT" and
/// "NAT lan" the NAT, "te1 lan" and "te1 global" the endpoint te1 (drawn TE1).
fn column_of(label: &str) -> String {
    let first = label.split_whitespace().next().unwrap_or(label);
    match first {
        "master" => "CM".to_string(),
        name if name.starts_with("te") && name[2..].chars().all(|c| c.is_ascii_digit()) => {
            name.to_uppercase()
        }
        _ => first.to_string(),
    }
}

/// Left to right: the initiator, the master, the NAT, the endpoints by number, then strangers
/// in the order they appear.
fn rank(column: &str) -> (u8, u32, String) {
    match column {
        "TI" => (0, 0, String::new()),
        "CM" => (1, 0, String::new()),
        "NAT" => (2, 0, String::new()),
        te if te.starts_with("TE") => (3, te[2..].parse().unwrap_or(u32::MAX), String::new()),
        other => (4, 0, other.to_string()),
    }
}

/// What an arrow says: its step, the message (or the PPP phase change), retransmission.
fn label(entry: &TimelineEntry) -> String {
    let step = entry.step.map(|s| format!("{s} ")).unwrap_or_default();
    let m = &entry.message;
    let what = match &entry.ppp {
        Some(mark) => format!("PPP sid {}: {}", mark.session, mark.event),
        None => {
            let mut text = format!("{} tid {} ns {} nr {}", m.kind, m.tunnel_id, m.ns, m.nr);
            if m.session_id != 0 {
                let _ = write!(text, " sid {}", m.session_id);
            }
            text
        }
    };
    let again = if entry.retransmission { " (again)" } else { "" };
    format!("{step}{what}{again}")
}

/// The columns an entry's arrow joins. A forwarded message keeps the initiator's address on
/// the far side of the master or the NAT (the patent rewrites destinations): its arrow starts
/// (or ends) at the role that relayed it, the one the same message (kind, Ns, Nr) was seen
/// going to just before (or coming from just after).
fn ends(timeline: &[TimelineEntry], i: usize) -> (String, String) {
    let Some(entry) = timeline.get(i) else {
        return (String::new(), String::new());
    };
    let (mut from, mut to) = (column_of(&entry.from), column_of(&entry.to));
    let same = |other: &TimelineEntry| {
        other.ppp.is_none()
            && entry.ppp.is_none()
            && other.message.kind == entry.message.kind
            && other.message.ns == entry.message.ns
            && other.message.nr == entry.message.nr
    };
    if from == "TI" && to != "CM" && to != "NAT" {
        let relay = timeline[..i]
            .iter()
            .rev()
            .find(|o| same(o) && column_of(&o.from) == "TI" && column_of(&o.to) != to);
        if let Some(o) = relay {
            from = column_of(&o.to);
        }
    }
    if to == "TI" && from != "CM" && from != "NAT" {
        let relay = timeline
            .get(i + 1..)
            .unwrap_or_default()
            .iter()
            .find(|o| same(o) && column_of(&o.to) == "TI" && column_of(&o.from) != from);
        if let Some(o) = relay {
            to = column_of(&o.from);
        }
    }
    (from, to)
}

/// Whether a deviation of the tunnel points at this entry: the same observation (time and
/// origin), or, for a figure's step, the entry that carries that step.
fn deviates(tunnel: &TunnelReport, entry: &TimelineEntry) -> bool {
    tunnel.deviations.iter().any(|d| {
        let same_packet =
            d.time.is_some_and(|t| (t - entry.time).abs() < 1e-9) && d.origin == entry.origin;
        let same_step = d.step.is_some() && d.step == entry.step && !entry.retransmission;
        same_packet || same_step
    })
}

/// The ladder of one tunnel, as an SVG document.
pub fn svg(tunnel: &TunnelReport) -> String {
    let mut columns: Vec<String> = vec!["TI".to_string()];
    for entry in &tunnel.timeline {
        for label in [&entry.from, &entry.to] {
            let column = column_of(label);
            if !columns.contains(&column) {
                columns.push(column);
            }
        }
    }
    // Stable: strangers keep the order they appeared in.
    columns.sort_by_key(|c| rank(c));
    let x = |column: &str| -> i64 {
        let i = columns.iter().position(|c| c == column).unwrap_or(0);
        LEFT + COLUMN * i as i64
    };
    let rows = tunnel.timeline.len() as i64;
    let notes = tunnel.deviations.len() as i64;
    let width = LEFT * 2 + COLUMN * (columns.len() as i64 - 1).max(1);
    let bottom = TOP + ROW * (rows + 1);
    let height = bottom + 30 + 18 * notes;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"monospace\" font-size=\"11\">"
    );
    let _ = writeln!(
        out,
        "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" \
         markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\">\
         <path d=\"M0,0 L10,5 L0,10 z\" fill=\"{INK}\"/></marker>\
         <marker id=\"arrow-red\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" \
         markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\">\
         <path d=\"M0,0 L10,5 L0,10 z\" fill=\"{RED}\"/></marker></defs>"
    );
    let _ = writeln!(
        out,
        "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"20\" font-size=\"13\" font-weight=\"bold\">{} ({}, {})</text>",
        escape(&tunnel.title()),
        tunnel.variant.name(),
        if tunnel.conforms {
            "conforms"
        } else {
            "deviates"
        }
    );
    for column in &columns {
        let cx = LEFT + COLUMN * columns.iter().position(|c| c == column).unwrap_or(0) as i64;
        let _ = writeln!(
            out,
            "<text x=\"{cx}\" y=\"{}\" text-anchor=\"middle\" font-weight=\"bold\">{}</text>\n\
             <line x1=\"{cx}\" y1=\"{}\" x2=\"{cx}\" y2=\"{bottom}\" stroke=\"#bbb\"/>",
            TOP - 22,
            escape(column),
            TOP - 14
        );
    }
    for (i, entry) in tunnel.timeline.iter().enumerate() {
        let y = TOP + ROW * (i as i64 + 1);
        let (from, to) = ends(&tunnel.timeline, i);
        let (x1, x2) = (x(&from), x(&to));
        let red = deviates(tunnel, entry);
        let colour = if red {
            RED
        } else if entry.step.is_none() {
            ACK_GREY
        } else {
            INK
        };
        let marker = if red { "arrow-red" } else { "arrow" };
        let dash = if entry.retransmission {
            " stroke-dasharray=\"5,3\""
        } else {
            ""
        };
        let class = if red { "deviation" } else { "message" };
        if x1 == x2 {
            // Within one role (an endpoint's LAN and global sides): a short loop.
            let _ = writeln!(
                out,
                "<path class=\"{class}\" d=\"M{x1},{} h30 v8 h-28\" fill=\"none\" \
                 stroke=\"{colour}\"{dash} marker-end=\"url(#{marker})\"/>",
                y - 4
            );
        } else {
            let _ = writeln!(
                out,
                "<line class=\"{class}\" x1=\"{x1}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" \
                 stroke=\"{colour}\"{dash} marker-end=\"url(#{marker})\"/>"
            );
        }
        let mid = (x1 + x2) / 2 + if x1 == x2 { 40 } else { 0 };
        let _ = writeln!(
            out,
            "<text class=\"{class}\" x=\"{mid}\" y=\"{}\" text-anchor=\"middle\" \
             fill=\"{colour}\">{}</text>",
            y - 4,
            escape(&label(entry))
        );
    }
    for (i, deviation) in tunnel.deviations.iter().enumerate() {
        let _ = writeln!(
            out,
            "<text class=\"deviation\" x=\"10\" y=\"{}\" fill=\"{RED}\">{}</text>",
            bottom + 30 + 18 * i as i64,
            escape(&deviation.text)
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_fall_into_role_columns() {
        assert_eq!(column_of("TI"), "TI");
        assert_eq!(column_of("master lan"), "CM");
        assert_eq!(column_of("NAT lan"), "NAT");
        assert_eq!(column_of("te12 global"), "TE12");
        assert_eq!(column_of("198.51.100.7:1701"), "198.51.100.7:1701");
        let mut columns = vec!["TE10", "x", "NAT", "TE2", "CM", "TI"];
        columns.sort_by_key(|c| rank(c));
        assert_eq!(columns, ["TI", "CM", "NAT", "TE2", "TE10", "x"]);
    }
}
