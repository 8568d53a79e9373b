//! The PPP of many sessions at once, as a load generator or an LNS holds them: keyed by the
//! caller's session key, with one timer queue so that a wake-up touches only the sessions that
//! are due, and one queue of sessions with something to send.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::Hash;

use super::session::{PppEvent, PppSession, Received};
use crate::time::Instant;

#[derive(Debug)]
struct Entry {
    session: PppSession,
    /// The deadline queued for it in the timer heap, if any (older heap entries are stale).
    armed: Option<Instant>,
}

/// Sessions by key. Every call that may change a session queues its events and, when it may
/// have something to send, its key for [`PppTable::poll_transmit`].
#[derive(Debug)]
pub struct PppTable<K> {
    /// Boxed: a map keeps up to half its slots free, and a free slot of a session's size
    /// would cost as much as the session.
    sessions: HashMap<K, Box<Entry>>,
    timers: BinaryHeap<Reverse<(Instant, K)>>,
    /// Sessions that may have frames to send, in the order they were touched.
    touched: VecDeque<K>,
    events: VecDeque<(K, PppEvent)>,
}

impl<K> Default for PppTable<K> {
    fn default() -> Self {
        PppTable {
            sessions: HashMap::new(),
            timers: BinaryHeap::new(),
            touched: VecDeque::new(),
            events: VecDeque::new(),
        }
    }
}

impl<K: Copy + Eq + Hash + Ord> PppTable<K> {
    pub fn new() -> PppTable<K> {
        PppTable::default()
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn get(&self, key: K) -> Option<&PppSession> {
        self.sessions.get(&key).map(|e| &e.session)
    }

    pub fn keys(&self) -> impl Iterator<Item = K> + '_ {
        self.sessions.keys().copied()
    }

    /// Adds a session and starts it (its L2TP session is up). A session already under `key`
    /// is replaced.
    pub fn insert(&mut self, now: Instant, key: K, session: PppSession) {
        let entry = Box::new(Entry {
            session,
            armed: None,
        });
        self.sessions.insert(key, entry);
        self.with(key, |s| s.start(now));
    }

    /// Takes a session out (its L2TP session is gone); its remaining events are still queued.
    pub fn remove(&mut self, key: K) -> Option<PppSession> {
        self.sessions.remove(&key).map(|e| e.session)
    }

    /// Runs `f` on the session under `key` (close it, send an echo, …), then queues what it
    /// produced. `None` when there is no such session.
    pub fn with<R>(&mut self, key: K, f: impl FnOnce(&mut PppSession) -> R) -> Option<R> {
        let entry = self.sessions.get_mut(&key)?;
        let result = f(&mut entry.session);
        while let Some(event) = entry.session.poll_event() {
            self.events.push_back((key, event));
        }
        let due = entry.session.poll_timeout();
        if due.is_some() && due != entry.armed {
            entry.armed = due;
            if let Some(at) = due {
                self.timers.push(Reverse((at, key)));
            }
        }
        self.touched.push_back(key);
        Some(result)
    }

    /// One frame of the session under `key`; `None` when there is no such session.
    pub fn handle<'a>(&mut self, now: Instant, key: K, frame: &'a [u8]) -> Option<Received<'a>> {
        self.with(key, |s| s.handle(now, frame))
    }

    /// The earliest deadline of any session (possibly one that moved later since: waking
    /// early is harmless).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Runs every session whose deadline has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, key))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(entry) = self.sessions.get_mut(&key) else {
                continue;
            };
            if entry.armed != Some(at) {
                // Stale: the session re-armed for another time since.
                continue;
            }
            entry.armed = None;
            self.with(key, |s| s.handle_timeout(now));
        }
    }

    /// The next frame any session has to send, appended to `out`, and whose it is.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> Option<K> {
        while let Some(&key) = self.touched.front() {
            if let Some(entry) = self.sessions.get_mut(&key) {
                if entry.session.poll_transmit(out) {
                    return Some(key);
                }
            }
            self.touched.pop_front();
        }
        if self.touched.capacity() > 64 {
            self.touched.shrink_to(64);
        }
        None
    }

    pub fn poll_event(&mut self) -> Option<(K, PppEvent)> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::ppp::lcp::AuthSet;
    use crate::ppp::session::{Phase, SessionConfig};

    /// Two tables, one per side, many sessions each: frames go across by key, timers come
    /// from the heaps. Every session opens with its own address.
    #[test]
    fn many_sessions_open_through_two_tables() {
        let client_config = Arc::new(SessionConfig::client("pw"));
        let server_config = Arc::new(SessionConfig::server(AuthSet::NONE, None));
        let mut lac = PppTable::new();
        let mut lns = PppTable::new();
        let mut now = Instant::ZERO;
        for n in 0..200u16 {
            let client = PppSession::client(Arc::clone(&client_config), "u", u64::from(n));
            lac.insert(now, n, client);
            let address = Ipv4Addr::new(198, 19, 128 + (n / 250) as u8, (n % 250) as u8 + 1);
            let server =
                PppSession::server(Arc::clone(&server_config), address, 1000 + u64::from(n));
            lns.insert(now, n, server);
        }
        let mut opened = 0;
        for _ in 0..1000 {
            let mut moved = false;
            let mut out = Vec::new();
            while let Some(key) = lac.poll_transmit(&mut out) {
                lns.handle(now, key, &out);
                out.clear();
                moved = true;
            }
            while let Some(key) = lns.poll_transmit(&mut out) {
                lac.handle(now, key, &out);
                out.clear();
                moved = true;
            }
            while let Some((_, event)) = lac.poll_event() {
                if event == PppEvent::Phase(Phase::Open) {
                    opened += 1;
                }
            }
            while lns.poll_event().is_some() {}
            if !moved {
                let next = [lac.poll_timeout(), lns.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
                match next {
                    Some(at) if at < Instant::ZERO + Duration::from_secs(60) => {
                        now = now.max(at);
                        lac.handle_timeout(now);
                        lns.handle_timeout(now);
                    }
                    _ => break,
                }
            }
        }
        assert_eq!(opened, 200);
        let mut addresses: Vec<_> = lac
            .keys()
            .filter_map(|k| lac.get(k).and_then(|s| s.ipcp()).and_then(|n| n.local))
            .collect();
        addresses.sort();
        addresses.dedup();
        assert_eq!(addresses.len(), 200);
        // An open session with nothing to do arms no timer: the heap empties out.
        lac.handle_timeout(now + Duration::from_secs(3600));
        assert_eq!(lac.poll_timeout(), None);
        assert!(lac.remove(7).is_some_and(|s| s.is_open()));
        assert_eq!(lac.len(), 199);
    }
}
