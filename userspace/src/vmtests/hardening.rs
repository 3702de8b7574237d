//! What an attacker tried (issue 13), each now an errno or correct
//! behaviour: hostile sizes on every lab backend, zone-modifier and NOFAIL
//! abuse, KREALLOC racing FREE/FREE_ALL/KREALLOC on one file, a task killed
//! while it waits in our mempool, many files against the module-wide
//! budget, registries that give their slots back, handles that stay dead.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::device::Device;
use crate::tap::{Context, Outcome, Test, TestResult};
use crate::uapi::{self, alloc_flags, context, gfp, lab_backend as lb};
use crate::{ensure, ensure_eq};

fn open() -> Result<Device, String> {
    super::scull::fresh(uapi::backend::KMALLOC)
}

fn req(backend: u32, flags: u64, size: u64, order: u32) -> uapi::AllocRequest {
    uapi::AllocRequest {
        backend,
        gfp: flags,
        size,
        order,
        count: 1,
        context: context::PROCESS,
        ..Default::default()
    }
}

/// `size` near `u64::MAX` (and other hostile sizes, orders and counts) on
/// every backend: EINVAL or E2BIG, never an oops (`size = u64::MAX` on
/// alloc_pages used to overflow `actual_size()` into BUG()).
fn hostile_sizes() -> TestResult {
    let dev = open()?;
    let sizes = [u64::MAX, u64::MAX - 4095, 1 << 63, u64::MAX >> 12, 1 << 40];
    for backend in 0..lb::COUNT {
        for size in sizes {
            for order in [0, 1, 11, u32::MAX] {
                for flags in [
                    0,
                    alloc_flags::BIG,
                    alloc_flags::FREE_NOW | alloc_flags::BIG,
                ] {
                    let mut r = req(backend, gfp::KERNEL, size, order);
                    r.flags = flags;
                    match dev.alloc(r) {
                        // The page backends ignore `size`: a valid order works.
                        Ok(made) if order <= 1 && (6..=8).contains(&backend) => {
                            ensure_eq!(made.len(), 1);
                        }
                        Ok(_) => {
                            return Err(format!(
                                "backend {backend} size {size:#x} order {order} flags {flags}: accepted"
                            ))
                        }
                        Err(Errno::EINVAL | Errno::E2BIG) => {}
                        Err(e) => {
                            return Err(format!(
                                "backend {backend} size {size:#x} order {order}: {e}"
                            ))
                        }
                    }
                }
            }
        }
    }
    // Raw, with a one-reply buffer: the module must refuse before it writes.
    let mut reply = uapi::AllocReply::default();
    let mut many = req(lb::KMALLOC, gfp::KERNEL, 64, 0);
    many.count = u32::MAX;
    many.replies = &mut reply as *mut uapi::AllocReply as u64;
    ensure_eq!(
        dev.ioctl_inout(uapi::LDD_IOC_ALLOC, &mut many),
        Err(Errno::E2BIG),
        "count u32::MAX"
    );
    dev.free_all().ctx("FREE_ALL")?;
    Ok(Outcome::Pass)
}

/// At most one zone modifier (`gfp_zone()` would VM_BUG_ON), at most one
/// mobility bit (`gfp_migratetype()` would VM_WARN_ON), NOFAIL only up
/// to order 1 by size too, nothing above 4 MiB outside process context.
fn flag_rules() -> TestResult {
    let dev = open()?;
    for (what, zones) in [
        ("DMA|DMA32", gfp::DMA | gfp::DMA32),
        ("DMA|HIGHMEM", gfp::DMA | gfp::HIGHMEM),
        ("DMA32|HIGHMEM", gfp::DMA32 | gfp::HIGHMEM),
    ] {
        for backend in [
            lb::ALLOC_PAGES,
            lb::GET_FREE_PAGES,
            lb::KMALLOC,
            lb::OUR_CACHE,
        ] {
            ensure_eq!(
                dev.alloc(req(backend, gfp::KERNEL | zones, 64, 0))
                    .map(drop),
                Err(Errno::EINVAL),
                "{what} on backend {backend}"
            );
        }
    }
    // MOVABLE|RECLAIMABLE is no migratetype: the page allocator would take
    // a run from the next order's per-CPU list and count it as this order,
    // until free_pcppages_bulk() spins forever (fuzzer seed 7). Each bit
    // alone is a real migratetype and must still work.
    let both = gfp::MOVABLE | gfp::RECLAIMABLE;
    for backend in [
        lb::ALLOC_PAGES,
        lb::GET_FREE_PAGES,
        lb::GET_ZEROED_PAGE,
        lb::KMALLOC,
        lb::OUR_CACHE,
        lb::VMALLOC,
    ] {
        for order in [0, 1, 3] {
            let order = if backend == lb::GET_ZEROED_PAGE {
                0
            } else {
                order
            };
            ensure_eq!(
                dev.alloc(req(backend, gfp::KERNEL | both, 64, order))
                    .map(drop),
                Err(Errno::EINVAL),
                "MOVABLE|RECLAIMABLE on backend {backend} order {order}"
            );
        }
    }
    for (what, one) in [("MOVABLE", gfp::MOVABLE), ("RECLAIMABLE", gfp::RECLAIMABLE)] {
        for order in [0, 1, 3] {
            let made = dev
                .alloc(req(lb::ALLOC_PAGES, gfp::KERNEL | one, 0, order))
                .ctx(&format!("{what} alone, order {order}"))?;
            ensure_eq!(made.len(), 1, "{what} order {order}");
        }
    }
    dev.free_all().ctx("FREE_ALL after the mobility cases")?;
    let nofail = gfp::KERNEL | gfp::NOFAIL;
    ensure_eq!(
        dev.alloc(req(lb::KMALLOC, nofail, 4 << 20, 0)).map(drop),
        Err(Errno::EINVAL),
        "4 MiB NOFAIL kmalloc"
    );
    ensure_eq!(
        dev.alloc(req(lb::VMALLOC, nofail, 64 << 10, 0)).map(drop),
        Err(Errno::EINVAL),
        "64 KiB NOFAIL vmalloc"
    );
    ensure_eq!(
        dev.alloc(req(lb::ALLOC_PAGES, nofail, 0, 2)).map(drop),
        Err(Errno::EINVAL),
        "order-2 NOFAIL pages"
    );
    let ok = dev
        .alloc(req(lb::KMALLOC, nofail, 8192, 0))
        .ctx("8 KiB NOFAIL kmalloc")?;
    ensure_eq!(ok.len(), 1);
    let mut atomic = req(lb::VMALLOC, gfp::ATOMIC, 8 << 20, 0);
    atomic.context = context::ATOMIC;
    atomic.flags = alloc_flags::BIG;
    ensure_eq!(
        dev.alloc(atomic).map(drop),
        Err(Errno::E2BIG),
        "8 MiB vmalloc under a spinlock"
    );
    dev.free_all().ctx("FREE_ALL")?;
    Ok(Outcome::Pass)
}

/// A handle freed by FREE_ALL stays dead: FREE and KREALLOC of it get
/// EINVAL, also after its slot was used again.
fn handles_stay_dead() -> TestResult {
    let dev = open()?;
    let old = dev
        .alloc(req(lb::KMALLOC, gfp::KERNEL, 64, 0))
        .ctx("kmalloc")?;
    let old = old.first().ok_or("no reply")?.handle;
    ensure_eq!(dev.free_all().ctx("FREE_ALL")?, 1);
    let new = dev
        .alloc(req(lb::KMALLOC, gfp::KERNEL, 64, 0))
        .ctx("kmalloc again")?;
    let new = new.first().ok_or("no reply")?.handle;
    ensure!(new != old, "slot reused with the same handle {old:#x}");
    ensure_eq!(dev.free(old), Err(Errno::EINVAL), "FREE of a dead handle");
    let mut re = req(lb::KREALLOC, gfp::KERNEL, 128, 0);
    re.handle = old;
    ensure_eq!(
        dev.alloc(re).map(drop),
        Err(Errno::EINVAL),
        "KREALLOC of a dead handle"
    );
    dev.free(new).ctx("FREE")?;
    Ok(Outcome::Pass)
}

/// KREALLOC racing FREE, FREE_ALL and KREALLOC of the same handles from
/// three threads on one file (a double free or use after free under KASAN
/// before the fix). Every answer is an errno or a success; the table ends
/// consistent.
fn realloc_race() -> TestResult {
    let secs: u64 = std::env::var("LDD_RACE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let dev = Arc::new(open()?);
    let handle = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let bad: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let threads: Vec<_> = (0..3)
        .map(|role| {
            let (dev, handle, stop, ops, bad) = (
                dev.clone(),
                handle.clone(),
                stop.clone(),
                ops.clone(),
                bad.clone(),
            );
            std::thread::spawn(move || {
                let mut size = 64u64;
                while !stop.load(Ordering::Relaxed) {
                    size = if size >= 2048 { 64 } else { size * 2 };
                    let h = handle.load(Ordering::Relaxed);
                    let r = match role {
                        0 => {
                            let mut re = req(lb::KREALLOC, gfp::KERNEL, size, 0);
                            re.handle = h;
                            dev.alloc(re).map(|r| r.first().map_or(0, |r| r.handle))
                        }
                        1 => dev
                            .free(h)
                            .and_then(|_| dev.alloc(req(lb::KMALLOC, gfp::KERNEL, size, 0)))
                            .map(|r| r.first().map_or(0, |r| r.handle)),
                        _ => dev
                            .free_all()
                            .and_then(|_| dev.alloc(req(lb::KZALLOC, gfp::KERNEL, size, 0)))
                            .map(|r| r.first().map_or(0, |r| r.handle)),
                    };
                    match r {
                        Ok(new) => handle.store(new, Ordering::Relaxed),
                        Err(Errno::EINVAL) => {}
                        Err(e) => {
                            *bad.lock().unwrap_or_else(|e| e.into_inner()) =
                                Some(format!("thread {role}: {e}"));
                        }
                    }
                    ops.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().map_err(|_| "a thread panicked")?;
    }
    if let Some(e) = bad.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return Err(e);
    }
    let live = dev.list().ctx("LIST")?.len();
    ensure_eq!(
        dev.free_all().ctx("FREE_ALL")? as usize,
        live,
        "LIST and FREE_ALL agree"
    );
    ensure!(
        dev.list().ctx("LIST")?.is_empty(),
        "table empty after FREE_ALL"
    );
    let n = ops.load(Ordering::Relaxed);
    ensure!(n >= 300, "only {n} operations in {secs} s");
    println!("# realloc race: {n} operations in {secs} s");
    Ok(Outcome::Pass)
}

/// A task sleeping in our mempool (GFP_KERNEL, reserve empty, page
/// allocations failing) dies at once on SIGKILL, and its file's elements go
/// back: the wait is interruptible (it was uninterruptible, forever).
fn mempool_wait_killable() -> TestResult {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(Outcome::Skip("needs root (fault injection)".into()));
    }
    const ELEM: u64 = 32 << 10;
    let dev = open()?;
    // The pool exists before faults are armed.
    dev.alloc(uapi::AllocRequest {
        flags: alloc_flags::FREE_NOW,
        ..req(lb::OUR_MEMPOOL, gfp::KERNEL, ELEM, 0)
    })
    .ctx("create the pool")?;
    let pool = super::pools::pool_of(&dev, ELEM)?;
    dev.fault(uapi::FaultSpec {
        fail_next: 0,
        fail_all: 1,
        owner: 0,
    })
    .ctx("FAULT all")?;
    let result = (|| -> TestResult {
        // SAFETY: The child only makes system calls and exits.
        let child = match unsafe { libc::fork() } {
            -1 => return Err(format!("fork: {}", std::io::Error::last_os_error())),
            0 => {
                let d = Device::open_index(0);
                if let Ok(d) = d {
                    let mut r = req(lb::OUR_MEMPOOL, gfp::KERNEL, ELEM, 0);
                    r.count = 64;
                    let _ = d.alloc(r);
                }
                // SAFETY: Ends the child without running the parent's exit handlers.
                unsafe { libc::_exit(0) }
            }
            pid => pid,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut sleeping = false;
        while Instant::now() < deadline {
            let now = super::pools::pool_of(&dev, ELEM)?;
            if now.waits > pool.waits && now.curr_nr == 0 {
                sleeping = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: Signals our own child.
        unsafe { libc::kill(child, libc::SIGKILL) };
        let killed = Instant::now();
        let mut status = 0;
        loop {
            // SAFETY: Waits for our own child without blocking.
            let r = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
            if r == child {
                break;
            }
            if killed.elapsed() > Duration::from_secs(5) {
                return Err("the child still runs 5 s after SIGKILL".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let took = killed.elapsed();
        ensure!(sleeping, "the child never slept in the pool");
        ensure!(
            libc::WIFSIGNALED(status),
            "the child was not killed: {status:#x}"
        );
        ensure!(took < Duration::from_secs(1), "SIGKILL took {took:?}");
        println!(
            "# SIGKILL ended the mempool wait in {} ms",
            took.as_millis()
        );
        Ok(Outcome::Pass)
    })();
    dev.fault(uapi::FaultSpec::default()).ctx("FAULT off")?;
    let after = super::pools::pool_of(&dev, ELEM)?;
    ensure_eq!(after.outstanding, 0, "the dead child's elements came back");
    ensure_eq!(after.curr_nr, after.min_nr, "reserve refilled");
    result
}

/// The OOM killer's kill count; None where the kernel does not count it
/// (`oom_kill` needs CONFIG_VM_EVENT_COUNTERS; the OOM killer's report in the
/// kernel log fails the run anyway).
fn oom_kills() -> Option<i64> {
    super::sysinfo::vmstat("oom_kill").ok()
}

/// 24 open files each asking for `lab_max_mib` (256 MiB) of vmalloc memory
/// cannot take more than the module-wide budget together (this used to run
/// the guest out of memory), and nothing is OOM-killed.
fn global_budget() -> TestResult {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(Outcome::Skip("needs root (BIG allocations)".into()));
    }
    let kills = oom_kills();
    let mut files = Vec::new();
    let mut total = 0u64;
    let mut refused = 0;
    for _ in 0..24 {
        let dev = Device::open_index(0).ctx("open")?;
        let mut r = req(lb::VMALLOC, gfp::KERNEL, 4 << 20, 0);
        r.count = 64;
        r.flags = alloc_flags::BIG;
        match dev.alloc(r) {
            Ok(made) => total += made.iter().map(|m| m.actual).sum::<u64>(),
            Err(Errno::ENOSPC) => refused += 1,
            Err(e) => return Err(format!("ALLOC: {e}")),
        }
        files.push(dev);
    }
    ensure!(total <= 256 << 20, "{} MiB held by the lab", total >> 20);
    ensure!(total >= 128 << 20, "only {} MiB held", total >> 20);
    ensure!(refused >= 20, "only {refused} files were refused");
    ensure_eq!(oom_kills(), kills, "no OOM kill");
    drop(files);
    // The budget is back: one more file gets its share again.
    let dev = Device::open_index(0).ctx("open")?;
    let mut r = req(lb::VMALLOC, gfp::KERNEL, 4 << 20, 0);
    r.count = 8;
    r.flags = alloc_flags::BIG | alloc_flags::FREE_NOW;
    ensure_eq!(dev.alloc(r).ctx("after close")?.len(), 8);
    println!(
        "# 24 files: {} MiB held in all, {refused} refused",
        total >> 20
    );
    Ok(Outcome::Pass)
}

/// Registries give back the slots of caches and pools nobody uses: 48
/// object sizes through our caches, 24 through pools and the kernel's
/// caches and mempools, all FREE_NOW, all succeed (the registries hold 32,
/// 16, 16 and 8).
fn registries_reuse() -> TestResult {
    let dev = open()?;
    for (backend, n) in [
        (lb::OUR_CACHE, 48u64),
        (lb::OUR_MEMPOOL, 24),
        (lb::KMEM_CACHE, 24),
        (lb::KERNEL_MEMPOOL, 24),
    ] {
        for i in 0..n {
            let size = 200 + 8 * i;
            let mut r = req(backend, gfp::KERNEL, size, 0);
            r.flags = alloc_flags::FREE_NOW;
            dev.alloc(r)
                .ctx(&format!("backend {backend}, size {size}"))?;
        }
    }
    let caches = dev.caches().ctx("CACHE_INFO")?;
    ensure!(caches.len() <= 32, "{} caches listed", caches.len());
    Ok(Outcome::Pass)
}

/// What a user frees goes back to the page allocator: after 4 MiB of our
/// cache's objects are allocated and freed, the cache keeps at most a few
/// empty slabs (SLUB's min_partial idea), not the 4 MiB until a root SHRINK.
fn empty_slabs_go_back() -> TestResult {
    const SIZE: u64 = 4000;
    let dev = open()?;
    let mut r = req(lb::OUR_CACHE, gfp::KERNEL, SIZE, 0);
    r.count = 1024;
    let made = dev.alloc(r).ctx("1024 objects")?;
    ensure_eq!(made.len(), 1024);
    let info = |dev: &Device| {
        dev.caches()
            .map(|c| c.into_iter().find(|c| c.objsize == SIZE && c.flags == 0))
    };
    let full = info(&dev).ctx("CACHE_INFO")?.ok_or("no 4000-byte cache")?;
    ensure!(
        full.num_objs >= 1024,
        "{} objects in the cache",
        full.num_objs
    );
    ensure_eq!(dev.free_all().ctx("FREE_ALL")?, 1024);
    let after = info(&dev).ctx("CACHE_INFO")?.ok_or("no 4000-byte cache")?;
    ensure!(
        after.empty_slabs <= 4,
        "{} empty slabs kept",
        after.empty_slabs
    );
    ensure!(
        after.num_objs * 4 < full.num_objs,
        "{} of {} objects' slabs kept",
        after.num_objs,
        full.num_objs
    );
    Ok(Outcome::Pass)
}

/// A handle that has named something else never comes back: 70000
/// KREALLOCs of one object walk its slot's generation to the end, where the
/// handle stays (the same allocation, moved) instead of wrapping.
fn realloc_handles_never_wrap() -> TestResult {
    let dev = open()?;
    let first = dev
        .alloc(req(lb::KMALLOC, gfp::KERNEL, 32, 0))
        .ctx("kmalloc")?;
    let mut handle = first.first().ok_or("no reply")?.handle;
    let mut seen = std::collections::HashSet::new();
    seen.insert(handle);
    for i in 0..70_000u32 {
        let mut re = req(lb::KREALLOC, gfp::KERNEL, 32 + u64::from(i % 2) * 32, 0);
        re.handle = handle;
        let r = dev.alloc(re).ctx(&format!("realloc {i}"))?;
        let next = r.first().ok_or("no reply")?.handle;
        if next != handle && !seen.insert(next) {
            return Err(format!("realloc {i}: handle {next:#x} came back"));
        }
        handle = next;
    }
    ensure_eq!(dev.list().ctx("LIST")?.len(), 1);
    ensure_eq!(dev.free(handle), Ok(()));
    Ok(Outcome::Pass)
}

/// A KREALLOC whose reply cannot be copied out (EFAULT) keeps the new object
/// in the table: nothing is lost or leaked, LIST finds it.
fn realloc_efault_keeps_the_object() -> TestResult {
    let dev = open()?;
    let first = dev
        .alloc(req(lb::KMALLOC, gfp::KERNEL, 64, 0))
        .ctx("kmalloc")?;
    let handle = first.first().ok_or("no reply")?.handle;
    let mut re = req(lb::KREALLOC, gfp::KERNEL, 3000, 0);
    re.handle = handle;
    re.replies = 8;
    ensure_eq!(
        dev.ioctl_inout(uapi::LDD_IOC_ALLOC, &mut re),
        Err(Errno::EFAULT),
        "realloc with a bad reply pointer"
    );
    let list = dev.list().ctx("LIST")?;
    ensure_eq!(list.len(), 1);
    ensure_eq!(list[0].requested, 3000, "the reallocated object is listed");
    ensure_eq!(dev.free_all().ctx("FREE_ALL")?, 1);
    Ok(Outcome::Pass)
}

pub fn tests() -> Vec<Test> {
    vec![
        Test::new("hardening/hostile_sizes", hostile_sizes),
        Test::new("hardening/flag_rules", flag_rules),
        Test::new("hardening/handles_stay_dead", handles_stay_dead),
        Test::new("hardening/realloc_race", realloc_race),
        Test::new("hardening/mempool_wait_killable", mempool_wait_killable),
        Test::new("hardening/global_budget", global_budget),
        Test::new("hardening/registries_reuse", registries_reuse),
        Test::new("hardening/empty_slabs_go_back", empty_slabs_go_back),
        Test::new(
            "hardening/realloc_handles_never_wrap",
            realloc_handles_never_wrap,
        ),
        Test::new(
            "hardening/realloc_efault_keeps_the_object",
            realloc_efault_keeps_the_object,
        ),
    ]
}
