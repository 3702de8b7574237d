// SPDX-License-Identifier: GPL-2.0

//! Per-CPU variables (LDD3 chapter 8, "Per-CPU Variables"): memory with one
//! copy per possible CPU, made at run time with `alloc_percpu()`, that each
//! CPU updates without a lock because no other CPU writes its copy.
//!
//! | room | what it holds |
//! |------|---------------|
//! | [`var`] | [`var::PerCpu`]: `__alloc_percpu()`, `per_cpu_ptr()`, `get_cpu_var()` |
//! | [`stats`] | the per-CPU counters of a scull device's reads and writes |
//! | [`race`] | what goes wrong when the update runs with preemption on |
//!
//! The ioctls ([`ioctl`]) read a device's counters, copy by copy, and run
//! the race on a counter of the open file's own.
//!
//! `kalloc/percpu.rs` is another thing: the slots our caches' magazines
//! live in, an array indexed by CPU id and taken with a try-lock.

pub(crate) mod race;
pub(crate) mod stats;
pub(crate) mod var;

use kernel::prelude::*;

use crate::uaccess::IoctlArg;
use crate::uapi;

/// The per-CPU state of an open file: its race counter, made at first use.
pub(crate) type FileState = race::RaceSlot;

/// One of the per-CPU ioctls; ENOTTY for any other number. `privileged`:
/// the caller has CAP_SYS_ADMIN (and may see kernel addresses).
pub(crate) fn ioctl(
    dev: &stats::DevStats,
    file: &FileState,
    cmd: u32,
    arg: IoctlArg,
    privileged: bool,
) -> Result<isize> {
    match cmd {
        uapi::LDD_IOC_PERCPU_INFO => dev.info(arg, privileged)?,
        uapi::LDD_IOC_PERCPU_RACE => file.run(arg)?,
        uapi::LDD_IOC_PERCPU_RACE_READ => file.read(arg)?,
        uapi::LDD_IOC_PERCPU_RACE_RESET => file.reset()?,
        _ => return Err(ENOTTY),
    }
    Ok(0)
}
