#!/usr/bin/env bash
# The GPU check, for a machine with one CUDA GPU (under 5 minutes):
#   1. the GPU-marked tests: CUDA results equal the CPU's (tests/ -m gpu);
#   2. the loss-field benchmark on CUDA: the engine against the per-model loops (goal: >= 10x the
#      best per-model loop, `ratio_vs_loop`);
#   3. the autoencoder fit benchmark on CUDA: the present and the new recipe.
# Outputs go to $OUT (default runs/gpu_check): pytest's log and the benchmarks' JSON.
#
#   PY=/path/to/python-with-cuda-torch bash benchmarks/gpu_check.sh
# PY defaults to the project's .venv (built by `make setup`); TASKS to the MLP and CNN tasks on
# Fashion-MNIST (installed by `make setup`; `TASKS=digits-mlp` needs no data set).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/gpu_check}
TASKS=${TASKS:-fashion-mlp fashion-cnn}
FIT_TASKS=${FIT_TASKS:-digits-mlp fashion-mlp}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PY" -c 'import sys, torch
if not torch.cuda.is_available():
    sys.exit("gpu_check: PyTorch sees no CUDA device (torch %s); set PY to a Python whose torch has CUDA" % torch.__version__)
print("torch", torch.__version__, "on", torch.cuda.get_device_name(0))'
start=$SECONDS
echo "== 1. GPU-marked tests"
timeout 150 "$PY" -m pytest -q -m gpu tests -p no:cacheprovider -rs 2>&1 | tee "$OUT/pytest_gpu.log"
echo "== 2. loss-field throughput on CUDA ($TASKS)"
# shellcheck disable=SC2086 # TASKS is a list of words
timeout 150 "$PY" benchmarks/landscape_throughput.py --device cuda --no-rss --tasks $TASKS --json \
    | tee "$OUT/landscape_cuda.json"
echo "== 3. autoencoder fit on CUDA ($FIT_TASKS)"
# shellcheck disable=SC2086
timeout 150 "$PY" benchmarks/fit_speed.py --device cuda --tasks $FIT_TASKS --json | tee "$OUT/fit_cuda.json"
echo "gpu_check: done in $((SECONDS - start)) s; outputs in $OUT"
