//! Waiting on several descriptors at once, for a thread that has no tokio runtime.

use std::io;
use std::time::Duration;

pub use libc::pollfd;

/// Waits until one of `fds` is readable, or `timeout` (rounded up to whole milliseconds)
/// has passed: poll(2). Their `revents` say which; returns how many are ready (0: the
/// timeout). A signal ends the wait early with `Ok(0)`.
///
/// Plain `pollfd`s rather than nix's `PollFd`, which borrows each descriptor: the lab's switch
/// keeps its array across wake-ups while it reads from the ports mutably.
pub fn poll_readable(fds: &mut [pollfd], timeout: Duration) -> io::Result<usize> {
    let millis = i32::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
    for fd in fds.iter_mut() {
        fd.events = libc::POLLIN;
        fd.revents = 0;
    }
    // SAFETY: fds is a live, exclusively borrowed array of pollfd of the length passed; poll
    // writes only their revents. A descriptor that is not open just reports POLLNVAL.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
    if ready < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(err);
    }
    Ok(ready as usize)
}
