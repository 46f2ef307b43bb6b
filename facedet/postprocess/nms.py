"""Non-maximum suppression for single-class (face) detections: DIoU-NMS (YOLOv4) and plain NMS.

Both share one pipeline per image: drop scores at or below ``score_thresh``, keep the
``pre_nms_topk`` best, suppress, keep the ``max_det`` best. Outputs are sorted by descending score.
Landmarks, when given, ride along: they take no part in the suppression, and a kept box keeps its
own points, or with ``landmark_vote_iou`` > 0 the score-weighted mean of the points of every
candidate whose box overlaps it with IoU >= ``landmark_vote_iou`` (itself included). The cells
around a face each predict its points from a different offset; their mean is a free ensemble that
took the faces5pt recipe's box-normalised NME from 3.87% to 3.46% with the boxes unchanged
(docs/RESULTS.md). Box voting of this kind is in no library we use (torchvision has none), so
``vote_landmarks`` is written here.

DIoU-NMS (Zheng et al., 2020) suppresses box j when a kept, higher-scoring box i has
``DIoU(i, j) = IoU - rho^2 / c^2 > nms_iou`` (rho: centre distance, c: enclosing box diagonal), so
two overlapping faces with distinct centres, common in crowds, survive more often than under NMS.
torchvision has no DIoU-NMS, so it is written here, vectorised (no per-box Python loop).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_iou, distance_box_iou, nms

from facedet.registry import POSTPROCESSORS


def greedy_suppression(suppress: Tensor) -> Tensor:
    """Greedy NMS keep mask from a score-sorted ``(N, N)`` bool matrix ``suppress[i, j]``: i would suppress j.

    Greedy NMS keeps box i iff no *kept* higher-scoring box j < i suppresses it:
    ``keep[i] = not any(keep[j] and S[j, i] for j < i)``. We iterate this map as a masked
    matrix-vector product instead of looping over boxes. Why it terminates with the greedy answer:
    entry i depends only on entries before it, so after k iterations entries 0..k-1 are final (induction
    on i), giving at most N iterations (in practice the length of the longest suppression chain, a
    handful). And the recurrence determines entries in order, so it has exactly one fixed point, the
    greedy solution: once an iteration leaves the vector unchanged we have that fixed point.
    """
    n = suppress.shape[0]
    lower = torch.ones(n, n, dtype=torch.bool, device=suppress.device).triu(1)  # j < i as [j, i]
    s = (suppress & lower).to(torch.float32)
    keep = torch.ones(n, dtype=torch.float32, device=suppress.device)
    for _ in range(n + 1):
        new = ((keep @ s) == 0).to(torch.float32)  # new[i] = no kept j < i suppresses i
        if torch.equal(new, keep):
            break
        keep = new
    return keep.bool()


def diou_nms(
    boxes: Tensor, scores: Tensor, nms_iou: float, *, max_keep: int | None = None, block: int = 256
) -> Tensor:
    """DIoU-NMS of ``(N, 4)`` xyxy boxes; returns kept indices ``(K,)`` int64 in descending score order.

    With ``max_keep`` only the first ``max_keep`` kept boxes are returned, and the work stops there.

    Boxes are taken in score order, ``block`` at a time: a block is first checked against the boxes
    kept so far, then the survivors suppress each other with ``greedy_suppression``. This is the
    greedy answer (a box is kept iff no kept, higher-scoring box suppresses it), but it never builds
    the full N x N matrix: at mAP thresholds (score 0.001) an untrained model sends thousands of boxes
    per image, and the N x N DIoU took seconds per image. The cost is about N * K + N * block pairs.
    """
    order = torch.argsort(scores, descending=True, stable=True)
    n = order.numel()
    limit = n if max_keep is None else min(n, int(max_keep))
    if n == 0 or limit <= 0:
        return order[:0]
    boxes = boxes[order]
    kept: list[Tensor] = []  # positions in score order
    kept_boxes = boxes[:0]
    for start in range(0, n, block):
        cand = boxes[start : start + block]
        alive = torch.arange(len(cand), device=boxes.device)
        if len(kept_boxes):
            alive = alive[(distance_box_iou(kept_boxes, cand) <= nms_iou).all(0)]
        c = cand[alive]
        new = alive[greedy_suppression(distance_box_iou(c, c) > nms_iou)] + start
        kept.append(new)
        kept_boxes = torch.cat((kept_boxes, boxes[new]))
        if len(kept_boxes) >= limit:
            break
    return order[torch.cat(kept)[:limit]]


def vote_landmarks(kept_boxes: Tensor, boxes: Tensor, scores: Tensor, landmarks: Tensor, vote_iou: float) -> Tensor:
    """Points ``(M, K, 2)`` of the kept boxes ``(M, 4)``: the ``scores``-weighted mean of the
    ``landmarks`` ``(N, K, 2)`` of the candidates ``boxes`` ``(N, 4)`` (xyxy) overlapping each kept
    box with IoU >= ``vote_iou``. A kept box is one of the candidates (IoU 1 with itself), so every
    row has at least its own points (scores are above ``score_thresh`` >= 0, so weights are positive)."""
    w = (box_iou(kept_boxes, boxes) >= vote_iou).to(scores.dtype) * scores
    w = w / w.sum(1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
    return torch.einsum("mn,nkc->mkc", w, landmarks.to(w.dtype))


class _NMSBase:
    """Shared pipeline: score threshold -> pre-NMS top-k -> suppression -> max_det."""

    def __init__(
        self,
        *,
        score_thresh: float = 0.001,
        nms_iou: float = 0.6,
        max_det: int = 300,
        pre_nms_topk: int = 3000,
        landmark_vote_iou: float = 0.0,
    ) -> None:
        if max_det < 1 or pre_nms_topk < 1:
            raise ValueError(f"max_det and pre_nms_topk must be positive, got {max_det} and {pre_nms_topk}")
        if not 0.0 <= landmark_vote_iou <= 1.0:
            raise ValueError(f"landmark_vote_iou must lie in [0, 1] (0: no voting), got {landmark_vote_iou}")
        self.score_thresh = float(score_thresh)
        self.nms_iou = float(nms_iou)
        self.max_det = int(max_det)
        self.pre_nms_topk = int(pre_nms_topk)
        self.landmark_vote_iou = float(landmark_vote_iou)

    def _suppress(self, boxes: Tensor, scores: Tensor) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(score_thresh={self.score_thresh}, nms_iou={self.nms_iou}, "
            f"max_det={self.max_det}, pre_nms_topk={self.pre_nms_topk}, "
            f"landmark_vote_iou={self.landmark_vote_iou})"
        )

    def finish(self, boxes: Tensor, scores: Tensor, landmarks: Tensor | None, idx: Tensor,
               kept_scores: Tensor) -> dict[str, Tensor]:
        """The output of one image: the kept rows ``idx`` of its candidates with ``kept_scores``,
        their points voted when ``landmark_vote_iou`` > 0 (weighted by the candidates' ``scores``)."""
        out = detections(boxes, kept_scores, idx, landmarks)
        if landmarks is not None and self.landmark_vote_iou > 0 and idx.numel():
            out["landmarks"] = vote_landmarks(boxes[idx], boxes, scores, landmarks, self.landmark_vote_iou)
        return out

    def candidates(
        self, boxes: Tensor, scores: Tensor, landmarks: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """The boxes entering suppression (and their landmarks, when given): scores above
        ``score_thresh``, at most ``pre_nms_topk`` of them, in at least float32 (fp16 would lose
        DIoU's centre-distance term)."""
        dtype = torch.promote_types(boxes.dtype, torch.float32)
        boxes, scores = boxes.to(dtype), scores.to(dtype)
        keep = scores > self.score_thresh
        boxes, scores = boxes[keep], scores[keep]
        if landmarks is not None:
            landmarks = landmarks.to(dtype)[keep]
        if scores.numel() > self.pre_nms_topk:
            scores, idx = scores.topk(self.pre_nms_topk)
            boxes = boxes[idx]
            landmarks = None if landmarks is None else landmarks[idx]
        return boxes, scores, landmarks

    def single(self, boxes: Tensor, scores: Tensor, landmarks: Tensor | None = None) -> dict[str, Tensor]:
        """One image: ``(N, 4)`` xyxy, ``(N,)`` scores, optional ``(N, K, 2)`` landmarks -> {boxes
        (M, 4), scores (M,), labels (M,) int64}, plus landmarks (M, K, 2) when given."""
        boxes, scores, landmarks = self.candidates(boxes, scores, landmarks)
        idx = self._suppress(boxes, scores)[: self.max_det]
        return self.finish(boxes, scores, landmarks, idx, scores[idx])

    @torch.no_grad()
    def __call__(self, boxes: Tensor, scores: Tensor, landmarks: Tensor | None = None) -> list[dict[str, Tensor]]:
        """Boxes ``(B, N, 4)`` xyxy, scores ``(B, N)`` and optional landmarks ``(B, N, K, 2)`` -> B
        dicts sorted by descending score (with ``landmarks`` only when landmarks were given)."""
        if boxes.dim() != 3 or scores.shape != boxes.shape[:2]:
            raise ValueError(
                f"expected boxes (B, N, 4) and scores (B, N), got {tuple(boxes.shape)}, {tuple(scores.shape)}"
            )
        if landmarks is None:
            return [self.single(b, s) for b, s in zip(boxes, scores, strict=True)]
        if landmarks.dim() != 4 or landmarks.shape[:2] != boxes.shape[:2] or landmarks.shape[-1] != 2:
            raise ValueError(f"expected landmarks (B, N, K, 2) for boxes {tuple(boxes.shape)}, "
                             f"got {tuple(landmarks.shape)}")
        return [self.single(b, s, p) for b, s, p in zip(boxes, scores, landmarks, strict=True)]


def detections(boxes: Tensor, scores: Tensor, idx: Tensor, landmarks: Tensor | None) -> dict[str, Tensor]:
    """The output dict of the kept rows ``idx`` (in output order) of an image's candidates, with
    their ``scores`` (already taken, as soft-NMS decays them); ``landmarks`` only when given."""
    out = {
        "boxes": boxes[idx],
        "scores": scores,
        "labels": torch.zeros(idx.numel(), dtype=torch.int64, device=boxes.device),
    }
    if landmarks is not None:
        out["landmarks"] = landmarks[idx]
    return out


@POSTPROCESSORS.register("diou_nms")
class DIoUNMS(_NMSBase):
    """YOLOv4's DIoU-NMS. ``score_thresh``, ``nms_iou`` (on DIoU), ``max_det``, ``pre_nms_topk``,
    ``landmark_vote_iou`` (0: a kept box keeps its own points; see the module docstring)."""

    def _suppress(self, boxes: Tensor, scores: Tensor) -> Tensor:
        return diou_nms(boxes, scores, self.nms_iou, max_keep=self.max_det)


@POSTPROCESSORS.register("nms")
class NMS(_NMSBase):
    """Plain IoU NMS (``torchvision.ops.nms``); same arguments as ``DIoUNMS``, ``nms_iou`` on IoU."""

    def _suppress(self, boxes: Tensor, scores: Tensor) -> Tensor:
        return nms(boxes, scores, self.nms_iou)
