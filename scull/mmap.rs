// SPDX-License-Identifier: GPL-2.0

//! `mmap` of the `pages` and `vmalloc` devices (LDD3 chapter 15, scullp and
//! scullv), by a fault handler that maps one quantum page at a time with
//! `vm_insert_page()` (through `kernel::mm::virt`), as LDD3's `nopage`
//! methods do.
//!
//! # Which pages
//!
//! Device page `n` (bytes `n * PAGE_SIZE ..`) is page `n % (quantum /
//! PAGE_SIZE)` of quantum `n / (quantum / PAGE_SIZE)`: on the pages backend
//! its `struct page` is the run's page (the run is split into order-0 pages
//! at allocation, `split_page()`, so each page is refcounted on its own and
//! any order can be mapped: LDD3's scullp refused orders above 0), on the
//! vmalloc backend `vmalloc_to_page()` of the address. A vmalloc device
//! maps only with a quantum that is a multiple of PAGE_SIZE (ENODEV
//! otherwise: its quanta are not pages); every other backend refuses with
//! ENODEV, as LDD3's scull does. A page at or past the device size, or in a hole (a quantum never
//! written), gets SIGBUS, as LDD3's `nopage` answers "hole or end-of-file".
//!
//! # Locks: why the fault handler never takes the device mutex
//!
//! `read(2)` and `write(2)` copy user memory while holding the device
//! mutex, and a user copy may fault, taking `mmap_lock`: the order is
//! device mutex → `mmap_lock`. The mmap hook runs under `mmap_lock` and a
//! fault handler under it (or under the VMA's lock), so neither may take
//! the device mutex (lockdep would report the cycle, and a `write(2)` from
//! a buffer mapped from the same device would deadlock on itself). The
//! store therefore publishes each mappable quantum's pages in an xarray of
//! this room when it allocates them (under the device mutex), and the
//! fault handler looks pages up there without it.
//!
//! # Trim while mapped: EBUSY
//!
//! As LDD3's scullp counts its VMAs (`dev->vmas`) and refuses to trim while
//! any exist, a trim (an `O_TRUNC` open) or `SET_BACKEND` of a mapped
//! device fails with EBUSY. A trim takes the
//! device mutex, then, under this room's spinlock, checks the VMA count and
//! marks the map as trimming, empties the map, and only then frees the
//! quanta; an `mmap` meanwhile gets EBUSY. So no page leaves the map while
//! a VMA can fault on it, and a page's last reference is the store's.

use core::sync::atomic::{
    AtomicU64,
    Ordering, //
};
use kernel::{
    bindings,
    ffi::c_void,
    mm::virt::{
        VmaNew,
        VmaRef, //
    },
    new_spinlock,
    page::BorrowedPage,
    prelude::*,
    sync::SpinLock,
    types::Opaque, //
};

use super::backend::{
    Backend,
    Block, //
};
use crate::kalloc::pages::PAGE_SIZE;

/// What the map knows of its device, under [`PageMap::state`].
struct MapState {
    /// VMAs mapping the device now (LDD3's `dev->vmas`).
    vmas: usize,
    /// A trim is emptying the map: `mmap` gets EBUSY.
    trimming: bool,
    /// The device's backend and quantum can be mapped.
    mappable: bool,
}

/// The pages of one device that a mapping may reach.
///
/// # Invariants
///
/// `xa` is an initialised xarray whose entries are `struct page` pointers
/// of the device's live quanta: each entry's page stays allocated until a
/// trim removes the entry (with `state.vmas == 0`) and then frees it.
#[pin_data(PinnedDrop)]
pub(crate) struct PageMap {
    #[pin]
    xa: Opaque<bindings::xarray>,
    #[pin]
    state: SpinLock<MapState>,
    /// The device size, for SIGBUS past it.
    size: AtomicU64,
}

// SAFETY: The xarray has its own lock; the rest is a spinlock and an atomic.
unsafe impl Send for PageMap {}
// SAFETY: As above: every method takes `&self` and is thread-safe.
unsafe impl Sync for PageMap {}

/// Whether a device with this backend and quantum can be mapped.
pub(crate) fn mappable(backend: &Backend, quantum: usize) -> bool {
    match backend {
        Backend::Pages { .. } => true,
        Backend::Vmalloc => quantum % PAGE_SIZE == 0,
        _ => false,
    }
}

/// A trim in progress: `mmap` is refused until the guard is dropped, so a
/// caller can check "not mapped" first and then allocate what the trim needs
/// (the errno of a mapped device never depends on memory). The map is
/// emptied by [`TrimGuard::empty_map`], right before the caller frees pages.
pub(crate) struct TrimGuard<'a>(&'a PageMap);

impl TrimGuard<'_> {
    /// Empties the map: no fault can reach a page the caller frees next.
    pub(crate) fn empty_map(&self) {
        // SAFETY: `xa` is initialised; `xa_destroy()` takes its lock, frees
        // its nodes and leaves it empty and usable.
        unsafe { bindings::xa_destroy(self.0.xa.get()) };
        self.0.size.store(0, Ordering::Release);
    }

    /// The trim is over: the device is now (not) mappable.
    pub(crate) fn done(self, mappable: bool) {
        self.0.state.lock().mappable = mappable;
    }
}

impl Drop for TrimGuard<'_> {
    fn drop(&mut self) {
        // A trim that gave up (its allocation failed) leaves the device as
        // it was: mappable as before, and mappable again now.
        self.0.state.lock().trimming = false;
    }
}

impl PageMap {
    /// An empty map of a device that is (not) mappable.
    pub(crate) fn new(mappable: bool) -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `xa_init_flags()` initialises the xarray in place.
            xa <- Opaque::ffi_init(|xa| unsafe { bindings::xa_init_flags(xa, 0) }),
            state <- new_spinlock!(MapState { vmas: 0, trimming: false, mappable }, "PageMap::state"),
            size: AtomicU64::new(0),
        })
    }

    /// Records the device size (after a write grew it).
    pub(crate) fn set_size(&self, size: u64) {
        self.size.store(size, Ordering::Release);
    }

    /// Publishes the pages of quantum number `q`, `block`, of `quantum`
    /// bytes from `backend` (a mappable one). On failure nothing of it is
    /// published.
    pub(crate) fn publish(
        &self,
        q: usize,
        block: &Block,
        backend: &Backend,
        quantum: usize,
    ) -> Result {
        let per = quantum / PAGE_SIZE;
        let first = q.checked_mul(per).ok_or(EFBIG)?;
        first.checked_add(per).ok_or(EFBIG)?;
        for i in 0..per {
            let page = block.page(backend, i).ok_or(EINVAL)?;
            // SAFETY: `xa` is initialised (type invariant); the entry is a
            // `struct page` pointer (aligned, so a valid xarray entry);
            // GFP_KERNEL: the store publishes from process context.
            let old = unsafe {
                bindings::xa_store(
                    self.xa.get(),
                    (first + i) as kernel::ffi::c_ulong,
                    page.as_ptr().cast(),
                    bindings::GFP_KERNEL,
                )
            };
            if xa_is_err(old) {
                for j in 0..i {
                    // SAFETY: As above; erases what this call stored.
                    unsafe {
                        bindings::xa_erase(self.xa.get(), (first + j) as kernel::ffi::c_ulong)
                    };
                }
                return Err(ENOMEM);
            }
        }
        Ok(())
    }

    /// Starts a trim: EBUSY while the device is mapped; otherwise no new
    /// mapping can start until the guard goes.
    pub(crate) fn begin_trim(&self) -> Result<TrimGuard<'_>> {
        {
            let mut st = self.state.lock();
            if st.vmas != 0 {
                return Err(EBUSY);
            }
            st.trimming = true;
        }
        Ok(TrimGuard(self))
    }

    /// The mmap hook: checks, counts the VMA, installs the fault handler.
    pub(crate) fn mmap(&'static self, vma: &VmaNew) -> Result {
        // SAFETY: The VMA is being set up by this hook: reading its page
        // offset races with nothing.
        let pgoff = unsafe { (*vma.as_ptr()).vm_pgoff } as u64;
        let pages = ((vma.end() - vma.start()) / PAGE_SIZE) as u64;
        // Every byte offset of the mapping must be a valid file offset.
        let end = pgoff.checked_add(pages).ok_or(EINVAL)?;
        if end
            .checked_mul(PAGE_SIZE as u64)
            .is_none_or(|b| b > i64::MAX as u64)
        {
            return Err(EINVAL);
        }
        {
            let mut st = self.state.lock();
            if !st.mappable {
                return Err(ENODEV);
            }
            if st.trimming {
                return Err(EBUSY);
            }
            st.vmas += 1;
        }
        // mremap() must not grow it past what we counted; VM_MIXEDMAP is
        // what vm_insert_page() needs.
        vma.set_dontexpand();
        vma.set_mixedmap();
        // SAFETY: Still in setup, not yet shared: the hook may set the ops
        // and private data. `self` is `'static` (a device outlives the
        // files and so the VMAs, which hold a file reference).
        unsafe {
            (*vma.as_ptr()).vm_ops = &VM_OPS;
            (*vma.as_ptr()).vm_private_data = core::ptr::from_ref(self).cast_mut().cast();
        }
        Ok(())
    }

    fn vma_opened(&self) {
        self.state.lock().vmas += 1;
    }

    fn vma_closed(&self) {
        let mut st = self.state.lock();
        st.vmas = st.vmas.saturating_sub(1);
    }

    /// Maps device page `pgoff` at `address` of `vma`.
    fn fault(&self, vma: &VmaRef, pgoff: u64, address: usize) -> bindings::vm_fault_t {
        let past = pgoff
            .checked_mul(PAGE_SIZE as u64)
            .is_none_or(|b| b >= self.size.load(Ordering::Acquire));
        let Ok(index) = usize::try_from(pgoff) else {
            return bindings::vm_fault_reason_VM_FAULT_SIGBUS;
        };
        if past {
            return bindings::vm_fault_reason_VM_FAULT_SIGBUS;
        }
        // SAFETY: `xa` is initialised; `xa_load()` takes the RCU read lock.
        let entry = unsafe { bindings::xa_load(self.xa.get(), index as kernel::ffi::c_ulong) };
        let Some(page) = core::ptr::NonNull::new(entry.cast::<bindings::page>()) else {
            return bindings::vm_fault_reason_VM_FAULT_SIGBUS;
        };
        let Some(vma) = vma.as_mixedmap_vma() else {
            return bindings::vm_fault_reason_VM_FAULT_SIGBUS;
        };
        // SAFETY: The page stays allocated while this VMA exists: a trim
        // that would free it is refused while any VMA is counted, and this
        // one is (type invariant; counted in `mmap`/`open` until `close`).
        let page = unsafe { BorrowedPage::from_raw(page) };
        match vma.vm_insert_page(address, &page) {
            // vm_insert_page() took its own reference for the PTE.
            Ok(()) => bindings::vm_fault_reason_VM_FAULT_NOPAGE,
            // Another thread's fault mapped it first.
            Err(e) if e == EBUSY => bindings::vm_fault_reason_VM_FAULT_NOPAGE,
            Err(e) if e == ENOMEM => bindings::vm_fault_reason_VM_FAULT_OOM,
            Err(_) => bindings::vm_fault_reason_VM_FAULT_SIGBUS,
        }
    }
}

#[pinned_drop]
impl PinnedDrop for PageMap {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: `xa` is initialised; destroyed once, here (the entries
        // are borrowed pages: nothing to free but the nodes).
        unsafe { bindings::xa_destroy(self.xa.get()) };
    }
}

/// `xa_is_err()`: an xarray internal entry that encodes an errno.
fn xa_is_err(entry: *mut c_void) -> bool {
    // SAFETY: `xa_err()` only inspects the entry's bits.
    unsafe { bindings::xa_err(entry) != 0 }
}

/// The map of a VMA we set up.
///
/// # Safety
///
/// `vma` was set up by [`PageMap::mmap`] (its private data is a `'static`
/// `PageMap`).
unsafe fn map_of<'a>(vma: *mut bindings::vm_area_struct) -> &'a PageMap {
    // SAFETY: Per the function's contract.
    unsafe { &*(*vma).vm_private_data.cast::<PageMap>() }
}

/// # Safety
///
/// Called by the mm for a new VMA copied from one of ours (fork, split,
/// mremap).
unsafe extern "C" fn vma_open(vma: *mut bindings::vm_area_struct) {
    // SAFETY: A copy of our VMA carries our private data.
    unsafe { map_of(vma) }.vma_opened();
}

/// # Safety
///
/// Called by the mm once for each of our VMAs as it goes away.
unsafe extern "C" fn vma_close(vma: *mut bindings::vm_area_struct) {
    // SAFETY: One of our VMAs.
    unsafe { map_of(vma) }.vma_closed();
}

/// # Safety
///
/// Called by the mm for a fault in one of our VMAs, with the mmap lock or
/// the VMA's lock held for reading.
unsafe extern "C" fn vma_fault(vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
    // SAFETY: `vmf` is valid for the call; its constant part names the VMA,
    // the page offset and the page-aligned address.
    let (vma, pgoff, address) = unsafe {
        let f = &(*vmf).__bindgen_anon_1;
        (f.vma, f.pgoff, f.address)
    };
    // SAFETY: One of our VMAs; it is valid and read-locked for the call.
    let (map, vma) = unsafe { (map_of(vma), VmaRef::from_raw(vma)) };
    map.fault(vma, pgoff as u64, address)
}

/// The VMA operations of a mapped scull device.
const VM_OPS: bindings::vm_operations_struct = bindings::vm_operations_struct {
    open: Some(vma_open),
    close: Some(vma_close),
    fault: Some(vma_fault),
    // SAFETY: All-zeroes is a valid `vm_operations_struct` (no hook).
    ..unsafe { core::mem::zeroed() }
};
