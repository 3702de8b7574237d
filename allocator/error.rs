// SPDX-License-Identifier: GPL-2.0

//! The errors of the allocator core, shared by its rooms (the slab, the
//! depot and the magazines refuse frees; the cache fails allocations and
//! destroys). Typed, never logged here: the glue decides what to say.

/// Why an allocation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// The page source could not supply a slab.
    NoMemory,
    /// The cache has been destroyed.
    Destroyed,
}

/// Why a free was refused. The object (if any) is left untouched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// Not an object of this cache (unreadable, another cache's slab, not a
    /// slab at all, or inside a slab header).
    Foreign,
    /// Inside one of this cache's slabs but not at an object start.
    Misaligned,
    /// The object is not allocated: double free (or never allocated).
    DoubleFree,
    /// Debug caches: the object's red zone was overwritten; not freed.
    RedZone,
}

/// Why a destroy was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestroyError {
    /// Objects are still allocated; the cache is left intact.
    Busy {
        /// Objects still allocated.
        live: usize,
    },
}
