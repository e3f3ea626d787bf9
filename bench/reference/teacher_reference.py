#!/usr/bin/env python3
"""PyTorch re-implementation of one `mpt teacher` run on a BERT-family encoder, step for step.

`mpt teacher ... --trace DIR` writes DIR/trace.json (settings, label strings, the token ids of
every train and dev example as mpt tokenized them, and the example indices of every step) and
DIR/init.safetensors (the prompt, and the linear head if any, before the first step). This script
trains the same prompt from the same start on the same batches with transformers + torch and
evaluates dev accuracy at the same steps, so the two dev curves can be compared (scripts/
check_teacher_reference.py and docs/results/tuning/ do that).

What it does, as crates/mpt-train does it:
- frozen BertModel (eval mode, float32); the prompt [l, d] is prepended to the word embeddings
  (PEFT's prompt tuning), the attention mask extended with ones, token types 0 on the prompt rows
  and the input's own types after them, positions over the whole length (BertEmbeddings adds
  word + position + token-type embeddings, then LayerNorm);
- pool = mean of the last hidden states over the input's own tokens (prompt rows excluded),
  L2-normalised;
- verbalizer: every label string is embedded once by the frozen model ([CLS] label [SEP], mean
  over its tokens, L2-normalised) and logit = cos(pool, label) / tau;
  linear head: logit = pool @ W.T + b with W, b from init.safetensors (`classifier.0.*`);
- loss = mean cross-entropy; global-norm clipping of all trained tensors (max_grad_norm);
  torch.optim.AdamW(betas 0.9/0.999, eps 1e-8, weight_decay) with transformers' linear schedule
  with warm-up (lr 0 at step 0 when warm-up > 0);
- dev accuracy every eval_every steps and after the last step.

Usage:
  .venv/bin/python bench/reference/teacher_reference.py --model models/all-MiniLM-L6-v2 \
      --trace runs/x/trace [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--trace", required=True, type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, BertModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    trace = json.loads((args.trace / "trace.json").read_text())
    init = load_file(str(args.trace / "init.safetensors"))
    cfg = trace["config"]
    train_cfg = cfg["train"]
    head_cfg = cfg.get("head", {"kind": "verbalizer", "tau": 0.05})
    tau = float(head_cfg.get("tau", 0.05))

    model = BertModel.from_pretrained(str(args.model), add_pooling_layer=False)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    pad = model.config.pad_token_id or 0

    tok = AutoTokenizer.from_pretrained(str(args.model))
    enc = tok(list(trace["labels"]), padding=True, return_tensors="pt")
    with torch.no_grad():
        h = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                  token_type_ids=enc.get("token_type_ids")).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        table = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp_min(1e-9), dim=-1)

    prompt = torch.nn.Parameter(init["prompt_embeddings"].clone())
    params = [prompt]
    linear = "classifier.0.weight" in init
    if linear:
        weight = torch.nn.Parameter(init["classifier.0.weight"].clone())
        bias = torch.nn.Parameter(init["classifier.0.bias"].clone())
        params += [weight, bias]

    def batch(rows):
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        types = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            types[i, :n] = torch.tensor(r["token_type_ids"])
            mask[i, :n] = 1
        labels = torch.tensor([r["label"] for r in rows])
        return ids, types, mask, labels

    def logits(ids, types, mask):
        b = ids.shape[0]
        l = prompt.shape[0]
        words = model.embeddings.word_embeddings(ids)
        embeds = torch.cat([prompt.unsqueeze(0).expand(b, -1, -1), words], 1)
        full_mask = torch.cat([torch.ones((b, l), dtype=mask.dtype), mask], 1)
        full_types = torch.cat([torch.zeros((b, l), dtype=types.dtype), types], 1)
        hidden = model(inputs_embeds=embeds, attention_mask=full_mask, token_type_ids=full_types).last_hidden_state
        inp = hidden[:, l:]
        mk = mask.unsqueeze(-1).float()
        pool = torch.nn.functional.normalize((inp * mk).sum(1) / mk.sum(1).clamp_min(1e-9), dim=-1)
        if linear:
            return pool @ weight.T + bias
        return pool @ table.T / tau

    def dev_accuracy():
        rows = trace["dev"]
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
        correct = 0
        bs = int(train_cfg["eval_batch_size"])
        with torch.no_grad():
            for s in range(0, len(order), bs):
                chunk = [rows[i] for i in order[s:s + bs]]
                ids, types, mask, labels = batch(chunk)
                correct += int((logits(ids, types, mask).argmax(-1) == labels).sum())
        return correct / max(len(rows), 1)

    lr, n = float(train_cfg["learning_rate"]), int(train_cfg["max_steps"])
    w = train_cfg.get("warmup_steps")
    # TrainConfig::warmup: warmup_steps, else warmup_ratio of max_steps rounded half away from 0.
    w = int(w) if w is not None else int(float(train_cfg.get("warmup_ratio", 0.0)) * n + 0.5)
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=float(train_cfg["weight_decay"]))

    def lr_at(s):
        factor = s / max(w, 1) if s < w else max((n - s) / max(n - w, 1), 0.0)
        return lr * factor

    clip = train_cfg.get("max_grad_norm")
    every = int(train_cfg["eval_every"])
    losses, evals = [], []
    started = time.time()
    for s, idx in enumerate(trace["steps"]):
        ids, types, mask, labels = batch([trace["train"][i] for i in idx])
        loss = torch.nn.functional.cross_entropy(logits(ids, types, mask), labels)
        opt.zero_grad()
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(params, float(clip))
        for g in opt.param_groups:
            g["lr"] = lr_at(s)
        opt.step()
        losses.append([s + 1, loss.item()])
        if (s + 1) % every == 0 or s + 1 == n:
            evals.append([s + 1, dev_accuracy()])
            print(f"step {s + 1}: loss {loss.item():.4f} dev accuracy {evals[-1][1]:.4f}", file=sys.stderr)
    out = {"task": cfg["task"], "head": "linear" if linear else "verbalizer", "losses": losses, "evals": evals,
           "seconds": time.time() - started, "torch": torch.__version__}
    text = json.dumps(out)
    if args.json:
        args.json.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
