//! Per-CPU variables beyond the tour's claims: the counters count calls
//! and bytes exactly under concurrent threads, unprivileged callers see
//! the numbers but no kernel address and may not run the race, the race's
//! arguments are checked, and each open file has its own race counter.

use std::os::unix::fs::FileExt;

use nix::errno::Errno;

use super::privilege::AsNobody;
use crate::device::Device;
use crate::tap::{Context, Outcome, Test, TestResult};
use crate::uapi::{self, race_mode};
use crate::{ensure, ensure_eq};

/// The device these tests count on (the cache backend).
const DEV: u32 = 1;

fn sums(d: &Device) -> Result<[u64; 4], String> {
    let (i, c) = d.percpu_info().ctx("PERCPU_INFO")?;
    let copies = c.iter().fold([0u64; 4], |s, x| {
        [
            s[0] + x.reads,
            s[1] + x.writes,
            s[2] + x.bytes_read,
            s[3] + x.bytes_written,
        ]
    });
    ensure_eq!(
        copies,
        [i.reads, i.writes, i.bytes_read, i.bytes_written],
        "sum vs copies"
    );
    Ok(copies)
}

fn exact_counts() -> TestResult {
    let d = Device::open_index(DEV).ctx("open")?;
    let before = sums(&d)?;
    const T: usize = 4;
    const N: usize = 200;
    // Each thread counts what its calls returned: a read early on, before
    // 7 bytes are written, returns fewer.
    let (read, written) = std::thread::scope(|s| {
        let h: Vec<_> = (0..T)
            .map(|t| {
                let d = &d;
                s.spawn(move || {
                    let mut b = [0u8; 7];
                    let (mut r, mut w) = (0u64, 0u64);
                    for i in 0..N {
                        let at = (t * N + i) as u64 * 3;
                        w += d.file().write_at(&[t as u8; 3], at).unwrap_or(0) as u64;
                        r += d.file().read_at(&mut b, 0).unwrap_or(0) as u64;
                    }
                    (r, w)
                })
            })
            .collect();
        h.into_iter()
            .map(|h| h.join().unwrap_or((0, 0)))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    let after = sums(&d)?;
    let delta: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    let n = (T * N) as u64;
    ensure_eq!(written, 3 * n, "every write wrote its 3 bytes");
    ensure_eq!(
        delta,
        vec![n, n, read, written],
        "reads, writes, bytes read, bytes written"
    );
    drop(Device::open_with(crate::device::node(DEV), libc::O_WRONLY | libc::O_TRUNC).ctx("trim")?);
    Ok(Outcome::Pass)
}

fn nobody() -> TestResult {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(Outcome::Skip("needs root".into()));
    }
    let d = Device::open_index(DEV).ctx("open")?;
    let (root, _) = d.percpu_info().ctx("PERCPU_INFO")?;
    ensure!(root.base != 0, "root sees the cookie");
    let _n = AsNobody::enter()?;
    let (i, c) = d.percpu_info().ctx("PERCPU_INFO as nobody")?;
    ensure_eq!(i.possible, root.possible);
    ensure_eq!(i.base, 0, "cookie hidden");
    ensure!(
        c.iter().all(|x| x.addr == 0 && x.offset == 0),
        "addresses hidden: {c:?}"
    );
    ensure_eq!(
        d.race_run(10, race_mode::PREEMPT_OFF, 0).map(drop),
        Err(Errno::EPERM),
        "race as nobody"
    );
    d.race_read().ctx("RACE_READ as nobody")?;
    d.race_reset().ctx("RACE_RESET as nobody")?;
    Ok(Outcome::Pass)
}

fn race_arguments() -> TestResult {
    let d = Device::open_index(DEV).ctx("open")?;
    for (iters, mode, window, what) in [
        (0, 0, 0, "no iterations"),
        (uapi::RACE_MAX_ITERS + 1, 0, 0, "too many"),
        (1, race_mode::COUNT, 0, "unknown mode"),
        (1, 0, uapi::RACE_MAX_WINDOW_US + 1, "window too long"),
    ] {
        ensure_eq!(
            d.race_run(iters, mode, window).map(drop),
            Err(Errno::EINVAL),
            "{what}"
        );
    }
    let mut r = uapi::PercpuRace {
        iters: 1,
        _pad: 1,
        ..Default::default()
    };
    ensure_eq!(
        d.ioctl_inout(uapi::LDD_IOC_PERCPU_RACE, &mut r).map(drop),
        Err(Errno::EINVAL),
        "padding set"
    );
    // Bad user pointers: EFAULT, nothing else.
    ensure_eq!(
        d.ioctl_raw(uapi::LDD_IOC_PERCPU_INFO, 8).map(drop),
        Err(Errno::EFAULT)
    );
    let mut info = uapi::PercpuInfo {
        max: 4,
        entries: 8,
        ..Default::default()
    };
    ensure_eq!(
        d.ioctl_inout(uapi::LDD_IOC_PERCPU_INFO, &mut info)
            .map(drop),
        Err(Errno::EFAULT),
        "entries at a bad address"
    );
    Ok(Outcome::Pass)
}

fn per_file() -> TestResult {
    let a = Device::open_index(DEV).ctx("open a")?;
    let b = Device::open_index(DEV).ctx("open b")?;
    a.race_run(300, race_mode::PREEMPT_OFF, 1).ctx("race a")?;
    let (ra, ca) = a.race_read().ctx("read a")?;
    let (rb, _) = b.race_read().ctx("read b")?;
    ensure_eq!((ra.reference, ra.sum), (300, 300), "file a");
    ensure_eq!(ca.iter().sum::<u64>(), 300, "a's copies");
    ensure_eq!((rb.reference, rb.sum), (0, 0), "file b untouched");
    a.race_reset().ctx("reset")?;
    ensure_eq!(a.race_read().ctx("read a")?.0.reference, 0, "after reset");
    Ok(Outcome::Pass)
}

/// The per-CPU tests.
pub fn tests() -> Vec<Test> {
    vec![
        Test::new("percpu/counts_exact_under_threads", exact_counts),
        Test::new("percpu/nobody_sees_no_address", nobody),
        Test::new("percpu/race_arguments", race_arguments),
        Test::new("percpu/race_counter_per_file", per_file),
    ]
}
