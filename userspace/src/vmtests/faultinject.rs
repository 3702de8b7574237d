//! The kernel's own fault injection (failslab, fail_page_alloc) driven
//! across the scull store on every backend and the lab on every backend:
//! every allocation the module makes can fail, and each failure must
//! surface as an errno (ENOMEM, or a short write), with no leak, no lost
//! acknowledged byte and no warning in the kernel log.
//!
//! Only kernels with FAILSLAB, FAIL_PAGE_ALLOC and FAULT_INJECTION_DEBUG_FS
//! (the debug kernel of `make test-debug`) have the knobs; elsewhere the
//! tests SKIP. Injection is limited to the test's own thread (task-filter
//! and /proc/thread-self/make-it-fail), switched on only around the
//! system calls under test, and switched off by a guard whatever happens.
//! `LDD_FAULT_PROB` (percent, default 10) and `LDD_FAULT_OPS` (default 400)
//! tune it.

use std::os::unix::fs::FileExt;

use nix::errno::Errno;

use crate::device::{backend_name, Device};
use crate::rng::Rng;
use crate::tap::{Context, Outcome, Test, TestResult};
use crate::uapi::{self, context, gfp, lab_backend as lb};
use crate::{ensure, ensure_eq};

use super::sysinfo;

const FAILSLAB: &str = "/sys/kernel/debug/failslab";
const FAIL_PAGE_ALLOC: &str = "/sys/kernel/debug/fail_page_alloc";
const MAKE_IT_FAIL: &str = "/proc/thread-self/make-it-fail";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Armed fault injection; dropping it switches everything off.
///
/// The thread's make-it-fail file is opened once, before injection starts:
/// with injection on, opening a file can itself fail (the struct file comes
/// from a slab cache), while a write to an open proc file allocates nothing.
struct Injection {
    make_it_fail: std::fs::File,
}

impl Injection {
    /// Arms both injectors at `percent` for this thread only (still off
    /// until [`Self::on`]). `Ok(None)`: this kernel has no knobs.
    fn arm(percent: u64) -> Result<Option<Self>, String> {
        if std::fs::metadata(FAILSLAB).is_err() || std::fs::metadata(FAIL_PAGE_ALLOC).is_err() {
            return Ok(None);
        }
        let make_it_fail = std::fs::OpenOptions::new()
            .write(true)
            .open(MAKE_IT_FAIL)
            .ctx(MAKE_IT_FAIL)?;
        let guard = Injection { make_it_fail };
        guard.off()?;
        let set = |dir: &str, knob: &str, v: &str| {
            std::fs::write(format!("{dir}/{knob}"), v).ctx(&format!("{dir}/{knob} = {v}"))
        };
        for dir in [FAILSLAB, FAIL_PAGE_ALLOC] {
            set(dir, "task-filter", "Y")?;
            set(dir, "verbose", "0")?;
            set(dir, "interval", "1")?;
            set(dir, "times", "-1")?;
            set(dir, "space", "0")?;
            set(dir, "ignore-gfp-wait", "N")?;
            set(dir, "probability", &percent.to_string())?;
        }
        set(FAILSLAB, "cache-filter", "N")?;
        set(FAIL_PAGE_ALLOC, "min-order", "0")?;
        // User pages (page faults of this very process) carry
        // __GFP_HIGHMEM: leave them alone, the module's allocations do not.
        set(FAIL_PAGE_ALLOC, "ignore-gfp-highmem", "Y")?;
        Ok(Some(guard))
    }

    fn set(&self, v: &[u8]) -> Result<(), String> {
        self.make_it_fail
            .write_all_at(v, 0)
            .ctx("write make-it-fail")
    }

    fn on(&self) -> Result<(), String> {
        self.set(b"1")
    }

    fn off(&self) -> Result<(), String> {
        self.set(b"0")
    }

    /// Runs `f` with injection on for this thread.
    fn during<T>(&self, f: impl FnOnce() -> T) -> Result<T, String> {
        self.on()?;
        let r = f();
        self.off()?;
        Ok(r)
    }
}

impl Drop for Injection {
    fn drop(&mut self) {
        let _ = self.off();
        for dir in [FAILSLAB, FAIL_PAGE_ALLOC] {
            let _ = std::fs::write(format!("{dir}/probability"), "0");
            let _ = std::fs::write(format!("{dir}/times"), "1");
        }
    }
}

/// What the module's memory looks like from the outside and the inside.
#[derive(Debug, PartialEq)]
struct Footprint {
    /// Pages out of our page source, less those in the slabs of the pools'
    /// private caches: a reserve refilled after use holds its min_nr
    /// elements, but maybe in other slabs than before.
    pages_out: i64,
    /// Every live pool: (index, outstanding, reserve full).
    pools: Vec<(u32, u64, bool)>,
    cache_objs: Vec<(u32, u64)>,
    vmalloc_kib: i64,
    free_pages: i64,
}

fn footprint(d: &Device) -> Result<Footprint, String> {
    d.shrink().ctx("SHRINK")?;
    let caches = d.caches().ctx("CACHE_INFO")?;
    let private: u64 = caches
        .iter()
        .filter(|c| c.flags & uapi::cache_flags::POOL_PRIVATE != 0)
        .map(|c| (c.partial_slabs + c.full_slabs + c.empty_slabs) * c.pagesperslab)
        .sum();
    Ok(Footprint {
        pages_out: d
            .page_stats()
            .ctx("PAGE_STATS")?
            .pages_out
            .iter()
            .sum::<i64>()
            - private as i64,
        pools: (0..)
            .map_while(|i| d.pool_info(i).ok())
            .filter(|p| p.live == 1)
            .map(|p| (p.index, p.outstanding, p.curr_nr == p.min_nr))
            .collect(),
        cache_objs: caches
            .iter()
            .filter(|c| c.flags & uapi::cache_flags::TEST_PRIVATE == 0)
            .map(|c| (c.index, c.active_objs - c.cached_objs))
            .collect(),
        vmalloc_kib: sysinfo::meminfo_kib("VmallocUsed")? as i64,
        free_pages: sysinfo::free_pages()?,
    })
}

/// Same memory before and after: our pages and objects exactly (caches
/// created meanwhile must hold nothing), the kernel's figures within slack
/// (see kernel_view: 1024 pages, 1 MiB of vmalloc).
fn same_footprint(before: &Footprint, after: &Footprint) -> Result<(), String> {
    ensure_eq!(
        after.pages_out,
        before.pages_out,
        "pages out of our page source (outside the pools' reserves)"
    );
    for p in &after.pools {
        let was = before.pools.iter().find(|b| b.0 == p.0);
        ensure!(
            was.map_or(p.1 == 0 && p.2, |b| b == p),
            "pool {}: (outstanding, reserve full) {:?} -> {:?}",
            p.0,
            was.map(|b| (b.1, b.2)),
            (p.1, p.2)
        );
    }
    for (index, objs) in &after.cache_objs {
        let was = before
            .cache_objs
            .iter()
            .find(|(i, _)| i == index)
            .map_or(0, |(_, o)| *o);
        ensure_eq!(*objs, was, "live objects of our cache {index}");
    }
    ensure!(
        (after.vmalloc_kib - before.vmalloc_kib).abs() <= 1024,
        "VmallocUsed {} -> {} KiB",
        before.vmalloc_kib,
        after.vmalloc_kib
    );
    ensure!(
        (after.free_pages - before.free_pages).abs() <= 1024,
        "free pages (buddy + per-CPU) {} -> {}",
        before.free_pages,
        after.free_pages
    );
    Ok(())
}

/// Kernel log lines since `from` that a clean run must not have.
fn bad_log_since(from: usize) -> Result<Vec<String>, String> {
    let (_, raw) = sysinfo::sh(&format!("dmesg -r | tail -n +{}", from + 1))?;
    Ok(raw
        .lines()
        .filter(|l| {
            l.contains("Call Trace")
                || l.contains("WARNING:")
                || l.contains("BUG:")
                || l.contains("page allocation failure")
                || l.contains("vmalloc error")
                || l.starts_with("<3>ldd_alloc")
                || (l.contains("ldd_alloc") && l.contains("leak"))
        })
        .map(str::to_string)
        .collect())
}

/// Allocations served by the reserves of every live pool.
fn pool_reserve_allocs(d: &Device) -> Result<u64, String> {
    Ok((0..)
        .map_while(|i| d.pool_info(i).ok())
        .map(|p| p.allocs_reserve)
        .sum())
}

/// Region of the device the test writes.
const REGION: usize = 600_000;

/// Writes and reads at random with injection on; then, injection off,
/// every byte a write acknowledged reads back, and a trim gives every page
/// and object back.
fn scull_under_injection(backend: u32) -> TestResult {
    let percent = env_u64("LDD_FAULT_PROB", 10);
    let Some(inj) = Injection::arm(percent)? else {
        return Ok(Outcome::Skip(
            "no failslab/fail_page_alloc in debugfs (needs FAILSLAB, FAIL_PAGE_ALLOC, \
             FAULT_INJECTION_DEBUG_FS: the debug kernel)"
                .into(),
        ));
    };
    let log_from = sysinfo::dmesg_lines()?;
    let dev = super::scull::fresh(backend)?;
    let before = footprint(&dev)?;
    let reserve_before = pool_reserve_allocs(&dev)?;
    let ops = env_u64("LDD_FAULT_OPS", 400);
    let mut rng = Rng::new(0xfa11 + u64::from(backend));
    // Every buffer is allocated and touched before injection starts.
    let mut model = vec![0u8; REGION];
    let mut unknown = vec![false; REGION];
    let mut data = vec![0u8; 40_000];
    let mut buf = vec![0u8; 40_000];
    let (mut acked_end, mut tried_end) = (0usize, 0usize);
    let (mut enomem, mut short, mut full, mut reads) = (0u64, 0u64, 0u64, 0u64);
    // Injection is random: a backend that makes few allocations (a cache
    // whose slabs hold many quanta) may see no failure in `ops` operations
    // (about 19 page allocations at 10 % miss all with p = 0.13). Go on, up
    // to five times as long, until one has surfaced; and since a full
    // region only overwrites the quanta it has, trim it and shrink our
    // caches (outside injection) every 100 of those extra ops, so that the
    // writes after it need new quanta, slabs and pages again.
    let mut op = 0;
    while op < ops || (op < ops * 5 && enomem + short == 0) {
        op += 1;
        if op > ops && op % 100 == 0 {
            super::scull::trim()?;
            dev.shrink().ctx("SHRINK between rounds")?;
            model.iter_mut().for_each(|b| *b = 0);
            unknown.iter_mut().for_each(|u| *u = false);
            (acked_end, tried_end) = (0, 0);
        }
        let len = 1 + rng.below(data.len() as u64) as usize;
        let off = rng.below((REGION - len) as u64) as usize;
        if rng.below(4) == 0 {
            let r = inj.during(|| dev.file().read_at(&mut buf[..len], off as u64))?;
            match r {
                Ok(k) => {
                    reads += 1;
                    let want = acked_end.saturating_sub(off).min(len);
                    ensure!(
                        k >= want,
                        "op {op}: read {k} of {len} at {off}, {want} acknowledged"
                    );
                    for (i, b) in buf.iter().enumerate().take(k) {
                        let at = off + i;
                        ensure!(
                            unknown[at] || *b == model[at],
                            "op {op}: byte {at} reads {b:#04x}, acknowledged {:#04x}",
                            model[at]
                        );
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOMEM) => enomem += 1,
                Err(e) => return Err(format!("op {op}: read of {len} at {off}: {e}")),
            }
            continue;
        }
        rng.fill(&mut data[..len]);
        tried_end = tried_end.max(off + len);
        let r = inj.during(|| dev.file().write_at(&data[..len], off as u64))?;
        match r {
            Ok(n) => {
                ensure!(n > 0, "op {op}: write of {len} returned 0");
                model[off..off + n].copy_from_slice(&data[..n]);
                unknown[off..off + n].iter_mut().for_each(|u| *u = false);
                acked_end = acked_end.max(off + n);
                if n < len {
                    short += 1;
                } else {
                    full += 1;
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOMEM) => {
                enomem += 1;
                // Not acknowledged: each byte is the old one or the new one.
                for (i, u) in unknown[off..off + len].iter_mut().enumerate() {
                    if model[off + i] != data[i] {
                        *u = true;
                    }
                }
            }
            Err(e) => return Err(format!("op {op}: write of {len} at {off}: {e}")),
        }
    }
    drop(inj);
    let i = dev.info().ctx("INFO")?;
    let ops = op;
    println!(
        "# {}: {percent}% injection, {ops} ops: {full} full writes, {short} short, {enomem} ENOMEM, \
         {reads} reads; size {} (acknowledged to {acked_end}, tried to {tried_end})",
        backend_name(backend),
        i.size
    );
    let reserve_used = pool_reserve_allocs(&dev)? - reserve_before;
    println!("#   allocations served by the mempool reserve meanwhile: {reserve_used}");
    // On the mempool backend the reserve hides failures until it runs dry.
    ensure!(
        enomem + short > 0 || (backend == uapi::backend::MEMPOOL && reserve_used > 0),
        "no failure surfaced: is injection reaching the module?"
    );
    ensure!(full > 0, "no write ever succeeded");
    ensure!(
        i.size as usize >= acked_end && i.size as usize <= tried_end,
        "device size {} outside [{acked_end}, {tried_end}]",
        i.size
    );
    ensure_eq!(
        i.bytes_held,
        i.quanta * u64::from(i.quantum),
        "held vs quanta"
    );
    let mut back = vec![0u8; i.size as usize];
    dev.file().read_exact_at(&mut back, 0).ctx("read back")?;
    for (at, b) in back.iter().enumerate().take(REGION) {
        ensure!(
            unknown[at] || *b == model[at],
            "after injection: byte {at} reads {b:#04x}, acknowledged {:#04x}",
            model[at]
        );
    }
    super::scull::trim()?;
    let after = footprint(&dev)?;
    same_footprint(&before, &after)?;
    let bad = bad_log_since(log_from)?;
    ensure!(bad.is_empty(), "the kernel log says:\n{}", bad.join("\n"));
    Ok(Outcome::Pass)
}

/// Lab allocations on every backend with injection on: each request gives
/// its replies or ENOMEM, what was kept is listed and freed, a failed
/// krealloc leaves the old memory valid, and closing the file gives
/// everything back.
fn lab_under_injection() -> TestResult {
    let percent = env_u64("LDD_FAULT_PROB", 10);
    let Some(inj) = Injection::arm(percent)? else {
        return Ok(Outcome::Skip(
            "no failslab/fail_page_alloc in debugfs (the debug kernel has them)".into(),
        ));
    };
    let log_from = sysinfo::dmesg_lines()?;
    let probe = Device::open_index(0).ctx("open")?;
    // Create the caches and pools the requests use, injection off.
    let cases: Vec<(u32, u64, u64, u32)> = vec![
        (lb::KMALLOC, gfp::KERNEL, 3000, 0),
        (lb::KMALLOC, gfp::KERNEL, 20_000, 0),
        (lb::KZALLOC, gfp::KERNEL, 700, 0),
        (lb::KMEM_CACHE, gfp::KERNEL, 1500, 0),
        (lb::OUR_CACHE, gfp::KERNEL, 1500, 0),
        (lb::OUR_MEMPOOL, gfp::ATOMIC, 1500, 0),
        (lb::KERNEL_MEMPOOL, gfp::ATOMIC, 1500, 0),
        (lb::ALLOC_PAGES, gfp::KERNEL, 0, 2),
        (lb::GET_FREE_PAGES, gfp::KERNEL, 0, 1),
        (lb::GET_ZEROED_PAGE, gfp::KERNEL, 0, 0),
        (lb::VMALLOC, gfp::KERNEL | gfp::NOWARN, 300_000, 0),
        (lb::KVMALLOC, gfp::KERNEL | gfp::NOWARN, 300_000, 0),
    ];
    for &(b, g, size, order) in &cases {
        probe
            .alloc_one(b, g, size, order, context::PROCESS)
            .ctx("warm-up")?;
    }
    probe.free_all().ctx("FREE_ALL")?;
    let before = footprint(&probe)?;
    let mut summary = Vec::new();
    let krealloc_lost: Vec<String>;
    {
        let f = Device::open_index(0).ctx("open")?;
        let mut kept = 0usize;
        for &(b, g, size, order) in &cases {
            let name = uapi::lab_backend::NAMES[b as usize];
            let (mut ok, mut failed) = (0, 0);
            for _ in 0..30 {
                let req = uapi::AllocRequest {
                    backend: b,
                    gfp: g,
                    size,
                    order,
                    count: 4,
                    ..Default::default()
                };
                let mut replies = vec![uapi::AllocReply::default(); 4];
                let mut r = uapi::AllocRequest {
                    replies: replies.as_mut_ptr() as u64,
                    ..req
                };
                match inj.during(|| f.ioctl_inout(uapi::LDD_IOC_ALLOC, &mut r))? {
                    Ok(n) => {
                        ensure!((0..=4).contains(&n), "{name}: {n} replies for 4");
                        for a in &replies[..n as usize] {
                            ensure!(a.handle != 0, "{name}: a kept allocation without a handle");
                            ensure!(a.actual >= a.requested, "{name}: {a:?}");
                        }
                        kept += n as usize;
                        ok += 1;
                    }
                    Err(Errno::ENOMEM) => failed += 1,
                    Err(e) => return Err(format!("{name}: {e} under injection")),
                }
            }
            summary.push(format!("{name} {ok}/{failed}"));
        }
        ensure_eq!(
            f.list().ctx("LIST")?.len(),
            kept,
            "listed handles vs replies"
        );
        // krealloc: a failure leaves the old allocation alive and valid.
        let (mut grown, mut refused) = (0, 0);
        let mut lost_on_enomem = Vec::new();
        for _ in 0..30 {
            let old = f
                .alloc_one(lb::KMALLOC, gfp::KERNEL, 100, 0, context::PROCESS)
                .ctx("kmalloc for krealloc")?;
            let mut replies = [uapi::AllocReply::default(); 1];
            let mut r = uapi::AllocRequest {
                backend: lb::KREALLOC,
                gfp: gfp::KERNEL,
                size: 30_000,
                count: 1,
                handle: old.handle,
                replies: replies.as_mut_ptr() as u64,
                ..Default::default()
            };
            match inj.during(|| f.ioctl_inout(uapi::LDD_IOC_ALLOC, &mut r))? {
                Ok(1) => {
                    grown += 1;
                    ensure_eq!(
                        f.free(old.handle),
                        Err(Errno::EINVAL),
                        "old handle after krealloc"
                    );
                    f.free(replies[0].handle).ctx("free the grown handle")?;
                }
                Err(Errno::ENOMEM) => {
                    refused += 1;
                    // krealloc() leaves the old object alone when it fails:
                    // the request failed, so the handle must still be live.
                    if let Err(e) = f.free(old.handle) {
                        lost_on_enomem.push(format!("{:#x}: {e}", old.handle));
                    }
                }
                other => return Err(format!("krealloc under injection: {other:?}")),
            }
        }
        summary.push(format!("krealloc {grown}/{refused}"));
        krealloc_lost = lost_on_enomem;
        // Freeing under injection works too (frees do not allocate).
        let freed = inj
            .during(|| f.free_all())?
            .ctx("FREE_ALL under injection")?;
        ensure_eq!(freed as usize, kept, "FREE_ALL frees every kept handle");
        // Keep some for close to free.
        for &(b, g, size, order) in &cases {
            let _ = inj.during(|| f.alloc_one(b, g, size, order, context::PROCESS))?;
        }
    }
    drop(inj);
    println!(
        "# {percent}% injection, ok/ENOMEM requests: {}",
        summary.join(", ")
    );
    let failures: u32 = summary
        .iter()
        .filter_map(|s| s.rsplit('/').next()?.parse::<u32>().ok())
        .sum();
    ensure!(
        failures > 0,
        "no lab request failed: is injection reaching the module?"
    );
    let after = footprint(&probe)?;
    same_footprint(&before, &after)?;
    let bad = bad_log_since(log_from)?;
    ensure!(bad.is_empty(), "the kernel log says:\n{}", bad.join("\n"));
    ensure!(
        krealloc_lost.is_empty(),
        "a krealloc request that failed with ENOMEM retired its old handle \
         ({} of them: {})",
        krealloc_lost.len(),
        krealloc_lost.join(", ")
    );
    Ok(Outcome::Pass)
}

/// The fault-injection tests.
pub fn tests() -> Vec<Test> {
    let mut t: Vec<Test> = super::scull::backends()
        .into_iter()
        .map(|b| {
            Test::new(
                format!("faults/{}/scull_under_injection", backend_name(b)),
                move || scull_under_injection(b),
            )
        })
        .collect();
    t.push(Test::new("faults/lab_under_injection", lab_under_injection));
    t
}
