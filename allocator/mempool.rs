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
//! allocation served by the backing is the backing's own fast path and
//! nothing else, and a free going back to it adds one load and one branch
//! ([`PoolFast`]: is the reserve short?). The pool counts nothing on
//! these paths; its backing does (a cache counts per CPU anyway), and
//! `destroy` closes the backing to allocations ([`Backing::freeze`]: for
//! a cache, a visit of every CPU's magazine, the grace period) before it
//! counts what is still out, so no fast allocation can slip past it.
//! * `resize(new_min)` shrinks by freeing the surplus, or grows by
//!   allocating (outside the lock). As in `mempool_resize()`, the new
//!   minimum stands even if growing fails part way: later frees top the
//!   reserve up.
//! * `destroy()` refuses while elements are outstanding (the kernel's
//!   `mempool_destroy()` would BUG; we return the count): at once, from
//!   the backing's statistics, when they show elements out; otherwise
//!   after freezing the backing for an exact count. A destroyed pool's
//!   backing stays frozen: an allocation fails, and finds the pool dead
//!   under the lock.
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
    fence,
    AtomicBool,
    AtomicUsize,
    Ordering, //
};

use super::cache::{
    self,
    CacheEnv, //
};
use super::page_source::PageRequest;

/// The smallest element a pool accepts: the reserve link lives in it.
pub const MIN_ELEMENT: usize = 8;

/// What a backing has allocated, as it counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackingUsage {
    /// Allocations that succeeded.
    pub allocs: u64,
    /// Frees.
    pub frees: u64,
    /// Elements allocated and not freed. Exact while the backing is frozen
    /// (nothing can be allocated, and nothing is half-way); otherwise a
    /// snapshot that operations on other CPUs may change as it is taken.
    pub live: usize,
}

/// The allocator behind a pool (`mempool_alloc_t`/`mempool_free_t`).
pub trait Backing: Sync {
    /// The size of every element, at least [`MIN_ELEMENT`].
    fn element_size(&self) -> usize;

    /// Allocates one element; `None` while frozen.
    fn alloc(&self, req: PageRequest) -> Option<NonNull<u8>>;

    /// Allocates one element if that is cheap and certain to succeed at
    /// once (a cache's magazine hit), else `None` with nothing done: the
    /// part of [`alloc`] worth inlining into the pool's callers. `None`
    /// while frozen.
    #[inline(always)]
    fn alloc_hit(&self) -> Option<NonNull<u8>> {
        None
    }

    /// Frees one element (also while frozen).
    ///
    /// # Safety
    ///
    /// `p` must come from [`Backing::alloc`] on this backing and not have
    /// been freed since; nothing may use it afterwards.
    unsafe fn free(&self, p: NonNull<u8>);

    /// Closes the backing to allocations: when this returns, every
    /// allocation fails until [`Backing::thaw`], and every one that
    /// succeeded before is counted in [`Backing::usage`]. Frees go on.
    /// Idempotent; may sleep (process context).
    fn freeze(&self);

    /// Reopens the backing after [`Backing::freeze`]; an open backing is
    /// left alone. Not concurrently with [`Backing::freeze`].
    fn thaw(&self);

    /// What the backing has allocated (may sleep).
    fn usage(&self) -> BackingUsage;
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

    fn freeze(&self) {
        cache::freeze(self.0);
    }

    fn thaw(&self) {
        cache::thaw(self.0);
    }

    fn usage(&self) -> BackingUsage {
        cache_usage(&cache::stats(self.0))
    }
}

/// A cache's [`BackingUsage`] from its statistics: the objects out of the
/// slabs (`active_objs`) that are not cached (in a magazine or the
/// depot's stash).
pub fn cache_usage(s: &super::stats::CacheStats) -> BackingUsage {
    BackingUsage {
        allocs: s.allocs,
        frees: s.frees,
        live: s.active_objs.saturating_sub(s.cached_objs),
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
        /// Elements handed out and not freed: exact when counted on the
        /// frozen backing, a snapshot of the backing's counters (which may
        /// move as they are read) when refused at first sight.
        outstanding: usize,
    },
    /// `destroy` while another `destroy` of the pool is in progress.
    Closing,
}

/// Pool counters and sizes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Elements in the reserve.
    pub curr_nr: usize,
    /// The reserve's target size.
    pub min_nr: usize,
    /// Allocations served by the backing allocator (its count, less the
    /// pool's own reserve fills).
    pub allocs_backing: u64,
    /// Allocations served by the reserve.
    pub allocs_reserve: u64,
    /// Frees that refilled the reserve.
    pub frees_to_reserve: u64,
    /// Frees handed to the backing allocator (its count, less the pool's
    /// own releases of reserve elements). The two counts are read at
    /// different moments, so a snapshot taken while the pool releases its
    /// reserve may dip below an earlier one.
    pub frees_to_backing: u64,
    /// Times a caller went to sleep waiting for an element.
    pub waits: u64,
    /// Wakeups sent to waiters: one per free or growth in `resize` that
    /// refilled the reserve while someone waited, one per `destroy` that
    /// decided while someone waited. Each wakes every waiter.
    pub wakeups: u64,
    /// Allocations that failed.
    pub failures: u64,
    /// Elements currently handed out: the backing's live elements less the
    /// reserve (exact when nothing runs meanwhile). Whoever else allocates
    /// from the backing directly counts here too (the backing is the
    /// pool's own, so nobody should), and so does an element whose free
    /// the backing refused (a caller's bug: it stays out).
    pub outstanding: usize,
}

/// The part of a pool read without the lock.
///
/// `short`: whether the reserve is short (`curr_nr < min_nr` on a live
/// pool), mirrored from the locked state by [`publish`]. A free that finds
/// it clear goes to the backing; one that finds it set asks the locked
/// state (see [`free`]). A stale value only moves a free to the other
/// path: the lock decides.
///
/// `thaws`: how many `destroy`s have reopened the backing they froze (a
/// refusal at first sight freezes nothing and counts nothing), bumped
/// under the lock. A sleeping allocation reads it before it tries the
/// backing: if it changed by the time the allocation holds the lock, the
/// try may have failed only because that `destroy` had the backing frozen,
/// and the backing is tried again instead of sleeping (the `destroy` woke
/// only the sleepers it saw).
#[derive(Debug)]
pub struct PoolFast {
    short: AtomicBool,
    thaws: AtomicUsize,
}

impl Default for PoolFast {
    fn default() -> Self {
        Self::new()
    }
}

impl PoolFast {
    /// A pool not yet created.
    pub const fn new() -> Self {
        Self {
            short: AtomicBool::new(false),
            thaws: AtomicUsize::new(0),
        }
    }
}

/// Mirrors the locked state into [`PoolFast`]; called under the lock after
/// every change of `live`, `curr_nr` or `min_nr`. Written only when it
/// changes: the free path reads that line on every free.
fn publish(fast: &PoolFast, g: &PoolState) {
    let short = g.live && g.stats.curr_nr < g.stats.min_nr;
    if fast.short.load(Ordering::Relaxed) != short {
        fast.short.store(short, Ordering::Relaxed);
    }
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
    /// A `destroy` has frozen the backing and not decided yet.
    closing: bool,
    waiters: usize,
    /// Backing allocations and frees the pool made for its reserve
    /// (`create`, `resize`, `destroy`), which the backing counts too.
    own_allocs: u64,
    own_frees: u64,
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

    /// Allocations sleeping in [`alloc`] for an element.
    pub fn waiters(&self) -> usize {
        self.waiters
    }

    /// The state of a pool not yet created.
    pub const fn new() -> Self {
        Self {
            reserve: None,
            live: false,
            closing: false,
            waiters: 0,
            own_allocs: 0,
            own_frees: 0,
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

    /// Moves every reserve element to a private chain, counted as released
    /// to the backing (the caller frees the chain there).
    fn take_reserve(&mut self) -> PoolState {
        let mut chain = PoolState::new();
        while let Some(p) = self.pop() {
            // SAFETY: Moved from the reserve to a private chain.
            unsafe { chain.push(p) };
            self.own_frees = self.own_frees.wrapping_add(1);
        }
        chain
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

    /// Releases the lock, sleeps until [`PoolEnv::notify_all`] (or a
    /// signal, or spuriously), and retakes it (kernel:
    /// `CondVar::wait_interruptible`). Returns whether a signal is pending:
    /// the allocation then gives up.
    fn wait(&self, guard: &mut Self::Guard<'_>) -> bool;

    /// Wakes every sleeper in [`PoolEnv::wait`]. There is no "wake one":
    /// a woken sleeper may leave without the element that woke it (its
    /// retry of the backing succeeds, or a signal is pending), and with the
    /// reserve full again no free takes the lock to wake the next one.
    /// mempool.c's waiters are not exclusive either, so its `wake_up()`
    /// wakes them all.
    fn notify_all(&self);

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

/// Creates the pool (`mempool_init()`): opens the backing, preallocates
/// `min_nr` elements with `req`, outside the lock. On failure everything
/// obtained is freed and the backing closed again (allocations then fail
/// with [`PoolError::Destroyed`]). Nothing may use the pool before this
/// returns.
pub fn create<P: PoolEnv + ?Sized>(
    env: &P,
    min_nr: usize,
    req: PageRequest,
) -> Result<(), PoolError> {
    if env.backing().element_size() < MIN_ELEMENT {
        return Err(PoolError::ElementTooSmall);
    }
    env.backing().thaw();
    let mut got = PoolState::new();
    for _ in 0..min_nr {
        match env.backing().alloc(req) {
            // SAFETY: A fresh element of at least MIN_ELEMENT bytes.
            Some(p) => unsafe { got.push(p) },
            None => {
                let n = got.stats.curr_nr as u64;
                free_chain(env, got);
                {
                    let mut g = env.lock();
                    g.own_allocs = g.own_allocs.wrapping_add(n);
                    g.own_frees = g.own_frees.wrapping_add(n);
                }
                env.backing().freeze();
                return Err(PoolError::NoMemory);
            }
        }
    }
    let mut g = env.lock();
    while let Some(p) = got.pop() {
        // SAFETY: Moved from one chain to the other; ours alone.
        unsafe { g.push(p) };
        g.own_allocs = g.own_allocs.wrapping_add(1);
    }
    g.stats.min_nr = min_nr;
    g.live = true;
    publish(env.fast(), &g);
    Ok(())
}

/// Allocates an element (`mempool_alloc()`); see the module documentation.
///
/// The fast path, inlined into the caller, is the backing's own hit path
/// ([`Backing::alloc_hit`]) and nothing else: a dead pool's backing is
/// frozen, so its hit path fails; the rest is [`alloc_slow`].
#[inline(always)]
pub fn alloc<P: PoolEnv + ?Sized>(env: &P, req: PageRequest) -> Result<NonNull<u8>, PoolError> {
    if let Some(p) = env.backing().alloc_hit() {
        return Ok(p);
    }
    alloc_slow(env, req)
}

/// [`alloc`] past the backing's hit path: the whole `mempool_alloc()`.
#[inline(never)]
pub fn alloc_slow<P: PoolEnv + ?Sized>(
    env: &P,
    req: PageRequest,
) -> Result<NonNull<u8>, PoolError> {
    let fast = env.fast();
    loop {
        let thaws = fast.thaws.load(Ordering::Acquire);
        // Opportunistic attempt first: leave the reserve for emergencies.
        // It succeeds only on an open backing: a live pool's (a `destroy`
        // in progress, which froze it, counts this element or never sees
        // it served).
        if let Some(p) = env.backing().alloc(req.opportunistic()) {
            return Ok(p);
        }
        let mut g = env.lock();
        if !g.live {
            return Err(PoolError::Destroyed);
        }
        if let Some(p) = g.pop() {
            g.stats.allocs_reserve = g.stats.allocs_reserve.wrapping_add(1);
            publish(fast, &g);
            drop(g);
            // Pairs with the fence in `free` (mempool.c's smp_wmb() after
            // remove_element()): whoever frees `p`, even if it got `p`
            // without a barrier of its own, sees `short` as this pop left
            // it, so the element refills the reserve. (As in mempool.c,
            // this relies on the hardware ordering how `p` reached the
            // freeing CPU; Rust's memory model alone does not promise it.)
            fence(Ordering::Release);
            return Ok(p);
        }
        if !req.may_sleep {
            g.stats.failures = g.stats.failures.wrapping_add(1);
            return Err(PoolError::NoMemory);
        }
        if fast.thaws.load(Ordering::Relaxed) != thaws {
            // A refused `destroy` reopened the backing since our try,
            // which may have failed only because it was frozen; that
            // `destroy` has already woken whom it saw waiting. Try again.
            continue;
        }
        g.stats.waits = g.stats.waits.wrapping_add(1);
        g.waiters = g.waiters.wrapping_add(1);
        // Checking the reserve and sleeping happen under one lock, and
        // `free` refills under it and wakes every sleeper (one that leaves
        // without the element must not strand the others); `destroy` wakes
        // everyone when it decides under it, or has bumped `thaws` (checked
        // above), so a wakeup cannot be lost.
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
    // Pairs with the fence in `alloc_slow` (mempool.c's smp_rmb()): the
    // flag read below is from after the allocation of `p`.
    fence(Ordering::Acquire);
    // A full reserve stays full without us: skip the lock (mempool.c's
    // unlocked `curr_nr < min_nr` test).
    if env.fast().short.load(Ordering::Relaxed) {
        // SAFETY: Forwarded contract.
        return unsafe { free_short(env, p) };
    }
    // SAFETY: `p` came from the backing (contract) and is ours now.
    unsafe { env.backing().free(p) };
}

/// [`free`] while the reserve looked short: refill the reserve under the
/// lock if it still is short, else back to the backing.
///
/// # Safety
///
/// As for [`free`].
#[inline(never)]
unsafe fn free_short<P: PoolEnv + ?Sized>(env: &P, p: NonNull<u8>) {
    {
        let mut g = env.lock();
        if g.live && g.stats.curr_nr < g.stats.min_nr {
            // SAFETY: The caller gives the element up (contract).
            unsafe { g.push(p) };
            g.stats.frees_to_reserve = g.stats.frees_to_reserve.wrapping_add(1);
            publish(env.fast(), &g);
            if g.waiters > 0 {
                g.stats.wakeups = g.stats.wakeups.wrapping_add(1);
                env.notify_all();
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
            g.own_frees = g.own_frees.wrapping_add(1);
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
        // Fails while a `destroy` has the backing frozen.
        let p = env.backing().alloc(req).ok_or(PoolError::NoMemory)?;
        let mut g = env.lock();
        g.own_allocs = g.own_allocs.wrapping_add(1);
        if g.live && g.stats.curr_nr < g.stats.min_nr {
            // SAFETY: A fresh element.
            unsafe { g.push(p) };
            publish(env.fast(), &g);
            if g.waiters > 0 {
                g.stats.wakeups = g.stats.wakeups.wrapping_add(1);
                env.notify_all();
            }
        } else {
            g.own_frees = g.own_frees.wrapping_add(1);
            drop(g);
            // SAFETY: A fresh element nobody saw.
            unsafe { env.backing().free(p) };
        }
    }
}

/// Destroys the pool (`mempool_destroy()`): refuses while elements are
/// outstanding, otherwise frees the reserve.
///
/// A first count, from the backing's statistics as they stand, refuses
/// at once if it shows anything out: no other user of the pool notices
/// the refusal. It is a snapshot taken while the CPUs run (the depot, then
/// each magazine in turn), so it can err either way: too high refuses a
/// destroy that could have succeeded (`Busy`, as if an element had been
/// out a moment), too low only sends us down the exact path. If it shows
/// nothing out, the count is made exact although the fast paths count
/// nothing: the backing is frozen ([`Backing::freeze`],
/// which waits until no allocation is half-way), so its live elements can
/// only go down, by frees, while we look; the reserve's part of them is
/// read under the lock, which every reserve allocation and refill takes.
/// Nothing is out: the pool dies, its backing stays frozen. Something is
/// out (allocated while we counted first, or missed by that snapshot): the
/// backing is thawed, `thaws` bumped and the pool goes on. A sleeping
/// allocation that failed on the frozen backing meanwhile sees the bump
/// and tries again, or is woken. An atomic allocation that finds the
/// reserve empty then, and a `resize` that grows, fail with
/// [`PoolError::NoMemory`] although memory is plentiful: the price of the
/// exact count, paid only inside this window. Process context only.
pub fn destroy<P: PoolEnv + ?Sized>(env: &P) -> Result<(), PoolError> {
    // Read outside the lock (the backing may sleep to count).
    let first = env.backing().usage().live;
    {
        let mut g = env.lock();
        if !g.live {
            return Err(PoolError::Destroyed);
        }
        if g.closing {
            return Err(PoolError::Closing);
        }
        let out = first.saturating_sub(g.stats.curr_nr);
        if out > 0 {
            return Err(PoolError::Busy { outstanding: out });
        }
        g.closing = true;
    }
    env.backing().freeze();
    // Outside the lock too: it can only fall meanwhile, by frees, or move
    // between the reserve and the users under the lock, which only makes
    // the count below err towards "out".
    let live = env.backing().usage().live;
    let chain = {
        let mut g = env.lock();
        let out = live.saturating_sub(g.stats.curr_nr);
        if out > 0 {
            drop(g);
            // Reopened before `closing` drops, so that no second `destroy`
            // counts while this one thaws.
            env.backing().thaw();
            let mut g = env.lock();
            g.closing = false;
            // Pairs with the Acquire load in `alloc_slow`: a sleeper that
            // sees the bump sees the backing open.
            env.fast().thaws.fetch_add(1, Ordering::Release);
            if g.waiters > 0 {
                g.stats.wakeups = g.stats.wakeups.wrapping_add(1);
                env.notify_all();
            }
            return Err(PoolError::Busy { outstanding: out });
        }
        g.closing = false;
        g.live = false;
        g.stats.min_nr = 0;
        let chain = g.take_reserve();
        publish(env.fast(), &g);
        if g.waiters > 0 {
            g.stats.wakeups = g.stats.wakeups.wrapping_add(1);
            env.notify_all();
        }
        chain
    };
    free_chain(env, chain);
    Ok(())
}

/// A statistics snapshot (may sleep: the backing counts).
pub fn stats<P: PoolEnv + ?Sized>(env: &P) -> PoolStats {
    let u = env.backing().usage();
    let g = env.lock();
    let mut s = g.stats;
    s.allocs_backing = u.allocs.saturating_sub(g.own_allocs);
    s.frees_to_backing = u.frees.saturating_sub(g.own_frees);
    s.outstanding = u.live.saturating_sub(s.curr_nr);
    s
}
