// SPDX-License-Identifier: GPL-2.0

//! ldd_alloc: a companion to chapter 8 of *Linux Device Drivers*, 3rd ed.,
//! "Allocating Memory".
//!
//! The scull char device runs on lookaside caches and mempools of our own,
//! written in Rust over the kernel's page allocator, and a set of ioctls
//! allocates memory by GFP flag, zone, backend and context and reports what
//! the kernel did. Try it:
//!
//! ```text
//! # insmod ldd_alloc.ko nr_devs=4 quantum=4000 qset=1000
//! # echo hello > /dev/ldd_alloc1     # scullc: quanta from our own cache
//! # cat /dev/ldd_alloc1
//! hello
//! ```
//!
//! Unload order (the reverse of init): device nodes go first, so no file can
//! reach a store; the stores free their quanta; then the caches and pools are
//! destroyed and the page source checks that every page came back.

use kernel::prelude::*;

pub mod allocator;
mod debugfs;
mod kalloc;
mod kbench;
mod kunit_core;
mod lab;
mod ldd_alloc_dev;
mod scull;
pub mod uapi;

use ldd_alloc_dev::{ScullDev, GEOMETRY};
use scull::chrdev::Registration;

module! {
    type: LddAlloc,
    name: "ldd_alloc",
    authors: ["ldd_alloc developers"],
    description: "LDD3 chapter 8 companion: scull on our own caches and mempools",
    license: "GPL",
    params: {
        nr_devs: u32 {
            default: 4,
            description: "Number of scull devices, 1..=16 (LDD3 scull_nr_devs)",
        },
        quantum: u32 {
            default: 4000,
            description: "Bytes per quantum (LDD3 scull_quantum)",
        },
        qset: u32 {
            default: 1000,
            description: "Quanta per quantum set (LDD3 scull_qset)",
        },
        order: u32 {
            default: 0,
            description: "Page order of a quantum on the pages backend (LDD3 scullp_order)",
        },
        max_mib: u32 {
            default: 256,
            description: "Largest size of one device in MiB: writes past it get ENOSPC",
        },
        cache_debug: u32 {
            default: 0,
            description: "slub_debug for our caches: 1 poison (P), 2 red zones (Z), 3 both",
        },
        pool_min_nr: u32 {
            default: 16,
            description: "Elements each of our mempools keeps in reserve (min_nr)",
        },
        lab_max_handles: u32 {
            default: 4096,
            description: "Live lab allocations per open file (ENOSPC beyond)",
        },
        lab_max_mib: u32 {
            default: 256,
            description: "Lab memory held per open file in MiB, and the largest BIG allocation (E2BIG beyond)",
        },
    },
}

/// `major << 16 | minor << 8 | patch` of this module.
pub const MODULE_VERSION: u32 = 0x00_01_00;

/// Most devices the module registers.
const MAX_DEVS: u32 = 16;

/// Device node names; misc keeps a pointer to the name, so they are static.
const NAMES: [&CStr; MAX_DEVS as usize] = [
    c"ldd_alloc0",
    c"ldd_alloc1",
    c"ldd_alloc2",
    c"ldd_alloc3",
    c"ldd_alloc4",
    c"ldd_alloc5",
    c"ldd_alloc6",
    c"ldd_alloc7",
    c"ldd_alloc8",
    c"ldd_alloc9",
    c"ldd_alloc10",
    c"ldd_alloc11",
    c"ldd_alloc12",
    c"ldd_alloc13",
    c"ldd_alloc14",
    c"ldd_alloc15",
];

struct LddAlloc {
    devices: KVec<Pin<KBox<Registration<ScullDev>>>>,
    _debugfs: Pin<KBox<debugfs::Debugfs>>,
}

/// Checks one parameter, logging what is wrong with it.
fn param_in(name: &str, value: u32, min: u32, max: u32) -> Result<u32> {
    if value < min || value > max {
        pr_err!("{name}={value} is out of range {min}..={max}\n");
        return Err(EINVAL);
    }
    Ok(value)
}

impl kernel::Module for LddAlloc {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let nr_devs = param_in("nr_devs", module_parameters::nr_devs.value(), 1, MAX_DEVS)?;
        let quantum = param_in(
            "quantum",
            module_parameters::quantum.value(),
            1,
            uapi::QUANTUM_MAX,
        )?;
        let qset = param_in("qset", module_parameters::qset.value(), 1, uapi::QSET_MAX)?;
        let order = param_in(
            "order",
            module_parameters::order.value(),
            0,
            kalloc::pages::STORE_MAX_ORDER,
        )?;
        let max_mib = param_in("max_mib", module_parameters::max_mib.value(), 1, 4096)?;

        let lab_handles = param_in(
            "lab_max_handles",
            module_parameters::lab_max_handles.value(),
            1,
            1 << 16,
        )?;
        let lab_mib = param_in(
            "lab_max_mib",
            module_parameters::lab_max_mib.value(),
            1,
            4096,
        )?;
        GEOMETRY.init(quantum, qset, order, max_mib, (lab_handles, lab_mib));
        let pool_min_nr = param_in(
            "pool_min_nr",
            module_parameters::pool_min_nr.value(),
            1,
            uapi::POOL_MAX_MIN_NR,
        )?;
        kalloc::pools::init(pool_min_nr as usize);
        kalloc::kernel_caches::init();
        lab::context::init();

        let cache_debug = param_in("cache_debug", module_parameters::cache_debug.value(), 0, 3)?;
        kalloc::caches::init(cache_debug)?;
        let debugfs = KBox::pin_init(debugfs::Debugfs::new(), GFP_KERNEL)?;

        let mut devices = KVec::with_capacity(nr_devs as usize, GFP_KERNEL)?;
        for (i, name) in NAMES.iter().take(nr_devs as usize).enumerate() {
            let dev = ScullDev::new(i as u32)?;
            devices.push(
                KBox::try_pin_init(Registration::register(name, dev), GFP_KERNEL)?,
                GFP_KERNEL,
            )?;
        }
        pr_info!("loaded: {nr_devs} devices, quantum {quantum}, qset {qset}, order {order}\n");
        Ok(Self {
            devices,
            _debugfs: debugfs,
        })
    }
}

impl Drop for LddAlloc {
    fn drop(&mut self) {
        // Nodes first: once deregistered, and with no file open (the module
        // refcount guarantees it), nothing reaches a store any more.
        self.devices.clear();
        kalloc::kernel_caches::exit();
        kalloc::pools::exit();
        kalloc::caches::exit();
        pr_info!("unloaded\n");
    }
}
