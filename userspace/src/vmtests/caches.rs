//! Our lookaside caches in the running kernel: scullc at scale, the page
//! counters back to baseline, bad frees refused and counted.

use std::io::Write;
use std::os::unix::fs::FileExt;

use crate::device::{cache_name, Device};
use crate::rng::Rng;
use crate::tap::{Context, Outcome, Test, TestResult};
use crate::uapi::{self, bad_free, refusal};
use crate::{ensure, ensure_eq};

fn pages_out(dev: &Device) -> Result<i64, String> {
    Ok(dev.page_stats().ctx("PAGE_STATS")?.pages_out.iter().sum())
}

/// 64 MiB through the cache backend, read back, trimmed: the cache's
/// objects and the page source's pages return to where they were.
fn scullc_64mib() -> TestResult {
    let dev = super::scull::fresh(uapi::backend::CACHE)?;
    dev.shrink().ctx("SHRINK")?;
    let base_pages = pages_out(&dev)?;
    let quantum = dev.info().ctx("INFO")?.quantum as usize;
    let mut rng = Rng::new(64);
    let chunk = rng.bytes(1 << 20);
    let mut f = dev.file();
    for i in 0..64u8 {
        let mut c = chunk.clone();
        c[0] = i;
        f.write_all(&c).ctx("write")?;
    }
    let i = dev.info().ctx("INFO")?;
    ensure_eq!(i.size, 64 << 20);
    ensure_eq!(i.quanta as usize, (64usize << 20).div_ceil(quantum));
    let cache = dev
        .caches()
        .ctx("CACHE_INFO")?
        .into_iter()
        .find(|c| c.objsize as usize == quantum && c.flags == 0)
        .ok_or("no cache for the quantum")?;
    ensure!(
        cache.active_objs >= i.quanta,
        "cache counts {} live objects for {} quanta",
        cache.active_objs,
        i.quanta
    );
    let held = pages_out(&dev)? - base_pages;
    ensure!(
        held as u64 * 4096 >= 64 << 20,
        "only {held} pages out for 64 MiB"
    );
    let mut back = vec![0u8; 1 << 20];
    for i in 0..64u8 {
        dev.file()
            .read_exact_at(&mut back, u64::from(i) << 20)
            .ctx("read")?;
        ensure!(back[0] == i && back[1..] == chunk[1..], "MiB {i} differs");
    }
    super::scull::trim()?;
    dev.shrink().ctx("SHRINK")?;
    let after = dev
        .caches()
        .ctx("CACHE_INFO")?
        .into_iter()
        .find(|c| c.index == cache.index)
        .ok_or("cache gone")?;
    ensure_eq!(after.active_objs, 0, "objects live after trim");
    ensure_eq!(after.num_objs, 0, "slabs kept after shrink");
    ensure_eq!(
        pages_out(&dev)?,
        base_pages,
        "pages out after trim + shrink"
    );
    Ok(Outcome::Pass)
}

fn bad_frees() -> TestResult {
    let dev = Device::open_index(0).ctx("open")?;
    let find = |d: &Device| -> Result<uapi::CacheInfo, String> {
        d.caches()
            .ctx("CACHE_INFO")?
            .into_iter()
            .find(|c| c.objsize == 64 && c.flags == uapi::cache_flags::TEST_PRIVATE)
            .ok_or_else(|| "no 64-byte cache".to_string())
    };
    // Create the test cache first so the "before" counters exist.
    ensure_eq!(
        dev.bad_free(bad_free::DOUBLE).ctx("BAD_FREE double")?,
        refusal::DOUBLE
    );
    let before = find(&dev)?;
    for (scenario, want) in [
        (bad_free::FOREIGN_KMALLOC, refusal::FOREIGN),
        (bad_free::FOREIGN_CACHE, refusal::FOREIGN),
        (bad_free::MISALIGNED, refusal::MISALIGNED),
        (bad_free::DOUBLE, refusal::DOUBLE),
        (bad_free::SLAB_HEADER, refusal::FOREIGN),
    ] {
        ensure_eq!(
            dev.bad_free(scenario).ctx("BAD_FREE")?,
            want,
            "scenario {scenario}"
        );
    }
    let after = find(&dev)?;
    ensure_eq!(after.refused_foreign - before.refused_foreign, 3);
    ensure_eq!(after.refused_misaligned - before.refused_misaligned, 1);
    ensure_eq!(after.refused_double - before.refused_double, 1);
    ensure_eq!(
        after.active_objs - after.cached_objs,
        before.active_objs - before.cached_objs,
        "no object lost or gained"
    );
    ensure_eq!(
        dev.bad_free(bad_free::COUNT).map_err(|e| e as i32),
        Err(libc::EINVAL),
        "unknown scenario"
    );
    Ok(Outcome::Pass)
}

fn slabinfo_file() -> TestResult {
    let path = "/sys/kernel/debug/ldd_alloc/slabinfo";
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(Outcome::Skip(format!(
            "{path} unreadable (debugfs not mounted?)"
        )));
    };
    ensure!(
        text.starts_with("slabinfo - version: 2.1"),
        "header: {text}"
    );
    let dev = Device::open_index(0).ctx("open")?;
    for c in dev.caches().ctx("CACHE_INFO")? {
        let name = cache_name(&c);
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))
            .ok_or(format!("no line for {name}"))?;
        let cols: Vec<&str> = line.split_whitespace().collect();
        ensure_eq!(cols[3], c.objsize.to_string(), "objsize of {name}");
        ensure_eq!(cols[4], c.objperslab.to_string(), "objperslab of {name}");
        ensure_eq!(
            cols[5],
            c.pagesperslab.to_string(),
            "pagesperslab of {name}"
        );
    }
    Ok(Outcome::Pass)
}

fn injected_failure() -> TestResult {
    // With every page allocation failing, a write that needs a new slab gets
    // ENOMEM, nothing is lost, and clearing the injector makes it work again.
    let dev = super::scull::fresh(uapi::backend::CACHE)?;
    dev.shrink().ctx("SHRINK")?;
    dev.fault(uapi::FaultSpec {
        fail_next: 0,
        fail_all: 1,
        owner: 0,
    })
    .ctx("FAULT on")?;
    let r = dev.file().write_all_at(&[1u8; 100_000], 0);
    let stats = dev.page_stats().ctx("PAGE_STATS")?;
    dev.fault(uapi::FaultSpec::default()).ctx("FAULT off")?;
    ensure!(stats.injected > 0, "no failure was injected");
    match r {
        Err(e) => ensure_eq!(e.raw_os_error(), Some(libc::ENOMEM)),
        Ok(()) => return Err("write succeeded with every page allocation failing".into()),
    }
    dev.file()
        .write_all_at(&[2u8; 100_000], 0)
        .ctx("write after")?;
    let mut back = vec![0u8; 100_000];
    dev.file().read_exact_at(&mut back, 0).ctx("read")?;
    ensure!(back.iter().all(|&b| b == 2), "data after the failure");
    super::scull::trim()?;
    Ok(Outcome::Pass)
}

/// slub_debug's P and Z in our caches, in the kernel: a write after free is
/// caught by the poison at the next allocation, a write past the end by the
/// red zone at free; both are counted, neither spreads.
fn debug_poison_and_red_zone() -> TestResult {
    let dev = Device::open_index(0).ctx("open")?;
    let debug =
        uapi::cache_flags::TEST_PRIVATE | uapi::cache_flags::POISON | uapi::cache_flags::RED_ZONE;
    let find = |d: &Device| -> Result<Option<uapi::CacheInfo>, String> {
        Ok(d.caches()
            .ctx("CACHE_INFO")?
            .into_iter()
            .find(|c| c.objsize == 96 && c.flags & debug == debug))
    };
    let before = find(&dev)?.unwrap_or_default();
    ensure_eq!(
        dev.bad_free(bad_free::WRITE_AFTER_FREE)
            .ctx("write after free")?,
        refusal::POISON
    );
    ensure_eq!(
        dev.bad_free(bad_free::OVERFLOW).ctx("overflow")?,
        refusal::RED_ZONE
    );
    let after = find(&dev)?.ok_or("no debug cache of 96-byte objects")?;
    ensure_eq!(
        after.poison_errors - before.poison_errors,
        1,
        "poison errors"
    );
    ensure_eq!(
        after.redzone_errors - before.redzone_errors,
        1,
        "red-zone errors"
    );
    ensure!(
        after.stride > after.objsize,
        "red zones make the stride {} > {}",
        after.stride,
        after.objsize
    );
    Ok(Outcome::Pass)
}

/// The debugfs knob drives the same injector as the ioctl.
fn debugfs_fault_knob() -> TestResult {
    let path = "/sys/kernel/debug/ldd_alloc/fault";
    if std::fs::metadata(path).is_err() {
        return Ok(Outcome::Skip(format!(
            "{path} missing (debugfs not mounted?)"
        )));
    }
    let dev = Device::open_index(0).ctx("open")?;
    std::fs::write(path, "next 3 owner 2").ctx("write next 3")?;
    let s = dev.page_stats().ctx("PAGE_STATS")?;
    ensure_eq!((s.fail_next, s.fail_all, s.fail_owner), (3, 0, 2));
    ensure!(
        std::fs::read_to_string(path)
            .ctx("read")?
            .starts_with("next 3 all 0 owner 2"),
        "read back"
    );
    std::fs::write(path, "all").ctx("write all")?;
    ensure_eq!(dev.page_stats().ctx("PAGE_STATS")?.fail_all, 1);
    std::fs::write(path, "off").ctx("write off")?;
    let s = dev.page_stats().ctx("PAGE_STATS")?;
    ensure_eq!((s.fail_next, s.fail_all), (0, 0));
    ensure!(
        std::fs::write(path, "sometimes").is_err(),
        "a bad command is refused"
    );
    Ok(Outcome::Pass)
}

/// The cache tests.
/// Our shrinker under reclaim (issue 16; the lockdep report of
/// 2026-12-02): `drop_caches` asks it, its scan queues the shrink as a work
/// item, and the empty slabs come back, while two threads keep allocating
/// and freeing in the same cache. Nothing in reclaim visits a CPU, so the
/// debug kernel's lockdep sees no `fs_reclaim` → `cpu_hotplug_lock` chain.
fn shrinker_from_reclaim() -> TestResult {
    use crate::uapi::{context, gfp, lab_backend as lb};
    use std::sync::atomic::{AtomicBool, Ordering};
    const SIZE: u64 = 3000;
    let req = |count: u32| uapi::AllocRequest {
        backend: lb::OUR_CACHE,
        gfp: gfp::KERNEL,
        size: SIZE,
        count,
        context: context::PROCESS,
        ..Default::default()
    };
    let dev = Device::open_index(0).ctx("open")?;
    let empty = |dev: &Device| -> Result<u64, String> {
        Ok(dev
            .caches()
            .ctx("CACHE_INFO")?
            .into_iter()
            .find(|c| c.objsize == SIZE && c.flags == 0)
            .ok_or("no 3000-byte cache")?
            .empty_slabs)
    };
    let before = dev.shrinker_info().ctx("SHRINKER_INFO")?;
    ensure_eq!(before.registered, 1, "the shrinker is registered");
    let stop = AtomicBool::new(false);
    let rounds = std::thread::scope(|s| -> Result<u32, String> {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| -> Result<u64, String> {
                    let d = Device::open_index(0).ctx("open")?;
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        d.alloc(req(64)).ctx("64 objects")?;
                        d.free_all().ctx("FREE_ALL")?;
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        let mut rounds = 0u32;
        let mut res = Ok(());
        for _ in 0..20 {
            // Empty slabs for reclaim to take: 512 objects made and freed
            // leave the few (KEEP_EMPTY) a cache keeps.
            if let Err(e) = dev.alloc(req(512)).ctx("512 objects") {
                res = Err(e);
                break;
            }
            let _ = dev.free_all();
            if let Err(e) = std::fs::write("/proc/sys/vm/drop_caches", "2").ctx("drop_caches") {
                res = Err(e);
                break;
            }
            rounds += 1;
        }
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            let n = w.join().map_err(|_| "a worker panicked".to_string())??;
            ensure!(n > 0, "a worker made no round");
        }
        res.map(|()| rounds)
    })?;
    // The last scan's work may still be running: poll for its pages, then
    // one more pass on the now quiet cache takes it to no empty slab.
    std::fs::write("/proc/sys/vm/drop_caches", "2").ctx("drop_caches")?;
    let mut after = dev.shrinker_info().ctx("SHRINKER_INFO")?;
    let mut left = empty(&dev)?;
    for _ in 0..100 {
        if after.pages_freed > before.pages_freed && left == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        after = dev.shrinker_info().ctx("SHRINKER_INFO")?;
        left = empty(&dev)?;
    }
    println!(
        "# {rounds} drop_caches under two allocating threads: count calls +{}, scan calls +{}, pages freed +{}, {left} empty slabs left",
        after.count_calls - before.count_calls,
        after.scan_calls - before.scan_calls,
        after.pages_freed - before.pages_freed
    );
    ensure_eq!(rounds, 20);
    ensure!(after.scan_calls > before.scan_calls, "reclaim scanned us");
    ensure!(
        after.pages_freed > before.pages_freed,
        "the queued shrinks gave pages back"
    );
    ensure_eq!(left, 0, "empty slabs of the 3000-byte cache after reclaim");
    Ok(Outcome::Pass)
}

pub fn tests() -> Vec<Test> {
    vec![
        Test::new("caches/scullc_64mib_back_to_baseline", scullc_64mib),
        Test::new("caches/bad_frees_refused_and_counted", bad_frees),
        Test::new("caches/slabinfo_matches_ioctl", slabinfo_file),
        Test::new("caches/injected_page_failure", injected_failure),
        Test::new("caches/debugfs_fault_knob", debugfs_fault_knob),
        Test::new(
            "caches/debug_poison_and_red_zone",
            debug_poison_and_red_zone,
        ),
        Test::new("caches/shrinker_from_reclaim", shrinker_from_reclaim),
    ]
}
