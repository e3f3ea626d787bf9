#!/usr/bin/env python3
"""End-to-end check that mpt's PEFT export/import interoperates with peft 0.21.2.

Run from the repository root after building the CLI (debug is enough):

    cargo build -p mpt-cli
    .venv/bin/python scripts/check_peft_export.py            # all fixture models (+ MiniLM if fetched)
    .venv/bin/python scripts/check_peft_export.py --models tests/fixtures/bert-tiny --keep

For every model folder it writes two mpt artifacts itself, exactly in the format of
crates/mpt-core/src/artifact.rs (tensors.safetensors + artifact.json; tensors_sha256 = sha256 of
the tensors file; id = sha256(tensor bytes || canonical JSON of `config`), the config holding only
ASCII strings and integers so that Python's `json.dumps(sort_keys=True, separators=(",", ":"))`
and serde_json agree):
  * a plain prompt (teacher, layout "prompt"), and
  * a multitask prompt P*, U, V (3 tasks, rank 2, layout "multitask").
Then, per artifact:
  1. `mpt inspect --json` verifies it (checksum, shapes) and reports the same l, d, r.
  2. `mpt export --format peft` -> `PeftModel.from_pretrained(base, export_dir)` must load
     without config warnings, and its outputs on a batch must equal `mpt model forward` with
     `soft_prompt` = the task's prompt (for the multitask layout: the prompt from
     `mpt export --format prompt --task NAME`, PEFT called with mixed `task_ids`), whole
     tensors, max abs diff <= --tol (1e-4):
       BERT: last_hidden_state [B, l+S, d] (prompt rows included) and the mean-pooled,
             L2-normalised sentence embedding. Single sentences and no token_type_ids are
             passed, so PEFT's dropping of token types (it ignores them when a prompt is
             present) plays no part.
       T5:   encoder_last_hidden_state [B, l+S, d] and lm_logits [B, T, V].
  3. `mpt import --format peft` of the export gives back bit-identical tensors.
Also checked: the ids Rust computes for `mpt export --format prompt` artifacts equal Python's
recomputation (canonical JSON agreement), and a PEFT-native seq2seq PROMPT_TUNING adapter
(num_transformer_submodules = 2, i.e. 2*l stored rows) imports with its first l rows and then
reproduces PEFT's outputs through `mpt model forward`.

peft 0.21.2 behaviours the script works around (and reports as NOTE lines):
  * PeftModelForFeatureExtraction.forward does not pass task_ids on (a BERT
    MULTITASK_PROMPT_TUNING adapter exported with the default FEATURE_EXTRACTION raises
    "task_ids cannot be None"; the script shows this). So the BERT multitask adapter is exported
    with --task-type CAUSAL_LM, whose wrapper runs the same prompt-tuning forward but passes
    task_ids, and loaded into AutoModelForCausalLM (BertLMHeadModel: the same bidirectional
    encoder plus an unused LM head); the last hidden state comes from output_hidden_states.
    SEQ_CLS / TOKEN_CLS would not load: PEFT then expects classifier weights in the adapter.
  * PeftModelForSeq2SeqLM with MULTITASK_PROMPT_TUNING and one transformer submodule drops
    decoder_input_ids, so the T5 multitask check passes labels (decoder ids shifted left);
    T5 derives the same decoder inputs from them.

Prints one PASS/FAIL line per check and exits non-zero if any check fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.numpy import load_file as np_load
from safetensors.numpy import save as np_save
from safetensors.numpy import save_file as np_save_file

import peft  # noqa: E402
import transformers  # noqa: E402

transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()
warnings.filterwarnings("ignore", category=FutureWarning)
from peft import PeftModel, PromptTuningConfig, get_peft_model  # noqa: E402
from transformers import (  # noqa: E402
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PreTrainedTokenizerFast,
)

REPO = Path(__file__).resolve().parent.parent
L = 5  # virtual tokens
RANK = 2
TASKS = ["alpha", "beta", "gamma"]
BERT_TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "a short one",
    "prompt tuning keeps the backbone frozen and learns a few vectors",
    "cats sleep",
]
T5_TEXTS = [
    "translate the sentence into a question please",
    "short input",
    "the cat sat on the mat and looked at the garden for a long time",
    "yes",
]
T5_TARGETS = ["a question", "ok", "the cat looked", "no"]


class Checker:
    def __init__(self, tol: float) -> None:
        self.tol = tol
        self.failures = 0

    def result(self, ok: bool, what: str, detail: str = "") -> bool:
        print(f"{'PASS' if ok else 'FAIL'}  {what}{'  ' + detail if detail else ''}", flush=True)
        if not ok:
            self.failures += 1
        return ok

    def close(self, what: str, got: np.ndarray, want: np.ndarray) -> bool:
        if got.shape != want.shape:
            return self.result(False, what, f"shape {got.shape} != {want.shape}")
        diff = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
        return self.result(diff <= self.tol, what, f"max abs diff {diff:.3e} (tol {self.tol:g}, shape {list(got.shape)})")

    def identical(self, what: str, got: np.ndarray, want: np.ndarray) -> bool:
        same = got.shape == want.shape and got.dtype == want.dtype and got.tobytes() == want.tobytes()
        return self.result(same, what, "bit-identical" if same else f"{got.dtype}{list(got.shape)} vs {want.dtype}{list(want.shape)}")

    def note(self, what: str) -> None:
        print(f"NOTE  {what}", flush=True)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc


def write_artifact(out: Path, kind: str, tasks: list[str], tensors: dict[str, np.ndarray], backbone: dict, config: dict) -> str:
    """Writes an mpt artifact following crates/mpt-core/src/artifact.rs; returns its id."""
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
    data = np_save(tensors)
    l, d = tensors["prompt_embeddings"].shape
    multitask = "prefix_task_cols" in tensors
    r = tensors["prefix_task_cols"].shape[2] if multitask else 0
    art_id = hashlib.sha256(data + canonical_json(config).encode()).hexdigest()
    meta = {
        "format": "mpt-artifact",
        "version": 1,
        "kind": kind,
        "id": art_id,
        "tasks": tasks,
        "layout": "multitask" if multitask else "prompt",
        "prompt_length": l,
        "dim": d,
        "rank": r,
        "tunable_params": l * d + (len(tasks) * r * (l + d) if multitask else 0),
        "backbone": backbone,
        "parents": [],
        "config": config,
        "metrics": {},
        "created_with": "scripts/check_peft_export.py",
        "tensors_sha256": hashlib.sha256(data).hexdigest(),
    }
    out.mkdir(parents=True)
    (out / "tensors.safetensors").write_bytes(data)
    (out / "artifact.json").write_text(json.dumps(meta, indent=2))
    return art_id


class Model:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.config = json.loads((folder / "config.json").read_text())
        model_type = self.config["model_type"]
        self.arch = {"t5": "t5", "mt5": "t5", "llama": "llama", "qwen2": "qwen2"}.get(model_type, "bert")
        self.causal = self.arch in ("llama", "qwen2")
        self.name = folder.resolve().name
        self.backbone = {
            "name": self.name,
            "arch": self.arch,
            "config_sha256": sha256_file(folder / "config.json"),
            "weights_sha256": sha256_file(folder / "model.safetensors"),
        }
        if (folder / "tokenizer_config.json").is_file():
            self.tokenizer = AutoTokenizer.from_pretrained(folder)
        else:  # the decoder-only fixtures ship tokenizer.json alone
            self.tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), pad_token="<pad>")
        base = self.load(None)
        self.dim = base.get_input_embeddings().weight.shape[1]
        self.emb_std = float(base.get_input_embeddings().weight.detach().std())

    def load(self, task_type: str | None):
        kw = {"attn_implementation": "eager"}
        if self.arch == "t5":
            return AutoModelForSeq2SeqLM.from_pretrained(self.folder, **kw).eval()
        if task_type == "CAUSAL_LM" or self.causal:
            # BertLMHeadModel: the same BertModel (bidirectional, is_decoder stays false) plus an
            # unused random LM head; only its last hidden state is read.
            return AutoModelForCausalLM.from_pretrained(self.folder, **kw).eval()
        return AutoModel.from_pretrained(self.folder, **kw).eval()

    def inputs(self) -> dict[str, np.ndarray]:
        texts = T5_TEXTS if self.arch == "t5" else BERT_TEXTS
        enc = self.tokenizer(texts, padding="longest", truncation=False, return_tensors="np")
        out = {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}
        if self.arch == "t5":
            tgt = self.tokenizer(T5_TARGETS, padding="longest", return_tensors="np")["input_ids"].astype(np.int64)
            start = np.zeros((tgt.shape[0], 1), dtype=np.int64)  # decoder_start_token_id = pad = 0
            out["decoder_input_ids"] = np.concatenate([start, tgt[:, :-1]], axis=1)
            out["labels"] = tgt  # shift_right(labels) == decoder_input_ids
        return out


def mpt_forward(mpt: Path, model: Model, inputs: dict[str, np.ndarray], prompt: np.ndarray, work: Path, tag: str) -> dict:
    names = ["input_ids", "attention_mask"] + (["decoder_input_ids"] if model.arch == "t5" else [])
    tensors = {k: inputs[k] for k in names}
    tensors["soft_prompt"] = np.ascontiguousarray(prompt, dtype=np.float32)
    np_save_file(tensors, str(work / f"{tag}.in.safetensors"))
    run([mpt, "model", "forward", "--model", model.folder, "--inputs", work / f"{tag}.in.safetensors",
         "--out", work / f"{tag}.out.safetensors"])
    return np_load(str(work / f"{tag}.out.safetensors"))


def peft_forward(peft_model, model: Model, inputs: dict[str, np.ndarray], task_ids, multitask: bool) -> dict:
    t = {k: torch.from_numpy(v) for k, v in inputs.items()}
    kw = {}
    if task_ids is not None:
        kw["task_ids"] = torch.tensor(task_ids, dtype=torch.long)
    with torch.no_grad():
        if model.arch == "t5":
            if multitask:
                out = peft_model(input_ids=t["input_ids"], attention_mask=t["attention_mask"], labels=t["labels"], **kw)
            else:
                out = peft_model(input_ids=t["input_ids"], attention_mask=t["attention_mask"],
                                 decoder_input_ids=t["decoder_input_ids"], **kw)
            return {"encoder_last_hidden_state": out.encoder_last_hidden_state.numpy(), "lm_logits": out.logits.numpy()}
        out = peft_model(input_ids=t["input_ids"], attention_mask=t["attention_mask"], output_hidden_states=True, **kw)
        hidden = out.hidden_states[-1]
        if model.causal:
            return {"logits": out.logits.numpy(), "last_hidden_state": hidden.numpy()}
        mask = t["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden[:, L:] * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return {"last_hidden_state": hidden.numpy(), "sentence_embedding": F.normalize(pooled, p=2, dim=1).numpy()}


def load_peft(model: Model, export_dir: Path, task_type: str, chk: Checker, label: str):
    base = model.load(task_type)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pm = PeftModel.from_pretrained(base, str(export_dir)).eval()
    bad = [str(w.message) for w in caught if "Unexpected keyword" in str(w.message) or "missing" in str(w.message).lower()]
    chk.result(not bad, f"{label}: PeftModel.from_pretrained loads the export", "; ".join(bad)[:300])
    return pm


def rust_id_matches(chk: Checker, art: Path, label: str) -> None:
    meta = json.loads((art / "artifact.json").read_text())
    data = (art / "tensors.safetensors").read_bytes()
    want = hashlib.sha256(data + canonical_json(meta["config"]).encode()).hexdigest()
    chk.result(meta["id"] == want, f"{label}: id written by Rust == sha256(tensors || canonical JSON) in Python")


def check_model(mpt: Path, folder: Path, work: Path, chk: Checker) -> None:
    model = Model(folder)
    tag = model.name
    print(f"--- {tag} ({model.arch}, d = {model.dim})", flush=True)
    rng = np.random.default_rng(20240601)
    d = model.dim
    inputs = model.inputs()
    batch = inputs["input_ids"].shape[0]
    config = {"source": "scripts/check_peft_export.py", "seed": 20240601, "model": tag}

    # --- plain prompt ---------------------------------------------------------------------
    prompt = (rng.standard_normal((L, d)) * model.emb_std).astype(np.float32)
    plain = work / f"{tag}-plain"
    write_artifact(plain, "teacher", ["alpha"], {"prompt_embeddings": prompt}, model.backbone, dict(config, layout="prompt"))
    info = json.loads(run([mpt, "inspect", "--json", plain]).stdout)
    chk.result(info["verified"] and (info["prompt_length"], info["dim"], info["rank"]) == (L, d, 0),
               f"{tag} plain: mpt inspect verifies the Python-written artifact")
    task_type = "SEQ_2_SEQ_LM" if model.arch == "t5" else "CAUSAL_LM" if model.causal else "FEATURE_EXTRACTION"
    exp = work / f"{tag}-plain-peft"
    run([mpt, "export", "--format", "peft", plain, exp])
    cfg = json.loads((exp / "adapter_config.json").read_text())
    chk.result(cfg["peft_type"] == "PROMPT_TUNING" and cfg["task_type"] == task_type and cfg["num_virtual_tokens"] == L
               and cfg["token_dim"] == d and cfg["num_transformer_submodules"] == 1,
               f"{tag} plain: adapter_config.json is PROMPT_TUNING/{task_type}, l = {L}, d = {d}, 1 submodule")
    pm = load_peft(model, exp, task_type, chk, f"{tag} plain")
    ours = mpt_forward(mpt, model, inputs, prompt, work, f"{tag}-plain")
    theirs = peft_forward(pm, model, inputs, None, multitask=False)
    for k, v in theirs.items():
        chk.close(f"{tag} plain: PEFT {k} == mpt model forward", ours[k], v)
    back = work / f"{tag}-plain-back"
    run([mpt, "import", "--format", "peft", exp, back, "--model", folder, "--kind", "teacher", "--task", "alpha"])
    got = np_load(str(back / "tensors.safetensors"))
    chk.identical(f"{tag} plain: export -> import prompt_embeddings", got["prompt_embeddings"], prompt)

    # --- multitask prompt -----------------------------------------------------------------
    t = len(TASKS)
    shared = (rng.standard_normal((L, d)) * model.emb_std).astype(np.float32)
    cols = (1.0 + 0.5 * rng.standard_normal((t, L, RANK))).astype(np.float32)
    rows = (1.0 / RANK + 0.5 * rng.standard_normal((t, RANK, d))).astype(np.float32)
    mt = work / f"{tag}-multitask"
    mt_tensors = {"prompt_embeddings": shared, "prefix_task_cols": cols, "prefix_task_rows": rows}
    write_artifact(mt, "multitask", TASKS, mt_tensors, model.backbone, dict(config, layout="multitask"))
    info = json.loads(run([mpt, "inspect", "--json", mt]).stdout)
    chk.result(info["verified"] and (info["prompt_length"], info["dim"], info["rank"]) == (L, d, RANK)
               and info["tunable_params"] == L * d + t * RANK * (L + d),
               f"{tag} multitask: mpt inspect verifies the Python-written artifact")
    mt_task_type = "SEQ_2_SEQ_LM" if model.arch == "t5" else "CAUSAL_LM"
    exp = work / f"{tag}-multitask-peft"
    cmd = [mpt, "export", "--format", "peft", mt, exp]
    if model.arch == "bert":
        cmd += ["--task-type", mt_task_type]
        chk.note(f"{tag} multitask: exported with --task-type CAUSAL_LM (peft 0.21.2 FEATURE_EXTRACTION does not pass task_ids)")
    run(cmd)
    cfg = json.loads((exp / "adapter_config.json").read_text())
    chk.result(cfg["peft_type"] == "MULTITASK_PROMPT_TUNING" and cfg["num_tasks"] == t and cfg["num_ranks"] == RANK
               and cfg["num_transformer_submodules"] == 1,
               f"{tag} multitask: adapter_config.json is MULTITASK_PROMPT_TUNING, {t} tasks, rank {RANK}, 1 submodule")
    pm = load_peft(model, exp, mt_task_type, chk, f"{tag} multitask")
    task_ids = [k % t for k in range(batch)]
    task_ids[-1] = 2  # mixed, every task present
    theirs = peft_forward(pm, model, inputs, task_ids, multitask=True)
    if model.arch == "bert":
        fe = work / f"{tag}-multitask-peft-fe"
        run([mpt, "export", "--format", "peft", mt, fe])
        fe_model = PeftModel.from_pretrained(model.load(None), str(fe)).eval()
        try:
            peft_forward(fe_model, model, inputs, task_ids, multitask=True)
            chk.note(f"{tag} multitask: this peft runs FEATURE_EXTRACTION with task_ids (0.21.2 did not)")
        except ValueError as e:
            chk.note(f"{tag} multitask: PEFT FEATURE_EXTRACTION + MULTITASK_PROMPT_TUNING with task_ids: ValueError({e})")
    ours: dict[str, np.ndarray] = {}
    for k, name in enumerate(TASKS):
        one = work / f"{tag}-multitask-{name}"
        run([mpt, "export", "--format", "prompt", mt, one, "--task", name])
        rust_id_matches(chk, one, f"{tag} export --format prompt --task {name}")
        task_prompt = np_load(str(one / "tensors.safetensors"))["prompt_embeddings"]
        hand = shared * (cols[k] @ rows[k])
        chk.close(f"{tag} multitask: task {name} prompt == P* * (U_k V_k) (numpy)", task_prompt, hand)
        out = mpt_forward(mpt, model, inputs, task_prompt, work, f"{tag}-multitask-{name}")
        sel = [i for i, tid in enumerate(task_ids) if tid == k]
        for key, v in out.items():
            if key in theirs:
                ours.setdefault(key, np.zeros_like(theirs[key]))[sel] = v[sel]
    for key, v in theirs.items():
        chk.close(f"{tag} multitask (task_ids {task_ids}): PEFT {key} == mpt model forward", ours[key], v)
    # Control: the comparison is sensitive to which task's prompt a row gets.
    key = next(iter(theirs))
    wrong = np.zeros_like(theirs[key])
    for k, name in enumerate(TASKS):
        out = np_load(str(work / f"{tag}-multitask-{name}.out.safetensors"))[key]
        sel = [i for i, tid in enumerate(task_ids) if tid == (k + 1) % t]
        wrong[sel] = out[sel]
    diff = float(np.max(np.abs(wrong - theirs[key])))
    chk.result(diff > 100 * chk.tol, f"{tag} multitask control: rows given another task's prompt differ",
               f"max abs diff {diff:.3e}")
    back = work / f"{tag}-multitask-back"
    run([mpt, "import", "--format", "peft", exp, back, "--model", folder, "--task", ",".join(TASKS)])
    got = np_load(str(back / "tensors.safetensors"))
    for key, v in mt_tensors.items():
        chk.identical(f"{tag} multitask: export -> import {key}", got[key], v)
    back_meta = json.loads((back / "artifact.json").read_text())
    chk.result(back_meta["kind"] == "multitask" and back_meta["tasks"] == TASKS and back_meta["backbone"] == model.backbone,
               f"{tag} multitask: imported artifact.json has kind, tasks and the model's fingerprint")

    # --- a PEFT-native seq2seq adapter: 2*l stored rows -----------------------------------
    if model.arch == "t5":
        torch.manual_seed(7)
        native = get_peft_model(model.load(None), PromptTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=L))
        with torch.no_grad():
            native.prompt_encoder["default"].embedding.weight.normal_(0.0, model.emb_std)
        native_dir = work / f"{tag}-peft-native"
        native.save_pretrained(str(native_dir))
        stored = np_load(str(native_dir / "adapter_model.safetensors"))["prompt_embeddings"]
        chk.result(stored.shape == (2 * L, d), f"{tag} native PEFT seq2seq adapter stores 2*l = {2 * L} rows")
        back = work / f"{tag}-peft-native-back"
        run([mpt, "import", "--format", "peft", native_dir, back, "--model", folder])
        got = np_load(str(back / "tensors.safetensors"))["prompt_embeddings"]
        chk.identical(f"{tag} native import keeps the first l rows", got, stored[:L])
        meta = json.loads((back / "artifact.json").read_text())
        chk.result(meta["config"].get("kept_rows", {}).get("kept") == L, f"{tag} native import records kept_rows in its config")
        theirs = peft_forward(native.eval(), model, inputs, None, multitask=False)
        ours = mpt_forward(mpt, model, inputs, got, work, f"{tag}-native")
        for k, v in theirs.items():
            chk.close(f"{tag} native: PEFT {k} == mpt model forward with the imported prompt", ours[k], v)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mpt", type=Path, default=REPO / "target" / "debug" / "mpt", help="mpt binary")
    ap.add_argument("--models", type=Path, nargs="+", help="HF model folders (default: tiny fixtures + MiniLM if fetched)")
    ap.add_argument("--tol", type=float, default=1e-4, help="max abs difference allowed")
    ap.add_argument("--workdir", type=Path, help="where to write artifacts (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    chk = Checker(args.tol)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")
    if peft.__version__ != "0.21.2":
        chk.note(f"written against peft 0.21.2, running {peft.__version__}")
    if not args.mpt.is_file():
        chk.result(False, f"mpt binary {args.mpt} exists", "build it with `cargo build -p mpt-cli`")
        return 1
    models = args.models or [
        REPO / "tests/fixtures/bert-tiny",
        REPO / "tests/fixtures/t5-v1_0-tiny",
        REPO / "tests/fixtures/t5-v1_1-tiny",
        REPO / "tests/fixtures/llama-tiny",
        REPO / "tests/fixtures/qwen2-tiny",
    ] + ([REPO / "models/all-MiniLM-L6-v2"] if (REPO / "models/all-MiniLM-L6-v2/model.safetensors").is_file() else [])
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mpt-peft-check-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        for folder in models:
            try:
                check_model(args.mpt, folder, work, chk)
            except Exception as e:  # a crash is a failure of this model's checks, not of the script
                chk.result(False, f"{folder}: checks ran to completion", f"{type(e).__name__}: {e}"[:2000])
    finally:
        if args.keep or args.workdir:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{'FAILED' if chk.failures else 'ALL PASSED'}: {chk.failures} failure(s)")
    return 1 if chk.failures else 0


if __name__ == "__main__":
    sys.exit(main())
