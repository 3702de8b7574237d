//! Tests of the mempool core over the mmap page source, with injected
//! page failures and real threads for the sleeping path.

use std::ptr::NonNull;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use ldd_alloc::allocator::mempool::{self, PoolError, SlabBacking};
use ldd_alloc::allocator::{self, CacheConfig, CacheFlags, CacheName, PageRequest};
use ldd_alloc::host_pages::{HostCache, HostPages, HostPool, PageBacking};
use proptest::prelude::*;

fn page_pool(min_nr: usize) -> (Arc<HostPages>, Arc<HostPool<PageBacking>>) {
    let pages = Arc::new(HostPages::new());
    let pool = Arc::new(HostPool::new(PageBacking::new(pages.clone())));
    mempool::create(&*pool, min_nr, PageRequest::KERNEL).unwrap();
    (pages, pool)
}

#[test]
fn reserve_serves_exactly_min_nr_under_page_failure() {
    let (pages, pool) = page_pool(4);
    assert_eq!(pages.pages_out(), 4);
    pages.set_fail_all(true);
    let got: Vec<_> = (0..4)
        .map(|_| mempool::alloc(&*pool, PageRequest::ATOMIC).unwrap())
        .collect();
    assert_eq!(
        mempool::alloc(&*pool, PageRequest::ATOMIC),
        Err(PoolError::NoMemory)
    );
    let s = mempool::stats(&*pool);
    assert_eq!(
        (
            s.allocs_reserve,
            s.allocs_backing,
            s.failures,
            s.curr_nr,
            s.outstanding
        ),
        (4, 0, 1, 0, 4)
    );
    pages.set_fail_all(false);
    // With memory back, allocations bypass the (empty) reserve.
    let extra = mempool::alloc(&*pool, PageRequest::ATOMIC).unwrap();
    assert_eq!(mempool::stats(&*pool).allocs_backing, 1);
    for p in got.into_iter().chain([extra]) {
        // SAFETY: from this pool, freed once.
        unsafe { mempool::free(&*pool, p) };
    }
    let s = mempool::stats(&*pool);
    assert_eq!(
        (
            s.curr_nr,
            s.frees_to_reserve,
            s.frees_to_backing,
            s.outstanding
        ),
        (4, 4, 1, 0)
    );
    assert_eq!(pages.pages_out(), 4);
    mempool::destroy(&*pool).unwrap();
    assert_eq!(pages.pages_out(), 0);
}

#[test]
fn create_fails_cleanly() {
    let pages = Arc::new(HostPages::new());
    let pool = HostPool::new(PageBacking::new(pages.clone()));
    pages.fail_after(3, 1);
    assert_eq!(
        mempool::create(&pool, 5, PageRequest::KERNEL),
        Err(PoolError::NoMemory)
    );
    assert_eq!(pages.pages_out(), 0);
    assert_eq!(
        mempool::alloc(&pool, PageRequest::ATOMIC),
        Err(PoolError::Destroyed)
    );
    let tiny = HostCache::new(
        &CacheConfig {
            name: CacheName::new(b"tiny"),
            size: 4,
            align: 0,
            flags: CacheFlags::default(),
            ctor: None,
        },
        pages.clone(),
        1,
    )
    .unwrap();
    let p = HostPool::new(SlabBacking(&tiny));
    assert_eq!(
        mempool::create(&p, 1, PageRequest::KERNEL),
        Err(PoolError::ElementTooSmall)
    );
}

#[test]
fn sleeping_alloc_is_woken_by_free() {
    let (pages, pool) = page_pool(2);
    pages.set_fail_all(true);
    let a = mempool::alloc(&*pool, PageRequest::KERNEL).unwrap();
    let b = mempool::alloc(&*pool, PageRequest::KERNEL).unwrap();
    let (tx, rx) = mpsc::channel();
    let p2 = pool.clone();
    let t = std::thread::spawn(move || {
        let p = mempool::alloc(&*p2, PageRequest::KERNEL).unwrap();
        tx.send(p.as_ptr() as usize).unwrap();
    });
    // Wait until the thread sleeps in the pool (not for a fixed time: a
    // loaded machine may start it late), then it must still have nothing.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while mempool::stats(&*pool).waits < 1 {
        assert!(std::time::Instant::now() < deadline, "thread never slept");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
    // SAFETY: from this pool, freed once.
    unsafe { mempool::free(&*pool, a) };
    let got = rx
        .recv_timeout(Duration::from_secs(2))
        .expect("sleeper not woken within 2 s");
    assert_eq!(
        got,
        a.as_ptr() as usize,
        "the freed element went to the sleeper"
    );
    t.join().unwrap();
    let s = mempool::stats(&*pool);
    assert_eq!((s.wakeups, s.allocs_reserve, s.outstanding), (1, 3, 2));
    assert_eq!(
        mempool::destroy(&*pool),
        Err(PoolError::Busy { outstanding: 2 })
    );
    pages.set_fail_all(false);
    for p in [b, NonNull::new(got as *mut u8).unwrap()] {
        // SAFETY: from this pool, freed once.
        unsafe { mempool::free(&*pool, p) };
    }
    mempool::destroy(&*pool).unwrap();
    assert_eq!(pages.pages_out(), 0);
}

/// A free that refills the reserve wakes every sleeper, not one: the one
/// woken may leave without the element (here its retry of the backing
/// succeeds; in the kernel a pending signal does the same), and with the
/// reserve full again no later free takes the lock to wake the next. The
/// host's wait gives up after `HostPool::WAIT` (5 s, mempool.c's
/// `io_schedule_timeout`), the kernel's never: both sleepers must be back
/// well before it.
#[test]
fn one_refill_wakes_every_sleeper() {
    use mempool::PoolEnv as _;
    let (pages, pool) = page_pool(1);
    pages.set_fail_all(true);
    // The reserve's one element.
    let a = mempool::alloc(&*pool, PageRequest::KERNEL).unwrap();
    let (tx, rx) = mpsc::channel();
    let sleepers: Vec<_> = (0..2)
        .map(|_| {
            let (p, tx) = (pool.clone(), tx.clone());
            std::thread::spawn(move || {
                let e = mempool::alloc(&*p, PageRequest::KERNEL).unwrap();
                // An address: a raw pointer does not cross threads.
                tx.send(e.as_ptr() as usize).unwrap();
            })
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while pool.lock().waiters() < 2 {
        assert!(std::time::Instant::now() < deadline, "sleepers never slept");
        std::thread::sleep(Duration::from_millis(1));
    }
    // The backing recovers, then one free refills the reserve.
    pages.set_fail_all(false);
    // SAFETY: from this pool, freed once.
    unsafe { mempool::free(&*pool, a) };
    let mut got = Vec::new();
    for i in 0..2 {
        match rx.recv_timeout(Duration::from_secs(2)) {
            Ok(e) => got.push(e),
            Err(_) => panic!("sleeper {} of 2 not woken within 2 s of the refill", i + 1),
        }
    }
    for t in sleepers {
        t.join().unwrap();
    }
    let s = mempool::stats(&*pool);
    assert_eq!((s.wakeups, s.outstanding), (1, 2), "{s:?}");
    for e in got {
        // SAFETY: from this pool, freed once.
        unsafe { mempool::free(&*pool, NonNull::new(e as *mut u8).unwrap()) };
    }
    mempool::destroy(&*pool).unwrap();
    assert_eq!(pages.pages_out(), 0);
}

#[test]
fn resize_up_and_down() {
    let (pages, pool) = page_pool(2);
    mempool::resize(&*pool, 5, PageRequest::KERNEL).unwrap();
    assert_eq!((mempool::stats(&*pool).curr_nr, pages.pages_out()), (5, 5));
    mempool::resize(&*pool, 1, PageRequest::KERNEL).unwrap();
    assert_eq!((mempool::stats(&*pool).curr_nr, pages.pages_out()), (1, 1));
    pages.fail_after(2, 1);
    assert_eq!(
        mempool::resize(&*pool, 6, PageRequest::KERNEL),
        Err(PoolError::NoMemory)
    );
    let s = mempool::stats(&*pool);
    assert_eq!(
        (s.min_nr, s.curr_nr),
        (6, 3),
        "the new minimum stands, frees top it up"
    );
    let p = mempool::alloc(&*pool, PageRequest::KERNEL).unwrap();
    // SAFETY: from this pool.
    unsafe { mempool::free(&*pool, p) };
    assert_eq!(mempool::stats(&*pool).curr_nr, 4);
    mempool::destroy(&*pool).unwrap();
    assert_eq!(
        mempool::alloc(&*pool, PageRequest::KERNEL),
        Err(PoolError::Destroyed)
    );
    assert_eq!(pages.pages_out(), 0);
}

#[test]
fn slab_backed_pool() {
    let pages = Arc::new(HostPages::new());
    let cache = HostCache::new(
        &CacheConfig {
            name: CacheName::new(b"pool"),
            size: 96,
            align: 0,
            flags: CacheFlags::default(),
            ctor: None,
        },
        pages.clone(),
        2,
    )
    .unwrap();
    let pool = HostPool::new(SlabBacking(&cache));
    mempool::create(&pool, 10, PageRequest::KERNEL).unwrap();
    let v: Vec<_> = (0..30)
        .map(|_| mempool::alloc(&pool, PageRequest::ATOMIC).unwrap())
        .collect();
    for p in v {
        // SAFETY: from this pool.
        unsafe { mempool::free(&pool, p) };
    }
    mempool::destroy(&pool).unwrap();
    assert_eq!(
        allocator::stats(&cache).active_objs,
        allocator::stats(&cache).cached_objs
    );
    allocator::destroy(&cache).unwrap();
    assert_eq!(pages.pages_out(), 0);
}

#[test]
fn threads_share_a_tiny_reserve() {
    const THREADS: usize = 4;
    let (pages, pool) = page_pool(2);
    pages.set_fail_all(true);
    // Hold the whole reserve before the threads start, so every thread's
    // first allocation must sleep: contention is forced, not left to the
    // scheduler (4 short threads on an idle machine may run one after
    // another and never meet).
    let held = [
        mempool::alloc(&*pool, PageRequest::KERNEL).unwrap(),
        mempool::alloc(&*pool, PageRequest::KERNEL).unwrap(),
    ];
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                for _ in 0..500 {
                    let p = mempool::alloc(&*pool, PageRequest::KERNEL).unwrap();
                    // SAFETY: a page of ours.
                    unsafe { p.as_ptr().write_bytes(0x11, 64) };
                    std::thread::yield_now();
                    // SAFETY: from this pool, freed once.
                    unsafe { mempool::free(&*pool, p) };
                }
            })
        })
        .collect();
    // `waits` counts under the pool lock just before a thread sleeps.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while (mempool::stats(&*pool).waits as usize) < THREADS {
        assert!(std::time::Instant::now() < deadline, "threads never slept");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(mempool::stats(&*pool).allocs_reserve, 2);
    for p in held {
        // SAFETY: from this pool, freed once.
        unsafe { mempool::free(&*pool, p) };
    }
    for h in handles {
        h.join().unwrap();
    }
    let s = mempool::stats(&*pool);
    assert_eq!(
        (s.outstanding, s.curr_nr, s.allocs_reserve),
        (0, 2, 2 + 500 * THREADS as u64)
    );
    // Each of the two frees above woke a sleeper.
    assert!(s.waits >= THREADS as u64 && s.wakeups >= 2, "{s:?}");
    pages.set_fail_all(false);
    mempool::destroy(&*pool).unwrap();
    assert_eq!(pages.pages_out(), 0);
}

#[derive(Clone, Debug)]
enum Op {
    Alloc,
    Free(usize),
    Resize(usize),
    Fail(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Alloc),
        4 => (0usize..100).prop_map(Op::Free),
        1 => (0usize..8).prop_map(Op::Resize),
        1 => any::<bool>().prop_map(Op::Fail),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Against an exact model: who serves each allocation, reserve size,
    /// outstanding count, pages out.
    #[test]
    fn pool_model(min in 0usize..6, ops in prop::collection::vec(op(), 1..200)) {
        let (pages, pool) = page_pool(min);
        let (mut min_nr, mut curr, mut failing) = (min, min, false);
        let mut live = Vec::new();
        for op in ops {
            match op {
                Op::Alloc => {
                    let r = mempool::alloc(&*pool, PageRequest::ATOMIC);
                    if !failing {
                        live.push(r.unwrap());
                    } else if curr > 0 {
                        live.push(r.unwrap());
                        curr -= 1;
                    } else {
                        prop_assert_eq!(r, Err(PoolError::NoMemory));
                    }
                }
                Op::Free(i) if !live.is_empty() => {
                    let p = live.swap_remove(i % live.len());
                    // SAFETY: from this pool, freed once.
                    unsafe { mempool::free(&*pool, p) };
                    if curr < min_nr {
                        curr += 1;
                    }
                }
                Op::Free(_) => {}
                Op::Resize(n) => {
                    let r = mempool::resize(&*pool, n, PageRequest::KERNEL);
                    min_nr = n;
                    if curr > n {
                        curr = n;
                    }
                    if curr < n && failing {
                        prop_assert_eq!(r, Err(PoolError::NoMemory));
                    } else {
                        prop_assert_eq!(r, Ok(()));
                        curr = n;
                    }
                }
                Op::Fail(on) => {
                    failing = on;
                    pages.set_fail_all(on);
                }
            }
            let s = mempool::stats(&*pool);
            prop_assert_eq!((s.curr_nr, s.min_nr, s.outstanding), (curr, min_nr, live.len()));
            prop_assert!(s.curr_nr <= s.min_nr);
            prop_assert_eq!(pages.pages_out(), curr + live.len());
        }
        prop_assert_eq!(mempool::destroy(&*pool).is_err(), !live.is_empty());
        pages.set_fail_all(false);
        for p in live {
            // SAFETY: from this pool, freed once.
            unsafe { mempool::free(&*pool, p) };
        }
        let _ = mempool::destroy(&*pool);
        prop_assert_eq!(pages.pages_out(), 0);
    }
}

/// The lock-free fast paths against `destroy`: threads allocate and free
/// through the backing while the main thread keeps trying to destroy the
/// pool. A destroy either is refused (elements out) or wins; after it wins
/// no allocation succeeds, and every page comes back.
#[test]
fn destroy_races_lock_free_allocations() {
    const THREADS: usize = 3;
    let (pages, pool) = page_pool(2);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let total = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (pool, stop, total) = (pool.clone(), stop.clone(), total.clone());
            std::thread::spawn(move || {
                let mut served = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match mempool::alloc(&*pool, PageRequest::ATOMIC) {
                        Ok(p) => {
                            served += 1;
                            total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            // SAFETY: a page of ours.
                            unsafe { p.as_ptr().write_bytes(0x22, 64) };
                            // SAFETY: from this pool, freed once.
                            unsafe { mempool::free(&*pool, p) };
                        }
                        // While a `destroy` has the backing frozen, the
                        // reserve serves, and once it is empty an atomic
                        // allocation fails.
                        Err(PoolError::NoMemory) => {}
                        Err(PoolError::Destroyed) => break,
                        Err(e) => panic!("unexpected {e:?}"),
                    }
                }
                served
            })
        })
        .collect();
    // Let the threads get going, so destroy meets them in flight.
    while total.load(std::sync::atomic::Ordering::Relaxed) < 20_000 {
        std::thread::yield_now();
    }
    let (mut refused, mut tries) = (0u64, 0u64);
    loop {
        tries += 1;
        match mempool::destroy(&*pool) {
            Ok(()) => break,
            // A refusal at first sight counts from a snapshot of moving
            // counters (frees read before allocations: it may run high).
            Err(PoolError::Busy { outstanding }) => {
                assert!(outstanding > 0, "refused with nothing out");
                refused += 1;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
        if tries > 1_000_000 {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        std::thread::yield_now();
    }
    let served: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(
        mempool::alloc(&*pool, PageRequest::ATOMIC),
        Err(PoolError::Destroyed)
    );
    let s = mempool::stats(&*pool);
    assert_eq!((s.outstanding, s.curr_nr), (0, 0), "{s:?}");
    assert_eq!(s.allocs_backing + s.allocs_reserve, served, "{s:?}");
    assert_eq!(s.frees_to_backing + s.frees_to_reserve, served, "{s:?}");
    assert_eq!(pages.pages_out(), 0);
    eprintln!("{served} allocations, destroy refused {refused} times, {s:?}");
}

/// A cache backing that can be told to fail (hit path and slow path
/// alike), so that a test drives a pool with a fast path onto its reserve.
struct FlakyBacking<'a> {
    cache: SlabBacking<'a, HostCache>,
    fail: std::sync::atomic::AtomicBool,
}

impl mempool::Backing for FlakyBacking<'_> {
    fn element_size(&self) -> usize {
        self.cache.element_size()
    }

    fn alloc(&self, req: PageRequest) -> Option<NonNull<u8>> {
        if self.fail.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        self.cache.alloc(req)
    }

    fn alloc_hit(&self) -> Option<NonNull<u8>> {
        if self.fail.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        self.cache.alloc_hit()
    }

    unsafe fn free(&self, p: NonNull<u8>) {
        // SAFETY: Forwarded contract.
        unsafe { self.cache.free(p) }
    }

    fn freeze(&self) {
        self.cache.freeze();
    }

    fn thaw(&self) {
        self.cache.thaw();
    }

    fn usage(&self) -> mempool::BackingUsage {
        self.cache.usage()
    }
}

/// `destroy` against every path at once: fast allocations (the backing's
/// hit path, which tests nothing of the pool: `destroy`'s freeze of the
/// cache is what stops it), slow ones, reserve allocations while the
/// backing fails, and frees that find the short flag set (and refill the
/// reserve under the lock, or go to the backing). Once
/// `destroy` has succeeded no thread may still hold an element (each
/// checks before every free) nor get one (each checks before every
/// allocation); and every count must add up: nothing out, nothing in the
/// reserve, every element served counted once as an allocation and once
/// as a free, and the backing cache empty (it destroys, its pages all
/// back).
#[test]
fn destroy_races_fast_paths_and_reserve_refills() {
    use mempool::PoolEnv as _;
    use std::sync::atomic::{
        AtomicBool, AtomicU64,
        Ordering::{Relaxed, SeqCst},
    };
    const THREADS: usize = 3;
    let pages = Arc::new(HostPages::new());
    let cache = HostCache::new(
        &CacheConfig {
            name: CacheName::new(b"flaky"),
            size: 64,
            align: 0,
            flags: CacheFlags::default(),
            ctor: None,
        },
        pages.clone(),
        THREADS,
    )
    .unwrap();
    let pool = HostPool::new(FlakyBacking {
        cache: SlabBacking(&cache),
        fail: AtomicBool::new(false),
    });
    mempool::create(&pool, 8, PageRequest::KERNEL).unwrap();
    let (stop, total) = (AtomicBool::new(false), AtomicU64::new(0));
    // Set once `destroy` has returned Ok; what a thread sees of it before
    // an allocation or a free must not contradict that.
    let (destroyed, violations) = (AtomicBool::new(false), AtomicU64::new(0));
    let (served, refused) = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (pool, stop, total) = (&pool, &stop, &total);
                let (destroyed, violations) = (&destroyed, &violations);
                // An element freed after `destroy` succeeded was out when
                // it did.
                let free = |p: NonNull<u8>| {
                    if destroyed.load(SeqCst) {
                        violations.fetch_add(1, Relaxed);
                    }
                    // SAFETY: From this pool, freed once.
                    unsafe { mempool::free(pool, p) };
                };
                sc.spawn(move || {
                    ldd_alloc::host_pages::set_cpu(t);
                    let (mut served, mut held) = (0u64, Vec::new());
                    let mut round = t;
                    'run: while !stop.load(Relaxed) {
                        round = round.wrapping_mul(7).wrapping_add(3) % 11;
                        for _ in 0..=round % 6 {
                            let after = destroyed.load(SeqCst);
                            match mempool::alloc(pool, PageRequest::ATOMIC) {
                                // Served by a pool already destroyed.
                                Ok(_) if after => {
                                    violations.fetch_add(1, Relaxed);
                                    break 'run;
                                }
                                Ok(p) => {
                                    // SAFETY: 64 bytes of ours.
                                    unsafe { p.as_ptr().write_bytes(0x5a, 64) };
                                    held.push(p);
                                    served += 1;
                                    total.fetch_add(1, Relaxed);
                                }
                                Err(PoolError::NoMemory) => break,
                                Err(PoolError::Destroyed) => break 'run,
                                Err(e) => panic!("unexpected {e:?}"),
                            }
                        }
                        held.drain(..).for_each(free);
                    }
                    held.drain(..).for_each(free);
                    served
                })
            })
            .collect();
        // The backing fails half of the time: the reserve drains and
        // refills, and the short flag goes up and down under the threads.
        let mut flips = 0u64;
        // Until the reserve has served and been refilled a few times (or,
        // should the threads have died, a bound: the checks below fail).
        while (total.load(Relaxed) < 30_000 || mempool::stats(&pool).frees_to_reserve < 100)
            && flips < 20_000
        {
            flips += 1;
            pool.backing().fail.store(flips % 2 == 1, Relaxed);
            std::thread::sleep(Duration::from_micros(200));
        }
        let (mut refused, mut tries) = (0u64, 0u64);
        // A failure here stops the threads before it is reported (a panic
        // inside the scope would wait for them forever).
        let outcome = loop {
            tries += 1;
            pool.backing().fail.store(tries % 2 == 1, Relaxed);
            match mempool::destroy(&pool) {
                Ok(()) => {
                    destroyed.store(true, SeqCst);
                    break Ok(());
                }
                // The count of a refusal at first sight is a snapshot of
                // counters moving under the threads: any number will do.
                Err(PoolError::Busy { .. }) => {
                    refused += 1;
                }
                Err(e) => break Err(format!("{e:?}")),
            }
            if tries > 200_000 {
                stop.store(true, Relaxed);
            }
            // With the threads stopping, nothing stays out for long.
            if tries > 400_000 {
                break Err("destroy never succeeds".into());
            }
            std::thread::yield_now();
        };
        stop.store(true, Relaxed);
        let served: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        if let Err(e) = outcome {
            panic!("destroy: {e}, {:?}", mempool::stats(&pool));
        }
        (served, refused)
    });
    assert_eq!(
        mempool::alloc(&pool, PageRequest::ATOMIC),
        Err(PoolError::Destroyed)
    );
    let s = mempool::stats(&pool);
    assert_eq!(
        violations.load(Relaxed),
        0,
        "an element out across a successful destroy, or served after it: {s:?}"
    );
    assert_eq!((s.outstanding, s.curr_nr), (0, 0), "{s:?}");
    assert_eq!(s.allocs_backing + s.allocs_reserve, served, "{s:?}");
    assert_eq!(s.frees_to_backing + s.frees_to_reserve, served, "{s:?}");
    assert!(
        s.allocs_reserve >= 100 && s.frees_to_reserve >= 100,
        "the reserve was hardly used: {s:?}"
    );
    allocator::destroy(&cache).unwrap();
    assert_eq!(pages.pages_out(), 0);
    eprintln!("{served} allocations, destroy refused {refused} times, {s:?}");
}

/// A page backing a test can script: its next `usage` may report nothing
/// live (the inexact first count of a `destroy` that misses an element
/// allocated meanwhile), the `usage` that follows a freeze may stall until
/// released, and so may an allocation that fails on the frozen backing.
/// It counts its freezes.
struct ScriptedBacking {
    inner: PageBacking,
    frozen: std::sync::atomic::AtomicBool,
    freezes: std::sync::atomic::AtomicUsize,
    report_none_live: std::sync::atomic::AtomicBool,
    stall_frozen_usage: std::sync::atomic::AtomicBool,
    stall_frozen_alloc: std::sync::atomic::AtomicBool,
    /// Two-party rendezvous: "stalled here", then "go on".
    usage_gate: (std::sync::Barrier, std::sync::Barrier),
    alloc_gate: (std::sync::Barrier, std::sync::Barrier),
}

impl ScriptedBacking {
    fn pool(min_nr: usize) -> Arc<HostPool<ScriptedBacking>> {
        use std::sync::atomic::{AtomicBool, AtomicUsize};
        use std::sync::Barrier;
        let pool = Arc::new(HostPool::new(ScriptedBacking {
            inner: PageBacking::new(Arc::new(HostPages::new())),
            frozen: AtomicBool::new(false),
            freezes: AtomicUsize::new(0),
            report_none_live: AtomicBool::new(false),
            stall_frozen_usage: AtomicBool::new(false),
            stall_frozen_alloc: AtomicBool::new(false),
            usage_gate: (Barrier::new(2), Barrier::new(2)),
            alloc_gate: (Barrier::new(2), Barrier::new(2)),
        }));
        mempool::create(&*pool, min_nr, PageRequest::KERNEL).unwrap();
        pool
    }
}

impl mempool::Backing for ScriptedBacking {
    fn element_size(&self) -> usize {
        self.inner.element_size()
    }

    fn alloc(&self, req: PageRequest) -> Option<NonNull<u8>> {
        use std::sync::atomic::Ordering::SeqCst;
        let r = self.inner.alloc(req);
        if r.is_none() && self.frozen.load(SeqCst) && self.stall_frozen_alloc.swap(false, SeqCst) {
            self.alloc_gate.0.wait();
            self.alloc_gate.1.wait();
        }
        r
    }

    unsafe fn free(&self, p: NonNull<u8>) {
        // SAFETY: Forwarded contract.
        unsafe { self.inner.free(p) }
    }

    fn freeze(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.freezes.fetch_add(1, SeqCst);
        self.inner.freeze();
        self.frozen.store(true, SeqCst);
    }

    fn thaw(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.frozen.store(false, SeqCst);
        self.inner.thaw();
    }

    fn usage(&self) -> mempool::BackingUsage {
        use std::sync::atomic::Ordering::SeqCst;
        if self.report_none_live.swap(false, SeqCst) {
            return mempool::BackingUsage {
                live: 0,
                ..self.inner.usage()
            };
        }
        if self.frozen.load(SeqCst) && self.stall_frozen_usage.swap(false, SeqCst) {
            self.usage_gate.0.wait();
            self.usage_gate.1.wait();
        }
        self.inner.usage()
    }
}

/// A `destroy` that sees elements out in its first count refuses without
/// freezing the backing, so nobody else notices it: atomic allocations
/// are still served by the backing, the reserve untouched.
#[test]
fn destroy_refused_at_first_sight_disturbs_nobody() {
    use mempool::PoolEnv as _;
    use std::sync::atomic::Ordering::SeqCst;
    let p = ScriptedBacking::pool(2);
    let held = mempool::alloc(&*p, PageRequest::KERNEL).unwrap();
    assert_eq!(
        mempool::destroy(&*p),
        Err(PoolError::Busy { outstanding: 1 })
    );
    assert_eq!(
        p.backing().freezes.load(SeqCst),
        0,
        "the backing was frozen"
    );
    let more: Vec<_> = (0..4)
        .map(|_| mempool::alloc(&*p, PageRequest::ATOMIC).unwrap())
        .collect();
    let s = mempool::stats(&*p);
    assert_eq!(
        (s.curr_nr, s.allocs_reserve, s.outstanding),
        (2, 0, 5),
        "{s:?}"
    );
    for e in more.into_iter().chain([held]) {
        // SAFETY: From this pool, freed once.
        unsafe { mempool::free(&*p, e) };
    }
    assert_eq!(mempool::destroy(&*p), Ok(()));
    assert_eq!(p.backing().freezes.load(SeqCst), 1);
}

/// A `destroy` whose first count missed an element (reported none live)
/// freezes, counts exactly, refuses, and thaws: the backing serves again,
/// and a second `destroy` while the first is counting gets `Closing`.
#[test]
fn destroy_refused_after_freezing_thaws_the_backing() {
    use mempool::PoolEnv as _;
    use std::sync::atomic::Ordering::SeqCst;
    let p = ScriptedBacking::pool(2);
    let held = mempool::alloc(&*p, PageRequest::KERNEL).unwrap();
    let b = p.backing();
    b.report_none_live.store(true, SeqCst);
    b.stall_frozen_usage.store(true, SeqCst);
    let destroyer = {
        let p = p.clone();
        std::thread::spawn(move || mempool::destroy(&*p))
    };
    b.usage_gate.0.wait();
    // Counting, with the backing frozen.
    assert_eq!(mempool::destroy(&*p), Err(PoolError::Closing));
    b.usage_gate.1.wait();
    assert_eq!(
        destroyer.join().unwrap(),
        Err(PoolError::Busy { outstanding: 1 })
    );
    assert_eq!(b.freezes.load(SeqCst), 1);
    let before = mempool::stats(&*p);
    let e = mempool::alloc(&*p, PageRequest::ATOMIC).expect("the backing stayed frozen");
    let after = mempool::stats(&*p);
    assert_eq!(after.curr_nr, 2, "served from the reserve: {after:?}");
    assert_eq!(after.allocs_backing, before.allocs_backing + 1);
    for e in [e, held] {
        // SAFETY: From this pool, freed once.
        unsafe { mempool::free(&*p, e) };
    }
    assert_eq!(mempool::destroy(&*p), Ok(()));
}

/// A sleeping allocation whose opportunistic try failed only because a
/// `destroy` had the backing frozen is not lost when that `destroy`
/// refuses: whether it reaches the pool lock before the refusal (it
/// sleeps, and the refusal wakes it) or after (it sees `thaws` moved and
/// tries again), it is served by the reopened backing at once. Without
/// the `thaws` check the second order sleeps with memory plentiful (here
/// until the host wait's timeout; in the kernel, whose wait has none,
/// until some element comes back).
#[test]
fn sleeper_on_a_frozen_backing_is_served_when_destroy_refuses() {
    use mempool::{Backing as _, PoolEnv as _};
    use std::sync::atomic::Ordering::SeqCst;
    use std::time::Instant;
    for sleeper_locks_first in [true, false] {
        let p = ScriptedBacking::pool(1);
        let held = mempool::alloc(&*p, PageRequest::KERNEL).unwrap();
        // Empty the reserve: with the backing closed, an allocation takes
        // the reserve's element.
        p.backing().inner.freeze();
        let from_reserve = mempool::alloc(&*p, PageRequest::ATOMIC).unwrap();
        p.backing().inner.thaw();
        assert_eq!(mempool::stats(&*p).curr_nr, 0);
        let b = p.backing();
        b.report_none_live.store(true, SeqCst);
        b.stall_frozen_usage.store(true, SeqCst);
        b.stall_frozen_alloc.store(true, SeqCst);
        let destroyer = {
            let p = p.clone();
            std::thread::spawn(move || mempool::destroy(&*p))
        };
        b.usage_gate.0.wait(); // frozen, counting
        let sleeper = {
            let p = p.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                // An address: a raw pointer does not cross threads.
                let r = mempool::alloc(&*p, PageRequest::KERNEL).map(|e| e.as_ptr() as usize);
                (r, t.elapsed())
            })
        };
        b.alloc_gate.0.wait(); // the sleeper's try failed on the freeze
        let refused = if sleeper_locks_first {
            b.alloc_gate.1.wait();
            // Until it sleeps on the pool (the destroy is stalled).
            while p.lock().waiters() == 0 {
                std::thread::yield_now();
            }
            b.usage_gate.1.wait();
            destroyer.join().unwrap()
        } else {
            b.usage_gate.1.wait();
            let r = destroyer.join().unwrap();
            // The destroy has decided and thawed; now the sleeper locks.
            b.alloc_gate.1.wait();
            r
        };
        assert_eq!(refused, Err(PoolError::Busy { outstanding: 2 }));
        let (r, took) = sleeper.join().unwrap();
        let e = NonNull::new(r.expect("the sleeper's allocation") as *mut u8).unwrap();
        assert!(
            took < Duration::from_secs(2),
            "locks first {sleeper_locks_first}: slept {took:?} with the backing open"
        );
        for e in [e, held, from_reserve] {
            // SAFETY: From this pool, freed once.
            unsafe { mempool::free(&*p, e) };
        }
        assert_eq!(mempool::destroy(&*p), Ok(()));
    }
}
