"""Overlap of communication with compute on a model-parallel run (ViT-22B's asynchronous parallel
linear operations), measured on one machine with the thread runtime's emulated link.

1. Run with communication free and a trace: the time of the matmuls inside collective-matmul
   rings, and the bytes the rings' collective_permutes move.
2. Choose the link bandwidth so that the rings' communication alone takes half their matmul time
   (FRACTION=0.5; ViT-22B's claim is that this can be hidden).
3. Time three runs (medians): collective matmul on over that link; the same with communication
   free; collective matmul disabled over the same link. Print them and their ratios.

Usage: python3 bench/overlap.py [VITC] [MODEL] [MESH]   (stdlib only)
"""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from npy import write_images  # noqa: E402

VITC = sys.argv[1] if len(sys.argv) > 1 else "build/tools/vitc"
MODEL = sys.argv[2] if len(sys.argv) > 2 else "bench/parallel-medium.vit"
MESH = sys.argv[3] if len(sys.argv) > 3 else "data=1,model=2"
REPEAT = 7
# The rings' communication alone takes this fraction of their matmul time (the issue asks for at
# least half).
FRACTION = float(os.environ.get("FRACTION", "0.5"))


def run(extra, out_dir, trace=None):
    cmd = [VITC, "run", MODEL, "--weights", "random:0", "--input", os.path.join(out_dir, "x.npy"),
           "--output", os.path.join(out_dir, "y.npy"), "--mesh", MESH, "--repeat", str(REPEAT)] + extra
    if trace:
        cmd += ["--trace", trace]
    text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(re.search(r"median latency ([0-9.]+) ms", text).group(1))


def main():
    spec = open(MODEL).read()
    size = int(re.search(r"size\s*=\s*(\d+)", spec).group(1))
    with tempfile.TemporaryDirectory() as d:
        write_images(os.path.join(d, "x.npy"), int(os.environ.get("BATCH", "8")), size)
        trace = os.path.join(d, "free.json")
        run([], d, trace)
        events = json.load(open(trace))["traceEvents"]
        tids = {(e["pid"], e["args"]["name"]): e["tid"] for e in events
                if e.get("ph") == "M" and e.get("name") == "thread_name"}
        compute = tids[(0, "compute")]
        comm = tids[(0, "communication")]
        runs = 1 + REPEAT
        ring_matmul = sum(e["dur"] for e in events if e.get("ph") == "X" and e["pid"] == 0
                          and e["tid"] == compute and ".step" in e["name"]) / runs * 1e-6
        permute_bytes = sum(int(e["args"]["elements"]) * 4 for e in events
                            if e.get("ph") == "X" and e["pid"] == 0 and e["tid"] == comm
                            and e["name"].startswith("collective_permute")) / runs
        if ring_matmul <= 0 or permute_bytes <= 0:
            sys.exit("the model has no collective-matmul rings on this mesh")
        latency_us = 10
        permutes = sum(1 for e in events if e.get("ph") == "X" and e["pid"] == 0 and e["tid"] == comm
                       and e["name"].startswith("collective_permute")) / runs
        budget = FRACTION * ring_matmul - permutes * latency_us * 1e-6
        gbps = permute_bytes / budget / 1e9
        link = "%.4f,%d" % (gbps, latency_us)
        print("rings: %.2f ms of matmuls, %.2f MB over %d permutes per run; link %s (GB/s,us) "
              "makes their communication %.2f ms (%d%% of the matmuls)"
              % (ring_matmul * 1e3, permute_bytes / 1e6, permutes, link,
                 FRACTION * ring_matmul * 1e3, round(100 * FRACTION)))
        on = run(["--link", link, "--trace", os.path.join(os.getcwd(), "overlap-trace.json")], d)
        free = run([], d)
        off = run(["--link", link, "--disable-pass=collective-matmul"], d)
        print("%-44s %9.2f ms" % ("collective matmul on, emulated link", on))
        print("%-44s %9.2f ms" % ("communication free", free))
        print("%-44s %9.2f ms" % ("collective matmul off, emulated link", off))
        print("on / free = %.3f (target <= 1.10); on / off = %.3f (target clearly < 1)" % (on / free, on / off))
        print("trace of the first run: overlap-trace.json (chrome://tracing or ui.perfetto.dev)")


if __name__ == "__main__":
    main()
