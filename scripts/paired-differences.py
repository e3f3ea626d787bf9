#!/usr/bin/env python3
"""Paired differences between methods of a pipeline report (report.json of `mpt run`).

Usage: scripts/paired-differences.py REPORT.json [--base mpt] [--against vanilla spot-mnli ...]
           [--with OTHER.json:LABEL ...]

For each method B in --against: over every (task, k, seed) cell that both `--base` and B scored,
the mean of score(base) - score(B) in points, its standard error (std of the differences /
sqrt(n)), n and how many cells the base won; overall and per task. Prints Markdown. Standard
library only.

--with OTHER.json:LABEL adds the rows of another report (a run of the same targets, seeds and test
rows with something else changed, e.g. the head) as methods named METHOD@LABEL, so that
`--base vanilla --against vanilla@linear` pairs the two runs cell by cell.
"""

import argparse
import json
import math
import sys
from collections import defaultdict


def mean_se(xs):
    n = len(xs)
    m = sum(xs) / n
    if n < 2:
        return m, float("nan")
    var = sum((x - m) ** 2 for x in xs) / (n - 1)
    return m, math.sqrt(var / n)


def fmt(xs):
    m, se = mean_se(xs)
    wins = sum(1 for x in xs if x > 0)
    se_text = "n/a" if math.isnan(se) else f"{se:.1f}"
    return f"{m:+.1f} (SE {se_text}), {wins} of {len(xs)}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report")
    ap.add_argument("--base", default="mpt")
    ap.add_argument("--against", nargs="*", default=None, help="default: every other method")
    ap.add_argument("--with", dest="others", action="append", default=[], metavar="OTHER.json:LABEL")
    args = ap.parse_args()
    scores = {}
    for path, label in [(args.report, None)] + [tuple(o.rsplit(":", 1)) for o in args.others]:
        with open(path) as f:
            report = json.load(f)
        for row in report["rows"]:
            method = row["method"] if label is None else f"{row['method']}@{label}"
            scores[(method, row["task"], row.get("k"), row["seed"])] = 100.0 * row["score"]
    methods = sorted({m for m, *_ in scores})
    if args.base not in methods:
        sys.exit(f"{args.report}: no rows for method {args.base!r} (methods: {', '.join(methods)})")
    against = args.against if args.against is not None else [m for m in methods if m != args.base]
    tasks = sorted({t for _, t, _, _ in scores})
    print(f"| {args.base} minus | all cells | " + " | ".join(tasks) + " |")
    print("|---|---|" + "---|" * len(tasks))
    for other in against:
        diffs = defaultdict(list)
        for (m, t, k, s), v in scores.items():
            if m == args.base and (other, t, k, s) in scores:
                d = v - scores[(other, t, k, s)]
                diffs[None].append(d)
                diffs[t].append(d)
        if not diffs[None]:
            print(f"| {other} | no common cells |" + " |" * len(tasks))
            continue
        cells = [fmt(diffs[t]) if diffs[t] else "–" for t in tasks]
        print(f"| {other} | {fmt(diffs[None])} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
