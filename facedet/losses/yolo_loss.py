"""The YOLOv4 detection loss for a single face class: CIoU box loss plus objectness BCE, and with a
landmark head (``num_landmarks`` 5) a point loss at the positives.

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

With ``obj_mining`` (an ``OBJECTNESS_MINERS`` entry, e.g. ``ohem``) the ``ignore_iou`` mask is not
used: the miner picks which negatives count (``facedet/losses/objectness.py``).

``box_weight_by_size`` multiplies each positive's ``1 - CIoU`` by YOLOv3's ``2 - w * h`` (the face's
width and height as fractions of the input's), so small boxes weigh up to twice as much; the
weighted terms are averaged over the number of positives, not over the weights' sum, as YOLOv3
scales each box's term without renormalising: a box covering the image keeps today's weight.

Objectness is averaged over the non-masked cells of each level and weighted by ``balance[level]``
(small faces live on the fine levels, which have many more cells). The total is multiplied by the
batch size, YOLOv5's convention, so the gradient does not shrink as the batch grows.

Landmarks (only when the head predicts them): at every positive, each point the face has (absent
points are NaN in the targets, per point) is compared with the decoded point by ``landmark_loss``
(registry ``LANDMARK_LOSSES``: ``wing`` or ``smooth_l1``) in anchor units (pixel error divided by the
predicting anchor's width or height, so faces of every size weigh alike, as the box-normalised NME
measures them; yolov5-face measures in grid cells instead). The mean over present coordinates,
times ``landmark_weight``, is ``loss_landmark``. Absent points are dropped before the loss (not
multiplied by 0), so they give neither a value nor a gradient, and the box and objectness terms
never look at points: a face without points trains boxes exactly as in a model without landmarks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from facedet.assign import LevelAssignment
from facedet.losses.iou import ciou
from facedet.losses.objectness import ObjectnessMiner, assigned_cells, mined_objectness
from facedet.losses.targets import landmarks_to_tensor, max_iou_per_image, pad_per_image, targets_to_tensor
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

    @property
    def num_landmarks(self) -> int: ...

    def decode_level(self, raw: Tensor, i: int) -> Tensor: ...


class LandmarkLoss(Protocol):
    """A ``LANDMARK_LOSSES`` entry: elementwise loss of predicted and target coordinates."""

    def __call__(self, pred: Tensor, target: Tensor) -> Tensor: ...


@LOSSES.register("yolo_loss")
class YOLOLoss:
    """YOLOv4 loss (single class). See the module docstring for positives, negatives and masks.

    ``assigner``: a built assigner (e.g. ``YOLOv4Assigner``); ``decoder``: the head's decoding,
    supplied by the framework (``build_detector``); ``box_weight``, ``obj_weight``: term weights;
    ``balance``: objectness weight per level (fine to coarse); ``ignore_iou``: box IoU between a
    prediction and a face above which a non-positive prediction is not punished;
    ``obj_iou_target``: objectness target at positives is the CIoU (True) or 1 (False).
    ``landmark_loss``: a built ``LANDMARK_LOSSES`` entry (``{type: wing}``), required when the head
    predicts points and refused when it does not; ``landmark_weight``: its term's weight.
    ``box_weight_by_size``: weight each box term by ``2 - w * h`` (module docstring); ``obj_mining``:
    a built ``OBJECTNESS_MINERS`` entry (``{type: ohem}``) replacing the ``ignore_iou`` mask, or None.
    Options that do not fit the decoder (a ``balance`` length other than its number of levels,
    ``near_cells`` without ``scale_x_y`` 2, a landmark loss without landmark outputs or the reverse)
    are a ValueError here, so a config error at build time.
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
        landmark_loss: LandmarkLoss | None = None,
        landmark_weight: float = 0.05,
        box_weight_by_size: bool = False,
        obj_mining: ObjectnessMiner | None = None,
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
        if landmark_loss is not None and not callable(landmark_loss):
            raise TypeError(
                f"landmark_loss must be a built landmark loss (a config node with 'type', e.g. "
                f"{{type: wing}}), got {landmark_loss!r}"
            )
        self.landmark_loss = landmark_loss
        self.landmark_weight = float(landmark_weight)
        if not isinstance(box_weight_by_size, bool):
            raise TypeError(f"box_weight_by_size must be true or false, got {box_weight_by_size!r}")
        self.box_weight_by_size = box_weight_by_size
        if obj_mining is not None and not callable(obj_mining):
            raise TypeError(
                f"obj_mining must be null or a built objectness miner (a config node with 'type', e.g. "
                f"{{type: ohem}}), got {obj_mining!r}"
            )
        self.obj_mining = obj_mining
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
        k = int(getattr(self.decoder, "num_landmarks", 0))
        if k and self.landmark_loss is None:
            raise ValueError(
                f"model.head.num_landmarks={k} needs model.loss.landmark_loss (e.g. "
                "model.loss.landmark_loss={type: wing}, or smooth_l1) to train the points"
            )
        if not k and self.landmark_loss is not None:
            raise ValueError(
                "model.loss.landmark_loss is set but model.head.num_landmarks is 0 (no points to train): "
                "set model.head.num_landmarks=5, or model.loss.landmark_loss=null"
            )

    def __call__(self, raws: Sequence[Tensor], targets: Sequence[Target]) -> dict[str, Tensor]:
        """Loss terms from raw maps ``[(B, A, H, W, >=5 + 2K)]`` (decoded by ``decoder``) and B targets.

        Returns ``loss_box`` and ``loss_obj`` (weighted), with a landmark head ``loss_landmark``
        (weighted), ``loss`` = (their sum) * B, and a detached float ``num_pos`` (positives over all
        levels, for logging).
        """
        if len(raws) != len(self.balance):
            raise ValueError(f"yolo_loss has {len(self.balance)} balance weights but got {len(raws)} levels")
        device = raws[0].device
        bsz = raws[0].shape[0]
        tcat = targets_to_tensor(targets, device)
        t_points = None
        if self.landmark_loss is not None:
            t_points = landmarks_to_tensor(targets, int(self.decoder.num_landmarks), device)
        gt_boxes, gt_valid = pad_per_image(tcat, bsz)
        grid_shapes = [(int(r.shape[2]), int(r.shape[3])) for r in raws]
        assignments = self.assigner(tcat, self.decoder.anchors, self.decoder.strides, grid_shapes)

        box_terms: list[Tensor] = []
        size_weights: list[Tensor] = []
        point_terms: list[Tensor] = []
        mining: tuple[list[Tensor], list[Tensor], list[Tensor]] = ([], [], [])  # BCE, candidates, positives
        loss_obj = raws[0].new_zeros((), dtype=torch.float32)
        for i, (raw, asg) in enumerate(zip(raws, assignments, strict=True)):
            dec = self.decoder.decode_level(raw.float(), i)  # (B, A, H, W, 5 + 2K), fp32 even under autocast
            logit = dec[..., 4]
            _, n_a, h, w = logit.shape
            ignored = tcat[asg.t, 5] > 0
            pb, pa, pgy, pgx, pt = (x[~ignored] for x in asg)

            if self.obj_mining is None:
                weight = self._objectness_mask(dec, gt_boxes, gt_valid, asg, ignored)

            # Positive boxes; with no positives these are empty and still carry a gradient path.
            c = ciou(cxcywh_to_xyxy(dec[pb, pa, pgy, pgx, :4]), tcat[pt, 1:5])
            box_terms.append(1.0 - c)
            if self.box_weight_by_size:
                wh = tcat[pt, 3:5] - tcat[pt, 1:3]  # input pixels; the input is the grid times the stride
                stride = float(self.decoder.strides[i])
                size_weights.append(2.0 - (wh[:, 0] / (w * stride)) * (wh[:, 1] / (h * stride)))
            if t_points is not None:
                point_terms.append(self._point_losses(dec[pb, pa, pgy, pgx, 5:], t_points[pt], pa, i))

            tobj = torch.zeros_like(logit)
            val = c.detach().clamp(min=0) if self.obj_iou_target else torch.ones_like(c)
            flat = ((pb * n_a + pa) * h + pgy) * w + pgx
            # Several faces may share a cell: keep the best target rather than an arbitrary last write.
            tobj.view(-1).scatter_reduce_(0, flat, val.to(tobj.dtype), reduce="amax")

            bce = F.binary_cross_entropy_with_logits(logit, tobj, reduction="none")
            if self.obj_mining is None:
                wf = weight.to(bce.dtype)
                loss_obj = loss_obj + self.balance[i] * (bce * wf).sum() / wf.sum().clamp(min=1.0)
            else:  # the miner chooses over all levels at once, after the loop
                for kept, x in zip(mining, (bce, *assigned_cells(logit.shape, asg, ignored, device)), strict=True):
                    kept.append(x)

        if self.obj_mining is not None:
            loss_obj = mined_objectness(self.obj_mining, *mining, self.balance)
        box = torch.cat(box_terms)
        if self.box_weight_by_size:
            box_sum = (box * torch.cat(size_weights).to(box.dtype)).sum()
        else:
            box_sum = box.sum()
        loss_box = self.box_weight * box_sum / max(box.numel(), 1)
        loss_obj = self.obj_weight * loss_obj
        if t_points is None:
            out = {"loss_box": loss_box, "loss_obj": loss_obj, "loss": (loss_box + loss_obj) * bsz}
        else:
            points = torch.cat(point_terms)  # empty when no positive face has a point: a zero term
            loss_landmark = self.landmark_weight * points.sum() / max(points.numel(), 1)
            out = {"loss_box": loss_box, "loss_obj": loss_obj, "loss_landmark": loss_landmark,
                   "loss": (loss_box + loss_obj + loss_landmark) * bsz}
        out["num_pos"] = torch.tensor(float(box.numel()), device=device)
        return out

    @torch.no_grad()
    def _objectness_mask(
        self, dec: Tensor, gt_boxes: Tensor, gt_valid: Tensor, asg: LevelAssignment, ignored: Tensor
    ) -> Tensor:
        """``(B, A, H, W)`` bool: the cells whose objectness is trained (see the module docstring):
        not overlapping a face above ``ignore_iou``, not an ignored face's cell, or a positive."""
        pred_xyxy = cxcywh_to_xyxy(dec[..., :4].detach()).reshape(dec.shape[0], -1, 4)
        weight = max_iou_per_image(pred_xyxy, gt_boxes, gt_valid).view(dec.shape[:4]) <= self.ignore_iou
        weight[asg.b[ignored], asg.a[ignored], asg.gy[ignored], asg.gx[ignored]] = False
        kept = ~ignored
        weight[asg.b[kept], asg.a[kept], asg.gy[kept], asg.gx[kept]] = True
        return weight

    def _point_losses(self, pred: Tensor, target: Tensor, anchor_index: Tensor, level: int) -> Tensor:
        """Elementwise landmark loss of the present target points: ``pred`` ``(P, 2K)`` decoded
        points (pixels) at P positives, ``target`` ``(P, K, 2)`` (NaN: absent), ``anchor_index``
        ``(P,)`` the positives' anchors on ``level``. Both are divided by the anchor's width and
        height first (anchor units). Absent points are selected away, never multiplied by 0: a NaN
        times 0 is NaN, in the value and in the gradient."""
        pred = pred.reshape(target.shape)
        scale = self.decoder.anchors[level].to(pred)[anchor_index].unsqueeze(1)  # (P, 1, 2): w, h
        present = torch.isfinite(target).all(-1)  # (P, K): per point, not per face
        return self.landmark_loss((pred / scale)[present], (target / scale)[present]).reshape(-1)
