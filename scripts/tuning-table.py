#!/usr/bin/env python3
"""Markdown table of docs/results/tuning/sweep.jsonl (rows appended by scripts/tuning-sweep.sh).

Usage: python3 scripts/tuning-table.py [docs/results/tuning/sweep.jsonl]
"""
import json
import sys

path = sys.argv[1] if len(sys.argv) > 1 else "docs/results/tuning/sweep.jsonl"
rows = [json.loads(line) for line in open(path) if line.strip()]
print("| run | task | head | lr | warm-up | l | batch | steps | dev curve (step: acc) | test | majority | no prompt "
      "| loss steps 1-4 | train s | tunable |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    t = r["train"]
    w = t["warmup_steps"] if t.get("warmup_steps") is not None else f"{t.get('warmup_ratio', 0):g}·steps"
    b = r["test"]["baselines"] or {}
    curve = ", ".join(f"{s}: {v:.3f}" for s, v in r["dev_curve"])
    losses = " ".join(f"{l:.2f}" for _, l in r["losses"][:4])
    print(f"| {r['name']} | {r['task']} | {r['head']['kind']} | {t['learning_rate']:g} | {w} | {r['prompt_length']} "
          f"| {t['batch_size']} | {t['max_steps']} | {curve} | **{r['test']['score']:.3f}** "
          f"| {b.get('majority', float('nan')):.3f} | {b.get('no_prompt', float('nan')):.3f} | {losses} "
          f"| {r['train_seconds']:.0f} | {r['tunable_params']} |")
cpus = sorted({(r["cpu"], r["kernel"]) for r in rows})
print()
for cpu, kernel in cpus:
    print(f"Machine: {cpu}, Linux {kernel}, 2 cores.")
