// SPDX-License-Identifier: GPL-2.0

//! The one user-copy layer: every byte the module takes from or gives to
//! user memory goes through here (LDD3 chapter 6, "Using the ioctl
//! Argument"; chapter 3, "read and write").
//!
//! The dispatch in [`crate::ldd_alloc_dev`] wraps each ioctl's argument once,
//! as an [`IoctlArg`]: the plain number for `_IO` commands, or the user
//! memory of `_IOC_SIZE(cmd)` bytes it points at (as
//! `samples/rust/rust_misc_device.rs` builds one `UserSlice` from the
//! command's size). A handler reads its request and writes its reply through
//! it and never builds a user pointer itself; the only other user memory is
//! an array whose address a request carries ([`write_array`]).
//!
//! `UserSlice` does the checking the C code does by hand: `access_ok()` on
//! the range, `copy_{from,to}_user()` with EFAULT on a fault.

use kernel::{
    prelude::*,
    transmute::{
        AsBytes,
        FromBytes, //
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    }, //
};

use crate::uapi;

/// Marks ABI structs as plain bytes, so `UserSlice` can copy them.
macro_rules! abi_plain_bytes {
    ($($t:ty),* $(,)?) => {$(
        // SAFETY: `#[repr(C)]`, integer fields only and no padding (the size
        // asserts in `uapi` pin the layout): every byte is initialised and
        // every byte pattern is a valid value.
        unsafe impl AsBytes for $t {}
        // SAFETY: As above.
        unsafe impl FromBytes for $t {}
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
    uapi::KernelPoolInfo,
    uapi::PoolResize,
    uapi::BenchRun,
    uapi::ShrinkerInfo,
    uapi::PercpuCopy,
    uapi::PercpuInfo,
    uapi::PercpuRace,
    uapi::RaceCounts,
);

/// The argument of one ioctl.
#[derive(Clone, Copy)]
pub(crate) struct IoctlArg {
    value: usize,
    size: usize,
}

impl IoctlArg {
    /// The argument `arg` of command `cmd`.
    pub(crate) fn new(cmd: u32, arg: usize) -> Self {
        Self {
            value: arg,
            size: uapi::ioc_size(cmd),
        }
    }

    /// The argument as a `u32` value (`_IO` commands pass values, not
    /// pointers); EINVAL if it does not fit.
    pub(crate) fn value_u32(self) -> Result<u32> {
        u32::try_from(self.value).map_err(|_| EINVAL)
    }

    /// The argument as a signed value, as LDD3's `scull_ioctl` casts it.
    pub(crate) fn value_i64(self) -> i64 {
        self.value as i64
    }

    /// The user memory the argument points at, checked against the size the
    /// command encodes: a handler that asks for another type is a bug in the
    /// module, refused with EINVAL rather than copying the wrong length.
    fn slice<T>(self) -> Result<UserSlice> {
        if core::mem::size_of::<T>() != self.size {
            return Err(EINVAL);
        }
        Ok(UserSlice::new(UserPtr::from_addr(self.value), self.size))
    }

    /// Copies the command's request in (`copy_from_user()`).
    pub(crate) fn read<T: FromBytes>(self) -> Result<T> {
        self.slice::<T>()?.reader().read::<T>()
    }

    /// Copies the command's reply out (`copy_to_user()`).
    pub(crate) fn write<T: AsBytes>(self, value: &T) -> Result {
        self.slice::<T>()?.writer().write(value)
    }
}

/// Copies `items` to the user array at `addr` (an address a request
/// carried as a `u64`). EFAULT if any of it is not writable user memory.
pub(crate) fn write_array<T: AsBytes>(addr: u64, items: &[T]) -> Result {
    let addr = usize::try_from(addr).map_err(|_| EFAULT)?;
    let len = core::mem::size_of_val(items);
    let mut w = UserSlice::new(UserPtr::from_addr(addr), len).writer();
    for item in items {
        w.write(item)?;
    }
    Ok(())
}
