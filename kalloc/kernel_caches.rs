// SPDX-License-Identifier: GPL-2.0

//! The kernel's own lookaside caches (`kmem_cache_create()` and friends,
//! LDD3 chapter 8, "Lookaside Caches"): the baseline our caches are
//! compared with. The lab gets one per object size from a registry (reused
//! like ours: [`super::registry`]); the benchmarks make one per run.
//!
//! The kernel crate of 7.3 has no `kmem_cache` abstraction, and
//! `kmem_cache_alloc()` is an `alloc_hooks()` macro without a Rust helper, so
//! this room calls `kmem_cache_alloc_noprof()`: with
//! `CONFIG_MEM_ALLOC_PROFILING` these allocations are counted under SLUB's
//! own call site rather than ours (the test kernels do not enable it).

use core::ptr::NonNull;
use core::sync::atomic::AtomicUsize;
use kernel::ffi::c_void;
use kernel::{
    bindings,
    prelude::*,
    sync::{
        global_lock,
        Arc, //
    }, //
};

use super::gfp::Gfp;
use super::registry::{
    self,
    Entry,
    Ref, //
};

/// Length of a cache name buffer.
const NAME_LEN: usize = 32;

/// A `struct kmem_cache` of SLUB.
///
/// # Invariants
///
/// `cache` came from a successful `kmem_cache_create()` with the name in
/// `name`, which lives as long as the cache (SLUB keeps the pointer), and is
/// destroyed exactly once, in `Drop`, when every object has been freed (each
/// user frees its objects before dropping its reference).
pub(crate) struct KernelCache {
    cache: NonNull<bindings::kmem_cache>,
    size: usize,
    _name: KBox<[u8; NAME_LEN]>,
    users: AtomicUsize,
}

// SAFETY: A kmem_cache may be used and destroyed from any CPU or thread.
unsafe impl Send for KernelCache {}
// SAFETY: `kmem_cache_alloc`/`free` are safe to call concurrently.
unsafe impl Sync for KernelCache {}

/// A counted reference to a registered kernel cache, from [`get`].
pub(crate) type KernelCacheRef = Ref<KernelCache>;

impl Entry for KernelCache {
    fn users(&self) -> &AtomicUsize {
        &self.users
    }

    fn idle(&self) -> bool {
        // Every object is held by a user (a lab handle holds a reference).
        true
    }
}

impl KernelCache {
    /// `kmem_cache_create("<prefix>_<size>", size, 0, 0, NULL)`.
    pub(crate) fn create(prefix: &str, size: usize) -> Result<Self> {
        let mut name = KBox::new([0u8; NAME_LEN], GFP_KERNEL)?;
        let mut w = kernel::str::Formatter::new(&mut name[..NAME_LEN - 1]);
        core::fmt::Write::write_fmt(&mut w, format_args!("{prefix}_{size}")).map_err(|_| EINVAL)?;
        // SAFETY: All-zeroes `kmem_cache_args` means "no alignment, no
        // constructor, defaults", as `kmem_cache_create()` with zeros.
        let mut args: bindings::kmem_cache_args = unsafe { core::mem::zeroed() };
        let size32 = u32::try_from(size).map_err(|_| EINVAL)?;
        // SAFETY: `name` is NUL-terminated and outlives the cache (kept in
        // `Self`); `args` is valid for the call.
        let cache = unsafe {
            bindings::__kmem_cache_create_args(name.as_ptr().cast(), size32, &mut args, 0)
        };
        // INVARIANT: Created just now, with `name` kept alive beside it.
        Ok(Self {
            cache: NonNull::new(cache).ok_or(ENOMEM)?,
            size,
            _name: name,
            users: AtomicUsize::new(0),
        })
    }

    /// `kmem_cache_alloc(cache, gfp)`.
    #[inline(always)]
    pub(crate) fn alloc(&self, gfp: Gfp) -> Option<NonNull<u8>> {
        // SAFETY: The cache is live (type invariant); any gfp is accepted.
        NonNull::new(unsafe { bindings::kmem_cache_alloc_noprof(self.cache.as_ptr(), gfp) }.cast())
    }

    /// `kmem_cache_free(cache, ptr)`.
    ///
    /// # Safety
    ///
    /// `ptr` came from [`Self::alloc`] on this cache and is not used after.
    #[inline(always)]
    pub(crate) unsafe fn free(&self, ptr: NonNull<u8>) {
        // SAFETY: Per the function's contract.
        unsafe { bindings::kmem_cache_free(self.cache.as_ptr(), ptr.as_ptr().cast()) }
    }

    /// `kmem_cache_alloc_bulk()`: fills all of `objs` or nothing.
    pub(crate) fn alloc_bulk(&self, gfp: Gfp, objs: &mut [*mut c_void]) -> bool {
        // SAFETY: `objs` has room for `len` pointers; the cache is live.
        unsafe {
            bindings::kmem_cache_alloc_bulk_noprof(
                self.cache.as_ptr(),
                gfp,
                objs.len(),
                objs.as_mut_ptr(),
            )
        }
    }

    /// `kmem_cache_free_bulk()`.
    ///
    /// # Safety
    ///
    /// `objs` holds objects of this cache, each freed once and not used after.
    pub(crate) unsafe fn free_bulk(&self, objs: &mut [*mut c_void]) {
        // SAFETY: Per the function's contract.
        unsafe {
            bindings::kmem_cache_free_bulk(self.cache.as_ptr(), objs.len(), objs.as_mut_ptr())
        }
    }

    /// The raw cache, for the kernel's `mempool_alloc_slab()`.
    pub(crate) fn as_raw(&self) -> *mut bindings::kmem_cache {
        self.cache.as_ptr()
    }

    /// `kmem_cache_size()`: the usable object size.
    pub(crate) fn object_size(&self) -> usize {
        // SAFETY: The cache is live.
        unsafe { bindings::kmem_cache_size(self.cache.as_ptr()) as usize }
    }
}

impl Drop for KernelCache {
    fn drop(&mut self) {
        // SAFETY: Destroyed once; every object was freed (type invariant).
        unsafe { bindings::kmem_cache_destroy(self.cache.as_ptr()) };
    }
}

/// Most kernel caches the registry holds.
const MAX_CACHES: usize = 16;

global_lock! {
    // SAFETY: Initialized in `init()` before any use.
    unsafe(uninit) static KCACHES: Mutex<KVec<Arc<KernelCache>>> = KVec::new();
}

/// Sets up the registry.
pub(crate) fn init() {
    // SAFETY: Called once at module init before any other use.
    unsafe { KCACHES.init() };
}

/// Destroys every kernel cache (all users are gone at unload).
pub(crate) fn exit() {
    drop(core::mem::take(&mut *KCACHES.lock()));
}

/// The kernel cache of `size`-byte objects, created on first use.
pub(crate) fn get(size: usize) -> Result<KernelCacheRef> {
    let mut caches = KCACHES.lock();
    registry::get_or_create(
        &mut caches,
        MAX_CACHES,
        |c| c.size == size,
        |_| {
            Ok(Arc::new(
                KernelCache::create("ldd_kmem", size)?,
                GFP_KERNEL,
            )?)
        },
    )
}
