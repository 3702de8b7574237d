// SPDX-License-Identifier: GPL-2.0

//! Debug checks: poisoning and red zones (`slub_debug=P` and `=Z`).
//!
//! LDD3 ch. 8 mentions `SLAB_POISON` ("fill the slab with a known value,
//! 0xa5a5a5a5, to catch references to uninitialized memory") and
//! `SLAB_RED_ZONE` ("pad each object with red zones to detect buffer
//! overruns"). Today's SLUB (`mm/slub.c`, `include/linux/poison.h`) uses:
//!
//! * `POISON_FREE` (0x6b) over a free object and `POISON_END` (0xa5) in its
//!   last byte; checked when the object is allocated again. A mismatch
//!   means someone wrote to the object after freeing it.
//! * `SLUB_RED_INACTIVE` (0xbb) in the red zones of a free object and
//!   `SLUB_RED_ACTIVE` (0xcc) in those of an allocated one; checked on free
//!   (overrun of a live object) and on allocation (write into a free slot's
//!   guard bytes).
//!
//! Our policy on a detected corruption (counted in [`super::CacheStats`]):
//!
//! * on allocation (poison or inactive red zone damaged) the object is
//!   **quarantined**: withdrawn from the free list for good and never handed
//!   out; the allocation carries on with the next object. Its allocated bit
//!   stays clear, so a late free of it is refused as a double free. SLUB
//!   instead marks the whole slab full ("Marking all objects used"); we only
//!   lose one object. Quarantined objects return to the page allocator
//!   when their slab becomes empty and is shrunk, or at destroy.
//! * on free (active red zone damaged) the free is **refused** with
//!   `FreeError::RedZone` and the object stays allocated, like SLUB's
//!   "Object ... not freed" in `free_debug_processing()`; the caller may
//!   repair and retry, or leak it.
//!
//! Debug caches bypass the per-CPU magazines (as SLUB's debug caches bypass
//! the per-CPU fast path) so that every allocation and free is checked, in
//! order, under the depot lock. Caches with a constructor are never
//! poisoned: the constructed state must survive a free.
//!
//! The functions here work on byte slices handed out by `slab.rs` and are
//! safe code.

use super::layout::CacheLayout;

/// `POISON_FREE`: the fill of a free object.
pub const POISON_FREE: u8 = 0x6b;
/// `POISON_END`: the last byte of a free object.
pub const POISON_END: u8 = 0xa5;
/// `SLUB_RED_INACTIVE`: red zones of a free object.
pub const RED_INACTIVE: u8 = 0xbb;
/// `SLUB_RED_ACTIVE`: red zones of an allocated object.
pub const RED_ACTIVE: u8 = 0xcc;

/// The object part of a slot.
fn object_mut<'a>(slot: &'a mut [u8], layout: &CacheLayout) -> &'a mut [u8] {
    let start = layout.red_left();
    let end = start.saturating_add(layout.size());
    slot.get_mut(start..end).unwrap_or(&mut [])
}

/// Fills a free object with the poison pattern.
pub(crate) fn poison(slot: &mut [u8], layout: &CacheLayout) {
    let obj = object_mut(slot, layout);
    obj.fill(POISON_FREE);
    if let Some(last) = obj.last_mut() {
        *last = POISON_END;
    }
}

/// Whether a free object still carries the poison pattern intact.
pub(crate) fn poison_intact(slot: &mut [u8], layout: &CacheLayout) -> bool {
    let obj = object_mut(slot, layout);
    match obj.split_last() {
        Some((last, body)) => *last == POISON_END && body.iter().all(|b| *b == POISON_FREE),
        None => true,
    }
}

/// Sets both red zones of a slot to `val`.
pub(crate) fn set_red_zones(slot: &mut [u8], layout: &CacheLayout, val: u8) {
    if let Some(left) = slot.get_mut(..layout.red_left()) {
        left.fill(val);
    }
    let right_start = layout.red_left().saturating_add(layout.size());
    if let Some(right) = slot.get_mut(right_start..layout.red_right_end()) {
        right.fill(val);
    }
}

/// Whether both red zones of a slot hold `val` only.
pub(crate) fn red_zones_intact(slot: &[u8], layout: &CacheLayout, val: u8) -> bool {
    let left_ok = slot
        .get(..layout.red_left())
        .is_some_and(|z| z.iter().all(|b| *b == val));
    let right_start = layout.red_left().saturating_add(layout.size());
    let right_ok = slot
        .get(right_start..layout.red_right_end())
        .is_some_and(|z| z.iter().all(|b| *b == val));
    left_ok && right_ok
}

/// Prepares a slot of a fresh slab (SLUB's `init_object()` with
/// `SLUB_RED_INACTIVE`).
pub(crate) fn init_free_slot(slot: &mut [u8], layout: &CacheLayout) {
    if layout.red_zone() {
        set_red_zones(slot, layout, RED_INACTIVE);
    }
    if layout.poison() {
        poison(slot, layout);
    }
}

/// The result of checking a free object before handing it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AllocCheck {
    /// Intact: it may be handed out.
    Ok,
    /// The poison was overwritten (use after free).
    Poison,
    /// An inactive red zone was overwritten.
    RedZone,
}

/// Checks a free object about to be allocated and, if intact, marks its
/// red zones active.
pub(crate) fn check_alloc(slot: &mut [u8], layout: &CacheLayout) -> AllocCheck {
    if layout.poison() && !poison_intact(slot, layout) {
        return AllocCheck::Poison;
    }
    if layout.red_zone() {
        if !red_zones_intact(slot, layout, RED_INACTIVE) {
            return AllocCheck::RedZone;
        }
        set_red_zones(slot, layout, RED_ACTIVE);
    }
    AllocCheck::Ok
}

/// Checks an allocated object being freed; if intact, poisons it and marks
/// its red zones inactive. Returns `false` on a red-zone violation (the
/// slot is then left untouched).
pub(crate) fn check_free(slot: &mut [u8], layout: &CacheLayout) -> bool {
    if layout.red_zone() {
        if !red_zones_intact(slot, layout, RED_ACTIVE) {
            return false;
        }
        set_red_zones(slot, layout, RED_INACTIVE);
    }
    if layout.poison() {
        poison(slot, layout);
    }
    true
}
