// SPDX-License-Identifier: GPL-2.0

//! The registries of our caches, our pools and the kernel's caches: a
//! bounded list of entries created on first use, each shared through
//! counted references ([`Ref`]).
//!
//! A full registry reuses the slot of an entry nobody uses any more (no
//! [`Ref`] outside the registry, and the entry itself says it is idle: no
//! live objects, or a destroyed pool), so ENOSPC means "every entry is in
//! use", never "the module has been up a while". The new entry takes the
//! old one's index: indexes of live entries never move, and entry `i` is
//! what `*_INFO` index `i` and fault-injection owner `i + 1` name.

use core::ops::Deref;
use core::sync::atomic::{
    AtomicUsize,
    Ordering, //
};
use kernel::{
    prelude::*,
    sync::Arc, //
};

/// An entry of a registry.
pub(crate) trait Entry: Send + Sync + Sized {
    /// The count of [`Ref`]s to this entry.
    fn users(&self) -> &AtomicUsize;

    /// Whether the entry may be dropped when nobody uses it (for instance:
    /// it holds no live object).
    fn idle(&self) -> bool;
}

/// A counted reference to a registry entry.
///
/// # Invariants
///
/// While a `Ref` exists, `users()` of its entry counts it.
pub(crate) struct Ref<T: Entry>(Arc<T>);

impl<T: Entry> Ref<T> {
    fn new(entry: &Arc<T>) -> Self {
        entry.users().fetch_add(1, Ordering::AcqRel);
        // INVARIANT: Counted just now.
        Self(entry.clone())
    }
}

impl<T: Entry> Clone for Ref<T> {
    fn clone(&self) -> Self {
        Self::new(&self.0)
    }
}

impl<T: Entry> Drop for Ref<T> {
    fn drop(&mut self) {
        self.0.users().fetch_sub(1, Ordering::AcqRel);
    }
}

impl<T: Entry> Deref for Ref<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// The entry `find` picks, or a new one from `create(index)` in a free or
/// reusable slot of `entries` (at most `max`); ENOSPC if every entry is in
/// use. The caller holds the registry's lock, so no [`Ref`] can be made to
/// an entry between the check that it is unused and its removal.
pub(crate) fn get_or_create<T: Entry>(
    entries: &mut KVec<Arc<T>>,
    max: usize,
    find: impl Fn(&T) -> bool,
    create: impl FnOnce(u32) -> Result<Arc<T>>,
) -> Result<Ref<T>> {
    if let Some(e) = entries.iter().find(|e| find(e)) {
        return Ok(Ref::new(e));
    }
    if entries.len() < max {
        let entry = create(entries.len() as u32)?;
        let r = Ref::new(&entry);
        entries.push(entry, GFP_KERNEL)?;
        return Ok(r);
    }
    let index = entries
        .iter()
        .position(|e| e.users().load(Ordering::Acquire) == 0 && e.idle())
        .ok_or(ENOSPC)?;
    let entry = create(index as u32)?;
    let r = Ref::new(&entry);
    if let Some(slot) = entries.get_mut(index) {
        // The old entry is dropped here: nothing but the registry held it.
        *slot = entry;
    }
    Ok(r)
}

/// Entry `index` as a [`Ref`], ENOENT past the last one.
pub(crate) fn nth<T: Entry>(entries: &KVec<Arc<T>>, index: u32) -> Result<Ref<T>> {
    entries.get(index as usize).map(Ref::new).ok_or(ENOENT)
}

/// References to every entry (to work on them without the registry lock).
pub(crate) fn all<T: Entry>(entries: &KVec<Arc<T>>) -> Result<KVec<Ref<T>>> {
    let mut v = KVec::with_capacity(entries.len(), GFP_KERNEL)?;
    for e in entries.iter() {
        v.push(Ref::new(e), GFP_KERNEL)?;
    }
    Ok(v)
}
