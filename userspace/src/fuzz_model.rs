//! Helpers of the fuzz and stress suites (`vmtests::fuzz`, `vmtests::stress`):
//! raw system calls that report the errno instead of hiding it, user memory
//! with holes (unmapped and read-only pages) to hand to the driver, hostile
//! addresses that can never be mapped, the unprivileged uid, a sparse model of
//! a scull device's bytes, and the lab's rules (what an ALLOC request must
//! answer) as a pure function the host tests check.

use std::collections::BTreeMap;
use std::ffi::CString;

use nix::errno::Errno;

/// An address that is never mapped in a process (inside the first page).
pub const BAD_PTR: usize = 8;
/// A kernel address: the driver must refuse to touch it for userspace.
pub const KERNEL_PTR: usize = 0xffff_8880_0000_0000;

/// A file descriptor closed on drop.
#[derive(Debug)]
pub struct Fd(pub i32);

impl Fd {
    /// `open(path, flags)`.
    pub fn open(path: &str, flags: i32) -> Result<Fd, Errno> {
        let c = CString::new(path).map_err(|_| Errno::EINVAL)?;
        // SAFETY: `c` is a valid NUL-terminated string.
        let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
        Errno::result(fd).map(Fd)
    }

    /// `read(fd, ptr, len)`: the kernel checks the buffer.
    pub fn read_raw(&self, ptr: usize, len: usize) -> Result<usize, Errno> {
        // SAFETY: Callers pass memory they own or addresses the kernel must
        // refuse; this process never dereferences them.
        let r = unsafe { libc::read(self.0, ptr as *mut libc::c_void, len) };
        Errno::result(r).map(|n| n as usize)
    }

    /// `write(fd, ptr, len)`.
    pub fn write_raw(&self, ptr: usize, len: usize) -> Result<usize, Errno> {
        // SAFETY: As for `read_raw`.
        let r = unsafe { libc::write(self.0, ptr as *const libc::c_void, len) };
        Errno::result(r).map(|n| n as usize)
    }

    /// `pread(fd, ptr, len, off)`.
    pub fn pread_raw(&self, ptr: usize, len: usize, off: i64) -> Result<usize, Errno> {
        // SAFETY: As for `read_raw`.
        let r = unsafe { libc::pread(self.0, ptr as *mut libc::c_void, len, off) };
        Errno::result(r).map(|n| n as usize)
    }

    /// `pwrite(fd, ptr, len, off)`.
    pub fn pwrite_raw(&self, ptr: usize, len: usize, off: i64) -> Result<usize, Errno> {
        // SAFETY: As for `read_raw`.
        let r = unsafe { libc::pwrite(self.0, ptr as *const libc::c_void, len, off) };
        Errno::result(r).map(|n| n as usize)
    }

    /// `pread` into a slice.
    pub fn pread(&self, buf: &mut [u8], off: u64) -> Result<usize, Errno> {
        self.pread_raw(buf.as_mut_ptr() as usize, buf.len(), off as i64)
    }

    /// `pwrite` from a slice.
    pub fn pwrite(&self, buf: &[u8], off: u64) -> Result<usize, Errno> {
        self.pwrite_raw(buf.as_ptr() as usize, buf.len(), off as i64)
    }

    /// `lseek(fd, off, whence)`.
    pub fn lseek(&self, off: i64, whence: i32) -> Result<i64, Errno> {
        // SAFETY: No memory is involved.
        let r = unsafe { libc::lseek(self.0, off, whence) };
        Errno::result(r)
    }

    /// `ioctl(fd, cmd, arg)`.
    pub fn ioctl(&self, cmd: u32, arg: usize) -> Result<i32, Errno> {
        // SAFETY: As for `read_raw`: the kernel validates `arg`, and callers
        // pass buffers at least as large as the size `cmd` encodes.
        let r = unsafe { libc::ioctl(self.0, cmd as _, arg) };
        Errno::result(r)
    }

    /// An ioctl that reads a `T` from the driver.
    pub fn ioctl_get<T: Default>(&self, cmd: u32) -> Result<T, Errno> {
        let mut v = T::default();
        self.ioctl(cmd, &mut v as *mut T as usize)?;
        Ok(v)
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: We own the descriptor.
        unsafe { libc::close(self.0) };
    }
}

/// Anonymous memory laid out as `valid` read-write bytes, then one
/// `PROT_NONE` guard page, then one read-only page (filled with a value).
pub struct Holes {
    base: usize,
    valid: usize,
}

/// Page size of the guest.
pub const PAGE: usize = 4096;

impl Holes {
    /// Maps `valid` (a multiple of [`PAGE`]) bytes, a guard page and a
    /// read-only page whose first `i32` is `ro_value`.
    pub fn new(valid: usize, ro_value: i32) -> Result<Self, Errno> {
        let total = valid + 2 * PAGE;
        // SAFETY: A fresh anonymous mapping, no address hint.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        let base = p as usize;
        let h = Holes { base, valid };
        // SAFETY: The read-only page is ours and mapped read-write until the
        // mprotect below.
        unsafe { ((base + valid + PAGE) as *mut i32).write(ro_value) };
        // SAFETY: Both ranges are inside our mapping.
        unsafe {
            if libc::mprotect((base + valid) as *mut libc::c_void, PAGE, libc::PROT_NONE) != 0
                || libc::mprotect(
                    (base + valid + PAGE) as *mut libc::c_void,
                    PAGE,
                    libc::PROT_READ,
                ) != 0
            {
                return Err(Errno::last());
            }
        }
        Ok(h)
    }

    /// Address of the first byte of the guard page.
    pub fn guard(&self) -> usize {
        self.base + self.valid
    }

    /// Address of the read-only page.
    pub fn ro(&self) -> usize {
        self.base + self.valid + PAGE
    }

    /// The `i32` at the start of the read-only page.
    pub fn ro_value(&self) -> i32 {
        // SAFETY: The page is mapped readable for our lifetime.
        unsafe { (self.ro() as *const i32).read() }
    }

    /// The last `len` valid bytes before the guard page, writable.
    pub fn tail_mut(&mut self, len: usize) -> &mut [u8] {
        let len = len.min(self.valid);
        // SAFETY: `[guard - len, guard)` is our read-write memory, borrowed
        // mutably through `self`.
        unsafe { std::slice::from_raw_parts_mut((self.guard() - len) as *mut u8, len) }
    }
}

impl Drop for Holes {
    fn drop(&mut self) {
        // SAFETY: Our mapping, unmapped once.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.valid + 2 * PAGE) };
    }
}

/// A large `PROT_NONE` reservation: any address in it faults, so random
/// user pointers can be drawn from it without ever hitting our own memory.
pub struct NoAccess {
    base: usize,
    len: usize,
}

impl NoAccess {
    /// Reserves `len` bytes (no memory is committed).
    pub fn new(len: usize) -> Result<Self, Errno> {
        // SAFETY: A fresh anonymous PROT_NONE mapping, no address hint.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        Ok(NoAccess {
            base: p as usize,
            len,
        })
    }

    /// An address inside the reservation, from 64 random bits, leaving
    /// `room` bytes after it inside too.
    pub fn addr(&self, r: u64, room: usize) -> usize {
        let span = self.len.saturating_sub(room).max(1);
        self.base + (r as usize % span)
    }
}

impl Drop for NoAccess {
    fn drop(&mut self) {
        // SAFETY: Our mapping, unmapped once.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

/// The end of user space on x86-64 with 4-level paging (`TASK_SIZE_MAX`):
/// the VFS's `access_ok()` refuses a buffer that reaches past it.
pub const TASK_SIZE_MAX: usize = 0x7fff_ffff_f000;

/// A non-canonical address from 64 random bits: bits 63..56 are neither all
/// zero nor all one, so it is outside user space and the kernel's half under
/// 4- and 5-level paging alike.
pub fn non_canonical(r: u64) -> usize {
    let top = 1 + (r >> 56) % 0xfe; // 0x01..=0xfe
    ((top << 56) | (r & 0x00ff_ffff_ffff_ffff)) as usize
}

/// Whether `[addr, addr + len)` passes the VFS's `access_ok()`: read and
/// write check the buffer before the driver sees it.
pub fn access_ok(addr: usize, len: usize) -> bool {
    addr.checked_add(len)
        .is_some_and(|end| end <= TASK_SIZE_MAX)
}

/// The uid and gid the fuzzer drops to (nobody, nogroup).
pub const NOBODY: u32 = 65534;

/// Drops the effective uid and gid to [`NOBODY`] (the real ones stay 0, so
/// [`regain_root`] can come back): the effective capabilities go with it.
pub fn drop_root() -> Result<(), Errno> {
    // SAFETY: Plain system calls.
    Errno::result(unsafe { libc::setegid(NOBODY) })?;
    // SAFETY: As above.
    Errno::result(unsafe { libc::seteuid(NOBODY) }).map(drop)
}

/// Back to euid/egid 0 (and the effective capabilities).
pub fn regain_root() -> Result<(), Errno> {
    // SAFETY: Plain system calls.
    Errno::result(unsafe { libc::seteuid(0) })?;
    // SAFETY: As above.
    Errno::result(unsafe { libc::setegid(0) }).map(drop)
}

extern "C" fn on_alarm(_: libc::c_int) {}

/// Installs a SIGALRM handler that does nothing, without SA_RESTART: a
/// blocking system call the alarm interrupts returns EINTR.
pub fn install_alarm() -> Result<(), Errno> {
    // SAFETY: A zeroed sigaction is valid; the handler is async-signal-safe
    // (it does nothing).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_alarm as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        Errno::result(libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut())).map(drop)
    }
}

/// Arms (ms > 0) or disarms (0) a one-shot SIGALRM of this process.
// libc marks musl's time_t/suseconds_t deprecated (they become 64-bit in
// musl 1.2); the values here are small either way.
#[allow(deprecated)]
pub fn alarm_ms(ms: u64) {
    let t = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: libc::timeval {
            tv_sec: (ms / 1000) as libc::time_t,
            tv_usec: ((ms % 1000) * 1000) as libc::suseconds_t,
        },
    };
    // SAFETY: A valid itimerval; the old value is not wanted.
    unsafe { libc::setitimer(libc::ITIMER_REAL, &t, std::ptr::null_mut()) };
}

/// What the lab must answer to one ALLOC request, as far as the rules say
/// ([`lab_rules`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabVerdict {
    /// Broken rules: the request must fail with one of these (which one
    /// depends on the order of the checks, which the ABI leaves open).
    pub must: Vec<Errno>,
    /// Failures the model cannot rule out on a valid request (no memory, a
    /// full registry, a limit it only knows roughly).
    pub may: Vec<Errno>,
}

fn add(v: &mut Vec<Errno>, e: Errno) {
    if !v.contains(&e) {
        v.push(e);
        v.sort_by_key(|&e| e as i32);
    }
}

/// The caller and the limits of [`lab_rules`].
#[derive(Clone, Copy, Debug)]
pub struct LabCaller {
    /// `capable(CAP_SYS_ADMIN)` at the ioctl.
    pub privileged: bool,
    /// Issue 13's rules (privileges, zone modifiers, NOFAIL sizes, atomic
    /// sizes); without them the older module's.
    pub spec13: bool,
    /// The handle of a KREALLOC is a live kmalloc-family handle of this file.
    pub realloc_ok: bool,
    /// `lab_max_mib` in bytes.
    pub max_bytes: u64,
}

/// The lab's `KMALLOC_MAX_SIZE` (an order-10 run of 4 KiB pages).
pub const KMALLOC_MAX: u64 = 4 << 20;
/// The lab's `MAX_PAGE_ORDER`.
pub const MAX_PAGE_ORDER: u32 = 10;

/// The lab's rules for `req` (uapi.rs, lab/mod.rs `validate`, issue 13).
pub fn lab_rules(req: &crate::uapi::AllocRequest, c: LabCaller) -> LabVerdict {
    use crate::uapi::{alloc_flags as af, context as cx, gfp, lab_backend as lb};
    let mut v = LabVerdict::default();
    let mut must = |e: Errno| add(&mut v.must, e);
    if req.backend >= lb::COUNT || req.context >= cx::COUNT {
        must(Errno::EINVAL);
    }
    if req.flags & !af::KNOWN != 0 || req.count == 0 {
        must(Errno::EINVAL);
    }
    if req.count > crate::uapi::LAB_MAX_COUNT {
        must(Errno::E2BIG);
    }
    if gfp::REMOVED.iter().any(|&(b, _, _)| req.gfp & b != 0) || req.gfp & !gfp::KNOWN != 0 {
        must(Errno::EINVAL);
    }
    let sleeps = req.gfp & gfp::DIRECT_RECLAIM != 0;
    // Root only (README "Who may do what"): the emergency reserves
    // (__GFP_HIGH, MEMALLOC, NOFAIL, our mempools), DMA and MOVABLE, BIG.
    let root_only = gfp::HIGH | gfp::MEMALLOC | gfp::NOFAIL | gfp::DMA | gfp::MOVABLE;
    // Issue 17: the large-buffer backends are root only too.
    let large = matches!(
        req.backend,
        lb::ALLOC_PAGES_EXACT | lb::ALLOC_CONTIG | lb::CMA
    );
    if c.spec13
        && !c.privileged
        && (req.gfp & root_only != 0
            || req.flags & (af::BIG | af::PRESSURE) != 0
            || matches!(req.backend, lb::OUR_MEMPOOL | lb::KERNEL_MEMPOOL)
            || large)
    {
        must(Errno::EPERM);
    }
    // A memalloc scope (issue 16) is for the ioctl's own task only.
    if req.flags & (af::SCOPE_NOIO | af::SCOPE_NOFS) != 0 && req.context != cx::PROCESS {
        must(Errno::EINVAL);
    }
    if req.context != cx::PROCESS && sleeps {
        must(Errno::EINVAL);
    }
    let pages = matches!(
        req.backend,
        lb::ALLOC_PAGES | lb::GET_FREE_PAGES | lb::GET_ZEROED_PAGE
    );
    let bytes_backend = req.backend < lb::COUNT && !pages;
    // NOFAIL must be able to sleep, and is not for orders above 1 (issue
    // 13: the order only counts for the page backends).
    if req.gfp & gfp::NOFAIL != 0 && (!sleeps || (req.order > 1 && (pages || !c.spec13))) {
        must(Errno::EINVAL);
    }
    if c.spec13 {
        let zones = [gfp::DMA, gfp::DMA32, gfp::HIGHMEM]
            .iter()
            .filter(|&&z| req.gfp & z != 0)
            .count();
        if zones >= 2 {
            must(Errno::EINVAL);
        }
        // Both mobility bits: no migratetype (mm/page_alloc.h).
        if req.gfp & (gfp::MOVABLE | gfp::RECLAIMABLE) == gfp::MOVABLE | gfp::RECLAIMABLE {
            must(Errno::EINVAL);
        }
        if req.gfp & gfp::NOFAIL != 0 && bytes_backend && req.size > 2 * 4096 {
            must(Errno::EINVAL);
        }
    }
    if pages {
        if req.order > MAX_PAGE_ORDER || (req.backend == lb::GET_ZEROED_PAGE && req.order != 0) {
            must(Errno::EINVAL);
        }
    } else if req.backend < lb::COUNT {
        if req.size == 0 {
            must(Errno::EINVAL);
        }
        let cap = if req.flags & af::BIG != 0 {
            c.max_bytes
        } else {
            KMALLOC_MAX
        };
        let kmalloc = matches!(
            req.backend,
            lb::KMALLOC | lb::KZALLOC | lb::KREALLOC | lb::ALLOC_PAGES_EXACT
        );
        if req.size > cap || (kmalloc && req.size > KMALLOC_MAX) {
            must(Errno::E2BIG);
        }
    }
    if req.size > u64::MAX / 2 && !pages && req.backend < lb::COUNT {
        // Near u64::MAX on a byte backend: refused whatever else holds.
        must(Errno::E2BIG);
        must(Errno::EINVAL);
    }
    let slab = matches!(
        req.backend,
        lb::KMALLOC
            | lb::KZALLOC
            | lb::KREALLOC
            | lb::KMEM_CACHE
            | lb::KERNEL_MEMPOOL
            | lb::KVMALLOC
    );
    if slab && req.gfp & (gfp::HIGHMEM | gfp::DMA32) != 0 {
        must(Errno::EINVAL);
    }
    // The kernel's mempool_alloc() first tries without reclaim: NOFAIL
    // there would warn (lab/validate.rs).
    if req.backend == lb::KERNEL_MEMPOOL && req.gfp & gfp::NOFAIL != 0 {
        must(Errno::EINVAL);
    }
    if matches!(req.backend, lb::VMALLOC | lb::KVMALLOC) {
        if req.gfp & !gfp::VMALLOC_SUPPORTED != 0 || req.context == cx::HARDIRQ {
            must(Errno::EINVAL);
        }
        if req.backend == lb::KVMALLOC && (req.context != cx::PROCESS || !sleeps) {
            must(Errno::EINVAL);
        }
    }
    if matches!(
        req.backend,
        lb::KMEM_CACHE | lb::OUR_CACHE | lb::OUR_MEMPOOL | lb::KERNEL_MEMPOOL
    ) && req.size > 8 * 4096
    {
        must(Errno::E2BIG);
    }
    if req.backend == lb::KREALLOC && (req.count != 1 || !c.realloc_ok) {
        must(Errno::EINVAL);
    }
    if req.backend == lb::ALLOC_PAGES_EXACT && req.gfp & (gfp::COMP | gfp::HIGHMEM) != 0 {
        must(Errno::EINVAL);
    }
    if matches!(req.backend, lb::ALLOC_CONTIG | lb::CMA) {
        let ok = gfp::DIRECT_RECLAIM
            | gfp::KSWAPD_RECLAIM
            | gfp::IO
            | gfp::FS
            | gfp::ZERO
            | gfp::NOWARN
            | gfp::RETRY_MAYFAIL;
        if req.context != cx::PROCESS || !sleeps || req.gfp & !ok != 0 {
            must(Errno::EINVAL);
        }
    }
    if c.spec13 && req.context != cx::PROCESS {
        let len = if pages {
            4096u64 << req.order.min(63)
        } else {
            req.size
        };
        if len > 4 << 20 {
            must(Errno::E2BIG);
        }
    }
    // A valid request may still find no memory (atomic, NORETRY, an armed
    // injector, a pool reserve) and registries full of entries in use.
    add(&mut v.may, Errno::ENOMEM);
    if pages && req.size > u64::MAX / 2 && c.spec13 {
        // The page backends are sized by order and the ABI says their size
        // is ignored; issue 13 says a size near u64::MAX is refused on any
        // backend. Both are accepted: never a crash is what both promise.
        add(&mut v.may, Errno::EINVAL);
        add(&mut v.may, Errno::E2BIG);
    }
    if matches!(
        req.backend,
        lb::KMEM_CACHE | lb::OUR_CACHE | lb::OUR_MEMPOOL | lb::KERNEL_MEMPOOL
    ) {
        add(&mut v.may, Errno::ENOSPC);
        // A pool of elements too small for the reserve's links.
        if req.backend == lb::OUR_MEMPOOL && req.size < 8 {
            add(&mut v.may, Errno::EINVAL);
        }
    }
    v
}

/// Bytes of one allocation of `req` at most (for the limits): a byte
/// backend's size class is below twice the size plus a page; pages by order.
pub fn lab_upper_bytes(req: &crate::uapi::AllocRequest) -> u64 {
    use crate::uapi::lab_backend as lb;
    if matches!(
        req.backend,
        lb::ALLOC_PAGES | lb::GET_FREE_PAGES | lb::GET_ZEROED_PAGE
    ) {
        4096u64 << req.order.min(40)
    } else {
        req.size.saturating_mul(2).saturating_add(4096)
    }
}

/// Bytes per page of the sparse model.
const MP: u64 = 4096;

/// The bytes of a device, sparse: pages never written are zero.
#[derive(Clone, Debug, Default)]
pub struct Sparse {
    pages: BTreeMap<u64, Box<[u8]>>,
}

impl Sparse {
    /// Stores `data` at `pos`.
    pub fn put(&mut self, pos: u64, data: &[u8]) {
        let mut done = 0usize;
        while done < data.len() {
            let at = pos + done as u64;
            let (pg, off) = (at / MP, (at % MP) as usize);
            let n = (MP as usize - off).min(data.len() - done);
            let page = self
                .pages
                .entry(pg)
                .or_insert_with(|| vec![0u8; MP as usize].into_boxed_slice());
            page[off..off + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
    }

    /// The `len` bytes at `pos`.
    pub fn get(&self, pos: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        let mut done = 0usize;
        while done < len {
            let at = pos + done as u64;
            let (pg, off) = (at / MP, (at % MP) as usize);
            let n = (MP as usize - off).min(len - done);
            if let Some(page) = self.pages.get(&pg) {
                out[done..done + n].copy_from_slice(&page[off..off + n]);
            }
            done += n;
        }
        out
    }

    /// Forgets everything (a trim).
    pub fn clear(&mut self) {
        self.pages.clear();
    }

    /// `(pos, len)` of every model page that holds data, ascending.
    pub fn extents(&self) -> Vec<(u64, usize)> {
        self.pages.keys().map(|&p| (p * MP, MP as usize)).collect()
    }
}

/// First index where `got` and `want` differ.
pub fn first_diff(got: &[u8], want: &[u8]) -> Option<usize> {
    got.iter().zip(want).position(|(a, b)| a != b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_put_get() {
        let mut s = Sparse::default();
        s.put(4090, &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(s.get(4088, 12), vec![0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0]);
        assert_eq!(s.extents().len(), 2);
        s.clear();
        assert_eq!(s.get(4090, 3), vec![0, 0, 0]);
    }

    fn req(backend: u32, gfp: u64, size: u64) -> crate::uapi::AllocRequest {
        crate::uapi::AllocRequest {
            backend,
            gfp,
            size,
            count: 1,
            ..Default::default()
        }
    }

    const ROOT: LabCaller = LabCaller {
        privileged: true,
        spec13: true,
        realloc_ok: false,
        max_bytes: 256 << 20,
    };

    #[test]
    fn lab_rules_cases() {
        use crate::uapi::{alloc_flags as af, context as cx, gfp, lab_backend as lb};
        let set = |v: &[Errno]| {
            let mut v = v.to_vec();
            v.sort_by_key(|&e| e as i32);
            v
        };
        // Valid: only the "may" failures.
        let v = lab_rules(&req(lb::KMALLOC, gfp::KERNEL, 100), ROOT);
        assert!(v.must.is_empty(), "{v:?}");
        assert!(v.may.contains(&Errno::ENOMEM));
        // GFP_KERNEL in atomic context.
        let mut r = req(lb::KMALLOC, gfp::KERNEL, 100);
        r.context = cx::ATOMIC;
        assert_eq!(lab_rules(&r, ROOT).must, set(&[Errno::EINVAL]));
        // GFP_ATOMIC unprivileged: EPERM (issue 13), not before it.
        let nobody = LabCaller {
            privileged: false,
            ..ROOT
        };
        let r = req(lb::KMALLOC, gfp::ATOMIC, 100);
        assert_eq!(lab_rules(&r, nobody).must, set(&[Errno::EPERM]));
        assert!(lab_rules(
            &r,
            LabCaller {
                spec13: false,
                ..nobody
            }
        )
        .must
        .is_empty());
        let mut r = req(lb::VMALLOC, gfp::KERNEL, 1 << 20);
        r.flags = af::BIG;
        assert_eq!(lab_rules(&r, nobody).must, set(&[Errno::EPERM]));
        // Two zone modifiers.
        let r = req(lb::ALLOC_PAGES, gfp::KERNEL | gfp::DMA | gfp::DMA32, 0);
        assert_eq!(lab_rules(&r, ROOT).must, set(&[Errno::EINVAL]));
        // Both mobility bits, any backend; each alone is fine.
        for b in [lb::ALLOC_PAGES, lb::KMALLOC, lb::OUR_CACHE] {
            let both = gfp::KERNEL | gfp::MOVABLE | gfp::RECLAIMABLE;
            assert_eq!(
                lab_rules(&req(b, both, 64), ROOT).must,
                set(&[Errno::EINVAL])
            );
        }
        let r = req(lb::ALLOC_PAGES, gfp::KERNEL | gfp::RECLAIMABLE, 0);
        assert!(lab_rules(&r, ROOT).must.is_empty());
        // Atomic above 4 MiB.
        let mut r = req(lb::ALLOC_PAGES, gfp::ATOMIC, 0);
        r.context = cx::HARDIRQ;
        r.order = 11;
        assert!(lab_rules(&r, ROOT).must.contains(&Errno::E2BIG));
        assert!(lab_rules(&r, ROOT).must.contains(&Errno::EINVAL));
        // Near u64::MAX on any byte backend.
        for b in [lb::KMALLOC, lb::VMALLOC, lb::KVMALLOC, lb::OUR_CACHE] {
            let v = lab_rules(&req(b, gfp::KERNEL, u64::MAX - 3), ROOT);
            assert!(!v.must.is_empty(), "backend {b}: {v:?}");
        }
        // Removed and unknown bits; a bad backend or count.
        assert!(
            !lab_rules(&req(lb::KMALLOC, gfp::KERNEL | gfp::WAIT, 8), ROOT)
                .must
                .is_empty()
        );
        assert!(!lab_rules(&req(lb::COUNT, gfp::KERNEL, 8), ROOT)
            .must
            .is_empty());
        let mut r = req(lb::KMALLOC, gfp::KERNEL, 8);
        r.count = 0;
        assert_eq!(lab_rules(&r, ROOT).must, set(&[Errno::EINVAL]));
        // KREALLOC needs a live handle.
        let r = req(lb::KREALLOC, gfp::KERNEL, 8);
        assert_eq!(lab_rules(&r, ROOT).must, set(&[Errno::EINVAL]));
        let ok = LabCaller {
            realloc_ok: true,
            ..ROOT
        };
        assert!(lab_rules(&r, ok).must.is_empty());
    }

    #[test]
    fn hostile_addresses() {
        for r in [
            0u64,
            1,
            u64::MAX,
            0x0100_0000_0000_0000,
            0xfeff_ffff_ffff_ffff,
        ] {
            let a = non_canonical(r);
            let top = a >> 56;
            assert!(top != 0 && top != 0xff, "{a:#x}");
            assert!(!access_ok(a, 1));
        }
        assert!(access_ok(0x1000, 4096));
        assert!(!access_ok(TASK_SIZE_MAX - 1, 2));
        assert!(!access_ok(usize::MAX, 1));
        let na = NoAccess::new(1 << 30).unwrap();
        let z = Fd::open("/dev/zero", libc::O_RDONLY).unwrap();
        for r in [0u64, 12345, u64::MAX] {
            let a = na.addr(r, 64);
            assert_eq!(z.read_raw(a, 64), Err(Errno::EFAULT));
        }
    }

    #[test]
    fn holes_layout() {
        let mut h = Holes::new(2 * PAGE, 1234).unwrap();
        assert_eq!(h.ro_value(), 1234);
        h.tail_mut(10).fill(7);
        let fd = Fd::open("/dev/null", libc::O_RDWR).unwrap();
        // /dev/null does not touch the buffer; /dev/zero does.
        let z = Fd::open("/dev/zero", libc::O_RDONLY).unwrap();
        assert_eq!(z.read_raw(h.guard() - 10, 10), Ok(10));
        // Past the guard page: a short count or EFAULT, never the full 20.
        assert_ne!(z.read_raw(h.guard() - 10, 20), Ok(20));
        assert_eq!(z.read_raw(h.ro(), 4), Err(Errno::EFAULT));
        assert_eq!(fd.write_raw(KERNEL_PTR, 4), Err(Errno::EFAULT));
    }
}
