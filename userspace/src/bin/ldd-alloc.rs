//! `ldd-alloc`: drive the ldd_alloc module from the shell. See `ldd-alloc --help`.

fn main() -> std::process::ExitCode {
    ldd_alloc::cli::main()
}
