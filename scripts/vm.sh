#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Boot the test kernel in QEMU with the module loaded, and do one of:
#   vm.sh [options] test [ARGS]   run ldd-alloc-test ARGS (TAP on stdout)
#   vm.sh [options] demo          run the CLI's demo of the device
#   vm.sh [options] shell         an interactive busybox shell on the console
#   vm.sh [options] cmd 'CMD'     run CMD, print its output, exit with its status
# Options: --kdir DIR (the kernel build; default: the cached pinned kernel),
#   --ko FILE, --mem MiB (default 5120: above 4 GiB, so ZONE_NORMAL exists
#   beside DMA and DMA32; TCG only touches the memory the guest uses),
#   --smp N, --timeout SECONDS, --params 'insmod params',
#   --kvm (opt-in: only on hosts where KVM works).
# A run fails on a timeout, a failed insmod/rmmod, or a kernel log with
# BUG/WARNING/Oops/KASAN/Call Trace/general protection/kmemleak reports; the
# console log of every run is kept in .vm/ and its path printed on failure.
set -euo pipefail
. "$(dirname "$0")/common.sh"

kdir="" ko="$LDD_TOP/ldd_alloc.ko" mem=${VM_MEM:-5120} smp=${VM_SMP:-2}
timeout=${VM_TIMEOUT:-900} params="" accel=tcg
while [ $# -gt 0 ]; do
	case "$1" in
	--kdir) kdir=$2; shift 2 ;;
	--ko) ko=$2; shift 2 ;;
	--mem) mem=$2; shift 2 ;;
	--smp) smp=$2; shift 2 ;;
	--timeout) timeout=$2; shift 2 ;;
	--params) params=$2; shift 2 ;;
	--kvm) accel=kvm; shift ;;
	*) break ;;
	esac
done
mode=${1:?usage: vm.sh [options] test|demo|shell|cmd [ARG]}
arg=${2:-}
[ -n "$kdir" ] || kdir=$("$LDD_TOP/scripts/build-kernel.sh" base)
bzimage="$kdir/arch/x86/boot/bzImage"
[ -f "$bzimage" ] || die "no bzImage in $kdir: the VM needs a kernel image, not just headers"
[ -f "$ko" ] || die "no module at $ko: run make first"

bindir=$("$LDD_TOP/scripts/build-userspace.sh")
mkdir -p "$LDD_TOP/.vm"
stamp=$(date +%Y%m%d-%H%M%S)-$$
initrd="$LDD_TOP/.vm/initramfs-$$.cpio.gz"
console="$LDD_TOP/.vm/console-$mode-$stamp.log"
trap 'rm -f "$initrd"' EXIT

etc=$(mktemp -d)
mkdir -p "$etc/etc/ldd"
echo "$mode" >"$etc/etc/ldd/mode"
printf '%s\n' "$arg" >"$etc/etc/ldd/cmd"
printf '%s\n' "$params" >"$etc/etc/ldd/params"
# VM_ENV='LDD_FUZZ_OPS=40000 LDD_STRESS_SECS=20': variables for the guest.
for kv in ${VM_ENV:-}; do printf 'export %s\n' "$kv"; done >"$etc/etc/ldd/env"
"$LDD_TOP/scripts/mkinitramfs.sh" "$ko" "$bindir" "$initrd"
(cd "$etc" && find etc | cpio -o -H newc --quiet | gzip -1) >>"$initrd"
rm -rf "$etc"

qemu=(qemu-system-x86_64 -accel "$accel" -smp "$smp" -m "$mem" -nographic -no-reboot
	-kernel "$bzimage" -initrd "$initrd"
	-append "console=ttyS0 panic=-1 loglevel=4 oops=panic")

if [ "$mode" = shell ]; then
	exec "${qemu[@]}"
fi

start=$(date +%s)
set +e
# Print what the guest prints between the output markers, as it comes.
timeout --foreground "$timeout" "${qemu[@]}" </dev/null 2>&1 |
	sed -u -e 's/\r//g' -e 's/\x1b[[?0-9;]*[a-zA-Z]//g' -e 's/\x1bc//g' | tee "$console" |
	awk '/LDD-OUT-BEGIN/ { on = 1; next } /^LDD-OUT-END/ { on = 0 } on { print; fflush() }'
rc=${PIPESTATUS[0]}
set -e
elapsed=$(($(date +%s) - start))

fail() {
	log "VM run failed: $*"
	log "console and kernel log: $console"
	exit 1
}
[ "$rc" = 124 ] && fail "timed out after ${timeout}s"
grep -q '^LDD-EXIT-STATUS=' "$console" || fail "the VM stopped without finishing (qemu exit $rc)"
status=$(sed -n 's/^LDD-EXIT-STATUS=//p' "$console" | tail -1)

dmesg_log="$LDD_TOP/.vm/dmesg-$mode-$stamp.log"
sed -n '/^LDD-DMESG-BEGIN/,/^LDD-DMESG-END/p' "$console" >"$dmesg_log"
cp "$dmesg_log" "$LDD_TOP/.vm/dmesg-$mode-last.log"
if bad=$("$LDD_TOP/scripts/check-kernel-log.sh" "$dmesg_log"); then :; else
	echo "$bad" | head -40 >&2
	fail "the kernel log has reports (see $dmesg_log)"
fi
[ "$status" = 97 ] && fail "ldd_alloc_load failed"
[ "$status" = 98 ] && fail "ldd_alloc_unload failed"
log "VM $mode: guest exit status $status, ${elapsed}s wall"
[ "$status" = 0 ] || { log "console: $console"; exit "$status"; }
