"""Bench adapter: BlazeFace via ``mediapipe==0.10.21`` (the ``mp.solutions.face_detection`` graph).

Runs in its own environment (bench/peers/setup_envs.sh: mediapipe with its own dependencies, which
bring numpy 1.26 and opencv-contrib-python). Protocol: bench/peers/README.md.

- Model: the TFLite files mediapipe ships in ``mediapipe/modules/face_detection/``:
  ``--variant short`` (default) = ``face_detection_short_range.tflite`` (BlazeFace short range, faces
  within ~2 m), ``--variant full`` = ``face_detection_full_range_sparse.tflite`` (full range, ~5 m).
  The legacy solution API loads them by graph, so ``--model`` is refused. Nothing is downloaded (the
  face-detection solution has no download step, unlike mediapipe's pose/objectron solutions).
- Input size: fixed by the model, ``--size`` is ignored: the graph letterboxes the whole image to
  128x128 (short) or 192x192 (full) itself. OUT.json records ``"input": "fixed 128x128"``.
- Post-processing: the graph's own (score threshold = ``min_detection_confidence``, then mediapipe's
  weighted NMS). Threshold 0.02 unless ``--score-thresh``. Boxes are relative to the image, scaled to
  pixels here.
- Threads: mediapipe's solution API has no thread setting (its TFLite/XNNPACK inference picks its own);
  as an upper bound the process is pinned to ``--threads`` CPUs with ``os.sched_setaffinity``.
- Points: BlazeFace gives 6 key points (eyes, nose tip, mouth centre, ear tragions), not the 5-point
  layout, so none are reported.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

import cv2
import numpy as np
from peer_adapter import AdapterInfo, Detections
from peer_adapter import main as adapter_main

SCORE_THRESH = 0.02
VARIANTS = {"short": (0, "face_detection_short_range.tflite", 128),
            "full": (1, "face_detection_full_range_sparse.tflite", 192)}


def pin_threads(n: int) -> str:
    """Restrict the process to the first ``n`` of its allowed CPUs; returns what was done."""
    allowed = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, allowed[:n])
    return f"not settable in mediapipe; process pinned to CPUs {allowed[:n]} (sched_setaffinity)"


def build(args: argparse.Namespace) -> tuple[AdapterInfo, Callable[[np.ndarray], Detections]]:
    if args.model is not None:
        raise SystemExit("blazeface: mediapipe's solution graph loads its own model files; use --variant short|full")
    note = pin_threads(args.threads)
    import mediapipe as mp

    cv2.setNumThreads(args.threads)
    selection, model_file, side = VARIANTS[args.variant]
    thresh = SCORE_THRESH if args.score_thresh is None else args.score_thresh
    fd = mp.solutions.face_detection.FaceDetection(min_detection_confidence=thresh, model_selection=selection)

    def detect(img_bgr: np.ndarray) -> Detections:
        h, w = img_bgr.shape[:2]
        result = fd.process(cv2.cvtColor(img_bgr, cv2.COLOR_BGR2RGB))
        found = result.detections or []
        boxes = np.zeros((len(found), 4), np.float32)
        scores = np.zeros(len(found), np.float32)
        for i, d in enumerate(found):
            r = d.location_data.relative_bounding_box
            boxes[i] = (r.xmin * w, r.ymin * h, (r.xmin + r.width) * w, (r.ymin + r.height) * h)
            scores[i] = d.score[0]
        return Detections(boxes, scores)

    info = AdapterInfo(
        name=f"BlazeFace {args.variant} range (mediapipe)",
        input=f"fixed {side}x{side}",
        threads_note=note,
        distributions=["mediapipe", "numpy", "opencv-contrib-python"],
        extra={"model": f"mediapipe/modules/face_detection/{model_file} (shipped by mediapipe)",
               "variant": args.variant, "score_thresh": thresh, "nms_iou": "graph's own (weighted NMS)"},
    )
    return info, detect


def main(argv: Sequence[str] | None = None) -> int:
    return adapter_main(__doc__, build, argv, variants=tuple(VARIANTS))


if __name__ == "__main__":
    sys.exit(main())
