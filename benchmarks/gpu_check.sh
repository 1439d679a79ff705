#!/usr/bin/env bash
# One call on a GPU machine: the tests of the paths only CUDA takes (tests/test_gpu.py and
# the GPU case of tests/test_transfers.py), then `make bench-gpu`'s measurement. It uses the
# python that has torch (lent GPU machines have no network, so nothing is installed here);
# OUT (default runs/gpu_check) receives the logs, the JSON and the rewritten BENCHMARKS.md.
#   PY=python3 OUT=$OUT benchmarks/gpu_check.sh
set -u
PY=${PY:-python3}
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
# Wheels carried along in .whl/ (pydensecrf built for the machine's python, pytest and the
# like: docs/gpu.md) go to a private folder on the path; the machine's torch is kept.
if compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --target /tmp/wsss-site .whl/*.whl
    export PYTHONPATH="$PWD:/tmp/wsss-site${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
if "$PY" -c "import pytest" 2>/dev/null; then
    "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py tests/test_transfers.py \
        2>&1 | tee "$OUT/pytest_gpu.log"
else
    echo "gpu_check: pytest is not installed for $PY; the GPU tests were not run" | tee "$OUT/pytest_gpu.log"
fi
"$PY" benchmarks/bench_gpu.py --out BENCHMARKS.md --json "$OUT/bench_gpu.json" 2>&1 | tee "$OUT/bench_gpu.log"
cp BENCHMARKS.md "$OUT/BENCHMARKS.md"
