"""``facedet-draw`` / ``tools/draw_predictions.py``: a COCO results json (a run's ``predictions.json``)
drawn against the ground truth of its val split.

    facedet-draw data=facemask --predictions runs/<run>/predictions.json --out val.png

Predictions above ``--score`` are green with their score, ground-truth faces white (ignored ones
orange); the five landmarks, where the json has them (``landmarks``) and the val set has points,
are dots (ground truth white, predictions one colour per point); one panel per image, for the
first ``--images`` val images (or ``--ids``). Image ids are those facedet's evaluation writes:
the val records' order, 1-based. By default the panels
are drawn on the photos; ``--boxes-only`` draws them on a grey canvas of each photo's size, a
picture that shows what was found and missed without reproducing the photos (for photos that
must stay out of a repository, as in docs/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facedet.cli.common import parse_tool_args, tool_parser, user_errors
from facedet.registry import ConfigError

GT_COLOUR = (255, 255, 255)  # RGB
IGNORED_COLOUR = (255, 140, 0)
CANVAS = 96  # grey of the boxes-only canvas


def draw_panel(image: np.ndarray, gt: np.ndarray, ignore: np.ndarray, boxes: np.ndarray,
               scores: np.ndarray, *, gt_points: np.ndarray | None = None,
               points: np.ndarray | None = None) -> np.ndarray:
    """``image`` with ground truth (thin; its points white) and predictions (thick, scored; their
    points one colour per point) drawn."""
    from facedet.inference.draw import draw_detections, draw_points

    out = np.ascontiguousarray(image).copy()
    for (x1, y1, x2, y2), ign in zip(np.round(gt).astype(int).tolist(), ignore.tolist(), strict=True):
        cv2.rectangle(out, (x1, y1), (x2, y2), IGNORED_COLOUR if ign else GT_COLOUR, 1, cv2.LINE_8)
    if gt_points is not None:
        draw_points(out, gt_points, radius=2, colours=(GT_COLOUR,))
    return draw_detections(out, boxes, scores, line_width=2, landmarks=points)


def predictions_by_image(path: str | Path, ids: Sequence[int], min_score: float) -> dict[int, list[dict[str, Any]]]:
    """The predictions of ``path`` (COCO results json) on the images ``ids`` scoring ``min_score`` or more."""
    try:
        preds = json.loads(Path(path).read_text())
        by_image: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
        for p in preds:  # one pass: the kept predictions of the drawn images
            if p["image_id"] in by_image and p["score"] >= min_score:
                by_image[p["image_id"]].append(p)
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigError(f"--predictions {path}: not a COCO results json ({type(e).__name__}: {e})") from e
    return by_image


def draw_grid(records: Sequence[Any], ids: Sequence[int], by_image: dict[int, list[dict[str, Any]]], *,
              boxes_only: bool, cols: int) -> np.ndarray:
    """One panel per image of ``ids`` (1-based into ``records``) with its predictions ``by_image``,
    padded square, in a grid."""
    from facedet.data.dataset import load_image
    from facedet.data.visualize import make_grid

    panels = []
    for i in ids:
        rec, mine = records[i - 1], by_image[i]
        xywh = np.array([p["bbox"] for p in mine], np.float32).reshape(-1, 4)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
        scores = np.array([p["score"] for p in mine], np.float32)
        points = None
        if any(p.get("landmarks") for p in mine):  # null (absent) points -> NaN, not drawn
            points = np.array([[np.nan if v is None else v for v in p.get("landmarks") or [None] * 10]
                               for p in mine], np.float32).reshape(-1, 5, 2)
        h, w = rec.orig_size
        image = np.full((h, w, 3), CANVAS, np.uint8) if boxes_only else load_image(rec.image_path)
        panels.append(draw_panel(image, rec.boxes, np.asarray(rec.ignore, bool), boxes, scores,
                                 gt_points=getattr(rec, "landmarks", None), points=points))
    side = max(max(p.shape[:2]) for p in panels)
    square = [cv2.copyMakeBorder(p, 0, side - p.shape[0], 0, side - p.shape[1], cv2.BORDER_CONSTANT,
                                 value=(255, 255, 255)) for p in panels]
    return make_grid(square, cols=cols)


def _parser() -> argparse.ArgumentParser:
    parser = tool_parser(__doc__, overrides="data config overrides, e.g. data=facemask data.root=...")
    parser.add_argument("--predictions", required=True, help="COCO results json (image_id 1-based val order)")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--images", type=int, default=6, help="how many val images, from the first (default 6)")
    parser.add_argument("--ids", type=int, nargs="*", help="these image ids instead (1-based)")
    parser.add_argument("--score", type=float, default=0.3, help="draw predictions scoring at least this")
    parser.add_argument("--boxes-only", action="store_true", help="draw on a grey canvas instead of the photos")
    parser.add_argument("--cols", type=int, default=3, help="panels per row")
    return parser


def main(argv: list[str] | None = None) -> int:
    tool = parse_tool_args(_parser(), argv, "train")
    cfg, args = tool.cfg, tool.flags
    with user_errors():
        from facedet.builders import build_dataset
        from facedet.data.visualize import write_png

        records = build_dataset(cfg.data.val, img_size=cfg.data.img_size, aug=None, cache_images=False,
                                where="data.val").records
        ids = args.ids or list(range(1, min(args.images, len(records)) + 1))
        bad = [i for i in ids if not 1 <= i <= len(records)]
        if bad:
            raise ConfigError(f"--ids {bad}: the val split has images 1..{len(records)}")
        by_image = predictions_by_image(args.predictions, ids, args.score)
        path = write_png(draw_grid(records, ids, by_image, boxes_only=args.boxes_only, cols=args.cols), args.out)
        faces = sum(int((~np.asarray(records[i - 1].ignore, bool)).sum()) for i in ids)
        shown = sum(len(v) for v in by_image.values())
        print(f"wrote {path}: {len(ids)} images, {faces} faces, {shown} predictions with score >= {args.score}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
