#!/usr/bin/env python3
"""Markdown table of a source-prompt library (prompts/<model>/): per task the training length,
best step, dev curve, test score with the majority-class and no-prompt baselines, tunable numbers
and artifact id. Usage: python3 scripts/source-prompts-table.py [prompts/all-MiniLM-L6-v2]"""
import json
import sys
from pathlib import Path

lib = Path(sys.argv[1] if len(sys.argv) > 1 else "prompts/all-MiniLM-L6-v2")
print("| task | steps | best step | stopped early | dev curve (every 250 steps) | test rows | test | majority | no prompt | tunable | id |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for meta_path in sorted(lib.glob("*/artifact.json")):
    task = meta_path.parent.name
    m = json.loads(meta_path.read_text())
    r = json.loads((lib / f"{task}.test.json").read_text())[0]
    b = r["baselines"]
    curve = " ".join(f"{v:.3f}" for _, v in m["metrics"]["curve"]["evals"])
    print(f"| {task} | {m['metrics']['steps']} | {m['metrics']['best_step']} | {m['metrics']['stopped_early']} | {curve} "
          f"| {r['examples']} | **{r['score']:.3f}** | {b['majority']:.3f} ({b['majority_label']}) | {b['no_prompt']:.3f} "
          f"| {m['tunable_params']} | `{m['id'][:12]}` |")
