"""Post-processing of an exported model's candidates in numpy: the NMS family of
``facedet.postprocess`` (DIoU-NMS, NMS, soft-NMS) with the same pipeline and the same arithmetic,
so the runtime keeps the boxes the PyTorch ``Predictor`` keeps.

Per image: drop scores at or below ``score_thresh``, keep the ``pre_nms_topk`` best, suppress, keep
the ``max_det`` best (descending score). A kept box keeps its own points, or with
``landmark_vote_iou`` > 0 the score-weighted mean of the points of every candidate overlapping it with
IoU >= ``landmark_vote_iou``. Greedy suppression is a loop over kept boxes, each step vectorised
over the candidates: a face detector keeps tens of boxes, so the loop is short.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

NMS_TYPES = ("diou_nms", "nms", "soft_nms")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of xyxy boxes, as torchvision's ``box_iou`` computes it."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def distance_box_iou(a: np.ndarray, b: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """(N, M) DIoU = IoU - rho^2 / c^2 (centre distance over the enclosing box's diagonal), as
    torchvision's ``distance_box_iou``."""
    iou = box_iou(a, b)
    lti = np.minimum(a[:, None, :2], b[None, :, :2])
    rbi = np.maximum(a[:, None, 2:], b[None, :, 2:])
    whi = np.clip(rbi - lti, 0, None)
    diag = whi[..., 0] ** 2 + whi[..., 1] ** 2 + a.dtype.type(eps)
    ca, cb = (a[:, :2] + a[:, 2:]) / 2, (b[:, :2] + b[:, 2:]) / 2
    dist = (ca[:, None, 0] - cb[None, :, 0]) ** 2 + (ca[:, None, 1] - cb[None, :, 1]) ** 2
    return iou - dist / diag


def greedy_nms(boxes: np.ndarray, scores: np.ndarray, nms_iou: float, *, diou: bool,
               max_keep: int | None = None) -> np.ndarray:
    """Kept indices (descending score) of greedy NMS: a box is kept iff no kept, higher-scoring box
    overlaps it by more than ``nms_iou`` (DIoU with ``diou``, else IoU). Stops at ``max_keep``."""
    order = np.argsort(-scores, kind="stable")
    limit = len(order) if max_keep is None else min(len(order), int(max_keep))
    overlap = distance_box_iou if diou else box_iou
    keep: list[int] = []
    alive = np.ones(len(order), dtype=bool)
    sorted_boxes = boxes[order]
    for pos in range(len(order)):
        if len(keep) >= limit:
            break
        if not alive[pos]:
            continue
        keep.append(pos)
        rest = slice(pos + 1, None)
        alive[rest] &= overlap(sorted_boxes[pos : pos + 1], sorted_boxes[rest])[0] <= nms_iou
    return order[np.asarray(keep, dtype=np.int64)]


def vote_landmarks(kept_boxes: np.ndarray, boxes: np.ndarray, scores: np.ndarray, landmarks: np.ndarray,
                   vote_iou: float) -> np.ndarray:
    """(M, K, 2) points of the kept boxes: the score-weighted mean of the points of the candidates
    overlapping each kept box with IoU >= ``vote_iou`` (a kept box votes for itself)."""
    w = (box_iou(kept_boxes, boxes) >= vote_iou).astype(scores.dtype) * scores
    w = w / np.maximum(w.sum(1, keepdims=True), np.finfo(w.dtype).tiny)
    return np.einsum("mn,nkc->mkc", w, landmarks.astype(w.dtype))


@dataclass(frozen=True)
class PostProcess:
    """The model config's ``postprocess`` node (the ``postprocess`` metadata key of an export)."""

    type: str = "diou_nms"
    score_thresh: float = 0.001
    nms_iou: float = 0.6
    max_det: int = 300
    pre_nms_topk: int = 3000
    landmark_vote_iou: float = 0.0
    method: str = "gaussian"  # soft_nms only
    sigma: float = 0.5  # soft_nms only

    @classmethod
    def from_dict(cls, node: Mapping[str, Any], where: str = "postprocess") -> PostProcess:
        """From a config node; a ValueError naming ``where`` for an unknown key, type or value."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(node) - known)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        post = cls(**{k: v for k, v in node.items() if v is not None})
        if post.type not in NMS_TYPES:
            raise ValueError(f"{where}: unknown NMS type {post.type!r} (known: {', '.join(NMS_TYPES)})")
        if post.max_det < 1 or post.pre_nms_topk < 1:
            raise ValueError(f"{where}: max_det and pre_nms_topk must be positive")
        if post.type == "soft_nms" and (post.method not in ("gaussian", "linear") or post.sigma <= 0):
            raise ValueError(f"{where}: soft_nms needs method gaussian|linear and a positive sigma")
        return post

    def __call__(self, boxes: np.ndarray, scores: np.ndarray, landmarks: np.ndarray | None = None
                 ) -> dict[str, np.ndarray]:
        """One image's candidates ``(N, 4)`` xyxy, ``(N,)`` and optional ``(N, K, 2)`` -> {boxes,
        scores[, landmarks]} kept, by descending score, float32."""
        boxes, scores = np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32).reshape(-1)
        keep = scores > np.float32(self.score_thresh)
        boxes, scores = boxes[keep], scores[keep]
        if landmarks is not None:
            landmarks = np.asarray(landmarks, np.float32)[keep]
        if len(scores) > self.pre_nms_topk:
            top = np.argsort(-scores, kind="stable")[: self.pre_nms_topk]
            boxes, scores = boxes[top], scores[top]
            landmarks = None if landmarks is None else landmarks[top]
        if self.type == "soft_nms":
            idx, kept_scores = self._soft(boxes, scores)
        else:
            idx = greedy_nms(boxes, scores, self.nms_iou, diou=self.type == "diou_nms", max_keep=self.max_det)
            kept_scores = scores[idx]
        out = {"boxes": boxes[idx], "scores": kept_scores.astype(np.float32)}
        if landmarks is not None:
            points = landmarks[idx]
            if self.landmark_vote_iou > 0 and len(idx):
                points = vote_landmarks(boxes[idx], boxes, scores, landmarks, self.landmark_vote_iou)
            out["landmarks"] = points.astype(np.float32)
        return out

    def _soft(self, boxes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Soft-NMS as ``facedet.postprocess.SoftNMS``: keep the best live box, decay the others'
        scores by ``exp(-IoU^2 / sigma)`` (gaussian) or ``1 - IoU`` above ``nms_iou`` (linear)."""
        iou = box_iou(boxes, boxes)
        live, alive = scores.copy(), np.ones(len(scores), dtype=bool)
        kept, kept_scores = [], []
        for _ in range(min(self.max_det, len(scores))):
            i = int(np.where(alive, live, np.float32(-1)).argmax())
            if not alive[i]:
                break
            kept.append(i)
            kept_scores.append(live[i])
            alive[i] = False
            if self.method == "gaussian":
                live = live * np.exp(-(iou[i] ** 2) / np.float32(self.sigma))
            else:
                live = live * np.where(iou[i] > self.nms_iou, 1 - iou[i], np.float32(1))
            alive &= live > np.float32(self.score_thresh)
        return np.asarray(kept, dtype=np.int64), np.asarray(kept_scores, dtype=np.float32)
