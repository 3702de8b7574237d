// SPDX-License-Identifier: GPL-2.0

//! The kernel's own mempool (`mempool_create()`, LDD3 chapter 8,
//! "mempools") over a kernel cache: the baseline of our pools in the
//! benchmarks. With `failing`, the pool's allocation callback fails while
//! armed, so every allocation comes from the reserve (the reserve path).
//!
//! `mempool_alloc()` is an `alloc_hooks()` macro without a Rust helper:
//! this calls `mempool_alloc_noprof()` (see [`super::kernel_caches`]).

use core::ptr::NonNull;
use core::sync::atomic::{
    AtomicBool,
    Ordering, //
};
use kernel::ffi::{
    c_int,
    c_void, //
};
use kernel::{
    bindings,
    prelude::*, //
};

use super::gfp::Gfp;
use super::kernel_caches::KernelCache;

/// What the pool's allocation callbacks get: the cache, and a switch that
/// makes allocation fail so the reserve is used.
struct PoolData {
    cache: *mut bindings::kmem_cache,
    fail: AtomicBool,
}

/// `mempool_alloc_slab()` that fails while `fail` is set.
///
/// # Safety
///
/// `data` points to a live [`PoolData`].
unsafe extern "C" fn failing_alloc(gfp: Gfp, data: *mut c_void) -> *mut c_void {
    // SAFETY: Per the function's contract.
    let d = unsafe { &*data.cast::<PoolData>() };
    if d.fail.load(Ordering::Relaxed) {
        return core::ptr::null_mut();
    }
    // SAFETY: The cache lives as long as the pool.
    unsafe { bindings::kmem_cache_alloc_noprof(d.cache, gfp) }
}

/// `mempool_free_slab()` for [`failing_alloc`].
///
/// # Safety
///
/// `data` points to a live [`PoolData`]; `elem` came from its cache.
unsafe extern "C" fn failing_free(elem: *mut c_void, data: *mut c_void) {
    // SAFETY: Per the function's contract.
    let d = unsafe { &*data.cast::<PoolData>() };
    // SAFETY: `elem` came from this cache (contract).
    unsafe { bindings::kmem_cache_free(d.cache, elem) };
}

/// The kernel's mempool over a cache of its own.
///
/// # Invariants
///
/// `pool` came from a successful `mempool_create_node()` whose pool data is
/// the cache (slab callbacks) or `data` (failing callbacks); both outlive it,
/// since `Drop` destroys the pool before the fields drop.
pub(crate) struct KernelPool {
    pool: NonNull<bindings::mempool>,
    data: KBox<PoolData>,
    _cache: KernelCache,
}

// SAFETY: A mempool may be used and destroyed from any CPU or thread.
unsafe impl Send for KernelPool {}
// SAFETY: `mempool_alloc`/`free` are safe to call concurrently; `data` is only
// read through atomics and a constant pointer.
unsafe impl Sync for KernelPool {}

/// Reserve of the kernel mempool: the module's `pool_min_nr` default.
const MIN_NR: c_int = 16;

impl KernelPool {
    /// A pool of `size`-byte elements. With `failing`, over
    /// [`failing_alloc`] (armed once created); otherwise over
    /// `mempool_alloc_slab`/`mempool_free_slab`.
    pub(crate) fn new(size: usize, failing: bool) -> Result<Self> {
        let cache = KernelCache::create("ldd_kpool", size)?;
        let data = KBox::new(
            PoolData {
                cache: cache.as_raw(),
                fail: AtomicBool::new(false),
            },
            GFP_KERNEL,
        )?;
        let (alloc, free, pool_data): (bindings::mempool_alloc_t, bindings::mempool_free_t, _) =
            if failing {
                (
                    Some(failing_alloc),
                    Some(failing_free),
                    core::ptr::from_ref::<PoolData>(&data).cast_mut().cast(),
                )
            } else {
                (
                    Some(bindings::mempool_alloc_slab),
                    Some(bindings::mempool_free_slab),
                    cache.as_raw().cast(),
                )
            };
        // SAFETY: The callbacks match `pool_data`: the cache for the slab
        // pair, our `PoolData` for ours; both live as long as the pool.
        let pool = unsafe {
            bindings::mempool_create_node_noprof(
                MIN_NR,
                alloc,
                free,
                pool_data,
                bindings::GFP_KERNEL,
                bindings::NUMA_NO_NODE,
            )
        };
        let pool = NonNull::new(pool).ok_or(ENOMEM)?;
        data.fail.store(failing, Ordering::Relaxed);
        // INVARIANT: Created over the cache or `data`, both kept in `Self`.
        Ok(Self {
            pool,
            data,
            _cache: cache,
        })
    }

    /// `mempool_alloc(pool, gfp)`.
    #[inline(always)]
    pub(crate) fn alloc(&self, gfp: Gfp) -> Option<NonNull<u8>> {
        // SAFETY: The pool is live (type invariant).
        NonNull::new(unsafe { bindings::mempool_alloc_noprof(self.pool.as_ptr(), gfp) }.cast())
    }

    /// `mempool_free(p, pool)`.
    ///
    /// # Safety
    ///
    /// `p` came from [`Self::alloc`] on this pool and is not used after.
    #[inline(always)]
    pub(crate) unsafe fn free(&self, p: NonNull<u8>) {
        // SAFETY: Per the function's contract.
        unsafe { bindings::mempool_free(p.as_ptr().cast(), self.pool.as_ptr()) }
    }
}

impl Drop for KernelPool {
    fn drop(&mut self) {
        // The reserve goes back to the cache: let the callbacks through.
        self.data.fail.store(false, Ordering::Relaxed);
        // SAFETY: Destroyed once; every element is back (the caller's rule).
        unsafe { bindings::mempool_destroy(self.pool.as_ptr()) };
    }
}
