//! Concurrency and lifetime stress: four threads on shared and own devices
//! with the cache-wide ioctls in between, and many load/unload cycles with
//! data left in the devices.
//!
//! `LDD_STRESS_SECS` (default 10) bounds `stress/threads_4`;
//! `LDD_RELOAD_CYCLES` (default 100) sets the cycles of
//! `module/reload_cycles`, `LDD_RELOAD_SECS` (default 60) its time budget
//! and `LDD_RELOAD_MIN` (default 10) the fewest cycles that pass.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::fuzz_model::{first_diff, Fd};
use crate::rng::Rng;
use crate::tap::{Outcome, Test, TestResult};
use crate::uapi::{self, backend as be};

/// Threads of the stress test.
const THREADS: usize = 4;
/// The device every thread writes, each in its own region.
const SHARED: usize = 1;
/// Bytes of each thread's region of the shared device.
const REGION: usize = 1 << 20;
/// Bytes of a thread's own device that it uses.
const OWN: usize = 2 << 20;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn node(d: usize) -> String {
    format!("/dev/ldd_alloc{d}")
}

fn open(d: usize) -> Result<Fd, String> {
    Fd::open(&node(d), libc::O_RDWR).map_err(|e| format!("open {}: {e}", node(d)))
}

fn trim(d: usize) -> Result<(), String> {
    Fd::open(&node(d), libc::O_WRONLY | libc::O_TRUNC)
        .map(drop)
        .map_err(|e| format!("trim {}: {e}", node(d)))
}

fn info(fd: &Fd) -> Result<uapi::DeviceInfo, String> {
    fd.ioctl_get(uapi::LDD_IOC_INFO)
        .map_err(|e| format!("INFO: {e}"))
}

fn pages_out(fd: &Fd) -> Result<i64, String> {
    let s: uapi::PageStats = fd
        .ioctl_get(uapi::LDD_IOC_PAGE_STATS)
        .map_err(|e| format!("PAGE_STATS: {e}"))?;
    Ok(s.pages_out.iter().sum())
}

/// Pages in the slabs of pool-private caches (the pools' reserves).
fn private_pages(fd: &Fd) -> Result<i64, String> {
    Ok(caches(fd)?
        .iter()
        .filter(|c| c.flags & uapi::cache_flags::POOL_PRIVATE != 0)
        .map(|c| ((c.partial_slabs + c.full_slabs + c.empty_slabs) * c.pagesperslab) as i64)
        .sum())
}

fn caches(fd: &Fd) -> Result<Vec<uapi::CacheInfo>, String> {
    let mut v = Vec::new();
    loop {
        let mut ci = uapi::CacheInfo {
            index: v.len() as u32,
            ..Default::default()
        };
        match fd.ioctl(uapi::LDD_IOC_CACHE_INFO, &mut ci as *mut _ as usize) {
            Ok(_) => v.push(ci),
            Err(Errno::ENOENT) => return Ok(v),
            Err(e) => return Err(format!("CACHE_INFO {}: {e}", v.len())),
        }
    }
}

/// Writes `data` at `pos` in full (the store serves a whole request).
fn put(fd: &Fd, data: &[u8], pos: u64, what: &str) -> Result<(), String> {
    match fd.pwrite(data, pos) {
        Ok(n) if n == data.len() => Ok(()),
        other => Err(format!(
            "{what}: pwrite of {} at {pos}: {other:?}",
            data.len()
        )),
    }
}

/// Reads `want.len()` bytes at `pos` and compares.
fn check(fd: &Fd, want: &[u8], pos: u64, what: &str) -> Result<(), String> {
    let mut got = vec![0u8; want.len()];
    match fd.pread(&mut got, pos) {
        Ok(n) if n == want.len() => {}
        other => {
            return Err(format!(
                "{what}: pread of {} at {pos}: {other:?}",
                want.len()
            ))
        }
    }
    match first_diff(&got, want) {
        None => Ok(()),
        Some(i) => Err(format!(
            "{what}: byte {} is {:#04x}, want {:#04x}",
            pos + i as u64,
            got[i],
            want[i]
        )),
    }
}

/// The cache-wide ioctls, from any thread: all must answer sensibly while
/// the other threads allocate and free.
fn global_op(fd: &Fd, rng: &mut Rng) -> Result<(), String> {
    match rng.below(4) {
        0 => {
            fd.ioctl(uapi::LDD_IOC_SHRINK, 0)
                .map_err(|e| format!("SHRINK: {e}"))?;
        }
        1 => {
            for c in caches(fd)? {
                // BAD_FREE's private debug cache counts the corruptions it
                // was asked to make; no other cache may see any.
                let test = c.flags & uapi::cache_flags::TEST_PRIVATE != 0;
                if (!test && (c.poison_errors != 0 || c.redzone_errors != 0))
                    || c.num_objs < c.active_objs
                {
                    return Err(format!("cache {} looks wrong: {c:?}", c.index));
                }
            }
        }
        2 => {
            let s: uapi::PageStats = fd
                .ioctl_get(uapi::LDD_IOC_PAGE_STATS)
                .map_err(|e| format!("PAGE_STATS: {e}"))?;
            if s.pages_out.iter().any(|&p| p < 0) || s.fail_all != 0 || s.fail_next != 0 {
                return Err(format!("PAGE_STATS: {s:?}"));
            }
        }
        _ => {
            let scenario = rng.below(u64::from(uapi::bad_free::COUNT)) as u32;
            let want = [
                uapi::refusal::FOREIGN,
                uapi::refusal::FOREIGN,
                uapi::refusal::MISALIGNED,
                uapi::refusal::DOUBLE,
                uapi::refusal::FOREIGN,
                uapi::refusal::POISON,
                uapi::refusal::RED_ZONE,
            ]
            .get(scenario as usize)
            .copied()
            .unwrap_or(uapi::refusal::FOREIGN);
            // A concurrent SHRINK may give the slab back between the two
            // frees of DOUBLE: the second one is then refused as foreign.
            let also = if scenario == uapi::bad_free::DOUBLE {
                uapi::refusal::FOREIGN
            } else {
                want
            };
            match fd.ioctl(uapi::LDD_IOC_BAD_FREE, scenario as usize) {
                Ok(r) if r == want || r == also => {}
                other => {
                    return Err(format!(
                        "BAD_FREE {scenario}: want Ok({want}), got {other:?}"
                    ))
                }
            }
        }
    }
    Ok(())
}

/// Per-thread totals.
#[derive(Default, Debug)]
struct Counts {
    ops: u64,
    shared: u64,
    own: u64,
    global: u64,
    switches: u64,
}

/// What thread `t` owns: its region of the shared device, and device `own`
/// (if any) whose contents it models; thread 3 instead cycles device 3
/// through trims and backend switches.
fn worker(t: usize, deadline: Instant, stop: &AtomicBool, mempool: bool) -> Result<Counts, String> {
    let mut rng = Rng::new(0x57e55 + t as u64);
    let mut c = Counts::default();
    let shared = open(SHARED)?;
    let base = (t * REGION) as u64;
    let mut region = vec![0u8; REGION];
    let own_dev = [Some(0usize), Some(2), None, None][t];
    let own = own_dev.map(open).transpose()?;
    let mut own_model = vec![0u8; OWN];
    let mut own_size = 0usize;
    let switcher = t == 3;
    let sw = if switcher { Some(open(3)?) } else { None };
    let mut buf = vec![0u8; 64 << 10];
    let fail = |what: String| -> String { format!("thread {t}: {what}") };
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        c.ops += 1;
        let roll = rng.below(100);
        if roll < 45 {
            // The shared device, inside our region.
            let max = if rng.below(4) == 0 { 65536 } else { 8192 };
            let len = 1 + rng.below(max) as usize;
            let off = rng.below((REGION - len) as u64 + 1) as usize;
            if rng.below(3) == 0 {
                check(
                    &shared,
                    &region[off..off + len],
                    base + off as u64,
                    "shared read",
                )
                .map_err(fail)?;
            } else {
                rng.fill(&mut buf[..len]);
                put(&shared, &buf[..len], base + off as u64, "shared write").map_err(fail)?;
                region[off..off + len].copy_from_slice(&buf[..len]);
            }
            c.shared += 1;
        } else if roll < 80 {
            if let Some(fd) = &own {
                let len = 1 + rng.below(32768) as usize;
                let off = rng.below((OWN - len) as u64 + 1) as usize;
                if rng.below(3) == 0 {
                    let n = own_size.saturating_sub(off).min(len);
                    check(fd, &own_model[off..off + n], off as u64, "own read").map_err(fail)?;
                } else {
                    rng.fill(&mut buf[..len]);
                    put(fd, &buf[..len], off as u64, "own write").map_err(fail)?;
                    own_model[off..off + len].copy_from_slice(&buf[..len]);
                    own_size = own_size.max(off + len);
                }
                c.own += 1;
            } else if let Some(fd) = &sw {
                // Device 3, idle but for us: trim, switch, fill, check.
                let backends: &[u32] = if mempool {
                    &[be::KMALLOC, be::CACHE, be::PAGES, be::VMALLOC, be::MEMPOOL]
                } else {
                    &[be::KMALLOC, be::CACHE, be::PAGES, be::VMALLOC]
                };
                let b = backends[rng.below(backends.len() as u64) as usize];
                let order = if b == be::PAGES {
                    rng.below(4) as u32
                } else {
                    0
                };
                trim(3).map_err(fail)?;
                fd.ioctl(uapi::LDD_IOC_SET_BACKEND, (b | order << 8) as usize)
                    .map_err(|e| fail(format!("SET_BACKEND {b} order {order}: {e}")))?;
                let len = 1 + rng.below(100_000) as usize;
                let mut data = vec![0u8; len];
                rng.fill(&mut data);
                let off = rng.below(50_000);
                put(fd, &data, off, "switcher write").map_err(fail)?;
                check(fd, &data, off, "switcher read").map_err(fail)?;
                let i = info(fd).map_err(fail)?;
                if i.backend != b || i.size != off + len as u64 {
                    return Err(fail(format!("switcher INFO: {i:?}")));
                }
                match fd.ioctl(uapi::LDD_IOC_SET_BACKEND, be::KMALLOC as usize) {
                    Err(Errno::EBUSY) => {}
                    other => return Err(fail(format!("SET_BACKEND with data: {other:?}"))),
                }
                c.switches += 1;
            } else {
                global_op(&shared, &mut rng).map_err(fail)?;
                c.global += 1;
            }
        } else {
            global_op(&shared, &mut rng).map_err(fail)?;
            c.global += 1;
        }
    }
    // Final check of everything this thread owns.
    for off in (0..REGION).step_by(256 << 10) {
        check(
            &shared,
            &region[off..off + (256 << 10)],
            base + off as u64,
            "final shared",
        )
        .map_err(fail)?;
    }
    if let Some(fd) = &own {
        check(fd, &own_model[..own_size], 0, "final own").map_err(fail)?;
        let i = info(fd).map_err(fail)?;
        if i.size != own_size as u64 {
            return Err(fail(format!("own device size {} != {own_size}", i.size)));
        }
    }
    Ok(c)
}

fn threads_4() -> TestResult {
    let secs = env_u64("LDD_STRESS_SECS", 10);
    let ctl = open(0)?;
    let mut initial = Vec::new();
    for d in 0..THREADS {
        trim(d)?;
        initial.push(info(&open(d)?)?);
    }
    // The shared device on our cache, the own devices on kmalloc and pages.
    let set = |d: usize, b: u32| -> Result<(), String> {
        open(d)?
            .ioctl(uapi::LDD_IOC_SET_BACKEND, b as usize)
            .map(drop)
            .map_err(|e| format!("SET_BACKEND {b} on {d}: {e}"))
    };
    set(SHARED, be::CACHE)?;
    set(0, be::KMALLOC)?;
    set(2, be::PAGES)?;
    let mempool = match open(3)?.ioctl(uapi::LDD_IOC_SET_BACKEND, be::MEMPOOL as usize) {
        Ok(_) => true,
        Err(Errno::ENODEV) => false,
        Err(e) => return Err(format!("probing the mempool backend: {e}")),
    };
    ctl.ioctl(uapi::LDD_IOC_SHRINK, 0)
        .map_err(|e| format!("SHRINK: {e}"))?;
    let base = pages_out(&ctl)? - private_pages(&ctl)?;
    // The shared device is 4 MiB from the start, so every region reads in full.
    put(
        &open(SHARED)?,
        &[0],
        (THREADS * REGION) as u64 - 1,
        "size the shared device",
    )?;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let results: Vec<Result<Counts, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let stop = &stop;
                s.spawn(move || {
                    let r = worker(t, deadline, stop, mempool);
                    if r.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a thread panicked".into())))
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut errors = Vec::new();
    for (t, r) in results.iter().enumerate() {
        match r {
            Ok(c) => println!(
                "# thread {t}: {} ops ({} shared, {} own, {} switches, {} cache-wide)",
                c.ops, c.shared, c.own, c.switches, c.global
            ),
            Err(e) => errors.push(e.clone()),
        }
    }
    println!(
        "# {elapsed:.1} s, mempool backend {}",
        if mempool { "present" } else { "absent" }
    );
    // Everything back: trims, shrink, baseline; first backends again.
    let mut after = Ok(());
    for (d, i) in initial.iter().enumerate() {
        if let Err(e) = trim(d) {
            after = Err(e);
        }
        let _ = open(d).map(|f| {
            f.ioctl(
                uapi::LDD_IOC_SET_BACKEND,
                (i.backend | i.order << 8) as usize,
            )
        });
    }
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    after?;
    ctl.ioctl(uapi::LDD_IOC_SHRINK, 0)
        .map_err(|e| format!("SHRINK: {e}"))?;
    // Pool reserves stay; everything else is back.
    let end = pages_out(&ctl)? - private_pages(&ctl)?;
    if end != base {
        return Err(format!(
            "pages out after trims + shrink, beside pool reserves: {end}, at start {base}"
        ));
    }
    for c in caches(&ctl)? {
        if c.flags & uapi::cache_flags::POOL_PRIVATE == 0 && c.active_objs != 0 {
            return Err(format!(
                "cache {} has live objects after the trims: {c:?}",
                c.index
            ));
        }
    }
    Ok(Outcome::Pass)
}

fn sh(cmd: &str) -> Result<(bool, String), String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

/// Puts data in device 1 (our cache) and device 2 (pages) and closes them.
fn fill(rng: &mut Rng) -> Result<(), String> {
    for (d, b) in [(1usize, be::CACHE), (2, be::PAGES)] {
        trim(d)?;
        let fd = open(d)?;
        fd.ioctl(uapi::LDD_IOC_SET_BACKEND, b as usize)
            .map_err(|e| format!("SET_BACKEND {b} on {d}: {e}"))?;
        let len = 1 + rng.below(300_000) as usize;
        let mut data = vec![0u8; len];
        rng.fill(&mut data);
        let off = rng.below(100_000);
        put(&fd, &data, off, "fill")?;
        check(&fd, &data, off, "fill read back")?;
    }
    Ok(())
}

fn reload_cycles() -> TestResult {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(Outcome::Skip("needs root to reload the module".into()));
    }
    if std::env::var_os("LDD_ALLOC_KO").is_none() {
        return Ok(Outcome::Skip("LDD_ALLOC_KO is not set".into()));
    }
    let cycles = env_u64("LDD_RELOAD_CYCLES", 100);
    // The time budget may cut the run short, but never below this.
    let min_cycles = env_u64("LDD_RELOAD_MIN", 10).min(cycles);
    let budget = Duration::from_secs(env_u64("LDD_RELOAD_SECS", 60));
    let mut rng = Rng::new(0x7e10ad);
    let (_, lines) = sh("dmesg | wc -l")?;
    let log_start: usize = lines.trim().parse().unwrap_or(0);
    let start = Instant::now();
    let mut done = 0;
    while done < cycles {
        if start.elapsed() > budget {
            println!("# stopped after {done} cycles: {budget:?} time budget (LDD_RELOAD_SECS)");
            break;
        }
        fill(&mut rng).map_err(|e| format!("cycle {done}: {e}"))?;
        let (ok, out) = sh("ldd_alloc_unload && ldd_alloc_load")?;
        if !ok {
            // Try to leave a loaded module behind for the next tests.
            let _ = sh("grep -q '^ldd_alloc ' /proc/modules || ldd_alloc_load");
            return Err(format!("cycle {done}: reload failed: {out}"));
        }
        let fd = open(0).map_err(|e| format!("cycle {done}: {e}"))?;
        let i = info(&fd).map_err(|e| format!("cycle {done}: {e}"))?;
        if i.abi_version != uapi::ABI_VERSION || i.size != 0 || i.index != 0 {
            return Err(format!("cycle {done}: INFO after load: {i:?}"));
        }
        drop(fd);
        for d in [1, 2] {
            let i = info(&open(d)?)?;
            if i.size != 0 || i.quanta != 0 {
                return Err(format!(
                    "cycle {done}: device {d} not empty after load: {i:?}"
                ));
            }
        }
        done += 1;
        if done % 10 == 0 || done == cycles {
            // Only what the kernel said since this test started.
            let (_, log) = sh(&format!(
                "dmesg | tail -n +{} | grep -E 'leaked|refused|BUG:|WARNING:|not ok' | tail -5",
                log_start + 1
            ))?;
            if !log.trim().is_empty() {
                return Err(format!("after {done} cycles the kernel log says:\n{log}"));
            }
        }
    }
    println!(
        "# {done} reload cycles with data left in a cache and a pages device, {:.1} s \
         (asked {cycles}, at least {min_cycles} required)",
        start.elapsed().as_secs_f64()
    );
    if done < min_cycles {
        return Err(format!(
            "only {done} reload cycles in {budget:?}; at least {min_cycles} required (LDD_RELOAD_MIN)"
        ));
    }
    Ok(Outcome::Pass)
}

/// The stress tests.
pub fn tests() -> Vec<Test> {
    vec![
        Test::new("stress/threads_4", threads_4),
        Test::new("module/reload_cycles", reload_cycles),
    ]
}
