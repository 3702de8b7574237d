# SPDX-License-Identifier: GPL-2.0
# Shared settings for the ldd_alloc scripts. Sourced, never run.
#
# Everything heavy (kernel source, kernel builds, apt lists for the kernel
# source) lives in a cache outside the repository, so a fresh clone reuses it.

LDD_CACHE=${LDD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ldd-alloc}
LDD_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LLVM_SUFFIX=${LLVM_SUFFIX:--19}
# The Debian package that carries the pinned kernel source, and the suite it is in.
KSRC_PACKAGE=${KSRC_PACKAGE:-linux-source-7.3}
KSRC_SUITE=${KSRC_SUITE:-trixie-backports}
BINDGEN_VERSION=0.72.1
export LIBCLANG_PATH=${LIBCLANG_PATH:-/usr/lib/llvm${LLVM_SUFFIX}/lib}
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '[ldd-alloc] %s\n' "$*" >&2; }
die() {
	printf '[ldd-alloc] error: %s\n' "$*" >&2
	exit 1
}

# The newest unpacked kernel source in the cache (set by fetch-kernel.sh).
cached_ksrc() {
	[ -f "$LDD_CACHE/ksrc.path" ] && cat "$LDD_CACHE/ksrc.path"
}

# Key of a kernel build: source version, the config fragments of the profile,
# the rustc and clang versions. A change in any of them is a new build dir.
build_key() {
	local ksrc=$1 profile=$2
	{
		basename "$ksrc"
		cat "$LDD_TOP/scripts/config/base.config"
		[ "$profile" = base ] || cat "$LDD_TOP/scripts/config/$profile.config"
		rustc --version
		"clang$LLVM_SUFFIX" --version | head -1
	} | sha256sum | cut -c1-12
}

# run_with_progress LABEL TOTAL DIR LOG CMD...: runs CMD, its output to LOG,
# logging (to stderr) every
# LDD_PROGRESS_SECS (10) seconds how many .o files DIR holds against TOTAL.
# Returns CMD's status. The monitor is killed and reaped here, not from an
# EXIT trap: a trap's failing `kill` of an already reaped monitor became the
# exit status of a build that had succeeded (CI, stop 21: "kernel built",
# then "FAILED: kernel-build").
run_with_progress() {
	local label=$1 total=$2 dir=$3 out_log=$4 start rc=0 monitor
	shift 4
	start=$(date +%s)
	(
		while sleep "${LDD_PROGRESS_SECS:-10}"; do
			n=$(find "$dir" -name '*.o' 2>/dev/null | wc -l || true)
			pct=$((n * 100 / total))
			[ $pct -le 99 ] || pct=99
			log "$label: $n of ~$total objects ($pct%), $(($(date +%s) - start)) s"
		done
	) &
	monitor=$!
	"$@" >"$out_log" 2>&1 || rc=$?
	kill "$monitor" 2>/dev/null || true
	wait "$monitor" 2>/dev/null || true
	return "$rc"
}
