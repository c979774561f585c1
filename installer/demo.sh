#!/bin/sh
# Tutela demo on one machine, with no configuration: a collector on the
# embedded SQLite store with its review console, a demo DSL account, an agent
# enrolled to it, and (when no desktop is available) a virtual X desktop for
# the agent's sensors to watch. Three alerts are raised through the real agent:
# a window title, a typed phrase and a browser visit.
# Everything lives in ./.tutela-demo; Ctrl-C stops it all.
#
# TUTELA_DEMO_DIR, TUTELA_DEMO_PORT (agents' gRPC), TUTELA_DEMO_CONSOLE_PORT,
# TUTELA_DEMO_BIN (prebuilt binaries: skips the release build) and
# TUTELA_DEMO_EXIT=1 (stop once the alerts are in, for scripted runs) change it.
set -eu
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
DEMO="${TUTELA_DEMO_DIR:-$ROOT/.tutela-demo}"
PORT="${TUTELA_DEMO_PORT:-17443}"
CONSOLE_PORT="${TUTELA_DEMO_CONSOLE_PORT:-18443}"
sh tests/setup-debian.sh
if [ -n "${TUTELA_DEMO_BIN:-}" ]; then
    BIN="$TUTELA_DEMO_BIN"
else
    echo "demo: building (release; the first build takes some minutes)"
    cargo build --release --bins --locked -q
    BIN="$ROOT/target/release"
fi
mkdir -p "$DEMO"
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
collector() { "$BIN/tutela-collector" --data-dir "$DEMO/collector" "$@"; }

if [ ! -f "$DEMO/collector/collector.toml" ]; then
    collector init --listen "127.0.0.1:$PORT" >/dev/null
    # The console on its own port, reachable from this machine only.
    sed -i "s#^listen = \"127.0.0.1:8443\"#listen = \"127.0.0.1:$CONSOLE_PORT\"#" "$DEMO/collector/collector.toml"
fi
# A demo DSL account, with a password made for this demo and kept beside it.
if [ ! -f "$DEMO/dsl-password" ]; then
    (umask 077; od -An -N12 -tx1 /dev/urandom | tr -d ' \n' > "$DEMO/dsl-password")
fi
collector user add demo-dsl --role dsl --password-file "$DEMO/dsl-password" >/dev/null
# The school's monitoring notice and acceptable use policy for the demo's group,
# shown to the pupil when the session starts.
if [ ! -f "$DEMO/notice.txt" ]; then
    cat > "$DEMO/notice.txt" <<'NOTICE'
This computer is monitored. To keep you safe, Tutela Demo School's safeguarding
team may see what you type, the windows you open and the websites you visit
when they match words that suggest someone may be at risk. Nothing else is kept.

By continuing you agree to the school's acceptable use policy.
If you are worried about yourself or someone else, you can tell us, with or
without your name, on the 'Report a concern' page.
NOTICE
    collector notice set --group demo --file "$DEMO/notice.txt" --by demo >/dev/null
fi
"$BIN/tutela-collector" --data-dir "$DEMO/collector" serve >"$DEMO/collector.out" 2>"$DEMO/collector.log" &
PIDS="$PIDS $!"
for _ in $(seq 50); do grep -q listening "$DEMO/collector.out" 2>/dev/null && break; sleep 0.2; done
echo "demo: collector $(cat "$DEMO/collector.out")"

if [ ! -f "$DEMO/agent/enrolment.toml" ]; then
    TOKEN="$(collector token create --group demo --label demo)"
    "$BIN/tutela-agent" --data-dir "$DEMO/agent" enrol "$TOKEN" >/dev/null 2>"$DEMO/enrol.log"
fi

if [ -z "${DISPLAY:-}" ]; then
    # The first free display from :77.
    n=77
    while [ -e "/tmp/.X11-unix/X$n" ] || [ -e "/tmp/.X$n-lock" ]; do n=$((n + 1)); done
    export DISPLAY=":$n"
    Xvfb "$DISPLAY" -screen 0 1920x1080x24 -nolisten tcp >/dev/null 2>&1 &
    PIDS="$PIDS $!"
    for _ in $(seq 50); do xdpyinfo >/dev/null 2>&1 && break; sleep 0.1; done
    openbox >/dev/null 2>&1 &
    PIDS="$PIDS $!"
    echo "demo: started a virtual desktop on $DISPLAY"
fi

# The pupil is whoever is signed in to this desktop; the browser's profile
# lives in the demo's own home so the agent reads its history there.
PUPIL="${USER:-$(id -un)}"
HOME_DIR="$DEMO/home"
mkdir -p "$HOME_DIR"
HOME="$HOME_DIR" TUTELA_USER="$PUPIL" TUTELA_LOG="${TUTELA_LOG:-info}" \
    "$BIN/tutela-agent" --data-dir "$DEMO/agent" run 2>"$DEMO/agent.log" &
PIDS="$PIDS $!"
for _ in $(seq 100); do grep -q "sensors started\|keys sensor" "$DEMO/agent.log" 2>/dev/null && break; sleep 0.1; done
sleep 2

# Waits up to $2 seconds for an alert from source $1 (title, typed, url).
wait_alerts() {
    for _ in $(seq "$2"); do
        case "$(collector alerts list --format json)" in *"\"source\":\"$1\""*) return 0 ;; esac
        sleep 1
    done
    echo "demo: the alert did not arrive; see $DEMO/agent.log and $DEMO/collector.log" >&2
    return 1
}

# The monitoring notice opens as the session starts; the pupil accepts it.
for _ in $(seq 100); do NID="$(xdotool search --name '^Tutela: monitoring notice$' 2>/dev/null | head -1)"; [ -n "$NID" ] && break; sleep 0.1; done
if [ -n "$NID" ]; then
    xdotool windowactivate --sync "$NID" 2>/dev/null || xdotool windowfocus --sync "$NID" 2>/dev/null || true
    xdotool key Return 2>/dev/null || true
    echo "demo: the pupil saw the monitoring notice and pressed 'I understand' (acknowledgement signed and sent)"
else
    echo "demo: the monitoring notice did not appear; see $DEMO/agent.log" >&2
fi

# 1. A window whose title matches a gambling rule.
xterm -T "best online casino bonus - free spins" -e sleep 600 >/dev/null 2>&1 &
PIDS="$PIDS $!"
echo "demo: 1/3 opened a window whose title matches a gambling rule"
wait_alerts title 30

# 2. A phrase typed into a terminal, key by key.
xterm -T "Notes" -e cat >/dev/null 2>&1 &
PIDS="$PIDS $!"
for _ in $(seq 50); do WID="$(xdotool search --name '^Notes$' 2>/dev/null | head -1)"; [ -n "$WID" ] && break; sleep 0.1; done
xdotool windowactivate --sync "$WID" 2>/dev/null || xdotool windowfocus --sync "$WID"
xdotool type --delay 40 "how do i make a pipe bomb"
xdotool key Return
echo "demo: 2/3 typed a phrase that matches a weapons rule"
wait_alerts typed 30

# 3. A browser visit: a page on this machine whose title matches a weapons rule.
mkdir -p "$DEMO/site/forum"
printf '%s\n' '<!doctype html><html lang="en"><head><title>How to buy a gun without a licence</title></head><body><h1>Forum thread</h1></body></html>' > "$DEMO/site/forum/thread-42.html"
python3 -m http.server --bind 127.0.0.1 --directory "$DEMO/site" 0 >"$DEMO/site.out" 2>&1 &
PIDS="$PIDS $!"
SITE_PORT=""
for _ in $(seq 50); do SITE_PORT="$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$DEMO/site.out" | head -1)"; [ -n "$SITE_PORT" ] && break; sleep 0.1; done
HOME="$HOME_DIR" chromium --headless --no-sandbox --no-first-run --disable-gpu \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$HOME_DIR/.config/chromium" "http://127.0.0.1:$SITE_PORT/forum/thread-42.html" \
    >/dev/null 2>&1 &
PIDS="$PIDS $!"
echo "demo: 3/3 visited a page in Chromium (it writes its history after about ten seconds)"
wait_alerts url 60

collector alerts list
cat <<MSG

demo: ready. The review console: http://127.0.0.1:$CONSOLE_PORT/
      sign in as demo-dsl with the password $(cat "$DEMO/dsl-password")
      (kept in $DEMO/dsl-password). Each alert shows its context, and its
      screenshot blurred until you reveal it; every view is audited.
      Pupils report a concern, named or anonymous, with no sign-in at
      http://127.0.0.1:$CONSOLE_PORT/concern ('I need help now' is severity 5).
      Who has accepted the monitoring notice: Notices in the console, or
      tutela-collector notice acks --group demo.
demo: logs in $DEMO; press Ctrl-C to stop everything.
MSG
if [ "${TUTELA_DEMO_EXIT:-0}" = 1 ]; then exit 0; fi
wait
