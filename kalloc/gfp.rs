// SPDX-License-Identifier: GPL-2.0

//! GFP flags: the one place where our ABI's stable flag bits
//! ([`crate::uapi::gfp`]) and our page requests become the running
//! kernel's `__GFP_*` bits.
//!
//! The kernel's own bit numbers are not stable across versions (and depend on
//! the configuration: `__GFP_NOLOCKDEP` exists only with LOCKDEP), and most
//! `__GFP_*` macros carry a `__force` cast that bindgen cannot evaluate, so
//! the bits are rebuilt here from the `___GFP_*_BIT` enum the bindings do have.

use kernel::{
    bindings,
    prelude::*, //
};

use crate::ratelimit::pr_info_ratelimited;

use crate::allocator::{
    PageRequest,
    Zone, //
};
use crate::uapi::gfp as abi;

/// A kernel `gfp_t`.
pub(crate) type Gfp = bindings::gfp_t;

const fn bit(b: u32) -> Gfp {
    1 << b
}

/// `__GFP_DMA`.
pub(crate) const DMA: Gfp = bit(bindings::___GFP_DMA_BIT);
/// `__GFP_DMA32`.
pub(crate) const DMA32: Gfp = bit(bindings::___GFP_DMA32_BIT);
/// `__GFP_DIRECT_RECLAIM`: the flag that means "may sleep".
pub(crate) const DIRECT_RECLAIM: Gfp = bit(bindings::___GFP_DIRECT_RECLAIM_BIT);
/// `__GFP_NORETRY`.
pub(crate) const NORETRY: Gfp = bit(bindings::___GFP_NORETRY_BIT);
/// `__GFP_NOMEMALLOC`.
pub(crate) const NOMEMALLOC: Gfp = bit(bindings::___GFP_NOMEMALLOC_BIT);
/// `__GFP_NOWARN`.
pub(crate) const NOWARN: Gfp = bit(bindings::___GFP_NOWARN_BIT);
/// `__GFP_ZERO`.
pub(crate) const ZERO: Gfp = bit(bindings::___GFP_ZERO_BIT);
/// `__GFP_NOFAIL`.
pub(crate) const NOFAIL: Gfp = bit(bindings::___GFP_NOFAIL_BIT);
/// `__GFP_HIGHMEM`.
pub(crate) const HIGHMEM: Gfp = bit(bindings::___GFP_HIGHMEM_BIT);
/// `__GFP_HIGH`: may dip below the min watermark (the emergency reserve).
pub(crate) const HIGH: Gfp = bit(bindings::___GFP_HIGH_BIT);
/// `__GFP_ACCOUNT`: charged to the caller's memory cgroup.
pub(crate) const ACCOUNT: Gfp = bit(bindings::___GFP_ACCOUNT_BIT);

/// Our ABI bit → the kernel's bit, for every flag this kernel still has.
const MAP: [(u64, u32); 22] = [
    (abi::DMA, bindings::___GFP_DMA_BIT),
    (abi::DMA32, bindings::___GFP_DMA32_BIT),
    (abi::HIGHMEM, bindings::___GFP_HIGHMEM_BIT),
    (abi::MOVABLE, bindings::___GFP_MOVABLE_BIT),
    (abi::DIRECT_RECLAIM, bindings::___GFP_DIRECT_RECLAIM_BIT),
    (abi::KSWAPD_RECLAIM, bindings::___GFP_KSWAPD_RECLAIM_BIT),
    (abi::IO, bindings::___GFP_IO_BIT),
    (abi::FS, bindings::___GFP_FS_BIT),
    (abi::HIGH, bindings::___GFP_HIGH_BIT),
    (abi::ZERO, bindings::___GFP_ZERO_BIT),
    (abi::NOWARN, bindings::___GFP_NOWARN_BIT),
    (abi::RETRY_MAYFAIL, bindings::___GFP_RETRY_MAYFAIL_BIT),
    (abi::NOFAIL, bindings::___GFP_NOFAIL_BIT),
    (abi::NORETRY, bindings::___GFP_NORETRY_BIT),
    (abi::MEMALLOC, bindings::___GFP_MEMALLOC_BIT),
    (abi::NOMEMALLOC, bindings::___GFP_NOMEMALLOC_BIT),
    (abi::HARDWALL, bindings::___GFP_HARDWALL_BIT),
    (abi::THISNODE, bindings::___GFP_THISNODE_BIT),
    (abi::ACCOUNT, bindings::___GFP_ACCOUNT_BIT),
    (abi::COMP, bindings::___GFP_COMP_BIT),
    (abi::RECLAIMABLE, bindings::___GFP_RECLAIMABLE_BIT),
    (abi::WRITE, bindings::___GFP_WRITE_BIT),
];

/// Our ABI flags as kernel flags. Bits of flags removed since the seeds'
/// 2.6 kernels are refused with EINVAL and a (rate-limited) log line naming
/// what replaced them; unknown bits with EINVAL; so is more than one zone
/// modifier, which `gfp_zone()` would meet with a `VM_BUG_ON` (its table
/// marks DMA|DMA32, DMA|HIGHMEM and DMA32|HIGHMEM as GFP_ZONE_BAD).
pub(crate) fn from_abi(flags: u64) -> Result<Gfp> {
    for (bit, name, instead) in abi::REMOVED {
        if flags & bit != 0 {
            pr_info_ratelimited!("{name} no longer exists: use {instead}\n");
            return Err(EINVAL);
        }
    }
    if flags & !abi::KNOWN != 0 {
        return Err(EINVAL);
    }
    if (flags & (abi::DMA | abi::DMA32 | abi::HIGHMEM)).count_ones() > 1 {
        return Err(EINVAL);
    }
    // The two mobility bits together are no migratetype: mm/page_alloc.h's
    // gfp_migratetype() only VM_WARN_ONs and returns MIGRATE_PCPTYPES, whose
    // per-CPU list index is that of the next order's unmovable list, so the
    // page allocator hands out (and later frees) a run of the wrong order
    // and `pcp->count` drifts from the lists until free_pcppages_bulk()
    // spins forever under the zone lock (fuzzer seed 7, issue 14).
    if flags & (abi::MOVABLE | abi::RECLAIMABLE) == abi::MOVABLE | abi::RECLAIMABLE {
        return Err(EINVAL);
    }
    Ok(MAP
        .iter()
        .filter(|(a, _)| flags & a != 0)
        .fold(0, |gfp, (_, k)| gfp | bit(*k)))
}

/// Whether kernel flags allow sleeping (`gfpflags_allow_blocking()`).
pub(crate) fn may_sleep(gfp: Gfp) -> bool {
    gfp & DIRECT_RECLAIM != 0
}

/// The zone modifier of kernel flags, as our core's [`Zone`].
pub(crate) fn zone(gfp: Gfp) -> Zone {
    if gfp & DMA != 0 {
        Zone::Dma
    } else if gfp & DMA32 != 0 {
        Zone::Dma32
    } else {
        Zone::Normal
    }
}

/// Kernel flags for one of our page requests.
pub(crate) fn of_request(req: PageRequest) -> Gfp {
    let mut gfp = if req.may_sleep {
        bindings::GFP_KERNEL
    } else if req.no_retry {
        // mempool_alloc's first, opportunistic try: no reclaim, no reserves.
        bindings::GFP_NOWAIT | NOMEMALLOC
    } else if req.high {
        bindings::GFP_ATOMIC
    } else {
        // Not sleeping, and not asked to touch the emergency reserve (an
        // unprivileged lab request may not): GFP_NOWAIT.
        bindings::GFP_NOWAIT
    };
    if req.no_retry {
        gfp |= NORETRY;
    }
    if req.no_warn {
        gfp |= NOWARN;
    }
    gfp | match req.zone {
        Zone::Dma => DMA,
        Zone::Dma32 => DMA32,
        Zone::Normal => 0,
    }
}

/// Our page request for kernel flags (the lab's caches and pools).
pub(crate) fn to_request(gfp: Gfp) -> PageRequest {
    PageRequest {
        zone: zone(gfp),
        may_sleep: may_sleep(gfp),
        no_retry: gfp & NORETRY != 0,
        no_warn: gfp & NOWARN != 0,
        high: gfp & HIGH != 0,
    }
}
