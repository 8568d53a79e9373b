//! What the sequence check and the RFC rules share: which sequence tunnels are held to, the
//! observations and roles of the whole capture, and when two sightings are one packet.

use std::time::Duration;

use super::observation::Observation;
use super::report::{Coverage, Deviation, Rule};
use super::roles::Roles;
use super::tunnels::Entry;

/// Which sequence to hold tunnels to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sequence {
    /// FIG 3 or FIG 5, per tunnel, from the addresses its SCCRP came from.
    #[default]
    Auto,
    Fig3,
    Fig5,
}

/// How long after one sighting of a message another sighting of it (same type and Ns) counts
/// as the same packet seen past a translator rather than a retransmission. RFC 2661 suggests a
/// first retransmission timeout of one second.
pub(crate) const FORWARD_WINDOW: Duration = Duration::from_millis(500);

/// What the whole check shares.
pub(crate) struct Context<'a> {
    pub observations: &'a [Observation],
    pub roles: &'a Roles,
    pub coverage: Coverage,
    /// The first observation's time: report times count from it.
    pub start: Duration,
    pub sequence: Sequence,
}

impl Context<'_> {
    pub fn obs(&self, entry: Entry) -> &Observation {
        &self.observations[entry.obs]
    }

    pub fn seconds(&self, time: Duration) -> f64 {
        time.saturating_sub(self.start).as_secs_f64()
    }

    /// A deviation about one observation.
    pub fn deviation(
        &self,
        step: Option<u16>,
        rule: Rule,
        at: Option<&Observation>,
        text: String,
        expected: String,
        observed: String,
    ) -> Deviation {
        Deviation {
            step,
            rule,
            expected,
            observed,
            text,
            time: at.map(|o| self.seconds(o.time)),
            origin: at.and_then(|o| o.origin),
        }
    }
}
