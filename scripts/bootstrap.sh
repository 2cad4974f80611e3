#!/usr/bin/env bash
# Create the local virtual environment .venv (once) and install the suite into it.
# Re-running is cheap: it reinstalls only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "vadnb needs Python 3.11 or newer; found $("$PY" --version 2>&1). Set PYTHON=/path/to/python3.11." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $("$PY" --version 2>&1)"
  "$PY" -m venv .venv
fi
stamp=.venv/.vadnb-installed
want=$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing vadnb and its dependencies into .venv (first time: a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
  # ImageBind's model code without its data-loader dependencies (decord has no wheel for
  # macOS arm64 / Linux aarch64); the [imagebind] extra lists what the model code imports.
  # Keep in step with vadnb.models.imagebind.IMAGEBIND_PIP.
  .venv/bin/python -m pip install -q --no-deps imagebind-unofficial==0.1.1 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import vadnb, torch, open_clip, transformers, papermill; from vadnb.models.imagebind import import_imagebind; import_imagebind()" \
    || { echo "[setup] installation failed: see the pip messages above" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
