#!/bin/sh
# Builds the extension's WebAssembly module (the rule engine and wire
# formats, extension/wasm) into extension/tutela.wasm, which the extension
# loads. Needs the wasm32-unknown-unknown Rust target and clang (ring's C
# parts); tests/setup-debian.sh installs both. Honours CARGO_TARGET_DIR.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
if command -v rustup >/dev/null 2>&1; then
    rustup target list --installed | grep -q '^wasm32-unknown-unknown$' \
        || rustup target add wasm32-unknown-unknown
fi
cargo build --quiet --manifest-path "$root/Cargo.toml" -p tutela-extension-wasm \
    --target wasm32-unknown-unknown --profile wasm-release
cp "${CARGO_TARGET_DIR:-$root/target}/wasm32-unknown-unknown/wasm-release/tutela_extension_wasm.wasm" \
    "$root/extension/tutela.wasm"
echo "extension: built extension/tutela.wasm ($(wc -c < "$root/extension/tutela.wasm") bytes)"
