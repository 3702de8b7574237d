//! Concurrency on one device: a reader beside a writer on the same bytes,
//! trims and backend switches racing I/O, one file shared by threads, and
//! readv/writev.

use std::io::{IoSlice, IoSliceMut, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::device::{backend_name, Device};
use crate::tap::{Context, Outcome, Test, TestResult};
use crate::uapi::{self, backend as be};
use crate::{ensure, ensure_eq};

/// Bytes of each write of the reader/writer test: spans quanta and qsets
/// boundaries are crossed as the offsets vary.
const SPAN: usize = 12_000;

/// A writer rewrites the same 12000 bytes with a new fill byte each time; a
/// reader reads them meanwhile. The device mutex serializes a whole read
/// against a whole write, so every read sees one fill byte throughout:
/// never a mix of two writes (a torn write).
fn reader_sees_whole_writes(backend: u32) -> TestResult {
    let dev = super::scull::fresh(backend)?;
    dev.file()
        .write_all_at(&[0u8; SPAN], 1000)
        .ctx("first write")?;
    let path = dev.path().to_path_buf();
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, writes, path) = (stop.clone(), writes.clone(), path.clone());
        std::thread::spawn(move || -> Result<(), String> {
            let w = Device::open(&path).ctx("writer open")?;
            let mut fill = 0u8;
            while !stop.load(Ordering::Relaxed) {
                fill = fill.wrapping_add(1);
                let n = w.file().write_at(&[fill; SPAN], 1000).ctx("write")?;
                ensure_eq!(n, SPAN, "a whole write in one call");
                writes.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut reads = 0u64;
    let mut distinct = std::collections::BTreeSet::new();
    let mut result = Ok(());
    let mut buf = vec![0u8; SPAN];
    while Instant::now() < deadline || reads < 50 {
        match dev.file().read_at(&mut buf, 1000) {
            Ok(n) if n == SPAN => {}
            other => {
                result = Err(format!("read: {other:?}"));
                break;
            }
        }
        reads += 1;
        distinct.insert(buf[0]);
        if let Some(i) = buf.iter().position(|&b| b != buf[0]) {
            result = Err(format!(
                "read {reads}: byte {i} is {:#04x}, byte 0 is {:#04x}: a torn write",
                buf[i], buf[0]
            ));
            break;
        }
        if reads > 100_000 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let w = writer
        .join()
        .map_err(|_| "the writer panicked".to_string())?;
    result?;
    w?;
    let writes = writes.load(Ordering::Relaxed);
    println!(
        "# {}: {reads} reads, {writes} writes, {} distinct fills seen",
        backend_name(backend),
        distinct.len()
    );
    ensure!(writes > 0, "the writer never wrote");
    ensure!(
        distinct.len() > 1,
        "the reader never saw the writer's bytes change (no overlap tested)"
    );
    super::scull::trim()?;
    Ok(Outcome::Pass)
}

/// Trims (write-only O_TRUNC opens) and SET_BACKEND race writes and reads
/// on one device: every operation answers with success or the documented
/// errno (EBUSY for a switch of a non-empty device), a read never returns
/// bytes no write wrote, and after the race the device is consistent and
/// gives all its memory back.
fn trim_and_backend_race_io() -> TestResult {
    let dev = super::scull::fresh(be::KMALLOC)?;
    let path = dev.path().to_path_buf();
    dev.shrink().ctx("SHRINK")?;
    let live = |d: &Device| -> Result<Vec<(u32, u64)>, String> {
        Ok(d.caches()
            .ctx("CACHE_INFO")?
            .iter()
            .filter(|c| {
                c.flags & (uapi::cache_flags::POOL_PRIVATE | uapi::cache_flags::TEST_PRIVATE) == 0
            })
            .map(|c| (c.index, c.active_objs - c.cached_objs))
            .collect())
    };
    let live_before = live(&dev)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for t in 0..2u8 {
        let (stop, path) = (stop.clone(), path.clone());
        threads.push(std::thread::spawn(move || -> Result<u64, String> {
            let d = Device::open(&path).ctx("io open")?;
            let mut n = 0u64;
            let fill = 0x40 + t;
            let mut buf = vec![0u8; 20_000];
            while !stop.load(Ordering::Relaxed) {
                let off = (n * 7919) % 50_000;
                match d.file().write_at(&vec![fill; 20_000], off) {
                    Ok(_) => {}
                    Err(e) => return Err(format!("write: {e}")),
                }
                match d.file().read_at(&mut buf, off) {
                    Ok(k) => {
                        // Zeros (a hole after a trim raced in), or some
                        // writer's fill: nothing else was ever written.
                        if let Some(b) =
                            buf[..k].iter().find(|&&b| b != 0 && b != 0x40 && b != 0x41)
                        {
                            return Err(format!("read a byte nobody wrote: {b:#04x}"));
                        }
                    }
                    Err(e) => return Err(format!("read: {e}")),
                }
                n += 1;
            }
            Ok(n)
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let (mut trims, mut switches, mut busy) = (0u64, 0u64, 0u64);
    let mut result = Ok(());
    let backends = [be::KMALLOC, be::CACHE, be::PAGES, be::VMALLOC, be::MEMPOOL];
    while Instant::now() < deadline {
        if let Err(e) = super::scull::trim() {
            result = Err(e);
            break;
        }
        trims += 1;
        let b = backends[(trims % 5) as usize];
        match dev.set_backend(b, 0) {
            Ok(()) => switches += 1,
            Err(nix::errno::Errno::EBUSY) => busy += 1,
            Err(e) => {
                result = Err(format!("SET_BACKEND {b}: {e}"));
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut ops = 0;
    for t in threads {
        ops += t
            .join()
            .map_err(|_| "an I/O thread panicked".to_string())??;
    }
    result?;
    println!("# {ops} write+read pairs, {trims} trims, {switches} switches, {busy} EBUSY");
    ensure!(ops > 0 && trims > 0, "nothing raced");
    // Consistent afterwards: INFO's counts agree with a read of everything.
    let i = dev.info().ctx("INFO")?;
    ensure_eq!(
        i.bytes_held,
        i.quanta * u64::from(i.quantum),
        "held vs quanta"
    );
    let mut all = vec![0u8; i.size as usize];
    dev.file().read_exact_at(&mut all, 0).ctx("read all")?;
    ensure!(
        all.iter().all(|&b| b == 0 || b == 0x40 || b == 0x41),
        "device content after the race"
    );
    super::scull::trim()?;
    dev.set_backend(be::KMALLOC, 0).ctx("back to kmalloc")?;
    let i = dev.info().ctx("INFO")?;
    ensure_eq!((i.size, i.quanta, i.bytes_held), (0, 0, 0));
    // Caches created by the race (new quantum sizes) hold nothing either.
    let after = live(&dev)?;
    for (index, objs) in &after {
        let was = live_before
            .iter()
            .find(|(i, _)| i == index)
            .map_or(0, |(_, o)| *o);
        ensure_eq!(*objs, was, "objects of cache {index} after the race");
    }
    Ok(Outcome::Pass)
}

/// One open file shared by four threads: each writes and reads its own
/// records with write/read (the shared file position, moved by lseek under
/// a lock of ours) and pwrite/pread; every record reads back whole.
fn one_fd_shared_by_threads() -> TestResult {
    const REC: usize = 5000;
    const PER: usize = 200;
    let dev = Arc::new(super::scull::fresh(be::CACHE)?);
    let lock = Arc::new(std::sync::Mutex::new(()));
    let mut threads = Vec::new();
    for t in 0..4usize {
        let (dev, lock) = (dev.clone(), lock.clone());
        threads.push(std::thread::spawn(move || -> Result<(), String> {
            for r in 0..PER {
                let slot = (r * 4 + t) * REC;
                let rec = vec![(t * 50 + r % 50) as u8 + 1; REC];
                if r % 2 == 0 {
                    dev.file().write_all_at(&rec, slot as u64).ctx("pwrite")?;
                } else {
                    let _g = lock.lock().map_err(|_| "poisoned".to_string())?;
                    let mut f = dev.file();
                    f.seek(SeekFrom::Start(slot as u64)).ctx("lseek")?;
                    f.write_all(&rec).ctx("write")?;
                }
                let mut back = vec![0u8; REC];
                dev.file()
                    .read_exact_at(&mut back, slot as u64)
                    .ctx("pread")?;
                ensure!(back == rec, "thread {t} record {r} read back differently");
            }
            Ok(())
        }));
    }
    for t in threads {
        t.join().map_err(|_| "a thread panicked".to_string())??;
    }
    let i = dev.info().ctx("INFO")?;
    ensure_eq!(i.size, (4 * PER * REC) as u64);
    let mut all = vec![0u8; i.size as usize];
    dev.file().read_exact_at(&mut all, 0).ctx("read all")?;
    for (k, rec) in all.chunks(REC).enumerate() {
        let (r, t) = (k / 4, k % 4);
        ensure!(
            rec.iter().all(|&b| b == (t * 50 + r % 50) as u8 + 1),
            "slot {k} (thread {t}, record {r}) differs"
        );
    }
    super::scull::trim()?;
    Ok(Outcome::Pass)
}

/// readv/writev: the iovecs are gathered in order across quanta, and a
/// scattered read fills each buffer in turn.
fn readv_writev(backend: u32) -> TestResult {
    let dev = super::scull::fresh(backend)?;
    let q = dev.info().ctx("INFO")?.quantum as usize;
    let parts: Vec<Vec<u8>> = [1usize, q - 1, q + 7, 3, 2 * q]
        .iter()
        .enumerate()
        .map(|(i, &n)| vec![b'a' + i as u8; n])
        .collect();
    let total: usize = parts.iter().map(Vec::len).sum();
    let slices: Vec<IoSlice> = parts.iter().map(|p| IoSlice::new(p)).collect();
    let mut f = dev.file();
    f.seek(SeekFrom::Start(10)).ctx("lseek")?;
    let n = f.write_vectored(&slices).ctx("writev")?;
    ensure_eq!(n, total, "writev wrote everything in one call");
    ensure_eq!(f.stream_position().ctx("tell")?, (10 + total) as u64);
    let mut bufs: Vec<Vec<u8>> = parts.iter().map(|p| vec![0u8; p.len()]).collect();
    f.seek(SeekFrom::Start(10)).ctx("lseek")?;
    {
        let mut io: Vec<IoSliceMut> = bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        let n = f.read_vectored(&mut io).ctx("readv")?;
        ensure_eq!(n, total, "readv read everything in one call");
    }
    ensure!(bufs == parts, "readv buffers differ from the writev parts");
    let mut head = [0xffu8; 10];
    dev.file().read_exact_at(&mut head, 0).ctx("read head")?;
    ensure_eq!(head, [0u8; 10], "the 10 bytes before the writev are a hole");
    // A readv past the end reads nothing.
    let mut one = [0u8; 4];
    ensure_eq!(f.read(&mut one).ctx("read at end")?, 0);
    super::scull::trim()?;
    Ok(Outcome::Pass)
}

/// The concurrency tests.
pub fn tests() -> Vec<Test> {
    let mut t = Vec::new();
    for backend in super::scull::backends() {
        t.push(Test::new(
            format!(
                "concurrency/{}/reader_sees_whole_writes",
                backend_name(backend)
            ),
            move || reader_sees_whole_writes(backend),
        ));
        t.push(Test::new(
            format!("concurrency/{}/readv_writev", backend_name(backend)),
            move || readv_writev(backend),
        ));
    }
    t.push(Test::new(
        "concurrency/trim_and_backend_race_io",
        trim_and_backend_race_io,
    ));
    t.push(Test::new(
        "concurrency/one_fd_shared_by_threads",
        one_fd_shared_by_threads,
    ));
    t
}
