//! CPUs for the tests, the tour and the benchmarks: how many are online,
//! and running code on a chosen one (`sched_setaffinity(2)`). Our caches
//! keep a magazine per CPU, so what a thread sees depends on where it runs.

/// Online CPUs (at least 1).
pub fn online() -> usize {
    // SAFETY: sysconf only reads a system value.
    (unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).max(1) as usize
}

/// Pins the calling thread to CPU number `cpu`.
pub fn pin_current(cpu: usize) -> Result<(), String> {
    // SAFETY: A zeroed cpu_set_t is a valid empty set; CPU_SET and
    // sched_setaffinity only read and write it and this thread's affinity.
    let ok = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "pin to cpu {cpu}: {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// Runs `f` in a new thread pinned to CPU number `cpu`; the caller's own
/// affinity is left alone.
pub fn on_cpu<R: Send>(cpu: usize, f: impl FnOnce() -> R + Send) -> Result<R, String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            pin_current(cpu)?;
            Ok(f())
        })
        .join()
        .map_err(|_| "pinned thread panicked".to_string())?
    })
}
