// SPDX-License-Identifier: GPL-2.0

//! Large buffers from the page allocator (LDD3 chapter 8, "Obtaining Large
//! Buffers"): what a module does today instead of `alloc_bootmem()`, which
//! only the boot code may call.
//!
//! - `alloc_pages_exact(size)`: a run of `DIV_ROUND_UP(size, PAGE_SIZE)`
//!   pages. It takes the order that holds `size` and frees the tail pages
//!   at once (`make_alloc_exact()`, mm/page_alloc.c), so five pages cost
//!   five, not the eight an order-3 run would hold; still bounded by
//!   `MAX_PAGE_ORDER` (4 MiB).
//! - `alloc_contig_pages(nr_pages)`: a physically contiguous range of any
//!   length, found by scanning the zones for a range whose pages are free
//!   or movable and migrating the movable ones away (CONFIG_CONTIG_ALLOC,
//!   the machinery behind CMA and gigantic huge pages). It may sleep for
//!   long and accepts only reclaim and a few action flags
//!   (`__alloc_contig_verify_gfp_mask()`).

use core::ptr::NonNull;
use kernel::bindings;

use super::gfp::Gfp;
use super::kernel_alloc::{
    page_address,
    virt_to_phys, //
};
use super::pages::PAGE_SIZE;

/// `alloc_pages_exact(size, gfp)`.
pub(crate) fn alloc_pages_exact(size: usize, gfp: Gfp) -> Option<NonNull<u8>> {
    // SAFETY: FFI call; the lab refuses the flags it warns about
    // (`__GFP_COMP`, `__GFP_HIGHMEM`), and a size past MAX_PAGE_ORDER gives
    // NULL (the lab also refuses it first).
    NonNull::new(unsafe { bindings::alloc_pages_exact_noprof(size, gfp) }.cast())
}

/// `free_pages_exact(p, size)`.
///
/// # Safety
///
/// `p` came from [`alloc_pages_exact`] with `size`, is owned by the caller
/// and not used after.
pub(crate) unsafe fn free_pages_exact(p: NonNull<u8>, size: usize) {
    // SAFETY: Per the function's contract.
    unsafe { bindings::free_pages_exact(p.as_ptr().cast(), size) }
}

/// `alloc_contig_pages(nr_pages, gfp, nid, NULL)`; may sleep.
pub(crate) fn alloc_contig(nr_pages: usize, gfp: Gfp) -> Option<NonNull<bindings::page>> {
    // SAFETY: FFI call from process context (the lab allows this backend
    // there only, with flags that may sleep). Node 0 starts the zonelist
    // (x86-64 always has it); the NULL nodemask lets every node serve.
    NonNull::new(unsafe {
        bindings::alloc_contig_pages_noprof(
            nr_pages as kernel::ffi::c_ulong,
            gfp,
            0,
            core::ptr::null_mut(),
        )
    })
}

/// `free_contig_range(page_to_pfn(page), nr_pages)`.
///
/// # Safety
///
/// `page` came from [`alloc_contig`] with `nr_pages`, is owned by the
/// caller and not used after.
pub(crate) unsafe fn free_contig(page: NonNull<bindings::page>, nr_pages: usize) {
    // SAFETY: A live page of ours (contract): it is in the direct map, so
    // its address and its physical address are found without a fault.
    let pfn = unsafe { virt_to_phys(page_address(page).as_ptr() as usize) } / PAGE_SIZE as u64;
    // SAFETY: Per the function's contract: the range is ours, non-compound
    // (alloc_contig_pages() refuses __GFP_COMP).
    unsafe {
        bindings::free_contig_range(
            pfn as kernel::ffi::c_ulong,
            nr_pages as kernel::ffi::c_ulong,
        )
    }
}
