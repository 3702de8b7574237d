// SPDX-License-Identifier: GPL-2.0

//! Where a scull quantum's memory comes from: the four scull variants of
//! LDD3 chapter 8 in one module.
//!
//! | backend   | LDD3 variant | memory                                        |
//! |-----------|--------------|-----------------------------------------------|
//! | `kmalloc` | scull        | `kmalloc(quantum, GFP_KERNEL)`                |
//! | `cache`   | scullc       | our own lookaside cache ([`crate::kalloc::caches`]) |
//! | `pages`   | scullp       | `__get_free_pages(GFP_KERNEL, order)`         |
//! | `vmalloc` | scullv       | `vmalloc(quantum)`                            |
//! | `mempool` | –            | our own mempool over our cache                |
//!
//! A [`Block`] is one allocation; it does not free itself, because only the
//! backend that made it knows how: the store hands every block back through
//! [`Backend::free`] when it trims.
//!
//! scullp's run of `2^order` pages is split into order-0 pages at once
//! (`split_page()`), so that each page can be mapped into a process and
//! refcounted on its own (see [`super::mmap`]); it is freed page by page.

use core::alloc::Layout;
use core::ptr::NonNull;
use kernel::{
    alloc::{
        allocator::{
            Kmalloc,
            Vmalloc, //
        },
        flags::{
            __GFP_NOWARN,
            __GFP_ZERO, //
            GFP_KERNEL_ACCOUNT,
        },
        Allocator,
        NumaNode, //
    },
    bindings,
    prelude::*, //
};

use crate::kalloc::caches::{
    self,
    CacheRef, //
};
use crate::kalloc::kernel_alloc;
use crate::kalloc::pages::PAGE_SIZE;
use crate::kalloc::pools::{
    self,
    PoolRef, //
};
use crate::params::STORE_MAX_ORDER;
use crate::ratelimit::pr_err_ratelimited;
use crate::uapi::backend;

/// The allocator behind a device's quanta.
#[derive(Clone)]
pub(crate) enum Backend {
    /// `kmalloc()`: scull's baseline (LDD3 chapter 3).
    Kmalloc,
    /// Our lookaside cache for this quantum size: scullc.
    Cache(CacheRef),
    /// Whole pages, `2^order` of them per quantum: scullp.
    Pages {
        /// The page order of each quantum.
        order: u32,
    },
    /// `vmalloc()`: scullv.
    Vmalloc,
    /// Our mempool over our cache.
    Mempool(PoolRef),
}

/// One quantum of memory.
///
/// # Invariants
///
/// `ptr` is valid for reads and writes of `len` bytes, initialised, and owned
/// by this block alone, from its allocation by [`Backend::alloc`] until
/// [`Backend::free`].
///
/// On the pages backend, `first_page` is the first of the run's `2^order`
/// split pages (whose address is `ptr`); None on the others.
pub(crate) struct Block {
    ptr: NonNull<u8>,
    len: usize,
    first_page: Option<NonNull<bindings::page>>,
}

// SAFETY: A block is plain owned memory; it may move between threads.
unsafe impl Send for Block {}
// SAFETY: Shared access only reads (`as_slice`).
unsafe impl Sync for Block {}

impl Block {
    /// The quantum's bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: By the type invariant, `ptr` is valid for `len` initialised
        // bytes.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The quantum's bytes, for writing.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: By the type invariant, `ptr` is valid for `len` initialised
        // bytes and exclusively ours.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// The `struct page` of the block's page `i`, for a mapping: the run's
    /// page on the pages backend, `vmalloc_to_page()` on vmalloc; None
    /// elsewhere or past the block.
    pub(crate) fn page(&self, backend: &Backend, i: usize) -> Option<NonNull<bindings::page>> {
        let off = i.checked_mul(PAGE_SIZE).filter(|&o| o < self.len)?;
        match backend {
            Backend::Pages { .. } => {
                let first = self.first_page?;
                // SAFETY: Page `i` of the run lies within the same
                // MAX_PAGE_ORDER block of the memory map as the first.
                Some(unsafe { NonNull::new_unchecked(first.as_ptr().add(i)) })
            }
            Backend::Vmalloc => {
                // SAFETY: `ptr + off` lies inside our live vmalloc area
                // (type invariant, `off < len`).
                NonNull::new(unsafe {
                    bindings::vmalloc_to_page(self.ptr.as_ptr().add(off).cast())
                })
            }
            _ => None,
        }
    }
}

impl Backend {
    /// The backend for an ABI value ([`backend`]), page order and quantum
    /// (our caches and pools are per object size).
    pub(crate) fn from_abi(value: u32, order: u32, quantum: usize) -> Result<Self> {
        Ok(match value {
            backend::KMALLOC => Self::Kmalloc,
            backend::CACHE => Self::Cache(caches::get(quantum, 0)?),
            backend::PAGES if order <= STORE_MAX_ORDER => Self::Pages { order },
            backend::VMALLOC => Self::Vmalloc,
            backend::MEMPOOL => Self::Mempool(pools::get(quantum)?),
            _ => return Err(EINVAL),
        })
    }

    /// The same backend for another quantum (a trim with a new geometry).
    pub(crate) fn resized(&self, quantum: usize) -> Result<Self> {
        Self::from_abi(self.to_abi(), self.order(), quantum)
    }

    /// The ABI value of this backend.
    pub(crate) fn to_abi(&self) -> u32 {
        match self {
            Self::Kmalloc => backend::KMALLOC,
            Self::Cache(_) => backend::CACHE,
            Self::Pages { .. } => backend::PAGES,
            Self::Vmalloc => backend::VMALLOC,
            Self::Mempool(_) => backend::MEMPOOL,
        }
    }

    /// The page order (0 unless this is the pages backend).
    pub(crate) fn order(&self) -> u32 {
        match *self {
            Self::Pages { order } => order,
            _ => 0,
        }
    }

    /// The quantum this backend uses when the device asks for `quantum`:
    /// scullp's quantum is always a whole run of pages (LDD3 "scullp").
    pub(crate) fn quantum_for(&self, quantum: usize) -> usize {
        match *self {
            Self::Pages { order } => PAGE_SIZE << order,
            _ => quantum,
        }
    }

    /// Allocates one zeroed quantum of `len` bytes; may sleep. The kernel's
    /// allocators charge it to the writer's memory cgroup (our own caches
    /// share their slabs between users, so they cannot).
    pub(crate) fn alloc(&self, len: usize) -> Result<Block> {
        let layout = Layout::from_size_align(len, 1).map_err(|_| EINVAL)?;
        // A failure is the writer's ENOMEM or short count: no warning in the log.
        let flags = GFP_KERNEL_ACCOUNT | __GFP_ZERO | __GFP_NOWARN;
        let mut first_page = None;
        let ptr = match self {
            Self::Kmalloc => Kmalloc::alloc(layout, flags, NumaNode::NO_NODE)?.cast(),
            Self::Vmalloc => Vmalloc::alloc(layout, flags, NumaNode::NO_NODE)?.cast(),
            Self::Pages { order } => {
                if len > PAGE_SIZE << order {
                    return Err(EINVAL);
                }
                let gfp = bindings::GFP_KERNEL_ACCOUNT
                    | crate::kalloc::gfp::ZERO
                    | crate::kalloc::gfp::NOWARN;
                let page = kernel_alloc::alloc_pages(gfp, *order).ok_or(ENOMEM)?;
                // SAFETY: A fresh non-compound run of this order, ours:
                // `split_page()` makes it 2^order order-0 pages.
                unsafe { bindings::split_page(page.as_ptr(), *order) };
                first_page = Some(page);
                // SAFETY: Ours; no highmem on x86-64.
                unsafe { kernel_alloc::page_address(page) }
            }
            Self::Cache(cache) if cache.size() == len => cache.alloc(true)?,
            // Never sleeps: see the pools module for why the store must not.
            Self::Mempool(pool) if pool.element_size() == len => pool.alloc(false)?,
            Self::Cache(_) | Self::Mempool(_) => return Err(EINVAL),
        };
        if matches!(self, Self::Cache(_) | Self::Mempool(_)) {
            // SAFETY: A fresh object of `len` bytes, ours alone.
            unsafe { core::ptr::write_bytes(ptr.as_ptr(), 0, len) };
        }
        // INVARIANT: Each allocator returned `len` zeroed bytes, ours alone.
        Ok(Block {
            ptr,
            len,
            first_page,
        })
    }

    /// After a trim: our caches give their empty slabs back.
    pub(crate) fn trim_caches(&self) {
        match self {
            Self::Cache(cache) => cache.trim(),
            Self::Mempool(pool) => pool.cache().trim(),
            _ => {}
        }
    }

    /// Gives every block of `blocks` back to this backend: our cache takes
    /// them in bulk (`free_bulk`, one magazine section per 64 quanta), the
    /// others one by one.
    ///
    /// # Safety
    ///
    /// As for [`Self::free`], for every block.
    pub(crate) unsafe fn free_all(&self, blocks: impl Iterator<Item = Block>) {
        const CHUNK: usize = 64;
        let Self::Cache(cache) = self else {
            for block in blocks {
                // SAFETY: Forwarded contract.
                unsafe { self.free(block) };
            }
            return;
        };
        let mut chunk = [core::ptr::null_mut::<u8>(); CHUNK];
        let mut n = 0;
        let mut refused = 0;
        for block in blocks {
            if let Some(slot) = chunk.get_mut(n) {
                *slot = block.ptr.as_ptr();
                n += 1;
            }
            if n == CHUNK {
                refused += cache.free_bulk(&chunk);
                n = 0;
            }
        }
        refused += cache.free_bulk(chunk.get(..n).unwrap_or(&[]));
        if refused != 0 {
            pr_err_ratelimited!("scull: our cache refused {refused} quanta of its own\n");
        }
    }

    /// Gives `block` back to this backend.
    ///
    /// # Safety
    ///
    /// `block` came from [`Self::alloc`] on this very backend (or a clone of
    /// it): each allocator frees only its own memory.
    pub(crate) unsafe fn free(&self, block: Block) {
        let Block {
            ptr,
            len,
            first_page,
        } = block;
        match self {
            Self::Kmalloc | Self::Vmalloc => {
                // `alloc` built this very layout from `len`, so it cannot fail here.
                let Ok(layout) = Layout::from_size_align(len, 1) else {
                    return;
                };
                // SAFETY: `ptr` came from this allocator with `layout` (contract).
                unsafe {
                    if matches!(self, Self::Kmalloc) {
                        Kmalloc::free(ptr, layout)
                    } else {
                        Vmalloc::free(ptr, layout)
                    }
                }
            }
            Self::Pages { order } => {
                let Some(first) = first_page else {
                    return;
                };
                for i in 0..1usize << order {
                    // SAFETY: The run came from `alloc` on this backend
                    // (contract), split into order-0 pages, each freed once
                    // here and no longer used (the block is consumed; no
                    // mapping holds it: see `mmap`).
                    unsafe { bindings::__free_pages(first.as_ptr().add(i), 0) };
                }
            }
            Self::Cache(cache) => {
                if cache.free(ptr).is_err() {
                    pr_err_ratelimited!("scull: our cache refused a quantum of its own\n");
                }
            }
            // SAFETY: `ptr` came from this pool (contract), once.
            Self::Mempool(pool) => unsafe { pool.free(ptr) },
        }
    }
}
