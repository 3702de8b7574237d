// SPDX-License-Identifier: GPL-2.0

//! KUnit tests of the allocator core, run inside the kernel at insmod when
//! the tree has CONFIG_KUNIT (the test kernel does). They are the core's
//! unit tests in kernel form: the same slab order rules, and a cache and a
//! mempool on the real page allocator with the real locks and per-CPU slots
//! of [`crate::kalloc::caches`] and [`crate::kalloc::pools`]. KTAP goes to the kernel log;
//! `make test` counts it.

#[kernel::macros::kunit_tests(ldd_alloc_core)]
mod tests {
    use core::ptr::NonNull;
    use kernel::prelude::*;

    use crate::allocator::{
        CacheConfig,
        CacheFlags,
        CacheLayout,
        CacheName,
        FreeError, //
    };

    /// Objects per slab and order for the sizes of the closing note's table
    /// (SLUB's calc_slab_order rule: leftover at most 1/16 of the slab).
    #[test]
    fn slab_orders() {
        for (size, objects, order) in [
            (32, 126, 0),
            (64, 63, 0),
            (192, 21, 0),
            (256, 15, 0),
            (1000, 8, 1),
            (4000, 8, 3),
            (8192, 3, 3),
        ] {
            let cfg = CacheConfig {
                name: CacheName::new(b"kunit"),
                size,
                align: 0,
                flags: CacheFlags::default(),
                ctor: None,
            };
            let layout = CacheLayout::new(&cfg);
            assert!(layout.is_ok());
            if let Ok(l) = layout {
                assert_eq!(l.objects() as usize, objects);
                assert_eq!(l.order(), order);
            }
        }
    }

    /// Objects are distinct, inside their slab and aligned; bad frees are
    /// refused; everything returns to the page allocator on shrink.
    #[test]
    fn cache_on_real_pages() -> Result {
        // An object size no other user of the module asks for.
        let cache = crate::kalloc::caches::get(24, 0)?;
        let mut objs = KVec::with_capacity(1000, GFP_KERNEL)?;
        for _ in 0..1000 {
            objs.push(cache.alloc(true)?.as_ptr() as usize, GFP_KERNEL)?;
        }
        let mut sorted = KVec::with_capacity(objs.len(), GFP_KERNEL)?;
        sorted.extend_from_slice(&objs, GFP_KERNEL)?;
        sorted.sort_unstable();
        assert!(sorted.windows(2).all(|w| w[1] - w[0] >= 24));
        assert!(objs.iter().all(|p| p % 8 == 0));
        let first = NonNull::new(objs[0] as *mut u8).ok_or(EINVAL)?;
        let inside = NonNull::new((objs[0] + 4) as *mut u8).ok_or(EINVAL)?;
        assert_eq!(cache.free(inside), Err(FreeError::Misaligned));
        for p in objs.iter() {
            let p = NonNull::new(*p as *mut u8).ok_or(EINVAL)?;
            assert!(cache.free(p).is_ok());
        }
        assert_eq!(cache.free(first), Err(FreeError::DoubleFree));
        let s = cache.stats();
        assert_eq!(s.active_objs, s.cached_objs);
        assert!(cache.shrink() > 0);
        assert_eq!(cache.stats().num_objs, 0);
        Ok(())
    }

    /// A mempool keeps `min_nr` elements in reserve and serves atomic
    /// allocations from it when its backing cache cannot: the cache is
    /// emptied and its page allocations failed by fault injection, then
    /// exactly `min_nr` allocations succeed, each from the reserve, the next
    /// one fails, and the frees refill the reserve.
    #[test]
    fn mempool_reserve() -> Result {
        use crate::kalloc::pages::PAGES;
        let pool = crate::kalloc::pools::get(24)?;
        let index = (0..16)
            .find(|&i| crate::kalloc::pools::info(i).is_ok_and(|p| p.element_size == 24))
            .ok_or(ENOENT)?;
        let before = crate::kalloc::pools::info(index)?;
        assert_eq!(before.curr_nr, before.min_nr);
        let cache = pool.cache();
        cache.shrink();
        PAGES.faults.set(0, true, cache.owner());
        let mut drained = KVec::new();
        while let Ok(p) = cache.alloc(false) {
            drained.push(p, GFP_KERNEL)?;
        }
        let mut taken = KVec::new();
        while let Ok(p) = pool.alloc(false) {
            taken.push(p, GFP_KERNEL)?;
            if taken.len() as u64 > before.min_nr {
                break;
            }
        }
        PAGES.faults.set(0, false, 0);
        let during = crate::kalloc::pools::info(index)?;
        assert_eq!(taken.len() as u64, before.min_nr);
        assert_eq!(during.curr_nr, 0);
        assert_eq!(during.allocs_reserve - before.allocs_reserve, before.min_nr);
        assert!(during.failures > before.failures);
        for p in taken.iter() {
            // SAFETY: Each came from this pool's `alloc`, once.
            unsafe { pool.free(*p) };
        }
        for p in drained.iter() {
            assert!(cache.free(*p).is_ok());
        }
        let after = crate::kalloc::pools::info(index)?;
        assert_eq!(after.curr_nr, after.min_nr);
        assert_eq!(after.outstanding, 0);
        Ok(())
    }
}
