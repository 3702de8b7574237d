//! Prints this machine's TSC rate in kHz (the median of five 100 ms
//! measurements), for the test guest's `tsc_early_khz=`: see
//! `ldd_alloc::tsc`. Exits 1 where there is no TSC to measure.

use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    match ldd_alloc::tsc::median_khz(5, Duration::from_millis(100)) {
        Some(khz) => {
            println!("{khz}");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("ldd-alloc-tsc-khz: no TSC to measure on this machine");
            ExitCode::FAILURE
        }
    }
}
