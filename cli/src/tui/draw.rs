//! Paints an [`App`]; reads it, never changes it.

use std::fmt::Write as _;

use probes::live::{LiveSnapshot, Percentiles};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Cell, Chart, Clear, Dataset, GraphType, HighlightSpacing, Paragraph,
    Row as TableRow, Table, TableState,
};
use ratatui::Frame;
use reference::master::Policy;

use super::app::{
    per_second_totals, App, Row, RowState, Second, LATENCY_PHASES, MIN_RATE, RATE_STEP,
};

const HIGHLIGHT: &str = "> ";
const SPARKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
const EIGHTHS: [&str; 8] = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];
/// Lines of the latency panel: borders, a header, four histograms.
const PANEL_HEIGHT: u16 = 7;
/// Lines of the PPP panel: borders, a header, five histograms.
const PPP_HEIGHT: u16 = 8;
const LATENCY_WIDTH: u16 = 58;
/// The charts show below the panels when the panels' area is at least this wide and has
/// this many lines to spare (a 140×40 terminal does; 80×24 and 100×30 keep the tables only).
const CHARTS_MIN_WIDTH: u16 = 120;
const CHARTS_MIN_HEIGHT: u16 = 10;

pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    let rows = app.rows();
    let panel_height = if ppp_shown(&app.snapshot) {
        PANEL_HEIGHT + PPP_HEIGHT
    } else {
        PANEL_HEIGHT
    };
    let [header, table, panels, status, footer] = split(area, rows.len(), panel_height);
    draw_header(frame, header, app);
    draw_endpoints(frame, table, app, &rows);
    draw_panels(frame, panels, app);
    frame.render_widget(
        Paragraph::new(app.message.as_deref().unwrap_or("")).style(Style::new().fg(Color::Yellow)),
        status,
    );
    draw_footer(frame, footer, app);
    if app.help {
        draw_help(frame, area, app);
    }
}

/// Header, endpoint table, panels, status line, footer, top to bottom. What fits is given out
/// in order of use: the keys, the header, a few table rows, the panels, then the rest of the
/// table, and what is left to the panels.
fn split(area: Rect, rows: usize, panel_height: u16) -> [Rect; 5] {
    fn take(rest: &mut u16, want: u16) -> u16 {
        let got = want.min(*rest);
        *rest -= got;
        got
    }
    let mut left = area.height;
    let rest = &mut left;
    let footer = take(rest, 1);
    let header = take(rest, 2);
    let table_want = u16::try_from(rows).unwrap_or(u16::MAX).saturating_add(4);
    let mut table = take(rest, table_want.min(5));
    let status = take(rest, 1);
    let mut panels = if *rest >= panel_height {
        take(rest, panel_height)
    } else {
        0
    };
    table += take(rest, table_want.saturating_sub(table));
    if panels > 0 {
        panels += take(rest, u16::MAX);
    } else {
        table += take(rest, u16::MAX);
    }
    let mut y = area.y;
    let mut next = |height: u16| {
        let rect = Rect::new(area.x, y, area.width, height);
        y = y.saturating_add(height);
        rect
    };
    [
        next(header),
        next(table),
        next(panels),
        next(status),
        next(footer),
    ]
}

fn draw_header(frame: &mut Frame, area: Rect, app: &App) {
    let s = &app.snapshot;
    let phase = s.phase.as_str();
    let mut first = vec![
        Span::styled(" l2tpkit ", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!(
            " {phase}  {}  target {}  measured {:.1}/s",
            elapsed(s.elapsed_s),
            rate(app.rate),
            app.measured_rate()
        )),
    ];
    if app.paused {
        first.push(Span::styled(
            "  PAUSED",
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ));
    }
    let master = match &app.master {
        // After a takeover, the endpoint now acting as the master is named.
        Some(m) => format!(
            "  master {}{} {}{}",
            match &m.holder.takeover {
                Some(t) => format!("{} ", t.endpoint),
                None => String::new(),
            },
            m.cluster_addr,
            policy(&m.policy),
            if app.master_stale { " (stale)" } else { "" }
        ),
        None if app.master_killed => "  master killed".to_string(),
        None => "  master -".to_string(),
    };
    first.push(Span::raw(master));
    let second = format!(
        " tunnels {} up of {} ({} started, {} waiting, {} failed)  sessions {} up of {} ({} failed)",
        s.tunnels_up,
        s.tunnels_requested,
        s.tunnels_started,
        s.outstanding,
        s.tunnels_failed,
        s.sessions_up,
        s.sessions_requested,
        s.sessions_failed
    );
    frame.render_widget(
        Paragraph::new(vec![Line::from(first), Line::from(second)]),
        area,
    );
}

fn draw_endpoints(frame: &mut Frame, area: Rect, app: &App, rows: &[Row<'_>]) {
    let title = if app.master.is_none() {
        " endpoints (no master status) "
    } else {
        " endpoints "
    };
    let block = Block::bordered().title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.width == 0 || inner.height == 0 {
        return;
    }

    let name_width = rows
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(8, 16) as u16;
    // The share bar grows with the row: a seventh of it from 98 columns on.
    let share_width: u16 = if inner.width >= 90 {
        (inner.width / 7).clamp(14, 40)
    } else {
        10
    };
    let constraints = [
        Constraint::Length(name_width),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(share_width),
        Constraint::Min(1),
        Constraint::Length(11),
        Constraint::Length(14),
    ];
    let selection = HIGHLIGHT.len() as u16;
    let columns = Rect::new(0, 0, inner.width.saturating_sub(selection), 1);
    let widths: Vec<u16> = Layout::horizontal(constraints)
        .spacing(1)
        .split(columns)
        .iter()
        .map(|r| r.width)
        .collect();
    let w = |i: usize| usize::from(widths.get(i).copied().unwrap_or(0));

    let live_tunnels: u64 = rows
        .iter()
        .filter_map(|r| r.live.map(|l| l.tunnels))
        .fold(0, u64::saturating_add);
    let spark_width = w(4);
    let spark_max = rows
        .iter()
        .filter_map(|r| r.live)
        .flat_map(|l| last(&l.setups_per_second, spark_width).iter().copied())
        .max()
        .unwrap_or(0);

    let body: Vec<TableRow> = rows
        .iter()
        .map(|row| {
            let state = row.state();
            let (tunnels, sessions, share, spark) = match row.live {
                Some(l) => (
                    l.tunnels.to_string(),
                    l.sessions.to_string(),
                    share_bar(l.tunnels, live_tunnels, w(3)),
                    sparkline(&l.setups_per_second, spark_width, spark_max),
                ),
                None => ("-".into(), "-".into(), String::new(), String::new()),
            };
            let load = row
                .master
                .map(|m| format!("{}/{}", m.tunnels, m.capacity))
                .unwrap_or_else(|| "-".into());
            TableRow::new([
                Cell::from(row.name.to_string()),
                Cell::from(format!("{tunnels:>0$}", w(1))),
                Cell::from(format!("{sessions:>0$}", w(2))),
                Cell::from(share),
                Cell::from(spark),
                Cell::from(format!("{load:>0$}", w(5))),
                Cell::from(state.label()),
            ])
            .style(state_style(state))
        })
        .collect();

    let header = TableRow::new([
        "endpoint".to_string(),
        format!("{:>1$}", "tunnels", w(1)),
        format!("{:>1$}", "sessions", w(2)),
        "share".to_string(),
        "setups/s".to_string(),
        format!("{:>1$}", "load", w(5)),
        "state".to_string(),
    ])
    .style(Style::new().add_modifier(Modifier::BOLD));

    let sessions: u64 = rows
        .iter()
        .filter_map(|r| r.live.map(|l| l.sessions))
        .fold(0, u64::saturating_add);
    let totals = per_second_totals(&app.snapshot.endpoints);
    let total_max = last(&totals, spark_width)
        .iter()
        .copied()
        .max()
        .unwrap_or(0);
    let (load, in_service) = match &app.master {
        Some(m) => (
            format!("{}/{}", m.totals.tunnels, m.totals.capacity),
            format!("{}/{} in service", m.totals.in_service, m.totals.endpoints),
        ),
        None => ("-".into(), String::new()),
    };
    let footer = TableRow::new([
        Cell::from("total"),
        Cell::from(format!("{live_tunnels:>0$}", w(1))),
        Cell::from(format!("{sessions:>0$}", w(2))),
        Cell::from(String::new()),
        Cell::from(sparkline(&totals, spark_width, total_max)),
        Cell::from(format!("{load:>0$}", w(5))),
        Cell::from(in_service),
    ])
    .style(Style::new().add_modifier(Modifier::BOLD));

    let table = Table::new(body, widths.iter().map(|&w| Constraint::Length(w)))
        .header(header)
        .footer(footer)
        .column_spacing(1)
        .highlight_symbol(HIGHLIGHT)
        .highlight_spacing(HighlightSpacing::Always)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_selected((!rows.is_empty()).then_some(app.selected));
    frame.render_stateful_widget(table, inner, &mut state);
}

fn state_style(state: RowState) -> Style {
    match state {
        RowState::InService => Style::new().fg(Color::Green),
        RowState::Draining | RowState::Deactivated => Style::new().fg(Color::Yellow),
        RowState::OutOfService | RowState::Unresponsive | RowState::Killed => {
            Style::new().fg(Color::Red)
        }
        RowState::Unknown => Style::new(),
    }
}

fn draw_panels(frame: &mut Frame, area: Rect, app: &App) {
    if area.height == 0 || area.width == 0 {
        return;
    }
    let s = &app.snapshot;
    let tables = if ppp_shown(s) {
        PANEL_HEIGHT + PPP_HEIGHT
    } else {
        PANEL_HEIGHT
    };
    let area = if area.width >= CHARTS_MIN_WIDTH && area.height >= tables + CHARTS_MIN_HEIGHT {
        // The errors keep the lines they have, as far as the charts' least height allows.
        let errors = u16::try_from(error_lines(app).len() + 2).unwrap_or(u16::MAX);
        let tables =
            (tables + errors.saturating_sub(PANEL_HEIGHT)).min(area.height - CHARTS_MIN_HEIGHT);
        let [tables, charts] =
            Layout::vertical([Constraint::Length(tables), Constraint::Min(0)]).areas(area);
        draw_charts(frame, charts, app);
        tables
    } else {
        area
    };
    let (area, ppp) = if ppp_shown(s) && area.height >= PANEL_HEIGHT + PPP_HEIGHT {
        // The room left goes to the errors, whose list grows.
        let [top, bottom] = Layout::vertical([
            Constraint::Min(PANEL_HEIGHT),
            Constraint::Length(PPP_HEIGHT),
        ])
        .areas(area);
        (top, Some(bottom))
    } else {
        (area, None)
    };
    let [latency, errors] = beside(area);
    let histograms = [
        ("SCCRQ→SCCRP", &s.sccrq_to_sccrp),
        ("tunnel setup", &s.tunnel_setup),
        ("session setup", &s.session_setup),
        ("echo RTT", &s.echo_rtt),
    ];
    draw_latency(frame, latency, " latency, ms ", &histograms);
    draw_errors(frame, errors, app);
    if let Some(area) = ppp {
        draw_ppp(frame, area, s);
    }
}

/// Three charts side by side: tunnels and sessions up and setups per second; failures and
/// retransmissions per second; the percentiles of the latency the user picked (`l`).
fn draw_charts(frame: &mut Frame, area: Rect, app: &App) {
    let [levels, troubles, latency] = Layout::horizontal([
        Constraint::Ratio(1, 3),
        Constraint::Ratio(1, 3),
        Constraint::Ratio(1, 3),
    ])
    .areas(area);
    let history: Vec<Second> = app.history.iter().copied().collect();
    let per_second = |total: fn(&Second) -> u64| -> Vec<(f64, f64)> {
        let mut before = 0;
        history
            .iter()
            .map(|s| {
                let now = total(s);
                let count = now.saturating_sub(before);
                before = now;
                (s.second as f64, count as f64)
            })
            .collect()
    };
    let level = |value: fn(&Second) -> u64| -> Vec<(f64, f64)> {
        history
            .iter()
            .map(|s| (s.second as f64, value(s) as f64))
            .collect()
    };
    let up = [
        ("tunnels up", Color::Cyan, level(|s| s.tunnels_up)),
        ("sessions up", Color::Blue, level(|s| s.sessions_up)),
        ("setups/s", Color::Green, per_second(|s| s.established)),
    ];
    time_chart(frame, levels, " up, and setups/s ", &up);
    let bad = [
        ("failures/s", Color::Red, per_second(|s| s.failed)),
        (
            "retransmissions/s",
            Color::Yellow,
            per_second(|s| s.retransmissions),
        ),
    ];
    time_chart(frame, troubles, " failures, retransmissions ", &bad);
    let name = LATENCY_PHASES
        .get(app.latency_phase)
        .copied()
        .unwrap_or_default();
    percentile_chart(frame, latency, name, &app.snapshot);
}

/// A chart's line: its legend, colour and points.
type Series<'a> = (&'a str, Color, Vec<(f64, f64)>);

/// Series over the run's seconds, on one axis from 0 to the highest value.
fn time_chart(frame: &mut Frame, area: Rect, title: &str, series: &[Series<'_>]) {
    let points = series.iter().flat_map(|(_, _, p)| p.iter());
    let (first, last, top) = points.fold((f64::MAX, 0.0f64, 0.0f64), |(a, b, c), &(x, y)| {
        (a.min(x), b.max(x), c.max(y))
    });
    let first = if first == f64::MAX { 0.0 } else { first };
    let last = last.max(first + 1.0);
    let top = top.max(1.0);
    let datasets = series
        .iter()
        .map(|(name, color, points)| {
            Dataset::default()
                .name(*name)
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(*color))
                .data(points)
        })
        .collect();
    let chart = Chart::new(datasets)
        .block(Block::bordered().title(title))
        .x_axis(
            Axis::default()
                .bounds([first, last])
                .labels([format!("{first:.0}s"), format!("{last:.0}s")]),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, top])
                .labels(["0".to_string(), format!("{top:.0}")]),
        )
        .hidden_legend_constraints((Constraint::Ratio(1, 1), Constraint::Ratio(1, 1)));
    frame.render_widget(chart, area);
}

/// A percentile plot as HdrHistogram draws it: the percentile on a log scale (x = log10 of
/// 1/(1 − q): 90% at 1, 99% at 2, 99.9% at 3; the max at 4), the latency in ms up.
fn percentile_chart(frame: &mut Frame, area: Rect, name: &str, s: &LiveSnapshot) {
    let p = match name {
        "SCCRQ→SCCRP" => &s.sccrq_to_sccrp,
        "tunnel setup" => &s.tunnel_setup,
        "session setup" => &s.session_setup,
        "echo RTT" => &s.echo_rtt,
        "LCP opened" => &s.ppp.lcp_opened,
        "authentication" => &s.ppp.authentication,
        "IPCP opened" => &s.ppp.ipcp_opened,
        "ICRQ→IP up" => &s.ppp.icrq_to_ip_up,
        _ => &s.traffic.rtt,
    };
    let points: Vec<(f64, f64)> = if p.count == 0 {
        Vec::new()
    } else {
        vec![
            (2f64.log10(), p.p50_ms),
            (1.0, p.p90_ms),
            (2.0, p.p99_ms),
            (3.0, p.p999_ms),
            (4.0, p.max_ms),
        ]
    };
    let top = points.iter().map(|&(_, y)| y).fold(0.0f64, f64::max);
    let top = if top > 0.0 { top * 1.1 } else { 1.0 };
    let title = format!(" {name}: ms by percentile, {} seen ", p.count);
    let dataset = Dataset::default()
        .name("latency")
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(Style::new().fg(Color::Magenta))
        .data(&points);
    let chart = Chart::new(vec![dataset])
        .block(Block::bordered().title(title))
        .x_axis(
            Axis::default()
                .bounds([0.0, 4.0])
                .labels(["", "90%", "99%", "99.9%", "max"]),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, top])
                .labels(["0".to_string(), ms(top)]),
        )
        .hidden_legend_constraints((Constraint::Length(0), Constraint::Length(0)));
    frame.render_widget(chart, area);
}

/// A latency table on the left, text on the right.
fn beside(area: Rect) -> [Rect; 2] {
    if area.width >= LATENCY_WIDTH + 20 {
        Layout::horizontal([Constraint::Length(LATENCY_WIDTH), Constraint::Min(0)]).areas(area)
    } else {
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(area)
    }
}

/// Whether the run does PPP (or did): then its panel shows.
fn ppp_shown(s: &LiveSnapshot) -> bool {
    let p = &s.ppp;
    p.establish + p.authenticate + p.network + p.ip_up + p.ip_up_total + p.failures > 0
}

/// The subscribers: their phase latencies, how many are in each phase, the traffic.
fn draw_ppp(frame: &mut Frame, area: Rect, s: &LiveSnapshot) {
    let [latency, text] = beside(area);
    let p = &s.ppp;
    let t = &s.traffic;
    let mut histograms = vec![
        ("ICCN→LCP", &p.lcp_opened),
        ("auth", &p.authentication),
        ("IPCP", &p.ipcp_opened),
        ("ICRQ→IP up", &p.icrq_to_ip_up),
    ];
    if t.rate > 0.0 {
        histograms.push(("ICMP RTT", &t.rtt));
    }
    draw_latency(frame, latency, " PPP latency, ms ", &histograms);
    let mut lines = vec![
        format!(
            "LCP {}  auth {}  IPCP {}",
            p.establish, p.authenticate, p.network
        ),
        format!("IP up {} now, {} in all", p.ip_up, p.ip_up_total),
        format!("PPP failures {}", p.failures),
    ];
    if t.rate > 0.0 {
        lines.push(format!("ICMP {}/s a session", t.rate));
        lines.push(format!("{} sent, {} received", t.sent, t.received));
        lines.push(format!("{} lost ({:.2} %)", t.lost, t.loss_pct));
    }
    let lines: Vec<Line> = lines.into_iter().map(Line::from).collect();
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" PPP ")),
        text,
    );
}

fn draw_latency(frame: &mut Frame, area: Rect, title: &str, histograms: &[(&str, &Percentiles)]) {
    let number = |v: String| Cell::from(Line::from(v).right_aligned());
    let rows = histograms.iter().map(|(name, p)| {
        let mut cells = vec![Cell::from(*name), number(p.count.to_string())];
        cells.extend(percentiles(p).into_iter().map(number));
        TableRow::new(cells)
    });
    let header = TableRow::new(
        ["", "count", "p50", "p90", "p99", "p99.9", "max"]
            .into_iter()
            .map(|h| Cell::from(Line::from(h).right_aligned())),
    )
    .style(Style::new().add_modifier(Modifier::BOLD));
    let widths = [
        Constraint::Length(13),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(6),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .block(Block::bordered().title(title.to_string()));
    frame.render_widget(table, area);
}

fn percentiles(p: &Percentiles) -> [String; 5] {
    if p.count == 0 {
        return std::array::from_fn(|_| "-".to_string());
    }
    [p.p50_ms, p.p90_ms, p.p99_ms, p.p999_ms, p.max_ms].map(ms)
}

fn draw_errors(frame: &mut Frame, area: Rect, app: &App) {
    let lines: Vec<Line> = error_lines(app).into_iter().map(Line::from).collect();
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" errors ")),
        area,
    );
}

/// The errors panel's lines: the counters, each failure reason, the master's drops.
fn error_lines(app: &App) -> Vec<String> {
    let s = &app.snapshot;
    let mut lines = vec![
        format!("tunnels failed {}", s.tunnels_failed),
        format!("sessions failed {}", s.sessions_failed),
        format!("retransmitted {}", s.retransmissions),
        format!("echo {}/{} answered", s.echo_answered, s.echo_sent),
    ];
    for (what, count) in &s.failures {
        lines.push(format!("{count} × {what}"));
    }
    if let Some(hint) = probes::lac::replies_hint(s.replies_elsewhere, &s.replies_elsewhere_from) {
        lines.push(hint);
    }
    if let Some(m) = &app.master {
        let d = &m.drops;
        if d.total() > 0 {
            let mut line = format!("master dropped {}", d.total());
            let parts = [
                ("no endpoint", d.no_endpoint),
                ("no capacity", d.no_capacity),
                ("unknown tunnel", d.unknown_tunnel),
            ];
            for (what, n) in parts.iter().filter(|(_, n)| *n > 0) {
                let _ = write!(line, ", {n} {what}");
            }
            lines.push(line);
        }
    }
    lines
}

fn draw_footer(frame: &mut Frame, area: Rect, app: &App) {
    let lab = if app.lab {
        "  d drain  k kill  K kill master"
    } else {
        "  d/k/K: lab only"
    };
    let text = format!(" q quit  p pause  +/- rate  ↑↓ select{lab}  ? help");
    frame.render_widget(
        Paragraph::new(text).style(Style::new().add_modifier(Modifier::REVERSED)),
        area,
    );
}

fn draw_help(frame: &mut Frame, area: Rect, app: &App) {
    let lab = if app.lab { "" } else { " (lab only)" };
    let lines = [
        "q  Esc  Ctrl-C   quit: the run stops cleanly".to_string(),
        "p  space         pause / resume new setups".to_string(),
        format!("+  =             target rate ×{RATE_STEP}"),
        format!("-                target rate ÷{RATE_STEP}, at least {MIN_RATE}/s"),
        "                 (from unpaced: just under".to_string(),
        "                 the measured rate)".to_string(),
        "↑  ↓             select an endpoint".to_string(),
        format!("d                drain it at the master{lab}"),
        format!("k                kill its process{lab}"),
        format!("K                kill the master{lab}"),
        "l                the latency chart's next histogram".to_string(),
        "?  Esc           close this help".to_string(),
    ];
    let width = lines
        .iter()
        .map(|l| l.chars().count() as u16 + 4)
        .max()
        .unwrap_or(0)
        .min(area.width);
    let height = (lines.len() as u16 + 2).min(area.height);
    let popup = Rect::new(
        area.x + (area.width - width) / 2,
        area.y + (area.height - height) / 2,
        width,
        height,
    );
    let text: Vec<Line> = lines
        .into_iter()
        .map(|l| Line::from(format!(" {l}")))
        .collect();
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(text).block(Block::bordered().title(" keys ")),
        popup,
    );
}

fn last(values: &[u64], n: usize) -> &[u64] {
    &values[values.len().saturating_sub(n)..]
}

/// The last `width` values as bars scaled to `max`, the latest at the right edge; zero is blank.
pub fn sparkline(values: &[u64], width: usize, max: u64) -> String {
    let shown = last(values, width);
    let mut out = " ".repeat(width - shown.len());
    for &v in shown {
        out.push(if v == 0 || max == 0 {
            ' '
        } else {
            let level = (v.min(max) as u128 * 8).div_ceil(max as u128);
            SPARKS[(level as usize).clamp(1, 8) - 1]
        });
    }
    out
}

/// `part` of `whole` as a bar of eighth blocks and a percentage, `width` characters in all.
pub fn share_bar(part: u64, whole: u64, width: usize) -> String {
    let share = if whole == 0 {
        0.0
    } else {
        (part as f64 / whole as f64).clamp(0.0, 1.0)
    };
    let percent = format!("{:>3.0}%", share * 100.0);
    if width < percent.len() {
        return String::new();
    }
    let bar_width = width.saturating_sub(percent.len() + 1);
    if bar_width == 0 {
        return format!("{percent:>width$}");
    }
    let eighths = (share * bar_width as f64 * 8.0).round() as usize;
    let mut bar = "█".repeat(eighths / 8);
    bar.push_str(EIGHTHS[eighths % 8]);
    let pad = " ".repeat(bar_width.saturating_sub(bar.chars().count()));
    format!("{bar}{pad} {percent}")
}

fn ms(v: f64) -> String {
    if !v.is_finite() || v < 0.0 {
        "-".to_string()
    } else if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else if v < 100_000.0 {
        format!("{v:.0}")
    } else {
        format!("{:.0}s", v / 1000.0)
    }
}

fn rate(rate: f64) -> String {
    if rate > 0.0 {
        format!("{rate:.1}/s")
    } else {
        "unpaced".to_string()
    }
}

fn elapsed(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "-".to_string();
    }
    let whole = seconds as u64;
    if whole >= 60 {
        format!("{}m{:02}s", whole / 60, whole % 60)
    } else {
        format!("{seconds:.1}s")
    }
}

fn policy(policy: &Policy) -> String {
    match policy {
        Policy::LeastLoad => "least-load".to_string(),
        Policy::RoundRobin => "round-robin".to_string(),
        Policy::LeakyBucket { rate, burst } => format!("leaky-bucket {rate}/s burst {burst}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_scales_and_keeps_the_latest_at_the_right() {
        assert_eq!(sparkline(&[0, 1, 2, 4, 8], 5, 8), " ▁▂▄█");
        assert_eq!(sparkline(&[8, 8, 1], 2, 8), "█▁");
        assert_eq!(sparkline(&[3], 4, 3), "   █");
        assert_eq!(sparkline(&[5, 9], 2, 0), "  ");
        assert_eq!(sparkline(&[], 0, 0), "");
    }

    #[test]
    fn share_bar_is_proportional() {
        assert_eq!(share_bar(1, 2, 14), "████▌      50%");
        assert_eq!(share_bar(2, 2, 14), "█████████ 100%");
        assert_eq!(share_bar(0, 0, 14), format!("{}  0%", " ".repeat(10)));
        assert_eq!(share_bar(1, 3, 14), "███        33%");
        assert_eq!(share_bar(5, 3, 6), "█ 100%");
        assert_eq!(share_bar(1, 2, 5), "  50%");
        assert_eq!(share_bar(1, 3, 2), "");
    }
}
