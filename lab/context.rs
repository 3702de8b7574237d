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

use core::cell::UnsafeCell;
use kernel::{
    bindings,
    prelude::*,
    sync::global_lock,
    types::Opaque, //
};

use crate::uapi::context;

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
            // `init_irq_work()` (IRQ_WORK_INIT) produces: flags 0, no rcuwait.
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
