#!/usr/bin/env bash
# Builds mpt-cli with an extra burn backend and runs the backend smoke test
# (tests/backend_smoke.rs: tiny BERT/T5 forward passes against the committed HF references at
# 1e-4, then one prompt-tuning step compared with the cpu run). See docs/backends.md.
#
# Usage: scripts/ci-backends.sh [--separate] [wgpu] [tch] [cuda-check]
#        (default: wgpu tch). wgpu and tch are built together (`--features wgpu,tch`: one rebuild
#        of burn and the mpt crates instead of two) unless --separate is given.
#   wgpu          --features wgpu, smoke test on the `wgpu` device. Without a GPU this needs Mesa's
#                 lavapipe (Debian: apt-get install mesa-vulkan-drivers libvulkan1); when its ICD
#                 file is found, VK_ICD_FILENAMES pins it (set VK_ICD_FILENAMES yourself to
#                 override, e.g. for a real GPU).
#   tch           --features tch against the torch==2.9.0 of .venv (scripts/setup-python.sh), smoke
#                 test on `tch-cpu`. MPT_VENV overrides the venv location.
#   cuda-check    `cargo check --features cuda` only (no CUDA needed to compile; nothing runs).
# Afterwards the default-feature `mpt` binary is relinked into target/debug, so a backend build
# does not leave a binary that needs libtorch on LD_LIBRARY_PATH.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

WHAT=("$@")

STEP_SCRIPT=ci-backends.sh
# shellcheck source=lib/steps.sh
source "$REPO_ROOT/scripts/lib/steps.sh"

SMOKE=(cargo test -p mpt-cli --test backend_smoke)

# Environment for the wgpu device: pin Mesa's lavapipe when it is installed.
wgpu_env() {
    local icd="${VK_ICD_FILENAMES:-}" cand
    if [[ -z "$icd" ]]; then
        for cand in /usr/share/vulkan/icd.d/lvp_icd."$(uname -m)".json /usr/share/vulkan/icd.d/lvp_icd.json; do
            if [[ -f "$cand" ]]; then
                icd="$cand"
                break
            fi
        done
        if [[ -z "$icd" ]]; then
            echo "ci-backends.sh: warning: no lavapipe ICD (mesa-vulkan-drivers) found; using whatever Vulkan driver is installed" >&2
            return 0
        fi
    fi
    echo "ci-backends.sh: VK_ICD_FILENAMES=$icd" >&2
    ENV+=(VK_ICD_FILENAMES="$icd")
}

# Environment for tch: torch-sys finds libtorch through `python` (first on PATH) when
# LIBTORCH_USE_PYTORCH=1; the binary finds libtorch*.so through LD_LIBRARY_PATH.
tch_env() {
    local venv="${MPT_VENV:-$REPO_ROOT/.venv}" torch_lib
    if ! torch_lib="$("$venv/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"; then
        echo "ci-backends.sh: tch needs $venv with torch==2.9.0: run scripts/setup-python.sh first" >&2
        exit 1
    fi
    ENV+=(
        PATH="$venv/bin:$PATH"
        LIBTORCH_USE_PYTORCH=1
        LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    )
}

# smoke FEATURES DEVICES: one build with FEATURES (comma-separated), then the smoke test on DEVICES.
smoke() {
    local features="$1" devices="$2" label="${1//,/+}"
    ENV=()
    [[ ",$features," != *,wgpu,* ]] || wgpu_env
    [[ ",$features," != *,tch,* ]] || tch_env
    step "$label: build" env "${ENV[@]}" "${SMOKE[@]}" --features "$features" --no-run
    step "$label: smoke test ($devices)" env "${ENV[@]}" MPT_SMOKE_DEVICES="$devices" \
        "${SMOKE[@]}" --features "$features" -- --nocapture
}

SEPARATE=0
FEATURES=()
DEVICES=()
CHECKS=()
for what in "${WHAT[@]}"; do
    case "$what" in
        --separate) SEPARATE=1 ;;
        wgpu) FEATURES+=(wgpu); DEVICES+=(wgpu) ;;
        tch) FEATURES+=(tch); DEVICES+=(tch-cpu) ;;
        cuda-check) CHECKS+=(cuda) ;;
        *) echo "ci-backends.sh: unknown argument $what (wgpu, tch, cuda-check, --separate)" >&2; exit 2 ;;
    esac
done

if [[ ${#FEATURES[@]} -eq 0 && ${#CHECKS[@]} -eq 0 ]]; then
    FEATURES=(wgpu tch)
    DEVICES=(wgpu tch-cpu)
fi
if [[ ${#FEATURES[@]} -gt 0 ]]; then
    if [[ $SEPARATE -eq 1 || ${#FEATURES[@]} -eq 1 ]]; then
        for i in "${!FEATURES[@]}"; do
            smoke "${FEATURES[$i]}" "${DEVICES[$i]}"
        done
    else
        # Every feature set rebuilds burn and everything above it: one build for all is cheaper.
        smoke "$(IFS=,; echo "${FEATURES[*]}")" "$(IFS=,; echo "${DEVICES[*]}")"
    fi
fi
for feature in "${CHECKS[@]}"; do
    step "$feature: cargo check" cargo check -p mpt-cli --features "$feature" --tests
done

if [[ ${#FEATURES[@]} -gt 0 ]]; then
    step "relink default mpt binary" cargo build -p mpt-cli
fi
summary
echo "ci-backends.sh: all passed"
