#!/usr/bin/env bash
# Create (or refresh) the project's Python environment at <repo>/.venv (git-ignored) with the
# exact versions pinned in scripts/requirements.txt.
#
# Idempotent: the install is skipped when .venv/.requirements.sha256 holds the sha256 of the
# current requirements.txt (delete that file, or the venv, to force a reinstall).
#
# Environment:
#   MPT_PYTHON   interpreter used to create the venv (default: python3; needs >= 3.10)
#   MPT_VENV     venv location (default: <repo>/.venv)
# pip's own variables (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, ...) pass through,
# e.g. to take torch==2.9.0 from a CPU-only index where one is reachable.
#
# Prints the venv's python path as the last line.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQ="$REPO_ROOT/scripts/requirements.txt"
VENV="${MPT_VENV:-$REPO_ROOT/.venv}"
PY="${MPT_PYTHON:-python3}"
STAMP="$VENV/.requirements.sha256"

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | awk '{print $1}'
    else
        shasum -a 256 "$1" | awk '{print $1}'
    fi
}

want="$(sha256_of "$REQ")"

if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    echo "setup-python: $VENV is up to date with scripts/requirements.txt" >&2
    echo "$VENV/bin/python"
    exit 0
fi

if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
    echo "setup-python: $PY is missing or older than 3.10 (set MPT_PYTHON)" >&2
    exit 1
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "setup-python: creating venv at $VENV with $("$PY" --version 2>&1)" >&2
    "$PY" -m venv "$VENV"
fi

rm -f "$STAMP"
echo "setup-python: installing scripts/requirements.txt (torch is large: several minutes)" >&2
# --no-cache-dir: the wheels (torch + nvidia-*, ~3 GB) are not kept a second time in ~/.cache/pip.
"$VENV/bin/python" -m pip install --disable-pip-version-check --no-cache-dir --quiet -r "$REQ"
"$VENV/bin/python" -m pip check >&2

# Smoke test: the pinned stack imports and reports the pinned versions.
"$VENV/bin/python" - "$REQ" <<'PY' >&2
import importlib.metadata as md, sys
pins = {}
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if "==" in line:
        name, ver = line.split("==", 1)
        pins[name.strip()] = ver.strip()
bad = [f"{n}: want {v}, have {md.version(n)}" for n, v in pins.items()
       if md.version(n).split("+", 1)[0] != v]
if bad:
    sys.exit("setup-python: version mismatch:\n  " + "\n  ".join(bad))
import torch, transformers, peft, tokenizers, safetensors  # noqa: F401
print("setup-python: ok:", ", ".join(f"{n}=={md.version(n)}" for n in pins))
PY

echo "$want" > "$STAMP"
echo "$VENV/bin/python"
