// SPDX-License-Identifier: GPL-2.0

//! A misc character device with the whole set of scull file operations.
//!
//! `kernel::miscdevice` (7.3) offers open, release, read_iter, write_iter and
//! ioctl but no `llseek`, so `lseek(2)` on such a device fails with ESPIPE and
//! scull's semantics (LDD3 chapter 3, "scull_llseek") cannot be had. This file
//! is the small unsafe boundary that builds a `struct file_operations` with
//! `.read`, `.write`, `.llseek`, `.unlocked_ioctl` and `.mmap` and registers it with
//! `misc_register()`; the device logic above it ([`CharDevice`]) is safe Rust
//! and names nothing of this module but the trait.
//!
//! Lifetime rule: a [`Registration`] counts its open files and, when dropped,
//! first deregisters the node (no new open can start) and then waits until
//! the last open file is released. So a file's state may keep a `&'static`
//! reference to its device. At module exit the wait is empty (`fops.owner`
//! makes every open file hold a module reference); it matters when module
//! init fails after a node was registered, and a user had already opened it.
//! Two limits remain there, as for any C driver whose init fails after
//! `misc_register()`: the VFS drops the file's module reference just after
//! `release` returns, on a module the loader is about to free; and the wait
//! is not killable (a process holding the file blocks the failed `insmod`
//! until it closes). The crate root registers nodes last to keep that
//! window to the registrations themselves.

use core::marker::PhantomData;
use core::sync::atomic::{
    AtomicUsize,
    Ordering, //
};
use kernel::{
    bindings,
    error::to_result,
    ffi::{
        c_char,
        c_int,
        c_long,
        c_uint,
        c_ulong, //
    },
    mm::virt::VmaNew,
    prelude::*,
    str::CStr,
    time::{
        delay::fsleep,
        Delta, //
    },
    types::Opaque,
    uaccess::{
        UserPtr,
        UserSlice,
        UserSliceReader,
        UserSliceWriter, //
    }, //
};

/// Offset of a file, `loff_t`.
pub(crate) type Offset = i64;

/// The file operations of a character device, implemented in safe Rust.
///
/// `Self` is the device (one per node); [`CharDevice::File`] is the state of
/// one open file, what C stores in `file->private_data`.
pub(crate) trait CharDevice: Sync + Sized + 'static {
    /// The module whose code the file operations are (`fops.owner`).
    type Owner: kernel::ModuleMetadata;

    /// State of one open file.
    type File: Send + Sync;

    /// `open(2)`: `flags` are the file's `f_flags` (O_ACCMODE, O_TRUNC, ...).
    fn open(dev: &'static Self, flags: u32) -> Result<Self::File>;

    /// `read(2)` at `*pos`, advancing it.
    fn read(file: &Self::File, out: UserSliceWriter, flags: u32, pos: &mut Offset)
        -> Result<usize>;

    /// `write(2)` at `*pos`, advancing it.
    fn write(
        file: &Self::File,
        input: UserSliceReader,
        flags: u32,
        pos: &mut Offset,
    ) -> Result<usize>;

    /// The end of the data, where `SEEK_END` starts.
    fn end(file: &Self::File) -> Offset;

    /// `ioctl(2)`.
    fn ioctl(file: &Self::File, cmd: u32, arg: usize) -> Result<isize>;

    /// `mmap(2)`: sets up `vma` (runs under the mmap lock: must not take a
    /// lock that is held across user copies).
    fn mmap(file: &Self::File, vma: &VmaNew) -> Result;
}

/// A registered misc device node backed by a [`CharDevice`].
///
/// # Invariants
///
/// `misc` holds a `struct miscdevice` registered with `misc_register()`, whose
/// `fops` is [`Vtable::<T>::FOPS`] and whose `this_device` is valid until
/// `misc_deregister()` in [`Drop`]. `dev` does not move while registered.
/// `open_files` counts the files opened through the node and not yet
/// released.
#[pin_data(PinnedDrop)]
pub(crate) struct Registration<T: CharDevice> {
    #[pin]
    misc: Opaque<bindings::miscdevice>,
    open_files: AtomicUsize,
    /// The device the node's files talk to.
    #[pin]
    dev: T,
}

// SAFETY: `misc_deregister()` may be called from any thread; `T` is `Sync`.
unsafe impl<T: CharDevice> Send for Registration<T> {}
// SAFETY: All methods take `&self` and only read or use atomics; `T` is `Sync`.
unsafe impl<T: CharDevice> Sync for Registration<T> {}

impl<T: CharDevice> Registration<T> {
    /// Registers `/dev/<name>` for `dev`, with permission bits `mode` on the
    /// devtmpfs node. `name` must live as long as the registration (misc
    /// keeps the pointer), hence `'static`.
    pub(crate) fn register(
        name: &'static CStr,
        mode: u16,
        dev: impl PinInit<T, Error>,
    ) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            dev <- dev,
            open_files: AtomicUsize::new(0),
            misc <- Opaque::try_ffi_init(move |slot: *mut bindings::miscdevice| {
                // SAFETY: `miscdevice` is a plain C struct for which all-zeroes is valid.
                let mut raw: bindings::miscdevice = unsafe { core::mem::zeroed() };
                raw.minor = bindings::MISC_DYNAMIC_MINOR as c_int;
                raw.name = name.as_char_ptr();
                raw.fops = &Vtable::<T>::FOPS;
                raw.mode = mode;
                // SAFETY: The initializer may write to `slot`.
                unsafe { slot.write(raw) };
                // SAFETY: `slot` is a valid, pinned `miscdevice`; it stays registered
                // until `Drop` runs `misc_deregister()` before the memory goes.
                // INVARIANT: On success the device is registered with our fops.
                to_result(unsafe { bindings::misc_register(slot) })
            }),
        })
    }
}

#[pinned_drop]
impl<T: CharDevice> PinnedDrop for Registration<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: Registered by the type invariant; deregistered exactly once here.
        unsafe { bindings::misc_deregister(self.misc.get()) };
        // No open can start now; wait for the ones already open to close.
        while self.open_files.load(Ordering::Acquire) != 0 {
            fsleep(Delta::from_millis(10));
        }
    }
}

/// What `file->private_data` points at: the registration and the file state.
struct OpenFile<T: CharDevice> {
    reg: &'static Registration<T>,
    state: T::File,
}

/// The C entry points for `T`.
struct Vtable<T: CharDevice>(PhantomData<T>);

impl<T: CharDevice> Vtable<T> {
    const FOPS: bindings::file_operations = bindings::file_operations {
        owner: kernel::module::this_module::<T::Owner>().as_ptr(),
        open: Some(Self::open),
        release: Some(Self::release),
        read: Some(Self::read),
        write: Some(Self::write),
        llseek: Some(Self::llseek),
        unlocked_ioctl: Some(Self::ioctl),
        mmap: Some(Self::mmap),
        compat_ioctl: bindings::compat_ptr_ioctl,
        // SAFETY: All-zeroes is a valid `file_operations` (every hook absent).
        ..unsafe { core::mem::zeroed() }
    };

    /// # Safety
    ///
    /// Called by `misc_open()` with `file->private_data` pointing at the
    /// `miscdevice` embedded in a live `Registration<T>`.
    unsafe extern "C" fn open(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
        // SAFETY: `misc_open()` set `private_data` to our `miscdevice`, which is the
        // `misc` field of a pinned `Registration<T>` (the only way we register).
        let reg = unsafe {
            let misc = (*file).private_data.cast::<Opaque<bindings::miscdevice>>();
            &*kernel::container_of!(misc, Registration<T>, misc)
        };
        // SAFETY: The registration outlives every file opened through it: its
        // `Drop` waits for `open_files` to reach 0, counted from here on.
        let reg: &'static Registration<T> = unsafe { &*core::ptr::from_ref(reg) };
        reg.open_files.fetch_add(1, Ordering::AcqRel);
        // SAFETY: `file` is valid for the duration of open.
        let flags = unsafe { (*file).f_flags };
        let opened = T::open(&reg.dev, flags)
            .and_then(|state| KBox::new(OpenFile { reg, state }, GFP_KERNEL).map_err(Into::into));
        match opened {
            Ok(open) => {
                // SAFETY: `open` owns `private_data`; release turns it back into a KBox.
                unsafe { (*file).private_data = KBox::into_raw(open).cast() };
                0
            }
            Err(e) => {
                reg.open_files.fetch_sub(1, Ordering::AcqRel);
                e.to_errno()
            }
        }
    }

    /// # Safety
    ///
    /// `file` is a file opened by [`Self::open`] that is being released.
    unsafe extern "C" fn release(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
        // SAFETY: `private_data` came from `KBox::into_raw` in open and is released once.
        let open = unsafe { KBox::from_raw((*file).private_data.cast::<OpenFile<T>>()) };
        let reg = open.reg;
        // The file's state (its lab allocations, say) goes before the count
        // that lets the registration go.
        drop(open);
        reg.open_files.fetch_sub(1, Ordering::AcqRel);
        0
    }

    /// # Safety
    ///
    /// `file` is a file opened by [`Self::open`]; the VFS keeps it and its
    /// `private_data` alive during the call.
    unsafe fn state<'a>(file: *mut bindings::file) -> &'a T::File {
        // SAFETY: Per the function's safety contract.
        unsafe { &(*(*file).private_data.cast::<OpenFile<T>>()).state }
    }

    /// # Safety
    ///
    /// `file` opened by [`Self::open`]; `pos` points at the position the VFS
    /// passes for this one call (`vfs_read()` hands a copy of `f_pos`, or the
    /// caller's offset for `pread(2)`), valid and not otherwise used meanwhile.
    unsafe extern "C" fn read(
        file: *mut bindings::file,
        buf: *mut c_char,
        count: usize,
        pos: *mut bindings::loff_t,
    ) -> isize {
        let out = UserSlice::new(UserPtr::from_ptr(buf.cast()), count).writer();
        // SAFETY: Per the function's safety contract.
        let (state, flags, pos) = unsafe { (Self::state(file), (*file).f_flags, &mut *pos) };
        match T::read(state, out, flags, pos) {
            Ok(n) => n as isize,
            Err(e) => e.to_errno() as isize,
        }
    }

    /// # Safety
    ///
    /// As for [`Self::read`] (`vfs_write()` passes `pos` the same way).
    unsafe extern "C" fn write(
        file: *mut bindings::file,
        buf: *const c_char,
        count: usize,
        pos: *mut bindings::loff_t,
    ) -> isize {
        let input = UserSlice::new(UserPtr::from_ptr(buf.cast_mut().cast()), count).reader();
        // SAFETY: Per the function's safety contract.
        let (state, flags, pos) = unsafe { (Self::state(file), (*file).f_flags, &mut *pos) };
        match T::write(state, input, flags, pos) {
            Ok(n) => n as isize,
            Err(e) => e.to_errno() as isize,
        }
    }

    /// `lseek(2)` by the VFS's own `generic_file_llseek_size()`, which owns the
    /// update of `f_pos` (char devices get no `f_pos_lock`: it takes `f_lock`
    /// for SEEK_CUR itself). SEEK_DATA and SEEK_HOLE are refused as LDD3's
    /// scull refuses every `whence` but the three classic ones.
    ///
    /// # Safety
    ///
    /// `file` opened by [`Self::open`].
    unsafe extern "C" fn llseek(
        file: *mut bindings::file,
        offset: bindings::loff_t,
        whence: c_int,
    ) -> bindings::loff_t {
        let whence_u = whence as u32;
        if whence_u > bindings::SEEK_END {
            return bindings::loff_t::from(EINVAL.to_errno());
        }
        let eof = if whence_u == bindings::SEEK_END {
            // SAFETY: Per the function's safety contract.
            T::end(unsafe { Self::state(file) })
        } else {
            0
        };
        // SAFETY: `file` is a live file of ours; the function only reads and
        // sets its position, under `f_lock` where two seeks could race.
        unsafe { bindings::generic_file_llseek_size(file, offset, whence, Offset::MAX, eof) }
    }

    /// # Safety
    ///
    /// `file` opened by [`Self::open`]; `vma` is the VMA the mm is setting
    /// up for it (`f_op->mmap`), not yet visible to anyone else.
    unsafe extern "C" fn mmap(
        file: *mut bindings::file,
        vma: *mut bindings::vm_area_struct,
    ) -> c_int {
        // SAFETY: Per the function's safety contract.
        let (state, vma) = unsafe { (Self::state(file), VmaNew::from_raw(vma)) };
        match T::mmap(state, vma) {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    ///
    /// `file` opened by [`Self::open`].
    unsafe extern "C" fn ioctl(file: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> c_long {
        // SAFETY: Per the function's safety contract.
        let state = unsafe { Self::state(file) };
        match T::ioctl(state, cmd, arg) {
            Ok(n) => n as c_long,
            Err(e) => e.to_errno() as c_long,
        }
    }
}
