// SPDX-License-Identifier: GPL-2.0

//! The allocation lab: allocate as a driver would, by backend, GFP flags and
//! context, and report what the kernel did (size, zone, physical range and
//! contiguity, zeroing, latency).
//!
//! | room | what it holds |
//! |------|---------------|
//! | [`validate`] | the rules a request must keep |
//! | [`budget`] | the module-wide byte budgets, charged before allocating |
//! | [`table`] | each open file's handles |
//! | [`memory`] | one allocation per backend, and what is measured of it |
//! | [`context`] | running it in process, atomic or hard-irq context |
//!
//! Every open file has its own bounded table of live allocations, addressed
//! by handles; closing the file frees them all. Limits keep a request from
//! exhausting the machine: at most [`uapi::LAB_MAX_COUNT`] allocations per
//! request, at most 4 MiB per allocation unless `alloc_flags::BIG` opts in
//! to `lab_max_mib` (root only), at most `lab_max_mib` MiB and
//! `lab_max_handles` handles per file, and the module-wide budgets of
//! [`budget`] across all files. An unprivileged caller may not touch the
//! emergency reserves and sees no physical addresses (0, as
//! `/proc/PID/pagemap` shows non-root readers).

pub(crate) mod budget;
pub(crate) mod context;
pub(crate) mod memory;
pub(crate) mod table;
pub(crate) mod validate;

use core::sync::atomic::{
    AtomicU64,
    AtomicUsize,
    Ordering, //
};
use kernel::{
    bindings,
    prelude::*,
    sync::Mutex,
    time::{
        Instant,
        Monotonic, //
    }, //
};

use budget::Charge;
use memory::Resource;
use table::{
    Entry,
    LabLimits,
    LabTable, //
};
use validate::{
    charge_bound,
    is_pages,
    validate, //
};

use crate::kalloc::gfp::{
    self,
    Gfp, //
};
use crate::kalloc::pages::PAGE_SIZE;
use crate::kalloc::registry::Quota;
use crate::kalloc::{
    caches,
    kernel_caches,
    kernel_pools,
    pools, //
};
use crate::params::Params;
use crate::uaccess::{
    write_array,
    IoctlArg, //
};
use crate::uapi::{
    self,
    alloc_flags,
    lab_backend as lb, //
};

/// Who is asking, as the dispatch's privilege check found it.
#[derive(Clone, Copy)]
pub(crate) struct Caller {
    /// The caller has CAP_SYS_ADMIN.
    pub(crate) privileged: bool,
}

/// Live handles per open file (`lab_max_handles`).
static MAX_HANDLES: AtomicUsize = AtomicUsize::new(0);
/// Bytes per open file (`lab_max_mib`).
static MAX_BYTES: AtomicU64 = AtomicU64::new(0);

/// Sets up the lab from the parameters.
pub(crate) fn init(p: &Params) {
    budget::init(p.lab_total_mib, p.lab_user_kib);
    MAX_HANDLES.store(p.lab_max_handles as usize, Ordering::Relaxed);
    MAX_BYTES.store(u64::from(p.lab_max_mib) << 20, Ordering::Relaxed);
    context::init();
}

/// The lab's limits per open file.
fn limits() -> LabLimits {
    LabLimits {
        max_handles: MAX_HANDLES.load(Ordering::Relaxed),
        max_bytes: MAX_BYTES.load(Ordering::Relaxed),
    }
}

/// One of the lab's ioctls; ENOTTY for any other number.
pub(crate) fn ioctl(
    table: &Mutex<LabTable>,
    cmd: u32,
    arg: IoctlArg,
    caller: Caller,
) -> Result<isize> {
    match cmd {
        uapi::LDD_IOC_ALLOC => alloc(table, arg, caller),
        uapi::LDD_IOC_FREE => {
            let handle = arg.value_u32()?;
            let entry = table.lock().remove(handle)?;
            drop(entry);
            Ok(0)
        }
        uapi::LDD_IOC_FREE_ALL => Ok(table.lock().clear() as isize),
        uapi::LDD_IOC_LIST => list(table, arg),
        uapi::LDD_IOC_STACK => stack(arg),
        _ => Err(ENOTTY),
    }
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

/// The resource a request needs, found in process context. A realloc takes
/// its entry out of the table (see [`table`]) and returns it.
fn resource(
    table: &Mutex<LabTable>,
    req: &uapi::AllocRequest,
    gfp: Gfp,
    caller: Caller,
) -> Result<(Resource, Option<Entry>)> {
    let size = req.size as usize;
    let quota = if caller.privileged {
        Quota::Whole
    } else {
        Quota::Half
    };
    Ok(match req.backend {
        lb::KMEM_CACHE => (Resource::KmemCache(kernel_caches::get(size, quota)?), None),
        lb::OUR_CACHE => (
            Resource::OurCache(caches::get_quota(size, cache_flags_of(gfp), quota)?),
            None,
        ),
        lb::OUR_MEMPOOL => (Resource::OurPool(pools::get(size)?), None),
        lb::KERNEL_MEMPOOL => (Resource::KernelPool(kernel_pools::get(size)?), None),
        lb::KREALLOC => {
            let mut t = table.lock();
            let kmalloc = matches!(
                t.get(req.handle).map(|e| e.backend),
                Some(lb::KMALLOC | lb::KZALLOC | lb::KREALLOC)
            );
            if !kmalloc {
                return Err(EINVAL);
            }
            let old = t.take(req.handle)?;
            let p = old.mem.kmalloc_object().ok_or(EINVAL)?;
            (Resource::Realloc(p), Some(old))
        }
        _ => (Resource::None, None),
    })
}

/// One allocation of a request: charged, made in its context, measured.
fn alloc_one(
    req: &uapi::AllocRequest,
    gfp: Gfp,
    res: &Resource,
    caller: Caller,
) -> Result<(Entry, uapi::AllocReply)> {
    let charge = Charge::take(charge_bound(req), caller)?;
    // Scoped NOIO/NOFS around the allocation only (validated: process context).
    let scope = context::MemallocScope::enter(req.flags);
    let (mem, ns) = context::run_in(req.context, || {
        let t0 = Instant::<Monotonic>::now();
        let mem = memory::allocate(req.backend, req.size as usize, req.order, gfp, res);
        (mem, t0.elapsed().as_nanos())
    })?;
    drop(scope);
    let mem = mem.ok_or(ENOMEM)?;
    let actual = memory::usable_size(req.size, &mem);
    // Only the bytes asked for may be touched: ksize() reports the size
    // class's slack, but KASAN keeps it poisoned (using it would need
    // krealloc); vmalloc likewise unpoisons just the request. The page
    // backends own whole pages.
    let mine = if is_pages(req.backend) {
        actual
    } else {
        req.size
    };
    let mut reply = uapi::AllocReply {
        requested: mine,
        actual,
        latency_ns: ns.max(0) as u64,
        ..Default::default()
    };
    // SAFETY: `mine` is the size asked for (at least 1, checked by
    // `validate`) or the page run's size: never more than the allocation.
    unsafe { memory::measure(&mem, mine, &mut reply) };
    if !caller.privileged {
        // As /proc/PID/pagemap does for non-root readers since Linux 4.0:
        // no physical address, nor what would tell the physical layout.
        reply.phys_lo = 0;
        reply.phys_hi = 0;
        reply.contiguous = 0;
    }
    if req.flags & alloc_flags::TOUCH != 0 {
        // SAFETY: The memory is ours and at least `mine` bytes long.
        unsafe { core::ptr::write_bytes(mem.addr().as_ptr(), 0xa5, mine as usize) };
    }
    let entry = Entry {
        mem,
        charge,
        backend: req.backend,
        requested: req.size,
        actual,
        zone: reply.zone,
        order: req.order,
    };
    Ok((entry, reply))
}

/// `LDD_IOC_ALLOC`: `count` allocations, each checked against the budgets
/// and the file's limits before it is made; stops at the first failure and
/// reports how many were made (the error if none). With `FREE_NOW` each is
/// freed as soon as it is measured, so a request holds one at a time.
fn alloc(table: &Mutex<LabTable>, arg: IoctlArg, caller: Caller) -> Result<isize> {
    let req: uapi::AllocRequest = arg.read()?;
    let limits = limits();
    let gfp = validate(&req, limits, caller)?;
    let keep = req.flags & alloc_flags::FREE_NOW == 0;
    let (res, old) = resource(table, &req, gfp, caller)?;
    if let Some(old) = old {
        return realloc(table, &req, gfp, &res, old, caller);
    }
    let count = req.count as usize;
    let mut replies = KVVec::with_capacity(count, GFP_KERNEL)?;
    let mut handles = KVVec::with_capacity(count, GFP_KERNEL)?;
    let mut failure = None;
    for _ in 0..count {
        // A scheduling point on kernels without full preemption, and a
        // debug check that this loop runs where it may.
        kernel::task::might_sleep();
        if kernel::current!().signal_pending() {
            failure = Some(EINTR);
            break;
        }
        if keep {
            if let Err(e) = table.lock().check_room(limits, 1, charge_bound(&req)) {
                failure = Some(e);
                break;
            }
        }
        let (entry, mut reply) = match alloc_one(&req, gfp, &res, caller) {
            Ok(made) => made,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        if keep {
            match table.lock().insert(entry, limits) {
                Ok(h) => reply.handle = h,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
            handles.push(reply.handle, GFP_KERNEL)?;
        }
        replies.push(reply, GFP_KERNEL)?;
    }
    if replies.is_empty() {
        return Err(failure.unwrap_or(ENOMEM));
    }
    if let Err(e) = write_array(req.replies, &replies) {
        // The caller cannot learn the handles: take back what was made.
        let mut t = table.lock();
        for h in handles.iter() {
            drop(t.remove(*h));
        }
        return Err(e);
    }
    Ok(replies.len() as isize)
}

/// `KREALLOC` of the entry `old`, already out of the table: on success the
/// new object takes the old one's slot under a new handle, and `old`'s
/// memory is krealloc's; if the allocation fails, `old` goes back under its
/// handle, untouched. If the reply cannot be copied out (EFAULT) the new
/// object stays in the table, where `LIST` finds it.
fn realloc(
    table: &Mutex<LabTable>,
    req: &uapi::AllocRequest,
    gfp: Gfp,
    res: &Resource,
    old: Entry,
    caller: Caller,
) -> Result<isize> {
    let room = table.lock().check_room(limits(), 0, charge_bound(req));
    let made = room.and_then(|()| alloc_one(req, gfp, res, caller));
    let mut t = table.lock();
    let (entry, mut reply) = match made {
        Ok(made) => made,
        Err(e) => {
            t.restore(req.handle, old);
            return Err(e);
        }
    };
    // krealloc freed (or kept) the old object: the old entry owns nothing.
    let Entry { mem, charge, .. } = old;
    mem.forget();
    drop(charge);
    reply.handle = t.replace(req.handle, entry);
    drop(t);
    write_array(req.replies, core::slice::from_ref(&reply))?;
    Ok(1)
}

/// `LDD_IOC_LIST`.
fn list(table: &Mutex<LabTable>, arg: IoctlArg) -> Result<isize> {
    let mut req: uapi::ListRequest = arg.read()?;
    let mut infos = KVVec::new();
    {
        let t = table.lock();
        req.count = t.live() as u32;
        for (handle, e) in t.entries().take(req.max as usize) {
            infos.push(
                uapi::HandleInfo {
                    handle,
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
    write_array(req.entries, &infos)?;
    arg.write(&req)?;
    Ok(0)
}

/// `LDD_IOC_STACK`: how deep the ioctl path is in the kernel stack.
fn stack(arg: IoctlArg) -> Result<isize> {
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
    arg.write(&info)?;
    Ok(0)
}
