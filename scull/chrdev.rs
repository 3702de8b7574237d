// SPDX-License-Identifier: GPL-2.0

//! A misc character device with the whole set of scull file operations.
//!
//! `kernel::miscdevice` (7.3) offers open, release, read_iter, write_iter and
//! ioctl but no `llseek`, so `lseek(2)` on such a device fails with ESPIPE and
//! scull's semantics (LDD3 chapter 3, "scull_llseek") cannot be had. This file
//! is the small unsafe boundary that builds a `struct file_operations` with
//! `.read`, `.write`, `.llseek` and `.unlocked_ioctl` and registers it with
//! `misc_register()`; the device logic above it ([`CharDevice`]) is safe Rust.
//!
//! Lifetime rule: `fops.owner` is this module, so the VFS holds a module
//! reference for every open file. The module's exit, which drops every
//! [`Registration`], therefore cannot run while a file is open: a per-file
//! state may keep a `&'static` reference to its device.

use core::marker::PhantomData;
use kernel::{
    bindings,
    error::to_result,
    ffi::{c_char, c_int, c_long, c_uint, c_ulong},
    prelude::*,
    str::CStr,
    types::Opaque,
    uaccess::{UserPtr, UserSlice, UserSliceReader, UserSliceWriter},
};

/// Offset of a file, `loff_t`.
pub(crate) type Offset = i64;

/// The file operations of a character device, implemented in safe Rust.
///
/// `Self` is the device (one per node); [`CharDevice::File`] is the state of
/// one open file, what C stores in `file->private_data`.
pub(crate) trait CharDevice: Sync + Sized + 'static {
    /// State of one open file.
    type File: Send + Sync;

    /// `open(2)`: `flags` are the file's `f_flags` (O_ACCMODE, O_TRUNC, ...).
    fn open(dev: &'static Self, flags: u32) -> Result<KBox<Self::File>>;

    /// `close(2)` of the last reference: the state is dropped afterwards.
    fn release(file: KBox<Self::File>) {
        drop(file);
    }

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

    /// `lseek(2)`: the new position from the current one, `offset` and `whence`.
    fn llseek(file: &Self::File, pos: Offset, offset: Offset, whence: u32) -> Result<Offset>;

    /// `ioctl(2)`.
    fn ioctl(file: &Self::File, cmd: u32, arg: usize) -> Result<isize>;
}

/// A registered misc device node backed by a [`CharDevice`].
///
/// # Invariants
///
/// `misc` holds a `struct miscdevice` registered with `misc_register()`, whose
/// `fops` is [`Vtable::<T>::FOPS`] and whose `this_device` is valid until
/// `misc_deregister()` in [`Drop`]. `dev` does not move while registered.
#[pin_data(PinnedDrop)]
pub(crate) struct Registration<T: CharDevice> {
    #[pin]
    misc: Opaque<bindings::miscdevice>,
    /// The device the node's files talk to.
    #[pin]
    dev: T,
}

// SAFETY: `misc_deregister()` may be called from any thread; `T` is `Sync`.
unsafe impl<T: CharDevice> Send for Registration<T> {}
// SAFETY: All methods take `&self` and only read; `T` is `Sync`.
unsafe impl<T: CharDevice> Sync for Registration<T> {}

impl<T: CharDevice> Registration<T> {
    /// Registers `/dev/<name>` for `dev`. `name` must live as long as the
    /// registration (misc keeps the pointer), hence `'static`.
    pub(crate) fn register(
        name: &'static CStr,
        dev: impl PinInit<T, Error>,
    ) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            dev <- dev,
            misc <- Opaque::try_ffi_init(move |slot: *mut bindings::miscdevice| {
                // SAFETY: `miscdevice` is a plain C struct for which all-zeroes is valid.
                let mut raw: bindings::miscdevice = unsafe { core::mem::zeroed() };
                raw.minor = bindings::MISC_DYNAMIC_MINOR as c_int;
                raw.name = name.as_char_ptr();
                raw.fops = &Vtable::<T>::FOPS;
                raw.mode = 0o666;
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
    }
}

/// The C entry points for `T`.
struct Vtable<T: CharDevice>(PhantomData<T>);

impl<T: CharDevice> Vtable<T> {
    const FOPS: bindings::file_operations = bindings::file_operations {
        owner: kernel::module::this_module::<crate::LddAlloc>().as_ptr(),
        open: Some(Self::open),
        release: Some(Self::release),
        read: Some(Self::read),
        write: Some(Self::write),
        llseek: Some(Self::llseek),
        unlocked_ioctl: Some(Self::ioctl),
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
        // SAFETY: The registration outlives every open file: fops.owner pins the
        // module, and only module exit drops a registration (see the file docs).
        let dev: &'static T = unsafe { &*core::ptr::from_ref(&reg.dev) };
        // SAFETY: `file` is valid for the duration of open.
        let flags = unsafe { (*file).f_flags };
        match T::open(dev, flags) {
            Ok(state) => {
                // SAFETY: open owns `private_data`; release turns it back into a KBox.
                unsafe { (*file).private_data = KBox::into_raw(state).cast() };
                0
            }
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    ///
    /// `file` is a file opened by [`Self::open`] that is being released.
    unsafe extern "C" fn release(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
        // SAFETY: `private_data` came from `KBox::into_raw` in open and is released once.
        let state = unsafe { KBox::from_raw((*file).private_data.cast::<T::File>()) };
        T::release(state);
        0
    }

    /// # Safety
    ///
    /// `file` is a file opened by [`Self::open`]; the VFS keeps it and its
    /// `private_data` alive during the call.
    unsafe fn state<'a>(file: *mut bindings::file) -> &'a T::File {
        // SAFETY: Per the function's safety contract.
        unsafe { &*(*file).private_data.cast::<T::File>() }
    }

    /// # Safety
    ///
    /// `file` opened by [`Self::open`], `pos` a valid `loff_t` the VFS owns.
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
    /// `file` opened by [`Self::open`], `pos` a valid `loff_t` the VFS owns.
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

    /// # Safety
    ///
    /// `file` opened by [`Self::open`].
    unsafe extern "C" fn llseek(
        file: *mut bindings::file,
        offset: bindings::loff_t,
        whence: c_int,
    ) -> bindings::loff_t {
        // SAFETY: Per the function's safety contract; llseek may update f_pos
        // (the VFS serializes it for us with f_pos_lock where needed).
        let (state, pos) = unsafe { (Self::state(file), (*file).f_pos) };
        match T::llseek(state, pos, offset, whence as u32) {
            Ok(new) => {
                // SAFETY: As above.
                unsafe { (*file).f_pos = new };
                new
            }
            Err(e) => bindings::loff_t::from(e.to_errno()),
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
