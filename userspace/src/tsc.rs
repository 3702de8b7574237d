//! The rate of this machine's time-stamp counter, for the test guest's
//! `tsc_early_khz=` (scripts/vm.sh).
//!
//! The pinned test kernel has no ACPI, so the guest has neither the PM timer
//! nor the HPET to calibrate its TSC against, and under QEMU's TCG the PIT
//! calibration fails (the emulated port reads are too slow for its loop).
//! Under TCG the guest's `rdtsc` reads the host's TSC (QEMU's
//! `cpu_get_host_ticks()`), so the host measures the rate and the guest is
//! told it. Without it the guest would fall back to `refined-jiffies`, a
//! 4 ms clock, and every latency the benchmarks print would be noise.
//!
//! Also the clock readings the tests, the tour and the benchmarks share:
//! [`clock_ns`] and the kernel's clocksource.

use std::time::Duration;

/// `clock` in nanoseconds (`clock_gettime(2)`), None if the call fails.
pub fn clock_ns(clock: libc::clockid_t) -> Option<u128> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec the call writes.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128)
}

/// One reading of the TSC paired with `CLOCK_MONOTONIC_RAW` (which NTP does
/// not slew, like the TSC): the clock read just before and just after
/// `rdtsc`, so the pair is good to the gap between the two reads.
#[cfg(target_arch = "x86_64")]
fn paired_reading() -> Option<(u64, u128, u128)> {
    let now = || clock_ns(libc::CLOCK_MONOTONIC_RAW);
    let before = now()?;
    // SAFETY: rdtsc has no preconditions on x86-64; it only reads the counter.
    let tsc = unsafe { core::arch::x86_64::_rdtsc() };
    let after = now()?;
    Some((tsc, before, after))
}

/// The tightest of a few paired readings: a reading a preemption or an
/// interrupt split is seen by its wide gap and dropped.
#[cfg(target_arch = "x86_64")]
fn tight_reading() -> Option<(u64, u128)> {
    let mut best: Option<(u64, u128, u128)> = None;
    for _ in 0..16 {
        let r = paired_reading()?;
        if best.is_none_or(|b| r.2 - r.1 < b.2 - b.1) {
            best = Some(r);
        }
    }
    best.map(|(tsc, before, after)| (tsc, (before + after) / 2))
}

/// The TSC's rate in kHz, measured over `window` (None where there is no
/// TSC to read, or the counter or the clock did not advance).
#[cfg(target_arch = "x86_64")]
pub fn measure_khz(window: Duration) -> Option<u64> {
    let (c0, t0) = tight_reading()?;
    std::thread::sleep(window);
    let (c1, t1) = tight_reading()?;
    let cycles = u128::from(c1.checked_sub(c0)?);
    let ns = t1.checked_sub(t0).filter(|&ns| ns > 0)?;
    u64::try_from(cycles * 1_000_000 / ns)
        .ok()
        .filter(|&k| k > 0)
}

/// No TSC off x86-64.
#[cfg(not(target_arch = "x86_64"))]
pub fn measure_khz(_window: Duration) -> Option<u64> {
    None
}

/// The median of `runs` measurements of `window` each: one run slowed by
/// a busy host does not decide the rate.
pub fn median_khz(runs: usize, window: Duration) -> Option<u64> {
    let mut v: Vec<u64> = (0..runs.max(1))
        .map(|_| measure_khz(window))
        .collect::<Option<_>>()?;
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

/// The kernel's current clocksource (what `ktime_get*()` reads), from sysfs.
pub fn current_clocksource() -> Result<String, String> {
    let path = "/sys/devices/system/clocksource/clocksource0/current_clocksource";
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("{path}: {e}"))
}

/// The clocksource once boot has settled on one: the kernel starts on
/// `tsc-early` and switches to `tsc` (a stop_machine on every CPU) about a
/// second later, which must not land inside a timed run. Waits up to 5 s.
pub fn settled_clocksource() -> Result<String, String> {
    for _ in 0..50 {
        let name = current_clocksource()?;
        if name != "tsc-early" {
            return Ok(name);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    current_clocksource()
}

/// Whether timings on clocksource `name` mean anything: not on the jiffy
/// clocks, whose 4 ms steps (HZ=250) swallow every operation we time.
pub fn clock_is_fine_grained(name: &str) -> bool {
    !matches!(name, "jiffies" | "refined-jiffies")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two measurements agree to 0.2 % and lie between 100 MHz and 10 GHz:
    /// a pairing bug (a wrong unit, an unpaired reading) is far outside
    /// both. The kernel's own early calibration is good to about 0.1 %.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn two_measurements_agree() {
        let a = median_khz(3, Duration::from_millis(50)).expect("a rate");
        let b = median_khz(3, Duration::from_millis(50)).expect("a rate");
        assert!((100_000..10_000_000).contains(&a), "{a} kHz");
        let diff = a.abs_diff(b);
        assert!(diff * 500 <= a, "{a} kHz vs {b} kHz");
    }
}
