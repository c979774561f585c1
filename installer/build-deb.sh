#!/bin/sh
# Builds tutela-agent_<version>_<arch>.deb and tutela-collector_<version>_<arch>.deb
# from already-built binaries with dpkg-deb alone (no cargo-deb needed; the same
# layout is described for cargo-deb in agent/Cargo.toml and collector/Cargo.toml).
#
#   sh installer/build-deb.sh [--bin-dir target/release] [--out target/debian] [--compress xz|gzip|none]
#
# Build the binaries first: cargo build --release --bins --locked
set -eu
cd "$(dirname "$0")/.."
BIN=target/release
OUT=target/debian
COMPRESS=xz
while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) BIN="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --compress) COMPRESS="$2"; shift 2 ;;
        *) echo "build-deb: unknown argument $1 (see the comment at the top of this script)" >&2; exit 2 ;;
    esac
done
for b in tutela-agent tutela-collector; do
    [ -x "$BIN/$b" ] || { echo "build-deb: $BIN/$b is missing; run: cargo build --release --bins --locked" >&2; exit 1; }
done
VERSION="$(sed -n '/^\[workspace.package\]/,/^\[/ s/^version = "\(.*\)"/\1/p' Cargo.toml)"
[ -n "$VERSION" ] || { echo "build-deb: no [workspace.package] version in Cargo.toml" >&2; exit 1; }
ARCH="$(dpkg --print-architecture)"
mkdir -p "$OUT"
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT

# put MODE SRC DEST: copy one file into the package tree.
put() {
    mkdir -p "$(dirname "$3")"
    cp "$2" "$3"
    chmod "$1" "$3"
}

# binary SRC DEST: the executable without its debug sections.
binary() {
    mkdir -p "$(dirname "$2")"
    if command -v strip >/dev/null 2>&1; then
        strip --strip-debug -o "$2" "$1"
    else
        cp "$1" "$2"
    fi
    chmod 0755 "$2"
}

control() { # control PKG DIR DEPENDS DESCRIPTION
    size="$(du -sk --exclude=DEBIAN "$2" | cut -f1)"
    cat >"$2/DEBIAN/control" <<CONTROL
Package: $1
Version: $VERSION
Architecture: $ARCH
Maintainer: Tutela maintainers <tutela@example.invalid>
Section: admin
Priority: optional
Installed-Size: $size
Depends: $3
Homepage: https://example.invalid/tutela
Description: $4
CONTROL
}

# The agent.
A="$STAGE/tutela-agent"
S=installer/debian/agent
binary "$BIN/tutela-agent" "$A/usr/bin/tutela-agent"
put 0755 "$S/tutela-agent-session" "$A/usr/lib/tutela-agent/tutela-agent-session"
put 0644 "$S/tutela-agent.service" "$A/usr/lib/systemd/system/tutela-agent.service"
put 0644 "$S/tmpfiles.conf" "$A/usr/lib/tmpfiles.d/tutela-agent.conf"
put 0644 "$S/tutela-concern.desktop" "$A/usr/share/applications/tutela-concern.desktop"
put 0644 README.md "$A/usr/share/doc/tutela-agent/README.md"
mkdir -p "$A/DEBIAN"
for f in postinst prerm postrm config; do put 0755 "$S/$f" "$A/DEBIAN/$f"; done
put 0644 "$S/templates" "$A/DEBIAN/templates"
control tutela-agent "$A" "systemd, procps, util-linux, xauth, debconf (>= 0.5) | debconf-2.0" \
"Tutela safeguarding agent for pupil workstations
 Watches the signed-in pupil's desktop (window titles, typed text, browser
 history) against the school's rules, captures evidence on a match and sends
 signed events to the school's Tutela collector."

# The collector.
C="$STAGE/tutela-collector"
S=installer/debian/collector
binary "$BIN/tutela-collector" "$C/usr/bin/tutela-collector"
put 0755 "$S/backup-nightly" "$C/usr/lib/tutela-collector/backup-nightly"
for u in tutela-collector.service tutela-collector-backup.service tutela-collector-backup.timer; do
    put 0644 "$S/$u" "$C/usr/lib/systemd/system/$u"
done
put 0644 "$S/sysusers.conf" "$C/usr/lib/sysusers.d/tutela-collector.conf"
put 0644 "$S/tmpfiles.conf" "$C/usr/lib/tmpfiles.d/tutela-collector.conf"
put 0644 README.md "$C/usr/share/doc/tutela-collector/README.md"
mkdir -p "$C/DEBIAN"
for f in postinst prerm postrm; do put 0755 "$S/$f" "$C/DEBIAN/$f"; done
control tutela-collector "$C" "systemd, tzdata" \
"Tutela collector: the school's safeguarding server
 Receives and verifies agents' signed events, stores alerts and encrypted
 captures, serves the review console, publishes signed rule bundles and
 purges closed alerts after the retention period."

for p in tutela-agent tutela-collector; do
    dpkg-deb --root-owner-group -Z"$COMPRESS" --build "$STAGE/$p" "$OUT/${p}_${VERSION}_${ARCH}.deb" >/dev/null
    echo "$OUT/${p}_${VERSION}_${ARCH}.deb"
done
