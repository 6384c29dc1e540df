#!/usr/bin/env bash
# Every benchmark, one command: installs the peers (OpenBLAS, oneDNN, PyTorch from Debian; ONNX
# Runtime from npm), builds vitc with its benchmarks, and prints each table. Timings are medians
# of runs in one process or one invocation; run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --bench
BUILD_DIR=${BUILD_DIR:-build} scripts/build.sh -DVITC_BUILD_BENCH=ON
build=${BUILD_DIR:-build}
ninja -C "$build" vitc_fma_peak vitc_gemm_bench vitc_gemm_bf16_bench >/dev/null
if [ ! -d bench/peers/node_modules/onnxruntime-node ]; then
  (cd bench/peers && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-save --no-audit --no-fund \
    onnxruntime-node@1.30.0 >/dev/null)
fi
/usr/bin/python3 bench/peers/export_onnx.py bench/peers/models

echo "== FMA limit of one core"
peak=$("$build/bench/vitc_fma_peak" | sed 's/.*"gflops": \([0-9.]*\).*/\1/')
echo "$peak GFLOP/s"
echo
echo "== matmul: vitc against OpenBLAS and oneDNN (one thread)"
"$build/bench/vitc_gemm_bench" "$peak" || true
echo
echo "== bf16 matmul: vitc against oneDNN (one thread)"
"$build/bench/vitc_gemm_bf16_bench" || true
echo
echo "== whole models: vitc against ONNX Runtime and PyTorch"
python3 bench/models.py "$peak" "$build/tools/vitc"
echo
echo "== fuse-parallel-linear: a parallel-block model fused and unfused"
python3 bench/fusion.py "$build/tools/vitc"
echo
echo "== overlap: collective matmul over an emulated link (2 devices)"
(cd "$build" && BATCH=8 python3 ../bench/overlap.py tools/vitc ../bench/parallel-medium.vit)
echo
echo "== training over a mesh: overlap over an emulated link, MFU per mesh"
python3 bench/train_mesh.py "$peak" "$build/tools/vitc"
echo
echo "== training step: vitc against PyTorch (AdamW)"
python3 bench/train.py "$peak" "$build/tools/vitc"
