#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Tests for scripts/check-kernel-log.sh: every pattern catches the report it
# is there for, and the lines a clean run prints pass. Each case is a small
# clean kernel log plus one line (in raw `dmesg -r` form with its level, or in
# console form without); the scan must exit 1 and print that line, or exit
# 0. No VM; well under a second.
# Output: "ok N - ..." / "not ok N - ...", then "N passed, M failed".
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
check=$here/../check-kernel-log.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A clean run's log, in both forms: what must pass.
cat >"$tmp/clean" <<'EOF'
<5>[    0.000000] Linux version 7.3.4 (root@host) (clang version 19.1.7) #1 SMP PREEMPT
<6>[    0.000000] Command line: console=ttyS0 panic=-1 ignore_loglevel log_buf_len=16M oops=panic
<6>[    0.412000] kmemleak: Kernel memory leak detector initialized (mem pool available: 15679)
<6>[    0.413000] kmemleak: Automatic memory scanning thread started
<6>[    0.525557] KTAP version 1
<6>[    0.525612] 1..1
<6>[    0.531625]     ok 1 test_ptr_formatting
<6>[    0.531745] ok 1 rust_kernel_fmt
<4>[    0.769358] ldd_alloc: loading out-of-tree module taints kernel.
<6>[    0.787400] ldd_alloc: loaded: 4 devices, quantum 4000, qset 1000, order 0
<6>[    0.803341]     ok 1 slab_orders
<6>[    0.819161]     ok 2 mempool_reserve # SKIP no lab
<6>[    1.100000] ldd_alloc: quantum=0 is out of range 1..=4194304
<6>[    1.200000] ldd_alloc: pool 3: destroy refused, 2 elements still out
<4>[    1.300000] ldd_alloc: bench: 3 of 8 pairs failed
<6>[    1.400000] ldd_alloc: unloaded
[    1.500000] ldd_alloc: pool 3: destroy refused, 2 elements still out
[    1.600000]     ok 3 cache_on_real_pages
EOF

n=0 passed=0 failed=0
result() { # result ok|fail DESCRIPTION [DETAIL]
	n=$((n + 1))
	if [ "$1" = ok ]; then
		passed=$((passed + 1))
		echo "ok $n - $2"
	else
		failed=$((failed + 1))
		echo "not ok $n - $2"
		[ -z "${3:-}" ] || printf '#   %s\n' "$3"
	fi
}

rc=0
out=$("$check" "$tmp/clean") || rc=$?
if [ $rc = 0 ] && [ -z "$out" ]; then
	result ok "a clean log passes"
else
	result fail "a clean log passes" "exit $rc: $out"
fi

# caught DESCRIPTION LINE: the clean log plus LINE fails, naming LINE.
caught() {
	local rc=0 out
	{
		cat "$tmp/clean"
		printf '%s\n' "$2"
	} >"$tmp/log"
	out=$("$check" "$tmp/log") || rc=$?
	if [ $rc = 1 ] && [[ $out == *"$2"* ]] && [ "$(echo "$out" | wc -l)" = 1 ]; then
		result ok "caught: $1"
	else
		result fail "caught: $1" "exit $rc, output: $out"
	fi
}
# passes DESCRIPTION LINE: the clean log plus LINE passes.
passes() {
	local rc=0 out
	{
		cat "$tmp/clean"
		printf '%s\n' "$2"
	} >"$tmp/log"
	out=$("$check" "$tmp/log") || rc=$?
	if [ $rc = 0 ]; then
		result ok "passes: $1"
	else
		result fail "passes: $1" "exit $rc, output: $out"
	fi
}

# Kernel reports (kept from before).
caught "KASAN" '<3>[   12.300000] BUG: KASAN: slab-use-after-free in ldd_alloc_free+0x12/0x40 [ldd_alloc]'
caught "WARNING" '<4>[   12.300000] WARNING: CPU: 1 PID: 77 at mm/slub.c:4523 free_to_partial_list+0x1a/0x200'
caught "Oops" '<4>[   12.300000] Oops: general protection fault, probably for non-canonical address 0xdead000000000100'
caught "Call Trace" '<4>[   12.300000] Call Trace:'
caught "sleeping in atomic" '<3>[   12.300000] BUG: sleeping function called from invalid context at mm/slub.c:4150'
caught "lockdep: circular locking" '<4>[   12.300000] WARNING: possible circular locking dependency detected'
caught "lockdep: inconsistent lock state" '<4>[   12.300000] WARNING: inconsistent lock state'
caught "panic" '<0>[   12.300000] Kernel panic - not syncing: Fatal exception'
caught "kmemleak's summary line" '<3>[   18.000000] kmemleak: 2 new suspected memory leaks (see /sys/kernel/debug/kmemleak)'
caught "kmemleak's report" 'unreferenced object 0xffff888003a1b2c0 (size 64):'
# New: KUnit results.
caught "KUnit: a failed case (raw)" '<3>[    0.811145]     not ok 2 cache_on_real_pages'
caught "KUnit: a failed suite (raw)" '<3>[    0.819200] not ok 1 ldd_alloc_core'
caught "KUnit: a failed case (console)" '[    0.811145]     not ok 2 cache_on_real_pages'
# New: the module at error level, and its leak words.
caught "ldd_alloc at error level" '<3>[    1.100000] ldd_alloc: quantum=0 is out of range 1..=4194304'
caught "ldd_alloc at critical level" '<2>[    1.100000] ldd_alloc: something critical'
caught "pages leaked (raw)" '<3>[   20.000000] ldd_alloc: 3 pages leaked in zone Normal'
caught "pages leaked (console)" '[   20.000000] ldd_alloc: 3 pages leaked in zone DMA32'
caught "a leak at info level" '<6>[   20.000000] ldd_alloc: cache 2: 5 objects leaked'
caught "destroy refused at error level" '<3>[   20.000000] ldd_alloc: pool: destroy refused, 2 elements still out'
caught "cache destroy refused at error level" '<3>[   20.000000] ldd_alloc: cache 4: destroy refused, 7 objects still allocated'
caught "refused its own (lab)" '<3>[   20.000000] ldd_alloc: lab: our cache refused its own object'
caught "refused its own (bench)" '<3>[   20.000000] ldd_alloc: bench: the pool'"'"'s cache refused its own object'
# Allowed: the module's info lines, other levels, kmemleak's boot lines.
passes "destroy refused at info level (a busy pool, user-triggered)" '<6>[    1.200000] ldd_alloc: pool 5: destroy refused, 1 elements still out'
passes "ldd_alloc at warning level" '<4>[    1.300000] ldd_alloc: bench: 1 burst allocations failed'
passes "a skipped KUnit case" '<6>[    0.819161]     ok 3 mempool_reserve # SKIP no pages'
passes "kmemleak started" '<6>[    0.413000] kmemleak: Automatic memory scanning thread started'
passes "kmemleak's scan-area fallback" '<4>[   55.016506] kmemleak: Cannot allocate a scan area, scanning the full object'
passes "another driver at error level" '<3>[    0.300000] i8042: Can'"'"'t read CTR while initializing i8042'

# Fences (issue 16): an expected report passes inside its fence only.
oom='<12>[   30.000000] ldd-alloc-test: expect begin oom-kill
<4>[   30.100000] ldd-alloc-test invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=-1000
<4>[   30.100001] CPU: 1 UID: 0 PID: 88 Comm: ldd-alloc-test Tainted: G           O        7.3.4 #1 PREEMPT
<4>[   30.100002] Call Trace:
<4>[   30.100003]  <TASK>
<4>[   30.100004]  dump_stack_lvl+0x5d/0x80
<4>[   30.100005]  out_of_memory+0x1a2/0x4f0
<4>[   30.100006]  ? kmemleak_alloc+0x4e/0x90
<4>[   30.100007]  ldd_alloc_lab_alloc+0x40/0x90 [ldd_alloc]
<4>[   30.100008]  </TASK>
<6>[   30.100009] Mem-Info:
<3>[   30.100010] Out of memory: Killed process 91 (ldd-alloc-test) total-vm:700000kB, anon-rss:690000kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:1400kB oom_score_adj:1000'
oom_end='<12>[   30.200000] ldd-alloc-test: expect end oom-kill'
fail_rep='<12>[   31.000000] ldd-alloc-test: expect begin alloc-failure
<4>[   31.000001] ldd-alloc-test: page allocation failure: order:10, mode:0x800(GFP_NOWAIT), nodemask=(null),cpuset=/,mems_allowed=0
<4>[   31.000002] Call Trace:
<4>[   31.000003]  warn_alloc+0x12f/0x1a0
<12>[   31.000004] ldd-alloc-test: expect end alloc-failure'
# fenced DESCRIPTION EXPECT(pass|fail) TEXT [MUST-NAME]: the clean log plus
# TEXT (several lines) passes, or fails printing a line containing MUST-NAME.
fenced() {
	local rc=0 out
	{
		cat "$tmp/clean"
		printf '%s\n' "$3"
	} >"$tmp/log"
	out=$("$check" "$tmp/log") || rc=$?
	if [ "$2" = pass ] && [ $rc = 0 ]; then
		result ok "fence: $1"
	elif [ "$2" = fail ] && [ $rc = 1 ] && [[ $out == *"${4:-}"* ]]; then
		result ok "fence: $1"
	else
		result fail "fence: $1" "exit $rc, output: $out"
	fi
}
fenced "an OOM report inside its fence passes" pass "$oom
$oom_end"
fenced "a page allocation failure inside its fence passes" pass "$fail_rep"
fenced "the same OOM report without the fence fails" fail "$(echo "$oom" | sed 1d)" "Call Trace:"
fenced "a fence without its report fails" fail '<12>[   30.000000] ldd-alloc-test: expect begin oom-kill
<12>[   30.200000] ldd-alloc-test: expect end oom-kill' "does not contain"
fenced "an OOM fence with only an allocation failure in it fails" fail '<12>[   31.000000] ldd-alloc-test: expect begin oom-kill
<4>[   31.000001] x: page allocation failure: order:10, mode:0x800(GFP_NOWAIT)
<4>[   31.000002] Call Trace:
<12>[   31.000004] ldd-alloc-test: expect end oom-kill' "does not contain"
fenced "a fence never closed fails" fail "$oom" "never closed"
fenced "an end without a begin fails" fail "$oom_end" "without its begin"
fenced "a fence inside a fence fails" fail "$oom
$oom
$oom_end" "inside a fence"
fenced "a fence of an unknown kind fails" fail '<12>[   30.000000] ldd-alloc-test: expect begin anything
<12>[   30.200000] ldd-alloc-test: expect end anything' "unknown kind"
fenced "a WARNING inside a fence still fails" fail "$oom
<4>[   30.150000] WARNING: CPU: 1 PID: 77 at mm/slub.c:4523 free_to_partial_list+0x1a/0x200
$oom_end" "WARNING: CPU: 1"
fenced "a KASAN report inside a fence still fails" fail "$oom
<3>[   30.150000] BUG: KASAN: slab-use-after-free in ldd_alloc_free+0x12/0x40 [ldd_alloc]
$oom_end" "BUG: KASAN"
fenced "a leak report inside a fence still fails" fail "$(echo "$fail_rep" | sed '$d')
<3>[   31.000003] ldd_alloc: 3 pages leaked in zone Normal
<12>[   31.000004] ldd-alloc-test: expect end alloc-failure" "pages leaked"
fenced "a kmemleak report inside a fence still fails" fail "$(echo "$fail_rep" | sed '$d')
unreferenced object 0xffff888003a1b2c0 (size 64):
<12>[   31.000004] ldd-alloc-test: expect end alloc-failure" "unreferenced object"
fenced "a report after the fence still fails" fail "$fail_rep
<4>[   32.000000] Call Trace:" "[   32.000000] Call Trace:"
fenced "the fence in console form (no level) passes" pass "$(echo "$fail_rep" | sed 's/^<[0-9]*>//')"

# Several files: a report in the second is found and named.
printf '%s\n' 'unreferenced object 0xffff888003a1b2c0 (size 64):' >"$tmp/kmemleak"
rc=0
out=$("$check" "$tmp/clean" "$tmp/kmemleak") || rc=$?
if [ $rc = 1 ] && [[ $out == "kmemleak: unreferenced object"* ]]; then
	result ok "several files: the report names its file"
else
	result fail "several files: the report names its file" "exit $rc: $out"
fi
rc=0
"$check" "$tmp/nonexistent" 2>/dev/null || rc=$?
if [ $rc = 2 ]; then result ok "a missing file is an error (exit 2)"; else result fail "a missing file is an error (exit 2)" "exit $rc"; fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
