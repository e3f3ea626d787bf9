#!/usr/bin/env bash
# The long kill-at-random soak (issue 15): tests/soak.rs with 200 SIGKILLs instead of the test
# suite's default. The tiny pipeline (bert-tiny, tests/fixtures/data, 7 stages) is killed at
# random points, again and again in one run folder (kill, resume, kill, ...), then resumed to
# completion; it must make the artifact ids and result keys of an uninterrupted run, leave no
# temp file, and `mpt status` / `mpt run --dry-run` must succeed after every kill.
#
# Usage: scripts/soak.sh [TRIALS] [SEED]
#   TRIALS  number of kills (default 200; MPT_SOAK_TRIALS if set)
#   SEED    seed of the random delays (default 15; MPT_SOAK_SEED if set); a failure prints it
#           with the run and delay, and `scripts/soak.sh TRIALS SEED` replays the same delays
#           (the same kill points only as far as the machine's timing repeats)
#
# Takes about 0.1 s a kill on a 2-core machine (about 20 s for 200) after the debug build of
# mpt-cli's tests (`cargo test -p mpt-cli --test soak`), which it builds first if needed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

case "${1:-}" in
    -h|--help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
export MPT_SOAK_TRIALS="${1:-${MPT_SOAK_TRIALS:-200}}"
export MPT_SOAK_SEED="${2:-${MPT_SOAK_SEED:-15}}"
echo "soak.sh: $MPT_SOAK_TRIALS kills, seed $MPT_SOAK_SEED"
exec cargo test -p mpt-cli --test soak -- --nocapture
