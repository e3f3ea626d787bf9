#!/usr/bin/env bash
# One row of the teacher tuning sweep (docs/results/tuning/): trains a teacher with the given
# `mpt teacher` flags, evaluates it on the test split (with the majority-class and no-prompt
# baselines on the same rows), and appends the row to docs/results/tuning/sweep.jsonl:
# settings, command, dev curve, losses, test scores, wall time, CPU model and kernel.
#
# Usage: scripts/tuning-sweep.sh NAME TASK [mpt teacher flags...]
#   e.g. scripts/tuning-sweep.sh sst2-lin-lr0.03-w30 sst2 --head linear --lr 0.03 --warmup 30 --steps 300
# Environment: MPT (binary, default target/release/mpt), MODEL (default models/all-MiniLM-L6-v2),
#   MAX_TEST (default 1000), OUT (default docs/results/tuning), RUNS (artifact folder, default runs/tuning).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
name="$1"; task="$2"; shift 2
MPT="${MPT:-target/release/mpt}"
MODEL="${MODEL:-models/all-MiniLM-L6-v2}"
MAX_TEST="${MAX_TEST:-1000}"
OUT="${OUT:-docs/results/tuning}"
RUNS="${RUNS:-runs/tuning}"
mkdir -p "$OUT" "$RUNS"
art="$RUNS/$name"
start=$(date +%s.%N)
"$MPT" teacher -q --model "$MODEL" --task "$task" --out "$art" "$@" > "$RUNS/$name.teacher.log" 2>&1
mid=$(date +%s.%N)
"$MPT" eval -q --model "$MODEL" --artifact "$art" --split test --max-examples "$MAX_TEST" --json "$RUNS/$name.test.json" > "$RUNS/$name.eval.log" 2>&1
end=$(date +%s.%N)
python3 - "$name" "$task" "$art" "$RUNS/$name.test.json" "$start" "$mid" "$end" "$OUT/sweep.jsonl" "$*" <<'PY'
import json, sys, platform, subprocess
name, task, art, test, t0, t1, t2, out, flags = sys.argv[1:]
meta = json.load(open(f"{art}/artifact.json"))
res = json.load(open(test))[0]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
m = meta["metrics"]
row = {
    "name": name, "task": task, "flags": flags,
    "command": f"mpt teacher --model MODEL --task {task} {flags}",
    "train": meta["config"]["train"], "head": meta["config"]["head"], "prompt_length": meta["prompt_length"],
    "tunable_params": meta["tunable_params"],
    "dev_curve": m["curve"]["evals"], "losses": m["curve"]["losses"],
    "best_step": m["best_step"], "dev_score": m["dev_score"],
    "test": {"examples": res["examples"], "score": res["score"], "metrics": res["metrics"], "baselines": res.get("baselines")},
    "train_seconds": float(t1) - float(t0), "eval_seconds": float(t2) - float(t1),
    "cpu": cpu, "kernel": platform.release(), "artifact_id": meta["id"],
}
with open(out, "a") as f:
    f.write(json.dumps(row) + "\n")
b = res.get("baselines") or {}
print(f"{name}: dev {m['dev_score']:.3f} (best step {m['best_step']}) test {res['score']:.3f} "
      f"majority {b.get('majority', float('nan')):.3f} no-prompt {b.get('no_prompt', float('nan')):.3f} "
      f"train {float(t1)-float(t0):.0f}s losses[:4] {[round(l[1],2) for l in m['curve']['losses'][:4]]}")
PY
