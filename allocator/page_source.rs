// SPDX-License-Identifier: GPL-2.0

//! The page allocator underneath the caches.
//!
//! LDD3 chapter 8 ("get_free_page and Friends") describes `__get_free_pages`:
//! the buddy allocator hands out runs of `2^order` contiguous pages, and a
//! caller says where they may come from (`__GFP_DMA`, `__GFP_DMA32`, or no
//! zone modifier) and how hard to try (`GFP_KERNEL` may sleep, `GFP_ATOMIC`
//! may not, `__GFP_NORETRY`, `__GFP_NOWARN`). [`PageSource`] is exactly that
//! interface: the kernel glue implements it with `alloc_pages`/`__free_pages`,
//! the userspace tests with `mmap`. Everything above this trait is the same
//! code in both places.

use core::ptr::NonNull;

/// The number of bytes in a page (the slab core assumes 4 KiB pages).
pub const PAGE_SIZE: usize = 4096;

/// `log2(PAGE_SIZE)`.
pub const PAGE_SHIFT: u32 = 12;

/// The largest order a [`PageSource`] is ever asked for (`MAX_PAGE_ORDER`).
pub const MAX_ORDER: u32 = 10;

/// Where the pages may come from: the zone modifier of the GFP flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    /// `__GFP_DMA`: the ISA DMA zone (below 16 MiB on x86).
    Dma,
    /// `__GFP_DMA32`: below 4 GiB.
    Dma32,
    /// No zone modifier: the page allocator decides (it may still land in
    /// DMA32 on a small machine).
    Normal,
}

/// What a caller asks of the page allocator; the glue turns it into GFP flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    /// The zone the pages must come from.
    pub zone: Zone,
    /// The caller may sleep (`GFP_KERNEL`); otherwise `GFP_ATOMIC`/`GFP_NOWAIT`.
    pub may_sleep: bool,
    /// `__GFP_NORETRY`: fail rather than retry reclaim hard.
    pub no_retry: bool,
    /// `__GFP_NOWARN`: a failure is expected and must not splat.
    pub no_warn: bool,
    /// `__GFP_HIGH`: a non-sleeping request may dip into the emergency
    /// reserve (`GFP_ATOMIC`); without it, it is `GFP_NOWAIT`.
    pub high: bool,
}

impl PageRequest {
    /// `GFP_KERNEL`: normal zone, may sleep.
    pub const KERNEL: Self = Self {
        zone: Zone::Normal,
        may_sleep: true,
        no_retry: false,
        no_warn: false,
        high: false,
    };

    /// `GFP_ATOMIC`: normal zone, never sleeps.
    pub const ATOMIC: Self = Self {
        zone: Zone::Normal,
        may_sleep: false,
        no_retry: false,
        no_warn: false,
        high: true,
    };

    /// The opportunistic attempt `mempool_alloc` makes before touching its
    /// reserve: never sleep, never retry, never warn, same zone.
    pub const fn opportunistic(self) -> Self {
        Self {
            zone: self.zone,
            may_sleep: false,
            no_retry: true,
            no_warn: true,
            high: false,
        }
    }
}

/// A source of naturally aligned runs of pages (the buddy allocator).
///
/// Implementations must be usable from many CPUs at once, hence `Sync`.
pub trait PageSource: Sync {
    /// Allocates a run of `PAGE_SIZE << order` bytes, aligned to
    /// `PAGE_SIZE << order`, or returns `None`.
    ///
    /// The slab core relies on the natural alignment: it finds an object's
    /// slab header by masking the object address with the run size.
    fn alloc_pages(&self, order: u32, req: PageRequest) -> Option<NonNull<u8>>;

    /// Returns a run obtained from [`PageSource::alloc_pages`].
    ///
    /// # Safety
    ///
    /// `run` must have been returned by `alloc_pages(order, _)` on this
    /// source, must not have been freed since, and nothing may access the run
    /// after this call.
    unsafe fn free_pages(&self, run: NonNull<u8>, order: u32);

    /// Copies `out.len()` bytes at `addr` into `out` without faulting.
    ///
    /// Returns `false` if the range is not readable memory. The kernel glue
    /// uses `copy_from_kernel_nofault`; the userspace source only accepts
    /// ranges inside a live run. The slab core uses this to read a supposed
    /// slab header for a pointer it has not validated yet.
    fn read_nofault(&self, addr: usize, out: &mut [u8]) -> bool;
}

/// The number of bytes in a run of `2^order` pages, `None` if `order` is
/// above [`MAX_ORDER`].
pub const fn order_bytes(order: u32) -> Option<usize> {
    if order > MAX_ORDER {
        return None;
    }
    Some(PAGE_SIZE << order)
}
