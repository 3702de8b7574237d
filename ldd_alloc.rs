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
//! Load and unload order: parameters, the allocator side (registries),
//! debugfs, then the device nodes last, so no file can reach anything not
//! yet set up. [`LddAlloc`]'s fields drop in the reverse order: the nodes
//! first (each waits for its open files), so nothing reaches a store; the
//! stores free their quanta; debugfs goes; then pools and caches are
//! destroyed and the page source checks that every page came back. A load
//! that fails half way unwinds the same way, because each step's value owns
//! its teardown.

use kernel::prelude::*;

pub mod allocator;
mod debugfs;
mod kalloc;
mod kbench;
mod kunit_core;
mod lab;
mod ldd_alloc_dev;
mod params;
mod percpu;
mod ratelimit;
mod scull;
mod uaccess;
pub mod uapi;

use kalloc::Allocators;
use ldd_alloc_dev::ScullDev;
use params::{
    Params,
    GEOMETRY, //
};
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
        lab_total_mib: u32 {
            default: 256,
            description: "Lab memory of all files together in MiB, at most a quarter of RAM (ENOSPC beyond)",
        },
        lab_user_kib: u32 {
            default: 8192,
            description: "Lab memory of all unprivileged callers together in KiB (EPERM beyond)",
        },
    },
}

/// `major << 16 | minor << 8 | patch` of this module.
pub const MODULE_VERSION: u32 = 0x00_01_00;

/// Permission bits of the device nodes: root only. `ldd_alloc_load group=`
/// opens them to a group (0660), as LDD3's `scull_load` does.
const NODE_MODE: u16 = 0o600;

/// Device node names; misc keeps a pointer to the name, so they are static.
const NAMES: [&CStr; params::MAX_DEVS as usize] = [
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
    // Dropped in this order (see the module docs).
    _devices: KVec<Pin<KBox<Registration<ScullDev>>>>,
    _debugfs: debugfs::Debugfs,
    _allocators: Allocators,
}

impl kernel::Module for LddAlloc {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let p = Params::read()?;
        GEOMETRY.init(&p);
        lab::init(&p);
        let allocators = Allocators::new(p.cache_debug, p.pool_min_nr as usize);
        let debugfs = debugfs::Debugfs::new();
        let mut devices = KVec::with_capacity(p.nr_devs as usize, GFP_KERNEL)?;
        for (i, name) in NAMES.iter().take(p.nr_devs as usize).enumerate() {
            let dev = ScullDev::new(i as u32)?;
            devices.push(
                KBox::try_pin_init(Registration::register(name, NODE_MODE, dev), GFP_KERNEL)?,
                GFP_KERNEL,
            )?;
        }
        pr_info!(
            "loaded: {} devices, quantum {}, qset {}, order {}\n",
            p.nr_devs,
            p.quantum,
            p.qset,
            p.order
        );
        Ok(Self {
            _devices: devices,
            _debugfs: debugfs,
            _allocators: allocators,
        })
    }
}

impl Drop for LddAlloc {
    fn drop(&mut self) {
        pr_info!("unloading\n");
    }
}
