// SPDX-License-Identifier: GPL-2.0

//! A lookaside cache: the orchestration of magazines, depot and pages.
//!
//! This is `kmem_cache_alloc()`/`kmem_cache_free()`/`kmem_cache_shrink()`/
//! `kmem_cache_destroy()` from LDD3 ch. 8, written once, generically over
//! a [`CacheEnv`] that supplies the environment-specific parts: the page
//! source, the depot lock, the per-CPU magazine slots and a quiescence
//! primitive. The kernel glue implements it with a `SpinLock<Depot>`,
//! per-CPU magazines with preemption/interrupts off, and
//! `synchronize_rcu()`; the userspace tests with `std::sync` types. The
//! algorithm below is therefore the one the tests exercise.
//!
//! Locking rules (what the kernel needs, what the env provides):
//!
//! * The page source is only called outside [`CacheEnv::with_depot`] and
//!   outside [`CacheEnv::with_magazine`]: `GFP_KERNEL` may sleep, and
//!   neither a spinlock nor a preemption-disabled section may.
//! * Nesting is magazine → depot, never the reverse.
//! * Free validation ([`slab::locate`]) is lock-free and runs inside
//!   `with_magazine`; `shrink`/`destroy` unlink empty slabs and wipe their
//!   magic under the depot lock (so new lookups refuse them), then call
//!   [`CacheEnv::quiesce`] (which must wait for every `with_magazine`
//!   section in flight; with preemption disabled there, `synchronize_rcu()`
//!   does) before freeing pages, so a validation never touches a header or
//!   bitmap whose pages were already freed. This is RCU's unpublish, wait,
//!   reclaim.

use core::ptr::NonNull;

use super::depot::{Depot, SlabList, Take};
use super::layout::CacheLayout;
use super::magazine::{Magazine, MAG_BATCH};
use super::page_source::{PageRequest, PageSource};
use super::slab::{self, SlabPtr};
use super::stats::CacheStats;

/// Why an allocation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// The page source could not supply a slab.
    NoMemory,
    /// The cache has been destroyed.
    Destroyed,
}

/// Why a free was refused. The object (if any) is left untouched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// Not an object of this cache (unreadable, another cache's slab, not a
    /// slab at all, or inside a slab header).
    Foreign,
    /// Inside one of this cache's slabs but not at an object start.
    Misaligned,
    /// The object is not allocated: double free (or never allocated).
    DoubleFree,
    /// Debug caches: the object's red zone was overwritten; not freed.
    RedZone,
}

/// Why a destroy was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestroyError {
    /// Objects are still allocated; the cache is left intact.
    Busy {
        /// Objects still allocated.
        live: usize,
    },
}

/// Everything the allocator needs from its surroundings.
///
/// One env is one cache. It must be usable through `&self` from many
/// threads at once; the methods below say what each must guarantee.
pub trait CacheEnv {
    /// The page allocator.
    type Src: PageSource + ?Sized;

    /// The cache's immutable layout.
    fn layout(&self) -> &CacheLayout;

    /// The page source.
    fn pages(&self) -> &Self::Src;

    /// Runs `f` with exclusive access to the current CPU's magazine.
    ///
    /// The kernel disables migration and preemption (and interrupts if
    /// frees can come from IRQ context) for the duration, which also makes
    /// it an RCU read-side section that [`CacheEnv::quiesce`] waits for.
    /// `f` may call [`CacheEnv::with_depot`] but never sleeps.
    fn with_magazine<R>(&self, f: impl FnOnce(&mut Magazine) -> R) -> R;

    /// Runs `f` with the depot lock held (the cache lock; a spinlock in the
    /// kernel). `f` never sleeps and never calls back into the env.
    fn with_depot<R>(&self, f: impl FnOnce(&mut Depot) -> R) -> R;

    /// Calls `f` on every CPU's magazine in turn, each with exclusive
    /// access (kernel: a per-CPU lock or running on that CPU). `f` may call
    /// [`CacheEnv::with_depot`]. Used by `shrink`, `destroy` and `stats`.
    fn for_each_magazine(&self, f: impl FnMut(&mut Magazine));

    /// Waits until every [`CacheEnv::with_magazine`] section that was in
    /// flight when it was called has ended (kernel: `synchronize_rcu()`).
    /// Called with no lock held; may sleep.
    fn quiesce(&self);
}

/// The most slabs one allocation adds before giving up. Each new slab is
/// normally used at once; only other CPUs draining every new slab first, or
/// a debug cache quarantining every object of it, can exhaust this, and
/// then failing beats looping forever with the page allocator.
const MAX_GROWS: u32 = 16;

/// Marks a magazine object as handed to a user.
fn mark_allocated(layout: &CacheLayout, p: NonNull<u8>) {
    // SAFETY: magazine objects are validated objects of this cache counted
    // in their slab's `inuse`, so the slab is alive; only the atomic bitmap
    // is used, which needs no lock.
    if let Some((s, index)) = unsafe { SlabPtr::containing(layout, p) } {
        // A set bit would mean the magazine held an allocated object; the
        // free path makes that impossible (it clears the bit first).
        let _ = s.test_and_set(layout, index);
    }
}

/// Allocates one object (`kmem_cache_alloc()`).
///
/// Pops the current CPU's magazine; if empty, refills it from the depot;
/// if the depot has no free object, gets a slab from the page source with
/// `req` (outside every lock), publishes it and retries. Debug caches go to
/// the depot directly (see `debug.rs`).
pub fn alloc<E: CacheEnv + ?Sized>(env: &E, req: PageRequest) -> Result<NonNull<u8>, AllocError> {
    let layout = env.layout();
    let mut grown = 0u32;
    loop {
        let step = if layout.debug() {
            env.with_depot(|d| d.debug_alloc(layout))
        } else {
            env.with_magazine(|mag| {
                let mut hit = true;
                if mag.is_empty() {
                    hit = false;
                    let dead = env.with_depot(|d| {
                        if d.is_dead() {
                            return true;
                        }
                        d.refill(layout, mag, MAG_BATCH);
                        false
                    });
                    if dead {
                        return Take::Dead;
                    }
                }
                match mag.pop() {
                    Some(p) => {
                        mark_allocated(layout, p);
                        mag.stats.allocs = mag.stats.allocs.wrapping_add(1);
                        if hit {
                            mag.stats.alloc_hits = mag.stats.alloc_hits.wrapping_add(1);
                        }
                        Take::Got(p)
                    }
                    None => Take::NeedSlab,
                }
            })
        };
        match step {
            Take::Got(p) => return Ok(p),
            Take::Dead => return Err(AllocError::Destroyed),
            Take::NeedSlab if grown >= MAX_GROWS => return Err(AllocError::NoMemory),
            Take::NeedSlab => {
                grow(env, req)?;
                grown += 1;
            }
        }
    }
}

/// Gets a new slab from the page source and publishes it in the depot.
fn grow<E: CacheEnv + ?Sized>(env: &E, req: PageRequest) -> Result<(), AllocError> {
    let layout = env.layout();
    let run = env
        .pages()
        .alloc_pages(layout.order(), req)
        .ok_or(AllocError::NoMemory)?;
    if (run.as_ptr() as usize) & (layout.slab_bytes() - 1) != 0 {
        // A page source that breaks natural alignment would break the
        // object-to-slab lookup; refuse to use the run.
        // SAFETY: `run` came from `alloc_pages(order)` and is unused.
        unsafe { env.pages().free_pages(run, layout.order()) };
        return Err(AllocError::NoMemory);
    }
    // SAFETY: a fresh, naturally aligned run of `slab_bytes`, ours alone.
    let s = unsafe { slab::init_slab(run, layout) };
    let added = env.with_depot(|d| {
        if d.is_dead() {
            return false;
        }
        d.add_slab(layout, s);
        true
    });
    if !added {
        // SAFETY: the slab was never published, so nobody else knows it.
        unsafe { env.pages().free_pages(run, layout.order()) };
        return Err(AllocError::Destroyed);
    }
    Ok(())
}

/// Frees one object (`kmem_cache_free()`), refusing invalid pointers.
///
/// Validation is lock-free: header identity through `read_nofault`, the
/// object boundary by arithmetic, double frees by atomically clearing the
/// object's allocated bit. A valid object goes to the current CPU's
/// magazine; a full magazine first drains a batch to the depot.
pub fn free<E: CacheEnv + ?Sized>(env: &E, ptr: NonNull<u8>) -> Result<(), FreeError> {
    let layout = env.layout();
    env.with_magazine(|mag| {
        // SAFETY: we are inside `with_magazine`, which `quiesce` waits for.
        let located = unsafe { slab::locate(env.pages(), layout, ptr) };
        let result = located.and_then(|(s, index)| {
            if layout.debug() {
                return env.with_depot(|d| d.debug_free(layout, s, index));
            }
            if s.test_and_clear(layout, index) != Some(true) {
                return Err(FreeError::DoubleFree);
            }
            let mut hit = true;
            if mag.is_full() {
                hit = false;
                env.with_depot(|d| d.drain(layout, mag, MAG_BATCH));
            }
            if let Err(p) = mag.push(ptr) {
                // Cannot happen after a drain; stay correct regardless.
                env.with_depot(|d| {
                    let mut one = Magazine::new();
                    if one.push(p).is_ok() {
                        d.drain(layout, &mut one, 1);
                    }
                });
            }
            if hit {
                mag.stats.free_hits = mag.stats.free_hits.wrapping_add(1);
            }
            mag.stats.frees = mag.stats.frees.wrapping_add(1);
            Ok(())
        });
        if let Err(e) = result {
            mag.stats.note_refusal(e);
        }
        result
    })
}

/// Empties every CPU's magazine into the depot.
pub fn flush<E: CacheEnv + ?Sized>(env: &E) {
    let layout = env.layout();
    env.for_each_magazine(|mag| {
        if !mag.is_empty() {
            env.with_depot(|d| d.drain(layout, mag, mag.len()));
        }
    });
}

/// Frees a detached list of slabs after quiescence; returns pages freed.
fn release<E: CacheEnv + ?Sized>(env: &E, mut list: SlabList) -> usize {
    if list.is_empty() {
        return 0;
    }
    env.quiesce();
    let layout = env.layout();
    let mut pages = 0usize;
    while let Some(s) = list.pop_front() {
        // SAFETY: the run came from `alloc_pages(layout.order())` in `grow`;
        // it was unlinked and unpublished under the depot lock with no
        // object in use, and every lookup that could still have found it
        // has quiesced, so nothing refers to it any more.
        unsafe { env.pages().free_pages(s.base(), layout.order()) };
        pages = pages.saturating_add(layout.pages_per_slab());
    }
    pages
}

/// Returns empty slabs to the page source (`kmem_cache_shrink()`):
/// flushes every magazine, unlinks empty slabs under the lock, quiesces,
/// frees. Returns the number of pages freed.
pub fn shrink<E: CacheEnv + ?Sized>(env: &E) -> usize {
    flush(env);
    let list = env.with_depot(|d| d.take_empty());
    release(env, list)
}

/// Destroys the cache (`kmem_cache_destroy()`): refuses while objects are
/// allocated, otherwise frees every slab. Afterwards allocations fail with
/// [`AllocError::Destroyed`]; the glue may then drop the env.
pub fn destroy<E: CacheEnv + ?Sized>(env: &E) -> Result<(), DestroyError> {
    flush(env);
    let list = env.with_depot(|d| match d.kill() {
        Ok(()) => Ok(d.take_all()),
        Err(live) => Err(DestroyError::Busy { live }),
    })?;
    release(env, list);
    Ok(())
}

/// A statistics snapshot: the depot's counts plus every magazine.
pub fn stats<E: CacheEnv + ?Sized>(env: &E) -> CacheStats {
    let layout = env.layout();
    let mut s = env.with_depot(|d| d.stats(layout));
    env.for_each_magazine(|mag| s.add_magazine(mag));
    s
}

/// Checks the depot's internal consistency (see [`Depot::check`]).
pub fn check<E: CacheEnv + ?Sized>(env: &E) -> Result<(), &'static str> {
    let layout = env.layout();
    env.with_depot(|d| d.check(layout))
}
