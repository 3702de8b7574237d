#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# make fuzz: a long run of the VM fuzzer (ldd-alloc-test fuzz/) on the pinned
# kernel (PROFILE=debug: the KASAN/lockdep/kmemleak one).
#   LDD_FUZZ_OPS   operations (default 10^6)
#   LDD_FUZZ_SEED  the seed to replay (default: a fresh one, printed first)
# The run prints "# fuzz seed N ops M" first and ops/s at the end; a
# failure prints the line that replays it.
set -euo pipefail
. "$(dirname "$0")/common.sh"

profile=${PROFILE:-base}
ops=${LDD_FUZZ_OPS:-1000000}
kdir=$("$LDD_TOP/scripts/build-kernel.sh" "$profile")
rm -f "$LDD_TOP"/*.o "$LDD_TOP"/.*.o.cmd "$LDD_TOP"/ldd_alloc.ko
make -C "$LDD_TOP" KDIR="$kdir" LLVM="$LLVM_SUFFIX" modules >"$LDD_TOP/.vm/module-build-fuzz.log" 2>&1 ||
	die "module build failed (see .vm/module-build-fuzz.log)"
env="LDD_FUZZ_OPS=$ops"
[ -z "${LDD_FUZZ_SEED:-}" ] || env="$env LDD_FUZZ_SEED=$LDD_FUZZ_SEED"
[ -z "${LDD_FUZZ_TRACE:-}" ] || env="$env LDD_FUZZ_TRACE=1"
# Measured: >= 1000 ops/s on the base kernel, ~300 on the debug one (TCG).
per_s=$([ "$profile" = debug ] && echo 150 || echo 500)
export VM_ENV="$env ${VM_ENV:-}"
export VM_TIMEOUT=${VM_TIMEOUT:-$((300 + ops / per_s))}
log "fuzzing on the $profile kernel: $ops ops, timeout ${VM_TIMEOUT}s"
exec "$LDD_TOP/scripts/vm.sh" --kdir "$kdir" test fuzz/
