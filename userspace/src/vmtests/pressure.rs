//! The memory-pressure lab in the running kernel (issue 16): each claim of
//! `pressure_tour.rs` must hold, tried up to three times (a noisy host can
//! make reclaim take a different path once). They need a small guest (512
//! MiB - 1 GiB: filling memory under TCG takes time in proportion to it), so
//! `ldd-alloc-test` runs them only when asked by name (`pressure/`), and
//! scripts/test.sh boots a 768 MiB guest of its own for them.

use nix::errno::Errno;

use crate::device::Device;
use crate::pressure::meminfo_kib;
use crate::pressure_tour::{self as pt, ClaimResult};
use crate::tap::{Context, Outcome, Test, TestResult};
use crate::tour::Claim;
use crate::uapi::{self, alloc_flags, context, gfp, lab_backend as lb};
use crate::{ensure, ensure_eq};

/// Tries of each claim before it fails.
const TRIES: u32 = 3;

/// Largest guest the claims run in, in MiB.
const MAX_GUEST_MIB: u64 = 1536;

fn small_guest() -> Option<Outcome> {
    // SAFETY: getuid() only reads.
    if unsafe { libc::getuid() } != 0 {
        return Some(Outcome::Skip("needs root".into()));
    }
    let mib = meminfo_kib("MemTotal").unwrap_or(u64::MAX) >> 10;
    (mib > MAX_GUEST_MIB).then(|| {
        Outcome::Skip(format!(
            "{mib} MiB of RAM: run in a guest of at most {MAX_GUEST_MIB} MiB (scripts/vm.sh --mem 768 test pressure/)"
        ))
    })
}

fn check(r: Result<Vec<Claim>, String>) -> TestResult {
    let claims = r?;
    let mut failed = Vec::new();
    for c in &claims {
        println!("# {}", c.claim);
        println!("#   {}", c.observed);
        if !c.holds {
            failed.push(format!(
                "does not hold: {}\nobserved: {}",
                c.claim, c.observed
            ));
        }
    }
    if failed.is_empty() {
        Ok(Outcome::Pass)
    } else {
        Err(failed.join("\n"))
    }
}

fn claims(f: fn() -> Result<Vec<Claim>, String>) -> TestResult {
    if let Some(skip) = small_guest() {
        return Ok(skip);
    }
    check(pt::retry(TRIES, f))
}

fn one(f: fn() -> ClaimResult) -> TestResult {
    if let Some(skip) = small_guest() {
        return Ok(skip);
    }
    check(pt::retry(TRIES, move || f().map(|c| vec![c])))
}

/// The options' rules, on a quiet machine: scopes only in process context,
/// WARN on a successful allocation prints nothing and changes nothing, the
/// shrinker is registered.
fn options() -> TestResult {
    if let Some(skip) = small_guest() {
        return Ok(skip);
    }
    let dev = Device::open_index(0).ctx("open")?;
    let req = |ctx, flags, opts| uapi::AllocRequest {
        backend: lb::ALLOC_PAGES,
        context: ctx,
        gfp: flags,
        count: 1,
        flags: opts | alloc_flags::FREE_NOW,
        ..Default::default()
    };
    for opt in [alloc_flags::SCOPE_NOIO, alloc_flags::SCOPE_NOFS] {
        ensure_eq!(
            dev.alloc(req(context::ATOMIC, gfp::ATOMIC, opt)).map(drop),
            Err(Errno::EINVAL),
            "a memalloc scope in atomic context"
        );
        ensure_eq!(
            dev.alloc(req(context::HARDIRQ, gfp::ATOMIC, opt)).map(drop),
            Err(Errno::EINVAL),
            "a memalloc scope in hard-irq context"
        );
        let r = dev
            .alloc(req(context::PROCESS, gfp::KERNEL, opt))
            .ctx("scoped GFP_KERNEL")?;
        ensure_eq!(r.len(), 1);
    }
    let r = dev
        .alloc(req(context::PROCESS, gfp::KERNEL, alloc_flags::WARN))
        .ctx("WARN on a quiet machine")?;
    ensure_eq!(r.len(), 1);
    ensure_eq!(
        dev.alloc(req(context::PROCESS, gfp::KERNEL, 1 << 6))
            .map(drop),
        Err(Errno::EINVAL),
        "the next unknown option bit"
    );
    let s = dev.shrinker_info().ctx("SHRINKER_INFO")?;
    ensure_eq!(s.registered, 1, "the shrinker is registered");
    ensure_eq!(s.seeks, 0);
    // drop_caches' slab pass calls every shrinker: ours is asked.
    std::fs::write("/proc/sys/vm/drop_caches", "2").ctx("drop_caches")?;
    let s2 = dev.shrinker_info().ctx("SHRINKER_INFO")?;
    ensure!(
        s2.count_calls > s.count_calls,
        "drop_caches asked our shrinker: {s:?} -> {s2:?}"
    );
    ensure_eq!(dev.free_all().ctx("FREE_ALL")?, 0);
    Ok(Outcome::Pass)
}

pub fn tests() -> Vec<Test> {
    vec![
        Test::new("pressure/options", options),
        // First: the page allocator prints one failure report per 10 s,
        // and the later claims' OOM fences may use that allowance.
        Test::new("pressure/6-nowarn", || one(pt::nowarn)),
        // Next: before any failed compaction defers the next one.
        Test::new("pressure/4b-compaction", || one(pt::compaction_claim)),
        Test::new("pressure/1-2-kernel-sleeps-atomic-fails", || {
            claims(pt::kernel_vs_atomic)
        }),
        Test::new("pressure/3-atomic-reserve", || one(pt::atomic_reserve)),
        Test::new("pressure/4-contiguity", || one(pt::contiguity)),
        Test::new("pressure/5-retry-modifiers-oom", || {
            one(pt::retry_modifiers)
        }),
        Test::new("pressure/7-noio", || one(pt::noio)),
        Test::new("pressure/8-mempool", || one(pt::mempool)),
        Test::new("pressure/9-not-pageable", || one(pt::not_pageable)),
        Test::new("pressure/10-shrinker", || one(pt::shrinker)),
    ]
}
