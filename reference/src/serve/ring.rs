//! The NAT's public receive ring and how its loop waits for it.

use std::io;
use std::time::Duration;

use netio::ring::{AsyncRing, RxRing};

/// The public receive ring and how the NAT waits for it. While frames keep coming the ring is
/// not registered with epoll at all and the NAT looks at it between its other work ("busy"):
/// registered, every frame would cost the receiving CPU an epoll callback (a lock and a
/// wake-up: 8% of the generator's CPU in `bench nat`). Once it has stayed empty for
/// [`PublicRing::IDLE_AFTER`], it is registered and the NAT sleeps until a frame comes.
pub(super) struct PublicRing {
    /// Busy: the ring itself.
    busy: Option<RxRing>,
    /// Idle: the ring, registered.
    idle: Option<AsyncRing>,
    empty_since: Option<std::time::Instant>,
}

impl PublicRing {
    const IDLE_AFTER: Duration = Duration::from_micros(50);

    pub(super) fn new(ring: RxRing) -> PublicRing {
        PublicRing {
            busy: Some(ring),
            idle: None,
            empty_since: None,
        }
    }

    pub(super) fn ring(&self) -> &RxRing {
        match (&self.busy, &self.idle) {
            (Some(ring), _) => ring,
            (None, Some(fd)) => fd.get_ref(),
            (None, None) => unreachable!("the ring is always in one of the two places"),
        }
    }

    pub(super) fn ring_mut(&mut self) -> &mut RxRing {
        match (&mut self.busy, &mut self.idle) {
            (Some(ring), _) => ring,
            (None, Some(fd)) => fd.get_mut(),
            (None, None) => unreachable!("the ring is always in one of the two places"),
        }
    }

    /// Frames the ring had no room for since the last call.
    pub(super) fn drops(&self) -> u64 {
        self.ring().drops().unwrap_or(0)
    }

    /// Busy: at once (after letting the runtime poll its other sources). Idle: when the ring
    /// has a frame; it is then busy again.
    async fn ready(&mut self) -> io::Result<()> {
        match &mut self.idle {
            Some(fd) => {
                fd.readable_mut().await?.clear_ready();
                if let Some(fd) = self.idle.take() {
                    self.busy = Some(fd.into_inner());
                }
                self.empty_since = None;
                Ok(())
            }
            None => {
                tokio::task::yield_now().await;
                Ok(())
            }
        }
    }

    /// After a look at the ring: whether it had frames.
    pub(super) fn note(&mut self, got: bool) -> io::Result<()> {
        if got {
            self.empty_since = None;
            return Ok(());
        }
        let now = std::time::Instant::now();
        let since = *self.empty_since.get_or_insert(now);
        if now.duration_since(since) >= PublicRing::IDLE_AFTER {
            if let Some(ring) = self.busy.take() {
                // Registering reports a ring that already holds frames as ready at once, so
                // none that came since the last look is left waiting.
                match register(ring) {
                    Ok(fd) => self.idle = Some(fd),
                    Err((ring, err)) => {
                        self.busy = Some(ring);
                        return Err(err);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Frames the ring had no room for; none without a ring.
pub(super) fn ring_drops(ring: Option<&PublicRing>) -> u64 {
    ring.map_or(0, PublicRing::drops)
}

/// Waits until the ring should be looked at; never, without a ring.
pub(super) async fn ring_ready(ring: Option<&mut PublicRing>) -> io::Result<()> {
    match ring {
        Some(ring) => ring.ready().await,
        None => std::future::pending().await,
    }
}

/// Registers the ring with the runtime for readiness; on failure the ring comes back.
fn register(ring: RxRing) -> Result<AsyncRing, (RxRing, io::Error)> {
    AsyncRing::new(ring).map_err(|err| err.into_parts())
}
