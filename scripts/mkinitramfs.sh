#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build the VM's initramfs: busybox-static, the module, the userspace
# binaries, the load/unload scripts and /init. Usage: mkinitramfs.sh KO BINDIR OUT
set -euo pipefail
. "$(dirname "$0")/common.sh"

ko=$1 bindir=$2 out=$3
root=$(mktemp -d)
# mktemp makes it 0700: as the initramfs root, every user must traverse it.
chmod 755 "$root"
trap 'rm -rf "$root"' EXIT

mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,root,lib/modules,usr/bin,usr/sbin}
cp /bin/busybox "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
	[ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
cp "$ko" "$root/lib/modules/ldd_alloc.ko"
cp "$bindir/ldd-alloc" "$bindir/ldd-alloc-test" "$root/usr/bin/"
cp "$LDD_TOP/scripts/ldd_alloc_load" "$LDD_TOP/scripts/ldd_alloc_unload" "$root/usr/sbin/"
cp "$LDD_TOP/scripts/vm/init" "$root/init"
chmod +x "$root/init" "$root"/usr/sbin/*
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$out"
