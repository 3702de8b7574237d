//! A seeded fuzzer of the file operations and ioctls of /dev/ldd_alloc0..3.
//!
//! It runs long random sequences of read/write/pread/pwrite/lseek, opens
//! (O_TRUNC trims, O_APPEND) and closes, backend switches, every scull
//! ioctl, every ldd_alloc ioctl (with good and bad values and pointers),
//! unknown command numbers and page-allocation fault injection, against a
//! model of the module: each device's bytes, size, quanta, quantum sets and
//! geometry, the global quantum/qset, the cache registry, the injector and
//! the lab's handles. Every return value and errno is checked against what
//! the ABI (uapi.rs) and the driver's documented rules promise; a
//! mismatch fails the test with the seed, the op index and the op.
//!
//! `LDD_FUZZ_SEED` (default 1) and `LDD_FUZZ_OPS` (default 20000) choose the
//! run; replay a failure with the seed it prints, e.g. in the VM:
//! `bash scripts/vm.sh cmd 'LDD_FUZZ_SEED=7 ldd-alloc-test fuzz/'`.
//!
//! Memory stays bounded: valid quanta come from a short list (each size is
//! one of our caches, and the registry holds 32), writes stay in a window of
//! at most 4096 quanta per device, and writes near the 256 MiB limit only
//! happen with a geometry whose quantum sets are large.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Instant;

use nix::errno::Errno;

use crate::fuzz_model::{first_diff, Fd, Holes, Sparse, BAD_PTR, KERNEL_PTR};
use crate::rng::Rng;
use crate::tap::{Outcome, Test, TestResult};
use crate::uapi::{self, backend as be, ioc, ioc_nr, ioc_size, ioc_type, MAGIC};

/// Devices the fuzzer owns.
const NDEV: usize = 4;
/// Guest page size.
const PAGE_SIZE: u64 = 4096;
/// Highest page order of the pages backend (kalloc::pages::STORE_MAX_ORDER).
const STORE_MAX_ORDER: u32 = 3;
/// Most caches the module's registry holds (caches::MAX_CACHES).
const MAX_CACHES: usize = 32;
/// Smallest mempool element (allocator::mempool::MIN_ELEMENT).
const MIN_ELEMENT: u64 = crate::allocator::mempool::MIN_ELEMENT as u64;
/// Most pools the module's registry holds (pools::MAX_POOLS).
const MAX_POOLS: usize = 16;
/// Writes stay below this offset (or in the near-limit window).
const REGION: u64 = 4 << 20;
/// At most this many quanta per device in the write window.
const MAX_QUANTA: u64 = 4096;
/// Size of the window below the device size limit that writes may touch.
const NEAR: u64 = 64 << 10;
/// Valid quantum values the fuzzer sets: each one may become a cache.
const QUANTA: [i64; 8] = [1, 3, 64, 128, 1000, 4000, 4096, 20000];
/// Most open files of the pool.
const MAX_FDS: usize = 8;
/// Most live lab handles per file the fuzzer keeps.
const MAX_HANDLES: usize = 64;
/// Largest write buffer.
const BUF: usize = 64 << 10;
/// Valid bytes before the guard page of [`Holes`].
const HOLE_VALID: usize = 64 << 10;
/// The value at the start of the read-only page (a valid quantum and qset).
const RO_VALUE: i32 = 4000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// What a pointer argument is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ptr {
    /// Our own writable memory.
    Valid,
    /// NULL.
    Null,
    /// An unmapped user address.
    Bad,
    /// A kernel address.
    Kernel,
    /// A read-only page holding [`RO_VALUE`].
    ReadOnly,
}

impl Ptr {
    fn is_bad(self) -> bool {
        self != Ptr::Valid
    }
}

/// The model of one device.
#[derive(Debug)]
struct DevModel {
    data: Sparse,
    size: u64,
    backend: u32,
    order: u32,
    quantum: u64,
    qset: u64,
    /// Indices (`pos / quantum`) of the quanta held.
    quanta: BTreeSet<u64>,
    qsets: u64,
}

impl DevModel {
    fn trim_to(&mut self, backend: u32, order: u32, quantum: u64, qset: u64) {
        self.data.clear();
        self.size = 0;
        self.quanta.clear();
        self.qsets = 0;
        self.backend = backend;
        self.order = if backend == be::PAGES { order } else { 0 };
        self.quantum = if backend == be::PAGES {
            PAGE_SIZE << order
        } else {
            quantum
        };
        self.qset = qset;
    }

    /// Writes below this offset keep the device bounded.
    fn window(&self) -> u64 {
        (self.quantum * MAX_QUANTA).min(REGION)
    }

    fn per_set(&self) -> u64 {
        self.quantum * self.qset
    }

    /// Whether the geometry allows writes just below the size limit.
    fn near_ok(&self) -> bool {
        self.per_set() >= 256 << 10 && self.quantum >= 1000
    }
}

/// One file of the pool.
struct FileModel {
    fd: Fd,
    dev: usize,
    pos: i64,
    read: bool,
    write: bool,
    append: bool,
    /// Live lab handles of this file.
    handles: BTreeSet<u32>,
}

/// The fault injector as far as we know it.
#[derive(Clone, Copy, Debug, Default)]
struct Faults {
    all: bool,
    /// Upper bound of pending `fail_next` failures.
    next: i64,
    owner: u32,
}

/// One chunk of a write as the driver does it (one quantum at most).
#[derive(Clone, Copy, Debug)]
struct Chunk {
    pos: u64,
    len: usize,
    /// Offset of the chunk in the user buffer.
    user: usize,
    set: u64,
    qidx: u64,
    fresh: bool,
    alloc_may_fail: bool,
    copy_fails: bool,
}

/// Where the data of a write comes from.
#[derive(Clone, Copy, Debug)]
enum Src {
    /// Our buffer, with these bytes.
    Valid,
    /// The read-only page (valid to read from).
    ReadOnly,
    /// A pointer that faults at once (NULL or unmapped).
    Faulting(usize),
    /// A kernel pointer: refused before the driver runs.
    Kernel,
    /// `valid` good bytes, then the guard page.
    Partial(usize),
}

struct Fuzz {
    rng: Rng,
    seed: u64,
    op: u64,
    desc: String,
    malformed: u64,
    counts: BTreeMap<&'static str, u64>,
    /// Outcomes worth knowing were reached (short writes, ENOSPC, ...).
    events: BTreeMap<&'static str, u64>,
    devs: Vec<DevModel>,
    ctl: Vec<Fd>,
    files: Vec<FileModel>,
    gq: u64,
    gqs: u64,
    dq: u64,
    dqs: u64,
    admin: bool,
    limit: u64,
    /// The cache registry: (objsize, flags) by index.
    caches: Vec<(u64, u32)>,
    faults: Faults,
    mempool: bool,
    mempool_used: bool,
    /// Element sizes of the live pools, and the pool registry's length.
    pools: BTreeSet<u64>,
    pool_entries: usize,
    /// Pages held by pool-private caches at the start.
    private_pages: i64,
    lab: bool,
    prev_stats: uapi::PageStats,
    holes: Holes,
    buf: Vec<u8>,
    rbuf: Vec<u8>,
    initial: Vec<(u32, u32)>,
    baseline_pages: i64,
    tracing: bool,
}

type R = Result<(), String>;

fn sum(v: &[i64; 3]) -> i64 {
    v.iter().sum()
}

/// Pages in the slabs of a cache.
fn slab_pages(ci: &uapi::CacheInfo) -> i64 {
    ((ci.partial_slabs + ci.full_slabs + ci.empty_slabs) * ci.pagesperslab) as i64
}

impl Fuzz {
    // ---------------------------------------------------------------------
    // Reporting.
    // ---------------------------------------------------------------------

    fn fail(&self, msg: impl std::fmt::Display) -> String {
        format!(
            "seed {} op {}: {}: {}\nmodel: faults {:?}, pools {:?} ({} entries), {} caches, \
             quantum {} qset {}\nreplay: LDD_FUZZ_SEED={} LDD_FUZZ_OPS={} ldd-alloc-test fuzz/",
            self.seed,
            self.op,
            self.desc,
            msg,
            self.faults,
            self.pools,
            self.pool_entries,
            self.caches.len(),
            self.gq,
            self.gqs,
            self.seed,
            self.op + 1
        )
    }

    fn expect<T: std::fmt::Debug + PartialEq>(
        &self,
        what: &str,
        got: Result<T, Errno>,
        want: Result<T, Errno>,
    ) -> R {
        if got != want {
            return Err(self.fail(format!("{what}: want {want:?}, got {got:?}")));
        }
        Ok(())
    }

    fn event(&mut self, what: &'static str) {
        *self.events.entry(what).or_default() += 1;
    }

    fn count(&mut self, what: &'static str, malformed: bool) {
        *self.counts.entry(what).or_default() += 1;
        if malformed {
            self.malformed += 1;
        }
    }

    // ---------------------------------------------------------------------
    // Random choices.
    // ---------------------------------------------------------------------

    fn chance(&mut self, percent: u64) -> bool {
        self.rng.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.below(items.len() as u64) as usize]
    }

    fn ptr_kind(&mut self, bad_percent: u64) -> Ptr {
        if !self.chance(bad_percent) {
            return Ptr::Valid;
        }
        self.pick(&[Ptr::Null, Ptr::Bad, Ptr::Kernel, Ptr::ReadOnly])
    }

    fn addr(&self, p: Ptr, valid: usize) -> usize {
        match p {
            Ptr::Valid => valid,
            Ptr::Null => 0,
            Ptr::Bad => BAD_PTR,
            Ptr::Kernel => KERNEL_PTR,
            Ptr::ReadOnly => self.holes.ro(),
        }
    }

    fn pick_len(&mut self) -> usize {
        match self.rng.below(20) {
            0 => 0,
            1..=7 => 1 + self.rng.below(64) as usize,
            8..=13 => 1 + self.rng.below(4096) as usize,
            14..=17 => 1 + self.rng.below(16384) as usize,
            _ => 1 + self.rng.below(BUF as u64) as usize,
        }
    }

    /// An offset within the device's window, biased to quantum and set
    /// boundaries and to the current size.
    fn pick_pos(&mut self, d: usize) -> u64 {
        let m = &self.devs[d];
        let (w, q, ps, size) = (m.window(), m.quantum, m.per_set(), m.size);
        let p = match self.rng.below(6) {
            0 => self.rng.below(w),
            1 => size.saturating_sub(self.rng.below(q + 2)) + self.rng.below(3),
            2 => self.rng.below(w / q.max(1) + 1) * q + self.rng.below(3),
            3 => self.rng.below(w / ps.max(1) + 1) * ps,
            4 => self.rng.below(4096),
            _ => size + self.rng.below(2 * q + 1),
        };
        p.min(w)
    }

    fn pick_fd(&mut self) -> Result<usize, String> {
        if self.files.is_empty() {
            self.open_file(None)?;
        }
        if self.files.is_empty() {
            // Every open failed (a trim refused): the ioctl goes to a
            // plain O_RDWR file.
            let d = self.rng.below(NDEV as u64) as usize;
            self.open_plain(d)?;
        }
        Ok(self.rng.below(self.files.len() as u64) as usize)
    }

    // ---------------------------------------------------------------------
    // Model helpers.
    // ---------------------------------------------------------------------

    fn cache_index(&self, size: u64) -> Option<usize> {
        self.caches.iter().position(|&(s, f)| s == size && f == 0)
    }

    /// `caches::get(size, flags)` on the model: Ok if it exists or there is
    /// room for it, ENOSPC otherwise (the registry holds 32).
    fn cache_room(&self, size: u64, flags: u32) -> Result<(), Errno> {
        if self.caches.contains(&(size, flags)) || self.caches.len() < MAX_CACHES {
            Ok(())
        } else {
            Err(Errno::ENOSPC)
        }
    }

    /// Re-reads the pool registry: live element sizes and its length.
    fn resync_pools(&mut self) -> R {
        let mut live = BTreeSet::new();
        let mut n = 0;
        loop {
            let mut pi = uapi::PoolInfo {
                index: n as u32,
                ..Default::default()
            };
            match self.ctl[0].ioctl(uapi::LDD_IOC_POOL_INFO, &mut pi as *mut _ as usize) {
                Ok(_) => {
                    if pi.live != 0 {
                        live.insert(pi.element_size);
                    }
                    n += 1;
                }
                Err(Errno::ENOENT) | Err(Errno::ENOTTY) => break,
                Err(e) => return Err(self.fail(format!("POOL_INFO resync: {e}"))),
            }
        }
        self.pools = live;
        self.pool_entries = n;
        Ok(())
    }

    /// Pages of the slabs of pool-private caches (their reserves).
    fn private_pages(&self) -> Result<i64, String> {
        let mut pages = 0;
        for i in 0..self.caches.len() {
            let mut ci = uapi::CacheInfo {
                index: i as u32,
                ..Default::default()
            };
            self.ctl[0]
                .ioctl(uapi::LDD_IOC_CACHE_INFO, &mut ci as *mut _ as usize)
                .map_err(|e| self.fail(format!("CACHE_INFO {i}: {e}")))?;
            if ci.flags & uapi::cache_flags::POOL_PRIVATE != 0 {
                pages += slab_pages(&ci);
            }
        }
        Ok(pages)
    }

    /// Re-reads the registry (after something we do not model created a cache).
    fn resync_caches(&mut self) -> R {
        let mut v = Vec::new();
        loop {
            let mut ci = uapi::CacheInfo {
                index: v.len() as u32,
                ..Default::default()
            };
            match self.ctl[0].ioctl(uapi::LDD_IOC_CACHE_INFO, &mut ci as *mut _ as usize) {
                Ok(_) => v.push((ci.objsize, ci.flags)),
                Err(Errno::ENOENT) => break,
                Err(e) => return Err(self.fail(format!("CACHE_INFO resync: {e}"))),
            }
        }
        self.caches = v;
        Ok(())
    }

    /// The model's `Backend::from_abi(value, order, quantum)` check:
    /// Ok(true) when it may also fail with ENOMEM (a new pool fills its
    /// reserve from a cache while page allocations are made to fail).
    fn backend_ok(&self, value: u32, order: u32, quantum: u64) -> Result<bool, Errno> {
        match value {
            be::KMALLOC | be::VMALLOC => Ok(false),
            be::CACHE => self.cache_room(quantum, 0).map(|()| false),
            be::PAGES if order <= STORE_MAX_ORDER => Ok(false),
            be::MEMPOOL if !self.mempool => Err(Errno::ENODEV),
            be::MEMPOOL if self.pools.contains(&quantum) => Ok(false),
            // Elements below the core's MIN_ELEMENT (8) cannot carry the
            // reserve's links: refused before any cache is made.
            be::MEMPOOL if quantum < MIN_ELEMENT => Err(Errno::EINVAL),
            be::MEMPOOL if self.pool_entries >= MAX_POOLS => Err(Errno::ENOSPC),
            be::MEMPOOL => self
                .cache_room(quantum, uapi::cache_flags::POOL_PRIVATE)
                .map(|()| self.armed()),
            _ => Err(Errno::EINVAL),
        }
    }

    /// After a backend was made (or failed to be): the registries as the
    /// kernel has them now.
    fn after_backend(&mut self, value: u32) -> R {
        if matches!(value, be::CACHE | be::MEMPOOL) {
            self.resync_caches()?;
        }
        if value == be::MEMPOOL {
            self.mempool_used = true;
            self.resync_pools()?;
        }
        Ok(())
    }

    /// Whether a new quantum of device `d` may fail to be allocated now.
    fn may_fail_alloc(&self, d: usize) -> bool {
        let m = &self.devs[d];
        let f = self.faults;
        if !(f.all || f.next > 0) {
            return false;
        }
        match m.backend {
            be::CACHE => {
                f.owner == 0
                    || self
                        .cache_index(m.quantum)
                        .is_some_and(|i| i as u32 + 1 == f.owner)
            }
            be::MEMPOOL => true,
            _ => false,
        }
    }

    fn armed(&self) -> bool {
        self.faults.all || self.faults.next > 0
    }

    /// Whether a trim of device `d` (an O_WRONLY|O_TRUNC open) works:
    /// Ok(maybe ENOMEM), or the errno.
    fn trim_plan(&self, d: usize) -> Result<bool, Errno> {
        let (b, o) = (self.devs[d].backend, self.devs[d].order);
        self.backend_ok(b, o, self.gq)
    }

    /// A trim of device `d` happened (`Ok`) or failed: the model follows.
    fn trim_done(&mut self, d: usize, done: bool) -> R {
        let (b, o) = (self.devs[d].backend, self.devs[d].order);
        if done {
            let (q, qs) = (self.gq, self.gqs);
            self.devs[d].trim_to(b, o, q, qs);
        }
        self.after_backend(b)
    }

    /// Checks the result of a trimming open against the plan.
    fn check_trim<T: std::fmt::Debug>(&mut self, d: usize, r: &Result<T, Errno>) -> R {
        let plan = self.trim_plan(d);
        let done = match (r, plan) {
            (Ok(_), Ok(_)) => true,
            (Err(Errno::ENOMEM), Ok(true)) => false,
            (Err(e), Err(w)) if *e == w => false,
            (r, w) => {
                return Err(self.fail(format!("trimming open: want {w:?}, got {r:?}")));
            }
        };
        self.trim_done(d, done)
    }

    // ---------------------------------------------------------------------
    // Checks against the device.
    // ---------------------------------------------------------------------

    fn check_info(&self, d: usize, info: &uapi::DeviceInfo) -> R {
        let m = &self.devs[d];
        let want = uapi::DeviceInfo {
            abi_version: uapi::ABI_VERSION,
            module_version: info.module_version,
            index: d as u32,
            backend: m.backend,
            quantum: m.quantum as u32,
            qset: m.qset as u32,
            order: m.order,
            qsets: m.qsets as u32,
            size: m.size,
            bytes_held: m.quanta.len() as u64 * m.quantum,
            quanta: m.quanta.len() as u64,
        };
        if *info != want {
            return Err(self.fail(format!(
                "INFO of device {d}:\n  got  {info:?}\n  want {want:?}"
            )));
        }
        Ok(())
    }

    fn info(&self, d: usize) -> Result<uapi::DeviceInfo, String> {
        self.ctl[d]
            .ioctl_get::<uapi::DeviceInfo>(uapi::LDD_IOC_INFO)
            .map_err(|e| self.fail(format!("INFO of device {d}: {e}")))
    }

    /// Compares `len` bytes at `pos` of device `d` with the model.
    fn compare(&mut self, d: usize, pos: u64, len: usize) -> R {
        let mut buf = std::mem::take(&mut self.rbuf);
        buf.resize(len, 0);
        let r = self.ctl[d].pread(&mut buf, pos);
        let size = self.devs[d].size;
        let want_n = if pos >= size {
            0
        } else {
            (size - pos).min(len as u64) as usize
        };
        let out = match r {
            Ok(n) if n == want_n => {
                let want = self.devs[d].data.get(pos, n);
                match first_diff(&buf[..n], &want) {
                    None => Ok(()),
                    Some(i) => Err(self.fail(format!(
                        "device {d} byte {} differs: read {:#04x}, model {:#04x} \
                         (read of {len} at {pos}, size {size})",
                        pos + i as u64,
                        buf[i],
                        want[i]
                    ))),
                }
            }
            other => Err(self.fail(format!(
                "verify read of {len} at {pos} on device {d}: got {other:?}, want Ok({want_n})"
            ))),
        };
        self.rbuf = buf;
        out
    }

    /// INFO and every byte that can hold data, plus hole samples and EOF.
    fn verify(&mut self, d: usize) -> R {
        let info = self.info(d)?;
        self.check_info(d, &info)?;
        let size = self.devs[d].size;
        let dense = size.min(self.devs[d].window() + NEAR);
        let mut pos = 0;
        while pos < dense {
            let n = (dense - pos).min(256 << 10) as usize;
            self.compare(d, pos, n)?;
            pos += n as u64;
        }
        for (p, n) in self.devs[d].data.extents() {
            if p + n as u64 > dense {
                self.compare(d, p, n)?;
            }
        }
        if size > dense {
            for _ in 0..4 {
                let p = dense + self.rng.below(size - dense);
                self.compare(d, p, 4096)?;
            }
            self.compare(d, size - 1, 1)?;
        }
        // At and past the end: 0 bytes.
        self.compare(d, size, 16)?;
        Ok(())
    }

    // ---------------------------------------------------------------------
    // Files.
    // ---------------------------------------------------------------------

    fn open_plain(&mut self, d: usize) -> R {
        let fd = Fd::open(&format!("/dev/ldd_alloc{d}"), libc::O_RDWR)
            .map_err(|e| self.fail(format!("plain open of device {d}: {e}")))?;
        self.files.push(FileModel {
            fd,
            dev: d,
            pos: 0,
            read: true,
            write: true,
            append: false,
            handles: BTreeSet::new(),
        });
        Ok(())
    }

    fn close_file(&mut self, i: usize) {
        let f = self.files.swap_remove(i);
        drop(f);
    }

    /// Opens a random device with random flags (O_WRONLY|O_TRUNC trims).
    fn open_file(&mut self, flags: Option<i32>) -> R {
        if self.files.len() >= MAX_FDS {
            let i = self.rng.below(self.files.len() as u64) as usize;
            self.close_file(i);
        }
        let d = self.rng.below(NDEV as u64) as usize;
        let flags = match flags {
            Some(f) => f,
            None => {
                let acc = self.pick(&[libc::O_RDONLY, libc::O_WRONLY, libc::O_RDWR, libc::O_RDWR]);
                let mut f = acc;
                if self.chance(30) {
                    f |= libc::O_TRUNC;
                }
                if self.chance(20) {
                    f |= libc::O_APPEND;
                }
                f
            }
        };
        let acc = flags & libc::O_ACCMODE;
        let trims = acc == libc::O_WRONLY && flags & libc::O_TRUNC != 0;
        let _ = write!(self.desc, " open dev {d} flags {flags:#o}");
        self.count(if trims { "open_trim" } else { "open" }, false);
        self.trace();
        let r = Fd::open(&format!("/dev/ldd_alloc{d}"), flags);
        if trims {
            self.check_trim(d, &r)?;
        } else if let Err(e) = r {
            return Err(self.fail(format!("open: {e}")));
        }
        match r {
            Ok(fd) => {
                self.files.push(FileModel {
                    fd,
                    dev: d,
                    pos: 0,
                    read: acc != libc::O_WRONLY,
                    write: acc != libc::O_RDONLY,
                    append: flags & libc::O_APPEND != 0,
                    handles: BTreeSet::new(),
                });
                Ok(())
            }
            Err(_) => Ok(()),
        }
    }

    // ---------------------------------------------------------------------
    // Writes.
    // ---------------------------------------------------------------------

    /// Whether a write of `len` at `start` keeps device `d` bounded.
    fn allowed(&self, d: usize, start: u64, len: usize) -> bool {
        let m = &self.devs[d];
        start >= self.limit
            || start + len as u64 <= m.window()
            || (m.near_ok() && start >= self.limit - NEAR)
    }

    /// The chunks of a write of `want` bytes at `start` (after the limit
    /// check), with what may go wrong in each.
    fn chunks(&self, d: usize, start: u64, want: usize, src: Src) -> Vec<Chunk> {
        let m = &self.devs[d];
        let may_fail = self.may_fail_alloc(d);
        let mut v = Vec::new();
        let mut done = 0usize;
        let mut new_quanta = BTreeSet::new();
        while done < want {
            let pos = start + done as u64;
            let off = (pos % m.quantum) as usize;
            let len = (m.quantum as usize - off).min(want - done);
            let qidx = pos / m.quantum;
            let fresh = !m.quanta.contains(&qidx) && !new_quanta.contains(&qidx);
            new_quanta.insert(qidx);
            let copy_fails = match src {
                Src::Valid | Src::ReadOnly => false,
                Src::Faulting(_) | Src::Kernel => true,
                Src::Partial(k) => done + len > k,
            };
            v.push(Chunk {
                pos,
                len,
                user: done,
                set: pos / m.per_set(),
                qidx,
                fresh,
                alloc_may_fail: fresh && may_fail,
                copy_fails,
            });
            if copy_fails {
                break;
            }
            done += len;
        }
        v
    }

    /// Issues a write (`pwrite` at `off`, or `write` at the file's position)
    /// of `len` bytes from `src` on file `fi`, and checks it.
    fn do_write(&mut self, fi: usize, off: Option<i64>, len: usize, src: Src) -> R {
        let d = self.files[fi].dev;
        let (readable, writable, append, fpos) = {
            let f = &self.files[fi];
            (f.read, f.write, f.append, f.pos)
        };
        let _ = readable;
        // The source bytes (what a fully successful write stores).
        let (addr, data): (usize, Vec<u8>) = match src {
            Src::Valid => {
                let mut b = std::mem::take(&mut self.buf);
                self.rng.fill(&mut b[..len]);
                let data = b[..len].to_vec();
                let a = b.as_ptr() as usize;
                self.buf = b;
                (a, data)
            }
            Src::ReadOnly => {
                let mut v = vec![0u8; len];
                let ro = RO_VALUE.to_le_bytes();
                let n = len.min(4);
                v[..n].copy_from_slice(&ro[..n]);
                (self.holes.ro(), v)
            }
            Src::Faulting(a) => (a, vec![0; len]),
            Src::Kernel => (KERNEL_PTR, vec![0; len]),
            Src::Partial(k) => {
                let mut good = vec![0u8; k];
                self.rng.fill(&mut good);
                self.holes.tail_mut(k).copy_from_slice(&good);
                let mut v = vec![0u8; len];
                v[..k].copy_from_slice(&good);
                (self.holes.guard() - k, v)
            }
        };
        let _ = write!(
            self.desc,
            " {} fd {fi} dev {d} len {len} src {src:?}{}",
            if off.is_some() { "pwrite" } else { "write" },
            match off {
                Some(o) => format!(" at {o}"),
                None => format!(" f_pos {fpos} append {append}"),
            }
        );
        self.trace();
        let r = match off {
            Some(o) => self.files[fi].fd.pwrite_raw(addr, len, o),
            None => self.files[fi].fd.write_raw(addr, len),
        };
        // The VFS checks, in order.
        let ppos = off.unwrap_or(fpos);
        let early = if off.is_some_and(|o| o < 0) {
            Some(Errno::EINVAL)
        } else if !writable {
            Some(Errno::EBADF)
        } else if matches!(src, Src::Kernel) {
            Some(Errno::EFAULT)
        } else if ppos.checked_add(len as i64).is_none() {
            Some(Errno::EINVAL)
        } else {
            None
        };
        if let Some(e) = early {
            return self.expect("write (VFS check)", r, Err(e));
        }
        let start = if append {
            self.devs[d].size
        } else {
            ppos as u64
        };
        // The driver: the size limit first.
        let mut want = len as u64;
        if start.saturating_add(want) > self.limit {
            if start >= self.limit {
                self.event("write_enospc");
                return self.expect("write past the limit", r, Err(Errno::ENOSPC));
            }
            self.event("write_cut_at_limit");
            want = self.limit - start;
        }
        let want = want as usize;
        let chunks = self.chunks(d, start, want, src);
        let n = match r {
            Ok(n) => n,
            Err(Errno::ENOMEM) | Err(Errno::EFAULT) => 0,
            Err(e) => return Err(self.fail(format!("write: unexpected {e}"))),
        };
        // Where it stopped and why.
        let stop = if r == Ok(want) {
            if chunks.iter().any(|c| c.copy_fails) {
                return Err(self.fail(format!(
                    "write: want a fault or a short count, got Ok({want})"
                )));
            }
            None
        } else {
            let Some(i) = chunks.iter().position(|c| c.user == n) else {
                return Err(self.fail(format!(
                    "write returned {r:?}: not a chunk boundary of {chunks:?}"
                )));
            };
            if r == Ok(0) {
                return Err(self.fail("write returned 0 for a non-empty request"));
            }
            let c = chunks[i];
            let alloc = c.alloc_may_fail && matches!(r, Ok(_) | Err(Errno::ENOMEM));
            let copy = c.copy_fails && matches!(r, Ok(_) | Err(Errno::EFAULT));
            let copy = match (alloc, copy) {
                (false, false) => {
                    return Err(self.fail(format!(
                        "write returned {r:?}: stopped at {c:?}, which cannot fail \
                         (faults {:?})",
                        self.faults
                    )))
                }
                (true, false) => false,
                (false, true) => true,
                (true, true) => {
                    // Tell the two apart by the quanta held.
                    let held = self.info(d)?.quanta;
                    let before = self.devs[d].quanta.len() as u64
                        + chunks[..i].iter().filter(|c| c.fresh).count() as u64;
                    held == before + 1
                }
            };
            self.event(match (copy, r) {
                (true, Ok(_)) => "write_short_fault",
                (true, _) => "write_efault_in_driver",
                (false, Ok(_)) => "write_short_enomem",
                (false, _) => "write_enomem",
            });
            Some((i, copy))
        };
        // Apply what was done.
        let end = stop.map_or(chunks.len(), |(i, _)| i);
        {
            let m = &mut self.devs[d];
            for c in &chunks[..end] {
                m.qsets = m.qsets.max(c.set + 1);
                m.quanta.insert(c.qidx);
                m.data.put(c.pos, &data[c.user..c.user + c.len]);
                m.size = m.size.max(c.pos + c.len as u64);
            }
        }
        if let Some((i, copy)) = stop {
            let c = chunks[i];
            self.devs[d].qsets = self.devs[d].qsets.max(c.set + 1);
            if copy {
                self.devs[d].quanta.insert(c.qidx);
                self.settle(d, c, &data, src)?;
            }
        }
        if off.is_none() && r.is_ok() {
            self.files[fi].pos = (start + n as u64) as i64;
        }
        Ok(())
    }

    /// After a chunk whose copy from user memory faulted: its bytes may hold
    /// the old data, zeros, or (before the fault) the new data. Reads back
    /// what is visible and adopts it; what lies past the size stays zero.
    fn settle(&mut self, d: usize, c: Chunk, data: &[u8], src: Src) -> R {
        let size = self.devs[d].size;
        if c.pos >= size {
            return Ok(());
        }
        let n = (size - c.pos).min(c.len as u64) as usize;
        let mut got = vec![0u8; n];
        let r = self.ctl[d].pread(&mut got, c.pos);
        if r != Ok(n) {
            return Err(self.fail(format!("read back after a faulting write: {r:?}")));
        }
        let old = self.devs[d].data.get(c.pos, n);
        let good = match src {
            Src::Partial(k) => k,
            _ => 0,
        };
        for j in 0..n {
            let u = c.user + j;
            let ok = got[j] == old[j] || got[j] == 0 || (u < good && got[j] == data[u]);
            if !ok {
                return Err(self.fail(format!(
                    "byte {} after a faulting write is {:#04x}: neither old {:#04x}, \
                     zero, nor new",
                    c.pos + j as u64,
                    got[j],
                    old[j]
                )));
            }
        }
        self.devs[d].data.put(c.pos, &got);
        Ok(())
    }

    fn op_write(&mut self) -> R {
        let fi = self.pick_fd()?;
        let d = self.files[fi].dev;
        let positional = self.chance(50);
        let size = self.devs[d].size;
        // The source.
        let roll = self.rng.below(100);
        let (src, mut len, malformed) = if roll < 86 {
            (Src::Valid, self.pick_len(), false)
        } else if roll < 89 {
            (Src::ReadOnly, 1 + self.rng.below(PAGE_SIZE) as usize, false)
        } else if roll < 93 {
            let a = self.pick(&[0usize, BAD_PTR]);
            (Src::Faulting(a), 1 + self.rng.below(20000) as usize, true)
        } else if roll < 95 {
            (Src::Kernel, self.rng.below(20000) as usize, true)
        } else {
            let len = 2 + self.rng.below(12000) as usize;
            let k = 1 + self.rng.below(len as u64 - 1) as usize;
            (Src::Partial(k), len, true)
        };
        // Where.
        let mut off = None;
        let mut bad_off = false;
        if positional {
            let o: i64 = match self.rng.below(100) {
                0..=84 => self.pick_pos(d) as i64,
                85..=88 => {
                    bad_off = true;
                    {
                        let r = -(self.rng.below(1 << 30) as i64) - 1;
                        self.pick(&[-1, -4096, i64::MIN, r])
                    }
                }
                89..=92 => {
                    bad_off = true;
                    (self.limit + self.pick(&[0, 1, 4096, 1 << 30, 1 << 40])) as i64
                }
                93..=94 => {
                    bad_off = true;
                    i64::MAX - self.rng.below(16) as i64
                }
                _ => {
                    if self.devs[d].near_ok() {
                        (self.limit - self.rng.below(NEAR.min(2 * len as u64 + 2))) as i64
                    } else {
                        self.pick_pos(d) as i64
                    }
                }
            };
            off = Some(o);
        }
        let (append, fpos) = (self.files[fi].append, self.files[fi].pos);
        let start = match off {
            Some(o) => o.max(0) as u64,
            None if append => size,
            None => fpos.max(0) as u64,
        };
        // A partially faulting buffer only inside the current data, so its
        // uncertain bytes can be read back.
        if let Src::Partial(_) = src {
            if append || start + len as u64 > size || start >= self.limit {
                return self.op_write_fallback(fi);
            }
        }
        // A faulting source allocates one quantum at most, at `start`.
        let reach = match src {
            Src::Faulting(_) | Src::Kernel => 1,
            _ => len,
        };
        if !self.allowed(d, start, reach) && !bad_off {
            if append || matches!(src, Src::Partial(_)) {
                return self.op_write_fallback(fi);
            }
            // Move back into the window first, and fit in it.
            let p = self.pick_pos(d);
            let room = (self.devs[d].window() - p) as usize;
            if reach > 1 {
                len = len.min(room);
            }
            match off {
                Some(_) => off = Some(p as i64),
                None => {
                    let _ = write!(self.desc, " (lseek {p})");
                    let r = self.files[fi].fd.lseek(p as i64, libc::SEEK_SET);
                    self.expect("lseek back into the window", r, Ok(p as i64))?;
                    self.files[fi].pos = p as i64;
                }
            }
        }
        let bad = malformed || bad_off || !self.files[fi].write;
        self.count(if off.is_some() { "pwrite" } else { "write" }, bad);
        self.do_write(fi, off, len, src)
    }

    fn op_write_fallback(&mut self, fi: usize) -> R {
        let d = self.files[fi].dev;
        let p = self.pick_pos(d);
        let len = self.pick_len().min((self.devs[d].window() - p) as usize);
        let p = p as i64;
        self.count("pwrite", !self.files[fi].write);
        self.do_write(fi, Some(p), len, Src::Valid)
    }

    // ---------------------------------------------------------------------
    // Reads and seeks.
    // ---------------------------------------------------------------------

    fn op_read(&mut self) -> R {
        let fi = self.pick_fd()?;
        let d = self.files[fi].dev;
        let positional = self.chance(50);
        let len = self.pick_len();
        let roll = self.rng.below(100);
        let (kind, malformed) = if roll < 90 {
            (Ptr::Valid, false)
        } else {
            (
                self.pick(&[Ptr::Null, Ptr::Bad, Ptr::Kernel, Ptr::ReadOnly]),
                true,
            )
        };
        let partial = roll >= 97;
        let mut off = None;
        let mut bad_off = false;
        if positional {
            off = Some(match self.rng.below(20) {
                0 => {
                    bad_off = true;
                    self.pick(&[-1i64, i64::MIN, -4097])
                }
                1 => i64::MAX - self.rng.below(8) as i64,
                2 => (self.limit + self.rng.below(1 << 20)) as i64,
                _ => self.pick_pos(d) as i64,
            });
        }
        let f = &self.files[fi];
        let ppos = off.unwrap_or(f.pos);
        let (readable, fpos) = (f.read, f.pos);
        let mut buf = std::mem::take(&mut self.rbuf);
        buf.resize(len.max(1), 0xa5);
        let (addr, k) = if partial && len > 1 {
            let k = 1 + self.rng.below(len as u64 - 1) as usize;
            (self.holes.guard() - k, Some(k))
        } else {
            (self.addr(kind, buf.as_mut_ptr() as usize), None)
        };
        let _ = write!(
            self.desc,
            " {} fd {fi} dev {d} len {len} ptr {kind:?} partial {k:?}{}",
            if off.is_some() { "pread" } else { "read" },
            match off {
                Some(o) => format!(" at {o}"),
                None => format!(" f_pos {fpos}"),
            }
        );
        self.count(
            if off.is_some() { "pread" } else { "read" },
            malformed || bad_off || !readable || k.is_some(),
        );
        self.trace();
        let r = match off {
            Some(o) => self.files[fi].fd.pread_raw(addr, len, o),
            None => self.files[fi].fd.read_raw(addr, len),
        };
        let size = self.devs[d].size;
        let want: Result<usize, Errno> = if off.is_some_and(|o| o < 0) {
            Err(Errno::EINVAL)
        } else if !readable {
            Err(Errno::EBADF)
        } else if k.is_none() && kind == Ptr::Kernel {
            Err(Errno::EFAULT)
        } else if ppos.checked_add(len as i64).is_none() {
            Err(Errno::EINVAL)
        } else {
            let start = ppos as u64;
            let n = if start >= size {
                0
            } else {
                (size - start).min(len as u64) as usize
            };
            match k {
                Some(k) if n > k => Err(Errno::EFAULT),
                None if n > 0 && kind.is_bad() => Err(Errno::EFAULT),
                _ => Ok(n),
            }
        };
        // A zero-length access with a kernel pointer may be refused too.
        let out = if len == 0 && kind == Ptr::Kernel && r == Ok(0) {
            Ok(())
        } else {
            self.expect("read", r, want)
        };
        if out.is_ok() {
            if let (Ok(n), None, Ptr::Valid) = (r, k, kind) {
                let model = self.devs[d].data.get(ppos as u64, n);
                if let Some(i) = first_diff(&buf[..n], &model) {
                    let msg = format!(
                        "read data: byte {} is {:#04x}, model {:#04x}",
                        ppos as u64 + i as u64,
                        buf[i],
                        model[i]
                    );
                    self.rbuf = buf;
                    return Err(self.fail(msg));
                }
            }
            if off.is_none() {
                if let Ok(n) = r {
                    self.files[fi].pos = fpos + n as i64;
                }
            }
        }
        self.rbuf = buf;
        out
    }

    fn op_lseek(&mut self) -> R {
        let fi = self.pick_fd()?;
        let d = self.files[fi].dev;
        let whence = match self.rng.below(20) {
            0..=5 => libc::SEEK_SET,
            6..=11 => libc::SEEK_CUR,
            12..=17 => libc::SEEK_END,
            _ => self.pick(&[3, 4, 5, 7, -1, i32::MAX]),
        };
        let size = self.devs[d].size as i64;
        let pos = self.files[fi].pos;
        let base = match whence {
            libc::SEEK_SET => 0,
            libc::SEEK_CUR => pos,
            _ => size,
        };
        let target: i64 = match self.rng.below(20) {
            0 => -1 - self.rng.below(1 << 20) as i64,
            1 => self.pick(&[i64::MIN, i64::MAX, i64::MAX - 1]),
            2 => (self.limit + self.rng.below(1 << 30)) as i64,
            3 => (self.limit - 1 - self.rng.below(NEAR)) as i64,
            _ => self.pick_pos(d) as i64,
        };
        let offset = if self.chance(90) {
            target.wrapping_sub(base)
        } else {
            target
        };
        let _ = write!(
            self.desc,
            " lseek fd {fi} dev {d} off {offset} whence {whence} (pos {pos}, size {size})"
        );
        let want = match whence {
            libc::SEEK_SET | libc::SEEK_CUR | libc::SEEK_END => match base.checked_add(offset) {
                Some(n) if n >= 0 => Ok(n),
                _ => Err(Errno::EINVAL),
            },
            _ => Err(Errno::EINVAL),
        };
        self.count("lseek", want.is_err());
        let r = self.files[fi].fd.lseek(offset, whence);
        self.expect("lseek", r, want)?;
        if let Ok(n) = r {
            self.files[fi].pos = n;
        }
        Ok(())
    }

    // ---------------------------------------------------------------------
    // ioctls.
    // ---------------------------------------------------------------------

    fn op_set_backend(&mut self) -> R {
        let fi = self.pick_fd()?;
        let d = self.files[fi].dev;
        if self.chance(50) {
            // Empty it first, with a trim through a file of its own.
            let _ = write!(self.desc, " trim dev {d} first;");
            let r = Fd::open(
                &format!("/dev/ldd_alloc{d}"),
                libc::O_WRONLY | libc::O_TRUNC,
            )
            .map(drop);
            self.check_trim(d, &r)?;
        }
        let arg: u64 = match self.rng.below(20) {
            0..=13 => {
                let b = self.rng.below(u64::from(be::COUNT));
                let order = if b == u64::from(be::PAGES) {
                    if self.chance(85) {
                        self.rng.below(u64::from(STORE_MAX_ORDER) + 1)
                    } else {
                        4 + self.rng.below(200)
                    }
                } else if self.chance(20) {
                    self.rng.below(1 << 20)
                } else {
                    0
                };
                b | order << 8
            }
            14..=16 => 5 + self.rng.below(251),
            17 => self.pick(&[u64::MAX, 1 << 32, (1 << 32) | 1, 1 << 40]),
            _ => self.rng.next_u64() & 0xffff_ffff,
        };
        let _ = write!(self.desc, " SET_BACKEND fd {fi} dev {d} arg {arg:#x}");
        let (value, order) = ((arg & 0xff) as u32, (arg >> 8) as u32);
        let want = if arg > u64::from(u32::MAX) {
            Err(Errno::EINVAL)
        } else if !self.devs[d].quanta.is_empty() {
            Err(Errno::EBUSY)
        } else {
            let q = if self.devs[d].backend == be::PAGES {
                self.gq
            } else {
                self.devs[d].quantum
            };
            self.backend_ok(value, order, q).map(|maybe| (maybe, q))
        };
        self.count("set_backend", want.is_err());
        self.trace();
        let r = self.files[fi]
            .fd
            .ioctl(uapi::LDD_IOC_SET_BACKEND, arg as usize);
        match (r, want) {
            (Ok(0), Ok((_, q))) => {
                let qs = self.devs[d].qset;
                self.devs[d].trim_to(value, order, q, qs);
            }
            (Err(Errno::ENOMEM), Ok((true, _))) => self.event("set_backend_pool_enomem"),
            (Err(e), Err(w)) if e == w => self.event(match e {
                Errno::EBUSY => "set_backend_ebusy",
                Errno::EINVAL if value == be::MEMPOOL => "set_backend_pool_too_small",
                Errno::ENOSPC => "set_backend_enospc",
                _ => "set_backend_einval",
            }),
            (r, w) => return Err(self.fail(format!("SET_BACKEND: want {w:?}, got {r:?}"))),
        }
        if arg <= u64::from(u32::MAX) {
            self.after_backend(value)?;
        }
        Ok(())
    }

    /// A quantum (`qset == false`) or qset value: valid, or not.
    fn pick_value(&mut self, qset: bool) -> i64 {
        if self.chance(75) {
            if qset {
                if self.chance(90) {
                    1 + self.rng.below(64) as i64
                } else {
                    self.pick(&[1000, 4000])
                }
            } else {
                self.pick(&QUANTA)
            }
        } else {
            let max = if qset {
                uapi::QSET_MAX
            } else {
                uapi::QUANTUM_MAX
            };
            self.pick(&[
                0,
                -1,
                -4000,
                i64::from(i32::MIN),
                i64::from(max) + 1,
                i64::from(i32::MAX),
            ])
        }
    }

    fn valid(v: i64, qset: bool) -> bool {
        let max = if qset {
            uapi::QSET_MAX
        } else {
            uapi::QUANTUM_MAX
        };
        v >= 1 && v <= i64::from(max)
    }

    fn op_scull(&mut self) -> R {
        let fi = self.pick_fd()?;
        let nr = self.rng.below(13) as u8;
        let cmd = uapi::SCULL_IOCTLS[nr as usize];
        let qset = matches!(nr, 2 | 4 | 6 | 8 | 10 | 12);
        let writes = !matches!(nr, 5..=8);
        let cur = if qset { self.gqs } else { self.gq } as i64;
        // Boundaries: the largest value is accepted (set it and put it back).
        if matches!(nr, 11 | 12) && self.admin && self.chance(10) {
            let max = if qset {
                uapi::QSET_MAX
            } else {
                uapi::QUANTUM_MAX
            };
            let _ = write!(
                self.desc,
                " H{} {max} and back",
                if qset { "QSET" } else { "QUANTUM" }
            );
            self.count("scull", false);
            let r = self.files[fi].fd.ioctl(cmd, max as usize);
            self.expect("H max", r, Ok(cur as i32))?;
            let r = self.files[fi].fd.ioctl(cmd, cur as usize);
            return self.expect("H back", r, Ok(max as i32));
        }
        let mut cell: i32 = 0;
        let (arg, ptr, value): (usize, Ptr, i64) = match nr {
            1 | 2 | 9 | 10 => {
                let p = self.ptr_kind(15);
                let v = match p {
                    Ptr::ReadOnly => i64::from(RO_VALUE),
                    _ => self.pick_value(qset),
                };
                cell = v as i32;
                let v = i64::from(cell);
                (self.addr(p, &mut cell as *mut i32 as usize), p, v)
            }
            5 | 6 => {
                let p = self.ptr_kind(15);
                (self.addr(p, &mut cell as *mut i32 as usize), p, 0)
            }
            3 | 4 | 11 | 12 => {
                let v = if self.chance(10) {
                    self.pick(&[1i64 << 32, (1 << 32) + 100, -1, i64::MIN, 1 << 40])
                } else {
                    self.pick_value(qset)
                };
                (v as usize, Ptr::Valid, v)
            }
            _ => (self.rng.next_u64() as usize, Ptr::Valid, 0),
        };
        // The model's answer and the geometry after.
        let mut new = cur;
        let mut out_cell: Option<i32> = None;
        let want: Result<i32, Errno> = if writes && !self.admin {
            Err(Errno::EPERM)
        } else {
            match nr {
                0 => {
                    self.gq = self.dq;
                    self.gqs = self.dqs;
                    new = if qset { self.dqs } else { self.dq } as i64;
                    Ok(0)
                }
                1 | 2 => match p_read(ptr) {
                    false => Err(Errno::EFAULT),
                    true if Self::valid(value, qset) => {
                        new = value;
                        Ok(0)
                    }
                    true => Err(Errno::EINVAL),
                },
                3 | 4 => {
                    if Self::valid(value, qset) {
                        new = value;
                        Ok(0)
                    } else {
                        Err(Errno::EINVAL)
                    }
                }
                5 | 6 => {
                    if ptr.is_bad() {
                        Err(Errno::EFAULT)
                    } else {
                        out_cell = Some(cur as i32);
                        Ok(0)
                    }
                }
                7 | 8 => Ok(cur as i32),
                9 | 10 => {
                    if !p_read(ptr) {
                        Err(Errno::EFAULT)
                    } else if !Self::valid(value, qset) {
                        Err(Errno::EINVAL)
                    } else {
                        new = value;
                        if ptr == Ptr::Valid {
                            out_cell = Some(cur as i32);
                            Ok(0)
                        } else {
                            // Read-only: swapped, then the write back faults.
                            Err(Errno::EFAULT)
                        }
                    }
                }
                _ => {
                    if Self::valid(value, qset) {
                        new = value;
                        Ok(cur as i32)
                    } else {
                        Err(Errno::EINVAL)
                    }
                }
            }
        };
        let _ = write!(
            self.desc,
            " scull nr {nr} cmd {cmd:#x} arg {arg:#x} ptr {ptr:?} value {value} (quantum {} qset {})",
            self.gq, self.gqs
        );
        self.count("scull", want.is_err());
        let r = self.files[fi].fd.ioctl(cmd, arg);
        self.expect("scull ioctl", r, want)?;
        if nr != 0 {
            if qset {
                self.gqs = new as u64;
            } else {
                self.gq = new as u64;
            }
        }
        // SAFETY: `cell` is a live local; the kernel may have written it.
        let cell = unsafe { std::ptr::read_volatile(&cell) };
        if let Some(c) = out_cell {
            if cell != c {
                return Err(self.fail(format!("scull ioctl wrote {cell}, want {c}")));
            }
        }
        Ok(())
    }

    fn known_cmds(&self) -> Vec<u32> {
        let mut known = uapi::SCULL_IOCTLS.to_vec();
        known.extend([
            uapi::LDD_IOC_INFO,
            uapi::LDD_IOC_SET_BACKEND,
            uapi::LDD_IOC_CACHE_INFO,
            uapi::LDD_IOC_SHRINK,
            uapi::LDD_IOC_PAGE_STATS,
            uapi::LDD_IOC_FAULT,
            uapi::LDD_IOC_BAD_FREE,
            uapi::LDD_IOC_FREE_NULL,
            uapi::LDD_IOC_ALLOC,
            uapi::LDD_IOC_FREE,
            uapi::LDD_IOC_FREE_ALL,
            uapi::LDD_IOC_LIST,
            uapi::LDD_IOC_STACK,
            uapi::LDD_IOC_POOL_INFO,
            uapi::LDD_IOC_POOL_RESIZE,
            uapi::LDD_IOC_POOL_DESTROY,
            uapi::LDD_IOC_BENCH,
        ]);
        known
    }

    fn op_unknown(&mut self) -> R {
        let fi = self.pick_fd()?;
        let known = self.known_cmds();
        // Types the VFS itself answers for any file (FIOCLEX, FIONBIO,
        // FIGETBSZ, FS_IOC_*, FICLONE...): never sent.
        let vfs_types = [0x00u8, b'T', b'f', b'X', 0x15, 0x94];
        let cmd = loop {
            let c = match self.rng.below(5) {
                0 => {
                    // A known command with its direction or size changed.
                    let k = self.pick(&known);
                    let dir = (k >> uapi::IOC_DIRSHIFT) ^ (1 + self.rng.below(3) as u32);
                    let size = if self.chance(50) {
                        ioc_size(k)
                    } else {
                        self.rng.below(1 << uapi::IOC_SIZEBITS) as usize
                    };
                    ioc(dir & 3, ioc_type(k), ioc_nr(k), size)
                }
                1 => {
                    let nr = self.pick(&[13u8, 14, 20, 31, 34, 39, 45, 47, 53, 64, 128, 255]);
                    ioc(
                        self.rng.below(4) as u32,
                        MAGIC,
                        nr,
                        self.rng.below(1 << uapi::IOC_SIZEBITS) as usize,
                    )
                }
                2 => self.pick(&[0u32, u32::MAX, 1, 0x6b, 0x6b00]),
                _ => self.rng.next_u64() as u32,
            };
            if !known.contains(&c) && !vfs_types.contains(&ioc_type(c)) {
                break c;
            }
        };
        let arg = match self.rng.below(4) {
            0 => 0,
            1 => KERNEL_PTR,
            2 => self.buf.as_mut_ptr() as usize,
            _ => self.rng.next_u64() as usize,
        };
        let _ = write!(self.desc, " unknown cmd {cmd:#x} arg {arg:#x} fd {fi}");
        self.count("unknown_cmd", true);
        let r = self.files[fi].fd.ioctl(cmd, arg);
        self.expect("unknown command", r, Err(Errno::ENOTTY))
    }

    fn op_info(&mut self) -> R {
        let fi = self.pick_fd()?;
        let d = self.files[fi].dev;
        let p = self.ptr_kind(20);
        let mut info = uapi::DeviceInfo::default();
        let arg = self.addr(p, &mut info as *mut _ as usize);
        let _ = write!(self.desc, " INFO fd {fi} dev {d} ptr {p:?}");
        self.count("info", p.is_bad());
        let r = self.files[fi].fd.ioctl(uapi::LDD_IOC_INFO, arg);
        if p.is_bad() {
            return self.expect("INFO", r, Err(Errno::EFAULT));
        }
        self.expect("INFO", r, Ok(0))?;
        self.check_info(d, &info)
    }

    /// Checks one cache's counters for sanity; `exact`: after a shrink,
    /// `active_objs` is exactly the quanta our devices hold in it.
    fn check_cache(&self, ci: &uapi::CacheInfo, exact: bool) -> R {
        let (size, flags) = self.caches[ci.index as usize];
        let held: u64 = self
            .devs
            .iter()
            .filter(|m| m.backend == be::CACHE && m.quantum == size && flags == 0)
            .map(|m| m.quanta.len() as u64)
            .sum();
        let ok = ci.objsize == size
            && ci.flags == flags
            && ci.stride >= ci.objsize
            && ci.num_objs >= ci.active_objs
            && ci.active_objs >= held
            && (flags & uapi::cache_flags::TEST_PRIVATE != 0
                || (ci.poison_errors == 0 && ci.redzone_errors == 0))
            && ci.frees <= ci.allocs
            && (!exact || flags & uapi::cache_flags::POOL_PRIVATE != 0 || ci.active_objs == held);
        if !ok {
            return Err(self.fail(format!(
                "CACHE_INFO {} (model: size {size} flags {flags}, {held} quanta held, \
                 exact {exact}): {ci:?}",
                ci.index
            )));
        }
        Ok(())
    }

    fn op_cache_info(&mut self) -> R {
        let fi = self.pick_fd()?;
        let n = self.caches.len() as u64;
        let index = match self.rng.below(10) {
            0 => n + self.rng.below(4),
            1 => self.pick(&[u64::from(u32::MAX), 1 << 31]),
            _ => self.rng.below(n.max(1)),
        } as u32;
        let p = self.ptr_kind(15);
        let mut ci = uapi::CacheInfo {
            index,
            ..Default::default()
        };
        let arg = self.addr(p, &mut ci as *mut _ as usize);
        let _ = write!(
            self.desc,
            " CACHE_INFO index {index} ptr {p:?} ({n} caches)"
        );
        let want = match p {
            Ptr::Valid if (index as usize) < self.caches.len() => Ok(0),
            Ptr::Valid => Err(Errno::ENOENT),
            Ptr::ReadOnly if (RO_VALUE as usize) < self.caches.len() => Err(Errno::EFAULT),
            Ptr::ReadOnly => Err(Errno::ENOENT),
            _ => Err(Errno::EFAULT),
        };
        self.count("cache_info", want.is_err());
        let r = self.files[fi].fd.ioctl(uapi::LDD_IOC_CACHE_INFO, arg);
        self.expect("CACHE_INFO", r, want)?;
        if r.is_ok() {
            if ci.index != index {
                return Err(self.fail(format!("CACHE_INFO index {index} answered {}", ci.index)));
            }
            self.check_cache(&ci, false)?;
        }
        Ok(())
    }

    fn check_stats(&mut self, s: &uapi::PageStats) -> R {
        let p = &self.prev_stats;
        let mono = (0..3).all(|z| s.allocs[z] >= p.allocs[z] && s.frees[z] >= p.frees[z])
            && s.injected >= p.injected
            && s.failures >= p.failures;
        let ok = mono
            && s.pages_out.iter().all(|&v| v >= 0)
            && (s.fail_all != 0) == self.faults.all
            && s.fail_owner == self.faults.owner
            && s.fail_next >= 0
            && s.fail_next <= self.faults.next;
        if !ok {
            return Err(self.fail(format!(
                "PAGE_STATS: {s:?}\n  previous {p:?}\n  faults {:?}",
                self.faults
            )));
        }
        self.faults.next = s.fail_next;
        self.prev_stats = *s;
        Ok(())
    }

    fn op_page_stats(&mut self) -> R {
        let fi = self.pick_fd()?;
        let p = self.ptr_kind(15);
        let mut s = uapi::PageStats::default();
        let arg = self.addr(p, &mut s as *mut _ as usize);
        let _ = write!(self.desc, " PAGE_STATS ptr {p:?}");
        self.count("page_stats", p.is_bad());
        let r = self.files[fi].fd.ioctl(uapi::LDD_IOC_PAGE_STATS, arg);
        if p.is_bad() {
            return self.expect("PAGE_STATS", r, Err(Errno::EFAULT));
        }
        self.expect("PAGE_STATS", r, Ok(0))?;
        self.check_stats(&s)
    }

    fn op_shrink(&mut self) -> R {
        let fi = self.pick_fd()?;
        let arg = self.rng.next_u64() as usize;
        let _ = write!(self.desc, " SHRINK arg {arg:#x}");
        self.count("shrink", false);
        let r = self.files[fi].fd.ioctl(uapi::LDD_IOC_SHRINK, arg);
        match r {
            Ok(n) if n >= 0 => {}
            other => return Err(self.fail(format!("SHRINK: {other:?}"))),
        }
        // Right after a shrink the magazines are empty: exact counts.
        let mut slabs = 0;
        for i in 0..self.caches.len() {
            let mut ci = uapi::CacheInfo {
                index: i as u32,
                ..Default::default()
            };
            let r = self.files[fi]
                .fd
                .ioctl(uapi::LDD_IOC_CACHE_INFO, &mut ci as *mut _ as usize);
            self.expect("CACHE_INFO after SHRINK", r, Ok(0))?;
            self.check_cache(&ci, true)?;
            slabs += slab_pages(&ci);
        }
        // Our page source serves only our caches: what it has out is what
        // their slabs hold.
        let s = self.files[fi]
            .fd
            .ioctl_get::<uapi::PageStats>(uapi::LDD_IOC_PAGE_STATS)
            .map_err(|e| self.fail(format!("PAGE_STATS: {e}")))?;
        self.check_stats(&s)?;
        if sum(&s.pages_out) != slabs {
            return Err(self.fail(format!(
                "pages out {:?} (sum {}) != pages in the slabs of our caches {slabs}",
                s.pages_out,
                sum(&s.pages_out)
            )));
        }
        Ok(())
    }

    fn op_bad_free(&mut self) -> R {
        let fi = self.pick_fd()?;
        let arg: u64 = match self.rng.below(10) {
            0 => u64::from(uapi::bad_free::COUNT) + self.rng.below(100),
            1 => self.pick(&[u64::MAX, 1 << 32, u64::from(u32::MAX)]),
            _ => self.rng.below(5),
        };
        let _ = write!(self.desc, " BAD_FREE {arg} (faults {:?})", self.faults);
        let want = if arg >= u64::from(uapi::bad_free::COUNT) {
            Err(Errno::EINVAL)
        } else {
            // BAD_FREE works on its own private caches (TEST_PRIVATE).
            let test = uapi::cache_flags::TEST_PRIVATE;
            let r = self.cache_room(64, test);
            let r = match r {
                Ok(()) if arg == u64::from(uapi::bad_free::FOREIGN_CACHE) => {
                    // Room for both when neither exists.
                    let both = !self.caches.contains(&(64, test))
                        && !self.caches.contains(&(128, test))
                        && self.caches.len() + 1 >= MAX_CACHES;
                    if both {
                        Err(Errno::ENOSPC)
                    } else {
                        self.cache_room(128, test)
                    }
                }
                other => other,
            };
            r.map(|()| match arg as u32 {
                uapi::bad_free::FOREIGN_KMALLOC => uapi::refusal::FOREIGN,
                uapi::bad_free::FOREIGN_CACHE => uapi::refusal::FOREIGN,
                uapi::bad_free::MISALIGNED => uapi::refusal::MISALIGNED,
                uapi::bad_free::DOUBLE => uapi::refusal::DOUBLE,
                _ => uapi::refusal::FOREIGN,
            })
        };
        self.count("bad_free", true);
        let r = self.files[fi]
            .fd
            .ioctl(uapi::LDD_IOC_BAD_FREE, arg as usize);
        self.resync_caches()?;
        if r == Err(Errno::ENOMEM)
            && self.armed()
            && arg != u64::from(uapi::bad_free::FOREIGN_KMALLOC)
            && want.is_ok()
        {
            return Ok(());
        }
        self.expect("BAD_FREE", r, want)
    }

    fn op_fault(&mut self) -> R {
        let fi = self.pick_fd()?;
        let n = self.caches.len() as u64;
        let mut spec = uapi::FaultSpec::default();
        let roll = self.rng.below(100);
        match roll {
            0..=44 => {}
            45..=69 => {
                spec.fail_next = 1 + self.rng.below(4) as i64;
                if self.chance(30) {
                    spec.owner = 1 + self.rng.below(n + 1) as u32;
                }
            }
            70..=84 => {
                spec.fail_all = 1;
                if self.chance(30) {
                    spec.owner = 1 + self.rng.below(n + 1) as u32;
                }
            }
            85..=92 => {
                spec.fail_next = self.pick(&[-1, i64::MIN, -100]);
            }
            _ => {
                spec.fail_all = self.pick(&[2, 3, u32::MAX, 0x100]);
            }
        }
        // Rarely a read-only spec: { fail_next: RO_VALUE, 0, 0 }, valid.
        let p = if self.chance(3) {
            self.pick(&[Ptr::Null, Ptr::Bad, Ptr::Kernel, Ptr::ReadOnly])
        } else {
            Ptr::Valid
        };
        let arg = self.addr(p, &mut spec as *mut _ as usize);
        let eff = if p == Ptr::ReadOnly {
            uapi::FaultSpec {
                fail_next: i64::from(RO_VALUE),
                fail_all: 0,
                owner: 0,
            }
        } else {
            spec
        };
        let want = if matches!(p, Ptr::Null | Ptr::Bad | Ptr::Kernel) {
            Err(Errno::EFAULT)
        } else if eff.fail_next < 0 || eff.fail_all > 1 {
            Err(Errno::EINVAL)
        } else {
            Ok(0)
        };
        let _ = write!(self.desc, " FAULT {eff:?} ptr {p:?}");
        self.count("fault", want.is_err());
        let r = self.files[fi].fd.ioctl(uapi::LDD_IOC_FAULT, arg);
        self.expect("FAULT", r, want)?;
        if r.is_ok() {
            self.faults = Faults {
                all: eff.fail_all != 0,
                next: eff.fail_next,
                owner: eff.owner,
            };
        }
        Ok(())
    }

    // ---------------------------------------------------------------------
    // The allocation lab.
    // ---------------------------------------------------------------------

    fn list(
        &self,
        fi: usize,
        max: u32,
    ) -> Result<(uapi::ListRequest, Vec<uapi::HandleInfo>), Errno> {
        let mut entries = vec![uapi::HandleInfo::default(); max as usize];
        let mut req = uapi::ListRequest {
            max,
            count: 0,
            entries: entries.as_mut_ptr() as u64,
        };
        self.files[fi]
            .fd
            .ioctl(uapi::LDD_IOC_LIST, &mut req as *mut _ as usize)?;
        Ok((req, entries))
    }

    /// LIST agrees with the model's handles of file `fi`.
    fn check_list(&mut self, fi: usize) -> R {
        let live = self.files[fi].handles.len() as u32;
        let max = self.rng.below(u64::from(live) + 3) as u32;
        let r = self.list(fi, max);
        let (req, entries) = match r {
            Ok(v) => v,
            Err(e) => return Err(self.fail(format!("LIST: {e}"))),
        };
        if req.count != live {
            return Err(self.fail(format!("LIST count {} != model {live}", req.count)));
        }
        let n = max.min(live) as usize;
        let seen: BTreeSet<u32> = entries[..n].iter().map(|h| h.handle).collect();
        if seen.len() != n || !seen.is_subset(&self.files[fi].handles) {
            return Err(self.fail(format!(
                "LIST entries {:?} not distinct live handles {:?}",
                &entries[..n],
                self.files[fi].handles
            )));
        }
        Ok(())
    }

    fn op_lab(&mut self) -> R {
        let fi = self.pick_fd()?;
        let which = self.rng.below(5);
        if !self.lab {
            let cmds = [
                uapi::LDD_IOC_ALLOC,
                uapi::LDD_IOC_FREE,
                uapi::LDD_IOC_FREE_ALL,
                uapi::LDD_IOC_LIST,
                uapi::LDD_IOC_STACK,
            ];
            let cmd = cmds[which as usize];
            let p = self.ptr_kind(30);
            let mut scratch = [0u64; 8];
            let arg = if cmd == uapi::LDD_IOC_FREE && self.chance(50) {
                self.rng.below(100) as usize
            } else {
                self.addr(p, scratch.as_mut_ptr() as usize)
            };
            let _ = write!(self.desc, " lab cmd {cmd:#x} arg {arg:#x} (lab not built)");
            self.count("lab", p.is_bad());
            let r = self.files[fi].fd.ioctl(cmd, arg);
            return self.expect("lab ioctl without the lab", r, Err(Errno::ENOTTY));
        }
        match which {
            0 => self.lab_alloc(fi),
            1 => self.lab_free(fi),
            2 => {
                let live = self.files[fi].handles.len() as i32;
                let _ = write!(self.desc, " FREE_ALL fd {fi} ({live} live)");
                self.count("lab", false);
                let r = self.files[fi].fd.ioctl(uapi::LDD_IOC_FREE_ALL, 0);
                self.expect("FREE_ALL", r, Ok(live))?;
                self.files[fi].handles.clear();
                self.check_list(fi)
            }
            3 => {
                let p = self.ptr_kind(15);
                let _ = write!(self.desc, " LIST fd {fi} ptr {p:?}");
                self.count("lab", p.is_bad());
                if p.is_bad() {
                    let mut req = uapi::ListRequest::default();
                    let arg = self.addr(p, &mut req as *mut _ as usize);
                    let r = self.files[fi].fd.ioctl(uapi::LDD_IOC_LIST, arg);
                    // A read-only struct: max 4000 entries at a NULL pointer.
                    return self.expect("LIST", r, Err(Errno::EFAULT));
                }
                self.check_list(fi)
            }
            _ => {
                let p = self.ptr_kind(15);
                let mut s = uapi::StackInfo::default();
                let arg = self.addr(p, &mut s as *mut _ as usize);
                let _ = write!(self.desc, " STACK ptr {p:?}");
                self.count("lab", p.is_bad());
                let r = self.files[fi].fd.ioctl(uapi::LDD_IOC_STACK, arg);
                if p.is_bad() {
                    return self.expect("STACK", r, Err(Errno::EFAULT));
                }
                self.expect("STACK", r, Ok(0))?;
                let ok = s.page_size == 4096
                    && s.thread_size.is_power_of_two()
                    && s.thread_size >= 8192
                    && s.used_in_ioctl > 0
                    && s.used_in_ioctl < s.thread_size
                    && s.left_in_ioctl <= s.thread_size - s.used_in_ioctl;
                if !ok {
                    return Err(self.fail(format!("STACK: {s:?}")));
                }
                Ok(())
            }
        }
    }

    fn lab_alloc(&mut self, fi: usize) -> R {
        use uapi::{alloc_flags as af, gfp, lab_backend as lb};
        if self.files[fi].handles.len() >= MAX_HANDLES {
            let live = self.files[fi].handles.len() as i32;
            let _ = write!(self.desc, " FREE_ALL fd {fi} (full)");
            let r = self.files[fi].fd.ioctl(uapi::LDD_IOC_FREE_ALL, 0);
            self.expect("FREE_ALL", r, Ok(live))?;
            self.files[fi].handles.clear();
        }
        let backends = [
            lb::KMALLOC,
            lb::KZALLOC,
            lb::VMALLOC,
            lb::KVMALLOC,
            lb::GET_FREE_PAGES,
            lb::ALLOC_PAGES,
            lb::GET_ZEROED_PAGE,
        ];
        let count = 1 + self.rng.below(4) as u32;
        let mut req = uapi::AllocRequest {
            backend: self.pick(&backends),
            context: uapi::context::PROCESS,
            gfp: gfp::KERNEL,
            size: 1 + self.rng.below(8192),
            order: self.rng.below(3) as u32,
            count,
            handle: 0,
            flags: self.pick(&[0, af::TOUCH, af::FREE_NOW, af::TOUCH | af::FREE_NOW]),
            replies: 0,
        };
        if req.backend == lb::GET_ZEROED_PAGE {
            req.order = 0;
        }
        let mut replies = vec![uapi::AllocReply::default(); LAB_REPLIES];
        req.replies = replies.as_mut_ptr() as u64;
        // Something wrong, or nothing.
        let mut bad_ptr = None;
        let fault = match self.rng.below(16) {
            0 => {
                req.backend = lb::COUNT + self.rng.below(100) as u32;
                "backend"
            }
            1 => {
                req.context = uapi::context::COUNT + self.rng.below(10) as u32;
                "context"
            }
            2 => {
                req.count = 0;
                "count 0"
            }
            3 => {
                req.count = uapi::LAB_MAX_COUNT + 1;
                "count too big"
            }
            4 => {
                req.flags = 1 << (3 + self.rng.below(29));
                "flags"
            }
            5 => {
                req.gfp = gfp::KERNEL | self.pick(&[gfp::WAIT, gfp::REPEAT, gfp::COLD, 1 << 50]);
                "gfp"
            }
            6 => {
                req.replies = self.pick(&[0u64, BAD_PTR as u64, KERNEL_PTR as u64]);
                "replies pointer"
            }
            7 => {
                bad_ptr = Some(self.pick(&[Ptr::Null, Ptr::Bad, Ptr::Kernel]));
                "request pointer"
            }
            _ => "",
        };
        let arg = self.addr(bad_ptr.unwrap_or(Ptr::Valid), &mut req as *mut _ as usize);
        let _ = write!(self.desc, " ALLOC fd {fi} {req:?} fault '{fault}'");
        self.count("lab", !fault.is_empty());
        let r = self.files[fi].fd.ioctl(uapi::LDD_IOC_ALLOC, arg);
        if !fault.is_empty() {
            let ok_errs: &[Errno] = match fault {
                "replies pointer" | "request pointer" => &[Errno::EFAULT],
                "count too big" => &[Errno::EINVAL, Errno::E2BIG, Errno::ERANGE],
                _ => &[Errno::EINVAL],
            };
            match r {
                Err(e) if ok_errs.contains(&e) => {}
                other => {
                    return Err(self.fail(format!(
                        "ALLOC ({fault}): want one of {ok_errs:?}, got {other:?}"
                    )))
                }
            }
            return self.check_list(fi);
        }
        self.expect("ALLOC", r, Ok(count as i32))?;
        let free_now = req.flags & af::FREE_NOW != 0;
        let bytes = matches!(
            req.backend,
            lb::KMALLOC | lb::KZALLOC | lb::VMALLOC | lb::KVMALLOC
        );
        for rep in &replies[..count as usize] {
            let ok = if free_now {
                rep.handle == 0
            } else {
                rep.handle != 0 && !self.files[fi].handles.contains(&rep.handle)
            } && rep.zone < uapi::zone::COUNT as u32
                && (!bytes || (rep.requested == req.size && rep.actual >= rep.requested))
                && rep.phys_hi >= rep.phys_lo;
            if !ok {
                return Err(self.fail(format!("ALLOC reply {rep:?}")));
            }
            if !free_now {
                self.files[fi].handles.insert(rep.handle);
            }
        }
        self.check_list(fi)
    }

    fn lab_free(&mut self, fi: usize) -> R {
        let mine: Vec<u32> = self.files[fi].handles.iter().copied().collect();
        let foreign: Vec<u32> = self
            .files
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != fi)
            .flat_map(|(_, f)| f.handles.iter().copied())
            .filter(|h| !self.files[fi].handles.contains(h))
            .collect();
        let roll = self.rng.below(10);
        let (h, live): (u64, bool) = if roll < 6 && !mine.is_empty() {
            (u64::from(self.pick(&mine)), true)
        } else if roll < 8 && !foreign.is_empty() {
            (u64::from(self.pick(&foreign)), false)
        } else {
            let r = self.rng.below(1 << 20);
            let h = self.pick(&[0u64, u64::from(u32::MAX), 1 << 32, r]);
            (
                h,
                h <= u64::from(u32::MAX) && self.files[fi].handles.contains(&(h as u32)),
            )
        };
        let _ = write!(self.desc, " FREE fd {fi} handle {h} live {live}");
        self.count("lab", !live);
        let r = self.files[fi].fd.ioctl(uapi::LDD_IOC_FREE, h as usize);
        if live {
            self.expect("FREE", r, Ok(0))?;
            self.files[fi].handles.remove(&(h as u32));
        } else {
            self.expect("FREE of a handle not live here", r, Err(Errno::EINVAL))?;
        }
        self.check_list(fi)
    }

    // ---------------------------------------------------------------------
    // The run.
    // ---------------------------------------------------------------------

    /// With `LDD_FUZZ_TRACE` set: the op about to reach the kernel, so a
    /// hang names its op.
    fn trace(&self) {
        if self.tracing {
            use std::io::Write as _;
            println!("# trace op {}: {}", self.op, self.desc);
            let _ = std::io::stdout().flush();
        }
    }

    fn step(&mut self) -> R {
        self.desc.clear();
        self.trace();
        match self.rng.below(1000) {
            0..=219 => self.op_write(),
            220..=399 => self.op_read(),
            400..=469 => self.op_lseek(),
            470..=519 => {
                let _ = write!(self.desc, "open");
                self.open_file(None)
            }
            520..=549 => {
                if self.files.is_empty() {
                    return Ok(());
                }
                let i = self.rng.below(self.files.len() as u64) as usize;
                let _ = write!(self.desc, "close fd {i}");
                self.count("close", false);
                self.close_file(i);
                Ok(())
            }
            550..=599 => self.op_set_backend(),
            600..=699 => self.op_scull(),
            700..=739 => self.op_unknown(),
            740..=769 => self.op_info(),
            770..=799 => self.op_cache_info(),
            800..=829 => self.op_page_stats(),
            830..=849 => self.op_shrink(),
            850..=869 => self.op_bad_free(),
            870..=919 => self.op_fault(),
            920..=969 => self.op_lab(),
            _ => {
                let d = self.rng.below(NDEV as u64) as usize;
                let _ = write!(self.desc, "verify device {d}");
                self.count("verify", false);
                self.verify(d)
            }
        }
    }

    fn new(seed: u64) -> Result<Self, String> {
        let ctl = (0..NDEV)
            .map(|d| Fd::open(&format!("/dev/ldd_alloc{d}"), libc::O_RDWR))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("open the devices: {e}"))?;
        let holes = Holes::new(HOLE_VALID, RO_VALUE).map_err(|e| format!("mmap: {e}"))?;
        // SAFETY: geteuid has no preconditions.
        let admin = unsafe { libc::geteuid() } == 0;
        let mut f = Fuzz {
            rng: Rng::new(seed),
            seed,
            op: 0,
            desc: "setup".into(),
            malformed: 0,
            counts: BTreeMap::new(),
            events: BTreeMap::new(),
            devs: Vec::new(),
            ctl,
            files: Vec::new(),
            gq: 0,
            gqs: 0,
            dq: 0,
            dqs: 0,
            admin,
            limit: env_u64("LDD_MAX_MIB", 256) << 20,
            caches: Vec::new(),
            faults: Faults::default(),
            mempool: false,
            mempool_used: false,
            pools: BTreeSet::new(),
            pool_entries: 0,
            private_pages: 0,
            lab: false,
            prev_stats: uapi::PageStats::default(),
            holes,
            buf: vec![0; BUF],
            rbuf: Vec::new(),
            initial: Vec::new(),
            baseline_pages: 0,
            tracing: std::env::var_os("LDD_FUZZ_TRACE").is_some(),
        };
        f.setup()?;
        Ok(f)
    }

    fn setup(&mut self) -> R {
        let c = &self.ctl[0];
        c.ioctl(
            uapi::LDD_IOC_FAULT,
            &uapi::FaultSpec::default() as *const _ as usize,
        )
        .map_err(|e| format!("FAULT off: {e}"))?;
        if self.admin {
            c.ioctl(uapi::SCULL_IOCRESET, 0)
                .map_err(|e| format!("RESET: {e}"))?;
        }
        self.dq = c
            .ioctl(uapi::SCULL_IOCQQUANTUM, 0)
            .map_err(|e| format!("Q: {e}"))? as u64;
        self.dqs = c
            .ioctl(uapi::SCULL_IOCQQSET, 0)
            .map_err(|e| format!("Q: {e}"))? as u64;
        self.gq = self.dq;
        self.gqs = self.dqs;
        for d in 0..NDEV {
            drop(
                Fd::open(
                    &format!("/dev/ldd_alloc{d}"),
                    libc::O_WRONLY | libc::O_TRUNC,
                )
                .map_err(|e| format!("trim {d}: {e}"))?,
            );
            let i = self.ctl[d]
                .ioctl_get::<uapi::DeviceInfo>(uapi::LDD_IOC_INFO)
                .map_err(|e| format!("INFO {d}: {e}"))?;
            self.initial.push((i.backend, i.order));
            self.devs.push(DevModel {
                data: Sparse::default(),
                size: 0,
                backend: i.backend,
                order: i.order,
                quantum: i.quantum.into(),
                qset: i.qset.into(),
                quanta: BTreeSet::new(),
                qsets: 0,
            });
        }
        self.resync_caches()?;
        // Is the mempool backend there? (pools.rs may still be a stub.)
        let (b0, o0) = self.initial[0];
        match self.ctl[0].ioctl(uapi::LDD_IOC_SET_BACKEND, be::MEMPOOL as usize) {
            Ok(_) => {
                self.mempool = true;
                self.ctl[0]
                    .ioctl(uapi::LDD_IOC_SET_BACKEND, (b0 | o0 << 8) as usize)
                    .map_err(|e| format!("SET_BACKEND back: {e}"))?;
                self.resync_caches()?;
                self.resync_pools()?;
            }
            Err(Errno::ENODEV) => {}
            Err(e) => return Err(format!("probing the mempool backend: {e}")),
        }
        // Is the allocation lab there?
        let mut req = uapi::ListRequest::default();
        match self.ctl[0].ioctl(uapi::LDD_IOC_LIST, &mut req as *mut _ as usize) {
            Ok(_) => self.lab = true,
            Err(Errno::ENOTTY) => {}
            Err(e) => return Err(format!("probing LDD_IOC_LIST: {e}")),
        }
        let c = &self.ctl[0];
        c.ioctl(uapi::LDD_IOC_SHRINK, 0)
            .map_err(|e| format!("SHRINK: {e}"))?;
        let s = c
            .ioctl_get::<uapi::PageStats>(uapi::LDD_IOC_PAGE_STATS)
            .map_err(|e| format!("PAGE_STATS: {e}"))?;
        self.baseline_pages = sum(&s.pages_out);
        self.prev_stats = s;
        self.private_pages = self.private_pages()?;
        Ok(())
    }

    /// Fault injection off, every device verified, closed, reset, trimmed
    /// and put back on its first backend; then the pages and objects are
    /// back where they started.
    fn finish(&mut self) -> R {
        self.desc = "final check".into();
        let off = uapi::FaultSpec::default();
        let r = self.ctl[0].ioctl(uapi::LDD_IOC_FAULT, &off as *const _ as usize);
        self.expect("FAULT off", r, Ok(0))?;
        self.faults = Faults::default();
        for d in 0..NDEV {
            self.verify(d)?;
        }
        if self.lab {
            for fi in 0..self.files.len() {
                let live = self.files[fi].handles.len() as i32;
                let r = self.files[fi].fd.ioctl(uapi::LDD_IOC_FREE_ALL, 0);
                self.expect("final FREE_ALL", r, Ok(live))?;
                self.files[fi].handles.clear();
            }
        }
        self.files.clear();
        cleanup(&self.ctl, &self.initial, self.admin)?;
        for d in 0..NDEV {
            let i = self.ctl[d]
                .ioctl_get::<uapi::DeviceInfo>(uapi::LDD_IOC_INFO)
                .map_err(|e| self.fail(e))?;
            if i.size != 0 || i.quanta != 0 || i.qsets != 0 {
                return Err(self.fail(format!("device {d} after the final trim: {i:?}")));
            }
        }
        self.ctl[0]
            .ioctl(uapi::LDD_IOC_SHRINK, 0)
            .map_err(|e| self.fail(e))?;
        let s = self.ctl[0]
            .ioctl_get::<uapi::PageStats>(uapi::LDD_IOC_PAGE_STATS)
            .map_err(|e| self.fail(e))?;
        self.check_stats(&s)?;
        self.resync_caches()?;
        // Pools made during the run keep their reserves: those pages stay.
        let reserves = self.private_pages()? - self.private_pages;
        if sum(&s.pages_out) != self.baseline_pages + reserves {
            return Err(self.fail(format!(
                "pages out after trim + shrink: {:?} (sum {}), at start {}, \
                 {reserves} more held by pool reserves",
                s.pages_out,
                sum(&s.pages_out),
                self.baseline_pages
            )));
        }
        for i in 0..self.caches.len() {
            let mut ci = uapi::CacheInfo {
                index: i as u32,
                ..Default::default()
            };
            self.ctl[0]
                .ioctl(uapi::LDD_IOC_CACHE_INFO, &mut ci as *mut _ as usize)
                .map_err(|e| self.fail(e))?;
            let private = ci.flags & uapi::cache_flags::POOL_PRIVATE != 0;
            if !private && (ci.active_objs != 0 || ci.num_objs != 0) {
                return Err(self.fail(format!("cache {i} not empty at the end: {ci:?}")));
            }
            let test = ci.flags & uapi::cache_flags::TEST_PRIVATE != 0;
            if !test && (ci.poison_errors != 0 || ci.redzone_errors != 0) {
                return Err(self.fail(format!("cache {i} saw corruption: {ci:?}")));
            }
        }
        Ok(())
    }
}

/// Room for replies of a lab request (count is at most 4, or a bad count).
const LAB_REPLIES: usize = uapi::LAB_MAX_COUNT as usize + 1;

/// Whether a pointer of this kind can be read by the driver.
fn p_read(p: Ptr) -> bool {
    matches!(p, Ptr::Valid | Ptr::ReadOnly)
}

/// Best effort: injection off, defaults back, every device trimmed and on
/// its first backend.
fn cleanup(ctl: &[Fd], initial: &[(u32, u32)], admin: bool) -> R {
    let off = uapi::FaultSpec::default();
    let mut err = None;
    let mut note = |r: Result<i32, Errno>, what: &str| {
        if let Err(e) = r {
            err.get_or_insert(format!("cleanup: {what}: {e}"));
        }
    };
    note(
        ctl[0].ioctl(uapi::LDD_IOC_FAULT, &off as *const _ as usize),
        "FAULT off",
    );
    if admin {
        note(ctl[0].ioctl(uapi::SCULL_IOCRESET, 0), "RESET");
    }
    for (d, &(b, o)) in initial.iter().enumerate() {
        note(
            Fd::open(
                &format!("/dev/ldd_alloc{d}"),
                libc::O_WRONLY | libc::O_TRUNC,
            )
            .map(|_| 0),
            "trim",
        );
        note(
            ctl[d].ioctl(uapi::LDD_IOC_SET_BACKEND, (b | o << 8) as usize),
            "SET_BACKEND",
        );
    }
    err.map_or(Ok(()), Err)
}

fn ioctl_sequences() -> TestResult {
    let seed = env_u64("LDD_FUZZ_SEED", 1);
    let ops = env_u64("LDD_FUZZ_OPS", 20_000);
    println!("# fuzz: seed {seed}, {ops} ops (LDD_FUZZ_SEED, LDD_FUZZ_OPS)");
    let start = Instant::now();
    let mut f = Fuzz::new(seed)?;
    println!(
        "# fuzz: mempool backend {}, lab ioctls {}, {} caches at start, baseline {} pages",
        if f.mempool {
            "present"
        } else {
            "absent (ENODEV)"
        },
        if f.lab { "present" } else { "absent (ENOTTY)" },
        f.caches.len(),
        f.baseline_pages
    );
    let mut result = Ok(());
    while f.op < ops {
        result = f.step();
        if result.is_err() {
            break;
        }
        f.op += 1;
    }
    if result.is_ok() {
        result = f.finish();
    } else {
        f.files.clear();
        let _ = cleanup(&f.ctl, &f.initial, f.admin);
    }
    let secs = start.elapsed().as_secs_f64();
    let counts: Vec<String> = f.counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("# ops {}, malformed {}, seed {seed}", f.op, f.malformed,);
    println!("# by kind: {}", counts.join(", "));
    let events: Vec<String> = f.events.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("# outcomes: {}", events.join(", "));
    println!(
        "# {:.1} s, {} caches at the end, {} pages injected failures",
        secs,
        f.caches.len(),
        f.prev_stats.injected
    );
    result.map(|()| Outcome::Pass)
}

/// The fuzz tests.
pub fn tests() -> Vec<Test> {
    vec![Test::new("fuzz/ioctl_sequences", ioctl_sequences)]
}
