// SPDX-License-Identifier: GPL-2.0

//! The host kernel's allocators, each C entry point called from here only
//! (LDD3 chapter 8: kmalloc, `__get_free_pages`, vmalloc; and today's
//! kvmalloc and krealloc).
//!
//! The lab and the benchmarks need arbitrary GFP flags, which the kernel
//! crate's `Kmalloc`/`Vmalloc`/`KVmalloc` allocators cannot express (their
//! `Flags` are built from a few named constants only), so this room calls C.
//! It goes through the kernel's own Rust helpers where they exist
//! (`krealloc_node_align`, `vrealloc_node_align`, `kvrealloc_node_align`,
//! `alloc_pages`): those are the `alloc_hooks()` macros of the C headers, so
//! `CONFIG_MEM_ALLOC_PROFILING` tags the allocations as it tags C code's. A
//! `realloc` of NULL is the allocation itself (mm/slub.c, mm/vmalloc.c).
//!
//! x86-64 only: the page address of a `struct page` is `page_address()`
//! because there is no highmem (see [`page_address`]).

use core::ptr::NonNull;
use kernel::{
    bindings,
    ffi::c_void, //
};

use super::gfp::{
    self,
    Gfp, //
};

#[cfg(CONFIG_HIGHMEM)]
compile_error!("ldd_alloc assumes every page is in the direct map (no CONFIG_HIGHMEM)");

/// `kmalloc(size, gfp)`.
pub(crate) fn kmalloc(size: usize, gfp: Gfp) -> Option<NonNull<u8>> {
    // SAFETY: `krealloc` of NULL allocates; any size and flags are accepted.
    let p = unsafe {
        bindings::krealloc_node_align(core::ptr::null(), size, 1, gfp, bindings::NUMA_NO_NODE)
    };
    non_null(p)
}

/// `krealloc(p, size, gfp)`: on success the old object is gone (freed, or
/// the same pointer returned); on failure it is untouched.
///
/// # Safety
///
/// `p` is a live kmalloc object owned by the caller.
pub(crate) unsafe fn krealloc(p: NonNull<u8>, size: usize, gfp: Gfp) -> Option<NonNull<u8>> {
    // SAFETY: `p` is a live kmalloc object (contract).
    let n = unsafe {
        bindings::krealloc_node_align(p.as_ptr().cast(), size, 1, gfp, bindings::NUMA_NO_NODE)
    };
    non_null(n)
}

/// `kfree(p)`.
///
/// # Safety
///
/// `p` is a live kmalloc object the caller owns and does not use after.
pub(crate) unsafe fn kfree(p: NonNull<u8>) {
    // SAFETY: Per the function's contract.
    unsafe { bindings::kfree(p.as_ptr().cast()) }
}

/// `ksize(p)`: the usable size of a kmalloc object.
///
/// # Safety
///
/// `p` is a live kmalloc object.
pub(crate) unsafe fn ksize(p: NonNull<u8>) -> usize {
    // SAFETY: Per the function's contract.
    unsafe { bindings::ksize(p.as_ptr().cast()) }
}

/// `__vmalloc(size, gfp)`.
pub(crate) fn vmalloc(size: usize, gfp: Gfp) -> Option<NonNull<u8>> {
    // SAFETY: `vrealloc` of NULL is vmalloc; it accepts any size and flags
    // (unsupported flags are fixed up with a warning, which the lab's
    // validation prevents).
    let p = unsafe {
        bindings::vrealloc_node_align(core::ptr::null(), size, 1, gfp, bindings::NUMA_NO_NODE)
    };
    non_null(p)
}

/// `kvmalloc(size, gfp)`: kmalloc, or vmalloc when that fails.
pub(crate) fn kvmalloc(size: usize, gfp: Gfp) -> Option<NonNull<u8>> {
    // SAFETY: `kvrealloc` of NULL is kvmalloc; any size and flags are accepted.
    let p = unsafe {
        bindings::kvrealloc_node_align(core::ptr::null(), size, 1, gfp, bindings::NUMA_NO_NODE)
    };
    non_null(p)
}

/// `kvfree(p)`: frees kmalloc and vmalloc memory alike.
///
/// # Safety
///
/// `p` came from [`kmalloc`], [`vmalloc`] or [`kvmalloc`], is owned by the
/// caller and not used after.
pub(crate) unsafe fn kvfree(p: NonNull<u8>) {
    // SAFETY: Per the function's contract.
    unsafe { bindings::kvfree(p.as_ptr().cast()) }
}

/// Whether `addr` lies in the vmalloc area (only compares the address).
pub(crate) fn is_vmalloc_addr(addr: usize) -> bool {
    // SAFETY: `is_vmalloc_addr()` compares the address with the area's bounds.
    unsafe { bindings::is_vmalloc_addr(addr as *const c_void) }
}

/// `alloc_pages(gfp, order)`: a run of `2^order` pages.
pub(crate) fn alloc_pages(gfp: Gfp, order: u32) -> Option<NonNull<bindings::page>> {
    // SAFETY: FFI call; the page allocator accepts any flags and returns NULL
    // for an order above MAX_PAGE_ORDER.
    NonNull::new(unsafe { bindings::alloc_pages(gfp, order) })
}

/// `__free_pages(page, order)`.
///
/// # Safety
///
/// `page` came from [`alloc_pages`] with `order`, is owned by the caller and
/// not used after.
pub(crate) unsafe fn free_page_run(page: NonNull<bindings::page>, order: u32) {
    // SAFETY: Per the function's contract.
    unsafe { bindings::__free_pages(page.as_ptr(), order) }
}

/// `page_address(page)`: where the page is in the direct map.
///
/// # Safety
///
/// `page` is a live page of the caller's.
pub(crate) unsafe fn page_address(page: NonNull<bindings::page>) -> NonNull<u8> {
    // SAFETY: Without CONFIG_HIGHMEM (refused above) `kmap_local_page()` is
    // `page_address()` (include/linux/highmem-internal.h): no mapping is made,
    // so there is nothing to unmap, and the address of a page in the direct
    // map is never NULL.
    unsafe { NonNull::new_unchecked(bindings::kmap_local_page(page.as_ptr()).cast()) }
}

/// `__get_free_pages(gfp, order)`: a run of pages by its address.
pub(crate) fn get_free_pages(gfp: Gfp, order: u32) -> Option<NonNull<u8>> {
    // As mm/page_alloc.c's __get_free_pages(): a highmem page has no address.
    let page = alloc_pages(gfp & !gfp::HIGHMEM, order)?;
    // SAFETY: Just allocated, ours.
    Some(unsafe { page_address(page) })
}

/// `free_pages(addr, order)`.
///
/// # Safety
///
/// `addr` came from [`get_free_pages`] with `order`, is owned by the caller
/// and not used after.
pub(crate) unsafe fn free_pages(addr: NonNull<u8>, order: u32) {
    // SAFETY: Per the function's contract.
    unsafe { bindings::free_pages(addr.as_ptr() as kernel::ffi::c_ulong, order) }
}

/// The physical address behind a kernel virtual address (direct map or
/// vmalloc area), by walking the page tables (`slow_virt_to_phys()`).
///
/// # Safety
///
/// `addr` is mapped: inside a live allocation of the direct map or of the
/// vmalloc area (`slow_virt_to_phys()` BUG()s on an unmapped address).
pub(crate) unsafe fn virt_to_phys(addr: usize) -> u64 {
    // SAFETY: The address is mapped (contract): the walk finds its PTE.
    unsafe { bindings::slow_virt_to_phys(addr as *mut c_void) }
}

/// Whether the `len` bytes at `addr` are all zero (`memchr_inv()`, which
/// reads memory Rust may not make a `&[u8]` of: fresh, uninitialised
/// allocations).
///
/// # Safety
///
/// `addr` is valid for reads of `len` bytes.
pub(crate) unsafe fn is_zeroed(addr: NonNull<u8>, len: usize) -> bool {
    // SAFETY: Per the function's contract.
    unsafe { bindings::memchr_inv(addr.as_ptr().cast(), 0, len).is_null() }
}

/// `kfree(NULL)`, `kvfree(NULL)` and `free_pages(0, 0)`: each accepts
/// "nothing" and does nothing (LDD3: "it is legal to pass a NULL pointer to
/// kfree").
pub(crate) fn free_nothing() {
    // SAFETY: Each of these returns at once for NULL (0).
    unsafe {
        bindings::kfree(core::ptr::null());
        bindings::kvfree(core::ptr::null());
        bindings::free_pages(0, 0);
    }
}

fn non_null(p: *mut c_void) -> Option<NonNull<u8>> {
    // krealloc(NULL, 0) would give ZERO_SIZE_PTR (16): never asked for, as
    // every caller passes a size of at least 1.
    NonNull::new(p.cast())
}
