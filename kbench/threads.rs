// SPDX-License-Identifier: GPL-2.0

//! The scaling benchmark: the same pairs in kthreads bound to CPUs
//! `0..threads`, released together by a completion (they sleep until the
//! start, so the CPUs are free for the threads still warming up). The CPU
//! ids are taken to be `0..n` with `n` online CPUs, as on the test VM; a
//! machine with holes in its online mask gets EINVAL from the bind's CPU
//! check or a thread on an offline CPU that never runs (the run then times
//! out waiting for it and reports ENOMEM).

use core::ptr::NonNull;
use core::sync::atomic::{
    AtomicBool,
    AtomicPtr,
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
    processor::cpu_relax,
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

/// Objects in flight between the producer and the consumer of a remote-free
/// run.
const RING: usize = 1024;

/// What the kthreads of a run do.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Independent pairs on every CPU.
    Pairs,
    /// CPU 0 allocates, CPU 1 frees what it gets (a ring in between).
    Remote,
}

/// State shared by the kthreads of one run.
#[pin_data]
struct Shared<'a> {
    target: &'a Target,
    iters: u64,
    mode: Mode,
    /// The remote-free ring: slot `i % RING` of object `i`.
    ring: [AtomicPtr<u8>; RING],
    /// Objects produced, consumed.
    head: AtomicU64,
    tail: AtomicU64,
    /// Set when not every kthread could be started: the others then skip
    /// their timed loop (a producer without its consumer would wait
    /// forever).
    abort: AtomicBool,
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
    if sh.abort.load(Ordering::Acquire) {
        sh.failed.fetch_add(1, Ordering::Relaxed);
        return 0;
    }
    let t0 = Stamp::now();
    let ok = match (sh.mode, arg.index) {
        (Mode::Pairs, _) => matches!(pairs(sh.target, sh.iters, false), Ok(0)),
        (Mode::Remote, 0) => produce(sh),
        (Mode::Remote, _) => consume(sh),
    };
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

/// The remote-free producer (CPU 0): allocates `iters` objects into the
/// ring, waiting (spinning) while it is full.
fn produce(sh: &Shared<'_>) -> bool {
    for i in 0..sh.iters {
        let Some(p) = sh.target.alloc() else {
            // Tell the consumer there is nothing more: a null object.
            publish(sh, i, core::ptr::null_mut());
            return false;
        };
        publish(sh, i, p.as_ptr());
    }
    true
}

/// Puts object number `i` into the ring once the consumer made room.
fn publish(sh: &Shared<'_>, i: u64, p: *mut u8) {
    while i.wrapping_sub(sh.tail.load(Ordering::Acquire)) >= RING as u64 {
        cpu_relax();
    }
    if let Some(slot) = sh.ring.get((i % RING as u64) as usize) {
        slot.store(p, Ordering::Relaxed);
    }
    // Release: the slot (and the object's contents) before the count.
    sh.head.store(i + 1, Ordering::Release);
}

/// The remote-free consumer (CPU 1): frees every object the producer
/// made, as they come. It keeps consuming after a refused free, so the
/// producer never waits for room that will not come.
fn consume(sh: &Shared<'_>) -> bool {
    let mut ok = true;
    for i in 0..sh.iters {
        while sh.head.load(Ordering::Acquire) <= i {
            cpu_relax();
        }
        let p = sh
            .ring
            .get((i % RING as u64) as usize)
            .map_or(core::ptr::null_mut(), |s| s.load(Ordering::Relaxed));
        // A null object: the producer failed and stopped.
        let Some(p) = NonNull::new(p) else {
            return false;
        };
        // SAFETY: Allocated by the producer from this target and handed
        // over through the ring, once; not used after.
        ok &= unsafe { sh.target.free(p) };
        sh.tail.store(i + 1, Ordering::Release);
    }
    ok
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

/// Runs the pairs in `threads` kthreads (or, in [`Mode::Remote`], a
/// producer on CPU 0 and a consumer on CPU 1); per-thread (ns, cycles) into
/// `run`.
pub(crate) fn time_threads(
    t: &Target,
    iters: u64,
    threads: usize,
    mode: Mode,
    run: &mut uapi::BenchRun,
) -> Result {
    let shared = KBox::pin_init(
        pin_init!(Shared {
            target: t,
            iters,
            mode,
            ring: core::array::from_fn(|_| AtomicPtr::new(core::ptr::null_mut())),
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            abort: AtomicBool::new(false),
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
    if err.is_some() || created < threads {
        shared.abort.store(true, Ordering::Release);
    }
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
