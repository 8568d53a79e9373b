//! `--netem "loss 20% reorder 25% delay 10ms"`: the link impairment the lab puts on its public
//! segment, in tc-netem's words (the subset below) so that the flag reads as it would on a
//! machine whose kernel has `sch_netem`. This one's does not (CONFIG_NET_SCH_NETEM, and the
//! `gact` action too, are not built), so the lab's own switch applies it (see `impair`).
//!
//! What is understood, each keyword at most once, in any order:
//! - `delay TIME [JITTER]`: every IPv4 frame waits TIME (± JITTER, uniform) before it goes on;
//! - `loss [random] PERCENT`: each frame is dropped with that probability;
//! - `duplicate PERCENT`: each frame that survives goes twice with that probability;
//! - `reorder PERCENT`: with a delay, that share of frames go at once, ahead of the delayed
//!   ones (netem's meaning; without a delay there is nothing to overtake, so it is refused).
//!
//! TIME is a number with `us`, `ms` or `s`; PERCENT a number from 0 to 100 with `%`. Netem's
//! correlations and distributions are not supported and are refused by name.

use std::fmt;
use std::time::Duration;

/// A parsed `--netem` string.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Netem {
    /// Probability (0..=1) that a frame is dropped.
    pub loss: f64,
    /// Probability that a frame is sent twice.
    pub duplicate: f64,
    /// Probability that a frame skips the delay (and so overtakes delayed ones).
    pub reorder: f64,
    pub delay: Duration,
    pub jitter: Duration,
}

/// The longest delay taken: a lab link, not a satellite hop.
const MAX_DELAY: Duration = Duration::from_secs(10);

impl Netem {
    /// Whether it changes anything at all.
    pub fn is_noop(&self) -> bool {
        self.loss == 0.0 && self.duplicate == 0.0 && self.delay.is_zero()
    }
}

impl std::str::FromStr for Netem {
    type Err = String;

    /// The error says what was wrong, without the flag's name (the caller adds it).
    fn from_str(text: &str) -> Result<Netem, String> {
        let mut netem = Netem::default();
        let mut seen: Vec<&str> = Vec::new();
        let mut words = text.split_whitespace().peekable();
        if words.peek().is_none() {
            return Err("empty: expected e.g. \"loss 20% reorder 25% delay 10ms\"".into());
        }
        while let Some(word) = words.next() {
            let keyword = word.to_ascii_lowercase();
            if seen.contains(&keyword.as_str()) {
                return Err(format!("{word} given twice"));
            }
            let mut value = |what: &str| words.next().ok_or_else(|| format!("{word} needs {what}"));
            match keyword.as_str() {
                "delay" => {
                    netem.delay = time(value("a time such as 10ms")?)?;
                    if let Some(jitter) =
                        words.next_if(|w| w.starts_with(|c: char| c.is_ascii_digit()))
                    {
                        netem.jitter = time(jitter)?;
                    }
                    if netem.delay > MAX_DELAY || netem.jitter > MAX_DELAY {
                        return Err(format!("delay above {MAX_DELAY:?}"));
                    }
                    seen.push("delay");
                }
                "loss" => {
                    let mut given = value("a percentage such as 20%")?;
                    if given.eq_ignore_ascii_case("random") {
                        given = value("a percentage such as 20%")?;
                    }
                    netem.loss = percent(given)?;
                    seen.push("loss");
                }
                "duplicate" => {
                    netem.duplicate = percent(value("a percentage such as 1%")?)?;
                    seen.push("duplicate");
                }
                "reorder" => {
                    netem.reorder = percent(value("a percentage such as 25%")?)?;
                    seen.push("reorder");
                }
                "corrupt" | "rate" | "slot" | "limit" | "gap" | "distribution" => {
                    return Err(format!(
                        "{word} is not supported (delay, loss, duplicate and reorder are)"
                    ))
                }
                _ => {
                    return Err(format!(
                        "unknown word {word:?} (expected delay, loss, duplicate or reorder)"
                    ))
                }
            }
            // A percentage right after a value is netem's correlation, which we do not model.
            if words.peek().is_some_and(|w| w.ends_with('%')) {
                return Err(format!(
                    "{word}: correlations are not supported (one percentage per keyword)"
                ));
            }
        }
        if netem.reorder > 0.0 && netem.delay.is_zero() {
            return Err(
                "reorder needs a delay: reordered frames go at once, ahead of delayed ones".into(),
            );
        }
        Ok(netem)
    }
}

fn percent(text: &str) -> Result<f64, String> {
    let number = text
        .strip_suffix('%')
        .ok_or_else(|| format!("{text:?}: expected a percentage with %, such as 20%"))?;
    match number.parse::<f64>() {
        Ok(p) if p.is_finite() && (0.0..=100.0).contains(&p) => Ok(p / 100.0),
        _ => Err(format!("{text:?}: expected a percentage from 0% to 100%")),
    }
}

fn time(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "us" | "usec" => 1e-6,
        "ms" | "msec" => 1e-3,
        "s" | "sec" | "secs" => 1.0,
        _ => {
            return Err(format!(
                "{text:?}: expected a time with us, ms or s, such as 10ms"
            ))
        }
    };
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 && n * scale <= MAX_DELAY.as_secs_f64() => {
            Ok(Duration::from_secs_f64(n * scale))
        }
        _ => Err(format!("{text:?}: expected a time from 0 to {MAX_DELAY:?}")),
    }
}

fn show_time(f: &mut fmt::Formatter<'_>, d: Duration) -> fmt::Result {
    let us = d.as_micros();
    if us.is_multiple_of(1000) {
        write!(f, "{}ms", us / 1000)
    } else {
        write!(f, "{us}us")
    }
}

/// Netem's own spelling, normalised (keywords in a fixed order).
impl fmt::Display for Netem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = 0;
        let mut sep = |f: &mut fmt::Formatter<'_>| {
            parts += 1;
            if parts > 1 {
                f.write_str(" ")
            } else {
                Ok(())
            }
        };
        if !self.delay.is_zero() {
            sep(f)?;
            f.write_str("delay ")?;
            show_time(f, self.delay)?;
            if !self.jitter.is_zero() {
                f.write_str(" ")?;
                show_time(f, self.jitter)?;
            }
        }
        for (name, p) in [
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
        ] {
            if p > 0.0 {
                sep(f)?;
                // Four decimals, trailing zeros dropped: 0.07 shows as 7%, not 7.000000000000001%.
                let shown = format!("{:.4}", p * 100.0);
                let shown = shown.trim_end_matches('0').trim_end_matches('.');
                write!(f, "{name} {shown}%")?;
            }
        }
        if parts == 0 {
            f.write_str("none")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_s_string_and_its_normal_form() {
        let netem: Netem = "loss 20% reorder 25% delay 10ms".parse().unwrap();
        assert_eq!(
            netem,
            Netem {
                loss: 0.2,
                reorder: 0.25,
                delay: Duration::from_millis(10),
                ..Netem::default()
            }
        );
        assert_eq!(netem.to_string(), "delay 10ms loss 20% reorder 25%");
        let again: Netem = netem.to_string().parse().unwrap();
        assert_eq!(again, netem);
        let jittery: Netem = "delay 5ms 1500us loss random 0.5% duplicate 1%"
            .parse()
            .unwrap();
        assert_eq!(jittery.jitter, Duration::from_micros(1500));
        assert_eq!(jittery.loss, 0.005);
        assert_eq!(
            jittery.to_string(),
            "delay 5ms 1500us loss 0.5% duplicate 1%"
        );
        let odd: Netem = "loss 7% duplicate 0.01%".parse().unwrap();
        assert_eq!(odd.to_string(), "loss 7% duplicate 0.01%");
    }

    #[test]
    fn mistakes_are_named() {
        for (text, needle) in [
            ("", "empty"),
            ("reorder 25%", "reorder needs a delay"),
            ("loss 20", "with %"),
            ("loss 120%", "0% to 100%"),
            ("delay 10", "us, ms or s"),
            ("delay 20s", "from 0 to"),
            ("loss 1% loss 2%", "twice"),
            ("loss 20% 25%", "correlations"),
            ("delay 10ms 1ms 25%", "correlations"),
            ("corrupt 1%", "not supported"),
            ("lose 1%", "unknown word"),
            ("delay", "needs a time"),
        ] {
            let err = text.parse::<Netem>().unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
