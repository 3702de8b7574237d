#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Tests for scripts/tally.sh, the counting of make test: logs that cannot
# prove their tests ran to the end must count as failures. Each case feeds a
# small log (the shapes seen from cargo, kdir-diagnostics.sh, ldd-alloc-test
# and KUnit) and checks the counts. No toolchain, no VM; well under a second.
# Output: "ok N - ..." / "not ok N - ...", then "N passed, M failed"; exits 0
# only if every case passed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../tally.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

n=0 passed=0 failed=0
# expect DESCRIPTION "P F S": the counts of the last tally_*.
expect() {
	n=$((n + 1))
	local got="$T_PASS $T_FAIL $T_SKIP"
	if [ "$got" = "$2" ]; then
		passed=$((passed + 1))
		echo "ok $n - $1"
	else
		failed=$((failed + 1))
		echo "not ok $n - $1"
		echo "#   want passed/failed/skipped $2, got $got"
	fi
}

# --- cargo -------------------------------------------------------------------
cargo_ok() {
	cat <<'EOF'
   Compiling ldd-alloc v0.1.0 (/x/userspace)
    Finished `release` profile [optimized] target(s) in 1.00s
     Running unittests src/lib.rs (target/release/deps/ldd_alloc-1)

running 5 tests
test result: ok. 5 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

     Running tests/abi.rs (target/release/deps/abi-2)

running 3 tests
test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

EOF
}
cargo_ok >"$tmp/c1"
tally_cargo "$tmp/c1" 0 >/dev/null
expect "cargo: clean run counted" "8 0 0"

# The shape of a real run whose last test binary called abort(): cargo
# prints no "test result" and no failed test for it, only its exit status.
{
	cargo_ok
	cat <<'EOF'
     Running tests/zz_abort_tmp.rs (target/release/deps/zz_abort_tmp-3)

running 1 test
error: test failed, to rerun pass `--test zz_abort_tmp`

Caused by:
  process didn't exit successfully: `/x/target/release/deps/zz_abort_tmp-3` (signal: 6, SIGABRT: process abort signal)
EOF
} >"$tmp/c2"
tally_cargo "$tmp/c2" 101 >"$tmp/out"
expect "cargo: a crashed binary (abort) is a failure" "8 1 0"
n=$((n + 1))
if grep -q 'zz_abort_tmp' "$tmp/out"; then
	passed=$((passed + 1)) && echo "ok $n - cargo: the crashed binary is named"
else
	failed=$((failed + 1)) && echo "not ok $n - cargo: the crashed binary is named"
fi
# Same log, but the status is lost: the missing result still fails it.
tally_cargo "$tmp/c2" 0 >/dev/null
expect "cargo: a started binary without a result fails even with exit 0" "8 1 0"

: >"$tmp/c3"
echo 'error[E0425]: cannot find value `x` in this scope' >"$tmp/c3"
tally_cargo "$tmp/c3" 101 >/dev/null
expect "cargo: a build error (no test ran) is a failure" "0 1 0"

{
	cargo_ok
	cat <<'EOF'
     Running tests/cli.rs (target/release/deps/cli-4)

running 4 tests
test a ... FAILED
test result: FAILED. 2 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

EOF
} >"$tmp/c4"
tally_cargo "$tmp/c4" 101 >/dev/null
expect "cargo: failed tests counted, no extra failure" "10 2 0"

# --- TAP (kdir-diagnostics.sh, ldd-alloc-test) --------------------------------
printf 'ok 1 - a\nok 2 - b\nnot ok 3 - c\n2 passed, 1 failed\n' >"$tmp/t1"
tally_tap "$tmp/t1" 1 kd >/dev/null
expect "tap: results counted, non-zero exit explained by a failure" "2 1 0"
printf 'ok 1 - a\nok 2 - b\n' >"$tmp/t2"
tally_tap "$tmp/t2" 134 kd >/dev/null
expect "tap: an abort mid-way (exit 134, no not ok) is a failure" "2 1 0"
printf 'TAP version 13\n1..4\nok 1 x # 3 ms\nok 2 y # SKIP no lab\nok 3 z # 1 ms\n' >"$tmp/t3"
tally_tap "$tmp/t3" 0 suite >/dev/null
expect "tap: plan 1..4 with 3 results is cut short; SKIP is skipped" "2 1 1"
printf 'TAP version 13\n1..2\nok 1 x # 3 ms\nok 2 y # SKIP why\n# Totals: pass:1\n' >"$tmp/t4"
tally_tap "$tmp/t4" 0 suite >/dev/null
expect "tap: plan met" "1 0 1"

# --- KUnit (KTAP in the kernel log) -------------------------------------------
block() { # block T0 RESULTS...: one insmod's KTAP, raw dmesg style
	local t=$1 i=0 r
	shift
	printf '<6>[ %s] KTAP version 1\n<6>[ %s] 1..1\n' "$t" "$t"
	printf '<6>[ %s]     KTAP version 1\n<6>[ %s]     # Subtest: ldd_alloc_core\n' "$t" "$t"
	printf '<6>[ %s]     # speed: normal\n<6>[ %s]     1..3\n' "$t" "$t"
	for r in "$@"; do
		i=$((i + 1))
		case $r in
		ok) printf '<6>[ %s]     ok %d case_%d\n' "$t" $i $i ;;
		skip) printf '<6>[ %s]     ok %d case_%d # SKIP no pages\n' "$t" $i $i ;;
		fail) printf '<3>[ %s]     # case_%d: EXPECTATION FAILED at x.rs:1\n<3>[ %s]     not ok %d case_%d\n' "$t" $i "$t" $i $i ;;
		esac
	done
	[ $i = 3 ] || return 0
	printf '<6>[ %s] # ldd_alloc_core: pass:3 fail:0 skip:0 total:3\n' "$t"
	if printf '%s\n' "$@" | grep -q fail; then
		printf '<3>[ %s] not ok 1 ldd_alloc_core\n' "$t"
	else
		printf '<6>[ %s] ok 1 ldd_alloc_core\n' "$t"
	fi
}
{
	block '0.5' ok ok ok
	echo '<6>[    1.0] ldd_alloc: unloaded'
	block '1.5' ok skip ok
	block '2.5' ok ok ok
} >"$tmp/k1"
tally_ktap "$tmp/k1" >/dev/null
expect "ktap: every block counted (3 insmods), SKIP skipped" "8 0 1"
{
	block '0.5' ok ok ok
	block '1.5' ok fail ok
	block '2.5' ok ok ok
} >"$tmp/k2"
tally_ktap "$tmp/k2" >/dev/null
expect "ktap: a not ok in a later block fails" "8 1 0"
{
	block '0.5' ok ok ok
	block '1.5' ok
	echo '<4>[    2.0] Kernel panic - not syncing: Fatal exception'
} >"$tmp/k3"
tally_ktap "$tmp/k3" >/dev/null
expect "ktap: a block cut short (plan 3, 1 result) fails once" "4 1 0"
{
	block '0.5' ok ok
	block '1.5' ok ok ok
} >"$tmp/k4"
tally_ktap "$tmp/k4" >/dev/null
expect "ktap: a block cut short before the next insmod fails" "5 1 0"
# A parameterized case (a level deeper), and a console log's prefixes.
cat >"$tmp/k5" <<'EOF'
[    0.52] KTAP version 1
[    0.52] 1..1
[    0.52]     KTAP version 1
[    0.52]     # Subtest: suite_p
[    0.52]     1..2
[    0.52]         KTAP version 1
[    0.52]         # Subtest: param_case
[    0.52]         1..3
[    0.52]         ok 1 p0
[    0.52]         ok 2 p1
[    0.53]     ok 1 param_case
[    0.53]     ok 2 other
[    0.53] ok 1 suite_p
EOF
tally_ktap "$tmp/k5" >/dev/null
expect "ktap: a parameterized case short of its plan fails" "2 1 0"
sed -i 's/^\(\[    0.52\]         ok 2 p1\)$/\1\n[    0.52]         ok 3 p2/' "$tmp/k5"
tally_ktap "$tmp/k5" >/dev/null
expect "ktap: console log, parameterized case complete" "2 0 0"
printf '<6>[ 0.1] Linux version 7.3\n' >"$tmp/k6"
tally_ktap "$tmp/k6" >/dev/null
n=$((n + 1))
if [ "$T_BLOCKS" = 0 ]; then
	passed=$((passed + 1)) && echo "ok $n - ktap: no block seen is reported as 0 blocks"
else
	failed=$((failed + 1)) && echo "not ok $n - ktap: no block seen is reported as 0 blocks"
fi

# --- .ci/run's final line ----------------------------------------------------
n=$((n + 1))
ci=$(sed -n '/^sum_runs() {/,/^}/p' "$here/../../.ci/run")
if [ -n "$ci" ] && eval "$ci" && out=$(sum_runs '3 passed, 1 failed, 2 skipped' '4 passed, 0 failed') &&
	[ "$out" = '7 passed, 1 failed, 2 skipped' ] &&
	[ "$(sum_runs '3 passed, 0 failed' '4 passed, 0 failed')" = '7 passed, 0 failed' ] &&
	[ "$(sum_runs '' '4 passed, 0 failed')" = '4 passed, 1 failed' ]; then
	passed=$((passed + 1)) && echo "ok $n - .ci/run sums passed, failed and skipped"
else
	failed=$((failed + 1)) && echo "not ok $n - .ci/run sums passed, failed and skipped"
	echo "#   got: ${out:-nothing}"
fi

# --- .ci/run's list of what failed --------------------------------------------
n=$((n + 1))
fl=$(sed -n '/^failures() {/,/^}/p' "$here/../../.ci/run")
flog=$(mktemp)
printf '%s\n' 'ok 1 a' '# the claim' '# does not hold: X' '# observed: Y' 'not ok 2 b' \
	'# unrelated' 'ok 3 c' 'not ok 4 d' '[ldd-alloc] FAILED: vm-suite: 2 failure(s)' >"$flog"
want=$(printf '%s\n' '## r: not ok 2 b' '##   # the claim' '##   # does not hold: X' '##   # observed: Y' \
	'## r: not ok 4 d' '## r: [ldd-alloc] FAILED: vm-suite: 2 failure(s)')
if [ -n "$fl" ] && eval "$fl" && out=$(failures r "$flog") && [ "$out" = "$want" ]; then
	passed=$((passed + 1)) && echo "ok $n - .ci/run names each failure with its diagnostics"
else
	failed=$((failed + 1)) && echo "not ok $n - .ci/run names each failure with its diagnostics"
	echo "#   got: ${out:-nothing}"
fi
rm -f "$flog"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
