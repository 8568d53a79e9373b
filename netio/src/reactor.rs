//! Packet sockets on tokio, without `unsafe` at the caller.
//!
//! tokio's `AsyncFd::register` is unsafe: the descriptor must stay open and the same while it
//! is registered, and an `AsyncFd<T>` hands out `&mut T`, through which a caller could replace
//! (and so close) it. [`AsyncSocket`] registers a duplicate of the socket's descriptor that
//! it owns and never hands out, so the socket itself may be borrowed mutably, even replaced.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::io::Interest;

/// A socket (a [`Tap`](crate::tap::Tap), an [`RxRing`](crate::ring::RxRing)) whose
/// readability tokio watches.
pub struct AsyncSocket<T> {
    registered: AsyncFd<OwnedFd>,
    inner: T,
}

/// Registering failed: the socket comes back with the error.
pub struct RegisterError<T> {
    inner: T,
    error: io::Error,
}

impl<T> RegisterError<T> {
    pub fn into_parts(self) -> (T, io::Error) {
        (self.inner, self.error)
    }
}

impl<T> From<RegisterError<T>> for io::Error {
    fn from(err: RegisterError<T>) -> io::Error {
        err.error
    }
}

impl<T> fmt::Debug for RegisterError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.error, f)
    }
}

impl<T> fmt::Display for RegisterError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl<T: AsFd> AsyncSocket<T> {
    /// Registers `inner` for readability. Must be called inside a tokio runtime. A socket that
    /// already holds data is reported ready at once.
    pub fn new(inner: T) -> Result<AsyncSocket<T>, RegisterError<T>> {
        let duplicate = match inner.as_fd().try_clone_to_owned() {
            Ok(fd) => fd,
            Err(error) => return Err(RegisterError { inner, error }),
        };
        // SAFETY: the OwnedFd is ours alone (a fresh duplicate) and stays inside the AsyncFd,
        // which this type never hands out: it is open and the same for as long as it is
        // registered, and `as_raw_fd` on it always returns that descriptor.
        match unsafe { AsyncFd::register_with_interest(duplicate, Interest::READABLE) } {
            Ok(registered) => Ok(AsyncSocket { registered, inner }),
            Err(err) => Err(RegisterError {
                inner,
                error: err.into_parts().1,
            }),
        }
    }
}

impl<T> AsyncSocket<T> {
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Deregisters; the socket goes back to its owner.
    pub fn into_inner(self) -> T {
        self.inner
    }

    /// Waits until the socket is readable. Once a read finds it empty, call
    /// [`ReadyGuard::clear_ready`] so that the next wait sleeps until new data.
    pub async fn readable_mut(&mut self) -> io::Result<ReadyGuard<'_, T>> {
        let ready = self.registered.readable().await?;
        Ok(ReadyGuard {
            ready,
            inner: &mut self.inner,
        })
    }
}

/// A readiness event of an [`AsyncSocket`], with access to the socket.
pub struct ReadyGuard<'a, T> {
    ready: AsyncFdReadyGuard<'a, OwnedFd>,
    inner: &'a mut T,
}

impl<T> ReadyGuard<'_, T> {
    pub fn get_inner(&self) -> &T {
        self.inner
    }

    pub fn get_inner_mut(&mut self) -> &mut T {
        self.inner
    }

    /// The socket was read empty: wait for new data next time.
    pub fn clear_ready(&mut self) {
        self.ready.clear_ready();
    }
}
