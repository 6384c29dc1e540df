"""Exports torchvision ViT-B/16 and a ViT-Ti/16 (torchvision's VisionTransformer with Ti sizes)
with random weights to ONNX (opset 17, dynamic batch), for the whole-model benchmark's ONNX
Runtime and PyTorch peers. Run with Debian's python: /usr/bin/python3 bench/peers/export_onnx.py
"""
import os
import sys

import torch
from torchvision.models.vision_transformer import VisionTransformer

MODELS = {
    "vit-b16": dict(image_size=224, patch_size=16, num_layers=12, num_heads=12, hidden_dim=768, mlp_dim=3072),
    "vit-ti16": dict(image_size=224, patch_size=16, num_layers=12, num_heads=3, hidden_dim=192, mlp_dim=768),
}


def build(name):
    torch.manual_seed(0)
    model = VisionTransformer(num_classes=1000, **MODELS[name]).eval()
    for p in model.parameters():  # torchvision zero-initializes the head; randomize everything
        torch.nn.init.normal_(p, std=0.02)
    return model


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for name in MODELS:
        path = os.path.join(out_dir, name + ".onnx")
        if os.path.exists(path):
            continue
        model = build(name)
        x = torch.randn(1, 3, 224, 224)
        torch.onnx.export(model, x, path, opset_version=17, input_names=["pixels"],
                          output_names=["logits"], dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}})
        print("wrote", path)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "models"))
