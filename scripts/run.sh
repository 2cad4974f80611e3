#!/usr/bin/env bash
# The main job: set up .venv, then execute every notebook headless (papermill) on the bundled
# sample data, writing executed copies and an HTML index into runs/<timestamp>/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python scripts/run_notebooks.py "$@"
