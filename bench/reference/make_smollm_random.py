#!/usr/bin/env python3
"""Creates models/smollm-135m-random: a causal LM of SmolLM-135M's shape with random weights, for
`mpt bench` and bench/reference/peft_bench.py (no model hub is reachable from the build machines).

Shape = HuggingFaceTB/SmolLM-135M (Llama layout): hidden 576, 30 layers, 9 attention heads of
width 64 with 3 key/value heads (grouped-query attention, 3 query heads per KV head),
intermediate (SwiGLU) 1536, vocab 49152, lm head tied to the input embeddings, rope_theta 10000
(no rope scaling), rms_norm_eps 1e-5, max_position_embeddings 2048, no attention/MLP biases,
bos = eos = 0 (`<|endoftext|>`), no pad_token_id (mpt then pads with eos_token_id, 0).
134.5 M parameters. Weights: `LlamaForCausalLM(config)` with transformers' own init
(normal(0, initializer_range = 0.02), RMSNorm weights 1) from a fixed seed -- values are irrelevant
to a timing benchmark; the shapes and the layout are what count. Saved with save_pretrained
(model.safetensors, fp32, ~0.54 GB: the tied lm head is stored once, as model.embed_tokens.weight).

Tokenizer: both `mpt bench` and the reference need a tokenizer.json only to turn the two label
strings into ids (the inputs are random ids drawn from the model's vocab_size, not from the
tokenizer). bench.rs tokenizes the sst2 label strings "negative" and "positive" on their own, with
special tokens (mpt_models::TextTokenizer::encode_rows -> tokenizers' encode(text, true)), and for
a causal LM appends those ids to each row's input; the label length sets how many positions the
loss and the rank classification read. We build a byte-level BPE tokenizer.json laid out like
SmolLM's (GPT-2 style): the 17 SmolLM special tokens at ids 0..16 (`<|endoftext|>`,
`<|im_start|>`, `<|im_end|>`, `<repo_name>`, ...), the 256 byte-level symbols at ids 17..272
(GPT-2's bytes_to_unicode order), then the merge chains that make "negative" and "positive"
single tokens (n+e, ne+g, ..., negativ+e) followed by the merges Ġ+negative and Ġ+positive (so
" negative" and " positive" are single tokens too), then inert filler pieces
(`<filler_NNNNN>`, reachable by no merge) up to exactly 49152 entries. Pre-tokenizer
Sequence[Digits(individual_digits), ByteLevel(add_prefix_space=False)], ByteLevel decoder and
post-processor: no BOS/EOS is added, as with SmolLM's tokenizer. So each label is 1 token:
"negative" -> [279], "positive" -> [286] (" negative" -> [287], " positive" -> [288]; these ids
are this file's, not the real vocabulary's). A common English word is one token in a 49k
GPT-2-style BPE, so 1 token per label is what SmolLM's real tokenizer is expected to give; the
real SmolLM vocabulary is not available on the build machines, so that count is an assumption,
not a check. Other text falls
back to single bytes (there are no other merges); only the label strings matter here.

Usage (from the repository root):
    .venv/bin/python bench/reference/make_smollm_random.py [--out models/smollm-135m-random] [--force]
Idempotent: does nothing when the folder already has config.json, model.safetensors and
tokenizer.json (unless --force).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VOCAB = 49152
SEED = 20251204
# SmolLM-135M's special tokens, ids 0..16.
SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<repo_name>",
    "<reponame>",
    "<file_sep>",
    "<filename>",
    "<gh_stars>",
    "<issue_start>",
    "<issue_comment>",
    "<issue_closed>",
    "<jupyter_start>",
    "<jupyter_text>",
    "<jupyter_code>",
    "<jupyter_output>",
    "<jupyter_script>",
    "<empty_output>",
]
# Words made single tokens by merge chains, with and without a leading space (byte-level "Ġ").
WORDS = ["negative", "positive"]
SPACE = "\u0120"
LABELS = ["negative", "positive"]  # mpt_data's sst2 label strings, as bench.rs tokenizes them


def bytes_to_unicode() -> list[str]:
    """GPT-2's byte -> printable-character table, in byte order 0..255."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def build_tokenizer_json() -> str:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    vocab: dict[str, int] = {}
    for tok in SPECIALS:
        vocab[tok] = len(vocab)
    for ch in bytes_to_unicode():
        vocab[ch] = len(vocab)
    merges: list[tuple[str, str]] = []
    for word in WORDS:
        # left-to-right chain: w0 w1 -> w0w1, w0w1 w2 -> w0w1w2, ...
        piece = word[0]
        for ch in word[1:]:
            merges.append((piece, ch))
            piece += ch
            if piece not in vocab:
                vocab[piece] = len(vocab)
    for word in WORDS:
        # then "Ġ" + word -> "Ġword" (as GPT-2-style BPEs spell a word after a space)
        merges.append((SPACE, word))
        vocab[SPACE + word] = len(vocab)
    while len(vocab) < VOCAB:
        vocab[f"<filler_{len(vocab):05d}>"] = len(vocab)
    assert len(vocab) == VOCAB
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=None, fuse_unk=False, byte_fallback=False))
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    assert tk.get_vocab_size(with_added_tokens=True) == VOCAB, tk.get_vocab_size(with_added_tokens=True)
    return tk.to_str()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "models" / "smollm-135m-random")
    ap.add_argument("--force", action="store_true", help="rebuild even if the folder is complete")
    args = ap.parse_args()
    out: Path = args.out
    needed = ["config.json", "model.safetensors", "tokenizer.json"]
    if not args.force and all((out / n).is_file() for n in needed):
        print(f"{out} already complete; nothing to do (--force rebuilds)")
        return 0

    import torch
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        head_dim=64,
        hidden_act="silu",
        max_position_embeddings=2048,
        initializer_range=0.02,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        rope_scaling=None,
        attention_bias=False,
        attention_dropout=0.0,
        mlp_bias=False,
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=None,
    )
    model = LlamaForCausalLM(config).eval()
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), "lm head not tied"
    model.save_pretrained(out, safe_serialization=True)

    (out / "tokenizer.json").write_text(build_tokenizer_json(), encoding="utf-8")
    tok_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 2048,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n", encoding="utf-8")
    special_map = {k: "<|endoftext|>" for k in ("bos_token", "eos_token", "unk_token")}
    (out / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n", encoding="utf-8")

    # Self-checks: vocab size, one token per label (no BOS/EOS added), both libraries agree.
    tk = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert tk.get_vocab_size(with_added_tokens=True) == VOCAB, tk.get_vocab_size(with_added_tokens=True)
    got = {lab: tk.encode(lab, add_special_tokens=True).ids for lab in LABELS}
    spaced = {f" {lab}": tk.encode(f" {lab}", add_special_tokens=True).ids for lab in LABELS}
    assert got == {"negative": [279], "positive": [286]}, got
    assert spaced == {" negative": [287], " positive": [288]}, spaced
    for text in (*LABELS, " negative", "a b"):
        assert tk.decode(tk.encode(text).ids) == text, text
    hf = AutoTokenizer.from_pretrained(out)
    assert [hf(lab)["input_ids"] for lab in LABELS] == [got[lab] for lab in LABELS], [hf(lab) for lab in LABELS]
    n = sum(p.numel() for p in model.parameters())
    print(
        f"wrote {out}: SmolLM-135M-shaped random LlamaForCausalLM, {n / 1e6:.1f}M parameters, vocab {VOCAB}; "
        f"labels {got}, with a leading space {spaced}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
