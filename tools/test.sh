#!/usr/bin/env bash
# Create .venv (if needed), install kvmlab with its lesson and test extras, run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/venv.sh
ensure_venv lab,test
# compile the CPU core once (minutes on a cold numba cache) before tests start many processes
.venv/bin/python -m kvmlab.cpu
.venv/bin/python -m pytest "$@"
if [ $# -eq 0 ]; then
  # the CPU core's own tests once more with bounds checking compiled in (its own numba cache):
  # a guest-controlled index that escapes its array fails here instead of corrupting memory
  KVMLAB_BOUNDSCHECK=1 KVMLAB_FUZZ_RUNS=500 .venv/bin/python -m pytest -q -p no:cacheprovider \
    tests/test_cpu_facade.py tests/test_cpu_modes.py tests/test_cpu_sst286.py tests/test_cpu_robustness.py
fi
