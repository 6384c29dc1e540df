"""Times one training step of a torchvision VisionTransformer with PyTorch eager on the CPU:
zero_grad, forward, softmax cross-entropy (mean over the batch), backward and a
torch.optim.AdamW step (lr 1e-3, PyTorch's other defaults). One warm-up step, then RUNS steps;
prints one JSON line with the median step time.

CONFIG is a JSON object with the torchvision arguments (image_size, patch_size, num_layers,
num_heads, hidden_dim, mlp_dim, num_classes) and channels (torchvision's patch embedding takes
3; any other count gets a Conv2d of the same shape in its place). Run with Debian's python and
OpenBLAS told about this CPU:
  OPENBLAS_CORETYPE=SkylakeX OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 torch_train_bench.py CONFIG BATCH THREADS RUNS
"""
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torchvision.models.vision_transformer import VisionTransformer


def build(config):
    config = dict(config)
    channels = config.pop("channels")
    torch.manual_seed(0)
    model = VisionTransformer(**config)
    if channels != 3:
        model.conv_proj = torch.nn.Conv2d(channels, config["hidden_dim"], kernel_size=config["patch_size"],
                                          stride=config["patch_size"])
    return model.train()


def main():
    config, batch, threads, runs = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    model = build(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    size = config["image_size"]
    images = torch.randn(batch, config["channels"], size, size)
    labels = torch.randint(0, config["num_classes"], (batch,))

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()

    step()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"peer": "pytorch", "version": torch.__version__, "seconds": statistics.median(times)}))


if __name__ == "__main__":
    main()
