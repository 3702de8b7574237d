//! Userspace environments for the allocator core.
//!
//! [`HostPages`] is a [`PageSource`] over `mmap`: it hands out naturally
//! aligned runs of `2^order` pages (mapping twice the size and trimming),
//! counts pages out per zone, remembers the live runs so that
//! `read_nofault` can refuse anything outside them, and can be told to fail
//! allocations (the next N, or all while set) for deterministic tests.
//!
//! [`HostCache`] is a [`CacheEnv`] with a `Mutex<Depot>` as the cache lock
//! and one `Mutex<Magazine>` per simulated CPU (the current CPU is a
//! thread-local, see [`set_cpu`]): `try_with_magazine` is `try_lock`, so two
//! threads on one simulated CPU exercise the direct path the way an
//! interrupt on top of a magazine holder does in the kernel, and
//! [`HostCache::set_magazines_busy`] forces that path for tests.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use crate::allocator::mempool::{Backing, BackingUsage, PoolEnv, PoolFast, PoolState};
use crate::allocator::{
    CacheConfig, CacheEnv, CacheLayout, CreateError, Depot, Magazine, PageRequest, PageSource,
    Zone, MAX_ORDER, PAGE_SIZE,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn zone_index(z: Zone) -> usize {
    match z {
        Zone::Dma => 0,
        Zone::Dma32 => 1,
        Zone::Normal => 2,
    }
}

#[derive(Clone, Copy, Debug)]
struct Run {
    len: usize,
    zone: Zone,
}

/// A page source over anonymous `mmap`.
#[derive(Debug, Default)]
pub struct HostPages {
    runs: Mutex<BTreeMap<usize, Run>>,
    zone_pages: [AtomicUsize; 3],
    fail_skip: AtomicUsize,
    fail_next: AtomicUsize,
    fail_all: AtomicBool,
    allocs: AtomicUsize,
    failures: AtomicUsize,
}

impl HostPages {
    /// A fresh source with nothing out.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pages currently out, all zones.
    pub fn pages_out(&self) -> usize {
        self.zone_pages
            .iter()
            .map(|z| z.load(Ordering::SeqCst))
            .sum()
    }

    /// Pages currently out from `zone`.
    pub fn zone_pages(&self, zone: Zone) -> usize {
        self.zone_pages[zone_index(zone)].load(Ordering::SeqCst)
    }

    /// Runs currently out.
    pub fn live_runs(&self) -> usize {
        lock(&self.runs).len()
    }

    /// Makes the next `n` allocations fail.
    pub fn fail_next(&self, n: usize) {
        self.fail_skip.store(0, Ordering::SeqCst);
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// Lets the next `ok` allocations succeed, then makes `n` fail.
    pub fn fail_after(&self, ok: usize, n: usize) {
        self.fail_skip.store(ok, Ordering::SeqCst);
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// Makes every allocation fail while `on`.
    pub fn set_fail_all(&self, on: bool) {
        self.fail_all.store(on, Ordering::SeqCst);
    }

    /// Successful allocations so far.
    pub fn allocs(&self) -> usize {
        self.allocs.load(Ordering::SeqCst)
    }

    /// Injected failures so far.
    pub fn failures(&self) -> usize {
        self.failures.load(Ordering::SeqCst)
    }

    /// Whether `[addr, addr + len)` lies inside one live run; returns the
    /// run's base and length.
    pub fn run_containing(&self, addr: usize, len: usize) -> Option<(usize, usize)> {
        let runs = lock(&self.runs);
        Self::find(&runs, addr, len)
    }

    fn find(runs: &BTreeMap<usize, Run>, addr: usize, len: usize) -> Option<(usize, usize)> {
        let (&base, run) = runs.range(..=addr).next_back()?;
        let end = addr.checked_add(len)?;
        (end <= base + run.len).then_some((base, run.len))
    }

    fn should_fail(&self) -> bool {
        if self.fail_all.load(Ordering::SeqCst) {
            return true;
        }
        if self
            .fail_skip
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return false;
        }
        self.fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

impl PageSource for HostPages {
    fn alloc_pages(&self, order: u32, req: PageRequest) -> Option<NonNull<u8>> {
        if order > MAX_ORDER {
            return None;
        }
        if self.should_fail() {
            self.failures.fetch_add(1, Ordering::SeqCst);
            return None;
        }
        let len = PAGE_SIZE << order;
        let map_len = if order == 0 { len } else { 2 * len };
        // SAFETY: an anonymous private mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        let start = p as usize;
        let aligned = (start + len - 1) & !(len - 1);
        let head = aligned - start;
        let tail = map_len - head - len;
        // SAFETY: both trimmed pieces are parts of the mapping just made
        // that the run does not use.
        unsafe {
            if head > 0 {
                libc::munmap(p, head);
            }
            if tail > 0 {
                libc::munmap((aligned + len) as *mut libc::c_void, tail);
            }
        }
        lock(&self.runs).insert(
            aligned,
            Run {
                len,
                zone: req.zone,
            },
        );
        self.zone_pages[zone_index(req.zone)].fetch_add(1 << order, Ordering::SeqCst);
        self.allocs.fetch_add(1, Ordering::SeqCst);
        NonNull::new(aligned as *mut u8)
    }

    unsafe fn free_pages(&self, run: NonNull<u8>, order: u32) {
        let addr = run.as_ptr() as usize;
        let removed = lock(&self.runs).remove(&addr);
        match removed {
            Some(r) if r.len == PAGE_SIZE << order => {
                self.zone_pages[zone_index(r.zone)].fetch_sub(1 << order, Ordering::SeqCst);
                // SAFETY: the run is ours (it was live) and the caller
                // promises nothing uses it any more.
                unsafe { libc::munmap(run.as_ptr().cast(), r.len) };
            }
            // A bad free must not unmap someone else's memory: fail loudly
            // in tests instead.
            other => panic!("free_pages({addr:#x}, {order}) of a non-live run: {other:?}"),
        }
    }

    fn read_nofault(&self, addr: usize, out: &mut [u8]) -> bool {
        let runs = lock(&self.runs);
        if Self::find(&runs, addr, out.len()).is_none() {
            return false;
        }
        // SAFETY: the range lies in a live run, which cannot be unmapped
        // while we hold `runs` (free_pages removes it under the lock first).
        unsafe { std::ptr::copy_nonoverlapping(addr as *const u8, out.as_mut_ptr(), out.len()) };
        true
    }
}

impl Drop for HostPages {
    fn drop(&mut self) {
        let runs = std::mem::take(&mut *lock(&self.runs));
        for (base, run) in runs {
            // SAFETY: leftover runs are ours; the source is going away.
            unsafe { libc::munmap(base as *mut libc::c_void, run.len) };
        }
    }
}

thread_local! {
    static CPU: Cell<usize> = const { Cell::new(0) };
}

/// Sets the simulated CPU of the calling thread (taken modulo the number of
/// magazines of each env).
pub fn set_cpu(cpu: usize) {
    CPU.with(|c| c.set(cpu));
}

/// The simulated CPU of the calling thread.
pub fn current_cpu() -> usize {
    CPU.with(|c| c.get())
}

/// A cache environment over [`HostPages`] with `ncpus` simulated CPUs.
#[derive(Debug)]
pub struct HostCache {
    layout: CacheLayout,
    pages: Arc<HostPages>,
    depot: Mutex<Depot>,
    mags: Vec<Mutex<Magazine>>,
    busy: AtomicBool,
}

impl HostCache {
    /// Creates a cache on `pages` with `ncpus` magazines.
    pub fn new(
        cfg: &CacheConfig,
        pages: Arc<HostPages>,
        ncpus: usize,
    ) -> Result<Self, CreateError> {
        Ok(Self {
            layout: CacheLayout::new(cfg)?,
            pages,
            depot: Mutex::new(Depot::new()),
            mags: (0..ncpus.max(1))
                .map(|_| Mutex::new(Magazine::new()))
                .collect(),
            busy: AtomicBool::new(false),
        })
    }

    /// While set, every magazine looks busy: all allocations and frees take
    /// the direct path to the depot.
    pub fn set_magazines_busy(&self, busy: bool) {
        self.busy.store(busy, Ordering::Relaxed);
    }

    /// The page source.
    pub fn host(&self) -> &Arc<HostPages> {
        &self.pages
    }

    /// Objects in each simulated CPU's magazine.
    pub fn magazine_lens(&self) -> Vec<usize> {
        self.mags.iter().map(|m| lock(m).len()).collect()
    }
}

impl CacheEnv for HostCache {
    type Src = HostPages;

    fn layout(&self) -> &CacheLayout {
        &self.layout
    }

    fn pages(&self) -> &HostPages {
        &self.pages
    }

    fn try_with_magazine<R>(&self, f: impl FnOnce(&mut Magazine) -> R) -> Option<R> {
        if self.busy.load(Ordering::Relaxed) {
            return None;
        }
        let slot = &self.mags[current_cpu() % self.mags.len()];
        let mut mag = match slot.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(f(&mut mag))
    }

    fn with_depot<R>(&self, f: impl FnOnce(&mut Depot) -> R) -> R {
        f(&mut lock(&self.depot))
    }

    fn for_each_magazine(&self, mut f: impl FnMut(&mut Magazine)) {
        for m in &self.mags {
            f(&mut lock(m));
        }
    }
}

/// A pool backing of single pages from a [`HostPages`] (what
/// `mempool_alloc_pages` does in the kernel), counting what it serves.
/// Frozen, it refuses allocations; `freeze` takes the gate that every
/// allocation holds while it allocates and counts, so none is half-way
/// when it returns.
#[derive(Debug)]
pub struct PageBacking {
    pages: Arc<HostPages>,
    gate: RwLock<bool>,
    allocs: AtomicU64,
    frees: AtomicU64,
}

impl PageBacking {
    /// A backing over `pages`, open.
    pub fn new(pages: Arc<HostPages>) -> Self {
        Self {
            pages,
            gate: RwLock::new(false),
            allocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
        }
    }

    fn set_frozen(&self, frozen: bool) {
        *self.gate.write().unwrap_or_else(|e| e.into_inner()) = frozen;
    }
}

impl Backing for PageBacking {
    fn element_size(&self) -> usize {
        PAGE_SIZE
    }

    fn alloc(&self, req: PageRequest) -> Option<NonNull<u8>> {
        let frozen = self.gate.read().unwrap_or_else(|e| e.into_inner());
        if *frozen {
            return None;
        }
        let p = self.pages.alloc_pages(0, req)?;
        self.allocs.fetch_add(1, Ordering::SeqCst);
        Some(p)
    }

    unsafe fn free(&self, p: NonNull<u8>) {
        // Counted first: `usage` never sees more frees than allocations.
        self.frees.fetch_add(1, Ordering::SeqCst);
        // SAFETY: forwarded contract: `p` is an order-0 run of this source.
        unsafe { self.pages.free_pages(p, 0) }
    }

    fn freeze(&self) {
        self.set_frozen(true);
    }

    fn thaw(&self) {
        self.set_frozen(false);
    }

    fn usage(&self) -> BackingUsage {
        // Frees first: each counted free's allocation is counted already.
        let frees = self.frees.load(Ordering::SeqCst);
        let allocs = self.allocs.load(Ordering::SeqCst);
        BackingUsage {
            allocs,
            frees,
            live: allocs.saturating_sub(frees) as usize,
        }
    }
}

/// A pool environment: `Mutex<PoolState>` + `Condvar`. Waits time out after
/// [`HostPool::WAIT`] like mempool.c's `io_schedule_timeout(5 * HZ)`.
#[derive(Debug)]
pub struct HostPool<B> {
    backing: B,
    state: Mutex<PoolState>,
    cond: Condvar,
    fast: PoolFast,
}

impl<B> HostPool<B> {
    /// The longest single wait.
    pub const WAIT: Duration = Duration::from_secs(5);

    /// A pool (not yet created) over `backing`.
    pub fn new(backing: B) -> Self {
        Self {
            backing,
            state: Mutex::new(PoolState::new()),
            cond: Condvar::new(),
            fast: PoolFast::new(),
        }
    }
}

/// The held pool lock; `None` only transiently inside `wait`.
pub struct HostPoolGuard<'a>(Option<MutexGuard<'a, PoolState>>);

impl std::ops::Deref for HostPoolGuard<'_> {
    type Target = PoolState;
    fn deref(&self) -> &PoolState {
        self.0.as_ref().expect("guard present")
    }
}

impl std::ops::DerefMut for HostPoolGuard<'_> {
    fn deref_mut(&mut self) -> &mut PoolState {
        self.0.as_mut().expect("guard present")
    }
}

impl<B: Backing> PoolEnv for HostPool<B> {
    type Backing = B;
    type Guard<'a>
        = HostPoolGuard<'a>
    where
        Self: 'a;

    fn backing(&self) -> &B {
        &self.backing
    }

    fn lock(&self) -> HostPoolGuard<'_> {
        HostPoolGuard(Some(lock(&self.state)))
    }

    fn wait(&self, guard: &mut HostPoolGuard<'_>) -> bool {
        if let Some(g) = guard.0.take() {
            let (g, _) = self
                .cond
                .wait_timeout(g, Self::WAIT)
                .unwrap_or_else(|e| e.into_inner());
            guard.0 = Some(g);
        }
        // Userspace threads get no signals here; the kernel's wait reports them.
        false
    }

    fn notify_all(&self) {
        self.cond.notify_all();
    }

    fn fast(&self) -> &PoolFast {
        &self.fast
    }
}
