// SPDX-License-Identifier: GPL-2.0

//! The per-CPU layer: magazines.
//!
//! Bonwick & Adams ("Magazines and Vmem", USENIX 2001) put a small stack of
//! free objects in front of the slab layer on every CPU, so the common
//! alloc/free touches only CPU-local memory and takes no shared lock. SLUB's
//! per-CPU "sheaves" (`struct slab_sheaf` in `mm/slub.c`) are the same idea
//! in today's kernel. A [`Magazine`] is one CPU's stack for one cache:
//!
//! * alloc pops it (a *hit*); an empty magazine is refilled with
//!   [`MAG_BATCH`] objects from the depot under the depot lock (a *refill*);
//! * free pushes to it (a *hit*); a full magazine first gives
//!   [`MAG_BATCH`] objects back to the depot (a *drain*): its newest as a
//!   whole batch to the stash (below), else its oldest to their slabs,
//!   keeping the cache-hot ones.
//!
//! A drain hands a batch (its newest [`MAG_BATCH`] objects: one copy, no
//! shift) to the depot's *stash* of whole batches when it has room, and a refill takes a stashed batch first: a copy of
//! [`MAG_BATCH`] pointers under the depot lock instead of one slab free
//! list operation per object. That is Bonwick's depot of full magazines,
//! and SLUB's barn of full sheaves (`struct node_barn` in `mm/slub.c`);
//! only when the stash is empty (refill) or full (drain) do objects move
//! between magazine and slabs one by one.
//!
//! Capacity and batch: [`MAG_CAPACITY`] = 64 pointers (512 bytes per CPU
//! per cache) and [`MAG_BATCH`] = 32, half of it. Moving half a magazine
//! leaves room on both sides, so an alloc/free pattern oscillating around a
//! refill or drain point does not take the depot lock on every call (the
//! hysteresis Bonwick gets from swapping a full and an empty magazine). 64
//! amortizes a lock round-trip over at least 32 operations, and lets a
//! burst of 32 allocations then 32 frees run on the magazine alone, while
//! keeping
//! the memory pinned in per-CPU caches small; SLUB sizes its sheaves in the
//! same tens-of-objects range.
//!
//! The magazine also holds this CPU's counters, so the fast path performs
//! no shared writes; `stats()` sums them.
//!
//! Last, it remembers the [`SLAB_HINTS`] slabs whose headers this CPU
//! validated most recently, so that a free into one of them skips the
//! `read_nofault` of the header (a free usually lands in a slab the CPU
//! just used). A hint is only ever added for a live slab, while holding the
//! magazine, and retiring a slab clears every magazine's hints before its
//! pages go back (see `cache.rs`), so a hinted slab is always alive. The
//! last slab is checked first, then a direct-mapped table; an empty hint is
//! `usize::MAX`, which no slab base (a multiple of the slab size) can equal.
//!
//! A magazine holds no per-object state: whether one of its objects is free
//! is written in the object itself (the free mark, `slab.rs`), so the hit
//! paths touch only the magazine, the object, and (for a free) the slab
//! header's identity when the slab is not hinted.

use core::ptr::NonNull;

use super::error::FreeError;

/// Objects one magazine holds.
pub const MAG_CAPACITY: usize = 64;

/// Objects moved per refill or drain.
pub const MAG_BATCH: usize = 32;

const _: () = assert!(MAG_BATCH > 0 && MAG_BATCH <= MAG_CAPACITY);

/// Validated slab bases one magazine remembers besides the last one: a
/// direct-mapped table indexed by the slab's number (`base >> slab_shift`),
/// so that a burst freeing objects of many slabs in turn does not thrash
/// it the way a small LRU list would. 32: a burst of 256 objects of
/// 256 bytes spans 18 order-0 slabs (15 objects each), which a table of 16
/// could not hold; each miss pays a `read_nofault` of the slab header.
/// The table is 256 bytes of the magazine's 840.
pub const SLAB_HINTS: usize = 32;

/// Per-CPU counters, written only by the owning CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// Successful allocations on this CPU that were not magazine hits
    /// (the hits are counted apart, so a hit pays one increment).
    pub allocs: u64,
    /// Successful frees on this CPU that were not magazine hits.
    pub frees: u64,
    /// Allocations served from the magazine without the depot.
    pub alloc_hits: u64,
    /// Frees absorbed by the magazine without the depot.
    pub free_hits: u64,
    /// Frees refused: not an object of this cache.
    pub refused_foreign: u64,
    /// Frees refused: inside a slab but not at an object start.
    pub refused_misaligned: u64,
    /// Frees refused: the object was not allocated.
    pub refused_double: u64,
}

impl CpuStats {
    /// All zero.
    pub const fn new() -> Self {
        Self {
            allocs: 0,
            frees: 0,
            alloc_hits: 0,
            free_hits: 0,
            refused_foreign: 0,
            refused_misaligned: 0,
            refused_double: 0,
        }
    }

    /// Counts a refused free (red-zone refusals are counted by the depot).
    #[cold]
    #[inline(never)]
    pub(crate) fn note_refusal(&mut self, e: FreeError) {
        let c = match e {
            FreeError::Foreign => &mut self.refused_foreign,
            FreeError::Misaligned => &mut self.refused_misaligned,
            FreeError::DoubleFree => &mut self.refused_double,
            FreeError::RedZone => return,
        };
        *c = c.wrapping_add(1);
    }
}

/// One CPU's stack of free objects of one cache, plus its counters.
///
/// The glue keeps one per possible CPU per cache and gives the core
/// exclusive access to the current CPU's through
/// [`super::CacheEnv::try_with_magazine`]. A magazine must only ever be used
/// with the cache it was created for.
///
/// # Invariants
///
/// `len <= MAG_CAPACITY`, and `objs[..len]` are the cached objects (the
/// slots above `len` are stale or dangling).
#[derive(Debug)]
pub struct Magazine {
    len: usize,
    objs: [NonNull<u8>; MAG_CAPACITY],
    /// The base of the live slab validated last on this CPU
    /// (`usize::MAX`: none).
    last: usize,
    /// Bases of live slabs validated on this CPU (`usize::MAX`: none),
    /// slab number `n` at `n % SLAB_HINTS`.
    hints: [usize; SLAB_HINTS],
    /// Closed by [`super::cache::freeze`]: empty, no hints, and every slow
    /// path sends its operation to the depot (which refuses allocations)
    /// until [`super::cache::thaw`]. The fast paths never test it: an
    /// empty magazine has nothing to pop, and one without hints takes no
    /// free.
    frozen: bool,
    /// This CPU's counters.
    pub stats: CpuStats,
}

// SAFETY: The pointers are free objects owned by the magazine, not borrowed
// thread-local data; moving the magazine to another thread moves that
// ownership, which the slab layer allows (objects are plain memory).
unsafe impl Send for Magazine {}

impl Default for Magazine {
    fn default() -> Self {
        Self::new()
    }
}

const NO_HINT: usize = usize::MAX;

impl Magazine {
    /// An empty magazine.
    pub const fn new() -> Self {
        // INVARIANT: Empty.
        Self {
            len: 0,
            objs: [NonNull::dangling(); MAG_CAPACITY],
            last: NO_HINT,
            hints: [NO_HINT; SLAB_HINTS],
            frozen: false,
            stats: CpuStats::new(),
        }
    }

    /// Whether the magazine is closed (see [`super::cache::freeze`]).
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// Closes or reopens the magazine; the caller empties it and forgets
    /// its hints before closing it.
    pub(crate) fn set_frozen(&mut self, frozen: bool) {
        self.frozen = frozen;
    }

    /// Objects currently cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no object is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the magazine cannot take another object.
    #[inline(always)]
    pub fn is_full(&self) -> bool {
        self.len >= MAG_CAPACITY
    }

    /// Pushes a free object; gives it back if the magazine is full.
    #[inline(always)]
    pub(crate) fn push(&mut self, p: NonNull<u8>) -> Result<(), NonNull<u8>> {
        match self.objs.get_mut(self.len) {
            Some(slot) => {
                *slot = p;
                // INVARIANT: `len < MAG_CAPACITY` before (the slot exists).
                self.len = self.len.wrapping_add(1);
                Ok(())
            }
            None => Err(p),
        }
    }

    /// Pushes a free object into a magazine known not to be full.
    ///
    /// # Safety
    ///
    /// `!self.is_full()`.
    #[inline(always)]
    pub(crate) unsafe fn push_unchecked(&mut self, p: NonNull<u8>) {
        // SAFETY: `len < MAG_CAPACITY` (contract).
        unsafe { *self.objs.get_unchecked_mut(self.len) = p };
        // INVARIANT: Still at most `MAG_CAPACITY`.
        self.len = self.len.wrapping_add(1);
    }

    /// Pops the most recently pushed (cache-hot) object.
    #[inline(always)]
    pub(crate) fn pop(&mut self) -> Option<NonNull<u8>> {
        if self.len == 0 {
            return None;
        }
        let top = self.len.wrapping_sub(1);
        // SAFETY: `top < len <= MAG_CAPACITY` (type invariant).
        let p = unsafe { *self.objs.get_unchecked(top) };
        // INVARIANT: One fewer cached object.
        self.len = top;
        Some(p)
    }

    /// Removes the `n` newest objects (all of them, if fewer are cached)
    /// for a bulk allocation; the newest is last in the returned slice.
    #[inline(always)]
    pub(crate) fn pop_newest(&mut self, n: usize) -> &[NonNull<u8>] {
        let top = self.len;
        let keep = top.saturating_sub(n);
        // INVARIANT: `keep <= len`; the objects above it are the caller's.
        self.len = keep;
        self.objs.get(keep..top).unwrap_or(&[])
    }

    /// Pushes freed objects from the front of `ptrs` for a bulk free,
    /// skipping null entries: each object in a slab this magazine knows
    /// ([`Self::knows_slab`]) goes through `admit` (its checks and free
    /// mark) and, if admitted, into the magazine; refusals are counted.
    /// Stops before the first object of a slab it does not know, or when
    /// the magazine is full. Returns the entries consumed and how many of
    /// them were refused. The length, the last slab and the hit counter
    /// stay in registers and are written once (`slab_mask` is the slab
    /// size minus one, `shift` its log2).
    #[inline(always)]
    pub(crate) fn push_known_run(
        &mut self,
        ptrs: &[*mut u8],
        slab_mask: usize,
        shift: u32,
        mut admit: impl FnMut(NonNull<u8>) -> Result<(), FreeError>,
    ) -> (usize, usize) {
        let start = self.len;
        let mut len = start;
        let mut known = self.last;
        let mut refused = 0usize;
        let mut rest = ptrs.iter();
        // `rest` stays at the entry that stopped the run (a clone peeks).
        while let Some(&raw) = rest.clone().next() {
            let base = (raw as usize) & !slab_mask;
            if let Some(p) = NonNull::new(raw) {
                if base != known && self.hints.get((base >> shift) % SLAB_HINTS) != Some(&base) {
                    break;
                }
                known = base;
                let Some(slot) = self.objs.get_mut(len) else {
                    break;
                };
                match admit(p) {
                    Ok(()) => {
                        *slot = p;
                        // Bounded by `MAG_CAPACITY` (the slot exists).
                        len = len.wrapping_add(1);
                    }
                    Err(e) => {
                        self.stats.note_refusal(e);
                        // Bounded by `ptrs.len()`.
                        refused = refused.wrapping_add(1);
                    }
                }
            }
            rest.next();
        }
        let consumed = ptrs.len().wrapping_sub(rest.len());
        // INVARIANT: `len <= MAG_CAPACITY` (each push had a slot); the new
        // objects were admitted (validated and marked free) by the caller.
        self.len = len;
        // `known` is the last slab or a hinted one: alive, as hints are.
        self.last = known;
        self.stats.free_hits = self
            .stats
            .free_hits
            .wrapping_add(len.wrapping_sub(start) as u64);
        (consumed, refused)
    }

    /// Whether `base` is a slab this magazine validated and still knows
    /// to be alive; `shift` is the cache's slab size's log2.
    #[inline(always)]
    pub(crate) fn knows_slab(&self, base: usize, shift: u32) -> bool {
        base == self.last || self.hints.get((base >> shift) % SLAB_HINTS) == Some(&base)
    }

    /// Remembers the live slab at `base` (just validated) as the last one
    /// and in its table entry.
    pub(crate) fn note_slab(&mut self, base: usize, shift: u32) {
        self.last = base;
        if let Some(h) = self.hints.get_mut((base >> shift) % SLAB_HINTS) {
            *h = base;
        }
    }

    /// Forgets every hint: called on every magazine before retired slabs'
    /// pages are freed.
    pub(crate) fn forget_slabs(&mut self) {
        self.last = NO_HINT;
        self.hints = [NO_HINT; SLAB_HINTS];
    }

    /// Moves the [`MAG_BATCH`] newest objects into `out` (a batch for the
    /// depot's stash); false, and nothing moved, with fewer cached. The
    /// newest, not the oldest: one copy and no shift of the rest (Bonwick
    /// hands the whole full magazine over, hot objects included).
    pub(crate) fn take_newest_batch(&mut self, out: &mut [NonNull<u8>; MAG_BATCH]) -> bool {
        let Some(rest) = self.len.checked_sub(MAG_BATCH) else {
            return false;
        };
        let Some(newest) = self
            .objs
            .get(rest..self.len)
            .and_then(|r| <&[NonNull<u8>; MAG_BATCH]>::try_from(r).ok())
        else {
            return false;
        };
        copy_batch(out, newest);
        // INVARIANT: `len >= MAG_BATCH` before, `MAG_BATCH` fewer now.
        self.len = rest;
        true
    }

    /// Pushes a whole batch (from the depot's stash) on top; false, and
    /// nothing moved, without room for it.
    pub(crate) fn put_batch(&mut self, batch: &[NonNull<u8>; MAG_BATCH]) -> bool {
        let end = self.len.saturating_add(MAG_BATCH);
        let Some(room) = self
            .objs
            .get_mut(self.len..end)
            .and_then(|r| <&mut [NonNull<u8>; MAG_BATCH]>::try_from(r).ok())
        else {
            return false;
        };
        copy_batch(room, batch);
        // INVARIANT: `end <= MAG_CAPACITY` (the slots exist).
        self.len = end;
        true
    }

    /// Removes up to `n` of the oldest objects, passing each to `f`.
    pub(crate) fn drain_oldest(&mut self, n: usize, mut f: impl FnMut(NonNull<u8>)) {
        let n = n.min(self.len);
        for &p in self.objs.iter().take(n) {
            f(p);
        }
        // Shift the survivors down.
        self.objs.copy_within(n..self.len, 0);
        // INVARIANT: `n <= len` objects left.
        self.len -= n;
    }
}

/// Copies one batch of pointers between a magazine and the stash.
///
/// A plain `*dst = *src` of 256 bytes becomes a call to the kernel's
/// `memcpy`, which on a CPU without FSRM (QEMU's emulated ones among them)
/// is `memcpy_orig`: about 100 instructions of 32-byte steps and size
/// tests. On x86-64 this is one `rep movsq` of [`MAG_BATCH`] quadwords
/// (the kernel's own `memcpy` is a `rep movsb` on FSRM CPUs, and
/// `copy_page` a `rep movsq`): no call, and emulation counts one
/// instruction per quadword. Elsewhere, the assignment. (KASAN does not
/// see this copy; both arrays are the allocator's own metadata.)
#[inline(always)]
fn copy_batch(dst: &mut [NonNull<u8>; MAG_BATCH], src: &[NonNull<u8>; MAG_BATCH]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `rep movsq` copies `rcx` = `MAG_BATCH` quadwords from `rsi`
    // up to `rdi` (the direction flag is clear on entry to `asm!`, as the
    // Rust and kernel ABIs require): exactly the two arrays, which are
    // valid for that many pointers and cannot overlap (one is borrowed
    // mutably). It touches no stack and no flags.
    unsafe {
        core::arch::asm!(
            "rep movsq",
            inout("rcx") MAG_BATCH => _,
            inout("rdi") dst.as_mut_ptr() => _,
            inout("rsi") src.as_ptr() => _,
            options(nostack, preserves_flags),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        *dst = *src;
    }
}
