//! Large buffers beyond the tour's claims: `alloc_pages_exact` sizes,
//! CMA served from the reservation (CmaFree falls by the size, and comes
//! back at free and at close), the rules (root only, process context,
//! sleeping flags only, caps), and the lab's budgets charged.

use nix::errno::Errno;

use super::privilege::AsNobody;
use crate::device::Device;
use crate::tap::{Context, Outcome, Test, TestResult};
use crate::tour::cma_free;
use crate::uapi::{self, alloc_flags, context, gfp, lab_backend as lb};
use crate::{ensure, ensure_eq};

fn req(backend: u32, g: u64, size: u64) -> uapi::AllocRequest {
    uapi::AllocRequest {
        backend,
        gfp: g,
        size,
        count: 1,
        flags: if size > 4 << 20 { alloc_flags::BIG } else { 0 },
        ..Default::default()
    }
}

fn exact_sizes() -> TestResult {
    let d = Device::open_index(0).ctx("open")?;
    for size in [1u64, 4096, 4097, 5 * 4096, 3 << 20, 4 << 20] {
        let a = d
            .alloc(req(lb::ALLOC_PAGES_EXACT, gfp::KERNEL | gfp::ZERO, size))
            .ctx("exact")?[0];
        let pages = size.div_ceil(4096);
        ensure_eq!(a.actual, pages * 4096, "usable bytes of {size}");
        ensure_eq!(a.contiguous, 1, "contiguous");
        ensure_eq!(a.zeroed, 1, "__GFP_ZERO");
        d.free(a.handle).ctx("free")?;
    }
    Ok(Outcome::Pass)
}

fn cma_reservation() -> TestResult {
    let Some(total) = cma_free() else {
        return Ok(Outcome::Skip("no CMA in /proc/meminfo".into()));
    };
    if total < 32 << 20 {
        return Ok(Outcome::Skip(format!(
            "CmaFree is {total} B: boot with cma=64M"
        )));
    }
    for size in [8u64 << 20, 16 << 20, (16 << 20) + 4096] {
        let d = Device::open_index(0).ctx("open")?;
        let before = cma_free().ok_or("CmaFree")?;
        let a = d.alloc(req(lb::CMA, gfp::KERNEL, size)).ctx("cma")?[0];
        let during = cma_free().ok_or("CmaFree")?;
        ensure_eq!(a.contiguous, 1, "contiguous");
        ensure_eq!(a.zeroed, 1, "dma_alloc_coherent zeroes");
        ensure_eq!(a.actual, size.div_ceil(4096) * 4096);
        ensure!(
            before - during >= a.actual && before - during < a.actual + (4 << 20),
            "CmaFree fell by {} for {size} B",
            before - during
        );
        if size == 8 << 20 {
            d.free(a.handle).ctx("free")?;
        } else {
            drop(d); // Closing the file frees it.
        }
        let after = cma_free().ok_or("CmaFree")?;
        ensure!(
            after + (1 << 20) >= before,
            "CmaFree {after} after, {before} before"
        );
    }
    Ok(Outcome::Pass)
}

fn rules() -> TestResult {
    let d = Device::open_index(0).ctx("open")?;
    let mut cases: Vec<(uapi::AllocRequest, Errno, String)> = Vec::new();
    for b in [lb::ALLOC_CONTIG, lb::CMA] {
        for (g, ctx) in [
            (gfp::ATOMIC, context::PROCESS),
            (gfp::NOWAIT, context::ATOMIC),
            (gfp::KERNEL, context::ATOMIC),
            (gfp::KERNEL | gfp::COMP, context::PROCESS),
            (gfp::KERNEL | gfp::DMA32, context::PROCESS),
            (gfp::KERNEL | gfp::NORETRY, context::PROCESS),
            (gfp::KERNEL | gfp::ACCOUNT, context::PROCESS),
        ] {
            let mut r = req(b, g, 1 << 20);
            r.context = ctx;
            cases.push((
                r,
                Errno::EINVAL,
                format!(
                    "{} {:#x} ctx {ctx}",
                    uapi::lab_backend::NAMES[b as usize],
                    g
                ),
            ));
        }
        let mut r = req(b, gfp::KERNEL, 8 << 20);
        r.flags = 0;
        cases.push((r, Errno::E2BIG, "8 MiB without BIG".into()));
        cases.push((
            req(b, gfp::KERNEL, 300 << 20),
            Errno::E2BIG,
            "past lab_max_mib".into(),
        ));
        cases.push((req(b, gfp::KERNEL, 0), Errno::EINVAL, "size 0".into()));
    }
    for g in [gfp::KERNEL | gfp::COMP, gfp::HIGHUSER] {
        cases.push((
            req(lb::ALLOC_PAGES_EXACT, g, 8192),
            Errno::EINVAL,
            format!("exact {g:#x}"),
        ));
    }
    let mut r = req(lb::ALLOC_PAGES_EXACT, gfp::KERNEL, (4 << 20) + 1);
    r.flags = alloc_flags::BIG;
    cases.push((r, Errno::E2BIG, "exact past MAX_PAGE_ORDER".into()));
    for (r, want, what) in cases {
        ensure_eq!(d.alloc(r).map(drop), Err(want), "{what}");
    }
    // alloc_pages_exact may run in atomic and hard-irq context.
    for ctx in [context::ATOMIC, context::HARDIRQ] {
        let mut r = req(lb::ALLOC_PAGES_EXACT, gfp::NOWAIT, 3 * 4096);
        r.context = ctx;
        r.flags = alloc_flags::FREE_NOW;
        d.alloc(r).ctx("exact, atomic")?;
    }
    Ok(Outcome::Pass)
}

fn root_only() -> TestResult {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(Outcome::Skip("needs root".into()));
    }
    let d = Device::open_index(0).ctx("open")?;
    let _n = AsNobody::enter()?;
    for b in [lb::ALLOC_PAGES_EXACT, lb::ALLOC_CONTIG, lb::CMA] {
        ensure_eq!(
            d.alloc(req(b, gfp::KERNEL, 8192)).map(drop),
            Err(Errno::EPERM),
            "{} as nobody",
            uapi::lab_backend::NAMES[b as usize]
        );
    }
    Ok(Outcome::Pass)
}

fn budget() -> TestResult {
    let d = Device::open_index(0).ctx("open")?;
    // Five 64 MiB runs asked at once: the file's lab_max_mib (256) holds four.
    let mut r = req(lb::ALLOC_CONTIG, gfp::KERNEL, 64 << 20);
    r.count = 5;
    let made = d.alloc(r).ctx("5 x 64 MiB")?;
    ensure_eq!(made.len(), 4, "runs made within the file's 256 MiB");
    ensure!(made.iter().all(|a| a.contiguous == 1), "contiguous");
    // And the module-wide budget holds them too: another file gets ENOSPC.
    let other = Device::open_index(0).ctx("open")?;
    ensure_eq!(
        other
            .alloc(req(lb::ALLOC_PAGES_EXACT, gfp::KERNEL, 1 << 20))
            .map(drop),
        Err(Errno::ENOSPC),
        "past lab_total_mib"
    );
    ensure_eq!(d.free_all().ctx("FREE_ALL")?, 4);
    other
        .alloc(req(lb::ALLOC_PAGES_EXACT, gfp::KERNEL, 1 << 20))
        .ctx("after the free")?;
    Ok(Outcome::Pass)
}

/// The large-buffer tests.
pub fn tests() -> Vec<Test> {
    vec![
        Test::new("large/exact_sizes", exact_sizes),
        Test::new("large/cma_from_the_reservation", cma_reservation),
        Test::new("large/rules", rules),
        Test::new("large/root_only", root_only),
        Test::new("large/budgets", budget),
    ]
}
