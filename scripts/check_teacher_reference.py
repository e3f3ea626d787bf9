#!/usr/bin/env python3
"""Cross-check of one teacher setting against PyTorch: mpt's training is not a bug.

For each encoder head (verbalizer, linear), runs `mpt teacher --trace` on all-MiniLM-L6-v2 and
SST-2 (short run: --steps 20 on 400 training rows, dev accuracy every 10 steps on 100 dev rows),
then bench/reference/teacher_reference.py, which repeats the run with transformers + torch from
the same initial prompt/head on the same batches. Checks:
  * per-step training losses agree within --loss-tol (absolute, default 1e-3) for the first 10
    steps (float32 rounding differences grow with every Adam step after that);
  * the dev curves agree within --dev-tol (default 0.03, i.e. 3 of 100 rows) at every evaluation.
Prints one PASS/FAIL line per check; exits 1 on any failure. Needs models/all-MiniLM-L6-v2
(scripts/fetch-models.sh) and the benchmark data at ../shared/data (--data-root).

Usage: .venv/bin/python scripts/check_teacher_reference.py --mpt target/debug/mpt
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mpt", default=os.environ.get("MPT_BIN", str(REPO / "target/debug/mpt")))
    ap.add_argument("--model", default=str(REPO / "models/all-MiniLM-L6-v2"))
    ap.add_argument("--data-root", default=str(REPO.parent / "shared/data"))
    ap.add_argument("--loss-tol", type=float, default=1e-3)
    ap.add_argument("--dev-tol", type=float, default=0.03)
    args = ap.parse_args()
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for head in ["verbalizer", "linear"]:
            out, trace = Path(tmp) / f"{head}-art", Path(tmp) / f"{head}-trace"
            subprocess.run(
                [args.mpt, "teacher", "-q", "--model", args.model, "--data-root", args.data_root, "--task", "sst2",
                 "--head", head, "--lr", "0.03", "--warmup", "3", "--steps", "20", "--eval-every", "10",
                 "--max-train", "400", "--max-dev", "100", "--prompt-len", "8", "--out", str(out),
                 "--trace", str(trace)],
                check=True, stdout=subprocess.DEVNULL)
            curve = json.loads((out / "artifact.json").read_text())["metrics"]["curve"]
            ref_json = Path(tmp) / f"{head}-ref.json"
            subprocess.run(
                [sys.executable, str(REPO / "bench/reference/teacher_reference.py"), "--model", args.model,
                 "--trace", str(trace), "--json", str(ref_json)],
                check=True, stderr=subprocess.DEVNULL)
            ref = json.loads(ref_json.read_text())
            diffs = [abs(a[1] - b[1]) for a, b in zip(curve["losses"][:10], ref["losses"][:10])]
            ok = len(diffs) == 10 and max(diffs) <= args.loss_tol
            failures += not ok
            print(f"{'PASS' if ok else 'FAIL'} {head}: first 10 step losses, max |mpt - torch| = {max(diffs):.2e} "
                  f"(tol {args.loss_tol})")
            pairs = list(zip(curve["evals"], ref["evals"]))
            ok = len(pairs) == len(ref["evals"]) == len(curve["evals"]) and all(
                a[0] == b[0] and abs(a[1] - b[1]) <= args.dev_tol for a, b in pairs)
            failures += not ok
            print(f"{'PASS' if ok else 'FAIL'} {head}: dev curve mpt {[(s, round(v, 3)) for s, v in curve['evals']]} "
                  f"torch {[(s, round(v, 3)) for s, v in ref['evals']]} (tol {args.dev_tol})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
