// SPDX-License-Identifier: GPL-2.0

//! The primitives of our caches' fast path, timed alone: what a design
//! pays per operation for an interrupt guard, an irq spinlock, a
//! `copy_from_kernel_nofault`, the CPU id, a slot try-lock and a bitmap RMW.
//!
//! Interrupts are never kept off for long: the loops that disable them do
//! so for at most [`IRQ_CHUNK`] iterations at a time.

use core::hint::black_box;
use core::sync::atomic::{
    AtomicU64,
    Ordering, //
};
use kernel::{
    cpu::CpuId,
    interrupt::local_interrupt_disable,
    new_spinlock_irq,
    prelude::*,
    sync::{
        atomic::{
            Acquire,
            AtomicFlag,
            Release, //
        },
        SpinLockIrq, //
    }, //
};

use super::clock::Stamp;
use crate::allocator::PageSource;
use crate::kalloc::pages::PAGES;
use crate::uapi::bench_prim as bp;

/// Most iterations run with interrupts off in one go.
const IRQ_CHUNK: u64 = 1024;

/// Times `n` iterations of primitive `prim` ([`bp`]).
pub(crate) fn time_prim(prim: u32, n: u64) -> Result<(u64, u64)> {
    let lock: Pin<KBox<SpinLockIrq<u64>>> =
        KBox::pin_init(new_spinlock_irq!(0u64, "bench::prim"), GFP_KERNEL)?;
    let src = KBox::new([0x5au8; 16], GFP_KERNEL)?;
    let addr = src.as_ptr() as usize;
    let mut buf = [0u8; 16];
    let t0 = Stamp::now();
    match prim {
        bp::IRQ_GUARD => {
            for _ in 0..n {
                black_box(local_interrupt_disable());
            }
        }
        bp::SPINLOCK_IRQ => {
            for _ in 0..n {
                *lock.lock() += 1;
            }
        }
        bp::READ_NOFAULT => {
            for _ in 0..n {
                black_box(PAGES.read_nofault(black_box(addr), &mut buf));
            }
        }
        bp::SLOT_TRYLOCK => {
            let flag = AtomicFlag::new(false);
            for _ in 0..n {
                if black_box(&flag).cmpxchg(false, true, Acquire).is_ok() {
                    flag.store(false, Release);
                }
            }
        }
        bp::BITMAP_RMW => {
            let word = AtomicU64::new(0);
            for i in 0..n {
                let bit = 1u64 << (i & 63);
                if i & 1 == 0 {
                    black_box(black_box(&word).fetch_or(bit, Ordering::AcqRel));
                } else {
                    black_box(black_box(&word).fetch_and(!bit, Ordering::AcqRel));
                }
            }
        }
        _ => {
            // CpuId::current() is meaningful with migration off: interrupts
            // off, in chunks.
            let mut left = n;
            while left > 0 {
                let chunk = left.min(IRQ_CHUNK);
                let _irq = local_interrupt_disable();
                for _ in 0..chunk {
                    black_box(CpuId::current());
                }
                left -= chunk;
            }
        }
    }
    let t = t0.to(Stamp::now());
    black_box(&buf);
    Ok(t)
}
