"""Five-point landmark accuracy of matched faces: the normalised mean error (NME), its failure rate
and the faces with points that were not detected.

Matching (per image, as COCO's at one IoU threshold): predictions in descending score order each
take the unmatched ground-truth face with the highest box IoU, if that IoU is at least
``iou_thresh`` (0.5). Every face that counts (not ``ignore``) can be matched, with or without
points, so a detection of a face without points is never re-assigned to a neighbour that has
them; only faces with at least one point are scored. Greedy rather than Hungarian: it is the
rule AP uses, so a face counted as found by AP50 is the face whose points are scored.

Per matched face with points, over the points present in both the ground truth (not NaN) and the
prediction (finite)::

    NME_box = mean_i ||p_i - g_i|| / sqrt(w * h)       (w, h: the ground-truth box)
    NME_iod = mean_i ||p_i - g_i|| / ||g_left_eye - g_right_eye||   (faces with both eyes only)

Metrics (fractions, not percent):

- ``NME_box``, ``NME_iod``: the means over scored faces;
- ``NME_fail10``: the share of scored faces whose box-normalised NME exceeds 0.10;
- ``landmark_missed``: the share of faces with points that no prediction matched;
- ``faces_with_points``: faces that count and have at least one point.

Nothing is reported (no keys) when the data has no faces with points or the predictions carry no
``landmarks``: a box-only model, or a data set without points, adds nothing to ``metrics.json``.
NME lower is better, so these names cannot be ``train.best_metric`` (``lower_is_better``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from facedet.evaluation.base import EVALUATORS, to_numpy_prediction

NUM_POINTS = 5
FAIL_THRESH = 0.10  # the failure rate's NME_box threshold (the "10" in NME_fail10)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(K, M) IoU of xyxy boxes ``a`` (K, 4) and ``b`` (M, 4)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def greedy_match(pred_boxes: np.ndarray, scores: np.ndarray, gt_boxes: np.ndarray, iou_thresh: float) -> np.ndarray:
    """For each ground-truth box, the index of the prediction matched to it (-1: none): by
    descending score (ties in given order), each prediction takes the free box of highest IoU."""
    match = np.full(len(gt_boxes), -1, np.int64)
    if not len(pred_boxes) or not len(gt_boxes):
        return match
    iou = box_iou(pred_boxes, gt_boxes)
    for p in np.argsort(-scores, kind="stable"):
        free = np.where(match < 0, iou[p], -1.0)
        g = int(free.argmax())
        if free[g] >= iou_thresh:
            match[g] = p
    return match


def face_nme(pred: np.ndarray, gt: np.ndarray, box: np.ndarray) -> tuple[float, float]:
    """(box-normalised, inter-ocular-normalised) NME of one face; NaN where not measurable (no
    point present in both, a degenerate box, an eye missing or both eyes at one place)."""
    ok = np.isfinite(gt).all(-1) & np.isfinite(pred).all(-1)
    if not ok.any():
        return math.nan, math.nan
    err = float(np.linalg.norm(pred[ok] - gt[ok], axis=-1).mean())
    size = math.sqrt(max(0.0, float((box[2] - box[0]) * (box[3] - box[1]))))
    iod = float(np.linalg.norm(gt[0] - gt[1])) if np.isfinite(gt[:2]).all() else math.nan
    return (err / size if size > 0 else math.nan), (err / iod if iod > 0 else math.nan)


def _points(value: Any, n: int) -> np.ndarray:
    """(n, 5, 2) float64 points (tensor, array or None -> all NaN)."""
    if value is None:
        return np.full((n, NUM_POINTS, 2), np.nan)
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, np.float64).reshape(n, NUM_POINTS, 2)


@EVALUATORS.register("landmarks")
class LandmarkEvaluator:
    """NME of the five points of matched faces (see the module docstring).

    ``iou_thresh``: box IoU for a prediction to match a face; ``min_score``: predictions scoring
    less are not matched (0: every prediction the post-processing kept, as AP uses them).
    """

    metric_names = ("NME_box", "NME_iod", "NME_fail10", "landmark_missed", "faces_with_points")
    lower_is_better = ("NME_box", "NME_iod", "NME_fail10", "landmark_missed")

    def __init__(self, records: Sequence[Any], *, iou_thresh: float = 0.5, min_score: float = 0.0) -> None:
        self.iou_thresh = float(iou_thresh)
        self.min_score = float(min_score)
        self.gt: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # id -> boxes, points, scored
        for r in records:
            boxes = np.asarray(r.boxes, np.float64).reshape(-1, 4)
            keep = ~np.asarray(r.ignore, bool).reshape(-1)
            points = _points(getattr(r, "landmarks", None), len(boxes))[keep]
            self.gt[r.image_id] = (boxes[keep], points, np.isfinite(points).all(-1).any(-1))
        self.faces_with_points = int(sum(s.sum() for _, _, s in self.gt.values()))
        self.reset()

    def reset(self) -> None:
        self.predictions: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}

    def update(self, predictions: Sequence[dict[str, Any]], image_ids: Sequence[str]) -> None:
        for pred, name in zip(predictions, image_ids, strict=True):
            if name not in self.gt:
                raise KeyError(f"prediction for unknown image '{name}'")
            if not self.faces_with_points:  # nothing will be scored: keep nothing
                continue
            boxes, scores = to_numpy_prediction(pred)
            keep = scores >= self.min_score
            points = _points(pred["landmarks"], len(boxes))[keep] if pred.get("landmarks") is not None else None
            self.predictions[name] = (boxes[keep], scores[keep], points)

    def compute(self) -> dict[str, float | int]:
        """The metrics, or ``{}`` when there is nothing to measure (no faces with points, or
        predictions without landmarks)."""
        if not self.faces_with_points or not any(p is not None for _, _, p in self.predictions.values()):
            return {}
        nme_box, nme_iod, missed = [], [], 0
        for name, (gt_boxes, gt_points, scored) in self.gt.items():
            boxes, scores, points = self.predictions.get(name, (np.zeros((0, 4)), np.zeros(0), None))
            match = greedy_match(boxes, scores, gt_boxes, self.iou_thresh)
            for g in np.flatnonzero(scored):
                if match[g] < 0:
                    missed += 1
                    continue
                pred = points[match[g]] if points is not None else np.full((NUM_POINTS, 2), np.nan)
                b, i = face_nme(pred, gt_points[g], gt_boxes[g])
                nme_box.append(b)
                nme_iod.append(i)
        box, iod = np.asarray(nme_box, np.float64), np.asarray(nme_iod, np.float64)
        box, iod = box[np.isfinite(box)], iod[np.isfinite(iod)]
        return {
            "NME_box": float(box.mean()) if len(box) else math.nan,
            "NME_iod": float(iod.mean()) if len(iod) else math.nan,
            "NME_fail10": float((box > FAIL_THRESH).mean()) if len(box) else math.nan,
            "landmark_missed": missed / self.faces_with_points,
            "faces_with_points": self.faces_with_points,
        }


def landmark_summary(metrics: dict[str, Any]) -> str:
    """The landmark metrics in one line (fractions shown as percent), e.g. ``NME box 2.31% iod 4.80%
    fail>10% 0.50% missed 1.25% (400 faces with points)``: the training log and tools/eval.py."""
    def pct(key: str) -> str:
        v = metrics.get(key)
        return f"{100 * v:.2f}%" if isinstance(v, float) and math.isfinite(v) else "n/a"

    return (f"NME box {pct('NME_box')} iod {pct('NME_iod')} fail>10% {pct('NME_fail10')} "
            f"missed {pct('landmark_missed')} ({metrics.get('faces_with_points', 0)} faces with points)")
