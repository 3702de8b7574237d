// SPDX-License-Identifier: GPL-2.0

//! Choosing the slab order: how many pages one slab spans.
//!
//! This mirrors `calculate_order()`/`calc_slab_order()` in `mm/slub.c`.
//! A bigger slab wastes less of its tail and needs the page allocator less
//! often, but high-order runs are hard to find on a fragmented machine
//! (LDD3 ch. 8: "the allocation of large numbers of contiguous pages can
//! fail"). SLUB therefore:
//!
//! 1. wants at least `min_objects` objects per slab (SLUB derives it from
//!    the CPU count, `4 * (fls(nr_cpus) + 1)`; we use the fixed
//!    [`MIN_OBJECTS`] so the layout does not depend on the machine), but no
//!    more than fit at the maximum order;
//! 2. takes the smallest order from there up to [`SLAB_MAX_ORDER`]
//!    (`PAGE_ALLOC_COSTLY_ORDER`, 3) whose waste is at most 1/16 of the
//!    slab, then tolerates 1/8, 1/4 and finally 1/2;
//! 3. only if not even one object fits at order 3 does it go higher, to the
//!    smallest order holding one object (up to [`MAX_ORDER`]).
//!
//! One difference from SLUB: our slab metadata lives *on* the slab (a
//! header at the run's base, followed by the allocation bitmap), whereas
//! SLUB keeps it in `struct slab`/`struct page`. So "waste" here is
//! everything that is not an object slot: header + bitmap + tail. With
//! 8-byte alignment and no debugging this gives:
//!
//! | object | objects/slab | order | waste          |
//! |-------:|-------------:|------:|---------------:|
//! |     32 |          126 |     0 |   64 B (1.56%) |
//! |     64 |           63 |     0 |   64 B (1.56%) |
//! |    192 |           21 |     0 |   64 B (1.56%) |
//! |    256 |           15 |     0 |  256 B (6.25%) |
//! |   1000 |            8 |     1 |  192 B (2.34%) |
//! |   4000 |            8 |     3 |  768 B (2.34%) |
//! |   8192 |            3 |     3 | 8192 B (25.0%) |
//!
//! The 8192-byte row shows the price of an on-slab header: a page-multiple
//! object loses one whole slot to 48 bytes of header, and no order up to 3
//! does better than 1/4, so the fallback fraction accepts it (SLUB, with
//! off-slab metadata, packs 4 such objects into an order-3 slab).
//! The unit test `order_table` below checks these numbers.

use super::page_source::{
    order_bytes,
    MAX_ORDER,
    PAGE_SIZE, //
};

/// The highest order chosen when objects fit (`PAGE_ALLOC_COSTLY_ORDER`).
pub const SLAB_MAX_ORDER: u32 = 3;

/// The number of objects a slab should hold if they fit at
/// [`SLAB_MAX_ORDER`]; SLUB's default for a single CPU.
pub const MIN_OBJECTS: u32 = 8;

/// The geometry of a slab of one order for one object stride.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlabGeometry {
    /// The slab spans `2^order` pages.
    pub order: u32,
    /// The number of object slots (at least 1).
    pub objects: u32,
    /// The offset of the first slot from the slab base (header + bitmap,
    /// rounded up to the alignment).
    pub first_slot: usize,
    /// Bytes of the slab not used by object slots (header, bitmap, tail).
    pub waste: usize,
}

/// Rounds `v` up to a multiple of `align` (a power of two), `None` on
/// overflow.
pub const fn align_up(v: usize, align: usize) -> Option<usize> {
    let mask = align.wrapping_sub(1);
    match v.checked_add(mask) {
        Some(s) => Some(s & !mask),
        None => None,
    }
}

/// The size of the fixed part of the on-slab header (`slab::SlabHeader`:
/// magic, cache id, two list links, four `u32` counters), which the
/// allocation bitmap follows; `slab` asserts that the two agree. It keeps
/// the bitmap words 8-byte aligned.
pub const HEADER_FIXED: usize = 48;

/// The number of `u64` words of allocation bitmap for `objects` objects.
pub const fn bitmap_words(objects: usize) -> usize {
    objects / 64 + if objects & 63 != 0 { 1 } else { 0 }
}

/// The size of the on-slab header for a slab of `objects` objects: the
/// fixed part followed by one bit per object.
pub const fn header_bytes(objects: usize) -> usize {
    // Cannot overflow: objects <= PAGE_SIZE << MAX_ORDER.
    HEADER_FIXED + 8 * bitmap_words(objects)
}

/// Returns where the first slot goes and how many bytes `n` slots need, if
/// they fit in `slab` bytes.
fn fits(n: usize, stride: usize, align: usize, slab: usize) -> Option<usize> {
    let first = align_up(header_bytes(n), align)?;
    let need = first.checked_add(n.checked_mul(stride)?)?;
    if need <= slab {
        Some(first)
    } else {
        None
    }
}

/// The geometry of an order-`order` slab of `stride`-byte slots aligned to
/// `align`, or `None` if not even one slot fits.
pub fn geometry(stride: usize, align: usize, order: u32) -> Option<SlabGeometry> {
    let slab = order_bytes(order)?;
    if stride == 0 || !align.is_power_of_two() || align > PAGE_SIZE {
        return None;
    }
    // `fits` is monotone in n: binary search the largest fitting count.
    let mut lo = 0usize;
    let mut hi = slab / stride;
    while lo < hi {
        // Cannot overflow: hi <= slab.
        let mid = hi - (hi - lo) / 2;
        if fits(mid, stride, align, slab).is_some() {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let first_slot = fits(lo, stride, align, slab)?;
    let objects = u32::try_from(lo).ok()?;
    if objects == 0 {
        return None;
    }
    let waste = slab.checked_sub(lo.checked_mul(stride)?)?;
    Some(SlabGeometry {
        order,
        objects,
        first_slot,
        waste,
    })
}

/// Chooses the slab geometry for `stride`-byte slots aligned to `align`,
/// following SLUB's `calculate_order()` (see the module documentation).
///
/// Returns `None` if one slot does not fit even at [`MAX_ORDER`].
pub fn choose(stride: usize, align: usize) -> Option<SlabGeometry> {
    let at_max = geometry(stride, align, SLAB_MAX_ORDER);
    let Some(at_max) = at_max else {
        // Not even one object at order 3: the smallest order holding one.
        let mut order = SLAB_MAX_ORDER + 1;
        while order <= MAX_ORDER {
            if let Some(g) = geometry(stride, align, order) {
                return Some(g);
            }
            order += 1;
        }
        return None;
    };
    let min_objects = if at_max.objects < MIN_OBJECTS {
        at_max.objects
    } else {
        MIN_OBJECTS
    };
    let mut min_order = 0;
    while min_order < SLAB_MAX_ORDER {
        match geometry(stride, align, min_order) {
            Some(g) if g.objects >= min_objects => break,
            _ => min_order += 1,
        }
    }
    let mut fraction = 16;
    while fraction > 1 {
        let mut order = min_order;
        while order <= SLAB_MAX_ORDER {
            if let (Some(g), Some(bytes)) = (geometry(stride, align, order), order_bytes(order)) {
                if g.waste <= bytes / fraction {
                    return Some(g);
                }
            }
            order += 1;
        }
        fraction /= 2;
    }
    Some(at_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_table() {
        // (object size, objects per slab, order, waste bytes); see the
        // table in the module documentation.
        let table = [
            (32, 126, 0, 64),
            (64, 63, 0, 64),
            (192, 21, 0, 64),
            (256, 15, 0, 256),
            (1000, 8, 1, 192),
            (4000, 8, 3, 768),
            (8192, 3, 3, 8192),
        ];
        for (size, objects, order, waste) in table {
            let g = choose(size, 8);
            assert_eq!(
                g.map(|g| (g.objects, g.order, g.waste)),
                Some((objects, order, waste)),
                "size {size}"
            );
        }
    }

    #[test]
    fn large_objects_go_above_order_3() {
        let g = choose(40_000, 8).map(|g| (g.order, g.objects));
        assert_eq!(g, Some((4, 1)));
        assert_eq!(choose(PAGE_SIZE << MAX_ORDER, 8), None);
    }

    #[test]
    fn header_never_overlaps_objects() {
        for stride in (8..=9000).step_by(8) {
            for align in [8, 64, 4096] {
                if let Some(g) = choose(stride, align) {
                    let n = g.objects as usize;
                    assert!(g.first_slot >= header_bytes(n));
                    assert_eq!(g.first_slot % align, 0);
                    assert!(g.first_slot + n * stride <= PAGE_SIZE << g.order);
                }
            }
        }
    }
}
