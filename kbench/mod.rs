// SPDX-License-Identifier: GPL-2.0

//! In-kernel benchmark loops (`LDD_IOC_BENCH`), in the manner of
//! prototype-kernel's `time_bench`: one ioctl times one allocator on one
//! case for `iters` operations with `ktime_get_mono_fast_ns()` and the TSC,
//! and times an empty loop of as many iterations as the baseline that
//! userspace subtracts. Userspace interleaves the allocators and repeats.
//!
//! Both sides get the same request: no debugging, no zeroing, `GFP_KERNEL`
//! on the kernel's side (our cache: `alloc(false)`, which only matters when
//! a new slab is needed; our pool: `alloc(true)`, as `GFP_KERNEL`).
//!
//! The kernel's `kmem_cache` is created here per run, with the arguments of
//! `kernel_caches.rs` (size, no alignment, no flags), because the bulk API
//! and `mempool_alloc_slab` need the raw cache. SLUB may merge it with a
//! compatible cache (kmalloc-<size> for instance): that is what a driver's
//! cache gets too.
//!
//! Under QEMU TCG the guest clock is emulated: only ratios of runs in the
//! same boot mean anything.

use core::ffi::{c_int, c_void};
use core::hint::black_box;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use kernel::{
    bindings,
    cpu::CpuId,
    interrupt::local_interrupt_disable,
    new_spinlock_irq,
    prelude::*,
    sync::{
        atomic::{Acquire, AtomicFlag, Release},
        Arc, SpinLockIrq,
    },
    types::ScopeGuard,
};

use crate::allocator::PageSource;
use crate::kalloc::caches::{self, OurCache};
use crate::kalloc::gfp::Gfp;
use crate::kalloc::pages::{PAGES, PAGE_SIZE};
use crate::kalloc::pools::{self, OurPool};
use crate::ldd_alloc_dev::{read_user, write_user};
use crate::uapi::{self as uapi, bench_alloc as ba, bench_op as bo, bench_prim as bp};

extern "C" {
    /// `void *__vmalloc_noprof(unsigned long size, gfp_t gfp_mask)`, exported
    /// by mm/vmalloc.c; the bindings lack it (it hides behind a macro).
    fn __vmalloc_noprof(size: usize, gfp_mask: Gfp) -> *mut c_void;
}

/// Set while a benchmark runs: runs are serialized, so they never time
/// each other.
static BUSY: AtomicBool = AtomicBool::new(false);

/// Objects the reserve benchmark may take out of a pool's cache to empty it.
const MAX_DRAIN: usize = 1 << 16;

/// `LDD_IOC_BENCH` and any later benchmark command.
pub(crate) fn ioctl(cmd: u32, arg: usize) -> Result<isize> {
    match cmd {
        uapi::LDD_IOC_BENCH => {
            let mut run = read_user::<uapi::BenchRun>(arg)?;
            if BUSY
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                return Err(EBUSY);
            }
            let _busy = ScopeGuard::new(|| BUSY.store(false, Ordering::Release));
            execute(&mut run)?;
            write_user(arg, &run)?;
            Ok(0)
        }
        _ => Err(ENOTTY),
    }
}

/// A time stamp: (nanoseconds, TSC cycles).
#[derive(Clone, Copy)]
struct Stamp(u64, u64);

impl Stamp {
    #[inline(always)]
    fn now() -> Self {
        // SAFETY: FFI call, NMI-safe and lock-free, callable from any context.
        let ns = unsafe { bindings::ktime_get_mono_fast_ns() };
        Self(ns, cycles())
    }

    /// (ns, cycles) from `self` to `later`.
    fn to(self, later: Self) -> (u64, u64) {
        (later.0.wrapping_sub(self.0), later.1.wrapping_sub(self.1))
    }
}

/// The TSC (0 where there is none).
#[inline(always)]
fn cycles() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `rdtsc` only reads the time stamp counter; every x86-64
        // CPU has one and the kernel does not disable it for itself.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// The empty loop of `iters` iterations: the baseline.
fn time_empty(iters: u64) -> (u64, u64) {
    let t0 = Stamp::now();
    for i in 0..iters {
        black_box(i);
    }
    t0.to(Stamp::now())
}

/// `IS_ERR()`.
fn is_err_ptr<T>(p: *mut T) -> bool {
    (p as usize) >= (-(bindings::MAX_ERRNO as isize)) as usize
}

/// A SLUB cache created for one run.
///
/// # Invariants
///
/// `cache` came from a successful `kmem_cache_create()` whose name is
/// `_name` (kept alive beside it) and is destroyed once, in `Drop`, after
/// every object was freed.
struct KCache {
    cache: NonNull<bindings::kmem_cache>,
    _name: KBox<[u8; 32]>,
}

// SAFETY: A kmem_cache may be used and destroyed from any CPU or thread.
unsafe impl Send for KCache {}
// SAFETY: kmem_cache_alloc/free are safe to call concurrently.
unsafe impl Sync for KCache {}

impl KCache {
    /// `kmem_cache_create("ldd_bench_<size>", size, 0, 0, NULL)`, the
    /// arguments `kernel_caches.rs` uses.
    fn new(size: u32) -> Result<Self> {
        let mut name = KBox::new([0u8; 32], GFP_KERNEL)?;
        let mut w = kernel::str::Formatter::new(&mut name[..31]);
        core::fmt::Write::write_fmt(&mut w, format_args!("ldd_bench_{size}"))
            .map_err(|_| EINVAL)?;
        // SAFETY: All-zeroes `kmem_cache_args` is "no alignment, no
        // constructor, defaults".
        let mut args: bindings::kmem_cache_args = unsafe { core::mem::zeroed() };
        // SAFETY: `name` is NUL-terminated and outlives the cache; `args` is
        // valid for the call.
        let cache =
            unsafe { bindings::__kmem_cache_create_args(name.as_ptr().cast(), size, &mut args, 0) };
        // INVARIANT: Created just now, with its name kept beside it.
        Ok(Self {
            cache: NonNull::new(cache).ok_or(ENOMEM)?,
            _name: name,
        })
    }

    fn raw(&self) -> *mut bindings::kmem_cache {
        self.cache.as_ptr()
    }
}

impl Drop for KCache {
    fn drop(&mut self) {
        // SAFETY: Destroyed once; the benchmark freed every object.
        unsafe { bindings::kmem_cache_destroy(self.raw()) };
    }
}

/// What a kernel mempool's allocation callbacks get: the cache, and a
/// switch that makes allocation fail so the reserve is used.
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
/// `cache` (fast path) or `data` (reserve path); both outlive it, since
/// `Drop` destroys the pool before the fields drop.
struct KPool {
    pool: NonNull<bindings::mempool>,
    data: KBox<PoolData>,
    _cache: KCache,
}

// SAFETY: A mempool may be used and destroyed from any CPU or thread.
unsafe impl Send for KPool {}
// SAFETY: mempool_alloc/free are safe to call concurrently; `data` is only
// read through atomics and a constant pointer.
unsafe impl Sync for KPool {}

/// Reserve of the kernel mempool: the module's `pool_min_nr` default.
const KPOOL_MIN_NR: c_int = 16;

impl KPool {
    /// With `failing`, over [`failing_alloc`] (armed once created);
    /// otherwise over `mempool_alloc_slab`/`mempool_free_slab`.
    fn new(size: u32, failing: bool) -> Result<Self> {
        let cache = KCache::new(size)?;
        let data = KBox::new(
            PoolData {
                cache: cache.raw(),
                fail: AtomicBool::new(false),
            },
            GFP_KERNEL,
        )?;
        // SAFETY: The callbacks match `pool_data`: the cache for the slab
        // pair, our `PoolData` for ours; both live as long as the pool.
        let pool = unsafe {
            if failing {
                bindings::mempool_create_node_noprof(
                    KPOOL_MIN_NR,
                    Some(failing_alloc),
                    Some(failing_free),
                    core::ptr::from_ref::<PoolData>(&data).cast_mut().cast(),
                    bindings::GFP_KERNEL,
                    bindings::NUMA_NO_NODE,
                )
            } else {
                bindings::mempool_create_node_noprof(
                    KPOOL_MIN_NR,
                    Some(bindings::mempool_alloc_slab),
                    Some(bindings::mempool_free_slab),
                    cache.raw().cast(),
                    bindings::GFP_KERNEL,
                    bindings::NUMA_NO_NODE,
                )
            }
        };
        let pool = NonNull::new(pool).ok_or(ENOMEM)?;
        data.fail.store(failing, Ordering::Relaxed);
        // INVARIANT: Created over `cache`/`data`, kept in `Self`.
        Ok(Self {
            pool,
            data,
            _cache: cache,
        })
    }
}

impl Drop for KPool {
    fn drop(&mut self) {
        // The reserve goes back to the cache: let the callbacks through.
        self.data.fail.store(false, Ordering::Relaxed);
        // SAFETY: Destroyed once, every element back (benchmark contract).
        unsafe { bindings::mempool_destroy(self.pool.as_ptr()) };
    }
}

/// The allocator under test.
enum Target {
    Ours(Arc<OurCache>),
    OurPool(Arc<OurPool>),
    Kmem(KCache),
    Kmalloc(usize),
    KPool(KPool),
    Pages(u32),
    FreePages(u32),
    Vmalloc(usize),
}

impl Target {
    fn new(alloc: u32, size: u32, op: u32) -> Result<Self> {
        Ok(match alloc {
            ba::OUR_CACHE => Self::Ours(caches::get(size as usize, 0)?),
            ba::KMEM_CACHE | ba::KMEM_BULK => Self::Kmem(KCache::new(size)?),
            ba::KMALLOC => Self::Kmalloc(size as usize),
            ba::OUR_POOL => Self::OurPool(pools::get(size as usize)?),
            ba::KERNEL_POOL => Self::KPool(KPool::new(size, op == bo::RESERVE)?),
            ba::ALLOC_PAGES => Self::Pages(size),
            ba::GET_FREE_PAGES => Self::FreePages(size),
            ba::VMALLOC => Self::Vmalloc(PAGE_SIZE << size),
            _ => return Err(EINVAL),
        })
    }

    /// One allocation; pages as their `struct page *`.
    #[inline(always)]
    fn alloc(&self) -> Option<NonNull<u8>> {
        let gfp = bindings::GFP_KERNEL;
        // SAFETY: FFI allocation calls with valid arguments: live caches and
        // pools (owned by `self`), orders <= 3, sizes <= 8192 or a few pages.
        let p: *mut u8 = unsafe {
            match self {
                Self::Ours(c) => return c.alloc(false).ok(),
                Self::OurPool(p) => return p.alloc(true).ok(),
                Self::Kmem(c) => bindings::kmem_cache_alloc_noprof(c.raw(), gfp).cast(),
                Self::Kmalloc(size) => bindings::__kmalloc_noprof(*size, gfp).cast(),
                Self::KPool(p) => bindings::mempool_alloc_noprof(p.pool.as_ptr(), gfp).cast(),
                Self::Pages(order) => bindings::alloc_pages(gfp, *order).cast(),
                Self::FreePages(order) => bindings::get_free_pages_noprof(gfp, *order) as *mut u8,
                Self::Vmalloc(size) => __vmalloc_noprof(*size, gfp).cast(),
            }
        };
        NonNull::new(p)
    }

    /// Frees what [`Self::alloc`] gave; false if the allocator refused.
    ///
    /// # Safety
    ///
    /// `p` came from `self.alloc()` and is not used afterwards.
    #[inline(always)]
    unsafe fn free(&self, p: NonNull<u8>) -> bool {
        let raw = p.as_ptr();
        // SAFETY: `p` came from the matching allocation (contract).
        unsafe {
            match self {
                Self::Ours(c) => return c.free(p).is_ok(),
                Self::OurPool(pool) => return pool.free(p).is_ok(),
                Self::Kmem(c) => bindings::kmem_cache_free(c.raw(), raw.cast()),
                Self::Kmalloc(_) => bindings::kfree(raw.cast()),
                Self::KPool(pool) => bindings::mempool_free(raw.cast(), pool.pool.as_ptr()),
                Self::Pages(order) => bindings::__free_pages(raw.cast(), *order),
                Self::FreePages(order) => bindings::free_pages(raw as usize, *order),
                Self::Vmalloc(_) => bindings::kvfree(raw.cast()),
            }
        }
        true
    }
}

/// `n` alloc+free pairs; returns the failures.
#[inline(always)]
fn pairs(t: &Target, n: u64) -> u64 {
    let mut failed = 0u64;
    for _ in 0..n {
        match t.alloc() {
            // SAFETY: Just allocated by `t`, freed once, not used after.
            Some(p) => failed += u64::from(!unsafe { t.free(p) }),
            None => failed += 1,
        }
    }
    failed
}

/// Times `n` pairs after a warm-up: (ns, cycles).
fn time_pairs(t: &Target, n: u64) -> Result<(u64, u64)> {
    if pairs(t, (n / 10).max(1000)) != 0 {
        return Err(ENOMEM);
    }
    let t0 = Stamp::now();
    let failed = pairs(t, n);
    let t = t0.to(Stamp::now());
    if failed != 0 {
        pr_warn!("bench: {failed} of {n} pairs failed\n");
        return Err(ENOMEM);
    }
    Ok(t)
}

/// `rounds` bursts of `ptrs.len()` allocations then as many frees; bulk
/// with `bulk` (a [`Target::Kmem`]). Returns the failures.
fn bursts(t: &Target, bulk: bool, ptrs: &mut [*mut c_void], rounds: u64) -> u64 {
    let mut failed = 0u64;
    for _ in 0..rounds {
        if bulk {
            let Target::Kmem(c) = t else { return 1 };
            // SAFETY: `ptrs` has room for `len` pointers; the cache is live.
            if !unsafe {
                bindings::kmem_cache_alloc_bulk_noprof(
                    c.raw(),
                    bindings::GFP_KERNEL,
                    ptrs.len(),
                    ptrs.as_mut_ptr(),
                )
            } {
                // Nothing was allocated.
                failed += 1;
                continue;
            }
            // SAFETY: `ptrs` holds `len` objects of this cache, just allocated.
            unsafe { bindings::kmem_cache_free_bulk(c.raw(), ptrs.len(), ptrs.as_mut_ptr()) };
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
    failed
}

/// The owner id (index + 1) of our pool's private cache of `size`.
fn pool_cache_owner(size: u32) -> Result<u32> {
    let mut index = 0;
    while let Ok(info) = caches::info(index) {
        if info.objsize == u64::from(size) && info.flags == caches::POOL_PRIVATE {
            return Ok(index + 1);
        }
        index += 1;
    }
    Err(ENOENT)
}

/// Reserve allocations of our pool of `size` so far.
fn pool_reserve_allocs(size: u32) -> u64 {
    let mut index = 0;
    let mut total = 0;
    while let Ok(info) = pools::info(index) {
        if info.element_size == u64::from(size) && info.live != 0 {
            total += info.allocs_reserve;
        }
        index += 1;
    }
    total
}

/// Our pool's reserve path: the pool's private cache emptied (magazines
/// flushed, every free object taken) and its page allocations failed by
/// fault injection, then pairs; every allocation must be a reserve one.
fn time_our_reserve(t: &Target, size: u32, n: u64) -> Result<(u64, u64)> {
    let cache = caches::get(size as usize, caches::POOL_PRIVATE)?;
    let owner = pool_cache_owner(size)?;
    let mut held: KVVec<NonNull<u8>> = KVVec::with_capacity(MAX_DRAIN, GFP_KERNEL)?;
    let mut held = ScopeGuard::new_with_data(&mut held, |held| {
        PAGES.faults.set(0, false, 0);
        for p in held.drain_all() {
            if cache.free(p).is_err() {
                pr_err!("bench: the pool's cache refused its own object\n");
            }
        }
    });
    // Every free object into the depot, where any CPU can take it.
    cache.shrink();
    PAGES.faults.set(0, true, owner);
    while let Ok(p) = cache.alloc(false) {
        if held.len() >= MAX_DRAIN {
            // Just allocated from `cache`, not used: give it back.
            let _ = cache.free(p);
            return Err(E2BIG);
        }
        held.push(p, GFP_KERNEL)?;
    }
    let before = pool_reserve_allocs(size);
    let r = time_pairs(t, n)?;
    let reserve = pool_reserve_allocs(size).wrapping_sub(before);
    let warm = (n / 10).max(1000);
    if reserve < n + warm {
        pr_warn!(
            "bench: only {reserve} of {} allocations came from the reserve\n",
            n + warm
        );
        return Err(EAGAIN);
    }
    Ok(r)
}

/// State shared by the kthreads of one run.
struct Shared<'a> {
    target: &'a Target,
    iters: u64,
    ready: AtomicU32,
    start: AtomicBool,
    ns: [AtomicU64; uapi::BENCH_MAX_THREADS],
    cycles: [AtomicU64; uapi::BENCH_MAX_THREADS],
    failed: AtomicU32,
}

/// What one kthread gets.
struct ThreadArg<'a> {
    shared: &'a Shared<'a>,
    index: usize,
}

/// A benchmark kthread: warm up, report ready, wait for the start flag,
/// time the pairs, store the result.
///
/// # Safety
///
/// `data` points to a [`ThreadArg`] that outlives the thread (the creator
/// joins it with `kthread_stop()` before dropping it).
unsafe extern "C" fn bench_thread(data: *mut c_void) -> c_int {
    // SAFETY: Per the function's contract.
    let arg = unsafe { &*data.cast::<ThreadArg<'_>>() };
    let sh = arg.shared;
    let warm_ok = pairs(sh.target, (sh.iters / 10).max(1000)) == 0;
    sh.ready.fetch_add(1, Ordering::AcqRel);
    while !sh.start.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    let t0 = Stamp::now();
    let failed = pairs(sh.target, sh.iters);
    let (ns, cyc) = t0.to(Stamp::now());
    if failed != 0 || !warm_ok {
        sh.failed.fetch_add(1, Ordering::Relaxed);
    }
    if let (Some(n), Some(c)) = (sh.ns.get(arg.index), sh.cycles.get(arg.index)) {
        n.store(ns, Ordering::Relaxed);
        c.store(cyc, Ordering::Relaxed);
    }
    0
}

/// Runs the pairs in `threads` kthreads bound to CPUs `0..threads`,
/// released together; per-thread (ns, cycles) into `run`.
fn time_threads(t: &Target, iters: u64, threads: usize, run: &mut uapi::BenchRun) -> Result {
    let shared = Shared {
        target: t,
        iters,
        ready: AtomicU32::new(0),
        start: AtomicBool::new(false),
        ns: Default::default(),
        cycles: Default::default(),
        failed: AtomicU32::new(0),
    };
    let args: [ThreadArg<'_>; uapi::BENCH_MAX_THREADS] = core::array::from_fn(|index| ThreadArg {
        shared: &shared,
        index,
    });
    let mut tasks: [*mut bindings::task_struct; uapi::BENCH_MAX_THREADS] =
        [core::ptr::null_mut(); uapi::BENCH_MAX_THREADS];
    let mut created = 0;
    let mut err = None;
    for (cpu, (arg, task)) in args.iter().zip(tasks.iter_mut()).take(threads).enumerate() {
        // SAFETY: `arg` outlives the thread: every created thread is joined
        // below with `kthread_stop_put()` before `args` goes away. The
        // format takes one unsigned int.
        let k = unsafe {
            bindings::kthread_create_on_node(
                Some(bench_thread),
                core::ptr::from_ref::<ThreadArg<'_>>(arg).cast_mut().cast(),
                bindings::NUMA_NO_NODE,
                c"ldd_bench/%u".as_char_ptr(),
                cpu as u32,
            )
        };
        if k.is_null() || is_err_ptr(k) {
            err = Some(ENOMEM);
            break;
        }
        // SAFETY: `k` is a new kthread that has not run yet: binding it is
        // allowed; the extra reference is dropped by `kthread_stop_put()`.
        unsafe {
            bindings::kthread_bind(k, cpu as u32);
            bindings::get_task_struct(k);
        }
        *task = k;
        created += 1;
    }
    if err.is_none() {
        for &k in tasks.iter().take(created) {
            // SAFETY: A live kthread we hold a reference to.
            unsafe { bindings::wake_up_process(k) };
        }
        // Wait (sleeping, so the CPUs are the threads') until all warmed up.
        let mut waited = 0;
        while shared.ready.load(Ordering::Acquire) < created as u32 && waited < 60_000 {
            // SAFETY: FFI call from process context.
            unsafe { bindings::msleep(1) };
            waited += 1;
        }
    }
    shared.start.store(true, Ordering::Release);
    for &k in tasks.iter().take(created) {
        // SAFETY: A kthread created above with an extra reference; a thread
        // that never ran exits without calling `bench_thread`. This waits
        // until the thread has exited, so `args` may go away after.
        unsafe { bindings::kthread_stop_put(k) };
    }
    if let Some(e) = err {
        return Err(e);
    }
    if shared.failed.load(Ordering::Relaxed) != 0 {
        return Err(ENOMEM);
    }
    for i in 0..threads {
        if let (Some(n), Some(c), Some(a), Some(b)) = (
            run.ns.get_mut(i),
            run.cycles.get_mut(i),
            shared.ns.get(i),
            shared.cycles.get(i),
        ) {
            *n = a.load(Ordering::Relaxed);
            *c = b.load(Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Online CPUs.
fn online_cpus() -> u32 {
    // SAFETY: The online mask is a live global; the helper only reads it.
    unsafe { bindings::cpumask_weight(core::ptr::addr_of_mut!(bindings::__cpu_online_mask)) }
}

/// Times `n` iterations of primitive `prim` ([`bp`]).
fn time_prim(prim: u32, n: u64) -> Result<(u64, u64)> {
    let lock: Pin<KBox<SpinLockIrq<u64>>> =
        KBox::pin_init(new_spinlock_irq!(0u64, "bench::prim"), GFP_KERNEL)?;
    let src = KBox::new([0x5au8; 16], GFP_KERNEL)?;
    let addr = src.as_ptr() as usize;
    let mut buf = [0u8; 16];
    let t0 = Stamp::now();
    match prim {
        bp::IRQ_GUARD => {
            for _ in 0..n {
                black_box(local_interrupt_disable());
            }
        }
        bp::SPINLOCK_IRQ => {
            for _ in 0..n {
                *lock.lock() += 1;
            }
        }
        bp::READ_NOFAULT => {
            for _ in 0..n {
                black_box(PAGES.read_nofault(black_box(addr), &mut buf));
            }
        }
        bp::SLOT_TRYLOCK => {
            let flag = AtomicFlag::new(false);
            for _ in 0..n {
                if black_box(&flag).cmpxchg(false, true, Acquire).is_ok() {
                    flag.store(false, Release);
                }
            }
        }
        bp::BITMAP_RMW => {
            let word = AtomicU64::new(0);
            for i in 0..n {
                let bit = 1u64 << (i & 63);
                if i & 1 == 0 {
                    black_box(black_box(&word).fetch_or(bit, Ordering::AcqRel));
                } else {
                    black_box(black_box(&word).fetch_and(!bit, Ordering::AcqRel));
                }
            }
        }
        _ => {
            let _irq = local_interrupt_disable();
            for _ in 0..n {
                black_box(CpuId::current());
            }
        }
    }
    let t = t0.to(Stamp::now());
    black_box(&buf);
    Ok(t)
}

/// Checks a request: EINVAL for what makes no sense, E2BIG past the caps.
fn validate(run: &uapi::BenchRun) -> Result {
    if run.op == bo::PRIM {
        if run.alloc >= bp::COUNT || run.threads != 0 || run.iters < uapi::BENCH_MIN_ITERS {
            return Err(EINVAL);
        }
        return if run.iters > uapi::BENCH_MAX_ITERS {
            Err(E2BIG)
        } else {
            Ok(())
        };
    }
    let pages = matches!(
        run.alloc,
        ba::ALLOC_PAGES | ba::GET_FREE_PAGES | ba::VMALLOC
    );
    let fits = match run.op {
        bo::PAIR => run.alloc < ba::COUNT && run.alloc != ba::KMEM_BULK,
        bo::BURST => matches!(
            run.alloc,
            ba::OUR_CACHE | ba::KMEM_CACHE | ba::KMALLOC | ba::KMEM_BULK | ba::OUR_POOL
        ),
        bo::RESERVE => matches!(run.alloc, ba::OUR_POOL | ba::KERNEL_POOL),
        _ => false,
    };
    if !fits || run.iters < uapi::BENCH_MIN_ITERS {
        return Err(EINVAL);
    }
    if run.iters > uapi::BENCH_MAX_ITERS {
        return Err(E2BIG);
    }
    if pages {
        if run.size > uapi::BENCH_MAX_ORDER {
            return Err(E2BIG);
        }
    } else if run.size < uapi::BENCH_MIN_SIZE {
        return Err(EINVAL);
    } else if run.size > uapi::BENCH_MAX_SIZE {
        return Err(E2BIG);
    }
    if run.op == bo::BURST {
        if run.burst == 0 {
            return Err(EINVAL);
        }
        if run.burst > uapi::BENCH_MAX_BURST {
            return Err(E2BIG);
        }
    }
    if run.threads != 0 {
        if run.op != bo::PAIR {
            return Err(EINVAL);
        }
        if run.threads as usize > uapi::BENCH_MAX_THREADS || run.threads > online_cpus() {
            return Err(E2BIG);
        }
    }
    Ok(())
}

/// Runs one validated request.
fn execute(run: &mut uapi::BenchRun) -> Result {
    validate(run)?;
    let iters = u64::from(run.iters);
    run.ns = [0; uapi::BENCH_MAX_THREADS];
    run.cycles = [0; uapi::BENCH_MAX_THREADS];
    if run.op == bo::PRIM {
        let (ns, cycles) = time_prim(run.alloc, iters)?;
        run.ops = iters;
        run.ns[0] = ns;
        run.cycles[0] = cycles;
        (run.base_ns, run.base_cycles) = time_empty(iters);
        return Ok(());
    }
    let target = Target::new(run.alloc, run.size, run.op)?;
    let (ns, cycles) = match run.op {
        bo::BURST => {
            let n = run.burst as usize;
            let rounds = (iters / n as u64).max(1);
            let mut ptrs: KVVec<*mut c_void> = KVVec::with_capacity(n, GFP_KERNEL)?;
            ptrs.resize(n, core::ptr::null_mut(), GFP_KERNEL)?;
            let bulk = run.alloc == ba::KMEM_BULK;
            if bursts(&target, bulk, &mut ptrs, 1) != 0 {
                return Err(ENOMEM);
            }
            let t0 = Stamp::now();
            let failed = bursts(&target, bulk, &mut ptrs, rounds);
            let t = t0.to(Stamp::now());
            if failed != 0 {
                pr_warn!("bench: {failed} burst allocations failed\n");
                return Err(ENOMEM);
            }
            run.ops = rounds * n as u64;
            t
        }
        bo::RESERVE if run.alloc == ba::OUR_POOL => {
            run.ops = iters;
            time_our_reserve(&target, run.size, iters)?
        }
        _ if run.threads != 0 => {
            run.ops = iters;
            time_threads(&target, iters, run.threads as usize, run)?;
            (run.ns[0], run.cycles[0])
        }
        _ => {
            run.ops = iters;
            time_pairs(&target, iters)?
        }
    };
    run.ns[0] = ns;
    run.cycles[0] = cycles;
    let (base_ns, base_cycles) = time_empty(run.ops);
    run.base_ns = base_ns;
    run.base_cycles = base_cycles;
    Ok(())
}
