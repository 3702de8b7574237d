// SPDX-License-Identifier: GPL-2.0

//! Our page source: the host kernel's page allocator (LDD3 chapter 8,
//! "get_free_page and Friends"), counted per zone, with fault injection.
//!
//! Every run of pages our caches and pools use comes from
//! [`KernelPages::alloc_pages`] and goes back through
//! [`KernelPages::free_pages`], so the counters here prove at unload that
//! every page came back ([`KernelPages::check_empty`]).
//!
//! # How the zone of a page is found on x86-64
//!
//! `page_zonenum()` is a static inline the Rust bindings cannot call, but on
//! x86-64 the zones are plain physical address ranges: ZONE_DMA is the first
//! 16 MiB (the ISA DMA limit), ZONE_DMA32 the rest below 4 GiB, ZONE_NORMAL
//! everything above (there is no ZONE_HIGHMEM on 64-bit: all of RAM is in
//! the direct map). ZONE_MOVABLE only exists when `movablecore=`/
//! `kernelcore=` carve it out, and then also lies above 4 GiB; the test VM
//! does not use it. So the physical address from `slow_virt_to_phys()` (a
//! page-table walk, valid for direct-map and vmalloc addresses alike) tells
//! the zone: see [`zone_of_phys`].

use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use kernel::{bindings, prelude::*};

use crate::allocator::page_source::{PageRequest, PageSource, MAX_ORDER};

pub(crate) use crate::allocator::page_source::PAGE_SIZE;

/// Largest page order the scullp store accepts for one quantum (8 pages).
pub(crate) const STORE_MAX_ORDER: u32 = 3;

/// Zones as the ABI numbers them ([`crate::uapi::zone`]).
pub(crate) const ZONES: usize = 3;

/// The zone index of a physical address (see the module docs).
pub(crate) fn zone_of_phys(phys: u64) -> usize {
    if phys < 16 << 20 {
        0
    } else if phys < 4 << 30 {
        1
    } else {
        2
    }
}

/// The physical address behind a kernel virtual address (direct map or
/// vmalloc), by walking the page tables.
pub(crate) fn virt_to_phys(addr: usize) -> u64 {
    // SAFETY: `slow_virt_to_phys` only reads page tables; for an unmapped
    // address it returns garbage, never faults. Callers pass mapped memory.
    unsafe { bindings::slow_virt_to_phys(addr as *mut _) }
}

/// Deterministic failure of our page allocations (LDD3's advice to test the
/// failure paths, made reproducible; the kernel's fail_page_alloc is random).
pub(crate) struct FaultInjection {
    /// Fail this many more allocations (counting down).
    fail_next: AtomicI64,
    /// Fail every allocation while set.
    fail_all: AtomicBool,
    /// Only allocations for this owner fail (0: any owner).
    only_owner: AtomicU32,
    /// Allocations failed on purpose.
    injected: AtomicU64,
}

impl FaultInjection {
    /// Arms the injector: fail the next `next` allocations, or all while
    /// `all`, for `owner` only if not 0.
    pub(crate) fn set(&self, next: i64, all: bool, owner: u32) {
        self.only_owner.store(owner, Ordering::Relaxed);
        self.fail_next.store(next.max(0), Ordering::Relaxed);
        self.fail_all.store(all, Ordering::Release);
    }

    /// (pending next-failures, fail-all, owner, injected so far).
    pub(crate) fn state(&self) -> (i64, bool, u32, u64) {
        (
            self.fail_next.load(Ordering::Relaxed),
            self.fail_all.load(Ordering::Relaxed),
            self.only_owner.load(Ordering::Relaxed),
            self.injected.load(Ordering::Relaxed),
        )
    }

    fn should_fail(&self, owner: u32) -> bool {
        let only = self.only_owner.load(Ordering::Relaxed);
        if only != 0 && only != owner {
            return false;
        }
        let fail = self.fail_all.load(Ordering::Acquire)
            || self
                .fail_next
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                    (n > 0).then(|| n - 1)
                })
                .is_ok();
        if fail {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        fail
    }
}

/// Counters of one zone.
struct ZoneCounters {
    pages_out: AtomicI64,
    allocs: AtomicU64,
    frees: AtomicU64,
}

impl ZoneCounters {
    const fn new() -> Self {
        Self {
            pages_out: AtomicI64::new(0),
            allocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
        }
    }
}

/// The host page allocator as a [`PageSource`], with counters.
pub(crate) struct KernelPages {
    zones: [ZoneCounters; ZONES],
    failures: AtomicU64,
    /// The fault injector for every page allocation of the module's caches.
    pub(crate) faults: FaultInjection,
}

/// A snapshot of the page counters.
#[derive(Clone, Copy, Default)]
pub(crate) struct PageCounts {
    /// Pages out now, per zone.
    pub(crate) pages_out: [i64; ZONES],
    /// Runs allocated, per zone.
    pub(crate) allocs: [u64; ZONES],
    /// Runs freed, per zone.
    pub(crate) frees: [u64; ZONES],
    /// Allocations the kernel refused.
    pub(crate) failures: u64,
    /// Allocations failed by the injector.
    pub(crate) injected: u64,
}

/// The module's one page source.
pub(crate) static PAGES: KernelPages = KernelPages::new();

impl KernelPages {
    const fn new() -> Self {
        Self {
            zones: [
                ZoneCounters::new(),
                ZoneCounters::new(),
                ZoneCounters::new(),
            ],
            failures: AtomicU64::new(0),
            faults: FaultInjection {
                fail_next: AtomicI64::new(0),
                fail_all: AtomicBool::new(false),
                only_owner: AtomicU32::new(0),
                injected: AtomicU64::new(0),
            },
        }
    }

    /// Allocates a run for `owner` (a cache id, for targeted fault injection).
    pub(crate) fn alloc_for(
        &self,
        owner: u32,
        order: u32,
        req: PageRequest,
    ) -> Option<NonNull<u8>> {
        if order > MAX_ORDER || self.faults.should_fail(owner) {
            return None;
        }
        // SAFETY: FFI call; any flags and an order <= MAX_ORDER are accepted.
        let addr =
            unsafe { bindings::get_free_pages_noprof(crate::kalloc::gfp::of_request(req), order) };
        let Some(run) = NonNull::new(addr as *mut u8) else {
            self.failures.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let zone = &self.zones[zone_of_phys(virt_to_phys(addr as usize))];
        zone.pages_out.fetch_add(1 << order, Ordering::Relaxed);
        zone.allocs.fetch_add(1, Ordering::Relaxed);
        Some(run)
    }

    /// A snapshot of the counters.
    pub(crate) fn counts(&self) -> PageCounts {
        let mut c = PageCounts::default();
        for (i, z) in self.zones.iter().enumerate() {
            c.pages_out[i] = z.pages_out.load(Ordering::Relaxed);
            c.allocs[i] = z.allocs.load(Ordering::Relaxed);
            c.frees[i] = z.frees.load(Ordering::Relaxed);
        }
        c.failures = self.failures.load(Ordering::Relaxed);
        c.injected = self.faults.state().3;
        c
    }

    /// At unload: every page must be back. Logs what leaked, per zone.
    pub(crate) fn check_empty(&self) -> bool {
        let c = self.counts();
        let names = ["DMA", "DMA32", "Normal"];
        let mut clean = true;
        for (name, out) in names.iter().zip(c.pages_out) {
            if out != 0 {
                pr_err!("{out} pages leaked in zone {name}\n");
                clean = false;
            }
        }
        clean
    }
}

impl PageSource for KernelPages {
    fn alloc_pages(&self, order: u32, req: PageRequest) -> Option<NonNull<u8>> {
        self.alloc_for(0, order, req)
    }

    unsafe fn free_pages(&self, run: NonNull<u8>, order: u32) {
        let zone = &self.zones[zone_of_phys(virt_to_phys(run.as_ptr() as usize))];
        zone.pages_out.fetch_sub(1 << order, Ordering::Relaxed);
        zone.frees.fetch_add(1, Ordering::Relaxed);
        // SAFETY: The caller guarantees `run` came from `alloc_pages(order)`
        // (that is, `__get_free_pages`) and is no longer used.
        unsafe { bindings::free_pages(run.as_ptr() as kernel::ffi::c_ulong, order) };
    }

    fn read_nofault(&self, addr: usize, out: &mut [u8]) -> bool {
        // SAFETY: `copy_from_kernel_nofault` checks the source and returns an
        // error instead of faulting; `out` is valid for `out.len()` bytes.
        unsafe {
            bindings::copy_from_kernel_nofault(out.as_mut_ptr().cast(), addr as *const _, out.len())
                == 0
        }
    }
}
