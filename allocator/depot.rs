// SPDX-License-Identifier: GPL-2.0

//! The depot: a cache's slabs, sorted on partial, full and empty lists.
//!
//! This is SLUB's `struct kmem_cache_node` (`partial` and `full` lists under
//! `list_lock`) plus the empty list the historic SLAB allocator kept
//! (`slabs_free`), which lets `shrink` (`kmem_cache_shrink()`) find empty
//! slabs without scanning. It is protected by one lock supplied by the
//! glue ([`super::CacheEnv::with_depot`]); every method takes `&mut self`,
//! so holding the lock is a precondition the borrow checker enforces.
//!
//! Allocation prefers partial slabs over empty ones (keeping empty slabs
//! reclaimable), and the most recently touched slab first (cache-hot). The
//! depot never calls the page allocator: new slabs are built outside the
//! lock and handed in with [`Depot::add_slab`], and slabs to free are handed
//! out detached ([`SlabList`]) to be freed after the lock is dropped.

use core::ptr::NonNull;

use super::debug::{
    self,
    AllocCheck, //
};
use super::error::FreeError;
use super::layout::CacheLayout;
use super::magazine::{
    CpuStats,
    Magazine,
    MAG_BATCH, //
};
use super::slab::{
    self,
    ListId,
    SlabPtr, //
};
use super::stats::CacheStats;

/// A doubly linked list of slabs, threaded through their headers.
#[derive(Debug)]
pub struct SlabList {
    head: Option<SlabPtr>,
    len: usize,
}

// SAFETY: A list owns its slabs (runs of pages, not thread-bound data); it
// is only used by the holder of the depot lock, or by the one owner of a
// detached list.
unsafe impl Send for SlabList {}

impl SlabList {
    const fn new() -> Self {
        Self { head: None, len: 0 }
    }

    /// The number of slabs on the list.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push_front(&mut self, s: SlabPtr) {
        s.set_prev(None);
        s.set_next(self.head);
        if let Some(h) = self.head {
            h.set_prev(Some(s));
        }
        self.head = Some(s);
        self.len += 1;
    }

    fn remove(&mut self, s: SlabPtr) {
        let (p, n) = (s.prev(), s.next());
        match p {
            Some(p) => p.set_next(n),
            None => self.head = n,
        }
        if let Some(n) = n {
            n.set_prev(p);
        }
        s.set_next(None);
        s.set_prev(None);
        self.len = self.len.saturating_sub(1);
    }

    pub(crate) fn pop_front(&mut self) -> Option<SlabPtr> {
        let s = self.head?;
        self.remove(s);
        Some(s)
    }

    fn append(&mut self, other: &mut SlabList) {
        while let Some(s) = other.pop_front() {
            self.push_front(s);
        }
    }
}

/// Batches the stash holds at most (SLUB's barn keeps up to 10 full
/// sheaves per node, `MAX_FULL_SHEAVES`).
pub const STASH_BATCHES: usize = 8;

/// Bytes of objects the stash holds at most: large objects get fewer
/// batches (none past 4 KiB objects), so that free objects parked in the
/// depot (each keeps its slab from being empty, hence from being given
/// back) stay a small amount of memory per cache.
pub const STASH_BYTES: usize = 128 * 1024;

/// The batches of [`STASH_BATCHES`] a cache of `stride`-byte objects
/// stashes at most (0: none, one batch would exceed [`STASH_BYTES`]).
pub const fn stash_capacity(stride: usize) -> usize {
    let per_batch = if stride == 0 {
        1
    } else {
        stride.saturating_mul(MAG_BATCH)
    };
    let n = STASH_BYTES / per_batch;
    if n > STASH_BATCHES {
        STASH_BATCHES
    } else {
        n
    }
}

/// Whole batches of free objects parked in the depot between a drain and a
/// refill (see `magazine.rs`). Their objects stay counted in their slabs'
/// `inuse`, exactly like objects in a magazine, so their slabs can be
/// neither empty nor retired while they are here; `Depot::flush_stash`
/// puts them back before a shrink or a destroy.
///
/// # Invariants
///
/// `len <= STASH_BATCHES`; `batches[..len]` hold free (marked) objects of
/// live slabs of this cache.
struct Stash {
    len: usize,
    batches: [[NonNull<u8>; MAG_BATCH]; STASH_BATCHES],
}

impl core::fmt::Debug for Stash {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Stash").field("len", &self.len).finish()
    }
}

/// Counters kept under the depot lock.
#[derive(Clone, Copy, Debug, Default)]
struct DepotCounters {
    allocs: u64,
    frees: u64,
    refills: u64,
    drains: u64,
    slabs_created: u64,
    slabs_freed: u64,
    poison_errors: u64,
    redzone_errors: u64,
    freelist_errors: u64,
}

/// The mutable, lock-protected part of a cache.
#[derive(Debug)]
pub struct Depot {
    partial: SlabList,
    full: SlabList,
    empty: SlabList,
    inuse: usize,
    quarantined: usize,
    dead: bool,
    /// Allocations refused until thawed (see `cache::freeze`).
    frozen: bool,
    c: DepotCounters,
    stash: Stash,
    /// Operations served without a magazine (its CPU's was busy: an
    /// interrupt on top of its holder, or a flush in progress).
    direct: CpuStats,
}

impl Default for Depot {
    fn default() -> Self {
        Self::new()
    }
}

/// The outcome of one allocation attempt under the depot lock.
pub(crate) enum Take {
    /// An object.
    Got(NonNull<u8>),
    /// No free object: a new slab is needed.
    NeedSlab,
    /// The cache was destroyed, or is frozen.
    Dead,
}

impl Depot {
    /// An empty depot.
    pub const fn new() -> Self {
        Self {
            partial: SlabList::new(),
            full: SlabList::new(),
            empty: SlabList::new(),
            inuse: 0,
            quarantined: 0,
            dead: false,
            frozen: false,
            c: DepotCounters {
                allocs: 0,
                frees: 0,
                refills: 0,
                drains: 0,
                slabs_created: 0,
                slabs_freed: 0,
                poison_errors: 0,
                redzone_errors: 0,
                freelist_errors: 0,
            },
            // INVARIANT: Empty.
            stash: Stash {
                len: 0,
                batches: [[NonNull::dangling(); MAG_BATCH]; STASH_BATCHES],
            },
            direct: CpuStats::new(),
        }
    }

    /// Whether the cache has been destroyed.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Whether allocations are refused: the cache is destroyed, or frozen
    /// (`cache::freeze`). Frees are still taken.
    pub fn refuses_allocs(&self) -> bool {
        self.dead || self.frozen
    }

    /// Whether the depot is frozen (`cache::freeze`).
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// Freezes or thaws the depot (see `cache::freeze`).
    pub(crate) fn set_frozen(&mut self, frozen: bool) {
        self.frozen = frozen;
    }

    /// Objects handed out of slabs (to users or magazines).
    pub fn inuse(&self) -> usize {
        self.inuse
    }

    fn list_mut(&mut self, id: ListId) -> Option<&mut SlabList> {
        match id {
            ListId::Partial => Some(&mut self.partial),
            ListId::Full => Some(&mut self.full),
            ListId::Empty => Some(&mut self.empty),
            ListId::None => None,
        }
    }

    /// Moves a slab to the list its counts call for.
    fn relist(&mut self, layout: &CacheLayout, s: SlabPtr) {
        let want = if s.nfree(layout) == 0 {
            ListId::Full
        } else if s.inuse() == 0 {
            ListId::Empty
        } else {
            ListId::Partial
        };
        let have = s.list();
        if want == have {
            return;
        }
        if let Some(l) = self.list_mut(have) {
            l.remove(s);
        }
        if let Some(l) = self.list_mut(want) {
            l.push_front(s);
        }
        s.set_list(want);
    }

    /// Publishes a slab built by `init_slab` outside the lock.
    pub(crate) fn add_slab(&mut self, layout: &CacheLayout, s: SlabPtr) {
        s.set_list(ListId::None);
        self.relist(layout, s);
        self.c.slabs_created = self.c.slabs_created.wrapping_add(1);
    }

    /// Marks the cache destroyed if no object is out; returns the count.
    pub(crate) fn kill(&mut self) -> Result<(), usize> {
        if self.inuse > 0 {
            return Err(self.inuse);
        }
        self.dead = true;
        Ok(())
    }

    fn note_lost(&mut self, lost: u32) {
        if lost > 0 {
            self.quarantined = self.quarantined.saturating_add(lost as usize);
            self.c.freelist_errors = self.c.freelist_errors.wrapping_add(1);
        }
    }

    /// Takes one free object off a slab (partial first, then empty).
    fn take_one(&mut self, layout: &CacheLayout) -> Option<(SlabPtr, u32)> {
        // Each failed round moves a slab to the full list, so this ends.
        loop {
            let s = match self.partial.head {
                Some(s) => s,
                None => self.empty.head?,
            };
            let popped = s.pop_free(layout);
            self.note_lost(popped.lost);
            if let Some(index) = popped.index {
                s.set_inuse(s.inuse().saturating_add(1));
                self.inuse = self.inuse.saturating_add(1);
                self.relist(layout, s);
                return Some((s, index));
            }
            self.relist(layout, s);
            if s.list() != ListId::Full {
                return None;
            }
        }
    }

    /// Takes up to `max` free objects off the slabs (partial first, then
    /// empty), slab by slab: each slab's free list is popped in one run and
    /// the slab relisted once, so a refill costs one list operation per slab,
    /// not per object. `sink` takes each object (returning false, it refuses
    /// it and the run stops). Returns how many were taken.
    fn take_runs(
        &mut self,
        layout: &CacheLayout,
        max: usize,
        mut sink: impl FnMut(NonNull<u8>) -> bool,
    ) -> usize {
        let mut moved = 0usize;
        while moved < max {
            let Some(s) = self.partial.head.or(self.empty.head) else {
                break;
            };
            let want = u32::try_from(max - moved).unwrap_or(u32::MAX);
            let mut refused = false;
            let (k, lost) = s.take_run(layout, want, |p| {
                let ok = sink(p);
                refused |= !ok;
                ok
            });
            self.note_lost(lost);
            moved += k as usize;
            self.inuse = self.inuse.saturating_add(k as usize);
            self.relist(layout, s);
            // A slab that gave nothing and is not full now (a refusal, or a
            // free list that disagrees with its counts) would be picked
            // again: stop instead.
            if refused || (k == 0 && s.list() != ListId::Full) {
                break;
            }
        }
        moved
    }

    /// Fills `mag` with up to `n` objects; returns how many were moved. A
    /// whole batch comes from the stash when it has one.
    pub(crate) fn refill(&mut self, layout: &CacheLayout, mag: &mut Magazine, n: usize) -> usize {
        if n == MAG_BATCH {
            if let Some(top) = self.stash.len.checked_sub(1) {
                if let Some(batch) = self.stash.batches.get(top) {
                    if mag.put_batch(batch) {
                        // INVARIANT: The top batch moved to the magazine.
                        self.stash.len = top;
                        self.c.refills = self.c.refills.wrapping_add(1);
                        return MAG_BATCH;
                    }
                }
            }
        }
        let moved = self.take_runs(layout, n, |p| mag.push(p).is_ok());
        if moved > 0 {
            self.c.refills = self.c.refills.wrapping_add(1);
        }
        moved
    }

    /// Takes objects straight into `out` for a bulk allocation, clearing
    /// their free marks (a marked cache); returns how many were taken.
    pub(crate) fn take_into(&mut self, layout: &CacheLayout, out: &mut [*mut u8]) -> usize {
        let from_stash = self.take_stashed_into(layout, out);
        let out = out.get_mut(from_stash..).unwrap_or(&mut []);
        let mut n = self.take_runs_into(layout, out);
        if n < out.len() && self.stash.len > 0 {
            // Less than a batch was wanted and the slabs ran dry: the
            // stash's objects back to their slabs, rather than a new slab.
            self.flush_stash(layout);
            n += self.take_runs_into(layout, out.get_mut(n..).unwrap_or(&mut []));
        }
        let n = n.saturating_add(from_stash);
        self.direct.allocs = self.direct.allocs.wrapping_add(n as u64);
        n
    }

    /// Slab runs straight into `out`, free marks cleared; how many.
    fn take_runs_into(&mut self, layout: &CacheLayout, out: &mut [*mut u8]) -> usize {
        let max = out.len();
        let mut slots = out.iter_mut();
        self.take_runs(layout, max, |p| match slots.next() {
            Some(slot) => {
                // SAFETY: `p` was just taken off a free list of a live
                // slab of this marked cache; it is ours.
                unsafe { slab::clear_free_mark(layout, p) };
                *slot = p.as_ptr();
                true
            }
            None => false,
        })
    }

    /// The start of [`Depot::take_into`]: whole stashed batches while `out`
    /// has room for one. Returns how many objects were taken.
    fn take_stashed_into(&mut self, layout: &CacheLayout, out: &mut [*mut u8]) -> usize {
        let mut k = 0usize;
        while let Some(top) = self.stash.len.checked_sub(1) {
            let (Some(batch), Some(dst)) = (
                self.stash.batches.get(top),
                out.get_mut(k..k.saturating_add(MAG_BATCH)),
            ) else {
                break;
            };
            for (slot, p) in dst.iter_mut().zip(batch) {
                // SAFETY: Stashed objects are free objects of live slabs of
                // this marked cache (type invariant), counted in `inuse`.
                unsafe { slab::clear_free_mark(layout, *p) };
                *slot = p.as_ptr();
            }
            // INVARIANT: The top batch was handed out.
            self.stash.len = top;
            k += MAG_BATCH;
        }
        k
    }

    /// Returns object `index` to slab `s`'s free list.
    fn put_back(&mut self, layout: &CacheLayout, s: SlabPtr, index: u32) {
        s.push_free(layout, index);
        s.set_inuse(s.inuse().saturating_sub(1));
        self.inuse = self.inuse.saturating_sub(1);
        self.relist(layout, s);
    }

    /// Gives up to `n` of the oldest objects of `mag` back to their slabs.
    /// Consecutive objects of one slab (the usual case: a magazine fills
    /// from runs) are pushed on its free list and the slab relisted once.
    /// A batch of [`MAG_BATCH`] goes to the stash instead when it has room.
    pub(crate) fn drain(&mut self, layout: &CacheLayout, mag: &mut Magazine, n: usize) {
        if n == 0 || mag.is_empty() {
            return;
        }
        if n == MAG_BATCH && self.stash.len < stash_capacity(layout.stride()) {
            if let Some(batch) = self.stash.batches.get_mut(self.stash.len) {
                if mag.take_newest_batch(batch) {
                    // INVARIANT: `len < capacity <= STASH_BATCHES` before;
                    // the batch holds magazine objects (free, marked, of
                    // live slabs).
                    self.stash.len += 1;
                    self.c.drains = self.c.drains.wrapping_add(1);
                    return;
                }
            }
        }
        self.return_to_slabs(layout, mag, n);
        self.c.drains = self.c.drains.wrapping_add(1);
    }

    /// Gives every stashed object back to its slab (before a shrink or a
    /// destroy, which need the slabs' true counts).
    pub(crate) fn flush_stash(&mut self, layout: &CacheLayout) {
        while let Some(top) = self.stash.len.checked_sub(1) {
            let mut mag = Magazine::new();
            if let Some(batch) = self.stash.batches.get(top) {
                let _ = mag.put_batch(batch);
            }
            // INVARIANT: The top batch is now in `mag`, returned below.
            self.stash.len = top;
            self.return_to_slabs(layout, &mut mag, MAG_BATCH);
        }
    }

    /// Objects in the stash.
    pub fn stashed(&self) -> usize {
        self.stash.len.saturating_mul(MAG_BATCH)
    }

    /// The slab side of [`Depot::drain`].
    fn return_to_slabs(&mut self, layout: &CacheLayout, mag: &mut Magazine, n: usize) {
        let mut run: Option<(SlabPtr, u32)> = None;
        mag.drain_oldest(n, |p| {
            // SAFETY: Objects in a magazine were validated when freed (or
            // taken from a slab by `refill`) and are counted in their slab's
            // `inuse`, so the slab is alive; we hold the depot lock.
            let Some((s, index)) = (unsafe { SlabPtr::containing(layout, p) }) else {
                return;
            };
            s.push_free_obj(layout, p, index);
            match run {
                Some((cur, k)) if cur == s => run = Some((cur, k + 1)),
                _ => {
                    if let Some((cur, k)) = run {
                        self.end_run(layout, cur, k);
                    }
                    run = Some((s, 1));
                }
            }
        });
        if let Some((cur, k)) = run {
            self.end_run(layout, cur, k);
        }
    }

    /// Books `k` objects just pushed back on slab `s`'s free list.
    fn end_run(&mut self, layout: &CacheLayout, s: SlabPtr, k: u32) {
        s.set_inuse(s.inuse().saturating_sub(k));
        self.inuse = self.inuse.saturating_sub(k as usize);
        self.relist(layout, s);
    }

    /// Allocates one object of a marked cache without a magazine (its
    /// CPU's is busy).
    pub(crate) fn alloc_direct(&mut self, layout: &CacheLayout) -> Take {
        if self.refuses_allocs() {
            return Take::Dead;
        }
        let taken = match self.take_one(layout) {
            // The slabs are dry but the stash may not be: its objects go
            // back to their slabs rather than a new slab being grown (or,
            // under memory pressure, the allocation failing).
            None if self.stash.len > 0 => {
                self.flush_stash(layout);
                self.take_one(layout)
            }
            t => t,
        };
        let Some((s, index)) = taken else {
            return Take::NeedSlab;
        };
        match s.object(layout, index) {
            Some(p) => {
                // SAFETY: Just taken off the free list of a live slab of
                // this marked cache (only those use this path): ours.
                unsafe { slab::clear_free_mark(layout, p) };
                self.direct.allocs = self.direct.allocs.wrapping_add(1);
                Take::Got(p)
            }
            None => {
                self.put_back(layout, s, index);
                Take::NeedSlab
            }
        }
    }

    /// Frees an object of a marked cache, validated by `slab::locate`,
    /// without a magazine.
    pub(crate) fn free_direct(
        &mut self,
        layout: &CacheLayout,
        s: SlabPtr,
        index: u32,
    ) -> Result<(), FreeError> {
        let Some(p) = s.object(layout, index) else {
            return Err(FreeError::Foreign);
        };
        // SAFETY: `p` is an object of the live slab `s` (validated, lock
        // held); the caller is freeing it.
        if unsafe { slab::swap_free_mark(layout, p) } {
            return Err(FreeError::DoubleFree);
        }
        self.put_back(layout, s, index);
        self.direct.frees = self.direct.frees.wrapping_add(1);
        Ok(())
    }

    /// Counts a free refused on the direct path.
    pub(crate) fn note_direct_refusal(&mut self, e: FreeError) {
        self.direct.note_refusal(e);
    }

    /// Allocates one object of a debug cache: pops, checks poison and red
    /// zones, quarantines damaged objects (see `debug.rs`).
    pub(crate) fn debug_alloc(&mut self, layout: &CacheLayout) -> Take {
        if self.refuses_allocs() {
            return Take::Dead;
        }
        loop {
            let Some((s, index)) = self.take_one(layout) else {
                return Take::NeedSlab;
            };
            // SAFETY: The object was free and we own the slab (lock held).
            let check = match unsafe { s.slot_mut(layout, index) } {
                Some(slot) => debug::check_alloc(slot, layout),
                None => AllocCheck::Ok,
            };
            let counter = match check {
                AllocCheck::Ok => {
                    let Some(p) = s.object(layout, index) else {
                        continue;
                    };
                    let _ = s.test_and_set(layout, index);
                    self.c.allocs = self.c.allocs.wrapping_add(1);
                    return Take::Got(p);
                }
                AllocCheck::Poison => &mut self.c.poison_errors,
                AllocCheck::RedZone => &mut self.c.redzone_errors,
            };
            *counter = counter.wrapping_add(1);
            // Quarantine: the object stays out of the free list, its
            // allocated bit clear, not counted as in use.
            s.set_inuse(s.inuse().saturating_sub(1));
            s.set_quarantined(s.quarantined().saturating_add(1));
            self.inuse = self.inuse.saturating_sub(1);
            self.quarantined = self.quarantined.saturating_add(1);
            self.relist(layout, s);
        }
    }

    /// Frees an object of a debug cache validated by `slab::locate`.
    pub(crate) fn debug_free(
        &mut self,
        layout: &CacheLayout,
        s: SlabPtr,
        index: u32,
    ) -> Result<(), FreeError> {
        // Debug caches change bitmap bits only under this lock, so a plain
        // test followed by a clear is not racy.
        if s.test(layout, index) != Some(true) {
            return Err(FreeError::DoubleFree);
        }
        // SAFETY: The object is allocated (bit set) and its owner is freeing
        // it; we hold the depot lock.
        let intact = match unsafe { s.slot_mut(layout, index) } {
            Some(slot) => debug::check_free(slot, layout),
            None => false,
        };
        if !intact {
            self.c.redzone_errors = self.c.redzone_errors.wrapping_add(1);
            return Err(FreeError::RedZone);
        }
        let _ = s.test_and_clear(layout, index);
        self.put_back(layout, s, index);
        self.c.frees = self.c.frees.wrapping_add(1);
        Ok(())
    }

    /// Unlinks and unpublishes a slab about to be freed.
    fn retire(s: SlabPtr, out: &mut SlabList) {
        s.set_list(ListId::None);
        // SAFETY: `s` was just unlinked under the depot lock, it has no
        // object in use (empty, or the cache is dead), and the caller frees
        // it only after every magazine holder has let go (`cache::release`).
        unsafe { s.wipe() };
        out.push_front(s);
    }

    /// Unlinks and unpublishes every empty slab (for `shrink`).
    pub(crate) fn take_empty(&mut self) -> SlabList {
        let mut out = SlabList::new();
        while let Some(s) = self.empty.pop_front() {
            self.quarantined = self.quarantined.saturating_sub(s.quarantined() as usize);
            Self::retire(s, &mut out);
        }
        self.note_freed(&out);
        out
    }

    /// Unlinks every slab (for `destroy`, after `kill` succeeded).
    pub(crate) fn take_all(&mut self) -> SlabList {
        let mut out = self.take_empty();
        let mut rest = SlabList::new();
        for l in [&mut self.partial, &mut self.full] {
            while let Some(s) = l.pop_front() {
                Self::retire(s, &mut rest);
            }
        }
        self.note_freed(&rest);
        out.append(&mut rest);
        self.quarantined = 0;
        out
    }

    fn note_freed(&mut self, l: &SlabList) {
        self.c.slabs_freed = self.c.slabs_freed.wrapping_add(l.len() as u64);
    }

    /// The depot's share of the statistics (magazines are added by
    /// `cache::stats`).
    pub(crate) fn stats(&self, layout: &CacheLayout) -> CacheStats {
        let objs = layout.objects() as usize;
        let slabs = self
            .partial
            .len()
            .saturating_add(self.full.len())
            .saturating_add(self.empty.len());
        CacheStats {
            active_objs: self.inuse,
            num_objs: slabs.saturating_mul(objs),
            objsize: layout.size(),
            objperslab: objs,
            pagesperslab: layout.pages_per_slab(),
            slabs_partial: self.partial.len(),
            slabs_full: self.full.len(),
            slabs_empty: self.empty.len(),
            cached_objs: self.stashed(),
            stashed_objs: self.stashed(),
            quarantined: self.quarantined,
            allocs: self.c.allocs,
            frees: self.c.frees,
            cpu_alloc_hits: 0,
            cpu_free_hits: 0,
            refills: self.c.refills,
            drains: self.c.drains,
            slabs_created: self.c.slabs_created,
            slabs_freed: self.c.slabs_freed,
            refused_foreign: 0,
            refused_misaligned: 0,
            refused_double: 0,
            poison_errors: self.c.poison_errors,
            redzone_errors: self.c.redzone_errors,
            freelist_errors: self.c.freelist_errors,
        }
        .with_cpu(&self.direct)
    }

    /// Walks every list and checks the depot's bookkeeping: list
    /// membership, header identity, per-slab counts against the totals.
    /// Returns the first inconsistency found. Slow; for tests and debugfs.
    pub fn check(&self, layout: &CacheLayout) -> Result<(), &'static str> {
        let mut inuse = 0usize;
        let mut quarantined = 0usize;
        for (id, l) in [
            (ListId::Partial, &self.partial),
            (ListId::Full, &self.full),
            (ListId::Empty, &self.empty),
        ] {
            let mut n = 0usize;
            let mut cur = l.head;
            let mut prev: Option<SlabPtr> = None;
            while let Some(s) = cur {
                if s.list() != id {
                    return Err("slab on the wrong list");
                }
                if s.prev() != prev {
                    return Err("broken back link");
                }
                if slab::header_identity(s) != (slab::SLAB_MAGIC, layout.cache_id()) {
                    return Err("bad slab header identity");
                }
                let (iu, q, free) = (s.inuse(), s.quarantined(), s.nfree(layout));
                if iu.saturating_add(q) > layout.objects() {
                    return Err("slab counts exceed objects");
                }
                let ok = match id {
                    ListId::Full => free == 0,
                    ListId::Empty => iu == 0 && free > 0,
                    _ => iu > 0 && free > 0,
                };
                if !ok {
                    return Err("slab counts disagree with its list");
                }
                inuse += iu as usize;
                quarantined += q as usize;
                n += 1;
                if n > l.len() {
                    return Err("list longer than its count");
                }
                prev = cur;
                cur = s.next();
            }
            if n != l.len() {
                return Err("list shorter than its count");
            }
        }
        if inuse != self.inuse {
            return Err("in-use total disagrees with slabs");
        }
        if quarantined != self.quarantined {
            return Err("quarantine total disagrees with slabs");
        }
        if self.stash.len > stash_capacity(layout.stride()) {
            return Err("stash beyond its capacity");
        }
        if self.stashed() > self.inuse {
            return Err("more stashed objects than objects out of slabs");
        }
        Ok(())
    }
}

// SAFETY: The depot owns its slabs (runs of pages); it is only accessed
// through the glue's lock, which serializes every use across threads.
unsafe impl Send for Depot {}
