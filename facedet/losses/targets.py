"""Targets as the YOLO loss reads them: per-image target dicts concatenated to rows, their points
row for row, boxes padded per image, and the best IoU of every prediction with its image's faces."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import box_iou

from facedet.structures import Target

_IOU_CHUNK = 1 << 23  # elements per batched IoU block: bounds memory for crowded images (WIDER has 1000+)


def _has_area(boxes: Tensor) -> Tensor:
    """``(N,)`` bool: xyxy boxes with a width and a height (the rows the loss keeps)."""
    return (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def targets_to_tensor(targets: Sequence[Target], device: torch.device | str) -> Tensor:
    """Concatenate per-image targets to ``(Nt, 6)`` rows ``[batch index, x1, y1, x2, y2, ignore]``.

    Rows stay grouped by image in batch order. Boxes with no width or height are dropped: they cannot
    be regressed (CIoU divides by the height) nor overlap anything.
    """
    rows = []
    for i, t in enumerate(targets):
        boxes = torch.as_tensor(t["boxes"], dtype=torch.float32, device=device).reshape(-1, 4)
        ign = t.get("ignore")
        ign = torch.zeros(len(boxes), device=device) if ign is None else torch.as_tensor(ign, device=device)
        idx = torch.full((len(boxes), 1), float(i), device=device)
        rows.append(torch.cat((idx, boxes, ign.reshape(-1, 1).float()), 1))
    out = torch.cat(rows) if rows else torch.zeros((0, 6), device=device)
    return out[_has_area(out[:, 1:5])]


def landmarks_to_tensor(targets: Sequence[Target], num_landmarks: int, device: torch.device | str) -> Tensor:
    """The targets' points as ``(Nt, K, 2)`` float32, row for row as ``targets_to_tensor`` (same
    boxes dropped), NaN where a point is absent; a target without ``landmarks`` has none."""
    rows = []
    for t in targets:
        boxes = torch.as_tensor(t["boxes"], dtype=torch.float32, device=device).reshape(-1, 4)
        lm = t.get("landmarks")
        if lm is None:
            lm = torch.full((len(boxes), num_landmarks, 2), float("nan"), device=device)
        lm = torch.as_tensor(lm, dtype=torch.float32, device=device)
        if lm.shape != (len(boxes), num_landmarks, 2):
            raise ValueError(f"target landmarks must be ({len(boxes)}, {num_landmarks}, 2), got {tuple(lm.shape)}")
        rows.append(lm[_has_area(boxes)])
    return torch.cat(rows) if rows else torch.zeros((0, num_landmarks, 2), device=device)


def pad_per_image(targets_cat: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
    """Boxes padded per image: ``(B, M, 4)`` xyxy and a ``(B, M)`` validity mask (M: most boxes per image)."""
    b = targets_cat[:, 0].long()
    counts = torch.bincount(b, minlength=batch_size)
    m = int(counts.max()) if len(b) else 0
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(b), device=b.device) - starts[b]  # rows are grouped by image
    boxes = targets_cat.new_zeros((batch_size, m, 4))
    valid = torch.zeros((batch_size, m), dtype=torch.bool, device=b.device)
    boxes[b, slot] = targets_cat[:, 1:5]
    valid[b, slot] = True
    return boxes, valid


def max_iou_per_image(pred_xyxy: Tensor, gt_xyxy: Tensor, gt_valid: Tensor) -> Tensor:
    """Best IoU of each predicted box ``(B, N, 4)`` with its image's valid gt ``(B, M, 4)`` -> ``(B, N)``.

    ``gt_valid`` must mark a prefix of each row (as ``pad_per_image`` builds it). Gt columns are taken
    in blocks, each only over the images that still have boxes there, so one crowded image does not
    make every image of the batch pay for its padding.
    """
    bsz, n, _ = pred_xyxy.shape
    out = pred_xyxy.new_zeros((bsz, n))
    counts = gt_valid.sum(1)
    start = 0
    while start < gt_xyxy.shape[1]:  # loop over gt blocks only, never over cells
        rows = (counts > start).nonzero().squeeze(1)
        stop = start + max(1, _IOU_CHUNK // max(len(rows) * n, 1))
        iou = box_iou(pred_xyxy[rows], gt_xyxy[rows, start:stop])  # (R, N, m), batched over images
        iou = iou.masked_fill(~gt_valid[rows, None, start:stop], 0.0)
        out[rows] = torch.maximum(out[rows], iou.amax(2))
        start = stop
    return out
