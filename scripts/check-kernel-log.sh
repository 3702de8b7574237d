#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Scan a kernel log for reports that fail a run. Prints the offending lines
# and exits 1 if there are any.
set -euo pipefail
log=${1:?usage: check-kernel-log.sh FILE}
pattern='BUG:|WARNING:|Oops|KASAN|Call Trace|general protection|kmemleak|unreferenced object|sleeping function called from invalid context|possible circular locking|inconsistent lock state|leaked|Kernel panic'
# Our own leak report says "leaked"; kmemleak's lines start "unreferenced object".
if grep -E "$pattern" "$log" | grep -v -E 'kmemleak: Kernel memory leak detector initialized|kmemleak: Automatic memory scanning thread started'; then
	exit 1
fi
exit 0
