//! Module parameters: loads with non-default geometry (as LDD3's scull_load
//! does), each limit moved by its parameter, the parameters' boundaries,
//! and the debugfs files read, parsed and compared with the ioctls.

use std::io::Read;
use std::os::unix::fs::FileExt;

use nix::errno::Errno;

use crate::device::{cache_name, Device};
use crate::tap::{Context, Outcome, Test, TestResult};
use crate::uapi::{self, alloc_flags, context, gfp, lab_backend as lb};
use crate::{ensure, ensure_eq};

use super::sysinfo::{cannot_reload, reload, sh};

/// Runs `body` with the module loaded with `params`, then reloads it with
/// the defaults whatever happened.
fn with_params(params: &str, body: impl FnOnce() -> Result<(), String>) -> TestResult {
    if let Some(why) = cannot_reload() {
        return Ok(Outcome::Skip(why));
    }
    reload(params)?;
    let r = body();
    let back = reload("");
    r.map_err(|e| format!("with {params}: {e}"))?;
    back?;
    Ok(Outcome::Pass)
}

/// `quantum=1000 qset=10`: INFO and the getters report it, a write across
/// three quantum sets reads back, and the pages device keeps whole pages.
fn quantum_qset_load() -> TestResult {
    with_params("quantum=1000 qset=10", || {
        let d = Device::open_index(0).ctx("open")?;
        let i = d.info().ctx("INFO")?;
        ensure_eq!((i.quantum, i.qset), (1000, 10), "INFO after load");
        ensure_eq!(d.quantum().ctx("G")?, 1000);
        ensure_eq!(d.qset().ctx("G")?, 10);
        ensure_eq!(d.ioctl_raw(uapi::SCULL_IOCQQUANTUM, 0).ctx("Q")?, 1000);
        ensure_eq!(d.ioctl_raw(uapi::SCULL_IOCQQSET, 0).ctx("Q")?, 10);
        for dev in [0u32, 1, 3] {
            let d = Device::open_index(dev).ctx("open")?;
            let data: Vec<u8> = (0..25_001u32).map(|x| (x * 7 % 251) as u8).collect();
            d.file().write_all_at(&data, 0).ctx("write")?;
            let mut back = vec![0u8; data.len()];
            d.file().read_exact_at(&mut back, 0).ctx("read")?;
            ensure!(back == data, "device {dev}: data across sets");
            let i = d.info().ctx("INFO")?;
            ensure_eq!(
                (i.quanta, i.qsets),
                (26, 3),
                "device {dev}: 25001 B in 1000-byte quanta"
            );
            drop(Device::open_with(d.path(), libc::O_WRONLY | libc::O_TRUNC).ctx("trim")?);
        }
        // RESET restores these load-time values, not the defaults.
        d.set_quantum(333).ctx("S")?;
        d.scull_reset().ctx("RESET")?;
        ensure_eq!(
            d.quantum().ctx("G")?,
            1000,
            "RESET goes back to the load-time quantum"
        );
        let p = Device::open_index(2).ctx("open pages")?;
        ensure_eq!(
            p.info().ctx("INFO")?.quantum,
            4096,
            "scullp keeps whole pages"
        );
        // A cache of 1000-byte objects backs device 1.
        let c = d.caches().ctx("CACHE_INFO")?;
        ensure!(
            c.iter()
                .any(|c| c.objsize == 1000 && cache_name(c) == "ldd-1000"),
            "no ldd-1000 cache: {:?}",
            c.iter().map(cache_name).collect::<Vec<_>>()
        );
        Ok(())
    })
}

/// `max_mib=1`: a device takes 1 MiB, not a byte more (ENOSPC).
fn max_mib_moves() -> TestResult {
    with_params("max_mib=1", || {
        let d = super::scull::fresh(uapi::backend::KMALLOC)?;
        d.file().write_all_at(&vec![1u8; 1 << 20], 0).ctx("1 MiB")?;
        let r = d.file().write_at(b"x", 1 << 20);
        ensure_eq!(
            r.map_err(|e| e.raw_os_error()),
            Err(Some(libc::ENOSPC)),
            "byte 1 MiB"
        );
        ensure_eq!(d.info().ctx("INFO")?.size, 1 << 20);
        super::scull::trim()
    })
}

/// `lab_max_handles=10` and `lab_max_mib=8`: the per-file limits move.
fn lab_limits_move() -> TestResult {
    with_params("lab_max_handles=10 lab_max_mib=8", || {
        let d = Device::open_index(0).ctx("open")?;
        let r = d
            .alloc(uapi::AllocRequest {
                backend: lb::KMALLOC,
                gfp: gfp::KERNEL,
                size: 64,
                count: 10,
                ..Default::default()
            })
            .ctx("10 handles")?;
        ensure_eq!(r.len(), 10);
        ensure_eq!(
            d.alloc_one(lb::KMALLOC, gfp::KERNEL, 64, 0, context::PROCESS)
                .map(drop),
            Err(Errno::ENOSPC),
            "the 11th handle"
        );
        d.free_all().ctx("FREE_ALL")?;
        let big = uapi::AllocRequest {
            backend: lb::VMALLOC,
            gfp: gfp::KERNEL,
            size: 4 << 20,
            count: 1,
            ..Default::default()
        };
        ensure_eq!(d.alloc(big).ctx("4 MiB")?.len(), 1);
        ensure_eq!(d.alloc(big).ctx("8 MiB")?.len(), 1);
        ensure_eq!(
            d.alloc(big).map(|v| v.len()),
            Err(Errno::E2BIG),
            "12 MiB held, limit 8"
        );
        d.free_all().ctx("FREE_ALL")?;
        ensure_eq!(
            d.alloc(uapi::AllocRequest {
                size: 9 << 20,
                flags: alloc_flags::BIG,
                ..big
            })
            .map(|v| v.len()),
            Err(Errno::E2BIG),
            "a BIG allocation above lab_max_mib"
        );
        Ok(())
    })
}

/// A krealloc request that fails leaves the old allocation and its handle
/// alone (krealloc() itself never frees the old object when it fails). With
/// `lab_max_mib=1`, growing a 100-byte kmalloc handle to 64 KiB next to
/// 1000 KiB of vmalloc passes the file's byte limit: E2BIG, and the old
/// handle must still be live.
///
/// Found here (fixed in lab/mod.rs `realloc()`): the old handle used to be
/// removed right after krealloc() succeeded, before the byte limit and the
/// table insert were checked, so a failing request lost it; the room is now
/// checked first and the result put back into the old handle's slot.
fn krealloc_failure_keeps_old_handle() -> TestResult {
    with_params("lab_max_mib=1", || {
        let d = Device::open_index(0).ctx("open")?;
        let old = d
            .alloc_one(lb::KMALLOC, gfp::KERNEL, 100, 0, context::PROCESS)
            .ctx("kmalloc 100")?;
        d.alloc_one(lb::VMALLOC, gfp::KERNEL, 1000 << 10, 0, context::PROCESS)
            .ctx("vmalloc 1000 KiB")?;
        let grown = d.alloc(uapi::AllocRequest {
            backend: lb::KREALLOC,
            gfp: gfp::KERNEL,
            size: 64 << 10,
            count: 1,
            handle: old.handle,
            ..Default::default()
        });
        ensure_eq!(
            grown.map(|v| v.len()),
            Err(Errno::E2BIG),
            "krealloc past the limit"
        );
        let listed = d.list().ctx("LIST")?.iter().any(|h| h.handle == old.handle);
        let freed = d.free(old.handle);
        ensure!(
            listed && freed.is_ok(),
            "the krealloc failed with E2BIG, yet its old handle {:#x} is gone \
             (listed: {listed}, FREE: {freed:?})",
            old.handle
        );
        d.free_all().ctx("FREE_ALL")?;
        Ok(())
    })
}

/// `pool_min_nr=5`: a new pool keeps 5 in reserve.
fn pool_min_nr_moves() -> TestResult {
    with_params("pool_min_nr=5", || {
        let d = Device::open_index(0).ctx("open")?;
        d.alloc(uapi::AllocRequest {
            backend: lb::OUR_MEMPOOL,
            gfp: gfp::KERNEL,
            size: 777,
            count: 1,
            flags: alloc_flags::FREE_NOW,
            ..Default::default()
        })
        .ctx("create a pool")?;
        let p = (0..)
            .map_while(|i| d.pool_info(i).ok())
            .find(|p| p.element_size == 777 && p.live == 1)
            .ok_or("no pool of 777-byte elements")?;
        ensure_eq!((p.min_nr, p.curr_nr), (5, 5), "reserve of a new pool");
        Ok(())
    })
}

/// Each parameter at its lowest and highest accepted value loads and
/// works; one past either end is refused with a message naming it.
///
/// Found here: `quantum=4194304`, then QUANTUM_MAX, failed insmod with
/// EINVAL and no message (device 1's cache cannot hold a 4 MiB object beside
/// its on-slab header); QUANTUM_MAX is now 2 MiB, which every backend holds.
fn boundaries() -> TestResult {
    if let Some(why) = cannot_reload() {
        return Ok(Outcome::Skip(why));
    }
    let ok = [
        "quantum=1 qset=1",
        "quantum=2097152 qset=65536",
        "nr_devs=1",
        "nr_devs=16",
        "order=3",
        "max_mib=4096",
        "lab_max_handles=1 lab_max_mib=1",
        "lab_max_handles=65535 lab_max_mib=4096",
        "pool_min_nr=1",
        "pool_min_nr=4096",
        "cache_debug=0",
    ];
    let refused = [
        "quantum=2097153",
        "qset=65537",
        "max_mib=0",
        "max_mib=4097",
        "lab_max_handles=0",
        "lab_max_handles=65536",
        "lab_max_mib=0",
        "pool_min_nr=0",
        "pool_min_nr=4097",
        "cache_debug=4",
        "order=4",
    ];
    // Every boundary is tried; the mismatches are reported together.
    let mut wrong = Vec::new();
    for params in ok {
        if let Err(e) = (|| -> Result<(), String> {
            reload(params)?;
            let d = Device::open_index(0).ctx("open")?;
            d.file().write_all_at(b"boundary", 3).ctx(params)?;
            let mut back = [0u8; 8];
            d.file().read_exact_at(&mut back, 3).ctx(params)?;
            ensure_eq!(&back, b"boundary", "{params}");
            if params == "nr_devs=16" {
                let i = Device::open_index(15)
                    .ctx("/dev/ldd_alloc15")?
                    .info()
                    .ctx("INFO")?;
                ensure_eq!(i.index, 15, "nr_devs=16: the last device");
            }
            if params == "nr_devs=1" {
                ensure!(Device::open_index(1).is_err(), "ldd_alloc1 exists");
            }
            Ok(())
        })() {
            wrong.push(format!("{params} (in range) did not load and work: {e}"));
        }
    }
    let _ = sh("grep -q '^ldd_alloc ' /proc/modules && ldd_alloc_unload");
    let ko = std::env::var("LDD_ALLOC_KO").unwrap_or_default();
    for params in refused {
        let (ok, out) = sh(&format!("insmod {ko} {params}"))?;
        if ok {
            let _ = sh("rmmod ldd_alloc");
            wrong.push(format!("{params} (out of range) loaded"));
            continue;
        }
        let (_, log) = sh("dmesg | tail -3")?;
        let name = params.split('=').next().unwrap_or(params);
        if !log.contains(name) {
            wrong.push(format!(
                "{params}: refused, but the log does not name {name}: {out} {log}"
            ));
        }
    }
    reload("")?;
    if !wrong.is_empty() {
        return Err(wrong.join("\n"));
    }
    Ok(Outcome::Pass)
}

/// `/sys/kernel/debug/ldd_alloc/pages` and `pools`, parsed, say what
/// PAGE_STATS and POOL_INFO say.
fn debugfs_pages_and_pools() -> TestResult {
    let dir = "/sys/kernel/debug/ldd_alloc";
    if std::fs::metadata(dir).is_err() {
        return Ok(Outcome::Skip("debugfs not mounted".into()));
    }
    let d = Device::open_index(0).ctx("open")?;
    // Something in both: a kept object of our cache and a pool.
    d.alloc_one(lb::OUR_CACHE, gfp::KERNEL, 3000, 0, context::PROCESS)
        .ctx("our cache")?;
    d.alloc_one(lb::OUR_MEMPOOL, gfp::KERNEL, 3000, 0, context::PROCESS)
        .ctx("pool")?;
    let pages = std::fs::read_to_string(format!("{dir}/pages")).ctx("pages")?;
    let s = d.page_stats().ctx("PAGE_STATS")?;
    for (z, name) in ["DMA", "DMA32", "Normal"].iter().enumerate() {
        let line = pages
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .ok_or(format!("no {name} line in pages: {pages}"))?;
        let v: Vec<i64> = line
            .split_whitespace()
            .skip(1)
            .map(|w| w.parse().map_err(|_| format!("bad number in {line}")))
            .collect::<Result<_, _>>()?;
        ensure_eq!(
            v,
            vec![s.pages_out[z], s.allocs[z] as i64, s.frees[z] as i64],
            "pages {name}"
        );
    }
    ensure!(
        pages.contains(&format!("failures {} injected {}", s.failures, s.injected)),
        "failures line: {pages}"
    );
    ensure!(
        pages.contains(&format!(
            "fault: fail_next {} fail_all {} owner {}",
            s.fail_next, s.fail_all, s.fail_owner
        )),
        "fault line: {pages}"
    );
    ensure!(
        s.pages_out.iter().sum::<i64>() > 0,
        "a kept object holds a page"
    );
    let pools = std::fs::read_to_string(format!("{dir}/pools")).ctx("pools")?;
    let mut rows = pools.lines().filter(|l| !l.starts_with('#'));
    let mut n = 0;
    while let Ok(p) = d.pool_info(n) {
        let row = rows
            .next()
            .ok_or(format!("pool {n} missing from pools: {pools}"))?;
        let w: Vec<&str> = row.split_whitespace().collect();
        let name = String::from_utf8_lossy(&p.name)
            .trim_end_matches('\0')
            .to_string();
        let want = format!(
            "{name} {} {} {} {} {} {} {} {} {} {}",
            p.live,
            p.element_size,
            p.curr_nr,
            p.min_nr,
            p.outstanding,
            p.allocs_backing,
            p.allocs_reserve,
            p.waits,
            p.wakeups,
            p.failures
        );
        ensure_eq!(w.join(" "), want, "pool {n}");
        n += 1;
    }
    ensure!(
        rows.next().is_none(),
        "pools lists more pools than POOL_INFO"
    );
    ensure!(n > 0, "no pool");
    d.free_all().ctx("FREE_ALL")?;
    Ok(Outcome::Pass)
}

/// The module's reference count, /sys/module/ldd_alloc/refcnt.
fn refcnt() -> Result<i64, String> {
    let p = "/sys/module/ldd_alloc/refcnt";
    std::fs::read_to_string(p)
        .ctx(p)?
        .trim()
        .parse()
        .map_err(|e| format!("{p}: {e}"))
}

/// rmmod must be refused (EBUSY, "in use") while a debugfs file of the
/// module is open: debugfs's proxy calls the module's file operations at
/// release, so an open file must pin the module (`fops_get()` takes a
/// reference on `fops->owner`).
///
/// Found here (fixed in debugfs.rs, which now has file operations of its
/// own): 7.3's kernel::debugfs (rust/kernel/debugfs/file_ops.rs) builds
/// file_operations with no `.owner`, so an open
/// /sys/kernel/debug/ldd_alloc/* file leaves refcnt at 0, rmmod succeeds,
/// and the later close() oopses in full_proxy_release() reading the
/// unloaded module's fops (found by this test; reproducer:
/// `make vm CMD='exec 3</sys/kernel/debug/ldd_alloc/slabinfo; rmmod ldd_alloc; exec 3<&-'`).
/// The test detects the bug from the reference count and then does NOT run
/// rmmod, so the VM survives to report it.
fn rmmod_with_debugfs_open() -> TestResult {
    if let Some(why) = cannot_reload() {
        return Ok(Outcome::Skip(why));
    }
    let path = "/sys/kernel/debug/ldd_alloc/slabinfo";
    let before = refcnt()?;
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return Ok(Outcome::Skip(format!("{path}: {e}"))),
    };
    let held = refcnt()?;
    let mut text = String::new();
    f.read_to_string(&mut text).ctx("read")?;
    if held == before {
        drop(f);
        // Found here: kernel::debugfs's file_operations have no .owner; the
        // module's own debugfs files now do. Never rmmod in this state: the
        // close would oops in full_proxy_release.
        return Err(format!(
            "an open {path} does not pin the module (refcnt {before} -> {held}); rmmod not attempted"
        ));
    }
    let (ok, out) = sh("rmmod ldd_alloc")?;
    drop(f);
    if ok {
        let _ = reload("");
        return Err("rmmod succeeded with a debugfs file open".into());
    }
    // busybox rmmod asks with O_NONBLOCK: a module in use is EWOULDBLOCK
    // ("Resource temporarily unavailable"); blocking rmmod says "in use".
    ensure!(
        out.contains("in use")
            || out.contains("busy")
            || out.contains("Resource temporarily unavailable"),
        "rmmod: {out}"
    );
    ensure_eq!(refcnt()?, before, "closing the file drops its reference");
    ensure!(
        Device::open_index(0)
            .ctx("open")?
            .info()
            .ctx("INFO")?
            .abi_version
            == uapi::ABI_VERSION,
        "still loaded"
    );
    Ok(Outcome::Pass)
}

/// The parameter tests.
pub fn tests() -> Vec<Test> {
    vec![
        Test::new("params/debugfs_pages_and_pools", debugfs_pages_and_pools),
        Test::new("params/quantum_1000_qset_10", quantum_qset_load),
        Test::new("params/max_mib_moves", max_mib_moves),
        Test::new("params/lab_limits_move", lab_limits_move),
        Test::new("params/pool_min_nr_moves", pool_min_nr_moves),
        Test::new(
            "params/krealloc_failure_keeps_old_handle",
            krealloc_failure_keeps_old_handle,
        ),
        Test::new("params/boundaries", boundaries),
        Test::new("params/rmmod_with_debugfs_open", rmmod_with_debugfs_open),
    ]
}
