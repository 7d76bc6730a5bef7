#!/usr/bin/env bash
# Create .venv (if needed), install kvmlab with its lesson extras, open the lessons in JupyterLab.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/venv.sh
ensure_venv lab
exec .venv/bin/jupyter lab notebooks/ "$@"
