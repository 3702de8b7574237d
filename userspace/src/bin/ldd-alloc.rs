//! `ldd-alloc`: drive the ldd_alloc module from the shell. See `ldd-alloc --help`.

fn main() -> std::process::ExitCode {
    // A hog of the memory-pressure tool runs here and never returns.
    ldd_alloc::pressure::hog_entry();
    ldd_alloc::cli::main()
}
