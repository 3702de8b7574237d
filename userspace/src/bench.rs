//! `ldd-alloc bench`: side-by-side benchmarks of our caches and mempools
//! against SLUB, kmalloc, the kernel's mempool and the page allocator.
//!
//! The timing loops run inside the kernel (`LDD_IOC_BENCH`, one allocator
//! and one case per call, an empty loop timed beside them and subtracted);
//! this side interleaves the allocators, repeats, and reports the median
//! with min/max, the ratio to the kernel's allocator, a JSON file of every
//! raw run and an SVG plot. The scull device case is timed here, in
//! userspace, beside `/dev/zero` and `/dev/null`.
//!
//! Under QEMU TCG the guest clock is emulated: only ratios measured in the
//! same boot mean anything, never the absolute nanoseconds.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Instant;

use nix::errno::Errno;
use serde_json::{json, Value};

use crate::device::{backend_name, Device};
use crate::uapi::{self, bench_alloc as ba, bench_op as bo, bench_prim as bp};

/// The note every report carries.
const TCG_NOTE: &str = "Guest times under QEMU TCG are emulated: compare ratios measured in the \
same boot only, never absolute nanoseconds.";

/// Arguments of `ldd-alloc bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Fewer repetitions and iterations (for development).
    #[arg(long)]
    pub quick: bool,
    /// Where to write every raw run as JSON.
    #[arg(long, default_value = "bench-results.json")]
    pub out: String,
    /// Where to draw the SVG plot (ns/op of alloc+free pairs by size).
    #[arg(long, default_value = "bench-plot.svg")]
    pub svg: String,
    /// Repetitions of every measurement (default 7, 3 with --quick).
    #[arg(long)]
    pub reps: Option<u32>,
    /// Cases to run, comma-separated: pairs, bursts, pages, threads,
    /// remote (allocate on CPU 0, free on CPU 1), reserve, scull, prims (the
    /// primitives of our fast path).
    #[arg(
        long,
        default_value = "pairs,bursts,pages,threads,remote,reserve,scull,prims"
    )]
    pub cases: String,
}

/// One measurement of one allocator: per-op values over the repetitions.
#[derive(Default, Clone)]
struct Series {
    ns: Vec<f64>,
    cycles: Vec<f64>,
}

/// Median, min and max.
fn stats(v: &[f64]) -> (f64, f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    let med = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    (med, s[0], s[n - 1])
}

fn median(v: &[f64]) -> f64 {
    stats(v).0
}

/// "median [min–max]".
fn cell(v: &[f64]) -> String {
    let (m, lo, hi) = stats(v);
    if m.is_nan() {
        return "-".into();
    }
    format!("{m:.1} [{lo:.1}-{hi:.1}]")
}

fn ratio(a: &[f64], b: &[f64]) -> String {
    let r = median(a) / median(b);
    if r.is_finite() {
        format!("{r:.2}x")
    } else {
        "-".into()
    }
}

/// Runs the benchmarks, prints the tables, writes the JSON and the SVG.
pub fn run(dev: u32, json_out: bool, args: &BenchArgs) -> Result<(), String> {
    let mut b = Bench::new(dev, args)?;
    let cases: Vec<&str> = args.cases.split(',').map(str::trim).collect();
    let mut report = String::new();
    report.push_str(&format!("# ldd_alloc benchmarks\n{TCG_NOTE}\n"));
    let clock = crate::tsc::settled_clocksource()?;
    if !crate::tsc::clock_is_fine_grained(&clock) {
        return Err(format!(
            "the kernel keeps time with {clock}: nothing this fast can be timed on it \
             (a guest without a calibrated TSC; scripts/vm.sh passes tsc_early_khz=)"
        ));
    }
    report.push_str(&format!(
        "kernel {}, {} online CPUs, {} repetitions interleaved, in-kernel timing \
         (ktime_get_mono_fast_ns and TSC cycles, empty loop subtracted), clocksource {clock}\n",
        b.kernel, b.cpus, b.reps
    ));
    if !json_out {
        print!("{report}");
    }
    let mut sections = serde_json::Map::new();
    for case in &cases {
        let (text, value) = match *case {
            "pairs" => b.pairs()?,
            "bursts" => b.bursts()?,
            "pages" => b.pages()?,
            "threads" => b.threads()?,
            "remote" => b.remote()?,
            "reserve" => b.reserve()?,
            "scull" => b.scull()?,
            "prims" => b.prims()?,
            "" => continue,
            other => return Err(format!("unknown case {other}")),
        };
        if !json_out {
            print!("{text}");
            std::io::stdout().flush().ok();
        }
        report.push_str(&text);
        sections.insert((*case).to_string(), value);
    }
    let doc = json!({
        "note": TCG_NOTE,
        "kernel": b.kernel,
        "cpus": b.cpus,
        "reps": b.reps,
        "iters": b.iters,
        "page_iters": b.page_iters,
        "cases": sections,
        "raw": b.raw,
        "report": report,
    });
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())? + "\n";
    std::fs::write(&args.out, text.as_bytes()).map_err(|e| format!("{}: {e}", args.out))?;
    if json_out {
        print!("{text}");
    }
    if let Some(svg) = b.svg_plot() {
        std::fs::write(&args.svg, svg).map_err(|e| format!("{}: {e}", args.svg))?;
    }
    Ok(())
}

/// The tmpfs file's row in the scull benchmark.
const TMPFS: u32 = 100;

/// The vmalloc backend's quantum in the scull benchmark's last row:
/// large quanta, as LDD3's scullv allocates (`PAGE_SIZE << 4` there; 8
/// pages here, the store's largest pages-backend run).
const SCULLV_QUANTUM: i32 = 32 << 10;

/// The scull benchmark's configurations: (row, backend, quantum to set
/// first, None for the loaded one). Every backend as loaded, then vmalloc
/// with large quanta.
fn scull_configs() -> impl Iterator<Item = (u32, u32, Option<i32>)> {
    (0..uapi::backend::COUNT).map(|b| (b, b, None)).chain([(
        uapi::backend::COUNT,
        uapi::backend::VMALLOC,
        Some(SCULLV_QUANTUM),
    )])
}

/// A scull benchmark row's name.
fn scull_config_name(backend: u32, quantum: Option<i32>) -> String {
    match quantum {
        None => format!("scull {}", backend_name(backend)),
        Some(q) => format!("scull {}, {} KiB quanta", backend_name(backend), q >> 10),
    }
}

/// A file on a tmpfs of its own (mounted at `/tmp/ldd-bench-tmpfs` unless
/// one is there already), for the scull comparison; `None` if none can be
/// mounted.
fn mount_tmpfs() -> Option<std::path::PathBuf> {
    let dir = std::path::Path::new("/tmp/ldd-bench-tmpfs");
    std::fs::create_dir_all(dir).ok()?;
    let file = dir.join("bench");
    let mut st: libc::statfs = unsafe_zeroed_statfs();
    let cdir = std::ffi::CString::new("/tmp/ldd-bench-tmpfs").ok()?;
    // SAFETY: A valid NUL-terminated path and a statfs buffer.
    let on_tmpfs = unsafe { libc::statfs(cdir.as_ptr(), &mut st) } == 0
        && st.f_type as u64 == libc::TMPFS_MAGIC as u64;
    if on_tmpfs {
        return Some(file);
    }
    // SAFETY: NUL-terminated strings; no data argument.
    let r = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            cdir.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    (r == 0).then_some(file)
}

/// A zeroed `statfs` (plain integers: all-zero is valid).
fn unsafe_zeroed_statfs() -> libc::statfs {
    // SAFETY: `statfs` is a C struct of integers, valid when zeroed.
    unsafe { std::mem::zeroed() }
}

/// Sizes of the pair case.
const SIZES: [u32; 5] = [32, 64, 256, 1024, 4096];
/// Bursts.
const BURSTS: [u32; 4] = [32, 256, 4096, 65536];
/// Object size of the burst, concurrency and reserve cases.
const OBJ: u32 = 256;

struct Bench {
    dev: Device,
    reps: u32,
    iters: u32,
    page_iters: u32,
    cpus: u32,
    kernel: String,
    raw: Vec<Value>,
    /// The pair results, for the plot: (alloc, size) -> series.
    pair_results: BTreeMap<(u32, u32), Series>,
}

impl Bench {
    fn new(dev: u32, args: &BenchArgs) -> Result<Self, String> {
        let dev = Device::open_index(dev).map_err(|e| format!("open device {dev}: {e}"))?;
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into());
        let cpus = crate::cpu::online() as u32;
        let (reps, iters, page_iters) = if args.quick {
            (3, 10_000, 10_000)
        } else {
            (7, 200_000, 20_000)
        };
        Ok(Self {
            dev,
            reps: args.reps.unwrap_or(reps).clamp(1, 101),
            iters,
            page_iters,
            cpus,
            kernel,
            raw: Vec::new(),
            pair_results: BTreeMap::new(),
        })
    }

    /// One in-kernel run; returns (ns/op, cycles/op) per thread.
    #[allow(clippy::too_many_arguments)]
    fn one(
        &mut self,
        op: u32,
        alloc: u32,
        size: u32,
        burst: u32,
        iters: u32,
        threads: u32,
        rep: u32,
    ) -> Result<Vec<(f64, f64)>, String> {
        let mut r = uapi::BenchRun {
            op,
            alloc,
            size,
            burst,
            iters,
            threads,
            ..Default::default()
        };
        let mut tries = 0;
        loop {
            match self.dev.ioctl_inout(uapi::LDD_IOC_BENCH, &mut r) {
                Ok(_) => break,
                Err(Errno::EBUSY) if tries < 100 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => {
                    return Err(format!(
                        "LDD_IOC_BENCH {} {} size {size} burst {burst} threads {threads}: {e}",
                        uapi::bench_op::NAMES.get(op as usize).unwrap_or(&"?"),
                        uapi::bench_alloc::NAMES.get(alloc as usize).unwrap_or(&"?"),
                    ))
                }
            }
        }
        let ops = r.ops.max(1) as f64;
        let n = (threads as usize).clamp(1, uapi::BENCH_MAX_THREADS);
        let per: Vec<(f64, f64)> = (0..n)
            .map(|i| {
                (
                    (r.ns[i] as f64 - r.base_ns as f64) / ops,
                    (r.cycles[i] as f64 - r.base_cycles as f64) / ops,
                )
            })
            .collect();
        self.raw.push(json!({
            "op": uapi::bench_op::NAMES.get(op as usize),
            "alloc": uapi::bench_alloc::NAMES.get(alloc as usize),
            "size": size, "burst": burst, "threads": threads, "rep": rep,
            "ops": r.ops, "base_ns": r.base_ns, "base_cycles": r.base_cycles,
            "ns": &r.ns[..n], "cycles": &r.cycles[..n],
            "ns_per_op": per.iter().map(|p| p.0).collect::<Vec<_>>(),
            "cycles_per_op": per.iter().map(|p| p.1).collect::<Vec<_>>(),
        }));
        Ok(per)
    }

    /// Interleaved repetitions of `runs` (alloc, size, burst) for `op`.
    fn series(
        &mut self,
        op: u32,
        runs: &[(u32, u32, u32)],
        iters: u32,
    ) -> Result<Vec<Series>, String> {
        let mut out = vec![Series::default(); runs.len()];
        for rep in 0..self.reps {
            for (i, &(alloc, size, burst)) in runs.iter().enumerate() {
                let p = self.one(op, alloc, size, burst, iters, 0, rep)?;
                out[i].ns.push(p[0].0);
                out[i].cycles.push(p[0].1);
            }
        }
        Ok(out)
    }

    fn pairs(&mut self) -> Result<(String, Value), String> {
        let allocs = [
            ba::OUR_CACHE,
            ba::KMEM_CACHE,
            ba::KMALLOC,
            ba::OUR_POOL,
            ba::KERNEL_POOL,
        ];
        let runs: Vec<(u32, u32, u32)> = SIZES
            .iter()
            .flat_map(|&s| allocs.iter().map(move |&a| (a, s, 0)))
            .collect();
        let res = self.series(bo::PAIR, &runs, self.iters)?;
        let mut t = String::from(
            "\n## 1. alloc+free pairs, one CPU: ns/op median [min-max] (TSC cycles/op median)\n",
        );
        t.push_str("| size | our_cache | kmem_cache | kmalloc | ours/kmem_cache | our_mempool | kernel_mempool | our_pool/kernel_pool | our_pool/our_cache |\n");
        t.push_str("|---:|---|---|---|---:|---|---|---:|---:|\n");
        let mut rows = Vec::new();
        for (si, &size) in SIZES.iter().enumerate() {
            let s = &res[si * allocs.len()..(si + 1) * allocs.len()];
            for (ai, &a) in allocs.iter().enumerate() {
                self.pair_results.insert((a, size), s[ai].clone());
            }
            let c = |x: &Series| format!("{} ({:.0})", cell(&x.ns), median(&x.cycles));
            t.push_str(&format!(
                "| {size} | {} | {} | {} | **{}** | {} | {} | {} | **{}** |\n",
                c(&s[0]),
                c(&s[1]),
                c(&s[2]),
                ratio(&s[0].ns, &s[1].ns),
                c(&s[3]),
                c(&s[4]),
                ratio(&s[3].ns, &s[4].ns),
                ratio(&s[3].ns, &s[0].ns),
            ));
            rows.push(json!({
                "size": size,
                "median_ns": allocs.iter().zip(s).map(|(a, x)| (ba::NAMES[*a as usize], median(&x.ns))).collect::<BTreeMap<_, _>>(),
                "median_cycles": allocs.iter().zip(s).map(|(a, x)| (ba::NAMES[*a as usize], median(&x.cycles))).collect::<BTreeMap<_, _>>(),
                "ours_over_kmem_cache": median(&s[0].ns) / median(&s[1].ns),
                "our_pool_over_our_cache": median(&s[3].ns) / median(&s[0].ns),
                "our_pool_over_kernel_pool": median(&s[3].ns) / median(&s[4].ns),
            }));
        }
        t.push_str("Targets: our_cache <= 0.8x kmem_cache at 64, 256, 1024 B; our_mempool <= 1.05x our_cache (issue 15).\n");
        Ok((t, json!(rows)))
    }

    fn bursts(&mut self) -> Result<(String, Value), String> {
        let allocs = [ba::OUR_CACHE, ba::KMEM_CACHE, ba::KMEM_BULK, ba::OUR_BULK];
        let runs: Vec<(u32, u32, u32)> = BURSTS
            .iter()
            .flat_map(|&n| allocs.iter().map(move |&a| (a, OBJ, n)))
            .collect();
        let iters = self.iters.max(65536 * 2);
        let res = self.series(bo::BURST, &runs, iters.min(uapi::BENCH_MAX_ITERS))?;
        let mut t = format!(
            "\n## 2. bursts of N allocations then N frees, {OBJ} B objects: ns per object (alloc+free), median [min-max]\n"
        );
        t.push_str("| N | our_cache | kmem_cache | kmem_cache_bulk | our_cache_bulk | ours/kmem_cache | our_bulk/kmem_cache_bulk |\n|---:|---|---|---|---|---:|---:|\n");
        let mut rows = Vec::new();
        for (i, &n) in BURSTS.iter().enumerate() {
            let s = &res[i * 4..i * 4 + 4];
            t.push_str(&format!(
                "| {n} | {} | {} | {} | {} | **{}** | **{}** |\n",
                cell(&s[0].ns),
                cell(&s[1].ns),
                cell(&s[2].ns),
                cell(&s[3].ns),
                ratio(&s[0].ns, &s[1].ns),
                ratio(&s[3].ns, &s[2].ns)
            ));
            rows.push(
                json!({"n": n, "our_cache": median(&s[0].ns), "kmem_cache": median(&s[1].ns),
                "kmem_cache_bulk": median(&s[2].ns), "our_cache_bulk": median(&s[3].ns),
                "ours_over_kmem_cache": median(&s[0].ns) / median(&s[1].ns),
                "our_bulk_over_kmem_bulk": median(&s[3].ns) / median(&s[2].ns)}),
            );
        }
        t.push_str("Targets: ours <= 0.8x kmem_cache for N <= 256, <= 1.0x at 65536; our bulk <= 1.0x kmem_cache_alloc_bulk.\n");
        Ok((t, json!(rows)))
    }

    fn pages(&mut self) -> Result<(String, Value), String> {
        let allocs = [ba::ALLOC_PAGES, ba::GET_FREE_PAGES, ba::VMALLOC];
        let runs: Vec<(u32, u32, u32)> = (0..=3)
            .flat_map(|o| allocs.iter().map(move |&a| (a, o, 0)))
            .collect();
        let res = self.series(bo::PAIR, &runs, self.page_iters)?;
        let mut t =
            String::from("\n## 3. pages: alloc+free pairs by order, ns/op median [min-max]\n");
        t.push_str("| order | alloc_pages | __get_free_pages | vmalloc (same bytes) | gfp/alloc_pages | vmalloc/alloc_pages |\n|---:|---|---|---|---:|---:|\n");
        let mut rows = Vec::new();
        for o in 0..=3usize {
            let s = &res[o * 3..o * 3 + 3];
            t.push_str(&format!(
                "| {o} | {} | {} | {} | {} | {} |\n",
                cell(&s[0].ns),
                cell(&s[1].ns),
                cell(&s[2].ns),
                ratio(&s[1].ns, &s[0].ns),
                ratio(&s[2].ns, &s[0].ns)
            ));
            rows.push(json!({"order": o, "alloc_pages": median(&s[0].ns), "get_free_pages": median(&s[1].ns), "vmalloc": median(&s[2].ns)}));
        }
        Ok((t, json!(rows)))
    }

    fn threads(&mut self) -> Result<(String, Value), String> {
        let allocs = [ba::OUR_CACHE, ba::KMEM_CACHE, ba::KMALLOC];
        let max = self.cpus.min(uapi::BENCH_MAX_THREADS as u32);
        let counts: Vec<u32> = if max >= 2 { vec![1, max] } else { vec![1] };
        // (alloc, threads) -> per-rep aggregate throughput (Mops/s) and per-thread ns/op.
        let mut agg: BTreeMap<(u32, u32), Vec<f64>> = BTreeMap::new();
        let mut per: BTreeMap<(u32, u32), Vec<Vec<f64>>> = BTreeMap::new();
        for rep in 0..self.reps {
            for &a in &allocs {
                for &n in &counts {
                    let p = self.one(bo::PAIR, a, OBJ, 0, self.iters, n, rep)?;
                    let tput: f64 = p.iter().map(|x| 1e3 / x.0).sum();
                    agg.entry((a, n)).or_default().push(tput);
                    let e = per.entry((a, n)).or_default();
                    e.resize(n as usize, Vec::new());
                    for (i, x) in p.iter().enumerate() {
                        e[i].push(x.0);
                    }
                }
            }
        }
        let mut t = format!(
            "\n## 4. concurrency: {OBJ} B alloc+free pairs in kthreads bound to CPUs 0..N, released together\n"
        );
        t.push_str("| allocator | threads | ns/op per CPU, median [min-max] | total Mops/s (guest clock), median [min-max] | scaling vs 1 thread, median [per-repetition min-max] |\n|---|---:|---|---|---:|\n");
        let mut rows = Vec::new();
        for &a in &allocs {
            for &n in &counts {
                let cpu_cells: Vec<String> = per[&(a, n)]
                    .iter()
                    .enumerate()
                    .map(|(i, v)| format!("cpu{i}: {}", cell(v)))
                    .collect();
                let scale = median(&agg[&(a, n)]) / median(&agg[&(a, 1)]);
                // Each repetition's own ratio (its N-thread run over its
                // 1-thread run, measured back to back): the spread says
                // how much the host's load moved the figure.
                let per_rep: Vec<f64> = agg[&(a, n)]
                    .iter()
                    .zip(&agg[&(a, 1)])
                    .map(|(x, y)| x / y)
                    .collect();
                let (_, lo, hi) = stats(&per_rep);
                t.push_str(&format!(
                    "| {} | {n} | {} | {} | **{scale:.2}x** [{lo:.2}-{hi:.2}] |\n",
                    ba::NAMES[a as usize],
                    cpu_cells.join("; "),
                    cell(&agg[&(a, n)]),
                ));
                rows.push(json!({"alloc": ba::NAMES[a as usize], "threads": n,
                    "mops": median(&agg[&(a, n)]), "scaling": scale,
                    "ns_per_op_per_cpu": per[&(a, n)].iter().map(|v| median(v)).collect::<Vec<_>>()}));
            }
        }
        if counts.len() < 2 {
            t.push_str("Only one CPU online: no scaling measured (boot with --smp 2).\n");
        }
        t.push_str("Target: with 2 vCPUs, throughput of independent pairs >= 1.8x one vCPU. Under TCG each vCPU is a host thread (MTTCG): the host's own cores and load bound this.\n");
        Ok((t, json!(rows)))
    }

    /// Remote frees: a kthread on CPU 0 allocates, one on CPU 1 frees.
    fn remote(&mut self) -> Result<(String, Value), String> {
        let mut t = format!(
            "\n## 4b. remote frees: {OBJ} B objects allocated by a kthread on CPU 0, freed by one on CPU 1 as they come (up to 1024 in flight): ns per object, median [min-max]\n"
        );
        if self.cpus < 2 {
            t.push_str("Only one CPU online: not measured (boot with --smp 2).\n");
            return Ok((t, json!(null)));
        }
        let allocs = [ba::OUR_CACHE, ba::KMEM_CACHE, ba::KMALLOC];
        let mut res = vec![Series::default(); allocs.len()];
        for rep in 0..self.reps {
            for (i, &a) in allocs.iter().enumerate() {
                let p = self.one(bo::REMOTE, a, OBJ, 0, self.iters, 2, rep)?;
                // The run lasts until the consumer is done: the slower thread.
                let ns = p.iter().map(|x| x.0).fold(0.0, f64::max);
                let cy = p.iter().map(|x| x.1).fold(0.0, f64::max);
                res[i].ns.push(ns);
                res[i].cycles.push(cy);
            }
        }
        t.push_str("| our_cache | kmem_cache | kmalloc | ours/kmem_cache |\n|---|---|---|---:|\n");
        t.push_str(&format!(
            "| {} | {} | {} | **{}** |\n",
            cell(&res[0].ns),
            cell(&res[1].ns),
            cell(&res[2].ns),
            ratio(&res[0].ns, &res[1].ns)
        ));
        t.push_str("Every object crosses CPUs: ours lands in CPU 1's magazine, which drains to the slabs CPU 0's refills take from (no remote free list); SLUB frees into its per-CPU sheaf on CPU 1 too.\n");
        Ok((
            t,
            json!({"our_cache": median(&res[0].ns), "kmem_cache": median(&res[1].ns),
                "kmalloc": median(&res[2].ns)}),
        ))
    }

    fn reserve(&mut self) -> Result<(String, Value), String> {
        let runs = [
            (ba::OUR_POOL, OBJ, 0),
            (ba::KERNEL_POOL_OURS, OBJ, 0),
            (ba::KERNEL_POOL, OBJ, 0),
        ];
        let res = self.series(bo::RESERVE, &runs, self.iters)?;
        let fast = self.series(bo::PAIR, &runs, self.iters)?;
        let mut t = format!("\n## 5. mempool reserve path, {OBJ} B elements: ns/op (alloc from the reserve + free refilling it), median [min-max]\n");
        t.push_str(
            "| pool | backing on the reserve path | reserve path | fast path (same boot) | reserve/fast |\n|---|---|---|---|---:|\n",
        );
        let rows = [
            (
                "our_mempool",
                "our cache, emptied, page allocations failing",
            ),
            (
                "kernel_mempool",
                "the same: a private cache of ours, emptied and failing",
            ),
            (
                "kernel_mempool",
                "a kmem_cache behind a callback that returns NULL at once",
            ),
        ];
        for (i, (name, backing)) in rows.iter().enumerate() {
            t.push_str(&format!(
                "| {name} | {backing} | {} | {} | {} |\n",
                cell(&res[i].ns),
                cell(&fast[i].ns),
                ratio(&res[i].ns, &fast[i].ns)
            ));
        }
        t.push_str(&format!(
            "ours/kernel on the reserve path, like for like (rows 1 and 2): **{}**; against the callback that fails at once: {}\n",
            ratio(&res[0].ns, &res[1].ns),
            ratio(&res[0].ns, &res[2].ns)
        ));
        t.push_str(
            "Rows 1 and 2 put the two pool layers over the same backing: a private cache of ours whose \
free objects were all taken and whose page allocations our fault injection fails, so each \
allocation first really tries the cache (magazine, depot, page source) and then takes the reserve; \
the module checks that the cache served nothing during the run. Row 3 is the kernel's pool over \
a callback that fails at once (its first try costs only an indirect call).\n",
        );
        Ok((
            t,
            json!({"our_mempool": median(&res[0].ns), "kernel_mempool_over_ours": median(&res[1].ns),
            "kernel_mempool": median(&res[2].ns),
            "our_fast": median(&fast[0].ns), "kernel_over_ours_fast": median(&fast[1].ns),
            "kernel_fast": median(&fast[2].ns)}),
        ))
    }

    fn scull(&mut self) -> Result<(String, Value), String> {
        const TOTAL: usize = 16 << 20;
        let sizes = [4usize << 10, 64 << 10, 1 << 20];
        let node = crate::device::node(self.dev_index());
        // (what, size) -> MB/s per rep; what: the configurations of
        // `scull_configs` (0..=4 the backends as loaded), TMPFS a tmpfs file.
        let mut w: BTreeMap<(u32, usize), Vec<f64>> = BTreeMap::new();
        let mut r: BTreeMap<(u32, usize), Vec<f64>> = BTreeMap::new();
        let mb = |bytes: usize, secs: f64| bytes as f64 / secs / 1e6;
        let tmpfs = mount_tmpfs();
        for _ in 0..self.reps {
            for &size in &sizes {
                let buf = vec![0x5au8; size];
                let mut rbuf = vec![0u8; size];
                for (what, backend, quantum) in scull_configs() {
                    let d = Device::open(&node).map_err(|e| e.to_string())?;
                    if let Some(q) = quantum {
                        // Module-wide; the trim below gives the device the new geometry.
                        d.set_quantum(q)
                            .map_err(|e| format!("set quantum {q}: {e}"))?;
                    }
                    // Empty the device (write-only + O_TRUNC trims), pick the backend.
                    drop(
                        Device::open_with(&node, libc::O_WRONLY | libc::O_TRUNC)
                            .map_err(|e| e.to_string())?,
                    );
                    d.set_backend(backend, 0)
                        .map_err(|e| format!("set backend {backend}: {e}"))?;
                    let mut f = d.file();
                    let t0 = Instant::now();
                    let mut done = 0;
                    while done < TOTAL {
                        f.write_all(&buf)
                            .map_err(|e| format!("write {}: {e}", backend_name(backend)))?;
                        done += size;
                    }
                    w.entry((what, size))
                        .or_default()
                        .push(mb(done, t0.elapsed().as_secs_f64()));
                    f.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
                    let t0 = Instant::now();
                    let mut got = 0;
                    while got < TOTAL {
                        let n = f.read(&mut rbuf).map_err(|e| e.to_string())?;
                        if n == 0 {
                            break;
                        }
                        got += n;
                    }
                    r.entry((what, size))
                        .or_default()
                        .push(mb(got, t0.elapsed().as_secs_f64()));
                    if quantum.is_some() {
                        // Back to the load-time quantum and qset.
                        d.scull_reset().map_err(|e| format!("scull reset: {e}"))?;
                    }
                }
                drop(
                    Device::open_with(&node, libc::O_WRONLY | libc::O_TRUNC)
                        .map_err(|e| e.to_string())?,
                );
                if let Some(path) = &tmpfs {
                    // The same bytes in the same calls through a tmpfs file:
                    // both copy between user memory and kernel pages.
                    let mut f = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .open(path)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    let t0 = Instant::now();
                    for _ in 0..TOTAL / size {
                        f.write_all(&buf).map_err(|e| e.to_string())?;
                    }
                    w.entry((TMPFS, size))
                        .or_default()
                        .push(mb(TOTAL, t0.elapsed().as_secs_f64()));
                    f.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
                    let t0 = Instant::now();
                    for _ in 0..TOTAL / size {
                        f.read_exact(&mut rbuf).map_err(|e| e.to_string())?;
                    }
                    r.entry((TMPFS, size))
                        .or_default()
                        .push(mb(TOTAL, t0.elapsed().as_secs_f64()));
                    drop(f);
                    std::fs::remove_file(path).map_err(|e| e.to_string())?;
                }
            }
        }
        let mut t = format!(
            "\n## 6. scull device /dev/ldd_alloc{} from userspace: MB/s (guest clock) for {} MiB per run, median [min-max]; quantum and qset as loaded\n",
            self.dev_index(), TOTAL >> 20
        );
        t.push_str("| device | write 4 KiB | write 64 KiB | write 1 MiB | read 4 KiB | read 64 KiB | read 1 MiB |\n|---|---|---|---|---|---|---|\n");
        let mut rows = Vec::new();
        let names: Vec<(u32, String)> = scull_configs()
            .map(|(what, b, q)| (what, scull_config_name(b, q)))
            .chain([(TMPFS, "tmpfs file".to_string())])
            .collect();
        for (what, name) in &names {
            let what = *what;
            let c = |m: &BTreeMap<(u32, usize), Vec<f64>>, s| {
                m.get(&(what, s)).map_or("-".to_string(), |v| cell(v))
            };
            t.push_str(&format!(
                "| {name} | {} | {} | {} | {} | {} | {} |\n",
                c(&w, sizes[0]),
                c(&w, sizes[1]),
                c(&w, sizes[2]),
                c(&r, sizes[0]),
                c(&r, sizes[1]),
                c(&r, sizes[2])
            ));
            for &s in &sizes {
                rows.push(json!({"device": name, "size": s,
                    "write_mbps": w.get(&(what, s)).map(|v| median(v)),
                    "read_mbps": r.get(&(what, s)).map(|v| median(v))}));
            }
        }
        if tmpfs.is_some() {
            t.push_str("| scull / tmpfs (throughput) | | | | | | |\n");
            for (b, name) in names.iter().filter(|(what, _)| *what != TMPFS) {
                let q = |m: &BTreeMap<(u32, usize), Vec<f64>>, s| match (
                    m.get(&(*b, s)),
                    m.get(&(TMPFS, s)),
                ) {
                    (Some(x), Some(y)) => format!("{:.2}x", median(x) / median(y)),
                    _ => "-".into(),
                };
                t.push_str(&format!(
                    "| {} / tmpfs | {} | {} | **{}** | {} | {} | **{}** |\n",
                    name.trim_start_matches("scull "),
                    q(&w, sizes[0]),
                    q(&w, sizes[1]),
                    q(&w, sizes[2]),
                    q(&r, sizes[0]),
                    q(&r, sizes[1]),
                    q(&r, sizes[2])
                ));
            }
            t.push_str("Target: scull read and write of 1 MiB per call >= 0.9x a tmpfs file of the same size (same boot, same calls).\n");
            t.push_str(&format!(
                "vmalloc at the loaded quantum pays one vmalloc() (a vmap area, a page-table update) and, later, one vfree() per quantum: the chapter's reason to keep vmalloc for large areas. LDD3's scullv allocates PAGE_SIZE << scullv_order (order 4) per quantum; the last scull row gives vmalloc {} KiB quanta.\n",
                SCULLV_QUANTUM >> 10
            ));
        } else {
            t.push_str("No tmpfs could be mounted (not root?): no comparison.\n");
        }
        Ok((t, json!(rows)))
    }

    fn prims(&mut self) -> Result<(String, Value), String> {
        let runs: Vec<(u32, u32, u32)> = (0..bp::COUNT).map(|p| (p, 0, 0)).collect();
        let res = self.series(bo::PRIM, &runs, self.iters)?;
        let ours = self.series(
            bo::PAIR,
            &[(ba::OUR_CACHE, OBJ, 0), (ba::KMEM_CACHE, OBJ, 0)],
            self.iters,
        )?;
        let mut t = String::from("\n## 7. primitives of our cache's fast path, same boot: ns per call, median [min-max] (TSC cycles)\n");
        t.push_str("| primitive | ns | cycles |\n|---|---|---:|\n");
        let mut rows = serde_json::Map::new();
        for (i, name) in bp::NAMES.iter().enumerate() {
            t.push_str(&format!(
                "| {name} | {} | {:.0} |\n",
                cell(&res[i].ns),
                median(&res[i].cycles)
            ));
            rows.insert((*name).into(), json!(median(&res[i].ns)));
        }
        for (name, s) in [
            ("our_cache pair (256 B)", &ours[0]),
            ("kmem_cache pair (256 B)", &ours[1]),
        ] {
            t.push_str(&format!(
                "| {name} | {} | {:.0} |\n",
                cell(&s.ns),
                median(&s.cycles)
            ));
            rows.insert(name.into(), json!(median(&s.ns)));
        }
        t.push_str("Our pair today = alloc (preempt-count inc/dec and the CPU id by gs-relative inline asm, a plain per-CPU flag, a magazine pop, one store clearing the free mark) + free (the same, a slab hint, the index check by one multiplication with the stride's inverse, one xchg of the free mark; read_nofault of the slab header only for a slab the CPU has not validated): none of the primitives above is on it any more. They are what earlier designs paid: irq_guard and spinlock_irq the first (interrupts off, a per-CPU SpinLockIrq), cpu_id (through a C helper), slot_trylock and bitmap_rmw the second (a cmpxchg flag and a lock RMW on the slab bitmap per operation).\n");
        Ok((t, Value::Object(rows)))
    }

    fn dev_index(&self) -> u32 {
        let p = self.dev.path().to_string_lossy();
        p.trim_start_matches("/dev/ldd_alloc").parse().unwrap_or(0)
    }

    /// The pair results as an SVG: ns/op (median, min-max bars) by size,
    /// one polyline per allocator, log2 x axis.
    fn svg_plot(&self) -> Option<String> {
        if self.pair_results.is_empty() {
            return None;
        }
        let (w, h, l, r, top, bot) = (760.0, 460.0, 70.0, 190.0, 40.0, 50.0);
        let ymax = self
            .pair_results
            .values()
            .map(|s| stats(&s.ns).2)
            .fold(1.0f64, f64::max)
            * 1.1;
        let xs = |size: u32| {
            let f = ((size as f64).log2() - 5.0) / 7.0;
            l + f * (w - l - r)
        };
        let ys = |v: f64| top + (1.0 - v.max(0.0) / ymax) * (h - top - bot);
        let colors = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd"];
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"{l}\" y=\"20\" font-size=\"14\">alloc+free pairs, one CPU: ns/op (median, min-max) by object size; QEMU TCG, ratios only</text>\n"
        );
        // Axes, ticks.
        s.push_str(&format!(
            "<line x1=\"{l}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{l}\" y1=\"{top}\" x2=\"{l}\" y2=\"{}\" stroke=\"black\"/>\n",
            h - bot, w - r, h - bot, h - bot
        ));
        for size in SIZES {
            let x = xs(size);
            s.push_str(&format!(
                "<line x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"black\"/><text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{size}</text>\n",
                h - bot, h - bot + 5.0, h - bot + 20.0
            ));
        }
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">object size (bytes)</text>\n",
            (l + w - r) / 2.0,
            h - 10.0
        ));
        for i in 0..=5 {
            let v = ymax * i as f64 / 5.0;
            let y = ys(v);
            s.push_str(&format!(
                "<line x1=\"{}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.0}</text>\n",
                l, w - r, l - 5.0, y + 4.0
            ));
        }
        s.push_str(&format!(
            "<text transform=\"translate(18,{}) rotate(-90)\" text-anchor=\"middle\">ns per alloc+free (guest clock)</text>\n",
            (top + h - bot) / 2.0
        ));
        let allocs = [
            ba::OUR_CACHE,
            ba::KMEM_CACHE,
            ba::KMALLOC,
            ba::OUR_POOL,
            ba::KERNEL_POOL,
        ];
        for (i, a) in allocs.iter().enumerate() {
            let color = colors[i % colors.len()];
            let mut pts = Vec::new();
            for size in SIZES {
                if let Some(ser) = self.pair_results.get(&(*a, size)) {
                    let (m, lo, hi) = stats(&ser.ns);
                    let x = xs(size);
                    pts.push(format!("{x:.1},{:.1}", ys(m)));
                    s.push_str(&format!(
                        "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"{color}\"/><circle cx=\"{x:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"/>\n",
                        ys(lo), ys(hi), ys(m)
                    ));
                }
            }
            s.push_str(&format!(
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n",
                pts.join(" ")
            ));
            let ly = top + 20.0 * i as f64 + 10.0;
            s.push_str(&format!(
                "<line x1=\"{}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"3\"/><text x=\"{}\" y=\"{}\">{}</text>\n",
                w - r + 10.0,
                w - r + 35.0,
                w - r + 40.0,
                ly + 4.0,
                ba::NAMES[*a as usize]
            ));
        }
        s.push_str("</svg>\n");
        Some(s)
    }
}
