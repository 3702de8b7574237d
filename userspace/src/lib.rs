//! Userspace side of ldd_alloc.
//!
//! The ioctl ABI and the allocator core are the kernel module's own source
//! files, compiled here unchanged: `uapi.rs` and `allocator/` at the top
//! of the repository.

#[path = "../../uapi.rs"]
pub mod uapi;

#[path = "../../allocator/mod.rs"]
pub mod allocator;

pub mod bench;
pub mod cli;
pub mod cpu;
pub mod device;
pub mod fuzz_model;
pub mod rng;
pub mod tap;
pub mod tour;
pub mod tsc;
pub mod vmtests;

pub mod host_pages;
pub mod pressure;
pub mod pressure_tour;
