#!/bin/sh
# Tutela demo on one machine, with no configuration: a collector on the
# embedded SQLite store, an agent enrolled to it, and (when no desktop is
# available) a virtual X desktop for the agent's sensors to watch.
# Everything lives in ./.tutela-demo; Ctrl-C stops it all.
set -eu
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
DEMO="${TUTELA_DEMO_DIR:-$ROOT/.tutela-demo}"
sh tests/setup-debian.sh
echo "demo: building (release)"
cargo build --release --bins --locked -q
BIN="$ROOT/target/release"
mkdir -p "$DEMO"
PORT="${TUTELA_DEMO_PORT:-17443}"
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

"$BIN/tutela-collector" --data-dir "$DEMO/collector" init --listen "127.0.0.1:$PORT" >/dev/null
"$BIN/tutela-collector" --data-dir "$DEMO/collector" serve >"$DEMO/collector.out" 2>"$DEMO/collector.log" &
PIDS="$PIDS $!"
for _ in $(seq 50); do grep -q listening "$DEMO/collector.out" 2>/dev/null && break; sleep 0.2; done
echo "demo: collector $(cat "$DEMO/collector.out")"

if [ ! -f "$DEMO/agent/enrolment.toml" ]; then
    TOKEN="$("$BIN/tutela-collector" --data-dir "$DEMO/collector" token create --group demo --label demo)"
    "$BIN/tutela-agent" --data-dir "$DEMO/agent" enrol "$TOKEN"
fi

if [ -z "${DISPLAY:-}" ]; then
    export DISPLAY=:77
    Xvfb "$DISPLAY" -screen 0 1920x1080x24 -nolisten tcp >/dev/null 2>&1 &
    PIDS="$PIDS $!"
    sleep 1
    openbox >/dev/null 2>&1 &
    PIDS="$PIDS $!"
    echo "demo: started a virtual desktop on $DISPLAY"
fi

TUTELA_LOG="${TUTELA_LOG:-info}" "$BIN/tutela-agent" --data-dir "$DEMO/agent" run 2>"$DEMO/agent.log" &
PIDS="$PIDS $!"
sleep 3

# Something for the agent to notice: a window whose title matches a rule.
xterm -T "best online casino bonus - free spins" -e sleep 20 >/dev/null 2>&1 &
PIDS="$PIDS $!"
echo "demo: opened a window whose title matches a gambling rule; waiting for the alert"
for _ in $(seq 30); do
    n="$("$BIN/tutela-collector" --data-dir "$DEMO/collector" alerts list --format json | wc -l)"
    [ "$n" -gt 0 ] && break
    sleep 1
done
"$BIN/tutela-collector" --data-dir "$DEMO/collector" alerts list
echo "demo: running; logs in $DEMO; press Ctrl-C to stop"
wait
