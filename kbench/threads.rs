// SPDX-License-Identifier: GPL-2.0

//! The scaling benchmark: the same pairs in kthreads bound to CPUs
//! `0..threads`, released together by a completion (they sleep until the
//! start, so the CPUs are free for the threads still warming up).

use core::sync::atomic::{
    AtomicU32,
    AtomicU64,
    Ordering, //
};
use kernel::ffi::{
    c_int,
    c_void, //
};
use kernel::{
    bindings,
    prelude::*,
    sync::Completion,
    time::{
        delay::fsleep,
        Delta, //
    }, //
};

use super::clock::Stamp;
use super::target::{
    pairs,
    Target, //
};
use crate::uapi;

/// State shared by the kthreads of one run.
#[pin_data]
struct Shared<'a> {
    target: &'a Target,
    iters: u64,
    ready: AtomicU32,
    #[pin]
    start: Completion,
    ns: [AtomicU64; uapi::BENCH_MAX_THREADS],
    cycles: [AtomicU64; uapi::BENCH_MAX_THREADS],
    failed: AtomicU32,
}

/// What one kthread gets.
struct ThreadArg<'a> {
    shared: &'a Shared<'a>,
    index: usize,
}

/// A benchmark kthread: warm up, report ready, wait for the start, time the
/// pairs, store the result.
///
/// # Safety
///
/// `data` points to a [`ThreadArg`] that outlives the thread (the creator
/// joins it with `kthread_stop()` before dropping it).
unsafe extern "C" fn bench_thread(data: *mut c_void) -> c_int {
    // SAFETY: Per the function's contract.
    let arg = unsafe { &*data.cast::<ThreadArg<'_>>() };
    let sh = arg.shared;
    let warm_ok = matches!(pairs(sh.target, (sh.iters / 10).max(1000), false), Ok(0));
    sh.ready.fetch_add(1, Ordering::AcqRel);
    sh.start.wait_for_completion();
    let t0 = Stamp::now();
    let ok = matches!(pairs(sh.target, sh.iters, false), Ok(0));
    let (ns, cyc) = t0.to(Stamp::now());
    if !ok || !warm_ok {
        sh.failed.fetch_add(1, Ordering::Relaxed);
    }
    if let (Some(n), Some(c)) = (sh.ns.get(arg.index), sh.cycles.get(arg.index)) {
        n.store(ns, Ordering::Relaxed);
        c.store(cyc, Ordering::Relaxed);
    }
    0
}

/// `IS_ERR()`.
fn is_err_ptr<T>(p: *mut T) -> bool {
    (p as usize) >= (-(bindings::MAX_ERRNO as isize)) as usize
}

/// Creates the kthread for CPU `cpu`, bound to it, with a reference held.
fn spawn(arg: &ThreadArg<'_>, cpu: u32) -> Result<*mut bindings::task_struct> {
    // SAFETY: `arg` outlives the thread: every created thread is joined with
    // `kthread_stop_put()` before the arguments go away. The format takes
    // one unsigned int.
    let k = unsafe {
        bindings::kthread_create_on_node(
            Some(bench_thread),
            core::ptr::from_ref::<ThreadArg<'_>>(arg).cast_mut().cast(),
            bindings::NUMA_NO_NODE,
            c"ldd_bench/%u".as_char_ptr(),
            cpu,
        )
    };
    if k.is_null() || is_err_ptr(k) {
        return Err(ENOMEM);
    }
    // SAFETY: `k` is a new kthread that has not run yet: binding it is
    // allowed; the extra reference is dropped by `kthread_stop_put()`.
    unsafe {
        bindings::kthread_bind(k, cpu);
        bindings::get_task_struct(k);
    }
    Ok(k)
}

/// Starts one bound kthread per CPU for the first `threads` of `args` and
/// waits (sleeping) until all have warmed up, at most a minute. Returns the
/// threads made, and the error that stopped making more.
fn start_all(
    shared: &Shared<'_>,
    args: &[ThreadArg<'_>],
    tasks: &mut [*mut bindings::task_struct],
) -> (usize, Option<Error>) {
    let mut created = 0;
    for (cpu, (arg, task)) in args.iter().zip(tasks.iter_mut()).enumerate() {
        match spawn(arg, cpu as u32) {
            Ok(k) => *task = k,
            Err(e) => return (created, Some(e)),
        }
        created += 1;
    }
    for &k in tasks.iter().take(created) {
        // SAFETY: A live kthread we hold a reference to.
        unsafe { bindings::wake_up_process(k) };
    }
    let mut waited = 0;
    while shared.ready.load(Ordering::Acquire) < created as u32 && waited < 60_000 {
        fsleep(Delta::from_millis(1));
        waited += 1;
    }
    (created, None)
}

/// Runs the pairs in `threads` kthreads; per-thread (ns, cycles) into `run`.
pub(crate) fn time_threads(
    t: &Target,
    iters: u64,
    threads: usize,
    run: &mut uapi::BenchRun,
) -> Result {
    let shared = KBox::pin_init(
        pin_init!(Shared {
            target: t,
            iters,
            ready: AtomicU32::new(0),
            start <- Completion::new(),
            ns: Default::default(),
            cycles: Default::default(),
            failed: AtomicU32::new(0),
        }),
        GFP_KERNEL,
    )?;
    let args: [ThreadArg<'_>; uapi::BENCH_MAX_THREADS] = core::array::from_fn(|index| ThreadArg {
        shared: &shared,
        index,
    });
    let threads = threads.min(uapi::BENCH_MAX_THREADS);
    let mut tasks = [core::ptr::null_mut(); uapi::BENCH_MAX_THREADS];
    let (created, err) = start_all(&shared, &args[..threads], &mut tasks[..threads]);
    shared.start.complete_all();
    for &k in tasks.iter().take(created) {
        // SAFETY: A kthread created above with an extra reference; a thread
        // that never ran exits without calling `bench_thread`. This waits
        // until the thread has exited, so `args` may go away after.
        unsafe { bindings::kthread_stop_put(k) };
    }
    if let Some(e) = err {
        return Err(e);
    }
    if shared.failed.load(Ordering::Relaxed) != 0 {
        return Err(ENOMEM);
    }
    for (i, (n, c)) in run
        .ns
        .iter_mut()
        .zip(run.cycles.iter_mut())
        .enumerate()
        .take(threads)
    {
        if let (Some(a), Some(b)) = (shared.ns.get(i), shared.cycles.get(i)) {
            *n = a.load(Ordering::Relaxed);
            *c = b.load(Ordering::Relaxed);
        }
    }
    Ok(())
}
