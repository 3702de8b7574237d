// SPDX-License-Identifier: GPL-2.0

//! A lookaside cache: the orchestration of magazines, depot and pages.
//!
//! This is `kmem_cache_alloc()`/`kmem_cache_free()`/`kmem_cache_shrink()`/
//! `kmem_cache_destroy()` from LDD3 ch. 8, written once, generically over
//! a [`CacheEnv`] that supplies the environment-specific parts: the page
//! source, the depot lock and the per-CPU magazine slots. The kernel glue
//! implements it with a `SpinLockIrq<Depot>` and per-CPU slots guarded by a
//! try-lock; the userspace tests with `std::sync` types. The algorithm below
//! is therefore the one the tests exercise.
//!
//! The fast path is one CPU's magazine, taken with a *try*-lock that never
//! waits (like the kernel's `local_trylock()`, which SLUB's sheaves use):
//! an interrupt arriving on top of the holder, or a flush in progress, finds
//! the slot busy and takes the *direct* path to the depot instead. So the
//! fast path disables neither interrupts nor preemption and spins on
//! nothing.
//!
//! Locking rules (what the kernel needs, what the env provides):
//!
//! * The page source is only called outside [`CacheEnv::with_depot`] and
//!   outside [`CacheEnv::try_with_magazine`]: `GFP_KERNEL` may sleep, and
//!   neither a spinlock nor a magazine section may.
//! * Nesting is magazine → depot, never the reverse.
//! * Free validation ([`slab::locate`]) reads the slab header lock-free,
//!   inside a magazine section or under the depot lock. `shrink`/`destroy`
//!   unlink empty slabs and wipe their magic under the depot lock (so new
//!   lookups refuse them), then visit every magazine
//!   ([`CacheEnv::for_each_magazine`] waits for each holder) and clear its
//!   slab hints, and only then free the pages: a validation never touches a
//!   header or bitmap whose pages were already freed. This is RCU's
//!   unpublish, wait, reclaim, with the magazine holders as readers.

use core::ptr::NonNull;

use super::depot::{
    Depot,
    SlabList,
    Take, //
};
pub use super::error::{
    AllocError,
    DestroyError,
    FreeError, //
};
use super::layout::CacheLayout;
use super::magazine::{
    Magazine,
    MAG_BATCH, //
};
use super::page_source::{
    PageRequest,
    PageSource, //
};
use super::slab;
use super::stats::CacheStats;

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

    /// Runs `f` with exclusive access to the current CPU's magazine, or
    /// returns `None` at once if that magazine is busy (held by the code
    /// this interrupt interrupted, by a task preempted while holding it, or
    /// by [`CacheEnv::for_each_magazine`]). Never waits. `f` may call
    /// [`CacheEnv::with_depot`] but never sleeps.
    fn try_with_magazine<R>(&self, f: impl FnOnce(&mut Magazine) -> R) -> Option<R>;

    /// Runs `f` with the depot lock held (the cache lock; a spinlock in the
    /// kernel). `f` never sleeps and never calls back into the env.
    fn with_depot<R>(&self, f: impl FnOnce(&mut Depot) -> R) -> R;

    /// Calls `f` on every CPU's magazine in turn, each with exclusive
    /// access, waiting for its current holder to let go (so it may sleep:
    /// process context only). `f` may call [`CacheEnv::with_depot`]. Used
    /// by `shrink`, `destroy` and `stats`; the wait is also what makes
    /// retiring a slab safe (see the module documentation).
    fn for_each_magazine(&self, f: impl FnMut(&mut Magazine));
}

/// The most slabs one allocation adds before giving up. Each new slab is
/// normally used at once; only other CPUs draining every new slab first, or
/// a debug cache quarantining every object of it, can exhaust this, and
/// then failing beats looping forever with the page allocator.
const MAX_GROWS: u32 = 16;

/// Allocates one object (`kmem_cache_alloc()`): [`alloc_hit`], else
/// [`alloc_slow`].
#[inline(always)]
pub fn alloc<E: CacheEnv + ?Sized>(env: &E, req: PageRequest) -> Result<NonNull<u8>, AllocError> {
    match alloc_hit(env) {
        Some(p) => Ok(p),
        None => alloc_slow(env, req),
    }
}

/// The hit path of [`alloc`], for inlining into the caller: pops the
/// current CPU's magazine and clears the object's free mark. `None` (and
/// nothing done) if the magazine is empty or busy. No test of
/// [`CacheLayout::marked`]: only a marked cache's objects ever enter a
/// magazine (every other path of an unmarked cache goes to the depot), so
/// an unmarked cache's magazine is always empty.
#[inline(always)]
pub fn alloc_hit<E: CacheEnv + ?Sized>(env: &E) -> Option<NonNull<u8>> {
    let layout = env.layout();
    env.try_with_magazine(
        #[inline(always)]
        |mag| {
            let p = mag.pop()?;
            // SAFETY: Magazine objects are free objects of live slabs of
            // this (marked) cache, counted in their slab's `inuse`.
            unsafe { slab::clear_free_mark(layout, p) };
            mag.stats.alloc_hits = mag.stats.alloc_hits.wrapping_add(1);
            Some(p)
        },
    )
    .flatten()
}

/// [`alloc`] past an empty or busy magazine: refills the magazine from the
/// depot; if the depot has no free object, gets a slab from the page
/// source with `req` (outside every lock), publishes it and retries. A busy
/// magazine sends the allocation to the depot directly, and so does an
/// unmarked (debug or constructor) cache, every time (see `debug.rs`).
#[inline(never)]
pub fn alloc_slow<E: CacheEnv + ?Sized>(
    env: &E,
    req: PageRequest,
) -> Result<NonNull<u8>, AllocError> {
    let layout = env.layout();
    let mut grown = 0u32;
    loop {
        let step = if !layout.marked() {
            env.with_depot(|d| d.debug_alloc(layout))
        } else {
            env.try_with_magazine(|mag| refill_and_pop(env, layout, mag))
                .unwrap_or_else(|| env.with_depot(|d| d.alloc_direct(layout)))
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

/// Holding this CPU's magazine: pops it, refilling it first if empty.
fn refill_and_pop<E: CacheEnv + ?Sized>(env: &E, layout: &CacheLayout, mag: &mut Magazine) -> Take {
    // A frozen magazine is empty (see `freeze`), so the depot, which is
    // frozen too, decides.
    if mag.is_empty() {
        let dead = env.with_depot(|d| {
            if d.refuses_allocs() {
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
            // SAFETY: As in `alloc`.
            unsafe { slab::clear_free_mark(layout, p) };
            mag.stats.allocs = mag.stats.allocs.wrapping_add(1);
            Take::Got(p)
        }
        None => Take::NeedSlab,
    }
}

/// Gets a new slab from the page source and publishes it in the depot.
fn grow<E: CacheEnv + ?Sized>(env: &E, req: PageRequest) -> Result<(), AllocError> {
    let layout = env.layout();
    let run = env
        .pages()
        .alloc_pages(layout.order(), req)
        .ok_or(AllocError::NoMemory)?;
    if (run.as_ptr() as usize) & layout.slab_mask() != 0 {
        // A page source that breaks natural alignment would break the
        // object-to-slab lookup; refuse to use the run.
        // SAFETY: `run` came from `alloc_pages(order)` and is unused.
        unsafe { env.pages().free_pages(run, layout.order()) };
        return Err(AllocError::NoMemory);
    }
    // SAFETY: A fresh, naturally aligned run of `slab_bytes`, ours alone.
    let s = unsafe { slab::init_slab(run, layout) };
    let added = env.with_depot(|d| {
        if d.is_dead() {
            return false;
        }
        d.add_slab(layout, s);
        true
    });
    if !added {
        // SAFETY: The slab was never published, so nobody else knows it.
        unsafe { env.pages().free_pages(run, layout.order()) };
        return Err(AllocError::Destroyed);
    }
    Ok(())
}

/// Frees one object (`kmem_cache_free()`), refusing invalid pointers.
///
/// Validation is lock-free: header identity through `read_nofault` (or a
/// magazine's hint that the slab is live), the object boundary by
/// arithmetic, double frees by swapping the object's free mark in (the old
/// value says whether it was already free). A valid object goes to the
/// current CPU's magazine; a full magazine first drains a batch to the
/// depot. A busy magazine, or an unmarked cache, sends the free to the depot
/// directly. [`free_hit`] is the part worth inlining; [`free_slow`] the
/// rest.
#[inline(always)]
pub fn free<E: CacheEnv + ?Sized>(env: &E, ptr: NonNull<u8>) -> Result<(), FreeError> {
    match free_hit(env, ptr) {
        Some(r) => r,
        None => free_slow(env, ptr),
    }
}

/// The hit path of [`free`]: this CPU's magazine free and not full, the
/// object's slab hinted (which only happens for a marked cache: hints are
/// only noted by [`free_slow`]'s magazine path). `None` (and nothing done)
/// otherwise.
#[inline(always)]
pub fn free_hit<E: CacheEnv + ?Sized>(env: &E, ptr: NonNull<u8>) -> Option<Result<(), FreeError>> {
    let layout = env.layout();
    env.try_with_magazine(
        #[inline(always)]
        |mag| free_to_magazine(layout, mag, ptr),
    )
    .flatten()
}

/// [`free`] past [`free_hit`].
#[inline(never)]
pub fn free_slow<E: CacheEnv + ?Sized>(env: &E, ptr: NonNull<u8>) -> Result<(), FreeError> {
    let layout = env.layout();
    if layout.marked() {
        if let Some(r) = env.try_with_magazine(|mag| free_to_magazine_slow(env, layout, mag, ptr)) {
            return r;
        }
    }
    free_direct(env, ptr)
}

/// [`free`] without a magazine, under the depot lock.
#[inline(never)]
fn free_direct<E: CacheEnv + ?Sized>(env: &E, ptr: NonNull<u8>) -> Result<(), FreeError> {
    let layout = env.layout();
    env.with_depot(|d| {
        // SAFETY: We hold the depot lock, under which slabs are retired.
        let located = unsafe { slab::locate(env.pages(), layout, ptr) };
        let result = located.and_then(|(s, index)| {
            if layout.marked() {
                d.free_direct(layout, s, index)
            } else {
                d.debug_free(layout, s, index)
            }
        });
        if let Err(e) = result {
            d.note_direct_refusal(e);
        }
        result
    })
}

/// The hit path of [`free`], holding this CPU's magazine; `None` for an
/// unhinted slab or a full magazine (nothing done).
#[inline(always)]
fn free_to_magazine(
    layout: &CacheLayout,
    mag: &mut Magazine,
    ptr: NonNull<u8>,
) -> Option<Result<(), FreeError>> {
    if !mag.knows_slab(slab::slab_base(layout, ptr), layout.slab_shift()) || mag.is_full() {
        return None;
    }
    // The slab is hinted, hence live until the magazine's hints are
    // cleared, which needs the magazine we hold.
    if let Err(e) = slab::check_object(layout, ptr) {
        mag.stats.note_refusal(e);
        return Some(Err(e));
    }
    // SAFETY: `ptr` is an object of a live slab of this marked cache.
    if unsafe { slab::swap_free_mark(layout, ptr) } {
        mag.stats.note_refusal(FreeError::DoubleFree);
        return Some(Err(FreeError::DoubleFree));
    }
    // SAFETY: Not full: checked above.
    unsafe { mag.push_unchecked(ptr) };
    mag.stats.free_hits = mag.stats.free_hits.wrapping_add(1);
    Some(Ok(()))
}

/// [`free_to_magazine`] for an unhinted slab or a full magazine.
#[inline(never)]
fn free_to_magazine_slow<E: CacheEnv + ?Sized>(
    env: &E,
    layout: &CacheLayout,
    mag: &mut Magazine,
    ptr: NonNull<u8>,
) -> Result<(), FreeError> {
    if mag.is_frozen() {
        // A frozen magazine takes nothing (see `freeze`).
        return free_direct(env, ptr);
    }
    let base = slab::slab_base(layout, ptr);
    let located = if mag.knows_slab(base, layout.slab_shift()) {
        // SAFETY: As in `free_to_magazine`.
        unsafe { slab::locate_in_live(layout, ptr) }
    } else {
        // SAFETY: We hold a magazine, which slab retirement waits for.
        let r = unsafe { slab::locate(env.pages(), layout, ptr) };
        if r.is_ok() {
            mag.note_slab(base, layout.slab_shift());
        }
        r
    };
    let result = located.and_then(|_| {
        // SAFETY: `ptr` is an object of a live slab of this marked cache.
        if unsafe { slab::swap_free_mark(layout, ptr) } {
            return Err(FreeError::DoubleFree);
        }
        let hit = !mag.is_full();
        if !hit {
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
        } else {
            mag.stats.frees = mag.stats.frees.wrapping_add(1);
        }
        Ok(())
    });
    if let Err(e) = result {
        mag.stats.note_refusal(e);
    }
    result
}

/// Allocates `out.len()` objects into `out` (`kmem_cache_alloc_bulk()`):
/// all of them, or none (everything taken is freed again and the error
/// returned). One magazine section per [`BULK_CHUNK`] objects serves the
/// magazine's objects, the rest come straight from the depot (whole
/// stashed batches, then slab runs) under one lock hold (not through the
/// magazine); a new slab is
/// added when the depot runs dry. Unmarked caches allocate one by one.
pub fn alloc_bulk<E: CacheEnv + ?Sized>(
    env: &E,
    req: PageRequest,
    out: &mut [*mut u8],
) -> Result<(), AllocError> {
    let layout = env.layout();
    let n = out.len();
    let mut got = 0usize;
    let mut grown = 0u32;
    // Enough slabs for every object, plus `alloc`'s margin.
    let max_grows = (n / layout.objects() as usize).saturating_add(MAX_GROWS as usize);
    while got < n {
        let step = if !layout.marked() {
            match alloc(env, req) {
                Ok(p) => {
                    if let Some(slot) = out.get_mut(got) {
                        *slot = p.as_ptr();
                    }
                    got += 1;
                    continue;
                }
                Err(e) => Err(e),
            }
        } else {
            // One section (preemption off) or lock hold (interrupts off)
            // takes at most `BULK_CHUNK` objects: a huge array must not
            // keep the CPU from scheduling or from its interrupts.
            let end = got.saturating_add(BULK_CHUNK).min(n);
            let rest = out.get_mut(got..end).unwrap_or(&mut []);
            let want = rest.len();
            let took = env
                .try_with_magazine(|mag| bulk_from_magazine(env, layout, mag, rest))
                .unwrap_or_else(|| {
                    env.with_depot(|d| {
                        if d.refuses_allocs() {
                            None
                        } else {
                            Some(d.take_into(layout, rest))
                        }
                    })
                });
            match took {
                None => Err(AllocError::Destroyed),
                Some(k) => {
                    got += k;
                    if k == want {
                        // A whole chunk: the depot may well have more.
                        continue;
                    }
                    Ok(())
                }
            }
        };
        let result = match step {
            Ok(()) if got >= n => break,
            Ok(()) if grown as usize >= max_grows => Err(AllocError::NoMemory),
            Ok(()) => {
                grown += 1;
                grow(env, req)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            free_bulk(env, out.get(..got).unwrap_or(&[]));
            return Err(e);
        }
    }
    Ok(())
}

/// Holding this CPU's magazine: fills `out` from it, then from the depot.
/// Returns how many were taken, `None` if the cache is dead.
fn bulk_from_magazine<E: CacheEnv + ?Sized>(
    env: &E,
    layout: &CacheLayout,
    mag: &mut Magazine,
    out: &mut [*mut u8],
) -> Option<usize> {
    let taken = mag.pop_newest(out.len());
    let k = taken.len();
    // Newest first, as `alloc` would hand them out.
    for (slot, &p) in out.iter_mut().zip(taken.iter().rev()) {
        // SAFETY: As in `alloc`.
        unsafe { slab::clear_free_mark(layout, p) };
        *slot = p.as_ptr();
    }
    mag.stats.alloc_hits = mag.stats.alloc_hits.wrapping_add(k as u64);
    let rest = out.get_mut(k..).unwrap_or(&mut []);
    if rest.is_empty() {
        return Some(k);
    }
    env.with_depot(|d| {
        if d.refuses_allocs() {
            return None;
        }
        Some(k + d.take_into(layout, rest))
    })
}

/// Frees every object of `ptrs` (`kmem_cache_free_bulk()`), each validated
/// as by [`free`] (refusals counted); null entries are skipped. One
/// magazine section per [`BULK_CHUNK`] objects; a full magazine drains a
/// batch to the depot as usual. Returns how many were refused.
pub fn free_bulk<E: CacheEnv + ?Sized>(env: &E, ptrs: &[*mut u8]) -> usize {
    ptrs.chunks(BULK_CHUNK)
        .map(|chunk| free_bulk_chunk(env, chunk))
        .sum()
}

/// Objects one bulk section handles at most (see [`alloc_bulk`]).
const BULK_CHUNK: usize = 256;

/// [`free_bulk`] of at most [`BULK_CHUNK`] objects: one magazine section.
fn free_bulk_chunk<E: CacheEnv + ?Sized>(env: &E, ptrs: &[*mut u8]) -> usize {
    let layout = env.layout();
    if layout.marked() {
        if let Some(refused) =
            env.try_with_magazine(|mag| free_bulk_to_magazine(env, layout, mag, ptrs))
        {
            return refused;
        }
    }
    let mut refused = 0usize;
    for &p in ptrs {
        if let Some(p) = NonNull::new(p) {
            refused += usize::from(free(env, p).is_err());
        }
    }
    refused
}

/// [`free_bulk_chunk`] holding this CPU's magazine: runs of objects of
/// slabs the magazine knows go straight in ([`Magazine::push_known_run`],
/// each object checked and marked as by [`free_to_magazine`]); a full
/// magazine drains a batch to the depot and the run goes on; an object of
/// a slab it does not know goes through [`free_to_magazine_slow`] (which
/// validates the header and notes the slab). Returns how many were
/// refused.
fn free_bulk_to_magazine<E: CacheEnv + ?Sized>(
    env: &E,
    layout: &CacheLayout,
    mag: &mut Magazine,
    ptrs: &[*mut u8],
) -> usize {
    let mut refused = 0usize;
    let mut rest = ptrs;
    while !rest.is_empty() {
        let (consumed, r) =
            mag.push_known_run(rest, layout.slab_mask(), layout.slab_shift(), |p| {
                slab::check_object(layout, p)?;
                // SAFETY: `p` starts an object (just checked) of a slab this
                // magazine knows, which stays live while we hold the magazine
                // (hints are cleared before a slab's pages go back); the
                // cache is marked (the caller checked).
                if unsafe { slab::swap_free_mark(layout, p) } {
                    return Err(FreeError::DoubleFree);
                }
                Ok(())
            });
        refused += r;
        rest = rest.get(consumed..).unwrap_or(&[]);
        // The run stopped before `rest[0]` (never null: the run consumes
        // nulls): a full magazine or an unknown slab. A full one drains a
        // batch here (to the stash while it has room), without the
        // per-object slow path, and the run goes on with `rest[0]`.
        if !rest.is_empty() && mag.is_full() {
            env.with_depot(|d| d.drain(layout, mag, MAG_BATCH));
            if !mag.is_full() {
                continue;
            }
        }
        if let Some((&p, tail)) = rest.split_first() {
            if let Some(p) = NonNull::new(p) {
                refused += usize::from(free_to_magazine_slow(env, layout, mag, p).is_err());
            }
            rest = tail;
        }
    }
    refused
}

/// Empties every CPU's magazine, and then the depot's stash, into the
/// slabs.
pub fn flush<E: CacheEnv + ?Sized>(env: &E) {
    let layout = env.layout();
    env.for_each_magazine(|mag| {
        if !mag.is_empty() {
            env.with_depot(|d| d.drain(layout, mag, mag.len()));
        }
    });
    env.with_depot(|d| d.flush_stash(layout));
}

/// Closes the cache to allocations (for a mempool's `destroy`, which must
/// count its elements exactly while its fast paths run on other CPUs):
/// the depot refuses allocations first, then every magazine is emptied
/// into the depot, forgets its slab hints and is marked frozen, waiting
/// for its holder like any visit. That wait is the grace period: when
/// this returns, no allocation is half-way on any CPU, none can succeed
/// until [`thaw`] (an empty magazine has nothing to pop, its slow path
/// asks the depot, which refuses), and [`stats`] counts exactly the
/// objects allocated and not freed. Frees keep working, all through the
/// depot (without hints, a free misses the magazine's fast path; its slow
/// path sees the mark). Process context only, like
/// [`CacheEnv::for_each_magazine`].
///
/// Nothing on the fast paths tests for it: they cost the same frozen or
/// not, and every check it needs is on a slow path. A magazine is frozen
/// only while its depot is (freeze the depot first, thaw it last).
pub fn freeze<E: CacheEnv + ?Sized>(env: &E) {
    let layout = env.layout();
    env.with_depot(|d| d.set_frozen(true));
    env.for_each_magazine(|mag| {
        if !mag.is_empty() {
            env.with_depot(|d| d.drain(layout, mag, mag.len()));
        }
        mag.forget_slabs();
        mag.set_frozen(true);
    });
}

/// Reopens a cache closed by [`freeze`]: the magazines, then the depot.
/// A cache that is not frozen is left alone (no visit of the magazines).
/// Not concurrently with [`freeze`].
pub fn thaw<E: CacheEnv + ?Sized>(env: &E) {
    if !env.with_depot(|d| d.is_frozen()) {
        // No magazine is frozen without its depot.
        return;
    }
    env.for_each_magazine(|mag| mag.set_frozen(false));
    env.with_depot(|d| d.set_frozen(false));
}

/// Frees a detached list of slabs once nobody can still be looking at them;
/// returns pages freed.
fn release<E: CacheEnv + ?Sized>(env: &E, mut list: SlabList) -> usize {
    if list.is_empty() {
        return 0;
    }
    // The slabs were unpublished (magic wiped) under the depot lock. Wait
    // for every magazine holder that may have read the old magic, and drop
    // the hints that would let a later free skip the check.
    env.for_each_magazine(|mag| mag.forget_slabs());
    let layout = env.layout();
    let mut pages = 0usize;
    while let Some(s) = list.pop_front() {
        // SAFETY: The run came from `alloc_pages(layout.order())` in `grow`;
        // it was unlinked and unpublished under the depot lock with no
        // object in use, and every magazine holder that could still have
        // found it has let go and forgotten it, so nothing refers to it.
        unsafe { env.pages().free_pages(s.base(), layout.order()) };
        pages = pages.saturating_add(layout.pages_per_slab());
    }
    pages
}

/// Returns empty slabs to the page source (`kmem_cache_shrink()`):
/// flushes every magazine, unlinks empty slabs under the lock, waits for
/// every magazine holder, frees. Returns the number of pages freed.
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
