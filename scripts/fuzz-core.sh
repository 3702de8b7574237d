#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Fuzz the allocator core in userspace with cargo-fuzz (libFuzzer):
#   scripts/fuzz-core.sh [SECONDS]     (default 600)
# Stable rustc runs cargo-fuzz with RUSTC_BOOTSTRAP=1 (no nightly here).
set -euo pipefail
. "$(dirname "$0")/common.sh"
secs=${1:-600}
command -v cargo-fuzz >/dev/null || cargo install --locked --quiet cargo-fuzz
cd "$LDD_TOP/userspace"
RUSTC_BOOTSTRAP=1 cargo fuzz run cache_ops -- -max_total_time="$secs" -rss_limit_mb=4096 -print_final_stats=1
