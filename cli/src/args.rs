//! What the commands' flags parse into, once, by clap: addresses, durations, rates and the
//! dispatch policy. A bad value is refused by clap, whose error names the flag; `main` prints
//! it on one line as `--flag "value": why`.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use reference::claim::ClaimAddress;
use reference::master::Policy;

/// `--policy`: the master's dispatch policy (patent: least-load by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyName {
    #[default]
    LeastLoad,
    RoundRobin,
    LeakyBucket,
}

/// The leaky bucket's refill rate and size when no flag says otherwise.
pub const DEFAULT_BUCKET_RATE: f64 = 100.0;
pub const DEFAULT_BUCKET_BURST: u32 = 20;

impl PolicyName {
    /// The policy, with a leaky bucket of `rate` per second holding `burst` (both checked by
    /// their flags' parsers, [`rate`] and [`burst`]).
    pub fn with_bucket(self, rate: f64, burst: u32) -> Policy {
        match self {
            PolicyName::LeastLoad => Policy::LeastLoad,
            PolicyName::RoundRobin => Policy::RoundRobin,
            PolicyName::LeakyBucket => Policy::LeakyBucket { rate, burst },
        }
    }
}

impl From<PolicyName> for Policy {
    /// The leaky bucket at its flags' defaults.
    fn from(name: PolicyName) -> Policy {
        name.with_bucket(DEFAULT_BUCKET_RATE, DEFAULT_BUCKET_BURST)
    }
}

/// An IPv4 address.
pub fn ipv4(value: &str) -> Result<Ipv4Addr, String> {
    value
        .parse()
        .map_err(|_| "expected an IPv4 address".to_string())
}

/// `ADDR` or `ADDR:PORT` (IPv4), port `PORT` when none is given.
pub fn addr_port<const PORT: u16>(value: &str) -> Result<SocketAddrV4, String> {
    if let Ok(addr) = value.parse::<SocketAddrV4>() {
        return Ok(addr);
    }
    value
        .parse::<Ipv4Addr>()
        .map(|ip| SocketAddrV4::new(ip, PORT))
        .map_err(|_| "expected an IPv4 address, optionally with :PORT".to_string())
}

/// `ADDR` or `ADDR/LEN` (LEN 1-32): an address, and the prefix length a claim needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrPrefix {
    pub addr: Ipv4Addr,
    pub len: Option<u8>,
}

impl AddrPrefix {
    /// The claim of this address on `interface`; claiming needs the prefix length, which
    /// `flag`'s error says.
    pub fn claim(self, flag: &str, interface: &str) -> anyhow::Result<ClaimAddress> {
        let prefix_len = self.len.ok_or_else(|| {
            anyhow::anyhow!(
                "{flag} {:?}: claiming it needs ADDR/LEN",
                self.addr.to_string()
            )
        })?;
        Ok(ClaimAddress {
            interface: interface.to_string(),
            addr: self.addr,
            prefix_len,
        })
    }
}

pub fn addr_prefix(value: &str) -> Result<AddrPrefix, String> {
    match value.split_once('/') {
        None => Ok(AddrPrefix {
            addr: ipv4(value)?,
            len: None,
        }),
        Some((addr, len)) => {
            let len: u8 = len
                .parse()
                .ok()
                .filter(|l| (1..=32).contains(l))
                .ok_or_else(|| "prefix length must be 1-32".to_string())?;
            Ok(AddrPrefix {
                addr: ipv4(addr)?,
                len: Some(len),
            })
        }
    }
}

/// Seconds, fractions allowed ("1.5"), from 0 to one year.
pub fn seconds(value: &str) -> Result<Duration, String> {
    let bad = || "expected seconds between 0 and one year".to_string();
    let s: f64 = value.trim().parse().map_err(|_| bad())?;
    if !s.is_finite() || !(0.0..=31_536_000.0).contains(&s) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(s))
}

/// A parser of seconds from `min` to `max` (fractions allowed).
pub fn seconds_between(
    min: f64,
    max: f64,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |value| {
        number(value, min, max)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("expected seconds between {min} and {max}"))
    }
}

/// A parser of seconds above 0, at most `max`: a span that must pass.
pub fn positive_seconds(
    max: f64,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |value| {
        number(value, 0.0, max)
            .filter(|s| *s > 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("expected seconds above 0, at most {max}"))
    }
}

/// A parser of a number per second from 0 to `max`; `what` says what 0 means, if anything.
pub fn rate_upto(
    max: f64,
    what: &'static str,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    // Below one per 1000 s a period no longer fits a timer (1e-300 would be 1e300 s).
    const MIN_RATE: f64 = 0.001;
    move |value| {
        number(value, 0.0, max)
            .filter(|r| *r == 0.0 || *r >= MIN_RATE)
            .ok_or_else(|| format!("expected 0{what} or {MIN_RATE} to {max} per second"))
    }
}

/// `--traffic-rate`: 0 (off), or ICMP echoes per second per session within the LAC's bounds.
pub fn traffic_rate(value: &str) -> Result<f64, String> {
    use probes::lac::{MAX_TRAFFIC_RATE, MIN_TRAFFIC_RATE};
    number(value, 0.0, MAX_TRAFFIC_RATE)
        .filter(|r| *r == 0.0 || *r >= MIN_TRAFFIC_RATE)
        .ok_or_else(|| {
            format!(
                "expected 0 (off) or {MIN_TRAFFIC_RATE} to {MAX_TRAFFIC_RATE} echoes per second \
                 per session"
            )
        })
}

/// `value` as a finite number from `min` to `max`.
fn number(value: &str, min: f64, max: f64) -> Option<f64> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && (min..=max).contains(n))
}

/// A rate: a positive, finite number per second.
pub fn rate(value: &str) -> Result<f64, String> {
    number(value, 0.0, f64::MAX)
        .filter(|r| *r > 0.0)
        .ok_or_else(|| "expected a positive number per second".to_string())
}

/// `--max-retransmits`: at most 50 (with the 8 s cap, a cycle of over six minutes).
/// `--ppp off|lcp|auth|ip`: where a LAC session counts as up.
pub fn ppp_level(value: &str) -> Result<probes::lac::PppLevel, String> {
    value.parse()
}

/// `--auth pap|chap|auto`: what the LAC's subscribers agree to authenticate with.
pub fn auth_choice(value: &str) -> Result<probes::lac::AuthChoice, String> {
    value.parse()
}

/// `--username` / `--password`: at most 255 octets (a PAP length field), `{n}` counted as the
/// 10 digits of a session number.
pub fn ppp_credential(value: &str) -> Result<String, String> {
    let longest = value.len() + value.matches("{n}").count() * 7;
    if longest > 255 {
        return Err(format!("{longest} octets with {{n}} filled: at most 255"));
    }
    Ok(value.to_string())
}

pub fn max_retransmits(value: &str) -> Result<u32, String> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n <= 50)
        .ok_or_else(|| "expected 0 to 50".to_string())
}

/// A bucket's size: at least one token.
pub fn burst(value: &str) -> Result<u32, String> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|b| *b >= 1)
        .ok_or_else(|| "a bucket must hold at least one token".to_string())
}

/// clap's refusal of one flag's value as one line, `--flag "value": why`, a number bare
/// (`--flag 3: why`), as the commands' own checks print them; `None` for any other error
/// (usage, help, version), which clap prints.
pub fn one_line(err: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(err.kind(), ErrorKind::ValueValidation) {
        return None;
    }
    let text = |kind| match err.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    // "--target <TARGET>": the flag is its first word.
    let arg = text(ContextKind::InvalidArg)?;
    let flag = arg.split_whitespace().next()?;
    let value = text(ContextKind::InvalidValue)?;
    let why = std::error::Error::source(err)?.to_string();
    Some(if value.trim().parse::<f64>().is_ok() {
        format!("{flag} {value}: {why}")
    } else {
        format!("{flag} {value:?}: {why}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_take_a_default_port_and_a_prefix() {
        assert_eq!(
            addr_port::<1701>("127.0.0.2").unwrap(),
            "127.0.0.2:1701".parse().unwrap()
        );
        assert_eq!(
            addr_port::<1701>("127.0.0.2:99").unwrap(),
            "127.0.0.2:99".parse().unwrap()
        );
        assert!(addr_port::<1701>("lns.example").is_err());
        let p = addr_prefix("198.18.0.1/16").unwrap();
        assert_eq!((p.addr, p.len), ("198.18.0.1".parse().unwrap(), Some(16)));
        assert_eq!(addr_prefix("198.18.0.1").unwrap().len, None);
        for bad in ["198.18.0.1/0", "198.18.0.1/33", "198.18.0.1/x", "x/16"] {
            assert!(addr_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn claimed_addresses_need_a_prefix_length_and_name_their_flag() {
        let claim = addr_prefix("198.19.0.1/16")
            .unwrap()
            .claim("--takeover-lan", "te1l")
            .unwrap();
        assert_eq!(claim.to_string(), "198.19.0.1/16 on te1l");
        let err = addr_prefix("198.19.0.1")
            .unwrap()
            .claim("--takeover-lan", "te1l")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--takeover-lan") && err.contains("ADDR/LEN"),
            "{err}"
        );
    }

    #[test]
    fn durations_rates_and_bursts() {
        assert_eq!(seconds("1.5").unwrap(), Duration::from_millis(1500));
        for bad in ["-3", "nan", "inf", "1e9", "x"] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
        assert_eq!(rate("2.5").unwrap(), 2.5);
        for bad in ["0", "-1", "inf", "x"] {
            assert!(rate(bad).is_err(), "{bad}");
        }
        let hold = seconds_between(0.0, 3600.0);
        assert_eq!(hold("0").unwrap(), Duration::ZERO);
        assert!(hold("3601").is_err());
        let run = positive_seconds(86_400.0);
        assert_eq!(run("0.5").unwrap(), Duration::from_millis(500));
        assert!(run("0").is_err() && run("-1").is_err());
        let echo = rate_upto(1000.0, "");
        assert_eq!(echo("0").unwrap(), 0.0);
        assert!(echo("1e9").unwrap_err().contains("1000"));
        assert!(echo("1e-300").unwrap_err().contains("0.001"));
        assert_eq!(echo("0.001").unwrap(), 0.001);
        assert_eq!(max_retransmits("50").unwrap(), 50);
        assert!(max_retransmits("51").is_err());
        assert_eq!(burst("1").unwrap(), 1);
        assert!(burst("0").is_err());
    }

    #[test]
    fn policy_names_map_once() {
        assert_eq!(Policy::from(PolicyName::LeastLoad), Policy::LeastLoad);
        assert_eq!(Policy::from(PolicyName::RoundRobin), Policy::RoundRobin);
        assert_eq!(
            PolicyName::LeakyBucket.with_bucket(5.0, 2),
            Policy::LeakyBucket {
                rate: 5.0,
                burst: 2
            }
        );
    }
}

/// The flags the forwarding roles (master and NAT) share: a capture of what they forward, a
/// time limit, and their final status as JSON.
#[derive(Debug, clap::Args)]
pub struct ForwarderRun {
    /// Write every forwarded packet (after the rewrite) to this pcap.
    #[arg(long)]
    pub pcap: Option<PathBuf>,
    /// Stop after this many seconds; runs until Ctrl-C otherwise.
    #[arg(long, value_parser = seconds)]
    pub duration: Option<Duration>,
    /// Print the final status as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--dns A[,B]`: the DNS servers handed out in IPCP (RFC 1877), one or two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsServers(pub [Option<Ipv4Addr>; 2]);

pub fn dns_servers(value: &str) -> Result<DnsServers, String> {
    let bad = || "expected one or two IPv4 addresses, A[,B]".to_string();
    let mut servers = value.split(',').map(|a| a.trim().parse::<Ipv4Addr>());
    let first = servers.next().ok_or_else(bad)?.map_err(|_| bad())?;
    let second = servers.next().transpose().map_err(|_| bad())?;
    if servers.next().is_some() {
        return Err(bad());
    }
    Ok(DnsServers([Some(first), second]))
}
