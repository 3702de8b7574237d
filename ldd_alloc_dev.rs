// SPDX-License-Identifier: GPL-2.0

//! The scull char device (LDD3 chapters 3 and 6) and the ioctl dispatch.
//!
//! `/dev/ldd_alloc0` … `/dev/ldd_alloc<nr_devs-1>` each hold a
//! [`ScullStore`]. Device `i` starts on backend `i % 4`: kmalloc (scull),
//! our cache (scullc), pages of `order` (scullp), vmalloc (scullv); an empty
//! device can be switched with `LDD_IOC_SET_BACKEND`.
//!
//! Like LDD3, `quantum` and `qset` are module-wide values (`scull_quantum`,
//! `scull_qset`) that the scull ioctls read and change; a device picks them up
//! when it is trimmed. A device is trimmed when it is opened write-only with
//! `O_TRUNC` (what a shell's `>` does; LDD3 trims on any write-only open).
//! `SCULL_IOCRESET` restores the load-time quantum and qset, as in LDD3.
//!
//! Concurrent writers are serialized by the device mutex (LDD3's `dev->sem`),
//! so the bytes of one `write(2)` are never interleaved with another's.

use core::sync::atomic::{AtomicU32, Ordering};
use kernel::{
    bindings,
    fs::file::flags::{O_ACCMODE, O_APPEND, O_TRUNC, O_WRONLY},
    new_mutex,
    prelude::*,
    sync::Mutex,
    uaccess::{UserPtr, UserSlice, UserSliceReader, UserSliceWriter},
};

use crate::kalloc::pages::PAGES;
use crate::lab::{self, LabLimits, LabTable};
use crate::scull::backend::Backend;
use crate::scull::chrdev::{CharDevice, Offset};
use crate::scull::store::ScullStore;
use crate::uapi;

/// Module-wide quantum and qset (LDD3's `scull_quantum`/`scull_qset`),
/// with the load-time values that `SCULL_IOCRESET` restores.
pub(crate) struct Geometry {
    quantum: AtomicU32,
    qset: AtomicU32,
    default_quantum: AtomicU32,
    default_qset: AtomicU32,
    order: AtomicU32,
    max_mib: AtomicU32,
    lab_max_handles: AtomicU32,
    lab_max_mib: AtomicU32,
}

/// The one geometry of the module, set from the parameters at init.
pub(crate) static GEOMETRY: Geometry = Geometry {
    quantum: AtomicU32::new(0),
    qset: AtomicU32::new(0),
    default_quantum: AtomicU32::new(0),
    default_qset: AtomicU32::new(0),
    order: AtomicU32::new(0),
    max_mib: AtomicU32::new(0),
    lab_max_handles: AtomicU32::new(0),
    lab_max_mib: AtomicU32::new(0),
};

impl Geometry {
    /// Sets the load-time values, already validated.
    pub(crate) fn init(&self, quantum: u32, qset: u32, order: u32, max_mib: u32, lab: (u32, u32)) {
        for (field, value) in [
            (&self.lab_max_handles, lab.0),
            (&self.lab_max_mib, lab.1),
            (&self.quantum, quantum),
            (&self.default_quantum, quantum),
            (&self.qset, qset),
            (&self.default_qset, qset),
            (&self.order, order),
            (&self.max_mib, max_mib),
        ] {
            field.store(value, Ordering::Relaxed);
        }
    }

    fn lab_limits(&self) -> LabLimits {
        LabLimits {
            max_handles: self.lab_max_handles.load(Ordering::Relaxed) as usize,
            max_bytes: u64::from(self.lab_max_mib.load(Ordering::Relaxed)) << 20,
        }
    }

    fn max_bytes(&self) -> u64 {
        u64::from(self.max_mib.load(Ordering::Relaxed)) << 20
    }

    fn quantum(&self) -> u32 {
        self.quantum.load(Ordering::Relaxed)
    }

    fn qset(&self) -> u32 {
        self.qset.load(Ordering::Relaxed)
    }
}

/// Checks a quantum or qset value from userspace.
fn checked(value: i64, max: u32) -> Result<u32> {
    match u32::try_from(value) {
        Ok(v) if v >= 1 && v <= max => Ok(v),
        _ => Err(EINVAL),
    }
}

/// One scull device.
#[pin_data]
pub(crate) struct ScullDev {
    index: u32,
    #[pin]
    store: Mutex<ScullStore>,
}

impl ScullDev {
    /// Device `index`, initially on its default backend.
    pub(crate) fn new(index: u32) -> Result<impl PinInit<Self, Error>> {
        let geometry = &GEOMETRY;
        let backend = Backend::from_abi(
            index % 4,
            geometry.order.load(Ordering::Relaxed),
            geometry.quantum() as usize,
        )?;
        let store = ScullStore::new(
            backend,
            geometry.quantum() as usize,
            geometry.qset() as usize,
        );
        Ok(try_pin_init!(Self {
            index,
            store <- new_mutex!(store, "ScullDev::store"),
        }))
    }

    /// LDD3's `scull_trim()`: empty, and take up the current quantum/qset.
    fn trim(&self, store: &mut ScullStore) -> Result {
        let quantum = GEOMETRY.quantum() as usize;
        let backend = store.backend().resized(quantum)?;
        store.trim(backend, quantum, GEOMETRY.qset() as usize);
        Ok(())
    }

    fn info(&self) -> uapi::DeviceInfo {
        let store = self.store.lock();
        uapi::DeviceInfo {
            abi_version: uapi::ABI_VERSION,
            module_version: crate::MODULE_VERSION,
            index: self.index,
            backend: store.backend().to_abi(),
            quantum: store.quantum() as u32,
            qset: store.qset() as u32,
            order: store.backend().order(),
            qsets: store.sets() as u32,
            size: store.size(),
            bytes_held: store.bytes_held(),
            quanta: store.quanta(),
        }
    }
}

/// State of one open file of a scull device: its device, and its lab
/// allocations (freed when the file is closed).
pub(crate) struct ScullFile {
    dev: &'static ScullDev,
    lab: Pin<KBox<Mutex<LabTable>>>,
}

impl CharDevice for ScullDev {
    type File = ScullFile;

    fn open(dev: &'static Self, flags: u32) -> Result<KBox<ScullFile>> {
        if flags & O_ACCMODE == O_WRONLY && flags & O_TRUNC != 0 {
            let mut store = dev.store.lock();
            dev.trim(&mut store)?;
        }
        let lab = KBox::pin_init(
            new_mutex!(LabTable::default(), "ScullFile::lab"),
            GFP_KERNEL,
        )?;
        Ok(KBox::new(ScullFile { dev, lab }, GFP_KERNEL)?)
    }

    fn read(
        file: &ScullFile,
        mut out: UserSliceWriter,
        _flags: u32,
        pos: &mut Offset,
    ) -> Result<usize> {
        file.dev.store.lock().read(&mut out, pos)
    }

    fn write(
        file: &ScullFile,
        mut input: UserSliceReader,
        flags: u32,
        pos: &mut Offset,
    ) -> Result<usize> {
        let mut store = file.dev.store.lock();
        if flags & O_APPEND != 0 {
            *pos = store.size() as i64;
        }
        store.write(&mut input, pos, GEOMETRY.max_bytes())
    }

    fn llseek(file: &ScullFile, pos: Offset, offset: Offset, whence: u32) -> Result<Offset> {
        let base = match whence {
            bindings::SEEK_SET => 0,
            bindings::SEEK_CUR => pos,
            bindings::SEEK_END => file.dev.store.lock().size() as i64,
            _ => return Err(EINVAL),
        };
        match base.checked_add(offset) {
            Some(new) if new >= 0 => Ok(new),
            _ => Err(EINVAL),
        }
    }

    fn ioctl(file: &ScullFile, cmd: u32, arg: usize) -> Result<isize> {
        // Like LDD3: wrong magic or a number past the last one is not ours.
        if uapi::ioc_type(cmd) != uapi::MAGIC {
            return Err(ENOTTY);
        }
        if uapi::ioc_nr(cmd) <= uapi::SCULL_IOC_MAXNR {
            return scull_ioctl(cmd, arg);
        }
        let dev = file.dev;
        match cmd {
            uapi::LDD_IOC_INFO => {
                write_user(arg, &dev.info())?;
                Ok(0)
            }
            uapi::LDD_IOC_SET_BACKEND => {
                let value = u32::try_from(arg).map_err(|_| EINVAL)?;
                let mut store = dev.store.lock();
                if store.quanta() != 0 {
                    return Err(EBUSY);
                }
                // scullp's quantum is its pages' size; others keep the
                // device's quantum, or the module's when leaving scullp.
                let quantum = match store.backend() {
                    Backend::Pages { .. } => GEOMETRY.quantum() as usize,
                    _ => store.quantum(),
                };
                let backend = Backend::from_abi(value & 0xff, value >> 8, quantum)?;
                let qset = store.qset();
                store.trim(backend, quantum, qset);
                Ok(0)
            }
            uapi::LDD_IOC_CACHE_INFO => {
                let index = read_user::<uapi::CacheInfo>(arg)?.index;
                write_user(arg, &crate::kalloc::caches::info(index)?)?;
                Ok(0)
            }
            uapi::LDD_IOC_SHRINK => Ok(crate::kalloc::caches::shrink_all() as isize),
            uapi::LDD_IOC_PAGE_STATS => {
                write_user(arg, &page_stats())?;
                Ok(0)
            }
            uapi::LDD_IOC_FAULT => {
                let spec = read_user::<uapi::FaultSpec>(arg)?;
                if spec.fail_next < 0 || spec.fail_all > 1 {
                    return Err(EINVAL);
                }
                PAGES
                    .faults
                    .set(spec.fail_next, spec.fail_all != 0, spec.owner);
                Ok(0)
            }
            uapi::LDD_IOC_ALLOC => lab::alloc(&file.lab, arg, GEOMETRY.lab_limits()),
            uapi::LDD_IOC_FREE => lab::free(&file.lab, arg),
            uapi::LDD_IOC_FREE_ALL => Ok(file.lab.lock().clear() as isize),
            uapi::LDD_IOC_LIST => lab::list(&file.lab, arg),
            uapi::LDD_IOC_STACK => lab::stack(arg),
            uapi::LDD_IOC_POOL_INFO => {
                let index = read_user::<uapi::PoolInfo>(arg)?.index;
                write_user(arg, &crate::kalloc::pools::info(index)?)?;
                Ok(0)
            }
            uapi::LDD_IOC_POOL_RESIZE => {
                let r = read_user::<uapi::PoolResize>(arg)?;
                crate::kalloc::pools::resize(r.index, r.min_nr)?;
                Ok(0)
            }
            uapi::LDD_IOC_POOL_DESTROY => {
                crate::kalloc::pools::destroy(u32::try_from(arg).map_err(|_| EINVAL)?)?;
                Ok(0)
            }
            cmd if uapi::ioc_nr(cmd) >= uapi::BENCH_NR_FIRST => crate::kbench::ioctl(cmd, arg),
            uapi::LDD_IOC_FREE_NULL => {
                // SAFETY: Each accepts NULL (0) and then does nothing.
                unsafe {
                    bindings::kfree(core::ptr::null());
                    bindings::kvfree(core::ptr::null());
                    bindings::free_pages(0, 0);
                }
                Ok(0)
            }
            uapi::LDD_IOC_BAD_FREE => {
                let scenario = u32::try_from(arg).map_err(|_| EINVAL)?;
                Ok(crate::kalloc::caches::bad_free(scenario)? as isize)
            }
            _ => Err(ENOTTY),
        }
    }
}

/// The page source's counters, for `LDD_IOC_PAGE_STATS`.
fn page_stats() -> uapi::PageStats {
    let c = PAGES.counts();
    let (fail_next, fail_all, fail_owner, _) = PAGES.faults.state();
    uapi::PageStats {
        pages_out: c.pages_out,
        allocs: c.allocs,
        frees: c.frees,
        failures: c.failures,
        injected: c.injected,
        fail_next,
        fail_all: u32::from(fail_all),
        fail_owner,
    }
}

/// Marks ABI structs as plain bytes, so `UserSlice` can copy them.
macro_rules! abi_plain_bytes {
    ($($t:ty),* $(,)?) => {$(
        // SAFETY: `#[repr(C)]`, integer fields only and no padding (the size
        // asserts in `uapi` pin the layout): every byte is initialised and
        // every byte pattern is a valid value.
        unsafe impl kernel::transmute::AsBytes for $t {}
        // SAFETY: As above.
        unsafe impl kernel::transmute::FromBytes for $t {}
    )*};
}
abi_plain_bytes!(
    uapi::DeviceInfo,
    uapi::CacheInfo,
    uapi::PageStats,
    uapi::FaultSpec,
    uapi::AllocRequest,
    uapi::AllocReply,
    uapi::HandleInfo,
    uapi::ListRequest,
    uapi::StackInfo,
    uapi::PoolInfo,
    uapi::PoolResize,
    uapi::BenchRun,
);

/// Reads a `T` from the user pointer `arg`.
pub(crate) fn read_user<T: kernel::transmute::FromBytes>(arg: usize) -> Result<T> {
    UserSlice::new(UserPtr::from_addr(arg), core::mem::size_of::<T>())
        .reader()
        .read::<T>()
}

/// Copies `value` to the user pointer `arg`.
pub(crate) fn write_user<T: kernel::transmute::AsBytes>(arg: usize, value: &T) -> Result {
    UserSlice::new(UserPtr::from_addr(arg), core::mem::size_of::<T>())
        .writer()
        .write(value)
}

/// Reads an `int` from the user pointer `arg`.
fn read_user_int(arg: usize) -> Result<i32> {
    UserSlice::new(UserPtr::from_addr(arg), 4)
        .reader()
        .read::<i32>()
}

/// The LDD3 scull ioctls (chapter 6, "scull_ioctl"), same numbers and rules.
fn scull_ioctl(cmd: u32, arg: usize) -> Result<isize> {
    let g = &GEOMETRY;
    let writes = matches!(
        cmd,
        uapi::SCULL_IOCRESET
            | uapi::SCULL_IOCSQUANTUM
            | uapi::SCULL_IOCSQSET
            | uapi::SCULL_IOCTQUANTUM
            | uapi::SCULL_IOCTQSET
            | uapi::SCULL_IOCXQUANTUM
            | uapi::SCULL_IOCXQSET
            | uapi::SCULL_IOCHQUANTUM
            | uapi::SCULL_IOCHQSET
    );
    // SAFETY: FFI call; `capable()` only reads the current task's credentials.
    if writes && !unsafe { bindings::capable(bindings::CAP_SYS_ADMIN as i32) } {
        return Err(EPERM);
    }
    let (qmax, smax) = (uapi::QUANTUM_MAX, uapi::QSET_MAX);
    match cmd {
        uapi::SCULL_IOCRESET => {
            g.quantum
                .store(g.default_quantum.load(Ordering::Relaxed), Ordering::Relaxed);
            g.qset
                .store(g.default_qset.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        uapi::SCULL_IOCSQUANTUM => g.quantum.store(
            checked(read_user_int(arg)?.into(), qmax)?,
            Ordering::Relaxed,
        ),
        uapi::SCULL_IOCSQSET => g.qset.store(
            checked(read_user_int(arg)?.into(), smax)?,
            Ordering::Relaxed,
        ),
        uapi::SCULL_IOCTQUANTUM => g
            .quantum
            .store(checked(arg as i64, qmax)?, Ordering::Relaxed),
        uapi::SCULL_IOCTQSET => g.qset.store(checked(arg as i64, smax)?, Ordering::Relaxed),
        uapi::SCULL_IOCGQUANTUM => write_user(arg, &(g.quantum() as i32))?,
        uapi::SCULL_IOCGQSET => write_user(arg, &(g.qset() as i32))?,
        uapi::SCULL_IOCQQUANTUM => return Ok(g.quantum() as isize),
        uapi::SCULL_IOCQQSET => return Ok(g.qset() as isize),
        uapi::SCULL_IOCXQUANTUM => {
            let new = checked(read_user_int(arg)?.into(), qmax)?;
            let old = g.quantum.swap(new, Ordering::Relaxed);
            write_user(arg, &(old as i32))?;
        }
        uapi::SCULL_IOCXQSET => {
            let new = checked(read_user_int(arg)?.into(), smax)?;
            let old = g.qset.swap(new, Ordering::Relaxed);
            write_user(arg, &(old as i32))?;
        }
        uapi::SCULL_IOCHQUANTUM => {
            return Ok(g
                .quantum
                .swap(checked(arg as i64, qmax)?, Ordering::Relaxed)
                as isize)
        }
        uapi::SCULL_IOCHQSET => {
            return Ok(g.qset.swap(checked(arg as i64, smax)?, Ordering::Relaxed) as isize)
        }
        _ => return Err(ENOTTY),
    }
    Ok(0)
}
