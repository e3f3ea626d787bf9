#!/usr/bin/env python3
"""Summarises a bench/compare.sh results folder as a Markdown table.

Usage: bench/summarize.py OUT_DIR ["MODEL_DIRS" "STAGES"]
Without the two lists, the models and stages are the ones found in OUT_DIR.
"""
import json, sys
from pathlib import Path

if len(sys.argv) not in (2, 4):
    sys.exit(__doc__)
out = Path(sys.argv[1])
if len(sys.argv) == 4:
    models, stages = sys.argv[2].split(), sys.argv[3].split()
else:
    # NAME.STAGE.SIDE.ROUND.json, in the order compare.sh writes them
    found = sorted(out.glob("*.*.*.*.json"), key=lambda p: p.stat().st_mtime)
    models = list(dict.fromkeys(p.name.split(".")[0] for p in found))
    stages = list(dict.fromkeys(p.name.split(".")[1] for p in found))

def read(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None

def f(v, fmt):
    return format(v, fmt) if isinstance(v, (int, float)) else "—"

load = dict(line.split(" ", 1) for line in (out / "load.txt").read_text().splitlines() if " " in line)
def median(values):
    values = sorted(values)
    n = len(values)
    return None if n == 0 else (values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2)

def runs(name, stage, side):
    return [d for d in (read(p) for p in sorted(out.glob(f"{name}.{stage}.{side}.*.json"))) if d]

rows = []
for model in models:
    name = Path(model).name
    for stage in stages:
        m, r = runs(name, stage, "mpt"), runs(name, stage, "ref")
        col = lambda ds, k: median([d[k] for d in ds if isinstance(d.get(k), (int, float))])
        me, re_ = col(m, "examples_per_sec"), col(r, "examples_per_sec")
        ratio = me / re_ if me and re_ else None
        pairs = sorted({int(p.name.split(".")[-2]) for p in out.glob(f"{name}.{stage}.*.json")})
        per_round = []
        for k in pairs:
            a, b = read(out / f"{name}.{stage}.mpt.{k}.json"), read(out / f"{name}.{stage}.ref.{k}.json")
            if a and b and a.get("examples_per_sec") and b.get("examples_per_sec"):
                per_round.append(a["examples_per_sec"] / b["examples_per_sec"])
        spread = f"{min(per_round):.2f}–{max(per_round):.2f}" if len(per_round) > 1 else "—"
        peak = lambda ds, k: max((d[k] for d in ds if isinstance(d.get(k), (int, float))), default=None)
        rows.append((name, stage, me, re_, ratio, spread, col(m, "step_ms_median"), col(r, "step_ms_median"),
                     peak(m, "peak_rss_mb"), peak(r, "peak_rss_mb"), peak(r, "rss_after_import_mb")))

any_ref = next((read(p) for p in sorted(out.glob("*.ref.*.json")) if read(p)), None)
print(f"# mpt bench vs PyTorch + PEFT\n")
if any_ref:
    v = any_ref["versions"]
    print(f"reference: torch {v['torch']}, transformers {v['transformers']}, peft {v['peft']}, "
          f"{any_ref['threads']} torch threads, device {any_ref['device']}; "
          f"prompt {any_ref['prompt_len']}, batch {any_ref['batch']}, seq {any_ref['seq_len']}, "
          f"{any_ref['steps']} timed + {any_ref['warmup']} warm-up steps")
any_mpt = next((read(p) for p in sorted(out.glob("*.mpt.*.json")) if read(p)), None)
rounds = max((int(p.name.split(".")[-2]) for p in out.glob("*.*.*.*.json")), default=0)
print(f"mpt: device {any_mpt.get('device') if any_mpt else '?'}; {rounds} round(s) per stage, "
      "the two sides alternating which runs first")
print(f"load average (1/5/15 min): start {load.get('load_start', '?')}, end {load.get('load_end', '?')}\n")
print("| model | stage | ex/s mpt | ex/s pytorch | ratio mpt/pytorch | per-round ratios | step ms mpt | step ms pytorch | peak RSS MiB mpt | peak RSS MiB pytorch (after imports) |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for name, stage, me, re_, ratio, spread, sm, sr, pm, pr, pi in rows:
    print(f"| {name} | {stage} | {f(me, '.2f')} | {f(re_, '.2f')} | {f(ratio, '.2f')} | {spread} | {f(sm, '.0f')} | "
          f"{f(sr, '.0f')} | {f(pm, '.0f')} | {f(pr, '.0f')} ({f(pi, '.0f')}) |")
print("\nratio > 1: mpt has the higher throughput (examples/s at the median step; with several rounds,")
print("the median over rounds of each side). Peak RSS: the highest over the rounds.")