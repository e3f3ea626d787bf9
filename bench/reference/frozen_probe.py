"""Linear-probe ceiling of the frozen backbone: logistic regression on all-MiniLM-L6-v2's
sentence embeddings, trained to convergence on the whole training split.

What it answers: how well a classifier reading the frozen model's pooled features can do at all
when it sees every training row, with no prompt. A prompt-tuned teacher changes those features
(the prompt is attended to by every layer), so this is not a bound on prompt tuning, but it is the
reference for what the head alone can reach, and for how far the step-count goals in
docs/results/tuning/ sit above what the frozen features carry.

Features, as the product's heads read them (mean pool over the input tokens, L2-normalised):
  joint  the pair encoded together (`[CLS] a [SEP] b [SEP]`, token types 0/1): the linear head
  pair   each segment on its own, [u, v, |u - v|, sqrt(d) * u * v]: the pair head
SST-2 is single-sentence: both are u.

Rows: the product's splits (crates/mpt-data/src/splits.rs): SST-2 train.tsv (all 67,349 rows;
the product holds 1,000 of them out as dev) / dev.tsv (872); MNLI, QNLI, QQP the 8,999-row
`train-subset-ppft/train.json` / the official dev (MNLI dev-matched 9,815, QNLI 5,463, QQP
cutoff new_dev.tsv minus its malformed row and the rows overlapping ppft train/dev: 22,869).
The inverse regularisation C is picked from {0.01, 0.1, 1, 10, 100} on the ppft dev.json (1,000
rows; SST-2: a seeded 1,000 of train held out for the pick), then the model is refit on all
training rows. Score = accuracy (QQP: mean of accuracy and F1, as `mpt eval` reports it).

Usage: .venv/bin/python bench/reference/frozen_probe.py --model models/all-MiniLM-L6-v2 \
           --data ../shared/data --tasks sst2 mnli qnli qqp --json out.json
"""

import argparse
import csv
import json
import math
import os
import platform
import sys
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from transformers import AutoModel, AutoTokenizer

csv.field_size_limit(sys.maxsize)


def ppft(path):
    rows = json.load(open(path))
    return [(r["text_a"], r["text_b"], str(r["label"])) for _, r in sorted(rows.items(), key=lambda kv: int(kv[0]))]


def tsv(path):
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def load(task, root):
    if task == "sst2":
        train = [(r[0], None, r[1]) for r in tsv(f"{root}/sst-2/train.tsv")[1:]]
        test = [(r[0], None, r[1]) for r in tsv(f"{root}/sst-2/dev.tsv")[1:]]
        rng = np.random.default_rng(42)
        dev_idx = set(rng.choice(len(train), 1000, replace=False).tolist())
        dev = [r for i, r in enumerate(train) if i in dev_idx]
        pick_train = [r for i, r in enumerate(train) if i not in dev_idx]
        return pick_train, dev, train, test
    train = ppft(f"{root}/{task}/train-subset-ppft/train.json")
    dev = ppft(f"{root}/{task}/train-subset-ppft/dev.json")
    if task == "mnli":
        test = [(j["premise"], j["hypothesis"], j["label"]) for j in map(json.loads, open(f"{root}/mnli/dev_matched.jsonl"))]
    elif task == "qnli":
        test = [(r[1], r[2], r[3]) for r in tsv(f"{root}/qnli/dev.tsv")[1:]]
    else:
        seen = {(a, b) for a, b, _ in train + dev}
        test = []
        for r in tsv(f"{root}/qqp/train-subset-cutoff/new_dev.tsv"):
            if len(r) != 6 or r[5] not in ("0", "1"):
                continue
            if (r[3], r[4]) in seen:
                continue
            test.append((r[3], r[4], r[5]))
    return train, dev, train, test


class Encoder:
    def __init__(self, model_dir, max_len, batch):
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModel.from_pretrained(model_dir).eval()
        self.max_len, self.batch = max_len, batch
        self.cache = {}

    @torch.no_grad()
    def embed(self, a, b=None):
        out = []
        for i in range(0, len(a), self.batch):
            enc = self.tok(a[i : i + self.batch], None if b is None else b[i : i + self.batch], padding=True,
                           truncation=True, max_length=self.max_len, return_tensors="pt")
            h = self.model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            pooled = (h * m).sum(1) / m.sum(1).clamp_min(1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(out)

    def single(self, texts):
        todo = sorted({t for t in texts if t not in self.cache})
        if todo:
            for t, e in zip(todo, self.embed(todo)):
                self.cache[t] = e
        return np.stack([self.cache[t] for t in texts])


def features(enc, rows, kind):
    a = [r[0] for r in rows]
    if rows[0][1] is None:
        return enc.single(a)
    b = [r[1] for r in rows]
    if kind == "joint":
        return enc.embed(a, b)
    u, v = enc.single(a), enc.single(b)
    return np.concatenate([u, v, np.abs(u - v), math.sqrt(u.shape[1]) * u * v], axis=1)


def score(task, gold, pred):
    acc = accuracy_score(gold, pred)
    if task == "qqp":
        f1 = f1_score(gold, pred, pos_label="1")
        return (acc + f1) / 2, {"accuracy": acc, "f1": f1}
    return acc, {"accuracy": acc}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/all-MiniLM-L6-v2")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--tasks", nargs="+", choices=["sst2", "mnli", "qnli", "qqp"], default=["sst2", "mnli", "qnli", "qqp"])
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    enc = Encoder(args.model, args.max_len, args.batch)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    results = []
    for task in args.tasks:
        pick_train, dev, train, test = load(task, args.data)
        kinds = ["single"] if train[0][1] is None else ["joint", "pair"]
        for kind in kinds:
            t0 = time.time()
            x_train, x_dev, x_test = (features(enc, rows, kind) for rows in (train, dev, test))
            x_pick = x_train if pick_train is train else features(enc, pick_train, kind)
            y = lambda rows: [r[2] for r in rows]
            picks = {}
            for c in (0.01, 0.1, 1.0, 10.0, 100.0):
                clf = LogisticRegression(C=c, max_iter=2000).fit(x_pick, y(pick_train))
                picks[c] = score(task, y(dev), clf.predict(x_dev))[0]
            best_c = max(picks, key=picks.get)
            clf = LogisticRegression(C=best_c, max_iter=2000).fit(x_train, y(train))
            s, metrics = score(task, y(test), clf.predict(x_test))
            labels, counts = np.unique(y(train), return_counts=True)
            majority = labels[counts.argmax()]
            maj, _ = score(task, y(test), [majority] * len(test))
            row = {"task": task, "features": kind, "train_rows": len(train), "test_rows": len(test),
                   "C": best_c, "dev_by_C": picks, "test": s, "metrics": metrics, "majority": maj,
                   "seconds": round(time.time() - t0, 1), "cpu": cpu, "kernel": platform.release(),
                   "torch": torch.__version__}
            results.append(row)
            print(f"{task} {kind}: test {s:.3f} (majority {maj:.3f}; C {best_c}, dev {picks[best_c]:.3f}; "
                  f"{len(train)} train / {len(test)} test rows; {row['seconds']}s)", flush=True)
    json.dump(results, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
