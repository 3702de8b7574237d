//! What our caches' per-CPU fast path makes subtle (kalloc/percpu.rs): a
//! slot held with preemption off by one inline `inc` of the preempt count,
//! its flag touched only by its own CPU, other CPUs' slots visited on their
//! CPU by a bound kworker.
//! Each test drives our cache through the lab from several threads on
//! several CPUs and checks the cache's own counts afterwards: every object
//! back (active = cached in magazines), nothing refused, no splat (the run
//! scans the kernel log).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::cpu;
use crate::device::Device;
use crate::rng::Rng;
use crate::tap::{Context, Outcome, Test, TestResult};
use crate::uapi::{self, context, gfp, lab_backend as lb};
use crate::{ensure, ensure_eq};

/// Pins the calling thread to `cpu` (mod the online CPUs); false if the
/// kernel refused.
fn pin(cpu: usize) -> bool {
    cpu::pin_current(cpu % cpu::online()).is_ok()
}

/// The CPU the calling thread runs on now.
fn current_cpu() -> i32 {
    // SAFETY: No arguments, no memory.
    unsafe { libc::sched_getcpu() }
}

/// Our cache of `size`-byte objects (flags 0), if it exists yet.
fn our_cache(dev: &Device, size: u64) -> Result<Option<uapi::CacheInfo>, String> {
    Ok(dev
        .caches()
        .ctx("CACHE_INFO")?
        .into_iter()
        .find(|c| c.objsize == size && c.flags == 0))
}

/// Every object of the cache is free again and no free was refused since
/// `before`.
fn all_back(dev: &Device, size: u64, before: Option<uapi::CacheInfo>) -> TestResult {
    let c = our_cache(dev, size)?.ok_or("the cache is gone")?;
    ensure_eq!(
        c.active_objs,
        c.cached_objs,
        "objects still out of the cache (active vs in magazines)"
    );
    let refused = |c: &uapi::CacheInfo| c.refused_foreign + c.refused_misaligned + c.refused_double;
    ensure_eq!(
        refused(&c),
        before.as_ref().map_or(0, refused),
        "frees refused"
    );
    ensure_eq!(
        c.allocs - before.map_or(0, |b| b.allocs),
        c.frees - before.map_or(0, |b| b.frees),
        "allocs vs frees"
    );
    dev.shrink().ctx("SHRINK")?;
    let c = our_cache(dev, size)?.ok_or("the cache is gone")?;
    ensure_eq!(c.active_objs, 0, "objects in use after SHRINK");
    Ok(Outcome::Pass)
}

/// Remote frees: a thread on CPU 0 allocates, one on CPU 1 frees what it
/// gets (one file, so the handles are shared): every object migrates from
/// CPU 0's magazine to CPU 1's, and CPU 1's drains hand them back to the
/// slabs CPU 0 refills from.
fn remote_frees() -> TestResult {
    if cpu::online() < 2 {
        return Ok(Outcome::Skip("one CPU online".into()));
    }
    const SIZE: u64 = 200;
    let dev = Arc::new(Device::open_index(0).ctx("open")?);
    let before = our_cache(&dev, SIZE)?;
    let (tx, rx) = mpsc::sync_channel::<Vec<u32>>(8);
    let alloc_dev = dev.clone();
    let producer = std::thread::spawn(move || -> Result<(u64, bool), String> {
        let on0 = pin(0);
        let mut n = 0u64;
        for _ in 0..400 {
            let r = alloc_dev
                .alloc(uapi::AllocRequest {
                    backend: lb::OUR_CACHE,
                    context: context::PROCESS,
                    gfp: gfp::KERNEL,
                    size: SIZE,
                    count: 64,
                    ..Default::default()
                })
                .ctx("ALLOC")?;
            n += r.len() as u64;
            let on = current_cpu() == 0;
            if tx.send(r.iter().map(|x| x.handle).collect()).is_err() {
                break;
            }
            if !on {
                return Ok((n, false));
            }
        }
        Ok((n, on0))
    });
    let free_dev = dev.clone();
    let consumer = std::thread::spawn(move || -> Result<(u64, bool), String> {
        let on1 = pin(1);
        let mut n = 0u64;
        let mut stayed = on1;
        for handles in rx {
            for h in handles {
                free_dev.free(h).ctx("FREE")?;
                n += 1;
            }
            stayed &= current_cpu() == 1;
        }
        Ok((n, stayed))
    });
    let (made, pinned0) = producer.join().map_err(|_| "producer panicked")??;
    let (freed, pinned1) = consumer.join().map_err(|_| "consumer panicked")??;
    ensure!(
        pinned0 && pinned1,
        "could not keep the threads on CPUs 0 and 1"
    );
    ensure_eq!(made, 400 * 64);
    ensure_eq!(freed, made, "frees");
    all_back(&dev, SIZE, before)
}

/// Migration, interrupts and visits racing the fast path: four threads
/// allocate and free in every lab context (process; atomic, under a
/// spinlock; hard interrupt, from an `irq_work`, which lands on whatever
/// the CPU was doing, a held slot included) while moving themselves
/// between CPUs after every request, and a fifth shrinks the cache
/// (every CPU's magazine visited on its CPU, empty slabs retired) in a loop.
fn migration_irqs_and_shrink() -> TestResult {
    const SIZE: u64 = 328;
    const THREADS: usize = 4;
    let dev = Arc::new(Device::open_index(0).ctx("open")?);
    let before = our_cache(&dev, SIZE)?;
    let stop = Arc::new(AtomicBool::new(false));
    let moves = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for t in 0..THREADS {
        let (stop, moves) = (stop.clone(), moves.clone());
        // Own files: handles are per file, so no thread frees another's.
        let path = dev.path().to_path_buf();
        workers.push(std::thread::spawn(move || -> Result<u64, String> {
            let d = Device::open(&path).ctx("open")?;
            let mut rng = Rng::new(1500 + t as u64);
            let mut ops = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Always to another CPU than the one we are on: a random
                // pick can stay put for a whole (slow) run.
                let was = current_cpu();
                let step = 1 + rng.below(cpu::online().max(2) as u64 - 1) as usize;
                pin(was.max(0) as usize + step);
                if current_cpu() != was {
                    moves.fetch_add(1, Ordering::Relaxed);
                }
                let ctx =
                    [context::PROCESS, context::ATOMIC, context::HARDIRQ][rng.below(3) as usize];
                let gfp = if ctx == context::PROCESS {
                    gfp::KERNEL
                } else {
                    gfp::ATOMIC
                };
                let r = d
                    .alloc(uapi::AllocRequest {
                        backend: lb::OUR_CACHE,
                        context: ctx,
                        gfp,
                        size: SIZE,
                        count: 1 + rng.below(32) as u32,
                        ..Default::default()
                    })
                    .ctx("ALLOC")?;
                // Free on another CPU than the one that allocated.
                pin(current_cpu().max(0) as usize + 1);
                for x in &r {
                    d.free(x.handle).ctx("FREE")?;
                }
                ops += r.len() as u64;
            }
            Ok(ops)
        }));
    }
    let shrinker = {
        let (stop, dev) = (stop.clone(), dev.clone());
        std::thread::spawn(move || -> Result<u64, String> {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                dev.shrink().ctx("SHRINK")?;
                // Stats visit every magazine too.
                our_cache(&dev, SIZE)?;
                n += 1;
            }
            Ok(n)
        })
    };
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ops = 0;
    for w in workers {
        ops += w.join().map_err(|_| "worker panicked")??;
    }
    let shrinks = shrinker.join().map_err(|_| "shrinker panicked")??;
    ensure!(
        Instant::now() < deadline,
        "threads took over a minute to stop"
    );
    ensure!(
        ops > 0 && shrinks > 0,
        "nothing ran: {ops} objects, {shrinks} shrinks"
    );
    if cpu::online() > 1 {
        ensure!(moves.load(Ordering::Relaxed) > 0, "no thread ever migrated");
    }
    all_back(&dev, SIZE, before)
}

/// The tests of this room.
pub fn tests() -> Vec<Test> {
    vec![
        Test::new("fastpath/remote_frees", remote_frees),
        Test::new(
            "fastpath/migration_irqs_and_shrink_race_the_fast_path",
            migration_irqs_and_shrink,
        ),
    ]
}
