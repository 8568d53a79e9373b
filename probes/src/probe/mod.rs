//! Conformance probes: point them at any LNS (or LNS cluster) and get a verdict per rule, with
//! the exchange as evidence and a pcap per probe.
//!
//! A probe is a scripted initiator ([`script::Ctl`]) that sends exactly what the rule needs,
//! correct or not, and judges the answer. Probes run one after another, each on fresh sockets,
//! so that one probe's wreckage cannot decide the next one's verdict. Each names the RFC 2661
//! section (or patent passage) it checks, what it sends and what it expects.
//!
//! The sockets come from a [`transport::Network`]: real UDP ([`run_one`]) or the simulator of
//! `l2tp::sim` ([`run_one_on`] with a [`transport::SimNetwork`]).

pub mod catalog;
pub mod report;
pub mod runner;
pub mod script;
pub mod transport;

use std::cell::RefCell;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use l2tp::capture::{CaptureWriter, Linktype};
use l2tp::time::Instant;
use serde::Serialize;

use transport::{Network, UdpNetwork};

/// What is probed, and how.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddrV4,
    /// The tunnel secret the target was configured with (Challenge probes need it).
    pub secret: Option<Vec<u8>>,
    /// The target is a cluster (the patent's master in front of endpoints): the cluster probes
    /// run, and an SCCRP from another address than the one dialled is expected.
    pub cluster: bool,
    /// Our source address and port (0.0.0.0: the kernel picks the address; port 0: any free
    /// one). With a fixed port, a probe that holds several sockets at once takes the further
    /// ones from the next addresses up, same port ([`transport::Network::open`]).
    pub bind: SocketAddrV4,
    /// How long to wait for an answer that should come at once.
    pub reply_timeout: Duration,
    /// Live tunnels for the Tunnel ID uniqueness probe.
    pub live_tunnels: usize,
    /// Our Host Name AVP.
    pub host_name: String,
    /// The PPP subscriber the PPP probes authenticate as (a default one when `None`).
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    /// What one probe learnt of the target that the next ones need not learn again.
    pub learnt: Learnt,
}

/// Facts about the target that hold for the whole run, set by the first probe that finds
/// them: so that a family of probes against a target without PPP waits once, not per probe.
#[derive(Debug, Clone, Default)]
pub struct Learnt {
    /// Why the target runs no PPP on its sessions (no LCP Configure-Request came).
    pub no_ppp: std::sync::OnceLock<String>,
}

impl Target {
    pub fn new(addr: SocketAddrV4) -> Target {
        Target {
            addr,
            secret: None,
            cluster: false,
            bind: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            reply_timeout: Duration::from_secs(2),
            live_tunnels: 5000,
            host_name: "l2tpkit-probe".to_string(),
            username: None,
            password: None,
            learnt: Learnt::default(),
        }
    }
}

/// A probe's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// The target broke the rule: what it did instead.
    Fail(String),
    /// The rule does not apply to this target (why).
    NotApplicable(String),
    /// The probe could not tell (why): no answer where one was needed for the judgement, a
    /// socket error.
    Inconclusive(String),
}

impl Verdict {
    pub fn kind(&self) -> VerdictKind {
        match self {
            Verdict::Pass => VerdictKind::Pass,
            Verdict::Fail(_) => VerdictKind::Fail,
            Verdict::NotApplicable(_) => VerdictKind::NotApplicable,
            Verdict::Inconclusive(_) => VerdictKind::Inconclusive,
        }
    }

    /// "Could not tell" becomes "broke the rule", with `what` saying where: for a step the
    /// target itself must complete (an acknowledgement it owes us).
    pub fn blamed(self, what: impl FnOnce(&str) -> String) -> Verdict {
        match self {
            Verdict::Inconclusive(why) => Verdict::Fail(what(&why)),
            other => other,
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Verdict::Pass => None,
            Verdict::Fail(why) | Verdict::NotApplicable(why) | Verdict::Inconclusive(why) => {
                Some(why)
            }
        }
    }
}

/// One step of a probe. `Ok` carries on with the value; `Err` is the verdict that decides the
/// probe there and then (no SCCRP, so the rule cannot be judged; the target broke a rule on
/// the way), so `?` leaves the probe with it. A probe's body is a `Step<Verdict>`: the verdict it
/// reaches at its end, unless a step decided before.
pub type Step<T> = Result<T, Verdict>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictKind {
    Pass,
    Fail,
    NotApplicable,
    Inconclusive,
}

impl VerdictKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictKind::Pass => "pass",
            VerdictKind::Fail => "fail",
            VerdictKind::NotApplicable => "not-applicable",
            VerdictKind::Inconclusive => "inconclusive",
        }
    }
}

/// Which targets a probe is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Any LNS, clustered or not.
    Any,
    /// Only with `--cluster`.
    Cluster,
}

/// One rule and how to check it.
pub struct Probe {
    /// Stable, kebab-case: `--only` takes it, JSON and JUnit carry it.
    pub name: &'static str,
    /// "RFC 2661 §5.8" or "patent col. 7 l. 10".
    pub reference: &'static str,
    pub sends: &'static str,
    pub expects: &'static str,
    pub scope: Scope,
    pub run: fn(&mut Ctx) -> Step<Verdict>,
}

/// What one run of one probe saw: the lines of its exchange and its capture.
pub struct Log {
    pub lines: Vec<String>,
    /// Who sent the SCCRPs the probe got: "HOST NAME at ADDR". Against a cluster this names
    /// the endpoints whose behaviour a finding is about.
    answered_by: std::collections::BTreeSet<String>,
    pcap: Option<CaptureWriter>,
    /// When the probe began, and the wall clock then (pcap timestamps).
    start: Instant,
    wall_start: Duration,
}

impl Log {
    fn new(start: Instant, wall_start: Duration) -> Log {
        Log {
            lines: Vec::new(),
            answered_by: std::collections::BTreeSet::new(),
            pcap: None,
            start,
            wall_start,
        }
    }

    /// One line of evidence, stamped with milliseconds since the probe began.
    pub fn note(&mut self, now: Instant, line: impl AsRef<str>) {
        let ms = now.saturating_duration_since(self.start).as_secs_f64() * 1000.0;
        self.lines.push(format!("{ms:>9.1} ms  {}", line.as_ref()));
    }

    fn wall(&self, now: Instant) -> Duration {
        self.wall_start + now.saturating_duration_since(self.start)
    }

    /// A whole IPv4 packet as it was crafted (bad checksums and all).
    pub fn capture_ip(&mut self, now: Instant, packet: &[u8]) {
        let wall = self.wall(now);
        if let Some(pcap) = self.pcap.as_mut() {
            if pcap.write_raw(wall, packet).is_err() {
                self.pcap_failed();
            }
        }
    }

    pub fn capture(&mut self, now: Instant, src: SocketAddrV4, dst: SocketAddrV4, bytes: &[u8]) {
        let wall = self.wall(now);
        if let Some(pcap) = self.pcap.as_mut() {
            if pcap.write_udp(wall, src, dst, bytes).is_err() {
                self.pcap_failed();
            }
        }
    }

    /// An SCCRP came from `from`, with this Host Name AVP.
    pub fn answered_by(&mut self, from: SocketAddrV4, host_name: Option<&[u8]>) {
        let answerer = match host_name {
            Some(name) => format!("{} at {}", String::from_utf8_lossy(name), from.ip()),
            None => from.ip().to_string(),
        };
        self.answered_by.insert(answerer);
    }

    /// A full disk must not change the verdict; the evidence says so instead.
    fn pcap_failed(&mut self) {
        self.pcap = None;
        self.lines
            .push("(pcap write failed; capture stopped)".into());
    }
}

/// What a probe has to work with: the target, and sockets whose traffic lands in its log.
pub struct Ctx<'a> {
    pub target: &'a Target,
    network: &'a dyn Network,
    log: Rc<RefCell<Log>>,
}

impl<'a> Ctx<'a> {
    /// A scripted initiator on a fresh socket.
    pub fn ctl(&self) -> Step<script::Ctl> {
        self.ctl_for(self.target)
    }

    /// A scripted initiator on a fresh socket, for a target changed by the probe (another
    /// source address, say).
    pub fn ctl_for(&self, target: &Target) -> Step<script::Ctl> {
        script::Ctl::open(target, self.network, Rc::clone(&self.log))
            .map_err(|e| Verdict::Inconclusive(format!("opening a UDP socket: {e}")))
    }

    /// Where the probe's sockets come from (for a probe that drives many tunnels at once).
    pub fn network(&self) -> &dyn Network {
        self.network
    }

    /// A line of evidence of the probe's own (a judgement, a count).
    pub fn note(&self, line: impl AsRef<str>) {
        self.log.borrow_mut().note(self.network.now(), line);
    }

    /// An SCCRP came from `from` with this Host Name: the endpoint a finding is about.
    pub fn answered_by(&self, from: SocketAddrV4, host_name: Option<&[u8]>) {
        self.log.borrow_mut().answered_by(from, host_name);
    }

    /// Puts bytes the probe moved without a [`script::Ctl`] into its capture.
    pub fn capture(&self, src: SocketAddrV4, dst: SocketAddrV4, bytes: &[u8]) {
        self.log
            .borrow_mut()
            .capture(self.network.now(), src, dst, bytes);
    }
}

/// One probe's result, as the table, JSON and JUnit show it.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    pub name: &'static str,
    pub reference: &'static str,
    pub sends: &'static str,
    pub expects: &'static str,
    pub scope: Scope,
    pub verdict: VerdictKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub evidence: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcap: Option<PathBuf>,
    pub duration_ms: f64,
    /// Who answered the probe's SCCRPs ("HOST NAME at ADDR"): against a cluster, the
    /// endpoints a finding is about.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub answered_by: Vec<String>,
}

/// Runs one probe on real UDP sockets, with its log going to `pcap` when given. A probe that
/// panics is reported as inconclusive rather than taking the run down.
pub fn run_one(probe: &Probe, target: &Target, pcap: Option<PathBuf>) -> ProbeResult {
    run_one_on(probe, target, &UdpNetwork::new(), pcap)
}

/// As [`run_one`], on the sockets of `network` (the simulator, say).
pub fn run_one_on(
    probe: &Probe,
    target: &Target,
    network: &dyn Network,
    pcap: Option<PathBuf>,
) -> ProbeResult {
    let started = network.now();
    let mut log = Log::new(started, network.wall(started));
    let mut pcap_note = None;
    if let Some(path) = &pcap {
        match CaptureWriter::create(path, Linktype::RAW) {
            Ok(writer) => log.pcap = Some(writer),
            Err(e) => pcap_note = Some(format!("(no pcap: {e})")),
        }
    }
    if let Some(note) = pcap_note {
        log.note(started, note);
    }
    let log = Rc::new(RefCell::new(log));
    let verdict = if probe.scope == Scope::Cluster && !target.cluster {
        Verdict::NotApplicable("a cluster probe: run with --cluster against a cluster".into())
    } else {
        let mut ctx = Ctx {
            target,
            network,
            log: Rc::clone(&log),
        };
        let run = probe.run;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&mut ctx))) {
            // Reached at the end, or decided by a step on the way: the verdict either way.
            Ok(Ok(verdict) | Err(verdict)) => verdict,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Verdict::Inconclusive(format!(
                    "the probe itself failed (a bug in l2tpkit): {what}"
                ))
            }
        }
    };
    let duration_ms = network
        .now()
        .saturating_duration_since(started)
        .as_secs_f64()
        * 1000.0;
    let mut log = log.borrow_mut();
    let wrote = match log.pcap.take() {
        Some(mut writer) => writer.flush().is_ok(),
        None => false,
    };
    ProbeResult {
        evidence: std::mem::take(&mut log.lines),
        answered_by: std::mem::take(&mut log.answered_by).into_iter().collect(),
        pcap: pcap.filter(|_| wrote),
        duration_ms,
        ..ProbeResult::of(probe, &verdict)
    }
}

impl ProbeResult {
    /// `probe` judged `verdict`, with no evidence, capture or time yet.
    fn of(probe: &Probe, verdict: &Verdict) -> ProbeResult {
        ProbeResult {
            name: probe.name,
            reference: probe.reference,
            sends: probe.sends,
            expects: probe.expects,
            scope: probe.scope,
            verdict: verdict.kind(),
            reason: verdict.reason().map(str::to_string),
            evidence: Vec::new(),
            answered_by: Vec::new(),
            pcap: None,
            duration_ms: 0.0,
        }
    }
}

/// Probes chosen by name (`--only`), in catalog order; all of them when `only` is empty. The
/// error lists the unknown names.
pub fn select<'p>(all: &[&'p Probe], only: &[String]) -> Result<Vec<&'p Probe>, Vec<String>> {
    let unknown: Vec<String> = only
        .iter()
        .filter(|n| !all.iter().any(|p| p.name == n.as_str()))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(unknown);
    }
    Ok(all
        .iter()
        .copied()
        .filter(|p| only.is_empty() || only.iter().any(|n| n == p.name))
        .collect())
}

/// Whether the target answers an SCCRQ at all (with anything); the tunnel it opens is closed
/// at once. Probing a silent target would only produce a column of "inconclusive".
pub fn reachable(target: &Target) -> bool {
    runner::answers(target, &UdpNetwork::new())
}
