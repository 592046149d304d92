#!/usr/bin/env bash
# One GPU session: the CUDA tests on the GPU, then bench_cuda.py on the SHD-shaped workload
# (recurrent, B = 32, 256 and 1024 hidden). With BEFORE=DIR (a checkout of an earlier version)
# the benchmark runs as after / before / after, back to back, on the same GPU.
#
#   bash bench/gpu_check.sh [OUT_DIR]            # run from the repository root
#
# Python packages the GPU machine lacks can be given as wheels in WHEELS (default .whl/).
set -uo pipefail
out=${1:-gpu_check_out}
mkdir -p "$out"
wheels=${WHEELS:-.whl}
site=$(mktemp -d)
if ls "$wheels"/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" "$wheels"/*.whl
fi
export PYTHONPATH="$PWD:$site" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,utilization.gpu,memory.used --format=csv | tee "$out/gpu.txt"
python3 -c "import numba, numpy; from numba import cuda; print('numba', numba.__version__, 'numpy', numpy.__version__, 'cuda', cuda.is_available())" | tee -a "$out/gpu.txt"
bench="bench/bench_cuda.py --recurrent yes --batch 32 --hidden 256 1024 --seconds 4 --max-batches 40"
run_bench() {   # label, tree
    echo "=== bench_cuda: $1"
    (cd "$2" && PYTHONPATH="$PWD:$site" python3 $bench) 2>&1 | tee -a "$out/bench.txt"
}
echo "=== CUDA tests on the GPU"
python3 -m pytest -q -p no:cacheprovider tests/test_engine_cuda.py tests/test_losses_cuda.py \
    tests/test_loss_shapes.py 2>&1 | tee "$out/tests.txt" | tail -30
run_bench after "$PWD"
if [ -n "${BEFORE:-}" ]; then
    run_bench before "$BEFORE"
    run_bench after-again "$PWD"
fi
