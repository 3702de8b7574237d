// SPDX-License-Identifier: GPL-2.0

//! The immutable part of a cache: what `kmem_cache_create()` computes.
//!
//! LDD3 ch. 8 ("Lookaside Caches") lists the inputs: a name, the object
//! size, an offset/alignment, flags (`SLAB_HWCACHE_ALIGN`, the debugging
//! flags `SLAB_POISON` and `SLAB_RED_ZONE`) and an optional constructor.
//! From them we derive the per-object slot, mirroring `calculate_sizes()`
//! in `mm/slub.c`:
//!
//! ```text
//!  slot (stride bytes, aligned to `align`)
//!  +-----------+-----------------+------------+---------+-----+
//!  | left red  | object (size)   | right red  | freeptr | pad |
//!  | zone      |                 | zone       | (opt.)  |     |
//!  +-----------+-----------------+------------+---------+-----+
//!  ^ slot      ^ object pointer handed out
//! ```
//!
//! * The left red zone is `align` bytes (so the object stays aligned, like
//!   SLUB's `red_left_pad`); the right one runs from the object's end to the
//!   next 8-byte boundary plus 8 bytes. Both exist only with `red_zone`.
//! * The free-list link (a `u32` object index) normally lives in the first
//!   word of a free object. With poisoning or a constructor it must not
//!   (the poison pattern, resp. the constructed state, must survive while
//!   the object is free), so, like SLUB, it moves to its own word after the
//!   right red zone. Objects smaller than the link get the same treatment.
//! * Poisoning is ignored for caches with a constructor, as in SLUB.
//! * A cache without debugging and without a constructor (a *marked* cache,
//!   the only kind whose objects go through the per-CPU magazines) keeps a
//!   *free mark* in the second word of every free object: a value derived
//!   from the cache identity and the object address, swapped in atomically
//!   by every free and cleared by every allocation (see `slab.rs`). The
//!   swap's old value tells a double free from a first one without touching
//!   any shared metadata (SLUB's `SLAB_FREELIST_HARDENED` encodes its free
//!   pointer the same way, for another reason). Such objects are at least
//!   16 bytes: the link and the mark must both fit.

use core::ptr::NonNull;
use core::sync::atomic::{
    AtomicU64,
    Ordering, //
};

use super::order::{
    align_up,
    choose, //
};
use super::page_source::{
    order_bytes,
    MAX_ORDER,
    PAGE_SIZE, //
};

/// The inverse of odd `d` modulo `2^64` (`d * inv == 1`): Newton's
/// iteration `x = x * (2 - d * x)` doubles the correct low bits each step,
/// and `x = d` is right to 3 bits (`d * d == 1 mod 8` for odd `d`), so five
/// steps give 96 >= 64.
const fn inverse_mod_2_64(d: u64) -> u64 {
    let mut x = d;
    let mut i = 0;
    while i < 5 {
        x = x.wrapping_mul(2u64.wrapping_sub(d.wrapping_mul(x)));
        i += 1;
    }
    x
}

const _: () = assert!(PAGE_SIZE << MAX_ORDER <= 1 << 22);

/// Where a marked cache keeps an object's free mark, from the object start.
pub const MARK_OFFSET: usize = 8;

/// The minimum object alignment (a pointer, as in SLUB).
pub const MIN_ALIGN: usize = 8;

/// The alignment `hwcache_align` asks for (`cache_line_size()` on x86).
pub const CACHE_LINE: usize = 64;

/// The size of each red zone's guaranteed part past the object.
pub const RED_ZONE_MIN: usize = 8;

/// The longest cache name kept, in bytes (`/proc/slabinfo` prints 17+).
pub const NAME_LEN: usize = 32;

/// A cache object constructor, run once on every object when its slab is
/// created (the `ctor` of `kmem_cache_create`).
pub type Ctor = fn(NonNull<u8>);

/// A fixed-size cache name (no allocation in the core).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheName {
    bytes: [u8; NAME_LEN],
    len: usize,
}

impl CacheName {
    /// Makes a name from the first [`NAME_LEN`] bytes of `name`.
    pub fn new(name: &[u8]) -> Self {
        let mut bytes = [0u8; NAME_LEN];
        let mut len = 0;
        for (dst, src) in bytes.iter_mut().zip(name.iter()) {
            *dst = *src;
            len += 1;
        }
        Self { bytes, len }
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }
}

/// Cache creation flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheFlags {
    /// `SLAB_HWCACHE_ALIGN`: align objects to a cache line.
    pub hwcache_align: bool,
    /// `SLAB_POISON` (slub_debug=P): fill free objects with `0x6b...0xa5`.
    pub poison: bool,
    /// `SLAB_RED_ZONE` (slub_debug=Z): guard bytes around each object.
    pub red_zone: bool,
}

/// What the creator of a cache asks for.
#[derive(Clone, Copy, Debug)]
pub struct CacheConfig {
    /// The cache name.
    pub name: CacheName,
    /// The object size in bytes (1 ..).
    pub size: usize,
    /// The required alignment (a power of two up to `PAGE_SIZE`; 0 means
    /// the default [`MIN_ALIGN`]).
    pub align: usize,
    /// Creation flags.
    pub flags: CacheFlags,
    /// Optional constructor.
    pub ctor: Option<Ctor>,
}

/// Why a cache could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateError {
    /// The object size is zero.
    BadSize,
    /// The alignment is not a power of two or exceeds `PAGE_SIZE`.
    BadAlign,
    /// One object does not fit in a slab of `MAX_ORDER`.
    TooLarge,
}

/// Source of per-cache identities.
static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

/// The immutable layout of a cache.
///
/// # Invariants
///
/// Built only by [`CacheLayout::new`], so: `slab_bytes == PAGE_SIZE <<
/// order` is a power of two; `align` is a power of two in `8..=PAGE_SIZE`;
/// `stride` is a non-zero multiple of `align`; `objects >= 1`;
/// `first_slot` is a multiple of `align`, at least the header plus bitmap
/// size, and `first_slot + objects * stride <= slab_bytes`;
/// `red_left + size <= red_right_end <= stride`, `red_left` a multiple of
/// `align`; `fp_offset + 4 <= stride - red_left` and `fp_offset` is a
/// multiple of 4 (8 when external); `cache_id` is odd, hence never zero;
/// when `marked`, `fp_offset == 0` and `MARK_OFFSET + 8 <= stride`.
#[derive(Clone, Copy, Debug)]
pub struct CacheLayout {
    name: CacheName,
    size: usize,
    align: usize,
    stride: usize,
    order: u32,
    slab_bytes: usize,
    objects: u32,
    first_slot: usize,
    waste: usize,
    red_left: usize,
    red_right_end: usize,
    fp_offset: usize,
    /// The inverse modulo `2^64` of the stride's odd part, and the
    /// stride's trailing zero bits: object indices by one multiplication
    /// (see [`CacheLayout::index_of_offset`]).
    stride_inv: u64,
    stride_tz: u32,
    /// `first_slot + red_left`.
    first_object: usize,
    marked: bool,
    poison: bool,
    red_zone: bool,
    hwcache_align: bool,
    ctor: Option<Ctor>,
    cache_id: u64,
}

impl CacheLayout {
    /// Computes the layout for `cfg` (`kmem_cache_create()` minus the
    /// allocations) and gives the cache a fresh identity.
    pub fn new(cfg: &CacheConfig) -> Result<Self, CreateError> {
        if cfg.size == 0 {
            return Err(CreateError::BadSize);
        }
        if cfg.size > order_bytes(MAX_ORDER).unwrap_or(0) {
            return Err(CreateError::TooLarge);
        }
        let req = if cfg.align == 0 { MIN_ALIGN } else { cfg.align };
        if !req.is_power_of_two() || req > PAGE_SIZE {
            return Err(CreateError::BadAlign);
        }
        let mut align = req.max(MIN_ALIGN);
        if cfg.flags.hwcache_align {
            align = align.max(CACHE_LINE);
        }
        let poison = cfg.flags.poison && cfg.ctor.is_none();
        let red_zone = cfg.flags.red_zone;
        let red_left = if red_zone { align } else { 0 };
        let too_large = CreateError::TooLarge;
        let obj_end = red_left.checked_add(cfg.size).ok_or(too_large)?;
        let mut inner = align_up(obj_end, 8).ok_or(too_large)?;
        if red_zone {
            inner = inner.checked_add(RED_ZONE_MIN).ok_or(too_large)?;
        }
        let red_right_end = if red_zone { inner } else { obj_end };
        let marked = !poison && !red_zone && cfg.ctor.is_none();
        if marked {
            // The link (offset 0) and the free mark (`MARK_OFFSET`) both
            // live inside the free object.
            inner = inner.max(MARK_OFFSET + 8);
        }
        // The link is a `u32`: an object smaller than that cannot hold it
        // without spilling into the red zone.
        let fp_offset = if !marked && (poison || cfg.ctor.is_some() || cfg.size < 4) {
            // Own word after the right red zone; `inner >= red_left`.
            let off = inner - red_left;
            inner = inner.checked_add(8).ok_or(too_large)?;
            off
        } else {
            0
        };
        let stride = align_up(inner, align).ok_or(too_large)?;
        let geo = choose(stride, align).ok_or(too_large)?;
        let slab_bytes = order_bytes(geo.order).ok_or(too_large)?;
        // Odd, so never 0 (the value a wiped header carries).
        let seq = NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed);
        let cache_id = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        // INVARIANT: Checked above and by `choose`/`geometry`.
        Ok(Self {
            name: cfg.name,
            size: cfg.size,
            align,
            stride,
            order: geo.order,
            slab_bytes,
            objects: geo.objects,
            first_slot: geo.first_slot,
            waste: geo.waste,
            red_left,
            red_right_end,
            fp_offset,
            stride_inv: inverse_mod_2_64((stride >> stride.trailing_zeros()) as u64),
            stride_tz: stride.trailing_zeros(),
            first_object: geo.first_slot + red_left,
            marked,
            poison,
            red_zone,
            hwcache_align: cfg.flags.hwcache_align,
            ctor: cfg.ctor,
            cache_id,
        })
    }

    /// The cache name.
    pub fn name(&self) -> &[u8] {
        self.name.as_bytes()
    }
    /// The object size requested.
    pub fn size(&self) -> usize {
        self.size
    }
    /// The effective object alignment.
    pub fn align(&self) -> usize {
        self.align
    }
    /// The distance between consecutive slots.
    pub fn stride(&self) -> usize {
        self.stride
    }
    /// The slab order.
    pub fn order(&self) -> u32 {
        self.order
    }
    /// Pages per slab.
    pub fn pages_per_slab(&self) -> usize {
        1usize << self.order
    }
    /// Bytes per slab (`PAGE_SIZE << order`).
    #[inline(always)]
    pub fn slab_bytes(&self) -> usize {
        self.slab_bytes
    }
    /// Objects per slab.
    pub fn objects(&self) -> u32 {
        self.objects
    }
    /// Offset of the first slot from the slab base.
    pub fn first_slot(&self) -> usize {
        self.first_slot
    }
    /// Offset of the first object from the slab base.
    #[inline(always)]
    pub fn first_object(&self) -> usize {
        self.first_object
    }
    /// `log2(slab_bytes)`.
    #[inline(always)]
    pub fn slab_shift(&self) -> u32 {
        self.slab_bytes.trailing_zeros()
    }
    /// `slab_bytes - 1`: masks an address to its offset in the slab.
    #[inline(always)]
    pub fn slab_mask(&self) -> usize {
        // `slab_bytes` is a power of two, at least a page (invariant).
        self.slab_bytes.wrapping_sub(1)
    }
    /// Bytes per slab not used by slots.
    pub fn waste(&self) -> usize {
        self.waste
    }
    /// The left red zone size (0 without red zoning).
    pub fn red_left(&self) -> usize {
        self.red_left
    }
    /// The end of the right red zone, relative to the slot.
    pub fn red_right_end(&self) -> usize {
        self.red_right_end
    }
    /// The free-list link offset relative to the object.
    pub fn fp_offset(&self) -> usize {
        self.fp_offset
    }
    /// Whether free objects are poisoned.
    pub fn poison(&self) -> bool {
        self.poison
    }
    /// Whether objects have red zones.
    pub fn red_zone(&self) -> bool {
        self.red_zone
    }
    /// Whether `SLAB_HWCACHE_ALIGN` was asked for.
    pub fn hwcache_align(&self) -> bool {
        self.hwcache_align
    }
    /// Whether this is a debug cache.
    pub fn debug(&self) -> bool {
        self.poison || self.red_zone
    }
    /// Whether free objects carry the free mark (no debugging, no
    /// constructor): only such caches use the per-CPU magazines; the others
    /// serve every operation under the depot lock, with the bitmap.
    pub fn marked(&self) -> bool {
        self.marked
    }
    /// The free mark of the object at `addr` (odd, hence never the 0 an
    /// allocation leaves).
    #[inline(always)]
    pub fn free_mark(&self, addr: usize) -> u64 {
        self.cache_id ^ (addr as u64)
    }
    /// The constructor.
    pub fn ctor(&self) -> Option<Ctor> {
        self.ctor
    }
    /// The identity written into every slab header of this cache.
    pub fn cache_id(&self) -> u64 {
        self.cache_id
    }

    /// The offset of object `index` from its slab base, `None` if
    /// `index >= objects`. Inlined: every slab run and refill calls it
    /// once per object.
    #[inline(always)]
    pub fn object_offset(&self, index: u32) -> Option<usize> {
        if index >= self.objects {
            return None;
        }
        // Cannot overflow: index < objects and the invariant bounds
        // first_slot + objects * stride by slab_bytes.
        Some(self.first_object() + index as usize * self.stride)
    }

    /// The object index for offset `off` from the slab base, `None` if it is
    /// not the start of an object. No division, one multiplication: with
    /// `stride = d << k` (`d` odd), `rel = off - first_object` and
    /// `q = rotr(rel * d^-1 mod 2^64, k)`, `q` is `rel / stride` when
    /// `stride` divides `rel`, and otherwise at least `2^(64-k) / d`, past
    /// every index: the low `k` bits of a `rel` that `2^k` does not divide
    /// rotate to the top, and multiplication by `d^-1` maps the multiples of
    /// `d` below `2^(64-k)` onto `0..2^(64-k)/d`, so everything else lands
    /// above (the divisibility test of Granlund and Montgomery, "Division by
    /// invariant integers using multiplication", 1994, which compilers use
    /// for `n % d == 0`; SLUB's `obj_to_index()` divides by a reciprocal).
    /// So `q < objects` says both "an object start" and "in range", and a
    /// wrapped `rel` (`off < first_object`) is refused by the same compare.
    #[inline(always)]
    pub fn index_of_offset(&self, off: usize) -> Option<u32> {
        let rel = off.wrapping_sub(self.first_object) as u64;
        let q = rel
            .wrapping_mul(self.stride_inv)
            .rotate_right(self.stride_tz);
        if q < u64::from(self.objects) {
            // `q < objects <= u32::MAX`: the cast is exact.
            Some(q as u32)
        } else {
            None
        }
    }
}
