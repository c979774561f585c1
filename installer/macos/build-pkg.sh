#!/bin/sh
# Builds target/macos/tutela-agent-<version>.pkg on a Mac (pkgbuild and
# productbuild come with the Xcode command line tools):
#
#   sh installer/macos/build-pkg.sh [--sign "Developer ID Installer: ..."]
#
# Builds a universal agent (arm64 + x86_64) with cargo and lipo first.
set -eu
cd "$(dirname "$0")/../.."
SIGN=""
[ "${1:-}" = "--sign" ] && SIGN="$2"
VERSION="$(sed -n '/^\[workspace.package\]/,/^\[/ s/^version = "\(.*\)"/\1/p' Cargo.toml)"
OUT=target/macos
for t in aarch64-apple-darwin x86_64-apple-darwin; do
    cargo build --release --locked -p tutela-agent --target "$t"
done
ROOT="$OUT/root"
rm -rf "$ROOT" && mkdir -p "$ROOT/usr/local/bin" "$ROOT/usr/local/lib/tutela-agent" "$ROOT/Library/LaunchDaemons"
lipo -create -output "$ROOT/usr/local/bin/tutela-agent" \
    target/aarch64-apple-darwin/release/tutela-agent target/x86_64-apple-darwin/release/tutela-agent
install -m 0755 installer/macos/tutela-agent-session "$ROOT/usr/local/lib/tutela-agent/tutela-agent-session"
install -m 0644 installer/macos/org.tutela.agent.plist "$ROOT/Library/LaunchDaemons/org.tutela.agent.plist"
chmod 0755 installer/macos/scripts/preinstall installer/macos/scripts/postinstall
pkgbuild --root "$ROOT" --scripts installer/macos/scripts --identifier org.tutela.agent \
    --version "$VERSION" --install-location / --ownership recommended "$OUT/tutela-agent-component.pkg"
if [ -n "$SIGN" ]; then
    productbuild --package "$OUT/tutela-agent-component.pkg" --sign "$SIGN" "$OUT/tutela-agent-$VERSION.pkg"
else
    productbuild --package "$OUT/tutela-agent-component.pkg" "$OUT/tutela-agent-$VERSION.pkg"
fi
echo "$OUT/tutela-agent-$VERSION.pkg"
