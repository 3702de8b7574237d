// SPDX-License-Identifier: GPL-2.0

//! The kernel's own lookaside caches (`kmem_cache_create()` and friends,
//! LDD3 chapter 8), the baseline our caches are compared with: one per
//! object size the lab or the benchmarks ask for, destroyed at unload.

use core::ptr::NonNull;
use kernel::{
    bindings,
    prelude::*,
    sync::{global_lock, Arc},
};

use crate::kalloc::gfp::Gfp;

/// Length of a cache name buffer.
const NAME_LEN: usize = 32;

/// A `struct kmem_cache` of SLUB.
///
/// # Invariants
///
/// `cache` came from a successful `kmem_cache_create()` with the name in
/// `name`, which lives as long as the cache (SLUB keeps the pointer), and is
/// destroyed exactly once, in `Drop`.
pub(crate) struct KernelCache {
    cache: NonNull<bindings::kmem_cache>,
    size: usize,
    _name: KBox<[u8; NAME_LEN]>,
}

// SAFETY: A kmem_cache may be used and destroyed from any CPU or thread.
unsafe impl Send for KernelCache {}
// SAFETY: kmem_cache_alloc/free are safe to call concurrently.
unsafe impl Sync for KernelCache {}

impl KernelCache {
    /// `kmem_cache_create("ldd_kmem_<size>", size, 0, 0, NULL)`.
    fn create(size: usize) -> Result<Self> {
        let mut name = KBox::new([0u8; NAME_LEN], GFP_KERNEL)?;
        let mut w = kernel::str::Formatter::new(&mut name[..NAME_LEN - 1]);
        core::fmt::Write::write_fmt(&mut w, format_args!("ldd_kmem_{size}")).map_err(|_| EINVAL)?;
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
        })
    }

    /// `kmem_cache_alloc(cache, gfp)`.
    pub(crate) fn alloc(&self, gfp: Gfp) -> Option<NonNull<u8>> {
        // SAFETY: The cache is live (type invariant); any gfp is accepted.
        NonNull::new(unsafe { bindings::kmem_cache_alloc_noprof(self.cache.as_ptr(), gfp) }.cast())
    }

    /// `kmem_cache_free(cache, ptr)`.
    ///
    /// # Safety
    ///
    /// `ptr` came from [`Self::alloc`] on this cache and is not used after.
    pub(crate) unsafe fn free(&self, ptr: NonNull<u8>) {
        // SAFETY: Per the function's contract.
        unsafe { bindings::kmem_cache_free(self.cache.as_ptr(), ptr.as_ptr().cast()) }
    }

    /// `kmem_cache_size()`: the usable object size.
    pub(crate) fn object_size(&self) -> usize {
        // SAFETY: The cache is live.
        unsafe { bindings::kmem_cache_size(self.cache.as_ptr()) as usize }
    }
}

impl Drop for KernelCache {
    fn drop(&mut self) {
        // SAFETY: Destroyed once; every user of the cache (an `Arc` holder)
        // is gone, so no object is live.
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
pub(crate) fn get(size: usize) -> Result<Arc<KernelCache>> {
    let mut caches = KCACHES.lock();
    if let Some(c) = caches.iter().find(|c| c.size == size) {
        return Ok(c.clone());
    }
    if caches.len() >= MAX_CACHES {
        return Err(ENOSPC);
    }
    let cache = Arc::new(KernelCache::create(size)?, GFP_KERNEL)?;
    caches.push(cache.clone(), GFP_KERNEL)?;
    Ok(cache)
}
