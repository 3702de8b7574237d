// SPDX-License-Identifier: GPL-2.0

//! In-kernel benchmark loops (being written).

use kernel::prelude::*;

/// `LDD_IOC_BENCH`.
pub(crate) fn ioctl(_cmd: u32, _arg: usize) -> Result<isize> {
    Err(ENOTTY)
}
