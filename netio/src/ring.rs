//! A receive ring (AF_PACKET, TPACKET_V2, memory-mapped) on one interface: the kernel copies
//! each frame the filter takes into the ring and the reader takes frames from it without a
//! system call per packet or per batch (PEERS.md: the fastest receive path measured here).
//! Frames are worked on in place, sent on from there (sendmmsg reads them out of the ring) and
//! then handed back with [`RxRing::release`].
//!
//! The mapping is the one place no crate covers: the kernel and we share it, handing each
//! frame over through its status word.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sys::socket::{getsockopt, setsockopt};
use socket2::{SockFilter, Socket};

use crate::packet::{self, PacketRxRing, PacketStatistics, PacketVersion};

/// tpacket_versions: TPACKET_V2 (libc does not name it).
const TPACKET_V2: libc::c_int = 1;

/// An [`RxRing`] registered with tokio.
pub type AsyncRing = crate::reactor::AsyncSocket<RxRing>;

/// A TPACKET_V2 receive ring on one interface, behind a BPF filter.
pub struct RxRing {
    socket: Socket,
    map: Mapping,
    frame_size: usize,
    frames: usize,
    /// The next frame the kernel fills, in order.
    next: usize,
}

/// The ring's memory, unmapped when dropped.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping belongs to its one RxRing (nothing else holds its address), so moving
// the value to another thread moves the only access to it.
unsafe impl Send for Mapping {}

/// One frame in an [`RxRing`].
pub struct RingFrame<'a> {
    /// From the link-layer header on (the Ethernet header for SOCK_RAW on Ethernet).
    pub data: &'a mut [u8],
    /// Where the IPv4 header starts in `data`.
    pub network: usize,
    /// The frame was longer than the ring's frames: `data` holds only its start.
    pub truncated: bool,
    /// The UDP/TCP checksum is not filled in yet (TP_STATUS_CSUMNOTREADY: locally sent, or
    /// checksum offload): recompute it before trusting or updating it.
    pub checksum_partial: bool,
}

/// What a frame's header says, checked against the frame's bounds.
struct Slot {
    /// Offset of the frame's data from the start of the mapping.
    start: usize,
    snap: usize,
    network: usize,
    truncated: bool,
    checksum_partial: bool,
}

impl RxRing {
    /// Frames of this many bytes (header included) hold a 1500-byte-MTU frame whole.
    const FRAME: usize = 2048;
    /// 512 blocks of 64 frames: 32,768 frames, 64 MB (kernel memory, taken at open). The ring
    /// is the NAT's only queue: a storm of 10,000 PPP subscribers through FIG 2 backs up more
    /// than 8192 frames while the NAT shares two CPUs with everything else, and every frame
    /// lost there costs a subscriber a 1 s L2TP or 3 s PPP restart (BENCHMARKS.md, issue 13).
    const BLOCK: usize = 64 * RxRing::FRAME;
    const BLOCKS: usize = 512;

    /// Opens a ring on `interface` for IPv4 frames that `filter` takes (attached before the
    /// socket is bound, so nothing else gets in). Frames longer than ~1.9 KB arrive truncated.
    pub fn open(interface: &str, filter: &[SockFilter]) -> io::Result<RxRing> {
        let map_len = RxRing::BLOCK * RxRing::BLOCKS;
        let mut map = None;
        let socket = packet::open(interface, libc::ETH_P_IP as u16, |socket| {
            socket.attach_filter(filter)?;
            setsockopt(socket, PacketVersion, &TPACKET_V2)?;
            let request = libc::tpacket_req {
                tp_block_size: RxRing::BLOCK as u32,
                tp_block_nr: RxRing::BLOCKS as u32,
                tp_frame_size: RxRing::FRAME as u32,
                tp_frame_nr: (RxRing::BLOCK / RxRing::FRAME * RxRing::BLOCKS) as u32,
            };
            setsockopt(socket, PacketRxRing, &request)?;
            map = Some(map_ring(socket.as_fd(), map_len)?);
            Ok(())
        })?;
        let map = map.ok_or_else(|| io::Error::other("the ring was not mapped"))?;
        Ok(RxRing {
            socket,
            map,
            frame_size: RxRing::FRAME,
            frames: map_len / RxRing::FRAME,
            next: 0,
        })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    fn status(&self, index: usize) -> &AtomicU32 {
        debug_assert!(index < self.frames);
        // SAFETY: index < frames, so the frame lies inside the mapping; tp_status is the first
        // field of its header, 4-byte aligned (frames are page-aligned multiples of 16), and
        // the kernel and we hand the frame over through it: an atomic view is the way to read
        // and write it.
        unsafe { &*(self.map.ptr.as_ptr().add(index * self.frame_size) as *const AtomicU32) }
    }

    /// The header of frame `index` (taken, not yet released), checked against its frame.
    fn slot(&self, index: usize) -> Option<Slot> {
        if index >= self.frames {
            return None;
        }
        let base = index * self.frame_size;
        // SAFETY: the header lies inside the mapping (index < frames), and the frame is ours
        // until released (its status says so): the kernel does not write it meanwhile.
        let header =
            unsafe { std::ptr::read(self.map.ptr.as_ptr().add(base) as *const libc::tpacket2_hdr) };
        let mac = usize::from(header.tp_mac);
        let snap = header.tp_snaplen as usize;
        if mac + snap > self.frame_size {
            return None;
        }
        Some(Slot {
            start: base + mac,
            snap,
            network: usize::from(header.tp_net).checked_sub(mac)?,
            truncated: header.tp_len > header.tp_snaplen,
            checksum_partial: header.tp_status & libc::TP_STATUS_CSUMNOTREADY != 0,
        })
    }

    /// Takes the frames the kernel has handed over, in order, up to `out.len()`: their indices
    /// go into `out`. Returns how many. Each must be [`release`](RxRing::release)d.
    pub fn take(&mut self, out: &mut [usize]) -> usize {
        let mut count = 0;
        for slot in out.iter_mut() {
            let status = self.status(self.next).load(Ordering::Acquire);
            if status & libc::TP_STATUS_USER == 0 {
                break;
            }
            *slot = self.next;
            self.next = (self.next + 1) % self.frames;
            count += 1;
        }
        count
    }

    /// Frame `index` (taken, not yet released).
    pub fn frame(&mut self, index: usize) -> Option<RingFrame<'_>> {
        let slot = self.slot(index)?;
        // SAFETY: [start, start + snap) lies inside this frame (checked in `slot`), which only
        // we touch until release; the borrow of `self` keeps another `frame` call from
        // aliasing it.
        let data = unsafe {
            std::slice::from_raw_parts_mut(self.map.ptr.as_ptr().add(slot.start), slot.snap)
        };
        Some(RingFrame {
            data,
            network: slot.network,
            truncated: slot.truncated,
            checksum_partial: slot.checksum_partial,
        })
    }

    /// `len` bytes of frame `index` from `offset` into its data (as [`RingFrame::data`]).
    pub fn bytes(&self, index: usize, offset: usize, len: usize) -> Option<&[u8]> {
        let slot = self.slot(index)?;
        if offset.checked_add(len)? > slot.snap {
            return None;
        }
        // SAFETY: the range lies inside the frame, checked above; read-only, and `&self`
        // keeps `frame` from handing out the same bytes mutably meanwhile.
        Some(unsafe {
            std::slice::from_raw_parts(self.map.ptr.as_ptr().add(slot.start + offset), len)
        })
    }

    /// Hands frame `index` back to the kernel.
    pub fn release(&mut self, index: usize) {
        if index < self.frames {
            self.status(index)
                .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        }
    }

    /// Frames the ring had no room for since the last call (PACKET_STATISTICS, which resets).
    pub fn drops(&self) -> io::Result<u64> {
        let stats = getsockopt(&self.socket, PacketStatistics)?;
        Ok(u64::from(stats.tp_drops))
    }
}

/// Maps the ring the kernel made for `fd` (PACKET_RX_RING), read-write and shared.
fn map_ring(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
    // SAFETY: a fresh mapping of the socket's ring, at an address the kernel picks; the
    // result is checked before use, and `Mapping`'s Drop unmaps it once.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if map == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let ptr = NonNull::new(map as *mut u8).ok_or_else(|| io::Error::other("mmap returned null"))?;
    Ok(Mapping { ptr, len })
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map_ring`, once; nothing borrows it now
        // (frames borrow their RxRing, which owns this).
        unsafe {
            libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.len);
        }
    }
}

impl AsFd for RxRing {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}
