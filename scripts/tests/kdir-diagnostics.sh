#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Tests for scripts/check-kdir.sh, the KDIR diagnostics run before Kbuild.
#
# Each case builds a small FAKE kernel build tree in a temp dir, holding only
# the files check-kdir.sh looks at (Makefile, .config, include/config/auto.conf,
# include/generated/autoconf.h, rust/lib*.rmeta, Module.symvers, vmlinux),
# broken in exactly one way, and checks that check-kdir.sh exits 1 with one
# line on stderr naming that cause. Fake good trees must pass silently. A fake
# rustc first on PATH makes the rustc checks independent of the real one, so
# the tests need no toolchain and no network, and run in well under 2 s.
# If the pinned kernel tree is in the cache, it must pass too (with the real
# rustc on PATH and LLVM=-19); that case is skipped when it is absent.
#
# Output: "ok N - description" / "not ok N - description" per case, then
# "N passed, M failed"; exits 0 only if every case passed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
check=$here/../check-kdir.sh

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The fake rustc: prints $FAKE_RUSTC, or fails when it is empty.
mkdir -p "$tmp/bin"
cat >"$tmp/bin/rustc" <<'EOF'
#!/bin/sh
[ -n "${FAKE_RUSTC:-}" ] || exit 1
[ "${1:-}" = --version ] && printf '%s\n' "$FAKE_RUSTC"
exit 0
EOF
chmod +x "$tmp/bin/rustc"
real_path=$PATH
fake_path=$tmp/bin:$PATH
rustc_text='rustc 1.95.0 (59807616e 2026-04-14)'
export FAKE_RUSTC=$rustc_text

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

# set_conf TREE SYMBOL VALUE: CONFIG_SYMBOL=VALUE in .config (strings quoted)
# and auto.conf (unquoted), like kconfig writes them; an empty VALUE means
# "is not set". Only touches the files that exist.
set_conf() {
	local f
	for f in "$1/.config" "$1/include/config/auto.conf"; do
		[ -f "$f" ] || continue
		sed -i "/^CONFIG_$2=/d; /^# CONFIG_$2 is not set/d" "$f"
		if [ -z "$3" ]; then
			if [ "$f" = "$1/.config" ]; then echo "# CONFIG_$2 is not set" >>"$f"; fi
		elif [ "$f" = "$1/.config" ] && [[ $3 == *' '* ]]; then
			echo "CONFIG_$2=\"$3\"" >>"$f"
		else
			echo "CONFIG_$2=$3" >>"$f"
		fi
	done
}

# good_tree NAME [clang|gcc]: a fake, fully built Rust-enabled tree; prints
# its path.
good_tree() {
	local t=$tmp/$1 cc=${2:-clang}
	mkdir -p "$t/include/config" "$t/include/generated" "$t/rust"
	echo 'include /fake/linux/Makefile' >"$t/Makefile"
	: >"$t/.config"
	: >"$t/include/config/auto.conf"
	set_conf "$t" RUST y
	set_conf "$t" RUSTC_VERSION_TEXT "$rustc_text"
	if [ "$cc" = clang ]; then
		set_conf "$t" CC_IS_CLANG y
		set_conf "$t" CLANG_VERSION 190107
		set_conf "$t" GCC_VERSION 0
	else
		set_conf "$t" CC_IS_GCC y
		set_conf "$t" GCC_VERSION 140200
		set_conf "$t" CLANG_VERSION 0
	fi
	echo '#define CONFIG_RUST 1' >"$t/include/generated/autoconf.h"
	touch "$t/rust/libcore.rmeta" "$t/rust/libkernel.rmeta" "$t/rust/libmacros.so" \
		"$t/Module.symvers" "$t/vmlinux"
	printf '%s\n' "$t"
}

# expect_fail DESCRIPTION PHRASE KDIR [LLVM]: exit 1, nothing on stdout, one
# line on stderr of the form "ldd_alloc: KDIR=<KDIR>: ..." containing PHRASE.
expect_fail() {
	local desc=$1 phrase=$2 kdir=$3 rc=0 out err
	shift 3
	out=$(PATH=$fake_path "$check" "$kdir" "$@" 2>"$tmp/err") || rc=$?
	err=$(cat "$tmp/err")
	if [ "$rc" != 1 ]; then
		result fail "$desc" "exit $rc, stderr: $err"
	elif [ -n "$out" ]; then
		result fail "$desc" "stdout not empty: $out"
	elif [ "$(wc -l <"$tmp/err")" != 1 ]; then
		result fail "$desc" "not one line: $err"
	elif [[ $err != "ldd_alloc: KDIR=$kdir: "* ]]; then
		result fail "$desc" "bad prefix: $err"
	elif [[ $err != *"$phrase"* ]]; then
		result fail "$desc" "no '$phrase' in: $err"
	else
		result ok "$desc"
	fi
}

# expect_ok DESCRIPTION KDIR [LLVM]: exit 0 and no output at all.
expect_ok() {
	local desc=$1 kdir=$2 rc=0 out
	shift 2
	out=$(PATH=${CHECK_PATH:-$fake_path} "$check" "$kdir" "$@" 2>&1) || rc=$?
	if [ "$rc" = 0 ] && [ -z "$out" ]; then
		result ok "$desc"
	else
		result fail "$desc" "exit $rc, output: $out"
	fi
}

# --- Good trees.
t=$(good_tree good-clang)
expect_ok "good clang tree, LLVM=-19" "$t" -19
expect_ok "good clang tree, LLVM=1" "$t" 1
t=$(good_tree good-gcc gcc)
expect_ok "good gcc+rustc tree, no LLVM" "$t"

# --- 1. Not a (configured) kernel build tree.
rc=0
"$check" >/dev/null 2>&1 || rc=$?
if [ "$rc" = 2 ]; then result ok "no argument: usage, exit 2"; else result fail "no argument: usage, exit 2" "exit $rc"; fi
expect_fail "KDIR missing" "no such directory" "$tmp/nonexistent" -19
mkdir -p "$tmp/empty"
expect_fail "empty dir: not a kernel build tree" "not a kernel build tree (no Makefile" "$tmp/empty" -19
t=$(good_tree no-makefile)
rm "$t/Makefile"
expect_fail ".config but no Makefile" "a .config but no Makefile" "$t" -19
mkdir -p "$tmp/unconfigured"
echo 'VERSION = 7' >"$tmp/unconfigured/Makefile"
expect_fail "Makefile but no config: not configured" "is not configured" "$tmp/unconfigured" -19

# --- 3. No Rust (checked first: nothing else can help).
t=$(good_tree no-rust)
set_conf "$t" RUST ''
expect_fail "CONFIG_RUST not set" "CONFIG_RUST is not set in include/config/auto.conf" "$t" -19
t=$(good_tree no-rust-unbuilt)
rm -r "$t/include" "$t/rust" "$t/vmlinux" "$t/Module.symvers"
set_conf "$t" RUST ''
expect_fail "CONFIG_RUST not set in .config of an unbuilt tree" "CONFIG_RUST is not set in .config" "$t" -19

# --- 2. Configured but not built / not prepared.
t=$(good_tree unbuilt)
rm -r "$t/include" "$t/rust" "$t/vmlinux" "$t/Module.symvers"
expect_fail "configured, never built" "configured but not built: run make in it" "$t" -19
t=$(good_tree synced-only)
rm -r "$t/rust" "$t/vmlinux" "$t/Module.symvers"
expect_fail "auto.conf but no build output" "configured but not built: run make in it" "$t" -19
t=$(good_tree no-autoconf)
rm "$t/include/config/auto.conf"
expect_fail "include/config/auto.conf missing" "auto.conf is missing). Run make modules_prepare" "$t" -19
t=$(good_tree no-autoconf-h)
rm "$t/include/generated/autoconf.h"
expect_fail "include/generated/autoconf.h missing" "autoconf.h is missing). Run make modules_prepare" "$t" -19

# --- 4. Distro headers: configured, Module.symvers, no Rust metadata.
t=$(good_tree distro-headers)
rm -r "$t/rust" "$t/vmlinux"
expect_fail "distro headers: no Rust metadata" "ship no Rust metadata" "$t" -19
t=$(good_tree no-libkernel)
rm "$t/rust/libkernel.rmeta"
expect_fail "rust/libkernel.rmeta missing" "metadata is missing (rust/libkernel.rmeta)" "$t" -19

# --- 5. Another rustc.
t=$(good_tree good-clang-2)
FAKE_RUSTC='rustc 1.96.0 (0123456789 2026-05-28)' \
	expect_fail "rustc on PATH differs" "built by $rustc_text but the rustc on PATH is rustc 1.96.0" "$t" -19
FAKE_RUSTC='rustc 1.96.0 (0123456789 2026-05-28)' \
	expect_fail "rustc differs: fix names the toolchain" "rustup toolchain install 1.95.0" "$t" -19
FAKE_RUSTC='' expect_fail "no working rustc on PATH" "no working rustc on PATH" "$t" -19
FAKE_RUSTC='rustc 1.96.0 (0123456789 2026-05-28)' \
	expect_fail "rustc differs and no LLVM: rustc reported first" "the rustc on PATH is" "$t"

# --- 6. C compiler.
expect_fail "clang tree, no LLVM" "LLVM is not given" "$t"
expect_fail "clang tree, no LLVM: fix says LLVM=-19" "Pass LLVM=1 (or LLVM=-19" "$t" ''
expect_fail "clang 19 tree, LLVM=-18" "LLVM=-18 selects clang-18" "$t" -18
t=$(good_tree gcc-llvm gcc)
expect_fail "gcc tree, LLVM=1" "Drop LLVM=, the tree was built with gcc" "$t" 1

# --- The real pinned tree, if it has been built.
real=
for d in "${XDG_CACHE_HOME:-$HOME/.cache}"/ldd-alloc/build/base-*; do
	[ -f "$d/vmlinux" ] && real=$d
done
if [ -n "$real" ]; then
	CHECK_PATH=$real_path expect_ok "real tree $(basename "$real"), LLVM=-19" "$real" -19
else
	echo "# skipped: no built tree in ${XDG_CACHE_HOME:-$HOME/.cache}/ldd-alloc/build/base-*"
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
