//! Master takeover (the patent's FIG 4), the endpoint's side, sans-IO: when the master stops,
//! one endpoint, the same one whatever endpoint you ask, takes the cluster address over.
//!
//! How an endpoint knows the master lives: the master answers every load report it accepts
//! with a sealed [`ReportAck`](crate::cluster::ReportAck) (same key as the reports), sent back
//! to the endpoint's report socket. Each ack carries the master's *view*: the endpoints it
//! knows, in name order, and which of them are in service.
//!
//! Who takes over: an endpoint's *rank* is its position among the in-service endpoints of the
//! last view it got. Rank r takes over after `silence + r * step` report intervals without an
//! ack (3 + 2r by default): rank 0 first, and a higher rank only if every lower one stayed
//! silent, for by then a lower rank that took over would already be acking its reports (its
//! reports reach the new master within an interval of the takeover). Every endpoint computes
//! its rank from a view the master sent to all of them, so no two endpoints hold the same rank
//! for the same view. An endpoint that is not in service in the view (draining, deactivated,
//! out of service) never takes over, nor does one that never heard from a master.
//!
//! A takeover is an order ([`Order::Claim`]) the runner carries out: it first sends ARP probes
//! for the cluster address (RFC 5227) and takes the address only if nobody answers. An
//! endpoint whose acks were lost while the master lives therefore finds the address held and
//! stands by ([`ClaimOutcome::Held`]): the probe, not the timer, is what keeps two masters from
//! holding one address. The same probe keeps a master that comes back from fighting the one
//! that took over (`crate::claim`).
//!
//! An ack is taken only when it names a report this endpoint sent within the watch window: the
//! report sequence grows for ever (wall-clock seeded), so a replayed old ack names an old report
//! and cannot make a dead master look alive.

use core::time::Duration;
use std::collections::VecDeque;

use l2tp::time::Instant;
use serde::{Deserialize, Serialize};

use crate::cluster::{self, ReportAck, ReportError, ViewEntry};

/// Rank 0 takes over after this many report intervals without an ack.
pub const DEFAULT_SILENCE: u32 = 3;
/// Each rank waits this many report intervals more than the one before it.
pub const DEFAULT_STEP: u32 = 2;
/// Report sequences remembered for matching acks; more than a watch window's worth at any
/// rank the view format allows would be pointless, since an ack that old proves nothing.
const MAX_SENT: usize = 64;

#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// This endpoint's name: its place in the view.
    pub name: String,
    /// The key of the reports and acks.
    pub key: Vec<u8>,
    /// How often this endpoint reports (and so how often a live master acks).
    pub interval: Duration,
    pub silence: u32,
    pub step: u32,
}

impl WatchConfig {
    pub fn new(name: impl Into<String>, key: impl Into<Vec<u8>>, interval: Duration) -> Self {
        WatchConfig {
            name: name.into(),
            key: key.into(),
            interval,
            silence: DEFAULT_SILENCE,
            step: DEFAULT_STEP,
        }
    }

    /// How long rank `rank` waits for an ack before it claims the master's address.
    pub fn patience(&self, rank: usize) -> Duration {
        let intervals = u64::from(self.silence)
            .saturating_add(u64::from(self.step).saturating_mul(rank as u64));
        self.interval
            .saturating_mul(u32::try_from(intervals).unwrap_or(u32::MAX))
    }
}

/// Where the watch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchState {
    /// No ack yet: there may be no master at all, and nothing to take over.
    Unarmed,
    Watching,
    /// A claim was ordered; its outcome is awaited.
    Claiming,
    /// This endpoint holds the cluster address now.
    Master,
}

/// What the runner is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Order {
    /// Probe for the cluster address, take it if free, serve as the master.
    Claim {
        rank: usize,
        /// How long no ack came.
        silent_for: Duration,
        /// The master that went silent.
        previous_master: String,
        /// This endpoint's last sealed load report (the endpoint adds it): the new master
        /// starts from it, so it can dispatch before the first round of reports reaches it.
        own_report: Option<Vec<u8>>,
        /// The view of the last ack: the new master starts from it ([`Master::seed_view`]).
        ///
        /// [`Master::seed_view`]: crate::master::Master::seed_view
        view: Vec<ViewEntry>,
    },
}

/// How a claim went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// Nobody answered the probes: the addresses are ours and the master runs here.
    Claimed,
    /// Someone answered for the address (`by`: its MAC address): the master, or another
    /// endpoint that took over, lives. Stand by.
    Held { by: String },
    /// The claim could not be carried out (no raw socket, `ip` failed, ...).
    Failed { error: String },
}

/// What `handle_ack` made of a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    Accepted,
    /// The tag does not verify.
    Forged,
    /// Not an ack, or an authentic one that does not parse.
    Malformed,
    /// Authentic, but for a report this endpoint did not send lately (a replay).
    Stale,
}

/// Counters and the last view, for the endpoint's status and JSON.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WatchStatus {
    pub state: Option<WatchState>,
    /// The master whose ack came last.
    pub master: Option<String>,
    pub last_ack_age_ms: Option<u64>,
    /// This endpoint's place in the takeover order; `None`: it would not take over.
    pub rank: Option<usize>,
    /// How long it waits for an ack at that rank.
    pub patience_ms: Option<u64>,
    pub view: Vec<ViewEntry>,
    pub acks: u64,
    pub acks_forged: u64,
    pub acks_malformed: u64,
    pub acks_stale: u64,
    /// Times the master stayed silent past this endpoint's patience.
    pub silences: u64,
    /// Claims that found the address held (standing by).
    pub claims_held: u64,
    pub claims_failed: u64,
    pub takeovers: u64,
    /// Acks from another master than the one before (someone took over).
    pub master_changes: u64,
}

/// The endpoint's watch over the master; see the module documentation.
#[derive(Debug)]
pub struct Watch {
    config: WatchConfig,
    state: WatchState,
    last_ack: Option<Instant>,
    master: Option<String>,
    view: Vec<ViewEntry>,
    /// (report sequence, when sent), oldest first.
    sent: VecDeque<(u64, Instant)>,
    pending: Option<Order>,
    latest: Instant,
    status: WatchStatus,
}

impl Watch {
    pub fn new(config: WatchConfig) -> Watch {
        Watch {
            config,
            state: WatchState::Unarmed,
            last_ack: None,
            master: None,
            view: Vec::new(),
            sent: VecDeque::new(),
            pending: None,
            latest: Instant::ZERO,
            status: WatchStatus::default(),
        }
    }

    pub fn config(&self) -> &WatchConfig {
        &self.config
    }

    pub fn state(&self) -> WatchState {
        self.state
    }

    fn observe(&mut self, now: Instant) {
        self.latest = self.latest.max(now);
    }

    /// The window in which an ack for a report still counts: the longest patience any rank of
    /// the current view has, and at least rank 0's.
    fn window(&self) -> Duration {
        let ranks = self.view.iter().filter(|e| e.in_service).count();
        self.config.patience(ranks.max(1))
    }

    /// A report with `sequence` went out.
    pub fn report_sent(&mut self, now: Instant, sequence: u64) {
        self.observe(now);
        if self.sent.len() >= MAX_SENT {
            self.sent.pop_front();
        }
        self.sent.push_back((sequence, now));
    }

    /// This endpoint's rank in the last view: its position among the in-service endpoints.
    pub fn rank(&self) -> Option<usize> {
        let mut in_service = self.view.iter().filter(|e| e.in_service);
        in_service.position(|e| e.name == self.config.name)
    }

    /// A datagram on the report socket.
    pub fn handle_ack(&mut self, now: Instant, bytes: &[u8]) -> AckOutcome {
        self.observe(now);
        let ack = match cluster::open_ack(bytes, &self.config.key) {
            Ok(ack) => ack,
            Err(ReportError::BadTag) => {
                self.status.acks_forged += 1;
                return AckOutcome::Forged;
            }
            Err(_) => {
                self.status.acks_malformed += 1;
                return AckOutcome::Malformed;
            }
        };
        let window = self.window();
        let recent = self.sent.iter().any(|&(sequence, at)| {
            sequence == ack.report_sequence && now.saturating_duration_since(at) <= window
        });
        if !recent {
            self.status.acks_stale += 1;
            return AckOutcome::Stale;
        }
        self.accept(now, ack);
        AckOutcome::Accepted
    }

    fn accept(&mut self, now: Instant, ack: ReportAck) {
        self.status.acks += 1;
        if self.master.as_deref() != Some(ack.master.as_str()) {
            if let Some(before) = &self.master {
                self.status.master_changes += 1;
                tracing::warn!(from = %before, to = %ack.master, "acks come from another master now");
            }
            self.master = Some(ack.master);
        }
        if self.state == WatchState::Unarmed {
            tracing::info!(master = ?self.master, "master heard: watching it");
            self.state = WatchState::Watching;
        }
        self.last_ack = Some(now);
        self.view = ack.view;
    }

    /// When the watch next has something to decide.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state != WatchState::Watching {
            return None;
        }
        let rank = self.rank()?;
        Some(self.last_ack? + self.config.patience(rank))
    }

    /// Checks the master's silence; an order when this endpoint's patience ran out.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.observe(now);
        let Some(deadline) = self.poll_timeout() else {
            return;
        };
        if now < deadline {
            return;
        }
        let rank = self.rank().unwrap_or(0);
        let silent_for = now.saturating_duration_since(self.last_ack.unwrap_or(now));
        let previous_master = self.master.clone().unwrap_or_default();
        self.status.silences += 1;
        tracing::warn!(
            master = %previous_master, rank, silent_ms = silent_for.as_millis() as u64,
            "master silent past this endpoint's patience: claiming its address"
        );
        self.state = WatchState::Claiming;
        self.pending = Some(Order::Claim {
            rank,
            silent_for,
            previous_master,
            own_report: None,
            view: self.view.clone(),
        });
    }

    /// The order to carry out, once.
    pub fn poll_order(&mut self) -> Option<Order> {
        self.pending.take()
    }

    /// How the last claim went.
    pub fn claim_outcome(&mut self, now: Instant, outcome: &ClaimOutcome) {
        self.observe(now);
        if self.state != WatchState::Claiming {
            return;
        }
        match outcome {
            ClaimOutcome::Claimed => {
                self.status.takeovers += 1;
                self.state = WatchState::Master;
                tracing::warn!(endpoint = %self.config.name, "took the master's address over");
            }
            ClaimOutcome::Held { by } => {
                // Someone answered for the address: it lives. A full window again before the
                // next claim, whatever the acks do meanwhile.
                self.status.claims_held += 1;
                self.state = WatchState::Watching;
                self.last_ack = Some(now);
                tracing::info!(held_by = %by, "the master's address is held: standing by");
            }
            ClaimOutcome::Failed { error } => {
                self.status.claims_failed += 1;
                self.state = WatchState::Watching;
                self.last_ack = Some(now);
                tracing::error!(%error, "claiming the master's address failed");
            }
        }
    }

    pub fn status(&self) -> WatchStatus {
        let mut status = self.status.clone();
        status.state = Some(self.state);
        status.master = self.master.clone();
        status.last_ack_age_ms = self.last_ack.map(|at| {
            u64::try_from(self.latest.saturating_duration_since(at).as_millis()).unwrap_or(u64::MAX)
        });
        status.rank = self.rank();
        status.patience_ms = status
            .rank
            .map(|r| u64::try_from(self.config.patience(r).as_millis()).unwrap_or(u64::MAX));
        status.view = self.view.clone();
        status
    }
}

/// How the master holding the cluster address came to hold it, for its status.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Holder {
    /// The master's name in its acks.
    pub name: String,
    pub state: HolderState,
    /// Standby: who answered for the cluster address ("02:00:..:.. on IF for ADDR").
    pub held_by: Option<String>,
    /// The addresses this master took at start ("198.18.0.1/16 on IF").
    pub claimed: Vec<String>,
    /// Set when an endpoint took over.
    pub takeover: Option<TakeoverRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HolderState {
    /// Holds the cluster address and dispatches.
    #[default]
    Active,
    /// Found the address held by another and left it alone (it does not fight).
    Standby,
}

/// One takeover: who, after how long a silence, at what rank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeoverRecord {
    pub endpoint: String,
    pub rank: usize,
    pub previous_master: String,
    /// From the last ack to the claim order.
    pub master_silent_ms: u64,
    /// From the claim order to serving (ARP probes, addresses, announcements).
    pub claim_ms: u64,
    pub at_unix_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const KEY: &[u8] = b"k";
    const INTERVAL: Duration = Duration::from_millis(500);

    fn at(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    fn view(names: &[(&str, bool)]) -> Vec<ViewEntry> {
        names
            .iter()
            .enumerate()
            .map(|(i, &(name, in_service))| ViewEntry {
                name: name.into(),
                lan_addr: Ipv4Addr::new(198, 19, 0, 11 + i as u8),
                in_service,
                tunnel_ids: vec![(100 * (i as u16 + 1), 100 * (i as u16 + 1) + 99)],
            })
            .collect()
    }

    fn ack(master: &str, report_sequence: u64, view: Vec<ViewEntry>) -> Vec<u8> {
        cluster::seal_ack(
            &ReportAck {
                master: master.into(),
                sequence: report_sequence,
                report_sequence,
                view,
            },
            KEY,
        )
    }

    /// A simulated cluster: one watch per endpoint, reports every interval, acked with the same
    /// view by the master while it is alive, and by an endpoint that took over once one has.
    struct Sim {
        watches: Vec<Watch>,
        sequence: u64,
    }

    impl Sim {
        fn new(names: &[&str]) -> Sim {
            Sim {
                watches: names
                    .iter()
                    .map(|n| Watch::new(WatchConfig::new(*n, KEY, INTERVAL)))
                    .collect(),
                sequence: 1_000,
            }
        }

        /// Runs from `from` to `to` (ms) in 10 ms steps; `master` acks while `alive(t)`; a
        /// watch whose claim is ordered gets `outcome(endpoint)`. Returns the claims in order:
        /// (time ms, endpoint index, rank).
        fn run(
            &mut self,
            from: u64,
            to: u64,
            master: &str,
            alive: impl Fn(u64) -> bool,
            view: &[(&str, bool)],
            outcome: impl Fn(usize) -> ClaimOutcome,
        ) -> Vec<(u64, usize, usize)> {
            let mut claims = Vec::new();
            let mut t = from;
            while t <= to {
                let now = at(t);
                if t.is_multiple_of(500) {
                    let acker = if alive(t) {
                        Some(master.to_string())
                    } else {
                        self.watches
                            .iter()
                            .find(|w| w.state() == WatchState::Master)
                            .map(|w| w.config().name.clone())
                    };
                    for w in &mut self.watches {
                        self.sequence += 1;
                        w.report_sent(now, self.sequence);
                        if let Some(acker) = &acker {
                            let bytes = ack(acker, self.sequence, self::view(view));
                            assert_eq!(w.handle_ack(now, &bytes), AckOutcome::Accepted);
                        }
                    }
                }
                for (i, w) in self.watches.iter_mut().enumerate() {
                    if w.poll_timeout().is_some_and(|d| d <= now) {
                        w.handle_timeout(now);
                    }
                    if let Some(Order::Claim { rank, .. }) = w.poll_order() {
                        claims.push((t, i, rank));
                        w.claim_outcome(now, &outcome(i));
                    }
                }
                t += 10;
            }
            claims
        }
    }

    const THREE: &[(&str, bool)] = &[("te1", true), ("te2", true), ("te3", true)];

    #[test]
    fn rank_zero_claims_after_three_silent_intervals_and_only_it() {
        let mut sim = Sim::new(&["te1", "te2", "te3"]);
        // The master dies just after its ack at 2000 ms; te1 claims, and from then on it acks
        // (its reports and everyone's reach it), so te2 and te3 never do.
        let claims = sim.run(
            0,
            2000,
            "master",
            |_| true,
            THREE,
            |_| ClaimOutcome::Claimed,
        );
        assert!(claims.is_empty());
        let claims = sim.run(
            2010,
            3500,
            "master",
            |_| false,
            THREE,
            |_| ClaimOutcome::Claimed,
        );
        assert_eq!(claims, [(3500, 0, 0)]);
        assert_eq!(sim.watches[0].state(), WatchState::Master);
        let later = sim.run(
            3510,
            10_000,
            "master",
            |_| false,
            THREE,
            |_| ClaimOutcome::Claimed,
        );
        assert!(later.is_empty(), "{later:?}");
        assert_eq!(sim.watches[1].status().master.as_deref(), Some("te1"));
        assert_eq!(sim.watches[1].status().master_changes, 1);
        assert_eq!(sim.watches[1].status().silences, 0);
    }

    #[test]
    fn higher_ranks_act_only_when_the_lower_ones_stay_silent() {
        let mut sim = Sim::new(&["te1", "te2", "te3"]);
        sim.run(
            0,
            2000,
            "master",
            |_| true,
            THREE,
            |_| ClaimOutcome::Claimed,
        );
        // te1 cannot claim (its claim fails: say, its raw socket is refused): te2 claims two
        // intervals after te1's turn, and once it acks, neither te1 nor te3 claims again.
        let claims = sim.run(
            2010,
            6000,
            "master",
            |_| false,
            THREE,
            |i| {
                if i == 0 {
                    ClaimOutcome::Failed { error: "no".into() }
                } else {
                    ClaimOutcome::Claimed
                }
            },
        );
        assert_eq!(claims, [(3500, 0, 0), (4500, 1, 1)]);
        assert_eq!(sim.watches[2].status().master.as_deref(), Some("te2"));
        assert_eq!(sim.watches[0].status().claims_failed, 1);
    }

    #[test]
    fn a_claim_that_finds_the_address_held_stands_by() {
        let mut sim = Sim::new(&["te1", "te2"]);
        let two = &[("te1", true), ("te2", true)];
        sim.run(0, 1000, "master", |_| true, two, |_| ClaimOutcome::Claimed);
        // Acks lost, but the master answers the ARP probe: te1 stands by, and claims again
        // only after another full window of silence.
        let claims = sim.run(
            1010,
            4200,
            "master",
            |_| false,
            two,
            |_| ClaimOutcome::Held {
                by: "02:00:00:00:00:01".into(),
            },
        );
        assert_eq!(claims[0], (2500, 0, 0));
        assert_eq!(claims[1], (3500, 1, 1));
        assert_eq!(claims[2], (4000, 0, 0));
        let status = sim.watches[0].status();
        assert_eq!(status.state, Some(WatchState::Watching));
        assert_eq!(status.claims_held, 2);
        assert_eq!(status.takeovers, 0);
    }

    #[test]
    fn not_in_service_or_never_acked_never_claims() {
        let mut sim = Sim::new(&["te1", "te2", "te3"]);
        let draining_te1 = &[("te1", false), ("te2", true), ("te3", true)];
        sim.run(
            0,
            1000,
            "master",
            |_| true,
            draining_te1,
            |_| ClaimOutcome::Claimed,
        );
        assert_eq!(sim.watches[0].rank(), None);
        assert_eq!(sim.watches[1].rank(), Some(0));
        let claims = sim.run(
            1010,
            10_000,
            "master",
            |_| false,
            draining_te1,
            |_| ClaimOutcome::Claimed,
        );
        // te2 is first among those in service; te1 (draining) never claims.
        assert_eq!(claims, [(2500, 1, 0)]);

        let mut lonely = Watch::new(WatchConfig::new("te1", KEY, INTERVAL));
        for t in 0..100 {
            lonely.report_sent(at(t * 500), t);
            lonely.handle_timeout(at(t * 500));
        }
        assert_eq!(lonely.state(), WatchState::Unarmed);
        assert_eq!(lonely.poll_order(), None);
    }

    #[test]
    fn forged_stale_and_foreign_acks_change_nothing() {
        let mut w = Watch::new(WatchConfig::new("te1", KEY, INTERVAL));
        w.report_sent(at(0), 10);
        let good = ack("master", 10, view(THREE));
        let forged = cluster::seal_ack(
            &ReportAck {
                master: "evil".into(),
                sequence: 1,
                report_sequence: 10,
                view: view(THREE),
            },
            b"not the key",
        );
        assert_eq!(w.handle_ack(at(1), &forged), AckOutcome::Forged);
        assert_eq!(w.handle_ack(at(1), b"L2TP?"), AckOutcome::Malformed);
        // An ack for a report never sent.
        assert_eq!(
            w.handle_ack(at(1), &ack("master", 11, view(THREE))),
            AckOutcome::Stale
        );
        assert_eq!(w.state(), WatchState::Unarmed);
        assert_eq!(w.handle_ack(at(2), &good), AckOutcome::Accepted);
        assert_eq!(w.state(), WatchState::Watching);
        // The same ack replayed long after its report stops counting: the master stays dead.
        let deadline = w.poll_timeout().unwrap();
        assert_eq!(deadline, at(2) + INTERVAL * 3);
        assert_eq!(w.handle_ack(at(5_000), &good), AckOutcome::Stale);
        w.handle_timeout(at(5_000));
        assert!(matches!(w.poll_order(), Some(Order::Claim { rank: 0, .. })));
        let status = w.status();
        assert_eq!(
            (status.acks, status.acks_forged, status.acks_malformed),
            (1, 1, 1)
        );
        assert_eq!(status.acks_stale, 2);
    }

    #[test]
    fn patience_grows_with_rank() {
        let config = WatchConfig::new("te1", KEY, Duration::from_secs(1));
        assert_eq!(config.patience(0), Duration::from_secs(3));
        assert_eq!(config.patience(1), Duration::from_secs(5));
        assert_eq!(config.patience(239), Duration::from_secs(481));
        assert_eq!(
            config.patience(usize::MAX),
            Duration::from_secs(1) * u32::MAX
        );
    }
}
