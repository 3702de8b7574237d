#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build the static userspace binaries that go into the VM (musl target),
# and ldd-alloc-tsc-khz, which vm.sh runs on the host.
# Prints the directory that holds them.
set -euo pipefail
. "$(dirname "$0")/common.sh"

cd "$LDD_TOP/userspace"
cargo build --quiet --release --locked --target x86_64-unknown-linux-musl \
	--bin ldd-alloc --bin ldd-alloc-test --bin ldd-alloc-tsc-khz
echo "$LDD_TOP/userspace/target/x86_64-unknown-linux-musl/release"
