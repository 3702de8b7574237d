//! The pressure tool: drives the machine's free memory to a target relative
//! to the zone watermarks of `/proc/zoneinfo` and holds it there, with
//! anonymous memory and page cache on tmpfs, so the memory-pressure lab
//! (`pressure_tour.rs`, `ldd-alloc pressure`, `vmtests/pressure.rs`) can show
//! what the GFP flags do when memory runs short.
//!
//! What it takes it always gives back: the memory is held by child
//! processes ("hogs") that die with their parent (`PR_SET_PDEATHSIG`), so a
//! panic, a signal or a test that returns early frees it all; their page
//! cache is an unlinked tmpfs file (`O_TMPFILE`), freed when the hog dies.
//! A hog is the OOM killer's preferred victim (`oom_score_adj` 1000), and
//! [`protect_from_oom`] marks the caller and init as never to be chosen.
//!
//! Swap is zram (`CONFIG_ZRAM`, lzo), set up by [`ZramSwap`] with busybox's
//! `mkswap` and `swapon`. The hogs write same-filled pages, which zram keeps
//! without storing them (`zram_same_page_write`): swapping out costs CPU
//! time, not memory, so a hog can be pushed out to swap for as long as the
//! swap device has room.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

/// Bytes of a page (x86-64).
pub const PAGE: usize = 4096;

/// One zone of `/proc/zoneinfo`, in pages.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Zone {
    /// DMA, DMA32, Normal, Movable, Device.
    pub name: String,
    /// `pages free`.
    pub free: u64,
    /// The min watermark: below it only `__GFP_HIGH`/`__GFP_MEMALLOC` allocate.
    pub min: u64,
    /// The low watermark: below it kswapd is woken.
    pub low: u64,
    /// The high watermark: kswapd reclaims until free is above it.
    pub high: u64,
    /// Pages the buddy allocator manages.
    pub managed: u64,
}

/// Every populated zone of node 0.
pub fn zones() -> Result<Vec<Zone>, String> {
    let text = fs::read_to_string("/proc/zoneinfo").map_err(|e| format!("/proc/zoneinfo: {e}"))?;
    Ok(parse_zoneinfo(&text))
}

/// Parses `/proc/zoneinfo` (node 0's zones with pages).
pub fn parse_zoneinfo(text: &str) -> Vec<Zone> {
    let mut out: Vec<Zone> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("Node 0, zone") {
            out.push(Zone {
                name: rest.trim().to_string(),
                ..Default::default()
            });
            continue;
        }
        let Some(z) = out.last_mut() else { continue };
        let mut words = t.split_whitespace();
        let (Some(k), Some(v)) = (words.next(), words.next()) else {
            continue;
        };
        let (k, v) = if k == "pages" && v == "free" {
            ("free", words.next().unwrap_or("0"))
        } else {
            (k, v)
        };
        let Ok(v) = v.parse::<u64>() else { continue };
        match k {
            "free" => z.free = v,
            "min" if z.min == 0 => z.min = v,
            "low" if z.low == 0 => z.low = v,
            "high" if z.high == 0 => z.high = v,
            "managed" => z.managed = v,
            _ => {}
        }
    }
    out.retain(|z| z.managed > 0);
    out
}

/// The zone GFP_KERNEL allocations come from first: the one with most pages
/// (DMA32 in a guest below 4 GiB, Normal above).
pub fn main_zone() -> Result<Zone, String> {
    zones()?
        .into_iter()
        .max_by_key(|z| z.managed)
        .ok_or_else(|| "no populated zone in /proc/zoneinfo".to_string())
}

/// Every zone added up (name "all zones"): what a GFP_KERNEL allocation can
/// reach, since it falls back from DMA32 to DMA. The pressure tool works
/// with this one; the claims with [`main_zone`].
pub fn all_zones() -> Result<Zone, String> {
    let z = zones()?;
    Ok(Zone {
        name: "all zones".into(),
        free: z.iter().map(|z| z.free).sum(),
        min: z.iter().map(|z| z.min).sum(),
        low: z.iter().map(|z| z.low).sum(),
        high: z.iter().map(|z| z.high).sum(),
        managed: z.iter().map(|z| z.managed).sum(),
    })
}

/// A snapshot of `/proc/vmstat`.
#[derive(Clone, Debug, Default)]
pub struct VmStat(pub BTreeMap<String, u64>);

impl VmStat {
    /// Reads `/proc/vmstat`.
    pub fn now() -> Result<Self, String> {
        let text = fs::read_to_string("/proc/vmstat").map_err(|e| format!("/proc/vmstat: {e}"))?;
        Ok(Self(
            text.lines()
                .filter_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    Some((k.to_string(), v.trim().parse().ok()?))
                })
                .collect(),
        ))
    }

    /// One counter (0 if this kernel has no such counter).
    pub fn get(&self, key: &str) -> u64 {
        self.0.get(key).copied().unwrap_or(0)
    }

    /// The sum of the counters whose names start with `prefix`
    /// (`allocstall_` sums the per-zone allocstall counters).
    pub fn sum(&self, prefix: &str) -> u64 {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    }

    /// What rose since `before`: counter → increase (only those that rose).
    pub fn delta(&self, before: &VmStat) -> Delta {
        Delta(
            self.0
                .iter()
                .filter_map(|(k, v)| {
                    let d = v.saturating_sub(before.get(k));
                    (d > 0).then(|| (k.clone(), d))
                })
                .collect(),
        )
    }
}

/// The rise of `/proc/vmstat` counters over a step.
#[derive(Clone, Debug, Default)]
pub struct Delta(pub BTreeMap<String, u64>);

/// The counters a pressure step reports.
pub const WATCHED: [&str; 12] = [
    "allocstall_",
    "pgscan_direct",
    "pgsteal_direct",
    "pgscan_kswapd",
    "pgsteal_kswapd",
    "pswpout",
    "pswpin",
    "compact_stall",
    "compact_success",
    "compact_fail",
    "oom_kill",
    "slabs_scanned",
];

impl Delta {
    /// One counter's rise, or the sum of a prefix's (`allocstall_`).
    pub fn get(&self, key: &str) -> u64 {
        if key.ends_with('_') {
            self.0
                .iter()
                .filter(|(k, _)| k.starts_with(key))
                .map(|(_, v)| v)
                .sum()
        } else {
            self.0.get(key).copied().unwrap_or(0)
        }
    }

    /// The watched counters that rose, as `name +N` (empty: "nothing").
    pub fn show(&self) -> String {
        let mut s = String::new();
        for k in WATCHED {
            let d = self.get(k);
            if d > 0 {
                let name = k.trim_end_matches('_');
                let _ = write!(s, "{}{name} +{d}", if s.is_empty() { "" } else { ", " });
            }
        }
        if s.is_empty() {
            s.push_str("no reclaim counter moved");
        }
        s
    }
}

/// `/proc/buddyinfo`'s line of a zone: free blocks per order.
pub fn buddyinfo(zone: &str) -> Result<Vec<u64>, String> {
    let text =
        fs::read_to_string("/proc/buddyinfo").map_err(|e| format!("/proc/buddyinfo: {e}"))?;
    for line in text.lines() {
        let mut w = line.split_whitespace();
        // "Node 0, zone   DMA32   12 4 ..."
        let head: Vec<&str> = w.by_ref().take(4).collect();
        if head.len() == 4 && head[3] == zone {
            return Ok(w.filter_map(|n| n.parse().ok()).collect());
        }
    }
    Err(format!("no zone {zone} in /proc/buddyinfo"))
}

/// The KiB of a `Key:   N kB` line of the proc file at `path`.
fn kib_line(path: &str, key: &str) -> Result<u64, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .ok_or_else(|| format!("no {key} in {path}"))
}

/// A `MemTotal`/`SwapFree`-style line of `/proc/meminfo`, in KiB.
pub fn meminfo_kib(key: &str) -> Result<u64, String> {
    kib_line("/proc/meminfo", key)
}

/// A `VmLck`/`VmRSS`-style line of `/proc/self/status`, in KiB.
pub fn status_kib(key: &str) -> Result<u64, String> {
    kib_line("/proc/self/status", key)
}

/// Marks the calling process and init as never to be chosen by the OOM
/// killer (`oom_score_adj` -1000): under real exhaustion it must kill a hog
/// (1000), never the test or the machine's init.
pub fn protect_from_oom() -> Result<(), String> {
    for p in ["/proc/self/oom_score_adj", "/proc/1/oom_score_adj"] {
        fs::write(p, "-1000").map_err(|e| format!("{p}: {e}"))?;
    }
    Ok(())
}

/// Swap on zram0, set up by the guest itself; swapped off and reset on drop.
pub struct ZramSwap {
    ours: bool,
}

impl ZramSwap {
    /// Swap of `mib` MiB on /dev/zram0 (reused if already on).
    pub fn on(mib: u64) -> Result<Self, String> {
        if swap_active()? {
            return Ok(Self { ours: false });
        }
        let sys = "/sys/block/zram0";
        if !std::path::Path::new(sys).exists() {
            return Err("no /dev/zram0 (CONFIG_ZRAM is not in this kernel)".into());
        }
        // A device left set up by an earlier run must be reset first.
        let _ = fs::write(format!("{sys}/reset"), "1");
        fs::write(format!("{sys}/disksize"), format!("{mib}M"))
            .map_err(|e| format!("{sys}/disksize: {e}"))?;
        for (cmd, args) in [("mkswap", ["/dev/zram0"]), ("swapon", ["/dev/zram0"])] {
            let out = Command::new(cmd)
                .args(args)
                .output()
                .map_err(|e| format!("{cmd}: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "{cmd} /dev/zram0: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(Self { ours: true })
    }
}

impl Drop for ZramSwap {
    fn drop(&mut self) {
        if self.ours {
            let _ = Command::new("swapoff").arg("/dev/zram0").output();
            let _ = fs::write("/sys/block/zram0/reset", "1");
        }
    }
}

/// Whether any swap is on (`/proc/swaps` has a device line).
pub fn swap_active() -> Result<bool, String> {
    let text = fs::read_to_string("/proc/swaps").map_err(|e| format!("/proc/swaps: {e}"))?;
    Ok(text.lines().skip(1).any(|l| !l.trim().is_empty()))
}

/// Turns every swap device off (the OOM claim needs memory that cannot go
/// anywhere).
pub fn swap_off_all() -> Result<(), String> {
    let text = fs::read_to_string("/proc/swaps").map_err(|e| format!("/proc/swaps: {e}"))?;
    for dev in text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
    {
        let out = Command::new("swapoff")
            .arg(dev)
            .output()
            .map_err(|e| format!("swapoff: {e}"))?;
        if !out.status.success() {
            return Err(format!("swapoff {dev} failed"));
        }
    }
    Ok(())
}

/// What a hog does.
#[derive(Clone, Copy, Debug)]
pub struct HogSpec {
    /// Grow until the main zone's free pages are at most this.
    pub target_free: u64,
    /// Keep growing whenever reclaim brings free memory back above the
    /// target (otherwise: stop growing once there).
    pub hold: bool,
    /// Most anonymous memory to take, in MiB.
    pub max_mib: u64,
    /// Page cache to hold first, in an unlinked tmpfs file, in MiB.
    pub cache_mib: u64,
    /// Pages touched between two looks at `/proc/zoneinfo`.
    pub step_pages: usize,
    /// Count free pages in every zone ([`all_zones`]), not the main one.
    pub all_zones: bool,
}

/// A child process holding memory; killed (and reaped) when dropped.
pub struct Hog {
    pid: libc::pid_t,
    ready: Option<OwnedFd>,
}

/// What a hog reports when it stops growing: `T` it reached the target,
/// `M` it reached its maximum first.
const REACHED: u8 = b'T';
const MAXED: u8 = b'M';

impl Hog {
    /// Starts a hog; returns at once (see [`Hog::wait_ready`]).
    pub fn spawn(spec: HogSpec) -> Result<Self, String> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe() writes.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(format!("pipe: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: Both are fresh descriptors we own.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: fork() in a process whose other threads (if any) hold no
        // lock the child needs: the child only makes system calls, reads
        // /proc and exits with _exit.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("fork: {}", std::io::Error::last_os_error()));
        }
        if pid == 0 {
            drop(rd);
            exec_hog(spec, parent, wr);
        }
        drop(wr);
        Ok(Self {
            pid,
            ready: Some(rd),
        })
    }

    /// The hog's pid.
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// Waits until the hog has reached its target (true) or its maximum
    /// (false); an error if it died or took longer than `timeout`.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<bool, String> {
        let fd = self.ready.as_ref().ok_or("the hog already reported")?;
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: One valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, ms) };
        if n <= 0 {
            return Err(format!("the hog did not reach its target in {timeout:?}"));
        }
        let mut b = [0u8; 1];
        // SAFETY: Reads one byte into `b`.
        let got = unsafe { libc::read(fd.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
        match (got, b[0]) {
            (1, REACHED) => Ok(true),
            (1, MAXED) => Ok(false),
            _ => {
                self.ready = None;
                Err("the hog died before reaching its target".into())
            }
        }
    }

    /// Stops the hog (SIGSTOP): it holds what it has and takes no more.
    pub fn stop(&self) {
        // SAFETY: Signals our own child.
        unsafe { libc::kill(self.pid, libc::SIGSTOP) };
    }

    /// Lets a stopped hog run again.
    pub fn cont(&self) {
        // SAFETY: Signals our own child.
        unsafe { libc::kill(self.pid, libc::SIGCONT) };
    }

    /// Whether the hog was killed by SIGKILL (the OOM killer's signal),
    /// waiting up to `timeout` for it to die; false if it still runs.
    pub fn killed_within(&mut self, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            let mut status = 0;
            // SAFETY: Reaps our own child, without blocking.
            let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if r == self.pid {
                self.pid = 0;
                return libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL;
            }
            if r < 0 || start.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the hog is alive (not yet reaped and not a zombie).
    pub fn alive(&self) -> bool {
        if self.pid == 0 {
            return false;
        }
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        // "pid (comm) S ...": the state after the last ')'.
        stat.rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().next())
            .is_some_and(|s| s != "Z" && s != "X")
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        if self.pid > 0 {
            // SAFETY: Kills and reaps our own child.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// Name of the environment variable that turns this program into a hog
/// ([`hog_entry`]).
const HOG_ENV: &str = "LDD_ALLOC_HOG";

/// In the child after fork(): becomes a fresh image of this program in hog
/// mode. A forked child shares every page of its parent copy-on-write, so
/// each write of the parent would be an allocation of its own, and with
/// memory exhausted a page fault that calls the OOM killer; a new image
/// shares nothing. Falls back to being the hog in place.
fn exec_hog(spec: HogSpec, parent: libc::pid_t, report: OwnedFd) -> ! {
    let fd = report.as_raw_fd();
    let value = format!(
        "{} {} {} {} {} {} {fd} {parent}",
        spec.target_free,
        u8::from(spec.hold),
        spec.max_mib,
        spec.cache_mib,
        spec.step_pages,
        u8::from(spec.all_zones)
    );
    if let (Ok(k), Ok(v)) = (
        std::ffi::CString::new(HOG_ENV),
        std::ffi::CString::new(value),
    ) {
        let argv = [c"ldd-alloc-hog".as_ptr(), std::ptr::null()];
        // SAFETY: NUL-terminated strings and a NULL-terminated argv; the
        // descriptor `fd` is inherited (pipe() sets no close-on-exec).
        unsafe {
            libc::setenv(k.as_ptr(), v.as_ptr(), 1);
            libc::execv(c"/proc/self/exe".as_ptr(), argv.as_ptr());
        }
    }
    hog_main(spec, parent, report)
}

/// Called first by the programs of this crate: when started as a hog by
/// [`Hog::spawn`], runs the hog and never returns; otherwise does nothing.
pub fn hog_entry() {
    let Ok(v) = std::env::var(HOG_ENV) else {
        return;
    };
    let n: Vec<u64> = v.split(' ').filter_map(|w| w.parse().ok()).collect();
    if n.len() != 8 {
        std::process::exit(3);
    }
    let spec = HogSpec {
        target_free: n[0],
        hold: n[1] != 0,
        max_mib: n[2],
        cache_mib: n[3],
        step_pages: n[4] as usize,
        all_zones: n[5] != 0,
    };
    // SAFETY: The descriptor the parent's pipe left open for us.
    let report = unsafe { OwnedFd::from_raw_fd(n[6] as i32) };
    hog_main(spec, n[7] as libc::pid_t, report)
}

/// The hog's life: never returns.
fn hog_main(spec: HogSpec, parent: libc::pid_t, report: OwnedFd) -> ! {
    // SAFETY: prctl(PR_SET_PDEATHSIG) with a signal number; getppid() reads.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::getppid() != parent {
            libc::_exit(1);
        }
    }
    let _ = fs::write("/proc/self/oom_score_adj", "1000");
    let mut out = fs::File::from(report);
    let say = |out: &mut fs::File, b: u8| {
        let _ = out.write_all(&[b]);
    };
    let free = || {
        if spec.all_zones {
            all_zones()
        } else {
            main_zone()
        }
        .map(|z| z.free)
        .unwrap_or(0)
    };
    if spec.cache_mib > 0 {
        // Page cache: an unlinked tmpfs file, gone with this process.
        // SAFETY: A NUL-terminated path and valid flags.
        let fd = unsafe {
            libc::open(
                c"/tmp".as_ptr(),
                libc::O_TMPFILE | libc::O_RDWR,
                0o600 as libc::c_uint,
            )
        };
        if fd >= 0 {
            let buf = vec![0x3cu8; 1 << 20];
            for _ in 0..spec.cache_mib {
                // SAFETY: `buf` is valid for its length.
                if unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) } <= 0 {
                    break;
                }
            }
        }
    }
    let len = (spec.max_mib as usize) << 20;
    // SAFETY: An anonymous private mapping; MAP_NORESERVE: only what is
    // touched counts.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        // SAFETY: Leaves the child.
        unsafe { libc::_exit(2) };
    }
    let base = base.cast::<u8>();
    let pages = len / PAGE;
    let step = spec.step_pages.max(1);
    let mut touched = 0;
    let mut reported = false;
    loop {
        // Without `hold`, a hog that reached its target never grows again.
        let f = if touched < pages && (spec.hold || !reported) {
            free()
        } else {
            0
        };
        if f > spec.target_free {
            // Never more than half the way to the target in one step: the
            // low and min watermarks are only ~200 pages apart in a small
            // guest, and overshooting below min without swap is an OOM kill.
            let n = (((f - spec.target_free) / 2) as usize).clamp(16, step);
            let end = (touched + n).min(pages);
            for i in touched..end {
                // SAFETY: Page `i` lies inside the mapping. Same-filled
                // pages: zram stores them without memory.
                unsafe { std::ptr::write_bytes(base.add(i * PAGE), 0x5a, PAGE) };
            }
            touched = end;
            continue;
        }
        if !reported {
            say(&mut out, if touched < pages { REACHED } else { MAXED });
            reported = true;
        }
        if !spec.hold || touched >= pages {
            // SAFETY: Waits for a signal (the parent's SIGKILL).
            unsafe { libc::pause() };
            continue;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A hog that takes the machine down to `target_free` pages of the main zone
/// and stops there (not holding): the usual start of a claim.
pub fn fill_to(target_free: u64, hold: bool) -> Result<Hog, String> {
    let total = meminfo_kib("MemTotal")? >> 10;
    let swap = meminfo_kib("SwapTotal")? >> 10;
    let mut hog = Hog::spawn(HogSpec {
        target_free,
        hold,
        // With swap the hog may go on past RAM (its same-filled pages cost
        // zram nothing); never past RAM plus swap.
        max_mib: total + swap / 2,
        cache_mib: 0,
        step_pages: 256,
        all_zones: false,
    })?;
    // With swap, kswapd may keep free memory above the target (the watermarks
    // are boosted after fragmentation events) while the hog's pages go out
    // to zram as fast as it touches them: at its maximum it has pushed
    // memory as hard as it can, which is what the claims need.
    // Minutes on the debug kernel (KASAN) of a loaded host, seconds on the
    // pinned one.
    if !hog.wait_ready(Duration::from_secs(600))? && swap == 0 {
        return Err(format!(
            "the hog took its maximum ({} MiB) before free memory fell to {target_free} pages",
            total + swap / 2
        ));
    }
    Ok(hog)
}

/// Waits until kswapd has stopped working (`pgscan_kswapd` unchanged for
/// 300 ms, at most `timeout`): after a hog stops, reclaim settles with free
/// memory above the high watermark.
pub fn settle(timeout: Duration) -> Result<(), String> {
    let start = Instant::now();
    let mut last = VmStat::now()?.get("pgscan_kswapd");
    let mut quiet_since = Instant::now();
    while start.elapsed() < timeout {
        std::thread::sleep(Duration::from_millis(50));
        let now = VmStat::now()?.get("pgscan_kswapd");
        if now != last {
            last = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() > Duration::from_millis(300) {
            return Ok(());
        }
    }
    Ok(())
}

/// The watermarks and free pages of a zone, as one line.
pub fn show_zone(z: &Zone) -> String {
    format!(
        "{}: free {} pages (min {}, low {}, high {})",
        z.name, z.free, z.min, z.low, z.high
    )
}

/// Writes `line` to the kernel log (`/dev/kmsg`): the fences of
/// `scripts/check-kernel-log.sh` are such lines.
pub fn kmsg(line: &str) -> Result<(), String> {
    fs::OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| format!("/dev/kmsg: {e}"))
}

/// A fenced region of the kernel log: an expected report of `kind`
/// (`oom-kill`, `alloc-failure`) may appear until the fence is dropped.
pub struct Fence {
    kind: &'static str,
}

impl Fence {
    /// Opens the fence.
    pub fn begin(kind: &'static str) -> Result<Self, String> {
        kmsg(&format!("ldd-alloc-test: expect begin {kind}"))?;
        Ok(Self { kind })
    }
}

impl Drop for Fence {
    fn drop(&mut self) {
        let _ = kmsg(&format!("ldd-alloc-test: expect end {}", self.kind));
    }
}

/// The kernel log lines printed since `skip` records (read from
/// `/dev/kmsg`, without blocking): `(records seen, texts)`.
pub fn kernel_log_since(skip: usize) -> Result<(usize, Vec<String>), String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
        .map_err(|e| format!("/dev/kmsg: {e}"))?;
    let mut n = 0;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(len) => {
                n += 1;
                if n > skip {
                    let rec = String::from_utf8_lossy(&buf[..len]);
                    // "level,seq,time,flags;text\n"
                    if let Some((_, text)) = rec.split_once(';') {
                        out.push(text.lines().next().unwrap_or("").to_string());
                    }
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(_) => break,
        }
    }
    Ok((n, out))
}

/// How long ago the kernel last logged a line containing `needle` (from
/// the records' timestamps in `/dev/kmsg` against CLOCK_MONOTONIC, which
/// printk's clock follows closely); None if never.
pub fn since_last_log(needle: &str) -> Result<Option<Duration>, String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
        .map_err(|e| format!("/dev/kmsg: {e}"))?;
    let mut last = None;
    let mut buf = vec![0u8; 8192];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(len) => {
                let rec = String::from_utf8_lossy(&buf[..len]);
                if let Some((head, text)) = rec.split_once(';') {
                    if text.contains(needle) {
                        last = head.split(',').nth(2).and_then(|u| u.parse::<u64>().ok());
                    }
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(_) => break,
        }
    }
    let now_ns = crate::tsc::clock_ns(libc::CLOCK_MONOTONIC).ok_or("clock_gettime failed")?;
    let now = (now_ns / 1000) as u64;
    Ok(last.map(|u| Duration::from_micros(now.saturating_sub(u))))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONEINFO: &str = "Node 0, zone      DMA
  per-node stats
      nr_inactive_anon 10
  pages free     3840
        boost    0
        min      21
        low      26
        high     31
        spanned  4095
        present  3998
        managed  3840
        protection: (0, 680, 680, 680)
Node 0, zone    DMA32
  pages free     150000
        boost    0
        min      3900
        low      4875
        high     5850
        spanned  192512
        present  192512
        managed  174000
Node 0, zone   Normal
  pages free     0
        min      0
        low      0
        high     0
        managed  0
";

    #[test]
    fn zoneinfo_parses_populated_zones() {
        let z = parse_zoneinfo(ZONEINFO);
        assert_eq!(z.len(), 2);
        assert_eq!(
            z[1],
            Zone {
                name: "DMA32".into(),
                free: 150000,
                min: 3900,
                low: 4875,
                high: 5850,
                managed: 174000
            }
        );
        assert_eq!(z[0].free, 3840);
    }

    #[test]
    fn delta_sums_prefixes_and_names_risen_counters() {
        let mut a = VmStat::default();
        a.0.insert("allocstall_dma32".into(), 5);
        a.0.insert("pswpout".into(), 7);
        let mut b = a.clone();
        b.0.insert("allocstall_dma32".into(), 8);
        b.0.insert("allocstall_normal".into(), 1);
        let d = b.delta(&a);
        assert_eq!(d.get("allocstall_"), 4);
        assert_eq!(d.get("pswpout"), 0);
        assert_eq!(d.show(), "allocstall +4");
    }
}

/// Arguments of `ldd-alloc pressure`.
#[derive(clap::Args, Debug)]
pub struct PressureArgs {
    /// Where to drive free pages (all zones together): `high`, `low` or
    /// `min` (the sums of the zones' watermarks), or a number of pages.
    #[arg(long, default_value = "low")]
    pub target: String,
    /// Seconds to hold free memory there.
    #[arg(long, default_value_t = 5)]
    pub hold: u64,
    /// Swap on zram of this many MiB first (0: none).
    #[arg(long, default_value_t = 1024)]
    pub swap_mib: u64,
    /// Page cache to hold on tmpfs, in MiB.
    #[arg(long, default_value_t = 0)]
    pub cache_mib: u64,
    /// Also sample GFP_KERNEL and GFP_ATOMIC allocation latency against
    /// free pages and the watermarks, and write an SVG plot here.
    #[arg(long)]
    pub plot: Option<String>,
}

/// One sample of the plot.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// Seconds since the start.
    pub t: f64,
    /// Free pages of all zones.
    pub free: u64,
    /// Its watermarks.
    pub min: u64,
    /// Low watermark.
    pub low: u64,
    /// High watermark.
    pub high: u64,
    /// Latency of one order-0 GFP_KERNEL allocation, ns (None: it failed).
    pub kernel_ns: Option<u64>,
    /// Latency of one order-0 GFP_ATOMIC allocation in atomic context.
    pub atomic_ns: Option<u64>,
}

fn target_pages(spec: &str, z: &Zone) -> Result<u64, String> {
    Ok(match spec {
        "high" => z.high,
        "low" => z.low,
        "min" => z.min,
        n => n
            .parse()
            .map_err(|_| format!("--target {n}: high, low, min or a number of pages"))?,
    })
}

fn step(name: &str, t0: &VmStat) -> Result<VmStat, String> {
    let now = VmStat::now()?;
    println!(
        "{name:<8} {}; vmstat: {}",
        show_zone(&all_zones()?),
        now.delta(t0).show()
    );
    Ok(now)
}

/// One order-0 allocation by the lab, freed at once: its latency.
fn probe(dev: &crate::device::Device, atomic: bool) -> Option<u64> {
    use crate::uapi::{self, alloc_flags, context, gfp, lab_backend as lb};
    let (flags, ctx) = if atomic {
        (gfp::ATOMIC, context::ATOMIC)
    } else {
        (gfp::KERNEL, context::PROCESS)
    };
    dev.alloc(uapi::AllocRequest {
        backend: lb::ALLOC_PAGES,
        context: ctx,
        gfp: flags,
        count: 1,
        flags: alloc_flags::FREE_NOW,
        ..Default::default()
    })
    .ok()?
    .first()
    .map(|r| r.latency_ns)
}

/// `ldd-alloc pressure`: fill, hold, release, each step's vmstat deltas.
pub fn run_tool(dev_index: u32, args: &PressureArgs) -> Result<(), String> {
    let z = all_zones()?;
    let target = target_pages(&args.target, &z)?;
    println!("start    {}", show_zone(&z));
    let _swap = if args.swap_mib > 0 {
        let s = ZramSwap::on(args.swap_mib)?;
        println!("swap     zram0, {} MiB (lzo)", args.swap_mib);
        Some(s)
    } else {
        None
    };
    protect_from_oom()?;
    let dev = if args.plot.is_some() {
        Some(
            crate::device::Device::open_index(dev_index)
                .map_err(|e| format!("/dev/ldd_alloc{dev_index}: {e}"))?,
        )
    } else {
        None
    };
    let total = meminfo_kib("MemTotal")? >> 10;
    let swap = meminfo_kib("SwapTotal")? >> 10;
    let t0 = VmStat::now()?;
    let start = Instant::now();
    let mut hog = Hog::spawn(HogSpec {
        target_free: target,
        hold: true,
        max_mib: total + swap / 2,
        cache_mib: args.cache_mib,
        step_pages: 256,
        all_zones: true,
    })?;
    let mut samples = Vec::new();
    let sample = |samples: &mut Vec<Sample>| -> Result<(), String> {
        if let Some(dev) = &dev {
            let z = all_zones()?;
            samples.push(Sample {
                t: start.elapsed().as_secs_f64(),
                free: z.free,
                min: z.min,
                low: z.low,
                high: z.high,
                kernel_ns: probe(dev, false),
                atomic_ns: probe(dev, true),
            });
        }
        Ok(())
    };
    // Fill: wait for the hog, sampling meanwhile.
    loop {
        sample(&mut samples)?;
        match hog.wait_ready(Duration::from_millis(100)) {
            Ok(true) => break,
            Ok(false) => {
                println!("fill     the hog took its maximum before reaching {target} pages");
                break;
            }
            Err(e) if e.contains("did not reach") => {
                // Not yet: poll again (wait_ready consumed nothing).
                if start.elapsed() > Duration::from_secs(300) {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
    let t1 = step("fill", &t0)?;
    let hold_end = Instant::now() + Duration::from_secs(args.hold);
    while Instant::now() < hold_end {
        sample(&mut samples)?;
        std::thread::sleep(Duration::from_millis(100));
    }
    let t2 = step("hold", &t1)?;
    drop(hog);
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..5 {
        sample(&mut samples)?;
        std::thread::sleep(Duration::from_millis(100));
    }
    step("release", &t2)?;
    println!("total    vmstat: {}", VmStat::now()?.delta(&t0).show());
    if let Some(path) = &args.plot {
        fs::write(path, svg(&samples)).map_err(|e| format!("{path}: {e}"))?;
        println!("plot     {path} ({} samples)", samples.len());
    }
    Ok(())
}

/// A line of the plot: name, value, colour.
type Series = (&'static str, fn(&Sample) -> u64, &'static str);

/// The samples as an SVG: free pages and the three watermarks over time
/// (left axis, linear), GFP_KERNEL and GFP_ATOMIC latency (right axis,
/// log10), failures as crosses at the top. In the style of bench.rs's plot.
pub fn svg(samples: &[Sample]) -> String {
    let (w, h, l, r, top, bot) = (820.0, 460.0, 80.0, 90.0, 40.0, 50.0);
    let tmax = samples.iter().map(|s| s.t).fold(1.0f64, f64::max);
    let pmax = samples.iter().map(|s| s.free.max(s.high)).fold(1, u64::max) as f64 * 1.05;
    let lat: Vec<u64> = samples
        .iter()
        .flat_map(|s| [s.kernel_ns, s.atomic_ns])
        .flatten()
        .collect();
    let lmin = (lat.iter().copied().min().unwrap_or(100).max(1) as f64)
        .log10()
        .floor();
    let lmax = (lat.iter().copied().max().unwrap_or(1000).max(10) as f64)
        .log10()
        .ceil()
        .max(lmin + 1.0);
    let x = |t: f64| l + t / tmax * (w - l - r);
    let yp = |p: f64| top + (1.0 - p / pmax) * (h - top - bot);
    let yl = |ns: u64| {
        let f = ((ns.max(1) as f64).log10() - lmin) / (lmax - lmin);
        top + (1.0 - f) * (h - top - bot)
    };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{l}\" y=\"20\" font-size=\"14\">ldd-alloc pressure: order-0 allocation latency against free pages and the watermarks (all zones)</text>\n\
         <line x1=\"{l}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{l}\" y1=\"{top}\" x2=\"{l}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{}\" y1=\"{top}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n",
        h - bot, w - r, h - bot, h - bot, w - r, w - r, h - bot
    );
    for i in 0..=5 {
        let p = pmax * i as f64 / 5.0;
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.0}</text>",
            l - 6.0,
            yp(p) + 4.0,
            p
        );
    }
    for e in lmin as i32..=lmax as i32 {
        let ns = 10u64.pow(e.max(0) as u32);
        let label = if ns >= 1_000_000 {
            format!("{} ms", ns / 1_000_000)
        } else if ns >= 1000 {
            format!("{} µs", ns / 1000)
        } else {
            format!("{ns} ns")
        };
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\">{label}</text>",
            w - r + 6.0,
            yl(ns) + 4.0
        );
    }
    for i in 0..=5 {
        let t = tmax * i as f64 / 5.0;
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{t:.1} s</text>",
            x(t),
            h - bot + 18.0
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"20\" y=\"{}\" transform=\"rotate(-90 20 {})\" text-anchor=\"middle\">free pages (all zones)</text>",
        (top + h - bot) / 2.0,
        (top + h - bot) / 2.0
    );
    let series: [Series; 4] = [
        ("free", |s| s.free, "#000000"),
        ("high", |s| s.high, "#2ca02c"),
        ("low", |s| s.low, "#ff7f0e"),
        ("min", |s| s.min, "#d62728"),
    ];
    for (i, (name, f, color)) in series.iter().enumerate() {
        let pts: Vec<String> = samples
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.t), yp(f(p) as f64)))
            .collect();
        let dash = if i == 0 {
            ""
        } else {
            " stroke-dasharray=\"6 3\""
        };
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\"{dash} points=\"{}\"/>",
            pts.join(" ")
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" fill=\"{color}\">{name}</text>",
            l + 10.0 + 60.0 * i as f64,
            h - 8.0
        );
    }
    for (i, (name, f, color)) in [
        (
            "GFP_KERNEL",
            (|s: &Sample| s.kernel_ns) as fn(&Sample) -> Option<u64>,
            "#1f77b4",
        ),
        ("GFP_ATOMIC", |s: &Sample| s.atomic_ns, "#9467bd"),
    ]
    .iter()
    .enumerate()
    {
        for p in samples {
            match f(p) {
                Some(ns) => {
                    let _ = writeln!(
                        s,
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{color}\"/>",
                        x(p.t),
                        yl(ns)
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        "<text x=\"{:.1}\" y=\"{}\" fill=\"{color}\" text-anchor=\"middle\">×</text>",
                        x(p.t),
                        top + 10.0
                    );
                }
            }
        }
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" fill=\"{color}\">● {name} latency (right axis; × failed)</text>",
            l + 300.0 + 260.0 * i as f64,
            h - 8.0
        );
    }
    s.push_str("</svg>\n");
    s
}
