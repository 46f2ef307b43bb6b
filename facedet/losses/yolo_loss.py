"""The YOLOv4 detection loss for a single face class: CIoU box loss plus objectness BCE.

Per level, cells are one of three kinds:
- positive: assigned to a (non-ignored) face by the assigner; box regressed with 1 - CIoU, and the
  objectness target is the detached CIoU clamped at 0 (or 1 with ``obj_iou_target=False``);
- negative: objectness target 0;
- masked (neither): cells the assignment rule would give to an *ignored* face (tiny or invalid
  faces must be neither rewarded nor punished), and cells whose current prediction already
  overlaps any ground-truth box of its image with box IoU > ``ignore_iou`` (YOLOv3's ``ignore_thresh``,
  the config key's name before issue 13: a good box at a non-assigned cell should not be pushed
  towards background).
Positives win over both masks.

Objectness is averaged over the non-masked cells of each level and weighted by ``balance[level]``
(small faces live on the fine levels, which have many more cells). The total is multiplied by the
batch size, YOLOv5's convention, so the gradient does not shrink as the batch grows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_iou

from facedet.assign import LevelAssignment
from facedet.losses.iou import ciou
from facedet.registry import LOSSES
from facedet.structures import Target, cxcywh_to_xyxy


class Assigner(Protocol):
    """Matches targets to anchors and cells (``facedet.assign.YOLOv4Assigner``)."""

    anchor_iou: float  # shape IoU above which an anchor is positive
    near_cells: bool  # whether neighbouring cells are assigned too (needs scale_x_y = 2)

    def __call__(self, targets_cat: Tensor, anchors: Tensor, strides: Sequence[int],
                 grid_shapes: Sequence[tuple[int, int]]) -> list[LevelAssignment]: ...


class Decoder(Protocol):
    """The head's decoding (``YOLOHead.decoding()``, supplied by ``build_detector``): ``anchors``
    ``(L, A, 2)`` in input pixels, read at every call; one stride and ``scale_x_y`` per level."""

    @property
    def anchors(self) -> Tensor: ...

    @property
    def strides(self) -> Sequence[int]: ...

    @property
    def scale_x_y(self) -> Sequence[float]: ...

    def decode_level(self, raw: Tensor, i: int) -> Tensor: ...

_IOU_CHUNK = 1 << 23  # elements per batched IoU block: bounds memory for crowded images (WIDER has 1000+)


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
    keep = (out[:, 3] > out[:, 1]) & (out[:, 4] > out[:, 2])
    return out[keep]


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


@LOSSES.register("yolo_loss")
class YOLOLoss:
    """YOLOv4 loss (single class). See the module docstring for positives, negatives and masks.

    ``assigner``: a built assigner (e.g. ``YOLOv4Assigner``); ``decoder``: the head's decoding,
    supplied by the framework (``build_detector``); ``box_weight``, ``obj_weight``: term weights;
    ``balance``: objectness weight per level (fine to coarse); ``ignore_iou``: box IoU between a
    prediction and a face above which a non-positive prediction is not punished;
    ``obj_iou_target``: objectness target at positives is the CIoU (True) or 1 (False).
    Options that do not fit the decoder (a ``balance`` length other than its number of levels,
    ``near_cells`` without ``scale_x_y`` 2) are a ValueError here, so a config error at build time.
    """

    def __init__(
        self,
        *,
        assigner: Assigner,
        decoder: Decoder,
        box_weight: float = 0.05,
        obj_weight: float = 1.0,
        balance: Sequence[float] = (4.0, 1.0, 0.4),
        ignore_iou: float = 0.7,
        obj_iou_target: bool = True,
    ) -> None:
        if not callable(assigner):
            raise TypeError(
                f"assigner must be a built assigner (a config node with 'type', e.g. {{type: yolov4}}), "
                f"got {assigner!r}"
            )
        self.assigner = assigner
        self.decoder = decoder
        self.box_weight = float(box_weight)
        self.obj_weight = float(obj_weight)
        self.balance = [float(x) for x in balance]
        self.ignore_iou = float(ignore_iou)
        self.obj_iou_target = bool(obj_iou_target)
        self._check_decoder()

    def _check_decoder(self) -> None:
        strides = list(self.decoder.strides)
        if len(self.balance) != len(strides):
            raise ValueError(
                f"balance has {len(self.balance)} weights but the model has {len(strides)} levels "
                f"(strides {strides}): give one objectness weight per level"
            )
        scales = list(self.decoder.scale_x_y)
        if self.assigner.near_cells and any(s < 2.0 for s in scales):
            raise ValueError(
                f"assigner.near_cells=true needs model.head.scale_x_y 2 on every level, got {scales}: "
                "a neighbouring cell's centre cannot reach the face centre otherwise (set both, or neither)"
            )

    def __call__(self, raws: Sequence[Tensor], targets: Sequence[Target]) -> dict[str, Tensor]:
        """Loss terms from raw maps ``[(B, A, H, W, >=5)]`` (decoded by ``decoder``) and B targets.

        Returns ``loss_box`` and ``loss_obj`` (weighted), ``loss = (loss_box + loss_obj) * B`` and a
        detached float ``num_pos`` (positives over all levels, for logging).
        """
        if len(raws) != len(self.balance):
            raise ValueError(f"yolo_loss has {len(self.balance)} balance weights but got {len(raws)} levels")
        device = raws[0].device
        bsz = raws[0].shape[0]
        tcat = targets_to_tensor(targets, device)
        gt_boxes, gt_valid = pad_per_image(tcat, bsz)
        grid_shapes = [(int(r.shape[2]), int(r.shape[3])) for r in raws]
        assignments = self.assigner(tcat, self.decoder.anchors, self.decoder.strides, grid_shapes)

        box_terms: list[Tensor] = []
        loss_obj = raws[0].new_zeros((), dtype=torch.float32)
        for i, (raw, asg) in enumerate(zip(raws, assignments, strict=True)):
            dec = self.decoder.decode_level(raw.float(), i)  # (B, A, H, W, 5), fp32 even under autocast
            logit = dec[..., 4]
            _, n_a, h, w = logit.shape
            ignored = tcat[asg.t, 5] > 0
            pb, pa, pgy, pgx, pt = (x[~ignored] for x in asg)

            with torch.no_grad():
                pred_xyxy = cxcywh_to_xyxy(dec[..., :4].detach()).reshape(bsz, -1, 4)
                weight = max_iou_per_image(pred_xyxy, gt_boxes, gt_valid).view_as(logit) <= self.ignore_iou
                weight[asg.b[ignored], asg.a[ignored], asg.gy[ignored], asg.gx[ignored]] = False
                weight[pb, pa, pgy, pgx] = True

            # Positive boxes; with no positives these are empty and still carry a gradient path.
            c = ciou(cxcywh_to_xyxy(dec[pb, pa, pgy, pgx, :4]), tcat[pt, 1:5])
            box_terms.append(1.0 - c)

            tobj = torch.zeros_like(logit)
            val = c.detach().clamp(min=0) if self.obj_iou_target else torch.ones_like(c)
            flat = ((pb * n_a + pa) * h + pgy) * w + pgx
            # Several faces may share a cell: keep the best target rather than an arbitrary last write.
            tobj.view(-1).scatter_reduce_(0, flat, val.to(tobj.dtype), reduce="amax")

            bce = F.binary_cross_entropy_with_logits(logit, tobj, reduction="none")
            wf = weight.to(bce.dtype)
            loss_obj = loss_obj + self.balance[i] * (bce * wf).sum() / wf.sum().clamp(min=1.0)

        box = torch.cat(box_terms)
        loss_box = self.box_weight * box.sum() / max(box.numel(), 1)
        loss_obj = self.obj_weight * loss_obj
        return {
            "loss_box": loss_box,
            "loss_obj": loss_obj,
            "loss": (loss_box + loss_obj) * bsz,
            "num_pos": torch.tensor(float(box.numel()), device=device),
        }
