#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Configure and build the test kernel for a profile (base or debug) in the
# cache, keyed by source version, config fragments, rustc and clang. A build
# that is already complete is reused. Prints the build directory (the KDIR).
set -euo pipefail
. "$(dirname "$0")/common.sh"

profile=${1:-base}
[ "$profile" = base ] || [ -f "$LDD_TOP/scripts/config/$profile.config" ] ||
	die "unknown kernel profile '$profile'"

ksrc=$("$LDD_TOP/scripts/fetch-kernel.sh")
key=$(build_key "$ksrc" "$profile")
out="$LDD_CACHE/build/$profile-$(basename "$ksrc" | sed 's/^linux-source-//')-$key"

if [ -f "$out/.ldd-alloc-built" ]; then
	echo "$out"
	exit 0
fi

# One build per directory: a second caller waits for the first to finish.
mkdir -p "$out"
exec 9>"$out.lock"
if ! flock -n 9; then
	log "another build of $out is running; waiting for it"
	flock 9
fi
if [ -f "$out/.ldd-alloc-built" ]; then
	echo "$out"
	exit 0
fi
KMAKE=(make -C "$ksrc" O="$out" LLVM="$LLVM_SUFFIX" -s)
"${KMAKE[@]}" rustavailable >/dev/null ||
	die "the kernel says Rust is not available; run scripts/setup.sh"

fragments=("$LDD_TOP/scripts/config/base.config")
[ "$profile" = base ] || fragments+=("$LDD_TOP/scripts/config/$profile.config")

log "configuring the $profile kernel in $out"
"${KMAKE[@]}" tinyconfig >/dev/null
"$ksrc/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "${fragments[@]}" >/dev/null
"${KMAKE[@]}" olddefconfig >/dev/null

# Every option a fragment asks for must have survived olddefconfig: a dropped
# dependency would otherwise silently give a kernel without Rust or KASAN.
for frag in "${fragments[@]}"; do
	while IFS= read -r line; do
		case "$line" in
		CONFIG_*=*)
			grep -qx "$line" "$out/.config" ||
				die "kernel config lost '$line' (a dependency is missing); see $out/.config"
			;;
		"# CONFIG_"*" is not set")
			opt=${line#\# }
			opt=${opt%% *}
			! grep -q "^$opt=" "$out/.config" ||
				die "kernel config kept $opt although $(basename "$frag") unsets it"
			;;
		esac
	done <"$frag"
done

# Objects in a complete build of this profile: what the newest one made (any
# cache key), or what the pinned 7.3 trees had when measured.
total=$(ls -t "$LDD_CACHE"/build/"$profile"-*/.ldd-alloc-objects 2>/dev/null | head -1 | xargs -r cat || true)
[ -n "$total" ] || case "$profile" in
base) total=853 ;;
debug) total=895 ;;
*) total=853 ;;
esac
# One job more than cores: the build is CPU-bound, but make leaves a core
# idle while a job waits on its output or a directory's jobs drain. Measured
# on 2 cores (2026-12-04, the base kernel, nothing else running): -j2 786 s,
# -j3 674 s.
jobs=$(($(nproc) + 1))
log "building the $profile kernel (9 to 15 minutes on 2 cores; progress every 10 s)"
start=$(date +%s)
run_with_progress "building the $profile kernel" "$total" "$out" "$out/build.log" \
	"${KMAKE[@]}" -j"$jobs" || {
	tail -40 "$out/build.log" >&2
	die "kernel build failed; full log in $out/build.log"
}
find "$out" -name '*.o' | wc -l >"$out/.ldd-alloc-objects"
log "kernel built in $(($(date +%s) - start)) s ($(cat "$out/.ldd-alloc-objects") objects)"
touch "$out/.ldd-alloc-built"
echo "$out"
