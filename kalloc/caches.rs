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

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;
use kernel::{
    cpu::{nr_cpu_ids, CpuId},
    new_spinlock_irq,
    prelude::*,
    processor::cpu_relax,
    sync::{
        atomic::{Acquire, AtomicFlag, Release},
        global_lock, Arc, SpinLockIrq,
    },
    task::might_sleep,
    time::{delay::fsleep, Delta},
};

use crate::allocator::{
    self, CacheConfig, CacheEnv, CacheFlags, CacheLayout, CacheName, CacheStats, Depot,
    DestroyError, FreeError, Magazine, PageRequest, PageSource, Zone,
};
use crate::kalloc::pages::{KernelPages, PAGES};
use crate::scull::backend::Backend;
use crate::uapi::{self as uapi, cache_flags};

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

/// One CPU's magazine of one cache and the flag that makes it exclusive.
///
/// Aligned to a cache line so that two CPUs' slots never share one.
///
/// # Invariants
///
/// `mag` is only accessed through a [`SlotGuard`], and at most one exists
/// at a time: it is created only by switching `held` from false to true and
/// sets it back to false when dropped.
#[repr(align(64))]
struct CpuSlot {
    held: AtomicFlag,
    mag: UnsafeCell<Magazine>,
}

// SAFETY: `mag` is only reached through the one `SlotGuard` that may exist
// at a time (type invariant), and a `Magazine` may move between threads.
unsafe impl Sync for CpuSlot {}

impl CpuSlot {
    fn new() -> Self {
        Self {
            held: AtomicFlag::new(false),
            mag: UnsafeCell::new(Magazine::new()),
        }
    }

    /// Takes the slot if nobody holds it; never waits.
    #[inline(always)]
    fn try_hold(&self) -> Option<SlotGuard<'_>> {
        // Acquire pairs with the Release in `SlotGuard::drop`: the previous
        // holder's writes to the magazine are visible to us.
        self.held.cmpxchg(false, true, Acquire).ok()?;
        // INVARIANT: we switched `held` from false to true.
        Some(SlotGuard(self))
    }

    /// Takes the slot, waiting for its holder. Process context only: the
    /// holder may be a preempted task that needs this CPU to finish.
    fn hold(&self) -> SlotGuard<'_> {
        // Say so even when the slot is free at once: the debug kernel then
        // catches any caller in atomic context, not only an unlucky one.
        might_sleep();
        let mut tries = 0u32;
        loop {
            if let Some(g) = self.try_hold() {
                return g;
            }
            tries = tries.saturating_add(1);
            if tries < 100 {
                cpu_relax();
            } else {
                fsleep(Delta::from_micros(10));
            }
        }
    }
}

/// Exclusive access to one [`CpuSlot`]'s magazine.
struct SlotGuard<'a>(&'a CpuSlot);

impl Deref for SlotGuard<'_> {
    type Target = Magazine;

    fn deref(&self) -> &Magazine {
        // SAFETY: we are the slot's only guard (`CpuSlot` invariant).
        unsafe { &*self.0.mag.get() }
    }
}

impl DerefMut for SlotGuard<'_> {
    fn deref_mut(&mut self) -> &mut Magazine {
        // SAFETY: we are the slot's only guard (`CpuSlot` invariant).
        unsafe { &mut *self.0.mag.get() }
    }
}

impl Drop for SlotGuard<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.0.held.store(false, Release);
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
    slots: KVec<CpuSlot>,
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
        let cpu = CpuId::current().as_u32() as usize;
        let mut mag = self.slots.get(cpu)?.try_hold()?;
        Some(f(&mut mag))
    }

    fn with_depot<R>(&self, f: impl FnOnce(&mut Depot) -> R) -> R {
        f(&mut self.depot.lock())
    }

    fn for_each_magazine(&self, mut f: impl FnMut(&mut Magazine)) {
        for slot in &self.slots {
            f(&mut slot.hold());
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
            slots.push(CpuSlot::new(), GFP_KERNEL)?;
        }
        Arc::pin_init(
            pin_init!(Self {
                layout,
                abi_flags: flags,
                zone: if flags & cache_flags::CACHE_DMA != 0 { Zone::Dma } else { Zone::Normal },
                pages: CachePages { owner },
                depot <- new_spinlock_irq!(Depot::new(), "OurCache::depot"),
                slots,
            }),
            GFP_KERNEL,
        )
    }

    /// `kmem_cache_alloc()`: one object. `may_sleep` is the caller's GFP
    /// (only a new slab's page allocation can sleep).
    pub(crate) fn alloc(&self, may_sleep: bool) -> Result<NonNull<u8>> {
        let req = if may_sleep {
            PageRequest::KERNEL
        } else {
            PageRequest::ATOMIC
        };
        self.alloc_req(req).ok_or(ENOMEM)
    }

    /// `alloc` with a full page request (the mempool's opportunistic try).
    pub(crate) fn alloc_req(&self, mut req: PageRequest) -> Option<NonNull<u8>> {
        req.zone = self.zone;
        allocator::alloc(self, req).ok()
    }

    /// `kmem_cache_free()`: refuses what is not a live object of this cache.
    pub(crate) fn free(&self, ptr: NonNull<u8>) -> core::result::Result<(), FreeError> {
        allocator::free(self, ptr)
    }

    /// Gives empty slabs back; returns the pages freed.
    pub(crate) fn shrink(&self) -> usize {
        allocator::shrink(self)
    }

    /// The slabinfo numbers.
    pub(crate) fn stats(&self) -> CacheStats {
        allocator::stats(self)
    }

    /// Object size.
    pub(crate) fn size(&self) -> usize {
        self.layout.size()
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
/// Flag of the private caches of `LDD_IOC_BAD_FREE`.
const BAD_FREE_PRIVATE: u32 = cache_flags::TEST_PRIVATE;

/// Most caches the registry holds.
const MAX_CACHES: usize = 32;

global_lock! {
    // SAFETY: Initialized in `init()` before any use.
    unsafe(uninit) static CACHES: Mutex<KVec<Arc<OurCache>>> = KVec::new();
}

/// A NUL-padded ABI name as text (up to its first NUL).
pub(crate) fn name_str(name: &[u8]) -> &str {
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    core::str::from_utf8(name.get(..end).unwrap_or(&[])).unwrap_or("?")
}

/// Debug flags every cache gets (module parameter `cache_debug`, like the
/// `slub_debug=PZ` boot parameter).
static DEBUG_FLAGS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Sets up the registry; `debug` is the `cache_debug` parameter (1 poison,
/// 2 red zones).
pub(crate) fn init(debug: u32) -> Result {
    let mut flags = 0;
    if debug & 1 != 0 {
        flags |= cache_flags::POISON;
    }
    if debug & 2 != 0 {
        flags |= cache_flags::RED_ZONE;
    }
    DEBUG_FLAGS.store(flags, core::sync::atomic::Ordering::Relaxed);
    // SAFETY: Called once, at module init, before any other use of these.
    unsafe {
        CACHES.init();
        BAD_FREES.init();
    }
    Ok(())
}

/// Destroys every cache (all users are gone by now) and checks the pages.
pub(crate) fn exit() {
    let caches = core::mem::take(&mut *CACHES.lock());
    drop(caches);
    PAGES.check_empty();
}

/// The cache of `size`-byte objects with `flags`, created on first use.
pub(crate) fn get(size: usize, flags: u32) -> Result<Arc<OurCache>> {
    let flags = flags | DEBUG_FLAGS.load(core::sync::atomic::Ordering::Relaxed);
    let mut caches = CACHES.lock();
    if let Some(c) = caches
        .iter()
        .find(|c| c.size() == size && c.abi_flags == flags)
    {
        return Ok(c.clone());
    }
    if caches.len() >= MAX_CACHES {
        return Err(ENOSPC);
    }
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
    let pool = if flags & POOL_PRIVATE != 0 {
        "pool-"
    } else {
        ""
    };
    let _ = core::fmt::Write::write_fmt(&mut w, format_args!("ldd-{pool}{dma}{size}{dbg}"));
    let cache = OurCache::create(
        name_str(&name).as_bytes(),
        size,
        flags,
        caches.len() as u32 + 1,
    )?;
    caches.push(cache.clone(), GFP_KERNEL)?;
    Ok(cache)
}

/// The ABI view of cache `index`, ENOENT past the last one.
pub(crate) fn info(index: u32) -> Result<uapi::CacheInfo> {
    let cache = CACHES.lock().get(index as usize).cloned().ok_or(ENOENT)?;
    Ok(cache.info(index))
}

/// Shrinks every cache; returns the pages freed.
///
/// Waits for a running `LDD_IOC_BAD_FREE`: its write-after-free scenario
/// writes into an object it has just freed, whose slab must not be given
/// back to the page allocator meanwhile.
pub(crate) fn shrink_all() -> usize {
    let _no_bad_free = BAD_FREES.lock();
    let caches: KVec<Arc<OurCache>> = {
        let guard = CACHES.lock();
        let mut v = KVec::new();
        for c in guard.iter() {
            if v.push(c.clone(), GFP_KERNEL).is_err() {
                break;
            }
        }
        v
    };
    caches.iter().map(|c| c.shrink()).sum()
}

/// One quantum from our cache: the scullc store.
pub(crate) fn store_alloc(backend: &Backend, _len: usize) -> Result<NonNull<u8>> {
    match backend {
        Backend::Cache(cache) => cache.alloc(true),
        // Never sleeps: see the pools module for why the store must not.
        Backend::Mempool(pool) => pool.alloc(false),
        _ => Err(EINVAL),
    }
}

/// Gives a quantum back to our cache.
pub(crate) fn store_free(backend: &Backend, ptr: NonNull<u8>) {
    let refused = match backend {
        Backend::Cache(cache) => cache.free(ptr).err(),
        Backend::Mempool(pool) => pool.free(ptr).err().map(|_| FreeError::Foreign),
        _ => None,
    };
    if let Some(e) = refused {
        pr_err!("store free refused: {e:?}\n");
    }
}

/// The slub_debug=PZ scenarios of `LDD_IOC_BAD_FREE`, on a private debug
/// cache of 96-byte objects. The corrupting writes land in our own slab
/// pages (the object's poisoned body, the red zone after it), never outside.
fn debug_scenario(
    scenario: u32,
    refusal: &dyn Fn(core::result::Result<(), FreeError>) -> i32,
) -> Result<i32> {
    const SIZE: usize = 96;
    let flags = BAD_FREE_PRIVATE | cache_flags::POISON | cache_flags::RED_ZONE;
    let cache = get(SIZE, flags)?;
    let p = cache.alloc(true)?;
    if scenario == uapi::bad_free::OVERFLOW {
        // SAFETY: `p` is a live object of a red-zoned cache: the byte after
        // it is the right red zone, inside the same slab.
        unsafe { p.as_ptr().add(SIZE).write_volatile(0x41) };
        // The free is refused and the object stays allocated, as SLUB's
        // "Object ... not freed". Repair the red zone (SLUB_RED_ACTIVE) and
        // free it for real, so the test cache holds nothing afterwards.
        let r = refusal(cache.free(p));
        // SAFETY: As above: the red-zone byte of a still-allocated object.
        unsafe { p.as_ptr().add(SIZE).write_volatile(0xcc) };
        if cache.free(p).is_err() {
            pr_err!("bad_free: the repaired object was refused\n");
        }
        return Ok(r);
    }
    let before = cache.stats().poison_errors;
    if cache.free(p).is_err() {
        return Err(EINVAL);
    }
    // SAFETY: `p` was just freed into a poisoning cache: its body is in one
    // of our slabs, filled with POISON_FREE; the middle byte is not the
    // free-list link (debug caches keep it past the object).
    unsafe { p.as_ptr().add(SIZE / 2).write_volatile(0x41) };
    // The debug path hands out the most recently freed object first and
    // checks its poison.
    let q = cache.alloc(true)?;
    let detected = cache.stats().poison_errors > before;
    if cache.free(q).is_err() {
        pr_err!("bad_free: a good free after the poison check was refused\n");
    }
    Ok(if detected {
        uapi::refusal::POISON
    } else {
        uapi::refusal::ACCEPTED
    })
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
            0,
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

global_lock! {
    // SAFETY: Initialized in `init()` before any use.
    unsafe(uninit) static BAD_FREES: Mutex<()> = ();
}

/// `LDD_IOC_BAD_FREE`: one deliberately wrong free on a test cache of
/// 64-byte objects, to show it is refused and counted. Returns the
/// [`uapi::refusal`] the cache gave.
///
/// The cache is private to this ioctl and the scenarios run one at a time,
/// so between the two frees of DOUBLE no one can allocate the object again
/// (which would make the second free legitimate). A concurrent SHRINK may
/// give the emptied slab back in between: the second free is then refused
/// as FOREIGN instead.
pub(crate) fn bad_free(scenario: u32) -> Result<i32> {
    use uapi::bad_free as bf;
    if scenario >= bf::COUNT {
        return Err(EINVAL);
    }
    let _one_at_a_time = BAD_FREES.lock();
    let cache = get(64, BAD_FREE_PRIVATE)?;
    let refusal = |r: core::result::Result<(), FreeError>| match r {
        Ok(()) => uapi::refusal::ACCEPTED,
        Err(FreeError::Foreign) => uapi::refusal::FOREIGN,
        Err(FreeError::Misaligned) => uapi::refusal::MISALIGNED,
        Err(FreeError::DoubleFree) => uapi::refusal::DOUBLE,
        Err(FreeError::RedZone) => uapi::refusal::RED_ZONE,
    };
    if scenario == bf::WRITE_AFTER_FREE || scenario == bf::OVERFLOW {
        return debug_scenario(scenario, &refusal);
    }
    if scenario == bf::FOREIGN_KMALLOC {
        let layout = core::alloc::Layout::from_size_align(64, 8).map_err(|_| EINVAL)?;
        let p: NonNull<u8> =
            <kernel::alloc::allocator::Kmalloc as kernel::alloc::Allocator>::alloc(
                layout,
                GFP_KERNEL,
                kernel::alloc::NumaNode::NO_NODE,
            )?
            .cast();
        let r = refusal(cache.free(p));
        // SAFETY: `p` came from kmalloc with `layout` and our cache refused it.
        unsafe { <kernel::alloc::allocator::Kmalloc as kernel::alloc::Allocator>::free(p, layout) };
        return Ok(r);
    }
    if scenario == bf::FOREIGN_CACHE {
        let other = get(128, BAD_FREE_PRIVATE)?;
        let p = other.alloc(true)?;
        let r = refusal(cache.free(p));
        if other.free(p).is_err() {
            pr_err!("bad_free: the owning cache refused its own object\n");
        }
        return Ok(r);
    }
    let p = cache.alloc(true)?;
    let addr = p.as_ptr() as usize;
    let r = match scenario {
        bf::MISALIGNED => {
            let inside = NonNull::new((addr + 8) as *mut u8).ok_or(EINVAL)?;
            refusal(cache.free(inside))
        }
        bf::SLAB_HEADER => {
            let base = addr & !(cache.layout.slab_bytes() - 1);
            refusal(cache.free(NonNull::new(base as *mut u8).ok_or(EINVAL)?))
        }
        _ => {
            // DOUBLE: the first free is right, the second is the bug.
            if cache.free(p).is_err() {
                return Err(EINVAL);
            }
            return Ok(refusal(cache.free(p)));
        }
    };
    if cache.free(p).is_err() {
        pr_err!("bad_free: a good free after the bad one was refused\n");
    }
    Ok(r)
}
