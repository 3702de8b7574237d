//! Helpers of the fuzz and stress suites (`vmtests::fuzz`, `vmtests::stress`):
//! raw system calls that report the errno instead of hiding it, user memory
//! with holes (unmapped and read-only pages) to hand to the driver, and a
//! sparse model of a scull device's bytes.

use std::collections::BTreeMap;
use std::ffi::CString;

use nix::errno::Errno;

/// An address that is never mapped in a process (inside the first page).
pub const BAD_PTR: usize = 8;
/// A kernel address: the driver must refuse to touch it for userspace.
pub const KERNEL_PTR: usize = 0xffff_8880_0000_0000;

/// A file descriptor closed on drop.
#[derive(Debug)]
pub struct Fd(pub i32);

impl Fd {
    /// `open(path, flags)`.
    pub fn open(path: &str, flags: i32) -> Result<Fd, Errno> {
        let c = CString::new(path).map_err(|_| Errno::EINVAL)?;
        // SAFETY: `c` is a valid NUL-terminated string.
        let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
        Errno::result(fd).map(Fd)
    }

    /// `read(fd, ptr, len)`: the kernel checks the buffer.
    pub fn read_raw(&self, ptr: usize, len: usize) -> Result<usize, Errno> {
        // SAFETY: Callers pass memory they own or addresses the kernel must
        // refuse; this process never dereferences them.
        let r = unsafe { libc::read(self.0, ptr as *mut libc::c_void, len) };
        Errno::result(r).map(|n| n as usize)
    }

    /// `write(fd, ptr, len)`.
    pub fn write_raw(&self, ptr: usize, len: usize) -> Result<usize, Errno> {
        // SAFETY: As for `read_raw`.
        let r = unsafe { libc::write(self.0, ptr as *const libc::c_void, len) };
        Errno::result(r).map(|n| n as usize)
    }

    /// `pread(fd, ptr, len, off)`.
    pub fn pread_raw(&self, ptr: usize, len: usize, off: i64) -> Result<usize, Errno> {
        // SAFETY: As for `read_raw`.
        let r = unsafe { libc::pread(self.0, ptr as *mut libc::c_void, len, off) };
        Errno::result(r).map(|n| n as usize)
    }

    /// `pwrite(fd, ptr, len, off)`.
    pub fn pwrite_raw(&self, ptr: usize, len: usize, off: i64) -> Result<usize, Errno> {
        // SAFETY: As for `read_raw`.
        let r = unsafe { libc::pwrite(self.0, ptr as *const libc::c_void, len, off) };
        Errno::result(r).map(|n| n as usize)
    }

    /// `pread` into a slice.
    pub fn pread(&self, buf: &mut [u8], off: u64) -> Result<usize, Errno> {
        self.pread_raw(buf.as_mut_ptr() as usize, buf.len(), off as i64)
    }

    /// `pwrite` from a slice.
    pub fn pwrite(&self, buf: &[u8], off: u64) -> Result<usize, Errno> {
        self.pwrite_raw(buf.as_ptr() as usize, buf.len(), off as i64)
    }

    /// `lseek(fd, off, whence)`.
    pub fn lseek(&self, off: i64, whence: i32) -> Result<i64, Errno> {
        // SAFETY: No memory is involved.
        let r = unsafe { libc::lseek(self.0, off, whence) };
        Errno::result(r)
    }

    /// `ioctl(fd, cmd, arg)`.
    pub fn ioctl(&self, cmd: u32, arg: usize) -> Result<i32, Errno> {
        // SAFETY: As for `read_raw`: the kernel validates `arg`, and callers
        // pass buffers at least as large as the size `cmd` encodes.
        let r = unsafe { libc::ioctl(self.0, cmd as _, arg) };
        Errno::result(r)
    }

    /// An ioctl that reads a `T` from the driver.
    pub fn ioctl_get<T: Default>(&self, cmd: u32) -> Result<T, Errno> {
        let mut v = T::default();
        self.ioctl(cmd, &mut v as *mut T as usize)?;
        Ok(v)
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: We own the descriptor.
        unsafe { libc::close(self.0) };
    }
}

/// Anonymous memory laid out as `valid` read-write bytes, then one
/// `PROT_NONE` guard page, then one read-only page (filled with a value).
pub struct Holes {
    base: usize,
    valid: usize,
}

/// Page size of the guest.
pub const PAGE: usize = 4096;

impl Holes {
    /// Maps `valid` (a multiple of [`PAGE`]) bytes, a guard page and a
    /// read-only page whose first `i32` is `ro_value`.
    pub fn new(valid: usize, ro_value: i32) -> Result<Self, Errno> {
        let total = valid + 2 * PAGE;
        // SAFETY: A fresh anonymous mapping, no address hint.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        let base = p as usize;
        let h = Holes { base, valid };
        // SAFETY: The read-only page is ours and mapped read-write until the
        // mprotect below.
        unsafe { ((base + valid + PAGE) as *mut i32).write(ro_value) };
        // SAFETY: Both ranges are inside our mapping.
        unsafe {
            if libc::mprotect((base + valid) as *mut libc::c_void, PAGE, libc::PROT_NONE) != 0
                || libc::mprotect(
                    (base + valid + PAGE) as *mut libc::c_void,
                    PAGE,
                    libc::PROT_READ,
                ) != 0
            {
                return Err(Errno::last());
            }
        }
        Ok(h)
    }

    /// Address of the first byte of the guard page.
    pub fn guard(&self) -> usize {
        self.base + self.valid
    }

    /// Address of the read-only page.
    pub fn ro(&self) -> usize {
        self.base + self.valid + PAGE
    }

    /// The `i32` at the start of the read-only page.
    pub fn ro_value(&self) -> i32 {
        // SAFETY: The page is mapped readable for our lifetime.
        unsafe { (self.ro() as *const i32).read() }
    }

    /// The last `len` valid bytes before the guard page, writable.
    pub fn tail_mut(&mut self, len: usize) -> &mut [u8] {
        let len = len.min(self.valid);
        // SAFETY: `[guard - len, guard)` is our read-write memory, borrowed
        // mutably through `self`.
        unsafe { std::slice::from_raw_parts_mut((self.guard() - len) as *mut u8, len) }
    }
}

impl Drop for Holes {
    fn drop(&mut self) {
        // SAFETY: Our mapping, unmapped once.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.valid + 2 * PAGE) };
    }
}

/// Bytes per page of the sparse model.
const MP: u64 = 4096;

/// The bytes of a device, sparse: pages never written are zero.
#[derive(Clone, Debug, Default)]
pub struct Sparse {
    pages: BTreeMap<u64, Box<[u8]>>,
}

impl Sparse {
    /// Stores `data` at `pos`.
    pub fn put(&mut self, pos: u64, data: &[u8]) {
        let mut done = 0usize;
        while done < data.len() {
            let at = pos + done as u64;
            let (pg, off) = (at / MP, (at % MP) as usize);
            let n = (MP as usize - off).min(data.len() - done);
            let page = self
                .pages
                .entry(pg)
                .or_insert_with(|| vec![0u8; MP as usize].into_boxed_slice());
            page[off..off + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
    }

    /// The `len` bytes at `pos`.
    pub fn get(&self, pos: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        let mut done = 0usize;
        while done < len {
            let at = pos + done as u64;
            let (pg, off) = (at / MP, (at % MP) as usize);
            let n = (MP as usize - off).min(len - done);
            if let Some(page) = self.pages.get(&pg) {
                out[done..done + n].copy_from_slice(&page[off..off + n]);
            }
            done += n;
        }
        out
    }

    /// Forgets everything (a trim).
    pub fn clear(&mut self) {
        self.pages.clear();
    }

    /// `(pos, len)` of every model page that holds data, ascending.
    pub fn extents(&self) -> Vec<(u64, usize)> {
        self.pages.keys().map(|&p| (p * MP, MP as usize)).collect()
    }
}

/// First index where `got` and `want` differ.
pub fn first_diff(got: &[u8], want: &[u8]) -> Option<usize> {
    got.iter().zip(want).position(|(a, b)| a != b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_put_get() {
        let mut s = Sparse::default();
        s.put(4090, &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(s.get(4088, 12), vec![0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0]);
        assert_eq!(s.extents().len(), 2);
        s.clear();
        assert_eq!(s.get(4090, 3), vec![0, 0, 0]);
    }

    #[test]
    fn holes_layout() {
        let mut h = Holes::new(2 * PAGE, 1234).unwrap();
        assert_eq!(h.ro_value(), 1234);
        h.tail_mut(10).fill(7);
        let fd = Fd::open("/dev/null", libc::O_RDWR).unwrap();
        // /dev/null does not touch the buffer; /dev/zero does.
        let z = Fd::open("/dev/zero", libc::O_RDONLY).unwrap();
        assert_eq!(z.read_raw(h.guard() - 10, 10), Ok(10));
        // Past the guard page: a short count or EFAULT, never the full 20.
        assert_ne!(z.read_raw(h.guard() - 10, 20), Ok(20));
        assert_eq!(z.read_raw(h.ro(), 4), Err(Errno::EFAULT));
        assert_eq!(fd.write_raw(KERNEL_PTR, 4), Err(Errno::EFAULT));
    }
}
