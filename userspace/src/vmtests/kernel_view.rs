//! The lab's reports checked against the kernel's own figures: zones against
//! /proc/zoneinfo, contiguity against what the allocators promise, zeroing
//! against memory the test dirtied, slabinfo against object counts the test
//! caused, and memory given straight to the kernel (vmalloc, alloc_pages,
//! the pages store backend) against /proc/meminfo and /proc/vmstat.

use std::os::unix::fs::FileExt;

use crate::device::{zone_name, Device};
use crate::tap::{Context, Outcome, Test, TestResult};
use crate::uapi::{self, alloc_flags, context, gfp, lab_backend as lb};
use crate::{ensure, ensure_eq};

use super::sysinfo::{self, zone_of};

fn dev() -> Result<Device, String> {
    Device::open_index(0).ctx("open")
}

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The guest has every CPU scripts/vm.sh gave it (`LDD_VM_SMP`): the
/// per-CPU tests, the remote frees and the scaling rows need a second CPU,
/// and a guest that found only one would skip them instead of failing.
fn every_cpu_came_up() -> TestResult {
    let Ok(want) = std::env::var("LDD_VM_SMP") else {
        return Ok(Outcome::Skip("not in scripts/vm.sh's guest".into()));
    };
    let want: usize = want.parse().map_err(|_| format!("LDD_VM_SMP={want}"))?;
    ensure_eq!(crate::cpu::online(), want, "online CPUs vs QEMU's -smp");
    Ok(Outcome::Pass)
}

/// The clock every timing of the module reads (`ktime_get*()`, the
/// benchmarks, the latency histograms) steps in well under a millisecond:
/// the kernel runs on a calibrated clocksource, not on the 4 ms jiffy
/// clocks a guest without ACPI falls back to unless scripts/vm.sh tells it
/// the TSC's rate.
fn clock_is_fine_grained() -> TestResult {
    let clock = crate::tsc::current_clocksource()?;
    ensure!(
        crate::tsc::clock_is_fine_grained(&clock),
        "the clocksource is {clock}"
    );
    // The smallest step CLOCK_MONOTONIC is seen to take, over 100 steps;
    // a clock that does not move in 10^6 reads fails.
    let now = || crate::tsc::clock_ns(libc::CLOCK_MONOTONIC).ok_or("clock_gettime failed");
    let mut smallest = u128::MAX;
    for _ in 0..100 {
        let t0 = now()?;
        let mut t1 = t0;
        for _ in 0..1_000_000 {
            t1 = now()?;
            if t1 != t0 {
                break;
            }
        }
        ensure!(
            t1 != t0,
            "CLOCK_MONOTONIC on {clock} stood still for 10^6 reads"
        );
        smallest = smallest.min(t1 - t0);
    }
    ensure!(
        smallest < 100_000,
        "CLOCK_MONOTONIC on {clock} steps by {smallest} ns at least"
    );
    Ok(Outcome::Pass)
}

/// Each reported zone is the /proc/zoneinfo zone whose pfn span holds the
/// reported physical range; __GFP_DMA memory lies below 16 MiB.
fn zones_match_zoneinfo() -> TestResult {
    if !root() {
        return Ok(Outcome::Skip(
            "physical addresses are hidden from unprivileged callers".into(),
        ));
    }
    let zones = sysinfo::zones()?;
    let d = dev()?;
    let cases: [(u32, u64, u64, u32, &str); 8] = [
        (lb::KMALLOC, gfp::KERNEL | gfp::DMA, 512, 0, "DMA"),
        (lb::GET_FREE_PAGES, gfp::KERNEL | gfp::DMA, 0, 0, "DMA"),
        (lb::ALLOC_PAGES, gfp::KERNEL | gfp::DMA, 0, 2, "DMA"),
        (lb::GET_FREE_PAGES, gfp::KERNEL | gfp::DMA32, 0, 0, "DMA32"),
        (lb::ALLOC_PAGES, gfp::KERNEL | gfp::DMA32, 0, 3, "DMA32"),
        (lb::ALLOC_PAGES, gfp::KERNEL, 0, 0, ""),
        (lb::KMALLOC, gfp::KERNEL, 100, 0, ""),
        (lb::OUR_CACHE, gfp::KERNEL, 700, 0, ""),
    ];
    let mut seen = Vec::new();
    for (backend, flags, size, order, want) in cases {
        let name = uapi::lab_backend::NAMES[backend as usize];
        let a = d
            .alloc_one(backend, flags, size, order, context::PROCESS)
            .ctx(name)?;
        let lo =
            zone_of(&zones, a.phys_lo).ok_or(format!("{name}: {:#x} in no zone", a.phys_lo))?;
        let hi =
            zone_of(&zones, a.phys_hi).ok_or(format!("{name}: {:#x} in no zone", a.phys_hi))?;
        ensure_eq!(lo, hi, "{name}: the range spans two zones");
        ensure_eq!(
            zone_name(a.zone),
            lo,
            "{name} {:#x}-{:#x}: reported zone vs /proc/zoneinfo",
            a.phys_lo,
            a.phys_hi
        );
        if !want.is_empty() {
            ensure_eq!(lo, want, "{name} with {}", crate::device::gfp_names(flags));
        }
        if want == "DMA" {
            ensure!(
                a.phys_hi < 16 << 20,
                "{name}: DMA memory at {:#x}",
                a.phys_hi
            );
        }
        if want == "DMA32" {
            ensure!(
                a.phys_hi < 4 << 30,
                "{name}: DMA32 memory at {:#x}",
                a.phys_hi
            );
        }
        seen.push(format!("{name}:{lo}"));
    }
    d.free_all().ctx("FREE_ALL")?;
    println!("# {}", seen.join(" "));
    Ok(Outcome::Pass)
}

/// A kmalloc object is always physically contiguous, and so is an order-N
/// page run: its range is exactly 2^N pages, page aligned.
fn contiguity_as_promised() -> TestResult {
    let d = dev()?;
    for size in [1u64, 100, 4096, 5000, 64 << 10, 1 << 20, 4 << 20] {
        let a = d
            .alloc_one(lb::KMALLOC, gfp::KERNEL, size, 0, context::PROCESS)
            .ctx("kmalloc")?;
        ensure_eq!(a.contiguous, 1, "kmalloc({size}) not contiguous");
        ensure_eq!(a.vmalloc_area, 0, "kmalloc({size}) in the vmalloc area");
        ensure!(a.actual >= size, "kmalloc({size}) usable {}", a.actual);
        if root() {
            ensure_eq!(a.phys_hi - a.phys_lo + 1, size, "kmalloc({size}) range");
        }
    }
    for order in 0..=10u32 {
        for backend in [lb::ALLOC_PAGES, lb::GET_FREE_PAGES] {
            let a = d
                .alloc_one(backend, gfp::KERNEL, 0, order, context::PROCESS)
                .ctx("pages")?;
            ensure_eq!(
                (a.contiguous, a.pages, a.actual),
                (1, 1 << order, 4096u64 << order),
                "order {order}"
            );
            if root() {
                ensure_eq!(
                    a.phys_lo % (4096 << order),
                    0,
                    "order {order} naturally aligned"
                );
                ensure_eq!(
                    a.phys_hi - a.phys_lo + 1,
                    4096 << order,
                    "order {order} range"
                );
            }
        }
    }
    d.free_all().ctx("FREE_ALL")?;
    Ok(Outcome::Pass)
}

/// The `zeroed` report is a measurement, not a constant: memory the test
/// filled with 0xa5 and freed comes back (SLUB and the page allocator reuse
/// the last freed object first) reported as not zeroed, unless the kernel
/// zeroes on free; with __GFP_ZERO it is zeroed.
fn zeroing_is_measured() -> TestResult {
    let d = dev()?;
    let init_on_free = std::fs::read_to_string("/proc/cmdline")
        .unwrap_or_default()
        .contains("init_on_free=1");
    let mut dirty = 0;
    for _ in 0..16 {
        let req = |flags: u32, g: u64| uapi::AllocRequest {
            backend: lb::KMALLOC,
            gfp: g,
            size: 256,
            count: 1,
            flags,
            ..Default::default()
        };
        d.alloc(req(alloc_flags::FREE_NOW | alloc_flags::TOUCH, gfp::KERNEL))
            .ctx("dirty")?;
        let plain = d
            .alloc(req(alloc_flags::FREE_NOW, gfp::KERNEL))
            .ctx("plain")?;
        dirty += u32::from(plain[0].zeroed == 0);
        d.alloc(req(alloc_flags::FREE_NOW | alloc_flags::TOUCH, gfp::KERNEL))
            .ctx("dirty")?;
        let z = d
            .alloc(req(alloc_flags::FREE_NOW, gfp::KERNEL | gfp::ZERO))
            .ctx("zero")?;
        ensure_eq!(z[0].zeroed, 1, "__GFP_ZERO after a dirty free");
    }
    if !init_on_free {
        ensure!(
            dirty > 0,
            "16 reuses of a 0xa5-filled object all reported zeroed"
        );
    }
    println!("# {dirty}/16 reuses of a dirtied object reported not zeroed");
    Ok(Outcome::Pass)
}

const DEBUGFS_SLABINFO: &str = "/sys/kernel/debug/ldd_alloc/slabinfo";

/// Allocating K objects from one of our caches of a size nothing else uses
/// raises its slabinfo active_objs by exactly K (magazines flushed by
/// SHRINK), freeing them lowers it back; the kernel's own kmem_cache of that
/// size in /proc/slabinfo rises by at least K.
fn slabinfo_counts_what_we_did() -> TestResult {
    if std::fs::metadata(DEBUGFS_SLABINFO).is_err() {
        return Ok(Outcome::Skip("debugfs not mounted".into()));
    }
    const SIZE: u64 = 1368;
    const K: u32 = 100;
    let d = dev()?;
    let ours = format!("ldd-{SIZE}");
    // Create the cache (one object, freed), then flush the magazines.
    d.alloc_one(lb::OUR_CACHE, gfp::KERNEL, SIZE, 0, context::PROCESS)
        .ctx("create")?;
    d.free_all().ctx("FREE_ALL")?;
    d.shrink().ctx("SHRINK")?;
    let (a0, _) = sysinfo::slabinfo(DEBUGFS_SLABINFO, &ours)?.ok_or(format!("no {ours} line"))?;
    let r = d
        .alloc(uapi::AllocRequest {
            backend: lb::OUR_CACHE,
            gfp: gfp::KERNEL,
            size: SIZE,
            count: K,
            ..Default::default()
        })
        .ctx("alloc K")?;
    ensure_eq!(r.len(), K as usize);
    d.shrink().ctx("SHRINK")?;
    let (a1, n1) = sysinfo::slabinfo(DEBUGFS_SLABINFO, &ours)?.ok_or("line gone")?;
    ensure_eq!(a1, a0 + u64::from(K), "active_objs after {K} allocations");
    ensure!(n1 >= a1, "num_objs {n1} < active_objs {a1}");
    d.free_all().ctx("FREE_ALL")?;
    d.shrink().ctx("SHRINK")?;
    let (a2, n2) = sysinfo::slabinfo(DEBUGFS_SLABINFO, &ours)?.ok_or("line gone")?;
    ensure_eq!(a2, a0, "active_objs after freeing them");
    ensure_eq!(n2, 0, "SHRINK gives every empty slab of {ours} back");

    // SLUB's own cache of the same size: sheaves keep objects out of their
    // slabs, so only "at least K more" is exact.
    let kname = format!("ldd_kmem_{SIZE}");
    d.alloc_one(lb::KMEM_CACHE, gfp::KERNEL, SIZE, 0, context::PROCESS)
        .ctx("create kmem_cache")?;
    d.free_all().ctx("FREE_ALL")?;
    let Some((k0, _)) = sysinfo::slabinfo("/proc/slabinfo", &kname)? else {
        return Ok(Outcome::Skip(format!(
            "no {kname} in /proc/slabinfo (merged?)"
        )));
    };
    d.alloc(uapi::AllocRequest {
        backend: lb::KMEM_CACHE,
        gfp: gfp::KERNEL,
        size: SIZE,
        count: K,
        ..Default::default()
    })
    .ctx("kmem_cache K")?;
    let (k1, _) = sysinfo::slabinfo("/proc/slabinfo", &kname)?.ok_or("kmem line gone")?;
    d.free_all().ctx("FREE_ALL")?;
    ensure!(
        k1 >= k0 + u64::from(K) || k1 >= u64::from(K),
        "/proc/slabinfo {kname}: {k0} -> {k1} active after {K} allocations"
    );
    println!("# ours {a0} -> {a1} -> {a2}; SLUB {kname} {k0} -> {k1} active");
    Ok(Outcome::Pass)
}

use super::sysinfo::settled_free_pages;

/// Slack for the free pages (buddy + per-CPU lists, see
/// [`sysinfo::free_pages`]) around a 32 MiB (8192-page) move: page tables,
/// vmap and qset bookkeeping, the kernel's own activity. Measured in the
/// idle VM: under 100 pages after each backend; 1024 allowed.
const FREE_PAGES_SLACK: i64 = 1024;
/// Slack for VmallocUsed around 32 MiB: it counts vmalloc'ed pages exactly;
/// 1 MiB allows for anything else vmalloc'ing meanwhile (measured: 0).
const VMALLOC_SLACK_KIB: i64 = 1024;

/// 32 MiB by the lab's vmalloc and 32 MiB by alloc_pages move VmallocUsed and
/// nr_free_pages by about that much; closing the file gives it all back.
fn lab_memory_back_after_close() -> TestResult {
    let d = dev()?;
    let v0 = sysinfo::meminfo_kib("VmallocUsed")? as i64;
    let f0 = settled_free_pages()?;
    let f = dev()?;
    f.alloc(uapi::AllocRequest {
        backend: lb::VMALLOC,
        gfp: gfp::KERNEL,
        size: 4 << 20,
        count: 8,
        ..Default::default()
    })
    .ctx("vmalloc 8 x 4 MiB")?;
    let v1 = sysinfo::meminfo_kib("VmallocUsed")? as i64;
    f.alloc(uapi::AllocRequest {
        backend: lb::ALLOC_PAGES,
        gfp: gfp::KERNEL,
        order: 9,
        count: 16,
        ..Default::default()
    })
    .ctx("alloc_pages 16 x order 9")?;
    let f1 = settled_free_pages()?;
    drop(f);
    let v2 = sysinfo::meminfo_kib("VmallocUsed")? as i64;
    let f2 = settled_free_pages()?;
    drop(d);
    println!("# VmallocUsed {v0} -> {v1} -> {v2} KiB; nr_free_pages {f0} -> {f1} -> {f2}");
    ensure!(
        (v1 - v0 - 32768).abs() <= VMALLOC_SLACK_KIB,
        "VmallocUsed rose by {} KiB for 32 MiB of vmalloc",
        v1 - v0
    );
    ensure!(
        (f0 - f1 - 16384).abs() <= FREE_PAGES_SLACK,
        "nr_free_pages fell by {} for 64 MiB (16384 pages)",
        f0 - f1
    );
    ensure!(
        (v2 - v0).abs() <= VMALLOC_SLACK_KIB,
        "VmallocUsed after close: {v0} -> {v2} KiB"
    );
    ensure!(
        (f2 - f0).abs() <= FREE_PAGES_SLACK,
        "nr_free_pages after close: {f0} -> {f2}"
    );
    Ok(Outcome::Pass)
}

/// The pages store backend gets its quanta from __get_free_pages directly:
/// our page source's counters do not move, the kernel's free pages do, by
/// the quanta held, and come back after a trim.
fn scullp_pages_back_after_trim() -> TestResult {
    let dev = super::scull::fresh(uapi::backend::PAGES)?;
    // The test's own 64 MiB of buffers are user pages: touch them first.
    let data: Vec<u8> = (0..32u32 << 20).map(|i| (i % 253) as u8).collect();
    let mut back = vec![1u8; data.len()];
    let s0 = dev.page_stats().ctx("PAGE_STATS")?;
    let f0 = settled_free_pages()?;
    dev.file().write_all_at(&data, 0).ctx("write 32 MiB")?;
    let i = dev.info().ctx("INFO")?;
    ensure_eq!(i.quanta, 8192, "4 KiB quanta for 32 MiB");
    ensure_eq!(i.bytes_held, 32 << 20);
    let f1 = settled_free_pages()?;
    let s1 = dev.page_stats().ctx("PAGE_STATS")?;
    dev.file().read_exact_at(&mut back, 0).ctx("read")?;
    ensure!(
        back == data,
        "32 MiB on the pages backend read back differently"
    );
    super::scull::trim()?;
    let f2 = settled_free_pages()?;
    let s2 = dev.page_stats().ctx("PAGE_STATS")?;
    println!("# nr_free_pages {f0} -> {f1} -> {f2}");
    ensure_eq!(
        s1.pages_out,
        s0.pages_out,
        "scullp bypasses our page source"
    );
    ensure_eq!(s2.pages_out, s0.pages_out);
    // The quantum-pointer arrays are kmalloc'ed too: 8 qsets of 8 KiB.
    ensure!(
        (f0 - f1 - 8192).abs() <= FREE_PAGES_SLACK,
        "nr_free_pages fell by {} for 8192 quanta",
        f0 - f1
    );
    ensure!(
        (f2 - f0).abs() <= FREE_PAGES_SLACK,
        "after trim: {f0} -> {f2}"
    );
    Ok(Outcome::Pass)
}

/// The kernel-view tests.
pub fn tests() -> Vec<Test> {
    vec![
        Test::new("kernel_view/every_cpu_came_up", every_cpu_came_up),
        Test::new("kernel_view/clock_is_fine_grained", clock_is_fine_grained),
        Test::new("kernel_view/zones_match_zoneinfo", zones_match_zoneinfo),
        Test::new("kernel_view/contiguity_as_promised", contiguity_as_promised),
        Test::new("kernel_view/zeroing_is_measured", zeroing_is_measured),
        Test::new(
            "kernel_view/slabinfo_counts_what_we_did",
            slabinfo_counts_what_we_did,
        ),
        Test::new(
            "kernel_view/lab_memory_back_after_close",
            lab_memory_back_after_close,
        ),
        Test::new(
            "kernel_view/scullp_pages_back_after_trim",
            scullp_pages_back_after_trim,
        ),
    ]
}
