// SPDX-License-Identifier: GPL-2.0

//! Why `get_cpu_var()` disables preemption, shown without harm.
//!
//! A per-CPU counter is bumped as `v = *this_cpu_ptr(p); …; *ptr = v + 1`.
//! With preemption on, the task can lose the CPU between the read and the
//! write-back: another task on the same CPU bumps the same copy meanwhile
//! and its increment is overwritten, or the task wakes on another CPU and
//! writes a stale value into a copy that is no longer "its" CPU's. Each
//! iteration also adds one to an atomic reference, so `reference - sum`
//! is what was lost.
//!
//! [`race_mode::PREEMPT_ON`] sleeps in the window (at least 20 us), which
//! makes the preemption that could strike at any instruction happen every
//! time; [`race_mode::PREEMPT_OFF`] does the same update inside
//! [`PerCpu::with_this_cpu`], the window a busy-wait, and loses nothing. "Safely": every copy is an
//! atomic read and written with single loads and stores, so the lost
//! updates are a logic error the counter shows, never a data race in the
//! module. The counter belongs to the open file: threads that share it race
//! one another, and nobody else.

use core::sync::atomic::{
    AtomicU64,
    Ordering, //
};
use kernel::{
    new_mutex,
    prelude::*,
    sync::{
        Arc,
        Mutex, //
    },
    time::{
        delay::{
            fsleep,
            udelay, //
        },
        Delta, //
    }, //
};

use super::var::{
    cpu_possible,
    current_cpu,
    nr_cpu_ids,
    PerCpu, //
};
use crate::uaccess::{
    write_array,
    IoctlArg, //
};
use crate::uapi::{
    self,
    race_mode, //
};

/// Shortest window of the preempt-on mode: long enough that `fsleep()`
/// sleeps (it busy-waits up to 10 us).
const MIN_SLEEP_US: i64 = 20;

/// The counter under test and its reference.
struct Race {
    counter: PerCpu<AtomicU64>,
    reference: AtomicU64,
}

/// An open file's race counter, made at its first run.
pub(crate) struct RaceSlot(Pin<KBox<Mutex<Option<Arc<Race>>>>>);

impl RaceSlot {
    /// An empty slot (the counter is allocated at the first run).
    pub(crate) fn new() -> Result<Self> {
        Ok(Self(KBox::pin_init(
            new_mutex!(None, "RaceSlot"),
            GFP_KERNEL,
        )?))
    }

    /// The file's counter, made if needed.
    fn race(&self) -> Result<Arc<Race>> {
        let mut slot = self.0.lock();
        if let Some(r) = slot.as_ref() {
            return Ok(r.clone());
        }
        let r = Arc::new(
            Race {
                counter: PerCpu::new()?,
                reference: AtomicU64::new(0),
            },
            GFP_KERNEL,
        )?;
        *slot = Some(r.clone());
        Ok(r)
    }

    /// `LDD_IOC_PERCPU_RACE`.
    pub(crate) fn run(&self, arg: IoctlArg) -> Result {
        let mut req: uapi::PercpuRace = arg.read()?;
        if req.iters == 0
            || req.iters > uapi::RACE_MAX_ITERS
            || req.mode >= race_mode::COUNT
            || req.window_us > uapi::RACE_MAX_WINDOW_US
            || req._pad != 0
        {
            return Err(EINVAL);
        }
        let race = self.race()?;
        let window = Delta::from_micros(i64::from(req.window_us));
        let mut migrated = 0u64;
        for _ in 0..req.iters {
            if kernel::current!().signal_pending() {
                return Err(EINTR);
            }
            if req.mode == race_mode::PREEMPT_OFF {
                race.counter.with_this_cpu(|c, _| {
                    let v = c.load(Ordering::Relaxed);
                    udelay(window);
                    c.store(v.wrapping_add(1), Ordering::Relaxed);
                });
            } else {
                // What `smp_processor_id()` would refuse here under
                // CONFIG_DEBUG_PREEMPT: a CPU id taken with preemption on.
                let cpu = current_cpu();
                let c = race.counter.get(cpu).ok_or(EINVAL)?;
                let v = c.load(Ordering::Relaxed);
                // The task gives the CPU away here, as preemption may at any
                // instruction: a real sleep (fsleep() busy-waits below 10 us).
                fsleep(window.max(Delta::from_micros(MIN_SLEEP_US)));
                c.store(v.wrapping_add(1), Ordering::Relaxed);
                migrated += u64::from(current_cpu() != cpu);
            }
            race.reference.fetch_add(1, Ordering::Relaxed);
        }
        req.migrated = migrated;
        arg.write(&req)
    }

    /// `LDD_IOC_PERCPU_RACE_READ`.
    pub(crate) fn read(&self, arg: IoctlArg) -> Result {
        let mut req: uapi::RaceCounts = arg.read()?;
        let race = self.0.lock().clone();
        let mut copies = KVVec::new();
        let mut sum = 0u64;
        for cpu in (0..nr_cpu_ids()).filter(|&c| cpu_possible(c)) {
            let v = race
                .as_ref()
                .and_then(|r| r.counter.get(cpu))
                .map_or(0, |c| c.load(Ordering::Relaxed));
            sum = sum.wrapping_add(v);
            if copies.len() < req.max as usize {
                copies.push(v, GFP_KERNEL)?;
            }
        }
        req.possible = nr_cpu_ids();
        req.sum = sum;
        req.reference = race
            .as_ref()
            .map_or(0, |r| r.reference.load(Ordering::Relaxed));
        write_array(req.entries, &copies)?;
        arg.write(&req)
    }

    /// `LDD_IOC_PERCPU_RACE_RESET`: a fresh counter at the next run (a run
    /// in progress finishes on the old one).
    pub(crate) fn reset(&self) -> Result {
        let old = self.0.lock().take();
        drop(old);
        Ok(())
    }
}
