// SPDX-License-Identifier: GPL-2.0

//! `LDD_IOC_BAD_FREE` (root only): one deliberately wrong free at a time on
//! a private test cache, to show that our caches refuse and count what SLUB
//! would meet with a report or silent corruption: a kmalloc object, another
//! cache's object, a pointer into an object, the slab header, a double
//! free; and with `slub_debug=PZ`-style debugging, a write after free
//! caught by the poison and an overflow caught by the red zone.

use core::ptr::NonNull;
use kernel::{
    prelude::*,
    sync::global_lock, //
};

use super::caches::{
    self,
    OurCache, //
};
use super::kernel_alloc;
use crate::allocator::FreeError;
use crate::ratelimit::pr_err_ratelimited;
use crate::uapi::{
    self,
    bad_free as bf,
    cache_flags, //
};

/// Flag of the private caches of `LDD_IOC_BAD_FREE`.
const PRIVATE: u32 = cache_flags::TEST_PRIVATE;

global_lock! {
    // SAFETY: Initialized in `init()` before any use.
    unsafe(uninit) static ONE_AT_A_TIME: Mutex<()> = ();
}

/// Sets up the lock of the scenarios.
pub(crate) fn init() {
    // SAFETY: Called once at module init before any other use.
    unsafe { ONE_AT_A_TIME.init() };
}

/// The ABI's name of a cache's answer to a free.
fn refusal(r: core::result::Result<(), FreeError>) -> i32 {
    match r {
        Ok(()) => uapi::refusal::ACCEPTED,
        Err(FreeError::Foreign) => uapi::refusal::FOREIGN,
        Err(FreeError::Misaligned) => uapi::refusal::MISALIGNED,
        Err(FreeError::DoubleFree) => uapi::refusal::DOUBLE,
        Err(FreeError::RedZone) => uapi::refusal::RED_ZONE,
    }
}

/// Frees an object that must be accepted, logging if it is not (a bug).
fn free_good(cache: &OurCache, p: NonNull<u8>) {
    if cache.free(p).is_err() {
        pr_err_ratelimited!("bad_free: a good free was refused\n");
    }
}

/// Runs scenario `scenario` ([`bf`]); returns the [`uapi::refusal`] the
/// cache gave.
///
/// The cache is private to this ioctl and the scenarios run one at a time,
/// so between the two frees of DOUBLE no one can allocate the object again
/// (which would make the second free legitimate), and no shrink runs while a
/// scenario writes into a freed object.
pub(crate) fn run(scenario: u32) -> Result<i32> {
    if scenario >= bf::COUNT {
        return Err(EINVAL);
    }
    let _one = ONE_AT_A_TIME.lock();
    caches::without_shrink(|| match scenario {
        bf::WRITE_AFTER_FREE => write_after_free(),
        bf::OVERFLOW => overflow(),
        bf::FOREIGN_KMALLOC => foreign_kmalloc(),
        bf::FOREIGN_CACHE => foreign_cache(),
        _ => wrong_pointer(scenario),
    })
}

/// A kmalloc object freed into our cache.
fn foreign_kmalloc() -> Result<i32> {
    let cache = caches::get(64, PRIVATE)?;
    let p = kernel_alloc::kmalloc(64, kernel::bindings::GFP_KERNEL).ok_or(ENOMEM)?;
    let r = refusal(cache.free(p));
    // SAFETY: `p` came from kmalloc and our cache refused it: still ours.
    unsafe { kernel_alloc::kfree(p) };
    Ok(r)
}

/// Another cache's object freed into ours.
fn foreign_cache() -> Result<i32> {
    let cache = caches::get(64, PRIVATE)?;
    let other = caches::get(128, PRIVATE)?;
    let p = other.alloc(true)?;
    let r = refusal(cache.free(p));
    free_good(&other, p);
    Ok(r)
}

/// MISALIGNED, SLAB_HEADER and DOUBLE on one object of the test cache.
fn wrong_pointer(scenario: u32) -> Result<i32> {
    let cache = caches::get(64, PRIVATE)?;
    let p = cache.alloc(true)?;
    let addr = p.as_ptr() as usize;
    let wrong = match scenario {
        bf::MISALIGNED => addr + 8,
        bf::SLAB_HEADER => addr & !(cache.slab_bytes() - 1),
        _ => {
            // DOUBLE: the first free is right, the second is the bug.
            if cache.free(p).is_err() {
                return Err(EINVAL);
            }
            return Ok(refusal(cache.free(p)));
        }
    };
    let r = refusal(cache.free(NonNull::new(wrong as *mut u8).ok_or(EINVAL)?));
    free_good(&cache, p);
    Ok(r)
}

/// Size of the objects of the debug scenarios.
const DEBUG_SIZE: usize = 96;

/// The private poisoning, red-zoned cache of the debug scenarios.
fn debug_cache() -> Result<caches::CacheRef> {
    caches::get(
        DEBUG_SIZE,
        PRIVATE | cache_flags::POISON | cache_flags::RED_ZONE,
    )
}

/// OVERFLOW: one byte written past an object, caught at free by the red
/// zone. The write lands in our own slab page, never outside.
fn overflow() -> Result<i32> {
    let cache = debug_cache()?;
    let p = cache.alloc(true)?;
    // SAFETY: `p` is a live object of a red-zoned cache: the byte after it is
    // the right red zone, inside the same slab.
    unsafe { p.as_ptr().add(DEBUG_SIZE).write_volatile(0x41) };
    // The free is refused and the object stays allocated, as SLUB's "Object
    // ... not freed". Repair the red zone (SLUB_RED_ACTIVE) and free it for
    // real, so the test cache holds nothing afterwards.
    let r = refusal(cache.free(p));
    // SAFETY: As above: the red-zone byte of a still-allocated object.
    unsafe { p.as_ptr().add(DEBUG_SIZE).write_volatile(0xcc) };
    free_good(&cache, p);
    Ok(r)
}

/// WRITE_AFTER_FREE: a byte written into a freed object, caught by its
/// poison when the object is handed out again.
fn write_after_free() -> Result<i32> {
    let cache = debug_cache()?;
    let p = cache.alloc(true)?;
    let before = cache.stats().poison_errors;
    if cache.free(p).is_err() {
        return Err(EINVAL);
    }
    // SAFETY: `p` was just freed into a poisoning cache that nobody else uses
    // and that no shrink may empty meanwhile (`run`): its body is still in
    // one of our slab pages, filled with POISON_FREE; the middle byte is not
    // the free-list link (debug caches keep it past the object).
    unsafe { p.as_ptr().add(DEBUG_SIZE / 2).write_volatile(0x41) };
    // The debug path hands out the most recently freed object first and
    // checks its poison.
    let q = cache.alloc(true)?;
    let detected = cache.stats().poison_errors > before;
    free_good(&cache, q);
    Ok(if detected {
        uapi::refusal::POISON
    } else {
        uapi::refusal::ACCEPTED
    })
}
