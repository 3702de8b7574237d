// SPDX-License-Identifier: GPL-2.0

//! The kernel's own mempool (`mempool_create()`, LDD3 chapter 8,
//! "mempools") over a kernel cache: the baseline of our pools in the
//! benchmarks, and the lab's `kernel-mempool` backend, beside ours under
//! real memory pressure (issue 16, claim 8). With `failing`, the pool's
//! allocation callback fails while armed, so every allocation comes from the
//! reserve (the benchmarks' reserve path). [`KernelPool::over_our_cache`]
//! puts the kernel's pool over one of *our* caches instead (callbacks into
//! it), so that the reserve benchmark compares the two pool layers over the
//! same backing, emptied and failing for real (issue 15: like for like).
//!
//! The lab gets one pool per element size from a registry (reused like our
//! caches': [`super::registry`]), with the module's `pool_min_nr` reserve.
//! `mempool_t` counts nothing, so what the reserve holds is read from its
//! `curr_nr` (`LDD_IOC_KERNEL_POOL_INFO`): a `mempool_alloc()` that
//! finds the backing allocation failing takes from it.
//!
//! `mempool_alloc()` is an `alloc_hooks()` macro without a Rust helper:
//! this calls `mempool_alloc_noprof()` (see [`super::kernel_caches`]).

use core::ptr::NonNull;
use core::sync::atomic::{
    AtomicBool,
    AtomicUsize,
    Ordering, //
};
use kernel::ffi::{
    c_int,
    c_void, //
};
use kernel::{
    bindings,
    prelude::*,
    sync::{
        global_lock,
        Arc, //
    }, //
};

use super::caches::{
    self,
    CacheRef, //
};
use super::gfp::{
    self,
    Gfp, //
};
use super::kernel_caches::KernelCache;
use super::registry::{
    self,
    Entry,
    Quota,
    Ref, //
};
use crate::ratelimit::pr_err_ratelimited;
use crate::uapi;

/// What the pool's allocation callbacks get: the kernel cache and a switch
/// that makes allocation fail so the reserve is used, or our cache.
struct PoolData {
    /// The kernel cache of the slab and failing callbacks (null over ours).
    cache: *mut bindings::kmem_cache,
    fail: AtomicBool,
    /// The cache of [`our_cache_alloc`]/[`our_cache_free`].
    ours: Option<CacheRef>,
}

/// `mempool_alloc_t` over our cache: `mempool_alloc()`'s first,
/// non-reclaiming try and its later ones become our page requests.
///
/// # Safety
///
/// `data` points to a live [`PoolData`].
unsafe extern "C" fn our_cache_alloc(gfp: Gfp, data: *mut c_void) -> *mut c_void {
    // SAFETY: Per the function's contract.
    let d = unsafe { &*data.cast::<PoolData>() };
    d.ours
        .as_ref()
        .and_then(|c| c.alloc_req(gfp::to_request(gfp)))
        .map_or(core::ptr::null_mut(), |p| p.as_ptr().cast())
}

/// `mempool_free_t` for [`our_cache_alloc`].
///
/// # Safety
///
/// `data` points to a live [`PoolData`]; `elem` came from its cache.
unsafe extern "C" fn our_cache_free(elem: *mut c_void, data: *mut c_void) {
    // SAFETY: Per the function's contract.
    let d = unsafe { &*data.cast::<PoolData>() };
    if let (Some(c), Some(p)) = (&d.ours, NonNull::new(elem.cast::<u8>())) {
        if c.free(p).is_err() {
            pr_err_ratelimited!("kernel mempool: our cache refused an element\n");
        }
    }
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

/// A pool's allocation and free callbacks and their pool data.
type Callbacks = (
    bindings::mempool_alloc_t,
    bindings::mempool_free_t,
    *mut c_void,
);

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
    _cache: Option<KernelCache>,
    size: usize,
    min_nr: usize,
    /// Lab handles holding elements (the registry's count).
    users: AtomicUsize,
}

// SAFETY: A mempool may be used and destroyed from any CPU or thread.
unsafe impl Send for KernelPool {}
// SAFETY: `mempool_alloc`/`free` are safe to call concurrently; `data` is only
// read through atomics, a constant pointer and a shared reference to our
// cache (which is `Sync`).
unsafe impl Sync for KernelPool {}

/// Reserve of the kernel mempool: the module's `pool_min_nr` default.
const MIN_NR: c_int = 16;

impl KernelPool {
    /// A pool of `size`-byte elements. With `failing`, over
    /// [`failing_alloc`] (armed once created); otherwise over
    /// `mempool_alloc_slab`/`mempool_free_slab`.
    pub(crate) fn new(size: usize, failing: bool) -> Result<Self> {
        Self::with_reserve("ldd_kpool", size, MIN_NR, failing)
    }

    /// A pool of `size`-byte elements with a reserve of `min_nr`, over a
    /// cache named `<prefix>_<size>`.
    fn with_reserve(prefix: &str, size: usize, min_nr: c_int, failing: bool) -> Result<Self> {
        let cache = KernelCache::create(prefix, size)?;
        let data = KBox::new(
            PoolData {
                cache: cache.as_raw(),
                fail: AtomicBool::new(false),
                ours: None,
            },
            GFP_KERNEL,
        )?;
        let (alloc, free, pool_data): Callbacks = if failing {
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
        let pool = Self::create(min_nr, (alloc, free, pool_data), data, Some(cache), size)?;
        pool.data.fail.store(failing, Ordering::Relaxed);
        Ok(pool)
    }

    /// The kernel's mempool of `size`-byte elements over a private cache of
    /// ours (the like-for-like baseline of our pool's reserve path).
    pub(crate) fn over_our_cache(size: usize) -> Result<Self> {
        let data = KBox::new(
            PoolData {
                cache: core::ptr::null_mut(),
                fail: AtomicBool::new(false),
                ours: Some(caches::get_private(size)?),
            },
            GFP_KERNEL,
        )?;
        let pool_data = core::ptr::from_ref::<PoolData>(&data).cast_mut().cast();
        let pair: Callbacks = (Some(our_cache_alloc), Some(our_cache_free), pool_data);
        Self::create(MIN_NR, pair, data, None, size)
    }

    /// `mempool_create_node()` with the callbacks over their pool data,
    /// which is `kcache` (the slab pair) or `data`.
    fn create(
        min_nr: c_int,
        (alloc, free, pool_data): Callbacks,
        data: KBox<PoolData>,
        kcache: Option<KernelCache>,
        size: usize,
    ) -> Result<Self> {
        // SAFETY: The callbacks match `pool_data` (the callers pair them):
        // `kcache` for the slab pair, `data` for the others; both are kept
        // in `Self`, so they live as long as the pool.
        let pool = unsafe {
            bindings::mempool_create_node_noprof(
                min_nr,
                alloc,
                free,
                pool_data,
                bindings::GFP_KERNEL,
                bindings::NUMA_NO_NODE,
            )
        };
        let pool = NonNull::new(pool).ok_or(ENOMEM)?;
        // INVARIANT: Created over the cache or `data`, both kept in `Self`.
        Ok(Self {
            pool,
            data,
            _cache: kcache,
            size,
            min_nr: usize::try_from(min_nr).unwrap_or(0),
            users: AtomicUsize::new(0),
        })
    }

    /// Our cache behind a pool from [`Self::over_our_cache`].
    pub(crate) fn our_cache(&self) -> Option<&CacheRef> {
        self.data.ours.as_ref()
    }

    /// Element size.
    pub(crate) fn element_size(&self) -> usize {
        self.size
    }

    /// Elements in the reserve now (`pool->curr_nr`).
    fn curr_nr(&self) -> usize {
        // SAFETY: The pool is live (type invariant); `curr_nr` is an `int`
        // that `mempool_alloc()`/`mempool_free()` change under the pool's
        // lock: an unlocked read sees one of its values, as mempool.c's own
        // unlocked `pool->curr_nr < pool->min_nr` test does.
        let n = unsafe { core::ptr::addr_of!((*self.pool.as_ptr()).curr_nr).read_volatile() };
        usize::try_from(n).unwrap_or(0)
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

impl Entry for KernelPool {
    fn users(&self) -> &AtomicUsize {
        &self.users
    }

    fn idle(&self) -> bool {
        // Every element out is held by a lab handle, which holds a `Ref`.
        true
    }
}

/// A counted reference to a registered kernel pool, from [`get`].
pub(crate) type KernelPoolRef = Ref<KernelPool>;

/// Most kernel pools the registry holds.
const MAX_POOLS: usize = 8;

global_lock! {
    // SAFETY: Initialized in `init()` before any use.
    unsafe(uninit) static KPOOLS: Mutex<KVec<Arc<KernelPool>>> = KVec::new();
}

/// The reserve of the lab's pools: the module's `pool_min_nr`.
static LAB_MIN_NR: AtomicUsize = AtomicUsize::new(MIN_NR as usize);

/// Sets up the registry; the lab's pools keep `min_nr` elements.
pub(crate) fn init(min_nr: usize) {
    LAB_MIN_NR.store(min_nr, Ordering::Relaxed);
    // SAFETY: Called once at module init before any other use.
    unsafe { KPOOLS.init() };
}

/// Destroys every kernel pool (all lab handles are gone at unload).
pub(crate) fn exit() {
    drop(core::mem::take(&mut *KPOOLS.lock()));
}

/// The lab's kernel mempool of `size`-byte elements, created on first use
/// (root only: its reserve is for emergencies).
pub(crate) fn get(size: usize) -> Result<KernelPoolRef> {
    let min_nr = c_int::try_from(LAB_MIN_NR.load(Ordering::Relaxed)).map_err(|_| EINVAL)?;
    let mut pools = KPOOLS.lock();
    registry::get_or_create(
        &mut pools,
        MAX_POOLS,
        Quota::Whole,
        |p| p.size == size,
        |_| {
            Ok(Arc::new(
                KernelPool::with_reserve("ldd_lab_kpool", size, min_nr, false)?,
                GFP_KERNEL,
            )?)
        },
    )
}

/// `LDD_IOC_KERNEL_POOL_INFO`: the lab's kernel pool `index`.
pub(crate) fn info(index: u32) -> Result<uapi::KernelPoolInfo> {
    let p = registry::nth(&KPOOLS.lock(), index)?;
    Ok(uapi::KernelPoolInfo {
        index,
        reserved: 0,
        element_size: p.size as u64,
        min_nr: p.min_nr as u64,
        curr_nr: p.curr_nr() as u64,
    })
}

/// `mempool_alloc()` refuses `__GFP_ZERO` (a reserve element is not
/// zeroed: mm/mempool.c warns); the lab zeroes what it was asked to.
pub(crate) fn lab_gfp(gfp: Gfp) -> Gfp {
    gfp & !gfp::ZERO
}

impl Drop for KernelPool {
    fn drop(&mut self) {
        // The reserve goes back to the cache: let the callbacks through.
        self.data.fail.store(false, Ordering::Relaxed);
        // SAFETY: Destroyed once; every element is back (the caller's rule).
        unsafe { bindings::mempool_destroy(self.pool.as_ptr()) };
    }
}
