#!/usr/bin/env bash
# Copies a finished (or partly finished) pipeline run's report into docs/results/<name>/ with the
# exact command, commit and machine it came from.
#
# Usage: scripts/publish-results.sh [--with-run] PIPELINE.toml [RUN_DIR]
#   e.g. scripts/publish-results.sh pipelines/fewshot.toml
#   --with-run  also copy the run's artifacts, results and state (small: prompts only) into
#               docs/results/<name>/run, so a later sitting on another machine can resume with
#               `mkdir -p runs && cp -r docs/results/<name>/run runs/<name>`.
# Run the pipeline first (it resumes across sittings):
#   cargo run --release -p mpt-cli -- run pipelines/fewshot.toml
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
with_run=0
if [ "${1:-}" = "--with-run" ]; then with_run=1; shift; fi
pipeline="${1:?usage: scripts/publish-results.sh [--with-run] PIPELINE.toml [RUN_DIR]}"
name="$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$pipeline" | head -n1)"
run_dir="${2:-runs/$name}"
[ -f "$run_dir/report.md" ] || { echo "no report at $run_dir/report.md: run the pipeline first" >&2; exit 1; }
out="docs/results/$name"
mkdir -p "$out/plots"
cp "$run_dir/report.json" "$out/report.json"
cp "$run_dir/pipeline.toml" "$out/pipeline.toml"
cp "$run_dir"/plots/*.svg "$out/plots/" 2>/dev/null || true
cp "$run_dir/state.json" "$out/state.json"
{
    echo "<!-- copied from $run_dir/report.md by scripts/publish-results.sh -->"
    echo
    echo "Command: \`cargo run --release -p mpt-cli -- run $pipeline\` (resumed across sittings; wall times per stage below)."
    echo "Commit: \`$(git rev-parse --short HEAD)\`$(git diff --quiet HEAD -- crates || echo ' (with uncommitted changes under crates/)')."
    echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(uname -sr)."
    echo "Published: $(date -u +%Y-%m-%dT%H:%MZ)."
    echo
    cat "$run_dir/report.md"
} > "$out/report.md"
if [ "$with_run" = 1 ]; then
    rm -rf "$out/run"
    mkdir -p "$out/run"
    cp -r "$run_dir/artifacts" "$run_dir/results" "$run_dir/state.json" "$run_dir/pipeline.toml" "$out/run/"
    find "$out/run/artifacts" \( -name '.*.tmp-*' -o -name '.*.old-*' \) -prune -exec rm -rf {} + 2>/dev/null || true
    echo "copied the run folder to $out/run (resume: mkdir -p runs && cp -r $out/run runs/$name, then mpt run $pipeline)"
fi
echo "published $out/report.md"
