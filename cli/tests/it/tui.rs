//! The live TUI, driven through its events and painted on ratatui's `TestBackend`: frames
//! snapshotted in `snapshots/tui-*.snap`, keys checked for what they ask of the world.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use l2tpkit::tui::app::{RowState, MAX_RATE, MIN_RATE};
use l2tpkit::tui::{draw, events, Action, App, Event, Input};
use probes::live::{EndpointLive, LiveSnapshot, Percentiles, PppLive, RunPhase, TrafficLive};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use reference::cluster::EndpointState;
use reference::master::{
    AdminState, DropCounts, EndpointStatus, MasterStatus, MemberState, Policy, ReportCounts,
    StatusTotals,
};
use reference::takeover::{Holder, HolderState, TakeoverRecord};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ sits in the workspace")
        .to_path_buf()
}

fn assert_frame(name: &str, frame: &str) {
    insta::with_settings!({
        snapshot_path => repo_root().join("snapshots"),
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!(name, frame);
    });
}

/// The frame as text, one line per row, trailing blanks cut.
fn render(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test backend");
    terminal
        .draw(|frame| draw(frame, app))
        .expect("draw on a test backend");
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buffer.area.height {
        let mut line = String::new();
        for x in 0..buffer.area.width {
            line.push_str(buffer[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn key(app: &mut App, code: KeyCode) -> Action {
    let event = events::from_terminal(TermEvent::Key(KeyEvent::new(code, KeyModifiers::NONE)))
        .expect("a bound key");
    app.update(event)
}

fn percentiles(count: u64, base: f64) -> Percentiles {
    Percentiles {
        count,
        p50_ms: base,
        p90_ms: base * 1.8,
        p99_ms: base * 4.5,
        p999_ms: base * 9.0,
        max_ms: base * 23.0,
    }
}

fn endpoint_live(name: &str, tunnels: u64, seed: u64) -> EndpointLive {
    EndpointLive {
        key: name.to_string(),
        address: "198.18.0.1".to_string(),
        tunnels,
        sessions: tunnels,
        tunnels_total: tunnels + seed,
        // A ramp, a wobble around 16/s, a 4 s pause: one entry per second of a 40 s run.
        setups_per_second: (0..40u64)
            .map(|s| match s {
                0..=7 => s * 2,
                26..=29 => 0,
                _ => 10 + (s * 7 + seed * 3) % 9,
            })
            .collect(),
    }
}

fn mid_run_snapshot() -> LiveSnapshot {
    let mut failures = BTreeMap::new();
    failures.insert("timeout".to_string(), 2);
    failures.insert("StopCCN 2/0 busy".to_string(), 1);
    LiveSnapshot {
        elapsed_s: 40.4,
        phase: RunPhase::Connecting,
        paused: false,
        target_rate: 50.0,
        tunnels_requested: 1000,
        tunnels_started: 608,
        outstanding: 4,
        tunnels_up: 601,
        tunnels_established: 601,
        tunnels_failed: 3,
        sessions_requested: 1000,
        sessions_up: 601,
        sessions_established: 601,
        sessions_failed: 0,
        retransmissions: 17,
        replies_elsewhere: 0,
        replies_elsewhere_from: Vec::new(),
        echo_sent: 1200,
        echo_answered: 1198,
        endpoints: vec![
            endpoint_live("te1", 201, 1),
            endpoint_live("te2", 200, 2),
            endpoint_live("te3", 200, 3),
        ],
        sccrq_to_sccrp: percentiles(608, 0.42),
        tunnel_setup: percentiles(601, 1.31),
        session_setup: percentiles(601, 2.07),
        echo_rtt: percentiles(1198, 0.35),
        failures,
        ppp: PppLive::default(),
        traffic: TrafficLive::default(),
    }
}

fn endpoint_status(index: u8, tunnels: u32) -> EndpointStatus {
    EndpointStatus {
        name: format!("te{index}"),
        lan_addr: Ipv4Addr::new(198, 19, 0, 10 + index),
        global_addr: None,
        state: MemberState::InService,
        admin: AdminState::Active,
        reported_state: EndpointState::InService,
        tunnels,
        sessions: tunnels,
        capacity: 1000,
        tunnel_ids: vec![(u16::from(index) * 4096, u16::from(index) * 4096 + 4095)],
        dispatched_since_report: 0,
        in_flight: 0,
        sccrq_sent: u64::from(tunnels) + 1,
        sccrq_received: Some(u64::from(tunnels) + 1),
        claimed_tunnels: 0,
        dispatched_total: u64::from(tunnels) + 1,
        sccrq_retransmitted: 0,
        sccrq_redispatched_away: 0,
        forwarded: u64::from(tunnels) * 5,
        dropped_out_of_service: 0,
        bucket_drops: 0,
        last_report_age_ms: 300,
        last_report_from: SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 10 + index), 1702),
        sequence: 40,
        tokens: None,
    }
}

fn master_status(endpoints: Vec<EndpointStatus>) -> MasterStatus {
    let mut totals = StatusTotals {
        endpoints: endpoints.len(),
        ..StatusTotals::default()
    };
    for e in &endpoints {
        totals.tunnels += u64::from(e.tunnels);
        totals.sessions += u64::from(e.sessions);
        if e.state == MemberState::InService {
            totals.in_service += 1;
            totals.capacity += u64::from(e.capacity);
        }
    }
    MasterStatus {
        cluster_addr: Ipv4Addr::new(198, 18, 0, 1),
        policy: Policy::LeastLoad,
        endpoints,
        totals,
        drops: DropCounts {
            no_capacity: 2,
            ..DropCounts::default()
        },
        reports: ReportCounts::default(),
        remembered_dispatches: 4,
        holder: Default::default(),
        claims: Default::default(),
        claimed_tunnels: 0,
        placement_held: false,
        remembered_limit: 1 << 20,
    }
}

fn mid_run_master() -> MasterStatus {
    master_status(vec![
        endpoint_status(1, 201),
        endpoint_status(2, 200),
        endpoint_status(3, 200),
    ])
}

fn mid_run_app() -> App {
    let mut app = App::new(true, 50.0, false);
    app.update(Event::Snapshot(mid_run_snapshot()));
    app.update(Event::Master(Some(mid_run_master())));
    app
}

fn line_of<'a>(frame: &'a str, needle: &str) -> &'a str {
    frame
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in\n{frame}"))
}

#[test]
fn frame_at_start() {
    let app = App::new(true, 50.0, false);
    let frame = render(&app, 100, 30);
    assert!(frame.contains("starting"), "{frame}");
    assert!(frame.contains("no master status"), "{frame}");
    assert_frame("tui-start", &frame);
}

#[test]
fn frame_mid_run() {
    let app = mid_run_app();
    let frame = render(&app, 100, 30);
    for name in ["te1", "te2", "te3"] {
        assert!(line_of(&frame, name).contains("in service"), "{frame}");
    }
    assert!(line_of(&frame, "te2").contains("200/1000"), "{frame}");
    assert!(line_of(&frame, "total").contains("601/3000"), "{frame}");
    assert!(line_of(&frame, "tunnel setup").contains("1.31"), "{frame}");
    assert_frame("tui-mid-run", &frame);
}

#[test]
fn drain_te2() {
    let mut app = mid_run_app();
    assert_eq!(key(&mut app, KeyCode::Down), Action::None);
    assert_eq!(
        key(&mut app, KeyCode::Char('d')),
        Action::Drain("te2".into())
    );
    app.update(Event::Drained {
        endpoint: "te2".into(),
        result: Ok(()),
    });
    let mut master = mid_run_master();
    master.endpoints[1].admin = AdminState::Drained;
    master.endpoints[1].state = MemberState::Draining;
    master.totals.in_service = 2;
    master.totals.capacity = 2000;
    app.update(Event::Master(Some(master)));
    let frame = render(&app, 100, 30);
    assert!(line_of(&frame, "te2").contains("draining"), "{frame}");
    assert!(line_of(&frame, "te1").contains("in service"), "{frame}");
    assert!(frame.contains("drained te2"), "{frame}");
    // The selection marker stays on te2.
    assert!(line_of(&frame, "te2").contains("> te2"), "{frame}");
    assert_frame("tui-drained", &frame);
}

#[test]
fn kill_te3() {
    let mut app = mid_run_app();
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Down);
    assert_eq!(
        key(&mut app, KeyCode::Char('k')),
        Action::Kill("te3".into())
    );
    app.update(Event::Killed {
        endpoint: "te3".into(),
        result: Ok(()),
    });
    // Its tunnels are gone from the initiators' view, and its reports have stopped.
    let mut snapshot = mid_run_snapshot();
    snapshot.endpoints[2].tunnels = 0;
    snapshot.endpoints[2].sessions = 0;
    snapshot.tunnels_up = 401;
    snapshot.sessions_up = 401;
    app.update(Event::Snapshot(snapshot));
    let mut master = mid_run_master();
    master.endpoints[2].state = MemberState::OutOfService;
    master.endpoints[2].last_report_age_ms = 3400;
    master.totals.in_service = 2;
    master.totals.capacity = 2000;
    app.update(Event::Master(Some(master)));
    assert_eq!(app.rows()[2].state(), RowState::Killed);
    let frame = render(&app, 100, 30);
    assert!(line_of(&frame, "> te3").contains("killed"), "{frame}");
    assert!(frame.contains("te3 killed"), "{frame}");
    // A second kill of the same endpoint asks nothing of the world.
    assert_eq!(key(&mut app, KeyCode::Char('k')), Action::None);
    assert_frame("tui-killed", &frame);
}

#[test]
fn frame_with_help() {
    let mut app = mid_run_app();
    assert_eq!(key(&mut app, KeyCode::Char('?')), Action::None);
    assert!(app.help);
    let frame = render(&app, 100, 30);
    assert!(frame.contains(" keys "), "{frame}");
    assert_frame("tui-help", &frame);
    // Esc closes the help first, and only then quits.
    assert_eq!(key(&mut app, KeyCode::Esc), Action::None);
    assert!(!app.help);
    assert_eq!(key(&mut app, KeyCode::Esc), Action::Quit);
}

#[test]
fn quit_keys() {
    let mut app = mid_run_app();
    assert_eq!(key(&mut app, KeyCode::Char('q')), Action::Quit);
    let ctrl_c = TermEvent::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert_eq!(
        app.update(events::from_terminal(ctrl_c).expect("bound")),
        Action::Quit
    );
}

#[test]
fn rate_steps_and_bounds() {
    let mut app = App::new(false, 50.0, false);
    assert_eq!(key(&mut app, KeyCode::Char('+')), Action::SetRate(62.5));
    assert_eq!(key(&mut app, KeyCode::Char('=')), Action::SetRate(78.125));
    assert_eq!(key(&mut app, KeyCode::Char('-')), Action::SetRate(62.5));
    assert_eq!(app.rate, 62.5);

    let mut slow = App::new(false, 1.1, false);
    assert_eq!(
        key(&mut slow, KeyCode::Char('-')),
        Action::SetRate(MIN_RATE)
    );
    assert_eq!(
        key(&mut slow, KeyCode::Char('-')),
        Action::SetRate(MIN_RATE)
    );

    let mut fast = App::new(false, MAX_RATE / 1.1, false);
    assert_eq!(
        key(&mut fast, KeyCode::Char('+')),
        Action::SetRate(MAX_RATE)
    );
    assert_eq!(
        key(&mut fast, KeyCode::Char('+')),
        Action::SetRate(MAX_RATE)
    );
}

#[test]
fn rate_from_unpaced() {
    let mut app = App::new(false, 0.0, false);
    app.update(Event::Snapshot(mid_run_snapshot()));
    // Unpaced is as fast as it goes: `+` changes nothing and says so.
    assert_eq!(key(&mut app, KeyCode::Char('+')), Action::None);
    assert!(app.message.as_deref().unwrap_or("").contains("unpaced"));
    // `-` pins the pace under the measured rate: the last 3 s of all endpoints together.
    let measured = app.measured_rate();
    let last3: u64 = mid_run_snapshot()
        .endpoints
        .iter()
        .flat_map(|e| e.setups_per_second[37..].iter().copied())
        .sum();
    assert_eq!(measured, last3 as f64 / 3.0);
    assert_eq!(
        key(&mut app, KeyCode::Char('-')),
        Action::SetRate(measured / 1.25)
    );

    // Nothing measured yet: the floor.
    let mut idle = App::new(false, 0.0, false);
    assert_eq!(
        key(&mut idle, KeyCode::Char('-')),
        Action::SetRate(MIN_RATE)
    );
}

#[test]
fn pause_toggles() {
    let mut app = App::new(false, 10.0, false);
    assert_eq!(key(&mut app, KeyCode::Char('p')), Action::SetPaused(true));
    assert!(render(&app, 100, 30).contains("PAUSED"));
    assert_eq!(key(&mut app, KeyCode::Char('p')), Action::SetPaused(false));
    assert!(!render(&app, 100, 30).contains("PAUSED"));
}

#[test]
fn selection_wraps_and_clamps() {
    let mut empty = App::new(true, 10.0, false);
    assert_eq!(key(&mut empty, KeyCode::Up), Action::None);
    assert_eq!(key(&mut empty, KeyCode::Down), Action::None);
    assert_eq!(empty.selected, 0);
    assert_eq!(key(&mut empty, KeyCode::Char('d')), Action::None);
    assert!(empty
        .message
        .as_deref()
        .unwrap_or("")
        .contains("no endpoint"));

    let mut app = mid_run_app();
    key(&mut app, KeyCode::Up);
    assert_eq!(app.selected, 2);
    key(&mut app, KeyCode::Down);
    assert_eq!(app.selected, 0);
    key(&mut app, KeyCode::Down);
    assert_eq!(app.selected, 1);

    // te3 selected, then the master and the driver forget it: the selection moves up.
    key(&mut app, KeyCode::Down);
    let mut snapshot = mid_run_snapshot();
    snapshot.endpoints.truncate(2);
    app.update(Event::Snapshot(snapshot));
    let mut master = mid_run_master();
    master.endpoints.truncate(2);
    app.update(Event::Master(Some(master)));
    assert_eq!(app.selected, 1);
    assert_eq!(
        key(&mut app, KeyCode::Char('d')),
        Action::Drain("te2".into())
    );
}

#[test]
fn drain_and_kill_need_the_lab() {
    let mut app = App::new(false, 10.0, false);
    app.update(Event::Snapshot(mid_run_snapshot()));
    app.update(Event::Master(Some(mid_run_master())));
    assert_eq!(key(&mut app, KeyCode::Char('d')), Action::None);
    assert!(app.message.as_deref().unwrap_or("").contains("lab"));
    app.message = None;
    assert_eq!(key(&mut app, KeyCode::Char('k')), Action::None);
    assert!(app.message.as_deref().unwrap_or("").contains("lab"));
    assert!(render(&app, 100, 30).contains("d/k/K: lab only"));
}

#[test]
fn failed_hooks_are_reported_and_change_nothing() {
    let mut app = mid_run_app();
    app.update(Event::Killed {
        endpoint: "te1".into(),
        result: Err("no such process".into()),
    });
    assert_eq!(app.rows()[0].state(), RowState::InService);
    assert_eq!(
        app.message.as_deref(),
        Some("kill te1 failed: no such process")
    );
    app.update(Event::Drained {
        endpoint: "te1".into(),
        result: Err("master did not answer".into()),
    });
    assert!(render(&app, 100, 30).contains("drain te1 failed: master did not answer"));
}

#[test]
fn messages_fade_after_ticks() {
    let mut app = App::new(false, 10.0, false);
    key(&mut app, KeyCode::Char('p'));
    assert!(app.message.is_some());
    for _ in 0..l2tpkit::tui::app::MESSAGE_TICKS {
        app.update(Event::Tick);
    }
    assert_eq!(app.message, None);
}

#[test]
fn stale_master_keeps_its_last_word() {
    let mut app = mid_run_app();
    app.update(Event::Master(None));
    assert!(app.master.is_some());
    assert!(app.master_stale);
    assert!(render(&app, 100, 30).contains("(stale)"));
    app.update(Event::Master(Some(mid_run_master())));
    assert!(!app.master_stale);
}

#[test]
fn rows_merge_by_name_then_address() {
    let mut app = App::new(true, 10.0, false);
    let snapshot = LiveSnapshot {
        endpoints: vec![
            // FIG 4 without Host Name: keyed by the SCCRP's source, the endpoint's global address.
            EndpointLive {
                key: "198.18.0.12:1701".into(),
                address: "198.18.0.12:1701".into(),
                tunnels: 7,
                ..EndpointLive::default()
            },
            // One the master does not know.
            EndpointLive {
                key: "stray".into(),
                address: "198.18.0.99".into(),
                tunnels: 1,
                ..EndpointLive::default()
            },
            EndpointLive {
                key: "te1".into(),
                address: "198.18.0.11".into(),
                tunnels: 5,
                ..EndpointLive::default()
            },
        ],
        ..LiveSnapshot::default()
    };
    app.update(Event::Snapshot(snapshot));
    let mut te2 = endpoint_status(2, 7);
    te2.global_addr = Some(Ipv4Addr::new(198, 18, 0, 12));
    // te4: the master knows it, the driver has no tunnel with it.
    app.update(Event::Master(Some(master_status(vec![
        endpoint_status(1, 5),
        te2,
        endpoint_status(4, 0),
    ]))));
    let rows = app.rows();
    let view: Vec<(&str, Option<u64>, bool)> = rows
        .iter()
        .map(|r| (r.name, r.live.map(|l| l.tunnels), r.master.is_some()))
        .collect();
    assert_eq!(
        view,
        [
            ("te1", Some(5), true),
            ("te2", Some(7), true),
            ("te4", None, true),
            ("stray", Some(1), false),
        ]
    );
    assert_eq!(rows[3].state(), RowState::Unknown);
    // The driver-only row can still be drained by its key.
    key(&mut app, KeyCode::Up);
    assert_eq!(
        key(&mut app, KeyCode::Char('d')),
        Action::Drain("stray".into())
    );
}

#[test]
fn lays_out_at_80_by_24() {
    let frame = render(&mid_run_app(), 80, 24);
    for needle in ["te1", "te2", "te3", "total", "echo RTT", "errors", "q quit"] {
        assert!(frame.contains(needle), "{needle:?} missing from\n{frame}");
    }
}

#[test]
fn tiny_and_odd_sizes_do_not_panic() {
    let mut app = mid_run_app();
    app.update(Event::Input(Input::ToggleHelp));
    let mut crowded = mid_run_app();
    let mut snapshot = mid_run_snapshot();
    for i in 4..60 {
        snapshot.endpoints.push(endpoint_live(
            &format!("an-endpoint-with-a-long-name-{i}"),
            i,
            i,
        ));
    }
    crowded.update(Event::Snapshot(snapshot));
    for _ in 0..40 {
        crowded.update(Event::Input(Input::SelectDown));
    }
    for app in [&App::new(false, 0.0, false), &mid_run_app(), &app, &crowded] {
        for width in 1..=40 {
            for height in 1..=14 {
                render(app, width, height);
            }
        }
        render(app, 10, 3);
        render(app, 300, 2);
        render(app, 2, 100);
    }
    assert!(render(&app, 10, 3).lines().count() == 3);
}

#[test]
fn kill_the_master_and_see_who_took_over() {
    let mut app = mid_run_app();
    assert_eq!(key(&mut app, KeyCode::Char('K')), Action::KillMaster);
    app.update(Event::MasterKilled { result: Ok(()) });
    assert!(app.master_killed);
    // Its control socket is gone: the last word stays up, marked stale.
    app.update(Event::Master(None));
    let frame = render(&app, 100, 30);
    assert!(frame.contains("(stale)"), "{frame}");
    assert!(frame.contains("master killed"), "{frame}");
    // A second K asks nothing of the world.
    assert_eq!(key(&mut app, KeyCode::Char('K')), Action::None);
    assert_eq!(app.message.as_deref(), Some("the master is killed already"));
    // te1 took over: its master answers, with the record of the takeover.
    let mut master = mid_run_master();
    master.holder = Holder {
        name: "te1".into(),
        state: HolderState::Active,
        held_by: None,
        claimed: vec![
            "198.18.0.1/16 on l2k0001-te1p".into(),
            "198.19.0.1/16 on l2k0001-te1l".into(),
        ],
        takeover: Some(TakeoverRecord {
            endpoint: "te1".into(),
            rank: 0,
            previous_master: "master".into(),
            master_silent_ms: 1500,
            claim_ms: 320,
            at_unix_ms: 1,
        }),
    };
    app.update(Event::Master(Some(master)));
    let frame = render(&app, 100, 30);
    assert!(frame.contains("master te1 198.18.0.1"), "{frame}");
    assert!(!frame.contains("(stale)"), "{frame}");
    assert_frame("tui-taken-over", &frame);

    let mut outside = App::new(false, 10.0, false);
    assert_eq!(key(&mut outside, KeyCode::Char('K')), Action::None);
    assert!(outside.message.as_deref().unwrap_or("").contains("lab"));
    app.update(Event::MasterKilled {
        result: Err("no running process named \"master\"".into()),
    });
    assert!(app
        .message
        .as_deref()
        .unwrap_or("")
        .starts_with("kill master failed"));
}

/// A PPP run: the subscribers' phases, their latencies and the ICMP traffic get a panel of
/// their own under the L2TP ones.
#[test]
fn ppp_panel_shows_phases_latencies_and_traffic() {
    let mut snapshot = mid_run_snapshot();
    snapshot.ppp = PppLive {
        establish: 3,
        authenticate: 1,
        network: 2,
        ip_up: 595,
        ip_up_total: 597,
        failures: 2,
        lcp_opened: percentiles(600, 0.91),
        authentication: percentiles(598, 0.52),
        ipcp_opened: percentiles(597, 0.44),
        icrq_to_ip_up: percentiles(597, 3.9),
    };
    snapshot.traffic = TrafficLive {
        rate: 1.0,
        sent: 11_900,
        received: 11_894,
        lost: 6,
        loss_pct: 6.0 * 100.0 / 11_900.0,
        rtt: percentiles(11_894, 0.21),
    };
    let mut app = App::new(true, 50.0, false);
    app.update(Event::Snapshot(snapshot));
    app.update(Event::Master(Some(mid_run_master())));
    let frame = render(&app, 110, 34);
    assert!(line_of(&frame, "PPP latency").contains(" PPP "), "{frame}");
    assert!(line_of(&frame, "ICRQ→IP up").contains("3.90"), "{frame}");
    assert!(line_of(&frame, "ICMP RTT").contains("11894"), "{frame}");
    assert!(frame.contains("LCP 3  auth 1  IPCP 2"), "{frame}");
    assert!(frame.contains("IP up 595 now, 597 in all"), "{frame}");
    assert!(frame.contains("PPP failures 2"), "{frame}");
    assert!(frame.contains("6 lost (0.05 %)"), "{frame}");
    assert_frame("tui-ppp", &frame);

    // Without PPP the panel stays away.
    let frame = render(&mid_run_app(), 110, 34);
    assert!(!frame.contains("PPP latency"), "{frame}");
}

/// A 40 s run fed second by second: a ramp of tunnels and sessions, setups at 15/s, a burst of
/// failures and retransmissions at 20–22 s, PPP latencies.
fn charted_app() -> App {
    let mut app = App::new(true, 50.0, false);
    for second in 0..=40u64 {
        let mut s = mid_run_snapshot();
        s.elapsed_s = second as f64 + 0.4;
        s.tunnels_up = second * 15;
        s.tunnels_established = second * 15;
        s.sessions_up = second * 15;
        s.tunnels_failed = match second {
            0..=19 => 0,
            20..=22 => (second - 19) * 4,
            _ => 12,
        };
        s.retransmissions = match second {
            0..=19 => second / 5,
            20..=22 => 4 + (second - 19) * 10,
            _ => 34,
        };
        s.ppp.ip_up_total = second * 15;
        s.ppp.ip_up = second * 15;
        s.ppp.icrq_to_ip_up = percentiles(second * 15, 3.9);
        app.update(Event::Snapshot(s));
    }
    app.update(Event::Master(Some(mid_run_master())));
    app
}

/// On a 140×40 terminal the room under the tables holds three charts; the latency one shows
/// the histogram `l` picks, PPP phases included.
#[test]
fn charts_fill_a_large_terminal() {
    let mut app = charted_app();
    assert_eq!(app.history.len(), 41);
    let frame = render(&app, 140, 40);
    assert!(frame.contains(" up, and setups/s "), "{frame}");
    assert!(frame.contains(" failures, retransmissions "), "{frame}");
    assert!(
        frame.contains("SCCRQ→SCCRP: ms by percentile, 608 seen"),
        "{frame}"
    );
    assert!(line_of(&frame, "up, and setups/s").contains("┌"), "{frame}");
    // The x axis runs over the run's seconds; the y axis tops at the most tunnels up.
    assert!(frame.contains("0s") && frame.contains("40s"), "{frame}");
    assert!(frame.contains("600"), "{frame}");
    assert_frame("tui-charts-140x40", &frame);

    for _ in 0..7 {
        assert_eq!(app.update(Event::Input(Input::NextLatency)), Action::None);
    }
    let frame = render(&app, 140, 40);
    assert!(
        frame.contains("ICRQ→IP up: ms by percentile, 600 seen"),
        "{frame}"
    );
    assert!(frame.contains("latency chart: ICRQ→IP up"), "{frame}");
    // Nine histograms, then round again.
    for _ in 0..2 {
        app.update(Event::Input(Input::NextLatency));
    }
    assert_eq!(app.latency_phase, 0);
}

/// Small terminals keep the tables only, as before the charts.
#[test]
fn charts_stay_away_from_a_small_terminal() {
    let app = charted_app();
    let frame = render(&app, 80, 24);
    assert!(!frame.contains("up, and setups/s"), "{frame}");
    assert!(frame.contains("echo RTT"), "{frame}");
    assert_frame("tui-charts-80x24", &frame);
    let frame = render(&app, 100, 30);
    assert!(!frame.contains("by percentile"), "{frame}");
}

/// A snapshot from an earlier second (a new run in the same TUI) starts the history anew.
#[test]
fn history_restarts_with_a_new_run() {
    let mut app = charted_app();
    let mut s = mid_run_snapshot();
    s.elapsed_s = 0.2;
    app.update(Event::Snapshot(s));
    assert_eq!(app.history.len(), 1);
}

#[test]
fn replies_from_other_addresses_are_named_in_the_errors_panel() {
    let mut app = App::new(false, 50.0, false);
    let mut snapshot = mid_run_snapshot();
    snapshot.replies_elsewhere = 198;
    snapshot.replies_elsewhere_from = vec!["198.18.0.12".into(), "198.18.0.13".into()];
    app.update(Event::Snapshot(snapshot));
    let frame = render(&app, 160, 40);
    let line = line_of(&frame, "198 SCCRPs came from");
    assert!(line.contains("198.18.0.12, 198.18.0.13"), "{frame}");
    assert!(frame.contains("--any-source"), "{frame}");
}
