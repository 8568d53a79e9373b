//! What a running load driver shows while it runs, and the knobs a watcher may turn.
//!
//! The driver (the LAC tasks) publishes a [`LiveSnapshot`] about ten times a second; the
//! watchers (the TUI, the stderr progress line, the per-second CSV) read the latest one. Nothing
//! here sits on the packet path: publishing is one short lock per publish, and the controls are
//! atomics the driver reads when it paces its next setup.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// Where a load run is, ordered from least to most advanced: the run's phase is the least
/// advanced of its initiators'. Serialized (JSON, CSV) as the words it always had.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum RunPhase {
    /// No initiator has reported yet (an empty string in JSON, as before the first snapshot).
    #[default]
    #[serde(rename = "")]
    Starting,
    /// Setups are paced below the target rate while it ramps up.
    #[serde(rename = "ramping")]
    Ramping,
    #[serde(rename = "connecting")]
    Connecting,
    #[serde(rename = "holding")]
    Holding,
    #[serde(rename = "tearing down")]
    TearingDown,
    #[serde(rename = "done")]
    Done,
}

impl RunPhase {
    /// The word people read (the TUI's header, the progress line).
    pub fn as_str(self) -> &'static str {
        match self {
            RunPhase::Starting => "starting",
            RunPhase::Ramping => "ramping",
            RunPhase::Connecting => "connecting",
            RunPhase::Holding => "holding",
            RunPhase::TearingDown => "tearing down",
            RunPhase::Done => "done",
        }
    }
}

impl std::fmt::Display for RunPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Latency percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// One LNS as the initiators see it: keyed by the SCCRP's source address, or by its Host Name
/// AVP when a NAT hides the endpoints behind one address.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct EndpointLive {
    /// Host Name AVP of its SCCRPs, or the SCCRP's source address.
    pub key: String,
    /// The SCCRP's source address (in FIG 2 the NAT's global address for every endpoint).
    pub address: String,
    /// Tunnels up right now.
    pub tunnels: u64,
    /// Sessions up right now.
    pub sessions: u64,
    /// Tunnels established with it since the start.
    pub tunnels_total: u64,
    /// Tunnel setups per second, oldest first, one entry per whole second of the run (the
    /// last 120 at most).
    pub setups_per_second: Vec<u64>,
}

/// The whole run at one moment.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LiveSnapshot {
    pub elapsed_s: f64,
    pub phase: RunPhase,
    pub paused: bool,
    /// Tunnel setups per second the driver aims at (0: as fast as the window allows).
    pub target_rate: f64,
    pub tunnels_requested: u64,
    /// SCCRQs sent, first transmissions only.
    pub tunnels_started: u64,
    /// SCCRQs without an answer yet.
    pub outstanding: u64,
    pub tunnels_up: u64,
    pub tunnels_established: u64,
    pub tunnels_failed: u64,
    pub sessions_requested: u64,
    pub sessions_up: u64,
    pub sessions_established: u64,
    pub sessions_failed: u64,
    /// Control messages sent again (§5.8), ours.
    pub retransmissions: u64,
    /// Replies to our SCCRQs from other addresses than the target's, dropped (no
    /// `--any-source`), and those addresses.
    pub replies_elsewhere: u64,
    pub replies_elsewhere_from: Vec<String>,
    pub echo_sent: u64,
    pub echo_answered: u64,
    /// In key order.
    pub endpoints: Vec<EndpointLive>,
    pub sccrq_to_sccrp: Percentiles,
    pub tunnel_setup: Percentiles,
    pub session_setup: Percentiles,
    pub echo_rtt: Percentiles,
    /// "StopCCN 2/0 …", "CDN 4/0 …", "timeout": how many of each.
    pub failures: BTreeMap<String, u64>,
    /// The subscribers' PPP (all zero with `--ppp off`).
    pub ppp: PppLive,
    /// ICMP echo traffic in the sessions (all zero without `--traffic-rate`).
    pub traffic: TrafficLive,
}

/// The subscribers' PPP at one moment.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PppLive {
    /// Live subscribers negotiating LCP.
    pub establish: u64,
    /// Authenticating (PAP or CHAP).
    pub authenticate: u64,
    /// Negotiating IPCP (and IPv6CP).
    pub network: u64,
    /// Every NCP opened.
    pub ip_up: u64,
    /// Subscribers that reached IP up since the start.
    pub ip_up_total: u64,
    /// Sessions failed for a PPP reason.
    pub failures: u64,
    /// ICCN sent → LCP opened.
    pub lcp_opened: Percentiles,
    /// LCP opened → authenticated.
    pub authentication: Percentiles,
    /// Authenticated → IPCP opened.
    pub ipcp_opened: Percentiles,
    /// ICRQ sent → every NCP opened.
    pub icrq_to_ip_up: Percentiles,
}

/// ICMP echo traffic in the sessions, so far.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TrafficLive {
    /// Echo Requests per second per session (0: no traffic).
    pub rate: f64,
    pub sent: u64,
    pub received: u64,
    /// Given up (unanswered past their grace); those still within it are not counted.
    pub lost: u64,
    pub loss_pct: f64,
    pub rtt: Percentiles,
}

/// Knobs a watcher turns and the driver obeys.
#[derive(Debug, Default)]
pub struct LiveControl {
    paused: AtomicBool,
    /// Target setups per second × 1000 (0: unpaced).
    rate_milli: AtomicU64,
    stop: AtomicBool,
}

impl LiveControl {
    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }
    /// Setups per second; 0 means unpaced.
    pub fn rate(&self) -> f64 {
        self.rate_milli.load(Ordering::Relaxed) as f64 / 1000.0
    }
    pub fn set_rate(&self, rate: f64) {
        let milli = if rate.is_finite() && rate > 0.0 {
            (rate * 1000.0).min(u64::MAX as f64) as u64
        } else {
            0
        };
        self.rate_milli.store(milli, Ordering::Relaxed);
    }
    /// Ask the driver to stop early and tear down cleanly.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// The driver's side and the watchers' side of one run; clones share everything.
#[derive(Debug, Clone, Default)]
pub struct Live {
    snapshot: Arc<Mutex<LiveSnapshot>>,
    pub control: Arc<LiveControl>,
}

impl Live {
    pub fn new(rate: f64) -> Live {
        let live = Live::default();
        live.control.set_rate(rate);
        live
    }

    pub fn publish(&self, snapshot: LiveSnapshot) {
        // A watcher that panicked while holding the lock leaves the data intact.
        let mut slot = self.snapshot.lock().unwrap_or_else(|e| e.into_inner());
        *slot = snapshot;
    }

    pub fn latest(&self) -> LiveSnapshot {
        self.snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_phases_are_ordered_and_keep_their_words() {
        let phases = [
            RunPhase::Starting,
            RunPhase::Ramping,
            RunPhase::Connecting,
            RunPhase::Holding,
            RunPhase::TearingDown,
            RunPhase::Done,
        ];
        assert!(phases.windows(2).all(|w| w[0] < w[1]));
        let words: Vec<String> = phases
            .iter()
            .map(|p| serde_json::to_string(p).unwrap())
            .collect();
        assert_eq!(
            words,
            [
                "\"\"",
                "\"ramping\"",
                "\"connecting\"",
                "\"holding\"",
                "\"tearing down\"",
                "\"done\""
            ]
        );
        assert_eq!(RunPhase::default(), RunPhase::Starting);
        assert_eq!(format!("{:<9}|", RunPhase::Done), "done     |");
    }
}
