//! Property and scenario tests of the lookaside cache core, run over the
//! mmap page source with several simulated CPUs.
//!
//! The model keeps, per cache, the objects the test holds and the counters
//! it expects; after every operation the cache's statistics, its depot
//! bookkeeping and the page source's page count must agree with it.

use std::collections::HashSet;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ldd_alloc::allocator::debug::{POISON_END, POISON_FREE, RED_ACTIVE};
use ldd_alloc::allocator::{
    self, AllocError, CacheConfig, CacheEnv, CacheFlags, CacheName, DestroyError, FreeError,
    PageRequest, Zone, MAG_BATCH, MAG_CAPACITY,
};
use ldd_alloc::allocator::{stash_capacity, STASH_BATCHES};
use ldd_alloc::host_pages::{set_cpu, HostCache, HostPages};
use proptest::prelude::*;

const NCPUS: usize = 4;
const CTOR_WORD: u64 = 0xc0c0_c0c0_c0c0_c0c0;

fn ctor(p: NonNull<u8>) {
    // SAFETY: the core passes a fresh object of at least 8 bytes, aligned
    // to 8.
    unsafe { p.as_ptr().cast::<u64>().write(CTOR_WORD) };
}

fn config(size: usize, align: usize, flags: CacheFlags, with_ctor: bool) -> CacheConfig {
    CacheConfig {
        name: CacheName::new(b"test"),
        size,
        align,
        flags,
        ctor: if with_ctor { Some(ctor) } else { None },
    }
}

fn new_cache(pages: &Arc<HostPages>, size: usize, flags: CacheFlags, with_ctor: bool) -> HostCache {
    HostCache::new(&config(size, 0, flags, with_ctor), pages.clone(), NCPUS).expect("create")
}

#[derive(Clone, Debug)]
enum Op {
    Create {
        size: usize,
        align_shift: u32,
        hwcache: bool,
        poison: bool,
        red_zone: bool,
        ctor: bool,
    },
    Alloc {
        cache: usize,
        cpu: usize,
        n: usize,
    },
    Free {
        cache: usize,
        obj: usize,
        cpu: usize,
    },
    FreeTwice {
        cache: usize,
        obj: usize,
        cpu: usize,
    },
    ForeignOther {
        cache: usize,
        other: usize,
        obj: usize,
    },
    ForeignHeap {
        cache: usize,
    },
    ForeignHeader {
        cache: usize,
        obj: usize,
        delta: usize,
    },
    Misaligned {
        cache: usize,
        obj: usize,
        delta: usize,
    },
    RedzoneSmash {
        cache: usize,
        obj: usize,
        left: bool,
    },
    UafWrite {
        cache: usize,
        obj: usize,
        at: usize,
    },
    InjectFail {
        n: usize,
    },
    Shrink {
        cache: usize,
    },
    Destroy {
        cache: usize,
    },
    /// Frees again a pointer freed earlier (and not allocated since): its
    /// slab may be gone, reused by another cache, or still there; every
    /// case must be refused, never crash (a stale slab hint would).
    StaleFree {
        pick: usize,
        cpu: usize,
    },
    /// Makes every magazine of a cache look busy (direct depot path).
    Busy {
        cache: usize,
        on: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let idx = 0usize..64;
    prop_oneof![
        2 => (8usize..=8192, 0u32..=7, any::<bool>(), prop::bool::weighted(0.3),
              prop::bool::weighted(0.3), prop::bool::weighted(0.2))
            .prop_map(|(size, align_shift, hwcache, poison, red_zone, ctor)| Op::Create {
                size, align_shift, hwcache, poison, red_zone, ctor
            }),
        30 => (idx.clone(), 0usize..NCPUS, 1usize..40).prop_map(|(cache, cpu, n)| Op::Alloc { cache, cpu, n }),
        30 => (idx.clone(), 0usize..1000, 0usize..NCPUS).prop_map(|(cache, obj, cpu)| Op::Free { cache, obj, cpu }),
        3 => (idx.clone(), 0usize..1000, 0usize..NCPUS).prop_map(|(cache, obj, cpu)| Op::FreeTwice { cache, obj, cpu }),
        2 => (idx.clone(), idx.clone(), 0usize..1000).prop_map(|(cache, other, obj)| Op::ForeignOther { cache, other, obj }),
        1 => idx.clone().prop_map(|cache| Op::ForeignHeap { cache }),
        1 => (idx.clone(), 0usize..1000, 0usize..48).prop_map(|(cache, obj, delta)| Op::ForeignHeader { cache, obj, delta }),
        2 => (idx.clone(), 0usize..1000, 1usize..8192).prop_map(|(cache, obj, delta)| Op::Misaligned { cache, obj, delta }),
        2 => (idx.clone(), 0usize..1000, any::<bool>()).prop_map(|(cache, obj, left)| Op::RedzoneSmash { cache, obj, left }),
        2 => (idx.clone(), 0usize..1000, 0usize..8192).prop_map(|(cache, obj, at)| Op::UafWrite { cache, obj, at }),
        1 => (0usize..3).prop_map(|n| Op::InjectFail { n }),
        2 => idx.clone().prop_map(|cache| Op::Shrink { cache }),
        1 => idx.clone().prop_map(|cache| Op::Destroy { cache }),
        3 => (0usize..64, 0usize..NCPUS).prop_map(|(pick, cpu)| Op::StaleFree { pick, cpu }),
        2 => (idx, any::<bool>()).prop_map(|(cache, on)| Op::Busy { cache, on }),
    ]
}

/// One cache and what the test expects of it.
struct Model {
    env: HostCache,
    live: Vec<(usize, u8)>,
    dead: bool,
    allocs: u64,
    frees: u64,
    foreign: u64,
    misaligned: u64,
    double: u64,
    redzone: u64,
    /// Free objects written to after free, not yet detected.
    corrupted: HashSet<usize>,
    /// Corruptions whose slab was freed before detection.
    corruptions_dropped: u64,
    corruptions: u64,
}

impl Model {
    fn new(env: HostCache) -> Self {
        Self {
            env,
            live: Vec::new(),
            dead: false,
            allocs: 0,
            frees: 0,
            foreign: 0,
            misaligned: 0,
            double: 0,
            redzone: 0,
            corrupted: HashSet::new(),
            corruptions_dropped: 0,
            corruptions: 0,
        }
    }

    fn tag_range(&self) -> (usize, usize) {
        let l = self.env.layout();
        let start = if l.ctor().is_some() { 8 } else { 0 };
        (start, l.size())
    }

    fn fill(&self, p: usize, tag: u8) {
        let (s, e) = self.tag_range();
        // SAFETY: the object is live and ours; [s, e) is inside it.
        unsafe { std::ptr::write_bytes((p + s) as *mut u8, tag, e - s) };
    }

    fn intact(&self, p: usize, tag: u8) -> bool {
        let (s, e) = self.tag_range();
        // SAFETY: as in `fill`.
        let b = unsafe { std::slice::from_raw_parts((p + s) as *const u8, e - s) };
        b.iter().all(|x| *x == tag)
    }

    /// Drops pending corruptions whose run has been returned.
    /// `released_quarantine` is how many quarantined objects went with
    /// those runs: corruptions already caught (counted in `poison_errors`,
    /// the object quarantined) whose slab was then freed, which are not
    /// dropped ones.
    fn forget_unmapped(&mut self, host: &HostPages, released_quarantine: usize) {
        let gone: Vec<usize> = self
            .corrupted
            .iter()
            .copied()
            .filter(|p| host.run_containing(*p, 1).is_none())
            .collect();
        let caught = released_quarantine.min(gone.len());
        self.corruptions_dropped += (gone.len() - caught) as u64;
        for p in gone {
            self.corrupted.remove(&p);
        }
    }

    fn check(&self) {
        let s = allocator::stats(&self.env);
        let l = self.env.layout();
        assert_eq!(allocator::check(&self.env), Ok(()));
        assert_eq!(s.allocs, self.allocs, "allocs");
        assert_eq!(s.frees, self.frees, "frees");
        assert_eq!(s.active_objs - s.cached_objs, self.live.len(), "live");
        assert_eq!(s.refused_foreign, self.foreign, "foreign");
        assert_eq!(s.refused_misaligned, self.misaligned, "misaligned");
        assert_eq!(s.refused_double, self.double, "double");
        assert_eq!(s.redzone_errors, self.redzone, "redzone");
        assert!(s.poison_errors <= self.corruptions, "poison");
        assert_eq!(s.num_objs, s.slabs() * l.objects() as usize);
        assert!(s.active_objs + s.quarantined <= s.num_objs);
        assert_eq!(
            s.cached_objs,
            self.env.magazine_lens().iter().sum::<usize>() + s.stashed_objs
        );
        assert!(s.stashed_objs.is_multiple_of(MAG_BATCH), "whole batches");
        assert!(s.stashed_objs <= stash_capacity(l.stride()) * MAG_BATCH);
        assert!(self.env.magazine_lens().iter().all(|n| *n <= MAG_CAPACITY));
        if l.debug() {
            assert_eq!(s.cached_objs, 0, "debug caches bypass magazines");
        }
        assert_eq!(s.slabs_created - s.slabs_freed, s.slabs() as u64);
    }

    fn pages(&self) -> usize {
        let s = allocator::stats(&self.env);
        s.slabs() * s.pagesperslab
    }
}

struct World {
    host: Arc<HostPages>,
    caches: Vec<Model>,
    all_live: HashSet<usize>,
    /// Recently freed objects: (cache index, address).
    freed: Vec<(usize, usize)>,
    tag: u8,
    injected: usize,
}

impl World {
    fn new() -> Self {
        Self {
            host: Arc::new(HostPages::new()),
            caches: Vec::new(),
            all_live: HashSet::new(),
            freed: Vec::new(),
            tag: 0,
            injected: 0,
        }
    }

    fn pick(&self, i: usize) -> Option<usize> {
        (!self.caches.is_empty()).then(|| i % self.caches.len())
    }

    fn alloc_one(&mut self, ci: usize) -> Result<usize, AllocError> {
        self.tag = self.tag.wrapping_add(1) | 1;
        let tag = self.tag;
        let m = &mut self.caches[ci];
        let l = *m.env.layout();
        let failures_before = self.host.failures();
        let r = allocator::alloc(&m.env, PageRequest::KERNEL);
        let p = match r {
            Ok(p) => p.as_ptr() as usize,
            Err(AllocError::NoMemory) => {
                assert!(self.host.failures() > failures_before, "spurious NoMemory");
                return Err(AllocError::NoMemory);
            }
            Err(e) => {
                assert!(m.dead, "unexpected {e:?}");
                return Err(e);
            }
        };
        assert!(!m.dead, "allocation from a destroyed cache");
        assert_eq!(p % l.align(), 0, "alignment");
        let (base, len) = self
            .host
            .run_containing(p, l.size())
            .expect("object outside every live run");
        assert_eq!(len, l.slab_bytes());
        assert_eq!(base, p & !(l.slab_bytes() - 1));
        assert!(self.all_live.insert(p), "object handed out twice");
        assert!(!m.corrupted.contains(&p), "corrupted object handed out");
        if l.ctor().is_some() {
            // SAFETY: live object of at least 8 bytes.
            assert_eq!(
                unsafe { *(p as *const u64) },
                CTOR_WORD,
                "constructed state"
            );
        }
        if l.red_zone() {
            // SAFETY: the red zones of a live object lie inside its slot.
            unsafe {
                assert_eq!(*((p - 1) as *const u8), RED_ACTIVE);
                assert_eq!(*((p + l.size()) as *const u8), RED_ACTIVE);
            }
        }
        if l.poison() {
            // SAFETY: a freshly allocated debug object still carries poison.
            let b = unsafe { std::slice::from_raw_parts(p as *const u8, l.size()) };
            let (last, body) = b.split_last().unwrap();
            assert!(*last == POISON_END && body.iter().all(|x| *x == POISON_FREE));
        }
        m.fill(p, tag);
        m.live.push((p, tag));
        m.allocs += 1;
        Ok(p)
    }

    fn free_at(&mut self, ci: usize, oi: usize) -> Option<usize> {
        let m = &mut self.caches[ci];
        if m.live.is_empty() {
            return None;
        }
        let (p, tag) = m.live.swap_remove(oi % m.live.len());
        assert!(m.intact(p, tag), "object contents clobbered while live");
        assert_eq!(
            allocator::free(&m.env, NonNull::new(p as *mut u8).unwrap()),
            Ok(())
        );
        m.frees += 1;
        self.all_live.remove(&p);
        if self.freed.len() >= 64 {
            self.freed.remove(0);
        }
        self.freed.push((ci, p));
        Some(p)
    }

    fn refuse(&mut self, ci: usize, p: usize, want: FreeError) {
        let m = &mut self.caches[ci];
        let r = allocator::free(&m.env, NonNull::new(p as *mut u8).unwrap());
        assert_eq!(r, Err(want), "free of {p:#x}");
        match want {
            FreeError::Foreign => m.foreign += 1,
            FreeError::Misaligned => m.misaligned += 1,
            FreeError::DoubleFree => m.double += 1,
            FreeError::RedZone => m.redzone += 1,
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Create {
                size,
                align_shift,
                hwcache,
                poison,
                red_zone,
                ctor: with_ctor,
            } => {
                if self.caches.len() >= 8 {
                    return;
                }
                let flags = CacheFlags {
                    hwcache_align: hwcache,
                    poison,
                    red_zone,
                };
                let align = if align_shift == 0 {
                    0
                } else {
                    1 << align_shift
                };
                let env = HostCache::new(
                    &config(size, align, flags, with_ctor),
                    self.host.clone(),
                    NCPUS,
                )
                .expect("create");
                if align > 0 {
                    assert_eq!(env.layout().align() % align, 0);
                }
                if hwcache {
                    assert_eq!(env.layout().align() % 64, 0);
                }
                self.caches.push(Model::new(env));
            }
            Op::Alloc { cache, cpu, n } => {
                let Some(ci) = self.pick(cache) else { return };
                set_cpu(cpu);
                for _ in 0..n {
                    if self.alloc_one(ci).is_err() {
                        break;
                    }
                }
            }
            Op::Free { cache, obj, cpu } => {
                let Some(ci) = self.pick(cache) else { return };
                set_cpu(cpu);
                self.free_at(ci, obj);
            }
            Op::FreeTwice { cache, obj, cpu } => {
                let Some(ci) = self.pick(cache) else { return };
                set_cpu(cpu);
                if let Some(p) = self.free_at(ci, obj) {
                    set_cpu(cpu + 1);
                    self.refuse(ci, p, FreeError::DoubleFree);
                }
            }
            Op::ForeignOther { cache, other, obj } => {
                let (Some(ci), Some(oi)) = (self.pick(cache), self.pick(other)) else {
                    return;
                };
                if ci == oi || self.caches[oi].live.is_empty() {
                    return;
                }
                let o = &self.caches[oi];
                let p = o.live[obj % o.live.len()].0;
                self.refuse(ci, p, FreeError::Foreign);
            }
            Op::ForeignHeap { cache } => {
                let Some(ci) = self.pick(cache) else { return };
                let b = Box::new([0u64; 8]);
                let p = b.as_ptr() as usize;
                self.refuse(ci, p, FreeError::Foreign);
                drop(b);
            }
            Op::ForeignHeader { cache, obj, delta } => {
                let Some(ci) = self.pick(cache) else { return };
                let m = &self.caches[ci];
                if m.live.is_empty() {
                    return;
                }
                let l = m.env.layout();
                let base = m.live[obj % m.live.len()].0 & !(l.slab_bytes() - 1);
                self.refuse(ci, base + delta, FreeError::Foreign);
            }
            Op::Misaligned { cache, obj, delta } => {
                let Some(ci) = self.pick(cache) else { return };
                let m = &self.caches[ci];
                if m.live.is_empty() {
                    return;
                }
                let l = *m.env.layout();
                let p = m.live[obj % m.live.len()].0;
                let base = p & !(l.slab_bytes() - 1);
                let mut q = p + delta % l.stride();
                if q == p {
                    q += 1;
                }
                // Stay inside the object area of the slab.
                if q >= base + l.slab_bytes() {
                    q = base + l.slab_bytes() - 1;
                }
                let last = base + l.first_object() + (l.objects() as usize - 1) * l.stride();
                let want = if q > last || !(q - base - l.first_object()).is_multiple_of(l.stride())
                {
                    FreeError::Misaligned
                } else {
                    return;
                };
                self.refuse(ci, q, want);
            }
            Op::RedzoneSmash { cache, obj, left } => {
                let Some(ci) = self.pick(cache) else { return };
                let m = &self.caches[ci];
                if m.live.is_empty() || !m.env.layout().red_zone() {
                    return;
                }
                let l = *m.env.layout();
                let p = m.live[obj % m.live.len()].0;
                let at = if left { p - 1 } else { p + l.size() };
                // SAFETY: red zone bytes of a live slot.
                unsafe { *(at as *mut u8) = 0x42 };
                self.refuse(ci, p, FreeError::RedZone);
                // SAFETY: as above; repair, then the free must succeed.
                unsafe { *(at as *mut u8) = RED_ACTIVE };
                let oi = self.caches[ci]
                    .live
                    .iter()
                    .position(|(q, _)| *q == p)
                    .unwrap();
                self.free_at(ci, oi);
            }
            Op::UafWrite { cache, obj, at } => {
                let Some(ci) = self.pick(cache) else { return };
                if !self.caches[ci].env.layout().poison() {
                    return;
                }
                if let Some(p) = self.free_at(ci, obj) {
                    let m = &mut self.caches[ci];
                    let off = at % m.env.layout().size();
                    // SAFETY: the object was just freed to its (live) slab;
                    // this is the use-after-free write under test.
                    unsafe { *((p + off) as *mut u8) ^= 0x5a };
                    m.corrupted.insert(p);
                    m.corruptions += 1;
                }
            }
            Op::InjectFail { n } => {
                self.host.fail_next(n);
                self.injected += n;
            }
            Op::Shrink { cache } => {
                let Some(ci) = self.pick(cache) else { return };
                let before = self.host.pages_out();
                let quarantined = allocator::stats(&self.caches[ci].env).quarantined;
                let freed = allocator::shrink(&self.caches[ci].env);
                assert_eq!(self.host.pages_out(), before - freed);
                let s = allocator::stats(&self.caches[ci].env);
                assert_eq!(s.slabs_empty, 0);
                assert_eq!(s.cached_objs, 0);
                let host = self.host.clone();
                self.caches[ci].forget_unmapped(&host, quarantined - s.quarantined);
            }
            Op::StaleFree { pick, cpu } => {
                if self.freed.is_empty() {
                    return;
                }
                let (ci, p) = self.freed[pick % self.freed.len()];
                if self.all_live.contains(&p) {
                    return;
                }
                set_cpu(cpu);
                let m = &mut self.caches[ci];
                match allocator::free(&m.env, NonNull::new(p as *mut u8).unwrap()) {
                    Ok(()) => panic!("stale free of {p:#x} accepted"),
                    Err(FreeError::Foreign) => m.foreign += 1,
                    Err(FreeError::Misaligned) => m.misaligned += 1,
                    Err(FreeError::DoubleFree) => m.double += 1,
                    Err(FreeError::RedZone) => m.redzone += 1,
                }
            }
            Op::Busy { cache, on } => {
                let Some(ci) = self.pick(cache) else { return };
                self.caches[ci].env.set_magazines_busy(on);
            }
            Op::Destroy { cache } => {
                let Some(ci) = self.pick(cache) else { return };
                let m = &mut self.caches[ci];
                let quarantined = allocator::stats(&m.env).quarantined;
                let r = allocator::destroy(&m.env);
                if m.live.is_empty() {
                    assert_eq!(r, Ok(()));
                    m.dead = true;
                    assert_eq!(allocator::stats(&m.env).slabs(), 0);
                    let host = self.host.clone();
                    self.caches[ci].forget_unmapped(&host, quarantined);
                } else {
                    assert_eq!(r, Err(DestroyError::Busy { live: m.live.len() }));
                }
            }
        }
    }

    fn check(&self) {
        for m in &self.caches {
            m.check();
        }
        let pages: usize = self.caches.iter().map(|m| m.pages()).sum();
        assert_eq!(self.host.pages_out(), pages, "pages out vs slabs");
    }

    /// Allocates until a new slab is needed, so every free object has been
    /// examined, then checks every corruption was caught.
    fn sweep_poison(&mut self) {
        self.host.fail_next(0);
        for ci in 0..self.caches.len() {
            let m = &self.caches[ci];
            if m.dead || !m.env.layout().poison() {
                continue;
            }
            let created = allocator::stats(&m.env).slabs_created;
            let bound = allocator::stats(&m.env).num_objs + 1;
            for _ in 0..bound {
                self.alloc_one(ci).expect("alloc");
                if allocator::stats(&self.caches[ci].env).slabs_created != created {
                    break;
                }
            }
            let m = &self.caches[ci];
            let s = allocator::stats(&m.env);
            assert_eq!(
                s.poison_errors,
                m.corruptions - m.corruptions_dropped,
                "undetected use-after-free: {} corruptions, {} dropped, {s:?}",
                m.corruptions,
                m.corruptions_dropped
            );
        }
    }

    fn teardown(mut self) {
        self.sweep_poison();
        self.check();
        for ci in 0..self.caches.len() {
            while self.free_at(ci, 0).is_some() {}
            let m = &self.caches[ci];
            allocator::shrink(&m.env);
            let s = allocator::stats(&m.env);
            assert_eq!(s.active_objs, 0);
            assert_eq!(s.slabs_partial + s.slabs_empty, 0);
            if s.quarantined == 0 {
                assert_eq!(s.slabs(), 0, "slabs left after full free + shrink");
            }
            m.check();
        }
        for m in &self.caches {
            assert_eq!(allocator::destroy(&m.env), Ok(()));
        }
        assert_eq!(self.host.pages_out(), 0, "pages not returned");
        assert_eq!(self.host.live_runs(), 0);
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn cache_model(first in (8usize..=8192, any::<bool>(), any::<bool>()), ops in prop::collection::vec(op(), 1..300)) {
        let mut w = World::new();
        let (size, poison, red_zone) = first;
        w.apply(&Op::Create { size, align_shift: 0, hwcache: false, poison, red_zone, ctor: false });
        for op in &ops {
            w.apply(op);
            w.check();
        }
        w.teardown();
    }
}

/// A slab hint must not outlive its slab: after shrink returns the pages,
/// a stale free into them is refused by reading the (unmapped) header,
/// not let through by the hint (which would write to unmapped memory).
#[test]
fn slab_hints_do_not_outlive_their_slab() {
    let pages = Arc::new(HostPages::new());
    let env = new_cache(&pages, 256, CacheFlags::default(), false);
    set_cpu(0);
    let p = allocator::alloc(&env, PageRequest::KERNEL).unwrap();
    allocator::free(&env, p).unwrap(); // validated: its slab is hinted
    assert_eq!(allocator::free(&env, p), Err(FreeError::DoubleFree));
    assert!(allocator::shrink(&env) > 0);
    assert_eq!(pages.pages_out(), 0);
    assert_eq!(allocator::free(&env, p), Err(FreeError::Foreign));
    let s = allocator::stats(&env);
    assert_eq!((s.refused_double, s.refused_foreign), (1, 1));
    assert_eq!(allocator::destroy(&env), Ok(()));
}

/// With every magazine busy (an interrupt on top of the holder), alloc and
/// free go to the depot directly, with the same refusals and counts.
#[test]
fn busy_magazines_take_the_direct_path() {
    let pages = Arc::new(HostPages::new());
    let env = new_cache(&pages, 64, CacheFlags::default(), false);
    set_cpu(0);
    let cached = allocator::alloc(&env, PageRequest::KERNEL).unwrap();
    allocator::free(&env, cached).unwrap();
    let in_magazine = allocator::stats(&env).cached_objs;
    assert!(in_magazine > 0);
    env.set_magazines_busy(true);
    let objs: Vec<_> = (0..100)
        .map(|_| allocator::alloc(&env, PageRequest::KERNEL).unwrap())
        .collect();
    assert!(
        !objs.contains(&cached),
        "a busy magazine's object was handed out"
    );
    for p in &objs {
        allocator::free(&env, *p).unwrap();
    }
    assert_eq!(allocator::free(&env, objs[0]), Err(FreeError::DoubleFree));
    let s = allocator::stats(&env);
    assert_eq!((s.allocs, s.frees, s.refused_double), (101, 101, 1));
    assert_eq!((s.cpu_alloc_hits, s.cpu_free_hits), (0, 1));
    assert_eq!(s.cached_objs, in_magazine, "the magazine was not touched");
    env.set_magazines_busy(false);
    assert_eq!(allocator::alloc(&env, PageRequest::KERNEL), Ok(cached));
    allocator::free(&env, cached).unwrap();
    assert_eq!(allocator::check(&env), Ok(()));
    allocator::shrink(&env);
    assert_eq!(allocator::destroy(&env), Ok(()));
    assert_eq!(pages.pages_out(), 0);
}

#[test]
fn magazines_absorb_steady_state() {
    let pages = Arc::new(HostPages::new());
    let env = new_cache(&pages, 64, CacheFlags::default(), false);
    set_cpu(0);
    let mut v = Vec::new();
    for _ in 0..1000 {
        v.push(allocator::alloc(&env, PageRequest::KERNEL).unwrap());
        let p = v.pop().unwrap();
        allocator::free(&env, p).unwrap();
    }
    let s = allocator::stats(&env);
    assert_eq!((s.allocs, s.frees), (1000, 1000));
    assert_eq!(s.refills, 1);
    assert_eq!(s.cpu_alloc_hits, 999);
    assert_eq!(s.cpu_free_hits, 1000);
    assert_eq!(s.drains, 0);
    // Free on another CPU: drains happen once its magazine fills.
    let objs: Vec<_> = (0..100)
        .map(|_| allocator::alloc(&env, PageRequest::KERNEL).unwrap())
        .collect();
    set_cpu(1);
    for p in objs {
        allocator::free(&env, p).unwrap();
    }
    let s = allocator::stats(&env);
    // Full after MAG_CAPACITY frees, then a drain every MAG_BATCH.
    let want = ((100 - MAG_CAPACITY) / allocator::MAG_BATCH + 1) as u64;
    assert!(s.drains >= want, "{s:?}");
    assert!(allocator::shrink(&env) > 0);
    assert_eq!(pages.pages_out(), 0);
    allocator::destroy(&env).unwrap();
}

/// A burst beyond the magazine drains whole batches to the depot's stash
/// and refills from it: no object goes back to its slab while the stash
/// has room, the stash never exceeds its capacity, the batches are
/// handed out again (alloc and alloc_bulk), and double frees of stashed
/// objects are still refused. Shrink empties the stash.
#[test]
fn bursts_go_through_the_stash() {
    let pages = Arc::new(HostPages::new());
    let env = new_cache(&pages, 256, CacheFlags::default(), false);
    set_cpu(0);
    let cap = stash_capacity(env.layout().stride());
    assert!((1..=STASH_BATCHES).contains(&cap));
    let burst = MAG_CAPACITY + cap * MAG_BATCH;
    let objs: Vec<_> = (0..burst)
        .map(|_| allocator::alloc(&env, PageRequest::KERNEL).unwrap())
        .collect();
    let slabs_before = allocator::stats(&env).slabs();
    for p in &objs {
        allocator::free(&env, *p).unwrap();
    }
    let s = allocator::stats(&env);
    assert_eq!(s.stashed_objs, cap * MAG_BATCH, "{s:?}");
    assert!(s.cached_objs > s.stashed_objs);
    assert_eq!(
        s.active_objs, s.cached_objs,
        "stashed objects stay out of their slabs"
    );
    // A stashed object is free: freeing it again is refused.
    assert_eq!(allocator::free(&env, objs[0]), Err(FreeError::DoubleFree));
    // One more batch: the stash is full, so this one goes to the slabs.
    let more: Vec<_> = (0..MAG_BATCH)
        .map(|_| allocator::alloc(&env, PageRequest::KERNEL).unwrap())
        .collect();
    for p in &more {
        allocator::free(&env, *p).unwrap();
    }
    let s = allocator::stats(&env);
    assert!(s.stashed_objs <= cap * MAG_BATCH);
    // As many again come from magazine and stash: no new slab.
    let cached = s.cached_objs;
    let again: Vec<_> = (0..cached)
        .map(|_| allocator::alloc(&env, PageRequest::KERNEL).unwrap())
        .collect();
    let set: HashSet<_> = again.iter().collect();
    assert_eq!(set.len(), cached, "distinct objects");
    let s = allocator::stats(&env);
    assert_eq!(s.stashed_objs, 0);
    assert_eq!(s.slabs(), slabs_before, "{s:?}");
    for p in &again {
        allocator::free(&env, *p).unwrap();
    }
    // alloc_bulk takes whole stashed batches.
    let stashed = allocator::stats(&env).stashed_objs;
    assert!(stashed >= MAG_BATCH);
    let mut out = vec![std::ptr::null_mut(); stashed + MAG_CAPACITY];
    allocator::alloc_bulk(&env, PageRequest::KERNEL, &mut out).unwrap();
    let s = allocator::stats(&env);
    assert_eq!(s.stashed_objs, 0);
    assert_eq!(s.active_objs - s.cached_objs, out.len());
    assert_eq!(allocator::free_bulk(&env, &out), 0);
    assert_eq!(allocator::check(&env), Ok(()));
    assert!(allocator::shrink(&env) > 0);
    let s = allocator::stats(&env);
    assert_eq!((s.stashed_objs, s.cached_objs, s.active_objs), (0, 0, 0));
    assert_eq!(pages.pages_out(), 0);
    allocator::destroy(&env).unwrap();
}

/// Objects parked in the stash are not lost to the direct path (a busy
/// magazine): with the slabs dry and the page source failing, a direct
/// allocation takes the stash's objects back to their slabs and succeeds
/// instead of failing for memory (found in review: it looked at the slabs
/// only).
#[test]
fn stash_serves_the_direct_path() {
    let pages = Arc::new(HostPages::new());
    let env = new_cache(&pages, 256, CacheFlags::default(), false);
    set_cpu(0);
    let cap = stash_capacity(env.layout().stride());
    let burst = MAG_CAPACITY + cap * MAG_BATCH;
    let objs: Vec<_> = (0..burst)
        .map(|_| allocator::alloc(&env, PageRequest::KERNEL).unwrap())
        .collect();
    for p in &objs {
        allocator::free(&env, *p).unwrap();
    }
    let s = allocator::stats(&env);
    assert!(s.stashed_objs >= MAG_BATCH, "{s:?}");
    let in_slabs = s.num_objs - s.active_objs;
    env.set_magazines_busy(true);
    pages.fail_next(usize::MAX / 2);
    let got: Vec<_> = (0..in_slabs + s.stashed_objs)
        .map(|i| {
            allocator::alloc(&env, PageRequest::KERNEL)
                .unwrap_or_else(|e| panic!("direct allocation {i} of {in_slabs} + stash: {e:?}"))
        })
        .collect();
    assert_eq!(allocator::stats(&env).stashed_objs, 0);
    env.set_magazines_busy(false);
    pages.fail_next(0);
    for p in got {
        allocator::free(&env, p).unwrap();
    }
    assert_eq!(allocator::check(&env), Ok(()));
    allocator::shrink(&env);
    assert_eq!(pages.pages_out(), 0);
    allocator::destroy(&env).unwrap();
}

/// Large objects stash fewer batches (a bound on the memory the stash
/// keeps from being given back).
#[test]
fn stash_capacity_shrinks_with_object_size() {
    assert_eq!(stash_capacity(32), STASH_BATCHES);
    assert_eq!(stash_capacity(4096), 1);
    assert_eq!(stash_capacity(8192), 0, "no stash past 4 KiB objects");
    assert_eq!(stash_capacity(1 << 20), 0);
    assert!(stash_capacity(1024) * MAG_BATCH * 1024 <= allocator::depot::STASH_BYTES);
}

#[test]
fn refusals_leave_cache_consistent() {
    let pages = Arc::new(HostPages::new());
    let a = new_cache(&pages, 100, CacheFlags::default(), false);
    let b = new_cache(&pages, 100, CacheFlags::default(), false);
    let p = allocator::alloc(&a, PageRequest::KERNEL).unwrap();
    let q = allocator::alloc(&b, PageRequest::KERNEL).unwrap();
    let at = |x: usize| NonNull::new(x as *mut u8).unwrap();
    let base = p.as_ptr() as usize & !(a.layout().slab_bytes() - 1);
    assert_eq!(allocator::free(&a, q), Err(FreeError::Foreign));
    assert_eq!(allocator::free(&a, at(base)), Err(FreeError::Foreign));
    assert_eq!(allocator::free(&a, at(base + 8)), Err(FreeError::Foreign));
    let heap = Box::new(0u64);
    assert_eq!(
        allocator::free(&a, at(&*heap as *const u64 as usize)),
        Err(FreeError::Foreign)
    );
    assert_eq!(
        allocator::free(&a, at(p.as_ptr() as usize + 4)),
        Err(FreeError::Misaligned)
    );
    assert_eq!(
        allocator::free(&a, at(base + a.layout().slab_bytes() - 1)),
        Err(FreeError::Misaligned)
    );
    assert_eq!(allocator::free(&a, p), Ok(()));
    assert_eq!(allocator::free(&a, p), Err(FreeError::DoubleFree));
    let s = allocator::stats(&a);
    assert_eq!(
        (s.refused_foreign, s.refused_misaligned, s.refused_double),
        (4, 2, 1)
    );
    assert_eq!(allocator::check(&a), Ok(()));
    assert_eq!(allocator::destroy(&b), Err(DestroyError::Busy { live: 1 }));
    allocator::free(&b, q).unwrap();
    allocator::destroy(&a).unwrap();
    allocator::destroy(&b).unwrap();
    assert_eq!(
        allocator::alloc(&a, PageRequest::KERNEL),
        Err(AllocError::Destroyed)
    );
    // A stale pointer into a destroyed cache is foreign, not a crash.
    assert_eq!(allocator::free(&a, p), Err(FreeError::Foreign));
    assert_eq!(pages.pages_out(), 0);
}

#[test]
fn poison_detects_use_after_free_and_quarantines() {
    let pages = Arc::new(HostPages::new());
    let flags = CacheFlags {
        poison: true,
        ..CacheFlags::default()
    };
    let env = new_cache(&pages, 128, flags, false);
    let p = allocator::alloc(&env, PageRequest::KERNEL).unwrap();
    allocator::free(&env, p).unwrap();
    // SAFETY: use after free, on purpose; the slab is still mapped.
    unsafe { *p.as_ptr().add(5) = 0 };
    let q = allocator::alloc(&env, PageRequest::KERNEL).unwrap();
    assert_ne!(p, q, "the corrupted object must not be handed out");
    let s = allocator::stats(&env);
    assert_eq!((s.poison_errors, s.quarantined), (1, 1));
    // The quarantined object is not allocated: freeing it is a double free.
    assert_eq!(allocator::free(&env, p), Err(FreeError::DoubleFree));
    allocator::free(&env, q).unwrap();
    assert_eq!(allocator::check(&env), Ok(()));
    assert_eq!(allocator::shrink(&env), 1);
    assert_eq!(allocator::stats(&env).quarantined, 0);
    allocator::destroy(&env).unwrap();
    assert_eq!(pages.pages_out(), 0);
}

#[test]
fn red_zone_overrun_is_refused_and_counted() {
    let pages = Arc::new(HostPages::new());
    let flags = CacheFlags {
        red_zone: true,
        ..CacheFlags::default()
    };
    let env = new_cache(&pages, 24, flags, false);
    let p = allocator::alloc(&env, PageRequest::KERNEL).unwrap();
    // SAFETY: one byte past the object: its right red zone.
    unsafe { *p.as_ptr().add(24) = 0 };
    assert_eq!(allocator::free(&env, p), Err(FreeError::RedZone));
    assert_eq!(allocator::stats(&env).redzone_errors, 1);
    assert_eq!(
        allocator::destroy(&env),
        Err(DestroyError::Busy { live: 1 })
    );
    // SAFETY: repair it.
    unsafe { *p.as_ptr().add(24) = RED_ACTIVE };
    allocator::free(&env, p).unwrap();
    // A write into the red zone of a free object is caught on allocation.
    // SAFETY: the slot is free but its slab is mapped.
    unsafe { *p.as_ptr().sub(1) = 0 };
    let q = allocator::alloc(&env, PageRequest::KERNEL).unwrap();
    assert_ne!(p, q);
    let s = allocator::stats(&env);
    assert_eq!((s.redzone_errors, s.quarantined), (2, 1));
    allocator::free(&env, q).unwrap();
    allocator::destroy(&env).unwrap();
    assert_eq!(pages.pages_out(), 0);
}

#[test]
fn ctor_state_survives_and_poison_is_ignored() {
    let pages = Arc::new(HostPages::new());
    let flags = CacheFlags {
        poison: true,
        red_zone: true,
        ..CacheFlags::default()
    };
    let env = new_cache(&pages, 8, flags, true);
    assert!(!env.layout().poison());
    let objs: Vec<_> = (0..50)
        .map(|_| allocator::alloc(&env, PageRequest::KERNEL).unwrap())
        .collect();
    for p in &objs {
        // SAFETY: live 8-byte object.
        assert_eq!(unsafe { *p.as_ptr().cast::<u64>() }, CTOR_WORD);
        allocator::free(&env, *p).unwrap();
    }
    let again = allocator::alloc(&env, PageRequest::KERNEL).unwrap();
    // SAFETY: live object.
    assert_eq!(unsafe { *again.as_ptr().cast::<u64>() }, CTOR_WORD);
    allocator::free(&env, again).unwrap();
    allocator::destroy(&env).unwrap();
}

#[test]
fn zones_and_page_failures_pass_through() {
    let pages = Arc::new(HostPages::new());
    let env = new_cache(&pages, 4000, CacheFlags::default(), false);
    let dma = PageRequest {
        zone: Zone::Dma,
        ..PageRequest::KERNEL
    };
    let p = allocator::alloc(&env, dma).unwrap();
    assert_eq!(pages.zone_pages(Zone::Dma), 8);
    pages.set_fail_all(true);
    let held: Vec<_> = (0..7)
        .map(|_| allocator::alloc(&env, dma).unwrap())
        .collect();
    assert_eq!(allocator::alloc(&env, dma), Err(AllocError::NoMemory));
    pages.set_fail_all(false);
    for q in held.into_iter().chain([p]) {
        allocator::free(&env, q).unwrap();
    }
    allocator::destroy(&env).unwrap();
    assert_eq!(pages.pages_out(), 0);
}

#[test]
fn threads_hammer_one_cache() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 20_000;
    let pages = Arc::new(HostPages::new());
    let env = Arc::new(
        HostCache::new(
            &config(48, 0, CacheFlags::default(), false),
            pages.clone(),
            THREADS,
        )
        .unwrap(),
    );
    // Objects handed from one thread to another (remote frees).
    let mailbox: Arc<Mutex<Vec<usize>>> = Arc::new(Mutex::new(Vec::new()));
    let live = Arc::new(Mutex::new(HashSet::new()));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (env, mailbox, live) = (env.clone(), mailbox.clone(), live.clone());
            std::thread::spawn(move || {
                set_cpu(t);
                let mut mine: Vec<usize> = Vec::new();
                let mut x = 0x9e37_79b9u32.wrapping_mul(t as u32 + 1);
                for i in 0..ROUNDS {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    match x % 8 {
                        0..=3 => {
                            let p = allocator::alloc(&*env, PageRequest::KERNEL)
                                .unwrap()
                                .as_ptr() as usize;
                            assert!(live.lock().unwrap().insert(p), "handed out twice");
                            // SAFETY: a live 48-byte object of ours.
                            unsafe { std::ptr::write_bytes(p as *mut u8, t as u8, 48) };
                            mine.push(p);
                        }
                        4..=5 if !mine.is_empty() => {
                            let p = mine.swap_remove(x as usize % mine.len());
                            // SAFETY: still ours.
                            let b = unsafe { std::slice::from_raw_parts(p as *const u8, 48) };
                            assert!(b.iter().all(|v| *v == t as u8), "clobbered");
                            assert!(live.lock().unwrap().remove(&p));
                            allocator::free(&*env, NonNull::new(p as *mut u8).unwrap()).unwrap();
                        }
                        6 if !mine.is_empty() => {
                            let p = mine.swap_remove(0);
                            assert!(live.lock().unwrap().remove(&p));
                            mailbox.lock().unwrap().push(p);
                        }
                        7 => {
                            let got = std::mem::take(&mut *mailbox.lock().unwrap());
                            for p in got {
                                allocator::free(&*env, NonNull::new(p as *mut u8).unwrap())
                                    .unwrap();
                            }
                            if i % 512 == 0 {
                                allocator::shrink(&*env);
                            }
                        }
                        _ => {}
                    }
                }
                for p in mine {
                    assert!(live.lock().unwrap().remove(&p));
                    allocator::free(&*env, NonNull::new(p as *mut u8).unwrap()).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for p in std::mem::take(&mut *mailbox.lock().unwrap()) {
        allocator::free(&*env, NonNull::new(p as *mut u8).unwrap()).unwrap();
    }
    assert!(live.lock().unwrap().is_empty());
    let s = allocator::stats(&*env);
    assert_eq!(s.allocs, s.frees);
    assert_eq!(s.active_objs, s.cached_objs);
    assert_eq!(allocator::check(&*env), Ok(()));
    allocator::shrink(&*env);
    assert_eq!(pages.pages_out(), 0);
    allocator::destroy(&*env).unwrap();
}

/// Every thread frees every object at once while another shrinks: exactly
/// one free per object succeeds; the others are refused as double frees, or
/// as foreign once the emptied slab has been returned (never a crash: the
/// lock-free validation runs inside `with_magazine`, which `quiesce` waits
/// for before pages are unmapped).
#[test]
fn racing_double_frees() {
    const THREADS: usize = 4;
    let pages = Arc::new(HostPages::new());
    let env = Arc::new(
        HostCache::new(
            &config(200, 0, CacheFlags::default(), false),
            pages.clone(),
            THREADS,
        )
        .unwrap(),
    );
    for round in 0..50 {
        let objs: Vec<usize> = (0..300)
            .map(|_| {
                allocator::alloc(&*env, PageRequest::KERNEL)
                    .unwrap()
                    .as_ptr() as usize
            })
            .collect();
        let objs = Arc::new(objs);
        let ok = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (env, objs, ok) = (env.clone(), objs.clone(), ok.clone());
                std::thread::spawn(move || {
                    set_cpu(t);
                    for (i, p) in objs.iter().enumerate() {
                        let p = *objs.get((i + t * 7 + round) % objs.len()).unwrap_or(p);
                        match allocator::free(&*env, NonNull::new(p as *mut u8).unwrap()) {
                            Ok(()) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(FreeError::DoubleFree) | Err(FreeError::Foreign) => {}
                            Err(e) => panic!("{e:?}"),
                        }
                        if t == 0 && i % 50 == 0 {
                            allocator::shrink(&*env);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(ok.load(Ordering::Relaxed), objs.len());
        let s = allocator::stats(&*env);
        assert_eq!(
            s.refused_double + s.refused_foreign,
            ((round + 1) * objs.len() * (THREADS - 1)) as u64
        );
        assert_eq!(allocator::check(&*env), Ok(()));
    }
    allocator::shrink(&*env);
    assert_eq!(pages.pages_out(), 0);
    allocator::destroy(&*env).unwrap();
}

#[test]
fn tiny_red_zoned_objects() {
    let pages = Arc::new(HostPages::new());
    let flags = CacheFlags {
        hwcache_align: true,
        red_zone: true,
        ..CacheFlags::default()
    };
    for size in 1..=8 {
        let env = HostCache::new(&config(size, 4, flags, false), pages.clone(), 1).unwrap();
        let v: Vec<_> = (0..100)
            .map(|_| allocator::alloc(&env, PageRequest::KERNEL).unwrap())
            .collect();
        for p in v {
            allocator::free(&env, p).unwrap();
        }
        let s = allocator::stats(&env);
        assert_eq!((s.redzone_errors, s.quarantined), (0, 0), "size {size}");
        allocator::destroy(&env).unwrap();
    }
    assert_eq!(pages.pages_out(), 0);
}

/// `alloc_bulk`/`free_bulk` (the `kmem_cache_alloc_bulk()` contract): all
/// objects distinct valid objects of the cache, across several magazine
/// sections and slabs; all or nothing when the pages run out part way;
/// `free_bulk` validates every object as `free` does.
#[test]
fn bulk_alloc_and_free() {
    for (size, debug) in [(256usize, false), (24, false), (256, true)] {
        let pages = Arc::new(HostPages::new());
        let flags = CacheFlags {
            poison: debug,
            ..CacheFlags::default()
        };
        let env = new_cache(&pages, size, flags, false);
        set_cpu(0);
        // Some objects in the magazine first, so both sources serve.
        let warm = allocator::alloc(&env, PageRequest::KERNEL).unwrap();
        allocator::free(&env, warm).unwrap();
        let mut out = vec![std::ptr::null_mut(); 1000];
        allocator::alloc_bulk(&env, PageRequest::KERNEL, &mut out).unwrap();
        let set: HashSet<usize> = out.iter().map(|p| *p as usize).collect();
        assert_eq!(set.len(), out.len(), "an object handed out twice");
        assert!(out.iter().all(|p| !p.is_null()));
        let s = allocator::stats(&env);
        assert_eq!(s.active_objs - s.cached_objs, 1000, "{s:?}");
        assert_eq!(s.allocs - s.frees, 1000);
        // Each is a live object: freeing one by one works, a second
        // `free_bulk` of the same array is refused object by object.
        assert_eq!(allocator::free(&env, NonNull::new(out[0]).unwrap()), Ok(()));
        assert_eq!(allocator::free_bulk(&env, &out[1..]), 0);
        assert_eq!(allocator::free_bulk(&env, &out), out.len());
        assert_eq!(allocator::stats(&env).refused_double, 1000);
        assert_eq!(allocator::check(&env), Ok(()));
        // All or nothing: the pages fail after a few slabs.
        allocator::shrink(&env);
        pages.fail_after(3, usize::MAX);
        let mut big = vec![std::ptr::null_mut(); 5000];
        assert_eq!(
            allocator::alloc_bulk(&env, PageRequest::KERNEL, &mut big),
            Err(AllocError::NoMemory)
        );
        pages.set_fail_all(false);
        pages.fail_next(0);
        let s = allocator::stats(&env);
        assert_eq!(s.active_objs, s.cached_objs, "a failed bulk kept objects");
        assert_eq!(allocator::check(&env), Ok(()));
        allocator::shrink(&env);
        assert_eq!(allocator::destroy(&env), Ok(()));
        assert_eq!(pages.pages_out(), 0);
    }
}

/// `index_of_offset` (one multiplication by the stride's inverse, see
/// `layout.rs`) against division, at every offset of a slab (every offset
/// up to 64 KiB of larger slabs, and every object start and its
/// neighbours past that), for every object size up to 4 KiB and larger
/// ones, with and without alignment, red zones and poison.
#[test]
fn index_of_offset_matches_division() {
    use ldd_alloc::allocator::CacheLayout;
    let mut sizes: Vec<usize> = (1..=4096).collect();
    sizes.extend([
        4097,
        5000,
        8191,
        8192,
        12_345,
        65_536,
        100_000,
        1 << 20,
        3 << 20,
    ]);
    let mut layouts = 0usize;
    for &size in &sizes {
        for (align, red_zone, poison) in [
            (0, false, false),
            (64, false, false),
            (0, true, false),
            (0, false, true),
        ] {
            if size > 8192 && (red_zone || poison) {
                continue;
            }
            let flags = CacheFlags {
                hwcache_align: align == 64,
                red_zone,
                poison,
            };
            let Ok(l) = CacheLayout::new(&config(size, 0, flags, false)) else {
                continue;
            };
            layouts += 1;
            let (first, stride, objects) = (l.first_object(), l.stride(), l.objects() as usize);
            let want = |off: usize| -> Option<u32> {
                let rel = off.checked_sub(first)?;
                (rel % stride == 0 && rel / stride < objects).then(|| (rel / stride) as u32)
            };
            let slab = l.slab_mask() + 1;
            for off in 0..slab.min(1 << 16) {
                assert_eq!(
                    l.index_of_offset(off),
                    want(off),
                    "size {size} {flags:?} off {off}"
                );
            }
            for i in 0..=objects {
                let start = first + i * stride;
                for off in [
                    start.wrapping_sub(1),
                    start,
                    start + 1,
                    start + 8,
                    slab - 1,
                    usize::MAX,
                ] {
                    assert_eq!(
                        l.index_of_offset(off),
                        want(off),
                        "size {size} {flags:?} off {off}"
                    );
                }
            }
        }
    }
    assert!(layouts > 12_000, "only {layouts} layouts checked");
}

/// A bulk free with everything a caller can get wrong, interleaved with
/// valid objects of several slabs: nulls skipped, each bad entry refused
/// and counted by kind, every valid one freed exactly once (a second bulk
/// free of the same array refuses them all), on a magazine that starts
/// empty, half full and full, and across slabs the CPU has not validated.
#[test]
fn bulk_free_refuses_each_bad_entry() {
    for prefill in [0usize, MAG_CAPACITY / 2, MAG_CAPACITY] {
        let pages = Arc::new(HostPages::new());
        let env = new_cache(&pages, 256, CacheFlags::default(), false);
        let other = new_cache(&pages, 256, CacheFlags::default(), false);
        set_cpu(1);
        let foreign = allocator::alloc(&other, PageRequest::KERNEL)
            .unwrap()
            .as_ptr();
        // Objects from several slabs, allocated on CPU 0, freed on CPU 1
        // (its magazine knows none of their slabs yet).
        set_cpu(0);
        let mut objs = vec![std::ptr::null_mut(); 300];
        allocator::alloc_bulk(&env, PageRequest::KERNEL, &mut objs).unwrap();
        set_cpu(1);
        let mut fill = vec![std::ptr::null_mut(); prefill];
        allocator::alloc_bulk(&env, PageRequest::KERNEL, &mut fill).unwrap();
        assert_eq!(allocator::free_bulk(&env, &fill), 0);
        let mut ptrs = Vec::new();
        let (mut interior, mut misaligned, mut foreigns, mut doubles) = (0, 0, 0, 0);
        for (i, &p) in objs.iter().enumerate() {
            ptrs.push(p);
            match i % 7 {
                0 => ptrs.push(std::ptr::null_mut()),
                1 => {
                    ptrs.push(p.wrapping_add(8));
                    interior += 1;
                }
                2 => {
                    ptrs.push(p.wrapping_add(3));
                    misaligned += 1;
                }
                3 => {
                    ptrs.push(foreign);
                    foreigns += 1;
                }
                4 => {
                    ptrs.push(p);
                    doubles += 1;
                }
                _ => {}
            }
        }
        let before = allocator::stats(&env);
        let refused = allocator::free_bulk(&env, &ptrs);
        let s = allocator::stats(&env);
        assert_eq!(
            refused,
            interior + misaligned + foreigns + doubles,
            "prefill {prefill}"
        );
        assert_eq!(s.refused_double - before.refused_double, doubles as u64);
        assert_eq!(
            (s.refused_misaligned - before.refused_misaligned)
                + (s.refused_foreign - before.refused_foreign),
            (interior + misaligned + foreigns) as u64,
            "{s:?}"
        );
        assert_eq!(
            s.active_objs, s.cached_objs,
            "an object was not freed: {s:?}"
        );
        assert_eq!(allocator::check(&env), Ok(()));
        // Each was freed once: all refused now, as double frees.
        assert_eq!(allocator::free_bulk(&env, &objs), objs.len());
        assert_eq!(allocator::check(&env), Ok(()));
        assert_eq!(
            allocator::free(&other, NonNull::new(foreign).unwrap()),
            Ok(())
        );
        allocator::shrink(&env);
        allocator::shrink(&other);
        assert_eq!(allocator::destroy(&env), Ok(()));
        assert_eq!(allocator::destroy(&other), Ok(()));
        assert_eq!(pages.pages_out(), 0);
    }
}

/// A bulk free longer than the magazine: each time the magazine is full
/// it drains a whole batch under the depot lock and the run goes on (no
/// object takes the slow path, which counts a free that met a full
/// magazine as a free but not a hit), so the stash fills; a double free
/// placed exactly where the magazine is full is refused after the drain
/// and counted once; every other object is freed once and comes back
/// from the next bulk allocation, the depot consistent throughout.
#[test]
fn bulk_free_drains_whole_batches() {
    let pages = Arc::new(HostPages::new());
    let env = new_cache(&pages, 256, CacheFlags::default(), false);
    set_cpu(0);
    let mut out = vec![std::ptr::null_mut(); 300];
    allocator::alloc_bulk(&env, PageRequest::KERNEL, &mut out).unwrap();
    let mut ptrs = out.clone();
    // The magazine starts empty (bulk allocation took what it had), so
    // it is full after the first MAG_CAPACITY entries.
    ptrs.insert(MAG_CAPACITY, out[0]);
    let before = allocator::stats(&env);
    assert_eq!(allocator::free_bulk(&env, &ptrs), 1);
    let s = allocator::stats(&env);
    assert_eq!(s.refused_double, 1, "{s:?}");
    assert_eq!(s.active_objs, s.cached_objs, "an object still out: {s:?}");
    assert!(s.stashed_objs > 0, "nothing stashed: {s:?}");
    assert!(s.drains >= before.drains + 4, "{before:?} -> {s:?}");
    assert_eq!(
        s.frees - s.cpu_free_hits,
        before.frees - before.cpu_free_hits,
        "a free took the slow path: {s:?}"
    );
    assert_eq!(allocator::check(&env), Ok(()));
    let mut again = vec![std::ptr::null_mut(); 300];
    allocator::alloc_bulk(&env, PageRequest::KERNEL, &mut again).unwrap();
    let a: HashSet<usize> = out.iter().map(|p| *p as usize).collect();
    let b: HashSet<usize> = again.iter().map(|p| *p as usize).collect();
    assert_eq!(b.len(), 300, "an object handed out twice");
    assert_eq!(a, b, "the same objects come back");
    assert_eq!(allocator::free_bulk(&env, &again), 0);
    allocator::shrink(&env);
    assert_eq!(allocator::destroy(&env), Ok(()));
    assert_eq!(pages.pages_out(), 0);
}

/// Objects allocated and not freed, as a pool's `destroy` counts them.
fn live(env: &HostCache) -> usize {
    let s = allocator::stats(env);
    s.active_objs - s.cached_objs
}

/// `freeze` closes every allocation path of a cache whose magazines are
/// full of objects and hints, keeps every free path open (and every
/// refusal), never lets a free refill a magazine, and counts exactly;
/// `thaw` reopens it.
#[test]
fn freeze_closes_every_allocation_path() {
    let pages = Arc::new(HostPages::new());
    let env = new_cache(&pages, 64, CacheFlags::default(), false);
    let mut held = Vec::new();
    for cpu in 0..NCPUS {
        set_cpu(cpu);
        let v: Vec<_> = (0..150)
            .map(|_| allocator::alloc(&env, PageRequest::KERNEL).unwrap())
            .collect();
        // Half go back: the magazines hold objects and know their slabs.
        for (i, p) in v.into_iter().enumerate() {
            if i % 2 == 0 {
                allocator::free(&env, p).unwrap();
            } else {
                held.push((cpu, p));
            }
        }
    }
    assert!(env.magazine_lens().iter().all(|&n| n > 0));
    allocator::freeze(&env);
    assert_eq!(env.magazine_lens(), vec![0; NCPUS]);
    assert_eq!(live(&env), held.len());
    for cpu in 0..NCPUS {
        set_cpu(cpu);
        assert_eq!(allocator::alloc_hit(&env), None);
        assert_eq!(
            allocator::alloc(&env, PageRequest::KERNEL),
            Err(AllocError::Destroyed)
        );
        let mut out = [std::ptr::null_mut(); 3];
        assert_eq!(
            allocator::alloc_bulk(&env, PageRequest::KERNEL, &mut out),
            Err(AllocError::Destroyed)
        );
        // And with the magazine held (an interrupt on its holder): the
        // direct paths to the depot refuse too.
        env.set_magazines_busy(true);
        assert_eq!(
            allocator::alloc(&env, PageRequest::KERNEL),
            Err(AllocError::Destroyed),
            "served on the direct path while frozen"
        );
        assert_eq!(
            allocator::alloc_bulk(&env, PageRequest::KERNEL, &mut out),
            Err(AllocError::Destroyed),
            "bulk served on the direct path while frozen"
        );
        env.set_magazines_busy(false);
    }
    // Frees on the CPU that allocated (whose magazine knew the slab).
    let (cpu, first) = held.pop().unwrap();
    set_cpu(cpu);
    allocator::free(&env, first).unwrap();
    assert_eq!(allocator::free(&env, first), Err(FreeError::DoubleFree));
    assert_eq!(
        allocator::alloc_hit(&env),
        None,
        "a free refilled a magazine"
    );
    let bulk: Vec<*mut u8> = held
        .drain(..40)
        .map(|(_, p)| p.as_ptr())
        .chain([first.as_ptr()])
        .collect();
    assert_eq!(allocator::free_bulk(&env, &bulk), 1, "the double free");
    assert_eq!(env.magazine_lens(), vec![0; NCPUS]);
    assert_eq!(live(&env), held.len());
    assert_eq!(allocator::check(&env), Ok(()));
    // A shrink and a second freeze keep it closed and consistent.
    allocator::shrink(&env);
    allocator::freeze(&env);
    assert_eq!(
        allocator::alloc(&env, PageRequest::KERNEL),
        Err(AllocError::Destroyed)
    );
    allocator::thaw(&env);
    for cpu in 0..NCPUS {
        set_cpu(cpu);
        let p = allocator::alloc(&env, PageRequest::KERNEL).unwrap();
        allocator::free(&env, p).unwrap();
        // Freed into the magazine again (its slab noted anew) and popped.
        let q = allocator::alloc_hit(&env).expect("the fast path reopened");
        assert_eq!(p, q);
        allocator::free(&env, q).unwrap();
    }
    for (cpu, p) in held {
        set_cpu(cpu);
        allocator::free(&env, p).unwrap();
    }
    assert_eq!(live(&env), 0);
    assert_eq!(allocator::destroy(&env), Ok(()));
    assert_eq!(pages.pages_out(), 0);
}

/// `freeze` is a grace period for the fast paths: threads on their own
/// CPUs allocate and free as fast as they can while the main thread
/// freezes. No allocation that starts after `freeze` returned may succeed
/// (each thread tries a few more once it sees the cache frozen), and the
/// count `freeze` leaves is exactly what the threads hold then.
#[test]
fn freeze_is_a_grace_period_for_the_fast_paths() {
    use std::sync::atomic::AtomicBool;
    const THREADS: usize = 3;
    for round in 0..20 {
        let pages = Arc::new(HostPages::new());
        let env = new_cache(&pages, 128, CacheFlags::default(), false);
        let (frozen, stop) = (AtomicBool::new(false), AtomicBool::new(false));
        let (violations, held_now, parked) = (
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        );
        let (live_at_freeze, held_at_freeze) = std::thread::scope(|sc| {
            for t in 0..THREADS {
                let (env, frozen, stop) = (&env, &frozen, &stop);
                let (violations, held_now, parked) = (&violations, &held_now, &parked);
                sc.spawn(move || {
                    set_cpu(t);
                    let mut held = Vec::new();
                    let mut i = t + round;
                    let mut after = 0;
                    // Until a few allocations have been tried on the
                    // frozen cache.
                    while after < 10 {
                        i = i.wrapping_mul(5).wrapping_add(1) % 97;
                        let was_frozen = frozen.load(Ordering::SeqCst);
                        if was_frozen {
                            after += 1;
                        }
                        if was_frozen || i % 3 != 0 || held.is_empty() {
                            if let Ok(p) = allocator::alloc(env, PageRequest::KERNEL) {
                                if was_frozen {
                                    violations.fetch_add(1, Ordering::SeqCst);
                                }
                                held.push(p);
                                held_now.fetch_add(1, Ordering::SeqCst);
                            }
                        } else if let Some(p) = held.pop() {
                            held_now.fetch_sub(1, Ordering::SeqCst);
                            allocator::free(env, p).unwrap();
                        }
                    }
                    parked.fetch_add(1, Ordering::SeqCst);
                    while !stop.load(Ordering::SeqCst) {
                        std::thread::yield_now();
                    }
                    for p in held {
                        allocator::free(env, p).unwrap();
                    }
                });
            }
            while allocator::stats(&env).allocs < 20_000 {
                std::thread::yield_now();
            }
            allocator::freeze(&env);
            frozen.store(true, Ordering::SeqCst);
            while parked.load(Ordering::SeqCst) < THREADS {
                std::thread::yield_now();
            }
            let counts = (live(&env), held_now.load(Ordering::SeqCst));
            stop.store(true, Ordering::SeqCst);
            counts
        });
        assert_eq!(violations.load(Ordering::SeqCst), 0, "served while frozen");
        assert_eq!(
            live_at_freeze, held_at_freeze,
            "the frozen count is not what the threads held"
        );
        assert_eq!(live(&env), 0);
        assert_eq!(allocator::check(&env), Ok(()));
        assert_eq!(allocator::destroy(&env), Ok(()));
        assert_eq!(pages.pages_out(), 0);
    }
}
