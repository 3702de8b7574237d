// SPDX-License-Identifier: GPL-2.0

//! The ioctls of the allocator side: our caches' and pools' numbers
//! (`*_INFO`, like /proc/slabinfo), the page source's counters and its
//! fault injector, shrink, the bad-free demonstrations, pool resize and
//! destroy, and the lab's kernel mempools' reserves. Who may call which is the dispatch's privilege table
//! ([`crate::ldd_alloc_dev`]); this room only does the work.

use kernel::prelude::*;

use super::{
    bad_free,
    caches,
    kernel_alloc,
    kernel_pools,
    pages::PAGES,
    pools, //
};
use crate::uaccess::IoctlArg;
use crate::uapi;

/// One of the allocator's ioctls; ENOTTY for any other number.
pub(crate) fn ioctl(cmd: u32, arg: IoctlArg) -> Result<isize> {
    match cmd {
        uapi::LDD_IOC_CACHE_INFO => {
            let index = arg.read::<uapi::CacheInfo>()?.index;
            arg.write(&caches::info(index)?)?;
        }
        uapi::LDD_IOC_SHRINK => return Ok(caches::shrink_all()? as isize),
        uapi::LDD_IOC_PAGE_STATS => arg.write(&PAGES.abi_stats())?,
        uapi::LDD_IOC_FAULT => {
            let spec = arg.read::<uapi::FaultSpec>()?;
            if spec.fail_next < 0 || spec.fail_all > 1 {
                return Err(EINVAL);
            }
            PAGES
                .faults
                .set(spec.fail_next, spec.fail_all != 0, spec.owner);
        }
        uapi::LDD_IOC_BAD_FREE => return Ok(bad_free::run(arg.value_u32()?)? as isize),
        uapi::LDD_IOC_FREE_NULL => kernel_alloc::free_nothing(),
        uapi::LDD_IOC_POOL_INFO => {
            let index = arg.read::<uapi::PoolInfo>()?.index;
            arg.write(&pools::info(index)?)?;
        }
        uapi::LDD_IOC_POOL_RESIZE => {
            let r = arg.read::<uapi::PoolResize>()?;
            pools::resize(r.index, r.min_nr)?;
        }
        uapi::LDD_IOC_POOL_DESTROY => pools::destroy(arg.value_u32()?)?,
        uapi::LDD_IOC_KERNEL_POOL_INFO => {
            let index = arg.read::<uapi::KernelPoolInfo>()?.index;
            arg.write(&kernel_pools::info(index)?)?;
        }
        _ => return Err(ENOTTY),
    }
    Ok(0)
}
