#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# check-kdir.sh KDIR [LLVM]: check a kernel build tree before Kbuild runs in it.
#
# Building a Rust module out of tree fails in obscure ways when KDIR is not
# what it must be (a missing file deep in Kbuild, "can't find crate for
# `kernel`", "found crate `core` compiled by an incompatible version of
# rustc", a gcc flag clang rejects...). This script looks for the usual
# causes first and reports the first one as ONE line on stderr:
#
#   ldd_alloc: KDIR=<path>: <cause>. <fix>
#
# and exits 1. On success it prints nothing and exits 0.
#
# The checks run from the most fundamental cause to the most superficial, so
# the line names the thing to fix first (no point in matching rustc versions
# against a tree that has no Rust at all):
#   1. KDIR exists, is a kernel build tree, and is configured
#   2. CONFIG_RUST=y (otherwise the kernel must be reconfigured and rebuilt)
#   3. the tree was built (or at least prepared) after being configured
#   4. the Rust metadata Kbuild links the module against is there
#   5. the rustc on PATH is the very one that built the tree
#   6. LLVM= matches the C compiler the tree was built with
# LLVM is the value the caller will pass to Kbuild as LLVM= (empty: gcc).
set -euo pipefail

prog=ldd_alloc

if [ "$#" -lt 1 ] || [ "$#" -gt 2 ]; then
	echo "usage: $0 KDIR [LLVM]" >&2
	exit 2
fi
kdir=$1
llvm=${2:-}

# fail CAUSE FIX: the one diagnostic line, then exit 1.
fail() {
	printf '%s: KDIR=%s: %s. %s\n' "$prog" "$kdir" "$1" "$2" >&2
	exit 1
}

# config_get FILE SYMBOL: the value of CONFIG_SYMBOL in FILE, empty when unset.
# .config quotes strings ("rustc 1.95.0 ..."), auto.conf does not since
# kconfig stopped quoting them there; strip the quotes so both compare alike.
config_get() {
	local v
	v=$(sed -n "s/^CONFIG_$2=//p" "$1" 2>/dev/null | tail -n 1)
	v=${v#\"}
	v=${v%\"}
	printf '%s' "$v"
}

# 1. The tree itself.
if [ -z "$kdir" ]; then
	fail "KDIR is empty" \
		"Pass KDIR=/path/to/kernel/build/tree, or drop KDIR= to use the pinned kernel this project builds"
fi
if [ ! -d "$kdir" ]; then
	fail "no such directory" \
		"Point KDIR at a kernel build tree (the directory holding .config, e.g. the O= directory of your build), or drop KDIR= to use the pinned kernel"
fi
if [ ! -f "$kdir/Makefile" ]; then
	if [ ! -f "$kdir/.config" ] && [ ! -f "$kdir/include/config/auto.conf" ]; then
		fail "not a kernel build tree (no Makefile, no .config, no include/config/auto.conf)" \
			"Point KDIR at the top of a kernel build tree (the directory holding .config, e.g. the O= directory of your build)"
	fi
	# A .config alone is not enough: Kbuild runs 'make -C KDIR'.
	fail "not a kernel build tree (a .config but no Makefile, so make -C KDIR cannot run)" \
		"Point KDIR at the top of the kernel build tree (the O= directory holds a generated Makefile)"
fi
if [ ! -f "$kdir/.config" ] && [ ! -f "$kdir/include/config/auto.conf" ]; then
	fail "the kernel tree is not configured (no .config, no include/config/auto.conf)" \
		"Configure it with CONFIG_RUST=y (e.g. make LLVM=1 defconfig rust.config) and build it with make LLVM=1"
fi

# The configuration the tree was built with. include/config/auto.conf is
# what Kbuild actually used (written by syncconfig during the build); .config
# may have been edited since, and is all there is before a first build.
if [ -f "$kdir/include/config/auto.conf" ]; then
	conf=$kdir/include/config/auto.conf
else
	conf=$kdir/.config
fi
conf_name=${conf#"$kdir"/}

# 2. Rust support. Without it nothing below matters: the kernel must be
# reconfigured and rebuilt whatever else is wrong.
rust=$(config_get "$conf" RUST)
if [ "$rust" != y ]; then
	fail "CONFIG_RUST is not set in $conf_name, the kernel was built without Rust support, so it cannot load Rust modules" \
		"Rebuild the kernel with CONFIG_RUST=y (run make LLVM=1 rustavailable in the tree first to check the Rust toolchain; CONFIG_RUST only shows up in menuconfig when it passes)"
fi

# 3. Built? A tree that was only configured has none of the build outputs.
# Checked before the "prepared" files below because a full build is the more
# complete fix (it also writes auto.conf and autoconf.h).
if [ ! -f "$kdir/rust/libkernel.rmeta" ] && [ ! -f "$kdir/vmlinux" ] &&
	[ ! -f "$kdir/Module.symvers" ]; then
	fail "nothing was built in it (no vmlinux, no Module.symvers, no rust/libkernel.rmeta)" \
		"The tree was configured but not built: run make in it (make LLVM=1 for a clang tree)"
fi
for f in include/config/auto.conf include/generated/autoconf.h; do
	if [ ! -f "$kdir/$f" ]; then
		fail "the tree is not prepared for external modules ($f is missing)" \
			"Run make modules_prepare (or a full build) in the tree"
	fi
done

# 4. The Rust metadata: a Rust module is compiled against the kernel's own
# crates (core, kernel, macros...), which exist only in a tree where the Rust
# part of the kernel was built. Distro header packages (Debian's
# linux-headers-*, Fedora's kernel-devel) ship Module.symvers and the C
# headers but none of this.
missing=
for f in rust/libcore.rmeta rust/libkernel.rmeta rust/libmacros.so; do
	[ -f "$kdir/$f" ] || missing="$missing${missing:+ }$f"
done
if [ -n "$missing" ]; then
	fail "CONFIG_RUST=y but the Rust metadata is missing ($missing): distro kernel header packages (e.g. Debian's linux-headers-*) ship no Rust metadata" \
		"Build the module against a fully built kernel tree: run make in a kernel tree configured with CONFIG_RUST=y and point KDIR at it, or drop KDIR= to use the pinned kernel this project builds"
fi

# 5. The Rust compiler. rustc metadata (.rmeta) is only readable by the very
# same compiler build that wrote it: any other version, even a patch
# release, fails with "compiled by an incompatible version of rustc". So the
# comparison is an exact string compare of 'rustc --version'.
want=$(config_get "$conf" RUSTC_VERSION_TEXT)
if [ -n "$want" ]; then
	# The stable version number, for the rustup command (1.95.0 from
	# "rustc 1.95.0 (59807616e 2026-04-14)"); a nightly is named by its text.
	want_ver=$(printf '%s\n' "$want" | sed -n 's/^rustc \([0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*\) .*/\1/p')
	[ -n "$want_ver" ] || want_ver="<the toolchain of '$want'>"
	if ! have=$(rustc --version 2>/dev/null) || [ -z "$have" ]; then
		fail "the tree was built by $want, but there is no working rustc on PATH" \
			"Install that rustc with rustup toolchain install $want_ver and put it first on PATH"
	fi
	if [ "$have" != "$want" ]; then
		fail "the tree was built by $want but the rustc on PATH is $have, and rustc metadata only works with the very same compiler" \
			"Install that rustc with rustup toolchain install $want_ver and put it first on PATH (or rebuild the kernel with the current rustc)"
	fi
fi

# 6. The C compiler. Kbuild builds the module's C parts (and bindgen's view
# of the headers) with the compiler LLVM= selects, and the flags recorded in
# the tree are for the compiler that built it. Rust-enabled trees built with
# gcc exist (gcc for C, rustc for Rust), so gcc without LLVM= is fine.
if [ "$(config_get "$conf" CC_IS_CLANG)" = y ]; then
	clang_ver=$(config_get "$conf" CLANG_VERSION)
	clang_major=
	case $clang_ver in
	'' | *[!0-9]*) ;;
	*) clang_major=$((clang_ver / 10000)) ;;
	esac
	if [ -z "$llvm" ]; then
		fail "the tree was built with clang (CONFIG_CC_IS_CLANG=y, CONFIG_CLANG_VERSION=${clang_ver:-?}) but LLVM is not given, so Kbuild would use gcc" \
			"Pass LLVM=1 (or LLVM=-${clang_major:-NN} matching the tree's clang version, CONFIG_CLANG_VERSION)"
	fi
	# LLVM=-NN picks clang-NN: it has to be the tree's clang major version.
	case $llvm in
	-[0-9]*)
		if [ -n "$clang_major" ] && [ "${llvm#-}" != "$clang_major" ]; then
			fail "LLVM=$llvm selects clang${llvm} but the tree was built with clang $clang_major (CONFIG_CLANG_VERSION=$clang_ver)" \
				"Pass LLVM=-$clang_major (or LLVM=1 if clang on PATH is clang $clang_major)"
		fi
		;;
	esac
elif [ "$(config_get "$conf" CC_IS_GCC)" = y ] && [ -n "$llvm" ]; then
	fail "the tree was built with gcc (CONFIG_CC_IS_GCC=y) but LLVM=$llvm is given, so Kbuild would use clang" \
		"Drop LLVM=, the tree was built with gcc (with this project's Makefile, which defaults to LLVM=-19, pass an empty LLVM=)"
fi

exit 0
