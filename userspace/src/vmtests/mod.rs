//! The ioctl-driven suite that runs where the module is loaded (the VM of
//! `make test`, or a user's own machine): `ldd-alloc-test` runs it.

pub mod caches;
pub mod errors;
pub mod fuzz;
pub mod hardening;
pub mod lab;
pub mod module;
pub mod pools;
pub mod privilege;
pub mod scull;
pub mod stress;

use crate::tap::Test;

/// Every test, in the order they run.
pub fn all() -> Vec<Test> {
    let mut tests = Vec::new();
    tests.extend(scull::tests());
    tests.extend(caches::tests());
    tests.extend(errors::tests());
    tests.extend(lab::tests());
    tests.extend(pools::tests());
    tests.extend(privilege::tests());
    tests.extend(hardening::tests());
    tests.extend(fuzz::tests());
    tests.extend(stress::tests());
    tests.extend(module::tests());
    tests
}
