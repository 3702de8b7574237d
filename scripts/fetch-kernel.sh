#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Fetch and unpack Debian's linux-source-7.3 into the cache, without touching
# the system's apt sources: apt runs against a private sources file and lists
# directory. The archive is the one the system already uses for Debian
# packages; only the suite differs. Prints the unpacked tree's path.
#
# KSRC=/path/to/linux skips all of this and uses that tree.
set -euo pipefail
. "$(dirname "$0")/common.sh"

if [ -n "${KSRC:-}" ]; then
	[ -f "$KSRC/Makefile" ] && [ -d "$KSRC/rust/kernel" ] ||
		die "KSRC=$KSRC is not a kernel source tree with rust/kernel"
	echo "$KSRC"
	exit 0
fi

APT="$LDD_CACHE/apt"
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$LDD_CACHE/src"

# The Debian archive the system already talks to (deb822 or one-line format).
mirror=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
	mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
	mirror=$(awk '$1 == "deb" && $0 !~ /security/ { print $2; exit }' /etc/apt/sources.list)
fi
[ -n "$mirror" ] || die "no Debian archive found in /etc/apt; set KSRC= to a kernel source tree"

cat >"$APT/sources.list" <<EOF
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $KSRC_SUITE main
EOF
APT_OPTS=(
	-o "Dir::Etc::SourceList=$APT/sources.list"
	-o Dir::Etc::SourceParts=/dev/null
	-o "Dir::State::Lists=$APT/lists"
	-o "Dir::Cache=$APT/cache"
	-o Debug::NoLocking=1
	-o APT::Sandbox::User=root
)

# Refresh the private lists at most once a day.
if [ -z "$(find "$APT/lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null)" ]; then
	log "reading $KSRC_SUITE package lists"
	apt-get "${APT_OPTS[@]}" update -qq >/dev/null 2>"$APT/update.err" || {
		cat "$APT/update.err" >&2
		if [ -n "$(cached_ksrc)" ]; then
			log "apt update failed; using the cached source $(cached_ksrc)"
			cached_ksrc
			exit 0
		fi
		die "cannot read the $KSRC_SUITE lists; set KSRC= to a kernel source tree or KDIR= to a built one"
	}
fi

version=$(apt-cache "${APT_OPTS[@]}" show "$KSRC_PACKAGE" 2>/dev/null |
	awk '/^Version:/ { print $2 }' | sort -V | tail -1)
[ -n "$version" ] ||
	die "$KSRC_PACKAGE is not in $KSRC_SUITE any more; set KSRC=/path/to/linux (a source tree) or KDIR=/path/to/built/tree"

# Debian versions hold ~ and +, which make and shells handle badly in paths.
dest="$LDD_CACHE/src/$KSRC_PACKAGE-$(echo "$version" | tr '~+' '__')"
if [ ! -f "$dest/.unpacked" ]; then
	log "fetching $KSRC_PACKAGE $version"
	rm -rf "$dest" "$LDD_CACHE/src/deb"
	mkdir -p "$LDD_CACHE/src/deb" "$dest"
	(cd "$LDD_CACHE/src/deb" && apt-get "${APT_OPTS[@]}" download -qq "$KSRC_PACKAGE=$version")
	dpkg -x "$LDD_CACHE"/src/deb/*.deb "$LDD_CACHE/src/deb/x"
	tarball=$(ls "$LDD_CACHE"/src/deb/x/usr/src/linux-source-*.tar.*)
	log "unpacking $(basename "$tarball")"
	tar -xf "$tarball" -C "$dest" --strip-components=1
	rm -rf "$LDD_CACHE/src/deb"
	touch "$dest/.unpacked"
fi
echo "$dest" >"$LDD_CACHE/ksrc.path"
echo "$dest"
