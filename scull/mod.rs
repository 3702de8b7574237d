// SPDX-License-Identifier: GPL-2.0

//! scull, LDD3's "Simple Character Utility for Loading Localities"
//! (chapters 3, 6 and 8), on the allocators of this module; `mmap` of
//! scullp and scullv (chapter 15).

pub(crate) mod backend;
pub(crate) mod chrdev;
pub(crate) mod ioctl;
pub(crate) mod mmap;
pub(crate) mod store;
