#!/usr/bin/env python3
"""Creates models/t5-base-random: a T5-Base-shaped model with random weights, for `mpt bench`
and bench/reference/peft_bench.py (no model hub is reachable from the build machines).

Shape = the original t5-base (v1.0 layout): d_model 768, d_kv 64, 12 heads, d_ff 3072, 12 encoder +
12 decoder layers, ReLU FFN, lm head tied to `shared` with the decoder output scaled by
d_model**-0.5, vocab 32128, 32 relative-attention buckets (max distance 128), pad 0, eos 1,
decoder start 0. Weights: transformers' own T5 init from a fixed seed (values are irrelevant to a
timing benchmark; the shapes and the layout are what count). Saved with save_pretrained
(model.safetensors, fp32, ~0.9 GB).

Tokenizer: both `mpt bench` and the reference need a tokenizer.json only to turn the two label
strings "negative"/"positive" into target ids (the inputs are random ids drawn from the model's
vocab_size, not from the tokenizer). We take the tiny committed T5 unigram tokenizer
(tests/fixtures/t5-v1_0-tiny/tokenizer.json, 400 pieces: <pad>=0, </s>=1, <unk>=2, ...) and extend
it deterministically to exactly 32128 pieces: ids 400..32127 are inert filler pieces
(`<filler_NNNNN>`, score -100), except that "▁positive" sits at id 1465 and "▁negative" at id
2841 -- the ids they have in the real t5-base SentencePiece vocabulary -- with score 0 (the best
score), so each label tokenizes to one piece + </s>, i.e. [2841, 1] and [1465, 1] as with the real
t5-base tokenizer. Target length (2) and the decoder's work per label therefore match T5-Base.
(With the unextended tiny tokenizer each label would be 8 tokens, which would make the decoder side
4x longer than with the real t5-base.)

Usage (from the repository root):
    .venv/bin/python bench/reference/make_t5_base_random.py [--out models/t5-base-random] [--force]
Idempotent: does nothing when the folder already has config.json, model.safetensors and
tokenizer.json (unless --force).
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "fixtures" / "t5-v1_0-tiny"
VOCAB = 32128
SEED = 20251125
# ids of "▁positive" / "▁negative" in the real t5-base spiece.model
LABEL_PIECES = {1465: "\u2581positive", 2841: "\u2581negative"}


def build_tokenizer_json(tiny_path: Path) -> dict:
    tok = json.loads(tiny_path.read_text(encoding="utf-8"))
    model = tok["model"]
    assert model["type"] == "Unigram", model["type"]
    vocab = [list(p) for p in model["vocab"]]
    assert len(vocab) < min(LABEL_PIECES), len(vocab)
    pieces = {p for p, _ in vocab}
    for piece in LABEL_PIECES.values():
        assert piece not in pieces, piece
    for i in range(len(vocab), VOCAB):
        if i in LABEL_PIECES:
            vocab.append([LABEL_PIECES[i], 0.0])
        else:
            vocab.append([f"<filler_{i:05d}>", -100.0])
    assert len(vocab) == VOCAB
    out = copy.deepcopy(tok)
    out["model"]["vocab"] = vocab
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "models" / "t5-base-random")
    ap.add_argument("--force", action="store_true", help="rebuild even if the folder is complete")
    args = ap.parse_args()
    out: Path = args.out
    needed = ["config.json", "model.safetensors", "tokenizer.json"]
    if not args.force and all((out / n).is_file() for n in needed):
        print(f"{out} already complete; nothing to do (--force rebuilds)")
        return 0

    import torch
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    config = T5Config(
        vocab_size=VOCAB,
        d_model=768,
        d_kv=64,
        d_ff=3072,
        num_layers=12,
        num_decoder_layers=12,
        num_heads=12,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        dropout_rate=0.1,
        layer_norm_epsilon=1e-6,
        initializer_factor=1.0,
        feed_forward_proj="relu",
        tie_word_embeddings=True,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    model = T5ForConditionalGeneration(config).eval()
    model.save_pretrained(out, safe_serialization=True)

    tok_json = build_tokenizer_json(TINY / "tokenizer.json")
    (out / "tokenizer.json").write_text(json.dumps(tok_json, ensure_ascii=False), encoding="utf-8")
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(TINY / name, out / name)

    # Self-checks: vocab size, label ids as in t5-base, and that both libraries agree.
    tk = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert tk.get_vocab_size() == VOCAB, tk.get_vocab_size()
    got = {lab: tk.encode(lab).ids for lab in ("negative", "positive")}
    assert got == {"negative": [2841, 1], "positive": [1465, 1]}, got
    hf = AutoTokenizer.from_pretrained(out)
    assert [hf(lab)["input_ids"] for lab in ("negative", "positive")] == [[2841, 1], [1465, 1]]
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {out}: T5-Base-shaped random model, {n / 1e6:.1f}M parameters, vocab {VOCAB}; labels {got}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
