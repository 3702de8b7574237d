// SPDX-License-Identifier: GPL-2.0

//! Our mempools in the kernel (LDD3 chapter 8, "mempools").

use core::ptr::NonNull;
use kernel::{prelude::*, sync::Arc};

/// One of our mempools.
pub(crate) struct OurPool {}

impl OurPool {
    /// `mempool_alloc()`.
    pub(crate) fn alloc(&self, _may_sleep: bool) -> Result<NonNull<u8>> {
        Err(ENODEV)
    }

    /// `mempool_free()`.
    pub(crate) fn free(&self, _ptr: NonNull<u8>) -> core::result::Result<(), ()> {
        Err(())
    }
}

/// The pool of `size`-byte elements.
pub(crate) fn get(_size: usize) -> Result<Arc<OurPool>> {
    Err(ENODEV)
}
