//! Loading and unloading: bad parameters are refused with a message, and the
//! module cannot go while a device is open.

use std::process::Command;

use crate::device::Device;
use crate::tap::{Context, Outcome, Test, TestResult};
use crate::{ensure, ensure_eq};

/// The module file, from `LDD_ALLOC_KO` (set in the VM).
fn module_file() -> Option<String> {
    std::env::var("LDD_ALLOC_KO")
        .ok()
        .filter(|p| std::path::Path::new(p).exists())
}

fn sh(cmd: &str) -> Result<(bool, String), String> {
    let out = Command::new("sh").arg("-c").arg(cmd).output().ctx(cmd)?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

fn needs_reload() -> Result<Option<String>, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(Some("needs root to reload the module".into()));
    }
    if module_file().is_none() {
        return Ok(Some("LDD_ALLOC_KO does not name the module file".into()));
    }
    Ok(None)
}

fn bad_params() -> TestResult {
    if let Some(why) = needs_reload()? {
        return Ok(Outcome::Skip(why));
    }
    let ko = module_file().unwrap_or_default();
    let (ok, out) = sh("ldd_alloc_unload")?;
    ensure!(ok, "unload: {out}");
    let mut result = Ok(Outcome::Pass);
    for (params, msg) in [
        ("quantum=0", "quantum=0 is out of range"),
        ("qset=0", "qset=0 is out of range"),
        ("nr_devs=0", "nr_devs=0 is out of range"),
        ("nr_devs=17", "nr_devs=17 is out of range"),
        ("order=9", "order=9 is out of range"),
    ] {
        let (ok, out) = sh(&format!("insmod {ko} {params}"))?;
        let (_, log) = sh("dmesg | tail -5")?;
        if ok {
            let _ = sh("rmmod ldd_alloc");
            result = Err(format!("insmod {params} succeeded"));
            break;
        }
        if !log.contains(msg) {
            result = Err(format!(
                "insmod {params}: no '{msg}' in the log: {out} {log}"
            ));
            break;
        }
    }
    let (ok, out) = sh("ldd_alloc_load")?;
    ensure!(ok, "reload: {out}");
    result
}

fn busy_while_open() -> TestResult {
    if let Some(why) = needs_reload()? {
        return Ok(Outcome::Skip(why));
    }
    let dev = Device::open_index(0).ctx("open")?;
    let (ok, _) = sh("rmmod ldd_alloc")?;
    ensure!(!ok, "rmmod succeeded with a device open");
    ensure_eq!(
        dev.info().ctx("INFO after a refused rmmod")?.index,
        0,
        "the device still answers"
    );
    drop(dev);
    let (ok, out) = sh("ldd_alloc_unload && ldd_alloc_load")?;
    ensure!(ok, "reload after close: {out}");
    ensure_eq!(
        Device::open_index(0).ctx("open")?.info().ctx("info")?.size,
        0
    );
    Ok(Outcome::Pass)
}

/// `scripts/ldd_alloc_load` without devtmpfs makes the nodes itself, with
/// the mode and group asked for, like LDD3's scull_load; unload removes them.
fn load_script_without_devtmpfs() -> TestResult {
    if let Some(why) = needs_reload()? {
        return Ok(Outcome::Skip(why));
    }
    let (ok, out) = sh("ldd_alloc_unload")?;
    ensure!(ok, "unload: {out}");
    // Hide devtmpfs under an empty tmpfs: /dev has no ldd_alloc nodes now.
    // Command::output() opens /dev/null for stdin: give the empty /dev one
    // (and unmount lazily at the end: that very /dev/null is open then).
    let (ok, out) = sh("mount -t tmpfs none /dev && mknod -m 666 /dev/null c 1 3")?;
    ensure!(ok, "mount: {out}");
    let result = (|| -> Result<(), String> {
        let (ok, out) = sh("LDD_ALLOC_MODE=640 LDD_ALLOC_GROUP=0 ldd_alloc_load nr_devs=2")?;
        ensure!(ok, "load: {out}");
        let (ok, out) = sh("stat -c '%F %a' /dev/ldd_alloc0 /dev/ldd_alloc1; ls /dev")?;
        ensure!(ok, "stat: {out}");
        ensure!(
            out.lines()
                .take(2)
                .all(|l| l == "character special file 640"),
            "nodes: {out}"
        );
        ensure!(!out.contains("ldd_alloc2"), "only nr_devs nodes: {out}");
        let info = Device::open_index(1)
            .ctx("open the made node")?
            .info()
            .ctx("INFO")?;
        ensure_eq!(info.index, 1, "the node reaches device 1");
        let (ok, out) = sh("ldd_alloc_unload && ls /dev")?;
        ensure!(ok, "unload: {out}");
        ensure!(!out.contains("ldd_alloc"), "unload left nodes: {out}");
        Ok(())
    })();
    let _ = sh("grep -q '^ldd_alloc ' /proc/modules && ldd_alloc_unload");
    let (ok, out) = sh("umount -l /dev && ldd_alloc_load")?;
    ensure!(ok, "back to devtmpfs: {out}");
    result?;
    Ok(Outcome::Pass)
}

/// `cache_debug=3` (slub_debug=PZ for our caches): scullc works on poisoned,
/// red-zoned caches and finds nothing wrong with its own use.
fn cache_debug_param() -> TestResult {
    if let Some(why) = needs_reload()? {
        return Ok(Outcome::Skip(why));
    }
    let (ok, out) = sh("ldd_alloc_unload && ldd_alloc_load cache_debug=3")?;
    ensure!(ok, "load cache_debug=3: {out}");
    let result = (|| -> Result<(), String> {
        use std::os::unix::fs::FileExt;
        let dev = Device::open_index(1).ctx("open the cache device")?;
        let data: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        dev.file().write_all_at(&data, 0).ctx("write")?;
        let mut back = vec![0u8; data.len()];
        dev.file().read_exact_at(&mut back, 0).ctx("read")?;
        ensure!(back == data, "data differs on a debug cache");
        let want = crate::uapi::cache_flags::POISON | crate::uapi::cache_flags::RED_ZONE;
        let caches = dev.caches().ctx("CACHE_INFO")?;
        let c = caches
            .iter()
            .find(|c| c.objsize == 4000)
            .ok_or("no cache for the 4000-byte quantum")?;
        ensure_eq!(c.flags & want, want, "the quantum cache is a debug cache");
        ensure!(
            caches
                .iter()
                .all(|c| c.poison_errors == 0 && c.redzone_errors == 0),
            "errors found"
        );
        Ok(())
    })();
    let (ok, out) = sh("ldd_alloc_unload && ldd_alloc_load")?;
    ensure!(ok, "reload: {out}");
    result?;
    Ok(Outcome::Pass)
}

/// The module tests.
pub fn tests() -> Vec<Test> {
    vec![
        Test::new("module/bad_params", bad_params),
        Test::new("module/cache_debug_param", cache_debug_param),
        Test::new("module/busy_while_open", busy_while_open),
        Test::new(
            "module/load_script_without_devtmpfs",
            load_script_without_devtmpfs,
        ),
    ]
}
