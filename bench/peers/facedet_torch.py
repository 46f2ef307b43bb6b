"""Bench adapter: a facedet checkpoint in eager PyTorch (``facedet.inference.Predictor``), fp32 on the CPU.

    PYTHONPATH=<repo> python bench/peers/facedet_torch.py --model best.pt \\
        --images LIST.txt --size 320 --threads 2 --out OUT.json

Input: letterboxed to SxS (longer side S, pad 128) exactly as tools/eval.py does; the model's own
post-processing (DIoU-NMS, max_det) with ``--score-thresh``. Threads: ``torch.set_num_threads`` and
``cv2.setNumThreads``. The EMA weights when the checkpoint has them.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import cv2
import numpy as np
from facedet_common import parser, run, version_of  # the sibling module: this folder is sys.path[0]


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__).parse_args(argv)
    if not args.model or not Path(args.model).is_file():
        sys.exit(f"--model {args.model}: no such file (a training checkpoint, best.pt)")
    import torch

    from facedet.inference.predictor import Predictor, load_detector

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    model, _, which = load_detector(args.model, score_thresh=args.score_thresh)
    predictor = Predictor(model, img_size=args.size)
    versions = {"python": platform.python_version(), "numpy": np.__version__, "opencv": cv2.__version__,
                "torch": torch.__version__, "facedet": version_of("facedet")}
    run(lambda image: predictor([image])[0], args, name=f"facedet {Path(args.model).name} (torch eager)",
        versions=versions, input_note=f"letterbox {args.size}x{args.size}",
        extra={"model": str(args.model), "variant": "torch", "precision": "fp32", "weights": which,
               "threads_set": f"torch.set_num_threads({args.threads}), cv2.setNumThreads({args.threads})"})


if __name__ == "__main__":
    main()
