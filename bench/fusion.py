"""fuse-parallel-linear's speed-up: a parallel-block model with the pass and without it, on the
LLVM backend, 1 and 2 threads, batch 1 and 4. The two take turns ROUNDS times (default 3), so that a
noisy minute of the machine falls on both; each reports the median of its rounds' medians.

Usage: python3 bench/fusion.py [VITC]
"""
import os
import re
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from npy import write_images  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
VITC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(HERE), "build/tools/vitc")
MODEL = os.path.join(HERE, "parallel-large.vit")
ROUNDS = int(os.environ.get("ROUNDS", "3"))


def time(images, threads, extra):
    out = subprocess.run([VITC, "run", MODEL, "--weights", "random:0", "--input", images, "--output",
                          images + ".out.npy", "--threads", str(threads), "--repeat", "7"] + extra,
                         check=True, capture_output=True, text=True).stdout
    return float(re.search(r"median latency ([0-9.]+) ms", out).group(1))


def main():
    print("%5s %7s | %12s %12s | %8s" % ("batch", "threads", "fused ms", "unfused ms", "speed-up"))
    with tempfile.TemporaryDirectory() as d:
        for batch in (1, 4):
            images = os.path.join(d, "x%d.npy" % batch)
            write_images(images, batch)
            for threads in (1, 2):
                runs = {"fused": [], "unfused": []}
                for _ in range(ROUNDS):
                    runs["fused"].append(time(images, threads, []))
                    runs["unfused"].append(time(images, threads, ["--disable-pass=fuse-parallel-linear"]))
                fused, unfused = (statistics.median(runs[k]) for k in ("fused", "unfused"))
                print("%5d %7d | %12.2f %12.2f | %7.2fx" % (batch, threads, fused, unfused, unfused / fused),
                      flush=True)


if __name__ == "__main__":
    main()
