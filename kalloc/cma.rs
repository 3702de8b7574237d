// SPDX-License-Identifier: GPL-2.0

//! The CMA reservation (`cma=64M` on the guest's command line), reached the
//! way a driver reaches it: the DMA API on a device of the module's own.
//!
//! `cma_alloc()` needs a `struct cma *`, and the default area
//! (`dma_contiguous_default_area`) is not something a module may name; the
//! clean path is `dma_alloc_coherent()`: for a device with no IOMMU,
//! `dma_direct_alloc()` → `__dma_direct_alloc_pages()` →
//! `dma_alloc_contiguous()` (kernel/dma/contiguous.c), which takes the
//! device's CMA area or the default one for any blocking request larger
//! than a page. The device is a faux device (`rust/kernel/faux.rs`), given
//! a 64-bit coherent mask so `dma_alloc_attrs()` does not warn. If CMA
//! cannot serve (no reservation, or it is full), dma-direct falls back to
//! the buddy allocator, which fails past `MAX_PAGE_ORDER`: a test that
//! wants CMA checks `/proc/meminfo`'s CmaFree.
//!
//! Freed with `dma_free_coherent()`, which must not run with interrupts off:
//! the lab frees in process context only.

use core::ptr::NonNull;
use core::sync::atomic::{
    AtomicPtr,
    Ordering, //
};
use kernel::{
    bindings,
    faux,
    prelude::*, //
};

use super::gfp::Gfp;

/// `DMA_ATTR_NO_WARN`: a CMA request the lab was asked to fail is no bug.
const DMA_ATTRS: kernel::ffi::c_ulong = bindings::DMA_ATTR_NO_WARN as kernel::ffi::c_ulong;

/// The faux device's `struct device`, while it is registered.
static DEVICE: AtomicPtr<bindings::device> = AtomicPtr::new(core::ptr::null_mut());

/// The module's DMA device; unregistered when dropped (module exit, after
/// every lab allocation is freed).
pub(crate) struct CmaDevice {
    _reg: Option<faux::Registration>,
}

impl CmaDevice {
    /// Registers `/sys/devices/faux/ldd_alloc_cma` with a 64-bit coherent
    /// DMA mask. Without it the module still loads; the CMA backend then
    /// answers ENODEV.
    pub(crate) fn new() -> Self {
        let reg = match faux::Registration::new(c"ldd_alloc_cma", None) {
            Ok(reg) => reg,
            Err(e) => {
                pr_warn!("cma: no faux device ({:?}): the CMA backend is off\n", e);
                return Self { _reg: None };
            }
        };
        let dev: &kernel::device::Device<kernel::device::Bound> = reg.as_ref().as_ref();
        // `device::Device` is a transparent wrapper of `struct device`.
        let raw = core::ptr::from_ref(dev)
            .cast_mut()
            .cast::<bindings::device>();
        // SAFETY: `raw` is the registered faux device's `struct device`,
        // alive while `reg` is.
        if unsafe { bindings::dma_set_coherent_mask(raw, u64::MAX) } != 0 {
            pr_warn!("cma: no 64-bit DMA mask: the CMA backend is off\n");
            return Self { _reg: None };
        }
        DEVICE.store(raw, Ordering::Release);
        Self { _reg: Some(reg) }
    }
}

impl Drop for CmaDevice {
    fn drop(&mut self) {
        DEVICE.store(core::ptr::null_mut(), Ordering::Release);
    }
}

/// A CMA buffer: its kernel address and DMA address.
pub(crate) struct DmaBuffer {
    /// Kernel virtual address (the direct map on x86-64).
    pub(crate) addr: NonNull<u8>,
    /// Bytes asked for.
    pub(crate) size: usize,
    /// The bus address `dma_alloc_coherent()` gave (the physical address,
    /// without an IOMMU).
    pub(crate) handle: bindings::dma_addr_t,
}

/// `dma_alloc_coherent(dev, size, &handle, gfp)` on our faux device; may
/// sleep. None if the device is not there or the memory is not.
pub(crate) fn alloc(size: usize, gfp: Gfp) -> Option<DmaBuffer> {
    let dev = DEVICE.load(Ordering::Acquire);
    if dev.is_null() {
        return None;
    }
    let mut handle: bindings::dma_addr_t = 0;
    // SAFETY: `dev` is our registered device (set until the module's exit,
    // after every lab file is closed); `gfp` may sleep and has no
    // `__GFP_COMP` (the lab checks both); `handle` is ours to write.
    let p = unsafe { bindings::dma_alloc_attrs(dev, size, &mut handle, gfp, DMA_ATTRS) };
    Some(DmaBuffer {
        addr: NonNull::new(p.cast())?,
        size,
        handle,
    })
}

/// `dma_free_coherent()`.
///
/// # Safety
///
/// `buf` came from [`alloc`] and is not used after; process context,
/// interrupts on.
pub(crate) unsafe fn free(buf: &DmaBuffer) {
    let dev = DEVICE.load(Ordering::Acquire);
    if dev.is_null() {
        return;
    }
    // SAFETY: Per the function's contract, on the device that made it.
    unsafe {
        bindings::dma_free_attrs(
            dev,
            buf.size,
            buf.addr.as_ptr().cast(),
            buf.handle,
            DMA_ATTRS,
        )
    }
}
