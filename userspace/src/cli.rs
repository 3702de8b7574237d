//! The `ldd-alloc` command line: drive the ldd_alloc module from the shell.
//!
//! Every command that prints data takes `--json`. Errors name the errno and
//! what it means for the request.

use std::io::{Read, Seek, SeekFrom, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::json;

use crate::device::{
    backend_by_name, backend_name, cache_name, gfp_names, parse_gfp, zone_name, Device,
    BACKEND_NAMES,
};
use crate::uapi::{self, alloc_flags, context, lab_backend};

/// The command line.
#[derive(Parser, Debug)]
#[command(
    name = "ldd-alloc",
    version,
    about = "LDD3 chapter 8 companion: talk to the ldd_alloc module"
)]
pub struct Cli {
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// The device index (/dev/ldd_alloc<N>).
    #[arg(long, short, global = true, default_value_t = 0)]
    pub dev: u32,
    /// What to do.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// What a device holds and how (LDD_IOC_INFO).
    Info,
    /// Every device, one line each.
    Devices,
    /// scull file operations and ioctls.
    #[command(subcommand)]
    Scull(ScullCmd),
    /// A short walk through the scull devices on every backend.
    Demo,
    /// Allocate as a driver would, and see what the kernel did (the lab).
    Alloc(AllocArgs),
    /// Free lab allocations by handle (all with --all). Handles belong to
    /// an open file: use this inside `ldd-alloc lab`.
    Free {
        /// Handles as printed by alloc or list.
        handles: Vec<String>,
        /// Free every allocation of the open file.
        #[arg(long)]
        all: bool,
    },
    /// The live lab allocations of the open file (inside `ldd-alloc lab`).
    List,
    /// A lab session: reads ldd-alloc commands from stdin, one per line, on
    /// one open file, so `alloc --keep`, `list` and `free` work together.
    Lab,
    /// Our caches, like /proc/slabinfo; --watch refreshes like slabtop.
    Slabinfo {
        /// Refresh every N seconds until interrupted.
        #[arg(long)]
        watch: Option<u64>,
    },
    /// Our mempools: reserve, waits, wake-ups, failures.
    Pools,
    /// Pages our page source holds per zone, beside /proc/zoneinfo.
    Zones,
    /// The kernel stack, measured from inside an ioctl.
    Stack,
    /// Give empty slabs back to the page allocator.
    Shrink,
    /// Make our page source fail: --next N allocations, or --all until --off.
    Fault {
        /// Fail the next N page allocations.
        #[arg(long, default_value_t = 0)]
        next: i64,
        /// Fail every page allocation.
        #[arg(long)]
        all: bool,
        /// Only for our cache number N (0: any).
        #[arg(long, default_value_t = 0)]
        owner: u32,
    },
    /// Per-CPU variables (alloc_percpu): each CPU's copy of the device's
    /// read/write counters, their sum, and where each copy lives (one
    /// per-CPU offset apart; addresses for root). --race runs the
    /// get_cpu_var demonstration: threads bump a per-CPU counter with
    /// preemption on (preempt_on: increments are lost) or off.
    Percpu(PercpuArgs),
    /// The chapter-8 tour: each claim of LDD3 and Love, checked live.
    Tour {
        /// Also the "[memory pressure]" section (issue 16): drives the
        /// machine's memory down to its watermarks; best in a guest of
        /// 512 MiB - 1 GiB, several minutes under TCG.
        #[arg(long)]
        pressure: bool,
        /// Only the "[memory pressure]" section.
        #[arg(long)]
        pressure_only: bool,
    },
    /// Drive free memory to a watermark and hold it (hogs that die with this
    /// process), print the /proc/vmstat deltas of each step; --plot draws
    /// allocation latency against free pages (root).
    Pressure(crate::pressure::PressureArgs),
    /// Benchmarks: our caches and mempools against SLUB, kmalloc, mempool
    /// and the page allocator, timed inside the kernel.
    Bench(crate::bench::BenchArgs),
}

/// Arguments of `ldd-alloc percpu`.
#[derive(clap::Args, Debug)]
pub struct PercpuArgs {
    /// Run the race instead: preempt_on or preempt_off (root only).
    #[arg(long)]
    pub race: Option<String>,
    /// Threads that share the race counter.
    #[arg(long, default_value_t = 4)]
    pub threads: u32,
    /// Increments per thread (at most 100000).
    #[arg(long, default_value_t = 2000)]
    pub iters: u32,
    /// Microseconds between the read and the write-back (at most 100).
    #[arg(long, default_value_t = 0)]
    pub window_us: u32,
}

/// Arguments of `ldd-alloc alloc`.
#[derive(clap::Args, Debug)]
pub struct AllocArgs {
    /// kmalloc, kzalloc, krealloc, kmem_cache, our_cache, our_mempool,
    /// alloc_pages, __get_free_pages, get_zeroed_page, vmalloc, kvmalloc;
    /// large buffers (root): alloc_pages_exact, alloc_contig_pages, cma.
    pub backend: String,
    /// Bytes (k, M suffixes), for the byte-sized backends.
    #[arg(long, short, default_value = "0", value_parser = parse_size)]
    pub size: u64,
    /// Page order, for the page backends.
    #[arg(long, short, default_value_t = 0)]
    pub order: u32,
    /// GFP flags, e.g. GFP_KERNEL|__GFP_ZERO or ATOMIC,DMA.
    #[arg(long, short, default_value = "GFP_KERNEL")]
    pub gfp: String,
    /// process, atomic (under a spinlock) or hardirq (an irq_work).
    #[arg(long, short, default_value = "process")]
    pub context: String,
    /// How many allocations.
    #[arg(long, short = 'n', default_value_t = 1)]
    pub count: u32,
    /// For krealloc: the handle to resize.
    #[arg(long, value_parser = parse_handle)]
    pub handle: Option<u32>,
    /// Keep the allocations (live until freed or the file is closed);
    /// otherwise each is freed right after it is measured.
    #[arg(long)]
    pub keep: bool,
    /// Allow sizes past 4 MiB (up to the module's lab_max_mib).
    #[arg(long)]
    pub big: bool,
}

/// Parses `4096`, `4k`, `4K`, `16M`, `1G`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("not a size: {s}"))
}

/// Parses a handle in decimal or 0x hex.
pub fn parse_handle(s: &str) -> Result<u32, String> {
    let r = match s.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("not a handle: {s}"))
}

/// Subcommands of `ldd-alloc scull`.
#[derive(Subcommand, Debug)]
pub enum ScullCmd {
    /// Write TEXT (or stdin) at OFFSET.
    Write {
        /// Bytes to write; stdin when absent.
        text: Option<String>,
        /// Where to write (lseek SEEK_SET first).
        #[arg(long, default_value_t = 0)]
        offset: u64,
    },
    /// Read LEN bytes (default: to the end) at OFFSET to stdout.
    Read {
        /// Where to read.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// How many bytes; to the end when absent.
        #[arg(long)]
        len: Option<u64>,
    },
    /// lseek and report the new position: set, cur or end.
    Seek {
        /// set, cur or end.
        whence: String,
        /// The offset.
        #[arg(allow_hyphen_values = true)]
        offset: i64,
    },
    /// Empty the device (open O_WRONLY | O_TRUNC, LDD3's scull_trim).
    Trim,
    /// Choose the device's backend (the device must be empty).
    Backend {
        /// kmalloc, cache, pages, vmalloc or mempool.
        name: String,
        /// Page order for the pages backend.
        #[arg(long, default_value_t = 0)]
        order: u32,
    },
    /// Show or set the module-wide quantum (SCULL_IOCGQUANTUM / SCULL_IOCSQUANTUM).
    Quantum {
        /// New value; applies to a device at its next trim.
        value: Option<i32>,
    },
    /// Show or set the module-wide qset (SCULL_IOCGQSET / SCULL_IOCSQSET).
    Qset {
        /// New value; applies to a device at its next trim.
        value: Option<i32>,
    },
    /// Restore the load-time quantum and qset (SCULL_IOCRESET).
    Reset,
    /// mmap the device (pages, or vmalloc with a whole-page quantum: LDD3
    /// chapter 15's scullp and scullv) and compare each mapped page with
    /// read(2); pages past the size or in holes are SIGBUS, reported here
    /// as unmapped. Other backends: ENODEV.
    Mmap {
        /// First page of the device to map.
        #[arg(long, default_value_t = 0)]
        page: u64,
        /// Pages to map (default: to the end of the data).
        #[arg(long)]
        pages: Option<u64>,
    },
}

/// `ldd-alloc scull mmap`: each page of a read-only shared mapping beside
/// `pread` of the same bytes. The mapped bytes go through a pipe, so a
/// SIGBUS page comes back as EFAULT instead of killing the command.
fn scull_mmap(dev: &Device, as_json: bool, page: u64, pages: Option<u64>) -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    const PAGE: usize = 4096;
    let size = dev.info().map_err(|e| ioctl_err("LDD_IOC_INFO", e))?.size;
    let n = pages.unwrap_or_else(|| size.div_ceil(PAGE as u64).saturating_sub(page).max(1));
    let m = dev
        .mmap(
            n as usize * PAGE,
            page * PAGE as u64,
            libc::PROT_READ,
            libc::MAP_SHARED,
        )
        .map_err(|e| explain("mmap", e))?;
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for two descriptors.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(explain("pipe", std::io::Error::last_os_error()));
    }
    let (mut same, mut differ, mut unmapped) = (0u64, 0u64, 0u64);
    let mut a = vec![0u8; PAGE];
    let mut b = vec![0u8; PAGE];
    for p in 0..n as usize {
        // SAFETY: A page of our mapping; the kernel copies it (or EFAULT).
        let w = unsafe { libc::write(fds[1], m.addr().add(p * PAGE).cast(), PAGE) };
        if w != PAGE as isize {
            unmapped += 1;
            continue;
        }
        // SAFETY: Reads the page back out of the pipe into `a`.
        unsafe { libc::read(fds[0], a.as_mut_ptr().cast(), PAGE) };
        let got = dev
            .file()
            .read_at(&mut b, (page + p as u64) * PAGE as u64)
            .map_err(|e| explain("pread", e))?;
        b[got..].fill(0);
        if a == b {
            same += 1;
        } else {
            differ += 1;
        }
    }
    // SAFETY: Our own descriptors.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    if as_json {
        println!(
            "{}",
            json!({"first_page": page, "pages": n, "same_as_read": same,
                "different": differ, "sigbus": unmapped})
        );
    } else {
        println!(
            "mapped {n} pages from page {page}: {same} identical to read(2), {differ} different, \
             {unmapped} SIGBUS (past the size {size} or in a hole)"
        );
    }
    if differ > 0 {
        return Err(format!("{differ} mapped pages differ from read(2)"));
    }
    Ok(())
}

/// An error for the user: what failed, and the errno's meaning there.
fn explain(what: &str, err: impl std::fmt::Display) -> String {
    format!("ldd-alloc: {what}: {err}")
}

fn errno_hint(e: nix::errno::Errno) -> &'static str {
    use nix::errno::Errno::*;
    match e {
        ENOTTY => "the module does not know this command (old module?)",
        EINVAL => "a value is out of range",
        EFAULT => "a bad user pointer",
        ENOMEM => "the allocation failed",
        E2BIG => "the request is larger than the module allows",
        EBUSY => "the device holds data: trim it first",
        EPERM => "needs CAP_SYS_ADMIN (README: who may do what)",
        ENOSPC => "a limit was reached: the device size (max_mib), a full registry, or the lab's budget (lab_total_mib)",
        _ => "",
    }
}

fn ioctl_err(what: &str, e: nix::errno::Errno) -> String {
    let hint = errno_hint(e);
    if hint.is_empty() {
        explain(what, e.to_string())
    } else {
        explain(what, format!("{e}: {hint}"))
    }
}

fn info_json(i: &uapi::DeviceInfo) -> serde_json::Value {
    json!({
        "index": i.index, "backend": backend_name(i.backend), "quantum": i.quantum,
        "qset": i.qset, "order": i.order, "qsets": i.qsets, "size": i.size,
        "bytes_held": i.bytes_held, "quanta": i.quanta,
        "module_version": format!("{}.{}.{}", i.module_version >> 16, (i.module_version >> 8) & 0xff, i.module_version & 0xff),
        "abi_version": i.abi_version,
    })
}

fn info_line(i: &uapi::DeviceInfo) -> String {
    format!(
        "/dev/ldd_alloc{}: backend {:<7} quantum {:>7} qset {:>5} size {:>10} held {:>10} B in {} quanta, {} qsets",
        i.index,
        backend_name(i.backend),
        i.quantum,
        i.qset,
        i.size,
        i.bytes_held,
        i.quanta,
        i.qsets
    )
}

fn open(dev: u32) -> Result<Device, String> {
    Device::open_index(dev).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            "the nodes are root's (0600): run as root, or load with `ldd_alloc_load group=GROUP`"
        } else {
            "is the module loaded? scripts/ldd_alloc_load"
        };
        explain(
            &format!("open {}", crate::device::node(dev).display()),
            format!("{e} ({hint})"),
        )
    })
}

fn trim(dev: u32) -> Result<(), String> {
    Device::open_with(crate::device::node(dev), libc::O_WRONLY | libc::O_TRUNC)
        .map(drop)
        .map_err(|e| explain("trim", e))
}

fn scull(cli: &Cli, cmd: &ScullCmd) -> Result<(), String> {
    let dev = open(cli.dev)?;
    let mut f = dev.file();
    match cmd {
        ScullCmd::Mmap { page, pages } => scull_mmap(&dev, cli.json, *page, *pages)?,
        ScullCmd::Write { text, offset } => {
            let data = match text {
                Some(t) => t.clone().into_bytes(),
                None => {
                    let mut v = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut v)
                        .map_err(|e| explain("stdin", e))?;
                    v
                }
            };
            f.seek(SeekFrom::Start(*offset))
                .map_err(|e| explain("lseek", e))?;
            f.write_all(&data).map_err(|e| explain("write", e))?;
            if cli.json {
                println!("{}", json!({"written": data.len(), "offset": offset}));
            } else {
                println!("wrote {} bytes at {offset}", data.len());
            }
        }
        ScullCmd::Read { offset, len } => {
            f.seek(SeekFrom::Start(*offset))
                .map_err(|e| explain("lseek", e))?;
            let mut buf = Vec::new();
            match len {
                Some(n) => f.take(*n).read_to_end(&mut buf),
                None => f.read_to_end(&mut buf),
            }
            .map_err(|e| explain("read", e))?;
            std::io::stdout()
                .write_all(&buf)
                .map_err(|e| explain("stdout", e))?;
        }
        ScullCmd::Seek { whence, offset } => {
            let pos = match whence.as_str() {
                "set" => SeekFrom::Start(
                    u64::try_from(*offset).map_err(|_| explain("seek", "set needs offset >= 0"))?,
                ),
                "cur" => SeekFrom::Current(*offset),
                "end" => SeekFrom::End(*offset),
                w => return Err(explain("seek", format!("whence {w}: use set, cur or end"))),
            };
            let at = f.seek(pos).map_err(|e| explain("lseek", e))?;
            println!("{at}");
        }
        ScullCmd::Trim => trim(cli.dev)?,
        ScullCmd::Backend { name, order } => {
            let b = backend_by_name(name).ok_or_else(|| {
                explain(
                    "backend",
                    format!("{name}: one of {}", BACKEND_NAMES.join(", ")),
                )
            })?;
            dev.set_backend(b, *order)
                .map_err(|e| ioctl_err("LDD_IOC_SET_BACKEND", e))?;
        }
        ScullCmd::Quantum { value } => {
            if let Some(v) = value {
                dev.set_quantum(*v)
                    .map_err(|e| ioctl_err("SCULL_IOCSQUANTUM", e))?;
            }
            println!(
                "{}",
                dev.quantum()
                    .map_err(|e| ioctl_err("SCULL_IOCGQUANTUM", e))?
            );
        }
        ScullCmd::Qset { value } => {
            if let Some(v) = value {
                dev.set_qset(*v)
                    .map_err(|e| ioctl_err("SCULL_IOCSQSET", e))?;
            }
            println!(
                "{}",
                dev.qset().map_err(|e| ioctl_err("SCULL_IOCGQSET", e))?
            );
        }
        ScullCmd::Reset => dev
            .scull_reset()
            .map_err(|e| ioctl_err("SCULL_IOCRESET", e))?,
    }
    Ok(())
}

fn device_indices() -> Vec<u32> {
    (0..16)
        .filter(|i| crate::device::node(*i).exists())
        .collect()
}

fn devices(cli: &Cli) -> Result<(), String> {
    let mut all = Vec::new();
    for i in device_indices() {
        all.push(open(i)?.info().map_err(|e| ioctl_err("LDD_IOC_INFO", e))?);
    }
    if cli.json {
        println!(
            "{}",
            serde_json::Value::Array(all.iter().map(info_json).collect())
        );
    } else {
        for i in &all {
            println!("{}", info_line(i));
        }
    }
    Ok(())
}

fn demo() -> Result<(), String> {
    println!("== ldd_alloc demo: the scull device of LDD3 on four allocators ==");
    let text = b"Allocating Memory: LDD3 chapter 8\n";
    for i in device_indices()
        .into_iter()
        .take(uapi::backend::COUNT as usize)
    {
        trim(i)?;
        let dev = open(i)?;
        let before = dev.info().map_err(|e| ioctl_err("INFO", e))?;
        // Enough data to need several quanta and a second quantum set.
        let big: Vec<u8> = (0..(2 * before.quantum as usize * 3 + 17))
            .map(|b| (b % 251) as u8)
            .collect();
        let mut f = dev.file();
        f.write_all(text).map_err(|e| explain("write", e))?;
        f.write_all(&big).map_err(|e| explain("write", e))?;
        f.seek(SeekFrom::Start(0))
            .map_err(|e| explain("lseek", e))?;
        let mut back = vec![0u8; text.len() + big.len()];
        f.read_exact(&mut back).map_err(|e| explain("read", e))?;
        let ok = back[..text.len()] == text[..] && back[text.len()..] == big[..];
        let after = dev.info().map_err(|e| ioctl_err("INFO", e))?;
        println!("{}", info_line(&after));
        println!(
            "    wrote {} bytes, read them back: {}",
            back.len(),
            if ok { "identical" } else { "DIFFERENT" }
        );
        trim(i)?;
        if !ok {
            return Err(explain("demo", "data read back differs"));
        }
    }
    println!("== every device trimmed; 'ldd-alloc --help' lists the commands ==");
    Ok(())
}

/// Runs the command line; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.cmd {
        Cmd::Info => open(cli.dev).and_then(|d| {
            let i = d.info().map_err(|e| ioctl_err("LDD_IOC_INFO", e))?;
            if cli.json {
                println!("{}", info_json(&i));
            } else {
                println!("{}", info_line(&i));
            }
            Ok(())
        }),
        Cmd::Devices => devices(&cli),
        Cmd::Scull(c) => scull(&cli, c),
        Cmd::Demo => demo(),
        Cmd::Alloc(a) => open(cli.dev).and_then(|d| alloc(&d, cli.json, a)),
        Cmd::Free { handles, all } => open(cli.dev).and_then(|d| free(&d, handles, *all)),
        Cmd::List => open(cli.dev).and_then(|d| list(&d, cli.json)),
        Cmd::Lab => open(cli.dev).and_then(|d| lab_session(&d)),
        Cmd::Slabinfo { watch } => slabinfo(&cli, *watch),
        Cmd::Pools => pools(&cli),
        Cmd::Zones => zones(&cli),
        Cmd::Stack => stack(&cli),
        Cmd::Shrink => open(cli.dev).and_then(|d| {
            let n = d.shrink().map_err(|e| ioctl_err("LDD_IOC_SHRINK", e))?;
            if cli.json {
                println!("{}", serde_json::json!({ "pages_freed": n }));
            } else {
                println!("{n} pages given back");
            }
            Ok(())
        }),
        Cmd::Fault { next, all, owner } => open(cli.dev).and_then(|d| {
            d.fault(uapi::FaultSpec {
                fail_next: *next,
                fail_all: u32::from(*all),
                owner: *owner,
            })
            .map_err(|e| ioctl_err("LDD_IOC_FAULT", e))?;
            let s = d
                .page_stats()
                .map_err(|e| ioctl_err("LDD_IOC_PAGE_STATS", e))?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "fail_next": s.fail_next,
                        "fail_all": s.fail_all != 0,
                        "owner": s.fail_owner,
                    })
                );
            } else if s.fail_all != 0 {
                println!(
                    "every page allocation of our caches fails (owner {})",
                    s.fail_owner
                );
            } else if s.fail_next > 0 {
                println!(
                    "the next {} page allocations of our caches fail (owner {})",
                    s.fail_next, s.fail_owner
                );
            } else {
                println!("fault injection is off");
            }
            Ok(())
        }),
        Cmd::Tour {
            pressure,
            pressure_only,
        } => tour(&cli, *pressure, *pressure_only),
        Cmd::Pressure(p) => crate::pressure::run_tool(cli.dev, p),
        Cmd::Percpu(a) => open(cli.dev).and_then(|d| match &a.race {
            Some(mode) => percpu_race(&d, cli.json, a, mode),
            None => percpu(&d, cli.json),
        }),
        Cmd::Bench(b) => crate::bench::run(cli.dev, cli.json, b),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}

/// `ldd-alloc percpu`.
fn percpu(d: &Device, as_json: bool) -> Result<(), String> {
    let (info, copies) = d
        .percpu_info()
        .map_err(|e| ioctl_err("LDD_IOC_PERCPU_INFO", e))?;
    let unit = match copies.as_slice() {
        [a, b, ..] if a.addr != 0 => Some(b.addr.wrapping_sub(a.addr)),
        _ => None,
    };
    if as_json {
        let cpus: Vec<_> = copies
            .iter()
            .map(|c| {
                json!({"cpu": c.cpu, "online": c.online != 0, "reads": c.reads,
                    "writes": c.writes, "bytes_read": c.bytes_read,
                    "bytes_written": c.bytes_written, "addr": c.addr,
                    "offset": c.offset, "vmalloc_area": c.vmalloc_area != 0})
            })
            .collect();
        println!(
            "{}",
            json!({"device": d.path().display().to_string(), "possible": info.possible,
                "online": info.online, "copy_size": info.copy_size, "base": info.base,
                "sum": {"reads": info.reads, "writes": info.writes,
                    "bytes_read": info.bytes_read, "bytes_written": info.bytes_written},
                "copies": cpus})
        );
        return Ok(());
    }
    println!(
        "{}: per-CPU read/write counters (alloc_percpu, {} bytes a copy; {} possible CPUs, {} online)",
        d.path().display(),
        info.copy_size,
        info.possible,
        info.online
    );
    println!(
        "  {:>4} {:>6} {:>10} {:>10} {:>12} {:>13}  {:<18} {:<18} area",
        "cpu", "online", "reads", "writes", "bytes_read", "bytes_written", "address", "offset"
    );
    for c in &copies {
        println!(
            "  {:>4} {:>6} {:>10} {:>10} {:>12} {:>13}  {:<18} {:<18} {}",
            c.cpu,
            if c.online != 0 { "yes" } else { "no" },
            c.reads,
            c.writes,
            c.bytes_read,
            c.bytes_written,
            hex_or_hidden(c.addr),
            hex_or_hidden(c.offset),
            if c.vmalloc_area != 0 {
                "vmalloc (a per-CPU chunk)"
            } else {
                "direct map (first chunk)"
            }
        );
    }
    println!(
        "  {:>4} {:>6} {:>10} {:>10} {:>12} {:>13}",
        "sum", "", info.reads, info.writes, info.bytes_read, info.bytes_written
    );
    match unit {
        Some(u) => println!(
            "  copy of cpu N = {:#x} (the __percpu cookie) + __per_cpu_offset[N]; cpu1 - cpu0 = {u:#x} bytes",
            info.base
        ),
        None if copies.len() > 1 => {
            println!("  (addresses are shown to CAP_SYS_ADMIN only, as %pK prints them)")
        }
        None => {}
    }
    Ok(())
}

fn hex_or_hidden(v: u64) -> String {
    if v == 0 {
        "-".into()
    } else {
        format!("{v:#x}")
    }
}

/// `ldd-alloc percpu --race MODE`: `threads` threads on one open file.
fn percpu_race(d: &Device, as_json: bool, a: &PercpuArgs, mode: &str) -> Result<(), String> {
    let m = lookup(&uapi::race_mode::NAMES, "race mode", mode)?;
    if a.threads == 0 || a.threads > 64 {
        return Err("--threads: 1..=64".into());
    }
    d.race_reset()
        .map_err(|e| ioctl_err("LDD_IOC_PERCPU_RACE_RESET", e))?;
    let migrated = std::thread::scope(|s| {
        let runs: Vec<_> = (0..a.threads)
            .map(|_| s.spawn(|| d.race_run(a.iters, m, a.window_us)))
            .collect();
        let mut migrated = 0;
        for r in runs {
            match r.join() {
                Ok(Ok(r)) => migrated += r.migrated,
                Ok(Err(e)) => return Err(ioctl_err("LDD_IOC_PERCPU_RACE", e)),
                Err(_) => return Err("a race thread panicked".to_string()),
            }
        }
        Ok(migrated)
    })?;
    let (r, copies) = d
        .race_read()
        .map_err(|e| ioctl_err("LDD_IOC_PERCPU_RACE_READ", e))?;
    let lost = r.reference.saturating_sub(r.sum);
    if as_json {
        println!(
            "{}",
            json!({"mode": mode, "threads": a.threads, "iters": a.iters,
                "window_us": a.window_us, "reference": r.reference, "sum": r.sum,
                "lost": lost, "migrated": migrated, "copies": copies})
        );
    } else {
        println!(
            "{mode}: {} threads x {} increments of one per-CPU counter",
            a.threads, a.iters
        );
        for (cpu, v) in copies.iter().enumerate() {
            println!("  cpu {cpu}: {v}");
        }
        println!(
            "  sum of the copies {}, atomic reference {}: {lost} increments lost ({:.1}%), {migrated} ended on another CPU",
            r.sum,
            r.reference,
            100.0 * lost as f64 / r.reference.max(1) as f64
        );
    }
    Ok(())
}

fn lookup(names: &[&str], what: &str, name: &str) -> Result<u32, String> {
    names
        .iter()
        .position(|n| *n == name || n.trim_start_matches('_') == name)
        .map(|i| i as u32)
        .ok_or_else(|| explain(what, format!("{name}: one of {}", names.join(", "))))
}

fn reply_json(backend: u32, a: &uapi::AllocReply) -> serde_json::Value {
    json!({
        "handle": a.handle, "backend": lab_backend::NAMES.get(backend as usize),
        "requested": a.requested, "actual": a.actual, "zone": zone_name(a.zone),
        "phys_lo": a.phys_lo, "phys_hi": a.phys_hi, "pages": a.pages,
        "contiguous": a.contiguous == 1, "zeroed": a.zeroed == 1,
        "vmalloc_area": a.vmalloc_area == 1, "latency_ns": a.latency_ns,
    })
}

fn alloc(dev: &Device, as_json: bool, a: &AllocArgs) -> Result<(), String> {
    let backend = lookup(&lab_backend::NAMES, "backend", &a.backend)?;
    let ctx = lookup(&context::NAMES, "context", &a.context)?;
    let gfp = parse_gfp(&a.gfp).map_err(|e| explain("gfp", e))?;
    let req = uapi::AllocRequest {
        backend,
        context: ctx,
        gfp,
        size: a.size,
        order: a.order,
        count: a.count,
        handle: a.handle.unwrap_or(0),
        flags: if a.keep { 0 } else { alloc_flags::FREE_NOW }
            | if a.big { alloc_flags::BIG } else { 0 },
        replies: 0,
    };
    let replies = dev.alloc(req).map_err(|e| {
        let why = match e {
            nix::errno::Errno::EINVAL
                if ctx != context::PROCESS && gfp & uapi::gfp::DIRECT_RECLAIM != 0 =>
            {
                format!(
                    "{e}: {} may sleep, and a {} context must not",
                    gfp_names(gfp),
                    context::NAMES[ctx as usize]
                )
            }
            nix::errno::Errno::EINVAL
                if uapi::gfp::REMOVED.iter().any(|(b, _, _)| gfp & b != 0) =>
            {
                let (_, name, instead) = uapi::gfp::REMOVED
                    .iter()
                    .find(|(b, _, _)| gfp & b != 0)
                    .copied()
                    .unwrap_or_default();
                format!("{e}: {name} no longer exists: {instead}")
            }
            _ => return ioctl_err("LDD_IOC_ALLOC", e),
        };
        explain("LDD_IOC_ALLOC", why)
    })?;
    if as_json {
        println!(
            "{}",
            serde_json::Value::Array(replies.iter().map(|r| reply_json(backend, r)).collect())
        );
        return Ok(());
    }
    println!(
        "{} x {} ({}, {} context):",
        replies.len(),
        lab_backend::NAMES[backend as usize],
        gfp_names(gfp),
        context::NAMES[ctx as usize]
    );
    println!("  handle      asked     usable zone    phys range                     pages contig zeroed area     ns");
    for r in &replies {
        println!(
            "  {:<8} {:>8} {:>10} {:<6} {:#014x}-{:#014x} {:>6} {:>6} {:>6} {:<7} {:>6}",
            if r.handle == 0 {
                "-".to_string()
            } else {
                format!("{:#x}", r.handle)
            },
            r.requested,
            r.actual,
            zone_name(r.zone),
            r.phys_lo,
            r.phys_hi,
            r.pages,
            if r.contiguous == 1 { "yes" } else { "no" },
            if r.zeroed == 1 { "yes" } else { "no" },
            if r.vmalloc_area == 1 {
                "vmalloc"
            } else {
                "direct"
            },
            r.latency_ns
        );
    }
    Ok(())
}

fn free(dev: &Device, handles: &[String], all: bool) -> Result<(), String> {
    if all {
        let n = dev
            .free_all()
            .map_err(|e| ioctl_err("LDD_IOC_FREE_ALL", e))?;
        println!("freed {n}");
    }
    for h in handles {
        let h = parse_handle(h).map_err(|e| explain("free", e))?;
        dev.free(h).map_err(|e| match e {
            nix::errno::Errno::EINVAL => explain(
                "LDD_IOC_FREE",
                format!("{h:#x}: not a live handle of this open file"),
            ),
            e => ioctl_err("LDD_IOC_FREE", e),
        })?;
    }
    Ok(())
}

fn list(dev: &Device, as_json: bool) -> Result<(), String> {
    let all = dev.list().map_err(|e| ioctl_err("LDD_IOC_LIST", e))?;
    if as_json {
        let v: Vec<_> = all
            .iter()
            .map(|h| json!({"handle": h.handle, "backend": lab_backend::NAMES.get(h.backend as usize),
                "requested": h.requested, "actual": h.actual, "zone": zone_name(h.zone), "order": h.order}))
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(());
    }
    println!("{} live allocation(s)", all.len());
    for h in &all {
        println!(
            "  {:#010x} {:<18} asked {:>9} usable {:>9} zone {:<6} order {}",
            h.handle,
            lab_backend::NAMES.get(h.backend as usize).unwrap_or(&"?"),
            h.requested,
            h.actual,
            zone_name(h.zone),
            h.order
        );
    }
    Ok(())
}

fn lab_session(dev: &Device) -> Result<(), String> {
    use std::io::BufRead;
    eprintln!("ldd-alloc lab: one command per line (alloc ... --keep, list, free H, quit)");
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| explain("stdin", e))?;
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() || words[0].starts_with('#') {
            continue;
        }
        if matches!(words[0], "quit" | "exit") {
            break;
        }
        let cli =
            match Cli::try_parse_from(std::iter::once("ldd-alloc").chain(words.iter().copied())) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    continue;
                }
            };
        let r = match &cli.cmd {
            Cmd::Alloc(a) => alloc(dev, cli.json, a),
            Cmd::Free { handles, all } => free(dev, handles, *all),
            Cmd::List => list(dev, cli.json),
            _ => Err("in a lab session: alloc, free, list, quit".to_string()),
        };
        if let Err(e) = r {
            eprintln!("{e}");
        }
    }
    Ok(())
}

fn slabinfo(cli: &Cli, watch: Option<u64>) -> Result<(), String> {
    let dev = open(cli.dev)?;
    loop {
        let caches = dev
            .caches()
            .map_err(|e| ioctl_err("LDD_IOC_CACHE_INFO", e))?;
        if cli.json {
            let v: Vec<_> = caches
                .iter()
                .map(|c| json!({"name": cache_name(c), "active_objs": c.active_objs, "cached_objs": c.cached_objs, "stashed_objs": c.stashed_objs,
                    "num_objs": c.num_objs, "objsize": c.objsize, "stride": c.stride, "objperslab": c.objperslab,
                    "pagesperslab": c.pagesperslab, "slabs": {"partial": c.partial_slabs, "full": c.full_slabs, "empty": c.empty_slabs},
                    "allocs": c.allocs, "frees": c.frees, "cpu_alloc_hits": c.cpu_alloc_hits, "cpu_free_hits": c.cpu_free_hits,
                    "refills": c.refills, "drains": c.drains, "slabs_created": c.slabs_created, "slabs_freed": c.slabs_freed,
                    "refused": {"foreign": c.refused_foreign, "misaligned": c.refused_misaligned, "double": c.refused_double},
                    "poison_errors": c.poison_errors, "redzone_errors": c.redzone_errors}))
                .collect();
            println!("{}", serde_json::Value::Array(v));
        } else {
            if watch.is_some() {
                print!("\x1b[H\x1b[2J");
            }
            println!(
                "{:<18} {:>8} {:>8} {:>7} {:>6} {:>5} {:>5} {:>9} {:>9} {:>8}",
                "name",
                "active",
                "objs",
                "objsize",
                "/slab",
                "pages",
                "slabs",
                "cpu-hit%",
                "allocs",
                "refused"
            );
            for c in &caches {
                let hits = c.cpu_alloc_hits + c.cpu_free_hits;
                let ops = c.allocs + c.frees;
                println!(
                    "{:<18} {:>8} {:>8} {:>7} {:>6} {:>5} {:>5} {:>8.1}% {:>9} {:>8}",
                    cache_name(c),
                    c.active_objs,
                    c.num_objs,
                    c.objsize,
                    c.objperslab,
                    c.pagesperslab,
                    c.partial_slabs + c.full_slabs + c.empty_slabs,
                    if ops == 0 {
                        0.0
                    } else {
                        100.0 * hits as f64 / ops as f64
                    },
                    c.allocs,
                    c.refused_foreign + c.refused_misaligned + c.refused_double
                );
            }
        }
        match watch {
            Some(secs) => std::thread::sleep(std::time::Duration::from_secs(secs.max(1))),
            None => return Ok(()),
        }
    }
}

fn pools(cli: &Cli) -> Result<(), String> {
    let dev = open(cli.dev)?;
    let mut all = Vec::new();
    loop {
        match dev.pool_info(all.len() as u32) {
            Ok(p) => all.push(p),
            Err(nix::errno::Errno::ENOENT) => break,
            Err(e) => return Err(ioctl_err("LDD_IOC_POOL_INFO", e)),
        }
    }
    if cli.json {
        let v: Vec<_> = all
            .iter()
            .map(|p| json!({"index": p.index, "live": p.live == 1, "element_size": p.element_size,
                "curr_nr": p.curr_nr, "min_nr": p.min_nr, "outstanding": p.outstanding,
                "allocs_backing": p.allocs_backing, "allocs_reserve": p.allocs_reserve,
                "frees_to_reserve": p.frees_to_reserve, "frees_to_backing": p.frees_to_backing,
                "waits": p.waits, "wakeups": p.wakeups, "failures": p.failures, "destroy_refused": p.destroy_refused}))
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(());
    }
    println!("pool  elem  reserve/min  out  from-backing  from-reserve  waits  wakeups  failures");
    for p in &all {
        println!(
            "{:>4} {:>5} {:>7}/{:<4} {:>4} {:>13} {:>13} {:>6} {:>8} {:>9}{}",
            p.index,
            p.element_size,
            p.curr_nr,
            p.min_nr,
            p.outstanding,
            p.allocs_backing,
            p.allocs_reserve,
            p.waits,
            p.wakeups,
            p.failures,
            if p.live == 1 { "" } else { "  (destroyed)" }
        );
    }
    // The lab's kernel mempools (mempool_create), beside ours: the kernel
    // counts nothing but what the reserve holds.
    let mut kernel = Vec::new();
    loop {
        match dev.kernel_pool_info(kernel.len() as u32) {
            Ok(p) => kernel.push(p),
            Err(nix::errno::Errno::ENOENT) => break,
            Err(e) => return Err(ioctl_err("LDD_IOC_KERNEL_POOL_INFO", e)),
        }
    }
    if !kernel.is_empty() {
        println!("kernel mempools of the lab (mempool_create):");
        println!("pool  elem  reserve/min");
        for p in &kernel {
            println!(
                "{:>4} {:>5} {:>7}/{:<4}",
                p.index, p.element_size, p.curr_nr, p.min_nr
            );
        }
    }
    Ok(())
}

fn zones(cli: &Cli) -> Result<(), String> {
    let dev = open(cli.dev)?;
    let s = dev
        .page_stats()
        .map_err(|e| ioctl_err("LDD_IOC_PAGE_STATS", e))?;
    // Present and free pages per zone from /proc/zoneinfo, for scale.
    let zoneinfo = std::fs::read_to_string("/proc/zoneinfo").unwrap_or_default();
    let mut kernel: Vec<(String, u64, u64)> = Vec::new();
    for block in zoneinfo.split("Node ").skip(1) {
        let name = block.split_whitespace().nth(2).unwrap_or("?").to_string();
        let field = |key: &str| {
            block
                .lines()
                .find_map(|l| {
                    l.trim()
                        .strip_prefix(key)
                        .and_then(|v| v.trim().parse::<u64>().ok())
                })
                .unwrap_or(0)
        };
        kernel.push((name, field("present"), field("pages free")));
    }
    if cli.json {
        let v: Vec<_> = (0..uapi::zone::COUNT)
            .map(|i| json!({"zone": zone_name(i as u32), "ours_pages_out": s.pages_out[i], "ours_allocs": s.allocs[i],
                "ours_frees": s.frees[i],
                "present": kernel.iter().find(|k| k.0 == zone_name(i as u32)).map(|k| k.1),
                "free": kernel.iter().find(|k| k.0 == zone_name(i as u32)).map(|k| k.2)}))
            .collect();
        println!(
            "{}",
            json!({"zones": v, "failures": s.failures, "injected": s.injected})
        );
        return Ok(());
    }
    println!(
        "zone     ours: pages out  runs allocated  runs freed | kernel: present pages  free pages"
    );
    for i in 0..uapi::zone::COUNT {
        let name = zone_name(i as u32);
        let k = kernel.iter().find(|k| k.0 == name);
        println!(
            "{:<8} {:>16} {:>15} {:>11} | {:>21} {:>11}",
            name,
            s.pages_out[i],
            s.allocs[i],
            s.frees[i],
            k.map_or("-".into(), |k| k.1.to_string()),
            k.map_or("-".into(), |k| k.2.to_string())
        );
    }
    println!(
        "page allocations refused by the kernel: {}, failed on purpose: {}",
        s.failures, s.injected
    );
    Ok(())
}

fn stack(cli: &Cli) -> Result<(), String> {
    let s = open(cli.dev)?
        .stack()
        .map_err(|e| ioctl_err("LDD_IOC_STACK", e))?;
    if cli.json {
        println!(
            "{}",
            json!({"thread_size": s.thread_size, "used_in_ioctl": s.used_in_ioctl,
            "left_in_ioctl": s.left_in_ioctl, "vmap_stack": s.vmap_stack == 1, "page_size": s.page_size})
        );
    } else {
        println!(
            "kernel stack: {} bytes ({} pages){}; the ioctl handler uses {} bytes, {} left",
            s.thread_size,
            s.thread_size / u64::from(s.page_size.max(1)),
            if s.vmap_stack == 1 {
                ", virtually mapped with guard pages"
            } else {
                ""
            },
            s.used_in_ioctl,
            s.left_in_ioctl
        );
    }
    Ok(())
}

fn tour(cli: &Cli, pressure: bool, pressure_only: bool) -> Result<(), String> {
    let dev = open(cli.dev)?;
    let mut t = if pressure_only {
        crate::tour::Tour::default()
    } else {
        crate::tour::run(&dev)
    };
    let _ = dev.free_all();
    if pressure || pressure_only {
        // Each claim tried up to twice, as its VM test does three times.
        t.claims.extend(crate::pressure_tour::run_all(2));
    }
    if cli.json {
        println!(
            "{}",
            serde_json::to_string(&t.claims).map_err(|e| explain("json", e))?
        );
    } else {
        println!(
            "== the chapter-8 tour: {} claims of LDD3 and Love, checked on this kernel ==",
            t.claims.len()
        );
        let mut section = "";
        for c in &t.claims {
            if c.section != section {
                section = c.section;
                println!("\n[{section}]");
            }
            println!("  {} {}", if c.holds { "ok  " } else { "FAIL" }, c.claim);
            println!("       {}", c.observed);
        }
    }
    let failed = t.claims.iter().filter(|c| !c.holds).count();
    if failed > 0 {
        return Err(format!("ldd-alloc tour: {failed} claim(s) do not hold"));
    }
    Ok(())
}
