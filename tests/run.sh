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
# Detection quality on published labelled text kept beside the checkout (not in the
# repository: their licences differ). Each file must stay above its floor.
corpora="../shared/corpora"
if ls "$corpora"/*.tsv >/dev/null 2>&1; then
    echo "== detection floors on published corpora"
    target/debug/tutela-rules eval --floors rules/corpus/published-floors.toml "$corpora"/*.tsv
else
    echo "== detection floors skipped: no published corpora at $corpora"
fi
if rustup target list --installed 2>/dev/null | grep -q x86_64-pc-windows-gnu; then
    echo "== Windows cross-check (agent)"
    cargo check --locked --target x86_64-pc-windows-gnu -p tutela-agent
fi
echo "== all tests passed"
