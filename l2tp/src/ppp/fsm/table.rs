//! The state transition table of RFC 1661 §4.1 and the actions of §4.4.

use super::{code, Event, Fsm, FsmEvent, Negotiator, Output, Restart, State};
use crate::time::Instant;

impl<N: Negotiator> Fsm<N> {
    /// The state transition table of §4.1: one arm per cell that is not "-".
    pub(super) fn event(&mut self, now: Instant, event: Event) {
        use State::*;
        let state = self.state;
        let next = match (event, state) {
            (Event::Up, Initial) => Closed,
            (Event::Up, Starting) => {
                self.irc(Restart::Configure);
                self.scr(now, true);
                ReqSent
            }
            (Event::Down, Closed | Closing) => Initial,
            (Event::Down, Stopped) => {
                self.output.clear();
                self.events.push(FsmEvent::Started);
                Starting
            }
            (Event::Down, Stopping | ReqSent | AckRcvd | AckSent) => Starting,
            (Event::Down, Opened) => {
                self.events.push(FsmEvent::Down);
                Starting
            }
            (Event::Open, Initial) => {
                self.events.push(FsmEvent::Started);
                Starting
            }
            (Event::Open, Closed) => {
                self.irc(Restart::Configure);
                self.scr(now, true);
                ReqSent
            }
            // [r]: no restart option, the link stays as it is.
            (Event::Open, Closing) => Stopping,
            (Event::Open, state) => state,
            (Event::Close, Initial) => Initial,
            (Event::Close, Starting) => {
                self.finished();
                Initial
            }
            (Event::Close, Closed | Stopped) => Closed,
            (Event::Close, Closing | Stopping) => Closing,
            (Event::Close, ReqSent | AckRcvd | AckSent | Opened) => {
                if state == Opened {
                    self.events.push(FsmEvent::Down);
                }
                self.irc(Restart::Terminate);
                self.str(now, true);
                Closing
            }
            (Event::TimeoutPlus, Closing | Stopping) => {
                self.str(now, false);
                state
            }
            (Event::TimeoutPlus, ReqSent | AckRcvd) => {
                self.scr(now, false);
                ReqSent
            }
            (Event::TimeoutPlus, AckSent) => {
                self.scr(now, false);
                AckSent
            }
            (Event::TimeoutMinus, Closing) => {
                self.finished();
                Closed
            }
            (Event::TimeoutMinus, Stopping) => {
                self.finished();
                Stopped
            }
            (Event::TimeoutMinus, ReqSent | AckRcvd | AckSent) => {
                self.events.push(FsmEvent::ConfigureTimeout);
                self.finished();
                Stopped
            }
            (Event::Rcr { identifier, .. }, Closed) => {
                self.sta(identifier);
                Closed
            }
            (Event::Rcr { .. }, Closing | Stopping) => state,
            (Event::Rcr { good, reply, .. }, Stopped | ReqSent | AckRcvd | AckSent | Opened) => {
                if state == Opened {
                    self.events.push(FsmEvent::Down);
                }
                if matches!(state, Stopped | Opened) {
                    if state == Stopped {
                        self.irc(Restart::Configure);
                    }
                    self.scr(now, true);
                }
                self.output.extend(reply);
                match (good, state) {
                    (true, AckRcvd) => {
                        self.events.push(FsmEvent::Up);
                        Opened
                    }
                    (true, _) => AckSent,
                    (false, AckRcvd) => AckRcvd,
                    (false, _) => ReqSent,
                }
            }
            (Event::Rca { identifier } | Event::Rcn { identifier }, Closed | Stopped) => {
                self.sta(identifier);
                state
            }
            (Event::Rca { .. } | Event::Rcn { .. }, Closing | Stopping) => state,
            (Event::Rca { .. }, ReqSent) => {
                self.irc(Restart::Configure);
                AckRcvd
            }
            (Event::Rca { .. }, AckSent) => {
                self.irc(Restart::Configure);
                self.events.push(FsmEvent::Up);
                Opened
            }
            (Event::Rcn { .. }, ReqSent | AckSent) => {
                self.irc(Restart::Configure);
                self.scr(now, true);
                state
            }
            // [x]: an answer to a request we no longer wait on: start over.
            (Event::Rca { .. } | Event::Rcn { .. }, AckRcvd | Opened) => {
                if state == Opened {
                    self.events.push(FsmEvent::Down);
                }
                self.scr(now, true);
                ReqSent
            }
            (Event::Rtr { identifier }, Closed | Stopped | Closing | Stopping) => {
                self.sta(identifier);
                state
            }
            (Event::Rtr { identifier }, ReqSent | AckRcvd | AckSent) => {
                self.sta(identifier);
                ReqSent
            }
            (Event::Rtr { identifier }, Opened) => {
                self.events.push(FsmEvent::Down);
                self.zrc(now);
                self.sta(identifier);
                Stopping
            }
            (Event::Rta, Closed | Stopped | AckSent) => state,
            (Event::Rta, Closing) => {
                self.finished();
                Closed
            }
            (Event::Rta, Stopping) => {
                self.finished();
                Stopped
            }
            (Event::Rta, ReqSent | AckRcvd) => ReqSent,
            (Event::Rta, Opened) => {
                self.events.push(FsmEvent::Down);
                self.scr(now, true);
                ReqSent
            }
            (Event::Ruc { rejected }, state) if !state.is_down() => {
                let identifier = self.next_id();
                self.output.push(Output::Packet {
                    code: code::CODE_REJECT,
                    identifier,
                    data: rejected,
                });
                state
            }
            (Event::RxjPlus, state) if !state.is_down() => state,
            (Event::RxjMinus, Closed | Closing) => {
                self.finished();
                Closed
            }
            (Event::RxjMinus, Stopped | Stopping | ReqSent | AckRcvd | AckSent) => {
                self.finished();
                Stopped
            }
            (Event::RxjMinus, Opened) => {
                self.events.push(FsmEvent::Down);
                self.irc(Restart::Terminate);
                self.str(now, true);
                Stopping
            }
            (Event::Rxr { reply }, Opened) => {
                self.output.extend(reply);
                Opened
            }
            (Event::Rxr { .. }, state) if !state.is_down() => state,
            // "-": cannot happen in a sound automaton; no transition (§4.4 Illegal-Event).
            (event, state) => {
                tracing::debug!(?event, ?state, "illegal PPP automaton event");
                state
            }
        };
        self.state = next;
        if !next.has_timer() {
            self.timer = None;
        }
        if next.is_down() {
            // Nothing can be sent with the lower layer down.
            self.output.clear();
        }
    }

    /// irc: the Restart counter for what comes next.
    fn irc(&mut self, which: Restart) {
        self.restart_count = match which {
            Restart::Configure => self.config.max_configure,
            Restart::Terminate => self.config.max_terminate,
        };
    }

    /// zrc: no more Terminate-Requests; wait one Restart period for the peer to finish.
    fn zrc(&mut self, now: Instant) {
        self.restart_count = 0;
        self.timer = Some(now + self.config.restart);
    }

    /// scr: a new Configure-Request (fresh Identifier) or the same one again (timeout).
    fn scr(&mut self, now: Instant, fresh: bool) {
        if fresh {
            let negotiating =
                matches!(self.state, State::ReqSent | State::AckRcvd | State::AckSent);
            if !negotiating {
                self.negotiator.reset();
            }
            self.cr_id = self.next_id();
        }
        self.cr_answered = false;
        self.restart_count = self.restart_count.saturating_sub(1);
        self.timer = Some(now + self.config.restart);
        if !self.output.contains(&Output::ConfigureRequest) {
            self.output.push(Output::ConfigureRequest);
        }
    }

    /// str: a Terminate-Request (fresh Identifier unless it is a retransmission).
    fn str(&mut self, now: Instant, fresh: bool) {
        if fresh {
            self.tr_id = self.next_id();
        }
        self.restart_count = self.restart_count.saturating_sub(1);
        self.timer = Some(now + self.config.restart);
        // A Configure-Request not yet sent has no point once we terminate.
        self.output.retain(|o| *o != Output::ConfigureRequest);
        if !self.output.contains(&Output::TerminateRequest) {
            self.output.push(Output::TerminateRequest);
        }
    }

    fn sta(&mut self, identifier: u8) {
        self.output.push(Output::TerminateAck(identifier));
    }

    /// tlf, and the negotiation's loop counters start over.
    fn finished(&mut self) {
        self.naks_sent = 0;
        self.refused = None;
        self.naks_received = 0;
        self.events.push(FsmEvent::Finished);
    }
}
