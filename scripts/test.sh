#!/usr/bin/env bash
# The project's test command: fetches the MiniLM model the parity tests need, then runs
# `cargo test -p CRATE` for each crate separately, in pipeline order, stopping at the first
# failing crate. Works from any directory; prints each crate's wall time at the end.
#
# Usage: scripts/test.sh [--with-python] [-- EXTRA CARGO TEST ARGS]
#   --with-python  also create/refresh .venv (scripts/setup-python.sh: torch 2.9.0 etc., several
#                  minutes and ~7 GB the first time) and run every scripts/check_*.py with it,
#                  against the freshly built debug `mpt` binary. Each check is run from the repo
#                  root as `.venv/bin/python scripts/check_X.py --mpt BIN` (MPT_BIN=BIN is also
#                  set), so every check script must accept `--mpt PATH`.
#   MPT_TEST_CRATES="mpt-data mpt-models"  runs only those crates (in the given order).
#
# The Rust tests need no Python: the reference fixtures are committed (tests/fixtures). Backend
# smoke tests (wgpu, tch, cuda) are in scripts/ci-backends.sh; see docs/backends.md.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

WITH_PYTHON=0
CARGO_EXTRA=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --with-python) WITH_PYTHON=1 ;;
        -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; CARGO_EXTRA=("$@"); break ;;
        *) echo "test.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

# Pipeline order: data -> models -> core -> train -> stages -> eval -> pipeline -> cli.
DEFAULT_CRATES="mpt-data mpt-models mpt-core mpt-train mpt-teacher mpt-distill mpt-adapt mpt-eval mpt-pipeline mpt-cli"
read -r -a CRATES <<< "${MPT_TEST_CRATES:-$DEFAULT_CRATES}"

STEP_SCRIPT=test.sh
# shellcheck source=lib/steps.sh
source "$REPO_ROOT/scripts/lib/steps.sh"

step "fetch-models" scripts/fetch-models.sh
step "check-features" scripts/check-features.sh
step "check-seams" scripts/check-seams.sh

for crate in "${CRATES[@]}"; do
    step "cargo test -p $crate" cargo test -p "$crate" "${CARGO_EXTRA[@]}"
done

if [[ $WITH_PYTHON -eq 1 ]]; then
    step "setup-python" scripts/setup-python.sh
    VENV_PY="${MPT_VENV:-$REPO_ROOT/.venv}/bin/python"
    step "cargo build -p mpt-cli" cargo build -p mpt-cli
    MPT_BIN="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug/mpt"
    [[ "$MPT_BIN" = /* ]] || MPT_BIN="$REPO_ROOT/$MPT_BIN"
    shopt -s nullglob
    checks=(scripts/check_*.py)
    shopt -u nullglob
    if [[ ${#checks[@]} -eq 0 ]]; then
        echo "test.sh: no scripts/check_*.py to run"
    fi
    for check in "${checks[@]}"; do
        step "python $(basename "$check")" \
            env MPT_BIN="$MPT_BIN" "$VENV_PY" "$check" --mpt "$MPT_BIN"
    done
fi

summary
echo "test.sh: all passed"
