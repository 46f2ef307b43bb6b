"""Knowledge distillation from a larger, already trained teacher (issue 16, option 6).

The distillation loss wraps the student's detection loss (``YOLOLoss``). Called with the student's
raw maps, the targets and the images, it returns the detection terms unchanged plus ``loss_distill``,
which pulls the student's objectness and boxes towards the teacher's on the same images:

- objectness, per level: the mean over every cell and anchor of KL(teacher || student) of the two
  Bernoulli objectness distributions, i.e. BCE(student logit, teacher probability) minus the
  teacher's own entropy, so it is exactly 0 when the student equals the teacher (computed from both
  logits with ``logsigmoid``, which makes that 0 exact in floating point too). Levels are weighted by
  the detection loss's ``balance`` (the fine levels have many more cells), as its objectness is;
- boxes: ``1 - CIoU(student box, teacher box)`` at every cell and anchor, weighted by the teacher's
  objectness probability and normalised by the sum of those weights (the "objectness-scaled"
  distillation of Mehta and Ozturk, 2018: only where the teacher sees a face is its box worth
  copying). Both are decoded by their own head's ``decode_level``, in input pixels, so the anchor
  sizes of teacher and student may differ; strides and anchors per level must agree.

``loss_distill = obj_weight * objectness + box_weight * boxes``; ``loss`` gains ``loss_distill * B``
(the detection loss's per-image-sum convention, see ``yolo_loss``).

The teacher is held here, not by the student: it is not a submodule of the student, so it is never
in the student's ``state_dict``, its checkpoints, its EMA copy (``__deepcopy__`` shares it) or its
DDP wrapper. It runs in eval mode without gradients, on the device of the images.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facedet.losses.iou import ciou
from facedet.registry import DISTILL_LOSSES
from facedet.structures import Target, cxcywh_to_xyxy


class Decoder(Protocol):
    """A head's decoding (``YOLOHead.decoding()``): what the distillation reads of it."""

    @property
    def anchors(self) -> Tensor: ...

    @property
    def strides(self) -> Sequence[int]: ...

    def decode_level(self, raw: Tensor, i: int) -> Tensor: ...


class DetectionLoss(Protocol):
    """The student's built loss (``YOLOLoss``): raw maps and targets -> terms plus ``loss``."""

    decoder: Decoder

    def __call__(self, raws: Sequence[Tensor], targets: Sequence[Target]) -> dict[str, Tensor]: ...


def layout(decoder: Decoder) -> list[tuple[int, int]]:
    """``[(stride, anchors), ...]`` per level: what teacher and student must share to be compared
    cell by cell."""
    anchors = decoder.anchors
    return [(int(s), int(anchors.shape[1])) for s in decoder.strides]


def objectness_kl(student_logit: Tensor, teacher_logit: Tensor) -> Tensor:
    """Elementwise KL(teacher || student) of Bernoulli objectness, from logits: equal to
    ``BCE(student, sigmoid(teacher)) - H(sigmoid(teacher))``, and exactly 0 where the logits are equal."""
    p = teacher_logit.sigmoid()
    log_p, log_not_p = F.logsigmoid(teacher_logit), F.logsigmoid(-teacher_logit)
    log_q, log_not_q = F.logsigmoid(student_logit), F.logsigmoid(-student_logit)
    return p * (log_p - log_q) + (1 - p) * (log_not_p - log_not_q)


@DISTILL_LOSSES.register("yolo_distill")
class DistillLoss:
    """The detection loss ``base`` plus ``loss_distill`` towards ``teacher`` (see the module docstring).

    ``base``: the student's built loss, supplied by the framework; ``teacher``: the teacher model
    (raw per-level maps from images), ``teacher_decoder``: its head's decoding, both supplied by the
    framework (``facedet.engine.distill``); ``obj_weight``, ``box_weight``: the two terms' weights
    (>= 0, not both 0). Teacher and student with other strides or anchors per level are a ValueError.
    ``takes_images`` tells ``Detector.loss`` to pass the images.
    """

    takes_images = True

    def __init__(self, *, base: DetectionLoss, teacher: nn.Module, teacher_decoder: Decoder,
                 obj_weight: float = 1.0, box_weight: float = 0.05) -> None:
        self.base = base
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.teacher_decoder = teacher_decoder
        self.obj_weight, self.box_weight = float(obj_weight), float(box_weight)
        if self.obj_weight < 0 or self.box_weight < 0 or self.obj_weight + self.box_weight == 0:
            raise ValueError(f"obj_weight and box_weight must be >= 0 and not both 0, got {obj_weight}, {box_weight}")
        student, taught = layout(base.decoder), layout(teacher_decoder)
        if student != taught:
            raise ValueError(f"teacher and student differ in (stride, anchors) per level: teacher {taught}, "
                             f"student {student}")
        balance = getattr(base, "balance", None)  # YOLOLoss's objectness weight per level
        self.balance = [float(b) for b in balance] if balance is not None else [1.0] * len(student)

    # what Detector and its checks read of a loss: the detection loss's own
    @property
    def assigner(self) -> Any:
        return self.base.assigner  # type: ignore[attr-defined]

    @property
    def decoder(self) -> Decoder:
        return self.base.decoder

    def __deepcopy__(self, memo: dict[int, Any]) -> DistillLoss:
        """A copy of the student's loss that shares the frozen teacher (the EMA copies the student;
        a second teacher would only cost memory)."""
        new = copy.copy(self)
        memo[id(self)] = new
        new.base = copy.deepcopy(self.base, memo)
        new.balance = list(self.balance)
        return new

    def __call__(self, raws: Sequence[Tensor], targets: Sequence[Target],
                 images: Tensor | None = None) -> dict[str, Tensor]:
        """The detection terms, plus ``loss_distill`` when ``images`` are given (without them, as in
        SAT's attack, the detection loss alone)."""
        out = self.base(raws, targets)
        if images is None:
            return out
        loss_distill = self.distill(raws, self.teacher_maps(images))
        out["loss_distill"] = loss_distill
        out["loss"] = out["loss"] + loss_distill * raws[0].shape[0]
        return out

    @torch.no_grad()
    def teacher_maps(self, images: Tensor) -> list[Tensor]:
        """The teacher's raw maps for ``images``, in eval mode, without gradients, on their device."""
        if self.teacher.training:  # nothing should switch it, but BatchNorm statistics must stay frozen
            self.teacher.eval()
        param = next(self.teacher.parameters(), None)
        if param is not None and param.device != images.device:
            self.teacher.to(images.device)
        return [r.detach() for r in self.teacher(images)]

    def distill(self, student_raws: Sequence[Tensor], teacher_raws: Sequence[Tensor]) -> Tensor:
        """``obj_weight * objectness KL + box_weight * objectness-weighted (1 - CIoU)``, float32."""
        if len(student_raws) != len(teacher_raws):
            raise ValueError(f"the student gave {len(student_raws)} levels, the teacher {len(teacher_raws)}")
        obj = student_raws[0].new_zeros((), dtype=torch.float32)
        box_sum, weight_sum = obj.clone(), obj.clone()
        for i, (s_raw, t_raw) in enumerate(zip(student_raws, teacher_raws, strict=True)):
            if s_raw.shape[:4] != t_raw.shape[:4]:
                raise ValueError(f"level {i}: student map {tuple(s_raw.shape)}, teacher map {tuple(t_raw.shape)}")
            s = self.base.decoder.decode_level(s_raw.float(), i)  # the head's decoding, fp32 under autocast
            t = self.teacher_decoder.decode_level(t_raw.float(), i)
            if self.obj_weight:
                obj = obj + self.balance[i] * objectness_kl(s[..., 4], t[..., 4]).mean()
            if self.box_weight:
                w = t[..., 4].sigmoid()
                sim = ciou(cxcywh_to_xyxy(s[..., :4]).reshape(-1, 4), cxcywh_to_xyxy(t[..., :4]).reshape(-1, 4))
                box_sum = box_sum + (w.reshape(-1) * (1.0 - sim)).sum()
                weight_sum = weight_sum + w.sum()
        return self.obj_weight * obj + self.box_weight * box_sum / weight_sum.clamp(min=1e-6)
