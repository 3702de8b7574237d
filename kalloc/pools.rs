// SPDX-License-Identifier: GPL-2.0

//! Our mempools in the kernel (LDD3 chapter 8, "mempools"; mm/mempool.c):
//! the core's [`crate::allocator::mempool`] given its environment.
//!
//! - The backing allocator is one of our caches, private to the pool (a
//!   shared cache would serve the pool from objects others freed, and the
//!   reserve would never be needed when a test wants it to be).
//! - The pool lock is a `SpinLockIrq` (the lab allocates from hard interrupt
//!   context), the wait a `CondVar` on it, as `mempool_alloc()` sleeps on
//!   its wait queue until `mempool_free()` refills the reserve. The wait is
//!   interruptible: a signal ends it with EINTR (a task stuck on an empty
//!   reserve can always be killed, and the module unloaded).
//!
//! The scull store takes its quanta from a pool without sleeping: a writer
//! holds its device's mutex, and the element it would wait for may be one
//! that only a trim of that same device (which needs the mutex) could give
//! back. So a write makes progress while the reserve lasts and then fails
//! with ENOMEM, for blocking and O_NONBLOCK writers alike. The lab's
//! GFP_KERNEL allocations do sleep, holding no lock.

use core::ptr::NonNull;
use core::sync::atomic::{
    AtomicU64,
    AtomicUsize,
    Ordering, //
};
use kernel::{
    new_condvar,
    new_spinlock_irq,
    prelude::*,
    sync::{
        global_lock,
        lock::{
            spinlock::SpinLockIrqBackend,
            Guard, //
        },
        Arc,
        CondVar,
        SpinLockIrq, //
    }, //
};

use super::caches::{
    self,
    CacheRef, //
};
use super::gfp::{
    self,
    Gfp, //
};
use super::registry::{
    self,
    Entry,
    Quota,
    Ref, //
};
use crate::allocator::mempool::{
    self,
    Backing,
    BackingUsage,
    PoolEnv,
    PoolError,
    PoolFast,
    PoolState, //
};
use crate::allocator::PageRequest;
use crate::ratelimit::{
    pr_err_ratelimited,
    pr_info_ratelimited, //
};
use crate::uapi;

/// The pool's backing allocator: its private cache.
pub(crate) struct CacheBacking(CacheRef);

impl Backing for CacheBacking {
    fn element_size(&self) -> usize {
        self.0.size()
    }

    fn alloc(&self, req: PageRequest) -> Option<NonNull<u8>> {
        self.0.alloc_req(req)
    }

    #[inline(always)]
    fn alloc_hit(&self) -> Option<NonNull<u8>> {
        crate::allocator::alloc_hit(&*self.0)
    }

    #[inline(always)]
    unsafe fn free(&self, p: NonNull<u8>) {
        if self.0.free(p).is_err() {
            refused();
        }
    }

    fn freeze(&self) {
        crate::allocator::freeze(&*self.0);
    }

    fn thaw(&self) {
        crate::allocator::thaw(&*self.0);
    }

    fn usage(&self) -> BackingUsage {
        mempool::cache_usage(&self.0.stats())
    }
}

#[cold]
#[inline(never)]
fn refused() {
    pr_err_ratelimited!("mempool: the backing cache refused an element\n");
}

/// One of our mempools.
#[pin_data(PinnedDrop)]
pub(crate) struct OurPool {
    backing: CacheBacking,
    #[pin]
    state: SpinLockIrq<PoolState>,
    #[pin]
    freed: CondVar,
    fast: PoolFast,
    destroy_refused: AtomicU64,
    users: AtomicUsize,
}

/// A counted reference to one of our pools, from [`get`].
pub(crate) type PoolRef = Ref<OurPool>;

impl Entry for OurPool {
    fn users(&self) -> &AtomicUsize {
        &self.users
    }

    fn idle(&self) -> bool {
        let s = mempool::stats(self);
        !self.state.lock().is_live() || s.outstanding == 0
    }
}

impl PoolEnv for OurPool {
    type Backing = CacheBacking;
    type Guard<'a> = Guard<'a, PoolState, SpinLockIrqBackend>;

    fn backing(&self) -> &CacheBacking {
        &self.backing
    }

    fn lock(&self) -> Self::Guard<'_> {
        self.state.lock()
    }

    fn wait(&self, guard: &mut Self::Guard<'_>) -> bool {
        self.freed.wait_interruptible(guard)
    }

    fn notify_all(&self) {
        self.freed.notify_all();
    }

    fn fast(&self) -> &PoolFast {
        &self.fast
    }
}

impl OurPool {
    fn create(size: usize, min_nr: usize) -> Result<Arc<Self>> {
        let cache = caches::get_private(size)?;
        let pool = Arc::pin_init(
            pin_init!(Self {
                backing: CacheBacking(cache),
                state <- new_spinlock_irq!(PoolState::new(), "OurPool::state"),
                freed <- new_condvar!("OurPool::freed"),
                fast: PoolFast::new(),
                destroy_refused: AtomicU64::new(0),
                users: AtomicUsize::new(0),
            }),
            GFP_KERNEL,
        )?;
        mempool::create(&*pool, min_nr, PageRequest::KERNEL).map_err(|_| ENOMEM)?;
        Ok(pool)
    }

    /// `mempool_alloc()`: `may_sleep` as the caller's GFP allows.
    #[inline(always)]
    pub(crate) fn alloc(&self, may_sleep: bool) -> Result<NonNull<u8>> {
        let req = if may_sleep {
            PageRequest::KERNEL
        } else {
            PageRequest::ATOMIC
        };
        mempool::alloc(self, req).map_err(to_errno)
    }

    /// `mempool_alloc()` with kernel GFP flags.
    pub(crate) fn alloc_gfp(&self, gfp: Gfp) -> Result<NonNull<u8>> {
        mempool::alloc(self, gfp::to_request(gfp)).map_err(to_errno)
    }

    /// `mempool_free()`.
    ///
    /// # Safety
    ///
    /// `ptr` came from [`Self::alloc`] or [`Self::alloc_gfp`] on this pool,
    /// has not been freed since, and is not used after: the reserve takes
    /// it without asking the backing cache (as `mempool_free()` does).
    #[inline(always)]
    pub(crate) unsafe fn free(&self, ptr: NonNull<u8>) {
        // SAFETY: Per the function's contract.
        unsafe { mempool::free(self, ptr) };
    }

    /// Element size.
    pub(crate) fn element_size(&self) -> usize {
        self.backing.element_size()
    }

    /// The cache behind the pool.
    pub(crate) fn cache(&self) -> &CacheRef {
        &self.backing.0
    }

    fn info(&self, index: u32) -> uapi::PoolInfo {
        let s = mempool::stats(self);
        let mut name = [0u8; uapi::NAME_LEN];
        let mut w = kernel::str::Formatter::new(&mut name[..uapi::NAME_LEN - 1]);
        // A name longer than the buffer is cut short, which is harmless.
        let _ =
            core::fmt::Write::write_fmt(&mut w, format_args!("ldd-pool-{}", self.element_size()));
        uapi::PoolInfo {
            index,
            live: u32::from(self.state.lock().is_live()),
            name,
            element_size: self.element_size() as u64,
            curr_nr: s.curr_nr as u64,
            min_nr: s.min_nr as u64,
            outstanding: s.outstanding as u64,
            allocs_backing: s.allocs_backing,
            allocs_reserve: s.allocs_reserve,
            frees_to_reserve: s.frees_to_reserve,
            frees_to_backing: s.frees_to_backing,
            waits: s.waits,
            wakeups: s.wakeups,
            failures: s.failures,
            destroy_refused: self.destroy_refused.load(Ordering::Relaxed),
        }
    }

    fn destroy(&self, index: u32) -> Result {
        match mempool::destroy(self) {
            Ok(()) | Err(PoolError::Destroyed) => Ok(()),
            Err(PoolError::Busy { outstanding }) => {
                self.destroy_refused.fetch_add(1, Ordering::Relaxed);
                pr_info_ratelimited!(
                    "pool {index}: destroy refused, {outstanding} elements still out\n"
                );
                Err(EBUSY)
            }
            // Another destroy of this pool is counting.
            Err(PoolError::Closing) => Err(EBUSY),
            Err(_) => Err(EINVAL),
        }
    }
}

/// The errno of a pool error.
fn to_errno(e: PoolError) -> Error {
    match e {
        PoolError::Interrupted => EINTR,
        PoolError::ElementTooSmall => EINVAL,
        _ => ENOMEM,
    }
}

#[pinned_drop]
impl PinnedDrop for OurPool {
    fn drop(self: Pin<&mut Self>) {
        // Only at unload or when the registry reuses an idle slot: elements
        // still out here are a bug (whoever holds them would use freed memory).
        if let Err(PoolError::Busy { outstanding }) = mempool::destroy(&*self) {
            pr_err!("pool: destroy refused, {outstanding} elements still out\n");
        }
    }
}

/// Most pools the registry holds.
const MAX_POOLS: usize = 16;

global_lock! {
    // SAFETY: Initialized in `init()` before any use.
    unsafe(uninit) static POOLS: Mutex<KVec<Arc<OurPool>>> = KVec::new();
}

/// The reserve of a new pool (module parameter `pool_min_nr`).
static MIN_NR: AtomicUsize = AtomicUsize::new(16);

/// Sets up the registry.
pub(crate) fn init(min_nr: usize) {
    MIN_NR.store(min_nr, Ordering::Relaxed);
    // SAFETY: Called once at module init before any other use.
    unsafe { POOLS.init() };
}

/// Destroys every pool (before the caches; all users are gone).
pub(crate) fn exit() {
    drop(core::mem::take(&mut *POOLS.lock()));
}

/// The live pool of `size`-byte elements, created on first use. ENOSPC when
/// the registry is full of pools in use. Only the module and CAP_SYS_ADMIN
/// reach it: a pool's reserve is an emergency store the lab does not give to
/// unprivileged callers.
pub(crate) fn get(size: usize) -> Result<PoolRef> {
    // The reserve is a list threaded through the elements: each must hold
    // a pointer. Checked before a backing cache is made for nothing.
    if size < mempool::MIN_ELEMENT {
        return Err(EINVAL);
    }
    let mut pools = POOLS.lock();
    registry::get_or_create(
        &mut pools,
        MAX_POOLS,
        Quota::Whole,
        |p| p.element_size() == size && p.state.lock().is_live(),
        |_| OurPool::create(size, MIN_NR.load(Ordering::Relaxed)),
    )
}

fn nth(index: u32) -> Result<PoolRef> {
    registry::nth(&POOLS.lock(), index)
}

/// `LDD_IOC_POOL_INFO`.
pub(crate) fn info(index: u32) -> Result<uapi::PoolInfo> {
    Ok(nth(index)?.info(index))
}

/// `LDD_IOC_POOL_RESIZE`.
pub(crate) fn resize(index: u32, min_nr: u32) -> Result {
    if min_nr == 0 || min_nr > uapi::POOL_MAX_MIN_NR {
        return Err(EINVAL);
    }
    mempool::resize(&*nth(index)?, min_nr as usize, PageRequest::KERNEL).map_err(|e| match e {
        PoolError::NoMemory => ENOMEM,
        _ => EINVAL,
    })
}

/// `LDD_IOC_POOL_DESTROY`.
pub(crate) fn destroy(index: u32) -> Result {
    nth(index)?.destroy(index)
}

/// Pools in `/proc/slabinfo`-like lines for debugfs.
pub(crate) fn write_pools(f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
    writeln!(
        f,
        "# name  live elem curr_nr min_nr out backing reserve waits wakeups failures"
    )?;
    let mut index = 0;
    while let Ok(i) = info(index) {
        writeln!(
            f,
            "{} {} {} {} {} {} {} {} {} {} {}",
            caches::name_str(&i.name),
            i.live,
            i.element_size,
            i.curr_nr,
            i.min_nr,
            i.outstanding,
            i.allocs_backing,
            i.allocs_reserve,
            i.waits,
            i.wakeups,
            i.failures
        )?;
        index += 1;
    }
    Ok(())
}
