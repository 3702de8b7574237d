// SPDX-License-Identifier: GPL-2.0

//! The rules a lab request must keep, checked before anything is
//! allocated: what LDD3 and Love teach (no sleeping allocation in atomic
//! context, no removed 2.6 flags, what slab and vmalloc accept), what keeps
//! the page allocator from warning (NOFAIL rules, one zone modifier), the
//! lab's size caps, and what an unprivileged caller may not ask for.
//!
//! Every size is checked with checked arithmetic here, so nothing after it
//! can overflow on a hostile request.

use kernel::{
    bindings,
    prelude::*, //
};

use super::table::LabLimits;
use super::Caller;
use crate::kalloc::gfp::{
    self,
    Gfp, //
};
use crate::kalloc::pages::PAGE_SIZE;
use crate::uapi::{
    self,
    alloc_flags,
    context,
    lab_backend as lb, //
};

/// The largest kmalloc: `KMALLOC_MAX_SIZE`, an order-10 run of pages. Also
/// the largest allocation outside process context: a longer one would keep
/// preemption or interrupts off for too long.
pub(crate) const KMALLOC_MAX: u64 = bindings::KMALLOC_MAX_SIZE as u64;

/// Largest object of our caches, our pools and the kernel's caches in the lab.
const CACHE_OBJECT_MAX: u64 = PAGE_SIZE as u64 * 8;

/// Largest NOFAIL allocation: order 1 (the page allocator warns above it).
const NOFAIL_MAX: u64 = (PAGE_SIZE as u64) << 1;

/// Whether a lab backend hands out whole pages (sized by order, not bytes).
pub(crate) fn is_pages(backend: u32) -> bool {
    matches!(
        backend,
        lb::ALLOC_PAGES | lb::GET_FREE_PAGES | lb::GET_ZEROED_PAGE
    )
}

/// Whether a lab backend is one of the large-buffer ones (root only,
/// sized in bytes, rounded to whole pages).
pub(crate) fn is_large(backend: u32) -> bool {
    matches!(backend, lb::ALLOC_PAGES_EXACT | lb::ALLOC_CONTIG | lb::CMA)
}

/// Checks a request; returns the kernel flags to allocate with.
///
/// `__GFP_NOWARN` is added unless `alloc_flags::WARN` (root only) asks for
/// the report: a failure the lab was asked to provoke must not print the
/// page allocator's warning and stack dump (which would read as a bug in the
/// kernel log); the memory-pressure lab shows that very report once, inside
/// a fence its test writes to the kernel log (issue 16, claim 6). `__GFP_ACCOUNT` is added for the
/// kernel's allocators, so lab memory is charged to the caller's memory
/// cgroup (our own caches share their slabs between users: not charged).
pub(crate) fn validate(req: &uapi::AllocRequest, limits: LabLimits, caller: Caller) -> Result<Gfp> {
    if req.backend >= lb::COUNT || req.context >= context::COUNT {
        return Err(EINVAL);
    }
    if req.flags & !alloc_flags::KNOWN != 0 || req.count == 0 {
        return Err(EINVAL);
    }
    if req.count > uapi::LAB_MAX_COUNT {
        return Err(E2BIG);
    }
    check_privilege(req, caller)?;
    let gfp = gfp::from_abi(req.gfp)?;
    let gfp = if req.flags & alloc_flags::WARN != 0 {
        gfp
    } else {
        gfp | gfp::NOWARN
    };
    check_context(req, gfp)?;
    check_size(req, limits)?;
    check_backend(req)?;
    // alloc_contig_pages() refuses __GFP_ACCOUNT (EINVAL), and CMA pages
    // belong to the reservation, not to a cgroup.
    let accounted = !matches!(
        req.backend,
        lb::OUR_CACHE | lb::OUR_MEMPOOL | lb::KERNEL_MEMPOOL | lb::ALLOC_CONTIG | lb::CMA
    );
    Ok(if accounted { gfp | gfp::ACCOUNT } else { gfp })
}

/// What only CAP_SYS_ADMIN may ask for:
/// - the emergency reserves: `__GFP_HIGH` (so `GFP_ATOMIC`), `__GFP_MEMALLOC`,
///   `__GFP_NOFAIL`, and our mempools' reserves (a user draining them would
///   make the kernel's, or the module's own devices', allocations fail);
/// - scarce or special memory: `__GFP_DMA` (the 16 MiB ISA zone) and
///   `__GFP_MOVABLE` (long-lived lab pages would pin movable and CMA
///   pageblocks, defeating compaction and memory offlining);
/// - allocations beyond the per-allocation default cap (`BIG`);
/// - the memory-pressure options (`alloc_flags::PRESSURE`): a failure report
///   in the kernel log, and scoped NOIO/NOFS reclaim (issue 16).
/// - the large-buffer backends (`alloc_pages_exact`, `alloc_contig_pages`,
///   CMA): contiguous runs are scarce for everyone, and a CMA buffer held
///   by a user is one a device driver cannot get.
fn check_privilege(req: &uapi::AllocRequest, caller: Caller) -> Result {
    use uapi::gfp as g;
    const ROOT_ONLY: u64 = g::HIGH | g::MEMALLOC | g::NOFAIL | g::DMA | g::MOVABLE;
    if caller.privileged {
        return Ok(());
    }
    if req.gfp & ROOT_ONLY != 0
        || req.flags & (alloc_flags::BIG | alloc_flags::PRESSURE) != 0
        || matches!(req.backend, lb::OUR_MEMPOOL | lb::KERNEL_MEMPOOL)
        || is_large(req.backend)
    {
        return Err(EPERM);
    }
    Ok(())
}

/// The context rules (LDD3, Love): nothing that sleeps outside process
/// context, and NOFAIL only where it may sleep.
fn check_context(req: &uapi::AllocRequest, gfp: Gfp) -> Result {
    let sleeps = gfp::may_sleep(gfp);
    if req.context != context::PROCESS && sleeps {
        return Err(EINVAL);
    }
    if gfp & gfp::NOFAIL != 0 && !sleeps {
        return Err(EINVAL);
    }
    // A memalloc scope is a property of the task: it means something only
    // for the ioctl's own task, in process context.
    let scoped = alloc_flags::SCOPE_NOIO | alloc_flags::SCOPE_NOFS;
    if req.flags & scoped != 0 && req.context != context::PROCESS {
        return Err(EINVAL);
    }
    Ok(())
}

/// Size and order against the backend's and the lab's caps.
fn check_size(req: &uapi::AllocRequest, limits: LabLimits) -> Result {
    let nofail = req.gfp & uapi::gfp::NOFAIL != 0;
    if is_pages(req.backend) {
        if req.order > bindings::MAX_PAGE_ORDER
            || (req.backend == lb::GET_ZEROED_PAGE && req.order != 0)
            || (nofail && req.order > 1)
        {
            return Err(EINVAL);
        }
        return Ok(());
    }
    if req.size == 0 || (nofail && req.size > NOFAIL_MAX) {
        return Err(EINVAL);
    }
    let cap = if req.flags & alloc_flags::BIG != 0 {
        limits.max_bytes
    } else {
        KMALLOC_MAX
    };
    // kmalloc itself cannot go past KMALLOC_MAX_SIZE (an order-10 run): the
    // lab says so with E2BIG instead of letting the kernel fail.
    // alloc_pages_exact() is one buddy allocation: the same bound.
    let kmalloc = matches!(
        req.backend,
        lb::KMALLOC | lb::KZALLOC | lb::KREALLOC | lb::ALLOC_PAGES_EXACT
    );
    let atomic = req.context != context::PROCESS;
    if req.size > cap || ((kmalloc || atomic) && req.size > KMALLOC_MAX) {
        return Err(E2BIG);
    }
    let cached = matches!(
        req.backend,
        lb::KMEM_CACHE | lb::OUR_CACHE | lb::OUR_MEMPOOL | lb::KERNEL_MEMPOOL
    );
    if cached && req.size > CACHE_OBJECT_MAX {
        return Err(E2BIG);
    }
    Ok(())
}

/// What each backend accepts.
fn check_backend(req: &uapi::AllocRequest) -> Result {
    let slab = matches!(
        req.backend,
        lb::KMALLOC
            | lb::KZALLOC
            | lb::KREALLOC
            | lb::KMEM_CACHE
            | lb::KERNEL_MEMPOOL
            | lb::KVMALLOC
    );
    if slab && req.gfp & (uapi::gfp::HIGHMEM | uapi::gfp::DMA32) != 0 {
        // GFP_SLAB_BUG_MASK: slab objects live in the direct map (no
        // highmem) and there are no kmalloc-dma32 caches; SLUB would warn.
        return Err(EINVAL);
    }
    if matches!(req.backend, lb::VMALLOC | lb::KVMALLOC) {
        // mm/vmalloc.c: GFP_VMALLOC_SUPPORTED; anything else (zone
        // modifiers above all) draws a "Fix your code!" warning. Since
        // LDD3's days __vmalloc() has learnt GFP_ATOMIC and GFP_NOWAIT,
        // but never from interrupt context. kvmalloc's vmalloc fallback
        // needs GFP_KERNEL, so it stays in process context.
        let sleeps = req.gfp & uapi::gfp::DIRECT_RECLAIM != 0;
        if req.gfp & !uapi::gfp::VMALLOC_SUPPORTED != 0 || req.context == context::HARDIRQ {
            return Err(EINVAL);
        }
        if req.backend == lb::KVMALLOC && (req.context != context::PROCESS || !sleeps) {
            return Err(EINVAL);
        }
    }
    if req.backend == lb::KERNEL_MEMPOOL && req.gfp & uapi::gfp::NOFAIL != 0 {
        // mempool_alloc() tries its backing cache without direct reclaim
        // first: __GFP_NOFAIL there is the page allocator's "NOFAIL without
        // reclaim" warning. A sleeping mempool_alloc() never fails anyway.
        return Err(EINVAL);
    }
    if req.backend == lb::KREALLOC && req.count != 1 {
        return Err(EINVAL);
    }
    if req.backend == lb::ALLOC_PAGES_EXACT && req.gfp & (uapi::gfp::COMP | uapi::gfp::HIGHMEM) != 0
    {
        // alloc_pages_exact() warns and drops both: it splits the run, and
        // returns an address.
        return Err(EINVAL);
    }
    if matches!(req.backend, lb::ALLOC_CONTIG | lb::CMA) {
        // Both migrate pages away to make room: they sleep, in process
        // context only. __alloc_contig_verify_gfp_mask() takes reclaim and
        // a few action flags; dma_alloc_attrs() warns on __GFP_COMP and
        // picks the zone itself, and CMA serves only blocking requests.
        use uapi::gfp as g;
        const CONTIG_OK: u64 = g::DIRECT_RECLAIM
            | g::KSWAPD_RECLAIM
            | g::IO
            | g::FS
            | g::ZERO
            | g::NOWARN
            | g::RETRY_MAYFAIL;
        if req.context != context::PROCESS
            || req.gfp & g::DIRECT_RECLAIM == 0
            || req.gfp & !CONTIG_OK != 0
        {
            return Err(EINVAL);
        }
    }
    Ok(())
}

/// The most bytes one allocation of a (validated) request can take: what it
/// is charged to the budgets before it is made. kmalloc rounds to a power of
/// two at most; vmalloc to pages; the page backends take their order.
pub(crate) fn charge_bound(req: &uapi::AllocRequest) -> u64 {
    if is_pages(req.backend) {
        return (PAGE_SIZE as u64) << req.order;
    }
    // `size` is at most `lab_max_mib` MiB here (checked above): no overflow.
    match req.backend {
        lb::VMALLOC | lb::ALLOC_PAGES_EXACT | lb::ALLOC_CONTIG | lb::CMA => {
            req.size.div_ceil(PAGE_SIZE as u64) * PAGE_SIZE as u64
        }
        _ => req.size.next_power_of_two().max(8),
    }
}
