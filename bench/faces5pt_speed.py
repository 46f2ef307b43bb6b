"""Images per second of a trained checkpoint on faces5pt val photos, one image at a time, as a user's
program would run it: letterbox, network, decoding, NMS and the mapping back to the photo (JPEG
decoding excluded), on ``--threads`` CPU threads (1, as the issue's peer table measures).

    python bench/faces5pt_speed.py runs/<run>/checkpoints/best.pt --threads 1

Prints the command, versions and machine, then the median and quartiles over ``--runs`` passes of
``--images`` val photos.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import print_header  # noqa: E402

VAL = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "faces5pt" / "val" / "images"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="a training checkpoint (best.pt)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--images", type=int, default=100, help="val photos per pass")
    ap.add_argument("--runs", type=int, default=5, help="timed passes (after one warm-up pass)")
    ap.add_argument("--val-dir", default=str(VAL))
    ap.add_argument("--landmark-vote-iou", type=float, default=None,
                    help="override the checkpoint's postprocess.landmark_vote_iou (0: no voting)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print_header()

    from facedet.data.dataset import load_image
    from facedet.inference.predictor import Predictor, load_detector

    model, train_cfg, which = load_detector(args.checkpoint, device="cpu", landmark_vote_iou=args.landmark_vote_iou)
    predictor = Predictor(model, img_size=int(train_cfg.data.img_size))
    paths = sorted(Path(args.val_dir).glob("*.jpg"))[: args.images]
    if not paths:
        raise SystemExit(f"no .jpg photos in {args.val_dir}")
    images = [load_image(p) for p in paths]
    per_image = []
    for run in range(args.runs + 1):
        t0 = time.perf_counter()
        for img in images:
            predictor([img])
        if run:  # the first pass warms up
            per_image.append((time.perf_counter() - t0) / len(images))
    q1, med, q3 = statistics.quantiles(per_image, n=4) if len(per_image) > 1 else (per_image[0],) * 3
    print(f"{args.checkpoint} ({train_cfg.model.name}, {which} weights, {train_cfg.data.img_size} px, "
          f"{model.num_landmarks} points, landmark_vote_iou "
          f"{train_cfg.model.postprocess.get('landmark_vote_iou', 0.0)}): {1 / med:.1f} img/s on "
          f"{args.threads} thread(s) "
          f"({1 / q3:.1f}-{1 / q1:.1f} over {args.runs} passes of {len(images)} photos)")


if __name__ == "__main__":
    main()
