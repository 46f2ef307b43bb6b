"""How long the WIDER FACE protocol takes on the official val ground truth.

    python bench/widerface_eval.py [--gt ../shared/datasets/widerface_val_gt] [--per-image 300]

Predictions: every face jittered by a few pixels plus random false positives up to
``--per-image`` boxes per image; faces score 0.3-1, false positives 0-0.8. Prints the AP, the time
to load the .mat files and to evaluate, the command line, library versions and the machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import print_header  # noqa: E402
from facedet.evaluation.widerface import WiderGroundTruth, evaluate_wider  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gt", default=str(Path(__file__).resolve().parents[2] / "shared/datasets/widerface_val_gt"))
    ap.add_argument("--per-image", type=int, default=300, help="predictions per image (faces + false positives)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t0 = time.perf_counter()
    gt = WiderGroundTruth.from_dir(args.gt)
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(args.seed)
    preds, n_preds = {}, 0
    for key, img in gt.images.items():
        faces = img.boxes[:, :2], img.boxes[:, 2:]
        xy = faces[0] + rng.normal(0, 1.5, faces[0].shape)
        boxes = np.concatenate([xy, xy + faces[1]], 1)
        extra = max(0, args.per_image - len(boxes))
        fxy = rng.uniform(0, 1000, (extra, 2))
        boxes = np.vstack([boxes, np.concatenate([fxy, fxy + rng.uniform(5, 100, (extra, 2))], 1)])
        scores = np.concatenate([rng.uniform(0.3, 1.0, len(xy)), rng.uniform(0.0, 0.8, extra)])
        preds[key] = (boxes, scores)
        n_preds += len(boxes)
    t0 = time.perf_counter()
    res = evaluate_wider(preds, gt, list(gt.images))
    eval_s = time.perf_counter() - t0
    print_header("scipy")
    print(f"images {len(gt)}, predictions {n_preds}")
    print("AP " + ", ".join(f"{s} {r['ap']:.4f} ({r['faces']} faces)" for s, r in res.items()))
    print(f"load .mat files {load_s:.2f} s")
    print(f"evaluate (3 settings) {eval_s:.2f} s")


if __name__ == "__main__":
    main()
