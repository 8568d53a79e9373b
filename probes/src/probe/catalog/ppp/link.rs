//! What the PPP probes share: a tunnel of ours with calls whose PPP frames and ends it
//! follows ([`Link`]), PPP control packets built and read by hand ([`Pkt`]), and a
//! well-behaved subscriber that the probes drive and interrupt ([`Client`]).

use std::sync::Arc;
use std::time::Duration;

use l2tp::ppp::describe::describe;
use l2tp::ppp::frame::{protocol, FrameRepr, Options, PacketRepr};
use l2tp::ppp::fsm::code;
use l2tp::ppp::lcp::{AuthSet, LcpOption};
use l2tp::ppp::session::{Phase, PppEvent, PppFailure, PppSession, SessionConfig};
use l2tp::time::Instant;
use l2tp::wire::MessageType;

use crate::probe::script::{result_text, Ctl, TRIES};
use crate::probe::{Ctx, Step, Verdict};

/// How long a new call gets to show it runs PPP: its LNS's first LCP Configure-Request.
pub(super) const LCP_WAIT: Duration = Duration::from_secs(5);
/// How long a subscriber gets from the LNS's Configure-Request to the goal of a step (LCP
/// opened, an authentication verdict, IPCP opened): RADIUS behind the LNS included.
pub(super) const PPP_WAIT: Duration = Duration::from_secs(20);
/// The subscriber the probes are when given none.
pub(super) const DEFAULT_USER: &str = "l2tpkit-probe";
pub(super) const DEFAULT_PASSWORD: &[u8] = b"l2tpkit-probe";

/// One call of ours: (our Session ID, the LNS's).
#[derive(Debug, Clone, Copy)]
pub(super) struct Call {
    pub(super) ours: u16,
    pub(super) theirs: u16,
}

/// A PPP control packet (LCP, PAP, CHAP, IPCP) as it came or goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pkt {
    pub(super) protocol: u16,
    pub(super) code: u8,
    pub(super) id: u8,
    pub(super) data: Vec<u8>,
}

impl Pkt {
    pub(super) fn lcp(code: u8, id: u8, data: Vec<u8>) -> Pkt {
        Pkt {
            protocol: protocol::LCP,
            code,
            id,
            data,
        }
    }

    /// A control packet of any protocol in a frame; `None` for IP or bytes that do not read.
    pub(super) fn parse(frame: &[u8]) -> Option<Pkt> {
        let (repr, info) = FrameRepr::parse(frame).ok()?;
        if repr.protocol < 0x8000 {
            return None;
        }
        let packet = PacketRepr::parse_bytes(info).ok()?;
        Some(Pkt {
            protocol: repr.protocol,
            code: packet.code,
            id: packet.identifier,
            data: packet.data.to_vec(),
        })
    }

    pub(super) fn is(&self, protocol: u16, code: u8) -> bool {
        self.protocol == protocol && self.code == code
    }

    /// The whole frame, with address/control and a two-octet protocol.
    pub(super) fn frame(&self) -> Vec<u8> {
        let mut info = Vec::with_capacity(4 + self.data.len());
        let packet = PacketRepr {
            code: self.code,
            identifier: self.id,
            data: &self.data,
        };
        // Our own packets are a few dozen octets: the 16-bit Length always holds them.
        let _ = packet.emit_to_vec(&mut info);
        let mut frame = Vec::with_capacity(4 + info.len());
        FrameRepr::full(self.protocol).emit_to_vec(&info, &mut frame);
        frame
    }

    /// The Magic-Number of an LCP Configure packet, if it carries one.
    pub(super) fn magic(&self) -> Option<u32> {
        Options::new(&self.data)
            .map_while(Result::ok)
            .find_map(|(kind, value)| match LcpOption::parse(kind, value) {
                Ok(LcpOption::MagicNumber(magic)) => Some(magic),
                _ => None,
            })
    }
}

pub(super) fn code_name(pkt: &Pkt) -> String {
    describe(&pkt.frame()).to_string()
}

pub(super) fn options(list: &[LcpOption]) -> Vec<u8> {
    let mut data = Vec::new();
    for option in list {
        option.emit(&mut data);
    }
    data
}

/// One tunnel of ours, with what the LNS said on its control channel about it and our calls.
pub(super) struct Link {
    pub(super) ctl: Ctl,
    /// (our Session ID, "result …") of each CDN the LNS sent.
    pub(super) cdns: Vec<(u16, String)>,
    pub(super) stopccn: Option<String>,
}

impl Link {
    pub(super) fn open(ctx: &Ctx) -> Step<Link> {
        let mut ctl = ctx.ctl()?;
        ctl.establish()?;
        Ok(Link {
            ctl,
            cdns: Vec::new(),
            stopccn: None,
        })
    }

    pub(super) fn call(&mut self) -> Step<Call> {
        let (ours, theirs) = self.ctl.open_call()?;
        self.ctl
            .note(format!("call up: our Session ID {ours}, theirs {theirs}"));
        Ok(Call { ours, theirs })
    }

    pub(super) fn send(&mut self, call: Call, frame: &[u8]) -> Step<()> {
        self.ctl.note(format!("  → PPP {}", describe(frame)));
        self.ctl.send_data(call.theirs, frame)
    }

    pub(super) fn send_pkt(&mut self, call: Call, pkt: &Pkt) -> Step<()> {
        self.send(call, &pkt.frame())
    }

    /// The next PPP frame on `call` by `deadline`; `None` at the deadline or as soon as the
    /// call or the tunnel ends.
    pub(super) fn next(&mut self, call: Call, deadline: Instant) -> Option<Vec<u8>> {
        if self.ended(call).is_some() {
            return None;
        }
        let (cdns, stopccn) = (&mut self.cdns, &mut self.stopccn);
        let frame = self.ctl.wait_data_until(deadline, call.ours, |message| {
            match message.message_type() {
                Some(MessageType::Cdn) => {
                    cdns.push((message.header.session_id, result_text(message)));
                    message.header.session_id == call.ours
                }
                Some(MessageType::StopCcn) => {
                    *stopccn = Some(result_text(message));
                    true
                }
                _ => false,
            }
        })?;
        self.ctl.note(format!("  ← PPP {}", describe(&frame)));
        Some(frame)
    }

    /// Why the call is over, if it is: the LNS's CDN or StopCCN.
    pub(super) fn ended(&self, call: Call) -> Option<String> {
        if let Some(why) = &self.stopccn {
            return Some(format!("StopCCN, {why}"));
        }
        self.cdns
            .iter()
            .find(|(sid, _)| *sid == call.ours)
            .map(|(_, why)| format!("CDN, {why}"))
    }

    /// The LNS's first LCP Configure-Request on `call`, or `None` when none comes within
    /// [`LCP_WAIT`] (or the call ends first).
    pub(super) fn first_request(&mut self, call: Call) -> Option<Pkt> {
        let deadline = self.ctl.now() + LCP_WAIT;
        while let Some(frame) = self.next(call, deadline) {
            match Pkt::parse(&frame) {
                Some(pkt) if pkt.is(protocol::LCP, code::CONFIGURE_REQUEST) => return Some(pkt),
                _ => {}
            }
        }
        None
    }

    /// Sends our LCP Configure-Request and waits for the answer to it (Ack, Nak or Reject
    /// with its Identifier), resending it a reply timeout apart, [`TRIES`] times. The LNS's own
    /// Configure-Requests on the way are acked and kept in `theirs`.
    pub(super) fn request(
        &mut self,
        call: Call,
        ours: &Pkt,
        theirs: &mut Pkt,
    ) -> Step<Option<Pkt>> {
        for _ in 0..TRIES {
            self.send_pkt(call, ours)?;
            let deadline = self.ctl.now() + self.ctl.reply_timeout;
            while let Some(frame) = self.next(call, deadline) {
                let Some(pkt) = Pkt::parse(&frame) else {
                    continue;
                };
                if pkt.is(protocol::LCP, code::CONFIGURE_REQUEST) {
                    let ack = Pkt::lcp(code::CONFIGURE_ACK, pkt.id, pkt.data.clone());
                    self.send_pkt(call, &ack)?;
                    *theirs = pkt;
                } else if pkt.protocol == protocol::LCP
                    && pkt.id == ours.id
                    && (code::CONFIGURE_ACK..=code::CONFIGURE_REJECT).contains(&pkt.code)
                {
                    return Ok(Some(pkt));
                }
            }
            if self.ended(call).is_some() {
                break;
            }
        }
        Ok(None)
    }

    pub(super) fn close(mut self) {
        let _ = self.ctl.close();
    }

    /// Closes the tunnel and gives `verdict`.
    pub(super) fn verdict(self, verdict: Verdict) -> Step<Verdict> {
        self.close();
        Ok(verdict)
    }
}

/// A tunnel with one call whose LNS runs PPP on it, and its first Configure-Request; not
/// applicable when no Configure-Request comes. The first call that shows no PPP decides for
/// the rest of the run: the other PPP probes do not wait for it again.
pub(super) fn ppp_call(ctx: &Ctx) -> Step<(Link, Call, Pkt)> {
    if let Some(why) = ctx.target.learnt.no_ppp.get() {
        ctx.note(format!(
            "no call placed: an earlier probe of this run found {why}"
        ));
        return Err(Verdict::NotApplicable(format!(
            "{why} (seen by an earlier probe of this run): it runs no PPP on its sessions"
        )));
    }
    let mut link = Link::open(ctx)?;
    let call = link.call()?;
    match link.first_request(call) {
        Some(request) => Ok((link, call, request)),
        None => {
            let ended = link.ended(call);
            link.close();
            let why = match ended {
                Some(ended) => format!("the LNS ended the call ({ended}) before any PPP"),
                None => {
                    // Only silence is remembered: an ended call may be this call's own fate.
                    let why = format!(
                        "no LCP Configure-Request from the LNS within {} s of the call",
                        LCP_WAIT.as_secs()
                    );
                    let _ = ctx.target.learnt.no_ppp.set(why.clone());
                    why
                }
            };
            Err(Verdict::NotApplicable(format!(
                "{why}: it runs no PPP on its sessions"
            )))
        }
    }
}

/// Who the subscriber is.
pub(super) struct Subscriber {
    pub(super) username: String,
    pub(super) password: Vec<u8>,
    /// Given by the user (else the defaults, which a real LNS refuses).
    pub(super) given: bool,
}

impl Subscriber {
    pub(super) fn of(ctx: &Ctx) -> Subscriber {
        let target = ctx.target;
        Subscriber {
            username: target
                .username
                .clone()
                .unwrap_or_else(|| DEFAULT_USER.into()),
            password: target
                .password
                .clone()
                .unwrap_or_else(|| DEFAULT_PASSWORD.to_vec()),
            given: target.username.is_some() && target.password.is_some(),
        }
    }

    /// Why an LNS refused us: not applicable with the default credentials, inconclusive
    /// with the given ones (the probe cannot tell a wrong user from a broken LNS).
    pub(super) fn refused(&self, what: &str) -> Verdict {
        if self.given {
            Verdict::Inconclusive(format!(
                "the LNS refused --username {:?}: {what}",
                self.username
            ))
        } else {
            Verdict::NotApplicable(format!(
                "the LNS refused the default subscriber {DEFAULT_USER:?} ({what}): give \
                 --username and --password"
            ))
        }
    }
}

/// A well-behaved subscriber on one call, and the Magic-Numbers seen in the Configure-Requests
/// both ways (for judging echoes).
pub(super) struct Client {
    pub(super) ppp: PppSession,
    pub(super) our_magic: Option<u32>,
    pub(super) their_magic: Option<u32>,
    pub(super) buf: Vec<u8>,
}

/// Why [`Client::drive`] stopped.
#[derive(Debug)]
pub(super) enum Stop {
    /// The event the caller waited for.
    Reached(PppEvent),
    /// A frame the caller asked to see instead of the client.
    Held(Pkt),
    Failed(PppFailure),
    /// The LNS's CDN or StopCCN.
    Ended(String),
    Timeout,
}

impl Client {
    /// Starts a subscriber doing the authentication protocols of `accept`, and hands it the
    /// LNS's first Configure-Request.
    pub(super) fn start(
        link: &mut Link,
        call: Call,
        who: &Subscriber,
        password: &[u8],
        accept: AuthSet,
        first: &Pkt,
    ) -> Step<Client> {
        let mut config = SessionConfig::client(password.to_vec());
        config.lcp.accept = accept;
        let seed = u64::from(link.ctl.fresh_id()) << 16 | u64::from(link.ctl.fresh_id());
        let now = link.ctl.now();
        let mut client = Client {
            ppp: PppSession::client(Arc::new(config), &who.username, seed),
            our_magic: None,
            their_magic: None,
            buf: Vec::new(),
        };
        client.ppp.start(now);
        client.take(now, &first.frame());
        client.flush(link, call)?;
        Ok(client)
    }

    pub(super) fn take(&mut self, now: Instant, frame: &[u8]) {
        if let Some(pkt) = Pkt::parse(frame) {
            if pkt.is(protocol::LCP, code::CONFIGURE_REQUEST) {
                self.their_magic = pkt.magic();
            }
        }
        let _ = self.ppp.handle(now, frame);
    }

    pub(super) fn flush(&mut self, link: &mut Link, call: Call) -> Step<()> {
        loop {
            self.buf.clear();
            if !self.ppp.poll_transmit(&mut self.buf) {
                return Ok(());
            }
            if let Some(pkt) = Pkt::parse(&self.buf) {
                if pkt.is(protocol::LCP, code::CONFIGURE_REQUEST) {
                    self.our_magic = pkt.magic();
                }
            }
            let frame = std::mem::take(&mut self.buf);
            link.send(call, &frame)?;
            self.buf = frame;
        }
    }

    /// Runs the subscriber on `call` for up to `wait`, until an event `until` accepts, a
    /// failure, the end of the call, or a frame `hold` wants for the probe itself.
    pub(super) fn drive(
        &mut self,
        link: &mut Link,
        call: Call,
        wait: Duration,
        mut until: impl FnMut(&PppEvent) -> bool,
        mut hold: impl FnMut(&Pkt) -> bool,
    ) -> Step<Stop> {
        let deadline = link.ctl.now() + wait;
        loop {
            self.flush(link, call)?;
            while let Some(event) = self.ppp.poll_event() {
                if until(&event) {
                    return Ok(Stop::Reached(event));
                }
                if let PppEvent::Failed(failure) = event {
                    link.ctl.note(format!("our subscriber: {failure}"));
                    self.flush(link, call)?;
                    return Ok(Stop::Failed(failure));
                }
            }
            if let Some(why) = link.ended(call) {
                return Ok(Stop::Ended(why));
            }
            let wake = self
                .ppp
                .poll_timeout()
                .map_or(deadline, |t| t.min(deadline));
            match link.next(call, wake) {
                Some(frame) => {
                    if let Some(pkt) = Pkt::parse(&frame).filter(|p| hold(p)) {
                        return Ok(Stop::Held(pkt));
                    }
                    let now = link.ctl.now();
                    self.take(now, &frame);
                }
                None if link.ctl.now() >= deadline => return Ok(Stop::Timeout),
                None => {
                    let now = link.ctl.now();
                    self.ppp.handle_timeout(now);
                }
            }
        }
    }

    /// Drives until LCP is opened (the Authenticate or Network phase begins).
    pub(super) fn lcp_opened(&mut self, link: &mut Link, call: Call) -> Step<Stop> {
        let opened = |e: &PppEvent| {
            matches!(
                e,
                PppEvent::Phase(Phase::Authenticate | Phase::Network | Phase::Open)
            )
        };
        self.drive(link, call, PPP_WAIT, opened, |_| false)
    }
}

/// A verdict for a subscriber that stopped short of LCP opened.
pub(super) fn lcp_did_not_open(stop: Stop) -> Verdict {
    match stop {
        Stop::Ended(why) => Verdict::Fail(format!(
            "the LNS ended the call ({why}) before LCP opened with a well-behaved subscriber"
        )),
        Stop::Failed(failure) => Verdict::Fail(format!(
            "LCP did not open with a well-behaved subscriber: {failure}"
        )),
        other => Verdict::Fail(format!(
            "LCP did not open within {} s with a well-behaved subscriber ({other:?})",
            PPP_WAIT.as_secs()
        )),
    }
}
