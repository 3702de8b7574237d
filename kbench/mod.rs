// SPDX-License-Identifier: GPL-2.0

//! In-kernel benchmark loops (`LDD_IOC_BENCH`, root only), in the manner
//! of prototype-kernel's `time_bench`: one ioctl times one allocator on one
//! case for `iters` operations with `ktime_get_mono_fast_ns()` and the TSC,
//! and times an empty loop of as many iterations as the baseline that
//! userspace subtracts. Userspace interleaves the allocators and repeats.
//!
//! | room | what it holds |
//! |------|---------------|
//! | [`clock`] | time stamps and the empty loop |
//! | [`target`] | the allocator under test; pairs and bursts |
//! | [`reserve`] | our pool's reserve path |
//! | [`threads`] | the same pairs on several CPUs at once |
//! | [`prims`] | the fast path's primitives alone |
//!
//! Both sides get the same request: no debugging, no zeroing, `GFP_KERNEL`
//! on the kernel's side (our cache: `alloc(false)`, which only matters when
//! a new slab is needed; our pool: `alloc(true)`, as `GFP_KERNEL`). The
//! kernel's `kmem_cache` is created per run with the lab's arguments (size,
//! no alignment, no flags); SLUB may merge it with a compatible cache
//! (kmalloc-<size> for instance): that is what a driver's cache gets too.
//!
//! A run stops with EINTR when its task gets a signal. Under QEMU TCG the
//! guest clock is emulated: only ratios of runs in the same boot mean
//! anything.

mod clock;
mod prims;
mod reserve;
mod target;
mod threads;

use core::sync::atomic::{
    AtomicBool,
    Ordering, //
};
use kernel::ffi::c_void;
use kernel::{
    bindings,
    prelude::*,
    types::ScopeGuard, //
};

use clock::{
    time_empty,
    Stamp, //
};
use target::{
    bursts,
    pairs,
    Target, //
};

use crate::uaccess::IoctlArg;
use crate::uapi::{
    self,
    bench_alloc as ba,
    bench_op as bo,
    bench_prim as bp, //
};

/// Set while a benchmark runs: runs are serialized, so they never time
/// each other.
static BUSY: AtomicBool = AtomicBool::new(false);

/// `LDD_IOC_BENCH`; ENOTTY for any other number.
pub(crate) fn ioctl(cmd: u32, arg: IoctlArg) -> Result<isize> {
    if cmd != uapi::LDD_IOC_BENCH {
        return Err(ENOTTY);
    }
    let mut run = arg.read::<uapi::BenchRun>()?;
    if BUSY
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return Err(EBUSY);
    }
    let _busy = ScopeGuard::new(|| BUSY.store(false, Ordering::Release));
    execute(&mut run)?;
    arg.write(&run)?;
    Ok(0)
}

/// Times `n` pairs after a warm-up: (ns, cycles).
fn time_pairs(t: &Target, n: u64) -> Result<(u64, u64)> {
    if pairs(t, (n / 10).max(1000), true)? != 0 {
        return Err(ENOMEM);
    }
    let t0 = Stamp::now();
    let failed = pairs(t, n, true)?;
    let t = t0.to(Stamp::now());
    if failed != 0 {
        return Err(ENOMEM);
    }
    Ok(t)
}

/// Online CPUs.
fn online_cpus() -> u32 {
    // SAFETY: The online mask is a live global; the helper only reads it.
    unsafe { bindings::cpumask_weight(core::ptr::addr_of_mut!(bindings::__cpu_online_mask)) }
}

/// Checks a request: EINVAL for what makes no sense, E2BIG past the caps.
fn validate(run: &uapi::BenchRun) -> Result {
    if run.op == bo::PRIM {
        if run.alloc >= bp::COUNT || run.threads != 0 || run.iters < uapi::BENCH_MIN_ITERS {
            return Err(EINVAL);
        }
        return if run.iters > uapi::BENCH_MAX_ITERS {
            Err(E2BIG)
        } else {
            Ok(())
        };
    }
    let pages = matches!(
        run.alloc,
        ba::ALLOC_PAGES | ba::GET_FREE_PAGES | ba::VMALLOC
    );
    let fits = match run.op {
        bo::PAIR => run.alloc < ba::COUNT && !matches!(run.alloc, ba::KMEM_BULK | ba::OUR_BULK),
        bo::BURST => matches!(
            run.alloc,
            ba::OUR_CACHE
                | ba::KMEM_CACHE
                | ba::KMALLOC
                | ba::KMEM_BULK
                | ba::OUR_POOL
                | ba::OUR_BULK
        ),
        bo::RESERVE => matches!(
            run.alloc,
            ba::OUR_POOL | ba::KERNEL_POOL | ba::KERNEL_POOL_OURS
        ),
        bo::REMOTE => matches!(run.alloc, ba::OUR_CACHE | ba::KMEM_CACHE | ba::KMALLOC),
        _ => false,
    };
    if !fits || run.iters < uapi::BENCH_MIN_ITERS {
        return Err(EINVAL);
    }
    if run.iters > uapi::BENCH_MAX_ITERS {
        return Err(E2BIG);
    }
    if pages {
        if run.size > uapi::BENCH_MAX_ORDER {
            return Err(E2BIG);
        }
    } else if run.size < uapi::BENCH_MIN_SIZE {
        return Err(EINVAL);
    } else if run.size > uapi::BENCH_MAX_SIZE {
        return Err(E2BIG);
    }
    if run.op == bo::BURST {
        if run.burst == 0 {
            return Err(EINVAL);
        }
        if run.burst > uapi::BENCH_MAX_BURST {
            return Err(E2BIG);
        }
    }
    if run.op == bo::REMOTE {
        if run.threads != 2 {
            return Err(EINVAL);
        }
        if online_cpus() < 2 {
            return Err(E2BIG);
        }
    } else if run.threads != 0 {
        if run.op != bo::PAIR {
            return Err(EINVAL);
        }
        if run.threads as usize > uapi::BENCH_MAX_THREADS || run.threads > online_cpus() {
            return Err(E2BIG);
        }
    }
    Ok(())
}

/// Runs one validated request.
fn execute(run: &mut uapi::BenchRun) -> Result {
    validate(run)?;
    let iters = u64::from(run.iters);
    run.ns = [0; uapi::BENCH_MAX_THREADS];
    run.cycles = [0; uapi::BENCH_MAX_THREADS];
    if run.op == bo::PRIM {
        let (ns, cycles) = prims::time_prim(run.alloc, iters)?;
        run.ops = iters;
        run.ns[0] = ns;
        run.cycles[0] = cycles;
        (run.base_ns, run.base_cycles) = time_empty(iters);
        return Ok(());
    }
    let target = Target::new(run.alloc, run.size, run.op)?;
    let (ns, cycles) = match run.op {
        bo::BURST => {
            let n = run.burst as usize;
            let rounds = (iters / n as u64).max(1);
            let mut ptrs: KVVec<*mut c_void> = KVVec::with_capacity(n, GFP_KERNEL)?;
            ptrs.resize(n, core::ptr::null_mut(), GFP_KERNEL)?;
            let bulk = matches!(run.alloc, ba::KMEM_BULK | ba::OUR_BULK);
            if bursts(&target, bulk, &mut ptrs, 1)? != 0 {
                return Err(ENOMEM);
            }
            let t0 = Stamp::now();
            let failed = bursts(&target, bulk, &mut ptrs, rounds)?;
            let t = t0.to(Stamp::now());
            if failed != 0 {
                return Err(ENOMEM);
            }
            run.ops = rounds * n as u64;
            t
        }
        bo::RESERVE if matches!(run.alloc, ba::OUR_POOL | ba::KERNEL_POOL_OURS) => {
            run.ops = iters;
            reserve::time_reserve(&target, run.size, iters)?
        }
        bo::REMOTE => {
            run.ops = iters;
            threads::time_threads(&target, iters, 2, threads::Mode::Remote, run)?;
            // The run lasts until the consumer is done.
            (run.ns[0].max(run.ns[1]), run.cycles[0].max(run.cycles[1]))
        }
        _ if run.threads != 0 => {
            run.ops = iters;
            threads::time_threads(
                &target,
                iters,
                run.threads as usize,
                threads::Mode::Pairs,
                run,
            )?;
            (run.ns[0], run.cycles[0])
        }
        _ => {
            run.ops = iters;
            time_pairs(&target, iters)?
        }
    };
    run.ns[0] = ns;
    run.cycles[0] = cycles;
    let (base_ns, base_cycles) = time_empty(run.ops);
    run.base_ns = base_ns;
    run.base_cycles = base_cycles;
    Ok(())
}
