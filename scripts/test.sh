#!/usr/bin/env bash
# Set up .venv, then run the test suite (offline, tiny models; notebooks run with papermill).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export VADNB_PROFILE=${VADNB_PROFILE:-tiny}
exec .venv/bin/python -m pytest "$@"
