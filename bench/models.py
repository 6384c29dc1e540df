"""Whole-model speed: vitc (LLVM backend) against ONNX Runtime and PyTorch on ViT-Ti/16 and
ViT-B/16, batch 1 and 8, 1 and 2 threads. Prints a table of median latency, images/s, achieved
GFLOP/s, percentage of the FMA limit (per thread x threads) and vitc's speed-up over each peer,
then vitc with bf16 matmul inputs (`--dtype bf16`) and its speed-up over ORT's fp32.
The four take turns ROUNDS times (default 3) for every configuration; each reports its median.

Then the imported ViT-B/16 row: vitc running torchvision's ViT-B/16 exported to ONNX
(bench/peers/models/vit-b16.onnx, its own weights) against vitc running examples/vit-b16.vit,
taking turns the same way; the ratio is the imported model's time over the spec's.

Usage (bench/run.sh does all of it): python3 bench/models.py FMA_GFLOPS [VITC] [--imported-only]
Needs: bench/peers/models/*.onnx (export_onnx.py), node with onnxruntime-node in bench/peers,
Debian's python3-torch and python3-torchvision for the PyTorch peer.
"""
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from npy import write_images  # noqa: E402
from torch_peer import run_torch_peer  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEAK = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
VITC = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "build/tools/vitc")
GFLOPS = {"vit-ti16": 2.51, "vit-b16": 35.13}  # per image, from `vitc stats`
ROUNDS = int(os.environ.get("ROUNDS", "3"))


def runs_for(model, batch):
    return 20 if model == "vit-ti16" and batch == 1 else 9 if model == "vit-ti16" or batch == 1 else 5


def vitc(model, batch, threads, images, dtype="f32", onnx=False):
    """Median seconds of vitc on the spec examples/MODEL.vit, or (onnx) on the ONNX export of the
    same model with its own weights; `dtype` bf16 gives matmuls bf16 inputs."""
    source = ([os.path.join(HERE, "peers", "models", model + ".onnx")] if onnx else
              [os.path.join(ROOT, "examples", model + ".vit"), "--weights", "random:0"])
    out = subprocess.run([VITC, "run"] + source + [
                          "--input", images, "--output", images + ".out.npy", "--dtype", dtype,
                          "--threads", str(threads), "--repeat", str(runs_for(model, batch))],
                         check=True, capture_output=True, text=True).stdout
    return float(re.search(r"median latency ([0-9.]+) ms", out).group(1)) / 1e3


def imported_row(d):
    """The imported ViT-B/16 against the spec, taking turns ROUNDS times per configuration."""
    print("%-18s %5s %7s | %10s %10s | %8s" % ("model", "batch", "threads", "spec ms", "onnx ms",
                                             "onnx/spec"))
    for batch in (1, 8):
        images = os.path.join(d, "x%d.npy" % batch)
        if not os.path.exists(images):
            write_images(images, batch)
        for threads in (1, 2):
            spec, onnx = [], []
            for _ in range(ROUNDS):
                spec.append(vitc("vit-b16", batch, threads, images))
                onnx.append(vitc("vit-b16", batch, threads, images, onnx=True))
            s, o = statistics.median(spec), statistics.median(onnx)
            print("%-18s %5d %7d | %10.2f %10.2f | %7.3fx" % ("imported ViT-B/16", batch, threads,
                                                            s * 1e3, o * 1e3, o / s), flush=True)


def onnxruntime(model, batch, threads):
    out = subprocess.run(["node", os.path.join(HERE, "peers", "ort_bench.js"),
                          os.path.join(HERE, "peers", "models", model + ".onnx"), str(batch), str(threads),
                          str(runs_for(model, batch))], check=True, capture_output=True, text=True,
                         cwd=os.path.join(HERE, "peers")).stdout
    return json.loads(out.strip().splitlines()[-1])["seconds"]


def pytorch(model, batch, threads):
    return run_torch_peer("torch_bench.py", [model, batch, threads, runs_for(model, batch)], threads)


def main():
    if "--imported-only" in sys.argv:
        with tempfile.TemporaryDirectory() as d:
            imported_row(d)
        return
    print("%-9s %5s %7s | %10s %9s %8s %7s | %10s %6s | %10s %6s | %10s %8s %6s" % (
        "model", "batch", "threads", "vitc ms", "images/s", "GFLOP/s", "% FMA", "ORT ms", "x ORT",
        "torch ms", "x torch", "bf16 ms", "GFLOP/s", "x ORT"))
    with tempfile.TemporaryDirectory() as d:
        for model in ("vit-ti16", "vit-b16"):
            for batch in (1, 8):
                images = os.path.join(d, "x%d.npy" % batch)
                if not os.path.exists(images):
                    write_images(images, batch)
                for threads in (1, 2):
                    # The peers take turns, ROUNDS times, so that a noisy minute of the machine
                    # falls on all of them; each takes the median of its rounds.
                    times = {"vitc": [], "ort": [], "torch": [], "bf16": []}
                    for _ in range(ROUNDS):
                        times["vitc"].append(vitc(model, batch, threads, images))
                        times["ort"].append(onnxruntime(model, batch, threads))
                        times["torch"].append(pytorch(model, batch, threads))
                        times["bf16"].append(vitc(model, batch, threads, images, "bf16"))
                    v, o, t, h = (statistics.median(times[k]) for k in ("vitc", "ort", "torch", "bf16"))
                    gflops = GFLOPS[model] * batch / v
                    print("%-9s %5d %7d | %10.2f %9.2f %8.1f %6.1f%% | %10.2f %5.2fx | %10.2f %5.2fx "
                          "| %10.2f %8.1f %5.2fx" % (
                              model, batch, threads, v * 1e3, batch / v, gflops,
                              100 * gflops / (PEAK * threads) if PEAK else 0, o * 1e3, o / v, t * 1e3, t / v,
                              h * 1e3, GFLOPS[model] * batch / h, o / h), flush=True)
        print()
        imported_row(d)


if __name__ == "__main__":
    main()
