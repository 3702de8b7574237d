// SPDX-License-Identifier: GPL-2.0

//! `/sys/kernel/debug/ldd_alloc/`: what our allocators are doing.
//!
//! - `slabinfo`: our caches in `/proc/slabinfo`'s format.
//! - `pages`: our page source, per zone, and the fault injector.
//! - `pools`: our mempools: reserve, waits, wake-ups, failures.
//! - `fault`: the fault injector, readable and writable: `next N` fails
//!   the next N page allocations, `all` fails every one, `off` stops;
//!   `owner K` limits it to our cache number K (the `LDD_IOC_FAULT` ioctl
//!   does the same from a program).

use kernel::{
    debugfs::Dir,
    prelude::*, //
};

use crate::kalloc::pages::PAGES;

/// The debugfs directory and its files; removed when dropped.
#[pin_data]
pub(crate) struct Debugfs {
    #[pin]
    slabinfo: kernel::debugfs::File<()>,
    #[pin]
    pages: kernel::debugfs::File<()>,
    #[pin]
    pools: kernel::debugfs::File<()>,
    #[pin]
    fault: kernel::debugfs::File<()>,
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
        u32::from(all)
    )
}

fn read_fault(_: &(), f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
    let (next, all, owner, injected) = PAGES.faults.state();
    writeln!(
        f,
        "next {next} all {} owner {owner} injected {injected}",
        u32::from(all)
    )
}

/// Parses `next N`, `all`, `off`, optionally followed by `owner K`.
fn write_fault(_: &(), input: &mut kernel::uaccess::UserSliceReader) -> Result {
    let mut buf = [0u8; 64];
    let len = input.len().min(buf.len());
    input.read_slice(&mut buf[..len])?;
    let text = core::str::from_utf8(&buf[..len]).map_err(|_| EINVAL)?;
    let mut words = text.split_whitespace();
    let (mut next, mut all, mut owner) = (0i64, false, 0u32);
    while let Some(word) = words.next() {
        let mut number = || -> Result<u64> {
            words
                .next()
                .and_then(|w| w.parse::<u64>().ok())
                .ok_or(EINVAL)
        };
        match word {
            "next" => next = i64::try_from(number()?).map_err(|_| EINVAL)?,
            "all" => all = true,
            "off" => (next, all) = (0, false),
            "owner" => owner = u32::try_from(number()?).map_err(|_| EINVAL)?,
            _ => return Err(EINVAL),
        }
    }
    PAGES.faults.set(next, all, owner);
    Ok(())
}

impl Debugfs {
    /// Creates the directory and files.
    pub(crate) fn new() -> impl PinInit<Self> {
        let dir = Dir::new(c"ldd_alloc");
        pin_init!(Self {
            slabinfo <- dir.read_callback_file(c"slabinfo", (), &|(): &(), f| {
                crate::kalloc::caches::write_slabinfo(f)
            }),
            pages <- dir.read_callback_file(c"pages", (), &write_pages),
            pools <- dir.read_callback_file(c"pools", (), &|(): &(), f| crate::kalloc::pools::write_pools(f)),
            fault <- dir.read_write_callback_file(c"fault", (), &read_fault, &write_fault),
            _dir: dir,
        })
    }
}
