"""Training over a mesh of devices on one machine (the thread runtime): how much of the step the
communication costs, and the model-FLOPs utilization per mesh.

1. Overlap (ViT-22B's asynchronous parallel linear operations in the forward and the backward
   pass): the median AdamW step of a parallel-block model on MESH over an emulated link of
   10 GB/s and 5 us (LINK), against the same step with communication free (compute-only), and
   with collective matmul disabled over the same link. Goal: overlapped within 1.15x of
   compute-only.
2. MFU per mesh for ViT-Ti/16 and a ViT-22B-style model of the same size (parallel blocks,
   QK-norm, no QKV or LayerNorm biases, MAP head; 4 heads of 48 instead of 3 of 64, so that a
   model axis of 2 divides them): model FLOPs (3x the forward's, `vitc stats`) per step over the
   step time, divided by the FMA limit of the cores the devices use. ViT-Ti/16's 3 heads take no
   model axis of 2: its rows are data-parallel only.

Usage: python3 bench/train_mesh.py FMA_GFLOPS_PER_CORE [VITC]   (stdlib only)
Environment: BATCH (default 8), STEPS (default 6), LINK (default "10,5").
"""
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from npy import write_training_set  # noqa: E402
ROOT = os.path.dirname(HERE)
PEAK = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
VITC = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "build/tools/vitc")
BATCH = int(os.environ.get("BATCH", "8"))
STEPS = int(os.environ.get("STEPS", "6"))
LINK = os.environ.get("LINK", "10,5")
CORES = os.cpu_count() or 1

VIT22B_TI = """# ViT-22B's block at ViT-Ti/16's size (bench/train_mesh.py)
name = "vit22b-style-ti16"
[image]
size = 224
patch = 16
channels = 3
[encoder]
width = 192
depth = 12
mlp = 768
heads = 4
block = "parallel"
qk_norm = true
gelu = "erf"
eps = 1e-6
[bias]
qkv = false
out = true
mlp = true
norm = false
[head]
pool = "map"
classes = 1000
"""


def train(model, data, mesh, extra=()):
    with tempfile.TemporaryDirectory() as out:
        cmd = [VITC, "train", model, "--data", data, "--batch", str(BATCH), "--steps", str(STEPS),
               "--optimizer", "adamw", "--weights", "random:0", "--mesh", mesh,
               "-o", os.path.join(out, "w.safetensors")] + list(extra)
        text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(re.search(r"median step: ([0-9.]+) ms", text).group(1))


def train_gflops(model):
    text = subprocess.run([VITC, "stats", model, "--batch", str(BATCH), "--train"], check=True,
                          capture_output=True, text=True).stdout
    return float(re.search(r"train GFLOPs\s+([0-9.]+)", text).group(1))


def main():
    print("cores: %d, batch %d, median of %d AdamW steps each" % (CORES, BATCH, STEPS))
    with tempfile.TemporaryDirectory() as tmp:
        vit22b = os.path.join(tmp, "vit22b-style-ti16.vit")
        with open(vit22b, "w") as f:
            f.write(VIT22B_TI)
        data = os.path.join(tmp, "data.npz")
        # One step's worth of images, read again each epoch.
        write_training_set(data, BATCH, 3, 224, 1000)
        models = [("ViT-Ti/16", os.path.join(ROOT, "examples/vit-ti16.vit"), ["data=2,model=1"]),
                  ("ViT-22B-style Ti/16", vit22b, ["data=2,model=1", "data=1,model=2"])]

        print("\n== overlap: data=1,model=2, link %s (GB/s, us)" % LINK)
        print("| model | compute-only ms | overlapped ms | no ring ms | overlapped / compute-only |")
        print("|---|---|---|---|---|")
        for name, model, meshes in models:
            if "data=1,model=2" not in meshes:
                continue
            free = train(model, data, "data=1,model=2")
            ring = train(model, data, "data=1,model=2", ["--link", LINK])
            plain = train(model, data, "data=1,model=2",
                          ["--link", LINK, "--pass-option", "layout.collective-matmul=false"])
            print("| %s | %.1f | %.1f | %.1f | %.3f |" % (name, free, ring, plain, ring / free))

        print("\n== MFU per mesh (%.0f GFLOP/s FMA limit per core; devices share %d cores)"
              % (PEAK, CORES))
        print("| model | mesh | step ms | GFLOP/s | MFU |")
        print("|---|---|---|---|---|")
        for name, model, meshes in models:
            flops = train_gflops(model)
            for mesh in ["data=1,model=1"] + meshes:
                ms = train(model, data, mesh)
                rate = flops / (ms / 1e3)
                # Every mesh runs on all the cores: one device per core, or one device's threads.
                mfu = rate / (PEAK * CORES) if PEAK else 0
                print("| %s | %s | %.1f | %.1f | %.1f%% |" % (name, mesh, ms, rate, 100 * mfu))


if __name__ == "__main__":
    main()
