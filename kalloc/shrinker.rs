// SPDX-License-Identifier: GPL-2.0

//! A shrinker for our caches: how a driver's own cache gives memory back
//! when the machine runs short (issue 16, claim 10).
//!
//! SLUB gives its own caches' empty slabs back through `kmem_cache_shrink()`
//! and its per-CPU sheaves are flushed by the slab shrinker machinery; a
//! driver that keeps a cache of its own must ask to be asked. It does so with
//! a shrinker (`include/linux/shrinker.h`, `mm/shrinker.c`): kswapd and
//! direct reclaim call `count_objects` to learn what could be freed, then
//! `scan_objects` to free it. Ours counts the objects in per-CPU magazines
//! and in empty slabs, and scans by flushing every magazine and giving every
//! empty slab back ([`caches::reclaim`], the same work as `LDD_IOC_SHRINK`).
//!
//! `seeks = 0` says our objects cost no I/O to recreate, so reclaim scans
//! half of what we count at every pass whatever its priority; `batch = 1`
//! lets it scan even a cache of a few objects (the default batch of 128
//! would skip small ones until reclaim is desperate). A scan frees all it can
//! at once and says `SHRINK_STOP` when there is nothing left, so one pass
//! costs at most two calls.
//!
//! Reclaim can be entered from any allocation that may sleep, including one
//! made under our registry lock; the callbacks therefore only *try* that lock
//! and report 0 (count) or `SHRINK_STOP` (scan) when it is busy, never wait.
//! They run in process context (kswapd, a task in direct reclaim, or
//! `drop_caches`), where waiting for a busy magazine slot is allowed.

use core::ptr::null_mut;
use core::sync::atomic::{
    AtomicPtr,
    AtomicU64,
    Ordering::Relaxed, //
};
use kernel::{
    bindings,
    ffi::c_ulong,
    prelude::*, //
};

use super::caches;
use crate::uaccess::IoctlArg;
use crate::uapi;

/// The registered shrinker, or null (not registered, or gone).
static SHRINKER: AtomicPtr<bindings::shrinker> = AtomicPtr::new(null_mut());

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

/// Our objects cost no I/O to recreate (see the module docs).
const SEEKS: i32 = 0;

/// `SHRINK_STOP` as the callbacks return it (`~0UL`).
const SHRINK_STOP: c_ulong = !0;

/// `count_objects`: what our caches could give back now.
///
/// # Safety
///
/// Called by the shrinker core only, in process context.
unsafe extern "C" fn count_objects(
    _shrinker: *mut bindings::shrinker,
    _sc: *mut bindings::shrink_control,
) -> c_ulong {
    COUNTS.count_calls.fetch_add(1, Relaxed);
    match caches::reclaim(false) {
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

/// `scan_objects`: flush the magazines and free the empty slabs of every
/// cache; returns the pages freed (the shrinker core only adds the returns
/// up), or `SHRINK_STOP` when nothing is left or the registry is busy.
///
/// # Safety
///
/// Called by the shrinker core only, in process context.
unsafe extern "C" fn scan_objects(
    _shrinker: *mut bindings::shrinker,
    _sc: *mut bindings::shrink_control,
) -> c_ulong {
    COUNTS.scan_calls.fetch_add(1, Relaxed);
    match caches::reclaim(true) {
        Some(0) => SHRINK_STOP,
        Some(pages) => {
            COUNTS.pages_freed.fetch_add(pages as u64, Relaxed);
            pages as c_ulong
        }
        None => {
            COUNTS.busy.fetch_add(1, Relaxed);
            SHRINK_STOP
        }
    }
}

/// Registers the shrinker (module init, after the cache registry is set
/// up). A machine that cannot allocate it runs without one, and says so.
pub(crate) fn register() {
    // SAFETY: FFI call in process context; the format has no conversion, so
    // no variadic argument is read.
    let s = unsafe { bindings::shrinker_alloc(0, c"ldd_alloc-caches".as_char_ptr()) };
    if s.is_null() {
        pr_info!("no shrinker: our caches give memory back only on SHRINK\n");
        return;
    }
    // SAFETY: `s` is a fresh shrinker from `shrinker_alloc()`, not yet
    // registered, so nothing else reads it; `shrinker_register()` publishes
    // it with these fields set, as mm/shrinker.c expects.
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
/// destroyed): `shrinker_free()` waits for running callbacks, and none
/// starts after it.
pub(crate) fn unregister() {
    let s = SHRINKER.swap(null_mut(), Relaxed);
    if !s.is_null() {
        // SAFETY: `s` came from `shrinker_alloc()` and was registered in
        // `register()`; the swap above makes this its only free.
        unsafe { bindings::shrinker_free(s) };
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
