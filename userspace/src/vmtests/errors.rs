//! Bad input gets an errno, never an oops: every ioctl and file operation
//! with a wrong command, value or pointer.

use std::os::fd::AsRawFd;

use nix::errno::Errno;

use crate::device::Device;
use crate::tap::{Context, Outcome, Test, TestResult};
use crate::uapi::{self, io, ior, iow, MAGIC};
use crate::{ensure, ensure_eq};

/// An address that is never mapped in a process (the first page).
const BAD_PTR: usize = 8;
/// A kernel address: userspace may never make the driver touch it.
const KERNEL_PTR: usize = 0xffff_8880_0000_0000;

fn open() -> Result<Device, String> {
    super::scull::fresh(uapi::backend::KMALLOC)
}

fn expect(dev: &Device, cmd: u32, arg: usize, want: Errno, what: &str) -> Result<(), String> {
    match dev.ioctl_raw(cmd, arg) {
        Err(e) if e == want => Ok(()),
        other => Err(format!("{what}: want {want}, got {other:?}")),
    }
}

fn unknown_commands() -> TestResult {
    let dev = open()?;
    expect(&dev, io(b'x', 0), 0, Errno::ENOTTY, "foreign magic")?;
    expect(
        &dev,
        io(MAGIC, 13),
        0,
        Errno::ENOTTY,
        "scullpipe's number, not ours",
    )?;
    expect(&dev, io(MAGIC, 200), 0, Errno::ENOTTY, "unused number")?;
    expect(
        &dev,
        ior::<[u8; 3]>(MAGIC, 32),
        0,
        Errno::ENOTTY,
        "INFO with a wrong size",
    )?;
    expect(
        &dev,
        iow::<i64>(MAGIC, 1),
        0,
        Errno::ENOTTY,
        "SQUANTUM with a wrong size",
    )?;
    expect(&dev, 0, 0, Errno::ENOTTY, "command 0")?;
    expect(&dev, u32::MAX, 0, Errno::ENOTTY, "command ~0")?;
    Ok(Outcome::Pass)
}

fn bad_values() -> TestResult {
    let dev = open()?;
    for v in [0i32, -1, -4000, i32::MIN] {
        let mut x = v;
        ensure_eq!(
            dev.ioctl_inout(uapi::SCULL_IOCSQUANTUM, &mut x),
            Err(Errno::EINVAL),
            "quantum {v}"
        );
        ensure_eq!(
            dev.ioctl_inout(uapi::SCULL_IOCSQSET, &mut x),
            Err(Errno::EINVAL),
            "qset {v}"
        );
        ensure_eq!(
            dev.ioctl_inout(uapi::SCULL_IOCXQUANTUM, &mut x),
            Err(Errno::EINVAL),
            "X quantum {v}"
        );
        ensure_eq!(x, v, "a refused X leaves the value alone");
    }
    let too_big = uapi::QUANTUM_MAX as usize + 1;
    expect(
        &dev,
        uapi::SCULL_IOCTQUANTUM,
        too_big,
        Errno::EINVAL,
        "T quantum too big",
    )?;
    expect(
        &dev,
        uapi::SCULL_IOCTQUANTUM,
        0,
        Errno::EINVAL,
        "T quantum 0",
    )?;
    expect(
        &dev,
        uapi::SCULL_IOCTQSET,
        uapi::QSET_MAX as usize + 1,
        Errno::EINVAL,
        "T qset",
    )?;
    expect(&dev, uapi::SCULL_IOCHQSET, 0, Errno::EINVAL, "H qset 0")?;
    expect(
        &dev,
        uapi::SCULL_IOCTQUANTUM,
        1usize << 40,
        Errno::EINVAL,
        "T quantum 2^40",
    )?;
    ensure_eq!(
        dev.quantum().ctx("G")?,
        dev.ioctl_raw(uapi::SCULL_IOCQQUANTUM, 0).ctx("Q")?
    );
    // Backends: unknown values and an order past the store's limit.
    expect(
        &dev,
        uapi::LDD_IOC_SET_BACKEND,
        99,
        Errno::EINVAL,
        "backend 99",
    )?;
    expect(
        &dev,
        uapi::LDD_IOC_SET_BACKEND,
        2 | 11 << 8,
        Errno::EINVAL,
        "pages order 11",
    )?;
    expect(
        &dev,
        uapi::LDD_IOC_SET_BACKEND,
        1 << 40,
        Errno::EINVAL,
        "huge arg",
    )?;
    // A device with data refuses to change backend: data never moves.
    dev.file().write_all_at(b"x", 0).ctx("write")?;
    expect(
        &dev,
        uapi::LDD_IOC_SET_BACKEND,
        3,
        Errno::EBUSY,
        "non-empty device",
    )?;
    super::scull::trim()?;
    Ok(Outcome::Pass)
}

use std::os::unix::fs::FileExt;

fn bad_pointers() -> TestResult {
    let dev = open()?;
    for ptr in [0, BAD_PTR, KERNEL_PTR] {
        for cmd in [
            uapi::SCULL_IOCSQUANTUM,
            uapi::SCULL_IOCSQSET,
            uapi::SCULL_IOCGQUANTUM,
            uapi::SCULL_IOCGQSET,
            uapi::SCULL_IOCXQUANTUM,
            uapi::SCULL_IOCXQSET,
            uapi::LDD_IOC_INFO,
        ] {
            expect(
                &dev,
                cmd,
                ptr,
                Errno::EFAULT,
                &format!("cmd {cmd:#x} ptr {ptr:#x}"),
            )?;
        }
    }
    // read(2)/write(2) with a bad buffer.
    dev.file().write_all_at(&[1u8; 100], 0).ctx("write")?;
    let fd = dev.file().as_raw_fd();
    for ptr in [BAD_PTR, KERNEL_PTR] {
        // SAFETY: The kernel checks the buffer; this process never touches it.
        let r = unsafe { libc::pread(fd, ptr as *mut libc::c_void, 50, 0) };
        ensure!(
            r == -1 && Errno::last() == Errno::EFAULT,
            "read into {ptr:#x}: {r}"
        );
        // SAFETY: As above.
        let r = unsafe { libc::pwrite(fd, ptr as *const libc::c_void, 50, 0) };
        ensure!(
            r == -1 && Errno::last() == Errno::EFAULT,
            "write from {ptr:#x}: {r}"
        );
    }
    // Like LDD3's scull, a faulting write may leave the bytes it was to
    // overwrite zeroed (copy_from_user zero-fills what it could not copy),
    // but never touches bytes outside its range, nor the device size.
    let mut back = [0u8; 100];
    dev.file().read_exact_at(&mut back, 0).ctx("read")?;
    ensure!(
        back[50..].iter().all(|&b| b == 1),
        "a faulting write changed bytes past its range"
    );
    ensure_eq!(dev.info().ctx("INFO")?.size, 100);
    super::scull::trim()?;
    Ok(Outcome::Pass)
}

fn negative_offsets() -> TestResult {
    let dev = open()?;
    let fd = dev.file().as_raw_fd();
    let buf = [0u8; 4];
    // SAFETY: A valid buffer; the offset is what is under test.
    let r = unsafe { libc::pwrite(fd, buf.as_ptr().cast(), 4, -5) };
    ensure!(
        r == -1 && Errno::last() == Errno::EINVAL,
        "pwrite at -5: {r}"
    );
    // Offsets so large that the set index overflows are refused, not wrapped.
    // SAFETY: As above.
    let r = unsafe { libc::pwrite(fd, buf.as_ptr().cast(), 4, i64::MAX - 2) };
    ensure!(r == -1, "pwrite at i64::MAX - 2 succeeded");
    // Past the device size limit (module param max_mib): ENOSPC, nothing kept.
    // SAFETY: As above.
    let r = unsafe { libc::pwrite(fd, buf.as_ptr().cast(), 4, 1 << 40) };
    ensure!(
        r == -1 && Errno::last() == Errno::ENOSPC,
        "pwrite at 1 TiB: {r}"
    );
    ensure_eq!(dev.info().ctx("INFO")?.bytes_held, 0);
    Ok(Outcome::Pass)
}

/// The errno tests.
pub fn tests() -> Vec<Test> {
    vec![
        Test::new("errors/unknown_commands", unknown_commands),
        Test::new("errors/bad_values", bad_values),
        Test::new("errors/bad_pointers", bad_pointers),
        Test::new("errors/offsets", negative_offsets),
    ]
}
