// SPDX-License-Identifier: GPL-2.0

//! The scull char device (LDD3 chapters 3 and 6) and the ioctl dispatch.
//!
//! `/dev/ldd_alloc0` … `/dev/ldd_alloc<nr_devs-1>` each hold a
//! [`ScullStore`]. Device `i` starts on backend `i % 4`: kmalloc (scull),
//! our cache (scullc), pages of `order` (scullp), vmalloc (scullv); an empty
//! device can be switched with `LDD_IOC_SET_BACKEND`.
//!
//! A device is trimmed when it is opened write-only with `O_TRUNC` (what a
//! shell's `>` does; LDD3 trims on any write-only open). Concurrent writers
//! are serialized by the device mutex (LDD3's `dev->sem`), so the bytes of
//! one `write(2)` are never interleaved with another's.
//!
//! # Who may do what
//!
//! The node is created root-only (0600); `scripts/ldd_alloc_load` can give
//! a group access (0660), as LDD3's `scull_load` does. Whoever can open a
//! node may read, write and seek it; each ioctl is then checked against
//! [`PRIVILEGES`], the one table of this module that says which commands
//! need `CAP_SYS_ADMIN` (LDD3 chapter 6, "Capabilities and Restricted
//! Operations"). The rule: what changes module-wide state or can hurt other
//! users needs it; reading numbers and the lab's small, budgeted
//! allocations do not (the lab refuses the emergency reserves and hides
//! physical addresses for them: see [`lab`]).
//!
//! # Routing
//!
//! A command is routed by its number range to the room that owns it; each
//! handler gets the argument as an [`IoctlArg`] (the one user-copy layer).

use kernel::{
    bindings,
    fs::file::flags::{
        O_ACCMODE,
        O_APPEND,
        O_TRUNC,
        O_WRONLY, //
    },
    mm::virt::VmaNew,
    new_mutex,
    prelude::*,
    sync::Mutex,
    uaccess::{
        UserSliceReader,
        UserSliceWriter, //
    }, //
};

use crate::kalloc;
use crate::kbench;
use crate::lab::{
    self,
    table::LabTable,
    Caller, //
};
use crate::params::GEOMETRY;
use crate::percpu::{
    self,
    stats::DevStats, //
};
use crate::scull::backend::Backend;
use crate::scull::chrdev::{
    CharDevice,
    Offset, //
};
use crate::scull::mmap::PageMap;
use crate::scull::store::ScullStore;
use crate::uaccess::IoctlArg;
use crate::uapi;

/// Who may issue a command.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// Anyone who can open the node.
    Open,
    /// `CAP_SYS_ADMIN`; EPERM otherwise.
    SysAdmin,
}

use Needs::{
    Open,
    SysAdmin, //
};

/// The privilege table: every command the module knows, one line each. A
/// number that is not here is not ours (ENOTTY, as LDD3 answers a wrong
/// magic or number), whoever asks.
const PRIVILEGES: [(u32, Needs); 36] = [
    // LDD3's scull ioctls: the setters need CAP_SYS_ADMIN, as in the book.
    (uapi::SCULL_IOCRESET, SysAdmin),
    (uapi::SCULL_IOCSQUANTUM, SysAdmin),
    (uapi::SCULL_IOCSQSET, SysAdmin),
    (uapi::SCULL_IOCTQUANTUM, SysAdmin),
    (uapi::SCULL_IOCTQSET, SysAdmin),
    (uapi::SCULL_IOCGQUANTUM, Open),
    (uapi::SCULL_IOCGQSET, Open),
    (uapi::SCULL_IOCQQUANTUM, Open),
    (uapi::SCULL_IOCQQSET, Open),
    (uapi::SCULL_IOCXQUANTUM, SysAdmin),
    (uapi::SCULL_IOCXQSET, SysAdmin),
    (uapi::SCULL_IOCHQUANTUM, SysAdmin),
    (uapi::SCULL_IOCHQSET, SysAdmin),
    // The device: its numbers for all, a backend switch for root.
    (uapi::LDD_IOC_INFO, Open),
    (uapi::LDD_IOC_SET_BACKEND, SysAdmin),
    // Our caches and page source: numbers for all; what changes them, or
    // makes every page allocation of the module fail, for root.
    (uapi::LDD_IOC_CACHE_INFO, Open),
    (uapi::LDD_IOC_SHRINK, SysAdmin),
    (uapi::LDD_IOC_PAGE_STATS, Open),
    (uapi::LDD_IOC_FAULT, SysAdmin),
    (uapi::LDD_IOC_BAD_FREE, SysAdmin),
    (uapi::LDD_IOC_FREE_NULL, Open),
    // The lab: a file's own allocations, within the unprivileged rules.
    (uapi::LDD_IOC_ALLOC, Open),
    (uapi::LDD_IOC_FREE, Open),
    (uapi::LDD_IOC_FREE_ALL, Open),
    (uapi::LDD_IOC_LIST, Open),
    (uapi::LDD_IOC_STACK, Open),
    // Our mempools: numbers for all; resize and destroy for root.
    (uapi::LDD_IOC_POOL_INFO, Open),
    (uapi::LDD_IOC_POOL_RESIZE, SysAdmin),
    (uapi::LDD_IOC_POOL_DESTROY, SysAdmin),
    (uapi::LDD_IOC_KERNEL_POOL_INFO, Open),
    // The benchmarks: long runs of the CPUs, for root.
    (uapi::LDD_IOC_BENCH, SysAdmin),
    // Memory pressure: what reclaim did to our caches, for root (issue 16).
    (uapi::LDD_IOC_SHRINKER_INFO, SysAdmin),
    // Per-CPU variables: a device's counters for all (addresses for root);
    // the race, which spins CPUs and corrupts a counter on purpose, for
    // root; reading and resetting the file's own race counter for all.
    (uapi::LDD_IOC_PERCPU_INFO, Open),
    (uapi::LDD_IOC_PERCPU_RACE, SysAdmin),
    (uapi::LDD_IOC_PERCPU_RACE_READ, Open),
    (uapi::LDD_IOC_PERCPU_RACE_RESET, Open),
];

/// What the privilege table says of `cmd`; None if it is not ours.
fn needs(cmd: u32) -> Option<Needs> {
    PRIVILEGES
        .iter()
        .find(|(c, _)| *c == cmd)
        .map(|(_, needs)| *needs)
}

/// Whether the calling task has `CAP_SYS_ADMIN`, for a command that needs
/// it: `capable()`, which an LSM may audit (a refusal is news).
fn caller_is_admin() -> bool {
    // SAFETY: FFI call from process context (an ioctl); `capable()` reads the
    // current task's credentials.
    unsafe { bindings::capable(bindings::CAP_SYS_ADMIN as i32) }
}

/// Whether the calling task has `CAP_SYS_ADMIN`, for the lab's policy (a
/// plain user is the normal case there, not a refusal worth auditing).
fn caller_is_admin_quietly() -> bool {
    // SAFETY: FFI call from process context; `init_user_ns` is the initial
    // user namespace, a static that lives forever; the function only reads
    // the current task's credentials.
    unsafe {
        bindings::ns_capable_noaudit(
            core::ptr::addr_of_mut!(bindings::init_user_ns),
            bindings::CAP_SYS_ADMIN as i32,
        )
    }
}

/// One scull device.
#[pin_data]
pub(crate) struct ScullDev {
    index: u32,
    #[pin]
    store: Mutex<ScullStore>,
    /// The pages a mapping of the device reaches (never locked with `store`
    /// held across a user copy: see `scull::mmap`).
    #[pin]
    map: PageMap,
    /// Per-CPU counters of reads and writes.
    stats: DevStats,
}

impl ScullDev {
    /// Device `index`, initially on its default backend.
    pub(crate) fn new(index: u32) -> Result<impl PinInit<Self, Error>> {
        let quantum = GEOMETRY.quantum() as usize;
        let backend = Backend::from_abi(index % 4, GEOMETRY.order(), quantum)?;
        let store = ScullStore::new(backend, quantum, GEOMETRY.qset() as usize);
        let mappable = store.mappable();
        let stats = DevStats::new()?;
        Ok(try_pin_init!(Self {
            index,
            store <- new_mutex!(store, "ScullDev::store"),
            map <- PageMap::new(mappable),
            stats,
        }))
    }

    /// LDD3's `scull_trim()`: empty, and take up the current quantum/qset.
    /// EBUSY while the device is mapped (as scullp's trim).
    fn trim(&self, store: &mut ScullStore) -> Result {
        let quantum = GEOMETRY.quantum() as usize;
        // EBUSY (mapped) before anything that can fail for memory.
        let guard = self.map.begin_trim()?;
        let backend = store.backend().resized(quantum)?;
        guard.empty_map();
        store.trim(backend, quantum, GEOMETRY.qset() as usize);
        guard.done(store.mappable());
        Ok(())
    }

    /// `LDD_IOC_INFO`.
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

    /// `LDD_IOC_SET_BACKEND`: `value & 0xff` is the backend, `value >> 8`
    /// the page order; only an empty device can switch (EBUSY otherwise).
    fn set_backend(&self, value: u32) -> Result {
        let mut store = self.store.lock();
        if store.quanta() != 0 {
            return Err(EBUSY);
        }
        // scullp's quantum is its pages' size; others keep the device's
        // quantum, or the module's when leaving scullp.
        let quantum = match store.backend() {
            Backend::Pages { .. } => GEOMETRY.quantum() as usize,
            _ => store.quantum(),
        };
        // EBUSY (mapped) before the new backend's allocation can fail.
        let guard = self.map.begin_trim()?;
        let backend = Backend::from_abi(value & 0xff, value >> 8, quantum)?;
        let qset = store.qset();
        guard.empty_map();
        store.trim(backend, quantum, qset);
        guard.done(store.mappable());
        Ok(())
    }

    /// The device's own ioctls.
    fn ioctl(&self, cmd: u32, arg: IoctlArg) -> Result<isize> {
        match cmd {
            uapi::LDD_IOC_INFO => arg.write(&self.info())?,
            uapi::LDD_IOC_SET_BACKEND => self.set_backend(arg.value_u32()?)?,
            _ => return Err(ENOTTY),
        }
        Ok(0)
    }
}

/// State of one open file of a scull device: its device, and its lab
/// allocations (freed when the file is closed).
pub(crate) struct ScullFile {
    dev: &'static ScullDev,
    lab: Pin<KBox<Mutex<LabTable>>>,
    race: percpu::FileState,
}

impl CharDevice for ScullDev {
    type Owner = crate::LddAlloc;
    type File = ScullFile;

    fn open(dev: &'static Self, flags: u32) -> Result<ScullFile> {
        if flags & O_ACCMODE == O_WRONLY && flags & O_TRUNC != 0 {
            let mut store = dev.store.lock();
            dev.trim(&mut store)?;
        }
        let lab = KBox::pin_init(
            new_mutex!(LabTable::default(), "ScullFile::lab"),
            GFP_KERNEL,
        )?;
        let race = percpu::FileState::new()?;
        Ok(ScullFile { dev, lab, race })
    }

    fn read(
        file: &ScullFile,
        mut out: UserSliceWriter,
        _flags: u32,
        pos: &mut Offset,
    ) -> Result<usize> {
        let n = file.dev.store.lock().read(&mut out, pos)?;
        file.dev.stats.count_read(n);
        Ok(n)
    }

    fn write(
        file: &ScullFile,
        mut input: UserSliceReader,
        flags: u32,
        pos: &mut Offset,
    ) -> Result<usize> {
        let mut store = file.dev.store.lock();
        if flags & O_APPEND != 0 {
            *pos = Offset::try_from(store.size()).map_err(|_| EFBIG)?;
        }
        let n = store.write(&mut input, pos, GEOMETRY.max_bytes(), &file.dev.map)?;
        drop(store);
        file.dev.stats.count_write(n);
        Ok(n)
    }

    fn mmap(file: &ScullFile, vma: &VmaNew) -> Result {
        file.dev.map.mmap(vma)
    }

    fn end(file: &ScullFile) -> Offset {
        Offset::try_from(file.dev.store.lock().size()).unwrap_or(Offset::MAX)
    }

    fn ioctl(file: &ScullFile, cmd: u32, arg: usize) -> Result<isize> {
        let Some(needs) = needs(cmd) else {
            return Err(ENOTTY);
        };
        let nr = uapi::ioc_nr(cmd);
        let lab = (uapi::LAB_NR_FIRST..uapi::POOL_NR_FIRST).contains(&nr);
        let per_cpu = (uapi::PERCPU_NR_FIRST..=uapi::PERCPU_NR_LAST).contains(&nr);
        let admin = match needs {
            SysAdmin => caller_is_admin(),
            Open => (lab || per_cpu) && caller_is_admin_quietly(),
        };
        if needs == SysAdmin && !admin {
            return Err(EPERM);
        }
        let arg = IoctlArg::new(cmd, arg);
        match nr {
            0..=uapi::SCULL_IOC_MAXNR => crate::scull::ioctl::ioctl(cmd, arg),
            uapi::DEVICE_NR_FIRST..uapi::KALLOC_NR_FIRST => file.dev.ioctl(cmd, arg),
            uapi::KALLOC_NR_FIRST..uapi::LAB_NR_FIRST => kalloc::control::ioctl(cmd, arg),
            uapi::LAB_NR_FIRST..uapi::POOL_NR_FIRST => {
                lab::ioctl(&file.lab, cmd, arg, Caller { privileged: admin })
            }
            uapi::POOL_NR_FIRST..uapi::BENCH_NR_FIRST => kalloc::control::ioctl(cmd, arg),
            uapi::PRESSURE_NR_FIRST..uapi::PRESSURE_NR_END => kalloc::shrinker::ioctl(cmd, arg),
            uapi::PERCPU_NR_FIRST..=uapi::PERCPU_NR_LAST => {
                percpu::ioctl(&file.dev.stats, &file.race, cmd, arg, admin)
            }
            _ => kbench::ioctl(cmd, arg),
        }
    }
}
