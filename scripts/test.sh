#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# make test: everything, host and VM, from a fresh machine.
#   1. the toolchain and the pinned kernel (cached after the first run)
#   2. lints: rustfmt, clippy -D warnings (userspace), a module build with no warnings
#   3. host tests: cargo test (ABI, allocator core property tests, CLI)
#   4. the VM: the module loaded with scripts/ldd_alloc_load, the shipped
#      ldd-alloc-test suite, KUnit results from the kernel log, a clean log
#   5. a second, 768 MiB VM for the memory-pressure group (pressure/)
# Ends with the line "N passed, N failed" (", N skipped" when some were)
# summing every check and test. A log that cannot show its tests ran to the
# end counts as a failure (scripts/tally.sh): a crashed test binary, a
# script's non-zero exit, a TAP plan or a KUnit block cut short.
# PROFILE=debug runs the VM part only, on the debug kernel (make test-debug),
# with a longer fuzz run (LDD_FUZZ_OPS).
set -uo pipefail
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/tally.sh"

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
	if [ "$skipped" = 0 ]; then
		echo "$passed passed, $failed failed"
	else
		echo "$passed passed, $failed failed, $skipped skipped"
	fi
	[ "$failed" = 0 ]
	exit $?
}
# Adds the counts of the last tally_* (scripts/tally.sh) to the totals.
add_counts() { # add_counts NAME
	passed=$((passed + T_PASS))
	failed=$((failed + T_FAIL))
	skipped=$((skipped + T_SKIP))
	[ "$T_FAIL" = 0 ] || log "FAILED: $1: $T_FAIL failure(s)"
	echo "counts $1 $T_PASS passed $T_FAIL failed $T_SKIP skipped" >>"$results"
}
# A TAP log and its producer's exit status: counted, problems shown.
add_tap() { # add_tap LOG RC NAME
	tally_tap "$1" "$2" "$3" >&2
	grep '^not ok ' "$1" >&2
	add_counts "$3"
}

start=$(date +%s)
"$LDD_TOP/scripts/setup.sh" || { record setup fail; finish; }
kdir=$("$LDD_TOP/scripts/build-kernel.sh" "$profile") || { record kernel-build fail; finish; }
log "kernel ready in $(($(date +%s) - start)) s: $kdir"

# The fuzzer's seed: a fresh one each run (printed first, so a failure
# replays); any number replays that seed. Seed 7's hang (issue 14) was the
# lab passing __GFP_MOVABLE|__GFP_RECLAIMABLE to the page allocator, now
# refused (hardening/flag_rules and fuzz_model's host test check it).
fuzz_seed=${LDD_FUZZ_SEED:-fresh}
[ "$fuzz_seed" = fresh ] && fuzz_seed=
export VM_ENV="${fuzz_seed:+LDD_FUZZ_SEED=$fuzz_seed} ${VM_ENV:-}"
if [ "$profile" = debug ]; then
	# 4 x 10^4 fuzz ops (the base run does 10^5): under KASAN and lockdep
	# the fuzz runs at about 90 ops/s (2026-12-03: 10^5 took 1106 s of the
	# debug run's 1500, and CI's cold run 2612 s of its 45-minute budget);
	# 30 reload cycles instead of 100 (a minute there), with two minutes for
	# them (KASAN and lockdep make each reload slower).
	export VM_ENV="LDD_FUZZ_OPS=${LDD_FUZZ_OPS:-40000} LDD_RELOAD_CYCLES=${LDD_RELOAD_CYCLES:-30} LDD_RELOAD_SECS=${LDD_RELOAD_SECS:-120} ${VM_ENV:-}"
	export VM_TIMEOUT=${VM_TIMEOUT:-2400}
fi
if [ "$profile" != debug ]; then
# --- lints -----------------------------------------------------------------
# Every module .rs file in every folder (git's list; find without git).
if mod_rs=$(cd "$LDD_TOP" && git ls-files -co --exclude-standard '*.rs' ':!userspace' 2>/dev/null) &&
	[ -n "$mod_rs" ]; then :; else
	mod_rs=$(cd "$LDD_TOP" && find . -name '*.rs' -not -path './userspace/*' -not -path './.vm/*' | sed 's|^\./||')
fi
if (cd "$LDD_TOP" && echo "$mod_rs" | xargs rustfmt --check --edition 2021) >"$LDD_TOP/.vm/rustfmt.log" 2>&1 &&
	(cd "$LDD_TOP/userspace" && cargo fmt --check) >>"$LDD_TOP/.vm/rustfmt.log" 2>&1; then
	record lint/rustfmt ok
else
	record lint/rustfmt fail "(see .vm/rustfmt.log; run rustfmt --edition 2021 on the module's .rs files, cargo fmt in userspace/)"
fi
if (cd "$LDD_TOP/userspace" && cargo clippy --quiet --all-targets --locked -- -D warnings) \
	>"$LDD_TOP/.vm/clippy.log" 2>&1; then
	record lint/clippy-userspace ok
else
	record lint/clippy-userspace fail "(see .vm/clippy.log)"
fi
# One fresh module build under clippy, as the kernel runs it (make CLIPPY=1):
# clippy-driver reports rustc's own warnings too (an unused variable shows as
# "warning: unused variable"), so this one log serves both the no-warnings
# check and the clippy lint. Then a plain build for the VM.
rm -f "$LDD_TOP"/*.o "$LDD_TOP"/.*.o.cmd "$LDD_TOP"/ldd_alloc.ko
if make -C "$LDD_TOP" KDIR="$kdir" LLVM="$LLVM_SUFFIX" clippy >"$LDD_TOP/.vm/module-clippy.log" 2>&1; then
	if grep -qE '^(warning|error)' "$LDD_TOP/.vm/module-clippy.log"; then
		record module/build-no-warnings-clippy fail "(see .vm/module-clippy.log)"
	else
		record module/build-no-warnings-clippy ok
	fi
else
	record module/build fail "(see .vm/module-clippy.log)"
	tail -30 "$LDD_TOP/.vm/module-clippy.log" >&2
	finish
fi
rm -f "$LDD_TOP"/*.o "$LDD_TOP"/.*.o.cmd "$LDD_TOP"/ldd_alloc.ko
if ! make -C "$LDD_TOP" KDIR="$kdir" LLVM="$LLVM_SUFFIX" modules >"$LDD_TOP/.vm/module-build.log" 2>&1; then
	record module/build fail "(see .vm/module-build.log)"
	finish
fi

# --- KDIR diagnostics on fake trees -----------------------------------------
# Its exit status counts: a script that stops half-way has failed.
kd_log="$LDD_TOP/.vm/kdir-diagnostics.log"
"$LDD_TOP/scripts/tests/kdir-diagnostics.sh" >"$kd_log" 2>&1
add_tap "$kd_log" $? kdir-diagnostics

# --- self-tests of the harness ----------------------------------------------
# The counting (crashed binaries, cut-short KUnit), the kernel log scan
# (each pattern catches its report), make vm's CMD passing and the kernel
# build's progress monitor (its exit status is the build's).
for t in summing check-kernel-log vm-cmd progress; do
	t_log="$LDD_TOP/.vm/selftest-$t.log"
	"$LDD_TOP/scripts/tests/$t.sh" >"$t_log" 2>&1
	add_tap "$t_log" $? "$t.sh"
done

# --- host tests --------------------------------------------------------------
# Every test binary runs (--no-fail-fast); cargo's exit status counts too.
host_log="$LDD_TOP/.vm/host-tests.log"
(cd "$LDD_TOP/userspace" && cargo test --release --locked --no-fail-fast) >"$host_log" 2>&1
host_rc=$?
[ $host_rc = 0 ] || grep -E '^(test .* FAILED|failures:|---- |error)' "$host_log" | head -20 >&2
tally_cargo "$host_log" $host_rc >&2
add_counts host
log "host tests counted from $host_log (cargo exit $host_rc)"
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
# The suite's TAP: plan met, every result counted (the VM's own failure is
# vm/clean-run below).
tally_tap "$vm_log" 0 vm-suite >&2
f=$T_FAIL
add_counts vm-suite
grep -q '^# Totals:' "$vm_log" || record vm/suite-completed fail "(no TAP totals: see $vm_log)"
# KUnit: every KTAP block of the kernel log (the boot's built-in suites, and
# ldd_alloc_core at every insmod: bad params, cache_debug, reload cycles...),
# from the raw dmesg of the run, or its console log if the VM died first.
klog="$LDD_TOP/.vm/dmesg-test-last.log"
[ -s "$klog" ] && grep -q 'KTAP version' "$klog" || klog="$LDD_TOP/.vm/kernel-console-test-last.log"
if [ -f "$klog" ]; then
	tally_ktap "$klog"
	add_counts kunit
	grep -q '# Subtest: ldd_alloc_core' "$klog" ||
		record kunit/ldd_alloc_core fail "(no ldd_alloc_core KUnit block in $klog)"
else
	record kunit/ldd_alloc_core fail "(no kernel log)"
fi
# The run itself: clean kernel log, insmod/rmmod, no timeout.
if [ $vm_rc = 0 ] || { [ $vm_rc = 1 ] && [ "$f" -gt 0 ] && ! grep -q 'VM run failed' "$vm_log"; }; then
	record vm/clean-run ok
else
	record vm/clean-run fail "(see $vm_log)"
fi
# --- VM: the memory-pressure group (issue 16), in a guest of its own --------
# 768 MiB: the claims fill the guest's memory, which under TCG takes time in
# proportion to its size (the suite's 5120 MiB guest would take minutes per
# claim); its own boot also keeps the OOM kills and swap of this group away
# from the suite. After the KUnit count above: this boot writes its own
# dmesg-test-last.log.
# On the debug kernel the group is not clean yet (KASAN makes the hogs too
# slow to fill the guest before kswapd or the OOM killer moves: see the
# closing note of issue 16), so there it counts as one skip, said so here.
if [ "$profile" = debug ] && [ -z "${LDD_PRESSURE_DEBUG:-}" ]; then
	log "SKIPPED: vm-pressure on the debug kernel (issue 16; LDD_PRESSURE_DEBUG=1 runs it)"
	skipped=$((skipped + 1))
else
	p_log="$LDD_TOP/.vm/vm-pressure-$profile.log"
	"$LDD_TOP/scripts/vm.sh" --kdir "$kdir" --mem "${VM_PRESSURE_MEM:-768}" test pressure/ >"$p_log" 2>&1
	p_rc=$?
	cat "$p_log"
	tally_tap "$p_log" 0 vm-pressure >&2
	pf=$T_FAIL
	add_counts vm-pressure
	grep -q '^# Totals:' "$p_log" || record vm-pressure/suite-completed fail "(no TAP totals: see $p_log)"
	if [ $p_rc = 0 ] || { [ $p_rc = 1 ] && [ "$pf" -gt 0 ] && ! grep -q 'VM run failed' "$p_log"; }; then
		record vm-pressure/clean-run ok
	else
		record vm-pressure/clean-run fail "(see $p_log)"
	fi
fi
log "make test took $(($(date +%s) - start)) s"
finish
