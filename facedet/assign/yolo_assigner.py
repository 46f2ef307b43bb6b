"""YOLOv4 target assignment: which (image, anchor, cell) predicts which face.

YOLOv3 gives each face only its single best anchor. YOLOv4 ("IoU-threshold multi-anchor") makes
every anchor of every level whose *shape* IoU with the face exceeds ``anchor_iou`` positive, at the cell
that contains the face centre, and keeps the best anchor even when no IoU clears the threshold, so
no face is left without a predictor. ``near_cells`` adds YOLOv5's two neighbouring cells nearest to
the centre (one along x, one along y), which triples the positives; it only makes sense when the
head's ``scale_x_y`` is 2, so that a neighbouring cell's prediction can reach the centre.

The assigner matches every target row, including rows flagged ``ignore``; the loss decides what an
ignored match means (the cells are masked out of the objectness loss, never made positive).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from facedet.registry import ASSIGNERS

DEFAULT_ANCHOR_IOU = 0.213  # YOLOv4's (yolov4.cfg iou_thresh): the assigner's default shape-IoU threshold


class LevelAssignment(NamedTuple):
    """Matches on one level, all ``(P,)`` int64: index into ``raw[b, a, gy, gx]`` and target row ``t``."""

    b: Tensor
    a: Tensor
    gy: Tensor
    gx: Tensor
    t: Tensor

    @property
    def num(self) -> int:
        """Number of matches."""
        return int(self.t.numel())


def wh_iou(wh1: Tensor, wh2: Tensor, eps: float = 1e-9) -> Tensor:
    """Shape IoU of ``(N, 2)`` and ``(M, 2)`` width-height pairs aligned at a common centre -> ``(N, M)``."""
    inter = torch.minimum(wh1[:, None, 0], wh2[None, :, 0]) * torch.minimum(wh1[:, None, 1], wh2[None, :, 1])
    area1 = wh1[:, 0] * wh1[:, 1]
    area2 = wh2[:, 0] * wh2[:, 1]
    return inter / (area1[:, None] + area2[None, :] - inter + eps)


@ASSIGNERS.register("yolov4")
class YOLOv4Assigner:
    """IoU-threshold multi-anchor assignment over all levels (YOLOv4), optionally with near cells (YOLOv5).

    ``anchor_iou``: anchors whose shape IoU (``wh_iou``: width and height only, centres aligned) with a
    face is above this are positive (the best anchor always is); YOLOv4's ``iou_thresh`` (0.213),
    called ``iou_t`` in facedet configs before issue 13. ``near_cells``: also assign the two
    neighbouring cells nearest the face centre.
    """

    def __init__(self, *, anchor_iou: float = DEFAULT_ANCHOR_IOU, near_cells: bool = False) -> None:
        if not 0.0 <= anchor_iou < 1.0:
            raise ValueError(f"anchor_iou must lie in [0, 1), got {anchor_iou}")
        self.anchor_iou = float(anchor_iou)
        self.near_cells = bool(near_cells)

    def __repr__(self) -> str:
        return f"YOLOv4Assigner(anchor_iou={self.anchor_iou}, near_cells={self.near_cells})"

    def anchor_matches(self, targets_cat: Tensor, anchors: Tensor) -> Tensor:
        """``(Nt, L, A)`` bool: which anchors each target is assigned to (before cells are chosen)."""
        n_levels, n_anchors, _ = anchors.shape
        wh = (targets_cat[:, 3:5] - targets_cat[:, 1:3]).clamp(min=0)
        iou = wh_iou(wh, anchors.reshape(-1, 2).to(wh))  # (Nt, L*A)
        match = iou > self.anchor_iou
        if iou.shape[0]:
            # The best anchor always predicts the face, even when every IoU is below anchor_iou.
            match[torch.arange(iou.shape[0], device=iou.device), iou.argmax(1)] = True
        return match.view(-1, n_levels, n_anchors)

    def __call__(
        self,
        targets_cat: Tensor,
        anchors: Tensor,
        strides: Sequence[int],
        grid_shapes: Sequence[tuple[int, int]],
    ) -> list[LevelAssignment]:
        """Assign targets to anchors and cells.

        ``targets_cat``: ``(Nt, 6)`` rows ``[batch index, x1, y1, x2, y2, ignore flag]`` in input
        pixels. ``anchors``: ``(L, A, 2)`` in input pixels; ``strides``: L ints; ``grid_shapes``: L
        ``(H, W)``. Returns one ``LevelAssignment`` per level (every target row, ignored or not).
        """
        n_levels = anchors.shape[0]
        if not len(strides) == len(grid_shapes) == n_levels:
            raise ValueError(
                f"need one stride and grid shape per anchor level ({n_levels}), "
                f"got {len(strides)} strides and {len(grid_shapes)} grid shapes"
            )
        targets_cat = targets_cat.float()
        match = self.anchor_matches(targets_cat, anchors)  # (Nt, L, A)
        centre = (targets_cat[:, 1:3] + targets_cat[:, 3:5]) / 2  # (Nt, 2) x, y
        out = []
        for level in range(n_levels):
            h, w = int(grid_shapes[level][0]), int(grid_shapes[level][1])
            t, a = match[:, level].nonzero(as_tuple=True)
            g = centre[t] / float(strides[level])  # (P, 2) centre in cell units
            gx = g[:, 0].floor().long().clamp(0, w - 1)
            gy = g[:, 1].floor().long().clamp(0, h - 1)
            b = targets_cat[t, 0].long()
            if self.near_cells:
                b, a, gy, gx, t = self._add_near_cells(b, a, gy, gx, t, g, h, w)
            out.append(LevelAssignment(b, a, gy, gx, t))
        return out

    @staticmethod
    def _add_near_cells(
        b: Tensor, a: Tensor, gy: Tensor, gx: Tensor, t: Tensor, g: Tensor, h: int, w: int
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Append, per match, the x-neighbour and the y-neighbour on the side of the centre (YOLOv5).

        A centre in the left half of its cell takes the left neighbour, in the right half the right
        one (likewise for y); neighbours outside the grid, and exact half-way centres, are skipped.
        """
        fx = g[:, 0] - gx  # offset inside the (clamped) cell
        fy = g[:, 1] - gy
        dx = (fx > 0.5).long() - (fx < 0.5).long()  # -1 left, +1 right, 0 exactly half-way
        dy = (fy > 0.5).long() - (fy < 0.5).long()
        nx, ny = gx + dx, gy + dy
        ok_x = (dx != 0) & (nx >= 0) & (nx < w)
        ok_y = (dy != 0) & (ny >= 0) & (ny < h)
        cat = torch.cat
        return (
            cat((b, b[ok_x], b[ok_y])),
            cat((a, a[ok_x], a[ok_y])),
            cat((gy, gy[ok_x], ny[ok_y])),
            cat((gx, nx[ok_x], gx[ok_y])),
            cat((t, t[ok_x], t[ok_y])),
        )
