// SPDX-License-Identifier: GPL-2.0

//! The per-CPU counters of one scull device, the way LDD3 counts a network
//! driver's packets: each `read(2)` and `write(2)` adds to the copy of the
//! CPU it runs on, with no lock and no atomic read-modify-write (only this
//! CPU writes its copy, and it does so with interrupts off); a reader sums
//! the copies over the possible CPUs, an answer that is exact once the
//! updates stop and never torn (each copy is read with one load).

use core::sync::atomic::{
    AtomicU64,
    Ordering, //
};
use kernel::prelude::*;

use super::var::{
    cpu_offset,
    cpu_online,
    cpu_possible,
    nr_cpu_ids,
    PerCpu,
    PerCpuData, //
};
use crate::kalloc::kernel_alloc::is_vmalloc_addr;
use crate::uaccess::{
    write_array,
    IoctlArg, //
};
use crate::uapi;

/// One CPU's counters.
#[derive(Default)]
pub(crate) struct Counters {
    reads: AtomicU64,
    writes: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
}

// SAFETY: Atomics only: zero is valid, shared access is Sync.
unsafe impl PerCpuData for Counters {}

/// Adds `n` to this CPU's own counter: a plain load and store, what
/// `this_cpu_add()` does in one instruction. No other CPU writes this copy
/// and the caller runs with interrupts off, so no update is lost.
fn add(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// A device's read/write counters, one copy per possible CPU.
pub(crate) struct DevStats(PerCpu<Counters>);

impl DevStats {
    /// Zeroed counters (`alloc_percpu()`).
    pub(crate) fn new() -> Result<Self> {
        Ok(Self(PerCpu::new()?))
    }

    /// Counts one `read(2)` of `bytes` on this CPU.
    pub(crate) fn count_read(&self, bytes: usize) {
        self.0.with_this_cpu(|c, _| {
            add(&c.reads, 1);
            add(&c.bytes_read, bytes as u64);
        });
    }

    /// Counts one `write(2)` of `bytes` on this CPU.
    pub(crate) fn count_write(&self, bytes: usize) {
        self.0.with_this_cpu(|c, _| {
            add(&c.writes, 1);
            add(&c.bytes_written, bytes as u64);
        });
    }

    /// `LDD_IOC_PERCPU_INFO`: every possible CPU's copy (as many as the
    /// caller has room for) and the sums over all of them. Addresses only
    /// for CAP_SYS_ADMIN, as `%pK` prints them.
    pub(crate) fn info(&self, arg: IoctlArg, privileged: bool) -> Result {
        let mut req: uapi::PercpuInfo = arg.read()?;
        let possible = nr_cpu_ids();
        let mut copies = KVVec::new();
        let mut sum = [0u64; 4];
        let mut online = 0;
        for cpu in (0..possible).filter(|&c| cpu_possible(c)) {
            let Some(c) = self.0.get(cpu) else {
                continue;
            };
            let v = [
                c.reads.load(Ordering::Relaxed),
                c.writes.load(Ordering::Relaxed),
                c.bytes_read.load(Ordering::Relaxed),
                c.bytes_written.load(Ordering::Relaxed),
            ];
            for (s, x) in sum.iter_mut().zip(v) {
                *s = s.wrapping_add(x);
            }
            let up = cpu_online(cpu);
            online += u32::from(up);
            if copies.len() < req.max as usize {
                let addr = core::ptr::from_ref(c) as usize;
                copies.push(
                    uapi::PercpuCopy {
                        cpu,
                        online: u32::from(up),
                        reads: v[0],
                        writes: v[1],
                        bytes_read: v[2],
                        bytes_written: v[3],
                        addr: if privileged { addr as u64 } else { 0 },
                        offset: if privileged {
                            cpu_offset(cpu).unwrap_or(0) as u64
                        } else {
                            0
                        },
                        vmalloc_area: u32::from(is_vmalloc_addr(addr)),
                        _pad: 0,
                    },
                    GFP_KERNEL,
                )?;
            }
        }
        req.possible = possible;
        req.online = online;
        req.copy_size = core::mem::size_of::<Counters>() as u32;
        req.base = if privileged {
            self.0.cookie() as u64
        } else {
            0
        };
        [req.reads, req.writes, req.bytes_read, req.bytes_written] = sum;
        write_array(req.entries, &copies)?;
        arg.write(&req)
    }
}
