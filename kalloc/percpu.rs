// SPDX-License-Identifier: GPL-2.0

//! Per-CPU slots: the stand-in for a per-CPU variable (LDD3 chapter 8,
//! "Per-CPU Variables"; `DEFINE_PER_CPU` + `get_cpu_var`) that our caches'
//! magazines live in.
//!
//! There is no per-CPU abstraction in the 7.3 kernel crate, so a cache keeps
//! an array of `nr_cpu_ids` slots indexed by `CpuId::current()`. Instead of
//! `get_cpu_var()`'s preempt-off section, a slot is taken with one
//! `cmpxchg` on its flag, the idea of the kernel's `local_trylock()`
//! (include/linux/local_lock.h) that SLUB's sheaves use: the fast path only
//! ever *tries*. If the slot is held (an interrupt landed on top of its
//! holder, the holder was preempted and this task runs on its CPU now, or
//! `shrink`/`stats` is visiting), the caller takes the slow path instead.
//! A stale CPU id after migration costs only locality: the flag keeps the
//! slot exclusive.

use core::cell::UnsafeCell;
use core::ops::{
    Deref,
    DerefMut, //
};
use kernel::{
    processor::cpu_relax,
    sync::atomic::{
        Acquire,
        AtomicFlag,
        Release, //
    },
    task::might_sleep,
    time::{
        delay::fsleep,
        Delta, //
    }, //
};

/// One CPU's value (a cache's magazine) and the flag that makes it exclusive.
///
/// Aligned to a cache line so that two CPUs' slots never share one.
///
/// # Invariants
///
/// `value` is only accessed through a [`SlotGuard`], and at most one exists
/// at a time: it is created only by switching `held` from false to true and
/// sets it back to false when dropped.
#[repr(align(64))]
pub(crate) struct CpuSlot<T> {
    held: AtomicFlag,
    value: UnsafeCell<T>,
}

// SAFETY: `value` is only reached through the one `SlotGuard` that may exist
// at a time (type invariant), and `T: Send` may be used from any thread.
unsafe impl<T: Send> Sync for CpuSlot<T> {}

impl<T> CpuSlot<T> {
    /// A free slot holding `value`.
    pub(crate) fn new(value: T) -> Self {
        Self {
            held: AtomicFlag::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the slot if nobody holds it; never waits.
    #[inline(always)]
    pub(crate) fn try_hold(&self) -> Option<SlotGuard<'_, T>> {
        // Acquire pairs with the Release in `SlotGuard::drop`: the previous
        // holder's writes to the magazine are visible to us.
        self.held.cmpxchg(false, true, Acquire).ok()?;
        // INVARIANT: We switched `held` from false to true.
        Some(SlotGuard(self))
    }

    /// Takes the slot, waiting for its holder. Process context only: the
    /// holder may be a preempted task that needs this CPU to finish.
    pub(crate) fn hold(&self) -> SlotGuard<'_, T> {
        // Say so even when the slot is free at once: the debug kernel then
        // catches any caller in atomic context, not only an unlucky one.
        might_sleep();
        let mut tries = 0u32;
        loop {
            if let Some(g) = self.try_hold() {
                return g;
            }
            tries = tries.saturating_add(1);
            if tries < 100 {
                cpu_relax();
            } else {
                fsleep(Delta::from_micros(10));
            }
        }
    }
}

/// Exclusive access to one [`CpuSlot`]'s value.
pub(crate) struct SlotGuard<'a, T>(&'a CpuSlot<T>);

impl<T> Deref for SlotGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: We are the slot's only guard (`CpuSlot` invariant).
        unsafe { &*self.0.value.get() }
    }
}

impl<T> DerefMut for SlotGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: We are the slot's only guard (`CpuSlot` invariant).
        unsafe { &mut *self.0.value.get() }
    }
}

impl<T> Drop for SlotGuard<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        self.0.held.store(false, Release);
    }
}
