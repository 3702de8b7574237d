# SPDX-License-Identifier: GPL-2.0
# Counting of test logs for scripts/test.sh (sourced, never run), and for its
# self-test scripts/tests/summing.sh. Each tally_* function sets
#   T_PASS T_FAIL T_SKIP
# and prints one "# ..." line per problem it found on stdout. A log that
# cannot prove its tests ran to the end counts as a failure: a crashed
# test binary, an aborted script, a KUnit block cut short.

# tally_cargo LOG RC: a `cargo test` log and cargo's exit status. The
# "test result:" lines give the counts; a test binary that started
# ("Running ..."/"Doc-tests ...") but printed no result crashed (abort,
# SIGSEGV: cargo prints no failure line for it) and counts as one failure; a
# non-zero exit with no failure counted is one failure too.
tally_cargo() {
	local log=$1 rc=$2 started results
	T_PASS=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i + 1) ~ /^passed/) s += $i } END { print s + 0 }' "$log")
	T_FAIL=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i + 1) ~ /^failed/) s += $i } END { print s + 0 }' "$log")
	T_SKIP=0
	started=$(grep -cE '^ +(Running|Doc-tests) ' "$log" || true)
	results=$(grep -c '^test result:' "$log" || true)
	if [ "$started" -gt "$results" ]; then
		T_FAIL=$((T_FAIL + started - results))
		echo "# cargo: $((started - results)) test binary(ies) started but printed no result (crashed):"
		awk '/^ +(Running|Doc-tests) / { last = $0; open = 1 } /^test result:/ { open = 0 }
			/^error: test failed/ && open { print "#   " last; open = 0 }
			END { if (open) print "#   " last }' "$log"
	fi
	if [ "$rc" != 0 ] && [ "$T_FAIL" = 0 ]; then
		T_FAIL=1
		echo "# cargo exited $rc with no failed test counted (build error or crash)"
	fi
}

# tally_tap LOG RC NAME: a TAP log (ok N / not ok N, "# SKIP"), its
# producer's exit status. The plan (1..N, if any) must be met, and a
# non-zero exit with no failure counted is a failure (kdir-diagnostics.sh
# has no plan: an abort half-way shows only in its exit status).
tally_tap() {
	local log=$1 rc=$2 name=$3 plan seen
	T_PASS=$(grep -E '^ok [0-9]+ ' "$log" | grep -vcE '# SKIP' || true)
	T_SKIP=$(grep -cE '^ok [0-9]+ .*# SKIP' "$log" || true)
	T_FAIL=$(grep -cE '^not ok [0-9]+ ' "$log" || true)
	seen=$((T_PASS + T_SKIP + T_FAIL))
	plan=$(sed -nE 's/^1\.\.([0-9]+)$/\1/p' "$log" | head -1 || true)
	if [ -n "$plan" ] && [ "$plan" != "$seen" ]; then
		echo "# $name: plan 1..$plan but $seen results: cut short"
		T_FAIL=$((T_FAIL + 1))
	fi
	if [ "$rc" != 0 ] && [ "$T_FAIL" = 0 ]; then
		echo "# $name exited $rc with no failed test counted"
		T_FAIL=1
	fi
}

# tally_ktap LOG: every KTAP block of a kernel log (raw `dmesg -r` with <N>
# level prefixes, or a console log; timestamps allowed). Blocks start at a
# top-level "KTAP version"; each insmod of a module with KUnit suites (and
# the boot, for built-in suites) prints one. Test cases (level 1 results)
# are counted: "ok" passed, "ok ... # SKIP" skipped, "not ok" failed. A
# level whose plan (1..N) is not met when its parent's result comes, or at
# the end of the block, fails the block once (it was cut short), as does a
# "not ok" suite with no failing case. Prints the problems and a summary.
tally_ktap() {
	local out
	out=$(awk '
	function strip(s) {
		sub(/^<[0-9]+>/, "", s)
		sub(/^\[ *[0-9]+\.[0-9]+\] /, "", s)
		return s
	}
	function close_level(d) {
		if (!active[d]) return
		if (plan[d] < 0 || seen[d] != plan[d]) {
			printf "# KUnit block %d: %s planned %s, %d results: cut short\n", blk, \
				(name[d] == "" ? "level " d : name[d]), (plan[d] < 0 ? "nothing" : plan[d]), seen[d]
			if (!cut) fail++
			cut = 1
			blockbad = 1
		}
		active[d] = 0
	}
	function close_block(   d) {
		if (!inblock) return
		for (d = 9; d >= 0; d--) close_level(d)
		if (blockbad)
			printf "# KUnit block %d: %s: %d passed, %d failed, %d skipped\n", blk, suites, \
				pass - bp, fail - bf, skip - bs
		if (!(suites in known)) { known[suites] = 1; all = all (all == "" ? "" : "; ") suites }
		inblock = 0
	}
	function open_level(d, i) {
		for (i = 9; i >= d; i--) if (active[i]) close_level(i)
		active[d] = 1; plan[d] = -1; seen[d] = 0; name[d] = ""
	}
	{
		line = strip($0)
		if (!match(line, /^ *(KTAP version|TAP version|1\.\.[0-9]+$|(not )?ok [0-9]+|# Subtest: )/)) next
		ind = match(line, /[^ ]/) - 1
		d = int(ind / 4)
		body = substr(line, ind + 1)
		if (body ~ /^(K)?TAP version/) {
			if (d == 0) {
				close_block()
				blk++; inblock = 1; blockbad = 0; cut = 0; suites = ""
				bp = pass; bf = fail; bs = skip
			}
			open_level(d)
			next
		}
		if (!inblock) next
		if (body ~ /^# Subtest: /) {
			if (!active[d]) open_level(d)
			name[d] = substr(body, 12)
			if (d == 1) { suites = suites (suites == "" ? "" : ",") name[d]; casefail = 0 }
			next
		}
		if (body ~ /^1\.\./) {
			if (!active[d]) open_level(d)
			plan[d] = substr(body, 4) + 0
			next
		}
		# A result at level d ends the subtest at level d + 1.
		for (i = 9; i > d; i--) if (active[i]) close_level(i)
		seen[d]++
		notok = body ~ /^not ok/
		isskip = body ~ /# [Ss][Kk][Ii][Pp]/
		if (d == 1) {
			if (notok) { fail++; casefail++; blockbad = 1; print "# KUnit block " blk ": " body }
			else if (isskip) skip++
			else pass++
		} else if (d == 0 && notok && !casefail) {
			fail++; blockbad = 1; print "# KUnit block " blk ": suite " body
		}
	}
	END {
		close_block()
		printf "# KUnit: %d blocks (%s): %d passed, %d failed, %d skipped\n", blk, all, pass, fail, skip
		printf "TALLY %d %d %d %d\n", pass, fail, skip, blk
	}' "$1")
	echo "$out" | grep -v '^TALLY ' || true
	set -- $(echo "$out" | sed -n 's/^TALLY //p')
	T_PASS=$1 T_FAIL=$2 T_SKIP=$3 T_BLOCKS=$4
}
