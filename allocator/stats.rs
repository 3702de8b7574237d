// SPDX-License-Identifier: GPL-2.0

//! Cache statistics, the numbers behind a `/proc/slabinfo`-style file.
//!
//! The first block mirrors `/proc/slabinfo` (`active_objs`, `num_objs`,
//! `objsize`, `objperslab`, `pagesperslab`, slab counts); the event counters
//! mirror `CONFIG_SLUB_STATS` (`/sys/kernel/slab/<cache>/alloc_fastpath`
//! and friends) and the slub_debug reports. Per-CPU counters live in the
//! magazines and are summed here, so a snapshot taken while other CPUs run
//! is approximate, exactly like SLUB's.

use super::magazine::{
    CpuStats,
    Magazine, //
};

/// A snapshot of one cache's statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Objects out of their slabs: held by users or cached in magazines
    /// (like slabinfo's `active_objs`, which counts per-CPU objects too).
    pub active_objs: usize,
    /// Object slots in all slabs.
    pub num_objs: usize,
    /// The object size requested at creation.
    pub objsize: usize,
    /// Objects per slab.
    pub objperslab: usize,
    /// Pages per slab (`2^order`).
    pub pagesperslab: usize,
    /// Slabs with both free and used objects.
    pub slabs_partial: usize,
    /// Slabs without a free object.
    pub slabs_full: usize,
    /// Slabs without a used object (what `shrink` returns).
    pub slabs_empty: usize,
    /// Free objects cached out of their slabs: in per-CPU magazines and in
    /// the depot's stash (part of `active_objs`).
    pub cached_objs: usize,
    /// Of `cached_objs`, those in the depot's stash of whole batches.
    pub stashed_objs: usize,
    /// Objects withdrawn after a detected corruption (not in
    /// `active_objs`).
    pub quarantined: usize,
    /// Successful allocations.
    pub allocs: u64,
    /// Successful frees.
    pub frees: u64,
    /// Allocations served by the current CPU's magazine alone.
    pub cpu_alloc_hits: u64,
    /// Frees absorbed by the current CPU's magazine alone.
    pub cpu_free_hits: u64,
    /// Magazine refills from the depot.
    pub refills: u64,
    /// Magazine drains to the depot.
    pub drains: u64,
    /// Slabs obtained from the page source.
    pub slabs_created: u64,
    /// Slabs given back to the page source.
    pub slabs_freed: u64,
    /// Frees refused: not an object of this cache.
    pub refused_foreign: u64,
    /// Frees refused: not at an object boundary.
    pub refused_misaligned: u64,
    /// Frees refused: object not allocated (double free).
    pub refused_double: u64,
    /// Poison found damaged on allocation (use after free).
    pub poison_errors: u64,
    /// Red zones found damaged (on free of a live object, or on allocation
    /// of a free one).
    pub redzone_errors: u64,
    /// Free lists found corrupted (their remaining objects quarantined).
    pub freelist_errors: u64,
}

impl CacheStats {
    /// Total slabs.
    pub fn slabs(&self) -> usize {
        self.slabs_partial + self.slabs_full + self.slabs_empty
    }

    /// Adds one CPU's magazine to the snapshot.
    pub fn add_magazine(&mut self, mag: &Magazine) {
        self.cached_objs = self.cached_objs.saturating_add(mag.len());
        *self = self.with_cpu(&mag.stats);
    }

    /// The snapshot with one set of per-CPU counters added.
    pub(crate) fn with_cpu(mut self, c: &CpuStats) -> Self {
        // A CPU counts its hits apart from its other operations.
        self.allocs = self
            .allocs
            .wrapping_add(c.allocs)
            .wrapping_add(c.alloc_hits);
        self.frees = self.frees.wrapping_add(c.frees).wrapping_add(c.free_hits);
        self.cpu_alloc_hits = self.cpu_alloc_hits.wrapping_add(c.alloc_hits);
        self.cpu_free_hits = self.cpu_free_hits.wrapping_add(c.free_hits);
        self.refused_foreign = self.refused_foreign.wrapping_add(c.refused_foreign);
        self.refused_misaligned = self.refused_misaligned.wrapping_add(c.refused_misaligned);
        self.refused_double = self.refused_double.wrapping_add(c.refused_double);
        self
    }
}
