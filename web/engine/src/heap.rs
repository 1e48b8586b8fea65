//! Counts the bytes the program holds, so the player can keep its checkpoints within a
//! budget and stop a run before it exhausts the tab's memory (a WASM module that runs out
//! traps and leaves a frozen page, with no panic to report). The system allocator does the
//! work; this only keeps a running total.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is handed to the system allocator unchanged, with the caller's
// guarantees; the counter is all that is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as the caller guarantees for `GlobalAlloc::alloc`.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as the caller guarantees for `GlobalAlloc::alloc_zeroed`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as the caller guarantees for `GlobalAlloc::dealloc`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as the caller guarantees for `GlobalAlloc::realloc`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Relaxed);
            LIVE.fetch_add(new_size, Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated and not yet freed, program-wide.
pub fn live_bytes() -> usize {
    LIVE.load(Relaxed)
}

/// Tests that measure memory, or allocate much, run one at a time: the count is program-wide.
#[cfg(test)]
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_counted_and_freeing_gives_them_back() {
        let _one_at_a_time = SERIAL.lock();
        // Other tests allocate at the same time: compare with margins they never reach.
        let before = live_bytes();
        let v = vec![1u8; 256 << 20];
        let held = live_bytes();
        assert!(held >= before + (200 << 20), "a 256 MiB vector is counted");
        drop(v);
        assert!(live_bytes() + (200 << 20) <= held, "and given back when dropped");
    }
}
