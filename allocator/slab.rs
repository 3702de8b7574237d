// SPDX-License-Identifier: GPL-2.0

//! One slab: the on-slab header, its free list and its allocation bitmap.
//!
//! This file is the raw-memory boundary of the allocator: it is the only
//! place that reads or writes slab headers and free-list links, and it
//! hands the debug checks their byte slices. Everything above it (depot
//! lists, magazines, statistics) is safe code.
//!
//! A slab is a run of `2^order` pages from the [`PageSource`], naturally
//! aligned, so the slab of any object is found by masking its address with
//! `!(slab_bytes - 1)` (SLUB uses `virt_to_slab()`, i.e. `struct page`; we
//! cannot touch `struct page` from a module, hence the header). The header
//! sits at the run's base, like the on-slab `struct slab` of the historic
//! SLAB allocator:
//!
//! ```text
//! base: magic | cache_id | next | prev | free_head | inuse | quarantined | list
//!       bitmap: one AtomicU64 per 64 objects (bit set = allocated to a user)
//! first_slot: object slots, `stride` bytes each (see `layout.rs`)
//! ```
//!
//! `magic` and `cache_id` are written once before the slab is published,
//! so [`locate`] may read them without the depot lock. Retiring a slab
//! follows the RCU pattern: unlink it and wipe its magic under the depot
//! lock (unpublish: later lookups see a foreign pointer), wait for every
//! lookup that may have seen the old magic (every magazine holder, see
//! `cache.rs`), then free the pages. The bitmap is atomic:
//! `free` clears a bit with `fetch_and` (already clear ⇒ double free),
//! `alloc` sets it with `fetch_or`. All other fields belong to the depot and
//! are touched only under its lock (or by whoever owns a slab that is not
//! yet published or already detached).
//!
//! The free list is a chain of `u32` object indices stored intrusively in
//! the free objects (at `fp_offset`), like SLUB's freepointer. Links are
//! bounds-checked and the chain length is checked against the counts, so
//! a use-after-free write can lose objects (they are then quarantined) but
//! cannot make the allocator hand out an address outside the slab.

use core::mem::size_of;
use core::ptr::{
    addr_of,
    addr_of_mut,
    NonNull, //
};
use core::sync::atomic::{
    AtomicU64,
    Ordering, //
};

use super::error::FreeError;
use super::layout::{
    CacheLayout,
    MARK_OFFSET, //
};
use super::order::{
    bitmap_words,
    HEADER_FIXED, //
};
use super::page_source::PageSource;

/// The value of the first header word of every live slab ("LDD_SLAB").
pub const SLAB_MAGIC: u64 = 0x4c44_445f_534c_4142;

/// The free-list terminator.
const NO_OBJ: u32 = u32::MAX;

/// The on-slab header. The allocation bitmap follows it directly.
#[repr(C)]
struct SlabHeader {
    magic: u64,
    cache_id: u64,
    next: *mut SlabHeader,
    prev: *mut SlabHeader,
    free_head: u32,
    inuse: u32,
    quarantined: u32,
    list: u32,
}

// `order` sizes slabs by the header's fixed part without knowing the
// struct: the two must agree.
const _: () = assert!(size_of::<SlabHeader>() == HEADER_FIXED);

/// The bytes [`locate`] reads through [`PageSource::read_nofault`].
const ID_BYTES: usize = 16;

/// Which depot list a slab is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListId {
    /// Not on a depot list (new, or detached for freeing).
    None,
    /// Some objects free, some in use.
    Partial,
    /// No free object.
    Full,
    /// No object in use.
    Empty,
}

impl ListId {
    fn to_raw(self) -> u32 {
        match self {
            ListId::None => 0,
            ListId::Partial => 1,
            ListId::Full => 2,
            ListId::Empty => 3,
        }
    }

    fn from_raw(v: u32) -> Self {
        match v {
            1 => ListId::Partial,
            2 => ListId::Full,
            3 => ListId::Empty,
            _ => ListId::None,
        }
    }
}

/// The outcome of popping a slab's free list.
pub(crate) struct Popped {
    /// The object index taken, if any.
    pub(crate) index: Option<u32>,
    /// Free objects lost to a corrupted free list (now quarantined).
    pub(crate) lost: u32,
}

/// A handle to a live slab.
///
/// # Invariants
///
/// `self.0` points to the header of a slab initialized by [`init_slab`]: a
/// run of `layout.slab_bytes()` bytes aligned to its size, which stays
/// allocated for as long as the handle is used. The atomic bitmap may be
/// used by anyone for whom the slab is known to be alive. The non-atomic
/// header fields and the links inside free objects are used only by the
/// slab's owner: the depot, with its lock held, or the single owner of a
/// slab not yet published or already detached. Every method that takes a
/// [`CacheLayout`] is given the layout of the cache owning the slab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlabPtr(NonNull<SlabHeader>);

impl SlabPtr {
    fn hdr(self) -> *mut SlabHeader {
        self.0.as_ptr()
    }

    /// The run's base address.
    pub(crate) fn base(self) -> NonNull<u8> {
        self.0.cast()
    }

    /// The next slab on the same list.
    pub(crate) fn next(self) -> Option<SlabPtr> {
        // SAFETY: By the type invariant the header is live and we are its
        // owner, so nobody writes this field concurrently.
        let p = unsafe { (*self.hdr()).next };
        // INVARIANT: List links only ever point at live slabs of the list.
        NonNull::new(p).map(SlabPtr)
    }

    /// Sets the next link.
    pub(crate) fn set_next(self, next: Option<SlabPtr>) {
        let p = next.map_or(core::ptr::null_mut(), |s| s.hdr());
        // SAFETY: As in `next`.
        unsafe { (*self.hdr()).next = p };
    }

    /// The previous slab on the same list.
    pub(crate) fn prev(self) -> Option<SlabPtr> {
        // SAFETY: As in `next`.
        let p = unsafe { (*self.hdr()).prev };
        // INVARIANT: As in `next`.
        NonNull::new(p).map(SlabPtr)
    }

    /// Sets the previous link.
    pub(crate) fn set_prev(self, prev: Option<SlabPtr>) {
        let p = prev.map_or(core::ptr::null_mut(), |s| s.hdr());
        // SAFETY: As in `next`.
        unsafe { (*self.hdr()).prev = p };
    }

    /// Objects handed out of the free list (to users or magazines).
    pub(crate) fn inuse(self) -> u32 {
        // SAFETY: As in `next`.
        unsafe { (*self.hdr()).inuse }
    }

    /// Sets the in-use count.
    pub(crate) fn set_inuse(self, v: u32) {
        // SAFETY: As in `next`.
        unsafe { (*self.hdr()).inuse = v };
    }

    /// Objects withdrawn for good after a detected corruption.
    pub(crate) fn quarantined(self) -> u32 {
        // SAFETY: As in `next`.
        unsafe { (*self.hdr()).quarantined }
    }

    /// Sets the quarantined count.
    pub(crate) fn set_quarantined(self, v: u32) {
        // SAFETY: As in `next`.
        unsafe { (*self.hdr()).quarantined = v };
    }

    /// The list the slab is on.
    pub(crate) fn list(self) -> ListId {
        // SAFETY: As in `next`.
        ListId::from_raw(unsafe { (*self.hdr()).list })
    }

    /// Records the list the slab is on.
    pub(crate) fn set_list(self, l: ListId) {
        // SAFETY: As in `next`.
        unsafe { (*self.hdr()).list = l.to_raw() };
    }

    fn free_head(self) -> u32 {
        // SAFETY: As in `next`.
        unsafe { (*self.hdr()).free_head }
    }

    fn set_free_head(self, v: u32) {
        // SAFETY: As in `next`.
        unsafe { (*self.hdr()).free_head = v };
    }

    /// Objects on the free list.
    pub(crate) fn nfree(self, layout: &CacheLayout) -> u32 {
        layout
            .objects()
            .saturating_sub(self.inuse())
            .saturating_sub(self.quarantined())
    }

    /// The address of object `index`, `None` if out of range.
    pub(crate) fn object(self, layout: &CacheLayout, index: u32) -> Option<NonNull<u8>> {
        let off = layout.object_offset(index)?;
        // `off < slab_bytes`, so the result is inside the run.
        NonNull::new(self.base().as_ptr().wrapping_add(off))
    }

    /// The free-list link slot of object `index`.
    fn link(self, layout: &CacheLayout, index: u32) -> Option<*mut u32> {
        let obj = self.object(layout, index)?;
        // In bounds and 4-aligned by the layout invariant (`fp_offset + 4`
        // fits in the slot; objects are 8-aligned).
        Some(obj.as_ptr().wrapping_add(layout.fp_offset()).cast::<u32>())
    }

    fn read_link(self, layout: &CacheLayout, index: u32) -> u32 {
        match self.link(layout, index) {
            // SAFETY: The link slot is inside a free object of this live
            // slab, which belongs to the owner (type invariant). Volatile
            // because a buggy user may still scribble on a freed object.
            Some(p) => unsafe { p.read_volatile() },
            None => NO_OBJ,
        }
    }

    fn write_link(self, layout: &CacheLayout, index: u32, next: u32) {
        if let Some(p) = self.link(layout, index) {
            // SAFETY: As in `read_link`; the object is being put on the free
            // list, so it is the owner's.
            unsafe { p.write_volatile(next) };
        }
    }

    /// Takes the first object off the free list (does not touch `inuse`).
    ///
    /// If the list disagrees with the counts or a link is out of range, the
    /// rest of the list is dropped and its objects are quarantined.
    pub(crate) fn pop_free(self, layout: &CacheLayout) -> Popped {
        let head = self.free_head();
        let free = self.nfree(layout);
        if head == NO_OBJ && free == 0 {
            return Popped {
                index: None,
                lost: 0,
            };
        }
        if head >= layout.objects() || free == 0 {
            self.set_free_head(NO_OBJ);
            self.set_quarantined(self.quarantined().saturating_add(free));
            return Popped {
                index: None,
                lost: free,
            };
        }
        let next = self.read_link(layout, head);
        let next_ok = if next == NO_OBJ {
            free == 1
        } else {
            next < layout.objects() && next != head && free > 1
        };
        if next_ok {
            self.set_free_head(next);
            return Popped {
                index: Some(head),
                lost: 0,
            };
        }
        let lost = free - 1;
        self.set_free_head(NO_OBJ);
        self.set_quarantined(self.quarantined().saturating_add(lost));
        Popped {
            index: Some(head),
            lost,
        }
    }

    /// Takes up to `want` objects off the free list in one walk, passing
    /// each to `sink` (which may refuse one: the walk then stops and keeps
    /// it); counts them in `inuse`. The chain is checked as by
    /// [`SlabPtr::pop_free`]: a link out of range or pointing at itself, or
    /// a chain shorter than the count, drops the rest (quarantined, and
    /// returned as `lost`). Returns (taken, lost).
    #[inline]
    pub(crate) fn take_run(
        self,
        layout: &CacheLayout,
        want: u32,
        mut sink: impl FnMut(NonNull<u8>) -> bool,
    ) -> (u32, u32) {
        let free = self.nfree(layout);
        let want = want.min(free);
        let objects = layout.objects();
        let mut head = self.free_head();
        let mut k = 0u32;
        let mut broken = false;
        while k < want {
            let Some(obj) = self.object(layout, head) else {
                broken = true;
                break;
            };
            if !sink(obj) {
                break;
            }
            // SAFETY: The link slot is inside a free object of this live
            // slab, which belongs to the owner (type invariant); volatile
            // because a buggy user may still scribble on a freed object.
            let next = unsafe {
                obj.as_ptr()
                    .wrapping_add(layout.fp_offset())
                    .cast::<u32>()
                    .read_volatile()
            };
            k += 1;
            if next == head || (next >= objects && next != NO_OBJ) {
                // The object was fine; what follows it is not.
                head = NO_OBJ;
                broken = k < free;
                break;
            }
            head = next;
        }
        let mut lost = 0;
        if broken || (head == NO_OBJ && k < free && k == want) {
            lost = free - k;
            head = NO_OBJ;
            self.set_quarantined(self.quarantined().saturating_add(lost));
        } else if k == free {
            // The count says the list is empty now, whatever it says.
            head = NO_OBJ;
        }
        self.set_free_head(head);
        self.set_inuse(self.inuse().saturating_add(k));
        (k, lost)
    }

    /// [`SlabPtr::push_free`] for an object already known by address and
    /// index (a drain): no recomputation of the address.
    #[inline(always)]
    pub(crate) fn push_free_obj(self, layout: &CacheLayout, obj: NonNull<u8>, index: u32) {
        // SAFETY: `obj` is object `index` of this live slab (caller), being
        // put on the free list by its owner; the link slot is inside it.
        unsafe {
            obj.as_ptr()
                .wrapping_add(layout.fp_offset())
                .cast::<u32>()
                .write_volatile(self.free_head())
        };
        self.set_free_head(index);
    }

    /// Puts object `index` at the head of the free list (does not touch
    /// `inuse`).
    pub(crate) fn push_free(self, layout: &CacheLayout, index: u32) {
        self.write_link(layout, index, self.free_head());
        self.set_free_head(index);
    }

    /// The allocation bitmap word holding object `index`'s bit, and the bit.
    fn bit(self, layout: &CacheLayout, index: u32) -> Option<(&AtomicU64, u64)> {
        if index >= layout.objects() {
            return None;
        }
        let word = (index / 64) as usize;
        let ptr = self
            .base()
            .as_ptr()
            .wrapping_add(HEADER_FIXED + word * 8)
            .cast::<AtomicU64>();
        // SAFETY: `init_slab` wrote `bitmap_words(objects)` initialized,
        // 8-aligned `AtomicU64`s after the header, `word` is in range, and
        // the slab is alive while the handle is used (type invariant).
        // Shared references to atomics may coexist across CPUs.
        let word = unsafe { &*ptr };
        Some((word, 1u64 << (index % 64)))
    }

    /// Sets object `index`'s allocated bit; returns whether it was set
    /// before, `None` for an out-of-range index.
    pub(crate) fn test_and_set(self, layout: &CacheLayout, index: u32) -> Option<bool> {
        let (w, b) = self.bit(layout, index)?;
        Some(w.fetch_or(b, Ordering::AcqRel) & b != 0)
    }

    /// Clears object `index`'s allocated bit; returns whether it was set
    /// before, `None` for an out-of-range index.
    pub(crate) fn test_and_clear(self, layout: &CacheLayout, index: u32) -> Option<bool> {
        let (w, b) = self.bit(layout, index)?;
        Some(w.fetch_and(!b, Ordering::AcqRel) & b != 0)
    }

    /// Whether object `index`'s allocated bit is set.
    pub(crate) fn test(self, layout: &CacheLayout, index: u32) -> Option<bool> {
        let (w, b) = self.bit(layout, index)?;
        Some(w.load(Ordering::Acquire) & b != 0)
    }

    /// The bytes of object `index`'s whole slot (`stride` bytes, starting
    /// with the left red zone).
    ///
    /// # Safety
    ///
    /// The caller owns the object for the lifetime `'a`: it is free and the
    /// caller is the slab's owner, or the caller is the owner freeing or
    /// allocating it under the depot lock. No other reference to the slot
    /// may exist during `'a`.
    pub(crate) unsafe fn slot_mut<'a>(
        self,
        layout: &CacheLayout,
        index: u32,
    ) -> Option<&'a mut [u8]> {
        let obj = self.object(layout, index)?;
        let slot = obj.as_ptr().wrapping_sub(layout.red_left());
        // SAFETY: The slot is `stride` bytes inside the live run (layout
        // invariant) and exclusively the caller's (function contract).
        Some(unsafe { core::slice::from_raw_parts_mut(slot, layout.stride()) })
    }

    /// Finds the slab and index of an object the caller knows is a valid
    /// object of this cache.
    ///
    /// # Safety
    ///
    /// `obj` must be the address of an object of a live slab of the cache
    /// whose layout is `layout` (e.g. one validated by [`locate`] and still
    /// counted as in use), and the usual owner rules apply to the result.
    pub(crate) unsafe fn containing(
        layout: &CacheLayout,
        obj: NonNull<u8>,
    ) -> Option<(SlabPtr, u32)> {
        let off = (obj.as_ptr() as usize) & layout.slab_mask();
        let index = layout.index_of_offset(off)?;
        let base = NonNull::new(obj.as_ptr().wrapping_sub(off))?;
        // INVARIANT: By the function contract `base` is the header of a
        // live slab of this cache.
        Some((SlabPtr(base.cast()), index))
    }

    /// Unpublishes the slab: wipes its magic so that lookups starting from
    /// now on refuse pointers into it as foreign. Lookups already past the
    /// magic check are waited for (every magazine holder) before the pages
    /// are freed.
    ///
    /// # Safety
    ///
    /// The slab must have been unlinked from the depot (under its lock) with
    /// no object in use, and must be freed only after every magazine holder
    /// at the time of the wipe has let go (`cache.rs`, `release`).
    pub(crate) unsafe fn wipe(self) {
        // SAFETY: The header is live (contract) and the magic word is
        // 8-aligned; concurrent lookups only read it, so an atomic store is
        // the right way to change it under them.
        unsafe {
            let magic = addr_of_mut!((*self.hdr()).magic).cast::<AtomicU64>();
            (*magic).store(0, Ordering::Release);
        }
    }
}

/// Turns a fresh run into a slab of `layout`: writes the header, clears the
/// bitmap, threads every object onto the free list, fills the debug
/// patterns and runs the constructor (SLUB's `allocate_slab()` and
/// `setup_object()`). Called outside every lock: constructors may be slow.
///
/// # Safety
///
/// `base` must be a run of `layout.slab_bytes()` bytes aligned to that size,
/// readable and writable, and exclusively owned by the caller.
pub(crate) unsafe fn init_slab(base: NonNull<u8>, layout: &CacheLayout) -> SlabPtr {
    let hdr = base.cast::<SlabHeader>();
    // SAFETY: The run is ours and aligned far beyond the header's needs.
    unsafe {
        hdr.as_ptr().write(SlabHeader {
            magic: SLAB_MAGIC,
            cache_id: layout.cache_id(),
            next: core::ptr::null_mut(),
            prev: core::ptr::null_mut(),
            free_head: NO_OBJ,
            inuse: 0,
            quarantined: 0,
            list: ListId::None.to_raw(),
        })
    };
    let words = bitmap_words(layout.objects() as usize);
    let bitmap = base.as_ptr().wrapping_add(HEADER_FIXED).cast::<AtomicU64>();
    for w in 0..words {
        // SAFETY: The bitmap fits before `first_slot` (layout invariant)
        // and is 8-aligned (`HEADER_FIXED % 8 == 0`).
        unsafe { bitmap.add(w).write(AtomicU64::new(0)) };
    }
    // INVARIANT: The header and bitmap are initialized; the caller owns the
    // unpublished slab.
    let slab = SlabPtr(hdr);
    // Thread the free list backwards so that index 0 ends up first.
    let mut index = layout.objects();
    while index > 0 {
        index -= 1;
        if layout.debug() {
            // SAFETY: The slab is unpublished, so every object is ours.
            if let Some(slot) = unsafe { slab.slot_mut(layout, index) } {
                super::debug::init_free_slot(slot, layout);
            }
        }
        if let (Some(ctor), Some(obj)) = (layout.ctor(), slab.object(layout, index)) {
            ctor(obj);
        }
        if layout.marked() {
            if let Some(obj) = slab.object(layout, index) {
                // SAFETY: The slab is unpublished: every object is ours.
                unsafe { set_free_mark(layout, obj) };
            }
        }
        slab.push_free(layout, index);
    }
    slab
}

/// The free-mark word of object `obj` of a marked cache.
///
/// # Safety
///
/// `obj` must be an object of a live slab of a marked cache with `layout`
/// (validated by [`locate`]/[`locate_in_live`], or taken from a free list or
/// magazine), kept alive while the reference is used.
#[inline(always)]
unsafe fn mark_word<'a>(layout: &CacheLayout, obj: NonNull<u8>) -> &'a AtomicU64 {
    let _ = layout;
    // SAFETY: A marked layout puts an 8-aligned word at `MARK_OFFSET`
    // inside every object (objects are 8-aligned, at least 16 bytes); the
    // slab is live (contract). Every access to it is atomic, so shared
    // references from several CPUs may coexist.
    unsafe { &*obj.as_ptr().wrapping_add(MARK_OFFSET).cast::<AtomicU64>() }
}

/// Marks `obj` free: swaps its free mark in and returns whether it was
/// already there (a double free: the object is on a free list or in a
/// magazine). One atomic `xchg` on the object's own cache line, which its
/// user touched last; concurrent double frees see exactly one `false`.
///
/// # Safety
///
/// As for [`mark_word`]; the caller is freeing `obj` (a user's data in its
/// second word is overwritten, as a free may).
#[inline(always)]
pub(crate) unsafe fn swap_free_mark(layout: &CacheLayout, obj: NonNull<u8>) -> bool {
    let mark = layout.free_mark(obj.as_ptr() as usize);
    // SAFETY: Forwarded contract.
    unsafe { mark_word(layout, obj) }.swap(mark, Ordering::AcqRel) == mark
}

/// Writes `obj`'s free mark (a fresh slab's objects, or an object put back
/// free by the allocator itself).
///
/// # Safety
///
/// As for [`mark_word`]; `obj` is free and the caller's.
#[inline(always)]
pub(crate) unsafe fn set_free_mark(layout: &CacheLayout, obj: NonNull<u8>) {
    let mark = layout.free_mark(obj.as_ptr() as usize);
    // SAFETY: Forwarded contract.
    unsafe { mark_word(layout, obj) }.store(mark, Ordering::Relaxed);
}

/// Clears `obj`'s free mark: it is being handed to a user. A plain store
/// (the object is this CPU's: popped from its magazine or a free list).
///
/// # Safety
///
/// As for [`mark_word`]; `obj` was free and is now the caller's.
#[inline(always)]
pub(crate) unsafe fn clear_free_mark(layout: &CacheLayout, obj: NonNull<u8>) {
    // SAFETY: Forwarded contract.
    unsafe { mark_word(layout, obj) }.store(0, Ordering::Relaxed);
}

/// The base of the slab `ptr` would belong to (its run is naturally
/// aligned, so this is a mask).
#[inline(always)]
pub(crate) fn slab_base(layout: &CacheLayout, ptr: NonNull<u8>) -> usize {
    (ptr.as_ptr() as usize) & !layout.slab_mask()
}

/// Validates `ptr` as an object of the cache with `layout`, without locks.
///
/// Reads the supposed header at `ptr & !(slab_bytes - 1)` with
/// [`PageSource::read_nofault`]: unreadable memory, a wrong magic or another
/// cache's identity make the pointer [`FreeError::Foreign`]; the rest is
/// [`locate_in_live`].
///
/// The check defends against bugs, not attacks: a forged header with the
/// right magic and identity would pass.
///
/// # Safety
///
/// The caller must hold a magazine (`CacheEnv::try_with_magazine`) or the
/// depot lock for as long as it uses the returned handle without otherwise
/// knowing the slab is alive: retiring a slab wipes its magic under the
/// depot lock and then waits for every magazine holder before freeing it.
pub(crate) unsafe fn locate<S: PageSource + ?Sized>(
    src: &S,
    layout: &CacheLayout,
    ptr: NonNull<u8>,
) -> Result<(SlabPtr, u32), FreeError> {
    let base = slab_base(layout, ptr);
    let mut id = [0u8; ID_BYTES];
    if !src.read_nofault(base, &mut id) {
        return Err(FreeError::Foreign);
    }
    let [m0, m1, m2, m3, m4, m5, m6, m7, c0, c1, c2, c3, c4, c5, c6, c7] = id;
    let magic = u64::from_ne_bytes([m0, m1, m2, m3, m4, m5, m6, m7]);
    let cache_id = u64::from_ne_bytes([c0, c1, c2, c3, c4, c5, c6, c7]);
    if magic != SLAB_MAGIC || cache_id != layout.cache_id() {
        return Err(FreeError::Foreign);
    }
    // SAFETY: The run at `base` carries our magic and identity, so it is a
    // live slab of this cache, kept alive as the caller promises.
    unsafe { locate_in_live(layout, ptr) }
}

/// The object checks of [`locate`] for a pointer whose slab is known to be
/// a live slab of this cache (a magazine's hint): a pointer into the header
/// is [`FreeError::Foreign`], one that is not at `first_object + k * stride`
/// with `k < objects` is [`FreeError::Misaligned`].
///
/// # Safety
///
/// `slab_base(layout, ptr)` must be a live slab of this cache, kept alive
/// for as long as the caller uses the returned handle.
#[inline(always)]
pub(crate) unsafe fn locate_in_live(
    layout: &CacheLayout,
    ptr: NonNull<u8>,
) -> Result<(SlabPtr, u32), FreeError> {
    let off = (ptr.as_ptr() as usize) & layout.slab_mask();
    let Some(index) = layout.index_of_offset(off) else {
        return Err(if off < layout.first_slot() {
            FreeError::Foreign
        } else {
            FreeError::Misaligned
        });
    };
    let hdr = NonNull::new(ptr.as_ptr().wrapping_sub(off)).ok_or(FreeError::Foreign)?;
    // INVARIANT: A live slab of this cache (function contract).
    Ok((SlabPtr(hdr.cast()), index))
}

/// The object checks of [`locate_in_live`] alone (the fast path needs no
/// handle): `Ok` if `ptr` is at an object start of its slab's layout.
#[inline(always)]
pub(crate) fn check_object(layout: &CacheLayout, ptr: NonNull<u8>) -> Result<(), FreeError> {
    let off = (ptr.as_ptr() as usize) & layout.slab_mask();
    match layout.index_of_offset(off) {
        Some(_) => Ok(()),
        None if off < layout.first_slot() => Err(FreeError::Foreign),
        None => Err(FreeError::Misaligned),
    }
}

/// Reads the identity words of a slab header (used by tests via the
/// depot's consistency check).
pub(crate) fn header_identity(slab: SlabPtr) -> (u64, u64) {
    // SAFETY: The handle's slab is live (type invariant); these words are
    // never written while the slab is live, so shared reads are fine.
    unsafe {
        (
            addr_of!((*slab.hdr()).magic).read(),
            addr_of!((*slab.hdr()).cache_id).read(),
        )
    }
}
