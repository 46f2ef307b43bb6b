"""The Detector: backbone -> neck -> head, with the loss and the post-processing as built objects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from facedet.models.model_config import upgrade_model_config
from facedet.models.specials import freeze_bn_gamma, set_bn_momentum
from facedet.registry import BACKBONES, HEADS, LOSSES, NECKS, POSTPROCESSORS, ConfigError, build
from facedet.structures import Target


class Detector(nn.Module):
    """A single-class YOLO-style face detector: the one door to its parts (see docs/ARCHITECTURE.md).

    Contract:
    - ``detector(images)``: ``images`` float ``(B, 3, S, S)`` in [0, 1] with S a multiple of
      ``max_stride`` -> list of raw per-level maps ``(B, A, S/stride, S/stride, 5 + 2K)`` for
      ``strides`` (8, 16, 32; YOLOv4-tiny's two levels 16, 32; P2 models 4, 8, 16, 32); K =
      ``num_landmarks`` (0 or 5).
    - ``detector.candidates(images)``: every anchor of every cell decoded, before NMS: boxes
      ``(B, N, 4)`` xyxy in input pixels, objectness probabilities ``(B, N)`` and landmarks
      ``(B, N, K, 2)`` in input pixels (None when K = 0), float32, levels flattened in (level,
      anchor, row, column) order. The only decoding of the model: ``predict``, test-time
      augmentation and the ONNX export all go through it.
    - ``detector.predict(images)``: ``postprocess(*candidates(images))``: list of B dicts ``{boxes
      (M, 4) xyxy input pixels, scores (M,), labels (M,)}``, plus ``landmarks (M, K, 2)`` input
      pixels when K > 0, sorted by descending score.
    - ``detector.postprocess``: the built post-processor (NMS family): ``(boxes (B, N, 4), scores
      (B, N), landmarks (B, N, K, 2) | None) -> `` B dicts as ``predict`` returns them (TTA merges
      candidates before it).
    - ``detector.loss(images, targets)``: ``targets`` a list of B ``Target`` dicts (boxes xyxy and
      landmarks in input pixels, NaN where a point is absent) -> dict of named loss terms
      (``loss_box``, ``loss_obj``, ``loss_landmark`` when K > 0) plus ``loss`` (their weighted sum, to
      backpropagate). The loss was built with the head's decoding, so it decodes as ``candidates`` does.
      With distillation on (``distill.teacher``) the training run wraps the loss, which adds
      ``loss_distill`` and receives the images too (``loss(..., distill=False)``: without it).
    - ``strides``, ``max_stride``, ``anchors`` (``(L, A, 2)`` input pixels), ``anchor_iou`` (the
      assigner's shape-IoU threshold for positives) and ``num_landmarks``: what tools and checks may
      read of the parts.
    """

    def __init__(self, *, backbone: nn.Module, neck: nn.Module, head: nn.Module, loss: Any, postprocess: Any):
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.loss_fn = loss
        self.postprocess = postprocess

    def forward(self, images: Tensor) -> list[Tensor]:
        return self.head(self.neck(self.backbone(images)))

    def candidates(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Decoded boxes ``(B, N, 4)`` xyxy in input pixels, scores ``(B, N)`` and landmarks
        ``(B, N, K, 2)`` in input pixels (None without a landmark head), float32, before NMS."""
        boxes, scores, landmarks = self.head.decode(self(images))
        return boxes.float(), scores.float(), None if landmarks is None else landmarks.float()

    def loss(self, images: Tensor, targets: list[Target], *, distill: bool = True) -> dict[str, Tensor]:
        """A loss that declares ``takes_images`` (distillation, ``facedet.losses.distill``: its
        teacher sees the same images) also receives the images, unless ``distill=False`` (SAT's
        attack: the detection loss alone)."""
        raws = self(images)
        if distill and getattr(self.loss_fn, "takes_images", False):
            return self.loss_fn(raws, targets, images=images)
        return self.loss_fn(raws, targets)

    @torch.no_grad()
    def predict(self, images: Tensor) -> list[dict[str, Tensor]]:
        return self.postprocess(*self.candidates(images))

    @property
    def strides(self) -> list[int]:
        """One stride (input pixels per cell) per level, fine to coarse."""
        return list(self.head.strides)

    @property
    def max_stride(self) -> int:
        """The coarsest stride: input sides must be multiples of it."""
        return max(self.head.strides)

    @property
    def anchors(self) -> Tensor:
        """``(L, A, 2)`` anchor sizes in input pixels (the buffer checkpoints store)."""
        return self.head.anchors

    @property
    def num_landmarks(self) -> int:
        """Points predicted per face: 0 (boxes only) or 5 (eyes, nose tip, mouth corners)."""
        return int(self.head.num_landmarks)

    @property
    def anchor_iou(self) -> float:
        """The assigner's threshold: anchors whose shape IoU with a face is above it are positives."""
        return float(self.loss_fn.assigner.anchor_iou)


def build_detector(cfg: Mapping[str, Any]) -> Detector:
    """Build a Detector from a model config (``backbone``, ``neck``, ``head``, ``loss``,
    ``postprocess`` nodes and ``anchors``); channels, anchors and strides are wired here, and the
    loss is built with the head's decoding (``extra`` ``decoder``), so loss options that do not fit
    the head (``balance`` length, ``near_cells`` without ``scale_x_y`` 2, ``head.num_landmarks`` 5
    without ``loss.landmark_loss`` or the reverse) are a ConfigError here.
    Configs written before issue 13 (``iou_t``, ``ignore_thresh``, ``iou_thresh``) are upgraded
    first (``model_config.upgrade_model_config``) and build the same model.
    ``freeze_bn_gamma: true`` freezes every BatchNorm scale (``specials.freeze_bn_gamma``);
    ``bn_momentum`` sets every BatchNorm's running-statistics momentum (``specials.set_bn_momentum``). Other
    model-level keys (``name``, ``weights``, ``weights_partial``) are read by the training run."""
    cfg = upgrade_model_config(cfg)
    for key in ("backbone", "neck", "head", "loss", "postprocess", "anchors"):
        if key not in cfg:
            raise ConfigError(f"The model config has no 'model.{key}'.")
    backbone = build(cfg["backbone"], BACKBONES, where="model.backbone")
    neck = build(cfg["neck"], NECKS, where="model.neck", in_channels=list(backbone.out_channels))
    anchors = [list(a) for a in cfg["anchors"]]
    if len(anchors) != len(neck.out_channels):
        raise ConfigError(
            f"model.anchors has {len(anchors)} levels but the neck gives {len(neck.out_channels)} "
            f"(strides {list(backbone.strides)}): give one anchor list per level (a stride-4 level: "
            f"model.backbone.out_strides=[4,8,16,32] with 4-level anchors, e.g. model=yolov4_nano_p2 "
            f"anchors=facemask_320_p2)."
        )
    head = build(
        cfg["head"],
        HEADS,
        where="model.head",
        in_channels=list(neck.out_channels),
        anchors=anchors,
        strides=list(backbone.strides),
    )
    loss = build(cfg["loss"], LOSSES, where="model.loss", decoder=head.decoding())
    post = build(cfg["postprocess"], POSTPROCESSORS, where="model.postprocess")
    detector = Detector(backbone=backbone, neck=neck, head=head, loss=loss, postprocess=post)
    _apply_batchnorm_options(detector, cfg)
    return detector


def _apply_batchnorm_options(detector: Detector, cfg: Mapping[str, Any]) -> None:
    """``freeze_bn_gamma`` and ``bn_momentum`` of the model config."""
    freeze = cfg.get("freeze_bn_gamma", False)
    if not isinstance(freeze, bool):
        raise ConfigError(f"model.freeze_bn_gamma must be true or false, got {freeze!r}")
    if freeze:
        freeze_bn_gamma(detector)
    momentum = cfg.get("bn_momentum")
    if momentum is not None:
        try:
            set_bn_momentum(detector, float(momentum))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"model.bn_momentum: {e}") from None
