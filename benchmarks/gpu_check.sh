#!/usr/bin/env bash
# One GPU call of at most 8 minutes -> one JSON file (see benchmarks/gpu_check.py):
# probe torch/CUDA, install only what is missing, pytest -m gpu, bench_train at the paper's
# settings, bench_eval on CUDA.
#
#   benchmarks/gpu_check.sh OUT.json            # on the GPU machine
#   benchmarks/gpu_check.sh OUT.json --smoke    # tiny sizes, any machine (CPU): checks the script
#
# The interpreter: $PYTHON, else python3 (on the GPU machine the one that holds PyTorch).
set -u
cd "$(dirname "$0")/.." || exit 1
if [ $# -lt 1 ]; then
    echo "usage: $0 OUT.json [--smoke] [--budget-s S] [--smoke-compile]" >&2
    exit 2
fi
PY=${PYTHON:-$(command -v python3 || command -v python)}
exec env PYTHONUNBUFFERED=1 "$PY" benchmarks/gpu_check.py --python "$PY" "$@"
