// SPDX-License-Identifier: GPL-2.0

//! The lab's module-wide budgets: one for everyone (`lab_total_mib`, capped
//! at a quarter of RAM at load) and one for all unprivileged callers
//! together (`lab_user_kib`). Each allocation is charged *before* it is
//! made, at the upper bound of its size class, and the charge lives with the
//! allocation ([`Charge`]) until it is freed. The per-file limits of
//! [`super::table`] are a second fence; these make N open files unable to
//! take N times as much.

use core::sync::atomic::{
    AtomicU64,
    Ordering, //
};
use kernel::prelude::*;

use super::Caller;

/// Bytes every lab allocation together may hold.
static TOTAL_LIMIT: AtomicU64 = AtomicU64::new(0);
/// Bytes held now.
static TOTAL_USED: AtomicU64 = AtomicU64::new(0);
/// Bytes unprivileged callers together may hold.
static USER_LIMIT: AtomicU64 = AtomicU64::new(0);
/// Bytes held by unprivileged callers now.
static USER_USED: AtomicU64 = AtomicU64::new(0);

/// Sets the limits from the parameters; the total is capped at a quarter of
/// the machine's RAM, so the default cannot starve a small machine.
pub(crate) fn init(total_mib: u32, user_kib: u32) {
    // SAFETY: `si_meminfo()` fills the `sysinfo` it is given; all-zeroes is a
    // valid one to start from.
    let ram = unsafe {
        let mut info: kernel::bindings::sysinfo = core::mem::zeroed();
        kernel::bindings::si_meminfo(&mut info);
        (info.totalram as u64).saturating_mul(u64::from(info.mem_unit))
    };
    let total = (u64::from(total_mib) << 20).min(ram / 4);
    TOTAL_LIMIT.store(total, Ordering::Relaxed);
    USER_LIMIT.store((u64::from(user_kib) << 10).min(total), Ordering::Relaxed);
}

/// Adds `bytes` to `used` if that stays within `limit`.
fn charge(used: &AtomicU64, limit: &AtomicU64, bytes: u64) -> bool {
    let limit = limit.load(Ordering::Relaxed);
    used.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |u| {
        u.checked_add(bytes).filter(|&n| n <= limit)
    })
    .is_ok()
}

/// Bytes charged to the budgets; given back when dropped.
pub(crate) struct Charge {
    bytes: u64,
    user: bool,
}

impl Charge {
    /// Charges `bytes` for `caller`: ENOSPC past the module-wide budget,
    /// EPERM past the unprivileged one (more needs CAP_SYS_ADMIN).
    pub(crate) fn take(bytes: u64, caller: Caller) -> Result<Self> {
        let user = !caller.privileged;
        if user && !charge(&USER_USED, &USER_LIMIT, bytes) {
            return Err(EPERM);
        }
        if !charge(&TOTAL_USED, &TOTAL_LIMIT, bytes) {
            if user {
                USER_USED.fetch_sub(bytes, Ordering::AcqRel);
            }
            return Err(ENOSPC);
        }
        Ok(Self { bytes, user })
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        TOTAL_USED.fetch_sub(self.bytes, Ordering::AcqRel);
        if self.user {
            USER_USED.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}
