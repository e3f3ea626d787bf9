#!/usr/bin/env python3
"""PyTorch + PEFT reference for `mpt bench`: the same timed steps on the same model folder.

Mirrors crates/mpt-train/src/bench.rs (see bench/reference/README.md for every difference):

- frozen backbone (requires_grad False, eval mode: no dropout), float32;
- synthetic inputs: every row has exactly --seq-len random token ids drawn uniformly from
  [max(vocab/4, 5), vocab) (vocab = the model config's vocab_size), attention mask all ones, no
  padding, no special tokens; row i has label i % 2 and (distill) task i % 3;
- labels "negative", "positive" (the sst2 verbalizer / target strings), tokenized with the
  model folder's tokenizer. BERT: embedded once by the frozen model, mean-pooled over their tokens,
  L2-normalised; score = cos(mean-pool of the prompted input's own positions, label) / 0.05.
  T5: text-to-text, teacher-forced cross-entropy on the label ids (with </s>).
  Causal LMs (model_type llama / qwen2; PEFT's CAUSAL_LM): each row is the S input ids followed by
  its label's ids (tokenizer.json through `tokenizers`, special tokens, at most 16), right-padded
  with pad_token_id / eos_token_id / 0 (llama.rs); the lm head runs only at the positions whose
  next-token logits predict the label tokens (logits_to_keep), loss = cross-entropy on the label
  tokens, averaged over them;
- stages:
  teacher  PEFT PromptTuningConfig (FEATURE_EXTRACTION + AutoModel for BERT, SEQ_2_SEQ_LM +
           AutoModelForSeq2SeqLM for T5, CAUSAL_LM + AutoModelForCausalLM for causal LMs), task
           CE, AdamW, clip 1.0, step;
  adapt    PEFT MultitaskPromptTuningConfig(num_tasks=1, num_ranks=1): P* ∘ (u vᵀ), task CE;
  distill  MultitaskPromptTuningConfig(num_tasks=3), row i -> task i % 3,
           loss = CE + 0.9 * (KL(teacher‖student, T=1) + hidden MSE), the teacher pass using
           per-row frozen teacher prompts [3, l, d] in the same step under torch.no_grad()
           (causal LMs: KL over the vocabulary and MSE of the final-norm hidden states, both at
           the label positions);
  eval     forward only under torch.inference_mode() with the plain prompt (BERT: verbalizer
           argmax; T5: rank classification, encoder once, decoder over the B x 2 (row, label) pairs;
           causal LMs: rank classification, one prompted forward over the B x 2 rows input + label,
           summed log-probability of the label tokens);
- optimizer: torch.optim.AdamW(lr 0.01, betas (0.9, 0.999), eps 1e-8, weight_decay 1e-4) — burn's
  `AdamWConfig::new().with_epsilon(1e-8)` as bench.rs uses it — with
  torch.nn.utils.clip_grad_norm_(…, 1.0) before each step;
- a step is timed from the forward to after the optimizer step, including two host syncs as in
  bench.rs: `loss.item()` before backward and the sum of the prompt parameter after the step;
  batches are built before the clock starts. Median/mean over --steps timed steps after --warmup
  untimed ones; examples/s and tokens/s at the median; peak RSS from getrusage(ru_maxrss).

How the multitask prompt reaches the model (PEFT limitation): PeftModelForFeatureExtraction.forward
calls get_prompt(batch_size) without task_ids, which MultitaskPromptEmbedding rejects. For BERT
adapt/distill we therefore call the PEFT model's own get_prompt(batch_size, task_ids) (the
MultitaskPromptEmbedding forward: P*[idx] * (u[task] @ v[task])) and then do exactly what
PeftModelForFeatureExtraction.forward does with it: prepend it to the word embeddings, extend the
attention mask with ones, and run the base BertModel on inputs_embeds (token types all 0, positions
0..l+S-1). T5 uses PeftModelForSeq2SeqLM.forward(task_ids=…) directly. Causal LMs use
PeftModelForCausalLM.forward(task_ids=…, logits_to_keep=positions) directly (it passes task_ids to
get_prompt); the loss is computed here rather than with `labels=`, which would make transformers
compute logits at every position (work mpt does not do) — checked equal to the `labels=` loss.

Usage:
  .venv/bin/python bench/reference/peft_bench.py --model models/all-MiniLM-L6-v2 --stage teacher \
      --prompt-len 100 --batch 8 --seq-len 128 --steps 10 [--warmup 2] [--device cpu] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

LABELS = ["negative", "positive"]  # mpt_data's SENTIMENT labels of sst2
CAUSAL_TYPES = ("llama", "qwen2")  # mpt's causal-LM layouts (crates/mpt-models/src/llama.rs)
MAX_TARGET = 16  # mpt_train::data::Lengths::default().max_target: label ids are truncated to it
TAU = 0.05  # HeadConfig::default().tau
LAMBDA = 0.9  # distill weight of KL + MSE in bench.rs
KL_TEMPERATURE = 1.0
LR = 0.01
WEIGHT_DECAY = 1e-4  # burn AdamWConfig default, unchanged in bench.rs
EPS = 1e-8
CLIP = 1.0
INIT_RANGE = 0.05  # prompts drawn from U(-0.05, 0.05) as in bench.rs; u, v = 1


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="PyTorch + PEFT reference for `mpt bench`.")
    ap.add_argument("--model", required=True, type=Path, help="Hugging Face model folder")
    ap.add_argument("--stage", required=True, choices=["teacher", "distill", "adapt", "eval"])
    ap.add_argument("--prompt-len", type=int, default=100)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed warm-up steps")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's default)")
    ap.add_argument(
        "--attn-implementation",
        default=None,
        help="transformers attention backend (eager, sdpa); default: transformers' default for the model",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if min(args.steps, args.batch, args.seq_len, args.prompt_len) <= 0:
        ap.error("steps, batch, seq_len and prompt_len must be positive")
    if args.warmup < 0:
        ap.error("warmup must be zero or positive")
    return args


def peak_rss_mb() -> float:
    # Linux: ru_maxrss in KiB (the same high-water mark as /proc/self/status VmHWM).
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / (1024.0 * 1024.0)


def current_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def main(argv=None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

    import peft
    import torch
    import torch.nn.functional as F
    import transformers
    from peft import (
        MultitaskPromptTuningConfig,
        MultitaskPromptTuningInit,
        PromptTuningConfig,
        PromptTuningInit,
        TaskType,
        get_peft_model,
    )
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer
    from transformers.modeling_outputs import BaseModelOutput

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    rss_after_import = current_rss_mb()  # interpreter + torch/transformers/peft, before the model
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch.cuda.is_available() is False", file=sys.stderr)
        return 2

    config = AutoConfig.from_pretrained(args.model)
    arch = "t5" if config.model_type == "t5" else "causal" if config.model_type in CAUSAL_TYPES else "bert"
    if arch == "bert" and config.model_type not in ("bert",):
        print(f"note: model_type {config.model_type!r} is treated as BERT-family", file=sys.stderr)
    # Causal LMs: the label ids come from tokenizer.json through `tokenizers`, as mpt reads them
    # (mpt_models::TextTokenizer::encode_rows), not through AutoTokenizer.
    tokenizer = AutoTokenizer.from_pretrained(args.model) if arch != "causal" else None
    load_kw = {"dtype": torch.float32}
    if args.attn_implementation:
        load_kw["attn_implementation"] = args.attn_implementation
    if arch == "t5":
        base = AutoModelForSeq2SeqLM.from_pretrained(args.model, **load_kw)
        d = config.d_model
    elif arch == "causal":
        base = AutoModelForCausalLM.from_pretrained(args.model, **load_kw)
        d = config.hidden_size
    else:
        # No pooler: mpt's BERT forward has none and the verbalizer never reads it.
        base = AutoModel.from_pretrained(args.model, add_pooling_layer=False, **load_kw)
        d = config.hidden_size
        if args.prompt_len + args.seq_len > config.max_position_embeddings:
            print(
                f"error: sequence length {args.prompt_len + args.seq_len} (prompt included) exceeds "
                f"max_position_embeddings {config.max_position_embeddings}",
                file=sys.stderr,
            )
            return 2
    base.to(device)
    base.eval()
    for p in base.parameters():
        p.requires_grad_(False)
    attn_impl = getattr(base.config, "_attn_implementation", None)

    l, b, s = args.prompt_len, args.batch, args.seq_len
    stage = args.stage
    tasks = 3 if stage == "distill" else 1
    vocab = config.vocab_size
    lo = max(vocab // 4, 5)
    gen = torch.Generator().manual_seed(args.seed)

    # ---- heads -------------------------------------------------------------------------------
    label_table = None  # BERT: [C, d]
    label_ids: list[list[int]] = []  # T5: per label, with </s>
    if arch == "bert":
        enc = tokenizer(LABELS, padding=True, truncation=True, max_length=32, return_tensors="pt").to(device)
        with torch.no_grad():
            h = base(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                     token_type_ids=enc.get("token_type_ids")).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
            label_table = F.normalize((h * m).sum(1) / m.sum(1).clamp_min(1e-9), dim=-1)
    elif arch == "causal":
        from tokenizers import Tokenizer

        tk = Tokenizer.from_file(str(args.model / "tokenizer.json"))
        tk.no_padding()
        tk.enable_truncation(max_length=MAX_TARGET, strategy="longest_first", direction="right")
        label_ids = [tk.encode(lab, add_special_tokens=True).ids for lab in LABELS]
        if any(len(ids) == 0 for ids in label_ids):
            print("error: a label tokenizes to nothing", file=sys.stderr)
            return 2
    else:
        label_ids = [tokenizer(lab, truncation=True, max_length=16)["input_ids"] for lab in LABELS]
        if any(len(ids) == 0 for ids in label_ids):
            print("error: a label tokenizes to nothing", file=sys.stderr)
            return 2
    t_len = max((len(x) for x in label_ids), default=1)
    pad_id = getattr(config, "pad_token_id", 0) or 0
    start_id = config.decoder_start_token_id if arch == "t5" and config.decoder_start_token_id is not None else pad_id
    if arch == "causal":
        # LlamaConfig::pad_id in llama.rs: pad_token_id, else eos_token_id (the first of a list), else 0.
        eos = config.eos_token_id[0] if isinstance(config.eos_token_id, (list, tuple)) else config.eos_token_id
        pad_id = config.pad_token_id if config.pad_token_id is not None else eos if eos is not None else 0
        if l + s + t_len > config.max_position_embeddings:
            print(
                f"error: sequence length {l + s + t_len} (prompt and label included) exceeds "
                f"max_position_embeddings {config.max_position_embeddings}",
                file=sys.stderr,
            )
            return 2

    # ---- PEFT model ----------------------------------------------------------------------------
    task_type = {"t5": TaskType.SEQ_2_SEQ_LM, "causal": TaskType.CAUSAL_LM}.get(arch, TaskType.FEATURE_EXTRACTION)
    # num_transformer_submodules=1: the prompt goes in front of the encoder input only (PEFT's
    # default for SEQ_2_SEQ_LM is 2, which allocates a second, decoder-side block of l rows).
    if stage in ("teacher", "eval"):
        pcfg = PromptTuningConfig(
            task_type=task_type,
            num_virtual_tokens=l,
            token_dim=d,
            num_transformer_submodules=1,
            prompt_tuning_init=PromptTuningInit.RANDOM,
        )
    else:
        pcfg = MultitaskPromptTuningConfig(
            task_type=task_type,
            num_virtual_tokens=l,
            token_dim=d,
            num_transformer_submodules=1,
            num_tasks=tasks,
            num_ranks=1,
            prompt_tuning_init=MultitaskPromptTuningInit.RANDOM,
        )
    model = get_peft_model(base, pcfg)
    model.eval()  # PEFT leaves the wrapper in train mode; dropout must stay off everywhere
    encoder = model.prompt_encoder[model.active_adapter]
    with torch.no_grad():
        encoder.embedding.weight.uniform_(-INIT_RANGE, INIT_RANGE, generator=gen_on(device, args.seed + 1, torch))
        if stage in ("distill", "adapt"):
            encoder.prefix_task_cols.fill_(1.0)
            encoder.prefix_task_rows.fill_(1.0)
    params = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in params)
    expected = l * d if stage in ("teacher", "eval") else l * d + tasks * l + tasks * d
    assert n_trainable == expected, (n_trainable, expected)
    optim = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.999), eps=EPS, weight_decay=WEIGHT_DECAY)
    teachers = None
    if stage == "distill":
        teachers = (torch.rand(tasks, l, d, generator=gen) * (2 * INIT_RANGE) - INIT_RANGE).to(device)
    word_embeddings = model.word_embeddings

    # Decoder final hidden states (after the final norm, before the d^-0.5 scaling) = what mpt's
    # T5 head compares in distillation; captured with a hook so nothing is recomputed.
    captured = {}
    if arch == "t5":
        base.get_decoder().register_forward_hook(lambda _m, _i, out: captured.__setitem__("hidden", out[0]))
    # Causal LMs: the final hidden states (after the final norm) [B, l+S+T, d], from which the
    # target positions are taken — what mpt's causal-LM head compares in distillation.
    if arch == "causal":
        base.model.norm.register_forward_hook(lambda _m, _i, out: captured.__setitem__("hidden", out))

    # ---- synthetic data ------------------------------------------------------------------------
    def shifted(ids_y):
        """Decoder inputs 1..T as bench.rs / eval.rs build them: position j holds target j-1, pad
        beyond (so a shorter label's EOS is also fed at its first masked position, exactly what
        transformers' shift-right of -100-padded labels gives)."""
        return [ids_y[j - 1] if j - 1 < len(ids_y) else pad_id for j in range(1, t_len)]

    def causal_rows(pairs):
        """data.rs `causal_rows`: each (input, target) pair as one row, input then target,
        right-padded with the pad id; targets [n, T] (pad beyond a row's target), their mask, and
        the positions whose next-token logits predict them (input length - 1 + j, clamped to the
        row's last target token), prompt rows not counted."""
        width = max(len(i) + len(t) for i, t in pairs)
        t_max = max(len(t) for _, t in pairs)
        ids, mask, tgt, tmask, pos = [], [], [], [], []
        for inp, target in pairs:
            n = len(inp) + len(target)
            ids.append(list(inp) + list(target) + [pad_id] * (width - n))
            mask.append([1] * n + [0] * (width - n))
            tgt.append([target[j] if j < len(target) else pad_id for j in range(t_max)])
            tmask.append([1.0 if j < len(target) else 0.0 for j in range(t_max)])
            pos.append([len(inp) - 1 + min(j, len(target) - 1) for j in range(t_max)])
        return {
            "input_ids": torch.tensor(ids, device=device),
            "attention_mask": torch.tensor(mask, device=device),
            "target_ids": torch.tensor(tgt, device=device),
            "target_mask": torch.tensor(tmask, device=device),
            # positions in the prompted sequence (l prompt rows in front)
            "positions": torch.tensor(pos, device=device) + l,
        }

    def synthetic_batch():
        ids = torch.randint(lo, vocab, (b, s), generator=gen)
        if arch == "causal":
            # bench.rs: the S input tokens, then the row's label string.
            batch = causal_rows([(ids[i].tolist(), label_ids[i % 2]) for i in range(b)])
            batch["inputs"] = ids.to(device)  # [B, S], for eval (rank classification rows)
            batch["labels"] = torch.tensor([i % 2 for i in range(b)], device=device)
            batch["tasks"] = torch.tensor([i % tasks for i in range(b)], device=device)
            return batch
        batch = {
            "input_ids": ids.to(device),
            "attention_mask": torch.ones(b, s, dtype=torch.long, device=device),
            "labels": torch.tensor([i % 2 for i in range(b)], device=device),
            "tasks": torch.tensor([i % tasks for i in range(b)], device=device),
        }
        if arch == "t5":
            tgt = torch.full((b, t_len), -100, dtype=torch.long)
            dec = torch.full((b, t_len), pad_id, dtype=torch.long)
            mask = torch.zeros(b, t_len)
            for i in range(b):
                ids_y = label_ids[i % 2]
                tgt[i, : len(ids_y)] = torch.tensor(ids_y)
                dec[i, 1:] = torch.tensor(shifted(ids_y))
                dec[i, 0] = start_id
                mask[i, : len(ids_y)] = 1.0
            batch["target_ids"] = tgt.to(device)  # -100 where mpt's target mask is 0
            batch["decoder_input_ids"] = dec.to(device)
            batch["target_mask"] = mask.to(device)
        return batch

    # ---- heads / losses (head.rs) --------------------------------------------------------------
    def masked_mean(values, mask):
        return (values * mask).sum() / mask.sum().clamp_min(1.0)

    def verbalizer(hidden, mask):
        """hidden [B, l+S, d] -> logits [B, 1, C], input hidden [B, S, d]."""
        inp = hidden[:, l:, :]
        m = mask.unsqueeze(-1).to(inp.dtype)
        pooled = F.normalize((inp * m).sum(1) / m.sum(1).clamp_min(1e-9), dim=-1)
        logits = (pooled @ label_table.T / TAU).unsqueeze(1)
        return logits, inp

    def bert_with_prompt(prompts, batch):
        """What PeftModelForFeatureExtraction.forward does, with an explicit prompt [B, l, d]."""
        embeds = torch.cat((prompts.to(base.dtype), word_embeddings(batch["input_ids"])), dim=1)
        mask = torch.cat((torch.ones(b, l, dtype=batch["attention_mask"].dtype, device=device),
                          batch["attention_mask"]), dim=1)
        return base(inputs_embeds=embeds, attention_mask=mask).last_hidden_state

    def t5_with_prompt(prompts, batch):
        embeds = torch.cat((prompts.to(base.dtype), word_embeddings(batch["input_ids"])), dim=1)
        mask = torch.cat((torch.ones(b, l, dtype=batch["attention_mask"].dtype, device=device),
                          batch["attention_mask"]), dim=1)
        out = base(inputs_embeds=embeds, attention_mask=mask,
                   decoder_input_ids=batch["decoder_input_ids"], use_cache=False)
        return out.logits, captured["hidden"]

    def at_positions(hidden, positions):
        """hidden [B, N, d] at positions [B, T] -> [B, T, d] (head.rs: gather before the lm head)."""
        return torch.take_along_dim(hidden, positions.unsqueeze(-1), dim=1)

    def ce_causal(logits, batch):
        """head.rs cross_entropy: token CE on the label tokens, mean over the counted positions."""
        tok = F.cross_entropy(logits.flatten(0, 1), batch["target_ids"].flatten(), reduction="none")
        return masked_mean(tok.view_as(batch["target_mask"]), batch["target_mask"])

    def ce_bert(logits, labels):
        return F.cross_entropy(logits[:, 0, :], labels)

    def kl(teacher, student, mask):
        lt = F.log_softmax(teacher / KL_TEMPERATURE, dim=-1)
        ls = F.log_softmax(student / KL_TEMPERATURE, dim=-1)
        return masked_mean((lt.exp() * (lt - ls)).sum(-1), mask)

    def mse(teacher, student, mask):
        return masked_mean((student - teacher).pow(2).sum(-1) / student.shape[-1], mask)

    def train_loss(batch):
        if arch == "bert":
            if stage == "teacher":
                hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            else:
                prompts = model.get_prompt(batch_size=b, task_ids=batch["tasks"])
                hidden = bert_with_prompt(prompts, batch)
            logits, inp = verbalizer(hidden, batch["attention_mask"])
            loss = ce_bert(logits, batch["labels"])
            if stage == "distill":
                with torch.no_grad():
                    t_logits, t_inp = verbalizer(bert_with_prompt(teachers[batch["tasks"]], batch),
                                                 batch["attention_mask"])
                ones = torch.ones(b, 1, device=device)
                hmask = batch["attention_mask"].to(inp.dtype)
                loss = loss + LAMBDA * (kl(t_logits, logits, ones) + mse(t_inp, inp, hmask))
            return loss
        kw = {"task_ids": batch["tasks"]} if stage != "teacher" else {}
        if arch == "causal":
            # PeftModelForCausalLM.forward (prompt in front of the input embeddings, mask extended
            # with ones); logits_to_keep = the target positions, so the lm head runs on those
            # positions only, as in mpt (transformers' `labels=` loss would need logits everywhere).
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        logits_to_keep=batch["positions"], use_cache=False, **kw)
            loss = ce_causal(out.logits, batch)
            if stage == "distill":
                s_logits, s_hidden = out.logits, at_positions(captured["hidden"], batch["positions"])
                with torch.no_grad():
                    embeds = torch.cat((teachers[batch["tasks"]].to(base.dtype), word_embeddings(batch["input_ids"])), dim=1)
                    mask = torch.cat((torch.ones(b, l, dtype=batch["attention_mask"].dtype, device=device),
                                      batch["attention_mask"]), dim=1)
                    t_logits = base(inputs_embeds=embeds, attention_mask=mask, logits_to_keep=batch["positions"],
                                    use_cache=False).logits
                    t_hidden = at_positions(captured["hidden"], batch["positions"])
                tmask = batch["target_mask"]
                loss = loss + LAMBDA * (kl(t_logits, s_logits, tmask) + mse(t_hidden, s_hidden, tmask))
            return loss
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    labels=batch["target_ids"], use_cache=False, **kw)
        loss = out.loss  # CrossEntropyLoss(ignore_index=-100): mean over the counted target tokens
        if stage == "distill":
            s_logits, s_hidden = out.logits, captured["hidden"]
            with torch.no_grad():
                t_logits, t_hidden = t5_with_prompt(teachers[batch["tasks"]], batch)
            tmask = batch["target_mask"]
            loss = loss + LAMBDA * (kl(t_logits, s_logits, tmask) + mse(t_hidden, s_hidden, tmask))
        return loss

    # Eval data: fixed once (bench.rs encodes B examples once and re-uses them every step).
    eval_batch = synthetic_batch() if stage == "eval" else None
    if arch == "t5" and stage == "eval":
        c = len(label_ids)
        dec = torch.full((c, t_len), pad_id, dtype=torch.long)
        tgt = torch.full((c, t_len), pad_id, dtype=torch.long)
        msk = torch.zeros(c, t_len)
        for k, ids_y in enumerate(label_ids):
            dec[k, 1:] = torch.tensor(shifted(ids_y))
            dec[k, 0] = start_id
            tgt[k, : len(ids_y)] = torch.tensor(ids_y)
            msk[k, : len(ids_y)] = 1.0
        rank_dec = dec.repeat(b, 1).to(device)  # row (i, k) = example i, label k
        rank_tgt = tgt.repeat(b, 1).to(device)
        rank_mask = msk.repeat(b, 1).to(device)
        rank_rows = torch.arange(b, device=device).repeat_interleave(c)
    if arch == "causal" and stage == "eval":
        # eval.rs rank_continuations: one row per (example, label), example-major, built once.
        inputs = eval_batch["inputs"].tolist()
        rank = causal_rows([(inputs[i], ids_y) for i in range(b) for ids_y in label_ids])

    def eval_step(batch):
        with torch.inference_mode():
            if arch == "bert":
                hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
                logits, _ = verbalizer(hidden, batch["attention_mask"])
                return logits[:, 0, :].argmax(-1).tolist()
            if arch == "causal":
                out = model(input_ids=rank["input_ids"], attention_mask=rank["attention_mask"],
                            logits_to_keep=rank["positions"], use_cache=False)
                logp = F.log_softmax(out.logits, dim=-1).gather(2, rank["target_ids"].unsqueeze(-1)).squeeze(-1)
                scores = (logp * rank["target_mask"]).sum(1).reshape(b, len(label_ids))
                return scores.argmax(-1).tolist()
            prompts = model.get_prompt(batch_size=b)
            embeds = torch.cat((prompts.to(base.dtype), word_embeddings(batch["input_ids"])), dim=1)
            mask = torch.cat((torch.ones(b, l, dtype=torch.long, device=device), batch["attention_mask"]), dim=1)
            enc = base.get_encoder()(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
            out = base(
                encoder_outputs=BaseModelOutput(last_hidden_state=enc[rank_rows]),
                attention_mask=mask[rank_rows],
                decoder_input_ids=rank_dec,
                use_cache=False,
            )
            logp = F.log_softmax(out.logits, dim=-1).gather(2, rank_tgt.unsqueeze(-1)).squeeze(-1)
            scores = (logp * rank_mask).sum(1).reshape(b, len(label_ids))
            return scores.argmax(-1).tolist()

    # ---- timed loop ----------------------------------------------------------------------------
    timings = []
    last_loss = None
    for step in range(args.warmup + args.steps):
        batch = synthetic_batch() if stage != "eval" else eval_batch
        t0 = time.perf_counter()
        if stage == "eval":
            eval_step(batch)
        else:
            loss = train_loss(batch)
            last_loss = loss.item()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, CLIP)
            optim.step()
            optim.zero_grad(set_to_none=True)
            encoder.embedding.weight.detach().sum().item()
        if step >= args.warmup:
            timings.append((time.perf_counter() - t0) * 1000.0)

    median = statistics.median(timings)
    mean = sum(timings) / len(timings)
    result = {
        "impl": "pytorch+peft",
        "stage": stage,
        "step_ms_median": median,
        "step_ms_mean": mean,
        "examples_per_sec": b / (median / 1000.0),
        "tokens_per_sec": b * s / (median / 1000.0),
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_import_mb": rss_after_import,
        "steps_ms": timings,
        "device": args.device,
        "model": str(args.model),
        "arch": arch,
        "prompt_len": l,
        "batch": b,
        "seq_len": s,
        "steps": args.steps,
        "warmup": args.warmup,
        "threads": threads,
        "attn_implementation": attn_impl,
        "trainable_params": n_trainable,
        "last_loss": last_loss,
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
        },
    }
    if device.type == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / (1024.0 * 1024.0)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"peft bench {stage.capitalize()} on {args.model} ({args.device}, {threads} threads): "
            f"prompt {l}, batch {b}, seq {s}, {args.steps} steps"
        )
        print(f"  step (median): {median:.1f} ms (mean {mean:.1f} ms)")
        print(f"  examples/s:    {result['examples_per_sec']:.2f}")
        print(f"  tokens/s:      {result['tokens_per_sec']:.0f}")
        print(f"  peak RSS:      {result['peak_rss_mb']:.0f} MiB")
    return 0


def gen_on(device, seed, torch):
    """A generator on `device` (uniform_ on a CUDA tensor needs a CUDA generator)."""
    return torch.Generator(device=device).manual_seed(seed)


if __name__ == "__main__":
    sys.exit(main())
