// SPDX-License-Identifier: GPL-2.0

//! A shrinker for our caches: how a driver's own cache gives memory back
//! when the machine runs short (issue 16, claim 10).
//!
//! SLUB gives its own caches' empty slabs back through `kmem_cache_shrink()`
//! and its per-CPU sheaves are flushed by the slab shrinker machinery; a
//! driver that keeps a cache of its own must ask to be asked. It does so with
//! a shrinker (`include/linux/shrinker.h`, `mm/shrinker.c`): kswapd and
//! direct reclaim call `count_objects` to learn what could be freed, then
//! `scan_objects` to free it.
//!
//! # Reclaim never waits for a CPU
//!
//! Flushing a per-CPU magazine runs on that CPU (`smp_call_on_cpu()`: a
//! kworker, under `cpus_read_lock()`), and a slab may be freed only after
//! every magazine has forgotten it. Reclaim must not wait for either: the
//! kworker may itself be waiting for memory, and lockdep reports the
//! `fs_reclaim` → `cpu_hotplug_lock` dependency as a possible deadlock
//! (found on the debug kernel, kswapd → `count_objects` → stats → visit). So:
//! - `count_objects` counts the objects of empty slabs under each cache's
//!   depot lock, and those in magazines as each CPU last published them
//!   (an atomic beside the magazine, stored when its guard is dropped):
//!   [`caches::reclaimable`], no CPU visited;
//! - `scan_objects` queues one work item on `system_unbound_wq` that shrinks
//!   every cache ([`caches::shrink_all`], the same work as `LDD_IOC_SHRINK`:
//!   magazines flushed, empty slabs given back) and returns `SHRINK_STOP`.
//!   The pages come back a moment later, from process context, the way
//!   deferred reclaim works elsewhere (the zswap shrinker, the dcache's
//!   `shrink_dcache_sb` from a work item).
//!
//! `seeks = 0` says our objects cost no I/O to recreate, so reclaim scans
//! half of what we count at every pass whatever its priority; `batch = 1`
//! lets it scan even a cache of a few objects (the default batch of 128
//! would skip small ones until reclaim is desperate).
//!
//! Reclaim can be entered from any allocation that may sleep, including one
//! made under our registry lock; `count_objects` therefore only *tries* that
//! lock and reports 0 when it is busy, never waits.

use core::ptr::null_mut;
use core::sync::atomic::{
    AtomicPtr,
    AtomicU64,
    Ordering::Relaxed, //
};
use kernel::{
    bindings,
    ffi::c_ulong,
    prelude::*,
    sync::{
        Arc,
        ArcBorrow, //
    },
    workqueue::{
        self,
        impl_has_work,
        new_work,
        Work,
        WorkItem, //
    },
};

use super::caches;
use crate::uaccess::IoctlArg;
use crate::uapi;

/// The registered shrinker, or null (not registered, or gone).
static SHRINKER: AtomicPtr<bindings::shrinker> = AtomicPtr::new(null_mut());

/// The deferred shrink, from [`Arc::into_raw`] in [`register`]; null when
/// not registered. The reference it stands for is dropped in
/// [`unregister`], after the shrinker and the work are gone.
static SHRINK_WORK: AtomicPtr<ShrinkWork> = AtomicPtr::new(null_mut());

/// What reclaim asked and got (the ABI's [`uapi::ShrinkerInfo`]).
struct Counts {
    count_calls: AtomicU64,
    scan_calls: AtomicU64,
    busy: AtomicU64,
    last_count: AtomicU64,
    pages_freed: AtomicU64,
}

static COUNTS: Counts = Counts {
    count_calls: AtomicU64::new(0),
    scan_calls: AtomicU64::new(0),
    busy: AtomicU64::new(0),
    last_count: AtomicU64::new(0),
    pages_freed: AtomicU64::new(0),
};

/// The work item `scan_objects` queues: shrinks every cache in process
/// context, outside reclaim.
#[pin_data]
struct ShrinkWork {
    #[pin]
    work: Work<ShrinkWork>,
}

impl_has_work! {
    impl HasWork<Self> for ShrinkWork { self.work }
}

impl WorkItem for ShrinkWork {
    type Pointer = Arc<ShrinkWork>;

    fn run(_this: Arc<ShrinkWork>) {
        // ENOMEM (the registry's snapshot could not be allocated) frees
        // nothing now; the next scan queues us again.
        if let Ok(pages) = caches::shrink_all() {
            COUNTS.pages_freed.fetch_add(pages as u64, Relaxed);
        }
    }
}

/// Our objects cost no I/O to recreate (see the module docs).
const SEEKS: i32 = 0;

/// `SHRINK_STOP` as the callbacks return it (`~0UL`).
const SHRINK_STOP: c_ulong = !0;

/// `count_objects`: the objects of our caches' empty slabs.
///
/// # Safety
///
/// Called by the shrinker core only, in process context.
unsafe extern "C" fn count_objects(
    _shrinker: *mut bindings::shrinker,
    _sc: *mut bindings::shrink_control,
) -> c_ulong {
    COUNTS.count_calls.fetch_add(1, Relaxed);
    match caches::reclaimable() {
        Some(n) => {
            COUNTS.last_count.store(n as u64, Relaxed);
            n as c_ulong
        }
        None => {
            COUNTS.busy.fetch_add(1, Relaxed);
            0
        }
    }
}

/// `scan_objects`: queues the shrink of every cache (see the module docs)
/// and says `SHRINK_STOP`: this pass can do no more.
///
/// # Safety
///
/// Called by the shrinker core only, in process context, between
/// [`register`] and the `shrinker_free()` in [`unregister`].
unsafe extern "C" fn scan_objects(
    _shrinker: *mut bindings::shrinker,
    _sc: *mut bindings::shrink_control,
) -> c_ulong {
    COUNTS.scan_calls.fetch_add(1, Relaxed);
    let p = SHRINK_WORK.load(Relaxed);
    if !p.is_null() {
        // SAFETY: `p` came from `Arc::into_raw()` in `register()`, whose
        // reference `unregister()` drops only after `shrinker_free()` has
        // waited for this callback.
        let work: Arc<ShrinkWork> = unsafe { ArcBorrow::from_raw(p) }.into();
        // Already queued: that run will do it; the clone goes back.
        let _ = workqueue::system_unbound().enqueue(work);
    }
    SHRINK_STOP
}

/// Registers the shrinker (module init, after the cache registry is set
/// up). A machine that cannot allocate it runs without one, and says so.
pub(crate) fn register() {
    let work = match Arc::pin_init(
        pin_init!(ShrinkWork {
            work <- new_work!("ldd_alloc::ShrinkWork"),
        }),
        GFP_KERNEL,
    ) {
        Ok(w) => w,
        Err(_) => {
            pr_info!("no shrinker: our caches give memory back only on SHRINK\n");
            return;
        }
    };
    // SAFETY: FFI call in process context; the format has no conversion, so
    // no variadic argument is read.
    let s = unsafe { bindings::shrinker_alloc(0, c"ldd_alloc-caches".as_char_ptr()) };
    if s.is_null() {
        pr_info!("no shrinker: our caches give memory back only on SHRINK\n");
        return;
    }
    SHRINK_WORK.store(Arc::into_raw(work).cast_mut(), Relaxed);
    // SAFETY: `s` is a fresh shrinker from `shrinker_alloc()`, not yet
    // registered, so nothing else reads it; `shrinker_register()` publishes
    // it with these fields set (and `SHRINK_WORK` stored before, so a
    // callback sees it), as mm/shrinker.c expects.
    unsafe {
        (*s).count_objects = Some(count_objects);
        (*s).scan_objects = Some(scan_objects);
        (*s).seeks = SEEKS;
        (*s).batch = 1;
        bindings::shrinker_register(s);
    }
    SHRINKER.store(s, Relaxed);
}

/// Unregisters and frees the shrinker (module exit, before the caches are
/// destroyed): `shrinker_free()` waits for running callbacks and none starts
/// after it; then the last queued shrink is waited for.
pub(crate) fn unregister() {
    let s = SHRINKER.swap(null_mut(), Relaxed);
    if !s.is_null() {
        // SAFETY: `s` came from `shrinker_alloc()` and was registered in
        // `register()`; the swap above makes this its only free.
        unsafe { bindings::shrinker_free(s) };
    }
    let p = SHRINK_WORK.swap(null_mut(), Relaxed);
    if !p.is_null() {
        // SAFETY: `p` came from `Arc::into_raw()` in `register()`, and this
        // swap makes this the only place that gives that reference back.
        let work = unsafe { Arc::from_raw(p) };
        // No scan can queue it again (the shrinker is gone): once this
        // returns, no run is pending or running, and ours is the last
        // reference.
        // SAFETY: `work.work` is an initialised `Work` inside a live `Arc`.
        unsafe { bindings::flush_work(Work::raw_get(&work.work)) };
        drop(work);
    }
}

/// The ABI view of the counts.
fn info() -> uapi::ShrinkerInfo {
    uapi::ShrinkerInfo {
        registered: u32::from(!SHRINKER.load(Relaxed).is_null()),
        seeks: SEEKS as u32,
        count_calls: COUNTS.count_calls.load(Relaxed),
        scan_calls: COUNTS.scan_calls.load(Relaxed),
        busy: COUNTS.busy.load(Relaxed),
        last_count: COUNTS.last_count.load(Relaxed),
        pages_freed: COUNTS.pages_freed.load(Relaxed),
    }
}

/// The memory-pressure ioctls (numbers 80..=87); ENOTTY for any other.
pub(crate) fn ioctl(cmd: u32, arg: IoctlArg) -> Result<isize> {
    match cmd {
        uapi::LDD_IOC_SHRINKER_INFO => arg.write(&info())?,
        _ => return Err(ENOTTY),
    }
    Ok(0)
}
