// SPDX-License-Identifier: GPL-2.0

//! The ldd_alloc ioctl ABI: the one file both the kernel module and the
//! userspace crate compile, so the two can never disagree.
//!
//! Rules (Documentation/driver-api/ioctl.rst): fixed-size fields only, pointers
//! travel as `u64`, no implicit padding (every struct is a multiple of 8 bytes
//! with explicit `_pad` fields), and the command number encodes direction and
//! size exactly as the C `_IO/_IOR/_IOW/_IOWR` macros do.
//!
//! This file uses `core` only: no `kernel`, no `std`.

#![allow(dead_code)]

use core::mem::size_of;

// ---------------------------------------------------------------------------
// Command numbers, built the way include/uapi/asm-generic/ioctl.h builds them.
// ---------------------------------------------------------------------------

/// Bits of the command number field.
pub const IOC_NRBITS: u32 = 8;
/// Bits of the type ("magic") field.
pub const IOC_TYPEBITS: u32 = 8;
/// Bits of the argument size field.
pub const IOC_SIZEBITS: u32 = 14;
/// Shift of the number field.
pub const IOC_NRSHIFT: u32 = 0;
/// Shift of the type field.
pub const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
/// Shift of the size field.
pub const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
/// Shift of the direction field.
pub const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;
/// No data travels.
pub const IOC_NONE: u32 = 0;
/// Userspace writes, the driver reads.
pub const IOC_WRITE: u32 = 1;
/// The driver writes, userspace reads.
pub const IOC_READ: u32 = 2;

/// `_IOC(dir, type, nr, size)`.
pub const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    (dir << IOC_DIRSHIFT)
        | ((ty as u32) << IOC_TYPESHIFT)
        | ((nr as u32) << IOC_NRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
}
/// `_IO(type, nr)`.
pub const fn io(ty: u8, nr: u8) -> u32 {
    ioc(IOC_NONE, ty, nr, 0)
}
/// `_IOR(type, nr, T)`.
pub const fn ior<T>(ty: u8, nr: u8) -> u32 {
    ioc(IOC_READ, ty, nr, size_of::<T>())
}
/// `_IOW(type, nr, T)`.
pub const fn iow<T>(ty: u8, nr: u8) -> u32 {
    ioc(IOC_WRITE, ty, nr, size_of::<T>())
}
/// `_IOWR(type, nr, T)`.
pub const fn iowr<T>(ty: u8, nr: u8) -> u32 {
    ioc(IOC_READ | IOC_WRITE, ty, nr, size_of::<T>())
}
/// `_IOC_TYPE(cmd)`.
pub const fn ioc_type(cmd: u32) -> u8 {
    (cmd >> IOC_TYPESHIFT) as u8
}
/// `_IOC_NR(cmd)`.
pub const fn ioc_nr(cmd: u32) -> u8 {
    (cmd >> IOC_NRSHIFT) as u8
}
/// `_IOC_SIZE(cmd)`.
pub const fn ioc_size(cmd: u32) -> usize {
    ((cmd >> IOC_SIZESHIFT) & ((1 << IOC_SIZEBITS) - 1)) as usize
}

// ---------------------------------------------------------------------------
// The scull ioctls of LDD3 chapter 6 (scull.h), same magic and numbering.
// "S" sets through a pointer, "T" tells through the argument value, "G" gets
// through a pointer, "Q" queries through the return value, "X" exchanges
// through a pointer, "H" shifts (tell + query).
// ---------------------------------------------------------------------------

/// The scull magic number, also used by every ldd_alloc command.
pub const MAGIC: u8 = b'k';

/// Empty the device and restore the default quantum and qset.
pub const SCULL_IOCRESET: u32 = io(MAGIC, 0);
/// Set the quantum from `*(int *)arg`.
pub const SCULL_IOCSQUANTUM: u32 = iow::<i32>(MAGIC, 1);
/// Set the qset from `*(int *)arg`.
pub const SCULL_IOCSQSET: u32 = iow::<i32>(MAGIC, 2);
/// Set the quantum to the value of `arg`.
pub const SCULL_IOCTQUANTUM: u32 = io(MAGIC, 3);
/// Set the qset to the value of `arg`.
pub const SCULL_IOCTQSET: u32 = io(MAGIC, 4);
/// Write the quantum to `*(int *)arg`.
pub const SCULL_IOCGQUANTUM: u32 = ior::<i32>(MAGIC, 5);
/// Write the qset to `*(int *)arg`.
pub const SCULL_IOCGQSET: u32 = ior::<i32>(MAGIC, 6);
/// Return the quantum.
pub const SCULL_IOCQQUANTUM: u32 = io(MAGIC, 7);
/// Return the qset.
pub const SCULL_IOCQQSET: u32 = io(MAGIC, 8);
/// Set the quantum from `*(int *)arg`, write the old one back there.
pub const SCULL_IOCXQUANTUM: u32 = iowr::<i32>(MAGIC, 9);
/// Set the qset from `*(int *)arg`, write the old one back there.
pub const SCULL_IOCXQSET: u32 = iowr::<i32>(MAGIC, 10);
/// Set the quantum to `arg`, return the old one.
pub const SCULL_IOCHQUANTUM: u32 = io(MAGIC, 11);
/// Set the qset to `arg`, return the old one.
pub const SCULL_IOCHQSET: u32 = io(MAGIC, 12);
/// Every scull command, by number (0..=12).
pub const SCULL_IOCTLS: [u32; 13] = [
    SCULL_IOCRESET,
    SCULL_IOCSQUANTUM,
    SCULL_IOCSQSET,
    SCULL_IOCTQUANTUM,
    SCULL_IOCTQSET,
    SCULL_IOCGQUANTUM,
    SCULL_IOCGQSET,
    SCULL_IOCQQUANTUM,
    SCULL_IOCQQSET,
    SCULL_IOCXQUANTUM,
    SCULL_IOCXQSET,
    SCULL_IOCHQUANTUM,
    SCULL_IOCHQSET,
];
/// The highest scull command number (13 and 14 are scullpipe's, not ours).
pub const SCULL_IOC_MAXNR: u8 = 12;

/// Largest quantum the module accepts (a quantum is one allocation): the
/// largest power of two that every backend can hand out in one piece. Our
/// caches keep their slab header inside the slab, so a 4 MiB object (the
/// largest slab, order 10) does not fit; 2 MiB does.
pub const QUANTUM_MAX: u32 = 1 << 21;
/// Largest qset the module accepts (a qset is an array of quantum pointers).
pub const QSET_MAX: u32 = 1 << 16;

// ---------------------------------------------------------------------------
// ldd_alloc's own commands: same magic, numbers from 32 up.
// ---------------------------------------------------------------------------

/// Version of this ABI, reported by [`LDD_IOC_INFO`].
pub const ABI_VERSION: u32 = 1;

/// Which allocator backs a device's quanta (scull, scullc, scullp, scullv).
pub mod backend {
    /// The kernel's kmalloc (LDD3 chapter 3 scull).
    pub const KMALLOC: u32 = 0;
    /// Our own lookaside cache (scullc).
    pub const CACHE: u32 = 1;
    /// Whole pages of a chosen order (scullp).
    pub const PAGES: u32 = 2;
    /// vmalloc (scullv).
    pub const VMALLOC: u32 = 3;
    /// Our own mempool over our cache.
    pub const MEMPOOL: u32 = 4;
    /// Number of store backends.
    pub const COUNT: u32 = 5;
}

/// Answer of [`LDD_IOC_INFO`]: what the module and this device are.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    /// [`ABI_VERSION`].
    pub abi_version: u32,
    /// Module version, `major << 16 | minor << 8 | patch`.
    pub module_version: u32,
    /// This device's minor index (0 for /dev/ldd_alloc0).
    pub index: u32,
    /// The store backend ([`backend`]).
    pub backend: u32,
    /// Bytes per quantum in use by this device.
    pub quantum: u32,
    /// Quanta per quantum set in use by this device.
    pub qset: u32,
    /// Page order of each quantum with the pages backend.
    pub order: u32,
    /// Number of quantum sets held.
    pub qsets: u32,
    /// Device size: the highest byte written + 1.
    pub size: u64,
    /// Bytes of memory held for data (quanta, not bookkeeping).
    pub bytes_held: u64,
    /// Number of quanta allocated.
    pub quanta: u64,
}

/// Read the [`DeviceInfo`] of this device.
pub const LDD_IOC_INFO: u32 = ior::<DeviceInfo>(MAGIC, 32);
/// Choose the backend of this device: `arg` is a [`backend`] value. The
/// device must be empty (EBUSY otherwise): data never moves between backends.
pub const LDD_IOC_SET_BACKEND: u32 = io(MAGIC, 33);

// Compile-time checks: the layout is the ABI.
const _: () = assert!(size_of::<DeviceInfo>() == 56);
const _: () = assert!(SCULL_IOCGQUANTUM == 0x8004_6b05);
const _: () = assert!(SCULL_IOCXQSET == 0xc004_6b0a);

// ---------------------------------------------------------------------------
// Our caches, pools and page source: statistics, shrinking, fault injection.
// ---------------------------------------------------------------------------

/// Length of a cache or pool name, NUL-padded.
pub const NAME_LEN: usize = 32;

/// One of our caches, as `/proc/slabinfo` and our own counters show it.
/// Ask with `index` set (0, 1, ...); ENOENT past the last cache.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheInfo {
    /// In: which cache.
    pub index: u32,
    /// Debug flags of the cache ([`cache_flags`]).
    pub flags: u32,
    /// The cache's name, NUL-padded.
    pub name: [u8; NAME_LEN],
    /// Objects out of their slabs: held by users, or cached in the per-CPU
    /// magazines (as in /proc/slabinfo, where per-CPU objects count too).
    pub active_objs: u64,
    /// Of `active_objs`, those cached free: in per-CPU magazines and in the
    /// cache's stash of whole magazine batches.
    pub cached_objs: u64,
    /// Of `cached_objs`, those in the stash (Bonwick's depot of full
    /// magazines, SLUB's barn).
    pub stashed_objs: u64,
    /// Objects in all slabs.
    pub num_objs: u64,
    /// Object size asked for at creation.
    pub objsize: u64,
    /// Distance between objects in a slab (size, alignment and debug zones).
    pub stride: u64,
    /// Objects per slab.
    pub objperslab: u64,
    /// Pages per slab (2^order).
    pub pagesperslab: u64,
    /// Slabs with some objects free.
    pub partial_slabs: u64,
    /// Slabs with no object free.
    pub full_slabs: u64,
    /// Slabs with every object free.
    pub empty_slabs: u64,
    /// Allocations served.
    pub allocs: u64,
    /// Frees accepted.
    pub frees: u64,
    /// Allocations served by a per-CPU magazine without the cache lock.
    pub cpu_alloc_hits: u64,
    /// Frees absorbed by a per-CPU magazine without the cache lock.
    pub cpu_free_hits: u64,
    /// Magazine refills from the stash or the slabs.
    pub refills: u64,
    /// Magazine drains to the stash or the slabs.
    pub drains: u64,
    /// Slabs taken from the page allocator.
    pub slabs_created: u64,
    /// Slabs given back to the page allocator.
    pub slabs_freed: u64,
    /// Frees refused: not an object of this cache.
    pub refused_foreign: u64,
    /// Frees refused: inside a slab but not at an object's start.
    pub refused_misaligned: u64,
    /// Frees refused: the object was already free.
    pub refused_double: u64,
    /// Poison found overwritten at allocation (a write after free).
    pub poison_errors: u64,
    /// Red zones found overwritten at free (a write past the object).
    pub redzone_errors: u64,
}

/// Debug flags of a cache (slub_debug's letters).
pub mod cache_flags {
    /// P: poison free objects, check the poison at allocation.
    pub const POISON: u32 = 1 << 0;
    /// Z: red zones around objects, checked at free.
    pub const RED_ZONE: u32 = 1 << 1;
    /// Align objects to the hardware cache line (SLAB_HWCACHE_ALIGN).
    pub const HWCACHE_ALIGN: u32 = 1 << 2;
    /// Slabs from ZONE_DMA (SLAB_CACHE_DMA).
    pub const CACHE_DMA: u32 = 1 << 3;
    /// The private backing cache of one of our mempools.
    pub const POOL_PRIVATE: u32 = 1 << 4;
    /// A private cache of [`super::LDD_IOC_BAD_FREE`].
    pub const TEST_PRIVATE: u32 = 1 << 5;
}

/// Read one of our caches.
pub const LDD_IOC_CACHE_INFO: u32 = iowr::<CacheInfo>(MAGIC, 40);
/// Flush every per-CPU magazine and give every empty slab back; returns the
/// number of pages freed.
pub const LDD_IOC_SHRINK: u32 = io(MAGIC, 41);

/// Zones as this ABI numbers them.
pub mod zone {
    /// ZONE_DMA: below 16 MiB on x86.
    pub const DMA: u32 = 0;
    /// ZONE_DMA32: below 4 GiB.
    pub const DMA32: u32 = 1;
    /// ZONE_NORMAL: the rest (there is no ZONE_HIGHMEM on 64-bit).
    pub const NORMAL: u32 = 2;
    /// Number of zones reported.
    pub const COUNT: usize = 3;
}

/// The module's page source: pages out now, per zone, and fault injection.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageStats {
    /// Pages held by our caches and pools now, per [`zone`].
    pub pages_out: [i64; zone::COUNT],
    /// Runs allocated since load, per zone.
    pub allocs: [u64; zone::COUNT],
    /// Runs freed since load, per zone.
    pub frees: [u64; zone::COUNT],
    /// Allocations the kernel refused.
    pub failures: u64,
    /// Allocations failed on purpose by [`LDD_IOC_FAULT`].
    pub injected: u64,
    /// Failures still pending from the last [`FaultSpec::fail_next`].
    pub fail_next: i64,
    /// Whether every allocation fails now.
    pub fail_all: u32,
    /// The owner failures are limited to (0: any).
    pub fail_owner: u32,
}

/// Read the page source's counters.
pub const LDD_IOC_PAGE_STATS: u32 = ior::<PageStats>(MAGIC, 42);

/// Make our page source fail (deterministic fault injection).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultSpec {
    /// Fail the next this many page allocations (0: none).
    pub fail_next: i64,
    /// Non-zero: fail every page allocation until cleared.
    pub fail_all: u32,
    /// Only allocations of the cache with this index + 1 fail (0: any).
    pub owner: u32,
}

/// Arm or clear fault injection.
pub const LDD_IOC_FAULT: u32 = iow::<FaultSpec>(MAGIC, 43);

/// What [`LDD_IOC_BAD_FREE`] does wrong, on a test cache it creates.
pub mod bad_free {
    /// Free a kmalloc'ed object into our cache.
    pub const FOREIGN_KMALLOC: u32 = 0;
    /// Free an object of another of our caches.
    pub const FOREIGN_CACHE: u32 = 1;
    /// Free a pointer into the middle of a live object.
    pub const MISALIGNED: u32 = 2;
    /// Free the same object twice.
    pub const DOUBLE: u32 = 3;
    /// Free a pointer to the slab header.
    pub const SLAB_HEADER: u32 = 4;
    /// On a debug cache (poison, red zones): write into an object after
    /// freeing it; the next allocation finds the poison broken.
    pub const WRITE_AFTER_FREE: u32 = 5;
    /// On a debug cache: write one byte past an object, then free it; the
    /// free finds the red zone broken.
    pub const OVERFLOW: u32 = 6;
    /// Number of scenarios.
    pub const COUNT: u32 = 7;
}

/// Refusal codes [`LDD_IOC_BAD_FREE`] returns: what the cache said.
pub mod refusal {
    /// The cache accepted the free: a bug.
    pub const ACCEPTED: i32 = 0;
    /// Refused: not an object of this cache.
    pub const FOREIGN: i32 = 1;
    /// Refused: not at an object's start.
    pub const MISALIGNED: i32 = 2;
    /// Refused: already free.
    pub const DOUBLE: i32 = 3;
    /// Detected: the poison of a free object was overwritten (the object is
    /// quarantined, another one handed out).
    pub const POISON: i32 = 4;
    /// Detected and refused: the red zone after an object was overwritten.
    pub const RED_ZONE: i32 = 5;
}

/// Do one bad free (`arg`: a [`bad_free`] scenario); returns the [`refusal`].
pub const LDD_IOC_BAD_FREE: u32 = io(MAGIC, 44);
/// `kfree(NULL)`, `kvfree(NULL)` and `free_pages(0, 0)`: all do nothing, by
/// design (LDD3, Love); returns 0.
pub const LDD_IOC_FREE_NULL: u32 = io(MAGIC, 45);

const _: () = assert!(size_of::<CacheInfo>() == 40 + 24 * 8);
const _: () = assert!(size_of::<PageStats>() == 9 * 8 + 3 * 8 + 8);
const _: () = assert!(size_of::<FaultSpec>() == 16);

// ---------------------------------------------------------------------------
// The allocation lab: allocate as a driver would, see what the kernel did.
// ---------------------------------------------------------------------------

/// GFP flags as this ABI numbers them: our own stable bits, grouped the way
/// Robert Love's "Kernel memory allocation" groups them (zone modifiers,
/// action modifiers, type flags). The module maps them to the running
/// kernel's `__GFP_*` bits in one place (`gfp.rs`).
pub mod gfp {
    // Zone modifiers: where the memory may come from.
    /// `__GFP_DMA`: ZONE_DMA only (ISA DMA, below 16 MiB on x86).
    pub const DMA: u64 = 1 << 0;
    /// `__GFP_DMA32`: below 4 GiB.
    pub const DMA32: u64 = 1 << 1;
    /// `__GFP_HIGHMEM`: high memory allowed (no such zone on 64-bit: Normal).
    pub const HIGHMEM: u64 = 1 << 2;
    /// `__GFP_MOVABLE`: the page can be migrated (ZONE_MOVABLE allowed).
    pub const MOVABLE: u64 = 1 << 3;

    // Action modifiers: how the allocator may behave.
    /// `__GFP_DIRECT_RECLAIM`: the caller may sleep to reclaim memory.
    pub const DIRECT_RECLAIM: u64 = 1 << 8;
    /// `__GFP_KSWAPD_RECLAIM`: wake kswapd when low on memory.
    pub const KSWAPD_RECLAIM: u64 = 1 << 9;
    /// `__GFP_IO`: may start physical I/O.
    pub const IO: u64 = 1 << 10;
    /// `__GFP_FS`: may call into the filesystem layer.
    pub const FS: u64 = 1 << 11;
    /// `__GFP_HIGH`: high priority, may dip into reserves.
    pub const HIGH: u64 = 1 << 12;
    /// `__GFP_ZERO`: return zeroed memory.
    pub const ZERO: u64 = 1 << 13;
    /// `__GFP_NOWARN`: a failure prints no warning.
    pub const NOWARN: u64 = 1 << 14;
    /// `__GFP_RETRY_MAYFAIL`: try hard, but may fail (was `__GFP_REPEAT`).
    pub const RETRY_MAYFAIL: u64 = 1 << 15;
    /// `__GFP_NOFAIL`: retry forever (dangerous: refused above order 1).
    pub const NOFAIL: u64 = 1 << 16;
    /// `__GFP_NORETRY`: give up early, no OOM killer.
    pub const NORETRY: u64 = 1 << 17;
    /// `__GFP_MEMALLOC`: may use all reserves (only for freeing memory).
    pub const MEMALLOC: u64 = 1 << 18;
    /// `__GFP_NOMEMALLOC`: never use the emergency reserves.
    pub const NOMEMALLOC: u64 = 1 << 19;
    /// `__GFP_HARDWALL`: enforce the cpuset memory policy.
    pub const HARDWALL: u64 = 1 << 20;
    /// `__GFP_THISNODE`: this NUMA node only.
    pub const THISNODE: u64 = 1 << 21;
    /// `__GFP_ACCOUNT`: charge the allocation to the memory cgroup.
    pub const ACCOUNT: u64 = 1 << 22;
    /// `__GFP_COMP`: a compound page (pages backends).
    pub const COMP: u64 = 1 << 23;
    /// `__GFP_RECLAIMABLE`: the page is reclaimable (slab).
    pub const RECLAIMABLE: u64 = 1 << 24;
    /// `__GFP_WRITE`: the page will be written to soon.
    pub const WRITE: u64 = 1 << 25;
    /// Every bit above that this kernel has.
    pub const KNOWN: u64 = ((1 << 4) - 1) | (((1 << 26) - 1) & !((1 << 8) - 1));

    // Flags of the seeds' 2.6 kernels that are gone: refused with EINVAL.
    /// `__GFP_WAIT` (2.6): removed in 4.4, now `__GFP_DIRECT_RECLAIM`.
    pub const WAIT: u64 = 1 << 40;
    /// `__GFP_REPEAT` (2.6): removed in 4.13, now `__GFP_RETRY_MAYFAIL`.
    pub const REPEAT: u64 = 1 << 41;
    /// `__GFP_COLD` (2.6): removed in 4.15, the page allocator no longer
    /// keeps cache-cold pages apart.
    pub const COLD: u64 = 1 << 42;
    /// `__GFP_NOWAIT`'s 2.6 meaning (`GFP_ATOMIC & ~__GFP_HIGH`) is now the
    /// type flag `GFP_NOWAIT`; `__GFP_HIGHMEM` is still here. The removed
    /// bits, with what replaced them.
    pub const REMOVED: [(u64, &str, &str); 3] = [
        (WAIT, "__GFP_WAIT", "__GFP_DIRECT_RECLAIM (Linux 4.4)"),
        (REPEAT, "__GFP_REPEAT", "__GFP_RETRY_MAYFAIL (Linux 4.13)"),
        (COLD, "__GFP_COLD", "nothing: removed in Linux 4.15"),
    ];

    /// The flags `__vmalloc()` accepts (mm/vmalloc.c, GFP_VMALLOC_SUPPORTED):
    /// no zone modifiers, no reserves, no compound pages.
    pub const VMALLOC_SUPPORTED: u64 = DIRECT_RECLAIM
        | KSWAPD_RECLAIM
        | IO
        | FS
        | HIGH
        | NOWARN
        | NOFAIL
        | ZERO
        | NORETRY
        | RETRY_MAYFAIL
        | ACCOUNT
        | HARDWALL;

    // Type flags: the combinations drivers use.
    /// `GFP_KERNEL`: process context, may sleep.
    pub const KERNEL: u64 = DIRECT_RECLAIM | KSWAPD_RECLAIM | IO | FS;
    /// `GFP_ATOMIC`: cannot sleep, may use reserves.
    pub const ATOMIC: u64 = HIGH | KSWAPD_RECLAIM;
    /// `GFP_NOWAIT`: cannot sleep, no reserves, no warning.
    pub const NOWAIT: u64 = KSWAPD_RECLAIM | NOWARN;
    /// `GFP_NOIO`: may sleep, no I/O (block layer paths).
    pub const NOIO: u64 = DIRECT_RECLAIM | KSWAPD_RECLAIM;
    /// `GFP_NOFS`: may sleep and do I/O, no filesystem calls.
    pub const NOFS: u64 = DIRECT_RECLAIM | KSWAPD_RECLAIM | IO;
    /// `GFP_USER`: for user-space pages, cpuset enforced.
    pub const USER: u64 = KERNEL | HARDWALL;
    /// `GFP_HIGHUSER`: user pages, high memory allowed.
    pub const HIGHUSER: u64 = USER | HIGHMEM;
    /// Named flags, for parsing and printing: (name, bits).
    pub const NAMES: [(&str, u64); 33] = [
        ("GFP_KERNEL", KERNEL),
        ("GFP_ATOMIC", ATOMIC),
        ("GFP_NOWAIT", NOWAIT),
        ("GFP_NOIO", NOIO),
        ("GFP_NOFS", NOFS),
        ("GFP_USER", USER),
        ("GFP_HIGHUSER", HIGHUSER),
        ("GFP_DMA", DMA),
        ("GFP_DMA32", DMA32),
        ("__GFP_DMA", DMA),
        ("__GFP_DMA32", DMA32),
        ("__GFP_HIGHMEM", HIGHMEM),
        ("__GFP_MOVABLE", MOVABLE),
        ("__GFP_DIRECT_RECLAIM", DIRECT_RECLAIM),
        ("__GFP_KSWAPD_RECLAIM", KSWAPD_RECLAIM),
        ("__GFP_IO", IO),
        ("__GFP_FS", FS),
        ("__GFP_HIGH", HIGH),
        ("__GFP_ZERO", ZERO),
        ("__GFP_NOWARN", NOWARN),
        ("__GFP_RETRY_MAYFAIL", RETRY_MAYFAIL),
        ("__GFP_NOFAIL", NOFAIL),
        ("__GFP_NORETRY", NORETRY),
        ("__GFP_MEMALLOC", MEMALLOC),
        ("__GFP_NOMEMALLOC", NOMEMALLOC),
        ("__GFP_HARDWALL", HARDWALL),
        ("__GFP_THISNODE", THISNODE),
        ("__GFP_ACCOUNT", ACCOUNT),
        ("__GFP_COMP", COMP),
        ("__GFP_RECLAIMABLE", RECLAIMABLE),
        ("__GFP_WAIT", WAIT),
        ("__GFP_REPEAT", REPEAT),
        ("__GFP_COLD", COLD),
    ];
}

/// Allocators of the lab.
pub mod lab_backend {
    /// `kmalloc(size, flags)`.
    pub const KMALLOC: u32 = 0;
    /// `kzalloc(size, flags)`.
    pub const KZALLOC: u32 = 1;
    /// `krealloc(handle's memory, size, flags)`: resizes [`super::AllocRequest::handle`].
    pub const KREALLOC: u32 = 2;
    /// The kernel's own `kmem_cache` of objects of `size` (the baseline).
    pub const KMEM_CACHE: u32 = 3;
    /// Our own cache of objects of `size`.
    pub const OUR_CACHE: u32 = 4;
    /// Our own mempool (over our cache of `size`).
    pub const OUR_MEMPOOL: u32 = 5;
    /// `alloc_pages(flags, order)`: a `struct page`.
    pub const ALLOC_PAGES: u32 = 6;
    /// `__get_free_pages(flags, order)`: an address.
    pub const GET_FREE_PAGES: u32 = 7;
    /// `get_zeroed_page(flags)`: one zeroed page.
    pub const GET_ZEROED_PAGE: u32 = 8;
    /// `vmalloc(size)` (`__vmalloc(size, flags)`).
    pub const VMALLOC: u32 = 9;
    /// `kvmalloc(size, flags)`: kmalloc, falling back to vmalloc.
    pub const KVMALLOC: u32 = 10;
    /// `alloc_pages_exact(size, flags)`: `size` rounded up to pages, not to
    /// a power of two (the rest of the order's run goes back at once).
    /// Root only.
    pub const ALLOC_PAGES_EXACT: u32 = 11;
    /// `alloc_contig_pages(size / PAGE_SIZE, flags)`: a physically
    /// contiguous run found by migrating pages away, beyond
    /// `MAX_PAGE_ORDER` (CONFIG_CONTIG_ALLOC). Root only, process context.
    pub const ALLOC_CONTIG: u32 = 12;
    /// `dma_alloc_coherent()` of `size` bytes on the module's own faux
    /// device: served from the boot-time CMA reservation (`cma=`). Root
    /// only, process context.
    pub const CMA: u32 = 13;
    /// The kernel's own mempool (`mempool_create()` over a kernel cache of
    /// `size`, reserve `pool_min_nr`): beside ours under pressure. Root only,
    /// as ours; its reserve is read with `LDD_IOC_KERNEL_POOL_INFO`.
    pub const KERNEL_MEMPOOL: u32 = 14;
    /// Number of lab backends.
    pub const COUNT: u32 = 15;
    /// Names, indexed by value.
    pub const NAMES: [&str; COUNT as usize] = [
        "kmalloc",
        "kzalloc",
        "krealloc",
        "kmem_cache",
        "our_cache",
        "our_mempool",
        "alloc_pages",
        "__get_free_pages",
        "get_zeroed_page",
        "vmalloc",
        "kvmalloc",
        "alloc_pages_exact",
        "alloc_contig_pages",
        "cma",
        "kernel_mempool",
    ];
}

/// Where the allocation runs.
pub mod context {
    /// Process context: the ioctl's own task; may sleep.
    pub const PROCESS: u32 = 0;
    /// Atomic: inside a spinlock, preemption off; must not sleep.
    pub const ATOMIC: u32 = 1;
    /// Hard interrupt context: an `irq_work` run on this CPU.
    pub const HARDIRQ: u32 = 2;
    /// Number of contexts.
    pub const COUNT: u32 = 3;
    /// Names, indexed by value.
    pub const NAMES: [&str; COUNT as usize] = ["process", "atomic", "hardirq"];
}

/// Flags of an [`AllocRequest`].
pub mod alloc_flags {
    /// Free each allocation right after measuring it (no handle kept).
    pub const FREE_NOW: u32 = 1 << 0;
    /// Fill the memory with 0xa5 before freeing/keeping: shows it is usable.
    pub const TOUCH: u32 = 1 << 1;
    /// Allow more than the default limits (module param lab_max_mib).
    pub const BIG: u32 = 1 << 2;
    /// Do not add `__GFP_NOWARN`: a failure prints the page allocator's
    /// "page allocation failure" report (issue 16, claim 6). Root only.
    pub const WARN: u32 = 1 << 3;
    /// Run the allocation inside `memalloc_noio_save()`/`_restore()`: every
    /// allocation of the scope behaves as GFP_NOIO. Root only, process
    /// context only.
    pub const SCOPE_NOIO: u32 = 1 << 4;
    /// Run the allocation inside `memalloc_nofs_save()`/`_restore()`: every
    /// allocation of the scope behaves as GFP_NOFS. Root only, process
    /// context only.
    pub const SCOPE_NOFS: u32 = 1 << 5;
    /// The options of the memory-pressure lab (root only).
    pub const PRESSURE: u32 = WARN | SCOPE_NOIO | SCOPE_NOFS;
    /// Every defined flag.
    pub const KNOWN: u32 = FREE_NOW | TOUCH | BIG | PRESSURE;
}

/// One request to the lab: `count` allocations of `size` bytes (or
/// `2^order` pages) by `backend`, with `gfp`, in `context`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocRequest {
    /// A [`lab_backend`] value.
    pub backend: u32,
    /// A [`context`] value.
    pub context: u32,
    /// Our [`gfp`] bits.
    pub gfp: u64,
    /// Bytes (not used by the page backends).
    pub size: u64,
    /// Page order (page backends), 0..=10.
    pub order: u32,
    /// How many allocations, 1..=[`LAB_MAX_COUNT`].
    pub count: u32,
    /// For krealloc: the handle to resize.
    pub handle: u32,
    /// [`alloc_flags`].
    pub flags: u32,
    /// User pointer to `count` [`AllocReply`] entries, filled in.
    pub replies: u64,
}

/// What the kernel did for one allocation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocReply {
    /// The handle to free it with (0 with FREE_NOW).
    pub handle: u32,
    /// The [`zone`] of the first page.
    pub zone: u32,
    /// Bytes asked for.
    pub requested: u64,
    /// Bytes usable: `ksize()`, the cache's object size, the pages' size.
    pub actual: u64,
    /// Lowest physical address of the memory.
    pub phys_lo: u64,
    /// Highest physical address (last byte).
    pub phys_hi: u64,
    /// Nanoseconds the allocation call took (guest clock).
    pub latency_ns: u64,
    /// Number of pages spanned.
    pub pages: u32,
    /// 1 if the pages are physically contiguous.
    pub contiguous: u32,
    /// 1 if every byte read back zero before any write.
    pub zeroed: u32,
    /// 1 if the address is in the vmalloc area, 0 if in the direct map.
    pub vmalloc_area: u32,
}

/// Most allocations in one request.
pub const LAB_MAX_COUNT: u32 = 1024;

/// Allocate; returns how many succeeded (all, or ENOMEM / the errno).
pub const LDD_IOC_ALLOC: u32 = iowr::<AllocRequest>(MAGIC, 48);
/// Free one handle (`arg`); EINVAL if it is not a live handle of this file.
pub const LDD_IOC_FREE: u32 = io(MAGIC, 49);
/// Free every handle of this file; returns how many.
pub const LDD_IOC_FREE_ALL: u32 = io(MAGIC, 50);

/// A live allocation of this file.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandleInfo {
    /// The handle.
    pub handle: u32,
    /// The [`lab_backend`] that made it.
    pub backend: u32,
    /// Bytes asked for.
    pub requested: u64,
    /// Bytes usable.
    pub actual: u64,
    /// The [`zone`] of its first page.
    pub zone: u32,
    /// Page order (page backends).
    pub order: u32,
}

/// Argument of [`LDD_IOC_LIST`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListRequest {
    /// In: room in `entries`.
    pub max: u32,
    /// Out: live handles (may exceed `max`: only `max` are written).
    pub count: u32,
    /// User pointer to `max` [`HandleInfo`] entries.
    pub entries: u64,
}

/// List this file's live handles.
pub const LDD_IOC_LIST: u32 = iowr::<ListRequest>(MAGIC, 51);

/// The kernel stack, measured from the ioctl path.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackInfo {
    /// THREAD_SIZE: the whole kernel stack of a task, in bytes.
    pub thread_size: u64,
    /// Bytes in use below the top of the stack in the ioctl handler.
    pub used_in_ioctl: u64,
    /// Bytes left at that point.
    pub left_in_ioctl: u64,
    /// 1 if the stack is virtually mapped (CONFIG_VMAP_STACK, guard pages).
    pub vmap_stack: u32,
    /// PAGE_SIZE.
    pub page_size: u32,
}

/// Measure the kernel stack from inside an ioctl.
pub const LDD_IOC_STACK: u32 = ior::<StackInfo>(MAGIC, 52);

const _: () = assert!(size_of::<AllocRequest>() == 48);
const _: () = assert!(size_of::<AllocReply>() == 64);
const _: () = assert!(size_of::<HandleInfo>() == 32);
const _: () = assert!(size_of::<ListRequest>() == 16);
const _: () = assert!(size_of::<StackInfo>() == 32);

// ---------------------------------------------------------------------------
// Our mempools.
// ---------------------------------------------------------------------------

/// One of our mempools. Ask with `index` set; ENOENT past the last pool.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolInfo {
    /// In: which pool.
    pub index: u32,
    /// 1 while the pool is alive (0 once destroyed).
    pub live: u32,
    /// The pool's name, NUL-padded.
    pub name: [u8; NAME_LEN],
    /// Element size in bytes.
    pub element_size: u64,
    /// Elements in the reserve now.
    pub curr_nr: u64,
    /// The reserve's target size.
    pub min_nr: u64,
    /// Elements handed out and not freed.
    pub outstanding: u64,
    /// Allocations served by the backing cache.
    pub allocs_backing: u64,
    /// Allocations served by the reserve.
    pub allocs_reserve: u64,
    /// Frees that refilled the reserve.
    pub frees_to_reserve: u64,
    /// Frees given back to the backing cache.
    pub frees_to_backing: u64,
    /// Times an allocation slept waiting for a free.
    pub waits: u64,
    /// Wake-ups sent by frees.
    pub wakeups: u64,
    /// Allocations that failed.
    pub failures: u64,
    /// Destroys refused because elements were out.
    pub destroy_refused: u64,
}

/// Read one of our mempools.
pub const LDD_IOC_POOL_INFO: u32 = iowr::<PoolInfo>(MAGIC, 56);

/// Argument of [`LDD_IOC_POOL_RESIZE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolResize {
    /// Which pool.
    pub index: u32,
    /// The new reserve target, 1..=[`POOL_MAX_MIN_NR`].
    pub min_nr: u32,
}

/// Largest reserve a pool may keep.
pub const POOL_MAX_MIN_NR: u32 = 4096;

/// Grow or shrink a pool's reserve (`mempool_resize()`).
pub const LDD_IOC_POOL_RESIZE: u32 = iow::<PoolResize>(MAGIC, 57);
/// Destroy pool `arg` (`mempool_destroy()`): EBUSY, counted and logged,
/// while elements are out.
pub const LDD_IOC_POOL_DESTROY: u32 = io(MAGIC, 58);

/// One of the lab's kernel mempools ([`lab_backend::KERNEL_MEMPOOL`]):
/// `mempool_t` keeps no counters, so this is its reserve as it stands.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelPoolInfo {
    /// In: which pool (ENOENT past the last).
    pub index: u32,
    /// Zero.
    pub reserved: u32,
    /// Element size in bytes.
    pub element_size: u64,
    /// The reserve's size (`pool->min_nr`).
    pub min_nr: u64,
    /// Elements in the reserve now (`pool->curr_nr`).
    pub curr_nr: u64,
}

/// Read one of the lab's kernel mempools.
pub const LDD_IOC_KERNEL_POOL_INFO: u32 = iowr::<KernelPoolInfo>(MAGIC, 59);

const _: () = assert!(size_of::<PoolInfo>() == 40 + 12 * 8);
const _: () = assert!(size_of::<KernelPoolInfo>() == 8 + 3 * 8);
const _: () = assert!(size_of::<PoolResize>() == 8);

// ---------------------------------------------------------------------------
// Benchmarks: timing loops that run inside the kernel (kbench/).
// ---------------------------------------------------------------------------

/// Command numbers from here up belong to the benchmarks.
pub const BENCH_NR_FIRST: u8 = 64;

/// Command numbers of the device itself (INFO, SET_BACKEND): 32..=39.
pub const DEVICE_NR_FIRST: u8 = 32;
/// Command numbers of our caches and page source: 40..=47.
pub const KALLOC_NR_FIRST: u8 = 40;
/// Command numbers of the allocation lab: 48..=55.
pub const LAB_NR_FIRST: u8 = 48;
/// Command numbers of our mempools: 56..=63.
pub const POOL_NR_FIRST: u8 = 56;
/// Command numbers of the memory-pressure lab: 80..=87.
pub const PRESSURE_NR_FIRST: u8 = 80;
/// One past the last command number of the memory-pressure lab.
pub const PRESSURE_NR_END: u8 = 88;

/// What a benchmark run times ([`BenchRun::op`]).
pub mod bench_op {
    /// `iters` alloc+free pairs, one after the other.
    pub const PAIR: u32 = 0;
    /// `burst` allocations then `burst` frees, repeated to about `iters`.
    pub const BURST: u32 = 1;
    /// alloc+free pairs of a mempool whose backing allocator fails, so
    /// every allocation comes from the reserve and every free refills it.
    pub const RESERVE: u32 = 2;
    /// `iters` of one primitive our cache's fast path uses ([`bench_prim`]
    /// in `alloc`): evidence of where its time goes.
    pub const PRIM: u32 = 3;
    /// Remote frees: `iters` objects allocated by a kthread on CPU 0 and
    /// freed by one on CPU 1 as they come (`threads` must be 2).
    pub const REMOTE: u32 = 4;
    /// Number of operations.
    pub const COUNT: u32 = 5;
    /// Names, indexed by value.
    pub const NAMES: [&str; COUNT as usize] = ["pair", "burst", "reserve", "prim", "remote"];
}

/// Primitives timed by [`bench_op::PRIM`] (in [`BenchRun::alloc`]).
pub mod bench_prim {
    /// `local_interrupt_disable()` and the guard's drop.
    pub const IRQ_GUARD: u32 = 0;
    /// An uncontended `SpinLockIrq` lock and unlock.
    pub const SPINLOCK_IRQ: u32 = 1;
    /// `copy_from_kernel_nofault()` of 16 bytes (our free's header check).
    pub const READ_NOFAULT: u32 = 2;
    /// `CpuId::current()` with interrupts off (one guard around the loop).
    pub const CPU_ID: u32 = 3;
    /// Our per-CPU slot: an `AtomicFlag` cmpxchg (Acquire) and a Release
    /// store, what each fast-path alloc or free takes and gives back.
    pub const SLOT_TRYLOCK: u32 = 4;
    /// One atomic RMW on a bitmap word (`fetch_or` then `fetch_and`: what
    /// an alloc and a free do to the object's allocated bit), per RMW.
    pub const BITMAP_RMW: u32 = 5;
    /// Number of primitives.
    pub const COUNT: u32 = 6;
    /// Names, indexed by value.
    pub const NAMES: [&str; COUNT as usize] = [
        "irq_guard",
        "spinlock_irq",
        "read_nofault_16",
        "cpu_id",
        "slot_trylock",
        "bitmap_rmw",
    ];
}

/// Which allocator a benchmark run uses ([`BenchRun::alloc`]).
pub mod bench_alloc {
    /// Our cache of `size`-byte objects (`caches::get(size, 0)`).
    pub const OUR_CACHE: u32 = 0;
    /// A SLUB `kmem_cache` of `size`-byte objects, flags 0.
    pub const KMEM_CACHE: u32 = 1;
    /// `kmalloc(size, GFP_KERNEL)` / `kfree()`.
    pub const KMALLOC: u32 = 2;
    /// Our mempool of `size`-byte elements (`pools::get(size)`).
    pub const OUR_POOL: u32 = 3;
    /// The kernel's mempool over a `kmem_cache` (`mempool_alloc_slab`).
    pub const KERNEL_POOL: u32 = 4;
    /// `kmem_cache_alloc_bulk()` / `kmem_cache_free_bulk()` (bursts only).
    pub const KMEM_BULK: u32 = 5;
    /// `alloc_pages(GFP_KERNEL, order)` / `__free_pages()`; `size` is the order.
    pub const ALLOC_PAGES: u32 = 6;
    /// `__get_free_pages(GFP_KERNEL, order)` / `free_pages()`; `size` is the order.
    pub const GET_FREE_PAGES: u32 = 7;
    /// `__vmalloc(PAGE_SIZE << order, GFP_KERNEL)` / `kvfree()`; `size` is the order.
    pub const VMALLOC: u32 = 8;
    /// Our cache's `alloc_bulk()` / `free_bulk()` (bursts only).
    pub const OUR_BULK: u32 = 9;
    /// The kernel's mempool (`mempool_create_node()`) over a private cache
    /// of ours: with [`super::bench_op::RESERVE`], the like-for-like
    /// baseline of our pool's reserve path (both over our emptied cache).
    pub const KERNEL_POOL_OURS: u32 = 10;
    /// Number of allocators.
    pub const COUNT: u32 = 11;
    /// Names, indexed by value.
    pub const NAMES: [&str; COUNT as usize] = [
        "our_cache",
        "kmem_cache",
        "kmalloc",
        "our_mempool",
        "kernel_mempool",
        "kmem_cache_bulk",
        "alloc_pages",
        "__get_free_pages",
        "vmalloc",
        "our_cache_bulk",
        "kernel_mempool_over_ours",
    ];
}

/// Most kthreads one benchmark run may use (one per CPU).
pub const BENCH_MAX_THREADS: usize = 8;
/// Fewest operations in one run.
pub const BENCH_MIN_ITERS: u32 = 1000;
/// Most operations in one run.
pub const BENCH_MAX_ITERS: u32 = 10_000_000;
/// Largest object size of the byte allocators.
pub const BENCH_MAX_SIZE: u32 = 8192;
/// Smallest object size of the byte allocators.
pub const BENCH_MIN_SIZE: u32 = 8;
/// Largest page order of the page allocators.
pub const BENCH_MAX_ORDER: u32 = 3;
/// Largest burst.
pub const BENCH_MAX_BURST: u32 = 65536;

/// One benchmark run, timed inside the kernel: fields up to `threads` are
/// in, the rest out. Times are raw: subtract the empty loop (`base_*`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BenchRun {
    /// In: a [`bench_op`].
    pub op: u32,
    /// In: a [`bench_alloc`].
    pub alloc: u32,
    /// In: object size in bytes, or the page order of the page allocators.
    pub size: u32,
    /// In: objects per burst ([`bench_op::BURST`]), 1..=[`BENCH_MAX_BURST`].
    pub burst: u32,
    /// In: operations (pairs), [`BENCH_MIN_ITERS`]..=[`BENCH_MAX_ITERS`].
    pub iters: u32,
    /// In: 0 runs in the ioctl's task; N runs in N kthreads bound to CPUs
    /// 0..N, released together ([`bench_op::PAIR`] only).
    pub threads: u32,
    /// Out: operations (alloc+free pairs) timed per thread.
    pub ops: u64,
    /// Out: nanoseconds of an empty loop of `ops` iterations.
    pub base_ns: u64,
    /// Out: TSC cycles of the same empty loop (0 where there is no TSC).
    pub base_cycles: u64,
    /// Out: nanoseconds (`ktime_get_mono_fast_ns`) of each thread's timed
    /// loop (index 0 only when `threads` is 0).
    pub ns: [u64; BENCH_MAX_THREADS],
    /// Out: TSC cycles of each thread's timed loop.
    pub cycles: [u64; BENCH_MAX_THREADS],
}

/// Run one benchmark (one allocator, one case); EBUSY while another runs.
pub const LDD_IOC_BENCH: u32 = iowr::<BenchRun>(MAGIC, 64);

const _: () = assert!(size_of::<BenchRun>() == 24 + 3 * 8 + 2 * 8 * BENCH_MAX_THREADS);

// ---------------------------------------------------------------------------
// Memory pressure: what reclaim asked of our caches (issue 16).
// ---------------------------------------------------------------------------

/// The counts of our caches' shrinker (`shrinker_alloc()`/`shrinker_register()`):
/// what kswapd and direct reclaim asked of them, and what they gave back.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShrinkerInfo {
    /// 1 if the shrinker is registered.
    pub registered: u32,
    /// `seeks` the shrinker was registered with (0: objects cost no I/O to
    /// recreate, so reclaim scans half of them per pass).
    pub seeks: u32,
    /// `count_objects` calls.
    pub count_calls: u64,
    /// `scan_objects` calls.
    pub scan_calls: u64,
    /// Calls that found the registry busy and returned `SHRINK_STOP`/0
    /// (reclaim entered from inside our own registry: never wait there).
    pub busy: u64,
    /// Objects `count_objects` reported freeable at its last call (those of
    /// empty slabs, and in magazines as each CPU last published them).
    pub last_count: u64,
    /// Pages given back to the page allocator by the shrinks that
    /// `scan_objects` queued (a work item, outside reclaim).
    pub pages_freed: u64,
}

/// Read the shrinker's counts.
pub const LDD_IOC_SHRINKER_INFO: u32 = ior::<ShrinkerInfo>(MAGIC, PRESSURE_NR_FIRST);

const _: () = assert!(size_of::<ShrinkerInfo>() == 8 + 5 * 8);

// ---------------------------------------------------------------------------
// Per-CPU variables (LDD3 chapter 8, "Per-CPU Variables"): 72..=79.
// ---------------------------------------------------------------------------

/// Command numbers of the per-CPU variables: 72..=79.
pub const PERCPU_NR_FIRST: u8 = 72;
/// The last command number of the per-CPU variables.
pub const PERCPU_NR_LAST: u8 = 79;

/// One CPU's copy of a device's per-CPU counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PercpuCopy {
    /// The CPU.
    pub cpu: u32,
    /// 1 if the CPU is online now.
    pub online: u32,
    /// `read(2)` calls served on this CPU.
    pub reads: u64,
    /// `write(2)` calls served on this CPU.
    pub writes: u64,
    /// Bytes read on this CPU.
    pub bytes_read: u64,
    /// Bytes written on this CPU.
    pub bytes_written: u64,
    /// Kernel address of this copy (`per_cpu_ptr(p, cpu)`); 0 for
    /// unprivileged callers (kernel addresses help exploits).
    pub addr: u64,
    /// `__per_cpu_offset[cpu]`: the copy is at the object's address plus
    /// this; 0 for unprivileged callers.
    pub offset: u64,
    /// 1 if the copy lies in the vmalloc area (a per-CPU chunk made by
    /// vmalloc), 0 if in the direct map (the embedded first chunk).
    pub vmalloc_area: u32,
    /// Padding.
    pub _pad: u32,
}

/// Argument of [`LDD_IOC_PERCPU_INFO`]: the per-CPU counters of this
/// device, each possible CPU's copy and their sums.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PercpuInfo {
    /// In: room in `entries`.
    pub max: u32,
    /// Out: possible CPUs (`nr_cpu_ids`): one copy each.
    pub possible: u32,
    /// Out: online CPUs.
    pub online: u32,
    /// Out: bytes of one copy (`sizeof` the counters).
    pub copy_size: u32,
    /// In: user pointer to `max` [`PercpuCopy`] entries, filled in.
    pub entries: u64,
    /// Out: the object's `__percpu` address (0 for unprivileged callers).
    pub base: u64,
    /// Out: sum of `reads` over the possible CPUs.
    pub reads: u64,
    /// Out: sum of `writes`.
    pub writes: u64,
    /// Out: sum of `bytes_read`.
    pub bytes_read: u64,
    /// Out: sum of `bytes_written`.
    pub bytes_written: u64,
}

/// Read this device's per-CPU counters.
pub const LDD_IOC_PERCPU_INFO: u32 = iowr::<PercpuInfo>(MAGIC, 72);

/// How [`LDD_IOC_PERCPU_RACE`] updates its per-CPU counter.
pub mod race_mode {
    /// `get_cpu_var()` discipline: this CPU's copy read, the window, and
    /// the write-back all with preemption off: nothing is lost.
    pub const PREEMPT_OFF: u32 = 0;
    /// Preemption on: the task takes this CPU's copy, gives the CPU away in
    /// the window (a sleep of at least 20 us: what preemption may do at any
    /// instruction, made certain), may wake on another CPU, then writes
    /// back what it read plus one: increments are lost.
    pub const PREEMPT_ON: u32 = 1;
    /// Number of modes.
    pub const COUNT: u32 = 2;
    /// Names, indexed by value.
    pub const NAMES: [&str; COUNT as usize] = ["preempt_off", "preempt_on"];
}

/// Most iterations of one [`LDD_IOC_PERCPU_RACE`] call.
pub const RACE_MAX_ITERS: u32 = 100_000;
/// Longest window of one iteration, in microseconds.
pub const RACE_MAX_WINDOW_US: u32 = 100;

/// Argument of [`LDD_IOC_PERCPU_RACE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PercpuRace {
    /// In: increments, 1..=[`RACE_MAX_ITERS`].
    pub iters: u32,
    /// In: a [`race_mode`].
    pub mode: u32,
    /// In: microseconds between the read and the write-back,
    /// 0..=[`RACE_MAX_WINDOW_US`]: a busy-wait with preemption off, a
    /// sleep (at least 20 us) with preemption on.
    pub window_us: u32,
    /// Padding.
    pub _pad: u32,
    /// Out: iterations that ended on another CPU than they began.
    pub migrated: u64,
}

/// Run `iters` increments of this file's race counter (a per-CPU counter)
/// and of its atomic reference. Threads sharing the file race each other.
pub const LDD_IOC_PERCPU_RACE: u32 = iowr::<PercpuRace>(MAGIC, 73);

/// Argument of [`LDD_IOC_PERCPU_RACE_READ`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RaceCounts {
    /// In: room in `entries`.
    pub max: u32,
    /// Out: possible CPUs.
    pub possible: u32,
    /// In: user pointer to `max` u64, each CPU's copy, filled in.
    pub entries: u64,
    /// Out: the atomic reference: every increment done.
    pub reference: u64,
    /// Out: the sum of the per-CPU copies.
    pub sum: u64,
}

/// Read this file's race counter.
pub const LDD_IOC_PERCPU_RACE_READ: u32 = iowr::<RaceCounts>(MAGIC, 74);
/// Zero this file's race counter and its reference.
pub const LDD_IOC_PERCPU_RACE_RESET: u32 = io(MAGIC, 75);

const _: () = assert!(size_of::<PercpuCopy>() == 64);
const _: () = assert!(size_of::<PercpuInfo>() == 64);
const _: () = assert!(size_of::<PercpuRace>() == 24);
const _: () = assert!(size_of::<RaceCounts>() == 32);
