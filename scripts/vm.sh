#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Boot the test kernel in QEMU with the module loaded, and do one of:
#   vm.sh [options] test [ARGS]   run ldd-alloc-test ARGS (TAP on stdout)
#   vm.sh [options] demo          run the CLI's demo of the device
#   vm.sh [options] shell         an interactive busybox shell on the console
#   vm.sh [options] cmd 'CMD'     run CMD, print its output, exit with its status
#   vm.sh [options] cmd-file FILE run the shell script in FILE (byte for byte)
# Options: --kdir DIR (the kernel build; default: the cached pinned kernel),
#   --ko FILE, --mem MiB (default 5120: above 4 GiB, so ZONE_NORMAL exists
#   beside DMA and DMA32; TCG only touches the memory the guest uses),
#   --smp N, --timeout SECONDS, --params 'insmod params',
#   --icount (QEMU's -icount shift=0: the guest's clock counts instructions,
#   one per nanosecond; make bench uses it for exact, repeatable ratios),
#   --kvm (opt-in: only on hosts where KVM works).
# A run fails on a timeout, a failed insmod/rmmod, or a kernel log with
# reports (scripts/check-kernel-log.sh: BUG/WARNING/Oops/KASAN/lockdep,
# kmemleak, KUnit "not ok", ldd_alloc at error level, leaks).
#
# Two serial ports: ttyS0 is the kernel's console, written to
# .vm/console-MODE-STAMP.log (the kernel boots with ignore_loglevel, so every
# printk is there, and log_buf_len=16M so dmesg keeps them all too); ttyS1
# carries what /init and the tests print, on stdout as it comes (no kernel
# line can land in the middle of a TAP line). Both logs of every run are
# kept in .vm/ and their paths printed on failure.
# VM_DRY_RUN=DIR: write the files /init reads (etc/ldd/...) to DIR and stop
# (scripts/tests/vm-cmd.sh checks the command arrives byte for byte).
# VM_QEMU_EXTRA: more QEMU arguments, e.g. "-gdb tcp::12345" to attach gdb
# to a hung guest (gdb vmlinux -ex 'target remote :12345'; info threads).
# VM_CMA: the cma= size, and a place for more boot parameters while
# debugging (VM_CMA="64M check_pages=1").
set -euo pipefail
. "$(dirname "$0")/common.sh"

kdir="" ko="$LDD_TOP/ldd_alloc.ko" mem=${VM_MEM:-5120} smp=${VM_SMP:-2}
timeout=${VM_TIMEOUT:-900} params="" accel=tcg icount=0
while [ $# -gt 0 ]; do
	case "$1" in
	--kdir) kdir=$2; shift 2 ;;
	--ko) ko=$2; shift 2 ;;
	--mem) mem=$2; shift 2 ;;
	--smp) smp=$2; shift 2 ;;
	--timeout) timeout=$2; shift 2 ;;
	--params) params=$2; shift 2 ;;
	--icount) icount=1; shift ;;
	--kvm) accel=kvm; shift ;;
	*) break ;;
	esac
done
[ "$accel$icount" != kvm1 ] || die "--icount is TCG's: QEMU refuses it under KVM"
mode=${1:?usage: vm.sh [options] test|demo|shell|cmd|cmd-file [ARG]}
arg=${2:-}
if [ "$mode" = cmd-file ]; then
	[ -f "$arg" ] || die "cmd-file: no such file: $arg"
	mode=cmd
	cmd_file=$arg
fi

etc=$(mktemp -d)
trap 'rm -rf "$etc"' EXIT
mkdir -p "$etc/etc/ldd"
echo "$mode" >"$etc/etc/ldd/mode"
# The command, byte for byte: /init runs it with sh as a script file.
if [ -n "${cmd_file:-}" ]; then
	cp "$cmd_file" "$etc/etc/ldd/cmd"
else
	printf '%s\n' "$arg" >"$etc/etc/ldd/cmd"
fi
printf '%s\n' "$params" >"$etc/etc/ldd/params"
# VM_ENV='LDD_FUZZ_OPS=40000 LDD_STRESS_SECS=20': variables for the guest.
{
	for kv in ${VM_ENV:-}; do printf 'export %s\n' "$kv"; done
	printf 'export LDD_VM_SMP=%s\n' "$smp"
} >"$etc/etc/ldd/env"
if [ -n "${VM_DRY_RUN:-}" ]; then
	mkdir -p "$VM_DRY_RUN"
	cp -r "$etc/etc" "$VM_DRY_RUN/"
	exit 0
fi

[ -n "$kdir" ] || kdir=$("$LDD_TOP/scripts/build-kernel.sh" base)
bzimage="$kdir/arch/x86/boot/bzImage"
[ -f "$bzimage" ] || die "no bzImage in $kdir: the VM needs a kernel image, not just headers"
[ -f "$ko" ] || die "no module at $ko: run make first"

bindir=$("$LDD_TOP/scripts/build-userspace.sh")
mkdir -p "$LDD_TOP/.vm"
stamp=$(date +%Y%m%d-%H%M%S)-$$
initrd="$LDD_TOP/.vm/initramfs-$$.cpio.gz"
console="$LDD_TOP/.vm/console-$mode-$stamp.log"
out="$LDD_TOP/.vm/out-$mode-$stamp.log"
trap 'rm -rf "$etc" "$initrd"' EXIT

"$LDD_TOP/scripts/mkinitramfs.sh" "$ko" "$bindir" "$initrd"
(cd "$etc" && find etc | cpio -o -H newc --quiet | gzip -1) >>"$initrd"

# Every printk on the console, and a ring buffer that keeps them all.
# cma=: a boot-time contiguous reservation (LDD3's "large buffers"; issue 17).
cma="cma=${VM_CMA:-64M}"
# The TSC's rate: the pinned kernel has no ACPI, hence no PM timer or HPET
# to calibrate it against (and TCG's PIT is too slow to calibrate against),
# so the guest is told. Under TCG its TSC is the host's, whose rate
# ldd-alloc-tsc-khz measures; under -icount it counts instructions, 10^6 a
# millisecond. tsc=reliable is what keeps the TSC at all: QEMU's default CPU
# is an AMD one without the constant-TSC bit, and on such a CPU with more
# than one package (one socket per CPU, below) unsynchronized_tsc() would
# mark it unstable and drop the guest onto refined-jiffies.
# kernel_view/clock_is_fine_grained fails if it does; the end of this
# script checks the guest's uptime against the wall clock (a wrong rate).
# Under KVM the guest has kvmclock and is left alone.
clock=""
if [ "$accel" = tcg ]; then
	if [ "$icount" = 1 ]; then
		khz=1000000
	else
		khz=$("$bindir/ldd-alloc-tsc-khz") || die "cannot measure the host's TSC rate for the guest"
	fi
	clock="tsc_early_khz=$khz tsc=reliable"
fi
append="console=ttyS0 panic=-1 oops=panic ignore_loglevel log_buf_len=16M $cma $clock"
# One socket per CPU: without ACPI the guest finds its CPUs in SeaBIOS's MP
# table, which lists one processor per package (a 1-socket, 2-core guest
# would boot with 1 CPU). The guest checks it got $smp (LDD_VM_SMP).
qemu=(qemu-system-x86_64 -accel "$accel" -smp "$smp,sockets=$smp" -m "$mem" -no-reboot
	-kernel "$bzimage" -initrd "$initrd")
[ "$icount" = 0 ] || qemu+=(-icount shift=0)

if [ "$mode" = shell ]; then
	# One port: the console is the shell's terminal. Info lines stay quiet.
	exec "${qemu[@]}" -nographic -append "console=ttyS0 panic=-1 loglevel=4 oops=panic $cma $clock"
fi
raw_console=$(mktemp)
trap 'rm -rf "$etc" "$initrd" "$raw_console"' EXIT
qemu+=(-display none -monitor none -serial "file:$raw_console" -serial stdio -append "$append" ${VM_QEMU_EXTRA:-})

start=$(date +%s)
set +e
# Print what the guest prints between the output markers, as it comes.
timeout --foreground "$timeout" "${qemu[@]}" </dev/null 2>&1 |
	sed -u -e 's/\r//g' -e 's/\x1b[[?0-9;]*[a-zA-Z]//g' -e 's/\x1bc//g' | tee "$out" |
	awk '/LDD-OUT-BEGIN/ { on = 1; next } /^LDD-OUT-END/ { on = 0 } on { print; fflush() }'
rc=${PIPESTATUS[0]}
set -e
elapsed=$(($(date +%s) - start))
sed -e 's/\r//g' -e 's/\x1b[[?0-9;]*[a-zA-Z]//g' -e 's/\x1bc//g' "$raw_console" >"$console"
cp "$console" "$LDD_TOP/.vm/kernel-console-$mode-last.log"

dmesg_log="$LDD_TOP/.vm/dmesg-$mode-$stamp.log"
sed -n '/^LDD-DMESG-BEGIN/,/^LDD-DMESG-END/p' "$out" >"$dmesg_log"
cp "$dmesg_log" "$LDD_TOP/.vm/dmesg-$mode-last.log"
fail() {
	log "VM run failed: $*"
	log "kernel console: $console"
	log "guest output and dmesg: $out"
	exit 1
}
# The whole console first: it has what a crash printed before the end.
if bad=$("$LDD_TOP/scripts/check-kernel-log.sh" "$console" "$dmesg_log"); then :; else
	echo "$bad" | head -40 >&2
	[ "$(echo "$bad" | wc -l)" -le 40 ] || log "... $(echo "$bad" | wc -l) lines in all"
	fail "the kernel log has reports (see $console, $dmesg_log)"
fi
[ "$rc" = 124 ] && fail "timed out after ${timeout}s"
grep -q '^LDD-EXIT-STATUS=' "$out" || {
	tail -20 "$console" >&2
	fail "the VM stopped without finishing (qemu exit $rc)"
}
status=$(sed -n 's/^LDD-EXIT-STATUS=//p' "$out" | tail -1)
[ "$status" = 97 ] && fail "ldd_alloc_load failed"
[ "$status" = 98 ] && fail "ldd_alloc_unload failed"
# The guest's clock runs at the wall clock's rate (a wrong tsc_early_khz
# would rescale every time the guest measures): its uptime at the end is
# the wall time less QEMU's start and the firmware's, so between 60 % and
# 110 % of it on a run long enough for that start not to dominate.
uptime=$(sed -n 's/^LDD-UPTIME=\([0-9]*\).*/\1/p' "$out" | tail -1)
if [ "$accel" = tcg ] && [ "$icount" = 0 ] && [ "$elapsed" -ge 10 ] && [ -n "$uptime" ] &&
	{ [ $((uptime * 10)) -lt $((elapsed * 6)) ] || [ $((uptime * 10)) -gt $((elapsed * 11 + 20)) ]; }; then
	fail "the guest's clock ran ${uptime} s in ${elapsed} s of wall time: its TSC rate (tsc_early_khz) is wrong"
fi
log "VM $mode: guest exit status $status, ${elapsed}s wall"
[ "$status" = 0 ] || { log "console: $console"; exit "$status"; }
