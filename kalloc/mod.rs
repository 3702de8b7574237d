// SPDX-License-Identifier: GPL-2.0

//! The kernel side of our allocator: the [`crate::allocator`] core given
//! the kernel's page allocator, locks and per-CPU slots; the host kernel's
//! own allocators beside it, as the baselines and backends of the lab.
//!
//! | room | what it holds |
//! |------|---------------|
//! | [`kernel_alloc`] | the host's kmalloc/vmalloc/page allocator entry points |
//! | [`faults`] | deterministic fault injection of our page source |
//! | [`pages`] | our page source: host pages, counted per zone |
//! | [`gfp`] | our ABI's flag bits and our page requests as `gfp_t` |
//! | [`percpu`] | per-CPU slots taken by a try-lock |
//! | [`registry`] | bounded registries of shared caches and pools |
//! | [`caches`] | our lookaside caches |
//! | [`pools`] | our mempools |
//! | [`shrinker`] | reclaim's way into our caches (kswapd, direct reclaim) |
//! | [`kernel_caches`] | SLUB's `kmem_cache`, the baseline |
//! | [`kernel_pools`] | the kernel's mempool, the baseline |
//! | [`contig`] | large buffers: `alloc_pages_exact`, `alloc_contig_pages` |
//! | [`cma`] | the CMA reservation through the DMA API of a faux device |
//! | [`bad_free`] | the refused-free demonstrations |
//! | [`control`] | the ioctls of this side |
//!
//! Nothing here reaches the scull store, the lab or the benchmarks.

pub(crate) mod bad_free;
pub(crate) mod caches;
pub(crate) mod cma;
pub(crate) mod contig;
pub(crate) mod control;
pub(crate) mod faults;
pub(crate) mod gfp;
pub(crate) mod kernel_alloc;
pub(crate) mod kernel_caches;
pub(crate) mod kernel_pools;
pub(crate) mod pages;
pub(crate) mod percpu;
pub(crate) mod pools;
pub(crate) mod registry;
pub(crate) mod shrinker;

/// The allocator side, torn down when dropped: the shrinker first, pools
/// before the caches they use, then our caches, whose page source must then
/// be empty; the CMA device last.
pub(crate) struct Allocators {
    _cma: cma::CmaDevice,
}

impl Allocators {
    /// Sets up every registry (module init, before any user); the value
    /// tears them down again.
    pub(crate) fn new(cache_debug: u32, pool_min_nr: usize) -> Self {
        caches::init(cache_debug);
        pools::init(pool_min_nr);
        kernel_caches::init();
        kernel_pools::init(pool_min_nr);
        bad_free::init();
        shrinker::register();
        Self {
            _cma: cma::CmaDevice::new(),
        }
    }
}

impl Drop for Allocators {
    fn drop(&mut self) {
        // First: no reclaim may reach a cache being destroyed.
        shrinker::unregister();
        kernel_pools::exit();
        kernel_caches::exit();
        pools::exit();
        caches::exit();
    }
}
