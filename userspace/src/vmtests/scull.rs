//! The scull suite (LDD3 chapters 3 and 6), run against every store backend:
//! round trips, lseek, trim, the scull ioctls and concurrent writers.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

use nix::errno::Errno;

use crate::device::{backend_name, Device, BACKEND_NAMES};
use crate::rng::Rng;
use crate::tap::{Context, Outcome, Test, TestResult};
use crate::uapi;
use crate::{ensure, ensure_eq};

/// The device the suite works on.
const DEV: u32 = 0;

/// Empties device [`DEV`], puts it on `backend`, and opens it read-write.
pub fn fresh(backend: u32) -> Result<Device, String> {
    let path = crate::device::node(DEV);
    drop(Device::open_with(&path, libc::O_WRONLY | libc::O_TRUNC).ctx("trim open")?);
    let dev = Device::open(&path).ctx("open")?;
    dev.set_backend(backend, 0).ctx("LDD_IOC_SET_BACKEND")?;
    Ok(dev)
}

/// Trims device [`DEV`] so the next test starts empty.
pub fn trim() -> Result<(), String> {
    drop(Device::open_with(crate::device::node(DEV), libc::O_WRONLY | libc::O_TRUNC).ctx("trim")?);
    Ok(())
}

fn info(dev: &Device) -> Result<uapi::DeviceInfo, String> {
    dev.info().ctx("LDD_IOC_INFO")
}

/// Writes `data` at `offset`, then reads it back and compares.
fn roundtrip(dev: &Device, offset: u64, data: &[u8]) -> Result<(), String> {
    dev.file().write_all_at(data, offset).ctx("write")?;
    let mut back = vec![0xa5; data.len()];
    dev.file().read_exact_at(&mut back, offset).ctx("read")?;
    if let Some(i) = back.iter().zip(data).position(|(a, b)| a != b) {
        return Err(format!(
            "byte {} of {} differs: wrote {:#04x}, read {:#04x}",
            i,
            data.len(),
            data[i],
            back[i]
        ));
    }
    Ok(())
}

fn sizes(backend: u32) -> TestResult {
    let dev = fresh(backend)?;
    let i = info(&dev)?;
    let (q, qs) = (i.quantum as usize, i.qset as usize);
    let mut rng = Rng::new(0x5c011 + u64::from(backend));
    for len in [0, 1, q - 1, q, q + 1, qs * q + 1, 3 << 20] {
        trim()?;
        let dev = Device::open(dev.path()).ctx("reopen")?;
        let data = rng.bytes(len);
        roundtrip(&dev, 0, &data).map_err(|e| format!("size {len}: {e}"))?;
        let i = info(&dev)?;
        ensure_eq!(i.size, len as u64, "device size after writing {len}");
        ensure_eq!(i.quanta, len.div_ceil(q) as u64, "quanta for {len} bytes");
        ensure_eq!(i.bytes_held, i.quanta * q as u64);
        ensure_eq!(
            i.qsets as usize,
            len.div_ceil(q * qs),
            "qsets for {len} bytes"
        );
        // A read at the end returns 0 (end of file).
        let mut byte = [0u8; 1];
        ensure_eq!(
            dev.file()
                .read_at(&mut byte, len as u64)
                .ctx("read at end")?,
            0
        );
    }
    trim()?;
    ensure_eq!(info(&dev)?.bytes_held, 0, "trim gives every quantum back");
    Ok(Outcome::Pass)
}

fn seek(backend: u32) -> TestResult {
    let dev = fresh(backend)?;
    let mut f = dev.file();
    f.write_all(b"0123456789").ctx("write")?;
    ensure_eq!(f.stream_position().ctx("tell")?, 10);
    ensure_eq!(f.seek(SeekFrom::Start(2)).ctx("SEEK_SET")?, 2);
    ensure_eq!(f.seek(SeekFrom::Current(3)).ctx("SEEK_CUR")?, 5);
    let mut two = [0u8; 2];
    f.read_exact(&mut two).ctx("read")?;
    ensure_eq!(&two, b"56");
    ensure_eq!(f.seek(SeekFrom::End(-1)).ctx("SEEK_END")?, 9);
    f.read_exact(&mut two[..1]).ctx("read last")?;
    ensure_eq!(two[0], b'9');
    ensure_eq!(
        f.seek(SeekFrom::Current(-100))
            .map_err(|e| e.raw_os_error()),
        Err(Some(libc::EINVAL))
    );
    ensure_eq!(f.seek(SeekFrom::Start(1 << 40)).ctx("seek far")?, 1 << 40);
    // Past the end: nothing to read, then a write leaves a hole of zeros.
    ensure_eq!(f.seek(SeekFrom::End(100)).ctx("past end")?, 110);
    let mut buf = [0u8; 4];
    ensure_eq!(f.read(&mut buf).ctx("read past end")?, 0);
    f.write_all(b"end").ctx("write past end")?;
    ensure_eq!(info(&dev)?.size, 113);
    let mut all = vec![0u8; 113];
    dev.file().read_exact_at(&mut all, 0).ctx("read all")?;
    ensure!(all[..10] == *b"0123456789", "data before the hole");
    ensure!(
        all[10..110].iter().all(|&b| b == 0),
        "the hole reads as zeros"
    );
    ensure!(all[110..] == *b"end", "data after the hole");
    // whence values other than SET/CUR/END are refused.
    // SAFETY: lseek on an fd we own; no memory is involved.
    let r = unsafe { libc::lseek(std::os::fd::AsRawFd::as_raw_fd(dev.file()), 0, 7) };
    ensure!(r == -1 && Errno::last() == Errno::EINVAL, "whence 7: {r}");
    trim()?;
    Ok(Outcome::Pass)
}

fn truncate(backend: u32) -> TestResult {
    let dev = fresh(backend)?;
    dev.file().write_all_at(&[7u8; 10000], 0).ctx("write")?;
    ensure!(info(&dev)?.bytes_held > 0, "holding data");
    // O_WRONLY without O_TRUNC keeps the data; with it, trims.
    drop(Device::open_with(dev.path(), libc::O_WRONLY).ctx("open wronly")?);
    ensure_eq!(info(&dev)?.size, 10000);
    drop(Device::open_with(dev.path(), libc::O_RDWR | libc::O_TRUNC).ctx("open rdwr trunc")?);
    ensure_eq!(info(&dev)?.size, 10000, "only write-only opens trim (LDD3)");
    drop(Device::open_with(dev.path(), libc::O_WRONLY | libc::O_TRUNC).ctx("open trunc")?);
    let i = info(&dev)?;
    ensure_eq!((i.size, i.bytes_held, i.quanta, i.qsets), (0, 0, 0, 0));
    ensure_eq!(i.backend, backend, "a trim keeps the backend");
    // O_APPEND writes at the end.
    let app = Device::open_with(dev.path(), libc::O_WRONLY | libc::O_APPEND).ctx("append")?;
    app.file().write_all(b"abc").ctx("w1")?;
    app.file().seek(SeekFrom::Start(0)).ctx("seek")?;
    app.file().write_all(b"def").ctx("w2")?;
    let mut back = [0u8; 6];
    dev.file().read_exact_at(&mut back, 0).ctx("read")?;
    ensure_eq!(&back, b"abcdef");
    trim()?;
    Ok(Outcome::Pass)
}

fn geometry(backend: u32) -> TestResult {
    let dev = fresh(backend)?;
    let defaults = (dev.quantum().ctx("G")?, dev.qset().ctx("G")?);
    // Set through a pointer, then trim: the device picks the values up.
    dev.set_quantum(1000).ctx("S quantum")?;
    dev.set_qset(3).ctx("S qset")?;
    trim()?;
    let stats_before = dev.page_stats().ctx("PAGE_STATS")?;
    let data = Rng::new(7).bytes(7500);
    roundtrip(&dev, 0, &data)?;
    let i = info(&dev)?;
    if backend == uapi::backend::PAGES {
        // scullp: whole pages whatever the quantum, the qset as set; 7500
        // bytes are 2 pages in 1 set, straight from __get_free_pages (our
        // page source's counters do not move).
        ensure_eq!(
            (i.quantum, i.qset, i.quanta, i.qsets, i.bytes_held),
            (4096, 3, 2, 1, 8192),
            "scullp quanta are whole pages"
        );
        ensure_eq!(
            dev.page_stats().ctx("PAGE_STATS")?.pages_out,
            stats_before.pages_out,
            "scullp does not use our page source"
        );
        trim()?;
        let t = info(&dev)?;
        ensure_eq!(
            (t.size, t.quanta, t.qsets, t.bytes_held),
            (0, 0, 0, 0),
            "after trim"
        );
        roundtrip(&dev, 0, &data)?;
    } else {
        ensure_eq!((i.quantum, i.qset, i.quanta, i.qsets), (1000, 3, 8, 3));
    }
    // Tell, Query, eXchange, sHift.
    ensure_eq!(dev.ioctl_raw(uapi::SCULL_IOCTQUANTUM, 2000).ctx("T")?, 0);
    ensure_eq!(dev.ioctl_raw(uapi::SCULL_IOCQQUANTUM, 0).ctx("Q")?, 2000);
    let mut x = 3000i32;
    dev.ioctl_inout(uapi::SCULL_IOCXQUANTUM, &mut x).ctx("X")?;
    ensure_eq!(x, 2000, "X returns the old value through the pointer");
    ensure_eq!(dev.ioctl_raw(uapi::SCULL_IOCHQUANTUM, 4000).ctx("H")?, 3000);
    ensure_eq!(dev.ioctl_raw(uapi::SCULL_IOCTQSET, 5).ctx("T qset")?, 0);
    ensure_eq!(dev.ioctl_raw(uapi::SCULL_IOCQQSET, 0).ctx("Q qset")?, 5);
    let mut x = 6i32;
    dev.ioctl_inout(uapi::SCULL_IOCXQSET, &mut x)
        .ctx("X qset")?;
    ensure_eq!(x, 5);
    ensure_eq!(dev.ioctl_raw(uapi::SCULL_IOCHQSET, 7).ctx("H qset")?, 6);
    // RESET restores the load-time values.
    dev.scull_reset().ctx("RESET")?;
    ensure_eq!((dev.quantum().ctx("G")?, dev.qset().ctx("G")?), defaults);
    trim()?;
    Ok(Outcome::Pass)
}

fn concurrent_writers(backend: u32) -> TestResult {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    const RECORD: usize = 6000; // Spans quanta: interleaving would show.
    const RECORDS: usize = 150;
    let dev = fresh(backend)?;
    let mut children = Vec::new();
    for writer in 0..2u8 {
        // SAFETY: The child only writes to the device and exits; it touches no
        // lock held by another thread of this single-threaded process.
        match unsafe { fork() }.ctx("fork")? {
            ForkResult::Child => {
                let code = (|| -> std::io::Result<()> {
                    let d = Device::open_with(dev.path(), libc::O_WRONLY | libc::O_APPEND)?;
                    let mut f = d.file();
                    for r in 0..RECORDS {
                        let mut rec = vec![b'A' + writer; RECORD];
                        rec[..2].copy_from_slice(&(r as u16).to_le_bytes());
                        f.write_all(&rec)?;
                    }
                    Ok(())
                })()
                .map_or(1, |_| 0);
                // SAFETY: Leaves the child at once, as a forked child should.
                unsafe { libc::_exit(code) };
            }
            ForkResult::Parent { child } => children.push(child),
        }
    }
    for child in children {
        ensure!(
            matches!(
                waitpid(child, None).ctx("waitpid")?,
                WaitStatus::Exited(_, 0)
            ),
            "a writer failed"
        );
    }
    let total = 2 * RECORDS * RECORD;
    ensure_eq!(info(&dev)?.size, total as u64);
    let mut all = vec![0u8; total];
    dev.file().read_exact_at(&mut all, 0).ctx("read")?;
    let mut next = [0u16; 2];
    for rec in all.chunks(RECORD) {
        let w = rec[2].wrapping_sub(b'A');
        ensure!(w < 2, "record of unknown writer {w}");
        ensure!(
            rec[2..].iter().all(|&b| b == rec[2]),
            "a record is interleaved with another"
        );
        let n = u16::from_le_bytes([rec[0], rec[1]]);
        ensure_eq!(n, next[w as usize], "writer {w}'s records out of order");
        next[w as usize] += 1;
    }
    trim()?;
    Ok(Outcome::Pass)
}

fn big_random(backend: u32) -> TestResult {
    // Random offsets and lengths over a few MiB, checked against a model.
    let dev = fresh(backend)?;
    let mut rng = Rng::new(0xb16 + u64::from(backend));
    let mut model = vec![0u8; 6 << 20];
    let mut size = 0usize;
    for _ in 0..60 {
        let off = rng.below(model.len() as u64 - 70_000) as usize;
        let len = 1 + rng.below(70_000) as usize;
        let data = rng.bytes(len);
        dev.file().write_all_at(&data, off as u64).ctx("write")?;
        model[off..off + len].copy_from_slice(&data);
        size = size.max(off + len);
    }
    ensure_eq!(info(&dev)?.size, size as u64);
    let mut back = vec![0u8; size];
    dev.file().read_exact_at(&mut back, 0).ctx("read")?;
    ensure!(back == model[..size], "contents differ from the model");
    trim()?;
    Ok(Outcome::Pass)
}

/// The backends the module has ready (all of them once caches exist).
pub fn backends() -> Vec<u32> {
    (0..uapi::backend::COUNT).collect()
}

/// Every scull test, once per backend.
pub fn tests() -> Vec<Test> {
    type Case = (&'static str, fn(u32) -> TestResult);
    let cases: [Case; 6] = [
        ("sizes", sizes),
        ("lseek", seek),
        ("trim", truncate),
        ("geometry_ioctls", geometry),
        ("concurrent_writers", concurrent_writers),
        ("random_rw", big_random),
    ];
    let mut tests = Vec::new();
    for backend in backends() {
        for (name, f) in cases {
            tests.push(Test::new(
                format!("scull/{}/{name}", backend_name(backend)),
                move || {
                    let r = f(backend);
                    if r.is_err() {
                        let _ = trim();
                        let _ = Device::open_index(DEV).map(|d| d.scull_reset());
                    }
                    r
                },
            ));
        }
    }
    let _ = BACKEND_NAMES;
    tests
}
