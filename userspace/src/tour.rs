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

/// Runs the tour on an open device.
pub fn run(dev: &Device) -> Tour {
    let mut t = Tour::default();
    let k = gfp::KERNEL;

    // LDD3 "The Real Story of kmalloc" / Love "kmalloc()".
    let r = one(dev, lb::KMALLOC, k, 100, 0, context::PROCESS);
    t.check(
        "kmalloc: size classes",
        "kmalloc(100, GFP_KERNEL) returns an object from the 128-byte size class",
        show(&r),
        matches!(&r, Ok(a) if a.actual == 128),
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
        classes.contains(&96) && classes.contains(&192) && classes.contains(&8192),
    );
    let big = one(dev, lb::KMALLOC, k, 4 << 20, 0, context::PROCESS);
    let too_big = one(dev, lb::KMALLOC, k, (4 << 20) + 1, 0, context::PROCESS);
    t.check(
        "kmalloc: limits",
        "the largest kmalloc is KMALLOC_MAX_SIZE (4 MiB on x86-64: an order-10 run); one byte more is refused",
        format!("4 MiB: {}; 4 MiB + 1: {}", show(&big), show(&too_big)),
        big.is_ok() && too_big == Err(Errno::E2BIG),
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
        atomic_in_lock.is_ok() && kernel_in_lock == Err(Errno::EINVAL),
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
        irq.is_ok() && irq_kernel == Err(Errno::EINVAL),
    );
    let nowait = one(dev, lb::OUR_CACHE, gfp::NOWAIT, 512, 0, context::HARDIRQ);
    t.check(
        "flags: interrupt context",
        "our own cache serves GFP_NOWAIT from hard interrupt context (its locks disable interrupts)",
        show(&nowait),
        nowait.is_ok(),
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
        matches!(&zeroed, Ok(a) if a.zeroed == 1 && a.actual == 4096) && plain.is_ok(),
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
        v_atomic.is_ok() && v_irq == Err(Errno::EINVAL),
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
    let null = dev.ioctl_raw(uapi::LDD_IOC_FREE_NULL, 0);
    t.check(
        "kfree rules",
        "kfree(NULL) is safe and does nothing (so are kvfree(NULL) and free_pages(0, order))",
        match null {
            Ok(_) => {
                "kfree(NULL), kvfree(NULL) and free_pages(0, 0) returned; nothing happened".into()
            }
            Err(e) => format!("failed: {e}"),
        },
        null == Ok(0),
    );
    let pool = one(dev, lb::OUR_MEMPOOL, gfp::ATOMIC, 4000, 0, context::ATOMIC);
    t.check(
        "mempools",
        "a mempool allocation works like its backing cache while memory is plentiful",
        show(&pool),
        pool.is_ok(),
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
    t
}
