// SPDX-License-Identifier: GPL-2.0

//! `/sys/kernel/debug/ldd_alloc/`: what our allocators are doing.
//!
//! - `slabinfo`: our caches in `/proc/slabinfo`'s format.
//! - `pages`: our page source, per zone, and the fault injector.
//! - `pools`: our mempools: reserve, waits, wake-ups, failures.

use kernel::{debugfs::Dir, prelude::*};

use crate::page_glue::PAGES;

/// The debugfs directory and its files; removed when dropped.
#[pin_data]
pub(crate) struct Debugfs {
    #[pin]
    slabinfo: kernel::debugfs::File<()>,
    #[pin]
    pages: kernel::debugfs::File<()>,
    #[pin]
    pools: kernel::debugfs::File<()>,
    _dir: Dir,
}

fn write_pages(_: &(), f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
    let c = PAGES.counts();
    writeln!(f, "zone    pages_out  allocs  frees")?;
    for (i, name) in ["DMA", "DMA32", "Normal"].iter().enumerate() {
        writeln!(
            f,
            "{name:<7} {:>9} {:>7} {:>6}",
            c.pages_out[i], c.allocs[i], c.frees[i]
        )?;
    }
    let (next, all, owner, injected) = PAGES.faults.state();
    writeln!(f, "failures {} injected {injected}", c.failures)?;
    writeln!(
        f,
        "fault: fail_next {next} fail_all {} owner {owner}",
        all as u32
    )
}

impl Debugfs {
    /// Creates the directory and files.
    pub(crate) fn new() -> impl PinInit<Self> {
        let dir = Dir::new(c"ldd_alloc");
        pin_init!(Self {
            slabinfo <- dir.read_callback_file(c"slabinfo", (), &|_: &(), f| {
                crate::caches::write_slabinfo(f)
            }),
            pages <- dir.read_callback_file(c"pages", (), &write_pages),
            pools <- dir.read_callback_file(c"pools", (), &|_: &(), f| crate::pools::write_pools(f)),
            _dir: dir,
        })
    }
}
