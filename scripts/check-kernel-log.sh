#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Scan kernel logs for reports that fail a run: check-kernel-log.sh FILE...
# A FILE is the raw `dmesg -r` of a run (lines "<N>[time] text", N the
# level), its whole console log (every printk, the VM boots with
# ignore_loglevel), or kmemleak's report. Prints the offending lines,
# prefixed with the file name, and exits 1 if there are any.
#
# What fails, on any line:
#   kernel reports: BUG:, WARNING:, Oops, KASAN, Call Trace, general
#   protection, sleeping function called from invalid context, possible
#   circular locking, inconsistent lock state, Kernel panic; kmemleak's
#   "unreferenced object" and any other kmemleak line ("N new suspected
#   memory leaks"); the module's own leak reports ("pages leaked in zone",
#   "leaked"); a KUnit "not ok" (test case or suite).
# Fences: a test that provokes a report on purpose (issue 16) writes
#   ldd-alloc-test: expect begin KIND
#   ldd-alloc-test: expect end KIND
# to /dev/kmsg around it. KIND is oom-kill (the OOM killer's report: "invoked
# oom-killer" and "Killed process") or alloc-failure (the page allocator's
# "page allocation failure" report). Inside a fence, and only there, the
# report's stack dump passes: the "Call Trace:" line and stack frame lines
# ("func+0x12/0x40"). Everything else still fails inside a fence as outside,
# and so does a fence that does not contain its report, a fence never closed,
# one opened inside another, or an end without its begin.
# And on raw dmesg lines (which carry the level): any ldd_alloc line at
# error level or worse (<0>..<3>): the module logs user-triggerable events at
# info level, so pr_err means a real bug ("destroy refused", "refused its
# own object", "pages leaked", ...).
set -euo pipefail
[ $# -gt 0 ] || {
	echo "usage: check-kernel-log.sh FILE..." >&2
	exit 2
}

any='BUG:|WARNING:|Oops|KASAN|Call Trace|general protection|kmemleak|unreferenced object|sleeping function called from invalid context|possible circular locking|inconsistent lock state|leaked|Kernel panic'
# Lines that name kmemleak without reporting anything. The only allowed
# lines: kmemleak's two boot messages (it says it started, not what it
# found), and its note that its own bookkeeping allocation failed, which the
# debug run's fault injection (faults/) provokes: kmemleak then scans the
# whole object instead, still reporting any leak (mm/kmemleak.c,
# add_scan_area()).
allow='kmemleak: Kernel memory leak detector initialized|kmemleak: Automatic memory scanning thread started|kmemleak: Cannot allocate a scan area, scanning the full object'
# KUnit results, after the level and time prefixes are stripped.
ktap='^ *not ok [0-9]+ '
# Error level or worse, from the module (raw dmesg only).
errlvl='^<[0-3]>(\[[^]]*\] )?(ldd_alloc: |.*(destroy refused|refused its own|pages leaked))'

bad=0
for f in "$@"; do
	[ -f "$f" ] || {
		echo "check-kernel-log.sh: no such file: $f" >&2
		exit 2
	}
	if awk -v any="$any" -v allow="$allow" -v ktap="$ktap" -v errlvl="$errlvl" -v name="$(basename "$f")" '
		{ sub(/\r$/, "") }
		{
			hit = 0
			if ($0 ~ errlvl) hit = 1
			s = $0
			sub(/^<[0-9]+>/, "", s)
			sub(/^\[ *[0-9]+\.[0-9]+\] /, "", s)
			if (s ~ any && s !~ allow) hit = 1
			if (s ~ ktap) hit = 1
			if (s ~ /^ldd-alloc-test: expect begin [a-z-]+$/) {
				kind = s
				sub(/^ldd-alloc-test: expect begin /, "", kind)
				if (fence != "" || (kind != "oom-kill" && kind != "alloc-failure")) {
					print name ": " $0 " (a fence inside a fence, or of an unknown kind)"
					found = 1
				}
				fence = kind; seen1 = 0; seen2 = 0; next
			}
			if (s ~ /^ldd-alloc-test: expect end [a-z-]+$/) {
				kind = s
				sub(/^ldd-alloc-test: expect end /, "", kind)
				if (kind != fence) {
					print name ": " $0 " (an end without its begin)"
					found = 1
				} else if (!(seen1 && seen2)) {
					print name ": " $0 " (the fence does not contain its expected " kind " report)"
					found = 1
				}
				fence = ""; next
			}
			if (fence == "oom-kill") {
				if (s ~ /invoked oom-killer: /) seen1 = 1
				if (s ~ /Killed process [0-9]+ /) seen2 = 1
			}
			if (fence == "alloc-failure" && s ~ /page allocation failure: order:/) { seen1 = 1; seen2 = 1 }
			if (fence != "" && hit && s !~ errlvl && s !~ ktap && \
			    (s ~ /^ *Call Trace:$/ || s ~ /^ *[? ]*[A-Za-z0-9_.]+\+0x[0-9a-f]+\/0x[0-9a-f]+( \[[a-z0-9_]+\])?$/)) hit = 0
			if (hit) { print name ": " $0; found = 1 }
		}
		END {
			if (fence != "") { print name ": the fence \"" fence "\" is never closed"; found = 1 }
			exit found ? 0 : 1
		}' "$f"; then
		bad=1
	fi
done
exit $bad
