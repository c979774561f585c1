#!/bin/sh
# Builds the agent's MSI on Linux with msitools' wixl, from the same WiX source the WiX 3
# build on Windows uses (installer/windows/tutela-agent.wxs), around a cross-built agent:
#   cargo build --release --target x86_64-pc-windows-gnu -p tutela-agent
#   sh installer/windows/build-msi.sh target/x86_64-pc-windows-gnu/release/tutela-agent.exe \
#     tutela-agent.msi
# Needs wixl (Debian: wixl) and the mingw-w64 C compiler (gcc-mingw-w64-x86-64), which builds
# the QuietExec custom action from installer/windows/quietexec/.
set -eu
if [ $# -ne 2 ]; then
    echo "usage: $0 path/to/tutela-agent.exe out.msi" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
exe=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
out=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
[ -f "$exe" ] || { echo "build-msi: no agent at $exe; cross-build it first" >&2; exit 1; }
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n 1)
[ -n "$version" ] || { echo "build-msi: no version in $root/Cargo.toml" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
x86_64-w64-mingw32-gcc -shared -O2 -s -o "$work/quietexec.dll" \
    "$here/quietexec/quietexec.c" "$here/quietexec/quietexec.def" -lmsi
ln -s "$exe" "$work/tutela-agent.exe"
# wixl takes File/@Source and Binary/@SourceFile relative to the directory it runs in.
(cd "$work" && wixl -a x64 -D Version="$version" -D AgentExe=tutela-agent.exe \
    -D QuietExecDll=quietexec.dll -o "$out" "$here/tutela-agent.wxs")
echo "$out"
