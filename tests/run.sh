#!/bin/sh
# Runs every test: installs the test dependencies, builds the binaries and
# the tests in one pass, runs the suite, and cross-checks the agent for Windows.
set -eu
cd "$(dirname "$0")/.."
sh tests/setup-debian.sh
echo "== console test dependencies"
(cd tests/console && npm ci --no-audit --no-fund)
echo "== build"
cargo build --workspace --bins --tests --locked
echo "== tests"
cargo test --workspace --locked --no-fail-fast -- --test-threads 2
if rustup target list --installed 2>/dev/null | grep -q x86_64-pc-windows-gnu; then
    echo "== Windows cross-check (agent)"
    cargo check --locked --target x86_64-pc-windows-gnu -p tutela-agent
fi
echo "== all tests passed"
