#!/usr/bin/env bash
# The GPU backend's check on a machine with an NVIDIA GPU (issue 7), in under 8 minutes:
#   1. losses of a 100-step run per cell, GPU against CPU (benchmarks/gpu_vs_cpu.py, within 1e-3);
#   2. `rnncli bench --device cuda --against-torch` on the small and medium configurations
#      (PyTorch + cuDNN on the same GPU), results as JSON.
# That machine reaches no package registry. Its image has numba, numba-cuda, PyTorch, scipy, typer,
# rich, safetensors and threadpoolctl, but numpy 2.5, with which numba-cuda 0.30 fails at the first
# kernel compile (np.row_stack is gone). So, here, where pip works, once:
#     bash benchmarks/gpu_check.sh --fetch        # numpy 2.4 for CPython 3.12 into .whl/ (ignored)
# and there, from the repository root, with .whl carried along:
#     bash benchmarks/gpu_check.sh [OUTDIR]       # OUTDIR: where bench.json and the logs go ($OUT)
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=.whl

if [[ "${1:-}" == "--fetch" ]]; then
    grep -qx "/$WHEELS/" .git/info/exclude 2>/dev/null || echo "/$WHEELS/" >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$WHEELS" "numpy==2.4.6"
    exit 0
fi

OUTDIR="${1:-${OUT:-/tmp/gpu_check}}"
mkdir -p "$OUTDIR"
START=$SECONDS
if compgen -G "$WHEELS/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
    export PYTHONPATH=/tmp/site:$PWD
else
    echo "gpu_check: no wheels in $WHEELS (run with --fetch where pip works); using the image's packages" >&2
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 RNNCLI_CACHE_DIR=/tmp/rnncli-cache
nvidia-smi -L || true
python3 - <<'PY'
import numpy, numba, numba_cuda, torch
from numba import cuda
print("numpy", numpy.__version__, "numba", numba.__version__, "numba-cuda", numba_cuda.__version__,
      "torch", torch.__version__, "GPU", cuda.get_current_device().name)
PY
lscpu | grep -m1 "Model name" || true

echo "== 1. 100 steps per cell, GPU against CPU"
timeout 240 python3 benchmarks/gpu_vs_cpu.py --steps 100 | tee "$OUTDIR/gpu_vs_cpu.jsonl"
echo "   ($((SECONDS - START)) s so far)"

echo "== 2. rnncli bench --device cuda --against-torch"
timeout $((450 - (SECONDS - START))) python3 -m rnncli bench --device cuda --against-torch --repeats 1 \
    -c small -c medium --measure train --measure eval --measure generate --json > "$OUTDIR/bench.json"
python3 - "$OUTDIR/bench.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))["results"]
for r in rows:
    if r["impl"] == "rnncli":
        t = next(x for x in rows if x["impl"] == "torch" and x["config"] == r["config"] and x["measure"] == r["measure"])
        print(f"{r['config']:<12} {r['measure']:<9} rnncli {r['rate']:>12,.0f}/s  torch {t['rate']:>12,.0f}/s  {r['ratio']:.2f}x")
PY
echo "gpu_check: done in $((SECONDS - START)) s"
