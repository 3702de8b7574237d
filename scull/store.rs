// SPDX-License-Identifier: GPL-2.0

//! The scull store of LDD3 chapter 3: data kept in quantum sets.
//!
//! A device holds a list of quantum sets; each set is an array of `qset`
//! pointers to quanta of `quantum` bytes. Byte `pos` lives in set
//! `pos / (quantum * qset)`, quantum `(pos / quantum) % qset`, at offset
//! `pos % quantum`. LDD3 keeps the sets in a linked list and walks it in
//! `scull_follow()`; here the list is a vector, so following is O(1).
//!
//! Semantics, where LDD3 leaves a choice:
//! - A read or a write may span quanta: the whole request is served in one
//!   call (LDD3 stops at the end of the current quantum and returns a short
//!   count; both are valid `read(2)`/`write(2)` behaviour).
//! - Holes (quanta never written below the device size, after an `lseek` past
//!   the end and a write) read as zeros, like a sparse file. LDD3's scull ends
//!   the read at a hole instead.
//! - A device holds at most `max_mib` MiB (module parameter), and at most
//!   2^20 quanta and 2^20 quantum sets: past either, a write gets ENOSPC
//!   (a short count if some bytes were stored).
//! - A write from a bad user buffer returns EFAULT. As in LDD3, the bytes of
//!   the quantum it was copying into may be left zeroed (`copy_from_user()`
//!   zero-fills what it could not copy); nothing outside the write's range
//!   changes.
//! - A long read or write stops between quanta when a signal is pending
//!   (LDD3's `signal_pending(current)` test): it returns what it did so far,
//!   or ERESTARTSYS if it had done nothing, so a task killed in the middle
//!   of a 256 MiB write dies at once.

use kernel::alloc::flags::__GFP_NOWARN;
use kernel::prelude::*;
use kernel::uaccess::{
    UserSliceReader,
    UserSliceWriter, //
};

use super::backend::{
    Backend,
    Block, //
};
use super::mmap::{
    mappable,
    PageMap, //
};

/// One quantum set: `qset` slots, each empty or holding a quantum. Up to
/// 65536 slots: kvmalloc'ed, so a large qset never needs a high-order run.
struct QuantumSet {
    data: KVVec<Option<Block>>,
}

/// Most quanta one device holds, whatever the geometry: with `quantum=1` a
/// device of `max_mib` would otherwise need hundreds of millions of them.
const MAX_QUANTA: u64 = 1 << 20;

/// Most quantum sets one device holds (same reason, with `qset=1`).
const MAX_SETS: usize = 1 << 20;

/// The data of one scull device.
///
/// # Invariants
///
/// Every block in `sets` was allocated by `backend` and is `quantum` bytes
/// long; `held` is the number of blocks; `size` is one past the highest byte
/// ever written since the last trim.
pub(crate) struct ScullStore {
    sets: KVVec<QuantumSet>,
    backend: Backend,
    quantum: usize,
    qset: usize,
    size: u64,
    held: u64,
}

impl ScullStore {
    /// An empty store.
    pub(crate) fn new(backend: Backend, quantum: usize, qset: usize) -> Self {
        Self {
            sets: KVVec::new(),
            quantum: backend.quantum_for(quantum),
            backend,
            qset,
            size: 0,
            held: 0,
        }
    }

    /// One past the highest byte written.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Bytes per quantum in use.
    pub(crate) fn quantum(&self) -> usize {
        self.quantum
    }

    /// Quanta per set in use.
    pub(crate) fn qset(&self) -> usize {
        self.qset
    }

    /// The backend of the quanta.
    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Number of quantum sets.
    pub(crate) fn sets(&self) -> usize {
        self.sets.len()
    }

    /// Number of quanta held.
    pub(crate) fn quanta(&self) -> u64 {
        self.held
    }

    /// Bytes held in quanta.
    pub(crate) fn bytes_held(&self) -> u64 {
        self.held * self.quantum as u64
    }

    /// Frees everything and starts again with a new geometry and backend
    /// (LDD3's `scull_trim()`, which also picks up the current quantum/qset).
    pub(crate) fn trim(&mut self, backend: Backend, quantum: usize, qset: usize) {
        self.release();
        // INVARIANT: No block is left, so any backend and geometry are consistent.
        self.quantum = backend.quantum_for(quantum);
        self.backend = backend;
        self.qset = qset;
    }

    /// Gives every quantum back to the backend.
    fn release(&mut self) {
        let backend = &self.backend;
        for set in self.sets.drain_all() {
            // SAFETY: Every block of the store came from `self.backend`
            // (type invariant); each is freed once, here.
            unsafe { backend.free_all(set.data.into_iter().flatten()) };
        }
        self.held = 0;
        self.size = 0;
        self.backend.trim_caches();
    }

    /// Where byte `pos` lives: (set, slot, offset in the quantum).
    fn locate(&self, pos: u64) -> Result<(usize, usize, usize)> {
        // Checked: quantum and qset are never 0 (the ioctls and parameters
        // refuse it), but a division the compiler cannot prove safe would
        // carry a panic path into the module.
        let quantum = self.quantum as u64;
        let per_set = quantum.checked_mul(self.qset as u64).ok_or(EINVAL)?;
        let set = pos.checked_div(per_set).ok_or(EINVAL)?;
        let in_set = pos.checked_rem(per_set).ok_or(EINVAL)?;
        let slot = in_set.checked_div(quantum).ok_or(EINVAL)?;
        let offset = in_set.checked_rem(quantum).ok_or(EINVAL)?;
        Ok((
            usize::try_from(set).map_err(|_| EFBIG)?,
            slot as usize,
            offset as usize,
        ))
    }

    /// Reads up to `out.len()` bytes at `*pos` into user memory.
    pub(crate) fn read(&self, out: &mut UserSliceWriter, pos: &mut i64) -> Result<usize> {
        let start = u64::try_from(*pos).map_err(|_| EINVAL)?;
        if start >= self.size {
            return Ok(0);
        }
        let want = (out.len() as u64).min(self.size - start) as usize;
        let mut done = 0;
        while done < want {
            if done != 0 && signal_pending() {
                break;
            }
            let (set, slot, offset) = self.locate(start + done as u64)?;
            let chunk = (self.quantum - offset).min(want - done);
            let block = self
                .sets
                .get(set)
                .and_then(|s| s.data.get(slot))
                .and_then(Option::as_ref);
            match block.and_then(|b| b.as_slice().get(offset..offset + chunk)) {
                Some(bytes) => out.write_slice(bytes)?,
                None => write_zeros(out, chunk)?,
            }
            done += chunk;
        }
        *pos += done as i64;
        Ok(done)
    }

    /// Writes `input` at `*pos`, allocating quantum sets and quanta on the way.
    /// Stops with ENOSPC at `limit` bytes of device size. On an allocation
    /// failure after some bytes were stored, returns the short count (like
    /// `write(2)` on a full disk); with nothing stored, the error.
    pub(crate) fn write(
        &mut self,
        input: &mut UserSliceReader,
        pos: &mut i64,
        limit: u64,
        map: &PageMap,
    ) -> Result<usize> {
        let start = u64::try_from(*pos).map_err(|_| EINVAL)?;
        let mut want = input.len() as u64;
        if start.saturating_add(want) > limit {
            if start >= limit {
                return Err(ENOSPC);
            }
            want = limit - start;
        }
        let want = want as usize;
        let mut done = 0;
        while done < want {
            if signal_pending() {
                if done == 0 {
                    return Err(ERESTARTSYS);
                }
                break;
            }
            let here = start + done as u64;
            let chunk = match self.write_chunk(input, here, want - done, map) {
                Ok(n) => n,
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            };
            done += chunk;
            self.size = self.size.max(here + chunk as u64);
            map.set_size(self.size);
        }
        *pos += done as i64;
        Ok(done)
    }

    /// Whether the device's quanta can be mapped (see [`super::mmap`]).
    pub(crate) fn mappable(&self) -> bool {
        mappable(&self.backend, self.quantum)
    }

    /// Writes at most one quantum's worth at `pos`; a new quantum of a
    /// mappable device is published to `map` before any byte lands in it.
    fn write_chunk(
        &mut self,
        input: &mut UserSliceReader,
        pos: u64,
        left: usize,
        map: &PageMap,
    ) -> Result<usize> {
        let mappable = self.mappable();
        let qset = self.qset;
        let (set, slot, offset) = self.locate(pos)?;
        let chunk = (self.quantum - offset).min(left);
        if set >= MAX_SETS {
            return Err(ENOSPC);
        }
        while self.sets.len() <= set {
            // A failure is the writer's ENOMEM: no allocator warning.
            let mut data = KVVec::with_capacity(self.qset, GFP_KERNEL | __GFP_NOWARN)?;
            for _ in 0..self.qset {
                data.push(None, GFP_KERNEL | __GFP_NOWARN)?;
            }
            self.sets
                .push(QuantumSet { data }, GFP_KERNEL | __GFP_NOWARN)?;
        }
        let quantum = self.quantum;
        let entry = self
            .sets
            .get_mut(set)
            .and_then(|s| s.data.get_mut(slot))
            .ok_or(EINVAL)?;
        if entry.is_none() {
            if self.held >= MAX_QUANTA {
                return Err(ENOSPC);
            }
            // A fresh quantum is zeroed, so the bytes around a partial write
            // read back as zeros, like the holes.
            let block = self.backend.alloc(quantum)?;
            if mappable {
                // `set < MAX_SETS` and `slot < qset`: no overflow.
                if let Err(e) = map.publish(set * qset + slot, &block, &self.backend, quantum) {
                    // SAFETY: Just allocated by this backend, never published.
                    unsafe { self.backend.free(block) };
                    return Err(e);
                }
            }
            *entry = Some(block);
            self.held += 1;
        }
        let bytes = entry
            .as_mut()
            .and_then(|b| b.as_mut_slice().get_mut(offset..offset + chunk))
            .ok_or(EINVAL)?;
        input.read_slice(bytes)?;
        Ok(chunk)
    }
}

impl Drop for ScullStore {
    fn drop(&mut self) {
        self.release();
    }
}

/// Whether the current task has a signal to handle (`signal_pending(current)`).
fn signal_pending() -> bool {
    kernel::current!().signal_pending()
}

/// Copies `len` zero bytes to user memory.
fn write_zeros(out: &mut UserSliceWriter, mut len: usize) -> Result {
    const ZEROS: [u8; 256] = [0; 256];
    while len > 0 {
        let n = len.min(ZEROS.len());
        out.write_slice(&ZEROS[..n])?;
        len -= n;
    }
    Ok(())
}
