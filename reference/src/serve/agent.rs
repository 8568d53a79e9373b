//! The agent as `l2tpkit agent` runs it: a read-only sniffer on the LNS's L2TP port, a UDP
//! socket for its reports and claims to the master (and the acks back), on the loop helper.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use netio::sniff::{AsyncSniffer, Sniffer};
use tokio::net::UdpSocket;

use super::event_loop::{EventLoop, Turn, Wake};
use super::{ServeError, ServeOptions};
use crate::agent::{Agent, AgentConfig, AgentStatus};
use crate::cluster::REPORT_PORT;
use crate::control::{self, Request};

/// What `serve_agent` watches and where it reports.
#[derive(Debug, Clone)]
pub struct AgentSetup {
    pub config: AgentConfig,
    /// The interface the LNS's L2TP traffic crosses; every interface of the namespace when
    /// `None` (a packet that crosses two of them is then seen twice).
    pub interface: Option<String>,
    /// The master's LAN address: reports and claims go to its port [`REPORT_PORT`].
    pub master: Ipv4Addr,
    /// Status file, control socket (`status`), pcap of what the agent saw, metrics, duration.
    pub options: ServeOptions,
}

/// Runs the agent until its duration ends or Ctrl-C; returns its final status.
pub async fn serve_agent(setup: AgentSetup) -> Result<AgentStatus, ServeError> {
    let port = setup.config.lns.port();
    let sniffer = Sniffer::open(setup.interface.as_deref(), port, 64).map_err(ServeError::Raw)?;
    let mut sniffer =
        AsyncSniffer::new(sniffer).map_err(|err| ServeError::Socket(err.into_parts().1))?;
    let bind = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
    let reports = super::bind_udp(bind, false)?;
    let master = SocketAddr::V4(SocketAddrV4::new(setup.master, REPORT_PORT));
    let mut agent = Agent::new(setup.config.clone());
    let mut lp = EventLoop::open(setup.options.loop_spec(true, None))?;
    tracing::info!(lns = %setup.config.lns, interface = ?setup.interface, %master, "agent up");
    // The readiness line a reader of the log looks for (the lab waits for the status file).
    eprintln!(
        "l2tpkit agent {}: watching {} on {}, reporting to {master}",
        setup.config.name,
        setup.config.lns,
        setup.interface.as_deref().unwrap_or("every interface")
    );
    let mut ack_buf = vec![0u8; 65536];
    loop {
        let now = lp.clock.now();
        agent.handle_timeout(now);
        send_all(&mut agent, &reports, master, now);
        let sleep = match lp.turn(now, Some(agent.poll_timeout()), || agent.status())? {
            Turn::Wait(sleep) => sleep,
            Turn::Deadline => break,
        };
        tokio::select! {
            ready = sniffer.readable_mut() => {
                let mut guard = ready.map_err(ServeError::Socket)?;
                let tap = guard.get_inner_mut();
                let n = tap.recv_batch().map_err(ServeError::Socket)?;
                if n == 0 {
                    guard.clear_ready();
                    continue;
                }
                let now = lp.clock.now();
                let wall = lp.clock.wall(now);
                for i in 0..n {
                    if let Some((packet, _outgoing)) = tap.packet(i) {
                        agent.observe(now, packet);
                        lp.pcap.write(wall, packet);
                    }
                }
                send_all(&mut agent, &reports, master, now);
            }
            received = reports.recv_from(&mut ack_buf) => {
                match received {
                    Ok((len, _)) => {
                        let ack = ack_buf.get(..len).unwrap_or_default();
                        agent.handle_ack(lp.clock.now(), ack);
                    }
                    // An ICMP port unreachable from a master that is down, reported on the
                    // next receive: the next report tries again.
                    Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {}
                    Err(err) => return Err(ServeError::Socket(err)),
                }
            }
            wake = lp.wait(sleep) => match wake {
                Wake::Timer => {}
                Wake::Stop => break,
                Wake::Control(pending) => {
                    let reply = match pending.request {
                        Ok(Request::Status) => control::ok(&agent.status()),
                        Ok(other) => control::refused(&format!(
                            "{other}: the agent answers status only (drain its endpoint at the master)"
                        )),
                        Err(error) => control::refused(&error),
                    };
                    let _ = pending.reply.send(reply);
                }
            },
        }
    }
    let status = agent.status();
    lp.finish(&status)?;
    Ok(status)
}

/// Sends what the agent has for the master, best effort (as reports are): a lost claim goes
/// again unacked, a lost report is followed by the next.
fn send_all(agent: &mut Agent, socket: &UdpSocket, master: SocketAddr, now: l2tp::time::Instant) {
    while let Some(datagram) = agent.poll_transmit(now) {
        if let Err(err) = socket.try_send_to(&datagram, master) {
            tracing::debug!(%master, %err, "report or claims not sent");
        }
    }
}
