#!/usr/bin/env python3
"""Writes reviews/train.csv and reviews/test.csv: a user-style CSV task made from SST-2.

The rows come from the data root (never copied into the repository: reviews/ is git-ignored):
4000 seeded rows of <root>/sst-2/train.tsv as train, <root>/sst-2/dev.tsv as test. Columns
`id,text,stars`, text quoted where it needs it, stars "1" (SST-2 label 0) or "5" (label 1),
so the task file exercises a CSV header, quoting and a raw -> label map.

    python3 data/own-task/make-reviews.py [DATA_ROOT]    # default ../shared/data
"""
import csv
import random
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
root = Path(sys.argv[1]) if len(sys.argv) > 1 else here.parents[2] / "shared" / "data"


def rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        lines = f.read().splitlines()
    out = []
    for line in lines[1:]:
        if not line.strip():
            continue
        sentence, label = line.rsplit("\t", 1)
        out.append((sentence.strip(), "5" if label.strip() == "1" else "1"))
    return out


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "stars"])
        for i, (text, stars) in enumerate(data):
            w.writerow([i, text, stars])


train = rows(root / "sst-2" / "train.tsv")
random.Random(13).shuffle(train)
write(here / "reviews" / "train.csv", train[:4000])
write(here / "reviews" / "test.csv", rows(root / "sst-2" / "dev.tsv"))
print(f"wrote {here / 'reviews'}: train 4000 rows, test from {root / 'sst-2' / 'dev.tsv'}")
