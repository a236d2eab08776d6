"""Build the int8 network ``provider/models/efficientnet_lite0_int8.onnx`` from the float32 one.

Run by a maintainer, with the full FLOWERS17 set beside the repository:

    pip install -e '.[quantize]'       # onnx, for onnxruntime's quantisation tools
    python tools/quantize_efficientnet.py [--dataset ../shared/datasets/flowers17]

Static quantisation, QDQ format: weights int8 per channel, activations uint8, ranges from
MinMax calibration. Dynamic quantisation was 5-8x *slower* on this CPU (issue 10).

Calibration images: the first ``PER_LABEL`` files (by name) of every FLOWERS17 label,
3 x 17 = 51 photos, each also seen mirrored (102 network inputs). They are representative
because they are what the network sees in use: photos of flowers, decoded and cropped by
the same code (:func:`provider.imageio.decode_image`, :func:`provider.features.cnn.preprocess`).
They are kept apart from every evaluation of the int8 network: the manifest lists them
(name and sha256), and ``bench/bench_classifier.py`` leaves them out of the 5-fold CV and
the unknown-detection measurement for both networks. Not used instead, and why: the
photos scikit-image and scikit-learn ship and FLOWERS17's animals4 companion are the
benchmark's *unknown* set, so calibrating on them would tune the quantiser to the very
images whose rejection is measured; and there are too few other photos in PyPI packages.

Writes the model and ``efficientnet_lite0_int8.json`` (sha256, provenance, the list of
calibration images).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from provider.features import cnn  # noqa: E402
from provider.imageio import decode_image  # noqa: E402

PER_LABEL = 3
DEFAULT_DATASET = REPO.parent / "shared" / "datasets" / "flowers17"


def calibration_files(dataset: Path, per_label: int = PER_LABEL) -> list[Path]:
    """The first ``per_label`` images (sorted by name) of each label folder."""
    return [
        path
        for label in sorted(p for p in dataset.iterdir() if p.is_dir())
        for path in sorted(label.glob("*.jpg"))[:per_label]
    ]


class Blobs(CalibrationDataReader):
    """Each calibration photo as the network's input, as is and mirrored."""

    def __init__(self, files: list[Path]) -> None:
        crops = [cnn.preprocess(decode_image(f, min_side=cnn.RESIZE_SHORTER)) for f in files]
        crops += [c[:, ::-1] for c in crops]
        self._inputs = iter([{"input": cnn.to_blob([c])} for c in crops])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._inputs, None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    args = ap.parse_args()
    files = calibration_files(args.dataset)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(cnn.ONNX_PATH), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(cnn.INT8_ONNX_PATH),
            Blobs(files),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    data = cnn.INT8_ONNX_PATH.read_bytes()
    manifest = {
        "file": cnn.INT8_ONNX_PATH.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "source": {
            "file": cnn.ONNX_PATH.name,
            "sha256": hashlib.sha256(cnn.ONNX_PATH.read_bytes()).hexdigest(),
        },
        "quantiser": (
            f"tools/quantize_efficientnet.py with onnxruntime {onnxruntime.__version__}: "
            "quantize_static, QDQ, per-channel int8 weights, uint8 activations, MinMax"
        ),
        "calibration": {
            "dataset": "FLOWERS17 (Oxford 17 Category Flower Dataset), full resolution",
            "rule": f"first {PER_LABEL} files by name of each label, each also mirrored",
            "images": [
                {
                    "path": f"{f.parent.name}/{f.name}",
                    "sha256": hashlib.sha256(f.read_bytes()).hexdigest(),
                }
                for f in files
            ],
        },
        "input": "float32 NCHW 224x224 RGB, (x - 127) / 128",
        "outputs": json.loads(cnn.MANIFEST_PATH.read_text())["outputs"],
        "licence": "Apache-2.0",
    }
    cnn.INT8_MANIFEST_PATH.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {cnn.INT8_ONNX_PATH} ({len(data) / 1e6:.1f} MB) from {len(files)} images")


if __name__ == "__main__":
    main()
