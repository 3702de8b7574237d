//! Our mempools in the running kernel: the reserve under injected page
//! failure, a sleeping allocation woken by a free, resize, refused destroy,
//! and the scull store on a mempool.

use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::device::Device;
use crate::tap::{Context, Outcome, Test, TestResult};
use crate::uapi::{self, alloc_flags, context, gfp, lab_backend as lb};
use crate::{ensure, ensure_eq};

/// Element size of the test pool (its own pool and private cache).
const ELEM: u64 = 1000;

pub fn pool_of(dev: &Device, size: u64) -> Result<uapi::PoolInfo, String> {
    let mut i = 0;
    let mut found = None;
    loop {
        match dev.pool_info(i) {
            Ok(p) => {
                if p.element_size == size && p.live == 1 {
                    found = Some(p);
                }
            }
            Err(Errno::ENOENT) => break,
            Err(e) => return Err(format!("POOL_INFO: {e}")),
        }
        i += 1;
    }
    found.ok_or_else(|| format!("no live pool of {size}-byte elements"))
}

fn pool_alloc(dev: &Device, flags: u64, ctx: u32, keep: bool) -> Result<uapi::AllocReply, Errno> {
    let r = dev.alloc(uapi::AllocRequest {
        backend: lb::OUR_MEMPOOL,
        context: ctx,
        gfp: flags,
        size: ELEM,
        count: 1,
        flags: if keep { 0 } else { alloc_flags::FREE_NOW },
        ..Default::default()
    })?;
    r.into_iter().next().ok_or(Errno::ENOMEM)
}

fn fault(dev: &Device, all: bool) -> Result<(), String> {
    dev.fault(uapi::FaultSpec {
        fail_next: 0,
        fail_all: u32::from(all),
        owner: 0,
    })
    .ctx("FAULT")
}

/// With page allocation failing: the backing cache serves what it still
/// has, then exactly min_nr come from the reserve, then GFP_ATOMIC fails at
/// once.
fn reserve_then_enomem() -> TestResult {
    let d = Device::open_index(0).ctx("open")?;
    pool_alloc(&d, gfp::KERNEL, context::PROCESS, false).ctx("create the pool")?;
    let before = pool_of(&d, ELEM)?;
    ensure_eq!(
        before.curr_nr,
        before.min_nr,
        "a full reserve to start with"
    );
    fault(&d, true)?;
    let mut got = 0;
    let result = (|| -> Result<(), String> {
        loop {
            match pool_alloc(&d, gfp::ATOMIC, context::ATOMIC, true) {
                Ok(_) => got += 1,
                Err(Errno::ENOMEM) => break,
                Err(e) => return Err(format!("alloc {got}: {e}")),
            }
            ensure!(got < 100_000, "the pool never ran dry");
        }
        let after = pool_of(&d, ELEM)?;
        ensure_eq!(
            after.allocs_reserve - before.allocs_reserve,
            before.min_nr,
            "allocations from the reserve"
        );
        ensure_eq!(after.curr_nr, 0, "the reserve is empty");
        let t = Instant::now();
        ensure_eq!(
            pool_alloc(&d, gfp::ATOMIC, context::ATOMIC, true).map(drop),
            Err(Errno::ENOMEM)
        );
        ensure!(
            t.elapsed() < Duration::from_millis(500),
            "GFP_ATOMIC waited {:?}",
            t.elapsed()
        );
        ensure_eq!(
            pool_alloc(&d, gfp::NOWAIT, context::HARDIRQ, true).map(drop),
            Err(Errno::ENOMEM),
            "from an irq_work"
        );
        println!(
            "# {} allocations before ENOMEM ({} from the reserve)",
            got, before.min_nr
        );
        Ok(())
    })();
    fault(&d, false)?;
    let freed = d.free_all().ctx("FREE_ALL")?;
    result?;
    ensure_eq!(freed, got, "every allocation was a handle");
    let end = pool_of(&d, ELEM)?;
    ensure_eq!(end.curr_nr, end.min_nr, "frees refill the reserve first");
    ensure_eq!(end.outstanding, 0);
    Ok(Outcome::Pass)
}

/// A GFP_KERNEL allocation on an empty pool sleeps until another context
/// frees an element, and is woken by that free.
fn sleeper_woken_by_free() -> TestResult {
    let d = Device::open_index(0).ctx("open")?;
    pool_alloc(&d, gfp::KERNEL, context::PROCESS, false).ctx("create the pool")?;
    fault(&d, true)?;
    // Drained on every CPU in turn: the backing cache keeps a magazine per
    // CPU, and one CPU's ENOMEM leaves the others' magazines full (the
    // sleeper, on another CPU, would be served from its own).
    let drained = (|| -> Result<Vec<u32>, String> {
        let mut handles = Vec::new();
        for cpu in 0..crate::cpu::online() {
            crate::cpu::on_cpu(cpu, || loop {
                match pool_alloc(&d, gfp::ATOMIC, context::PROCESS, true) {
                    Ok(a) => handles.push(a.handle),
                    Err(Errno::ENOMEM) => return Ok(()),
                    Err(e) => return Err(format!("drain on cpu {cpu}: {e}")),
                }
            })??;
        }
        Ok(handles)
    })();
    let handles = match drained {
        Ok(h) => h,
        Err(e) => {
            fault(&d, false)?;
            return Err(e);
        }
    };
    let waits_before = pool_of(&d, ELEM)?.waits;
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let sleeper = std::thread::spawn(move || {
        let other = Device::open_index(0).map_err(|e| e.to_string())?;
        // SAFETY: gettid has no preconditions.
        let _ = tid_tx.send(unsafe { libc::gettid() });
        let t = Instant::now();
        let r = pool_alloc(&other, gfp::KERNEL, context::PROCESS, false);
        Ok::<_, String>((r.map(drop), t.elapsed(), Instant::now()))
    });
    // Poll, with a deadline, for the state the test needs: the pool counted
    // a wait and the sleeper's task sleeps in the kernel (state S or D).
    let tid = tid_rx.recv_timeout(Duration::from_secs(10)).ok();
    let poll_start = Instant::now();
    let mut waiting = false;
    let mut last_state = String::new();
    while poll_start.elapsed() < Duration::from_secs(10) && !sleeper.is_finished() {
        let counted = pool_of(&d, ELEM)?.waits > waits_before;
        last_state = tid
            .and_then(|t| std::fs::read_to_string(format!("/proc/self/task/{t}/stat")).ok())
            .and_then(|st| {
                st.rsplit_once(") ")
                    .map(|(_, rest)| rest.chars().take(1).collect())
            })
            .unwrap_or_default();
        if counted && (last_state == "S" || last_state == "D") {
            waiting = !sleeper.is_finished();
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let waited_for = poll_start.elapsed();
    let woke_at = Instant::now();
    if let Some(h) = handles.first() {
        d.free(*h).ctx("free")?;
    }
    let joined = sleeper
        .join()
        .map_err(|_| "the sleeper panicked".to_string())?;
    let woke_after = woke_at.elapsed();
    fault(&d, false)?;
    d.free_all().ctx("FREE_ALL")?;
    let (r, slept, returned) = joined?;
    ensure!(
        waiting,
        "the GFP_KERNEL allocation did not sleep on the empty pool within 10 s \
         (task state {last_state:?})"
    );
    ensure_eq!(r, Ok(()), "the sleeper's allocation");
    // It returned only after the free (the two clocks of the sleeper and
    // of the poll start a few ms apart, so compare instants, not spans).
    ensure!(
        returned >= woke_at,
        "returned before the free (slept {slept:?}, seen sleeping for {waited_for:?})"
    );
    ensure!(
        woke_after < Duration::from_secs(2),
        "woken {woke_after:?} after the free"
    );
    let p = pool_of(&d, ELEM)?;
    ensure!(p.wakeups >= 1, "no wake-up counted");
    println!("# slept {slept:?}, woken {woke_after:?} after the free");
    Ok(Outcome::Pass)
}

/// Resize up and down with elements out; destroy refused while any is.
fn resize_and_destroy() -> TestResult {
    let d = Device::open_index(0).ctx("open")?;
    pool_alloc(&d, gfp::KERNEL, context::PROCESS, false).ctx("create the pool")?;
    let p = pool_of(&d, ELEM)?;
    let load: Vec<u32> = (0..10)
        .map(|_| pool_alloc(&d, gfp::KERNEL, context::PROCESS, true).map(|a| a.handle))
        .collect::<Result<_, _>>()
        .ctx("load")?;
    d.pool_resize(p.index, 40).ctx("resize up")?;
    let up = pool_of(&d, ELEM)?;
    ensure_eq!((up.min_nr, up.curr_nr, up.outstanding), (40, 40, 10));
    d.pool_resize(p.index, 4).ctx("resize down")?;
    let down = pool_of(&d, ELEM)?;
    ensure_eq!((down.min_nr, down.curr_nr, down.outstanding), (4, 4, 10));
    ensure_eq!(d.pool_resize(p.index, 0), Err(Errno::EINVAL), "min_nr 0");
    ensure_eq!(
        d.pool_resize(p.index, uapi::POOL_MAX_MIN_NR + 1),
        Err(Errno::EINVAL),
        "min_nr too big"
    );
    ensure_eq!(d.pool_resize(999, 4), Err(Errno::ENOENT), "no such pool");
    ensure_eq!(
        d.pool_destroy(p.index),
        Err(Errno::EBUSY),
        "destroy with 10 out"
    );
    ensure_eq!(
        pool_of(&d, ELEM)?.destroy_refused,
        p.destroy_refused + 1,
        "refusals are counted"
    );
    for h in load {
        d.free(h).ctx("free")?;
    }
    d.pool_resize(p.index, p.min_nr as u32).ctx("resize back")?;
    d.pool_destroy(p.index).ctx("destroy")?;
    let gone = d.pool_info(p.index).ctx("POOL_INFO")?;
    ensure_eq!(
        (gone.live, gone.curr_nr),
        (0, 0),
        "a destroyed pool keeps nothing"
    );
    ensure_eq!(
        d.pool_destroy(p.index),
        Ok(()),
        "destroying twice is harmless"
    );
    Ok(Outcome::Pass)
}

/// The scull store on a mempool: with page allocation failing, a write
/// makes progress up to the reserve, then gets ENOMEM; nothing is lost.
fn scull_on_mempool_under_failure() -> TestResult {
    let dev = super::scull::fresh(uapi::backend::MEMPOOL)?;
    dev.file().write_all_at(b"warm", 0).ctx("create the pool")?;
    super::scull::trim()?;
    let quantum = dev.info().ctx("INFO")?.quantum as u64;
    let pool = pool_of(&dev, quantum)?;
    dev.shrink().ctx("SHRINK")?;
    fault(&dev, true)?;
    let data = vec![0x5au8; (pool.min_nr as usize + 64) * quantum as usize];
    let r = dev.file().write_at(&data, 0);
    let held = dev.info().ctx("INFO")?;
    let after = pool_of(&dev, quantum)?;
    fault(&dev, false)?;
    let written = match r {
        Ok(n) => n as u64,
        Err(e) => return Err(format!("the first write should make progress: {e}")),
    };
    ensure!(
        written >= pool.min_nr * quantum,
        "wrote {written} with a reserve of {}",
        pool.min_nr
    );
    ensure!(
        written < data.len() as u64,
        "the whole write succeeded with pages failing"
    );
    ensure_eq!(held.size, written);
    ensure_eq!(after.curr_nr, 0, "the reserve was used up");
    // The next write at the end gets ENOMEM at once: nothing is left.
    fault(&dev, true)?;
    let again = dev
        .file()
        .write_at(&data[..quantum as usize], written.next_multiple_of(quantum));
    fault(&dev, false)?;
    ensure_eq!(again.map_err(|e| e.raw_os_error()), Err(Some(libc::ENOMEM)));
    let mut back = vec![0u8; written as usize];
    dev.file().read_exact_at(&mut back, 0).ctx("read")?;
    ensure!(
        back.iter().all(|&b| b == 0x5a),
        "data written under pressure reads back"
    );
    super::scull::trim()?;
    ensure_eq!(
        pool_of(&dev, quantum)?.curr_nr,
        pool.min_nr,
        "the trim refilled the reserve"
    );
    Ok(Outcome::Pass)
}

/// The mempool tests.
pub fn tests() -> Vec<Test> {
    vec![
        Test::new("pools/reserve_then_enomem", reserve_then_enomem),
        Test::new("pools/gfp_kernel_sleeps_until_free", sleeper_woken_by_free),
        Test::new("pools/resize_and_refused_destroy", resize_and_destroy),
        Test::new(
            "pools/scull_write_under_failure",
            scull_on_mempool_under_failure,
        ),
    ]
}
