// SPDX-License-Identifier: GPL-2.0

//! Time stamps of the benchmarks: `ktime_get_mono_fast_ns()` and the TSC,
//! and the empty loop whose time userspace subtracts.

use core::hint::black_box;
use kernel::bindings;

/// A time stamp: (nanoseconds, TSC cycles).
#[derive(Clone, Copy)]
pub(crate) struct Stamp(u64, u64);

impl Stamp {
    /// Now.
    #[inline(always)]
    pub(crate) fn now() -> Self {
        // SAFETY: FFI call, NMI-safe and lock-free, callable from any context.
        let ns = unsafe { bindings::ktime_get_mono_fast_ns() };
        Self(ns, cycles())
    }

    /// (ns, cycles) from `self` to `later`.
    pub(crate) fn to(self, later: Self) -> (u64, u64) {
        (later.0.wrapping_sub(self.0), later.1.wrapping_sub(self.1))
    }
}

/// The TSC (0 where there is none).
#[inline(always)]
fn cycles() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `rdtsc` only reads the time stamp counter; every x86-64
        // CPU has one and the kernel does not disable it for itself.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// The empty loop of `iters` iterations: the baseline.
pub(crate) fn time_empty(iters: u64) -> (u64, u64) {
    let t0 = Stamp::now();
    for i in 0..iters {
        black_box(i);
    }
    t0.to(Stamp::now())
}
