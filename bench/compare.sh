#!/usr/bin/env bash
# Side-by-side: `mpt bench` vs the PyTorch + PEFT reference (bench/reference/peft_bench.py), same
# model folders, same arguments, one process at a time.
#
# Cases (the spec's): all-MiniLM-L6-v2 (real weights) and a T5-Base-shaped random model
# (models/t5-base-random, created once by bench/reference/make_t5_base_random.py), prompt 100,
# batch 8, seq 128, stages teacher, distill, adapt, eval.
#
# Usage:  bench/compare.sh [--quick]
# Environment (all optional):
#   MPT=path/to/mpt           mpt binary (default target/release/mpt; build it with
#                             `cargo build --release -p mpt-cli [--features tch|cuda|wgpu]`)
#   PYTHON=.venv/bin/python   Python with the pinned torch/transformers/peft (scripts/requirements.txt)
#   STEPS=10 WARMUP=2         timed / untimed steps per run (--quick: STEPS=3 WARMUP=1)
#   PROMPT_LEN=100 BATCH=8 SEQ_LEN=128
#   ROUNDS=1                  runs of each side per stage, alternating (odd rounds mpt first, even
#                             rounds the reference first); the table gives each side's median over
#                             the rounds and the range of the per-round ratios
#   STAGES="teacher distill adapt eval"
#   MODELS="models/all-MiniLM-L6-v2 models/t5-base-random"
#                             (also models/smollm-135m-random: a SmolLM-135M-shaped random Llama,
#                             created once by bench/reference/make_smollm_random.py)
#   DEVICE=cpu                mpt --device (cpu, wgpu, tch-cpu, tch-cuda, cuda[:N])
#   REF_DEVICE=               reference --device; default: cuda[:N] when DEVICE is cuda*/tch-cuda*, else cpu
#   THREADS=                  if set: reference --threads N, and RAYON_NUM_THREADS / OMP_NUM_THREADS
#                             for mpt; unset: each side uses its default (rayon: all cores; torch:
#                             torch.get_num_threads())
#   OUT_DIR=runs/bench-compare-<time>   where the JSON results and summary.md go
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 1

if [[ "${1:-}" == "--quick" ]]; then
    STEPS="${STEPS:-3}"
    WARMUP="${WARMUP:-1}"
elif [[ -n "${1:-}" ]]; then
    awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"
    exit 2
fi

MPT="${MPT:-$REPO/target/release/mpt}"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
STEPS="${STEPS:-10}"
WARMUP="${WARMUP:-2}"
PROMPT_LEN="${PROMPT_LEN:-100}"
BATCH="${BATCH:-8}"
SEQ_LEN="${SEQ_LEN:-128}"
STAGES="${STAGES:-teacher distill adapt eval}"
ROUNDS="${ROUNDS:-1}"
MODELS="${MODELS:-models/all-MiniLM-L6-v2 models/t5-base-random}"
DEVICE="${DEVICE:-cpu}"
if [[ -z "${REF_DEVICE:-}" ]]; then
    case "$DEVICE" in
        cuda* | tch-cuda*) REF_DEVICE="cuda${DEVICE##*cuda}" ;;
        *) REF_DEVICE=cpu ;;
    esac
fi
THREADS="${THREADS:-}"
OUT_DIR="${OUT_DIR:-$REPO/runs/bench-compare-$(date +%Y%m%d-%H%M%S)}"

if [[ ! -x "$MPT" ]]; then
    echo "error: no mpt binary at $MPT; build it (cargo build --release -p mpt-cli) or set MPT=" >&2
    exit 1
fi
if [[ ! -x "$PYTHON" ]]; then
    echo "error: no Python at $PYTHON; run scripts/setup-python.sh or set PYTHON=" >&2
    exit 1
fi
mkdir -p "$OUT_DIR"

mpt_env=()
ref_threads=()
if [[ -n "$THREADS" ]]; then
    mpt_env=(env "RAYON_NUM_THREADS=$THREADS" "OMP_NUM_THREADS=$THREADS")
    ref_threads=(--threads "$THREADS")
fi

load() { cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || uptime; }

# run_mpt / run_ref NAME STAGE ROUND: one run of one side with the arguments in $args.
run_mpt() {
    local base="$OUT_DIR/$1.$2.mpt.$3"
    echo "== $1 $2 round $3: mpt ($(load))"
    "${mpt_env[@]}" "$MPT" bench "${args[@]}" --device "$DEVICE" >"$base.out" 2>"$base.err" \
        || echo "   mpt failed (see $base.err)"
    grep '^{' "$base.out" | tail -n 1 >"$base.json"
}
run_ref() {
    local base="$OUT_DIR/$1.$2.ref.$3"
    echo "== $1 $2 round $3: pytorch+peft ($(load))"
    "$PYTHON" bench/reference/peft_bench.py "${args[@]}" --device "$REF_DEVICE" "${ref_threads[@]}" \
        >"$base.out" 2>"$base.err" || echo "   reference failed (see $base.err)"
    grep '^{' "$base.out" | tail -n 1 >"$base.json"
}

echo "mpt: $MPT"
echo "reference: $PYTHON bench/reference/peft_bench.py"
echo "rounds $ROUNDS, steps $STEPS (+$WARMUP warm-up), prompt $PROMPT_LEN, batch $BATCH, seq $SEQ_LEN, device $DEVICE / $REF_DEVICE, threads ${THREADS:-default}"
echo "cpu: $(nproc) cores; load average at start: $(load)"
echo "results: $OUT_DIR"
{
    echo "load_start $(load)"
    # The machine, for the table's header: CPU model, cores, its SIMD flags, OS kernel.
    echo "cpu_model $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')"
    echo "cpu_cores $(nproc)"
    echo "cpu_simd $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | tr ' ' '\n' | grep -E '^(avx2|fma|avx512[a-z_0-9]*)$' | sort -u | tr '\n' ' ')"
    echo "os $(uname -sr)"
} >"$OUT_DIR/load.txt"

for model in $MODELS; do
    name="$(basename "$model")"
    if [[ ! -f "$model/config.json" ]]; then
        case "$name" in
            t5-base-random)
                echo "creating $model (once) ..."
                "$PYTHON" bench/reference/make_t5_base_random.py --out "$model" || { echo "error: could not create $model" >&2; continue; }
                ;;
            smollm-135m-random)
                echo "creating $model (once) ..."
                "$PYTHON" bench/reference/make_smollm_random.py --out "$model" || { echo "error: could not create $model" >&2; continue; }
                ;;
            all-MiniLM-L6-v2)
                echo "skip $model: missing (scripts/fetch-models.sh fetches it)" >&2
                continue
                ;;
            *)
                echo "skip $model: missing" >&2
                continue
                ;;
        esac
    fi
    for stage in $STAGES; do
        args=(--model "$model" --stage "$stage" --prompt-len "$PROMPT_LEN" --batch "$BATCH"
            --seq-len "$SEQ_LEN" --steps "$STEPS" --warmup "$WARMUP" --json)
        for ((round = 1; round <= ROUNDS; round++)); do
            if ((round % 2 == 1)); then
                run_mpt "$name" "$stage" "$round"
                run_ref "$name" "$stage" "$round"
            else
                run_ref "$name" "$stage" "$round"
                run_mpt "$name" "$stage" "$round"
            fi
        done
    done
done
echo "load_end $(load)" >>"$OUT_DIR/load.txt"

"$PYTHON" bench/summarize.py "$OUT_DIR" "$MODELS" "$STAGES" | tee "$OUT_DIR/summary.md"
