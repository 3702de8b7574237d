// SPDX-License-Identifier: GPL-2.0

//! The allocator under test, and the loops that time it: alloc+free pairs
//! and bursts (N allocations, then N frees; bulk for the kernel's cache).

use core::ptr::NonNull;
use kernel::ffi::c_void;
use kernel::{
    bindings,
    prelude::*, //
};

use crate::kalloc::caches::{
    self,
    CacheRef, //
};
use crate::kalloc::kernel_alloc;
use crate::kalloc::kernel_caches::KernelCache;
use crate::kalloc::kernel_pools::KernelPool;
use crate::kalloc::pages::PAGE_SIZE;
use crate::kalloc::pools::{
    self,
    PoolRef, //
};
use crate::uapi::{
    bench_alloc as ba,
    bench_op as bo, //
};

/// Loops check for a pending signal every this many iterations.
const SIGNAL_CHECK: u64 = 1 << 16;

/// The allocator under test.
pub(crate) enum Target {
    Ours(CacheRef),
    OurPool(PoolRef),
    Kmem(KernelCache),
    Kmalloc(usize),
    KPool(KernelPool),
    Pages(u32),
    FreePages(u32),
    Vmalloc(usize),
}

impl Target {
    /// The target `alloc` ([`ba`]) for objects of `size` (an order for the
    /// page backends) in operation `op`.
    pub(crate) fn new(alloc: u32, size: u32, op: u32) -> Result<Self> {
        Ok(match alloc {
            ba::OUR_CACHE | ba::OUR_BULK => Self::Ours(caches::get(size as usize, 0)?),
            ba::KMEM_CACHE | ba::KMEM_BULK => {
                Self::Kmem(KernelCache::create("ldd_bench", size as usize)?)
            }
            ba::KMALLOC => Self::Kmalloc(size as usize),
            ba::OUR_POOL => Self::OurPool(pools::get(size as usize)?),
            ba::KERNEL_POOL => Self::KPool(KernelPool::new(size as usize, op == bo::RESERVE)?),
            ba::KERNEL_POOL_OURS => Self::KPool(KernelPool::over_our_cache(size as usize)?),
            ba::ALLOC_PAGES => Self::Pages(size),
            ba::GET_FREE_PAGES => Self::FreePages(size),
            ba::VMALLOC => Self::Vmalloc(PAGE_SIZE << size),
            _ => return Err(EINVAL),
        })
    }

    /// One allocation, `GFP_KERNEL`.
    #[inline(always)]
    pub(crate) fn alloc(&self) -> Option<NonNull<u8>> {
        let gfp = bindings::GFP_KERNEL;
        match self {
            Self::Ours(c) => c.alloc(false).ok(),
            Self::OurPool(p) => p.alloc(true).ok(),
            Self::Kmem(c) => c.alloc(gfp),
            Self::Kmalloc(size) => kernel_alloc::kmalloc(*size, gfp),
            Self::KPool(p) => p.alloc(gfp),
            Self::Pages(order) => kernel_alloc::alloc_pages(gfp, *order).map(NonNull::cast),
            Self::FreePages(order) => kernel_alloc::get_free_pages(gfp, *order),
            Self::Vmalloc(size) => kernel_alloc::vmalloc(*size, gfp),
        }
    }

    /// Frees what [`Self::alloc`] gave; false if the allocator refused.
    ///
    /// # Safety
    ///
    /// `p` came from `self.alloc()` and is not used afterwards.
    #[inline(always)]
    pub(crate) unsafe fn free(&self, p: NonNull<u8>) -> bool {
        // In each arm `p` came from the matching allocation (contract).
        match self {
            Self::Ours(c) => return c.free(p).is_ok(),
            // SAFETY: As above.
            Self::OurPool(pool) => unsafe { pool.free(p) },
            // SAFETY: As above.
            Self::Kmem(c) => unsafe { c.free(p) },
            // SAFETY: As above.
            Self::Kmalloc(_) => unsafe { kernel_alloc::kfree(p) },
            // SAFETY: As above.
            Self::KPool(pool) => unsafe { pool.free(p) },
            // SAFETY: As above: a `struct page` run of this order.
            Self::Pages(order) => unsafe { kernel_alloc::free_page_run(p.cast(), *order) },
            // SAFETY: As above.
            Self::FreePages(order) => unsafe { kernel_alloc::free_pages(p, *order) },
            // SAFETY: As above.
            Self::Vmalloc(_) => unsafe { kernel_alloc::kvfree(p) },
        }
        true
    }
}

/// Whether the calling task should stop (a signal is pending).
fn interrupted(i: u64) -> bool {
    i % SIGNAL_CHECK == SIGNAL_CHECK - 1 && kernel::current!().signal_pending()
}

/// `n` alloc+free pairs; returns the failures, or EINTR on a signal.
#[inline(always)]
pub(crate) fn pairs(t: &Target, n: u64, check_signals: bool) -> Result<u64> {
    let mut failed = 0u64;
    for i in 0..n {
        if check_signals && interrupted(i) {
            return Err(EINTR);
        }
        match t.alloc() {
            // SAFETY: Just allocated by `t`, freed once, not used after.
            Some(p) => failed += u64::from(!unsafe { t.free(p) }),
            None => failed += 1,
        }
    }
    Ok(failed)
}

/// The burst array as our cache's bulk calls take it.
fn ptrs_as_bytes(ptrs: &mut [*mut c_void]) -> &mut [*mut u8] {
    // SAFETY: `*mut c_void` and `*mut u8` have the same size, alignment
    // and validity; the new slice borrows the same memory exclusively.
    unsafe { core::slice::from_raw_parts_mut(ptrs.as_mut_ptr().cast::<*mut u8>(), ptrs.len()) }
}

/// `rounds` bursts of `ptrs.len()` allocations then as many frees; bulk
/// with `bulk` (a [`Target::Kmem`] or [`Target::Ours`]). Returns the
/// failures, or EINTR.
pub(crate) fn bursts(t: &Target, bulk: bool, ptrs: &mut [*mut c_void], rounds: u64) -> Result<u64> {
    let mut failed = 0u64;
    for round in 0..rounds {
        if kernel::current!().signal_pending() && round != 0 {
            return Err(EINTR);
        }
        if bulk {
            match t {
                Target::Kmem(c) => {
                    if !c.alloc_bulk(bindings::GFP_KERNEL, ptrs) {
                        // Nothing was allocated.
                        failed += 1;
                        continue;
                    }
                    // SAFETY: `ptrs` holds objects of this cache, just
                    // allocated.
                    unsafe { c.free_bulk(ptrs) };
                }
                Target::Ours(c) => {
                    let out: &mut [*mut u8] = ptrs_as_bytes(ptrs);
                    if c.alloc_bulk(false, out).is_err() {
                        failed += 1;
                        continue;
                    }
                    failed += c.free_bulk(out) as u64;
                }
                _ => return Ok(1),
            }
            continue;
        }
        for slot in ptrs.iter_mut() {
            *slot = t
                .alloc()
                .map_or(core::ptr::null_mut(), |p| p.as_ptr().cast());
        }
        for slot in ptrs.iter() {
            match NonNull::new(slot.cast::<u8>()) {
                // SAFETY: Allocated by `t` above, freed once.
                Some(p) => failed += u64::from(!unsafe { t.free(p) }),
                None => failed += 1,
            }
        }
    }
    Ok(failed)
}
