"""Training hooks of the data pipeline: close-mosaic, multi-scale, and the sample grid for TensorBoard.

``build_data_hooks(cfg, train_loader)`` builds them (and SAT, see ``sat.py``) from the ``aug``
config, in the order their ``preprocess_batch`` must run: multi-scale, SAT, then the grid (which so
shows the images the model is really fed).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from facedet.engine.trainer import HookBase
from facedet.registry import ConfigError

log = logging.getLogger(__name__)


class CloseMosaicHook(HookBase):
    """Switch mosaic and mixup off for the last ``epochs`` epochs (YOLOX / ultralytics): the model
    ends on images like the test images. The wrappers' probabilities live in shared memory, so the
    loader's persistent workers see the change from the next epoch on; the state follows from the
    epoch, so a resumed run gets it right too."""

    def __init__(self, wrappers: list[Any], *, epochs: int) -> None:
        self.wrappers = wrappers
        self.epochs = int(epochs)
        self.initial = [w.p.value for w in wrappers]
        self.closed = False

    def before_epoch(self) -> None:
        t = self.trainer
        close = t.epoch >= max(1, t.max_epochs - self.epochs)  # the first epoch always keeps mosaic
        if close != self.closed:
            for w, p in zip(self.wrappers, self.initial, strict=True):
                w.p.value = 0.0 if close else p
            self.closed = close
            if close:
                log.info("close-mosaic: mosaic/mixup off from epoch %d of %d", t.epoch + 1, t.max_epochs)


def resize_batch(batch: dict[str, Any], size: int, *, min_face_size: float = 0.0) -> dict[str, Any]:
    """Resize square ``images`` (B, 3, S, S) to ``size`` and scale the targets; faces whose shorter
    side falls below ``min_face_size`` become ignore. Antialiased when shrinking."""
    images = batch["images"]
    s = images.shape[-1]
    if size == s and min_face_size <= 0:
        return batch
    f = size / s
    if size != s:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=f < 1)
    targets = []
    for t in batch["targets"]:
        boxes = t["boxes"] * f
        wh = boxes[:, 2:] - boxes[:, :2]
        small = wh.min(1).values < min_face_size if len(boxes) else torch.zeros_like(t["ignore"])
        targets.append(t | {"boxes": boxes, "landmarks": t["landmarks"] * f, "ignore": t["ignore"] | small})
    return batch | {"images": images, "targets": targets}


class MultiScaleHook(HookBase):
    """A random input size per batch, a multiple of ``stride`` in [min_scale, max_scale] x ``img_size``
    (YOLOv3's multi-scale training). The size is a function of (seed, step): reproducible, identical
    on every DDP rank, and unchanged by a resume."""

    def __init__(self, *, img_size: int, min_scale: float, max_scale: float, seed: int = 0, stride: int = 32,
                 min_face_size: float = 0.0) -> None:
        if not 0 < min_scale <= max_scale:
            raise ConfigError(f"aug.multi_scale needs 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
        lo = max(stride, math.ceil(img_size * min_scale / stride) * stride)
        hi = max(lo, math.floor(img_size * max_scale / stride) * stride)
        self.sizes = list(range(lo, hi + 1, stride))
        self.seed = int(seed)
        self.min_face_size = float(min_face_size)

    def preprocess_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, self.trainer.step, 7])
        size = self.sizes[int(rng.integers(len(self.sizes)))]
        return resize_batch(batch, size, min_face_size=self.min_face_size)


class SampleGridHook(HookBase):
    """Sends a grid of the first training batch (as fed to the model: after augmentation,
    multi-scale and SAT) to TensorBoard, with faces in green and ignored faces in orange."""

    def __init__(self, *, max_images: int = 16) -> None:
        self.max_images = max_images
        self.done = False

    def preprocess_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        if not self.done:
            self.done = True
            writer = next((h.writer for h in self.trainer.hooks if getattr(h, "writer", None) is not None), None)
            if writer is not None:
                from facedet.data.visualize import batch_grid

                grid = batch_grid(batch, max_images=self.max_images)
                writer.add_image("train/batch", grid, self.trainer.step, dataformats="HWC")
        return batch


def build_data_hooks(cfg: DictConfig, train_loader: Any) -> list[HookBase]:
    """The data hooks the ``aug`` config asks for (close-mosaic, multi-scale, SAT) plus the grid."""
    from facedet.data.mosaic import find_wrappers

    aug, hooks = cfg.aug, []
    wrappers = find_wrappers(train_loader.dataset)
    close = int(aug.get("close_mosaic", 0) or 0)
    if close > 0:
        if not wrappers:
            log.warning("aug.close_mosaic=%d has no effect: neither mosaic nor mixup is on", close)
        else:
            hooks.append(CloseMosaicHook(wrappers, epochs=close))
    ms = aug.get("multi_scale")
    if ms is not None and ms.get("enabled", False):
        hooks.append(MultiScaleHook(img_size=int(cfg.data.img_size), min_scale=float(ms.min_scale),
                                    max_scale=float(ms.max_scale), seed=int(cfg.seed),
                                    min_face_size=float(aug.get("min_face_size", 0) or 0)))
    sat = aug.get("sat")
    if sat is not None and float(sat.get("p", 0)) > 0:
        from facedet.engine.sat import SATHook

        hooks.append(SATHook(p=float(sat.p), epsilon=float(sat.epsilon), seed=int(cfg.seed)))
    if cfg.train.get("tensorboard", False):
        hooks.append(SampleGridHook())
    return hooks
