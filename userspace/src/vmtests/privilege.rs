//! The privilege model (README "Who may do what"): the nodes are root-only
//! unless the load script names a group; with a node open, each ioctl's
//! answer to a caller without CAP_SYS_ADMIN matches the module's privilege
//! table, and the lab's unprivileged rules hold: no emergency reserves, no
//! physical addresses, a module-wide budget. The expectations here are
//! written out by hand, not read from the module.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use nix::errno::Errno;

use crate::device::{node, Device};
use crate::tap::{Context, Outcome, Test, TestResult};
use crate::uapi::{self, alloc_flags, context, gfp, lab_backend as lb};
use crate::{ensure, ensure_eq};

/// The uid and gid the unprivileged checks run as (nobody/nogroup).
pub const NOBODY: u32 = 65534;

/// While alive, the process runs with effective uid and gid [`NOBODY`]
/// (and so without effective capabilities); root again when dropped. The
/// real and saved ids stay 0, which is what lets it come back.
pub struct AsNobody(());

impl AsNobody {
    /// Drops to nobody; fails unless the process is root.
    pub fn enter() -> Result<Self, String> {
        // SAFETY: setegid/seteuid change credentials only; no memory is involved.
        unsafe {
            if libc::geteuid() != 0 {
                return Err("needs root".into());
            }
            if libc::setegid(NOBODY) != 0 || libc::seteuid(NOBODY) != 0 {
                return Err(format!("seteuid: {}", std::io::Error::last_os_error()));
            }
        }
        Ok(Self(()))
    }
}

impl Drop for AsNobody {
    fn drop(&mut self) {
        // SAFETY: As above; the saved uid 0 allows coming back.
        unsafe {
            if libc::seteuid(0) != 0 || libc::setegid(0) != 0 {
                // Running on as nobody would make every later test lie.
                eprintln!("cannot return to root: {}", std::io::Error::last_os_error());
                std::process::abort();
            }
        }
    }
}

fn needs_root() -> Option<Outcome> {
    // SAFETY: geteuid has no preconditions.
    (unsafe { libc::geteuid() } != 0).then(|| Outcome::Skip("needs root".into()))
}

/// The nodes are created 0600, root's: nobody cannot open them.
fn node_root_only() -> TestResult {
    if let Some(skip) = needs_root() {
        return Ok(skip);
    }
    let meta = std::fs::metadata(node(0)).ctx("stat")?;
    ensure_eq!(meta.permissions().mode() & 0o777, 0o600, "node mode");
    ensure_eq!((meta.uid(), meta.gid()), (0, 0), "node owner");
    let _nobody = AsNobody::enter()?;
    // Nobody reaches /dev (so the refusal below is the node's own mode).
    std::fs::read_dir("/dev").ctx("list /dev as nobody")?;
    match Device::open_index(0) {
        Err(e) => ensure_eq!(e.raw_os_error(), Some(libc::EACCES), "open as nobody"),
        Ok(_) => return Err("nobody opened a root-only node".into()),
    }
    Ok(Outcome::Pass)
}

/// Every command of the privilege table, with harmless arguments, from a
/// file root opened: the root-only ones give EPERM and change nothing; the
/// others work.
fn table_for_nobody() -> TestResult {
    if let Some(skip) = needs_root() {
        return Ok(skip);
    }
    let dev = super::scull::fresh(uapi::backend::KMALLOC)?;
    let quantum = dev.quantum().ctx("G quantum")?;
    let qset = dev.qset().ctx("G qset")?;
    let stats = dev.page_stats().ctx("PAGE_STATS")?;
    let mut int = 1000i32;
    let mut fault = uapi::FaultSpec {
        fail_next: 0,
        fail_all: 1,
        owner: 0,
    };
    let mut resize = uapi::PoolResize::default();
    let mut bench = uapi::BenchRun::default();
    let mut shrinker = uapi::ShrinkerInfo::default();
    let mut race = uapi::PercpuRace {
        iters: 1,
        ..Default::default()
    };
    let root_only: [(u32, usize, &str); 19] = [
        (uapi::SCULL_IOCRESET, 0, "RESET"),
        (
            uapi::SCULL_IOCSQUANTUM,
            &mut int as *mut i32 as usize,
            "S quantum",
        ),
        (
            uapi::SCULL_IOCSQSET,
            &mut int as *mut i32 as usize,
            "S qset",
        ),
        (uapi::SCULL_IOCTQUANTUM, 1000, "T quantum"),
        (uapi::SCULL_IOCTQSET, 10, "T qset"),
        (
            uapi::SCULL_IOCXQUANTUM,
            &mut int as *mut i32 as usize,
            "X quantum",
        ),
        (
            uapi::SCULL_IOCXQSET,
            &mut int as *mut i32 as usize,
            "X qset",
        ),
        (uapi::SCULL_IOCHQUANTUM, 1000, "H quantum"),
        (uapi::SCULL_IOCHQSET, 10, "H qset"),
        (
            uapi::LDD_IOC_SET_BACKEND,
            uapi::backend::VMALLOC as usize,
            "SET_BACKEND",
        ),
        (uapi::LDD_IOC_SHRINK, 0, "SHRINK"),
        (uapi::LDD_IOC_FAULT, &mut fault as *mut _ as usize, "FAULT"),
        (
            uapi::LDD_IOC_BAD_FREE,
            uapi::bad_free::DOUBLE as usize,
            "BAD_FREE",
        ),
        (
            uapi::LDD_IOC_POOL_RESIZE,
            &mut resize as *mut _ as usize,
            "POOL_RESIZE",
        ),
        (uapi::LDD_IOC_POOL_DESTROY, 0, "POOL_DESTROY"),
        (uapi::LDD_IOC_BENCH, &mut bench as *mut _ as usize, "BENCH"),
        (
            uapi::LDD_IOC_SHRINKER_INFO,
            &mut shrinker as *mut _ as usize,
            "SHRINKER_INFO",
        ),
        (
            uapi::LDD_IOC_PERCPU_RACE,
            &mut race as *mut _ as usize,
            "PERCPU_RACE",
        ),
        // A pointer to nothing: EPERM comes before any copy.
        (uapi::LDD_IOC_FAULT, 8, "FAULT, bad pointer"),
    ];
    {
        let _nobody = AsNobody::enter()?;
        for (cmd, arg, what) in root_only {
            ensure_eq!(
                dev.ioctl_raw(cmd, arg),
                Err(Errno::EPERM),
                "{what} as nobody"
            );
        }
        // Foreign numbers stay ENOTTY, privileged or not.
        ensure_eq!(
            dev.ioctl_raw(uapi::io(b'x', 1), 0),
            Err(Errno::ENOTTY),
            "foreign magic as nobody"
        );
        // What anyone may do.
        ensure_eq!(dev.quantum().ctx("G quantum as nobody")?, quantum);
        ensure_eq!(dev.qset().ctx("G qset as nobody")?, qset);
        ensure_eq!(
            dev.ioctl_raw(uapi::SCULL_IOCQQUANTUM, 0).ctx("Q quantum")?,
            quantum
        );
        dev.info().ctx("INFO as nobody")?;
        dev.cache_info(0).ctx("CACHE_INFO")?;
        dev.page_stats().ctx("PAGE_STATS as nobody")?;
        dev.stack().ctx("STACK")?;
        dev.ioctl_raw(uapi::LDD_IOC_FREE_NULL, 0).ctx("FREE_NULL")?;
        dev.list().ctx("LIST")?;
        dev.percpu_info().ctx("PERCPU_INFO as nobody")?;
        dev.race_read().ctx("PERCPU_RACE_READ as nobody")?;
        dev.race_reset().ctx("PERCPU_RACE_RESET as nobody")?;
        ensure_eq!(dev.free_all().ctx("FREE_ALL")?, 0);
        ensure_eq!(dev.free(0x10001), Err(Errno::EINVAL), "FREE of nothing");
    }
    // Nothing changed.
    ensure_eq!(dev.quantum().ctx("G quantum")?, quantum, "quantum kept");
    ensure_eq!(dev.qset().ctx("G qset")?, qset, "qset kept");
    ensure_eq!(dev.info().ctx("INFO")?.backend, uapi::backend::KMALLOC);
    let after = dev.page_stats().ctx("PAGE_STATS")?;
    ensure_eq!(after.fail_all, 0, "fault injection not armed");
    ensure_eq!(after.fail_next, stats.fail_next);
    Ok(Outcome::Pass)
}

fn one(
    dev: &Device,
    backend: u32,
    flags: u64,
    size: u64,
    order: u32,
) -> Result<uapi::AllocReply, Errno> {
    dev.alloc_one(backend, flags, size, order, context::PROCESS)
}

/// The lab for nobody: ordinary GFP_KERNEL allocations work, the emergency
/// reserves and BIG do not, and no physical address is shown.
fn lab_for_nobody() -> TestResult {
    if let Some(skip) = needs_root() {
        return Ok(skip);
    }
    let dev = super::scull::fresh(uapi::backend::KMALLOC)?;
    let root = dev
        .alloc(uapi::AllocRequest {
            backend: lb::ALLOC_PAGES,
            gfp: gfp::KERNEL,
            count: 1,
            flags: alloc_flags::FREE_NOW,
            ..Default::default()
        })
        .ctx("alloc_pages as root")?;
    ensure!(
        root.first().is_some_and(|r| r.phys_lo != 0),
        "root sees the physical address"
    );
    let _nobody = AsNobody::enter()?;
    let r = dev
        .alloc(uapi::AllocRequest {
            backend: lb::ALLOC_PAGES,
            gfp: gfp::KERNEL,
            count: 1,
            flags: alloc_flags::FREE_NOW,
            ..Default::default()
        })
        .ctx("alloc_pages FREE_NOW as nobody")?;
    let r = r.first().ok_or("no reply")?;
    ensure_eq!((r.phys_lo, r.phys_hi), (0, 0), "physical range hidden");
    ensure_eq!(r.contiguous, 0, "physical layout hidden");
    ensure_eq!(r.actual, 4096);
    let k = one(&dev, lb::KMALLOC, gfp::KERNEL, 100, 0).ctx("kmalloc as nobody")?;
    ensure_eq!(k.actual, 128, "kmalloc(100) is a kmalloc-128 object");
    ensure_eq!(
        one(&dev, lb::OUR_MEMPOOL, gfp::KERNEL, 1000, 0).map(drop),
        Err(Errno::EPERM),
        "a mempool's reserve as nobody"
    );
    ensure_eq!(
        one(&dev, lb::KERNEL_MEMPOOL, gfp::KERNEL, 1000, 0).map(drop),
        Err(Errno::EPERM),
        "the kernel mempool's reserve as nobody"
    );
    let nowait = one(&dev, lb::OUR_CACHE, gfp::NOWAIT, 96, 0).ctx("GFP_NOWAIT our cache")?;
    ensure_eq!(nowait.actual, 96);
    for (what, flags) in [
        ("GFP_ATOMIC (__GFP_HIGH)", gfp::ATOMIC),
        ("__GFP_MEMALLOC", gfp::KERNEL | gfp::MEMALLOC),
        ("__GFP_NOFAIL", gfp::KERNEL | gfp::NOFAIL),
        ("__GFP_DMA", gfp::KERNEL | gfp::DMA),
        ("__GFP_MOVABLE", gfp::KERNEL | gfp::MOVABLE),
    ] {
        ensure_eq!(
            one(&dev, lb::KMALLOC, flags, 64, 0).map(drop),
            Err(Errno::EPERM),
            "{what} as nobody"
        );
    }
    let big = dev.alloc(uapi::AllocRequest {
        backend: lb::VMALLOC,
        gfp: gfp::KERNEL,
        size: 8 << 20,
        count: 1,
        flags: alloc_flags::BIG | alloc_flags::FREE_NOW,
        ..Default::default()
    });
    ensure_eq!(big.map(drop), Err(Errno::EPERM), "BIG as nobody");
    // The memory-pressure options (issue 16): a failure report in the
    // kernel log, scoped NOIO/NOFS.
    for (opt, what) in [
        (alloc_flags::WARN, "WARN"),
        (alloc_flags::SCOPE_NOIO, "SCOPE_NOIO"),
        (alloc_flags::SCOPE_NOFS, "SCOPE_NOFS"),
    ] {
        let r = dev.alloc(uapi::AllocRequest {
            backend: lb::KMALLOC,
            gfp: gfp::KERNEL,
            size: 64,
            count: 1,
            flags: opt | alloc_flags::FREE_NOW,
            ..Default::default()
        });
        ensure_eq!(r.map(drop), Err(Errno::EPERM), "{what} as nobody");
    }
    ensure_eq!(dev.free_all().ctx("FREE_ALL")?, 2);
    Ok(Outcome::Pass)
}

/// All unprivileged callers together hold at most `lab_user_kib` (8 MiB by
/// default): the third 4 MiB vmalloc of nobody is refused, even from
/// another file, while root's still works.
fn user_budget() -> TestResult {
    if let Some(skip) = needs_root() {
        return Ok(skip);
    }
    let a = super::scull::fresh(uapi::backend::KMALLOC)?;
    let b = Device::open_index(0).ctx("second open")?;
    let four = |dev: &Device| {
        dev.alloc(uapi::AllocRequest {
            backend: lb::VMALLOC,
            gfp: gfp::KERNEL,
            size: 4 << 20,
            count: 1,
            ..Default::default()
        })
    };
    {
        let _nobody = AsNobody::enter()?;
        four(&a).ctx("first 4 MiB")?;
        four(&b).ctx("second 4 MiB, other file")?;
        ensure_eq!(
            four(&a).map(drop),
            Err(Errno::EPERM),
            "third 4 MiB as nobody"
        );
        ensure_eq!(
            four(&b).map(drop),
            Err(Errno::EPERM),
            "third 4 MiB, other file"
        );
    }
    four(&a).ctx("root beyond the unprivileged budget")?;
    ensure_eq!(a.free_all().ctx("FREE_ALL a")?, 2);
    ensure_eq!(b.free_all().ctx("FREE_ALL b")?, 1);
    // Given back: nobody may allocate again.
    let _nobody = AsNobody::enter()?;
    four(&a).ctx("4 MiB after the frees")?;
    ensure_eq!(a.free_all().ctx("FREE_ALL")?, 1);
    Ok(Outcome::Pass)
}

/// Nobody cannot fill the registries: holding one object in each of many
/// new cache sizes stops (ENOSPC) while half the slots are still free, so a
/// root user (and the module's own scullc) still gets a new cache.
fn registry_share() -> TestResult {
    if let Some(skip) = needs_root() {
        return Ok(skip);
    }
    let dev = super::scull::fresh(uapi::backend::KMALLOC)?;
    let mut held = 0;
    {
        let _nobody = AsNobody::enter()?;
        for i in 0..40u64 {
            match one(&dev, lb::OUR_CACHE, gfp::KERNEL, 512 + 8 * i, 0) {
                Ok(_) => held += 1,
                Err(Errno::ENOSPC) => break,
                Err(e) => return Err(format!("size {}: {e}", 512 + 8 * i)),
            }
        }
    }
    ensure!(held <= 16, "nobody held {held} caches");
    ensure!(held >= 1, "nobody could not make a single cache");
    let root = one(&dev, lb::OUR_CACHE, gfp::KERNEL, 904, 0).ctx("root after nobody")?;
    ensure_eq!(root.actual, 904);
    ensure_eq!(dev.free_all().ctx("FREE_ALL")?, held + 1);
    Ok(Outcome::Pass)
}

fn sh(cmd: &str) -> Result<String, String> {
    let out = Command::new("sh").arg("-c").arg(cmd).output().ctx(cmd)?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Err(format!("{cmd}: {text}"));
    }
    Ok(text)
}

/// `ldd_alloc_load group=` gives the group the nodes (0660): nobody in that
/// group opens them and does I/O, and the root-only commands still answer
/// EPERM. Reloads the module, and loads it back as it was.
fn group_access() -> TestResult {
    if let Some(skip) = needs_root() {
        return Ok(skip);
    }
    if std::env::var_os("LDD_ALLOC_KO").is_none() {
        return Ok(Outcome::Skip(
            "no module file to reload ($LDD_ALLOC_KO)".into(),
        ));
    }
    sh(&format!(
        "ldd_alloc_unload && ldd_alloc_load group={NOBODY}"
    ))?;
    let result = (|| -> TestResult {
        let meta = std::fs::metadata(node(0)).ctx("stat")?;
        ensure_eq!(
            meta.permissions().mode() & 0o777,
            0o660,
            "node mode with a group"
        );
        ensure_eq!(meta.gid(), NOBODY, "node group");
        let _nobody = AsNobody::enter()?;
        let dev = Device::open_with(node(0), libc::O_RDWR | libc::O_TRUNC).ctx("open as nobody")?;
        use std::os::unix::fs::FileExt;
        dev.file()
            .write_at(b"scull for the group", 0)
            .ctx("write")?;
        let mut back = [0u8; 19];
        dev.file().read_exact_at(&mut back, 0).ctx("read")?;
        ensure_eq!(&back, b"scull for the group");
        ensure_eq!(dev.ioctl_raw(uapi::LDD_IOC_SHRINK, 0), Err(Errno::EPERM));
        ensure_eq!(
            dev.ioctl_raw(uapi::SCULL_IOCTQUANTUM, 100),
            Err(Errno::EPERM)
        );
        Ok(Outcome::Pass)
    })();
    sh("ldd_alloc_unload && ldd_alloc_load")?;
    result
}

pub fn tests() -> Vec<Test> {
    vec![
        Test::new("privilege/node_root_only", node_root_only),
        Test::new("privilege/table_for_nobody", table_for_nobody),
        Test::new("privilege/lab_for_nobody", lab_for_nobody),
        Test::new("privilege/user_budget", user_budget),
        Test::new("privilege/registry_share", registry_share),
        Test::new("privilege/group_access", group_access),
    ]
}
