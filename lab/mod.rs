// SPDX-License-Identifier: GPL-2.0

//! The allocation lab: allocate as a driver would, by backend, GFP flags and
//! context, and report what the kernel did (size, zone, physical range and
//! contiguity, zeroing, latency).
//!
//! Every open file has its own bounded table of live allocations, addressed
//! by handles. A handle is `generation << 16 | slot + 1`, so a freed handle
//! never names a later allocation: a stale, foreign or made-up handle gets
//! EINVAL, and no double free can come from userspace. Closing the file (or
//! unloading the module, which cannot happen while it is open) frees all.
//!
//! Limits keep a request from exhausting the guest by accident: at most
//! [`uapi::LAB_MAX_COUNT`] allocations per request, at most 4 MiB per
//! allocation (the largest kmalloc) unless `alloc_flags::BIG` opts in to
//! `lab_max_mib`, at most `lab_max_mib` MiB held per file (E2BIG beyond), at
//! most `lab_max_handles` live handles per file (ENOSPC beyond).
//!
//! # How the zone is found
//!
//! See [`crate::kalloc::pages`]: on x86-64 a zone is a physical address range,
//! and the physical address of each page comes from `slow_virt_to_phys()`.

pub(crate) mod context;

use core::ptr::NonNull;
use kernel::{
    bindings,
    ffi::c_void,
    prelude::*,
    sync::{Arc, Mutex},
    uaccess::{UserPtr, UserSlice},
};

use crate::kalloc::caches::OurCache;
use crate::kalloc::gfp::{self, Gfp};
use crate::kalloc::kernel_caches::KernelCache;

use crate::kalloc::pages::{virt_to_phys, zone_of_phys, PAGE_SIZE};
use crate::kalloc::pools::OurPool;
use crate::uapi::{self as uapi, alloc_flags, lab_backend as lb};

extern "C" {
    /// `void *__vmalloc_noprof(unsigned long size, gfp_t gfp_mask)`, exported
    /// by mm/vmalloc.c; the bindings lack it (it hides behind a macro).
    fn __vmalloc_noprof(size: usize, gfp_mask: Gfp) -> *mut c_void;
}

/// The largest kmalloc: `KMALLOC_MAX_SIZE`, an order-10 run of pages.
const KMALLOC_MAX: u64 = bindings::KMALLOC_MAX_SIZE as u64;

/// Memory the lab holds; freed by its backend when dropped.
enum LabMem {
    /// kmalloc, kzalloc, krealloc: `kfree()`.
    Kmalloc(NonNull<u8>),
    /// The kernel's kmem_cache: `kmem_cache_free()`.
    KmemCache(Arc<KernelCache>, NonNull<u8>),
    /// Our cache.
    OurCache(Arc<OurCache>, NonNull<u8>),
    /// Our mempool.
    OurPool(Arc<OurPool>, NonNull<u8>),
    /// `alloc_pages()`: `__free_pages()`.
    Pages(NonNull<bindings::page>, u32),
    /// `__get_free_pages()`, `get_zeroed_page()`: `free_pages()`.
    FreePages(NonNull<u8>, u32),
    /// vmalloc, kvmalloc: `kvfree()` frees both kinds.
    Kvfree(NonNull<u8>),
}

// SAFETY: Each variant is owned memory that any thread may free.
unsafe impl Send for LabMem {}
// SAFETY: Shared access only reads the address.
unsafe impl Sync for LabMem {}

impl LabMem {
    /// The kernel virtual address of the memory.
    fn addr(&self) -> usize {
        match self {
            Self::Kmalloc(p) | Self::FreePages(p, _) | Self::Kvfree(p) => p.as_ptr() as usize,
            Self::KmemCache(_, p) | Self::OurCache(_, p) | Self::OurPool(_, p) => {
                p.as_ptr() as usize
            }
            // SAFETY: A page we own; on 64-bit kmap_local_page() is
            // page_address(): no mapping is made, nothing to undo.
            Self::Pages(page, _) => unsafe { bindings::kmap_local_page(page.as_ptr()) as usize },
        }
    }
}

impl Drop for LabMem {
    fn drop(&mut self) {
        // SAFETY: In every arm the memory came from the backend the variant
        // names and is not used after this (the lab owns it alone).
        unsafe {
            match self {
                Self::Kmalloc(p) => bindings::kfree(p.as_ptr().cast()),
                Self::KmemCache(c, p) => c.free(*p),
                Self::OurCache(c, p) => {
                    if c.free(*p).is_err() {
                        pr_err!("lab: our cache refused its own object\n");
                    }
                }
                Self::OurPool(pool, p) => {
                    if pool.free(*p).is_err() {
                        pr_err!("lab: our pool refused its own element\n");
                    }
                }
                Self::Pages(page, order) => bindings::__free_pages(page.as_ptr(), *order),
                Self::FreePages(p, order) => {
                    bindings::free_pages(p.as_ptr() as kernel::ffi::c_ulong, *order)
                }
                Self::Kvfree(p) => bindings::kvfree(p.as_ptr().cast()),
            }
        }
    }
}

/// One live allocation of a file.
struct Entry {
    mem: LabMem,
    backend: u32,
    requested: u64,
    actual: u64,
    zone: u32,
    order: u32,
}

/// A slot of the handle table.
#[derive(Default)]
struct Slot {
    generation: u16,
    entry: Option<Entry>,
}

/// The handle table of one open file.
#[derive(Default)]
pub(crate) struct LabTable {
    slots: KVec<Slot>,
    live: usize,
    bytes: u64,
}

/// Limits of the lab, from module parameters.
#[derive(Clone, Copy)]
pub(crate) struct LabLimits {
    /// Live handles per open file.
    pub(crate) max_handles: usize,
    /// Bytes held per open file, and the largest single allocation with BIG.
    pub(crate) max_bytes: u64,
}

impl LabTable {
    fn insert(&mut self, entry: Entry, limits: LabLimits) -> Result<u32> {
        if self.live >= limits.max_handles {
            return Err(ENOSPC);
        }
        let index = match self.slots.iter().position(|s| s.entry.is_none()) {
            Some(i) => i,
            None => {
                self.slots.push(Slot::default(), GFP_KERNEL)?;
                self.slots.len() - 1
            }
        };
        let slot = self.slots.get_mut(index).ok_or(EINVAL)?;
        slot.generation = slot.generation.wrapping_add(1);
        self.bytes += entry.actual;
        slot.entry = Some(entry);
        self.live += 1;
        Ok(u32::from(slot.generation) << 16 | (index as u32 + 1))
    }

    fn slot_of(&mut self, handle: u32) -> Option<&mut Slot> {
        let index = (handle & 0xffff).checked_sub(1)? as usize;
        let slot = self.slots.get_mut(index)?;
        (slot.entry.is_some() && u32::from(slot.generation) == handle >> 16).then_some(slot)
    }

    fn remove(&mut self, handle: u32) -> Result<Entry> {
        let entry = self
            .slot_of(handle)
            .and_then(|s| s.entry.take())
            .ok_or(EINVAL)?;
        self.live -= 1;
        self.bytes -= entry.actual;
        Ok(entry)
    }

    /// Frees everything; returns how many.
    pub(crate) fn clear(&mut self) -> usize {
        let n = self.live;
        self.slots.clear();
        self.live = 0;
        self.bytes = 0;
        n
    }
}

/// What a request needs that may sleep to get: looked up in process
/// context before the allocation runs in its context.
enum Resource {
    None,
    KmemCache(Arc<KernelCache>),
    OurCache(Arc<OurCache>),
    OurPool(Arc<OurPool>),
    Realloc(NonNull<u8>),
}

/// Whether a lab backend hands out whole pages (sized by order, not bytes).
fn is_pages(backend: u32) -> bool {
    matches!(
        backend,
        lb::ALLOC_PAGES | lb::GET_FREE_PAGES | lb::GET_ZEROED_PAGE
    )
}

/// Checks a request against the rules and limits; returns the kernel flags.
///
/// `__GFP_NOWARN` is always added: a failure the lab was asked to provoke
/// must not print the page allocator's warning and stack dump (which would
/// read as a bug in the kernel log). Everything else is as requested.
fn validate(req: &uapi::AllocRequest, limits: LabLimits) -> Result<Gfp> {
    if req.backend >= lb::COUNT || req.context >= uapi::context::COUNT {
        return Err(EINVAL);
    }
    if req.flags & !alloc_flags::KNOWN != 0 || req.count == 0 {
        return Err(EINVAL);
    }
    if req.count > uapi::LAB_MAX_COUNT {
        return Err(E2BIG);
    }
    let gfp = gfp::from_abi(req.gfp)? | gfp::NOWARN;
    let sleeps = gfp::may_sleep(gfp);
    if req.context != uapi::context::PROCESS && sleeps {
        // GFP_KERNEL may sleep; never in atomic context (LDD3, Love).
        return Err(EINVAL);
    }
    if gfp & gfp::NOFAIL != 0 && (!sleeps || req.order > 1) {
        // The page allocator warns about both: NOFAIL must be able to sleep,
        // and is not meant for orders above 1.
        return Err(EINVAL);
    }
    let pages = matches!(
        req.backend,
        lb::ALLOC_PAGES | lb::GET_FREE_PAGES | lb::GET_ZEROED_PAGE
    );
    if pages {
        if req.order > bindings::MAX_PAGE_ORDER
            || (req.backend == lb::GET_ZEROED_PAGE && req.order != 0)
        {
            return Err(EINVAL);
        }
    } else {
        if req.size == 0 {
            return Err(EINVAL);
        }
        let cap = if req.flags & alloc_flags::BIG != 0 {
            limits.max_bytes
        } else {
            KMALLOC_MAX
        };
        // kmalloc itself cannot go past KMALLOC_MAX_SIZE (an order-10 run):
        // the lab says so with E2BIG instead of letting the kernel fail.
        let kmalloc = matches!(req.backend, lb::KMALLOC | lb::KZALLOC | lb::KREALLOC);
        if req.size > cap || (kmalloc && req.size > KMALLOC_MAX) {
            return Err(E2BIG);
        }
    }
    let slab = matches!(
        req.backend,
        lb::KMALLOC | lb::KZALLOC | lb::KREALLOC | lb::KMEM_CACHE | lb::KVMALLOC
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
        if req.gfp & !uapi::gfp::VMALLOC_SUPPORTED != 0 || req.context == uapi::context::HARDIRQ {
            return Err(EINVAL);
        }
        if req.backend == lb::KVMALLOC && (req.context != uapi::context::PROCESS || !sleeps) {
            return Err(EINVAL);
        }
    }
    if matches!(
        req.backend,
        lb::KMEM_CACHE | lb::OUR_CACHE | lb::OUR_MEMPOOL
    ) && req.size > PAGE_SIZE as u64 * 8
    {
        return Err(E2BIG);
    }
    if req.backend == lb::KREALLOC && req.count != 1 {
        return Err(EINVAL);
    }
    Ok(gfp)
}

/// One allocation by `backend`; runs in the requested context.
fn allocate(req: &uapi::AllocRequest, gfp: Gfp, res: &Resource) -> Option<LabMem> {
    let size = req.size as usize;
    let order = req.order;
    // SAFETY: Every FFI call here accepts any size, flags and order that
    // `validate` let through; a null return is a failure.
    unsafe {
        match (req.backend, res) {
            (lb::KMALLOC, _) => {
                NonNull::new(bindings::__kmalloc_noprof(size, gfp).cast()).map(LabMem::Kmalloc)
            }
            (lb::KZALLOC, _) => {
                NonNull::new(bindings::__kmalloc_noprof(size, gfp | gfp::ZERO).cast())
                    .map(LabMem::Kmalloc)
            }
            (lb::KREALLOC, Resource::Realloc(old)) => NonNull::new(
                bindings::krealloc_node_align_noprof(
                    old.as_ptr().cast(),
                    size,
                    1,
                    gfp,
                    bindings::NUMA_NO_NODE,
                )
                .cast(),
            )
            .map(LabMem::Kmalloc),
            (lb::KMEM_CACHE, Resource::KmemCache(c)) => {
                c.alloc(gfp).map(|p| LabMem::KmemCache(c.clone(), p))
            }
            (lb::OUR_CACHE, Resource::OurCache(c)) => c.alloc_req(gfp::to_request(gfp)).map(|p| {
                zero_if_asked(gfp, p, c.size());
                LabMem::OurCache(c.clone(), p)
            }),
            (lb::OUR_MEMPOOL, Resource::OurPool(pool)) => pool.alloc_gfp(gfp).map(|p| {
                zero_if_asked(gfp, p, pool.element_size());
                LabMem::OurPool(pool.clone(), p)
            }),
            (lb::ALLOC_PAGES, _) => {
                NonNull::new(bindings::alloc_pages(gfp, order)).map(|p| LabMem::Pages(p, order))
            }
            (lb::GET_FREE_PAGES, _) => {
                NonNull::new(bindings::get_free_pages_noprof(gfp, order) as *mut u8)
                    .map(|p| LabMem::FreePages(p, order))
            }
            (lb::GET_ZEROED_PAGE, _) => {
                NonNull::new(bindings::get_zeroed_page_noprof(gfp) as *mut u8)
                    .map(|p| LabMem::FreePages(p, 0))
            }
            (lb::VMALLOC, _) => {
                NonNull::new(__vmalloc_noprof(size, gfp).cast()).map(LabMem::Kvfree)
            }
            (lb::KVMALLOC, _) => NonNull::new(
                bindings::__kvmalloc_node_noprof(size, 1, gfp, bindings::NUMA_NO_NODE).cast(),
            )
            .map(LabMem::Kvfree),
            _ => None,
        }
    }
}

/// `__GFP_ZERO` for our cache and pool, as `kmem_cache_alloc()` honours it.
fn zero_if_asked(gfp: Gfp, p: NonNull<u8>, len: usize) {
    if gfp & gfp::ZERO != 0 {
        // SAFETY: `p` is a fresh object of `len` bytes, ours alone.
        unsafe { core::ptr::write_bytes(p.as_ptr(), 0, len) };
    }
}

/// The usable size of an allocation.
fn actual_size(req: &uapi::AllocRequest, mem: &LabMem) -> u64 {
    let addr = mem.addr();
    let page_aligned = (req.size + PAGE_SIZE as u64 - 1) & !(PAGE_SIZE as u64 - 1);
    match mem {
        // SAFETY: A live kmalloc object.
        LabMem::Kmalloc(p) => unsafe { bindings::ksize(p.as_ptr().cast()) as u64 },
        LabMem::KmemCache(c, _) => c.object_size() as u64,
        LabMem::OurCache(c, _) => c.size() as u64,
        LabMem::OurPool(pool, _) => pool.element_size() as u64,
        LabMem::Pages(_, order) | LabMem::FreePages(_, order) => (PAGE_SIZE as u64) << order,
        // SAFETY: `is_vmalloc_addr` only compares the address with the area.
        LabMem::Kvfree(p) if unsafe { bindings::is_vmalloc_addr(p.as_ptr().cast()) } => {
            page_aligned
        }
        // SAFETY: kvmalloc that fell to kmalloc: a live kmalloc object.
        LabMem::Kvfree(_) => unsafe { bindings::ksize(addr as *const c_void) as u64 },
    }
}

/// Physical range, contiguity, zone, zeroing, vmalloc area of the first
/// `len` bytes (those the caller asked for: see `alloc`).
fn measure(mem: &LabMem, len: u64, reply: &mut uapi::AllocReply) {
    let addr = mem.addr();
    let len = len as usize;
    let first = virt_to_phys(addr);
    let (mut lo, mut hi, mut contiguous, mut pages) = (first, first, true, 0u32);
    // Walk the pages the range touches: physical contiguity is a property of
    // the page-table mappings, which vmalloc builds page by page.
    let mut off = 0;
    while off < len {
        let va = addr + off;
        let chunk = (PAGE_SIZE - (va & (PAGE_SIZE - 1))).min(len - off);
        let pa = virt_to_phys(va);
        contiguous &= pa == first + off as u64;
        lo = lo.min(pa);
        hi = hi.max(pa + chunk as u64 - 1);
        pages += 1;
        off += chunk;
    }
    // SAFETY: `addr` is valid for `len` bytes (the allocation's usable size)
    // and nobody has written to it since it was allocated.
    let bytes = unsafe { core::slice::from_raw_parts(addr as *const u8, len) };
    reply.zone = zone_of_phys(first) as u32;
    reply.phys_lo = lo;
    reply.phys_hi = hi;
    reply.pages = pages;
    reply.contiguous = u32::from(contiguous);
    reply.zeroed = u32::from(bytes.iter().all(|&b| b == 0));
    // SAFETY: Only compares the address.
    reply.vmalloc_area = u32::from(unsafe { bindings::is_vmalloc_addr(addr as *const c_void) });
}

/// `LDD_IOC_ALLOC`.
pub(crate) fn alloc(table: &Mutex<LabTable>, arg: usize, limits: LabLimits) -> Result<isize> {
    let req: uapi::AllocRequest = crate::ldd_alloc_dev::read_user(arg)?;
    let gfp = validate(&req, limits)?;
    let size = req.size as usize;
    let res = match req.backend {
        lb::KMEM_CACHE => Resource::KmemCache(crate::kalloc::kernel_caches::get(size)?),
        lb::OUR_CACHE => Resource::OurCache(crate::kalloc::caches::get(size, cache_flags_of(gfp))?),
        lb::OUR_MEMPOOL => Resource::OurPool(crate::kalloc::pools::get(size)?),
        lb::KREALLOC => {
            let mut t = table.lock();
            let slot = t.slot_of(req.handle).ok_or(EINVAL)?;
            match slot.entry.as_ref().map(|e| (&e.mem, e.backend)) {
                Some((LabMem::Kmalloc(p), lb::KMALLOC | lb::KZALLOC | lb::KREALLOC)) => {
                    Resource::Realloc(*p)
                }
                _ => return Err(EINVAL),
            }
        }
        _ => Resource::None,
    };
    let mut replies = KVec::with_capacity(req.count as usize, GFP_KERNEL)?;
    let mut made = KVec::with_capacity(req.count as usize, GFP_KERNEL)?;
    for _ in 0..req.count {
        let (mem, ns) = context::run_in(req.context, || {
            // SAFETY: FFI call, any context.
            let t0 = unsafe { bindings::ktime_get_mono_fast_ns() };
            let mem = allocate(&req, gfp, &res);
            // SAFETY: As above.
            let t1 = unsafe { bindings::ktime_get_mono_fast_ns() };
            (mem, t1.wrapping_sub(t0))
        })?;
        let Some(mem) = mem else { break };
        let actual = actual_size(&req, &mem);
        let mut reply = uapi::AllocReply {
            requested: if matches!(
                req.backend,
                lb::ALLOC_PAGES | lb::GET_FREE_PAGES | lb::GET_ZEROED_PAGE
            ) {
                actual
            } else {
                req.size
            },
            actual,
            latency_ns: ns,
            ..Default::default()
        };
        // Only the bytes asked for may be touched: ksize() reports the size
        // class's slack, but KASAN keeps it poisoned (using it would need
        // krealloc); vmalloc likewise unpoisons just the request. The page
        // backends own whole pages.
        let mine = if is_pages(req.backend) {
            actual
        } else {
            req.size
        };
        measure(&mem, mine, &mut reply);
        if req.flags & alloc_flags::TOUCH != 0 {
            // SAFETY: The memory is ours and at least `mine` bytes long.
            unsafe { core::ptr::write_bytes(mem.addr() as *mut u8, 0xa5, mine as usize) };
        }
        if req.backend == lb::KREALLOC {
            // krealloc freed (or kept) the old object: the old handle now owns
            // nothing. Forget it without freeing.
            if let Ok(old) = table.lock().remove(req.handle) {
                core::mem::forget(old.mem);
            }
        }
        replies.push(reply, GFP_KERNEL)?;
        made.push(
            Entry {
                mem,
                backend: req.backend,
                requested: req.size,
                actual,
                zone: reply.zone,
                order: req.order,
            },
            GFP_KERNEL,
        )?;
    }
    if made.is_empty() {
        return Err(ENOMEM);
    }
    let keep = req.flags & alloc_flags::FREE_NOW == 0;
    if keep {
        let mut t = table.lock();
        let total: u64 = made.iter().map(|e| e.actual).sum();
        if t.bytes + total > limits.max_bytes {
            return Err(E2BIG);
        }
        let mut handles = KVec::with_capacity(made.len(), GFP_KERNEL)?;
        for entry in made.drain_all() {
            match t.insert(entry, limits) {
                Ok(h) => handles.push(h, GFP_KERNEL)?,
                Err(e) => {
                    for h in handles.iter() {
                        let _ = t.remove(*h);
                    }
                    return Err(e);
                }
            }
        }
        for (r, h) in replies.iter_mut().zip(handles.iter()) {
            r.handle = *h;
        }
        drop(t);
        let n = replies.len();
        if let Err(e) = write_replies(&req, &replies) {
            let mut t = table.lock();
            for h in handles.iter() {
                let _ = t.remove(*h);
            }
            return Err(e);
        }
        return Ok(n as isize);
    }
    drop(made);
    write_replies(&req, &replies)?;
    Ok(replies.len() as isize)
}

/// Our cache's flags for a request's GFP: a DMA request gets a DMA cache
/// (SLAB_CACHE_DMA), the others share the normal one.
fn cache_flags_of(gfp: Gfp) -> u32 {
    if gfp & gfp::DMA != 0 {
        uapi::cache_flags::CACHE_DMA
    } else {
        0
    }
}

fn write_replies(req: &uapi::AllocRequest, replies: &[uapi::AllocReply]) -> Result {
    let len = core::mem::size_of_val(replies);
    let mut w = UserSlice::new(UserPtr::from_addr(req.replies as usize), len).writer();
    for r in replies {
        w.write(r)?;
    }
    Ok(())
}

/// `LDD_IOC_FREE`.
pub(crate) fn free(table: &Mutex<LabTable>, handle: usize) -> Result<isize> {
    let handle = u32::try_from(handle).map_err(|_| EINVAL)?;
    let entry = table.lock().remove(handle)?;
    drop(entry);
    Ok(0)
}

/// `LDD_IOC_LIST`.
pub(crate) fn list(table: &Mutex<LabTable>, arg: usize) -> Result<isize> {
    let mut req: uapi::ListRequest = crate::ldd_alloc_dev::read_user(arg)?;
    let mut infos = KVec::new();
    {
        let t = table.lock();
        req.count = t.live as u32;
        for (i, slot) in t.slots.iter().enumerate() {
            if infos.len() >= req.max as usize {
                break;
            }
            if let Some(e) = &slot.entry {
                infos.push(
                    uapi::HandleInfo {
                        handle: u32::from(slot.generation) << 16 | (i as u32 + 1),
                        backend: e.backend,
                        requested: e.requested,
                        actual: e.actual,
                        zone: e.zone,
                        order: e.order,
                    },
                    GFP_KERNEL,
                )?;
            }
        }
    }
    let len = core::mem::size_of_val(&infos[..]);
    let mut w = UserSlice::new(UserPtr::from_addr(req.entries as usize), len).writer();
    for i in infos.iter() {
        w.write(i)?;
    }
    crate::ldd_alloc_dev::write_user(arg, &req)?;
    Ok(0)
}

/// `LDD_IOC_STACK`: how deep the ioctl path is in the kernel stack.
pub(crate) fn stack(arg: usize) -> Result<isize> {
    let thread_size = PAGE_SIZE << bindings::THREAD_SIZE_ORDER;
    let here = 0u8;
    let sp = core::ptr::from_ref(&here) as usize;
    // SAFETY: `current` is valid in process context; `stack` is the base of
    // its kernel stack, which this very function runs on.
    let base = unsafe { (*kernel::current!().as_ptr()).stack as usize };
    let top = base + thread_size;
    let used = top.saturating_sub(sp) as u64;
    let info = uapi::StackInfo {
        thread_size: thread_size as u64,
        used_in_ioctl: used,
        left_in_ioctl: (thread_size as u64).saturating_sub(used),
        vmap_stack: u32::from(cfg!(CONFIG_VMAP_STACK)),
        page_size: PAGE_SIZE as u32,
    };
    crate::ldd_alloc_dev::write_user(arg, &info)?;
    Ok(0)
}
