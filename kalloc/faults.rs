// SPDX-License-Identifier: GPL-2.0

//! Deterministic fault injection for our page source (LDD3's advice to test
//! the failure paths, made reproducible): the kernel's own fail_page_alloc
//! and failslab are random and need a debug kernel; this one fails exactly
//! the next N page allocations of our caches, or all of them, optionally of
//! one cache only. Driven by `LDD_IOC_FAULT` (root only) and the debugfs
//! `fault` file.

use core::sync::atomic::{
    AtomicBool,
    AtomicI64,
    AtomicU32,
    AtomicU64,
    Ordering, //
};

/// Deterministic failure of our page allocations (LDD3's advice to test the
/// failure paths, made reproducible; the kernel's fail_page_alloc is random).
pub(crate) struct FaultInjection {
    /// Fail this many more allocations (counting down).
    fail_next: AtomicI64,
    /// Fail every allocation while set.
    fail_all: AtomicBool,
    /// Only allocations for this owner fail (0: any owner).
    only_owner: AtomicU32,
    /// Allocations failed on purpose.
    injected: AtomicU64,
}

impl FaultInjection {
    /// An injector that fails nothing.
    pub(crate) const fn new() -> Self {
        Self {
            fail_next: AtomicI64::new(0),
            fail_all: AtomicBool::new(false),
            only_owner: AtomicU32::new(0),
            injected: AtomicU64::new(0),
        }
    }

    /// Arms the injector: fail the next `next` allocations, or all while
    /// `all`, for `owner` only if not 0.
    pub(crate) fn set(&self, next: i64, all: bool, owner: u32) {
        self.only_owner.store(owner, Ordering::Relaxed);
        self.fail_next.store(next.max(0), Ordering::Relaxed);
        self.fail_all.store(all, Ordering::Release);
    }

    /// (pending next-failures, fail-all, owner, injected so far).
    pub(crate) fn state(&self) -> (i64, bool, u32, u64) {
        (
            self.fail_next.load(Ordering::Relaxed),
            self.fail_all.load(Ordering::Relaxed),
            self.only_owner.load(Ordering::Relaxed),
            self.injected.load(Ordering::Relaxed),
        )
    }

    /// Whether an allocation for `owner` must fail now (and counts it).
    pub(crate) fn should_fail(&self, owner: u32) -> bool {
        let only = self.only_owner.load(Ordering::Relaxed);
        if only != 0 && only != owner {
            return false;
        }
        let fail = self.fail_all.load(Ordering::Acquire)
            || self
                .fail_next
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                    (n > 0).then(|| n - 1)
                })
                .is_ok();
        if fail {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        fail
    }
}
