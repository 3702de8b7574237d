// SPDX-License-Identifier: GPL-2.0

//! The handle table of one open file: its live lab allocations.
//!
//! A handle is `generation << 16 | (slot + 1)`, so 0 never names anything
//! and a freed handle never names a later allocation: each reuse of a slot
//! bumps its generation, and a slot whose generation would wrap is retired
//! for good, so a handle can never alias another. A stale, foreign or
//! made-up handle gets EINVAL, and no double free can come from userspace.
//!
//! A `KREALLOC` takes its entry out of the table first ([`LabTable::take`]),
//! leaving the slot reserved: a `FREE`, `FREE_ALL` or second `KREALLOC` of the
//! same handle meanwhile finds nothing (EINVAL), and the slot is not reused.
//! The realloc then puts the entry back ([`LabTable::restore`]) or releases
//! the slot ([`LabTable::release`]).

use kernel::prelude::*;

use super::budget::Charge;
use super::memory::LabMem;
use crate::params::LAB_MAX_HANDLES;

/// One live allocation of a file.
pub(crate) struct Entry {
    /// The memory; freed when the entry is dropped.
    pub(crate) mem: LabMem,
    /// Its share of the budgets; given back after the memory.
    pub(crate) charge: Charge,
    /// Lab backend.
    pub(crate) backend: u32,
    /// Bytes asked for.
    pub(crate) requested: u64,
    /// Usable bytes.
    pub(crate) actual: u64,
    /// Zone of the first page.
    pub(crate) zone: u32,
    /// Page order asked for.
    pub(crate) order: u32,
}

/// A slot of the handle table.
#[derive(Default)]
struct Slot {
    generation: u16,
    entry: Option<Entry>,
    /// Taken out by a realloc in progress: neither free nor reusable.
    reserved: bool,
    /// The generation ran out: never used again.
    retired: bool,
}

/// Limits of one file's table, from module parameters.
#[derive(Clone, Copy)]
pub(crate) struct LabLimits {
    /// Live handles per open file.
    pub(crate) max_handles: usize,
    /// Bytes held per open file, and the largest single allocation with BIG.
    pub(crate) max_bytes: u64,
}

/// The handle table of one open file.
#[derive(Default)]
pub(crate) struct LabTable {
    slots: KVec<Slot>,
    live: usize,
    bytes: u64,
}

impl LabTable {
    /// Live handles.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Whether `more` bytes in `count` more handles fit the file's limits:
    /// E2BIG past the bytes, ENOSPC past the handles.
    pub(crate) fn check_room(&self, limits: LabLimits, count: usize, more: u64) -> Result {
        match self.bytes.checked_add(more) {
            Some(total) if total <= limits.max_bytes => {}
            _ => return Err(E2BIG),
        }
        if self.live.saturating_add(count) > limits.max_handles {
            return Err(ENOSPC);
        }
        Ok(())
    }

    /// Adds `entry`; returns its handle.
    pub(crate) fn insert(&mut self, entry: Entry, limits: LabLimits) -> Result<u32> {
        self.check_room(limits, 1, entry.actual)?;
        let free = |s: &Slot| s.entry.is_none() && !s.reserved && !s.retired;
        let index = match self.slots.iter().position(free) {
            Some(i) => i,
            None if self.slots.len() < LAB_MAX_HANDLES as usize => {
                self.slots.push(Slot::default(), GFP_KERNEL)?;
                self.slots.len() - 1
            }
            None => return Err(ENOSPC),
        };
        let slot = self.slots.get_mut(index).ok_or(EINVAL)?;
        slot.generation = slot.generation.wrapping_add(1);
        if slot.generation == u16::MAX {
            // The last generation this slot can have: retire it once freed.
            slot.retired = true;
        }
        self.bytes += entry.actual;
        slot.entry = Some(entry);
        self.live += 1;
        Ok(u32::from(slot.generation) << 16 | (index as u32 + 1))
    }

    fn slot_of(&mut self, handle: u32) -> Option<&mut Slot> {
        let index = (handle & 0xffff).checked_sub(1)? as usize;
        let slot = self.slots.get_mut(index)?;
        (slot.entry.is_some() && u32::from(slot.generation) == handle >> 16).then_some(slot)
    }

    /// The entry of `handle`, if it is live.
    pub(crate) fn get(&mut self, handle: u32) -> Option<&Entry> {
        self.slot_of(handle)?.entry.as_ref()
    }

    /// Takes the entry of `handle` out (the caller frees it by dropping it).
    pub(crate) fn remove(&mut self, handle: u32) -> Result<Entry> {
        let entry = self
            .slot_of(handle)
            .and_then(|s| s.entry.take())
            .ok_or(EINVAL)?;
        self.live -= 1;
        self.bytes -= entry.actual;
        Ok(entry)
    }

    /// Takes the entry of `handle` out and reserves its slot (a realloc).
    pub(crate) fn take(&mut self, handle: u32) -> Result<Entry> {
        let entry = self.remove(handle)?;
        if let Some(slot) = self.slots.get_mut(slot_index(handle)) {
            slot.reserved = true;
        }
        Ok(entry)
    }

    /// Puts back what [`Self::take`] took: `handle` is valid again.
    pub(crate) fn restore(&mut self, handle: u32, entry: Entry) {
        if let Some(slot) = self.slots.get_mut(slot_index(handle)) {
            slot.reserved = false;
            self.live += 1;
            self.bytes += entry.actual;
            slot.entry = Some(entry);
        }
    }

    /// Ends what [`Self::take`] began with a new entry in the same slot,
    /// under a new handle (the old one names nothing any more); returns it.
    /// Cannot fail: the slot was kept for it, and the caller checked the
    /// room with [`Self::check_room`] while the old entry was out.
    pub(crate) fn replace(&mut self, handle: u32, entry: Entry) -> u32 {
        let index = slot_index(handle);
        let Some(slot) = self.slots.get_mut(index) else {
            return 0;
        };
        slot.reserved = false;
        slot.generation = slot.generation.wrapping_add(1);
        if slot.generation == u16::MAX {
            slot.retired = true;
        }
        self.live += 1;
        self.bytes += entry.actual;
        slot.entry = Some(entry);
        u32::from(slot.generation) << 16 | (index as u32 + 1)
    }

    /// Frees everything; returns how many. Slots keep their generations, so
    /// no handle freed here becomes valid again.
    pub(crate) fn clear(&mut self) -> usize {
        let n = self.live;
        for slot in self.slots.iter_mut() {
            drop(slot.entry.take());
        }
        self.live = 0;
        self.bytes = 0;
        n
    }

    /// Live entries with their handles, in slot order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (u32, &Entry)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            let handle = u32::from(s.generation) << 16 | (i as u32 + 1);
            s.entry.as_ref().map(|e| (handle, e))
        })
    }
}

/// The slot index of a handle (which names a slot that exists).
fn slot_index(handle: u32) -> usize {
    ((handle & 0xffff) as usize).saturating_sub(1)
}
