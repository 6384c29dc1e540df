"""Times torchvision's ViT (the same models bench/peers/export_onnx.py exports) with PyTorch on the
CPU: one warm-up, then RUNS runs; prints one JSON line with the median latency.
Run with Debian's python and OpenBLAS told about this CPU:
  OPENBLAS_CORETYPE=SkylakeX OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 torch_bench.py MODEL BATCH THREADS RUNS
"""
import json
import statistics
import sys
import time

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from export_onnx import build  # noqa: E402


def main():
    name, batch, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    model = build(name)
    x = torch.randn(batch, 3, 224, 224)
    times = []
    with torch.inference_mode():
        model(x)
        for _ in range(runs):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    print(json.dumps({"peer": "pytorch", "version": torch.__version__, "seconds": statistics.median(times)}))


if __name__ == "__main__":
    main()
