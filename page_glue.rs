// SPDX-License-Identifier: GPL-2.0

//! Our page source: the host kernel's page allocator, counted per zone.

/// Bytes per page on x86-64.
pub(crate) const PAGE_SIZE: usize = 4096;

/// Largest page order the scullp store accepts for one quantum (8 pages).
pub(crate) const STORE_MAX_ORDER: u32 = 3;
