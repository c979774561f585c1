#!/bin/sh
# Installs what the tests and the demo need on a fresh Debian machine:
# a virtual X server and desktop tools, Chromium and its driver, a local SMTP
# server, the Windows cross-check toolchain, and systemd's offline tools
# (systemd-analyze, -sysusers, -tmpfiles) for the packaging test, gRPC and
# Ed25519 for Python (the second, independent client), xdg-open (the desktop
# entry that opens the concern page), and Wine with msitools'
# wixl to build the Windows MSI and install and run it, and the time-zone
# database (tzdata) the collector reads school time zones from, and clang with
# Rust's wasm32 target for the browser extension's WebAssembly module, and PostgreSQL
# (the store tests start a throwaway cluster of their own; the service Debian
# starts is not used), and moto's S3 server (the object-storage capture test;
# from PyPI into tests/s3/venv unless Python already has it). Safe to run again.
set -eu

need=""
for pkg in xvfb xdotool openbox xterm x11-utils chromium chromium-driver \
           python3-aiosmtpd fonts-dejavu-core gcc-mingw-w64-x86-64 procps \
           systemd binutils python3-grpcio python3-cryptography \
           wine wine64 msitools wixl tzdata clang xdg-utils postgresql python3-venv; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need="$need $pkg"
done
# Node and npm drive Chromium in the console tests (playwright-core) and run the test OpenID
# provider (oidc-provider); Node 20 or later.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || need="$need nodejs npm"
if [ -n "$need" ]; then
    echo "setup: installing$need"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
if command -v rustup >/dev/null 2>&1; then
    rustup target list --installed | grep -q x86_64-pc-windows-gnu \
        || rustup target add x86_64-pc-windows-gnu >/dev/null 2>&1 \
        || echo "setup: the Windows target could not be installed; the Windows build and the Wine tests will fail"
    rustup target list --installed | grep -q wasm32-unknown-unknown \
        || rustup target add wasm32-unknown-unknown >/dev/null 2>&1 \
        || echo "setup: the wasm32 target could not be installed; the extension's build and tests will fail"
fi
s3_venv="$(cd "$(dirname "$0")" && pwd)/s3/venv"
if ! "$s3_venv/bin/python" -c "import moto.server, boto3" >/dev/null 2>&1 \
    && ! { command -v moto_server >/dev/null 2>&1 && python3 -c "import moto.server, boto3" >/dev/null 2>&1; }; then
    { python3 -m venv "$s3_venv" && "$s3_venv/bin/pip" install -q 'moto[server]'; } \
        || echo "setup: moto could not be installed; the captures_s3 test will fail"
fi
echo "setup: ready"
