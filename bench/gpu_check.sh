#!/usr/bin/env bash
# One GPU session: the CUDA tests on the GPU, then the GPU benchmarks, each writing its rows into
# BENCHMARKS.md, which is copied to OUT_DIR at the end (with every log).
#
#   bash bench/gpu_check.sh [OUT_DIR]            # run from the repository root
#   STAGES="tests engine" bash bench/gpu_check.sh OUT_DIR      # some stages only
#
# Stages (default: all, in this order; about 10 minutes in all on an H100/H200):
#   tests     the CUDA test files on the GPU
#   engine    bench_cuda.py, recurrent, B = 32, 256 and 1024 hidden (the targets), --write
#   pipeline  bench_cuda.py --pipeline at 256 and 1024 hidden (PIPELINE), --write
#   delays    bench_delays.py --backend cuda (learned delays, delay line, connectivity), --write
#   paper     bench_shd_epoch.py --paper (the paper_SHD configuration, one epoch), --write
#   spyx      bench_spyx.py: a Spyx (JAX) model of the same shape on the same data, and the ratio
#             (needs spyx's wheels in WHEELS: see bench_spyx.py)
# With BEFORE=DIR (a checkout of an earlier version) the engine stage runs as after / before /
# after, back to back, on the same GPU. Python packages the GPU machine lacks can be given as
# wheels in WHEELS (default .whl/).
set -uo pipefail
out=${1:-gpu_check_out}
stages=${STAGES:-tests engine pipeline delays paper spyx}
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
run_bench() {   # label, tree, extra arguments
    echo "=== bench_cuda: $1"
    (cd "$2" && PYTHONPATH="$PWD:$site" python3 $bench $3) 2>&1 | tee -a "$out/bench.txt"
}
for stage in $stages; do
    case $stage in
    tests)
        echo "=== CUDA tests on the GPU"
        python3 -m pytest -q -p no:cacheprovider tests/test_engine_cuda.py \
            tests/test_cuda_projections.py tests/test_losses_cuda.py tests/test_loss_shapes.py \
            2>&1 | tee "$out/tests.txt" | tail -30 ;;
    engine)
        run_bench after "$PWD" "--profile --write"
        if [ -n "${BEFORE:-}" ]; then
            run_bench before "$BEFORE" ""
            run_bench after-again "$PWD" ""
        fi ;;
    pipeline)
        run_bench pipelined "$PWD" "--pipeline --write" ;;
    delays)
        echo "=== bench_delays on the GPU"
        python3 bench/bench_delays.py --backend cuda --write 2>&1 | tee "$out/delays.txt" ;;
    paper)
        echo "=== paper_SHD epoch on the GPU"
        python3 bench/bench_shd_epoch.py --paper --write 2>&1 | tee "$out/paper.txt" ;;
    spyx)
        echo "=== Spyx against EventProp on the GPU"
        (cd bench && python3 bench_spyx.py) 2>&1 | tee "$out/spyx.txt" ;;
    *)
        echo "unknown stage $stage" ;;
    esac
done
cp BENCHMARKS.md "$out/"
