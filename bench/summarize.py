#!/usr/bin/env python3
"""Summarises a bench/compare.sh results folder as a Markdown table.

Usage: bench/summarize.py OUT_DIR ["MODEL_DIRS" "STAGES"]
Without the two lists, the models and stages are the ones found in OUT_DIR.
"""
import json, statistics, sys
from pathlib import Path

if len(sys.argv) not in (2, 4):
    sys.exit(__doc__)
out = Path(sys.argv[1])


def read(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def f(v, fmt):
    return format(v, fmt) if isinstance(v, (int, float)) else "—"


# NAME.STAGE.SIDE.ROUND.json (SIDE mpt or ref), in the order compare.sh wrote them:
# results[(name, stage, side)][round] = that run's JSON.
results = {}
for path in sorted(out.glob("*.*.*.*.json"), key=lambda p: p.stat().st_mtime):
    name, stage, side, rnd, _ = path.name.rsplit(".", 4)
    data = read(path)
    if data and rnd.isdigit():
        results.setdefault((name, stage, side), {})[int(rnd)] = data
if len(sys.argv) == 4:
    models, stages = sys.argv[2].split(), sys.argv[3].split()
else:
    models = list(dict.fromkeys(name for name, _, _ in results))
    stages = list(dict.fromkeys(stage for _, stage, _ in results))


def values(runs, key):
    return [d[key] for d in runs.values() if isinstance(d.get(key), (int, float))]


def median(runs, key):
    v = values(runs, key)
    return statistics.median(v) if v else None


def peak(runs, key):
    return max(values(runs, key), default=None)


load = dict(line.split(" ", 1) for line in (out / "load.txt").read_text().splitlines() if " " in line)
rows = []
for model in models:
    name = Path(model).name
    for stage in stages:
        m, r = results.get((name, stage, "mpt"), {}), results.get((name, stage, "ref"), {})
        me, re_ = median(m, "examples_per_sec"), median(r, "examples_per_sec")
        ratio = me / re_ if me and re_ else None
        per_round = [m[k]["examples_per_sec"] / r[k]["examples_per_sec"] for k in sorted(m.keys() & r.keys())
                     if m[k].get("examples_per_sec") and r[k].get("examples_per_sec")]
        spread = f"{min(per_round):.2f}–{max(per_round):.2f}" if len(per_round) > 1 else "—"
        rows.append((name, stage, me, re_, ratio, spread, median(m, "step_ms_median"), median(r, "step_ms_median"),
                     peak(m, "peak_rss_mb"), peak(r, "peak_rss_mb"), peak(r, "rss_after_import_mb")))


def first(side):
    return next((d for (_, _, s), runs in results.items() if s == side for d in runs.values()), None)


any_ref, any_mpt = first("ref"), first("mpt")
rounds = max((k for runs in results.values() for k in runs), default=0)
print(f"# mpt bench vs PyTorch + PEFT\n")
if any_ref:
    v = any_ref["versions"]
    print(f"reference: torch {v['torch']}, transformers {v['transformers']}, peft {v['peft']}, "
          f"{any_ref['threads']} torch threads, device {any_ref['device']}; "
          f"prompt {any_ref['prompt_len']}, batch {any_ref['batch']}, seq {any_ref['seq_len']}, "
          f"{any_ref['steps']} timed + {any_ref['warmup']} warm-up steps")
kernel = f" (linear products: {any_mpt['linear_kernel']})" if any_mpt and "linear_kernel" in any_mpt else ""
print(f"mpt: device {any_mpt.get('device') if any_mpt else '?'}{kernel}; {rounds} round(s) per stage, "
      "the two sides alternating which runs first")
print(f"machine: {load.get('cpu_model', '?')}, {load.get('cpu_cores', '?')} cores, SIMD {load.get('cpu_simd', '?').strip() or 'none of avx2/avx512'}, "
      f"{load.get('os', '?')}")
print(f"load average (1/5/15 min): start {load.get('load_start', '?')}, end {load.get('load_end', '?')}\n")
print("| model | stage | ex/s mpt | ex/s pytorch | ratio mpt/pytorch | per-round ratios | step ms mpt | step ms pytorch | peak RSS MiB mpt | peak RSS MiB pytorch (after imports) |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for name, stage, me, re_, ratio, spread, sm, sr, pm, pr, pi in rows:
    print(f"| {name} | {stage} | {f(me, '.2f')} | {f(re_, '.2f')} | {f(ratio, '.2f')} | {spread} | {f(sm, '.0f')} | "
          f"{f(sr, '.0f')} | {f(pm, '.0f')} | {f(pr, '.0f')} ({f(pi, '.0f')}) |")
print("\nratio > 1: mpt has the higher throughput (examples/s at the median step; with several rounds,")
print("the median over rounds of each side). Peak RSS: the highest over the rounds.")
