//! sendmmsg / recvmmsg batches, written by hand: nix's safe `MultiHeaders` would do, but it
//! allocates its headers per call site and stops a whole batch at the first refused packet,
//! and these loops run once per batch in the master's, the NAT's and the load generator's hot
//! paths. Nothing here allocates.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr;

/// Packets per sendmmsg / recvmmsg call.
pub const BATCH: usize = 64;

const NO_IOV: libc::iovec = libc::iovec {
    iov_base: ptr::null_mut(),
    iov_len: 0,
};

fn no_message() -> libc::mmsghdr {
    libc::mmsghdr {
        msg_hdr: libc::msghdr {
            msg_name: ptr::null_mut(),
            msg_namelen: 0,
            msg_iov: ptr::null_mut(),
            msg_iovlen: 0,
            msg_control: ptr::null_mut(),
            msg_controllen: 0,
            msg_flags: 0,
        },
        msg_len: 0,
    }
}

/// A socket address the kernel may fill in: plain integers, so any bytes are a valid value.
pub(crate) trait RawName: Copy + private::Sealed {
    const EMPTY: Self;
}

mod private {
    pub trait Sealed {}
    impl Sealed for libc::sockaddr_in {}
    impl Sealed for libc::sockaddr_ll {}
}

impl RawName for libc::sockaddr_in {
    const EMPTY: Self = libc::sockaddr_in {
        sin_family: 0,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: 0 },
        sin_zero: [0; 8],
    };
}

impl RawName for libc::sockaddr_ll {
    const EMPTY: Self = libc::sockaddr_ll {
        sll_family: 0,
        sll_protocol: 0,
        sll_ifindex: 0,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
}

/// sendmmsg over `packets`, [`BATCH`] at a time, with the destination `name` gives each one
/// (none: the socket's connected peer, or its bound interface). A packet the kernel refuses
/// on its own (too long for the MTU, no route) is skipped, so it does not take the rest of
/// its batch with it. Returns how many packets were dealt with, in order: all of them, unless
/// a non-blocking socket's buffer filled up (then the ones after that are left, and
/// `Err(WouldBlock)` if that was the first). An error is returned when not one packet went out.
pub(crate) fn send(
    fd: BorrowedFd<'_>,
    packets: &[&[u8]],
    name: impl Fn(&[u8]) -> Option<libc::sockaddr_in>,
) -> io::Result<usize> {
    let mut done = 0;
    let mut went_out = 0;
    let mut first_error = None;
    for chunk in packets.chunks(BATCH) {
        let mut names = [libc::sockaddr_in::EMPTY; BATCH];
        let mut iovs = [NO_IOV; BATCH];
        let mut msgs = [no_message(); BATCH];
        for (i, packet) in chunk.iter().enumerate() {
            iovs[i] = libc::iovec {
                iov_base: packet.as_ptr() as *mut libc::c_void,
                iov_len: packet.len(),
            };
            let hdr = &mut msgs[i].msg_hdr;
            hdr.msg_iov = &mut iovs[i];
            hdr.msg_iovlen = 1;
            if let Some(addr) = name(packet) {
                names[i] = addr;
                hdr.msg_name = &mut names[i] as *mut libc::sockaddr_in as *mut libc::c_void;
                hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            }
        }
        let mut offset = 0;
        while offset < chunk.len() {
            // SAFETY: msgs[offset..chunk.len()] describe live buffers (the packets, iovs and
            // names outlive the call; the kernel only reads them); the count passed does not
            // exceed that slice.
            let n = unsafe {
                libc::sendmmsg(
                    fd.as_raw_fd(),
                    msgs[offset..].as_mut_ptr(),
                    (chunk.len() - offset) as u32,
                    0,
                )
            };
            if n >= 0 {
                offset += n as usize;
                went_out += n as usize;
                continue;
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock if done + offset == 0 => return Err(err),
                io::ErrorKind::WouldBlock => return Ok(done + offset),
                // The packet at `offset` failed: skip it, keep the first error.
                _ => {
                    tracing::debug!(%err, "a packet of a batch was refused");
                    first_error.get_or_insert(err);
                    offset += 1;
                }
            }
        }
        done += chunk.len();
    }
    match first_error {
        Some(err) if went_out == 0 => Err(err),
        _ => Ok(done),
    }
}

/// One recvmmsg (MSG_DONTWAIT) into `buffers` (at most [`BATCH`]), each filled from `skip`
/// on, with each sender's address in `names`; `lens` gets each datagram's length (cut to its
/// buffer). Returns how many came; `Err(WouldBlock)` when none was waiting.
pub(crate) fn recv<N: RawName>(
    fd: BorrowedFd<'_>,
    buffers: &mut [Vec<u8>],
    skip: usize,
    names: &mut [N; BATCH],
    lens: &mut [usize],
) -> io::Result<usize> {
    let n = buffers.len().min(BATCH).min(lens.len());
    let mut iovs = [NO_IOV; BATCH];
    let mut msgs = [no_message(); BATCH];
    for (i, buffer) in buffers.iter_mut().take(n).enumerate() {
        let room = buffer.get_mut(skip..).unwrap_or_default();
        iovs[i] = libc::iovec {
            iov_base: room.as_mut_ptr() as *mut libc::c_void,
            iov_len: room.len(),
        };
        let hdr = &mut msgs[i].msg_hdr;
        hdr.msg_iov = &mut iovs[i];
        hdr.msg_iovlen = 1;
        hdr.msg_name = &mut names[i] as *mut N as *mut libc::c_void;
        hdr.msg_namelen = std::mem::size_of::<N>() as u32;
    }
    // SAFETY: msgs[..n] point into live, exclusively borrowed buffers and names of the sizes
    // given, which outlive the call; any bytes the kernel writes into a name are a valid
    // value of it (RawName: plain integers).
    let got = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr(),
            n as u32,
            libc::MSG_DONTWAIT,
            ptr::null_mut(),
        )
    };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    let got = got as usize;
    if got == 0 {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    for (i, len) in lens.iter_mut().enumerate().take(got) {
        *len = (msgs[i].msg_len as usize).min(iovs[i].iov_len);
    }
    Ok(got)
}
