"""The Detector: backbone -> neck -> head, with the loss and the post-processing as built objects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from facedet.models.specials import freeze_bn_gamma, set_bn_momentum
from facedet.registry import BACKBONES, HEADS, LOSSES, NECKS, POSTPROCESSORS, ConfigError, build
from facedet.structures import Target


class Detector(nn.Module):
    """A single-class YOLO-style face detector.

    Contract (see DESIGN.md):
    - ``detector(images)``: ``images`` float ``(B, 3, S, S)`` in [0, 1] with S a multiple of 32 ->
      list of raw per-level maps ``(B, A, S/stride, S/stride, 5)`` for the backbone's strides
      (8, 16, 32; YOLOv4-tiny's two levels 16, 32).
    - ``detector.loss(images, targets)``: ``targets`` a list of B ``Target`` dicts (boxes xyxy in
      input pixels) -> dict of named loss terms plus ``loss`` (their weighted sum, to backpropagate).
    - ``detector.predict(images)``: list of B dicts ``{boxes (K, 4) xyxy input pixels, scores (K,),
      labels (K,)}`` after decoding and NMS.
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

    def loss(self, images: Tensor, targets: list[Target]) -> dict[str, Tensor]:
        return self.loss_fn(self(images), targets, self.head)

    @torch.no_grad()
    def predict(self, images: Tensor) -> list[dict[str, Tensor]]:
        boxes, scores = self.head.decode(self(images))
        return self.postprocess(boxes.float(), scores.float())


def build_detector(cfg: Mapping[str, Any]) -> Detector:
    """Build a Detector from a model config (``backbone``, ``neck``, ``head``, ``loss``,
    ``postprocess`` nodes and ``anchors``); channels, anchors and strides are wired here.
    ``freeze_bn_gamma: true`` freezes every BatchNorm scale (``specials.freeze_bn_gamma``);
    ``bn_momentum`` sets every BatchNorm's running-statistics momentum (``specials.set_bn_momentum``). Other
    model-level keys (``name``, ``weights``, ``weights_partial``) are read by the training run."""
    for key in ("backbone", "neck", "head", "loss", "postprocess", "anchors"):
        if key not in cfg:
            raise ConfigError(f"The model config has no 'model.{key}'.")
    backbone = build(cfg["backbone"], BACKBONES, where="model.backbone")
    neck = build(cfg["neck"], NECKS, where="model.neck", in_channels=list(backbone.out_channels))
    anchors = [list(a) for a in cfg["anchors"]]
    if len(anchors) != len(neck.out_channels):
        raise ConfigError(
            f"model.anchors has {len(anchors)} levels but the neck gives {len(neck.out_channels)} "
            f"(strides {list(backbone.strides)})."
        )
    head = build(
        cfg["head"],
        HEADS,
        where="model.head",
        in_channels=list(neck.out_channels),
        anchors=anchors,
        strides=list(backbone.strides),
    )
    loss = build(cfg["loss"], LOSSES, where="model.loss")
    balance = getattr(loss, "balance", None)
    if balance is not None and len(balance) != len(anchors):
        raise ConfigError(
            f"model.loss.balance has {len(balance)} weights but the model has {len(anchors)} levels "
            f"(strides {list(backbone.strides)}): give one objectness weight per level."
        )
    post = build(cfg["postprocess"], POSTPROCESSORS, where="model.postprocess")
    detector = Detector(backbone=backbone, neck=neck, head=head, loss=loss, postprocess=post)
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
    return detector

