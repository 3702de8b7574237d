// SPDX-License-Identifier: GPL-2.0

//! The LDD3 scull ioctls (chapter 6, "scull_ioctl"): same numbers, same
//! rules. They read and change the module-wide quantum and qset of
//! [`crate::params::GEOMETRY`]; the setters need `CAP_SYS_ADMIN`, which the
//! dispatch's privilege table checks before anything here runs.

use kernel::prelude::*;

use crate::params::GEOMETRY;
use crate::uaccess::IoctlArg;
use crate::uapi;

/// Checks a quantum or qset value from userspace.
fn checked(value: i64, max: u32) -> Result<u32> {
    match u32::try_from(value) {
        Ok(v) if v >= 1 && v <= max => Ok(v),
        _ => Err(EINVAL),
    }
}

/// An `int` value read through the pointer `arg` (the S and X commands).
fn read_int(arg: IoctlArg, max: u32) -> Result<u32> {
    checked(arg.read::<i32>()?.into(), max)
}

/// One LDD3 scull ioctl; ENOTTY for any other number.
pub(crate) fn ioctl(cmd: u32, arg: IoctlArg) -> Result<isize> {
    let g = &GEOMETRY;
    let (qmax, smax) = (uapi::QUANTUM_MAX, uapi::QSET_MAX);
    let old = match cmd {
        uapi::SCULL_IOCRESET => {
            g.reset();
            return Ok(0);
        }
        uapi::SCULL_IOCSQUANTUM => {
            g.swap_quantum(read_int(arg, qmax)?);
            return Ok(0);
        }
        uapi::SCULL_IOCSQSET => {
            g.swap_qset(read_int(arg, smax)?);
            return Ok(0);
        }
        uapi::SCULL_IOCTQUANTUM => {
            g.swap_quantum(checked(arg.value_i64(), qmax)?);
            return Ok(0);
        }
        uapi::SCULL_IOCTQSET => {
            g.swap_qset(checked(arg.value_i64(), smax)?);
            return Ok(0);
        }
        uapi::SCULL_IOCGQUANTUM => {
            arg.write(&(g.quantum() as i32))?;
            return Ok(0);
        }
        uapi::SCULL_IOCGQSET => {
            arg.write(&(g.qset() as i32))?;
            return Ok(0);
        }
        uapi::SCULL_IOCQQUANTUM => g.quantum(),
        uapi::SCULL_IOCQQSET => g.qset(),
        uapi::SCULL_IOCXQUANTUM => {
            let old = g.swap_quantum(read_int(arg, qmax)?);
            arg.write(&(old as i32))?;
            return Ok(0);
        }
        uapi::SCULL_IOCXQSET => {
            let old = g.swap_qset(read_int(arg, smax)?);
            arg.write(&(old as i32))?;
            return Ok(0);
        }
        uapi::SCULL_IOCHQUANTUM => g.swap_quantum(checked(arg.value_i64(), qmax)?),
        uapi::SCULL_IOCHQSET => g.swap_qset(checked(arg.value_i64(), smax)?),
        _ => return Err(ENOTTY),
    };
    Ok(old as isize)
}
