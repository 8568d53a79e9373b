//! The endpoint (LNS) as `l2tpkit endpoint` runs it: its tunnels on a runner, its load reports
//! to the master and, in FIG 4, the watch on the master's acks with the master this endpoint
//! starts in its own process once its turn to take over comes.

use std::time::Duration;

use netio::runner::{RunError, Runner};
use tokio::sync::{mpsc, watch};

use super::{serve_takeover, MasterSetup, ServeError};
use crate::claim::ClaimPlan;
use crate::endpoint::ppp::{PppServer, PppServerConfig, PppSetupError};
use crate::endpoint::{Endpoint, EndpointStats, Reporting, TakeoverLink};
use crate::master::MasterStatus;
use crate::takeover::{Watch, WatchConfig};

/// FIG 4: the addresses an endpoint claims when the master is gone, and the master it runs
/// there.
pub struct TakeoverSetup {
    pub plan: ClaimPlan,
    pub master: MasterSetup,
}

/// What the endpoint does besides answering tunnels.
pub struct EndpointSetup {
    /// Seeds the endpoint's choices (Assigned Session IDs).
    pub seed: u32,
    /// Load reports to a master; without them the endpoint stands alone.
    pub reporting: Option<Reporting>,
    /// Taking the master over; needs `reporting` (the acks of its reports are the watch).
    pub takeover: Option<TakeoverSetup>,
    /// Run until then (Ctrl-C otherwise), then drain: the StopCCNs get the teardown bound of
    /// the tunnels' retransmission schedule (`ReliableConfig::teardown_bound`).
    pub duration: Option<Duration>,
    /// Be the PPP server of every session; without it only LCP Echo is answered.
    pub ppp: Option<PppServerConfig>,
    /// Serve `GET /metrics` here (see [`crate::metrics`]), refreshed every second.
    pub metrics: Option<std::net::SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("the taken-over master: {0}")]
    Master(#[from] ServeError),
    #[error("a takeover needs load reports to a master (its watch is their acks)")]
    TakeoverWithoutReporting,
    #[error(transparent)]
    Ppp(#[from] PppSetupError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
}

/// How the endpoint's run went.
pub struct EndpointOutcome {
    pub stats: EndpointStats,
    /// The master this endpoint ran after taking over, when it did.
    pub master: Option<MasterStatus>,
}

/// Runs the endpoint on `runner` (bound to the L2TP port) until the deadline or Ctrl-C; with a
/// takeover, the master task runs beside it and stops with it.
pub async fn serve_endpoint(
    runner: &mut Runner,
    setup: EndpointSetup,
) -> Result<EndpointOutcome, EndpointError> {
    let mut endpoint = Endpoint::new(setup.seed);
    // Bound first, so an address in use fails the endpoint before it answers anything.
    let _serving = match setup.metrics {
        Some(addr) => {
            let server = crate::metrics::MetricsServer::bind(addr)?;
            let shared = crate::metrics::Shared::default();
            endpoint = endpoint.with_metrics(std::sync::Arc::clone(&shared));
            Some(server.serve(shared))
        }
        None => None,
    };
    if let Some(config) = &setup.ppp {
        endpoint = endpoint.with_ppp(PppServer::new(config, u64::from(setup.seed))?);
    }
    // StopCCNs are acknowledged or given up on the RFC's schedule, never cut off by a constant.
    let drain = runner.set.config().reliable.teardown_bound();
    let mut takeover_task = None;
    match (setup.reporting, setup.takeover) {
        (None, Some(_)) => return Err(EndpointError::TakeoverWithoutReporting),
        (None, None) => {}
        (Some(reporting), takeover) => {
            if let Some(TakeoverSetup { plan, master }) = takeover {
                let watch = Watch::new(WatchConfig::new(
                    reporting.name.clone(),
                    reporting.key.clone(),
                    reporting.interval,
                ));
                let (orders, order_rx) = mpsc::unbounded_channel();
                let (outcome_tx, outcomes) = mpsc::unbounded_channel();
                let (stop_tx, stop_rx) = watch::channel(false);
                endpoint = endpoint.with_takeover(TakeoverLink {
                    watch,
                    orders,
                    outcomes,
                });
                takeover_task = Some((
                    serve_takeover(order_rx, outcome_tx, plan, master, stop_rx),
                    stop_tx,
                ));
            }
            endpoint = endpoint.with_reporting(reporting);
        }
    }
    let (run, master) = match takeover_task {
        Some((task, stop)) => {
            let endpoint_run = async {
                let run = runner.run(&mut endpoint, setup.duration, drain).await;
                // A master running here stops with the endpoint.
                let _ = stop.send(true);
                run
            };
            let (run, master) = tokio::join!(endpoint_run, task);
            (run, master)
        }
        None => (
            runner.run(&mut endpoint, setup.duration, drain).await,
            Ok(None),
        ),
    };
    runner.finish()?;
    run?;
    let master = master?;
    if let Some(status) = &master {
        tracing::info!(
            dispatched = status.totals.sccrq_dispatched,
            "the taken-over master stopped"
        );
    }
    Ok(EndpointOutcome {
        stats: endpoint.stats(),
        master,
    })
}
