//! `ldd-alloc-test`: the ldd_alloc test suite, kselftest style.
//!
//! Runs on any machine where the module is loaded and prints TAP; the exit
//! code is kselftest's (0 pass, 1 fail, 4 skip). Arguments are substrings of
//! test names to run (all by default); `--list` prints the names.

use ldd_alloc::{tap, vmtests};

fn main() {
    // A hog of the memory-pressure tool runs here and never returns.
    ldd_alloc::pressure::hog_entry();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut tests = vmtests::all();
    // The memory-pressure group needs a small guest of its own: it runs
    // only when asked for by name (scripts/test.sh boots one for it).
    let listing = args.iter().any(|a| a == "--list");
    if listing || !args.is_empty() {
        tests.extend(vmtests::pressure::tests());
    }
    if listing {
        for t in &tests {
            println!("{}", t.name);
        }
        return;
    }
    if !std::path::Path::new("/dev/ldd_alloc0").exists() {
        println!("TAP version 13");
        println!(
            "1..0 # SKIP /dev/ldd_alloc0 is missing: load the module (scripts/ldd_alloc_load)"
        );
        std::process::exit(tap::KSFT_SKIP);
    }
    std::process::exit(tap::run(&tests, &args));
}
