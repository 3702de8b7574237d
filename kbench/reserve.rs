// SPDX-License-Identifier: GPL-2.0

//! The mempools' reserve path, like for like: the pool's backing, a
//! private cache of ours, is emptied (magazines flushed, every free object
//! taken) and its page allocations failed by fault injection, then pairs;
//! every allocation must be a reserve one. The same for our pool and for
//! the kernel's `mempool_create_node()` over such a cache of ours, so both
//! pool layers pay the same real, failing first try (issue 15).

use core::ptr::NonNull;
use kernel::{
    prelude::*,
    types::ScopeGuard, //
};

use super::target::Target;
use super::time_pairs;
use crate::kalloc::pages::PAGES;
use crate::kalloc::pools;
use crate::ratelimit::{
    pr_err_ratelimited,
    pr_info_ratelimited, //
};

/// Objects the reserve benchmark may take out of a pool's cache to empty it.
const MAX_DRAIN: usize = 1 << 16;

/// Reserve allocations of our pool of `size` so far.
fn pool_reserve_allocs(size: u32) -> u64 {
    let mut index = 0;
    let mut total = 0;
    while let Ok(info) = pools::info(index) {
        if info.element_size == u64::from(size) && info.live != 0 {
            total += info.allocs_reserve;
        }
        index += 1;
    }
    total
}

/// Times `n` reserve-path pairs of `t`: our pool of `size`, or the
/// kernel's pool over our cache.
pub(crate) fn time_reserve(t: &Target, size: u32, n: u64) -> Result<(u64, u64)> {
    let (cache, ours) = match t {
        Target::OurPool(pool) => (pool.cache(), true),
        Target::KPool(pool) => (pool.our_cache().ok_or(EINVAL)?, false),
        _ => return Err(EINVAL),
    };
    let owner = cache.owner();
    let mut held: KVVec<NonNull<u8>> = KVVec::with_capacity(MAX_DRAIN, GFP_KERNEL)?;
    let mut held = ScopeGuard::new_with_data(&mut held, |held| {
        PAGES.faults.set(0, false, 0);
        for p in held.drain_all() {
            if cache.free(p).is_err() {
                pr_err_ratelimited!("bench: the pool's cache refused its own object\n");
            }
        }
    });
    // Every free object into the depot, where any CPU can take it.
    cache.shrink();
    PAGES.faults.set(0, true, owner);
    while let Ok(p) = cache.alloc(false) {
        if held.len() >= MAX_DRAIN {
            // Just allocated from `cache`, not used: give it back.
            let _ = cache.free(p);
            return Err(E2BIG);
        }
        held.push(p, GFP_KERNEL)?;
    }
    let before = (pool_reserve_allocs(size), cache.stats().allocs);
    let r = time_pairs(t, n)?;
    let served = cache.stats().allocs.wrapping_sub(before.1);
    let warm = (n / 10).max(1000);
    // The cache served nothing: every allocation came from a reserve.
    if served != 0 {
        pr_info_ratelimited!("bench: the emptied cache served {served} allocations\n");
        return Err(EAGAIN);
    }
    let reserve = pool_reserve_allocs(size).wrapping_sub(before.0);
    if ours && reserve < n + warm {
        pr_info_ratelimited!(
            "bench: only {reserve} of {} allocations came from the reserve\n",
            n + warm
        );
        return Err(EAGAIN);
    }
    Ok(r)
}
