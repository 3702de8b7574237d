// SPDX-License-Identifier: GPL-2.0

//! Memory pools: a guaranteed reserve in front of an allocator.
//!
//! LDD3 ch. 8 ("mempools"): "a memory pool is really just a form of a
//! lookaside cache that tries to always keep a list of free memory around
//! for use in emergencies". This follows today's `mm/mempool.c`:
//!
//! * `create(min_nr)` preallocates `min_nr` elements (`mempool_init()`); if
//!   one allocation fails, everything obtained so far is given back and the
//!   creation fails cleanly.
//! * `alloc(req)` first asks the backing allocator opportunistically (no
//!   sleeping, no retrying, no warning: `gfp_temp` in `mempool_alloc()`),
//!   so the reserve is only touched when memory is really tight; then
//!   takes an element from the reserve; then, if the caller may sleep,
//!   waits until a free refills the reserve, and starts over. A caller that
//!   may not sleep fails at once. Unlike `mempool_alloc()`, whose sleep is
//!   uninterruptible (it may be on the I/O path), the wait ends early with
//!   [`PoolError::Interrupted`] when the environment reports a signal: our
//!   callers are ioctls of user tasks, which SIGKILL must be able to end.
//! * `free(p)` refills the reserve if it is below `min_nr`, waking one
//!   waiter; otherwise the element goes back to the backing allocator.
//!
//! While memory is plentiful neither path takes the pool lock, as in
//! mempool.c (which reads `curr_nr` with `READ_ONCE()` before locking): an
//! allocation served by the backing and a free going back to it each do
//! one `lock inc` and one branch on [`PoolFast`] (a counter whose top bit
//! is the flag that path tests), so a pool costs little more than its
//! backing until the reserve is needed.
//! * `resize(new_min)` shrinks by freeing the surplus, or grows by
//!   allocating (outside the lock). As in `mempool_resize()`, the new
//!   minimum stands even if growing fails part way: later frees top the
//!   reserve up.
//! * `destroy()` refuses while elements are outstanding (the kernel's
//!   `mempool_destroy()` would BUG; we return the count).
//!
//! The reserve is an intrusive singly linked list through the free elements
//! themselves (their first word holds the next pointer), so the pool needs
//! no storage besides [`PoolState`]; mempool.c uses an array instead.
//!
//! Waiting is generic: [`PoolEnv`] supplies a lock whose guard can wait on a
//! condition (kernel `SpinLock` + `CondVar`, userspace `Mutex` + `Condvar`),
//! so the threaded userspace tests run this very algorithm.

use core::ops::DerefMut;
use core::ptr::NonNull;
use core::sync::atomic::{
    AtomicU64,
    Ordering, //
};

use super::cache::{
    self,
    CacheEnv, //
};
use super::page_source::PageRequest;

/// The smallest element a pool accepts: the reserve link lives in it.
pub const MIN_ELEMENT: usize = 8;

/// The allocator behind a pool (`mempool_alloc_t`/`mempool_free_t`).
pub trait Backing: Sync {
    /// The size of every element, at least [`MIN_ELEMENT`].
    fn element_size(&self) -> usize;

    /// Allocates one element.
    fn alloc(&self, req: PageRequest) -> Option<NonNull<u8>>;

    /// Allocates one element if that is cheap and certain to succeed at
    /// once (a cache's magazine hit), else `None` with nothing done: the
    /// part of [`alloc`] worth inlining into the pool's callers.
    #[inline(always)]
    fn alloc_hit(&self) -> Option<NonNull<u8>> {
        None
    }

    /// Frees one element.
    ///
    /// # Safety
    ///
    /// `p` must come from [`Backing::alloc`] on this backing and not have
    /// been freed since; nothing may use it afterwards.
    unsafe fn free(&self, p: NonNull<u8>);
}

/// A cache used as a pool's backing (`mempool_create_slab_pool()`).
pub struct SlabBacking<'a, E: CacheEnv + Sync + ?Sized>(pub &'a E);

impl<E: CacheEnv + Sync + ?Sized> Backing for SlabBacking<'_, E> {
    fn element_size(&self) -> usize {
        self.0.layout().size()
    }

    fn alloc(&self, req: PageRequest) -> Option<NonNull<u8>> {
        cache::alloc(self.0, req).ok()
    }

    #[inline(always)]
    fn alloc_hit(&self) -> Option<NonNull<u8>> {
        cache::alloc_hit(self.0)
    }

    unsafe fn free(&self, p: NonNull<u8>) {
        // A refusal would mean a caller broke the contract; the cache keeps
        // itself consistent and counts it, there is nothing more to do.
        let _ = cache::free(self.0, p);
    }
}

/// Why a pool operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// The backing allocator failed and the reserve is empty (and the
    /// caller may not sleep), or preallocation/growth failed.
    NoMemory,
    /// Elements are smaller than [`MIN_ELEMENT`].
    ElementTooSmall,
    /// The pool has been destroyed (or never created).
    Destroyed,
    /// A sleeping allocation was interrupted by a signal.
    Interrupted,
    /// `destroy` with elements still allocated.
    Busy {
        /// Elements handed out and not freed.
        outstanding: usize,
    },
}

/// Pool counters and sizes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Elements in the reserve.
    pub curr_nr: usize,
    /// The reserve's target size.
    pub min_nr: usize,
    /// Allocations served by the backing allocator.
    pub allocs_backing: u64,
    /// Allocations served by the reserve.
    pub allocs_reserve: u64,
    /// Frees that refilled the reserve.
    pub frees_to_reserve: u64,
    /// Frees handed to the backing allocator (a free that finds the
    /// reserve short is counted here until, under the lock, it refills the
    /// reserve instead: two snapshots may see this go down by the frees in
    /// flight).
    pub frees_to_backing: u64,
    /// Times a caller went to sleep waiting for an element.
    pub waits: u64,
    /// Wakeups sent to waiters by frees (or by growth in `resize`).
    pub wakeups: u64,
    /// Allocations that failed.
    pub failures: u64,
    /// Elements currently handed out (computed from the counters above).
    pub outstanding: usize,
}

/// The part of a pool its fast paths use without the lock: two counters,
/// each carrying in its top bit ([`FLAG`]) the flag its path tests, so
/// that one `lock inc` both counts and tests (the flags of the increment
/// give the new value's sign, which is the flag: a count never reaches
/// 2^63).
///
/// * `allocs`: allocations served by the backing; the flag is *dead*
///   (not created, or destroyed). Counting and testing in one atomic
///   operation orders a fast allocation against `destroy`'s `fetch_or` of
///   the flag, which also reads the count: either `destroy` counts the
///   allocation, or the allocation sees the flag (see [`alloc`]).
/// * `frees`: frees handed to the backing; the flag is *short*
///   (`curr_nr < min_nr`: frees must refill the reserve). A free that
///   finds it set takes its count back if the element goes to the
///   reserve after all (see [`free`]).
///
/// The flags mirror the locked state and change only under the lock, in
/// [`publish`] and `destroy`.
#[derive(Debug)]
pub struct PoolFast {
    allocs: AtomicU64,
    frees: AtomicU64,
}

impl Default for PoolFast {
    fn default() -> Self {
        Self::new()
    }
}

/// The flag bit of each [`PoolFast`] counter.
const FLAG: u64 = 1 << 63;

impl PoolFast {
    /// A pool not yet created (dead).
    pub const fn new() -> Self {
        Self {
            allocs: AtomicU64::new(FLAG),
            frees: AtomicU64::new(0),
        }
    }

    /// Counts an allocation served by the backing; whether the pool looked
    /// alive (`false`: the locked state must decide).
    #[inline(always)]
    fn count_alloc(&self) -> bool {
        // `fetch_add(1) + 1 >= 0` compiles to `lock inc` and a sign test.
        (self.allocs.fetch_add(1, Ordering::SeqCst).wrapping_add(1) as i64) >= 0
    }

    /// Takes back a count of [`Self::count_alloc`] (the element was given
    /// back unused).
    fn uncount_alloc(&self) {
        self.allocs.fetch_sub(1, Ordering::SeqCst);
    }

    /// Counts a free handed to the backing; whether the reserve looked full
    /// (`false`: it may need the element, and the lock decides).
    #[inline(always)]
    fn count_free(&self) -> bool {
        (self.frees.fetch_add(1, Ordering::SeqCst).wrapping_add(1) as i64) >= 0
    }

    /// Allocations and frees counted, without their flags. Frees are read
    /// first: every free read has its allocation counted before it, so
    /// the allocations read after cannot be fewer (a snapshot never shows
    /// more frees than allocations).
    fn counts(&self) -> (u64, u64) {
        let frees = self.frees.load(Ordering::SeqCst) & !FLAG;
        let allocs = self.allocs.load(Ordering::SeqCst) & !FLAG;
        (allocs, frees)
    }
}

/// Sets or clears the flag of one [`PoolFast`] counter, keeping its count.
/// Flags change only under the pool lock, which the caller holds, so the
/// load says exactly whether a locked write (on the fast paths' line) is
/// needed.
fn set_flag(counter: &AtomicU64, on: bool) {
    if (counter.load(Ordering::SeqCst) & FLAG != 0) == on {
        return;
    }
    if on {
        counter.fetch_or(FLAG, Ordering::SeqCst);
    } else {
        counter.fetch_and(!FLAG, Ordering::SeqCst);
    }
}

/// Mirrors the locked state into [`PoolFast`]; called under the lock after
/// every change of `live`, `curr_nr` or `min_nr`.
fn publish(fast: &PoolFast, g: &PoolState) {
    set_flag(&fast.allocs, !g.live);
    set_flag(&fast.frees, g.stats.curr_nr < g.stats.min_nr);
}

/// Elements handed out: every allocation minus every free, from the fast
/// counts `allocs` and `frees` (frees read no earlier than allocs, see
/// [`PoolFast::counts`]) and the locked ones.
fn outstanding(allocs: u64, frees: u64, g: &PoolState) -> usize {
    let allocs = allocs.wrapping_add(g.stats.allocs_reserve);
    let frees = frees.wrapping_add(g.stats.frees_to_reserve);
    allocs.wrapping_sub(frees) as usize
}

/// The lock-protected state of a pool.
///
/// # Invariants
///
/// `reserve` heads a chain of exactly `curr_nr` elements, each exclusively
/// owned by the pool, at least [`MIN_ELEMENT`] bytes, whose first word holds
/// the next element's address (null at the end).
#[derive(Debug)]
pub struct PoolState {
    reserve: Option<NonNull<u8>>,
    live: bool,
    waiters: usize,
    stats: PoolStats,
}

// SAFETY: The reserve elements are plain memory owned by the pool; the
// state is only accessed under the env's lock.
unsafe impl Send for PoolState {}

impl Default for PoolState {
    fn default() -> Self {
        Self::new()
    }
}

impl PoolState {
    /// Whether the pool is alive (created and not destroyed).
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// The state of a pool not yet created.
    pub const fn new() -> Self {
        Self {
            reserve: None,
            live: false,
            waiters: 0,
            stats: PoolStats {
                curr_nr: 0,
                min_nr: 0,
                allocs_backing: 0,
                allocs_reserve: 0,
                frees_to_reserve: 0,
                frees_to_backing: 0,
                waits: 0,
                wakeups: 0,
                failures: 0,
                outstanding: 0,
            },
        }
    }

    /// Adds an element to the reserve.
    ///
    /// # Safety
    ///
    /// `p` must be an element of the pool's backing (at least
    /// [`MIN_ELEMENT`] bytes) that nobody else uses from now on.
    unsafe fn push(&mut self, p: NonNull<u8>) {
        let next = self.reserve.map_or(core::ptr::null_mut(), NonNull::as_ptr);
        // SAFETY: `p` is ours and has room for one pointer (contract);
        // unaligned access because the backing's alignment is unknown.
        unsafe { p.as_ptr().cast::<*mut u8>().write_unaligned(next) };
        // INVARIANT: `p` links to the previous head.
        self.reserve = Some(p);
        self.stats.curr_nr = self.stats.curr_nr.wrapping_add(1);
    }

    /// Takes an element from the reserve.
    fn pop(&mut self) -> Option<NonNull<u8>> {
        let p = self.reserve?;
        // SAFETY: `p` heads the reserve chain, so it is ours and its first
        // word holds the next link (type invariant).
        let next = unsafe { p.as_ptr().cast::<*mut u8>().read_unaligned() };
        // INVARIANT: The rest of the chain is unchanged.
        self.reserve = NonNull::new(next);
        self.stats.curr_nr = self.stats.curr_nr.saturating_sub(1);
        Some(p)
    }
}

/// Everything a pool needs from its surroundings.
pub trait PoolEnv {
    /// The backing allocator.
    type Backing: Backing + ?Sized;

    /// A held lock on the pool state.
    type Guard<'a>: DerefMut<Target = PoolState>
    where
        Self: 'a;

    /// The backing allocator.
    fn backing(&self) -> &Self::Backing;

    /// Takes the pool lock (kernel: a `SpinLock`; never held while the
    /// backing allocator runs).
    fn lock(&self) -> Self::Guard<'_>;

    /// Releases the lock, sleeps until [`PoolEnv::notify_one`] (or a signal,
    /// or spuriously), and retakes it (kernel: `CondVar::wait_interruptible`).
    /// Returns whether a signal is pending: the allocation then gives up.
    fn wait(&self, guard: &mut Self::Guard<'_>) -> bool;

    /// Wakes one sleeper in [`PoolEnv::wait`].
    fn notify_one(&self);

    /// The lock-free part of the pool.
    fn fast(&self) -> &PoolFast;
}

/// Gives a chain of elements (linked like the reserve) back to the backing.
fn free_chain<P: PoolEnv + ?Sized>(env: &P, mut chain: PoolState) {
    while let Some(p) = chain.pop() {
        // SAFETY: Reserve elements came from `Backing::alloc` and are owned
        // by the pool alone; `p` is off every list now.
        unsafe { env.backing().free(p) };
    }
}

/// Creates the pool (`mempool_init()`): preallocates `min_nr` elements with
/// `req`, outside the lock. On failure everything obtained is freed.
pub fn create<P: PoolEnv + ?Sized>(
    env: &P,
    min_nr: usize,
    req: PageRequest,
) -> Result<(), PoolError> {
    if env.backing().element_size() < MIN_ELEMENT {
        return Err(PoolError::ElementTooSmall);
    }
    let mut got = PoolState::new();
    for _ in 0..min_nr {
        match env.backing().alloc(req) {
            // SAFETY: A fresh element of at least MIN_ELEMENT bytes.
            Some(p) => unsafe { got.push(p) },
            None => {
                free_chain(env, got);
                return Err(PoolError::NoMemory);
            }
        }
    }
    let mut g = env.lock();
    while let Some(p) = got.pop() {
        // SAFETY: Moved from one chain to the other; ours alone.
        unsafe { g.push(p) };
    }
    g.stats.min_nr = min_nr;
    g.live = true;
    publish(env.fast(), &g);
    Ok(())
}

/// Allocates an element (`mempool_alloc()`); see the module documentation.
///
/// The fast path, inlined into the caller, is the backing's own hit path
/// ([`Backing::alloc_hit`]) plus one `lock inc` that counts and tests the
/// dead flag; the rest is [`alloc_slow`].
#[inline(always)]
pub fn alloc<P: PoolEnv + ?Sized>(env: &P, req: PageRequest) -> Result<NonNull<u8>, PoolError> {
    if let Some(p) = env.backing().alloc_hit() {
        // As in `alloc_slow`: count and test the dead flag at once.
        if env.fast().count_alloc() {
            return Ok(p);
        }
        return keep_if_live(env, p);
    }
    alloc_slow(env, req)
}

/// A fast allocation found the dead flag set in [`PoolFast`]: the locked
/// state decides (a racing `destroy` may have refused); gives the element
/// back if the pool is dead.
#[cold]
#[inline(never)]
fn keep_if_live<P: PoolEnv + ?Sized>(env: &P, p: NonNull<u8>) -> Result<NonNull<u8>, PoolError> {
    if env.lock().live {
        return Ok(p);
    }
    env.fast().uncount_alloc();
    // SAFETY: Just allocated, never handed out.
    unsafe { env.backing().free(p) };
    Err(PoolError::Destroyed)
}

/// [`alloc`] past the backing's hit path: the whole `mempool_alloc()`.
#[inline(never)]
pub fn alloc_slow<P: PoolEnv + ?Sized>(
    env: &P,
    req: PageRequest,
) -> Result<NonNull<u8>, PoolError> {
    let fast = env.fast();
    loop {
        // Opportunistic attempt first: leave the reserve for emergencies.
        if let Some(p) = env.backing().alloc(req.opportunistic()) {
            // Count and test the dead flag in one atomic operation, which
            // `destroy`'s `fetch_or` of the flag is ordered against: either
            // it counts this allocation and refuses, or we see the flag and
            // ask the locked state, giving the element back if it is dead.
            if fast.count_alloc() || env.lock().live {
                return Ok(p);
            }
            fast.uncount_alloc();
            // SAFETY: Just allocated, never handed out.
            unsafe { env.backing().free(p) };
            return Err(PoolError::Destroyed);
        }
        let mut g = env.lock();
        if !g.live {
            return Err(PoolError::Destroyed);
        }
        if let Some(p) = g.pop() {
            g.stats.allocs_reserve = g.stats.allocs_reserve.wrapping_add(1);
            publish(fast, &g);
            return Ok(p);
        }
        if !req.may_sleep {
            g.stats.failures = g.stats.failures.wrapping_add(1);
            return Err(PoolError::NoMemory);
        }
        g.stats.waits = g.stats.waits.wrapping_add(1);
        g.waiters = g.waiters.wrapping_add(1);
        // Checking the reserve and sleeping happen under one lock, and
        // `free` refills under it, so a wakeup cannot be lost.
        let interrupted = env.wait(&mut g);
        g.waiters = g.waiters.saturating_sub(1);
        if interrupted {
            g.stats.failures = g.stats.failures.wrapping_add(1);
            return Err(PoolError::Interrupted);
        }
        // If the reserve got an element it is taken on the next round
        // (after one more opportunistic try, as mempool.c does).
    }
}

/// Frees an element (`mempool_free()`): refills the reserve if it is short
/// (waking a waiter), else returns it to the backing allocator.
///
/// # Safety
///
/// `p` must come from [`alloc`] on this pool and not have been freed since;
/// the caller must not use it afterwards.
#[inline(always)]
pub unsafe fn free<P: PoolEnv + ?Sized>(env: &P, p: NonNull<u8>) {
    // A full reserve stays full without us: skip the lock (mempool.c's
    // unlocked `curr_nr < min_nr` test), counting and testing the short
    // flag in one atomic operation.
    if !env.fast().count_free() {
        // SAFETY: Forwarded contract.
        return unsafe { free_short(env, p) };
    }
    // SAFETY: `p` came from the backing (contract) and is ours now.
    unsafe { env.backing().free(p) };
}

/// [`free`] while the reserve looked short, the free already counted as
/// one to the backing: refill the reserve under the lock if it still is
/// short (and take the count back), else back to the backing.
///
/// Counted early, the element may look freed to a `destroy` that runs
/// before we take the lock; it then finds the pool dead and goes to the
/// backing, as counted (the freeing caller still holds the pool, hence
/// its backing).
///
/// # Safety
///
/// As for [`free`].
#[inline(never)]
unsafe fn free_short<P: PoolEnv + ?Sized>(env: &P, p: NonNull<u8>) {
    let fast = env.fast();
    {
        let mut g = env.lock();
        if g.live && g.stats.curr_nr < g.stats.min_nr {
            // SAFETY: The caller gives the element up (contract).
            unsafe { g.push(p) };
            g.stats.frees_to_reserve = g.stats.frees_to_reserve.wrapping_add(1);
            // Under the lock, so `outstanding` never sees both counts.
            fast.frees.fetch_sub(1, Ordering::SeqCst);
            publish(fast, &g);
            if g.waiters > 0 {
                g.stats.wakeups = g.stats.wakeups.wrapping_add(1);
                env.notify_one();
            }
            return;
        }
    }
    // SAFETY: `p` came from the backing (contract) and is ours now.
    unsafe { env.backing().free(p) };
}

/// Changes the reserve target (`mempool_resize()`); see the module
/// documentation. Growth allocates with `req`, outside the lock.
pub fn resize<P: PoolEnv + ?Sized>(
    env: &P,
    new_min: usize,
    req: PageRequest,
) -> Result<(), PoolError> {
    let mut surplus = PoolState::new();
    {
        let mut g = env.lock();
        if !g.live {
            return Err(PoolError::Destroyed);
        }
        g.stats.min_nr = new_min;
        while g.stats.curr_nr > new_min {
            match g.pop() {
                // SAFETY: Moved from the reserve to a private chain.
                Some(p) => unsafe { surplus.push(p) },
                None => break,
            }
        }
        publish(env.fast(), &g);
    }
    free_chain(env, surplus);
    loop {
        {
            let g = env.lock();
            if !g.live {
                return Err(PoolError::Destroyed);
            }
            if g.stats.curr_nr >= g.stats.min_nr {
                return Ok(());
            }
        }
        let p = env.backing().alloc(req).ok_or(PoolError::NoMemory)?;
        let mut g = env.lock();
        if g.live && g.stats.curr_nr < g.stats.min_nr {
            // SAFETY: A fresh element.
            unsafe { g.push(p) };
            publish(env.fast(), &g);
            if g.waiters > 0 {
                g.stats.wakeups = g.stats.wakeups.wrapping_add(1);
                env.notify_one();
            }
        } else {
            drop(g);
            // SAFETY: A fresh element nobody saw.
            unsafe { env.backing().free(p) };
        }
    }
}

/// Destroys the pool (`mempool_destroy()`): refuses while elements are
/// outstanding, otherwise frees the reserve.
pub fn destroy<P: PoolEnv + ?Sized>(env: &P) -> Result<(), PoolError> {
    let mut chain = PoolState::new();
    {
        let mut g = env.lock();
        if !g.live {
            return Err(PoolError::Destroyed);
        }
        // The dead flag goes up and the allocations are counted in one
        // atomic operation (see `alloc`).
        let allocs = env.fast().allocs.fetch_or(FLAG, Ordering::SeqCst) & !FLAG;
        // Read after: a free counted here is of an element allocated before
        // the `fetch_or` (later allocations wait for our lock).
        let frees = env.fast().counts().1;
        let out = outstanding(allocs, frees, &g);
        if out > 0 {
            publish(env.fast(), &g);
            return Err(PoolError::Busy { outstanding: out });
        }
        g.live = false;
        g.stats.min_nr = 0;
        while let Some(p) = g.pop() {
            // SAFETY: Moved from the reserve to a private chain.
            unsafe { chain.push(p) };
        }
        publish(env.fast(), &g);
    }
    free_chain(env, chain);
    Ok(())
}

/// A statistics snapshot.
pub fn stats<P: PoolEnv + ?Sized>(env: &P) -> PoolStats {
    let fast = env.fast();
    let g = env.lock();
    let mut s = g.stats;
    (s.allocs_backing, s.frees_to_backing) = fast.counts();
    s.outstanding = outstanding(s.allocs_backing, s.frees_to_backing, &g);
    s
}
