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
//! page-table walk, valid for direct-map and vmalloc addresses alike:
//! [`kernel_alloc::virt_to_phys`]) tells the zone: see [`zone_of_phys`].

use core::ptr::NonNull;
use core::sync::atomic::{
    AtomicI64,
    AtomicU64,
    Ordering, //
};
use kernel::prelude::*;

use super::faults::FaultInjection;
use super::kernel_alloc;
use crate::allocator::page_source::{
    PageRequest,
    PageSource,
    MAX_ORDER, //
};

pub(crate) use crate::allocator::page_source::PAGE_SIZE;

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
            faults: FaultInjection::new(),
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
        let Some(run) = kernel_alloc::get_free_pages(super::gfp::of_request(req), order) else {
            self.failures.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        // SAFETY: `run` is a live run of pages in the direct map.
        let phys = unsafe { kernel_alloc::virt_to_phys(run.as_ptr() as usize) };
        let zone = &self.zones[zone_of_phys(phys)];
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

    /// The counters as `LDD_IOC_PAGE_STATS` reports them.
    pub(crate) fn abi_stats(&self) -> crate::uapi::PageStats {
        let c = self.counts();
        let (fail_next, fail_all, fail_owner, _) = self.faults.state();
        crate::uapi::PageStats {
            pages_out: c.pages_out,
            allocs: c.allocs,
            frees: c.frees,
            failures: c.failures,
            injected: c.injected,
            fail_next,
            fail_all: u32::from(fail_all),
            fail_owner,
        }
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
        // SAFETY: `run` is still ours and mapped (the caller's contract).
        let phys = unsafe { kernel_alloc::virt_to_phys(run.as_ptr() as usize) };
        let zone = &self.zones[zone_of_phys(phys)];
        zone.pages_out.fetch_sub(1 << order, Ordering::Relaxed);
        zone.frees.fetch_add(1, Ordering::Relaxed);
        // SAFETY: The caller guarantees `run` came from `alloc_pages(order)`
        // (that is, `__get_free_pages`) and is no longer used.
        unsafe { kernel_alloc::free_pages(run, order) };
    }

    fn read_nofault(&self, addr: usize, out: &mut [u8]) -> bool {
        // SAFETY: `copy_from_kernel_nofault` checks the source and returns an
        // error instead of faulting; `out` is valid for `out.len()` bytes.
        unsafe {
            kernel::bindings::copy_from_kernel_nofault(
                out.as_mut_ptr().cast(),
                addr as *const _,
                out.len(),
            ) == 0
        }
    }
}
