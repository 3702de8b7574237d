//! `ldd-alloc`: drive the ldd_alloc module from the shell.
//!
//! Every command that prints data takes `--json`. Errors name the errno and
//! what it means for the request.

use std::io::{Read, Seek, SeekFrom, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::json;

use ldd_alloc::device::{backend_by_name, backend_name, Device, BACKEND_NAMES};
use ldd_alloc::uapi;

#[derive(Parser)]
#[command(
    name = "ldd-alloc",
    version,
    about = "LDD3 chapter 8 companion: talk to the ldd_alloc module"
)]
struct Cli {
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,
    /// The device index (/dev/ldd_alloc<N>).
    #[arg(long, short, global = true, default_value_t = 0)]
    dev: u32,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// What a device holds and how (LDD_IOC_INFO).
    Info,
    /// Every device, one line each.
    Devices,
    /// scull file operations and ioctls.
    #[command(subcommand)]
    Scull(ScullCmd),
    /// A short walk through the scull devices on every backend.
    Demo,
}

#[derive(Subcommand)]
enum ScullCmd {
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
        EPERM => "needs CAP_SYS_ADMIN",
        ENOSPC => "past the device size limit (module param max_mib)",
        _ => "",
    }
}

fn ioctl_err(what: &str, e: nix::errno::Errno) -> String {
    let hint = errno_hint(e);
    if hint.is_empty() {
        explain(what, format!("{e} ({})", e.desc()))
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
        explain(
            &format!("open {}", ldd_alloc::device::node(dev).display()),
            format!("{e} (is the module loaded? scripts/ldd_alloc_load)"),
        )
    })
}

fn trim(dev: u32) -> Result<(), String> {
    Device::open_with(ldd_alloc::device::node(dev), libc::O_WRONLY | libc::O_TRUNC)
        .map(drop)
        .map_err(|e| explain("trim", e))
}

fn scull(cli: &Cli, cmd: &ScullCmd) -> Result<(), String> {
    let dev = open(cli.dev)?;
    let mut f = dev.file();
    match cmd {
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
        .filter(|i| ldd_alloc::device::node(*i).exists())
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

fn main() -> ExitCode {
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}
