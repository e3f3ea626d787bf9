# Timed steps for the project's shell scripts (sourced by scripts/test.sh and
# scripts/ci-backends.sh). Set STEP_SCRIPT to the script's name before use.
#
#   step NAME CMD...   runs CMD and records its wall time; on failure prints the summary and
#                      which step failed, then exits with CMD's status.
#   summary            prints the wall time of each step so far and the total.

STEP_NAMES=()
STEP_SECS=()

summary() {
    local i total=0
    echo
    echo "$STEP_SCRIPT: wall time per step"
    for i in "${!STEP_NAMES[@]}"; do
        printf '  %-34s %6ss\n' "${STEP_NAMES[$i]}" "${STEP_SECS[$i]}"
        total=$((total + STEP_SECS[i]))
    done
    printf '  %-34s %6ss\n' "total" "$total"
}

step() {
    local name="$1" start rc
    shift
    echo
    echo "==> $STEP_SCRIPT: $name"
    start=$SECONDS
    set +e
    "$@"
    rc=$?
    set -e
    STEP_NAMES+=("$name")
    STEP_SECS+=($((SECONDS - start)))
    if [[ $rc -ne 0 ]]; then
        summary
        echo >&2
        echo "$STEP_SCRIPT: FAILED: $name (exit $rc)" >&2
        exit "$rc"
    fi
}
