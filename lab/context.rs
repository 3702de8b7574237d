// SPDX-License-Identifier: GPL-2.0

//! Running an allocation in the context a driver would be in: process
//! context (may sleep), atomic context (under a spinlock, preemption off), or
//! hard interrupt context (an `irq_work` raised on this CPU: its handler runs
//! from the self-IPI with interrupts off).
//!
//! LDD3 and Love make one rule of it: `GFP_KERNEL` may sleep, so it is for
//! process context only; atomic and interrupt code must use `GFP_ATOMIC` (or
//! `GFP_NOWAIT`). The lab refuses a sleeping allocation in an atomic context
//! with EINVAL before allocating anything, so the rule is taught without a
//! "sleeping function called from invalid context" splat.
//!
//! The `irq_work` is a plain one, not `IRQ_WORK_HARD_IRQ`: on PREEMPT_RT
//! plain irq_works run in a kthread, and that is the only place such a
//! kernel lets them allocate, since the slab allocators' locks sleep there
//! (lockdep's "Invalid wait context" says so for a hard one, on the debug
//! kernel). So on RT the "hardirq" context is an irq_work thread, not the
//! IPI: the one difference from the 2.6 texts that cannot be hidden.

use core::cell::UnsafeCell;
use kernel::{
    bindings,
    prelude::*,
    sync::global_lock,
    types::Opaque, //
};

use crate::uapi::{
    alloc_flags,
    context, //
};

global_lock! {
    // SAFETY: Initialized in `init()` before any use.
    unsafe(uninit) static ATOMIC_SECTION: SpinLock<()> = ();
}

/// Sets up the lock of the atomic context.
pub(crate) fn init() {
    // SAFETY: Called once at module init before any other use.
    unsafe { ATOMIC_SECTION.init() };
}

/// An `irq_work` carrying one job and its result.
#[repr(C)]
struct IrqJob<F, R> {
    work: Opaque<bindings::irq_work>,
    job: UnsafeCell<Option<F>>,
    result: UnsafeCell<Option<R>>,
}

impl<F: FnOnce() -> R, R> IrqJob<F, R> {
    /// The `irq_work` handler: runs in hard interrupt context.
    ///
    /// # Safety
    ///
    /// `work` is the `work` field of a live `IrqJob<F, R>` whose owner waits
    /// in `irq_work_sync()` and touches neither `job` nor `result` meanwhile.
    unsafe extern "C" fn run(work: *mut bindings::irq_work) {
        // SAFETY: `work` is the first field of a `#[repr(C)]` `IrqJob`.
        let this = unsafe { &*work.cast::<Self>() };
        // SAFETY: Exclusive access while the owner waits (function contract).
        let (job, result) = unsafe { (&mut *this.job.get(), &mut *this.result.get()) };
        if let Some(f) = job.take() {
            *result = Some(f());
        }
    }
}

/// Runs `f` in context `ctx` ([`context`]) and returns its result.
pub(crate) fn run_in<R, F: FnOnce() -> R>(ctx: u32, f: F) -> Result<R> {
    match ctx {
        context::PROCESS => Ok(f()),
        context::ATOMIC => {
            let _guard = ATOMIC_SECTION.lock();
            Ok(f())
        }
        context::HARDIRQ => {
            let job = IrqJob {
                work: Opaque::uninit(),
                job: UnsafeCell::new(Some(f)),
                result: UnsafeCell::new(None),
            };
            // SAFETY: An all-zeroes irq_work with `func` set is what
            // `init_irq_work()` (IRQ_WORK_INIT) produces: flags 0, a NULL
            // rcuwait task (include/linux/irq_work.h).
            unsafe {
                let raw = job.work.get();
                raw.write(core::mem::zeroed());
                (*raw).func = Some(IrqJob::<F, R>::run);
                // Queue on this CPU, then wait until the handler has run: the
                // job lives on this stack, so it must not return before.
                bindings::irq_work_queue(raw);
                bindings::irq_work_sync(raw);
            }
            job.result.into_inner().ok_or(EIO)
        }
        _ => Err(EINVAL),
    }
}

/// A `memalloc_noio_save()` / `memalloc_nofs_save()` scope of the current
/// task (include/linux/sched/mm.h): while it lives, every allocation of the
/// task behaves as GFP_NOIO (no swap-out, no block I/O in reclaim) or
/// GFP_NOFS (no filesystem callbacks), whatever flags it names. Since 4.12
/// the kernel's recommended way to mark a critical section, instead of
/// passing GFP_NOIO down every call (Documentation/core-api/gfp_mask-from-fs-io.rst).
///
/// # Invariants
///
/// `added` holds the `PF_MEMALLOC_*` bits this scope set in the flags of the
/// task that created it, which the scope never leaves (it is not `Send`).
pub(crate) struct MemallocScope {
    added: u32,
    _not_send: core::marker::PhantomData<*mut ()>,
}

impl MemallocScope {
    /// Enters the scopes that `flags` ([`alloc_flags`]) ask for (none: a no-op).
    pub(crate) fn enter(flags: u32) -> Self {
        let mut pf = 0;
        if flags & alloc_flags::SCOPE_NOIO != 0 {
            pf |= bindings::PF_MEMALLOC_NOIO;
        }
        if flags & alloc_flags::SCOPE_NOFS != 0 {
            pf |= bindings::PF_MEMALLOC_NOFS;
        }
        let mut added = 0;
        if pf != 0 {
            let task = kernel::current!().as_ptr();
            // SAFETY: `current` is a live task while it runs; a task's
            // `flags` are written only by the task itself, which is what
            // `memalloc_flags_save()` relies on for its plain
            // read-modify-write too.
            unsafe {
                added = !(*task).flags & pf;
                (*task).flags |= pf;
            }
        }
        // INVARIANT: `added` are the bits set just now, on this task.
        Self {
            added,
            _not_send: core::marker::PhantomData,
        }
    }
}

impl Drop for MemallocScope {
    fn drop(&mut self) {
        if self.added != 0 {
            let task = kernel::current!().as_ptr();
            // SAFETY: As in `enter`: the same task (the scope is not `Send`),
            // clearing only the bits it set (`memalloc_flags_restore()`).
            unsafe { (*task).flags &= !self.added };
        }
    }
}
