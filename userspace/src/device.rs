//! A safe handle on one `/dev/ldd_alloc<N>` node: the scull file operations
//! and every ioctl of [`crate::uapi`], errors as [`Errno`].

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::uapi;

/// The node of device `index`.
pub fn node(index: u32) -> PathBuf {
    PathBuf::from(format!("/dev/ldd_alloc{index}"))
}

/// An open ldd_alloc device.
#[derive(Debug)]
pub struct Device {
    file: File,
    path: PathBuf,
}

impl Device {
    /// Opens `path` read-write.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        Self::open_with(path, libc::O_RDWR)
    }

    /// Opens `path` with `open(2)` flags (O_RDWR, O_WRONLY | O_TRUNC, ...).
    pub fn open_with(path: impl AsRef<Path>, flags: i32) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let access = flags & libc::O_ACCMODE;
        let file = OpenOptions::new()
            .read(access != libc::O_WRONLY)
            .write(access != libc::O_RDONLY)
            .custom_flags(flags & !libc::O_ACCMODE)
            .open(&path)?;
        Ok(Self { file, path })
    }

    /// Opens device `index`.
    pub fn open_index(index: u32) -> io::Result<Self> {
        Self::open(node(index))
    }

    /// The node's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file, for `read`, `write` and `seek`.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// `ioctl(fd, cmd, arg)` with an integer or pointer argument: the return
    /// value, or the errno.
    pub fn ioctl_raw(&self, cmd: u32, arg: usize) -> Result<i32, Errno> {
        // SAFETY: The kernel validates `arg`; a bad pointer gives EFAULT, not
        // memory unsafety in this process (the kernel never writes outside
        // the size encoded in `cmd`, and callers pass buffers of that size).
        let ret = unsafe { libc::ioctl(self.file.as_raw_fd(), cmd as _, arg) };
        Errno::result(ret)
    }

    /// An ioctl that reads a `T` from the driver.
    pub fn ioctl_read<T: Default>(&self, cmd: u32) -> Result<T, Errno> {
        let mut value = T::default();
        self.ioctl_raw(cmd, &mut value as *mut T as usize)?;
        Ok(value)
    }

    /// An ioctl that passes `value` to the driver and may write it back.
    pub fn ioctl_inout<T>(&self, cmd: u32, value: &mut T) -> Result<i32, Errno> {
        self.ioctl_raw(cmd, value as *mut T as usize)
    }

    /// `LDD_IOC_INFO`.
    pub fn info(&self) -> Result<uapi::DeviceInfo, Errno> {
        self.ioctl_read(uapi::LDD_IOC_INFO)
    }

    /// `LDD_IOC_SET_BACKEND`: the device must be empty.
    pub fn set_backend(&self, backend: u32, order: u32) -> Result<(), Errno> {
        self.ioctl_raw(uapi::LDD_IOC_SET_BACKEND, (backend | order << 8) as usize)
            .map(drop)
    }

    /// `LDD_IOC_CACHE_INFO`: our cache number `index` (ENOENT past the last).
    pub fn cache_info(&self, index: u32) -> Result<uapi::CacheInfo, Errno> {
        let mut info = uapi::CacheInfo {
            index,
            ..Default::default()
        };
        self.ioctl_inout(uapi::LDD_IOC_CACHE_INFO, &mut info)?;
        Ok(info)
    }

    /// Every one of our caches.
    pub fn caches(&self) -> Result<Vec<uapi::CacheInfo>, Errno> {
        let mut all = Vec::new();
        loop {
            match self.cache_info(all.len() as u32) {
                Ok(c) => all.push(c),
                Err(Errno::ENOENT) => return Ok(all),
                Err(e) => return Err(e),
            }
        }
    }

    /// `LDD_IOC_POOL_INFO`: our mempool number `index` (ENOENT past the last).
    pub fn pool_info(&self, index: u32) -> Result<uapi::PoolInfo, Errno> {
        let mut info = uapi::PoolInfo {
            index,
            ..Default::default()
        };
        self.ioctl_inout(uapi::LDD_IOC_POOL_INFO, &mut info)?;
        Ok(info)
    }

    /// `LDD_IOC_KERNEL_POOL_INFO`: the lab's kernel mempool number `index`
    /// (ENOENT past the last).
    pub fn kernel_pool_info(&self, index: u32) -> Result<uapi::KernelPoolInfo, Errno> {
        let mut info = uapi::KernelPoolInfo {
            index,
            ..Default::default()
        };
        self.ioctl_inout(uapi::LDD_IOC_KERNEL_POOL_INFO, &mut info)?;
        Ok(info)
    }

    /// `LDD_IOC_POOL_RESIZE`.
    pub fn pool_resize(&self, index: u32, min_nr: u32) -> Result<(), Errno> {
        let mut r = uapi::PoolResize { index, min_nr };
        self.ioctl_inout(uapi::LDD_IOC_POOL_RESIZE, &mut r)
            .map(drop)
    }

    /// `LDD_IOC_POOL_DESTROY`.
    pub fn pool_destroy(&self, index: u32) -> Result<(), Errno> {
        self.ioctl_raw(uapi::LDD_IOC_POOL_DESTROY, index as usize)
            .map(drop)
    }

    /// `LDD_IOC_SHRINK`: pages given back.
    pub fn shrink(&self) -> Result<i32, Errno> {
        self.ioctl_raw(uapi::LDD_IOC_SHRINK, 0)
    }

    /// `LDD_IOC_SHRINKER_INFO`: what reclaim asked of our caches (root).
    pub fn shrinker_info(&self) -> Result<uapi::ShrinkerInfo, Errno> {
        self.ioctl_read(uapi::LDD_IOC_SHRINKER_INFO)
    }

    /// `LDD_IOC_PAGE_STATS`.
    pub fn page_stats(&self) -> Result<uapi::PageStats, Errno> {
        self.ioctl_read(uapi::LDD_IOC_PAGE_STATS)
    }

    /// `LDD_IOC_FAULT`.
    pub fn fault(&self, mut spec: uapi::FaultSpec) -> Result<(), Errno> {
        self.ioctl_inout(uapi::LDD_IOC_FAULT, &mut spec).map(drop)
    }

    /// `LDD_IOC_BAD_FREE`: the refusal code.
    pub fn bad_free(&self, scenario: u32) -> Result<i32, Errno> {
        self.ioctl_raw(uapi::LDD_IOC_BAD_FREE, scenario as usize)
    }

    /// `LDD_IOC_ALLOC`: `req.count` allocations; the replies of those made.
    pub fn alloc(&self, mut req: uapi::AllocRequest) -> Result<Vec<uapi::AllocReply>, Errno> {
        let mut replies = vec![uapi::AllocReply::default(); req.count as usize];
        req.replies = replies.as_mut_ptr() as u64;
        let n = self.ioctl_inout(uapi::LDD_IOC_ALLOC, &mut req)?;
        replies.truncate(n as usize);
        Ok(replies)
    }

    /// One allocation by `backend` of `size` bytes (or `2^order` pages).
    pub fn alloc_one(
        &self,
        backend: u32,
        gfp: u64,
        size: u64,
        order: u32,
        context: u32,
    ) -> Result<uapi::AllocReply, Errno> {
        let r = self.alloc(uapi::AllocRequest {
            backend,
            context,
            gfp,
            size,
            order,
            count: 1,
            ..Default::default()
        })?;
        r.into_iter().next().ok_or(Errno::ENOMEM)
    }

    /// `LDD_IOC_FREE`.
    pub fn free(&self, handle: u32) -> Result<(), Errno> {
        self.ioctl_raw(uapi::LDD_IOC_FREE, handle as usize)
            .map(drop)
    }

    /// `LDD_IOC_FREE_ALL`: how many were freed.
    pub fn free_all(&self) -> Result<i32, Errno> {
        self.ioctl_raw(uapi::LDD_IOC_FREE_ALL, 0)
    }

    /// `LDD_IOC_LIST`: this file's live allocations.
    pub fn list(&self) -> Result<Vec<uapi::HandleInfo>, Errno> {
        let mut req = uapi::ListRequest::default();
        self.ioctl_inout(uapi::LDD_IOC_LIST, &mut req)?;
        let mut entries = vec![uapi::HandleInfo::default(); req.count as usize];
        req.max = req.count;
        req.entries = entries.as_mut_ptr() as u64;
        self.ioctl_inout(uapi::LDD_IOC_LIST, &mut req)?;
        entries.truncate(req.count.min(req.max) as usize);
        Ok(entries)
    }

    /// `LDD_IOC_STACK`.
    pub fn stack(&self) -> Result<uapi::StackInfo, Errno> {
        self.ioctl_read(uapi::LDD_IOC_STACK)
    }

    /// `LDD_IOC_PERCPU_INFO`: this device's per-CPU counters, every copy.
    pub fn percpu_info(&self) -> Result<(uapi::PercpuInfo, Vec<uapi::PercpuCopy>), Errno> {
        let mut copies = vec![uapi::PercpuCopy::default(); 1024];
        let mut req = uapi::PercpuInfo {
            max: copies.len() as u32,
            entries: copies.as_mut_ptr() as u64,
            ..Default::default()
        };
        self.ioctl_inout(uapi::LDD_IOC_PERCPU_INFO, &mut req)?;
        copies.truncate(req.possible.min(req.max) as usize);
        Ok((req, copies))
    }

    /// `LDD_IOC_PERCPU_RACE`: `iters` increments of this file's race counter.
    pub fn race_run(
        &self,
        iters: u32,
        mode: u32,
        window_us: u32,
    ) -> Result<uapi::PercpuRace, Errno> {
        let mut r = uapi::PercpuRace {
            iters,
            mode,
            window_us,
            ..Default::default()
        };
        self.ioctl_inout(uapi::LDD_IOC_PERCPU_RACE, &mut r)?;
        Ok(r)
    }

    /// `LDD_IOC_PERCPU_RACE_READ`: the counts and each CPU's copy.
    pub fn race_read(&self) -> Result<(uapi::RaceCounts, Vec<u64>), Errno> {
        let mut copies = vec![0u64; 1024];
        let mut r = uapi::RaceCounts {
            max: copies.len() as u32,
            entries: copies.as_mut_ptr() as u64,
            ..Default::default()
        };
        self.ioctl_inout(uapi::LDD_IOC_PERCPU_RACE_READ, &mut r)?;
        copies.truncate(r.possible.min(r.max) as usize);
        Ok((r, copies))
    }

    /// `LDD_IOC_PERCPU_RACE_RESET`.
    pub fn race_reset(&self) -> Result<(), Errno> {
        self.ioctl_raw(uapi::LDD_IOC_PERCPU_RACE_RESET, 0).map(drop)
    }

    /// `mmap(NULL, len, prot, flags, fd, offset)` of this device.
    pub fn mmap(&self, len: usize, offset: u64, prot: i32, flags: i32) -> Result<Mapping, Errno> {
        // SAFETY: A fresh mapping chosen by the kernel (no MAP_FIXED): no
        // existing memory of this process changes.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                flags,
                self.file.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        Ok(Mapping {
            addr: p.cast(),
            len,
        })
    }

    /// `SCULL_IOCRESET`: the load-time quantum and qset again.
    pub fn scull_reset(&self) -> Result<(), Errno> {
        self.ioctl_raw(uapi::SCULL_IOCRESET, 0).map(drop)
    }

    /// `SCULL_IOCSQUANTUM` (set through a pointer).
    pub fn set_quantum(&self, mut quantum: i32) -> Result<(), Errno> {
        self.ioctl_inout(uapi::SCULL_IOCSQUANTUM, &mut quantum)
            .map(drop)
    }

    /// `SCULL_IOCSQSET` (set through a pointer).
    pub fn set_qset(&self, mut qset: i32) -> Result<(), Errno> {
        self.ioctl_inout(uapi::SCULL_IOCSQSET, &mut qset).map(drop)
    }

    /// `SCULL_IOCGQUANTUM` (get through a pointer).
    pub fn quantum(&self) -> Result<i32, Errno> {
        self.ioctl_read(uapi::SCULL_IOCGQUANTUM)
    }

    /// `SCULL_IOCGQSET` (get through a pointer).
    pub fn qset(&self) -> Result<i32, Errno> {
        self.ioctl_read(uapi::SCULL_IOCGQSET)
    }
}

/// A mapping of a device, unmapped when dropped. Bytes are copied in and
/// out with raw copies: the kernel may change them behind our back (that
/// is what a shared mapping of a device is for).
#[derive(Debug)]
pub struct Mapping {
    addr: *mut u8,
    len: usize,
}

// SAFETY: A mapping is process memory; its methods copy bytes in and out
// with raw copies, which any thread may do.
unsafe impl Send for Mapping {}
// SAFETY: As above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// The mapping's address.
    pub fn addr(&self) -> *mut u8 {
        self.addr
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty (never: mmap refuses length 0).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `buf.len()` bytes at `off` out (they must be mapped: SIGBUS
    /// otherwise, by design of the device).
    pub fn read_at(&self, off: usize, buf: &mut [u8]) {
        assert!(off + buf.len() <= self.len);
        // SAFETY: In bounds (checked); the mapping is readable.
        unsafe { std::ptr::copy_nonoverlapping(self.addr.add(off), buf.as_mut_ptr(), buf.len()) }
    }

    /// Copies `data` in at `off` (a writable mapping).
    pub fn write_at(&self, off: usize, data: &[u8]) {
        assert!(off + data.len() <= self.len);
        // SAFETY: In bounds (checked); the caller mapped it writable.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.addr.add(off), data.len()) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: Our own mapping, unmapped once.
        unsafe { libc::munmap(self.addr.cast(), self.len) };
    }
}

/// Names of the store backends, indexed by their ABI value.
pub const BACKEND_NAMES: [&str; uapi::backend::COUNT as usize] =
    ["kmalloc", "cache", "pages", "vmalloc", "mempool"];

/// The ABI value of a backend name.
pub fn backend_by_name(name: &str) -> Option<u32> {
    BACKEND_NAMES
        .iter()
        .position(|n| *n == name)
        .map(|i| i as u32)
}

/// The name of a backend value.
pub fn backend_name(value: u32) -> &'static str {
    BACKEND_NAMES.get(value as usize).copied().unwrap_or("?")
}

/// A cache's name as text.
pub fn cache_name(info: &uapi::CacheInfo) -> String {
    let end = info
        .name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(info.name.len());
    String::from_utf8_lossy(&info.name[..end]).into_owned()
}

/// Parses `GFP_KERNEL|__GFP_ZERO` (names of [`uapi::gfp::NAMES`], `|`- or
/// `,`-separated, with or without the `GFP_`/`__GFP_` prefix) into our bits.
pub fn parse_gfp(text: &str) -> Result<u64, String> {
    let mut bits = 0;
    for word in text
        .split(['|', ',', '+'])
        .map(str::trim)
        .filter(|w| !w.is_empty())
    {
        let up = word.to_ascii_uppercase();
        let found = uapi::gfp::NAMES.iter().find(|(name, _)| {
            *name == up || name.trim_start_matches('_').trim_start_matches("GFP_") == up
        });
        match found {
            Some((_, b)) => bits |= b,
            None => return Err(format!("unknown GFP flag {word}")),
        }
    }
    Ok(bits)
}

/// Our GFP bits as names: type flags first, then the remaining modifiers.
pub fn gfp_names(mut bits: u64) -> String {
    let mut names = Vec::new();
    for (name, b) in uapi::gfp::NAMES {
        if b != 0 && bits & b == b && (name.starts_with("GFP_") || b.count_ones() == 1) {
            names.push(name);
            bits &= !b;
        }
    }
    if names.is_empty() {
        "0".into()
    } else {
        names.join("|")
    }
}

/// The name of a zone number.
pub fn zone_name(zone: u32) -> &'static str {
    ["DMA", "DMA32", "Normal"]
        .get(zone as usize)
        .copied()
        .unwrap_or("?")
}
