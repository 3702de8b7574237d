//! Fuzz target: an arbitrary byte stream drives create/alloc/free/shrink/
//! destroy and bad frees over several simulated CPUs, with the same model
//! checks as `tests/cache_props.rs`.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run cache_ops -- -max_total_time=60`
//! from `userspace/`.

#![no_main]

use std::collections::HashSet;
use std::ptr::NonNull;
use std::sync::Arc;

use ldd_alloc::allocator::{
    self, AllocError, CacheConfig, CacheEnv, CacheFlags, CacheName, DestroyError, FreeError,
    PageRequest,
};
use ldd_alloc::host_pages::{set_cpu, HostCache, HostPages};
use libfuzzer_sys::fuzz_target;

struct Model {
    env: HostCache,
    live: Vec<usize>,
    dead: bool,
    allocs: u64,
    frees: u64,
    refused: [u64; 3],
}

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    fn word(&mut self) -> Option<usize> {
        Some(usize::from(self.byte()?) << 8 | usize::from(self.byte()?))
    }
}

fn nn(p: usize) -> NonNull<u8> {
    NonNull::new(p as *mut u8).unwrap()
}

fn check(host: &HostPages, caches: &[Model]) {
    let mut pages = 0;
    for m in caches {
        let s = allocator::stats(&m.env);
        assert_eq!(allocator::check(&m.env), Ok(()));
        assert_eq!((s.allocs, s.frees), (m.allocs, m.frees));
        assert_eq!(s.active_objs - s.cached_objs, m.live.len());
        assert_eq!(
            [s.refused_foreign, s.refused_misaligned, s.refused_double],
            m.refused
        );
        pages += s.slabs() * s.pagesperslab;
    }
    assert_eq!(host.pages_out(), pages);
}

fuzz_target!(|data: &[u8]| {
    let host = Arc::new(HostPages::new());
    let mut caches: Vec<Model> = Vec::new();
    let mut all = HashSet::new();
    let mut b = Bytes(data);
    while let Some(op) = b.byte() {
        set_cpu(usize::from(op >> 4));
        let pick = |n: usize, x: u8| (n > 0).then(|| usize::from(x) % n);
        match op % 9 {
            0 => {
                let (Some(size), Some(f)) = (b.word(), b.byte()) else {
                    break;
                };
                if caches.len() >= 6 {
                    continue;
                }
                let cfg = CacheConfig {
                    name: CacheName::new(b"fuzz"),
                    size: size % 8192 + 1,
                    align: if f & 7 == 0 { 0 } else { 1 << (f & 7) },
                    flags: CacheFlags {
                        hwcache_align: f & 8 != 0,
                        poison: f & 16 != 0,
                        red_zone: f & 32 != 0,
                    },
                    ctor: None,
                };
                let env = HostCache::new(&cfg, host.clone(), 4).unwrap();
                caches.push(Model {
                    env,
                    live: Vec::new(),
                    dead: false,
                    allocs: 0,
                    frees: 0,
                    refused: [0; 3],
                });
            }
            1 | 2 => {
                let Some(x) = b.byte() else { break };
                let Some(ci) = pick(caches.len(), x) else {
                    continue;
                };
                if x & 0x80 != 0 {
                    host.fail_next(1);
                }
                let m = &mut caches[ci];
                match allocator::alloc(&m.env, PageRequest::KERNEL) {
                    Ok(p) => {
                        assert!(!m.dead);
                        let p = p.as_ptr() as usize;
                        let l = m.env.layout();
                        assert_eq!(p % l.align(), 0);
                        let (base, len) = host.run_containing(p, l.size()).expect("outside runs");
                        assert_eq!((base, len), (p & !(l.slab_bytes() - 1), l.slab_bytes()));
                        assert!(all.insert(p), "handed out twice");
                        // SAFETY: a live object of `size` bytes.
                        unsafe { std::ptr::write_bytes(p as *mut u8, x, l.size()) };
                        m.live.push(p);
                        m.allocs += 1;
                    }
                    Err(AllocError::Destroyed) => assert!(m.dead),
                    Err(AllocError::NoMemory) => host.fail_next(0),
                }
                host.fail_next(0);
            }
            3 | 4 => {
                let (Some(x), Some(y)) = (b.byte(), b.byte()) else {
                    break;
                };
                let Some(ci) = pick(caches.len(), x) else {
                    continue;
                };
                let m = &mut caches[ci];
                let Some(oi) = pick(m.live.len(), y) else {
                    continue;
                };
                let p = m.live.swap_remove(oi);
                all.remove(&p);
                assert_eq!(allocator::free(&m.env, nn(p)), Ok(()));
                m.frees += 1;
                if y & 1 == 1 {
                    assert_eq!(allocator::free(&m.env, nn(p)), Err(FreeError::DoubleFree));
                    m.refused[2] += 1;
                }
            }
            5 => {
                // A bad free: another cache's object, a header, or off-grid.
                let (Some(x), Some(y), Some(d)) = (b.byte(), b.byte(), b.word()) else {
                    break;
                };
                let (Some(ci), Some(oi)) = (pick(caches.len(), x), pick(caches.len(), y)) else {
                    continue;
                };
                let Some(&p) = caches[oi].live.first() else {
                    continue;
                };
                let m = &mut caches[ci];
                let l = *m.env.layout();
                let base = p & !(l.slab_bytes() - 1);
                if ci != oi {
                    assert_eq!(allocator::free(&m.env, nn(p)), Err(FreeError::Foreign));
                    m.refused[0] += 1;
                } else if d % 2 == 0 {
                    assert_eq!(
                        allocator::free(&m.env, nn(base + d % l.first_slot())),
                        Err(FreeError::Foreign)
                    );
                    m.refused[0] += 1;
                } else {
                    let q = p + 1 + d % (l.stride() - 1);
                    assert_eq!(allocator::free(&m.env, nn(q)), Err(FreeError::Misaligned));
                    m.refused[1] += 1;
                }
            }
            6 | 7 => {
                let Some(x) = b.byte() else { break };
                let Some(ci) = pick(caches.len(), x) else {
                    continue;
                };
                let before = host.pages_out();
                let freed = allocator::shrink(&caches[ci].env);
                assert_eq!(host.pages_out(), before - freed);
            }
            _ => {
                let Some(x) = b.byte() else { break };
                let Some(ci) = pick(caches.len(), x) else {
                    continue;
                };
                let m = &mut caches[ci];
                match allocator::destroy(&m.env) {
                    Ok(()) => {
                        assert!(m.live.is_empty());
                        m.dead = true;
                    }
                    Err(DestroyError::Busy { live }) => assert_eq!(live, m.live.len()),
                }
            }
        }
        check(&host, &caches);
    }
    for m in &mut caches {
        for p in m.live.drain(..) {
            assert_eq!(allocator::free(&m.env, nn(p)), Ok(()));
        }
        assert_eq!(allocator::destroy(&m.env), Ok(()));
    }
    assert_eq!(host.pages_out(), 0);
});
