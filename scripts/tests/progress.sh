#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Tests for run_with_progress (scripts/common.sh), the progress monitor of the
# kernel build. CI stop 21 failed a debug kernel that had built: the EXIT
# trap's `kill` of a monitor bash had already reaped returned 1, and that
# became build-kernel.sh's exit status. Each case runs a script shaped like
# build-kernel.sh (set -euo pipefail, run_with_progress, more commands, the
# end) and checks its exit status, output and that no monitor is left.
# Output: "ok N - ..." / "not ok N - ...", then "N passed, M failed".
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

n=0 passed=0 failed=0 last_dir=
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

# A build-kernel.sh in miniature: CMD is the "build"; afterwards the script
# counts objects (a pipeline, where bash reaps finished children) and ends.
cat >"$tmp/build.sh" <<SCRIPT
#!/usr/bin/env bash
set -euo pipefail
. "$here/../common.sh"
out=\$1
shift
run_with_progress "building" 4 "\$out" "\$out/build.log" "\$@" || exit 7
sleep 0.3
find "\$out" -name '*.o' | wc -l >"\$out/objects"
echo "\$out"
SCRIPT
chmod +x "$tmp/build.sh"

# case DESCRIPTION WANT_RC CMD...: runs the miniature build of CMD.
run_case() {
	local desc=$1 want=$2 rc=0 d
	shift 2
	d=$(mktemp -d "$tmp/out.XXXX")
	CASE_DIR=$d LDD_PROGRESS_SECS=0.2 "$tmp/build.sh" "$d" "$@" >"$d/stdout" 2>"$d/stderr" || rc=$?
	if [ "$rc" != "$want" ]; then
		result fail "$desc: exit status" "want $want, got $rc; stderr: $(head -c 300 "$d/stderr")"
		return
	fi
	result ok "$desc: exit status $rc"
	last_dir=$d
}

# The race needs the monitor reaped before the end; a few runs of each shape.
for i in 1 2 3; do
	run_case "a build that succeeds at once (run $i)" 0 true
	run_case "a build that succeeds after progress lines (run $i)" 0 \
		sh -c 'touch "$CASE_DIR/a.o" "$CASE_DIR/b.o"; echo compiled; sleep 0.7'
done

# The last successful run: progress on stderr, counting the tree, the
# command's output in its log, the directory on stdout.
d=$last_dir
if grep -q '^\[ldd-alloc\] building: 2 of ~4 objects (50%)' "$d/stderr"; then
	result ok "progress lines on stderr"
else
	result fail "progress lines on stderr" "stderr: $(head -c 300 "$d/stderr")"
fi
if [ "$(cat "$d/build.log")" = compiled ] && [ "$(cat "$d/stdout")" = "$d" ]; then
	result ok "the command's output goes to its log, the directory to stdout"
else
	result fail "the command's output goes to its log, the directory to stdout" \
		"log '$(cat "$d/build.log")', stdout '$(cat "$d/stdout")'"
fi
sleep 0.5
if [ "$(grep -c building "$d/stderr")" = "$(sleep 0.5; grep -c building "$d/stderr")" ]; then
	result ok "no monitor left writing after the build"
else
	result fail "no monitor left writing after the build"
fi

run_case "a failing build returns its status to the caller" 7 sh -c 'exit 3'

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
