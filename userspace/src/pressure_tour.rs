//! The memory-pressure lab (issue 16): what the GFP flags *do* when memory
//! runs short, each claim of LDD3 and Love shown with live numbers. Both the
//! tour's "[memory pressure]" section and `vmtests/pressure.rs` run these
//! functions: a claim holds only if the robust facts it names were observed
//! (a counter rose, an allocation failed or succeeded, a wide latency ratio).
//!
//! Each claim sets up its own pressure with [`crate::pressure`] (a hog child
//! taking free memory down to a watermark, swap on zram where the claim needs
//! it) and gives it all back before returning. Run them in a small guest
//! (512 MiB - 1 GiB): filling memory costs time in proportion to its size.

use std::os::unix::fs::FileExt;
use std::time::Duration;

use nix::errno::Errno;

use crate::device::Device;
use crate::pressure::{
    self, buddyinfo, fill_to, main_zone, protect_from_oom, settle, show_zone, Fence, Hog, VmStat,
    ZramSwap,
};
use crate::tour::Claim;
use crate::uapi::{self, alloc_flags, context, gfp, lab_backend as lb};

/// The tour's section name.
pub const SECTION: &str = "memory pressure";

/// Swap on zram for the claims that swap, in MiB.
const SWAP_MIB: u64 = 2048;

/// The most handles a claim keeps in one file (the lab's default
/// `lab_max_handles` is 4096).
const MAX_HANDLES: usize = 4000;

/// A claim's result: the claim, or why it could not be set up.
pub type ClaimResult = Result<Claim, String>;

fn claim(text: &str, observed: String, holds: bool) -> Claim {
    Claim {
        section: SECTION,
        claim: text.to_string(),
        observed,
        holds,
    }
}

/// What a sequence of lab allocations did.
#[derive(Default, Debug)]
struct Burst {
    made: usize,
    failed: Option<Errno>,
    median: u64,
    max: u64,
    /// The handles and physical addresses, in order (only with
    /// [`KEEP_HANDLES`] set: copying them out allocates).
    handles: Vec<u32>,
    phys: Vec<u64>,
}

impl Burst {
    fn max_ns(&self) -> u64 {
        self.max
    }

    fn median_ns(&self) -> u64 {
        self.median
    }

    fn show(&self, total: usize) -> String {
        format!(
            "{}/{total} made{}, latency median {} max {}",
            self.made,
            self.failed.map_or(String::new(), |e| format!(" then {e}")),
            us(self.median_ns()),
            us(self.max_ns())
        )
    }
}

fn us(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{:.1} ms", ns as f64 / 1e6)
    } else {
        format!("{:.1} µs", ns as f64 / 1e3)
    }
}

/// Allocations per lab request. The lab's own arrays for a request
/// (`count` replies and handles) are GFP_KERNEL allocations: 32 replies
/// (2 KiB) come from a slab object that each request frees for the next,
/// where 1024 (64 KiB) would need fresh pages, and below the min watermark
/// without swap the OOM killer.
const CHUNK: usize = 32;

/// Most allocations of one burst.
const BURST_MAX: usize = 4096;

/// The buffers of every burst, written once before any pressure ([`open`])
/// and reused: a page fault of this process while memory is exhausted
/// would be an allocation of its own (and, without swap, an OOM kill).
struct Scratch {
    lat: Vec<u64>,
    handles: Vec<u32>,
    phys: Vec<u64>,
    replies: Vec<uapi::AllocReply>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch {
        lat: vec![1; BURST_MAX],
        handles: vec![1; BURST_MAX],
        phys: vec![1; BURST_MAX],
        replies: vec![uapi::AllocReply { handle: 1, ..Default::default() }; CHUNK],
    });
    /// Whether bursts copy their handles out (claim 4 only: not under
    /// exhaustion).
    static KEEP_HANDLES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `total` allocations of `backend` (pages of `order`, or `size` bytes),
/// kept, in requests of at most [`CHUNK`]; stops at the first failure.
#[allow(clippy::too_many_arguments)]
fn burst_of(
    dev: &Device,
    backend: u32,
    flags: u64,
    order: u32,
    size: u64,
    total: usize,
    ctx: u32,
    opts: u32,
) -> Burst {
    let total = total.min(BURST_MAX);
    SCRATCH.with_borrow_mut(|sc| {
        let mut b = Burst::default();
        while b.made < total {
            let count = (total - b.made).min(CHUNK);
            let mut req = uapi::AllocRequest {
                backend,
                context: ctx,
                gfp: flags,
                size,
                order,
                count: count as u32,
                flags: opts,
                replies: sc.replies.as_mut_ptr() as u64,
                ..Default::default()
            };
            match dev.ioctl_inout(uapi::LDD_IOC_ALLOC, &mut req) {
                Ok(n) => {
                    let n = (n as usize).min(count);
                    for (i, r) in sc.replies[..n].iter().enumerate() {
                        sc.lat[b.made + i] = r.latency_ns;
                        sc.handles[b.made + i] = r.handle;
                        sc.phys[b.made + i] = r.phys_lo;
                    }
                    b.made += n;
                    if n < count {
                        b.failed = Some(Errno::ENOMEM);
                        break;
                    }
                }
                Err(e) => {
                    b.failed = Some(e);
                    break;
                }
            }
        }
        if KEEP_HANDLES.get() {
            b.handles = sc.handles[..b.made].to_vec();
            b.phys = sc.phys[..b.made].to_vec();
        }
        let lat = &mut sc.lat[..b.made];
        lat.sort_unstable();
        b.median = lat.get(lat.len() / 2).copied().unwrap_or(0);
        b.max = lat.last().copied().unwrap_or(0);
        b
    })
}

/// `total` page allocations of `order` (alloc_pages).
fn burst(dev: &Device, flags: u64, order: u32, total: usize, ctx: u32, opts: u32) -> Burst {
    burst_of(dev, lb::ALLOC_PAGES, flags, order, 0, total, ctx, opts)
}

/// Grows the lab file's handle table once, while memory is plentiful, so
/// no bookkeeping allocation of the lab happens under pressure.
fn prewarm(dev: &Device) -> Result<(), String> {
    let b = burst(dev, gfp::KERNEL, 0, MAX_HANDLES, context::PROCESS, 0);
    let _ = dev.free_all();
    if b.made < MAX_HANDLES {
        return Err(format!("prewarm: {}", b.show(MAX_HANDLES)));
    }
    Ok(())
}

fn open() -> Result<Device, String> {
    let d = Device::open_index(0).map_err(|e| format!("open /dev/ldd_alloc0: {e}"))?;
    prewarm(&d)?;
    Ok(d)
}

/// A hog that takes free memory to the high watermark (growing again when
/// reclaim frees some), stopped and with reclaim settled: free memory then
/// sits near the high watermark, nothing else allocates, and what reclaim
/// does next is the lab's doing.
fn pressed(hold: bool) -> Result<Hog, String> {
    let z = main_zone()?;
    let hog = fill_to(z.high, hold)?;
    hog.stop();
    settle(Duration::from_secs(10))?;
    Ok(hog)
}

/// Lets a stopped holding hog take free memory down to the high watermark
/// again, then stops it and lets reclaim settle.
fn refill(hog: &Hog) -> Result<(), String> {
    let low = main_zone()?.high;
    hog.cont();
    let start = std::time::Instant::now();
    while main_zone()?.free > low && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
    hog.stop();
    settle(Duration::from_secs(10))
}

/// Pages to allocate so that free memory must fall below the min
/// watermark, by `margin` pages.
fn past_min(margin: u64) -> Result<usize, String> {
    // Every zone: GFP_KERNEL falls back from DMA32 to DMA (what the DMA
    // zone's lowmem_reserve protects is counted too: more than needed).
    let free: u64 = pressure::zones()?
        .iter()
        .map(|z| z.free.saturating_sub(z.min))
        .sum();
    Ok((free + margin) as usize)
}

/// A hog that pushes `over_mib` MiB more than RAM through memory: user
/// pages must go out to swap, and kswapd and direct reclaim run all along.
fn push(over_mib: u64) -> Result<Hog, String> {
    let total = pressure::meminfo_kib("MemTotal")? >> 10;
    let mut hog = Hog::spawn(pressure::HogSpec {
        target_free: 0,
        hold: false,
        max_mib: total + over_mib,
        cache_mib: 0,
        step_pages: 256,
        all_zones: false,
    })?;
    hog.wait_ready(Duration::from_secs(600))?;
    Ok(hog)
}

/// Claims 1 and 2: GFP_KERNEL sleeps to reclaim (and swaps), GFP_ATOMIC
/// never sleeps and has less chance of success.
pub fn kernel_vs_atomic() -> Result<Vec<Claim>, String> {
    let _swap = ZramSwap::on(SWAP_MIB)?;
    let dev = open()?;
    let quiet = burst(&dev, gfp::KERNEL, 2, 256, context::PROCESS, 0);
    let _ = dev.free_all();
    let hog = pressed(true)?;
    // Order 2 (16 KiB: still "small", below PAGE_ALLOC_COSTLY_ORDER), 32 MiB
    // past the min watermark.
    let total = (past_min(8192)? / 4).min(MAX_HANDLES);
    let z = main_zone()?;
    let v0 = VmStat::now()?;
    let k = burst(&dev, gfp::KERNEL, 2, total, context::PROCESS, 0);
    let dk = VmStat::now()?.delta(&v0);
    let _ = dev.free_all();
    refill(&hog)?;
    let v1 = VmStat::now()?;
    let a = burst(&dev, gfp::ATOMIC, 2, total, context::ATOMIC, 0);
    let da = VmStat::now()?.delta(&v1);
    let _ = dev.free_all();
    drop(hog);
    let ratio = k.max_ns() as f64 / quiet.median_ns().max(1) as f64;
    let c1 = claim(
        "GFP_KERNEL sleeps to reclaim (LDD3): below the watermarks it enters direct reclaim, swaps user pages out, takes ms instead of µs, and succeeds",
        format!(
            "{}; on a quiet machine: median {}; GFP_KERNEL, {total} order-2 pages: {}; vmstat during it: {}",
            show_zone(&z),
            us(quiet.median_ns()),
            k.show(total),
            dk.show()
        ),
        k.made == total
            && dk.get("allocstall_") > 0
            && dk.get("pgscan_direct") > 0
            && dk.get("pswpout") > 0
            && ratio >= 10.0,
    );
    let c2 = claim(
        "GFP_ATOMIC never sleeps and has less chance of success than GFP_KERNEL (Love): the same sequence fails, each attempt in µs",
        format!(
            "GFP_ATOMIC in atomic context, the same {total} order-2 pages: {}; vmstat during it: {}",
            a.show(total),
            da.show()
        ),
        k.made == total
            && a.made < total
            && a.failed == Some(Errno::ENOMEM)
            && a.max_ns().saturating_mul(5) < k.max_ns(),
    );
    Ok(vec![c1, c2])
}

/// Claim 3: GFP_ATOMIC reaches below the min watermark, GFP_NOWAIT does not.
pub fn atomic_reserve() -> ClaimResult {
    let _swap = ZramSwap::on(SWAP_MIB)?;
    let dev = open()?;
    let _hog = pressed(false)?;
    let before = main_zone()?;
    // Order 1 (8 KiB): 31 MiB in the lab's 4000 handles, more than every
    // zone has above its min watermark.
    let n = burst(&dev, gfp::NOWAIT, 1, MAX_HANDLES - 64, context::PROCESS, 0);
    // At once, before anything can free memory: the reserve below min.
    let a = burst(&dev, gfp::ATOMIC, 1, 16, context::ATOMIC, 0);
    let after = main_zone()?;
    let _ = dev.free_all();
    Ok(claim(
        "GFP_ATOMIC uses the emergency reserve (__GFP_HIGH; LDD3 \"the kernel tries to keep some free pages for atomic allocations\"): where GFP_NOWAIT fails at the min watermark, GFP_ATOMIC still succeeds",
        format!(
            "before: {}; GFP_NOWAIT order-1 pages: {}; then GFP_ATOMIC: {}; {}",
            show_zone(&before),
            n.show(MAX_HANDLES - 64),
            a.show(16),
            show_zone(&after)
        ),
        n.failed == Some(Errno::ENOMEM) && a.made >= 1,
    ))
}

/// Writes a sysctl, and gives the old value back when dropped.
struct Sysctl {
    path: &'static str,
    old: String,
}

impl Sysctl {
    fn set(path: &'static str, value: &str) -> Result<Self, String> {
        let old = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        std::fs::write(path, value).map_err(|e| format!("{path}: {e}"))?;
        Ok(Self {
            path,
            old: old.trim().to_string(),
        })
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = std::fs::write(self.path, &self.old);
    }
}

/// Holds whatever free run of `2^lowest` pages or more is left, largest
/// first, also in ZONE_DMA (where GFP_KERNEL falls back); returns the main
/// zone's pages held.
fn hold_runs(dev: &Device, lowest: u32) -> usize {
    let mut held = 0;
    for order in (lowest..=10).rev() {
        held += burst(dev, gfp::NOWAIT, order, 64, context::PROCESS, 0).made << order;
        burst(dev, gfp::DMA | gfp::NOWAIT, order, 16, context::PROCESS, 0);
    }
    held
}

/// Claim 4: contiguous memory is hard to find, virtual contiguity is easy,
/// and compaction makes contiguity again.
pub fn contiguity() -> ClaimResult {
    // Nothing defragments behind the claim's back: no proactive compaction
    // by kcompactd, no watermark boost after fragmentation events.
    let _p = Sysctl::set("/proc/sys/vm/compaction_proactiveness", "0")?;
    let _b = Sysctl::set("/proc/sys/vm/watermark_boost_factor", "0")?;
    let swap = ZramSwap::on(SWAP_MIB)?;
    let dev = open()?;
    let z = main_zone()?;
    let zone = z.name.clone();
    // A hog leaves 3200 pages above the high watermark; the lab takes them
    // one page at a time and gives back those of odd frame number: each
    // hole's buddy is a page the lab still holds, so no two holes merge.
    let hog = fill_to(z.high + 3200, false)?;
    let before = buddyinfo(&zone)?;
    KEEP_HANDLES.set(true);
    let a = burst(&dev, gfp::NOWAIT, 0, 3200, context::PROCESS, 0);
    KEEP_HANDLES.set(false);
    let mut holes = 0;
    for (h, phys) in a.handles.iter().zip(&a.phys) {
        if (phys >> 12) & 1 == 1 {
            let _ = dev.free(*h);
            holes += 1;
        }
    }
    // Holding the runs takes the zone below its low watermark, so kswapd
    // reclaims (to zram) behind us and freed pages merge into new runs:
    // look in up to 6 windows, each holding what merged since (and the
    // run the previous window's allocation got).
    let (mut held, mut windows) = (0, 0);
    let (frag, zf, nowait) = loop {
        windows += 1;
        held += hold_runs(&dev, 4);
        let frag = buddyinfo(&zone)?;
        let zf = main_zone()?;
        // Neither reclaim nor compaction, and no kswapd wake-up.
        let nowait = burst(&dev, gfp::NORETRY | gfp::NOWARN, 4, 1, context::PROCESS, 0);
        if nowait.made == 0 || windows >= 6 {
            break (frag, zf, nowait);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let vm = burst_of(
        &dev,
        lb::VMALLOC,
        gfp::KERNEL,
        0,
        64 << 10,
        1,
        context::PROCESS,
        0,
    );
    let v0 = VmStat::now()?;
    let k = burst(&dev, gfp::KERNEL, 4, 1, context::PROCESS, 0);
    let dk = VmStat::now()?.delta(&v0);
    let _ = dev.free_all();
    drop(hog);
    drop(swap);
    Ok(claim(
        "Physically contiguous memory is hard to find, virtual contiguity is easy (Love): with free memory in one-page holes, an order-4 allocation that may neither reclaim nor compact fails though free pages are above the watermark, where vmalloc of the same 64 KiB succeeds; GFP_KERNEL, which may reclaim and compact (CONFIG_COMPACTION), gets its order-4 run",
        format!(
            "buddyinfo {zone} with the hog in place {before:?}; after {holes} one-page holes among {} pages of the lab and {held} pages in runs of 16+ held (window {windows} of at most 6): {frag:?}, {}; order 4 __GFP_NORETRY without reclaim: {}; vmalloc(64 KiB): {}; order 4 GFP_KERNEL: {}, vmstat: {}",
            a.made,
            show_zone(&zf),
            nowait.show(1),
            vm.show(1),
            k.show(1),
            dk.show()
        ),
        nowait.made == 0 && zf.free > zf.min + 16 && vm.made == 1 && k.made == 1,
    ))
}

/// Claim 4b: compaction makes contiguity again ([`compaction`]). Run
/// early, on a guest whose zone no failed compaction has deferred yet.
pub fn compaction_claim() -> ClaimResult {
    let _p = Sysctl::set("/proc/sys/vm/compaction_proactiveness", "0")?;
    let _b = Sysctl::set("/proc/sys/vm/watermark_boost_factor", "0")?;
    pressure::swap_off_all()?;
    let (observed, holds) = compaction()?;
    Ok(claim(
        "Compaction makes contiguity again (CONFIG_COMPACTION): with a quarter of a GiB free in one-page holes among movable pages and nothing reclaim could free, an order-3 allocation without reclaim fails, and one that may reclaim and compact gets its run by migrating pages (compact_stall and compact_success rise)",
        observed,
        holds,
    ))
}

/// Free pages of the main zone [`compaction`] leaves above its high
/// watermark before punching holes.
const COMPACTION_MARGIN: u64 = 2048;

/// The physical frame of each page of `region` (`/proc/self/pagemap`, as
/// root; 0 for a page not present).
fn frames(region: *const u8, pages: usize) -> Result<Vec<u64>, String> {
    let f = std::fs::File::open("/proc/self/pagemap").map_err(|e| format!("pagemap: {e}"))?;
    let mut raw = vec![0u8; pages * 8];
    let first = region as u64 / 4096;
    f.read_exact_at(&mut raw, first * 8)
        .map_err(|e| format!("pagemap: {e}"))?;
    Ok(raw
        .chunks_exact(8)
        .map(|c| {
            let e = u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]));
            // Bit 63: present; bits 0-54: the frame number.
            if e >> 63 == 1 {
                e & ((1 << 55) - 1)
            } else {
                0
            }
        })
        .collect())
}

/// Claim 4's compaction half. Movable memory in one-page holes: this
/// process maps a memfd (tmpfs: movable pages, not reclaimable
/// without swap) until the main zone is down to [`COMPACTION_MARGIN`]
/// pages above its high watermark, then punches out every page of odd
/// frame number, so each hole's buddy is a page still in use and no hole
/// merges: half of the mapping is free again, in one-page holes. Every
/// other free run of 2 pages or more is held by the lab, the CMA area too
/// (an unmovable request cannot use it); there is no swap and no page
/// cache to drop, so reclaim has nothing to free. An order-3 allocation
/// that may not reclaim then fails; one that may (direct reclaim and
/// compaction, no kswapd, so the work is the allocation's own) must
/// migrate pages to succeed. Returns what was seen and whether it held.
fn compaction() -> Result<(String, bool), String> {
    protect_from_oom()?;
    let dev = open()?;
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
    // The CMA area, while memory is plentiful (cma_alloc migrates whatever
    // movable pages sit in it).
    let mut cma = 0u64;
    let mut cma_err = None;
    while let Some(free) = crate::tour::cma_free() {
        let size = (free & !((1 << 20) - 1)).min(4 << 20);
        if size == 0 {
            break;
        }
        let b = burst_of(
            &dev,
            lb::CMA,
            gfp::KERNEL | gfp::NOWARN,
            0,
            size,
            1,
            context::PROCESS,
            0,
        );
        if b.made == 0 {
            cma_err = b.failed;
            break;
        }
        cma += size;
    }
    let z = main_zone()?;
    let zone = z.name.clone();
    let pages = z.free.saturating_sub(z.high + COMPACTION_MARGIN) as usize;
    if pages < 4096 {
        return Err(format!(
            "compaction: only {pages} pages to map ({})",
            show_zone(&z)
        ));
    }
    // A tmpfs file, mapped shared: its pages are movable like
    // anonymous ones, and a hole is punched with fallocate() (this kernel
    // has no madvise(2): CONFIG_ADVISE_SYSCALLS is off) without splitting
    // the mapping into one VMA per page.
    // memfd: the kernel's internal tmpfs mount, without the size limit of
    // a mounted /tmp (half of RAM).
    // SAFETY: A C string; the result is checked.
    let fd = unsafe { libc::memfd_create(c"ldd-alloc-compaction".as_ptr(), 0) };
    if fd < 0 {
        return Err(format!("memfd_create: {}", Errno::last()));
    }
    // SAFETY: `fd` was just opened and is owned here alone.
    let file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    file.set_len((pages * 4096) as u64)
        .map_err(|e| format!("ftruncate: {e}"))?;
    // SAFETY: A fresh shared mapping of our own file; no other reference.
    let region = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            pages * 4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if region == libc::MAP_FAILED {
        return Err(format!("mmap: {}", Errno::last()));
    }
    let region = region.cast::<u8>();
    let unmap = Unmap(region, pages);
    // Touch in steps, watching the zone: free memory stops at the margin
    // whatever other zones and per-CPU lists hold.
    let mut touched = 0;
    while touched < pages {
        let end = (touched + 512).min(pages);
        for i in touched..end {
            // SAFETY: Page `i` lies inside the mapping; distinct contents,
            // so nothing (KSM, zero pages) merges them.
            unsafe {
                region
                    .add(i * 4096)
                    .cast::<u64>()
                    .write_volatile(i as u64 + 1)
            };
        }
        touched = end;
        if main_zone()?.free <= z.high + COMPACTION_MARGIN {
            break;
        }
    }
    let pages = touched;
    let pfns = frames(region, pages)?;
    let present = pfns.iter().filter(|p| **p != 0).count();
    let odd = pfns.iter().filter(|p| **p & 1 == 1).count();
    let mut holes = 0;
    let mut refused = None;
    for (i, pfn) in pfns.iter().enumerate() {
        if pfn & 1 == 1 {
            // SAFETY: A plain syscall on our file; page `i`'s contents are
            // not needed (the mapping faults in a fresh page if touched).
            let r = unsafe {
                libc::fallocate(
                    fd,
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    (i * 4096) as libc::off_t,
                    4096,
                )
            };
            if r == 0 {
                holes += 1;
            } else {
                refused = Some(Errno::last());
            }
        }
    }
    if holes * 4 < pages {
        return Err(format!(
            "compaction: {holes} holes among {pages} pages ({present} present, {odd} odd, first frames {:x?}){}",
            &pfns[..pfns.len().min(8)],
            refused.map_or(String::new(), |e| format!(", fallocate: {e}"))
        ));
    }
    let held = hold_runs(&dev, 1);
    let frag = buddyinfo(&zone)?;
    let zf = main_zone()?;
    let nowait = burst(&dev, gfp::NORETRY | gfp::NOWARN, 3, 1, context::PROCESS, 0);
    let v0 = VmStat::now()?;
    // GFP_KERNEL without __GFP_KSWAPD_RECLAIM: no kswapd, no kcompactd.
    // Order 3, the largest the allocator does not count as costly: its
    // retries raise the compaction priority up to the one that ignores the
    // deferral an earlier failure (claim 4's first half, claims 1-3) left
    // on the zone, where a costly order stops short of it
    // (MIN_COMPACT_COSTLY_PRIORITY, mm/page_alloc.c). __GFP_RETRY_MAYFAIL:
    // fail rather than call the OOM killer.
    let direct = gfp::DIRECT_RECLAIM | gfp::IO | gfp::FS | gfp::RETRY_MAYFAIL;
    let k = burst(&dev, direct, 3, 1, context::PROCESS, 0);
    let dk = VmStat::now()?.delta(&v0);
    drop(unmap);
    drop(file);
    let _ = dev.free_all();
    let stalls = dk.get("compact_stall");
    let won = dk.get("compact_success");
    let migrated = dk.get("pgmigrate_success");
    Ok((
        format!(
            "{} MiB of CMA held{}; {holes} one-page holes among {pages} pages of this process ({present} present, {odd} of odd frame{}, first frames {:x?}), {held} pages in runs of 2+ held: buddyinfo {zone} {frag:?}, {}; order 3 without reclaim: {}; order 3 GFP_KERNEL|__GFP_RETRY_MAYFAIL (direct reclaim and compaction, no kswapd): {}, compact_stall +{stalls}, compact_success +{won}, pgmigrate_success +{migrated}",
            cma >> 20,
            cma_err.map_or(String::new(), |e| format!(" (then {e})")),
            refused.map_or(String::new(), |e| format!(", fallocate: {e}")),
            &pfns[..pfns.len().min(4)],
            show_zone(&zf),
            nowait.show(1),
            k.show(1)
        ),
        holes * 4 > pages && nowait.made == 0 && k.made == 1 && stalls >= 1 && won >= 1 && migrated >= 1,
    ))
}

/// Unmaps [`compaction`]'s region (its address and pages) when dropped.
struct Unmap(*mut u8, usize);

impl Drop for Unmap {
    fn drop(&mut self) {
        // SAFETY: The mapping made in `compaction`, unmapped once.
        unsafe { libc::munmap(self.0.cast(), self.1 * 4096) };
    }
}

/// Claim 5: the retry modifiers under real exhaustion (no swap): NORETRY
/// and RETRY_MAYFAIL fail without the OOM killer; a small GFP_KERNEL
/// allocation does not fail: the OOM killer kills the sacrificial hog; a
/// NOFAIL one waits (and another hog dies) until it succeeds.
pub fn retry_modifiers() -> ClaimResult {
    pressure::swap_off_all()?;
    protect_from_oom()?;
    let dev = open()?;
    let _fence = Fence::begin("oom-kill")?;
    let mut hog = fill_to(main_zone()?.low, false)?;
    // Order 2 (16 KiB, "small"): 4000 of them are 62 MiB, far more than
    // anything reclaim can find without swap.
    let total = MAX_HANDLES;
    let v0 = VmStat::now()?;
    let noretry = burst(
        &dev,
        gfp::KERNEL | gfp::NORETRY,
        2,
        total,
        context::PROCESS,
        0,
    );
    let _ = dev.free_all();
    let mayfail = burst(
        &dev,
        gfp::KERNEL | gfp::RETRY_MAYFAIL,
        2,
        total,
        context::PROCESS,
        0,
    );
    let _ = dev.free_all();
    let d_fail = VmStat::now()?.delta(&v0);
    let hog_alive = hog.alive();
    let v1 = VmStat::now()?;
    let kernel = burst(&dev, gfp::KERNEL, 2, total, context::PROCESS, 0);
    let killed = hog.killed_within(Duration::from_secs(30));
    let d_kernel = VmStat::now()?.delta(&v1);
    let _ = dev.free_all();
    drop(hog);
    // __GFP_NOFAIL (order <= 1): a second hog, the same exhaustion.
    let mut hog2 = fill_to(main_zone()?.low, false)?;
    // NOFAIL is for orders 0 and 1: 4000 order-1 pages, 31 MiB.
    let total2 = MAX_HANDLES;
    let v2 = VmStat::now()?;
    let nofail = burst(
        &dev,
        gfp::KERNEL | gfp::NOFAIL,
        1,
        total2,
        context::PROCESS,
        0,
    );
    let killed2 = hog2.killed_within(Duration::from_secs(30));
    let d_nofail = VmStat::now()?.delta(&v2);
    let _ = dev.free_all();
    drop(hog2);
    let init_alive = std::path::Path::new("/proc/1").exists();
    Ok(claim(
        "The retry modifiers: __GFP_NORETRY fails fast and __GFP_RETRY_MAYFAIL fails after trying harder, neither calling the OOM killer; a small GFP_KERNEL allocation is \"too small to fail\": the OOM killer kills a sacrificial hog (oom_score_adj 1000, never init or the test) and the allocation succeeds; __GFP_NOFAIL waits until it succeeds",
        format!(
            "no swap, {} order-2 pages each: NORETRY {}; RETRY_MAYFAIL {}; vmstat: {}; hog alive after both: {hog_alive}; GFP_KERNEL {}, hog SIGKILLed: {killed}, vmstat: {}; NOFAIL order-1 {}, second hog SIGKILLed: {killed2}, vmstat: {}",
            total,
            noretry.show(total),
            mayfail.show(total),
            d_fail.show(),
            kernel.show(total),
            d_kernel.show(),
            nofail.show(total2),
            d_nofail.show()
        ),
        noretry.failed == Some(Errno::ENOMEM)
            && mayfail.failed == Some(Errno::ENOMEM)
            && d_fail.get("oom_kill") == 0
            && hog_alive
            && kernel.made == total
            && killed
            && d_kernel.get("oom_kill") >= 1
            && nofail.made == total2
            && killed2
            && init_alive,
    ))
}

/// When claim 6 last printed the page allocator's failure report.
static LAST_WARN: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);

/// Claim 6: without __GFP_NOWARN a failing high-order allocation prints the
/// "page allocation failure" report; with it, nothing.
pub fn nowarn() -> ClaimResult {
    let dev = Device::open_index(0).map_err(|e| format!("open: {e}"))?;
    // Hold every order-10 run of ZONE_DMA (16 MiB): the next one must fail,
    // whatever the rest of the machine has free.
    let dma = gfp::DMA | gfp::NOWAIT;
    let held = burst(&dev, dma, 10, 16, context::PROCESS, 0);
    // The fence below must contain the report: open it only when the same
    // allocation has just failed quietly, and at most once per 10 s (the
    // page allocator prints one failure report per 10 s: warn_alloc()'s
    // nopage_rs).
    let probe = burst(&dev, dma, 10, 1, context::PROCESS, 0);
    if probe.made != 0 {
        let _ = dev.free_all();
        return Err("an order-10 run of ZONE_DMA was still free".into());
    }
    {
        let mut last = LAST_WARN.lock().map_err(|_| "poisoned")?;
        if let Some(t) = *last {
            let wait = Duration::from_secs(11).saturating_sub(t.elapsed());
            std::thread::sleep(wait);
        }
        // Any failure report of the last 10 s (one inside an OOM fence,
        // say) has used the allowance too.
        if let Some(ago) = pressure::since_last_log("page allocation failure")? {
            std::thread::sleep(Duration::from_secs(11).saturating_sub(ago));
        }
        *last = Some(std::time::Instant::now());
    }
    let (mark, _) = pressure::kernel_log_since(usize::MAX)?;
    let warned = {
        let _fence = Fence::begin("alloc-failure")?;
        let w = burst(
            &dev,
            gfp::DMA | gfp::KSWAPD_RECLAIM,
            10,
            1,
            context::PROCESS,
            alloc_flags::WARN,
        );
        let (_, lines) = pressure::kernel_log_since(mark)?;
        (w, lines)
    };
    let (mark2, _) = pressure::kernel_log_since(usize::MAX)?;
    let quiet = burst(&dev, dma, 10, 1, context::PROCESS, 0);
    let (_, lines2) = pressure::kernel_log_since(mark2)?;
    let _ = dev.free_all();
    let report = |l: &[String]| {
        l.iter()
            .find(|s| s.contains("page allocation failure"))
            .cloned()
    };
    let r1 = report(&warned.1);
    let r2 = report(&lines2);
    Ok(claim(
        "__GFP_NOWARN: a failing high-order allocation without it prints the kernel's \"page allocation failure\" report; with it, nothing",
        format!(
            "{} order-10 runs of ZONE_DMA held; then order 10 without NOWARN: {}, log: {:?}; with NOWARN: {}, log: {}",
            held.made,
            warned.0.show(1),
            r1.as_deref().unwrap_or("nothing"),
            quiet.show(1),
            r2.as_deref().unwrap_or("nothing")
        ),
        warned.0.failed == Some(Errno::ENOMEM)
            && r1.is_some()
            && quiet.failed == Some(Errno::ENOMEM)
            && r2.is_none(),
    ))
}

/// This process's pages locked in memory (`mlockall(MCL_CURRENT)`) while
/// the guard lives. Under swap a page of ours swapped out and touched again
/// inside a measured window (the scratch buffers, the binary's text) is a
/// fault that allocates with GFP_HIGHUSER_MOVABLE: a direct reclaim of its
/// own, with I/O, that swaps and wakes kswapd inside the window (CI stop 21
/// saw pswpin +8 and pswpout +1405 in the GFP_NOIO window).
struct MemLock;

impl MemLock {
    fn new() -> Result<Self, String> {
        // SAFETY: mlockall() takes no pointers; it only changes this
        // process's mappings' VM_LOCKED.
        if unsafe { libc::mlockall(libc::MCL_CURRENT) } != 0 {
            return Err(format!("mlockall: {}", std::io::Error::last_os_error()));
        }
        Ok(MemLock)
    }
}

impl Drop for MemLock {
    fn drop(&mut self) {
        // SAFETY: munlockall() takes no pointers.
        unsafe { libc::munlockall() };
    }
}

/// Windows of claim 7 tried per variant before it gives up on a quiet
/// kswapd.
const NOIO_ATTEMPTS: usize = 6;

/// Claim 7: GFP_NOIO reclaim does not swap; memalloc_noio_save() makes a
/// GFP_KERNEL allocation behave the same.
///
/// pswpout is machine-wide: a window says what the lab's own direct reclaim
/// wrote only if nothing else reclaimed in it. This process is locked in
/// memory (no fault of ours reclaims), the hog is stopped, the flags leave
/// out __GFP_KSWAPD_RECLAIM; a window in which kswapd scanned anyway (woken
/// by another allocation of the guest) proves nothing either way, and is
/// tried again, up to [`NOIO_ATTEMPTS`] times.
pub fn noio() -> ClaimResult {
    let _swap = ZramSwap::on(SWAP_MIB)?;
    let dev = open()?;
    let hog = pressed(true)?;
    // After the hog's fork: a child inherits no memory locks.
    let _locked = MemLock::new()?;
    // No __GFP_KSWAPD_RECLAIM: kswapd stays asleep, so whatever swaps
    // during the allocation is its own direct reclaim. __GFP_NORETRY: one
    // round of reclaim (NOIO reclaim frees next to nothing here; without it
    // a small allocation would loop "too small to fail").
    let kernel = gfp::DIRECT_RECLAIM | gfp::IO | gfp::FS | gfp::NORETRY;
    let noio = gfp::DIRECT_RECLAIM | gfp::NORETRY;
    struct Window {
        burst: Burst,
        delta: pressure::Delta,
        total: usize,
        attempts: usize,
    }
    impl Window {
        fn quiet(&self) -> bool {
            self.delta.get("pgscan_kswapd") == 0
        }
    }
    let run = |flags: u64, opts: u32| -> Result<Window, String> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            refill(&hog)?;
            // Order 2 (16 KiB), 8 MiB past every zone's min watermark.
            let total = (past_min(2048)? / 4).min(MAX_HANDLES);
            let v0 = VmStat::now()?;
            let burst = burst(&dev, flags, 2, total, context::PROCESS, opts);
            let delta = VmStat::now()?.delta(&v0);
            let _ = dev.free_all();
            let w = Window {
                burst,
                delta,
                total,
                attempts,
            };
            if w.quiet() || attempts == NOIO_ATTEMPTS {
                return Ok(w);
            }
        }
    };
    let k = run(kernel, 0)?;
    let n = run(noio, 0)?;
    let s = run(kernel, alloc_flags::SCOPE_NOIO)?;
    let locked_kib = pressure::status_kib("VmLck")?;
    drop(hog);
    let show = |w: &Window| {
        format!(
            "{}: {}{}",
            w.burst.show(w.total),
            w.delta.show(),
            if w.attempts > 1 {
                format!(
                    " (window {} of {}: kswapd ran in the ones before)",
                    w.attempts, NOIO_ATTEMPTS
                )
            } else {
                String::new()
            }
        )
    };
    Ok(claim(
        "GFP_NOIO reclaim does not swap (pswpout stays) where GFP_KERNEL's does; memalloc_noio_save() around a GFP_KERNEL allocation makes it behave as GFP_NOIO (the recommended way since 4.12)",
        format!(
            "order-2 pages, direct reclaim only (no kswapd wake-up), __GFP_NORETRY, this process mlocked ({locked_kib} KiB): GFP_KERNEL {}; GFP_NOIO {}; GFP_KERNEL in memalloc_noio_save() {}",
            show(&k),
            show(&n),
            show(&s)
        ),
        locked_kib > 0
            && k.quiet()
            && n.quiet()
            && s.quiet()
            && k.delta.get("pswpout") > 0
            && n.delta.get("pswpout") == 0
            && s.delta.get("pswpout") == 0
            && n.delta.get("allocstall_") > 0
            && s.delta.get("allocstall_") > 0,
    ))
}

/// Claim 8: our mempool and the kernel's (`mempool_create()`, side by side)
/// keep their promise when the page allocator cannot serve GFP_ATOMIC, and a
/// GFP_KERNEL allocation of an empty pool sleeps until a free refills it
/// (mm/mempool.c waits the same way; ours is killable). Without swap (kswapd could otherwise free pages while
/// the claim looks), so the exhaustion ends as claim 5's does: a GFP_KERNEL
/// allocation of ours makes the OOM killer take the hog, inside a fence.
pub fn mempool() -> ClaimResult {
    const ELEM: u64 = 3000;
    /// How long claim 8's GFP_KERNEL waiter waits before the free it needs.
    const HOLD: Duration = Duration::from_millis(300);
    pressure::swap_off_all()?;
    protect_from_oom()?;
    let dev = open()?;
    // Both pools (and their reserves) exist before the pressure.
    for backend in [lb::OUR_MEMPOOL, lb::KERNEL_MEMPOOL] {
        let first = burst_of(
            &dev,
            backend,
            gfp::KERNEL,
            0,
            ELEM,
            1,
            context::PROCESS,
            alloc_flags::FREE_NOW,
        );
        if first.made != 1 {
            return Err(format!(
                "could not create the {} pool",
                lb::NAMES[backend as usize]
            ));
        }
    }
    let p0 = crate::vmtests::pools::pool_of(&dev, ELEM)?;
    let k0 = kernel_pool_of(&dev, ELEM)?;
    // More files for the order-0 drain (each holds at most MAX_HANDLES),
    // their tables grown now, while memory is plentiful.
    let spares = [open()?, open()?, open()?];
    // The GFP_KERNEL waiter: a thread started now, parked until the
    // reserve is empty. Under exhaustion nothing here may allocate (no
    // swap: a page fault would wake the OOM killer), so its stack, its reply
    // and both channels exist before.
    let waiter_file = open()?;
    // Eats what reclaim frees meanwhile, should the waiter's first try
    // find its backing cache able to allocate after all.
    let eater = open()?;
    let (go, go_rx) = std::sync::mpsc::sync_channel::<()>(1);
    let (done_tx, done) = std::sync::mpsc::sync_channel::<(Result<i32, Errno>, Duration)>(1);
    let waiter = std::thread::spawn(move || {
        let mut reply = [uapi::AllocReply::default(); 1];
        // One GFP_KERNEL allocation per `go`, until the sender goes.
        while go_rx.recv().is_ok() {
            let mut req = uapi::AllocRequest {
                backend: lb::OUR_MEMPOOL,
                gfp: gfp::KERNEL,
                size: ELEM,
                count: 1,
                context: context::PROCESS,
                replies: reply.as_mut_ptr() as u64,
                ..Default::default()
            };
            let t = std::time::Instant::now();
            let r = waiter_file.ioctl_inout(uapi::LDD_IOC_ALLOC, &mut req);
            if done_tx.send((r, t.elapsed())).is_err() {
                break;
            }
        }
        waiter_file
    });
    let _fence = Fence::begin("oom-kill")?;
    let mut hog = fill_to(main_zone()?.low, false)?;
    // Take everything GFP_ATOMIC can reach, reserve included: order-2 runs,
    // then single pages over as many files as it takes to reach ENOMEM.
    let drained = burst(&dev, gfp::ATOMIC, 2, 2000, context::ATOMIC, 0);
    let mut asked0 = 3600usize.saturating_sub(drained.made);
    let mut drained0 = burst(&dev, gfp::ATOMIC, 0, asked0, context::ATOMIC, 0);
    for spare in &spares {
        if drained0.failed.is_some() {
            break;
        }
        let more = burst(spare, gfp::ATOMIC, 0, MAX_HANDLES, context::ATOMIC, 0);
        asked0 += MAX_HANDLES;
        drained0.made += more.made;
        drained0.failed = more.failed;
    }
    // On the first file, which has room left for it and the pools' bursts.
    let bare = burst(&dev, gfp::ATOMIC, 0, 1, context::ATOMIC, 0);
    let pool = burst_of(
        &dev,
        lb::OUR_MEMPOOL,
        gfp::ATOMIC,
        0,
        ELEM,
        150,
        context::ATOMIC,
        0,
    );
    // One of ours, for the waiter's free (a copy: nothing allocated).
    let ours = SCRATCH.with_borrow(|sc| sc.handles[0]);
    let p1 = crate::vmtests::pools::pool_of(&dev, ELEM)?;
    let kernel = burst_of(
        &dev,
        lb::KERNEL_MEMPOOL,
        gfp::ATOMIC,
        0,
        ELEM,
        150,
        context::ATOMIC,
        0,
    );
    let k1 = kernel_pool_of(&dev, ELEM)?;
    // GFP_KERNEL on our empty pool: while the backing cache fails, it
    // sleeps on the pool's wait queue until an element comes back. Reclaim
    // (kswapd, without swap: page cache and slab) may free a page meanwhile,
    // and a try that gets it from the backing cache is what mempool_alloc()
    // does first: then that memory is eaten and the waiter goes again.
    let mut asleep = p1;
    let mut early = 0;
    for _ in 0..8 {
        let _ = go.send(());
        let mut returned = false;
        for _ in 0..300 {
            if done.try_recv().is_ok() {
                returned = true;
                break;
            }
            asleep = crate::vmtests::pools::pool_of(&dev, ELEM)?;
            if asleep.waits > p1.waits {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if !returned {
            break;
        }
        early += 1;
        let _ = burst(&eater, gfp::ATOMIC, 0, MAX_HANDLES / 8, context::ATOMIC, 0);
    }
    std::thread::sleep(HOLD);
    let freed = pool.made > 0 && dev.free(ours).is_ok();
    let woke = done.recv_timeout(Duration::from_secs(10));
    let p2 = crate::vmtests::pools::pool_of(&dev, ELEM)?;
    let _ = dev.free_all();
    let _ = eater.free_all();
    for spare in &spares {
        let _ = spare.free_all();
    }
    drop(go);
    // Whatever happened, the waiter ends: every element is back now.
    let woke = match woke {
        Ok(w) => Some(w),
        Err(_) => done.recv_timeout(Duration::from_secs(10)).ok(),
    };
    if let Ok(f) = waiter.join() {
        let _ = f.free_all();
    }
    // End the exhaustion: the hog goes, by the OOM killer.
    let end = burst(&dev, gfp::KERNEL, 2, MAX_HANDLES, context::PROCESS, 0);
    let killed = hog.killed_within(Duration::from_secs(30));
    let _ = dev.free_all();
    let reserve = p1.allocs_reserve - p0.allocs_reserve;
    let kreserve = k0.curr_nr.saturating_sub(k1.curr_nr);
    let (wait_ok, wait_took) = match &woke {
        Some((r, took)) => (*r == Ok(1), *took),
        None => (false, Duration::ZERO),
    };
    Ok(claim(
        "Mempools keep their promise under real pressure: with the page allocator unable to serve GFP_ATOMIC, our mempool and the kernel's serve min_nr allocations from their reserves, and a GFP_KERNEL mempool allocation waits for a free instead of failing",
        format!(
            "no swap; GFP_ATOMIC order-2 pages until failure: {}, then order-0: {}; one more bare GFP_ATOMIC page: {}; our mempool ({ELEM}-byte elements, min_nr {}): {}, {} from its backing cache, {reserve} from the reserve; the kernel's mempool (min_nr {}): {}, its reserve {} -> {}; GFP_KERNEL on our empty pool: {early} tries served by the backing cache first, then slept (waits +{}), woken by a free after {} ms: {:?} after {} ms (wakeups +{}); then GFP_KERNEL: {}, the hog SIGKILLed by the OOM killer: {killed}",
            drained.show(2000),
            drained0.show(asked0),
            bare.show(1),
            p0.min_nr,
            pool.show(150),
            p1.allocs_backing - p0.allocs_backing,
            k0.min_nr,
            kernel.show(150),
            k0.curr_nr,
            k1.curr_nr,
            asleep.waits - p1.waits,
            HOLD.as_millis(),
            woke.as_ref().map(|w| w.0),
            wait_took.as_millis(),
            p2.wakeups - p1.wakeups,
            end.show(MAX_HANDLES)
        ),
        drained.failed == Some(Errno::ENOMEM)
            && drained0.failed == Some(Errno::ENOMEM)
            && bare.made == 0
            && reserve == p0.min_nr
            && pool.failed == Some(Errno::ENOMEM)
            && k0.curr_nr == k0.min_nr
            && kreserve == k0.min_nr
            && kernel.failed == Some(Errno::ENOMEM)
            && asleep.waits > p1.waits
            && freed
            && wait_ok
            && wait_took >= HOLD
            && p2.wakeups > p1.wakeups
            && killed,
    ))
}

/// The lab's kernel mempool of `size`-byte elements.
fn kernel_pool_of(dev: &Device, size: u64) -> Result<uapi::KernelPoolInfo, String> {
    let mut i = 0;
    loop {
        match dev.kernel_pool_info(i) {
            Ok(p) if p.element_size == size => return Ok(p),
            Ok(_) => i += 1,
            Err(Errno::ENOENT) => return Err(format!("no kernel mempool of {size}-byte elements")),
            Err(e) => return Err(format!("KERNEL_POOL_INFO: {e}")),
        }
    }
}

/// Claim 9: kernel memory is not pageable.
pub fn not_pageable() -> ClaimResult {
    const LEN: usize = 2 << 20;
    let _swap = ZramSwap::on(SWAP_MIB)?;
    let pattern = |dev: u32| -> Vec<u8> {
        (0..LEN)
            .map(|i| (i as u32).wrapping_mul(2654435761).wrapping_add(dev) as u8 ^ (i >> 12) as u8)
            .collect()
    };
    let mut infos = Vec::new();
    for i in 0..4 {
        let path = crate::device::node(i);
        std::fs::write(&path, pattern(i)).map_err(|e| format!("{}: {e}", path.display()))?;
        let d = Device::open_index(i).map_err(|e| format!("open: {e}"))?;
        infos.push(d.info().map_err(|e| format!("INFO: {e}"))?);
    }
    let d0 = Device::open_index(0).map_err(|e| format!("open: {e}"))?;
    let pages0 = d0.page_stats().map_err(|e| format!("PAGE_STATS: {e}"))?;
    let v0 = VmStat::now()?;
    // 256 MiB more than RAM through memory: user pages go out to swap.
    let hog = push(256)?;
    let d = VmStat::now()?.delta(&v0);
    let pages1 = d0.page_stats().map_err(|e| format!("PAGE_STATS: {e}"))?;
    let mut same = 0;
    let mut info_same = 0;
    for i in 0..4u32 {
        let dev = Device::open_index(i).map_err(|e| format!("open: {e}"))?;
        let mut buf = vec![0u8; LEN];
        dev.file()
            .read_exact_at(&mut buf, 0)
            .map_err(|e| format!("read: {e}"))?;
        same += usize::from(buf == pattern(i));
        let info = dev.info().map_err(|e| format!("INFO: {e}"))?;
        info_same += usize::from(info == infos[i as usize]);
    }
    drop(hog);
    for i in 0..4 {
        drop(Device::open_with(
            crate::device::node(i),
            libc::O_WRONLY | libc::O_TRUNC,
        ));
    }
    Ok(claim(
        "Kernel memory is not pageable (Love): scull's data on every backend stays resident while user pages are swapped out",
        format!(
            "2 MiB on each of kmalloc, cache, pages, vmalloc; under pressure: {}; devices read back byte for byte: {same}/4, sizes and quanta unchanged: {info_same}/4, our page source's pages {:?} before, {:?} after",
            d.show(),
            pages0.pages_out,
            pages1.pages_out
        ),
        d.get("pswpout") >= 256 && same == 4 && info_same == 4 && pages0.pages_out == pages1.pages_out,
    ))
}

/// Claim 10: our caches give memory back to reclaim through their shrinker.
pub fn shrinker() -> ClaimResult {
    const OBJ: u64 = 2040;
    let _swap = ZramSwap::on(SWAP_MIB)?;
    let dev = Device::open_index(0).map_err(|e| format!("open: {e}"))?;
    // Empty slabs and full magazines: allocate, then free everything.
    let b = burst_of(
        &dev,
        lb::OUR_CACHE,
        gfp::KERNEL,
        0,
        OBJ,
        2048,
        context::PROCESS,
        0,
    );
    let _ = dev.free_all();
    if b.made == 0 {
        return Err("could not fill our cache".into());
    }
    let cache = |dev: &Device| -> Result<uapi::CacheInfo, String> {
        dev.caches()
            .map_err(|e| format!("CACHE_INFO: {e}"))?
            .into_iter()
            .find(|c| c.objsize == OBJ && c.flags & uapi::cache_flags::POOL_PRIVATE == 0)
            .ok_or_else(|| format!("no cache of {OBJ}-byte objects"))
    };
    let c0 = cache(&dev)?;
    let s0 = dev
        .shrinker_info()
        .map_err(|e| format!("SHRINKER_INFO: {e}"))?;
    let v0 = VmStat::now()?;
    let hog = push(256)?;
    let d = VmStat::now()?.delta(&v0);
    // The scan only queues the shrink (a work item: reclaim never waits for
    // our CPUs), so its pages come back a moment later: poll for them.
    let mut s1 = dev
        .shrinker_info()
        .map_err(|e| format!("SHRINKER_INFO: {e}"))?;
    for _ in 0..50 {
        if s1.scan_calls == s0.scan_calls || s1.pages_freed > s0.pages_freed {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        s1 = dev
            .shrinker_info()
            .map_err(|e| format!("SHRINKER_INFO: {e}"))?;
    }
    let c1 = cache(&dev)?;
    drop(hog);
    let freeable = |c: &uapi::CacheInfo| c.empty_slabs * c.objperslab + c.cached_objs;
    Ok(claim(
        "Our caches give memory back: their shrinker (shrinker_alloc/shrinker_register) lets kswapd and direct reclaim take empty slabs and magazine contents (the scan queues the shrink as a work item: reclaim never waits for a CPU)",
        format!(
            "cache {}: {} empty slabs, {} objects in magazines before; under pressure ({}): shrinker count calls +{}, scan calls +{}, pages freed +{}; after: {} empty slabs, {} in magazines",
            crate::device::cache_name(&c0),
            c0.empty_slabs,
            c0.cached_objs,
            d.show(),
            s1.count_calls - s0.count_calls,
            s1.scan_calls - s0.scan_calls,
            s1.pages_freed - s0.pages_freed,
            c1.empty_slabs,
            c1.cached_objs
        ),
        s1.registered == 1
            && freeable(&c0) > 0
            && s1.scan_calls > s0.scan_calls
            && s1.pages_freed > s0.pages_freed
            && c1.empty_slabs < c0.empty_slabs.max(1),
    ))
}

/// Every claim, in the order, each tried up to `tries` times until
/// it holds.
pub fn run_all(tries: u32) -> Vec<Claim> {
    let mut out = Vec::new();
    let mut push = |r: Result<Vec<Claim>, String>, what: &str| match r {
        Ok(c) => out.extend(c),
        Err(e) => out.push(claim(what, format!("could not be set up: {e}"), false)),
    };
    let single = |f: fn() -> ClaimResult| move || f().map(|c| vec![c]);
    // First: the page allocator prints one failure report per 10 s.
    push(retry(tries, single(nowarn)), "__GFP_NOWARN");
    // Next: before any failed compaction defers the next one.
    push(retry(tries, single(compaction_claim)), "compaction");
    push(
        retry(tries, kernel_vs_atomic),
        "GFP_KERNEL and GFP_ATOMIC under pressure",
    );
    push(retry(tries, single(atomic_reserve)), "GFP_ATOMIC's reserve");
    push(retry(tries, single(contiguity)), "contiguity");
    push(retry(tries, single(retry_modifiers)), "the retry modifiers");
    push(retry(tries, single(noio)), "GFP_NOIO");
    push(retry(tries, single(mempool)), "mempools under pressure");
    push(
        retry(tries, single(not_pageable)),
        "kernel memory is not pageable",
    );
    push(retry(tries, single(shrinker)), "our shrinker");
    out
}

/// Runs `f` up to `tries` times, until every claim it returns holds; the
/// last result either way.
pub fn retry(tries: u32, f: impl Fn() -> Result<Vec<Claim>, String>) -> Result<Vec<Claim>, String> {
    let mut last = Err("not run".to_string());
    for _ in 0..tries.max(1) {
        last = f();
        if let Ok(c) = &last {
            if c.iter().all(|c| c.holds) {
                break;
            }
        }
    }
    last
}
