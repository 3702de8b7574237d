//! The ioctl-driven suite that runs where the module is loaded (the VM of
//! `make test`, or a user's own machine): `ldd-alloc-test` runs it.

pub mod caches;
pub mod cli_vm;
pub mod concurrency;
pub mod errors;
pub mod fastpath;
pub mod faultinject;
pub mod fuzz;
pub mod hardening;
pub mod kernel_view;
pub mod lab;
pub mod large;
pub mod mmap;
pub mod module;
pub mod params;
pub mod percpu;
pub mod pools;
pub mod pressure;
pub mod privilege;
pub mod scull;
pub mod stress;
pub mod sysinfo;

use crate::tap::Test;

/// Every test, in the order they run.
pub fn all() -> Vec<Test> {
    let mut tests = Vec::new();
    tests.extend(scull::tests());
    tests.extend(caches::tests());
    tests.extend(errors::tests());
    tests.extend(lab::tests());
    tests.extend(percpu::tests());
    tests.extend(large::tests());
    tests.extend(mmap::tests());
    tests.extend(kernel_view::tests());
    tests.extend(concurrency::tests());
    tests.extend(fastpath::tests());
    tests.extend(faultinject::tests());
    tests.extend(pools::tests());
    tests.extend(privilege::tests());
    tests.extend(hardening::tests());
    tests.extend(fuzz::tests());
    tests.extend(stress::tests());
    tests.extend(module::tests());
    tests.extend(params::tests());
    tests.extend(cli_vm::tests());
    tests
}
