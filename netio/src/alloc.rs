//! [`Counting`]: the system allocator with a count of the heap bytes live, for the benchmarks
//! that say how much memory a tunnel takes (`cargo bench -p l2tpkit-bench --bench memory`).
//! It lives here because a `GlobalAlloc` is `unsafe` to implement, and this is the workspace's
//! one crate with `unsafe` code. No shipped binary installs it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

/// Install with `#[global_allocator] static A: Counting = Counting;`.
pub struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

/// Heap bytes allocated and not yet freed, as the callers asked for them (the allocator's own
/// rounding and headers not counted).
pub fn live_bytes() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn count(delta: usize, sign: isize) {
    let delta = isize::try_from(delta).unwrap_or(isize::MAX);
    LIVE.fetch_add(sign.saturating_mul(delta), Ordering::Relaxed);
}

// SAFETY: every method hands the caller's layout and pointer to `System` unchanged, so the
// contract `GlobalAlloc` asks of the caller is the one `System` gets; the count has no effect
// on the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout, as GlobalAlloc::alloc requires it (non-zero size).
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            count(layout.size(), 1);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for alloc.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count(layout.size(), 1);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from this allocator (so from System) with this layout.
        unsafe { System.dealloc(ptr, layout) };
        count(layout.size(), -1);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: ptr came from System with this layout; new_size is the caller's, non-zero.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            count(layout.size(), -1);
            count(new_size, 1);
        }
        new
    }
}
