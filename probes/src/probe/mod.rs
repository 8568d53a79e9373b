//! Conformance probes: point them at any LNS (or LNS cluster) and get a verdict per rule, with
//! the exchange as evidence and a pcap per probe.
//!
//! A probe is a scripted initiator ([`script::Ctl`]) that sends exactly what the rule needs,
//! correct or not, and judges the answer. Probes run one after another, each on fresh sockets,
//! so that one probe's wreckage cannot decide the next one's verdict. Each names the RFC 2661
//! section (or patent passage) it checks, what it sends and what it expects.

pub mod catalog;
pub mod report;
pub mod script;

use std::cell::RefCell;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use l2tp::capture::{CaptureWriter, Linktype};
use serde::Serialize;

/// What is probed, and how.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddrV4,
    /// The tunnel secret the target was configured with (Challenge probes need it).
    pub secret: Option<Vec<u8>>,
    /// The target is a cluster (the patent's master in front of endpoints): the cluster probes
    /// run, and an SCCRP from another address than the one dialled is expected.
    pub cluster: bool,
    /// Our source address (0.0.0.0: the kernel picks).
    pub bind: Ipv4Addr,
    /// How long to wait for an answer that should come at once.
    pub reply_timeout: Duration,
    /// Live tunnels for the Tunnel ID uniqueness probe.
    pub live_tunnels: usize,
    /// Our Host Name AVP.
    pub host_name: String,
}

impl Target {
    pub fn new(addr: SocketAddrV4) -> Target {
        Target {
            addr,
            secret: None,
            cluster: false,
            bind: Ipv4Addr::UNSPECIFIED,
            reply_timeout: Duration::from_secs(2),
            live_tunnels: 5000,
            host_name: "l2tpkit-probe".to_string(),
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

    pub fn reason(&self) -> Option<&str> {
        match self {
            Verdict::Pass => None,
            Verdict::Fail(why) | Verdict::NotApplicable(why) | Verdict::Inconclusive(why) => {
                Some(why)
            }
        }
    }
}

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
    pub run: fn(&mut Ctx) -> Verdict,
}

/// What one run of one probe saw: the lines of its exchange and its capture.
#[derive(Default)]
pub struct Log {
    pub lines: Vec<String>,
    pcap: Option<CaptureWriter>,
    start: Option<Instant>,
}

impl Log {
    fn elapsed_ms(&mut self) -> f64 {
        let start = *self.start.get_or_insert_with(Instant::now);
        start.elapsed().as_secs_f64() * 1000.0
    }

    /// One line of evidence, stamped with milliseconds since the probe began.
    pub fn note(&mut self, line: impl AsRef<str>) {
        let ms = self.elapsed_ms();
        self.lines.push(format!("{ms:>9.1} ms  {}", line.as_ref()));
    }

    /// A whole IPv4 packet as it was crafted (bad checksums and all).
    pub fn capture_ip(&mut self, packet: &[u8]) {
        if let Some(pcap) = self.pcap.as_mut() {
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            if pcap.write_raw(wall, packet).is_err() {
                self.pcap = None;
                self.lines
                    .push("(pcap write failed; capture stopped)".into());
            }
        }
    }

    pub fn capture(&mut self, src: SocketAddrV4, dst: SocketAddrV4, bytes: &[u8]) {
        if let Some(pcap) = self.pcap.as_mut() {
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            if pcap.write_udp(wall, src, dst, bytes).is_err() {
                // A full disk must not change the verdict; the evidence says so instead.
                self.pcap = None;
                self.lines
                    .push("(pcap write failed; capture stopped)".into());
            }
        }
    }
}

/// What a probe has to work with: the target, and sockets whose traffic lands in its log.
pub struct Ctx<'a> {
    pub target: &'a Target,
    log: Rc<RefCell<Log>>,
}

impl<'a> Ctx<'a> {
    /// A scripted initiator on a fresh socket.
    pub fn ctl(&self) -> Result<script::Ctl, Verdict> {
        script::Ctl::open(self.target, Rc::clone(&self.log))
            .map_err(|e| Verdict::Inconclusive(format!("opening a UDP socket: {e}")))
    }

    /// A scripted initiator on a fresh socket, for a target changed by the probe (another
    /// source address, say).
    pub fn ctl_for(&self, target: &Target) -> Result<script::Ctl, Verdict> {
        script::Ctl::open(target, Rc::clone(&self.log))
            .map_err(|e| Verdict::Inconclusive(format!("opening a UDP socket: {e}")))
    }

    /// A line of evidence of the probe's own (a judgement, a count).
    pub fn note(&self, line: impl AsRef<str>) {
        self.log.borrow_mut().note(line);
    }
}

/// One probe's result, as the table, JSON and JUnit show it.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    pub name: &'static str,
    pub reference: &'static str,
    pub sends: &'static str,
    pub expects: &'static str,
    pub verdict: VerdictKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub evidence: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcap: Option<PathBuf>,
    pub duration_ms: f64,
}

/// Runs one probe, with its log going to `pcap` when given. A probe that panics is reported
/// as inconclusive rather than taking the run down.
pub fn run_one(probe: &Probe, target: &Target, pcap: Option<PathBuf>) -> ProbeResult {
    let mut log = Log::default();
    let mut pcap_note = None;
    if let Some(path) = &pcap {
        match CaptureWriter::create(path, Linktype::RAW) {
            Ok(writer) => log.pcap = Some(writer),
            Err(e) => pcap_note = Some(format!("(no pcap: {e})")),
        }
    }
    let log = Rc::new(RefCell::new(log));
    if let Some(note) = pcap_note {
        log.borrow_mut().note(note);
    }
    let started = Instant::now();
    let verdict = if probe.scope == Scope::Cluster && !target.cluster {
        Verdict::NotApplicable("a cluster probe: run with --cluster against a cluster".into())
    } else {
        let mut ctx = Ctx {
            target,
            log: Rc::clone(&log),
        };
        let run = probe.run;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&mut ctx))) {
            Ok(verdict) => verdict,
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
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut log = log.borrow_mut();
    let wrote = match log.pcap.take() {
        Some(mut writer) => writer.flush().is_ok(),
        None => false,
    };
    ProbeResult {
        name: probe.name,
        reference: probe.reference,
        sends: probe.sends,
        expects: probe.expects,
        verdict: verdict.kind(),
        reason: verdict.reason().map(str::to_string),
        evidence: std::mem::take(&mut log.lines),
        pcap: pcap.filter(|_| wrote),
        duration_ms,
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
    let log = Rc::new(RefCell::new(Log::default()));
    let Ok(mut ctl) = script::Ctl::open(target, log) else {
        return false;
    };
    ctl.our_tid = ctl.fresh_id();
    let avps = ctl.sccrq_avps();
    match ctl.sccrq_with(avps) {
        Ok(Some(reply)) => {
            if reply.message_type() == Some(l2tp::wire::MessageType::Sccrp) {
                let _ = ctl.close();
            }
            true
        }
        _ => false,
    }
}
