//! Who holds the cluster address: a master that claims its addresses before it serves (and
//! stands by when someone else holds them), and an endpoint carrying out its takeover orders
//! (FIG 4: it claims the master's addresses and runs the master itself).

use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};

use super::event_loop::{stopped, EventLoop, Turn, Wake};
use super::master::{master_turn, serve_master, MasterSetup};
use super::ServeError;
use crate::claim::{ClaimError, ClaimPlan, Claimed, Probe};
use crate::control::{self, Request};
use crate::master::{Master, MasterStatus};
use crate::takeover::{ClaimOutcome, Holder, HolderState, Order, TakeoverRecord};

/// Runs a master that claims its addresses first (`l2tpkit master --claim-public/--claim-lan`):
/// leftovers of an earlier master of ours are removed, the addresses probed with ARP, and
/// then either taken (and served, and given back at the end) or, when someone answers for
/// them, left alone: the master stands by (its status says so) until it is stopped. A master
/// that comes back after a takeover therefore never fights the endpoint that took over.
pub async fn serve_master_claiming(
    mut setup: MasterSetup,
    plan: ClaimPlan,
) -> Result<MasterStatus, ServeError> {
    let cleanup = plan.clone();
    let removed = blocking(move || crate::claim::remove_leftovers(&cleanup)).await?;
    for address in &removed {
        // Left by an earlier master that died, or set up statically: either way it must go
        // before the probe, or our own kernel would answer for it.
        tracing::info!(%address, "address present before the claim: removed, then probed");
    }
    let probing = plan.clone();
    let probe = blocking(move || crate::claim::probe(&probing)).await?;
    if let Probe::Held { .. } = &probe {
        let held_by = probe.describe();
        tracing::warn!(%held_by, "the cluster address is held: standing by, not fighting for it");
        return stand_by(setup, held_by).await;
    }
    let taking = plan.clone();
    let claimed = blocking(move || crate::claim::take(&taking)).await?;
    let mut holder = setup.holder.take().unwrap_or_else(|| Holder {
        name: setup.config.name.clone(),
        ..Holder::default()
    });
    holder.claimed = addresses(&claimed);
    tracing::info!(claimed = ?holder.claimed, "cluster addresses claimed and announced");
    setup.holder = Some(holder);
    serve_then_release(setup, claimed, false).await
}

/// Carries out an endpoint's takeover orders (`crate::takeover`) until `stop`: each claim
/// probes the master's addresses; when someone answers the watch hears `Held` and goes on
/// watching; when nobody does, the addresses are taken and announced, the watch hears
/// `Claimed`, and the master runs here (with `setup`, its socket sharing the endpoint's port)
/// until `stop`, then gives the addresses back. Returns the master's final status if it ran.
pub async fn serve_takeover(
    mut orders: mpsc::UnboundedReceiver<Order>,
    outcomes: mpsc::UnboundedSender<ClaimOutcome>,
    plan: ClaimPlan,
    mut setup: MasterSetup,
    mut stop: watch::Receiver<bool>,
) -> Result<Option<MasterStatus>, ServeError> {
    let Some((claimed, record)) =
        claim_when_ordered(&mut orders, &outcomes, &plan, &mut setup, &mut stop).await
    else {
        return Ok(None);
    };
    let claimed_text = addresses(&claimed);
    tracing::warn!(
        rank = record.rank, silent_ms = record.master_silent_ms, claim_ms = record.claim_ms,
        claimed = ?claimed_text, "took the master over: serving the cluster address"
    );
    eprintln!(
        "l2tpkit endpoint {}: took the master over from {} (rank {}, master silent {} ms, \
         claimed in {} ms: {})",
        record.endpoint,
        record.previous_master,
        record.rank,
        record.master_silent_ms,
        record.claim_ms,
        claimed_text.join(", ")
    );
    setup.holder = Some(Holder {
        name: setup.config.name.clone(),
        state: HolderState::Active,
        held_by: None,
        claimed: claimed_text,
        takeover: Some(record),
    });
    setup.stop = Some(stop);
    serve_then_release(setup, claimed, true).await.map(Some)
}

/// Waits for claim orders and tries each, telling the watch how it went, until one takes the
/// addresses: those, and the record of the takeover. None once `stop` (or the orders end).
async fn claim_when_ordered(
    orders: &mut mpsc::UnboundedReceiver<Order>,
    outcomes: &mpsc::UnboundedSender<ClaimOutcome>,
    plan: &ClaimPlan,
    setup: &mut MasterSetup,
    stop: &mut watch::Receiver<bool>,
) -> Option<(Claimed, TakeoverRecord)> {
    loop {
        let order = tokio::select! {
            order = orders.recv() => order,
            _ = stopped(Some(stop)) => None,
        };
        let Order::Claim {
            rank,
            silent_for,
            previous_master,
            own_report,
            view,
        } = order?;
        setup.seed_reports = own_report.into_iter().collect();
        setup.seed_view = view;
        let ordered = std::time::Instant::now();
        let outcome = match try_claim(plan).await {
            Ok(claimed) => {
                let _ = outcomes.send(ClaimOutcome::Claimed);
                let record = TakeoverRecord {
                    endpoint: setup.config.name.clone(),
                    rank,
                    previous_master,
                    master_silent_ms: millis(silent_for),
                    claim_ms: millis(ordered.elapsed()),
                    at_unix_ms: SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, millis),
                };
                return Some((claimed, record));
            }
            Err(outcome) => outcome,
        };
        let _ = outcomes.send(outcome);
    }
}

/// Probes the master's addresses and takes them when nobody answers; else what happened.
async fn try_claim(plan: &ClaimPlan) -> Result<Claimed, ClaimOutcome> {
    let failed = |err: ServeError| ClaimOutcome::Failed {
        error: err.to_string(),
    };
    let probing = plan.clone();
    match blocking(move || crate::claim::probe(&probing)).await {
        Ok(Probe::Free) => {
            let taking = plan.clone();
            blocking(move || crate::claim::take(&taking))
                .await
                .map_err(failed)
        }
        Ok(held) => Err(ClaimOutcome::Held {
            by: held.describe(),
        }),
        Err(err) => Err(failed(err)),
    }
}

/// Runs the master on the addresses just claimed, then gives them back, also when it failed.
async fn serve_then_release(
    setup: MasterSetup,
    claimed: Claimed,
    took_over: bool,
) -> Result<MasterStatus, ServeError> {
    let served = serve_master(setup).await;
    if let (Err(err), true) = (&served, took_over) {
        tracing::error!(%err, "the master this endpoint took over failed; giving its addresses back");
    }
    let released = blocking(move || claimed.release()).await;
    let status = served?;
    released?;
    Ok(status)
}

fn addresses(claimed: &Claimed) -> Vec<String> {
    claimed
        .addresses()
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Runs blocking claim work (ARP, `ip`) off the runtime's thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ClaimError> + Send + 'static,
) -> Result<T, ServeError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| ServeError::Socket(io::Error::other(err)))?
        .map_err(ServeError::from)
}

/// A master that found its address held: writes its status (state `standby`, who holds the
/// address) and answers `status` on its control socket until stopped; nothing else.
async fn stand_by(mut setup: MasterSetup, held_by: String) -> Result<MasterStatus, ServeError> {
    let mut master = Master::new(setup.config.clone());
    master.set_holder(Holder {
        name: setup.config.name.clone(),
        state: HolderState::Standby,
        held_by: Some(held_by.clone()),
        ..Holder::default()
    });
    let mut lp = EventLoop::open(setup.loop_spec(false))?;
    // The readiness line the lab waits for after a restart.
    eprintln!("l2tpkit master: standing by: {held_by}");
    while let Turn::Wait(sleep) = master_turn(&mut lp, &mut master)? {
        match lp.wait(sleep).await {
            Wake::Timer => {}
            Wake::Stop => break,
            Wake::Control(pending) => {
                let reply = match pending.request {
                    Ok(Request::Status) => control::ok(&master.status()),
                    Ok(other) => control::refused(&format!(
                        "{other}: this master stands by ({held_by}); ask the one holding the address"
                    )),
                    Err(error) => control::refused(&error),
                };
                let _ = pending.reply.send(reply);
            }
        }
    }
    let status = master.status();
    lp.finish(&status)?;
    Ok(status)
}
