// SPDX-License-Identifier: GPL-2.0

//! Module parameters and the limits they set (LDD3 chapter 2, "Module
//! Parameters"; chapter 3's `scull_quantum`/`scull_qset`).
//!
//! Every parameter is checked at load: a value out of range refuses the
//! load with EINVAL and a line naming the parameter and its range.
//!
//! Like LDD3, `quantum` and `qset` are module-wide values that the scull
//! ioctls read and change; a device picks them up when it is trimmed.
//! `SCULL_IOCRESET` restores the load-time values.

use core::sync::atomic::{
    AtomicU32,
    Ordering::Relaxed, //
};
use kernel::prelude::*;

use crate::uapi;

/// Most devices the module registers.
pub(crate) const MAX_DEVS: u32 = 16;

/// Largest page order of one quantum on the pages backend (8 pages).
pub(crate) const STORE_MAX_ORDER: u32 = 3;

/// Most live lab handles one file may have: a handle keeps its slot in
/// 16 bits (slot + 1, so 0 never names a slot).
pub(crate) const LAB_MAX_HANDLES: u32 = 0xffff;

/// The parameters of this load, checked.
pub(crate) struct Params {
    /// Number of scull devices.
    pub(crate) nr_devs: u32,
    /// Load-time quantum.
    pub(crate) quantum: u32,
    /// Load-time qset.
    pub(crate) qset: u32,
    /// Page order of the pages backend.
    pub(crate) order: u32,
    /// Largest device size in MiB.
    pub(crate) max_mib: u32,
    /// slub_debug-like flags of our caches (1 poison, 2 red zones).
    pub(crate) cache_debug: u32,
    /// Reserve of each new mempool.
    pub(crate) pool_min_nr: u32,
    /// Live lab handles per open file.
    pub(crate) lab_max_handles: u32,
    /// Lab MiB per open file, and the largest BIG allocation.
    pub(crate) lab_max_mib: u32,
    /// Lab MiB of all files together.
    pub(crate) lab_total_mib: u32,
    /// Lab KiB of all unprivileged callers together.
    pub(crate) lab_user_kib: u32,
}

/// Checks one parameter, logging what is wrong with it.
fn param_in(name: &str, value: u32, min: u32, max: u32) -> Result<u32> {
    if value < min || value > max {
        pr_warn!("{name}={value} is out of range {min}..={max}\n");
        return Err(EINVAL);
    }
    Ok(value)
}

impl Params {
    /// Reads and checks every parameter.
    pub(crate) fn read() -> Result<Self> {
        use crate::module_parameters as p;
        Ok(Self {
            nr_devs: param_in("nr_devs", p::nr_devs.value(), 1, MAX_DEVS)?,
            quantum: param_in("quantum", p::quantum.value(), 1, uapi::QUANTUM_MAX)?,
            qset: param_in("qset", p::qset.value(), 1, uapi::QSET_MAX)?,
            order: param_in("order", p::order.value(), 0, STORE_MAX_ORDER)?,
            max_mib: param_in("max_mib", p::max_mib.value(), 1, 4096)?,
            cache_debug: param_in("cache_debug", p::cache_debug.value(), 0, 3)?,
            pool_min_nr: param_in(
                "pool_min_nr",
                p::pool_min_nr.value(),
                1,
                uapi::POOL_MAX_MIN_NR,
            )?,
            lab_max_handles: param_in(
                "lab_max_handles",
                p::lab_max_handles.value(),
                1,
                LAB_MAX_HANDLES,
            )?,
            lab_max_mib: param_in("lab_max_mib", p::lab_max_mib.value(), 1, 4096)?,
            lab_total_mib: param_in("lab_total_mib", p::lab_total_mib.value(), 1, 65536)?,
            lab_user_kib: param_in("lab_user_kib", p::lab_user_kib.value(), 0, 1 << 20)?,
        })
    }
}

/// Module-wide quantum and qset (LDD3's `scull_quantum`/`scull_qset`),
/// with the load-time values that `SCULL_IOCRESET` restores, and the other
/// per-device limits.
pub(crate) struct Geometry {
    quantum: AtomicU32,
    qset: AtomicU32,
    default_quantum: AtomicU32,
    default_qset: AtomicU32,
    order: AtomicU32,
    max_mib: AtomicU32,
}

/// The one geometry of the module, set from the parameters at init.
pub(crate) static GEOMETRY: Geometry = Geometry {
    quantum: AtomicU32::new(0),
    qset: AtomicU32::new(0),
    default_quantum: AtomicU32::new(0),
    default_qset: AtomicU32::new(0),
    order: AtomicU32::new(0),
    max_mib: AtomicU32::new(0),
};

impl Geometry {
    /// Sets the load-time values.
    pub(crate) fn init(&self, p: &Params) {
        self.quantum.store(p.quantum, Relaxed);
        self.default_quantum.store(p.quantum, Relaxed);
        self.qset.store(p.qset, Relaxed);
        self.default_qset.store(p.qset, Relaxed);
        self.order.store(p.order, Relaxed);
        self.max_mib.store(p.max_mib, Relaxed);
    }

    /// The current quantum.
    pub(crate) fn quantum(&self) -> u32 {
        self.quantum.load(Relaxed)
    }

    /// The current qset.
    pub(crate) fn qset(&self) -> u32 {
        self.qset.load(Relaxed)
    }

    /// The pages backend's order.
    pub(crate) fn order(&self) -> u32 {
        self.order.load(Relaxed)
    }

    /// Largest size of one device in bytes.
    pub(crate) fn max_bytes(&self) -> u64 {
        u64::from(self.max_mib.load(Relaxed)) << 20
    }

    /// Sets the quantum (checked by the caller); returns the old one.
    pub(crate) fn swap_quantum(&self, quantum: u32) -> u32 {
        self.quantum.swap(quantum, Relaxed)
    }

    /// Sets the qset (checked by the caller); returns the old one.
    pub(crate) fn swap_qset(&self, qset: u32) -> u32 {
        self.qset.swap(qset, Relaxed)
    }

    /// `SCULL_IOCRESET`: back to the load-time quantum and qset.
    pub(crate) fn reset(&self) {
        self.quantum
            .store(self.default_quantum.load(Relaxed), Relaxed);
        self.qset.store(self.default_qset.load(Relaxed), Relaxed);
    }
}
