"""Bench adapter: a facedet export run by the torch-free runtime (``facedet_runtime.FaceDetector``).

    python bench/peers/facedet_exported.py --model model.onnx --variant onnxruntime|openvino \\
        --images LIST.txt --size 320 --threads 2 --out OUT.json

Input: the runtime letterboxes each image to SxS (longer side S, pad 128), as training and
evaluation do; S is any multiple of 32 (the export has dynamic height and width). The BGR image the
protocol decodes is turned into RGB inside the timed call, as a user of OpenCV would have to.
Threads: the runtime's ``threads`` (ORT intra-op threads, OpenVINO INFERENCE_NUM_THREADS) and
``cv2.setNumThreads`` (the letterbox's resize). Imports numpy, OpenCV, the runtime and the standard
library only: no torch.
"""

from __future__ import annotations

import sys

import cv2
from peer_adapter import FACEDET_SCORE_THRESH, AdapterInfo, from_facedet, parse_args, run  # a sibling module

VARIANTS = ("onnxruntime", "openvino")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__.split("\n\n")[0], argv, variants=VARIANTS)
    if args.model is None:
        sys.exit("--model: an exported .onnx, or an OpenVINO .xml, is required")
    from facedet_runtime import FaceDetector

    cv2.setNumThreads(args.threads)
    score_thresh = FACEDET_SCORE_THRESH if args.score_thresh is None else args.score_thresh
    det = FaceDetector(str(args.model), backend=args.variant, threads=args.threads, score_thresh=score_thresh,
                       img_size=args.size)
    info = AdapterInfo(
        name=f"facedet {args.model.name} ({args.variant})", input=f"letterbox {args.size}x{args.size}",
        threads_note=f"runtime threads={args.threads}, cv2.setNumThreads({args.threads})",
        distributions=["numpy", "opencv-python", "opencv-python-headless", "facedet-runtime", args.variant],
        extra={"model": str(args.model), "variant": args.variant, "score_thresh": score_thresh,
               "precision": str(det.metadata.get("precision", "fp32")).strip('"')})
    run(args, info, lambda bgr: from_facedet(det([cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)])[0]))


if __name__ == "__main__":
    main()
