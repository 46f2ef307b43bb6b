"""Bench adapter: a facedet checkpoint in eager PyTorch (``facedet.inference.Predictor``), fp32 on the CPU.

    PYTHONPATH=<repo> python bench/peers/facedet_torch.py --model best.pt \\
        --images LIST.txt --size 320 --threads 2 --out OUT.json

Input: letterboxed to SxS (longer side S, pad 128) exactly as tools/eval.py does, the BGR image
turned into RGB inside the timed call; the model's own post-processing (DIoU-NMS, max_det) with
``--score-thresh``. Threads: ``torch.set_num_threads`` and ``cv2.setNumThreads``. The EMA weights
when the checkpoint has them.
"""

from __future__ import annotations

import sys

import cv2
from peer_adapter import FACEDET_SCORE_THRESH, AdapterInfo, from_facedet, parse_args, run  # a sibling module


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__.split("\n\n")[0], argv)
    if args.model is None:
        sys.exit("--model: a training checkpoint (best.pt) is required")
    import torch

    from facedet.inference.predictor import Predictor, load_detector

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    score_thresh = FACEDET_SCORE_THRESH if args.score_thresh is None else args.score_thresh
    model, _, which = load_detector(str(args.model), score_thresh=score_thresh)
    predictor = Predictor(model, img_size=args.size)
    info = AdapterInfo(
        name=f"facedet {args.model.name} (torch eager)", input=f"letterbox {args.size}x{args.size}",
        threads_note=f"torch.set_num_threads({args.threads}), cv2.setNumThreads({args.threads})",
        distributions=["numpy", "opencv-python", "opencv-python-headless", "torch", "facedet"],
        extra={"model": str(args.model), "variant": "torch", "precision": "fp32", "weights": which,
               "score_thresh": score_thresh})
    run(args, info, lambda bgr: from_facedet(predictor([cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)])[0]))


if __name__ == "__main__":
    main()
