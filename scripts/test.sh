#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# make test: everything, host and VM, from a fresh machine.
#   1. the toolchain and the pinned kernel (cached after the first run)
#   2. lints: rustfmt, clippy -D warnings (userspace), a module build with no warnings
#   3. host tests: cargo test (ABI, allocator core property tests, CLI)
#   4. the VM: the module loaded with scripts/ldd_alloc_load, the shipped
#      ldd-alloc-test suite, KUnit results from the kernel log, a clean log
# Ends with the line "N passed, N failed" summing every check and test.
# PROFILE=debug runs the VM part only, on the debug kernel (make test-debug),
# with a longer fuzz run (LDD_FUZZ_OPS, default 40000 there: twice the
# base run, sized so a cold CI run stays well under 30 minutes).
set -uo pipefail
. "$(dirname "$0")/common.sh"

profile=${PROFILE:-base}
passed=0 failed=0 skipped=0
results="$LDD_TOP/.vm/results-$profile.txt"
mkdir -p "$LDD_TOP/.vm"
: >"$results"

record() { # record NAME ok|fail [detail]
	if [ "$2" = ok ]; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		log "FAILED: $1 ${3:-}"
	fi
	echo "$2 $1" >>"$results"
}
finish() {
	log "results: $results"
	echo "$passed passed, $failed failed${skipped:+, $skipped skipped}"
	[ "$failed" = 0 ]
	exit $?
}
# Adds a cargo test log's counts.
count_cargo() {
	local p f
	p=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i + 1) ~ /^passed/) s += $i } END { print s + 0 }' "$1")
	f=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i + 1) ~ /^failed/) s += $i } END { print s + 0 }' "$1")
	passed=$((passed + ${p:-0}))
	failed=$((failed + ${f:-0}))
}

start=$(date +%s)
"$LDD_TOP/scripts/setup.sh" || { record setup fail; finish; }
kdir=$("$LDD_TOP/scripts/build-kernel.sh" "$profile") || { record kernel-build fail; finish; }
log "kernel ready in $(($(date +%s) - start)) s: $kdir"

if [ "$profile" = debug ]; then
	# 4x10^4 fuzz ops (3 to 6 minutes under KASAN and lockdep); 30 reload
	# cycles instead of 100 (a minute there).
	export VM_ENV="LDD_FUZZ_OPS=${LDD_FUZZ_OPS:-40000} LDD_RELOAD_CYCLES=${LDD_RELOAD_CYCLES:-30} ${VM_ENV:-}"
	export VM_TIMEOUT=${VM_TIMEOUT:-2400}
fi
if [ "$profile" != debug ]; then
# --- lints -----------------------------------------------------------------
if rustfmt --check --edition 2021 "$LDD_TOP"/*.rs "$LDD_TOP"/allocator/*.rs >/dev/null 2>&1 &&
	(cd "$LDD_TOP/userspace" && cargo fmt --check >/dev/null 2>&1); then
	record lint/rustfmt ok
else
	record lint/rustfmt fail "(run rustfmt --edition 2021 *.rs allocator/*.rs; cargo fmt in userspace/)"
fi
if (cd "$LDD_TOP/userspace" && cargo clippy --quiet --all-targets --locked -- -D warnings) \
	>"$LDD_TOP/.vm/clippy.log" 2>&1; then
	record lint/clippy-userspace ok
else
	record lint/clippy-userspace fail "(see .vm/clippy.log)"
fi
# A fresh module build, so that every warning shows in its log.
rm -f "$LDD_TOP"/*.o "$LDD_TOP"/.*.o.cmd "$LDD_TOP"/ldd_alloc.ko
if make -C "$LDD_TOP" KDIR="$kdir" LLVM="$LLVM_SUFFIX" modules >"$LDD_TOP/.vm/module-build.log" 2>&1; then
	if grep -qE '^(warning|error)' "$LDD_TOP/.vm/module-build.log"; then
		record module/build-no-warnings fail "(see .vm/module-build.log)"
	else
		record module/build-no-warnings ok
	fi
else
	record module/build fail "(see .vm/module-build.log)"
	tail -30 "$LDD_TOP/.vm/module-build.log" >&2
	finish
fi

# Clippy on the module, as the kernel runs it (make CLIPPY=1), then a plain
# build again for the VM.
if make -C "$LDD_TOP" KDIR="$kdir" LLVM="$LLVM_SUFFIX" clippy >"$LDD_TOP/.vm/module-clippy.log" 2>&1 &&
	! grep -qE '^(warning|error)' "$LDD_TOP/.vm/module-clippy.log"; then
	record lint/clippy-module ok
else
	record lint/clippy-module fail "(see .vm/module-clippy.log)"
fi
rm -f "$LDD_TOP"/*.o "$LDD_TOP"/.*.o.cmd "$LDD_TOP"/ldd_alloc.ko
make -C "$LDD_TOP" KDIR="$kdir" LLVM="$LLVM_SUFFIX" modules >/dev/null 2>&1 || record module/rebuild fail

# --- KDIR diagnostics on fake trees -----------------------------------------
kd_log="$LDD_TOP/.vm/kdir-diagnostics.log"
"$LDD_TOP/scripts/tests/kdir-diagnostics.sh" >"$kd_log" 2>&1
passed=$((passed + $(grep -c '^ok ' "$kd_log")))
failed=$((failed + $(grep -c '^not ok ' "$kd_log")))
grep '^not ok ' "$kd_log" >&2

# --- host tests --------------------------------------------------------------
host_log="$LDD_TOP/.vm/host-tests.log"
if (cd "$LDD_TOP/userspace" && cargo test --release --locked) >"$host_log" 2>&1; then :; else
	grep -E '^(test .* FAILED|failures:|---- )' "$host_log" | head -20 >&2
	grep -q '^test result:' "$host_log" || record host/cargo-test fail "(see $host_log)"
fi
count_cargo "$host_log"
log "host tests counted from $host_log"
else
	# The debug profile tests the module only: build it against the debug tree.
	rm -f "$LDD_TOP"/*.o "$LDD_TOP"/.*.o.cmd "$LDD_TOP"/ldd_alloc.ko
	if ! make -C "$LDD_TOP" KDIR="$kdir" LLVM="$LLVM_SUFFIX" modules >"$LDD_TOP/.vm/module-build-debug.log" 2>&1; then
		record module/build-debug fail "(see .vm/module-build-debug.log)"
		finish
	fi
fi

# --- VM ----------------------------------------------------------------------
vm_log="$LDD_TOP/.vm/vm-test-$profile.log"
"$LDD_TOP/scripts/vm.sh" --kdir "$kdir" test >"$vm_log" 2>&1
vm_rc=$?
cat "$vm_log"
p=$(grep -cE '^ok [0-9]+ ' "$vm_log" | head -1)
s=$(grep -cE '^ok [0-9]+ .*# SKIP' "$vm_log" | head -1)
f=$(grep -cE '^not ok [0-9]+ ' "$vm_log" | head -1)
passed=$((passed + p - s))
skipped=$((skipped + s))
failed=$((failed + f))
grep -q '^# Totals:' "$vm_log" || record vm/suite-completed fail "(no TAP totals: see $vm_log)"
# KUnit: the allocator core's in-kernel tests ran at the first insmod; their
# KTAP is in the kernel log (later reloads run them again: count the first).
kunit=$(awk '/# Subtest: ldd_alloc_core/ { on = 1; next }
	on { sub(/^\[[^]]*\] /, ""); if ($0 ~ /^(not )?ok [0-9]+ ldd_alloc_core/) exit; if ($0 ~ /^ +(not )?ok [0-9]+ /) print }' \
	"$LDD_TOP/.vm/dmesg-test-last.log" 2>/dev/null)
if [ -z "$kunit" ]; then
	record kunit/ldd_alloc_core fail "(no KUnit results in the kernel log)"
else
	echo "# KUnit ldd_alloc_core (in-kernel):"
	echo "$kunit" | sed 's/^ */# /'
	passed=$((passed + $(echo "$kunit" | grep -cE '^ *ok ')))
	failed=$((failed + $(echo "$kunit" | grep -cE '^ *not ok ')))
fi
# The run itself: clean kernel log, insmod/rmmod, no timeout.
if [ $vm_rc = 0 ] || { [ $vm_rc = 1 ] && [ "$f" -gt 0 ] && ! grep -q 'VM run failed' "$vm_log"; }; then
	record vm/clean-run ok
else
	record vm/clean-run fail "(see $vm_log)"
fi
log "make test took $(($(date +%s) - start)) s"
finish
