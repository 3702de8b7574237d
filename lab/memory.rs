// SPDX-License-Identifier: GPL-2.0

//! The lab's allocations: one allocation by each of the lab's backends
//! ([`allocate`]), what the lab holds ([`LabMem`], freed by the backend that
//! made it), and what the lab reports about it ([`measure`]: physical range
//! and contiguity, zone, zeroing; [`usable_size`]).
//!
//! # How the zone is found
//!
//! See [`crate::kalloc::pages`]: on x86-64 a zone is a physical address
//! range, and the physical address of each page comes from the page tables.

use core::ptr::NonNull;
use kernel::bindings;

use crate::kalloc::caches::CacheRef;
use crate::kalloc::cma::{
    self,
    DmaBuffer, //
};
use crate::kalloc::contig;
use crate::kalloc::gfp::{
    self,
    Gfp, //
};
use crate::kalloc::kernel_alloc;
use crate::kalloc::kernel_caches::KernelCacheRef;
use crate::kalloc::kernel_pools::{
    self,
    KernelPoolRef, //
};
use crate::kalloc::pages::{
    zone_of_phys,
    PAGE_SIZE, //
};
use crate::kalloc::pools::PoolRef;
use crate::ratelimit::pr_err_ratelimited;
use crate::uapi::{
    self,
    lab_backend as lb, //
};

/// Memory the lab holds; freed by its backend when dropped.
///
/// # Invariants
///
/// Each variant owns live memory of the backend it names, of the size the
/// lab asked for, which nothing else frees.
pub(crate) enum LabMem {
    /// kmalloc, kzalloc, krealloc: `kfree()`.
    Kmalloc(NonNull<u8>),
    /// The kernel's kmem_cache: `kmem_cache_free()`.
    KmemCache(KernelCacheRef, NonNull<u8>),
    /// Our cache.
    OurCache(CacheRef, NonNull<u8>),
    /// Our mempool.
    OurPool(PoolRef, NonNull<u8>),
    /// The kernel's mempool: `mempool_free()`.
    KernelPool(KernelPoolRef, NonNull<u8>),
    /// `alloc_pages()`: `__free_pages()`.
    Pages(NonNull<bindings::page>, u32),
    /// `__get_free_pages()`, `get_zeroed_page()`: `free_pages()`.
    FreePages(NonNull<u8>, u32),
    /// vmalloc, kvmalloc: `kvfree()` frees both kinds.
    Kvfree(NonNull<u8>),
    /// `alloc_pages_exact()` of this size: `free_pages_exact()`.
    Exact(NonNull<u8>, usize),
    /// `alloc_contig_pages()` of this many pages: `free_contig_range()`.
    Contig(NonNull<bindings::page>, usize),
    /// CMA through `dma_alloc_coherent()`: `dma_free_coherent()`.
    Cma(DmaBuffer),
}

// SAFETY: Each variant is owned memory that any thread may free.
unsafe impl Send for LabMem {}
// SAFETY: Shared access only reads the address.
unsafe impl Sync for LabMem {}

impl LabMem {
    /// The kernel virtual address of the memory.
    pub(crate) fn addr(&self) -> NonNull<u8> {
        match self {
            Self::Kmalloc(p) | Self::FreePages(p, _) | Self::Kvfree(p) | Self::Exact(p, _) => *p,
            Self::Cma(buf) => buf.addr,
            Self::KmemCache(_, p)
            | Self::OurCache(_, p)
            | Self::OurPool(_, p)
            | Self::KernelPool(_, p) => *p,
            // SAFETY: A live page run we own (type invariant).
            Self::Pages(page, _) | Self::Contig(page, _) => unsafe {
                kernel_alloc::page_address(*page)
            },
        }
    }

    /// The kmalloc object, for krealloc; None for other backends.
    pub(crate) fn kmalloc_object(&self) -> Option<NonNull<u8>> {
        match self {
            Self::Kmalloc(p) => Some(*p),
            _ => None,
        }
    }

    /// Forgets the memory without freeing it: krealloc has taken it over.
    pub(crate) fn forget(self) {
        core::mem::forget(self);
    }
}

impl Drop for LabMem {
    fn drop(&mut self) {
        // In every arm the memory came from the backend the variant names
        // and is not used after this (type invariant).
        match self {
            // SAFETY: See above: a live kmalloc object of ours.
            Self::Kmalloc(p) => unsafe { kernel_alloc::kfree(*p) },
            // SAFETY: See above: an object of this kernel cache.
            Self::KmemCache(c, p) => unsafe { c.free(*p) },
            Self::OurCache(c, p) => {
                if c.free(*p).is_err() {
                    pr_err_ratelimited!("lab: our cache refused its own object\n");
                }
                // The lab frees in process context: give empty slabs back.
                c.trim();
            }
            Self::OurPool(pool, p) => {
                // SAFETY: See above: an element of this pool, freed once.
                unsafe { pool.free(*p) };
                pool.cache().trim();
            }
            // SAFETY: See above: an element of this kernel pool, freed once.
            Self::KernelPool(pool, p) => unsafe { pool.free(*p) },
            // SAFETY: See above: a page run of this order.
            Self::Pages(page, order) => unsafe { kernel_alloc::free_page_run(*page, *order) },
            // SAFETY: See above: pages by address, of this order.
            Self::FreePages(p, order) => unsafe { kernel_alloc::free_pages(*p, *order) },
            // SAFETY: See above: kmalloc or vmalloc memory of ours.
            Self::Kvfree(p) => unsafe { kernel_alloc::kvfree(*p) },
            // SAFETY: See above: an exact run of this size.
            Self::Exact(p, size) => unsafe { contig::free_pages_exact(*p, *size) },
            // SAFETY: See above: a contiguous range of this many pages.
            Self::Contig(page, nr) => unsafe { contig::free_contig(*page, *nr) },
            // SAFETY: See above: a CMA buffer; the lab frees in process
            // context (FREE, FREE_ALL, close), interrupts on.
            Self::Cma(buf) => unsafe { cma::free(buf) },
        }
    }
}

/// What a request needs that may sleep to get: looked up in process
/// context before the allocation runs in its context.
pub(crate) enum Resource {
    /// Nothing.
    None,
    /// The kernel cache of the request's size.
    KmemCache(KernelCacheRef),
    /// Our cache of the request's size.
    OurCache(CacheRef),
    /// Our pool of the request's size.
    OurPool(PoolRef),
    /// The kernel's pool of the request's size.
    KernelPool(KernelPoolRef),
    /// The kmalloc object to reallocate.
    Realloc(NonNull<u8>),
}

/// `__GFP_ZERO` for our cache and pool, as `kmem_cache_alloc()` honours it.
///
/// # Safety
///
/// `p` is a fresh object of at least `len` bytes, the caller's alone.
unsafe fn zero_if_asked(gfp: Gfp, p: NonNull<u8>, len: usize) {
    if gfp & gfp::ZERO != 0 {
        // SAFETY: Per the function's contract.
        unsafe { core::ptr::write_bytes(p.as_ptr(), 0, len) };
    }
}

/// One allocation of `size` bytes or `order` by `backend`; runs in the
/// requested context, so it never sleeps unless `gfp` allows.
pub(crate) fn allocate(
    backend: u32,
    size: usize,
    order: u32,
    gfp: Gfp,
    res: &Resource,
) -> Option<LabMem> {
    match (backend, res) {
        (lb::KMALLOC, _) => kernel_alloc::kmalloc(size, gfp).map(LabMem::Kmalloc),
        (lb::KZALLOC, _) => kernel_alloc::kmalloc(size, gfp | gfp::ZERO).map(LabMem::Kmalloc),
        (lb::KREALLOC, Resource::Realloc(old)) => {
            // SAFETY: `old` is a live kmalloc object the lab took out of its
            // table for this call; nobody else can free it meanwhile.
            unsafe { kernel_alloc::krealloc(*old, size, gfp) }.map(LabMem::Kmalloc)
        }
        (lb::KMEM_CACHE, Resource::KmemCache(c)) => {
            c.alloc(gfp).map(|p| LabMem::KmemCache(c.clone(), p))
        }
        (lb::OUR_CACHE, Resource::OurCache(c)) => c.alloc_req(gfp::to_request(gfp)).map(|p| {
            // SAFETY: A fresh object of `c.size()` bytes.
            unsafe { zero_if_asked(gfp, p, c.size()) };
            LabMem::OurCache(c.clone(), p)
        }),
        (lb::OUR_MEMPOOL, Resource::OurPool(pool)) => pool.alloc_gfp(gfp).ok().map(|p| {
            // SAFETY: A fresh element of `element_size()` bytes.
            unsafe { zero_if_asked(gfp, p, pool.element_size()) };
            LabMem::OurPool(pool.clone(), p)
        }),
        (lb::KERNEL_MEMPOOL, Resource::KernelPool(pool)) => {
            pool.alloc(kernel_pools::lab_gfp(gfp)).map(|p| {
                // SAFETY: A fresh element of `element_size()` bytes.
                unsafe { zero_if_asked(gfp, p, pool.element_size()) };
                LabMem::KernelPool(pool.clone(), p)
            })
        }
        (lb::ALLOC_PAGES, _) => {
            kernel_alloc::alloc_pages(gfp, order).map(|p| LabMem::Pages(p, order))
        }
        (lb::GET_FREE_PAGES, _) => {
            kernel_alloc::get_free_pages(gfp, order).map(|p| LabMem::FreePages(p, order))
        }
        (lb::GET_ZEROED_PAGE, _) => {
            kernel_alloc::get_free_pages(gfp | gfp::ZERO, 0).map(|p| LabMem::FreePages(p, 0))
        }
        (lb::VMALLOC, _) => kernel_alloc::vmalloc(size, gfp).map(LabMem::Kvfree),
        (lb::KVMALLOC, _) => kernel_alloc::kvmalloc(size, gfp).map(LabMem::Kvfree),
        (lb::ALLOC_PAGES_EXACT, _) => {
            contig::alloc_pages_exact(size, gfp).map(|p| LabMem::Exact(p, size))
        }
        (lb::ALLOC_CONTIG, _) => {
            let nr = size.div_ceil(PAGE_SIZE);
            contig::alloc_contig(nr, gfp).map(|p| LabMem::Contig(p, nr))
        }
        (lb::CMA, _) => cma::alloc(size, gfp).map(LabMem::Cma),
        _ => None,
    }
}

/// The usable size of an allocation asked with `size` bytes (byte backends).
pub(crate) fn usable_size(size: u64, mem: &LabMem) -> u64 {
    match mem {
        // SAFETY: A live kmalloc object.
        LabMem::Kmalloc(p) => unsafe { kernel_alloc::ksize(*p) as u64 },
        LabMem::KmemCache(c, _) => c.object_size() as u64,
        LabMem::OurCache(c, _) => c.size() as u64,
        LabMem::OurPool(pool, _) => pool.element_size() as u64,
        LabMem::KernelPool(pool, _) => pool.element_size() as u64,
        LabMem::Pages(_, order) | LabMem::FreePages(_, order) => (PAGE_SIZE as u64) << order,
        LabMem::Kvfree(p) if kernel_alloc::is_vmalloc_addr(p.as_ptr() as usize) => {
            // vmalloc maps whole pages; `size` was checked against the lab's
            // caps, so this cannot overflow.
            size.div_ceil(PAGE_SIZE as u64) * PAGE_SIZE as u64
        }
        // SAFETY: A kvmalloc that fell to kmalloc: a live kmalloc object.
        LabMem::Kvfree(p) => unsafe { kernel_alloc::ksize(*p) as u64 },
        LabMem::Contig(_, nr) => (*nr * PAGE_SIZE) as u64,
        // Whole pages, and no more: the point of both.
        LabMem::Exact(..) | LabMem::Cma(_) => size.div_ceil(PAGE_SIZE as u64) * PAGE_SIZE as u64,
    }
}

/// Physical range, contiguity, zone, zeroing and vmalloc area of the first
/// `len` bytes of `mem` (those the caller asked for: only they may be read,
/// KASAN keeps ksize()'s slack poisoned).
///
/// # Safety
///
/// `len` is at most the size of `mem`'s allocation, and at least 1.
pub(crate) unsafe fn measure(mem: &LabMem, len: u64, reply: &mut uapi::AllocReply) {
    let start = mem.addr();
    let addr = start.as_ptr() as usize;
    let len = len as usize;
    // SAFETY: `addr` is the start of a live allocation: mapped.
    let first = unsafe { kernel_alloc::virt_to_phys(addr) };
    let (mut lo, mut hi, mut contiguous, mut pages) = (first, first, true, 0u32);
    // Walk the pages the range touches: physical contiguity is a property of
    // the page-table mappings, which vmalloc builds page by page.
    let mut off = 0;
    while off < len {
        let va = addr + off;
        let chunk = (PAGE_SIZE - (va & (PAGE_SIZE - 1))).min(len - off);
        // SAFETY: `va` lies inside the live allocation (`off < len`, and
        // `len` fits the allocation by the function's contract).
        let pa = unsafe { kernel_alloc::virt_to_phys(va) };
        contiguous &= pa == first + off as u64;
        lo = lo.min(pa);
        hi = hi.max(pa + chunk as u64 - 1);
        pages = pages.saturating_add(1);
        off += chunk;
    }
    reply.zone = zone_of_phys(first) as u32;
    reply.phys_lo = lo;
    reply.phys_hi = hi;
    reply.pages = pages;
    reply.contiguous = u32::from(contiguous);
    // SAFETY: The allocation is valid for reads of `len` bytes (contract).
    reply.zeroed = u32::from(unsafe { kernel_alloc::is_zeroed(start, len) });
    reply.vmalloc_area = u32::from(kernel_alloc::is_vmalloc_addr(addr));
}
