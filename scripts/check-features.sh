#!/usr/bin/env bash
# Checks that `cargo test -p CRATE` for each crate enables the same features on every shared
# dependency as the whole-workspace build, so the per-crate test runs of scripts/test.sh share
# one build of burn instead of rebuilding it per crate. Prints the differences and exits 1 if
# any crate differs (fix: add the feature to crates/mpt-workspace-hack/Cargo.toml). Proc-macro
# crates (syn, quote, proc-macro2) are resolved for the host separately and cannot be unified
# this way; they are small and left out of the comparison.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

features() {
    cargo tree "$@" -e features -f '{p} {f}' --prefix none 2>/dev/null \
        | sed 's/ (\*)$//' | grep -v '^mpt-' | grep ' v[0-9]' \
        | grep -Ev '^(syn|quote|proc-macro2) ' | sort -u
}
ws="$(features --workspace)"
status=0
for dir in crates/mpt-*/; do
    crate="$(basename "$dir")"
    diff="$(comm -23 <(features -p "$crate") <(echo "$ws") || true)"
    if [[ -n "$diff" ]]; then
        echo "check-features: $crate enables fewer features than the workspace on:"
        echo "$diff" | sed 's/^/  /'
        status=1
    fi
done
[[ $status -eq 0 ]] && echo "check-features: every crate builds its dependencies with the workspace's features"
exit $status
