#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Tests that `make vm CMD='...'` delivers any shell command to the VM byte
# for byte, without booting one: VM_DRY_RUN=DIR makes vm.sh write the files
# /init reads (etc/ldd/mode, etc/ldd/cmd) to DIR and stop. The command file
# must hold CMD exactly, and running it the way /init does (busybox sh FILE)
# must print what the command means.
# Output: "ok N - ..." / "not ok N - ...", then "N passed, M failed".
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sh_cmd=(sh)
command -v busybox >/dev/null && sh_cmd=(busybox sh)

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

# case DESCRIPTION CMD WANT_OUTPUT
check() {
	local desc=$1 cmd=$2 want=$3 d rc=0 got
	d=$tmp/$n
	make -s -C "$top" vm CMD="$cmd" VM_DRY_RUN="$d" >"$tmp/make.log" 2>&1 || rc=$?
	if [ $rc != 0 ]; then
		result fail "$desc: make vm" "exit $rc: $(head -5 "$tmp/make.log")"
		return
	fi
	if [ "$(cat "$d/etc/ldd/mode")" != cmd ]; then
		result fail "$desc: mode" "mode is $(cat "$d/etc/ldd/mode")"
		return
	fi
	printf '%s\n' "$cmd" >"$tmp/want"
	if ! cmp -s "$tmp/want" "$d/etc/ldd/cmd"; then
		result fail "$desc: bytes" "want $(od -c "$tmp/want" | head -3), got $(od -c "$d/etc/ldd/cmd" | head -3)"
		return
	fi
	got=$(cd "$tmp" && "${sh_cmd[@]}" "$d/etc/ldd/cmd" 2>&1) || true
	if [ "$got" = "$want" ]; then
		result ok "$desc"
	else
		result fail "$desc: output" "want '$want', got '$got'"
	fi
}

check 'quotes and a variable: x="a  b"; echo "[$x]"' 'x="a  b"; echo "[$x]"' '[a  b]'
check 'a multi-line command' 'for i in 1 2; do
	echo "line $i"
done
echo done' 'line 1
line 2
done'
check "single quotes, a backslash, \$(...) and a dollar at the end" "echo 'it''s' \"\$(echo sub)\" a\\\\b \$" "its sub a\\b \$"
check 'a # comment and ; && ||' 'false || echo "or" && echo "and" # not this' 'or
and'

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
