"""Running a PyTorch peer script for the benchmark drivers: Debian's python, OpenBLAS told this
CPU's core type, and its threads bounded to the ones asked for."""
import json
import os
import subprocess


def run_torch_peer(script, args, threads):
    """Runs bench/peers/SCRIPT with ARGS and returns the "seconds" of the JSON line it prints last."""
    # torch.set_num_threads bounds PyTorch's own threads, not OpenBLAS's pool: bound both.
    env = dict(os.environ, OPENBLAS_CORETYPE="SkylakeX", OMP_WAIT_POLICY="PASSIVE",
               OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    out = subprocess.run(["/usr/bin/python3", os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers",
                                                           script)] + [str(a) for a in args],
                         check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])["seconds"]
