"""Training-step speed: `vitc train` against PyTorch eager (torchvision's VisionTransformer,
torch.optim.AdamW, softmax cross-entropy) on the same model and batch: ViT-Ti/16 at batch 8 and
the Fashion-MNIST model (examples/fashion-mnist.vit, at its recipe's batch), 1 and 2 threads.
Prints a table of median step times, vitc's speed-up over PyTorch and each one's GFLOP/s as a
percentage of the FMA limit (per thread x threads), and the step with bf16 matmul inputs
(`vitc train --dtype bf16`: f32 master weights, loss and optimizer state) with its speed-up over
vitc's fp32 step. Training FLOPs come from `vitc stats --train`
(forward + backward = 3x the forward). The two take turns ROUNDS times (default 3) for every
configuration; each reports the median of its rounds' medians.

Usage (bench/run.sh does all of it): python3 bench/train.py FMA_GFLOPS [VITC]
Needs Debian's python3-torch and python3-torchvision for the PyTorch peer.
"""
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import tomllib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from npy import write_training_set  # noqa: E402
from torch_peer import run_torch_peer  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEAK = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
VITC = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "build/tools/vitc")
ROUNDS = int(os.environ.get("ROUNDS", "3"))
STEPS = int(os.environ.get("STEPS", "5"))  # timed steps per run, after one warm-up step
FASHION_MNIST_BATCH = 128  # when the spec's [train] table gives none
LR = "1e-3"


class BenchError(Exception):
    """A model that cannot be benchmarked, with the reason."""


def last_line(completed):
    """The last line a finished command wrote to stderr, else to stdout."""
    lines = (completed.stderr or completed.stdout).strip().splitlines()
    return lines[-1] if lines else "no output"


class Model:
    """A benchmarked model: its spec, batch, training FLOPs per step and PyTorch configuration
    (None, with the reason in `torch_skip`, where torchvision cannot build the same model)."""

    def __init__(self, name, spec_path, batch):
        with open(spec_path, "rb") as f:
            spec = tomllib.load(f)
        self.name, self.spec_path = name, spec_path
        self.batch = batch or spec.get("train", {}).get("batch", FASHION_MNIST_BATCH)
        # A key the spec leaves out takes vitc's default (frontend/model_config.h).
        image, encoder, head = spec.get("image", {}), spec["encoder"], spec.get("head", {})
        self.size, self.channels = image.get("size", 224), image.get("channels", 3)
        self.classes = head.get("classes", 1000)
        self.gflops, self.flops_note = training_gflops(spec_path, self.batch)
        self.torch_config, self.torch_skip = None, torchvision_differences(spec)
        if not self.torch_skip:
            self.torch_config = {
                "image_size": self.size, "patch_size": image.get("patch", 16), "num_layers": encoder["depth"],
                "num_heads": encoder["heads"], "hidden_dim": encoder["width"],
                "mlp_dim": encoder.get("mlp", 4 * encoder["width"]), "num_classes": self.classes,
                "channels": self.channels}


def torchvision_differences(spec):
    """What keeps torchvision's VisionTransformer (sequential pre-LN blocks, class token, every
    bias, erf GELU, LayerNorm eps 1e-6, no QK-norm) from being the spec's model; "" if nothing."""
    encoder, bias = spec["encoder"], spec.get("bias", {})
    wanted = {"block": ("sequential", encoder.get("block", "sequential")),
              "pool": ("token", spec.get("head", {}).get("pool", "token")),
              "gelu": ("erf", encoder.get("gelu", "erf")),
              "qk_norm": (False, encoder.get("qk_norm", False)),
              "eps": (1e-6, encoder.get("eps", 1e-6))}
    wanted.update({f"bias.{k}": (True, bias.get(k, True)) for k in ("qkv", "out", "mlp", "norm")})
    return ", ".join(f"{key} = {have} (torchvision: {want})" for key, (want, have) in wanted.items()
                     if want != have)


def training_gflops(spec_path, batch):
    """Training GFLOPs per step from `vitc stats --train`, or 3x the forward's where vitc stats
    has no such line yet; the second value says which."""
    out = subprocess.run([VITC, "stats", spec_path, "--batch", str(batch), "--train"],
                         capture_output=True, text=True)
    found = re.search(r"train GFLOPs\s+([0-9.]+)", out.stdout)
    if out.returncode == 0 and found:
        return float(found.group(1)), ""
    out = subprocess.run([VITC, "stats", spec_path, "--batch", str(batch)], capture_output=True, text=True)
    if out.returncode != 0:
        raise BenchError("vitc stats failed: " + last_line(out))
    forward = float(re.search(r"GFLOPs\s+[0-9.]+ per image, ([0-9.]+) for the batch", out.stdout).group(1))
    return 3 * forward, "no 'train GFLOPs' line from vitc stats --train: 3x the forward's GFLOPs"


def vitc(model, threads, data, out_dir, dtype="f32"):
    """vitc's median step time in seconds, or the last line of its error output."""
    out = subprocess.run([VITC, "train", model.spec_path, "--data", data, "--weights", "random:0",
                          "--dtype", dtype,
                          "--batch", str(model.batch), "--steps", str(STEPS + 1), "--optimizer", "adamw",
                          "--lr", LR, "--threads", str(threads), "-o", os.path.join(out_dir, "trained.safetensors")],
                         capture_output=True, text=True)
    found = re.search(r"median step: ([0-9.]+) ms", out.stdout + out.stderr)
    if out.returncode != 0 or not found:
        return "exit %d: %s" % (out.returncode, last_line(out))
    return float(found.group(1)) / 1e3


def pytorch(model, threads):
    return run_torch_peer("torch_train_bench.py", [json.dumps(model.torch_config), model.batch, threads, STEPS],
                          threads)


def column(seconds, model, threads):
    """ms, GFLOP/s and % of the FMA limit of one step time, or blanks."""
    if not isinstance(seconds, float):
        return "%10s %8s %7s" % ("-", "-", "-")
    gflops = model.gflops / seconds
    return "%10.1f %8.1f %6.1f%%" % (seconds * 1e3, gflops, 100 * gflops / (PEAK * threads) if PEAK else 0)


def main():
    models, failures = [], []
    for name, batch in (("vit-ti16", 8), ("fashion-mnist", None)):
        spec = os.path.join(ROOT, "examples", name + ".vit")
        if not os.path.exists(spec):
            print("%s: skipped, examples/%s.vit does not exist" % (name, name))
            continue
        try:
            models.append(Model(name, spec, batch))
        except BenchError as e:
            failures.append("%s: skipped, %s" % (name, e))
            print(failures[-1])
    for model in models:
        print("%s: batch %d, %.2f training GFLOPs per step%s" % (
            model.name, model.batch, model.gflops, " (%s)" % model.flops_note if model.flops_note else ""))
        if model.torch_skip:
            print("%s: no PyTorch peer, torchvision's VisionTransformer differs: %s" % (model.name, model.torch_skip))
    print("%-13s %5s %7s | %10s %8s %7s | %10s %8s %7s | %8s | %10s %8s %7s | %8s" % (
        "model", "batch", "threads", "vitc ms", "GFLOP/s", "% FMA", "torch ms", "GFLOP/s", "% FMA", "x torch",
        "bf16 ms", "GFLOP/s", "% FMA", "x fp32"))
    with tempfile.TemporaryDirectory() as d:
        for model in models:
            data = os.path.join(d, model.name + ".npz")
            write_training_set(data, model.batch * (STEPS + 1), model.channels, model.size, model.classes)
            for threads in (1, 2):
                # vitc and PyTorch take turns, ROUNDS times, so that a noisy minute of the machine
                # falls on both; each takes the median of its rounds.
                times = {"vitc": [], "torch": [], "bf16": []}
                for _ in range(ROUNDS):
                    times["vitc"].append(vitc(model, threads, data, d))
                    if model.torch_config:
                        times["torch"].append(pytorch(model, threads))
                    times["bf16"].append(vitc(model, threads, data, d, "bf16"))
                medians = {}
                for key in ("vitc", "bf16"):
                    errors = [t for t in times[key] if not isinstance(t, float)]
                    if errors:
                        failures.append("%s, %d thread(s): vitc train (%s) failed: %s" % (
                            model.name, threads, "fp32" if key == "vitc" else "bf16", errors[0]))
                    medians[key] = statistics.median(times[key]) if not errors else None
                v, h = medians["vitc"], medians["bf16"]
                t = statistics.median(times["torch"]) if times["torch"] else None
                speedup = "%7.2fx" % (t / v) if v and t else "%8s" % "-"
                bf16_speedup = "%7.2fx" % (v / h) if v and h else "%8s" % "-"
                print("%-13s %5d %7d | %s | %s | %s | %s | %s" % (
                    model.name, model.batch, threads, column(v, model, threads), column(t, model, threads),
                    speedup, column(h, model, threads), bf16_speedup), flush=True)
    for failure in failures:
        print(failure)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
