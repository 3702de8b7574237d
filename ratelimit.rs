// SPDX-License-Identifier: GPL-2.0

//! Rate-limited logging for every line a user can trigger at will, as the
//! kernel's `printk_ratelimited()` (include/linux/ratelimit.h): at most
//! [`BURST`] lines per call site in each [`INTERVAL_NS`], then one line
//! saying how many were suppressed. The kernel crate of 7.3 has no
//! `pr_*_ratelimited!`, and `DEFINE_RATELIMIT_STATE` needs a static raw
//! spinlock Rust cannot initialise, so this is the same policy on atomics.

use core::sync::atomic::{
    AtomicU32,
    AtomicU64,
    Ordering::Relaxed, //
};
use kernel::bindings;

/// `DEFAULT_RATELIMIT_INTERVAL`: 5 s.
pub(crate) const INTERVAL_NS: u64 = 5_000_000_000;
/// `DEFAULT_RATELIMIT_BURST`: 10 lines per interval.
pub(crate) const BURST: u32 = 10;

/// The state of one call site.
pub(crate) struct Ratelimit {
    begin: AtomicU64,
    printed: AtomicU32,
    missed: AtomicU32,
}

impl Ratelimit {
    /// A call site that has printed nothing yet.
    pub(crate) const fn new() -> Self {
        Self {
            begin: AtomicU64::new(0),
            printed: AtomicU32::new(0),
            missed: AtomicU32::new(0),
        }
    }

    /// Whether this call site may print now. Counts what it suppresses and
    /// reports the count when a new interval starts.
    pub(crate) fn allow(&self) -> bool {
        // SAFETY: FFI call; lock-free and callable from any context.
        let now = unsafe { bindings::ktime_get_mono_fast_ns() };
        let begin = self.begin.load(Relaxed);
        if (begin == 0 || now.wrapping_sub(begin) >= INTERVAL_NS)
            && self
                .begin
                .compare_exchange(begin, now.max(1), Relaxed, Relaxed)
                .is_ok()
        {
            let missed = self.missed.swap(0, Relaxed);
            self.printed.store(0, Relaxed);
            if missed != 0 {
                kernel::pr_info!("{missed} log lines suppressed (rate limit)\n");
            }
        }
        if self.printed.load(Relaxed) >= BURST {
            self.missed.fetch_add(1, Relaxed);
            return false;
        }
        self.printed.fetch_add(1, Relaxed);
        true
    }
}

/// `pr_info_ratelimited()`: for anything a user can trigger.
macro_rules! pr_info_ratelimited {
    ($($arg:tt)*) => {{
        static RATELIMIT: $crate::ratelimit::Ratelimit = $crate::ratelimit::Ratelimit::new();
        if RATELIMIT.allow() {
            kernel::pr_info!($($arg)*);
        }
    }};
}

/// `pr_err_ratelimited()`: for a failure that should never happen but that
/// a user could repeat (each one is a bug; the test harness fails on it).
macro_rules! pr_err_ratelimited {
    ($($arg:tt)*) => {{
        static RATELIMIT: $crate::ratelimit::Ratelimit = $crate::ratelimit::Ratelimit::new();
        if RATELIMIT.allow() {
            kernel::pr_err!($($arg)*);
        }
    }};
}

pub(crate) use {
    pr_err_ratelimited,
    pr_info_ratelimited, //
};
