//! The allocation lab: every tour claim, every flag × backend × context
//! combination against the rules, limits, handle misuse, freeing on close.

use nix::errno::Errno;

use crate::device::{gfp_names, Device};
use crate::tap::{Context, Outcome, Test, TestResult};
use crate::uapi::{self, alloc_flags, context, gfp, lab_backend as lb};
use crate::{ensure, ensure_eq};

fn dev() -> Result<Device, String> {
    Device::open_index(0).ctx("open")
}

/// What the lab's rules say a request gives: `Ok` or the errno.
pub fn expected(backend: u32, flags: u64, ctx: u32, order: u32) -> Result<(), Errno> {
    let sleeps = flags & gfp::DIRECT_RECLAIM != 0;
    if flags & (gfp::WAIT | gfp::REPEAT | gfp::COLD) != 0 {
        return Err(Errno::EINVAL);
    }
    if ctx != context::PROCESS && sleeps {
        return Err(Errno::EINVAL);
    }
    if flags & gfp::NOFAIL != 0 && (!sleeps || order > 1) {
        return Err(Errno::EINVAL);
    }
    let slab = matches!(
        backend,
        lb::KMALLOC
            | lb::KZALLOC
            | lb::KREALLOC
            | lb::KMEM_CACHE
            | lb::KERNEL_MEMPOOL
            | lb::KVMALLOC
    );
    if slab && flags & (gfp::HIGHMEM | gfp::DMA32) != 0 {
        return Err(Errno::EINVAL);
    }
    if backend == lb::KERNEL_MEMPOOL && flags & gfp::NOFAIL != 0 {
        return Err(Errno::EINVAL);
    }
    if matches!(backend, lb::VMALLOC | lb::KVMALLOC) {
        if flags & !gfp::VMALLOC_SUPPORTED != 0 || ctx == context::HARDIRQ {
            return Err(Errno::EINVAL);
        }
        if backend == lb::KVMALLOC && (ctx != context::PROCESS || !sleeps) {
            return Err(Errno::EINVAL);
        }
    }
    if backend == lb::KREALLOC {
        return Err(Errno::EINVAL); // No handle given.
    }
    if backend == lb::ALLOC_PAGES_EXACT && flags & (gfp::COMP | gfp::HIGHMEM) != 0 {
        return Err(Errno::EINVAL);
    }
    if matches!(backend, lb::ALLOC_CONTIG | lb::CMA) {
        let ok = gfp::KERNEL | gfp::ZERO | gfp::NOWARN | gfp::RETRY_MAYFAIL;
        if ctx != context::PROCESS || !sleeps || flags & !ok != 0 {
            return Err(Errno::EINVAL);
        }
    }
    Ok(())
}

/// The flags of the matrix: every type flag and modifier the seeds name.
pub const MATRIX_FLAGS: [u64; 16] = [
    gfp::KERNEL,
    gfp::ATOMIC,
    gfp::NOWAIT,
    gfp::NOIO,
    gfp::NOFS,
    gfp::USER,
    gfp::HIGHUSER,
    gfp::KERNEL | gfp::DMA,
    gfp::KERNEL | gfp::DMA32,
    gfp::ATOMIC | gfp::DMA,
    gfp::KERNEL | gfp::ZERO,
    gfp::KERNEL | gfp::NOWARN | gfp::NORETRY,
    gfp::KERNEL | gfp::RETRY_MAYFAIL,
    gfp::KERNEL | gfp::NOFAIL,
    gfp::ATOMIC | gfp::NOFAIL,
    gfp::NOWAIT | gfp::HIGH,
];

fn matrix() -> TestResult {
    let d = dev()?;
    let mut tried = 0;
    for backend in 0..lb::COUNT {
        for flags in MATRIX_FLAGS {
            for ctx in 0..context::COUNT {
                let order = u32::from(matches!(backend, lb::ALLOC_PAGES | lb::GET_FREE_PAGES));
                let got = d
                    .alloc(uapi::AllocRequest {
                        backend,
                        context: ctx,
                        gfp: flags,
                        size: 300,
                        order,
                        count: 1,
                        flags: alloc_flags::FREE_NOW | alloc_flags::TOUCH,
                        ..Default::default()
                    })
                    .map(|r| {
                        let a = r[0];
                        // __GFP_ZERO and kzalloc must give zeros.
                        (flags & gfp::ZERO != 0 || backend == lb::KZALLOC, a)
                    });
                let want = expected(backend, flags, ctx, order);
                match (&got, want) {
                    (Ok((must_zero, a)), Ok(())) => {
                        ensure!(
                            !must_zero || a.zeroed == 1,
                            "{} {} not zeroed",
                            uapi::lab_backend::NAMES[backend as usize],
                            gfp_names(flags)
                        );
                        ensure!(
                            a.actual >= a.requested,
                            "actual {} < requested {}",
                            a.actual,
                            a.requested
                        );
                        // A kmem_cache's zone is fixed when it is created
                        // (SLAB_CACHE_DMA), not by the flags of an allocation;
                        // the mempool's backing cache is a normal one.
                        if flags & gfp::DMA != 0
                            && !matches!(
                                backend,
                                lb::KMEM_CACHE | lb::OUR_MEMPOOL | lb::KERNEL_MEMPOOL
                            )
                        {
                            ensure_eq!(
                                a.zone,
                                uapi::zone::DMA,
                                "GFP_DMA from {}",
                                uapi::lab_backend::NAMES[backend as usize]
                            );
                        }
                    }
                    (Err(e), Err(w)) if *e == w => {}
                    _ => {
                        return Err(format!(
                            "{} with {} in {} context: got {:?}, want {:?}",
                            uapi::lab_backend::NAMES[backend as usize],
                            gfp_names(flags),
                            uapi::context::NAMES[ctx as usize],
                            got.map(|_| ()),
                            want
                        ))
                    }
                }
                tried += 1;
            }
        }
    }
    println!("# {tried} combinations checked against the rules");
    Ok(Outcome::Pass)
}

fn limits() -> TestResult {
    let d = dev()?;
    let base = uapi::AllocRequest {
        backend: lb::KMALLOC,
        gfp: gfp::KERNEL,
        size: 64,
        count: 1,
        ..Default::default()
    };
    let try_req = |r: uapi::AllocRequest| d.alloc(r).map(|v| v.len());
    ensure_eq!(
        try_req(uapi::AllocRequest { count: 0, ..base }),
        Err(Errno::EINVAL),
        "count 0"
    );
    ensure_eq!(
        try_req(uapi::AllocRequest {
            count: uapi::LAB_MAX_COUNT + 1,
            ..base
        }),
        Err(Errno::E2BIG),
        "count"
    );
    ensure_eq!(
        try_req(uapi::AllocRequest { size: 0, ..base }),
        Err(Errno::EINVAL),
        "size 0"
    );
    ensure_eq!(
        try_req(uapi::AllocRequest {
            backend: lb::VMALLOC,
            size: 64 << 20,
            ..base
        }),
        Err(Errno::E2BIG),
        "64 MiB without BIG"
    );
    ensure_eq!(
        try_req(uapi::AllocRequest {
            backend: 99,
            ..base
        }),
        Err(Errno::EINVAL),
        "backend"
    );
    ensure_eq!(
        try_req(uapi::AllocRequest { context: 9, ..base }),
        Err(Errno::EINVAL),
        "context"
    );
    ensure_eq!(
        try_req(uapi::AllocRequest {
            flags: 1 << 20,
            ..base
        }),
        Err(Errno::EINVAL),
        "flags"
    );
    ensure_eq!(
        try_req(uapi::AllocRequest {
            gfp: 1 << 50,
            ..base
        }),
        Err(Errno::EINVAL),
        "unknown gfp bit"
    );
    ensure_eq!(
        try_req(uapi::AllocRequest {
            backend: lb::ALLOC_PAGES,
            order: 11,
            ..base
        }),
        Err(Errno::EINVAL),
        "order 11"
    );
    ensure_eq!(
        try_req(uapi::AllocRequest {
            backend: lb::GET_ZEROED_PAGE,
            order: 1,
            ..base
        }),
        Err(Errno::EINVAL),
        "zeroed page order 1"
    );
    ensure_eq!(
        try_req(uapi::AllocRequest {
            backend: lb::OUR_CACHE,
            size: 1 << 20,
            ..base
        }),
        Err(Errno::E2BIG),
        "cache object 1 MiB"
    );
    // Bad reply pointers: EFAULT, and nothing stays allocated.
    for ptr in [0u64, 8, 0xffff_8880_0000_0000] {
        let mut r = uapi::AllocRequest { count: 4, ..base };
        r.replies = ptr;
        ensure_eq!(
            d.ioctl_inout(uapi::LDD_IOC_ALLOC, &mut r),
            Err(Errno::EFAULT),
            "replies at {ptr:#x}"
        );
    }
    ensure_eq!(
        d.list().ctx("LIST")?.len(),
        0,
        "an EFAULT request keeps nothing"
    );
    ensure_eq!(
        d.ioctl_raw(uapi::LDD_IOC_ALLOC, 8),
        Err(Errno::EFAULT),
        "request at 8"
    );
    // The per-file byte limit: 256 MiB by default.
    let big = uapi::AllocRequest {
        backend: lb::VMALLOC,
        size: 100 << 20,
        flags: alloc_flags::BIG,
        ..base
    };
    ensure_eq!(try_req(big).ctx("100 MiB")?, 1);
    ensure_eq!(try_req(big).ctx("200 MiB")?, 1);
    ensure_eq!(try_req(big), Err(Errno::E2BIG), "300 MiB held");
    ensure_eq!(d.free_all().ctx("FREE_ALL")?, 2);
    Ok(Outcome::Pass)
}

fn handles() -> TestResult {
    let d = dev()?;
    let r = d
        .alloc(uapi::AllocRequest {
            backend: lb::KMALLOC,
            gfp: gfp::KERNEL,
            size: 100,
            count: 10,
            ..Default::default()
        })
        .ctx("alloc")?;
    ensure_eq!(r.len(), 10);
    let list = d.list().ctx("LIST")?;
    ensure_eq!(list.len(), 10);
    ensure!(
        list.iter().all(|h| h.actual == 128 && h.requested == 100),
        "list entries"
    );
    d.free(r[3].handle).ctx("free")?;
    ensure_eq!(
        d.free(r[3].handle),
        Err(Errno::EINVAL),
        "double free of a handle"
    );
    for bogus in [0u32, 1 << 31, u32::MAX, r[9].handle + 1] {
        ensure_eq!(d.free(bogus), Err(Errno::EINVAL), "handle {bogus:#x}");
    }
    ensure_eq!(
        d.ioctl_raw(uapi::LDD_IOC_FREE, 1 << 40),
        Err(Errno::EINVAL),
        "handle 2^40"
    );
    // A new allocation reuses the slot with a new generation: the old
    // handle stays dead.
    let again = d
        .alloc_one(lb::KMALLOC, gfp::KERNEL, 50, 0, 0)
        .ctx("alloc again")?;
    ensure!(again.handle != r[3].handle, "a freed handle came back");
    ensure_eq!(d.free(r[3].handle), Err(Errno::EINVAL), "stale handle");
    // Another file's handles are not ours.
    let other = dev()?;
    ensure_eq!(
        other.free(r[0].handle),
        Err(Errno::EINVAL),
        "foreign handle"
    );
    // krealloc grows a kmalloc handle and retires the old one.
    let grown = d
        .alloc(uapi::AllocRequest {
            backend: lb::KREALLOC,
            gfp: gfp::KERNEL,
            size: 5000,
            count: 1,
            handle: r[0].handle,
            ..Default::default()
        })
        .ctx("krealloc")?;
    ensure_eq!(grown[0].actual, 8192, "krealloc to 5000 uses kmalloc-8k");
    ensure_eq!(
        d.free(r[0].handle),
        Err(Errno::EINVAL),
        "the old handle after krealloc"
    );
    let pages = d
        .alloc_one(lb::ALLOC_PAGES, gfp::KERNEL, 0, 2, 0)
        .ctx("pages")?;
    ensure_eq!(
        d.alloc(uapi::AllocRequest {
            backend: lb::KREALLOC,
            gfp: gfp::KERNEL,
            size: 10,
            count: 1,
            handle: pages.handle,
            ..Default::default()
        })
        .map(drop),
        Err(Errno::EINVAL),
        "krealloc of pages"
    );
    // 10 - 1 freed + 1 again, krealloc replaced one, + the pages.
    ensure_eq!(d.free_all().ctx("FREE_ALL")?, 11);
    ensure_eq!(d.list().ctx("LIST")?.len(), 0);
    Ok(Outcome::Pass)
}

fn freed_on_close() -> TestResult {
    let d = dev()?;
    d.shrink().ctx("SHRINK")?;
    let before = d
        .page_stats()
        .ctx("PAGE_STATS")?
        .pages_out
        .iter()
        .sum::<i64>();
    let user_objs = |d: &Device| -> Result<u64, String> {
        Ok(d.caches()
            .ctx("caches")?
            .iter()
            .map(|c| c.active_objs - c.cached_objs)
            .sum())
    };
    let live_before = user_objs(&d)?;
    {
        let f = dev()?;
        f.alloc(uapi::AllocRequest {
            backend: lb::OUR_CACHE,
            gfp: gfp::KERNEL,
            size: 3000,
            count: 500,
            ..Default::default()
        })
        .ctx("our cache")?;
        f.alloc(uapi::AllocRequest {
            backend: lb::VMALLOC,
            gfp: gfp::KERNEL,
            size: 1 << 20,
            count: 4,
            ..Default::default()
        })
        .ctx("vmalloc")?;
        f.alloc(uapi::AllocRequest {
            backend: lb::ALLOC_PAGES,
            gfp: gfp::KERNEL,
            order: 2,
            count: 8,
            ..Default::default()
        })
        .ctx("pages")?;
        ensure_eq!(f.list().ctx("LIST")?.len(), 512);
    }
    let live_after = user_objs(&d)?;
    ensure_eq!(live_after, live_before, "objects left live after close");
    d.shrink().ctx("SHRINK")?;
    ensure_eq!(
        d.page_stats()
            .ctx("PAGE_STATS")?
            .pages_out
            .iter()
            .sum::<i64>(),
        before,
        "pages after close + shrink"
    );
    Ok(Outcome::Pass)
}

/// Claims the tour makes; `tour/claim_count` fails when this is stale.
const TOUR_CLAIMS: usize = 32;

/// The tour, run once and shared by the per-claim tests.
fn tour() -> &'static Result<Vec<crate::tour::Claim>, String> {
    static TOUR: std::sync::OnceLock<Result<Vec<crate::tour::Claim>, String>> =
        std::sync::OnceLock::new();
    TOUR.get_or_init(|| {
        let d = dev()?;
        let claims = crate::tour::run(&d).claims;
        d.free_all().ctx("FREE_ALL")?;
        Ok(claims)
    })
}

fn tour_claims() -> Vec<Test> {
    let mut tests: Vec<Test> = (0..TOUR_CLAIMS)
        .map(|i| {
            Test::new(format!("tour/claim_{:02}", i + 1), move || {
                let claims = tour().as_ref().map_err(Clone::clone)?;
                let c = claims
                    .get(i)
                    .ok_or(format!("the tour has only {} claims", claims.len()))?;
                println!("# {}: {}", c.section, c.claim);
                println!("#   {}", c.observed);
                ensure!(c.holds, "the claim does not hold");
                Ok(Outcome::Pass)
            })
        })
        .collect();
    tests.push(Test::new("tour/claim_count", || {
        let claims = tour().as_ref().map_err(Clone::clone)?;
        ensure_eq!(
            claims.len(),
            TOUR_CLAIMS,
            "update TOUR_CLAIMS with the tour"
        );
        Ok(Outcome::Pass)
    }));
    tests
}

/// The lab tests.
pub fn tests() -> Vec<Test> {
    let mut t = vec![
        Test::new("lab/flag_backend_context_matrix", matrix),
        Test::new("lab/limits", limits),
        Test::new("lab/handles", handles),
        Test::new("lab/freed_on_close", freed_on_close),
    ];
    t.extend(tour_claims());
    t
}
