// SPDX-License-Identifier: GPL-2.0

//! The ldd_alloc ioctl ABI: the one file both the kernel module and the
//! userspace crate compile, so the two can never disagree.
//!
//! Rules (Documentation/driver-api/ioctl.rst): fixed-size fields only, pointers
//! travel as `u64`, no implicit padding (every struct is a multiple of 8 bytes
//! with explicit `_pad` fields), and the command number encodes direction and
//! size exactly as the C `_IO/_IOR/_IOW/_IOWR` macros do.
//!
//! This file uses `core` only: no `kernel`, no `std`.

#![allow(dead_code)]

use core::mem::size_of;

// ---------------------------------------------------------------------------
// Command numbers, built the way include/uapi/asm-generic/ioctl.h builds them.
// ---------------------------------------------------------------------------

/// Bits of the command number field.
pub const IOC_NRBITS: u32 = 8;
/// Bits of the type ("magic") field.
pub const IOC_TYPEBITS: u32 = 8;
/// Bits of the argument size field.
pub const IOC_SIZEBITS: u32 = 14;
/// Shift of the number field.
pub const IOC_NRSHIFT: u32 = 0;
/// Shift of the type field.
pub const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
/// Shift of the size field.
pub const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
/// Shift of the direction field.
pub const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;
/// No data travels.
pub const IOC_NONE: u32 = 0;
/// Userspace writes, the driver reads.
pub const IOC_WRITE: u32 = 1;
/// The driver writes, userspace reads.
pub const IOC_READ: u32 = 2;

/// `_IOC(dir, type, nr, size)`.
pub const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    (dir << IOC_DIRSHIFT)
        | ((ty as u32) << IOC_TYPESHIFT)
        | ((nr as u32) << IOC_NRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
}
/// `_IO(type, nr)`.
pub const fn io(ty: u8, nr: u8) -> u32 {
    ioc(IOC_NONE, ty, nr, 0)
}
/// `_IOR(type, nr, T)`.
pub const fn ior<T>(ty: u8, nr: u8) -> u32 {
    ioc(IOC_READ, ty, nr, size_of::<T>())
}
/// `_IOW(type, nr, T)`.
pub const fn iow<T>(ty: u8, nr: u8) -> u32 {
    ioc(IOC_WRITE, ty, nr, size_of::<T>())
}
/// `_IOWR(type, nr, T)`.
pub const fn iowr<T>(ty: u8, nr: u8) -> u32 {
    ioc(IOC_READ | IOC_WRITE, ty, nr, size_of::<T>())
}
/// `_IOC_TYPE(cmd)`.
pub const fn ioc_type(cmd: u32) -> u8 {
    (cmd >> IOC_TYPESHIFT) as u8
}
/// `_IOC_NR(cmd)`.
pub const fn ioc_nr(cmd: u32) -> u8 {
    (cmd >> IOC_NRSHIFT) as u8
}
/// `_IOC_SIZE(cmd)`.
pub const fn ioc_size(cmd: u32) -> usize {
    ((cmd >> IOC_SIZESHIFT) & ((1 << IOC_SIZEBITS) - 1)) as usize
}

// ---------------------------------------------------------------------------
// The scull ioctls of LDD3 chapter 6 (scull.h), same magic and numbering.
// "S" sets through a pointer, "T" tells through the argument value, "G" gets
// through a pointer, "Q" queries through the return value, "X" exchanges
// through a pointer, "H" shifts (tell + query).
// ---------------------------------------------------------------------------

/// The scull magic number, also used by every ldd_alloc command.
pub const MAGIC: u8 = b'k';

/// Empty the device and restore the default quantum and qset.
pub const SCULL_IOCRESET: u32 = io(MAGIC, 0);
/// Set the quantum from `*(int *)arg`.
pub const SCULL_IOCSQUANTUM: u32 = iow::<i32>(MAGIC, 1);
/// Set the qset from `*(int *)arg`.
pub const SCULL_IOCSQSET: u32 = iow::<i32>(MAGIC, 2);
/// Set the quantum to the value of `arg`.
pub const SCULL_IOCTQUANTUM: u32 = io(MAGIC, 3);
/// Set the qset to the value of `arg`.
pub const SCULL_IOCTQSET: u32 = io(MAGIC, 4);
/// Write the quantum to `*(int *)arg`.
pub const SCULL_IOCGQUANTUM: u32 = ior::<i32>(MAGIC, 5);
/// Write the qset to `*(int *)arg`.
pub const SCULL_IOCGQSET: u32 = ior::<i32>(MAGIC, 6);
/// Return the quantum.
pub const SCULL_IOCQQUANTUM: u32 = io(MAGIC, 7);
/// Return the qset.
pub const SCULL_IOCQQSET: u32 = io(MAGIC, 8);
/// Set the quantum from `*(int *)arg`, write the old one back there.
pub const SCULL_IOCXQUANTUM: u32 = iowr::<i32>(MAGIC, 9);
/// Set the qset from `*(int *)arg`, write the old one back there.
pub const SCULL_IOCXQSET: u32 = iowr::<i32>(MAGIC, 10);
/// Set the quantum to `arg`, return the old one.
pub const SCULL_IOCHQUANTUM: u32 = io(MAGIC, 11);
/// Set the qset to `arg`, return the old one.
pub const SCULL_IOCHQSET: u32 = io(MAGIC, 12);
/// The highest scull command number (13 and 14 are scullpipe's, not ours).
pub const SCULL_IOC_MAXNR: u8 = 12;

/// Largest quantum the module accepts (a quantum is one allocation).
pub const QUANTUM_MAX: u32 = 1 << 22;
/// Largest qset the module accepts (a qset is an array of quantum pointers).
pub const QSET_MAX: u32 = 1 << 16;

// ---------------------------------------------------------------------------
// ldd_alloc's own commands: same magic, numbers from 32 up.
// ---------------------------------------------------------------------------

/// Version of this ABI, reported by [`LDD_IOC_INFO`].
pub const ABI_VERSION: u32 = 1;

/// Which allocator backs a device's quanta (scull, scullc, scullp, scullv).
pub mod backend {
    /// The kernel's kmalloc (LDD3 chapter 3 scull).
    pub const KMALLOC: u32 = 0;
    /// Our own lookaside cache (scullc).
    pub const CACHE: u32 = 1;
    /// Whole pages of a chosen order (scullp).
    pub const PAGES: u32 = 2;
    /// vmalloc (scullv).
    pub const VMALLOC: u32 = 3;
    /// Our own mempool over our cache.
    pub const MEMPOOL: u32 = 4;
    /// Number of store backends.
    pub const COUNT: u32 = 5;
}

/// Answer of [`LDD_IOC_INFO`]: what the module and this device are.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    /// [`ABI_VERSION`].
    pub abi_version: u32,
    /// Module version, `major << 16 | minor << 8 | patch`.
    pub module_version: u32,
    /// This device's minor index (0 for /dev/ldd_alloc0).
    pub index: u32,
    /// The store backend ([`backend`]).
    pub backend: u32,
    /// Bytes per quantum in use by this device.
    pub quantum: u32,
    /// Quanta per quantum set in use by this device.
    pub qset: u32,
    /// Page order of each quantum with the pages backend.
    pub order: u32,
    /// Number of quantum sets held.
    pub qsets: u32,
    /// Device size: the highest byte written + 1.
    pub size: u64,
    /// Bytes of memory held for data (quanta, not bookkeeping).
    pub bytes_held: u64,
    /// Number of quanta allocated.
    pub quanta: u64,
}

/// Read the [`DeviceInfo`] of this device.
pub const LDD_IOC_INFO: u32 = ior::<DeviceInfo>(MAGIC, 32);
/// Choose the backend of this device: `arg` is a [`backend`] value. The
/// device must be empty (EBUSY otherwise): data never moves between backends.
pub const LDD_IOC_SET_BACKEND: u32 = io(MAGIC, 33);

// Compile-time checks: the layout is the ABI.
const _: () = assert!(size_of::<DeviceInfo>() == 56);
const _: () = assert!(SCULL_IOCGQUANTUM == 0x8004_6b05);
const _: () = assert!(SCULL_IOCXQSET == 0xc004_6b0a);
