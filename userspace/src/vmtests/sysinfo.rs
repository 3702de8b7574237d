//! The kernel's own view of memory, read from /proc and debugfs, so tests can
//! check what the module reports against figures it does not compute.

use std::process::Command;

use crate::tap::Context;

/// A `/proc/meminfo` field in KiB.
pub fn meminfo_kib(key: &str) -> Result<u64, String> {
    let text = std::fs::read_to_string("/proc/meminfo").ctx("/proc/meminfo")?;
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k == key).then(|| v.split_whitespace().next()?.parse().ok())?
        })
        .ok_or_else(|| format!("no {key} in /proc/meminfo"))
}

/// A `/proc/vmstat` counter.
pub fn vmstat(key: &str) -> Result<i64, String> {
    let text = std::fs::read_to_string("/proc/vmstat").ctx("/proc/vmstat")?;
    text.lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == key).then(|| w.next()?.parse().ok())?
        })
        .ok_or_else(|| format!("no {key} in /proc/vmstat"))
}

/// Free pages as the page allocator holds them: the buddy lists (each
/// zone's `pages free`, which sum to `nr_free_pages`) plus every per-CPU
/// page list (the `count:` of each pageset), from /proc/zoneinfo with the
/// per-CPU vmstat differences folded in first ([`crate::tour::free_pages`],
/// which the tour and the mmap tests read too). Freed order-0 pages go to
/// the per-CPU lists first, which may hold tens of thousands of pages
/// (high_max 47684 measured in the VM), so nr_free_pages alone can stay
/// 10^4 pages low after memory is given back; the sum comes back within a
/// few hundred pages (measured: within 100 after 32 MiB on each backend).
pub fn free_pages() -> Result<i64, String> {
    crate::tour::free_pages()
        .map(|n| n as i64)
        .ok_or_else(|| "/proc/zoneinfo: no free page counts".to_string())
}

/// [`free_pages`] once it has settled: two readings 100 ms apart within 32
/// pages of each other (at most 3 s). The kernel gives memory back late at
/// times (RCU-deferred frees of an earlier test, vmstat's per-CPU drift
/// folded in each second): a measurement of one test's pages should not
/// include them.
pub fn settled_free_pages() -> Result<i64, String> {
    let mut last = free_pages()?;
    for _ in 0..30 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let now = free_pages()?;
        if (now - last).abs() <= 32 {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

/// One zone of `/proc/zoneinfo`: its name and page frame range.
#[derive(Debug, Clone)]
pub struct Zone {
    /// `DMA`, `DMA32`, `Normal`, `Movable`.
    pub name: String,
    /// First page frame number.
    pub start_pfn: u64,
    /// Page frames spanned (holes included).
    pub spanned: u64,
    /// Page frames present.
    pub present: u64,
}

impl Zone {
    /// Whether physical address `phys` lies in this zone's span.
    pub fn holds(&self, phys: u64) -> bool {
        let pfn = phys >> 12;
        self.spanned > 0 && pfn >= self.start_pfn && pfn < self.start_pfn + self.spanned
    }
}

/// The zones of node 0.
pub fn zones() -> Result<Vec<Zone>, String> {
    let text = std::fs::read_to_string("/proc/zoneinfo").ctx("/proc/zoneinfo")?;
    let mut zones: Vec<Zone> = Vec::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["Node", _, "zone", name] => zones.push(Zone {
                name: (*name).to_string(),
                start_pfn: 0,
                spanned: 0,
                present: 0,
            }),
            ["present", n] => {
                if let Some(z) = zones.last_mut() {
                    z.present = n.parse().ctx("present")?;
                }
            }
            ["spanned", n] => {
                if let Some(z) = zones.last_mut() {
                    z.spanned = n.parse().ctx("spanned")?;
                }
            }
            ["start_pfn:", n] => {
                if let Some(z) = zones.last_mut() {
                    z.start_pfn = n.parse().ctx("start_pfn")?;
                }
            }
            _ => {}
        }
    }
    if zones.is_empty() {
        return Err("no zones in /proc/zoneinfo".into());
    }
    Ok(zones)
}

/// The zone whose span holds `phys`.
pub fn zone_of(zones: &[Zone], phys: u64) -> Option<&str> {
    zones
        .iter()
        .find(|z| z.holds(phys))
        .map(|z| z.name.as_str())
}

/// `(active_objs, num_objs)` of cache `name` in a slabinfo-format file.
pub fn slabinfo(path: &str, name: &str) -> Result<Option<(u64, u64)>, String> {
    let text = std::fs::read_to_string(path).ctx(path)?;
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.first() == Some(&name) && w.len() > 2 {
            let a = w[1].parse().ctx("active_objs")?;
            let n = w[2].parse().ctx("num_objs")?;
            return Ok(Some((a, n)));
        }
    }
    Ok(None)
}

/// Runs `sh -c cmd`: success and stdout + stderr.
pub fn sh(cmd: &str) -> Result<(bool, String), String> {
    let out = Command::new("sh").arg("-c").arg(cmd).output().ctx(cmd)?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

/// Why the module cannot be reloaded here, if it cannot.
pub fn cannot_reload() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root to reload the module".into());
    }
    match std::env::var("LDD_ALLOC_KO") {
        Ok(p) if std::path::Path::new(&p).exists() => None,
        _ => Some("LDD_ALLOC_KO does not name the module file".into()),
    }
}

/// Reloads the module with `params` (empty: defaults).
pub fn reload(params: &str) -> Result<(), String> {
    let (ok, out) = sh(&format!(
        "(! grep -q '^ldd_alloc ' /proc/modules || ldd_alloc_unload) && ldd_alloc_load {params}"
    ))?;
    if ok {
        Ok(())
    } else {
        let _ = sh("grep -q '^ldd_alloc ' /proc/modules || ldd_alloc_load");
        Err(format!("reload with '{params}': {out}"))
    }
}

/// Lines the kernel log gained since it had `from` lines.
pub fn dmesg_since(from: usize) -> Result<String, String> {
    Ok(sh(&format!("dmesg | tail -n +{}", from + 1))?.1)
}

/// Lines in the kernel log now.
pub fn dmesg_lines() -> Result<usize, String> {
    sh("dmesg | wc -l")?.1.trim().parse().ctx("dmesg | wc -l")
}
