#!/usr/bin/env bash
# Trains the committed source-prompt library (prompts/<model>/<task>/): one teacher per source
# task on the full training split, for up to MAX_STEPS steps, evaluating dev every EVAL_EVERY
# steps and stopping after PATIENCE evaluations without a better dev score; the best step is
# kept. Then scores each on the test split (with the majority-class and no-prompt baselines on
# the same rows) into prompts/<model>/<task>.test.json. Resumable: a task whose artifact is
# already in the library is skipped, so rerun the same command after an interruption.
#
# Usage: scripts/train-source-prompts.sh [TASK...]     (default: sst2 mnli qnli qqp snli)
# Environment: MPT (binary; default target/release/mpt, else target/debug/mpt), MODEL
#   (default models/all-MiniLM-L6-v2), MAX_STEPS (2500), EVAL_EVERY (250), PATIENCE (3),
#   PROMPT_LEN (20), MAX_DEV (1000), LR (0.1), DATA_ROOT (../shared/data), HEAD (linear | pair |
#   verbalizer; default linear), LIB (the library folder; default prompts/<model>, and
#   prompts/<model>-pair for HEAD=pair), WORK (default runs/source-prompts[-pair]).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
MPT="${MPT:-$( [[ -x target/release/mpt ]] && echo target/release/mpt || echo target/debug/mpt )}"
MODEL="${MODEL:-models/all-MiniLM-L6-v2}"
DATA_ROOT="${DATA_ROOT:-../shared/data}"
HEAD="${HEAD:-linear}"
suffix=""
[[ "$HEAD" == linear ]] || suffix="-$HEAD"
LIB="${LIB:-prompts/$(basename "$MODEL")$suffix}"
WORK="${WORK:-runs/source-prompts$suffix}"
mkdir -p "$LIB" "$WORK"
tasks=("$@")
[[ ${#tasks[@]} -gt 0 ]] || tasks=(sst2 mnli qnli qqp snli)
for task in "${tasks[@]}"; do
    if [[ -f "$LIB/$task/artifact.json" ]]; then
        echo "train-source-prompts: $task: in the library already"
        continue
    fi
    cat > "$WORK/$task.toml" <<TOML
task = "$task"
prompt_length = ${PROMPT_LEN:-20}
init = { kind = "vocab" }

[train]
max_steps = ${MAX_STEPS:-2500}
batch_size = 16
learning_rate = ${LR:-0.1}
eval_every = ${EVAL_EVERY:-250}
patience = ${PATIENCE:-3}
eval_batch_size = 64

[head]
kind = "$HEAD"

[data]
max_dev = ${MAX_DEV:-1000}
TOML
    echo "train-source-prompts: $task: training ($(date -u +%H:%M))"
    start=$SECONDS
    "$MPT" teacher -q --model "$MODEL" --data-root "$DATA_ROOT" --config "$WORK/$task.toml" --out "$WORK/$task" \
        > "$WORK/$task.log" 2>&1
    "$MPT" eval -q --model "$MODEL" --data-root "$DATA_ROOT" --artifact "$WORK/$task" --split test \
        --json "$WORK/$task.test.json" >> "$WORK/$task.log" 2>&1
    cp "$WORK/$task.test.json" "$LIB/$task.test.json"
    rm -rf "$LIB/.$task.tmp" && cp -r "$WORK/$task" "$LIB/.$task.tmp" && mv "$LIB/.$task.tmp" "$LIB/$task"
    echo "train-source-prompts: $task: done in $((SECONDS - start)) s"
done
