#!/bin/sh
# Runs every test: installs the test dependencies, builds the binaries and
# the tests in one pass (and the agent for Windows, which the Wine tests install),
# and runs the suite.
set -eu
cd "$(dirname "$0")/.."
sh tests/setup-debian.sh
echo "== console test dependencies"
(cd tests/console && npm ci --no-audit --no-fund)
echo "== formatting"
cargo fmt --all --check
echo "== build"
cargo build --workspace --bins --tests --locked
# Lints after the build: clippy checks the same code and shares the dependencies' artefacts.
echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The Windows agent, cross-built once: the Wine tests (tests/tests/windows_wine.rs) build
# its MSI with wixl and install and run it under Wine.
echo "== build the Windows agent"
cargo build --locked --target x86_64-pc-windows-gnu -p tutela-agent
# The browser extension's WebAssembly engine (tests/tests/extension*.rs load it).
echo "== build the extension's WebAssembly engine"
sh extension/build.sh
echo "== tests"
cargo test --workspace --locked --no-fail-fast -- --test-threads 2
# Detection quality on published labelled text kept beside the checkout (not in the
# repository: their licences differ). Each file must stay above its floor.
corpora="../shared/corpora"
if ls "$corpora"/*.tsv >/dev/null 2>&1; then
    echo "== detection floors on published corpora"
    target/debug/tutela-rules eval --floors rules/corpus/published-floors.toml "$corpora"/*.tsv
else
    echo "== detection floors skipped: no published corpora at $corpora"
fi
echo "== all tests passed"
