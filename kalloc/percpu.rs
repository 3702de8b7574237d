// SPDX-License-Identifier: GPL-2.0

//! Per-CPU slots: the stand-in for a per-CPU variable (LDD3 chapter 8,
//! "Per-CPU Variables"; `DEFINE_PER_CPU` + `get_cpu_var`) that our caches'
//! magazines live in.
//!
//! There is no per-CPU abstraction in the 7.3 kernel crate, so a cache keeps
//! an array of `nr_cpu_ids` slots indexed by the CPU id. A slot is taken
//! the way `get_cpu_var()` does it, plus a *try*-flag for interrupts:
//!
//! * **x86-64** (the fast path): preemption off by one `inc` of this CPU's
//!   `__preempt_count` and the id by one `mov` from `cpu_number`, both
//!   `gs:`-relative inline `asm!` on the per-CPU symbols x86 exports to
//!   modules (`arch/x86/kernel/cpu/common.c`, `setup_percpu.c`): what
//!   `preempt_disable()` and `raw_smp_processor_id()` compile to in C, with
//!   no call. With preemption off the task cannot migrate, so the slot's
//!   flag is only ever touched by its own CPU: a plain load and store (no
//!   `lock` prefix), ordered against interrupts on this CPU by compiler
//!   fences. An interrupt landing on a held slot (the lab's `irq_work`)
//!   sees the flag and takes the slow path; interrupts nest, so one that
//!   finds the flag clear finishes before the code it interrupted goes on.
//!   The release is a `dec` of the preempt count and, if that reached zero
//!   (a reschedule is due: x86 keeps `PREEMPT_NEED_RESCHED` inverted in the
//!   same word), a call of `preempt_schedule()`, as `preempt_enable()` does.
//! * **Other architectures** (the portable path, built, not measured): the
//!   id from `CpuId::current()` and the flag taken with one `cmpxchg`, the
//!   idea of `local_trylock()`; a task may migrate while holding a slot,
//!   which then only costs locality.
//!
//! Either way the fast path never waits. Another CPU's slot is only ever
//! visited *on that CPU*: [`CpuSlot::visit`] runs the visitor there in a
//! kworker bound to it (`smp_call_on_cpu()`), with preemption off, so no
//! holder can be half-way (holders run with preemption off too); a held
//! flag there would be a holder's bug, and the visit is then retried after
//! a short sleep (on the portable path, a task that migrated while holding
//! it). Not an IPI: the visitor takes the depot's `spinlock_t`, which hard
//! interrupt context may not (lockdep's wait-context check; a sleeping lock
//! on PREEMPT_RT). An offline CPU runs nothing, so its slot is visited from
//! here, with CPU hotplug held off (`cpus_read_lock()`).

use core::cell::UnsafeCell;
use core::ops::{
    Deref,
    DerefMut, //
};
use core::sync::atomic::{
    compiler_fence,
    AtomicBool,
    AtomicU32,
    Ordering, //
};
use kernel::ffi::{
    c_int,
    c_void, //
};
use kernel::{
    bindings,
    task::might_sleep,
    time::{
        delay::fsleep,
        Delta, //
    }, //
};

/// The architecture's CPU pinning and CPU id.
#[cfg(all(CONFIG_X86_64, CONFIG_SMP))]
mod arch {
    use core::arch::asm;

    extern "C" {
        /// This CPU's id (`DEFINE_PER_CPU_CACHE_HOT(int, cpu_number)`).
        static cpu_number: i32;
        /// The preempt count, `PREEMPT_NEED_RESCHED` inverted in its MSB.
        static __preempt_count: usize;
    }

    /// Whether [`super::CpuSlot`]'s flag is this-CPU-only (plain ops).
    pub(super) const PINNED: bool = true;

    /// `preempt_disable()`: one `inc` of this CPU's preempt count (which
    /// is also a compiler barrier: the asm may touch memory).
    #[inline(always)]
    pub(super) fn pin() {
        // SAFETY: `__preempt_count` is this CPU's per-CPU preempt count,
        // exported to modules; `gs:` plus the symbol's RIP-relative address
        // is this CPU's copy (PER_CPU_VAR in asm/percpu.h). Incrementing
        // it is `preempt_disable()`; `unpin` undoes it.
        unsafe {
            #[cfg(CONFIG_HAS_SEPARATE_PREEMPT_RESCHED_BITS)]
            asm!("inc qword ptr gs:[rip + {pc}]", pc = sym __preempt_count, options(nostack));
            #[cfg(not(CONFIG_HAS_SEPARATE_PREEMPT_RESCHED_BITS))]
            asm!("inc dword ptr gs:[rip + {pc}]", pc = sym __preempt_count, options(nostack));
        }
    }

    /// `preempt_enable()`: `dec`, and `preempt_schedule()` if that reached
    /// zero (count zero and a reschedule pending): `asm goto` straight to
    /// the call, as `__preempt_count_dec_and_test()` does.
    #[inline(always)]
    pub(super) fn unpin() {
        // SAFETY: As in `pin`, which this pairs with.
        unsafe {
            #[cfg(CONFIG_HAS_SEPARATE_PREEMPT_RESCHED_BITS)]
            asm!(
                "dec qword ptr gs:[rip + {pc}]",
                "jz {resched}",
                pc = sym __preempt_count,
                resched = label { resched() },
                options(nostack),
            );
            #[cfg(not(CONFIG_HAS_SEPARATE_PREEMPT_RESCHED_BITS))]
            asm!(
                "dec dword ptr gs:[rip + {pc}]",
                "jz {resched}",
                pc = sym __preempt_count,
                resched = label { resched() },
                options(nostack),
            );
        }
    }

    #[cold]
    #[inline(never)]
    fn resched() {
        #[cfg(CONFIG_PREEMPTION)]
        // SAFETY: What `preempt_enable()` calls when the count reaches zero;
        // it checks `preemptible()` itself (interrupts off: it returns).
        unsafe {
            kernel::bindings::preempt_schedule()
        };
    }

    /// This CPU's id: one `mov` from `cpu_number`.
    #[inline(always)]
    pub(super) fn cpu() -> usize {
        // A 32-bit `mov` zeroes the upper half: no extension needed.
        let id: u64;
        // SAFETY: As in `pin`, for the exported `cpu_number`; a read only.
        unsafe {
            asm!(
                "mov {id:e}, dword ptr gs:[rip + {cn}]",
                cn = sym cpu_number,
                id = out(reg) id,
                options(nostack, preserves_flags, readonly),
            )
        };
        id as usize
    }
}

/// The portable path: no pinning, `CpuId::current()`, a `cmpxchg` flag.
#[cfg(not(all(CONFIG_X86_64, CONFIG_SMP)))]
mod arch {
    pub(super) const PINNED: bool = false;

    #[inline(always)]
    pub(super) fn pin() {}

    #[inline(always)]
    pub(super) fn unpin() {}

    #[inline(always)]
    pub(super) fn cpu() -> usize {
        kernel::cpu::CpuId::current().as_u32() as usize
    }
}

/// One CPU's value (a cache's magazine) and the flag that makes it exclusive.
///
/// Aligned to a cache line so that two CPUs' slots never share one.
///
/// # Invariants
///
/// `value` is only accessed through a [`SlotGuard`], and at most one exists
/// at a time: it is created only by switching `held` from false to true
/// (with [`arch::PINNED`], on the slot's own CPU with preemption off, or
/// from a kworker bound to that CPU with preemption off, or for an offline
/// CPU with hotplug held off;
/// otherwise by an atomic `cmpxchg`) and sets it back to false when dropped.
#[repr(align(64))]
pub(crate) struct CpuSlot<T: Counted> {
    held: AtomicBool,
    /// `value.count()` as its last guard left it: readable from any CPU
    /// without the guard (our shrinker's `count_objects`, which must not
    /// visit a CPU from reclaim).
    published: AtomicU32,
    value: UnsafeCell<T>,
}

/// A slot value that says how many objects it holds.
pub(crate) trait Counted {
    /// Objects held (a magazine's length).
    fn count(&self) -> u32;
}

// SAFETY: `value` is only reached through the one `SlotGuard` that may exist
// at a time (type invariant), and `T: Send` may be used from any thread.
unsafe impl<T: Send + Counted> Sync for CpuSlot<T> {}

/// Takes `slot`'s flag if clear; for the caller's CPU's slot (pinned path).
#[inline(always)]
fn take_flag<T: Counted>(slot: &CpuSlot<T>) -> bool {
    if arch::PINNED {
        // Only this CPU touches the flag (type invariant): an interrupt
        // between the load and the store finishes before we go on, and
        // leaves it as it found it.
        if slot.held.load(Ordering::Relaxed) {
            return false;
        }
        slot.held.store(true, Ordering::Relaxed);
        // The magazine is touched only after the flag is up, as an
        // interrupt on this CPU sees it.
        compiler_fence(Ordering::SeqCst);
        true
    } else {
        // Acquire pairs with the Release in `SlotGuard::drop`.
        slot.held
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }
}

impl<T: Counted> CpuSlot<T> {
    /// A free slot holding `value`.
    pub(crate) fn new(value: T) -> Self {
        Self {
            held: AtomicBool::new(false),
            published: AtomicU32::new(value.count()),
            value: UnsafeCell::new(value),
        }
    }

    /// What the slot's value held when its last guard was dropped: a
    /// snapshot that may be stale by the time it is read, never torn.
    pub(crate) fn published(&self) -> u32 {
        self.published.load(Ordering::Relaxed)
    }

    /// Visits slot `cpu` of `slots` with `f`, waiting for its holder.
    /// Process context only (it may sleep); `f` runs on CPU `cpu` with
    /// preemption off (a bound kworker), or here for an offline CPU, so it
    /// must not sleep. Returns false if there is no such slot.
    pub(crate) fn visit(slots: &[Self], cpu: usize, f: &mut dyn FnMut(&mut T)) -> bool {
        // Say so even when the slot is free at once: the debug kernel then
        // catches any caller in atomic context, not only an unlucky one.
        might_sleep();
        let Some(slot) = slots.get(cpu) else {
            return false;
        };
        let Ok(cpu_int) = u32::try_from(cpu) else {
            return false;
        };
        let mut ctx = Visit {
            slot,
            f,
            done: false,
        };
        let mut tries = 0u32;
        loop {
            // SAFETY: Holds off CPU hotplug until the matching unlock below;
            // process context (might_sleep above).
            unsafe { bindings::cpus_read_lock() };
            // SAFETY: `visit_here::<T>` matches `ctx`'s type; `ctx` outlives
            // the call, which waits for the function to finish in a kworker
            // bound to `cpu`. Process context (might_sleep above).
            let r = unsafe {
                bindings::smp_call_on_cpu(
                    cpu_int,
                    Some(visit_here::<T>),
                    core::ptr::from_mut(&mut ctx).cast::<c_void>(),
                    false,
                )
            };
            if r != 0 {
                // -ENXIO: `cpu` is offline, and stays so until the unlock:
                // nothing runs there, so its slot is visited from here.
                ctx.run(true);
            }
            // SAFETY: Pairs with the lock above.
            unsafe { bindings::cpus_read_unlock() };
            if ctx.done {
                return true;
            }
            // The holder was interrupted (or, on the portable path, runs
            // elsewhere): let it finish.
            tries = tries.saturating_add(1);
            fsleep(Delta::from_micros(if tries < 10 { 10 } else { 1000 }));
        }
    }

    /// Takes the slot of the current CPU if nobody holds it; never waits.
    /// On x86-64 preemption stays off until the guard is dropped.
    ///
    /// # Safety
    ///
    /// `slots` has an entry for every possible CPU id (`nr_cpu_ids`).
    #[inline(always)]
    pub(crate) unsafe fn try_hold_current(slots: &[Self]) -> Option<SlotGuard<'_, T>> {
        arch::pin();
        let cpu = arch::cpu();
        // SAFETY: A CPU id is below `nr_cpu_ids` (kernel invariant; also a
        // stale one, on the portable path), so in range by the contract.
        let slot = unsafe { slots.get_unchecked(cpu) };
        match take_flag(slot) {
            true => {
                // INVARIANT: We switched `held` from false to true, on this
                // CPU with preemption off (pinned path) or atomically.
                Some(SlotGuard(slot))
            }
            false => {
                arch::unpin();
                None
            }
        }
    }
}

/// A visit in progress: what [`visit_here`] runs.
struct Visit<'a, 'f, T: Counted> {
    slot: &'a CpuSlot<T>,
    f: &'f mut dyn FnMut(&mut T),
    done: bool,
}

impl<T: Counted> Visit<'_, '_, T> {
    /// Runs the visitor if the slot is free; records whether it ran.
    /// `remote`: for an offline CPU, from another one.
    fn run(&mut self, remote: bool) {
        // The guard's drop unpins.
        arch::pin();
        let took = if remote {
            // Nothing runs on an offline CPU, but two visitors may race
            // here: the atomic form, which the (idle) owner's plain
            // accesses do not race with.
            self.slot
                .held
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        } else {
            // On the slot's CPU with preemption off.
            take_flag(self.slot)
        };
        if !took {
            arch::unpin();
            return;
        }
        // INVARIANT: We switched `held` from false to true.
        let mut g = SlotGuard(self.slot);
        (self.f)(&mut g);
        self.done = true;
    }
}

/// The function [`CpuSlot::visit`] runs on the slot's CPU, in a kworker
/// bound to it (`smp_call_on_cpu()`): process context, so the visitor may
/// take the depot's `spinlock_t` (from an IPI, hard interrupt context, it
/// could not: lockdep's wait-context check says so, and on PREEMPT_RT it
/// would sleep). With preemption off (`run` pins) no fast-path holder can
/// be half-way on this CPU: they all run with preemption off themselves.
///
/// # Safety
///
/// `info` points to a live `Visit<'_, '_, T>` nobody else uses meanwhile.
unsafe extern "C" fn visit_here<T: Counted>(info: *mut c_void) -> c_int {
    // SAFETY: Per the function's contract (the caller waits for us).
    let ctx = unsafe { &mut *info.cast::<Visit<'_, '_, T>>() };
    ctx.run(false);
    0
}

/// Exclusive access to one [`CpuSlot`]'s value; on x86-64 preemption is off
/// while it lives.
pub(crate) struct SlotGuard<'a, T: Counted>(&'a CpuSlot<T>);

impl<T: Counted> Deref for SlotGuard<'_, T> {
    type Target = T;

    #[inline(always)]
    fn deref(&self) -> &T {
        // SAFETY: We are the slot's only guard (`CpuSlot` invariant).
        unsafe { &*self.0.value.get() }
    }
}

impl<T: Counted> DerefMut for SlotGuard<'_, T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: We are the slot's only guard (`CpuSlot` invariant).
        unsafe { &mut *self.0.value.get() }
    }
}

impl<T: Counted> Drop for SlotGuard<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: We are the slot's only guard (`CpuSlot` invariant).
        let n = unsafe { &*self.0.value.get() }.count();
        self.0.published.store(n, Ordering::Relaxed);
        if arch::PINNED {
            // Every write to the value is done before the flag drops, as an
            // interrupt on this CPU sees it.
            compiler_fence(Ordering::SeqCst);
            self.0.held.store(false, Ordering::Relaxed);
        } else {
            // The next holder (any CPU) sees our writes.
            self.0.held.store(false, Ordering::Release);
        }
        arch::unpin();
    }
}
