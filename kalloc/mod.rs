// SPDX-License-Identifier: GPL-2.0

//! The kernel side of our allocator: the [`crate::allocator`] core given
//! the kernel's page allocator, locks and per-CPU slots, plus the kernel's
//! own caches that ours are compared with.
pub(crate) mod caches;
pub(crate) mod gfp;
pub(crate) mod kernel_caches;
pub(crate) mod pages;
pub(crate) mod pools;
