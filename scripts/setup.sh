#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Install what building a Rust-enabled kernel, the module and the userspace
# tools needs. Idempotent: each step checks first and does nothing when done.
set -euo pipefail
. "$(dirname "$0")/common.sh"

PACKAGES=(
	"clang$LLVM_SUFFIX" "lld$LLVM_SUFFIX" "llvm$LLVM_SUFFIX" "libclang$LLVM_SUFFIX-dev"
	flex bison bc libelf-dev libssl-dev cpio kmod pahole
	qemu-system-x86 busybox-static make gzip xz-utils
)

missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing Debian packages: ${missing[*]}"
	SUDO=""
	[ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
		"${missing[@]}" >/dev/null
fi

command -v rustup >/dev/null || die "rustup not found: install Rust with rustup first"
rustup component list --installed | grep -q '^rust-src' || {
	log "adding rust-src"
	rustup component add rust-src
}
rustup component list --installed | grep -q '^clippy' || rustup component add clippy
rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
rustup target list --installed | grep -q '^x86_64-unknown-linux-musl' || {
	log "adding the musl target (static userspace binaries for the VM)"
	rustup target add x86_64-unknown-linux-musl
}

if ! bindgen --version 2>/dev/null | grep -q "$BINDGEN_VERSION"; then
	log "building bindgen-cli $BINDGEN_VERSION (about 2 minutes)"
	cargo install --locked --quiet bindgen-cli --version "$BINDGEN_VERSION"
fi

log "toolchain ready: $(rustc --version), $(bindgen --version), clang$LLVM_SUFFIX"
