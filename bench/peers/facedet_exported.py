"""Bench adapter: a facedet export run by the torch-free runtime (``facedet_runtime.FaceDetector``).

    python bench/peers/facedet_exported.py --model model.onnx --variant onnxruntime|openvino \\
        --images LIST.txt --size 320 --threads 2 --out OUT.json

Input: the runtime letterboxes each image to SxS (longer side S, pad 128), as training and
evaluation do; S is any multiple of 32 (the export has dynamic height and width). Threads: the
runtime's ``threads`` (ORT intra-op threads, OpenVINO INFERENCE_NUM_THREADS) and
``cv2.setNumThreads`` (the letterbox's resize). Imports numpy, OpenCV, the runtime and the standard
library only: no torch.
"""

from __future__ import annotations

import inspect
import platform
import sys
from pathlib import Path

import cv2
import numpy as np
from facedet_common import parser, run, version_of  # the sibling module: this folder is sys.path[0]


def open_detector(path: str, variant: str, *, size: int, threads: int, score_thresh: float):  # noqa: ANN201
    """The runtime's FaceDetector at test size ``size``; exits with a message when the runtime cannot
    run the model at that size."""
    from facedet_runtime import FaceDetector

    kwargs = {"backend": variant, "threads": threads, "score_thresh": score_thresh}
    if "img_size" in inspect.signature(FaceDetector).parameters:
        return FaceDetector(path, img_size=size, **kwargs)
    det = FaceDetector(path, **kwargs)
    if int(det.img_size) != size:
        sys.exit(f"--size {size}: this facedet_runtime runs {path} only at its export size {det.img_size}")
    return det


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__).parse_args(argv)
    if not args.model or not Path(args.model).is_file():
        sys.exit(f"--model {args.model}: no such file (an exported .onnx, or an OpenVINO .xml)")
    variant = args.variant or "onnxruntime"
    if variant not in ("onnxruntime", "openvino"):
        sys.exit(f"--variant {variant}: onnxruntime or openvino")
    cv2.setNumThreads(args.threads)
    det = open_detector(args.model, variant, size=args.size, threads=args.threads, score_thresh=args.score_thresh)
    versions = {"python": platform.python_version(), "numpy": np.__version__, "opencv": cv2.__version__,
                "facedet-runtime": version_of("facedet-runtime"), variant: version_of(variant)}
    precision = det.metadata.get("precision", "fp32")
    run(lambda image: det([image])[0], args, name=f"facedet {Path(args.model).name} ({variant})", versions=versions,
        input_note=f"letterbox {args.size}x{args.size}",
        extra={"model": str(args.model), "variant": variant, "precision": str(precision).strip('"'),
               "threads_set": f"runtime threads={args.threads}, cv2.setNumThreads({args.threads})"})


if __name__ == "__main__":
    main()
