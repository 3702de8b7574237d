//! `mmap` of the pages and vmalloc devices (LDD3 chapter 15's scullp and
//! scullv): the mapping shows the very bytes `read(2)` does, page for page,
//! at several offsets and quantum sizes; stores through a shared mapping
//! reach `read(2)` and `write(2)` reaches the mapping; SIGBUS past the
//! size and in holes; ENODEV on the other backends; trim and SET_BACKEND
//! refused (EBUSY) while mapped, as scullp counts its VMAs; fork; and every
//! page back once unmapped and trimmed.

use std::os::unix::fs::FileExt;

use nix::errno::Errno;

use crate::device::{Device, Mapping};
use crate::rng::Rng;
use crate::tap::{Context, Outcome, Test, TestResult};
use crate::uapi::{self, backend};
use crate::{ensure, ensure_eq};

/// The device these tests use (not the scull suite's).
const DEV: u32 = 2;
const PAGE: usize = 4096;
const SHARED: i32 = libc::MAP_SHARED;
const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;

/// Device [`DEV`], emptied, on `backend` with page order `order` (pages)
/// or quantum `quantum` (vmalloc; the module-wide quantum is restored).
fn fresh(be: u32, order: u32, quantum: i32, qset: i32) -> Result<Device, String> {
    let path = crate::device::node(DEV);
    drop(Device::open_with(&path, libc::O_WRONLY | libc::O_TRUNC).ctx("trim open")?);
    let dev = Device::open(&path).ctx("open")?;
    dev.set_backend(be, order).ctx("SET_BACKEND")?;
    let (q0, s0) = (dev.quantum().ctx("G quantum")?, dev.qset().ctx("G qset")?);
    dev.set_quantum(quantum).ctx("S quantum")?;
    dev.set_qset(qset).ctx("S qset")?;
    // A trim takes the new geometry up (the module-wide one is restored).
    let trimmed = Device::open_with(&path, libc::O_WRONLY | libc::O_TRUNC).map(drop);
    dev.set_quantum(q0).ctx("S quantum back")?;
    dev.set_qset(s0).ctx("S qset back")?;
    trimmed.ctx("trim open")?;
    Ok(dev)
}

/// Empties device [`DEV`] and puts it back as it was loaded: pages of
/// order 0, the module-wide geometry.
fn trim() -> Result<(), String> {
    let path = crate::device::node(DEV);
    drop(Device::open_with(&path, libc::O_WRONLY | libc::O_TRUNC).ctx("trim")?);
    Device::open(&path)
        .ctx("open")?
        .set_backend(backend::PAGES, 0)
        .ctx("SET_BACKEND pages")
}

/// Whether touching byte `off` of `m` kills a child with SIGBUS (the child
/// reads it; `write` makes it store instead).
fn sigbus(m: &Mapping, off: usize, write: bool) -> Result<bool, String> {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    // SAFETY: The child only touches memory and exits (async-signal-safe).
    match unsafe { fork() }.ctx("fork")? {
        ForkResult::Child => {
            let p = m.addr().wrapping_add(off);
            // SAFETY: A byte of our mapping: it exists, the device may refuse
            // it with SIGBUS (the point of the test).
            unsafe {
                if write {
                    std::ptr::write_volatile(p, 1);
                } else {
                    std::ptr::read_volatile(p);
                }
                libc::_exit(0)
            }
        }
        ForkResult::Parent { child } => match waitpid(child, None).ctx("waitpid")? {
            WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGBUS, _) => Ok(true),
            WaitStatus::Exited(_, 0) => Ok(false),
            other => Err(format!("child: {other:?}")),
        },
    }
}

/// Page-for-page: the mapping at page offset `pgoff` of `pages` pages
/// against `pread` of the same bytes.
fn compare(dev: &Device, pgoff: usize, pages: usize, what: &str) -> Result<(), String> {
    let m = dev
        .mmap(pages * PAGE, (pgoff * PAGE) as u64, libc::PROT_READ, SHARED)
        .ctx(what)?;
    let mut a = vec![0u8; PAGE];
    let mut b = vec![0u8; PAGE];
    for p in 0..pages {
        m.read_at(p * PAGE, &mut a);
        b.fill(0xee);
        let n = dev
            .file()
            .read_at(&mut b, ((pgoff + p) * PAGE) as u64)
            .ctx("pread")?;
        // The last page: the bytes past the size are the quantum's zeros.
        b[n..].fill(0);
        ensure!(a == b, "{what}: page {} differs from read(2)", pgoff + p);
    }
    Ok(())
}

/// A device on `be` of `quanta` quanta and a bit, filled with random bytes
/// through write(2); its size in pages (whole pages only).
fn filled(dev: &Device, seed: u64, bytes: usize) -> Result<usize, String> {
    let data = Rng::new(seed).bytes(bytes);
    dev.file().write_all_at(&data, 0).ctx("write")?;
    Ok(bytes / PAGE)
}

fn matches_read() -> TestResult {
    let mut cases = 0;
    // scullp at orders 0..=3 (quanta of 1..8 pages) with small qsets, so
    // the mapping crosses quanta and quantum sets.
    for order in 0..=3u32 {
        let dev = fresh(backend::PAGES, order, 4000, 3)?;
        let pages = filled(&dev, 0x3a9 + u64::from(order), (PAGE << order) * 7 + 1234)?;
        for (pgoff, n) in [
            (0, pages),
            (1, 3),
            (pages / 2, pages - pages / 2),
            (pages - 1, 1),
        ] {
            compare(
                &dev,
                pgoff,
                n,
                &format!("pages order {order} at page {pgoff}"),
            )?;
            cases += 1;
        }
    }
    // scullv with page-multiple quanta.
    for quantum in [4096, 8192, 3 * 4096] {
        let dev = fresh(backend::VMALLOC, 0, quantum, 2)?;
        let pages = filled(&dev, 0x7e + quantum as u64, quantum as usize * 5 + 100)?;
        for (pgoff, n) in [(0, pages), (2, 4), (pages - 2, 2)] {
            compare(
                &dev,
                pgoff,
                n,
                &format!("vmalloc quantum {quantum} at page {pgoff}"),
            )?;
            cases += 1;
        }
    }
    trim()?;
    println!("# {cases} mappings compared page for page with read(2)");
    Ok(Outcome::Pass)
}

fn write_through() -> TestResult {
    for (be, order, quantum) in [(backend::PAGES, 1, 4000), (backend::VMALLOC, 0, 8192)] {
        let dev = fresh(be, order, quantum, 4)?;
        filled(&dev, 11, 8 * PAGE)?;
        let m = dev.mmap(8 * PAGE, 0, RW, SHARED).ctx("mmap")?;
        // write(2) → a page already mapped (faulted in first).
        let mut old = [0u8; 13];
        m.read_at(3 * PAGE + 5, &mut old);
        dev.file()
            .write_all_at(b"from write(2)", 3 * PAGE as u64 + 5)
            .ctx("write")?;
        let mut got = [0u8; 13];
        m.read_at(3 * PAGE + 5, &mut got);
        ensure_eq!(
            &got,
            b"from write(2)",
            "backend {be}: write(2) seen in the mapping"
        );
        // The mapping → read(2), across a page boundary.
        m.write_at(6 * PAGE - 3, b"via the map");
        let mut back = [0u8; 11];
        dev.file()
            .read_exact_at(&mut back, 6 * PAGE as u64 - 3)
            .ctx("read")?;
        ensure_eq!(
            &back,
            b"via the map",
            "backend {be}: a store seen by read(2)"
        );
        // A private mapping copies on write: the device keeps its bytes.
        let p = dev
            .mmap(PAGE, 0, RW, libc::MAP_PRIVATE)
            .ctx("mmap private")?;
        p.write_at(0, b"private");
        let mut first = [0u8; 7];
        dev.file().read_exact_at(&mut first, 0).ctx("read")?;
        ensure!(
            &first != b"private",
            "backend {be}: a private store reached the device"
        );
    }
    trim()?;
    Ok(Outcome::Pass)
}

fn sigbus_past_size() -> TestResult {
    for (be, order) in [(backend::PAGES, 2), (backend::VMALLOC, 0)] {
        let quantum = if be == backend::VMALLOC { 4096 } else { 4000 };
        let dev = fresh(be, order, quantum, 4)?;
        // One byte written: its page maps, the next does not (past size),
        // also within the same order-2 quantum.
        dev.file().write_all_at(b"x", 0).ctx("write")?;
        let m = dev.mmap(4 * PAGE, 0, RW, SHARED).ctx("mmap")?;
        ensure!(
            !sigbus(&m, 10, false)?,
            "backend {be}: page 0 (size 1) faulted"
        );
        ensure!(
            sigbus(&m, PAGE, false)?,
            "backend {be}: page 1, past the size"
        );
        ensure!(
            sigbus(&m, 3 * PAGE + 7, true)?,
            "backend {be}: a store past the size"
        );
        // A hole (never written, below the size) is SIGBUS too, as LDD3's
        // nopage says of "hole or end-of-file".
        drop(m);
        let q = (dev.info().ctx("INFO")?.quantum) as u64;
        dev.file()
            .write_all_at(b"y", 3 * q)
            .ctx("write past a hole")?;
        let m = dev
            .mmap((3 * q as usize).div_ceil(PAGE) * PAGE + PAGE, 0, RW, SHARED)
            .ctx("mmap")?;
        ensure!(
            sigbus(&m, q as usize, false)?,
            "backend {be}: the hole at quantum 1"
        );
        ensure!(
            !sigbus(&m, 3 * q as usize, false)?,
            "backend {be}: quantum 3, written"
        );
    }
    trim()?;
    Ok(Outcome::Pass)
}

fn refused_elsewhere() -> TestResult {
    for be in [backend::KMALLOC, backend::CACHE, backend::MEMPOOL] {
        let dev = fresh(be, 0, 4096, 4)?;
        dev.file().write_all_at(b"data", 0).ctx("write")?;
        ensure_eq!(
            dev.mmap(PAGE, 0, libc::PROT_READ, SHARED).map(drop),
            Err(Errno::ENODEV),
            "mmap of backend {be}"
        );
    }
    // vmalloc with LDD3's default quantum (4000 bytes): its quanta are not
    // whole pages, so their bytes are not a page's.
    let dev = fresh(backend::VMALLOC, 0, 4000, 4)?;
    ensure_eq!(
        dev.mmap(PAGE, 0, libc::PROT_READ, SHARED).map(drop),
        Err(Errno::ENODEV),
        "vmalloc with a 4000-byte quantum"
    );
    // A far offset maps, and is past the size.
    let dev = fresh(backend::PAGES, 0, 4000, 4)?;
    dev.file().write_all_at(b"data", 0).ctx("write")?;
    let far = dev
        .mmap(PAGE, 1 << 62, libc::PROT_READ, SHARED)
        .ctx("mmap at 2^62")?;
    ensure!(sigbus(&far, 0, false)?, "a page at 2^62: past the size");
    drop(far);
    trim()?;
    Ok(Outcome::Pass)
}

fn trim_while_mapped() -> TestResult {
    let dev = fresh(backend::PAGES, 0, 4000, 4)?;
    filled(&dev, 5, 4 * PAGE)?;
    let path = crate::device::node(DEV);
    {
        let m = dev.mmap(4 * PAGE, 0, RW, SHARED).ctx("mmap")?;
        let mut b = [0u8; 1];
        m.read_at(0, &mut b);
        ensure_eq!(
            Device::open_with(&path, libc::O_WRONLY | libc::O_TRUNC)
                .map_err(|e| e.raw_os_error())
                .map(drop),
            Err(Some(libc::EBUSY)),
            "trim while mapped"
        );
        ensure_eq!(
            dev.set_backend(backend::KMALLOC, 0),
            Err(Errno::EBUSY),
            "SET_BACKEND while mapped"
        );
        ensure_eq!(dev.info().ctx("INFO")?.quanta, 4, "the data is still there");
        // A split VMA (munmap of the middle page) still counts: two VMAs.
        // SAFETY: Unmaps one page of our own mapping, which we never touch again.
        ensure_eq!(unsafe { libc::munmap(m.addr().add(PAGE).cast(), PAGE) }, 0);
        drop(m);
    }
    // The split pieces above are gone with `m`'s munmap of the whole range.
    drop(Device::open_with(&path, libc::O_WRONLY | libc::O_TRUNC).ctx("trim after munmap")?);
    ensure_eq!(dev.info().ctx("INFO")?.quanta, 0, "trim after unmap");
    trim()?;
    Ok(Outcome::Pass)
}

fn fork_shared() -> TestResult {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    let dev = fresh(backend::VMALLOC, 0, 4096, 8)?;
    filled(&dev, 9, 4 * PAGE)?;
    let m = dev.mmap(4 * PAGE, 0, RW, SHARED).ctx("mmap")?;
    // SAFETY: The child writes into the shared mapping and exits.
    match unsafe { fork() }.ctx("fork")? {
        ForkResult::Child => {
            m.write_at(2 * PAGE + 1, b"child was here");
            // SAFETY: Ends the child at once.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            ensure!(
                matches!(
                    waitpid(child, None).ctx("waitpid")?,
                    WaitStatus::Exited(_, 0)
                ),
                "child failed"
            );
        }
    }
    let mut got = [0u8; 14];
    dev.file()
        .read_exact_at(&mut got, 2 * PAGE as u64 + 1)
        .ctx("read")?;
    ensure_eq!(
        &got,
        b"child was here",
        "the child's store, read by the parent"
    );
    // The child's VMA went with it; ours still counts.
    ensure_eq!(
        dev.set_backend(backend::PAGES, 0),
        Err(Errno::EBUSY),
        "still mapped here"
    );
    drop(m);
    trim()?;
    ensure_eq!(
        dev.info().ctx("INFO")?.quanta,
        0,
        "trim after the fork's mappings are gone"
    );
    Ok(Outcome::Pass)
}

/// Free memory in bytes: the buddy lists and the per-CPU page lists.
fn mem_free() -> Result<u64, String> {
    Ok(crate::tour::free_pages().ok_or("/proc/zoneinfo")? * PAGE as u64)
}

fn pages_come_back() -> TestResult {
    const BYTES: usize = 64 << 20;
    trim()?;
    let before = mem_free()?;
    for (be, order, quantum) in [(backend::PAGES, 3, 4000), (backend::VMALLOC, 0, 65536)] {
        let dev = fresh(be, order, quantum, 64)?;
        filled(&dev, 1, BYTES)?;
        let m = dev.mmap(BYTES, 0, RW, SHARED).ctx("mmap")?;
        let mut b = [0u8; 1];
        for p in (0..BYTES).step_by(PAGE) {
            m.read_at(p, &mut b);
        }
        m.write_at(BYTES - 1, b"z");
        drop(m);
        trim()?;
        ensure_eq!(dev.info().ctx("INFO")?.bytes_held, 0);
    }
    let after = mem_free()?;
    println!("# free before {before}, after {after} (64 MiB mapped and faulted on each backend)");
    ensure!(
        after + (8 << 20) >= before,
        "free memory fell by {} B: pages not given back",
        before.saturating_sub(after)
    );
    Ok(Outcome::Pass)
}

fn threads_fault_together() -> TestResult {
    let dev = fresh(backend::PAGES, 0, 4000, 16)?;
    filled(&dev, 3, 256 * PAGE)?;
    let m = dev
        .mmap(256 * PAGE, 0, libc::PROT_READ, SHARED)
        .ctx("mmap")?;
    let mut want = vec![0u8; 256 * PAGE];
    dev.file().read_exact_at(&mut want, 0).ctx("read")?;
    let m = &m;
    let want = &want;
    let bad = std::thread::scope(|s| {
        let h: Vec<_> = (0..4)
            .map(|t| {
                s.spawn(move || {
                    let mut b = vec![0u8; PAGE];
                    (0..256).filter(|p| (p + t) % 2 == 0).any(|p| {
                        m.read_at(p * PAGE, &mut b);
                        b[..] != want[p * PAGE..(p + 1) * PAGE]
                    })
                })
            })
            .collect();
        h.into_iter().any(|h| h.join().unwrap_or(true))
    });
    ensure!(!bad, "a page read through the mapping differs");
    Ok(Outcome::Pass)
}

/// The mmap tests.
pub fn tests() -> Vec<Test> {
    let _ = uapi::ABI_VERSION;
    vec![
        Test::new("mmap/matches_read_page_for_page", matches_read),
        Test::new("mmap/write_through_both_ways", write_through),
        Test::new("mmap/sigbus_past_size_and_holes", sigbus_past_size),
        Test::new("mmap/enodev_on_other_backends", refused_elsewhere),
        Test::new("mmap/trim_while_mapped_ebusy", trim_while_mapped),
        Test::new("mmap/fork_shared_mapping", fork_shared),
        Test::new("mmap/threads_fault_together", threads_fault_together),
        Test::new("mmap/pages_come_back", pages_come_back),
    ]
}
