// SPDX-License-Identifier: GPL-2.0

//! The allocator core of `ldd_alloc`: lookaside caches and mempools.
//!
//! LDD3 chapter 8 ("Allocating Memory") presents `kmalloc`, lookaside caches
//! (`kmem_cache_*`), memory pools (`mempool_*`) and the page allocator
//! (`__get_free_pages`). This core re-implements the middle two over the
//! host kernel's page allocator, in the shape of today's SLUB:
//!
//! * [`page_source`]: the page allocator interface the glue implements.
//! * [`order`]: how many pages per slab (`calculate_order()`).
//! * [`layout`]: object slots, alignment, red zones (`calculate_sizes()`).
//! * [`slab`]: the on-slab header, free list and allocation bitmap; the
//!   only place that touches raw slab memory.
//! * [`depot`]: partial/full/empty slab lists under one lock
//!   (`kmem_cache_node`).
//! * [`magazine`]: per-CPU object stacks (Bonwick's magazines, SLUB
//!   sheaves).
//! * [`debug`]: poisoning and red zones (`slub_debug=PZ`).
//! * [`error`]: why an allocation, a free or a destroy was refused.
//! * [`cache`]: alloc/free/shrink/destroy, generic over [`CacheEnv`].
//! * [`stats`]: `/proc/slabinfo` numbers.
//! * [`mempool`]: `mm/mempool.c` over any backing allocator.
//!
//! The same files are compiled into the kernel module and into the
//! userspace test crate, so they use `core` only: no heap (metadata lives
//! in the slabs themselves), no panics, no logging (errors are typed,
//! events are counted; the glue logs). Concurrency is the environment's:
//! the core is written against [`CacheEnv`] and [`mempool::PoolEnv`],
//! which provide locks and per-CPU slots.

// Each crate including the core uses a different subset of it.
#![allow(dead_code)]
// The kernel's own lint set, enforced in userspace builds too.
#![warn(
    missing_docs,
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks
)]

pub mod cache;
pub mod debug;
pub mod depot;
pub mod error;
pub mod layout;
pub mod magazine;
pub mod mempool;
pub mod order;
pub mod page_source;
pub mod slab;
pub mod stats;

pub use cache::{
    alloc,
    alloc_bulk,
    alloc_hit,
    alloc_slow,
    check,
    destroy,
    flush,
    free,
    free_bulk,
    free_hit,
    free_slow,
    freeze,
    shrink,
    stats,
    thaw,
    AllocError,
    CacheEnv,
    DestroyError,
    FreeError, //
};
pub use depot::{
    stash_capacity,
    Depot,
    STASH_BATCHES, //
};
pub use layout::{
    CacheConfig,
    CacheFlags,
    CacheLayout,
    CacheName,
    CreateError, //
};
pub use magazine::{
    Magazine,
    MAG_BATCH,
    MAG_CAPACITY, //
};
pub use page_source::{
    PageRequest,
    PageSource,
    Zone,
    MAX_ORDER,
    PAGE_SHIFT,
    PAGE_SIZE, //
};
pub use stats::CacheStats;
