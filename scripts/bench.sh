#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Run the benchmarks in the VM (make bench) and bring the results back into
# bench/: results-<date>.txt (the tables), results.json (every raw run),
# plot.svg (ns/op of alloc+free pairs by size).
#   bench.sh [--kdir KDIR] [--quick] [--icount]
# --icount adds a second run under `-icount shift=0 -smp 1` (guest time is an
# instruction count: exact, repeatable ratios; one vCPU, so no concurrency).
# Guest times under QEMU TCG are emulated: only ratios in one boot mean anything.
set -euo pipefail
. "$(dirname "$0")/common.sh"

kdir="" quick="" icount=${BENCH_ICOUNT:-0}
while [ $# -gt 0 ]; do
	case "$1" in
	--kdir) kdir=$2; shift 2 ;;
	--quick) quick=--quick; shift ;;
	--icount) icount=1; shift ;;
	*) die "usage: bench.sh [--kdir KDIR] [--quick] [--icount]" ;;
	esac
done
[ -n "$kdir" ] || kdir=$("$LDD_TOP/scripts/build-kernel.sh" base)
out="$LDD_TOP/bench"
mkdir -p "$out"
stamp=$(date +%Y%m%d-%H%M%S)

# The guest prints the tables, then the JSON and the SVG between markers.
guest_cmd="ldd-alloc bench $quick --out /tmp/bench.json --svg /tmp/plot.svg && \
echo BENCH-JSON-BEGIN && cat /tmp/bench.json && echo && echo BENCH-JSON-END && \
echo BENCH-SVG-BEGIN && cat /tmp/plot.svg && echo && echo BENCH-SVG-END"

run_one() { # NAME SMP SUFFIX [vm.sh options]
	local name=$1 smp=$2 suffix=$3 raw="$out/.raw-$1.txt"
	shift 3
	log "benchmark run: $name"
	"$LDD_TOP/scripts/vm.sh" --kdir "$kdir" --mem 2048 --smp "$smp" --timeout 3600 "$@" \
		cmd "$guest_cmd" >"$raw"
	sed -n '/^BENCH-JSON-BEGIN/,/^BENCH-JSON-END/p' "$raw" | sed '1d;$d' >"$out/results$suffix.json"
	sed -n '/^BENCH-SVG-BEGIN/,/^BENCH-SVG-END/p' "$raw" | sed '1d;$d' >"$out/plot$suffix.svg"
	sed '/^BENCH-JSON-BEGIN/,$d' "$raw" >"$out/results-$stamp$suffix.txt"
	rm -f "$raw"
	cat "$out/results-$stamp$suffix.txt"
}

run_one tcg-smp2 2 ""
[ "$icount" = 0 ] || run_one icount-smp1 1 -icount --icount
log "results in $out: results-$stamp*.txt, results*.json, plot*.svg"
