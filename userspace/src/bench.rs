//! `ldd-alloc bench` (being written).

/// Arguments of `ldd-alloc bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {}

/// Runs the benchmarks.
pub fn run(_dev: u32, _json: bool, _args: &BenchArgs) -> Result<(), String> {
    Err("not yet".into())
}
