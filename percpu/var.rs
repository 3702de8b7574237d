// SPDX-License-Identifier: GPL-2.0

//! [`PerCpu`]: a per-CPU object made at run time, what C writes as
//! `alloc_percpu(type)` / `free_percpu()` (LDD3: "Per-CPU variables can
//! also be allocated at runtime").
//!
//! The allocator hands back a `__percpu` cookie, not an address: copy `cpu`
//! lives at the cookie plus `__per_cpu_offset[cpu]` (`per_cpu_ptr()`), so
//! the copies are one per-CPU unit apart, each in its own CPU's part of a
//! per-CPU chunk, never two in one cache line. `this_cpu_ptr()` adds the
//! running CPU's offset, which only means anything while the task cannot
//! move to another CPU: [`PerCpu::with_this_cpu`] is `get_cpu_var()` /
//! `put_cpu_var()`.
//!
//! The 7.3 kernel crate has no per-CPU type and `preempt_disable()` is a C
//! macro it cannot call; [`PerCpu::with_this_cpu`] disables interrupts
//! instead (`local_interrupt_disable()`), which on a preemptible kernel
//! keeps the scheduler off this CPU as well: a superset of preemption off,
//! as `local_irq_save()` around per-CPU data is in C.

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::AtomicU64;
use kernel::{
    bindings,
    interrupt::local_interrupt_disable,
    prelude::*, //
};

/// What a per-CPU object may hold.
///
/// # Safety
///
/// All-zero bytes are a valid value (the per-CPU allocator zeroes every
/// copy), and shared references may be used from any CPU at once (the
/// other CPUs read a copy while its owner updates it: atomics).
pub(crate) unsafe trait PerCpuData: Sync {}

// SAFETY: Zero is a valid AtomicU64; atomics are Sync.
unsafe impl PerCpuData for AtomicU64 {}

/// One `T` per possible CPU.
///
/// # Invariants
///
/// `cookie` is the `__percpu` pointer `pcpu_alloc_noprof()` returned for
/// `size_of::<T>()` bytes aligned to `align_of::<T>()`, owned by this value
/// and freed in [`Drop`]; every possible CPU's copy is initialised (zeroed).
pub(crate) struct PerCpu<T: PerCpuData> {
    cookie: NonNull<T>,
    _t: PhantomData<T>,
}

// SAFETY: The copies are `T: Sync`; the value only owns the allocation,
// which any thread may free.
unsafe impl<T: PerCpuData> Send for PerCpu<T> {}
// SAFETY: Shared access only hands out `&T` (`T: Sync`).
unsafe impl<T: PerCpuData> Sync for PerCpu<T> {}

/// Number of possible CPU ids (`nr_cpu_ids`): every per-CPU object has a
/// copy for each possible CPU, online or not.
pub(crate) fn nr_cpu_ids() -> u32 {
    // SAFETY: `nr_cpu_ids` is set at boot, before modules load, and only
    // read after.
    unsafe { bindings::nr_cpu_ids }
}

/// Whether `cpu` is possible (`cpu_possible(cpu)`).
pub(crate) fn cpu_possible(cpu: u32) -> bool {
    let Ok(c) = i32::try_from(cpu) else {
        return false;
    };
    // SAFETY: `__cpu_possible_mask` is a static mask; `cpumask_test_cpu()`
    // reads one bit of it (bounded by `nr_cpu_ids`, checked first).
    cpu < nr_cpu_ids()
        && unsafe {
            bindings::cpumask_test_cpu(c, core::ptr::addr_of_mut!(bindings::__cpu_possible_mask))
        }
}

/// Whether `cpu` is online now (`cpu_online(cpu)`).
pub(crate) fn cpu_online(cpu: u32) -> bool {
    let Ok(c) = i32::try_from(cpu) else {
        return false;
    };
    // SAFETY: As in `cpu_possible`, on the online mask.
    cpu < nr_cpu_ids()
        && unsafe {
            bindings::cpumask_test_cpu(c, core::ptr::addr_of_mut!(bindings::__cpu_online_mask))
        }
}

/// `__per_cpu_offset[cpu]`: where `cpu`'s copies are, relative to a cookie.
pub(crate) fn cpu_offset(cpu: u32) -> Option<usize> {
    if !cpu_possible(cpu) {
        return None;
    }
    // SAFETY: `__per_cpu_offset` is an array of NR_CPUS entries set up at
    // boot and never changed after; the read is bounds-checked by `get`.
    let offsets = unsafe { &*core::ptr::addr_of!(bindings::__per_cpu_offset) };
    offsets.get(cpu as usize).copied()
}

/// The CPU this task runs on now (`raw_smp_processor_id()`): only a hint
/// unless the task cannot migrate.
pub(crate) fn current_cpu() -> u32 {
    // SAFETY: Reads this CPU's `cpu_number`; always valid to call.
    unsafe { bindings::raw_smp_processor_id() }
}

impl<T: PerCpuData> PerCpu<T> {
    /// `alloc_percpu(T)`, charged to the caller's memory cgroup.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: FFI call; any size and alignment are accepted (NULL on
        // failure, or for an alignment above PAGE_SIZE).
        let p = unsafe {
            bindings::pcpu_alloc_noprof(
                core::mem::size_of::<T>(),
                core::mem::align_of::<T>(),
                false,
                bindings::GFP_KERNEL_ACCOUNT,
            )
        };
        // INVARIANT: A fresh allocation of our size and alignment, zeroed by
        // the per-CPU allocator (mm/percpu.c memsets every unit's copy).
        Ok(Self {
            cookie: NonNull::new(p.cast()).ok_or(ENOMEM)?,
            _t: PhantomData,
        })
    }

    /// The `__percpu` cookie (not an address of any copy).
    pub(crate) fn cookie(&self) -> usize {
        self.cookie.as_ptr() as usize
    }

    /// Copy `cpu` (`per_cpu_ptr(p, cpu)`); None if `cpu` is not possible.
    pub(crate) fn get(&self, cpu: u32) -> Option<&T> {
        let addr = self.cookie().wrapping_add(cpu_offset(cpu)?);
        // SAFETY: `cpu` is possible, so its copy exists at the cookie plus
        // its offset, initialised (type invariant) and alive as long as
        // `self`; `T: Sync` allows shared access from any CPU.
        Some(unsafe { &*(addr as *const T) })
    }

    /// `get_cpu_var()` … `put_cpu_var()`: runs `f` on this CPU's copy
    /// (and this CPU's id) with the task pinned to the CPU, so nothing else
    /// can run on it meanwhile: no other task, no interrupt handler.
    pub(crate) fn with_this_cpu<R>(&self, f: impl FnOnce(&T, u32) -> R) -> Option<R> {
        let _irq = local_interrupt_disable();
        let cpu = current_cpu();
        self.get(cpu).map(|copy| f(copy, cpu))
    }
}

impl<T: PerCpuData> Drop for PerCpu<T> {
    fn drop(&mut self) {
        // SAFETY: The cookie came from `pcpu_alloc_noprof()` and is freed
        // once, here (type invariant); no reference to a copy outlives
        // `self`.
        unsafe { bindings::free_percpu(self.cookie.as_ptr().cast()) }
    }
}
