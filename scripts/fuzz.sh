#!/usr/bin/env bash
# Fuzzing for a fixed time (issue 15): runs the property tests of what parses untrusted bytes —
# the artifact loader (crates/mpt-core/tests/prop_artifact.rs: safetensors header, dtypes,
# shapes, offsets, checksums, artifact.json fields), pipeline TOML
# (crates/mpt-pipeline/tests/prop_pipeline.rs) and the data readers
# (crates/mpt-data/tests/prop_readers.rs) — over and over with many cases and a new random seed
# each round, until SECONDS have passed. (cargo-fuzz needs a nightly toolchain, which this
# project does not use; the test suite runs the same properties with a few hundred cases from a
# fixed seed.)
#
# Usage: scripts/fuzz.sh [SECONDS] [SUITE...]
#   SECONDS  how long to fuzz, after the build (default 300)
#   SUITE    prop_artifact, prop_pipeline and/or prop_readers (default: all three, in turn)
#   FUZZ_CASES=N  cases per property per round (default 2000)
#
# Exits 0 when the time is up with no failure; on the first failure exits 1, printing the suite
# and seed: `PROPTEST_RNG_SEED=SEED PROPTEST_CASES=N cargo test -p CRATE --test SUITE` replays it,
# and proptest prints the shrunk input. A round cut off by the deadline is not a failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

case "${1:-}" in
    -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
DURATION="${1:-300}"
shift || true
SUITES=("$@")
[[ ${#SUITES[@]} -eq 0 ]] && SUITES=(prop_artifact prop_pipeline prop_readers)
CASES="${FUZZ_CASES:-2000}"

crate_of() {
    case "$1" in
        prop_artifact) echo mpt-core ;;
        prop_pipeline) echo mpt-pipeline ;;
        prop_readers) echo mpt-data ;;
        *) echo "fuzz.sh: unknown suite $1 (prop_artifact, prop_pipeline, prop_readers)" >&2; exit 2 ;;
    esac
}

# Build first (not counted in SECONDS) and find each suite's test binary.
declare -A BIN
for suite in "${SUITES[@]}"; do
    crate="$(crate_of "$suite")"
    exe="$(cargo test -p "$crate" --test "$suite" --no-run --message-format=json 2>/dev/null \
        | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)"
    if [[ -z "$exe" || ! -x "$exe" ]]; then
        echo "fuzz.sh: could not build $crate --test $suite:" >&2
        cargo test -p "$crate" --test "$suite" --no-run >&2
        exit 1
    fi
    BIN[$suite]="$exe"
done

deadline=$((SECONDS + DURATION))
rounds=0
echo "fuzz.sh: ${SUITES[*]} for ${DURATION}s, $CASES cases per property per round"
while ((SECONDS < deadline)); do
    for suite in "${SUITES[@]}"; do
        left=$((deadline - SECONDS))
        ((left > 0)) || break 2
        seed=$(( (RANDOM << 30) ^ (RANDOM << 15) ^ RANDOM ))
        set +e
        PROPTEST_CASES="$CASES" PROPTEST_RNG_SEED="$seed" RUST_BACKTRACE=0 \
            timeout -k 5 "$left" "${BIN[$suite]}" -q > "${TMPDIR:-/tmp}/fuzz-$suite.log" 2>&1
        rc=$?
        set -e
        if [[ $rc -eq 137 || $rc -eq 124 ]]; then
            break 2 # the deadline cut this round short
        elif [[ $rc -ne 0 ]]; then
            cat "${TMPDIR:-/tmp}/fuzz-$suite.log"
            echo
            echo "fuzz.sh: $suite FAILED with seed $seed; replay with"
            echo "  PROPTEST_RNG_SEED=$seed PROPTEST_CASES=$CASES cargo test -p $(crate_of "$suite") --test $suite"
            exit 1
        fi
        echo "  $suite: $CASES cases x each property, seed $seed: ok"
    done
    rounds=$((rounds + 1))
done
echo "fuzz.sh: no failure in ${DURATION}s ($rounds full round(s))"
