//! The chapter-8 tour: each claim of the two seed texts (LDD3 chapter 8 and
//! Robert Love's "Kernel memory allocation"), checked live on the running
//! kernel. `ldd-alloc tour` prints the claims; the VM suite asserts each.

use nix::errno::Errno;

use crate::device::{cache_name, zone_name, Device};
use crate::uapi::{self, alloc_flags, context, gfp, lab_backend as lb, zone};

/// One checked claim.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Claim {
    /// The section of the seeds it comes from.
    pub section: &'static str,
    /// What the texts say.
    pub claim: String,
    /// What the running kernel did.
    pub observed: String,
    /// Whether the observation bears the claim out.
    pub holds: bool,
}

/// The tour's result so far.
#[derive(Default)]
pub struct Tour {
    /// Every claim checked, in order.
    pub claims: Vec<Claim>,
}

impl Tour {
    fn check(
        &mut self,
        section: &'static str,
        claim: impl Into<String>,
        observed: String,
        holds: bool,
    ) {
        self.claims.push(Claim {
            section,
            claim: claim.into(),
            observed,
            holds,
        });
    }
}

fn one(
    dev: &Device,
    backend: u32,
    flags: u64,
    size: u64,
    order: u32,
    ctx: u32,
) -> Result<uapi::AllocReply, Errno> {
    let r = dev.alloc(uapi::AllocRequest {
        backend,
        context: ctx,
        gfp: flags,
        size,
        order,
        count: 1,
        flags: alloc_flags::FREE_NOW | if size > 4 << 20 { alloc_flags::BIG } else { 0 },
        ..Default::default()
    })?;
    r.into_iter().next().ok_or(Errno::ENOMEM)
}

fn show(r: &Result<uapi::AllocReply, Errno>) -> String {
    match r {
        Ok(a) => format!(
            "{} B usable, zone {}, phys {:#x}-{:#x}, {} page(s), {}contiguous, {}zeroed, {} ns",
            a.actual,
            zone_name(a.zone),
            a.phys_lo,
            a.phys_hi,
            a.pages,
            if a.contiguous == 1 { "" } else { "not " },
            if a.zeroed == 1 { "" } else { "not " },
            a.latency_ns
        ),
        Err(e) => format!("refused: {e}"),
    }
}

/// (backing, reserve) allocation counts of the live pool of `size`-byte
/// elements, if there is one.
fn pool_backing(dev: &Device, size: u64) -> Option<(u64, u64)> {
    (0..)
        .map_while(|i| dev.pool_info(i).ok())
        .filter(|p| p.element_size == size && p.live == 1)
        .last()
        .map(|p| (p.allocs_backing, p.allocs_reserve))
}

/// Runs the tour on an open device.
pub fn run(dev: &Device) -> Tour {
    let mut t = Tour::default();
    let k = gfp::KERNEL;

    // LDD3 "The Real Story of kmalloc" / Love "kmalloc()".
    let r = one(dev, lb::KMALLOC, k, 100, 0, context::PROCESS);
    // The reported size must be the next size class above the request, not
    // merely >= it (an allocator that did not round at all would report
    // exactly what was asked): 100 -> 128, 1000 -> 1024, 3000 -> 4096.
    let rounded: Vec<(u64, Result<u64, Errno>)> = [(100u64, 128u64), (1000, 1024), (3000, 4096)]
        .iter()
        .map(|&(ask, _)| {
            (
                ask,
                one(dev, lb::KMALLOC, k, ask, 0, context::PROCESS).map(|a| a.actual),
            )
        })
        .collect();
    t.check(
        "kmalloc: size classes",
        "kmalloc(100, GFP_KERNEL) returns an object from the 128-byte size class \
         (and 1000 -> 1024, 3000 -> 4096: the next class up)",
        format!("{}; rounded: {rounded:?}", show(&r)),
        matches!(&r, Ok(a) if a.actual == 128)
            && rounded
                .iter()
                .zip([128u64, 1024, 4096])
                .all(|((_, got), want)| *got == Ok(want)),
    );
    let mut classes: Vec<u64> = Vec::new();
    let mut size = 1u64;
    while size <= 8192 {
        if let Ok(a) = one(dev, lb::KMALLOC, k, size, 0, context::PROCESS) {
            if classes.last() != Some(&a.actual) {
                classes.push(a.actual);
            }
            size = a.actual + 1;
        } else {
            break;
        }
    }
    t.check(
        "kmalloc: size classes",
        "kmalloc rounds sizes up to a fixed set of classes (powers of two, plus 96 and 192)",
        format!(
            "classes up to 8 KiB measured: {} B",
            classes
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        // SLUB's kmalloc classes up to 8 KiB, exactly: a kmalloc that did
        // not round would give every size from 1 to 8192 here.
        classes
            == [
                8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192,
            ],
    );
    let big = one(dev, lb::KMALLOC, k, 4 << 20, 0, context::PROCESS);
    let too_big = one(dev, lb::KMALLOC, k, (4 << 20) + 1, 0, context::PROCESS);
    t.check(
        "kmalloc: limits",
        "the largest kmalloc is KMALLOC_MAX_SIZE (4 MiB on x86-64: an order-10 run); one byte more is refused",
        format!("4 MiB: {}; 4 MiB + 1: {}", show(&big), show(&too_big)),
        matches!(&big, Ok(a) if a.actual == 4 << 20 && a.pages == 1024 && a.contiguous == 1)
            && too_big == Err(Errno::E2BIG),
    );
    let vbig = one(dev, lb::VMALLOC, k, 64 << 20, 0, context::PROCESS);
    t.check(
        "vmalloc: limits",
        "vmalloc goes well past kmalloc's limit: 64 MiB of virtually contiguous memory",
        show(&vbig),
        matches!(&vbig, Ok(a) if a.actual == 64 << 20 && a.vmalloc_area == 1),
    );

    // Flags: LDD3 "The Flags Argument", Love "gfp_mask flags".
    let atomic_in_lock = one(dev, lb::KMALLOC, gfp::ATOMIC, 256, 0, context::ATOMIC);
    let kernel_in_lock = one(dev, lb::KMALLOC, k, 256, 0, context::ATOMIC);
    t.check(
        "flags: GFP_ATOMIC vs GFP_KERNEL",
        "GFP_ATOMIC never sleeps, so it works under a spinlock; GFP_KERNEL may sleep and is refused there",
        format!("GFP_ATOMIC under a spinlock: {}; GFP_KERNEL: {}", show(&atomic_in_lock), show(&kernel_in_lock)),
        matches!(&atomic_in_lock, Ok(a) if a.actual == 256 && a.vmalloc_area == 0)
            && kernel_in_lock == Err(Errno::EINVAL),
    );
    let irq = one(dev, lb::KMALLOC, gfp::ATOMIC, 256, 0, context::HARDIRQ);
    let irq_kernel = one(dev, lb::KMALLOC, k, 256, 0, context::HARDIRQ);
    t.check(
        "flags: interrupt context",
        "in an interrupt handler only GFP_ATOMIC (or GFP_NOWAIT) may be used",
        format!(
            "GFP_ATOMIC from an irq_work: {}; GFP_KERNEL: {}",
            show(&irq),
            show(&irq_kernel)
        ),
        matches!(&irq, Ok(a) if a.actual == 256 && a.vmalloc_area == 0)
            && irq_kernel == Err(Errno::EINVAL),
    );
    let nowait = one(dev, lb::OUR_CACHE, gfp::NOWAIT, 512, 0, context::HARDIRQ);
    t.check(
        "flags: interrupt context",
        "our own cache serves GFP_NOWAIT from hard interrupt context (its locks disable interrupts)",
        show(&nowait),
        // Our cache's object is exactly the size asked for (no size classes).
        matches!(&nowait, Ok(a) if a.actual == 512 && a.contiguous == 1 && a.vmalloc_area == 0),
    );
    for (bit, name, instead) in gfp::REMOVED {
        let r = one(dev, lb::KMALLOC, k | bit, 64, 0, context::PROCESS);
        t.check(
            "flags: what changed since 2.6",
            format!("{name} is gone from today's kernel: {instead}"),
            show(&r),
            r == Err(Errno::EINVAL),
        );
    }

    // Zones: LDD3 "Memory zones", Love "zone modifiers".
    let dma = one(dev, lb::KMALLOC, k | gfp::DMA, 512, 0, context::PROCESS);
    t.check(
        "zones",
        "GFP_DMA memory comes from ZONE_DMA, below 16 MiB on x86",
        show(&dma),
        matches!(&dma, Ok(a) if a.zone == zone::DMA && a.phys_hi < 16 << 20),
    );
    let dma32 = one(
        dev,
        lb::GET_FREE_PAGES,
        k | gfp::DMA32,
        0,
        0,
        context::PROCESS,
    );
    t.check(
        "zones",
        "GFP_DMA32 memory lies below 4 GiB",
        show(&dma32),
        matches!(&dma32, Ok(a) if a.phys_hi < 4 << 30 && a.zone != zone::NORMAL),
    );
    let high = one(
        dev,
        lb::GET_FREE_PAGES,
        gfp::HIGHUSER,
        0,
        0,
        context::PROCESS,
    );
    t.check(
        "zones",
        "there is no ZONE_HIGHMEM on 64-bit: __GFP_HIGHMEM pages come from the direct-mapped zones",
        show(&high),
        matches!(&high, Ok(a) if a.vmalloc_area == 0),
    );

    // Pages: LDD3 "get_free_page and Friends".
    let zeroed = one(dev, lb::GET_ZEROED_PAGE, k, 0, 0, context::PROCESS);
    let plain = one(dev, lb::GET_FREE_PAGES, k, 0, 0, context::PROCESS);
    t.check(
        "pages",
        "get_zeroed_page returns a page of zeros; __get_free_page makes no such promise",
        format!(
            "get_zeroed_page: {}; __get_free_page: {}",
            show(&zeroed),
            show(&plain)
        ),
        matches!(&zeroed, Ok(a) if a.zeroed == 1 && a.actual == 4096 && a.pages == 1)
            && matches!(&plain, Ok(a) if a.actual == 4096 && a.pages == 1 && a.vmalloc_area == 0),
    );
    let kz = one(dev, lb::KZALLOC, k, 1000, 0, context::PROCESS);
    t.check(
        "pages",
        "kzalloc (kmalloc with __GFP_ZERO) returns zeroed memory",
        show(&kz),
        matches!(&kz, Ok(a) if a.zeroed == 1),
    );
    let o3 = one(dev, lb::ALLOC_PAGES, k, 0, 3, context::PROCESS);
    t.check(
        "pages",
        "__get_free_pages(order 3) gives 8 physically contiguous pages",
        show(&o3),
        matches!(&o3, Ok(a) if a.pages == 8 && a.contiguous == 1 && a.actual == 8 * 4096),
    );

    // vmalloc: LDD3 "vmalloc and Friends", Love "vmalloc()".
    let v = one(dev, lb::VMALLOC, k, 4 << 20, 0, context::PROCESS);
    let v64 = one(dev, lb::VMALLOC, k, 64 << 20, 0, context::PROCESS);
    t.check(
        "vmalloc",
        "vmalloc memory is only virtually contiguous: it lives in the vmalloc area, mapped page by page; \
         physical contiguity is not promised (today's page allocator often hands out long runs anyway)",
        format!("4 MiB: {}; 64 MiB: {}", show(&v), show(&v64)),
        matches!(&v, Ok(a) if a.vmalloc_area == 1 && a.pages == 1024)
            && matches!(&v64, Ok(a) if a.vmalloc_area == 1 && a.pages == 16384),
    );
    let km = one(dev, lb::KMALLOC, k, 64 << 10, 0, context::PROCESS);
    t.check(
        "vmalloc",
        "kmalloc memory is physically contiguous, in the direct map",
        show(&km),
        matches!(&km, Ok(a) if a.contiguous == 1 && a.vmalloc_area == 0),
    );
    let v_atomic = one(dev, lb::VMALLOC, gfp::ATOMIC, 4096, 0, context::ATOMIC);
    let v_irq = one(dev, lb::VMALLOC, gfp::ATOMIC, 4096, 0, context::HARDIRQ);
    t.check(
        "vmalloc: what changed since 2.6",
        "LDD3: vmalloc may sleep, never in atomic context. Today __vmalloc accepts GFP_ATOMIC under a spinlock, \
         but still never in interrupt context",
        format!("GFP_ATOMIC under a spinlock: {}; from an irq_work: {}", show(&v_atomic), show(&v_irq)),
        matches!(&v_atomic, Ok(a) if a.actual == 4096 && a.vmalloc_area == 1)
            && v_irq == Err(Errno::EINVAL),
    );

    // Lookaside caches and mempools: LDD3 "Lookaside Caches", "Memory Pools".
    let before = dev.caches().unwrap_or_default();
    let batch = dev.alloc(uapi::AllocRequest {
        backend: lb::OUR_CACHE,
        gfp: k,
        size: 200,
        count: 100,
        ..Default::default()
    });
    let after = dev.caches().unwrap_or_default();
    let c200 = after.iter().find(|c| c.objsize == 200 && c.flags == 0);
    let was = before
        .iter()
        .find(|c| c.objsize == 200 && c.flags == 0)
        .map_or(0, |c| c.active_objs - c.cached_objs);
    t.check(
        "lookaside caches",
        "a lookaside cache hands out fixed-size objects from slabs of whole pages",
        match (&batch, c200) {
            (Ok(r), Some(c)) => format!(
                "100 objects of 200 B from {}: {} active, {} per slab of {} page(s), per-CPU hits {}",
                cache_name(c),
                c.active_objs,
                c.objperslab,
                c.pagesperslab,
                c.cpu_alloc_hits
            ) + &format!(", first at phys {:#x}", r.first().map_or(0, |a| a.phys_lo)),
            (Err(e), _) => format!("refused: {e}"),
            (Ok(_), None) => "no 200-byte cache is listed".into(),
        },
        matches!((&batch, c200), (Ok(r), Some(c)) if r.len() == 100 && c.active_objs - c.cached_objs >= was + 100),
    );
    if let Ok(r) = &batch {
        for a in r {
            let _ = dev.free(a.handle);
        }
    }
    let stale = batch
        .as_ref()
        .ok()
        .and_then(|r| r.first().map(|a| a.handle));
    let stale_free = stale.map(|h| dev.free(h));
    t.check(
        "kfree rules",
        "memory is freed exactly once: a second free of the same handle is refused, never a double free",
        match stale_free {
            Some(Err(e)) => format!("the second free was refused: {e}"),
            Some(Ok(())) => "the second free was accepted".into(),
            None => "there was no object to free".into(),
        },
        stale_free == Some(Err(Errno::EINVAL)),
    );
    // kfree(NULL) can only fail by crashing; "does nothing" is observable:
    // our page source's counters and every cache's counters stay the same,
    // and this file's handles are untouched.
    let stats_before = dev.page_stats();
    let caches_before = dev.caches();
    let list_before = dev.list().map(|l| l.len());
    let null = dev.ioctl_raw(uapi::LDD_IOC_FREE_NULL, 0);
    let stats_after = dev.page_stats();
    let caches_after = dev.caches();
    let list_after = dev.list().map(|l| l.len());
    let unchanged = stats_before.is_ok()
        && stats_before == stats_after
        && caches_before.is_ok()
        && caches_before == caches_after
        && list_before == list_after;
    t.check(
        "kfree rules",
        "kfree(NULL) is safe and does nothing (so are kvfree(NULL) and free_pages(0, order))",
        match (&null, unchanged) {
            (Ok(_), true) => "kfree(NULL), kvfree(NULL) and free_pages(0, 0) returned; \
                the page source, the caches and the file's handles are unchanged"
                .into(),
            (Ok(_), false) => format!(
                "returned, but something changed: {} caches, {} handles",
                caches_after.as_ref().map_or(0, Vec::len),
                list_after.as_ref().map_or(0, |n| *n)
            ),
            (Err(e), _) => format!("failed: {e}"),
        },
        null == Ok(0) && unchanged,
    );
    let pools_before = pool_backing(dev, 4000);
    let pool = one(dev, lb::OUR_MEMPOOL, gfp::ATOMIC, 4000, 0, context::ATOMIC);
    let pools_after = pool_backing(dev, 4000);
    t.check(
        "mempools",
        "a mempool allocation works like its backing cache while memory is plentiful",
        format!(
            "{}; (backing, reserve) allocations before {pools_before:?}, after {pools_after:?}",
            show(&pool)
        ),
        // Served by the backing cache, not the reserve, with the element size.
        matches!(&pool, Ok(a) if a.actual == 4000)
            && matches!((pools_before, pools_after), (b, Some(a))
                if a.0 == b.map_or(0, |b| b.0) + 1 && a.1 == b.map_or(0, |b| b.1)),
    );

    // Love: "the kernel stack is small and fixed".
    let stack = dev.stack();
    t.check(
        "kernel stack",
        "the kernel stack is small and fixed (a few pages): no large objects on it",
        match &stack {
            Ok(s) => format!(
                "THREAD_SIZE {} B ({} pages), {} B used at the ioctl handler, {} B left{}",
                s.thread_size,
                s.thread_size / u64::from(s.page_size.max(1)),
                s.used_in_ioctl,
                s.left_in_ioctl,
                if s.vmap_stack == 1 { ", virtually mapped with guard pages" } else { "" }
            ),
            Err(e) => e.to_string(),
        },
        matches!(&stack, Ok(s) if s.thread_size <= 32 << 10 && s.used_in_ioctl > 0 && s.used_in_ioctl < s.thread_size),
    );
    percpu_claims(dev, &mut t);
    large_buffer_claims(dev, &mut t);
    t
}

/// The possible CPUs, from /sys (`0-1`, `0,2-3`): counted independently
/// of the module.
pub fn sys_possible_cpus() -> Option<u32> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible").ok()?;
    let mut n = 0;
    for part in text.trim().split(',') {
        let mut ends = part.split('-').map(|x| x.parse::<u32>().ok());
        let lo = ends.next()??;
        let hi = ends.next().unwrap_or(Some(lo))?;
        n += hi.checked_sub(lo)? + 1;
    }
    Some(n)
}

/// `reads` reads of one byte at offset 0 (at the end of an empty device,
/// 0 bytes each): counted by the device on this CPU, and harmless.
fn reads(dev: &Device, n: u32) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 1];
    let mut bytes = 0;
    for _ in 0..n {
        bytes += dev.file().read_at(&mut b, 0).unwrap_or(0) as u64;
    }
    bytes
}

/// The race of [`uapi::LDD_IOC_PERCPU_RACE`]: (reference, sum) after
/// `threads` threads of `iters` increments each.
pub fn race(dev: &Device, mode: u32, threads: u32, iters: u32) -> Result<(u64, u64), Errno> {
    dev.race_reset()?;
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..threads)
            .map(|_| s.spawn(|| dev.race_run(iters, mode, 0)))
            .collect();
        for r in runs {
            r.join().map_err(|_| Errno::EIO)??;
        }
        Ok::<(), Errno>(())
    })?;
    let (r, _) = dev.race_read()?;
    Ok((r.reference, r.sum))
}

/// LDD3 "Per-CPU Variables".
fn percpu_claims(dev: &Device, t: &mut Tour) {
    const S: &str = "per-CPU variables";
    let info = dev.percpu_info();
    let sys = sys_possible_cpus();
    t.check(
        S,
        "an alloc_percpu object has one copy per possible CPU (online or not)",
        match &info {
            Ok((i, c)) => format!(
                "{} copies of {} B for {} possible CPUs ({} online; /sys says {sys:?} possible)",
                c.len(),
                i.copy_size,
                i.possible,
                i.online
            ),
            Err(e) => e.to_string(),
        },
        matches!(&info, Ok((i, c)) if c.len() as u32 == i.possible && Some(i.possible) == sys),
    );
    // Each online CPU in turn reads the device N times, pinned: only its
    // own copy may grow, by exactly N.
    const N: u32 = 25;
    let mut own = Vec::new();
    let mut fine = true;
    let online: Vec<u32> = info.as_ref().map_or(Vec::new(), |(_, c)| {
        c.iter().filter(|c| c.online != 0).map(|c| c.cpu).collect()
    });
    for &cpu in &online {
        let before = dev.percpu_info().map(|x| x.1);
        let ran = crate::cpu::on_cpu(cpu as usize, || reads(dev, N));
        let after = dev.percpu_info().map(|x| x.1);
        match (before, ran, after) {
            (Ok(b), Ok(_), Ok(a)) => {
                let deltas: Vec<u64> = b.iter().zip(&a).map(|(b, a)| a.reads - b.reads).collect();
                fine &= deltas
                    .iter()
                    .enumerate()
                    .all(|(i, &d)| d == if i as u32 == cpu { u64::from(N) } else { 0 });
                own.push(format!("cpu {cpu} pinned: read deltas {deltas:?}"));
            }
            _ => fine = false,
        }
    }
    // Copies one per-CPU offset apart: never in one cache line.
    let apart = match &info {
        Ok((i, c)) => {
            c.iter().all(|x| x.addr == i.base.wrapping_add(x.offset))
                && c.windows(2).all(|w| w[1].addr.abs_diff(w[0].addr) >= 64)
        }
        Err(_) => false,
    };
    let distance = match &info {
        Ok((_, c)) if c.len() > 1 => format!(
            "copies {:#x} bytes apart",
            c[1].addr.wrapping_sub(c[0].addr)
        ),
        _ => "one copy".into(),
    };
    t.check(
        S,
        "each CPU updates its own copy, with no lock and no shared cache line",
        format!(
            "{}; {distance}, each at the cookie + __per_cpu_offset[cpu]",
            own.join("; ")
        ),
        fine && apart && online.len() > 1,
    );
    // The total is the sum: N more reads on whatever CPUs, counted by us.
    let before = dev.percpu_info();
    let bytes = std::thread::scope(|s| {
        let h: Vec<_> = (0..4).map(|_| s.spawn(|| reads(dev, N))).collect();
        h.into_iter().map(|h| h.join().unwrap_or(0)).sum::<u64>()
    });
    let after = dev.percpu_info();
    let summed = match (&before, &after) {
        (Ok((b, _)), Ok((a, c))) => {
            let copies: u64 = c.iter().map(|x| x.reads).sum();
            (
                a.reads - b.reads,
                a.bytes_read - b.bytes_read,
                copies == a.reads,
            )
        }
        _ => (0, 0, false),
    };
    t.check(
        S,
        "the total is the sum of the copies, read over the possible CPUs",
        format!(
            "4 threads x {N} reads: the sum grew by {} ({} bytes; we read {bytes}); sum = copies added: {}",
            summed.0, summed.1, summed.2
        ),
        summed.0 == u64::from(4 * N) && summed.1 == bytes && summed.2,
    );
    let on = race(dev, uapi::race_mode::PREEMPT_ON, 4, 500);
    let off = race(dev, uapi::race_mode::PREEMPT_OFF, 4, 500);
    t.check(
        S,
        "per-CPU access needs preemption off (get_cpu_var): with it on, a task that \
         loses its CPU between reading and writing its copy loses increments",
        format!("4 threads x 500 increments: preemption on (reference, sum) {on:?}, off {off:?}"),
        matches!(on, Ok((r, s)) if r == 2000 && s < r) && off == Ok((2000, 2000)),
    );
}

/// Folds every CPU's pending vmstat differences into the global counters
/// (`/proc/sys/vm/stat_refresh`, root only; Documentation/admin-guide/
/// sysctl/vm.rst). Without it a zone's free count lags by up to its
/// `stat_threshold` per CPU (tens to a hundred and more pages each), which
/// is the size of what the large-buffer claims measure. As another user
/// the counters are read as they are.
pub fn refresh_vm_stats() {
    let _ = std::fs::write("/proc/sys/vm/stat_refresh", "1");
}

/// Pages free in every zone (the buddy lists plus the per-CPU page lists),
/// from /proc/zoneinfo, the per-CPU differences folded in first.
pub fn free_pages() -> Option<u64> {
    refresh_vm_stats();
    let text = std::fs::read_to_string("/proc/zoneinfo").ok()?;
    let mut n = 0u64;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["pages", "free", v] | ["count:", v] => n += v.parse::<u64>().ok()?,
            _ => {}
        }
    }
    Some(n)
}

/// `CmaFree` of /proc/meminfo, in bytes.
pub fn cma_free() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("CmaFree:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// Samples [`pages_taken`] takes; it reports their median.
const TAKEN_SAMPLES: usize = 5;

/// `count` kept allocations by `backend`, and the drop in free pages they
/// caused; freed again before returning. The free count is the whole
/// machine's: a deferred free of the kernel's own (RCU callbacks, the KASAN
/// quarantine of the debug kernel) landing in the window moves it by
/// itself. So the window is short, and taken [`TAKEN_SAMPLES`] times: the
/// median is what the allocations took (CI, debug kernel: one window of
/// five saw 344 pages for 512 taken).
pub fn pages_taken(
    dev: &Device,
    backend: u32,
    size: u64,
    order: u32,
    count: u32,
) -> Result<i64, Errno> {
    let mut samples = [0i64; TAKEN_SAMPLES];
    for sample in &mut samples {
        *sample = pages_taken_once(dev, backend, size, order, count)?;
    }
    samples.sort_unstable();
    Ok(samples[TAKEN_SAMPLES / 2])
}

/// One window of [`pages_taken`].
fn pages_taken_once(
    dev: &Device,
    backend: u32,
    size: u64,
    order: u32,
    count: u32,
) -> Result<i64, Errno> {
    let before = free_pages().ok_or(Errno::EIO)?;
    let r = dev.alloc(uapi::AllocRequest {
        backend,
        gfp: gfp::KERNEL,
        size,
        order,
        count,
        ..Default::default()
    });
    let after = free_pages().ok_or(Errno::EIO);
    for a in r.iter().flatten() {
        let _ = dev.free(a.handle);
    }
    let r = r?;
    if r.len() != count as usize {
        return Err(Errno::ENOMEM);
    }
    Ok(before as i64 - after? as i64)
}

/// LDD3 "Obtaining Large Buffers", on today's kernel.
fn large_buffer_claims(dev: &Device, t: &mut Tour) {
    const S: &str = "large buffers";
    let max = one(dev, lb::ALLOC_PAGES, gfp::KERNEL, 0, 10, context::PROCESS);
    let past = one(dev, lb::ALLOC_PAGES, gfp::KERNEL, 0, 11, context::PROCESS);
    t.check(
        S,
        "the largest single buddy allocation is MAX_PAGE_ORDER: order 10, 4 MiB; order 11 is refused",
        format!("order 10: {}; order 11: {:?}", show(&max), past.map(|_| ())),
        matches!(&max, Ok(a) if a.actual == 4 << 20 && a.contiguous == 1)
            && past.is_err(),
    );
    const CMA: u64 = 32 << 20;
    let free0 = cma_free();
    let cma = dev.alloc(uapi::AllocRequest {
        backend: lb::CMA,
        gfp: gfp::KERNEL,
        size: CMA,
        count: 1,
        flags: alloc_flags::BIG,
        ..Default::default()
    });
    let free1 = cma_free();
    if let Ok(r) = &cma {
        for a in r {
            let _ = dev.free(a.handle);
        }
    }
    let free2 = cma_free();
    let buddy = one(dev, lb::ALLOC_PAGES, gfp::KERNEL, 0, 13, context::PROCESS);
    let cma = cma.and_then(|r| r.into_iter().next().ok_or(Errno::ENOMEM));
    let taken = free0.zip(free1).map(|(a, b)| a as i64 - b as i64);
    t.check(
        S,
        "a boot-time reservation (CMA, cma=) gives tens of MiB physically contiguous after \
         boot, where the buddy allocator cannot (order 13 = 32 MiB)",
        format!(
            "cma 32 MiB: {}; CmaFree fell by {:?} B and came back to {:?} of {:?}; \
             alloc_pages order 13: {:?}",
            show(&cma),
            taken,
            free2,
            free0,
            buddy.map(|_| ())
        ),
        matches!(&cma, Ok(a) if a.contiguous == 1 && a.phys_hi - a.phys_lo + 1 == CMA)
            && taken.is_some_and(|d| d >= CMA as i64 && d < (CMA + (8 << 20)) as i64)
            && buddy.is_err(),
    );
    let contig = one(
        dev,
        lb::ALLOC_CONTIG,
        gfp::KERNEL,
        8 << 20,
        0,
        context::PROCESS,
    );
    t.check(
        S,
        "alloc_contig_pages() finds a contiguous run past MAX_PAGE_ORDER by migrating pages \
         (CONFIG_CONTIG_ALLOC): 8 MiB",
        show(&contig),
        matches!(&contig, Ok(a) if a.contiguous == 1 && a.actual == 8 << 20 && a.phys_hi - a.phys_lo + 1 == 8 << 20),
    );
    // 64 of each, kept while the free pages are counted.
    let order3 = pages_taken(dev, lb::ALLOC_PAGES, 0, 3, 64);
    let exact = pages_taken(dev, lb::ALLOC_PAGES_EXACT, 5 * 4096, 0, 64);
    t.check(
        S,
        "alloc_pages_exact(5 pages) wastes none of the 3 pages an order-3 allocation would",
        format!(
            "64 x order 3 took {order3:?} free pages (512 expected), 64 x alloc_pages_exact(20 KiB) \
             took {exact:?} (320 expected)"
        ),
        matches!((order3, exact), (Ok(o), Ok(e)) if (o - 512).abs() <= 48 && (e - 320).abs() <= 48),
    );
}
