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
//!
//! The files are `seq_file`s with file operations of our own rather than
//! `kernel::debugfs`'s: in 7.3 those have no `.owner`, so an open file does
//! not pin the module; `rmmod` then succeeds, and the `close()` that follows
//! runs through debugfs's proxy into code that is gone (an Oops the VM suite
//! found). With `owner` set, debugfs takes a module reference for every open
//! file, and `rmmod` is refused (EBUSY, like an open device node) until the
//! last one is closed.

use core::fmt;
use kernel::{
    bindings,
    ffi::{
        c_char,
        c_int,
        c_void, //
    },
    prelude::*,
    seq_file::SeqFile,
    seq_print,
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

use crate::kalloc::pages::PAGES;

/// What a file shows.
type Show = fn(&mut fmt::Formatter<'_>) -> fmt::Result;

/// A [`Show`] as something `seq_print!` can print.
struct Shown(Show);

impl kernel::fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (self.0)(f)
    }
}

fn write_slabinfo(f: &mut fmt::Formatter<'_>) -> fmt::Result {
    crate::kalloc::caches::write_slabinfo(f)
}

fn write_pools(f: &mut fmt::Formatter<'_>) -> fmt::Result {
    crate::kalloc::pools::write_pools(f)
}

fn write_pages(f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

fn read_fault(f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let (next, all, owner, injected) = PAGES.faults.state();
    writeln!(
        f,
        "next {next} all {} owner {owner} injected {injected}",
        u32::from(all)
    )
}

/// Parses `next N`, `all`, `off`, optionally followed by `owner K`.
fn parse_fault(text: &str) -> Result<(i64, bool, u32)> {
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
    Ok((next, all, owner))
}

static SLABINFO: Show = write_slabinfo;
static PAGES_FILE: Show = write_pages;
static POOLS: Show = write_pools;
static FAULT: Show = read_fault;

/// The `seq_file` show callback: prints the file's [`Show`].
///
/// # Safety
///
/// `m` is the `seq_file` of a file opened by [`open`], whose `private` is
/// the `&'static Show` the file was created with.
unsafe extern "C" fn show(m: *mut bindings::seq_file, _v: *mut c_void) -> c_int {
    // SAFETY: `private` is one of the `Show` statics above (`open`'s contract).
    let what = unsafe { *(*m).private.cast::<Show>() };
    // SAFETY: `m` is valid for the call and only this thread uses it: the
    // seq_file core calls show with the file's lock held.
    let file = unsafe { SeqFile::from_raw(m) };
    seq_print!(file, "{}", Shown(what));
    0
}

/// `open` of every file: a single-record `seq_file` over the file's `Show`.
///
/// # Safety
///
/// Called by the VFS on a file created by [`Debugfs::new`], whose inode's
/// `i_private` is one of the `Show` statics.
unsafe extern "C" fn open(inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
    // SAFETY: `inode` and `file` are valid during open; `single_open` stores
    // `i_private` (a `'static` `Show`) as the seq_file's `private`.
    unsafe { bindings::single_open(file, Some(show), (*inode).i_private) }
}

/// `write` of the `fault` file.
///
/// # Safety
///
/// Called by the VFS with `buf` a user pointer of `count` bytes.
unsafe extern "C" fn write_fault(
    _file: *mut bindings::file,
    buf: *const c_char,
    count: usize,
    _pos: *mut bindings::loff_t,
) -> isize {
    let mut text = [0u8; 64];
    let len = count.min(text.len());
    let mut input = UserSlice::new(UserPtr::from_ptr(buf.cast_mut().cast()), len).reader();
    let parsed = input
        .read_slice(&mut text[..len])
        .and_then(|()| core::str::from_utf8(&text[..len]).map_err(|_| EINVAL))
        .and_then(parse_fault);
    match parsed {
        Ok((next, all, owner)) => {
            PAGES.faults.set(next, all, owner);
            count as isize
        }
        Err(e) => e.to_errno() as isize,
    }
}

/// The file operations: a `seq_file` read side, the module as owner.
const fn fops(writable: bool) -> bindings::file_operations {
    bindings::file_operations {
        owner: kernel::module::this_module::<crate::LddAlloc>().as_ptr(),
        open: Some(open),
        read: Some(bindings::seq_read),
        llseek: Some(bindings::seq_lseek),
        release: Some(bindings::single_release),
        write: if writable { Some(write_fault) } else { None },
        // SAFETY: All-zeroes is a valid `file_operations` (every hook absent).
        ..unsafe { core::mem::zeroed() }
    }
}

/// File operations in a static: debugfs keeps a pointer to them.
#[repr(transparent)]
struct Fops(bindings::file_operations);

// SAFETY: Never written after being built; it holds only pointers to this
// module's functions, to the seq_file helpers and to `THIS_MODULE`.
unsafe impl Sync for Fops {}

static READ_ONLY: Fops = Fops(fops(false));
static READ_WRITE: Fops = Fops(fops(true));

/// The debugfs directory and its files; removed when dropped.
///
/// # Invariants
///
/// `dir` is the directory `debugfs_create_dir()` returned (possibly an
/// error pointer, which `debugfs_remove()` accepts), removed once in `Drop`.
pub(crate) struct Debugfs {
    dir: *mut bindings::dentry,
}

// SAFETY: `debugfs_remove()` may be called from any thread.
unsafe impl Send for Debugfs {}
// SAFETY: `Debugfs` has no methods that use `dir` but `Drop`.
unsafe impl Sync for Debugfs {}

impl Debugfs {
    /// Creates the directory and files. debugfs is optional: a failure here
    /// only means no files (debugfs functions accept an error dentry).
    pub(crate) fn new() -> Self {
        // SAFETY: A NUL-terminated name; NULL parent is debugfs's root.
        let dir = unsafe {
            bindings::debugfs_create_dir(c"ldd_alloc".as_char_ptr(), core::ptr::null_mut())
        };
        for (name, mode, what, fops) in [
            (c"slabinfo", 0o400, &SLABINFO, &READ_ONLY),
            (c"pages", 0o400, &PAGES_FILE, &READ_ONLY),
            (c"pools", 0o400, &POOLS, &READ_ONLY),
            (c"fault", 0o600, &FAULT, &READ_WRITE),
        ] {
            // SAFETY: `name` is NUL-terminated; `what` and `fops` are
            // statics that outlive the file (removed with `dir` in `Drop`,
            // and the module cannot go while a file is open: `fops.owner`).
            unsafe {
                bindings::debugfs_create_file_full(
                    name.as_char_ptr(),
                    mode,
                    dir,
                    core::ptr::from_ref::<Show>(what).cast_mut().cast(),
                    core::ptr::null(),
                    &fops.0,
                )
            };
        }
        // INVARIANT: `dir` came from `debugfs_create_dir()`.
        Self { dir }
    }
}

impl Drop for Debugfs {
    fn drop(&mut self) {
        // SAFETY: Created in `new` and removed once, here, with its files.
        unsafe { bindings::debugfs_remove(self.dir) };
    }
}
