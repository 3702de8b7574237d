// SPDX-License-Identifier: GPL-2.0

//! Our lookaside caches in the kernel (LDD3 chapter 8, "Lookaside Caches"):
//! the allocator core of [`crate::allocator`] given its environment here.
//!
//! The core needs three things ([`CacheEnv`]); the kernel gives them so:
//! - the page source: [`PAGES`], the host page allocator, counted per zone;
//! - the depot lock: a `SpinLockIrq`, because the lab allocates from hard
//!   interrupt context too, and a lock taken there must never be held with
//!   interrupts on;
//! - per-CPU magazines: one [`CpuSlot`] per possible CPU, a magazine and a
//!   flag taken with one `cmpxchg`: the same idea as the kernel's
//!   `local_trylock()` (include/linux/local_lock.h), which SLUB's sheaves
//!   use. The fast path only ever *tries*: if the slot is held (this is an
//!   interrupt on top of its holder, or a task holding it was preempted, or
//!   `shrink`/`stats` is visiting it), the core goes to the depot directly.
//!   So the fast path disables neither interrupts nor preemption and never
//!   spins; a slot is only waited for in process context, by
//!   `for_each_magazine`. There is no per-CPU variable abstraction in the
//!   kernel crate; an array indexed by `CpuId::current()` is the stand-in
//!   (a stale id after migration only costs locality: the flag keeps the
//!   slot exclusive).
//!
//! Lock order: a magazine slot, then the depot. The registry mutex is taken
//! only in process context, never under either.
//!
//! The module keeps a registry of caches by object size and flags, created
//! on first use: the scullc store asks for one per quantum size, the lab for
//! one per object size it is asked for. All are destroyed at unload.

use core::ptr::NonNull;
use core::sync::atomic::{
    AtomicU32,
    AtomicUsize,
    Ordering, //
};
use kernel::{
    cpu::nr_cpu_ids,
    new_spinlock_irq,
    prelude::*,
    sync::{
        global_lock,
        Arc,
        SpinLockIrq, //
    }, //
};

use super::pages::{
    KernelPages,
    PAGES, //
};
use super::percpu::{
    Counted,
    CpuSlot, //
};
use super::registry::{
    self,
    Entry,
    Quota,
    Ref, //
};
use crate::allocator::{
    self,
    CacheConfig,
    CacheEnv,
    CacheFlags,
    CacheLayout,
    CacheName,
    CacheStats,
    Depot,
    DestroyError,
    FreeError,
    Magazine,
    PageRequest,
    PageSource,
    Zone, //
};
use crate::uapi::{
    self,
    cache_flags, //
};

/// The page source of one cache: [`PAGES`] with the cache's owner id, so
/// fault injection can target it.
pub(crate) struct CachePages {
    owner: u32,
}

impl PageSource for CachePages {
    fn alloc_pages(&self, order: u32, req: PageRequest) -> Option<NonNull<u8>> {
        PAGES.alloc_for(self.owner, order, req)
    }

    unsafe fn free_pages(&self, run: NonNull<u8>, order: u32) {
        // SAFETY: Forwarded contract: `run` came from `alloc_pages(order)`.
        unsafe { <KernelPages as PageSource>::free_pages(&PAGES, run, order) }
    }

    fn read_nofault(&self, addr: usize, out: &mut [u8]) -> bool {
        PAGES.read_nofault(addr, out)
    }
}

/// One of our caches.
#[pin_data(PinnedDrop)]
pub(crate) struct OurCache {
    layout: CacheLayout,
    abi_flags: u32,
    zone: Zone,
    pages: CachePages,
    #[pin]
    depot: SpinLockIrq<Depot>,
    slots: KVec<CpuSlot<Magazine>>,
    users: AtomicUsize,
}

impl Counted for Magazine {
    #[inline(always)]
    fn count(&self) -> u32 {
        // At most MAG_CAPACITY (64): no truncation.
        self.len() as u32
    }
}

/// A counted reference to one of our caches, from [`get`].
pub(crate) type CacheRef = Ref<OurCache>;

impl Entry for OurCache {
    fn users(&self) -> &AtomicUsize {
        &self.users
    }

    fn idle(&self) -> bool {
        let s = self.stats();
        s.active_objs == s.cached_objs
    }
}

impl CacheEnv for OurCache {
    type Src = CachePages;

    fn layout(&self) -> &CacheLayout {
        &self.layout
    }

    fn pages(&self) -> &CachePages {
        &self.pages
    }

    #[inline(always)]
    fn try_with_magazine<R>(&self, f: impl FnOnce(&mut Magazine) -> R) -> Option<R> {
        // SAFETY: `slots` has `nr_cpu_ids` entries (`create`).
        let mut mag = unsafe { CpuSlot::try_hold_current(&self.slots) }?;
        Some(f(&mut mag))
    }

    fn with_depot<R>(&self, f: impl FnOnce(&mut Depot) -> R) -> R {
        f(&mut self.depot.lock())
    }

    fn for_each_magazine(&self, mut f: impl FnMut(&mut Magazine)) {
        for cpu in 0..self.slots.len() {
            CpuSlot::visit(&self.slots, cpu, &mut f);
        }
    }
}

impl OurCache {
    /// Creates a cache of `size`-byte objects with [`cache_flags`] `flags`.
    fn create(name: &[u8], size: usize, flags: u32, owner: u32) -> Result<Arc<Self>> {
        let cfg = CacheConfig {
            name: CacheName::new(name),
            size,
            align: 0,
            flags: CacheFlags {
                hwcache_align: flags & cache_flags::HWCACHE_ALIGN != 0,
                poison: flags & cache_flags::POISON != 0,
                red_zone: flags & cache_flags::RED_ZONE != 0,
            },
            ctor: None,
        };
        let layout = CacheLayout::new(&cfg).map_err(|_| EINVAL)?;
        let cpus = nr_cpu_ids().max(1);
        let mut slots = KVec::with_capacity(cpus as usize, GFP_KERNEL)?;
        for _ in 0..cpus {
            slots.push(CpuSlot::new(Magazine::new()), GFP_KERNEL)?;
        }
        Arc::pin_init(
            pin_init!(Self {
                layout,
                abi_flags: flags,
                zone: if flags & cache_flags::CACHE_DMA != 0 { Zone::Dma } else { Zone::Normal },
                pages: CachePages { owner },
                depot <- new_spinlock_irq!(Depot::new(), "OurCache::depot"),
                slots,
                users: AtomicUsize::new(0),
            }),
            GFP_KERNEL,
        )
    }

    /// `kmem_cache_alloc()`: one object. `may_sleep` is the caller's GFP
    /// (only a new slab's page allocation can sleep). The hit path is
    /// inlined into the caller; the rest is one call.
    #[inline(always)]
    pub(crate) fn alloc(&self, may_sleep: bool) -> Result<NonNull<u8>> {
        match allocator::alloc_hit(self) {
            Some(p) => Ok(p),
            None => self.alloc_miss(may_sleep),
        }
    }

    #[inline(never)]
    fn alloc_miss(&self, may_sleep: bool) -> Result<NonNull<u8>> {
        let req = if may_sleep {
            PageRequest::KERNEL
        } else {
            PageRequest::ATOMIC
        };
        self.alloc_req_slow(req).ok_or(ENOMEM)
    }

    /// `alloc` with a full page request (the mempool's opportunistic try).
    #[inline(always)]
    pub(crate) fn alloc_req(&self, req: PageRequest) -> Option<NonNull<u8>> {
        match allocator::alloc_hit(self) {
            Some(p) => Some(p),
            None => self.alloc_req_slow(req),
        }
    }

    #[inline(never)]
    fn alloc_req_slow(&self, mut req: PageRequest) -> Option<NonNull<u8>> {
        req.zone = self.zone;
        allocator::alloc_slow(self, req).ok()
    }

    /// `kmem_cache_alloc_bulk()`: fills `out` with objects, all or none
    /// (ENOMEM, nothing kept).
    pub(crate) fn alloc_bulk(&self, may_sleep: bool, out: &mut [*mut u8]) -> Result {
        let mut req = if may_sleep {
            PageRequest::KERNEL
        } else {
            PageRequest::ATOMIC
        };
        req.zone = self.zone;
        allocator::alloc_bulk(self, req, out).map_err(|_| ENOMEM)
    }

    /// `kmem_cache_free_bulk()`: frees every non-null entry of `ptrs`, each
    /// validated as by [`Self::free`]; returns how many were refused.
    pub(crate) fn free_bulk(&self, ptrs: &[*mut u8]) -> usize {
        allocator::free_bulk(self, ptrs)
    }

    /// `kmem_cache_free()`: refuses what is not a live object of this cache.
    /// The hit path is inlined into the caller; the rest is one call.
    #[inline(always)]
    pub(crate) fn free(&self, ptr: NonNull<u8>) -> core::result::Result<(), FreeError> {
        match allocator::free_hit(self, ptr) {
            Some(r) => r,
            None => self.free_miss(ptr),
        }
    }

    #[inline(never)]
    fn free_miss(&self, ptr: NonNull<u8>) -> core::result::Result<(), FreeError> {
        allocator::free_slow(self, ptr)
    }

    /// Gives empty slabs back; returns the pages freed.
    pub(crate) fn shrink(&self) -> usize {
        allocator::shrink(self)
    }

    /// Shrinks when more than [`KEEP_EMPTY`] slabs are empty, as SLUB keeps
    /// at most `min_partial` of them: what users freed goes back to the page
    /// allocator instead of staying with the cache until a root SHRINK.
    /// Process context (a shrink waits for busy magazines).
    pub(crate) fn trim(&self) {
        if self.depot.lock().stats(&self.layout).slabs_empty > KEEP_EMPTY {
            self.shrink();
        }
    }

    /// What reclaim could take without visiting a CPU: the objects of
    /// empty slabs and of the stash (the depot's lock) and those in the
    /// magazines as each
    /// CPU last published them ([`CpuSlot::published`]).
    pub(crate) fn reclaimable_objects(&self) -> usize {
        let s = self.depot.lock().stats(&self.layout);
        let empty = s
            .slabs_empty
            .saturating_mul(s.objperslab)
            .saturating_add(s.stashed_objs);
        let cached: usize = self.slots.iter().map(|s| s.published() as usize).sum();
        empty.saturating_add(cached)
    }

    /// The slabinfo numbers.
    pub(crate) fn stats(&self) -> CacheStats {
        allocator::stats(self)
    }

    /// Object size.
    pub(crate) fn size(&self) -> usize {
        self.layout.size()
    }

    /// The fault-injection owner id of this cache (its registry index + 1).
    pub(crate) fn owner(&self) -> u32 {
        self.pages.owner
    }

    /// Bytes of one slab (a slab starts at a multiple of it).
    pub(crate) fn slab_bytes(&self) -> usize {
        self.layout.slab_bytes()
    }

    /// The ABI view of this cache.
    pub(crate) fn info(&self, index: u32) -> uapi::CacheInfo {
        let s = self.stats();
        let mut name = [0u8; uapi::NAME_LEN];
        for (d, s) in name.iter_mut().zip(self.layout.name()) {
            *d = *s;
        }
        uapi::CacheInfo {
            index,
            flags: self.abi_flags,
            name,
            active_objs: s.active_objs as u64,
            cached_objs: s.cached_objs as u64,
            stashed_objs: s.stashed_objs as u64,
            num_objs: s.num_objs as u64,
            objsize: s.objsize as u64,
            stride: self.layout.stride() as u64,
            objperslab: s.objperslab as u64,
            pagesperslab: s.pagesperslab as u64,
            partial_slabs: s.slabs_partial as u64,
            full_slabs: s.slabs_full as u64,
            empty_slabs: s.slabs_empty as u64,
            allocs: s.allocs,
            frees: s.frees,
            cpu_alloc_hits: s.cpu_alloc_hits,
            cpu_free_hits: s.cpu_free_hits,
            refills: s.refills,
            drains: s.drains,
            slabs_created: s.slabs_created,
            slabs_freed: s.slabs_freed,
            refused_foreign: s.refused_foreign,
            refused_misaligned: s.refused_misaligned,
            refused_double: s.refused_double,
            poison_errors: s.poison_errors,
            redzone_errors: s.redzone_errors,
        }
    }
}

#[pinned_drop]
impl PinnedDrop for OurCache {
    fn drop(self: Pin<&mut Self>) {
        // `kmem_cache_destroy()`: refused, and the slabs left to the leak
        // report, while objects are live (freeing them would be a use after
        // free for whoever holds them).
        if let Err(DestroyError::Busy { live }) = allocator::destroy(&*self) {
            pr_err!(
                "cache {}: destroy refused, {live} objects still allocated\n",
                core::str::from_utf8(self.layout.name()).unwrap_or("?")
            );
        }
    }
}

/// Flag of a mempool's private backing cache.
pub(crate) const POOL_PRIVATE: u32 = cache_flags::POOL_PRIVATE;

/// Most caches the registry holds.
const MAX_CACHES: usize = 32;

/// Empty slabs a cache keeps before [`OurCache::trim`] gives them back.
const KEEP_EMPTY: usize = 4;

global_lock! {
    // SAFETY: Initialized in `init()` before any use.
    unsafe(uninit) static CACHES: Mutex<KVec<Arc<OurCache>>> = KVec::new();
}

global_lock! {
    // SAFETY: Initialized in `init()` before any use.
    unsafe(uninit) static NO_SHRINK: Mutex<()> = ();
}

/// A NUL-padded ABI name as text (up to its first NUL).
pub(crate) fn name_str(name: &[u8]) -> &str {
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    core::str::from_utf8(name.get(..end).unwrap_or(&[])).unwrap_or("?")
}

/// Debug flags every cache gets (module parameter `cache_debug`, like the
/// `slub_debug=PZ` boot parameter).
static DEBUG_FLAGS: AtomicU32 = AtomicU32::new(0);

/// Sets up the registry; `debug` is the `cache_debug` parameter (1 poison,
/// 2 red zones).
pub(crate) fn init(debug: u32) {
    let mut flags = 0;
    if debug & 1 != 0 {
        flags |= cache_flags::POISON;
    }
    if debug & 2 != 0 {
        flags |= cache_flags::RED_ZONE;
    }
    DEBUG_FLAGS.store(flags, Ordering::Relaxed);
    // SAFETY: Called once, at module init, before any other use of these.
    unsafe {
        CACHES.init();
        NO_SHRINK.init();
    }
}

/// Destroys every cache (all users are gone by now) and checks the pages.
pub(crate) fn exit() {
    let caches = core::mem::take(&mut *CACHES.lock());
    drop(caches);
    PAGES.check_empty();
}

/// The name of a cache of `size`-byte objects with `flags`.
fn cache_name(size: usize, flags: u32) -> [u8; uapi::NAME_LEN] {
    let mut name = [0u8; uapi::NAME_LEN];
    let mut w = kernel::str::Formatter::new(&mut name);
    let dbg = if flags & (cache_flags::POISON | cache_flags::RED_ZONE) != 0 {
        "-debug"
    } else {
        ""
    };
    let dma = if flags & cache_flags::CACHE_DMA != 0 {
        "dma-"
    } else {
        ""
    };
    let private = if flags & POOL_PRIVATE != 0 {
        "pool-"
    } else if flags & cache_flags::TEST_PRIVATE != 0 {
        "test-"
    } else {
        ""
    };
    // A name longer than the buffer is cut short, which is harmless.
    let _ = core::fmt::Write::write_fmt(&mut w, format_args!("ldd-{private}{dma}{size}{dbg}"));
    name
}

/// The cache of `size`-byte objects with `flags`, created on first use.
/// ENOSPC when the registry is full of caches in use.
pub(crate) fn get(size: usize, flags: u32) -> Result<CacheRef> {
    get_quota(size, flags, Quota::Whole)
}

/// [`get`] for a caller whose share of the registry is `quota`.
pub(crate) fn get_quota(size: usize, flags: u32, quota: Quota) -> Result<CacheRef> {
    lookup(size, flags, quota, false)
}

/// A new cache of `size`-byte objects that no [`get`] will ever share: a
/// mempool's private backing cache (a destroyed pool's cache is not handed
/// to the next pool of its size).
pub(crate) fn get_private(size: usize) -> Result<CacheRef> {
    lookup(size, POOL_PRIVATE, Quota::Whole, true)
}

fn lookup(size: usize, flags: u32, quota: Quota, private: bool) -> Result<CacheRef> {
    let flags = flags | DEBUG_FLAGS.load(Ordering::Relaxed);
    let mut caches = CACHES.lock();
    registry::get_or_create(
        &mut caches,
        MAX_CACHES,
        quota,
        |c| !private && c.size() == size && c.abi_flags == flags,
        // Cache `index` is fault-injection owner `index + 1`.
        |index| {
            OurCache::create(
                name_str(&cache_name(size, flags)).as_bytes(),
                size,
                flags,
                index + 1,
            )
        },
    )
}

/// The ABI view of cache `index`, ENOENT past the last one.
pub(crate) fn info(index: u32) -> Result<uapi::CacheInfo> {
    let cache = registry::nth(&CACHES.lock(), index)?;
    Ok(cache.info(index))
}

/// Shrinks every cache; returns the pages freed.
pub(crate) fn shrink_all() -> Result<usize> {
    let _barrier = NO_SHRINK.lock();
    let caches = registry::all(&CACHES.lock())?;
    Ok(caches.iter().map(|c| c.shrink()).sum())
}

/// What reclaim may take from every cache without visiting a CPU, for our
/// shrinker's `count_objects` ([`super::shrinker`]): the objects of empty
/// slabs, read under each depot's lock, and those in magazines as each CPU
/// last published them. `None` when the registry or a
/// [`shrink_all`] is busy: reclaim can be entered from inside them (a
/// GFP_KERNEL allocation under the registry lock), so it never waits there.
///
/// Magazines are not visited: that runs on every CPU (`cpus_read_lock()`
/// and a kworker), which reclaim must not wait for (lockdep: `fs_reclaim`
/// → `cpu_hotplug_lock`). The shrink that reclaim asks for flushes them.
pub(crate) fn reclaimable() -> Option<usize> {
    let _barrier = NO_SHRINK.try_lock()?;
    let caches = CACHES.try_lock()?;
    Some(caches.iter().map(|c| c.reclaimable_objects()).sum())
}

/// Runs `f` while no [`shrink_all`] can run: for a demonstration that writes
/// into an object it has just freed, whose slab must not be given back to
/// the page allocator meanwhile.
pub(crate) fn without_shrink<R>(f: impl FnOnce() -> R) -> R {
    let _barrier = NO_SHRINK.lock();
    f()
}

/// `/proc/slabinfo`'s format (mm/slab_common.c), our counters appended.
pub(crate) fn write_slabinfo(f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
    writeln!(f, "slabinfo - version: 2.1 (ldd_alloc)")?;
    writeln!(
        f,
        "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> \
         : slabdata <active_slabs> <num_slabs> <sharedavail> \
         : ldd <cpu_alloc_hits> <cpu_free_hits> <refused_frees> <poison_errors> <redzone_errors>"
    )?;
    let mut index = 0;
    while let Ok(i) = info(index) {
        let slabs = i.partial_slabs + i.full_slabs + i.empty_slabs;
        writeln!(
            f,
            "{:<17} {:>6} {:>6} {:>6} {:>4} {:>4} : slabdata {:>6} {:>6} {:>6} : ldd {} {} {} {} {}",
            name_str(&i.name),
            i.active_objs,
            i.num_objs,
            i.objsize,
            i.objperslab,
            i.pagesperslab,
            i.partial_slabs + i.full_slabs,
            slabs,
            // SLAB's shared per-node array; ours is the stash.
            i.stashed_objs,
            i.cpu_alloc_hits,
            i.cpu_free_hits,
            i.refused_foreign + i.refused_misaligned + i.refused_double,
            i.poison_errors,
            i.redzone_errors,
        )?;
        index += 1;
    }
    Ok(())
}
