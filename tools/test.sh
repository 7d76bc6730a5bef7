#!/usr/bin/env bash
# Create .venv (if needed), install kvmlab with its lesson and test extras, run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[lab,test]"
# compile the CPU core once (minutes on a cold numba cache) before tests start many processes
.venv/bin/python -m kvmlab.cpu
.venv/bin/python -m pytest "$@"
