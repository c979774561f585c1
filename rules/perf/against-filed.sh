#!/bin/sh
# Times the current matcher with the shipped en-GB pack against the matcher and en-GB pack as
# they were when issue 13 was filed (commit d079ae9: "today's p99" in its speed target), in one
# process, alternating, on the same titles and typed window as benches/shipped_pack.rs. The
# current matcher with the v1 pack is timed too, so the same run also gives the ratio the
# shipped_pack bench prints.
#
#   sh rules/perf/against-filed.sh [rounds]
#
# Needs the repository's history (a clone, not an archive). Builds in target/against-filed.
set -eu
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
filed=d079ae9
rounds=${1:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git -C "$root" cat-file -e "$filed^{commit}" 2>/dev/null || {
    echo "commit $filed is not in this clone: fetch the full history to compare" >&2
    exit 1
}
mkdir -p "$work/filed" "$work/now" "$work/cmp/src"
git -C "$root" archive "$filed" rules | tar -x -C "$work/filed" --strip-components=1
cp -r "$root/rules/src" "$root/rules/packs" "$root/rules/Cargo.toml" "$work/now/"
git -C "$root" show "$filed:rules/packs/en-GB.toml" > "$work/en-GB-filed.toml"
cp "$root/rules/perf/compare.rs" "$work/cmp/src/main.rs"
cp "$root/rules/perf/texts.rs" "$work/cmp/src/texts.rs"
cp "$root/Cargo.lock" "$work/Cargo.lock"
python3 "$root/rules/perf/workspace.py" "$root" "$work"
echo "building the comparison (release; a few minutes the first time)" >&2
CARGO_TARGET_DIR="$root/target/against-filed" cargo build --release --quiet \
    --manifest-path "$work/Cargo.toml" -p compare
"$root/target/against-filed/release/compare" "$work/en-GB-filed.toml" \
    "$root/rules/packs/en-GB.toml" "$rounds"
